//! The agent under test, as its own process pinned to one CPU, and CPU accounting from `/proc`.
//!
//! Modes:
//! - `noop`: [`NoopInspector`] through [`Server::start`]: answers every NOTIFY with an empty
//!   ACK, evaluating nothing; this machine's protocol ceiling.
//! - `waf`: the production path as `main.rs` builds it: the compiled-in CRS
//!   ([`coraza_spoa::builtin::ruleset`]), [`Waf`], and the audit writer (into a scratch
//!   directory), with the default `config.yaml` settings.
//! - `bin`: the real `coraza-spoa` binary with a generated `config.yaml`.
//!
//! The in-process modes run as `perf agent ...` in a child process (the harness re-executes
//! itself), so their CPU time is theirs alone: the child restricts itself to one CPU before it
//! starts any thread (so the worker, the audit writer and everything else share that core), runs
//! one worker, prints `READY <addr>` and serves until its stdin closes; a `stats` line on its
//! stdin makes it print the audit writer's counters as one JSON line. The parent never lets it
//! outlive it: closing stdin stops it, [`AgentProcess`]'s drop kills it if it lingers.
//!
//! Must not: change how the agent works; the only difference from production is the CPU mask
//! and `workers: 1`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coraza_spoa::audit::AuditLog;
use coraza_spoa::config::{self, Config};
use coraza_spoa::engine::Ruleset;
use coraza_spoa::inspect::NoopInspector;
use coraza_spoa::server::{Server, ServerHandle};
use coraza_spoa::waf::Waf;

use crate::harness::error::{io, Error, Result};

/// What answers the NOTIFYs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Noop,
    Waf,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Noop => "noop",
            Mode::Waf => "waf",
        }
    }

    pub fn parse(s: &str) -> Result<Mode> {
        match s {
            "noop" => Ok(Mode::Noop),
            "waf" => Ok(Mode::Waf),
            other => Err(Error::Usage(format!(
                "unknown agent mode {other:?} (noop, waf)"
            ))),
        }
    }
}

/// The compiled-in ruleset, decoded once per process and shared (`Waf` wants `&'static`).
pub fn builtin_ruleset() -> Result<&'static Ruleset> {
    static RULESET: std::sync::OnceLock<std::result::Result<Ruleset, String>> =
        std::sync::OnceLock::new();
    RULESET
        .get_or_init(coraza_spoa::builtin::ruleset)
        .as_ref()
        .map_err(|e| Error::Setup(format!("compiled-in ruleset: {e}")))
}

/// An agent running inside this process (tests, and the agent used while capturing).
pub struct InProcess {
    pub server: ServerHandle,
    pub audit: Option<AuditLog>,
}

impl InProcess {
    pub fn start(
        mode: Mode,
        workers: usize,
        bind: SocketAddr,
        audit_dir: Option<&Path>,
    ) -> Result<InProcess> {
        let config = Config {
            bind,
            workers,
            ..Config::default()
        };
        let started = |r: std::result::Result<ServerHandle, coraza_spoa::server::ServerError>| {
            r.map_err(|e| Error::Setup(format!("agent: {e}")))
        };
        match mode {
            Mode::Noop => Ok(InProcess {
                server: started(Server::start(&config, Arc::new(NoopInspector)))?,
                audit: None,
            }),
            Mode::Waf => {
                let ruleset = builtin_ruleset()?;
                ruleset.spawn_warm_up();
                let (audit, sender) = match audit_dir {
                    Some(dir) => {
                        std::fs::create_dir_all(dir)
                            .map_err(io(format!("create {}", dir.display())))?;
                        let cfg = config::Audit {
                            path: dir.join("audit.log"),
                            ..config::Audit::default()
                        };
                        let (log, sender) = AuditLog::spawn(&cfg)
                            .map_err(|e| Error::Setup(format!("audit log: {e}")))?;
                        (Some(log), Some(sender))
                    }
                    None => (None, None),
                };
                let waf = Waf::new(ruleset, config.clone(), sender);
                Ok(InProcess {
                    server: started(Server::start(&config, Arc::new(waf)))?,
                    audit,
                })
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn stop(self) -> Result<()> {
        self.server
            .shutdown()
            .map_err(|e| Error::Setup(format!("agent shutdown: {e}")))?;
        if let Some(audit) = self.audit {
            audit
                .shutdown()
                .map_err(|e| Error::Setup(format!("audit shutdown: {e}")))?;
        }
        Ok(())
    }
}

/// `perf agent`: pin, set the priority, serve, print `READY <addr>`, stop when stdin closes.
pub fn serve(
    mode: Mode,
    cpu: Option<usize>,
    priority: Option<Priority>,
    bind: SocketAddr,
    audit_dir: Option<&Path>,
) -> Result<()> {
    // Before any thread exists, so every thread of the agent inherits the mask and priority.
    if let Some(cpu) = cpu {
        pin_current_thread(cpu)?;
    }
    if let Some(p) = priority {
        p.apply()?;
    }
    let agent = InProcess::start(mode, 1, bind, audit_dir)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {}", agent.addr()).map_err(io("write to stdout"))?;
    out.flush().map_err(io("flush stdout"))?;
    drop(out);
    let stats = agent.audit.as_ref().map(AuditLog::stats);
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "stats" {
            let v = match &stats {
                Some(s) => {
                    let s = s.snapshot();
                    serde_json::json!({
                        "written": s.written, "bytes": s.bytes, "dropped_full": s.dropped_full,
                        "dropped_closed": s.dropped_closed, "lost_io": s.lost_io,
                    })
                }
                None => serde_json::Value::Null,
            };
            let mut out = std::io::stdout().lock();
            writeln!(out, "{v}").map_err(io("write to stdout"))?;
            out.flush().map_err(io("flush stdout"))?;
        }
    }
    agent.stop()
}

/// How to start the agent under test.
#[derive(Debug, Clone)]
pub enum AgentSpec {
    /// `perf agent --mode ...` (this executable).
    Harness { mode: Mode },
    /// The real binary, e.g. `target/release/coraza-spoa`.
    Binary { path: PathBuf },
}

impl AgentSpec {
    pub fn label(&self) -> String {
        match self {
            AgentSpec::Harness { mode } => mode.name().to_string(),
            AgentSpec::Binary { .. } => "bin".to_string(),
        }
    }
}

/// A running agent process; stopped (and reaped) on drop.
pub struct AgentProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<std::process::ChildStdout>>,
    pub addr: SocketAddr,
    pub pid: u32,
}

impl AgentProcess {
    /// Starts the agent restricted to `cpu`, at `priority`, and waits until it answers.
    pub fn spawn(
        spec: &AgentSpec,
        cpu: Option<usize>,
        priority: Option<Priority>,
        scratch: &Path,
    ) -> Result<AgentProcess> {
        std::fs::create_dir_all(scratch).map_err(io(format!("create {}", scratch.display())))?;
        match spec {
            AgentSpec::Harness { mode } => {
                let exe = std::env::current_exe().map_err(io("find the harness executable"))?;
                let mut cmd = Command::new(exe);
                cmd.arg("agent")
                    .arg("--mode")
                    .arg(mode.name())
                    .arg("--bind")
                    .arg("127.0.0.1:0")
                    .arg("--audit-dir")
                    .arg(scratch);
                if let Some(cpu) = cpu {
                    cmd.arg("--cpu").arg(cpu.to_string());
                }
                if let Some(p) = priority {
                    cmd.arg("--priority").arg(p.to_string());
                }
                cmd.env("RUST_LOG", "warn")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit());
                let mut child = cmd.spawn().map_err(io("start the agent process"))?;
                let stdin = child.stdin.take();
                let stdout = child.stdout.take();
                let pid = child.id();
                let mut proc = AgentProcess {
                    child,
                    stdin,
                    stdout: stdout.map(BufReader::new),
                    addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                    pid,
                };
                let mut line = String::new();
                proc.stdout
                    .as_mut()
                    .ok_or_else(|| Error::Setup("agent stdout".into()))?
                    .read_line(&mut line)
                    .map_err(io("read the agent's READY line"))?;
                let addr = line
                    .trim()
                    .strip_prefix("READY ")
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| {
                        Error::Setup(format!("agent did not start (said {:?})", line.trim()))
                    })?;
                proc.addr = addr;
                Ok(proc)
            }
            AgentSpec::Binary { path } => {
                let port = free_port()?;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                let cfg_path = scratch.join("config.yaml");
                let yaml = format!(
                    "bind: {addr}\nlog_level: warn\nworkers: 1\naudit:\n  path: {}\n",
                    scratch.join("audit.log").display()
                );
                std::fs::write(&cfg_path, yaml)
                    .map_err(io(format!("write {}", cfg_path.display())))?;
                let mut cmd = Command::new(path);
                cmd.arg("--config")
                    .arg(&cfg_path)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit());
                if cpu.is_some() || priority.is_some() {
                    use std::os::unix::process::CommandExt;
                    // SAFETY: sched_setaffinity, setpriority and sched_setscheduler are
                    // async-signal-safe and only read structs built on this stack; nothing is
                    // allocated between fork and exec.
                    unsafe {
                        cmd.pre_exec(move || {
                            if let Some(cpu) = cpu {
                                let mut set: libc::cpu_set_t = std::mem::zeroed();
                                libc::CPU_SET(cpu, &mut set);
                                if libc::sched_setaffinity(
                                    0,
                                    std::mem::size_of::<libc::cpu_set_t>(),
                                    &set,
                                ) != 0
                                {
                                    return Err(std::io::Error::last_os_error());
                                }
                            }
                            match priority {
                                Some(p) => p.apply_raw(),
                                None => Ok(()),
                            }
                        });
                    }
                }
                let child = cmd
                    .spawn()
                    .map_err(io(format!("start {}", path.display())))?;
                let pid = child.id();
                let mut proc = AgentProcess {
                    child,
                    stdin: None,
                    stdout: None,
                    addr,
                    pid,
                };
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    if coraza_spoa::server::healthcheck(addr, Duration::from_secs(1)).is_ok() {
                        break;
                    }
                    if let Ok(Some(status)) = proc.child.try_wait() {
                        return Err(Error::Setup(format!("{} exited: {status}", path.display())));
                    }
                    if Instant::now() > deadline {
                        return Err(Error::Setup(format!(
                            "{} never answered on {addr}",
                            path.display()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(proc)
            }
        }
    }
}

impl AgentProcess {
    /// The audit writer's counters (harness agents in waf mode; `None` otherwise).
    pub fn audit_stats(&mut self) -> Option<serde_json::Value> {
        let stdin = self.stdin.as_mut()?;
        stdin.write_all(b"stats\n").ok()?;
        stdin.flush().ok()?;
        let mut line = String::new();
        self.stdout.as_mut()?.read_line(&mut line).ok()?;
        serde_json::from_str(&line)
            .ok()
            .filter(|v: &serde_json::Value| !v.is_null())
    }

    /// Sets the scheduling priority of every thread: `workers` for the SPOP workers, `others`
    /// for the rest (audit writer, main thread).
    pub fn set_priorities(&self, workers: Priority, others: Priority) -> Result<()> {
        let dir = format!("/proc/{}/task", self.pid);
        for entry in std::fs::read_dir(&dir)
            .map_err(io(format!("list {dir}")))?
            .flatten()
        {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            let p = if comm.starts_with("coraza-worker") {
                workers
            } else {
                others
            };
            p.apply_to(tid).map_err(|source| Error::Io {
                what: format!("set scheduling priority {p} on agent thread {tid}"),
                source,
            })?;
        }
        Ok(())
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // Closing stdin stops a harness agent; the real binary wants SIGTERM.
        self.stdin.take();
        if self.child.try_wait().ok().flatten().is_none() {
            if let Ok(pid) = libc::pid_t::try_from(self.pid) {
                // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A TCP port free right now on loopback.
pub fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("find a free port"))
}

/// Restricts the calling thread (and the threads it starts later) to one CPU.
pub fn pin_current_thread(cpu: usize) -> Result<()> {
    // SAFETY: the mask lives on this stack for the duration of the call.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(Error::Io {
            what: format!("pin to CPU {cpu}"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Scheduling priority for the agent and the load generator, so that other work on a shared
/// machine disturbs the measurement little.
///
/// `Fifo` (real-time `SCHED_FIFO`) preempts ordinary tasks at once. `Nice` only weighs the fair
/// scheduler: with Linux 6.6+ (EEVDF) a woken task may still wait for the running task's slice,
/// which showed up here as 4 ms stalls at p99 (and a null-inspector ceiling four times too low)
/// while other builds ran. Real-time tasks are throttled by the kernel (`sched_rt_runtime_us`,
/// 95% of each second by default), so a CPU kept 100% busy by them pauses 50 ms each second:
/// only saturated (flat-out) steps can see it, in their tail latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Fifo(i32),
    Nice(i32),
}

impl Priority {
    /// `fifo:N` or `nice:N`.
    pub fn parse(s: &str) -> Result<Priority> {
        let bad = || Error::Usage(format!("priority {s:?}: fifo:1..99 or nice:-20..19"));
        let (kind, n) = s.split_once(':').ok_or_else(bad)?;
        let n: i32 = n.parse().map_err(|_| bad())?;
        match kind {
            "fifo" if (1..=99).contains(&n) => Ok(Priority::Fifo(n)),
            "nice" if (-20..=19).contains(&n) => Ok(Priority::Nice(n)),
            _ => Err(bad()),
        }
    }

    /// For the calling thread; threads it starts later inherit it. Needs root (CAP_SYS_NICE).
    pub fn apply(self) -> Result<()> {
        self.apply_raw().map_err(|source| Error::Io {
            what: format!("set scheduling priority {self}"),
            source,
        })
    }

    /// [`Priority::apply`] without allocating (usable between fork and exec).
    fn apply_raw(self) -> std::io::Result<()> {
        self.apply_to(0)
    }

    /// For thread `tid` (0: the calling thread).
    fn apply_to(self, tid: libc::pid_t) -> std::io::Result<()> {
        // SAFETY: no memory effects beyond reading `param` on this stack.
        let rc = unsafe {
            match self {
                Priority::Fifo(p) => {
                    let param = libc::sched_param { sched_priority: p };
                    libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param)
                }
                Priority::Nice(n) => {
                    let param = libc::sched_param { sched_priority: 0 };
                    if libc::sched_setscheduler(tid, libc::SCHED_OTHER, &param) != 0 {
                        -1
                    } else {
                        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, n)
                    }
                }
            }
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Priority::Fifo(p) => write!(f, "fifo:{p}"),
            Priority::Nice(n) => write!(f, "nice:{n}"),
        }
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: the mask lives on this stack; CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime from a `/proc/.../stat` line (fields 14 and 15; the command name, field 2,
/// may contain spaces, so fields are counted after its closing parenthesis).
pub fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks(),
    ))
}

/// CPU time (user + system) of process `pid`, all threads.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    parse_stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> Option<Duration> {
    parse_stat_cpu(&std::fs::read_to_string("/proc/thread-self/stat").ok()?)
}

/// CPU time of the threads of `pid` whose name starts with `prefix` (e.g. `coraza-worker`).
pub fn threads_cpu(pid: u32, prefix: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut found = false;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(prefix) {
            if let Some(t) = std::fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|s| parse_stat_cpu(&s))
            {
                total += t;
                found = true;
            }
        }
    }
    found.then_some(total)
}

/// Busy time of one CPU (everything but idle and iowait) from `/proc/stat`.
pub fn cpu_busy(cpu: usize) -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some(Duration::from_secs_f64(
        total.saturating_sub(idle) as f64 / clock_ticks(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_counts_fields_after_the_command_name() {
        // Fields 14/15 are utime/stime; the name contains a space and a parenthesis.
        let line = "1234 (my (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 3 0 99";
        let t = parse_stat_cpu(line).unwrap();
        assert!(
            (t.as_secs_f64() - 400.0 / clock_ticks()).abs() < 1e-9,
            "{t:?}"
        );
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        let before = process_cpu(std::process::id()).unwrap();
        let t0 = thread_cpu().unwrap();
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(150) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(thread_cpu().unwrap() > t0);
        assert!(process_cpu(std::process::id()).unwrap() > before);
        assert!(cpu_busy(allowed_cpus()[0]).is_some());
    }
}
