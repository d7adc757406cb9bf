//! Régua against the limit and the peers, end to end (NDJSON bytes in, result bytes out), on the
//! same generated customers and the same rule, in one run.
//!
//! `cargo run --release --manifest-path bench/Cargo.toml` (see `--help`). Each figure is the best
//! of three runs over the same records; every engine's answers are checked against the native
//! program's, so a faster wrong engine cannot win. Ratios to the limit are what to compare: the
//! machine is shared. The same records are then read from Parquet (against the columnar limit),
//! the `regua` binary is timed as a user runs it (a cached `regua eval`, the reload of a new
//! build, and with `--big` a long stream), and a last table says where each target stands.
//!
//! The rule is RFM Champions with the domain reference's cut-points: at least 10 purchases up to
//! `now`, R$ 5,000 or more in all, the last one less than 30 days before `now`. The peers' rules
//! compare timestamps as text, which is exact for these records (all `YYYY-MM-DDTHH:MM:SSZ`) and
//! cheaper than the parsing Régua and the native program do.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use regua_host::authoring::generate::Generator;
use regua_host::pipeline::batch::{self, BatchOptions, Plugins};
use regua_host::pipeline::evaluator::{Evaluator, Input};
use regua_host::{Engine, Evaluation, Inputs, Limits, Plugin};
use regua_sdk::{Context, Customer, Fields, JourneyRule, Record, Segment, Timestamp};
use serde::Deserialize;

/// Régua against a native Rust program and Rhai, CEL, JSONLogic, Rego and Extism.
#[derive(Parser)]
struct Args {
    /// Customers to generate (the deterministic generator, seed 42).
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Only the engines whose label contains this text.
    #[arg(long)]
    only: Option<String>,
    /// Customers for the slow peers (Rhai, CEL, Rego), which would otherwise take minutes.
    #[arg(long, default_value_t = 5_000)]
    slow_count: usize,
    /// Also stream this many customers through `regua batch` with the ten plugins, from NDJSON
    /// and from Parquet, for wall time and maximum RSS (the target is stated for 10,000,000;
    /// the files are generated once under target/bench-data and reused). 0 skips it.
    #[arg(long, default_value_t = 0)]
    big: usize,
}

const NOW: &str = "2025-03-11T12:00:00Z";
/// `now` minus 30 days: a last purchase after this is less than 30 whole days old.
const SINCE: &str = "2025-02-09T12:00:00Z";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let now = Timestamp::parse(NOW)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let input = records(args.count, now);
    let slow = &input[..line_offset(&input, args.slow_count)];
    eprintln!(
        "{} customers, {:.1} KiB each on average; slow peers get the first {}",
        args.count,
        input.len() as f64 / args.count as f64 / 1024.0,
        args.slow_count.min(args.count)
    );

    let mut table = Table::default();
    let want = |label: &str| args.only.as_deref().is_none_or(|o| label.contains(o));

    // The limit, and the answers everyone must give.
    let mut expect = Vec::new();
    // With --only, the native programs run once, for the answers, and are not timed.
    let timed = args.only.is_none();
    let time = |run: &dyn Fn(&[u8], &mut Vec<u8>)| {
        if timed {
            best_of_3(&input, run)
        } else {
            f64::NAN
        }
    };
    let limit = time(&|input, out| native_lazy(input, out, now));
    answers(&input, &mut expect, |i, o| native_lazy(i, o, now));
    table.add(
        "native Rust, lazy borrowed parsing + rule, 1 thread",
        limit,
        None,
    );
    let check = |name: &str, got: &[u8], input: &[u8]| -> anyhow::Result<()> {
        let n = input
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        let mut got_answers = Vec::new();
        for line in got.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            got_answers.push(champion_of(line)?);
        }
        ensure!(
            got_answers[..] == expect[..n],
            "{name} disagrees with the native program"
        );
        Ok(())
    };

    let engine = Engine::new(Limits::default())?;
    let plugins = build_regua_plugins(root, &engine)?;
    let inputs = Inputs {
        now,
        default_tz: "America/Sao_Paulo".into(),
        params: "{}".into(),
        message: None,
        event: None,
    };
    let rfm = [Evaluation::new(plugins[0].clone(), &inputs)?];
    for threads in [1, 2] {
        let label = format!("Régua, 1 plugin, {threads} thread{}", plural(threads));
        if want(&label) {
            let run = |input: &[u8], out: &mut Vec<u8>| regua_batch(&rfm, input, out, threads);
            let rate = best_of_3(&input, run);
            let mut out = Vec::new();
            run(&input, &mut out);
            check(&label, &out, &input)?;
            table.add(&label, rate, Some(limit));
        }
    }

    let ten: Vec<Evaluation> = plugins
        .iter()
        .map(|p| Evaluation::new(p.clone(), &inputs))
        .collect::<Result<_, _>>()?;
    let native_ten = time(&|i, o| native_ten_rules(i, o, now));
    let ten_label = "native Rust, 10 rules (owned parsing), 1 thread";
    table.add(ten_label, native_ten, Some(limit));
    for threads in [1, 2] {
        let label = format!(
            "Régua, 10 plugins in one pass, {threads} thread{}",
            plural(threads)
        );
        if want(&label) {
            let rate = best_of_3(&input, |i, o| regua_batch(&ten, i, o, threads));
            table.add_vs(&label, rate, limit, native_ten, "10 native rules");
        }
    }

    if want("JSONLogic") {
        let label = "JSONLogic (datalogic-rs), 1 thread";
        let rate = best_of_3(&input, jsonlogic()?);
        let mut out = Vec::new();
        jsonlogic()?(&input, &mut out);
        check(label, &out, &input)?;
        table.add(label, rate, Some(limit));
    }
    if want("Extism") {
        let label = "Extism 1.30, one call per record, 1 thread";
        let mut run = extism(root)?;
        let rate = best_of_3(&input, &mut run);
        let mut out = Vec::new();
        run(&input, &mut out);
        check(label, &out, &input)?;
        table.add(label, rate, Some(limit));
    }
    if want("Rego") {
        let label = "Rego (regorus), 1 thread";
        let mut run = rego()?;
        let rate = best_of_3(slow, &mut run);
        let mut out = Vec::new();
        run(slow, &mut out);
        check(label, &out, slow)?;
        table.add(label, rate, Some(limit));
    }
    if want("CEL") {
        let label = "CEL (cel-interpreter), 1 thread";
        let rate = best_of_3(slow, cel()?);
        let mut out = Vec::new();
        cel()?(slow, &mut out);
        check(label, &out, slow)?;
        table.add(label, rate, Some(limit));
    }
    if want("Rhai") {
        let label = "Rhai, 1 thread";
        let rate = best_of_3(slow, rhai()?);
        let mut out = Vec::new();
        rhai()?(slow, &mut out);
        check(label, &out, slow)?;
        table.add(label, rate, Some(limit));
    }

    // The same customers from Parquet: the columnar limit, then Régua.
    let data = root.join("target/bench-data");
    let mut parquet_limit = None;
    let mut parquet_regua = None;
    if want("Parquet") {
        let file = columnar::parquet_file(&data, args.count, now)?;
        let n = columnar::rows(&file);
        let label = "native Rust, Parquet columns the rule reads + rule, 1 thread";
        let mut out = Vec::new();
        columnar::native_parquet(&file, &mut out, now);
        check(label, &out, &input)?;
        let rate = best_of_3_n(n, |out| columnar::native_parquet(&file, out, now));
        table.add(label, rate, Some(limit));
        parquet_limit = Some(rate);
        for threads in [1, 2] {
            let label = format!(
                "Régua, Parquet, 1 plugin, {threads} thread{}",
                plural(threads)
            );
            let run = |out: &mut Vec<u8>| columnar::regua_parquet(&rfm, &file, out, threads);
            let mut out = Vec::new();
            run(&mut out);
            check(&label, &out, &input)?;
            let rate = best_of_3_n(n, run);
            table.add_vs(
                &label,
                rate,
                limit,
                parquet_limit.unwrap(),
                "the Parquet limit",
            );
            if threads == 1 {
                parquet_regua = Some(rate);
            }
        }
        for threads in [1, 2] {
            let label = format!(
                "Régua, Parquet, 10 plugins in one pass, {threads} thread{}",
                plural(threads)
            );
            let rate = best_of_3_n(n, |out| columnar::regua_parquet(&ten, &file, out, threads));
            table.add_vs(&label, rate, limit, native_ten, "10 native rules");
        }
    }
    table.print();

    // The binary as a user runs it: cached `regua eval`, the reload, the long stream.
    let mut targets = Targets::default();
    let one = table.rate("Régua, 1 plugin, 1 thread");
    let ten_one = table.rate("Régua, 10 plugins in one pass, 1 thread");
    targets.ratio(
        "NDJSON, one segment, 1 thread ≥ 0.9 × the native lazy limit",
        one,
        Some(limit),
        0.9,
    );
    targets.ratio(
        "NDJSON, ten plugins in one pass, 1 thread ≥ 0.8 × ten native rules",
        ten_one,
        Some(native_ten),
        0.8,
    );
    targets.ratio(
        "Parquet, one segment, 1 thread ≥ 3 × the NDJSON limit",
        parquet_regua,
        Some(limit),
        3.0,
    );
    targets.ratio(
        "Parquet, one segment, 1 thread ≥ 0.8 × the Parquet limit",
        parquet_regua,
        parquet_limit,
        0.8,
    );
    if args.only.is_none() {
        let regua = process::regua_binary(root)?;
        let plugin_dir = root.join("target/bench-plugins");
        let plugin_files: Vec<PathBuf> = PLUGINS
            .iter()
            .map(|p| plugin_dir.join(format!("{p}.wasm")))
            .collect();
        if args.big > 0 {
            let per_file = args.big.min(1_000_000);
            let repeat = args.big.div_ceil(per_file);
            let ndjson = data.join(format!("customers-{per_file}-seed7.ndjson"));
            process::generated(&regua, &ndjson, per_file, false, NOW)?;
            let parquet = data.join(format!("customers-{}-seed7.parquet", args.big));
            process::generated(&regua, &parquet, args.big, true, NOW)?;
            let scale = 10_000_000.0 / (per_file * repeat) as f64;
            eprintln!(
                "streaming {} customers from NDJSON through regua batch…",
                per_file * repeat
            );
            let u = process::batch(&regua, &plugin_files, &ndjson, Some(repeat), NOW)?;
            targets.seconds(
                "10 M customers × 10 plugins from NDJSON, 2 cores ≤ 90 s",
                &u,
                per_file * repeat,
                scale,
                90.0,
            );
            let scale = 10_000_000.0 / args.big as f64;
            eprintln!(
                "streaming {} customers from Parquet through regua batch…",
                args.big
            );
            let u = process::batch(&regua, &plugin_files, &parquet, None, NOW)?;
            targets.seconds(
                "10 M customers × 10 plugins from Parquet, 2 cores ≤ 30 s",
                &u,
                args.big,
                scale,
                30.0,
            );
        } else {
            targets.skipped(
                "10 M customers × 10 plugins, NDJSON ≤ 90 s, Parquet ≤ 30 s",
                "--big 10000000",
            );
        }
        let cache = data.join("compiled");
        let customer = root.join("examples/customer.json");
        for name in ["rfm", "welcome"] {
            let wall = process::cached_eval(
                &regua,
                &plugin_dir.join(format!("{name}.wasm")),
                &customer,
                &cache,
                NOW,
                11,
            )?;
            targets.millis(
                &format!("`regua eval {name}`, compiled code cached ≤ 50 ms (median of 11)"),
                wall.as_secs_f64() * 1e3,
                50.0,
            );
        }
        let reloads = process::reload(root)?;
        let (name, first) = reloads.last().expect("reload rows");
        targets.millis(
            &format!("reload of `{name}`, the largest example, to the first answer ≤ 100 ms (p50)"),
            *first,
            100.0,
        );
    }
    for (peer, times) in [
        ("JSONLogic", 1.4),
        ("CEL", 20.0),
        ("Rhai", 20.0),
        ("Extism", 3.0),
    ] {
        targets.ratio(
            &format!("Régua, one segment, 1 thread ≥ {times} × {peer}"),
            one,
            table.rate(peer),
            times,
        );
    }
    targets.print();
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn records(count: usize, now: Timestamp) -> Vec<u8> {
    let mut input = Vec::new();
    for c in Generator::new(42, now).take(count) {
        serde_json::to_writer(&mut input, &c).unwrap();
        input.push(b'\n');
    }
    input
}

/// The byte offset just after line `n`.
fn line_offset(input: &[u8], n: usize) -> usize {
    input
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(n.saturating_sub(1))
        .map_or(input.len(), |(i, _)| i + 1)
}

fn lines(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    input.split(|b| *b == b'\n').filter(|l| !l.is_empty())
}

/// Records per second, best of three runs over `input`.
fn best_of_3(input: &[u8], mut run: impl FnMut(&[u8], &mut Vec<u8>)) -> f64 {
    best_of_3_n(lines(input).count(), |out| run(input, out))
}

/// Records per second, best of three runs that each answer `n` records into the buffer given.
fn best_of_3_n(n: usize, mut run: impl FnMut(&mut Vec<u8>)) -> f64 {
    (0..3)
        .map(|_| {
            let mut out = Vec::with_capacity(n * 64);
            let t = Instant::now();
            run(&mut out);
            std::hint::black_box(&out);
            n as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn answers(input: &[u8], into: &mut Vec<bool>, run: impl Fn(&[u8], &mut Vec<u8>)) {
    let mut out = Vec::new();
    run(input, &mut out);
    into.extend(lines(&out).map(|l| champion_of(l).unwrap()));
}

/// Whether an output line says Champion: `{"id":…,"match":b}` from the native program and the
/// peers, Régua's `{"id":…,"results":{"rfm":{"match":b,…}}}`.
fn champion_of(line: &[u8]) -> anyhow::Result<bool> {
    let v: serde_json::Value = serde_json::from_slice(line)?;
    v.get("match")
        .or_else(|| v.pointer("/results/rfm/match"))
        .and_then(|m| m.as_bool())
        .with_context(|| format!("no answer in {v}"))
}

fn write_answer(out: &mut Vec<u8>, id: &str, champion: bool) {
    out.extend_from_slice(b"{\"id\":");
    serde_json::to_writer(&mut *out, id).unwrap();
    out.extend_from_slice(if champion {
        b",\"match\":true}\n"
    } else {
        b",\"match\":false}\n"
    });
}

// ---------------------------------------------------------------------------------------------
// The limit: a hand-written program that reads only what the rule needs, borrowing the text.

mod columnar;
mod lazy;
mod process;
use lazy::LazyCustomer;

fn native_lazy(input: &[u8], out: &mut Vec<u8>, now: Timestamp) {
    for line in lines(input) {
        let c: LazyCustomer = serde_json::from_slice(line).unwrap();
        let (mut n, mut sum, mut last) = (0u32, 0.0, None::<Timestamp>);
        for t in c
            .transactions
            .iter()
            .filter(|t| t.kind == "purchase" && t.at <= now)
        {
            n += 1;
            sum += t.amount;
            last = Some(last.map_or(t.at, |l| l.max(t.at)));
        }
        let champion =
            n >= 10 && sum >= 5000.0 && last.is_some_and(|l| (now - l).whole_days() < 30);
        write_answer(out, &c.id, champion);
    }
}

/// The same ten rules as the ten plugins, compiled natively from the plugins' own crates, over
/// records parsed whole (the ten rules read nearly every field between them).
fn native_ten_rules(input: &[u8], out: &mut Vec<u8>, now: Timestamp) {
    fn ctx<P>(now: Timestamp, params: &P) -> Context<'_, P> {
        Context {
            now,
            params,
            default_tz: "America/Sao_Paulo",
        }
    }
    let p_rfm = Default::default();
    let p_lapsed = Default::default();
    let p_birthday = Default::default();
    let p_app = Default::default();
    let p_cashout = Default::default();
    let p_cross = Default::default();
    let p_funnel = Default::default();
    let p_welcome = Default::default();
    let p_activation = Default::default();
    let p_cart = Default::default();
    let mut bytes = Vec::new();
    for line in lines(input) {
        // The rules read a customer in place, as in the plugins: parse, write once, read.
        let r: Record = serde_json::from_slice(line).unwrap();
        bytes.clear();
        regua_sdk::wire::encode_customer(&r, &mut bytes);
        let view = regua_sdk::wire::RecordView::read(&bytes).unwrap();
        let c = Customer::reading(&view, Fields::all(), "native");
        let answers = [
            rfm::RfmSegmentRule::evaluate(&c, &ctx(now, &p_rfm)).map(|m| m.matched),
            lapsed::Lapsed::evaluate(&c, &ctx(now, &p_lapsed)).map(|m| m.matched),
            birthday_today::BirthdayToday::evaluate(&c, &ctx(now, &p_birthday)).map(|m| m.matched),
            app_not_activated::AppNotActivated::evaluate(&c, &ctx(now, &p_app)).map(|m| m.matched),
            first_cashout_pending::FirstCashoutPending::evaluate(&c, &ctx(now, &p_cashout))
                .map(|m| m.matched),
            cross_sell::CrossSell::evaluate(&c, &ctx(now, &p_cross)).map(|m| m.matched),
            funnel_stage::FunnelStage::evaluate(&c, &ctx(now, &p_funnel)).map(|m| m.matched),
            welcome::Welcome::evaluate(&c, None, &ctx(now, &p_welcome))
                .map(|j| !j.actions.is_empty()),
            app_activation::AppActivation::evaluate(&c, None, &ctx(now, &p_activation))
                .map(|j| !j.actions.is_empty()),
            cart_abandonment::CartAbandonment::evaluate(&c, None, &ctx(now, &p_cart))
                .map(|j| !j.actions.is_empty()),
        ];
        out.extend_from_slice(b"{\"id\":");
        serde_json::to_writer(&mut *out, c.id()).unwrap();
        out.extend_from_slice(b",\"results\":[");
        for (i, a) in answers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(match a {
                Ok(true) => b"true",
                Ok(false) => b"false",
                Err(_) => b"null",
            });
        }
        out.extend_from_slice(b"]}\n");
    }
}

// ---------------------------------------------------------------------------------------------
// Régua.

const PLUGINS: [&str; 10] = [
    "rfm",
    "lapsed",
    "birthday-today",
    "app-not-activated",
    "first-cashout-pending",
    "cross-sell",
    "funnel-stage",
    "welcome",
    "app-activation",
    "cart-abandonment",
];

fn build_regua_plugins(root: &Path, engine: &Engine) -> anyhow::Result<Vec<Arc<Plugin>>> {
    let crates: Vec<PathBuf> = PLUGINS
        .iter()
        .map(|p| root.join("plugins").join(p))
        .collect();
    let out = root.join("target/bench-plugins");
    eprintln!("building the Régua plugins…");
    let built = regua_host::authoring::build::build(&crates, &out, Some(&out.join("target")))
        .map_err(anyhow::Error::msg)?;
    built
        .iter()
        .map(|path| Plugin::load(engine, path).map_err(anyhow::Error::from))
        .collect()
}

/// The evaluator's threads started and the plugins checked, as `regua batch` does first.
fn checked(evals: &[Evaluation], threads: usize) -> (Evaluator, Arc<Plugins>) {
    let evaluator = Evaluator::new(Some(threads)).unwrap();
    let plugins = Plugins::new(evals.to_vec());
    let plugins = Arc::new(
        evaluator
            .run_blocking(|w| plugins.check(w))
            .unwrap()
            .unwrap(),
    );
    (evaluator, plugins)
}

/// One batch as `regua batch` runs it: the evaluator's threads started, the plugins checked,
/// then the stream.
fn regua_batch(evals: &[Evaluation], input: &[u8], out: &mut Vec<u8>, threads: usize) {
    let (evaluator, plugins) = crate::checked(evals, threads);
    let options = BatchOptions::default();
    let s = batch::run(
        &evaluator,
        plugins,
        Input::lines(input),
        &mut *out,
        &options,
        &|_, _| {},
    )
    .unwrap();
    assert_eq!(s.bad_lines, 0);
}

// ---------------------------------------------------------------------------------------------
// The peers, each end to end from the JSON line, as their documentation shows.

type Run = Box<dyn FnMut(&[u8], &mut Vec<u8>)>;

fn id_of(line: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: Cow<'a, str>,
    }
    serde_json::from_slice::<Id>(line).unwrap().id.into_owned()
}

fn jsonlogic() -> anyhow::Result<impl Fn(&[u8], &mut Vec<u8>)> {
    let purchase = format!(
        r#"{{"and":[{{"==":[{{"var":"kind"}},"purchase"]}},{{"<=":[{{"var":"at"}},"{NOW}"]}}]}}"#
    );
    let rule = format!(
        r#"{{"and":[
            {{">=":[{{"reduce":[{{"filter":[{{"var":"transactions"}},{purchase}]}},{{"+":[{{"var":"accumulator"}},1]}},0]}},10]}},
            {{">=":[{{"reduce":[{{"filter":[{{"var":"transactions"}},{purchase}]}},{{"+":[{{"var":"accumulator"}},{{"var":"current.amount"}}]}},0]}},5000]}},
            {{"some":[{{"var":"transactions"}},{{"and":[{purchase},{{">":[{{"var":"at"}},"{SINCE}"]}}]}}]}}
        ]}}"#
    );
    let engine = Arc::new(datalogic_rs::Engine::new());
    let compiled = Arc::new(
        engine
            .compile(&rule)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
    );
    Ok(move |input: &[u8], out: &mut Vec<u8>| {
        let mut session = engine.session();
        for line in lines(input) {
            let text = std::str::from_utf8(line).unwrap();
            let result = session.eval_str(&compiled, text).unwrap();
            write_answer(out, &id_of(line), result == "true");
            session.reset();
        }
    })
}

fn rego() -> anyhow::Result<Run> {
    let policy = r#"
package rfm
import rego.v1

purchases := [t | some t in input.transactions; t.kind == "purchase"; t.at <= data.now]

default champion := false

champion if {
    count(purchases) >= 10
    sum([t.amount | some t in purchases]) >= 5000
    some t in purchases
    t.at > data.since
}
"#;
    let mut engine = regorus::Engine::new();
    engine.add_policy("rfm.rego".into(), policy.into())?;
    engine.add_data_json(&format!(r#"{{"now":"{NOW}","since":"{SINCE}"}}"#))?;
    Ok(Box::new(move |input, out| {
        for line in lines(input) {
            engine
                .set_input_json(std::str::from_utf8(line).unwrap())
                .unwrap();
            let v = engine.eval_rule("data.rfm.champion".into()).unwrap();
            write_answer(out, &id_of(line), v == regorus::Value::from(true));
        }
    }))
}

fn cel() -> anyhow::Result<impl Fn(&[u8], &mut Vec<u8>)> {
    use cel_interpreter::{Context, Program, Value};
    let purchase = format!(r#"t.kind == "purchase" && t.at <= "{NOW}""#);
    let source = format!(
        r#"size(c.transactions.filter(t, {purchase})) >= 10
        && sum(c.transactions.filter(t, {purchase}).map(t, t.amount)) >= 5000.0
        && c.transactions.exists(t, {purchase} && t.at > "{SINCE}")"#
    );
    let program = Program::compile(&source).map_err(|e| anyhow::anyhow!("{e}"))?;
    // CEL has no sum; a user adds one, as here.
    fn sum(
        cel_interpreter::extractors::This(list): cel_interpreter::extractors::This<Arc<Vec<Value>>>,
    ) -> f64 {
        list.iter()
            .map(|v| match v {
                Value::Float(f) => *f,
                Value::Int(i) => *i as f64,
                Value::UInt(u) => *u as f64,
                _ => f64::NAN,
            })
            .sum()
    }
    Ok(move |input: &[u8], out: &mut Vec<u8>| {
        for line in lines(input) {
            let json: serde_json::Value = serde_json::from_slice(line).unwrap();
            let mut ctx = Context::default();
            ctx.add_function("sum", sum);
            ctx.add_variable("c", json).unwrap();
            let v = program.execute(&ctx).unwrap();
            write_answer(out, &id_of(line), v == Value::Bool(true));
        }
    })
}

fn rhai() -> anyhow::Result<impl Fn(&[u8], &mut Vec<u8>)> {
    let script = format!(
        r#"
        let n = 0; let m = 0.0; let recent = false;
        for t in c.transactions {{
            if t.kind == "purchase" && t.at <= "{NOW}" {{
                n += 1;
                m += t.amount;
                if t.at > "{SINCE}" {{ recent = true; }}
            }}
        }}
        n >= 10 && m >= 5000.0 && recent
        "#
    );
    let mut engine = rhai::Engine::new();
    // Rhai's default has no operation limit; a rules service would set one.
    engine.set_max_operations(1_000_000);
    let ast = engine.compile(&script)?;
    Ok(move |input: &[u8], out: &mut Vec<u8>| {
        for line in lines(input) {
            let text = std::str::from_utf8(line).unwrap();
            let c = engine.parse_json(text, true).unwrap();
            let mut scope = rhai::Scope::new();
            scope.push("c", c);
            let champion: bool = engine.eval_ast_with_scope(&mut scope, &ast).unwrap();
            write_answer(out, &id_of(line), champion);
        }
    })
}

fn extism(root: &Path) -> anyhow::Result<Run> {
    let dir = root.join("bench/extism-rfm");
    eprintln!("building the Extism plugin…");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "--quiet",
        ])
        .current_dir(&dir)
        .status()?;
    if !status.success() {
        bail!("building {} failed", dir.display());
    }
    let wasm = dir.join("target/wasm32-unknown-unknown/release/extism_rfm.wasm");
    let manifest = extism::Manifest::new([extism::Wasm::file(wasm)]).with_config_key("now", NOW);
    let mut plugin = extism::Plugin::new(&manifest, [], false)?;
    Ok(Box::new(move |input, out| {
        for line in lines(input) {
            let answer: &[u8] = plugin.call("evaluate", line).unwrap();
            write_answer(out, &id_of(line), answer == b"1");
        }
    }))
}

// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Table {
    rows: Vec<(String, f64, String)>,
}

impl Table {
    fn add(&mut self, label: &str, rate: f64, limit: Option<f64>) {
        let ratio = limit.map_or("1.00".into(), |l| format!("{:.2}", rate / l));
        eprintln!("{label:<58} {rate:>9.0} /s  {ratio:>6} × limit");
        self.rows.push((label.into(), rate, ratio));
    }

    fn add_vs(&mut self, label: &str, rate: f64, limit: f64, base: f64, base_name: &str) {
        let ratio = format!("{:.2} ({:.2} × {base_name})", rate / limit, rate / base);
        eprintln!("{label:<58} {rate:>9.0} /s  {ratio}");
        self.rows.push((label.into(), rate, ratio));
    }

    /// The rate of the first row whose label starts with `prefix`.
    fn rate(&self, prefix: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.0.starts_with(prefix))
            .map(|r| r.1)
    }

    fn print(&self) {
        let rows = self
            .rows
            .iter()
            .map(|(l, rate, ratio)| format!("| {l} | {rate:.0} | {ratio} |"));
        print_table(
            "| engine | records/s | ratio to the limit |\n|---|---:|---:|",
            rows,
        );
    }
}

/// A markdown table: its header lines, then one line per row.
fn print_table(header: &str, rows: impl Iterator<Item = String>) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{header}").unwrap();
    for row in rows {
        writeln!(out, "{row}").unwrap();
    }
}

/// The issue's targets, each with what this run measured and whether it is met.
#[derive(Default)]
struct Targets {
    rows: Vec<(String, String, &'static str)>,
}

impl Targets {
    fn add(&mut self, target: &str, measured: String, met: Option<bool>) {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not run",
        };
        self.rows.push((target.into(), measured, met));
    }

    fn ratio(&mut self, target: &str, rate: Option<f64>, base: Option<f64>, at_least: f64) {
        match (rate, base) {
            (Some(r), Some(b)) if b.is_finite() => {
                self.add(target, format!("{:.2} ×", r / b), Some(r / b >= at_least))
            }
            _ => self.add(target, "–".into(), None),
        }
    }

    fn millis(&mut self, target: &str, ms: f64, at_most: f64) {
        self.add(target, format!("{ms:.0} ms"), Some(ms <= at_most));
    }

    /// A stream of `n` customers; `scale` takes its wall time to the target's 10 M.
    fn seconds(&mut self, target: &str, u: &process::Usage, n: usize, scale: f64, at_most: f64) {
        let s = u.wall.as_secs_f64();
        let measured = if (scale - 1.0).abs() < 1e-9 {
            format!("{s:.0} s, max RSS {:.0} MiB", u.max_rss_mib)
        } else {
            format!(
                "{s:.1} s for {n} (≈ {:.0} s for 10 M), max RSS {:.0} MiB",
                s * scale,
                u.max_rss_mib
            )
        };
        self.add(target, measured, Some(s * scale <= at_most));
    }

    fn skipped(&mut self, target: &str, how: &str) {
        self.add(target, format!("not run (pass `{how}`)"), None);
    }

    fn print(&self) {
        let rows = self
            .rows
            .iter()
            .map(|(t, measured, met)| format!("| {t} | {measured} | {met} |"));
        print_table("\n| target | measured | met |\n|---|---|---|", rows);
    }
}
