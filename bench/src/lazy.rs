//! The limit's records: only what the RFM rule reads, borrowing the text.

use std::borrow::Cow;

use regua_sdk::Timestamp;
use serde::Deserialize;

/// A customer, as far as RFM needs it.
#[derive(Deserialize)]
pub struct LazyCustomer<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub transactions: Vec<LazyTransaction<'a>>,
}

/// A transaction, as far as RFM needs it.
#[derive(Deserialize)]
pub struct LazyTransaction<'a> {
    pub at: Timestamp,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    pub amount: f64,
}
