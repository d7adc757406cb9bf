//! Reading JSON with errors that name the field: the one reader behind records, parameters,
//! messages, events and request bodies.

use std::marker::PhantomData;

use serde::de::{DeserializeOwned, DeserializeSeed};

/// Reads `text` as a `T`. An error names the field where it went wrong, under `at` when given:
/// ``field `customer.transactions[3].at`: `2025-13-01` is not an RFC 3339 timestamp…``.
pub fn from_str<T: DeserializeOwned>(text: &str, at: Option<&str>) -> Result<T, String> {
    from_str_seed(text, at, PhantomData::<T>)
}

/// [`from_str`] for a value read through `seed`.
pub fn from_str_seed<'de, S>(text: &'de str, at: Option<&str>, seed: S) -> Result<S::Value, String>
where
    S: DeserializeSeed<'de> + Copy,
{
    // Tracking the path costs a wrapper around every value read; most text is valid, so read it
    // plainly first and only read a failure again, tracked, to say where it went wrong.
    let mut de = serde_json::Deserializer::from_str(text);
    if let Ok(value) = seed.deserialize(&mut de)
        && de.end().is_ok()
    {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    let value = seed
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .map_err(|e| serde_path_to_error::Error::new(track.path(), e))
        .map_err(|e| {
            let path = e.path().to_string();
            let field = match (at, path.as_str()) {
                // `?` is where the text stopped being JSON at all: no field to name.
                (None, "." | "?") => None,
                (Some(at), "." | "?") => Some(at.to_owned()),
                (None, _) => Some(path),
                (Some(at), _) => Some(format!("{at}.{path}")),
            };
            match field {
                Some(field) => format!("field `{field}`: {}", e.inner()),
                None => e.inner().to_string(),
            }
        })?;
    de.end()
        .map_err(|e| format!("trailing characters after the JSON value: {e}"))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_under_its_parent() {
        let err = from_str::<crate::Message>(
            r#"{"channel":"fax","category":"marketing"}"#,
            Some("message"),
        )
        .unwrap_err();
        assert!(
            err.starts_with("field `message.channel`: unknown variant `fax`"),
            "{err}"
        );
        let err = from_str::<crate::Message>("[", Some("message")).unwrap_err();
        assert!(err.starts_with("field `message`: "), "{err}");
        let err = from_str::<crate::Message>("{} x", None).unwrap_err();
        assert!(
            err.contains("missing field") || err.contains("trailing"),
            "{err}"
        );
    }
}
