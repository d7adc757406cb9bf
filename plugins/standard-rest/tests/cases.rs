//! Rule behaviour pinned by cases kept as data: each file in `cases/` holds the input (customer,
//! message, now, optional params over the defaults) and the expected decision fields.

use regua_sdk::testing::evaluate_rest;
use regua_sdk::{Context, Message, Record, Timestamp};
use standard_rest::{Params, StandardRest};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    about: String,
    customer: Record,
    message: Message,
    now: Timestamp,
    #[serde(default)]
    params: Option<serde_json::Value>,
    expected: serde_json::Map<String, serde_json::Value>,
}

#[test]
fn every_case_gives_its_expected_decision() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 8, "cases are missing from {}", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let case: Case =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let params: Params = match &case.params {
            Some(p) => regua_sdk::guest::parse_params(&p.to_string()).unwrap(),
            None => Params::default(),
        };
        let ctx = Context {
            now: case.now,
            params: &params,
            default_tz: "America/Sao_Paulo",
        };
        let decision = evaluate_rest::<StandardRest>(&case.customer, &case.message, &ctx)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let got = serde_json::to_value(&decision).unwrap();
        for (field, want) in &case.expected {
            assert_eq!(
                &got[field],
                want,
                "{} ({}): field `{field}` in {got}",
                file.display(),
                case.about
            );
        }
    }
}
