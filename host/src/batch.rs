//! Streaming NDJSON batches: read lines in chunks, parse and encode each record once, evaluate
//! every plugin over the chunk on a pool of workers, and write one output line per input line in
//! input order. Memory is bounded by the chunk size and the queue depth, not the input size.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use crossbeam_channel::bounded;

use crate::evaluate::{Evaluation, RecordResult, Worker};
use crate::output::{self, Tally};
use crate::record::{self, EncodedBatch};

/// How a batch runs.
#[derive(Clone, Debug)]
pub struct BatchOptions {
    /// Worker threads (at least one).
    pub threads: usize,
    /// Lines per chunk handed to a worker.
    pub chunk_lines: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chunk_lines: 1000,
        }
    }
}

/// What a batch did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Input lines read (= output lines written).
    pub lines: u64,
    /// Lines that were not a valid record.
    pub bad_lines: u64,
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

/// A chunk's answers.
#[derive(Debug)]
pub struct Done {
    /// The chunk's `seq`.
    pub seq: u64,
    /// One output line per input line.
    pub out: Vec<u8>,
    /// Lines in the chunk.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines that were not valid records.
    pub bad: u64,
    /// Per plugin.
    pub tallies: Vec<Tally>,
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

fn trim_line(mut line: &[u8]) -> &[u8] {
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

/// Parses, encodes and evaluates one chunk: the one evaluation path of the CLI and the service.
pub fn process(worker: &mut Worker, evals: &[Evaluation], chunk: Chunk) -> Done {
    let mut batch = EncodedBatch::new();
    let mut slots = Vec::with_capacity(chunk.ends.len());
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
        match record::parse_customer_bytes(line) {
            Ok(customer) => {
                slots.push(Slot::Good(batch.len()));
                batch.push(&customer);
            }
            Err(e) => slots.push(Slot::Bad(record::salvage_id(line), e)),
        }
    }
    let mut results: Vec<Vec<RecordResult>> = evals
        .iter()
        .map(|eval| {
            worker
                .evaluate(eval, &batch)
                .unwrap_or_else(|e| vec![Err(e.to_string()); batch.len()])
        })
        .collect();
    let mut tallies = vec![Tally::default(); evals.len()];
    let mut out = Vec::with_capacity(chunk.ends.len() * 256);
    let mut bad = 0;
    for (offset, slot) in slots.iter().enumerate() {
        match slot {
            Slot::Good(i) => {
                let line = chunk.first_line + offset as u64;
                for (t, r) in tallies.iter_mut().zip(&mut results) {
                    t.add(&r[*i]);
                    // In a batch, a plugin's failure also names the input line.
                    if let Err(e) = &mut r[*i] {
                        *e = format!("line {line}: {e}");
                    }
                }
                let row = evals
                    .iter()
                    .zip(&results)
                    .map(|(e, r)| (&*e.plugin, &r[*i]));
                output::write_results_line(&mut out, batch.id(*i), row);
            }
            Slot::Bad(id, error) => {
                bad += 1;
                let line = chunk.first_line + offset as u64;
                output::write_error_line(&mut out, line, id.as_deref(), error);
            }
        }
    }
    Done {
        seq: chunk.seq,
        out,
        lines: chunk.ends.len() as u64,
        bytes: chunk.data.len() as u64,
        bad,
        tallies,
    }
}

/// Runs `evals` over every line of `input`, writing one line per input line to `output` in input
/// order. `progress` is called with (lines, bytes) done after each chunk. Parameters are checked
/// before the first line is read.
pub fn run(
    evals: &[Evaluation],
    input: impl BufRead + Send,
    mut output: impl Write,
    options: &BatchOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut probe = Worker::new();
    for eval in evals {
        probe.check(eval)?;
    }
    let threads = options.threads.max(1);
    let chunk_lines = options.chunk_lines.max(1);
    let (work_tx, work_rx) = bounded::<Chunk>(threads * 2);
    let (done_tx, done_rx) = bounded::<Done>(threads * 2);
    let mut summary = Summary {
        tallies: vec![Tally::default(); evals.len()],
        ..Summary::default()
    };

    let written = std::thread::scope(|scope| -> anyhow::Result<()> {
        let reader = scope.spawn(move || read_chunks(input, chunk_lines, work_tx));
        for n in 0..threads {
            let (rx, tx) = (work_rx.clone(), done_tx.clone());
            let mut worker = if n == 0 {
                std::mem::take(&mut probe)
            } else {
                Worker::new()
            };
            scope.spawn(move || {
                for chunk in rx {
                    if tx.send(process(&mut worker, evals, chunk)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((work_rx, done_tx));

        let mut pending = BTreeMap::new();
        let (mut next, mut bytes) = (0u64, 0u64);
        let mut write_result = Ok(());
        for done in done_rx {
            pending.insert(done.seq, done);
            while let Some(done) = pending.remove(&next) {
                next += 1;
                if write_result.is_ok() {
                    write_result = output.write_all(&done.out);
                }
                summary.lines += done.lines;
                summary.bad_lines += done.bad;
                bytes += done.bytes;
                for (t, d) in summary.tallies.iter_mut().zip(&done.tallies) {
                    t.merge(d);
                }
                progress(summary.lines, bytes);
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
    });
    written?;
    output.flush().context("cannot write output")?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}
