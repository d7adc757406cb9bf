//! The integration tests: one binary, so plugins are built once and shared.

mod analysis;
mod attacks;
mod bad_input;
mod cache;
mod campaigns;
mod cli;
mod columnar;
mod console;
mod decisions;
mod examples;
mod hostile;
mod http;
mod runtime;
mod sandbox;
mod spark;

use regua_host::pipeline::batch::{self, BatchOptions, Plugins, Summary};
use regua_host::pipeline::evaluator::{Chunking, Evaluator};
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

/// Runs a batch in-process through the evaluator, as `regua batch` does: the output text and
/// the summary.
pub fn run_batch_with(
    evals: &[Evaluation],
    input: &[u8],
    threads: usize,
    options: &BatchOptions,
) -> (String, Summary) {
    let evaluator = Evaluator::new(Some(threads)).unwrap();
    let plugins = Plugins::new(evals.to_vec());
    let plugins = evaluator
        .run_blocking(move |w| plugins.check(w))
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    let summary = batch::run(
        &evaluator,
        Arc::new(plugins),
        regua_host::pipeline::evaluator::Input::lines(input),
        &mut out,
        options,
        &|_, _| {},
    )
    .unwrap();
    (String::from_utf8(out).unwrap(), summary)
}

/// Runs a batch in-process and returns the output lines and the summary.
pub fn run_batch(
    evals: &[Evaluation],
    input: &str,
    threads: usize,
) -> (Vec<serde_json::Value>, Summary) {
    let options = BatchOptions {
        chunking: Chunking {
            lines: 7,
            ..Chunking::default()
        },
        ..BatchOptions::default()
    };
    let (text, summary) = run_batch_with(evals, input.as_bytes(), threads, &options);
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
