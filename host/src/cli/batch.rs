use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;

use super::{InputArgs, LimitArgs, StreamArgs};
use crate::pipeline::batch::{self, BatchOptions, Plugins};
use crate::pipeline::output::{Format, ParquetAnswers};

/// How `regua batch` writes its answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    /// One JSON object per line, with every plugin's full answer and reasons.
    Ndjson,
    /// A header, then `line,id,<plugin>…,error`, each plugin's short answer.
    Csv,
    /// Apache Parquet (snappy): the CSV columns, typed.
    Parquet,
}
use crate::runtime::worker::Evaluation;

/// Evaluate plugins over customers (NDJSON, Parquet or Arrow IPC): one output line per input
/// line or row, in order.
///
/// Each output line is {"id":…,"results":{"<plugin>":{…}}}, or {"line":N,"id":…,"error":"…"}
/// for a line (or row) that is not a valid record or repeats an earlier customer id; the batch
/// goes on after a bad line. A Parquet or Arrow IPC file is told by its first bytes and only the
/// columns the plugins read are decoded (docs/COLUMNAR.md). A summary goes to standard error,
/// and a progress bar when it is a terminal.
///
/// Example: regua batch --all --input examples/customers.ndjson --now 2025-03-11T12:00:00Z
#[derive(Debug, Args)]
pub(crate) struct BatchArgs {
    /// A plugin (path to a .wasm, or a name in --plugins-dir); repeat for several.
    #[arg(
        long = "plugin",
        short = 'p',
        value_name = "PLUGIN",
        required_unless_present = "all"
    )]
    plugins: Vec<String>,
    /// Every plugin in --plugins-dir.
    #[arg(long)]
    all: bool,
    /// Customers: NDJSON (one JSON object per line), a Parquet or an Arrow IPC file; - for
    /// standard input (NDJSON only).
    #[arg(long, short, value_name = "FILE|-")]
    input: PathBuf,
    /// Where results go; - for standard output.
    #[arg(long, short, value_name = "FILE|-", default_value = "-")]
    output: PathBuf,
    /// How answers are written: ndjson (full answers with reasons), csv (a header, then
    /// line,id, one column per plugin with its short answer, and error) or parquet (the csv
    /// columns typed: line an integer, a segment's column a boolean, a failed answer null).
    #[arg(long, value_enum, default_value_t = OutputFormat::Ndjson)]
    format: OutputFormat,
    #[command(flatten)]
    stream: StreamArgs,
    /// Evaluate every line even when its customer id was on an earlier line. By default a
    /// repeat gets an error line, and the ids seen are kept (about 15 bytes each).
    #[arg(long)]
    allow_repeated_ids: bool,
    /// Exit with status 3 when any line was not a valid record or any plugin failed on a record.
    #[arg(long)]
    fail_on_error: bool,
    /// Stop once plugins have failed on N customers (counted over every plugin), for a plugin
    /// that fails on everyone (a time limit hit on each record, a wrong parameter): the lines
    /// answered so far are written, the rest of the input is not read, and the exit status is 3.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_failures: Option<u64>,
    /// No progress bar and no summary.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    inputs: InputArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

impl BatchArgs {
    fn plugin_names(&self) -> anyhow::Result<Vec<String>> {
        let mut names = self.plugins.clone();
        if self.all {
            let dir = &self.inputs.plugins_dir;
            let mut found: Vec<String> = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read plugins folder `{}`", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .map(|p| p.display().to_string())
                .collect();
            found.sort();
            if found.is_empty() {
                bail!(
                    "no .wasm in `{}` (build plugins with `regua build`)",
                    dir.display()
                );
            }
            names.extend(found);
        }
        Ok(names)
    }

    pub(crate) fn run(self) -> anyhow::Result<()> {
        let engine = self.limits.engine()?;
        let names = self.plugin_names()?;
        let mut evals: Vec<Evaluation> = Vec::new();
        for name in &names {
            let plugin = self.inputs.load(&engine, name)?;
            if let Some(other) = evals.iter().find(|e| e.plugin.name() == plugin.name()) {
                bail!(
                    "two plugins are named `{}` ({} and {name})",
                    plugin.name(),
                    other
                        .plugin
                        .source
                        .as_ref()
                        .map_or("?".into(), |p| p.display().to_string())
                );
            }
            let inputs = self.inputs.inputs_for(&plugin, names.len() > 1)?;
            let eval = Evaluation::new(plugin, &inputs)?;
            // CSV and Parquet show no reasons: the plugins leave them out.
            evals.push(match self.format {
                OutputFormat::Ndjson => eval,
                OutputFormat::Csv | OutputFormat::Parquet => eval.without_reasons(),
            });
        }

        let evaluator = self.stream.evaluator()?;
        let plugins = Plugins::new(evals);
        let plugins = std::sync::Arc::new(evaluator.run_blocking(move |w| plugins.check(w))??);
        for eval in plugins.evals() {
            if let Some(e) = eval.failed_check() {
                eprintln!("warning: {e}; its column carries this error on every line");
            }
        }

        let (input, total) = super::open_input(&self.input, plugins.reads())?;
        let output: Box<dyn Write> = if self.output.as_os_str() == "-" {
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(
                File::create(&self.output)
                    .with_context(|| format!("cannot create output `{}`", self.output.display()))?,
            )
        };
        let output = BufWriter::with_capacity(1 << 20, output);
        // Parquet: the CSV answers, read back into typed columns as they are written.
        let (mut parquet, mut plain) = match self.format {
            OutputFormat::Parquet => {
                let names: Vec<String> = plugins
                    .evals()
                    .iter()
                    .map(|e| e.plugin.name().to_owned())
                    .collect();
                let segments = plugins
                    .evals()
                    .iter()
                    .map(|e| e.plugin.kind() == regua_sdk::Kind::Segment)
                    .collect();
                let answers = ParquetAnswers::new(output, &names, segments)
                    .context("cannot start the Parquet output")?;
                (Some(answers), None)
            }
            _ => (None, Some(output)),
        };
        let output: Box<dyn Write + '_> = match (&mut parquet, &mut plain) {
            (Some(p), _) => Box::new(p),
            (_, Some(o)) => Box::new(o),
            _ => unreachable!("one of the two outputs"),
        };

        let bar = super::progress_bar(self.quiet, total);
        let options = BatchOptions {
            chunking: self.stream.chunking(),
            allow_repeated_ids: self.allow_repeated_ids,
            format: match self.format {
                OutputFormat::Ndjson => Format::Ndjson,
                OutputFormat::Csv | OutputFormat::Parquet => Format::Csv,
            },
            max_failures: self.max_failures,
        };
        let summary = batch::run(
            &evaluator,
            plugins.clone(),
            input,
            output,
            &options,
            &super::show_progress(&bar),
        );
        bar.finish_and_clear();
        // Whatever was answered is written out (a Parquet file gets its footer), also when the
        // run stopped early.
        let written = match (parquet, &mut plain) {
            (Some(p), _) => p.finish(),
            (None, Some(o)) => o.flush(),
            (None, None) => Ok(()),
        };
        written.context("cannot write output")?;
        let summary = match summary {
            Ok(summary) => summary,
            Err(e) if self.max_failures.is_some() && e.to_string().contains("--max-failures") => {
                eprintln!("error: {e}");
                std::process::exit(3);
            }
            Err(e) => return Err(e),
        };

        let failed: u64 = summary.tallies.iter().map(|t| t.failed).sum();
        if !self.quiet {
            let secs = summary.elapsed.as_secs_f64();
            eprintln!(
                "{} lines in {secs:.2}s ({:.0} customers/s): {} not a valid record (or a repeated \
                 id), {failed} plugin failures on customers{}",
                summary.lines,
                summary.lines as f64 / secs.max(1e-9),
                summary.bad_lines,
                if failed > 0 && !self.fail_on_error {
                    " (--fail-on-error exits with status 3 when there are any; --max-failures N \
                     stops early)"
                } else {
                    ""
                }
            );
            for (eval, tally) in plugins.evals().iter().zip(&summary.tallies) {
                let p = &eval.plugin;
                eprintln!(
                    "  {:<24} {:<8} {}  {}",
                    p.name(),
                    p.kind().as_str(),
                    p.version,
                    tally.describe(p.kind())
                );
            }
        }
        if self.fail_on_error && (summary.bad_lines > 0 || failed > 0) {
            eprintln!(
                "error: {} invalid lines, {failed} plugin failures",
                summary.bad_lines
            );
            std::process::exit(3);
        }
        Ok(())
    }
}
