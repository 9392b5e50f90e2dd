//! Fuzzes framing: `spop::peek_frame_len`, `spop::split_frame` and `Frame::decode`.
//!
//! Invariant: never panics. A frame split off the buffer used exactly its 4-byte length plus
//! the declared length, which is within `[7, max_frame_size]`; re-encoding its header and
//! appending its payload reproduces those bytes exactly. When the length prefix exceeds the
//! limit, `FrameTooBig` is reported from the first 4 bytes alone (before any body arrives).
#![no_main]

use coraza_spoa::spop::{self, DecodeError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limit so both small and huge limits are explored.
    let Some((&pick, buf)) = data.split_first() else {
        return;
    };
    let max = [256u32, 16380, 65532, 1 << 20, u32::MAX][usize::from(pick) % 5];
    let peeked = spop::peek_frame_len(buf, max);
    if let Some(prefix) = buf.get(..4) {
        let declared = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if declared > max {
            assert_eq!(
                spop::peek_frame_len(prefix, max),
                Err(DecodeError::FrameTooBig { len: declared, max })
            );
        }
    }
    match spop::split_frame(buf, max) {
        Ok(Some((frame, used))) => {
            assert_eq!(peeked, Ok(Some(used)));
            assert!(used <= buf.len() && used >= 4 + 7 && used - 4 <= max as usize);
            let mut rebuilt = Vec::new();
            let h = frame.header;
            let start =
                spop::start_frame(&mut rebuilt, h.frame_type, h.flags, h.stream_id, h.frame_id);
            rebuilt.extend_from_slice(frame.payload);
            spop::finish_frame(&mut rebuilt, start);
            assert_eq!(&rebuilt[..], &buf[..used]);
        }
        Ok(None) => {
            assert!(matches!(peeked, Ok(None)) || matches!(peeked, Ok(Some(n)) if n > buf.len()))
        }
        Err(_) => {}
    }
});
