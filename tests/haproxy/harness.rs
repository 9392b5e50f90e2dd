//! What the HAProxy end-to-end tests share (`tests/haproxy_e2e.rs`, `tests/waf_e2e.rs`,
//! `tests/haproxy_replay.rs`, each including this file with `#[path]`): finding and running HAProxy 2.6 with the reference
//! configuration beside this file, a raw HTTP/1.x client, a loopback backend, the agent binary
//! as a child process, and temp directories.
//!
//! Owns process lifetimes: every child (HAProxy, the agent) is killed and reaped on drop, also
//! when an assertion fails. Must not: know what the tests expect.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// HAProxy's binary, or `None` when the test may skip (`CORAZA_SKIP_HAPROXY=1`). Panics when
/// HAProxy is missing and skipping was not asked for: CI installs it.
pub fn haproxy_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("CORAZA_SKIP_HAPROXY").as_deref() == Ok("1") {
            eprintln!("SKIPPED: haproxy not installed and CORAZA_SKIP_HAPROXY=1");
            return None;
        }
        panic!("haproxy not found: install it (apt-get install -y haproxy) or set CORAZA_SKIP_HAPROXY=1");
    }
    found
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temp directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("coraza-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// HAProxy running `tests/haproxy/haproxy.cfg`; killed on drop.
pub struct Haproxy {
    child: Child,
    pub frontend: SocketAddr,
    stats: PathBuf,
    log: PathBuf,
}

/// Which optional parts of the reference configuration to switch on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Switches {
    /// `CORAZA_RESPONSE_CHECK`: send coraza-res after `http-response wait-for-body`.
    pub response_check: bool,
}

impl Haproxy {
    /// Starts HAProxy with the reference configuration (debug headers on) in `dir`, and waits
    /// until its frontend accepts connections.
    pub fn start(
        binary: &Path,
        dir: &Path,
        agent: SocketAddr,
        backend: SocketAddr,
        switches: Switches,
    ) -> Haproxy {
        let cfg_dir = repo_root().join("tests/haproxy");
        let frontend: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let stats = dir.join("haproxy-stats.sock");
        let log = dir.join("haproxy.log");
        let log_file = std::fs::File::create(&log).expect("haproxy log file");
        let mut cmd = Command::new(binary);
        cmd.arg("-db")
            .arg("-f")
            .arg(cfg_dir.join("haproxy.cfg"))
            .env("CORAZA_SPOA_ADDR", agent.to_string())
            .env("CORAZA_SPOE_CONFIG", cfg_dir.join("coraza.cfg"))
            .env("FRONTEND_ADDR", frontend.to_string())
            .env("BACKEND_ADDR", backend.to_string())
            .env("HAPROXY_STATS_SOCKET", &stats)
            .env("CORAZA_DEBUG_HEADERS", "1")
            .env_remove("CORAZA_RESPONSE_CHECK")
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file)
            .stdin(Stdio::null());
        if switches.response_check {
            cmd.env("CORAZA_RESPONSE_CHECK", "1");
        }
        let child = cmd.spawn().expect("spawn haproxy");
        let mut h = Haproxy {
            child,
            frontend,
            stats,
            log,
        };
        h.wait_until(Duration::from_secs(10), "frontend accepting", |h| {
            TcpStream::connect(h.frontend).is_ok()
        });
        h
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `show stat` status of the agent server (`UP`, `DOWN`, ...).
    pub fn agent_status(&self) -> Option<String> {
        self.agent_stat("status")
    }

    /// One `show stat` column of the agent server (`status`, `check_status`, ...).
    pub fn agent_stat(&self, column: &str) -> Option<String> {
        let mut s = UnixStream::connect(&self.stats).ok()?;
        s.write_all(b"show stat\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let col = header.iter().position(|h| *h == column)?;
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&"coraza-spoa") && f.get(1) == Some(&"agent1"))
            .and_then(|f| f.get(col).map(|s| s.to_string()))
    }

    pub fn wait_until(
        &mut self,
        limit: Duration,
        what: &str,
        mut ok: impl FnMut(&Haproxy) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            if ok(self) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "haproxy exited ({status}) while waiting for {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; agent {:?}\n{}",
                self.agent_status(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_agent(&mut self, status: &str) {
        let want = status.to_owned();
        self.wait_until(
            Duration::from_secs(10),
            &format!("agent {status}"),
            move |h| h.agent_status().as_deref() == Some(want.as_str()),
        );
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `coraza-spoa` binary of this build running as a child with a config file; killed on
/// drop unless stopped with [`Agent::terminate`].
pub struct Agent {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Agent {
    /// Writes `config.yaml` into `dir` (listening on a free loopback port, audit log
    /// `dir/audit.log`, `response_check` as given) and starts the agent.
    pub fn start(dir: &Path, response_check: bool) -> Agent {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "bind: {addr}\nlog_level: warn\nworkers: 2\ndefault_application: default\n\
                 applications:\n  - name: default\n    response_check: {response_check}\n\
                 audit:\n  path: {}\n",
                dir.join("audit.log").display()
            ),
        )
        .expect("write config.yaml");
        let log = dir.join("agent.log");
        let log_file = std::fs::File::create(&log).expect("agent log file");
        let child = Command::new(env!("CARGO_BIN_EXE_coraza-spoa"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file)
            .spawn()
            .expect("spawn coraza-spoa");
        Agent {
            child: Some(child),
            addr,
            log,
        }
    }

    /// SIGTERM (the agent drains and flushes its audit log), then waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("agent running");
        // SAFETY: kill(2) on our own child, not yet reaped, so the pid cannot be reused.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait agent") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("agent did not exit within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A response as the client read it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl HttpResponse {
    /// First header of that name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Writes `raw` on a new connection and reads one response: up to `Content-Length`, the end of
/// a chunked body, or the close. An empty answer (HAProxy closed without responding) is an
/// error, as is a time-out.
pub fn send_raw(addr: SocketAddr, raw: &[u8], timeout: Duration) -> io::Result<HttpResponse> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(raw)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {} bytes", buf.len()),
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let length: Option<usize> = get("content-length").and_then(|v| v.parse().ok());
    let chunked =
        get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    loop {
        let have = buf.len() - head_end;
        if length.is_some_and(|l| have >= l)
            || (chunked && find(&buf[head_end..], b"0\r\n\r\n").is_some())
        {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // Without framing only the close ends the body: a time-out is an error either way.
            Err(e) => return Err(e),
        }
    }
    let mut body = buf[head_end..].to_vec();
    if let Some(l) = length {
        body.truncate(l);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
        elapsed: started.elapsed(),
    })
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A parsed request as the backend received it.
#[derive(Debug, Clone)]
pub struct BackendRequest {
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

/// A loopback HTTP/1.1 backend on its own threads: reads one request per connection (body by
/// Content-Length or chunked, de-chunked), answers with `respond(request)` (complete response
/// bytes) and closes.
pub fn start_backend(
    respond: impl Fn(&BackendRequest) -> Vec<u8> + Send + Sync + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("backend binds");
    let addr = listener.local_addr().unwrap();
    let respond = Arc::new(respond);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let respond = Arc::clone(&respond);
            std::thread::spawn(move || serve_one(stream, &*respond));
        }
    });
    addr
}

fn serve_one(mut stream: TcpStream, respond: &dyn Fn(&BackendRequest) -> Vec<u8>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = buf[..head_end].to_vec();
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let header = |name: &str| {
        text.split("\r\n")
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    let chunked = header("transfer-encoding:").is_some_and(|v| v.contains("chunked"));
    let length: usize = header("content-length:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    loop {
        let got = &buf[head_end..];
        let done = if chunked {
            find(got, b"0\r\n\r\n").is_some_and(|p| p == 0 || got[p - 1] == b'\n')
        } else {
            got.len() >= length
        };
        if done {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let raw_body = &buf[head_end..];
    let body = if chunked {
        dechunk(raw_body)
    } else {
        raw_body[..raw_body.len().min(length)].to_vec()
    };
    let response = respond(&BackendRequest { head, body });
    let _ = stream.write_all(&response);
    let _ = stream.flush();
}

/// Minimal de-chunking (sizes in hex, extensions ignored).
fn dechunk(mut input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(input, b"\r\n") {
        let size_text = String::from_utf8_lossy(&input[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        input = &input[eol + 2..];
        if size == 0 || input.len() < size {
            break;
        }
        out.extend_from_slice(&input[..size]);
        input = input.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// A complete HTTP/1.1 response with `Connection: close` and a Content-Length.
pub fn response_bytes(status: u16, headers: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\n").into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}
