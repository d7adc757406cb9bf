use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::decisions::{DecisionLog, Sink, SinkConfig};

/// Where decisions are logged: one NDJSON line per decision (customer × campaign, or one
/// plugin's answer to a call outside campaigns), with its id, the time, `now`, campaign code and
/// requester, plugin versions, outcome and reasons, and a hash of the input record. No personal
/// data unless --decision-log-field names it.
#[derive(Debug, Args)]
pub(crate) struct DecisionLogArgs {
    /// Append every decision to NDJSON files in this folder (created if missing).
    #[arg(long, value_name = "DIR")]
    decision_log: Option<PathBuf>,
    /// Start a new log file when the current one would pass this size.
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 64,
        requires = "decision_log"
    )]
    decision_log_max_mib: u64,
    /// Also keep this field of the record on each line (`profile.email`, `tz`, …); repeat for
    /// more.
    #[arg(long, value_name = "FIELD", requires = "decision_log")]
    decision_log_field: Vec<String>,
}

impl DecisionLogArgs {
    /// The log, when one is asked for.
    pub(crate) fn open(&self) -> Option<Arc<DecisionLog>> {
        let dir = self.decision_log.as_ref()?;
        let mut config = SinkConfig::new(dir);
        config.max_file_bytes = self.decision_log_max_mib.max(1) << 20;
        Some(DecisionLog::new(
            Arc::new(Sink::start(config)),
            self.decision_log_field.clone(),
        ))
    }
}

/// Writes what `log` holds and fails if any decision could not be written.
pub(crate) fn close(log: Option<&Arc<DecisionLog>>) -> anyhow::Result<()> {
    let Some(log) = log else { return Ok(()) };
    log.sink.close();
    let s = log.sink.status();
    if s.pending + s.lost > 0 {
        bail!(
            "{} decisions could not be written to the decision log `{}`: {}",
            s.pending + s.lost,
            log.sink.dir().display(),
            s.error.unwrap_or_else(|| "the log was closed".into())
        );
    }
    Ok(())
}

/// Read the decision log.
#[derive(Debug, Args)]
pub(crate) struct DecisionsArgs {
    #[command(subcommand)]
    command: DecisionsCommand,
}

#[derive(Debug, Subcommand)]
enum DecisionsCommand {
    Show(ShowArgs),
}

/// Explain one decision in words: the campaign and who asked for it, the outcome, the messages
/// sent or denied (rule and reason), the reasons, the plugin versions and the input's hash.
///
/// Example: regua decisions show 0193a1b2c3d4-1f2e-2a --log decisions/
#[derive(Debug, Args)]
struct ShowArgs {
    /// The decision's id (the `decision` field of an answer).
    id: String,
    /// The decision log's folder.
    #[arg(long, value_name = "DIR")]
    log: PathBuf,
    /// Print the log line as JSON instead of words.
    #[arg(long)]
    json: bool,
}

impl DecisionsArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self.command {
            DecisionsCommand::Show(a) => {
                if !a.log.is_dir() {
                    bail!("--log: `{}` is not a folder", a.log.display());
                }
                match crate::decisions::find(&a.log, &a.id)? {
                    Some(e) if a.json => println!("{}", serde_json::to_string_pretty(&e)?),
                    Some(e) => print!("{}", e.explain()),
                    None => bail!("no decision `{}` in the log `{}`", a.id, a.log.display()),
                }
                Ok(())
            }
        }
    }
}
