//! Any linear journey, described entirely by its parameters: the steps (what each sends, how
//! long it waits, the event it waits for), who may enter and how often, the A/B variants and the
//! conversions that end it. A campaign can run a whole journey from its definition file with
//! this plugin, without writing a rule.
//!
//! Who enters: with `enter_on` set, customers whose triggering event has that name, or whose
//! record has such an event after their latest entry (and within `enter_within`, when set);
//! without it, every customer the entry policy lets in.

use regua_sdk::ab::Variant;
use regua_sdk::journey::{Sequence, Step};
use regua_sdk::prelude::*;

/// The journey rule.
pub struct SequenceRule;

/// Parameters, with their defaults.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The journey's name in the customer's journey state.
    pub journey: String,
    /// The campaign code on every message.
    pub campaign: String,
    /// The steps, in order (at least one).
    pub steps: Vec<Step>,
    /// Who may enter again (`no_reentry`, `reentry_after_exit`, `reentry_anytime`) and the least
    /// time between two entries.
    pub entry: EntryPolicy,
    /// The event that lets a customer enter (`null`: every customer may).
    pub enter_on: Option<String>,
    /// How recent the `enter_on` event must be (none: any time after the latest entry).
    pub enter_within: Option<Duration>,
    /// A/B variants owning bucket ranges `[from, to)`; a `control` variant gets no messages.
    pub variants: Vec<Variant>,
    /// Events that end the journey as a conversion when they happen after entry.
    pub exit_events: Vec<String>,
    /// Whether a purchase after entry ends the journey as a conversion.
    pub exit_on_purchase: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            journey: "sequence".into(),
            campaign: "SEQUENCE".into(),
            steps: vec![Step::send(
                "message",
                Channel::Email,
                "message",
                Wait::For(Duration::days(1)),
            )],
            entry: EntryPolicy {
                reentry: Reentry::NoReentry,
                min_interval: Duration::ZERO,
            },
            enter_on: Some("account_created".into()),
            enter_within: Some(Duration::days(30)),
            variants: Vec::new(),
            exit_events: Vec::new(),
            exit_on_purchase: false,
        }
    }
}

impl Params {
    fn validate(&self) -> Result<()> {
        if self.steps.is_empty() {
            return Err(Error::new(
                "parameter `steps` is empty: give at least one step",
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        if let Some(s) = self.steps.iter().find(|s| !ids.insert(s.id.as_str())) {
            return Err(Error::new(format!(
                "parameter `steps`: step id `{}` is used twice",
                s.id
            )));
        }
        for v in &self.variants {
            let [from, to] = v.buckets;
            if from >= to || to > regua_sdk::ab::BUCKETS {
                return Err(Error::new(format!(
                    "parameter `variants`: `{}` owns buckets [{from}, {to}), which is not a \
                     range within [0, 10000)",
                    v.name
                )));
            }
        }
        Ok(())
    }
}

impl JourneyRule for SequenceRule {
    type Params = Params;
    const READS: &'static [Field] = &[Field::Events, Field::Transactions, Field::Journeys];

    fn evaluate(
        c: &Customer,
        event: Option<&Event>,
        ctx: &Context<'_, Params>,
    ) -> Result<JourneyOutcome> {
        let p = ctx.params;
        p.validate()?;
        let sequence = Sequence {
            entry: p.entry,
            variants: &p.variants,
            exit_events: &p.exit_events,
            exit_on_purchase: p.exit_on_purchase,
            ..Sequence::new(&p.journey, &p.campaign, &p.steps)
        };
        sequence.run(c, event, ctx, "", |trigger| {
            let Some(name) = &p.enter_on else {
                return Ok(());
            };
            let since = c.journey(&p.journey).map(|j| j.entered_at);
            let fresh = |event: &str, at: Timestamp| {
                event == name
                    && at <= ctx.now
                    && since.is_none_or(|s| at > s)
                    && p.enter_within.is_none_or(|w| at > ctx.now - w)
            };
            if trigger.is_some_and(|e| fresh(&e.name, e.at))
                || c.events().any(|e| fresh(e.name(), e.at()))
            {
                Ok(())
            } else {
                Err(format!("no `{name}` event to enter on"))
            }
        })
    }
}

export_journey!(SequenceRule);
