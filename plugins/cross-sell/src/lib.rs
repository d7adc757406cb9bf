//! Customers in business unit `from` and not in business unit `to`.

use regua_sdk::prelude::*;

/// The segment.
pub struct CrossSell;

/// Parameters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The unit the customer is in.
    pub from: String,
    /// The unit to sell.
    pub to: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            from: "card".into(),
            to: "benefits".into(),
        }
    }
}

impl Segment for CrossSell {
    type Params = Params;
    const READS: &'static [Field] = &[Field::Profile];

    fn evaluate(c: &Customer, ctx: &Context<'_, Params>) -> Result<Match> {
        let p = ctx.params;
        let (in_from, in_to) = (
            c.profile().in_business_unit(&p.from),
            c.profile().in_business_unit(&p.to),
        );
        Ok(match (in_from, in_to) {
            (true, false) => Match::yes(because!("in `{}`, not yet in `{}`", p.from, p.to)),
            (false, _) => Match::no(because!("not in `{}`", p.from)),
            (true, true) => Match::no(because!("already in `{}`", p.to)),
        })
    }
}

export_segment!(CrossSell);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{context, customer, evaluate_segment};

    fn eval(units: &str) -> Match {
        let c = customer(&format!(
            r#"{{"id":"c","profile":{{"business_units":{units}}}}}"#
        ));
        evaluate_segment::<CrossSell>(&c, &context("2025-03-11T12:00:00Z", &Params::default()))
            .unwrap()
    }

    #[test]
    fn in_a_and_not_in_b() {
        assert!(eval(r#"["card"]"#).matched);
        assert!(!eval(r#"["card","benefits"]"#).matched);
        assert!(!eval(r#"["benefits"]"#).matched);
        assert!(!eval("[]").matched);
    }
}
