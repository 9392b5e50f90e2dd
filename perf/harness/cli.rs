//! The commands. `cargo bench --bench perf -- <command> [options]` (cargo adds `--bench`, which
//! is ignored); no command means `run`.
//!
//! - `run`: the whole measurement in one command: capture both corpora through HAProxy (or
//!   reuse captures), then for each agent mode (null inspector, full ruleset) and each mix
//!   (benign, attacks): flat out, then fixed rates at fractions of that maximum; prints a table
//!   and the headline figures, writes `perf/out/perf-<time>.json` and `.png` (and `latest.*`).
//! - `capture`: one corpus through HAProxy into one capture file.
//! - `fixtures`: the small committed captures (`perf/fixtures/`).
//! - `replay`: one replay against an agent that is already running.
//! - `agent`: run an agent (what `run` starts in a child process).
//! - `plot`: redraw the PNG from a `run` JSON.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argh::FromArgs;
use serde_json::{json, Value};

use crate::harness::agent::{self, AgentProcess, AgentSpec, InProcess, Mode, Priority};
use crate::harness::capture::{self, CaptureConfig};
use crate::harness::error::{io, Error, Result};
use crate::harness::format::Capture;
use crate::harness::plot;
use crate::harness::replay::{self, Expect, ReplayConfig, ReplayReport};

/// Perf harness of coraza-spoa: capture HAProxy's SPOP traffic, replay it, measure.
#[derive(FromArgs)]
struct Cli {
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Run(RunCmd),
    Capture(CaptureCmd),
    Fixtures(FixturesCmd),
    Replay(ReplayCmd),
    Agent(AgentCmd),
    Plot(PlotCmd),
}

/// Capture (or reuse captures), then measure both agent modes on both mixes.
#[derive(FromArgs, Default)]
#[argh(subcommand, name = "run")]
struct RunCmd {
    /// reuse perf/out/capture-{benign,attacks}.jsonl when they exist
    #[argh(switch)]
    reuse: bool,
    /// replay the committed fixtures (perf/fixtures) instead of capturing: no HAProxy needed
    #[argh(switch)]
    fixtures: bool,
    /// measured seconds per step (default 5)
    #[argh(option)]
    secs: Option<f64>,
    /// warm-up seconds before each measurement (default 1)
    #[argh(option)]
    warmup: Option<f64>,
    /// fixed rates as fractions of the flat-out maximum (default 0.1,0.25,0.5,0.75,0.9)
    #[argh(option)]
    loads: Option<String>,
    /// connections of the load generator (default 4)
    #[argh(option, short = 'c')]
    connections: Option<usize>,
    /// NOTIFYs in flight per connection (default 20, HAProxy's max-waiting-frames)
    #[argh(option, short = 'd')]
    depth: Option<usize>,
    /// agent modes to measure (default noop,waf)
    #[argh(option)]
    modes: Option<String>,
    /// mixes to replay (default benign,attacks)
    #[argh(option)]
    mixes: Option<String>,
    /// measure this coraza-spoa binary as the full-ruleset agent instead of the in-process Waf
    #[argh(option)]
    agent_bin: Option<PathBuf>,
    /// directory of benign.jsonl and attacks.jsonl (default $CORPUS_DIR or ../shared/corpus)
    #[argh(option)]
    corpus_dir: Option<PathBuf>,
    /// output directory (default perf/out)
    #[argh(option)]
    out: Option<PathBuf>,
    /// short smoke run: 1 s steps, loads 0.5,0.9
    #[argh(switch)]
    quick: bool,
    /// scheduling priority of the agent and the load generator: rt (default: SCHED_FIFO, the
    /// agent above the load generator), nice (-20) or none; rt and nice need root
    #[argh(option)]
    priority: Option<String>,
}

/// Push one corpus through HAProxy and record the SPOP traffic.
#[derive(FromArgs)]
#[argh(subcommand, name = "capture")]
struct CaptureCmd {
    /// corpus in the check format (JSON Lines)
    #[argh(option)]
    corpus: PathBuf,
    /// capture file to write
    #[argh(option)]
    out: PathBuf,
    /// first N requests only
    #[argh(option)]
    limit: Option<usize>,
    /// concurrent HTTP clients (default 8)
    #[argh(option, default = "8")]
    concurrency: usize,
    /// an agent already running; default: the full ruleset in-process (2 workers)
    #[argh(option)]
    agent: Option<SocketAddr>,
}

/// Regenerate the committed captures, perf/fixtures/*.capture.jsonl.
#[derive(FromArgs)]
#[argh(subcommand, name = "fixtures")]
struct FixturesCmd {
    /// requests per corpus (default 150)
    #[argh(option, default = "150")]
    limit: usize,
    /// directory of benign.jsonl and attacks.jsonl
    #[argh(option)]
    corpus_dir: Option<PathBuf>,
}

/// Replay one capture against a running agent.
#[derive(FromArgs)]
#[argh(subcommand, name = "replay")]
struct ReplayCmd {
    /// capture file
    #[argh(option)]
    capture: PathBuf,
    /// agent address
    #[argh(option)]
    addr: SocketAddr,
    /// agent process id, for its CPU time
    #[argh(option)]
    pid: Option<u32>,
    /// CPU the agent runs on, for its busy time
    #[argh(option)]
    agent_cpu: Option<usize>,
    /// pin the load generator to this CPU
    #[argh(option)]
    pin: Option<usize>,
    /// scheduling priority of the load generator: fifo:N or nice:N (root only)
    #[argh(option)]
    priority: Option<String>,
    /// connections (default 4)
    #[argh(option, short = 'c', default = "4")]
    connections: usize,
    /// NOTIFYs in flight per connection (default 20)
    #[argh(option, short = 'd', default = "20")]
    depth: usize,
    /// requests per second (default: flat out)
    #[argh(option)]
    rate: Option<f64>,
    /// measured seconds (default 5)
    #[argh(option, default = "5.0")]
    secs: f64,
    /// warm-up seconds (default 1)
    #[argh(option, default = "1.0")]
    warmup: f64,
    /// check verdicts: capture, empty or ids (default capture)
    #[argh(option, default = "String::from(\"capture\")")]
    expect: String,
    /// write the report here as JSON
    #[argh(option)]
    json: Option<PathBuf>,
}

/// Run an agent until stdin closes (used by `run`).
#[derive(FromArgs)]
#[argh(subcommand, name = "agent")]
struct AgentCmd {
    /// noop or waf
    #[argh(option)]
    mode: String,
    /// listen address (default 127.0.0.1:0)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 0))")]
    bind: SocketAddr,
    /// restrict the whole process to this CPU
    #[argh(option)]
    cpu: Option<usize>,
    /// directory for the audit log (waf mode; default: no audit log)
    #[argh(option)]
    audit_dir: Option<PathBuf>,
    /// scheduling priority of the whole process: fifo:N or nice:N
    #[argh(option)]
    priority: Option<String>,
}

/// Redraw the plot of a run.
#[derive(FromArgs)]
#[argh(subcommand, name = "plot")]
struct PlotCmd {
    /// JSON written by run
    #[argh(option)]
    json: PathBuf,
    /// PNG to write
    #[argh(option)]
    out: PathBuf,
}

pub fn main() -> ExitCode {
    // `cargo bench` appends `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cli = match Cli::from_args(&["perf"], &strs) {
        Ok(c) => c,
        Err(e) => {
            let ok = e.status.is_ok();
            if ok {
                println!("{}", e.output);
                return ExitCode::SUCCESS;
            }
            eprintln!("{}", e.output);
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Run(RunCmd::default())) {
        Command::Run(c) => run(c),
        Command::Capture(c) => capture_cmd(c),
        Command::Fixtures(c) => fixtures_cmd(c),
        Command::Replay(c) => replay_cmd(c),
        Command::Agent(c) => Mode::parse(&c.mode).and_then(|m| {
            let p = c.priority.as_deref().map(Priority::parse).transpose()?;
            agent::serve(m, c.cpu, p, c.bind, c.audit_dir.as_deref())
        }),
        Command::Plot(c) => plot_cmd(&c.json, &c.out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perf: {e}");
            ExitCode::FAILURE
        }
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_dir(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| std::env::var_os("CORPUS_DIR").map(PathBuf::from))
        .unwrap_or_else(|| repo().join("../shared/corpus"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Captures `corpus` through HAProxy with `agent` (or an in-process full-ruleset agent).
pub fn capture_corpus(
    corpus: &Path,
    limit: Option<usize>,
    concurrency: usize,
    agent: Option<SocketAddr>,
    scratch: &Path,
) -> Result<(Capture, capture::CaptureStats)> {
    let haproxy = capture::find_haproxy().ok_or_else(|| {
        Error::Setup("haproxy not found (apt-get install haproxy), or use `run --fixtures`".into())
    })?;
    let requests = capture::load_corpus(corpus, limit)?;
    let local = match agent {
        Some(_) => None,
        None => Some(InProcess::start(
            Mode::Waf,
            2,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            None,
        )?),
    };
    let addr = agent
        .or(local.as_ref().map(InProcess::addr))
        .ok_or_else(|| Error::Setup("no agent".into()))?;
    let cfg = CaptureConfig {
        haproxy,
        haproxy_cfg_dir: repo().join("tests/haproxy"),
        agent: addr,
        concurrency,
        scratch: scratch.to_path_buf(),
        label: json!({
            "corpus": corpus.file_name().map(|n| n.to_string_lossy().into_owned()),
            "limit": limit,
            "agent": if agent.is_some() { "external".to_string() } else {
                format!("in-process Waf, {}", coraza_spoa::builtin::version_line())
            },
        }),
    };
    let result = capture::capture(&cfg, &requests);
    if let Some(a) = local {
        a.stop()?;
    }
    let result = result?;
    let s = &result.1;
    eprintln!(
        "captured {}: {} requests in {:.1} s, {} NOTIFYs on {} SPOE connections ({} unanswered), HTTP statuses {:?}, HAProxy coraza-error {:?}",
        corpus.display(),
        s.requests,
        s.seconds,
        s.notifies,
        s.spoe_connections,
        s.unanswered,
        s.statuses,
        s.haproxy_errors
    );
    if !s.odd_frames.is_empty() {
        eprintln!(
            "  odd frames: {:?}",
            &s.odd_frames[..s.odd_frames.len().min(5)]
        );
    }
    Ok(result)
}

fn capture_cmd(c: CaptureCmd) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("coraza-perf-capture-{}", std::process::id()));
    let (cap, _) = capture_corpus(&c.corpus, c.limit, c.concurrency, c.agent, &scratch)?;
    std::fs::remove_dir_all(&scratch).ok();
    cap.write(&c.out)?;
    eprintln!("wrote {}", c.out.display());
    Ok(())
}

fn fixtures_cmd(c: FixturesCmd) -> Result<()> {
    let dir = corpus_dir(c.corpus_dir);
    let scratch = std::env::temp_dir().join(format!("coraza-perf-fixtures-{}", std::process::id()));
    for mix in ["benign", "attacks"] {
        let (cap, _) = capture_corpus(
            &dir.join(format!("{mix}.jsonl")),
            Some(c.limit),
            8,
            None,
            &scratch,
        )?;
        let out = repo().join(format!("perf/fixtures/{mix}.capture.jsonl"));
        cap.write(&out)?;
        eprintln!("wrote {}", out.display());
    }
    std::fs::remove_dir_all(&scratch).ok();
    Ok(())
}

fn parse_expect(s: &str) -> Result<Expect> {
    match s {
        "capture" => Ok(Expect::Capture),
        "empty" => Ok(Expect::Empty),
        "ids" => Ok(Expect::IdsOnly),
        other => Err(Error::Usage(format!(
            "--expect {other:?}: capture, empty or ids"
        ))),
    }
}

fn replay_cmd(c: ReplayCmd) -> Result<()> {
    let cap = Capture::read(&c.capture)?;
    let mut cfg = ReplayConfig::new(c.addr);
    cfg.connections = c.connections;
    cfg.depth = c.depth;
    cfg.rate = c.rate;
    cfg.duration = Duration::from_secs_f64(c.secs);
    cfg.warmup = Duration::from_secs_f64(c.warmup);
    cfg.expect = parse_expect(&c.expect)?;
    cfg.agent_pid = c.pid;
    cfg.agent_cpu = c.agent_cpu;
    cfg.pin_cpu = c.pin;
    cfg.priority = c.priority.as_deref().map(Priority::parse).transpose()?;
    let frames = cap.replay_frames();
    let report = replay::run(&cfg, &cap.hello, &frames)?;
    print_header();
    print_row(
        "-",
        &c.capture.display().to_string(),
        &load_label(c.rate.map(|_| 0.0)),
        &report,
    );
    if let Some(path) = c.json {
        let mut v = report.to_json();
        if let Some(o) = v.as_object_mut() {
            o.insert("slowest_frames".into(), report.slowest_json(&frames, 10));
        }
        let text = serde_json::to_string_pretty(&v).unwrap_or_default();
        std::fs::write(&path, text).map_err(io(format!("write {}", path.display())))?;
    }
    if report.errors.total() > 0 {
        return Err(Error::Protocol(format!(
            "{} bad ACKs: {:?}; first: {:?}",
            report.errors.total(),
            report.errors,
            report.error_samples.first()
        )));
    }
    Ok(())
}

fn load_label(load: Option<f64>) -> String {
    match load {
        None => "max".into(),
        Some(0.0) => "rate".into(),
        Some(l) => format!("{:.0}%", l * 100.0),
    }
}

fn print_header() {
    println!(
        "{:<5} {:<8} {:>5} {:>10} {:>10} {:>5} {:>5} {:>11} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6}",
        "mode",
        "mix",
        "load",
        "offered/s",
        "req/s",
        "cpu",
        "lgcpu",
        "req/s/core",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "lag99 µs",
        "errors"
    );
}

fn print_row(mode: &str, mix: &str, load: &str, r: &ReplayReport) {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let lag =
        (!r.pacing_lag.is_empty()).then(|| r.pacing_lag.value_at_quantile(0.99) as f64 / 1000.0);
    println!(
        "{:<5} {:<8} {:>5} {:>10} {:>10.0} {:>5} {:>5} {:>11} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6}{}",
        mode,
        mix,
        load,
        f(r.offered_rps),
        r.achieved_rps(),
        r.agent_cpu_util().map_or("-".to_string(), |u| format!("{u:.2}")),
        r.loadgen_cpu_util().map_or("-".to_string(), |u| format!("{u:.2}")),
        f(r.rps_per_agent_core()),
        f(r.latency_us(0.5)),
        f(r.latency_us(0.9)),
        f(r.latency_us(0.99)),
        f(r.latency_us(0.999)),
        f(lag),
        r.errors.total(),
        if r.loadgen_bound() { "  (load generator bound)" } else { "" }
    );
}

fn list<T>(
    given: Option<&str>,
    default: &str,
    parse: impl Fn(&str) -> Result<T>,
) -> Result<Vec<T>> {
    given
        .unwrap_or(default)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse)
        .collect()
}

fn loadavg() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| json!(s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")))
        .unwrap_or(Value::Null)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": cpu,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One measured step.
struct Step {
    mode: String,
    mix: String,
    /// `None`: flat out; `Some(f)`: fixed rate at `f` × the flat-out rate.
    load: Option<f64>,
    report: ReplayReport,
    /// The requests that took longest (from the capture), as JSON.
    slowest: Value,
    /// What the agent's audit writer did during the step (waf mode).
    audit: Value,
}

/// Counter increases between two `stats` answers of the agent.
fn audit_delta(before: Option<Value>, after: Option<Value>) -> Value {
    let (Some(b), Some(a)) = (before, after) else {
        return Value::Null;
    };
    let Some(a) = a.as_object() else {
        return Value::Null;
    };
    a.iter()
        .map(|(k, v)| {
            let d = v
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(b[k].as_u64().unwrap_or(0));
            (k.clone(), json!(d))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn run(c: RunCmd) -> Result<()> {
    let (secs, warmup, default_loads) = if c.quick {
        (1.0, 0.3, "0.5,0.9")
    } else {
        (5.0, 1.0, "0.1,0.25,0.5,0.75,0.9")
    };
    let secs = c.secs.unwrap_or(secs);
    let warmup = c.warmup.unwrap_or(warmup);
    let loads = list(c.loads.as_deref(), default_loads, |s| {
        s.parse::<f64>()
            .ok()
            .filter(|l| *l > 0.0 && *l <= 2.0)
            .ok_or_else(|| Error::Usage(format!("--loads: bad fraction {s:?}")))
    })?;
    let modes = list(c.modes.as_deref(), "noop,waf", Mode::parse)?;
    let mixes = list(c.mixes.as_deref(), "benign,attacks", |s| match s {
        "benign" | "attacks" => Ok(s.to_string()),
        other => Err(Error::Usage(format!("--mixes: unknown mix {other:?}"))),
    })?;
    let connections = c.connections.unwrap_or(4);
    let depth = c.depth.unwrap_or(20);
    let out_dir = c.out.unwrap_or_else(|| repo().join("perf/out"));
    std::fs::create_dir_all(&out_dir).map_err(io(format!("create {}", out_dir.display())))?;
    let started = unix_now();

    // CPUs: the agent on the first allowed CPU, the load generator on the last.
    let cpus = agent::allowed_cpus();
    let agent_cpu = cpus.first().copied();
    let loadgen_cpu = if cpus.len() >= 2 {
        cpus.last().copied()
    } else {
        None
    };
    if loadgen_cpu.is_none() {
        eprintln!("warning: one CPU only: the load generator shares it with the agent");
    }
    // Priorities: (agent workers, other agent threads, load generator). With rt, the agent's
    // other threads (the audit writer) preempt its worker, so their work is done and counted
    // rather than starved at saturation, and the agent preempts the load generator. Probed on
    // a scratch thread (priorities are per thread on Linux).
    let prios = match c.priority.as_deref().unwrap_or("rt") {
        "rt" => Some((Priority::Fifo(20), Priority::Fifo(21), Priority::Fifo(10))),
        "nice" => Some((
            Priority::Nice(-20),
            Priority::Nice(-20),
            Priority::Nice(-20),
        )),
        "none" => None,
        other => {
            return Err(Error::Usage(format!(
                "--priority {other:?}: rt, nice or none"
            )))
        }
    };
    let prios = match prios.map(|p| (p, std::thread::spawn(move || p.2.apply()).join())) {
        Some((p, Ok(Ok(())))) => Some(p),
        Some((_, Ok(Err(e)))) => {
            eprintln!("warning: {e}: measuring at normal priority");
            None
        }
        _ => None,
    };

    // Captures.
    let mut captures = Vec::new();
    for mix in &mixes {
        let path = if c.fixtures {
            repo().join(format!("perf/fixtures/{mix}.capture.jsonl"))
        } else {
            out_dir.join(format!("capture-{mix}.jsonl"))
        };
        if !(c.fixtures || c.reuse && path.exists()) {
            let corpus = corpus_dir(c.corpus_dir.clone()).join(format!("{mix}.jsonl"));
            let scratch = out_dir.join(format!("scratch-{started}"));
            let (cap, _) = capture_corpus(&corpus, None, 8, None, &scratch)?;
            std::fs::remove_dir_all(&scratch).ok();
            cap.write(&path)?;
        }
        let cap = Capture::read(&path)?;
        eprintln!("{mix}: {} frames from {}", cap.frames.len(), path.display());
        captures.push((mix.clone(), path, cap));
    }

    let load_before = loadavg();
    let mut steps: Vec<Step> = Vec::new();
    print_header();
    for &mode in &modes {
        let spec = match (&c.agent_bin, mode) {
            (Some(path), Mode::Waf) => AgentSpec::Binary { path: path.clone() },
            _ => AgentSpec::Harness { mode },
        };
        let scratch = out_dir.join(format!("agent-{}-{started}", spec.label()));
        let mut proc = AgentProcess::spawn(&spec, agent_cpu, None, &scratch)?;
        if let Some((workers, others, _)) = prios {
            proc.set_priorities(workers, others)?;
        }
        for (mix, _, cap) in &captures {
            let frames = cap.replay_frames();
            let base = ReplayConfig {
                connections,
                depth,
                warmup: Duration::from_secs_f64(warmup),
                duration: Duration::from_secs_f64(secs),
                expect: if mode == Mode::Noop {
                    Expect::Empty
                } else {
                    Expect::Capture
                },
                agent_pid: Some(proc.pid),
                agent_cpu,
                pin_cpu: loadgen_cpu,
                priority: prios.map(|p| p.2),
                ..ReplayConfig::new(proc.addr)
            };
            let audit_before = proc.audit_stats();
            let max = replay::run(&base, &cap.hello, &frames)?;
            let audit = audit_delta(audit_before, proc.audit_stats());
            print_row(&spec.label(), mix, "max", &max);
            let max_rps = max.achieved_rps();
            steps.push(Step {
                mode: spec.label(),
                mix: mix.clone(),
                load: None,
                slowest: max.slowest_json(&frames, 10),
                audit,
                report: max,
            });
            for &load in &loads {
                let cfg = ReplayConfig {
                    rate: Some((max_rps * load).max(1.0)),
                    ..base.clone()
                };
                let audit_before = proc.audit_stats();
                let r = replay::run(&cfg, &cap.hello, &frames)?;
                let audit = audit_delta(audit_before, proc.audit_stats());
                print_row(&spec.label(), mix, &load_label(Some(load)), &r);
                steps.push(Step {
                    mode: spec.label(),
                    mix: mix.clone(),
                    load: Some(load),
                    slowest: r.slowest_json(&frames, 10),
                    audit,
                    report: r,
                });
            }
        }
        drop(proc);
        std::fs::remove_dir_all(&scratch).ok();
    }

    let summary = summarize(&steps);
    let report = json!({
        "benchmark": "perf",
        "unix_time": started,
        "git_commit": git_commit(),
        "ruleset": coraza_spoa::builtin::version_line(),
        "machine": machine(),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "setup": {
            "connections": connections,
            "depth": depth,
            "warmup_s": warmup,
            "measured_s": secs,
            "loads": loads,
            "agent_cpu": agent_cpu,
            "loadgen_cpu": loadgen_cpu,
            "priorities": prios.map(|(w, o, l)| json!({
                "agent_workers": w.to_string(), "agent_other_threads": o.to_string(), "load_generator": l.to_string(),
            })),
            "agent_workers": 1,
            "full_ruleset_agent": match &c.agent_bin {
                Some(p) => format!("binary {}", p.display()),
                None => "in-process Waf in a child process (builtin ruleset, audit log on)".into(),
            },
        },
        "captures": captures.iter().map(|(mix, path, cap)| (mix.clone(), json!({
            "path": path.display().to_string(),
            "frames": cap.frames.len(),
            "meta": cap.meta,
        }))).collect::<serde_json::Map<_, _>>(),
        "runs": steps.iter().map(|s| {
            let mut v = s.report.to_json();
            if let Some(o) = v.as_object_mut() {
                o.insert("mode".into(), json!(s.mode));
                o.insert("mix".into(), json!(s.mix));
                o.insert("load".into(), json!(s.load));
                o.insert("slowest_frames".into(), s.slowest.clone());
                o.insert("audit".into(), s.audit.clone());
            }
            v
        }).collect::<Vec<_>>(),
        "summary": summary,
    });
    print_summary(&summary);
    // Where the time goes: the costliest requests at the lowest load (little queueing there).
    let lowest = loads.iter().copied().fold(f64::MAX, f64::min);
    for s in steps
        .iter()
        .filter(|s| s.mode != "noop" && s.load == Some(lowest))
    {
        println!(
            "  slowest {} requests at {:.0}% load (max / mean latency):",
            s.mix,
            lowest * 100.0
        );
        for f in s.slowest.as_array().into_iter().flatten().take(5) {
            println!(
                "    {:>9.0} µs / {:>8.0} µs  {}",
                f["max_us"].as_f64().unwrap_or(0.0),
                f["mean_us"].as_f64().unwrap_or(0.0),
                f["request"].as_str().unwrap_or("?")
            );
        }
    }
    let json_path = out_dir.join(format!("perf-{started}.json"));
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(&json_path, &text).map_err(io(format!("write {}", json_path.display())))?;
    std::fs::write(out_dir.join("latest.json"), &text).map_err(io("write latest.json"))?;
    let png_path = out_dir.join(format!("perf-{started}.png"));
    plot_cmd(&json_path, &png_path)?;
    std::fs::copy(&png_path, out_dir.join("latest.png")).map_err(io("write latest.png"))?;
    println!("\nwrote {} and {}", json_path.display(), png_path.display());
    let errors: u64 = steps.iter().map(|s| s.report.errors.total()).sum();
    if errors > 0 {
        return Err(Error::Protocol(format!(
            "{errors} bad ACKs during the run (see error_samples in the JSON)"
        )));
    }
    Ok(())
}

fn find<'a>(
    steps: &'a [Step],
    mode: &str,
    mix: &str,
    load: Option<f64>,
) -> Option<&'a ReplayReport> {
    steps
        .iter()
        .find(|s| {
            s.mode == mode
                && s.mix == mix
                && match (s.load, load) {
                    (None, None) => true,
                    (Some(a), Some(b)) => (a - b).abs() < 1e-9,
                    _ => false,
                }
        })
        .map(|s| &s.report)
}

/// The headline figures and the targets.
fn summarize(steps: &[Step]) -> Value {
    let full = if steps.iter().any(|s| s.mode == "bin") {
        "bin"
    } else {
        "waf"
    };
    let per_core = |mode: &str, mix: &str| {
        find(steps, mode, mix, None).and_then(ReplayReport::rps_per_agent_core)
    };
    let p99 = |mode: &str, mix: &str, load: f64| {
        find(steps, mode, mix, Some(load)).and_then(|r| r.latency_us(0.99))
    };
    let mut mixes = serde_json::Map::new();
    for mix in ["benign", "attacks"] {
        let f = per_core(full, mix);
        let n = per_core("noop", mix);
        mixes.insert(
            mix.into(),
            json!({
                "full_rps_per_core": f,
                "full_rps": find(steps, full, mix, None).map(ReplayReport::achieved_rps),
                "full_cpu_util_at_max": find(steps, full, mix, None).and_then(ReplayReport::agent_cpu_util),
                "noop_rps_per_core": n,
                "noop_rps": find(steps, "noop", mix, None).map(ReplayReport::achieved_rps),
                "full_over_noop": f.zip(n).map(|(f, n)| f / n),
                "full_p99_us_at_50pct": p99(full, mix, 0.5),
                "full_p99_us_at_90pct": p99(full, mix, 0.9),
                "noop_p99_us_at_50pct": p99("noop", mix, 0.5),
                "noop_p99_us_at_90pct": p99("noop", mix, 0.9),
            }),
        );
    }
    let benign = &mixes["benign"];
    let num = |k: &str| benign.get(k).and_then(Value::as_f64);
    json!({
        "full_ruleset_mode": full,
        "mixes": mixes,
        "targets": {
            "full_benign_50k_rps_per_core": num("full_rps_per_core").map(|v| v >= 50_000.0),
            "full_at_least_25pct_of_noop": num("full_over_noop").map(|v| v >= 0.25),
            "full_benign_p99_1ms_at_50pct": num("full_p99_us_at_50pct").map(|v| v <= 1000.0),
        },
    })
}

fn print_summary(s: &Value) {
    let f = |v: Option<&Value>, scale: f64, unit: &str| {
        v.and_then(Value::as_f64)
            .map_or("-".into(), |x| format!("{:.0}{unit}", x * scale))
    };
    println!("\nheadline (agent pinned to one CPU, one worker; req/s/core = requests per agent CPU-second):");
    for mix in ["benign", "attacks"] {
        let m = &s["mixes"][mix];
        if m.is_null() {
            continue;
        }
        println!(
            "  {mix:<8} full CRS {:>8} req/s/core | null inspector {:>8} req/s/core | ratio {:>4} | full p99 at 50%: {} µs, at 90%: {} µs",
            f(m.get("full_rps_per_core"), 1.0, ""),
            f(m.get("noop_rps_per_core"), 1.0, ""),
            f(m.get("full_over_noop"), 100.0, "%"),
            f(m.get("full_p99_us_at_50pct"), 1.0, ""),
            f(m.get("full_p99_us_at_90pct"), 1.0, ""),
        );
    }
    let t = &s["targets"];
    let mark = |k: &str| match t.get(k).and_then(Value::as_bool) {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    };
    println!(
        "  target >= 50k req/s/core, full CRS, benign: {}",
        mark("full_benign_50k_rps_per_core")
    );
    println!(
        "  target >= 25% of the null-inspector ceiling (benign): {}",
        mark("full_at_least_25pct_of_noop")
    );
    println!(
        "  target p99 <= 1 ms at 50% load (full CRS, benign): {}",
        mark("full_benign_p99_1ms_at_50pct")
    );
}

/// Series for the plot from a `run` JSON.
pub fn series_of(report: &Value) -> Vec<plot::Series> {
    let runs = report["runs"].as_array().cloned().unwrap_or_default();
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in &runs {
        let k = (
            r["mode"].as_str().unwrap_or("").to_string(),
            r["mix"].as_str().unwrap_or("").to_string(),
        );
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(mode, mix)| {
            let mine = runs
                .iter()
                .filter(|r| r["mode"] == mode.as_str() && r["mix"] == mix.as_str());
            let mut points = Vec::new();
            let mut bound = Vec::new();
            let mut saturation = None;
            for r in mine {
                let lat = &r["latency_us"];
                let (Some(p50), Some(p99)) = (lat["p50"].as_f64(), lat["p99"].as_f64()) else {
                    continue;
                };
                if r["load"].is_null() {
                    saturation = r["achieved_rps"].as_f64().map(|x| (x, p50, p99));
                } else if let Some(x) = r["offered_rps"].as_f64() {
                    if r["loadgen_bound"].as_bool() == Some(true) {
                        bound.push((x, p50, p99));
                    } else {
                        points.push((x, p50, p99));
                    }
                }
            }
            plot::Series {
                label: format!("{mode} {mix}"),
                points,
                bound,
                saturation,
            }
        })
        .collect()
}

fn plot_cmd(json_path: &Path, out: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(json_path).map_err(io(format!("read {}", json_path.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Format(format!("{}: {e}", json_path.display())))?;
    let title = format!(
        "CORAZA-SPOA, ONE AGENT CORE: LATENCY VS OFFERED LOAD ({})",
        v["git_commit"].as_str().unwrap_or("?")
    );
    let png = plot::render(&title, &series_of(&v));
    std::fs::write(out, png).map_err(io(format!("write {}", out.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_series_come_from_the_runs() {
        let run = |mode: &str, mix: &str, load: Value, offered: Value, bound: bool, p99: f64| {
            json!({
                "mode": mode, "mix": mix, "load": load, "offered_rps": offered,
                "achieved_rps": 1000.0, "loadgen_bound": bound,
                "latency_us": {"p50": p99 / 2.0, "p99": p99},
            })
        };
        let report = json!({"runs": [
            run("noop", "benign", Value::Null, Value::Null, true, 90.0),
            run("noop", "benign", json!(0.5), json!(500.0), false, 50.0),
            run("noop", "benign", json!(0.9), json!(900.0), true, 40000.0),
            run("waf", "attacks", json!(0.5), json!(100.0), false, 700.0),
        ]});
        let s = series_of(&report);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label, "noop benign");
        assert_eq!(s[0].saturation, Some((1000.0, 45.0, 90.0)));
        assert_eq!(s[0].points, vec![(500.0, 25.0, 50.0)]);
        assert_eq!(s[0].bound, vec![(900.0, 20000.0, 40000.0)]);
        assert_eq!(s[1].points, vec![(100.0, 350.0, 700.0)]);
        assert_eq!(s[1].saturation, None);
    }

    #[test]
    fn audit_deltas_are_counter_increases() {
        let d = audit_delta(
            Some(json!({"written": 10, "dropped_full": 0})),
            Some(json!({"written": 25, "dropped_full": 3})),
        );
        assert_eq!(d, json!({"written": 15, "dropped_full": 3}));
        assert_eq!(audit_delta(None, Some(json!({}))), Value::Null);
    }
}
