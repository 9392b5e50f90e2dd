//! One HTTP transaction under evaluation, and the worker-owned state it reuses.
//!
//! A worker keeps one [`Transaction`] and calls [`Transaction::reset`] between requests: every
//! buffer (collections, transformation cache, regex caches) keeps its capacity, so steady-state
//! evaluation does not allocate for storage. Feeding order: connection, request line, headers,
//! body, then [`Transaction::process_request`] (phases 1–2); for responses the response status,
//! headers and body, then [`Transaction::process_response`] (phases 3–4);
//! [`Transaction::process_logging`] runs phase 5.

use super::body::{self, BodyLimits, BodySink};
use super::cache::TransformCache;
use super::collection::{Pairs, VarStore};
use super::ruleset::Ruleset;
use super::variables::Scalar;
use crate::seclang::ir::{AllowScope, AuditEngine, BodyProcessor, LimitAction, RuleEngineMode};

/// What the engine decided for the transaction so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    pub rule_id: u32,
    pub action: InterruptAction,
    pub status: u16,
    /// Redirect target (`redirect:` actions).
    pub data: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptAction {
    Deny,
    Drop,
    Redirect,
}

impl InterruptAction {
    pub fn name(self) -> &'static str {
        match self {
            InterruptAction::Deny => "deny",
            InterruptAction::Drop => "drop",
            InterruptAction::Redirect => "redirect",
        }
    }
}

/// Request metadata copied out of a transaction (see [`Transaction::request_summary`]).
#[derive(Debug, Clone, Default)]
pub struct RequestSummary {
    pub unique_id: String,
    pub remote_addr: String,
    pub remote_port: u16,
    pub server_addr: String,
    pub server_port: u16,
    pub method: Vec<u8>,
    pub uri: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The fixed TX slots of a transaction at some point (see [`Transaction::tx_snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxSnapshot {
    slots: Vec<Option<Vec<u8>>>,
}

/// One rule match, as logged: the rule and the expanded message and data.
#[derive(Debug, Clone)]
pub struct MatchedRule {
    pub id: u32,
    pub phase: u8,
    pub msg: String,
    pub data: String,
    pub severity: Option<u8>,
    /// Index of the rule in the ruleset (for tags, file, line).
    pub(crate) rule: u32,
    /// `log` (error-log line) and `auditlog` flags of the rule.
    pub log: bool,
    pub auditlog: bool,
    /// Name of the variable that matched last (`ARGS:q`) and its (transformed) value.
    pub var_name: String,
    pub value: String,
    /// The disruptive action this rule asked for (`pass` when none).
    pub disruptive: &'static str,
}

/// Request and response data: the variables' sources. Filled before evaluation, read-only
/// while rules run (except that the body is parsed at the start of phase 2).
#[derive(Default)]
pub(crate) struct RequestData {
    pub remote_addr: Vec<u8>,
    pub remote_port: u16,
    pub server_addr: Vec<u8>,
    pub server_port: u16,
    pub unique_id: Vec<u8>,
    pub method: Vec<u8>,
    pub uri_raw: Vec<u8>,
    pub uri: Vec<u8>,
    pub protocol: Vec<u8>,
    pub request_line: Vec<u8>,
    pub filename: Vec<u8>,
    pub basename: Vec<u8>,
    pub query: Vec<u8>,
    pub headers: Pairs,
    pub cookies: Pairs,
    pub args_get: Pairs,
    pub args_post: Pairs,
    pub body: Vec<u8>,
    /// REQUEST_BODY is exposed (URLENCODED, or forced by ctl).
    pub request_body_var: bool,
    pub body_processor: Option<BodyProcessor>,
    pub reqbody_error: bool,
    pub reqbody_error_msg: Vec<u8>,
    pub urlencoded_error: bool,
    pub multipart: body::multipart::MultipartFlags,
    pub multipart_strict_error: bool,
    pub files: Pairs,
    pub file_sizes: Vec<u64>,
    pub part_headers: Pairs,
    pub xml_text: Pairs,
    pub xml_attr: Pairs,
    pub inbound_data_error: bool,
    pub response_status: u16,
    pub response_protocol: Vec<u8>,
    pub response_headers: Pairs,
    pub response_body: Vec<u8>,
    pub response_body_var: bool,
    pub outbound_data_error: bool,
}

/// Mutable evaluation state of one transaction.
#[derive(Default)]
pub(crate) struct State {
    pub tx: VarStore,
    /// IP, GLOBAL, SESSION, USER: kept per transaction only (no persistence).
    pub others: Vec<(crate::seclang::ir::Variable, Vec<u8>, Vec<u8>)>,
    pub engine: Option<RuleEngineMode>,
    pub audit_engine: Option<AuditEngine>,
    pub request_body_access: Option<bool>,
    pub response_body_access: Option<bool>,
    pub force_request_body_var: bool,
    pub body_processor_override: Option<BodyProcessor>,
    pub request_body_limit: Option<u64>,
    pub removed_ranges: Vec<(u32, u32)>,
    pub removed_tags: Vec<String>,
    pub removed_msgs: Vec<String>,
    pub removed_targets: Vec<super::eval::RemovedTarget>,
    pub matched_var: Vec<u8>,
    pub matched_var_name: Vec<u8>,
    pub matched_vars: Pairs,
    pub skip: u32,
    pub skip_after: Option<u32>,
    pub allow: Option<AllowScope>,
    pub interruption: Option<Interruption>,
    pub matches: Vec<MatchedRule>,
    pub phases_done: [bool; 6],
}

/// Per-worker scratch space: regex caches and reusable buffers.
pub(crate) struct Scratch {
    pub rx: super::operators::rx::RegexCaches,
    pub pf: super::eval::PrefilterState,
    pub values: Vec<super::variables::ValueRef>,
    pub temp: Vec<u8>,
    pub arg: Vec<u8>,
    pub expand: Vec<u8>,
    pub key: Vec<u8>,
    /// The key a `setvar` writes.
    pub setvar_key: Vec<u8>,
    /// A matching value, copied out of the transformation cache for the match's actions.
    pub matched: Vec<u8>,
    pub body_scratch: Vec<u8>,
}

/// A transaction being evaluated; reuse it across requests with [`Transaction::reset`].
pub struct Transaction<'r> {
    pub(crate) rs: &'r Ruleset,
    pub(crate) req: RequestData,
    pub(crate) cache: TransformCache,
    pub(crate) st: State,
    pub(crate) sc: Scratch,
    /// Bound on bytes of body parsed, from `config.yaml` (`limits.request_body_bytes`).
    pub body_cap: usize,
    pub response_body_cap: usize,
    pub limits: BodyLimits,
}

impl<'r> Transaction<'r> {
    /// Heap bytes this transaction's regex caches hold (for the perf harness).
    pub fn regex_cache_bytes(&self) -> usize {
        self.sc.rx.memory_usage()
    }

    pub fn new(rs: &'r Ruleset) -> Transaction<'r> {
        let mut tx = Transaction {
            rs,
            req: RequestData::default(),
            cache: TransformCache::new(rs.pipelines.len()),
            st: State {
                tx: VarStore::with_slots(rs.tx_slot_count()),
                ..State::default()
            },
            sc: Scratch {
                rx: super::operators::rx::RegexCaches::for_table(&rs.regexes),
                pf: super::eval::PrefilterState::new(rs),
                values: Vec::new(),
                temp: Vec::new(),
                arg: Vec::new(),
                setvar_key: Vec::new(),
                matched: Vec::new(),
                expand: Vec::new(),
                key: Vec::new(),
                body_scratch: Vec::new(),
            },
            body_cap: usize::MAX,
            response_body_cap: usize::MAX,
            limits: BodyLimits {
                max_args: rs.settings.arguments_limit as usize,
                max_depth: rs.settings.json_depth_limit as usize,
                max_parts: 1024,
            },
        };
        tx.reset();
        tx
    }

    /// Forgets the previous transaction, keeping every buffer.
    pub fn reset(&mut self) {
        let r = &mut self.req;
        for b in [
            &mut r.remote_addr,
            &mut r.server_addr,
            &mut r.unique_id,
            &mut r.method,
            &mut r.uri_raw,
            &mut r.uri,
            &mut r.protocol,
            &mut r.request_line,
            &mut r.filename,
            &mut r.basename,
            &mut r.query,
            &mut r.body,
            &mut r.reqbody_error_msg,
            &mut r.response_protocol,
            &mut r.response_body,
        ] {
            b.clear();
        }
        for p in [
            &mut r.headers,
            &mut r.cookies,
            &mut r.args_get,
            &mut r.args_post,
            &mut r.files,
            &mut r.part_headers,
            &mut r.xml_text,
            &mut r.xml_attr,
            &mut r.response_headers,
        ] {
            p.clear();
        }
        r.file_sizes.clear();
        r.remote_port = 0;
        r.server_port = 0;
        r.request_body_var = false;
        r.body_processor = None;
        r.reqbody_error = false;
        r.urlencoded_error = false;
        r.multipart = Default::default();
        r.multipart_strict_error = false;
        r.inbound_data_error = false;
        r.response_status = 0;
        r.response_body_var = false;
        r.outbound_data_error = false;

        let s = &mut self.st;
        s.tx.clear();
        s.others.clear();
        s.engine = None;
        s.audit_engine = None;
        s.request_body_access = None;
        s.response_body_access = None;
        s.force_request_body_var = false;
        s.body_processor_override = None;
        s.request_body_limit = None;
        s.removed_ranges.clear();
        s.removed_tags.clear();
        s.removed_msgs.clear();
        s.removed_targets.clear();
        s.matched_var.clear();
        s.matched_var_name.clear();
        s.matched_vars.clear();
        s.skip = 0;
        s.skip_after = None;
        s.allow = None;
        s.interruption = None;
        s.matches.clear();
        s.phases_done = [false; 6];
        self.cache.clear();
        self.sc.pf.clear();
    }

    // ---- Input -------------------------------------------------------------------------

    /// Client and server addresses (REMOTE_ADDR/PORT, SERVER_ADDR/PORT) and the unique id.
    pub fn set_connection(
        &mut self,
        remote: &str,
        remote_port: u16,
        server: &str,
        server_port: u16,
    ) {
        self.req.remote_addr.extend_from_slice(remote.as_bytes());
        self.req.remote_port = remote_port;
        self.req.server_addr.extend_from_slice(server.as_bytes());
        self.req.server_port = server_port;
    }

    pub fn set_unique_id(&mut self, id: &[u8]) {
        self.req.unique_id.clear();
        self.req.unique_id.extend_from_slice(id);
    }

    /// The request line. `protocol` is the full token (`HTTP/1.1`); a bare version (`1.1`,
    /// as HAProxy's `req.ver` gives) is prefixed with `HTTP/`.
    pub fn set_request_line(&mut self, method: &[u8], uri: &[u8], protocol: &[u8]) {
        let r = &mut self.req;
        r.method.extend_from_slice(method);
        r.uri_raw.extend_from_slice(uri);
        if !protocol.is_empty() && protocol[0].is_ascii_digit() {
            r.protocol.extend_from_slice(b"HTTP/");
        }
        r.protocol.extend_from_slice(protocol);
        r.request_line.extend_from_slice(method);
        r.request_line.push(b' ');
        r.request_line.extend_from_slice(uri);
        if !r.protocol.is_empty() {
            r.request_line.push(b' ');
            r.request_line.extend_from_slice(&r.protocol);
        }
        // REQUEST_URI: the target without scheme and authority when absolute-form.
        let target = strip_authority(uri);
        r.uri.extend_from_slice(target);
        let (path, query) = match memchr::memchr(b'?', target) {
            Some(i) => (&target[..i], Some(&target[i + 1..])),
            None => (target, None),
        };
        // A fragment is not sent by browsers; when a client does, it belongs to neither the
        // path nor the query (ModSecurity v2 keeps it in REQUEST_URI_RAW only).
        let path = match memchr::memchr(b'#', path) {
            Some(i) => &path[..i],
            None => path,
        };
        // REQUEST_FILENAME / REQUEST_BASENAME are percent-decoded (libmodsecurity3 and Coraza):
        // `/get/array_diff%20%28` must reach the PHP-function rules as `array_diff (`.
        // `+` stays a plus: it means space only in query strings and form bodies.
        percent_decode(path, &mut r.filename);
        let base_start = memchr::memrchr2(b'/', b'\\', &r.filename).map_or(0, |i| i + 1);
        let (_, base) = r.filename.split_at(base_start);
        r.basename.extend_from_slice(base);
        if let Some(q) = query {
            let q = match memchr::memchr(b'#', q) {
                Some(i) => &q[..i],
                None => q,
            };
            r.query.extend_from_slice(q);
            let mut sink = ArgSink {
                args: &mut r.args_get,
            };
            let parsed =
                body::urlencoded::parse(q, self.limits, &mut self.sc.body_scratch, &mut sink);
            note_urlencoded(parsed, &mut r.urlencoded_error);
        }
    }

    pub fn add_request_header(&mut self, name: &[u8], value: &[u8]) {
        self.req.headers.push(name, value);
        if name.eq_ignore_ascii_case(b"cookie") {
            let mut sink = ArgSink {
                args: &mut self.req.cookies,
            };
            body::cookies::parse(value, &mut sink);
        }
    }

    /// The request body as received (HAProxy may have truncated it; see `body_size`).
    pub fn set_request_body(&mut self, body: &[u8]) {
        let cap = self
            .body_cap
            .min(self.rs.settings.request_body_limit as usize);
        let take = body.len().min(cap);
        self.req.body.extend_from_slice(&body[..take]);
        if body.len() > cap {
            self.req.inbound_data_error = true;
        }
    }

    pub fn set_response(&mut self, status: u16, protocol: &[u8]) {
        self.req.response_status = status;
        self.req.response_protocol.clear();
        if !protocol.is_empty() && protocol[0].is_ascii_digit() {
            self.req.response_protocol.extend_from_slice(b"HTTP/");
        }
        self.req.response_protocol.extend_from_slice(protocol);
    }

    pub fn add_response_header(&mut self, name: &[u8], value: &[u8]) {
        self.req.response_headers.push(name, value);
    }

    pub fn set_response_body(&mut self, body: &[u8]) {
        let cap = self
            .response_body_cap
            .min(self.rs.settings.response_body_limit as usize);
        let take = body.len().min(cap);
        self.req.response_body.extend_from_slice(&body[..take]);
        if body.len() > cap {
            self.req.outbound_data_error = true;
        }
    }

    // ---- Evaluation ----------------------------------------------------------------------

    /// Runs phases 1 and 2. Returns the interruption if the engine is On and a rule disrupted.
    pub fn process_request(&mut self) -> Option<&Interruption> {
        self.select_body_processor();
        self.run_phase(1);
        if self.st.interruption.is_none() {
            self.parse_request_body();
            self.changed(&[Scalar::RequestBody, Scalar::ReqbodyErrorMsg]);
            self.run_phase(2);
        }
        self.st.interruption.as_ref()
    }

    /// These variables may read differently from now on (they are set as the transaction
    /// goes): what earlier phases computed from them must not be reused.
    fn changed(&mut self, scalars: &[Scalar]) {
        for &s in scalars {
            self.cache.forget(super::variables::scalar_key(s));
        }
    }

    /// Runs phases 3 and 4.
    pub fn process_response(&mut self) -> Option<&Interruption> {
        self.changed(&[Scalar::ResponseProtocol, Scalar::ResponseBody]);
        if self.st.interruption.is_none() {
            self.run_phase(3);
        }
        if self.st.interruption.is_none() {
            self.expose_response_body();
            self.changed(&[Scalar::ResponseBody]);
            self.run_phase(4);
        }
        self.st.interruption.as_ref()
    }

    /// Runs phase 5 (logging).
    pub fn process_logging(&mut self) {
        self.run_phase(5);
    }

    fn run_phase(&mut self, phase: u8) {
        if self.st.phases_done[usize::from(phase)] || self.engine_mode() == RuleEngineMode::Off {
            return;
        }
        self.st.phases_done[usize::from(phase)] = true;
        super::eval::run_phase(self, phase);
    }

    /// The engine mode in effect (the configuration's, unless a `ctl:ruleEngine` changed it).
    pub fn engine_mode(&self) -> RuleEngineMode {
        self.st.engine.unwrap_or(self.rs.settings.rule_engine)
    }

    pub fn interruption(&self) -> Option<&Interruption> {
        self.st.interruption.as_ref()
    }

    /// Every match of a rule that logs or audits, in order (a rule with `nolog` may still be
    /// recorded for the audit log; see [`MatchedRule::log`]).
    pub fn matched_rules(&self) -> &[MatchedRule] {
        &self.st.matches
    }

    /// Whether the audit log should get this transaction (a matched rule with `auditlog`,
    /// unless the audit engine is Off for it).
    pub fn is_relevant(&self) -> bool {
        match self
            .st
            .audit_engine
            .unwrap_or(self.rs.settings.audit_engine)
        {
            AuditEngine::Off => false,
            AuditEngine::On => true,
            AuditEngine::RelevantOnly => self.st.matches.iter().any(|m| m.auditlog),
        }
    }

    /// A TX variable's value (case-insensitive key), for reporting (e.g. `anomaly_score`).
    pub fn tx_var(&self, key: &str) -> Option<&[u8]> {
        let k = key.to_ascii_lowercase();
        match self.rs.tx_slot(k.as_bytes()) {
            Some(s) => self.st.tx.slot(s),
            None => self.st.tx.get_dynamic(k.as_bytes()),
        }
    }

    /// A TX variable as an integer (0 when absent).
    pub fn tx_int(&self, key: &str) -> i64 {
        self.tx_var(key)
            .map(super::operators::to_number)
            .unwrap_or(0)
    }

    pub fn ruleset(&self) -> &'r Ruleset {
        self.rs
    }

    /// Tags, file and line of a matched rule.
    pub fn rule_info(&self, m: &MatchedRule) -> (&'r [String], &'r str, u32) {
        let r = &self.rs.rules[m.rule as usize];
        (&r.tags, &r.file, r.line)
    }

    /// Tags and file of a matched rule, shared (for audit events).
    pub fn rule_shared(
        &self,
        m: &MatchedRule,
    ) -> (std::sync::Arc<[String]>, std::sync::Arc<str>, u32) {
        let r = &self.rs.rules[m.rule as usize];
        (r.tags.clone(), r.file.clone(), r.line)
    }

    pub fn request_body_processor(&self) -> Option<BodyProcessor> {
        self.req.body_processor
    }

    /// HAProxy reported a body longer than the one it sent (its buffer cut it):
    /// INBOUND_DATA_ERROR is set so rules and logs can tell.
    pub fn mark_body_truncated(&mut self) {
        self.req.inbound_data_error = true;
    }

    /// Owned copy of the request metadata, for the audit log.
    pub fn request_summary(&self) -> RequestSummary {
        let r = &self.req;
        RequestSummary {
            unique_id: String::from_utf8_lossy(&r.unique_id).into_owned(),
            remote_addr: String::from_utf8_lossy(&r.remote_addr).into_owned(),
            remote_port: r.remote_port,
            server_addr: String::from_utf8_lossy(&r.server_addr).into_owned(),
            server_port: r.server_port,
            method: r.method.clone(),
            uri: r.uri_raw.clone(),
            headers: r
                .headers
                .iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect(),
        }
    }

    /// Owned copy of the response headers, for the audit log.
    pub fn response_headers(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.req
            .response_headers
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect()
    }

    // ---- State carried between the request and the response -------------------------------

    /// The TX collection's fixed slots, as a baseline to compute deltas against.
    pub fn tx_snapshot(&self) -> TxSnapshot {
        let n = self.rs.tx_slot_count();
        TxSnapshot {
            slots: (0..n as u32)
                .map(|s| self.st.tx.slot(s).map(<[u8]>::to_vec))
                .collect(),
        }
    }

    /// Calls `f(key, value)` for every TX slot that differs from `base` (`None`: deleted),
    /// skipping the capture slots TX:0–9. Keys set through macros (no slot) are not included:
    /// they are per-request bookkeeping such as `tx.header_name_920450_*`.
    pub fn for_each_tx_delta(&self, base: &TxSnapshot, mut f: impl FnMut(&[u8], Option<&[u8]>)) {
        for s in 0..self.rs.tx_slot_count() as u32 {
            if self.rs.capture_slots.contains(&s) {
                continue;
            }
            let cur = self.st.tx.slot(s);
            let old = base.slots.get(s as usize).and_then(|v| v.as_deref());
            if cur != old {
                f(&self.rs.tx_names[s as usize], cur);
            }
        }
    }

    /// Loads `base` into the TX collection (slots only).
    pub fn restore_tx(&mut self, base: &TxSnapshot) {
        for (s, v) in base.slots.iter().enumerate() {
            match v {
                Some(v) => self.st.tx.set_slot(s as u32, v),
                None => self.st.tx.delete_slot(s as u32),
            }
        }
    }

    /// Sets (or deletes, with `None`) a TX variable by name.
    pub fn set_tx(&mut self, key: &[u8], value: Option<&[u8]>) {
        let k = key.to_ascii_lowercase();
        match (self.rs.tx_slot(&k), value) {
            (Some(s), Some(v)) => self.st.tx.set_slot(s, v),
            (Some(s), None) => self.st.tx.delete_slot(s),
            (None, Some(v)) => self.st.tx.set_dynamic(&k, v),
            (None, None) => self.st.tx.delete_dynamic(&k),
        }
    }

    /// The engine mode set by `ctl:ruleEngine` during this transaction, if any.
    pub fn engine_override(&self) -> Option<RuleEngineMode> {
        self.st.engine
    }

    pub fn set_engine_override(&mut self, mode: RuleEngineMode) {
        self.st.engine = Some(mode);
    }

    /// Rules removed for this transaction by `ctl:ruleRemoveById` / `ctl:ruleRemoveByTag`.
    pub fn removed_rules(&self) -> (&[(u32, u32)], &[String]) {
        (&self.st.removed_ranges, &self.st.removed_tags)
    }

    pub fn remove_rules(&mut self, ranges: &[(u32, u32)], tags: &[String]) {
        self.st.removed_ranges.extend_from_slice(ranges);
        for t in tags {
            if !self.st.removed_tags.contains(t) {
                self.st.removed_tags.push(t.clone());
            }
        }
    }

    // ---- Bodies ------------------------------------------------------------------------

    /// REQBODY_PROCESSOR from Content-Type, as ModSecurity does before phase 1.
    fn select_body_processor(&mut self) {
        let ct = self.req.headers.first(b"content-type").unwrap_or(&[]);
        let ct = trim_ascii_start(ct);
        self.req.body_processor =
            if starts_with_ignore_case(ct, b"application/x-www-form-urlencoded") {
                Some(BodyProcessor::UrlEncoded)
            } else if starts_with_ignore_case(ct, b"multipart/form-data") {
                Some(BodyProcessor::Multipart)
            } else {
                None
            };
    }

    /// Parses the request body with the selected processor at the start of phase 2.
    fn parse_request_body(&mut self) {
        if let Some(p) = self.st.body_processor_override {
            self.req.body_processor = Some(p);
        }
        let access = self
            .st
            .request_body_access
            .unwrap_or(self.rs.settings.request_body_access);
        if !access {
            return;
        }
        let limit = self
            .st
            .request_body_limit
            .unwrap_or(self.rs.settings.request_body_limit) as usize;
        if self.req.body.len() > limit {
            match self.rs.settings.request_body_limit_action {
                LimitAction::Reject => {
                    self.req.reqbody_error = true;
                    self.req.reqbody_error_msg.clear();
                    self.req
                        .reqbody_error_msg
                        .extend_from_slice(b"Request body is larger than the configured limit");
                }
                LimitAction::ProcessPartial => {}
            }
            self.req.body.truncate(limit);
            self.req.inbound_data_error = true;
        }
        let r = &mut self.req;
        r.request_body_var =
            self.st.force_request_body_var || r.body_processor == Some(BodyProcessor::UrlEncoded);
        if r.body.is_empty() {
            return;
        }
        let limits = self.limits;
        let scratch = &mut self.sc.body_scratch;
        let result: Result<(), body::BodyError> = match r.body_processor {
            None => Ok(()),
            Some(BodyProcessor::UrlEncoded) => {
                let mut sink = ArgSink {
                    args: &mut r.args_post,
                };
                match body::urlencoded::parse(&r.body, limits, scratch, &mut sink) {
                    Ok(st) => {
                        r.urlencoded_error |= st.invalid_encoding;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Some(BodyProcessor::Multipart) => {
                let ct = r.headers.first(b"content-type").unwrap_or(&[]).to_vec();
                let mut sink = FullSink {
                    args: &mut r.args_post,
                    files: &mut r.files,
                    sizes: &mut r.file_sizes,
                    part_headers: &mut r.part_headers,
                    xml_text: &mut r.xml_text,
                    xml_attr: &mut r.xml_attr,
                };
                let outcome = body::multipart::parse(&r.body, &ct, limits, scratch, &mut sink);
                r.multipart = outcome.flags;
                r.multipart_strict_error = outcome.strict_error();
                outcome.error.map_or(Ok(()), Err)
            }
            Some(BodyProcessor::Json) => {
                let mut sink = FullSink {
                    args: &mut r.args_post,
                    files: &mut r.files,
                    sizes: &mut r.file_sizes,
                    part_headers: &mut r.part_headers,
                    xml_text: &mut r.xml_text,
                    xml_attr: &mut r.xml_attr,
                };
                body::json::parse(&r.body, limits, scratch, &mut sink).map(|_| ())
            }
            Some(BodyProcessor::Xml) => {
                let mut sink = FullSink {
                    args: &mut r.args_post,
                    files: &mut r.files,
                    sizes: &mut r.file_sizes,
                    part_headers: &mut r.part_headers,
                    xml_text: &mut r.xml_text,
                    xml_attr: &mut r.xml_attr,
                };
                body::xml::parse(&r.body, limits, scratch, &mut sink).map(|_| ())
            }
        };
        if let Err(e) = result {
            r.reqbody_error = true;
            r.reqbody_error_msg.clear();
            r.reqbody_error_msg
                .extend_from_slice(e.to_string().as_bytes());
        }
    }

    /// RESPONSE_BODY is exposed when response body access is on and the content type is one
    /// of `SecResponseBodyMimeType`.
    fn expose_response_body(&mut self) {
        let access = self
            .st
            .response_body_access
            .unwrap_or(self.rs.settings.response_body_access);
        if !access {
            return;
        }
        let ct = self
            .req
            .response_headers
            .first(b"content-type")
            .unwrap_or(&[]);
        let mime = ct.split(|&b| b == b';').next().unwrap_or(&[]);
        let mime = trim_ascii_start(mime);
        let mime_end = mime
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |e| e + 1);
        let mime = &mime[..mime_end];
        self.req.response_body_var = self
            .rs
            .settings
            .response_body_mime_types
            .iter()
            .any(|m| m.as_bytes().eq_ignore_ascii_case(mime));
    }
}

fn strip_authority(uri: &[u8]) -> &[u8] {
    // absolute-form: scheme "://" authority path
    if let Some(i) = memchr::memmem::find(uri, b"://") {
        let scheme = &uri[..i];
        if !scheme.is_empty()
            && scheme
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
        {
            let rest = &uri[i + 3..];
            return match memchr::memchr(b'/', rest) {
                Some(j) => &rest[j..],
                None => b"/",
            };
        }
    }
    uri
}

/// `%XX` → byte; a `%` not followed by two hex digits is kept as is.
fn percent_decode(input: &[u8], out: &mut Vec<u8>) {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            if let (Some(h), Some(l)) = (
                input.get(i + 1).and_then(|&b| hex(b)),
                input.get(i + 2).and_then(|&b| hex(b)),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
}

fn trim_ascii_start(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    &v[s..]
}

fn starts_with_ignore_case(v: &[u8], p: &[u8]) -> bool {
    v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p)
}

/// Receives query-string / urlencoded / cookie arguments.
struct ArgSink<'a> {
    args: &'a mut Pairs,
}

/// Records URLENCODED_ERROR from a query-string parse; an argument-limit error only means the
/// rest was not parsed (REQBODY_ERROR is for bodies).
fn note_urlencoded(
    r: Result<body::urlencoded::UrlencodedStatus, body::BodyError>,
    error: &mut bool,
) {
    if let Ok(st) = r {
        *error |= st.invalid_encoding;
    }
}

impl BodySink for ArgSink<'_> {
    fn arg(&mut self, name: &[u8], value: &[u8]) {
        self.args.push(name, value);
    }
}

/// Receives everything a body processor extracts.
struct FullSink<'a> {
    args: &'a mut Pairs,
    files: &'a mut Pairs,
    sizes: &'a mut Vec<u64>,
    part_headers: &'a mut Pairs,
    xml_text: &'a mut Pairs,
    xml_attr: &'a mut Pairs,
}

impl BodySink for FullSink<'_> {
    fn arg(&mut self, name: &[u8], value: &[u8]) {
        self.args.push(name, value);
    }
    fn file(&mut self, field_name: &[u8], file_name: &[u8], size: usize) {
        self.files.push(field_name, file_name);
        self.sizes.push(size as u64);
    }
    fn part_header(&mut self, part_name: &[u8], line: &[u8]) {
        self.part_headers.push(part_name, line);
    }
    fn xml_text(&mut self, text: &[u8]) {
        self.xml_text.push(b"", text);
    }
    fn xml_attr(&mut self, name: &[u8], value: &[u8]) {
        self.xml_attr.push(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_is_stripped_from_absolute_targets() {
        assert_eq!(strip_authority(b"http://a.b/x?y"), b"/x?y");
        assert_eq!(strip_authority(b"http://a.b"), b"/");
        assert_eq!(strip_authority(b"/x?u=http://a"), b"/x?u=http://a");
    }
}
