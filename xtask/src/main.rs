//! `cargo xtask serve`, `demo`, `test` and `fuzz`: everything set up from a machine with only
//! rustup and cargo. Standard library only, so it builds in a second.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const HELP: &str = "\
usage: cargo xtask <command>

commands:
  serve  build the host, then serve the example plugins and examples/campaigns over HTTP on
         127.0.0.1:8080 (builds them into dist/plugins first); hot-reloads both, Ctrl-C stops
  demo   build the host and the example plugins, evaluate every example plugin over
         examples/customers.ndjson (results in dist/results.ndjson), then run the example
         campaigns over them and print each campaign's funnel (dist/campaigns.ndjson, the send
         list in dist/send-list.csv, the funnels in dist/funnel.json)
  test   run the whole test suite: the doc tests, then the tests (installs the wasm32 target;
         from PyPI the OpenAPI tools, maturin, pyspark and pyarrow; from Debian chromium and
         chromium-driver for the console's browser test and a Java runtime for the Spark test,
         each when missing; builds the Python package's wheel into target/wheels first; uses cargo-nextest when installed, cargo test
         otherwise)
  fuzz   a short run of each fuzz target (installs cargo-fuzz when missing; CI runs it too)

Every command builds in the release profile with the workspace's one feature set, so after
`serve` or `demo`, `test` compiles only test code, and the plugins are built once, in
target/plugins, for all of them.
";

/// The instant the examples are evaluated at, so the demo's figures never drift.
const EXAMPLE_NOW: &str = "2025-03-11T12:00:00Z";
const EXAMPLE_MESSAGE: &str =
    r#"{"channel":"push","category":"marketing","campaign":"BRF-2025-031","tags":["bu:card"]}"#;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_owned()
}

/// The command as a shell would read it.
fn shown(cmd: &Command) -> String {
    let quote = |s: &str| {
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@".contains(c))
        {
            s.to_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("$ {}", shown(cmd));
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({status})"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn ensure_wasm_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"))
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))
}

/// The one build of the workspace every command shares: release profile, every member's
/// features unified (`--workspace`), so no command builds the dependencies again for another
/// feature set. Returns the `regua` binary.
fn build_host() -> Result<PathBuf, String> {
    ensure_wasm_target()?;
    run(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
    Ok(root().join("target/release/regua"))
}

/// Where every command builds the plugins (the test crate's build script included).
const PLUGIN_TARGET: &str = "target/plugins";

/// Builds the release `regua` and the example plugins into dist/plugins; returns the binary.
fn build_host_and_plugins() -> Result<PathBuf, String> {
    let regua = build_host()?;
    run(Command::new(&regua).args([
        "build",
        "plugins",
        "--out",
        "dist/plugins",
        "--target-dir",
        PLUGIN_TARGET,
    ]))?;
    Ok(regua)
}

fn demo() -> Result<(), String> {
    let regua = build_host_and_plugins()?;
    run(Command::new(&regua).args([
        "batch",
        "--all",
        "--plugins-dir",
        "dist/plugins",
        "--input",
        "examples/customers.ndjson",
        "--output",
        "dist/results.ndjson",
        "--now",
        EXAMPLE_NOW,
        "--message",
        EXAMPLE_MESSAGE,
    ]))?;
    eprintln!("\nresults: dist/results.ndjson (one line per customer)\n\ncampaigns:");
    run(Command::new(&regua).args([
        "campaign",
        "run",
        "--campaigns",
        "examples/campaigns",
        "--plugins-dir",
        "dist/plugins",
        "--input",
        "examples/customers.ndjson",
        "--output",
        "dist/campaigns.ndjson",
        "--send-list",
        "dist/send-list.csv",
        "--send-list-format",
        "csv",
        "--funnel",
        "dist/funnel.json",
        "--now",
        EXAMPLE_NOW,
    ]))?;
    eprintln!(
        "\ndecisions: dist/campaigns.ndjson; send list: dist/send-list.csv; funnels: dist/funnel.json"
    );
    Ok(())
}

fn serve() -> Result<(), String> {
    let regua = build_host_and_plugins()?;
    let mut args: Vec<String> = vec!["serve".into()];
    if !std::env::args()
        .skip(2)
        .any(|a| a.starts_with("--campaigns"))
    {
        args.extend(["--campaigns".into(), "examples/campaigns".into()]);
    }
    args.extend(std::env::args().skip(2));
    run(Command::new(&regua).args(&args))
}

/// A few seconds of each fuzz target (cargo-fuzz, installed from crates.io when missing). Runs on
/// stable Rust without a sanitizer; a crash fails the suite and leaves its input in
/// fuzz/artifacts/.
fn fuzz_smoke() -> Result<(), String> {
    let installed = cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    for (target, options) in [("record", "-max_len=16384"), ("abi", "-max_len=4096")] {
        let corpus = root().join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
        run(cargo()
            .args(["fuzz", "run", "-s", "none", target])
            .arg(&corpus)
            .arg(root().join("fuzz/seeds").join(target))
            .args(["--", "-max_total_time=5", options]))?;
    }
    Ok(())
}

/// The Python tools the tests use, from PyPI: the OpenAPI validator the service's document is
/// checked with, the generator of the client the tests call the service through, and maturin,
/// PySpark and pyarrow for the Python package and its Spark test. Installed when missing.
fn python_tools() -> Result<(), String> {
    let present = Command::new("python3")
        .args([
            "-c",
            "import openapi_spec_validator, openapi_python_client, maturin, pyspark, pyarrow",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    run(Command::new("python3").args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "openapi-spec-validator==0.9.0",
        "openapi-python-client==0.29.1",
        // The Python package's build tool, and what its Spark test runs on.
        "maturin>=1.7,<2",
        "pyspark==3.5.*",
        "pyarrow>=15",
    ]))
}

/// Installs Debian `packages` with apt-get (as root, or through `sudo -n`), refreshing the
/// package lists first if the install fails on stale ones.
fn apt_install(packages: &[&str], why: &str) -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    let mut install = vec!["install", "-y", "-q"];
    install.extend(packages);
    if run(&mut apt(&install)).is_ok() {
        return Ok(());
    }
    run(&mut apt(&["update", "-q"]))?;
    run(&mut apt(&install)).map_err(|e| format!("{e}: {why}"))
}

/// Debian's Chromium and its WebDriver, which the console's browser test drives.
fn browser() -> Result<(), String> {
    let present = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
        .iter()
        .all(|p| Path::new(p).is_file());
    if present {
        return Ok(());
    }
    apt_install(
        &["chromium", "chromium-driver"],
        "the console tests need Debian's chromium and chromium-driver",
    )
}

/// A Java runtime, for the Spark test's local PySpark.
fn java() -> Result<(), String> {
    let present = Command::new("java")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    apt_install(
        &["openjdk-17-jre-headless"],
        "the Spark test needs a Java runtime",
    )
}

fn test() -> Result<(), String> {
    python_tools()?;
    browser()?;
    java()?;
    // The CLI tests run the `regua` binary itself.
    build_host()?;
    // The Python package's wheel, which the Spark tests install; built here, before the tests
    // start, so its compile (the host core again, for the wheel's own feature set) is not spent
    // under a test's timeout. The tests build it again, which is then a no-op.
    run(Command::new("python3").args([
        "-m",
        "maturin",
        "build",
        "--release",
        "--quiet",
        "-m",
        "python/Cargo.toml",
        "-o",
        "target/wheels",
    ]))?;
    // The doc tests first, so the suite's own summary closes the output.
    run(cargo().args(["test", "--release", "--workspace", "--doc"]))?;
    let nextest = cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if nextest {
        run(cargo().args([
            "nextest",
            "run",
            "--release",
            "--workspace",
            "--no-fail-fast",
        ]))
    } else {
        run(cargo().args([
            "test",
            "--release",
            "--workspace",
            "--no-fail-fast",
            "--lib",
            "--bins",
            "--tests",
        ]))
    }
}

fn main() -> ExitCode {
    let result = match std::env::args().nth(1).as_deref() {
        Some("serve") => serve(),
        Some("demo") => demo(),
        Some("test") => test(),
        Some("fuzz") => fuzz_smoke(),
        Some("-h" | "--help" | "help") | None => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
