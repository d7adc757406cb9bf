//! Customers in a given RFM segment. Reasons give R, F, M, their measures and the segment.

use regua_sdk::prelude::*;

/// The segment.
pub struct RfmSegmentRule;

/// Parameters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The target segment, as named in the RFM table (`Champions`, `At Risk`, …).
    pub segment: RfmSegment,
    /// Score cut-points.
    pub cuts: Cuts,
    /// The currency counted: purchases in other currencies are left out of R, F and M (those
    /// without a currency count as this one). `null` sums amounts across currencies.
    pub currency: Option<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            segment: RfmSegment::Champions,
            cuts: Cuts::default(),
            currency: Some("BRL".into()),
        }
    }
}

impl Segment for RfmSegmentRule {
    type Params = Params;
    const READS: &'static [Field] = &[
        Field::TransactionAt,
        Field::TransactionKind,
        Field::TransactionAmount,
        Field::TransactionCurrency,
    ];

    fn evaluate(c: &Customer, ctx: &Context<'_, Params>) -> Result<Match> {
        ctx.params.cuts.validate()?;
        let currency = ctx.params.currency.as_deref();
        let Some(rfm) = Rfm::of_currency(c, ctx.now, &ctx.params.cuts, currency) else {
            return Ok(Match::no("no purchase yet: a prospect, in no RFM segment"));
        };
        let segment = rfm.segment();
        Ok(Match::when(
            segment == ctx.params.segment,
            because!("R{} F{} M{}", rfm.r, rfm.f, rfm.m),
        )
        .and(because!(
            "last purchase {} days ago, {} purchase{}, {} in all",
            rfm.recency_days,
            rfm.frequency,
            if rfm.frequency == 1 { "" } else { "s" },
            match currency {
                Some(code) => regua_sdk::record::format_money(rfm.monetary, code),
                None => format!("{:.2} summed across currencies", rfm.monetary),
            }
        ))
        .and(because!("segment {}", segment.name())))
    }
}

export_segment!(RfmSegmentRule);

#[cfg(test)]
mod tests {
    use super::*;
    use regua_sdk::testing::{context, customer, evaluate_segment, params};

    fn twelve_purchases() -> Record {
        // Worked example 5: twelve purchases, the last 10 days ago, R$ 6,200 in all.
        let mut tx = Vec::new();
        for i in 0..12 {
            let day = 1 + i * 2;
            let amount = if i == 11 { 700 } else { 500 };
            tx.push(format!(
                r#"{{"id":"t{i}","at":"2025-01-{day:02}T12:00:00Z","kind":"purchase","amount":{amount},"currency":"BRL"}}"#
            ));
        }
        tx.push(r#"{"id":"t12","at":"2025-03-01T12:00:00Z","kind":"refund","amount":900}"#.into());
        let mut c = customer(&format!(
            r#"{{"id":"c-1","transactions":[{}]}}"#,
            tx.join(",")
        ));
        c.transactions[11].at = regua_sdk::testing::at("2025-03-01T12:00:00Z");
        c
    }

    #[test]
    fn purchases_in_another_currency_are_not_counted_unless_asked() {
        let mut c = twelve_purchases();
        for t in &mut c.transactions[..6] {
            t.currency = "USD".into();
        }
        let now = "2025-03-11T12:00:00Z";
        let brl =
            evaluate_segment::<RfmSegmentRule>(&c, &context(now, &Params::default())).unwrap();
        assert!(
            brl.reasons[1].contains("6 purchases, R$ 3200.00 in all"),
            "{brl:?}"
        );
        let all: Params = params(r#"{"currency": null}"#);
        let all = evaluate_segment::<RfmSegmentRule>(&c, &context(now, &all)).unwrap();
        assert!(
            all.reasons[1].contains("12 purchases, 6200.00 summed across currencies"),
            "{all:?}"
        );
        let usd: Params = params(r#"{"currency": "USD"}"#);
        let usd = evaluate_segment::<RfmSegmentRule>(&c, &context(now, &usd)).unwrap();
        assert!(
            usd.reasons[1].contains("6 purchases, US$ 3000.00 in all"),
            "{usd:?}"
        );
    }

    #[test]
    fn worked_example_five_is_a_champion() {
        let p = Params::default();
        let m = evaluate_segment::<RfmSegmentRule>(
            &twelve_purchases(),
            &context("2025-03-11T12:00:00Z", &p),
        )
        .unwrap();
        assert!(m.matched, "{m:?}");
        assert_eq!(m.reasons[0], "R5 F5 M5");
        assert_eq!(
            m.reasons[1],
            "last purchase 10 days ago, 12 purchases, R$ 6200.00 in all"
        );
        assert_eq!(m.reasons[2], "segment Champions");
    }

    #[test]
    fn other_segments_and_cut_points_come_from_parameters() {
        let p: Params = params(
            r#"{"segment":"Potential Loyalist","cuts":{"recency_days":[5,90,180,365],"frequency":[2,3,5,10],"monetary":[100,500,1500,5000]}}"#,
        );
        let m = evaluate_segment::<RfmSegmentRule>(
            &twelve_purchases(),
            &context("2025-03-11T12:00:00Z", &p),
        )
        .unwrap();
        assert!(m.matched, "{m:?}");
        assert_eq!(m.reasons[0], "R4 F5 M5");
    }

    #[test]
    fn bad_parameters_are_errors() {
        let bad = regua_sdk::guest::parse_params::<Params>(r#"{"segment":"Whales"}"#).unwrap_err();
        assert!(bad.message().contains("segment"), "{bad}");
        let p: Params = params(
            r#"{"cuts":{"recency_days":[90,30,180,365],"frequency":[2,3,5,10],"monetary":[100,500,1500,5000]}}"#,
        );
        let err = evaluate_segment::<RfmSegmentRule>(
            &twelve_purchases(),
            &context("2025-03-11T12:00:00Z", &p),
        )
        .unwrap_err();
        assert!(err.message().contains("recency_days"), "{err}");
    }

    #[test]
    fn prospects_are_in_no_segment() {
        let p = Params::default();
        let m = evaluate_segment::<RfmSegmentRule>(
            &customer(r#"{"id":"c-2"}"#),
            &context("2025-03-11T12:00:00Z", &p),
        )
        .unwrap();
        assert!(!m.matched);
    }
}
