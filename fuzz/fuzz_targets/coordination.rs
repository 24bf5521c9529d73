//! Fuzz the readers of what poolers write to the coordination store (each
//! pooler's view, the leader's cluster state): whoever can write to the
//! store writes them; any bytes are read or ignored, never a panic. Run:
//! `cargo +nightly fuzz run coordination` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pooler_core::fuzzing::coordination_records(data);
});
