//! The capture file: what HAProxy sent, and what the agent answered, one NOTIFY per line.
//!
//! JSON Lines, so a capture diffs and greps like text:
//! - line 1, the header: `{"format": "coraza-spoa-capture", "version": 1, "hello_b64": ...,
//!   "meta": {...}}`. `hello_b64` is the first HAPROXY-HELLO of a real (not health-check) SPOE
//!   connection, length prefix included; the replay sends it on each of its connections.
//!   `meta` says where the capture comes from (corpus, HAProxy version, how HAProxy spread the
//!   frames over connections): informative only.
//! - then one line per NOTIFY, in the order the proxy saw them: `{"conn": n, "t_us": µs since
//!   the first NOTIFY, "notify_b64": the frame as on the wire, "verdict": string or null}`.
//!
//! A verdict is the ACK's actions in order, rendered as `name=value` joined by `;` (string
//! values escaped like Rust's `escape_ascii`), leaving out `id` (a fresh unique id per
//! transaction). `null` means the agent never answered that NOTIFY. Replaying a capture
//! against the agent that produced it must give the same verdicts: that is how a replay checks
//! that every request was really evaluated.
//!
//! Owns: reading (with validation), writing, verdicts, and re-encoding a frame with another
//! stream-id. Must not: touch sockets.

use std::path::Path;

use coraza_spoa::spop::{self, AckActions, Action, Frame, FrameType, HaproxyHello, VarScope};
use serde_json::{json, Value};

use crate::harness::error::{io, Error, Result};

pub const FORMAT: &str = "coraza-spoa-capture";
pub const VERSION: u64 = 1;

/// Frames larger than this are refused when reading (HAProxy's own ceiling is `tune.bufsize`,
/// 16 KiB by default; 1 MiB leaves room for tuned setups).
const MAX_FRAME: u32 = 1 << 20;

/// One recorded NOTIFY.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedFrame {
    /// Index of the SPOE connection that carried it (health checks not counted).
    pub conn: u32,
    /// Microseconds since the first NOTIFY of the capture.
    pub t_us: u64,
    /// The frame as on the wire, length prefix included.
    pub wire: Vec<u8>,
    /// The verdict of its ACK; `None` when the agent never answered.
    pub verdict: Option<String>,
}

/// A whole capture.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    /// The HAPROXY-HELLO, length prefix included.
    pub hello: Vec<u8>,
    pub meta: Value,
    pub frames: Vec<CapturedFrame>,
}

impl Capture {
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        let header = json!({
            "format": FORMAT,
            "version": VERSION,
            "hello_b64": b64encode(&self.hello),
            "meta": self.meta,
        });
        out.push_str(&header.to_string());
        out.push('\n');
        for f in &self.frames {
            let line = json!({
                "conn": f.conn,
                "t_us": f.t_us,
                "notify_b64": b64encode(&f.wire),
                "verdict": f.verdict,
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        }
        std::fs::write(path, self.to_jsonl()).map_err(io(format!("write {}", path.display())))
    }

    pub fn read(path: &Path) -> Result<Capture> {
        let text = std::fs::read_to_string(path).map_err(io(format!("read {}", path.display())))?;
        Capture::parse(&text).map_err(|e| match e {
            Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses and validates: the HELLO must be a HAPROXY-HELLO that is not a health check, and
    /// every line must hold exactly one complete NOTIFY frame with FIN set.
    pub fn parse(text: &str) -> Result<Capture> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, first) = lines
            .next()
            .ok_or_else(|| Error::Format("empty capture".into()))?;
        let header: Value = serde_json::from_str(first)
            .map_err(|e| Error::Format(format!("line 1: invalid JSON: {e}")))?;
        if header.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(Error::Format(format!("line 1: not a {FORMAT} file")));
        }
        let version = header.get("version").and_then(Value::as_u64);
        if version != Some(VERSION) {
            return Err(Error::Format(format!(
                "line 1: version {version:?}, this harness reads {VERSION}"
            )));
        }
        let hello =
            b64field(&header, "hello_b64").map_err(|m| Error::Format(format!("line 1: {m}")))?;
        check_hello(&hello).map_err(|m| Error::Format(format!("line 1: {m}")))?;
        let meta = header.get("meta").cloned().unwrap_or(Value::Null);
        let mut frames = Vec::new();
        for (i, line) in lines {
            let at = |m: String| Error::Format(format!("line {}: {m}", i + 1));
            let v: Value =
                serde_json::from_str(line).map_err(|e| at(format!("invalid JSON: {e}")))?;
            let wire = b64field(&v, "notify_b64").map_err(at)?;
            check_notify(&wire).map_err(at)?;
            let conn = v
                .get("conn")
                .and_then(Value::as_u64)
                .and_then(|c| u32::try_from(c).ok())
                .ok_or_else(|| at("missing \"conn\"".into()))?;
            let t_us = v.get("t_us").and_then(Value::as_u64).unwrap_or(0);
            let verdict = match v.get("verdict") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(at("\"verdict\" is not a string".into())),
            };
            frames.push(CapturedFrame {
                conn,
                t_us,
                wire,
                verdict,
            });
        }
        if frames.is_empty() {
            return Err(Error::Format("no NOTIFY frames".into()));
        }
        Ok(Capture {
            hello,
            meta,
            frames,
        })
    }

    /// The frames, ready to be re-sent with new stream-ids.
    pub fn replay_frames(&self) -> Vec<ReplayFrame> {
        self.frames
            .iter()
            .filter_map(|f| ReplayFrame::new(&f.wire, f.verdict.clone()))
            .collect()
    }
}

fn b64field(v: &Value, name: &str) -> std::result::Result<Vec<u8>, String> {
    let s = v
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing \"{name}\""))?;
    coraza_spoa::check::base64(s).map_err(|e| format!("{name}: {e}"))
}

/// The single frame in `wire` (length prefix included), which must fill it exactly.
fn single_frame(wire: &[u8]) -> std::result::Result<Frame<'_>, String> {
    match spop::split_frame(wire, MAX_FRAME) {
        Ok(Some((frame, used))) if used == wire.len() => Ok(frame),
        Ok(Some(_)) => Err("bytes after the frame".into()),
        Ok(None) => Err("truncated frame".into()),
        Err(e) => Err(format!("frame: {e}")),
    }
}

fn check_hello(wire: &[u8]) -> std::result::Result<(), String> {
    let frame = single_frame(wire)?;
    if frame.header.frame_type != FrameType::HaproxyHello {
        return Err(format!("hello is a {:?} frame", frame.header.frame_type));
    }
    let hello = HaproxyHello::decode(frame.payload).map_err(|e| format!("hello: {e}"))?;
    if hello.healthcheck {
        return Err("hello is a health check".into());
    }
    Ok(())
}

fn check_notify(wire: &[u8]) -> std::result::Result<(), String> {
    let frame = single_frame(wire)?;
    if frame.header.frame_type != FrameType::Notify {
        return Err(format!(
            "a {:?} frame, not a NOTIFY",
            frame.header.frame_type
        ));
    }
    if !frame.header.fin() {
        return Err("a NOTIFY fragment (FIN not set)".into());
    }
    Ok(())
}

/// The verdict an ACK payload carries (see the module doc), or why it cannot be read.
pub fn verdict_of_ack(payload: &[u8]) -> std::result::Result<String, String> {
    let mut out = String::new();
    for action in AckActions::new(payload) {
        let action = action.map_err(|e| format!("ACK actions: {e}"))?;
        let (scope, name, value) = match action {
            Action::SetVar { scope, name, value } => (scope, name, Some(value)),
            Action::UnsetVar { scope, name } => (scope, name, None),
        };
        if scope == VarScope::Transaction && name == b"id" {
            continue;
        }
        if !out.is_empty() {
            out.push(';');
        }
        if scope != VarScope::Transaction {
            out.push_str(scope.prefix());
            out.push('.');
        }
        out.push_str(&name.escape_ascii().to_string());
        match value {
            None => out.push_str("!unset"),
            Some(v) => {
                out.push('=');
                out.push_str(&render(v));
            }
        }
    }
    Ok(out)
}

fn render(v: spop::TypedData<'_>) -> String {
    use spop::TypedData as T;
    match v {
        T::Null => "null".into(),
        T::Bool(b) => b.to_string(),
        T::Int32(i) => i.to_string(),
        T::Uint32(i) => i.to_string(),
        T::Int64(i) => i.to_string(),
        T::Uint64(i) => i.to_string(),
        T::Ipv4(a) => a.to_string(),
        T::Ipv6(a) => a.to_string(),
        T::String(b) | T::Binary(b) => b.escape_ascii().to_string(),
    }
}

/// A NOTIFY split for re-encoding: the replay gives every frame it sends a fresh stream-id so
/// that ACKs match one request unambiguously however often the capture loops.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayFrame {
    pub flags: u32,
    pub frame_id: u64,
    pub payload: Vec<u8>,
    pub expected: Option<String>,
    /// Length of the original frame on the wire (prefix included).
    pub wire_len: usize,
}

impl ReplayFrame {
    /// `None` unless `wire` is exactly one NOTIFY frame.
    pub fn new(wire: &[u8], expected: Option<String>) -> Option<ReplayFrame> {
        let frame = single_frame(wire).ok()?;
        (frame.header.frame_type == FrameType::Notify).then(|| ReplayFrame {
            flags: frame.header.flags,
            frame_id: frame.header.frame_id,
            payload: frame.payload.to_vec(),
            expected,
            wire_len: wire.len(),
        })
    }

    /// `METHOD path?query (N body bytes)` of the first message, shortened: to name a request in
    /// reports.
    pub fn describe(&self) -> String {
        let Some(Ok(m)) = spop::Messages::new(&self.payload).next() else {
            return "(undecodable NOTIFY)".into();
        };
        let arg = |name: &[u8]| m.arg(name).and_then(|v| v.as_bytes()).unwrap_or(b"");
        let mut target = arg(b"path").to_vec();
        if let Some(q) = m.arg(b"query").and_then(|v| v.as_bytes()) {
            target.push(b'?');
            target.extend_from_slice(q);
        }
        let mut target = target.escape_ascii().to_string();
        if target.len() > 100 {
            let mut cut = 100;
            while !target.is_char_boundary(cut) {
                cut -= 1;
            }
            target.truncate(cut);
            target.push_str("...");
        }
        format!(
            "{} {} ({} body bytes)",
            arg(b"method").escape_ascii(),
            target,
            arg(b"body").len()
        )
    }

    /// Appends the frame with stream-id `sid` (the frame-id is kept).
    pub fn encode(&self, sid: u64, out: &mut Vec<u8>) {
        let start = spop::start_frame(out, FrameType::Notify, self.flags, sid, self.frame_id);
        out.extend_from_slice(&self.payload);
        spop::finish_frame(out, start);
    }
}

/// Standard base64 with padding (what `check::base64` reads back).
pub fn b64encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use coraza_spoa::spop::{AckWriter, NotifyWriter, TypedData};

    fn hello() -> Vec<u8> {
        let mut v = Vec::new();
        spop::encode_haproxy_hello(&mut v, 16380, b"pipelining,async", Some(b"engine"), false);
        v
    }

    fn notify(sid: u64, fid: u64, path: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = NotifyWriter::new(&mut v, sid, fid);
        w.message(
            b"coraza-req",
            &[
                (b"app", TypedData::String(b"sample_app")),
                (b"method", TypedData::String(b"GET")),
                (b"path", TypedData::String(path)),
            ],
        )
        .unwrap();
        v
    }

    #[test]
    fn base64_round_trips_through_the_crate_decoder() {
        for len in 0..70usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let enc = b64encode(&bytes);
            assert_eq!(enc.len() % 4, 0);
            assert_eq!(
                coraza_spoa::check::base64(&enc).unwrap(),
                bytes,
                "len {len}"
            );
        }
        assert_eq!(b64encode(b"hello"), "aGVsbG8=");
    }

    #[test]
    fn capture_round_trips_and_validates() {
        let cap = Capture {
            hello: hello(),
            meta: json!({"corpus": "x"}),
            frames: vec![
                CapturedFrame {
                    conn: 0,
                    t_us: 0,
                    wire: notify(8, 1, b"/a"),
                    verdict: Some("rules_hit=0".into()),
                },
                CapturedFrame {
                    conn: 1,
                    t_us: 250,
                    wire: notify(9, 1, b"/b"),
                    verdict: None,
                },
            ],
        };
        let text = cap.to_jsonl();
        assert_eq!(Capture::parse(&text).unwrap(), cap);

        // A health-check HELLO, a truncated frame, a non-NOTIFY: refused with the line number.
        let mut hc = Vec::new();
        spop::encode_haproxy_hello(&mut hc, 16380, b"", None, true);
        let bad_hello = text.replacen(&b64encode(&cap.hello), &b64encode(&hc), 1);
        let e = Capture::parse(&bad_hello).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("health check"), "{e}");
        let wire = &cap.frames[1].wire;
        let truncated = text.replace(&b64encode(wire), &b64encode(&wire[..wire.len() - 1]));
        let e = Capture::parse(&truncated).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("truncated"), "{e}");
        let not_notify = text.replace(&b64encode(wire), &b64encode(&cap.hello));
        let e = Capture::parse(&not_notify).unwrap_err().to_string();
        assert!(e.contains("not a NOTIFY"), "{e}");
        assert!(Capture::parse(&text.replace("\"version\":1", "\"version\":2")).is_err());
    }

    #[test]
    fn replay_frames_keep_the_payload_under_a_new_stream_id() {
        let original = notify(8, 3, b"/search?q=1");
        let f = ReplayFrame::new(&original, None).unwrap();
        for sid in [0u64, 1, 239, 240, 5_000_000, u64::MAX] {
            let mut out = Vec::new();
            f.encode(sid, &mut out);
            let (frame, used) = spop::split_frame(&out, MAX_FRAME).unwrap().unwrap();
            assert_eq!(used, out.len());
            let (orig, _) = spop::split_frame(&original, MAX_FRAME).unwrap().unwrap();
            assert_eq!(frame.header.stream_id, sid);
            assert_eq!(frame.header.frame_id, 3);
            assert_eq!(frame.header.flags, orig.header.flags);
            assert_eq!(frame.payload, orig.payload);
        }
        assert_eq!(f.describe(), "GET /search?q=1 (0 body bytes)");
    }

    #[test]
    fn verdicts_skip_the_id_and_keep_order() {
        let mut out = Vec::new();
        let mut ack = AckWriter::new(&mut out, 8, 1, 16380);
        let txn = VarScope::Transaction;
        ack.set_var(txn, b"id", TypedData::String(b"abc-123"))
            .unwrap();
        ack.set_var(txn, b"action", TypedData::String(b"deny"))
            .unwrap();
        ack.set_var(txn, b"status", TypedData::Int64(403)).unwrap();
        ack.set_var(txn, b"data", TypedData::String(b"a b;\xff"))
            .unwrap();
        ack.set_var(VarScope::Session, b"x", TypedData::Bool(true))
            .unwrap();
        ack.unset_var(txn, b"gone").unwrap();
        let frame = ack.frame().to_vec();
        let (f, _) = spop::split_frame(&frame, MAX_FRAME).unwrap().unwrap();
        assert_eq!(
            verdict_of_ack(f.payload).unwrap(),
            "action=deny;status=403;data=a b;\\xff;sess.x=true;gone!unset"
        );
        assert_eq!(verdict_of_ack(b"").unwrap(), "");
        assert!(verdict_of_ack(&[9, 9, 9]).is_err());
    }
}
