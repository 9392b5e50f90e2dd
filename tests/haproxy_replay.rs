//! The CRS regression suite replayed through a real HAProxy 2.6 (issue #6): every go-ftw stage
//! of the pinned CRS is written on a socket to HAProxy running the reference configuration
//! (`tests/haproxy/`, response inspection on), which consults an in-process agent
//! (`Server` + `Waf`) whose ruleset is compiled at test time from `tests/crs/regression.conf`
//! (the configuration `tests/crs_regression.rs` uses: PL4, detection only, XML attributes on),
//! and forwards to a loopback backend that answers as albedo (CRS's test backend) does.
//!
//! Matching without marker requests: the test configuration exposes the agent's transaction id
//! (`x-coraza-id`, the ACK's `id`) on every response; the audit log carries the same id
//! (`transaction.id`). Each stage is scored as go-ftw scores a WAF log (`common::ftw`), the
//! log lines being the audit messages of that transaction (request and response lines)
//! rendered ModSecurity-style. A stage HAProxy answered itself (400, 501...) has no id: the WAF
//! never saw it, its log is empty.
//!
//! The test fails when a scorable test fails that `tests/haproxy/replay-exclusions.txt` does not
//! list (the list holds what HAProxy's own parsing and normalisation prevent, with reasons; at
//! most 15 entries), or when a listed test passes (the entry is stale), or when no test ran.
//! Tests whose stages failed are re-sent once, one at a time, before scoring (a busy machine
//! can push an evaluation past HAProxy's 500 ms processing timeout: the request then passes
//! unlogged, as the fail-open design intends).
//!
//! Environment: `CRS_DIR` (default `../shared/crs/v4.25.1`), `CRS_REPLAY_FILTER=<substring>`
//! (only matching test ids; exclusions not enforced), `CRS_REPLAY_CONCURRENCY` (default 4),
//! `CRS_REPLAY_VERBOSE=1` (log lines and responses of failing tests). Failures are also written
//! to `target/haproxy-replay-failures.txt`. Without `haproxy`, the test FAILS unless
//! `CORAZA_SKIP_HAPROXY=1`.

mod common;
#[path = "haproxy/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ftw::{self, FtwTest, StageVerdict, TestVerdict};
use common::wire;
use coraza_spoa::audit::AuditLog;
use coraza_spoa::config::{Application, Config};
use coraza_spoa::engine::{log::esc, Ruleset};
use coraza_spoa::server::Server;
use coraza_spoa::waf::Waf;
use harness::{send_raw, Haproxy, Switches, TempDir};
use serde_json::Value;

/// Most exclusions the policy allows (coraza-spoa documents 54 for the same path).
const MAX_EXCLUSIONS: usize = 15;
/// Client read timeout per request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn crs_dir() -> PathBuf {
    let dir = std::env::var_os("CRS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| harness::repo_root().join("../shared/crs/v4.25.1"));
    assert!(
        dir.join("tests/regression/tests").is_dir(),
        "CRS not found at {} (set CRS_DIR)",
        dir.display()
    );
    dir.canonicalize().expect("CRS_DIR")
}

/// `<rule>-<n>  <reason>` lines; `#` comments. At most [`MAX_EXCLUSIONS`], each with a reason.
fn parse_exclusions(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (id, reason) = line
            .split_once(char::is_whitespace)
            .map(|(a, b)| (a, b.trim()))
            .unwrap_or((line, ""));
        let ok = id.split_once('-').is_some_and(|(r, n)| {
            !r.is_empty()
                && !n.is_empty()
                && r.bytes().all(|b| b.is_ascii_digit())
                && n.bytes().all(|b| b.is_ascii_digit())
        });
        if !ok {
            return Err(format!("line {}: {id:?} is not a test id", i + 1));
        }
        if reason.is_empty() {
            return Err(format!("line {}: {id} has no reason", i + 1));
        }
        if out.iter().any(|(e, _)| e == id) {
            return Err(format!("line {}: {id} listed twice", i + 1));
        }
        out.push((id.to_owned(), reason.to_owned()));
    }
    if out.len() > MAX_EXCLUSIONS {
        return Err(format!(
            "{} exclusions; the policy allows at most {MAX_EXCLUSIONS}",
            out.len()
        ));
    }
    Ok(out)
}

/// What came back for one stage.
#[derive(Debug, Clone)]
enum Sent {
    /// HAProxy answered: status, the agent's transaction id when it was consulted (both shown
    /// in the failure report).
    Answered {
        #[allow(dead_code)]
        status: u16,
        id: Option<String>,
    },
    /// No (complete) answer: closed, timed out, refused.
    Failed(#[allow(dead_code)] String),
    /// The stage could not be turned into bytes.
    Unbuildable(String),
}

fn send_stage(fe: std::net::SocketAddr, stage: &ftw::Stage) -> Sent {
    let raw = match ftw::stage_wire_bytes(&stage.input) {
        Ok(r) => r,
        Err(e) => return Sent::Unbuildable(e.to_string()),
    };
    match send_raw(fe, &raw, REQUEST_TIMEOUT) {
        Ok(r) => Sent::Answered {
            status: r.status,
            id: r.header("x-coraza-id").map(str::to_owned),
        },
        Err(e) => Sent::Failed(e.to_string()),
    }
}

/// The albedo backend behind Coraza's harness (`common::ftw::backend_response`).
fn albedo(req: &harness::BackendRequest) -> Vec<u8> {
    let mut parsed = wire::parse_server_request(&req.head);
    parsed.body = req.body.clone();
    let resp = ftw::backend_response(&parsed);
    let mut out = format!("HTTP/1.1 {} Reflected\r\n", resp.status).into_bytes();
    for (n, v) in &resp.headers {
        out.extend_from_slice(n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&resp.body);
    out
}

/// One audit message as a ModSecurity-style log line (what go-ftw greps).
fn render(msg: &Value) -> String {
    let d = &msg["data"];
    let s = |v: &Value| esc(v.as_str().unwrap_or("").as_bytes());
    let mut line = format!(
        "ModSecurity: Warning. Matched at {}. [file \"{}\"] [line \"{}\"] [id \"{}\"] [msg \"{}\"] [data \"{}\"]",
        s(&d["matched_var"]),
        s(&d["file"]),
        d["line"].as_u64().unwrap_or(0),
        d["id"].as_u64().unwrap_or(0),
        s(&d["msg"]),
        s(&d["data"]),
    );
    if let Some(tags) = d["tags"].as_array() {
        for t in tags {
            let _ = write!(line, " [tag \"{}\"]", s(t));
        }
    }
    line
}

#[test]
fn crs_regression_through_haproxy() {
    let Some(binary) = harness::haproxy_binary() else {
        return;
    };
    let root = harness::repo_root();
    let crs = crs_dir();
    std::env::set_var("CRS_DIR", &crs);
    let filter = std::env::var("CRS_REPLAY_FILTER")
        .ok()
        .filter(|f| !f.is_empty());
    let verbose = std::env::var("CRS_REPLAY_VERBOSE").is_ok_and(|v| v == "1");
    let concurrency: usize = std::env::var("CRS_REPLAY_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(4);

    let tests =
        ftw::load_tests(&crs.join("tests/regression/tests")).unwrap_or_else(|e| panic!("{e}"));
    let exclusions_path = root.join("tests/haproxy/replay-exclusions.txt");
    let exclusions = parse_exclusions(
        &std::fs::read_to_string(&exclusions_path).expect("replay-exclusions.txt"),
    )
    .unwrap_or_else(|e| panic!("replay-exclusions.txt: {e}"));
    for (id, _) in &exclusions {
        assert!(
            tests.iter().any(|t| &t.id == id),
            "replay-exclusions.txt lists {id}, which the pinned CRS does not have"
        );
    }
    let selected: Vec<FtwTest> = tests
        .into_iter()
        .filter(|t| t.is_scorable())
        .filter(|t| filter.as_deref().map_or(true, |f| t.id.contains(f)))
        .collect();
    assert!(!selected.is_empty(), "no scorable test selected");

    // The agent: the regression configuration, compiled by the same compiler build.rs uses.
    let started = Instant::now();
    let program = coraza_spoa::seclang::compile_file(&root.join("tests/crs/regression.conf"))
        .unwrap_or_else(|e| panic!("tests/crs/regression.conf: {e}"));
    let ruleset: &'static Ruleset = Box::leak(Box::new(Ruleset::new(program).expect("ruleset")));
    let dir = TempDir::new("haproxy-replay");
    let mut config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        applications: vec![Application {
            name: "default".into(),
            response_check: true,
        }],
        ..Config::default()
    };
    config.audit.path = dir.path().join("audit.log");
    let (audit, sender) = AuditLog::spawn(&config.audit).expect("audit log");
    let server = Server::start(
        &config,
        Arc::new(Waf::new(ruleset, config.clone(), Some(sender))),
    )
    .expect("agent starts");
    let backend = harness::start_backend(albedo);
    let mut haproxy = Haproxy::start(
        &binary,
        dir.path(),
        server.local_addr(),
        backend,
        Switches {
            response_check: true,
        },
    );
    haproxy.wait_agent("UP");
    let fe = haproxy.frontend;
    println!(
        "HAProxy replay: {} scorable tests, concurrency {concurrency}; set-up {:.1} s",
        selected.len(),
        started.elapsed().as_secs_f64()
    );

    // Send every stage; tests in parallel, stages of one test in order.
    let started = Instant::now();
    let results: Vec<Mutex<Vec<Sent>>> = selected.iter().map(|_| Mutex::new(Vec::new())).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(test) = selected.get(i) else { break };
                let sent: Vec<Sent> = test.stages.iter().map(|st| send_stage(fe, st)).collect();
                *results[i].lock().unwrap() = sent;
            });
        }
    });
    let mut results: Vec<Vec<Sent>> = results
        .into_iter()
        .map(|m| m.into_inner().unwrap())
        .collect();
    let first_pass = started.elapsed();

    // Scoring needs the audit log, which is complete only once the agent has stopped. So: a
    // first scoring from a snapshot of the log to find candidates for the retry...
    let score = |results: &[Vec<Sent>], log: &HashMap<String, Vec<String>>| -> Vec<TestVerdict> {
        selected
            .iter()
            .zip(results)
            .map(|(test, sent)| {
                let verdicts: Vec<StageVerdict> = test
                    .stages
                    .iter()
                    .zip(sent)
                    .map(|(stage, sent)| match sent {
                        Sent::Unbuildable(e) => {
                            StageVerdict::Fail(vec![ftw::Mismatch::Conversion(e.clone())])
                        }
                        Sent::Answered { id: Some(id), .. } => {
                            ftw::score_stage(stage, log.get(id).map_or(&[][..], Vec::as_slice))
                        }
                        Sent::Answered { id: None, .. } | Sent::Failed(_) => {
                            ftw::score_stage(stage, &[])
                        }
                    })
                    .collect();
                ftw::combine(&verdicts)
            })
            .collect()
    };
    let read_log = |path: &std::path::Path| -> HashMap<String, Vec<String>> {
        let mut by_id: HashMap<String, Vec<String>> = HashMap::new();
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            // A line being written right now may be incomplete in a snapshot: skip it.
            let Ok(ev) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let id = ev["transaction"]["id"].as_str().unwrap_or("").to_owned();
            let lines = by_id.entry(id).or_default();
            for m in ev["messages"].as_array().into_iter().flatten() {
                lines.push(render(m));
            }
        }
        by_id
    };
    // Give the writer a moment to drain what the last requests queued.
    std::thread::sleep(Duration::from_millis(300));
    let snapshot = read_log(&config.audit.path);
    let verdicts = score(&results, &snapshot);
    let retry: Vec<usize> = verdicts
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(v, TestVerdict::Fail(_)))
        .map(|(i, _)| i)
        .collect();
    // ...then one sequential re-send of each failing test.
    for &i in &retry {
        results[i] = selected[i]
            .stages
            .iter()
            .map(|st| send_stage(fe, st))
            .collect();
    }
    let elapsed = started.elapsed();

    server.shutdown().expect("agent stops");
    audit.shutdown().expect("audit log flushes");
    let log = read_log(&config.audit.path);
    let verdicts = score(&results, &log);
    drop(haproxy);

    // Report.
    let excluded = |id: &str| {
        exclusions
            .iter()
            .find(|(e, _)| e == id)
            .map(|(_, r)| r.as_str())
    };
    let mut passed = 0;
    let mut failed: Vec<String> = Vec::new();
    let mut excluded_failing = 0;
    let mut excluded_passing: Vec<&str> = Vec::new();
    let mut not_consulted: Vec<&str> = Vec::new();
    let mut report = String::new();
    for ((test, verdict), sent) in selected.iter().zip(&verdicts).zip(&results) {
        if sent
            .iter()
            .any(|s| !matches!(s, Sent::Answered { id: Some(_), .. }))
        {
            not_consulted.push(&test.id);
        }
        match (verdict, excluded(&test.id)) {
            (TestVerdict::Pass, None) => passed += 1,
            (TestVerdict::Pass, Some(_)) => excluded_passing.push(&test.id),
            (TestVerdict::Fail(_), Some(_)) => excluded_failing += 1,
            (TestVerdict::Fail(stages), None) => {
                let line = ftw::failure_line(test, stages);
                let _ = writeln!(report, "{line}");
                for (si, s) in sent.iter().enumerate() {
                    let _ = writeln!(report, "    [stage {}] {s:?}", si + 1);
                    if let Sent::Answered { id: Some(id), .. } = s {
                        for l in log.get(id).into_iter().flatten() {
                            let _ = writeln!(report, "      {l}");
                        }
                    }
                }
                failed.push(line);
            }
            (TestVerdict::NotScorable, _) => {}
        }
    }
    let scored = passed + failed.len();
    println!(
        "  sent in {:.1} s (first pass {:.1} s, {} tests re-sent once)",
        elapsed.as_secs_f64(),
        first_pass.as_secs_f64(),
        retry.len()
    );
    println!(
        "  passed {passed} / failed {} of {scored} (excluded: {} failing as listed, {} passing); \
         {} tests had a stage HAProxy answered without consulting the agent: {not_consulted:?}",
        failed.len(),
        excluded_failing,
        excluded_passing.len(),
        not_consulted.len()
    );
    println!(
        "  pass rate {:.2}% of non-excluded scorable tests",
        100.0 * passed as f64 / scored.max(1) as f64
    );
    for (id, reason) in &exclusions {
        println!("  excluded {id}: {reason}");
    }
    for line in &failed {
        println!("  FAILED {line}");
    }
    if verbose {
        print!("{report}");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let _ = std::fs::create_dir_all(&target);
    let _ = std::fs::write(target.join("haproxy-replay-failures.txt"), &report);

    assert!(scored > 0, "no scorable test ran");
    assert!(
        failed.is_empty(),
        "{} CRS tests fail through HAProxy and are not in replay-exclusions.txt (details in \
         target/haproxy-replay-failures.txt)",
        failed.len()
    );
    if filter.is_none() {
        assert!(
            excluded_passing.is_empty(),
            "excluded tests now pass through HAProxy, remove them from replay-exclusions.txt: \
             {excluded_passing:?}"
        );
    }
}
