//! Fuzz the certificate reader (the subject's common name for `cert`
//! authentication, the signature hash for SCRAM-SHA-256-PLUS): a client's
//! certificate is network input; any bytes are read or refused, never a
//! panic. Run: `cargo +nightly fuzz run certificate` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pooler_core::fuzzing::certificate(data);
});
