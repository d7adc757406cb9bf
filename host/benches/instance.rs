//! What a fresh instance per call costs against a warm one reused across calls (which would let
//! state cross customers and callers, so the product never does it).
//!
//! `cargo bench -p regua-host --bench instance` (optionally `-- 5000` for the calls per case).
//!
//! For the `rfm` and `welcome` plugins, calls over 1 customer (the service's single evaluation)
//! and over 1,000 (a batch chunk), each timed with a fresh pooled instance and with a warm one,
//! interleaved in one run so the machine's noise falls on both alike.

use std::path::Path;
use std::time::{Duration, Instant};

use regua_host::authoring::generate::Generator;
use regua_host::{EncodedBatch, Engine, Evaluation, Inputs, Limits, Worker};
use regua_sdk::Timestamp;

fn main() {
    let calls: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    regua_host::authoring::build::build(
        &[root.join("plugins/rfm"), root.join("plugins/welcome")],
        dir.path(),
        Some(&root.join("target/bench-plugins/target")),
    )
    .expect("building the plugins");
    let now = Timestamp::parse("2025-03-11T12:00:00Z").unwrap();
    let engine = Engine::new(Limits::default()).unwrap();
    let inputs = Inputs {
        now,
        default_tz: "America/Sao_Paulo".into(),
        params: "{}".into(),
        message: None,
        event: None,
    };
    println!(
        "| plugin | customers per call | fresh instance (µs/call) | warm instance (µs/call) | fresh / warm |"
    );
    println!("|---|---:|---:|---:|---:|");
    for name in ["rfm", "welcome"] {
        let plugin =
            regua_host::Plugin::load(&engine, &dir.path().join(format!("{name}.wasm"))).unwrap();
        let eval = Evaluation::new(plugin, &inputs).unwrap();
        for customers in [1usize, 1000] {
            let mut batch = EncodedBatch::new();
            for c in Generator::new(7, now).take(customers) {
                batch.push(&c);
            }
            let n = if customers == 1 {
                calls
            } else {
                (calls / 50).max(20)
            };
            let mut fresh = Worker::new();
            let mut warm = Worker::reusing_instances_for_benchmarks();
            let (mut t_fresh, mut t_warm) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..n {
                for (worker, total) in [(&mut fresh, &mut t_fresh), (&mut warm, &mut t_warm)] {
                    let t = Instant::now();
                    let r = worker.evaluate(&eval, &batch).unwrap();
                    *total += t.elapsed();
                    assert!(r.iter().all(Result::is_ok), "{name}: {:?}", r[0]);
                }
            }
            let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
            println!(
                "| {name} | {customers} | {:.1} | {:.1} | {:.2} |",
                per(t_fresh),
                per(t_warm),
                t_fresh.as_secs_f64() / t_warm.as_secs_f64()
            );
        }
    }
}
