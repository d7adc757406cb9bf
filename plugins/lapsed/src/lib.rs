//! No purchase for more than `days` days. A customer who never purchased is a prospect, never
//! lapsed.

use regua_sdk::prelude::*;

/// The segment.
pub struct Lapsed;

/// Parameters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Days without a purchase after which a customer is lapsed.
    pub days: i64,
}

impl Default for Params {
    fn default() -> Self {
        Params { days: 30 }
    }
}

impl Segment for Lapsed {
    type Params = Params;
    const READS: &'static [Field] = &[Field::TransactionAt, Field::TransactionKind];

    fn evaluate(c: &Customer, ctx: &Context<'_, Params>) -> Result<Match> {
        let Some(last) = c.last_purchase(ctx.now) else {
            return Ok(Match::no("no purchase yet: a prospect, not lapsed"));
        };
        let idle = ctx.now - last.at();
        let limit = Duration::days(ctx.params.days);
        Ok(Match::when(
            idle > limit,
            because!("last purchase {} ago (limit {limit})", idle_text(idle)),
        ))
    }
}

fn idle_text(d: Duration) -> String {
    let days = d.whole_days();
    if days >= 1 {
        format!("{days} days")
    } else {
        format!("{} hours", d.as_millis() / 3_600_000)
    }
}

export_segment!(Lapsed);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{context, customer, evaluate_segment};

    fn eval(json: &str, now: &str) -> Match {
        evaluate_segment::<Lapsed>(&customer(json), &context(now, &Params::default())).unwrap()
    }

    const BUYER: &str = r#"{"id":"c-1","transactions":[
        {"id":"t1","at":"2025-03-01T12:00:00Z","kind":"purchase","amount":10}]}"#;

    #[test]
    fn thirty_days_exactly_is_not_lapsed_one_second_more_is() {
        assert!(!eval(BUYER, "2025-03-31T12:00:00Z").matched);
        assert!(eval(BUYER, "2025-03-31T12:00:01Z").matched);
    }

    #[test]
    fn worked_example_six_prospects_are_never_lapsed() {
        let m = eval(r#"{"id":"c-2"}"#, "2025-03-31T12:00:00Z");
        assert!(!m.matched);
        assert!(m.reasons[0].contains("prospect"));
    }
}
