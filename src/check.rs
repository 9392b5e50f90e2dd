//! `coraza-spoa check`: the offline evaluator (JSON Lines in, JSON Lines out).
//!
//! Owns the `check` wire format of design.md: one request per input line, one verdict per
//! output line, in order. A bad line yields `{"id":…, "error":"…"}` for that line and the run
//! goes on. Must not know anything about SPOP or HAProxy.

use std::io::{BufRead, Write};

use serde_json::{json, Value};

use crate::engine::{log, Ruleset, Transaction};

/// One request of the input, decoded to bytes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CheckRequest {
    pub id: String,
    pub method: Vec<u8>,
    pub uri: Vec<u8>,
    pub version: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub remote_addr: String,
    pub response: Option<CheckResponse>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct CheckResponse {
    pub status: u16,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Parses one input line.
pub fn parse_line(line: &str) -> Result<CheckRequest, (String, String)> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| (String::new(), format!("invalid JSON: {e}")))?;
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let fail = |m: String| (id.clone(), m);
    let obj = v
        .as_object()
        .ok_or_else(|| fail("not a JSON object".into()))?;
    let str_field = |k: &str| obj.get(k).and_then(Value::as_str);
    let method = str_field("method").ok_or_else(|| fail("missing \"method\"".into()))?;
    let uri = match (str_field("uri_b64"), str_field("uri")) {
        (Some(b), _) => base64(b).map_err(|e| fail(format!("uri_b64: {e}")))?,
        (None, Some(u)) => latin1(u).map_err(|e| fail(format!("uri: {e}")))?,
        (None, None) => return Err(fail("missing \"uri\"".into())),
    };
    let version = str_field("version").unwrap_or("1.1");
    let req_headers = headers(obj).map_err(fail)?;
    let body = match str_field("body_b64") {
        Some(b) => base64(b).map_err(|e| fail(format!("body_b64: {e}")))?,
        None => Vec::new(),
    };
    let response = match obj.get("response") {
        None | Some(Value::Null) => None,
        Some(Value::Object(r)) => {
            let status = r.get("status").and_then(Value::as_u64).unwrap_or(200);
            let status =
                u16::try_from(status).map_err(|_| fail("response.status out of range".into()))?;
            let body = match r.get("body_b64").and_then(Value::as_str) {
                Some(b) => base64(b).map_err(|e| fail(format!("response.body_b64: {e}")))?,
                None => Vec::new(),
            };
            Some(CheckResponse {
                status,
                headers: headers(r).map_err(|e| fail(format!("response.{e}")))?,
                body,
            })
        }
        Some(_) => return Err(fail("\"response\" is not an object".into())),
    };
    Ok(CheckRequest {
        id: id.clone(),
        method: latin1(method).map_err(fail)?,
        uri,
        version: latin1(version).map_err(fail)?,
        headers: req_headers,
        body,
        remote_addr: str_field("remote_addr").unwrap_or("127.0.0.1").to_string(),
        response,
    })
}

/// `(name, value)` byte pairs.
type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

fn headers(obj: &serde_json::Map<String, Value>) -> Result<HeaderList, String> {
    let (key, b64) = match (obj.get("headers_b64"), obj.get("headers")) {
        (Some(h), _) => (h, true),
        (None, Some(h)) => (h, false),
        (None, None) => return Ok(Vec::new()),
    };
    let list = key.as_array().ok_or("headers: not an array")?;
    let mut out = Vec::with_capacity(list.len());
    for (i, pair) in list.iter().enumerate() {
        let p = pair
            .as_array()
            .filter(|p| p.len() == 2)
            .ok_or(format!("headers[{i}]: not a [name, value] pair"))?;
        let (n, v) = (
            p[0].as_str()
                .ok_or(format!("headers[{i}][0]: not a string"))?,
            p[1].as_str()
                .ok_or(format!("headers[{i}][1]: not a string"))?,
        );
        let conv = |s: &str| if b64 { base64(s) } else { latin1(s) };
        out.push((
            conv(n).map_err(|e| format!("headers[{i}]: {e}"))?,
            conv(v).map_err(|e| format!("headers[{i}]: {e}"))?,
        ));
    }
    Ok(out)
}

/// A string whose code points are all ≤ U+00FF, as the bytes they stand for.
fn latin1(s: &str) -> Result<Vec<u8>, String> {
    s.chars()
        .map(|c| {
            u8::try_from(u32::from(c)).map_err(|_| {
                format!(
                    "character U+{:04X} above U+00FF (use the _b64 form)",
                    u32::from(c)
                )
            })
        })
        .collect()
}

/// Standard base64 (padding optional, whitespace ignored).
pub fn base64(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for (i, c) in s.bytes().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return Err(format!("invalid base64 byte {c:#04x} at {i}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// The verdict for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub id: String,
    pub matched: Vec<u32>,
    pub action: &'static str,
    pub status: u16,
    pub anomaly_score: i64,
    pub log: Vec<String>,
}

/// Evaluates one request on a reusable transaction.
pub fn evaluate(tx: &mut Transaction<'_>, req: &CheckRequest, with_log: bool) -> CheckResult {
    tx.reset();
    tx.set_connection(&req.remote_addr, 0, "127.0.0.1", 80);
    tx.set_unique_id(req.id.as_bytes());
    tx.set_request_line(&req.method, &req.uri, &req.version);
    for (n, v) in &req.headers {
        tx.add_request_header(n, v);
    }
    tx.set_request_body(&req.body);
    tx.process_request();
    if let Some(resp) = &req.response {
        tx.set_response(resp.status, &req.version);
        for (n, v) in &resp.headers {
            tx.add_response_header(n, v);
        }
        tx.set_response_body(&resp.body);
        tx.process_response();
    }
    tx.process_logging();

    let mut matched = Vec::new();
    let mut log_lines = Vec::new();
    for m in tx.matched_rules() {
        if !m.log {
            continue;
        }
        if !matched.contains(&m.id) {
            matched.push(m.id);
        }
        if with_log {
            log_lines.push(log::line(tx, m));
        }
    }
    let (action, status) = match tx.interruption() {
        Some(i) => (i.action.name(), i.status),
        None => ("pass", req.response.as_ref().map_or(200, |r| r.status)),
    };
    CheckResult {
        id: req.id.clone(),
        matched,
        action,
        status,
        anomaly_score: anomaly_score(tx),
        log: log_lines,
    }
}

/// The blocking anomaly score (inbound plus outbound) the transaction reached.
pub fn anomaly_score(tx: &Transaction<'_>) -> i64 {
    tx.tx_int("blocking_inbound_anomaly_score") + tx.tx_int("blocking_outbound_anomaly_score")
}

impl CheckResult {
    pub fn to_json(&self, with_log: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "matched": self.matched,
            "action": self.action,
            "status": self.status,
            "anomaly_score": self.anomaly_score,
        });
        if with_log {
            v["log"] = json!(self.log);
        }
        v
    }
}

/// Runs `check` over `input`, writing to `output`. Returns the number of lines processed.
pub fn run(
    rs: &Ruleset,
    input: impl BufRead,
    mut output: impl Write,
    with_log: bool,
) -> std::io::Result<usize> {
    // A batch tool: build the prefilter before the first request (the agent builds it in the
    // background instead, so it starts listening at once).
    if let Err(e) = rs.build_prefilter() {
        ::log::warn!("{e}; evaluating without the prefilter");
    }
    let mut tx = Transaction::new(rs);
    let mut n = 0;
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        n += 1;
        let out = match parse_line(&line) {
            Ok(req) => evaluate(&mut tx, &req, with_log).to_json(with_log),
            Err((id, e)) => json!({"id": id, "error": e}),
        };
        serde_json::to_writer(&mut output, &out)?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64("").unwrap(), b"");
        assert!(base64("a*b").is_err());
    }

    #[test]
    fn lines_parse_and_errors_name_the_field() {
        let r = parse_line(
            r#"{"id":"a","method":"GET","uri":"/x?y=1","version":"1.1","headers":[["Host","é"]]}"#,
        )
        .unwrap();
        assert_eq!(r.headers[0].1, vec![0xe9]);
        assert_eq!(r.uri, b"/x?y=1");
        let (id, e) = parse_line(r#"{"id":"b","uri":"/"}"#).unwrap_err();
        assert_eq!(id, "b");
        assert!(e.contains("method"));
        let (_, e) =
            parse_line(r#"{"id":"c","method":"GET","uri":"/","headers":[["a","\u0100"]]}"#)
                .unwrap_err();
        assert!(e.contains("U+0100"), "{e}");
        assert!(parse_line("not json").is_err());
    }
}
