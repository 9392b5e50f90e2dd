//! The audit writer end to end: real files, real rotation, a real full disk (`/dev/full`).
//!
//! Every test counts lines in the files it reads back; the expected counts are the events the
//! test itself sent (and `send` accepted), never constants.

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use coraza_spoa::audit::{
    Action, AuditError, AuditLog, AuditSender, Event, Message, RequestInfo, ResponseInfo,
    RuleEngineMode,
};
use coraza_spoa::config;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fresh directory under the target's temporary directory (on disk, removed on success).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("audit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn audit_config(path: &Path, queue: usize) -> config::Audit {
    config::Audit {
        path: path.to_owned(),
        queue,
        ..config::Audit::default()
    }
}

fn hdr(name: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
    (name.as_bytes().to_vec(), value.as_bytes().to_vec())
}

/// A typical logged transaction: 12 request headers, 3 matched rules, enforced.
fn event(n: u64) -> Event {
    let tags: Arc<[String]> = Arc::from(vec![
        "application-multi".to_string(),
        "language-multi".to_string(),
        "platform-multi".to_string(),
        "attack-sqli".to_string(),
        "paranoia-level/1".to_string(),
        "OWASP_CRS".to_string(),
    ]);
    let file: Arc<str> = Arc::from("REQUEST-942-APPLICATION-ATTACK-SQLI.conf");
    let msg = |id: u32, text: &str, var: &str, value: &str| Message {
        id,
        msg: text.as_bytes().to_vec(),
        data: format!("Matched Data: {value} found within {var}: {value}").into_bytes(),
        severity: Some("CRITICAL"),
        tags: Arc::clone(&tags),
        phase: 2,
        matched_var: var.as_bytes().to_vec(),
        matched_value: value.as_bytes().to_vec(),
        file: Arc::clone(&file),
        line: 46,
    };
    Event {
        unique_id: format!("tx-{n}"),
        timestamp: SystemTime::now(),
        client_ip: Some(IpAddr::from([192, 0, 2, 7])),
        client_port: 51234,
        server_ip: Some(IpAddr::from([10, 0, 0, 1])),
        server_port: 443,
        app: Arc::from("default"),
        request: RequestInfo {
            method: b"GET".to_vec(),
            uri: format!("/search?q=1%27%20or%201%3D1--&n={n}").into_bytes(),
            http_version: b"1.1".to_vec(),
            headers: vec![
                hdr("host", "shop.example.com"),
                hdr(
                    "user-agent",
                    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101",
                ),
                hdr(
                    "accept",
                    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                ),
                hdr("accept-language", "en-US,en;q=0.5"),
                hdr("accept-encoding", "gzip, deflate, br"),
                hdr("referer", "https://shop.example.com/"),
                hdr("cookie", "session=0123456789abcdef; theme=dark"),
                hdr("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.secret"),
                hdr("x-forwarded-for", "198.51.100.23"),
                hdr("x-request-id", "5f0c6f5e-8b4e-4c1e-9d7a-2f9f8f0e1a2b"),
                hdr("connection", "keep-alive"),
                hdr("upgrade-insecure-requests", "1"),
            ],
        },
        response: None,
        messages: vec![
            msg(
                942100,
                "SQL Injection Attack Detected via libinjection",
                "ARGS:q",
                "s&1c",
            ),
            msg(
                942190,
                "Detects MSSQL code execution and information gathering attempts",
                "ARGS:q",
                "' or 1=1--",
            ),
            msg(
                949110,
                "Inbound Anomaly Score Exceeded (Total Score: 10)",
                "TX:blocking_inbound_anomaly_score",
                "10",
            ),
        ],
        action: Action::Deny,
        rule_engine: RuleEngineMode::On,
        anomaly_score: 10 + (n % 7) as i64,
        inbound_anomaly_score: 10,
        outbound_anomaly_score: 0,
        interrupted_by: Some(949110),
        status: Some(403),
    }
}

/// Every line of the file, parsed; panics on a line that is not one JSON object.
fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("{}: {e}", path.display()),
    };
    assert!(
        !text.contains(&0),
        "{}: NUL bytes in the file",
        path.display()
    );
    let text = String::from_utf8(text).expect("the audit log is UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{}: unterminated last line",
        path.display()
    );
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid JSON line ({e}): {l}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect()
}

fn ids(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|v| v["transaction"]["id"].as_str().unwrap().to_string())
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Diagnostics captured from the `log` crate, to check what operators would see.
struct Capture(Mutex<Vec<(log::Level, String)>>);

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        self.0
            .lock()
            .unwrap()
            .push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

fn capture_logs() {
    // Several tests call this; only the first registration succeeds, which is what we want.
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

fn logged(level: log::Level, needles: &[&str]) -> bool {
    CAPTURE
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|(l, m)| *l == level && needles.iter().all(|n| m.contains(n)))
}

/// Sends `count` events from another thread at a steady pace, so rotation happens mid-stream.
fn send_steadily(sender: AuditSender, count: u64, pace: Duration) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut accepted = 0;
        for n in 0..count {
            if sender.send(event(n)) {
                accepted += 1;
            }
            if n % 10 == 9 {
                std::thread::sleep(pace);
            }
        }
        accepted
    })
}

// ---------------------------------------------------------------------------------------------
// Content

#[test]
fn n_events_give_n_json_lines_with_their_data() {
    let dir = TempDir::new("n-lines");
    let path = dir.join("audit.log");
    let (log, sender) = AuditLog::spawn(&audit_config(&path, 4096)).unwrap();
    let stats = log.stats();
    const N: u64 = 3000;
    let mut accepted = 0;
    for n in 0..N {
        let mut ev = event(n);
        ev.messages[0].id = 942_000 + (n % 1000) as u32;
        if n % 5 == 0 {
            ev.action = Action::Log;
            ev.rule_engine = RuleEngineMode::DetectionOnly;
            ev.interrupted_by = None;
            ev.status = None;
        }
        if n % 3 == 0 {
            ev.response = Some(ResponseInfo {
                status: 200,
                headers: vec![hdr("content-type", "text/html"), hdr("set-cookie", "a=b")],
            });
        }
        // The writer may fall behind a tight loop; wait for room rather than drop here.
        while !sender.send(ev.clone()) {
            std::thread::sleep(Duration::from_micros(200));
        }
        accepted += 1;
    }
    log.shutdown().unwrap();

    let lines = read_lines(&path);
    assert_eq!(lines.len() as u64, accepted);
    let s = stats.snapshot();
    assert_eq!(s.written, accepted);
    assert_eq!(s.bytes, fs::metadata(&path).unwrap().len());
    assert_eq!(s.lost_io, 0);
    for (n, v) in lines.iter().enumerate() {
        let n = n as u64;
        // One sender: the file keeps its order.
        assert_eq!(v["transaction"]["id"], format!("tx-{n}"));
        let req = &v["transaction"]["request"];
        assert_eq!(req["method"], "GET");
        assert_eq!(req["uri"], format!("/search?q=1%27%20or%201%3D1--&n={n}"));
        assert_eq!(req["http_version"], "1.1");
        assert_eq!(
            req["headers"]["host"],
            serde_json::json!(["shop.example.com"])
        );
        assert_eq!(
            req["headers"]["authorization"],
            serde_json::json!(["[redacted]"])
        );
        assert_eq!(req["headers"].as_object().unwrap().len(), 12);
        assert_eq!(v["transaction"]["client_ip"], "192.0.2.7");
        assert_eq!(v["transaction"]["host_port"], 443);
        let m = &v["messages"];
        assert_eq!(m.as_array().unwrap().len(), 3);
        assert_eq!(m[0]["data"]["id"], 942_000 + n % 1000);
        assert_eq!(m[1]["data"]["id"], 942190);
        assert_eq!(m[2]["data"]["id"], 949110);
        assert_eq!(
            m[0]["message"],
            "SQL Injection Attack Detected via libinjection"
        );
        assert_eq!(
            m[1]["data"]["data"],
            "Matched Data: ' or 1=1-- found within ARGS:q: ' or 1=1--"
        );
        assert_eq!(m[1]["data"]["matched_var"], "ARGS:q");
        assert_eq!(m[1]["data"]["matched_value"], "' or 1=1--");
        assert_eq!(m[1]["data"]["severity"], 2);
        assert_eq!(m[1]["data"]["tags"][3], "attack-sqli");
        assert_eq!(v["anomaly_score"], 10 + n % 7);
        let (action, engine) = if n % 5 == 0 {
            ("log", "DetectionOnly")
        } else {
            ("deny", "On")
        };
        assert_eq!(
            (v["action"].as_str(), v["rule_engine"].as_str()),
            (Some(action), Some(engine))
        );
        if n % 5 == 0 {
            assert_eq!(v["status"], serde_json::Value::Null);
        } else {
            assert_eq!(
                (v["status"].as_u64(), v["interrupted_by"].as_u64()),
                (Some(403), Some(949110))
            );
        }
        let res = &v["transaction"]["response"];
        if n % 3 == 0 {
            assert_eq!(res["status"], 200);
            assert_eq!(
                res["headers"]["set-cookie"],
                serde_json::json!(["[redacted]"])
            );
        } else {
            assert!(res.is_null());
        }
    }
}

#[test]
fn existing_file_is_appended_to() {
    let dir = TempDir::new("append");
    let path = dir.join("audit.log");
    fs::write(&path, "{\"earlier\":true}\n").unwrap();
    let (log, sender) = AuditLog::spawn(&audit_config(&path, 16)).unwrap();
    assert!(sender.send(event(1)));
    log.shutdown().unwrap();
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["earlier"], true);
    assert_eq!(lines[1]["transaction"]["id"], "tx-1");
}

// ---------------------------------------------------------------------------------------------
// Rotation

/// Runs a steady stream of `count` events, applies `rotate` once a third has been written, and
/// returns (accepted, lines in the rotated file, lines in the new file, all ids).
fn rotate_mid_stream(
    dir: &TempDir,
    count: u64,
    rotate: impl FnOnce(&AuditLog, &Path, &Path),
) -> (u64, Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let path = dir.join("audit.log");
    let rotated = dir.join("audit.log.1");
    let (log, sender) = AuditLog::spawn(&audit_config(&path, 65536)).unwrap();
    let stats = log.stats();
    // ~10 events per 2 ms: the stream lasts about 2 s for 10k events, longer than the writer
    // needs to notice a rename on its own.
    let producer = send_steadily(sender, count, Duration::from_millis(2));
    wait_until("a third of the events", Duration::from_secs(30), || {
        stats.written.load(Ordering::Relaxed) >= count / 3
    });
    rotate(&log, &path, &rotated);
    let accepted = producer.join().unwrap();
    log.shutdown().unwrap();
    let s = stats.snapshot();
    assert_eq!(
        s.dropped_full, 0,
        "the queue is large enough for this stream"
    );
    assert_eq!(s.lost_io, 0);
    assert!(s.reopens >= 1, "{s:?}");
    (accepted, read_lines(&rotated), read_lines(&path))
}

fn assert_nothing_lost(
    count: u64,
    accepted: u64,
    old: &[serde_json::Value],
    new: &[serde_json::Value],
) {
    assert_eq!(accepted, count);
    assert!(
        !old.is_empty() && !new.is_empty(),
        "old {}, new {}",
        old.len(),
        new.len()
    );
    assert_eq!((old.len() + new.len()) as u64, accepted);
    let all: BTreeSet<String> = ids(old).into_iter().chain(ids(new)).collect();
    let want: BTreeSet<String> = (0..count).map(|n| format!("tx-{n}")).collect();
    assert_eq!(all, want, "every event exactly once across both files");
}

#[test]
fn rename_then_reopen_loses_nothing() {
    let dir = TempDir::new("rename-reopen");
    const N: u64 = 10_000;
    let (accepted, old, new) = rotate_mid_stream(&dir, N, |log, path, rotated| {
        fs::rename(path, rotated).unwrap();
        // What logrotate's postrotate `kill -HUP` does, without the signal.
        log.reopen();
    });
    assert_nothing_lost(N, accepted, &old, &new);
}

#[test]
fn rename_alone_is_detected_and_loses_nothing() {
    let dir = TempDir::new("rename-alone");
    const N: u64 = 10_000;
    let (accepted, old, new) = rotate_mid_stream(&dir, N, |_, path, rotated| {
        fs::rename(path, rotated).unwrap();
    });
    assert_nothing_lost(N, accepted, &old, &new);
}

#[test]
fn replaced_file_is_detected() {
    // logrotate `create`: rename, then a new file at the path, before the writer looks.
    let dir = TempDir::new("replaced");
    const N: u64 = 10_000;
    let (accepted, old, new) = rotate_mid_stream(&dir, N, |_, path, rotated| {
        fs::rename(path, rotated).unwrap();
        fs::write(path, "").unwrap();
    });
    assert_nothing_lost(N, accepted, &old, &new);
}

#[test]
fn removed_file_is_recreated() {
    let dir = TempDir::new("removed");
    let path = dir.join("audit.log");
    let (log, sender) = AuditLog::spawn(&audit_config(&path, 1024)).unwrap();
    let stats = log.stats();
    assert!(sender.send(event(0)));
    wait_until("the first event", Duration::from_secs(10), || {
        stats.written.load(Ordering::Relaxed) == 1
    });
    fs::remove_file(&path).unwrap();
    // Events written before the writer notices go to the unlinked file (that is what removing
    // a log being written means); the writer must notice within a second and recreate it.
    let mut n = 1;
    wait_until("the file to be recreated", Duration::from_secs(5), || {
        assert!(sender.send(event(n)));
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
        path.exists()
    });
    assert!(sender.send(event(n)));
    log.shutdown().unwrap();
    let lines = read_lines(&path);
    assert_eq!(
        ids(&lines).last().map(String::as_str),
        Some(format!("tx-{n}").as_str())
    );
    assert!(stats.snapshot().reopens >= 1);
}

#[test]
fn copytruncate_keeps_appending_at_the_new_end() {
    let dir = TempDir::new("copytruncate");
    let path = dir.join("audit.log");
    let copy = dir.join("audit.log.1");
    let (log, sender) = AuditLog::spawn(&audit_config(&path, 4096)).unwrap();
    let stats = log.stats();
    for n in 0..500 {
        assert!(sender.send(event(n)));
    }
    wait_until("the first 500", Duration::from_secs(10), || {
        stats.written.load(Ordering::Relaxed) == 500
    });
    let size_before = fs::metadata(&path).unwrap().len();
    // logrotate copytruncate: copy, then truncate the file in place (same inode).
    fs::copy(&path, &copy).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    for n in 500..800 {
        assert!(sender.send(event(n)));
    }
    log.shutdown().unwrap();

    let old = read_lines(&copy);
    let new = read_lines(&path);
    assert_eq!(old.len(), 500);
    assert_eq!(
        new.len(),
        300,
        "read_lines also rejects the NULs a non-append writer leaves"
    );
    assert_eq!(ids(&new).first().map(String::as_str), Some("tx-500"));
    let s = stats.snapshot();
    assert_eq!(s.bytes, size_before + fs::metadata(&path).unwrap().len());
    assert_eq!(
        s.reopens, 0,
        "copytruncate keeps the inode: no reopen needed"
    );
}

// ---------------------------------------------------------------------------------------------
// Shutdown

#[test]
fn shutdown_with_a_full_queue_writes_everything_queued() {
    let dir = TempDir::new("full-queue");
    let path = dir.join("audit.log");
    const QUEUE: usize = 5000;
    let (log, sender) = AuditLog::spawn(&audit_config(&path, QUEUE)).unwrap();
    let stats = log.stats();
    let template = event(0);
    // Fill the queue: keep sending until it refuses (the writer drains concurrently, and is
    // slower than cloning an event), then a little more so it is full at shutdown.
    let (mut accepted, mut refused, mut n) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused < 100 && Instant::now() < deadline {
        let mut ev = template.clone();
        ev.unique_id = format!("tx-{n}");
        n += 1;
        if sender.send(ev) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        refused >= 100,
        "the queue never filled ({accepted} accepted)"
    );
    let unwritten_at_shutdown = accepted - stats.written.load(Ordering::Relaxed);
    assert!(
        unwritten_at_shutdown >= QUEUE as u64 / 2,
        "{unwritten_at_shutdown} pending"
    );
    log.shutdown().unwrap();

    let lines = read_lines(&path);
    assert_eq!(
        lines.len() as u64,
        accepted,
        "{unwritten_at_shutdown} were pending"
    );
    let s = stats.snapshot();
    assert_eq!(
        (s.written, s.dropped_full, s.dropped_closed),
        (accepted, refused, 0)
    );
    // Refused events are the ones missing; the accepted ones are all there, in order.
    let got = ids(&lines);
    assert!(got.windows(2).all(|w| id_num(&w[0]) < id_num(&w[1])));
    // A sender that outlives the log is refused and counted, and never blocks.
    assert!(!sender.send(event(n)));
    assert_eq!(stats.snapshot().dropped_closed, 1);
}

fn id_num(id: &str) -> u64 {
    id.trim_start_matches("tx-").parse().unwrap()
}

#[test]
fn queue_full_is_reported_in_the_diagnostics() {
    capture_logs();
    let dir = TempDir::new("drop-report");
    let path = dir.join("audit.log");
    let (log, sender) = AuditLog::spawn(&audit_config(&path, 1)).unwrap();
    let template = event(0);
    let mut refused = 0;
    for _ in 0..10_000 {
        if !sender.send(template.clone()) {
            refused += 1;
        }
    }
    assert!(refused > 0);
    let stats = log.stats();
    log.shutdown().unwrap();
    assert_eq!(stats.snapshot().dropped_full, refused);
    let shown = path.display().to_string();
    let total = format!("{refused} since start");
    assert!(
        logged(
            log::Level::Warn,
            &[&shown, "dropped", "queue (1 events) was full", &total]
        ),
        "{:?}",
        CAPTURE.0.lock().unwrap()
    );
    // Rate limited: the first drop is reported at once, the rest of the burst (well under
    // 10 s) only in the final report at shutdown.
    let reports = CAPTURE
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, m)| *l == log::Level::Warn && m.contains(&shown) && m.contains("dropped"))
        .count();
    assert!((1..=2).contains(&reports), "{reports} reports");
}

#[test]
fn dropping_the_log_also_drains() {
    let dir = TempDir::new("drop");
    let path = dir.join("audit.log");
    let (log, sender) = AuditLog::spawn(&audit_config(&path, 1000)).unwrap();
    for n in 0..200 {
        assert!(sender.send(event(n)));
    }
    drop(log);
    assert_eq!(read_lines(&path).len(), 200);
}

// ---------------------------------------------------------------------------------------------
// Failures

struct SendTimes {
    accepted: u64,
    total: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Sends `n` events from another thread, timing each `send`. Fails (rather than hangs) if the
/// sends have not all returned within 60 s: a send that waited for the disk would never return.
fn timed_sends(sender: &AuditSender, n: usize) -> SendTimes {
    let sender = sender.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let events: Vec<Event> = (0..n as u64).map(event).collect();
        let mut latencies = Vec::with_capacity(n);
        let mut accepted = 0u64;
        let started = Instant::now();
        for ev in events {
            let t = Instant::now();
            accepted += u64::from(sender.send(ev));
            latencies.push(t.elapsed());
        }
        let total = started.elapsed();
        latencies.sort();
        let _ = tx.send(SendTimes {
            accepted,
            total,
            p50: latencies[n / 2],
            p99: latencies[n * 99 / 100],
            max: latencies[n - 1],
        });
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("send() blocked")
}

#[test]
fn stalled_disk_does_not_stall_send() {
    // A FIFO nobody reads stands in for a disk that stopped answering: once the pipe buffer
    // (64 KiB) is full the writer thread blocks inside write(2), the queue fills, and sends
    // must keep returning at once (refused and counted) instead of waiting.
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = TempDir::new("stalled");
    let fifo = dir.join("audit.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // Open the read end first (non-blocking) so the writer's open does not wait for a reader.
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    const QUEUE: usize = 1000;
    let (log, sender) = AuditLog::spawn(&audit_config(&fifo, QUEUE)).unwrap();
    let stats = log.stats();

    const N: usize = 20_000;
    let SendTimes {
        accepted,
        total,
        p50,
        p99,
        max,
    } = timed_sends(&sender, N);
    eprintln!(
        "send() with a stalled writer: {N} sends in {total:?} (p50 {p50:?}, p99 {p99:?}, \
         max {max:?}); {accepted} queued"
    );
    // Accepted: what the pipe (64 KiB) took, one batch (at most 1 MiB, ~370 events) and the
    // queue (1000); everything else was refused, not waited for. The latency bound only absorbs
    // a busy machine's scheduling noise.
    assert!(accepted < (QUEUE + 600) as u64, "{accepted}");
    assert_eq!(stats.snapshot().dropped_full, N as u64 - accepted);
    assert!(max < Duration::from_millis(500), "max send latency {max:?}");
    let written = stats.snapshot().written;
    assert!(
        written * 2000 <= 1 << 16,
        "only what fits in the pipe: {written}"
    );

    // Shutdown cannot finish while the disk is stalled; a bounded wait says so.
    let err = log
        .shutdown_timeout(Duration::from_millis(300))
        .unwrap_err();
    assert!(
        matches!(err, AuditError::ShutdownTimedOut { pending, .. } if pending > 0),
        "{err}"
    );
    assert!(
        err.to_string().contains(&fifo.display().to_string()),
        "{err}"
    );

    // The disk comes back: the writer, left running, still delivers everything that was
    // accepted, and nothing else.
    let drain = std::thread::spawn(move || {
        let mut data = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) => return data, // the writer closed its end: it has finished
                Ok(n) => data.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
    });
    let data = drain.join().unwrap();
    let text = String::from_utf8(data).unwrap();
    let mut count = 0u64;
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
        count += 1;
    }
    assert_eq!(count, accepted);
    assert_eq!(stats.snapshot().written, accepted);
}

#[test]
fn full_disk_does_not_stall_send_and_counts_lost_events() {
    capture_logs();
    let path = Path::new("/dev/full");
    assert!(path.exists(), "/dev/full is a standard Linux device");
    let (log, sender) = AuditLog::spawn(&audit_config(path, 1024)).unwrap();
    let stats = log.stats();
    const N: usize = 20_000;
    let SendTimes {
        accepted,
        total,
        p50,
        p99,
        max,
    } = timed_sends(&sender, N);
    eprintln!(
        "send() to a full disk: {N} sends in {total:?} (p50 {p50:?}, p99 {p99:?}, max {max:?}); \
         {accepted} queued"
    );
    // A send that waited for the disk would wait forever here; these bounds only absorb a
    // busy shared machine's scheduling noise.
    assert!(max < Duration::from_millis(500), "max send latency {max:?}");
    assert!(total < Duration::from_secs(5), "{total:?}");

    wait_until(
        "every queued event to be accounted for",
        Duration::from_secs(20),
        || stats.lost_io.load(Ordering::Relaxed) == accepted,
    );
    let s = stats.snapshot();
    assert_eq!(
        (s.written, s.lost_io, s.dropped_full),
        (0, accepted, N as u64 - accepted)
    );
    // The writer keeps running: more events are accepted and counted too.
    assert!(sender.send(event(0)));
    wait_until("the extra event", Duration::from_secs(10), || {
        stats.lost_io.load(Ordering::Relaxed) == accepted + 1
    });
    log.shutdown().unwrap();
    assert!(
        logged(
            log::Level::Warn,
            &["/dev/full", "write failed", "events lost"]
        ),
        "{:?}",
        CAPTURE.0.lock().unwrap()
    );
}

#[test]
fn unwritable_path_is_a_clear_error() {
    let dir = TempDir::new("unwritable");
    let uid = unsafe { libc::geteuid() };
    // A parent that is a regular file cannot be created as a directory.
    fs::write(dir.join("a-file"), b"").unwrap();
    let mut cases = vec![
        (dir.join("a-file/audit.log"), "Not a directory"),
        (dir.0.clone(), "Is a directory"),
    ];
    if uid != 0 {
        // Root ignores file permissions; this case only means something for other users.
        let ro = dir.join("read-only");
        fs::create_dir(&ro).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
        cases.push((ro.join("audit.log"), "Permission denied"));
    }
    for (path, reason) in cases {
        let err = AuditLog::spawn(&audit_config(&path, 16)).unwrap_err();
        assert!(matches!(err, AuditError::Open { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains(&format!("uid {uid}")), "{text}");
        assert!(text.contains(reason), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }
}

#[test]
fn a_missing_log_directory_is_created() {
    let dir = TempDir::new("missing-dir");
    let path = dir.join("coraza/nested/audit.log");
    let (log, sender) = AuditLog::spawn(&audit_config(&path, 16)).unwrap();
    assert!(sender.send(event(1)));
    log.shutdown().unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 1);
}

#[test]
fn zero_queue_is_refused() {
    let dir = TempDir::new("zero-queue");
    let err = AuditLog::spawn(&audit_config(&dir.join("audit.log"), 0)).unwrap_err();
    assert!(matches!(err, AuditError::ZeroQueue), "{err:?}");
}

#[test]
fn many_senders_lose_nothing() {
    let dir = TempDir::new("many-senders");
    let path = dir.join("audit.log");
    let (log, sender) = AuditLog::spawn(&audit_config(&path, 65536)).unwrap();
    let stats = log.stats();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let (sender, stop, sent) = (sender.clone(), Arc::clone(&stop), Arc::clone(&sent));
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 2500 {
                    if sender.send(event(w * 1_000_000 + n)) {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    log.shutdown().unwrap();
    let lines = read_lines(&path);
    let s = stats.snapshot();
    assert_eq!(lines.len() as u64, sent.load(Ordering::Relaxed));
    assert_eq!(s.written + s.dropped_full, 10_000);
    let unique: BTreeSet<String> = ids(&lines).into_iter().collect();
    assert_eq!(unique.len(), lines.len());
}
