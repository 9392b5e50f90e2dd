//! Fuzzes `engine::body::multipart::parse`.
//!
//! Input: when the first byte is even, the rest is a body for the Content-Type
//! `multipart/form-data; boundary=0000` (so the fuzzer reaches the body parser at once);
//! otherwise the first line (up to `\n`) is the Content-Type and the rest the body.
//!
//! Invariant: never panics; every value, file name, part name and part header line handed
//! over is no longer than the body, and every file size too; the bytes handed over stay
//! within the output budget (input + min(64 x input, 1 MiB)); at most one field or file per
//! part and the part limit is honoured; MULTIPART_STRICT_ERROR is exactly "error or a
//! strict flag"; work is bounded by a constant number of passes over each line.
#![no_main]

use coraza_spoa::engine::body::{multipart, BodyLimits, BodySink};
use libfuzzer_sys::fuzz_target;

struct Check {
    body_len: usize,
    emitted: usize,
    fields: usize,
}

impl BodySink for Check {
    fn arg(&mut self, name: &[u8], value: &[u8]) {
        assert!(name.len() <= self.body_len && value.len() <= self.body_len);
        self.emitted += name.len() + value.len();
        self.fields += 1;
    }
    fn file(&mut self, field_name: &[u8], file_name: &[u8], size: usize) {
        assert!(field_name.len() <= self.body_len && file_name.len() <= self.body_len);
        assert!(size <= self.body_len);
        self.emitted += field_name.len() + file_name.len();
        self.fields += 1;
    }
    fn part_header(&mut self, part_name: &[u8], line: &[u8]) {
        assert!(part_name.len() <= self.body_len && line.len() <= self.body_len);
        self.emitted += part_name.len() + line.len();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let (content_type, body): (&[u8], &[u8]) = if first % 2 == 0 {
        (b"multipart/form-data; boundary=0000", rest)
    } else {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[]),
        }
    };
    let limits = BodyLimits {
        max_args: usize::MAX,
        max_depth: 0,
        max_parts: 50,
    };
    let mut scratch = Vec::new();
    let mut sink = Check {
        body_len: body.len(),
        emitted: 0,
        fields: 0,
    };
    let outcome = multipart::parse(body, content_type, limits, &mut scratch, &mut sink);
    let input = body.len() + content_type.len();
    assert!(sink.emitted <= input + (input * 64).min(1 << 20));
    assert!(sink.fields <= 51);
    assert_eq!(outcome.args + outcome.files, sink.fields);
    assert!(outcome.files_combined_size <= body.len());
    assert_eq!(
        outcome.strict_error(),
        outcome.error.is_some() || outcome.flags.any_strict()
    );
    if let Some(e) = &outcome.error {
        assert!(!e.to_string().contains('\n'));
    }
});
