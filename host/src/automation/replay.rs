//! The drivers' shared pieces: importing customers into a store, and replaying a time-ordered
//! file of inputs on recorded time.

use std::io::{BufRead, Write};
use std::sync::Arc;

use anyhow::Context as _;
use regua_sdk::{Fields, Record, Timestamp};
use serde::Serialize;

use super::{Alone, Core, Input, Status, Store};
use crate::pipeline::evaluator::{Chunk, Chunking, Evaluator, LineRead};
use crate::runtime::worker::Worker;

/// What an import did.
#[derive(Debug, Default, Serialize)]
pub struct Imported {
    /// Lines (or rows) read.
    pub lines: u64,
    /// Customers imported (new or merged).
    pub customers: u64,
    /// Lines that are not valid records: (line, id if readable, what is wrong).
    pub errors: Vec<(u64, Option<String>, String)>,
}

/// Imports every record of `input` (NDJSON, Parquet or Arrow IPC) into `store`, a chunk per
/// transaction; a line that is not a valid record is reported, never silently skipped.
pub fn import(
    evaluator: &Evaluator,
    store: &mut dyn Store,
    input: crate::pipeline::evaluator::Input<'_>,
    progress: &dyn Fn(u64),
) -> anyhow::Result<Imported> {
    let mut report = Imported::default();
    let mut failure: Option<anyhow::Error> = None;
    let process = Arc::new(|_: &mut Worker, chunk: Chunk| {
        let first = chunk.first_line;
        let (records, reads) = chunk.read(Fields::all());
        (first, records, reads)
    });
    evaluator.run_lines(
        input,
        &mut std::io::sink(),
        Chunking::default(),
        process,
        &mut |(first, records, reads): (u64, Vec<Record>, Vec<LineRead>)| {
            report.lines += reads.len() as u64;
            for (i, r) in reads.into_iter().enumerate() {
                if let LineRead::Bad(id, e) = r {
                    report.errors.push((first + i as u64, id, e));
                }
            }
            if failure.is_none() {
                match store.import(&records) {
                    Ok(()) => report.customers += records.len() as u64,
                    Err(e) => failure = Some(e),
                }
            }
            progress(report.lines);
            (Vec::new(), None)
        },
    )?;
    match failure {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct Replayed {
    /// Input lines read.
    pub lines: u64,
    /// Inputs applied.
    pub applied: u64,
    /// Inputs whose id was applied before.
    pub duplicates: u64,
    /// Inputs refused (not valid, out of time order, late for their customer).
    pub refused: u64,
    /// Timers fired.
    pub timers: u64,
    /// Timers still waiting after the end of the replay.
    pub timers_left: u64,
    /// Messages in the outbox at the end.
    pub messages: u64,
    /// The instant the replay ran to.
    pub until: Option<String>,
}

/// One input line's answer in a replay or a `POST /v1/events`.
#[derive(Debug, Serialize)]
pub struct Answer {
    /// The line (1-based).
    pub line: u64,
    /// The input's id, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What happened to it.
    #[serde(flatten)]
    pub status: Status,
}

impl Answer {
    /// An input refused, and why.
    pub fn refused(line: u64, id: Option<String>, error: String) -> Answer {
        Answer {
            line,
            id,
            status: Status::Refused { error },
        }
    }
}

/// Reads one input line; for one that is not an input, its id if it can still be read, and
/// what is wrong.
pub fn read_input(text: &str) -> Result<Input, (Option<String>, String)> {
    if text.trim().is_empty() {
        return Err((None, "empty line: expected an input (a JSON object)".into()));
    }
    Input::parse(text).map_err(|e| (crate::pipeline::record::salvage_id(text.as_bytes()), e))
}

/// Inputs per transaction in a replay.
const REPLAY_BATCH: usize = 1000;

/// Replays `inputs` (NDJSON, in time order, each with its `at`) through `core` on recorded
/// time, from `from` (default: the first input's instant; the scheduled campaigns' timers are
/// set then): before each input, every timer due at or before its instant fires at its due
/// instant; after the last, the timers due at or before `until` (default: the last input's
/// instant). One answer line per input line goes to `answers`.
#[allow(clippy::too_many_arguments)] // the replay's settings, each its own CLI option
pub fn replay(
    core: &Core,
    store: &mut dyn Store,
    worker: &mut Worker,
    inputs: impl BufRead,
    from: Option<Timestamp>,
    until: Option<Timestamp>,
    answers: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> anyhow::Result<Replayed> {
    let mut report = Replayed::default();
    // The instant and line of the last input applied (line 0: the replay's start).
    let mut last: Option<(Timestamp, u64)> = from.map(|f| (f, 0));
    if let Some(from) = from {
        core.schedule(store, from)?;
    }
    let mut lines = inputs.lines();
    let mut done = false;
    while !done {
        let mut out = Vec::new();
        store.batch(&mut |store| {
            // This transaction's answers, in line order; those of the inputs waiting in
            // `pending` (consecutive ones at the same instant) are filled in when they are
            // applied together.
            let mut batch: Vec<Answer> = Vec::new();
            let mut pending: Vec<(usize, Input)> = Vec::new();
            for _ in 0..REPLAY_BATCH {
                let Some(line) = lines.next() else {
                    done = true;
                    break;
                };
                let line = line.context("cannot read the inputs")?;
                report.lines += 1;
                let n = report.lines;
                let answer = match read_input(&line) {
                    Err((id, e)) => Answer::refused(n, id, e),
                    Ok(input) => match (input.at, last) {
                        (None, _) => Answer::refused(
                            n,
                            Some(input.id),
                            "field `at` is missing: a replay runs on the inputs' own instants"
                                .into(),
                        ),
                        (Some(at), Some((start, 0))) if at < start => Answer::refused(
                            n,
                            Some(input.id),
                            format!("field `at`: {at} is before the replay's start ({start})"),
                        ),
                        (Some(at), Some((prev, prev_line))) if at < prev => Answer::refused(
                            n,
                            Some(input.id),
                            format!(
                                "field `at`: {at} is before line {prev_line}'s {prev}: a \
                                 replay's inputs come in time order"
                            ),
                        ),
                        (Some(at), _) => {
                            if pending.first().is_some_and(|(_, p)| p.at != Some(at)) {
                                apply_pending(core, store, worker, &mut pending, &mut batch)?;
                            }
                            if last.is_none() {
                                // No `from`: the replay starts at its first input.
                                core.schedule(store, at)?;
                            }
                            last = Some((at, n));
                            if pending.is_empty() {
                                // Every timer due by this instant fires before its inputs;
                                // the steps of inputs at one instant set timers after it.
                                report.timers += core.fire_due(
                                    &Alone::new(store),
                                    worker,
                                    at,
                                    usize::MAX,
                                    false,
                                )?;
                            }
                            let placeholder =
                                Answer::refused(n, Some(input.id.clone()), String::new());
                            pending.push((batch.len(), input));
                            placeholder
                        }
                    },
                };
                batch.push(answer);
            }
            apply_pending(core, store, worker, &mut pending, &mut batch)?;
            for answer in batch {
                match answer.status {
                    Status::Applied { .. } => report.applied += 1,
                    Status::Duplicate => report.duplicates += 1,
                    Status::Refused { .. } => report.refused += 1,
                }
                serde_json::to_writer(&mut out, &answer).expect("writing to a Vec");
                out.push(b'\n');
            }
            Ok(())
        })?;
        answers
            .write_all(&out)
            .context("cannot write the answers")?;
        progress(report.lines);
    }
    let end = until.or(last.map(|(t, _)| t));
    if let (None, Some(end)) = (last, end) {
        // No input and no start: the schedule starts at the end, so nothing scheduled fires.
        core.schedule(store, end)?;
    }
    if let Some(end) = end {
        store.batch(&mut |store| {
            report.timers += core.fire_due(&Alone::new(store), worker, end, usize::MAX, false)?;
            Ok(())
        })?;
        report.until = Some(end.to_string());
    }
    let (_, timers, messages) = store.counts()?;
    report.timers_left = timers;
    report.messages = messages;
    answers.flush().context("cannot write the answers")?;
    Ok(report)
}

/// Applies the inputs waiting in `pending` (all at one instant, each with its answer's place
/// in `batch`) together, as one at a time would: [`Core::apply_many`].
fn apply_pending(
    core: &Core,
    store: &mut dyn Store,
    worker: &mut Worker,
    pending: &mut Vec<(usize, Input)>,
    batch: &mut [Answer],
) -> anyhow::Result<()> {
    let Some(at) = pending.first().and_then(|(_, i)| i.at) else {
        return Ok(());
    };
    let (slots, inputs): (Vec<usize>, Vec<Input>) = std::mem::take(pending).into_iter().unzip();
    for (slot, status) in
        slots
            .into_iter()
            .zip(core.apply_many(&Alone::new(store), worker, &inputs, at)?)
    {
        batch[slot].status = status;
    }
    Ok(())
}

/// Writes the whole outbox, in order, as NDJSON.
pub fn write_outbox(store: &mut dyn Store, out: &mut dyn Write) -> anyhow::Result<u64> {
    let mut after = 0;
    let mut n = 0;
    loop {
        let page = store.outbox(super::Entries::All, after, 10_000)?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.seq;
        for e in &page {
            serde_json::to_writer(&mut *out, e)?;
            out.write_all(b"\n")?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}
