//! NOTIFY→ACK throughput and latency of the SPOP agent with a no-op inspector.
//!
//! `cargo bench --bench spop` (harness = false). Prints a table and writes the figures as JSON
//! to `perf/out/spop-<unix time>.json`. This measures the agent alone (codec, state machine,
//! event loop, loopback TCP), not rule evaluation.
//!
//! Scenarios:
//! - `in-process`: `Connection::process` over a buffer of NOTIFY frames, no sockets: the cost of
//!   decoding a NOTIFY and encoding its ACK.
//! - `loopback`: the real server (`workers` pinned threads) and client threads that each keep
//!   `depth` NOTIFYs in flight on one connection, as HAProxy does with pipelining (20 by
//!   default). Latency is measured per NOTIFY, from the client's write to the ACK's arrival.
//!
//! The client threads run on the same machine and compete with the workers for cores: on a
//! small machine the loopback figures are a floor, not the agent's ceiling.
//!
//! Environment: `SPOP_BENCH_SECS` (measured seconds per scenario, default 5).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coraza_spoa::config::Config;
use coraza_spoa::inspect::NoopInspector;
use coraza_spoa::server::connection::Connection;
use coraza_spoa::server::Server;
use coraza_spoa::spop::{self, FrameType, NotifyWriter, TypedData};

/// A `coraza-req` like the one HAProxy 2.6 sent in the captured vectors (≈ 340 bytes).
fn notify_frame(out: &mut Vec<u8>, sid: u64) {
    let mut w = NotifyWriter::new(out, sid, 1);
    w.message(
        b"coraza-req",
        &[
            (b"app", TypedData::String(b"sample_app")),
            (b"src-ip", TypedData::Ipv4([127, 0, 0, 1].into())),
            (b"src-port", TypedData::Int64(42508)),
            (b"dst-ip", TypedData::Ipv4([127, 0, 0, 1].into())),
            (b"dst-port", TypedData::Int64(18080)),
            (b"method", TypedData::String(b"GET")),
            (b"path", TypedData::String(b"/search/items")),
            (
                b"query",
                TypedData::String(b"q=test+value&id=42&empty=&enc=%C3%A9%20x"),
            ),
            (b"version", TypedData::String(b"1.1")),
            (
                b"headers",
                TypedData::String(
                    b"host: 127.0.0.1:18080\r\naccept: */*\r\ncookie: session=abc; theme=dark\r\n\
                      user-agent: spop-research/1.0\r\nx-multi: a\r\nx-multi: b\r\n\r\n",
                ),
            ),
            (b"body", TypedData::Binary(b"")),
            (b"exportRuleIDs", TypedData::Bool(false)),
        ],
    )
    .expect("12 arguments");
}

#[derive(Debug, Clone)]
struct Row {
    scenario: String,
    workers: usize,
    connections: usize,
    depth: usize,
    notifies: u64,
    seconds: f64,
    latencies_ns: Vec<u64>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.notifies as f64 / self.seconds
    }

    fn percentile_us(&self, p: f64) -> Option<f64> {
        if self.latencies_ns.is_empty() {
            return None;
        }
        let i = ((self.latencies_ns.len() - 1) as f64 * p).round() as usize;
        Some(self.latencies_ns[i] as f64 / 1000.0)
    }
}

fn in_process(seconds: f64) -> Row {
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut hello = Vec::new();
    spop::encode_haproxy_hello(
        &mut hello,
        16380,
        b"pipelining,async",
        Some(b"bench"),
        false,
    );
    let mut input = Vec::new();
    for sid in 0..1000 {
        notify_frame(&mut input, sid);
    }
    let mut out = Vec::with_capacity(64 * 1024);
    let mut conn = Connection::new(1 << 20, peer);
    conn.process(&hello, &mut out, &NoopInspector, &mut ());
    let started = Instant::now();
    let mut notifies = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        let mut offset = 0;
        while offset < input.len() {
            out.clear();
            let p = conn.process(&input[offset..], &mut out, &NoopInspector, &mut ());
            offset += p.consumed;
        }
        notifies += 1000;
    }
    Row {
        scenario: "in-process".into(),
        workers: 0,
        connections: 1,
        depth: 1000,
        notifies,
        seconds: started.elapsed().as_secs_f64(),
        latencies_ns: Vec::new(),
    }
}

/// One client connection keeping `depth` NOTIFYs in flight until `stop`.
fn client(addr: SocketAddr, depth: usize, warmup_until: Instant, stop: Instant) -> (u64, Vec<u64>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    spop::encode_haproxy_hello(&mut buf, 16380, b"pipelining,async", Some(b"bench"), false);
    s.write_all(&buf).unwrap();
    let mut inbuf = vec![0u8; 256 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut sent_at: Vec<Instant> = vec![Instant::now(); depth];
    let mut next_sid = 0u64;
    let mut acks = 0u64;
    let mut latencies = Vec::with_capacity(1 << 20);
    let mut hello_done = false;
    // Fill the window.
    buf.clear();
    for _ in 0..depth {
        notify_frame(&mut buf, next_sid);
        sent_at[(next_sid as usize) % depth] = Instant::now();
        next_sid += 1;
    }
    s.write_all(&buf).unwrap();
    loop {
        let n = s.read(&mut inbuf).expect("read");
        assert!(n > 0, "agent closed the connection");
        pending.extend_from_slice(&inbuf[..n]);
        let now = Instant::now();
        let mut consumed = 0;
        let mut replies = 0usize;
        while let Some((frame, used)) =
            spop::split_frame(&pending[consumed..], u32::MAX).expect("valid frame")
        {
            consumed += used;
            match frame.header.frame_type {
                FrameType::AgentHello => hello_done = true,
                FrameType::Ack => {
                    let sid = frame.header.stream_id;
                    if now >= warmup_until && now < stop {
                        latencies.push((now - sent_at[(sid as usize) % depth]).as_nanos() as u64);
                        acks += 1;
                    }
                    replies += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        pending.drain(..consumed);
        if now >= stop {
            break;
        }
        buf.clear();
        for _ in 0..replies {
            notify_frame(&mut buf, next_sid);
            sent_at[(next_sid as usize) % depth] = Instant::now();
            next_sid += 1;
        }
        if !buf.is_empty() {
            s.write_all(&buf).unwrap();
        }
    }
    assert!(hello_done);
    (acks, latencies)
}

fn loopback(workers: usize, connections: usize, depth: usize, seconds: f64) -> Row {
    let config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        workers,
        ..Config::default()
    };
    let server = Server::start(&config, Arc::new(NoopInspector)).expect("server");
    let addr = server.local_addr();
    let warmup_until = Instant::now() + Duration::from_millis(500);
    let stop = warmup_until + Duration::from_secs_f64(seconds);
    let threads: Vec<_> = (0..connections)
        .map(|_| std::thread::spawn(move || client(addr, depth, warmup_until, stop)))
        .collect();
    let mut notifies = 0;
    let mut latencies = Vec::new();
    for t in threads {
        let (n, l) = t.join().unwrap();
        notifies += n;
        latencies.extend(l);
    }
    server.shutdown().unwrap();
    latencies.sort_unstable();
    Row {
        scenario: "loopback".into(),
        workers,
        connections,
        depth,
        notifies,
        seconds,
        latencies_ns: latencies,
    }
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": cpu,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is ignored.
    let seconds: f64 = std::env::var("SPOP_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut rows = vec![in_process(seconds)];
    let mut worker_counts = vec![1];
    if cores > 1 {
        worker_counts.push(cores);
    }
    for &workers in &worker_counts {
        for &(connections, depth) in &[(1, 1), (1, 20), (4 * workers, 20)] {
            rows.push(loopback(workers, connections, depth, seconds));
        }
    }

    println!();
    println!(
        "{:<11} {:>7} {:>5} {:>5} {:>12} {:>14} {:>9} {:>9} {:>9} {:>9}",
        "scenario",
        "workers",
        "conns",
        "depth",
        "NOTIFY/s",
        "NOTIFY/s/wkr",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs"
    );
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for r in &rows {
        let per_worker = if r.workers > 0 {
            r.rate() / r.workers as f64
        } else {
            r.rate()
        };
        println!(
            "{:<11} {:>7} {:>5} {:>5} {:>12.0} {:>14.0} {:>9} {:>9} {:>9} {:>9}",
            r.scenario,
            if r.workers == 0 {
                "-".to_string()
            } else {
                r.workers.to_string()
            },
            r.connections,
            r.depth,
            r.rate(),
            per_worker,
            fmt(r.percentile_us(0.5)),
            fmt(r.percentile_us(0.99)),
            fmt(r.percentile_us(0.999)),
            fmt(r.percentile_us(1.0)),
        );
    }
    let json_rows: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "scenario": r.scenario,
                "workers": r.workers,
                "connections": r.connections,
                "depth": r.depth,
                "notifies": r.notifies,
                "seconds": r.seconds,
                "notifies_per_second": r.rate(),
                "notifies_per_second_per_worker": if r.workers > 0 { r.rate() / r.workers as f64 } else { r.rate() },
                "latency_us": {
                    "p50": r.percentile_us(0.5),
                    "p99": r.percentile_us(0.99),
                    "p999": r.percentile_us(0.999),
                    "max": r.percentile_us(1.0),
                },
            })
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let notify_bytes = {
        let mut v = Vec::new();
        notify_frame(&mut v, 1);
        v.len()
    };
    let report = serde_json::json!({
        "benchmark": "spop",
        "unix_time": now,
        "machine": machine(),
        "inspector": "noop",
        "notify_bytes": notify_bytes,
        "rows": json_rows,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("perf/out");
    std::fs::create_dir_all(&dir).expect("perf/out");
    let path = dir.join(format!("spop-{now}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).expect("write JSON");
    println!("\nwrote {}", path.display());
}
