//! Plugins are untrusted: every way a plugin can misbehave ends in an error that names the
//! plugin, its version, the customer and the cause, and the other records and plugins go on.

use std::time::{Duration, Instant};

use regua_host::{EncodedBatch, Engine, Limits, LoadError, Plugin, Worker};
use regua_tests::{engine, load};

use crate::{eval, run_batch};

pub(crate) const MIXED: &str = r#"{"id":"good-1"}
{"id":"bad-2"}
{"id":"good-3"}
{"id":"bad-4"}
{"id":"good-5"}
"#;

/// Runs the hostile plugin in `mode` over MIXED and returns each line's result for it.
fn hostile(engine: &Engine, params: &str) -> Vec<serde_json::Value> {
    let plugin = load(engine, "hostile");
    let lapsed = load(engine, "lapsed");
    let (lines, summary) = run_batch(&[eval(&plugin, params), eval(&lapsed, "{}")], MIXED, 1);
    assert_eq!(summary.lines, 5);
    assert_eq!(lines.len(), 5, "one output line per input line");
    for line in &lines {
        // The other plugin answers every record, whatever the hostile one does.
        assert_eq!(line["results"]["lapsed"]["match"], false, "{line}");
    }
    lines
        .iter()
        .map(|l| l["results"]["hostile"].clone())
        .collect()
}

/// Checks that only the odd records (the victims) failed, each with an error naming the line, the
/// plugin, its version, the customer and `cause`.
pub(crate) fn assert_only_victims_failed(results: &[serde_json::Value], cause: &str) {
    let version = results[0]["version"].as_str().unwrap().to_owned();
    for (i, r) in results.iter().enumerate() {
        if i % 2 == 1 {
            let error = r["error"]
                .as_str()
                .unwrap_or_else(|| panic!("record {i} should fail: {r}"));
            let id = format!("bad-{}", i + 1);
            let at = format!("line {}: plugin `hostile`", i + 1);
            assert!(error.starts_with(&at), "{error}");
            assert!(error.contains(&version), "{error}");
            assert!(error.contains(&format!("customer `{id}`")), "{error}");
            assert!(error.contains(cause), "expected `{cause}` in: {error}");
        } else {
            assert_eq!(r["match"], true, "record {i} should succeed: {r}");
            assert!(r.get("error").is_none());
        }
    }
}

#[test]
fn an_infinite_loop_is_stopped_by_the_time_budget() {
    let engine = Engine::new(Limits {
        time_per_record: Duration::from_millis(20),
        ..Limits::default()
    })
    .unwrap();
    let started = Instant::now();
    let results = hostile(&engine, r#"{"mode":"loop"}"#);
    assert_only_victims_failed(&results, "exceeded its time budget");
    // Bounded: two loops of 20 ms each, not forever (a timeout that only catches a hang).
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let engine = Engine::new(Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    })
    .unwrap();
    let results = hostile(&engine, r#"{"mode":"hog"}"#);
    assert_only_victims_failed(&results, "exceeded the memory cap of 16 MiB");
}

#[test]
fn deep_recursion_exhausts_the_stack_not_the_host() {
    let results = hostile(&engine(), r#"{"mode":"recurse"}"#);
    assert_only_victims_failed(&results, "exhausted its stack");
}

#[test]
fn a_panic_message_reaches_the_error() {
    let results = hostile(&engine(), r#"{"mode":"panic"}"#);
    assert_only_victims_failed(&results, "has no wallet");
    let error = results[1]["error"].as_str().unwrap();
    assert!(error.contains("customer bad-2 has no wallet"), "{error}");
    assert!(error.contains("panicked at"), "{error}");
    // As written: the line break after the location reads as a space, not as a literal `\n`.
    assert!(!error.contains("\\n"), "{error}");
    assert!(
        error.contains(".rs:") && error.contains(": customer bad-2 has no wallet"),
        "{error}"
    );
}

#[test]
fn a_read_the_rule_does_not_declare_is_that_records_error_naming_the_part_and_the_rule() {
    // Victims without transactions fail at the contacts, which the plugin does not declare.
    let results = hostile(&engine(), r#"{"mode":"undeclared"}"#);
    assert_only_victims_failed(
        &results,
        "rule `hostile` read `contacts`, which it does not declare",
    );
    // A victim with a transaction fails at the first undeclared member it reads; a declared
    // member (`at`) of the same transaction was handed over and read.
    let records = r#"{"id":"good-1","transactions":[{"id":"t","at":"2025-01-01T00:00:00Z","kind":"purchase","amount":5}]}
{"id":"bad-2","transactions":[{"id":"t","at":"2025-01-01T00:00:00Z","kind":"purchase","amount":5}]}
"#;
    let plugin = load(&engine(), "hostile");
    let (lines, _) = run_batch(&[eval(&plugin, r#"{"mode":"undeclared"}"#)], records, 1);
    assert_eq!(
        lines[0]["results"]["hostile"]["match"], true,
        "{}",
        lines[0]
    );
    let error = lines[1]["results"]["hostile"]["error"].as_str().unwrap();
    assert!(
        error.contains("rule `hostile` read `transactions.amount`, which it does not declare")
            && error.contains("add `Field::TransactionAmount` to its READS")
            && error.contains("customer `bad-2`"),
        "{error}"
    );
}

#[test]
fn a_rule_error_is_that_records_error() {
    let results = hostile(&engine(), r#"{"mode":"fail"}"#);
    assert_only_victims_failed(&results, "cannot judge customer");
}

#[test]
fn output_over_the_cap_fails_only_the_records_that_produced_it() {
    let engine = Engine::new(Limits {
        output_bytes_per_record: 64 << 10,
        ..Limits::default()
    })
    .unwrap();
    let results = hostile(&engine, r#"{"mode":"flood"}"#);
    assert_only_victims_failed(&results, "over the output cap");
}

#[test]
fn a_slow_plugin_within_budget_succeeds() {
    let results = hostile(&engine(), r#"{"mode":"dawdle","spin":200000}"#);
    assert!(results.iter().all(|r| r["match"] == true), "{results:?}");
}

#[test]
fn bad_parameters_are_refused_before_any_record() {
    let plugin = load(&engine(), "hostile");
    let e = eval(&plugin, r#"{"mode":"explode"}"#);
    let err = Worker::new().check(&e).unwrap_err().to_string();
    assert!(
        err.contains("plugin `hostile`") && err.contains("mode") && err.contains("explode"),
        "{err}"
    );
}

fn wat_plugin(abi: &str, body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (@custom "regua-abi" "{abi}")
            {body})"#
    ))
    .unwrap()
}

const EXPORTS: &str = r#"
    (memory (export "memory") 1)
    (func (export "regua_alloc") (param i32) (result i32) i32.const 0)
    (func (export "regua_metadata") (result i64) i64.const 0)
    (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64) i64.const 0)"#;

fn load_error(bytes: &[u8]) -> LoadError {
    Plugin::from_bytes(&engine(), "probe.wasm", bytes).unwrap_err()
}

#[test]
fn an_abi_mismatch_is_refused_before_instantiation() {
    // The start function would trap if the module were ever instantiated. ABI 2 plugins (the
    // version before the chunk of columns) and ABI 1 ones get the same plain message.
    for old in [1u32, 2] {
        let bytes = wat_plugin(
            &format!(r"\{old:02x}\00\00\00\01"),
            &format!("{EXPORTS} (func $boom unreachable) (start $boom)"),
        );
        let err = load_error(&bytes);
        assert!(
            matches!(
                err,
                LoadError::AbiMismatch {
                    found,
                    supported: 3,
                    ..
                } if found == old
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "plugin `probe.wasm` targets ABI {old}; this host supports 3 (rebuild it against \
                 this regua-sdk)"
            )
        );
    }
}

#[test]
fn modules_that_are_not_plugins_are_refused_plainly() {
    let no_section = wat::parse_str(format!("(module {EXPORTS})")).unwrap();
    assert!(
        load_error(&no_section)
            .to_string()
            .contains("has no `regua-abi` section")
    );

    for (name, bytes, why) in refused_modules() {
        let err = load_error(&bytes).to_string();
        assert!(err.contains(why), "{name}: {err}");
    }

    let bad_kind = wat_plugin(r"\03\00\00\00\09", EXPORTS);
    assert!(load_error(&bad_kind).to_string().contains("kind byte 9"));

    let garbage = b"\0asm\x01\0\0\0\xff\xff".to_vec();
    assert!(matches!(load_error(&garbage), LoadError::NotWasm { .. }));
    assert!(load_error(b"MZ not wasm").to_string().contains("magic"));
}

/// A plugin whose metadata is valid but whose every answer is a single 0xff byte.
pub(crate) fn liar_wasm() -> Vec<u8> {
    // Metadata is valid JSON, but every answer is a single 0xff byte.
    let meta =
        r#"{"name":"liar","kind":"segment","version":"1","description":"","abi":3,"params":{}}"#;
    let len = meta.len();
    wat_plugin(
        r"\03\00\00\00\01",
        &format!(
            r#"(memory (export "memory") 1)
            (data (i32.const 1024) "{meta}")
            (data (i32.const 4000) "\ff")
            (global $next (mut i32) (i32.const 8192))
            (func (export "regua_alloc") (param $n i32) (result i32)
                global.get $next
                global.get $next local.get $n i32.add global.set $next)
            (func (export "regua_metadata") (result i64) i64.const {packed})
            (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64)
                i32.const 8192 global.set $next
                i64.const {answer})"#,
            meta = meta.replace('"', "\\\""),
            packed = (1024u64 << 32) | len as u64,
            answer = (4000u64 << 32) | 1,
        ),
    )
}

/// A module that imports WASI, one built for the old ABI 1, one for a future ABI 4, and one
/// without the ABI's exports.
pub(crate) fn refused_modules() -> [(&'static str, Vec<u8>, &'static str); 4] {
    [
        (
            "wasi",
            wat_plugin(
                r"\03\00\00\00\01",
                &format!(
                    r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) {EXPORTS}"#
                ),
            ),
            "imports `wasi_snapshot_preview1.fd_write`",
        ),
        (
            "abi1",
            wat_plugin(r"\01\00\00\00\01", EXPORTS),
            "targets ABI 1; this host supports 3",
        ),
        (
            "abi4",
            wat_plugin(r"\04\00\00\00\01", EXPORTS),
            "targets ABI 4; this host supports 3",
        ),
        (
            "no-exports",
            wat_plugin(r"\03\00\00\00\01", r#"(memory (export "memory") 1)"#),
            "does not export `regua_alloc`",
        ),
    ]
}

#[test]
fn an_answer_that_does_not_decode_is_an_error_not_a_non_match() {
    let bytes = liar_wasm();
    let plugin = std::sync::Arc::new(Plugin::from_bytes(&engine(), "liar.wasm", &bytes).unwrap());
    let mut batch = EncodedBatch::new();
    batch.push(&regua_sdk::testing::customer(r#"{"id":"c-1"}"#));
    let e = eval(&plugin, "{}");
    let results = Worker::new().evaluate(&e, &batch).unwrap();
    let err = results[0].as_ref().unwrap_err();
    assert!(
        err.contains("does not decode") && err.contains("customer `c-1`"),
        "{err}"
    );
}

#[test]
fn no_state_crosses_calls_every_call_starts_afresh() {
    // A plugin that counts its calls in a static sees one call, every time: each call runs on a
    // fresh instance, so nothing of one customer or caller reaches the next.
    let plugin = load(&engine(), "hostile");
    let e = eval(&plugin, r#"{"mode":"remember","victims":""}"#);
    let mut worker = Worker::new();
    let mut batch = EncodedBatch::new();
    batch.push(&regua_sdk::testing::customer(r#"{"id":"c-1"}"#));
    let reason = |r: &regua_host::RecordResult| match r {
        Ok(regua_host::Outcome::Segment(m)) => m.reasons[0].clone(),
        other => panic!("{other:?}"),
    };
    for _ in 0..3 {
        assert_eq!(reason(&worker.evaluate(&e, &batch).unwrap()[0]), "call 1");
    }
    // The benchmark's warm mode does keep state: the test would fail if fresh instances were not
    // what the product uses.
    let mut warm = Worker::reusing_instances_for_benchmarks();
    warm.evaluate(&e, &batch).unwrap();
    assert_eq!(reason(&warm.evaluate(&e, &batch).unwrap()[0]), "call 2");
}

#[test]
fn the_baseline_code_a_new_build_first_runs_on_keeps_the_same_sandbox() {
    // `regua serve` answers from Winch's code until Cranelift's is ready: every limit must hold
    // there too.
    let baseline = |limits: Limits| Engine::new(limits).unwrap().baseline_only().unwrap();
    let engine = baseline(Limits {
        time_per_record: Duration::from_millis(20),
        memory_bytes: 16 << 20,
        ..Limits::default()
    });
    assert!(!load(&engine, "hostile").is_optimised());
    assert_only_victims_failed(
        &hostile(&engine, r#"{"mode":"loop"}"#),
        "exceeded its time budget",
    );
    assert_only_victims_failed(
        &hostile(&engine, r#"{"mode":"hog"}"#),
        "exceeded the memory cap of 16 MiB",
    );
    assert_only_victims_failed(
        &hostile(&engine, r#"{"mode":"recurse"}"#),
        "exhausted its stack",
    );
    assert_only_victims_failed(&hostile(&engine, r#"{"mode":"panic"}"#), "has no wallet");
}
