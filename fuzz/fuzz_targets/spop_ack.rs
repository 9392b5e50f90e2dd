//! Fuzzes ACK payloads (`AckActions`) and the `AckWriter` that builds them.
//!
//! Invariant: never panics. Re-writing the decoded actions with an `AckWriter` limited to a
//! fuzzer-chosen max-frame-size never produces a frame above that limit; every action it
//! accepts decodes back identically; an action it refuses leaves the frame unchanged.
#![no_main]

use coraza_spoa::spop::{self, AckActions, AckWriter, Action};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let limit = 256 + u32::from(pick) * 4;
    let mut out = Vec::new();
    let mut ack = AckWriter::new(&mut out, 3, 1, limit);
    let mut accepted = Vec::new();
    for action in AckActions::new(payload) {
        let Ok(action) = action else { break };
        let before = ack.frame().to_vec();
        let result = match action {
            Action::SetVar { scope, name, value } => ack.set_var(scope, name, value),
            Action::UnsetVar { scope, name } => ack.unset_var(scope, name),
        };
        match result {
            Ok(()) => accepted.push(action),
            Err(_) => assert_eq!(ack.frame(), &before[..]),
        }
        assert!(ack.frame_len() <= limit as usize);
    }
    let (frame, used) = spop::split_frame(&out, limit).unwrap().unwrap();
    assert_eq!(used, out.len());
    let again: Vec<_> = AckActions::new(frame.payload)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(again, accepted);
});
