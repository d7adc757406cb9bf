//! The ABI's one home: everything that crosses the boundary between host and plugin — the
//! version, the custom section, the names and signatures of the imports and exports, and the
//! bytes of every input and output — shared by both sides so they cannot drift. `docs/ABI.md`
//! describes the same for authors in other languages. A next ABI version adds its tables and
//! encodings here beside these.
//!
//! Encoding: [postcard](https://postcard.jamesmunk.eu/wire-format.html) (varint integers, no
//! field names), with the choices of [`crate::time`] and [`crate::value`] for timestamps, dates and
//! free-form values; customer records in the layout of [`record`](RecordView), which plugins
//! read in place.

use serde::{Deserialize, Serialize};

use crate::outcome::Message;
use crate::record::Event;
use crate::time::Timestamp;

mod record;
pub use record::{Envelope, LayoutError, RecordView, encode_customer, encode_customer_reading};
pub(crate) use record::{Events, Transactions};

/// The ABI version this SDK builds plugins for and this host runs.
pub const ABI_VERSION: u32 = 2;

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
/// Every function the host provides; a plugin may import nothing else.
pub const HOST_FUNCTIONS: [AbiFunction; 3] = [LOG, ITEM, PANIC];

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
/// `regua_evaluate(ctx_ptr, ctx_len, batch_ptr, batch_len) -> (ptr << 32 | len)`: one call.
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

/// The per-call header: everything but the customers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallContext {
    /// The instant of the evaluation.
    pub now: Timestamp,
    /// The company's default IANA time zone.
    pub default_tz: String,
    /// The plugin's parameters as JSON text (`{}` for the defaults).
    pub params: String,
    /// The proposed message (rest policies).
    pub message: Option<Message>,
    /// The triggering event (journey rules).
    pub event: Option<Event>,
}

/// Writes the batch header for `count` customers.
pub fn encode_count(count: u32, out: &mut Vec<u8>) {
    let taken = std::mem::take(out);
    *out = postcard::to_extend(&count, taken).expect("encoding into a Vec cannot fail");
}

/// The call's answer as the host reads it: the whole call failed (`Err`, e.g. bad parameters),
/// or one result per customer, in order.
pub type CallOutput<O> = Result<Vec<Result<O, String>>, String>;

/// Why an answer is not exactly what the ABI says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// It does not decode as the kind's answer.
    Decode(postcard::Error),
    /// It decodes, but bytes are left after it.
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

/// Reads a call's answer: exactly one answer of type `O` per customer and nothing after it.
pub fn decode_output<O: for<'de> Deserialize<'de>>(
    bytes: &[u8],
) -> Result<CallOutput<O>, AnswerError> {
    match postcard::take_from_bytes(bytes) {
        Ok((output, [])) => Ok(output),
        Ok((_, rest)) => Err(AnswerError::Trailing(rest.len())),
        Err(e) => Err(AnswerError::Decode(e)),
    }
}

/// Encodes a call's answer (used by the guest side and by tests).
pub fn encode_output<O: Serialize>(output: &CallOutput<O>) -> Vec<u8> {
    postcard::to_allocvec(output).expect("encoding into a Vec cannot fail")
}

/// The bytes of the `regua-abi` custom section for `kind`.
pub const fn abi_section(kind: crate::Kind) -> [u8; 5] {
    let v = ABI_VERSION.to_le_bytes();
    [v[0], v[1], v[2], v[3], kind.code()]
}

#[cfg(test)]
mod reading_tests {
    use super::*;

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
