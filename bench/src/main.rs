//! Régua against the limit and the peers, end to end (NDJSON bytes in, result bytes out), on the
//! same generated customers and the same rule, in one run.
//!
//! `cargo run --release --manifest-path bench/Cargo.toml` (see `--help`). Each figure is the best
//! of three runs over the same records; every engine's answers are checked against the native
//! program's, so a faster wrong engine cannot win. Ratios to the limit are what to compare: the
//! machine is shared.
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
    table.print();
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
    let n = lines(input).count();
    (0..3)
        .map(|_| {
            let mut out = Vec::with_capacity(n * 64);
            let t = Instant::now();
            run(input, &mut out);
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

mod lazy;
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
        let (view, _) = regua_sdk::wire::RecordView::read(&bytes).unwrap();
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

/// One batch as `regua batch` runs it: the evaluator's threads started, the plugins checked,
/// then the stream.
fn regua_batch(evals: &[Evaluation], input: &[u8], out: &mut Vec<u8>, threads: usize) {
    let evaluator = Evaluator::new(Some(threads)).unwrap();
    let plugins = Plugins::new(evals.to_vec());
    let plugins = Arc::new(
        evaluator
            .run_blocking(|w| plugins.check(w))
            .unwrap()
            .unwrap(),
    );
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

    fn print(&self) {
        let mut out = std::io::stdout().lock();
        writeln!(out, "| engine | records/s | ratio to the limit |").unwrap();
        writeln!(out, "|---|---:|---:|").unwrap();
        for (label, rate, ratio) in &self.rows {
            writeln!(out, "| {label} | {rate:.0} | {ratio} |").unwrap();
        }
    }
}
