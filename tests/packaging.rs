//! Packaging checks that need no Docker engine.
//!
//! - The binary links only what `gcr.io/distroless/cc-debian12` provides (`readelf`).
//! - Run as uid/gid 65532 (as in the image), the agent serves (binary `healthcheck` exits 0,
//!   then non-zero once it has stopped) and writes only where 65532 may: an audit log in a
//!   root-owned directory is refused naming the uid. Needs root to switch uid; skipped, with a
//!   message saying so, otherwise (`.ci/run` runs as root).
//! - The `Dockerfile` keeps its pins and runtime contract, and the Gitea workflow its triggers
//!   and pushes: both are parsed and checked, and each checker is shown to reject broken
//!   variants, so an unpinned edit fails here.
//! - `rules/fetch-crs.sh` verifies before it unpacks, fails closed, writes the `SHA256SUMS`
//!   that `build.rs` checks, and carries the same pin as the Dockerfile and the build.
//!
//! Must not: need the network, a Docker engine, or `/var/log/coraza`; leave processes or
//! temporary directories behind.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use coraza_spoa::builtin;

const BIN: &str = env!("CARGO_BIN_EXE_coraza-spoa");
/// The distroless `nonroot` user, which the image runs as.
const NONROOT: u32 = 65532;
/// Debian 12's glibc, the runtime image's.
const RUNTIME_GLIBC: (u32, u32) = (2, 36);
/// Where the Dockerfile puts the binary and the configuration.
const IMAGE_BIN: &str = "/usr/local/bin/coraza-spoa";
const IMAGE_CONFIG: &str = "/etc/coraza-spoa/config.yaml";
const LOG_DIR: &str = "/var/log/coraza";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_repo(path: &str) -> String {
    let p = repo().join(path);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "coraza-spoa-packaging-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process killed when the test ends, whatever happens.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The binary's dynamic dependencies
// ---------------------------------------------------------------------------------------------

fn readelf(args: &[&str]) -> String {
    let out = Command::new("readelf")
        .args(args)
        .arg(BIN)
        .output()
        .unwrap_or_else(|e| panic!("readelf (binutils) is needed for this test: {e}"));
    assert!(out.status.success(), "readelf {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `[...]` value of each dynamic-section line tagged `tag` (`NEEDED`, `RPATH`, ...).
fn dynamic_entries(dynamic: &str, tag: &str) -> Vec<String> {
    let tag = format!("({tag})");
    dynamic
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(tag.as_str()))
        .filter_map(|l| {
            let start = l.find('[')?;
            let end = l.rfind(']')?;
            Some(l[start + 1..end].to_string())
        })
        .collect()
}

#[test]
fn binary_needs_only_what_distroless_cc_provides() {
    // distroless/cc-debian12 ships glibc (libc, libm, the loader, and glibc's compatibility
    // stubs), libgcc_s and libstdc++; a Rust binary must need nothing beyond glibc and libgcc_s.
    const PROVIDED: &[&str] = &[
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    ];
    let dynamic = readelf(&["-dW"]);
    let needed = dynamic_entries(&dynamic, "NEEDED");
    assert!(
        needed.iter().any(|n| n == "libc.so.6"),
        "no NEEDED libc.so.6: is this a dynamically linked glibc binary?\n{dynamic}"
    );
    let extra: Vec<&String> = needed
        .iter()
        .filter(|n| !PROVIDED.contains(&n.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "the binary needs {extra:?}, which distroless/cc does not provide (NEEDED: {needed:?})"
    );
    for tag in ["RPATH", "RUNPATH"] {
        let paths = dynamic_entries(&dynamic, tag);
        assert!(
            paths.is_empty(),
            "{tag} {paths:?}: libraries must come from the image"
        );
    }

    let headers = readelf(&["-lW"]);
    let interp = headers
        .lines()
        .find_map(|l| {
            l.split_once("Requesting program interpreter: ")
                .map(|(_, r)| r.trim_end_matches(']').trim().to_string())
        })
        .expect("no program interpreter in the program headers");
    assert!(
        ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"].contains(&interp.as_str()),
        "unexpected dynamic loader {interp}"
    );

    // Symbol versions: nothing newer than the runtime's glibc.
    let versions = readelf(&["-VW"]);
    let mut newest = (0, 0);
    for word in versions.split_whitespace() {
        let Some(v) = word.strip_prefix("GLIBC_") else {
            continue;
        };
        let mut parts = v.split('.').map(|p| p.parse::<u32>());
        if let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) {
            newest = newest.max((major, minor));
        }
    }
    assert!(
        newest >= (2, 2),
        "no GLIBC_ symbol versions found:\n{versions}"
    );
    assert!(
        newest <= RUNTIME_GLIBC,
        "the binary needs GLIBC_{}.{}; debian12 has {}.{}",
        newest.0,
        newest.1,
        RUNTIME_GLIBC.0,
        RUNTIME_GLIBC.1
    );
}

// ---------------------------------------------------------------------------------------------
// Running as the image's user
// ---------------------------------------------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `bin healthcheck --addr addr` as 65532.
fn healthcheck_as_nonroot(bin: &Path, addr: &str) -> Output {
    Command::new(bin)
        .args(["healthcheck", "--addr", addr])
        .uid(NONROOT)
        .gid(NONROOT)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Reads a child's stderr on a thread, so a chatty child never blocks on a full pipe.
fn collect_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut pipe = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    })
}

/// Starts the copied binary as 65532 with `config`, stderr piped.
fn spawn_nonroot(bin: &Path, config: &Path, dir: &Path) -> Child {
    // A test running in parallel may fork while the copy's write descriptor is still open in
    // this process; its child holds it until exec, and executing the copy then fails with
    // ETXTBSY ("Text file busy"). Retry briefly: the window closes within milliseconds.
    let mut attempts = 0;
    loop {
        let spawned = Command::new(bin)
            .arg("--config")
            .arg(config)
            .current_dir(dir)
            .uid(NONROOT)
            .gid(NONROOT)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(started.elapsed() < limit, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `(real, effective)` uid and gid and the supplementary groups, from /proc.
fn proc_ids(pid: u32) -> (Vec<u32>, Vec<u32>, String) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let ids = |s: String| -> Vec<u32> {
        s.split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    (ids(field("Uid:")), ids(field("Gid:")), field("Groups:"))
}

fn write_config(dir: &Path, port: u16, audit: &Path) -> PathBuf {
    let path = dir.join("config.yaml");
    fs::write(
        &path,
        format!(
            "bind: 127.0.0.1:{port}\nworkers: 1\nlog_format: json\naudit:\n  path: {}\n",
            audit.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    path
}

#[test]
fn agent_runs_as_65532_and_writes_only_its_log_dir() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        println!(
            "SKIPPED agent_runs_as_65532_and_writes_only_its_log_dir: running as uid {euid}, \
             not root, so the test cannot switch to uid {NONROOT} (CI runs it as root)"
        );
        return;
    }
    // Laid out like the image: root-owned binary and configuration, one directory owned by
    // 65532 for the audit log. The binary is copied so that 65532 can reach it whatever the
    // permissions on the path to the build directory.
    let tmp = TempDir::new("nonroot");
    let bin = tmp.path().join("coraza-spoa");
    fs::copy(BIN, &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let log_dir = tmp.path().join("log");
    fs::create_dir(&log_dir).unwrap();
    fs::set_permissions(&log_dir, fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(&log_dir, Some(NONROOT), Some(NONROOT)).unwrap();
    let audit = log_dir.join("audit.log");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = write_config(tmp.path(), port, &audit);

    let child = spawn_nonroot(&bin, &config, tmp.path());
    let mut child = KillOnDrop(child);
    let stderr = collect_stderr(&mut child.0);

    // Serving: the binary's own health check (as the image's HEALTHCHECK runs it) succeeds.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hc = healthcheck_as_nonroot(&bin, &addr);
        if hc.status.success() {
            break;
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!(
                "the agent exited ({status}) before serving: {}",
                stderr.join().unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no healthy agent on {addr} after 30 s; last healthcheck: {hc:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (uids, gids, groups) = proc_ids(child.0.id());
    assert!(
        uids.len() == 4 && uids.iter().all(|&u| u == NONROOT),
        "uids {uids:?}"
    );
    assert!(
        gids.len() == 4 && gids.iter().all(|&g| g == NONROOT),
        "gids {gids:?}"
    );
    assert_eq!(groups, "", "no supplementary groups");
    let meta = fs::metadata(&audit).expect("the agent creates its audit log at start-up");
    assert_eq!((meta.uid(), meta.gid()), (NONROOT, NONROOT));

    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let status = wait_exit(&mut child.0, Duration::from_secs(10));
    let log = stderr.join().unwrap();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr: {log}");
    let down = healthcheck_as_nonroot(&bin, &addr);
    assert_eq!(
        down.status.code(),
        Some(1),
        "healthcheck with the agent down: {down:?}"
    );

    // Anywhere else is refused: an audit log in a root-owned directory stops the start-up
    // with one line naming the path and the uid.
    let root_dir = tmp.path().join("root-only");
    fs::create_dir(&root_dir).unwrap();
    fs::set_permissions(&root_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let refused = root_dir.join("audit.log");
    let config = write_config(tmp.path(), free_port(), &refused);
    let child = spawn_nonroot(&bin, &config, tmp.path());
    let mut child = KillOnDrop(child);
    let stderr = collect_stderr(&mut child.0);
    let status = wait_exit(&mut child.0, Duration::from_secs(30));
    let log = stderr.join().unwrap();
    assert!(
        !status.success(),
        "started with an unwritable audit log: {log}"
    );
    assert!(
        log.contains(&format!("uid {NONROOT}")) && log.contains(&refused.display().to_string()),
        "the refusal names the uid and the path: {log}"
    );
    assert!(
        !refused.exists(),
        "nothing written in the root-owned directory"
    );
}

// ---------------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Instr {
    line: usize,
    keyword: String,
    args: String,
}

#[derive(Debug, Default)]
struct Stage {
    base: String,
    name: Option<String>,
    instrs: Vec<Instr>,
}

#[derive(Debug, Default)]
struct Dockerfile {
    /// `ARG`s before the first `FROM`, with their defaults.
    global_args: HashMap<String, String>,
    stages: Vec<Stage>,
}

/// Instructions with continuation lines joined and comments dropped (Docker's rules).
fn instructions(text: &str) -> Vec<Instr> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_none()) {
            continue;
        }
        let (continues, part) = match trimmed.strip_suffix('\\') {
            Some(p) => (true, p.trim()),
            None => (false, trimmed),
        };
        let (line, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if !acc.is_empty() && !part.is_empty() {
            acc.push(' ');
        }
        acc.push_str(part);
        if continues {
            pending = Some((line, acc));
            continue;
        }
        if acc.is_empty() {
            continue;
        }
        let (kw, args) = acc.split_once(char::is_whitespace).unwrap_or((&acc, ""));
        out.push(Instr {
            line,
            keyword: kw.to_ascii_uppercase(),
            args: args.trim().to_string(),
        });
    }
    if let Some((line, acc)) = pending {
        let (kw, args) = acc.split_once(char::is_whitespace).unwrap_or((&acc, ""));
        out.push(Instr {
            line,
            keyword: kw.to_ascii_uppercase(),
            args: args.trim().to_string(),
        });
    }
    out
}

fn parse_dockerfile(text: &str) -> Dockerfile {
    let mut df = Dockerfile::default();
    for ins in instructions(text) {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            df.stages.push(Stage {
                base: words.first().unwrap_or(&"").to_string(),
                name,
                instrs: Vec::new(),
            });
        } else if let Some(stage) = df.stages.last_mut() {
            stage.instrs.push(ins);
        } else if ins.keyword == "ARG" {
            let (k, v) = ins.args.split_once('=').unwrap_or((&ins.args, ""));
            df.global_args
                .insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    df
}

/// Replaces `${NAME}` and `$NAME` for the given variables; leaves anything else as written.
fn expand(s: &str, vars: &HashMap<String, String>) -> String {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) if braced[..end].chars().all(ident) => (&braced[..end], end + 2),
                _ => ("", 0),
            }
        } else {
            let end = after.find(|c: char| !ident(c)).unwrap_or(after.len());
            (&after[..end], end)
        };
        match vars.get(name) {
            Some(v) if !name.is_empty() => {
                out.push_str(v);
                rest = &after[len..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `name[:tag]@sha256:<64 hex>`.
fn pinned_by_digest(image: &str) -> bool {
    match image.split_once("@sha256:") {
        Some((name, digest)) => {
            !name.is_empty()
                && !name.contains('$')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"./_-:".contains(&b))
                && is_hex(digest, 64)
        }
        None => false,
    }
}

/// A JSON-array (exec form) argument list, or None for the shell form.
fn exec_form(args: &str) -> Option<Vec<String>> {
    serde_json::from_str::<Vec<String>>(args.trim()).ok()
}

/// What fetch-crs.sh pins.
#[derive(Debug, Clone, PartialEq)]
struct ScriptPin {
    version: String,
    sha256: String,
}

fn script_pin(script: &str) -> ScriptPin {
    let value = |key: &str| -> String {
        script
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap_or_else(|| panic!("rules/fetch-crs.sh has no {key}"))
            .trim()
            .to_string()
    };
    ScriptPin {
        version: value("CRS_PIN_VERSION="),
        sha256: value("CRS_PIN_SHA256="),
    }
}

/// The URL fetch-crs.sh downloads for `version`.
fn crs_url(version: &str) -> String {
    format!("https://github.com/coreruleset/coreruleset/archive/refs/tags/v{version}.tar.gz")
}

/// Everything wrong with `text` as this project's Dockerfile; empty when it is right.
fn dockerfile_problems(text: &str, pin: &ScriptPin, crs_version: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let df = parse_dockerfile(text);
    if df.stages.len() < 2 {
        problems.push(format!(
            "expected a multi-stage build, found {} FROM",
            df.stages.len()
        ));
        return problems;
    }
    let stage_names: Vec<String> = df.stages.iter().filter_map(|s| s.name.clone()).collect();
    for s in &df.stages {
        let base = expand(&s.base, &df.global_args);
        if !stage_names.contains(&base) && !pinned_by_digest(&base) {
            problems.push(format!(
                "FROM {} is not pinned by digest (name:tag@sha256:<64 hex>)",
                s.base
            ));
        }
    }

    // The CRS pin: the global build arguments equal the script's pin and the build's version.
    let arg = |k: &str| df.global_args.get(k).cloned().unwrap_or_default();
    let (version, sha) = (arg("CRS_VERSION"), arg("CRS_SHA256"));
    if version != pin.version || version != crs_version {
        problems.push(format!(
            "ARG CRS_VERSION={version:?}, but fetch-crs.sh pins {:?} and the build compiled CRS {crs_version:?}",
            pin.version
        ));
    }
    if !is_hex(&sha, 64) || sha != pin.sha256 {
        problems.push(format!(
            "ARG CRS_SHA256={sha:?} is not the 64-hex pin of fetch-crs.sh ({:?})",
            pin.sha256
        ));
    }

    // The runtime: the last stage, distroless/cc on Debian 12, by digest.
    let runtime = df.stages.last().unwrap();
    if !runtime
        .base
        .starts_with("gcr.io/distroless/cc-debian12:nonroot@sha256:")
    {
        problems.push(format!(
            "the last stage is FROM {}, not gcr.io/distroless/cc-debian12:nonroot@sha256:...",
            runtime.base
        ));
    }
    let of =
        |kw: &str| -> Vec<&Instr> { runtime.instrs.iter().filter(|i| i.keyword == kw).collect() };
    for i in of("RUN") {
        problems.push(format!(
            "line {}: RUN in the runtime stage (distroless has no shell)",
            i.line
        ));
    }

    // The binary comes from a Rust builder on bookworm (Debian 12: the runtime's glibc), and
    // that builder fetches the CRS by URL and checks it with `sha256sum -c` before unpacking.
    let copies = of("COPY");
    let bin_copy = copies.iter().find(|i| {
        let w: Vec<&str> = i.args.split_whitespace().collect();
        w.last() == Some(&IMAGE_BIN) && w.iter().any(|x| x.starts_with("--from="))
    });
    let builder = bin_copy.and_then(|i| {
        let from = i
            .args
            .split_whitespace()
            .find_map(|w| w.strip_prefix("--from="))?;
        df.stages.iter().find(|s| s.name.as_deref() == Some(from))
    });
    match builder {
        None => problems.push(format!(
            "the runtime stage has no COPY --from=<builder stage> ... {IMAGE_BIN}"
        )),
        Some(b) => {
            let base = expand(&b.base, &df.global_args);
            let (name, _) = base.split_once('@').unwrap_or((&base, ""));
            if !(name.starts_with("rust:") && name.contains("bookworm")) {
                problems.push(format!(
                    "the builder is FROM {}: it must be a rust:*-bookworm image (glibc of debian12)",
                    b.base
                ));
            }
            for a in ["CRS_VERSION", "CRS_SHA256"] {
                if !b
                    .instrs
                    .iter()
                    .any(|i| i.keyword == "ARG" && i.args.split('=').next() == Some(a))
                {
                    problems.push(format!(
                        "the builder stage does not declare ARG {a} (global ARGs are not visible in a stage without it)"
                    ));
                }
            }
            let url = crs_url(&pin.version);
            let fetch = b
                .instrs
                .iter()
                .find(|i| i.keyword == "RUN" && expand(&i.args, &df.global_args).contains(&url));
            match fetch {
                None => problems.push(format!("the builder has no RUN downloading {url}")),
                Some(i) => {
                    let run = expand(&i.args, &df.global_args);
                    let check = run.find("sha256sum -c");
                    let unpack = ["tar ", "fetch-crs.sh"]
                        .iter()
                        .filter_map(|w| run.find(w))
                        .min();
                    if check.is_none() || !run.contains(&pin.sha256) {
                        problems.push(format!(
                            "line {}: the CRS tarball is not checked with `sha256sum -c` against CRS_SHA256",
                            i.line
                        ));
                    } else if unpack.is_some_and(|u| u < check.unwrap()) {
                        problems.push(format!(
                            "line {}: the CRS tarball is unpacked before its checksum is checked",
                            i.line
                        ));
                    }
                }
            }
        }
    }

    // Only the binary, config.yaml and the (empty) log directory go into the runtime.
    let mut config_at = None;
    for i in &copies {
        let w: Vec<&str> = i.args.split_whitespace().collect();
        let dest = w.last().copied().unwrap_or("");
        let srcs: Vec<&str> = w[..w.len().saturating_sub(1)]
            .iter()
            .copied()
            .filter(|x| !x.starts_with("--"))
            .collect();
        match dest {
            d if d == IMAGE_BIN => {}
            d if d == LOG_DIR || d == format!("{LOG_DIR}/") => {
                if !w.contains(&"--chown=65532:65532") {
                    problems.push(format!(
                        "line {}: {LOG_DIR} is not copied --chown=65532:65532",
                        i.line
                    ));
                }
            }
            d if srcs == ["config.yaml"] => config_at = Some(d.to_string()),
            _ => problems.push(format!(
                "line {}: COPY {} puts more than the binary and config.yaml in the runtime",
                i.line, i.args
            )),
        }
    }

    let last = |kw: &str| of(kw).last().map(|i| i.args.clone());
    match last("USER").as_deref() {
        Some("65532") | Some("65532:65532") => {}
        other => problems.push(format!(
            "the runtime's USER is {other:?}, not 65532 (the distroless nonroot uid)"
        )),
    }
    if !of("EXPOSE").iter().any(|i| {
        i.args
            .split_whitespace()
            .any(|p| p == "9000" || p == "9000/tcp")
    }) {
        problems.push("the runtime does not EXPOSE 9000".into());
    }
    let volumes: Vec<String> = of("VOLUME")
        .iter()
        .flat_map(|i| {
            exec_form(&i.args)
                .unwrap_or_else(|| i.args.split_whitespace().map(String::from).collect())
        })
        .collect();
    if !volumes.iter().any(|v| v == LOG_DIR) {
        problems.push(format!("the runtime has no VOLUME {LOG_DIR}"));
    }
    match last("HEALTHCHECK") {
        None => problems.push("the runtime has no HEALTHCHECK".into()),
        Some(hc) => {
            let cmd = hc
                .split_once(" CMD ")
                .map(|(_, c)| c)
                .or_else(|| hc.strip_prefix("CMD "));
            match cmd.and_then(exec_form) {
                Some(argv) if argv.first().map(String::as_str) == Some(IMAGE_BIN)
                    && argv.get(1).map(String::as_str) == Some("healthcheck") => {}
                _ => problems.push(format!(
                    "HEALTHCHECK {hc} does not run [\"{IMAGE_BIN}\", \"healthcheck\", ...] in exec form (no shell, no curl in distroless)"
                )),
            }
        }
    }
    match last("ENTRYPOINT").as_deref().and_then(exec_form) {
        Some(argv) if argv == [IMAGE_BIN] => {}
        other => problems.push(format!("ENTRYPOINT {other:?} is not [\"{IMAGE_BIN}\"]")),
    }
    match last("CMD").as_deref().and_then(exec_form) {
        Some(argv) if argv == ["--config", IMAGE_CONFIG] => {}
        other => problems.push(format!(
            "CMD {other:?} is not [\"--config\", \"{IMAGE_CONFIG}\"]"
        )),
    }
    if config_at.as_deref() != Some(IMAGE_CONFIG) {
        problems.push(format!(
            "config.yaml is copied to {config_at:?}, not {IMAGE_CONFIG}"
        ));
    }

    // The test stage runs the CI entry point.
    match df.stages.iter().find(|s| s.name.as_deref() == Some("test")) {
        Some(t)
            if t.instrs
                .iter()
                .any(|i| i.keyword == "RUN" && i.args.contains(".ci/run")) => {}
        _ => problems.push("no `test` stage running .ci/run".into()),
    }
    problems
}

fn real_pin() -> ScriptPin {
    script_pin(&read_repo("rules/fetch-crs.sh"))
}

#[test]
fn dockerfile_keeps_its_pins_and_runtime_contract() {
    let pin = real_pin();
    assert!(
        is_hex(&pin.sha256, 64),
        "fetch-crs.sh pins {:?}: not 64 lowercase hex",
        pin.sha256
    );
    let problems = dockerfile_problems(&read_repo("Dockerfile"), &pin, builtin::CRS_VERSION);
    assert!(
        problems.is_empty(),
        "Dockerfile:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn shipped_config_fits_the_image() {
    // The image's config.yaml: listens on the exposed port (where HEALTHCHECK looks) on every
    // interface, and logs into the volume.
    let config = coraza_spoa::config::Config::load(&repo().join("config.yaml")).unwrap();
    assert_eq!(config.bind.port(), 9000);
    assert!(config.bind.ip().is_unspecified(), "bind {}", config.bind);
    assert!(
        config.audit.path.starts_with(LOG_DIR),
        "audit path {} is outside the {LOG_DIR} volume",
        config.audit.path.display()
    );
}

#[test]
fn dockerfile_checker_rejects_unpinned_edits() {
    let pin = real_pin();
    let good = read_repo("Dockerfile");
    assert!(dockerfile_problems(&good, &pin, builtin::CRS_VERSION).is_empty());
    let digest = |prefix: &str| -> String {
        let start = good.find(prefix).unwrap_or_else(|| panic!("{prefix}"));
        let at = good[start..].find("@sha256:").unwrap() + start;
        good[at..at + "@sha256:".len() + 64].to_string()
    };
    let runtime_digest = digest("gcr.io/distroless/cc-debian12:nonroot");
    let builder_digest = digest("FROM rust:");
    let healthcheck = good
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("CMD [\"/usr/local/bin/coraza-spoa\", \"healthcheck\"")
        })
        .expect("HEALTHCHECK CMD line")
        .to_string();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "runtime by tag only",
            good.replace(&runtime_digest, ""),
            "not pinned by digest",
        ),
        (
            "builder by tag only",
            good.replace(&builder_digest, ""),
            "not pinned by digest",
        ),
        (
            "root user",
            good.replace("USER 65532:65532", "USER root"),
            "USER",
        ),
        ("no USER", good.replace("USER 65532:65532\n", ""), "USER"),
        ("no EXPOSE", good.replace("EXPOSE 9000\n", ""), "EXPOSE"),
        (
            "no VOLUME",
            good.replace("VOLUME [\"/var/log/coraza\"]\n", ""),
            "VOLUME",
        ),
        (
            "curl health check",
            good.replace(
                &healthcheck,
                "    CMD curl -f http://127.0.0.1:9000/ || exit 1",
            ),
            "HEALTHCHECK",
        ),
        (
            "unchecked CRS tarball",
            good.replace("sha256sum -c -", "true"),
            "sha256sum -c",
        ),
        (
            "another CRS checksum",
            good.replace(&pin.sha256, &"0".repeat(64)),
            "CRS_SHA256",
        ),
        (
            "builder not on Debian 12",
            good.replace("rust:1.95.0-bookworm@", "rust:1.95.0-trixie@"),
            "bookworm",
        ),
        (
            "shell in the runtime",
            good.replace("USER 65532:65532", "RUN mkdir /x\nUSER 65532:65532"),
            "RUN in the runtime",
        ),
        (
            "extra files in the runtime",
            good.replace(
                "COPY config.yaml",
                "COPY rules /etc/coraza-spoa/rules\nCOPY config.yaml",
            ),
            "more than the binary",
        ),
    ];
    for (what, text, expect) in cases {
        assert_ne!(text, good, "case {what:?} did not change the Dockerfile");
        let problems = dockerfile_problems(&text, &pin, builtin::CRS_VERSION);
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "case {what:?}: expected a problem mentioning {expect:?}, got {problems:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Gitea workflow
// ---------------------------------------------------------------------------------------------

type Yaml = serde_yaml::Value;

fn get<'a>(v: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    v.as_mapping()?.get(Yaml::String(key.to_string()))
}

fn strings(v: Option<&Yaml>) -> Vec<String> {
    match v {
        Some(Yaml::String(s)) => vec![s.clone()],
        Some(Yaml::Sequence(seq)) => seq
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

fn env_map(v: Option<&Yaml>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    if let Some(Yaml::Mapping(map)) = v {
        for (k, val) in map {
            if let (Some(k), Some(val)) = (k.as_str(), val.as_str()) {
                m.insert(k.to_string(), val.to_string());
            }
        }
    }
    m
}

/// Everything wrong with `text` as the build-and-push workflow; empty when it is right.
fn workflow_problems(text: &str, dockerfile: &str, ci_run: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let doc: Yaml = match serde_yaml::from_str(text) {
        Ok(d) => d,
        Err(e) => return vec![format!("not valid YAML: {e}")],
    };
    // `on:` (YAML 1.1 parsers would read the key as `true`).
    let on = get(&doc, "on").or_else(|| doc.as_mapping().and_then(|m| m.get(Yaml::Bool(true))));
    let branches = on
        .and_then(|o| get(o, "push"))
        .map(|p| strings(get(p, "branches")))
        .unwrap_or_default();
    if !branches.iter().any(|b| b == "main") {
        problems.push(format!(
            "not triggered on push to main (push branches {branches:?})"
        ));
    }

    let workflow_env = env_map(get(&doc, "env"));
    let jobs = match get(&doc, "jobs").and_then(Yaml::as_mapping) {
        Some(j) => j,
        None => return vec!["no jobs".into()],
    };
    // Every `uses:` pinned to a full commit.
    // (job name, step index within the ordered list of all steps, expanded run text)
    let mut runs: Vec<(String, usize, String)> = Vec::new();
    let mut needs: HashMap<String, Vec<String>> = HashMap::new();
    for (name, job) in jobs {
        let name = name.as_str().unwrap_or("").to_string();
        needs.insert(name.clone(), strings(get(job, "needs")));
        let mut env = workflow_env.clone();
        env.extend(env_map(get(job, "env")));
        let steps = get(job, "steps")
            .and_then(Yaml::as_sequence)
            .cloned()
            .unwrap_or_default();
        for (i, step) in steps.iter().enumerate() {
            if let Some(uses) = get(step, "uses").and_then(Yaml::as_str) {
                let pinned = uses.rsplit_once('@').is_some_and(|(_, r)| is_hex(r, 40));
                if !pinned {
                    problems.push(format!("uses: {uses} is not pinned to a 40-hex commit"));
                }
            }
            if let Some(run) = get(step, "run").and_then(Yaml::as_str) {
                let mut env = env.clone();
                env.extend(env_map(get(step, "env")));
                runs.push((name.clone(), i, expand(run, &env)));
            }
        }
    }

    let runs_tests = |r: &str| {
        r.contains("cargo test --release")
            || (r.contains(".ci/run") && ci_run.contains("\ncargo test --release"))
            || (r.contains("docker build") && r.contains("--target test") && {
                let df = parse_dockerfile(dockerfile);
                df.stages.iter().any(|s| {
                    s.name.as_deref() == Some("test")
                        && s.instrs
                            .iter()
                            .any(|i| i.keyword == "RUN" && i.args.contains(".ci/run"))
                }) && ci_run.contains("\ncargo test --release")
            })
    };
    let tests = runs.iter().find(|(_, _, r)| runs_tests(r));
    if tests.is_none() {
        problems.push("no step runs the tests (cargo test --release)".into());
    }

    let pushed: Vec<(&String, usize, String)> = runs
        .iter()
        .flat_map(|(job, i, r)| {
            r.lines().filter_map(move |l| {
                let l = l.trim();
                let rest = l.strip_prefix("docker push ")?;
                let image = rest.trim().trim_matches('"').to_string();
                Some((job, *i, image))
            })
        })
        .collect();
    let commit_tag =
        |image: &str| image.ends_with(":${{ github.sha }}") || image.ends_with(":${{ gitea.sha }}");
    if !pushed.iter().any(|(_, _, img)| img.ends_with(":latest")) {
        problems.push(format!("no `docker push ...:latest` (pushes: {pushed:?})"));
    }
    if !pushed.iter().any(|(_, _, img)| commit_tag(img)) {
        problems.push(format!(
            "no `docker push ...:<commit sha>` tag (pushes: {pushed:?})"
        ));
    }
    // Pushes happen only after the tests: later in the same job, or in a job that needs it.
    if let Some((test_job, test_step, _)) = tests {
        for (job, step, image) in &pushed {
            let ordered = if *job == test_job {
                step > test_step
            } else {
                needs.get(*job).is_some_and(|n| n.contains(test_job))
            };
            if !ordered {
                problems.push(format!("{image} is pushed without waiting for the tests"));
            }
        }
    }
    for (_, _, r) in &runs {
        if r.contains("docker login") {
            if !r.contains("--password-stdin") {
                problems.push("docker login without --password-stdin".into());
            }
            if !text.contains("${{ secrets.") {
                problems.push("the registry password does not come from a secret".into());
            }
        }
    }
    if !runs.iter().any(|(_, _, r)| r.contains("docker login")) {
        problems.push("no docker login before pushing".into());
    }
    problems
}

const WORKFLOW: &str = ".gitea/workflows/build-push-coraza.yaml";

#[test]
fn workflow_builds_tests_and_pushes_latest_and_commit_tags() {
    let problems = workflow_problems(
        &read_repo(WORKFLOW),
        &read_repo("Dockerfile"),
        &read_repo(".ci/run"),
    );
    assert!(
        problems.is_empty(),
        "{WORKFLOW}:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn workflow_checker_rejects_broken_variants() {
    let good = read_repo(WORKFLOW);
    let dockerfile = read_repo("Dockerfile");
    let ci_run = read_repo(".ci/run");
    assert!(workflow_problems(&good, &dockerfile, &ci_run).is_empty());
    let cases: Vec<(&str, String, &str)> = vec![
        ("not YAML", format!("{good}\n  - : [\n"), "not valid YAML"),
        (
            "another branch",
            good.replace("      - main\n", "      - develop\n"),
            "push to main",
        ),
        (
            "no latest",
            good.replace(
                "          docker push \"${REGISTRY}/${IMAGE_NAME}:latest\"\n",
                "",
            ),
            ":latest",
        ),
        (
            "no commit tag",
            good.replace(
                "          docker push \"${REGISTRY}/${IMAGE_NAME}:${COMMIT_SHA}\"\n",
                "",
            ),
            "commit sha",
        ),
        (
            "no tests",
            good.replace("--target test", "--target builder"),
            "runs the tests",
        ),
        (
            "action by tag",
            good.replace(
                "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
                "actions/checkout@v4",
            ),
            "not pinned",
        ),
        (
            "password on the command line",
            good.replace(
                "printf '%s' \"$REGISTRY_PASSWORD\" | docker login \"$REGISTRY\" -u \"$REGISTRY_USERNAME\" --password-stdin",
                "docker login \"$REGISTRY\" -u \"$REGISTRY_USERNAME\" -p \"$REGISTRY_PASSWORD\"",
            ),
            "--password-stdin",
        ),
    ];
    for (what, text, expect) in cases {
        assert_ne!(text, good, "case {what:?} did not change the workflow");
        let problems = workflow_problems(&text, &dockerfile, &ci_run);
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "case {what:?}: expected a problem mentioning {expect:?}, got {problems:?}"
        );
    }
    // Tests that no longer come before the push.
    let moved = {
        let test_step = "      - name: Build and test (cargo test --release via .ci/run in the builder image)\n        run: docker build --progress=plain --target test -t \"coraza-spoa-test:${COMMIT_SHA}\" .\n\n";
        assert!(
            good.contains(test_step),
            "the test step as written in {WORKFLOW}"
        );
        let without = good.replace(test_step, "");
        format!("{}\n{}", without.trim_end(), test_step.trim_end())
    };
    let problems = workflow_problems(&moved, &dockerfile, &ci_run);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("without waiting for the tests")),
        "{problems:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// rules/fetch-crs.sh
// ---------------------------------------------------------------------------------------------

fn fetch_crs(args: &[&str]) -> Output {
    Command::new("sh")
        .arg(repo().join("rules/fetch-crs.sh"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A tarball laid out like the release archive (`coreruleset-<version>/...`), made from the
/// CRS this build compiled; returns its path and SHA-256.
fn local_release_tarball(tmp: &Path) -> (PathBuf, String) {
    let crs = Path::new(builtin::CRS_DIR_AT_BUILD);
    assert!(
        crs.join("SHA256SUMS").is_file(),
        "{} (CRS_DIR at build time) is gone",
        crs.display()
    );
    let top = format!("coreruleset-{}", builtin::CRS_VERSION);
    let stage = tmp.join("stage");
    fs::create_dir(&stage).unwrap();
    std::os::unix::fs::symlink(crs, stage.join(&top)).unwrap();
    let tarball = tmp.join("crs.tar.gz");
    let out = Command::new("tar")
        .arg("-czhf")
        .arg(&tarball)
        .arg("-C")
        .arg(&stage)
        .arg(&top)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {out:?}");
    let sum = Command::new("sha256sum").arg(&tarball).output().unwrap();
    assert!(sum.status.success());
    let hex = text(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    (tarball, hex)
}

#[test]
fn fetch_crs_is_posix_sh() {
    // Debian's /bin/sh is dash; prefer it explicitly when installed.
    let shell = if Path::new("/bin/dash").exists() {
        "/bin/dash"
    } else {
        "sh"
    };
    let out = Command::new(shell)
        .arg("-n")
        .arg(repo().join("rules/fetch-crs.sh"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{shell} -n: {}", text(&out.stderr));
    let script = read_repo("rules/fetch-crs.sh");
    assert!(script.starts_with("#!/bin/sh\n"), "POSIX sh shebang");
    assert!(
        script.contains(&crs_url("$version")),
        "downloads the release URL"
    );
    let pin = script_pin(&script);
    assert_eq!(
        pin.version,
        builtin::CRS_VERSION,
        "script pin vs the build's CRS"
    );
}

#[test]
fn fetch_crs_refuses_a_tarball_that_is_not_the_pinned_release() {
    let tmp = TempDir::new("fetch-mismatch");
    let (tarball, got) = local_release_tarball(tmp.path());
    let pin = real_pin();
    assert_ne!(
        got, pin.sha256,
        "the local tarball cannot be the GitHub archive"
    );
    let dest = tmp.path().join("out/crs");
    let out = fetch_crs(&[
        "--tarball",
        tarball.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "no CRS_DIR line on failure");
    assert!(
        err.contains("SHA-256 mismatch") && err.contains(&pin.sha256) && err.contains(&got),
        "{err}"
    );
    assert!(!dest.exists(), "nothing unpacked");
    let leftovers: Vec<_> = fs::read_dir(tmp.path().join("out")).unwrap().collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn fetch_crs_fails_closed_on_a_malformed_checksum() {
    let tmp = TempDir::new("fetch-malformed");
    let dest = tmp.path().join("crs");
    let dest = dest.to_str().unwrap();
    let sixty_three = "a".repeat(63);
    let upper = "A".repeat(64);
    for bad in ["", "TODO", sixty_three.as_str(), upper.as_str()] {
        // No --tarball: a pass would try the network; it must refuse before that.
        let out = fetch_crs(&["--version", "4.25.1", "--sha256", bad, "--dest", dest]);
        assert!(
            matches!(out.status.code(), Some(1) | Some(2)),
            "--sha256 {bad:?}: {out:?}"
        );
        assert!(out.stdout.is_empty(), "--sha256 {bad:?}: {out:?}");
        let err = text(&out.stderr);
        assert!(
            !err.contains("downloading"),
            "--sha256 {bad:?} reached the download: {err}"
        );
    }
    let out = fetch_crs(&["--version", "4.25.1", "--dest", dest]);
    assert_eq!(out.status.code(), Some(2), "--version alone: {out:?}");
    assert!(!Path::new(dest).exists());
}

#[test]
fn fetch_crs_unpacks_verifies_and_writes_sha256sums() {
    let tmp = TempDir::new("fetch-ok");
    let (tarball, sha) = local_release_tarball(tmp.path());
    let dest = tmp.path().join("target/crs/v-test");
    let args = [
        "--tarball",
        tarball.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
        "--version",
        builtin::CRS_VERSION,
        "--sha256",
        &sha,
    ];
    let out = fetch_crs(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("CRS_DIR={}\n", dest.display()));

    // The same SHA256SUMS that build.rs accepted for the CRS this build compiled: same files,
    // same hashes, same order.
    let crs = Path::new(builtin::CRS_DIR_AT_BUILD);
    let expected = fs::read_to_string(crs.join("SHA256SUMS")).unwrap();
    let written = fs::read_to_string(dest.join("SHA256SUMS")).unwrap();
    assert_eq!(written, expected);
    let listed = written.lines().count();
    assert_eq!(listed, builtin::CRS_FILES.len(), "files build.rs verified");
    for (path, _) in builtin::CRS_FILES {
        assert_eq!(
            fs::read(dest.join(path)).unwrap(),
            fs::read(crs.join(path)).unwrap(),
            "{path}"
        );
    }
    assert!(
        dest.join("tests/regression").is_dir(),
        "the whole release is kept"
    );
    // Deletable by its owner (cargo clean) although the release tree may be read-only.
    let mode = fs::metadata(dest.join("rules"))
        .unwrap()
        .permissions()
        .mode();
    assert_ne!(mode & 0o200, 0, "rules/ is owner-writable");

    // A second run re-verifies and prints the same line.
    let again = fetch_crs(&args);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(again.stdout, out.stdout);
    assert!(text(&again.stderr).contains("verified"));

    // A modified file is caught on the next run.
    let rule = dest.join("rules/REQUEST-901-INITIALIZATION.conf");
    let mut bytes = fs::read(&rule).unwrap();
    bytes.extend_from_slice(b"\nSecAction \"id:1,phase:1,pass,nolog\"\n");
    fs::write(&rule, bytes).unwrap();
    let tampered = fetch_crs(&args);
    assert_eq!(tampered.status.code(), Some(1));
    assert!(tampered.stdout.is_empty());
    assert!(
        text(&tampered.stderr).contains("differ from its SHA256SUMS"),
        "{}",
        text(&tampered.stderr)
    );
}
