//! Campaigns: the pipeline marketing runs, from audience to send list (DOMAIN §4a).
//!
//! [`definition`] reads and checks the campaign files; [`decide`] runs them for a group of
//! customers; this module streams a run over NDJSON lines on the same [`Evaluator`] as plugin
//! batches, a chain of plugins per customer instead of plugins side by side, and counts the
//! funnel.

pub mod decide;
pub mod definition;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

pub use decide::{CustomerRun, Decision, Each, Kind, Plan, Planned, RunInputs};
pub use definition::{Campaign, Campaigns, Company, Definition, FileError};

use crate::pipeline::evaluator::{Chunk, Chunking, Evaluator, Input, LineRead, SeenIds};
use crate::pipeline::output::{Spool, io_error, write_error_line};
use crate::runtime::worker::Worker;

/// One message of the send list.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SendRow {
    /// The customer.
    pub customer: String,
    /// The campaign's code.
    pub campaign: String,
    /// The variant, if the campaign has variants.
    pub variant: Option<String>,
    /// The channel.
    #[schema(value_type = String)]
    pub channel: regua_sdk::Channel,
    /// The template.
    pub template: String,
    /// Marketing or transactional.
    #[schema(value_type = String)]
    pub category: regua_sdk::Category,
    /// When to send it.
    #[schema(value_type = String)]
    pub send_at: regua_sdk::Timestamp,
    /// When it was decided (the run's `now`): earlier than `send_at` for a deferred message.
    /// A readout's conversion window starts here, as it does from the decision log.
    #[schema(value_type = String)]
    pub decided_at: regua_sdk::Timestamp,
    /// The journey, if a journey sends it.
    pub journey: Option<String>,
    /// The journey's step.
    pub step: Option<String>,
}

impl CustomerRun {
    /// The customer's planned messages as send-list rows.
    pub fn send_rows(&self) -> Vec<SendRow> {
        self.planned()
            .map(|(d, m)| SendRow {
                customer: self.customer.id.clone(),
                campaign: d.campaign.clone(),
                variant: d.variant.clone(),
                channel: m.channel,
                template: m.template.clone(),
                category: m.category,
                send_at: m.send_at,
                decided_at: self.now,
                journey: m.journey.clone(),
                step: m.step.clone(),
            })
            .collect()
    }

    /// The answer for this customer: its planned messages, every campaign's decision, and its
    /// journey states after the run.
    pub fn answer(&self) -> Answer<'_> {
        Answer {
            id: &self.customer.id,
            messages: self.send_rows(),
            decisions: &self.decisions,
            journeys: &self.customer.journeys,
        }
    }
}

/// One customer's answer line.
#[derive(Debug, Serialize)]
pub struct Answer<'a> {
    /// The customer.
    pub id: &'a str,
    /// The planned messages, in campaign order.
    pub messages: Vec<SendRow>,
    /// Every campaign's decision, in run order.
    pub decisions: &'a [Decision],
    /// The customer's journey states after the run.
    pub journeys: &'a [regua_sdk::JourneyState],
}

/// One campaign's funnel over a run: customers read = inactive + in audience + not in
/// audience; in audience = held out + planned + denied + nothing to do + errors (a deferred
/// message is planned, with a later `send_at`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Funnel {
    /// The campaign's code.
    pub campaign: String,
    /// Its name.
    pub name: String,
    /// Customers read.
    pub read: u64,
    /// Customers met outside the campaign's window.
    pub inactive: u64,
    /// Customers not in the audience.
    pub not_in_audience: u64,
    /// Customers in the audience.
    pub in_audience: u64,
    /// In the audience and held out (holdout or control variant).
    pub held_out: u64,
    /// Customers with at least one message planned.
    pub planned: u64,
    /// Of those, customers with a message deferred to a later `send_at`.
    pub deferred: u64,
    /// Customers whose every message was denied.
    pub denied: u64,
    /// Customers the journey had nothing for now.
    pub nothing_to_do: u64,
    /// Customers on whom a plugin failed.
    pub errors: u64,
    /// Denied messages by `rule/REASON`.
    pub denials: BTreeMap<String, u64>,
    /// Deferred messages by rule.
    pub defers: BTreeMap<String, u64>,
    /// Planned messages by variant (`-` without variants), then channel.
    pub sent: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Funnel {
    fn count(&mut self, d: &Decision) {
        self.read += 1;
        match d.outcome {
            Kind::Inactive => self.inactive += 1,
            Kind::NotInAudience => self.not_in_audience += 1,
            other => {
                self.in_audience += 1;
                match other {
                    Kind::HeldOut => self.held_out += 1,
                    Kind::Planned => self.planned += 1,
                    Kind::Denied => self.denied += 1,
                    Kind::NothingToDo => self.nothing_to_do += 1,
                    _ => self.errors += 1,
                }
            }
        }
        if d.messages.iter().any(|m| m.deferred_by.is_some()) {
            self.deferred += 1;
        }
        for x in &d.denied {
            *self
                .denials
                .entry(format!("{}/{}", x.rule, x.reason))
                .or_default() += 1;
        }
        for m in &d.messages {
            if let Some(rule) = &m.deferred_by {
                *self.defers.entry(rule.clone()).or_default() += 1;
            }
            let variant = d.variant.clone().unwrap_or_else(|| "-".into());
            *self
                .sent
                .entry(variant)
                .or_default()
                .entry(m.channel.as_str().to_owned())
                .or_default() += 1;
        }
    }
}

/// What a campaign run did: the funnel of every campaign, in run order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Input lines read.
    pub lines: u64,
    /// Customers read (lines that held a valid record with a new id).
    pub customers: u64,
    /// Lines answered with an error: not a valid record, or a repeated id.
    pub bad_lines: u64,
    /// Messages planned, over every campaign.
    pub messages: u64,
    /// Per campaign.
    pub campaigns: Vec<Funnel>,
}

impl Report {
    /// An empty report for `campaigns`.
    pub fn new(campaigns: &Campaigns) -> Report {
        Report {
            campaigns: campaigns
                .campaigns
                .iter()
                .map(|c| Funnel {
                    campaign: c.def.code.clone(),
                    name: c.def.name.clone(),
                    ..Funnel::default()
                })
                .collect(),
            ..Report::default()
        }
    }

    /// Counts one customer's run.
    pub fn count(&mut self, run: &CustomerRun) {
        self.customers += 1;
        for (f, d) in self.campaigns.iter_mut().zip(&run.decisions) {
            f.count(d);
            self.messages += d.messages.len() as u64;
        }
    }

    /// The report as a table for people.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} customers read, {} messages planned, {} lines with an error\n\
             (later: of the planned, those with a message deferred to a later send_at; not \
             counted again)\n",
            self.customers, self.messages, self.bad_lines
        );
        s.push_str(&format!(
            "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "campaign",
            "read",
            "audience",
            "held out",
            "planned",
            "(later)",
            "denied",
            "nothing",
            "errors"
        ));
        for f in &self.campaigns {
            s.push_str(&format!(
                "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                f.campaign,
                f.read,
                f.in_audience,
                f.held_out,
                f.planned,
                f.deferred,
                f.denied,
                f.nothing_to_do,
                f.errors
            ));
            if f.inactive > 0 {
                s.push_str("  inactive at this instant\n");
            }
            for (rule, n) in &f.denials {
                s.push_str(&format!("  denied by {rule}: {n}\n"));
            }
            for (rule, n) in &f.defers {
                s.push_str(&format!("  deferred by {rule}: {n}\n"));
            }
            for (variant, by_channel) in &f.sent {
                let channels: Vec<String> =
                    by_channel.iter().map(|(c, n)| format!("{c} {n}")).collect();
                s.push_str(&format!(
                    "  sent, variant {variant}: {}\n",
                    channels.join(", ")
                ));
            }
        }
        s
    }
}

/// One input line's answer.
#[derive(Debug)]
pub struct LineOut {
    /// The line number (1-based).
    pub line: u64,
    /// The answer line, newline included.
    pub text: Vec<u8>,
    /// The run, for a valid record.
    pub run: Option<CustomerRun>,
    /// The run's decision-log lines, when the plan logs.
    pub log: Vec<u8>,
    /// How many lines `log` holds.
    pub logged: u64,
}

/// Decides one chunk of NDJSON lines: parses each record once, for what the plan's plugins read,
/// runs the campaigns over the valid ones, and answers every line in order.
pub fn process(worker: &mut Worker, plan: &Plan, chunk: Chunk) -> Vec<LineOut> {
    let (mut customers, mut reads) = chunk.read(plan.reads());
    if let Some(log) = &plan.log {
        log.refuse_oversized(&mut customers, &mut reads);
    }
    // The log hashes each record as read, before the run moves its journeys.
    let inputs: Vec<_> = match &plan.log {
        Some(log) => customers.iter().map(|c| log.input_of(c)).collect(),
        None => Vec::new(),
    };
    let mut runs = plan.run(worker, customers);
    let mut logs: Vec<(Vec<u8>, u64)> = match &plan.log {
        Some(log) => runs
            .iter_mut()
            .zip(inputs)
            .map(|(run, input)| log.campaign_lines(plan, run, input))
            .collect(),
        None => Vec::new(),
    }
    .into_iter()
    .rev()
    .collect();
    let mut runs = runs.into_iter();
    reads
        .into_iter()
        .enumerate()
        .map(|(i, read)| {
            let line = chunk.first_line + i as u64;
            let mut text = Vec::new();
            let (mut log, mut logged) = (Vec::new(), 0);
            let run = match read {
                LineRead::Record(_) => {
                    let run = runs.next().expect("one run per valid record");
                    serde_json::to_writer(&mut text, &run.answer()).expect("writing to a Vec");
                    text.push(b'\n');
                    (log, logged) = logs.pop().unwrap_or_default();
                    Some(run)
                }
                LineRead::Bad(id, e) => {
                    write_error_line(&mut text, line, id.as_deref(), &e);
                    None
                }
            };
            LineOut {
                line,
                text,
                run,
                log,
                logged,
            }
        })
        .collect()
}

/// How a campaign run writes its send list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SendListFormat {
    /// One JSON object per message.
    #[default]
    Ndjson,
    /// A header, then a row per message.
    Csv,
    /// Apache Parquet (snappy), a typed column per field (`send_at` a UTC timestamp in
    /// milliseconds), in row groups of 65,536 messages: for a data lake.
    Parquet,
}

/// A send list's columns, in order: the CSV header, and how a reader tells a CSV send list.
pub const SEND_LIST_COLUMNS: [&str; 10] = [
    "customer",
    "campaign",
    "variant",
    "channel",
    "template",
    "category",
    "send_at",
    "decided_at",
    "journey",
    "step",
];

/// Messages per Parquet row group of a send list.
const SEND_ROWS_PER_GROUP: usize = 65_536;

/// Writes send-list rows.
pub struct SendList<W: Write> {
    out: W,
    format: SendListFormat,
    header: bool,
    parquet: Option<ParquetRows>,
}

/// A Parquet send list being written: rows wait for a row group; the writer writes into a
/// spool that goes to the output after each group (the output need not be `Send`).
struct ParquetRows {
    writer: parquet::arrow::ArrowWriter<Spool>,
    spool: Spool,
    pending: Vec<SendRow>,
}

fn send_list_schema() -> arrow_schema::SchemaRef {
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("customer", false),
        text("campaign", false),
        text("variant", true),
        text("channel", false),
        text("template", false),
        text("category", false),
        Field::new(
            "send_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(
            "decided_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        text("journey", true),
        text("step", true),
    ]))
}

impl ParquetRows {
    fn new() -> std::io::Result<Self> {
        let spool = Spool::default();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_max_row_group_row_count(Some(SEND_ROWS_PER_GROUP))
            .build();
        let writer =
            parquet::arrow::ArrowWriter::try_new(spool.clone(), send_list_schema(), Some(props))
                .map_err(io_error)?;
        Ok(ParquetRows {
            writer,
            spool,
            pending: Vec::new(),
        })
    }

    /// Writes the pending rows as a row group, and what the writer wrote to `out`.
    fn write_group(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        use arrow_array::{ArrayRef, StringArray, TimestampMillisecondArray};
        if !self.pending.is_empty() {
            let rows = std::mem::take(&mut self.pending);
            let text = |f: &dyn Fn(&SendRow) -> Option<&str>| -> ArrayRef {
                Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
            };
            let instants = |f: &dyn Fn(&SendRow) -> regua_sdk::Timestamp| -> ArrayRef {
                let millis: Vec<i64> = rows.iter().map(|r| f(r).as_millis()).collect();
                Arc::new(TimestampMillisecondArray::from(millis).with_timezone("UTC"))
            };
            let columns: Vec<ArrayRef> = vec![
                text(&|r| Some(&r.customer)),
                text(&|r| Some(&r.campaign)),
                text(&|r| r.variant.as_deref()),
                text(&|r| Some(r.channel.as_str())),
                text(&|r| Some(&r.template)),
                text(&|r| Some(r.category.as_str())),
                instants(&|r| r.send_at),
                instants(&|r| r.decided_at),
                text(&|r| r.journey.as_deref()),
                text(&|r| r.step.as_deref()),
            ];
            let batch =
                arrow_array::RecordBatch::try_new(send_list_schema(), columns).map_err(io_error)?;
            self.writer.write(&batch).map_err(io_error)?;
            self.writer.flush().map_err(io_error)?;
        }
        self.drain(out)
    }

    fn drain(&self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(&self.spool.take())
    }
}

impl<W: Write> SendList<W> {
    /// A send list written to `out`.
    pub fn new(out: W, format: SendListFormat) -> std::io::Result<Self> {
        Ok(SendList {
            out,
            format,
            header: false,
            parquet: match format {
                SendListFormat::Parquet => Some(ParquetRows::new()?),
                _ => None,
            },
        })
    }

    /// Writes `rows`.
    pub fn write(&mut self, rows: &[SendRow]) -> std::io::Result<()> {
        match self.format {
            SendListFormat::Ndjson => {
                for r in rows {
                    serde_json::to_writer(&mut self.out, r)?;
                    self.out.write_all(b"\n")?;
                }
            }
            SendListFormat::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(Vec::new());
                if !self.header {
                    w.write_record(SEND_LIST_COLUMNS)?;
                    self.header = true;
                }
                for r in rows {
                    w.write_record([
                        r.customer.as_str(),
                        &r.campaign,
                        r.variant.as_deref().unwrap_or(""),
                        r.channel.as_str(),
                        &r.template,
                        r.category.as_str(),
                        &r.send_at.to_string(),
                        &r.decided_at.to_string(),
                        r.journey.as_deref().unwrap_or(""),
                        r.step.as_deref().unwrap_or(""),
                    ])?;
                }
                let bytes = w.into_inner().map_err(|e| e.into_error())?;
                self.out.write_all(&bytes)?;
            }
            SendListFormat::Parquet => {
                let p = self
                    .parquet
                    .as_mut()
                    .expect("a Parquet send list has its writer");
                p.pending.extend_from_slice(rows);
                if p.pending.len() >= SEND_ROWS_PER_GROUP {
                    p.write_group(&mut self.out)?;
                }
            }
        }
        Ok(())
    }

    /// Writes what is left (a Parquet file's last row group and footer) and flushes. Call it
    /// once, after the last rows.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if let Some(mut p) = self.parquet.take() {
            p.write_group(&mut self.out)?;
            let spool = p.spool.clone();
            p.writer.close().map_err(io_error)?;
            self.out.write_all(&spool.take())?;
        }
        self.out.flush()
    }
}

/// Puts chunks' answers in the stream: a repeated customer id gets an error line (its messages
/// are not planned twice), the funnel counts, and `rows` gets each line's send-list rows.
pub struct RunCollator {
    seen: SeenIds,
    log: Option<Arc<dyn crate::pipeline::recorder::Recorder>>,
    /// The funnel so far.
    pub report: Report,
}

impl RunCollator {
    /// A collator for a run of `plan`: the decisions of the lines it keeps go to the plan's log.
    pub fn new(plan: &Plan, allow_repeated_ids: bool) -> Self {
        let campaigns = &plan.campaigns;
        RunCollator {
            log: plan.log.clone(),
            seen: SeenIds::new(allow_repeated_ids),
            report: Report::new(campaigns),
        }
    }

    /// The output of a chunk's lines, and their send-list rows.
    pub fn take(&mut self, lines: Vec<LineOut>) -> (Vec<u8>, Vec<SendRow>) {
        let mut out = Vec::new();
        let mut rows = Vec::new();
        for l in lines {
            self.report.lines += 1;
            let Some(run) = l.run else {
                self.report.bad_lines += 1;
                out.extend_from_slice(&l.text);
                continue;
            };
            let id = &run.customer.id;
            if self.seen.repeated(id) {
                self.report.bad_lines += 1;
                write_error_line(
                    &mut out,
                    l.line,
                    Some(id),
                    "this customer id is on an earlier line; only the first is decided, so no \
                     customer gets a campaign's messages twice (merge the records, or allow \
                     repeated ids)",
                );
                continue;
            }
            self.report.count(&run);
            if let Some(log) = &self.log {
                log.record(l.log, l.logged);
            }
            rows.extend(run.send_rows());
            out.extend_from_slice(&l.text);
        }
        (out, rows)
    }
}

/// How a campaign run goes.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// How the input is cut into chunks.
    pub chunking: Chunking,
    /// Decide every line even when its customer id was on an earlier line.
    pub allow_repeated_ids: bool,
}

/// Runs `plan` over every line of `input`: one answer line per input line to `output`, in input
/// order; the planned messages to `send_list`; `progress` with (lines, bytes) after each chunk.
pub fn run(
    evaluator: &Evaluator,
    plan: Arc<Plan>,
    input: Input<'_>,
    mut output: impl Write,
    mut send_list: Option<&mut SendList<Box<dyn Write>>>,
    options: &RunOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<Report> {
    let mut collator = RunCollator::new(&plan, options.allow_repeated_ids);
    let mut bytes = 0u64;
    let mut list_error: Option<std::io::Error> = None;
    evaluator.run_lines(
        input,
        &mut output,
        options.chunking,
        Arc::new(move |worker: &mut Worker, chunk: Chunk| {
            let n = chunk.bytes();
            (n, process(worker, &plan, chunk))
        }),
        &mut |(n, lines)| {
            bytes += n;
            let (out, rows) = collator.take(lines);
            if let Some(list) = send_list.as_deref_mut()
                && list_error.is_none()
                && let Err(e) = list.write(&rows)
            {
                list_error = Some(e);
            }
            progress(collator.report.lines, bytes);
            (out, None)
        },
    )?;
    if let Some(e) = list_error {
        return Err(anyhow::Error::new(e).context("cannot write the send list"));
    }
    if let Some(list) = send_list {
        list.finish()
            .map_err(|e| anyhow::Error::new(e).context("cannot write the send list"))?;
    }
    Ok(collator.report)
}
