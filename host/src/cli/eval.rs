use std::io::Read;

use anyhow::{Context as _, bail};
use clap::Args;

use super::{InputArgs, LimitArgs};
use crate::pipeline::batch::Plugins;
use crate::runtime::worker::Evaluation;

/// Evaluate one plugin for one customer and print the result as JSON.
///
/// Example: regua eval lapsed --customer examples/customer.json --now 2025-03-11T12:00:00Z
#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    /// The plugin: a path to a .wasm, or a name in --plugins-dir.
    plugin: String,
    /// The customer record (JSON), or - for standard input.
    #[arg(long, value_name = "FILE|-")]
    customer: String,
    #[command(flatten)]
    inputs: InputArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

impl EvalArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let text = if self.customer == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the customer from standard input")?;
            s
        } else {
            std::fs::read_to_string(&self.customer)
                .with_context(|| format!("cannot read customer file `{}`", self.customer))?
        };
        let engine = self.limits.engine()?;
        let plugin = self.inputs.load(&engine, &self.plugin)?;
        let eval = Evaluation::new(plugin.clone(), &self.inputs.inputs_for(&plugin, false)?)?;
        let plugins = Plugins::new(vec![eval]);
        // Read for what the plugin reads, as a batch reads a line.
        let customer =
            regua_sdk::record::parse_customer_reading_at(text.trim(), None, plugins.reads())
                .map_err(|e| anyhow::anyhow!("customer `{}`: {e}", self.customer))?;
        let evaluator = super::single_evaluator()?;
        let (_, result) = evaluator
            .run_blocking(move |w| plugins.evaluate_one(w, customer))?
            .remove(0);
        let result = result?;
        let json = crate::pipeline::output::result_value(&plugin, &result);
        super::print_json(&json)?;
        if let Err(e) = result {
            bail!("{e}");
        }
        Ok(())
    }
}
