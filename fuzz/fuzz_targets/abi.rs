//! Any bytes across the ABI, both ways: what a plugin returns (read by the host) and what the
//! host sends (read by a plugin) decode or fail cleanly, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regua_sdk::wire::{self, CallContext};
use regua_sdk::{Decision, JourneyOutcome, Match};

fuzz_target!(|bytes: &[u8]| {
    // Plugin → host: the answers of each kind.
    let _ = wire::decode_output::<Match>(bytes);
    let _ = wire::decode_output::<Decision>(bytes);
    let _ = wire::decode_output::<JourneyOutcome>(bytes);
    // Host → plugin: the call context, then a chunk read as the SDK reads it.
    if let Ok(ctx) = postcard::from_bytes::<CallContext>(bytes) {
        let _ = ctx.inputs_of(usize::MAX);
        let _ = ctx.covered();
    }
    if let Ok(chunk) = wire::ChunkView::read(bytes) {
        for i in 0..chunk.len().min(64) {
            let _ = chunk.id(i);
            if let Ok(view) = chunk.record(i) {
                let _ = view.to_record();
            }
        }
    }
});
