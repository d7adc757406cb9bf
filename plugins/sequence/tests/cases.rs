//! The DOMAIN §4 journey rules, one case each in `cases.json` (re-entry, intervals, waits of every
//! kind at their boundaries, exits, variants, rest denials), run natively. The integration tests
//! run the same table through the wasm plugin.

use regua_sdk::testing::evaluate_journey;
use regua_sdk::{Context, Event, Record, Timestamp};
use sequence::{Params, SequenceRule};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    about: String,
    params: serde_json::Value,
    customer: Record,
    #[serde(default)]
    event: Option<Event>,
    now: Timestamp,
    expect: serde_json::Value,
}

#[test]
fn every_domain_journey_case_holds() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases.json");
    let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        cases.len() >= 30,
        "cases are missing from {}",
        path.display()
    );
    let mut failed = Vec::new();
    for case in &cases {
        let params: Params = regua_sdk::guest::parse_params(&case.params.to_string()).unwrap();
        let ctx = Context {
            now: case.now,
            params: &params,
            default_tz: "America/Sao_Paulo",
        };
        let out = evaluate_journey::<SequenceRule>(&case.customer, case.event.as_ref(), &ctx)
            .unwrap_or_else(|e| panic!("{}: {e}", case.about));
        let got = serde_json::to_value(&out).unwrap();
        if let Some(m) = regua_sdk::testing::journey_mismatch(&case.expect, &got) {
            failed.push(format!("{}: {m}", case.about));
        }
    }
    assert!(
        failed.is_empty(),
        "{} cases fail:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
