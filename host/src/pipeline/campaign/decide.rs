//! The campaign pipeline for a group of customers at one `now` (DOMAIN §4a): for every campaign
//! in run order, audience → holdout → variant → the journey's next message or the campaign's
//! message → the rest policy over the contact history plus what earlier campaigns planned in
//! this run → a planned message or exactly one reason.
//!
//! Customers are independent, so each stage runs as one plugin call over every customer still
//! in play (grouped by proposed message for the rest policy), campaign after campaign.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use regua_sdk::ab::{BUCKETS, bucket};
use regua_sdk::{
    Action, Category, Channel, Contact, Event, Fields, JourneyState, Message, Record, Timestamp,
    Verdict,
};
use serde::Serialize;

use super::definition::{Campaign, Campaigns, PluginRef, buckets_of};
use crate::runtime::plugin::Plugin;
use crate::runtime::worker::{Evaluation, Inputs, Outcome, Worker};

/// Journey feedback rounds per customer and campaign: a journey whose messages keep being denied
/// moves one step a round, so this bounds a run over a long journey.
const MAX_ROUNDS: usize = 16;

/// Why a campaign sends a customer nothing, or that it plans something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Outside the campaign's active window.
    Inactive,
    /// Not in the audience.
    NotInAudience,
    /// In the holdout (campaign or global) or a control variant.
    HeldOut,
    /// The journey waits, has ended, or was not entered.
    NothingToDo,
    /// At least one message planned (now, or at a rest policy's `until`).
    Planned,
    /// Every message denied by the rest policy.
    Denied,
    /// A plugin failed on the customer, or is missing.
    Error,
}

impl Kind {
    /// The name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Inactive => "inactive",
            Kind::NotInAudience => "not_in_audience",
            Kind::HeldOut => "held_out",
            Kind::NothingToDo => "nothing_to_do",
            Kind::Planned => "planned",
            Kind::Denied => "denied",
            Kind::Error => "error",
        }
    }
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Planned {
    /// The channel.
    #[schema(value_type = String)]
    pub channel: Channel,
    /// The template.
    pub template: String,
    /// Marketing or transactional.
    #[schema(value_type = String)]
    pub category: Category,
    /// Tags.
    pub tags: Vec<String>,
    /// When to send it: `now`, or the rest policy's `until` for a deferred message.
    #[schema(value_type = String)]
    pub send_at: Timestamp,
    /// The rule that deferred it, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred_by: Option<String>,
    /// The journey sending it, if a journey does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journey: Option<String>,
    /// The journey's step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The journey's instance: with the step, what makes a journey message unique (the
    /// runtime's outbox key). Not in answers, which name the step only.
    #[serde(skip)]
    #[schema(ignore)]
    pub instance: Option<u32>,
}

/// A message the rest policy denied.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Denial {
    /// The rule that denied it.
    pub rule: String,
    /// Its reason code (`CAP_REACHED`, `NO_CONSENT`, …).
    pub reason: String,
    /// The channel it would have gone on.
    #[schema(value_type = String)]
    pub channel: Channel,
    /// Its template.
    pub template: String,
    /// The journey's step, if a journey sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// What one campaign decided for one customer.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Decision {
    /// The decision's id in the decision log, when the run keeps one (the log line's `decision`).
    /// Its own key, `decision_id`: a rest policy's answer says `decision` for its verdict.
    #[serde(rename = "decision_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The campaign's code.
    pub campaign: String,
    /// The outcome.
    pub outcome: Kind,
    /// The customer's variant, when the campaign has variants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The messages planned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Planned>,
    /// The messages denied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<Denial>,
    /// The error, for `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why, for people reading it.
    pub reasons: Vec<String>,
    /// The version of every plugin that decided it, by plugin name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, String>,
    /// Outside the audience, but in an active instance of the campaign's journey: the journey
    /// goes on, and enters no new instance (DOMAIN §4a: the audience decides entry).
    #[serde(skip)]
    #[schema(ignore)]
    continuing_only: bool,
    /// The earliest instant the journey's last answer waits until (a wait's end, an event
    /// wait's timeout, or when a customer not entered yet may enter): when the journey runtime
    /// decides this campaign again for the customer.
    #[serde(skip)]
    #[schema(ignore)]
    pub wake: Option<Timestamp>,
}

impl Decision {
    fn new(code: &str) -> Decision {
        Decision {
            id: None,
            campaign: code.to_owned(),
            outcome: Kind::Planned,
            variant: None,
            messages: Vec::new(),
            denied: Vec::new(),
            error: None,
            reasons: Vec::new(),
            versions: BTreeMap::new(),
            continuing_only: false,
            wake: None,
        }
    }

    fn ended(&mut self, outcome: Kind, reason: impl Into<String>) {
        self.outcome = outcome;
        self.reasons.push(reason.into());
    }

    fn failed(&mut self, error: String) {
        self.outcome = Kind::Error;
        self.error = Some(error);
    }
}

/// A campaign run's inputs besides the customers.
#[derive(Clone, Debug)]
pub struct RunInputs {
    /// The instant.
    pub now: Timestamp,
    /// The company's default time zone.
    pub default_tz: String,
    /// The triggering event, given to the journeys.
    pub event: Option<Event>,
}

/// Finds the plugin a campaign names, as loaded now.
pub type Lookup = Arc<dyn Fn(&str) -> Option<Arc<Plugin>> + Send + Sync>;

/// The campaigns with their plugins resolved, ready to run over many chunks.
#[derive(Clone)]
pub struct Plan {
    /// The campaigns.
    pub campaigns: Arc<Campaigns>,
    lookup: Lookup,
    /// Inputs.
    pub inputs: RunInputs,
    /// Where the decisions are logged, if they are.
    pub log: Option<Arc<dyn crate::pipeline::recorder::Recorder>>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("campaigns", &self.campaigns.campaigns.len())
            .finish()
    }
}

/// One customer's run: its decisions, in campaign order, and its record as the run left it
/// (journeys moved, planned messages among the contacts).
#[derive(Clone, Debug)]
pub struct CustomerRun {
    /// The record after the run.
    pub customer: Record,
    /// When the decisions were made (the run's `now`, or the customer's own instant in a
    /// run of many customers' inputs: [`Plan::run_each`]).
    pub now: Timestamp,
    /// The event that triggered this customer's run, given to the journeys.
    pub event: Option<Event>,
    /// One decision per campaign.
    pub decisions: Vec<Decision>,
}

/// One customer of [`Plan::run_each`]: its record, its instant, its triggering event and the
/// codes of the campaigns to decide for it.
#[derive(Clone, Debug)]
pub struct Each {
    /// The record, the input applied.
    pub customer: Record,
    /// The instant it is decided at.
    pub now: Timestamp,
    /// The event that triggered it.
    pub event: Option<Event>,
    /// The codes of the campaigns to decide, in any order (they run in the plan's order).
    pub campaigns: Vec<String>,
}

impl CustomerRun {
    fn placeholder() -> CustomerRun {
        CustomerRun {
            customer: Record::default(),
            now: Timestamp::from_millis(0),
            event: None,
            decisions: Vec::new(),
        }
    }

    /// Every planned message, in campaign order, with its campaign's decision.
    pub fn planned(&self) -> impl Iterator<Item = (&Decision, &Planned)> {
        self.decisions
            .iter()
            .flat_map(|d| d.messages.iter().map(move |m| (d, m)))
    }
}

/// The triggering event each customer of a plugin call is given.
#[derive(Clone, Copy)]
enum Given<'a> {
    /// None (segments, rest policies).
    None,
    /// Its run's (a journey deciding the input).
    Own,
    /// One each, in the order of the call's customers (a journey told of a denial).
    These(&'a [Option<Event>]),
}

/// A proposed message, waiting for the rest policy.
#[derive(Clone, Debug)]
struct Proposal {
    message: Message,
    journey: Option<(String, u32, String)>,
}

impl Plan {
    /// A plan over `campaigns`, finding plugins with `lookup` at run time.
    pub fn new(campaigns: Arc<Campaigns>, lookup: Lookup, inputs: RunInputs) -> Plan {
        Plan {
            campaigns,
            lookup,
            inputs,
            log: None,
        }
    }

    /// This plan, logging every decision it makes to `log`.
    pub fn logging(mut self, log: Option<Arc<dyn crate::pipeline::recorder::Recorder>>) -> Plan {
        self.log = log;
        self
    }

    /// The parts of a record the plan's plugins read between them.
    pub fn reads(&self) -> Fields {
        let company = &self.campaigns.company;
        let mut fields = Fields::default().union(Fields::of(&[regua_sdk::Field::Contacts]));
        // The fields the decision log keeps are read too.
        if let Some(log) = &self.log {
            fields = fields.union(log.reads());
        }
        fields = fields.union(Fields::of(&[regua_sdk::Field::Journeys]));
        for c in &self.campaigns.campaigns {
            for (_, _, name, _) in c.plugin_refs(company) {
                match (self.lookup)(name) {
                    Some(p) => fields = fields.union(Fields::of(&p.meta.reads)),
                    None => return Fields::all(),
                }
            }
        }
        fields
    }

    /// Runs every campaign over `customers`.
    pub fn run(&self, worker: &mut Worker, customers: Vec<Record>) -> Vec<CustomerRun> {
        self.run_some(worker, customers, |_| true)
    }

    /// Runs the campaigns `keep` selects over `customers`, in run order: each run's decisions
    /// are those campaigns' only.
    pub fn run_some(
        &self,
        worker: &mut Worker,
        customers: Vec<Record>,
        keep: impl Fn(&Campaign) -> bool,
    ) -> Vec<CustomerRun> {
        let mut runs: Vec<CustomerRun> = customers
            .into_iter()
            .map(|customer| CustomerRun {
                customer,
                now: self.inputs.now,
                event: self.inputs.event.clone(),
                decisions: Vec::new(),
            })
            .collect();
        for campaign in self.campaigns.campaigns.iter().filter(|c| keep(c)) {
            let decisions = self.run_campaign(worker, campaign, &mut runs);
            for (run, d) in runs.iter_mut().zip(decisions) {
                run.decisions.push(d);
            }
        }
        runs
    }

    /// Runs, for each customer, the campaigns its own selection names (by code), at its own
    /// instant with its own triggering event: what deciding each one alone with
    /// [`Plan::run_some`] gives, with one plugin call per campaign step for all of them.
    pub fn run_each(&self, worker: &mut Worker, each: Vec<Each>) -> Vec<CustomerRun> {
        let mut runs: Vec<CustomerRun> = Vec::with_capacity(each.len());
        let mut selections = Vec::with_capacity(each.len());
        for e in each {
            runs.push(CustomerRun {
                customer: e.customer,
                now: e.now,
                event: e.event,
                decisions: Vec::new(),
            });
            selections.push(e.campaigns);
        }
        for campaign in &self.campaigns.campaigns {
            let code = &campaign.def.code;
            let idx: Vec<usize> = (0..runs.len())
                .filter(|&i| selections[i].iter().any(|c| c == code))
                .collect();
            if idx.is_empty() {
                continue;
            }
            // The selected customers' runs, moved out and back around the campaign's run.
            let mut some: Vec<CustomerRun> = idx
                .iter()
                .map(|&i| std::mem::replace(&mut runs[i], CustomerRun::placeholder()))
                .collect();
            let decisions = self.run_campaign(worker, campaign, &mut some);
            for ((&i, mut run), d) in idx.iter().zip(some).zip(decisions) {
                run.decisions.push(d);
                runs[i] = run;
            }
        }
        runs
    }

    fn plugin(&self, r: &str, d: &mut Decision) -> Option<Arc<Plugin>> {
        match (self.lookup)(r) {
            Some(p) => {
                d.versions.insert(p.name().to_owned(), p.version.clone());
                Some(p)
            }
            None => {
                d.failed(format!("plugin `{r}` is not loaded"));
                None
            }
        }
    }

    /// One plugin call over the customers `idx` of `runs`, each at its own `now` and given
    /// `events` (none, its run's, or one each); one answer each, in order.
    #[allow(clippy::too_many_arguments)] // the call's inputs, spelled out at each of 3 callers
    fn call(
        &self,
        worker: &mut Worker,
        plugin: &Arc<Plugin>,
        params: &serde_json::Value,
        message: Option<Message>,
        events: Given<'_>,
        runs: &[CustomerRun],
        idx: &[usize],
    ) -> Vec<Result<Outcome, String>> {
        let each: Vec<(Timestamp, Option<Event>)> = idx
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let event = match events {
                    Given::None => None,
                    Given::Own => runs[i].event.clone(),
                    Given::These(these) => these[k].clone(),
                };
                (runs[i].now, event)
            })
            .collect();
        let same = each.windows(2).all(|w| w[0] == w[1]);
        let (now, event) = each.first().cloned().unwrap_or((self.inputs.now, None));
        let inputs = Inputs {
            now,
            default_tz: self.inputs.default_tz.clone(),
            params: params.to_string(),
            message,
            event,
        };
        let eval = match Evaluation::new(plugin.clone(), &inputs) {
            Ok(e) if same => e,
            Ok(e) => e.for_each_customer(each),
            Err(e) => return vec![Err(e.to_string()); idx.len()],
        };
        let mut batch = worker.batch(plugin.fields());
        for &i in idx {
            batch.push(&runs[i].customer);
        }
        let answers = worker
            .evaluate(&eval, &batch)
            .unwrap_or_else(|e| vec![Err(e.to_string()); idx.len()]);
        worker.recycle(batch);
        answers
    }

    fn run_campaign(
        &self,
        worker: &mut Worker,
        campaign: &Campaign,
        runs: &mut [CustomerRun],
    ) -> Vec<Decision> {
        let def = &campaign.def;
        let mut ds: Vec<Decision> = runs.iter().map(|_| Decision::new(&def.code)).collect();
        let inactive = |now: Timestamp| {
            let side = match def.end {
                Some(end) if now >= end => format!("it ended at {end}"),
                _ => format!("it starts at {}", def.start),
            };
            let period = match def.end {
                Some(end) => format!("[{}, {end})", def.start),
                None => format!("from {}", def.start),
            };
            format!("the campaign is not active at {now}: {side} (it runs {period})")
        };
        let mut live: Vec<usize> = Vec::with_capacity(runs.len());
        for (i, run) in runs.iter().enumerate() {
            if campaign.active_at(run.now) {
                live.push(i);
            } else {
                ds[i].ended(Kind::Inactive, inactive(run.now));
            }
        }
        if live.is_empty() {
            return ds;
        }
        // A journey campaign's audience decides entry: a customer in an active instance of its
        // journey goes on whether or not they are still in it (DOMAIN §4a).
        let continuing: Vec<bool> = match self.journey_name(campaign) {
            Some(name) => runs
                .iter()
                .map(|r| {
                    r.customer
                        .journeys
                        .iter()
                        .any(|j| j.journey == name && j.is_active())
                })
                .collect(),
            None => vec![false; runs.len()],
        };
        self.audience(worker, campaign, runs, &mut ds, &mut live, &continuing);
        self.holdout(campaign, runs, &mut ds, &mut live);
        if live.is_empty() {
            return ds;
        }
        let mut queues: Vec<VecDeque<Proposal>> = runs.iter().map(|_| VecDeque::new()).collect();
        if let Some(m) = &def.message {
            for &i in &live {
                let message = Message {
                    channel: m.channel,
                    campaign: Some(def.code.clone()),
                    category: m.category,
                    tags: m.tags.clone(),
                    template: Some(m.template.clone()),
                };
                queues[i].push_back(self.varied(campaign, &ds[i], message, None));
            }
        } else if let Some(j) = &def.journey {
            let journey = PluginRef {
                plugin: j.plugin.clone(),
                params: j.params.clone(),
            };
            self.journey(
                worker,
                campaign,
                &journey,
                Given::Own,
                runs,
                &mut ds,
                &live,
                &mut queues,
            );
            for &i in &live {
                if ds[i].outcome == Kind::Planned && queues[i].is_empty() {
                    ds[i].outcome = Kind::NothingToDo;
                }
            }
            live.retain(|&i| ds[i].outcome == Kind::Planned);
        }
        self.rest(worker, campaign, runs, &mut ds, &live, &mut queues);
        ds
    }

    /// Applies the customer's variant to a proposed message.
    fn varied(
        &self,
        campaign: &Campaign,
        d: &Decision,
        mut message: Message,
        journey: Option<(String, u32, String)>,
    ) -> Proposal {
        if let Some(v) = d
            .variant
            .as_ref()
            .and_then(|name| campaign.def.variants.iter().find(|v| &v.name == name))
        {
            if let Some(t) = &v.template {
                message.template = Some(t.clone());
            }
            if let Some(c) = v.channel {
                message.channel = c;
            }
        }
        Proposal { message, journey }
    }

    fn audience(
        &self,
        worker: &mut Worker,
        campaign: &Campaign,
        runs: &[CustomerRun],
        ds: &mut [Decision],
        live: &mut Vec<usize>,
        continuing: &[bool],
    ) {
        let audience = &campaign.def.audience;
        // Out of the audience: the end for this campaign, unless the customer is in an active
        // instance of its journey, which goes on without entering anew.
        let leave = |d: &mut Decision, i: usize, why: String| -> bool {
            if d.continuing_only {
                return true;
            }
            if continuing[i] {
                d.reasons.push(format!(
                    "{why}; goes on in the journey it entered (the audience decides entry only)"
                ));
                d.continuing_only = true;
                true
            } else {
                d.ended(Kind::NotInAudience, why);
                false
            }
        };
        // For each customer: (all of matched, any of matched, none of matched).
        let mut any_hit = vec![audience.any_of.is_empty(); runs.len()];
        let groups = [
            (&audience.all_of, 0u8),
            (&audience.any_of, 1),
            (&audience.none_of, 2),
        ];
        for (list, group) in groups {
            for seg in list {
                if live.is_empty() {
                    return;
                }
                let Some(plugin) = self.plugin(&seg.plugin, &mut ds[live[0]]) else {
                    for &i in live.iter() {
                        ds[i].failed(format!("plugin `{}` is not loaded", seg.plugin));
                    }
                    live.clear();
                    return;
                };
                let results =
                    self.call(worker, &plugin, &seg.params, None, Given::None, runs, live);
                let mut still = Vec::with_capacity(live.len());
                for (&i, r) in live.iter().zip(results) {
                    let d = &mut ds[i];
                    d.versions
                        .insert(plugin.name().to_owned(), plugin.version.clone());
                    let matched = match r {
                        Ok(Outcome::Segment(m)) => m.matched,
                        Ok(other) => {
                            d.failed(format!(
                                "segment `{}` answered {}",
                                seg.plugin,
                                serde_json::to_string(&other).unwrap_or_default()
                            ));
                            continue;
                        }
                        Err(e) => {
                            d.failed(format!("segment `{}`: {e}", seg.plugin));
                            continue;
                        }
                    };
                    let out = match group {
                        0 if !matched => Some(format!("not in segment `{}`", seg.plugin)),
                        2 if matched => Some(format!("excluded by segment `{}`", seg.plugin)),
                        _ => None,
                    };
                    if group == 1 && matched {
                        any_hit[i] = true;
                    }
                    let stays = match out {
                        Some(why) => leave(d, i, why),
                        None => true,
                    };
                    if stays {
                        still.push(i);
                    }
                }
                *live = still;
            }
        }
        live.retain(|&i| {
            if any_hit[i] {
                return true;
            }
            let names: Vec<_> = audience.any_of.iter().map(|s| s.plugin.as_str()).collect();
            let why = format!("in none of the segments {}", names.join(", "));
            leave(&mut ds[i], i, why)
        });
        for &i in live.iter() {
            if !ds[i].continuing_only {
                ds[i].reasons.push("in the audience".into());
            }
        }
    }

    fn holdout(
        &self,
        campaign: &Campaign,
        runs: &[CustomerRun],
        ds: &mut [Decision],
        live: &mut Vec<usize>,
    ) {
        let def = &campaign.def;
        let global = self
            .campaigns
            .company
            .global_holdout
            .as_ref()
            .filter(|_| campaign.category() == Category::Marketing)
            .map_or(0, |g| buckets_of(g.percent));
        let own = campaign.holdout_buckets();
        live.retain(|&i| {
            let id = &runs[i].customer.id;
            let d = &mut ds[i];
            if global > 0 && bucket("global", id) >= BUCKETS - global {
                d.ended(Kind::HeldOut, "in the global holdout");
                return false;
            }
            let b = bucket(&def.code, id);
            if own > 0 && b >= BUCKETS - own {
                d.ended(
                    Kind::HeldOut,
                    format!("in the campaign's holdout (bucket {b})"),
                );
                return false;
            }
            if let Some(v) = def
                .variants
                .iter()
                .find(|v| v.buckets[0] <= b && b < v.buckets[1])
            {
                d.variant = Some(v.name.clone());
                if v.control {
                    d.ended(
                        Kind::HeldOut,
                        format!("in the control variant `{}`", v.name),
                    );
                    return false;
                }
            }
            true
        });
    }

    /// The name of the journey a journey campaign runs (its `journey` parameter, or its plugin's
    /// default), to find the customers in an active instance of it.
    pub fn journey_name(&self, campaign: &Campaign) -> Option<String> {
        let j = campaign.def.journey.as_ref()?;
        let given = j
            .params
            .get("journey")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        given.or_else(|| {
            // Looked up without recording it: the journey call records the version it used.
            let plugin = (self.lookup)(&j.plugin)?;
            plugin
                .meta
                .params
                .get("journey")?
                .as_str()
                .map(str::to_owned)
        })
    }

    /// Calls the journey over `idx` and queues the messages it sends.
    #[allow(clippy::too_many_arguments)]
    fn journey(
        &self,
        worker: &mut Worker,
        campaign: &Campaign,
        journey: &PluginRef,
        events: Given<'_>,
        runs: &mut [CustomerRun],
        ds: &mut [Decision],
        idx: &[usize],
        queues: &mut [VecDeque<Proposal>],
    ) {
        if idx.is_empty() {
            return;
        }
        let Some(plugin) = self.plugin(&journey.plugin, &mut ds[idx[0]]) else {
            for &i in idx {
                ds[i].failed(format!("plugin `{}` is not loaded", journey.plugin));
            }
            return;
        };
        let results = self.call(worker, &plugin, &journey.params, None, events, runs, idx);
        let def = campaign.def.journey.as_ref().expect("a journey campaign");
        for (&i, r) in idx.iter().zip(results) {
            let d = &mut ds[i];
            d.versions
                .insert(plugin.name().to_owned(), plugin.version.clone());
            let out = match r {
                Ok(Outcome::Journey(j)) => j,
                Ok(_) => {
                    d.failed(format!("`{}` did not answer as a journey", journey.plugin));
                    continue;
                }
                Err(e) => {
                    d.failed(format!("journey `{}`: {e}", journey.plugin));
                    continue;
                }
            };
            let out = if d.continuing_only {
                without_entry(out, &runs[i].customer)
            } else {
                out
            };
            replace_states(&mut runs[i].customer, &out.states);
            d.reasons.extend(out.reasons.iter().cloned());
            d.wake = out
                .actions
                .iter()
                .filter_map(|a| match a {
                    Action::WaitUntil { until } => Some(*until),
                    Action::WaitForEvent { timeout_at, .. } => Some(*timeout_at),
                    _ => None,
                })
                .min();
            for a in &out.actions {
                if let Action::Send {
                    channel,
                    template,
                    campaign: _,
                    journey: j,
                    instance,
                    step,
                } = a
                {
                    let message = Message {
                        channel: *channel,
                        campaign: Some(campaign.def.code.clone()),
                        category: def.category,
                        tags: def.tags.clone(),
                        template: Some(template.clone()),
                    };
                    let at = match (j, instance, step) {
                        (Some(j), Some(n), Some(s)) => Some((j.clone(), *n, s.clone())),
                        _ => None,
                    };
                    queues[i].push_back(self.varied(campaign, d, message, at));
                }
            }
        }
    }

    /// Runs the queued proposals through the rest policy, round by round, feeding denials back
    /// to the journey so the customer moves on.
    fn rest(
        &self,
        worker: &mut Worker,
        campaign: &Campaign,
        runs: &mut [CustomerRun],
        ds: &mut [Decision],
        live: &[usize],
        queues: &mut [VecDeque<Proposal>],
    ) {
        let company = &self.campaigns.company;
        let policy = campaign.def.rest.as_ref().or(company.rest.as_ref());
        for _round in 0..MAX_ROUNDS {
            let mut groups: BTreeMap<String, (Message, Vec<(usize, Proposal)>)> = BTreeMap::new();
            for &i in live {
                if ds[i].outcome == Kind::Error {
                    queues[i].clear();
                }
                if let Some(p) = queues[i].pop_front() {
                    let key = serde_json::to_string(&p.message).unwrap_or_default();
                    groups
                        .entry(key)
                        .or_insert_with(|| (p.message.clone(), Vec::new()))
                        .1
                        .push((i, p));
                }
            }
            if groups.is_empty() {
                break;
            }
            let mut denied: Vec<(usize, (String, u32, String))> = Vec::new();
            for (_, (message, members)) in groups {
                let idx: Vec<usize> = members.iter().map(|(i, _)| *i).collect();
                let verdicts: Vec<Result<regua_sdk::Decision, String>> = match policy {
                    None => {
                        vec![Ok(regua_sdk::Decision::allow().note("no rest policy")); idx.len()]
                    }
                    Some(p) => match self.plugin(&p.plugin, &mut ds[idx[0]]) {
                        None => {
                            vec![Err(format!("plugin `{}` is not loaded", p.plugin)); idx.len()]
                        }
                        Some(plugin) => {
                            for &i in &idx {
                                ds[i]
                                    .versions
                                    .insert(plugin.name().to_owned(), plugin.version.clone());
                            }
                            self.call(
                                worker,
                                &plugin,
                                &p.params,
                                Some(message.clone()),
                                Given::None,
                                runs,
                                &idx,
                            )
                            .into_iter()
                            .map(|r| match r {
                                Ok(Outcome::Rest(d)) => Ok(d),
                                Ok(_) => Err("the rest policy did not answer as one".into()),
                                Err(e) => Err(e),
                            })
                            .collect()
                        }
                    },
                };
                for ((i, proposal), verdict) in members.into_iter().zip(verdicts) {
                    let d = &mut ds[i];
                    let v = match verdict {
                        Ok(v) => v,
                        Err(e) => {
                            d.failed(format!("rest policy: {e}"));
                            continue;
                        }
                    };
                    let m = &proposal.message;
                    let template = m.template.clone().unwrap_or_default();
                    let step = proposal.journey.as_ref().map(|(_, _, s)| s.clone());
                    let now = runs[i].now;
                    match v.decision {
                        Verdict::Allow | Verdict::Defer => {
                            let send_at = match v.decision {
                                Verdict::Defer => v.until.unwrap_or(now),
                                _ => now,
                            };
                            runs[i].customer.contacts.push(Contact {
                                channel: m.channel,
                                at: send_at,
                                campaign: m.campaign.clone(),
                                category: m.category,
                                tags: m.tags.clone(),
                                counts_toward_caps: true,
                                template: m.template.clone(),
                            });
                            if v.decision == Verdict::Defer {
                                d.reasons.push(format!(
                                    "{} {template} deferred until {send_at} by `{}` ({})",
                                    m.channel,
                                    v.rule.clone().unwrap_or_default(),
                                    v.reason.clone().unwrap_or_default()
                                ));
                            }
                            d.messages.push(Planned {
                                channel: m.channel,
                                template,
                                category: m.category,
                                tags: m.tags.clone(),
                                send_at,
                                deferred_by: (v.decision == Verdict::Defer)
                                    .then(|| v.rule.clone().unwrap_or_default()),
                                journey: proposal.journey.as_ref().map(|(j, _, _)| j.clone()),
                                instance: proposal.journey.as_ref().map(|(_, n, _)| *n),
                                step,
                            });
                        }
                        Verdict::Deny => {
                            let (rule, reason) = (
                                v.rule.clone().unwrap_or_default(),
                                v.reason.clone().unwrap_or_default(),
                            );
                            d.reasons.push(format!(
                                "{} {template} denied by `{rule}` ({reason})",
                                m.channel
                            ));
                            d.denied.push(Denial {
                                rule,
                                reason,
                                channel: m.channel,
                                template,
                                step,
                            });
                            if let Some(at) = proposal.journey {
                                denied.push((i, at));
                            }
                        }
                    }
                }
            }
            // Denied journey messages: the journey moves the customer on, maybe to a message.
            let mut by_step: BTreeMap<(String, u32, String), Vec<usize>> = BTreeMap::new();
            for (i, at) in denied {
                by_step.entry(at).or_default().push(i);
            }
            if let Some(jdef) = &campaign.def.journey {
                let journey = PluginRef {
                    plugin: jdef.plugin.clone(),
                    params: jdef.params.clone(),
                };
                for ((name, instance, step), idx) in by_step {
                    let events: Vec<Option<Event>> = idx
                        .iter()
                        .map(|&i| Some(denied_event(&name, instance, &step, runs[i].now)))
                        .collect();
                    self.journey(
                        worker,
                        campaign,
                        &journey,
                        Given::These(&events),
                        runs,
                        ds,
                        &idx,
                        queues,
                    );
                }
            }
        }
        for &i in live {
            let d = &mut ds[i];
            if d.outcome == Kind::Error {
                d.messages.clear();
            } else if !d.messages.is_empty() {
                d.outcome = Kind::Planned;
            } else if !d.denied.is_empty() {
                d.outcome = Kind::Denied;
            } else {
                d.outcome = Kind::NothingToDo;
            }
        }
    }
}

/// A journey's answer for a customer outside the campaign's audience who goes on in an instance
/// already entered: the entry of a new instance, and what follows it, is not taken.
fn without_entry(
    mut out: regua_sdk::JourneyOutcome,
    customer: &Record,
) -> regua_sdk::JourneyOutcome {
    let Some(at) = out
        .actions
        .iter()
        .position(|a| matches!(a, Action::Enter { .. }))
    else {
        return out;
    };
    out.actions.truncate(at);
    out.states.retain(|s| {
        customer
            .journeys
            .iter()
            .any(|j| j.journey == s.journey && j.instance == s.instance)
    });
    out.reasons.retain(|r| !r.starts_with("entered `"));
    out.reasons
        .push("no new instance: not in the audience (it decides entry only)".into());
    out
}

/// The event that tells a journey its step's message was denied.
pub use regua_sdk::journey::denied_event;

/// Replaces the record's entries for the journeys `states` name with `states`.
pub fn replace_states(customer: &mut Record, states: &[JourneyState]) {
    let names: BTreeSet<&str> = states.iter().map(|s| s.journey.as_str()).collect();
    customer
        .journeys
        .retain(|j| !names.contains(j.journey.as_str()));
    customer.journeys.extend(states.iter().cloned());
}
