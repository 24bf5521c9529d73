//! Fuzz the query classifier: any bytes, no panic, same answer twice, and a
//! read never contains a call to a sequence function outside literals.
//! Run: `cargo +nightly fuzz run classify` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pooler_core::classify::{Classifier, ClassifierLists};

fuzz_target!(|data: &[u8]| {
    let plain = Classifier::default();
    let a = plain.classify(data);
    assert_eq!(a, plain.classify(data));
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
