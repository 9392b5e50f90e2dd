//! Fuzzes NOTIFY payloads: `Messages`, `Message::args` and `Message::arg`.
//!
//! Invariant: never panics. Every message the iterator yields has already been walked, so its
//! `args()` yields exactly `nb_args()` items and none is an error, and `arg(name)` finds the
//! first argument of that name. Re-encoding the decoded messages with `NotifyWriter` and decoding
//! again gives the same names and values.
#![no_main]

use coraza_spoa::spop::{self, Messages, NotifyWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let mut decoded = Vec::new();
    for m in Messages::new(payload) {
        let Ok(m) = m else { return };
        let args: Vec<_> = m
            .args()
            .collect::<Result<_, _>>()
            .expect("walked message has valid args");
        assert_eq!(args.len(), m.nb_args());
        if let Some((name, value)) = args.first() {
            let first = args.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
            assert_eq!(m.arg(name), first);
            assert_eq!(first, Some(*value));
        }
        decoded.push((m.name, args));
    }
    let mut out = Vec::new();
    let mut w = NotifyWriter::new(&mut out, 1, 1);
    for (name, args) in &decoded {
        w.message(name, args).unwrap();
    }
    let (frame, _) = spop::split_frame(&out, u32::MAX).unwrap().unwrap();
    let again: Vec<_> = Messages::new(frame.payload)
        .map(|m| {
            let m = m.unwrap();
            (m.name, m.args().collect::<Result<Vec<_>, _>>().unwrap())
        })
        .collect();
    assert_eq!(again, decoded);
});
