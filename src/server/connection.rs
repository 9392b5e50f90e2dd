//! The sans-IO SPOP connection: bytes in, frames out, and what the event loop should do next.
//!
//! A [`Connection`] is fed the bytes read so far and appends its answers (AGENT-HELLO, ACKs,
//! AGENT-DISCONNECT) to an output buffer; it returns how much input it consumed and a [`Next`]
//! step. It never touches a socket, a clock or a lock, so every protocol path is unit-testable.
//!
//! Lifecycle: `AwaitingHello` → (HAPROXY-HELLO) → `Established` → (HAPROXY-DISCONNECT, a
//! frame-level error, or shutdown) → `Closed`. A health-check HELLO is answered and closes.
//! Frame-level errors (bad length, oversize, bad header, a fragment, HELLO without FIN) end the
//! connection with an AGENT-DISCONNECT carrying the status [`DecodeError::disconnect_status`]
//! maps. A NOTIFY whose header decodes but whose messages do not is ACKed with the `error`
//! variable: the request passes, the connection stays.

use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use log::{debug, error, info, warn};

use super::panic_report;
use crate::inspect::{set_error, AgentError, Inspector, ERROR_ACTION_RESERVE};
use crate::spop::{
    self, AckWriter, DecodeError, Disconnect, DisconnectStatus, Frame, FrameType, HaproxyHello,
    Messages, AGENT_CAPABILITIES,
};

/// Stop turning input into output once this much output is waiting: the loop writes it first.
/// Bounds a connection's output whatever the peer pipelines (one ACK may still exceed it by at
/// most one max-frame-size).
pub const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    AwaitingHello,
    Established,
    /// Nothing more will be read or answered; the loop flushes the output and closes.
    Closed,
}

/// What the event loop should do after [`Connection::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Write whatever was appended to the output, and keep reading.
    Continue,
    /// The output reached [`OUTPUT_HIGH_WATER`]: write it before feeding the unconsumed input
    /// again (backpressure: do not read more until then).
    Flush,
    /// Write whatever was appended (the last frame is an AGENT-HELLO for a health check or an
    /// AGENT-DISCONNECT), then close. All input was consumed (discarded).
    Close,
}

/// Result of one [`Connection::process`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes used; the loop keeps the rest (an incomplete frame) for the next call.
    pub consumed: usize,
    pub next: Next,
}

/// One SPOP connection's protocol state.
#[derive(Debug)]
pub struct Connection {
    phase: Phase,
    /// Largest frame accepted now: the configured limit until the HELLO, then the negotiated one.
    frame_limit: u32,
    /// For log lines only.
    peer: SocketAddr,
}

/// Set once the first time HAProxy announces a max-frame-size above our configured limit.
static CLAMP_WARNED: AtomicBool = AtomicBool::new(false);

impl Connection {
    /// `max_frame_size` is the configured limit (`limits.max_frame_size`): it bounds the HELLO
    /// itself and caps what we accept from HAProxy's announcement.
    pub fn new(max_frame_size: u32, peer: SocketAddr) -> Self {
        Connection {
            phase: Phase::AwaitingHello,
            frame_limit: max_frame_size.max(spop::MIN_FRAME_SIZE),
            peer,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Largest frame length accepted now (the length prefix excluded).
    pub fn frame_limit(&self) -> u32 {
        self.frame_limit
    }

    /// Handles every complete frame at the start of `input`, appending answers to `out`.
    pub fn process<I: Inspector>(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        inspector: &I,
        worker: &mut I::Worker,
    ) -> Progress {
        let mut consumed = 0;
        loop {
            if self.phase == Phase::Closed {
                return Progress {
                    consumed: input.len(),
                    next: Next::Close,
                };
            }
            if out.len() >= OUTPUT_HIGH_WATER {
                return Progress {
                    consumed,
                    next: Next::Flush,
                };
            }
            let rest = input.get(consumed..).unwrap_or(&[]);
            match spop::split_frame(rest, self.frame_limit) {
                Ok(None) => {
                    return Progress {
                        consumed,
                        next: Next::Continue,
                    }
                }
                Ok(Some((frame, used))) => {
                    consumed += used;
                    if let Err(e) = self.on_frame(frame, out, inspector, worker) {
                        self.fail(out, &e);
                    }
                }
                Err(e) => self.fail(out, &e),
            }
        }
    }

    /// Ends the connection from our side (shutdown): appends AGENT-DISCONNECT "normal". The loop
    /// first feeds every frame already received, so they are answered before this.
    pub fn shutdown(&mut self, out: &mut Vec<u8>) -> Next {
        if self.phase != Phase::Closed {
            spop::encode_agent_disconnect(out, DisconnectStatus::Normal, b"agent shutting down");
            self.phase = Phase::Closed;
        }
        Next::Close
    }

    fn on_frame<I: Inspector>(
        &mut self,
        frame: Frame<'_>,
        out: &mut Vec<u8>,
        inspector: &I,
        worker: &mut I::Worker,
    ) -> Result<(), DecodeError> {
        let h = frame.header;
        match (self.phase, h.frame_type) {
            // We never announce fragmentation, so a continuation can only be a protocol error.
            (_, FrameType::Unset) => Err(DecodeError::Fragmented { frame_type: 0 }),
            (Phase::AwaitingHello, FrameType::HaproxyHello) => self.on_hello(frame, out),
            (_, FrameType::HaproxyHello) => Err(DecodeError::UnexpectedFrame {
                frame_type: h.frame_type.code(),
                reason: "second HELLO",
            }),
            (_, FrameType::HaproxyDisconnect) => {
                match Disconnect::decode(frame.payload) {
                    Ok(d) => debug!(
                        "{}: HAProxy disconnects: status {} ({})",
                        self.peer,
                        d.status_code,
                        String::from_utf8_lossy(d.message)
                    ),
                    Err(e) => debug!("{}: HAProxy disconnects (undecodable: {e})", self.peer),
                }
                spop::encode_agent_disconnect(out, DisconnectStatus::Normal, b"normal");
                self.phase = Phase::Closed;
                Ok(())
            }
            (Phase::AwaitingHello, FrameType::Notify) => Err(DecodeError::UnexpectedFrame {
                frame_type: h.frame_type.code(),
                reason: "NOTIFY before HELLO",
            }),
            (_, FrameType::Notify) => {
                if !h.fin() {
                    return Err(DecodeError::Fragmented {
                        frame_type: h.frame_type.code(),
                    });
                }
                if h.abort() {
                    // HAProxy gave up on this frame: nobody waits for an ACK.
                    debug!(
                        "{}: NOTIFY {}/{} aborted",
                        self.peer, h.stream_id, h.frame_id
                    );
                    return Ok(());
                }
                self.on_notify(frame, out, inspector, worker);
                Ok(())
            }
            (_, other) => {
                // HAProxy itself skips frame types it does not expect; so do we.
                debug!("{}: skipping frame type {}", self.peer, other.code());
                Ok(())
            }
        }
    }

    fn on_hello(&mut self, frame: Frame<'_>, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let h = frame.header;
        if !h.fin() {
            return Err(DecodeError::Fragmented {
                frame_type: h.frame_type.code(),
            });
        }
        if h.stream_id != 0 || h.frame_id != 0 {
            return Err(DecodeError::NonZeroIds {
                frame_type: h.frame_type.code(),
            });
        }
        let hello = HaproxyHello::decode(frame.payload)?;
        // Echo HAProxy's size: announcing less makes HAProxy 2.6 fragment (and, since we do not
        // accept fragments, storm). Only our own configured limit may lower it.
        let negotiated = hello.max_frame_size.min(self.frame_limit);
        if negotiated < hello.max_frame_size && !CLAMP_WARNED.swap(true, Ordering::Relaxed) {
            warn!(
                "HAProxy announces max-frame-size {} but limits.max_frame_size is {}: larger \
                 NOTIFYs will fail in HAProxy (use `no option send-frag-payload`, or raise the limit)",
                hello.max_frame_size, negotiated
            );
        }
        spop::encode_agent_hello(out, negotiated, AGENT_CAPABILITIES);
        if hello.healthcheck {
            debug!("{}: health check answered", self.peer);
            self.phase = Phase::Closed;
        } else {
            debug!(
                "{}: HELLO from engine {} (max-frame-size {negotiated}, capabilities {:?})",
                self.peer,
                String::from_utf8_lossy(hello.engine_id.unwrap_or(b"?")),
                String::from_utf8_lossy(hello.capabilities),
            );
            self.phase = Phase::Established;
            self.frame_limit = negotiated;
        }
        Ok(())
    }

    fn on_notify<I: Inspector>(
        &mut self,
        frame: Frame<'_>,
        out: &mut Vec<u8>,
        inspector: &I,
        worker: &mut I::Worker,
    ) {
        let (sid, fid) = (frame.header.stream_id, frame.header.frame_id);
        let mut ack = AckWriter::new(out, sid, fid, self.frame_limit);
        ack.reserve(ERROR_ACTION_RESERVE);
        // Validate the whole list first: a message is never evaluated from a frame that turns
        // out to be malformed further on.
        if let Some(Err(e)) = Messages::new(frame.payload).find(Result::is_err) {
            warn!(
                "{}: NOTIFY {sid}/{fid}: malformed messages ({e}); request passes",
                self.peer
            );
            set_error(&mut ack, AgentError::MalformedMessage);
            return;
        }
        let mut failure: Option<AgentError> = None;
        for message in Messages::new(frame.payload).flatten() {
            let checkpoint = ack.checkpoint();
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                inspector.inspect(worker, &message, &mut ack)
            }));
            let name = String::from_utf8_lossy(message.name);
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    // Whatever the inspector wrote before failing must not decide the request.
                    ack.rollback(checkpoint);
                    warn!(
                        "{}: NOTIFY {sid}/{fid} message {name:?}: could not evaluate ({e}); \
                         request passes with error set",
                        self.peer
                    );
                    failure.get_or_insert(AgentError::InspectFailed);
                }
                Err(payload) => {
                    ack.rollback(checkpoint);
                    error!(
                        "{}: NOTIFY {sid}/{fid} message {name:?}: inspector panicked, request \
                         passes with error set: {}",
                        self.peer,
                        panic_report::describe(payload.as_ref())
                    );
                    failure = Some(AgentError::InspectPanicked);
                }
            }
        }
        if let Some(f) = failure {
            set_error(&mut ack, f);
        }
    }

    fn fail(&mut self, out: &mut Vec<u8>, err: &DecodeError) {
        let status = err.disconnect_status();
        info!("{}: closing with status {status}: {err}", self.peer);
        spop::encode_agent_disconnect(out, status, err.to_string().as_bytes());
        self.phase = Phase::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{InspectError, ERROR_VAR};
    use crate::spop::{
        AckActions, Action, AgentHello, NotifyWriter, TypedData, VarScope, FLAG_FIN,
    };

    const PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        40000,
    ));

    /// Behaviour chosen by message name, so one inspector covers every path.
    struct Scripted;

    impl Inspector for Scripted {
        type Worker = usize; // messages seen

        fn new_worker(&self, _: usize) -> usize {
            0
        }

        fn inspect(
            &self,
            seen: &mut usize,
            message: &spop::Message<'_>,
            ack: &mut AckWriter<'_>,
        ) -> Result<(), InspectError> {
            *seen += 1;
            match message.name {
                b"deny" => {
                    ack.set_var(VarScope::Transaction, b"action", TypedData::String(b"deny"))?;
                    ack.set_var(VarScope::Transaction, b"status", TypedData::Int64(403))?;
                }
                b"fail" => {
                    ack.set_var(VarScope::Transaction, b"action", TypedData::String(b"deny"))?;
                    return Err(InspectError::new("scripted failure"));
                }
                b"panic" => {
                    ack.set_var(VarScope::Transaction, b"action", TypedData::String(b"deny"))?;
                    panic!("scripted panic");
                }
                b"fill" => {
                    let big = [b'x'; 100];
                    while ack
                        .set_var(VarScope::Transaction, b"data", TypedData::Binary(&big))
                        .is_ok()
                    {}
                }
                b"echo-sid" => {
                    let app = message
                        .arg(b"app")
                        .and_then(|v| v.as_bytes())
                        .unwrap_or(b"");
                    ack.set_var(VarScope::Transaction, b"app", TypedData::String(app))?;
                }
                _ => {}
            }
            Ok(())
        }
    }

    fn hello(max_frame_size: u32, healthcheck: bool) -> Vec<u8> {
        let mut out = Vec::new();
        spop::encode_haproxy_hello(
            &mut out,
            max_frame_size,
            b"pipelining,async",
            Some(b"engine"),
            healthcheck,
        );
        out
    }

    fn notify(sid: u64, fid: u64, messages: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = NotifyWriter::new(&mut out, sid, fid);
        for m in messages {
            w.message(m, &[(b"app", TypedData::String(b"app1"))])
                .unwrap();
        }
        out
    }

    /// Decoded output frames: (type, sid, fid, payload).
    fn frames(out: &[u8]) -> Vec<(FrameType, u64, u64, Vec<u8>)> {
        let mut rest = out;
        let mut v = Vec::new();
        while !rest.is_empty() {
            let (f, used) = spop::split_frame(rest, u32::MAX)
                .unwrap()
                .expect("complete frame");
            assert!(f.header.fin(), "every agent frame has FIN");
            v.push((
                f.header.frame_type,
                f.header.stream_id,
                f.header.frame_id,
                f.payload.to_vec(),
            ));
            rest = &rest[used..];
        }
        v
    }

    fn disconnect_status(frame: &(FrameType, u64, u64, Vec<u8>)) -> u32 {
        assert_eq!(frame.0, FrameType::AgentDisconnect);
        Disconnect::decode(&frame.3).unwrap().status_code
    }

    fn vars(payload: &[u8]) -> Vec<(Vec<u8>, String)> {
        AckActions::new(payload)
            .map(|a| match a.unwrap() {
                Action::SetVar { name, value, .. } => (name.to_vec(), format!("{value:?}")),
                Action::UnsetVar { name, .. } => (name.to_vec(), "unset".into()),
            })
            .collect()
    }

    fn established() -> (Connection, Vec<u8>) {
        let mut c = Connection::new(1 << 20, PEER);
        let mut out = Vec::new();
        let p = c.process(&hello(16380, false), &mut out, &Scripted, &mut 0);
        assert_eq!(p.next, Next::Continue);
        assert_eq!(c.phase(), Phase::Established);
        out.clear();
        (c, out)
    }

    #[test]
    fn handshake_echoes_haproxy_frame_size_and_announces_pipelining() {
        let mut c = Connection::new(1 << 20, PEER);
        let mut out = Vec::new();
        let input = hello(16380, false);
        let p = c.process(&input, &mut out, &Scripted, &mut 0);
        assert_eq!(
            p,
            Progress {
                consumed: input.len(),
                next: Next::Continue
            }
        );
        let f = frames(&out);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].0, f[0].1, f[0].2), (FrameType::AgentHello, 0, 0));
        let h = AgentHello::decode(&f[0].3).unwrap();
        assert_eq!(
            (h.version, h.max_frame_size, h.capabilities),
            (&b"2.0"[..], 16380, &b"pipelining"[..])
        );
        assert_eq!(c.frame_limit(), 16380);
    }

    #[test]
    fn configured_limit_caps_the_announced_size() {
        let mut c = Connection::new(32768, PEER);
        let mut out = Vec::new();
        c.process(&hello(65532, false), &mut out, &Scripted, &mut 0);
        let f = frames(&out);
        assert_eq!(AgentHello::decode(&f[0].3).unwrap().max_frame_size, 32768);
        assert_eq!(c.frame_limit(), 32768);
    }

    #[test]
    fn health_check_is_answered_then_closed() {
        let mut c = Connection::new(1 << 20, PEER);
        let mut out = Vec::new();
        let mut input = hello(16380, true);
        input.extend_from_slice(&notify(1, 1, &[b"deny"])); // ignored: the connection is done
        let p = c.process(&input, &mut out, &Scripted, &mut 0);
        assert_eq!(
            p,
            Progress {
                consumed: input.len(),
                next: Next::Close
            }
        );
        let f = frames(&out);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, FrameType::AgentHello);
    }

    #[test]
    fn haproxy_disconnect_is_answered_then_closed() {
        let (mut c, mut out) = established();
        let mut input = Vec::new();
        spop::encode_haproxy_disconnect(
            &mut input,
            DisconnectStatus::Timeout,
            b"a timeout occurred",
        );
        let p = c.process(&input, &mut out, &Scripted, &mut 0);
        assert_eq!(p.next, Next::Close);
        let f = frames(&out);
        assert_eq!(disconnect_status(&f[0]), 0);
    }

    #[test]
    fn pipelined_notifies_are_acked_with_their_ids() {
        let (mut c, mut out) = established();
        let mut input = Vec::new();
        // Stream-id 0 is legal (HAProxy 2.6's first stream); ids above 2^32 are opaque too.
        let ids: Vec<(u64, u64)> = (0..20).map(|i| (i * 7, 1)).chain([(u64::MAX, 2)]).collect();
        for &(sid, fid) in &ids {
            input.extend_from_slice(&notify(sid, fid, &[b"deny"]));
        }
        let mut seen = 0;
        let p = c.process(&input, &mut out, &Scripted, &mut seen);
        assert_eq!(
            p,
            Progress {
                consumed: input.len(),
                next: Next::Continue
            }
        );
        assert_eq!(seen, ids.len());
        let f = frames(&out);
        assert_eq!(f.len(), ids.len());
        for (frame, &(sid, fid)) in f.iter().zip(&ids) {
            assert_eq!((frame.0, frame.1, frame.2), (FrameType::Ack, sid, fid));
            assert_eq!(
                vars(&frame.3),
                vec![
                    (b"action".to_vec(), "String([100, 101, 110, 121])".into()),
                    (b"status".to_vec(), "Int64(403)".into())
                ]
            );
        }
    }

    #[test]
    fn byte_at_a_time_gives_the_same_output() {
        let mut input = hello(16380, false);
        for i in 0..5 {
            input.extend_from_slice(&notify(i, 1, &[b"deny", b"echo-sid"]));
        }
        let mut whole = Vec::new();
        Connection::new(1 << 20, PEER).process(&input, &mut whole, &Scripted, &mut 0);

        let mut c = Connection::new(1 << 20, PEER);
        let mut out = Vec::new();
        let mut buffered = Vec::new();
        for &b in &input {
            buffered.push(b);
            let p = c.process(&buffered, &mut out, &Scripted, &mut 0);
            assert_ne!(p.next, Next::Close);
            buffered.drain(..p.consumed);
        }
        assert!(buffered.is_empty());
        assert_eq!(out, whole);
    }

    #[test]
    fn inspector_error_rolls_back_and_sets_error() {
        let (mut c, mut out) = established();
        let input = notify(5, 1, &[b"deny", b"fail"]);
        c.process(&input, &mut out, &Scripted, &mut 0);
        let f = frames(&out);
        assert_eq!((f[0].1, f[0].2), (5, 1));
        // deny's variables stay, fail's partial "action" is gone, error = 1000.
        assert_eq!(
            vars(&f[0].3),
            vec![
                (b"action".to_vec(), "String([100, 101, 110, 121])".into()),
                (b"status".to_vec(), "Int64(403)".into()),
                (ERROR_VAR.to_vec(), "Int64(1000)".into()),
            ]
        );
    }

    #[test]
    fn inspector_panic_is_contained() {
        let (mut c, mut out) = established();
        let mut input = notify(1, 1, &[b"panic"]);
        input.extend_from_slice(&notify(2, 1, &[b"echo-sid"]));
        let p = c.process(&input, &mut out, &Scripted, &mut 0);
        assert_eq!(p.next, Next::Continue);
        let f = frames(&out);
        assert_eq!(
            vars(&f[0].3),
            vec![(ERROR_VAR.to_vec(), "Int64(1001)".into())]
        );
        assert_eq!(
            vars(&f[1].3),
            vec![(b"app".to_vec(), "String([97, 112, 112, 49])".into())]
        );
    }

    #[test]
    fn malformed_message_list_is_acked_with_error() {
        let (mut c, mut out) = established();
        let mut input = Vec::new();
        let mut w = NotifyWriter::new(&mut input, 9, 3);
        w.message(b"deny", &[]).unwrap();
        w.raw(&[0x01, b'm', 0x01, 0x01, b'a', 0x0b]); // reserved type 0x0b in a second message
        let mut seen = 0;
        let p = c.process(&input, &mut out, &Scripted, &mut seen);
        assert_eq!(p.next, Next::Continue);
        assert_eq!(seen, 0, "nothing of a malformed NOTIFY is evaluated");
        let f = frames(&out);
        assert_eq!((f[0].0, f[0].1, f[0].2), (FrameType::Ack, 9, 3));
        assert_eq!(
            vars(&f[0].3),
            vec![(ERROR_VAR.to_vec(), "Int64(1002)".into())]
        );
    }

    #[test]
    fn ack_stays_within_frame_size_and_error_still_fits() {
        let mut c = Connection::new(1 << 20, PEER);
        let mut out = Vec::new();
        c.process(&hello(256, false), &mut out, &Scripted, &mut 0);
        out.clear();
        c.process(
            &notify(1, 1, &[b"fill", b"fail"]),
            &mut out,
            &Scripted,
            &mut 0,
        );
        assert!(out.len() - spop::LENGTH_PREFIX <= 256);
        let f = frames(&out);
        assert_eq!(
            vars(&f[0].3).last().unwrap(),
            &(ERROR_VAR.to_vec(), "Int64(1000)".into())
        );
    }

    #[test]
    fn backpressure_stops_at_the_high_water_mark() {
        let (mut c, mut out) = established();
        let mut input = Vec::new();
        let n = 2000; // ~16380-byte ACKs would exceed the mark long before
        for i in 0..n {
            input.extend_from_slice(&notify(i, 1, &[b"fill"]));
        }
        let p = c.process(&input, &mut out, &Scripted, &mut 0);
        assert_eq!(p.next, Next::Flush);
        assert!(p.consumed < input.len());
        assert!(out.len() >= OUTPUT_HIGH_WATER && out.len() < OUTPUT_HIGH_WATER + 16384);
        // After the loop wrote the output, the rest is processed.
        let mut acks = frames(&out).len();
        let mut offset = p.consumed;
        loop {
            out.clear();
            let p = c.process(&input[offset..], &mut out, &Scripted, &mut 0);
            acks += frames(&out).len();
            offset += p.consumed;
            if p.next == Next::Continue {
                break;
            }
        }
        assert_eq!(offset, input.len());
        assert_eq!(acks, n as usize);
    }

    #[test]
    fn unknown_frame_types_are_skipped() {
        let (mut c, mut out) = established();
        let mut input = Vec::new();
        for t in [42u8, 101, 103] {
            let start = spop::start_frame(&mut input, FrameType::from_u8(t), FLAG_FIN, 1, 1);
            input.extend_from_slice(b"whatever");
            spop::finish_frame(&mut input, start);
        }
        input.extend_from_slice(&notify(7, 1, &[b"deny"]));
        let p = c.process(&input, &mut out, &Scripted, &mut 0);
        assert_eq!(p.next, Next::Continue);
        let f = frames(&out);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].0, f[0].1), (FrameType::Ack, 7));
    }

    /// Frame-level faults: each ends in AGENT-DISCONNECT with HAProxy's status for it.
    #[test]
    fn malformed_frames_end_with_their_status() {
        let frame = |t: u8, flags: u32, sid: u64, fid: u64, payload: &[u8]| {
            let mut v = Vec::new();
            let s = spop::start_frame(&mut v, FrameType::from_u8(t), flags, sid, fid);
            v.extend_from_slice(payload);
            spop::finish_frame(&mut v, s);
            v
        };
        let kv = |pairs: &[(&[u8], TypedData<'_>)]| {
            let mut v = Vec::new();
            for (k, value) in pairs {
                v.push(k.len() as u8);
                v.extend_from_slice(k);
                value.encode(&mut v);
            }
            v
        };
        let hello_payload = &hello(16380, false)[11..];
        let versions = |v: &'static [u8]| (&b"supported-versions"[..], TypedData::String(v));
        let mfs = (&b"max-frame-size"[..], TypedData::Uint32(16380));
        let oversize = {
            let mut v = (16381u32).to_be_bytes().to_vec();
            v.push(3);
            v
        };
        let mut overlong = vec![0, 0, 0, 20, 3, 0, 0, 0, 1];
        overlong.extend_from_slice(&[0xff; 16]);
        // (name, established first?, bytes, expected status)
        let cases: Vec<(&str, bool, Vec<u8>, u32)> = vec![
            ("length below a header", true, vec![0, 0, 0, 2, 3, 0], 4),
            ("oversize after HELLO", true, oversize.clone(), 3),
            ("oversize before HELLO", false, vec![0, 0x20, 0, 0, 1], 3),
            (
                "HTTP request instead of SPOP",
                false,
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                3,
            ),
            ("overlong stream-id", true, overlong, 4),
            (
                "truncated HELLO value",
                false,
                frame(
                    1,
                    FLAG_FIN,
                    0,
                    0,
                    &[
                        0x07, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x08, 0x09, b'2',
                    ],
                ),
                4,
            ),
            (
                "HELLO without FIN",
                false,
                frame(1, 0, 0, 0, hello_payload),
                10,
            ),
            (
                "HELLO with ids",
                false,
                frame(1, FLAG_FIN, 1, 0, hello_payload),
                4,
            ),
            (
                "HELLO with unsupported version",
                false,
                frame(1, FLAG_FIN, 0, 0, &kv(&[versions(b"1.0"), mfs])),
                8,
            ),
            (
                "HELLO without version",
                false,
                frame(1, FLAG_FIN, 0, 0, &kv(&[mfs])),
                5,
            ),
            (
                "HELLO without max-frame-size",
                false,
                frame(1, FLAG_FIN, 0, 0, &kv(&[versions(b"2.0")])),
                6,
            ),
            (
                "HELLO with max-frame-size 100",
                false,
                frame(
                    1,
                    FLAG_FIN,
                    0,
                    0,
                    &kv(&[
                        versions(b"2.0"),
                        (b"max-frame-size", TypedData::Uint32(100)),
                    ]),
                ),
                9,
            ),
            (
                "HELLO with reserved type",
                false,
                frame(1, FLAG_FIN, 0, 0, &[0x01, b'x', 0x0c]),
                4,
            ),
            (
                "HELLO with empty key",
                false,
                frame(1, FLAG_FIN, 0, 0, &[0x00, 0x00]),
                4,
            ),
            ("second HELLO", true, hello(16380, false), 4),
            ("NOTIFY before HELLO", false, notify(1, 1, &[b"deny"]), 4),
            ("NOTIFY without FIN", true, frame(3, 0, 1, 1, &[]), 10),
            (
                "continuation fragment",
                true,
                frame(0, FLAG_FIN, 1, 1, &[]),
                10,
            ),
        ];
        for (name, establish, bytes, status) in cases {
            let (mut c, mut out) = if establish {
                established()
            } else {
                (Connection::new(1 << 20, PEER), Vec::new())
            };
            let mut seen = 0;
            let p = c.process(&bytes, &mut out, &Scripted, &mut seen);
            assert_eq!(p.next, Next::Close, "{name}");
            assert_eq!(p.consumed, bytes.len(), "{name}");
            assert_eq!(seen, 0, "{name}");
            let f = frames(&out);
            assert_eq!(f.len(), 1, "{name}");
            assert_eq!(disconnect_status(&f[0]), status, "{name}");
            assert_eq!(c.phase(), Phase::Closed, "{name}");
        }
    }

    #[test]
    fn fragmented_capture_is_refused_with_status_10() {
        // First fragment as HAProxy 2.6 sent it: NOTIFY without FIN.
        let (mut c, mut out) = established();
        let mut input = Vec::new();
        let s = spop::start_frame(&mut input, FrameType::Notify, 0, 2, 1);
        input.extend_from_slice(&[
            0x0a, b'c', b'o', b'r', b'a', b'z', b'a', b'-', b'r', b'e', b'q', 0x00,
        ]);
        spop::finish_frame(&mut input, s);
        let p = c.process(&input, &mut out, &Scripted, &mut 0);
        assert_eq!(p.next, Next::Close);
        assert_eq!(disconnect_status(&frames(&out)[0]), 10);
    }

    #[test]
    fn shutdown_sends_normal_disconnect_after_answers() {
        let (mut c, mut out) = established();
        c.process(&notify(3, 1, &[b"deny"]), &mut out, &Scripted, &mut 0);
        assert_eq!(c.shutdown(&mut out), Next::Close);
        let f = frames(&out);
        assert_eq!((f[0].0, f[0].1), (FrameType::Ack, 3));
        assert_eq!(disconnect_status(&f[1]), 0);
        // Idempotent: a second shutdown writes nothing.
        let len = out.len();
        c.shutdown(&mut out);
        assert_eq!(out.len(), len);
    }
}
