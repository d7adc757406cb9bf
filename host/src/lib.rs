//! The Régua host: loads rule plugins and evaluates them against customer records.
//!
//! A tour:
//! - [`Engine`] holds the sandbox configuration and [`Limits`]: a time budget per record (epoch
//!   interruption), a memory cap, an output cap and a stack limit, all on by default.
//! - [`Plugin::load`] reads a `.wasm`, checks its `regua-abi` section, imports and exports
//!   **before** anything runs, compiles it once and reads the metadata the plugin exports.
//! - [`record::parse_customer`] reads a customer record once, naming the field at fault;
//!   [`EncodedBatch`] encodes records once for every plugin.
//! - [`Worker`] keeps a warm instance per plugin and evaluates an [`Evaluation`] over a batch;
//!   a trap or panic becomes that record's error, naming plugin, version, customer and cause.
//! - [`batch::run`] streams NDJSON through a pool of workers, one output line per input line.
//! - [`cli`] is the `regua` command line.

pub mod batch;
pub mod cli;
pub mod engine;
pub mod error;
pub mod evaluate;
pub mod http;
mod instance;
pub mod metrics;
pub mod output;
pub mod plugin;
pub mod pool;
pub mod record;
pub mod registry;
pub mod reload;
pub mod synth;
pub mod wasm_build;

pub use engine::{Engine, Limits};
pub use error::{CallError, LoadError};
pub use evaluate::{Evaluation, Inputs, Outcome, RecordResult, Worker};
pub use plugin::Plugin;
pub use record::EncodedBatch;
