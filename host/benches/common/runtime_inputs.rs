//! What the runtime's benchmarks share: the example plugins built, `regua generate`'s
//! customers, and `bench/runtime/inputs.py`'s inputs without their `at` (the service's clock
//! stamps each).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const REGUA: &str = env!("CARGO_BIN_EXE_regua");

pub fn run(cmd: &mut Command) {
    let status = cmd.status().expect("running a command");
    assert!(status.success(), "{cmd:?} failed");
}

/// The benchmark's material, in `dir`.
pub struct Material {
    /// The example plugins, built.
    pub plugins: PathBuf,
    /// `customers` customers (NDJSON).
    pub people: PathBuf,
    /// The inputs, JSON text each, without `at`.
    pub events: Vec<String>,
}

/// Builds the example plugins and makes `customers` customers and their inputs over 30 days.
pub fn material(dir: &Path, customers: usize) -> Material {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let plugins = dir.join("plugins");
    let sources: Vec<PathBuf> = std::fs::read_dir(root.join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    regua_host::authoring::build::build(
        &sources,
        &plugins,
        Some(&root.join("target/bench-plugins/target")),
    )
    .expect("building the plugins");
    let people = dir.join("customers.ndjson");
    run(Command::new(REGUA)
        .args(["generate", "--count", &customers.to_string(), "--output"])
        .arg(&people));
    let inputs = Command::new("python3")
        .arg(root.join("bench/runtime/inputs.py"))
        .args(["--customers", &customers.to_string(), "--days", "30"])
        .output()
        .unwrap();
    assert!(inputs.status.success());
    let events = String::from_utf8(inputs.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("at");
            v.to_string()
        })
        .collect();
    Material {
        plugins,
        people,
        events,
    }
}

/// Starts `regua serve` as `cmd` says (with `--addr 127.0.0.1:0`); answers the process and
/// its base URL once it listens. Its log is drained and dropped.
pub fn serve(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let base = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "the service stopped");
        if let Some(at) = line.find("on http://") {
            break line[at + 3..].split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (child, base)
}
