//! The agent over real sockets: workers, pipelining, malformed input, backpressure, drain, and
//! the binary's `healthcheck` subcommand and SIGTERM handling.
//!
//! The inspector here is a test double (the engine is not involved): it answers by message name
//! so each test can choose the behaviour it needs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use coraza_spoa::config::Config;
use coraza_spoa::inspect::{InspectError, Inspector, ERROR_VAR};
use coraza_spoa::server::{self, Server, ServerHandle};
use coraza_spoa::spop::{
    self, AckActions, AckWriter, Action, AgentHello, Disconnect, FrameType, Message, NotifyWriter,
    TypedData, VarScope, FLAG_FIN,
};

/// Answers by message name; counts the messages it saw.
#[derive(Default)]
struct TestInspector {
    seen: AtomicUsize,
}

impl Inspector for TestInspector {
    type Worker = ();

    fn new_worker(&self, _: usize) {}

    fn inspect(
        &self,
        _: &mut (),
        message: &Message<'_>,
        ack: &mut AckWriter<'_>,
    ) -> Result<(), InspectError> {
        self.seen.fetch_add(1, Ordering::Relaxed);
        match message.name {
            b"coraza-req" => {
                let path = message
                    .arg(b"path")
                    .and_then(|v| v.as_bytes())
                    .unwrap_or(b"");
                if path.starts_with(b"/deny") {
                    ack.set_var(VarScope::Transaction, b"action", TypedData::String(b"deny"))?;
                    ack.set_var(VarScope::Transaction, b"status", TypedData::Int64(403))?;
                }
                ack.set_var(VarScope::Transaction, b"path", TypedData::String(path))?;
            }
            b"big" => {
                ack.set_var(
                    VarScope::Transaction,
                    b"data",
                    TypedData::Binary(&[b'x'; 8000]),
                )?;
            }
            b"panic" => panic!("test inspector panics on purpose"),
            b"slow" => std::thread::sleep(Duration::from_millis(300)),
            _ => {}
        }
        Ok(())
    }
}

/// `connections_do_not_leak` counts the process's file descriptors: it runs alone (write lock)
/// while the other tests, which open sockets, share the read lock.
static FD_COUNT: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    FD_COUNT.read().unwrap_or_else(|e| e.into_inner())
}

fn start(workers: usize) -> (ServerHandle, Arc<TestInspector>) {
    let config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        workers,
        ..Config::default()
    };
    let inspector = Arc::new(TestInspector::default());
    let handle = Server::start(&config, Arc::clone(&inspector)).expect("server starts");
    (handle, inspector)
}

/// A minimal HAProxy stand-in over a blocking socket.
struct Client {
    stream: TcpStream,
}

#[derive(Debug)]
struct Received {
    frame_type: FrameType,
    stream_id: u64,
    frame_id: u64,
    payload: Vec<u8>,
}

impl Received {
    fn vars(&self) -> Vec<(String, String)> {
        assert_eq!(self.frame_type, FrameType::Ack);
        AckActions::new(&self.payload)
            .map(|a| match a.unwrap() {
                Action::SetVar { name, value, .. } => {
                    (String::from_utf8_lossy(name).into_owned(), show(&value))
                }
                Action::UnsetVar { name, .. } => {
                    (String::from_utf8_lossy(name).into_owned(), "unset".into())
                }
            })
            .collect()
    }

    fn disconnect_status(&self) -> u32 {
        assert_eq!(self.frame_type, FrameType::AgentDisconnect, "{self:?}");
        Disconnect::decode(&self.payload).unwrap().status_code
    }
}

fn show(v: &TypedData<'_>) -> String {
    match v {
        TypedData::String(b) | TypedData::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        other => other
            .as_i64()
            .map(|i| i.to_string())
            .unwrap_or_else(|| format!("{other:?}")),
    }
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream }
    }

    fn handshake(addr: SocketAddr, max_frame_size: u32) -> Client {
        let mut c = Client::connect(addr);
        let mut hello = Vec::new();
        spop::encode_haproxy_hello(
            &mut hello,
            max_frame_size,
            b"pipelining,async",
            Some(b"test-engine"),
            false,
        );
        c.send(&hello);
        let r = c.recv().expect("AGENT-HELLO");
        assert_eq!(r.frame_type, FrameType::AgentHello);
        let h = AgentHello::decode(&r.payload).unwrap();
        assert_eq!(h.max_frame_size, max_frame_size);
        assert_eq!(h.capabilities, b"pipelining");
        c
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Next frame, or `None` when the agent closed the connection.
    fn recv(&mut self) -> Option<Received> {
        let mut prefix = [0u8; 4];
        match self.stream.read_exact(&mut prefix) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("read: {e}"),
        }
        let len = u32::from_be_bytes(prefix) as usize;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).unwrap();
        let f = spop::Frame::decode(&body).unwrap();
        assert!(f.header.fin());
        Some(Received {
            frame_type: f.header.frame_type,
            stream_id: f.header.stream_id,
            frame_id: f.header.frame_id,
            payload: f.payload.to_vec(),
        })
    }

    /// Sends a `coraza-req` for `path` and expects its ACK.
    fn request(&mut self, sid: u64, path: &str) -> Vec<(String, String)> {
        self.send(&notify(sid, 1, b"coraza-req", path));
        let r = self.recv().expect("ACK");
        assert_eq!(
            (r.frame_type, r.stream_id, r.frame_id),
            (FrameType::Ack, sid, 1)
        );
        r.vars()
    }

    fn expect_closed(&mut self) {
        assert!(self.recv().is_none(), "agent should have closed");
    }
}

fn notify(sid: u64, fid: u64, message: &[u8], path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = NotifyWriter::new(&mut out, sid, fid);
    w.message(
        message,
        &[
            (b"app", TypedData::String(b"sample_app")),
            (b"src-ip", TypedData::Ipv4([127, 0, 0, 1].into())),
            (b"method", TypedData::String(b"GET")),
            (b"path", TypedData::String(path.as_bytes())),
            (b"query", TypedData::Null),
        ],
    )
    .unwrap();
    out
}

fn raw_frame(frame_type: u8, flags: u32, sid: u64, fid: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let s = spop::start_frame(&mut v, FrameType::from_u8(frame_type), flags, sid, fid);
    v.extend_from_slice(payload);
    spop::finish_frame(&mut v, s);
    v
}

#[test]
fn pipelined_notifies_on_many_connections() {
    let _shared = shared();
    let (server, inspector) = start(2);
    let addr = server.local_addr();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::handshake(addr, 16380);
                for round in 0..10u64 {
                    // 20 in flight, as HAProxy's max-waiting-frames allows.
                    let mut batch = Vec::new();
                    for i in 0..20u64 {
                        let sid = t * 100_000 + round * 20 + i;
                        let path = if i % 5 == 0 {
                            format!("/deny/{sid}")
                        } else {
                            format!("/ok/{sid}")
                        };
                        batch.extend_from_slice(&notify(sid, 1, b"coraza-req", &path));
                    }
                    c.send(&batch);
                    for i in 0..20u64 {
                        let sid = t * 100_000 + round * 20 + i;
                        let r = c.recv().unwrap();
                        assert_eq!(
                            (r.frame_type, r.stream_id, r.frame_id),
                            (FrameType::Ack, sid, 1)
                        );
                        let vars = r.vars();
                        let denied = vars.iter().any(|(k, v)| k == "action" && v == "deny");
                        assert_eq!(denied, i % 5 == 0, "{vars:?}");
                        assert!(vars.contains(&(
                            "path".into(),
                            if denied {
                                format!("/deny/{sid}")
                            } else {
                                format!("/ok/{sid}")
                            }
                        )));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(inspector.seen.load(Ordering::Relaxed), 8 * 10 * 20);
    server.shutdown().unwrap();
}

/// Each malformed input ends its own connection with the status HAProxy would use, while a
/// healthy connection on the same (single) worker keeps being served between cases.
#[test]
fn malformed_frames_end_only_their_connection() {
    let _shared = shared();
    let (server, _) = start(1);
    let addr = server.local_addr();
    let mut healthy = Client::handshake(addr, 16380);
    let mut sid = 0;

    let mut overlong = vec![0, 0, 0, 20, 3, 0, 0, 0, 1];
    overlong.extend_from_slice(&[0xff; 16]);
    let truncated_hello = raw_frame(
        1,
        FLAG_FIN,
        0,
        0,
        &[
            0x07, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x08, 0x09, b'2',
        ],
    );
    // (name, handshake first?, bytes, status)
    let cases: Vec<(&str, bool, Vec<u8>, u32)> = vec![
        ("truncated HELLO", false, truncated_hello, 4),
        (
            "bad length (below a header)",
            true,
            vec![0, 0, 0, 3, 3, 0, 0],
            4,
        ),
        ("overlong varint", true, overlong, 4),
        (
            "oversize (length only, body never sent)",
            true,
            16381u32.to_be_bytes().to_vec(),
            3,
        ),
        (
            "garbage (HTTP on the SPOP port)",
            false,
            b"GET / HTTP/1.1\r\nHost: agent\r\n\r\n".to_vec(),
            3,
        ),
        ("NOTIFY without FIN", true, raw_frame(3, 0, 1, 1, &[]), 10),
        (
            "continuation fragment",
            true,
            raw_frame(0, FLAG_FIN, 1, 1, &[]),
            10,
        ),
        (
            "NOTIFY before HELLO",
            false,
            notify(1, 1, b"coraza-req", "/"),
            4,
        ),
    ];
    for (name, handshake, bytes, status) in cases {
        let mut c = if handshake {
            Client::handshake(addr, 16380)
        } else {
            Client::connect(addr)
        };
        c.send(&bytes);
        let r = c
            .recv()
            .unwrap_or_else(|| panic!("{name}: closed without DISCONNECT"));
        assert_eq!(r.disconnect_status(), status, "{name}");
        c.expect_closed();
        sid += 1;
        let vars = healthy.request(sid, "/still-served");
        assert!(
            vars.contains(&("path".into(), "/still-served".into())),
            "after {name}"
        );
    }

    // Unknown frame type: skipped, the same connection then gets its ACK.
    let mut c = Client::handshake(addr, 16380);
    c.send(&raw_frame(42, FLAG_FIN, 9, 9, b"junk"));
    assert!(c
        .request(77, "/after-unknown")
        .contains(&("path".into(), "/after-unknown".into())));

    // A malformed message list: ACKed with the error variable, connection kept.
    let mut bad = Vec::new();
    let mut w = NotifyWriter::new(&mut bad, 78, 1);
    w.raw(&[
        0x0a, b'c', b'o', b'r', b'a', b'z', b'a', b'-', b'r', b'e', b'q', 0x01, 0x01, b'a', 0x0d,
    ]);
    c.send(&bad);
    let r = c.recv().unwrap();
    assert_eq!(
        (r.frame_type, r.stream_id, r.frame_id),
        (FrameType::Ack, 78, 1)
    );
    assert_eq!(
        r.vars(),
        vec![(
            String::from_utf8_lossy(ERROR_VAR).into_owned(),
            "1002".into()
        )]
    );
    assert!(c
        .request(79, "/ok")
        .contains(&("path".into(), "/ok".into())));

    // HAPROXY-DISCONNECT: answered with status 0, then closed.
    let mut d = Vec::new();
    spop::encode_haproxy_disconnect(
        &mut d,
        spop::DisconnectStatus::Timeout,
        b"a timeout occurred",
    );
    c.send(&d);
    assert_eq!(c.recv().unwrap().disconnect_status(), 0);
    c.expect_closed();

    assert!(healthy
        .request(1000, "/end")
        .contains(&("path".into(), "/end".into())));
    server.shutdown().unwrap();
}

#[test]
fn inspector_panic_sets_error_and_the_worker_survives() {
    let _shared = shared();
    let (server, _) = start(1);
    let mut c = Client::handshake(server.local_addr(), 16380);
    c.send(&notify(5, 1, b"panic", "/"));
    let r = c.recv().unwrap();
    assert_eq!(r.stream_id, 5);
    assert_eq!(r.vars(), vec![("error".into(), "1001".into())]);
    assert!(c
        .request(6, "/next")
        .contains(&("path".into(), "/next".into())));
    let mut other = Client::handshake(server.local_addr(), 16380);
    assert!(other
        .request(7, "/other")
        .contains(&("path".into(), "/other".into())));
    server.shutdown().unwrap();
}

#[test]
fn large_frames_arrive_in_pieces() {
    let _shared = shared();
    let (server, _) = start(1);
    let mut c = Client::handshake(server.local_addr(), 1 << 20);
    let body = vec![b'b'; 300_000];
    let mut frame = Vec::new();
    let mut w = NotifyWriter::new(&mut frame, 12, 1);
    w.message(
        b"coraza-req",
        &[
            (b"path", TypedData::String(b"/upload")),
            (b"body", TypedData::Binary(&body)),
        ],
    )
    .unwrap();
    for piece in frame.chunks(7_001) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.request_ack(12), vec![("path".into(), "/upload".into())]);
    server.shutdown().unwrap();
}

impl Client {
    fn request_ack(&mut self, sid: u64) -> Vec<(String, String)> {
        let r = self.recv().unwrap();
        assert_eq!((r.frame_type, r.stream_id), (FrameType::Ack, sid));
        r.vars()
    }
}

/// The client writes 400 NOTIFYs whose ACKs are 8 KB each before reading anything: the agent
/// stops reading when its output backs up, and every ACK still arrives, in order.
#[test]
fn backpressure_keeps_every_ack() {
    let _shared = shared();
    let (server, _) = start(1);
    let addr = server.local_addr();
    let mut c = Client::handshake(addr, 16380);
    let mut reader = Client {
        stream: c.stream.try_clone().unwrap(),
    };
    let n = 400u64;
    let writer = std::thread::spawn(move || {
        for sid in 0..n {
            c.send(&notify(sid, 1, b"big", "/"));
        }
        c
    });
    // Let the agent hit its high-water mark before reading.
    std::thread::sleep(Duration::from_millis(300));
    for sid in 0..n {
        let r = reader.recv().unwrap();
        assert_eq!(r.stream_id, sid);
        assert_eq!(r.vars()[0].1.len(), 8000);
    }
    writer.join().unwrap();
    server.shutdown().unwrap();
}

#[test]
fn connections_do_not_leak() {
    let _alone = FD_COUNT.write().unwrap_or_else(|e| e.into_inner());
    let (server, _) = start(2);
    let addr = server.local_addr();
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let before = fds();
    for round in 0..3 {
        let clients: Vec<Client> = (0..100).map(|_| Client::handshake(addr, 16380)).collect();
        for (i, mut c) in clients.into_iter().enumerate() {
            c.request(i as u64, "/burst");
            if i % 2 == 0 {
                // Half close politely with HAPROXY-DISCONNECT, half just go away.
                let mut d = Vec::new();
                spop::encode_haproxy_disconnect(&mut d, spop::DisconnectStatus::Normal, b"normal");
                c.send(&d);
                assert_eq!(c.recv().unwrap().disconnect_status(), 0, "round {round}");
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while fds() > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(fds() <= before, "{} fds before, {} after", before, fds());
    server.shutdown().unwrap();
}

#[test]
fn healthcheck_against_the_server() {
    let _shared = shared();
    let (server, _) = start(1);
    let report = server::healthcheck(server.local_addr(), Duration::from_secs(2)).unwrap();
    assert_eq!(report.max_frame_size, 16380);
    assert_eq!(report.capabilities, "pipelining");
    let addr = server.local_addr();
    server.shutdown().unwrap();
    assert!(server::healthcheck(addr, Duration::from_secs(2)).is_err());
}

/// Frames received before the shutdown are answered, then AGENT-DISCONNECT(0), quickly.
#[test]
fn shutdown_answers_received_frames_then_disconnects() {
    let _shared = shared();
    let (server, _) = start(2);
    let addr = server.local_addr();
    let mut clients: Vec<Client> = (0..6).map(|_| Client::handshake(addr, 16380)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let mut batch = Vec::new();
        for j in 0..5u64 {
            batch.extend_from_slice(&notify(i as u64 * 10 + j, 1, b"coraza-req", "/in-flight"));
        }
        c.send(&batch);
    }
    // Give the bytes time to reach the agent's sockets, then stop it.
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let stopper = std::thread::spawn(move || server.shutdown());
    for (i, c) in clients.iter_mut().enumerate() {
        for j in 0..5u64 {
            let r = c.recv().expect("ACK before DISCONNECT");
            assert_eq!(
                (r.frame_type, r.stream_id),
                (FrameType::Ack, i as u64 * 10 + j)
            );
        }
        assert_eq!(c.recv().unwrap().disconnect_status(), 0);
    }
    stopper.join().unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drain took {:?}",
        started.elapsed()
    );
    assert!(TcpStream::connect(addr).is_err(), "no longer accepting");
}

/// A peer that never sends a HELLO nor closes does not keep the drain past its deadline.
#[test]
fn drain_is_bounded_by_silent_peers() {
    let _shared = shared();
    let (server, _) = start(1);
    let _silent = TcpStream::connect(server.local_addr()).unwrap();
    let mut busy = Client::handshake(server.local_addr(), 16380);
    busy.send(&[0, 0, 0, 50, 3]); // a frame that never completes
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    server.shutdown().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drain took {:?}",
        started.elapsed()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_agent(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server::healthcheck(addr, Duration::from_millis(500)).is_err() {
        assert!(Instant::now() < deadline, "agent did not come up on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn binary_healthcheck_subcommand() {
    let _shared = shared();
    let (server, _) = start(1);
    let ok = Command::new(env!("CARGO_BIN_EXE_coraza-spoa"))
        .args(["healthcheck", "--addr", &server.local_addr().to_string()])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let addr = server.local_addr();
    server.shutdown().unwrap();
    let down = Command::new(env!("CARGO_BIN_EXE_coraza-spoa"))
        .args(["healthcheck", "--addr", &addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
}

/// A child process killed when the test ends, whatever happens.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn binary_drains_and_exits_zero_on_sigterm() {
    let _shared = shared();
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("coraza-spoa-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "bind: 127.0.0.1:{port}\nworkers: 2\nlog_format: json\naudit:\n  path: {}\n",
            dir.join("audit.log").display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_coraza-spoa"))
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed on drop, so a failing assertion never leaves an agent running (and holding the
    // test's output pipe open).
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_agent(addr);
    let mut c = Client::handshake(addr, 16380);
    let vars = c.request(1, "/before");
    assert!(
        vars.iter().any(|(k, _)| k == "id") && !vars.iter().any(|(k, _)| k == "action"),
        "the binary's WAF answers with an id and no action for a benign request: {vars:?}"
    );
    c.send(&notify(2, 1, b"coraza-req", "/in-flight"));
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let r = c.recv().unwrap();
    assert_eq!((r.frame_type, r.stream_id), (FrameType::Ack, 2));
    assert_eq!(c.recv().unwrap().disconnect_status(), 0);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still running after 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["msg"].is_string());
    }
    assert!(
        stderr.contains("rules compiled in"),
        "start-up line: {stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
