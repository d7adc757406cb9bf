//! The HTTP service under load on loopback: single-evaluation latency (p50, p99) and throughput,
//! against the same evaluation called directly in the same run, and the reload time.
//!
//! `cargo bench -p regua-host --bench serve` (optionally `-- 20000` for the request count).
//!
//! The service runs in-process on 127.0.0.1:0 with the `rfm` plugin (and reloads `standard-rest`
//! and `sequence`, the largest examples); the load generator is a set
//! of keep-alive HTTP clients in the same process, so both share the machine's two cores, as a
//! sender beside the service would.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regua_host::pipeline::evaluator::Evaluator;
use regua_host::service::http::{AppState, ServiceConfig};
use regua_host::service::metrics::Metrics;
use regua_host::service::registry::Registry;
use regua_host::service::reload;
use regua_host::{EncodedBatch, Engine, Evaluation, Inputs, Limits, Worker};

const CLIENTS: usize = 8;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let requests: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    regua_host::authoring::build::build(
        &[
            root.join("plugins/rfm"),
            root.join("plugins/standard-rest"),
            root.join("plugins/sequence"),
        ],
        dir.path(),
        Some(&root.join("target/bench-plugins/target")),
    )
    .expect("building the plugins");
    let customer = std::fs::read_to_string(root.join("examples/customer.json")).unwrap();
    let body = format!(r#"{{"customer":{customer},"now":"2025-03-11T12:00:00Z"}}"#);

    // A load (checks, compile, instantiation and metadata) by each compiler, no cache.
    let engine = Engine::new(Limits::default()).unwrap();
    let baseline = engine.clone().baseline_only().unwrap();
    let mut loads = Vec::new();
    for name in ["rfm", "standard-rest", "sequence"] {
        let bytes = std::fs::read(dir.path().join(format!("{name}.wasm"))).unwrap();
        let time = |engine: &Engine| {
            let mut t: Vec<Duration> = (0..5)
                .map(|_| {
                    let start = Instant::now();
                    regua_host::Plugin::from_bytes(engine, name, &bytes).unwrap();
                    start.elapsed()
                })
                .collect();
            t.sort();
            percentile(&t, 0.5)
        };
        loads.push((name, time(&baseline), time(&engine)));
    }

    // Baseline: the same evaluation, called directly.
    let plugin = regua_host::Plugin::load(&engine, &dir.path().join("rfm.wasm")).unwrap();
    let inputs = Inputs {
        now: regua_sdk::Timestamp::parse("2025-03-11T12:00:00Z").unwrap(),
        default_tz: "America/Sao_Paulo".into(),
        params: "{}".into(),
        message: None,
        event: None,
    };
    let eval = Evaluation::new(plugin, &inputs).unwrap();
    let mut worker = Worker::new();
    let mut direct = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let c = regua_host::pipeline::record::parse_customer(&customer).unwrap();
        let mut batch = EncodedBatch::new();
        batch.push(&c);
        let r = worker.evaluate(&eval, &batch).unwrap();
        std::hint::black_box(regua_host::pipeline::output::result_value(
            &eval.plugin,
            &r[0],
        ));
        direct.push(t.elapsed());
    }
    direct.sort();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // Tiered, as `regua serve` runs it: a new build answers from its baseline compile first.
        let registry = Arc::new(Registry::new(engine.tiered().unwrap(), dir.path()));
        let metrics = Arc::new(Metrics::new());
        reload::load_all(&registry, &metrics);
        let _watchers = reload::watch(registry.clone(), metrics.clone(), None).unwrap();
        let state = AppState::new(
            registry.clone(),
            Evaluator::new(Some(2)).unwrap(),
            metrics,
            ServiceConfig::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/plugins/rfm/evaluate", listener.local_addr().unwrap());
        tokio::spawn(regua_host::service::http::serve(listener, state, std::future::pending()));
        let client = reqwest::Client::new();

        // Warm up connections and instances.
        for _ in 0..200 {
            client.post(&url).body(body.clone()).send().await.unwrap().bytes().await.unwrap();
        }
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(requests / CLIENTS);
                for _ in 0..requests / CLIENTS {
                    let t = Instant::now();
                    let r = client.post(&url).body(body.clone()).send().await.unwrap();
                    assert!(r.status().is_success());
                    r.bytes().await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut http = Vec::new();
        for t in tasks {
            http.extend(t.await.unwrap());
        }
        let wall = started.elapsed();
        http.sort();

        // Reload: from a new build landing in the folder to the first answer it gives, for a small
        // plugin and for the largest examples (a rest policy and a journey with time zones).
        let mut reloads = Vec::new();
        for name in ["rfm", "standard-rest", "sequence"] {
            let path = dir.path().join(format!("{name}.wasm"));
            let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let url = url.replace("/rfm/", &format!("/{name}/"));
            let body = if name != "standard-rest" {
                body.clone()
            } else {
                body.replace(r#""now""#, r#""message":{"channel":"email","category":"transactional"},"now""#)
            };
            let mut times = Vec::new();
            for n in 0..10u8 {
                let mut bytes = wasm.clone();
                bytes.extend_from_slice(&[0, 3, 1, b'x', n]); // a custom section: same rule, new version
                let version = regua_host::runtime::plugin::version_of(&bytes);
                let tmp = dir.path().join(".reload.tmp");
                let t = Instant::now();
                std::fs::write(&tmp, &bytes).unwrap();
                std::fs::rename(&tmp, &path).unwrap();
                loop {
                    let v: serde_json::Value = client.post(&url).body(body.clone()).send().await.unwrap().json().await.unwrap();
                    if v["version"] == version.as_str() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let first = t.elapsed();
                while !registry.get(name).is_some_and(|p| p.version == version && p.is_optimised()) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                times.push((first, t.elapsed()));
            }
            times.sort();
            reloads.push((name, wasm.len(), times));
        }

        println!("| measure | p50 | p99 | throughput |");
        println!("|---|---:|---:|---:|");
        println!(
            "| direct call (parse + evaluate + render), 1 thread | {:.3} ms | {:.3} ms | {:.0} /s |",
            ms(percentile(&direct, 0.5)),
            ms(percentile(&direct, 0.99)),
            requests as f64 / direct.iter().sum::<Duration>().as_secs_f64()
        );
        println!(
            "| HTTP POST /v1/plugins/rfm/evaluate, {CLIENTS} clients | {:.3} ms | {:.3} ms | {:.0} /s |",
            ms(percentile(&http, 0.5)),
            ms(percentile(&http, 0.99)),
            http.len() as f64 / wall.as_secs_f64()
        );
        println!("\n| load of a new build, no cache (p50 of 5) | baseline (Winch) | optimised (Cranelift) |");
        println!("|---|---:|---:|");
        for (name, winch, cranelift) in &loads {
            println!("| `{name}` | {:.0} ms | {:.0} ms |", ms(*winch), ms(*cranelift));
        }
        println!("\n| reload (10 swaps): new build landed → | first answer, p50 | max | optimised code serving, p50 | max |");
        println!("|---|---:|---:|---:|---:|");
        for (name, size, times) in &reloads {
            let first: Vec<Duration> = times.iter().map(|t| t.0).collect();
            let mut optimised: Vec<Duration> = times.iter().map(|t| t.1).collect();
            optimised.sort();
            println!(
                "| `{name}` ({} KiB) | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
                size / 1024,
                ms(percentile(&first, 0.5)),
                ms(*first.last().unwrap()),
                ms(percentile(&optimised, 0.5)),
                ms(*optimised.last().unwrap())
            );
        }
    });
}
