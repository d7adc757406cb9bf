//! `cargo xtask serve`, `demo`, `test` and `fuzz`: everything set up from a machine with only
//! rustup and cargo. Standard library only, so it builds in a second.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod services;

const HELP: &str = "\
usage: cargo xtask <command>

commands:
  serve  build the host, then serve the example plugins and examples/campaigns over HTTP on
         127.0.0.1:8080 (builds them into dist/plugins first); hot-reloads both, Ctrl-C stops
  demo   build the host and the example plugins, evaluate every example plugin over
         examples/customers.ndjson (results in dist/results.ndjson), then run the example
         campaigns over them and print each campaign's funnel (dist/campaigns.ndjson, the send
         list in dist/send-list.csv, the funnels in dist/funnel.json)
  test   run the whole test suite: the doc tests, then the tests. Installs what they need: the
         wasm32 target; a Python environment of their own in target/py (the OpenAPI tools and
         maturin from PyPI, pinned by tests/python/constraints.txt, then the Python package's
         wheel, built into target/wheels, with its `spark` extra); from Debian, when missing,
         chromium and chromium-driver for the console's browser test and openjdk-17-jre-headless
         for the Spark tests, postgresql and nats-server for the runtime's tests (PostgreSQL is
         started on 127.0.0.1 in a temporary folder for the run, and stopped after it; each test
         starts its own nats-server). Uses cargo-nextest when installed, cargo test otherwise. Fails if
         the tests leave a process running (and ends it)
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

/// The tests' own Python: a virtual environment in target/py, made by this command, so nothing
/// on the machine (a package installed by hand, the machine's site-packages) is what the tests
/// find. Everything in it is pinned by tests/python/constraints.txt.
const VENV: &str = "target/py";

fn venv_python() -> PathBuf {
    root().join(VENV).join("bin/python")
}

/// `target/py/bin/python -m pip install …`, quiet, pinned by the constraints file.
fn pip_install(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new(venv_python());
    cmd.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--require-virtualenv",
        "-c",
        "tests/python/constraints.txt",
    ])
    .args(args);
    run(&mut cmd)
}

/// Makes target/py (when missing) and installs the Python tools the tests use, from PyPI: the
/// OpenAPI validator the service's document is checked with, the generator of the client the
/// tests call the service through, and maturin, which builds the Python package. Skipped when
/// the environment was made from the same requirement files.
fn python_env() -> Result<(), String> {
    let read = |f: &str| {
        std::fs::read_to_string(root().join(f)).map_err(|e| format!("cannot read {f}: {e}"))
    };
    let wanted = read("tests/python/requirements.txt")? + &read("tests/python/constraints.txt")?;
    let stamp = root().join(VENV).join("installed-from.txt");
    if venv_python().is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(root().join(VENV));
    run(Command::new("python3").args(["-m", "venv", VENV]))
        .map_err(|e| format!("{e}: the tests' Python environment needs python3 with venv"))?;
    pip_install(&["-r", "tests/python/requirements.txt"])?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))
}

/// Builds the Python package's wheel into target/wheels and installs it into target/py with its
/// `spark` extra: PySpark, pandas and pyarrow reach the tests only through the dependencies the
/// package declares. It compiles only pyo3 and the package itself: python/Cargo.toml asks for the
/// workspace's features, so the host core comes from the workspace's build (a test keeps that
/// true). The tests build it again, which is then a no-op.
fn python_package() -> Result<(), String> {
    run(Command::new(venv_python()).args([
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
    let wheels = root().join("target/wheels");
    let mut built: Vec<PathBuf> = std::fs::read_dir(&wheels)
        .map_err(|e| format!("cannot read {}: {e}", wheels.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    built.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let wheel = built
        .last()
        .ok_or_else(|| format!("maturin wrote no wheel into {}", wheels.display()))?;
    pip_install(&[&format!("{}[spark]", wheel.display())])
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

/// Debian's Chromium and its WebDriver, the exact binaries the console's browser test drives.
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

/// Debian's Java 17 runtime, which the Spark tests run PySpark on (JAVA_HOME points at it: a
/// newer Java on the PATH is not one PySpark 3.5 supports). Returns its JAVA_HOME.
fn java() -> Result<PathBuf, String> {
    let arch = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "amd64".into());
    let home = PathBuf::from(format!("/usr/lib/jvm/java-17-openjdk-{arch}"));
    if !home.join("bin/java").is_file() {
        apt_install(
            &["openjdk-17-jre-headless"],
            "the Spark tests need a Java 17 runtime",
        )?;
    }
    if home.join("bin/java").is_file() {
        Ok(home)
    } else {
        Err(format!(
            "openjdk-17-jre-headless is installed but {} is missing",
            home.join("bin/java").display()
        ))
    }
}

fn test() -> Result<(), String> {
    leftovers::adopt_orphans();
    python_env()?;
    browser()?;
    let java_home = java()?;
    // The CLI tests run the `regua` binary itself.
    build_host()?;
    python_package()?;
    // The doc tests first, so the suite's own summary closes the output.
    run(cargo().args(["test", "--release", "--workspace", "--doc"]))?;
    let nextest = cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut tests = cargo();
    if nextest {
        tests.args([
            "nextest",
            "run",
            "--release",
            "--workspace",
            "--no-fail-fast",
        ]);
    } else {
        tests.args([
            "test",
            "--release",
            "--workspace",
            "--no-fail-fast",
            "--lib",
            "--bins",
            "--tests",
        ]);
    }
    let nats = services::nats_server()?;
    let postgres = services::Postgres::start()?;
    tests
        .env("REGUA_TEST_PYTHON", venv_python())
        .env("JAVA_HOME", java_home)
        .env("REGUA_TEST_POSTGRES", &postgres.url)
        .env("REGUA_TEST_NATS_SERVER", nats);
    let outcome = run(&mut tests);
    // Stopped before the check for processes left behind: the server is the run's own.
    let outcome = match (outcome, postgres.stop()) {
        (Ok(()), stopped) => stopped,
        (failed, _) => failed,
    };
    // Whatever the tests started and left running (a browser, a JVM, a server) is ended here and
    // fails the run, so a test that leaks a process is found on every machine.
    match (outcome, leftovers::end_all()) {
        (outcome, Ok(())) => outcome,
        (Ok(()), Err(left)) => Err(left),
        (Err(failed), Err(left)) => Err(format!("{failed}\n{left}")),
    }
}

// The same reading of /proc as the tests' helpers, from their file (xtask does not depend on the
// tests crate, whose build compiles every example plugin).
#[path = "../../tests/src/procs.rs"]
mod procs;

/// Processes the test suite leaves behind. `cargo xtask test` makes itself the "child subreaper"
/// of everything it starts (Linux's PR_SET_CHILD_SUBREAPER), so a process orphaned by a test —
/// a browser whose driver was killed, a JVM whose Python exited — is re-parented to it rather
/// than to init, and can be found by its parent id when the tests are over.
mod leftovers {
    use std::time::{Duration, Instant};

    unsafe extern "C" {
        fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    }
    const PR_SET_CHILD_SUBREAPER: i32 = 36;

    pub fn adopt_orphans() {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers and touches no memory.
        if unsafe { prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            eprintln!(
                "xtask: cannot become a subreaper; processes the tests leave are not checked"
            );
        }
    }

    use super::procs::processes;

    /// Every process descended from this one, its own direct children included.
    fn descendants() -> Vec<(u32, String)> {
        let all = processes();
        let mut found = vec![std::process::id()];
        let mut out = vec![];
        while let Some(parent) = found.pop() {
            for (pid, ppid, cmd) in &all {
                if *ppid == parent && !out.iter().any(|(p, _)| p == pid) {
                    found.push(*pid);
                    out.push((*pid, cmd.clone()));
                }
            }
        }
        out
    }

    /// Waits a few seconds for what the tests left to exit by itself, then kills what is left
    /// and names it.
    pub fn end_all() -> Result<(), String> {
        let started = Instant::now();
        let mut left = descendants();
        while !left.is_empty() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(200));
            reap();
            left = descendants();
        }
        if left.is_empty() {
            return Ok(());
        }
        for (pid, _) in &left {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        reap();
        let names: Vec<String> = left
            .iter()
            .map(|(pid, cmd)| format!("  {pid} {}", cmd.chars().take(160).collect::<String>()))
            .collect();
        Err(format!(
            "the tests left {} process(es) running (now killed):\n{}",
            left.len(),
            names.join("\n")
        ))
    }

    /// Collects the exit status of adopted orphans that have exited, so they leave no zombie.
    fn reap() {
        unsafe extern "C" {
            fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
        }
        const WNOHANG: i32 = 1;
        let mut status = 0;
        // SAFETY: waitpid writes one i32 into `status`, which lives for the call.
        while unsafe { waitpid(-1, &mut status, WNOHANG) } > 0 {}
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
