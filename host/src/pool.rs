//! A fixed pool of evaluation threads for the service, each keeping its own warm instances, so
//! plugin calls never block the async runtime and concurrency matches the cores.

use crossbeam_channel::{Sender, unbounded};

use crate::evaluate::Worker;

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// Evaluation threads.
#[derive(Clone, Debug)]
pub struct Pool {
    jobs: Sender<Job>,
    threads: usize,
}

impl Pool {
    /// A pool of `threads` threads (at least one).
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let threads = threads.max(1);
        let (jobs, rx) = unbounded::<Job>();
        for n in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("regua-eval-{n}"))
                .spawn(move || {
                    let mut worker = Worker::new();
                    for job in rx {
                        job(&mut worker);
                    }
                })?;
        }
        Ok(Pool { jobs, threads })
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on a pool thread and waits for it without blocking the runtime.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker) -> R + Send + 'static,
    ) -> R {
        let rx = self.submit(f);
        rx.await
            .expect("evaluation threads never stop while the pool lives")
    }

    /// Queues `f` on a pool thread; the receiver gets its result.
    pub fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker) -> R + Send + 'static,
    ) -> tokio::sync::oneshot::Receiver<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |worker| {
            let _ = tx.send(f(worker));
        });
        self.jobs
            .send(job)
            .expect("evaluation threads never stop while the pool lives");
        rx
    }
}
