//! `regua campaign`: check a campaigns folder, or run its campaigns over customer records.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use regua_sdk::{Event, Timestamp};

use super::{LimitArgs, StreamArgs};
use crate::Engine;
use crate::pipeline::campaign::{
    self, Campaigns, Plan, RunInputs, RunOptions, SendList, SendListFormat,
};
use crate::runtime::plugin::Plugin;
use crate::runtime::worker::Worker;

/// Check or run campaigns: audience → holdout → variant → journey or message → rest policy →
/// send list (docs/CAMPAIGNS.md).
#[derive(Debug, Args)]
pub(crate) struct CampaignArgs {
    #[command(subcommand)]
    command: CampaignCommand,
}

#[derive(Debug, Subcommand)]
enum CampaignCommand {
    Check(CheckArgs),
    // Boxed: its many options make it much larger than `check`.
    Run(Box<RunArgs>),
}

/// Where the built plugins are, the company zone and the sandbox limits: what `campaign` and
/// `test` share.
#[derive(Debug, Args, Clone)]
pub(crate) struct Setup {
    /// The plugins folder: the built plugins that campaign files and plugin crates name.
    #[arg(long, value_name = "DIR", default_value = super::DEFAULT_PLUGINS_DIR)]
    pub(crate) plugins_dir: PathBuf,
    /// The company's default IANA time zone, for customers without one.
    #[arg(long, value_name = "IANA", default_value = "America/Sao_Paulo")]
    pub(crate) tz: String,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

/// Check every campaign file of a folder: fields, codes, bucket ranges, plugins and their
/// parameters. Prints the campaigns in run order and every problem; fails if there is one.
///
/// Example: regua campaign check examples/campaigns
#[derive(Debug, Args)]
struct CheckArgs {
    /// The campaigns folder: one TOML file per campaign, and company.toml.
    dir: PathBuf,
    /// The instant to report active campaigns at (RFC 3339); default: now.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    #[command(flatten)]
    setup: Setup,
}

/// Run every active campaign over customer records (NDJSON), streaming one answer line per
/// input line, in input order: the customer's planned messages, every campaign's decision and
/// the journey states after the run, or an error line. The funnel of every campaign goes to
/// standard error at the end (and to --funnel as JSON).
///
/// Example: regua campaign run --campaigns examples/campaigns --input examples/customers.ndjson
///   --now 2025-03-11T12:00:00Z --send-list send.csv --send-list-format csv -o /dev/null
#[derive(Debug, Args)]
struct RunArgs {
    /// The campaigns folder.
    #[arg(long, value_name = "DIR")]
    campaigns: PathBuf,
    /// Customers: NDJSON (one JSON object per line), a Parquet or an Arrow IPC file; - for
    /// standard input (NDJSON only).
    #[arg(long, short, value_name = "FILE|-")]
    input: PathBuf,
    /// Where the answers go; - for standard output.
    #[arg(long, short, value_name = "FILE|-", default_value = "-")]
    output: PathBuf,
    /// How the answers are written: ndjson (a JSON object per input line) or parquet (a row per
    /// input line: line, id, error, and messages, decisions and journeys as typed lists; see
    /// docs/CAMPAIGNS.md).
    #[arg(long, value_enum, default_value_t = AnswersFormat::Ndjson)]
    format: AnswersFormat,
    /// The instant of the run (RFC 3339): campaigns, journeys and rest policies are judged at it.
    #[arg(long, value_name = "RFC3339")]
    now: String,
    /// Write just the planned messages here.
    #[arg(long, value_name = "FILE")]
    send_list: Option<PathBuf>,
    /// The send list's format.
    #[arg(long, value_enum, default_value_t = SendListFormat::Ndjson)]
    send_list_format: SendListFormat,
    /// Write the funnel report here as JSON.
    #[arg(long, value_name = "FILE")]
    funnel: Option<PathBuf>,
    /// A triggering event for the journeys (JSON, or @FILE).
    #[arg(long, value_name = "JSON|@FILE")]
    event: Option<String>,
    /// Run the good campaigns even when some files fail their checks (default: refuse).
    #[arg(long)]
    keep_going: bool,
    /// Decide every line even when its customer id was on an earlier line.
    #[arg(long)]
    allow_repeated_ids: bool,
    #[command(flatten)]
    stream: StreamArgs,
    #[command(flatten)]
    log: super::decisions::DecisionLogArgs,
    /// No progress bar and no funnel on standard error.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    setup: Setup,
}

impl CampaignArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self.command {
            CampaignCommand::Check(a) => a.run(),
            CampaignCommand::Run(a) => a.run(),
        }
    }
}

fn parse_now(now: Option<&str>) -> anyhow::Result<Timestamp> {
    match now {
        Some(t) => Timestamp::parse(t).map_err(|e| anyhow::anyhow!("--now: {e}")),
        None => Ok(crate::wall_clock()),
    }
}

/// The plugins a campaigns folder names, loaded from `dir`, or why each could not be.
type Loaded = HashMap<String, Result<Arc<Plugin>, String>>;

fn load_plugins(engine: &Engine, dir: &Path, campaigns: &Campaigns) -> Loaded {
    campaigns
        .plugin_names()
        .into_iter()
        .map(|name| {
            let path = dir.join(format!("{name}.wasm"));
            let plugin = if crate::runtime::plugin::check_name(&name).is_err() || !path.is_file() {
                Err(format!(
                    "no plugin `{name}`: `{}` does not exist (build plugins with `regua build`, \
                     or fix the name)",
                    path.display()
                ))
            } else {
                Plugin::load(engine, &path).map_err(|e| format!("plugin `{name}`: {e}"))
            };
            (name, plugin)
        })
        .collect()
}

/// Loads and checks a campaigns folder: the campaigns in run order and every problem.
pub(crate) fn load(
    setup: &Setup,
    dir: &Path,
    now: Timestamp,
) -> anyhow::Result<(Campaigns, Loaded)> {
    regua_sdk::Zone::get(&setup.tz).map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
    let engine = setup.limits.engine()?;
    let mut campaigns = Campaigns::load_dir(dir).map_err(anyhow::Error::msg)?;
    let plugins = load_plugins(&engine, &setup.plugins_dir, &campaigns);
    let lookup = |name: &str| {
        plugins
            .get(name)
            .cloned()
            .unwrap_or_else(|| Err(format!("no plugin `{name}`")))
    };
    campaigns.check_plugins(&lookup, &mut Worker::new(), now, &setup.tz);
    Ok((campaigns, plugins))
}

/// A plan over checked `campaigns` with the plugins that loaded.
pub(crate) fn plan(campaigns: Campaigns, plugins: Loaded, inputs: RunInputs) -> Plan {
    let resolved: HashMap<String, Arc<Plugin>> = plugins
        .into_iter()
        .filter_map(|(n, p)| p.ok().map(|p| (n, p)))
        .collect();
    Plan::new(
        Arc::new(campaigns),
        Arc::new(move |name: &str| resolved.get(name).cloned()),
        inputs,
    )
}

/// Loads a campaigns folder to run it: lists its problems, and refuses when the company's file
/// fails, when a campaign file fails (unless `keep_going`), or when no campaign is left.
pub(crate) fn load_to_run(
    setup: &Setup,
    dir: &Path,
    now: Timestamp,
    keep_going: bool,
) -> anyhow::Result<(Campaigns, Loaded)> {
    let (campaigns, plugins) = load(setup, dir, now)?;
    print_errors(&campaigns);
    if campaigns.company_failed {
        bail!(
            "company.toml has a problem (listed above): no campaign runs without the company's \
             rest policy and global holdout"
        );
    }
    if !campaigns.errors.is_empty() && !keep_going {
        bail!(
            "{} campaign files have problems (listed above): fix them, or pass --keep-going to \
             run the others",
            campaigns.errors.len()
        );
    }
    if campaigns.campaigns.is_empty() {
        bail!("no campaign to run in `{}`", dir.display());
    }
    Ok((campaigns, plugins))
}

fn print_errors(campaigns: &Campaigns) {
    for e in &campaigns.errors {
        eprintln!("error: {e}");
    }
}

impl CheckArgs {
    fn run(self) -> anyhow::Result<()> {
        let now = parse_now(self.now.as_deref())?;
        let (campaigns, _) = load(&self.setup, &self.dir, now)?;
        for c in &campaigns.campaigns {
            let state = if c.active_at(now) {
                "active"
            } else {
                "inactive"
            };
            println!(
                "{:<20} priority {:<4} {:<8} {}  ({}, requested by {})",
                c.def.code, c.def.priority, state, c.def.name, c.file, c.def.requester
            );
        }
        print_errors(&campaigns);
        if !campaigns.errors.is_empty() {
            bail!(
                "{} of the campaign files have problems (listed above)",
                campaigns.errors.len()
            );
        }
        if campaigns.campaigns.is_empty() {
            bail!("no campaign files (*.toml) in `{}`", self.dir.display());
        }
        eprintln!("{} campaigns, all good", campaigns.campaigns.len());
        Ok(())
    }
}

/// How `regua campaign run` writes its answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AnswersFormat {
    /// One JSON object per input line.
    Ndjson,
    /// Apache Parquet: a row per input line, typed.
    Parquet,
}

pub(crate) fn create(path: &Path, what: &str) -> anyhow::Result<Box<dyn Write>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout().lock()));
    }
    let file =
        File::create(path).with_context(|| format!("cannot create {what} `{}`", path.display()))?;
    Ok(Box::new(BufWriter::with_capacity(1 << 20, file)))
}

impl RunArgs {
    fn run(self) -> anyhow::Result<()> {
        let now = parse_now(Some(&self.now))?;
        let event: Option<Event> = self
            .event
            .as_deref()
            .map(|e| {
                let text = super::inline_or_file(e, "--event")?;
                regua_sdk::json::from_str(&text, None)
                    .map_err(|e| anyhow::anyhow!("invalid --event: {e}"))
            })
            .transpose()?;
        let (campaigns, plugins) = load_to_run(&self.setup, &self.campaigns, now, self.keep_going)?;
        let inputs = RunInputs {
            now,
            default_tz: self.setup.tz.clone(),
            event,
        };
        let log = self.log.open();
        let plan = plan(campaigns, plugins, inputs).logging(log.clone().map(|l| l as _));

        let (input, total) = super::open_input(&self.input, plan.reads())?;
        let output = create(&self.output, "output")?;
        let (mut parquet, mut plain) = match self.format {
            AnswersFormat::Parquet => (
                Some(
                    crate::pipeline::output::ParquetRunAnswers::new(output)
                        .context("cannot start the Parquet answers")?,
                ),
                None,
            ),
            AnswersFormat::Ndjson => (None, Some(output)),
        };
        let output: Box<dyn Write + '_> = match (&mut parquet, &mut plain) {
            (Some(p), _) => Box::new(p),
            (_, Some(o)) => Box::new(o),
            _ => unreachable!("one of the two outputs"),
        };
        let mut send_list = self
            .send_list
            .as_deref()
            .map(|p| {
                let w = create(p, "send list")?;
                SendList::new(w, self.send_list_format).context("cannot start the send list")
            })
            .transpose()?;
        let bar = super::progress_bar(self.quiet, total);
        let options = RunOptions {
            chunking: self.stream.chunking(),
            allow_repeated_ids: self.allow_repeated_ids,
        };
        let report = campaign::run(
            &self.stream.evaluator()?,
            Arc::new(plan),
            input,
            output,
            send_list.as_mut(),
            &options,
            &super::show_progress(&bar),
        );
        bar.finish_and_clear();
        super::decisions::close(log.as_ref())?;
        let written = match (parquet, &mut plain) {
            (Some(p), _) => p.finish(),
            (None, Some(o)) => o.flush(),
            (None, None) => Ok(()),
        };
        let report = report?;
        written.context("cannot write the answers")?;
        if let Some(path) = &self.funnel {
            let text = serde_json::to_string_pretty(&report).expect("a report is JSON");
            std::fs::write(path, text + "\n")
                .with_context(|| format!("cannot write the funnel to `{}`", path.display()))?;
        }
        if !self.quiet {
            eprint!("{}", report.describe());
        }
        Ok(())
    }
}
