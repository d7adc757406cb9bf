//! Broken records and requests: each gets an error naming the field and the line, a batch
//! always answers one line per input line, and nothing crashes.

use regua_tests::{engine, load};
use serde_json::Value;

use crate::{eval, inputs, run_batch, run_batch_with};

fn lapsed_batch(input: &str) -> Vec<Value> {
    let lapsed = eval(&load(&engine(), "lapsed"), "{}");
    let (lines, summary) = run_batch(&[lapsed], input, 2);
    assert_eq!(lines.len() as u64, summary.lines);
    lines
}

/// A batch of `inactivity-offer`, a journey rule that reads every part of the record.
fn whole_record_batch(input: &str) -> Vec<Value> {
    let rule = load(&engine(), "inactivity-offer");
    assert_eq!(
        rule.meta.reads,
        regua_sdk::Field::ALL,
        "a rule that reads everything"
    );
    let (lines, summary) = run_batch(&[eval(&rule, "{}")], input, 2);
    assert_eq!(lines.len() as u64, summary.lines);
    lines
}

fn error_of(line: &Value) -> &str {
    line["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error line: {line}"))
}

#[test]
fn wrong_types_and_values_name_the_field() {
    let input = [
        r#"{"id":"a","transactions":5}"#,
        r#"{"id":"b","transactions":[{"id":"t","at":"2025-01-01T00:00:00Z","kind":"purchase","amount":"ten"}]}"#,
        r#"{"id":"c","consents":{"email":{"marketing":{"status":"maybe","at":"2025-01-01T00:00:00Z"}}}}"#,
        r#"{"id":"d","events":[{"name":"login","at":"2025-02-30T10:00:00Z"}]}"#,
        r#"{"id":7}"#,
        r#"[1,2,3]"#,
        r#"{"id":"e","profile":{"birthday":"1990-13-01"}}"#,
        r#"{"id":"f","tz":"-03:00"}"#,
    ]
    .join("\n");
    let lines = whole_record_batch(&input);
    let expect = [
        "field `transactions`",
        "field `transactions[0].amount`",
        "field `consents.email.marketing.status`",
        "field `events[0].at`",
        "field `id`",
        "invalid type",
        "field `profile.birthday`",
        "field `tz`: `-03:00` is not a time-zone name",
    ];
    assert_eq!(lines.len(), expect.len());
    for (i, (line, want)) in lines.iter().zip(expect).enumerate() {
        assert_eq!(line["line"], i + 1);
        assert!(
            error_of(line).contains(want),
            "line {}: want `{want}` in {line}",
            i + 1
        );
    }
}

#[test]
fn invalid_utf8_and_empty_lines_are_error_lines() {
    let lapsed = eval(&load(&engine(), "lapsed"), "{}");
    let input: &[u8] = b"{\"id\":\"a\"}\n{\"id\":\"\xff\xfe\"}\n\n{\"id\":\"b\"}";
    let options = regua_host::pipeline::batch::BatchOptions {
        chunking: chunk_of(2),
        ..Default::default()
    };
    let (out, _) = run_batch_with(&[lapsed], input, 1, &options);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(
        error_of(&lines[1]).contains("not valid UTF-8"),
        "{}",
        lines[1]
    );
    assert!(error_of(&lines[2]).contains("empty line"), "{}", lines[2]);
    assert_eq!(lines[3]["id"], "b");
}

#[test]
fn nesting_ten_thousand_deep_is_refused_without_crashing() {
    let deep = |field: &str| {
        format!(
            r#"{{"id":"deep-{field}","{field}":{{"x":{}{}}}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        )
    };
    let input = format!("{}\n{{\"id\":\"next\"}}\n", deep("profile"));
    let lines = whole_record_batch(&input);
    assert_eq!(lines.len(), 2);
    assert!(
        error_of(&lines[0]).contains("recursion limit"),
        "{}",
        &error_of(&lines[0])[..200.min(error_of(&lines[0]).len())]
    );
    assert_eq!(lines[1]["id"], "next");
    // A part no rule of the batch reads is only checked to be JSON: the customer is answered.
    let lines = lapsed_batch(&deep("profile"));
    assert_eq!(
        lines[0]["results"]["lapsed"]["match"], false,
        "{}",
        lines[0]
    );
}

#[test]
fn a_batch_reads_only_the_parts_its_plugins_read() {
    // `lapsed` declares it reads transactions: a broken event does not cost the customer its
    // answer, a broken transaction does, and a rule reading everything still sees both.
    let input = [
        r#"{"id":"a","events":[{"name":"login","at":"not a time"}]}"#,
        r#"{"id":"b","transactions":[{"id":"t","at":"not a time","kind":"purchase","amount":1}]}"#,
        r#"{"id":"c","events":7,"id":"c"}"#,
    ]
    .join("\n");
    let lines = lapsed_batch(&input);
    assert_eq!(
        lines[0]["results"]["lapsed"]["match"], false,
        "{}",
        lines[0]
    );
    assert!(
        error_of(&lines[1]).contains("field `transactions[0].at`"),
        "{}",
        lines[1]
    );
    assert!(
        error_of(&lines[2]).contains("duplicate field `id`"),
        "{}",
        lines[2]
    );
    let lines = whole_record_batch(&input);
    assert!(
        error_of(&lines[0]).contains("field `events[0].at`"),
        "{}",
        lines[0]
    );
}

#[test]
fn a_ten_megabyte_record_is_evaluated() {
    let big = format!(
        r#"{{"id":"big","profile":{{"notes":"{}"}}}}"#,
        "x".repeat(10 << 20)
    );
    let lines = lapsed_batch(&format!("{big}\n{{\"id\":\"small\"}}\n"));
    assert_eq!(
        lines[0]["results"]["lapsed"]["match"],
        false,
        "{}",
        &lines[0].to_string()[..200]
    );
    assert_eq!(lines[1]["id"], "small");
}

#[test]
fn an_unknown_time_zone_falls_back_to_the_company_default_and_says_so() {
    // DOMAIN §3: unknown or missing zone → the company default, and the decision says so.
    let rest = load(&engine(), "standard-rest");
    let e = regua_host::Evaluation::new(
        rest,
        &inputs(
            r#"{"rules":[{"id":"night","type":"quiet_hours","start":"22:00","end":"08:00"}]}"#,
            Some(r#"{"channel":"push","category":"marketing"}"#),
        ),
    )
    .unwrap();
    let (lines, _) = run_batch(&[e], r#"{"id":"c","tz":"Mars/Olympus_Mons"}"#, 1);
    let d = &lines[0]["results"]["standard-rest"];
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(
        d["notes"][0],
        "customer time zone `Mars/Olympus_Mons` is unknown: used America/Sao_Paulo"
    );
}

#[test]
fn a_repeated_id_gets_an_error_line_unless_repeats_are_allowed() {
    // Chunks of 7 lines on 2 threads: the repeats are chunks apart and may be evaluated first.
    let mut input: Vec<String> = (0..40).map(|i| format!(r#"{{"id":"c-{i}"}}"#)).collect();
    input[3] = r#"{"id":"c-0","transactions":5}"#.into(); // bad record: no claim on the id
    input[20] = r#"{"id":"c-1"}"#.into();
    input[39] = r#"{"id":"c-0"}"#.into();
    let lapsed = || eval(&load(&engine(), "lapsed"), "{}");
    let (lines, summary) = run_batch(&[lapsed()], &input.join("\n"), 2);
    assert_eq!(lines.len(), 40);
    for (i, line) in lines.iter().enumerate() {
        match i {
            3 => assert!(error_of(line).contains("field `transactions`"), "{line}"),
            20 | 39 => {
                assert_eq!(line["line"], i + 1);
                assert!(error_of(line).contains("earlier line"), "{line}");
            }
            _ => assert_eq!(line["results"]["lapsed"]["match"], false, "{line}"),
        }
    }
    assert_eq!(summary.bad_lines, 3);
    assert_eq!(summary.tallies[0].unmatched, 37, "repeats are not counted");

    let options = regua_host::pipeline::batch::BatchOptions {
        chunking: chunk_of(7),
        allow_repeated_ids: true,
        ..Default::default()
    };
    let (_, summary) = run_batch_with(&[lapsed()], input.join("\n").as_bytes(), 2, &options);
    assert_eq!(summary.bad_lines, 1);
    assert_eq!(summary.tallies[0].unmatched, 39);
}

fn chunk_of(lines: usize) -> regua_host::pipeline::evaluator::Chunking {
    regua_host::pipeline::evaluator::Chunking {
        lines,
        ..Default::default()
    }
}

/// Parameters reach a plugin as a value the host read from the caller's JSON (docs/ABI.md §5):
/// text that is not JSON is refused by the host with the parser's words, and a value of the
/// wrong type by the plugin, naming the field; either way the check fails before any line, and
/// a plugin beside it still answers every line.
#[test]
fn parameters_that_are_not_json_or_not_the_rules_are_refused_naming_where() {
    let engine = engine();
    let lapsed = load(&engine, "lapsed");
    for (params, wanted) in [
        (
            r#"{"days":"#,
            "invalid params: field `days`: EOF while parsing a value at line 1 column 8",
        ),
        (
            r#"{"days":"many"}"#,
            "invalid params: field `days`: invalid type: string \"many\", expected i64",
        ),
    ] {
        let bad = eval(&lapsed, params);
        let mut worker = regua_host::Worker::new();
        let err = worker.check(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("plugin `lapsed` version ") && err.contains(wanted),
            "{params}: {err}"
        );
        let good = eval(&load(&engine, "rfm"), "{}");
        let (lines, _) = run_batch(&[good, bad], "{\"id\":\"c-1\"}\n{\"id\":\"c-2\"}\n", 1);
        assert_eq!(lines.len(), 2);
        for line in &lines {
            assert!(line["results"]["rfm"]["match"].is_boolean(), "{line}");
            let error = line["results"]["lapsed"]["error"]
                .as_str()
                .unwrap_or_default();
            assert!(error.contains(wanted), "{params}: {line}");
        }
    }
}
