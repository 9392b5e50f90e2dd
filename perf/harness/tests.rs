//! End-to-end tests of the harness: replays against the real server (null inspector, full
//! ruleset, the real binary), against a deliberately wrong agent, and a capture through a real
//! HAProxy replayed against the agent that answered it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coraza_spoa::config::Config;
use coraza_spoa::inspect::{InspectError, Inspector};
use coraza_spoa::server::Server;
use coraza_spoa::spop::{
    self, AckWriter, FrameType, HaproxyHello, Message, Messages, TypedData, VarScope,
};

use super::agent::{self, AgentProcess, AgentSpec, InProcess, Mode};
use super::capture::{self, CaptureConfig};
use super::format::Capture;
use super::replay::{self, Expect, ReplayConfig};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(mix: &str) -> Capture {
    Capture::read(&repo().join(format!("perf/fixtures/{mix}.capture.jsonl"))).expect("fixture")
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A bounded replay: `n` requests, everything inside the measured window.
fn bounded(addr: SocketAddr, n: u64, expect: Expect) -> ReplayConfig {
    ReplayConfig {
        connections: 2,
        depth: 8,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(120),
        max_requests: Some(n),
        expect,
        drain_timeout: Duration::from_secs(20),
        ..ReplayConfig::new(addr)
    }
}

#[test]
fn fixtures_are_haproxy_captures_of_coraza_req() {
    let args: Vec<&[u8]> = vec![
        b"app",
        b"src-ip",
        b"src-port",
        b"dst-ip",
        b"dst-port",
        b"method",
        b"path",
        b"query",
        b"version",
        b"headers",
        b"body",
        b"exportRuleIDs",
        b"body_size",
    ];
    for mix in ["benign", "attacks"] {
        let cap = fixture(mix);
        let (hello, _) = spop::split_frame(&cap.hello, 1 << 20).unwrap().unwrap();
        let hello = HaproxyHello::decode(hello.payload).unwrap();
        assert!(hello.has_capability(b"pipelining"), "{mix}");
        assert!(hello.engine_id.is_some() && !hello.healthcheck, "{mix}");
        assert!(
            cap.frames.len() >= 100,
            "{mix}: {} frames",
            cap.frames.len()
        );
        for (i, f) in cap.frames.iter().enumerate() {
            let (frame, _) = spop::split_frame(&f.wire, 1 << 20).unwrap().unwrap();
            assert!(f.wire.len() <= hello.max_frame_size as usize + 4);
            let messages: Vec<Message<'_>> =
                Messages::new(frame.payload).map(Result::unwrap).collect();
            assert_eq!(messages.len(), 1, "{mix} frame {i}");
            assert_eq!(messages[0].name, b"coraza-req");
            let names: Vec<&[u8]> = messages[0].args().map(|a| a.unwrap().0).collect();
            assert_eq!(names, args, "{mix} frame {i}");
            assert!(
                f.verdict.is_some(),
                "{mix} frame {i}: the agent answered at capture time"
            );
        }
    }
}

#[test]
fn replays_fixtures_against_the_null_inspector_flat_out_and_at_a_rate() {
    let agent = InProcess::start(Mode::Noop, 1, loopback(), None).unwrap();
    let cap = fixture("benign");
    let frames = cap.replay_frames();
    assert_eq!(frames.len(), cap.frames.len());
    let n = 3 * frames.len() as u64;
    let r = replay::run(
        &bounded(agent.addr(), n, Expect::Empty),
        &cap.hello,
        &frames,
    )
    .unwrap();
    assert_eq!(r.errors.total(), 0, "{:?} {:?}", r.errors, r.error_samples);
    assert_eq!((r.sent, r.acked, r.acked_in_window), (n, n, n));
    assert_eq!(r.latency.len(), n);
    assert!(r.pacing_lag.is_empty());

    // Open loop: 300 requests at 3000/s take about 0.1 s; every one is paced and answered.
    let cfg = ReplayConfig {
        rate: Some(3000.0),
        ..bounded(agent.addr(), 300, Expect::Empty)
    };
    let r = replay::run(&cfg, &cap.hello, &frames).unwrap();
    assert_eq!(r.errors.total(), 0, "{:?}", r.error_samples);
    assert_eq!((r.sent, r.acked), (300, 300));
    assert_eq!(r.pacing_lag.len(), 300);
    // Requests batched ahead of their due time are timed from when they left: no latency can
    // be below a loopback round trip (well over a microsecond).
    assert!(
        r.latency.min() >= 1_000,
        "min latency {} ns",
        r.latency.min()
    );
    assert_eq!(r.offered_rps, Some(3000.0));
    agent.stop().unwrap();
}

/// Sets `action=deny` on everything: what a wrong verdict looks like.
struct DenyAll;

impl Inspector for DenyAll {
    type Worker = ();
    fn new_worker(&self, _: usize) {}
    fn inspect(
        &self,
        _: &mut (),
        _: &Message<'_>,
        ack: &mut AckWriter<'_>,
    ) -> Result<(), InspectError> {
        ack.set_var(VarScope::Transaction, b"action", TypedData::String(b"deny"))?;
        Ok(())
    }
}

#[test]
fn wrong_verdicts_are_counted() {
    let config = Config {
        bind: loopback(),
        workers: 1,
        ..Config::default()
    };
    let server = Server::start(&config, Arc::new(DenyAll)).unwrap();
    let cap = fixture("attacks");
    let frames = cap.replay_frames();
    let r = replay::run(
        &bounded(server.local_addr(), 100, Expect::Empty),
        &cap.hello,
        &frames,
    )
    .unwrap();
    assert_eq!(r.errors.verdict_mismatch, 100);
    assert!(
        r.error_samples[0].contains("action=deny"),
        "{:?}",
        r.error_samples
    );
    // Against the capture's verdicts (rules_hit and anomaly_score always present): wrong too.
    let r = replay::run(
        &bounded(server.local_addr(), 100, Expect::Capture),
        &cap.hello,
        &frames,
    )
    .unwrap();
    assert_eq!(r.errors.verdict_mismatch, 100);
    // Ids only: nothing to object to.
    let r = replay::run(
        &bounded(server.local_addr(), 100, Expect::IdsOnly),
        &cap.hello,
        &frames,
    )
    .unwrap();
    assert_eq!(r.errors.total(), 0);
    server.shutdown().unwrap();
}

/// A fake agent that answers the HELLO properly, then for the n-th NOTIFY: n % 4 == 1 echoes a
/// wrong stream-id, n % 4 == 2 a wrong frame-id, n % 4 == 3 never answers, else answers right.
fn lying_agent() -> SocketAddr {
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                let mut n = 0u64;
                loop {
                    let mut out = Vec::new();
                    let mut used_total = 0;
                    while let Ok(Some((f, used))) = spop::split_frame(&buf[used_total..], 1 << 20) {
                        used_total += used;
                        match f.header.frame_type {
                            FrameType::HaproxyHello => {
                                spop::encode_agent_hello(&mut out, 16380, b"pipelining")
                            }
                            FrameType::Notify => {
                                let (sid, fid) = (f.header.stream_id, f.header.frame_id);
                                let ids = match n % 4 {
                                    1 => Some((sid + 1_000_000, fid)),
                                    2 => Some((sid, fid + 7)),
                                    3 => None,
                                    _ => Some((sid, fid)),
                                };
                                n += 1;
                                if let Some((sid, fid)) = ids {
                                    // An empty ACK: the frame is complete as soon as it is started.
                                    let _ack = AckWriter::new(&mut out, sid, fid, 16380);
                                }
                            }
                            _ => {}
                        }
                    }
                    buf.drain(..used_total);
                    if !out.is_empty() && s.write_all(&out).is_err() {
                        return;
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn wrong_ids_and_missing_acks_are_counted() {
    let addr = lying_agent();
    let cap = fixture("benign");
    let cfg = ReplayConfig {
        connections: 1,
        depth: 64,
        drain_timeout: Duration::from_millis(300),
        ..bounded(addr, 40, Expect::IdsOnly)
    };
    let r = replay::run(&cfg, &cap.hello, &cap.replay_frames()).unwrap();
    // 40 requests: 10 right, 10 with an unknown stream-id, 10 with a wrong frame-id, 10 never
    // answered (those with an unknown stream-id stay in flight too).
    assert_eq!(r.errors.unknown_id, 10, "{:?}", r.error_samples);
    assert_eq!(r.errors.wrong_frame_id, 10);
    assert_eq!(r.errors.unanswered, 20);
    assert_eq!(r.acked, 20);
}

#[test]
fn refuses_an_agent_that_does_not_pipeline() {
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut b = [0u8; 512];
            let _ = s.read(&mut b);
            let mut out = Vec::new();
            spop::encode_agent_hello(&mut out, 16380, b"");
            let _ = s.write_all(&out);
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let cap = fixture("benign");
    let e = replay::run(
        &bounded(addr, 10, Expect::IdsOnly),
        &cap.hello,
        &cap.replay_frames(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("pipelining"), "{e}");
}

#[test]
fn the_real_binary_pinned_to_one_cpu_answers_every_fixture() {
    let scratch = std::env::temp_dir().join(format!("coraza-perf-bin-{}", std::process::id()));
    let cpu = *agent::allowed_cpus().first().unwrap();
    let spec = AgentSpec::Binary {
        path: PathBuf::from(env!("CARGO_BIN_EXE_coraza-spoa")),
    };
    let proc = AgentProcess::spawn(&spec, Some(cpu), None, &scratch).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", proc.pid)).unwrap();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(allowed, cpu.to_string());
    let cap = fixture("attacks");
    let cfg = ReplayConfig {
        agent_pid: Some(proc.pid),
        agent_cpu: Some(cpu),
        ..bounded(proc.addr, 2 * cap.frames.len() as u64, Expect::IdsOnly)
    };
    let r = replay::run(&cfg, &cap.hello, &cap.replay_frames()).unwrap();
    assert_eq!(r.errors.total(), 0, "{:?}", r.error_samples);
    assert_eq!(r.acked, 2 * cap.frames.len() as u64);
    assert!(r.agent_cpu.is_some() && r.worker_cpu.is_some() && r.agent_core_busy.is_some());
    drop(proc);
    // The audit log went to the scratch directory, not /var/log/coraza.
    assert!(scratch.join("audit.log").exists());
    std::fs::remove_dir_all(&scratch).ok();
}

#[test]
fn capture_through_haproxy_then_replay_reproduces_every_verdict() {
    let Some(haproxy) = capture::find_haproxy() else {
        if std::env::var("CORAZA_SKIP_HAPROXY").as_deref() == Ok("1") {
            eprintln!("SKIPPED: haproxy not installed and CORAZA_SKIP_HAPROXY=1");
            return;
        }
        panic!("haproxy not found: install it (apt-get install -y haproxy) or set CORAZA_SKIP_HAPROXY=1");
    };
    let scratch =
        std::env::temp_dir().join(format!("coraza-perf-capture-test-{}", std::process::id()));
    // The workplace corpora when present; elsewhere (a CI runner without ../shared) a small
    // generated pair of benign and attack requests in the same format.
    let corpus = std::env::var_os("CORPUS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            Some(repo().join("../shared/corpus")).filter(|p| p.join("benign.jsonl").is_file())
        })
        .unwrap_or_else(|| synthetic_corpus(&scratch.join("corpus")));
    let waf = InProcess::start(Mode::Waf, 2, loopback(), None).unwrap();
    for mix in ["benign", "attacks"] {
        let requests =
            capture::load_corpus(&corpus.join(format!("{mix}.jsonl")), Some(40)).unwrap();
        assert_eq!(requests.len(), 40);
        let cfg = CaptureConfig {
            haproxy: haproxy.clone(),
            haproxy_cfg_dir: repo().join("tests/haproxy"),
            agent: waf.addr(),
            concurrency: 4,
            scratch: scratch.clone(),
            label: serde_json::json!({"test": mix}),
        };
        let (cap, stats) = capture::capture(&cfg, &requests).unwrap();
        assert_eq!(stats.statuses.values().sum::<usize>(), 40);
        assert!(
            stats.healthcheck_connections >= 1,
            "option spop-check went through the proxy"
        );
        assert!(stats.odd_frames.is_empty(), "{:?}", stats.odd_frames);
        assert_eq!(stats.unanswered, 0);
        // One NOTIFY per request HAProxy let through to the SPOE filter (a request HAProxy
        // rejects itself, or whose NOTIFY would not fit a frame, has none).
        assert!(
            cap.frames.len() <= 40 && cap.frames.len() >= 30,
            "{} NOTIFYs",
            cap.frames.len()
        );
        assert!(cap.frames.iter().all(|f| f.verdict.is_some()));
        if mix == "attacks" {
            assert!(
                cap.frames.iter().any(|f| f
                    .verdict
                    .as_deref()
                    .is_some_and(|v| !v.contains("anomaly_score=0"))),
                "some attack scored"
            );
        }
        // Through the file and back.
        let path = scratch.join(format!("{mix}.capture.jsonl"));
        cap.write(&path).unwrap();
        let cap = Capture::read(&path).unwrap();

        // The same agent gives the same verdicts, frame after frame, twice over.
        let frames = cap.replay_frames();
        let n = 2 * frames.len() as u64;
        let r = replay::run(
            &bounded(waf.addr(), n, Expect::Capture),
            &cap.hello,
            &frames,
        )
        .unwrap();
        assert_eq!(
            r.errors.total(),
            0,
            "{mix}: {:?} {:?}",
            r.errors,
            r.error_samples
        );
        assert_eq!(r.acked, n);
    }
    waf.stop().unwrap();
    std::fs::remove_dir_all(&scratch).ok();
}

/// 40 benign and 40 attack requests in the corpus format, written under `dir`.
fn synthetic_corpus(dir: &std::path::Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let line = |id: String, uri: String| {
        serde_json::json!({
            "id": id, "method": "GET", "uri": uri, "version": "1.1",
            "headers": [["Host", "shop.example.com"], ["User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"], ["Accept", "text/html"]],
        })
        .to_string()
    };
    let payloads = [
        "1%27%20OR%201%3D1--",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "%3C%3Fphp%20system(%24_GET%5B1%5D)%3B",
    ];
    let benign: Vec<String> = (0..40)
        .map(|i| {
            line(
                format!("benign:gen:{i}"),
                format!("/products/{i}?q=blue+shoes&page={i}"),
            )
        })
        .collect();
    let attacks: Vec<String> = (0..40)
        .map(|i| {
            line(
                format!("attack:gen:{i}"),
                format!("/search?q={}&n={i}", payloads[i % payloads.len()]),
            )
        })
        .collect();
    std::fs::write(dir.join("benign.jsonl"), benign.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("attacks.jsonl"), attacks.join("\n") + "\n").unwrap();
    dir.to_path_buf()
}
