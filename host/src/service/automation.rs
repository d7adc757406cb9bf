//! The journey runtime in the service (`regua serve --state`): the store, the core over the
//! campaigns served (as they are at each input, so a new build applies at the customer's next
//! input), the clock, and the loop that fires timers when they are due.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use regua_sdk::Timestamp;

use crate::automation::{Core, Input, Shared, Status, Store};
use crate::pipeline::campaign::{Campaigns, RunInputs};
use crate::runtime::worker::Worker;
use crate::service::campaigns::CampaignStore;

/// How far ahead of the service's clock an input's `at` may be: a client's clock a little
/// ahead is fine; an input days ahead would hold its customer's later inputs as late.
pub const MAX_AHEAD: Duration = Duration::from_secs(300);

/// Input ids forgotten per pass of the timer loop, at most.
const FORGET_PAGE: usize = 10_000;

/// How soon the timer loop looks again at due timers it could not fire (their customers were
/// being decided).
const RETRY_CLAIMED: Duration = Duration::from_millis(20);

/// Timers fired per pass of the timer loop before it lets inputs in again.
const TIMERS_PER_PASS: usize = 2_000;

/// The service's clock.
#[derive(Debug)]
pub enum Clock {
    /// The system's.
    Wall,
    /// Set by `POST /v1/clock` only: for rehearsing réguas on recorded time.
    Manual(Mutex<Timestamp>),
}

impl Clock {
    /// Now.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::Wall => crate::wall_clock(),
            Clock::Manual(t) => *t.lock().expect("clock lock"),
        }
    }
}

/// The runtime the service drives.
pub struct Automation {
    /// The store, shared by the evaluation threads: each decides its own customers with it
    /// unlocked.
    store: Shared,
    core: Core,
    campaigns: Arc<CampaignStore>,
    /// The campaigns the scheduled campaigns' timers were last set for.
    scheduled_for: Mutex<Option<Arc<Campaigns>>>,
    /// How long an input's id is remembered after its instant (`--dedup-days`).
    dedup: regua_sdk::Duration,
    /// The clock.
    pub clock: Clock,
    /// Woken when a commit may have set an earlier timer.
    wake: tokio::sync::Notify,
    /// Requests' inputs waiting to be applied (see [`Automation::submit`]).
    waiting: Mutex<Queue>,
}

/// The requests waiting, in order, and the ticket the next one gets.
#[derive(Default)]
struct Queue {
    requests: Vec<Waiting>,
    next: u64,
}

/// One request's inputs, waiting, and where their statuses go.
struct Waiting {
    ticket: u64,
    inputs: Vec<Input>,
    answer: tokio::sync::oneshot::Sender<Result<Vec<Status>, String>>,
}

/// Inputs applied together at most by one pass of [`Automation::apply_waiting`] (whole
/// requests: a larger request is applied alone).
const COMBINED: usize = 1_000;

impl std::fmt::Debug for Automation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Automation")
            .field("clock", &self.clock)
            .finish()
    }
}

impl Automation {
    /// A runtime keeping its state in the store `state` names (a folder, or a PostgreSQL URL:
    /// [`crate::automation::open_store`]), deciding with the campaigns `campaigns` serves, each
    /// decision also a line of the decision log `recorder`, if any.
    pub fn open(
        state: &str,
        campaigns: Arc<CampaignStore>,
        default_tz: &str,
        clock: Clock,
        recorder: Option<Arc<dyn crate::pipeline::recorder::Recorder>>,
        dedup: regua_sdk::Duration,
    ) -> anyhow::Result<Arc<Automation>> {
        let store = crate::automation::open_store(state)?;
        let tz = default_tz.to_owned();
        let served = campaigns.clone();
        let core = Core::new(Arc::new(move || {
            served
                .plan(
                    None,
                    RunInputs {
                        now: Timestamp::from_millis(0),
                        default_tz: tz.clone(),
                        event: None,
                    },
                )
                .expect("every campaign, even none")
        }))
        .recording(recorder);
        Ok(Arc::new(Automation {
            store: Shared::new(store)?,
            core,
            campaigns,
            scheduled_for: Mutex::new(None),
            dedup,
            clock,
            wake: tokio::sync::Notify::new(),
            waiting: Mutex::new(Queue::default()),
        }))
    }

    /// Runs `f` on the store, alone: for reads, and for writes no step makes (the outbox's
    /// delivery states).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut dyn Store) -> R) -> R {
        self.store.lock(f)
    }

    /// Applies inputs, each committed before this returns (with the other steps of its wave):
    /// an input is accepted once this returns its status. One without an instant is applied
    /// at the service's clock as it is applied (or the customer's clock, if an earlier input
    /// set it later). If this fails, the inputs applied before the failure stay applied: sent
    /// again, they answer `duplicate`.
    pub fn apply(&self, worker: &mut Worker, inputs: &[Input]) -> anyhow::Result<Vec<Status>> {
        let now = self.clock.now();
        let statuses = self.core.apply_many(&self.store, worker, inputs, now)?;
        self.wake.notify_one();
        Ok(statuses)
    }

    /// Queues a request's inputs; [`Automation::apply_waiting`] with the ticket this answers
    /// applies them and sends their statuses (or the error that stopped them) to the receiver.
    /// Requests waiting together are applied together: one request of one event each from
    /// many clients makes one wave, one plugin call per campaign step and one commit, as a
    /// batch does. Requests sent at the same time have no order between them, so this changes
    /// no outcome.
    pub fn submit(
        &self,
        inputs: Vec<Input>,
    ) -> (
        u64,
        tokio::sync::oneshot::Receiver<Result<Vec<Status>, String>>,
    ) {
        let (answer, receiver) = tokio::sync::oneshot::channel();
        let mut queue = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = queue.next;
        queue.next += 1;
        queue.requests.push(Waiting {
            ticket,
            inputs,
            answer,
        });
        (ticket, receiver)
    }

    /// Applies the waiting requests in order, as many together as [`COMBINED`] allows, until
    /// the request with `ticket` has been taken (by this call or another). Each request
    /// submitted is followed by a call with its ticket, so none is left waiting, and none
    /// waits for more than the requests queued before it. A pass takes its share of the
    /// waiting inputs among `threads` evaluation threads (at least one request), so the
    /// other threads' calls decide the rest at the same time instead of waiting idle.
    pub fn apply_waiting(&self, worker: &mut Worker, ticket: u64, threads: usize) {
        loop {
            let taken: Vec<Waiting> = {
                let mut queue = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                let waiting = &mut queue.requests;
                if !waiting.iter().any(|w| w.ticket == ticket) {
                    return;
                }
                let total: usize = waiting.iter().map(|w| w.inputs.len()).sum();
                let share = total.div_ceil(threads.max(1)).min(COMBINED);
                let mut n = 0;
                let mut count = 0;
                while count < waiting.len()
                    && (count == 0 || n + waiting[count].inputs.len() <= share)
                {
                    n += waiting[count].inputs.len();
                    count += 1;
                }
                waiting.drain(..count).collect()
            };
            let mut inputs = Vec::with_capacity(taken.iter().map(|w| w.inputs.len()).sum());
            let mut answers = Vec::with_capacity(taken.len());
            for w in taken {
                answers.push((w.inputs.len(), w.answer));
                inputs.extend(w.inputs);
            }
            match self.apply(worker, &inputs) {
                Ok(statuses) => {
                    let mut statuses = statuses.into_iter();
                    for (n, answer) in answers {
                        // A request gone (its client left) needs no answer.
                        let _ = answer.send(Ok(statuses.by_ref().take(n).collect()));
                    }
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    for (_, answer) in answers {
                        let _ = answer.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Imports records (a known customer merged) and gives them the scheduled campaigns'
    /// timers they lack, from the service's clock.
    pub fn import(&self, records: &[regua_sdk::Record]) -> anyhow::Result<()> {
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let now = self.clock.now();
        // No step decides these customers while their records are merged.
        let keys: Vec<String> = ids
            .iter()
            .map(|id| crate::automation::shared::customer_key(id))
            .collect();
        let mut claimed = crate::automation::shared::Claimed::new(&self.store);
        claimed.add_waiting(&keys);
        self.with_store(|store| {
            store.import(records)?;
            store.batch(&mut |store| self.core.schedule_customers(store, &ids, now))
        })?;
        drop(claimed);
        self.wake.notify_one();
        Ok(())
    }

    /// Sets the scheduled campaigns' timers if the campaigns changed since they were last set
    /// (at start, after a reload).
    fn schedule_if_changed(&self) -> anyhow::Result<()> {
        let current = self.campaigns.current();
        let mut last = self.scheduled_for.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &current)) {
            return Ok(());
        }
        let now = self.clock.now();
        // Every customer's timers: no step decides meanwhile.
        let set = self
            .store
            .exclusive(|store| self.core.schedule(store, now))?;
        if set > 0 {
            tracing::info!(timers = set, "scheduled campaigns' timers set");
        }
        *last = Some(current);
        Ok(())
    }

    /// Fires the timers due at or before `until` (at most `limit`); answers how many fired.
    /// With `wait`, a customer an input is being applied to is waited for (every timer due by
    /// `until` has fired when this returns); without, it is left for a later pass. Also
    /// forgets the ids of inputs older than the dedup window before `until`.
    pub fn fire_due(
        &self,
        worker: &mut Worker,
        until: Timestamp,
        limit: usize,
        wait: bool,
    ) -> anyhow::Result<u64> {
        let fired = self
            .core
            .fire_due(&self.store, worker, until, limit, wait)?;
        // A page at a time, so a long backlog does not hold the store.
        self.with_store(|store| store.forget_events(until - self.dedup, FORGET_PAGE))?;
        Ok(fired)
    }

    /// Moves a manual clock to `to` (never back); the caller fires the timers due by then.
    pub fn set_clock(&self, to: Timestamp) -> Result<(), String> {
        let Clock::Manual(clock) = &self.clock else {
            return Err(
                "the service runs on the wall clock; start it with --manual-clock to \
                        set its clock"
                    .into(),
            );
        };
        let mut now = clock.lock().expect("clock lock");
        if to < *now {
            return Err(format!(
                "field `now`: {to} is before the service's clock ({}); the clock only moves \
                 forward",
                *now
            ));
        }
        *now = to;
        Ok(())
    }

    /// Fires due timers as the clock reaches them, until the service stops.
    pub async fn run_timers(self: Arc<Self>, state: crate::service::http::AppState) {
        loop {
            let now = self.clock.now();
            let me = self.clone();
            // On an evaluation thread: the store's lock may be held by a long batch.
            let pass = state
                .evaluator()
                .run(move |w| {
                    me.schedule_if_changed()?;
                    let fired = me.fire_due(w, now, TIMERS_PER_PASS, false)?;
                    anyhow::Ok((fired, me.with_store(|s| s.next_due())?))
                })
                .await;
            let (fired, next) = match pass {
                Ok(Ok((fired, _))) if fired as usize >= TIMERS_PER_PASS => continue,
                Ok(Ok((fired, next))) => (fired, next),
                Ok(Err(e)) => {
                    tracing::error!("firing timers: {e:#}");
                    (0, None)
                }
                Err(_) => {
                    tracing::error!("firing timers: a worker panicked");
                    (0, None)
                }
            };
            let wait = match (next, &self.clock) {
                (_, Clock::Manual(_)) | (None, _) => Duration::from_secs(60),
                (Some(due), Clock::Wall) => {
                    let ms = (due.as_millis() - self.clock.now().as_millis()).max(0) as u64;
                    // Due, yet none fired: their customers are being decided by inputs, which
                    // wake this loop when they are done; look again soon in any case.
                    let floor = if fired == 0 {
                        RETRY_CLAIMED
                    } else {
                        Duration::ZERO
                    };
                    Duration::from_millis(ms).clamp(floor, Duration::from_secs(60))
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = self.campaigns.reloaded.notified() => {}
            }
        }
    }
}
