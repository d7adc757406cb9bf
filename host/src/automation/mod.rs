//! Réguas that run themselves: the journey runtime (docs/RUNTIME.md).
//!
//! Its core is a deterministic step: the stored state of one customer, one input (an event, or
//! a due timer) and its instant in; the campaigns that input concerns evaluated on the campaign
//! pipeline; the new record (journeys moved, planned messages among the contacts), the
//! campaigns' next timers, the outbox entries and the decisions out, written in one
//! transaction. Two drivers use it: the service on the wall clock (`regua serve --state`) and
//! `regua replay` on recorded time.

pub mod input;
pub mod pg;
pub mod replay;
pub mod shared;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use regua_sdk::time::Zone;
use regua_sdk::{Record, Timestamp};
use serde::Serialize;

pub use input::{Input, What};
pub use pg::Postgres;
pub use shared::{Access, Alone, Shared};
pub use store::{Change, Entries, OutboxEntry, Sqlite, Store, Timer};

use crate::pipeline::campaign::definition::Schedule;
use crate::pipeline::campaign::{Campaign, CustomerRun, Each, Kind, Plan};
use crate::pipeline::recorder::Recorder;
use crate::runtime::worker::Worker;
use shared::Claimed;

/// Opens the store `state` names (`--state`): a PostgreSQL database by its URL
/// (`postgres://…`, shared by replicas), or a folder (SQLite, created if need be).
pub fn open_store(state: &str) -> anyhow::Result<Box<dyn Store>> {
    if pg::is_url(state) {
        return Ok(Box::new(Postgres::open(state)?));
    }
    let mut store = Sqlite::open(std::path::Path::new(state))?;
    store.checkpoint_in_background()?;
    Ok(Box::new(store))
}

/// Attempts of a timer whose campaign fails on the customer (a plugin error): retried 1, 2, 4,
/// 8 minutes after the failed attempt, then dropped (the decisions say so).
pub const TIMER_ATTEMPTS: u32 = 5;

/// The campaigns as served now, with their plugins: a plan whose inputs the step sets.
pub type Source = Arc<dyn Fn() -> Plan + Send + Sync>;

/// What happened to one input.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Applied: the campaigns it concerns were decided; `messages` are the outbox keys planned.
    Applied {
        /// The instant it was applied at.
        at: Timestamp,
        /// The outbox entries it planned, by idempotency key.
        messages: Vec<String>,
        /// Campaigns whose plugins failed on it (their decision says why).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        failed: Vec<String>,
    },
    /// Its id was applied before: not applied again.
    Duplicate,
    /// Not applied, and why.
    Refused {
        /// Why.
        error: String,
    },
}

/// The step and its drivers' shared moves, over one store.
#[derive(Clone)]
pub struct Core {
    source: Source,
    /// Where every decision also goes, as a line of the decision log.
    recorder: Option<Arc<dyn Recorder>>,
}

/// What one step decided, to commit.
struct Step {
    change: Change,
    status: Status,
    /// The decisions' log lines, and how many, written once the change is committed.
    log: (Vec<u8>, u64),
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").finish()
    }
}

/// What triggers a step.
enum Trigger<'a> {
    Input(&'a Input),
    /// A customer's timers due at the same instant: their campaigns are decided together, in
    /// run order, so the most important one gets a slot they compete for.
    Timers(&'a [Timer]),
}

/// How many timers one call to [`Core::fire_due`] fires at most between queries.
const TIMER_PAGE: usize = 512;

/// Customers per transaction when the timers of a scheduled campaign are set.
const SCHEDULE_PAGE: usize = 5_000;

impl Core {
    /// A core deciding with the campaigns `source` gives at each step.
    pub fn new(source: Source) -> Core {
        Core {
            source,
            recorder: None,
        }
    }

    /// This core, also writing each decision to `recorder` (the decision log) once its step
    /// is committed.
    pub fn recording(mut self, recorder: Option<Arc<dyn Recorder>>) -> Core {
        self.recorder = recorder;
        self
    }

    /// Commits steps in one transaction, then records their decisions.
    fn commit(&self, access: &dyn Access, steps: Vec<Step>) -> anyhow::Result<Vec<Status>> {
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        access.with(&mut |store| {
            store.batch(&mut |store| {
                for step in &steps {
                    store.commit(&step.change)?;
                }
                Ok(())
            })
        })?;
        Ok(steps
            .into_iter()
            .map(|step| {
                if let Some(r) = &self.recorder
                    && step.log.1 > 0
                {
                    r.record(step.log.0, step.log.1);
                }
                step.status
            })
            .collect())
    }

    /// Applies one input at its instant (`input.at` must be set): first the customer's timers
    /// due at or before it, in order; then the input, unless its id was applied before or it is
    /// older than the customer's last applied input.
    pub fn apply(
        &self,
        access: &dyn Access,
        worker: &mut Worker,
        input: &Input,
    ) -> anyhow::Result<Status> {
        let at = input.at.expect("the driver gives every input an instant");
        let mut statuses = self.apply_many(access, worker, std::slice::from_ref(input), at)?;
        Ok(statuses.pop().expect("one input, one status"))
    }

    /// Applies `inputs` in order, as [`Core::apply`] applies each, with the steps of distinct
    /// customers decided together: one plugin call per campaign step for up to [`WAVE`] of
    /// them, each at its own instant. An input without an instant is applied at `now`, or at
    /// its customer's clock when an earlier input set it later. A customer's inputs still go
    /// one at a time in order (a second input of a customer, or a repeated id, waits for the
    /// steps before it to be committed), and its due timers fire before its input, so the
    /// outcome is the one of applying the inputs one by one.
    ///
    /// Each wave is committed as one transaction, and the plugins decide with the store
    /// unlocked: other threads use it meanwhile, never for a customer or input id of the wave
    /// (they are claimed until it is committed).
    pub fn apply_many(
        &self,
        access: &dyn Access,
        worker: &mut Worker,
        inputs: &[Input],
        now: Timestamp,
    ) -> anyhow::Result<Vec<Status>> {
        let mut statuses: Vec<Option<Status>> = vec![None; inputs.len()];
        // The steps waiting to be decided: the input's index, its record, instant, freshness.
        let mut wave: Vec<(usize, Record, Timestamp, bool)> = Vec::new();
        let mut claimed = Claimed::new(access);
        // A customer stays claimed from one wave to the next while it has inputs ahead in
        // this batch: released between waves, the timer loop could fire one of its timers due
        // after an input still waiting here (at the clock, not at the input's instant), and
        // that input would then be late, where one at a time it fires after it.
        let mut ahead: HashMap<String, usize> = HashMap::new();
        // The customers of the wave (stale once it is decided and empty).
        let mut deciding: HashSet<String> = HashSet::new();
        for input in inputs {
            *ahead
                .entry(shared::customer_key(&input.customer))
                .or_default() += 1;
        }
        for (k, input) in inputs.iter().enumerate() {
            let keys = [
                shared::customer_key(&input.customer),
                shared::input_key(&input.id),
            ];
            if let Some(n) = ahead.get_mut(&keys[0]) {
                *n -= 1;
            }
            // Kept between waves: this input's customer, and any with inputs still ahead.
            let keep = |key: &str| key == keys[0] || ahead.get(key).is_some_and(|n| *n > 0);
            let in_wave = !wave.is_empty() && deciding.contains(&keys[0]);
            if wave.len() >= WAVE || in_wave || claimed.holds(&keys[1]) {
                self.decide_wave(access, worker, inputs, &mut wave, &mut statuses)?;
                claimed.release_but(keep);
            }
            if !claimed.try_add(&claimed.lacking(&keys)) {
                // Another thread is deciding this customer or id: the wave so far goes first.
                // This thread then waits keeping only the customers with inputs ahead (let go,
                // the timer loop could fire a timer of theirs due after an input waiting
                // here), unless another thread waits so already: then it lets everything go
                // and waits holding nothing, so no two threads ever wait on each other.
                self.decide_wave(access, worker, inputs, &mut wave, &mut statuses)?;
                claimed.release_but(keep);
                if !claimed.add_holding(&claimed.lacking(&keys)) {
                    claimed.release();
                    claimed.add_waiting(&keys);
                }
            }
            // One read: whether the id was applied, the customer, and whether any of its
            // timers is due by the input's instant.
            let (seen, mut stored, stamped, due) = access.read(|store| {
                if store.event_seen(&input.id)? {
                    return Ok((true, None, now, false));
                }
                let stored = store.customer(&input.customer)?;
                let clock = stored.as_ref().and_then(|s| s.clock);
                let stamped = input
                    .at
                    .unwrap_or_else(|| clock.map_or(now, |c| c.max(now)));
                let due = store.due_for(&input.customer, stamped)?.is_some();
                Ok((false, stored, stamped, due))
            })?;
            if seen {
                statuses[k] = Some(Status::Duplicate);
                continue;
            }
            if due && self.fire_customer(access, worker, &input.customer, stamped)? > 0 {
                stored = access.read(|store| store.customer(&input.customer))?;
            }
            let fresh = stored.is_none();
            let (record, clock) = match stored {
                Some(s) => (s.record, s.clock),
                None => (
                    Record {
                        id: input.customer.clone(),
                        ..Record::default()
                    },
                    None,
                ),
            };
            if let Some(clock) = clock
                && stamped < clock
            {
                statuses[k] = Some(late(input, stamped, clock));
                continue;
            }
            if wave.is_empty() {
                deciding.clear();
            }
            let [customer, _] = keys;
            deciding.insert(customer);
            wave.push((k, record, stamped, fresh));
        }
        self.decide_wave(access, worker, inputs, &mut wave, &mut statuses)?;
        Ok(statuses
            .into_iter()
            .map(|s| s.expect("every input has a status"))
            .collect())
    }

    /// Decides the steps of `wave` together and commits them; empties it.
    fn decide_wave(
        &self,
        access: &dyn Access,
        worker: &mut Worker,
        inputs: &[Input],
        wave: &mut Vec<(usize, Record, Timestamp, bool)>,
        statuses: &mut [Option<Status>],
    ) -> anyhow::Result<()> {
        if wave.is_empty() {
            return Ok(());
        }
        let taken = std::mem::take(wave);
        let order: Vec<usize> = taken.iter().map(|(k, ..)| *k).collect();
        let each = taken
            .into_iter()
            .map(|(k, record, at, fresh)| (record, Trigger::Input(&inputs[k]), at, fresh))
            .collect();
        let steps = self.steps(worker, each);
        for (k, status) in order.into_iter().zip(self.commit(access, steps)?) {
            statuses[k] = Some(status);
        }
        Ok(())
    }

    /// Sets the timers of the scheduled campaigns (`delivery.daily`, `delivery.once`) at `now`:
    /// for a campaign whose schedule (or start, end, company zone) is new or changed since the
    /// store last set it, every customer's timer moves to the first occurrence after `now`;
    /// otherwise only customers without one get it (those imported since). Overdue timers are
    /// left to fire. Answers how many timers were set or cleared.
    pub fn schedule(&self, store: &mut dyn Store, now: Timestamp) -> anyhow::Result<u64> {
        let plan = (self.source)();
        let default_tz = &plan.inputs.default_tz;
        let mut set = 0u64;
        for c in &plan.campaigns.campaigns {
            let Some(s) = scheduled(c) else { continue };
            let key = format!("schedule:{}", c.def.code);
            let signature = format!(
                "{s:?} start={} end={:?} tz={default_tz}",
                c.def.start, c.def.end
            );
            let changed = store.meta(&key)?.as_deref() != Some(signature.as_str());
            let only_missing = (!changed).then_some(c.def.code.as_str());
            let mut after = String::new();
            let mut done = false;
            while !done {
                store.batch(&mut |store| {
                    let page = store.customers_page(&after, SCHEDULE_PAGE, only_missing)?;
                    let timers: Vec<(String, Option<Timestamp>)> = page
                        .into_iter()
                        .map(|(id, tz)| {
                            let due = next_occurrence(c, &s, now, &zone(tz.as_deref(), default_tz));
                            (id, due)
                        })
                        .collect();
                    store.set_timers(&c.def.code, &timers)?;
                    set += timers.len() as u64;
                    match timers.last() {
                        Some((id, _)) if timers.len() == SCHEDULE_PAGE => after = id.clone(),
                        _ => {
                            // The last page: the schedule is set for every customer.
                            store.set_meta(&key, &signature)?;
                            done = true;
                        }
                    }
                    Ok(())
                })?;
            }
        }
        Ok(set)
    }

    /// Gives the customers `ids` (just imported or upserted) the scheduled campaigns' timers
    /// they do not have yet, at the first occurrence after `now`.
    pub fn schedule_customers(
        &self,
        store: &mut dyn Store,
        ids: &[String],
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let plan = (self.source)();
        let campaigns: Vec<_> = plan
            .campaigns
            .campaigns
            .iter()
            .filter_map(|c| scheduled(c).map(|s| (c, s)))
            .collect();
        if campaigns.is_empty() {
            return Ok(());
        }
        for id in ids {
            let Some(stored) = store.customer(id)? else {
                continue;
            };
            let zone = zone(stored.record.tz.as_deref(), &plan.inputs.default_tz);
            let timers = store.timers_of(id)?;
            for (c, s) in &campaigns {
                if !timers.iter().any(|t| t.campaign == c.def.code) {
                    let due = next_occurrence(c, s, now, &zone);
                    store.set_timers(&c.def.code, &[(id.clone(), due)])?;
                }
            }
        }
        Ok(())
    }

    /// Fires the timers due at or before `until`, in order of due instant, each at its due
    /// instant; answers how many fired. A customer another thread is deciding is waited for
    /// if `wait`, else left for the next call (that thread fires its timers due by its
    /// input's instant).
    pub fn fire_due(
        &self,
        access: &dyn Access,
        worker: &mut Worker,
        until: Timestamp,
        limit: usize,
        wait: bool,
    ) -> anyhow::Result<u64> {
        let mut fired = 0u64;
        while (fired as usize) < limit {
            let page =
                access.read(|store| store.due(until, TIMER_PAGE.min(limit - fired as usize)))?;
            if page.is_empty() {
                break;
            }
            // One step for each customer of the page, its timers due at its earliest instant,
            // the steps decided together; a customer's later timers (set by this step, or due
            // later) come in the next page, so each customer's fire in order.
            let mut claimed = Claimed::new(access);
            let mut wave: Vec<(Vec<Timer>, Record, Timestamp)> = Vec::new();
            let mut moved = false;
            let mut busy = None;
            for t in &page {
                let key = shared::customer_key(&t.customer);
                if claimed.holds(&key) {
                    continue;
                }
                if !claimed.try_add(std::slice::from_ref(&key)) {
                    busy.get_or_insert(key);
                    continue;
                }
                let Some((due, timers, stored)) =
                    access.read(|s| first_due(s, &t.customer, until))?
                else {
                    continue;
                };
                match stored {
                    Some(stored) => {
                        let at = stored.clock.map_or(due, |c| c.max(due));
                        wave.push((timers, stored.record, at));
                    }
                    None => {
                        fired += self.drop_timers(access, &t.customer, due, &timers)?;
                        moved = true;
                    }
                }
            }
            if wave.is_empty() && !moved {
                // Every customer of the page with a timer still due is another thread's now.
                match busy {
                    Some(key) if wait => {
                        claimed.release();
                        claimed.add_waiting(std::slice::from_ref(&key));
                        claimed.release();
                        continue;
                    }
                    _ => break,
                }
            }
            let count: u64 = wave.iter().map(|(timers, ..)| timers.len() as u64).sum();
            let (timers, records): (Vec<Vec<Timer>>, Vec<(Record, Timestamp)>) = wave
                .into_iter()
                .map(|(timers, record, at)| (timers, (record, at)))
                .unzip();
            let each = timers
                .iter()
                .zip(records)
                .map(|(timers, (record, at))| (record, Trigger::Timers(timers), at, false))
                .collect();
            let steps = self.steps(worker, each);
            self.commit(access, steps)?;
            fired += count;
        }
        Ok(fired)
    }

    /// Clears the timers of a customer the store has no record of: they have nothing to do.
    fn drop_timers(
        &self,
        access: &dyn Access,
        customer: &str,
        at: Timestamp,
        timers: &[Timer],
    ) -> anyhow::Result<u64> {
        let change = Change {
            customer: customer.to_owned(),
            at,
            timers: timers.iter().map(|t| (t.campaign.clone(), None)).collect(),
            ..Change::default()
        };
        access.with(&mut |store| store.commit(&change))?;
        Ok(timers.len() as u64)
    }

    /// Fires `customer`'s timers due at or before `until`, earliest first; the caller has
    /// claimed the customer.
    fn fire_customer(
        &self,
        access: &dyn Access,
        worker: &mut Worker,
        customer: &str,
        until: Timestamp,
    ) -> anyhow::Result<u64> {
        let mut fired = 0;
        loop {
            let Some((due, timers, stored)) = access.read(|s| first_due(s, customer, until))?
            else {
                return Ok(fired);
            };
            let Some(stored) = stored else {
                // No record to decide on: the timers have nothing to do.
                self.drop_timers(access, customer, due, &timers)?;
                continue;
            };
            let at = stored.clock.map_or(due, |c| c.max(due));
            let step = self.step(worker, stored.record, Trigger::Timers(&timers), at, false);
            self.commit(access, vec![step])?;
            fired += timers.len() as u64;
        }
    }

    /// One step: decides the campaigns the trigger concerns for the customer at `at`; a
    /// `fresh` customer (created by this input) gets the scheduled campaigns' timers.
    fn step(
        &self,
        worker: &mut Worker,
        record: Record,
        trigger: Trigger<'_>,
        at: Timestamp,
        fresh: bool,
    ) -> Step {
        self.steps(worker, vec![(record, trigger, at, fresh)])
            .pop()
            .expect("one step")
    }

    /// The steps of distinct customers, decided together (one plugin call per campaign step
    /// for all of them, each customer at its own instant): the same steps as one at a time.
    fn steps(
        &self,
        worker: &mut Worker,
        each: Vec<(Record, Trigger<'_>, Timestamp, bool)>,
    ) -> Vec<Step> {
        let mut plan = (self.source)();
        let mut prepared = Vec::with_capacity(each.len());
        let mut runs_in = Vec::with_capacity(each.len());
        for (mut record, trigger, at, fresh) in each {
            let tz_before = record.tz.clone();
            let (event, input_name) = match &trigger {
                Trigger::Input(input) => (Some(input.apply(&mut record, at)), input.id.clone()),
                Trigger::Timers(ts) => (None, format!("timer@{}", ts[0].due)),
            };
            let selected: Vec<String> = plan
                .campaigns
                .campaigns
                .iter()
                .filter(|c| concerns(&plan, c, &record, &trigger, at))
                .map(|c| c.def.code.clone())
                .collect();
            let mut change = Change {
                customer: record.id.clone(),
                at,
                input: input_name.clone(),
                event_id: match &trigger {
                    Trigger::Input(i) => Some(i.id.clone()),
                    Trigger::Timers(_) => None,
                },
                ..Change::default()
            };
            if let Trigger::Timers(ts) = &trigger {
                // A fired timer goes, unless its campaign's decision below sets the next one: a
                // timer is never left due.
                change.timers = ts.iter().map(|t| (t.campaign.clone(), None)).collect();
                for t in ts.iter().filter(|t| !selected.contains(&t.campaign)) {
                    change.decisions.push((
                        t.campaign.clone(),
                        serde_json::json!({"campaign": t.campaign, "outcome": "error",
                            "error": "the campaign is no longer served, or no longer runs on \
                                      timers (a journey or a scheduled message): its timer is dropped"})
                        .to_string(),
                    ));
                }
            }
            if let Trigger::Input(_) = &trigger
                && (fresh || record.tz != tz_before)
            {
                // A new customer, or one whose zone changed: the scheduled campaigns' next
                // occurrences in their zone.
                let zone = zone(record.tz.as_deref(), &plan.inputs.default_tz);
                for c in &plan.campaigns.campaigns {
                    if let Some(s) = scheduled(c) {
                        change.timers.push((
                            c.def.code.clone(),
                            next_occurrence(c, &s, at, &zone).map(|t| (t, 0)),
                        ));
                    }
                }
            }
            // The log keeps the record as the step read it (the input applied).
            let input_of = self.recorder.as_ref().map(|r| r.input_of(&record));
            runs_in.push(Each {
                customer: record,
                now: at,
                event,
                campaigns: selected,
            });
            prepared.push((trigger, at, input_name, change, input_of));
        }
        if let Some(first) = prepared.first() {
            // What a call without customers of its own falls back to.
            plan.inputs.now = first.1;
        }
        let runs = plan.run_each(worker, runs_in);
        prepared
            .into_iter()
            .zip(runs)
            .map(|((trigger, at, input_name, change, input_of), run)| {
                self.finish(&plan, trigger, at, input_name, change, input_of, run)
            })
            .collect()
    }

    /// The step's change, status and log lines from its customer's run.
    #[allow(clippy::too_many_arguments)] // what `steps` prepared for this customer
    fn finish(
        &self,
        plan: &Plan,
        trigger: Trigger<'_>,
        at: Timestamp,
        input_name: String,
        mut change: Change,
        input_of: Option<crate::pipeline::recorder::InputOf>,
        mut run: CustomerRun,
    ) -> Step {
        let log = match (&self.recorder, input_of) {
            (Some(r), Some(input)) => r.campaign_lines(plan, &mut run, input),
            _ => (Vec::new(), 0),
        };
        let mut keys = Vec::new();
        let mut failed = Vec::new();
        for d in &run.decisions {
            let Some(campaign) = plan.campaigns.get(&d.campaign) else {
                continue;
            };
            if d.outcome == Kind::Error {
                failed.push(d.campaign.clone());
            }
            let fired = match &trigger {
                Trigger::Timers(ts) => ts.iter().find(|t| t.campaign == d.campaign),
                Trigger::Input(_) => None,
            };
            // A timer that fails is retried 1, 2, 4, 8 minutes later; then a journey's is
            // dropped and a scheduled campaign's moves to its next occurrence.
            let retry = fired.filter(|_| d.outcome == Kind::Error).and_then(|t| {
                let attempts = t.attempts + 1;
                (attempts < TIMER_ATTEMPTS).then(|| {
                    let backoff = regua_sdk::Duration::minutes(1i64 << (attempts - 1));
                    (at + backoff, attempts)
                })
            });
            if let Some(s) = scheduled(campaign) {
                if let Some(t) = fired {
                    let next = retry.or_else(|| {
                        let zone = zone(run.customer.tz.as_deref(), &plan.inputs.default_tz);
                        next_occurrence(campaign, &s, t.due, &zone).map(|n| (n, 0))
                    });
                    change.timers.push((d.campaign.clone(), next));
                }
            } else if campaign.def.journey.is_some() {
                let timer = match (fired, d.outcome) {
                    (Some(_), Kind::Error) => Some(retry),
                    // A failure on another input leaves the campaign's timer as it was.
                    (None, Kind::Error) => None,
                    _ => Some(d.wake.filter(|w| *w > at).map(|w| (w, 0))),
                };
                if let Some(timer) = timer {
                    change.timers.push((d.campaign.clone(), timer));
                }
            }
            for m in &d.messages {
                let key = match (&m.journey, m.instance, &m.step) {
                    (Some(j), Some(n), Some(s)) => {
                        format!("{}/{}/{j}#{n}/{s}", run.customer.id, d.campaign)
                    }
                    _ => format!("{}/{}/{input_name}", run.customer.id, d.campaign),
                };
                keys.push(key.clone());
                change.outbox.push(OutboxEntry {
                    seq: 0,
                    key,
                    customer: run.customer.id.clone(),
                    campaign: d.campaign.clone(),
                    variant: d.variant.clone(),
                    channel: m.channel.as_str().to_owned(),
                    template: m.template.clone(),
                    category: m.category.as_str().to_owned(),
                    tags: m.tags.clone(),
                    send_at: m.send_at,
                    journey: m.journey.clone(),
                    instance: m.instance,
                    step: m.step.clone(),
                    decided_at: at,
                    input: input_name.clone(),
                    state: "pending".into(),
                    detail: None,
                    attempts: 0,
                });
            }
            change.decisions.push((
                d.campaign.clone(),
                serde_json::to_string(d).expect("a decision is JSON"),
            ));
        }
        change.record = Some(std::mem::take(&mut run.customer));
        let status = Status::Applied {
            at,
            messages: keys,
            failed,
        };
        Step {
            change,
            status,
            log,
        }
    }
}

/// Inputs whose steps are decided together at most (a wave): enough to spread each plugin
/// call's cost over many customers, few enough that a wave's records stay small.
pub const WAVE: usize = 256;

/// A customer's earliest timers due at or before `until`, if any: their instant, the timers
/// due then, and the customer's stored state.
type Due = (Timestamp, Vec<Timer>, Option<store::Stored>);

/// The customer's [`Due`] timers, read from `store`.
fn first_due(
    store: &mut dyn Store,
    customer: &str,
    until: Timestamp,
) -> anyhow::Result<Option<Due>> {
    let Some(first) = store.due_for(customer, until)? else {
        return Ok(None);
    };
    let timers: Vec<Timer> = store
        .timers_of(customer)?
        .into_iter()
        .filter(|t| t.due == first.due)
        .collect();
    Ok(Some((first.due, timers, store.customer(customer)?)))
}

/// The refusal of an input older than its customer's last applied input.
fn late(input: &Input, at: Timestamp, clock: Timestamp) -> Status {
    Status::Refused {
        error: format!(
            "late: at {at}, before {clock}, the instant of the last input applied to customer \
             `{}`; inputs of a customer are applied in time order, so a late one is refused \
             rather than reordered",
            input.customer
        ),
    }
}

/// Whether a trigger concerns a campaign (docs/RUNTIME.md): a timer, its own campaign; an
/// input, a journey campaign the customer is in an active instance of, a journey campaign
/// the input may enter (its `delivery.events`, or any input without them), and a message
/// campaign whose `delivery.events` name it. Inactive campaigns are not decided on inputs.
fn concerns(
    plan: &Plan,
    c: &Campaign,
    record: &Record,
    trigger: &Trigger<'_>,
    at: Timestamp,
) -> bool {
    let input = match trigger {
        Trigger::Timers(ts) => {
            return (c.def.journey.is_some() || scheduled(c).is_some())
                && ts.iter().any(|t| t.campaign == c.def.code);
        }
        Trigger::Input(input) => input,
    };
    if !c.active_at(at) {
        return false;
    }
    let named = || {
        c.def
            .delivery
            .as_ref()
            .map(|d| d.events.iter().any(|e| e == input.name()))
    };
    if c.def.journey.is_some() {
        let active = plan.journey_name(c).is_some_and(|name| {
            record
                .journeys
                .iter()
                .any(|j| j.journey == name && j.is_active())
        });
        active || named().unwrap_or(true)
    } else {
        named().unwrap_or(false)
    }
}

/// A campaign's schedule, if it runs on one (`delivery.daily` or `delivery.once`; a campaign
/// with a schedule that does not read is not loaded).
fn scheduled(c: &Campaign) -> Option<Schedule> {
    c.def
        .delivery
        .as_ref()
        .and_then(|d| d.schedule().ok().flatten())
}

/// The first occurrence of a campaign's schedule after `after` while the campaign is active.
fn next_occurrence(c: &Campaign, s: &Schedule, after: Timestamp, zone: &Zone) -> Option<Timestamp> {
    let from = after.max(c.def.start - regua_sdk::Duration::millis(1));
    s.next_after(from, zone)
        .filter(|t| c.def.end.is_none_or(|end| *t < end))
}

/// A customer's zone: theirs, or the company's (DOMAIN: an unknown or missing `tz` falls back
/// to the default).
fn zone(tz: Option<&str>, default_tz: &str) -> Zone {
    regua_sdk::record::zone_of(tz, default_tz)
        .map(|(z, _)| z)
        .unwrap_or_else(|_| Zone::utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::campaign::{Campaigns, RunInputs};
    use std::time::Duration;

    fn input(id: &str, customer: &str, at: &str) -> Input {
        Input::parse(&format!(
            r#"{{"id":"{id}","customer":"{customer}","at":"{at}","name":"visit"}}"#
        ))
        .unwrap()
    }

    /// A request whose thread must wait for a customer another thread decides keeps, while it
    /// waits, the customers it has inputs ahead for: let go, the timer loop could fire one of
    /// their timers due after such an input, and that input would then be refused as late.
    #[test]
    fn a_request_waiting_for_a_claim_keeps_its_customers_with_inputs_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::new(Box::new(Sqlite::open(dir.path()).unwrap())).unwrap();
        let core = Core::new(Arc::new(|| {
            Plan::new(
                Arc::new(Campaigns::default()),
                Arc::new(|_: &str| None),
                RunInputs {
                    now: Timestamp::from_millis(0),
                    default_tz: "UTC".into(),
                    event: None,
                },
            )
        }));
        // The timer loop, say, deciding `y`.
        let y = [shared::customer_key("y")];
        assert!(shared.try_claim(&y));
        let inputs = vec![
            input("x1", "x", "2025-03-10T12:00:00Z"),
            input("y1", "y", "2025-03-10T12:01:00Z"),
            input("x2", "x", "2025-03-10T12:02:00Z"),
        ];
        std::thread::scope(|s| {
            let request = s.spawn(|| {
                let mut worker = Worker::new();
                let now = Timestamp::from_millis(1_741_608_000_000);
                core.apply_many(&shared, &mut worker, &inputs, now)
            });
            // `x1` is decided and committed, then the request waits for `y` with `x` kept.
            let waited = std::time::Instant::now();
            loop {
                let applied = shared.lock(|store| store.event_seen("x1")).unwrap();
                if applied {
                    break;
                }
                assert!(
                    waited.elapsed() < Duration::from_secs(60),
                    "x1 never applied"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            for _ in 0..20 {
                assert!(
                    !shared.try_claim(&[shared::customer_key("x")]),
                    "`x`, with an input ahead, was let go while the request waited"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            shared.release(&y);
            let statuses = request.join().unwrap().unwrap();
            assert!(
                statuses.iter().all(|s| matches!(s, Status::Applied { .. })),
                "{statuses:?}"
            );
        });
        // Every claim is let go at the end.
        assert!(shared.try_claim(&[shared::customer_key("x"), shared::customer_key("y")]));
    }
}
