//! One worker: a pinned thread running a mio event loop over its own `SO_REUSEPORT` listener
//! and the connections it accepted (which it owns for their whole life).
//!
//! The loop is the only code that touches sockets. Per readiness event it flushes pending
//! output, reads until `WouldBlock` (retrying `Interrupted`), and feeds what it read to the
//! connection's [`Connection`] state machine, which appends ACKs to the connection's output;
//! all ACKs produced by one read leave in one `write` where the socket takes them. Reads land in
//! a per-worker scratch buffer; a connection keeps bytes of its own only for a frame that is not
//! complete yet or output the socket did not take, and gives large buffers back once empty, so
//! an idle connection costs almost nothing.
//!
//! Must not: block, take locks, or share anything mutable with other threads. The only
//! cross-thread input is the [`Waker`](mio::Waker) that starts the drain.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::connection::{Connection, Next, Phase};
use super::panic_report;
use crate::inspect::Inspector;
use crate::spop;

/// Token of the worker's listener.
pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
/// Token of the worker's waker: the only cross-thread poke, meaning "drain and stop".
pub(crate) const WAKER: Token = Token(usize::MAX - 2);

/// Size of the per-worker read buffer (one read's worth).
const READ_CHUNK: usize = 64 * 1024;
/// Smallest read into a connection's own buffer while it completes a partial frame.
const PARTIAL_READ_MIN: usize = 16 * 1024;
/// A connection's buffers keep up to this much capacity when empty; larger ones are released.
const KEEP_CAPACITY: usize = 16 * 1024;
/// A new connection must complete its HELLO within this (HAProxy's own `timeout hello` is
/// usually 2 s; this only reclaims connections from peers that are not HAProxy).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A frame partly received, or output the peer does not read, must make it within this.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// After our last frame and our FIN, wait this long for the peer to close before closing; this
/// keeps unread input from turning the close into a reset that could discard our last frame.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Deadlines are checked this often.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// How long a drain may take before the remaining connections are closed as they are.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(4);

/// Everything a worker thread is started with.
pub(crate) struct WorkerSetup {
    pub index: usize,
    pub core: Option<core_affinity::CoreId>,
    pub poll: Poll,
    pub listener: TcpListener,
    /// `limits.max_frame_size`.
    pub max_frame_size: u32,
}

/// The thread body: pins, then runs the event loop until a drain completes. A panic that
/// escapes the loop (a bug) is logged once; the loop restarts with fresh state (its
/// connections are closed by unwinding) so the worker keeps serving.
pub(crate) fn run<I: Inspector>(setup: WorkerSetup, inspector: Arc<I>) {
    let index = setup.index;
    if let Some(core) = setup.core {
        if !core_affinity::set_for_current(core) {
            warn!("worker {index}: could not pin to core {}", core.id);
        }
    }
    panic_report::capture_on_this_thread();
    let WorkerSetup {
        index: _,
        core: _,
        poll,
        listener,
        max_frame_size,
    } = setup;
    let mut lifetime = Lifetime {
        index,
        poll,
        listener: Some(listener),
        max_frame_size,
        draining: None,
        accept_paused: false,
    };
    loop {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| lifetime.event_loop(&*inspector)));
        match outcome {
            Ok(()) => break,
            Err(payload) => {
                error!(
                    "worker {index}: event loop panicked, its connections were closed; \
                     restarting: {}",
                    panic_report::describe(payload.as_ref())
                );
                if lifetime.draining.is_some() {
                    break;
                }
                // Do not spin if the fault repeats at once.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    debug!("worker {index}: stopped");
}

/// What survives a restart of the event loop.
struct Lifetime {
    index: usize,
    poll: Poll,
    /// `None` once draining: dropping it refuses new connections.
    listener: Option<TcpListener>,
    max_frame_size: u32,
    /// Set once the waker fired: the drain deadline.
    draining: Option<Instant>,
    /// Accepting hit a resource limit (e.g. EMFILE); retried at each sweep.
    accept_paused: bool,
}

/// A connection and its I/O state.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    proto: Connection,
    /// Bytes read but not consumed yet: an incomplete frame, or frames left by backpressure.
    input: Vec<u8>,
    /// Bytes produced but not written yet.
    output: Vec<u8>,
    /// `input` holds complete frames the state machine has not processed (it asked to flush
    /// first).
    needs_feed: bool,
    io: IoState,
    /// When this connection is given up on, if it is waiting for something.
    deadline: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IoState {
    Open,
    /// Writing the last frames; then shut down our write side.
    Closing,
    /// Our side is done; discarding input until the peer closes (or the linger deadline).
    Lingering,
}

/// Whether the loop keeps a connection after driving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Yes,
    No,
}

/// Reusable per-worker state that connections borrow during one call.
struct Scratch {
    read: Vec<u8>,
}

impl Lifetime {
    fn event_loop<I: Inspector>(&mut self, inspector: &I) {
        let index = self.index;
        let mut state = inspector.new_worker(index);
        let mut conns: Slab<Conn> = Slab::default();
        let mut scratch = Scratch {
            read: vec![0; READ_CHUNK],
        };
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
        debug!("worker {index}: event loop running");
        loop {
            let timeout = if self.draining.is_some() {
                Duration::from_millis(50)
            } else {
                SWEEP_INTERVAL
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // epoll_wait only fails on programming errors; give up on this loop (restart).
                panic!("worker {index}: poll failed: {e}");
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(&mut conns, now),
                    WAKER => self.begin_drain(&mut conns, &mut scratch, inspector, &mut state, now),
                    Token(i) => {
                        let Some(conn) = conns.get_mut(i) else {
                            continue;
                        };
                        if drive(conn, &mut scratch, inspector, &mut state, now) == Keep::No {
                            close(&self.poll, &mut conns, i, "done");
                        }
                    }
                }
            }
            if now >= next_sweep || self.draining.is_some() {
                next_sweep = now + SWEEP_INTERVAL;
                sweep(&self.poll, &mut conns, now);
                if self.accept_paused {
                    self.accept_all(&mut conns, now);
                }
            }
            if let Some(deadline) = self.draining {
                if conns.is_empty() {
                    info!("worker {index}: drained");
                    return;
                }
                if now >= deadline {
                    warn!(
                        "worker {index}: drain timed out, closing {} connections",
                        conns.len()
                    );
                    return;
                }
            }
        }
    }

    fn accept_all(&mut self, conns: &mut Slab<Conn>, now: Instant) {
        self.accept_paused = false;
        if self.draining.is_some() {
            return;
        }
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    // ACKs are small and pipelined: never let Nagle hold one back.
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!("{peer}: TCP_NODELAY: {e}");
                    }
                    let conn = Conn {
                        stream,
                        peer,
                        proto: Connection::new(self.max_frame_size, peer),
                        input: Vec::new(),
                        output: Vec::new(),
                        needs_feed: false,
                        io: IoState::Open,
                        deadline: Some(now + HELLO_TIMEOUT),
                    };
                    let i = conns.insert(conn);
                    let Some(conn) = conns.get_mut(i) else {
                        continue;
                    };
                    // Edge-triggered, both directions, once: no re-registration per request.
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut conn.stream, Token(i), interest)
                    {
                        warn!("{peer}: cannot register connection: {e}");
                        conns.remove(i);
                    } else {
                        debug!("worker {}: accepted {peer}", self.index);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_resource_limit(&e) => {
                    warn!(
                        "worker {}: cannot accept ({e}); retrying shortly",
                        self.index
                    );
                    self.accept_paused = true;
                    return;
                }
                // The peer went away before we accepted (ECONNABORTED) and similar: next one.
                Err(e) => debug!("worker {}: accept: {e}", self.index),
            }
        }
    }

    /// Stops accepting, answers every frame already received, and ends each connection with
    /// AGENT-DISCONNECT; the loop then runs until every connection closed or the deadline.
    fn begin_drain<I: Inspector>(
        &mut self,
        conns: &mut Slab<Conn>,
        scratch: &mut Scratch,
        inspector: &I,
        state: &mut I::Worker,
        now: Instant,
    ) {
        if self.draining.is_some() {
            return;
        }
        info!(
            "worker {}: draining {} connections",
            self.index,
            conns.len()
        );
        self.draining = Some(now + DRAIN_TIMEOUT);
        // Closing the listener refuses new connections; connections the kernel had queued on
        // it are reset (HAProxy retries them elsewhere or fails open).
        if let Some(mut listener) = self.listener.take() {
            if let Err(e) = self.poll.registry().deregister(&mut listener) {
                debug!("worker {}: deregister listener: {e}", self.index);
            }
        }
        for i in conns.indices() {
            let Some(conn) = conns.get_mut(i) else {
                continue;
            };
            let mut keep = Keep::Yes;
            if conn.io == IoState::Open {
                // Read and answer what is already in the socket.
                keep = drive(conn, scratch, inspector, state, now);
                if keep == Keep::Yes && conn.io == IoState::Open {
                    feed_all_buffered(conn, inspector, state);
                }
                if keep == Keep::Yes && conn.io == IoState::Open {
                    conn.proto.shutdown(&mut conn.output);
                    conn.io = IoState::Closing;
                    keep = drive(conn, scratch, inspector, state, now);
                }
            }
            if keep == Keep::No {
                close(&self.poll, conns, i, "drained");
            }
        }
    }
}

fn is_resource_limit(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Advances one connection as far as the socket allows.
fn drive<I: Inspector>(
    conn: &mut Conn,
    scratch: &mut Scratch,
    inspector: &I,
    state: &mut I::Worker,
    now: Instant,
) -> Keep {
    let keep = drive_io(conn, scratch, inspector, state, now);
    if keep == Keep::Yes {
        release_large(&mut conn.input);
        release_large(&mut conn.output);
        conn.deadline = match conn.io {
            IoState::Lingering => conn.deadline,
            IoState::Closing => conn.deadline.or(Some(now + STALL_TIMEOUT)),
            IoState::Open if conn.proto.phase() == Phase::AwaitingHello => conn.deadline,
            IoState::Open if conn.input.is_empty() && conn.output.is_empty() => None,
            IoState::Open => conn.deadline.or(Some(now + STALL_TIMEOUT)),
        };
    }
    keep
}

fn drive_io<I: Inspector>(
    conn: &mut Conn,
    scratch: &mut Scratch,
    inspector: &I,
    state: &mut I::Worker,
    now: Instant,
) -> Keep {
    loop {
        if !conn.output.is_empty() {
            match flush(&conn.stream, &mut conn.output) {
                Ok(true) => {}
                Ok(false) => return Keep::Yes, // the socket is full: wait for WRITABLE
                Err(e) => {
                    debug!("{}: write: {e}", conn.peer);
                    return Keep::No;
                }
            }
        }
        match conn.io {
            IoState::Open => {}
            IoState::Closing => {
                // Everything is written: send our FIN, then wait for the peer's.
                if let Err(e) = conn.stream.shutdown(Shutdown::Write) {
                    debug!("{}: shutdown: {e}", conn.peer);
                    return Keep::No;
                }
                conn.io = IoState::Lingering;
                conn.deadline = Some(now + LINGER_TIMEOUT);
                continue;
            }
            IoState::Lingering => return discard_until_eof(conn, scratch),
        }
        if conn.needs_feed {
            feed_buffered(conn, inspector, state);
            continue;
        }
        match read_and_feed(conn, scratch, inspector, state) {
            Ok(true) => {}
            Ok(false) => return Keep::Yes,
            Err(e) => {
                debug!("{}: read: {e}", conn.peer);
                return Keep::No;
            }
        }
    }
}

/// Writes as much of `output` as the socket takes. `Ok(true)`: all of it.
fn flush(mut stream: &TcpStream, output: &mut Vec<u8>) -> io::Result<bool> {
    let mut written = 0;
    let result = loop {
        if written == output.len() {
            break Ok(true);
        }
        match stream.write(&output[written..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    output.drain(..written);
    result
}

/// One read, fed to the state machine. `Ok(true)`: call again; `Ok(false)`: `WouldBlock`.
fn read_and_feed<I: Inspector>(
    conn: &mut Conn,
    scratch: &mut Scratch,
    inspector: &I,
    state: &mut I::Worker,
) -> io::Result<bool> {
    let progress = if conn.input.is_empty() {
        // Common case: whole frames per read, processed straight from the worker's buffer.
        let n = match read_some(&conn.stream, &mut scratch.read)? {
            Some(0) => return peer_closed(conn),
            Some(n) => n,
            None => return Ok(false),
        };
        let data = &scratch.read[..n];
        let p = conn.proto.process(data, &mut conn.output, inspector, state);
        conn.input
            .extend_from_slice(data.get(p.consumed..).unwrap_or(&[]));
        p
    } else {
        // Completing a frame: read into the connection's own buffer, sized for the frame
        // (whose length the state machine has already checked against the limit).
        let frame_len = spop::peek_frame_len(&conn.input, conn.proto.frame_limit())
            .ok()
            .flatten();
        let missing = frame_len
            .unwrap_or(spop::LENGTH_PREFIX)
            .saturating_sub(conn.input.len());
        let old_len = conn.input.len();
        conn.input
            .resize(old_len + missing.max(PARTIAL_READ_MIN), 0);
        let got = match read_some(&conn.stream, &mut conn.input[old_len..]) {
            Ok(got) => got,
            Err(e) => {
                conn.input.truncate(old_len);
                return Err(e);
            }
        };
        conn.input.truncate(old_len + got.unwrap_or(0));
        match got {
            Some(0) => return peer_closed(conn),
            None => return Ok(false),
            Some(_) => {}
        }
        let p = conn
            .proto
            .process(&conn.input, &mut conn.output, inspector, state);
        conn.input.drain(..p.consumed);
        p
    };
    match progress.next {
        Next::Continue => {}
        Next::Flush => conn.needs_feed = true,
        Next::Close => close_after_flush(conn),
    }
    Ok(true)
}

/// Feeds frames left in the connection's buffer by backpressure.
fn feed_buffered<I: Inspector>(conn: &mut Conn, inspector: &I, state: &mut I::Worker) {
    let p = conn
        .proto
        .process(&conn.input, &mut conn.output, inspector, state);
    conn.input.drain(..p.consumed);
    conn.needs_feed = p.next == Next::Flush;
    if p.next == Next::Close {
        close_after_flush(conn);
    }
}

/// Feeds every buffered frame regardless of the output high-water mark (drain only: the
/// answers must all go out before AGENT-DISCONNECT). Each round starts from an empty buffer, so
/// each consumes at least one frame.
fn feed_all_buffered<I: Inspector>(conn: &mut Conn, inspector: &I, state: &mut I::Worker) {
    let mut answers = Vec::new();
    while conn.needs_feed && conn.io == IoState::Open {
        answers.clear();
        let p = conn
            .proto
            .process(&conn.input, &mut answers, inspector, state);
        conn.output.extend_from_slice(&answers);
        conn.input.drain(..p.consumed);
        conn.needs_feed = p.next == Next::Flush;
        if p.next == Next::Close {
            close_after_flush(conn);
        }
    }
}

fn close_after_flush(conn: &mut Conn) {
    conn.io = IoState::Closing;
    conn.needs_feed = false;
    conn.input = Vec::new();
    conn.deadline = None;
}

/// The peer closed its side: answers already produced are still flushed, then we close. A
/// partial frame is dropped (HAProxy never half-sends a frame it still wants answered).
fn peer_closed(conn: &mut Conn) -> io::Result<bool> {
    if !conn.input.is_empty() || conn.proto.phase() == Phase::AwaitingHello {
        debug!(
            "{}: peer closed ({} bytes of an incomplete frame dropped)",
            conn.peer,
            conn.input.len()
        );
    }
    close_after_flush(conn);
    Ok(true)
}

/// Reads once; `Ok(None)` for `WouldBlock`; retries `Interrupted`.
fn read_some(mut stream: &TcpStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match stream.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn discard_until_eof(conn: &mut Conn, scratch: &mut Scratch) -> Keep {
    loop {
        match read_some(&conn.stream, &mut scratch.read) {
            Ok(Some(0)) | Err(_) => return Keep::No,
            Ok(Some(_)) => continue,
            Ok(None) => return Keep::Yes,
        }
    }
}

/// Gives back a large buffer once it is empty (after a big frame or a burst of output).
fn release_large(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
        *buf = Vec::new();
    }
}

fn sweep(poll: &Poll, conns: &mut Slab<Conn>, now: Instant) {
    for i in conns.indices() {
        let expired = conns
            .get_mut(i)
            .and_then(|c| c.deadline)
            .is_some_and(|d| now >= d);
        if expired {
            let why = match conns.get_mut(i) {
                Some(c) if c.io == IoState::Lingering => "peer did not close after our last frame",
                Some(c) if c.proto.phase() == Phase::AwaitingHello => "no HELLO in time",
                _ => "stalled frame or unread output",
            };
            close(poll, conns, i, why);
        }
    }
}

fn close(poll: &Poll, conns: &mut Slab<Conn>, i: usize, why: &str) {
    if let Some(mut conn) = conns.remove(i) {
        debug!("{}: closing ({why})", conn.peer);
        drop(poll.registry().deregister(&mut conn.stream));
    }
}

/// Connections of one worker, indexed by their mio token. Freed slots are reused.
struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            if let Some(slot) = self.entries.get_mut(i) {
                *slot = Some(value);
                return i;
            }
        }
        self.entries.push(Some(value));
        self.entries.len() - 1
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.entries.get_mut(i).and_then(Option::as_mut)
    }

    fn remove(&mut self, i: usize) -> Option<T> {
        let value = self.entries.get_mut(i).and_then(Option::take);
        if value.is_some() {
            self.len -= 1;
            self.free.push(i);
        }
        value
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Indices in use now (a snapshot, so entries may be removed while iterating it).
    fn indices(&self) -> Vec<usize> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_some())
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_reuses_slots() {
        let mut s: Slab<&str> = Slab::default();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!((a, b, s.len()), (0, 1, 2));
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None);
        assert_eq!(s.insert("c"), a);
        assert_eq!(s.get_mut(a), Some(&mut "c"));
        assert_eq!(s.indices(), vec![0, 1]);
        assert!(s.get_mut(7).is_none());
    }
}
