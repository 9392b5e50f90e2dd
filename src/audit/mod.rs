//! The audit log: JSON lines for operators tuning the WAF, written by one dedicated thread.
//!
//! Owns the audit file (`audit.path`, `/var/log/coraza/audit.log` by default), the bounded queue
//! that feeds it, the on-disk schema (`src/audit/SCHEMA.md`) and the counters of what was
//! written and lost. Must not: make a worker wait (for the queue, the disk or a lock), panic on
//! event content, or stop the agent when the disk fails.
//!
//! ```text
//! worker ──AuditSender::send(Event)──▶ bounded queue ──▶ writer thread ──▶ audit.log
//!         (try_send; full → dropped,     (audit.queue)    (drain → encode → one write per
//!          counted, never waited for)                      batch; follows rotation)
//! ```
//!
//! - **Workers** build an owned [`Event`] only for transactions in which a logging rule matched
//!   and call [`AuditSender::send`]. It never blocks: when the queue is full the event is
//!   dropped and counted in [`AuditStats::dropped_full`]; the writer reports drops with
//!   `log::warn!` at most once per 10 s (count since the last report, and the total).
//! - **The writer** drains everything queued into one buffer (up to 1 MiB) and writes it with
//!   one `write` call (more only if the kernel writes short). While events keep coming it
//!   polls the queue every 2 ms rather than sleeping in it, so a `send` never has to wake it
//!   (no syscall on the request path); idle, it sleeps in the queue. A write error (full disk,
//!   I/O error) drops that batch: its events are counted in [`AuditStats::lost_io`], reported at
//!   most once per 10 s, and the next batch is tried as usual.
//! - **Rotation.** The file is opened with `O_APPEND`, so `copytruncate` works (writes land at
//!   the new end). Rename or removal (logrotate without `copytruncate`) is detected by comparing
//!   the (device, inode) of the path with the open file's, at least once per second and before
//!   a batch at most every 100 ms, and the path is reopened (created if missing). Reopening is
//!   also requested by SIGHUP, once [`AuditLog::install_sighup_handler`] has been called (main
//!   does; the handler only sets a flag, which the writer reads within 250 ms), or directly by
//!   [`AuditLog::reopen`]. A reopen that fails keeps the old file and is retried.
//! - **Shutdown** ([`AuditLog::shutdown`], called by the server after its drain on SIGTERM):
//!   refuses new events, writes everything already queued, fsyncs, and joins the thread.
//!   Nothing queued before the call is lost; an event sent after it is counted in
//!   [`AuditStats::dropped_closed`]. [`AuditLog::shutdown_timeout`] bounds the wait for a
//!   stalled disk. Dropping an [`AuditLog`] shuts down too, waiting at most [`DROP_WAIT`].
//! - **Start-up.** [`AuditLog::spawn`] opens (creates) the file before returning, so an
//!   unwritable path is an [`AuditError::Open`] naming the path and the effective uid; main
//!   prints it and exits non-zero. The parent directory is not created.
//!
//! Durability: batches go to the page cache; the file is fsynced only at shutdown. A crash of
//! the process loses what was still queued; a crash of the host may lose what the kernel had
//! not written back.
//!
//! Cost (`cargo bench --bench audit_bench`, 2-core VM, quiet, 2025-11-25): a typical event
//! (12 headers, 3 messages, 2.9 KB of JSON) encodes in 2.0 µs (serde_json, same shape: 3.7 µs);
//! a `send` costs a worker 0.3-0.45 µs; the writer sustains ~155k events/s (440 MB/s) to
//! `/dev/null`, and 45k-120k events/s (130-350 MB/s) to a file on disk, bounded by the disk
//! once the kernel's dirty-page limit is reached.
//!
//! Wiring (main and the server):
//!
//! ```no_run
//! use std::time::Duration;
//! use coraza_spoa::{audit::AuditLog, config::Config};
//!
//! let cfg = Config::default();
//! let (mut audit, sender) = AuditLog::spawn(&cfg.audit).unwrap_or_else(|e| {
//!     eprintln!("coraza-spoa: {e}"); // names the path and the uid
//!     std::process::exit(1);
//! });
//! audit.install_sighup_handler().expect("SIGHUP handler");
//! let metrics = audit.stats(); // AtomicU64 counters, readable at any time
//! // Each worker gets `sender.clone()` and calls `sender.send(event)` (never blocks).
//! # drop((sender, metrics));
//! // On SIGTERM, after the workers have drained:
//! if let Err(e) = audit.shutdown_timeout(Duration::from_secs(10)) {
//!     eprintln!("coraza-spoa: {e}");
//! }
//! ```

mod event;
mod json;
mod writer;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

pub use event::{
    severity_level, Action, Event, Message, RequestInfo, ResponseInfo, RuleEngineMode,
};
pub use json::{Encoder, REDACTED};

use crate::config;

// Events cross threads, and every worker owns a sender.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Event>();
    assert_send::<AuditSender>();
    assert_send::<AuditLog>();
};

/// How long dropping an [`AuditLog`] that was not shut down waits for the writer.
pub const DROP_WAIT: Duration = Duration::from_secs(5);

/// What travels on the queue. Events are boxed so a queue slot is one pointer: the queue is
/// allocated up front at its full capacity.
pub(crate) enum Msg {
    Event(Box<Event>),
    /// Wakes the writer (shutdown, reopen) without waiting for its idle tick.
    Wake,
}

/// Counters of the audit path, shared with whoever reports metrics. All monotonic.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Events completely written to the file.
    pub written: AtomicU64,
    /// Bytes written to the file.
    pub bytes: AtomicU64,
    /// Batches written (write attempts, successful or not).
    pub batches: AtomicU64,
    /// Events dropped by `send` because the queue was full.
    pub dropped_full: AtomicU64,
    /// Events sent after `shutdown` began, refused.
    pub dropped_closed: AtomicU64,
    /// Events lost because writing them failed (full disk, I/O error).
    pub lost_io: AtomicU64,
    /// Times the file was reopened (SIGHUP, `reopen`, rotation detected).
    pub reopens: AtomicU64,
}

/// A plain copy of [`AuditStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStatsSnapshot {
    pub written: u64,
    pub bytes: u64,
    pub batches: u64,
    pub dropped_full: u64,
    pub dropped_closed: u64,
    pub lost_io: u64,
    pub reopens: u64,
}

impl AuditStats {
    pub fn snapshot(&self) -> AuditStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AuditStatsSnapshot {
            written: get(&self.written),
            bytes: get(&self.bytes),
            batches: get(&self.batches),
            dropped_full: get(&self.dropped_full),
            dropped_closed: get(&self.dropped_closed),
            lost_io: get(&self.lost_io),
            reopens: get(&self.reopens),
        }
    }
}

/// Lets shutdown know when no sender can still enqueue (see `Writer::finish`).
#[derive(Debug, Default)]
pub(crate) struct Gate {
    closed: AtomicBool,
    /// Senders between their check of `closed` and the end of their `try_send`.
    inflight: AtomicUsize,
}

/// Why the audit log could not start or stop cleanly.
#[derive(Debug)]
pub enum AuditError {
    /// `audit.queue` is 0.
    ZeroQueue,
    /// The file cannot be opened for appending.
    Open {
        path: PathBuf,
        uid: u32,
        source: io::Error,
    },
    /// The writer thread could not be started.
    Spawn(io::Error),
    /// The SIGHUP handler could not be installed.
    Signal(io::Error),
    /// The final fsync at shutdown failed: the last events may not be on disk.
    Sync { path: PathBuf, source: io::Error },
    /// The writer thread panicked (a bug): what it still held is lost.
    WriterPanicked,
    /// The writer had not finished after the shutdown's time limit.
    ShutdownTimedOut {
        path: PathBuf,
        limit: Duration,
        pending: usize,
    },
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::ZeroQueue => f.write_str("audit.queue must be at least 1"),
            AuditError::Open { path, uid, source } => write!(
                f,
                "cannot open audit log {} for appending (running as uid {uid}): {source}",
                path.display()
            ),
            AuditError::Spawn(e) => write!(f, "cannot start the audit writer thread: {e}"),
            AuditError::Signal(e) => write!(f, "cannot install the SIGHUP handler: {e}"),
            AuditError::Sync { path, source } => {
                write!(
                    f,
                    "audit log {}: final fsync failed: {source}",
                    path.display()
                )
            }
            AuditError::WriterPanicked => f.write_str("the audit writer thread panicked"),
            AuditError::ShutdownTimedOut {
                path,
                limit,
                pending,
            } => write!(
                f,
                "audit log {}: the writer did not finish within {limit:?}; {pending} queued \
                 events and the batch being written are lost",
                path.display()
            ),
        }
    }
}

impl std::error::Error for AuditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuditError::Open { source, .. } | AuditError::Sync { source, .. } => Some(source),
            AuditError::Spawn(e) | AuditError::Signal(e) => Some(e),
            AuditError::ZeroQueue
            | AuditError::WriterPanicked
            | AuditError::ShutdownTimedOut { .. } => None,
        }
    }
}

/// The workers' handle: cheap to clone, one per worker.
#[derive(Clone)]
pub struct AuditSender {
    tx: Sender<Msg>,
    stats: Arc<AuditStats>,
    gate: Arc<Gate>,
}

impl AuditSender {
    /// Queues `event` for the writer without ever waiting. Returns false when it was dropped
    /// (queue full, or shutdown begun); drops are counted in [`AuditStats`].
    pub fn send(&self, event: Event) -> bool {
        self.gate.inflight.fetch_add(1, Ordering::SeqCst);
        let queued = if self.gate.closed.load(Ordering::SeqCst) {
            self.stats.dropped_closed.fetch_add(1, Ordering::Relaxed);
            false
        } else if self.tx.is_full() {
            // Saves boxing an event that would be refused (the check races with the writer,
            // which is harmless: `try_send` below decides).
            self.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
            false
        } else {
            match self.tx.try_send(Msg::Event(Box::new(event))) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.stats.dropped_closed.fetch_add(1, Ordering::Relaxed);
                    false
                }
            }
        };
        self.gate.inflight.fetch_sub(1, Ordering::SeqCst);
        queued
    }
}

/// The owner's handle on the writer thread: shutdown, reopen, counters.
pub struct AuditLog {
    running: Option<Running>,
    path: PathBuf,
    stats: Arc<AuditStats>,
    reopen_requested: Arc<AtomicBool>,
}

struct Running {
    thread: JoinHandle<Result<(), AuditError>>,
    /// Disconnected when the writer thread ends, however it ends: lets shutdown wait with a
    /// limit (std has no join with a timeout).
    done: Receiver<()>,
    wake: Sender<Msg>,
    gate: Arc<Gate>,
    sighup: Option<signal_hook::SigId>,
}

impl AuditLog {
    /// Opens (creates) the audit file and starts the writer thread.
    ///
    /// Fails, naming the path and the uid, when the file cannot be opened for appending.
    pub fn spawn(cfg: &config::Audit) -> Result<(AuditLog, AuditSender), AuditError> {
        if cfg.queue == 0 {
            return Err(AuditError::ZeroQueue);
        }
        let (file, file_id) = writer::open_initial(&cfg.path)?;
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue);
        let stats = Arc::new(AuditStats::default());
        let gate = Arc::new(Gate::default());
        let reopen_requested = Arc::new(AtomicBool::new(false));
        let w = writer::Writer::new(writer::WriterParts {
            path: cfg.path.clone(),
            file,
            file_id,
            rx,
            encoder: Encoder::new(&cfg.redact_headers),
            stats: Arc::clone(&stats),
            gate: Arc::clone(&gate),
            reopen_requested: Arc::clone(&reopen_requested),
            queue_capacity: cfg.queue,
        });
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let _done = done_tx;
                w.run()
            })
            .map_err(AuditError::Spawn)?;
        let sender = AuditSender {
            tx: tx.clone(),
            stats: Arc::clone(&stats),
            gate: Arc::clone(&gate),
        };
        let log = AuditLog {
            running: Some(Running {
                thread,
                done,
                wake: tx,
                gate,
                sighup: None,
            }),
            path: cfg.path.clone(),
            stats,
            reopen_requested,
        };
        Ok((log, sender))
    }

    /// Makes SIGHUP reopen the file (logrotate's `postrotate kill -HUP`). Process-wide, so main
    /// calls it once; other SIGHUP handlers (signal-hook) keep working. Removed at shutdown.
    pub fn install_sighup_handler(&mut self) -> Result<(), AuditError> {
        let Some(running) = self.running.as_mut() else {
            return Ok(());
        };
        if running.sighup.is_none() {
            let id = signal_hook::flag::register(
                signal_hook::consts::SIGHUP,
                Arc::clone(&self.reopen_requested),
            )
            .map_err(AuditError::Signal)?;
            running.sighup = Some(id);
        }
        Ok(())
    }

    /// Asks the writer to reopen the file before its next batch (what SIGHUP does).
    pub fn reopen(&self) {
        self.reopen_requested.store(true, Ordering::Release);
        if let Some(running) = &self.running {
            // A full queue means the writer is busy and will see the flag before its next batch.
            let _ = running.wake.try_send(Msg::Wake);
        }
    }

    /// The counters (shared: they keep counting while the writer runs).
    pub fn stats(&self) -> Arc<AuditStats> {
        Arc::clone(&self.stats)
    }

    /// The configured file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the writer: refuses new events, writes everything already queued, fsyncs the
    /// file, joins the thread. Call it after the workers have drained (SIGTERM). Waits as long
    /// as the disk takes; see [`AuditLog::shutdown_timeout`] for a bounded wait.
    pub fn shutdown(mut self) -> Result<(), AuditError> {
        self.stop(None)
    }

    /// [`AuditLog::shutdown`], waiting at most `limit` for the writer (a stalled disk, a hung
    /// NFS mount). On time-out the writer is left to finish on its own while the process
    /// exits, and whatever it still holds is lost ([`AuditError::ShutdownTimedOut`]).
    pub fn shutdown_timeout(mut self, limit: Duration) -> Result<(), AuditError> {
        self.stop(Some(limit))
    }

    fn stop(&mut self, limit: Option<Duration>) -> Result<(), AuditError> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        if let Some(id) = running.sighup {
            signal_hook::low_level::unregister(id);
        }
        running.gate.closed.store(true, Ordering::SeqCst);
        // A full queue needs no wake-up: the writer is busy and checks `closed` between batches.
        let _ = running.wake.try_send(Msg::Wake);
        if let Some(limit) = limit {
            if let Err(RecvTimeoutError::Timeout) = running.done.recv_timeout(limit) {
                return Err(AuditError::ShutdownTimedOut {
                    path: self.path.clone(),
                    limit,
                    pending: running.wake.len(),
                });
            }
        }
        running
            .thread
            .join()
            .unwrap_or(Err(AuditError::WriterPanicked))
    }
}

impl Drop for AuditLog {
    /// Shuts down if [`AuditLog::shutdown`] was not called, waiting at most [`DROP_WAIT`]
    /// (a drop may run while unwinding, where hanging on a stalled disk helps no one).
    fn drop(&mut self) {
        if let Err(e) = self.stop(Some(DROP_WAIT)) {
            log::error!("{e}");
        }
    }
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("running", &self.running.is_some())
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

impl fmt::Debug for AuditSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSender")
            .field("queued", &self.tx.len())
            .finish()
    }
}
