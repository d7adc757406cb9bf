//! A string read from JSON without a copy when the text has no escapes: serde's own
//! `Cow<str>` always copies, which costs an allocation per key and per value on the hot path of
//! reading records.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, Visitor};

/// A string, borrowed from the input where it can be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Text<'de>(pub Cow<'de, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;
    // The same words as `String`'s, so an error reads the same whichever reader met it.
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(v)))
    }
    fn visit_str<E: Error>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: Error>(self, v: String) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_borrows_plain_strings_and_owns_escaped_ones() {
        let t: Text = serde_json::from_str(r#""purchase""#).unwrap();
        assert!(matches!(t.0, Cow::Borrowed("purchase")));
        let t: Text = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(&*t, "a\"b");
        let err = serde_json::from_str::<Text>("5").unwrap_err().to_string();
        let want = serde_json::from_str::<String>("5").unwrap_err().to_string();
        assert_eq!(err, want);
    }
}
