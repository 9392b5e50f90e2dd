//! Capture: push a corpus through a real HAProxy and record the SPOP traffic it sends.
//!
//! ```text
//! corpus client ──HTTP──▶ HAProxy (tests/haproxy/haproxy.cfg + coraza.cfg) ──HTTP──▶ backend
//!   (C threads)                 │ SPOP
//!                               ▼
//!                      recording proxy ──SPOP──▶ agent (any: in-process Waf, the binary, ...)
//! ```
//! - The corpus is in the `check` format (`method`, `uri`, `version`, `headers`, `body_b64`),
//!   parsed with [`coraza_spoa::check::parse_line`]; each request goes out byte for byte as the
//!   corpus has it (on its own connection; the client reads the response by its length and
//!   closes).
//! - HAProxy is the reference configuration, unchanged, with its addresses from the
//!   environment; the backend answers every request with a short 200.
//! - The proxy forwards bytes both ways untouched and parses the frames on the side: every
//!   HAPROXY-HELLO, NOTIFY and ACK is recorded with its connection and arrival time. A NOTIFY's
//!   verdict is taken from the ACK with the same (stream-id, frame-id) on the same connection.
//!   Health-check connections (`option spop-check`) are counted, not kept.
//!
//! Must not: alter the traffic, or leave HAProxy or threads behind (HAProxy is killed on drop;
//! the proxy and backend threads end with their sockets).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coraza_spoa::check::CheckRequest;
use coraza_spoa::spop::{self, FrameType, HaproxyHello};
use serde_json::{json, Value};

use crate::harness::error::{io, Error, Result};
use crate::harness::format::{verdict_of_ack, Capture, CapturedFrame};

/// A client gives up on a response after this long (HAProxy's SPOE processing timeout is
/// 500 ms; the backend answers at once).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// One corpus request, ready to be sent.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Vec<u8>,
    pub raw: Vec<u8>,
}

impl HttpRequest {
    /// The request as the corpus describes it: request line, headers in order, body.
    pub fn from_check(r: &CheckRequest) -> HttpRequest {
        let mut raw = Vec::with_capacity(256 + r.body.len());
        raw.extend_from_slice(&r.method);
        raw.push(b' ');
        raw.extend_from_slice(&r.uri);
        raw.extend_from_slice(b" HTTP/");
        raw.extend_from_slice(if r.version.is_empty() {
            b"1.1"
        } else {
            &r.version
        });
        raw.extend_from_slice(b"\r\n");
        let mut has_length = false;
        for (n, v) in &r.headers {
            has_length |= n.eq_ignore_ascii_case(b"content-length")
                || n.eq_ignore_ascii_case(b"transfer-encoding");
            raw.extend_from_slice(n);
            raw.extend_from_slice(b": ");
            raw.extend_from_slice(v);
            raw.extend_from_slice(b"\r\n");
        }
        if !has_length && !r.body.is_empty() {
            raw.extend_from_slice(format!("content-length: {}\r\n", r.body.len()).as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&r.body);
        HttpRequest {
            method: r.method.clone(),
            raw,
        }
    }
}

/// Reads a `check`-format corpus; `limit` keeps the first N lines. Lines that do not parse are
/// an error (the corpus is ours; a bad line means a bad file).
pub fn load_corpus(path: &Path, limit: Option<usize>) -> Result<Vec<HttpRequest>> {
    let text = std::fs::read_to_string(path).map_err(io(format!("read {}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let r = coraza_spoa::check::parse_line(line)
            .map_err(|(id, e)| Error::Format(format!("{}:{}: {id}: {e}", path.display(), i + 1)))?;
        out.push(HttpRequest::from_check(&r));
    }
    if out.is_empty() {
        return Err(Error::Format(format!("{}: no requests", path.display())));
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub haproxy: PathBuf,
    /// Directory holding `haproxy.cfg` and `coraza.cfg`.
    pub haproxy_cfg_dir: PathBuf,
    /// The agent HAProxy should reach (through the proxy).
    pub agent: SocketAddr,
    /// Client threads sending requests at once.
    pub concurrency: usize,
    /// Scratch directory (HAProxy's log and stats socket).
    pub scratch: PathBuf,
    /// Free-form description stored in the capture's `meta`.
    pub label: Value,
}

/// Finds `haproxy` on PATH or in the usual sbin directories.
pub fn find_haproxy() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
}

/// What the proxy saw on one SPOE connection.
#[derive(Default)]
struct ConnLog {
    hello: Option<Vec<u8>>,
    healthcheck: bool,
    /// (arrival, sid, fid, wire bytes)
    notifies: Vec<(Instant, u64, u64, Vec<u8>)>,
    /// (sid, fid) → verdict (or why it could not be read)
    acks: HashMap<(u64, u64), std::result::Result<String, String>>,
    /// Frames that are neither HELLO, NOTIFY, ACK nor DISCONNECT (fragments, unknown types).
    odd_frames: Vec<String>,
    /// Most NOTIFYs waiting for an ACK at once.
    max_in_flight: usize,
    in_flight: usize,
}

type Logs = Arc<Mutex<Vec<ConnLog>>>;

/// The recording proxy: accepts HAProxy's SPOE connections and relays them to the agent.
struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    logs: Logs,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(agent: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io("bind the recording proxy"))?;
        let addr = listener
            .local_addr()
            .map_err(io("read the proxy's address"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let logs: Logs = Arc::new(Mutex::new(Vec::new()));
        let (stop2, logs2) = (Arc::clone(&stop), Arc::clone(&logs));
        let thread = std::thread::Builder::new()
            .name("perf-proxy".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(upstream) = TcpStream::connect(agent) else {
                        // The agent is gone: HAProxy sees a refused connection, as it would.
                        continue;
                    };
                    client.set_nodelay(true).ok();
                    upstream.set_nodelay(true).ok();
                    let index = {
                        let mut l = logs2.lock().unwrap_or_else(|p| p.into_inner());
                        l.push(ConnLog::default());
                        l.len() - 1
                    };
                    relay(client, upstream, index, Arc::clone(&logs2));
                }
            })
            .map_err(io("spawn the proxy thread"))?;
        Ok(Proxy {
            addr,
            stop,
            logs,
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        TcpStream::connect(self.addr).ok();
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two threads per connection: HAProxy → agent and agent → HAProxy, each forwarding every
/// read at once and parsing frames from a copy.
fn relay(client: TcpStream, upstream: TcpStream, index: usize, logs: Logs) {
    let pairs = [
        (client.try_clone(), upstream.try_clone(), true),
        (upstream.try_clone(), client.try_clone(), false),
    ];
    for (from, to, up) in pairs {
        let (Ok(mut from), Ok(mut to)) = (from, to) else {
            return;
        };
        let logs = Arc::clone(&logs);
        let spawned = std::thread::Builder::new()
            .name(
                if up {
                    "perf-proxy-up"
                } else {
                    "perf-proxy-down"
                }
                .into(),
            )
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut pending: Vec<u8> = Vec::new();
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    let at = Instant::now();
                    pending.extend_from_slice(&buf[..n]);
                    let mut consumed = 0;
                    while let Ok(Some((frame, used))) =
                        spop::split_frame(&pending[consumed..], u32::MAX)
                    {
                        let wire = &pending[consumed..consumed + used];
                        record(&logs, index, up, at, frame, wire);
                        consumed += used;
                    }
                    pending.drain(..consumed);
                }
                to.shutdown(Shutdown::Write).ok();
            });
        if spawned.is_err() {
            return;
        }
    }
}

fn record(logs: &Logs, index: usize, up: bool, at: Instant, frame: spop::Frame<'_>, wire: &[u8]) {
    let mut logs = logs.lock().unwrap_or_else(|p| p.into_inner());
    let Some(log) = logs.get_mut(index) else {
        return;
    };
    let h = frame.header;
    match (up, h.frame_type) {
        (true, FrameType::HaproxyHello) => {
            log.healthcheck = HaproxyHello::decode(frame.payload).is_ok_and(|h| h.healthcheck);
            log.hello = Some(wire.to_vec());
        }
        (true, FrameType::Notify) if h.fin() => {
            log.notifies
                .push((at, h.stream_id, h.frame_id, wire.to_vec()));
            log.in_flight += 1;
            log.max_in_flight = log.max_in_flight.max(log.in_flight);
        }
        (false, FrameType::Ack) => {
            log.in_flight = log.in_flight.saturating_sub(1);
            log.acks
                .insert((h.stream_id, h.frame_id), verdict_of_ack(frame.payload));
        }
        (true, FrameType::HaproxyDisconnect)
        | (false, FrameType::AgentHello)
        | (false, FrameType::AgentDisconnect) => {}
        (_, other) => log.odd_frames.push(format!(
            "{} {other:?} flags {:#x}",
            if up { "HAProxy sent" } else { "agent sent" },
            h.flags
        )),
    }
}

/// A loopback HTTP backend: reads each request (by its length) and answers `200`.
struct Backend {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    fn start() -> Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io("bind the backend"))?;
        let addr = listener
            .local_addr()
            .map_err(io("read the backend's address"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("perf-backend".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(s) = stream {
                        std::thread::spawn(move || serve_backend(s));
                    }
                }
            })
            .map_err(io("spawn the backend thread"))?;
        Ok(Backend {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        TcpStream::connect(self.addr).ok();
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

/// Keep-alive HTTP/1.1 server loop for one connection from HAProxy.
fn serve_backend(mut s: TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let Some(head_end) = find(&buf, b"\r\n\r\n").map(|p| p + 4) else {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let chunked = header("transfer-encoding:").is_some_and(|v| v.contains("chunked"));
        let length: usize = header("content-length:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // The body: by length, or up to the last chunk.
        let body_end = loop {
            if chunked {
                if let Some(p) = find(&buf[head_end..], b"0\r\n\r\n") {
                    break head_end + p + 5;
                }
            } else if buf.len() >= head_end + length {
                break head_end + length;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        buf.drain(..body_end);
        let body = b"ok\n";
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        if s.write_all(resp.as_bytes()).is_err() || s.write_all(body).is_err() {
            return;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// HAProxy with the reference configuration; killed (and its scratch files removed) on drop.
struct Haproxy {
    child: Child,
    frontend: SocketAddr,
    stats: PathBuf,
    log: PathBuf,
}

impl Haproxy {
    fn start(cfg: &CaptureConfig, agent: SocketAddr, backend: SocketAddr) -> Result<Haproxy> {
        std::fs::create_dir_all(&cfg.scratch)
            .map_err(io(format!("create {}", cfg.scratch.display())))?;
        let frontend = SocketAddr::from(([127, 0, 0, 1], crate::harness::agent::free_port()?));
        let stats = cfg.scratch.join("haproxy-stats.sock");
        let log = cfg.scratch.join("haproxy.log");
        let out = std::fs::File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let err = out.try_clone().map_err(io("duplicate the log handle"))?;
        let child = Command::new(&cfg.haproxy)
            .arg("-db")
            .arg("-f")
            .arg(cfg.haproxy_cfg_dir.join("haproxy.cfg"))
            .env("CORAZA_SPOA_ADDR", agent.to_string())
            .env("CORAZA_SPOE_CONFIG", cfg.haproxy_cfg_dir.join("coraza.cfg"))
            .env("FRONTEND_ADDR", frontend.to_string())
            .env("BACKEND_ADDR", backend.to_string())
            .env("HAPROXY_STATS_SOCKET", &stats)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("start {}", cfg.haproxy.display())))?;
        let mut h = Haproxy {
            child,
            frontend,
            stats,
            log,
        };
        h.wait_until("the frontend to accept", |h| {
            TcpStream::connect(h.frontend).is_ok()
        })?;
        h.wait_until("HAProxy's health check to pass", |h| {
            h.agent_status()
                .is_some_and(|(status, check)| status == "UP" && check == "L7OK")
        })?;
        Ok(h)
    }

    fn wait_until(&mut self, what: &str, ok: impl Fn(&Haproxy) -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if ok(self) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Setup(format!(
                    "haproxy exited ({status}) while waiting for {what}: {}",
                    self.log_text().lines().last().unwrap_or("")
                )));
            }
            if Instant::now() > deadline {
                return Err(Error::Setup(format!("timed out waiting for {what}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `status` and `check_status` of `coraza-spoa/agent1` from `show stat`.
    fn agent_status(&self) -> Option<(String, String)> {
        let mut s = UnixStream::connect(&self.stats).ok()?;
        s.write_all(b"show stat\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (status, check) = (col("status")?, col("check_status")?);
        let row = lines
            .map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>())
            .find(|f| {
                f.first().map(String::as_str) == Some("coraza-spoa")
                    && f.get(1).map(String::as_str) == Some("agent1")
            })?;
        Some((row.get(status)?.clone(), row.get(check)?.clone()))
    }

    fn version(&self, binary: &Path) -> String {
        Command::new(binary)
            .arg("-v")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_string)
            })
            .unwrap_or_default()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_file(&self.stats).ok();
    }
}

/// Sends one request on its own connection; returns the response status (0: no response,
/// e.g. `silent-drop`).
fn exchange(frontend: SocketAddr, req: &HttpRequest) -> u16 {
    let Ok(mut s) = TcpStream::connect(frontend) else {
        return 0;
    };
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).ok();
    s.set_nodelay(true).ok();
    if s.write_all(&req.raw).is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return 0,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    let no_body = req.method.eq_ignore_ascii_case(b"HEAD") || status == 204 || status == 304;
    // Read the body so HAProxy finishes the transaction cleanly, then close.
    loop {
        let done = no_body
            || match length {
                Some(l) => buf.len() >= head_end + l,
                None if chunked => find(&buf[head_end..], b"0\r\n\r\n").is_some(),
                None => false,
            };
        if done {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    status
}

/// What a capture run saw besides the frames.
#[derive(Debug, Clone)]
pub struct CaptureStats {
    pub requests: usize,
    pub statuses: BTreeMap<u16, usize>,
    pub spoe_connections: usize,
    pub healthcheck_connections: usize,
    pub notifies: usize,
    pub unanswered: usize,
    pub odd_frames: Vec<String>,
    /// `txn.coraza.error` values in HAProxy's log lines (`-`: none).
    pub haproxy_errors: BTreeMap<String, usize>,
    pub seconds: f64,
}

/// Runs the capture. The agent must already be listening on `cfg.agent`.
pub fn capture(cfg: &CaptureConfig, requests: &[HttpRequest]) -> Result<(Capture, CaptureStats)> {
    let mut proxy = Proxy::start(cfg.agent)?;
    let backend = Backend::start()?;
    let haproxy = Haproxy::start(cfg, proxy.addr, backend.addr)?;
    let haproxy_version = haproxy.version(&cfg.haproxy);

    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let statuses: Vec<u16> = {
        let results = Mutex::new(vec![0u16; requests.len()]);
        std::thread::scope(|scope| {
            for _ in 0..cfg.concurrency.max(1) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(req) = requests.get(i) else { break };
                    let status = exchange(haproxy.frontend, req);
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = status;
                });
            }
        });
        results.into_inner().unwrap_or_else(|p| p.into_inner())
    };
    let seconds = started.elapsed().as_secs_f64();
    // Every request has its answer; give a late ACK (after HAProxy's processing timeout) a
    // moment to reach the proxy, then stop HAProxy so its connections close.
    std::thread::sleep(Duration::from_millis(200));
    let log_path = haproxy.log.clone();
    drop(haproxy);
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    proxy.stop();
    drop(backend);

    let logs = std::mem::take(&mut *proxy.logs.lock().unwrap_or_else(|p| p.into_inner()));
    let mut stats = CaptureStats {
        requests: requests.len(),
        statuses: BTreeMap::new(),
        spoe_connections: 0,
        healthcheck_connections: 0,
        notifies: 0,
        unanswered: 0,
        odd_frames: Vec::new(),
        haproxy_errors: BTreeMap::new(),
        seconds,
    };
    for s in statuses {
        *stats.statuses.entry(s).or_default() += 1;
    }
    for line in log_text.lines() {
        if let Some((_, rest)) = line.rsplit_once("coraza-error=") {
            let v = rest.split_whitespace().next().unwrap_or("").to_string();
            *stats.haproxy_errors.entry(v).or_default() += 1;
        }
    }
    let mut hello = None;
    let mut frames: Vec<CapturedFrame> = Vec::new();
    let mut first_at: Option<Instant> = None;
    let mut max_in_flight = 0;
    let mut per_conn = Vec::new();
    let mut timed: Vec<(Instant, CapturedFrame)> = Vec::new();
    for log in logs {
        if log.healthcheck {
            stats.healthcheck_connections += 1;
            continue;
        }
        if log.hello.is_none() {
            continue; // the proxy's own wake-up connection, or one that never spoke
        }
        if log.notifies.is_empty() {
            // An idle SPOE connection: HAProxy opened it but sent nothing on it.
            stats.spoe_connections += 1;
            per_conn.push(0);
            continue;
        }
        let conn = stats.spoe_connections as u32;
        stats.spoe_connections += 1;
        if hello.is_none() {
            hello = log.hello.clone();
        }
        max_in_flight = max_in_flight.max(log.max_in_flight);
        per_conn.push(log.notifies.len());
        stats.odd_frames.extend(log.odd_frames.iter().cloned());
        for (at, sid, fid, wire) in log.notifies {
            let verdict = match log.acks.get(&(sid, fid)) {
                Some(Ok(v)) => Some(v.clone()),
                Some(Err(e)) => {
                    stats.odd_frames.push(format!("unreadable ACK: {e}"));
                    None
                }
                None => {
                    stats.unanswered += 1;
                    None
                }
            };
            first_at = Some(first_at.map_or(at, |f: Instant| f.min(at)));
            timed.push((
                at,
                CapturedFrame {
                    conn,
                    t_us: 0,
                    wire,
                    verdict,
                },
            ));
        }
    }
    timed.sort_by_key(|(at, _)| *at);
    for (at, mut f) in timed {
        f.t_us = first_at.map_or(0, |first| {
            at.saturating_duration_since(first).as_micros() as u64
        });
        frames.push(f);
    }
    stats.notifies = frames.len();
    let hello = hello.ok_or_else(|| {
        Error::Setup("HAProxy sent no NOTIFY (no SPOE connection carried traffic)".into())
    })?;
    let sizes = {
        let mut s: Vec<usize> = frames.iter().map(|f| f.wire.len()).collect();
        s.sort_unstable();
        s
    };
    let meta = json!({
        "label": cfg.label,
        "haproxy": haproxy_version,
        "requests": stats.requests,
        "notifies": stats.notifies,
        "unanswered": stats.unanswered,
        "http_statuses": stats.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "haproxy_coraza_error": stats.haproxy_errors,
        "spoe_connections": stats.spoe_connections,
        "notifies_per_connection": per_conn,
        "max_in_flight_per_connection": max_in_flight,
        "healthcheck_connections": stats.healthcheck_connections,
        "concurrency": cfg.concurrency,
        "notify_bytes": {
            "min": sizes.first(),
            "median": sizes.get(sizes.len() / 2),
            "max": sizes.last(),
            "mean": sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64,
        },
        "seconds": seconds,
    });
    Ok((
        Capture {
            hello,
            meta,
            frames,
        },
        stats,
    ))
}
