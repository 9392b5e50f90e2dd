//! HELLO and DISCONNECT payloads (KV lists), both directions.
//!
//! We decode what HAProxy sends (HAPROXY-HELLO, HAPROXY-DISCONNECT) and encode what we send
//! (AGENT-HELLO, AGENT-DISCONNECT). The opposite directions exist for the `healthcheck`
//! subcommand (which plays HAProxy's `option spop-check`), for tests, and for the benchmark.

use super::data::{encode_name, KvList, TypedData};
use super::error::{DecodeError, DisconnectStatus};
use super::frame::{finish_frame, start_frame, FrameType, FLAG_FIN};
use super::{MIN_FRAME_SIZE, VERSION};

/// HAProxy 2.6 rejects a DISCONNECT whose message is longer than this.
pub const DISCONNECT_MESSAGE_MAX: usize = 255;

/// HAPROXY-HELLO: the first frame of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaproxyHello<'a> {
    /// Comma-separated list, e.g. `2.0`. Decoding guarantees it contains 2.0.
    pub supported_versions: &'a [u8],
    /// HAProxy's limit (`tune.bufsize - 4` by default): the value we echo.
    pub max_frame_size: u32,
    /// Comma-separated, e.g. `pipelining,async`; empty in health checks.
    pub capabilities: &'a [u8],
    /// One UUID per HAProxy thread in 2.6; absent in health checks.
    pub engine_id: Option<&'a [u8]>,
    /// Sent (as true) only by `option spop-check`: answer, then close.
    pub healthcheck: bool,
}

impl<'a> HaproxyHello<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut versions = None;
        let mut max_frame_size = None;
        let mut capabilities: &[u8] = b"";
        let mut engine_id = None;
        let mut healthcheck = false;
        for item in KvList::new(payload) {
            let (key, value) = item?;
            match key {
                b"supported-versions" => versions = Some(string(value, "supported-versions")?),
                b"max-frame-size" => max_frame_size = Some(frame_size(value)?),
                b"capabilities" => capabilities = string(value, "capabilities")?,
                b"engine-id" => engine_id = Some(string(value, "engine-id")?),
                b"healthcheck" => {
                    healthcheck = value.as_bool().ok_or(DecodeError::WrongType {
                        what: "healthcheck",
                        type_byte: value.type_byte(),
                    })?
                }
                // Later protocol revisions may add keys: skip them, as HAProxy does.
                _ => {}
            }
        }
        let supported_versions = versions.ok_or(DecodeError::MissingVersion)?;
        if !split_list(supported_versions).any(is_version_2_0) {
            return Err(DecodeError::UnsupportedVersion);
        }
        let max_frame_size = max_frame_size.ok_or(DecodeError::MissingMaxFrameSize)?;
        Ok(HaproxyHello {
            supported_versions,
            max_frame_size,
            capabilities,
            engine_id,
            healthcheck,
        })
    }

    pub fn has_capability(&self, name: &[u8]) -> bool {
        split_list(self.capabilities).any(|c| c == name)
    }
}

/// AGENT-HELLO, as HAProxy validates it (version 2.0, max-frame-size >= 256).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentHello<'a> {
    pub version: &'a [u8],
    pub max_frame_size: u32,
    pub capabilities: &'a [u8],
}

impl<'a> AgentHello<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut version = None;
        let mut max_frame_size = None;
        let mut capabilities: &[u8] = b"";
        for item in KvList::new(payload) {
            let (key, value) = item?;
            match key {
                b"version" => version = Some(string(value, "version")?),
                b"max-frame-size" => max_frame_size = Some(frame_size(value)?),
                b"capabilities" => capabilities = string(value, "capabilities")?,
                _ => {}
            }
        }
        let version = version.ok_or(DecodeError::MissingVersion)?;
        if !is_version_2_0(version) {
            return Err(DecodeError::UnsupportedVersion);
        }
        let max_frame_size = max_frame_size.ok_or(DecodeError::MissingMaxFrameSize)?;
        Ok(AgentHello {
            version,
            max_frame_size,
            capabilities,
        })
    }
}

/// A DISCONNECT payload (either direction). Decoding is lenient because the connection ends
/// anyway: a missing status reads as 99 (unknown), a missing message as empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect<'a> {
    pub status_code: u32,
    pub message: &'a [u8],
}

impl<'a> Disconnect<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut status_code = DisconnectStatus::Unknown.code();
        let mut message: &[u8] = b"";
        for item in KvList::new(payload) {
            let (key, value) = item?;
            match key {
                b"status-code" => {
                    let raw = value.as_i64().ok_or(DecodeError::WrongType {
                        what: "status-code",
                        type_byte: value.type_byte(),
                    })?;
                    status_code =
                        u32::try_from(raw).map_err(|_| DecodeError::IntegerOutOfRange {
                            what: "status-code",
                            value: raw as u64,
                        })?;
                }
                b"message" => message = string(value, "message")?,
                _ => {}
            }
        }
        Ok(Disconnect {
            status_code,
            message,
        })
    }

    pub fn status(&self) -> DisconnectStatus {
        DisconnectStatus::from_code(u64::from(self.status_code))
    }
}

/// Appends an AGENT-HELLO: version 2.0, `max_frame_size` (UINT32), `capabilities`.
pub fn encode_agent_hello(out: &mut Vec<u8>, max_frame_size: u32, capabilities: &[u8]) {
    let start = start_frame(out, FrameType::AgentHello, FLAG_FIN, 0, 0);
    kv(out, b"version", TypedData::String(VERSION.as_bytes()));
    kv(out, b"max-frame-size", TypedData::Uint32(max_frame_size));
    kv(out, b"capabilities", TypedData::String(capabilities));
    finish_frame(out, start);
}

/// Appends an AGENT-DISCONNECT; `message` is cut to [`DISCONNECT_MESSAGE_MAX`] bytes.
pub fn encode_agent_disconnect(out: &mut Vec<u8>, status: DisconnectStatus, message: &[u8]) {
    encode_disconnect(out, FrameType::AgentDisconnect, status, message);
}

/// Appends a HAPROXY-DISCONNECT (tests and tools).
pub fn encode_haproxy_disconnect(out: &mut Vec<u8>, status: DisconnectStatus, message: &[u8]) {
    encode_disconnect(out, FrameType::HaproxyDisconnect, status, message);
}

/// Appends a HAPROXY-HELLO as HAProxy 2.6 builds it: `supported-versions`, `max-frame-size`,
/// `capabilities`, then `engine-id` if given and `healthcheck` (true) if asked. With
/// `(16380, b"", None, true)` this is byte for byte the `option spop-check` request.
pub fn encode_haproxy_hello(
    out: &mut Vec<u8>,
    max_frame_size: u32,
    capabilities: &[u8],
    engine_id: Option<&[u8]>,
    healthcheck: bool,
) {
    let start = start_frame(out, FrameType::HaproxyHello, FLAG_FIN, 0, 0);
    kv(
        out,
        b"supported-versions",
        TypedData::String(VERSION.as_bytes()),
    );
    kv(out, b"max-frame-size", TypedData::Uint32(max_frame_size));
    kv(out, b"capabilities", TypedData::String(capabilities));
    if let Some(id) = engine_id {
        kv(out, b"engine-id", TypedData::String(id));
    }
    if healthcheck {
        kv(out, b"healthcheck", TypedData::Bool(true));
    }
    finish_frame(out, start);
}

fn encode_disconnect(
    out: &mut Vec<u8>,
    frame_type: FrameType,
    status: DisconnectStatus,
    message: &[u8],
) {
    let message = message.get(..DISCONNECT_MESSAGE_MAX).unwrap_or(message);
    let start = start_frame(out, frame_type, FLAG_FIN, 0, 0);
    kv(out, b"status-code", TypedData::Uint32(status.code()));
    kv(out, b"message", TypedData::String(message));
    finish_frame(out, start);
}

fn kv(out: &mut Vec<u8>, key: &[u8], value: TypedData<'_>) {
    encode_name(key, out);
    value.encode(out);
}

fn string<'a>(value: TypedData<'a>, what: &'static str) -> Result<&'a [u8], DecodeError> {
    match value {
        TypedData::String(s) => Ok(s),
        other => Err(DecodeError::WrongType {
            what,
            type_byte: other.type_byte(),
        }),
    }
}

/// max-frame-size accepts any integer type, as HAProxy does, and must be in [256, u32::MAX].
fn frame_size(value: TypedData<'_>) -> Result<u32, DecodeError> {
    let raw = match value {
        TypedData::Int32(v) => i64::from(v) as u64,
        TypedData::Uint32(v) => u64::from(v),
        TypedData::Int64(v) => v as u64,
        TypedData::Uint64(v) => v,
        other => {
            return Err(DecodeError::WrongType {
                what: "max-frame-size",
                type_byte: other.type_byte(),
            })
        }
    };
    match u32::try_from(raw) {
        Ok(v) if v >= MIN_FRAME_SIZE => Ok(v),
        _ => Err(DecodeError::BadMaxFrameSize { value: raw }),
    }
}

/// Items of a comma-separated list, surrounding ASCII whitespace removed, empty items skipped.
fn split_list(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

/// "Major.Minor" equal to 2.0, with surrounding spaces allowed (HAProxy's reading).
fn is_version_2_0(token: &[u8]) -> bool {
    let token = token.trim_ascii();
    let Some(dot) = token.iter().position(|&b| b == b'.') else {
        return false;
    };
    let (major, rest) = token.split_at(dot);
    let minor = rest.get(1..).unwrap_or(&[]);
    // Nine digits cannot overflow a u32.
    let number = |s: &[u8]| -> Option<u32> {
        if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            s.iter()
                .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0')),
        )
    };
    matches!((number(major), number(minor)), (Some(2), Some(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spop::frame::split_frame;

    #[test]
    fn versions() {
        for (token, ok) in [
            (&b"2.0"[..], true),
            (b" 2.0 ", true),
            (b"02.00", true),
            (b"2.5", false),
            (b"1.0", false),
            (b"3.0", false),
            (b"20.0", false),
            (b"2", false),
            (b"2.", false),
            (b".0", false),
            (b"", false),
        ] {
            assert_eq!(
                is_version_2_0(token),
                ok,
                "{:?}",
                String::from_utf8_lossy(token)
            );
        }
    }

    fn hello_payload(pairs: &[(&[u8], TypedData<'_>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in pairs {
            kv(&mut out, k, *v);
        }
        out
    }

    #[test]
    fn haproxy_hello_validation() {
        let v = TypedData::String(b"2.0");
        let mfs = TypedData::Uint32(16380);
        type Pairs<'a> = &'a [(&'a [u8], TypedData<'a>)];
        let table: &[(Pairs<'_>, Result<u32, DecodeError>)] = &[
            (
                &[(b"supported-versions", v), (b"max-frame-size", mfs)],
                Ok(16380),
            ),
            (
                &[
                    (b"supported-versions", TypedData::String(b"1.0, 2.0")),
                    (b"max-frame-size", mfs),
                ],
                Ok(16380),
            ),
            (
                &[
                    (b"supported-versions", v),
                    (b"max-frame-size", TypedData::Int64(65532)),
                ],
                Ok(65532),
            ),
            (
                &[(b"max-frame-size", mfs)],
                Err(DecodeError::MissingVersion),
            ),
            (
                &[(b"supported-versions", v)],
                Err(DecodeError::MissingMaxFrameSize),
            ),
            (
                &[
                    (b"supported-versions", TypedData::String(b"1.0")),
                    (b"max-frame-size", mfs),
                ],
                Err(DecodeError::UnsupportedVersion),
            ),
            (
                &[
                    (b"supported-versions", v),
                    (b"max-frame-size", TypedData::Uint32(100)),
                ],
                Err(DecodeError::BadMaxFrameSize { value: 100 }),
            ),
            (
                &[
                    (b"supported-versions", v),
                    (b"max-frame-size", TypedData::Int64(-1)),
                ],
                Err(DecodeError::BadMaxFrameSize { value: u64::MAX }),
            ),
            (
                &[
                    (b"supported-versions", TypedData::Int64(2)),
                    (b"max-frame-size", mfs),
                ],
                Err(DecodeError::WrongType {
                    what: "supported-versions",
                    type_byte: 4,
                }),
            ),
            (
                &[
                    (b"supported-versions", v),
                    (b"max-frame-size", TypedData::String(b"16380")),
                ],
                Err(DecodeError::WrongType {
                    what: "max-frame-size",
                    type_byte: 8,
                }),
            ),
        ];
        for (pairs, expected) in table {
            let payload = hello_payload(pairs);
            let got = HaproxyHello::decode(&payload).map(|h| h.max_frame_size);
            assert_eq!(&got, expected, "{pairs:?}");
        }
    }

    #[test]
    fn agent_hello_round_trip() {
        let mut out = Vec::new();
        encode_agent_hello(&mut out, 16380, b"pipelining");
        let (frame, used) = split_frame(&out, 16380).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(frame.header.frame_type, FrameType::AgentHello);
        let hello = AgentHello::decode(frame.payload).unwrap();
        assert_eq!(
            hello,
            AgentHello {
                version: b"2.0",
                max_frame_size: 16380,
                capabilities: b"pipelining"
            }
        );
    }

    #[test]
    fn disconnect_message_is_capped() {
        let mut out = Vec::new();
        encode_agent_disconnect(&mut out, DisconnectStatus::Invalid, &[b'x'; 300]);
        let (frame, _) = split_frame(&out, 1024).unwrap().unwrap();
        let d = Disconnect::decode(frame.payload).unwrap();
        assert_eq!(d.status(), DisconnectStatus::Invalid);
        assert_eq!(d.message.len(), DISCONNECT_MESSAGE_MAX);
    }
}
