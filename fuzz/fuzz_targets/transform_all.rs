//! Fuzz target: every transformation, then a short pipeline, on arbitrary bytes.
//!
//! Invariant: `apply` never panics; its output never exceeds `output_bound` for its input;
//! when it returns `false` the output buffer is untouched, and when it returns `true` the
//! output differs from the input (the unchanged fast path never lies). The first input byte
//! picks the pipeline length (0–7) and the following bytes its steps; the whole input is also
//! the value every single transformation is applied to.
#![no_main]

use coraza_spoa::engine::transformations::{apply, output_bound, Transformation};
use libfuzzer_sys::fuzz_target;

const SENTINEL: &[u8] = b"untouched";

fn check(t: Transformation, input: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    out.extend_from_slice(SENTINEL);
    let changed = apply(t, input, out);
    if changed {
        assert_ne!(out.as_slice(), input, "{} reported a change that did not happen", t.name());
        assert!(out.len() <= output_bound(t, input.len()), "{} exceeded its bound", t.name());
    } else {
        assert_eq!(out.as_slice(), SENTINEL, "{} touched the buffer without a change", t.name());
    }
    changed
}

fuzz_target!(|data: &[u8]| {
    let table = Transformation::TABLE;
    let mut out = Vec::new();
    for &(_, t) in table {
        check(t, data, &mut out);
    }

    let (steps, _) = match data.split_first() {
        Some((&n, rest)) => (usize::from(n % 8), rest),
        None => return,
    };
    let picks = data.get(1..1 + steps).unwrap_or_default();
    let mut current = data.to_vec();
    let mut next = Vec::new();
    for &pick in picks {
        let (_, t) = table[usize::from(pick) % table.len()];
        if check(t, &current, &mut next) {
            std::mem::swap(&mut current, &mut next);
        }
    }
});
