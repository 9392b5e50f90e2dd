//! coraza-spoa's SPOE contract on top of the engine: the [`Inspector`] HAProxy's messages reach.
//!
//! - `coraza-req` (arguments by name: `app`, `id`, `src-ip`, `src-port`, `dst-ip`, `dst-port`,
//!   `method`, `path`, `query`, `version`, `headers` — `req.hdrs` text, or `req.hdrs_bin` when
//!   sent as BINARY —, `body`, `body_size`, `url`, `exportRuleIDs`): phases 1–2, and phase 5
//!   unless the application inspects responses. The request target is `path` + `?query`; when
//!   HAProxy's `path` is empty (asterisk form `OPTIONS *`, authority form) the optional `url`
//!   argument (HAProxy's `url` fetch: the target as received) is used instead.
//! - `coraza-res` (`app`, `id`, `version`, `status`, `headers`, `body`, `state`,
//!   `detect-only`, `exportRuleIDs`): phases 3–5 on a transaction rebuilt from `state`.
//!
//! Answers (txn scope, prefix from HAProxy's `var-prefix`): `id`, `action` / `status` /
//! `data` / `ruleid` when a rule enforced a disruptive action, `rules_hit`,
//! `anomaly_score`, `rule_ids` (with `exportRuleIDs`), `state` (request, when the application
//! inspects responses). Unknown messages and arguments are ignored. An argument of the wrong
//! type is an [`InspectError`], which the agent turns into `error` — the request passes.
//!
//! Must not: touch sockets, block, or share mutable state between workers.

pub mod headers;
pub mod state;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::audit::{self, AuditSender};
use crate::config::Config;
use crate::engine::{InterruptAction, Ruleset, Transaction, TxSnapshot};
use crate::inspect::{InspectError, Inspector};
use crate::seclang::ir::{RuleEngineMode, SEVERITIES};
use crate::spop::{AckWriter, Message, TypedData, VarScope};

/// The WAF inspector: the compiled ruleset, the configuration, the audit queue.
pub struct Waf {
    ruleset: &'static Ruleset,
    config: Config,
    apps: Vec<Arc<str>>,
    audit: Option<AuditSender>,
    /// TX after phases 1–2 of a benign request: the baseline the response state is a delta of.
    baseline: TxSnapshot,
}

/// Per-worker state: one reusable transaction and scratch buffers.
pub struct WafWorker {
    tx: Transaction<'static>,
    index: usize,
    seq: u64,
    seed: u64,
    buf: Vec<u8>,
}

impl Waf {
    pub fn new(ruleset: &'static Ruleset, config: Config, audit: Option<AuditSender>) -> Waf {
        let apps = config
            .applications
            .iter()
            .map(|a| Arc::from(a.name.as_str()))
            .collect();
        let baseline = baseline(ruleset);
        Waf {
            ruleset,
            config,
            apps,
            audit,
            baseline,
        }
    }

    fn app_index(&self, name: Option<&[u8]>) -> usize {
        name.and_then(|n| self.apps.iter().position(|a| a.as_bytes() == n))
            .or_else(|| {
                self.apps
                    .iter()
                    .position(|a| **a == *self.config.default_application)
            })
            .unwrap_or(0)
    }
}

/// The TX collection after a plain `GET /` through phases 1–2.
fn baseline(rs: &'static Ruleset) -> TxSnapshot {
    let mut tx = Transaction::new(rs);
    tx.set_connection("127.0.0.1", 0, "127.0.0.1", 0);
    tx.set_request_line(b"GET", b"/", b"1.1");
    for (n, v) in [
        (&b"host"[..], &b"localhost"[..]),
        (b"user-agent", b"coraza-spoa baseline"),
        (b"accept", b"*/*"),
    ] {
        tx.add_request_header(n, v);
    }
    tx.process_request();
    if tx.matched_rules().iter().any(|m| m.log) {
        log::warn!("the benign baseline request matched logging rules; response state may be larger than needed");
    }
    tx.tx_snapshot()
}

impl Inspector for Waf {
    type Worker = WafWorker;

    fn new_worker(&self, worker_index: usize) -> WafWorker {
        let mut tx = Transaction::new(self.ruleset);
        tx.body_cap = self.config.limits.request_body_bytes;
        tx.response_body_cap = self.config.limits.response_body_bytes;
        tx.limits.max_args = tx.limits.max_args.min(self.config.limits.max_args);
        tx.limits.max_depth = tx.limits.max_depth.min(self.config.limits.max_depth);
        tx.limits.max_parts = self.config.limits.max_parts;
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        WafWorker {
            tx,
            index: worker_index,
            seq: 0,
            seed: seed ^ ((worker_index as u64) << 56),
            buf: Vec::new(),
        }
    }

    fn inspect(
        &self,
        w: &mut WafWorker,
        message: &Message<'_>,
        ack: &mut AckWriter<'_>,
    ) -> Result<(), InspectError> {
        match message.name {
            b"coraza-req" => self.request(w, message, ack),
            b"coraza-res" => self.response(w, message, ack),
            other => {
                log::debug!("ignoring SPOE message {:?}", String::from_utf8_lossy(other));
                Ok(())
            }
        }
    }
}

/// The arguments of `coraza-req`, borrowed from the frame.
#[derive(Default)]
struct ReqArgs<'a> {
    app: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    src_ip: Option<IpAddr>,
    src_port: u16,
    dst_ip: Option<IpAddr>,
    dst_port: u16,
    method: &'a [u8],
    path: &'a [u8],
    query: Option<&'a [u8]>,
    url: Option<&'a [u8]>,
    version: &'a [u8],
    headers: Option<TypedData<'a>>,
    body: &'a [u8],
    body_size: Option<i64>,
    export_rule_ids: bool,
}

/// The arguments of `coraza-res`.
#[derive(Default)]
struct ResArgs<'a> {
    app: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    version: &'a [u8],
    status: u16,
    headers: Option<TypedData<'a>>,
    body: &'a [u8],
    state: Option<&'a [u8]>,
    detect_only: bool,
    export_rule_ids: bool,
}

fn bytes<'a>(name: &str, v: TypedData<'a>) -> Result<Option<&'a [u8]>, InspectError> {
    match v {
        TypedData::Null => Ok(None),
        TypedData::String(b) | TypedData::Binary(b) => Ok(Some(b)),
        _ => Err(InspectError::with_detail(
            "argument has the wrong type",
            format!("{name}: expected a string"),
        )),
    }
}

fn int(name: &str, v: TypedData<'_>) -> Result<Option<i64>, InspectError> {
    match v {
        TypedData::Null => Ok(None),
        TypedData::String(b) => Ok(std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse().ok())),
        v => v.as_i64().map(Some).ok_or_else(|| {
            InspectError::with_detail(
                "argument has the wrong type",
                format!("{name}: expected an integer"),
            )
        }),
    }
}

fn port(name: &str, v: TypedData<'_>) -> Result<u16, InspectError> {
    Ok(int(name, v)?
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0))
}

fn ip(name: &str, v: TypedData<'_>) -> Result<Option<IpAddr>, InspectError> {
    match v {
        TypedData::Null => Ok(None),
        TypedData::Ipv4(a) => Ok(Some(IpAddr::V4(a))),
        TypedData::Ipv6(a) => Ok(Some(IpAddr::V6(a))),
        TypedData::String(b) => Ok(std::str::from_utf8(b).ok().and_then(|s| s.parse().ok())),
        _ => Err(InspectError::with_detail(
            "argument has the wrong type",
            format!("{name}: expected an address"),
        )),
    }
}

fn boolean(v: TypedData<'_>) -> bool {
    match v {
        TypedData::Bool(b) => b,
        TypedData::String(b) => b.eq_ignore_ascii_case(b"true") || b == b"1",
        v => v.as_i64().is_some_and(|i| i != 0),
    }
}

fn wrong(e: crate::spop::DecodeError) -> InspectError {
    InspectError::with_detail("malformed message arguments", e.to_string())
}

impl Waf {
    fn request(
        &self,
        w: &mut WafWorker,
        m: &Message<'_>,
        ack: &mut AckWriter<'_>,
    ) -> Result<(), InspectError> {
        let mut a = ReqArgs::default();
        for arg in m.args() {
            let (name, v) = arg.map_err(wrong)?;
            match name {
                b"app" => a.app = bytes("app", v)?,
                b"id" => a.id = bytes("id", v)?.filter(|b| !b.is_empty()),
                b"src-ip" => a.src_ip = ip("src-ip", v)?,
                b"src-port" => a.src_port = port("src-port", v)?,
                b"dst-ip" => a.dst_ip = ip("dst-ip", v)?,
                b"dst-port" => a.dst_port = port("dst-port", v)?,
                b"method" => a.method = bytes("method", v)?.unwrap_or(b""),
                b"path" => a.path = bytes("path", v)?.unwrap_or(b""),
                b"query" => a.query = bytes("query", v)?,
                b"url" => a.url = bytes("url", v)?,
                b"version" => a.version = bytes("version", v)?.unwrap_or(b""),
                b"headers" | b"headers-bin" | b"hdrs_bin" => a.headers = Some(v),
                b"body" => a.body = bytes("body", v)?.unwrap_or(b""),
                b"body_size" | b"body-size" => a.body_size = int("body_size", v)?,
                b"exportRuleIDs" => a.export_rule_ids = boolean(v),
                _ => log::debug!(
                    "coraza-req: ignoring argument {:?}",
                    String::from_utf8_lossy(name)
                ),
            }
        }
        let app = self.app_index(a.app);
        let response_check = self
            .config
            .applications
            .get(app)
            .is_some_and(|x| x.response_check);

        let tx = &mut w.tx;
        tx.reset();
        let id = match a.id {
            Some(id) => String::from_utf8_lossy(id).into_owned(),
            None => {
                w.seq = w.seq.wrapping_add(1);
                unique_id(w.seed, w.index, w.seq)
            }
        };
        tx.set_unique_id(id.as_bytes());
        ack.set_var(
            VarScope::Transaction,
            b"id",
            TypedData::String(id.as_bytes()),
        )?;

        let src = a.src_ip.map(|i| i.to_string()).unwrap_or_default();
        let dst = a.dst_ip.map(|i| i.to_string()).unwrap_or_default();
        tx.set_connection(&src, a.src_port, &dst, a.dst_port);
        let uri = &mut w.buf;
        uri.clear();
        match a.url {
            // HAProxy's `path` is empty for `OPTIONS *` and authority-form targets: the
            // target as received is then the only faithful request line.
            Some(url) if a.path.is_empty() && !url.is_empty() => uri.extend_from_slice(url),
            _ => {
                uri.extend_from_slice(a.path);
                if let Some(q) = a.query {
                    uri.push(b'?');
                    uri.extend_from_slice(q);
                }
            }
        }
        tx.set_request_line(a.method, uri, a.version);
        add_headers(a.headers, |n, v| tx.add_request_header(n, v))?;
        tx.set_request_body(a.body);
        if let Some(declared) = a.body_size {
            if declared > a.body.len() as i64 {
                // HAProxy's buffer cut the body: inspect what arrived, and say so.
                log::debug!(
                    "request {id}: body truncated by HAProxy ({} of {declared} bytes)",
                    a.body.len()
                );
                tx.mark_body_truncated();
            }
        }
        tx.process_request();
        if !response_check {
            tx.process_logging();
        }
        self.answer(
            tx,
            ack,
            a.export_rule_ids,
            tx.tx_int("blocking_inbound_anomaly_score"),
            Verdict::Enforce,
        )?;
        if response_check {
            let mut st = state::RequestState {
                engine: tx.engine_override(),
                ..Default::default()
            };
            let (ranges, tags) = tx.removed_rules();
            st.removed_ranges = ranges.to_vec();
            st.removed_tags = tags.to_vec();
            tx.for_each_tx_delta(&self.baseline, |k, v| {
                st.tx.push((k.to_vec(), v.map(<[u8]>::to_vec)))
            });
            let out = &mut w.buf;
            out.clear();
            state::encode(&st, out);
            if out.len() <= state::MAX_STATE_BYTES {
                ack.set_var(VarScope::Transaction, b"state", TypedData::String(out))?;
            } else {
                log::warn!("request {id}: response state of {} bytes not sent; the response is inspected without it", out.len());
            }
        }
        self.audit(tx, app, a.version, None, Verdict::Enforce);
        Ok(())
    }

    fn response(
        &self,
        w: &mut WafWorker,
        m: &Message<'_>,
        ack: &mut AckWriter<'_>,
    ) -> Result<(), InspectError> {
        let mut a = ResArgs::default();
        for arg in m.args() {
            let (name, v) = arg.map_err(wrong)?;
            match name {
                b"app" => a.app = bytes("app", v)?,
                b"id" => a.id = bytes("id", v)?,
                b"version" => a.version = bytes("version", v)?.unwrap_or(b""),
                b"status" => {
                    a.status = int("status", v)?
                        .and_then(|s| u16::try_from(s).ok())
                        .unwrap_or(0)
                }
                b"headers" | b"headers-bin" | b"hdrs_bin" => a.headers = Some(v),
                b"body" => a.body = bytes("body", v)?.unwrap_or(b""),
                b"state" => a.state = bytes("state", v)?,
                b"detect-only" | b"detect_only" => a.detect_only = boolean(v),
                b"exportRuleIDs" => a.export_rule_ids = boolean(v),
                _ => log::debug!(
                    "coraza-res: ignoring argument {:?}",
                    String::from_utf8_lossy(name)
                ),
            }
        }
        let app = self.app_index(a.app);
        if !self
            .config
            .applications
            .get(app)
            .is_some_and(|x| x.response_check)
        {
            log::debug!("coraza-res for an application without response_check: ignored");
            return Ok(());
        }
        let tx = &mut w.tx;
        tx.reset();
        tx.restore_tx(&self.baseline);
        if let Some(s) = a.state {
            let st = state::decode(s)
                .map_err(|e| InspectError::with_detail("malformed state argument", e))?;
            if let Some(e) = st.engine {
                tx.set_engine_override(e);
            }
            tx.remove_rules(&st.removed_ranges, &st.removed_tags);
            for (k, v) in &st.tx {
                tx.set_tx(k, v.as_deref());
            }
        }
        // detect-only: the response is only observed, whatever the request's state says. A
        // response rule's own `ctl:ruleEngine=On` (an enforced response rule) can still switch
        // the engine On during evaluation, which stops at its interruption; the verdict is then
        // reported as observed (no action in the ACK, `log` in the audit log).
        let verdict = if a.detect_only {
            tx.set_engine_override(RuleEngineMode::DetectionOnly);
            Verdict::Observe
        } else {
            Verdict::Enforce
        };
        let id =
            a.id.map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
        tx.set_unique_id(id.as_bytes());
        tx.set_response(a.status, a.version);
        add_headers(a.headers, |n, v| tx.add_response_header(n, v))?;
        tx.set_response_body(a.body);
        tx.process_response();
        tx.process_logging();
        self.answer(
            tx,
            ack,
            a.export_rule_ids,
            tx.tx_int("blocking_outbound_anomaly_score"),
            verdict,
        )?;
        self.audit(tx, app, a.version, Some(a.status), verdict);
        Ok(())
    }

    /// Writes the verdict variables.
    fn answer(
        &self,
        tx: &Transaction<'_>,
        ack: &mut AckWriter<'_>,
        export: bool,
        score: i64,
        verdict: Verdict,
    ) -> Result<(), InspectError> {
        if let Some(i) = tx.interruption().filter(|_| verdict == Verdict::Enforce) {
            ack.set_var(
                VarScope::Transaction,
                b"action",
                TypedData::String(i.action.name().as_bytes()),
            )?;
            ack.set_var(
                VarScope::Transaction,
                b"status",
                TypedData::Int64(i64::from(i.status)),
            )?;
            if i.action == InterruptAction::Redirect {
                ack.set_var(
                    VarScope::Transaction,
                    b"data",
                    TypedData::String(i.data.as_bytes()),
                )?;
            }
            ack.set_var(
                VarScope::Transaction,
                b"ruleid",
                TypedData::Int64(i64::from(i.rule_id)),
            )?;
        }
        let hits = tx.matched_rules().iter().filter(|m| m.log).count();
        ack.set_var(
            VarScope::Transaction,
            b"rules_hit",
            TypedData::Int64(hits as i64),
        )?;
        ack.set_var(
            VarScope::Transaction,
            b"anomaly_score",
            TypedData::Int64(score),
        )?;
        if export {
            let mut ids = String::new();
            for m in tx.matched_rules().iter().filter(|m| m.log) {
                if !ids.is_empty() {
                    ids.push(',');
                }
                ids.push_str(&m.id.to_string());
            }
            ack.set_var(
                VarScope::Transaction,
                b"rule_ids",
                TypedData::String(ids.as_bytes()),
            )?;
        }
        Ok(())
    }

    /// Sends the audit event when a logging rule matched. Never waits.
    fn audit(
        &self,
        tx: &Transaction<'_>,
        app: usize,
        version: &[u8],
        status: Option<u16>,
        verdict: Verdict,
    ) {
        let Some(sender) = &self.audit else { return };
        if !tx.is_relevant() {
            return;
        }
        let mut event = build_event(tx, self.apps[app].clone(), version, status);
        if verdict == Verdict::Observe {
            event.action = audit::Action::Log;
            event.rule_engine = audit::RuleEngineMode::DetectionOnly;
            event.interrupted_by = None;
            event.status = None;
        }
        sender.send(event);
    }
}

/// Whether an interruption becomes the answer (`Enforce`) or is only reported (`Observe`:
/// `coraza-res` with `detect-only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Enforce,
    Observe,
}

/// Builds the owned audit event for a transaction (only called when it is relevant).
pub fn build_event(
    tx: &Transaction<'_>,
    app: Arc<str>,
    version: &[u8],
    status: Option<u16>,
) -> audit::Event {
    let req = tx.request_summary();
    let messages = tx
        .matched_rules()
        .iter()
        .filter(|m| m.auditlog)
        .map(|m| {
            let (tags, file, line) = tx.rule_shared(m);
            audit::Message {
                id: m.id,
                msg: m.msg.as_bytes().to_vec(),
                data: m.data.as_bytes().to_vec(),
                severity: m.severity.map(|s| SEVERITIES[usize::from(s.min(7))]),
                tags,
                phase: m.phase,
                matched_var: m.var_name.as_bytes().to_vec(),
                matched_value: m.value.as_bytes().to_vec(),
                file,
                line,
            }
        })
        .collect();
    let interruption = tx.interruption();
    let action = match interruption.map(|i| i.action) {
        None => audit::Action::Log,
        Some(InterruptAction::Deny) => audit::Action::Deny,
        Some(InterruptAction::Drop) => audit::Action::Drop,
        Some(InterruptAction::Redirect) => audit::Action::Redirect,
    };
    let rule_engine = match tx.engine_mode() {
        RuleEngineMode::On => audit::RuleEngineMode::On,
        RuleEngineMode::DetectionOnly => audit::RuleEngineMode::DetectionOnly,
        RuleEngineMode::Off => audit::RuleEngineMode::Off,
    };
    let inbound = tx.tx_int("blocking_inbound_anomaly_score");
    let outbound = tx.tx_int("blocking_outbound_anomaly_score");
    audit::Event {
        unique_id: req.unique_id,
        timestamp: SystemTime::now(),
        client_ip: req.remote_addr.parse().ok(),
        client_port: req.remote_port,
        server_ip: req.server_addr.parse().ok(),
        server_port: req.server_port,
        app,
        request: audit::RequestInfo {
            method: req.method,
            uri: req.uri,
            http_version: version.to_vec(),
            headers: req.headers,
        },
        response: status.map(|s| audit::ResponseInfo {
            status: s,
            headers: tx.response_headers(),
        }),
        messages,
        action,
        rule_engine,
        anomaly_score: inbound + outbound,
        inbound_anomaly_score: inbound,
        outbound_anomaly_score: outbound,
        interrupted_by: interruption.map(|i| i.rule_id),
        status: interruption.map(|i| i.status),
    }
}

fn add_headers(
    h: Option<TypedData<'_>>,
    mut f: impl FnMut(&[u8], &[u8]),
) -> Result<(), InspectError> {
    match h {
        None | Some(TypedData::Null) => Ok(()),
        Some(TypedData::String(b)) => {
            let bad = headers::text(b, &mut f);
            if bad > 0 {
                log::debug!("{bad} header line(s) without ':' skipped");
            }
            Ok(())
        }
        Some(TypedData::Binary(b)) => {
            // req.hdrs_bin starts with a varint length; req.hdrs text starts with a name and
            // always contains ": ". A BINARY argument may carry either, depending on the fetch.
            if memchr::memmem::find(b, b": ").is_some() && headers::binary(b, |_, _| {}).is_err() {
                headers::text(b, &mut f);
                return Ok(());
            }
            headers::binary(b, &mut f)
                .map_err(|e| InspectError::with_detail("malformed header block", e))
        }
        Some(_) => Err(InspectError::with_detail(
            "argument has the wrong type",
            "headers: expected a string",
        )),
    }
}

/// A transaction id: 20 characters of [0-9A-Z], unique per worker and process start.
fn unique_id(seed: u64, worker: usize, seq: u64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    // splitmix64 of (seed, seq): cheap, well mixed, no syscall.
    let mut z = seed
        .wrapping_add(seq.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(worker as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let mut s = String::with_capacity(20);
    let mut x = z;
    for _ in 0..12 {
        s.push(ALPHABET[(x & 31) as usize] as char);
        x >>= 5;
    }
    let mut y = seq;
    for _ in 0..8 {
        s.push(ALPHABET[(y & 31) as usize] as char);
        y >>= 5;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ids_differ() {
        let a = unique_id(1, 0, 1);
        let b = unique_id(1, 0, 2);
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
    }
}
