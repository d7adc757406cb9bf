//! A chunk of customers in the ABI's layout (docs/ABI.md §8.1), written once and handed to any
//! number of plugins, whole or in sub-ranges. It belongs with the ABI, below the pipeline that
//! fills it and the worker that hands it to plugins.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::OnceLock;

use regua_sdk::wire::ChunkWriter;
use regua_sdk::{Fields, Record};

/// Customers written once as the columns of a chunk for plugins that read the same fields,
/// ready to hand to any number of them, whole or in sub-ranges.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    writer: ChunkWriter,
    ids: Vec<String>,
    /// The chunk of every customer, written at its first use.
    whole: OnceLock<Vec<u8>>,
}

impl Default for EncodedBatch {
    fn default() -> Self {
        EncodedBatch::new()
    }
}

impl EncodedBatch {
    /// An empty batch for plugins that read every part.
    pub fn new() -> Self {
        EncodedBatch::reading(Fields::all())
    }

    /// An empty batch for plugins that read only `fields`: the parts and members they do not
    /// read are written empty.
    pub fn reading(fields: Fields) -> Self {
        EncodedBatch {
            writer: ChunkWriter::new(fields),
            ids: Vec::new(),
            whole: OnceLock::new(),
        }
    }

    /// Adds a customer.
    pub fn push(&mut self, customer: &Record) {
        self.whole = OnceLock::new();
        self.writer.push(customer);
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

    /// The chunk of the customers `range`: the whole batch's is written once and kept, a
    /// sub-range's (after a trap) is written for the call.
    pub(crate) fn chunk(&self, range: Range<usize>) -> Cow<'_, [u8]> {
        if range == (0..self.len()) {
            return Cow::Borrowed(self.whole.get_or_init(|| {
                let mut out = Vec::new();
                self.writer.write(range, &mut out);
                out
            }));
        }
        let mut out = Vec::new();
        self.writer.write(range, &mut out);
        Cow::Owned(out)
    }
}
