//! SIGHUP really delivered to the process reopens the audit log (logrotate's `postrotate`).
//!
//! Alone in its own test binary: the handler is process-wide, and SIGHUP without it would end
//! the test process.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use coraza_spoa::audit::{Action, AuditLog, Event, Message, RequestInfo, RuleEngineMode};
use coraza_spoa::config;

fn event(n: u64) -> Event {
    Event {
        unique_id: format!("tx-{n}"),
        timestamp: SystemTime::now(),
        client_ip: Some(IpAddr::from([198, 51, 100, 9])),
        client_port: 40000,
        server_ip: None,
        server_port: 80,
        app: Arc::from("default"),
        request: RequestInfo {
            method: b"POST".to_vec(),
            uri: b"/login".to_vec(),
            http_version: b"1.1".to_vec(),
            headers: vec![(b"host".to_vec(), b"example.com".to_vec())],
        },
        response: None,
        messages: vec![Message {
            id: 930120,
            msg: b"OS File Access Attempt".to_vec(),
            data: b"Matched Data: /etc/passwd found within ARGS:file: /etc/passwd".to_vec(),
            severity: Some("CRITICAL"),
            tags: Arc::from(vec!["attack-lfi".to_string()]),
            phase: 2,
            matched_var: b"ARGS:file".to_vec(),
            matched_value: b"/etc/passwd".to_vec(),
            file: Arc::from("REQUEST-930-APPLICATION-ATTACK-LFI.conf"),
            line: 99,
        }],
        action: Action::Log,
        rule_engine: RuleEngineMode::DetectionOnly,
        anomaly_score: 5,
        inbound_anomaly_score: 5,
        outbound_anomaly_score: 0,
        interrupted_by: None,
        status: None,
    }
}

fn count_lines(path: &Path) -> usize {
    let text = fs::read_to_string(path).unwrap_or_default();
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("valid JSON line");
    }
    text.lines().count()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn raise_sighup() {
    // SAFETY: plain syscalls; the handler installed by the audit log only sets a flag.
    let rc = unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    assert_eq!(rc, 0);
}

#[test]
fn sighup_reopens_and_rename_plus_sighup_loses_nothing() {
    let dir: PathBuf =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("audit-sighup-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.log");
    let rotated = dir.join("audit.log.1");
    let cfg = config::Audit {
        path: path.clone(),
        queue: 65536,
        ..config::Audit::default()
    };
    let (mut log, sender) = AuditLog::spawn(&cfg).unwrap();
    log.install_sighup_handler().unwrap();
    let stats = log.stats();

    // Nothing changed on disk, so only the signal can cause this reopen.
    raise_sighup();
    wait_until("the SIGHUP reopen", || {
        stats.reopens.load(Ordering::Relaxed) == 1
    });

    // Rotation as logrotate does it without copytruncate: rename, then SIGHUP, while events
    // keep coming.
    const N: u64 = 6000;
    let producer = std::thread::spawn(move || {
        let mut accepted = 0u64;
        for n in 0..N {
            accepted += u64::from(sender.send(event(n)));
            if n % 10 == 9 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        accepted
    });
    wait_until("a third of the events", || {
        stats.written.load(Ordering::Relaxed) >= N / 3
    });
    fs::rename(&path, &rotated).unwrap();
    raise_sighup();
    let accepted = producer.join().unwrap();
    log.shutdown().unwrap();

    let (old, new) = (count_lines(&rotated), count_lines(&path));
    assert_eq!(accepted, N);
    assert!(old > 0 && new > 0, "old {old}, new {new}");
    assert_eq!((old + new) as u64, N);
    assert!(stats.reopens.load(Ordering::Relaxed) >= 2);
    fs::remove_dir_all(&dir).unwrap();
}
