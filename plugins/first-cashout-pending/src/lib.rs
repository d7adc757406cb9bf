//! Customers who loaded money (cash-in) but never cashed out: the audience of a first cash-out
//! cashback nudge.

use regua_sdk::prelude::*;

/// The segment.
pub struct FirstCashoutPending;

/// Parameters.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Only transactions of this business unit count (all units when absent).
    pub business_unit: Option<String>,
}

impl Segment for FirstCashoutPending {
    type Params = Params;
    const READS: &'static [Field] = &[
        Field::TransactionAt,
        Field::TransactionKind,
        Field::TransactionAmount,
        Field::TransactionCurrency,
        Field::TransactionBusinessUnit,
    ];

    fn evaluate(c: &Customer, ctx: &Context<'_, Params>) -> Result<Match> {
        let unit = ctx.params.business_unit.as_deref();
        let of_unit = |t: &TransactionView| unit.is_none() || t.business_unit() == unit;
        let first_in = c
            .transactions_of(kind::CASHIN, ctx.now)
            .filter(of_unit)
            .min_by_key(|t| t.at());
        let Some(first_in) = first_in else {
            return Ok(Match::no("no cash-in yet"));
        };
        if let Some(out) = c.transactions_of(kind::CASHOUT, ctx.now).find(of_unit) {
            return Ok(Match::no(because!("cashed out on {}", out.at())));
        }
        Ok(Match::yes(because!(
            "first cash-in of {} on {}, never cashed out",
            first_in.money(),
            first_in.at()
        )))
    }
}

export_segment!(FirstCashoutPending);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{context, customer, evaluate_segment, params};

    const CASHIN: &str = r#"{"id":"c","transactions":[
        {"id":"a","at":"2025-03-01T10:00:00Z","kind":"cashin","amount":400,"currency":"BRL","business_unit":"benefits"}]}"#;

    #[test]
    fn cash_in_without_cash_out_matches() {
        let m = evaluate_segment::<FirstCashoutPending>(
            &customer(CASHIN),
            &context("2025-03-11T12:00:00Z", &Params::default()),
        )
        .unwrap();
        assert!(m.matched);
        assert!(m.reasons[0].contains("R$ 400.00"));
        // The reason prints the record's own currency.
        let usd = customer(&CASHIN.replace("BRL", "USD"));
        let m = evaluate_segment::<FirstCashoutPending>(
            &usd,
            &context("2025-03-11T12:00:00Z", &Params::default()),
        )
        .unwrap();
        assert!(m.reasons[0].contains("US$ 400.00"), "{m:?}");
    }

    #[test]
    fn a_cash_out_or_no_cash_in_does_not() {
        let out = CASHIN.replace("]}", r#",{"id":"b","at":"2025-03-05T10:00:00Z","kind":"cashout","amount":50,"business_unit":"benefits"}]}"#);
        let p = Params::default();
        assert!(
            !evaluate_segment::<FirstCashoutPending>(
                &customer(&out),
                &context("2025-03-11T12:00:00Z", &p)
            )
            .unwrap()
            .matched
        );
        // ... unless the cash-out is after `now`.
        assert!(
            evaluate_segment::<FirstCashoutPending>(
                &customer(&out),
                &context("2025-03-04T12:00:00Z", &p)
            )
            .unwrap()
            .matched
        );
        assert!(
            !evaluate_segment::<FirstCashoutPending>(
                &customer(r#"{"id":"c"}"#),
                &context("2025-03-11T12:00:00Z", &p)
            )
            .unwrap()
            .matched
        );
    }

    #[test]
    fn the_business_unit_filter_applies() {
        let p: Params = params(r#"{"business_unit":"card"}"#);
        assert!(
            !evaluate_segment::<FirstCashoutPending>(
                &customer(CASHIN),
                &context("2025-03-11T12:00:00Z", &p)
            )
            .unwrap()
            .matched
        );
    }
}
