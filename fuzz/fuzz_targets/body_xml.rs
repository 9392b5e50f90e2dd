//! Fuzzes `engine::body::xml::parse`.
//!
//! Invariant: never panics; every text node, attribute name and attribute value is no
//! longer than the input (entity decoding only shrinks: no entity declared in the document
//! is ever expanded); text nodes are non-empty and trimmed; the depth and count limits are
//! honoured; work is linear in the input.
#![no_main]

use coraza_spoa::engine::body::{xml, BodyLimits, BodySink};
use libfuzzer_sys::fuzz_target;

struct Check {
    input_len: usize,
    values: usize,
}

impl BodySink for Check {
    fn arg(&mut self, _: &[u8], _: &[u8]) {
        panic!("the XML processor hands over no arguments");
    }
    fn xml_text(&mut self, text: &[u8]) {
        assert!(!text.is_empty() && text.len() <= self.input_len);
        assert!(!text.first().is_some_and(u8::is_ascii_whitespace));
        assert!(!text.last().is_some_and(u8::is_ascii_whitespace));
        self.values += 1;
    }
    fn xml_attr(&mut self, name: &[u8], value: &[u8]) {
        assert!(name.len() <= self.input_len && value.len() <= self.input_len);
        self.values += 1;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut scratch = Vec::new();
    let limits = BodyLimits {
        max_args: 500,
        max_depth: 100,
        max_parts: 0,
    };
    let mut sink = Check {
        input_len: data.len(),
        values: 0,
    };
    let result = xml::parse(data, limits, &mut scratch, &mut sink);
    assert!(sink.values <= 500);
    if let Ok(status) = result {
        assert_eq!(status.texts + status.attrs, sink.values);
    }
});
