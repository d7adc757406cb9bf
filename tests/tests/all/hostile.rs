//! Plugins written by hand in WebAssembly text (`tests/wat`), each calling the host the way the
//! SDK never would, to attack one guarantee of the sandbox. Each is run through `regua eval`,
//! through `regua batch` beside a good plugin whose answers must be complete, and through the
//! service while other requests are answered.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use regua_host::{EncodedBatch, Engine, Limits, LoadError, Plugin, Worker};
use regua_tests::{engine, load, regua_bin, repo, wasm};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::{regua, text};
use crate::eval;
use crate::http::{self, Service};

const NOW: &str = "2025-03-11T12:00:00Z";
const CUSTOMERS: &str =
    "{\"id\":\"c-1\"}\n{\"id\":\"c-2\"}\n{\"id\":\"c-3\"}\n{\"id\":\"c-4\"}\n{\"id\":\"c-5\"}\n";

fn path(name: &str) -> String {
    wasm(name).to_str().unwrap().to_owned()
}

/// `regua eval` of `plugin` on one customer, with `extra` arguments.
fn cli_eval(plugin: &str, extra: &[&str]) -> std::process::Output {
    let p = path(plugin);
    let mut args = vec!["eval", &p, "--customer", "-", "--now", NOW];
    args.extend_from_slice(extra);
    regua(&args, r#"{"id":"c-1"}"#)
}

/// `regua batch` of `plugins` over CUSTOMERS: the exit status, the output lines, stderr.
fn cli_batch(plugins: &[&str], extra: &[&str]) -> (std::process::ExitStatus, Vec<Value>, String) {
    let paths: Vec<String> = plugins.iter().map(|p| path(p)).collect();
    let mut args = vec!["batch"];
    for p in &paths {
        args.extend(["--plugin", p.as_str()]);
    }
    args.extend(["--input", "-", "--now", NOW]);
    args.extend_from_slice(extra);
    let out = regua(&args, CUSTOMERS);
    let lines = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out.status, lines, text(&out.stderr))
}

/// Checks a batch's lines: one per customer, `good` in the segment for every one, and `bad`'s
/// entry an error containing `cause` for every one.
fn assert_good_complete_bad_failed(lines: &[Value], good: &str, bad: &str, cause: &str) {
    assert_eq!(lines.len(), 5, "one line per input line: {lines:?}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["id"], format!("c-{}", i + 1), "{line}");
        assert_eq!(line["results"][good]["match"], true, "{line}");
        let error = line["results"][bad]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("`{bad}` should fail on every line: {line}"));
        assert!(error.contains(cause), "expected `{cause}` in: {error}");
        assert!(line["results"][bad].get("match").is_none(), "{line}");
    }
}

/// A service batch of `plugins` over CUSTOMERS, as lines.
async fn service_batch(s: &Service, plugins: &str) -> (StatusCode, Vec<Value>) {
    let r = s
        .client
        .post(s.url(&format!("/v1/batch?plugins={plugins}&now={NOW}")))
        .body(CUSTOMERS)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let lines = r
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (status, lines)
}

/// Runs `attack` while the service keeps answering a good plugin: every one of 20 evaluations
/// of `good` meanwhile answers 200.
async fn meanwhile_good_requests_are_answered<T>(
    s: &Service,
    good: &str,
    attack: impl std::future::Future<Output = T>,
) -> T {
    let body = json!({"customer": {"id": "x"}, "now": NOW}).to_string();
    let others = async {
        for _ in 0..20 {
            let (status, v) = s
                .post(&format!("/v1/plugins/{good}/evaluate"), body.clone())
                .await;
            assert_eq!(status, StatusCode::OK, "{v}");
        }
    };
    let (result, ()) = tokio::join!(attack, others);
    result
}

/// Lands the built plugin `name` in the service's folder, as a build does.
fn land_plugin(s: &Service, name: &str) {
    http::land(&s.plugin_path(name), &std::fs::read(wasm(name)).unwrap());
}

/// Waits until `/v1/plugins` says each text at least the number of times given with it (a
/// generous timeout only catches a hang).
async fn until_listed(s: &Service, wanted: &[(&str, usize)]) {
    http::eventually(
        Duration::from_secs(60),
        &format!("never listed: {wanted:?}"),
        async || {
            let (_, list) = s.get("/v1/plugins").await;
            let list = list.to_string();
            wanted
                .iter()
                .all(|(text, n)| list.matches(text).count() >= *n)
        },
    )
    .await;
}

#[test]
fn regua_item_cannot_extend_the_time_budget_cli() {
    for plugin in ["wat-item-loop", "wat-item-march"] {
        let out = cli_eval(plugin, &[]);
        assert_eq!(out.status.code(), Some(1), "{plugin}");
        let err = text(&out.stderr);
        assert!(err.contains("out of order"), "{plugin}: {err}");

        // In a batch, the host's check call over no customers already catches it.
        let (status, lines, err) = cli_batch(&["wat-good", plugin], &[]);
        assert!(status.success(), "{plugin}: {err}");
        assert_good_complete_bad_failed(&lines, "wat-good", plugin, "called regua.item(");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regua_item_cannot_pin_the_services_threads() {
    let s = http::start(
        &["wat-good", "wat-item-loop", "wat-item-march", "lapsed"],
        None,
    )
    .await;
    // Two looping batches at once: before, they held both evaluation threads for good.
    let attack = async {
        tokio::join!(
            service_batch(&s, "wat-good,wat-item-loop"),
            service_batch(&s, "wat-good,wat-item-march")
        )
    };
    let ((s1, loop_lines), (s2, march_lines)) =
        meanwhile_good_requests_are_answered(&s, "lapsed", attack).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_good_complete_bad_failed(&loop_lines, "wat-good", "wat-item-loop", "regua.item(");
    assert_good_complete_bad_failed(&march_lines, "wat-good", "wat-item-march", "regua.item(");
    // A call of its own over one customer: out of order at the second item.
    let body = json!({"customer": {"id": "x"}, "now": NOW}).to_string();
    let (status, v) = s.post("/v1/plugins/wat-item-loop/evaluate", body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("out of order"), "{v}");
}

#[test]
fn loading_has_a_deadline_that_nothing_extends_cli() {
    for plugin in ["wat-start-loop", "wat-metadata-loop"] {
        for args in [
            vec!["inspect", "PLUGIN"],
            vec!["eval", "PLUGIN", "--customer", "-"],
        ] {
            let p = path(plugin);
            let args: Vec<&str> = args
                .iter()
                .map(|a| if *a == "PLUGIN" { p.as_str() } else { a })
                .collect();
            let out = regua(&args, r#"{"id":"c-1"}"#);
            assert_eq!(out.status.code(), Some(1), "{plugin} {args:?}");
            let err = text(&out.stderr);
            assert!(err.contains("exceeded its loading time"), "{plugin}: {err}");
        }
        let (status, lines, err) = cli_batch(&["wat-good", plugin], &[]);
        assert_eq!(status.code(), Some(1), "a plugin that cannot load: {err}");
        assert!(
            lines.is_empty() && err.contains("exceeded its loading time"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loading_has_a_deadline_the_service_starts_and_the_watcher_goes_on() {
    // A start function that never returns, in the folder at start: the service still starts.
    let s = http::start(&["wat-start-loop", "lapsed"], None).await;
    let (status, list) = s.get("/v1/plugins").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.to_string().contains("exceeded its loading time"),
        "{list}"
    );
    // A metadata export that loops, landed while serving; then a good plugin lands after it.
    let attack = async {
        land_plugin(&s, "wat-metadata-loop");
        http::time_to_serve(
            &s,
            "cross-sell",
            &std::fs::read(wasm("cross-sell")).unwrap(),
        )
        .await;
    };
    meanwhile_good_requests_are_answered(&s, "lapsed", attack).await;
    until_listed(&s, &[("exceeded its loading time", 2)]).await;
}

#[test]
fn one_memory_per_plugin_and_tables_count_against_the_cap() {
    for (plugin, why) in [
        ("wat-memories", "has 21 memories"),
        ("wat-tables", "has 99 tables"),
    ] {
        let out = regua(&["inspect", &path(plugin)], "");
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains(why), "{}", text(&out.stderr));
    }
    // A table grown past what the cap leaves beside the memory (1 MiB: 256 KiB of memory and
    // 800 KB of table).
    let out = cli_eval("wat-table-hog", &["--memory-limit", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("exceeded the memory cap"),
        "{}",
        text(&out.stderr)
    );
    let (status, lines, err) = cli_batch(&["wat-good", "wat-table-hog"], &["--memory-limit", "1"]);
    assert!(status.success(), "{err}");
    assert_good_complete_bad_failed(
        &lines,
        "wat-good",
        "wat-table-hog",
        "exceeded the memory cap",
    );
    // Within the default cap, it is fine.
    assert!(cli_eval("wat-table-hog", &[]).status.success());
}

/// This process's resident memory, in bytes.
fn resident() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib << 10
}

#[test]
fn memory_a_call_used_is_returned_when_it_ends() {
    // Each call touches 56 MiB. Kept instances would keep it resident, one per thread.
    let engine = Engine::new(Limits {
        time_per_record: Duration::from_secs(5),
        ..Limits::default()
    })
    .unwrap();
    let plugin = load(&engine, "wat-memory-hog");
    let e = eval(&plugin, "{}");
    let mut batch = EncodedBatch::new();
    batch.push(&regua_sdk::testing::customer(r#"{"id":"c-1"}"#));
    let before = resident();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let mut worker = Worker::new();
                for _ in 0..5 {
                    let r = worker.evaluate(&e, &batch).unwrap();
                    assert!(r[0].is_ok(), "{r:?}");
                }
                // The worker stays alive, as a service's does.
                std::mem::forget(worker);
            });
        }
    });
    let grown = resident().saturating_sub(before);
    assert!(grown < 40 << 20, "{} MiB still resident", grown >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_keeps_no_memory_of_a_plugin_after_its_calls_or_its_unloading() {
    // Touching 56 MiB page by page takes a while on a busy machine: a budget that allows it.
    let limits = Limits {
        time_per_record: Duration::from_secs(5),
        ..Limits::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let s = http::start_limited(
        &["wat-memory-hog", "lapsed"],
        Some("t0k3n"),
        None,
        dir,
        limits,
    )
    .await;
    let before = resident();
    let attack = async {
        for _ in 0..5 {
            let (a, b) = tokio::join!(
                service_batch(&s, "wat-memory-hog"),
                service_batch(&s, "wat-memory-hog")
            );
            assert_eq!(
                (a.0, b.0),
                (StatusCode::OK, StatusCode::OK),
                "{:?} {:?}",
                a.1,
                b.1
            );
            assert!(
                a.1.iter()
                    .all(|l| l["results"]["wat-memory-hog"]["match"] == true)
            );
        }
    };
    meanwhile_good_requests_are_answered(&s, "lapsed", attack).await;
    let grown = resident().saturating_sub(before);
    assert!(
        grown < 40 << 20,
        "{} MiB still resident after the calls",
        grown >> 20
    );
    let r = s
        .client
        .delete(s.url("/v1/plugins/wat-memory-hog"))
        .bearer_auth("t0k3n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let grown = resident().saturating_sub(before);
    assert!(
        grown < 40 << 20,
        "{} MiB still resident after unloading",
        grown >> 20
    );
}

#[test]
fn log_output_is_bounded_and_cannot_forge_lines() {
    let p = path("wat-log-flood");
    let out = Command::new(regua_bin())
        .args(["eval", &p, "--customer", "-", "--now", NOW])
        .env("RUST_LOG", "regua::plugin=trace")
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(br#"{"id":"c-1"}"#)?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    // 100,000 log calls of 66 bytes: at most the call's budget gets through, then one line.
    assert!(err.len() < 64 << 10, "{} bytes of log", err.len());
    let said = err.lines().filter(|l| l.contains("plugin says hi")).count();
    assert!((1..=100).contains(&said), "{said} lines");
    assert_eq!(err.matches("log truncated").count(), 1, "{err}");
    for line in err.lines().filter(|l| l.contains("FORGED")) {
        assert!(line.contains("plugin says hi\\n"), "a forged line: {line}");
    }
    assert!(
        !err.contains('\u{1b}'),
        "a raw escape sequence reached the terminal"
    );

    let (status, lines, err) = cli_batch(&["wat-good", "wat-log-flood"], &[]);
    assert!(status.success(), "{err}");
    assert_eq!(lines.len(), 5);
    assert!(
        lines
            .iter()
            .all(|l| l["results"]["wat-log-flood"]["match"] == true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_floods_do_not_hold_up_the_service() {
    let s = http::start(&["wat-good", "wat-log-flood", "lapsed"], None).await;
    let (status, lines) = meanwhile_good_requests_are_answered(
        &s,
        "lapsed",
        service_batch(&s, "wat-good,wat-log-flood"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        lines
            .iter()
            .all(|l| l["results"]["wat-log-flood"]["match"] == true)
    );
}

#[test]
fn no_customer_data_crosses_calls_cli() {
    let leak = r#"{"mode":"leak","victims":""}"#;
    // One call per line: no line sees the customer before it.
    let (status, lines, err) = cli_batch(&["hostile"], &["--params", leak, "--chunk-lines", "1"]);
    assert!(status.success(), "{err}");
    assert_eq!(lines.len(), 5);
    for line in &lines {
        assert_eq!(
            line["results"]["hostile"]["reasons"][0], "previous customer: []",
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_customer_data_crosses_requests_in_the_service() {
    let s = http::start(&["hostile", "lapsed"], None).await;
    let ask = async |id: &str| {
        let body = json!({"customer": {"id": id}, "now": NOW,
                          "params": {"mode": "leak", "victims": ""}});
        let (status, v) = s
            .post("/v1/plugins/hostile/evaluate", body.to_string())
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["reasons"][0].as_str().unwrap().to_owned()
    };
    let attack = async {
        for n in 0..10 {
            assert_eq!(ask(&format!("secret-{n}")).await, "previous customer: []");
        }
    };
    meanwhile_good_requests_are_answered(&s, "lapsed", attack).await;
}

#[test]
fn an_answer_must_be_exactly_what_the_abi_says_cli() {
    for plugin in ["wat-wrong-kind", "wat-trailing"] {
        let out = cli_eval(plugin, &[]);
        assert_eq!(out.status.code(), Some(1), "{plugin}");
        assert!(
            text(&out.stdout).contains("does not decode"),
            "{}",
            text(&out.stdout)
        );
        let (status, lines, err) = cli_batch(&["wat-good", plugin], &[]);
        assert!(status.success(), "{err}");
        assert_good_complete_bad_failed(&lines, "wat-good", plugin, "does not decode");
    }
    let (_, lines, _) = cli_batch(&["wat-good", "wat-trailing"], &[]);
    let error = lines[0]["results"]["wat-trailing"]["error"]
        .as_str()
        .unwrap();
    assert!(error.contains("1 byte(s) left over"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_must_be_exactly_what_the_abi_says_service() {
    let s = http::start(
        &["wat-good", "wat-wrong-kind", "wat-trailing", "lapsed"],
        None,
    )
    .await;
    let attack = async {
        for plugin in ["wat-wrong-kind", "wat-trailing"] {
            let body = json!({"customer": {"id": "c-1"}, "now": NOW}).to_string();
            let (status, v) = s
                .post(&format!("/v1/plugins/{plugin}/evaluate"), body)
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
            assert!(v.to_string().contains("does not decode"), "{v}");
            let (status, lines) = service_batch(&s, &format!("wat-good,{plugin}")).await;
            assert_eq!(status, StatusCode::OK);
            assert_good_complete_bad_failed(&lines, "wat-good", plugin, "does not decode");
        }
    };
    meanwhile_good_requests_are_answered(&s, "lapsed", attack).await;
}

#[test]
fn a_plugin_failing_its_check_fails_alone_cli() {
    let (status, lines, err) = cli_batch(&["wat-good", "wat-check-trap"], &[]);
    assert!(status.success(), "{err}");
    assert_good_complete_bad_failed(&lines, "wat-good", "wat-check-trap", "unreachable");
    assert!(err.contains("warning: plugin `wat-check-trap`"), "{err}");
    // Alone, nothing could be answered: the batch is refused before any line is read.
    let (status, lines, err) = cli_batch(&["wat-check-trap"], &[]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(lines.is_empty() && err.contains("unreachable"), "{err}");
    // It answers a call of its own all the same.
    assert!(cli_eval("wat-check-trap", &[]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_failing_its_check_fails_alone_service() {
    let s = http::start(&["wat-good", "wat-check-trap", "lapsed"], None).await;
    let attack = async {
        let (status, lines) = service_batch(&s, "wat-good,wat-check-trap").await;
        assert_eq!(status, StatusCode::OK);
        assert_good_complete_bad_failed(&lines, "wat-good", "wat-check-trap", "unreachable");
        let (status, _) = service_batch(&s, "wat-check-trap").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    };
    meanwhile_good_requests_are_answered(&s, "lapsed", attack).await;
}

fn load_with(limits: Limits, name: &str) -> Result<Plugin, LoadError> {
    let engine = Engine::new(limits).unwrap();
    Plugin::from_bytes(&engine, name, &std::fs::read(wasm(name)).unwrap())
}

#[test]
fn loading_is_bounded_by_size_functions_locals_and_compile_time() {
    let cases = [
        (
            Limits {
                module_bytes: 100_000,
                ..Limits::default()
            },
            "it is ",
            "the limit is 100000 bytes",
        ),
        (
            Limits {
                functions: 100,
                ..Limits::default()
            },
            "functions",
            "the limit is 100",
        ),
        (
            Limits {
                function_bytes: 1000,
                ..Limits::default()
            },
            "a function's body is",
            "the limit is 1000",
        ),
        (
            Limits {
                locals_per_function: 10,
                ..Limits::default()
            },
            "locals",
            "the limit is 10",
        ),
        (
            Limits {
                compile_time: Duration::from_millis(1),
                ..Limits::default()
            },
            "compiling took longer than the limit",
            "`welcome`",
        ),
    ];
    for (limits, what, limit) in cases {
        let err = load_with(limits, "welcome").unwrap_err().to_string();
        assert!(err.contains(what) && err.contains(limit), "{err}");
    }
    // Every example plugin loads within the defaults.
    for entry in std::fs::read_dir(regua_tests::plugins_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("wat-") {
            load_with(Limits::default(), &name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

/// A module of `functions` trivial functions, written as text.
fn many_functions(functions: usize) -> Vec<u8> {
    let prelude = std::fs::read_to_string(repo().join("tests/wat/prelude.wat")).unwrap();
    let mut text = format!("(module {}", prelude.replace("@NAME@", "many"));
    text.push_str(r#"(func (export "regua_metadata") (result i64) (call $metadata))"#);
    text.push_str(
        r#"(func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64) (call $answer (local.get 2)))"#,
    );
    for _ in 0..functions {
        text.push_str("(func (result i32) i32.const 1)");
    }
    text.push(')');
    wat::parse_str(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_over_the_loading_limits_are_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let many = dir.path().join("many.wasm");
    std::fs::write(&many, many_functions(200_000)).unwrap();
    let out = regua(&["inspect", many.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("defines 200007 functions; the limit is 10000"),
        "{err}"
    );

    let s = http::start(&["lapsed"], None).await;
    let attack = async {
        http::land(&s.plugin_path("many"), &std::fs::read(&many).unwrap());
        for plugin in ["wat-memories", "wat-tables"] {
            land_plugin(&s, plugin);
        }
        until_listed(
            &s,
            &[
                ("the limit is 10000", 1),
                ("has 21 memories", 1),
                ("has 99 tables", 1),
            ],
        )
        .await;
    };
    meanwhile_good_requests_are_answered(&s, "lapsed", attack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_slow_to_compile_does_not_hold_up_other_reloads() {
    // Compiling `welcome` takes longer than 1 ms, and every compile here is "slow": each
    // reload fails with the compile-time error, and a later file is still looked at, so one
    // slow module never blocks the watcher.
    let limits = Limits {
        compile_time: Duration::from_millis(1),
        ..Limits::default()
    };
    let s = http::start_limited(&[], None, None, tempfile::tempdir().unwrap(), limits).await;
    for name in ["welcome", "standard-rest", "lapsed"] {
        land_plugin(&s, name);
    }
    until_listed(&s, &[("compiling took longer than the limit", 3)]).await;
}

#[test]
fn plugin_names_are_short_slugs() {
    let out = regua(&["inspect", &path("wat-bad-name")], "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("is not allowed; a plugin name is a short slug"),
        "{err}"
    );
    assert!(!err.contains("\nregua_injected_metric"), "{err}");
    for ok in ["rfm", "welcome-v2", "a_b", "0day"] {
        assert!(regua_host::runtime::plugin::check_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "Rfm",
        "-x",
        "_x",
        "a b",
        "../evil",
        "a\nb",
        "x\"y",
        &"a".repeat(65),
    ] {
        assert!(
            regua_host::runtime::plugin::check_name(bad).is_err(),
            "{bad:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_refuses_bad_names_from_files_metadata_and_urls() {
    let s = http::start(&["lapsed"], Some("t0k3n")).await;
    let attack = async {
        land_plugin(&s, "wat-bad-name");
        http::land(
            &s.dir.path().join("Bad Name.wasm"),
            &std::fs::read(wasm("wat-good")).unwrap(),
        );
        until_listed(&s, &[("its name", 1), ("the file name", 1)]).await;
        for (method, url) in [
            ("PUT", "/v1/plugins/..%2Fevil"),
            ("GET", "/v1/plugins/..%2Fevil"),
            ("POST", "/v1/plugins/Evil%0Aname/evaluate"),
            ("DELETE", "/v1/plugins/..%2Fevil"),
        ] {
            let r = s
                .client
                .request(method.parse().unwrap(), s.url(url))
                .bearer_auth("t0k3n")
                // The name is refused whatever the body; the evaluate endpoint reads JSON.
                .header("content-type", "application/json")
                .body(std::fs::read(wasm("wat-good")).unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{method} {url}");
            let v: Value = r.json().await.unwrap();
            assert!(v.to_string().contains("short slug"), "{v}");
        }
    };
    meanwhile_good_requests_are_answered(&s, "lapsed", attack).await;
    let metrics = s.metrics().await;
    assert!(!metrics.contains("regua_injected_metric"), "{metrics}");
    assert!(!s.dir.path().parent().unwrap().join("evil.wasm").exists());
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let lapsed = path("lapsed");
    let commands: [(&[&str], &str); 4] = [
        (&["inspect", &lapsed], ""),
        (
            &["eval", &lapsed, "--customer", "-", "--now", NOW],
            r#"{"id":"c-1"}"#,
        ),
        (
            &["batch", "--plugin", &lapsed, "--input", "-", "--now", NOW],
            CUSTOMERS,
        ),
        (&["generate", "--count", "100"], ""),
    ];
    for (args, input) in commands {
        // The reading end is closed before the command writes anything.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = Command::new(regua_bin())
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::piped())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("error"),
            "{args:?}: {err}"
        );
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
    }
}

#[test]
fn a_warm_instance_is_only_for_benchmarks() {
    // The plugin that reports the previous customer sees none in the product, and sees one
    // when the benchmark's warm mode reuses its instance: the leak test above would catch a
    // product that reused instances.
    let plugin = Arc::new(
        Plugin::from_bytes(
            &engine(),
            "hostile",
            &std::fs::read(wasm("hostile")).unwrap(),
        )
        .unwrap(),
    );
    let e = eval(&plugin, r#"{"mode":"leak","victims":""}"#);
    let mut batch = EncodedBatch::new();
    batch.push(&regua_sdk::testing::customer(r#"{"id":"c-1"}"#));
    let mut warm = Worker::reusing_instances_for_benchmarks();
    warm.evaluate(&e, &batch).unwrap();
    let second = warm.evaluate(&e, &batch).unwrap();
    let Ok(regua_host::Outcome::Segment(m)) = &second[0] else {
        panic!("{second:?}")
    };
    assert_eq!(m.reasons[0], "previous customer: [c-1]");
}

#[test]
fn runaway_compilations_cannot_pile_up() {
    // Every compile here runs past its 1 ms limit and goes on in the background: four at once
    // are allowed, a fifth load is refused until one of them ends.
    let engine = Engine::new(Limits {
        compile_time: Duration::from_millis(1),
        ..Limits::default()
    })
    .unwrap();
    let bytes = std::fs::read(wasm("welcome")).unwrap();
    let load = || {
        Plugin::from_bytes(&engine, "welcome", &bytes)
            .unwrap_err()
            .to_string()
    };
    for _ in 0..4 {
        let err = load();
        assert!(
            err.contains("compiling took longer than the limit"),
            "{err}"
        );
    }
    let err = load();
    assert!(
        err.contains("4 modules that ran past the compile-time limit are still compiling"),
        "{err}"
    );
    let started = std::time::Instant::now();
    while load().contains("still compiling") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the runaway count never drained"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plugin that traps before ever calling `regua.item` (so nothing says on which customer)
/// fails only the customer whose data trips it: the host halves the chunk until it finds them,
/// and every other customer of the chunk gets its answer.
#[test]
fn a_trap_before_regua_item_fails_only_the_customer_behind_it() {
    let mut customers = String::new();
    for i in 1..=60 {
        let id = if i == 37 {
            "c-BOOM".to_owned()
        } else {
            format!("c-{i}")
        };
        customers.push_str(&format!("{{\"id\":\"{id}\"}}\n"));
    }
    let p = path("wat-trap-marker");
    let out = regua(
        &["batch", "--plugin", &p, "--input", "-", "--now", NOW],
        &customers,
    );
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 60);
    for line in &lines {
        let r = &line["results"]["wat-trap-marker"];
        if line["id"] == "c-BOOM" {
            let e = r["error"].as_str().unwrap();
            assert!(e.contains("failed on customer `c-BOOM`"), "{e}");
        } else {
            assert_eq!(r["match"], true, "{line}");
        }
    }
    // Every customer tripping it: each gets the error (the halving is bounded by the chunk's
    // size, so a plugin that traps on everything costs a few calls per level, not one per customer).
    let all: String = (1..=60)
        .map(|i| format!("{{\"id\":\"BOOM-{i}\"}}\n"))
        .collect();
    let out = regua(
        &["batch", "--plugin", &p, "--input", "-", "--now", NOW],
        &all,
    );
    let errors = text(&out.stdout).matches("\"error\"").count();
    assert_eq!(errors, 60, "{}", text(&out.stdout));
}

/// A plugin gets the members it declared and no other, whatever another plugin of the same
/// batch reads: written by hand (so the SDK's own checks are not what is tested), it declares
/// `transactions.at` and answers whether its bytes hold "SECR"; a transaction's business unit
/// "SECRET-BU" reaches `first-cashout-pending`, which declares it, and not this plugin.
#[test]
fn a_plugin_sees_no_member_it_did_not_declare() {
    let (own, other) = (path("wat-members"), wasm("first-cashout-pending"));
    // The plugin answers for its whole call, so each customer is a run of its own.
    let run = |customer: &str| -> Value {
        let out = regua(
            &[
                "batch",
                "--plugin",
                &own,
                "--plugin",
                other.to_str().unwrap(),
                "--input",
                "-",
                "--now",
                NOW,
            ],
            &format!("{customer}\n"),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_str(text(&out.stdout).trim()).unwrap()
    };
    let secret = run(
        "{\"id\":\"c-1\",\"transactions\":[{\"id\":\"t1\",\"at\":\"2025-03-01T00:00:00Z\",\"kind\":\"cashin\",\"amount\":10,\"currency\":\"BRL\",\"business_unit\":\"SECRET-BU\"}]}",
    );
    assert_eq!(
        secret["results"]["wat-members"]["match"], false,
        "the undeclared business unit reached it: {secret}"
    );
    assert_eq!(
        secret["results"]["first-cashout-pending"]["match"], true,
        "{secret}"
    );
    // The id always comes: the plugin does read what it is given.
    let id = run("{\"id\":\"SECRET-2\"}");
    assert_eq!(id["results"]["wat-members"]["match"], true, "{id}");
}

/// `regua.zone` answers as docs/ABI.md §3 says to a plugin that asks without the SDK (a
/// length without room, nothing written one byte short, the canonical name and TZif data with
/// room, -1 for no zone or a name too long), and a name or buffer outside the plugin's memory
/// fails that plugin alone, naming the misuse.
#[test]
fn the_zone_import_answers_as_documented_and_refuses_memory_it_does_not_own() {
    let (status, lines, err) = cli_batch(&["wat-good", "wat-zone"], &[]);
    assert!(status.success(), "{err}");
    assert_eq!(lines.len(), 5, "{lines:?}");
    for line in &lines {
        assert_eq!(line["results"]["wat-zone"]["match"], true, "{line}");
    }
    for (plugin, cause) in [
        (
            "wat-zone-bad-name",
            "regua.zone with a name outside its memory",
        ),
        (
            "wat-zone-bad-buffer",
            "regua.zone with a buffer outside its memory",
        ),
    ] {
        let (status, lines, err) = cli_batch(&["wat-good", plugin], &[]);
        assert!(status.success(), "{err}");
        assert_good_complete_bad_failed(&lines, "wat-good", plugin, cause);
    }
}
