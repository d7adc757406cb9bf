//! The decision log of a campaign run: every decision the run answers is on the log exactly
//! once, with its campaign, requester and outcome, and `regua decisions show` explains it.

use std::collections::HashMap;

use regua_tests::{plugins_dir, repo};

use crate::cli::{regua, text};

fn campaign_run(input: &str, log: &std::path::Path) -> std::process::Output {
    let dir = repo().join("examples/campaigns");
    regua(
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
            "-q",
            "--decision-log",
            log.to_str().unwrap(),
            "--decision-log-max-mib",
            "1",
        ],
        input,
    )
}

#[test]
fn every_decision_of_a_campaign_run_is_logged_once_and_explained() {
    let mut input = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let first = input.lines().next().unwrap().to_owned();
    input.push_str(&first); // a repeated id: an error line, its decisions not logged
    input.push('\n');
    let log = tempfile::tempdir().unwrap();
    let out = campaign_run(&input, log.path());
    assert!(out.status.success(), "{}", text(&out.stderr));

    let mut answered = HashMap::new();
    for line in text(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for d in v["decisions"].as_array().into_iter().flatten() {
            let id = d["decision"]
                .as_str()
                .expect("every decision has an id")
                .to_owned();
            let previous = answered.insert(id, (v["id"].clone(), d.clone()));
            assert!(previous.is_none(), "a decision id given twice");
        }
    }
    let mut logged = HashMap::new();
    for file in std::fs::read_dir(log.path()).unwrap() {
        for line in std::fs::read_to_string(file.unwrap().path())
            .unwrap()
            .lines()
        {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = e["decision"].as_str().unwrap().to_owned();
            assert!(logged.insert(id, e).is_none(), "a decision logged twice");
        }
    }
    assert_eq!(
        logged.len(),
        answered.len(),
        "the log holds exactly the decisions answered"
    );
    for (id, (customer, d)) in &answered {
        let e = &logged[id];
        assert_eq!(&e["customer"], customer);
        assert_eq!(e["campaign"], d["campaign"]);
        assert_eq!(e["outcome"], d["outcome"]);
        assert_eq!(e["now"], "2025-03-11T12:00:00Z");
        assert!(e["requester"].is_string() && e["input"].as_str().unwrap().starts_with("sha256:"));
        assert!(e.get("fields").is_none(), "no record fields unless named");
    }

    let (id, (_, d)) = answered
        .iter()
        .find(|(_, (_, d))| d["outcome"] == "denied" || d["outcome"] == "planned")
        .expect("the examples plan or deny something");
    let shown = regua(
        &[
            "decisions",
            "show",
            id,
            "--log",
            log.path().to_str().unwrap(),
        ],
        "",
    );
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let words = text(&shown.stdout);
    let campaign = d["campaign"].as_str().unwrap();
    assert!(
        words.contains(&format!("Campaign {campaign} (requested by ")),
        "{words}"
    );
    assert!(words.contains("Plugins: "), "{words}");

    let missing = regua(
        &[
            "decisions",
            "show",
            "no-such-id",
            "--log",
            log.path().to_str().unwrap(),
        ],
        "",
    );
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no decision `no-such-id`"));
}

#[test]
fn a_log_folder_that_cannot_be_written_fails_the_run_and_says_how_many_were_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let in_the_way = dir.path().join("log");
    std::fs::write(&in_the_way, "a file where the folder should be").unwrap();
    let input = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let out = campaign_run(&input, &in_the_way);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("could not be written to the decision log"),
        "{err}"
    );
    assert!(err.contains(in_the_way.to_str().unwrap()), "{err}");
}
