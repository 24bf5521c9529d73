//! Fuzz the relay's protocol core with hostile bytes from both sides: any
//! client stream and any server stream, cut anywhere, in every pool mode,
//! end in relayed bytes or an error, never a panic, a hang or unbounded
//! memory.
//! Run: `cargo +nightly fuzz run relay` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    // First byte: the pool mode and the chunk size; second: where the
    // client's bytes end and the server's begin.
    let (mode, chunk) = (data[0] % 3, (data[0] as usize / 3) % 61 + 1);
    let split = 2 + (data[1] as usize * (data.len() - 2)) / 256;
    pooler_core::fuzzing::relay_core(mode, &data[2..split], &data[split..], chunk);
});
