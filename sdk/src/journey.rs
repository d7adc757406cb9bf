//! Journey mechanics shared by journey rules: entry and re-entry, waits, state changes.

use serde::{Deserialize, Serialize};

use crate::record::{Customer, JourneyState, JourneyStatus};
use crate::time::{CivilTime, Duration, Timestamp, Zone};

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
        let Some(last) = customer.journey(journey) else {
            return Ok(1);
        };
        match self.reentry {
            Reentry::NoReentry => return Err(format!("already entered `{journey}` once")),
            Reentry::ReentryAfterExit if last.status == JourneyStatus::Active => {
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
        Ok(last.instance + 1)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, customer};

    #[test]
    fn reentry_policies() {
        let c = customer(
            r#"{"id":"c","journeys":[{"journey":"w","instance":1,"status":"exited","entered_at":"2025-03-01T00:00:00Z","step":"s","step_entered_at":"2025-03-02T00:00:00Z"}]}"#,
        );
        let now = at("2025-03-11T00:00:00Z");
        let p = |json: &str| serde_json::from_str::<EntryPolicy>(json).unwrap();
        assert!(
            p(r#"{"reentry":"no_reentry"}"#)
                .next_instance(&c, "w", now)
                .is_err()
        );
        assert_eq!(
            p(r#"{"reentry":"reentry_after_exit"}"#).next_instance(&c, "w", now),
            Ok(2)
        );
        assert!(
            p(r#"{"reentry":"reentry_after_exit","min_interval":864000}"#)
                .next_instance(&c, "w", now)
                .is_ok()
        );
        assert!(
            p(r#"{"reentry":"reentry_after_exit","min_interval":"11d"}"#)
                .next_instance(&c, "w", now)
                .is_err()
        );
        assert_eq!(
            p(r#"{"reentry":"no_reentry"}"#).next_instance(&c, "other", now),
            Ok(1)
        );
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
    /// Wait for this event (it exits the customer) rather than only for time.
    #[serde(default)]
    pub wait_for: Option<String>,
}

impl Step {
    /// A step that sends `template` on `channel`, then waits `wait`.
    pub fn send(id: &str, channel: crate::Channel, template: &str, wait: Wait) -> Step {
        Step {
            id: id.to_owned(),
            send: Some(StepMessage {
                channel,
                template: template.to_owned(),
            }),
            wait,
            wait_for: None,
        }
    }

    /// A step that sends nothing and waits `wait`.
    pub fn pause(id: &str, wait: Wait) -> Step {
        Step {
            id: id.to_owned(),
            send: None,
            wait,
            wait_for: None,
        }
    }

    /// This step, waiting for `event` (which exits the customer) rather than only for time.
    pub fn until_event(self, event: &str) -> Step {
        Step {
            wait_for: Some(event.to_owned()),
            ..self
        }
    }
}

/// A linear journey: enter when eligible, walk the steps one per evaluation as their waits end,
/// exit on conversion, complete after the last step. Control variants walk the same steps
/// without messages, so their conversions can be compared.
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

    fn step_actions(
        &self,
        step: &Step,
        product: &str,
        variant: Option<&crate::ab::Variant>,
        now: Timestamp,
        zone: &Zone,
    ) -> Vec<crate::Action> {
        let mut actions = Vec::new();
        if let Some(m) = &step.send
            && !variant.is_some_and(|v| v.control)
        {
            actions.push(crate::Action::Send {
                channel: m.channel,
                template: self.render(&m.template, product, variant),
                campaign: self.campaign.to_owned(),
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
        actions
    }

    fn conversion(
        &self,
        c: &Customer,
        trigger: Option<&crate::Event>,
        since: Timestamp,
        now: Timestamp,
    ) -> Option<String> {
        if let Some(e) = trigger
            && self.exit_events.contains(&e.name)
        {
            return Some(e.name.clone());
        }
        if let Some(e) = c
            .events
            .iter()
            .find(|e| e.at >= since && e.at <= now && self.exit_events.contains(&e.name))
        {
            return Some(e.name.clone());
        }
        if self.exit_on_purchase && c.purchases(now).any(|t| t.at >= since) {
            return Some("purchase".into());
        }
        None
    }

    /// The customer's next move at `ctx.now`, with waits for a local time in the customer's zone.
    /// `eligible` is asked only when the customer could enter: `Ok` with the reason to enter, or
    /// `Err` with why not. `product` fills `{product}`.
    pub fn run<P>(
        &self,
        c: &Customer,
        trigger: Option<&crate::Event>,
        ctx: &crate::Context<'_, P>,
        product: &str,
        eligible: impl FnOnce() -> Result<(), String>,
    ) -> crate::Result<crate::JourneyOutcome> {
        use crate::{Action, JourneyOutcome};
        let (zone, _) = c.zone(ctx.default_tz)?;
        let (now, zone) = (ctx.now, &zone);
        let first = self
            .steps
            .first()
            .ok_or_else(|| crate::Error::new("the journey has no steps"))?;
        let current = c.journey(self.journey).filter(|j| j.is_active());
        let Some(state) = current else {
            // Not entering leaves the latest instance, if any, as it was.
            let unchanged = |why: String| JourneyOutcome {
                state: c.journey(self.journey).cloned(),
                ..JourneyOutcome::because(why)
            };
            let instance = match self.entry.next_instance(c, self.journey, now) {
                Ok(i) => i,
                Err(why) => return Ok(unchanged(why)),
            };
            if let Err(why) = eligible() {
                return Ok(unchanged(why));
            }
            let variant = crate::ab::assign(self.variants, self.journey, &c.id);
            let mut actions = vec![Action::Enter {
                journey: self.journey.to_owned(),
                instance,
                variant: variant.map(|v| v.name.clone()),
            }];
            if let Some(stage) = self.funnel_stage {
                actions.push(Action::SetFunnelStage {
                    stage: stage.to_owned(),
                });
            }
            actions.extend(self.step_actions(first, product, variant, now, zone));
            return Ok(JourneyOutcome {
                actions,
                reasons: vec![format!("entered `{}`", self.journey)],
                state: Some(entered(
                    self.journey,
                    instance,
                    &first.id,
                    now,
                    variant.map(|v| v.name.clone()),
                )),
            });
        };

        if let Some(what) = self.conversion(c, trigger, state.entered_at, now) {
            let reason = format!("converted: {what}");
            return Ok(JourneyOutcome {
                actions: vec![Action::Exit {
                    reason: reason.clone(),
                }],
                reasons: vec![reason.clone()],
                state: Some(state.exited(&reason, now)),
            });
        }
        let index = self
            .steps
            .iter()
            .position(|s| s.id == state.step)
            .ok_or_else(|| {
                crate::Error::new(format!(
                    "journey state names step `{}`, which `{}` does not have",
                    state.step, self.journey
                ))
            })?;
        let due = self.steps[index].wait.ends(state.step_entered_at, zone);
        if now < due {
            return Ok(JourneyOutcome {
                actions: Vec::new(),
                reasons: vec![format!("waiting at step `{}` until {due}", state.step)],
                state: Some(state.clone()),
            });
        }
        let Some(next) = self.steps.get(index + 1) else {
            return Ok(JourneyOutcome {
                actions: vec![Action::Complete],
                reasons: vec![format!("last step `{}` done", state.step)],
                state: Some(state.completed(now)),
            });
        };
        let variant = state
            .variant
            .as_deref()
            .and_then(|name| self.variants.iter().find(|v| v.name == name));
        let mut actions = vec![Action::MoveTo {
            step: next.id.clone(),
        }];
        actions.extend(self.step_actions(next, product, variant, now, zone));
        Ok(JourneyOutcome {
            actions,
            reasons: vec![format!("step `{}` ended at {due}", state.step)],
            state: Some(state.moved_to(&next.id, now)),
        })
    }
}
