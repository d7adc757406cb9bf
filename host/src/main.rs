use clap::Parser;
use tracing_subscriber::EnvFilter;

// Reading a batch allocates and frees many small strings per record on every worker; mimalloc's
// per-thread heaps make that about 20 % faster end to end than the system allocator
// (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,regua=info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = regua_host::cli::Cli::parse().run() {
        if regua_host::cli::is_broken_pipe(&e) {
            return;
        }
        eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}
