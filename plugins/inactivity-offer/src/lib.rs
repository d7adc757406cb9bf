//! Inactivity offer: a customer with no purchase for more than 30 days gets an offer by e-mail,
//! then a push reminder; a purchase exits. Prospects (no purchase ever) never enter.

use regua_sdk::journey::{Sequence, Step};
use regua_sdk::prelude::*;

/// The journey rule.
pub struct InactivityOffer;

/// Parameters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The journey's name in the state.
    pub journey: String,
    /// The campaign code.
    pub campaign: String,
    /// Inactive means no purchase for more than this.
    pub inactive_for: Duration,
    /// Entry and re-entry.
    pub entry: EntryPolicy,
    /// The offer and its reminders.
    pub steps: Vec<Step>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            journey: "inactivity-offer".into(),
            campaign: "BRF-2025-031".into(),
            inactive_for: Duration::days(30),
            entry: EntryPolicy {
                reentry: Reentry::ReentryAfterExit,
                min_interval: Duration::days(30),
            },
            steps: vec![
                Step::send(
                    "offer",
                    Channel::Email,
                    "we-miss-you-offer",
                    Wait::For(Duration::days(3)),
                ),
                Step::send(
                    "reminder",
                    Channel::Push,
                    "offer-ends-soon",
                    Wait::For(Duration::days(4)),
                ),
            ],
        }
    }
}

impl JourneyRule for InactivityOffer {
    type Params = Params;

    fn evaluate(
        c: &Customer,
        event: Option<&Event>,
        ctx: &Context<'_, Params>,
    ) -> Result<JourneyOutcome> {
        let p = ctx.params;
        let sequence = Sequence {
            entry: p.entry,
            exit_on_purchase: true,
            funnel_stage: Some("at_risk"),
            ..Sequence::new(&p.journey, &p.campaign, &p.steps)
        };
        // The first instant with more than `inactive_for` idle, for a runtime to come back then.
        let entry_at = c
            .last_purchase(ctx.now)
            .map(|last| last.at() + p.inactive_for + Duration::millis(1));
        let out = sequence.run(c, event, ctx, "", |_| {
            let last = c
                .last_purchase(ctx.now)
                .ok_or("no purchase yet: a prospect")?;
            let idle = ctx.now - last.at();
            if idle > p.inactive_for {
                Ok(())
            } else {
                Err(format!("last purchase {} days ago", idle.whole_days()))
            }
        })?;
        Ok(out.entry_not_before(entry_at, ctx.now))
    }
}

export_journey!(InactivityOffer);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{context, customer, evaluate_journey, sends};

    const BUYER: &str = r#"{"id":"c","transactions":[{"id":"t","at":"2025-02-09T12:00:00Z","kind":"purchase","amount":99}]}"#;

    fn eval(c: &Record, now: &str) -> JourneyOutcome {
        evaluate_journey::<InactivityOffer>(c, None, &context(now, &Params::default())).unwrap()
    }

    #[test]
    fn enters_one_second_after_thirty_days() {
        let c = customer(BUYER);
        assert!(eval(&c, "2025-03-11T12:00:00Z").state().is_none());
        let out = eval(&c, "2025-03-11T12:00:01Z");
        assert_eq!(sends(&out), [Channel::Email], "{out:?}");
    }

    #[test]
    fn a_purchase_exits_and_prospects_never_enter() {
        let mut c = customer(BUYER);
        c.journeys
            .push(eval(&c, "2025-03-12T12:00:00Z").state().cloned().unwrap());
        c.transactions.push(
            serde_json::from_str(
                r#"{"id":"t2","at":"2025-03-13T12:00:00Z","kind":"purchase","amount":50}"#,
            )
            .unwrap(),
        );
        assert_eq!(
            eval(&c, "2025-03-13T13:00:00Z")
                .state()
                .cloned()
                .unwrap()
                .status,
            JourneyStatus::Exited
        );
        assert!(
            eval(&customer(r#"{"id":"p"}"#), "2025-03-13T13:00:00Z")
                .state()
                .is_none()
        );
    }
}
