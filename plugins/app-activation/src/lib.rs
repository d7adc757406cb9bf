//! App activation: 24 h after the first WhatsApp or e-mail contact, a customer who has not
//! activated the app is nudged by push, then by WhatsApp; activating exits the journey.

use regua_sdk::journey::{Sequence, Step};
use regua_sdk::prelude::*;

/// The journey rule.
pub struct AppActivation;

/// Parameters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The journey's name in the state.
    pub journey: String,
    /// The campaign code.
    pub campaign: String,
    /// Channels whose first message starts the clock.
    pub first_contact_channels: Vec<Channel>,
    /// Time the customer has to activate before the first nudge.
    pub grace: Duration,
    /// The activation event.
    pub activation_event: String,
    /// The nudges.
    pub steps: Vec<Step>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            journey: "app-activation".into(),
            campaign: "BEN-2025-007".into(),
            first_contact_channels: vec![Channel::Whatsapp, Channel::Email],
            grace: Duration::hours(24),
            activation_event: "app_activated".into(),
            steps: vec![
                Step::send(
                    "push-nudge",
                    Channel::Push,
                    "activate-app-push",
                    Wait::For(Duration::hours(24)),
                )
                .until_event("app_activated"),
                Step::send(
                    "whatsapp-nudge",
                    Channel::Whatsapp,
                    "activate-app-whatsapp",
                    Wait::For(Duration::hours(48)),
                )
                .until_event("app_activated"),
            ],
        }
    }
}

impl JourneyRule for AppActivation {
    type Params = Params;
    const READS: &'static [Field] = &[
        Field::EventName,
        Field::EventAt,
        Field::Contacts,
        Field::Journeys,
    ];

    fn evaluate(
        c: &Customer,
        event: Option<&Event>,
        ctx: &Context<'_, Params>,
    ) -> Result<JourneyOutcome> {
        let p = ctx.params;
        let exit_events = [p.activation_event.clone()];
        let sequence = Sequence {
            exit_events: &exit_events,
            ..Sequence::new(&p.journey, &p.campaign, &p.steps)
        };
        // When the grace of the first contact (sent or planned) ends, for a runtime to come
        // back then.
        let entry_at = c
            .contacts()
            .iter()
            .filter(|x| p.first_contact_channels.contains(&x.channel))
            .map(|x| x.at)
            .min()
            .map(|first| first + p.grace);
        let out = sequence.run(c, event, ctx, "", |event| {
            if event.is_some_and(|e| e.name == p.activation_event)
                || c.first_event(&p.activation_event, ctx.now).is_some()
            {
                return Err("app already activated".into());
            }
            let first = c
                .first_contact(&p.first_contact_channels, ctx.now)
                .ok_or("no first contact on WhatsApp or e-mail yet")?;
            if ctx.now < first.at + p.grace {
                return Err(format!(
                    "first contact at {}; the {} grace has not passed",
                    first.at, p.grace
                ));
            }
            Ok(())
        })?;
        Ok(out.entry_not_before(entry_at, ctx.now))
    }
}

export_journey!(AppActivation);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{
        at, context, customer, denial_of, evaluate_journey, event, sends, waits_only,
    };

    const CONTACTED: &str = r#"{"id":"c","contacts":[{"channel":"whatsapp","at":"2025-03-10T12:00:00Z","category":"marketing"}]}"#;

    fn eval(c: &Record, event: Option<&Event>, now: &str) -> JourneyOutcome {
        evaluate_journey::<AppActivation>(c, event, &context(now, &Params::default())).unwrap()
    }

    #[test]
    fn push_24h_after_first_contact_then_whatsapp() {
        let mut c = customer(CONTACTED);
        assert_eq!(
            eval(&c, None, "2025-03-11T11:59:59Z").actions,
            [Action::WaitUntil {
                until: at("2025-03-11T12:00:00Z")
            }],
            "not entered yet, and when to ask again"
        );
        let out = eval(&c, None, "2025-03-11T12:00:00Z");
        assert_eq!(sends(&out), [Channel::Push], "{out:?}");
        assert_eq!(
            out.actions[2],
            Action::WaitForEvent {
                event: "app_activated".into(),
                timeout_at: at("2025-03-12T12:00:00Z")
            }
        );
        c.journeys.push(out.state().cloned().unwrap());
        let next = eval(&c, None, "2025-03-12T12:00:00Z");
        assert_eq!(sends(&next), [Channel::Whatsapp], "{next:?}");
    }

    fn deny(c: &Record, proposed: &JourneyOutcome, at_: &str) -> JourneyOutcome {
        eval(c, Some(&denial_of(proposed, at_)), at_)
    }

    #[test]
    fn a_denied_nudge_keeps_waiting_for_the_activation_from_the_denial() {
        let mut c = customer(CONTACTED);
        // The push nudge at 12:00Z, denied at 12:00Z: the step waits for `app_activated` for
        // its 24 h from the denial; nothing else is proposed.
        let push = eval(&c, None, "2025-03-11T12:00:00Z");
        c.journeys = push.states.clone();
        let denied = deny(&c, &push, "2025-03-11T12:00:00Z");
        assert_eq!(
            denied.actions,
            vec![Action::WaitForEvent {
                event: "app_activated".into(),
                timeout_at: at("2025-03-12T12:00:00Z")
            }]
        );
        assert_eq!(denied.state().unwrap().step, "push-nudge");
        c.journeys = denied.states.clone();
        assert!(waits_only(&eval(&c, None, "2025-03-12T11:59:59Z")));
        // The WhatsApp nudge when the push's wait ends, denied an hour later: 48 h from then.
        let whatsapp = eval(&c, None, "2025-03-12T12:00:00Z");
        assert_eq!(sends(&whatsapp), [Channel::Whatsapp], "{whatsapp:?}");
        c.journeys = whatsapp.states.clone();
        let denied = deny(&c, &whatsapp, "2025-03-12T13:00:00Z");
        assert_eq!(
            denied.actions,
            vec![Action::WaitForEvent {
                event: "app_activated".into(),
                timeout_at: at("2025-03-14T13:00:00Z")
            }]
        );
        c.journeys = denied.states.clone();
        // The awaited activation still ends it while that wait runs...
        let activated = event(r#"{"name":"app_activated","at":"2025-03-14T12:59:59Z"}"#);
        let out = eval(&c, Some(&activated), "2025-03-14T12:59:59Z");
        assert!(matches!(&out.actions[..], [Action::Exit { .. }]), "{out:?}");
        // ...and without it, the last step completes when the wait ends, not at the denial.
        assert!(waits_only(&eval(&c, None, "2025-03-14T12:59:59Z")));
        assert_eq!(
            eval(&c, None, "2025-03-14T13:00:00Z").actions,
            vec![Action::Complete]
        );
    }

    #[test]
    fn activation_exits_whether_in_the_record_or_as_the_trigger() {
        let mut c = customer(CONTACTED);
        c.journeys.push(
            eval(&c, None, "2025-03-11T12:00:00Z")
                .state()
                .cloned()
                .unwrap(),
        );
        let activated: Event =
            serde_json::from_str(r#"{"name":"app_activated","at":"2025-03-11T15:00:00Z"}"#)
                .unwrap();
        let out = eval(&c, Some(&activated), "2025-03-11T15:00:00Z");
        assert_eq!(
            out.actions,
            vec![Action::Exit {
                reason: "converted: app_activated".into()
            }]
        );
        c.events.push(activated);
        let out = eval(&c, None, "2025-03-11T16:00:00Z");
        assert_eq!(out.state().cloned().unwrap().status, JourneyStatus::Exited);
    }

    #[test]
    fn already_active_customers_never_enter() {
        let mut c = customer(CONTACTED);
        c.events.push(
            serde_json::from_str(r#"{"name":"app_activated","at":"2025-03-10T13:00:00Z"}"#)
                .unwrap(),
        );
        assert!(eval(&c, None, "2025-03-12T12:00:00Z").state().is_none());
    }
}
