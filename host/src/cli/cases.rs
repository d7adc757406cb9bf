//! `regua test`: fixture cases — an input beside the answer expected — run through a built
//! plugin or a campaigns folder, with a readable difference for each case that fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Args;
use regua_sdk::{Event, Message, Timestamp};
use serde::Deserialize;

use super::campaign::Setup;
use crate::authoring::build as wasm_build;
use crate::pipeline::batch::Plugins;
use crate::pipeline::campaign::{Plan, RunInputs};
use crate::pipeline::evaluator::Evaluator;
use crate::runtime::plugin::Plugin;
use crate::runtime::worker::{Evaluation, Inputs};

/// Run fixture cases: each file of DIR/tests/cases/*.json holds an input and the answer
/// expected, and `regua test` checks the built plugin (DIR is a plugin crate) or the campaigns
/// (DIR is a campaigns folder) against it.
///
/// A case is `{"about": "…", "customer": {…}, "now": "…", "params": {…}?, "message": {…}?,
/// "event": {…}?, "expected": {…}}`. `expected` holds only what matters: an object matches when
/// every field it names matches, a list when it has as many entries and each matches. For a
/// plugin the answer is what `regua eval` prints; for campaigns, a line of `regua campaign run`.
///
/// Example: regua test plugins/standard-rest examples/campaigns
#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// Plugin crates or campaigns folders, each with tests/cases/*.json.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    #[command(flatten)]
    setup: Setup,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    about: String,
    customer: Box<serde_json::value::RawValue>,
    now: Timestamp,
    #[serde(default)]
    params: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    event: Option<Event>,
    expected: serde_json::Value,
}

/// What a folder's cases run through.
enum Subject {
    Plugin(Arc<Plugin>),
    Campaigns(Box<Plan>),
}

impl TestArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let engine = self.setup.limits.engine()?;
        let (mut passed, mut failed) = (0, 0);
        for dir in &self.dirs {
            let subject = self.subject(&engine, dir)?;
            let cases_dir = dir.join("tests/cases");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&cases_dir)
                .with_context(|| format!("cannot read `{}`", cases_dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("no cases (*.json) in `{}`", cases_dir.display());
            }
            let evaluator = super::single_evaluator()?;
            for file in files {
                let shown = file.display();
                let outcome = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read: {e}"))
                    .and_then(|text| {
                        serde_json::from_str::<Case>(&text).map_err(|e| format!("not a case: {e}"))
                    })
                    .and_then(|case| {
                        let got = self.answer(&subject, &evaluator, &case)?;
                        match regua_sdk::testing::mismatch(&case.expected, &got) {
                            None => Ok(case.about),
                            Some(m) => Err(format!(
                                "{}\n    {m}\n    the answer: {}",
                                case.about,
                                serde_json::to_string(&got).unwrap_or_default()
                            )),
                        }
                    });
                match outcome {
                    Ok(about) => {
                        passed += 1;
                        println!("ok    {shown}: {about}");
                    }
                    Err(why) => {
                        failed += 1;
                        println!("FAIL  {shown}: {why}");
                    }
                }
            }
        }
        println!("{passed} passed, {failed} failed");
        if failed > 0 {
            bail!("{failed} cases failed");
        }
        Ok(())
    }

    fn subject(&self, engine: &crate::Engine, dir: &Path) -> anyhow::Result<Subject> {
        if wasm_build::is_plugin_crate(dir) {
            let name = wasm_build::package_name(dir).map_err(anyhow::Error::msg)?;
            let path = self.setup.plugins_dir.join(format!("{name}.wasm"));
            if !path.is_file() {
                bail!(
                    "`{}` is not built: run `regua build {}` first",
                    path.display(),
                    dir.display()
                );
            }
            return Ok(Subject::Plugin(Plugin::load(engine, &path)?));
        }
        let now = crate::wall_clock();
        let (campaigns, plugins) = super::campaign::load(&self.setup, dir, now)?;
        if campaigns.campaigns.is_empty() && campaigns.errors.is_empty() {
            bail!(
                "`{}` is neither a plugin crate nor a campaigns folder",
                dir.display()
            );
        }
        if let Some(e) = campaigns.errors.first() {
            bail!("{e}");
        }
        let inputs = RunInputs {
            now,
            default_tz: self.setup.tz.clone(),
            event: None,
        };
        let plan = super::campaign::plan(campaigns, plugins, inputs);
        Ok(Subject::Campaigns(Box::new(plan)))
    }

    fn answer(
        &self,
        subject: &Subject,
        evaluator: &Evaluator,
        case: &Case,
    ) -> Result<serde_json::Value, String> {
        let read = |reads| {
            regua_sdk::record::parse_customer_reading_at(
                case.customer.get(),
                Some("customer"),
                reads,
            )
        };
        let panicked = |e: crate::pipeline::evaluator::Panicked| e.to_string();
        match subject {
            Subject::Plugin(plugin) => {
                let inputs = Inputs {
                    now: case.now,
                    default_tz: self.setup.tz.clone(),
                    params: case
                        .params
                        .as_ref()
                        .map_or_else(|| "{}".to_owned(), |p| p.to_string()),
                    message: case.message.clone(),
                    event: case.event.clone(),
                };
                let eval = Evaluation::new(plugin.clone(), &inputs).map_err(|e| e.to_string())?;
                let plugins = Plugins::new(vec![eval]);
                let customer = read(plugins.reads())?;
                let (_, result) = evaluator
                    .run_blocking(move |w| plugins.evaluate_one(w, customer))
                    .map_err(panicked)?
                    .remove(0);
                let result = result.map_err(|e| e.to_string())?;
                Ok(crate::pipeline::output::result_value(plugin, &result))
            }
            Subject::Campaigns(plan) => {
                let mut plan = (**plan).clone();
                plan.inputs.now = case.now;
                plan.inputs.event = case.event.clone();
                let customer = read(plan.reads())?;
                let run = evaluator
                    .run_blocking(move |w| plan.run(w, vec![customer]))
                    .map_err(panicked)?
                    .remove(0);
                serde_json::to_value(run.answer()).map_err(|e| e.to_string())
            }
        }
    }
}
