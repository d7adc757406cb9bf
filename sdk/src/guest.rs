//! The plugin side of the ABI. Plugins never use this directly: the `export_*!` macros call it.
#![doc(hidden)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::outcome::Message;
use crate::plugin::{Context, Error, JourneyRule, Kind, Params, RestPolicy, Segment};
use crate::record::{Field, Fields};
use crate::value::Value;
use crate::view::Customer;
use crate::wire::{ABI_VERSION, AnswerWriter, CallContext, CallInputs, ChunkView};

// The link names below are literals; these make the SDK fail to compile if they ever differ
// from the ABI's tables, which the host checks plugins against.
const _: () = assert!(crate::wire::same_name(crate::wire::IMPORT_MODULE, "regua"));
const _: () = assert!(crate::wire::same_name(crate::wire::LOG.name, "log"));
const _: () = assert!(crate::wire::same_name(crate::wire::ITEM.name, "item"));
const _: () = assert!(crate::wire::same_name(crate::wire::PANIC.name, "panic"));
const _: () = assert!(crate::wire::same_name(crate::wire::ZONE.name, "zone"));

#[cfg(target_arch = "wasm32")]
mod host {
    #[link(wasm_import_module = "regua")]
    unsafe extern "C" {
        #[link_name = "log"]
        pub fn log(level: u32, ptr: *const u8, len: usize);
        #[link_name = "item"]
        pub fn item(index: u32);
        #[link_name = "panic"]
        pub fn panic(ptr: *const u8, len: usize);
        #[link_name = "zone"]
        pub fn zone(name: *const u8, name_len: usize, out: *mut u8, out_cap: usize) -> i32;
    }
}

/// The time zone `name` from the host's database (`regua.zone`): its canonical name and its
/// TZif data, or `None` if the host knows no such zone.
#[cfg(target_arch = "wasm32")]
pub(crate) fn zone(name: &str) -> Option<(String, Vec<u8>)> {
    let mut out = vec![0u8; 4096];
    loop {
        // SAFETY: the host reads `name` and writes at most `out.len()` bytes into `out`.
        let len = unsafe { host::zone(name.as_ptr(), name.len(), out.as_mut_ptr(), out.len()) };
        let len = usize::try_from(len).ok()?;
        if len > out.len() {
            out.resize(len, 0);
            continue;
        }
        out.truncate(len);
        let (&n, rest) = out.split_first()?;
        let canonical = std::str::from_utf8(rest.get(..n as usize)?)
            .ok()?
            .to_owned();
        return Some((canonical, rest[n as usize..].to_vec()));
    }
}

/// Sends a log line to the host (level 1 error … 5 trace). On a native target it goes to stderr.
pub fn log(level: u32, message: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the host reads `len` bytes at `ptr` from this module's memory during the call.
    unsafe {
        host::log(level, message.as_ptr(), message.len())
    };
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[plugin log {level}] {message}");
}

fn begin_item(_index: u32) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: a plain call with an integer argument.
    unsafe {
        host::item(_index)
    };
}

fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let text = info.to_string();
                // SAFETY: the host copies the message out of memory before the trap unwinds.
                unsafe { host::panic(text.as_ptr(), text.len()) };
            }))
        });
    }
}

thread_local! {
    /// The last answer, kept alive until the next call so the host can read it.
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn hand_over(bytes: Vec<u8>) -> u64 {
    OUTPUT.with(|o| {
        let mut o = o.borrow_mut();
        *o = bytes;
        // Pointers and lengths are 32-bit on wasm32, where this runs.
        crate::wire::pack_output(o.as_ptr() as usize as u32, o.len() as u32)
    })
}

/// `regua_alloc`: a buffer of `len` bytes for the host to write an input into. The next
/// `regua_evaluate` that receives it frees it.
pub fn alloc(len: u32) -> u32 {
    let buf = vec![0u8; len as usize].into_boxed_slice();
    Box::into_raw(buf) as *mut u8 as usize as u32
}

/// Takes back a buffer made by [`alloc`].
///
/// # Safety
/// `ptr` and `len` must come from one call of [`alloc`], not freed before.
unsafe fn take(ptr: u32, len: u32) -> Box<[u8]> {
    let slice = std::ptr::slice_from_raw_parts_mut(ptr as usize as *mut u8, len as usize);
    // SAFETY: guaranteed by the caller.
    unsafe { Box::from_raw(slice) }
}

/// `regua_metadata`: the plugin's metadata as JSON.
pub fn metadata<P: Params>(
    kind: Kind,
    reads: &[Field],
    name: &str,
    version: &str,
    description: &str,
) -> u64 {
    // The metadata's JSON (docs/ABI.md §6), written without a JSON library: the plugin needs
    // none (`Metadata` is what the host reads it into).
    let text = |s: &str| Value::String(s.to_owned());
    let meta = Value::Object(BTreeMap::from([
        ("name".to_owned(), text(name)),
        ("kind".to_owned(), text(kind.as_str())),
        ("version".to_owned(), text(version)),
        ("description".to_owned(), text(description)),
        ("abi".to_owned(), Value::Int(ABI_VERSION.into())),
        (
            "params".to_owned(),
            crate::params::to_value(&P::default()).unwrap_or(Value::Null),
        ),
        (
            "reads".to_owned(),
            Value::Array(reads.iter().map(|f| text(f.name())).collect()),
        ),
    ]));
    hand_over(crate::params::json_text(&meta).into_bytes())
}

/// Reads parameters given as JSON text over the rule's defaults, as a call reads them (a
/// rule's tests use it; a plugin itself receives them already read, [`call_params`]).
pub fn parse_params<P: Params>(json: &str) -> Result<P, Error> {
    read_params(crate::params::from_json(json).map_err(Error::new)?)
}

/// Reads a call's parameters (docs/ABI.md §5: a `Value` in postcard) over the rule's defaults.
fn call_params<P: Params>(bytes: &[u8]) -> Result<P, Error> {
    let value: Value = postcard::from_bytes(bytes)
        .map_err(|e| Error::new(format!("invalid params: they do not decode ({e})")))?;
    read_params(value)
}

fn read_params<P: Params>(value: Value) -> Result<P, Error> {
    if value.is_null() {
        return Ok(P::default());
    }
    crate::params::from_value(value).map_err(|e| Error::new(format!("invalid params: {e}")))
}

/// An answer whose reasons a call may ask to leave out (docs/ABI.md §5, `reasons`).
trait Explained {
    /// Leaves the reasons out.
    fn drop_reasons(&mut self);
}

impl Explained for crate::Match {
    fn drop_reasons(&mut self) {
        self.reasons.clear()
    }
}

impl Explained for crate::JourneyOutcome {
    fn drop_reasons(&mut self) {
        self.reasons.clear()
    }
}

impl Explained for crate::Decision {
    fn drop_reasons(&mut self) {
        self.notes.clear()
    }
}

/// Runs `rule` (named `name`, declaring `reads`) over every customer of a chunk and encodes
/// the answers, without reasons when the call asks for none.
#[inline(always)]
fn run<P: Params, O: Serialize + Explained>(
    (name, reads): (&'static str, Fields),
    ctx: &[u8],
    chunk: &[u8],
    mut rule: impl FnMut(&Customer, &CallInputs, &Context<'_, P>) -> Result<O, Error>,
) -> Vec<u8> {
    let fail = |msg: String| crate::wire::refusal(&msg);
    let call: CallContext = match postcard::from_bytes(ctx) {
        Ok(c) => c,
        Err(e) => return fail(format!("the call context does not decode: {e}")),
    };
    let params = match call_params::<P>(&call.params) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let chunk = match ChunkView::read(chunk) {
        Ok(c) => c,
        Err(e) => return fail(format!("the chunk does not decode: {e}")),
    };
    if call.covered() != chunk.len() as u64 {
        return fail(format!(
            "the call's inputs cover {} customers, the chunk has {}",
            call.covered(),
            chunk.len()
        ));
    }
    let mut out = AnswerWriter::with_capacity(chunk.len());
    // Reasons written with `because!` are not even formatted when the call wants none.
    let _explaining = crate::outcome::Explaining::set(call.reasons);
    let mut runs = call
        .inputs
        .iter()
        .flat_map(|r| std::iter::repeat_n(r, r.count as usize));
    for index in 0..chunk.len() {
        begin_item(index as u32);
        let inputs = runs.next().expect("the runs cover every customer");
        let context = Context {
            now: inputs.now,
            params: &params,
            default_tz: &call.default_tz,
        };
        // A small part that does not read is this customer's error; the others go on.
        let answer = match chunk.record_reading(index, reads) {
            Ok(record) => rule(&Customer::reading(&record, reads, name), inputs, &context)
                .map(|mut o| {
                    if !call.reasons {
                        o.drop_reasons();
                    }
                    o
                })
                .map_err(Error::into_message),
            Err(e) => Err(format!(
                "the record of customer `{}` does not decode: {e}",
                chunk.id(index)
            )),
        };
        out.push(answer.as_ref().map_err(String::as_str));
    }
    out.finish()
}

/// One `regua_evaluate` call: takes back the two input buffers, runs `rule` (the plugin `name`,
/// declaring `reads`) over the batch, and hands the answers over.
///
/// # Safety
/// The pointers must come from [`alloc`] with these lengths.
#[inline(always)]
unsafe fn call<P: Params, O: Serialize + Explained>(
    (name, reads): (&'static str, Fields),
    (cp, cl, bp, bl): (u32, u32, u32, u32),
    rule: impl FnMut(&Customer, &CallInputs, &Context<'_, P>) -> Result<O, Error>,
) -> u64 {
    install_panic_hook();
    // SAFETY: guaranteed by the caller.
    let (ctx, chunk) = unsafe { (take(cp, cl), take(bp, bl)) };
    hand_over(run((name, reads), &ctx, &chunk, rule))
}

/// `regua_evaluate` for a segment.
///
/// # Safety
/// The pointers must come from [`alloc`] with these lengths.
pub unsafe fn evaluate_segment<S: Segment>(
    name: &'static str,
    cp: u32,
    cl: u32,
    bp: u32,
    bl: u32,
) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe {
        call::<S::Params, _>(
            (name, const { Fields::of(S::READS) }),
            (cp, cl, bp, bl),
            |c, _, cx| S::evaluate(c, cx),
        )
    }
}

/// `regua_evaluate` for a journey rule.
///
/// # Safety
/// The pointers must come from [`alloc`] with these lengths.
pub unsafe fn evaluate_journey<J: JourneyRule>(
    name: &'static str,
    cp: u32,
    cl: u32,
    bp: u32,
    bl: u32,
) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe {
        call::<J::Params, _>(
            (name, const { Fields::of(J::READS) }),
            (cp, cl, bp, bl),
            |c, inputs, cx| J::evaluate(c, inputs.event.as_ref(), cx),
        )
    }
}

/// `regua_evaluate` for a rest policy.
///
/// # Safety
/// The pointers must come from [`alloc`] with these lengths.
pub unsafe fn evaluate_rest<R: RestPolicy>(
    name: &'static str,
    cp: u32,
    cl: u32,
    bp: u32,
    bl: u32,
) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe {
        call::<R::Params, _>(
            (name, const { Fields::of(R::READS) }),
            (cp, cl, bp, bl),
            |c, inputs, cx| {
                let message: &Message = inputs
                    .message
                    .as_ref()
                    .ok_or_else(|| Error::new("a rest policy needs the proposed `message`"))?;
                R::evaluate(c, message, cx)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ChunkWriter, decode_output};

    #[derive(Default, serde::Serialize, serde::Deserialize)]
    struct NoParams {}

    impl Explained for f64 {
        fn drop_reasons(&mut self) {}
    }

    impl Explained for i64 {
        fn drop_reasons(&mut self) {}
    }

    fn context(runs: &[(u32, i64)]) -> Vec<u8> {
        postcard::to_allocvec(&CallContext {
            default_tz: "UTC".into(),
            params: crate::wire::params_bytes(&Value::Object(Default::default())),
            reasons: true,
            inputs: runs
                .iter()
                .map(|&(count, now)| CallInputs {
                    count,
                    now: crate::Timestamp::from_millis(now),
                    message: None,
                    event: None,
                })
                .collect(),
        })
        .unwrap()
    }

    fn record(id: &str) -> crate::Record {
        crate::testing::customer(&format!(
            r#"{{"id":"{id}","transactions":[{{"id":"t","at":"2025-01-01T00:00:00Z","kind":"purchase","amount":3}}]}}"#
        ))
    }

    #[test]
    fn a_record_whose_part_does_not_read_is_that_customers_error_and_the_others_answer() {
        let mut w = ChunkWriter::new(Fields::all());
        let mut b = record("b");
        b.inbound = vec![crate::record::Inbound {
            channel: crate::Channel::Sms,
            at: crate::Timestamp::from_millis(0),
        }];
        for r in [record("a"), b, record("c")] {
            w.push(&r);
        }
        let mut chunk = Vec::new();
        w.write(0..3, Fields::all(), &mut chunk);
        // b's inbound: one entry whose channel (its first byte, after the count) is no channel.
        let at = chunk
            .windows(2)
            .rposition(|p| p == [1, 1])
            .expect("b's inbound: one entry, channel 1");
        chunk[at + 1] = 9;
        let out = run::<NoParams, f64>(
            (
                "spent",
                Fields::of(&[Field::TransactionAmount, Field::Inbound]),
            ),
            &context(&[(3, 0)]),
            &chunk,
            |c, _, _| Ok(c.transactions().map(|t| t.amount()).sum()),
        );
        let answers = decode_output::<f64>(&out).unwrap().unwrap();
        assert_eq!(answers[0], Ok(3.0));
        let err = answers[1].clone().unwrap_err();
        assert!(
            err.contains("customer `b` does not decode") && err.contains("inbound"),
            "{err}"
        );
        assert_eq!(answers[2], Ok(3.0));
    }

    /// Each customer is evaluated at the `now` of its run; runs of no customers are skipped; runs
    /// that do not cover the chunk refuse the call.
    #[test]
    fn each_customer_is_evaluated_with_the_inputs_of_its_run() {
        let mut w = ChunkWriter::new(Fields::all());
        for id in ["a", "b", "c"] {
            w.push(&record(id));
        }
        let mut chunk = Vec::new();
        w.write(0..3, Fields::all(), &mut chunk);
        let now = |runs: &[(u32, i64)]| {
            let out = run::<NoParams, i64>(
                ("now", Fields::default()),
                &context(runs),
                &chunk,
                |_, inputs, cx| {
                    assert_eq!(inputs.now, cx.now);
                    Ok(cx.now.as_millis())
                },
            );
            decode_output::<i64>(&out).unwrap()
        };
        assert_eq!(
            now(&[(1, 10), (0, 99), (2, 20)]),
            Ok(vec![Ok(10), Ok(20), Ok(20)])
        );
        assert_eq!(now(&[(3, 5)]), Ok(vec![Ok(5); 3]));
        let short = now(&[(2, 5)]).unwrap_err();
        assert!(
            short.contains("cover 2 customers, the chunk has 3"),
            "{short}"
        );
    }
}
