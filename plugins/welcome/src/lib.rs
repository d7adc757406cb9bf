//! One consolidated welcome régua replacing one journey per product: the templates carry the
//! customer's product (`profile.product`), an A/B test splits the wording, a control group gets
//! no message, and a first purchase exits the customer.

use regua_sdk::ab::Variant;
use regua_sdk::journey::{Sequence, Step};
use regua_sdk::prelude::*;

/// The journey rule.
pub struct Welcome;

/// Parameters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The journey's name in the state.
    pub journey: String,
    /// The campaign code (from the briefing).
    pub campaign: String,
    /// Customers created at most this long ago may enter.
    pub entry_window: Duration,
    /// The profile attribute naming the customer's product.
    pub product_attribute: String,
    /// The product of customers without that attribute.
    pub default_product: String,
    /// Entry and re-entry.
    pub entry: EntryPolicy,
    /// The steps.
    pub steps: Vec<Step>,
    /// A/B variants and the control group.
    pub variants: Vec<Variant>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            journey: "welcome".into(),
            campaign: "BRF-2025-001".into(),
            entry_window: Duration::days(7),
            product_attribute: "product".into(),
            default_product: "classic".into(),
            entry: EntryPolicy {
                reentry: Reentry::NoReentry,
                min_interval: Duration::ZERO,
            },
            steps: vec![
                Step::send(
                    "welcome",
                    Channel::Email,
                    "welcome-{product}-{variant}",
                    Wait::For(Duration::days(1)),
                ),
                Step::send(
                    "app",
                    Channel::Push,
                    "app-download-{product}",
                    Wait::For(Duration::days(2)),
                ),
                Step::send(
                    "first-purchase",
                    Channel::Whatsapp,
                    "first-purchase-offer-{product}",
                    Wait::NextLocal(regua_sdk::time::parse_wall_time("09:00").expect("valid")),
                ),
            ],
            variants: vec![
                Variant {
                    name: "A".into(),
                    buckets: [0, 4500],
                    control: false,
                },
                Variant {
                    name: "B".into(),
                    buckets: [4500, 9000],
                    control: false,
                },
                Variant {
                    name: "control".into(),
                    buckets: [9000, 10000],
                    control: true,
                },
            ],
        }
    }
}

impl JourneyRule for Welcome {
    type Params = Params;
    const READS: &'static [Field] = &[
        Field::Profile,
        Field::TransactionAt,
        Field::TransactionKind,
        Field::EventName,
        Field::EventAt,
        Field::Journeys,
    ];

    fn evaluate(
        c: &Customer,
        event: Option<&Event>,
        ctx: &Context<'_, Params>,
    ) -> Result<JourneyOutcome> {
        let p = ctx.params;
        let product = c
            .profile()
            .attributes
            .get(&p.product_attribute)
            .and_then(Value::as_str)
            .unwrap_or(&p.default_product);
        let sequence = Sequence {
            entry: p.entry,
            variants: &p.variants,
            exit_on_purchase: true,
            funnel_stage: Some("onboarding"),
            ..Sequence::new(&p.journey, &p.campaign, &p.steps)
        };
        sequence.run(c, event, ctx, product, |_| {
            let created = c
                .profile()
                .created_at
                .or_else(|| c.first_event("account_created", ctx.now).map(|e| e.at()))
                .ok_or("no creation date (profile.created_at or an account_created event)")?;
            if created > ctx.now || !created.within_last(p.entry_window, ctx.now) {
                return Err(format!(
                    "created {created}, outside the entry window of {}",
                    p.entry_window
                ));
            }
            if c.last_purchase(ctx.now).is_some() {
                return Err("already purchased".into());
            }
            Ok(())
        })
    }
}

export_journey!(Welcome);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{
        at, context, customer, denial_of, evaluate_journey, sends, waits_only,
    };

    const NEW: &str = r#"{"id":"cus-1","tz":"America/Sao_Paulo","profile":{"created_at":"2025-03-10T12:00:00Z","product":"gold"}}"#;

    fn eval(c: &Record, now: &str) -> JourneyOutcome {
        evaluate_journey::<Welcome>(c, None, &context(now, &Params::default())).unwrap()
    }

    fn with_state(json: &str, state: &JourneyState) -> Record {
        let mut c = customer(json);
        c.journeys.push(state.clone());
        c
    }

    #[test]
    fn a_new_customer_enters_and_gets_the_product_welcome() {
        let out = eval(&customer(NEW), "2025-03-11T12:00:00Z");
        let Action::Enter { variant, .. } = &out.actions[0] else {
            panic!("{out:?}")
        };
        let variant = variant.clone().unwrap();
        assert_eq!(
            out.actions[1],
            Action::SetFunnelStage {
                stage: "onboarding".into()
            }
        );
        if variant == "control" {
            assert!(matches!(out.actions[2], Action::WaitUntil { .. }));
        } else {
            assert_eq!(
                out.actions[2],
                Action::Send {
                    channel: Channel::Email,
                    template: format!("welcome-gold-{variant}"),
                    campaign: "BRF-2025-001".into(),
                    journey: Some("welcome".into()),
                    instance: Some(1),
                    step: Some("welcome".into()),
                }
            );
        }
        assert_eq!(
            out.actions.last(),
            Some(&Action::WaitUntil {
                until: at("2025-03-12T12:00:00Z")
            })
        );
        assert_eq!(out.state().cloned().unwrap().step, "welcome");
    }

    #[test]
    fn steps_advance_as_waits_end_and_the_last_completes() {
        let c = customer(NEW);
        let s0 = eval(&c, "2025-03-11T12:00:00Z").state().cloned().unwrap();
        let waiting = eval(&with_state(NEW, &s0), "2025-03-12T11:59:59Z");
        assert!(waits_only(&waiting), "{waiting:?}");
        let s1 = eval(&with_state(NEW, &s0), "2025-03-12T12:00:00Z");
        assert_eq!(s1.actions[0], Action::MoveTo { step: "app".into() });
        let s1 = s1.state().cloned().unwrap();
        let s2 = eval(&with_state(NEW, &s1), "2025-03-14T12:00:00Z")
            .state()
            .cloned()
            .unwrap();
        assert_eq!(s2.step, "first-purchase");
        // The last step waits until the next 09:00 in São Paulo (12:00Z).
        let early = eval(&with_state(NEW, &s2), "2025-03-15T11:59:00Z");
        assert!(waits_only(&early));
        let done = eval(&with_state(NEW, &s2), "2025-03-15T12:00:00Z");
        assert_eq!(done.actions, vec![Action::Complete]);
        assert_eq!(
            done.state().cloned().unwrap().status,
            JourneyStatus::Completed
        );
    }

    /// The rest policy's denial fed back at `at`.
    fn deny(c: &Record, proposed: &JourneyOutcome, at_: &str) -> JourneyOutcome {
        let denial = denial_of(proposed, at_);
        evaluate_journey::<Welcome>(c, Some(&denial), &context(at_, &Params::default())).unwrap()
    }

    #[test]
    fn a_denied_message_keeps_the_spacing_at_every_step() {
        // A customer outside the control group, so every step has a message to deny.
        let json = (0..100)
            .map(|i| NEW.replace("cus-1", &format!("cus-{i}")))
            .find(|j| {
                let out = eval(&customer(j), "2025-03-11T15:00:00Z");
                out.state().unwrap().variant.as_deref() != Some("control")
            })
            .unwrap();
        let mut c = customer(&json);
        let active = |out: &JourneyOutcome, step: &str, since: &str| {
            let s = out.state().unwrap();
            assert_eq!(
                (s.status, s.step.as_str(), s.step_entered_at),
                (JourneyStatus::Active, step, at(since)),
                "{out:?}"
            );
        };

        // 15:00Z: enters, the e-mail is proposed and denied. Nothing else is proposed; the
        // instance waits at `welcome` one day from the denial.
        let entered = eval(&c, "2025-03-11T15:00:00Z");
        c.journeys = entered.states.clone();
        let denied = deny(&c, &entered, "2025-03-11T15:00:00Z");
        assert_eq!(
            denied.actions,
            vec![Action::WaitUntil {
                until: at("2025-03-12T15:00:00Z")
            }]
        );
        active(&denied, "welcome", "2025-03-11T15:00:00Z");
        let why = denied.reasons.join("; ");
        assert!(
            why.contains("step `welcome` was denied")
                && why.contains("until 2025-03-12T15:00:00Z")
                && why.contains("then step `app`"),
            "{why}"
        );
        c.journeys = denied.states.clone();
        assert!(waits_only(&eval(&c, "2025-03-12T14:59:59Z")));

        // The next day at 15:00Z the push is due, as if the e-mail had gone.
        let push = eval(&c, "2025-03-12T15:00:00Z");
        assert_eq!(push.actions[0], Action::MoveTo { step: "app".into() });
        assert_eq!(sends(&push), [Channel::Push], "{push:?}");
        c.journeys = push.states.clone();
        // Denied too: two days from that denial to the WhatsApp message.
        let denied = deny(&c, &push, "2025-03-12T15:00:00Z");
        assert_eq!(
            denied.actions,
            vec![Action::WaitUntil {
                until: at("2025-03-14T15:00:00Z")
            }]
        );
        active(&denied, "app", "2025-03-12T15:00:00Z");
        c.journeys = denied.states.clone();
        assert!(waits_only(&eval(&c, "2025-03-14T14:59:59Z")));
        let whatsapp = eval(&c, "2025-03-14T15:00:00Z");
        assert_eq!(
            whatsapp.actions[0],
            Action::MoveTo {
                step: "first-purchase".into()
            }
        );
        assert_eq!(sends(&whatsapp), [Channel::Whatsapp], "{whatsapp:?}");
        c.journeys = whatsapp.states.clone();

        // The last message, denied at 10:00 local the next day (13:00Z; a deferred message
        // denied when it came due, say): the last step's wait, until the next 09:00 in São
        // Paulo, runs from the denial, and the instance completes when it ends, not at once.
        let denied = deny(&c, &whatsapp, "2025-03-15T13:00:00Z");
        assert_eq!(
            denied.actions,
            vec![Action::WaitUntil {
                until: at("2025-03-16T12:00:00Z")
            }]
        );
        assert!(denied.reasons.join("; ").contains("then the journey's end"));
        active(&denied, "first-purchase", "2025-03-15T13:00:00Z");
        c.journeys = denied.states.clone();
        assert!(waits_only(&eval(&c, "2025-03-16T11:59:59Z")));
        let done = eval(&c, "2025-03-16T12:00:00Z");
        assert_eq!(done.actions, vec![Action::Complete]);
    }

    #[test]
    fn a_denial_for_another_step_or_instance_changes_nothing() {
        let mut c = customer(NEW);
        let entered = eval(&c, "2025-03-11T15:00:00Z");
        c.journeys = entered.states.clone();
        let state = entered.state().unwrap().clone();
        for (step, instance) in [("app", 1), ("welcome", 2)] {
            let stale = regua_sdk::journey::denied_event(
                "welcome",
                instance,
                step,
                at("2025-03-11T16:00:00Z"),
            );
            let out = evaluate_journey::<Welcome>(
                &c,
                Some(&stale),
                &context("2025-03-11T16:00:00Z", &Params::default()),
            )
            .unwrap();
            assert!(waits_only(&out), "{out:?}");
            assert_eq!(out.state(), Some(&state));
        }
    }

    #[test]
    fn a_purchase_exits_and_there_is_no_reentry() {
        let s0 = eval(&customer(NEW), "2025-03-11T12:00:00Z")
            .state()
            .cloned()
            .unwrap();
        let bought = NEW.replace(
            r#""profile""#,
            r#""transactions":[{"id":"t","at":"2025-03-11T18:00:00Z","kind":"purchase","amount":80}],"profile""#,
        );
        let out = eval(&with_state(&bought, &s0), "2025-03-11T20:00:00Z");
        assert_eq!(
            out.actions,
            vec![Action::Exit {
                reason: "converted: purchase".into()
            }]
        );
        let exited = out.state().cloned().unwrap();
        let again = eval(&with_state(NEW, &exited), "2025-03-12T20:00:00Z");
        assert!(
            waits_only(&again) && again.state().unwrap().status == JourneyStatus::Exited,
            "{again:?}"
        );
    }

    #[test]
    fn old_customers_do_not_enter() {
        let old = NEW.replace("2025-03-10T12", "2025-01-10T12");
        assert!(
            eval(&customer(&old), "2025-03-11T12:00:00Z")
                .actions
                .is_empty()
        );
    }

    #[test]
    fn variants_split_customers_deterministically() {
        let mut seen = std::collections::BTreeMap::new();
        for i in 0..400 {
            let c = customer(&NEW.replace("cus-1", &format!("cus-{i}")));
            let out = eval(&c, "2025-03-11T12:00:00Z");
            *seen
                .entry(out.state().cloned().unwrap().variant.unwrap())
                .or_insert(0) += 1;
            assert_eq!(
                eval(&c, "2025-03-11T12:00:00Z")
                    .state()
                    .cloned()
                    .unwrap()
                    .variant,
                eval(&c, "2025-03-11T13:00:00Z")
                    .state()
                    .cloned()
                    .unwrap()
                    .variant
            );
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(
            seen["control"] < seen["A"] && seen["control"] < seen["B"],
            "{seen:?}"
        );
    }
}
