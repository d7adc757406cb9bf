//! The evaluator's fixed pool of threads, each with its own [`Worker`]: plugin calls never block
//! an async runtime, and concurrency matches the cores. Only [`super::evaluator`] uses it.

use crossbeam_channel::{Sender, unbounded};

use crate::runtime::worker::Worker;

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// An evaluation panicked in the host (a bug); the detail is in the log.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("an evaluation failed inside the host (see the log)")]
pub struct Panicked;

/// Evaluation threads.
#[derive(Clone, Debug)]
pub(super) struct Pool {
    jobs: Sender<Job>,
}

impl Pool {
    /// A pool of `threads` threads (at least one).
    pub(super) fn new(threads: usize) -> std::io::Result<Pool> {
        let threads = threads.max(1);
        let (jobs, rx) = unbounded::<Job>();
        for n in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("regua-eval-{n}"))
                .spawn(move || {
                    let mut worker = Worker::new();
                    for job in rx {
                        // A bug in the host must not take an evaluation thread down with it: the
                        // caller gets an error and the thread starts over with fresh instances.
                        let run = std::panic::AssertUnwindSafe(|| job(&mut worker));
                        if std::panic::catch_unwind(run).is_err() {
                            tracing::error!(
                                "an evaluation panicked in the host; its instances are discarded"
                            );
                            worker = Worker::new();
                        }
                    }
                })?;
        }
        Ok(Pool { jobs })
    }

    /// Queues `f` on a pool thread; the receiver gets its result (or is closed if `f` panicked).
    pub(super) fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker) -> R + Send + 'static,
    ) -> tokio::sync::oneshot::Receiver<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |worker| {
            let _ = tx.send(f(worker));
        });
        self.jobs
            .send(job)
            .expect("the pool's threads live as long as the pool");
        rx
    }
}
