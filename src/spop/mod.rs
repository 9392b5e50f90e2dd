//! SPOP v2.0 (HAProxy Stream Processing Offload Protocol), agent side: a pure codec.
//!
//! Owns the wire format: the length-prefixed frame and its header, the additive "peers"
//! varint, typed data, KV lists, the HELLO / DISCONNECT / NOTIFY / ACK payloads, and the table of
//! DISCONNECT status codes. Everything that decodes borrows from the caller's buffer (a STRING or
//! BINARY value is a `&[u8]` into the frame, never assumed to be UTF-8); everything that encodes
//! appends to a caller-owned `Vec<u8>` that the caller reuses.
//!
//! Must not: perform I/O, allocate per decoded value, panic on any input, or decide what a
//! connection does next (that is [`crate::server`]'s state machine). The only policy here is the
//! mapping of a [`DecodeError`] to the DISCONNECT status it deserves
//! ([`DecodeError::disconnect_status`]), kept in exactly one place.
//!
//! Wire facts this module relies on (see `docs/spop.md` in the shared material):
//! - `FRAME = <len: u32 BE> <type: u8> <flags: u32 BE> <stream-id: varint> <frame-id: varint>
//!   <payload>`; `len` excludes its own 4 bytes and is bounded by the negotiated max-frame-size.
//! - Varints are additive (`f0 00` is 240), at most 10 bytes for a `u64`.
//! - Typed data: low nibble = type, high nibble = flags (only BOOL uses a flag: `0x10` = true).
//! - HAProxy builds the full variable name `"<scope>.<prefix>.<name>"` in a 64-byte buffer, so a
//!   name that would not fit is silently dropped by HAProxy; [`AckWriter`] refuses it instead.

mod ack;
mod data;
mod error;
mod frame;
mod hello;
mod notify;
pub mod varint;

pub use ack::{AckActions, AckWriter, Action, VarScope, VAR_NAME_MAX, VAR_PREFIX};
pub use data::{KvList, TypedData};
pub use error::{DecodeError, DisconnectStatus, EncodeError};
pub use frame::{
    encode_frame_header, finish_frame, peek_frame_len, split_frame, start_frame, Frame,
    FrameHeader, FrameType, FLAG_ABORT, FLAG_FIN, FRAME_HEADER_MAX, LENGTH_PREFIX,
};
pub use hello::{
    encode_agent_disconnect, encode_agent_hello, encode_haproxy_disconnect, encode_haproxy_hello,
    AgentHello, Disconnect, HaproxyHello, DISCONNECT_MESSAGE_MAX,
};
pub use notify::{Args, Message, Messages, NotifyWriter};

/// The only protocol version HAProxy 2.6 to 3.4 speak.
pub const VERSION: &str = "2.0";

/// The smallest max-frame-size either side may announce.
pub const MIN_FRAME_SIZE: u32 = 256;

/// The capabilities this agent announces: pipelining only. Not `async` (removed in HAProxy 3.1,
/// never needed: ACKs go back on the connection that carried the NOTIFY) and never
/// `fragmentation` (announcing it invites HAProxy 2.6 to split NOTIFYs; not announcing it with
/// `no option send-frag-payload` makes an oversized payload fail fast instead).
pub const AGENT_CAPABILITIES: &[u8] = b"pipelining";
