//! The ABI's one home: everything that crosses the boundary between host and plugin — the
//! version, the custom section, the names and signatures of the imports and exports, and the
//! bytes of every input and output — shared by both sides so they cannot drift. `docs/ABI.md`
//! describes the same for authors in other languages. A next ABI version adds its tables and
//! encodings here beside these.
//!
//! Encoding: the customers of a call as a chunk of columns ([`ChunkWriter`], [`ChunkView`]),
//! which plugins read in place; the answers as columns ([`AnswerWriter`], [`decode_output`]);
//! the call context and the small values inside both in
//! [postcard](https://postcard.jamesmunk.eu/wire-format.html) (varint integers, no field names),
//! with the choices of [`crate::time`] and [`crate::value`] for timestamps, dates and free-form
//! values.

use serde::{Deserialize, Serialize};

use crate::outcome::Message;
use crate::record::Event;
use crate::time::Timestamp;

mod record;
pub use record::{
    ChunkView, ChunkWriter, LayoutError, RecordView, Row, TransactionRef, encode_customer,
    encode_customer_reading,
};
pub(crate) use record::{Events, Transactions};

/// The ABI version this SDK builds plugins for and this host runs.
pub const ABI_VERSION: u32 = 3;

/// The custom section that states the ABI version and kind: 4 bytes of little-endian ABI version,
/// then one byte of kind (1 segment, 2 journey, 3 rest).
pub const ABI_SECTION: &str = "regua-abi";

/// The import module of the functions the host provides.
pub const IMPORT_MODULE: &str = "regua";

/// A WebAssembly value type in the ABI's function signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmType {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
}

/// A function of the ABI: its name, parameters and results. The host checks a plugin's imports
/// and exports against these tables, and defines and calls the functions by these names; the
/// guest's declarations are checked against them when the SDK compiles.
#[derive(Clone, Copy, Debug)]
pub struct AbiFunction {
    /// The import or export name.
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [WasmType],
    /// Result types.
    pub results: &'static [WasmType],
}

use WasmType::{I32, I64};

/// `regua.log(level, ptr, len)`: a log line from the plugin.
pub const LOG: AbiFunction = AbiFunction {
    name: "log",
    params: &[I32, I32, I32],
    results: &[],
};
/// `regua.item(index)`: the plugin starts on customer `index` of the call.
pub const ITEM: AbiFunction = AbiFunction {
    name: "item",
    params: &[I32],
    results: &[],
};
/// `regua.panic(ptr, len)`: the plugin's panic message, before it traps.
pub const PANIC: AbiFunction = AbiFunction {
    name: "panic",
    params: &[I32, I32],
    results: &[],
};
/// `regua.zone(name_ptr, name_len, out_ptr, out_cap) -> len`: the IANA time zone named by the
/// UTF-8 at `name_ptr` (any case), from the host's time-zone database, written at `out_ptr` if
/// it fits in `out_cap` bytes: one byte with the length of the zone's canonical name, that name,
/// then the zone's TZif data. Answers the length of all that (written or not), or -1 when the
/// database has no such zone. A plugin needs no time-zone database of its own.
pub const ZONE: AbiFunction = AbiFunction {
    name: "zone",
    params: &[I32, I32, I32, I32],
    results: &[I32],
};
/// Every function the host provides; a plugin may import nothing else.
pub const HOST_FUNCTIONS: [AbiFunction; 4] = [LOG, ITEM, PANIC, ZONE];

/// The plugin's one memory, exported under this name.
pub const MEMORY: &str = "memory";
/// `regua_alloc(len) -> ptr`: a buffer for the host to write an input into.
pub const ALLOC: AbiFunction = AbiFunction {
    name: "regua_alloc",
    params: &[I32],
    results: &[I32],
};
/// `regua_metadata() -> (ptr << 32 | len)`: the plugin's metadata.
pub const METADATA: AbiFunction = AbiFunction {
    name: "regua_metadata",
    params: &[],
    results: &[I64],
};
/// `regua_evaluate(ctx_ptr, ctx_len, chunk_ptr, chunk_len) -> (ptr << 32 | len)`: one call.
pub const EVALUATE: AbiFunction = AbiFunction {
    name: "regua_evaluate",
    params: &[I32, I32, I32, I32],
    results: &[I64],
};
/// Every function a plugin must export (besides [`MEMORY`]).
pub const PLUGIN_FUNCTIONS: [AbiFunction; 3] = [ALLOC, METADATA, EVALUATE];

/// An output's place in the plugin's memory as the exports return it: pointer in the high 32
/// bits, length in the low.
pub const fn pack_output(ptr: u32, len: u32) -> u64 {
    ((ptr as u64) << 32) | len as u64
}

/// The (pointer, length) of a packed output ([`pack_output`]).
pub const fn unpack_output(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, packed as u32)
}

/// Whether two names are the same, at compile time: ties names the language makes us write as
/// literals (link names, exported function names) to the tables above.
pub const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The per-call header: everything but the customers' records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallContext {
    /// The company's default IANA time zone.
    pub default_tz: String,
    /// The plugin's parameters: a [`Value`](crate::value::Value) in postcard, as a byte string
    /// of its own ([`params_bytes`]; an empty object for the defaults). The host reads the
    /// caller's JSON, so a plugin needs no JSON parser.
    pub params: Vec<u8>,
    /// Whether the answers carry reasons: `false` when the output shows none (CSV or Parquet
    /// answers, a send list), and the plugin leaves them out.
    pub reasons: bool,
    /// What each customer is evaluated with, as runs over the chunk's customers in order: the
    /// first `count` customers take the first run, the next `count` the second, …; the counts
    /// add up to the chunk's customers.
    pub inputs: Vec<CallInputs>,
}

/// Parameters as a call context carries them ([`CallContext::params`]).
pub fn params_bytes(params: &crate::value::Value) -> Vec<u8> {
    postcard::to_allocvec(params).expect("encoding into a Vec cannot fail")
}

/// What a run of consecutive customers of a call is evaluated with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallInputs {
    /// How many customers this run covers (0 is allowed, and covers none).
    pub count: u32,
    /// The instant of the evaluation.
    pub now: Timestamp,
    /// The proposed message (rest policies).
    pub message: Option<Message>,
    /// The triggering event (journey rules).
    pub event: Option<Event>,
}

impl CallContext {
    /// The inputs of customer `index`, or `None` past the runs' customers.
    pub fn inputs_of(&self, index: usize) -> Option<&CallInputs> {
        let mut end = 0usize;
        self.inputs.iter().find(|run| {
            end = end.saturating_add(run.count as usize);
            index < end
        })
    }

    /// How many customers the runs cover.
    pub fn covered(&self) -> u64 {
        self.inputs.iter().map(|r| u64::from(r.count)).sum()
    }
}

/// The call's answer as the host reads it: the whole call failed (`Err`, e.g. bad parameters),
/// or one result per customer, in order.
pub type CallOutput<O> = Result<Vec<Result<O, String>>, String>;

/// Why an answer is not exactly what the ABI says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// It does not read as the kind's answer: what, and where.
    Decode(String),
    /// It reads, but bytes are left after it.
    Trailing(usize),
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::Decode(e) => write!(f, "{e}"),
            AnswerError::Trailing(n) => write!(f, "{n} byte(s) left over after the answer"),
        }
    }
}

/// Answers being written, customer after customer, as the columns of docs/ABI.md §7:
///
/// ```text
/// Answer = 0: u8, n: u32, status: n × u8 (0 answered, 1 failed), error: Str(n) (empty when
///          answered), outcome: Bin(n) (the postcard outcome; empty when failed)
///        | 1: u8, message: u32 length then UTF-8 (the call is refused)
/// ```
#[derive(Debug, Default)]
pub struct AnswerWriter {
    status: Vec<u8>,
    error_ends: Vec<u32>,
    errors: Vec<u8>,
    outcome_ends: Vec<u32>,
    outcomes: Vec<u8>,
}

fn end_of(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).expect("an answer over 4 GiB")
}

impl AnswerWriter {
    /// No answers yet, room for `n`.
    pub fn with_capacity(n: usize) -> Self {
        AnswerWriter {
            status: Vec::with_capacity(n),
            error_ends: Vec::with_capacity(n),
            errors: Vec::new(),
            outcome_ends: Vec::with_capacity(n),
            outcomes: Vec::with_capacity(n * 8),
        }
    }

    /// The next customer's answer, or why there is none.
    pub fn push<O: Serialize>(&mut self, answer: Result<&O, &str>) {
        match answer {
            Ok(o) => {
                self.status.push(0);
                let taken = std::mem::take(&mut self.outcomes);
                self.outcomes =
                    postcard::to_extend(o, taken).expect("encoding into a Vec cannot fail");
            }
            Err(e) => {
                self.status.push(1);
                self.errors.extend_from_slice(e.as_bytes());
            }
        }
        self.error_ends.push(end_of(&self.errors));
        self.outcome_ends.push(end_of(&self.outcomes));
    }

    /// The answer's bytes.
    pub fn finish(self) -> Vec<u8> {
        let n = self.status.len();
        let mut out = Vec::with_capacity(5 + n * 9 + 8 + self.errors.len() + self.outcomes.len());
        out.push(0);
        out.extend_from_slice(&end_of(&self.status).to_le_bytes());
        out.extend_from_slice(&self.status);
        for (ends, bytes) in [
            (&self.error_ends, &self.errors),
            (&self.outcome_ends, &self.outcomes),
        ] {
            out.extend_from_slice(&0u32.to_le_bytes());
            ends.iter()
                .for_each(|e| out.extend_from_slice(&e.to_le_bytes()));
            out.extend_from_slice(bytes);
        }
        out
    }
}

/// The answer refusing the whole call with `message`.
pub fn refusal(message: &str) -> Vec<u8> {
    let mut out = vec![1];
    out.extend_from_slice(&end_of(message.as_bytes()).to_le_bytes());
    out.extend_from_slice(message.as_bytes());
    out
}

/// Reads a call's answer: exactly one answer of type `O` per customer and nothing after it.
pub fn decode_output<O: for<'de> Deserialize<'de>>(
    bytes: &[u8],
) -> Result<CallOutput<O>, AnswerError> {
    Ok(decode_sized(bytes)?.map(|items| items.into_iter().map(|(r, _)| r).collect()))
}

/// [`decode_output`], with the bytes each customer's answer took (its outcome or its error),
/// for a cap on each customer's answer whatever the call's other customers answered.
#[allow(clippy::type_complexity)] // the answer, each with its size
pub fn decode_sized<O: for<'de> Deserialize<'de>>(
    bytes: &[u8],
) -> Result<Result<Vec<(Result<O, String>, usize)>, String>, AnswerError> {
    let bad = |what: &str| AnswerError::Decode(what.to_owned());
    let take =
        |at: &mut usize, len: usize, what: &str| -> Result<std::ops::Range<usize>, AnswerError> {
            let end = at
                .checked_add(len)
                .filter(|&e| e <= bytes.len())
                .ok_or_else(|| {
                    bad(&format!(
                        "`{what}`: {len} bytes needed, {} left",
                        bytes.len() - *at
                    ))
                })?;
            let r = *at..end;
            *at = end;
            Ok(r)
        };
    let u32_at = |i: usize| {
        u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize
    };
    let mut at = 0;
    let tag = bytes
        .first()
        .copied()
        .ok_or_else(|| bad("an empty answer"))?;
    at += 1;
    let end = |at: usize| match bytes.len() - at {
        0 => Ok(()),
        n => Err(AnswerError::Trailing(n)),
    };
    match tag {
        1 => {
            let len = take(&mut at, 4, "message")?;
            let text = take(&mut at, u32_at(len.start), "message")?;
            let message =
                std::str::from_utf8(&bytes[text]).map_err(|e| bad(&format!("`message`: {e}")))?;
            end(at)?;
            Ok(Err(message.to_owned()))
        }
        0 => {
            let count = take(&mut at, 4, "count")?;
            let n = u32_at(count.start);
            let status = take(&mut at, n, "status")?;
            // A column of n values: its offsets, checked, and where its bytes start.
            let column = |at: &mut usize, what: &str| -> Result<(usize, usize), AnswerError> {
                let offsets = take(
                    at,
                    n.checked_add(1)
                        .and_then(|c| c.checked_mul(4))
                        .ok_or_else(|| bad(what))?,
                    what,
                )?;
                let mut last = 0;
                for i in 0..=n {
                    let o = u32_at(offsets.start + 4 * i);
                    if (i == 0 && o != 0) || o < last {
                        return Err(bad(&format!("`{what}`: offset {i} out of order")));
                    }
                    last = o;
                }
                let data = take(at, last, what)?;
                Ok((offsets.start, data.start))
            };
            let (error_offsets, error_data) = column(&mut at, "error")?;
            let (outcome_offsets, outcome_data) = column(&mut at, "outcome")?;
            end(at)?;
            let value = |offsets: usize, data: usize, i: usize| {
                &bytes[data + u32_at(offsets + 4 * i)..data + u32_at(offsets + 4 * i + 4)]
            };
            let mut items = Vec::with_capacity(n);
            for i in 0..n {
                let outcome = value(outcome_offsets, outcome_data, i);
                let error = value(error_offsets, error_data, i);
                let size = outcome.len() + error.len();
                items.push((
                    match bytes[status.start + i] {
                        0 if error.is_empty() => match postcard::take_from_bytes::<O>(outcome) {
                            Ok((o, [])) => Ok(o),
                            Ok((_, rest)) => {
                                return Err(bad(&format!(
                                    "`outcome` {i}: {} byte(s) left over",
                                    rest.len()
                                )));
                            }
                            Err(e) => return Err(bad(&format!("`outcome` {i}: {e}"))),
                        },
                        1 if outcome.is_empty() => Err(std::str::from_utf8(error)
                            .map_err(|e| bad(&format!("`error` {i}: {e}")))?
                            .to_owned()),
                        s @ (0 | 1) => {
                            return Err(bad(&format!(
                                "customer {i}: status {s} with both an outcome and an error"
                            )));
                        }
                        s => {
                            return Err(bad(&format!(
                                "customer {i}: status {s} is neither 0 nor 1"
                            )));
                        }
                    },
                    size,
                ));
            }
            Ok(Ok(items))
        }
        t => Err(bad(&format!(
            "the answer's first byte is {t}, neither 0 nor 1"
        ))),
    }
}

/// Encodes a call's answer (used by the guest side and by tests).
pub fn encode_output<O: Serialize>(output: &CallOutput<O>) -> Vec<u8> {
    match output {
        Err(message) => refusal(message),
        Ok(items) => {
            let mut w = AnswerWriter::with_capacity(items.len());
            items
                .iter()
                .for_each(|r| w.push(r.as_ref().map_err(String::as_str)));
            w.finish()
        }
    }
}

/// The bytes of the `regua-abi` custom section for `kind`.
pub const fn abi_section(kind: crate::Kind) -> [u8; 5] {
    let v = ABI_VERSION.to_le_bytes();
    [v[0], v[1], v[2], v[3], kind.code()]
}

#[cfg(test)]
mod reading_tests {
    use super::*;

    /// The worked answer of docs/ABI.md §7, byte for byte.
    #[test]
    fn the_worked_answer_of_the_abi_page_is_what_the_writer_writes() {
        let page = include_str!("../../../docs/ABI.md");
        let block = page
            .split("So a segment's \"in the segment, no reasons\"")
            .nth(1)
            .and_then(|s| s.split("```text").nth(1))
            .and_then(|s| s.split("```").next())
            .expect("the ABI page has its worked answer");
        let documented: Vec<u8> = block
            .split_whitespace()
            .map(|w| u8::from_str_radix(w, 16).unwrap())
            .collect();
        let answer: CallOutput<crate::Match> = Ok(vec![Ok(crate::Match {
            matched: true,
            reasons: vec![],
        })]);
        assert_eq!(encode_output(&answer), documented);
    }

    #[test]
    fn answers_read_back_as_written_and_damaged_ones_are_errors_never_panics() {
        let answer: CallOutput<crate::Match> = Ok(vec![
            Ok(crate::Match {
                matched: true,
                reasons: vec!["é".into()],
            }),
            Err("no transactions".into()),
            Ok(crate::Match {
                matched: false,
                reasons: vec![],
            }),
        ]);
        let bytes = encode_output(&answer);
        assert_eq!(decode_output::<crate::Match>(&bytes), Ok(answer));
        let refused: CallOutput<crate::Match> = Err("invalid params: `days`".into());
        assert_eq!(decode_output(&encode_output(&refused)), Ok(refused));
        for cut in 0..bytes.len() {
            assert!(
                decode_output::<crate::Match>(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode_output::<crate::Match>(&longer),
            Err(AnswerError::Trailing(1))
        );
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            let _ = decode_output::<crate::Match>(&b);
        }
        // A status that is neither 0 nor 1 is named.
        let mut b = bytes.clone();
        b[5] = 2;
        let err = decode_output::<crate::Match>(&b).unwrap_err().to_string();
        assert!(err.contains("status 2"), "{err}");
    }

    #[test]
    fn a_packed_output_unpacks_to_its_pointer_and_length_at_the_edges() {
        for (ptr, len) in [
            (0, 0),
            (1, u32::MAX),
            (u32::MAX, 0),
            (u32::MAX, u32::MAX),
            (65536, 17),
        ] {
            assert_eq!(unpack_output(pack_output(ptr, len)), (ptr, len));
        }
    }
}
