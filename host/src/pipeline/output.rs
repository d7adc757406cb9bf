//! The JSON shapes of answers: every result names the plugin and its version.

use std::io::Write;
use std::sync::Arc;

use regua_sdk::{Action, Verdict};
use serde::Serialize;

use crate::runtime::plugin::Plugin;
use crate::runtime::worker::{Outcome, RecordResult};

#[derive(Serialize)]
struct Tagged<'a> {
    plugin: &'a str,
    version: &'a str,
    /// The decision's id when the decisions are logged: its own key, as a rest policy's answer
    /// says `decision` for its verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    decision_id: Option<&'a str>,
    #[serde(flatten)]
    body: Body<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Body<'a> {
    Ok(&'a Outcome),
    Err { error: &'a str },
}

fn tagged<'a>(plugin: &'a Plugin, result: &'a RecordResult) -> Tagged<'a> {
    Tagged {
        plugin: plugin.name(),
        version: &plugin.version,
        decision_id: None,
        body: match result {
            Ok(o) => Body::Ok(o),
            Err(e) => Body::Err { error: e },
        },
    }
}

/// One plugin's answer as a JSON value: the kind's result (or `error`) with `plugin` and
/// `version`.
pub fn result_value(plugin: &Plugin, result: &RecordResult) -> serde_json::Value {
    serde_json::to_value(tagged(plugin, result)).expect("results serialize")
}

/// Appends one output line for a record all plugins answered:
/// `{"id":…,"results":{"<plugin>":{…},…}}`, each answer with its decision id when `decisions`
/// has them (one per plugin, when the decisions are logged).
pub fn write_results_line<'a>(
    out: &mut Vec<u8>,
    id: &str,
    results: impl Iterator<Item = (&'a Plugin, &'a RecordResult)>,
    decisions: &[String],
) {
    out.extend_from_slice(b"{\"id\":");
    serde_json::to_writer(&mut *out, id).expect("writing to a Vec");
    out.extend_from_slice(b",\"results\":{");
    for (i, (plugin, result)) in results.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, plugin.name()).expect("writing to a Vec");
        out.push(b':');
        let mut t = tagged(plugin, result);
        t.decision_id = decisions.get(i).map(String::as_str);
        serde_json::to_writer(&mut *out, &t).expect("writing to a Vec");
    }
    out.extend_from_slice(b"}}\n");
}

/// Appends one output line for a record that could not be read:
/// `{"line":N,"id":…,"error":"…"}`.
pub fn write_error_line(out: &mut Vec<u8>, line: u64, id: Option<&str>, error: &str) {
    #[derive(Serialize)]
    struct ErrorLine<'a> {
        line: u64,
        id: Option<&'a str>,
        error: &'a str,
    }
    serde_json::to_writer(&mut *out, &ErrorLine { line, id, error }).expect("writing to a Vec");
    out.push(b'\n');
}

/// How batch answers are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line, with every plugin's full answer and reasons.
    #[default]
    Ndjson,
    /// A header, then `line,id,<plugin>…,error`: one column per plugin with its short answer
    /// (`true`/`false`, `allow`/`defer`/`deny`, a journey's actions), for spreadsheets and
    /// loaders.
    Csv,
}

impl Format {
    /// The media type of the answers.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// The CSV header for `plugins`.
pub fn write_csv_header<'a>(out: &mut Vec<u8>, plugins: impl Iterator<Item = &'a str>) {
    let mut w = csv_writer(out);
    let header = ["line", "id"].into_iter().chain(plugins).chain(["error"]);
    w.write_record(header).expect("writing to a Vec");
}

fn csv_writer(out: &mut Vec<u8>) -> csv::Writer<&mut Vec<u8>> {
    csv::WriterBuilder::new()
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(out)
}

/// The short form of an answer, for a CSV cell.
fn short(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Segment(m) => m.matched.to_string(),
        Outcome::Rest(d) => d.decision.as_str().to_owned(),
        Outcome::Journey(j) => j
            .actions
            .iter()
            .map(|a| match a {
                Action::Enter { journey, .. } => format!("enter:{journey}"),
                Action::Send {
                    channel, template, ..
                } => format!("send:{channel}:{template}"),
                Action::WaitUntil { until } => format!("wait_until:{until}"),
                Action::WaitForEvent { event, .. } => format!("wait_for_event:{event}"),
                Action::MoveTo { step } => format!("move_to:{step}"),
                Action::SetFunnelStage { stage } => format!("set_funnel_stage:{stage}"),
                Action::Exit { reason } => format!("exit:{reason}"),
                Action::Complete => "complete".into(),
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Appends one CSV row for a record all plugins answered; failures read `error` in their column
/// and their messages, by plugin, in the `error` column.
pub fn write_csv_row<'a>(
    out: &mut Vec<u8>,
    line: u64,
    id: &str,
    results: impl Iterator<Item = (&'a Plugin, &'a RecordResult)>,
) {
    let mut cells = vec![line.to_string(), id.to_owned()];
    let mut errors = Vec::new();
    for (plugin, result) in results {
        cells.push(match result {
            Ok(o) => short(o),
            Err(e) => {
                errors.push(format!("{}: {e}", plugin.name()));
                "error".into()
            }
        });
    }
    cells.push(errors.join("; "));
    csv_writer(out)
        .write_record(&cells)
        .expect("writing to a Vec");
}

/// Appends one CSV row for a line that could not be read: empty plugin columns, the message in
/// `error`.
pub fn write_csv_error(
    out: &mut Vec<u8>,
    line: u64,
    id: Option<&str>,
    plugins: usize,
    error: &str,
) {
    let line = line.to_string();
    let cells = [line.as_str(), id.unwrap_or("")]
        .into_iter()
        .chain(std::iter::repeat_n("", plugins))
        .chain([error]);
    csv_writer(out)
        .write_record(cells)
        .expect("writing to a Vec");
}

/// Appends one answer line in `format` for a line that could not be read.
pub fn write_error(
    format: Format,
    out: &mut Vec<u8>,
    line: u64,
    id: Option<&str>,
    plugins: usize,
    error: &str,
) {
    match format {
        Format::Ndjson => write_error_line(out, line, id, error),
        Format::Csv => write_csv_error(out, line, id, plugins, error),
    }
}

/// Counts of answers of one plugin over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Segment: customers in the segment.
    pub matched: u64,
    /// Segment: customers not in it.
    pub unmatched: u64,
    /// Rest: allowed.
    pub allow: u64,
    /// Rest: deferred.
    pub defer: u64,
    /// Rest: denied.
    pub deny: u64,
    /// Journey: customers with at least one action.
    pub with_actions: u64,
    /// Journey: customers with nothing to do.
    pub idle: u64,
    /// Customers the plugin failed on.
    pub failed: u64,
}

/// What kind of answer a plugin gave one customer, as a [`Tally`] counts it: a byte, so a chunk's
/// answers can be counted (or left out) after they are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// In the segment.
    Matched,
    /// Not in the segment.
    Unmatched,
    /// Rest: allow.
    Allow,
    /// Rest: defer.
    Defer,
    /// Rest: deny.
    Deny,
    /// Journey: something to do.
    WithActions,
    /// Journey: nothing to do.
    Idle,
    /// The plugin failed.
    Failed,
}

impl Class {
    /// The class of `result`.
    pub fn of(result: &RecordResult) -> Class {
        match result {
            Ok(Outcome::Segment(m)) if m.matched => Class::Matched,
            Ok(Outcome::Segment(_)) => Class::Unmatched,
            Ok(Outcome::Rest(d)) => match d.decision {
                Verdict::Allow => Class::Allow,
                Verdict::Defer => Class::Defer,
                Verdict::Deny => Class::Deny,
            },
            Ok(Outcome::Journey(j)) if j.actions.is_empty() => Class::Idle,
            Ok(Outcome::Journey(_)) => Class::WithActions,
            Err(_) => Class::Failed,
        }
    }
}

impl Tally {
    /// Counts one answer of `class`.
    pub fn count(&mut self, class: Class) {
        let n = match class {
            Class::Matched => &mut self.matched,
            Class::Unmatched => &mut self.unmatched,
            Class::Allow => &mut self.allow,
            Class::Defer => &mut self.defer,
            Class::Deny => &mut self.deny,
            Class::WithActions => &mut self.with_actions,
            Class::Idle => &mut self.idle,
            Class::Failed => &mut self.failed,
        };
        *n += 1;
    }

    /// Adds another tally.
    pub fn merge(&mut self, other: &Tally) {
        self.matched += other.matched;
        self.unmatched += other.unmatched;
        self.allow += other.allow;
        self.defer += other.defer;
        self.deny += other.deny;
        self.with_actions += other.with_actions;
        self.idle += other.idle;
        self.failed += other.failed;
    }

    /// A one-line summary for `kind`.
    pub fn describe(&self, kind: regua_sdk::Kind) -> String {
        let body = match kind {
            regua_sdk::Kind::Segment => {
                format!("{} in segment, {} not", self.matched, self.unmatched)
            }
            regua_sdk::Kind::Rest => {
                format!(
                    "{} allow, {} defer, {} deny",
                    self.allow, self.defer, self.deny
                )
            }
            regua_sdk::Kind::Journey => {
                format!(
                    "{} with actions, {} with nothing to do",
                    self.with_actions, self.idle
                )
            }
        };
        if self.failed > 0 {
            format!("{body}, {} FAILED", self.failed)
        } else {
            body
        }
    }
}

/// Bytes a Parquet writer wrote, for the owner to take after each row group (so the final
/// output need not be `Send`, as the writer requires of what it writes to).
#[derive(Clone, Default)]
pub struct Spool(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Spool {
    /// The bytes written since the last take.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("spool lock"))
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("spool lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An error of a writer as an I/O error.
pub fn io_error(e: impl std::error::Error + Send + Sync + 'static) -> std::io::Error {
    std::io::Error::other(e)
}

/// Rows per Parquet row group of batch answers.
const ANSWER_ROWS_PER_GROUP: usize = 65_536;

/// Batch answers as Parquet: takes the CSV answers (`line,id,<plugin>…,error`, header first) as
/// they are written, in input order, and writes the same columns typed: `line` an unsigned
/// integer, a segment's column a boolean, a rest policy's or journey's its short answer as text,
/// an empty or `error` cell null (the `error` column says why). The CSV path stays the one place
/// answers are formatted; this only reads its records back.
pub struct ParquetAnswers<W: Write> {
    out: W,
    segments: Vec<bool>,
    schema: arrow_schema::SchemaRef,
    writer: Option<parquet::arrow::ArrowWriter<Spool>>,
    spool: Spool,
    /// CSV bytes not yet read (the tail of an unfinished record).
    pending: Vec<u8>,
    header_seen: bool,
    rows: Vec<csv::StringRecord>,
}

impl<W: Write> ParquetAnswers<W> {
    /// Answers of plugins named `names` (whether each is a segment in `segments`) to `out`.
    pub fn new(out: W, names: &[String], segments: Vec<bool>) -> std::io::Result<Self> {
        use arrow_schema::{DataType, Field, Schema};
        let mut fields = vec![
            Field::new("line", DataType::UInt64, false),
            Field::new("id", DataType::Utf8, true),
        ];
        for (name, segment) in names.iter().zip(&segments) {
            let t = if *segment {
                DataType::Boolean
            } else {
                DataType::Utf8
            };
            fields.push(Field::new(name, t, true));
        }
        fields.push(Field::new("error", DataType::Utf8, true));
        let schema = std::sync::Arc::new(Schema::new(fields));
        let spool = Spool::default();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ANSWER_ROWS_PER_GROUP))
            .build();
        let writer =
            parquet::arrow::ArrowWriter::try_new(spool.clone(), schema.clone(), Some(props))
                .map_err(io_error)?;
        Ok(ParquetAnswers {
            out,
            segments,
            schema,
            writer: Some(writer),
            spool,
            pending: Vec::new(),
            header_seen: false,
            rows: Vec::new(),
        })
    }

    /// Reads the complete CSV records of `pending`: those ending at a newline outside quotes.
    fn read_records(&mut self) -> std::io::Result<()> {
        let mut quoted = false;
        let mut cut = 0;
        for (i, b) in self.pending.iter().enumerate() {
            match b {
                b'"' => quoted = !quoted,
                b'\n' if !quoted => cut = i + 1,
                _ => {}
            }
        }
        if cut == 0 {
            return Ok(());
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&self.pending[..cut]);
        for record in reader.records() {
            let record = record.map_err(io_error)?;
            if !self.header_seen {
                self.header_seen = true;
                continue;
            }
            self.rows.push(record);
        }
        self.pending.drain(..cut);
        if self.rows.len() >= ANSWER_ROWS_PER_GROUP {
            self.write_group()?;
        }
        Ok(())
    }

    fn write_group(&mut self) -> std::io::Result<()> {
        use arrow_array::{ArrayRef, BooleanArray, StringArray, UInt64Array};
        let rows = std::mem::take(&mut self.rows);
        if !rows.is_empty() {
            fn cell(r: &csv::StringRecord, i: usize) -> Option<&str> {
                r.get(i).filter(|c| !c.is_empty() && *c != "error")
            }
            let text = |i: usize| -> ArrayRef {
                Arc::new(StringArray::from(
                    rows.iter().map(|r| cell(r, i)).collect::<Vec<_>>(),
                ))
            };
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(UInt64Array::from(
                    rows.iter()
                        .map(|r| r.get(0).and_then(|c| c.parse().ok()).unwrap_or(0))
                        .collect::<Vec<u64>>(),
                )),
                text(1),
            ];
            for (k, segment) in self.segments.iter().enumerate() {
                let i = k + 2;
                columns.push(if *segment {
                    Arc::new(BooleanArray::from(
                        rows.iter()
                            .map(|r| cell(r, i).map(|c| c == "true"))
                            .collect::<Vec<_>>(),
                    ))
                } else {
                    text(i)
                });
            }
            let error = self.segments.len() + 2;
            columns.push(Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| r.get(error).filter(|c| !c.is_empty()))
                    .collect::<Vec<_>>(),
            )));
            let batch = arrow_array::RecordBatch::try_new(self.schema.clone(), columns)
                .map_err(io_error)?;
            let writer = self.writer.as_mut().expect("open until finished");
            writer.write(&batch).map_err(io_error)?;
            writer.flush().map_err(io_error)?;
        }
        self.out.write_all(&self.spool.take())
    }

    /// Writes the last rows and the file's footer.
    pub fn finish(mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.pending.push(b'\n');
            self.read_records()?;
        }
        self.write_group()?;
        if let Some(w) = self.writer.take() {
            w.close().map_err(io_error)?;
        }
        self.out.write_all(&self.spool.take())?;
        self.out.flush()
    }
}

impl<W: Write> Write for ParquetAnswers<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        self.read_records()?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Campaign-run answers as Parquet: one row per input line, in order, decoded from the NDJSON
/// answers by a fixed schema (`docs/CAMPAIGNS.md`): `line`, `id`, `error` (a line that is not a
/// valid record, or a repeated id), `messages`, `decisions` (campaign, outcome, variant,
/// reasons, error) and `journeys` (the new journey states), lists of structs with timestamps as
/// UTC milliseconds. The NDJSON answer stays the one place answers are formatted.
pub struct ParquetRunAnswers<W: Write> {
    out: W,
    decoder: arrow_json::reader::Decoder,
    schema: arrow_schema::SchemaRef,
    writer: Option<parquet::arrow::ArrowWriter<Spool>>,
    spool: Spool,
    /// Bytes of an answer line not yet complete.
    pending: Vec<u8>,
    /// Lines decoded and not yet written.
    decoded: usize,
    /// Lines written.
    lines: u64,
}

fn run_answers_schema() -> arrow_schema::SchemaRef {
    use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let instant = |name: &str| {
        // An offset, not a zone name: the JSON decoder resolves only offsets.
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            true,
        )
    };
    let list_of = |name: &str, fields: Vec<Field>| {
        let item = Field::new("item", DataType::Struct(Fields::from(fields)), true);
        Field::new(name, DataType::List(Arc::new(item)), true)
    };
    let message = vec![
        text("campaign"),
        text("variant"),
        text("channel"),
        text("template"),
        text("category"),
        instant("send_at"),
        instant("decided_at"),
        text("journey"),
        text("step"),
    ];
    let reasons = Field::new(
        "reasons",
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        true,
    );
    Arc::new(Schema::new(vec![
        text("id"),
        text("error"),
        list_of("messages", message),
        list_of(
            "decisions",
            vec![
                text("campaign"),
                text("outcome"),
                text("variant"),
                reasons,
                text("error"),
            ],
        ),
        list_of(
            "journeys",
            vec![
                text("journey"),
                Field::new("instance", DataType::UInt32, true),
                text("status"),
                instant("entered_at"),
                text("step"),
                instant("step_entered_at"),
                text("variant"),
                text("exit_reason"),
            ],
        ),
    ]))
}

impl<W: Write> ParquetRunAnswers<W> {
    /// Answers written to `out`.
    pub fn new(out: W) -> std::io::Result<Self> {
        let schema = run_answers_schema();
        let decoder = arrow_json::ReaderBuilder::new(schema.clone())
            .with_batch_size(ANSWER_ROWS_PER_GROUP)
            .build_decoder()
            .map_err(io_error)?;
        let mut fields: Vec<arrow_schema::FieldRef> = vec![Arc::new(arrow_schema::Field::new(
            "line",
            arrow_schema::DataType::UInt64,
            false,
        ))];
        fields.extend(schema.fields().iter().cloned());
        let written = Arc::new(arrow_schema::Schema::new(fields));
        let spool = Spool::default();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ANSWER_ROWS_PER_GROUP))
            .build();
        let writer =
            parquet::arrow::ArrowWriter::try_new(spool.clone(), written.clone(), Some(props))
                .map_err(io_error)?;
        Ok(ParquetRunAnswers {
            out,
            decoder,
            schema: written,
            writer: Some(writer),
            spool,
            pending: Vec::new(),
            decoded: 0,
            lines: 0,
        })
    }

    /// Decodes the complete lines of `pending`.
    fn decode_lines(&mut self) -> std::io::Result<()> {
        let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Ok(());
        };
        let complete: Vec<u8> = self.pending.drain(..=end).collect();
        for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let mut at = 0;
            while at < line.len() {
                at += self.decoder.decode(&line[at..]).map_err(io_error)?;
                if at < line.len() {
                    // The decoder's batch is full: write it, then go on with this line.
                    self.write_group()?;
                }
            }
            self.decoded += 1;
            if self.decoded >= ANSWER_ROWS_PER_GROUP {
                self.write_group()?;
            }
        }
        Ok(())
    }

    fn write_group(&mut self) -> std::io::Result<()> {
        if let Some(batch) = self.decoder.flush().map_err(io_error)? {
            let n = batch.num_rows() as u64;
            let line: arrow_array::ArrayRef = Arc::new(arrow_array::UInt64Array::from(
                (self.lines + 1..=self.lines + n).collect::<Vec<u64>>(),
            ));
            let mut columns = vec![line];
            columns.extend(batch.columns().iter().cloned());
            let batch = arrow_array::RecordBatch::try_new(self.schema.clone(), columns)
                .map_err(io_error)?;
            let writer = self.writer.as_mut().expect("open until finished");
            writer.write(&batch).map_err(io_error)?;
            writer.flush().map_err(io_error)?;
            self.lines += n;
        }
        self.decoded = 0;
        self.out.write_all(&self.spool.take())
    }

    /// Writes the last rows and the file's footer.
    pub fn finish(mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.pending.push(b'\n');
            self.decode_lines()?;
        }
        self.write_group()?;
        if let Some(w) = self.writer.take() {
            w.close().map_err(io_error)?;
        }
        self.out.write_all(&self.spool.take())?;
        self.out.flush()
    }
}

impl<W: Write> Write for ParquetRunAnswers<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        self.decode_lines()?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
