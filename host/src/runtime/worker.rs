//! Evaluating plugins over encoded batches: one call per batch on a fresh instance, and, when a
//! plugin traps on a record, an error for that record alone while the rest of the batch is
//! evaluated again on a fresh instance. A trap the plugin did not place on a record (before its
//! first `regua.item`) is bisected: the batch is halved until the customers behind it are found.

use std::collections::HashMap;
use std::sync::Arc;

use regua_sdk::wire::{self, CallContext, CallInputs};
use regua_sdk::{Decision, Event, Fields, JourneyOutcome, Kind, Match, Message, Timestamp};
use serde::Serialize;

use crate::runtime::chunk::EncodedBatch;
use crate::runtime::error::CallError;
use crate::runtime::instance::{Failure, Instance};
use crate::runtime::plugin::Plugin;

/// A plugin's answer for one customer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// A segment's answer.
    Segment(Match),
    /// A journey rule's answer.
    Journey(JourneyOutcome),
    /// A rest policy's answer.
    Rest(Decision),
}

/// A plugin's answer for one customer, or why there is none. The error text names the plugin,
/// its version and the customer.
pub type RecordResult = Result<Outcome, String>;

/// What a call needs besides the customers.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The instant of the evaluation.
    pub now: Timestamp,
    /// The company's default IANA time zone.
    pub default_tz: String,
    /// Parameters, as JSON text (`{}` for the plugin's defaults).
    pub params: String,
    /// The proposed message, for rest policies.
    pub message: Option<Message>,
    /// The triggering event, for journey rules.
    pub event: Option<Event>,
}

/// A customer's own instant and triggering event.
type Own = (Timestamp, Option<Event>);

/// One plugin with its inputs, encoded once and used for every batch.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The plugin.
    pub plugin: Arc<Plugin>,
    /// The call context (docs/ABI.md §5) in two pieces around the count of its one run of
    /// inputs, which is the number of customers of each call.
    ctx: (Vec<u8>, Vec<u8>),
    /// The parameters as the context carries them (read from the caller's JSON).
    params: Vec<u8>,
    inputs: Inputs,
    reasons: bool,
    /// Each customer's own instant and triggering event, in the order of the batches it is
    /// given, when they are not all the inputs' (docs/ABI.md §5: runs of inputs).
    each: Option<Arc<[Own]>>,
    /// Why the plugin failed its check ([`Worker::check_all`]): every customer gets this error.
    failed_check: Option<CallError>,
}

impl Evaluation {
    /// Prepares `plugin` to be called with `inputs`. This is where every path checks that a
    /// rest policy has the message it judges.
    pub fn new(plugin: Arc<Plugin>, inputs: &Inputs) -> Result<Self, CallError> {
        if plugin.kind() == Kind::Rest && inputs.message.is_none() {
            return Err(CallError::NoMessage {
                plugin: plugin.name().to_owned(),
            });
        }
        // Parameters that are not JSON are refused here, as the plugin refuses ones it does
        // not accept: the check fails, and every customer gets the error.
        let (value, failed_check) = match regua_sdk::params::from_json(&inputs.params) {
            Ok(value) => (value, None),
            Err(message) => (
                regua_sdk::Value::Null,
                Some(CallError::Refused {
                    plugin: plugin.name().to_owned(),
                    version: plugin.version.clone(),
                    message,
                }),
            ),
        };
        let params = wire::params_bytes(&value);
        Ok(Evaluation {
            plugin,
            ctx: context(inputs, &params, true),
            params,
            failed_check,
            inputs: inputs.clone(),
            reasons: true,
            each: None,
        })
    }

    /// This evaluation with each customer of the batches it is given evaluated at its own
    /// instant with its own triggering event (`each[i]` for customer `i`), as the journey
    /// runtime decides many customers' inputs in one call. The check call is made with the
    /// inputs given to [`Evaluation::new`].
    pub fn for_each_customer(mut self, each: Vec<(Timestamp, Option<Event>)>) -> Self {
        self.each = Some(each.into());
        self
    }

    /// This evaluation with answers that carry no reasons, for outputs that show none (CSV or
    /// Parquet answers, send lists): the plugin leaves them out.
    pub fn without_reasons(mut self) -> Self {
        self.ctx = context(&self.inputs, &self.params, false);
        self.reasons = false;
        self
    }

    /// The call context for a call over the customers `range` of a batch.
    fn context_for(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        if let Some(each) = self.each.as_ref().filter(|_| !range.is_empty()) {
            let mut runs: Vec<CallInputs> = Vec::new();
            for (now, event) in &each[range] {
                match runs.last_mut() {
                    Some(run) if run.now == *now && run.event == *event => run.count += 1,
                    _ => runs.push(CallInputs {
                        count: 1,
                        now: *now,
                        message: self.inputs.message.clone(),
                        event: event.clone(),
                    }),
                }
            }
            let ctx = CallContext {
                default_tz: self.inputs.default_tz.clone(),
                params: self.params.clone(),
                reasons: self.reasons,
                inputs: runs,
            };
            return postcard::to_allocvec(&ctx).expect("encoding into a Vec cannot fail");
        }
        let count = u32::try_from(range.len()).expect("a call over fewer than 2^32 customers");
        let (head, tail) = &self.ctx;
        let mut ctx = head.clone();
        ctx = postcard::to_extend(&count, ctx).expect("encoding into a Vec cannot fail");
        ctx.extend_from_slice(tail);
        ctx
    }

    /// Why the plugin failed its check, if it did: every customer then gets this error.
    pub fn failed_check(&self) -> Option<&CallError> {
        self.failed_check.as_ref()
    }
}

/// Evaluates plugins on one thread. Every call runs on a fresh instance, so nothing a plugin
/// keeps in memory reaches another call (docs/ABI.md, "State").
#[derive(Default)]
pub struct Worker {
    /// Reuse one warm instance per plugin version: for the benchmark that measures what fresh
    /// instances cost, never in the product.
    warm: Option<HashMap<String, Instance>>,
    /// A batch given back after its chunk ([`Worker::recycle`]), filled again for the next.
    spare: Option<EncodedBatch>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("warm", &self.warm.as_ref().map(HashMap::len))
            .finish()
    }
}

/// The call context of docs/ABI.md §5 with one run of inputs, in two pieces: the bytes before
/// the run's count and the bytes after it (a postcard struct is its fields back to back).
fn context(inputs: &Inputs, params: &[u8], reasons: bool) -> (Vec<u8>, Vec<u8>) {
    let runs = 1u32;
    let head = (&inputs.default_tz, params, reasons, runs);
    let tail = (inputs.now, &inputs.message, &inputs.event);
    (
        postcard::to_allocvec(&head).expect("encoding into a Vec cannot fail"),
        postcard::to_allocvec(&tail).expect("encoding into a Vec cannot fail"),
    )
}

/// A call's answers, each with the bytes it took.
type Sized = Result<Vec<(Result<Outcome, String>, usize)>, String>;

fn decode(kind: Kind, bytes: &[u8]) -> Result<Sized, wire::AnswerError> {
    type Each<O> = Result<Vec<(Result<O, String>, usize)>, String>;
    fn map<O>(out: Each<O>, f: fn(O) -> Outcome) -> Sized {
        out.map(|items| items.into_iter().map(|(r, n)| (r.map(f), n)).collect())
    }
    Ok(match kind {
        Kind::Segment => map(wire::decode_sized::<Match>(bytes)?, Outcome::Segment),
        Kind::Journey => map(
            wire::decode_sized::<JourneyOutcome>(bytes)?,
            Outcome::Journey,
        ),
        Kind::Rest => map(wire::decode_sized::<Decision>(bytes)?, Outcome::Rest),
    })
}

impl Worker {
    /// A worker.
    pub fn new() -> Self {
        Worker::default()
    }

    /// A worker that keeps one warm instance per plugin and reuses it for every call, as hosts
    /// without per-call isolation do. For benchmarks only: state then crosses calls.
    #[doc(hidden)]
    pub fn reusing_instances_for_benchmarks() -> Self {
        Worker {
            warm: Some(HashMap::new()),
            spare: None,
        }
    }

    /// An empty batch for plugins that read `fields` between them: the one given back last
    /// ([`Worker::recycle`]), with the memory it took, or a new one.
    pub fn batch(&mut self, fields: Fields) -> EncodedBatch {
        match self.spare.take() {
            Some(mut batch) => {
                batch.clear(fields);
                batch
            }
            None => EncodedBatch::reading(fields),
        }
    }

    /// Gives a batch back for the next [`Worker::batch`].
    pub fn recycle(&mut self, batch: EncodedBatch) {
        self.spare = Some(batch);
    }

    /// One call of `plugin` over `records` customers on an instance of its own (or the warm
    /// one); a trapped instance is never used again.
    fn call(
        &mut self,
        plugin: &Plugin,
        ctx: &[u8],
        batch: &[&[u8]],
        records: usize,
    ) -> Result<Vec<u8>, Failure> {
        let Some(warm) = &mut self.warm else {
            return plugin.instance_for_call(records)?.call(ctx, batch, records);
        };
        let mut instance = match warm.remove(&plugin.version) {
            Some(mut instance) => {
                instance.begin(records);
                instance
            }
            None => plugin.instance_for_call(records)?,
        };
        let result = instance.call(ctx, batch, records);
        if !matches!(&result, Err(f) if f.trapped) {
            warm.insert(plugin.version.clone(), instance);
        }
        result
    }

    /// Checks the inputs with a call over no customers, so bad parameters are reported once,
    /// before any record is read.
    pub fn check(&mut self, eval: &Evaluation) -> Result<(), CallError> {
        let plugin = &*eval.plugin;
        let failed = |message: String| CallError::Failed {
            plugin: plugin.name().to_owned(),
            version: plugin.version.clone(),
            message,
        };
        // A check already failed (parameters that are not JSON) stays failed.
        if let Some(e) = &eval.failed_check {
            return Err(e.clone());
        }
        let fields = plugin.fields();
        let empty = EncodedBatch::reading(fields).chunk(fields, 0..0);
        let raw = self
            .call(plugin, &eval.context_for(0..0), &[&empty], 0)
            .map_err(|f| failed(f.cause))?;
        match decode(plugin.kind(), &raw) {
            Ok(Ok(items)) if items.is_empty() => Ok(()),
            Ok(Ok(items)) => Err(failed(format!(
                "returned {} answers for a call over no customers",
                items.len()
            ))),
            Ok(Err(message)) => Err(CallError::Refused {
                plugin: plugin.name().to_owned(),
                version: plugin.version.clone(),
                message,
            }),
            Err(e) => Err(failed(format!(
                "returned an answer that does not decode ({e})"
            ))),
        }
    }

    /// Checks every evaluation of a batch with [`Worker::check`]. One that fails keeps the
    /// error, and [`Worker::evaluate`] answers it for every customer, so a bad plugin fails alone
    /// and the others answer every line. Fails only when every evaluation fails its check, since
    /// then no line could carry an answer.
    pub fn check_all(&mut self, evals: &mut [Evaluation]) -> Result<(), CallError> {
        for eval in evals.iter_mut() {
            eval.failed_check = self.check(eval).err();
        }
        match evals.iter().all(|e| e.failed_check.is_some()) {
            true if !evals.is_empty() => Err(evals[0].failed_check.clone().expect("checked")),
            _ => Ok(()),
        }
    }

    /// Evaluates `eval` over every customer of `batch`: one answer per customer, in order. The
    /// call as a whole fails only when the plugin refuses it (e.g. invalid parameters) or cannot
    /// be instantiated; a failure on a record is that record's error.
    pub fn evaluate(
        &mut self,
        eval: &Evaluation,
        batch: &EncodedBatch,
    ) -> Result<Vec<RecordResult>, CallError> {
        if let Some(e) = &eval.failed_check {
            return Err(e.clone());
        }
        let plugin = &*eval.plugin;
        let (n, fields) = (batch.len(), plugin.fields());
        let _span = tracing::debug_span!(
            "plugin_call",
            plugin = plugin.name(),
            version = %plugin.version,
            records = n
        )
        .entered();
        let started = std::time::Instant::now();
        let mut out: Vec<Option<RecordResult>> = vec![None; n];
        let mut todo = vec![(0usize, n)];
        // Re-runs to find the customers behind a trap the plugin did not place (it trapped
        // before calling `regua.item`): enough to bisect down to a few customers, bounded so a
        // plugin that traps on everything costs a few calls, not one per customer.
        let mut splits = 4 * (usize::BITS - n.leading_zeros()) as usize + 4;
        while let Some((lo, hi)) = todo.pop() {
            if lo >= hi {
                continue;
            }
            let chunk = batch.chunk(fields, lo..hi);
            let failed = |cause: &str, i: usize| {
                format!(
                    "plugin `{}` version {} failed on customer `{}`: {cause}",
                    plugin.name(),
                    plugin.version,
                    batch.id(i)
                )
            };
            match self.call(plugin, &eval.context_for(lo..hi), &[&chunk], hi - lo) {
                Ok(raw) => match decode(plugin.kind(), &raw) {
                    Ok(Ok(items)) if items.len() == hi - lo => {
                        // Each customer's answer within the cap, whoever shares the call.
                        let cap = plugin.engine.limits.output_bytes_per_record;
                        for (i, (item, size)) in items.into_iter().enumerate() {
                            let item = match item {
                                _ if size > cap => Err(format!(
                                    "returned {size} bytes for this customer, over the output \
                                     cap of {cap} bytes per customer"
                                )),
                                item => item,
                            };
                            out[lo + i] = Some(item.map_err(|e| failed(&e, lo + i)));
                        }
                    }
                    Ok(Ok(items)) => {
                        let cause =
                            format!("returned {} answers for {} customers", items.len(), hi - lo);
                        (lo..hi).for_each(|i| out[i] = Some(Err(failed(&cause, i))));
                    }
                    Ok(Err(message)) => {
                        return Err(CallError::Refused {
                            plugin: plugin.name().to_owned(),
                            version: plugin.version.clone(),
                            message,
                        });
                    }
                    Err(e) => {
                        let cause = format!("returned an answer that does not decode ({e})");
                        (lo..hi).for_each(|i| out[i] = Some(Err(failed(&cause, i))));
                    }
                },
                Err(Failure {
                    index,
                    cause,
                    trapped,
                }) => {
                    match index.map(|i| lo + i as usize) {
                        Some(at) if at < hi => {
                            out[at] = Some(Err(failed(&cause, at)));
                            todo.push((at + 1, hi));
                            todo.push((lo, at));
                        }
                        _ if !trapped && hi - lo > 1 => {
                            // Output over the cap: halve until the records at fault are found.
                            let mid = lo + (hi - lo) / 2;
                            todo.push((mid, hi));
                            todo.push((lo, mid));
                        }
                        // A trap before the first `regua.item`: halve, so the customers of
                        // the half that does not trap get their answers.
                        _ if hi - lo > 1 && splits > 0 => {
                            splits -= 1;
                            let mid = lo + (hi - lo) / 2;
                            todo.push((mid, hi));
                            todo.push((lo, mid));
                        }
                        _ => (lo..hi).for_each(|i| out[i] = Some(Err(failed(&cause, i)))),
                    }
                }
            }
        }
        plugin.time.add(n, started.elapsed());
        Ok(out
            .into_iter()
            .map(|r| r.expect("every customer was answered"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The context written in two pieces around the run's count is the postcard
    /// `CallContext` of docs/ABI.md §5, with or without reasons, with or without a message and
    /// an event.
    #[test]
    fn the_context_in_pieces_is_the_documented_call_context() {
        let message: Message =
            serde_json::from_str(r#"{"channel":"sms","category":"marketing","tags":["x"]}"#)
                .unwrap();
        let event: Event =
            serde_json::from_str(r#"{"name":"e","at":"2025-01-01T00:00:00Z","props":{"a":1}}"#)
                .unwrap();
        for (message, event) in [(None, None), (Some(message), Some(event))] {
            let inputs = Inputs {
                now: Timestamp::from_millis(1_234_567),
                default_tz: "America/Sao_Paulo".into(),
                params: r#"{"days":30}"#.into(),
                message: message.clone(),
                event: event.clone(),
            };
            let params = wire::params_bytes(&regua_sdk::params::from_json(&inputs.params).unwrap());
            // docs/ABI.md §5: `{"days":30}` as a `Value`: Object of one, "days", Int 30 as a
            // zigzag varint (the context writes its length, 9, before it).
            assert_eq!(params, b"\x06\x01\x04days\x02\x3c");
            for reasons in [true, false] {
                let (head, tail) = context(&inputs, &params, reasons);
                for count in [0u32, 1, 127, 128, 300_000] {
                    let mut pieces = head.clone();
                    pieces = postcard::to_extend(&count, pieces).unwrap();
                    pieces.extend_from_slice(&tail);
                    let whole = CallContext {
                        default_tz: inputs.default_tz.clone(),
                        params: params.clone(),
                        reasons,
                        inputs: vec![CallInputs {
                            count,
                            now: inputs.now,
                            message: message.clone(),
                            event: event.clone(),
                        }],
                    };
                    assert_eq!(pieces, postcard::to_allocvec(&whole).unwrap());
                }
            }
        }
    }
}
