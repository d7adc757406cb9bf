//! The figures measured on the `regua` binary as a user runs it, whole process: streaming many
//! customers with ten plugins (wall and maximum RSS, from NDJSON and from Parquet), `regua eval`
//! of a plugin whose compiled code is cached, and, through `host/benches/serve.rs`, the reload
//! of the largest example plugin.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

/// How long a child ran and its maximum resident set.
pub struct Usage {
    pub wall: Duration,
    pub max_rss_mib: f64,
}

/// Builds the `regua` binary of the workspace at `root` and returns its path.
pub fn regua_binary(root: &Path) -> anyhow::Result<PathBuf> {
    eprintln!("building the regua binary…");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "regua-host",
            "--bin",
            "regua",
        ])
        .current_dir(root)
        .status()?;
    ensure!(status.success(), "building the regua binary failed");
    Ok(root.join("target/release/regua"))
}

/// Waits for `child` and returns its wall time since `started` and its maximum RSS.
///
/// The maximum is the child's own high-water mark (`VmHWM` in `/proc/PID/status`), read every
/// 10 ms while it runs. Not `wait4`'s `ru_maxrss`: Linux carries a process's maximum across
/// `exec`, so a child spawned by this benchmark (hundreds of MiB of records and engines) would
/// report at least the benchmark's own size.
fn wait(child: Child, started: Instant) -> anyhow::Result<Usage> {
    let pid = child.id() as libc::pid_t;
    // Until the child is reaped below its pid cannot be reused, so the file is the child's; it
    // has no `VmHWM` once the child has exited (a zombie has no memory).
    let status_file = format!("/proc/{pid}/status");
    let mut max_kib = 0u64;
    while let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    }) {
        max_kib = max_kib.max(kib);
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut status = 0;
    // SAFETY: `pid` is our own unwaited child (std's `Child` is not waited here, so the pid
    // cannot have been reused); a null rusage is allowed.
    let got = unsafe { libc::wait4(pid, &mut status, 0, std::ptr::null_mut()) };
    let wall = started.elapsed();
    ensure!(got == pid, "wait4: {}", std::io::Error::last_os_error());
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child exited with status {status:#x}"
    );
    ensure!(max_kib > 0, "no memory figure read from {status_file}");
    Ok(Usage {
        wall,
        max_rss_mib: max_kib as f64 / 1024.0,
    })
}

/// Runs `regua generate` into `path` unless it is there already (the files are reused between
/// runs of the benchmark: generating 10 M customers takes minutes).
pub fn generated(
    regua: &Path,
    path: &Path,
    count: usize,
    parquet: bool,
    now: &str,
) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    eprintln!("generating {count} customers into {}…", path.display());
    let tmp = path.with_extension("tmp");
    let mut cmd = Command::new(regua);
    cmd.args([
        "generate",
        "--seed",
        "7",
        "--now",
        now,
        "-n",
        &count.to_string(),
        "-o",
    ])
    .arg(&tmp);
    if parquet {
        cmd.args(["--format", "parquet"]);
    }
    ensure!(cmd.status()?.success(), "regua generate failed");
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `regua batch` with `plugins` over `input`, or, with `repeat`, over `input` written `repeat`
/// times to its standard input (ids then repeat, so repeats are allowed), output thrown away.
pub fn batch(
    regua: &Path,
    plugins: &[PathBuf],
    input: &Path,
    repeat: Option<usize>,
    now: &str,
) -> anyhow::Result<Usage> {
    let mut cmd = Command::new(regua);
    cmd.args([
        "batch",
        "-q",
        "--threads",
        "2",
        "--now",
        now,
        "-o",
        "/dev/null",
    ]);
    for p in plugins {
        cmd.arg("-p").arg(p);
    }
    match repeat {
        Some(_) => cmd
            .args(["--allow-repeated-ids", "-i", "-"])
            .stdin(Stdio::piped()),
        None => cmd.arg("-i").arg(input),
    };
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start regua batch")?;
    let feeder = repeat.map(|times| {
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_owned();
        std::thread::spawn(move || -> std::io::Result<()> {
            for _ in 0..times {
                std::io::copy(&mut std::fs::File::open(&input)?, &mut stdin)?;
            }
            stdin.flush()
        })
    });
    let usage = wait(child, started)?;
    // A feeder that stopped early would time a shorter stream than the row claims.
    if let Some(feeder) = feeder {
        feeder
            .join()
            .expect("the feeder thread panicked")
            .context("feeding regua batch its input")?;
    }
    Ok(usage)
}

/// The median wall time of `runs` runs of `regua eval` of `plugin` with its compiled code
/// cached in `cache` (one run first to fill the cache, not counted).
pub fn cached_eval(
    regua: &Path,
    plugin: &Path,
    customer: &Path,
    cache: &Path,
    now: &str,
    runs: usize,
) -> anyhow::Result<Duration> {
    let run = || -> anyhow::Result<Duration> {
        let started = Instant::now();
        let out = Command::new(regua)
            .arg("eval")
            .arg(plugin)
            .arg("--customer")
            .arg(customer)
            .args(["--now", now, "--cache-dir"])
            .arg(cache)
            .stdout(Stdio::null())
            .status()?;
        ensure!(out.success(), "regua eval {} failed", plugin.display());
        Ok(started.elapsed())
    };
    run()?;
    let mut times = (0..runs)
        .map(|_| run())
        .collect::<anyhow::Result<Vec<_>>>()?;
    times.sort();
    Ok(times[runs / 2])
}

/// The reload figures of the service benchmark (`host/benches/serve.rs`, run here with a short
/// load): the first answer of a new build of each plugin after it lands, p50 in milliseconds, by
/// plugin name, with the benchmark's tables passed through to standard error.
pub fn reload(root: &Path) -> anyhow::Result<Vec<(String, f64)>> {
    eprintln!("running the service benchmark (host/benches/serve.rs) for the reload…");
    let out = Command::new(env!("CARGO"))
        .args([
            "bench",
            "--quiet",
            "-p",
            "regua-host",
            "--bench",
            "serve",
            "--",
            "2000",
        ])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    eprint!("{text}");
    if !out.status.success() {
        bail!("the service benchmark failed");
    }
    // Rows of the reload table: "| `name` (N KiB) | first p50 ms | max | optimised p50 | max |".
    let mut firsts = Vec::new();
    let mut in_reload = false;
    for line in text.lines() {
        if line.starts_with("| reload") {
            in_reload = true;
        } else if in_reload && line.starts_with("| `") {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells[1].split('`').nth(1).unwrap_or_default().to_string();
            let first: f64 = cells[2].trim_end_matches(" ms").parse()?;
            firsts.push((name, first));
        }
    }
    ensure!(
        !firsts.is_empty(),
        "no reload table in the service benchmark's output"
    );
    Ok(firsts)
}
