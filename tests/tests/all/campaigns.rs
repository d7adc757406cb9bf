//! Campaigns, run as a marketing engineer runs them: folders of TOML files through
//! `regua campaign check|run`, over the example plugins built to wasm.

use std::path::Path;

use regua_tests::{plugins_dir, repo};

use crate::cli::{regua, text};

const NOW: &str = "2025-03-11T15:00:00Z"; // 12:00 in São Paulo

/// A campaigns folder with `files` (name, TOML).
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    dir
}

/// A message campaign for everyone with `code`, `priority` and extra TOML.
fn message_campaign(code: &str, priority: u32, extra: &str) -> String {
    format!(
        r#"code = "{code}"
name = "Campaign {code}"
requester = "ana"
owner = "crm"
priority = {priority}
start = "2025-01-01T00:00:00Z"
{extra}
[message]
channel = "email"
template = "tpl-{code}"
"#
    )
}

const ONE_A_DAY: &str = r#"
[rest]
plugin = "standard-rest"
params = { rules = [{ id = "one-a-day", type = "cap", channels = "any", max = 1, window = { calendar_days = 1 } }] }
"#;

/// Runs `regua campaign run` over `input`; the answer lines and the funnel report. Input and
/// output go through files, so a large run never blocks on a pipe.
fn run(dir: &Path, input: &str, extra: &[&str]) -> (Vec<serde_json::Value>, serde_json::Value) {
    let funnel = dir.join("funnel.json.out");
    let (input_file, output_file) = (dir.join("input.ndjson.in"), dir.join("output.ndjson.out"));
    std::fs::write(&input_file, input).unwrap();
    let mut args = vec![
        "campaign",
        "run",
        "--campaigns",
        dir.to_str().unwrap(),
        "--plugins-dir",
        plugins_dir().to_str().unwrap(),
        "--input",
        input_file.to_str().unwrap(),
        "--output",
        output_file.to_str().unwrap(),
        "--funnel",
        funnel.to_str().unwrap(),
    ];
    if !extra.contains(&"--now") {
        args.extend(["--now", NOW]);
    }
    args.extend_from_slice(extra);
    let out = regua(&args, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = std::fs::read_to_string(&output_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let report = serde_json::from_str(&std::fs::read_to_string(funnel).unwrap()).unwrap();
    (lines, report)
}

#[test]
fn under_a_one_a_day_cap_three_campaigns_send_one_message_the_most_important() {
    let dir = folder(&[
        ("company.toml", ONE_A_DAY),
        ("b.toml", &message_campaign("B-2", 2, "")),
        ("a.toml", &message_campaign("A-3", 3, "")),
        ("c.toml", &message_campaign("C-1", 1, "")),
    ]);
    let (lines, report) = run(dir.path(), r#"{"id":"c-1","tz":"America/Sao_Paulo"}"#, &[]);
    let line = &lines[0];
    assert_eq!(line["messages"].as_array().unwrap().len(), 1, "{line}");
    assert_eq!(line["messages"][0]["campaign"], "C-1");
    assert_eq!(line["messages"][0]["send_at"], NOW);
    let decisions = line["decisions"].as_array().unwrap();
    let order: Vec<_> = decisions.iter().map(|d| d["campaign"].clone()).collect();
    assert_eq!(order, ["C-1", "B-2", "A-3"]);
    for d in &decisions[1..] {
        assert_eq!(d["outcome"], "denied", "{d}");
        assert_eq!(d["denied"][0]["rule"], "one-a-day");
        assert_eq!(d["denied"][0]["reason"], "CAP_REACHED");
        assert_eq!(d["versions"]["standard-rest"].as_str().unwrap().len(), 16);
    }
    assert_eq!(
        report["campaigns"][1]["denials"]["one-a-day/CAP_REACHED"],
        1
    );
    assert_eq!(report["messages"], 1);
}

#[test]
fn a_ten_percent_holdout_over_100000_customers_holds_ten_percent_the_same_each_run() {
    let dir = folder(&[(
        "h.toml",
        &message_campaign("HOLD-10", 1, "holdout = { percent = 10 }"),
    )]);
    let input: String = (0..100_000)
        .map(|i| format!("{{\"id\":\"cus-{i:07}\"}}\n"))
        .collect();
    let held = |lines: &[serde_json::Value]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["decisions"][0]["outcome"] == "held_out")
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (first, report) = run(dir.path(), &input, &[]);
    let share = held(&first).len() as f64 / 100_000.0;
    assert!((0.095..=0.105).contains(&share), "held out {share}");
    assert_eq!(report["campaigns"][0]["held_out"], held(&first).len());
    let (second, _) = run(dir.path(), &input, &["--threads", "1"]);
    assert_eq!(held(&first), held(&second));
}

const SEQUENCE: &str = r#"code = "JRN-1"
name = "Two steps"
requester = "ana"
owner = "crm"
priority = 1
start = "2025-01-01T00:00:00Z"

[journey]
plugin = "sequence"
[journey.params]
journey = "two-steps"
enter_on = "signed_up"
steps = [
  { id = "email", send = { channel = "email", template = "first" }, wait = { for = "1d" } },
  { id = "push", send = { channel = "push", template = "second" }, wait = { for = "1d" } },
]

[rest]
plugin = "standard-rest"
params = { rules = [{ id = "consent", type = "consent" }] }
"#;

#[test]
fn a_journey_message_denied_by_rest_is_not_sent_and_the_journey_keeps_its_spacing() {
    let dir = folder(&[("j.toml", SEQUENCE)]);
    let customer = r#"{"id":"c-1","tz":"America/Sao_Paulo",
        "events":[{"name":"signed_up","at":"2025-03-11T14:00:00Z"}],
        "consents":{"email":{"marketing":{"status":"revoked","at":"2025-03-01T00:00:00Z"}},
                    "push":{"marketing":{"status":"granted","at":"2025-03-01T00:00:00Z"}}}}"#
        .replace('\n', "");
    let (lines, report) = run(dir.path(), &customer, &[]);
    let line = &lines[0];
    let d = &line["decisions"][0];
    // The e-mail is denied and nothing else is proposed in this run: the push is a day away.
    assert_eq!(d["outcome"], "denied", "{line}");
    assert_eq!(d["denied"].as_array().unwrap().len(), 1, "{line}");
    assert_eq!(d["denied"][0]["step"], "email");
    assert_eq!(d["denied"][0]["reason"], "NO_CONSENT");
    assert_eq!(line["messages"], serde_json::json!([]), "{line}");
    let state = &line["journeys"][0];
    assert_eq!(state["journey"], "two-steps");
    assert_eq!(
        state["step"], "email",
        "the instance waits at the step: {line}"
    );
    assert_eq!(state["step_entered_at"], "2025-03-11T15:00:00Z");
    assert_eq!(state["status"], "active");
    let why = d["reasons"].to_string();
    assert!(
        why.contains("denied") && why.contains("until 2025-03-12T15:00:00Z"),
        "{why}"
    );
    assert_eq!(
        report["campaigns"][0]["denials"]["consent/NO_CONSENT"], 1,
        "{report}"
    );
    assert_eq!(report["campaigns"][0]["denied"], 1, "{report}");

    // The customer with the state the run left: a second before the day is over nothing is
    // due; at 15:00Z the next day the push is planned.
    let mut next: serde_json::Value = serde_json::from_str(&customer).unwrap();
    next["journeys"] = line["journeys"].clone();
    let next = next.to_string();
    let (early, _) = run(dir.path(), &next, &["--now", "2025-03-12T14:59:59Z"]);
    assert_eq!(
        early[0]["decisions"][0]["outcome"], "nothing_to_do",
        "{}",
        early[0]
    );
    let (due, _) = run(dir.path(), &next, &["--now", "2025-03-12T15:00:00Z"]);
    let sent: Vec<_> = due[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["template"].clone(), m["step"].clone()))
        .collect();
    assert_eq!(sent, [("second".into(), "push".into())], "{}", due[0]);
    assert_eq!(due[0]["journeys"][0]["step"], "push");
}

#[test]
fn the_example_campaigns_funnels_add_up_to_the_customers_read() {
    let dir = repo().join("examples/campaigns");
    let mut input = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let customers = input.lines().count() as u64;
    input.push_str("{not json\n");
    input.push_str(input.clone().lines().next().unwrap());
    input.push('\n');
    let send_list = tempfile::NamedTempFile::new().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let funnel = out_dir.path().join("funnel.json");
    let out = regua(
        &[
            "campaign",
            "run",
            "--campaigns",
            dir.to_str().unwrap(),
            "--plugins-dir",
            plugins_dir().to_str().unwrap(),
            "--input",
            "-",
            "--now",
            "2025-03-11T12:00:00Z",
            "--funnel",
            funnel.to_str().unwrap(),
            "--send-list",
            send_list.path().to_str().unwrap(),
            "--send-list-format",
            "csv",
        ],
        &input,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, customers + 2, "one line per input line");
    assert!(lines[customers as usize]["error"].is_string());
    assert!(
        lines[customers as usize + 1]["error"]
            .as_str()
            .unwrap()
            .contains("earlier line")
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&funnel).unwrap()).unwrap();
    assert_eq!(report["customers"], customers);
    assert_eq!(report["bad_lines"], 2);
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    let mut messages = 0;
    for f in report["campaigns"].as_array().unwrap() {
        assert_eq!(n(&f["read"]), customers, "{f}");
        assert_eq!(
            n(&f["read"]),
            n(&f["inactive"]) + n(&f["in_audience"]) + n(&f["not_in_audience"]),
            "{f}"
        );
        assert_eq!(
            n(&f["in_audience"]),
            n(&f["held_out"])
                + n(&f["planned"])
                + n(&f["denied"])
                + n(&f["nothing_to_do"])
                + n(&f["errors"]),
            "{f}"
        );
        assert_eq!(n(&f["errors"]), 0, "{f}");
        assert!(
            n(&f["planned"]) > 0,
            "every example campaign sends something: {f}"
        );
        let sent: u64 = f["sent"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|by_channel| by_channel.as_object().unwrap().values())
            .map(n)
            .sum();
        messages += sent;
    }
    assert_eq!(n(&report["messages"]), messages);
    let rows = std::fs::read_to_string(send_list.path()).unwrap();
    let mut rows = rows.lines();
    assert_eq!(
        rows.next().unwrap(),
        "customer,campaign,variant,channel,template,category,send_at,decided_at,journey,step"
    );
    assert_eq!(rows.count() as u64, messages);
    // No customer gets two messages on one local day: the company cap holds across campaigns.
    for line in &lines[..customers as usize] {
        let now_today = line["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["send_at"].as_str().unwrap() < "2025-03-12T03:00:00Z")
            .count();
        assert!(now_today <= 1, "{line}");
    }
}

#[test]
fn campaign_check_names_the_file_and_field_of_every_problem() {
    let overlapping = message_campaign(
        "AB-1",
        1,
        "variants = [{ name = \"A\", buckets = [0, 6000] }, { name = \"B\", buckets = [5000, 10000] }]",
    );
    let dir = folder(&[
        ("good.toml", &message_campaign("OK-1", 1, "")),
        ("twice.toml", &message_campaign("OK-1", 2, "")),
        ("ab.toml", &overlapping),
        (
            "bad-kind.toml",
            &message_campaign(
                "K-1",
                1,
                "[audience]\nall_of = [{ plugin = \"standard-rest\" }]",
            ),
        ),
        (
            "bad-params.toml",
            &message_campaign(
                "P-1",
                1,
                "[audience]\nall_of = [{ plugin = \"lapsed\", params = { days = \"many\" } }]",
            ),
        ),
        (
            "missing.toml",
            &message_campaign(
                "M-1",
                1,
                "[audience]\nall_of = [{ plugin = \"no-such-segment\" }]",
            ),
        ),
        ("broken.toml", "code = \"X\"\nname = "),
    ]);
    let out = regua(
        &[
            "campaign",
            "check",
            dir.path().to_str().unwrap(),
            "--plugins-dir",
            plugins_dir().to_str().unwrap(),
        ],
        "",
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    for wanted in [
        "twice.toml: field `code`: `OK-1` is already the code",
        "ab.toml: field `variants`: `B` [5000, 10000) overlaps",
        "bad-kind.toml: field `audience.all_of[0]`: plugin `standard-rest` is a rest plugin",
        "bad-params.toml: field `audience.all_of[0].params`",
        "missing.toml: field `audience.all_of[0]`: no plugin `no-such-segment`",
        "broken.toml: ",
    ] {
        assert!(err.contains(wanted), "{wanted:?} not in:\n{err}");
    }
    assert!(
        text(&out.stdout).contains("OK-1"),
        "the good campaign is listed"
    );
}

const EXAMPLE_PLUGINS: [&str; 8] = [
    "welcome",
    "app-activation",
    "first-cashout-pending",
    "cross-sell",
    "birthday-today",
    "lapsed",
    "rfm",
    "standard-rest",
];

/// A copy of examples/campaigns, to change while a service serves it.
fn example_campaigns() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("examples/campaigns")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_decides_and_streams_as_the_cli_does() {
    let campaigns = example_campaigns();
    let input: String = std::fs::read_to_string(repo().join("examples/customers.ndjson"))
        .unwrap()
        .lines()
        .take(40)
        .map(|l| format!("{l}\n"))
        .collect();
    let now = NOW;
    let (cli, _) = run(campaigns.path(), &input, &["-q"]);

    let s = crate::http::start_campaigns(&EXAMPLE_PLUGINS, campaigns.path()).await;
    let (status, list) = s.get("/v1/campaigns").await;
    assert_eq!(status, 200);
    assert_eq!(list["campaigns"].as_array().unwrap().len(), 7, "{list}");
    assert_eq!(list["errors"], serde_json::json!([]));
    let (status, one) = s.get("/v1/campaigns/RET-2025-030").await;
    assert_eq!(status, 200);
    assert_eq!(one["requester"], "julia.prado");
    assert_eq!(one["holdout"]["percent"], 10.0);
    assert_eq!(s.get("/v1/campaigns/NOPE-1").await.0, 404);

    for (line, want) in input.lines().zip(&cli).take(12) {
        let body = format!(r#"{{"customer":{line},"now":"{now}"}}"#);
        let (status, got) = s.post("/v1/decide", body.clone()).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(
            &got, want,
            "POST /v1/decide answers as `regua campaign run`"
        );
        let (status, single) = s.post("/v1/campaigns/BRF-2025-019/decide", body).await;
        assert_eq!(status, 200, "{single}");
        assert_eq!(single["decisions"].as_array().unwrap().len(), 1);
        assert_eq!(single["decisions"][0]["campaign"], "BRF-2025-019");
    }
    let streamed = s
        .client
        .post(s.url(&format!("/v1/campaigns/run?now={now}")))
        .body(input.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let streamed: Vec<serde_json::Value> = streamed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(streamed, cli, "the streamed run answers as the CLI");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("regua_campaign_decisions_total{campaign=\"BRF-2025-001\""),
        "{metrics}"
    );
    let (status, bad) = s.post("/v1/decide", r#"{"customer":{"id":3}}"#).await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("customer"),
        "{bad}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_campaign_file_keeps_its_last_good_version_serving() {
    let campaigns = example_campaigns();
    let s = crate::http::start_campaigns(&EXAMPLE_PLUGINS, campaigns.path()).await;
    let file = campaigns.path().join("lapsed-30.toml");
    std::fs::write(&file, "code = \"RET-2025-030\"\npriority = \"soon\"\n").unwrap();
    crate::http::eventually(
        std::time::Duration::from_secs(20),
        "the broken file is listed",
        async || {
            !s.get("/v1/campaigns").await.1["errors"]
                .as_array()
                .unwrap()
                .is_empty()
        },
    )
    .await;
    let (_, list) = s.get("/v1/campaigns").await;
    let error = &list["errors"][0];
    assert!(
        error["file"].as_str().unwrap().ends_with("lapsed-30.toml"),
        "{list}"
    );
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("last good version keeps serving"),
        "{list}"
    );
    let codes: Vec<_> = list["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].clone())
        .collect();
    assert!(codes.contains(&serde_json::json!("RET-2025-030")), "{list}");
    assert_eq!(s.get("/v1/campaigns/RET-2025-030").await.0, 200);

    // A new campaign lands and is served; deleting the broken file ends its campaign.
    std::fs::write(
        campaigns.path().join("new.toml"),
        message_campaign("NEW-1", 5, ""),
    )
    .unwrap();
    std::fs::remove_file(&file).unwrap();
    crate::http::eventually(
        std::time::Duration::from_secs(20),
        "the new campaign is served and the deleted one is not",
        async || {
            s.get("/v1/campaigns/NEW-1").await.0 == 200
                && s.get("/v1/campaigns/RET-2025-030").await.0 == 404
        },
    )
    .await;
}

/// The service's OpenAPI document passes `openapi-spec-validator` (installed by
/// `cargo xtask test`), and every operation declares its path and query parameters where they
/// are, so a client generated from it calls the right URLs.
#[test]
fn the_openapi_document_passes_a_validator() {
    let doc = serde_json::to_value(regua_host::service::http::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/campaigns",
        "/v1/campaigns/{code}",
        "/v1/campaigns/{code}/decide",
        "/v1/decide",
        "/v1/campaigns/run",
        "/v1/runs/latest",
        "/v1/decisions",
        "/v1/decisions/{id}",
    ] {
        assert!(paths.contains_key(path), "{path} is missing");
    }
    for (path, ops) in paths {
        let wanted: Vec<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|p| p.split('}').next())
            .collect();
        for (method, op) in ops.as_object().unwrap() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for name in &wanted {
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == *name && p["in"] == "path"),
                    "{method} {path} does not declare path parameter `{name}`"
                );
            }
            for p in &params {
                if p["in"] == "path" {
                    assert!(
                        wanted.contains(&p["name"].as_str().unwrap()),
                        "{method} {path}: {p}"
                    );
                }
            }
        }
    }
    let batch = &paths["/v1/batch"]["post"]["parameters"];
    assert!(
        batch.as_array().unwrap().iter().all(|p| p["in"] == "query"),
        "{batch}"
    );

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = std::process::Command::new(regua_tests::python())
        .args(["-m", "openapi_spec_validator"])
        .arg(file.path())
        .output()
        .expect("the tests' Python runs (cargo xtask test installs the validator)");
    assert!(
        out.status.success(),
        "the OpenAPI document fails the validator (install it with `cargo xtask test`):\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn regua_test_runs_the_fixture_cases_of_campaigns_and_plugins() {
    let out = regua(
        &[
            "test",
            "examples/campaigns",
            "plugins/standard-rest",
            "--plugins-dir",
            plugins_dir().to_str().unwrap(),
        ],
        "",
    );
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(report.contains("27 passed, 0 failed"), "{report}");
}

/// A Python client generated from the service's own OpenAPI document (openapi-python-client,
/// installed by `cargo xtask test`) calls the service: path parameters, bodies and answers as
/// the document describes them, the same answers as direct calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_from_the_openapi_document_calls_the_service() {
    let campaigns = example_campaigns();
    let mut plugins = EXAMPLE_PLUGINS.to_vec();
    plugins.push("sequence");
    let s = crate::http::start_campaigns(&plugins, campaigns.path()).await;
    let (_, doc) = s.get("/openapi.json").await;
    let work = tempfile::tempdir().unwrap();
    let doc_file = work.path().join("openapi.json");
    std::fs::write(&doc_file, doc.to_string()).unwrap();
    // Blocking commands on the blocking pool, so the service keeps answering meanwhile.
    let run = |mut cmd: std::process::Command| {
        tokio::task::spawn_blocking(move || cmd.output().expect("the command runs"))
    };
    let mut generate =
        std::process::Command::new(regua_tests::python_tool("openapi-python-client"));
    generate
        .args(["generate", "--meta", "none", "--path"])
        .arg(&doc_file)
        .arg("--output-path")
        .arg(work.path().join("client"));
    let generated = run(generate).await.unwrap();
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    let customer = repo().join("examples/customer.json");
    let mut check = std::process::Command::new(regua_tests::python());
    check
        .arg(repo().join("tests/client/check.py"))
        .arg(work.path())
        .arg(s.url(""))
        .arg(&customer);
    let out = run(check).await.unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["lapsed"], "segment");
    assert_eq!(got["campaign"], "RET-2025-030");
    assert_eq!(got["campaigns"].as_array().unwrap().len(), 7);
    let customer = std::fs::read_to_string(customer).unwrap();
    let (_, direct) = s
        .post(
            "/v1/plugins/lapsed/evaluate",
            format!(
                r#"{{"customer":{customer},"now":"2025-03-11T12:00:00Z","params":{{"days":30}}}}"#
            ),
        )
        .await;
    assert_eq!(got["evaluate"], direct);
    let (_, direct) = s
        .post(
            "/v1/decide",
            format!(r#"{{"customer":{customer},"now":"2025-03-11T12:00:00Z"}}"#),
        )
        .await;
    assert_eq!(got["decide"], direct);
}

#[test]
fn a_broken_company_file_stops_the_run_rather_than_dropping_the_rest_policy() {
    let dir = folder(&[
        ("company.toml", "[rest]\nplugin = 7\n"),
        ("a.toml", &message_campaign("A-1", 1, "")),
    ]);
    let out = regua(
        &[
            "campaign",
            "run",
            "--campaigns",
            dir.path().to_str().unwrap(),
            "--plugins-dir",
            plugins_dir().to_str().unwrap(),
            "--input",
            "-",
            "--now",
            NOW,
            "--keep-going",
        ],
        "{\"id\":\"c-1\"}\n",
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("company.toml") && err.contains("rest policy"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no line is decided");
}

/// The issue's example, on every path a user has: the example `welcome` journey (e-mail, a day,
/// push, two days, WhatsApp) under the company's one-a-day cap, for a customer who had a push at
/// 09:00 this morning in São Paulo. At 15:00Z nothing is planned and the instance waits at
/// `welcome` until 15:00Z the next day; then the push is planned, the cap being free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_welcome_keeps_its_spacing_through_eval_campaign_run_and_decide() {
    let case: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo().join("examples/campaigns/tests/cases/03-capped-welcome-waits.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let customer = case["customer"].clone();
    let campaigns = example_campaigns();
    let (today, _) = run(campaigns.path(), &customer.to_string(), &["-q"]);
    let today = &today[0];
    assert_eq!(today["messages"], serde_json::json!([]), "{today}");
    let welcome = &today["decisions"][0];
    assert_eq!(welcome["campaign"], "BRF-2025-001");
    assert_eq!(welcome["outcome"], "denied", "{today}");
    assert_eq!(welcome["denied"].as_array().unwrap().len(), 1, "{today}");
    assert_eq!(welcome["denied"][0]["rule"], "one-a-day");
    assert_eq!(welcome["denied"][0]["step"], "welcome");
    assert!(
        welcome["reasons"]
            .to_string()
            .contains("until 2025-03-12T15:00:00Z"),
        "{welcome}"
    );
    let state = &today["journeys"][0];
    assert_eq!(
        (&state["step"], &state["status"], &state["step_entered_at"]),
        (
            &"welcome".into(),
            &"active".into(),
            &"2025-03-11T15:00:00Z".into()
        ),
        "{today}"
    );
    let mut next = customer.clone();
    next["journeys"] = today["journeys"].clone();
    let tomorrow_at = "2025-03-12T15:00:00Z";
    let (tomorrow, _) = run(
        campaigns.path(),
        &next.to_string(),
        &["-q", "--now", tomorrow_at],
    );
    let tomorrow = &tomorrow[0];
    let sent: Vec<_> = tomorrow["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["channel"].clone(),
                m["template"].clone(),
                m["send_at"].clone(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [(
            "push".into(),
            "app-download-gold".into(),
            tomorrow_at.into()
        )],
        "{tomorrow}"
    );

    // POST /v1/decide answers as the campaign run's lines.
    let s = crate::http::start_campaigns(&EXAMPLE_PLUGINS, campaigns.path()).await;
    for (record, now, line) in [(&customer, NOW, today), (&next, tomorrow_at, tomorrow)] {
        let body = serde_json::json!({"customer": record, "now": now}).to_string();
        let (status, got) = s.post("/v1/decide", body).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["messages"], line["messages"], "{got}");
        assert_eq!(got["journeys"], line["journeys"], "{got}");
        assert_eq!(
            got["decisions"][0]["outcome"],
            line["decisions"][0]["outcome"]
        );
    }

    // `regua eval` of the journey alone, with the denial fed back as the campaign run does.
    let mut entered = customer.clone();
    entered["journeys"] = serde_json::json!([{"journey": "welcome", "instance": 1,
        "status": "active", "entered_at": NOW, "step": "welcome", "step_entered_at": NOW,
        "variant": state["variant"]}]);
    let denial = serde_json::json!({"name": "regua.message_denied", "at": NOW,
        "props": {"journey": "welcome", "instance": 1, "step": "welcome"}});
    let welcome_wasm = plugins_dir().join("welcome.wasm");
    let eval = |record: &serde_json::Value, now: &str, event: Option<&serde_json::Value>| {
        let mut args = vec![
            "eval".to_owned(),
            welcome_wasm.display().to_string(),
            "--customer".into(),
            "-".into(),
            "--now".into(),
            now.into(),
        ];
        if let Some(e) = event {
            args.extend(["--event".into(), e.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = regua(&args, &record.to_string());
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let answer = eval(&entered, NOW, Some(&denial));
    assert_eq!(
        answer["actions"],
        serde_json::json!([{"wait_until": {"until": "2025-03-12T15:00:00Z"}}]),
        "{answer}"
    );
    assert_eq!(answer["states"][0]["step"], "welcome", "{answer}");
    let mut waited = customer.clone();
    waited["journeys"] = answer["states"].clone();
    // A second before, it still waits, and says until when.
    assert_eq!(
        eval(&waited, "2025-03-12T14:59:59Z", None)["actions"],
        serde_json::json!([{"wait_until": {"until": "2025-03-12T15:00:00Z"}}])
    );
    let answer = eval(&waited, tomorrow_at, None);
    assert_eq!(
        answer["actions"][0],
        serde_json::json!({"move_to": {"step": "app"}})
    );
    assert_eq!(
        answer["actions"][1]["send"]["template"],
        "app-download-gold"
    );
}

const BIRTHDAY_JOURNEY: &str = r#"code = "BDAY-1"
name = "Birthday journey"
requester = "ana"
owner = "crm"
priority = 1
start = "2025-01-01T00:00:00Z"

[audience]
all_of = [{ plugin = "birthday-today" }]

[journey]
plugin = "sequence"
[journey.params]
journey = "birthday"
steps = [
  { id = "greeting", send = { channel = "sms", template = "bday-sms" }, wait = { for = "4d" } },
  { id = "reminder", send = { channel = "push", template = "bday-push" }, wait = { for = "1d" } },
]

[rest]
plugin = "standard-rest"
params = { rules = [{ id = "consent", type = "consent" }] }
"#;

/// A journey campaign's audience decides entry only (DOMAIN §4a): a birthday journey entered on
/// the birthday sends its day-4 push although the customer is no longer in `birthday-today`; a
/// customer outside the audience and in no instance is still not in it.
#[test]
fn a_journey_campaigns_audience_decides_entry_and_the_journey_goes_on_after() {
    let dir = folder(&[("b.toml", BIRTHDAY_JOURNEY)]);
    let customer = r#"{"id":"c-bday","tz":"America/Sao_Paulo","profile":{"birthday":"1990-03-11"},
        "events":[{"name":"account_created","at":"2025-03-01T12:00:00Z"}],
        "consents":{"sms":{"marketing":{"status":"granted","at":"2025-01-01T00:00:00Z"}},
                    "push":{"marketing":{"status":"granted","at":"2025-01-01T00:00:00Z"}}}}"#
        .replace('\n', "");
    // The birthday, 12:00 in São Paulo: enters, the SMS goes.
    let (lines, _) = run(dir.path(), &customer, &[]);
    let d = &lines[0]["decisions"][0];
    assert_eq!(d["outcome"], "planned", "{}", lines[0]);
    assert_eq!(lines[0]["messages"][0]["template"], "bday-sms");
    // Four days later the birthday is over; the journey's push is due all the same.
    let mut later: serde_json::Value = serde_json::from_str(&customer).unwrap();
    later["journeys"] = lines[0]["journeys"].clone();
    let other = r#"{"id":"c-other","tz":"America/Sao_Paulo","profile":{"birthday":"1990-07-01"},
        "events":[{"name":"account_created","at":"2025-03-01T12:00:00Z"}]}"#
        .replace('\n', "");
    let input = format!("{later}\n{other}\n");
    let (lines, report) = run(dir.path(), &input, &["--now", "2025-03-15T15:00:00Z"]);
    let d = &lines[0]["decisions"][0];
    assert_eq!(d["outcome"], "planned", "{}", lines[0]);
    let sent: Vec<_> = lines[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["template"].clone(), m["step"].clone()))
        .collect();
    assert_eq!(
        sent,
        [("bday-push".into(), "reminder".into())],
        "{}",
        lines[0]
    );
    assert!(
        d["reasons"]
            .to_string()
            .contains("not in segment `birthday-today`"),
        "the reasons say why it goes on: {d}"
    );
    assert_eq!(lines[0]["journeys"][0]["step"], "reminder");
    // Not in the audience and in no instance: not in the audience, as before.
    assert_eq!(lines[1]["decisions"][0]["outcome"], "not_in_audience");
    assert_eq!(report["campaigns"][0]["planned"], 1, "{report}");
}

/// A send list written as Parquet reads back, row for row and typed, as the NDJSON one of the
/// same run: a daily job can write its send list straight into a data lake.
#[test]
fn a_parquet_send_list_reads_back_as_the_ndjson_one() {
    use arrow_array::{Array, StringArray, TimestampMillisecondArray};
    let dir = repo().join("examples/campaigns");
    let input = repo().join("examples/customers.ndjson");
    let out = tempfile::tempdir().unwrap();
    let list = |format: &str| {
        let path = out.path().join(format!("send.{format}"));
        let run = regua(
            &[
                "campaign",
                "run",
                "--campaigns",
                dir.to_str().unwrap(),
                "--plugins-dir",
                plugins_dir().to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--now",
                "2025-03-11T12:00:00Z",
                "--send-list",
                path.to_str().unwrap(),
                "--send-list-format",
                format,
                "-o",
                "/dev/null",
                "-q",
            ],
            "",
        );
        assert!(run.status.success(), "{}", text(&run.stderr));
        path
    };
    let expected: Vec<serde_json::Value> = std::fs::read_to_string(list("ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(expected.len() > 50, "{}", expected.len());
    let file = std::fs::File::open(list("parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let instants = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap()
                .clone()
        };
        let (at, decided) = (instants("send_at"), instants("decided_at"));
        let cols: Vec<(&str, StringArray)> = [
            "customer", "campaign", "variant", "channel", "template", "category", "journey", "step",
        ]
        .into_iter()
        .map(|n| (n, text(n)))
        .collect();
        for i in 0..batch.num_rows() {
            let mut row = serde_json::Map::new();
            for (name, col) in &cols {
                let v = if col.is_null(i) {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(col.value(i).to_owned())
                };
                row.insert(name.to_string(), v);
            }
            let send_at = regua_sdk::Timestamp::from_millis(at.value(i));
            row.insert("send_at".into(), serde_json::json!(send_at.to_string()));
            let decided_at = regua_sdk::Timestamp::from_millis(decided.value(i));
            row.insert(
                "decided_at".into(),
                serde_json::json!(decided_at.to_string()),
            );
            rows.push(serde_json::Value::Object(row));
        }
    }
    // The NDJSON rows leave out absent fields; the Parquet ones hold them as nulls.
    let normal = |v: &serde_json::Value| {
        let mut o = v.as_object().unwrap().clone();
        for k in ["variant", "journey", "step"] {
            o.entry(k).or_insert(serde_json::Value::Null);
        }
        serde_json::Value::Object(o)
    };
    let expected: Vec<_> = expected.iter().map(normal).collect();
    assert_eq!(rows, expected);
}

/// `campaign run --format parquet` writes one row per input line holding what the NDJSON
/// answer says: the id or the error, and the messages, decisions and new journey states as typed
/// lists (timestamps as instants), in input order.
#[test]
fn parquet_answers_of_a_campaign_run_hold_what_the_ndjson_ones_say() {
    use serde_json::{Map, Value, json};
    let dir = repo().join("examples/campaigns");
    let customers = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let first = customers.lines().next().unwrap().to_owned();
    let input = format!("{customers}{{broken\n{first}\n");
    let out = tempfile::tempdir().unwrap();
    let answers = |format: &str| {
        let path = out.path().join(format!("answers.{format}"));
        let run = regua(
            &[
                "campaign",
                "run",
                "--campaigns",
                dir.to_str().unwrap(),
                "--plugins-dir",
                plugins_dir().to_str().unwrap(),
                "--input",
                "-",
                "--now",
                "2025-03-11T12:00:00Z",
                "--format",
                format,
                "-o",
                path.to_str().unwrap(),
                "-q",
            ],
            &input,
        );
        assert!(run.status.success(), "{}", text(&run.stderr));
        path
    };
    // The NDJSON answers, cut to the Parquet schema's fields, nulls left out, instants as
    // instants.
    fn keep(v: &Value, fields: &[&str]) -> Value {
        let mut o = Map::new();
        for f in fields {
            match v.get(*f) {
                None | Some(Value::Null) => {}
                Some(Value::String(s))
                    if ["send_at", "decided_at", "entered_at", "step_entered_at"].contains(f) =>
                {
                    let t = regua_sdk::Timestamp::parse(s).unwrap();
                    o.insert(f.to_string(), json!(t.as_millis()));
                }
                Some(x) => {
                    o.insert(f.to_string(), x.clone());
                }
            }
        }
        Value::Object(o)
    }
    let each = |v: Option<&Value>, fields: &[&str]| -> Option<Value> {
        v.and_then(Value::as_array)
            .map(|a| Value::Array(a.iter().map(|x| keep(x, fields)).collect()))
    };
    let expected: Vec<Value> = std::fs::read_to_string(answers("ndjson"))
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).unwrap();
            let mut row = keep(&v, &["id", "error"]);
            let o = row.as_object_mut().unwrap();
            o.insert("line".into(), json!(i + 1));
            let lists: [(&str, &[&str]); 3] = [
                (
                    "messages",
                    &[
                        "campaign",
                        "variant",
                        "channel",
                        "template",
                        "category",
                        "send_at",
                        "decided_at",
                        "journey",
                        "step",
                    ],
                ),
                (
                    "decisions",
                    &["campaign", "outcome", "variant", "reasons", "error"],
                ),
                (
                    "journeys",
                    &[
                        "journey",
                        "instance",
                        "status",
                        "entered_at",
                        "step",
                        "step_entered_at",
                        "variant",
                        "exit_reason",
                    ],
                ),
            ];
            for (name, fields) in lists {
                if let Some(list) = each(v.get(name), fields) {
                    o.insert(name.into(), list);
                }
            }
            row
        })
        .collect();
    assert_eq!(expected.len(), customers.lines().count() + 2);

    let file = std::fs::File::open(answers("parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        // Instants as milliseconds, so both sides compare as numbers.
        let mut w = arrow_json::LineDelimitedWriter::new(Vec::new());
        let cast = arrow_cast_instants(&batch);
        w.write(&cast).unwrap();
        w.finish().unwrap();
        for l in String::from_utf8(w.into_inner()).unwrap().lines() {
            rows.push(serde_json::from_str::<Value>(l).unwrap());
        }
    }
    assert_eq!(rows.len(), expected.len());
    for (got, want) in rows.iter().zip(&expected) {
        assert_eq!(got, want);
    }
}

/// `batch` with every timestamp, at any depth, as its milliseconds (Int64), for comparing.
fn arrow_cast_instants(batch: &arrow_array::RecordBatch) -> arrow_array::RecordBatch {
    use arrow_schema::DataType;
    use std::sync::Arc;
    fn plain(t: &DataType) -> DataType {
        match t {
            DataType::Timestamp(..) => DataType::Int64,
            DataType::List(f) => DataType::List(Arc::new(
                f.as_ref().clone().with_data_type(plain(f.data_type())),
            )),
            DataType::Struct(fs) => DataType::Struct(
                fs.iter()
                    .map(|f| f.as_ref().clone().with_data_type(plain(f.data_type())))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let columns: Vec<arrow_array::ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| arrow_cast::cast(c, &plain(c.data_type())).unwrap())
        .collect();
    let fields: Vec<arrow_schema::Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(plain(f.data_type())))
        .collect();
    arrow_array::RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).unwrap()
}

/// An inactive campaign says which side of its window `now` is on, not that it is active.
#[test]
fn an_inactive_campaign_says_it_ended_or_has_not_started() {
    let later = message_campaign("LATER-1", 1, "").replace(
        "start = \"2025-01-01T00:00:00Z\"",
        "start = \"2025-06-01T00:00:00Z\"",
    );
    let dir = folder(&[
        (
            "ended.toml",
            &message_campaign("ENDED-1", 2, "end = \"2025-03-01T00:00:00Z\""),
        ),
        ("later.toml", &later),
    ]);
    let (lines, report) = run(dir.path(), r#"{"id":"c-1"}"#, &[]);
    let reason = |code: &str| -> String {
        let d = lines[0]["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["campaign"] == code)
            .unwrap();
        assert_eq!(d["outcome"], "inactive", "{d}");
        d["reasons"][0].as_str().unwrap().to_owned()
    };
    let ended = reason("ENDED-1");
    assert!(
        ended.contains("not active") && ended.contains("ended at 2025-03-01T00:00:00Z"),
        "{ended}"
    );
    let not_yet = reason("LATER-1");
    assert!(
        not_yet.contains("not active") && not_yet.contains("starts at 2025-06-01T00:00:00Z"),
        "{not_yet}"
    );
    for c in report["campaigns"].as_array().unwrap() {
        assert_eq!(c["inactive"], 1, "{c}");
    }
}
