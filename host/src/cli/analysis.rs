//! `regua readout` and `regua report`: what the decision log answers afterwards.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use regua_sdk::{Duration, Timestamp};

use crate::decisions::readout::{self, Assignments, Conversion};
use crate::decisions::{report, svg};
use crate::pipeline::columnar::{self, FileKind};

/// A reader over `path`, or standard input for `-`.
pub(crate) fn reader(path: &Path, what: &str) -> anyhow::Result<Box<dyn BufRead>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::BufReader::new(std::io::stdin())));
    }
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open {what} `{}`", path.display()))?;
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, file)))
}

/// Writes `text` to `path`, saying so on standard error.
pub(crate) fn write_file(path: &Path, text: &str, what: &str) -> anyhow::Result<()> {
    std::fs::write(path, text)
        .with_context(|| format!("cannot write {what} `{}`", path.display()))?;
    eprintln!("regua: {what} written to {}", path.display());
    Ok(())
}

/// Read out an A/B test: the conversion of each group of a campaign (holdout, variants) from
/// the customers' later records, and the uplift of each variant over the holdout with its 95 %
/// confidence interval.
///
/// Who was in which group comes from the decision log (--log), from the answers of
/// `regua campaign run` (--answers, NDJSON or Parquet, with --at: the run's --now) or from its
/// send list (--send-list, NDJSON, CSV or Parquet; no holdout in it); a customer counts in the
/// group of the earliest decision that put them in the campaign's audience, whatever the rest
/// policy then did (intent to treat). A customer converted when the later record (--customers)
/// has the conversion event or transaction kind within --window after that decision, whatever
/// the form read: (decision, decision + window], never from a deferred message's send_at. Rates get Wilson intervals; the uplift, the difference of two proportions
/// with its unpooled 95 % interval and a two-sided z-test. Groups with fewer than 10 conversions
/// or 10 non-conversions are flagged as too small to tell. docs/DECISIONS.md has the method.
///
/// Example: regua readout --log decisions/ --customers later.ndjson
///   --conversion event:app_activated --window 7d --svg readout.svg
#[derive(Debug, Args)]
pub(crate) struct ReadoutArgs {
    /// The decision log's folder.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "answers",
        conflicts_with = "answers"
    )]
    log: Option<PathBuf>,
    /// The answers of `regua campaign run` (NDJSON or Parquet), or its send list (NDJSON, CSV
    /// or Parquet; a send list holds no holdout); - for standard input.
    #[arg(long, value_name = "FILE|-", visible_alias = "send-list")]
    answers: Option<PathBuf>,
    /// When the answers were made (the run's --now; a send list's rows carry their own).
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// The customers' later records: NDJSON, a Parquet or an Arrow IPC file (told by its first
    /// bytes).
    #[arg(long, value_name = "FILE|-")]
    customers: PathBuf,
    /// What counts as converting: `event:NAME` or `transaction:KIND`.
    #[arg(long, value_name = "KIND:NAME")]
    conversion: String,
    /// The attribution window after the decision (`7d`, `24h`).
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    window: String,
    /// Only this campaign (default: every campaign in the decisions).
    #[arg(long, value_name = "CODE")]
    campaign: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the readout as JSON to this file.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Draw each campaign's conversion by group, with its interval, as SVG: this file for one
    /// campaign, `<stem>-<CODE>.svg` beside it for several.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

impl ReadoutArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let conversion: Conversion = self
            .conversion
            .parse()
            .map_err(|e| anyhow::anyhow!("--conversion: {e}"))?;
        let window = Duration::parse(&self.window).map_err(|e| anyhow::anyhow!("--window: {e}"))?;
        if window.as_millis() <= 0 {
            bail!("--window: the attribution window must be longer than zero");
        }
        let at = self
            .at
            .as_deref()
            .map(|t| Timestamp::parse(t).map_err(|e| anyhow::anyhow!("--at: {e}")))
            .transpose()?;
        let only = self.campaign.as_deref();
        let assignments = match (&self.log, &self.answers) {
            (Some(dir), _) => {
                if !dir.is_dir() {
                    bail!("--log: `{}` is not a folder", dir.display());
                }
                Assignments::from_log(dir, only)
            }
            (None, Some(path)) => {
                let answers = crate::decisions::forms::open(path, "the answers")
                    .map_err(anyhow::Error::msg)?;
                Assignments::from_answers(answers, at, only, "--answers")
            }
            (None, None) => unreachable!("clap requires one"),
        }
        .map_err(anyhow::Error::msg)?;
        let kind = super::input_kind(&self.customers, "the customers")?;
        let r = if kind == FileKind::Lines {
            readout::read_out(
                &assignments,
                reader(&self.customers, "the customers")?,
                "--customers",
                &conversion,
                window,
            )
            .map_err(anyhow::Error::msg)?
        } else {
            // A Parquet or Arrow IPC file of later records, read row by row.
            let mut join = readout::Join::new(&assignments, &conversion, window);
            columnar::read_all(&self.customers, kind, |row, record| {
                let record = record.map_err(|e| match e.starts_with("row ") {
                    true => anyhow::anyhow!("--customers {e}"),
                    false => anyhow::anyhow!("--customers row {row}: {e}"),
                })?;
                join.add(&record)
                    .map_err(|e| anyhow::anyhow!("--customers row {row}: {e}"))
            })?;
            join.finish()
        };
        if r.campaigns.is_empty() {
            bail!(
                "no campaign decision to read out{} (of {} decisions read)",
                only.map(|c| format!(" for campaign `{c}`"))
                    .unwrap_or_default(),
                r.decisions
            );
        }
        let json = serde_json::to_value(&r)?;
        if let Some(path) = &self.output {
            write_file(path, &serde_json::to_string_pretty(&json)?, "the readout")?;
        }
        if let Some(path) = &self.svg {
            for c in &r.campaigns {
                let file = if r.campaigns.len() == 1 {
                    path.clone()
                } else {
                    beside(path, &c.campaign)
                };
                write_file(&file, &readout_svg(c, &r), "the readout's chart")?;
            }
        }
        if self.json {
            super::print_json(&json)
        } else {
            print!("{}", r.table());
            Ok(())
        }
    }
}

/// `<stem>-<tag>.svg` beside `path`.
fn beside(path: &Path, tag: &str) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("chart");
    path.with_file_name(format!("{stem}-{tag}.svg"))
}

fn readout_svg(c: &readout::CampaignReadout, r: &readout::Readout) -> String {
    svg::bars(
        &format!(
            "{}: conversion ({} within {}) by group, with 95 % intervals",
            c.campaign, r.conversion, r.window
        ),
        &c.groups
            .iter()
            .map(|g| format!("{} (n={})", g.group, g.customers))
            .collect::<Vec<_>>(),
        &[svg::Series {
            name: "conversion rate",
            colour: "#3b6ea5",
            values: c.groups.iter().map(|g| g.rate).collect(),
            intervals: Some(c.groups.iter().map(|g| (g.low, g.high)).collect()),
        }],
        |v| format!("{:.1}%", 100.0 * v),
    )
}

/// List what does nothing: campaigns past their end date, campaigns whose audience was empty in
/// every run of the last --days, campaigns the rest policy always denied, active campaigns that
/// made no decision, plugins no campaign uses and plugins the log never names.
///
/// The period is (now − days, now] of when the decisions were made (their `time`); a run is one
/// `now` a campaign decided for. Campaigns past their end date are those whose end is at or
/// before --now.
///
/// Example: regua report --log decisions/ --campaigns examples/campaigns --days 30
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The decision log's folder.
    #[arg(long, value_name = "DIR")]
    log: PathBuf,
    /// The campaigns folder.
    #[arg(long, value_name = "DIR")]
    campaigns: PathBuf,
    /// The plugins folder.
    #[arg(long, value_name = "DIR", default_value = super::DEFAULT_PLUGINS_DIR)]
    plugins_dir: PathBuf,
    /// The period's length, in days, up to --now.
    #[arg(long, value_name = "N", default_value_t = 30)]
    days: u32,
    /// The end of the period (RFC 3339); default: now.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

impl ReportArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        if !self.log.is_dir() {
            bail!("--log: `{}` is not a folder", self.log.display());
        }
        if self.days == 0 {
            bail!("--days: the period needs at least one day");
        }
        let now = match &self.now {
            Some(t) => Timestamp::parse(t).map_err(|e| anyhow::anyhow!("--now: {e}"))?,
            None => crate::wall_clock(),
        };
        let campaigns = crate::pipeline::campaign::Campaigns::load_dir(&self.campaigns)
            .map_err(|e| anyhow::anyhow!("--campaigns: {e}"))?;
        for e in &campaigns.errors {
            eprintln!("warning: {e}");
        }
        let r = report::report(&self.log, &campaigns, &self.plugins_dir, now, self.days)
            .map_err(anyhow::Error::msg)?;
        if self.json {
            super::print_json(&serde_json::to_value(&r)?)
        } else {
            print!("{}", r.table());
            Ok(())
        }
    }
}
