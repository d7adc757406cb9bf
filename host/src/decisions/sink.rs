//! Where decisions are written: NDJSON files in a folder, rotated by size, by one thread of
//! their own so that no request waits on the disk.
//!
//! The files are `decisions-000001.ndjson`, `decisions-000002.ndjson`, …; a new file starts when
//! the current one would pass the size limit, and a new sink continues after the highest number
//! it finds, so restarts never overwrite. Lines a write could not take (disk full, permissions,
//! the folder gone) are kept in memory, up to a bound, and written when the folder takes them
//! again; the sink reports itself failing meanwhile, and counts the lines it had to drop past the
//! bound. [`Sink::close`] writes everything queued and syncs the file: a graceful shutdown loses
//! no decision.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// How the sink writes.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// The folder of the log files.
    pub dir: PathBuf,
    /// A file is closed and the next one started when a write would take it past this size
    /// (a file takes at least one write, however large).
    pub max_file_bytes: u64,
    /// Lines kept in memory while the folder does not take them; past this, lines are dropped
    /// and counted.
    pub max_pending_bytes: usize,
}

impl SinkConfig {
    /// Files of up to 64 MiB in `dir`, up to 64 MiB kept while writing fails.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SinkConfig {
            dir: dir.into(),
            max_file_bytes: 64 << 20,
            max_pending_bytes: 64 << 20,
        }
    }
}

/// How the sink stands, for `/healthz` and the metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkStatus {
    /// Why the last write failed, while writing fails; `None` when the sink is writing.
    pub error: Option<String>,
    /// Lines written to a file.
    pub written: u64,
    /// Lines waiting to be written (queued, or kept after a failed write).
    pub pending: u64,
    /// Lines dropped because writing failed for longer than the memory bound covers.
    pub lost: u64,
    /// Writes that failed.
    pub failures: u64,
}

enum Msg {
    Lines(Vec<u8>, u64),
    Sync(Sender<()>),
}

#[derive(Default)]
struct Shared {
    error: Mutex<Option<String>>,
    written: AtomicU64,
    queued: AtomicU64,
    lost: AtomicU64,
    failures: AtomicU64,
}

/// The decision log's writer. Cheap to share; [`Sink::record`] never blocks on the disk.
pub struct Sink {
    tx: Mutex<Option<Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    dir: PathBuf,
}

impl Sink {
    /// A sink writing into `config.dir`, created if missing. A folder that cannot be written
    /// does not stop the sink from starting: it starts failing, says why in its status, and
    /// writes once the folder can be written.
    pub fn start(config: SinkConfig) -> Sink {
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::default());
        let dir = config.dir.clone();
        let mut writer = Writer {
            config,
            shared: shared.clone(),
            file: None,
            pending: Vec::new(),
            pending_lines: 0,
        };
        writer.open_if_needed(0);
        let thread = std::thread::Builder::new()
            .name("regua-decision-log".into())
            .spawn(move || writer.run(rx))
            .expect("cannot start the decision log's thread");
        Sink {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            shared,
            dir,
        }
    }

    /// The folder written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues `lines` (`count` NDJSON lines, each ending in a newline) for writing. After
    /// [`Sink::close`] the lines are counted as lost.
    pub fn record(&self, lines: Vec<u8>, count: u64) {
        if count == 0 {
            return;
        }
        let tx = self.tx.lock().expect("sink lock");
        match tx.as_ref() {
            Some(tx) => {
                self.shared.queued.fetch_add(count, Ordering::Relaxed);
                let _ = tx.send(Msg::Lines(lines, count));
            }
            None => {
                self.shared.lost.fetch_add(count, Ordering::Relaxed);
            }
        }
    }

    /// Waits until everything queued before this call is written (or kept after a failed
    /// write), so that a reader of the files sees it.
    pub fn sync(&self) {
        let (ack, done) = crossbeam_channel::bounded(1);
        let sent = match self.tx.lock().expect("sink lock").as_ref() {
            Some(tx) => tx.send(Msg::Sync(ack)).is_ok(),
            None => false,
        };
        if sent {
            let _ = done.recv();
        }
    }

    /// Writes everything queued, syncs the file and stops the thread. Later calls do nothing.
    pub fn close(&self) {
        drop(self.tx.lock().expect("sink lock").take());
        if let Some(t) = self.thread.lock().expect("sink lock").take() {
            let _ = t.join();
        }
    }

    /// How the sink stands now.
    pub fn status(&self) -> SinkStatus {
        SinkStatus {
            error: self.shared.error.lock().expect("sink lock").clone(),
            written: self.shared.written.load(Ordering::Relaxed),
            pending: self.shared.queued.load(Ordering::Relaxed),
            lost: self.shared.lost.load(Ordering::Relaxed),
            failures: self.shared.failures.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    config: SinkConfig,
    shared: Arc<Shared>,
    /// The open file, its number and its size.
    file: Option<(File, u32, u64)>,
    /// Lines a failed write left, oldest first.
    pending: Vec<u8>,
    pending_lines: u64,
}

/// The files of a log folder, by number.
pub fn log_files(dir: &Path) -> std::io::Result<Vec<(u32, PathBuf)>> {
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name
                .strip_prefix("decisions-")?
                .strip_suffix(".ndjson")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    files.sort();
    Ok(files)
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let mut next = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None, // a retry after a failed write
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    if let Some((f, ..)) = &self.file {
                        let _ = f.sync_all();
                    }
                    return;
                }
            };
            // Take what else is queued, up to a megabyte, so one write serves many requests.
            while let Some(msg) = next {
                match msg {
                    Msg::Lines(lines, count) => {
                        self.pending.extend_from_slice(&lines);
                        self.pending_lines += count;
                    }
                    Msg::Sync(ack) => {
                        self.flush();
                        let _ = ack.send(());
                    }
                }
                next = if self.pending.len() < 1 << 20 {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            self.flush();
        }
    }

    fn fail(&mut self, what: String) {
        self.shared.failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!("decision log: {what}");
        *self.shared.error.lock().expect("sink lock") = Some(what);
        self.file = None;
        if self.pending.len() > self.config.max_pending_bytes {
            let lost = self.pending_lines;
            self.shared.lost.fetch_add(lost, Ordering::Relaxed);
            self.shared.queued.fetch_sub(lost, Ordering::Relaxed);
            tracing::error!("decision log: {lost} decisions dropped: writing has failed too long");
            self.pending.clear();
            self.pending_lines = 0;
        }
    }

    /// Opens the file to write `more` bytes into: the current one if it has room, else the next.
    fn open_if_needed(&mut self, more: u64) -> bool {
        // A file deleted under the writer (its folder removed, a clean-up gone wrong) would take
        // lines no one can read: start a new one instead.
        if let Some((file, n, _)) = &self.file
            && !self.still_there(file, *n)
        {
            tracing::warn!(
                "decision log: `decisions-{n:06}.ndjson` is gone from `{}`; starting a new file",
                self.config.dir.display()
            );
            self.file = None;
        }
        if let Some((_, _, size)) = &self.file
            && (*size == 0 || size + more <= self.config.max_file_bytes)
        {
            return true;
        }
        let next = match &self.file {
            Some((_, n, _)) => n + 1,
            None => {
                if let Err(e) = std::fs::create_dir_all(&self.config.dir) {
                    self.fail(format!(
                        "cannot create the folder `{}`: {e}",
                        self.config.dir.display()
                    ));
                    return false;
                }
                match log_files(&self.config.dir) {
                    Ok(files) => files.last().map_or(1, |(n, _)| n + 1),
                    Err(e) => {
                        self.fail(format!(
                            "cannot read the folder `{}`: {e}",
                            self.config.dir.display()
                        ));
                        return false;
                    }
                }
            }
        };
        let path = self.config.dir.join(format!("decisions-{next:06}.ndjson"));
        match OpenOptions::new().create_new(true).append(true).open(&path) {
            Ok(f) => {
                self.file = Some((f, next, 0));
                true
            }
            Err(e) => {
                self.fail(format!("cannot create `{}`: {e}", path.display()));
                false
            }
        }
    }

    /// Whether the open file `n` is still the one at its path.
    fn still_there(&self, file: &File, n: u32) -> bool {
        let path = self.config.dir.join(format!("decisions-{n:06}.ndjson"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            match (std::fs::metadata(&path), file.metadata()) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = file;
            path.exists()
        }
    }

    fn flush(&mut self) {
        if self.pending_lines == 0 {
            return;
        }
        if !self.open_if_needed(self.pending.len() as u64) {
            return;
        }
        let (file, n, size) = self.file.as_mut().expect("opened");
        match file.write_all(&self.pending) {
            Ok(()) => {
                *size += self.pending.len() as u64;
                let lines = self.pending_lines;
                self.shared.written.fetch_add(lines, Ordering::Relaxed);
                self.shared.queued.fetch_sub(lines, Ordering::Relaxed);
                self.pending.clear();
                self.pending_lines = 0;
                *self.shared.error.lock().expect("sink lock") = None;
            }
            Err(e) => {
                let what = format!("cannot write `decisions-{n:06}.ndjson`: {e}");
                // A partial write leaves a broken last line; the next write starts a new file
                // so every file's lines stay whole, and the whole batch is written again.
                self.fail(what);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(from: u64, n: u64) -> Vec<u8> {
        (from..from + n)
            .flat_map(|i| format!("{{\"decision\":\"d{i}\"}}\n").into_bytes())
            .collect()
    }

    fn read_all(dir: &Path) -> Vec<String> {
        log_files(dir)
            .unwrap()
            .into_iter()
            .flat_map(|(_, p)| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn every_line_is_written_once_across_rotations_and_close() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SinkConfig::new(dir.path());
        config.max_file_bytes = 200;
        let sink = Sink::start(config);
        for i in 0..100 {
            sink.record(lines(i * 3, 3), 3);
            if i % 2 == 0 {
                sink.sync(); // writes of their own, so the files rotate
            }
        }
        sink.close();
        let got = read_all(dir.path());
        let want: Vec<String> = (0..300)
            .map(|i| format!("{{\"decision\":\"d{i}\"}}"))
            .collect();
        assert_eq!(got, want);
        assert!(log_files(dir.path()).unwrap().len() > 10, "rotated by size");
        let s = sink.status();
        assert_eq!((s.written, s.pending, s.lost, s.error), (300, 0, 0, None));
    }

    #[test]
    fn a_restart_continues_after_the_last_file() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..2 {
            let sink = Sink::start(SinkConfig::new(dir.path()));
            sink.record(lines(round, 1), 1);
            sink.close();
        }
        let names: Vec<u32> = log_files(dir.path()).unwrap().iter().map(|f| f.0).collect();
        assert_eq!(names, [1, 2]);
        assert_eq!(read_all(dir.path()).len(), 2);
    }

    #[test]
    fn a_folder_that_cannot_be_written_shows_and_keeps_the_lines_until_it_can() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the folder should be: creating it fails, for root too.
        let target = dir.path().join("log");
        std::fs::write(&target, "in the way").unwrap();
        let sink = Sink::start(SinkConfig::new(&target));
        sink.record(lines(0, 5), 5);
        sink.sync();
        let s = sink.status();
        assert!(
            s.error.as_deref().unwrap().contains("cannot create"),
            "{s:?}"
        );
        assert_eq!((s.written, s.pending), (0, 5));
        std::fs::remove_file(&target).unwrap();
        sink.record(lines(5, 1), 1);
        sink.sync();
        let s = sink.status();
        assert_eq!(
            (s.written, s.pending, s.error.as_deref()),
            (6, 0, None),
            "{s:?}"
        );
        sink.close();
        assert_eq!(read_all(&target).len(), 6);
    }

    #[test]
    fn a_folder_removed_under_the_writer_is_made_again_and_no_line_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("log");
        let sink = Sink::start(SinkConfig::new(&target));
        sink.record(lines(0, 3), 3);
        sink.sync();
        std::fs::remove_dir_all(&target).unwrap();
        sink.record(lines(3, 2), 2);
        sink.close();
        let s = sink.status();
        assert_eq!((s.written, s.pending, s.lost), (5, 0, 0), "{s:?}");
        // The first three went with the folder; the two after it are in the new one.
        assert_eq!(
            read_all(&target),
            ["{\"decision\":\"d3\"}", "{\"decision\":\"d4\"}"]
        );
    }
}
