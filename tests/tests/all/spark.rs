//! Régua inside Apache Spark: the wheel built from `python/`, PySpark in local mode (`local[2]`)
//! over a generated Parquet file of customers, answers identical row for row to `regua batch`
//! over the same file, error rows included. They run in the Python environment `cargo xtask test`
//! makes (target/py), where PySpark, pyarrow and pandas come only through the package's declared
//! `spark` extra, on the Java 17 runtime it names in JAVA_HOME. Spark binds to 127.0.0.1 only.

use std::path::Path;
use std::process::Command;

use regua_tests::{output_then_reap, python, regua_bin, repo, wasm};
use serde_json::Value;

use crate::cli::text;

const NOW: &str = "2025-03-11T12:00:00Z";

fn run(cmd: &mut Command, what: &str) -> String {
    let out = output_then_reap(cmd);
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Builds the wheel and installs it into `site`, for PYTHONPATH.
fn install_wheel(work: &Path) -> std::path::PathBuf {
    let wheels = work.join("wheels");
    run(
        Command::new(python())
            .current_dir(repo())
            .args([
                "-m",
                "maturin",
                "build",
                "--release",
                "--quiet",
                "-m",
                "python/Cargo.toml",
                "-o",
            ])
            .arg(&wheels),
        "building the wheel",
    );
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .expect("a wheel");
    let site = work.join("site");
    run(
        Command::new(python())
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
            ])
            .arg(&site)
            .arg(&wheel),
        "installing the wheel",
    );
    site
}

/// A row's error without the `row N, ` a file's reader puts first (a Spark partition has no
/// file row numbers).
fn unnumbered(error: &str) -> &str {
    match error.split_once(", ") {
        Some((row, rest)) if row.starts_with("row ") => rest,
        _ => error,
    }
}

const PLUGINS: [&str; 4] = ["lapsed", "rfm", "birthday-today", "app-not-activated"];

fn plugin_paths() -> Vec<String> {
    PLUGINS
        .iter()
        .map(|p| wasm(p).display().to_string())
        .collect()
}

/// The wheel installed once per test process (nextest runs each test in its own), and a Parquet file of 3000 generated
/// customers of which three rows are broken (no id, blank ids), in several row groups.
struct Prepared {
    work: tempfile::TempDir,
    site: std::path::PathBuf,
    customers: std::path::PathBuf,
}

impl Prepared {
    /// `python python/tests/SCRIPT` in the tests' environment with the wheel importable, in
    /// Spark's workers too, and Spark's driver on loopback.
    fn python(&self, script: &str) -> Command {
        let mut cmd = Command::new(python());
        cmd.env("PYTHONPATH", &self.site)
            .env("PYSPARK_PYTHON", python())
            .env("PYSPARK_DRIVER_PYTHON", python())
            .env("SPARK_LOCAL_IP", "127.0.0.1");
        cmd.arg(repo().join("python/tests").join(script));
        cmd
    }
}

fn prepared() -> &'static Prepared {
    static PREPARED: std::sync::OnceLock<Prepared> = std::sync::OnceLock::new();
    PREPARED.get_or_init(|| {
        let work = tempfile::tempdir().unwrap();
        let site = install_wheel(work.path());
        let base = work.path().join("base.parquet");
        run(
            Command::new(regua_bin())
                .args([
                    "generate", "--count", "3000", "--format", "parquet", "--output",
                ])
                .arg(&base),
            "generating customers",
        );
        let customers = work.path().join("customers.parquet");
        let p = Prepared {
            work,
            site,
            customers,
        };
        run(
            p.python("spark_check.py")
                .arg("break")
                .arg(&base)
                .arg(&p.customers),
            "breaking rows",
        );
        p
    })
}

/// `regua batch` of the four plugins over `input` at NOW: its output.
fn regua_batch(input: &Path, extra: &[&str]) -> String {
    let mut batch = Command::new(regua_bin());
    batch.args(["batch", "--now", NOW, "-q", "--input"]);
    batch.arg(input).args(extra);
    for p in plugin_paths() {
        batch.args(["-p", &p]);
    }
    run(&mut batch, "regua batch")
}

#[test]
fn the_python_engine_answers_as_regua_batch_over_batches_and_lines() {
    let p = prepared();
    let lines = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let mut lines: Vec<&str> = lines.lines().take(60).collect();
    lines.insert(7, r#"{"id": "broken", "transactions": 3}"#);
    lines.push(lines[2]);
    let ndjson = p.work.path().join("customers-engine.ndjson");
    std::fs::write(&ndjson, lines.join("\n") + "\n").unwrap();
    let from_parquet = p.work.path().join("batch-parquet.ndjson");
    std::fs::write(&from_parquet, regua_batch(&p.customers, &[])).unwrap();
    let from_lines = p.work.path().join("batch-lines.ndjson");
    std::fs::write(&from_lines, regua_batch(&ndjson, &[])).unwrap();
    let out = run(
        p.python("engine_check.py")
            .env("REGUA_HOSTILE", wasm("hostile"))
            .arg(&p.customers)
            .arg(&ndjson)
            .arg(&from_parquet)
            .arg(&from_lines)
            .arg(NOW)
            .args(plugin_paths()),
        "the engine's checks",
    );
    assert_eq!(out.trim(), "ok");
}

#[test]
fn spark_answers_row_for_row_as_regua_batch_error_rows_included() {
    let p = prepared();
    let customers = &p.customers;
    let paths = plugin_paths();
    let expected = regua_batch(customers, &["--allow-repeated-ids"]);
    let answers = p.work.path().join("spark.ndjson");
    let out = output_then_reap(
        p.python("spark_check.py")
            .arg("spark")
            .arg(customers)
            .arg(&answers)
            .arg(NOW)
            .args(&paths),
    );
    assert!(
        out.status.success(),
        "the Spark job failed:\n{}",
        text(&out.stderr)
    );
    let log = text(&out.stderr);
    // Spark warns when it looks past loopback for an address to bind ("Your hostname … resolves
    // to a loopback address …; using … instead"): it must not.
    assert!(
        !log.contains("resolves to a loopback address"),
        "Spark looked for an address beyond loopback:\n{log}"
    );
    let partitions: usize = log
        .lines()
        .find_map(|l| l.split("partitions: ").nth(1))
        .unwrap_or_else(|| panic!("the job says how many partitions it read: {log}"))
        .parse()
        .unwrap();
    assert!(
        partitions > 1,
        "one partition only: local[2] would not be tested"
    );
    let spark = std::fs::read_to_string(&answers).unwrap();
    let (expected, spark): (Vec<&str>, Vec<&str>) =
        (expected.lines().collect(), spark.lines().collect());
    assert_eq!(spark.len(), 3000, "one answer per row");
    assert_eq!(expected.len(), 3000);
    let plugins = PLUGINS;
    let mut errors = 0;
    for (n, (want, got)) in expected.iter().zip(&spark).enumerate() {
        let want: Value = serde_json::from_str(want).unwrap();
        let got: Value = serde_json::from_str(got).unwrap();
        if let Some(error) = want.get("error") {
            errors += 1;
            assert_eq!(got["id"], want["id"], "row {}", n + 1);
            assert_eq!(
                got["error"].as_str(),
                Some(unnumbered(error.as_str().unwrap())),
                "row {}",
                n + 1
            );
            for p in plugins {
                assert!(
                    got[p].is_null(),
                    "row {}: an error row has no answers: {got}",
                    n + 1
                );
            }
            continue;
        }
        assert_eq!(got["id"], want["id"], "row {}", n + 1);
        assert!(got["error"].is_null(), "row {}: {got}", n + 1);
        for p in plugins {
            let answer: Value = serde_json::from_str(got[p].as_str().unwrap()).unwrap();
            assert_eq!(answer, want["results"][p], "row {} plugin {p}", n + 1);
        }
    }
    assert_eq!(errors, 3, "the three broken rows are error rows");
}

/// The wheel is built from the workspace's own compile of the host core: `maturin build`
/// compiles the Python package alone, so every crate it shares with the workspace must get the
/// same features there as in the workspace's build, or cargo compiles the whole core again
/// (minutes). python/Cargo.toml lists what the rest of the workspace adds; this says what to add
/// when that list falls behind.
#[test]
fn the_python_package_builds_on_the_workspace_build() {
    let tree = |selection: &[&str]| -> std::collections::BTreeSet<String> {
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(repo())
            .args([
                "tree",
                "--offline",
                "-e",
                "normal,build",
                "-f",
                "{p}|{f}",
                "--prefix",
                "none",
            ])
            .args(selection)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| l.replace(" (*)", ""))
            .filter(|l| !l.contains("(/"))
            .collect()
    };
    let workspace = tree(&["--workspace"]);
    let python = tree(&["-p", "regua-python"]);
    let missing: Vec<&String> = python.difference(&workspace).collect();
    let wanted: Vec<String> = missing
        .iter()
        .filter_map(|l| {
            let name = l.split(' ').next()?;
            workspace
                .iter()
                .find(|w| w.starts_with(&format!("{name} v")))
        })
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "python/Cargo.toml builds these crates with other features than the workspace does:\n  \
         {missing:?}\nthe workspace's (add what differs to python/Cargo.toml):\n  {wanted:?}"
    );
}
