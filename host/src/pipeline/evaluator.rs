//! The one evaluator under every path that runs plugins: the CLI's `batch`, `campaign run`,
//! `eval` and `test`, and every endpoint of the service.
//!
//! It owns the three things those paths used to do each their own way:
//! - **chunking**: [`Chunker`] cuts a byte stream into [`Chunk`]s of whole lines as the bytes
//!   arrive, whether they come from a file read synchronously or from an HTTP body;
//! - **the threads**: one [`Pool`] of workers, each keeping its own instances, answers every
//!   chunk and every single-record call;
//! - **ordering**: a bounded queue of answer slots, in the order the chunks were cut, so answers
//!   leave in input order and at most a few chunks are held at once.
//!
//! What a chunk's answer *is* comes from a plan: plugins side by side
//! ([`crate::pipeline::batch::Plugins`]) or campaigns ([`crate::pipeline::campaign::Plan`]). Both
//! read each record once, for what their plugins read, with [`Chunk::read`]; a single record is
//! read the same way and answered as a batch of one.
//!
//! The core is synchronous ([`Evaluator::run_lines`] is what the CLI calls); the service drives
//! the same [`Feed`] and [`Answers`] through their `async` methods.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, anyhow};
use regua_sdk::{Fields, Record};
use tokio::sync::{mpsc, oneshot};

use crate::pipeline::columnar::{ColumnarInput, Unit};
pub use crate::pipeline::pool::Panicked;
use crate::pipeline::pool::Pool;
use crate::pipeline::record::salvage_id;
use crate::runtime::chunk::EncodedBatch;
use crate::runtime::worker::Worker;

/// How a stream is cut into chunks.
#[derive(Clone, Copy, Debug)]
pub struct Chunking {
    /// Lines per chunk handed to a worker.
    pub lines: usize,
    /// The longest line held, in bytes; a longer one is dropped and answered with an error line.
    pub max_line: usize,
}

impl Default for Chunking {
    fn default() -> Self {
        Chunking {
            lines: 1000,
            max_line: usize::MAX,
        }
    }
}

/// Consecutive input lines, handed to a worker at once.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Line number of the first line (1-based).
    pub first_line: u64,
    /// The lines, back to back, each with its newline if it had one.
    pub data: LineBytes,
    /// Where each line ends in `data`.
    pub ends: Vec<usize>,
    /// Lines (by index in the chunk) dropped for being longer than `max_line`.
    pub oversized: Vec<usize>,
    /// The longest line held when this chunk was cut.
    pub max_line: usize,
    /// For columnar input, the unit of the file this chunk is (its lines are then empty): read
    /// on the worker, so decoding is spread over the threads.
    pub unit: Option<(Arc<ColumnarInput>, Unit)>,
}

/// A chunk's lines, whose buffer goes back to its stream's [`Spare`] when the chunk is done with.
#[derive(Debug, Default)]
pub struct LineBytes {
    bytes: Vec<u8>,
    spare: Spare,
}

impl std::ops::Deref for LineBytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl std::ops::DerefMut for LineBytes {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

impl Drop for LineBytes {
    fn drop(&mut self) {
        self.spare.put(std::mem::take(&mut self.bytes));
    }
}

/// The buffers of a stream's chunks already answered, kept for its next chunks: a fresh buffer
/// of a megabyte or two is fresh pages, which the system zeroes as they are first written (a
/// tenth of reading NDJSON when every chunk took new ones).
#[derive(Clone, Debug, Default)]
struct Spare(Arc<Mutex<Vec<Vec<u8>>>>);

impl Spare {
    /// Buffers kept at most: the chunks in flight of a stream are a few per worker.
    const KEEP: usize = 8;

    /// A buffer with room for `bytes`: a spare one, or a new one a quarter larger when none is
    /// that large (a `reserve` would `realloc`, which copies the old buffer's whole capacity),
    /// so the spare buffers settle at a size that fits the stream's chunks.
    fn take(&self, bytes: usize) -> Vec<u8> {
        match self.0.lock().expect("not poisoned").pop() {
            Some(buffer) if buffer.capacity() >= bytes => buffer,
            _ => Vec::with_capacity(bytes + bytes / 4),
        }
    }

    fn put(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() == 0 {
            return;
        }
        let mut spare = self.0.lock().expect("not poisoned");
        if spare.len() < Spare::KEEP {
            buffer.clear();
            spare.push(buffer);
        }
    }
}

/// Where a stream's records come from.
pub enum Input<'a> {
    /// NDJSON: one record a line.
    Lines(Box<dyn BufRead + Send + 'a>),
    /// A Parquet or Arrow IPC file.
    Columnar(Arc<ColumnarInput>),
}

impl<'a> Input<'a> {
    /// NDJSON lines from `reader`.
    pub fn lines(reader: impl BufRead + Send + 'a) -> Self {
        Input::Lines(Box::new(reader))
    }
}

pub use crate::pipeline::record::LineRead;

impl Chunk {
    /// The lines, without their line endings.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| trim_line(&self.data[start..end]))
    }

    /// Every line read as a record, for the parts `reads` names (the rest of each line is only
    /// checked to be well-formed JSON): the valid records in order, and for each line its
    /// record or why it has none.
    pub fn read(&self, reads: Fields) -> (Vec<Record>, Vec<LineRead>) {
        if let Some((input, unit)) = &self.unit {
            return input.read(unit);
        }
        let mut customers = Vec::with_capacity(self.ends.len());
        let lines = self.each_record(reads, |c| {
            customers.push(c);
            customers.len() - 1
        });
        (customers, lines)
    }

    /// [`Chunk::read`] into the columns of `batch`, for what it holds, without building
    /// records: a columnar file's cells and an NDJSON line's values go straight to the columns.
    pub fn fill(&self, batch: &mut EncodedBatch) -> Vec<LineRead> {
        if let Some((input, unit)) = &self.unit {
            return input.fill(unit, batch);
        }
        self.each_line(|line| batch.push_json(line).map(|()| batch.len() - 1))
    }

    /// Reads every line as a record for `reads`, hands each valid one to `add` (which says
    /// where it went), and says for each line where its record went or why it has none.
    fn each_record(&self, reads: Fields, mut add: impl FnMut(Record) -> usize) -> Vec<LineRead> {
        self.each_line(|line| regua_sdk::record::parse_customer_reading(line, reads).map(&mut add))
    }

    /// Hands every line not over the size limit to `read`, which says where its record went or
    /// what is wrong with it.
    fn each_line(&self, mut read: impl FnMut(&[u8]) -> Result<usize, String>) -> Vec<LineRead> {
        self.lines()
            .enumerate()
            .map(|(i, line)| {
                if self.oversized.contains(&i) {
                    let error = format!(
                        "the line is longer than the limit for one record ({} bytes)",
                        self.max_line
                    );
                    return LineRead::Bad(None, error);
                }
                match read(line) {
                    Ok(i) => LineRead::Record(i),
                    Err(e) => LineRead::Bad(salvage_id(line), e),
                }
            })
            .collect()
    }
}

impl Chunk {
    /// The input bytes this chunk stands for (for progress).
    pub fn bytes(&self) -> u64 {
        match &self.unit {
            Some((_, unit)) => unit.bytes,
            None => self.data.len() as u64,
        }
    }

    /// How many records (lines or rows) it holds.
    pub fn len(&self) -> usize {
        match &self.unit {
            Some((_, unit)) => unit.rows as usize,
            None => self.ends.len(),
        }
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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

/// Cuts bytes into chunks of whole lines as they arrive: the one line chunker. A line longer
/// than the limit is not held; it becomes an entry of [`Chunk::oversized`] instead.
#[derive(Debug)]
pub struct Chunker {
    chunking: Chunking,
    chunk: Chunk,
    line_start: usize,
    skipping: bool,
}

impl Chunker {
    /// A chunker starting at line 1.
    pub fn new(chunking: Chunking) -> Self {
        let chunking = Chunking {
            lines: chunking.lines.max(1),
            ..chunking
        };
        Chunker {
            chunk: Chunker::fresh(chunking, 1, &Spare::default(), 0),
            chunking,
            line_start: 0,
            skipping: false,
        }
    }

    /// A chunk from `first_line`, with room for `bytes` of lines.
    fn fresh(chunking: Chunking, first_line: u64, spare: &Spare, bytes: usize) -> Chunk {
        Chunk {
            first_line,
            max_line: chunking.max_line,
            data: LineBytes {
                bytes: spare.take(bytes),
                spare: spare.clone(),
            },
            ends: Vec::with_capacity(chunking.lines),
            ..Chunk::default()
        }
    }

    /// Takes the next bytes of the stream; returns the chunks they complete.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Chunk> {
        let mut full = Vec::new();
        while !bytes.is_empty() {
            let newline = memchr::memchr(b'\n', bytes);
            let take = newline.map_or(bytes.len(), |i| i + 1);
            if !self.skipping {
                self.chunk.data.extend_from_slice(&bytes[..take]);
                if self.chunk.data.len() - self.line_start > self.chunking.max_line {
                    self.chunk.data.truncate(self.line_start);
                    self.skipping = true;
                }
            }
            bytes = &bytes[take..];
            if newline.is_some() {
                self.end_line();
                if self.chunk.ends.len() == self.chunking.lines {
                    // Room for a chunk like this one, so the next does not grow by doubling
                    // (each step a copy of what it holds: a twentieth of reading a stream).
                    let len = self.chunk.data.len();
                    let next = Chunker::fresh(
                        self.chunking,
                        self.chunk.first_line + self.chunk.ends.len() as u64,
                        &self.chunk.data.spare,
                        len + len / 8,
                    );
                    full.push(std::mem::replace(&mut self.chunk, next));
                    self.line_start = 0;
                }
            }
        }
        full
    }

    fn end_line(&mut self) {
        if self.skipping {
            self.chunk.oversized.push(self.chunk.ends.len());
            self.skipping = false;
        }
        self.chunk.ends.push(self.chunk.data.len());
        self.line_start = self.chunk.data.len();
    }

    /// The end of the stream: the last chunk, if any line is left (a last line without a
    /// newline counts).
    pub fn finish(mut self) -> Option<Chunk> {
        if self.chunk.data.len() > self.line_start || self.skipping {
            self.end_line();
        }
        (!self.chunk.ends.is_empty()).then_some(self.chunk)
    }
}

/// Answers one chunk on a worker: the part of a plan the evaluator runs.
pub type ProcessChunk<D> = dyn Fn(&mut Worker, Chunk) -> D + Send + Sync;

/// The reading side of a stream stopped: its answers are no longer wanted.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the answers of this stream are no longer read")]
pub struct Stopped;

/// The input side of a stream: bytes go in, chunks go to the pool.
pub struct Feed<D> {
    chunker: Chunker,
    process: Arc<ProcessChunk<D>>,
    pool: Pool,
    queue: mpsc::Sender<oneshot::Receiver<D>>,
}

/// The output side of a stream: each chunk's answer, in input order.
pub struct Answers<D> {
    queue: mpsc::Receiver<oneshot::Receiver<D>>,
}

impl<D: Send + 'static> Feed<D> {
    fn submit(&self, chunk: Chunk) -> oneshot::Receiver<D> {
        let process = self.process.clone();
        self.pool.submit(move |w| process(w, chunk))
    }

    /// Takes the next bytes, waiting while the answers are behind.
    pub async fn push(&mut self, bytes: &[u8]) -> Result<(), Stopped> {
        for chunk in self.chunker.push(bytes) {
            let slot = self.submit(chunk);
            self.queue.send(slot).await.map_err(|_| Stopped)?;
        }
        Ok(())
    }

    /// The last chunk, submitted, if any line is left; and the queue to put it in.
    fn close(
        self,
    ) -> (
        Option<oneshot::Receiver<D>>,
        mpsc::Sender<oneshot::Receiver<D>>,
    ) {
        let Feed {
            chunker,
            process,
            pool,
            queue,
        } = self;
        let slot = chunker
            .finish()
            .map(|chunk| pool.submit(move |w| process(w, chunk)));
        (slot, queue)
    }

    /// Ends the stream.
    pub async fn finish(self) -> Result<(), Stopped> {
        match self.close() {
            (Some(slot), queue) => queue.send(slot).await.map_err(|_| Stopped),
            (None, _) => Ok(()),
        }
    }

    /// [`Feed::push`], blocking the thread (never call it on an async runtime's thread).
    pub fn push_blocking(&mut self, bytes: &[u8]) -> Result<(), Stopped> {
        for chunk in self.chunker.push(bytes) {
            let slot = self.submit(chunk);
            self.queue.blocking_send(slot).map_err(|_| Stopped)?;
        }
        Ok(())
    }

    /// Reads `input` to its end into the stream, then ends it. Stops early, without error, when
    /// the answers are no longer read.
    pub fn read_from(mut self, mut input: impl BufRead) -> anyhow::Result<()> {
        let mut line = 1u64;
        loop {
            let buf = match input.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context(format!("cannot read input line {line}")),
            };
            if buf.is_empty() {
                break;
            }
            let n = buf.len();
            line += memchr::memchr_iter(b'\n', buf).count() as u64;
            if self.push_blocking(buf).is_err() {
                return Ok(());
            }
            input.consume(n);
        }
        if let (Some(slot), queue) = self.close() {
            let _ = queue.blocking_send(slot);
        }
        Ok(())
    }
}

impl<D: Send + 'static> Feed<D> {
    /// Hands each unit of a columnar file to the pool, in order, then ends the stream. Stops
    /// early, without error, when the answers are no longer read.
    pub fn read_columnar(self, input: Arc<ColumnarInput>) {
        for unit in input.units() {
            let chunk = Chunk {
                first_line: unit.first_row,
                unit: Some((input.clone(), *unit)),
                ..Chunk::default()
            };
            let slot = self.submit(chunk);
            if self.queue.blocking_send(slot).is_err() {
                return;
            }
        }
    }
}

impl<D> Answers<D> {
    /// The next chunk's answer; `None` once the stream has ended and every answer was taken.
    pub async fn next(&mut self) -> Option<Result<D, Panicked>> {
        let slot = self.queue.recv().await?;
        Some(slot.await.map_err(|_| Panicked))
    }

    /// [`Answers::next`], blocking the thread (never call it on an async runtime's thread).
    pub fn next_blocking(&mut self) -> Option<Result<D, Panicked>> {
        let slot = self.queue.blocking_recv()?;
        Some(slot.blocking_recv().map_err(|_| Panicked))
    }
}

/// The evaluation threads, and how streams through them are cut and ordered. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Evaluator {
    pool: Pool,
    threads: usize,
    in_flight: usize,
}

impl Evaluator {
    /// An evaluator on `threads` threads (at least one; `None`: one per core).
    pub fn new(threads: Option<usize>) -> std::io::Result<Self> {
        let threads = threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        Ok(Evaluator {
            pool: Pool::new(threads)?,
            threads,
            // Enough chunks queued that no worker waits for the next, few enough that memory
            // stays bounded by the chunk size whatever the input's.
            in_flight: threads * 2,
        })
    }

    /// How many evaluation threads there are.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on an evaluation thread and waits for it without blocking the runtime. Fails
    /// only if `f` panicked.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker) -> R + Send + 'static,
    ) -> Result<R, Panicked> {
        self.pool.submit(f).await.map_err(|_| Panicked)
    }

    /// [`Evaluator::run`], blocking the thread (never call it on an async runtime's thread).
    pub fn run_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker) -> R + Send + 'static,
    ) -> Result<R, Panicked> {
        self.pool.submit(f).blocking_recv().map_err(|_| Panicked)
    }

    /// Opens a stream: bytes pushed into the [`Feed`] are cut into chunks, each answered on the
    /// pool with `process`, and the [`Answers`] give them back in input order. Dropping the
    /// answers stops the feed.
    pub fn stream<D: Send + 'static>(
        &self,
        chunking: Chunking,
        process: Arc<ProcessChunk<D>>,
    ) -> (Feed<D>, Answers<D>) {
        let (tx, rx) = mpsc::channel(self.in_flight);
        let feed = Feed {
            chunker: Chunker::new(chunking),
            process,
            pool: self.pool.clone(),
            queue: tx,
        };
        (feed, Answers { queue: rx })
    }

    /// Runs a stream over every record of `input` (read on a thread of its own), handing each
    /// chunk's answer to `take` in input order and writing what it returns to `output`.
    pub fn run_lines<D: Send + 'static>(
        &self,
        input: Input<'_>,
        output: &mut impl Write,
        chunking: Chunking,
        process: Arc<ProcessChunk<D>>,
        take: &mut dyn FnMut(D) -> Taken,
    ) -> anyhow::Result<()> {
        let (feed, answers) = self.stream(chunking, process);
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let reader = scope.spawn(move || match input {
                Input::Lines(lines) => feed.read_from(lines),
                Input::Columnar(file) => {
                    feed.read_columnar(file);
                    Ok(())
                }
            });
            // `answers` is dropped when this returns, early or not, so the reader never waits
            // on a full queue nobody reads.
            let written = write_answers(answers, output, take);
            let read = reader
                .join()
                .map_err(|_| anyhow!("the input reader panicked"))?;
            written.and(read)
        })?;
        output.flush().context("cannot write output")
    }
}

/// What the caller of [`Evaluator::run_lines`] makes of a chunk's answers: the bytes to write and,
/// to stop the stream after them (the input is then read no further), why.
pub type Taken = (Vec<u8>, Option<anyhow::Error>);

fn write_answers<D>(
    mut answers: Answers<D>,
    output: &mut impl Write,
    take: &mut dyn FnMut(D) -> Taken,
) -> anyhow::Result<()> {
    while let Some(done) = answers.next_blocking() {
        let (out, stop) = take(done?);
        output.write_all(&out).context("cannot write output")?;
        if let Some(why) = stop {
            return Err(why);
        }
    }
    Ok(())
}

/// The customer ids a stream has seen, to answer a repeated one with an error line.
///
/// Ids are remembered as 64-bit hashes (xxh3): 8 bytes per distinct id plus the hash table's
/// slack, about 150 MB for 10 million customers. Two different ids share a hash with odds of
/// about 1 in 400,000 over a 10 million-line stream; the error line then names the id, so such
/// a false repeat is visible, never a silent drop.
#[derive(Debug, Default)]
pub struct SeenIds(Option<HashSet<u64, BuildHasherDefault<PassThrough>>>);

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

impl SeenIds {
    /// Remembers ids unless repeats are allowed (then nothing is kept and nothing repeats).
    pub fn new(allow_repeated_ids: bool) -> Self {
        SeenIds((!allow_repeated_ids).then(HashSet::default))
    }

    /// Whether `id` was seen before; remembers it.
    pub fn repeated(&mut self, id: &str) -> bool {
        self.0
            .as_mut()
            .is_some_and(|seen| !seen.insert(xxhash_rust::xxh3::xxh3_64(id.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(pieces: &[&[u8]], lines: usize, max_line: usize) -> Vec<Chunk> {
        let mut chunker = Chunker::new(Chunking { lines, max_line });
        let mut chunks: Vec<Chunk> = pieces.iter().flat_map(|p| chunker.push(p)).collect();
        chunks.extend(chunker.finish());
        chunks
    }

    fn texts(chunks: &[Chunk]) -> Vec<(u64, Vec<String>, Vec<usize>)> {
        chunks
            .iter()
            .map(|c| {
                let lines = c
                    .lines()
                    .map(|l| String::from_utf8_lossy(l).into())
                    .collect();
                (c.first_line, lines, c.oversized.clone())
            })
            .collect()
    }

    #[test]
    fn lines_cut_across_pieces_land_whole_and_numbered() {
        let whole = cut(&[b"a\nbb\r\nccc\nd"], 2, usize::MAX);
        let split = cut(&[b"a\nb", b"b\r", b"\nccc\n", b"d"], 2, usize::MAX);
        assert_eq!(texts(&whole), texts(&split));
        assert_eq!(
            texts(&whole),
            vec![
                (1, vec!["a".into(), "bb".into()], vec![]),
                (3, vec!["ccc".into(), "d".into()], vec![]),
            ]
        );
    }

    #[test]
    fn a_chunk_on_a_buffer_given_back_holds_only_its_own_lines() {
        // Chunks dropped as they are answered give their buffers to the next ones: long lines
        // first, then short ones, so a reused buffer would show stale bytes if any were left.
        let lines: Vec<String> = (0..40)
            .map(|i| match i {
                0..20 => format!("{i}-{}", "x".repeat(200)),
                _ => format!("{i}"),
            })
            .collect();
        let input = lines.join("\n");
        let mut chunker = Chunker::new(Chunking {
            lines: 3,
            max_line: usize::MAX,
        });
        let spare = chunker.chunk.data.spare.clone();
        let held = || spare.0.lock().unwrap().len();
        let (mut got, mut taken) = (Vec::new(), 0);
        for piece in input.as_bytes().chunks(7) {
            let before = held();
            let chunks = chunker.push(piece);
            taken += before.saturating_sub(held());
            for chunk in chunks {
                got.extend(texts(std::slice::from_ref(&chunk))[0].1.clone());
            }
        }
        got.extend(texts(&Vec::from_iter(chunker.finish()))[0].1.clone());
        assert_eq!(got, lines);
        assert!(taken > 5, "chunks were cut on buffers given back ({taken})");
    }

    #[test]
    fn an_empty_stream_has_no_chunk_and_an_empty_line_is_a_line() {
        assert!(cut(&[], 3, usize::MAX).is_empty());
        assert!(cut(&[b""], 3, usize::MAX).is_empty());
        assert_eq!(
            texts(&cut(&[b"\n\n"], 3, usize::MAX)),
            vec![(1, vec![String::new(), String::new()], vec![])]
        );
    }

    #[test]
    fn a_line_over_the_limit_is_dropped_but_keeps_its_place() {
        let chunks = cut(&[b"ok\n0123", b"456789\nfine\n", b"0123456789"], 10, 5);
        assert_eq!(
            texts(&chunks),
            vec![(
                1,
                vec!["ok".into(), String::new(), "fine".into(), String::new()],
                vec![1, 3]
            )]
        );
        let (customers, lines) = chunks[0].read(Fields::all());
        assert!(customers.is_empty());
        assert!(matches!(&lines[1], LineRead::Bad(None, e) if e.contains("(5 bytes)")));
    }

    #[test]
    fn answers_come_back_in_input_order_whatever_finishes_first() {
        let evaluator = Evaluator::new(Some(2)).unwrap();
        let process: Arc<ProcessChunk<u64>> = Arc::new(|_, chunk: Chunk| {
            // Later chunks finish first.
            std::thread::sleep(std::time::Duration::from_millis(20 / chunk.first_line));
            chunk.first_line
        });
        let input: Vec<u8> = (0..40)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let mut firsts = Vec::new();
        let mut out = Vec::new();
        evaluator
            .run_lines(
                Input::lines(&input[..]),
                &mut out,
                Chunking {
                    lines: 3,
                    max_line: 100,
                },
                process,
                &mut |first| {
                    firsts.push(first);
                    (Vec::new(), None)
                },
            )
            .unwrap();
        let expected: Vec<u64> = (0..14).map(|i| 1 + 3 * i).collect();
        assert_eq!(firsts, expected);
    }
}
