//! Engine semantics on small rule sets (the CRS regression suite covers CRS itself).

use std::path::Path;

use super::{InterruptAction, Ruleset, Transaction};
use crate::seclang::compile_text;

/// Rules evaluated in detection mode unless the text sets `SecRuleEngine` itself (ModSecurity's
/// default is Off, which evaluates nothing).
fn ruleset(rules: &str) -> Ruleset {
    let text = if rules.contains("SecRuleEngine") {
        rules.to_string()
    } else {
        format!("SecRuleEngine DetectionOnly\n{rules}")
    };
    Ruleset::new(compile_text("t.conf", &text, Path::new(".")).expect("compile")).expect("lower")
}

fn run<'r>(tx: &mut Transaction<'r>, uri: &str) {
    tx.reset();
    tx.set_connection("192.0.2.1", 1234, "192.0.2.2", 80);
    tx.set_request_line(b"GET", uri.as_bytes(), b"1.1");
    tx.add_request_header(b"Host", b"example.com");
    tx.process_request();
}

fn ids(tx: &Transaction<'_>) -> Vec<u32> {
    tx.matched_rules().iter().map(|m| m.id).collect()
}

#[test]
fn engine_off_evaluates_nothing() {
    let rs = ruleset("SecRuleEngine Off\nSecRule ARGS \"@rx .\" \"id:1,phase:1,deny\"\n");
    let mut tx = Transaction::new(&rs);
    run(&mut tx, "/?a=1");
    assert!(ids(&tx).is_empty());
}

#[test]
fn redirect_target_is_expanded_afresh_each_time() {
    let rs = ruleset(
        "SecRuleEngine On\n\
         SecRule ARGS:to \"@rx ^(\\w+)$\" \"id:1,phase:1,capture,msg:'m %{TX.1}',redirect:/go/%{TX.1}\"\n",
    );
    let mut tx = Transaction::new(&rs);
    for target in ["first", "second"] {
        run(&mut tx, &format!("/?to={target}"));
        let i = tx.interruption().expect("redirect");
        assert_eq!((i.action, i.status), (InterruptAction::Redirect, 302));
        assert_eq!(i.data, format!("/go/{target}"));
    }
}

#[test]
fn detection_only_logs_but_never_interrupts() {
    let rs = ruleset(
        "SecRuleEngine DetectionOnly\nSecRule ARGS \"@rx evil\" \"id:1,phase:1,deny,status:403\"\n",
    );
    let mut tx = Transaction::new(&rs);
    run(&mut tx, "/?a=evil");
    assert_eq!(ids(&tx), vec![1]);
    assert!(tx.interruption().is_none());
}

#[test]
fn ctl_rule_engine_on_enforces_later_rules_of_the_same_transaction() {
    let rs = ruleset(
        "SecRuleEngine DetectionOnly\n\
         SecRule ARGS \"@rx trigger\" \"id:1,phase:1,pass,ctl:ruleEngine=On\"\n\
         SecRule ARGS \"@rx .\" \"id:2,phase:1,deny,status:418\"\n",
    );
    let mut tx = Transaction::new(&rs);
    run(&mut tx, "/?a=x");
    assert!(
        tx.interruption().is_none(),
        "rule 2 matched but the engine is detect-only"
    );
    run(&mut tx, "/?a=trigger");
    assert_eq!(
        tx.interruption().map(|i| (i.rule_id, i.status)),
        Some((2, 418))
    );
}

#[test]
fn chain_head_actions_run_even_when_the_chain_fails() {
    // ModSecurity semantics CRS relies on: non-disruptive actions run per matching value.
    let rs = ruleset(
        "SecRule ARGS \"@rx a\" \"id:1,phase:1,pass,setvar:tx.head=+1,chain\"\n\
         SecRule ARGS \"@rx zzz\" \"setvar:tx.tail=1\"\n",
    );
    let mut tx = Transaction::new(&rs);
    run(&mut tx, "/?x=a&y=aa");
    assert_eq!(tx.tx_int("head"), 2, "once per matching value");
    assert_eq!(tx.tx_int("tail"), 0);
    assert!(ids(&tx).is_empty(), "the rule as a whole did not match");
}

#[test]
fn skip_after_and_markers() {
    let rs = ruleset(
        "SecRule ARGS \"@rx .\" \"id:1,phase:1,pass,nolog,skipAfter:END\"\n\
         SecRule ARGS \"@rx .\" \"id:2,phase:1,pass\"\n\
         SecMarker END\n\
         SecRule ARGS \"@rx .\" \"id:3,phase:1,pass\"\n",
    );
    let mut tx = Transaction::new(&rs);
    run(&mut tx, "/?a=1");
    assert_eq!(
        tx.matched_rules()
            .iter()
            .filter(|m| m.log)
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        vec![3]
    );
}

#[test]
fn captures_and_matched_var_name() {
    let rs = ruleset("SecRule ARGS \"@rx (b+)\" \"id:1,phase:1,pass,capture,logdata:'%{TX.1} in %{MATCHED_VAR_NAME}'\"\n");
    let mut tx = Transaction::new(&rs);
    run(&mut tx, "/?q=abbbc");
    assert_eq!(tx.matched_rules()[0].data, "bbb in ARGS:q");
}

#[test]
fn logged_text_and_values_are_cut_on_a_character_boundary() {
    let rs = ruleset(
        "SecRule ARGS \"@rx x\" \"id:1,phase:1,pass,msg:'m %{MATCHED_VAR}',logdata:'Matched %{MATCHED_VAR}'\"\n",
    );
    let mut tx = Transaction::new(&rs);
    // 'é' is two bytes (%C3%A9): after one leading 'x', every cut point falls inside one.
    run(&mut tx, &format!("/?q=x{}", "%C3%A9".repeat(5000)));
    let m = &tx.matched_rules()[0];
    assert!(m.data.starts_with("Matched xéé"), "{:.40}", m.data);
    assert!(
        m.data.len() <= 1024 && m.data.len() > 1000,
        "{}",
        m.data.len()
    );
    assert!(m.msg.len() <= 1024 && m.msg.len() > 1000, "{}", m.msg.len());
    assert!(
        m.value.len() <= 256 && m.value.len() > 250,
        "{}",
        m.value.len()
    );
    for s in [&m.data, &m.msg, &m.value] {
        assert!(!s.contains('\u{fffd}'), "cut inside a character: {s:.40}");
    }
}

/// A value read before it is set (REQUEST_BODY in phase 1 is empty) must not leave its empty
/// transformations or prefilter scans behind for the phases that see it set: `t:length` of the
/// empty phase-1 value was "0", and phase 2 used to reuse it.
#[test]
fn request_body_read_in_phase_1_is_seen_afresh_in_phase_2() {
    let rs = ruleset(
        "SecRequestBodyAccess On\n\
         SecRule REQUEST_BODY \"@rx evilword\" \"id:1,phase:1,pass,log,t:lowercase\"\n\
         SecRule REQUEST_BODY \"@lt 0\" \"id:4,phase:1,pass,log,t:length\"\n\
         SecRule REQUEST_BODY \"@rx evilword\" \"id:2,phase:2,pass,log,t:lowercase\"\n\
         SecRule REQUEST_BODY \"@rx evilword\" \"id:3,phase:2,pass,log,t:none\"\n\
         SecRule REQUEST_BODY \"@gt 5\" \"id:5,phase:2,pass,log,t:length\"\n",
    );
    let mut tx = Transaction::new(&rs);
    tx.reset();
    tx.set_connection("192.0.2.1", 1234, "192.0.2.2", 80);
    tx.set_request_line(b"POST", b"/", b"1.1");
    tx.add_request_header(b"Host", b"example.com");
    tx.add_request_header(b"Content-Type", b"application/x-www-form-urlencoded");
    tx.set_request_body(b"a=evilword");
    tx.process_request();
    assert_eq!(ids(&tx), vec![2, 3, 5]);
}

#[test]
fn ctl_removal_by_id_range_and_target() {
    let rs = ruleset(
        "SecRule REQUEST_URI \"@rx remove\" \"id:1,phase:1,pass,nolog,ctl:ruleRemoveById=10-19,ctl:ruleRemoveTargetById=20;ARGS:q\"\n\
         SecRule ARGS \"@rx x\" \"id:15,phase:1,pass\"\n\
         SecRule ARGS \"@rx x\" \"id:20,phase:1,pass\"\n",
    );
    let mut tx = Transaction::new(&rs);
    run(&mut tx, "/?q=x&r=x");
    assert_eq!(
        tx.matched_rules().iter().filter(|m| m.log).count(),
        4,
        "15 and 20 on both args"
    );
    run(&mut tx, "/remove?q=x&r=x");
    let hits: Vec<_> = tx
        .matched_rules()
        .iter()
        .filter(|m| m.log)
        .map(|m| (m.id, m.var_name.clone()))
        .collect();
    assert_eq!(hits, vec![(20, "ARGS:r".to_string())]);
}
