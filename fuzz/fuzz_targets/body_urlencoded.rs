//! Fuzzes `engine::body::urlencoded::parse` (query strings and urlencoded bodies).
//!
//! Invariant: never panics; every decoded name and value is no longer than the input
//! (decoding only shrinks); the pairs handed over are at most one per byte plus one; the
//! argument limit is honoured exactly; work is one pass over the input.
#![no_main]

use coraza_spoa::engine::body::{urlencoded, BodyLimits, BodySink};
use libfuzzer_sys::fuzz_target;

struct Check {
    input_len: usize,
    args: usize,
}

impl BodySink for Check {
    fn arg(&mut self, name: &[u8], value: &[u8]) {
        assert!(name.len() <= self.input_len && value.len() <= self.input_len);
        assert!(name.len() + value.len() <= self.input_len);
        self.args += 1;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut scratch = Vec::new();
    let mut sink = Check {
        input_len: data.len(),
        args: 0,
    };
    let status = urlencoded::parse(data, BodyLimits::UNBOUNDED, &mut scratch, &mut sink)
        .expect("no limit can be hit");
    assert_eq!(status.args, sink.args);
    assert!(sink.args <= data.len() / 2 + 1);

    let limits = BodyLimits {
        max_args: 3,
        ..BodyLimits::UNBOUNDED
    };
    let mut sink = Check {
        input_len: data.len(),
        args: 0,
    };
    match urlencoded::parse(data, limits, &mut scratch, &mut sink) {
        Ok(status) => assert!(status.args <= 3),
        Err(_) => assert_eq!(sink.args, 3),
    }
});
