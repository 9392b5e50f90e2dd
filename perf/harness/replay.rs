//! The load generator: replays captured NOTIFYs to an agent and checks every ACK.
//!
//! One thread, one mio loop, K connections. Each connection starts with the captured
//! HAPROXY-HELLO and must get an AGENT-HELLO that HAProxy would accept (version 2.0, a frame
//! size that fits the largest captured frame, `pipelining` when D > 1). Then:
//! - flat out (no rate): every connection keeps D NOTIFYs in flight (a closed loop, as HAProxy
//!   does with `max-waiting-frames`); latency runs from the write to the ACK.
//! - at a fixed rate R: request n is due at `start + n/R` whatever happened before (an open
//!   loop); it goes on the next connection with room in its window, or waits for room. Latency
//!   runs from when it was due, so a stalled agent shows up as latency instead of being hidden
//!   by a load generator that politely waited (coordinated omission). The loop sleeps in
//!   `epoll_wait` on a `timerfd` armed for the next due time (nanosecond resolution, no busy
//!   polling); `pacing_lag` reports how late requests actually left.
//!
//! Frames cycle through the capture, each sent with a fresh stream-id (the sequence number)
//! and its original frame-id, so ACKs are matched to exactly one request. Every ACK is checked:
//! its stream-id must be one in flight on that connection, its frame-id the one sent, and its
//! verdict the expected one ([`Expect`]). Requests whose send time (or due time) falls inside
//! the measured window after the warm-up are recorded in an `hdrhistogram`; throughput counts
//! ACKs that arrived inside the window. CPU time of the agent (`/proc/<pid>/stat`), of its
//! worker threads, of this thread, and the busy time of the agent's CPU are sampled at both ends
//! of the window.
//!
//! Must not: allocate per request on the hot path beyond the frame copy, or decide anything
//! about the agent's correctness beyond the checks above.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use coraza_spoa::spop::{self, AgentHello, Disconnect, FrameType};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

use crate::harness::agent;
use crate::harness::error::{io, Error, Result};
use crate::harness::format::{verdict_of_ack, ReplayFrame};

/// Largest frame accepted from the agent.
const MAX_ACK: u32 = 1 << 20;
/// Error messages kept verbatim in the report.
const ERROR_SAMPLES: usize = 10;

/// What an ACK must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The verdict recorded at capture time (for the agent that produced the capture).
    Capture,
    /// No actions at all (the null inspector).
    Empty,
    /// Only the ids are checked.
    IdsOnly,
}

#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub addr: SocketAddr,
    pub connections: usize,
    pub depth: usize,
    /// Requests per second over all connections; `None`: flat out.
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Stop sending after this many requests (then wait for their ACKs).
    pub max_requests: Option<u64>,
    pub expect: Expect,
    /// The agent's process, for CPU accounting.
    pub agent_pid: Option<u32>,
    /// The CPU the agent runs on, to measure how busy it was (and with what else).
    pub agent_cpu: Option<usize>,
    /// Pin this thread here first.
    pub pin_cpu: Option<usize>,
    /// Give this thread this scheduling priority first.
    pub priority: Option<agent::Priority>,
    /// How long to wait for outstanding ACKs once sending stopped.
    pub drain_timeout: Duration,
}

impl ReplayConfig {
    pub fn new(addr: SocketAddr) -> ReplayConfig {
        ReplayConfig {
            addr,
            connections: 4,
            depth: 20,
            rate: None,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            max_requests: None,
            expect: Expect::IdsOnly,
            agent_pid: None,
            agent_cpu: None,
            pin_cpu: None,
            priority: None,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// ACKs that were not what they should be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors {
    /// Stream-id not in flight on that connection.
    pub unknown_id: u64,
    /// Right stream-id, wrong frame-id.
    pub wrong_frame_id: u64,
    /// The verdict differs from the expected one.
    pub verdict_mismatch: u64,
    /// Not an ACK, no FIN, or actions that do not decode.
    pub bad_ack: u64,
    /// Still unanswered when the drain timeout expired.
    pub unanswered: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.unknown_id
            + self.wrong_frame_id
            + self.verdict_mismatch
            + self.bad_ack
            + self.unanswered
    }
}

/// What one replay measured.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub connections: usize,
    pub depth: usize,
    pub offered_rps: Option<f64>,
    pub sent: u64,
    pub acked: u64,
    /// ACKs that arrived inside the measured window.
    pub acked_in_window: u64,
    pub window: Duration,
    /// Nanoseconds, requests sent (or due) inside the window.
    pub latency: Histogram<u64>,
    /// Nanoseconds a request left after it was due (fixed rate only).
    pub pacing_lag: Histogram<u64>,
    pub errors: Errors,
    pub error_samples: Vec<String>,
    /// CPU time over the window: the agent process, its workers, this thread, the agent's CPU.
    pub agent_cpu: Option<Duration>,
    pub worker_cpu: Option<Duration>,
    pub loadgen_cpu: Option<Duration>,
    pub agent_core_busy: Option<Duration>,
    /// Most requests waiting for room in a window (fixed rate).
    pub max_backlog: usize,
    /// Latency per capture frame (requests inside the window), to find the expensive ones.
    pub per_frame: Vec<FrameStat>,
}

/// Latency of the requests made from one captured frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameStat {
    pub count: u64,
    pub sum_ns: u64,
    pub max_ns: u64,
}

fn histogram() -> Histogram<u64> {
    // 1 ns to 100 s at 3 significant digits; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("constant histogram bounds")
}

impl ReplayReport {
    pub fn achieved_rps(&self) -> f64 {
        let s = self.window.as_secs_f64();
        if s > 0.0 {
            self.acked_in_window as f64 / s
        } else {
            0.0
        }
    }

    /// Requests per CPU-second of the agent: its throughput per core.
    pub fn rps_per_agent_core(&self) -> Option<f64> {
        self.agent_cpu
            .map(|c| c.as_secs_f64())
            .filter(|&c| c > 0.0)
            .map(|c| self.acked_in_window as f64 / c)
    }

    fn util(&self, t: Option<Duration>) -> Option<f64> {
        let w = self.window.as_secs_f64();
        t.filter(|_| w > 0.0).map(|t| t.as_secs_f64() / w)
    }

    pub fn agent_cpu_util(&self) -> Option<f64> {
        self.util(self.agent_cpu)
    }

    /// The `n` frames with the highest worst-case latency: (frame index, stat).
    pub fn slowest(&self, n: usize) -> Vec<(usize, FrameStat)> {
        let mut v: Vec<(usize, FrameStat)> = self
            .per_frame
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, s)| s.count > 0)
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1.max_ns));
        v.truncate(n);
        v
    }

    /// [`ReplayReport::slowest`] with what each request was.
    pub fn slowest_json(&self, frames: &[ReplayFrame], n: usize) -> Value {
        self.slowest(n)
            .into_iter()
            .map(|(i, s)| {
                json!({
                    "frame": i,
                    "count": s.count,
                    "max_us": s.max_ns as f64 / 1000.0,
                    "mean_us": s.sum_ns as f64 / 1000.0 / s.count.max(1) as f64,
                    "request": frames.get(i).map(ReplayFrame::describe),
                })
            })
            .collect()
    }

    pub fn loadgen_cpu_util(&self) -> Option<f64> {
        self.util(self.loadgen_cpu)
    }

    /// The load generator used 90% of its CPU or more: the figures describe it as much as the
    /// agent (and a real-time load generator near 95% is throttled by the kernel).
    pub fn loadgen_bound(&self) -> bool {
        self.loadgen_cpu_util().is_some_and(|u| u >= 0.9)
    }

    pub fn latency_us(&self, q: f64) -> Option<f64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(q) as f64 / 1000.0)
    }

    pub fn to_json(&self) -> Value {
        let lat = |h: &Histogram<u64>| {
            if h.is_empty() {
                return Value::Null;
            }
            let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            json!({
                "count": h.len(),
                "mean": h.mean() / 1000.0,
                "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
                "max": h.max() as f64 / 1000.0,
            })
        };
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        json!({
            "connections": self.connections,
            "depth": self.depth,
            "offered_rps": self.offered_rps,
            "achieved_rps": self.achieved_rps(),
            "sent": self.sent,
            "acked": self.acked,
            "acked_in_window": self.acked_in_window,
            "window_s": self.window.as_secs_f64(),
            "latency_us": lat(&self.latency),
            "pacing_lag_us": lat(&self.pacing_lag),
            "errors": {
                "unknown_id": self.errors.unknown_id,
                "wrong_frame_id": self.errors.wrong_frame_id,
                "verdict_mismatch": self.errors.verdict_mismatch,
                "bad_ack": self.errors.bad_ack,
                "unanswered": self.errors.unanswered,
                "total": self.errors.total(),
            },
            "error_samples": self.error_samples,
            "agent_cpu_s": secs(self.agent_cpu),
            "agent_cpu_util": self.agent_cpu_util(),
            "worker_cpu_s": secs(self.worker_cpu),
            "rps_per_agent_core": self.rps_per_agent_core(),
            "loadgen_cpu_util": self.loadgen_cpu_util(),
            "loadgen_bound": self.loadgen_bound(),
            "agent_core_busy_s": secs(self.agent_core_busy),
            "agent_core_other_s": match (self.agent_core_busy, self.agent_cpu) {
                (Some(b), Some(a)) => Some(b.as_secs_f64() - a.as_secs_f64()),
                _ => None,
            },
            "max_backlog": self.max_backlog,
        })
    }
}

/// At a fixed rate, requests due within sixteen periods (at least 20 µs, at most 200 µs) are
/// sent with the one that is due now, in one write: on loopback the sender's CPU also does the
/// receiver's TCP work and wake-up, and each sleep and wake-up of the load generator costs tens
/// of microseconds in this VM, so a write (and a wake-up) per request would cap the load
/// generator far below the agent's ceiling.
fn pacing_slack(period: f64) -> Duration {
    Duration::from_secs_f64((16.0 * period).clamp(20e-6, 200e-6))
}

/// Token of the pacing timer in the mio loop (connections use 0..K).
const TIMER: Token = Token(usize::MAX - 1);

/// A `timerfd` registered in the mio loop's epoll set: wakes the loop when the next request is
/// due, with nanosecond resolution (`epoll_wait`'s own timeout has milliseconds).
struct Timer {
    fd: RawFd,
    armed_for: Option<Instant>,
}

impl Timer {
    fn new(poll: &Poll) -> Result<Timer> {
        // SAFETY: plain system calls on descriptors this function owns; the event struct lives
        // on the stack for the duration of the call.
        unsafe {
            let fd = libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            );
            if fd < 0 {
                return Err(io("create a timerfd")(std::io::Error::last_os_error()));
            }
            let timer = Timer {
                fd,
                armed_for: None,
            };
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: TIMER.0 as u64,
            };
            if libc::epoll_ctl(poll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) != 0 {
                return Err(io("register the timerfd")(std::io::Error::last_os_error()));
            }
            Ok(timer)
        }
    }

    /// Fires at `at` (at once if it is past).
    fn arm(&mut self, at: Instant, now: Instant) -> Result<()> {
        if self.armed_for == Some(at) {
            return Ok(());
        }
        // A zero it_value would disarm the timer: 1 ns means "now".
        let ns = at
            .saturating_duration_since(now)
            .as_nanos()
            .clamp(1, 1 << 40) as i64;
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `spec` lives on the stack; the old value is not asked for.
        let rc = unsafe { libc::timerfd_settime(self.fd, 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io("arm the timerfd")(std::io::Error::last_os_error()));
        }
        self.armed_for = Some(at);
        Ok(())
    }

    /// Consumes an expiry.
    fn clear(&mut self) {
        let mut n = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `n`; EAGAIN when it has not expired is fine.
        unsafe {
            libc::read(self.fd, n.as_mut_ptr().cast(), n.len());
        }
        self.armed_for = None;
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once; closing removes it from the epoll set.
        unsafe {
            libc::close(self.fd);
        }
    }
}

/// One request in flight.
struct Pending {
    sid: u64,
    frame_id: u64,
    frame: usize,
    /// When it was sent (flat out) or due (fixed rate).
    since: Instant,
}

struct Conn {
    stream: TcpStream,
    token: Token,
    /// Registered for WRITABLE too (only while a write is pending: a socket becomes writable
    /// again each time the agent reads, and every such edge would wake the loop for nothing).
    writable: bool,
    out: Vec<u8>,
    out_pos: usize,
    inbuf: Vec<u8>,
    in_flight: Vec<Pending>,
}

/// CPU counters at one instant.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    agent: Option<Duration>,
    worker: Option<Duration>,
    loadgen: Option<Duration>,
    core: Option<Duration>,
}

fn sample(cfg: &ReplayConfig) -> Sample {
    Sample {
        at: Instant::now(),
        agent: cfg.agent_pid.and_then(agent::process_cpu),
        worker: cfg
            .agent_pid
            .and_then(|p| agent::threads_cpu(p, "coraza-worker")),
        loadgen: agent::thread_cpu(),
        core: cfg.agent_cpu.and_then(agent::cpu_busy),
    }
}

fn delta(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    Some(b?.saturating_sub(a?))
}

/// Connects, sends the HELLO and validates the AGENT-HELLO like HAProxy.
fn handshake(
    addr: SocketAddr,
    hello: &[u8],
    depth: usize,
    largest: usize,
) -> Result<std::net::TcpStream> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(io(format!("connect to the agent at {addr}")))?;
    s.set_nodelay(true).map_err(io("set TCP_NODELAY"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io("set a read timeout"))?;
    s.write_all(hello).map_err(io("send the HAPROXY-HELLO"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let used = loop {
        if let Some((frame, used)) = spop::split_frame(&buf, MAX_ACK)
            .map_err(|e| Error::Protocol(format!("answer to HELLO: {e}")))?
        {
            match frame.header.frame_type {
                FrameType::AgentHello => {}
                FrameType::AgentDisconnect => {
                    let d = Disconnect::decode(frame.payload).ok();
                    return Err(Error::Protocol(format!(
                        "agent refused the HELLO: status {:?} {:?}",
                        d.map(|d| d.status_code),
                        d.map(|d| String::from_utf8_lossy(d.message).into_owned())
                    )));
                }
                other => {
                    return Err(Error::Protocol(format!(
                        "answer to HELLO is a {other:?} frame"
                    )))
                }
            }
            if !frame.header.fin() || frame.header.stream_id != 0 || frame.header.frame_id != 0 {
                return Err(Error::Protocol(
                    "AGENT-HELLO without FIN or with non-zero ids (HAProxy: status 4)".into(),
                ));
            }
            let h = AgentHello::decode(frame.payload)
                .map_err(|e| Error::Protocol(format!("AGENT-HELLO: {e}")))?;
            if (h.max_frame_size as usize) + spop::LENGTH_PREFIX < largest {
                return Err(Error::Protocol(format!(
                    "agent max-frame-size {} is smaller than the largest captured frame ({largest} bytes)",
                    h.max_frame_size
                )));
            }
            let pipelining = h
                .capabilities
                .split(|&b| b == b',')
                .any(|c| c.trim_ascii() == b"pipelining");
            if depth > 1 && !pipelining {
                return Err(Error::Protocol(format!(
                    "agent does not announce pipelining (capabilities {:?}) but depth is {depth}",
                    String::from_utf8_lossy(h.capabilities)
                )));
            }
            break used;
        }
        let n = s.read(&mut chunk).map_err(io("read the AGENT-HELLO"))?;
        if n == 0 {
            return Err(Error::Protocol(
                "agent closed the connection during the HELLO".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if used != buf.len() {
        return Err(Error::Protocol(
            "agent sent frames before any NOTIFY".into(),
        ));
    }
    s.set_read_timeout(None)
        .map_err(io("clear the read timeout"))?;
    s.set_nonblocking(true)
        .map_err(io("make the socket non-blocking"))?;
    Ok(s)
}

/// Replays `frames` (cycling) with `hello` on every connection.
pub fn run(cfg: &ReplayConfig, hello: &[u8], frames: &[ReplayFrame]) -> Result<ReplayReport> {
    if frames.is_empty() {
        return Err(Error::Usage("nothing to replay".into()));
    }
    if cfg.connections == 0 || cfg.depth == 0 {
        return Err(Error::Usage(
            "connections and depth must be at least 1".into(),
        ));
    }
    if let Some(r) = cfg.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(Error::Usage(format!("bad rate {r}")));
        }
    }
    if let Some(cpu) = cfg.pin_cpu {
        agent::pin_current_thread(cpu)?;
    }
    if let Some(p) = cfg.priority {
        p.apply()?;
    }
    let largest = frames.iter().map(|f| f.wire_len).max().unwrap_or(0);
    let mut poll = Poll::new().map_err(io("create a poll instance"))?;
    let mut timer = Timer::new(&poll)?;
    let mut conns = Vec::with_capacity(cfg.connections);
    for i in 0..cfg.connections {
        let s = handshake(cfg.addr, hello, cfg.depth, largest)?;
        let mut stream = TcpStream::from_std(s);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .map_err(io("register a connection"))?;
        conns.push(Conn {
            stream,
            token: Token(i),
            writable: false,
            out: Vec::with_capacity(64 * 1024),
            out_pos: 0,
            inbuf: Vec::with_capacity(64 * 1024),
            in_flight: Vec::with_capacity(cfg.depth),
        });
    }

    let mut report = ReplayReport {
        connections: cfg.connections,
        depth: cfg.depth,
        offered_rps: cfg.rate,
        sent: 0,
        acked: 0,
        acked_in_window: 0,
        window: Duration::ZERO,
        latency: histogram(),
        pacing_lag: histogram(),
        errors: Errors::default(),
        error_samples: Vec::new(),
        agent_cpu: None,
        worker_cpu: None,
        loadgen_cpu: None,
        agent_core_busy: None,
        max_backlog: 0,
        per_frame: vec![FrameStat::default(); frames.len()],
    };
    let limit = cfg.max_requests.unwrap_or(u64::MAX);
    let period = cfg.rate.map(|r| 1.0 / r);
    let slack = pacing_slack(period.unwrap_or(0.0));
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let stop_at = measure_from + cfg.duration;
    let due = |seq: u64| match period {
        Some(p) => start + Duration::from_secs_f64(seq as f64 * p),
        None => start,
    };
    let mut seq: u64 = 0;
    let mut backlog: VecDeque<u64> = VecDeque::new();
    let mut rr = 0usize;
    let mut sending = true;
    let mut ended_at = stop_at;
    let mut first: Option<Sample> = None;
    let mut last: Option<Sample> = None;
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 256 * 1024];
    let in_window = |t: Instant| t >= measure_from && t < stop_at;

    loop {
        let now = Instant::now();
        if first.is_none() && now >= measure_from {
            first = Some(sample(cfg));
        }
        // Out of time, or every request of a bounded run has left (not just been queued).
        if sending && (now >= stop_at || (seq >= limit && backlog.is_empty())) {
            sending = false;
            ended_at = now;
            backlog.clear();
            if first.is_none() {
                first = Some(sample(cfg));
            }
            last = Some(sample(cfg));
        }
        if sending {
            match period {
                Some(_) => {
                    // Requests due within the slack leave together (one write per
                    // connection instead of one per request); one sent early is timed from
                    // when it left.
                    while seq < limit && due(seq) <= now + slack {
                        backlog.push_back(seq);
                        seq += 1;
                    }
                    report.max_backlog = report.max_backlog.max(backlog.len());
                    // A batch goes to one connection (one write), the next batch to the next
                    // connection; a full window overflows to the following one.
                    let mut c = rr;
                    let mut tried = 0;
                    while let Some(&s) = backlog.front() {
                        if conns[c].in_flight.len() >= cfg.depth {
                            tried += 1;
                            if tried == conns.len() {
                                break;
                            }
                            c = (c + 1) % conns.len();
                            continue;
                        }
                        backlog.pop_front();
                        let t = due(s);
                        if in_window(t) {
                            report.pacing_lag.saturating_record(
                                now.saturating_duration_since(t).as_nanos().max(1) as u64,
                            );
                        }
                        // Timed from when it was due, or from now if it leaves early.
                        send(&mut conns[c], frames, s, t.min(now));
                        report.sent += 1;
                    }
                    rr = (c + 1) % conns.len();
                }
                None => {
                    for conn in conns.iter_mut() {
                        while conn.in_flight.len() < cfg.depth && seq < limit {
                            send(conn, frames, seq, now);
                            seq += 1;
                            report.sent += 1;
                        }
                    }
                }
            }
        }
        for (i, conn) in conns.iter_mut().enumerate() {
            flush(conn, poll.registry())
                .map_err(io(format!("write to the agent (connection {i})")))?;
        }
        let in_flight: usize = conns.iter().map(|c| c.in_flight.len()).sum();
        if !sending {
            if in_flight == 0 {
                break;
            }
            if now >= ended_at + cfg.drain_timeout {
                report.errors.unanswered += in_flight as u64;
                if report.error_samples.len() < ERROR_SAMPLES {
                    report.error_samples.push(format!(
                        "{in_flight} requests unanswered after the drain timeout"
                    ));
                }
                break;
            }
        }
        let timeout = if !sending {
            Duration::from_millis(10)
        } else {
            // The window's ends need no precision (millisecond `epoll_wait` timeout); the next
            // due request does (the timerfd).
            if period.is_some() && seq < limit && backlog.is_empty() {
                timer.arm(due(seq), now)?;
            }
            let mut next = stop_at;
            if first.is_none() {
                next = next.min(measure_from);
            }
            next.saturating_duration_since(now)
                .min(Duration::from_millis(100))
        };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io("poll")(e)),
        }
        for ev in events.iter() {
            if ev.token() == TIMER {
                timer.clear();
                continue;
            }
            let i = ev.token().0;
            let Some(conn) = conns.get_mut(i) else {
                continue;
            };
            if ev.is_readable() {
                loop {
                    match conn.stream.read(&mut scratch) {
                        Ok(0) => {
                            return Err(Error::Protocol(format!(
                                "agent closed connection {i} with {} requests in flight",
                                conn.in_flight.len()
                            )))
                        }
                        Ok(n) => {
                            conn.inbuf.extend_from_slice(&scratch[..n]);
                            let at = Instant::now();
                            take_acks(conn, i, frames, cfg.expect, at, &mut report, &in_window)?;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(io(format!("read from the agent (connection {i})"))(e))
                        }
                    }
                }
            }
        }
    }
    let first = first.unwrap_or_else(|| sample(cfg));
    let last = last.unwrap_or_else(|| sample(cfg));
    report.window = last.at.saturating_duration_since(first.at);
    report.agent_cpu = delta(first.agent, last.agent);
    report.worker_cpu = delta(first.worker, last.worker);
    report.loadgen_cpu = delta(first.loadgen, last.loadgen);
    report.agent_core_busy = delta(first.core, last.core);
    Ok(report)
}

fn send(conn: &mut Conn, frames: &[ReplayFrame], seq: u64, since: Instant) {
    let index = (seq % frames.len() as u64) as usize;
    let frame = &frames[index];
    frame.encode(seq, &mut conn.out);
    conn.in_flight.push(Pending {
        sid: seq,
        frame_id: frame.frame_id,
        frame: index,
        since,
    });
}

fn flush(conn: &mut Conn, registry: &mio::Registry) -> std::io::Result<()> {
    while conn.out_pos < conn.out.len() {
        match conn.stream.write(&conn.out[conn.out_pos..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => conn.out_pos += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !conn.writable {
                    registry.reregister(
                        &mut conn.stream,
                        conn.token,
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    conn.writable = true;
                }
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    conn.out.clear();
    conn.out_pos = 0;
    if conn.writable {
        registry.reregister(&mut conn.stream, conn.token, Interest::READABLE)?;
        conn.writable = false;
    }
    Ok(())
}

/// Handles every complete frame in the connection's input.
fn take_acks(
    conn: &mut Conn,
    index: usize,
    frames: &[ReplayFrame],
    expect: Expect,
    at: Instant,
    report: &mut ReplayReport,
    in_window: &dyn Fn(Instant) -> bool,
) -> Result<()> {
    let mut consumed = 0;
    loop {
        let split = spop::split_frame(&conn.inbuf[consumed..], MAX_ACK)
            .map_err(|e| Error::Protocol(format!("connection {index}: {e}")))?;
        let Some((frame, used)) = split else { break };
        consumed += used;
        let h = frame.header;
        let fail = |report: &mut ReplayReport, msg: String| {
            if report.error_samples.len() < ERROR_SAMPLES {
                report
                    .error_samples
                    .push(format!("connection {index}: {msg}"));
            }
        };
        match h.frame_type {
            FrameType::Ack => {}
            FrameType::AgentDisconnect => {
                let d = Disconnect::decode(frame.payload).ok();
                return Err(Error::Protocol(format!(
                    "agent disconnected connection {index}: status {:?} {:?}",
                    d.map(|d| d.status_code),
                    d.map(|d| String::from_utf8_lossy(d.message).into_owned())
                )));
            }
            other => {
                report.errors.bad_ack += 1;
                fail(report, format!("unexpected {other:?} frame"));
                continue;
            }
        }
        let Some(pos) = conn.in_flight.iter().position(|p| p.sid == h.stream_id) else {
            report.errors.unknown_id += 1;
            fail(
                report,
                format!("ACK for stream-id {} which is not in flight", h.stream_id),
            );
            continue;
        };
        let p = conn.in_flight.swap_remove(pos);
        report.acked += 1;
        if in_window(at) {
            report.acked_in_window += 1;
        }
        if in_window(p.since) {
            let ns = at.saturating_duration_since(p.since).as_nanos().max(1) as u64;
            report.latency.saturating_record(ns);
            if let Some(s) = report.per_frame.get_mut(p.frame) {
                s.count += 1;
                s.sum_ns += ns;
                s.max_ns = s.max_ns.max(ns);
            }
        }
        if h.frame_id != p.frame_id {
            report.errors.wrong_frame_id += 1;
            fail(
                report,
                format!(
                    "stream-id {}: frame-id {} instead of {}",
                    h.stream_id, h.frame_id, p.frame_id
                ),
            );
            continue;
        }
        if !h.fin() {
            report.errors.bad_ack += 1;
            fail(
                report,
                format!("stream-id {}: ACK without FIN", h.stream_id),
            );
            continue;
        }
        let expected = match expect {
            Expect::IdsOnly => continue,
            Expect::Empty => Some(""),
            Expect::Capture => frames[p.frame].expected.as_deref(),
        };
        let Some(expected) = expected else { continue };
        match verdict_of_ack(frame.payload) {
            Ok(v) if v == expected => {}
            Ok(v) => {
                report.errors.verdict_mismatch += 1;
                fail(
                    report,
                    format!(
                        "frame {} of the capture: verdict {v:?}, expected {expected:?}",
                        p.frame
                    ),
                );
            }
            Err(e) => {
                report.errors.bad_ack += 1;
                fail(report, format!("stream-id {}: {e}", h.stream_id));
            }
        }
    }
    conn.inbuf.drain(..consumed);
    Ok(())
}
