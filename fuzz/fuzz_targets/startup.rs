//! Fuzz the startup-packet parser: no panic, no allocation beyond the limit,
//! and a decoded StartupMessage re-encodes to the same parameters.
//! Run: `cargo +nightly fuzz run startup` from `fuzz/`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pooler_core::internals::{split_startup, StartupPacket, MAX_STARTUP_PACKET};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = split_startup(&mut buf) {
        assert!(buf.capacity() <= MAX_STARTUP_PACKET.max(data.len()) + 64);
        if let StartupPacket::Startup(m) = packet {
            // Round trip: encode the parameters again and parse them back.
            let params: Vec<(&str, &str)> = m.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut again = BytesMut::new();
            pooler_core::internals::write::startup_message(&mut again, m.minor, &params);
            match split_startup(&mut again) {
                Ok(Some(StartupPacket::Startup(m2))) => assert_eq!(m, m2),
                other => panic!("re-encoded startup message did not parse back: {other:?}"),
            }
        }
    }
});
