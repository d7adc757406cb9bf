//! The decision log: one line per decision the service or a campaign run makes, and what the
//! lines answer afterwards.

pub mod backtest;
pub mod entry;
pub mod forms;
pub mod readout;
pub mod report;
pub mod sink;
pub mod svg;

pub use entry::Entry;
pub use sink::{Sink, SinkConfig, SinkStatus};

use std::sync::Arc;

use crate::pipeline::campaign::{CustomerRun, Plan};
use crate::pipeline::recorder::Recorder;

/// The longest value of a kept field (`--decision-log-field`), as JSON, in bytes: a record whose
/// field is longer is refused, naming the field, rather than copied into every line of the log.
pub const MAX_FIELD_BYTES: usize = 1024;

/// A decision log: its sink and the record fields each line keeps.
pub struct DecisionLog {
    /// Where the lines go.
    pub sink: Arc<Sink>,
    /// Record fields kept on each line (`profile.email`, …); none by default.
    pub fields: Vec<String>,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog")
            .field("dir", &self.sink.dir())
            .field("fields", &self.fields)
            .finish()
    }
}

pub use crate::pipeline::recorder::InputOf;

impl DecisionLog {
    /// A log into `sink`, keeping `fields`.
    pub fn new(sink: Arc<Sink>, fields: Vec<String>) -> Arc<DecisionLog> {
        Arc::new(DecisionLog { sink, fields })
    }

    /// The parts of a record the kept fields are in (`profile.email`: the profile), which every
    /// path reading records for a logged run reads besides what its plugins read, so a field the
    /// record has is logged whether or not a plugin reads it.
    pub fn reads(&self) -> regua_sdk::Fields {
        let parts: Vec<regua_sdk::Field> = self
            .fields
            .iter()
            .filter_map(|name| {
                let top = name.split('.').next().unwrap_or_default();
                serde_json::from_value(serde_json::Value::String(top.to_owned())).ok()
            })
            .collect();
        regua_sdk::Fields::of(&parts)
    }

    /// Whether the fields of `record` the log keeps fit its limit ([`MAX_FIELD_BYTES`] each, as
    /// JSON); if not, which does not, in words.
    pub fn check(&self, record: &regua_sdk::Record) -> Result<(), String> {
        for (name, value) in entry::pick_fields(record, &self.fields) {
            let len = value.to_string().len();
            if len > MAX_FIELD_BYTES {
                return Err(format!(
                    "field `{name}` is {len} bytes long (as JSON): the decision log keeps fields \
                     of at most {MAX_FIELD_BYTES} bytes (--decision-log-field)"
                ));
            }
        }
        Ok(())
    }

    /// Turns the lines of a chunk whose record [fails the check](DecisionLog::check) into error
    /// lines naming the field, and drops their records, so nothing longer than the log keeps is
    /// evaluated and logged.
    pub fn refuse_oversized(
        &self,
        customers: &mut Vec<regua_sdk::Record>,
        reads: &mut [crate::pipeline::evaluator::LineRead],
    ) {
        use crate::pipeline::evaluator::LineRead;
        if self.fields.is_empty() {
            return;
        }
        let problems: Vec<Option<String>> = customers.iter().map(|c| self.check(c).err()).collect();
        if problems.iter().all(Option::is_none) {
            return;
        }
        // Where each record goes among those kept, or why it is refused.
        let mut kept = Vec::with_capacity(customers.len());
        let mut fate: Vec<Result<usize, (String, String)>> = Vec::with_capacity(customers.len());
        for (c, problem) in std::mem::take(customers).into_iter().zip(problems) {
            match problem {
                None => {
                    fate.push(Ok(kept.len()));
                    kept.push(c);
                }
                Some(problem) => fate.push(Err((c.id, problem))),
            }
        }
        for read in reads.iter_mut() {
            if let LineRead::Record(i) = read {
                *read = match &fate[*i] {
                    Ok(j) => LineRead::Record(*j),
                    Err((id, problem)) => LineRead::Bad(Some(id.clone()), problem.clone()),
                };
            }
        }
        *customers = kept;
    }

    /// The hash and the kept fields of `record`, as read (with [`DecisionLog::reads`]).
    pub fn input_of(&self, record: &regua_sdk::Record) -> InputOf {
        InputOf {
            hash: entry::input_hash(record),
            fields: entry::pick_fields(record, &self.fields),
        }
    }

    /// Logs each plugin's answer for `customer` as a decision of its own and returns their ids,
    /// in the order of `results`.
    pub fn plugin_calls<'a>(
        &self,
        now: regua_sdk::Timestamp,
        customer: &str,
        input: &InputOf,
        mut results: impl Iterator<
            Item = (
                &'a crate::runtime::plugin::Plugin,
                &'a crate::runtime::worker::RecordResult,
            ),
        >,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        let ids = self.plugin_lines(now, customer, input, &mut results, &mut lines);
        self.sink.record(lines, ids.len() as u64);
        ids
    }
}

impl Recorder for DecisionLog {
    fn reads(&self) -> regua_sdk::Fields {
        DecisionLog::reads(self)
    }

    fn refuse_oversized(
        &self,
        customers: &mut Vec<regua_sdk::Record>,
        reads: &mut [crate::pipeline::evaluator::LineRead],
    ) {
        DecisionLog::refuse_oversized(self, customers, reads)
    }

    fn input_of(&self, record: &regua_sdk::Record) -> InputOf {
        DecisionLog::input_of(self, record)
    }

    fn campaign_lines(&self, plan: &Plan, run: &mut CustomerRun, input: InputOf) -> (Vec<u8>, u64) {
        let mut lines = Vec::new();
        let mut count = 0;
        // By code: a run may decide only some of the plan's campaigns (the journey runtime).
        for decision in &mut run.decisions {
            let Some(campaign) = plan.campaigns.get(&decision.campaign) else {
                continue;
            };
            let id = entry::new_id();
            decision.id = Some(id.clone());
            let e = Entry::campaign(
                id,
                run.now,
                &run.customer.id,
                input.hash.clone(),
                campaign,
                decision,
                input.fields.clone(),
            );
            lines.extend_from_slice(&e.to_line());
            count += 1;
        }
        (lines, count)
    }

    fn plugin_lines(
        &self,
        now: regua_sdk::Timestamp,
        customer: &str,
        input: &InputOf,
        results: &mut dyn Iterator<
            Item = (
                &crate::runtime::plugin::Plugin,
                &crate::runtime::worker::RecordResult,
            ),
        >,
        out: &mut Vec<u8>,
    ) -> Vec<String> {
        results
            .map(|(plugin, result)| {
                let id = entry::new_id();
                let e = Entry::plugin(id.clone(), now, customer, input, plugin, result);
                out.extend_from_slice(&e.to_line());
                id
            })
            .collect()
    }

    fn record(&self, lines: Vec<u8>, count: u64) {
        self.sink.record(lines, count);
    }
}

/// Where a line of the log is, for errors: `` `decisions-000001.ndjson` line 7``.
#[derive(Clone, Copy, Debug)]
pub struct LineAt<'a> {
    path: &'a std::path::Path,
    line: usize,
}

impl std::fmt::Display for LineAt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` line {}", self.path.display(), self.line)
    }
}

/// Calls `each` with every decision of the log folder `dir`, oldest file first, and where the
/// line is; stops at the first error, its own or a line that is not a decision (named by file
/// and line). Returns how many files were read.
pub fn each_entry(
    dir: &std::path::Path,
    mut each: impl FnMut(Entry, LineAt<'_>) -> Result<(), String>,
) -> Result<usize, String> {
    use std::io::BufRead as _;
    let files = sink::log_files(dir)
        .map_err(|e| format!("cannot read the decision log `{}`: {e}", dir.display()))?;
    for (_, path) in &files {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let at = LineAt { path, line: n + 1 };
            let entry: Entry =
                serde_json::from_str(&line).map_err(|e| format!("{at}: not a decision: {e}"))?;
            each(entry, at)?;
        }
    }
    Ok(files.len())
}

/// The millisecond of the host's clock an id was made at (its first part), if it is an id.
fn id_millis(id: &str) -> Option<i64> {
    let ms = id.split('-').next()?;
    (ms.len() == 12).then(|| i64::from_str_radix(ms, 16).ok())?
}

/// The clock millisecond of the first and of the last decision of a log file, read from its
/// two ends only (a line of up to 1 MiB), or `None` for a file with no decision line there.
fn file_span(path: &std::path::Path) -> std::io::Result<Option<(i64, i64)>> {
    use std::io::{BufRead as _, Read as _, Seek as _, SeekFrom};
    let millis_of = |line: &[u8]| {
        serde_json::from_slice::<Entry>(line)
            .ok()
            .and_then(|e| id_millis(&e.decision))
    };
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut first = Vec::new();
    std::io::BufReader::new(&mut file)
        .take(1 << 20)
        .read_until(b'\n', &mut first)?;
    let Some(first) = millis_of(&first) else {
        return Ok(None);
    };
    let start = len.saturating_sub(1 << 20);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(len - start).read_to_end(&mut tail)?;
    let last = tail
        .split(|&b| b == b'\n')
        .rev()
        .find_map(millis_of)
        .unwrap_or(first);
    Ok(Some((first, last)))
}

/// Finds decision `id` in the log folder `dir`, newest file first. Reads only the files whose
/// first and last decisions were made around the id's millisecond (the id begins with it), each
/// a line at a time, so an unknown id costs at most a scan of one file or two, in a small,
/// bounded buffer, and an id from outside the log's period costs two reads per file.
pub fn find(dir: &std::path::Path, id: &str) -> std::io::Result<Option<Entry>> {
    use std::io::BufRead as _;
    let Some(ms) = id_millis(id) else {
        return Ok(None);
    };
    let needle = format!("\"decision\":{}", serde_json::Value::from(id));
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    // Ids are made before their line is written: a line can land a little after a later one.
    let slack = 60_000;
    for (_, path) in sink::log_files(dir)?.into_iter().rev() {
        match file_span(&path)? {
            Some((first, last)) if first - slack <= ms && ms <= last + slack => {}
            _ => continue,
        }
        let mut lines = std::io::BufReader::with_capacity(64 << 10, std::fs::File::open(&path)?);
        let mut line = Vec::new();
        loop {
            line.clear();
            if lines.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if finder.find(&line).is_some()
                && let Ok(entry) = serde_json::from_slice::<Entry>(&line)
                && entry.decision == id
            {
                return Ok(Some(entry));
            }
        }
    }
    Ok(None)
}

/// The newest `n` decisions of the log folder `dir`, newest first. Reads each file from its end,
/// a growing window at a time, so a long log costs what its last decisions take; a line that
/// is not a decision is passed over (`regua decisions report` names such lines).
pub fn latest(dir: &std::path::Path, n: usize) -> std::io::Result<Vec<Entry>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut found = Vec::new();
    for (_, path) in sink::log_files(dir)?.into_iter().rev() {
        let mut file = std::fs::File::open(&path)?;
        let len = file.metadata()?.len();
        let mut window = 256u64 << 10;
        loop {
            let start = len.saturating_sub(window);
            file.seek(SeekFrom::Start(start))?;
            let mut bytes = Vec::with_capacity((len - start) as usize);
            file.by_ref().take(len - start).read_to_end(&mut bytes)?;
            let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
            if start > 0 {
                lines.remove(0); // begins inside a line
            }
            let entries: Vec<Entry> = lines
                .iter()
                .rev()
                .filter_map(|l| serde_json::from_slice(l).ok())
                .take(n - found.len())
                .collect();
            if entries.len() == n - found.len() || start == 0 {
                found.extend(entries);
                break;
            }
            window *= 4;
        }
        if found.len() == n {
            break;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize, pad: usize) -> String {
        line_with_id(format!("d-{n}"), pad)
    }

    fn line_with_id(decision: String, pad: usize) -> String {
        let entry = Entry {
            decision,
            time: "2025-03-11T12:00:00Z".into(),
            now: "2025-03-11T12:00:00Z".into(),
            source: "plugin".into(),
            customer: "c".repeat(pad),
            input: "sha256:00".into(),
            campaign: None,
            requester: None,
            variant: None,
            plugins: Default::default(),
            outcome: "match".into(),
            reasons: vec![],
            messages: vec![],
            denied: vec![],
            error: None,
            fields: Default::default(),
        };
        serde_json::to_string(&entry).unwrap() + "\n"
    }

    #[test]
    fn the_latest_are_read_from_the_end_newest_first_across_files_and_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        // Three files, the middle one with lines longer than the first window read.
        let mut n = 0;
        for (file, count, pad) in [(1, 5, 10), (2, 3, 400_000), (3, 4, 10)] {
            let mut text = String::new();
            for _ in 0..count {
                n += 1;
                text.push_str(&line(n, pad));
                if n == 2 {
                    text.push_str("not a decision\n");
                }
            }
            std::fs::write(dir.path().join(format!("decisions-{file:06}.ndjson")), text).unwrap();
        }
        let ids = |k| -> Vec<String> {
            latest(dir.path(), k)
                .unwrap()
                .into_iter()
                .map(|e| e.decision)
                .collect()
        };
        assert_eq!(ids(2), ["d-12", "d-11"]);
        assert_eq!(ids(6), ["d-12", "d-11", "d-10", "d-9", "d-8", "d-7"]);
        let all = ids(100);
        assert_eq!(
            all.len(),
            12,
            "the line that is not a decision is passed over"
        );
        assert_eq!(all.last().unwrap(), "d-1");
    }

    #[test]
    fn a_decision_is_found_by_its_id_in_the_file_of_its_time_and_an_unknown_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let id = |ms: i64, n: usize| format!("{ms:012x}-1a2b-{n:x}");
        // Three files a minute or more apart, made of the ids of their minutes.
        let base = 1_741_694_400_000; // 2025-03-11T12:00:00Z
        for (file, start) in [(1, 0), (2, 600_000), (3, 1_200_000)] {
            let mut text = String::new();
            for n in 0..50 {
                text.push_str(&line_with_id(id(base + start + n as i64 * 1000, n), 20));
            }
            std::fs::write(dir.path().join(format!("decisions-{file:06}.ndjson")), text).unwrap();
        }
        let found = |wanted: &str| find(dir.path(), wanted).unwrap().map(|e| e.decision);
        let wanted = id(base + 600_000 + 7_000, 7);
        assert_eq!(found(&wanted), Some(wanted.clone()));
        let first = id(base, 0);
        assert_eq!(found(&first), Some(first.clone()));
        // Inside a file's period but not in it; outside every period; not an id at all.
        assert_eq!(found(&id(base + 600_000 + 7_000, 99)), None);
        assert_eq!(found(&id(base - 86_400_000, 1)), None);
        assert_eq!(found("not-an-id"), None);
    }
}
