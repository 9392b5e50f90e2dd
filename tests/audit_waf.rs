//! The audit log as the WAF writes it (issue #5): `Waf` driven through `Inspector::inspect` with
//! NOTIFY frames built by `spop::NotifyWriter`, the audit writer on a temp file.
//!
//! Shows: N transactions that match a logging rule give exactly N JSON lines, each carrying the
//! rule ids, msg, matched data, the request's metadata, the anomaly score and the action (`log`
//! in DetectionOnly, `deny` when a rule on the enforce list turned the engine On); transactions
//! that match nothing, or only `nolog` rules, give none. The response message (`coraza-res`)
//! carries the request's state back and its findings are audited too; an enforced response
//! rule denies unless HAProxy sends `detect-only`, in which case it is only logged.
//!
//! The ruleset is a small SecLang file compiled here, so every expectation is exact; the
//! production ruleset is exercised end to end by `tests/waf_e2e.rs`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use coraza_spoa::audit::AuditLog;
use coraza_spoa::config::{Application, Config};
use coraza_spoa::engine::Ruleset;
use coraza_spoa::inspect::Inspector;
use coraza_spoa::spop::{split_frame, AckActions, AckWriter, Action, Messages, NotifyWriter};
use coraza_spoa::spop::{TypedData, VarScope};
use coraza_spoa::waf::Waf;
use serde_json::Value;

/// Detection-only engine; one logging rule, one `nolog` rule, one rule on the "enforce list"
/// (its match turns the engine On, as overrides.conf does with SecRuleUpdateActionById), a
/// CRS-like blocking evaluation, and a response rule.
const RULES: &str = r#"
SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecResponseBodyAccess On
SecResponseBodyMimeType text/html text/plain
SecDefaultAction "phase:1,log,auditlog,pass"
SecDefaultAction "phase:2,log,auditlog,pass"
SecDefaultAction "phase:3,log,auditlog,pass"
SecDefaultAction "phase:4,log,auditlog,pass"

SecRule ARGS:q "@contains attack" \
    "id:1001,phase:2,pass,log,t:none,severity:'CRITICAL',\
    msg:'Attack word in q',\
    logdata:'Matched Data: %{TX.0} found within %{MATCHED_VAR_NAME}: %{MATCHED_VAR}',\
    capture,tag:'attack-test',\
    setvar:'tx.blocking_inbound_anomaly_score=+5'"
SecRule ARGS:q "@contains quiet" \
    "id:1002,phase:2,pass,nolog,t:none,setvar:'tx.quiet=1'"
SecRule ARGS:q "@contains enforce" \
    "id:1003,phase:2,pass,log,t:none,severity:'CRITICAL',\
    msg:'Enforced word in q',logdata:'%{MATCHED_VAR}',\
    setvar:'tx.blocking_inbound_anomaly_score=+5'"
SecRuleUpdateActionById 1003 "ctl:ruleEngine=On"
SecRule TX:BLOCKING_INBOUND_ANOMALY_SCORE "@ge 5" \
    "id:1949,phase:2,deny,status:403,log,t:none,\
    msg:'Inbound Anomaly Score Exceeded (Total Score: %{TX.BLOCKING_INBOUND_ANOMALY_SCORE})'"
SecRule RESPONSE_BODY "@contains You have an error in your SQL syntax" \
    "id:1951,phase:4,pass,log,t:none,severity:'CRITICAL',msg:'SQL error leaked',\
    logdata:'Matched Data: %{MATCHED_VAR_NAME}',\
    setvar:'tx.blocking_outbound_anomaly_score=+5'"
SecRule RESPONSE_BODY "@contains Stack trace:" \
    "id:1952,phase:4,pass,log,t:none,msg:'Stack trace leaked',setvar:'tx.stack_leak=1'"
SecRuleUpdateActionById 1952 "ctl:ruleEngine=On"
SecRule TX:STACK_LEAK "@eq 1" \
    "id:1959,phase:4,deny,status:403,log,t:none,msg:'Outbound evaluation'"
"#;

fn ruleset() -> &'static Ruleset {
    let program = coraza_spoa::seclang::compile_text("audit_waf.conf", RULES, Path::new("."))
        .unwrap_or_else(|e| panic!("test rules compile: {e}"));
    Box::leak(Box::new(Ruleset::new(program).expect("test rules lower")))
}

/// A temp directory removed on drop (also when an assertion fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("coraza-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends one message through the inspector; returns the ACK's variables (name → value).
fn call(
    waf: &Waf,
    worker: &mut <Waf as Inspector>::Worker,
    name: &[u8],
    args: &[(&[u8], TypedData<'_>)],
) -> HashMap<String, Value> {
    let mut frame = Vec::new();
    NotifyWriter::new(&mut frame, 1, 1)
        .message(name, args)
        .expect("notify encodes");
    let (notify, _) = split_frame(&frame, 1 << 20)
        .expect("notify decodes")
        .expect("whole frame");
    let message = Messages::new(notify.payload)
        .next()
        .expect("one message")
        .expect("message decodes");
    let mut out = Vec::new();
    let mut ack = AckWriter::new(&mut out, 1, 1, 1 << 20);
    waf.inspect(worker, &message, &mut ack)
        .unwrap_or_else(|e| panic!("inspect: {e}"));
    let (frame, _) = split_frame(ack.frame(), 1 << 20)
        .expect("ack decodes")
        .expect("whole ack");
    let mut vars = HashMap::new();
    for action in AckActions::new(frame.payload) {
        if let Action::SetVar { scope, name, value } = action.expect("ack action decodes") {
            assert_eq!(scope, VarScope::Transaction);
            let v = match value {
                TypedData::String(b) | TypedData::Binary(b) => {
                    Value::String(String::from_utf8_lossy(b).into_owned())
                }
                TypedData::Int64(i) => Value::from(i),
                other => Value::String(format!("{other:?}")),
            };
            vars.insert(String::from_utf8_lossy(name).into_owned(), v);
        }
    }
    vars
}

fn request(
    waf: &Waf,
    w: &mut <Waf as Inspector>::Worker,
    path: &str,
    query: &str,
) -> HashMap<String, Value> {
    call(
        waf,
        w,
        b"coraza-req",
        &[
            (b"app", TypedData::String(b"shop")),
            (b"src-ip", TypedData::Ipv4(Ipv4Addr::new(192, 0, 2, 7))),
            (b"src-port", TypedData::Int64(40123)),
            (b"dst-ip", TypedData::Ipv4(Ipv4Addr::new(192, 0, 2, 1))),
            (b"dst-port", TypedData::Int64(443)),
            (b"method", TypedData::String(b"GET")),
            (b"path", TypedData::String(path.as_bytes())),
            (b"query", TypedData::String(query.as_bytes())),
            (b"version", TypedData::String(b"1.1")),
            (
                b"headers",
                TypedData::String(
                    b"host: shop.example\r\nuser-agent: audit-test\r\ncookie: sid=secret\r\n\r\n",
                ),
            ),
            (b"body", TypedData::Binary(b"")),
        ],
    )
}

fn config(audit_path: PathBuf, response_check: bool) -> Config {
    let mut c = Config {
        applications: vec![Application {
            name: "shop".into(),
            response_check,
        }],
        default_application: "shop".into(),
        ..Config::default()
    };
    c.audit.path = audit_path;
    c
}

fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("audit file");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid JSON line {l}: {e}")))
        .collect()
}

fn message_ids(ev: &Value) -> Vec<u64> {
    ev["messages"]
        .as_array()
        .expect("messages array")
        .iter()
        .map(|m| m["data"]["id"].as_u64().expect("message id"))
        .collect()
}

#[test]
fn n_logging_transactions_give_n_lines_and_nothing_else_is_written() {
    let dir = TempDir::new("audit-waf");
    let path = dir.0.join("audit.log");
    let cfg = config(path.clone(), false);
    let (audit, sender) = AuditLog::spawn(&cfg.audit).expect("audit writer starts");
    let waf = Waf::new(ruleset(), cfg, Some(sender));
    let mut w = waf.new_worker(0);

    // Interleave: N logging transactions, benign ones, nolog-only ones.
    const N: usize = 25;
    let mut logged: Vec<(String, usize)> = Vec::new(); // (transaction id, n)
    let mut silent: Vec<String> = Vec::new();
    for i in 0..N {
        let q = format!("q=an+attack+{i}&page={i}");
        let vars = request(&waf, &mut w, "/search", &q);
        assert!(!vars.contains_key("action"), "detection only: {vars:?}");
        assert_eq!(vars["rules_hit"], 2, "1001 and 1949 log: {vars:?}");
        assert_eq!(vars["anomaly_score"], 5);
        logged.push((vars["id"].as_str().unwrap().to_owned(), i));
        let vars = request(&waf, &mut w, "/search", &format!("q=benign+{i}"));
        assert_eq!(vars["rules_hit"], 0);
        silent.push(vars["id"].as_str().unwrap().to_owned());
        let vars = request(&waf, &mut w, "/search", "q=quiet+please");
        assert_eq!(
            vars["rules_hit"], 0,
            "nolog rule matched but does not count"
        );
        silent.push(vars["id"].as_str().unwrap().to_owned());
    }
    // One enforced transaction: denied, audited as such.
    let vars = request(&waf, &mut w, "/admin", "q=enforce+me");
    assert_eq!(vars["action"], "deny", "{vars:?}");
    assert_eq!(vars["status"], 403);
    assert_eq!(vars["ruleid"], 1949);
    let denied_id = vars["id"].as_str().unwrap().to_owned();

    drop(waf);
    audit.shutdown().expect("audit flushes");
    let lines = read_lines(&path);
    assert_eq!(lines.len(), N + 1, "one line per logging transaction");

    let by_id: HashMap<&str, &Value> = lines
        .iter()
        .map(|ev| {
            (
                ev["transaction"]["id"].as_str().expect("transaction id"),
                ev,
            )
        })
        .collect();
    assert_eq!(by_id.len(), N + 1, "transaction ids are unique");
    for id in &silent {
        assert!(
            !by_id.contains_key(id.as_str()),
            "{id} should not be audited"
        );
    }
    for (id, i) in &logged {
        let ev = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(message_ids(ev), [1001, 1949]);
        let m = &ev["messages"][0]["data"];
        assert_eq!(m["msg"], "Attack word in q");
        assert_eq!(ev["messages"][0]["message"], "Attack word in q");
        assert_eq!(
            m["data"],
            format!("Matched Data: attack found within ARGS:q: an attack {i}")
        );
        assert_eq!(m["matched_var"], "ARGS:q");
        assert_eq!(m["severity"], 2);
        assert_eq!(m["tags"][0], "attack-test");
        assert_eq!(m["phase"], 2);
        assert_eq!(
            ev["messages"][1]["data"]["msg"],
            "Inbound Anomaly Score Exceeded (Total Score: 5)"
        );
        let t = &ev["transaction"];
        assert_eq!(t["client_ip"], "192.0.2.7");
        assert_eq!(t["client_port"], 40123);
        assert_eq!(t["host_ip"], "192.0.2.1");
        assert_eq!(t["host_port"], 443);
        assert_eq!(t["request"]["method"], "GET");
        assert_eq!(
            t["request"]["uri"],
            format!("/search?q=an+attack+{i}&page={i}")
        );
        assert_eq!(t["request"]["http_version"], "1.1");
        assert_eq!(t["request"]["headers"]["host"][0], "shop.example");
        assert_eq!(
            t["request"]["headers"]["cookie"][0], "[redacted]",
            "secrets are redacted by default"
        );
        assert_eq!(t["is_interrupted"], false);
        assert_eq!(ev["action"], "log");
        assert_eq!(ev["rule_engine"], "DetectionOnly");
        assert_eq!(ev["anomaly_score"], 5);
        assert_eq!(ev["inbound_anomaly_score"], 5);
    }
    let ev = by_id[denied_id.as_str()];
    assert_eq!(message_ids(ev), [1003, 1949]);
    assert_eq!(ev["action"], "deny");
    assert_eq!(ev["rule_engine"], "On");
    assert_eq!(ev["interrupted_by"], 1949);
    assert_eq!(ev["status"], 403);
    assert_eq!(ev["anomaly_score"], 5);
    assert_eq!(ev["transaction"]["is_interrupted"], true);
    assert_eq!(ev["messages"][0]["data"]["data"], "enforce me");
}

#[test]
fn response_findings_are_audited_with_the_request_state() {
    let dir = TempDir::new("audit-waf-res");
    let path = dir.0.join("audit.log");
    let cfg = config(path.clone(), true);
    let (audit, sender) = AuditLog::spawn(&cfg.audit).expect("audit writer starts");
    let waf = Waf::new(ruleset(), cfg, Some(sender));
    // The response may reach another worker than the request: use two.
    let mut w0 = waf.new_worker(0);
    let mut w1 = waf.new_worker(1);

    let page = b"<html><body>You have an error in your SQL syntax; check the manual</body></html>";
    let mut ids = Vec::new();
    for (query, body) in [
        ("q=an+attack", &page[..]),        // request and response findings
        ("q=hello", &page[..]),            // response finding only
        ("q=hello", b"<html>fine</html>"), // nothing
    ] {
        let req = request(&waf, &mut w0, "/item", query);
        let id = req["id"].as_str().unwrap().to_owned();
        let state = req["state"]
            .as_str()
            .expect("state for response_check")
            .to_owned();
        let res = call(
            &waf,
            &mut w1,
            b"coraza-res",
            &[
                (b"app", TypedData::String(b"shop")),
                (b"id", TypedData::String(id.as_bytes())),
                (b"version", TypedData::String(b"1.1")),
                (b"status", TypedData::Int64(500)),
                (
                    b"headers",
                    TypedData::String(b"content-type: text/html\r\n\r\n"),
                ),
                (b"body", TypedData::Binary(body)),
                (b"state", TypedData::String(state.as_bytes())),
                (b"detect-only", TypedData::Bool(false)),
            ],
        );
        assert!(!res.contains_key("action"), "detection only: {res:?}");
        ids.push((id, req, res));
    }
    drop(waf);
    audit.shutdown().expect("audit flushes");
    let lines = read_lines(&path);
    let count = |id: &str| {
        lines
            .iter()
            .filter(|ev| ev["transaction"]["id"] == id)
            .collect::<Vec<_>>()
    };
    // Attack + leak: one line for the request phases, one for the response phases.
    let first = count(&ids[0].0);
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(message_ids(first[0]), [1001, 1949]);
    assert_eq!(message_ids(first[1]), [1951]);
    assert_eq!(first[1]["transaction"]["response"]["status"], 500);
    assert_eq!(first[1]["action"], "log");
    // The response evaluation started from the request's state: inbound score carried over.
    assert_eq!(first[1]["inbound_anomaly_score"], 5);
    assert_eq!(first[1]["outbound_anomaly_score"], 5);
    assert_eq!(ids[0].2["anomaly_score"], 5);
    // Leak only: the response line alone.
    let second = count(&ids[1].0);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(message_ids(second[0]), [1951]);
    assert_eq!(second[0]["inbound_anomaly_score"], 0);
    // Nothing: no line.
    assert!(count(&ids[2].0).is_empty());
    assert_eq!(lines.len(), 3);
}

#[test]
fn detect_only_turns_an_enforced_response_rule_into_a_log() {
    let dir = TempDir::new("audit-waf-detect-only");
    let path = dir.0.join("audit.log");
    let cfg = config(path.clone(), true);
    let (audit, sender) = AuditLog::spawn(&cfg.audit).expect("audit writer starts");
    let waf = Waf::new(ruleset(), cfg, Some(sender));
    let mut w = waf.new_worker(0);
    let mut outcomes = Vec::new();
    for detect_only in [false, true] {
        let req = request(&waf, &mut w, "/item", "q=hello");
        let id = req["id"].as_str().unwrap().to_owned();
        let state = req["state"].as_str().unwrap().to_owned();
        let res = call(
            &waf,
            &mut w,
            b"coraza-res",
            &[
                (b"app", TypedData::String(b"shop")),
                (b"id", TypedData::String(id.as_bytes())),
                (b"version", TypedData::String(b"1.1")),
                (b"status", TypedData::Int64(500)),
                (
                    b"headers",
                    TypedData::String(b"content-type: text/plain\r\n\r\n"),
                ),
                (
                    b"body",
                    TypedData::Binary(b"Stack trace: at com.example.Main(Main.java:1)"),
                ),
                (b"state", TypedData::String(state.as_bytes())),
                (b"detect-only", TypedData::Bool(detect_only)),
            ],
        );
        outcomes.push((id, res));
    }
    drop(waf);
    audit.shutdown().expect("audit flushes");
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 2);

    let (enforced_id, enforced) = &outcomes[0];
    assert_eq!(enforced["action"], "deny", "{enforced:?}");
    assert_eq!(enforced["status"], 403);
    assert_eq!(enforced["ruleid"], 1959);
    let ev = &lines[0];
    assert_eq!(ev["transaction"]["id"], enforced_id.as_str());
    assert_eq!(message_ids(ev), [1952, 1959]);
    assert_eq!(ev["action"], "deny");
    assert_eq!(ev["rule_engine"], "On");

    let (observed_id, observed) = &outcomes[1];
    assert!(
        !observed.contains_key("action"),
        "detect-only: {observed:?}"
    );
    let ev = &lines[1];
    assert_eq!(ev["transaction"]["id"], observed_id.as_str());
    assert_eq!(message_ids(ev), [1952, 1959]);
    assert_eq!(ev["action"], "log");
    assert_eq!(ev["rule_engine"], "DetectionOnly");
}
