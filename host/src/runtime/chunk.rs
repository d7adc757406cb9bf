//! A chunk of customers in the ABI's layout (docs/ABI.md §8.1), encoded once and handed to any
//! number of plugins, whole or in sub-ranges. It belongs with the ABI, below the pipeline that
//! fills it and the worker that hands it to plugins.

use std::ops::Range;

use regua_sdk::Record;
use regua_sdk::wire;

/// Customers encoded once for the ABI, ready to hand to any number of plugins, whole or in
/// sub-ranges.
#[derive(Debug, Default, Clone)]
pub struct EncodedBatch {
    bytes: Vec<u8>,
    spans: Vec<Range<usize>>,
    ids: Vec<String>,
}

impl EncodedBatch {
    /// An empty batch.
    pub fn new() -> Self {
        EncodedBatch::default()
    }

    /// Adds a customer.
    pub fn push(&mut self, customer: &Record) {
        self.push_reading(customer, regua_sdk::Fields::all());
    }

    /// Adds a customer for plugins that read only `fields`.
    pub fn push_reading(&mut self, customer: &Record, fields: regua_sdk::Fields) {
        let start = self.bytes.len();
        wire::encode_customer_reading(customer, fields, &mut self.bytes);
        self.spans.push(start..self.bytes.len());
        self.ids.push(customer.id.clone());
    }

    /// Number of customers.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of customer `i`.
    pub fn id(&self, i: usize) -> &str {
        &self.ids[i]
    }

    /// The encoded customers `range`, back to back (without the count header).
    pub(crate) fn slice(&self, range: Range<usize>) -> &[u8] {
        if range.is_empty() {
            return &[];
        }
        &self.bytes[self.spans[range.start].start..self.spans[range.end - 1].end]
    }
}
