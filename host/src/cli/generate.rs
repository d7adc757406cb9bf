use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use regua_sdk::Timestamp;

use crate::authoring::generate::Generator;
use crate::pipeline::columnar::{Columnar, ColumnarWriter};

/// Write N synthetic customers: realistic, deterministic for a seed (for benchmarks and load
/// tests), as NDJSON or in a columnar file (the schema of docs/COLUMNAR.md).
///
/// Example: regua generate --count 100000 --output /tmp/customers.ndjson
/// Example: regua generate --count 100000 --format parquet --output /tmp/customers.parquet
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// How many customers.
    #[arg(long, short = 'n', default_value_t = 1000)]
    count: u64,
    /// The seed: the same seed gives the same customers.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Histories end before this instant.
    #[arg(long, value_name = "RFC3339", default_value = "2025-03-11T12:00:00Z")]
    now: String,
    /// Write the same customers as of this later instant: each history up to --now unchanged,
    /// plus what the customer did after it (purchases at their archetype's pace, a first
    /// cash-out, app activations, logins). The customers after a campaign run at --now, for
    /// `regua readout`.
    #[arg(long, value_name = "RFC3339")]
    followed_until: Option<String>,
    /// How the customers are written: ndjson, parquet or arrow (an Arrow IPC file).
    #[arg(long, value_enum, default_value_t = FileFormat::Ndjson)]
    format: FileFormat,
    /// Output file; - for standard output.
    #[arg(long, short, value_name = "FILE|-", default_value = "-")]
    output: PathBuf,
}

/// The file formats of customer records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FileFormat {
    /// One JSON object per line.
    Ndjson,
    /// Apache Parquet.
    Parquet,
    /// An Arrow IPC file.
    Arrow,
}

impl FileFormat {
    fn columnar(self) -> Option<Columnar> {
        match self {
            FileFormat::Ndjson => None,
            FileFormat::Parquet => Some(Columnar::Parquet),
            FileFormat::Arrow => Some(Columnar::Arrow),
        }
    }
}

/// Where customer records go, in a format.
pub(crate) enum RecordSink {
    Lines(BufWriter<Box<dyn Write + Send>>),
    Columns(Box<ColumnarWriter>),
}

impl RecordSink {
    /// A sink writing `format` to `path` (`-`: standard output, NDJSON only).
    pub(crate) fn create(path: &std::path::Path, format: FileFormat) -> anyhow::Result<Self> {
        let out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            if format != FileFormat::Ndjson {
                bail!(
                    "a columnar file needs --output FILE (it cannot be streamed to standard output)"
                );
            }
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create `{}`", path.display()))?,
            )
        };
        Ok(match format.columnar() {
            None => RecordSink::Lines(BufWriter::with_capacity(1 << 20, out)),
            Some(c) => RecordSink::Columns(Box::new(ColumnarWriter::new(
                c,
                Box::new(BufWriter::with_capacity(1 << 20, out)),
            )?)),
        })
    }

    /// Writes one customer.
    pub(crate) fn push(&mut self, customer: regua_sdk::Record) -> anyhow::Result<()> {
        match self {
            RecordSink::Lines(out) => {
                serde_json::to_writer(&mut *out, &customer)?;
                out.write_all(b"\n")?;
            }
            RecordSink::Columns(w) => w.push(customer)?,
        }
        Ok(())
    }

    /// Writes what is left (and a columnar file's footer).
    pub(crate) fn finish(self) -> anyhow::Result<()> {
        match self {
            RecordSink::Lines(mut out) => out.flush()?,
            RecordSink::Columns(w) => {
                w.finish()?;
            }
        }
        Ok(())
    }
}

impl GenerateArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let now = Timestamp::parse(&self.now).map_err(|e| anyhow::anyhow!("--now: {e}"))?;
        let mut generator = Generator::new(self.seed, now);
        if let Some(until) = &self.followed_until {
            let until =
                Timestamp::parse(until).map_err(|e| anyhow::anyhow!("--followed-until: {e}"))?;
            if until <= now {
                bail!("--followed-until: {until} is not after --now ({now})");
            }
            generator = generator.followed_until(until);
        }
        let mut sink = RecordSink::create(&self.output, self.format)?;
        for customer in generator.take(self.count as usize) {
            sink.push(customer).context("cannot write customers")?;
        }
        sink.finish().context("cannot write customers")
    }
}
