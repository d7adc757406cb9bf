//! The example plugins, built to wasm, answer through the host as they do natively.

use regua_host::{Evaluation, Outcome};
use regua_sdk::Kind;
use regua_tests::{engine, load, repo};

use crate::{inputs, run_batch};

const EXAMPLES: [(&str, Kind); 15] = [
    ("rfm", Kind::Segment),
    ("lapsed", Kind::Segment),
    ("birthday-today", Kind::Segment),
    ("app-not-activated", Kind::Segment),
    ("first-cashout-pending", Kind::Segment),
    ("cross-sell", Kind::Segment),
    ("funnel-stage", Kind::Segment),
    ("welcome", Kind::Journey),
    ("app-activation", Kind::Journey),
    ("cart-abandonment", Kind::Journey),
    ("inactivity-offer", Kind::Journey),
    ("lifecycle", Kind::Journey),
    ("sequence", Kind::Journey),
    ("standard-rest", Kind::Rest),
    ("promo-per-unit", Kind::Rest),
];

const MESSAGE: &str =
    r#"{"channel":"push","category":"marketing","campaign":"BRF-2025-031","tags":["bu:card"]}"#;

fn all_examples() -> Vec<Evaluation> {
    examples_on(&engine())
}

fn examples_on(engine: &regua_host::Engine) -> Vec<Evaluation> {
    EXAMPLES
        .iter()
        .map(|(name, _)| Evaluation::new(load(engine, name), &inputs("{}", Some(MESSAGE))).unwrap())
        .collect()
}

#[test]
fn every_example_plugin_loads_with_its_name_kind_and_description() {
    let engine = engine();
    for (name, kind) in EXAMPLES {
        let p = load(&engine, name);
        assert_eq!(p.name(), name);
        assert_eq!(p.kind(), kind, "{name}");
        assert!(!p.meta.description.is_empty(), "{name} has no description");
        assert_eq!(p.version.len(), 16);
        assert!(
            p.meta.params.is_object(),
            "{name}: parameter defaults should be an object"
        );
    }
}

#[test]
fn the_example_customers_are_evaluated_by_every_plugin_without_failure() {
    let input = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let evals = all_examples();
    let (lines, summary) = run_batch(&evals, &input, 2);
    assert_eq!(lines.len(), input.lines().count());
    assert!(lines.len() >= 200, "a few hundred example customers");
    assert_eq!(summary.bad_lines, 0);
    for (e, tally) in evals.iter().zip(&summary.tallies) {
        assert_eq!(
            tally.failed,
            0,
            "{} failed on some customers",
            e.plugin.name()
        );
        // Every example plugin has something to say about the examples.
        let positive = tally.matched + tally.with_actions + tally.allow + tally.defer;
        let negative = tally.unmatched + tally.idle + tally.deny;
        assert!(
            positive > 0 && negative > 0,
            "{}: {tally:?}",
            e.plugin.name()
        );
    }
    for line in &lines {
        assert_eq!(
            line["results"].as_object().unwrap().len(),
            EXAMPLES.len(),
            "{line}"
        );
    }
}

#[test]
fn two_threads_give_the_same_lines_in_the_same_order_as_one() {
    let input = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let evals = all_examples();
    let (one, _) = run_batch(&evals, &input, 1);
    let (two, _) = run_batch(&evals, &input, 2);
    assert_eq!(one, two);
}

#[test]
fn a_batch_reading_only_the_declared_parts_answers_as_the_whole_record_does() {
    // Batches hand each plugin only what it declares it reads; evaluated on whole records, every
    // example plugin must give the same answers, reasons included.
    let input = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let evals = all_examples();
    let (lines, _) = run_batch(&evals, &input, 2);
    let mut whole = regua_host::EncodedBatch::new();
    for line in input.lines() {
        whole.push(&regua_sdk::record::parse_customer(line).unwrap());
    }
    let mut worker = regua_host::Worker::new();
    let mut narrowed = 0;
    for eval in &evals {
        narrowed += usize::from(eval.plugin.meta.reads != regua_sdk::Field::ALL);
        let answers = worker.evaluate(eval, &whole).unwrap();
        for (line, answer) in lines.iter().zip(&answers) {
            let want = regua_host::pipeline::output::result_value(&eval.plugin, answer);
            assert_eq!(
                line["results"][eval.plugin.name()],
                want,
                "{} on {}",
                eval.plugin.name(),
                line["id"]
            );
        }
    }
    assert!(narrowed >= 10, "the example plugins declare what they read");
}

/// A call that asks for no reasons (a CSV or Parquet output) gets the same answers with the
/// reasons left out: every example plugin, on every example customer.
#[test]
fn a_call_without_reasons_answers_the_same_with_the_reasons_left_out() {
    let input = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let mut batch = regua_host::EncodedBatch::new();
    for line in input.lines() {
        batch.push(&regua_sdk::record::parse_customer(line).unwrap());
    }
    let mut worker = regua_host::Worker::new();
    let mut with_reasons = 0;
    for eval in all_examples() {
        let name = eval.plugin.name().to_owned();
        let full = worker.evaluate(&eval, &batch).unwrap();
        let bare = worker.evaluate(&eval.without_reasons(), &batch).unwrap();
        for (full, bare) in full.iter().zip(&bare) {
            let (Ok(full), Ok(bare)) = (full, bare) else {
                assert_eq!(full.is_err(), bare.is_err(), "{name}");
                continue;
            };
            let mut stripped = full.clone();
            match &mut stripped {
                Outcome::Segment(m) => {
                    with_reasons += usize::from(!m.reasons.is_empty());
                    m.reasons.clear()
                }
                Outcome::Journey(j) => {
                    with_reasons += usize::from(!j.reasons.is_empty());
                    j.reasons.clear()
                }
                Outcome::Rest(d) => {
                    with_reasons += usize::from(!d.notes.is_empty());
                    d.notes.clear()
                }
            }
            assert_eq!(&stripped, bare, "{name}");
        }
    }
    assert!(
        with_reasons > 100,
        "the examples give reasons: {with_reasons}"
    );
}

#[test]
fn a_malformed_record_gets_an_error_line_and_the_batch_goes_on() {
    let engine = engine();
    let lapsed = crate::eval(&load(&engine, "lapsed"), "{}");
    let input = concat!(
        r#"{"id":"c-1","transactions":[{"id":"t","at":"2025-01-01T00:00:00Z","kind":"purchase","amount":10}]}"#,
        "\n",
        r#"{"id":"c-2","transactions":[{"id":"t","at":"yesterday","kind":"purchase","amount":10}]}"#,
        "\n",
        "{not json\n",
        "\n",
        r#"{"tz":"UTC"}"#,
        "\n",
        r#"{"id":"c-6"}"#,
        "\n",
    );
    let (lines, summary) = run_batch(&[lapsed], input, 2);
    assert_eq!(lines.len(), 6, "one output line per input line");
    assert_eq!(summary.bad_lines, 4);
    assert_eq!(lines[0]["results"]["lapsed"]["match"], true);
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["id"], "c-2");
    let e = lines[1]["error"].as_str().unwrap();
    assert!(
        e.contains("field `transactions[0].at`") && e.contains("yesterday"),
        "{e}"
    );
    assert_eq!(lines[2]["line"], 3);
    assert!(lines[2]["id"].is_null());
    assert!(lines[3]["error"].as_str().unwrap().contains("empty line"));
    assert!(
        lines[4]["error"]
            .as_str()
            .unwrap()
            .contains("missing field `id`")
    );
    assert_eq!(lines[5]["id"], "c-6");
    assert_eq!(lines[5]["results"]["lapsed"]["match"], false);
}

/// The standard rest policy's data cases give the same decisions through the wasm plugin.
#[test]
fn the_rest_policy_cases_hold_through_the_host() {
    let engine = engine();
    let plugin = load(&engine, "standard-rest");
    let dir = repo().join("plugins/standard-rest/tests/cases");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let case: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut batch = regua_host::EncodedBatch::new();
        batch.push(&serde_json::from_value(case["customer"].clone()).unwrap());
        let mut inp = inputs(
            &case.get("params").map_or("{}".into(), |p| p.to_string()),
            Some(&case["message"].to_string()),
        );
        inp.now = serde_json::from_value(case["now"].clone()).unwrap();
        let e = Evaluation::new(plugin.clone(), &inp).unwrap();
        let result = regua_host::Worker::new()
            .evaluate(&e, &batch)
            .unwrap()
            .remove(0);
        let got = regua_host::pipeline::output::result_value(&plugin, &result);
        for (field, want) in case["expected"].as_object().unwrap() {
            assert_eq!(&got[field], want, "{}: `{field}` in {got}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 10);
}

#[test]
fn worked_example_five_through_the_host_is_a_champion() {
    let engine = engine();
    let rfm = load(&engine, "rfm");
    let mut tx = Vec::new();
    for i in 0..12 {
        let at = if i == 0 {
            "2025-03-01T12:00:00Z".to_owned()
        } else {
            format!("2025-01-{:02}T12:00:00Z", i + 1)
        };
        let amount = if i == 0 { 700 } else { 500 };
        tx.push(format!(
            r#"{{"id":"t{i}","at":"{at}","kind":"purchase","amount":{amount}}}"#
        ));
    }
    let mut batch = regua_host::EncodedBatch::new();
    batch.push(&regua_sdk::testing::customer(&format!(
        r#"{{"id":"c","transactions":[{}]}}"#,
        tx.join(",")
    )));
    let result = regua_host::Worker::new()
        .evaluate(&crate::eval(&rfm, "{}"), &batch)
        .unwrap()
        .remove(0);
    let Ok(Outcome::Segment(m)) = result else {
        panic!("{result:?}")
    };
    assert!(m.matched);
    assert_eq!(
        m.reasons,
        [
            "R5 F5 M5",
            "last purchase 10 days ago, 12 purchases, R$ 6200.00 in all",
            "segment Champions"
        ]
    );
}

/// The table of DOMAIN §4 journey cases holds through the wasm `sequence` plugin as it does
/// natively (`cargo test -p sequence`).
#[test]
fn the_journey_cases_hold_through_the_host() {
    let engine = engine();
    let plugin = load(&engine, "sequence");
    let path = repo().join("plugins/sequence/tests/cases.json");
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut failed = Vec::new();
    for case in &cases {
        let mut batch = regua_host::EncodedBatch::new();
        batch.push(&serde_json::from_value(case["customer"].clone()).unwrap());
        let mut inp = inputs(&case["params"].to_string(), None);
        inp.now = serde_json::from_value(case["now"].clone()).unwrap();
        inp.event = case
            .get("event")
            .map(|e| serde_json::from_value(e.clone()).unwrap());
        let e = Evaluation::new(plugin.clone(), &inp).unwrap();
        let result = regua_host::Worker::new()
            .evaluate(&e, &batch)
            .unwrap()
            .remove(0);
        let got = serde_json::to_value(result.unwrap()).unwrap();
        if let Some(m) = regua_sdk::testing::journey_mismatch(&case["expect"], &got) {
            failed.push(format!("{}: {m}", case["about"]));
        }
    }
    assert!(cases.len() >= 30);
    assert!(
        failed.is_empty(),
        "{} cases fail:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Every example plugin's README lists each of its parameters, so a rule author finds them
/// without reading the source.
#[test]
fn every_example_readme_lists_its_parameters() {
    let engine = engine();
    for (name, _) in EXAMPLES {
        let plugin = load(&engine, name);
        let readme =
            std::fs::read_to_string(repo().join("plugins").join(name).join("README.md")).unwrap();
        assert!(
            readme.contains("## Parameters") || name == "sequence",
            "{name}"
        );
        for key in plugin.meta.params.as_object().unwrap().keys() {
            assert!(
                readme.contains(&format!("`{key}`")),
                "plugins/{name}/README.md does not list parameter `{key}`"
            );
        }
    }
}

/// `regua serve` answers from a new build's baseline (Winch) code until its optimised
/// (Cranelift) code is ready: both give every example plugin's answers, byte for byte.
#[test]
fn the_baseline_code_answers_as_the_optimised_code() {
    let input = std::fs::read_to_string(repo().join("examples/customers.ndjson")).unwrap();
    let baseline = regua_host::Engine::new(regua_host::Limits::default())
        .unwrap()
        .baseline_only()
        .unwrap();
    let evals = examples_on(&baseline);
    assert!(evals.iter().all(|e| !e.plugin.is_optimised()));
    let (on_baseline, _) = run_batch(&evals, &input, 2);
    let (optimised, _) = run_batch(&all_examples(), &input, 2);
    assert_eq!(on_baseline, optimised);
}
