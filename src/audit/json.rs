//! JSON encoding of audit events: one line per event, appended to a reused buffer.
//!
//! Owns the on-disk shape described in `SCHEMA.md` (Coraza's JSON audit log plus our top-level
//! fields), byte escaping, timestamps and header redaction. It is a total function of the event:
//! it never fails, never panics, and writes only valid JSON whatever bytes the request carried.
//! Must not: do I/O, allocate per event beyond growing the caller's buffer, or depend on serde
//! (the request's bytes are not `str`, and a hand-written encoder into a reused `Vec<u8>` measured
//! faster; see `perf/audit_bench.rs`).
//!
//! Non-UTF-8 bytes: valid UTF-8 sequences are written as themselves; every byte that is not part
//! of a valid sequence is written as the escape `\u00XX` (the code point with that byte's value).
//! Nothing is dropped or replaced by U+FFFD, so an evasion that relies on invalid UTF-8 stays
//! visible. The cost is one ambiguity, documented in `SCHEMA.md`: a lone byte `0xE9` and a real
//! `é` (U+00E9) read back the same; the raw wire bytes are never needed to tune rules.

use std::time::UNIX_EPOCH;

use super::event::{severity_level, severity_name, Event, Message};

/// What a redacted header value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Encodes events as JSON lines. One per writer thread (it keeps a scratch buffer).
#[derive(Debug, Clone)]
pub struct Encoder {
    /// Header names (ASCII-lowercased) whose values are never written.
    redact: Vec<Box<[u8]>>,
    scratch: Vec<u8>,
}

impl Encoder {
    /// An encoder that redacts the values of the named headers (case-insensitive), in requests
    /// and responses, and matched values taken from them (see [`Encoder::encode`]).
    pub fn new<S: AsRef<str>>(redact_headers: &[S]) -> Encoder {
        let redact = redact_headers
            .iter()
            .map(|s| {
                s.as_ref()
                    .trim()
                    .to_ascii_lowercase()
                    .into_bytes()
                    .into_boxed_slice()
            })
            .filter(|s| !s.is_empty())
            .collect();
        Encoder {
            redact,
            scratch: Vec::with_capacity(256),
        }
    }

    /// Appends `event` to `out` as one JSON object followed by `\n`.
    ///
    /// Redaction covers header values and, for a message whose matched variable is one of those
    /// headers (`REQUEST_HEADERS:Cookie`) or a cookie (`REQUEST_COOKIES:*` while `cookie` is
    /// redacted), its `matched_value` and `data` (CRS `logdata` repeats the matched value).
    pub fn encode(&mut self, ev: &Event, out: &mut Vec<u8>) {
        let since_epoch = ev.timestamp.duration_since(UNIX_EPOCH).unwrap_or_default();
        let unix_nanos = i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX);

        out.extend_from_slice(b"{\"transaction\":{\"id\":");
        push_str(out, ev.unique_id.as_bytes());
        out.extend_from_slice(b",\"timestamp\":\"");
        push_timestamp(out, since_epoch.as_secs());
        // Coraza writes the transaction's UnixNano here.
        out.extend_from_slice(b"\",\"unix_timestamp\":");
        push_i64(out, unix_nanos);
        out.extend_from_slice(b",\"client_ip\":");
        push_ip(out, ev.client_ip);
        out.extend_from_slice(b",\"client_port\":");
        push_u64(out, u64::from(ev.client_port));
        out.extend_from_slice(b",\"host_ip\":");
        push_ip(out, ev.server_ip);
        out.extend_from_slice(b",\"host_port\":");
        push_u64(out, u64::from(ev.server_port));
        out.extend_from_slice(b",\"server_id\":");
        push_str(out, ev.app.as_bytes());

        let req = &ev.request;
        out.extend_from_slice(b",\"request\":{\"method\":");
        push_str(out, &req.method);
        out.extend_from_slice(b",\"protocol\":");
        self.scratch.clear();
        if !req.http_version.is_empty() {
            self.scratch.extend_from_slice(b"HTTP/");
            self.scratch.extend_from_slice(&req.http_version);
        }
        push_str(out, &self.scratch);
        out.extend_from_slice(b",\"uri\":");
        push_str(out, &req.uri);
        out.extend_from_slice(b",\"http_version\":");
        push_str(out, &req.http_version);
        out.extend_from_slice(b",\"headers\":");
        self.push_headers(out, &req.headers);
        out.push(b'}');

        if let Some(res) = &ev.response {
            out.extend_from_slice(b",\"response\":{\"status\":");
            push_u64(out, u64::from(res.status));
            out.extend_from_slice(b",\"headers\":");
            self.push_headers(out, &res.headers);
            out.push(b'}');
        }

        out.extend_from_slice(b",\"producer\":{\"connector\":\"");
        out.extend_from_slice(env!("CARGO_PKG_NAME").as_bytes());
        out.extend_from_slice(b"\",\"version\":\"");
        out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        out.extend_from_slice(b"\",\"rule_engine\":\"");
        out.extend_from_slice(ev.rule_engine.as_str().as_bytes());
        out.extend_from_slice(b"\"},\"highest_severity\":\"");
        let highest = ev
            .messages
            .iter()
            .filter_map(|m| m.severity.and_then(severity_level))
            .min();
        if let Some(level) = highest {
            out.extend_from_slice(severity_name(level).as_bytes());
        }
        out.extend_from_slice(b"\",\"is_interrupted\":");
        out.extend_from_slice(if ev.interrupted_by.is_some() {
            b"true"
        } else {
            b"false"
        });

        out.extend_from_slice(b"},\"messages\":[");
        for (i, m) in ev.messages.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.push_message(out, m);
        }

        out.extend_from_slice(b"],\"action\":\"");
        out.extend_from_slice(ev.action.as_str().as_bytes());
        out.extend_from_slice(b"\",\"rule_engine\":\"");
        out.extend_from_slice(ev.rule_engine.as_str().as_bytes());
        out.extend_from_slice(b"\",\"anomaly_score\":");
        push_i64(out, ev.anomaly_score);
        out.extend_from_slice(b",\"inbound_anomaly_score\":");
        push_i64(out, ev.inbound_anomaly_score);
        out.extend_from_slice(b",\"outbound_anomaly_score\":");
        push_i64(out, ev.outbound_anomaly_score);
        out.extend_from_slice(b",\"interrupted_by\":");
        match ev.interrupted_by {
            Some(id) => push_u64(out, u64::from(id)),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"status\":");
        match ev.status {
            Some(s) => push_u64(out, u64::from(s)),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}\n");
    }

    fn push_message(&self, out: &mut Vec<u8>, m: &Message) {
        let secret = self.is_secret_variable(&m.matched_var);
        out.extend_from_slice(b"{\"message\":");
        push_str(out, &m.msg);
        out.extend_from_slice(b",\"data\":{\"id\":");
        push_u64(out, u64::from(m.id));
        out.extend_from_slice(b",\"msg\":");
        push_str(out, &m.msg);
        out.extend_from_slice(b",\"data\":");
        push_str(out, if secret { REDACTED.as_bytes() } else { &m.data });
        if let Some(level) = m.severity.and_then(severity_level) {
            out.extend_from_slice(b",\"severity\":");
            push_u64(out, u64::from(level));
        }
        out.extend_from_slice(b",\"tags\":[");
        for (i, t) in m.tags.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str(out, t.as_bytes());
        }
        out.extend_from_slice(b"],\"phase\":");
        push_u64(out, u64::from(m.phase));
        out.extend_from_slice(b",\"matched_var\":");
        push_str(out, &m.matched_var);
        out.extend_from_slice(b",\"matched_value\":");
        push_str(
            out,
            if secret {
                REDACTED.as_bytes()
            } else {
                &m.matched_value
            },
        );
        out.extend_from_slice(b",\"file\":");
        push_str(out, m.file.as_bytes());
        out.extend_from_slice(b",\"line\":");
        push_u64(out, u64::from(m.line));
        out.extend_from_slice(b"}}");
    }

    fn is_redacted(&self, name: &[u8]) -> bool {
        self.redact.iter().any(|r| r.eq_ignore_ascii_case(name))
    }

    /// Whether a matched variable's value came from a redacted header.
    fn is_secret_variable(&self, var: &[u8]) -> bool {
        let Some(colon) = memchr::memchr(b':', var) else {
            return false;
        };
        let (collection, key) = (&var[..colon], &var[colon + 1..]);
        if collection.eq_ignore_ascii_case(b"REQUEST_HEADERS")
            || collection.eq_ignore_ascii_case(b"RESPONSE_HEADERS")
        {
            return self.is_redacted(key);
        }
        // Cookie values are pieces of the Cookie header.
        collection.eq_ignore_ascii_case(b"REQUEST_COOKIES") && self.is_redacted(b"cookie")
    }

    /// Headers as Coraza writes them: an object from lower-cased name to the list of values, in
    /// order of first appearance (repeated headers are grouped, so no key appears twice).
    fn push_headers(&mut self, out: &mut Vec<u8>, headers: &[(Vec<u8>, Vec<u8>)]) {
        out.push(b'{');
        let mut first = true;
        // Quadratic in the number of headers, which HAProxy bounds (tune.http.maxhdr, 101 by
        // default); it runs on the writer thread, not the request path.
        for (i, (name, _)) in headers.iter().enumerate() {
            if headers
                .iter()
                .take(i)
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            self.scratch.clear();
            self.scratch.extend(name.iter().map(u8::to_ascii_lowercase));
            push_str(out, &self.scratch);
            out.extend_from_slice(b":[");
            let redacted = self.is_redacted(name);
            let values = headers
                .iter()
                .skip(i)
                .filter(|(n, _)| n.eq_ignore_ascii_case(name));
            for (j, (_, value)) in values.enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                push_str(out, if redacted { REDACTED.as_bytes() } else { value });
            }
            out.push(b']');
        }
        out.push(b'}');
    }
}

/// How each byte of valid UTF-8 text is written: 0 = as itself, `u` = `\u00XX`, `L` = a
/// possible start of U+2028/U+2029, anything else = backslash and that character.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    // DEL is legal in JSON, but escaping it (and every C0 control) keeps terminals that display
    // the log safe from control sequences an attacker put in a header.
    t[0x7f] = b'u';
    t[0xe2] = b'L';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_unicode_escape(out: &mut Vec<u8>, cp: u16) {
    out.extend_from_slice(b"\\u");
    for shift in [12u16, 8, 4, 0] {
        out.push(HEX[usize::from((cp >> shift) & 0xf)]);
    }
}

/// Writes `bytes` as a JSON string (see the module doc for non-UTF-8 bytes).
pub fn push_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Nearly everything is valid UTF-8 (mostly ASCII): `from_utf8` validates that much faster
    // than `utf8_chunks`, which is kept for the rest.
    if std::str::from_utf8(bytes).is_ok() {
        push_valid(out, bytes);
    } else {
        for chunk in bytes.utf8_chunks() {
            push_valid(out, chunk.valid().as_bytes());
            for &b in chunk.invalid() {
                push_unicode_escape(out, u16::from(b));
            }
        }
    }
    out.push(b'"');
}

/// Escapes valid UTF-8: copies runs that need no escaping in one go.
fn push_valid(out: &mut Vec<u8>, s: &[u8]) {
    let mut run_start = 0;
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        // Headers and URIs are long runs of plain ASCII: skip them eight bytes at a time.
        if let Some(word) = s.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
            if is_plain_ascii(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let esc = ESCAPE[usize::from(b)];
        if esc == 0 {
            i += 1;
            continue;
        }
        // U+2028 and U+2029 are valid JSON but end a line for JavaScript consumers; escape them
        // so a line always holds exactly one event whatever reads it.
        let line_sep = match (esc, s.get(i + 1), s.get(i + 2)) {
            (b'L', Some(0x80), Some(&c @ (0xa8 | 0xa9))) => Some(0x2000 | u16::from(c & 0x3f)),
            (b'L', _, _) => {
                i += 1;
                continue;
            }
            _ => None,
        };
        out.extend_from_slice(s.get(run_start..i).unwrap_or_default());
        match line_sep {
            Some(cp) => {
                push_unicode_escape(out, cp);
                i += 3;
            }
            None => {
                if esc == b'u' {
                    push_unicode_escape(out, u16::from(b));
                } else {
                    out.push(b'\\');
                    out.push(esc);
                }
                i += 1;
            }
        }
        run_start = i;
    }
    out.extend_from_slice(s.get(run_start..).unwrap_or_default());
}

/// Whether none of the eight bytes needs a look: no control character, `"`, `\\`, DEL, or
/// non-ASCII byte. (Bit tricks from "Bit Twiddling Hacks": `has_less` and `has_zero` per
/// byte; a false "needs a look" only sends the word to the byte loop.)
fn is_plain_ascii(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let quote = has_zero(w ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(w ^ (ONES * u64::from(b'\\')));
    // Adding 1 sets the high bit of a 0x7f byte; bytes >= 0x80 have it already.
    let del_or_high = (w.wrapping_add(ONES) | w) & HIGH;
    below_space | quote | backslash | del_or_high == 0
}

fn push_ip(out: &mut Vec<u8>, ip: Option<std::net::IpAddr>) {
    use std::io::Write;
    out.push(b'"');
    if let Some(ip) = ip {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{ip}");
    }
    out.push(b'"');
}

/// Appends the decimal digits of `n`.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

pub fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

/// `YYYY/MM/DD HH:MM:SS` in UTC: Coraza's `timestamp` layout (Coraza uses local time; a
/// sidecar's local zone is rarely meaningful, and `unix_timestamp` is exact anyway).
fn push_timestamp(out: &mut Vec<u8>, unix_secs: u64) {
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    push_u64(out, y);
    for (sep, v) in [
        (b'/', m),
        (b'/', d),
        (b' ', rem / 3600),
        (b':', rem / 60 % 60),
        (b':', rem % 60),
    ] {
        out.push(sep);
        if v < 10 {
            out.push(b'0');
        }
        push_u64(out, v);
    }
}

/// Gregorian (year, month, day) for a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, restricted to non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// A time as the writer prints it.
#[cfg(test)]
fn format_timestamp(t: std::time::SystemTime) -> String {
    let mut out = Vec::new();
    push_timestamp(
        &mut out,
        t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
    );
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::event::{Action, RequestInfo, ResponseInfo, RuleEngineMode};
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn enc(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        push_str(&mut out, bytes);
        String::from_utf8(out).expect("the encoder writes UTF-8")
    }

    #[test]
    fn string_escapes() {
        // Expected values: RFC 8259 escapes (the short forms where JSON has them), plus our
        // documented choices for DEL, U+2028/2029 and bytes outside valid UTF-8.
        let cases: &[(&[u8], &str)] = &[
            (b"", r#""""#),
            (b"plain /path?a=1", r#""plain /path?a=1""#),
            (b"q\"b\\", r#""q\"b\\""#),
            (b"\x08\x09\x0a\x0c\x0d", r#""\b\t\n\f\r""#),
            (b"\x00\x01\x1b[31m\x1f", r#""\u0000\u0001\u001b[31m\u001f""#),
            (b"\x7f", r#""\u007f""#),
            ("é ü €".as_bytes(), "\"é ü €\""),
            ("😀".as_bytes(), "\"😀\""),
            (b"\xe9t\xe9", r#""\u00e9t\u00e9""#),
            (b"%c0%af\xc0\xaf", r#""%c0%af\u00c0\u00af""#),
            (b"\xff\xfe", r#""\u00ff\u00fe""#),
            // Truncated 3-byte sequence: both bytes are invalid on their own.
            (b"a\xe2\x82", r#""a\u00e2\u0082""#),
            ("a\u{2028}b\u{2029}c".as_bytes(), r#""a\u2028b\u2029c""#),
            // Other characters starting with 0xE2 stay as they are.
            ("→ ‘x’".as_bytes(), "\"→ ‘x’\""),
        ];
        for (input, want) in cases {
            assert_eq!(enc(input), *want, "{input:?}");
        }
    }

    /// xorshift64*: a deterministic byte source for property tests (no extra dependency).
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed >> 12;
        *seed ^= *seed << 25;
        *seed ^= *seed >> 27;
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn any_bytes_give_valid_json_that_reads_back() {
        // Reading back: valid UTF-8 round-trips exactly; an invalid byte reads back as the
        // code point of the same value (the documented mapping).
        let alphabet: &[&[u8]] = &[
            b"a",
            b"\"",
            b"\\",
            b"\n",
            b"\x00",
            b"\x7f",
            b"\x80",
            b"\xff",
            b"\xc3",
            b"\xa9",
            b"\xe2",
            b"\x80",
            b"\xa8",
            "é".as_bytes(),
            "\u{2028}".as_bytes(),
            "😀".as_bytes(),
            b"\xf0\x9f",
            b" ",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let len = (rng(&mut seed) % 24) as usize;
            let mut input = Vec::new();
            for _ in 0..len {
                let pick = (rng(&mut seed) % alphabet.len() as u64) as usize;
                input.extend_from_slice(alphabet[pick]);
            }
            let text = enc(&input);
            let back: String = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{input:?} gave invalid JSON {text}: {e}"));
            let mut want = String::new();
            for chunk in input.utf8_chunks() {
                want.push_str(chunk.valid());
                want.extend(chunk.invalid().iter().map(|&b| char::from(b)));
            }
            assert_eq!(back, want, "{input:?}");
            assert!(!text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn plain_ascii_words() {
        // Every byte value in every position: the word test must agree with the table.
        for pos in 0..8 {
            for b in 0..=255u8 {
                let mut word = *b"abcdefgh";
                word[pos] = b;
                let plain = ESCAPE[usize::from(b)] == 0 && b < 0x80;
                assert_eq!(
                    is_plain_ascii(u64::from_le_bytes(word)),
                    plain,
                    "{b:#x} at {pos}"
                );
            }
        }
        assert!(is_plain_ascii(u64::from_le_bytes(*b"~ !#[]}{")));
    }

    #[test]
    fn integers() {
        let cases: &[(i64, &str)] = &[
            (0, "0"),
            (7, "7"),
            (10, "10"),
            (-5, "-5"),
            (1_000_000_007, "1000000007"),
            (i64::MAX, "9223372036854775807"),
            (i64::MIN, "-9223372036854775808"),
        ];
        for (n, want) in cases {
            let mut out = Vec::new();
            push_i64(&mut out, *n);
            assert_eq!(out, want.as_bytes());
        }
        let mut out = Vec::new();
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, b"18446744073709551615");
    }

    fn hdrs(pairs: &[(&str, &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
            .collect()
    }

    fn message(id: u32, severity: Option<&'static str>, var: &str, value: &[u8]) -> Message {
        Message {
            id,
            msg: b"SQL Injection Attack Detected via libinjection".to_vec(),
            data: [
                b"Matched Data: s&sos found within ".as_slice(),
                var.as_bytes(),
                b": ",
                value,
            ]
            .concat(),
            severity,
            tags: Arc::from(vec![
                "application-multi".to_string(),
                "attack-sqli".to_string(),
            ]),
            phase: 2,
            matched_var: var.as_bytes().to_vec(),
            matched_value: value.to_vec(),
            file: Arc::from("REQUEST-942-APPLICATION-ATTACK-SQLI.conf"),
            line: 46,
        }
    }

    fn sample() -> Event {
        Event {
            unique_id: "a1b2c3".into(),
            timestamp: UNIX_EPOCH + Duration::new(1_735_689_600, 123_456_789),
            client_ip: Some("192.0.2.7".parse().unwrap()),
            client_port: 51234,
            server_ip: Some("2001:db8::1".parse().unwrap()),
            server_port: 443,
            app: Arc::from("shop"),
            request: RequestInfo {
                method: b"GET".to_vec(),
                uri: b"/search?q=1'%20or%201=1--\xff".to_vec(),
                http_version: b"1.1".to_vec(),
                headers: hdrs(&[
                    ("host", b"shop.example"),
                    ("Accept", b"text/html"),
                    ("Cookie", b"session=SECRET1"),
                    ("accept", b"*/*"),
                    ("authorization", b"Bearer SECRET2"),
                    ("X-Weird", b"\x1b[2J"),
                ]),
            },
            response: Some(ResponseInfo {
                status: 200,
                headers: hdrs(&[("Set-Cookie", b"a=SECRET3"), ("set-cookie", b"b=SECRET4")]),
            }),
            messages: vec![
                message(942100, Some("CRITICAL"), "ARGS:q", b"1' or 1=1--"),
                message(
                    942101,
                    Some("WARNING"),
                    "REQUEST_COOKIES:session",
                    b"SECRET1",
                ),
                message(
                    942102,
                    None,
                    "REQUEST_HEADERS:Authorization",
                    b"Bearer SECRET2",
                ),
            ],
            action: Action::Deny,
            rule_engine: RuleEngineMode::On,
            anomaly_score: 5,
            inbound_anomaly_score: 5,
            outbound_anomaly_score: 0,
            interrupted_by: Some(949110),
            status: Some(403),
        }
    }

    fn encode_default(ev: &Event) -> (String, serde_json::Value) {
        let mut enc = Encoder::new(&crate::config::Audit::default().redact_headers);
        let mut out = Vec::new();
        enc.encode(ev, &mut out);
        let text = String::from_utf8(out).expect("UTF-8");
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1,
            "{text}"
        );
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (text, v)
    }

    #[test]
    fn event_has_corazas_shape_and_our_fields() {
        let (text, v) = encode_default(&sample());
        let t = &v["transaction"];
        let cases: &[(&serde_json::Value, serde_json::Value)] = &[
            (&t["id"], "a1b2c3".into()),
            (&t["timestamp"], "2025/01/01 00:00:00".into()),
            (&t["unix_timestamp"], 1_735_689_600_123_456_789i64.into()),
            (&t["client_ip"], "192.0.2.7".into()),
            (&t["client_port"], 51234.into()),
            (&t["host_ip"], "2001:db8::1".into()),
            (&t["host_port"], 443.into()),
            (&t["server_id"], "shop".into()),
            (&t["request"]["method"], "GET".into()),
            (&t["request"]["protocol"], "HTTP/1.1".into()),
            (&t["request"]["http_version"], "1.1".into()),
            (
                &t["request"]["uri"],
                "/search?q=1'%20or%201=1--\u{ff}".into(),
            ),
            (&t["response"]["status"], 200.into()),
            (&t["producer"]["connector"], "coraza-spoa".into()),
            (&t["producer"]["rule_engine"], "On".into()),
            (&t["highest_severity"], "critical".into()),
            (&t["is_interrupted"], true.into()),
            (&v["action"], "deny".into()),
            (&v["rule_engine"], "On".into()),
            (&v["anomaly_score"], 5.into()),
            (&v["inbound_anomaly_score"], 5.into()),
            (&v["outbound_anomaly_score"], 0.into()),
            (&v["interrupted_by"], 949110.into()),
            (&v["status"], 403.into()),
        ];
        for (i, (got, want)) in cases.iter().enumerate() {
            assert_eq!(*got, want, "case {i}: {text}");
        }
        let m = &v["messages"][0];
        assert_eq!(
            m["message"],
            "SQL Injection Attack Detected via libinjection"
        );
        assert_eq!(m["data"]["id"], 942100);
        assert_eq!(m["data"]["msg"], m["message"]);
        assert_eq!(
            m["data"]["data"],
            "Matched Data: s&sos found within ARGS:q: 1' or 1=1--"
        );
        assert_eq!(m["data"]["severity"], 2);
        assert_eq!(
            m["data"]["tags"],
            serde_json::json!(["application-multi", "attack-sqli"])
        );
        assert_eq!(m["data"]["phase"], 2);
        assert_eq!(m["data"]["matched_var"], "ARGS:q");
        assert_eq!(m["data"]["matched_value"], "1' or 1=1--");
        assert_eq!(
            m["data"]["file"],
            "REQUEST-942-APPLICATION-ATTACK-SQLI.conf"
        );
        assert_eq!(m["data"]["line"], 46);
        assert_eq!(v["messages"][1]["data"]["severity"], 4);
        // No severity: the key is absent rather than Coraza's misleading 0 (emergency).
        assert!(v["messages"][2]["data"].get("severity").is_none());
    }

    #[test]
    fn headers_are_grouped_lowercased_and_redacted() {
        let (text, v) = encode_default(&sample());
        let req = &v["transaction"]["request"]["headers"];
        assert_eq!(
            *req,
            serde_json::json!({
                "host": ["shop.example"],
                "accept": ["text/html", "*/*"],
                "cookie": [REDACTED],
                "authorization": [REDACTED],
                "x-weird": ["\u{1b}[2J"],
            })
        );
        let keys: Vec<&str> = req
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys.len(), 5, "a repeated header gives one key: {text}");
        let res = &v["transaction"]["response"]["headers"];
        assert_eq!(
            *res,
            serde_json::json!({"set-cookie": [REDACTED, REDACTED]})
        );
        // Values from redacted headers reach the messages too; none may leak anywhere.
        for secret in ["SECRET1", "SECRET2", "SECRET3", "SECRET4"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let m1 = &v["messages"][1]["data"];
        assert_eq!(m1["matched_var"], "REQUEST_COOKIES:session");
        assert_eq!(
            (&m1["matched_value"], &m1["data"]),
            (&REDACTED.into(), &REDACTED.into())
        );
        let m2 = &v["messages"][2]["data"];
        assert_eq!(
            (&m2["matched_value"], &m2["data"]),
            (&REDACTED.into(), &REDACTED.into())
        );
    }

    #[test]
    fn redaction_list_is_configurable() {
        let ev = sample();
        let mut out = Vec::new();
        Encoder::new(&["X-WEIRD", " Host "]).encode(&ev, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let req = &v["transaction"]["request"]["headers"];
        assert_eq!(req["x-weird"], serde_json::json!([REDACTED]));
        assert_eq!(req["host"], serde_json::json!([REDACTED]));
        assert_eq!(req["cookie"], serde_json::json!(["session=SECRET1"]));
        assert_eq!(v["messages"][1]["data"]["matched_value"], "SECRET1");
        let mut out = Vec::new();
        Encoder::new::<&str>(&[]).encode(&ev, &mut out);
        assert!(String::from_utf8_lossy(&out).contains("SECRET3"));
    }

    #[test]
    fn optional_parts_are_null_or_absent() {
        let mut ev = sample();
        ev.client_ip = None;
        ev.server_ip = None;
        ev.response = None;
        ev.interrupted_by = None;
        ev.status = None;
        ev.action = Action::Log;
        ev.rule_engine = RuleEngineMode::DetectionOnly;
        ev.request.http_version.clear();
        ev.messages.iter_mut().for_each(|m| m.severity = None);
        let (text, v) = encode_default(&ev);
        let t = &v["transaction"];
        assert_eq!(
            (&t["client_ip"], &t["host_ip"]),
            (&"".into(), &"".into()),
            "{text}"
        );
        assert!(t.get("response").is_none(), "{text}");
        assert_eq!(t["request"]["protocol"], "");
        assert_eq!(t["highest_severity"], "");
        assert_eq!(t["is_interrupted"], false);
        assert_eq!(v["interrupted_by"], serde_json::Value::Null);
        assert_eq!(v["status"], serde_json::Value::Null);
        assert_eq!(v["action"], "log");
        assert_eq!(v["rule_engine"], "DetectionOnly");
        assert_eq!(t["producer"]["rule_engine"], "DetectionOnly");
        ev.messages.clear();
        ev.timestamp = UNIX_EPOCH - Duration::from_secs(5);
        let (text, v) = encode_default(&ev);
        assert_eq!(v["messages"], serde_json::json!([]), "{text}");
        assert_eq!(v["transaction"]["unix_timestamp"], 0);
    }

    /// The example of `SCHEMA.md`: CRS blocking a SQL injection.
    fn schema_example() -> Event {
        let tags = |t: &[&str]| Arc::from(t.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        Event {
            unique_id: "a8f3c2e1-7b44-4e0c-9a61-3d5f0b2c9e17".into(),
            timestamp: UNIX_EPOCH + Duration::new(1_764_074_096, 789_000_000),
            client_ip: Some("203.0.113.45".parse().unwrap()),
            client_port: 51234,
            server_ip: Some("192.0.2.10".parse().unwrap()),
            server_port: 80,
            app: Arc::from("default"),
            request: RequestInfo {
                method: b"GET".to_vec(),
                uri: b"/products?id=1%27%20OR%201%3D1--".to_vec(),
                http_version: b"1.1".to_vec(),
                headers: hdrs(&[
                    ("host", b"shop.example.com"),
                    ("user-agent", b"curl/8.5.0"),
                    ("accept", b"*/*"),
                    ("cookie", b"session=6f1c0a"),
                ]),
            },
            response: None,
            messages: vec![
                Message {
                    id: 942100,
                    msg: b"SQL Injection Attack Detected via libinjection".to_vec(),
                    data: b"Matched Data: s&1c found within ARGS:id: 1' OR 1=1--".to_vec(),
                    severity: Some("CRITICAL"),
                    tags: tags(&[
                        "application-multi",
                        "language-multi",
                        "platform-multi",
                        "attack-sqli",
                        "paranoia-level/1",
                        "OWASP_CRS",
                        "OWASP_CRS/ATTACK-SQLI",
                        "capec/1000/152/248/66",
                    ]),
                    phase: 2,
                    matched_var: b"ARGS:id".to_vec(),
                    matched_value: b"1' OR 1=1--".to_vec(),
                    file: Arc::from("REQUEST-942-APPLICATION-ATTACK-SQLI.conf"),
                    line: 46,
                },
                Message {
                    id: 949110,
                    msg: b"Inbound Anomaly Score Exceeded (Total Score: 5)".to_vec(),
                    data: Vec::new(),
                    severity: None,
                    tags: tags(&["anomaly-evaluation", "OWASP_CRS"]),
                    phase: 2,
                    matched_var: b"TX:BLOCKING_INBOUND_ANOMALY_SCORE".to_vec(),
                    matched_value: b"5".to_vec(),
                    file: Arc::from("REQUEST-949-BLOCKING-EVALUATION.conf"),
                    line: 225,
                },
            ],
            action: Action::Deny,
            rule_engine: RuleEngineMode::On,
            anomaly_score: 5,
            inbound_anomaly_score: 5,
            outbound_anomaly_score: 0,
            interrupted_by: Some(949110),
            status: Some(403),
        }
    }

    #[test]
    fn schema_md_example_is_what_the_encoder_writes() {
        let (line, _) = encode_default(&schema_example());
        // The example stays valid across version bumps.
        let version = concat!("\"version\":\"", env!("CARGO_PKG_VERSION"), "\"");
        let line = line.replace(version, "\"version\":\"0.1.0\"");
        let doc = include_str!("SCHEMA.md");
        let documented = doc
            .split("```json\n")
            .nth(1)
            .and_then(|block| block.split("```").next())
            .expect("SCHEMA.md has a json block");
        assert_eq!(documented, line, "update SCHEMA.md's example line");
    }

    #[test]
    fn timestamps_are_utc_civil_time() {
        // Expected values from `date -u -d @N '+%Y/%m/%d %H:%M:%S'`.
        let cases: &[(u64, &str)] = &[
            (0, "1970/01/01 00:00:00"),
            (951_782_400, "2000/02/29 00:00:00"),
            (1_629_575_755, "2021/08/21 19:55:55"),
            (1_709_251_199, "2024/02/29 23:59:59"),
            (1_735_689_600, "2025/01/01 00:00:00"),
            (4_107_542_400, "2100/03/01 00:00:00"),
        ];
        for (secs, want) in cases {
            let t = UNIX_EPOCH + Duration::from_secs(*secs);
            assert_eq!(format_timestamp(t), *want, "{secs}");
        }
    }
}
