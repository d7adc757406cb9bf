//! Evaluating plugins over encoded batches: one call per batch on a warm instance, and, when a
//! plugin traps on a record, an error for that record alone while the rest of the batch is
//! evaluated again on a fresh instance.

use std::collections::HashMap;
use std::sync::Arc;

use regua_sdk::wire::{self, CallContext};
use regua_sdk::{Decision, Event, JourneyOutcome, Kind, Match, Message, Timestamp};
use serde::Serialize;

use crate::error::CallError;
use crate::instance::{Failure, Instance};
use crate::plugin::Plugin;
use crate::record::EncodedBatch;

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

/// One plugin with its inputs, encoded once and used for every batch.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The plugin.
    pub plugin: Arc<Plugin>,
    ctx: Vec<u8>,
}

impl Evaluation {
    /// Prepares `plugin` to be called with `inputs`; checks that a rest policy has its message.
    pub fn new(plugin: Arc<Plugin>, inputs: &Inputs) -> Result<Self, CallError> {
        if plugin.kind() == Kind::Rest && inputs.message.is_none() {
            return Err(CallError::Host {
                plugin: plugin.name().to_owned(),
                version: plugin.version.clone(),
                message: "a rest policy needs the proposed message (channel, category, …)".into(),
            });
        }
        let ctx = CallContext {
            now: inputs.now,
            default_tz: inputs.default_tz.clone(),
            params: inputs.params.clone(),
            message: inputs.message.clone(),
            event: inputs.event.clone(),
        };
        Ok(Evaluation {
            plugin,
            ctx: postcard::to_allocvec(&ctx).expect("encoding into a Vec cannot fail"),
        })
    }
}

/// Most warm instances a worker keeps; past it, the least recently used goes (a service that
/// hot-reloads plugins would otherwise keep every old version's instance).
const MAX_INSTANCES: usize = 64;

/// Evaluates plugins on one thread, keeping a warm instance per plugin version.
#[derive(Default)]
pub struct Worker {
    instances: HashMap<String, (Instance, u64)>,
    clock: u64,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("instances", &self.instances.len())
            .finish()
    }
}

fn decode(kind: Kind, bytes: &[u8]) -> Result<wire::CallOutput<Outcome>, postcard::Error> {
    fn map<O>(out: wire::CallOutput<O>, f: fn(O) -> Outcome) -> wire::CallOutput<Outcome> {
        out.map(|items| items.into_iter().map(|r| r.map(f)).collect())
    }
    Ok(match kind {
        Kind::Segment => map(wire::decode_output::<Match>(bytes)?, Outcome::Segment),
        Kind::Journey => map(
            wire::decode_output::<JourneyOutcome>(bytes)?,
            Outcome::Journey,
        ),
        Kind::Rest => map(wire::decode_output::<Decision>(bytes)?, Outcome::Rest),
    })
}

impl Worker {
    /// A worker with no instances yet.
    pub fn new() -> Self {
        Worker::default()
    }

    fn instance(&mut self, plugin: &Plugin) -> Result<&mut Instance, CallError> {
        self.clock += 1;
        if !self.instances.contains_key(&plugin.version) {
            let instance = Instance::new(plugin).map_err(|message| CallError::Host {
                plugin: plugin.name().to_owned(),
                version: plugin.version.clone(),
                message,
            })?;
            if self.instances.len() >= MAX_INSTANCES
                && let Some(oldest) = self
                    .instances
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(v, _)| v.clone())
            {
                self.instances.remove(&oldest);
            }
            self.instances
                .insert(plugin.version.clone(), (instance, self.clock));
        }
        let (instance, used) = self
            .instances
            .get_mut(&plugin.version)
            .expect("inserted above");
        *used = self.clock;
        Ok(instance)
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
        let mut header = Vec::new();
        wire::encode_count(0, &mut header);
        let outcome = self.instance(plugin)?.call(&eval.ctx, &[&header], 0);
        let raw = match outcome {
            Ok(raw) => raw,
            Err(f) => {
                if f.trapped {
                    self.instances.remove(&plugin.version);
                }
                return Err(failed(f.cause));
            }
        };
        match decode(plugin.kind(), &raw) {
            Ok(Ok(_)) => Ok(()),
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

    /// Evaluates `eval` over every customer of `batch`: one answer per customer, in order. The
    /// call as a whole fails only when the plugin refuses it (e.g. invalid parameters) or cannot
    /// be instantiated; a failure on a record is that record's error.
    pub fn evaluate(
        &mut self,
        eval: &Evaluation,
        batch: &EncodedBatch,
    ) -> Result<Vec<RecordResult>, CallError> {
        let plugin = &*eval.plugin;
        let n = batch.len();
        let _span = tracing::debug_span!(
            "plugin_call",
            plugin = plugin.name(),
            version = %plugin.version,
            records = n
        )
        .entered();
        let mut out: Vec<Option<RecordResult>> = vec![None; n];
        let mut todo = vec![(0usize, n)];
        while let Some((lo, hi)) = todo.pop() {
            if lo >= hi {
                continue;
            }
            let mut header = Vec::with_capacity(5);
            wire::encode_count((hi - lo) as u32, &mut header);
            let body = batch.slice(lo..hi);
            let instance = self.instance(plugin)?;
            let failed = |cause: &str, i: usize| {
                format!(
                    "plugin `{}` version {} failed on customer `{}`: {cause}",
                    plugin.name(),
                    plugin.version,
                    batch.id(i)
                )
            };
            match instance.call(&eval.ctx, &[&header, body], hi - lo) {
                Ok(raw) => match decode(plugin.kind(), &raw) {
                    Ok(Ok(items)) if items.len() == hi - lo => {
                        for (i, item) in items.into_iter().enumerate() {
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
                    if trapped {
                        // Its memory may be in any state: start the next call afresh.
                        self.instances.remove(&plugin.version);
                    }
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
                        _ => (lo..hi).for_each(|i| out[i] = Some(Err(failed(&cause, i)))),
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.expect("every customer was answered"))
            .collect())
    }
}
