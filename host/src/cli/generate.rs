use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use regua_sdk::Timestamp;

use crate::authoring::generate::Generator;

/// Write N synthetic customers as NDJSON: realistic, deterministic for a seed (for benchmarks
/// and load tests).
///
/// Example: regua generate --count 100000 --output /tmp/customers.ndjson
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
    /// Output file; - for standard output.
    #[arg(long, short, value_name = "FILE|-", default_value = "-")]
    output: PathBuf,
}

impl GenerateArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let now = Timestamp::parse(&self.now).map_err(|e| anyhow::anyhow!("--now: {e}"))?;
        let out: Box<dyn Write> = if self.output.as_os_str() == "-" {
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(
                std::fs::File::create(&self.output)
                    .with_context(|| format!("cannot create `{}`", self.output.display()))?,
            )
        };
        let mut out = BufWriter::new(out);
        for customer in Generator::new(self.seed, now).take(self.count as usize) {
            serde_json::to_writer(&mut out, &customer)?;
            out.write_all(b"\n")?;
        }
        out.flush().context("cannot write customers")?;
        Ok(())
    }
}
