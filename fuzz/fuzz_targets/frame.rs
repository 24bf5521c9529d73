//! Fuzz the frame splitter: whatever the bytes and however they are cut,
//! frames come back whole and unchanged, and nothing panics.
//! Run: `cargo +nightly fuzz run frame` from `fuzz/`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pooler_core::internals::split_frame;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // The first byte picks the chunk size; the rest is the stream.
    let chunk = (data[0] as usize % 17) + 1;
    let stream = &data[1..];

    // Whole frames: their concatenation is a prefix of the input.
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    'outer: for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match split_frame(&mut buf, 4096) {
                Ok(Some(f)) => {
                    assert!(f.as_bytes().len() >= 5);
                    out.extend_from_slice(f.as_bytes());
                }
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
    }
    assert!(stream.starts_with(&out));
});
