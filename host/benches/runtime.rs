//! The journey runtime under load: `regua serve --state` on the wall clock, on loopback, fed the
//! inputs of `bench/runtime/inputs.py` (their `at` dropped: the service's clock stamps them)
//! over the example réguas, with keep-alive clients in this process. Measures events/s and the
//! request latency (an event's outbox entries are committed before its answer, so accepted →
//! outbox is the answer's latency), in NDJSON batches and one event per request, against a
//! baseline in the same run: the same requests with events no campaign reads (the store and
//! HTTP floor). Also the import of the customers and the service's peak memory.
//!
//! `cargo bench -p regua-host --bench runtime -- [customers]` (default 20000).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REGUA: &str = env!("CARGO_BIN_EXE_regua");

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[path = "common/runtime_inputs.rs"]
mod common;
use common::run;

/// Posts `bodies` over `clients` keep-alive connections; answers (seconds, sorted latencies).
async fn load(base: &str, bodies: Vec<String>, clients: usize) -> (f64, Vec<Duration>) {
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let queue = queue.clone();
        let url = format!("{base}/v1/events");
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut latencies = Vec::new();
            loop {
                let Some(body) = queue.lock().unwrap().pop() else {
                    break;
                };
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                let text = r.text().await.unwrap();
                assert!(!text.contains("\"refused\""), "{text}");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    (secs, all)
}

fn peak_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let customers: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let common::Material {
        plugins,
        people,
        events,
    } = common::material(dir.path(), customers);
    let state = dir.path().join("state");
    let t = Instant::now();
    run(Command::new(REGUA)
        .args(["customers", "import", "-q", "--state"])
        .arg(&state)
        .arg(&people));
    let import = t.elapsed().as_secs_f64();

    let (mut server, base) = common::serve(
        Command::new(REGUA)
            .args(["serve", "--addr", "127.0.0.1:0", "--plugins"])
            .arg(&plugins)
            .arg("--campaigns")
            .arg(root.join("examples/reguas"))
            .arg("--state")
            .arg(&state),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let half = events.len() / 2;
    let batches = |evs: &[String], size: usize| -> Vec<String> {
        evs.chunks(size)
            .map(|c| c.join("\n") + "\n")
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    };
    // Events no campaign reads, one per customer: the store and HTTP floor.
    let idle = |tag: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"id":"{tag}-{i}","customer":"cus-{:07}","name":"page_view"}}"#,
                    i % customers + 1
                )
            })
            .collect()
    };
    let single = events.len().min(20_000).min(half);
    let report = rt.block_on(async {
        let mut rows = Vec::new();
        let (s, l) = load(&base, batches(&idle("b", half), 100), 4).await;
        rows.push(("baseline: page_view, batches of 100", half, s, l));
        let quarter = half / 2;
        let (s, l) = load(&base, batches(&events[..quarter], 100), 4).await;
        rows.push(("the inputs, batches of 100", quarter, s, l));
        // Fewer events in flight: each waits less, at some cost in throughput.
        let (s, l) = load(&base, batches(&events[quarter..half], 50), 4).await;
        rows.push(("the inputs, batches of 50", half - quarter, s, l));
        let (s, l) = load(&base, idle("s", single).into_iter().rev().collect(), 8).await;
        rows.push(("baseline: page_view, one per request", single, s, l));
        let (s, l) = load(
            &base,
            events[half..half + single].iter().rev().cloned().collect(),
            8,
        )
        .await;
        rows.push(("the inputs, one per request", single, s, l));
        rows
    });
    let peak = peak_mib(server.id());
    server.kill().ok();
    server.wait().ok();

    println!(
        "{customers} customers imported in {import:.2} s ({:.0}/s)",
        customers as f64 / import
    );
    println!("| load | events | events/s | request p50 | request p99 |");
    println!("|---|---|---|---|---|");
    for (what, n, secs, lat) in &report {
        println!(
            "| {what} | {n} | {:.0} | {:.1} ms | {:.1} ms |",
            *n as f64 / secs,
            ms(percentile(lat, 0.5)),
            ms(percentile(lat, 0.99))
        );
    }
    println!("service peak memory: {peak:.0} MiB");
}
