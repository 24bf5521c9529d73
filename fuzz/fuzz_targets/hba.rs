//! Fuzz the hba file parser: no panic whatever the text, errors that name
//! the file and line, and deciding on whatever parsed never panics.
//! Run: `cargo +nightly fuzz run hba` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pooler_core::fuzzing::hba(data);
});
