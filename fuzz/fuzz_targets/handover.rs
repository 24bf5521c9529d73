//! Fuzz the reader of a socket handover message (the text that comes with
//! the descriptors over the upgrade control socket): any bytes are read or
//! refused, never a panic. Run: `cargo +nightly fuzz run handover` from
//! `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pooler_core::fuzzing::handover(data);
});
