//! The writer thread: owns the audit file, batches events into it, follows rotation, reports
//! losses.
//!
//! Must not: block a worker (it only ever receives), stop on an I/O error (it counts the lost
//! events and tries again with the next batch), or buffer without bound (a batch is capped at
//! [`BATCH_BYTES`], and a failed batch is counted lost, not retried).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::json::Encoder;
use super::{AuditError, AuditStats, Gate, Msg};

/// Longest the writer sleeps when idle; bounds how late it notices a SIGHUP or a shutdown that
/// could not wake it.
const IDLE_TICK: Duration = Duration::from_millis(250);
/// Pause between batches while events keep coming: lets a batch accumulate, and keeps the
/// writer out of the queue's sleep so senders never have to wake it.
const LINGER: Duration = Duration::from_millis(2);
/// Rotation check before a batch, at most this often.
const CHECK_BEFORE_BATCH: Duration = Duration::from_millis(100);
/// Rotation check when idle, at least this often.
const CHECK_IDLE: Duration = Duration::from_secs(1);
/// Drops and write failures are reported at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// A batch is written once it holds this many bytes, even if more events are queued.
pub(super) const BATCH_BYTES: usize = 1 << 20;
/// The batch buffer is shrunk back after an unusually large event made it grow past this.
const KEEP_CAPACITY: usize = 4 << 20;
/// Mode of a file we create (the umask still applies): events carry client data, so not
/// world-readable; group-readable for the log shipper.
const FILE_MODE: u32 = 0o640;

/// (device, inode) of an open file, to recognise the file behind the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(md: &std::fs::Metadata) -> FileId {
        FileId {
            dev: md.dev(),
            ino: md.ino(),
        }
    }
}

/// Opens `path` for appending, creating it if needed.
///
/// O_APPEND makes every write land at the current end of the file: after a `copytruncate` the
/// next batch starts at offset 0 instead of leaving a hole of NULs up to our old offset.
fn open_append(path: &Path) -> io::Result<(File, FileId)> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)?;
    let md = file.metadata()?;
    Ok((file, FileId::of(&md)))
}

/// Opens the file at start-up, or explains why it cannot.
pub(super) fn open_initial(path: &Path) -> Result<(File, FileId), AuditError> {
    // A missing log directory is created (mode from the umask), so a fresh host or a volume
    // mounted elsewhere works; an existing directory we may not write to is still an error.
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        let _ = std::fs::create_dir_all(dir);
    }
    open_append(path).map_err(|source| {
        AuditError::Open {
            path: path.to_owned(),
            // SAFETY: geteuid has no preconditions and cannot fail.
            uid: unsafe { libc::geteuid() },
            source,
        }
    })
}

/// Rate limiter for diagnostics: the first report goes out at once, then at most one per period.
struct Every {
    next: Instant,
}

impl Every {
    fn new(now: Instant) -> Every {
        Every { next: now }
    }

    fn ready(&mut self, now: Instant) -> bool {
        if now >= self.next {
            self.next = now + REPORT_EVERY;
            true
        } else {
            false
        }
    }
}

pub(super) struct Writer {
    path: PathBuf,
    file: File,
    file_id: FileId,
    rx: Receiver<Msg>,
    encoder: Encoder,
    /// The batch being built: complete lines only.
    buf: Vec<u8>,
    /// Events encoded into `buf`.
    batch_events: u64,
    /// The previous write stopped in the middle of a line; the next one first ends it, so one
    /// failure costs one event, not the next one too.
    partial_line: bool,
    stats: Arc<AuditStats>,
    gate: Arc<Gate>,
    reopen_requested: Arc<AtomicBool>,
    queue_capacity: usize,
    last_check: Instant,
    drop_report: Every,
    dropped_reported: u64,
    io_report: Every,
    lost_reported: u64,
    last_io_error: Option<io::Error>,
    io_failing: bool,
    reopen_report: Every,
}

pub(super) struct WriterParts {
    pub path: PathBuf,
    pub file: File,
    pub file_id: FileId,
    pub rx: Receiver<Msg>,
    pub encoder: Encoder,
    pub stats: Arc<AuditStats>,
    pub gate: Arc<Gate>,
    pub reopen_requested: Arc<AtomicBool>,
    pub queue_capacity: usize,
}

impl Writer {
    pub(super) fn new(p: WriterParts) -> Writer {
        let now = Instant::now();
        Writer {
            path: p.path,
            file: p.file,
            file_id: p.file_id,
            rx: p.rx,
            encoder: p.encoder,
            buf: Vec::with_capacity(64 << 10),
            batch_events: 0,
            partial_line: false,
            stats: p.stats,
            gate: p.gate,
            reopen_requested: p.reopen_requested,
            queue_capacity: p.queue_capacity,
            last_check: now,
            drop_report: Every::new(now),
            dropped_reported: 0,
            io_report: Every::new(now),
            lost_reported: 0,
            last_io_error: None,
            io_failing: false,
            reopen_report: Every::new(now),
        }
    }

    /// The thread's body: until shutdown, wait for events, drain the queue into one batch,
    /// follow rotation, write the batch, report losses.
    pub(super) fn run(mut self) -> Result<(), AuditError> {
        loop {
            // Idle: sleep in the queue until an event comes (or the tick, for SIGHUP and
            // rotation checks).
            let mut closing = match self.rx.recv_timeout(IDLE_TICK) {
                Ok(msg) => {
                    self.take(msg);
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            // Busy: while events keep coming, poll every LINGER instead of sleeping in the
            // queue. A receiver asleep in the queue must be woken by the sender, which costs
            // the worker a futex syscall per event; a polling one costs it nothing.
            loop {
                let emptied = self.fill_batch();
                let had_events = self.batch_events > 0;
                self.maintain();
                self.flush();
                self.report(Instant::now(), false);
                closing |= self.gate.closed.load(Ordering::SeqCst);
                if closing {
                    return self.finish();
                }
                if emptied {
                    if !had_events {
                        break;
                    }
                    std::thread::sleep(LINGER);
                    if self.rx.is_empty() {
                        break;
                    }
                }
            }
        }
    }

    fn take(&mut self, msg: Msg) {
        if let Msg::Event(ev) = msg {
            self.encoder.encode(&ev, &mut self.buf);
            self.batch_events += 1;
        }
    }

    /// Moves queued events into the batch until the queue is empty (returns true) or the batch
    /// is full (false).
    fn fill_batch(&mut self) -> bool {
        while self.buf.len() < BATCH_BYTES {
            match self.rx.try_recv() {
                Ok(msg) => self.take(msg),
                Err(_) => return true,
            }
        }
        false
    }

    /// Reopens on request (SIGHUP, `reopen()`), or when the path no longer names our file.
    fn maintain(&mut self) {
        let now = Instant::now();
        if self.reopen_requested.swap(false, Ordering::AcqRel) {
            self.last_check = now;
            self.reopen("reopen requested");
            return;
        }
        let period = if self.buf.is_empty() {
            CHECK_IDLE
        } else {
            CHECK_BEFORE_BATCH
        };
        if now.duration_since(self.last_check) < period {
            return;
        }
        self.last_check = now;
        match std::fs::metadata(&self.path) {
            Ok(md) if FileId::of(&md) == self.file_id => {}
            Ok(_) => self.reopen("the path names another file (rotated)"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.reopen("the file was renamed or removed")
            }
            Err(e) => {
                if self.reopen_report.ready(now) {
                    log::warn!(
                        "audit log {}: cannot check for rotation: {e}; still writing to the \
                         open file",
                        self.path.display()
                    );
                }
            }
        }
    }

    fn reopen(&mut self, why: &str) {
        match open_append(&self.path) {
            Ok((file, id)) => {
                // Writes are unbuffered: nothing of ours is pending in the old file.
                self.file = file;
                self.file_id = id;
                self.partial_line = false;
                self.stats.reopens.fetch_add(1, Ordering::Relaxed);
                log::info!("audit log {} reopened: {why}", self.path.display());
            }
            Err(e) => {
                if self.reopen_report.ready(Instant::now()) {
                    log::warn!(
                        "audit log {}: cannot reopen ({why}): {e}; still writing to the \
                         previous file, retrying",
                        self.path.display()
                    );
                }
            }
        }
    }

    /// Writes the batch with as few `write` calls as the kernel allows. Lines that did not make
    /// it are counted in `lost_io`; the batch is dropped either way.
    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.batch_events);
        let mut result = Ok(());
        if self.partial_line {
            result = self.file.write_all(b"\n");
            if result.is_ok() {
                self.partial_line = false;
            }
        }
        let mut written = 0usize;
        while result.is_ok() && written < self.buf.len() {
            match self.file.write(self.buf.get(written..).unwrap_or_default()) {
                Ok(0) => result = Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => written = written.saturating_add(n).min(self.buf.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => result = Err(e),
            }
        }
        let done = self.buf.get(..written).unwrap_or_default();
        let lines = memchr::memchr_iter(b'\n', done).count() as u64;
        self.stats.written.fetch_add(lines, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(written as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                if self.io_failing {
                    self.io_failing = false;
                    log::info!("audit log {}: writes succeed again", self.path.display());
                }
            }
            Err(e) => {
                self.partial_line |= done.last().is_some_and(|&b| b != b'\n');
                self.stats
                    .lost_io
                    .fetch_add(events.saturating_sub(lines), Ordering::Relaxed);
                self.last_io_error = Some(e);
                self.io_failing = true;
            }
        }
        self.buf.clear();
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf.shrink_to(BATCH_BYTES);
        }
    }

    /// Rate-limited warnings for events dropped on a full queue and lost to write errors.
    fn report(&mut self, now: Instant, force: bool) {
        let dropped = self.stats.dropped_full.load(Ordering::Relaxed);
        if dropped != self.dropped_reported && (self.drop_report.ready(now) || force) {
            log::warn!(
                "audit log {}: {} events dropped because the queue ({} events) was full since \
                 the last report, {} since start",
                self.path.display(),
                dropped - self.dropped_reported,
                self.queue_capacity,
                dropped
            );
            self.dropped_reported = dropped;
        }
        let lost = self.stats.lost_io.load(Ordering::Relaxed);
        if lost != self.lost_reported && (self.io_report.ready(now) || force) {
            let err = self
                .last_io_error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default();
            log::warn!(
                "audit log {}: write failed ({err}): {} events lost since the last report, {} \
                 since start",
                self.path.display(),
                lost - self.lost_reported,
                lost
            );
            self.lost_reported = lost;
        }
    }

    /// Shutdown: write everything that was queued, then fsync.
    fn finish(mut self) -> Result<(), AuditError> {
        // `closed` is set, so a sender that is not in flight now can no longer enqueue; once
        // none is in flight, one more drain takes everything.
        loop {
            let quiet = self.gate.inflight.load(Ordering::SeqCst) == 0;
            while !self.fill_batch() {
                self.flush();
            }
            self.flush();
            if quiet {
                break;
            }
            std::thread::yield_now();
        }
        self.report(Instant::now(), true);
        let s = &self.stats;
        log::info!(
            "audit log {} closed: {} events written, {} dropped (queue full), {} lost (I/O)",
            self.path.display(),
            s.written.load(Ordering::Relaxed),
            s.dropped_full.load(Ordering::Relaxed),
            s.lost_io.load(Ordering::Relaxed)
        );
        match self.file.sync_data() {
            Ok(()) => Ok(()),
            // Pipes and character devices (/dev/stdout) cannot be synced; nothing to do.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            Err(source) => Err(AuditError::Sync {
                path: self.path,
                source,
            }),
        }
    }
}
