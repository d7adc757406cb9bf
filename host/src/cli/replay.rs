//! `regua replay` and `regua customers import`: the journey runtime on recorded time, and the
//! store's customers loaded in bulk (docs/RUNTIME.md).

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use regua_sdk::Timestamp;

use super::campaign::{Setup, create};
use crate::automation::replay::{self, Imported};
use crate::automation::{Core, Sqlite, Store};
use crate::pipeline::campaign::RunInputs;
use crate::runtime::worker::Worker;

/// Run the réguas over a period on recorded time: customers and a time-ordered file of inputs
/// (events, transactions, …) through the campaigns, each journey's timers firing at their due
/// instants. Writes the outbox, every message these réguas would have sent, in order (NDJSON);
/// one answer line per input line goes to --answers; a summary to standard error.
///
/// Example: regua replay --campaigns examples/reguas --customers customers.ndjson
///   --events events.ndjson --until 2025-04-01T00:00:00Z -o outbox.ndjson
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The campaigns folder.
    #[arg(long, value_name = "DIR")]
    campaigns: PathBuf,
    /// Customers as they stood at the start: NDJSON, Parquet or Arrow IPC.
    #[arg(long, value_name = "FILE")]
    customers: Option<PathBuf>,
    /// The inputs, one JSON object a line, in time order, each with its `at`; - for standard
    /// input.
    #[arg(long, value_name = "FILE|-")]
    events: PathBuf,
    /// Start the replay at this instant (RFC 3339): scheduled campaigns (`delivery.daily`,
    /// `delivery.once`) count their occurrences from it, and an input before it is refused;
    /// default: the first input's instant.
    #[arg(long, value_name = "RFC3339")]
    from: Option<String>,
    /// Run the timers up to this instant (RFC 3339); default: the last input's instant.
    #[arg(long, value_name = "RFC3339")]
    until: Option<String>,
    /// Keep the runtime's state in this folder (a store `regua serve --state` can open);
    /// default: a temporary one, removed at the end.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Where the outbox goes; - for standard output.
    #[arg(long, short, value_name = "FILE|-", default_value = "-")]
    output: PathBuf,
    /// Where each input's answer goes (applied, duplicate or refused, with why).
    #[arg(long, value_name = "FILE")]
    answers: Option<PathBuf>,
    /// Run the good campaigns even when some files fail their checks (default: refuse).
    #[arg(long)]
    keep_going: bool,
    /// No summary on standard error.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    setup: Setup,
    #[command(flatten)]
    decision_log: super::decisions::DecisionLogArgs,
}

/// The journey runtime's customers.
#[derive(Debug, Args)]
pub(crate) struct CustomersArgs {
    #[command(subcommand)]
    command: CustomersCommand,
}

#[derive(Debug, Subcommand)]
enum CustomersCommand {
    Import(ImportArgs),
}

/// Import customer records into a runtime's store (`regua serve --state`): a new customer as
/// given, a known one merged (profile attributes key by key, consents by their instant,
/// transactions by id, history added; journey states stay the runtime's). Lines that are not
/// valid records are listed on standard error with their line numbers, and fail the command.
///
/// Example: regua customers import --state state/ customers.ndjson
#[derive(Debug, Args)]
struct ImportArgs {
    /// The state folder, or the PostgreSQL URL, `regua serve --state` is given.
    #[arg(long, value_name = "DIR|URL")]
    state: String,
    /// Customers: NDJSON, Parquet or Arrow IPC; - for standard input (NDJSON).
    input: PathBuf,
    /// No progress and no summary on standard error.
    #[arg(long, short)]
    quiet: bool,
}

impl CustomersArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self.command {
            CustomersCommand::Import(a) => a.run(),
        }
    }
}

/// Imports a customers file, reporting its bad lines; fails if there are any.
fn import_file(store: &mut dyn Store, path: &Path, quiet: bool) -> anyhow::Result<Imported> {
    let (input, total) = super::open_input(path, regua_sdk::Fields::all())?;
    let evaluator =
        crate::pipeline::evaluator::Evaluator::new(None).context("cannot start the evaluator")?;
    let bar = super::progress_bar(quiet, total);
    let report = replay::import(&evaluator, store, input, &|lines| {
        bar.set_message(format!("{lines} customers"));
    });
    bar.finish_and_clear();
    let report = report?;
    for (line, id, e) in &report.errors {
        match id {
            Some(id) => eprintln!("error: {}: line {line} (`{id}`): {e}", path.display()),
            None => eprintln!("error: {}: line {line}: {e}", path.display()),
        }
    }
    if !quiet {
        eprintln!(
            "{} customers imported from {} lines",
            report.customers, report.lines
        );
    }
    if !report.errors.is_empty() {
        bail!(
            "{} lines of {} are not valid customer records (listed above); the others are \
             imported",
            report.errors.len(),
            path.display()
        );
    }
    Ok(report)
}

impl ImportArgs {
    fn run(self) -> anyhow::Result<()> {
        let mut store = crate::automation::open_store(&self.state)?;
        import_file(store.as_mut(), &self.input, self.quiet)?;
        Ok(())
    }
}

impl ReplayArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let instant = |t: &Option<String>, option: &str| {
            t.as_deref()
                .map(|t| Timestamp::parse(t).map_err(|e| anyhow::anyhow!("{option}: {e}")))
                .transpose()
        };
        let (from, until) = (
            instant(&self.from, "--from")?,
            instant(&self.until, "--until")?,
        );
        if let (Some(f), Some(u)) = (from, until)
            && u < f
        {
            bail!("--until: {u} is before --from ({f})");
        }
        let checked_at = until.unwrap_or(crate::wall_clock());
        let (campaigns, plugins) = super::campaign::load_to_run(
            &self.setup,
            &self.campaigns,
            checked_at,
            self.keep_going,
        )?;
        let plan = super::campaign::plan(
            campaigns,
            plugins,
            RunInputs {
                now: checked_at,
                default_tz: self.setup.tz.clone(),
                event: None,
            },
        );
        let log = self.decision_log.open();
        let core = Core::new(Arc::new(move || plan.clone())).recording(log.clone().map(|l| l as _));
        // The temporary folder lives until the end of the replay.
        let (dir, _temp) = match &self.state {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::tempdir().context("cannot create a temporary state folder")?;
                (t.path().to_owned(), Some(t))
            }
        };
        let mut store = Sqlite::open(&dir)?;
        store.checkpoint_in_background()?;
        if let Some(path) = &self.customers {
            import_file(&mut store, path, self.quiet)?;
        }
        let inputs: Box<dyn std::io::BufRead> = if self.events.as_os_str() == "-" {
            Box::new(BufReader::new(std::io::stdin()))
        } else {
            let file = File::open(&self.events)
                .with_context(|| format!("cannot open the inputs `{}`", self.events.display()))?;
            Box::new(BufReader::with_capacity(1 << 20, file))
        };
        let mut answers: Box<dyn Write> = match &self.answers {
            Some(p) => create(p, "the answers file")?,
            None => Box::new(std::io::sink()),
        };
        let bar = super::progress_bar(self.quiet, None);
        let report = replay::replay(
            &core,
            &mut store,
            &mut Worker::new(),
            inputs,
            from,
            until,
            &mut *answers,
            &|lines| bar.set_message(format!("{lines} inputs")),
        );
        bar.finish_and_clear();
        let report = report?;
        super::decisions::close(log.as_ref())?;
        let mut out = create(&self.output, "the outbox file")?;
        replay::write_outbox(&mut store, &mut *out).context("cannot write the outbox")?;
        if !self.quiet {
            eprintln!(
                "{} inputs: {} applied, {} duplicates, {} refused; {} timers fired, {} still \
                 waiting after {}; {} messages in the outbox",
                report.lines,
                report.applied,
                report.duplicates,
                report.refused,
                report.timers,
                report.timers_left,
                report.until.as_deref().unwrap_or("the start"),
                report.messages
            );
        }
        Ok(())
    }
}
