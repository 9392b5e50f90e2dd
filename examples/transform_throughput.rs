//! Throughput of the hot transformations on benign traffic (a measurement, not a test).
//!
//! Reads the `check`-format corpus (default `../shared/corpus/benign.jsonl`, or the first
//! argument), splits every request into the values a rule would see — query and form
//! arguments (names and values), header values, other bodies whole — and reports MB/s of input
//! for `urlDecodeUni`, `htmlEntityDecode`, `jsDecode` and CRS's six-step pipeline
//! `utf8toUnicode > urlDecodeUni > htmlEntityDecode > jsDecode > cssDecode > removeNulls`,
//! run the way the engine runs it: borrow the value until a step changes it, then alternate
//! two reused buffers.
//!
//! Run with `cargo run --release --example transform_throughput`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use coraza_spoa::engine::transformations::{apply, Transformation as T};

fn values(corpus: &str) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    let split_args = |s: &[u8], values: &mut Vec<Vec<u8>>| {
        for pair in s.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let mut parts = pair.splitn(2, |&b| b == b'=');
            for part in parts.by_ref() {
                values.push(part.to_vec());
            }
        }
    };
    for line in corpus.lines() {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let uri = record["uri"].as_str().unwrap_or_default().as_bytes();
        if let Some(q) = uri.iter().position(|&b| b == b'?') {
            values.push(uri[..q].to_vec());
            split_args(&uri[q + 1..], &mut values);
        } else {
            values.push(uri.to_vec());
        }
        let mut form = false;
        for h in record["headers"].as_array().into_iter().flatten() {
            let (name, value) = (
                h[0].as_str().unwrap_or_default(),
                h[1].as_str().unwrap_or_default(),
            );
            form |= name.eq_ignore_ascii_case("content-type")
                && value.starts_with("application/x-www-form-urlencoded");
            values.push(value.as_bytes().to_vec());
        }
        if let Some(b64) = record["body_b64"].as_str() {
            let mut body = Vec::new();
            if apply(T::Base64Decode, b64.as_bytes(), &mut body) {
                if form {
                    split_args(&body, &mut values);
                } else {
                    values.push(body);
                }
            }
        }
    }
    values
}

/// Runs `steps` over every value until `budget` has elapsed; returns (MB/s, share changed).
fn measure(values: &[&[u8]], steps: &[T], budget: Duration) -> (f64, f64) {
    let bytes: usize = values.iter().map(|v| v.len()).sum();
    let mut bufs = [Vec::new(), Vec::new()];
    let (mut rounds, mut changed) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < budget {
        for v in values {
            // None: still borrowing the value; Some(i): the current output is bufs[i].
            let mut current: Option<usize> = None;
            for &t in steps {
                let (first, second) = bufs.split_at_mut(1);
                let (src, dst, written): (&[u8], &mut Vec<u8>, usize) = match current {
                    None => (v, &mut first[0], 0),
                    Some(0) => (&first[0], &mut second[0], 1),
                    Some(_) => (&second[0], &mut first[0], 0),
                };
                if apply(t, src, dst) {
                    current = Some(written);
                }
            }
            changed += u64::from(current.is_some());
            black_box(current.map(|i| bufs[i].len()));
        }
        rounds += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = (bytes as f64 * rounds as f64) / 1e6;
    (
        mb / secs,
        changed as f64 / (values.len() as f64 * rounds as f64),
    )
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/corpus/benign.jsonl".into());
    let corpus = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // Values are slices of one buffer, as they are slices of a request in the engine.
    let owned = values(&corpus);
    let arena: Vec<u8> = owned.concat();
    let mut values: Vec<&[u8]> = Vec::with_capacity(owned.len());
    let mut offset = 0;
    for v in &owned {
        values.push(&arena[offset..offset + v.len()]);
        offset += v.len();
    }
    let bytes: usize = arena.len();
    println!(
        "{path}: {} values, {:.1} MB",
        values.len(),
        bytes as f64 / 1e6
    );
    let pipeline = [
        T::Utf8ToUnicode,
        T::UrlDecodeUni,
        T::HtmlEntityDecode,
        T::JsDecode,
        T::CssDecode,
        T::RemoveNulls,
    ];
    let cases: [(&str, &[T]); 7] = [
        ("urlDecodeUni", &[T::UrlDecodeUni]),
        ("htmlEntityDecode", &[T::HtmlEntityDecode]),
        ("jsDecode", &[T::JsDecode]),
        ("utf8toUnicode", &[T::Utf8ToUnicode]),
        ("cssDecode", &[T::CssDecode]),
        ("removeNulls", &[T::RemoveNulls]),
        ("6-step XSS pipeline", &pipeline),
    ];
    for (name, steps) in cases {
        let (mbs, share) = measure(&values, steps, Duration::from_secs(2));
        println!(
            "{name:<22} {mbs:>8.0} MB/s   {:>5.1}% of values changed",
            share * 100.0
        );
    }
}
