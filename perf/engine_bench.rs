//! Engine benchmark: the compiled-in production ruleset (PL1) over the request corpora.
//!
//! `cargo bench --bench engine [-- --quick] [--only benign|attacks] [--no-adversarial]` prints a
//! table and writes `perf/out/engine.json`:
//! - per-request evaluation time (median, p90, p99, max, mean) and requests/s on one core, for
//!   `benign.jsonl` and `attacks.jsonl` separately (phases 1–2 and 5, as the agent runs them);
//! - ruleset start-up: decoding the embedded program and lowering it (what the agent does
//!   before it listens), and the whole process start to ready (`--version` does not load the
//!   ruleset, so this spawns `coraza-spoa check` on empty input);
//! - RSS after start-up with two worker transactions;
//! - adversarial 1 MiB bodies built to stress each operator family and body processor, with
//!   the time per MiB.
//!
//! Corpora come from `$CORPUS_DIR` or `../shared/corpus`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use coraza_spoa::check::{self, CheckRequest};
use coraza_spoa::engine::{Ruleset, Transaction};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only benign|attacks`, `--no-adversarial` and `--adversarial <label part>` narrow a
    // run (for profiling).
    let arg_after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let only = arg_after("--only");
    let adversarial_only = arg_after("--adversarial");
    // Each adversarial body is timed this many times and the median kept (default 1: the
    // first, cold run, which includes growing the worker's buffers).
    let adversarial_rounds: usize = arg_after("--adversarial-rounds")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .max(1);
    let adversarial_too = !args.iter().any(|a| a == "--no-adversarial");
    let corpus = std::env::var_os("CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus")));

    let t0 = Instant::now();
    let program = coraza_spoa::builtin::program().expect("embedded program");
    let decode = t0.elapsed();
    let t1 = Instant::now();
    let rs = Ruleset::new_lazy(program).expect("ruleset");
    let lower = t1.elapsed();
    let rs: &'static Ruleset = Box::leak(Box::new(rs));
    let t2 = Instant::now();
    rs.warm_up();
    let warm = t2.elapsed();

    let mut tx = Transaction::new(rs);
    let _tx2 = Transaction::new(rs);
    let rss_start = rss_kib();

    let mut report = serde_json::json!({
        "startup": {
            "decode_ms": ms(decode), "lower_ms": ms(lower), "background_regex_warm_up_ms": ms(warm),
            "process_to_ready_ms": process_start_ms(),
            "rss_kib_two_workers": rss_start,
        },
        "crs_version": coraza_spoa::builtin::CRS_VERSION,
        "rules": coraza_spoa::builtin::RULE_COUNT,
    });
    println!("start-up: decode {:.1} ms + lower {:.1} ms (regexes then compile in the background: {:.0} ms); process start to ready {:.1} ms; RSS {} KiB (2 transactions)",
        ms(decode), ms(lower), ms(warm), report["startup"]["process_to_ready_ms"].as_f64().unwrap_or(-1.0), rss_start);

    println!(
        "\n{:<10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "corpus", "n", "median", "p90", "p99", "max", "mean", "req/s"
    );
    // Every input is loaded before the first evaluation, so the RSS growth measured around the
    // evaluations is the worker's own (its buffers and regex caches), not the benchmark's data.
    let corpora: Vec<(&str, Vec<CheckRequest>)> = ["benign", "attacks"]
        .into_iter()
        .filter(|name| only.as_deref().map_or(true, |o| o == *name))
        .map(|name| {
            let path = corpus.join(format!("{name}.jsonl"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let reqs = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| check::parse_line(l).expect("corpus line"))
                .collect();
            (name, reqs)
        })
        .collect();
    let adversarial_bodies = adversarial_too.then(adversarial).unwrap_or_default();
    let rss_loaded = rss_kib();
    for (name, reqs) in &corpora {
        let name = *name;
        // Warm-up pass (lazy DFA caches fill, buffers grow to steady state).
        for r in reqs {
            check::evaluate(&mut tx, r, false);
        }
        let rounds = if quick { 1 } else { 5 };
        let mut samples = Vec::with_capacity(reqs.len() * rounds);
        let started = Instant::now();
        for _ in 0..rounds {
            for r in reqs {
                let s = Instant::now();
                std::hint::black_box(check::evaluate(&mut tx, r, false));
                samples.push(s.elapsed());
            }
        }
        let total = started.elapsed();
        samples.sort();
        let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
        let mean = total / samples.len() as u32;
        let rps = samples.len() as f64 / total.as_secs_f64();
        println!(
            "{:<10} {:>6} {:>8.1}µ {:>8.1}µ {:>8.1}µ {:>8.1}µ {:>8.1}µ {:>10.0}",
            name,
            reqs.len(),
            us(pct(0.5)),
            us(pct(0.9)),
            us(pct(0.99)),
            us(pct(1.0)),
            us(mean),
            rps
        );
        report[name] = serde_json::json!({
            "requests": reqs.len(), "rounds": rounds,
            "median_us": us(pct(0.5)), "p90_us": us(pct(0.9)), "p99_us": us(pct(0.99)),
            "max_us": us(pct(1.0)), "mean_us": us(mean), "requests_per_s_one_core": rps,
        });
    }

    println!("\nadversarial 1 MiB bodies (ms per MiB):");
    let mut adv = serde_json::Map::new();
    for (label, ct, body) in adversarial_bodies {
        if adversarial_only
            .as_deref()
            .is_some_and(|o| !label.contains(o))
        {
            continue;
        }
        let req = CheckRequest {
            id: label.into(),
            method: b"POST".to_vec(),
            uri: b"/upload?x=1".to_vec(),
            version: b"1.1".to_vec(),
            headers: vec![
                (b"Host".to_vec(), b"example.com".to_vec()),
                (b"User-Agent".to_vec(), b"Mozilla/5.0".to_vec()),
                (b"Accept".to_vec(), b"*/*".to_vec()),
                (b"Content-Type".to_vec(), ct.as_bytes().to_vec()),
                (
                    b"Content-Length".to_vec(),
                    body.len().to_string().into_bytes(),
                ),
            ],
            body,
            remote_addr: "192.0.2.1".into(),
            response: None,
        };
        let mib = req.body.len() as f64 / (1 << 20) as f64;
        let mut times = Vec::with_capacity(adversarial_rounds);
        let mut r = None;
        for _ in 0..adversarial_rounds {
            let s = Instant::now();
            r = Some(check::evaluate(&mut tx, &req, false));
            times.push(s.elapsed());
        }
        times.sort();
        let r = r.expect("at least one round");
        let t = ms(times[times.len() / 2]) / mib;
        println!(
            "  {label:<28} {t:>8.1} ms/MiB  ({} rules matched)",
            r.matched.len()
        );
        adv.insert(
            label.to_string(),
            serde_json::json!({"ms_per_mib": t, "matched": r.matched.len()}),
        );
    }
    report["adversarial_ms_per_mib"] = serde_json::Value::Object(adv);

    // What one worker keeps after this traffic: buffers at their high-water mark and lazy-DFA
    // states. Each worker grows on its own, so two workers hold about twice the growth.
    let grown = rss_kib().saturating_sub(rss_loaded);
    let regex_caches = tx.regex_cache_bytes() as u64 / 1024;
    println!(
        "\nworker memory after the run: RSS +{grown} KiB (regex caches {regex_caches} KiB); two workers under this traffic: about {} KiB",
        rss_start + 2 * grown
    );
    report["steady_state"] = serde_json::json!({
        "rss_growth_kib_one_worker": grown,
        "regex_cache_kib_one_worker": regex_caches,
        "rss_kib_two_workers_estimate": rss_start + 2 * grown,
    });

    let out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/perf/out"));
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(
        out.join("engine.json"),
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
    println!("\nwrote {}", out.join("engine.json").display());
}

/// Bodies built to make each operator family and body processor work hard.
fn adversarial() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    const MIB: usize = 1 << 20;
    let rep = |unit: &[u8]| -> Vec<u8> { unit.iter().copied().cycle().take(MIB).collect() };
    let mut v = Vec::new();
    // One huge form value full of near-miss SQL / shell / XSS fragments (regex + libinjection).
    let mut form = b"q=".to_vec();
    form.extend(rep(
        b"select%20union%20or%201%3D1%20%3Cscript%3E%24%28cat%20%2Fetc%29%27%22%3B--%20",
    ));
    v.push((
        "urlencoded one 1 MiB value",
        "application/x-www-form-urlencoded",
        form,
    ));
    // Many small arguments (argument limits, per-value overhead).
    v.push((
        "urlencoded many args",
        "application/x-www-form-urlencoded",
        rep(b"a=1&bb=22&ccc=333&"),
    ));
    // Deeply nested and wide JSON.
    let mut json = Vec::new();
    json.extend(std::iter::repeat(b'[').take(2000));
    json.extend(rep(b"\"x' or 1=1 -- <svg onload=alert(1)>\","));
    json.extend(std::iter::repeat(b']').take(2000));
    v.push(("json nested + strings", "application/json", json));
    // XML with many attributes and text nodes.
    let mut xml = b"<?xml version=\"1.0\"?><r>".to_vec();
    xml.extend(rep(
        b"<a b=\"javascript:alert(1)\" c='; cat /etc/passwd'>select * from t</a>",
    ));
    xml.extend(b"</r>");
    v.push(("xml attributes + text", "application/xml", xml));
    // Multipart with many parts.
    let mut mp = Vec::new();
    let part = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n../../etc/passwd <?php system($_GET[1]); ?>\r\n";
    while mp.len() < MIB {
        mp.extend_from_slice(part);
    }
    mp.extend_from_slice(b"--XyZ--\r\n");
    v.push((
        "multipart many parts",
        "multipart/form-data; boundary=XyZ",
        mp,
    ));
    // Raw body the engine only sees as REQUEST_BODY (forced variable), with decoder bait.
    v.push((
        "text/plain decoder bait",
        "text/plain",
        rep(b"%u0027&#x27;\\x27\\u0027/*a*/../%2e%2e\\\\"),
    ));
    v
}

fn process_start_ms() -> f64 {
    let exe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/coraza-spoa");
    if !exe.exists() {
        return -1.0;
    }
    let s = Instant::now();
    let ok = std::process::Command::new(&exe)
        .arg("check")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status();
    match ok {
        Ok(st) if st.success() => ms(s.elapsed()),
        _ => -1.0,
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
