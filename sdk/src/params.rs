//! A plugin's parameters as a [`Value`], both ways, without a JSON parser in the plugin: the
//! host reads the caller's JSON and hands the plugin a `Value` (docs/ABI.md §5), which this
//! module reads into the rule's `Params` type ([`from_value`]); the defaults go back into the
//! metadata as JSON text written from a `Value` ([`to_value`], [`json_text`]). A JSON parser
//! and its float tables were most of a small plugin's code.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

use crate::value::Value;

/// Why parameters do not read, and where: ``field `rules[2].window`: unknown variant…``.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamsError {
    /// The keys and indexes down to the value that failed, outermost first.
    path: Vec<Step>,
    message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

impl ParamsError {
    fn under(mut self, step: Step) -> Self {
        self.path.insert(0, step);
        self
    }
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            return f.write_str(&self.message);
        }
        f.write_str("field `")?;
        for (i, step) in self.path.iter().enumerate() {
            match step {
                Step::Key(k) if i == 0 => f.write_str(k)?,
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        write!(f, "`: {}", self.message)
    }
}

impl std::error::Error for ParamsError {}

impl de::Error for ParamsError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ParamsError {
            path: Vec::new(),
            message: msg.to_string(),
        }
    }

    // serde's own wording, with the value written by `describe`: serde's `Unexpected` prints a
    // float with core's formatting, a fifth of a small plugin's code.
    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        de::Error::custom(format_args!(
            "invalid type: {}, expected {exp}",
            describe(&unexp)
        ))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        de::Error::custom(format_args!(
            "invalid value: {}, expected {exp}",
            describe(&unexp)
        ))
    }
}

/// What serde's `Unexpected` says of a value, a float written as in JSON.
fn describe(unexp: &de::Unexpected<'_>) -> String {
    use de::Unexpected as U;
    match *unexp {
        U::Bool(b) => format!("boolean `{b}`"),
        U::Unsigned(n) => format!("integer `{n}`"),
        U::Signed(n) => format!("integer `{n}`"),
        U::Float(f) => {
            let mut text = String::new();
            write_float(f, &mut text);
            format!("floating point `{text}`")
        }
        U::Char(c) => format!("character `{c}`"),
        U::Str(s) => format!("string {s:?}"),
        U::Bytes(_) => "byte array".into(),
        U::Unit => "unit value".into(),
        U::Option => "Option value".into(),
        U::NewtypeStruct => "newtype struct".into(),
        U::Seq => "sequence".into(),
        U::Map => "map".into(),
        U::Enum => "enum".into(),
        U::UnitVariant => "unit variant".into(),
        U::NewtypeVariant => "newtype variant".into(),
        U::TupleVariant => "tuple variant".into(),
        U::StructVariant => "struct variant".into(),
        U::Other(other) => other.into(),
    }
}

/// A finite float as JSON text, the shortest that reads back the same; `ryu` rather than
/// core's formatting, which is a fifth of a small plugin's code.
fn write_float(f: f64, out: &mut String) {
    out.push_str(ryu::Buffer::new().format_finite(f));
}

impl ser::Error for ParamsError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        de::Error::custom(msg)
    }
}

/// Parameters given as JSON text, as a `Value` (`Null` when the text is empty), or why they are
/// not JSON: ``invalid params: …`` with the parser's line and column. The host reads a caller's
/// parameters with it; a rule's tests do too ([`crate::guest::parse_params`]).
pub fn from_json(text: &str) -> Result<Value, String> {
    match text.trim() {
        "" => Ok(Value::Null),
        text => crate::json::from_str(text, None).map_err(|e| format!("invalid params: {e}")),
    }
}

/// Reads `value` as a `T`, as JSON text of the same value would read.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ParamsError> {
    T::deserialize(Reader(value))
}

/// `value` as a [`Value`], as it would be written as JSON (`None` and `()` as `null`, a
/// variant with data as a one-key object, a number that is not finite as `null`).
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ParamsError> {
    value.serialize(Writer)
}

/// `value` as JSON text, keys in order.
pub fn json_text(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, &mut out);
    out
}

fn write_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        // `ryu` writes `1.0`, not `1`, which would read back as a whole number.
        Value::Float(f) if f.is_finite() => write_float(*f, out),
        Value::Float(_) => out.push_str("null"),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(k, out);
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Reads a [`Value`] into any type, the way JSON text of it would read.
struct Reader(Value);

impl<'de> de::Deserializer<'de> for Reader {
    type Error = ParamsError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamsError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int(i) => visitor.visit_i64(i),
            Value::Float(f) => visitor.visit_f64(f),
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => {
                let len = items.len();
                let mut seq = Items {
                    items: items.into_iter(),
                    next: 0,
                };
                let out = visitor.visit_seq(&mut seq)?;
                if seq.items.len() > 0 {
                    return Err(de::Error::invalid_length(len, &"fewer elements"));
                }
                Ok(out)
            }
            Value::Object(members) => visitor.visit_map(Members {
                members: members.into_iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamsError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ParamsError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamsError> {
        match self.0 {
            Value::String(variant) => visitor.visit_enum(variant.into_deserializer()),
            Value::Object(members) if members.len() == 1 => {
                let (variant, value) = members.into_iter().next().expect("one member");
                visitor.visit_enum(Variant { variant, value })
            }
            other => Err(de::Error::invalid_type(unexpected(&other), &visitor)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Int(i) => de::Unexpected::Signed(*i),
        Value::Float(f) => de::Unexpected::Float(*f),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

struct Items {
    items: std::vec::IntoIter<Value>,
    next: usize,
}

impl<'de> de::SeqAccess<'de> for Items {
    type Error = ParamsError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ParamsError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let at = self.next;
        self.next += 1;
        seed.deserialize(Reader(item))
            .map(Some)
            .map_err(|e| e.under(Step::Index(at)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Members {
    members: std::collections::btree_map::IntoIter<String, Value>,
    value: Option<(String, Value)>,
}

impl<'de> de::MapAccess<'de> for Members {
    type Error = ParamsError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ParamsError> {
        let Some((key, value)) = self.members.next() else {
            return Ok(None);
        };
        let read = seed.deserialize(key.clone().into_deserializer());
        self.value = Some((key, value));
        read.map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ParamsError> {
        let (key, value) = self.value.take().ok_or_else(|| {
            <ParamsError as de::Error>::custom("a value asked for before its key")
        })?;
        seed.deserialize(Reader(value))
            .map_err(|e| e.under(Step::Key(key)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len())
    }
}

struct Variant {
    variant: String,
    value: Value,
}

impl<'de> de::EnumAccess<'de> for Variant {
    type Error = ParamsError;
    type Variant = Payload;

    fn variant_seed<V: de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Payload), ParamsError> {
        let name = seed.deserialize(self.variant.clone().into_deserializer())?;
        Ok((
            name,
            Payload {
                variant: self.variant,
                value: self.value,
            },
        ))
    }
}

struct Payload {
    variant: String,
    value: Value,
}

impl Payload {
    fn read<T>(self, f: impl FnOnce(Reader) -> Result<T, ParamsError>) -> Result<T, ParamsError> {
        f(Reader(self.value)).map_err(|e| e.under(Step::Key(self.variant)))
    }
}

impl<'de> de::VariantAccess<'de> for Payload {
    type Error = ParamsError;

    fn unit_variant(self) -> Result<(), ParamsError> {
        self.read(de::Deserialize::deserialize)
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, ParamsError> {
        self.read(|r| seed.deserialize(r))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ParamsError> {
        self.read(|r| de::Deserializer::deserialize_seq(r, visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamsError> {
        self.read(|r| de::Deserializer::deserialize_map(r, visitor))
    }
}

/// Writes any value as a [`Value`].
struct Writer;

/// A list being written.
struct List(Vec<Value>, Option<&'static str>);

/// An object being written, with the key of the member whose value comes next.
struct Object(
    BTreeMap<String, Value>,
    Option<String>,
    Option<&'static str>,
);

/// `value` under `variant`, as JSON writes a variant with data.
fn tagged(variant: Option<&'static str>, value: Value) -> Value {
    match variant {
        Some(v) => Value::Object(BTreeMap::from([(v.to_owned(), value)])),
        None => value,
    }
}

impl ser::Serializer for Writer {
    type Ok = Value;
    type Error = ParamsError;
    type SerializeSeq = List;
    type SerializeTuple = List;
    type SerializeTupleStruct = List;
    type SerializeTupleVariant = List;
    type SerializeMap = Object;
    type SerializeStruct = Object;
    type SerializeStructVariant = Object;

    fn serialize_bool(self, v: bool) -> Result<Value, ParamsError> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, ParamsError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, ParamsError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, ParamsError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, ParamsError> {
        Ok(Value::Int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, ParamsError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, ParamsError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, ParamsError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, ParamsError> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, ParamsError> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<Value, ParamsError> {
        Ok(if v.is_finite() {
            Value::Float(v)
        } else {
            Value::Null
        })
    }
    fn serialize_char(self, v: char) -> Result<Value, ParamsError> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, ParamsError> {
        Ok(Value::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ParamsError> {
        Ok(Value::Array(
            v.iter().map(|&b| Value::Int(b.into())).collect(),
        ))
    }
    fn serialize_none(self) -> Result<Value, ParamsError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, ParamsError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, ParamsError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, ParamsError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, ParamsError> {
        Ok(Value::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, ParamsError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, ParamsError> {
        Ok(tagged(Some(variant), value.serialize(self)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<List, ParamsError> {
        Ok(List(Vec::with_capacity(len.unwrap_or(0)), None))
    }
    fn serialize_tuple(self, len: usize) -> Result<List, ParamsError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<List, ParamsError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<List, ParamsError> {
        Ok(List(Vec::with_capacity(len), Some(variant)))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Object, ParamsError> {
        Ok(Object(BTreeMap::new(), None, None))
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Object, ParamsError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Object, ParamsError> {
        Ok(Object(BTreeMap::new(), None, Some(variant)))
    }
}

impl List {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ParamsError> {
        self.0.push(value.serialize(Writer)?);
        Ok(())
    }
    fn done(self) -> Value {
        tagged(self.1, Value::Array(self.0))
    }
}

/// serde's four list-shaped writers, which differ only in the name of the method adding one.
macro_rules! list_writers {
    ($($shape:ident :: $add:ident),*) => {$(
        impl ser::$shape for List {
            type Ok = Value;
            type Error = ParamsError;
            fn $add<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ParamsError> {
                self.push(value)
            }
            fn end(self) -> Result<Value, ParamsError> {
                Ok(self.done())
            }
        }
    )*};
}

list_writers!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl Object {
    fn member<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), ParamsError> {
        self.0.insert(key.to_owned(), value.serialize(Writer)?);
        Ok(())
    }
    fn done(self) -> Value {
        tagged(self.2, Value::Object(self.0))
    }
}

impl ser::SerializeMap for Object {
    type Ok = Value;
    type Error = ParamsError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ParamsError> {
        // As JSON: a key is text, a number or a boolean written as text.
        self.1 = Some(match key.serialize(Writer)? {
            Value::String(s) => s,
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(ser::Error::custom("a map key must be text")),
        });
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ParamsError> {
        let key = self
            .1
            .take()
            .ok_or_else(|| <ParamsError as ser::Error>::custom("a value written before its key"))?;
        self.member(&key, value)
    }
    fn end(self) -> Result<Value, ParamsError> {
        Ok(self.done())
    }
}

/// serde's two struct-shaped writers, alike.
macro_rules! struct_writers {
    ($($shape:ident),*) => {$(
        impl ser::$shape for Object {
            type Ok = Value;
            type Error = ParamsError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), ParamsError> {
                self.member(key, value)
            }
            fn end(self) -> Result<Value, ParamsError> {
                Ok(self.done())
            }
        }
    )*};
}

struct_writers!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rules {
        rules: Vec<Rule>,
        #[serde(default)]
        mode: Mode,
        limit: Option<u32>,
        share: f64,
        pair: (String, i8),
        wrapped: Wrapped,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
    enum Rule {
        Cap { max: u32, window: Window },
        Consent,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Window {
        Rolling(String),
        CalendarDays(u32),
        Between { from: String, to: String },
        Tuple(u8, u8),
    }

    #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        #[default]
        Strict,
        Lenient,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Wrapped(i64);

    const JSON: &str = r#"{"rules":[
        {"type":"cap","max":2,"window":{"rolling":"24h"}},
        {"type":"cap","max":1,"window":{"calendar_days":1}},
        {"type":"cap","max":1,"window":{"between":{"from":"a","to":"b\"\n"}}},
        {"type":"cap","max":1,"window":{"tuple":[1,2]}},
        {"type":"consent"}],
        "mode":"lenient","limit":null,"share":1,"pair":["x",-3],"wrapped":7}"#;

    /// What serde_json reads from the text, this reads from the text's `Value`, and writing
    /// it back gives what serde_json writes (the host reads the metadata with serde_json).
    #[test]
    fn a_value_reads_and_writes_as_its_json_text_does() {
        let by_json: Rules = serde_json::from_str(JSON).unwrap();
        let value: Value = serde_json::from_str(JSON).unwrap();
        let by_value: Rules = from_value(value).unwrap();
        assert_eq!(by_value, by_json);
        assert_eq!(by_value.share, 1.0);

        let written = json_text(&to_value(&by_json).unwrap());
        let expected = serde_json::to_value(&by_json).unwrap().to_string();
        assert_eq!(written, expected);
        for tricky in [0.1, 1.0, -2.5e-7, 1e300, f64::MAX] {
            let text = json_text(&Value::Float(tricky));
            assert_eq!(
                serde_json::from_str::<f64>(&text).unwrap(),
                tricky,
                "{text}"
            );
            assert!(
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap()
                    .is_f64()
                    && matches!(from_json(&text), Ok(Value::Float(f)) if f == tricky),
                "{text} would read back as a whole number"
            );
        }
        assert_eq!(json_text(&Value::Float(f64::NAN)), "null");
        assert_eq!(
            json_text(&Value::String("\u{1}é\t".into())),
            serde_json::to_string("\u{1}é\t").unwrap()
        );
    }

    #[test]
    fn errors_name_the_field_that_did_not_read() {
        let bad = |json: &str| {
            let value: Value = serde_json::from_str(json).unwrap();
            from_value::<Rules>(value).unwrap_err().to_string()
        };
        let good: serde_json::Value = serde_json::from_str(JSON).unwrap();
        let with = |path: &[&str], v: serde_json::Value| {
            let mut doc = good.clone();
            let mut at = &mut doc;
            for p in path {
                at = match p.parse::<usize>() {
                    Ok(i) => &mut at[i],
                    Err(_) => &mut at[*p],
                };
            }
            *at = v;
            bad(&doc.to_string())
        };
        // An internally tagged variant is read from serde's buffer of it: named down to it.
        let e = with(&["rules", "1", "window", "calendar_days"], "x".into());
        assert!(
            e.starts_with("field `rules[1]`: invalid type: string \"x\", expected u32"),
            "{e}"
        );
        let e = with(&["mode"], "loose".into());
        assert!(
            e.starts_with("field `mode`: unknown variant `loose`"),
            "{e}"
        );
        let e = with(&["pair", "1"], 300.into());
        assert!(
            e.starts_with("field `pair[1]`: invalid value: integer `300`"),
            "{e}"
        );
        let e = with(&["limit"], 2.5.into());
        assert!(
            e.starts_with("field `limit`: invalid type: floating point `2.5`, expected u32"),
            "{e}"
        );
        let e = with(&["limit"], 3e20.into());
        assert!(e.contains("floating point `3e20`"), "{e}");
        let e = with(&["share"], serde_json::Value::Null);
        assert!(
            e.starts_with("field `share`: invalid type: unit value"),
            "{e}"
        );
        let e = bad(r#"{"rules":[],"share":1,"pair":["x",1],"wrapped":1,"extra":1}"#);
        assert!(e.starts_with("unknown field `extra`"), "{e}");
        let e = bad(r#"{"rules":[],"share":1,"pair":["x",1,2],"wrapped":1}"#);
        assert!(e.starts_with("field `pair`: invalid length 3"), "{e}");
        let e = bad(
            r#"{"rules":[{"type":"cap","max":1,"window":{"rolling":"1d"},"maxx":2}],"share":1,"pair":["x",1],"wrapped":1}"#,
        );
        assert!(e.contains("rules[0]") && e.contains("maxx"), "{e}");
    }
}
