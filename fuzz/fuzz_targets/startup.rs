//! Fuzz the startup-packet parser: no panic, no allocation beyond the limit,
//! and a decoded StartupMessage re-encodes to the same parameters.
//! Run: `cargo +nightly fuzz run startup` from `fuzz/`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pooler_core::protocol::{split_startup, StartupPacket, MAX_STARTUP_PACKET};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = split_startup(&mut buf) {
        assert!(buf.capacity() <= MAX_STARTUP_PACKET.max(data.len()) + 64);
        if let StartupPacket::Startup(m) = packet {
            // Round trip: encode the parameters again and parse them back.
            let mut body = (((m.major as u32) << 16) | m.minor as u32).to_be_bytes().to_vec();
            for (k, v) in &m.params {
                body.extend_from_slice(k.as_bytes());
                body.push(0);
                body.extend_from_slice(v.as_bytes());
                body.push(0);
            }
            body.push(0);
            let mut again = BytesMut::from(&((body.len() + 4) as u32).to_be_bytes()[..]);
            again.extend_from_slice(&body);
            match split_startup(&mut again) {
                Ok(Some(StartupPacket::Startup(m2))) => assert_eq!(m, m2),
                other => panic!("re-encoded startup message did not parse back: {other:?}"),
            }
        }
    }
});
