//! Fuzz the query classifier: any bytes, no panic, same answer twice, and a
//! read never contains a call to a sequence function outside literals; the
//! catalog's name extraction agrees with the flag it stands for.
//! Run: `cargo +nightly fuzz run classify` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pooler_core::internals::{Classifier, ClassifierLists};

fuzz_target!(|data: &[u8]| {
    let plain = Classifier::default();
    let a = plain.classify(data);
    assert_eq!(a, plain.classify(data));
    // Names for the catalog come only with the flag that asks for them, and
    // are lowercased and distinct.
    let names = plain.unlisted_calls(data);
    if !names.is_empty() {
        assert!(a.flags.contains(pooler_core::internals::Flags::UNLISTED_FUNCTION));
    }
    for (i, n) in names.iter().enumerate() {
        assert_eq!(*n, n.to_ascii_lowercase());
        assert!(!names[..i].contains(n));
    }
    // With user lists too (exact names and a pattern).
    let lists = ClassifierLists {
        write_functions: vec!["audit".into(), "x_.*".into()],
        ..Default::default()
    };
    if let Ok(c) = Classifier::new(&lists) {
        let b = c.classify(data);
        // A user write list only ever adds writes.
        if b.is_read_only() {
            assert!(a.is_read_only());
        }
    }
});
