//! Régua inside Apache Spark: the wheel built from `python/`, PySpark in local mode (`local[2]`)
//! over a generated Parquet file of customers, answers identical row for row to `regua batch`
//! over the same file, error rows included. `cargo xtask test` installs pyspark, pyarrow, maturin
//! and a Java runtime when missing.

use std::path::Path;
use std::process::Command;

use regua_tests::{regua_bin, repo, wasm};
use serde_json::Value;

use crate::cli::text;

const NOW: &str = "2025-03-11T12:00:00Z";

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
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
        Command::new("python3")
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
        Command::new("python3")
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

#[test]
fn spark_answers_row_for_row_as_regua_batch_error_rows_included() {
    let work = tempfile::tempdir().unwrap();
    let site = install_wheel(work.path());
    let base = work.path().join("base.parquet");
    let customers = work.path().join("customers.parquet");
    run(
        Command::new(regua_bin())
            .args([
                "generate", "--count", "3000", "--format", "parquet", "--output",
            ])
            .arg(&base),
        "generating customers",
    );
    let script = repo().join("python/tests/spark_check.py");
    let python = || {
        let mut cmd = Command::new("python3");
        cmd.env("PYTHONPATH", &site)
            .env("PYSPARK_PYTHON", "python3");
        cmd.arg(&script);
        cmd
    };
    run(
        python().arg("break").arg(&base).arg(&customers),
        "breaking rows",
    );
    let plugins = ["lapsed", "rfm", "birthday-today", "app-not-activated"];
    let paths: Vec<String> = plugins
        .iter()
        .map(|p| wasm(p).display().to_string())
        .collect();
    let mut batch = Command::new(regua_bin());
    batch.args([
        "batch",
        "--now",
        NOW,
        "-q",
        "--allow-repeated-ids",
        "--input",
    ]);
    batch.arg(&customers);
    for p in &paths {
        batch.args(["-p", p]);
    }
    let expected = run(&mut batch, "regua batch");
    let answers = work.path().join("spark.ndjson");
    let out = python()
        .arg("spark")
        .arg(&customers)
        .arg(&answers)
        .arg(NOW)
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Spark job failed:\n{}",
        text(&out.stderr)
    );
    let log = text(&out.stderr);
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
