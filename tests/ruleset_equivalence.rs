//! The production ruleset gives the same verdicts however it was built and evaluated:
//! - compiled at build time (embedded) vs compiled at run time by `check --rules
//!   rules/main.conf` (the same compiler, the same files), through the binary;
//! - with the literal prefilter vs without it (every rule evaluated), through the library.
//!
//! Inputs: both request corpora and every CRS regression stage (the same requests the
//! regression suite sends), so attacks, malformed requests and responses are all covered.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::ftw;
use coraza_spoa::check::{self, CheckRequest};
use coraza_spoa::engine::{Ruleset, Transaction};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn crs_dir() -> PathBuf {
    std::env::var_os("CRS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/crs/v4.25.1"))
}

/// Every input line: the corpora, then the regression stages.
fn inputs() -> Vec<String> {
    let mut lines = Vec::new();
    // The request corpora when present (the workplace's ../shared, or CORPUS_DIR); a runner
    // without them still compares every CRS regression request.
    let corpus = std::env::var_os("CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/corpus"));
    if corpus.join("benign.jsonl").is_file() {
        for f in ["benign.jsonl", "attacks.jsonl"] {
            let p = corpus.join(f);
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            lines.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string),
            );
        }
    } else {
        eprintln!(
            "note: no request corpora at {}; comparing the CRS regression requests only",
            corpus.display()
        );
    }
    let tests =
        ftw::load_tests(&crs_dir().join("tests/regression/tests")).expect("regression tests");
    for t in &tests {
        for (i, stage) in t.stages.iter().enumerate() {
            if let Ok(line) = ftw::stage_check_line(&t.stage_id(i), stage) {
                lines.push(line);
            }
        }
    }
    assert!(lines.len() > 4000, "too few inputs: {}", lines.len());
    lines
}

fn run_check(args: &[&str], input: &str) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coraza-spoa"))
        .args(args)
        .env("CRS_DIR", crs_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn check");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("check output");
    writer.join().expect("writer").expect("write");
    assert!(out.status.success(), "check {args:?} failed");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn built_in_and_run_time_compiled_rulesets_agree() {
    let lines = inputs();
    let input = lines.join("\n") + "\n";
    let main_conf = repo().join("rules/main.conf");
    let built_in = run_check(&["check"], &input);
    let run_time = run_check(
        &["check", "--rules", main_conf.to_str().expect("path")],
        &input,
    );
    assert_eq!(
        built_in.len(),
        lines.len(),
        "one verdict per input line (built-in)"
    );
    assert_eq!(
        run_time.len(),
        lines.len(),
        "one verdict per input line (--rules)"
    );
    let mut with_matches = 0;
    for (a, b) in built_in.iter().zip(&run_time) {
        assert_eq!(a, b, "built-in and --rules verdicts differ");
        if !a.contains("\"matched\":[]") {
            with_matches += 1;
        }
    }
    // The comparison means something only if rules actually fired.
    assert!(
        with_matches > 2000,
        "only {with_matches} inputs matched any rule"
    );
}

#[test]
fn the_prefilter_never_changes_a_verdict() {
    let lines = inputs();
    std::env::set_var("CRS_DIR", crs_dir());
    let program =
        coraza_spoa::seclang::compile_file(&repo().join("rules/main.conf")).expect("compile");
    let with = Ruleset::new(program.clone()).expect("lower");
    let without = Ruleset::new(program).expect("lower").without_prefilter();
    assert!(
        with.prefiltered_rules > 200,
        "prefilter covers {} rules",
        with.prefiltered_rules
    );
    let (mut tw, mut to) = (Transaction::new(&with), Transaction::new(&without));
    let mut compared = 0;
    for line in &lines {
        let Ok(req): Result<CheckRequest, _> = check::parse_line(line) else {
            continue;
        };
        let a = check::evaluate(&mut tw, &req, true);
        let b = check::evaluate(&mut to, &req, true);
        assert_eq!(a, b, "prefilter changed the verdict of {}", req.id);
        compared += 1;
    }
    assert!(compared > 4000, "compared only {compared}");
}
