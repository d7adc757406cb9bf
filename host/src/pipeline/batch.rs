//! Streaming NDJSON batches: read lines in chunks, parse and encode each record once, evaluate
//! every plugin over the chunk on a pool of workers, and write one output line per input line in
//! input order. Memory is bounded by the chunk size and the queue depth, not the input size.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use crossbeam_channel::bounded;

use crate::pipeline::output::{self, Class, Format, Tally};
use crate::runtime::worker::{Evaluation, RecordResult, Worker};
use regua_sdk::Fields;

use crate::pipeline::record::{self, EncodedBatch};

/// How a batch runs.
#[derive(Clone, Debug)]
pub struct BatchOptions {
    /// Worker threads (at least one).
    pub threads: usize,
    /// Lines per chunk handed to a worker.
    pub chunk_lines: usize,
    /// Evaluate every line even when its customer id was on an earlier line.
    pub allow_repeated_ids: bool,
    /// How answers are written.
    pub format: Format,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chunk_lines: 1000,
            allow_repeated_ids: false,
            format: Format::Ndjson,
        }
    }
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

/// Consecutive input lines, handed to a worker at once.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Position in the stream (0, 1, …), to put answers back in order.
    pub seq: u64,
    /// Line number of the first line (1-based).
    pub first_line: u64,
    /// The lines, back to back, each with its newline if it had one.
    pub data: Vec<u8>,
    /// Where each line ends in `data`.
    pub ends: Vec<usize>,
    /// Lines (by index in the chunk) dropped for being too long to hold; each gets an error.
    pub oversized: Vec<usize>,
}

/// A chunk's answers, before [`Collator`] puts them in the stream.
#[derive(Debug)]
pub struct Done {
    /// The chunk's `seq`.
    pub seq: u64,
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
}

/// One input line's answer in [`Done::out`].
#[derive(Clone, Debug)]
pub struct LineDone {
    /// Where its output line ends in `out`.
    pub end: usize,
    /// For a record read, where its id is in `ids`; `None` for an error line.
    pub id: Option<std::ops::Range<usize>>,
}

fn read_chunks(
    mut input: impl BufRead,
    chunk_lines: usize,
    tx: crossbeam_channel::Sender<Chunk>,
) -> anyhow::Result<()> {
    let mut line_no = 1u64;
    for seq in 0.. {
        let mut chunk = Chunk {
            seq,
            first_line: line_no,
            data: Vec::with_capacity(chunk_lines * 512),
            ends: Vec::with_capacity(chunk_lines),
            oversized: Vec::new(),
        };
        while chunk.ends.len() < chunk_lines {
            let n = input
                .read_until(b'\n', &mut chunk.data)
                .with_context(|| format!("cannot read input line {line_no}"))?;
            if n == 0 {
                break;
            }
            chunk.ends.push(chunk.data.len());
            line_no += 1;
        }
        if chunk.ends.is_empty() {
            return Ok(());
        }
        let last = chunk.ends.len() < chunk_lines;
        if tx.send(chunk).is_err() || last {
            return Ok(());
        }
    }
    Ok(())
}

/// A line without its line ending.
pub fn trim_line(mut line: &[u8]) -> &[u8] {
    if let [rest @ .., b'\n'] = line {
        line = rest;
    }
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }
    line
}

enum Slot {
    Good(usize),
    Bad(Option<String>, String),
}

/// How a chunk is read and encoded for its plugins: each record is read once, for what the
/// plugins read between them, and encoded once for each set of parts some plugin reads, so a
/// plugin decodes only its own parts.
struct Plan {
    /// What is read of each record.
    reads: Fields,
    /// The distinct sets of parts, one encoding each (at least one, so ids go through).
    sets: Vec<Fields>,
    /// For each evaluation, its set.
    set_of: Vec<usize>,
}

impl Plan {
    fn of(evals: &[Evaluation]) -> Plan {
        let reads_of = |e: &Evaluation| Fields::of(&e.plugin.meta.reads);
        let reads = evals
            .iter()
            .fold(Fields::default(), |all, e| all.union(reads_of(e)));
        let mut sets = vec![];
        let set_of = evals
            .iter()
            .map(|e| {
                let parts = reads_of(e).parts();
                sets.iter().position(|s| *s == parts).unwrap_or_else(|| {
                    sets.push(parts);
                    sets.len() - 1
                })
            })
            .collect();
        if sets.is_empty() {
            sets.push(reads);
        }
        Plan {
            reads,
            sets,
            set_of,
        }
    }
}

/// Parses, encodes and evaluates one chunk: the one evaluation path of the CLI and the service.
pub fn process(worker: &mut Worker, evals: &[Evaluation], chunk: Chunk, format: Format) -> Done {
    let mut slots = Vec::with_capacity(chunk.ends.len());
    let plan = Plan::of(evals);
    let mut batches: Vec<EncodedBatch> = plan.sets.iter().map(|_| EncodedBatch::new()).collect();
    let mut start = 0;
    for (i, &end) in chunk.ends.iter().enumerate() {
        let line = trim_line(&chunk.data[start..end]);
        start = end;
        if chunk.oversized.contains(&i) {
            let error =
                "the line is longer than the limit for one record (the service's --max-body)";
            slots.push(Slot::Bad(None, error.into()));
            continue;
        }
        match regua_sdk::record::parse_customer_reading(line, plan.reads) {
            Ok(customer) => {
                slots.push(Slot::Good(batches[0].len()));
                for (batch, fields) in batches.iter_mut().zip(&plan.sets) {
                    batch.push_reading(&customer, *fields);
                }
            }
            Err(e) => slots.push(Slot::Bad(record::salvage_id(line), e)),
        }
    }
    let mut results: Vec<Vec<RecordResult>> = evals
        .iter()
        .zip(&plan.set_of)
        .map(|(eval, set)| {
            let batch = &batches[*set];
            worker
                .evaluate(eval, batch)
                .unwrap_or_else(|e| vec![Err(e.to_string()); batch.len()])
        })
        .collect();
    let batch = &batches[0];
    let mut done = Done {
        seq: chunk.seq,
        first_line: chunk.first_line,
        out: Vec::with_capacity(chunk.ends.len() * 256),
        lines: Vec::with_capacity(chunk.ends.len()),
        ids: String::new(),
        classes: Vec::with_capacity(batch.len() * evals.len()),
        bytes: chunk.data.len() as u64,
    };
    for (offset, slot) in slots.iter().enumerate() {
        let line = chunk.first_line + offset as u64;
        let id = match slot {
            Slot::Good(i) => {
                for r in &mut results {
                    done.classes.push(Class::of(&r[*i]));
                    // In a batch, a plugin's failure also names the input line.
                    if let Err(e) = &mut r[*i] {
                        *e = format!("line {line}: {e}");
                    }
                }
                let row = evals
                    .iter()
                    .zip(&results)
                    .map(|(e, r)| (&*e.plugin, &r[*i]));
                match format {
                    Format::Ndjson => output::write_results_line(&mut done.out, batch.id(*i), row),
                    Format::Csv => output::write_csv_row(&mut done.out, line, batch.id(*i), row),
                }
                let start = done.ids.len();
                done.ids.push_str(batch.id(*i));
                Some(start..done.ids.len())
            }
            Slot::Bad(id, error) => {
                let (out, n) = (&mut done.out, evals.len());
                output::write_error(format, out, line, id.as_deref(), n, error);
                None
            }
        };
        done.lines.push(LineDone {
            end: done.out.len(),
            id,
        });
    }
    done
}

/// Takes chunks' answers in input order and counts them; unless repeats are allowed, a record
/// whose id an earlier line of the stream already had gets an error line instead of its answers.
///
/// Ids are remembered as 64-bit hashes (xxh3): 8 bytes per distinct id plus the hash table's
/// slack, about 150 MB for 10 million customers. Two different ids share a hash with odds of
/// about 1 in 400,000 over a 10 million-line batch; the error line then names the id, so such a
/// false repeat is visible, never a silent drop.
pub struct Collator {
    seen: Option<HashSet<u64, BuildHasherDefault<PassThrough>>>,
    format: Format,
    /// What went through so far.
    pub summary: Summary,
}

/// The ids' hashes are already uniform; hashing them again would only cost time.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Collator {
    /// A collator for the answers of `evals`, written in `format`.
    pub fn new(evals: &[Evaluation], allow_repeated_ids: bool, format: Format) -> Self {
        let plugins = evals.len();
        Collator {
            seen: (!allow_repeated_ids).then(HashSet::default),
            format,
            summary: Summary {
                tallies: vec![Tally::default(); plugins],
                ..Summary::default()
            },
        }
    }

    /// What the output starts with, before any chunk: the CSV header, nothing for NDJSON.
    pub fn header(&self, evals: &[Evaluation]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.format == Format::Csv {
            output::write_csv_header(&mut out, evals.iter().map(|e| e.plugin.name()));
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
        for (offset, line) in done.lines.iter().enumerate() {
            let text = &done.out[start..line.end];
            start = line.end;
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
            let repeated = self
                .seen
                .as_mut()
                .is_some_and(|seen| !seen.insert(xxhash_rust::xxh3::xxh3_64(id.as_bytes())));
            if repeated {
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
            if let Some(out) = &mut rewritten {
                out.extend_from_slice(text);
            }
        }
        self.summary.lines += done.lines.len() as u64;
        self.summary.bytes += done.bytes;
        for (total, t) in self.summary.tallies.iter_mut().zip(&tallies) {
            total.merge(t);
        }
        (rewritten.unwrap_or(done.out), tallies)
    }
}

/// Runs `evals` over every line of `input`, writing one line per input line to `output` in input
/// order. `progress` is called with (lines, bytes) done after each chunk. Every plugin is checked
/// before the first line is read ([`Worker::check_all`]): one that fails its check answers its
/// error on every line, and the batch fails only when every plugin does.
pub fn run(
    evals: &mut [Evaluation],
    input: impl BufRead + Send,
    mut output: impl Write,
    options: &BatchOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut probe = Worker::new();
    probe.check_all(evals)?;
    let evals = &*evals;
    let format = options.format;
    let mut collator = Collator::new(evals, options.allow_repeated_ids, options.format);
    output
        .write_all(&collator.header(evals))
        .context("cannot write output")?;
    run_chunks(
        input,
        &mut output,
        options,
        probe,
        &|worker, chunk| process(worker, evals, chunk, format),
        &mut |done| {
            let (out, _) = collator.take(done);
            progress(collator.summary.lines, collator.summary.bytes);
            out
        },
    )?;
    let mut summary = collator.summary;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Answers one chunk on a worker: the part of a plan the chunk loops run.
pub type ProcessChunk<D> = dyn Fn(&mut Worker, Chunk) -> D + Send + Sync;

/// The one chunked, ordered, parallel loop under every streamed plan (plugins side by side, or
/// campaigns): cuts `input` into chunks of `options.chunk_lines` lines, answers each on one of
/// `options.threads` workers with `process`, and hands the answers to `take` in input order,
/// writing what it returns. Memory is bounded by the chunk size and the queue depth.
pub fn run_chunks<D: Send>(
    input: impl BufRead + Send,
    output: &mut impl Write,
    options: &BatchOptions,
    first_worker: Worker,
    process: &(dyn Fn(&mut Worker, Chunk) -> D + Sync),
    take: &mut dyn FnMut(D) -> Vec<u8>,
) -> anyhow::Result<()> {
    let threads = options.threads.max(1);
    let chunk_lines = options.chunk_lines.max(1);
    let (work_tx, work_rx) = bounded::<Chunk>(threads * 2);
    let (done_tx, done_rx) = bounded::<(u64, D)>(threads * 2);
    let mut first_worker = Some(first_worker);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let reader = scope.spawn(move || read_chunks(input, chunk_lines, work_tx));
        for _ in 0..threads {
            let (rx, tx) = (work_rx.clone(), done_tx.clone());
            let mut worker = first_worker.take().unwrap_or_default();
            scope.spawn(move || {
                for chunk in rx {
                    let seq = chunk.seq;
                    if tx.send((seq, process(&mut worker, chunk))).is_err() {
                        return;
                    }
                }
            });
        }
        drop((work_rx, done_tx));

        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        let mut write_result = Ok(());
        for (seq, done) in done_rx {
            pending.insert(seq, done);
            while let Some(done) = pending.remove(&next) {
                next += 1;
                let out = take(done);
                if write_result.is_ok() {
                    write_result = output.write_all(&out);
                }
            }
            if write_result.is_err() {
                break; // dropping the receiver stops the workers and the reader
            }
        }
        write_result.context("cannot write output")?;
        reader
            .join()
            .map_err(|_| anyhow!("the input reader panicked"))??;
        Ok(())
    })?;
    output.flush().context("cannot write output")
}
