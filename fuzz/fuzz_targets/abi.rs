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
    // Host → plugin: the call context, then a batch read as the SDK reads it.
    let _ = postcard::from_bytes::<CallContext>(bytes);
    if let Ok((count, mut rest)) = postcard::take_from_bytes::<u32>(bytes) {
        for _ in 0..count.min(64) {
            match wire::Envelope::split(rest) {
                Ok((envelope, r)) => {
                    rest = r;
                    if let Ok(view) = envelope.read() {
                        let _ = view.to_record();
                    }
                }
                Err(_) => break,
            }
        }
    }
});
