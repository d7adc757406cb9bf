//! Batch throughput against a native baseline measured in the same run.
//!
//! `cargo bench -p regua-host --bench batch` (optionally `-- 50000` for the record count).
//!
//! The baseline is a native Rust program doing the same work end to end: parse each JSON line
//! into owned records with serde_json, then run the same rule code (the `rfm` plugin's logic,
//! natively). Régua runs the `rfm` plugin built to wasm through `batch::run`, bytes in to bytes
//! out, on one thread and on two. Figures are best-of-3 records per second; ratios are what to
//! compare, since the machine is shared.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use regua_host::batch::{self, BatchOptions};
use regua_host::synth::Generator;
use regua_host::{Engine, Evaluation, Inputs, Limits, Plugin};
use regua_sdk::rfm::{Cuts, Rfm, RfmSegment};
use regua_sdk::{Customer, Timestamp};

fn best_of_3(mut f: impl FnMut() -> usize) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            let n = f();
            n as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let now = Timestamp::parse("2025-03-11T12:00:00Z").unwrap();
    let mut input = Vec::new();
    for c in Generator::new(42, now).take(count) {
        serde_json::to_writer(&mut input, &c).unwrap();
        input.push(b'\n');
    }
    eprintln!(
        "{count} customers, {:.1} KiB each on average",
        input.len() as f64 / count as f64 / 1024.0
    );

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out_dir = root.join("target/bench-plugins");
    let built = regua_host::wasm_build::build(
        &[root.join("plugins/rfm")],
        &out_dir,
        Some(&root.join("target/bench-plugins/target")),
    )
    .expect("building the rfm plugin");
    let engine = Engine::new(Limits::default()).unwrap();
    let plugin: Arc<Plugin> = Plugin::load(&engine, &built[0]).unwrap();
    let inputs = Inputs {
        now,
        default_tz: "America/Sao_Paulo".into(),
        params: "{}".into(),
        message: None,
        event: None,
    };
    let evals = [Evaluation::new(plugin, &inputs).unwrap()];

    let cuts = Cuts::default();
    let mut native_matches = 0;
    let native = best_of_3(|| {
        let mut out = Vec::with_capacity(input.len() / 8);
        native_matches = 0;
        for line in input.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let c: Customer = serde_json::from_slice(line).unwrap();
            let champion =
                Rfm::of(&c, now, &cuts).is_some_and(|r| r.segment() == RfmSegment::Champions);
            native_matches += usize::from(champion);
            writeln!(out, "{{\"id\":{:?},\"match\":{champion}}}", c.id).unwrap();
        }
        count
    });

    let run = |threads| {
        best_of_3(|| {
            let mut out = Vec::with_capacity(input.len() / 4);
            let options = BatchOptions {
                threads,
                chunk_lines: 1000,
                ..Default::default()
            };
            let s = batch::run(&evals, &input[..], &mut out, &options, &|_, _| {}).unwrap();
            assert_eq!(
                s.tallies[0].matched as usize, native_matches,
                "same answers as native"
            );
            s.lines as usize
        })
    };
    let one = run(1);
    let two = run(2);
    println!("| run | records/s | ratio to native |");
    println!("|---|---:|---:|");
    println!("| native serde_json (owned) + rule, 1 thread | {native:.0} | 1.00 |");
    println!(
        "| Régua, rfm plugin, 1 thread | {one:.0} | {:.2} |",
        one / native
    );
    println!(
        "| Régua, rfm plugin, 2 threads | {two:.0} | {:.2} |",
        two / native
    );
    println!("\n2 threads / 1 thread: {:.2}", two / one);
}
