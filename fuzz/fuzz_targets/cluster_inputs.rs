//! Fuzz what the cluster controller reads from outside: the health probe's
//! row as a server returns it, and client queries checked for
//! `SHOW pool_nodes`: any bytes, no panic.
//! Run: `cargo +nightly fuzz run cluster_inputs` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pooler_core::fuzzing::cluster_inputs(data);
});
