//! Fuzz the SQL reader of transaction pooling (pinning, SET/RESET, DEALLOCATE,
//! reserved names) and the Bind/Describe/Close views: any bytes, no panic.
//! Run: `cargo +nightly fuzz run session_facts` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pooler_core::internals::messages::{Bind, Target};

fuzz_target!(|data: &[u8]| {
    let _ = pooler_core::fuzzing::session_facts(data);
    let _ = Bind::parse(data);
    let _ = Target::parse(data);
});
