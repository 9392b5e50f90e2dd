//! Fuzzes `engine::body::json::parse`.
//!
//! Invariant: never panics; every value is no longer than the input; every name is at most
//! twice the input plus the `json` prefix (an array index can take more digits than the
//! brackets that make it, never more than twice as many bytes); the bytes handed over stay
//! within the output budget (input + min(64 x input, 1 MiB)), which keeps the work linear;
//! the depth and argument limits are honoured; and whatever serde_json accepts (within its
//! own 128-level recursion limit) is accepted too.
#![no_main]

use coraza_spoa::engine::body::{json, BodyLimits, BodySink};
use libfuzzer_sys::fuzz_target;

struct Check {
    input_len: usize,
    emitted: usize,
    args: usize,
}

impl BodySink for Check {
    fn arg(&mut self, name: &[u8], value: &[u8]) {
        assert!(name.starts_with(b"json"));
        assert!(
            name.len() <= 2 * self.input_len + 6,
            "{} > 2 x {}",
            name.len(),
            self.input_len
        );
        assert!(value.len() <= self.input_len);
        self.emitted += name.len() + value.len();
        self.args += 1;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut scratch = Vec::new();
    let limits = BodyLimits {
        max_args: 1000,
        max_depth: 200,
        max_parts: 0,
    };
    let mut sink = Check {
        input_len: data.len(),
        emitted: 0,
        args: 0,
    };
    let result = json::parse(data, limits, &mut scratch, &mut sink);
    assert!(sink.emitted <= data.len() + (data.len() * 64).min(1 << 20));
    if let Ok(status) = result {
        assert!(status.args <= 1000);
        assert!(status.array_lengths <= 2000);
        assert_eq!(status.args + status.array_lengths, sink.args);
    } else if serde_json::from_slice::<serde_json::Value>(data).is_ok() {
        let err = result.unwrap_err();
        // serde_json accepted it: only one of our limits may refuse it.
        assert_eq!(
            err.kind(),
            coraza_spoa::engine::body::BodyErrorKind::Limit,
            "{err}"
        );
    }
});
