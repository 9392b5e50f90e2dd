//! Framing: the 4-byte length prefix, the frame header, and splitting frames off a buffer.

use super::data::Reader;
use super::error::DecodeError;
use super::varint;

/// Bytes of the big-endian length that precedes every frame (not counted in the length).
pub const LENGTH_PREFIX: usize = 4;
/// FIN: the last (here: the only) frame of a message.
pub const FLAG_FIN: u32 = 0x1;
/// ABORT: HAProxy 2.6 abandons a fragmented NOTIFY (always together with FIN).
pub const FLAG_ABORT: u32 = 0x2;
/// Smallest header: type, flags and two one-byte varints.
const FRAME_HEADER_MIN: u32 = 7;
/// Largest header: type, flags and two ten-byte varints.
pub const FRAME_HEADER_MAX: usize = 1 + 4 + varint::MAX_LEN * 2;

/// Frame types. `Unknown` keeps the byte so the caller can log and skip it, as HAProxy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// Type 0: a continuation fragment of a NOTIFY (HAProxy 2.6 only).
    Unset,
    HaproxyHello,
    HaproxyDisconnect,
    Notify,
    AgentHello,
    AgentDisconnect,
    Ack,
    Unknown(u8),
}

impl FrameType {
    pub fn from_u8(b: u8) -> Self {
        match b {
            0 => FrameType::Unset,
            1 => FrameType::HaproxyHello,
            2 => FrameType::HaproxyDisconnect,
            3 => FrameType::Notify,
            101 => FrameType::AgentHello,
            102 => FrameType::AgentDisconnect,
            103 => FrameType::Ack,
            other => FrameType::Unknown(other),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            FrameType::Unset => 0,
            FrameType::HaproxyHello => 1,
            FrameType::HaproxyDisconnect => 2,
            FrameType::Notify => 3,
            FrameType::AgentHello => 101,
            FrameType::AgentDisconnect => 102,
            FrameType::Ack => 103,
            FrameType::Unknown(b) => b,
        }
    }
}

/// The fixed part of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub frame_type: FrameType,
    pub flags: u32,
    /// Opaque, scoped to the connection; 0 is a legal NOTIFY stream-id in HAProxy 2.6.
    pub stream_id: u64,
    pub frame_id: u64,
}

impl FrameHeader {
    pub fn fin(&self) -> bool {
        self.flags & FLAG_FIN != 0
    }

    pub fn abort(&self) -> bool {
        self.flags & FLAG_ABORT != 0
    }
}

/// One frame: its header and its payload, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: FrameHeader,
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Decodes the bytes of one frame (after the length prefix). Validates only the header;
    /// payloads are decoded by their own types.
    pub fn decode(frame: &'a [u8]) -> Result<Frame<'a>, DecodeError> {
        let mut r = Reader::new(frame);
        let frame_type = FrameType::from_u8(r.u8("frame type")?);
        let flags = r.u32_be("frame flags")?;
        let stream_id = r.varint("stream-id")?;
        let frame_id = r.varint("frame-id")?;
        Ok(Frame {
            header: FrameHeader {
                frame_type,
                flags,
                stream_id,
                frame_id,
            },
            payload: r.rest(),
        })
    }
}

/// The total size (prefix included) of the frame at the start of `buf`, as soon as its 4-byte
/// length is there. The length is checked against `max_frame_size` here, before the caller
/// reserves room for the body: an oversized frame is refused without allocating for it.
pub fn peek_frame_len(buf: &[u8], max_frame_size: u32) -> Result<Option<usize>, DecodeError> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix);
    if len > max_frame_size {
        return Err(DecodeError::FrameTooBig {
            len,
            max: max_frame_size,
        });
    }
    if len < FRAME_HEADER_MIN {
        return Err(DecodeError::FrameTooSmall { len });
    }
    // u32 always fits usize on the 32- and 64-bit targets we build for; saturate otherwise.
    let total = usize::try_from(len)
        .unwrap_or(usize::MAX)
        .saturating_add(LENGTH_PREFIX);
    Ok(Some(total))
}

/// Splits the first complete frame off `buf`. `Ok(None)`: more bytes are needed. On success,
/// also returns the number of bytes the frame used (prefix included).
pub fn split_frame(
    buf: &[u8],
    max_frame_size: u32,
) -> Result<Option<(Frame<'_>, usize)>, DecodeError> {
    let Some(total) = peek_frame_len(buf, max_frame_size)? else {
        return Ok(None);
    };
    let Some(body) = buf.get(LENGTH_PREFIX..total) else {
        return Ok(None);
    };
    Ok(Some((Frame::decode(body)?, total)))
}

/// Appends a length placeholder and a frame header; returns the frame's start offset for
/// [`finish_frame`].
pub fn start_frame(
    out: &mut Vec<u8>,
    frame_type: FrameType,
    flags: u32,
    stream_id: u64,
    frame_id: u64,
) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX]);
    encode_frame_header(out, frame_type, flags, stream_id, frame_id);
    start
}

/// Appends `<type><flags><stream-id><frame-id>`.
pub fn encode_frame_header(
    out: &mut Vec<u8>,
    frame_type: FrameType,
    flags: u32,
    stream_id: u64,
    frame_id: u64,
) {
    out.push(frame_type.code());
    out.extend_from_slice(&flags.to_be_bytes());
    varint::encode(stream_id, out);
    varint::encode(frame_id, out);
}

/// Writes the length of the frame started at `start` (everything appended since, minus the
/// prefix). Frames built by this module are bounded by a `u32` max-frame-size.
pub fn finish_frame(out: &mut [u8], start: usize) {
    let len = out
        .len()
        .saturating_sub(start)
        .saturating_sub(LENGTH_PREFIX);
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    if let Some(prefix) = out.get_mut(start..start + LENGTH_PREFIX) {
        prefix.copy_from_slice(&len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_one_frame_and_leaves_the_rest() {
        // NOTIFY sid=8 fid=1 with an empty payload, followed by the start of another frame.
        let buf = [0, 0, 0, 7, 3, 0, 0, 0, 1, 8, 1, 0, 0];
        let (frame, used) = split_frame(&buf, 16380).unwrap().unwrap();
        assert_eq!(used, 11);
        assert_eq!(frame.header.frame_type, FrameType::Notify);
        assert!(frame.header.fin());
        assert_eq!((frame.header.stream_id, frame.header.frame_id), (8, 1));
        assert!(frame.payload.is_empty());
        assert_eq!(split_frame(&buf[used..], 16380), Ok(None));
    }

    #[test]
    fn incomplete_frames_need_more_bytes() {
        let buf = [0, 0, 0, 9, 3, 0, 0, 0, 1, 8, 1, 0xaa, 0xbb];
        for end in 0..buf.len() {
            assert_eq!(split_frame(&buf[..end], 16380), Ok(None), "{end}");
        }
        assert!(split_frame(&buf, 16380).unwrap().is_some());
    }

    #[test]
    fn length_is_checked_before_the_body_arrives() {
        // Only the prefix: 16381 > 16380 is refused at once.
        assert_eq!(
            peek_frame_len(&[0, 0, 0x3f, 0xfd], 16380),
            Err(DecodeError::FrameTooBig {
                len: 16381,
                max: 16380
            })
        );
        assert_eq!(peek_frame_len(&[0, 0, 0x3f, 0xfc], 16380), Ok(Some(16384)));
        assert_eq!(
            peek_frame_len(&[0, 0, 0, 6], 16380),
            Err(DecodeError::FrameTooSmall { len: 6 })
        );
    }

    #[test]
    fn header_errors() {
        // Stream-id varint running past the frame end.
        let buf = [0, 0, 0, 7, 3, 0, 0, 0, 1, 0xf0, 0x00];
        assert_eq!(
            split_frame(&buf, 256),
            Err(DecodeError::Truncated { what: "frame-id" })
        );
        // Overlong stream-id.
        let mut buf = vec![0, 0, 0, 17, 3, 0, 0, 0, 1];
        buf.extend_from_slice(&[0xff; 12]);
        assert_eq!(
            split_frame(&buf, 256),
            Err(DecodeError::OverlongVarint { what: "stream-id" })
        );
    }

    #[test]
    fn built_frames_split_back() {
        let mut out = vec![0xee]; // unrelated bytes before the frame
        let start = start_frame(&mut out, FrameType::Ack, FLAG_FIN, 300, u64::MAX);
        out.extend_from_slice(b"payload");
        finish_frame(&mut out, start);
        let (frame, used) = split_frame(&out[1..], 1 << 20).unwrap().unwrap();
        assert_eq!(used, out.len() - 1);
        assert_eq!(frame.header.frame_type, FrameType::Ack);
        assert_eq!(
            (frame.header.stream_id, frame.header.frame_id),
            (300, u64::MAX)
        );
        assert_eq!(frame.payload, b"payload");
    }

    #[test]
    fn frame_types_round_trip() {
        for b in 0..=u8::MAX {
            assert_eq!(FrameType::from_u8(b).code(), b);
        }
    }
}
