use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::generate::{FileFormat, RecordSink};
use crate::pipeline::columnar::{self, FileKind};

/// Convert customer records between NDJSON, Parquet and Arrow IPC (the schema of
/// docs/COLUMNAR.md).
///
/// The input's format is told by its first bytes. A record that cannot be read is reported on
/// standard error with its line or row and what is wrong, and left out of the output; the command
/// then exits with status 3, so no record is dropped unnoticed.
///
/// Example: regua convert --input examples/customers.ndjson --output /tmp/customers.parquet
#[derive(Debug, Args)]
pub(crate) struct ConvertArgs {
    /// Customers: NDJSON, Parquet or Arrow IPC; - for NDJSON on standard input.
    #[arg(long, short, value_name = "FILE|-")]
    input: PathBuf,
    /// Where the records go; - for standard output (NDJSON only).
    #[arg(long, short, value_name = "FILE|-")]
    output: PathBuf,
    /// The output's format; by default told by the output's extension (.parquet, .arrow or
    /// .ipc, anything else NDJSON).
    #[arg(long, value_enum)]
    to: Option<FileFormat>,
    /// No summary.
    #[arg(long, short)]
    quiet: bool,
}

impl ConvertArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let to =
            self.to
                .unwrap_or_else(|| match self.output.extension().and_then(|e| e.to_str()) {
                    Some("parquet") => FileFormat::Parquet,
                    Some("arrow" | "ipc" | "feather") => FileFormat::Arrow,
                    _ => FileFormat::Ndjson,
                });
        let kind = super::input_kind(&self.input, "input")?;
        let mut sink = RecordSink::create(&self.output, to)?;
        let (mut written, mut bad) = (0u64, 0u64);
        let mut take = |unit: &str, n: u64, record: Result<regua_sdk::Record, String>| {
            match record {
                Ok(c) => {
                    sink.push(c).context("cannot write output")?;
                    written += 1;
                }
                Err(e) => {
                    bad += 1;
                    if e.starts_with("row ") {
                        eprintln!("{e}");
                    } else {
                        eprintln!("{unit} {n}: {e}");
                    }
                }
            }
            anyhow::Ok(())
        };
        if kind == FileKind::Lines {
            let (input, _) = super::open_input(&self.input, regua_sdk::Fields::all())?;
            let crate::pipeline::evaluator::Input::Lines(input) = input else {
                unreachable!("NDJSON opens as lines");
            };
            for (i, line) in input.split(b'\n').enumerate() {
                let line = line.with_context(|| format!("cannot read input line {}", i + 1))?;
                let line = crate::pipeline::evaluator::trim_line(&line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                take(
                    "line",
                    i as u64 + 1,
                    regua_sdk::record::parse_customer_bytes(line),
                )?;
            }
        } else {
            columnar::read_all(&self.input, kind, |row, record| take("row", row, record))?;
        }
        sink.finish().context("cannot write output")?;
        if !self.quiet {
            eprintln!("{written} records written, {bad} left out");
        }
        if bad > 0 {
            eprintln!("error: {bad} record(s) could not be read and were left out");
            std::process::exit(3);
        }
        Ok(())
    }
}
