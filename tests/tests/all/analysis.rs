//! What the decision log answers: the A/B readout against a hand-computed example, the report of
//! dead campaigns and plugins, and the backtest against an independent count.

use std::io::Write as _;

use regua_tests::{plugins_dir, repo};

use crate::cli::{regua, text};
use crate::columnar::convert;

const AT: &str = "2025-03-11T12:00:00Z";

/// The answers of a run with `holdout` and `variant` customers in campaign X, and their later
/// records: the first `holdout_conv` and `variant_conv` of each group bought within the week.
fn readout_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (mut answers, mut later) = (String::new(), String::new());
    for (group, n, converted) in [("holdout", 1000, 100), ("B", 1000, 120)] {
        for i in 0..n {
            let id = format!("{group}-{i}");
            let decision = if group == "holdout" {
                serde_json::json!({"campaign": "ACT-2025-001", "outcome": "held_out"})
            } else if i % 10 == 0 {
                // Denied by the rest policy: still in variant B (intent to treat).
                serde_json::json!({"campaign": "ACT-2025-001", "outcome": "denied", "variant": "B"})
            } else {
                serde_json::json!({"campaign": "ACT-2025-001", "outcome": "planned", "variant": "B"})
            };
            answers.push_str(&format!(
                "{}\n",
                serde_json::json!({"id": id, "messages": [], "decisions": [decision]})
            ));
            // Converted: a purchase within (AT, AT + 7d]; the boundary cases count on the
            // right side: exactly AT + 7d counts, exactly AT and AT + 7d + 1s do not.
            let purchase = if i < converted {
                if i == 0 {
                    "2025-03-18T12:00:00Z"
                } else {
                    "2025-03-12T09:00:00Z"
                }
            } else if i == converted {
                AT
            } else if i == converted + 1 {
                "2025-03-18T12:00:01Z"
            } else {
                "2025-02-01T00:00:00Z"
            };
            later.push_str(&format!(
                "{}\n",
                serde_json::json!({"id": id, "transactions": [{"id": format!("t{i}"), "at": purchase,
                    "kind": "purchase", "amount": 10.0, "currency": "BRL"}],
                    "events": [{"name": "login", "at": "2025-03-12T00:00:00Z"}]})
            ));
        }
    }
    // A customer with no decision is read and not counted.
    later.push_str("{\"id\":\"stranger\"}\n");
    let (a, l) = (dir.join("answers.ndjson"), dir.join("later.ndjson"));
    std::fs::write(&a, answers).unwrap();
    std::fs::write(&l, later).unwrap();
    (a, l)
}

#[test]
fn the_readout_interval_matches_the_hand_computed_example() {
    let dir = tempfile::tempdir().unwrap();
    let (answers, later) = readout_files(dir.path());
    let svg = dir.path().join("readout.svg");
    let out = regua(
        &[
            "readout",
            "--answers",
            answers.to_str().unwrap(),
            "--at",
            AT,
            "--customers",
            later.to_str().unwrap(),
            "--conversion",
            "transaction:purchase",
            "--window",
            "7d",
            "--json",
            "--svg",
            svg.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["records"], 2001);
    let c = &r["campaigns"][0];
    assert_eq!(c["campaign"], "ACT-2025-001");
    let groups: Vec<_> = c["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap(),
                g["customers"].as_u64().unwrap(),
                g["converted"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(groups, [("holdout", 1000, 100), ("B", 1000, 120)]);
    // By hand: d = 0.12 − 0.10 = 0.02; SE = √(0.12·0.88/1000 + 0.10·0.90/1000) = 0.0139857;
    // 1.96 · SE = 0.0274120 → [−0.0074120, 0.0474120]. Pooled z = 0.02 / 0.0139929 = 1.4293,
    // two-sided p = 0.1529: no difference shown at 95 %.
    let u = &c["uplifts"][0];
    let close = |v: &serde_json::Value, want: f64, tol: f64| {
        let v = v.as_f64().unwrap();
        assert!((v - want).abs() < tol, "{v} is not {want}");
    };
    assert_eq!(u["variant"], "B");
    close(&u["difference"], 0.02, 1e-9);
    close(&u["low"], -0.007412, 1e-5);
    close(&u["high"], 0.047412, 1e-5);
    close(&u["relative"], 0.2, 1e-9);
    close(&u["z"], 1.4293, 1e-3);
    close(&u["p_value"], 0.1529, 1e-3);
    assert_eq!(u["verdict"], "no difference shown");
    assert!(c["warnings"].as_array().unwrap().is_empty(), "{c}");
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.starts_with("<svg")
            && chart.contains("holdout (n=1000)")
            && chart.contains("B (n=1000)")
    );

    // The table says the same in words.
    let table = regua(
        &[
            "readout",
            "--answers",
            answers.to_str().unwrap(),
            "--at",
            AT,
            "--customers",
            later.to_str().unwrap(),
            "--conversion",
            "transaction:purchase",
        ],
        "",
    );
    let words = text(&table.stdout);
    assert!(
        words.contains("uplift of B over the holdout: +2.00 points [-0.74, +4.74]"),
        "{words}"
    );
}

#[test]
fn a_readout_of_small_groups_warns_and_bad_arguments_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let answers = dir.path().join("a.ndjson");
    std::fs::write(
        &answers,
        "{\"id\":\"a\",\"decisions\":[{\"campaign\":\"C\",\"outcome\":\"held_out\"}]}\n\
         {\"id\":\"b\",\"decisions\":[{\"campaign\":\"C\",\"outcome\":\"planned\",\"variant\":\"B\"}]}\n",
    )
    .unwrap();
    let later = dir.path().join("l.ndjson");
    std::fs::write(&later, "{\"id\":\"a\"}\n{\"id\":\"b\",\"events\":[{\"name\":\"app_activated\",\"at\":\"2025-03-11T13:00:00Z\"}]}\n").unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "readout",
            "--answers",
            answers.to_str().unwrap(),
            "--customers",
            later.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        regua(&args, "")
    };
    let out = run(&["--at", AT, "--conversion", "event:app_activated"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let words = text(&out.stdout);
    assert!(words.contains("too small to tell"), "{words}");
    let out = run(&["--conversion", "event:app_activated"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--at"), "{}", text(&out.stderr));
    let out = run(&["--at", AT, "--conversion", "app_activated"]);
    assert!(text(&out.stderr).contains("--conversion") && text(&out.stderr).contains("event:NAME"));
    std::fs::write(&later, "{\"id\":\"a\"}\nnot json\n").unwrap();
    let out = run(&["--at", AT, "--conversion", "event:app_activated"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--customers line 2"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_send_list_reads_out_its_variants_and_says_it_has_no_holdout() {
    let dir = tempfile::tempdir().unwrap();
    let send = dir.path().join("send.ndjson");
    std::fs::write(
        &send,
        "{\"customer\":\"a\",\"campaign\":\"C\",\"variant\":\"B\",\"channel\":\"sms\",\"template\":\"t\",\"category\":\"marketing\",\"send_at\":\"2025-03-11T12:00:00Z\",\"decided_at\":\"2025-03-11T12:00:00Z\"}\n\
         {\"customer\":\"b\",\"campaign\":\"C\",\"variant\":\"B\",\"channel\":\"sms\",\"template\":\"t\",\"category\":\"marketing\",\"send_at\":\"2025-03-11T12:00:00Z\",\"decided_at\":\"2025-03-11T12:00:00Z\"}\n",
    )
    .unwrap();
    let later = dir.path().join("l.ndjson");
    std::fs::write(
        &later,
        "{\"id\":\"a\",\"events\":[{\"name\":\"app_activated\",\"at\":\"2025-03-11T13:00:00Z\"}]}\n{\"id\":\"b\"}\n",
    )
    .unwrap();
    let out = regua(
        &[
            "readout",
            "--send-list",
            send.to_str().unwrap(),
            "--customers",
            later.to_str().unwrap(),
            "--conversion",
            "event:app_activated",
            "--json",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &r["campaigns"][0];
    assert_eq!(
        (
            c["groups"][0]["group"].as_str(),
            c["groups"][0]["customers"].as_u64(),
            c["groups"][0]["converted"].as_u64()
        ),
        (Some("B"), Some(2), Some(1))
    );
    assert!(
        c["warnings"][0].as_str().unwrap().contains("no holdout"),
        "{c}"
    );
    // A send list from before rows said when they were decided needs the run's --now.
    let old = dir.path().join("old.ndjson");
    std::fs::write(&old, "{\"customer\":\"a\",\"campaign\":\"C\",\"channel\":\"sms\",\"template\":\"t\",\"category\":\"marketing\",\"send_at\":\"2025-03-11T12:00:00Z\"}\n").unwrap();
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "readout".to_owned(),
            "--send-list".into(),
            old.to_str().unwrap().into(),
            "--customers".into(),
            later.to_str().unwrap().into(),
            "--conversion".into(),
            "event:app_activated".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let refused = regua(
        &args(&[]).iter().map(String::as_str).collect::<Vec<_>>(),
        "",
    );
    assert!(!refused.status.success());
    let err = text(&refused.stderr);
    assert!(
        err.contains("line 1") && err.contains("decided_at") && err.contains("--at"),
        "{err}"
    );
    let given = regua(
        &args(&["--at", AT])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "",
    );
    assert!(given.status.success(), "{}", text(&given.stderr));
}

/// The readout of one campaign (`--json`) from `source` (`--log DIR`, `--answers FILE --at T` or
/// `--send-list FILE`): (group, customers, converted) of each group.
fn readout_groups(source: &[&str], later: &std::path::Path) -> Vec<(String, u64, u64)> {
    let mut args = vec!["readout"];
    args.extend_from_slice(source);
    args.extend([
        "--customers",
        later.to_str().unwrap(),
        "--conversion",
        "transaction:purchase",
        "--window",
        "24h",
        "--json",
    ]);
    let out = regua(&args, "");
    assert!(out.status.success(), "{source:?}: {}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    r["campaigns"][0]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_owned(),
                g["customers"].as_u64().unwrap(),
                g["converted"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A decision at 02:00Z that quiet hours defer to 08:00Z, and a purchase at 05:00Z: the window
/// starts at the decision however the run is read, so the purchase converts from the decision
/// log, from the answers and from the send list alike, in each of their formats.
#[test]
fn a_deferred_message_reads_out_the_same_from_the_log_the_answers_and_the_send_list() {
    let dir = tempfile::tempdir().unwrap();
    let campaigns = dir.path().join("campaigns");
    std::fs::create_dir(&campaigns).unwrap();
    std::fs::write(
        campaigns.join("company.toml"),
        "[rest]\nplugin = \"standard-rest\"\nparams = { default_tz = \"UTC\", rules = [{ id = \"night\", type = \"quiet_hours\", start = \"22:00\", end = \"08:00\" }] }\n",
    )
    .unwrap();
    std::fs::write(
        campaigns.join("c.toml"),
        "code = \"NIGHT-1\"\nname = \"night\"\nrequester = \"ana\"\nowner = \"crm\"\npriority = 1\nstart = \"2025-01-01T00:00:00Z\"\nholdout = { percent = 30 }\n[message]\nchannel = \"email\"\ntemplate = \"t\"\n",
    )
    .unwrap();
    let decided = "2025-03-11T02:00:00Z";
    let (mut input, mut later) = (String::new(), String::new());
    for i in 0..60 {
        input.push_str(&format!("{{\"id\":\"n-{i:02}\",\"tz\":\"UTC\"}}\n"));
        // Even customers buy at 05:00Z: after the decision, before the deferred send.
        let bought = if i % 2 == 0 {
            ",\"transactions\":[{\"id\":\"t\",\"at\":\"2025-03-11T05:00:00Z\",\"kind\":\"purchase\",\"amount\":5,\"currency\":\"BRL\"}]"
        } else {
            ""
        };
        later.push_str(&format!("{{\"id\":\"n-{i:02}\",\"tz\":\"UTC\"{bought}}}\n"));
    }
    let (input_file, later_file) = (
        dir.path().join("in.ndjson"),
        dir.path().join("later.ndjson"),
    );
    std::fs::write(&input_file, input).unwrap();
    std::fs::write(&later_file, later).unwrap();
    let (answers, send, log) = (
        dir.path().join("answers.ndjson"),
        dir.path().join("send.ndjson"),
        dir.path().join("log"),
    );
    let run = |extra: &[&str]| {
        let mut args = vec![
            "campaign",
            "run",
            "--campaigns",
            campaigns.to_str().unwrap(),
            "--plugins-dir",
            plugins_dir().to_str().unwrap(),
            "--input",
            input_file.to_str().unwrap(),
            "--now",
            decided,
            "-q",
        ];
        args.extend_from_slice(extra);
        let out = regua(&args, "");
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    run(&[
        "-o",
        answers.to_str().unwrap(),
        "--send-list",
        send.to_str().unwrap(),
        "--decision-log",
        log.to_str().unwrap(),
    ]);
    // The same run's other forms: Parquet answers, Parquet and CSV send lists.
    let (answers_pq, send_pq, send_csv) = (
        dir.path().join("answers.parquet"),
        dir.path().join("send.parquet"),
        dir.path().join("send.csv"),
    );
    run(&[
        "-o",
        answers_pq.to_str().unwrap(),
        "--format",
        "parquet",
        "--send-list",
        send_pq.to_str().unwrap(),
        "--send-list-format",
        "parquet",
    ]);
    run(&[
        "-o",
        "/dev/null",
        "--send-list",
        send_csv.to_str().unwrap(),
        "--send-list-format",
        "csv",
    ]);
    // Who is in which group, from the answers; the expected counts worked out from them.
    let (mut treated, mut held) = ((0, 0), (0, 0));
    for line in std::fs::read_to_string(&answers).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let even = v["id"].as_str().unwrap()[2..].parse::<u32>().unwrap() % 2 == 0;
        let g = match v["decisions"][0]["outcome"].as_str().unwrap() {
            "held_out" => &mut held,
            "planned" => {
                assert_eq!(v["messages"][0]["send_at"], "2025-03-11T08:00:00Z", "{v}");
                assert_eq!(v["messages"][0]["decided_at"], decided, "{v}");
                &mut treated
            }
            other => panic!("{other}: {v}"),
        };
        g.0 += 1;
        g.1 += u64::from(even);
    }
    assert!(treated.1 > 0 && held.0 > 0, "{treated:?} {held:?}");
    let expected = vec![
        ("holdout".to_owned(), held.0, held.1),
        ("treatment".to_owned(), treated.0, treated.1),
    ];
    assert_eq!(
        readout_groups(&["--log", log.to_str().unwrap()], &later_file),
        expected
    );
    assert_eq!(
        readout_groups(
            &["--answers", answers.to_str().unwrap(), "--at", decided],
            &later_file
        ),
        expected
    );
    assert_eq!(
        readout_groups(
            &["--answers", answers_pq.to_str().unwrap(), "--at", decided],
            &later_file
        ),
        expected
    );
    // The later records as a data lake holds them: Parquet or Arrow IPC read the same.
    for format in ["later.parquet", "later.arrow"] {
        let converted = dir.path().join(format);
        convert(&later_file, &converted);
        assert_eq!(
            readout_groups(&["--log", log.to_str().unwrap()], &converted),
            expected,
            "{format}"
        );
    }
    // A send list holds only the treated.
    for list in [&send, &send_pq, &send_csv] {
        assert_eq!(
            readout_groups(&["--send-list", list.to_str().unwrap()], &later_file),
            expected[1..],
            "{}",
            list.display()
        );
    }
}

/// `regua readout --json` of `answers` (run answers, decided at `AT`) against the `later`
/// records, conversion `event:app_activated`, both written into `dir`.
fn read_out_answers(dir: &std::path::Path, answers: &str, later: &str) -> serde_json::Value {
    let (a, l) = (dir.join("a.ndjson"), dir.join("l.ndjson"));
    std::fs::write(&a, answers).unwrap();
    std::fs::write(&l, later).unwrap();
    let out = regua(
        &[
            "readout",
            "--answers",
            a.to_str().unwrap(),
            "--at",
            AT,
            "--customers",
            l.to_str().unwrap(),
            "--conversion",
            "event:app_activated",
            "--json",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every held-out customer is missing from the later records: the holdout is there, empty, and
/// the warning says so and names them, rather than saying the campaign holds nobody out.
#[test]
fn an_empty_group_is_named_with_its_missing_customers() {
    let dir = tempfile::tempdir().unwrap();
    let mut text_answers = String::new();
    let mut later = String::new();
    for i in 0..7 {
        text_answers.push_str(&format!("{{\"id\":\"gone-{i}\",\"decisions\":[{{\"campaign\":\"C\",\"outcome\":\"held_out\"}}]}}\n"));
    }
    for i in 0..20 {
        text_answers.push_str(&format!("{{\"id\":\"here-{i:02}\",\"decisions\":[{{\"campaign\":\"C\",\"outcome\":\"planned\"}}]}}\n"));
        later.push_str(&format!("{{\"id\":\"here-{i:02}\"}}\n"));
    }
    let r = read_out_answers(dir.path(), &text_answers, &later);
    let c = &r["campaigns"][0];
    assert_eq!(c["missing"], 7, "{c}");
    assert_eq!(
        (&c["groups"][0]["group"], &c["groups"][0]["customers"]),
        (&serde_json::json!("holdout"), &serde_json::json!(0)),
        "{c}"
    );
    assert!(c["uplifts"].as_array().unwrap().is_empty(), "{c}");
    let warnings: Vec<&str> = c["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        !warnings.iter().any(|w| w.contains("holds nobody out")),
        "{warnings:?}"
    );
    let empty = warnings
        .iter()
        .find(|w| w.contains("holdout is empty"))
        .unwrap_or_else(|| panic!("{warnings:?}"));
    // The first five by id, and how many more.
    for i in 0..5 {
        assert!(empty.contains(&format!("gone-{i}")), "{empty}");
    }
    assert!(
        empty.contains("7 customers") && empty.contains("and 2 more"),
        "{empty}"
    );
}

/// Both groups at 0 %: the z-test is undefined; the readout reports z = 0, p = 1 and says why.
#[test]
fn both_groups_at_zero_report_z_zero_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut later) = (String::new(), String::new());
    for i in 0..30 {
        let outcome = if i % 2 == 0 { "held_out" } else { "planned" };
        a.push_str(&format!("{{\"id\":\"z-{i}\",\"decisions\":[{{\"campaign\":\"C\",\"outcome\":\"{outcome}\"}}]}}\n"));
        later.push_str(&format!("{{\"id\":\"z-{i}\"}}\n"));
    }
    let r = read_out_answers(dir.path(), &a, &later);
    let c = &r["campaigns"][0];
    let u = &c["uplifts"][0];
    assert_eq!(
        (u["z"].as_f64(), u["p_value"].as_f64()),
        (Some(0.0), Some(1.0)),
        "{c}"
    );
    assert_eq!(u["verdict"], "too small to tell");
    assert!(
        c["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("undefined")),
        "{c}"
    );
}

fn campaign_run(campaigns: &std::path::Path, now: &str, log: &std::path::Path) {
    let out = regua(
        &[
            "campaign",
            "run",
            "--campaigns",
            campaigns.to_str().unwrap(),
            "--plugins-dir",
            plugins_dir().to_str().unwrap(),
            "--input",
            "examples/customers.ndjson",
            "--now",
            now,
            "-q",
            "-o",
            "/dev/null",
            "--decision-log",
            log.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `regua report` over `log` and `campaigns`, with the built plugins and `extra`.
fn report(
    log: &std::path::Path,
    campaigns: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "report",
        "--log",
        log.to_str().unwrap(),
        "--campaigns",
        campaigns.to_str().unwrap(),
        "--plugins-dir",
        plugins_dir().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    regua(&args, "")
}

#[test]
fn the_report_lists_the_campaigns_seeded_dead_and_not_the_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let campaigns = dir.path().join("campaigns");
    std::fs::create_dir(&campaigns).unwrap();
    for f in std::fs::read_dir(repo().join("examples/campaigns")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&f, campaigns.join(f.file_name().unwrap())).unwrap();
        }
    }
    // Nobody has gone 100,000 days without buying: an audience that is always empty.
    let mut dead = std::fs::File::create(campaigns.join("dead.toml")).unwrap();
    writeln!(dead, "code = \"RET-2025-099\"\nname = \"never anyone\"\nrequester = \"ana.lima\"\nowner = \"crm\"\npriority = 90\nstart = \"2025-01-01T00:00:00Z\"\n[audience]\nall_of = [{{ plugin = \"lapsed\", params = {{ days = 100000 }} }}]\n[message]\nchannel = \"email\"\ntemplate = \"t\"").unwrap();
    let mut ended = std::fs::File::create(campaigns.join("ended.toml")).unwrap();
    writeln!(ended, "code = \"CAR-2024-011\"\nname = \"carnival\"\nrequester = \"rui.s\"\nowner = \"crm\"\npriority = 80\nstart = \"2025-01-01T00:00:00Z\"\nend = \"2025-03-01T00:00:00Z\"\n[audience]\nall_of = [{{ plugin = \"lapsed\", params = {{ days = 30 }} }}]\n[message]\nchannel = \"email\"\ntemplate = \"t\"").unwrap();
    let log = dir.path().join("log");
    campaign_run(&campaigns, "2025-03-10T12:00:00Z", &log);
    campaign_run(&campaigns, "2025-03-11T12:00:00Z", &log);
    let out = report(&log, &campaigns, &["--days", "30", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes = |key: &str| -> Vec<String> {
        r[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.get("campaign").unwrap_or(v).as_str().unwrap().to_owned())
            .collect()
    };
    let past = codes("past_end");
    assert!(
        past.contains(&"CAR-2024-011".to_owned()) && !past.contains(&"RET-2025-030".to_owned()),
        "{r}"
    );
    let empty = codes("empty_audience");
    assert!(empty.contains(&"RET-2025-099".to_owned()), "{r}");
    assert!(
        !empty.contains(&"RET-2025-030".to_owned()) && !empty.contains(&"CAR-2024-011".to_owned()),
        "{r}"
    );
    let idle = r["empty_audience"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["campaign"] == "RET-2025-099")
        .unwrap();
    assert_eq!(
        (idle["runs"].as_u64(), idle["requester"].as_str()),
        (Some(2), Some("ana.lima"))
    );
    assert!(!codes("always_denied").contains(&"RET-2025-030".to_owned()));
    let unused = codes("unused_plugins");
    assert!(
        unused.contains(&"sequence".to_owned()) && !unused.contains(&"lapsed".to_owned()),
        "{r}"
    );
    let never = codes("never_called");
    assert!(
        never.contains(&"sequence".to_owned()) && !never.contains(&"lapsed".to_owned()),
        "{r}"
    );
    // Outside the period, nothing ran.
    let later = report(
        &log,
        &campaigns,
        &["--now", "2025-06-01T00:00:00Z", "--days", "7"],
    );
    let words = text(&later.stdout);
    assert!(
        words.contains("Active campaigns that made no decision in the period:\n  ")
            && words.contains("RET-2025-030"),
        "{words}"
    );
}

const FROM: &str = "2025-03-01T00:00:00Z";
const DAYS: i64 = 10;

/// Generated history: per customer, pushes and e-mails at pseudo-random times over the period
/// (and a few just before it), push consent granted, e-mail consent granted for even customers
/// and revoked for odd ones.
fn history() -> Vec<serde_json::Value> {
    let from = regua_sdk::Timestamp::parse(FROM).unwrap().as_millis();
    let mut seed: u64 = 0x5eed;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    (0..200)
        .map(|i| {
            let contacts: Vec<_> = (0..next(25))
                .map(|_| {
                    // From a day before the period to its end.
                    let at = from - 86_400_000 + next((DAYS as u64 + 1) * 86_400_000) as i64;
                    let channel = if next(3) == 0 { "email" } else { "push" };
                    serde_json::json!({"channel": channel,
                        "at": regua_sdk::Timestamp::from_millis(at - at % 1000).to_string(),
                        "campaign": format!("C-{}", next(3)), "category": "marketing"})
                })
                .collect();
            let email = if i % 2 == 0 { "granted" } else { "revoked" };
            serde_json::json!({"id": format!("h-{i}"), "tz": "UTC",
                "consents": {"push": {"marketing": {"status": "granted", "at": "2024-01-01T00:00:00Z"}},
                             "email": {"marketing": {"status": email, "at": "2024-01-01T00:00:00Z"}}},
                "contacts": contacts})
        })
        .collect()
}

const RULES: &str = r#"{"rules":[{"id":"push-2-24h","type":"cap","channels":["push"],"max":2,"window":{"rolling":"24h"}},{"id":"consent","type":"consent"}]}"#;

/// The same replay, computed here without the engine: (sent, denied by cap, denied by consent,
/// per step denied, per channel sent).
fn by_hand(
    customers: &[serde_json::Value],
    uncapped: Option<&str>,
) -> (u64, u64, u64, Vec<u64>, u64) {
    let from = regua_sdk::Timestamp::parse(FROM).unwrap().as_millis();
    let day = 86_400_000;
    let (mut sent, mut cap, mut consent, mut pushes) = (0, 0, 0, 0);
    let mut per_step = vec![0; DAYS as usize];
    for c in customers {
        let email_ok = c["consents"]["email"]["marketing"]["status"] == "granted";
        // (sent at, a push, its campaign's own policy has no cap)
        let contacts: Vec<(i64, bool, bool)> = c["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let at = regua_sdk::Timestamp::parse(k["at"].as_str().unwrap())
                    .unwrap()
                    .as_millis();
                let free = uncapped.is_some_and(|u| k["campaign"] == u);
                (at, k["channel"] == "push", free)
            })
            .collect();
        for step in 0..DAYS {
            let t = from + step * day;
            let mut in_step: Vec<_> = contacts
                .iter()
                .filter(|(at, ..)| *at >= t && *at < t + day)
                .collect();
            in_step.sort_by_key(|(at, ..)| *at);
            // Pushes seen at t: sent before t within (t − 24h, t], then the ones let through now.
            let mut recent = contacts
                .iter()
                .filter(|(at, push, _)| *push && *at < t && *at > t - day)
                .count();
            for (_, push, free) in in_step {
                sent += 1;
                if *push {
                    pushes += 1;
                    if recent >= 2 && !free {
                        cap += 1;
                        per_step[step as usize] += 1;
                    } else {
                        // Let through: it counts toward the next pushes' cap.
                        recent += 1;
                    }
                } else if !email_ok {
                    consent += 1;
                    per_step[step as usize] += 1;
                }
            }
        }
    }
    (sent, cap, consent, per_step, pushes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_over_generated_history_gives_the_independent_counts_on_the_cli_and_over_http() {
    let customers = history();
    let (sent, cap, consent, per_step, pushes) = by_hand(&customers, None);
    assert!(
        cap > 20 && consent > 20,
        "the history exercises both rules: {cap} {consent}"
    );
    let mut input: String = customers.iter().map(|c| format!("{c}\n")).collect();
    input.push_str("{\"id\": 7}\n"); // a bad line: counted and named, never dropped
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.ndjson");
    let mut bytes = input.clone().into_bytes();
    bytes.extend_from_slice(b"{\"id\":\"\xff\"}\n"); // not UTF-8: counted and named too
    std::fs::write(&file, &bytes).unwrap();
    let svg = dir.path().join("blocked.svg");
    let to = "2025-03-11T00:00:00Z";
    let out = regua(
        &[
            "backtest",
            "--customers",
            file.to_str().unwrap(),
            "--policy",
            "standard-rest",
            "--params",
            RULES,
            "--plugins-dir",
            plugins_dir().to_str().unwrap(),
            "--from",
            FROM,
            "--to",
            to,
            "--json",
            "--svg",
            svg.to_str().unwrap(),
            "--tz",
            "UTC",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["customers"], 200);
    assert_eq!(r["bad_lines"], 2);
    assert_eq!(r["failures"][0]["line"], 201, "{}", r["failures"]);
    assert_eq!(r["failures"][1]["line"], 202, "{}", r["failures"]);
    assert!(
        r["failures"][1]["error"]
            .as_str()
            .unwrap()
            .contains("UTF-8")
    );
    assert_eq!(r["sent"], sent);
    assert_eq!(r["denied"], cap + consent);
    assert_eq!(r["deferred"], 0);
    assert_eq!(r["allowed"], sent - cap - consent);
    assert_eq!(r["by_rule"]["push-2-24h"]["denied"], cap);
    assert_eq!(r["by_rule"]["consent"]["denied"], consent);
    assert_eq!(r["by_channel"]["push"]["sent"], pushes);
    assert_eq!(r["by_channel"]["email"]["denied"], consent);
    let steps: Vec<u64> = r["by_step"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["denied"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, per_step);
    let by_campaign: u64 = r["by_campaign"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["sent"].as_u64().unwrap())
        .sum();
    assert_eq!(by_campaign, sent);
    let examples = r["examples"].as_array().unwrap();
    assert_eq!(
        examples.iter().filter(|e| e["rule"] == "consent").count(),
        3
    );
    assert!(
        examples
            .iter()
            .all(|e| e["outcome"] == "deny" && e["customer"].as_str().unwrap().starts_with("h-"))
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("2025-03-10 00:00"));

    // Over HTTP, the same numbers.
    let s = crate::http::start(&["standard-rest"], None).await;
    let url = format!(
        "/v1/backtest?policy=standard-rest&from={}&to={}&params={}",
        crate::http::urlencode(FROM),
        crate::http::urlencode(to),
        crate::http::urlencode(RULES)
    );
    let (status, h) = s.post(&url, input.clone()).await;
    assert_eq!(status, 200, "{h}");
    let strip = |mut v: serde_json::Value| {
        let o = v.as_object_mut().unwrap();
        o.remove("failures");
        o.remove("bad_lines");
        v
    };
    // The service's default zone is São Paulo; no customer here lacks a zone, so the answers match.
    assert_eq!(strip(h), strip(r));
    let (status, e) = s
        .post(
            "/v1/backtest?policy=standard-rest&from=2025-03-02T00:00:00Z&to=2025-03-01T00:00:00Z",
            "",
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("period is empty"),
        "{e}"
    );
}

#[test]
fn a_backtest_of_a_campaigns_folder_judges_each_message_by_its_campaigns_policy() {
    let customers = history();
    let (sent, cap, consent, per_step, _) = by_hand(&customers, Some("C-1"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.ndjson");
    std::fs::write(
        &file,
        customers
            .iter()
            .map(|c| format!("{c}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let campaigns = dir.path().join("campaigns");
    std::fs::create_dir(&campaigns).unwrap();
    // RULES, in TOML.
    std::fs::write(
        campaigns.join("company.toml"),
        "[rest]\nplugin = \"standard-rest\"\n[rest.params]\nrules = [\n  { id = \"push-2-24h\", type = \"cap\", channels = [\"push\"], max = 2, window = { rolling = \"24h\" } },\n  { id = \"consent\", type = \"consent\" },\n]\n",
    )
    .unwrap();
    for code in ["C-0", "C-1", "C-2"] {
        let mut text = format!(
            "code = \"{code}\"\nname = \"n\"\nrequester = \"r\"\nowner = \"o\"\npriority = 1\nstart = \"2025-01-01T00:00:00Z\"\n[message]\nchannel = \"push\"\ntemplate = \"t\"\n"
        );
        if code == "C-1" {
            text.push_str("[rest]\nplugin = \"standard-rest\"\n[rest.params]\nrules = [{ id = \"consent\", type = \"consent\" }]\n");
        }
        std::fs::write(campaigns.join(format!("{code}.toml")), text).unwrap();
    }
    let out = regua(
        &[
            "backtest",
            "--customers",
            file.to_str().unwrap(),
            "--campaigns",
            campaigns.to_str().unwrap(),
            "--plugins-dir",
            plugins_dir().to_str().unwrap(),
            "--from",
            FROM,
            "--to",
            "2025-03-11T00:00:00Z",
            "--json",
            "--tz",
            "UTC",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["own_policies"]["C-1"]
            .as_str()
            .unwrap()
            .starts_with("standard-rest "),
        "{r}"
    );
    assert_eq!(r["sent"], sent, "{}", r["by_campaign"]);
    assert_eq!(r["by_rule"]["push-2-24h"]["denied"], cap);
    assert_eq!(r["by_rule"]["consent"]["denied"], consent);
    assert!(
        r["by_campaign"]["C-1"]["denied"].as_u64().unwrap() > 0,
        "C-1's e-mails still need consent"
    );
    let steps: Vec<u64> = r["by_step"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["denied"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, per_step);
}

/// WhatsApp messages sent with an approved template are replayed as templated, so the
/// WhatsApp-session rule allows them without an inbound message; free-form ones (no template)
/// outside a session are denied, as a live run would.
#[test]
fn a_backtest_replays_templated_whatsapp_sends_as_templated() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    let (mut templated, mut free) = (0, 0);
    for i in 0..12 {
        // Two sends a day, one templated; the customers never wrote to us.
        let contacts: Vec<serde_json::Value> = (0..3)
            .flat_map(|day| {
                let at = |h: u32| format!("2025-03-0{}T{h:02}:00:00Z", day + 2);
                [
                    serde_json::json!({"channel": "whatsapp", "at": at(10 + i % 3), "campaign": "WA-1",
                        "category": "marketing", "template": "wa-offer-v2"}),
                    serde_json::json!({"channel": "whatsapp", "at": at(15), "campaign": "WA-1",
                        "category": "marketing"}),
                ]
            })
            .collect();
        templated += 3;
        free += 3;
        input.push_str(&format!(
            "{}\n",
            serde_json::json!({"id": format!("w-{i}"), "tz": "UTC", "contacts": contacts})
        ));
    }
    let file = dir.path().join("wa.ndjson");
    std::fs::write(&file, input).unwrap();
    // The same history as Parquet (a data lake's table) reads the same, templates included.
    let parquet = dir.path().join("wa.parquet");
    convert(&file, &parquet);
    for file in [&file, &parquet] {
        let out = regua(
            &[
                "backtest",
                "--customers",
                file.to_str().unwrap(),
                "--policy",
                "standard-rest",
                "--params",
                r#"{"rules":[{"id":"wa","type":"whatsapp_session"}]}"#,
                "--plugins-dir",
                plugins_dir().to_str().unwrap(),
                "--from",
                "2025-03-01T00:00:00Z",
                "--to",
                "2025-03-08T00:00:00Z",
                "--json",
                "--tz",
                "UTC",
            ],
            "",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["sent"], templated + free, "{r}");
        assert_eq!(r["allowed"], templated, "{r}");
        assert_eq!(r["by_rule"]["wa"]["denied"], free, "{r}");
    }
}

/// The README's readout example, run as written (in a fresh folder, with the example campaigns
/// and the built plugins): its commands reproduce its figures.
#[test]
fn the_readmes_readout_example_reproduces_from_its_own_commands() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("**A/B readout: did the variant beat the holdout?**")
        .nth(1)
        .unwrap();
    let block = section
        .split("```console\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .unwrap();
    // Commands (`$ …`, continued by a trailing backslash) and what the last one prints.
    let (mut commands, mut printed) = (Vec::<String>::new(), Vec::<&str>::new());
    let mut continued = false;
    for line in block.lines() {
        if let Some(c) = line.strip_prefix("$ ") {
            commands.push(c.trim_end_matches('\\').to_owned());
        } else if continued {
            let last = commands.last_mut().unwrap();
            last.push(' ');
            last.push_str(line.trim().trim_end_matches('\\'));
        } else {
            printed.push(line);
        }
        continued = line.ends_with('\\');
    }
    assert_eq!(commands.len(), 4, "{commands:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut last = String::new();
    for command in &commands {
        let mut words = command.split_whitespace();
        assert_eq!(words.next(), Some("regua"), "{command}");
        let mut args: Vec<String> = words
            .map(|w| match w.strip_prefix("examples/") {
                Some(rest) => repo().join("examples").join(rest).display().to_string(),
                None => w.to_owned(),
            })
            .collect();
        if args[0] == "campaign" {
            args.extend(["--plugins-dir".into(), plugins_dir().display().to_string()]);
        }
        let out = std::process::Command::new(regua_tests::regua_bin())
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}: {}", text(&out.stderr));
        last = text(&out.stdout);
    }
    let got: Vec<&str> = last.lines().map(str::trim_end).collect();
    assert_eq!(
        got,
        printed,
        "the README shows:\n{}\nthe commands print:\n{last}",
        printed.join("\n")
    );
    assert!(dir.path().join("readout.svg").exists());
}
