//! Journey mechanics shared by journey rules: entry and re-entry, waits, state changes.

use serde::{Deserialize, Serialize};

use crate::record::{Field, JourneyState, JourneyStatus};
use crate::time::{CivilTime, Duration, Timestamp, Zone};
use crate::view::{Customer, EventView};

/// What [`Sequence`] reads of a customer's record, whatever its options: the journey's own
/// state (`journeys`), each event's name and time (conversions, awaited events), and each
/// transaction's time and kind (`exit_on_purchase`). A journey rule built on it declares these
/// in its `READS`, beside what its own entry rule reads:
///
/// ```
/// use regua_sdk::Field;
/// const READS: &[Field] = &[
///     // regua_sdk::journey::READS:
///     Field::Journeys, Field::EventName, Field::EventAt, Field::TransactionAt, Field::TransactionKind,
///     // and what the rule's own entry test reads:
///     Field::Profile,
/// ];
/// assert!(regua_sdk::journey::READS.iter().all(|f| READS.contains(f)));
/// ```
pub const READS: &[Field] = &[
    Field::Journeys,
    Field::EventName,
    Field::EventAt,
    Field::TransactionAt,
    Field::TransactionKind,
];

/// Who may enter a journey again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    /// Once ever.
    NoReentry,
    /// Again once the previous instance ended (at most one active instance).
    ReentryAfterExit,
    /// Any time, even while an instance is active.
    ReentryAnytime,
}

/// The entry policy of a journey.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryPolicy {
    /// Who may enter again.
    pub reentry: Reentry,
    /// Least time between two entries (JSON: seconds, or text such as `"30d"`).
    #[serde(default)]
    pub min_interval: Duration,
}

impl EntryPolicy {
    /// The instance number a new entry would get at `now`, or why the customer may not enter.
    pub fn next_instance(
        &self,
        customer: &Customer,
        journey: &str,
        now: Timestamp,
    ) -> Result<u32, String> {
        let instances: Vec<&JourneyState> = customer
            .journeys()
            .iter()
            .filter(|j| j.journey == journey)
            .collect();
        self.next_instance_among(&instances, journey, now)
    }

    /// [`EntryPolicy::next_instance`] over the journey's `instances`, in any order:
    /// `no_reentry` refuses once any instance exists, `reentry_after_exit` while one is active,
    /// `reentry_anytime` never; the minimum interval counts from the latest entry, and an entry at
    /// exactly `latest + min_interval` is allowed.
    pub fn next_instance_among(
        &self,
        instances: &[&JourneyState],
        journey: &str,
        now: Timestamp,
    ) -> Result<u32, String> {
        let Some(last) = instances.iter().max_by_key(|j| (j.entered_at, j.instance)) else {
            return Ok(1);
        };
        match self.reentry {
            Reentry::NoReentry => return Err(format!("already entered `{journey}` once")),
            Reentry::ReentryAfterExit if instances.iter().any(|j| j.is_active()) => {
                return Err(format!("already active in `{journey}`"));
            }
            _ => {}
        }
        if now < last.entered_at + self.min_interval {
            return Err(format!(
                "entered `{journey}` at {}, less than {} ago",
                last.entered_at, self.min_interval
            ));
        }
        Ok(instances.iter().map(|j| j.instance).max().unwrap_or(0) + 1)
    }
}

/// How long a step waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// A fixed span from entering the step ("1 day" is 24 h).
    For(Duration),
    /// Until the next local wall-clock time after entering the step ("next 09:00"), in the
    /// customer's zone.
    NextLocal(#[serde(with = "wall_time")] CivilTime),
    /// Until a fixed instant (a campaign date). A customer who reaches the step after that
    /// instant exits the journey instead (`wait date passed`); at exactly the instant the wait is
    /// over at once.
    Until(Timestamp),
}

mod wall_time {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use crate::time::{CivilTime, parse_wall_time};

    pub fn serialize<S: Serializer>(t: &CivilTime, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(&t.strftime("%H:%M"))
        } else {
            s.serialize_i32(i32::from(t.hour()) * 60 + i32::from(t.minute()))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CivilTime, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            parse_wall_time(&text).map_err(D::Error::custom)
        } else {
            let m = i32::deserialize(d)?;
            CivilTime::new((m / 60) as i8, (m % 60) as i8, 0, 0).map_err(D::Error::custom)
        }
    }
}

impl Wait {
    /// When a wait that began at `from` ends.
    pub fn ends(self, from: Timestamp, zone: &Zone) -> Timestamp {
        match self {
            Wait::For(d) => from + d,
            Wait::NextLocal(t) => zone.next_wall_time(from, t),
            Wait::Until(t) => t,
        }
    }
}

/// A new instance's state, entered at `now` at `step`.
pub fn entered(
    journey: &str,
    instance: u32,
    step: &str,
    now: Timestamp,
    variant: Option<String>,
) -> JourneyState {
    JourneyState {
        journey: journey.to_owned(),
        instance,
        status: JourneyStatus::Active,
        entered_at: now,
        step: step.to_owned(),
        step_entered_at: now,
        variant,
        exit_reason: None,
    }
}

impl JourneyState {
    /// This instance moved to `step` at `now`.
    pub fn moved_to(&self, step: &str, now: Timestamp) -> JourneyState {
        JourneyState {
            step: step.to_owned(),
            step_entered_at: now,
            ..self.clone()
        }
    }

    /// This instance left early at `now`, for `reason`.
    pub fn exited(&self, reason: &str, now: Timestamp) -> JourneyState {
        JourneyState {
            status: JourneyStatus::Exited,
            step_entered_at: now,
            exit_reason: Some(reason.to_owned()),
            ..self.clone()
        }
    }

    /// This instance reached its end at `now`.
    pub fn completed(&self, now: Timestamp) -> JourneyState {
        JourneyState {
            status: JourneyStatus::Completed,
            step: "done".into(),
            step_entered_at: now,
            ..self.clone()
        }
    }

    /// Whether this instance is active.
    pub fn is_active(&self) -> bool {
        self.status == JourneyStatus::Active
    }
}

/// The event a host gives a journey rule when the rest policy denied a step's message: its
/// `props` name the `journey`, the `instance` and the `step` whose message was not sent, its `at`
/// is when. [`Sequence`] answers it by keeping that instance on the step with the step's wait
/// started at the denial, so the journey keeps its spacing: the next step comes when it would
/// have come had the message been sent then.
pub const MESSAGE_DENIED: &str = "regua.message_denied";

/// The [`MESSAGE_DENIED`] event for the message of `step` of `journey`'s instance `instance`,
/// denied at `at`.
pub fn denied_event(journey: &str, instance: u32, step: &str, at: Timestamp) -> crate::Event {
    use crate::Value;
    let props = std::collections::BTreeMap::from([
        ("journey".to_owned(), Value::String(journey.to_owned())),
        ("instance".to_owned(), Value::Int(i64::from(instance))),
        ("step".to_owned(), Value::String(step.to_owned())),
    ]);
    crate::Event {
        name: MESSAGE_DENIED.to_owned(),
        at,
        props: Value::Object(props),
    }
}

/// A message a step sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepMessage {
    /// The channel.
    pub channel: crate::Channel,
    /// The template id; `{product}` and `{variant}` are replaced per customer.
    pub template: String,
}

/// What the event a step waits for does when it arrives in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnEvent {
    /// The customer leaves the journey (a conversion): the default.
    #[default]
    Exit,
    /// The customer moves to the next step at once.
    Next,
}

/// One step of a linear journey: send (or not), then wait.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The step's id, kept in the journey state.
    pub id: String,
    /// What the step sends when entered; none for a pure wait.
    #[serde(default)]
    pub send: Option<StepMessage>,
    /// How long the step lasts.
    pub wait: Wait,
    /// An event the step waits for, with the wait as its timeout. The event counts when it
    /// happens in `[step entered, step entered + wait)`: at exactly the end it is too late and
    /// the step times out as usual.
    #[serde(default)]
    pub wait_for: Option<String>,
    /// What the awaited event does: `exit` (default) or `next`.
    #[serde(default)]
    pub on_event: OnEvent,
}

impl Step {
    /// A step that sends `template` on `channel`, then waits `wait`.
    pub fn send(id: &str, channel: crate::Channel, template: &str, wait: Wait) -> Step {
        Step {
            send: Some(StepMessage {
                channel,
                template: template.to_owned(),
            }),
            ..Step::pause(id, wait)
        }
    }

    /// A step that sends nothing and waits `wait`.
    pub fn pause(id: &str, wait: Wait) -> Step {
        Step {
            id: id.to_owned(),
            send: None,
            wait,
            wait_for: None,
            on_event: OnEvent::Exit,
        }
    }

    /// This step, waiting for `event` (which exits the customer) at most for its wait.
    pub fn until_event(self, event: &str) -> Step {
        Step {
            wait_for: Some(event.to_owned()),
            ..self
        }
    }

    /// This step, waiting for `event` (which moves the customer to the next step at once) at
    /// most for its wait.
    pub fn next_on_event(self, event: &str) -> Step {
        Step {
            on_event: OnEvent::Next,
            ..self.until_event(event)
        }
    }
}

/// A linear journey, as ../DOMAIN §4 defines one: enter when eligible (by the entry policy, one
/// or several instances), walk the steps as their waits end, exit on conversion, complete after
/// the last step. Control variants walk the same steps without messages, so their conversions
/// can be compared.
///
/// Each evaluation, every active instance moves at most one step, in this order: a conversion
/// (an exit event or, if asked, a purchase since the instance was entered) exits it; the
/// [`MESSAGE_DENIED`] event for its current step starts the step's wait again at the denial (the
/// instance stays on the step and moves on when that wait ends, as if the message had been
/// sent); the awaited event of the step, if it came in time, exits it or moves it on; a step
/// whose wait has ended moves it on. Moving on
/// past the last step completes the instance; entering a step that waits until an instant
/// already past exits it. Then a new instance enters when the entry policy and the rule's
/// eligibility allow.
#[derive(Clone, Debug)]
pub struct Sequence<'a> {
    /// The journey's name in the state.
    pub journey: &'a str,
    /// The campaign code on every message.
    pub campaign: &'a str,
    /// The steps, in order.
    pub steps: &'a [Step],
    /// Entry and re-entry.
    pub entry: EntryPolicy,
    /// A/B variants (empty: no test).
    pub variants: &'a [crate::ab::Variant],
    /// Events that exit the customer when they happen after entry (conversions).
    pub exit_events: &'a [String],
    /// Whether a purchase after entry exits the customer.
    pub exit_on_purchase: bool,
    /// The funnel stage to set on entry, if any.
    pub funnel_stage: Option<&'a str>,
}

/// What happened to one instance in one evaluation.
struct Moved {
    actions: Vec<crate::Action>,
    state: JourneyState,
    reason: String,
}

impl<'a> Sequence<'a> {
    /// A journey of `steps`: entered once ever, no A/B test, no conversion exits, no funnel
    /// stage. Change what differs with struct update syntax:
    /// `Sequence { exit_on_purchase: true, ..Sequence::new(journey, campaign, &steps) }`.
    pub fn new(journey: &'a str, campaign: &'a str, steps: &'a [Step]) -> Self {
        Sequence {
            journey,
            campaign,
            steps,
            entry: EntryPolicy {
                reentry: Reentry::NoReentry,
                min_interval: Duration::ZERO,
            },
            variants: &[],
            exit_events: &[],
            exit_on_purchase: false,
            funnel_stage: None,
        }
    }

    fn render(
        &self,
        template: &str,
        product: &str,
        variant: Option<&crate::ab::Variant>,
    ) -> String {
        template
            .replace("{product}", product)
            .replace("{variant}", variant.map_or("", |v| v.name.as_str()))
    }

    fn variant_of(&self, state: &JourneyState) -> Option<&crate::ab::Variant> {
        let name = state.variant.as_deref()?;
        self.variants.iter().find(|v| v.name == name)
    }

    /// `state` enters `steps[index]` at `now`: its message (unless a control variant), then its
    /// wait; or an exit when the step waits until an instant already past.
    fn enter_step(
        &self,
        index: usize,
        state: JourneyState,
        product: &str,
        now: Timestamp,
        zone: &Zone,
    ) -> (Vec<crate::Action>, JourneyState, Option<String>) {
        let step = &self.steps[index];
        if let Wait::Until(t) = step.wait
            && t < now
        {
            let reason = format!("wait date passed: step `{}` waits until {t}", step.id);
            let exited = state.exited(&reason, now);
            return (
                vec![crate::Action::Exit {
                    reason: reason.clone(),
                }],
                exited,
                Some(reason),
            );
        }
        let mut actions = Vec::new();
        let variant = self.variant_of(&state);
        if let Some(m) = &step.send
            && !variant.is_some_and(|v| v.control)
        {
            actions.push(crate::Action::Send {
                channel: m.channel,
                template: self.render(&m.template, product, variant),
                campaign: self.campaign.to_owned(),
                journey: Some(self.journey.to_owned()),
                instance: Some(state.instance),
                step: Some(step.id.clone()),
            });
        }
        let until = step.wait.ends(now, zone);
        actions.push(match &step.wait_for {
            Some(event) => crate::Action::WaitForEvent {
                event: event.clone(),
                timeout_at: until,
            },
            None => crate::Action::WaitUntil { until },
        });
        (actions, state, None)
    }

    /// Moves `state` from `steps[index]` to the next step (or completes it), because `why`.
    fn next(
        &self,
        index: usize,
        state: &JourneyState,
        why: String,
        product: &str,
        now: Timestamp,
        zone: &Zone,
    ) -> Moved {
        let Some(next) = self.steps.get(index + 1) else {
            return Moved {
                actions: vec![crate::Action::Complete],
                state: state.completed(now),
                reason: crate::because!("{why}; last step `{}` done", state.step),
            };
        };
        let mut actions = vec![crate::Action::MoveTo {
            step: next.id.clone(),
        }];
        let (more, state, exit) =
            self.enter_step(index + 1, state.moved_to(&next.id, now), product, now, zone);
        actions.extend(more);
        Moved {
            actions,
            state,
            reason: exit.map_or(why, |e| crate::because!("moved to `{}`: {e}", next.id)),
        }
    }

    /// The message of `step` was denied at `now`: the instance stays on the step, and the step's
    /// wait starts again at the denial, as if the message had been sent then (DOMAIN §4: a capped
    /// customer advances to the component after the message, which is its delay). It moves on
    /// when that wait ends, or when the step's awaited event comes within it; a denied last step
    /// completes when its wait ends. A denial for a step that sends nothing (a pure wait, or a
    /// control variant's step) changes nothing.
    fn denied(&self, step: &Step, state: &JourneyState, now: Timestamp, zone: &Zone) -> Moved {
        let sends = step.send.is_some() && !self.variant_of(state).is_some_and(|v| v.control);
        if !sends {
            let due = step.wait.ends(state.step_entered_at, zone);
            return Moved {
                actions: Vec::new(),
                state: state.clone(),
                reason: crate::because!(
                    "step `{}` sends no message, so none was denied; waiting at it until {due}",
                    step.id
                ),
            };
        }
        let state = JourneyState {
            step_entered_at: now,
            ..state.clone()
        };
        let due = step.wait.ends(now, zone);
        let wait = match &step.wait_for {
            Some(event) => crate::Action::WaitForEvent {
                event: event.clone(),
                timeout_at: due,
            },
            None => crate::Action::WaitUntil { until: due },
        };
        let next = || match self.steps.iter().position(|s| s.id == step.id) {
            Some(i) if i + 1 < self.steps.len() => format!("step `{}`", self.steps[i + 1].id),
            _ => "the journey's end".to_owned(),
        };
        Moved {
            actions: vec![wait],
            state,
            reason: crate::because!(
                "the message of step `{}` was denied at {now}; waiting at `{}` until {due}, \
                 then {}",
                step.id,
                step.id,
                next()
            ),
        }
    }

    /// The first event named one of `names` at or after `from`, before `before` and not after
    /// `now`: the triggering event or one in the record.
    fn event_in<'e>(
        c: &Customer<'e>,
        trigger: Option<&'e crate::Event>,
        names: &mut dyn FnMut(&str) -> bool,
        from: Timestamp,
        before: Option<Timestamp>,
        now: Timestamp,
    ) -> Option<EventView<'e>> {
        let within = |e: &EventView| {
            let at = e.at();
            at >= from && at <= now && before.is_none_or(|b| at < b)
        };
        trigger
            .map(EventView::whole)
            .into_iter()
            .chain(c.events_reading(&[Field::EventName, Field::EventAt]))
            .filter(|e| within(e))
            .find(|e| names(e.name()))
    }

    /// One evaluation of the active instance `state`.
    fn advance(
        &self,
        c: &Customer,
        trigger: Option<&crate::Event>,
        state: &JourneyState,
        product: &str,
        now: Timestamp,
        zone: &Zone,
    ) -> crate::Result<Moved> {
        let exit = |reason: String| Moved {
            actions: vec![crate::Action::Exit {
                reason: reason.clone(),
            }],
            state: state.exited(&reason, now),
            reason,
        };
        let mut converts = |name: &str| self.exit_events.iter().any(|e| e == name);
        if let Some(e) = Self::event_in(c, trigger, &mut converts, state.entered_at, None, now) {
            return Ok(exit(format!("converted: {}", e.name())));
        }
        if self.exit_on_purchase && c.purchases(now).any(|t| t.at() >= state.entered_at) {
            return Ok(exit("converted: purchase".into()));
        }
        // A new version of the journey without the instance's step: the instance ends, saying
        // why, rather than failing at every evaluation.
        let Some(index) = self.steps.iter().position(|s| s.id == state.step) else {
            return Ok(exit(format!(
                "step `{}` no longer exists in `{}`",
                state.step, self.journey
            )));
        };
        let step = &self.steps[index];
        if let Some(e) = trigger
            && e.name == MESSAGE_DENIED
            && e.props.get("journey").and_then(|v| v.as_str()) == Some(self.journey)
            && e.props.get("step").and_then(|v| v.as_str()) == Some(step.id.as_str())
            && e.props.get("instance").and_then(|v| v.as_f64()) == Some(f64::from(state.instance))
        {
            return Ok(self.denied(step, state, now, zone));
        }
        let due = step.wait.ends(state.step_entered_at, zone);
        if let Some(awaited) = &step.wait_for {
            let mut is = |name: &str| name == awaited;
            if Self::event_in(c, trigger, &mut is, state.step_entered_at, Some(due), now).is_some()
            {
                let why = crate::because!("`{awaited}` came before {due}");
                return Ok(match step.on_event {
                    OnEvent::Exit => exit(format!("converted: {awaited}")),
                    OnEvent::Next => self.next(index, state, why, product, now, zone),
                });
            }
        }
        if now < due {
            // The wait goes on: said again, so a runtime knows when to come back.
            let wait = match &step.wait_for {
                Some(event) => crate::Action::WaitForEvent {
                    event: event.clone(),
                    timeout_at: due,
                },
                None => crate::Action::WaitUntil { until: due },
            };
            return Ok(Moved {
                actions: vec![wait],
                state: state.clone(),
                reason: crate::because!("waiting at step `{}` until {due}", state.step),
            });
        }
        let why = match &step.wait_for {
            Some(e) => crate::because!("step `{}` timed out at {due} without `{e}`", step.id),
            None => crate::because!("step `{}` ended at {due}", step.id),
        };
        Ok(self.next(index, state, why, product, now, zone))
    }

    /// The customer's next move at `ctx.now`, with waits for a local time in the customer's zone.
    /// `eligible` is asked, with the triggering event, only when a new instance could enter: `Ok`
    /// to enter, or `Err` with why not. `product` fills `{product}`.
    ///
    /// The answer's `states` are every instance of the journey after this evaluation, oldest
    /// first: they replace the record's entries for the journey.
    pub fn run<P>(
        &self,
        c: &Customer,
        trigger: Option<&crate::Event>,
        ctx: &crate::Context<'_, P>,
        product: &str,
        eligible: impl FnOnce(Option<&crate::Event>) -> Result<(), String>,
    ) -> crate::Result<crate::JourneyOutcome> {
        use crate::{Action, JourneyOutcome};
        let (zone, _) = c.zone(ctx.default_tz)?;
        let (now, zone) = (ctx.now, &zone);
        if self.steps.is_empty() {
            return Err(crate::Error::new("the journey has no steps"));
        }
        let mut out = JourneyOutcome::none();
        let mut instances: Vec<JourneyState> = c
            .journeys()
            .iter()
            .filter(|j| j.journey == self.journey)
            .cloned()
            .collect();
        instances.sort_by_key(|j| (j.instance, j.entered_at));
        for state in &mut instances {
            if !state.is_active() {
                continue;
            }
            let moved = self.advance(c, trigger, state, product, now, zone)?;
            out.actions.extend(moved.actions);
            out.reasons.push(match instances_label(state.instance) {
                Some(label) => crate::because!("{label}: {}", moved.reason),
                None => moved.reason,
            });
            *state = moved.state;
        }
        let denied_feedback = trigger.is_some_and(|e| e.name == MESSAGE_DENIED);
        if !denied_feedback {
            let refs: Vec<&JourneyState> = instances.iter().collect();
            let entry = self
                .entry
                .next_instance_among(&refs, self.journey, now)
                .and_then(|instance| eligible(trigger).map(|()| instance));
            match entry {
                Err(why) if out.reasons.is_empty() => out.reasons.push(why),
                Err(_) => {}
                Ok(instance) => {
                    let variant = crate::ab::assign(self.variants, self.journey, c.id());
                    let name = variant.map(|v| v.name.clone());
                    out.actions.push(Action::Enter {
                        journey: self.journey.to_owned(),
                        instance,
                        variant: name.clone(),
                    });
                    if let Some(stage) = self.funnel_stage {
                        out.actions.push(Action::SetFunnelStage {
                            stage: stage.to_owned(),
                        });
                    }
                    let fresh = entered(self.journey, instance, &self.steps[0].id, now, name);
                    let (more, state, exit) = self.enter_step(0, fresh, product, now, zone);
                    out.actions.extend(more);
                    out.reasons.push(match exit {
                        Some(e) => crate::because!("entered `{}` and left: {e}", self.journey),
                        None if instance > 1 => {
                            crate::because!("entered `{}` (instance {instance})", self.journey)
                        }
                        None => crate::because!("entered `{}`", self.journey),
                    });
                    instances.push(state);
                }
            }
        }
        out.states = instances;
        Ok(out)
    }
}

/// How a reason names an instance: only from the second one on, so a journey entered once reads
/// as before.
fn instances_label(instance: u32) -> Option<String> {
    (instance > 1).then(|| crate::because!("instance {instance}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, customer};

    #[test]
    fn reentry_policies() {
        let r = customer(
            r#"{"id":"c","journeys":[{"journey":"w","instance":1,"status":"exited","entered_at":"2025-03-01T00:00:00Z","step":"s","step_entered_at":"2025-03-02T00:00:00Z"}]}"#,
        );
        crate::testing::with_view(&r, &[Field::Journeys], "test", |c| {
            let now = at("2025-03-11T00:00:00Z");
            let p = |json: &str| serde_json::from_str::<EntryPolicy>(json).unwrap();
            assert!(
                p(r#"{"reentry":"no_reentry"}"#)
                    .next_instance(c, "w", now)
                    .is_err()
            );
            assert_eq!(
                p(r#"{"reentry":"reentry_after_exit"}"#).next_instance(c, "w", now),
                Ok(2)
            );
            assert!(
                p(r#"{"reentry":"reentry_after_exit","min_interval":864000}"#)
                    .next_instance(c, "w", now)
                    .is_ok()
            );
            assert!(
                p(r#"{"reentry":"reentry_after_exit","min_interval":"11d"}"#)
                    .next_instance(c, "w", now)
                    .is_err()
            );
            assert_eq!(
                p(r#"{"reentry":"no_reentry"}"#).next_instance(c, "other", now),
                Ok(1)
            );
        });
    }

    #[test]
    fn waits_end_after_a_span_or_at_the_next_local_time() {
        let sp = Zone::get("America/Sao_Paulo").unwrap();
        let from = at("2025-03-11T15:00:00Z"); // 12:00 local
        let w: Wait = serde_json::from_str(r#"{"for":"1d"}"#).unwrap();
        assert_eq!(w.ends(from, &sp), at("2025-03-12T15:00:00Z"));
        let w: Wait = serde_json::from_str(r#"{"next_local":"09:00"}"#).unwrap();
        assert_eq!(w.ends(from, &sp), at("2025-03-12T12:00:00Z"));
        let bin = postcard::to_allocvec(&w).unwrap();
        assert_eq!(postcard::from_bytes::<Wait>(&bin).unwrap(), w);
    }

    /// A journey declaring exactly [`READS`], run through every mechanism of [`Sequence`]
    /// (entry, a step's wait, an awaited event, a conversion event, a purchase exit, a denial),
    /// reads nothing else: the list is complete.
    #[test]
    fn a_journey_declaring_the_sequence_reads_reads_nothing_else() {
        use crate::testing::{context, customer, evaluate_journey};
        use crate::{Context, Event, JourneyOutcome, JourneyRule, NoParams, Result};
        struct Everything;
        impl JourneyRule for Everything {
            type Params = NoParams;
            const READS: &'static [Field] = READS;
            fn evaluate(
                c: &Customer,
                event: Option<&Event>,
                ctx: &Context<'_, NoParams>,
            ) -> Result<JourneyOutcome> {
                let steps = [
                    Step::send(
                        "a",
                        crate::Channel::Email,
                        "a",
                        Wait::For(Duration::days(1)),
                    )
                    .next_on_event("opened"),
                    Step::pause(
                        "b",
                        Wait::NextLocal(crate::time::parse_wall_time("09:00").unwrap()),
                    ),
                ];
                let exits = ["activated".to_owned()];
                let s = Sequence {
                    exit_events: &exits,
                    exit_on_purchase: true,
                    entry: EntryPolicy {
                        reentry: Reentry::ReentryAnytime,
                        min_interval: Duration::ZERO,
                    },
                    ..Sequence::new("j", "CMP", &steps)
                };
                s.run(c, event, ctx, "", |_| Ok(()))
            }
        }
        let state = r#"{"journey":"j","instance":1,"status":"active","entered_at":"2025-03-10T12:00:00Z","step":"a","step_entered_at":"2025-03-10T12:00:00Z"}"#;
        let records = [
            r#"{"id":"c"}"#.to_owned(),
            format!(
                r#"{{"id":"c","journeys":[{state}],"events":[{{"name":"opened","at":"2025-03-10T13:00:00Z","props":{{"x":1}}}}]}}"#
            ),
            format!(
                r#"{{"id":"c","journeys":[{state}],"events":[{{"name":"activated","at":"2025-03-10T13:00:00Z"}}]}}"#
            ),
            format!(
                r#"{{"id":"c","journeys":[{state}],"transactions":[{{"id":"t","at":"2025-03-10T13:00:00Z","kind":"purchase","amount":5,"currency":"BRL"}}],"profile":{{"first_name":"Bia"}}}}"#
            ),
            format!(
                r#"{{"id":"c","journeys":[{state}],"contacts":[{{"channel":"email","at":"2025-03-10T12:00:00Z","category":"marketing"}}]}}"#
            ),
        ];
        for record in &records {
            let c = customer(record);
            for event in [
                None,
                Some(denied_event("j", 1, "a", at("2025-03-11T12:00:00Z"))),
            ] {
                let out = evaluate_journey::<Everything>(
                    &c,
                    event.as_ref(),
                    &context("2025-03-11T12:00:00Z", &NoParams::default()),
                );
                assert!(out.is_ok(), "{record}: {out:?}");
            }
        }
    }
}
