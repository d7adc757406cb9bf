//! Reading customer records: parsed and validated once (then encoded once for every plugin,
//! [`crate::runtime::chunk`]).

pub use regua_sdk::record::{parse_customer, parse_customer_bytes};

/// One line (or row) of a chunk, read as a record.
#[derive(Debug)]
pub enum LineRead {
    /// A valid record: its index among the chunk's records.
    Record(usize),
    /// Not a valid record: the id, when it can still be read, and what is wrong.
    Bad(Option<String>, String),
}

/// The `id` of a record that failed to parse, when it can still be read.
pub fn salvage_id(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: serde_json::Value,
    }
    let r: IdOnly = serde_json::from_slice(bytes).ok()?;
    let id = match r.id {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    // An id too long to be one is not echoed back: the error says how long it is.
    (id.len() <= regua_sdk::record::MAX_ID_BYTES).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_and_the_problem() {
        let err = parse_customer(
            r#"{"id":"c","transactions":[{"id":"t","at":"2025-13-01T00:00:00Z","kind":"purchase","amount":1}]}"#,
        )
        .unwrap_err();
        assert!(err.starts_with("field `transactions[0].at`:"), "{err}");
        assert!(err.contains("2025-13-01"), "{err}");

        let err = parse_customer(r#"{"tz":"UTC"}"#).unwrap_err();
        assert!(err.contains("missing field `id`"), "{err}");

        let err = parse_customer(r#"{"id":"c","profile":{"birthday":"17/05/1990"}}"#).unwrap_err();
        assert!(err.starts_with("field `profile.birthday`"), "{err}");

        let err = parse_customer_bytes(b"{\"id\":\"\xff\"}").unwrap_err();
        assert!(err.contains("UTF-8"), "{err}");
        assert!(
            parse_customer(r#"{"id":"c"} x"#)
                .unwrap_err()
                .contains("trailing")
        );
        assert!(
            parse_customer(r#"{"id":" "}"#)
                .unwrap_err()
                .contains("`id` is empty")
        );
    }

    #[test]
    fn ids_are_salvaged_from_records_that_fail_validation() {
        assert_eq!(
            salvage_id(br#"{"id":"c-9","transactions":7}"#).as_deref(),
            Some("c-9")
        );
        assert_eq!(salvage_id(b"{not json"), None);
    }
}
