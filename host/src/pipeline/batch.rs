//! Plugins side by side over NDJSON: each record read once, for what the plugins read between
//! them, every plugin evaluated over a chunk in one call, one output line per input line in
//! input order, on the [`Evaluator`]. Memory is bounded by the chunk size and the queue depth,
//! not the input size.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use regua_sdk::{Fields, Record};

use crate::pipeline::evaluator::{Chunk, Chunking, Evaluator, Input, LineRead, SeenIds};
use crate::pipeline::output::{self, Class, Format, Tally};
use crate::pipeline::recorder::Recorder;
use crate::runtime::chunk::EncodedBatch;
use crate::runtime::error::CallError;
use crate::runtime::plugin::Plugin;
use crate::runtime::worker::{Evaluation, RecordResult, Worker};

/// How a batch runs.
#[derive(Clone, Debug, Default)]
pub struct BatchOptions {
    /// How the input is cut into chunks.
    pub chunking: Chunking,
    /// Evaluate every line even when its customer id was on an earlier line.
    pub allow_repeated_ids: bool,
    /// How answers are written.
    pub format: Format,
    /// Stop once plugins have failed on this many customers (counted over every plugin): the
    /// lines answered so far are written, and the batch ends with an error saying so.
    pub max_failures: Option<u64>,
}

/// What a batch did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Input lines read (= output lines written).
    pub lines: u64,
    /// Lines answered with an error line: not a valid record, or a repeated id.
    pub bad_lines: u64,
    /// Input bytes read.
    pub bytes: u64,
    /// Per plugin, in the order given.
    pub tallies: Vec<Tally>,
    /// Wall time.
    pub elapsed: Duration,
}

/// A chunk's answers, before [`Collator`] puts them in the stream.
#[derive(Debug)]
pub struct Done {
    /// Line number of the chunk's first line.
    pub first_line: u64,
    /// One output line per input line.
    pub out: Vec<u8>,
    /// Per input line.
    pub lines: Vec<LineDone>,
    /// The ids of the records read, back to back.
    pub ids: String,
    /// For each record read, in order, the class of each plugin's answer.
    pub classes: Vec<Class>,
    /// Bytes read.
    pub bytes: u64,
    /// The decision-log lines of the records read, back to back, when the plugins log.
    pub log: Vec<u8>,
}

/// One input line's answer in [`Done::out`].
#[derive(Clone, Debug)]
pub struct LineDone {
    /// Where its output line ends in `out`.
    pub end: usize,
    /// For a record read, where its id is in `ids`; `None` for an error line.
    pub id: Option<std::ops::Range<usize>>,
    /// Where its decision-log lines end in `log`.
    pub log_end: usize,
}

/// Plugins evaluated side by side over the same records. Each record is read once, for what
/// the plugins read between them, and held once as the columns of a chunk, from which each plugin
/// gets only what it declares.
#[derive(Debug)]
pub struct Plugins {
    evals: Vec<Evaluation>,
    /// What is read of each record (the plugins' reads, and what the log keeps).
    reads: Fields,
    /// What the plugins read between them: what their chunk holds.
    holds: Fields,
    /// Where each answer is logged as a decision, with the `now` of the call.
    log: Option<(Arc<dyn Recorder>, regua_sdk::Timestamp)>,
}

impl Plugins {
    /// The plan for `evals`.
    pub fn new(evals: Vec<Evaluation>) -> Plugins {
        let holds = evals
            .iter()
            .fold(Fields::default(), |all, e| all.union(e.plugin.fields()));
        Plugins {
            evals,
            reads: holds,
            holds,
            log: None,
        }
    }

    /// These plugins, logging each answer for each customer as a decision made at `now`.
    pub fn logging(mut self, log: Option<Arc<dyn Recorder>>, now: regua_sdk::Timestamp) -> Plugins {
        if let Some(log) = &log {
            // The fields the log keeps are read too (each plugin still sees its own reads).
            self.reads = self.reads.union(log.reads());
        }
        self.log = log.map(|l| (l, now));
        self
    }

    /// Checks every plugin before any record is read ([`Worker::check_all`]): one that fails
    /// answers its error for every customer; fails when every plugin does.
    pub fn check(mut self, worker: &mut Worker) -> Result<Plugins, CallError> {
        worker.check_all(&mut self.evals)?;
        Ok(self)
    }

    /// The evaluations, in the order given.
    pub fn evals(&self) -> &[Evaluation] {
        &self.evals
    }

    /// What is read of each record.
    pub fn reads(&self) -> Fields {
        self.reads
    }

    /// Every plugin over `customers`: per plugin, one answer per customer, or why the plugin
    /// refused the call as a whole.
    pub fn evaluate(
        &self,
        worker: &mut Worker,
        customers: &[Record],
    ) -> Vec<Result<Vec<RecordResult>, CallError>> {
        let mut batch = self.batch(worker);
        customers.iter().for_each(|c| batch.push(c));
        let answers = self.evaluate_batch(worker, &batch);
        worker.recycle(batch);
        answers
    }

    /// An empty chunk holding what these plugins read, to fill with [`EncodedBatch::push`] or
    /// straight from columns (give it back with [`Worker::recycle`]).
    pub fn batch(&self, worker: &mut Worker) -> EncodedBatch {
        worker.batch(self.holds)
    }

    /// Every plugin over the customers of `batch` ([`Plugins::batch`]).
    pub fn evaluate_batch(
        &self,
        worker: &mut Worker,
        batch: &EncodedBatch,
    ) -> Vec<Result<Vec<RecordResult>, CallError>> {
        self.evals
            .iter()
            .map(|eval| worker.evaluate(eval, batch))
            .collect()
    }

    /// One customer, as a batch of one: per plugin, its answer or why it refused the call.
    pub fn evaluate_one(
        &self,
        worker: &mut Worker,
        customer: Record,
    ) -> Vec<(Arc<Plugin>, Result<RecordResult, CallError>)> {
        let answers = self.evaluate(worker, std::slice::from_ref(&customer));
        let first = |r: Result<Vec<RecordResult>, _>| r.map(|mut r| r.remove(0));
        self.evals
            .iter()
            .map(|e| e.plugin.clone())
            .zip(answers.into_iter().map(first))
            .collect()
    }
}

/// Reads, evaluates and writes one chunk: the batch's part of the [`Evaluator`].
pub fn process(worker: &mut Worker, plugins: &Plugins, chunk: Chunk, format: Format) -> Done {
    let evals = plugins.evals();
    let mut batch = plugins.batch(worker);
    // The log keeps each customer's input as a record; without one, no record is built.
    let (customers, reads) = match &plugins.log {
        Some((log, _)) => {
            let (mut customers, mut reads) = chunk.read(plugins.reads());
            log.refuse_oversized(&mut customers, &mut reads);
            customers.iter().for_each(|c| batch.push(c));
            (customers, reads)
        }
        None => (Vec::new(), chunk.fill(&mut batch)),
    };
    let mut results: Vec<Vec<RecordResult>> = plugins
        .evaluate_batch(worker, &batch)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| vec![Err(e.to_string()); batch.len()]))
        .collect();
    let mut done = Done {
        first_line: chunk.first_line,
        out: Vec::with_capacity(chunk.len() * 256),
        lines: Vec::with_capacity(chunk.len()),
        ids: String::new(),
        classes: Vec::with_capacity(batch.len() * evals.len()),
        bytes: chunk.bytes(),
        log: Vec::new(),
    };
    let mut decisions = Vec::new();
    for (offset, read) in reads.iter().enumerate() {
        let line = chunk.first_line + offset as u64;
        let id = match read {
            LineRead::Record(i) => {
                let id = batch.id(*i);
                for r in &mut results {
                    done.classes.push(Class::of(&r[*i]));
                    // In a batch, a plugin's failure also names the input line.
                    if let Err(e) = &mut r[*i] {
                        *e = format!("line {line}: {e}");
                    }
                }
                let row = || {
                    evals
                        .iter()
                        .zip(&results)
                        .map(|(e, r)| (&*e.plugin, &r[*i]))
                };
                decisions.clear();
                if let Some((log, now)) = &plugins.log {
                    let input = log.input_of(&customers[*i]);
                    decisions = log.plugin_lines(*now, id, &input, &mut row(), &mut done.log);
                }
                let row = row();
                match format {
                    Format::Ndjson => {
                        output::write_results_line(&mut done.out, id, row, &decisions)
                    }
                    Format::Csv => output::write_csv_row(&mut done.out, line, id, row),
                }
                let start = done.ids.len();
                done.ids.push_str(id);
                Some(start..done.ids.len())
            }
            LineRead::Bad(id, error) => {
                let (out, n) = (&mut done.out, evals.len());
                output::write_error(format, out, line, id.as_deref(), n, error);
                None
            }
        };
        done.lines.push(LineDone {
            end: done.out.len(),
            id,
            log_end: done.log.len(),
        });
    }
    worker.recycle(batch);
    done
}

/// Takes chunks' answers in input order and counts them; unless repeats are allowed, a record
/// whose id an earlier line of the stream already had gets an error line instead of its answers.
pub struct Collator {
    seen: SeenIds,
    format: Format,
    log: Option<Arc<dyn Recorder>>,
    /// What went through so far.
    pub summary: Summary,
}

impl Collator {
    /// A collator for the answers of `plugins`, written in `format`.
    pub fn new(plugins: &Plugins, allow_repeated_ids: bool, format: Format) -> Self {
        let log = plugins.log.as_ref().map(|(l, _)| l.clone());
        let plugins = plugins.evals().len();
        Collator {
            seen: SeenIds::new(allow_repeated_ids),
            format,
            log,
            summary: Summary {
                tallies: vec![Tally::default(); plugins],
                ..Summary::default()
            },
        }
    }

    /// What the output starts with, before any chunk: the CSV header, nothing for NDJSON.
    pub fn header(&self, plugins: &Plugins) -> Vec<u8> {
        let mut out = Vec::new();
        if self.format == Format::Csv {
            let names = plugins.evals().iter().map(|e| e.plugin.name());
            output::write_csv_header(&mut out, names);
        }
        out
    }

    /// Counts the next chunk's answers and returns its output, with repeats turned into error
    /// lines, and the chunk's own tallies.
    pub fn take(&mut self, done: Done) -> (Vec<u8>, Vec<Tally>) {
        let plugins = self.summary.tallies.len();
        let mut tallies = vec![Tally::default(); plugins];
        let mut rewritten: Option<Vec<u8>> = None;
        let (mut start, mut record) = (0, 0);
        // The decisions of the lines kept: a repeated id's answers are not given, so not logged.
        let (mut log, mut logged, mut log_start) = (Vec::new(), 0, 0);
        for (offset, line) in done.lines.iter().enumerate() {
            let text = &done.out[start..line.end];
            let decisions = &done.log[log_start..line.log_end];
            start = line.end;
            log_start = line.log_end;
            let Some(id) = &line.id else {
                self.summary.bad_lines += 1;
                if let Some(out) = &mut rewritten {
                    out.extend_from_slice(text);
                }
                continue;
            };
            let id = &done.ids[id.clone()];
            let classes = &done.classes[record * plugins..(record + 1) * plugins];
            record += 1;
            if self.seen.repeated(id) {
                self.summary.bad_lines += 1;
                let out = rewritten.get_or_insert_with(|| {
                    let mut out = Vec::with_capacity(done.out.len());
                    out.extend_from_slice(&done.out[..line.end - text.len()]);
                    out
                });
                output::write_error(
                    self.format,
                    out,
                    done.first_line + offset as u64,
                    Some(id),
                    plugins,
                    "this customer id is on an earlier line of the batch; only the first is \
                     evaluated (merge the records, or allow repeated ids)",
                );
                continue;
            }
            for (tally, class) in tallies.iter_mut().zip(classes) {
                tally.count(*class);
            }
            if self.log.is_some() {
                log.extend_from_slice(decisions);
                logged += plugins as u64;
            }
            if let Some(out) = &mut rewritten {
                out.extend_from_slice(text);
            }
        }
        if let Some(sink) = &self.log {
            sink.record(log, logged);
        }
        self.summary.lines += done.lines.len() as u64;
        self.summary.bytes += done.bytes;
        for (total, t) in self.summary.tallies.iter_mut().zip(&tallies) {
            total.merge(t);
        }
        (rewritten.unwrap_or(done.out), tallies)
    }
}

/// Runs checked `plugins` ([`Plugins::check`]) over every line of `input`, writing one line per
/// input line to `output` in input order. `progress` is called with (lines, bytes) done after
/// each chunk.
pub fn run(
    evaluator: &Evaluator,
    plugins: Arc<Plugins>,
    input: Input<'_>,
    mut output: impl Write,
    options: &BatchOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let format = options.format;
    let mut collator = Collator::new(&plugins, options.allow_repeated_ids, format);
    output
        .write_all(&collator.header(&plugins))
        .context("cannot write output")?;
    evaluator.run_lines(
        input,
        &mut output,
        options.chunking,
        Arc::new(move |worker: &mut Worker, chunk| process(worker, &plugins, chunk, format)),
        &mut |done| {
            let (out, _) = collator.take(done);
            progress(collator.summary.lines, collator.summary.bytes);
            let failed: u64 = collator.summary.tallies.iter().map(|t| t.failed).sum();
            let stop = options.max_failures.filter(|&max| failed >= max).map(|max| {
                anyhow::anyhow!(
                    "stopped after {failed} plugin failures (--max-failures {max}): the first {} \
                     lines are answered in the output, the rest of the input was not read",
                    collator.summary.lines
                )
            });
            (out, stop)
        },
    )?;
    let mut summary = collator.summary;
    summary.elapsed = started.elapsed();
    Ok(summary)
}
