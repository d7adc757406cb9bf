//! Customers at one of the given funnel stages (`profile.funnel_stage`).

use regua_sdk::prelude::*;

/// The segment.
pub struct FunnelStage;

/// Parameters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The stages that match.
    pub stages: Vec<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            stages: vec!["onboarding".into()],
        }
    }
}

impl Segment for FunnelStage {
    type Params = Params;
    const READS: &'static [Field] = &[Field::Profile];

    fn evaluate(c: &Customer, ctx: &Context<'_, Params>) -> Result<Match> {
        Ok(match c.profile().funnel_stage.as_deref() {
            None => Match::no("no funnel stage on record"),
            Some(stage) => Match::when(
                ctx.params.stages.iter().any(|s| s == stage),
                because!("funnel stage `{stage}`"),
            ),
        })
    }
}

export_segment!(FunnelStage);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{context, customer, evaluate_segment, params};

    #[test]
    fn matches_the_configured_stages() {
        let c = customer(r#"{"id":"c","profile":{"funnel_stage":"at_risk"}}"#);
        let p: Params = params(r#"{"stages":["at_risk","churned"]}"#);
        assert!(
            evaluate_segment::<FunnelStage>(&c, &context("2025-03-11T12:00:00Z", &p))
                .unwrap()
                .matched
        );
        let d = Params::default();
        assert!(
            !evaluate_segment::<FunnelStage>(&c, &context("2025-03-11T12:00:00Z", &d))
                .unwrap()
                .matched
        );
        let none = customer(r#"{"id":"c"}"#);
        assert!(
            !evaluate_segment::<FunnelStage>(&none, &context("2025-03-11T12:00:00Z", &d))
                .unwrap()
                .matched
        );
    }
}
