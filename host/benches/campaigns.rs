//! The example campaigns over generated customers, against the same plugins as a plain batch,
//! in the same run: what the campaign pipeline (audience → holdout → variant → journey or
//! message → rest across campaigns) costs over evaluating its plugins side by side.
//!
//! `cargo bench -p regua-host --bench campaigns -- 1000000` (default 1,000,000 customers).

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use regua_host::authoring::generate::Generator;
use regua_host::pipeline::batch::{self, BatchOptions, Plugins};
use regua_host::pipeline::campaign::{self, Campaigns, Plan, RunInputs, RunOptions};
use regua_host::pipeline::evaluator::{Evaluator, Input};
use regua_host::{Engine, Evaluation, Inputs, Limits, Plugin, Worker};
use regua_sdk::Timestamp;

fn main() {
    let customers: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let now = Timestamp::parse("2025-03-11T12:00:00Z").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut campaigns = Campaigns::load_dir(&root.join("examples/campaigns")).unwrap();
    let names: Vec<String> = campaigns.plugin_names().into_iter().collect();
    let crates: Vec<_> = names.iter().map(|n| root.join("plugins").join(n)).collect();
    regua_host::authoring::build::build(&crates, tmp.path(), Some(&root.join("target/plugins")))
        .expect("building the plugins");
    let engine = Engine::new(Limits::default()).unwrap();
    let plugins: HashMap<String, Arc<Plugin>> = names
        .iter()
        .map(|n| {
            let p = Plugin::load(&engine, &tmp.path().join(format!("{n}.wasm"))).unwrap();
            (n.clone(), p)
        })
        .collect();
    let lookup = |n: &str| plugins.get(n).cloned().ok_or_else(|| n.to_owned());
    campaigns.check_plugins(&lookup, &mut Worker::new(), now, "America/Sao_Paulo");
    assert!(campaigns.errors.is_empty(), "{:?}", campaigns.errors);

    eprintln!("generating {customers} customers…");
    let input = tmp.path().join("customers.ndjson");
    {
        let mut out = BufWriter::new(std::fs::File::create(&input).unwrap());
        let mut generator = Generator::new(42, now);
        for _ in 0..customers {
            serde_json::to_writer(&mut out, &generator.customer()).unwrap();
            out.write_all(b"\n").unwrap();
        }
        out.flush().unwrap();
    }
    let bytes = std::fs::metadata(&input).unwrap().len();
    let open = || BufReader::with_capacity(1 << 20, std::fs::File::open(&input).unwrap());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let evaluator = Evaluator::new(Some(threads)).unwrap();

    // The same plugins, with the campaigns' parameters, as one plain batch.
    let message = r#"{"channel":"email","category":"marketing","campaign":"BENCH"}"#;
    let mut evals: Vec<Evaluation> = Vec::new();
    for c in &campaigns.campaigns {
        for (_, _, name, params) in c.plugin_refs(&campaigns.company) {
            let inputs = Inputs {
                now,
                default_tz: "America/Sao_Paulo".into(),
                params: params.to_string(),
                message: Some(serde_json::from_str(message).unwrap()),
                event: None,
            };
            evals.push(Evaluation::new(plugins[name].clone(), &inputs).unwrap());
        }
    }
    let calls = evals.len();
    let started = Instant::now();
    let side_by_side = Plugins::new(evals);
    let side_by_side = evaluator.run_blocking(|w| side_by_side.check(w));
    let side_by_side = Arc::new(side_by_side.unwrap().unwrap());
    let options = BatchOptions::default();
    let summary = batch::run(
        &evaluator,
        side_by_side,
        Input::lines(open()),
        std::io::sink(),
        &options,
        &|_, _| {},
    )
    .unwrap();
    let plain = started.elapsed().as_secs_f64();
    assert_eq!(summary.lines as usize, customers);

    let campaigns = Arc::new(campaigns);
    let n_campaigns = campaigns.campaigns.len();
    let plan = Plan::new(
        campaigns,
        Arc::new(move |n: &str| plugins.get(n).cloned()),
        RunInputs {
            now,
            default_tz: "America/Sao_Paulo".into(),
            event: None,
        },
    );
    let started = Instant::now();
    let options = RunOptions::default();
    let sink = std::io::sink();
    let report = campaign::run(
        &evaluator,
        Arc::new(plan),
        Input::lines(open()),
        sink,
        None,
        &options,
        &|_, _| {},
    )
    .unwrap();
    let run = started.elapsed().as_secs_f64();
    assert_eq!(report.customers as usize, customers);

    let rate = |secs: f64| customers as f64 / secs;
    println!(
        "{customers} customers, {:.0} MiB NDJSON, {} threads",
        bytes as f64 / (1 << 20) as f64,
        threads
    );
    println!(
        "| plain batch: the campaigns' {calls} plugin evaluations side by side | {:.1} s | {:.0} customers/s | 1.00 |",
        plain,
        rate(plain)
    );
    println!(
        "| campaign run: {n_campaigns} campaigns, {} messages planned | {:.1} s | {:.0} customers/s | {:.2} |",
        report.messages,
        run,
        rate(run),
        plain / run
    );
}
