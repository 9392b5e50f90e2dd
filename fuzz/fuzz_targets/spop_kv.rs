//! Fuzzes KV-list payloads: `KvList`, `HaproxyHello::decode`, `AgentHello::decode` and
//! `Disconnect::decode` (the HELLO / DISCONNECT decoders), which include typed-data decoding.
//!
//! Invariant: never panics. A KV list yields items until the payload ends or one error, then
//! stops; a decoded HAPROXY-HELLO always offers version 2.0 and a max-frame-size >= 256; a
//! HELLO or DISCONNECT re-encoded with our encoders decodes back to the same values.
#![no_main]

use coraza_spoa::spop::{self, AgentHello, Disconnect, HaproxyHello, KvList};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let mut failed = false;
    for item in KvList::new(payload) {
        assert!(!failed, "KvList yielded after an error");
        if let Ok((key, value)) = item {
            assert!(!key.is_empty());
            let mut out = Vec::new();
            value.encode(&mut out);
            assert_eq!(out.len(), value.encoded_len());
        } else {
            failed = true;
        }
    }
    if let Ok(h) = HaproxyHello::decode(payload) {
        assert!(h.max_frame_size >= spop::MIN_FRAME_SIZE);
        let mut out = Vec::new();
        spop::encode_haproxy_hello(
            &mut out,
            h.max_frame_size,
            h.capabilities,
            h.engine_id,
            h.healthcheck,
        );
        let (frame, _) = spop::split_frame(&out, u32::MAX).unwrap().unwrap();
        let again = HaproxyHello::decode(frame.payload).unwrap();
        assert_eq!(
            (
                again.max_frame_size,
                again.capabilities,
                again.engine_id,
                again.healthcheck
            ),
            (h.max_frame_size, h.capabilities, h.engine_id, h.healthcheck)
        );
    }
    if let Ok(h) = AgentHello::decode(payload) {
        assert!(h.max_frame_size >= spop::MIN_FRAME_SIZE);
    }
    if let Ok(d) = Disconnect::decode(payload) {
        let mut out = Vec::new();
        spop::encode_agent_disconnect(&mut out, d.status(), d.message);
        let (frame, _) = spop::split_frame(&out, u32::MAX).unwrap().unwrap();
        let again = Disconnect::decode(frame.payload).unwrap();
        assert_eq!(again.status(), d.status());
        assert!(again.message.len() <= spop::DISCONNECT_MESSAGE_MAX);
    }
});
