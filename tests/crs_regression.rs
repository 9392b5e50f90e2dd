//! The OWASP CRS regression suite (go-ftw YAML tests of the pinned release) run through the
//! offline evaluator: `coraza-spoa check --rules tests/crs/regression.conf --log`.
//!
//! Every stage of every test becomes one `check` input line (see `common::ftw` for how a stage
//! becomes the request the WAF sees); all lines go through one `check` process; each stage is
//! scored from the `log` lines of its answer exactly as go-ftw scores a WAF error log.
//!
//! The test fails when fewer tests pass than `tests/crs/baseline.txt` says, when
//! `tests/crs/exclusions.txt` names a test that does not exist (or breaks its policy), when no
//! test ran, or when `check` breaks its contract (crash, missing or reordered lines).
//!
//! Environment:
//! - `CRS_DIR`: the pinned CRS release (default `../shared/crs/v4.25.1` beside the repository);
//! - `CRS_FTW_FILTER=<substring>`: only tests whose id (`942100-3`) contains it (the baseline is
//!   then not enforced);
//! - `CRS_FTW_DUMP=<path>`: write the generated `check` input (JSON Lines) there;
//! - `CRS_FTW_VERBOSE=1`: print the log lines of failing tests;
//! - `CRS_FTW_CHECK_BIN=<path>`: evaluate with another binary speaking the same `check`
//!   contract (default: this crate's `coraza-spoa`);
//! - `CRS_FTW_TIMEOUT_SECS`: kill `check` after this long (default 1800).
//!
//! Every failing test is also written to `target/crs-regression-failures.txt`, with its log.

mod common;

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::ftw::{
    self, parse_baseline, parse_exclusions, Exclusion, FtwTest, Mismatch, StageResult,
    StageVerdict, TestVerdict,
};

/// How much of `check`'s stderr is kept for the failure message.
const STDERR_TAIL_BYTES: usize = 64 * 1024;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `CRS_DIR`, else `../shared/crs/v4.25.1` beside the repository; absolute either way.
fn crs_dir() -> PathBuf {
    let dir = match env::var_os("CRS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let fallback = repo_root().join("../shared/crs/v4.25.1");
            assert!(
                fallback.is_dir(),
                "CRS not found: set CRS_DIR to the pinned CRS release directory \
                 (no fallback at {})",
                fallback.display()
            );
            fallback
        }
    };
    assert!(
        dir.join("tests/regression/tests").is_dir(),
        "CRS_DIR={} has no tests/regression/tests directory",
        dir.display()
    );
    dir.canonicalize()
        .unwrap_or_else(|e| panic!("CRS_DIR={}: {e}", dir.display()))
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Runs `check` over `lines`, streaming stdin and stdout on separate threads (a pipe is only a
/// few KiB: writing everything before reading would deadlock). Returns one output line per
/// input line, or why the run is unusable.
fn run_check(
    bin: &Path,
    rules: &Path,
    crs_dir: &Path,
    lines: Vec<String>,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let expected = lines.len();
    let mut child = Command::new(bin)
        .args(["check", "--rules"])
        .arg(rules)
        .arg("--log")
        .env("CRS_DIR", crs_dir)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so the watchdog can stop helpers it spawned too (they would
        // otherwise keep the pipes open).
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");

    let writer = thread::spawn(move || -> std::io::Result<()> {
        let mut w = BufWriter::new(stdin);
        for line in &lines {
            w.write_all(line.as_bytes())?;
            w.write_all(b"\n")?;
        }
        w.flush()
        // Dropping the writer closes stdin: end of input for `check`.
    });
    let stderr_reader = thread::spawn(move || {
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > STDERR_TAIL_BYTES {
                        tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                    }
                }
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });
    // A hung evaluator must not hang the test suite.
    let (cancel, cancelled) = mpsc::channel::<()>();
    let pid = child.id();
    let watchdog = thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(timeout) {
            // SAFETY: kill(2) on the process group led by our own child, which has not been
            // waited for yet (the main thread waits only after cancelling this watchdog), so
            // the group id cannot have been reused.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
            return true;
        }
        false
    });

    let mut outputs = Vec::with_capacity(expected);
    let mut read_error = None;
    for line in BufReader::new(stdout).lines() {
        match line {
            Ok(line) => outputs.push(line),
            Err(e) => {
                read_error = Some(e);
                break;
            }
        }
    }
    let _ = cancel.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let write_result = writer
        .join()
        .map_err(|_| "stdin writer panicked".to_owned())?;
    let status = child
        .wait()
        .map_err(|e| format!("waiting for check: {e}"))?;
    let stderr_tail = stderr_reader.join().unwrap_or_default();

    let mut problems = Vec::new();
    if timed_out {
        problems.push(format!("killed after {} s", timeout.as_secs()));
    }
    if !status.success() {
        problems.push(format!("exited with {status}"));
    }
    if let Some(e) = read_error {
        problems.push(format!("reading its stdout failed: {e}"));
    }
    if let Err(e) = write_result {
        problems.push(format!("writing its stdin failed: {e}"));
    }
    if outputs.len() != expected {
        problems.push(format!(
            "answered {} lines for {expected} requests",
            outputs.len()
        ));
    }
    if problems.is_empty() {
        Ok(outputs)
    } else {
        Err(format!(
            "`{} check --rules {} --log` is unusable: {}\n--- stderr (tail) ---\n{}",
            bin.display(),
            rules.display(),
            problems.join("; "),
            stderr_tail
        ))
    }
}

/// Stage counts by what they check, for the report.
#[derive(Default)]
struct Breakdown {
    files: usize,
    tests: usize,
    stages: usize,
    scorable_tests: usize,
    expect_ids: usize,
    no_expect_ids: usize,
    match_regex: usize,
    no_match_regex: usize,
    status_only: usize,
    expect_error_only: usize,
    no_expectation: usize,
}

fn breakdown(tests: &[FtwTest]) -> Breakdown {
    let mut b = Breakdown {
        tests: tests.len(),
        ..Breakdown::default()
    };
    let mut files: Vec<&Path> = tests.iter().map(|t| t.file.as_path()).collect();
    files.dedup();
    b.files = files.len();
    for test in tests {
        b.scorable_tests += usize::from(test.is_scorable());
        for stage in &test.stages {
            b.stages += 1;
            let k = ftw::stage_kind(stage);
            b.expect_ids += usize::from(k.expect_ids);
            b.no_expect_ids += usize::from(k.no_expect_ids);
            b.match_regex += usize::from(k.match_regex);
            b.no_match_regex += usize::from(k.no_match_regex);
            if !k.is_scorable() {
                if k.status {
                    b.status_only += 1;
                } else if k.expect_error {
                    b.expect_error_only += 1;
                } else {
                    b.no_expectation += 1;
                }
            }
        }
    }
    b
}

#[test]
fn crs_regression_suite() {
    let root = repo_root();
    let crs = crs_dir();
    let tests_dir = crs.join("tests/regression/tests");
    let rules = root.join("tests/crs/regression.conf");
    let bin = env::var_os("CRS_FTW_CHECK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_coraza-spoa")));
    let filter = env::var("CRS_FTW_FILTER").ok().filter(|f| !f.is_empty());
    let verbose = env::var("CRS_FTW_VERBOSE").is_ok_and(|v| v == "1");
    let timeout = Duration::from_secs(
        env::var("CRS_FTW_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1800),
    );

    // Load and validate everything before spending time on evaluation.
    let all_tests = ftw::load_tests(&tests_dir).unwrap_or_else(|e| panic!("{e}"));
    let read = |name: &str| {
        let path = root.join("tests/crs").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let exclusions =
        parse_exclusions(&read("exclusions.txt")).unwrap_or_else(|e| panic!("exclusions.txt: {e}"));
    let unknown: Vec<&str> = exclusions
        .iter()
        .filter(|e| !all_tests.iter().any(|t| t.id == e.id))
        .map(|e| e.id.as_str())
        .collect();
    assert!(
        unknown.is_empty(),
        "exclusions.txt lists tests that do not exist: {unknown:?}"
    );
    let baseline = parse_baseline(&read("baseline.txt")).unwrap_or_else(|e| panic!("{e}"));

    let loaded = breakdown(&all_tests);
    println!(
        "CRS regression: {} ({} files, {} tests, {} stages; {} scorable tests)",
        crs.display(),
        loaded.files,
        loaded.tests,
        loaded.stages,
        loaded.scorable_tests
    );
    println!(
        "  stages with expect_ids {}, no_expect_ids {}, match_regex {}, no_match_regex {}; \
         not scorable: status only {}, expect_error only {}, no expectation {}",
        loaded.expect_ids,
        loaded.no_expect_ids,
        loaded.match_regex,
        loaded.no_match_regex,
        loaded.status_only,
        loaded.expect_error_only,
        loaded.no_expectation
    );

    let selected: Vec<&FtwTest> = all_tests
        .iter()
        .filter(|t| filter.as_deref().map_or(true, |f| t.id.contains(f)))
        .collect();
    let excluded: Vec<&Exclusion> = exclusions
        .iter()
        .filter(|e| selected.iter().any(|t| t.id == e.id))
        .collect();
    let to_run: Vec<&FtwTest> = selected
        .iter()
        .copied()
        .filter(|t| !exclusions.iter().any(|e| e.id == t.id))
        .collect();

    // Stage → check line; conversion failures are recorded and not sent.
    let mut lines: Vec<String> = Vec::new();
    // (test index in to_run, stage index) per sent line.
    let mut line_owner: Vec<(usize, usize)> = Vec::new();
    let mut results: Vec<Vec<Option<Result<StageResult, String>>>> =
        to_run.iter().map(|t| vec![None; t.stages.len()]).collect();
    for (ti, test) in to_run.iter().enumerate() {
        for (si, stage) in test.stages.iter().enumerate() {
            match ftw::stage_check_line(&test.stage_id(si), stage) {
                Ok(line) => {
                    lines.push(line);
                    line_owner.push((ti, si));
                }
                Err(e) => results[ti][si] = Some(Err(e.to_string())),
            }
        }
    }
    if let Some(path) = env::var_os("CRS_FTW_DUMP") {
        let mut dump = lines.join("\n");
        dump.push('\n');
        std::fs::write(&path, dump)
            .unwrap_or_else(|e| panic!("CRS_FTW_DUMP={}: {e}", Path::new(&path).display()));
        println!(
            "  wrote {} check input lines to {}",
            lines.len(),
            Path::new(&path).display()
        );
    }
    assert!(
        !lines.is_empty(),
        "no stage to evaluate (filter {filter:?} matched nothing runnable)"
    );

    let started = Instant::now();
    let outputs = run_check(&bin, &rules, &crs, lines, timeout).unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();
    for (output, &(ti, si)) in outputs.iter().zip(&line_owner) {
        let expected_id = to_run[ti].stage_id(si);
        let (id, result) = ftw::parse_check_output(output);
        assert_eq!(
            id.as_deref(),
            Some(expected_id.as_str()),
            "check answered out of order or without the id: {output}"
        );
        results[ti][si] = Some(Ok(result));
    }

    // Score.
    let mut passed = 0usize;
    let mut not_scorable = 0usize;
    let mut failures: Vec<(String, String)> = Vec::new(); // (reason line, log dump)
    let mut unscored_errors: Vec<String> = Vec::new();
    for (ti, test) in to_run.iter().enumerate() {
        let mut verdicts = Vec::with_capacity(test.stages.len());
        let mut log_dump = String::new();
        for (si, stage) in test.stages.iter().enumerate() {
            let verdict = match results[ti][si].take() {
                Some(Err(conversion)) => StageVerdict::Fail(vec![Mismatch::Conversion(conversion)]),
                Some(Ok(StageResult::Log(log))) => {
                    for line in &log {
                        let _ = writeln!(log_dump, "    [stage {}] {line}", si + 1);
                    }
                    ftw::score_stage(stage, &log)
                }
                Some(Ok(StageResult::Error(e))) => {
                    if ftw::stage_kind(stage).is_scorable() {
                        StageVerdict::Fail(vec![Mismatch::Evaluator(e)])
                    } else {
                        unscored_errors.push(format!("{}: {e}", test.stage_id(si)));
                        StageVerdict::NotScorable
                    }
                }
                None => unreachable!("every stage was converted or sent"),
            };
            verdicts.push(verdict);
        }
        match ftw::combine(&verdicts) {
            TestVerdict::NotScorable => not_scorable += 1,
            TestVerdict::Pass => passed += 1,
            TestVerdict::Fail(stages) => {
                failures.push((ftw::failure_line(test, &stages), log_dump));
            }
        }
    }
    let failed = failures.len();
    let scorable = passed + failed;

    // Report.
    println!(
        "  evaluated {} stages in {:.1} s{}",
        outputs.len(),
        elapsed.as_secs_f64(),
        filter
            .as_deref()
            .map(|f| format!(" (filter {f:?})"))
            .unwrap_or_default()
    );
    println!(
        "  passed {passed} / failed {failed} / not scorable {not_scorable} / excluded {}",
        excluded.len()
    );
    let rate = if scorable == 0 {
        0.0
    } else {
        100.0 * passed as f64 / scorable as f64
    };
    println!("  pass rate {rate:.2}% of {scorable} scorable tests (baseline {baseline})");
    for e in &excluded {
        println!("  excluded {}: {}", e.id, e.reason);
    }
    if !unscored_errors.is_empty() {
        println!(
            "  evaluator errors on not-scorable stages ({}): {}",
            unscored_errors.len(),
            unscored_errors.join("; ")
        );
    }
    let by_rule_file = {
        let mut m: BTreeMap<&str, usize> = BTreeMap::new();
        for (line, _) in &failures {
            let rule = line.split('-').next().unwrap_or("");
            *m.entry(rule).or_default() += 1;
        }
        m.len()
    };
    if !failures.is_empty() {
        println!("failing tests ({failed}, over {by_rule_file} rules):");
        for (line, log) in &failures {
            println!("  {line}");
            if verbose {
                print!("{log}");
            }
        }
    }
    let mut report = String::new();
    for (line, log) in &failures {
        let _ = writeln!(report, "{line}");
        report.push_str(log);
    }
    let report_path = target_dir().join("crs-regression-failures.txt");
    if std::fs::create_dir_all(target_dir()).is_ok() {
        match std::fs::write(&report_path, report) {
            Ok(()) => println!("  failures written to {}", report_path.display()),
            Err(e) => println!("  could not write {}: {e}", report_path.display()),
        }
    }

    // Verdict.
    assert!(scorable > 0, "no scorable test ran");
    if filter.is_none() {
        assert!(
            passed >= baseline,
            "CRS regression: {passed} tests pass, below the baseline of {baseline} \
             (tests/crs/baseline.txt)"
        );
        if passed > baseline {
            println!("  {passed} > baseline {baseline}: raise tests/crs/baseline.txt to {passed}");
        }
    } else {
        println!("  baseline not enforced on a filtered run");
    }
}
