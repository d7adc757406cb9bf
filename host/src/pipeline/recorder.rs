//! What the pipeline tells whoever records its decisions. The pipeline knows this interface
//! only; the decision log (`decisions/`, its files and line format) implements it, so the log
//! can depend on the pipeline's types without the pipeline depending on the log.

use std::collections::BTreeMap;

use regua_sdk::{Fields, Record, Timestamp};

use crate::pipeline::campaign::{CustomerRun, Plan};
use crate::pipeline::evaluator::LineRead;
use crate::runtime::plugin::Plugin;
use crate::runtime::worker::RecordResult;

/// What a recorder keeps of the record a decision was made on, taken as the record was read
/// (before a run moves its journeys).
#[derive(Clone, Debug)]
pub struct InputOf {
    /// A hash of the record as read.
    pub hash: String,
    /// The record fields the recorder keeps, by name.
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// Records the decisions of campaign runs and plugin batches.
pub trait Recorder: Send + Sync + std::fmt::Debug {
    /// The parts of a record the recorder keeps, read besides what the plugins read.
    fn reads(&self) -> Fields;
    /// Turns the lines of a chunk whose record the recorder cannot keep into error lines that
    /// say why, and drops their records.
    fn refuse_oversized(&self, customers: &mut Vec<Record>, reads: &mut [LineRead]);
    /// What it keeps of `record`, as read.
    fn input_of(&self, record: &Record) -> InputOf;
    /// Gives every decision of `run` an id and answers their lines and how many.
    fn campaign_lines(&self, plan: &Plan, run: &mut CustomerRun, input: InputOf) -> (Vec<u8>, u64);
    /// Appends a line per plugin answer for `customer` to `out`, each a decision made at
    /// `now`; answers their ids, in order.
    fn plugin_lines(
        &self,
        now: Timestamp,
        customer: &str,
        input: &InputOf,
        results: &mut dyn Iterator<Item = (&Plugin, &RecordResult)>,
        out: &mut Vec<u8>,
    ) -> Vec<String>;
    /// Writes lines made by the two above (`count` of them).
    fn record(&self, lines: Vec<u8>, count: u64);
}
