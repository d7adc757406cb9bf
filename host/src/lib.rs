//! The Régua host: loads rule plugins and evaluates them against customer records.
//!
//! A tour:
//! - [`Engine`] holds the sandbox configuration and [`Limits`]: a time budget per record (epoch
//!   interruption), a memory cap, an output cap and a stack limit, all on by default.
//! - [`Plugin::load`] reads a `.wasm`, checks its `regua-abi` section, imports and exports
//!   **before** anything runs, compiles it once and reads the metadata the plugin exports.
//! - [`pipeline::record::parse_customer`] reads a customer record once, naming the field at fault;
//!   [`EncodedBatch`] encodes records once for every plugin.
//! - [`Worker`] evaluates an [`Evaluation`] over a batch, each call on a fresh instance; a trap
//!   or panic becomes that record's error, naming plugin, version, customer and cause.
//! - [`pipeline::evaluator::Evaluator`] is the one evaluator: it cuts input into chunks, answers
//!   them on its threads and gives the answers back in input order, for the CLI directly and for
//!   the service through its async side. Its plans are plugins side by side
//!   ([`pipeline::batch::Plugins`]) or campaigns ([`pipeline::campaign::Plan`]); a single record
//!   is a batch of one.
//! - [`cli`] is the `regua` command line.
//!
//! The folders are the layers: [`runtime`] (the wasm sandbox), [`pipeline`] (evaluation over
//! records), [`automation`] (the journey runtime: inputs, timers, outbox, over a store),
//! [`service`] (HTTP, registry, reload, metrics), [`authoring`] (build, generate) and [`cli`].

pub mod authoring;
pub mod automation;
pub mod cli;
pub mod decisions;
pub mod pipeline;
pub mod runtime;
pub mod service;

pub use runtime::chunk::EncodedBatch;
pub use runtime::engine::{Engine, Limits};
pub use runtime::error::{CallError, LoadError};
pub use runtime::plugin::Plugin;
pub use runtime::worker::{Evaluation, Inputs, Outcome, RecordResult, Worker};

/// The system clock's instant, for the host's defaults (`--now` left out, the service's clock).
/// Plugins never read it: `now` is their input.
pub fn wall_clock() -> regua_sdk::Timestamp {
    regua_sdk::Timestamp::from_millis(jiff::Timestamp::now().as_millisecond())
}
