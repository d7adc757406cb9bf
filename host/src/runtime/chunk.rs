//! A chunk of customers in the ABI's layout (docs/ABI.md §8.1), filled once with what a pass's
//! plugins read between them and handed to each plugin with only what it declares, whole or in
//! sub-ranges. It belongs with the ABI, below the pipeline that fills it and the worker that
//! hands it to plugins.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use regua_sdk::wire::{ChunkWriter, Row};
use regua_sdk::{Fields, Record};

/// Customers held once as the columns of a chunk for plugins that read `fields` between them,
/// ready to hand to any number of them, whole or in sub-ranges.
#[derive(Debug)]
pub struct EncodedBatch {
    writer: ChunkWriter,
    /// The chunk of every customer for each declaration asked for, written at its first use.
    whole: Mutex<Vec<(Fields, Arc<Vec<u8>>)>>,
    /// Buffers of chunks no longer used, kept for the next ([`EncodedBatch::clear`]).
    spare: Mutex<Vec<Vec<u8>>>,
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

    /// An empty batch for plugins that read, between them, only `fields`: the rest of each
    /// customer is not held.
    pub fn reading(fields: Fields) -> Self {
        EncodedBatch {
            writer: ChunkWriter::new(fields),
            whole: Mutex::new(Vec::new()),
            spare: Mutex::new(Vec::new()),
        }
    }

    /// No customers again, now for plugins that read `fields`, keeping the memory taken: a
    /// worker fills the same batch chunk after chunk ([`crate::Worker::batch`]), so its columns
    /// do not grow from nothing each time.
    pub fn clear(&mut self, fields: Fields) {
        self.writer.clear(fields);
        let spare = self.spare.get_mut().expect("not poisoned");
        for (_, chunk) in self.whole.get_mut().expect("not poisoned").drain(..) {
            if let Ok(mut chunk) = Arc::try_unwrap(chunk) {
                chunk.clear();
                spare.push(chunk);
            }
        }
    }

    /// Adds a customer.
    pub fn push(&mut self, customer: &Record) {
        self.whole.get_mut().expect("not poisoned").clear();
        self.writer.push(customer);
    }

    /// Adds the customer `id` whose parts `fill` gives, or nothing when it fails
    /// ([`ChunkWriter::push_with`]): how readers of columns add customers without records.
    pub fn push_with<E>(
        &mut self,
        id: &str,
        tz: Option<&str>,
        fill: impl FnOnce(&mut Row<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.whole.get_mut().expect("not poisoned").clear();
        self.writer.push_with(id, tz, fill)
    }

    /// Adds the customer of one line of NDJSON, read straight into the columns
    /// ([`regua_sdk::record::push_customer_json`]), or nothing and why it is not a record.
    pub fn push_json(&mut self, line: &[u8]) -> Result<(), String> {
        self.whole.get_mut().expect("not poisoned").clear();
        regua_sdk::record::push_customer_json(&mut self.writer, line)
    }

    /// What is held of each customer.
    pub fn fields(&self) -> Fields {
        self.writer.fields()
    }

    /// Number of customers.
    pub fn len(&self) -> usize {
        self.writer.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.writer.is_empty()
    }

    /// The id of customer `i`.
    pub fn id(&self, i: usize) -> &str {
        self.writer.id(i)
    }

    /// The chunk of the customers `range` for a plugin that reads `fields`: the whole batch's is
    /// written once per declaration and kept, a sub-range's (after a trap) is written for the
    /// call.
    pub(crate) fn chunk(&self, fields: Fields, range: Range<usize>) -> Arc<Vec<u8>> {
        let write = || {
            let mut out = self.spare.lock().expect("not poisoned").pop();
            let out = out.get_or_insert_with(Vec::new);
            self.writer.write(range.clone(), fields, out);
            Arc::new(std::mem::take(out))
        };
        if range != (0..self.len()) {
            return write();
        }
        let mut whole = self.whole.lock().expect("not poisoned");
        if let Some((_, chunk)) = whole.iter().find(|(f, _)| *f == fields) {
            return chunk.clone();
        }
        let chunk = write();
        whole.push((fields, chunk.clone()));
        chunk
    }
}
