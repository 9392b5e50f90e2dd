//! Fuzzes the sans-IO connection state machine (`server::connection::Connection`) with
//! arbitrary bytes delivered in arbitrary pieces, half the time after a valid HAPROXY-HELLO so
//! NOTIFY handling is reached.
//!
//! Invariant: never panics; never consumes more than it was given; everything it writes is a
//! sequence of complete frames with FIN set, each within the negotiated max-frame-size, of the
//! agent's types only (AGENT-HELLO, ACK, AGENT-DISCONNECT); nothing follows an AGENT-DISCONNECT;
//! once it says `Close`, it stays closed and writes nothing more.
#![no_main]

use coraza_spoa::inspect::{InspectError, Inspector};
use coraza_spoa::server::connection::{Connection, Next, Phase};
use coraza_spoa::spop::{self, AckWriter, FrameType, Message, TypedData, VarScope};
use libfuzzer_sys::fuzz_target;

/// Echoes every string argument back as a variable of the same name (so message contents steer
/// the ACK size and the name checks), and fails on messages named "fail".
struct Echo;

impl Inspector for Echo {
    type Worker = ();
    fn new_worker(&self, _: usize) {}
    fn inspect(
        &self,
        _: &mut (),
        m: &Message<'_>,
        ack: &mut AckWriter<'_>,
    ) -> Result<(), InspectError> {
        for (name, value) in m.args().flatten() {
            if let TypedData::String(_) | TypedData::Binary(_) = value {
                let _ = ack.set_var(VarScope::Transaction, name, value);
            }
        }
        if m.name == b"fail" {
            return Err(InspectError::new("fuzz"));
        }
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let limit = 256 + u32::from(control & 0x3f) * 256;
    let mut input = Vec::new();
    if control & 0x80 != 0 {
        spop::encode_haproxy_hello(&mut input, limit, b"pipelining", None, false);
    }
    input.extend_from_slice(rest);
    let chunk = usize::from(control & 0x0f) * 7 + 1;

    let peer = "127.0.0.1:1".parse().unwrap();
    let mut conn = Connection::new(1 << 20, peer);
    let mut out = Vec::new();
    let mut buffered = Vec::new();
    let mut closed = false;
    for piece in input.chunks(chunk) {
        buffered.extend_from_slice(piece);
        loop {
            let before = out.len();
            let p = conn.process(&buffered, &mut out, &Echo, &mut ());
            assert!(p.consumed <= buffered.len());
            if closed {
                assert_eq!(out.len(), before, "output after Close");
            }
            buffered.drain(..p.consumed);
            match p.next {
                Next::Close => {
                    assert_eq!(conn.phase(), Phase::Closed);
                    closed = true;
                    break;
                }
                Next::Flush => continue,
                Next::Continue => break,
            }
        }
    }
    let frame_limit = conn.frame_limit().max(limit);
    let mut rest = &out[..];
    let mut disconnected = false;
    while !rest.is_empty() {
        assert!(!disconnected, "frame after AGENT-DISCONNECT");
        let (frame, used) = spop::split_frame(rest, frame_limit)
            .unwrap()
            .expect("complete frame");
        assert!(frame.header.fin());
        match frame.header.frame_type {
            FrameType::AgentHello | FrameType::Ack => {}
            FrameType::AgentDisconnect => disconnected = true,
            other => panic!("agent wrote frame type {other:?}"),
        }
        rest = &rest[used..];
    }
});
