//! The integration tests: one binary, so plugins are built once and shared.

mod bad_input;
mod campaigns;
mod cli;
mod examples;
mod hostile;
mod http;
mod sandbox;

use regua_host::pipeline::batch::{self, BatchOptions, Summary};
use regua_host::{Evaluation, Inputs, Plugin};
use regua_sdk::Timestamp;
use std::sync::Arc;

/// Inputs at the reference instant of the examples, with `params` and an optional message.
pub fn inputs(params: &str, message: Option<&str>) -> Inputs {
    Inputs {
        now: Timestamp::parse("2025-03-11T12:00:00Z").unwrap(),
        default_tz: "America/Sao_Paulo".into(),
        params: params.into(),
        message: message.map(|m| serde_json::from_str(m).unwrap()),
        event: None,
    }
}

/// Runs a batch in-process and returns the output lines and the summary.
pub fn run_batch(
    evals: &[Evaluation],
    input: &str,
    threads: usize,
) -> (Vec<serde_json::Value>, Summary) {
    let mut out = Vec::new();
    let options = BatchOptions {
        threads,
        chunk_lines: 7,
        ..BatchOptions::default()
    };
    let summary = batch::run(
        &mut evals.to_vec(),
        input.as_bytes(),
        &mut out,
        &options,
        &|_, _| {},
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, summary)
}

/// An evaluation of `plugin` with `params`.
pub fn eval(plugin: &Arc<Plugin>, params: &str) -> Evaluation {
    Evaluation::new(plugin.clone(), &inputs(params, None)).unwrap()
}
