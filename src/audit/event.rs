//! The audit event: what a worker hands to the writer for one logged transaction.
//!
//! Owns the data types only. Events are plain owned values (`Send`, no borrows into the
//! worker's buffers) so a worker can build one and forget it; the writer thread turns them into
//! JSON. Text that comes from the request (URI, header values, matched values, expanded `msg`
//! and `logdata`) is kept as bytes because it may not be UTF-8; the encoder decides how to write
//! it (see `SCHEMA.md`). Must not: serialize, allocate on behalf of the writer, or hold locks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

/// One transaction's audit event.
///
/// Built by a worker only when at least one rule that logs matched; serialized to one JSON line
/// by the writer thread (never by the worker).
#[derive(Debug, Clone)]
pub struct Event {
    /// The transaction id (the SPOE `id` argument, or one the agent generated).
    pub unique_id: String,
    /// When the transaction started.
    pub timestamp: SystemTime,
    /// Client address (`src-ip`); `None` when HAProxy did not send it.
    pub client_ip: Option<IpAddr>,
    pub client_port: u16,
    /// Address the client connected to (`dst-ip`); `None` when HAProxy did not send it.
    pub server_ip: Option<IpAddr>,
    pub server_port: u16,
    /// The HAProxy-side application (`app` argument) whose ruleset evaluated the transaction.
    pub app: Arc<str>,
    pub request: RequestInfo,
    /// Present when the response was inspected (`coraza-res`).
    pub response: Option<ResponseInfo>,
    /// Every logging rule that matched, in order of matching.
    pub messages: Vec<Message>,
    /// What the WAF did about it.
    pub action: Action,
    /// The engine mode the transaction ran under (after `ctl:ruleEngine`).
    pub rule_engine: RuleEngineMode,
    /// `TX:ANOMALY_SCORE` (CRS: the blocking inbound score at request time).
    pub anomaly_score: i64,
    pub inbound_anomaly_score: i64,
    pub outbound_anomaly_score: i64,
    /// Id of the rule whose disruptive action interrupted the transaction.
    pub interrupted_by: Option<u32>,
    /// HTTP status of the interruption (`deny`, `redirect`); `None` when not interrupted.
    pub status: Option<u16>,
}

/// The request line and headers, as received (bytes: HAProxy passes them through unchecked).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub method: Vec<u8>,
    /// Path and query as on the wire.
    pub uri: Vec<u8>,
    /// `1.1`, `2.0`, ... (HAProxy's `req.ver`).
    pub http_version: Vec<u8>,
    /// `(name, value)` in arrival order; names are compared case-insensitively.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The response status and headers, when the response was inspected.
#[derive(Debug, Clone, Default)]
pub struct ResponseInfo {
    pub status: u16,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One matched rule.
///
/// Per-rule constants (`tags`, `file`) are shared (`Arc`) so building a message costs a
/// reference-count increment for them, not a copy; per-match text is owned bytes.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: u32,
    /// The rule's `msg`, macro-expanded.
    pub msg: Vec<u8>,
    /// The rule's `logdata`, macro-expanded.
    pub data: Vec<u8>,
    /// The rule's `severity` as written in the rule (`CRITICAL`, `warning`, `2`, ...); written
    /// as Coraza's numeric level (0 emergency .. 7 debug).
    pub severity: Option<&'static str>,
    pub tags: Arc<[String]>,
    /// Phase the rule ran in (1-5).
    pub phase: u8,
    /// Name of the matched variable (`ARGS:id`, `REQUEST_HEADERS:User-Agent`).
    pub matched_var: Vec<u8>,
    /// The matched value (after transformations, as the operator saw it).
    pub matched_value: Vec<u8>,
    /// Rule file and line, as ModSecurity/Coraza report them.
    pub file: Arc<str>,
    pub line: u32,
}

/// What the WAF did with the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Rules matched but nothing was enforced (detection only, or a non-disruptive match).
    Log,
    Deny,
    Drop,
    Redirect,
}

impl Action {
    /// The value written in the `action` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Log => "log",
            Action::Deny => "deny",
            Action::Drop => "drop",
            Action::Redirect => "redirect",
        }
    }
}

/// `SecRuleEngine` mode, spelled as Coraza prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleEngineMode {
    DetectionOnly,
    On,
    Off,
}

impl RuleEngineMode {
    /// The value written in the `rule_engine` field (Coraza's `RuleEngineStatus` strings).
    pub fn as_str(self) -> &'static str {
        match self {
            RuleEngineMode::DetectionOnly => "DetectionOnly",
            RuleEngineMode::On => "On",
            RuleEngineMode::Off => "Off",
        }
    }
}

/// Coraza's numeric severity (0 emergency .. 7 debug) for a rule's `severity` argument, which
/// may be a name (any case) or a single digit, as ModSecurity accepts.
pub fn severity_level(name: &str) -> Option<u8> {
    const NAMES: [&str; 8] = [
        "emergency",
        "alert",
        "critical",
        "error",
        "warning",
        "notice",
        "info",
        "debug",
    ];
    if let [d @ b'0'..=b'7'] = name.as_bytes() {
        return Some(d - b'0');
    }
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
}

/// The name Coraza prints for a numeric severity (`highest_severity`).
pub(crate) fn severity_name(level: u8) -> &'static str {
    match level {
        0 => "emergency",
        1 => "alert",
        2 => "critical",
        3 => "error",
        4 => "warning",
        5 => "notice",
        6 => "info",
        _ => "debug",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_levels_follow_coraza() {
        // Coraza types.ParseRuleSeverity: names case-insensitive, or one digit 0-7.
        let cases: &[(&str, Option<u8>)] = &[
            ("EMERGENCY", Some(0)),
            ("alert", Some(1)),
            ("CRITICAL", Some(2)),
            ("Error", Some(3)),
            ("WARNING", Some(4)),
            ("NOTICE", Some(5)),
            ("INFO", Some(6)),
            ("debug", Some(7)),
            ("2", Some(2)),
            ("7", Some(7)),
            ("8", None),
            ("22", None),
            ("", None),
            ("crit", None),
        ];
        for (name, want) in cases {
            assert_eq!(severity_level(name), *want, "{name:?}");
        }
        for level in 0..8 {
            assert_eq!(severity_level(severity_name(level)), Some(level));
        }
    }
}
