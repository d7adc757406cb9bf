//! The lifecycle journeys, one build for all five, chosen by the `stage` parameter:
//! - `acquisition`: prospects created in the last 30 days, nudged to a first purchase;
//! - `usage_stimulus`: buyers with fewer than 2 purchases in the last 30 days (but one in 90);
//! - `retention`: last purchase 31 to 90 days ago;
//! - `profitability`: 3 or more purchases in 90 days, under 1,500 in all (in `currency`, default
//!   BRL): an upsell;
//! - `loyalty`: RFM Champions and Loyal Customers, thanked with rewards.
//!
//! Each sends one message, sets the funnel stage and completes; a customer may enter the same
//! lifecycle journey again after `cooldown`.

use regua_sdk::journey::{Sequence, Step, StepMessage};
use regua_sdk::prelude::*;

/// The journey rule.
pub struct Lifecycle;

/// The lifecycle journeys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// First purchase.
    Acquisition,
    /// Use the product more.
    UsageStimulus,
    /// Come back.
    Retention,
    /// Spend more.
    Profitability,
    /// Stay.
    Loyalty,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Acquisition => "acquisition",
            Stage::UsageStimulus => "usage_stimulus",
            Stage::Retention => "retention",
            Stage::Profitability => "profitability",
            Stage::Loyalty => "loyalty",
        }
    }

    fn default_message(self) -> (Channel, &'static str) {
        match self {
            Stage::Acquisition => (Channel::Email, "first-purchase-incentive"),
            Stage::UsageStimulus => (Channel::Push, "discover-benefits"),
            Stage::Retention => (Channel::Whatsapp, "come-back-offer"),
            Stage::Profitability => (Channel::Email, "limit-upgrade"),
            Stage::Loyalty => (Channel::Email, "loyalty-rewards"),
        }
    }
}

/// Parameters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Which lifecycle journey.
    pub stage: Stage,
    /// The campaign code.
    pub campaign: String,
    /// Least time between two entries in the same lifecycle journey.
    pub cooldown: Duration,
    /// Override the stage's message.
    pub send: Option<StepMessage>,
    /// RFM cut-points (loyalty).
    pub cuts: Cuts,
    /// The currency counted for profitability and loyalty: purchases in other currencies are
    /// left out (those without a currency count as this one).
    pub currency: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            stage: Stage::Retention,
            campaign: "LIFECYCLE-2025".into(),
            cooldown: Duration::days(30),
            send: None,
            cuts: Cuts::default(),
            currency: "BRL".into(),
        }
    }
}

fn eligible(stage: Stage, c: &Customer, ctx: &Context<'_, Params>) -> Result<(), String> {
    let now = ctx.now;
    let count_within = |d| {
        c.purchases(now)
            .filter(|t| t.at().within_last(d, now))
            .count()
    };
    let last = c.last_purchase(now).map(|t| now - t.at());
    match stage {
        Stage::Acquisition => {
            if last.is_some() {
                return Err("already a buyer".into());
            }
            let created = c.profile().created_at.ok_or("no creation date")?;
            created
                .within_last(Duration::days(30), now)
                .then_some(())
                .ok_or_else(|| "prospect for more than 30 days".into())
        }
        Stage::UsageStimulus => {
            let n = count_within(Duration::days(30));
            (count_within(Duration::days(90)) > 0 && n < 2)
                .then_some(())
                .ok_or_else(|| format!("{n} purchases in 30 days"))
        }
        Stage::Retention => match last {
            Some(idle) if idle > Duration::days(30) && idle <= Duration::days(90) => Ok(()),
            Some(idle) => Err(format!("last purchase {} days ago", idle.whole_days())),
            None => Err("no purchase yet".into()),
        },
        Stage::Profitability => {
            let window = Duration::days(90);
            let currency = &ctx.params.currency;
            let recent: Vec<_> = c
                .purchases(now)
                .filter(|t| t.at().within_last(window, now) && t.in_currency(currency))
                .collect();
            let spent: f64 = recent.iter().map(|t| t.amount()).sum();
            (recent.len() >= 3 && spent < 1500.0)
                .then_some(())
                .ok_or_else(|| {
                    let money = regua_sdk::record::format_money(spent, currency);
                    format!("{} purchases, {money} in 90 days", recent.len())
                })
        }
        Stage::Loyalty => {
            let currency = Some(ctx.params.currency.as_str());
            let segment = Rfm::of_currency(c, now, &ctx.params.cuts, currency).map(|r| r.segment());
            match segment {
                Some(RfmSegment::Champions | RfmSegment::LoyalCustomers) => Ok(()),
                Some(s) => Err(format!("RFM segment {}", s.name())),
                None => Err("no purchase yet".into()),
            }
        }
    }
}

impl JourneyRule for Lifecycle {
    type Params = Params;

    fn evaluate(
        c: &Customer,
        event: Option<&Event>,
        ctx: &Context<'_, Params>,
    ) -> Result<JourneyOutcome> {
        let p = ctx.params;
        p.cuts.validate()?;
        let (channel, template) = p.stage.default_message();
        let steps = [Step {
            send: Some(p.send.clone().unwrap_or(StepMessage {
                channel,
                template: template.into(),
            })),
            ..Step::pause("message", Wait::For(Duration::days(3)))
        }];
        let journey = format!("lifecycle-{}", p.stage.name());
        let sequence = Sequence {
            entry: EntryPolicy {
                reentry: Reentry::ReentryAfterExit,
                min_interval: p.cooldown,
            },
            exit_on_purchase: matches!(p.stage, Stage::Acquisition | Stage::Retention),
            funnel_stage: Some(p.stage.name()),
            ..Sequence::new(&journey, &p.campaign, &steps)
        };
        sequence.run(c, event, ctx, "", |_| eligible(p.stage, c, ctx))
    }
}

export_journey!(Lifecycle);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{context, customer, evaluate_journey, params};

    fn buyer(days_ago: &[u32], amount: u32) -> Record {
        let tx: Vec<String> = days_ago
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let at =
                    regua_sdk::testing::at("2025-03-11T12:00:00Z") - Duration::days(i64::from(*d));
                format!(r#"{{"id":"t{i}","at":"{at}","kind":"purchase","amount":{amount}}}"#)
            })
            .collect();
        customer(&format!(
            r#"{{"id":"c","profile":{{"created_at":"2025-03-01T00:00:00Z"}},"transactions":[{}]}}"#,
            tx.join(",")
        ))
    }

    fn enters(stage: &str, c: &Record) -> bool {
        let p: Params = params(&format!(r#"{{"stage":"{stage}"}}"#));
        evaluate_journey::<Lifecycle>(c, None, &context("2025-03-11T12:00:00Z", &p))
            .unwrap()
            .state()
            .is_some()
    }

    #[test]
    fn each_stage_picks_its_customers() {
        let prospect = customer(r#"{"id":"c","profile":{"created_at":"2025-03-01T00:00:00Z"}}"#);
        assert!(enters("acquisition", &prospect));
        assert!(!enters("retention", &prospect));
        assert!(enters("retention", &buyer(&[45], 100)));
        assert!(!enters("retention", &buyer(&[10], 100)));
        assert!(enters("usage_stimulus", &buyer(&[10, 60], 100)));
        assert!(enters("profitability", &buyer(&[5, 20, 40], 100)));
        assert!(!enters("profitability", &buyer(&[5, 20, 40], 900)));
        let champion = buyer(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 600);
        assert!(enters("loyalty", &champion));
        assert!(!enters("loyalty", &buyer(&[200], 50)));
    }

    #[test]
    fn entering_sets_the_funnel_stage_and_sends_the_stage_message() {
        let p: Params = params(r#"{"stage":"retention","campaign":"RET-01"}"#);
        let out = evaluate_journey::<Lifecycle>(
            &buyer(&[45], 100),
            None,
            &context("2025-03-11T12:00:00Z", &p),
        )
        .unwrap();
        assert_eq!(
            out.actions[1],
            Action::SetFunnelStage {
                stage: "retention".into()
            }
        );
        assert_eq!(
            out.actions[2],
            Action::Send {
                channel: Channel::Whatsapp,
                template: "come-back-offer".into(),
                campaign: "RET-01".into(),
                journey: Some("lifecycle-retention".into()),
                instance: Some(1),
                step: Some("message".into()),
            }
        );
        assert_eq!(out.state().cloned().unwrap().journey, "lifecycle-retention");
    }
}
