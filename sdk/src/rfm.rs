//! RFM scoring, following the procedure of the R `rfm` package: R = days since the last
//! purchase, F = number of purchases, M = sum of purchase amounts, each scored 1–5 (recency
//! reversed: recent is 5), then matched against the segment table in order.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::view::Customer;

/// Score cut-points: four ascending bounds per dimension make five bins. A bin includes its lower
/// bound and excludes its upper.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cuts {
    /// Days since the last purchase; below the first bound scores 5, at or above the last 1.
    pub recency_days: [f64; 4],
    /// Number of purchases; below the first bound scores 1, at or above the last 5.
    pub frequency: [f64; 4],
    /// Sum of purchase amounts; below the first bound scores 1, at or above the last 5.
    pub monetary: [f64; 4],
}

impl Default for Cuts {
    /// The cut-points of the domain reference's worked example.
    fn default() -> Self {
        Cuts {
            recency_days: [30.0, 90.0, 180.0, 365.0],
            frequency: [2.0, 3.0, 5.0, 10.0],
            monetary: [100.0, 500.0, 1500.0, 5000.0],
        }
    }
}

impl Cuts {
    /// Checks that each dimension's bounds ascend strictly.
    pub fn validate(&self) -> Result<(), crate::Error> {
        for (name, b) in [
            ("recency_days", &self.recency_days),
            ("frequency", &self.frequency),
            ("monetary", &self.monetary),
        ] {
            if !b.windows(2).all(|w| w[0] < w[1]) {
                return Err(crate::Error::new(format!(
                    "cut-points `{name}` must ascend strictly, got {b:?}"
                )));
            }
        }
        Ok(())
    }
}

/// The bin (1–5) of `value`: one more than the number of bounds at or below it.
fn bin(value: f64, bounds: &[f64; 4]) -> u8 {
    1 + bounds.iter().filter(|b| **b <= value).count() as u8
}

/// A customer's RFM measures and scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rfm {
    /// Whole days since the last purchase.
    pub recency_days: i64,
    /// Number of purchases.
    pub frequency: u32,
    /// Sum of purchase amounts.
    pub monetary: f64,
    /// Recency score, 5 = most recent.
    pub r: u8,
    /// Frequency score.
    pub f: u8,
    /// Monetary score.
    pub m: u8,
}

impl Rfm {
    /// Scores the customer's purchases up to `now`; `None` for a customer who never purchased
    /// (a prospect, in no RFM segment).
    pub fn of(customer: &Customer, now: Timestamp, cuts: &Cuts) -> Option<Rfm> {
        Rfm::of_currency(customer, now, cuts, None)
    }

    /// [`Rfm::of`] over the purchases in `currency` only (and those without a currency, taken
    /// to be in the company's); `None` sums amounts across every currency.
    pub fn of_currency(
        customer: &Customer,
        now: Timestamp,
        cuts: &Cuts,
        currency: Option<&str>,
    ) -> Option<Rfm> {
        let mut last = None::<Timestamp>;
        let (mut frequency, mut monetary) = (0u32, 0.0f64);
        let counted = |t: &crate::TransactionView| currency.is_none_or(|c| t.in_currency(c));
        for t in customer.purchases(now).filter(counted) {
            frequency += 1;
            monetary += t.amount();
            last = Some(last.map_or(t.at(), |l| l.max(t.at())));
        }
        let recency_days = (now - last?).whole_days();
        Some(Rfm {
            recency_days,
            frequency,
            monetary,
            r: 6 - bin(recency_days as f64, &cuts.recency_days),
            f: bin(f64::from(frequency), &cuts.frequency),
            m: bin(monetary, &cuts.monetary),
        })
    }

    /// The segment these scores fall in.
    pub fn segment(&self) -> RfmSegment {
        RfmSegment::of(self.r, self.f, self.m)
    }
}

/// The RFM segments, in matching order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RfmSegment {
    /// R5 F5 M5.
    #[serde(rename = "Champions")]
    Champions,
    /// R3–5 F3–5 M2–5.
    #[serde(rename = "Potential Loyalist")]
    PotentialLoyalist,
    /// R2–4 F2–4 M2–4.
    #[serde(rename = "Loyal Customers")]
    LoyalCustomers,
    /// R3–4 F1–3 M3–5.
    #[serde(rename = "Promising")]
    Promising,
    /// R4–5 F1–3 M1–5.
    #[serde(rename = "New Customers")]
    NewCustomers,
    /// R1–2 F3–4 M4–5.
    #[serde(rename = "Can't Lose Them")]
    CantLoseThem,
    /// R1–2 F2–5 M4–5.
    #[serde(rename = "At Risk")]
    AtRisk,
    /// R1–3 F3–5 M3–5.
    #[serde(rename = "Need Attention")]
    NeedAttention,
    /// R2–3 F1–3 M1–4.
    #[serde(rename = "About To Sleep")]
    AboutToSleep,
    /// R1.
    #[serde(rename = "Lost")]
    Lost,
    /// Matched by no row.
    #[serde(rename = "Others")]
    Others,
}

type Range = (u8, u8);

const TABLE: [(RfmSegment, Range, Range, Range); 10] = [
    (RfmSegment::Champions, (5, 5), (5, 5), (5, 5)),
    (RfmSegment::PotentialLoyalist, (3, 5), (3, 5), (2, 5)),
    (RfmSegment::LoyalCustomers, (2, 4), (2, 4), (2, 4)),
    (RfmSegment::Promising, (3, 4), (1, 3), (3, 5)),
    (RfmSegment::NewCustomers, (4, 5), (1, 3), (1, 5)),
    (RfmSegment::CantLoseThem, (1, 2), (3, 4), (4, 5)),
    (RfmSegment::AtRisk, (1, 2), (2, 5), (4, 5)),
    (RfmSegment::NeedAttention, (1, 3), (3, 5), (3, 5)),
    (RfmSegment::AboutToSleep, (2, 3), (1, 3), (1, 4)),
    (RfmSegment::Lost, (1, 1), (1, 5), (1, 5)),
];

impl RfmSegment {
    /// The first row of the table that the scores fall in; `Others` if none.
    pub fn of(r: u8, f: u8, m: u8) -> RfmSegment {
        let within = |v: u8, (lo, hi): Range| lo <= v && v <= hi;
        TABLE
            .iter()
            .find(|(_, rr, fr, mr)| within(r, *rr) && within(f, *fr) && within(m, *mr))
            .map_or(RfmSegment::Others, |row| row.0)
    }

    /// The segment's name as written in the table.
    pub fn name(self) -> &'static str {
        match self {
            RfmSegment::Champions => "Champions",
            RfmSegment::PotentialLoyalist => "Potential Loyalist",
            RfmSegment::LoyalCustomers => "Loyal Customers",
            RfmSegment::Promising => "Promising",
            RfmSegment::NewCustomers => "New Customers",
            RfmSegment::CantLoseThem => "Can't Lose Them",
            RfmSegment::AtRisk => "At Risk",
            RfmSegment::NeedAttention => "Need Attention",
            RfmSegment::AboutToSleep => "About To Sleep",
            RfmSegment::Lost => "Lost",
            RfmSegment::Others => "Others",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Field, Record, Transaction};
    use crate::time::Duration;

    fn rfm(r: &Record, now: Timestamp) -> Option<Rfm> {
        crate::testing::with_view(r, &[Field::Transactions], "test", |c| {
            Rfm::of(c, now, &Cuts::default())
        })
    }

    #[test]
    fn worked_example_five_is_champions() {
        // Twelve purchases, the last 10 days ago, R$ 6,200 in all.
        let now = Timestamp::parse("2025-03-11T12:00:00Z").unwrap();
        let mut c = Record::default();
        for i in 0..12 {
            c.transactions.push(Transaction {
                id: format!("t{i}"),
                at: now - Duration::days(10 + i * 7),
                kind: "purchase".into(),
                amount: if i == 0 { 6200.0 - 11.0 * 100.0 } else { 100.0 },
                currency: "BRL".into(),
                business_unit: None,
                category: None,
            });
        }
        let rfm = rfm(&c, now).unwrap();
        assert_eq!(
            (rfm.recency_days, rfm.frequency, rfm.monetary),
            (10, 12, 6200.0)
        );
        assert_eq!((rfm.r, rfm.f, rfm.m), (5, 5, 5));
        assert_eq!(rfm.segment(), RfmSegment::Champions);
    }

    #[test]
    fn bins_include_the_lower_bound() {
        let cuts = Cuts::default();
        assert_eq!(bin(29.0, &cuts.recency_days), 1);
        assert_eq!(bin(30.0, &cuts.recency_days), 2);
        assert_eq!(bin(1.0, &cuts.frequency), 1);
        assert_eq!(bin(10.0, &cuts.frequency), 5);
        assert_eq!(bin(99.99, &cuts.monetary), 1);
    }

    #[test]
    fn the_table_is_matched_in_order() {
        assert_eq!(RfmSegment::of(5, 5, 5), RfmSegment::Champions);
        assert_eq!(RfmSegment::of(5, 5, 4), RfmSegment::PotentialLoyalist);
        assert_eq!(RfmSegment::of(2, 2, 2), RfmSegment::LoyalCustomers);
        assert_eq!(RfmSegment::of(1, 1, 1), RfmSegment::Lost);
        assert_eq!(RfmSegment::of(2, 5, 1), RfmSegment::Others);
        assert_eq!(RfmSegment::of(1, 3, 4), RfmSegment::CantLoseThem);
    }

    #[test]
    fn prospects_have_no_rfm() {
        let now = Timestamp::parse("2025-03-11T12:00:00Z").unwrap();
        assert!(rfm(&Record::default(), now).is_none());
    }
}
