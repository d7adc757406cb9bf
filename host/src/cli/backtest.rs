//! `regua backtest`.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use regua_sdk::{Kind, Timestamp};

use super::analysis::{reader, write_file};
use super::campaign::Setup;
use crate::decisions::backtest::{self, Replay};
use crate::decisions::svg;
use crate::pipeline::columnar::{self, FileKind};
use crate::{Plugin, Worker};

/// Replay a rest policy over the history in the customers' records: how many of the messages
/// actually sent would it have denied or deferred, by rule, channel, campaign and step, with
/// example customers.
///
/// The period [--from, --to) is cut into steps (--step day: a run a day at --from's time of
/// day). For each step starting at t, every message sent during [t, t + step) is proposed to the
/// policy again with now = t and the customer's contacts cut to those sent before t; within a
/// step, the messages the policy lets through count toward the next ones, as in a campaign run.
/// The policy is a rest plugin (--policy), or what a campaigns folder runs under (--campaigns):
/// each message goes to its campaign's own rest policy, or else to the company's; with
/// --campaign CODE, only that campaign's messages are proposed again. One record at a time:
/// memory stays bounded.
///
/// Example: regua backtest --customers history.ndjson --campaigns examples/campaigns
///   --from 2025-02-01T03:00:00Z --to 2025-03-01T03:00:00Z --svg blocked.svg
#[derive(Debug, Args)]
pub(crate) struct BacktestArgs {
    /// The customers, with their contact history: NDJSON, a Parquet or an Arrow IPC file (told
    /// by its first bytes); - for standard input (NDJSON).
    #[arg(long, value_name = "FILE|-")]
    customers: PathBuf,
    /// The rest policy: a .wasm, or a name in --plugins-dir.
    #[arg(
        long,
        value_name = "PLUGIN",
        required_unless_present = "campaigns",
        conflicts_with = "campaigns"
    )]
    policy: Option<String>,
    /// The policy's parameters (JSON, or @FILE), with --policy.
    #[arg(long, value_name = "JSON|@FILE", requires = "policy")]
    params: Option<String>,
    /// A campaigns folder: replay the rest policy its campaigns run under.
    #[arg(long, value_name = "DIR")]
    campaigns: Option<PathBuf>,
    /// With --campaigns: this campaign's policy, proposing only its messages again.
    #[arg(long, value_name = "CODE", requires = "campaigns")]
    campaign: Option<String>,
    /// The period's start (RFC 3339, inclusive).
    #[arg(long, value_name = "RFC3339")]
    from: String,
    /// The period's end (RFC 3339, exclusive).
    #[arg(long, value_name = "RFC3339")]
    to: String,
    /// The time between two runs: `day`, `hour`, or a duration (`6h`).
    #[arg(long, value_name = "STEP", default_value = "day")]
    step: String,
    /// Example customers shown per rule.
    #[arg(long, value_name = "N", default_value_t = 3)]
    examples: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Draw the messages denied and deferred by step as SVG.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// No progress bar on standard error.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    setup: Setup,
}

/// `--params`: JSON text, or `@FILE`.
fn params_text(p: Option<&str>) -> anyhow::Result<String> {
    let text = match p {
        None => return Ok("{}".into()),
        Some(p) => match p.strip_prefix('@') {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("--params: cannot read `{file}`"))?,
            None => p.to_owned(),
        },
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| anyhow::anyhow!("--params: not JSON: {e}"))?;
    Ok(text)
}

impl BacktestArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let time =
            |t: &str, flag: &str| Timestamp::parse(t).map_err(|e| anyhow::anyhow!("{flag}: {e}"));
        let (from, to) = (time(&self.from, "--from")?, time(&self.to, "--to")?);
        let step = backtest::parse_step(&self.step).map_err(|e| anyhow::anyhow!("--step: {e}"))?;
        backtest::check_period(from, to, step).map_err(anyhow::Error::msg)?;
        regua_sdk::Zone::get(&self.setup.tz).map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
        let engine = self.setup.limits.engine()?;
        let mut own: std::collections::BTreeMap<String, (String, String)> = Default::default();
        let (name, params) = match (&self.policy, &self.campaigns) {
            (Some(p), _) => (p.clone(), params_text(self.params.as_deref())?),
            (None, Some(dir)) => {
                let campaigns = crate::pipeline::campaign::Campaigns::load_dir(dir)
                    .map_err(|e| anyhow::anyhow!("--campaigns: {e}"))?;
                if campaigns.company_failed {
                    bail!(
                        "--campaigns: company.toml does not load: {:?}",
                        campaigns.errors
                    );
                }
                let r = backtest::campaign_policy(&campaigns, self.campaign.as_deref())
                    .map_err(|e| anyhow::anyhow!("--campaigns: {e}"))?;
                own = backtest::own_policies(&campaigns, self.campaign.as_deref());
                (r.plugin.clone(), r.params.to_string())
            }
            (None, None) => unreachable!("clap requires one"),
        };
        let load = |name: &str| -> anyhow::Result<std::sync::Arc<Plugin>> {
            let path = super::resolve_plugin(&self.setup.plugins_dir, name)?;
            let policy = Plugin::load(&engine, &path)
                .with_context(|| format!("cannot load the policy `{}`", path.display()))?;
            if policy.kind() != Kind::Rest {
                bail!(
                    "`{name}` is a {} plugin: a backtest replays a rest policy",
                    policy.kind()
                );
            }
            Ok(policy)
        };
        let policy = load(&name)?;
        let own_policies = own
            .into_iter()
            .map(|(code, (plugin, params))| Ok((code, (load(&plugin)?, params))))
            .collect::<anyhow::Result<_>>()?;
        let replay = Replay {
            policy,
            params,
            default_tz: self.setup.tz.clone(),
            from,
            to,
            step,
            campaign: self.campaign.clone(),
            own_policies,
            examples: self.examples,
        };
        let mut report = replay.report();
        let mut worker = Worker::new();
        // The policy's parameters are checked once, before any record is read.
        let check = crate::runtime::worker::Evaluation::new(
            replay.policy.clone(),
            &crate::runtime::worker::Inputs {
                now: from,
                default_tz: replay.default_tz.clone(),
                params: replay.params.clone(),
                message: Some(regua_sdk::Message {
                    channel: regua_sdk::Channel::Email,
                    campaign: None,
                    category: regua_sdk::Category::Marketing,
                    tags: vec![],
                    template: None,
                }),
                event: None,
            },
        )?;
        worker
            .check(&check)
            .with_context(|| format!("the policy `{name}` refuses its parameters"))?;
        let total = std::fs::metadata(&self.customers).ok().map(|m| m.len());
        let stdin = self.customers.as_os_str() == "-";
        let kind = super::input_kind(&self.customers, "the customers")?;
        if kind != FileKind::Lines {
            // A Parquet or Arrow IPC file, row by row: a row that is not a record is counted
            // and named as a bad line is.
            columnar::read_all(&self.customers, kind, |row, record| {
                match record {
                    Ok(record) => replay.customer(&mut worker, &mut report, row, record),
                    Err(e) => replay.bad_line(&mut report, row, e),
                }
                Ok(())
            })?;
            return self.answer(&report);
        }
        let bar = super::progress_bar(self.quiet, total.filter(|_| !stdin));
        let show = super::show_progress(&bar);
        let mut lines = reader(&self.customers, "the customers")?;
        let (mut n, mut bytes, mut line) = (0u64, 0u64, Vec::new());
        loop {
            line.clear();
            let read = lines.read_until(b'\n', &mut line).with_context(|| {
                format!(
                    "cannot read `{}` (line {})",
                    self.customers.display(),
                    n + 1
                )
            })?;
            if read == 0 {
                break;
            }
            (n, bytes) = (n + 1, bytes + read as u64);
            match std::str::from_utf8(&line) {
                Ok(text) => {
                    let text = text.trim_end_matches(['\n', '\r']);
                    replay.line(&mut worker, &mut report, n, text);
                }
                Err(e) => {
                    let error = format!("not UTF-8 (byte {})", e.valid_up_to());
                    replay.bad_line(&mut report, n, error);
                }
            }
            if n % 1024 == 0 {
                show(n, bytes);
            }
        }
        bar.finish_and_clear();
        self.answer(&report)
    }

    /// Prints (and writes) the report.
    fn answer(&self, report: &backtest::Report) -> anyhow::Result<()> {
        let json = serde_json::to_value(report)?;
        if let Some(path) = &self.output {
            write_file(path, &serde_json::to_string_pretty(&json)?, "the backtest")?;
        }
        if let Some(path) = &self.svg {
            write_file(path, &chart(report), "the backtest's chart")?;
        }
        if self.json {
            super::print_json(&json)
        } else {
            print!("{}", report.table());
            Ok(())
        }
    }
}

/// The messages denied and deferred by step.
pub(crate) fn chart(r: &backtest::Report) -> String {
    let labels: Vec<String> = r
        .by_step
        .iter()
        .map(|s| s.start.get(..16).unwrap_or(&s.start).replace('T', " "))
        .collect();
    svg::bars(
        &format!(
            "{}: messages sent that it would have denied or deferred, by step",
            r.policy
        ),
        &labels,
        &[
            svg::Series {
                name: "denied",
                colour: "#c0392b",
                values: r.by_step.iter().map(|s| s.counts.denied as f64).collect(),
                intervals: None,
            },
            svg::Series {
                name: "deferred",
                colour: "#e6a23c",
                values: r.by_step.iter().map(|s| s.counts.deferred as f64).collect(),
                intervals: None,
            },
        ],
        |v| format!("{v:.0}"),
    )
}
