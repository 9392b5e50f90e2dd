//! Fuzzes `engine::body::cookies::parse` (one `Cookie` header value).
//!
//! Invariant: never panics; names are non-empty, trimmed and free of `;`; names and values
//! are slices of the input (never longer); at most one cookie per `;`-separated piece; work
//! is one pass over the input.
#![no_main]

use coraza_spoa::engine::body::{cookies, BodySink};
use libfuzzer_sys::fuzz_target;

struct Check {
    input_len: usize,
    cookies: usize,
}

impl BodySink for Check {
    fn arg(&mut self, name: &[u8], value: &[u8]) {
        assert!(!name.is_empty());
        assert!(!name.contains(&b';') && !value.contains(&b';'));
        assert!(!matches!(name.first(), Some(b' ' | b'\t' | b'\r' | b'\n')));
        assert!(!matches!(name.last(), Some(b' ' | b'\t' | b'\r' | b'\n')));
        assert!(name.len() + value.len() <= self.input_len);
        self.cookies += 1;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut sink = Check {
        input_len: data.len(),
        cookies: 0,
    };
    let n = cookies::parse(data, &mut sink);
    assert_eq!(n, sink.cookies);
    assert!(n <= data.iter().filter(|&&b| b == b';').count() + 1);
});
