//! The `regua` command line: one subcommand per file, doc comments as help text.

mod analysis;
mod backtest;
mod batch;
mod build;
mod campaign;
mod cases;
mod convert;
pub(crate) mod decisions;
mod eval;
mod generate;
mod inspect;
mod new;
mod replay;
mod serve;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use regua_sdk::Timestamp;

use crate::pipeline::evaluator::{Chunking, Evaluator, Input};
use crate::runtime::cache::ModuleCache;
use crate::{Engine, Limits, Plugin};

/// Where `regua build` writes plugins, and where plugin names are looked up.
pub const DEFAULT_PLUGINS_DIR: &str = "dist/plugins";

/// Régua: evaluate CRM rule plugins (segments, journey rules, channel-rest policies) against
/// customer records, sandboxed in WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "regua", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Eval(eval::EvalArgs),
    Batch(batch::BatchArgs),
    Campaign(campaign::CampaignArgs),
    Replay(replay::ReplayArgs),
    Customers(replay::CustomersArgs),
    Test(cases::TestArgs),
    Inspect(inspect::InspectArgs),
    New(new::NewArgs),
    Build(build::BuildArgs),
    Serve(serve::ServeArgs),
    Generate(generate::GenerateArgs),
    Convert(convert::ConvertArgs),
    Decisions(decisions::DecisionsArgs),
    Backtest(backtest::BacktestArgs),
    Readout(analysis::ReadoutArgs),
    Report(analysis::ReportArgs),
    Completions(CompletionsArgs),
}

/// Print a shell completion script: `regua completions bash > ~/.local/share/bash-completion/completions/regua`,
/// `regua completions zsh > ~/.zfunc/_regua`, `regua completions fish > ~/.config/fish/completions/regua.fish`.
#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

impl CompletionsArgs {
    fn run(self) -> anyhow::Result<()> {
        use clap::CommandFactory as _;
        let mut out = Vec::new();
        clap_complete::generate(self.shell, &mut Cli::command(), "regua", &mut out);
        std::io::Write::write_all(&mut std::io::stdout().lock(), &out)
            .context("cannot write to standard output")
    }
}

impl Cli {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Eval(a) => a.run(),
            Command::Batch(a) => a.run(),
            Command::Campaign(a) => a.run(),
            Command::Replay(a) => a.run(),
            Command::Customers(a) => a.run(),
            Command::Test(a) => a.run(),
            Command::Inspect(a) => a.run(),
            Command::New(a) => a.run(),
            Command::Build(a) => a.run(),
            Command::Serve(a) => a.run(),
            Command::Generate(a) => a.run(),
            Command::Convert(a) => a.run(),
            Command::Decisions(a) => a.run(),
            Command::Backtest(a) => a.run(),
            Command::Readout(a) => a.run(),
            Command::Report(a) => a.run(),
            Command::Completions(a) => a.run(),
        }
    }
}

/// Writes `value` as pretty JSON and a newline to standard output; a closed pipe is an error
/// that `main` ends quietly on.
pub(crate) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush())
        .context("cannot write to standard output")
}

/// Whether `error` comes from writing to a pipe whose reader is gone (`regua … | head`): the
/// command then ends quietly, as the reader wanted.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(BrokenPipe))
    })
}

/// Sandbox limits, shared by the commands that run plugins.
#[derive(Debug, Args, Clone)]
pub(crate) struct LimitArgs {
    /// Time a plugin may spend on one record, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    time_limit: u64,
    /// Memory a plugin instance may use, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    memory_limit: usize,
    /// Output a plugin may return per record, in KiB.
    #[arg(long, value_name = "KIB", default_value_t = 64)]
    output_limit: usize,
    /// Where compiled plugins are kept, so the next run does not compile them again; default:
    /// $REGUA_CACHE_DIR, else $XDG_CACHE_HOME/regua/compiled, else ~/.cache/regua/compiled. The
    /// folder must be writable only by you: code in it runs outside the sandbox.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every plugin afresh, reading and writing no cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

impl LimitArgs {
    pub(crate) fn engine(&self) -> anyhow::Result<Engine> {
        let cache = match (&self.cache_dir, self.no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(dir.clone()),
            (None, false) => ModuleCache::default_dir(),
        };
        let engine = Engine::new(Limits {
            time_per_record: std::time::Duration::from_millis(self.time_limit.max(1)),
            memory_bytes: self.memory_limit.max(1) << 20,
            output_bytes_per_record: self.output_limit.max(1) << 10,
            ..Limits::default()
        })?;
        Ok(engine.with_cache(cache.map(ModuleCache::new)))
    }
}

/// What every evaluation takes besides the plugins and the customers.
#[derive(Debug, Args, Clone)]
pub(crate) struct InputArgs {
    /// The instant to evaluate at (RFC 3339 with offset); default: the current time.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// The company's default time zone, for customers without one.
    #[arg(long, value_name = "IANA", default_value = "America/Sao_Paulo")]
    tz: String,
    /// Plugin parameters: JSON, or @FILE; `NAME=JSON` or `NAME=@FILE` for one plugin of several.
    /// Missing parameters take the plugin's defaults (see `regua inspect`).
    #[arg(long, value_name = "JSON|@FILE")]
    params: Vec<String>,
    /// The proposed message, for rest policies: JSON or @FILE, e.g.
    /// '{"channel":"push","category":"marketing","campaign":"BRF-2025-031"}'.
    #[arg(long, value_name = "JSON|@FILE")]
    message: Option<String>,
    /// The triggering event, for journey rules: JSON or @FILE, e.g.
    /// '{"name":"app_activated","at":"2025-03-11T12:00:00Z"}'.
    #[arg(long, value_name = "JSON|@FILE")]
    event: Option<String>,
    /// Folder where plugin names are looked up.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PLUGINS_DIR)]
    plugins_dir: PathBuf,
}

/// How a streamed command runs: its threads and the size of its chunks.
#[derive(Debug, Args, Clone)]
pub(crate) struct StreamArgs {
    /// Worker threads; default: one per core.
    #[arg(long)]
    threads: Option<usize>,
    /// Lines handed to a worker at a time.
    #[arg(long, default_value_t = 1000, hide = true)]
    chunk_lines: usize,
}

impl StreamArgs {
    pub(crate) fn evaluator(&self) -> anyhow::Result<Evaluator> {
        Evaluator::new(self.threads).context("cannot start the evaluation threads")
    }

    pub(crate) fn chunking(&self) -> Chunking {
        Chunking {
            lines: self.chunk_lines,
            ..Chunking::default()
        }
    }
}

/// An evaluator of one thread, for commands that answer one record at a time.
pub(crate) fn single_evaluator() -> anyhow::Result<Evaluator> {
    Evaluator::new(Some(1)).context("cannot start the evaluation thread")
}

/// What kind of customers file `path` is, told by its first bytes: NDJSON, Parquet or Arrow IPC
/// (`-`, standard input, is NDJSON). `what` names it in the error.
pub(crate) fn input_kind(
    path: &Path,
    what: &str,
) -> anyhow::Result<crate::pipeline::columnar::FileKind> {
    use crate::pipeline::columnar::{FileKind, sniff};
    if path.as_os_str() == "-" {
        return Ok(FileKind::Lines);
    }
    sniff(path).with_context(|| format!("cannot open {what} `{}`", path.display()))
}

/// Opens the input of a batch: a file (with its length, for progress) or `-` for standard
/// input. A Parquet or Arrow IPC file (told by its first bytes) is read by columns, for what
/// `reads` names; anything else is NDJSON.
pub(crate) fn open_input(
    path: &Path,
    reads: regua_sdk::Fields,
) -> anyhow::Result<(Input<'static>, Option<u64>)> {
    use crate::pipeline::columnar::{ColumnarInput, FileKind};
    if path.as_os_str() == "-" {
        return Ok((
            Input::lines(std::io::BufReader::new(std::io::stdin())),
            None,
        ));
    }
    let kind = input_kind(path, "input")?;
    if kind != FileKind::Lines {
        let input = ColumnarInput::open(path, kind, reads)?;
        let total = input.total_bytes();
        return Ok((Input::Columnar(std::sync::Arc::new(input)), total));
    }
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open input `{}`", path.display()))?;
    let len = file.metadata().ok().map(|m| m.len());
    Ok((
        Input::lines(std::io::BufReader::with_capacity(1 << 20, file)),
        len,
    ))
}

/// A progress bar over `total` input bytes on a terminal (a spinner when the size is unknown);
/// hidden when `quiet` or when standard error is not a terminal.
pub(crate) fn progress_bar(quiet: bool, total: Option<u64>) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressStyle};
    use std::io::IsTerminal as _;
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match total {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta} left)")
                .expect("valid template"),
        ),
        None => ProgressBar::new_spinner(),
    }
}

/// The progress callback of a stream drawing on `bar`: bytes read and customers so far.
pub(crate) fn show_progress(bar: &indicatif::ProgressBar) -> impl Fn(u64, u64) + Sync + '_ {
    |lines, bytes| {
        bar.set_position(bytes);
        bar.set_message(format!("{lines} customers"));
    }
}

/// Reads `text` or, for `@FILE`, the file's contents.
pub(crate) fn inline_or_file(text: &str, what: &str) -> anyhow::Result<String> {
    match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {what} file `{path}`")),
        None => Ok(text.to_owned()),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> anyhow::Result<T> {
    let body = inline_or_file(text, what)?;
    regua_sdk::json::from_str(&body, None).map_err(|e| anyhow::anyhow!("invalid {what}: {e}"))
}

impl InputArgs {
    /// The inputs for `plugin`, with its parameters picked from `--params`.
    pub(crate) fn inputs_for(
        &self,
        plugin: &Plugin,
        several: bool,
    ) -> anyhow::Result<crate::Inputs> {
        let now = match &self.now {
            Some(t) => Timestamp::parse(t).map_err(|e| anyhow::anyhow!("--now: {e}"))?,
            None => crate::wall_clock(),
        };
        regua_sdk::Zone::get(&self.tz).map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
        let mut params = String::from("{}");
        for p in &self.params {
            let (target, value) = match p.split_once('=') {
                Some((name, value)) if !name.trim_start().starts_with(['{', '@']) => {
                    (Some(name), value)
                }
                _ => (None, p.as_str()),
            };
            match target {
                Some(name) if name == plugin.name() => params = inline_or_file(value, "params")?,
                Some(_) => {}
                None if several => bail!(
                    "--params applies to one plugin of several: write it as {}=JSON",
                    plugin.name()
                ),
                None => params = inline_or_file(value, "params")?,
            }
        }
        serde_json::from_str::<serde_json::Value>(&params)
            .with_context(|| format!("--params for `{}` is not JSON", plugin.name()))?;
        Ok(crate::Inputs {
            now,
            default_tz: self.tz.clone(),
            params,
            message: self
                .message
                .as_deref()
                .map(|m| parse_json(m, "--message"))
                .transpose()?,
            event: self
                .event
                .as_deref()
                .map(|e| parse_json(e, "--event"))
                .transpose()?,
        })
    }

    /// Loads a plugin given as a path to a `.wasm` or a name in `--plugins-dir`.
    pub(crate) fn load(&self, engine: &Engine, plugin: &str) -> anyhow::Result<Arc<Plugin>> {
        Ok(Plugin::load(
            engine,
            &resolve_plugin(&self.plugins_dir, plugin)?,
        )?)
    }
}

/// A path to a `.wasm`, or the name of one in `dir`.
pub(crate) fn resolve_plugin(dir: &Path, plugin: &str) -> anyhow::Result<PathBuf> {
    let as_path = PathBuf::from(plugin);
    if as_path.is_file() {
        return Ok(as_path);
    }
    let in_dir = dir.join(format!("{plugin}.wasm"));
    if !plugin.contains(['/', '\\']) && in_dir.is_file() {
        return Ok(in_dir);
    }
    bail!(
        "no plugin `{plugin}`: it is not a file, and `{}` does not exist (build plugins with `regua build`)",
        in_dir.display()
    )
}
