//! Cart abandonment: a push an hour after the rule sees an abandoned cart, an e-mail the next
//! day; a purchase after the abandonment exits. Each new abandoned cart can start a new instance.

use regua_sdk::journey::{Sequence, Step};
use regua_sdk::prelude::*;

/// The journey rule.
pub struct CartAbandonment;

/// Parameters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The journey's name in the state.
    pub journey: String,
    /// The campaign code.
    pub campaign: String,
    /// The event that signals an abandoned cart.
    pub event: String,
    /// Carts abandoned longer ago than this are left alone.
    pub max_age: Duration,
    /// Entry and re-entry.
    pub entry: EntryPolicy,
    /// The reminders.
    pub steps: Vec<Step>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            journey: "cart-abandonment".into(),
            campaign: "BRF-2025-022".into(),
            event: "cart_abandoned".into(),
            max_age: Duration::days(3),
            entry: EntryPolicy {
                reentry: Reentry::ReentryAfterExit,
                min_interval: Duration::hours(12),
            },
            steps: vec![
                Step::pause("cool-off", Wait::For(Duration::hours(1))),
                Step::send(
                    "push-reminder",
                    Channel::Push,
                    "cart-reminder-push",
                    Wait::For(Duration::hours(23)),
                ),
                Step::send(
                    "email-reminder",
                    Channel::Email,
                    "cart-reminder-email",
                    Wait::For(Duration::days(2)),
                ),
            ],
        }
    }
}

impl JourneyRule for CartAbandonment {
    type Params = Params;
    const READS: &'static [Field] = &[
        Field::TransactionAt,
        Field::TransactionKind,
        Field::EventName,
        Field::EventAt,
        Field::EventProps,
        Field::Journeys,
    ];

    fn evaluate(
        c: &Customer,
        event: Option<&Event>,
        ctx: &Context<'_, Params>,
    ) -> Result<JourneyOutcome> {
        let p = ctx.params;
        let sequence = Sequence {
            entry: p.entry,
            exit_on_purchase: true,
            ..Sequence::new(&p.journey, &p.campaign, &p.steps)
        };
        sequence.run(c, event, ctx, "", |event| {
            let cart = event
                .filter(|e| e.name == p.event)
                .map(EventView::whole)
                .or_else(|| c.events_named(&p.event, ctx.now).max_by_key(|e| e.at()))
                .ok_or("no abandoned cart")?;
            if !cart.at().within_last(p.max_age, ctx.now) {
                return Err(format!(
                    "cart abandoned at {}, more than {} ago",
                    cart.at(),
                    p.max_age
                ));
            }
            if let Some(last) = c.journey(&p.journey)
                && last.entered_at >= cart.at()
            {
                return Err("this cart was already followed up".into());
            }
            if c.purchases(ctx.now).any(|t| t.at() >= cart.at()) {
                return Err("purchased after abandoning the cart".into());
            }
            Ok(())
        })
    }
}

export_journey!(CartAbandonment);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{
        at, context, customer, denial_of, evaluate_journey, sends, waits_only,
    };

    const CART: &str = r#"{"id":"c","events":[{"name":"cart_abandoned","at":"2025-03-11T10:00:00Z","props":{"value":320.5}}]}"#;

    fn eval(c: &Record, now: &str) -> JourneyOutcome {
        evaluate_journey::<CartAbandonment>(c, None, &context(now, &Params::default())).unwrap()
    }

    #[test]
    fn cool_off_then_push_then_email_then_done() {
        let mut c = customer(CART);
        let out = eval(&c, "2025-03-11T10:05:00Z");
        assert!(sends(&out).is_empty(), "{out:?}");
        c.journeys.push(out.state().cloned().unwrap());
        let push = eval(&c, "2025-03-11T11:05:00Z");
        assert_eq!(sends(&push), [Channel::Push], "{push:?}");
        c.journeys[0] = push.state().cloned().unwrap();
        let email = eval(&c, "2025-03-12T10:05:00Z");
        assert_eq!(sends(&email), [Channel::Email], "{email:?}");
        c.journeys[0] = email.state().cloned().unwrap();
        let done = eval(&c, "2025-03-14T10:05:00Z");
        assert_eq!(done.actions, vec![Action::Complete]);
        c.journeys[0] = done.state().cloned().unwrap();
        // The same cart does not start the journey again.
        let again = eval(&c, "2025-03-14T12:00:00Z");
        assert!(waits_only(&again), "{again:?}");
        assert_eq!(
            again.state().cloned().unwrap().status,
            JourneyStatus::Completed
        );
    }

    fn deny(c: &Record, proposed: &JourneyOutcome, at_: &str) -> JourneyOutcome {
        let denial = denial_of(proposed, at_);
        evaluate_journey::<CartAbandonment>(c, Some(&denial), &context(at_, &Params::default()))
            .unwrap()
    }

    #[test]
    fn a_denied_reminder_keeps_the_spacing_and_the_cool_off_has_nothing_to_deny() {
        let mut c = customer(CART);
        let entered = eval(&c, "2025-03-11T10:05:00Z");
        c.journeys = entered.states.clone();
        // The cool-off sends nothing: a denial naming it changes nothing.
        let stale = regua_sdk::journey::denied_event(
            "cart-abandonment",
            1,
            "cool-off",
            at("2025-03-11T10:30:00Z"),
        );
        let out = evaluate_journey::<CartAbandonment>(
            &c,
            Some(&stale),
            &context("2025-03-11T10:30:00Z", &Params::default()),
        )
        .unwrap();
        assert!(waits_only(&out), "{out:?}");
        assert_eq!(out.states, entered.states);
        // The push at 11:05Z, denied at once: the e-mail 23 h later, as if the push had gone.
        let push = eval(&c, "2025-03-11T11:05:00Z");
        c.journeys = push.states.clone();
        let denied = deny(&c, &push, "2025-03-11T11:05:00Z");
        assert_eq!(
            denied.actions,
            vec![Action::WaitUntil {
                until: at("2025-03-12T10:05:00Z")
            }]
        );
        c.journeys = denied.states.clone();
        assert!(waits_only(&eval(&c, "2025-03-12T10:04:59Z")));
        let email = eval(&c, "2025-03-12T10:05:00Z");
        assert_eq!(sends(&email), [Channel::Email], "{email:?}");
        c.journeys = email.states.clone();
        // The e-mail denied at 12:00Z: the journey completes two days after the denial.
        let denied = deny(&c, &email, "2025-03-12T12:00:00Z");
        assert_eq!(
            denied.actions,
            vec![Action::WaitUntil {
                until: at("2025-03-14T12:00:00Z")
            }]
        );
        c.journeys = denied.states.clone();
        assert!(waits_only(&eval(&c, "2025-03-14T11:59:59Z")));
        assert_eq!(
            eval(&c, "2025-03-14T12:00:00Z").actions,
            vec![Action::Complete]
        );
    }

    #[test]
    fn a_purchase_after_the_cart_exits() {
        let mut c = customer(CART);
        c.journeys
            .push(eval(&c, "2025-03-11T10:05:00Z").state().cloned().unwrap());
        c.transactions.push(
            serde_json::from_str(
                r#"{"id":"t","at":"2025-03-11T10:30:00Z","kind":"purchase","amount":320.5}"#,
            )
            .unwrap(),
        );
        let out = eval(&c, "2025-03-11T11:00:00Z");
        assert_eq!(
            out.actions,
            vec![Action::Exit {
                reason: "converted: purchase".into()
            }]
        );
    }

    #[test]
    fn stale_carts_are_left_alone() {
        assert!(
            eval(&customer(CART), "2025-03-15T10:00:00Z")
                .state()
                .is_none()
        );
    }
}
