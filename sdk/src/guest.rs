//! The plugin side of the ABI. Plugins never use this directly: the `export_*!` macros call it.
#![doc(hidden)]

use std::cell::RefCell;

use serde::Serialize;

use crate::outcome::Message;
use crate::plugin::{Context, Error, JourneyRule, Kind, Metadata, Params, RestPolicy, Segment};
use crate::record::{Field, Fields};
use crate::view::Customer;
use crate::wire::{ABI_VERSION, CallContext, Envelope};

// The link names below are literals; these make the SDK fail to compile if they ever differ
// from the ABI's tables, which the host checks plugins against.
const _: () = assert!(crate::wire::same_name(crate::wire::IMPORT_MODULE, "regua"));
const _: () = assert!(crate::wire::same_name(crate::wire::LOG.name, "log"));
const _: () = assert!(crate::wire::same_name(crate::wire::ITEM.name, "item"));
const _: () = assert!(crate::wire::same_name(crate::wire::PANIC.name, "panic"));

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
    let meta = Metadata {
        name: name.to_owned(),
        kind,
        version: version.to_owned(),
        description: description.to_owned(),
        abi: ABI_VERSION,
        params: serde_json::to_value(P::default()).unwrap_or(serde_json::Value::Null),
        reads: reads.to_vec(),
    };
    hand_over(serde_json::to_vec(&meta).unwrap_or_default())
}

/// Reads the parameters given at evaluation time over the rule's defaults.
pub fn parse_params<P: Params>(json: &str) -> Result<P, Error> {
    let json = json.trim();
    if json.is_empty() || json == "null" {
        return Ok(P::default());
    }
    crate::json::from_str(json, None).map_err(|e| Error::new(format!("invalid params: {e}")))
}

/// Runs `rule` (named `name`, declaring `reads`) over every customer of a batch and encodes the
/// answers.
fn run<P: Params, O: Serialize>(
    (name, reads): (&'static str, &[Field]),
    ctx: &[u8],
    batch: &[u8],
    mut rule: impl FnMut(&Customer, &CallContext, &Context<'_, P>) -> Result<O, Error>,
) -> Vec<u8> {
    let reads = Fields::of(reads);
    let fail = |msg: String| postcard::to_allocvec(&Err::<(), _>(msg)).unwrap_or_default();
    let call: CallContext = match postcard::from_bytes(ctx) {
        Ok(c) => c,
        Err(e) => return fail(format!("the call context does not decode: {e}")),
    };
    let params = match parse_params::<P>(&call.params) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let context = Context {
        now: call.now,
        params: &params,
        default_tz: &call.default_tz,
    };
    let (count, mut rest) = match postcard::take_from_bytes::<u32>(batch) {
        Ok(v) => v,
        Err(e) => return fail(format!("the batch header does not decode: {e}")),
    };
    let mut out = Vec::with_capacity(16 + count as usize * 32);
    out.push(0); // Ok: the call as a whole succeeded
    out = postcard::to_extend(&count, out).unwrap_or_default();
    for index in 0..count {
        begin_item(index);
        // The envelope says where the next record starts; a part that does not read is this
        // customer's error, and the rest of the batch goes on.
        let envelope = match Envelope::split(rest) {
            Ok((e, r)) => {
                rest = r;
                e
            }
            Err(e) => {
                return fail(format!(
                    "customer {index} of the batch does not decode: {e}"
                ));
            }
        };
        let answer = match envelope.read() {
            Ok(record) => rule(&Customer::reading(&record, reads, name), &call, &context)
                .map_err(Error::into_message),
            Err(e) => Err(format!(
                "the record of customer `{}` does not decode: {e}",
                envelope.id()
            )),
        };
        out = postcard::to_extend(&answer, out).unwrap_or_default();
    }
    out
}

/// One `regua_evaluate` call: takes back the two input buffers, runs `rule` (the plugin `name`,
/// declaring `reads`) over the batch, and hands the answers over.
///
/// # Safety
/// The pointers must come from [`alloc`] with these lengths.
unsafe fn call<P: Params, O: Serialize>(
    (name, reads): (&'static str, &[Field]),
    (cp, cl, bp, bl): (u32, u32, u32, u32),
    rule: impl FnMut(&Customer, &CallContext, &Context<'_, P>) -> Result<O, Error>,
) -> u64 {
    install_panic_hook();
    // SAFETY: guaranteed by the caller.
    let (ctx, batch) = unsafe { (take(cp, cl), take(bp, bl)) };
    hand_over(run((name, reads), &ctx, &batch, rule))
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
        call::<S::Params, _>((name, S::READS), (cp, cl, bp, bl), |c, _, cx| {
            S::evaluate(c, cx)
        })
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
        call::<J::Params, _>((name, J::READS), (cp, cl, bp, bl), |c, call, cx| {
            J::evaluate(c, call.event.as_ref(), cx)
        })
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
        call::<R::Params, _>((name, R::READS), (cp, cl, bp, bl), |c, call, cx| {
            let message: &Message = call
                .message
                .as_ref()
                .ok_or_else(|| Error::new("a rest policy needs the proposed `message`"))?;
            R::evaluate(c, message, cx)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_output, encode_count, encode_customer};

    #[derive(Default, serde::Serialize, serde::Deserialize)]
    struct NoParams {}

    #[test]
    fn a_record_whose_part_does_not_read_is_that_customers_error_and_the_others_answer() {
        let ctx = postcard::to_allocvec(&CallContext {
            now: crate::Timestamp::from_millis(0),
            default_tz: "UTC".into(),
            params: "{}".into(),
            message: None,
            event: None,
        })
        .unwrap();
        let record = |id: &str| {
            crate::testing::customer(&format!(
                r#"{{"id":"{id}","transactions":[{{"id":"t","at":"2025-01-01T00:00:00Z","kind":"purchase","amount":3}}]}}"#
            ))
        };
        let mut batch = Vec::new();
        encode_count(3, &mut batch);
        encode_customer(&record("a"), &mut batch);
        let damaged = batch.len();
        encode_customer(&record("b"), &mut batch);
        encode_customer(&record("c"), &mut batch);
        // b's transactions: past the id (4 + 1), the tz (1), two empty parts (8) and the
        // part's length (4), the count says two transactions where one was written.
        batch[damaged + 5 + 1 + 8 + 4] = 2;
        let out = run::<NoParams, f64>(
            ("spent", &[Field::TransactionAmount]),
            &ctx,
            &batch,
            |c, _, _| Ok(c.transactions().map(|t| t.amount()).sum()),
        );
        let answers = decode_output::<f64>(&out).unwrap().unwrap();
        assert_eq!(answers[0], Ok(3.0));
        let err = answers[1].clone().unwrap_err();
        assert!(
            err.contains("customer `b` does not decode") && err.contains("transactions"),
            "{err}"
        );
        assert_eq!(answers[2], Ok(3.0));
    }
}
