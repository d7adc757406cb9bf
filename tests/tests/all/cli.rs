//! The `regua` command line, run as a user runs it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use regua_tests::{plugin_target_dir, regua_bin, repo, wasm};

pub(crate) fn regua(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(regua_bin())
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command may end without reading its input (an error found first): what it printed is
    // what the test checks, so a closed pipe here is no failure.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn eval_prints_the_result_with_plugin_and_version() {
    let out = regua(
        &[
            "eval",
            wasm("lapsed").to_str().unwrap(),
            "--customer",
            "-",
            "--now",
            "2025-03-31T12:00:01Z",
        ],
        r#"{"id":"c-1","transactions":[{"id":"t","at":"2025-03-01T12:00:00Z","kind":"purchase","amount":10}]}"#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["plugin"], "lapsed");
    assert_eq!(v["match"], true);
    assert_eq!(v["version"].as_str().unwrap().len(), 16);
    assert_eq!(v["reasons"][0], "last purchase 30 days ago (limit 30d)");
}

#[test]
fn eval_of_a_failing_plugin_exits_non_zero_and_says_why() {
    let out = regua(
        &[
            "eval",
            wasm("hostile").to_str().unwrap(),
            "--customer",
            "-",
            "--params",
            r#"{"mode":"panic"}"#,
        ],
        r#"{"id":"bad-1"}"#,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("plugin `hostile`")
            && err.contains("customer `bad-1`")
            && err.contains("has no wallet"),
        "{err}"
    );
}

#[test]
fn eval_reports_bad_input_by_field() {
    let out = regua(
        &["eval", wasm("lapsed").to_str().unwrap(), "--customer", "-"],
        r#"{"id":"c","tz":3}"#,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("field `tz`"),
        "{}",
        text(&out.stderr)
    );

    let out = regua(
        &["eval", "no-such-plugin", "--customer", "-"],
        r#"{"id":"c"}"#,
    );
    assert!(
        text(&out.stderr).contains("no plugin `no-such-plugin`"),
        "{}",
        text(&out.stderr)
    );

    let rest = wasm("standard-rest");
    let out = regua(
        &["eval", rest.to_str().unwrap(), "--customer", "-"],
        r#"{"id":"c"}"#,
    );
    assert!(
        text(&out.stderr).contains("the proposed `message` is missing"),
        "{}",
        text(&out.stderr)
    );

    let out = regua(
        &[
            "eval",
            rest.to_str().unwrap(),
            "--customer",
            "-",
            "--message",
            r#"{"channel":"fax","category":"marketing"}"#,
        ],
        r#"{"id":"c"}"#,
    );
    assert!(
        text(&out.stderr).contains("--message") && text(&out.stderr).contains("fax"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn batch_streams_one_line_per_input_line_and_summarizes() {
    let input = "{\"id\":\"a\"}\n{broken\n{\"id\":\"b\"}\n";
    let (lapsed, cross) = (wasm("lapsed"), wasm("cross-sell"));
    let args = [
        "batch",
        "--plugin",
        lapsed.to_str().unwrap(),
        "--plugin",
        cross.to_str().unwrap(),
        "--input",
        "-",
        "--now",
        "2025-03-11T12:00:00Z",
    ];
    let out = regua(&args, input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["id"], "a");
    assert!(lines[0]["results"]["cross-sell"]["match"].is_boolean());
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[2]["id"], "b");
    let summary = text(&out.stderr);
    assert!(
        summary.contains("3 lines")
            && summary.contains("1 not a valid record")
            && summary.contains("0 plugin failures"),
        "{summary}"
    );

    let mut strict = args.to_vec();
    strict.push("--fail-on-error");
    assert_eq!(regua(&strict, input).status.code(), Some(3));
}

#[test]
fn batch_writes_csv_with_a_column_per_plugin() {
    let input = "{\"id\":\"a, \\\"the first\\\"\"}\n{broken\n{\"id\":\"b\",\"profile\":{\"created_at\":\"2025-03-11T11:00:00Z\"}}\n{\"id\":\"b\"}\n";
    let (lapsed, welcome) = (wasm("lapsed"), wasm("welcome"));
    let args = [
        "batch",
        "--format",
        "csv",
        "-p",
        lapsed.to_str().unwrap(),
        "-p",
        welcome.to_str().unwrap(),
        "-i",
        "-",
        "--now",
        "2025-03-11T12:00:00Z",
    ];
    let out = regua(&args, input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut reader = csv::Reader::from_reader(&out.stdout[..]);
    assert_eq!(
        reader.headers().unwrap(),
        vec!["line", "id", "lapsed", "welcome", "error"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4, "one row per input line");
    let row = |i: usize| rows[i].iter().collect::<Vec<_>>();
    // Quotes and commas in an id survive; a journey with nothing to do has an empty cell.
    assert_eq!(row(0), vec!["1", "a, \"the first\"", "false", "", ""]);
    assert_eq!(&row(1)[..4], &["2", "", "", ""]);
    assert!(
        row(1)[4].starts_with("key must be a string"),
        "{:?}",
        row(1)
    );
    assert_eq!(&row(2)[..3], &["3", "b", "false"]);
    assert!(
        row(2)[3].starts_with("enter:welcome ") && row(2)[3].contains(" send:email:"),
        "{:?}",
        row(2)
    );
    assert_eq!(&row(3)[..4], &["4", "b", "", ""]);
    assert!(row(3)[4].contains("earlier line"), "{:?}", row(3));
}

/// A reason written with `because!` is not even worked out when the output shows no reasons
/// (CSV), and is when it does (NDJSON): the hostile plugin's reason panics as it is formatted.
#[test]
fn reasons_are_worked_out_only_for_outputs_that_show_them() {
    let hostile = wasm("hostile");
    let run = |format: &str| {
        let args = [
            "batch",
            "--format",
            format,
            "-p",
            hostile.to_str().unwrap(),
            "--params",
            r#"{"mode":"costly_reason"}"#,
            "-i",
            "-",
            "--now",
            "2025-03-11T12:00:00Z",
        ];
        regua(&args, "{\"id\":\"bad-1\"}\n{\"id\":\"bad-2\"}\n")
    };
    let out = run("csv");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut reader = csv::Reader::from_reader(&out.stdout[..]);
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(
        rows,
        [["1", "bad-1", "true", ""], ["2", "bad-2", "true", ""]]
    );
    let out = run("ndjson");
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (line, id) in lines.iter().zip(["bad-1", "bad-2"]) {
        let error = line["results"]["hostile"]["error"]
            .as_str()
            .unwrap_or_default();
        assert!(
            error.contains(&format!("formatted the reason for {id}")),
            "{line}"
        );
    }
}

#[test]
fn batch_refuses_bad_parameters_before_reading_input() {
    let out = regua(
        &[
            "batch",
            "-p",
            wasm("lapsed").to_str().unwrap(),
            "-i",
            "-",
            "--params",
            r#"{"dayz":3}"#,
        ],
        "{\"id\":\"a\"}\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("plugin `lapsed`") && err.contains("dayz"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn inspect_prints_metadata() {
    let out = regua(&["inspect", wasm("rfm").to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "rfm");
    assert_eq!(v["kind"], "segment");
    assert_eq!(v["abi"], regua_sdk::wire::ABI_VERSION);
    assert_eq!(v["params"]["segment"], "Champions");
    assert_eq!(
        v["reads"],
        serde_json::json!([
            "transactions.at",
            "transactions.kind",
            "transactions.amount",
            "transactions.currency"
        ])
    );
}

#[test]
fn generate_is_deterministic_for_a_seed() {
    let a = regua(&["generate", "-n", "20", "--seed", "9"], "");
    let b = regua(&["generate", "-n", "20", "--seed", "9"], "");
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(text(&a.stdout).lines().count(), 20);
}

#[test]
fn help_explains_every_subcommand() {
    for sub in [
        "eval", "batch", "inspect", "new", "build", "generate", "test",
    ] {
        let out = regua(&[sub, "--help"], "");
        assert!(out.status.success());
        assert!(
            text(&out.stdout).contains("Example:"),
            "`regua {sub} --help` has no example"
        );
    }
}

/// The walkthrough: scaffold, test natively, build to wasm, evaluate. With a copy of the binary,
/// as `cargo install` leaves one, in a fresh folder outside any checkout: the SDK the binary
/// carries is written out once beside the crates and shared by them.
#[test]
fn a_scaffolded_plugin_builds_passes_its_test_and_runs() {
    let installed = tempfile::tempdir().unwrap();
    let bin = installed.path().join("regua");
    std::fs::copy(regua_bin(), &bin).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for kind in ["segment", "journey", "rest"] {
        let krate = dir.path().join(format!("my-{kind}"));
        let out = Command::new(&bin)
            .current_dir(dir.path())
            .args(["new", kind, &format!("my-{kind}"), "--dir"])
            .arg(&krate)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let sdk = dir.path().join("regua-sdk");
        assert!(
            sdk.join("src/lib.rs").is_file(),
            "the carried SDK is written out"
        );
        let said = text(&out.stderr);
        assert!(
            said.contains(&sdk.display().to_string()),
            "it says where the SDK is: {said}"
        );

        cargo_test(&krate, kind);

        let dist = dir.path().join("dist");
        let build = regua(
            &[
                "build",
                krate.to_str().unwrap(),
                "--out",
                dist.to_str().unwrap(),
                "--target-dir",
                plugin_target_dir().to_str().unwrap(),
            ],
            "",
        );
        assert!(build.status.success(), "{}", text(&build.stderr));
        let plugin = dist.join(format!("my-{kind}.wasm"));
        let inspect = regua(&["inspect", plugin.to_str().unwrap()], "");
        let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(v["kind"], kind);

        // Its scaffolded fixture case passes through the built plugin; a wrong expectation
        // fails with the difference.
        let cases = [
            krate.to_str().unwrap(),
            "--plugins-dir",
            dist.to_str().unwrap(),
        ];
        let ok = regua(&[&["test"][..], &cases].concat(), "");
        assert!(
            ok.status.success(),
            "{kind}: {}{}",
            text(&ok.stdout),
            text(&ok.stderr)
        );
        assert!(
            text(&ok.stdout).contains("1 passed, 0 failed"),
            "{}",
            text(&ok.stdout)
        );
        let case = krate.join("tests/cases/01-example.json");
        let body = std::fs::read_to_string(&case).unwrap();
        let wrong = body
            .replace("\"match\": true", "\"match\": false")
            .replace("\"step\": \"email\"", "\"step\": \"push\"")
            .replace("\"decision\": \"deny\"", "\"decision\": \"allow\"");
        std::fs::write(&case, wrong).unwrap();
        let bad = regua(&[&["test"][..], &cases].concat(), "");
        assert!(!bad.status.success(), "{kind}");
        let report = text(&bad.stdout);
        assert!(
            report.contains("FAIL") && report.contains("expected"),
            "{kind}: {report}"
        );
    }
}

/// `regua serve --dev --sources` with nothing to watch is refused, naming the path, instead of
/// silently watching nothing.
#[test]
fn dev_mode_refuses_sources_with_no_plugin_crate() {
    let empty = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    let nowhere = empty.path().join("vip-buyers");
    for sources in [empty.path().to_path_buf(), nowhere] {
        let out = regua(
            &[
                "serve",
                "--dev",
                "--addr",
                "127.0.0.1:0",
                "--plugins",
                plugins.path().to_str().unwrap(),
                "--sources",
                sources.to_str().unwrap(),
            ],
            "",
        );
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains("holds no plugin crate") && err.contains(sources.to_str().unwrap()),
            "{err}"
        );
    }
}

/// A plugin failing on every customer: the summary counts the failures (not only the bad lines),
/// and `--max-failures` stops the batch early, the lines answered so far written, exit status 3.
#[test]
fn batch_summary_counts_plugin_failures_and_max_failures_stops_early() {
    let input: String = (0..300)
        .map(|i| format!("{{\"id\":\"bad-{i}\"}}\n"))
        .collect();
    let hostile = wasm("hostile");
    let args = |extra: &[&'static str]| {
        let mut args = vec![
            "batch".to_owned(),
            "-p".into(),
            hostile.to_str().unwrap().into(),
            "--params".into(),
            r#"{"mode":"fail"}"#.into(),
            "-i".into(),
            "-".into(),
            "--threads".into(),
            "1".into(),
            "--chunk-lines".into(),
            "20".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |a: Vec<String>| regua(&a.iter().map(String::as_str).collect::<Vec<_>>(), &input);

    let out = run(args(&[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("300 plugin failures on customers"), "{err}");
    assert!(err.contains("--max-failures"), "{err}");
    assert_eq!(text(&out.stdout).lines().count(), 300);

    let out = run(args(&["--max-failures", "30"]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("stopped after") && err.contains("--max-failures 30"),
        "{err}"
    );
    let answered = text(&out.stdout).lines().count();
    // Whole chunks of 20: the one that reached 30 failures is written, the input read no further
    // than the chunks already handed out.
    assert!((30..300).contains(&answered), "{answered} lines");
    assert!(answered.is_multiple_of(20), "{answered} lines");
}

/// Every Rust block of the README, put together as the crate the README walks a new user
/// through (the rule, then its test), builds and passes its test natively; and the rule's
/// answer for a customer with no purchase reads `R$ 0.00`, not `R$ -0.00`.
#[test]
fn the_readme_rule_and_its_test_build_and_pass() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```rust") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), l) => {
                block.push_str(l);
                block.push('\n');
            }
            _ => {}
        }
    }
    assert!(blocks.len() >= 2, "the README's rule and its test");
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join("vip-buyers");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"vip-buyers\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\n\
             regua-sdk = {{ path = \"{}\" }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n\
             [workspace]\n",
            repo().join("sdk").display()
        ),
    )
    .unwrap();
    let no_purchase = r##"
#[cfg(test)]
mod no_purchase {
    use super::*;
    use regua_sdk::testing::{context, customer, evaluate_segment};

    #[test]
    fn reads_zero_reais() {
        let params = Params::default();
        let ctx = context("2025-03-11T12:00:00Z", &params);
        let m = evaluate_segment::<VipBuyers>(&customer(r#"{"id":"c-0"}"#), &ctx).unwrap();
        assert_eq!(m.reasons, ["R$ 0.00 in 90 days"]);
    }
}
"##;
    std::fs::write(krate.join("src/lib.rs"), blocks.join("\n") + no_purchase).unwrap();
    cargo_test(&krate, "the README's crate");
}

/// `cargo test` of the crate at `krate`, natively, in the plugins' target folder (its
/// dependencies built once for every such test); fails the test, saying `what`, if it fails.
fn cargo_test(krate: &std::path::Path, what: &str) {
    let test = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--quiet", "--manifest-path"])
        .arg(krate.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", plugin_target_dir())
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{what}: {}{}",
        text(&test.stdout),
        text(&test.stderr)
    );
}

/// Inside a Régua checkout, `regua new` points the crate at that checkout's own SDK by a relative
/// path (a second clone's crate never names the first clone's SDK), and writes none out.
#[test]
fn regua_new_inside_a_checkout_uses_its_sdk() {
    let inside = tempfile::Builder::new()
        .prefix("new-in-checkout-")
        .tempdir_in(repo().join("target"))
        .unwrap();
    let krate = inside.path().join("in-checkout");
    let out = regua(
        &[
            "new",
            "segment",
            "in-checkout",
            "--dir",
            krate.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    let depth = krate.strip_prefix(repo()).unwrap().components().count();
    let want = format!("{}sdk", "../".repeat(depth));
    assert!(
        manifest.contains(&format!("regua-sdk = {{ path = \"{want}\" }}")),
        "{manifest}"
    );
    assert!(!inside.path().join("regua-sdk").exists());
}

/// `--format parquet` writes the CSV columns typed: `line` an integer, a segment's answer a
/// boolean, a journey's short answer text, an empty or failed answer null, the error text; one
/// row per input line, in order, whatever the file's size (row groups), and read back by any
/// Parquet reader.
#[test]
fn batch_writes_parquet_with_typed_columns() {
    use arrow_array::{Array, BooleanArray, StringArray, UInt64Array};
    let mut input = String::from(
        "{\"id\":\"a, \\\"the first\\\"\"}\n{broken\n{\"id\":\"b\",\"profile\":{\"created_at\":\"2025-03-11T11:00:00Z\"}}\n{\"id\":\"b\"}\n",
    );
    let many = 70_000;
    for i in 0..many {
        input.push_str(&format!("{{\"id\":\"c{i}\"}}\n"));
    }
    let (lapsed, welcome) = (wasm("lapsed"), wasm("welcome"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("answers.parquet");
    let out = regua(
        &[
            "batch",
            "--format",
            "parquet",
            "-p",
            lapsed.to_str().unwrap(),
            "-p",
            welcome.to_str().unwrap(),
            "-i",
            "-",
            "-o",
            path.to_str().unwrap(),
            "--now",
            "2025-03-11T12:00:00Z",
            "-q",
        ],
        &input,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = std::fs::File::open(&path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    // (line, id, lapsed, welcome, error) as read back
    type Row = (
        u64,
        Option<String>,
        Option<bool>,
        Option<String>,
        Option<String>,
    );
    let mut rows: Vec<Row> = Vec::new();
    for batch in reader {
        let b = batch.unwrap();
        let names: Vec<&str> = b
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["line", "id", "lapsed", "welcome", "error"]);
        let col = |i: usize| b.column(i).as_any();
        let line = col(0).downcast_ref::<UInt64Array>().unwrap();
        let id = col(1).downcast_ref::<StringArray>().unwrap();
        let lapsed = col(2).downcast_ref::<BooleanArray>().unwrap();
        let welcome = col(3).downcast_ref::<StringArray>().unwrap();
        let error = col(4).downcast_ref::<StringArray>().unwrap();
        let s = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_owned());
        for i in 0..b.num_rows() {
            rows.push((
                line.value(i),
                s(id, i),
                (!lapsed.is_null(i)).then(|| lapsed.value(i)),
                s(welcome, i),
                s(error, i),
            ));
        }
    }
    assert_eq!(rows.len(), 4 + many, "one row per input line");
    assert!(
        rows.iter().enumerate().all(|(i, r)| r.0 == i as u64 + 1),
        "in order"
    );
    assert_eq!(
        rows[0],
        (1, Some("a, \"the first\"".into()), Some(false), None, None)
    );
    assert_eq!((rows[1].1.as_deref(), rows[1].2), (None, None));
    assert!(
        rows[1]
            .4
            .as_deref()
            .unwrap()
            .starts_with("key must be a string"),
        "{:?}",
        rows[1]
    );
    let entered = rows[2].3.as_deref().unwrap();
    assert!(
        entered.starts_with("enter:welcome ") && entered.contains(" send:email:"),
        "{entered}"
    );
    assert_eq!((rows[3].2, rows[3].3.as_deref()), (None, None));
    assert!(
        rows[3].4.as_deref().unwrap().contains("earlier line"),
        "{:?}",
        rows[3]
    );
    assert_eq!(
        rows[4 + many - 1],
        (
            4 + many as u64,
            Some(format!("c{}", many - 1)),
            Some(false),
            None,
            None
        )
    );
}

/// The example plugin written in WebAssembly text (`examples/wat/big-spender.wat`, from
/// docs/ABI.md alone) answers as an independent reading of the records: in the segment exactly
/// the customers with a purchase of 500 or more, with its reason; in chunks of one customer
/// and of 300 (row offsets over many customers), and without reasons for a CSV output.
#[test]
fn the_example_plugin_in_webassembly_text_answers_as_the_records_say() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let built = regua(&["build", "examples/wat/big-spender.wat", "--out", out], "");
    assert!(built.status.success(), "{}", text(&built.stderr));
    let wasm = dir.path().join("big-spender.wasm");
    // Text that does not assemble is named with its line; text that assembles into no plugin
    // is refused and leaves nothing in the folder.
    let broken = dir.path().join("broken.wat");
    std::fs::write(&broken, "(module\n  (func $f (result i32)\n").unwrap();
    let refused = regua(&["build", broken.to_str().unwrap(), "--out", out], "");
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("broken.wat:3:"),
        "{}",
        text(&refused.stderr)
    );
    let bare = dir.path().join("bare.wat");
    std::fs::write(&bare, "(module)").unwrap();
    let refused = regua(&["build", bare.to_str().unwrap(), "--out", out], "");
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("bare.wat` is not a Régua plugin")
            && text(&refused.stderr).contains("regua-abi")
            && !dir.path().join("bare.wasm").exists(),
        "{}",
        text(&refused.stderr)
    );
    let customers = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let expected: Vec<(String, bool)> = customers
        .lines()
        .map(|l| {
            let c: serde_json::Value = serde_json::from_str(l).unwrap();
            let big = c["transactions"].as_array().is_some_and(|ts| {
                ts.iter()
                    .any(|t| t["kind"] == "purchase" && t["amount"].as_f64().unwrap() >= 500.0)
            });
            (c["id"].as_str().unwrap().to_owned(), big)
        })
        .collect();
    let members = expected.iter().filter(|(_, b)| *b).count();
    assert!(
        members > 5 && members < expected.len() - 5,
        "the examples have both: {members}"
    );
    let batch = |extra: &[&str]| {
        let mut args = vec![
            "batch",
            "--plugin",
            wasm.to_str().unwrap(),
            "--input",
            "examples/customers.ndjson",
            "--now",
            "2025-03-11T12:00:00Z",
        ];
        args.extend(extra);
        regua(&args, "")
    };
    for chunk in ["1", "300"] {
        let out = batch(&["--chunk-lines", chunk]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let got: Vec<(String, bool)> = text(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let r = &v["results"]["big-spender"];
                let matched = r["match"].as_bool().unwrap_or_else(|| panic!("{v}"));
                let reasons = r["reasons"].as_array().unwrap();
                assert_eq!(
                    reasons.len(),
                    usize::from(matched),
                    "a reason when in the segment: {v}"
                );
                if matched {
                    assert_eq!(reasons[0], "a purchase of 500 or more");
                }
                (v["id"].as_str().unwrap().to_owned(), matched)
            })
            .collect();
        assert_eq!(got, expected, "chunks of {chunk}");
    }
    // CSV shows no reasons, so the call asks for none (the plugin reads the context's flag).
    let out = batch(&["--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<(String, bool)> = text(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            assert_eq!(cols.len(), 4, "line,id,big-spender,error: {l}");
            (cols[1].to_owned(), cols[2].parse().unwrap())
        })
        .collect();
    assert_eq!(rows, expected, "CSV");
}
