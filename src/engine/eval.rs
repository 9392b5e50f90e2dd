//! Rule evaluation: phases, chains, matching, actions.
//!
//! Semantics (ModSecurity v2 / Coraza, which CRS relies on):
//! - Rules run in configuration order within a phase; `skipAfter` skips to the named marker,
//!   `skip:n` skips the next n rules; both work in every engine mode.
//! - A rule is evaluated target by target, value by value; each value goes through the rule's
//!   transformation pipeline (with `multiMatch`, the operator also runs before and after every
//!   step). Every matching value sets MATCHED_VAR(S)/_NAME(S), captures into TX:0–9 when the
//!   rule has `capture`, and runs the rule's non-disruptive actions (`setvar`, `ctl`) at once,
//!   even when a later chain link fails.
//! - A chain link runs only when the previous link matched; the rule matches when every link
//!   did. Then the flow actions run, the match is recorded (message and data expanded), and the
//!   disruptive action takes effect only when the engine is On for this transaction.

use std::io::Write;

use super::operators::{self, CompiledOp};
use super::ruleset::{
    CDisruptive, CEffect, CKey, CLink, CMacro, CPart, CRule, CSelector, CTarget, Ruleset,
};
use super::transaction::{
    InterruptAction, Interruption, MatchedRule, RequestData, State, Transaction,
};
use super::variables::{self, ExtraExclusion, KeySrc, ValueRef};
use crate::seclang::ir::{AllowScope, Ctl, RuleEngineMode, SetVarOp, Variable};

/// At most this many matches are recorded per transaction (memory bound on hostile input).
const MAX_RECORDED_MATCHES: usize = 512;
/// Logged values are cut to this many bytes.
const MAX_LOGGED_VALUE: usize = 256;
/// Expanded `msg` and `logdata` are cut to this many bytes: CRS's `logdata` repeats the whole
/// matched value, so one huge argument would otherwise put megabytes into every match of the
/// audit event (and cost the worker a copy and a UTF-8 check per match).
const MAX_LOGGED_TEXT: usize = 1024;

/// A target removed from some rules by `ctl:ruleRemoveTarget*` for this transaction.
#[derive(Debug, Clone)]
pub(crate) struct RemovedTarget {
    pub rules: RuleSelector,
    pub var: Variable,
    pub key: Option<Vec<u8>>,
    pub xpath: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum RuleSelector {
    Ids(Vec<(u32, u32)>),
    Tag(String),
    Msg(String),
}

/// Per-transaction prefilter results: for each (source, node) pair, the OR of the rule bits
/// lit by its values; computed on first need in each phase (sources grow when the body is
/// parsed). Scans are shared by every node that yields the same bytes.
#[derive(Default)]
pub(crate) struct PrefilterState {
    words: usize,
    done: Vec<bool>,
    bits: Vec<u64>,
    /// Per value slot: scan results per location (offsets in `raw_store`), so the same bytes
    /// are scanned once however many pipelines produce them.
    slot_scans: Vec<Vec<(super::cache::Loc, u32)>>,
    /// Slots whose `slot_scans` entry is in use this transaction.
    slots_used: usize,
    raw_store: Vec<u64>,
    /// `node_scan[slot * nodes + node]`: offset in `raw_store` of that value's bits at that
    /// node, or `u32::MAX` until known. Spares the per-value gate (`value_possible`) the
    /// transformation-cache and scan lookups it would repeat for every rule it gates.
    node_scan: Vec<u32>,
    nodes: usize,
    scratch: Vec<u64>,
    seen: super::prefilter::ScanScratch,
}

impl PrefilterState {
    pub fn new(rs: &Ruleset) -> PrefilterState {
        let words = rs.prefilter_words();
        PrefilterState {
            words,
            done: vec![false; rs.source_nodes.len()],
            bits: vec![0; rs.source_nodes.len() * words],
            slot_scans: Vec::new(),
            slots_used: 0,
            raw_store: Vec::new(),
            node_scan: Vec::new(),
            nodes: rs.pipelines.len(),
            scratch: vec![0; words],
            seen: Default::default(),
        }
    }

    pub fn clear(&mut self) {
        self.new_phase();
        for s in &mut self.slot_scans[..self.slots_used] {
            s.clear();
        }
        self.slots_used = 0;
        self.raw_store.clear();
        self.node_scan.clear();
    }

    fn new_phase(&mut self) {
        self.done.iter_mut().for_each(|d| *d = false);
    }
}

/// Whether the prefilter allows rule `info` to match at all in this phase: every one of its
/// literal sets is lit by some value of its sources.
fn possible(t: &mut Transaction<'_>, info: &super::ruleset::PrefilterInfo) -> bool {
    if t.rs.prefilter().is_none() {
        return true;
    }
    let words = t.sc.pf.words;
    for &sn in &info.sources {
        if !t.sc.pf.done[sn as usize] {
            compute_source_node(t, sn);
        }
    }
    info.bits.iter().all(|&bit| {
        let (w, b) = ((bit / 64) as usize, 1u64 << (bit % 64));
        info.sources
            .iter()
            .any(|&sn| t.sc.pf.bits[sn as usize * words + w] & b != 0)
    })
}

fn compute_source_node(t: &mut Transaction<'_>, sn: u32) {
    let rs = t.rs;
    let Some(prefilter) = rs.prefilter() else {
        return;
    };
    let words = t.sc.pf.words;
    let (source, node) = rs.source_nodes[sn as usize];
    let mut acc = std::mem::take(&mut t.sc.pf.scratch);
    acc.iter_mut().for_each(|x| *x = 0);
    let mut refs = std::mem::take(&mut t.sc.values);
    refs.clear();
    variables::for_each_source_value(&t.req, source, |v| refs.push(v));
    for vr in &refs {
        let raw = variables::bytes(&t.req, &[], vr);
        if raw.is_empty() {
            continue;
        }
        match vr.cache_key() {
            Some(k) => {
                let slot = t.cache.slot(k);
                let off = node_bits(t, prefilter, slot, vr, node);
                super::prefilter::or_into(&mut acc, &t.sc.pf.raw_store[off..off + words]);
            }
            None => {
                let loc = t.cache.transform(&rs.pipelines, None, raw, node);
                let value = t.cache.get(raw, loc);
                match prefilter.for_source(source.index()) {
                    Some(p) => p.scan(value, &mut acc, &mut t.sc.pf.seen),
                    None => acc.iter_mut().for_each(|x| *x = u64::MAX),
                }
            }
        }
    }
    let pf = &mut t.sc.pf;
    pf.bits[sn as usize * words..(sn as usize + 1) * words].copy_from_slice(&acc);
    pf.done[sn as usize] = true;
    pf.scratch = acc;
    refs.clear();
    t.sc.values = refs;
}

/// Offset in `raw_store` of the rule bits lit by value `vr` (in `slot`) after pipeline `node`:
/// transformed and scanned on first need, then remembered per (slot, node).
#[inline]
fn node_bits(
    t: &mut Transaction<'_>,
    prefilter: &super::prefilter::Prefilters,
    slot: super::cache::Slot,
    vr: &ValueRef,
    node: u32,
) -> usize {
    let pf = &t.sc.pf;
    let at = slot as usize * pf.nodes + node as usize;
    match pf.node_scan.get(at) {
        Some(&known) if known != u32::MAX => known as usize,
        _ => node_bits_first(t, prefilter, slot, vr, node, at),
    }
}

#[inline(never)]
fn node_bits_first(
    t: &mut Transaction<'_>,
    prefilter: &super::prefilter::Prefilters,
    slot: super::cache::Slot,
    vr: &ValueRef,
    node: u32,
    at: usize,
) -> usize {
    let pf = &mut t.sc.pf;
    if pf.node_scan.len() <= at {
        let slots = slot as usize + 1;
        pf.node_scan.resize(slots * pf.nodes, u32::MAX);
    }
    // Values with a cache key live in the request, never in `temp`.
    let raw = variables::bytes(&t.req, &[], vr);
    let loc = t.cache.transform_slot(&t.rs.pipelines, slot, raw, node);
    let off = value_bits(t, prefilter, slot, vr, loc);
    t.sc.pf.node_scan[at] = off as u32;
    off
}

/// Offset in `raw_store` of the rule bits lit by value `vr` at location `loc` (scanned once per
/// distinct content, up to ASCII case, of each value and transaction).
fn value_bits(
    t: &mut Transaction<'_>,
    prefilter: &super::prefilter::Prefilters,
    slot: super::cache::Slot,
    vr: &ValueRef,
    loc: super::cache::Loc,
) -> usize {
    let slot = slot as usize;
    let pf = &mut t.sc.pf;
    if pf.slot_scans.len() <= slot {
        pf.slot_scans.resize_with(slot + 1, Vec::new);
    }
    pf.slots_used = pf.slots_used.max(slot + 1);
    if let Some(&(_, o)) = pf.slot_scans[slot].iter().find(|e| e.0 == loc) {
        return o as usize;
    }
    let raw = variables::bytes(&t.req, &[], vr);
    let value = t.cache.get(raw, loc);
    // Different pipelines often yield the same bytes up to ASCII case (a lowercase step in
    // the middle, a normalisation with nothing to do): the scan ignores case, so reuse it.
    let same = pf.slot_scans[slot]
        .iter()
        .find(|e| t.cache.get(raw, e.0).eq_ignore_ascii_case(value));
    let o = match same {
        Some(&(_, o)) => o as usize,
        None => {
            let words = pf.words;
            let o = pf.raw_store.len();
            pf.raw_store.resize(o + words, 0);
            let bits = &mut pf.raw_store[o..o + words];
            // Values reaching here have a cache key (see `node_bits_first`).
            let source = vr.cache_key().map(variables::source_index);
            match source.and_then(|s| prefilter.for_source(s)) {
                Some(p) => p.scan(value, bits, &mut pf.seen),
                None => bits.iter_mut().for_each(|x| *x = u64::MAX),
            }
            o
        }
    };
    pf.slot_scans[slot].push((loc, o as u32));
    o
}

/// Whether value `vr` can match the prefiltered rule `info`: one of the rule's literals occurs
/// in the value at one of the nodes the rule tests it at. Values without a stable identity
/// (state, counts) are always tested.
fn value_possible(
    t: &mut Transaction<'_>,
    info: &super::ruleset::PrefilterInfo,
    vr: &ValueRef,
) -> bool {
    let rs = t.rs;
    let (Some(prefilter), Some(k)) = (rs.prefilter(), vr.cache_key()) else {
        return true;
    };
    let slot = t.cache.slot(k);
    for &node in &info.nodes {
        let off = node_bits(t, prefilter, slot, vr, node);
        let row = &t.sc.pf.raw_store[off..];
        if info
            .bits
            .iter()
            .all(|&bit| row[(bit / 64) as usize] & (1u64 << (bit % 64)) != 0)
        {
            return true;
        }
    }
    false
}

pub(crate) fn run_phase(t: &mut Transaction<'_>, phase: u8) {
    let rs = t.rs;
    t.sc.pf.new_phase();
    for &ri in &rs.phases[usize::from(phase)] {
        if t.st.interruption.is_some() && phase != 5 {
            break;
        }
        let rule = &rs.rules[ri as usize];
        if let Some(m) = rule.marker {
            if t.st.skip_after == Some(m) {
                t.st.skip_after = None;
            }
            continue;
        }
        if t.st.skip_after.is_some() {
            continue;
        }
        if t.st.skip > 0 {
            t.st.skip -= 1;
            continue;
        }
        match t.st.allow {
            Some(AllowScope::Transaction) => break,
            Some(AllowScope::Phase) => break,
            Some(AllowScope::Request) if phase <= 2 => break,
            _ => {}
        }
        if is_removed(&t.st, rule) {
            continue;
        }
        t.st.matched_vars.clear();
        eval_rule(t, ri, rule, phase);
    }
    if t.st.allow == Some(AllowScope::Phase)
        || (t.st.allow == Some(AllowScope::Request) && phase == 2)
    {
        t.st.allow = None;
    }
    t.st.skip = 0;
}

fn is_removed(st: &State, rule: &CRule) -> bool {
    if rule.id != 0
        && st
            .removed_ranges
            .iter()
            .any(|&(a, b)| a <= rule.id && rule.id <= b)
    {
        return true;
    }
    if !st.removed_tags.is_empty() && rule.tags.iter().any(|t| st.removed_tags.contains(t)) {
        return true;
    }
    false
}

fn rule_selected(sel: &RuleSelector, rule: &CRule, rs: &Ruleset) -> bool {
    let _ = rs;
    match sel {
        RuleSelector::Ids(r) => {
            rule.id != 0 && r.iter().any(|&(a, b)| a <= rule.id && rule.id <= b)
        }
        RuleSelector::Tag(t) => rule.tags.iter().any(|x| x == t),
        RuleSelector::Msg(m) => rule.msg.as_ref().and_then(|x| x.literal()) == Some(m.as_bytes()),
    }
}

fn eval_rule(t: &mut Transaction<'_>, ri: u32, rule: &CRule, phase: u8) {
    // The prefilter first: most rules stop here, without touching their links.
    if let Some(info) = &rule.prefilter {
        if !possible(t, info) {
            return;
        }
    }
    let chained = rule.links.len() > 1;
    for li in 0..rule.links.len() {
        if !eval_link(t, ri, rule, li, chained) {
            return;
        }
    }
    // The whole rule matched.
    if chained || rule.links.first().is_some_and(|l| l.is_action) {
        record(t, ri, rule, phase);
    }
    if rule.skip > 0 {
        t.st.skip = rule.skip;
    }
    if let Some(m) = rule.skip_after {
        t.st.skip_after = Some(m);
    }
    let on = t.st.engine.unwrap_or(t.rs.settings.rule_engine) == RuleEngineMode::On;
    match &rule.disruptive {
        CDisruptive::Pass => {}
        CDisruptive::Allow(scope) => {
            if on {
                t.st.allow = Some(*scope);
            }
        }
        d @ (CDisruptive::Deny | CDisruptive::Drop | CDisruptive::Redirect(_)) => {
            if on && t.st.interruption.is_none() {
                let (action, data) = match d {
                    CDisruptive::Deny => (InterruptAction::Deny, String::new()),
                    CDisruptive::Drop => (InterruptAction::Drop, String::new()),
                    CDisruptive::Redirect(m) => {
                        let mut out = std::mem::take(&mut t.sc.expand);
                        out.clear();
                        expand(t.rs, &t.req, &t.st, m, &mut t.sc.temp, &mut out);
                        let s = String::from_utf8_lossy(&out).into_owned();
                        t.sc.expand = out;
                        (InterruptAction::Redirect, s)
                    }
                    _ => unreachable!("matched above"),
                };
                let default_status = if action == InterruptAction::Redirect {
                    302
                } else {
                    403
                };
                t.st.interruption = Some(Interruption {
                    rule_id: rule.id,
                    action,
                    status: rule.status.unwrap_or(default_status),
                    data,
                });
            }
        }
    }
}

/// Evaluates one link; returns whether it matched.
fn eval_link(t: &mut Transaction<'_>, ri: u32, rule: &CRule, li: usize, chained: bool) -> bool {
    let rs = t.rs;
    let link = &rule.links[li];
    if link.is_action {
        run_effects(t, link);
        return true;
    }
    // Gather the values to test.
    let mut values = std::mem::take(&mut t.sc.values);
    values.clear();
    t.sc.temp.clear();
    for target in &link.targets {
        let mut extra: Vec<ExtraExclusion<'_>> = Vec::new();
        let mut skip_target = false;
        if li == 0 && !t.st.removed_targets.is_empty() {
            for rt in &t.st.removed_targets {
                if rt.var != target.var || !rule_selected(&rt.rules, rule, rs) {
                    continue;
                }
                match (&rt.key, &rt.xpath) {
                    (None, None) => skip_target = true,
                    (_, Some(x)) => {
                        let is_attr = matches!(target.sel, CSelector::XmlAttr);
                        if (x == "//@*") == is_attr {
                            skip_target = true;
                        }
                    }
                    (Some(k), None) => extra.push(ExtraExclusion::Key(k)),
                }
            }
        }
        if skip_target {
            continue;
        }
        variables::collect(
            rs,
            &t.req,
            &t.st,
            target,
            &extra,
            &mut t.sc.rx,
            &mut t.sc.temp,
            &mut values,
        );
    }
    // Expand the operator argument once per link.
    let mut arg = std::mem::take(&mut t.sc.arg);
    arg.clear();
    if let Some(m) = &link.op_arg {
        let mut scratch = std::mem::take(&mut t.sc.expand);
        expand(rs, &t.req, &t.st, m, &mut scratch, &mut arg);
        t.sc.expand = scratch;
    }
    let mut matched = false;
    let n_steps = if link.multi_match {
        link.pipeline_steps.len() + 1
    } else {
        1
    };
    let gate = if li == 0 {
        rule.prefilter.as_ref()
    } else {
        None
    };
    for vr in &values {
        if let Some(info) = gate {
            if !value_possible(t, info, vr) {
                continue;
            }
        }
        let key = vr.cache_key();
        let mut prev: Option<super::cache::Loc> = None;
        for step in 0..n_steps {
            let node = match (link.multi_match, step) {
                (false, _) => link.pipeline,
                (true, 0) => 0,
                (true, s) => link.pipeline_steps[s - 1],
            };
            let raw = variables::bytes(&t.req, &t.sc.temp, vr);
            let loc = t.cache.transform(&rs.pipelines, key, raw, node);
            // multiMatch: only re-test when the step changed the value.
            if link.multi_match && prev == Some(loc) {
                continue;
            }
            prev = Some(loc);
            let value = t.cache.get(raw, loc);
            let found = operator(rs, link, value, &arg, &mut t.sc.rx);
            if found.is_some() != link.negated {
                matched = true;
                let mut copy = std::mem::take(&mut t.sc.matched);
                copy.clear();
                copy.extend_from_slice(value);
                on_match(t, ri, rule, li, link, vr, &copy, found.as_ref(), chained);
                t.sc.matched = copy;
            }
        }
    }
    t.sc.arg = arg;
    values.clear();
    t.sc.values = values;
    matched
}

/// Runs the operator; `Some` with the match information when it matched (before negation).
fn operator(
    rs: &Ruleset,
    link: &CLink,
    value: &[u8],
    arg: &[u8],
    rx: &mut operators::rx::RegexCaches,
) -> Option<operators::MatchInfo> {
    use operators::MatchInfo;
    let span = |s: Option<(usize, usize)>| {
        s.map(|s| MatchInfo {
            span: Some(s),
            text: None,
        })
    };
    match &link.op {
        CompiledOp::Rx(i) => {
            // The earliest-match test is much cheaper than a capturing search; most candidate
            // values do not match, so capture only after a match is known.
            if !rs.regexes.is_match(*i, rx, value) {
                None
            } else if link.capture {
                rs.regexes.captures(*i, rx, value).map(|s| MatchInfo {
                    span: Some(s),
                    text: None,
                })
            } else {
                Some(MatchInfo::default())
            }
        }
        CompiledOp::Pm(i) => span(rs.phrase_sets.find(*i, value)),
        CompiledOp::Num(op) => operators::numeric(*op, value, arg).then(MatchInfo::default),
        CompiledOp::Str(op) => span(operators::string(*op, value, arg)),
        CompiledOp::ByteRange(set) => span(operators::byte_range(set, value)),
        CompiledOp::IpMatch(nets) => operators::ip_match(nets, value).then(MatchInfo::default),
        CompiledOp::ValidateUrlEncoding => span(operators::invalid_url_encoding(value)),
        CompiledOp::ValidateUtf8Encoding => span(operators::invalid_utf8(value)),
        CompiledOp::DetectSqli => operators::detect_sqli(value).map(|fp| MatchInfo {
            span: None,
            text: Some(fp),
        }),
        CompiledOp::DetectXss => operators::detect_xss(value).then(MatchInfo::default),
        CompiledOp::Unconditional => Some(MatchInfo::default()),
        CompiledOp::NoMatch => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn on_match(
    t: &mut Transaction<'_>,
    ri: u32,
    rule: &CRule,
    li: usize,
    link: &CLink,
    vr: &ValueRef,
    value: &[u8],
    found: Option<&operators::MatchInfo>,
    chained: bool,
) {
    // MATCHED_VAR, MATCHED_VAR_NAME, MATCHED_VARS.
    let st = &mut t.st;
    st.matched_var.clear();
    st.matched_var.extend_from_slice(value);
    let mut name = std::mem::take(&mut st.matched_var_name);
    variables::write_name(&t.req, &t.sc.temp, vr, &mut name);
    st.matched_vars.push(&name, value);
    st.matched_var_name = name;

    // Captures into TX:0..9.
    if link.capture {
        if let Some(info) = found {
            capture(t, link, value, info);
        }
    }
    run_effects(t, link);

    // A single-link rule records each matching value, with message and data expanded now.
    if !chained && li == 0 {
        record(t, ri, rule, rule.phase);
    }
}

fn capture(t: &mut Transaction<'_>, link: &CLink, value: &[u8], info: &operators::MatchInfo) {
    let rs = t.rs;
    let slots = rs.capture_slots;
    match (&link.op, info) {
        (CompiledOp::Rx(i), _) => {
            let Some(caps) = t.sc.rx.last_captures(*i) else {
                return;
            };
            let n = caps.group_len().min(10);
            for (g, &slot) in slots.iter().enumerate() {
                if g < n {
                    let v = caps
                        .get_group(g)
                        .map(|s| &value[s.start..s.end])
                        .unwrap_or(&[]);
                    t.st.tx.set_slot(slot, v);
                } else {
                    t.st.tx.delete_slot(slot);
                }
            }
        }
        (
            _,
            operators::MatchInfo {
                text: Some(text), ..
            },
        ) => {
            t.st.tx.set_slot(slots[0], text);
        }
        (
            _,
            operators::MatchInfo {
                span: Some((s, e)), ..
            },
        ) => {
            t.st.tx.set_slot(slots[0], &value[*s..*e]);
        }
        _ => {}
    }
}

/// Runs a link's `setvar` / `ctl` / `initcol` actions in the order written.
fn run_effects(t: &mut Transaction<'_>, link: &CLink) {
    for e in &link.effects {
        match e {
            CEffect::SetVar {
                collection,
                key,
                op,
                value,
            } => setvar(t, *collection, key, *op, value),
            CEffect::Ctl(c) => ctl(t, c),
            CEffect::InitCol => {}
        }
    }
}

fn setvar(t: &mut Transaction<'_>, collection: Variable, key: &CKey, op: SetVarOp, value: &CMacro) {
    let rs = t.rs;
    // Scratch buffers are taken and put back, so a steady-state setvar allocates nothing.
    let mut val = std::mem::take(&mut t.sc.expand);
    let mut scratch = std::mem::take(&mut t.sc.key);
    let mut keybuf = std::mem::take(&mut t.sc.setvar_key);
    val.clear();
    keybuf.clear();
    if op != SetVarOp::Delete {
        expand(rs, &t.req, &t.st, value, &mut scratch, &mut val);
    }
    // Resolve the key.
    let slot = match key {
        CKey::Slot(s) => Some(*s),
        CKey::Literal(k) => {
            keybuf.extend_from_slice(k);
            None
        }
        CKey::Dynamic(m) => {
            expand(rs, &t.req, &t.st, m, &mut scratch, &mut keybuf);
            keybuf.make_ascii_lowercase();
            if collection == Variable::Tx {
                rs.tx_slot(&keybuf)
            } else {
                None
            }
        }
    };
    if collection == Variable::Tx {
        if matches!(op, SetVarOp::Add | SetVarOp::Sub) {
            let current = match slot {
                Some(s) => t.st.tx.slot(s),
                None => t.st.tx.get_dynamic(&keybuf),
            };
            let n = arithmetic(op, current.map(operators::to_number).unwrap_or(0), &val);
            val.clear();
            let _ = write!(val, "{n}");
        }
        match (slot, op) {
            (Some(s), SetVarOp::Delete) => t.st.tx.delete_slot(s),
            (Some(s), _) => t.st.tx.set_slot(s, &val),
            (None, SetVarOp::Delete) => t.st.tx.delete_dynamic(&keybuf),
            (None, _) => t.st.tx.set_dynamic(&keybuf, &val),
        }
    } else {
        let pos =
            t.st.others
                .iter()
                .position(|(c, k, _)| *c == collection && *k == keybuf);
        match op {
            SetVarOp::Delete => {
                if let Some(p) = pos {
                    t.st.others.remove(p);
                }
            }
            _ => {
                if matches!(op, SetVarOp::Add | SetVarOp::Sub) {
                    let cur = pos
                        .map(|p| operators::to_number(&t.st.others[p].2))
                        .unwrap_or(0);
                    let n = arithmetic(op, cur, &val);
                    val.clear();
                    let _ = write!(val, "{n}");
                }
                match pos {
                    Some(p) => {
                        let v = &mut t.st.others[p].2;
                        v.clear();
                        v.extend_from_slice(&val);
                    }
                    None => t.st.others.push((collection, keybuf.clone(), val.clone())),
                }
            }
        }
    }
    t.sc.expand = val;
    t.sc.key = scratch;
    t.sc.setvar_key = keybuf;
}

/// `setvar` `+=` / `-=`: the current number changed by the expanded value, saturating.
fn arithmetic(op: SetVarOp, current: i64, value: &[u8]) -> i64 {
    let d = operators::to_number(value);
    if op == SetVarOp::Sub {
        current.saturating_sub(d)
    } else {
        current.saturating_add(d)
    }
}

fn ctl(t: &mut Transaction<'_>, c: &Ctl) {
    // The body processor is visible at once (REQBODY_PROCESSOR), as in ModSecurity: CRS's
    // 901340 reads it later in phase 1 to decide whether to force REQUEST_BODY.
    if let Ctl::RequestBodyProcessor(p) = c {
        t.req.body_processor = Some(*p);
    }
    let st = &mut t.st;
    match c {
        Ctl::RuleEngine(m) => st.engine = Some(*m),
        Ctl::AuditEngine(a) => st.audit_engine = Some(*a),
        Ctl::RequestBodyAccess(b) => st.request_body_access = Some(*b),
        Ctl::ResponseBodyAccess(b) => st.response_body_access = Some(*b),
        Ctl::RequestBodyProcessor(p) => st.body_processor_override = Some(*p),
        Ctl::ForceRequestBodyVariable(b) => st.force_request_body_var = *b,
        Ctl::RequestBodyLimit(n) => st.request_body_limit = Some(*n),
        Ctl::RuleRemoveById(r) => st.removed_ranges.extend_from_slice(r),
        Ctl::RuleRemoveByTag(tag) => {
            if !st.removed_tags.contains(tag) {
                st.removed_tags.push(tag.clone())
            }
        }
        Ctl::RuleRemoveByMsg(m) => st.removed_msgs.push(m.clone()),
        Ctl::RuleRemoveTargetById { ranges, target } => st
            .removed_targets
            .push(removed(RuleSelector::Ids(ranges.clone()), target)),
        Ctl::RuleRemoveTargetByTag { tag, target } => st
            .removed_targets
            .push(removed(RuleSelector::Tag(tag.clone()), target)),
        Ctl::RuleRemoveTargetByMsg { msg, target } => st
            .removed_targets
            .push(removed(RuleSelector::Msg(msg.clone()), target)),
    }
}

fn removed(rules: RuleSelector, target: &crate::seclang::ir::TargetRef) -> RemovedTarget {
    use crate::seclang::ir::Selector;
    let (key, xpath) = match &target.selector {
        Selector::All => (None, None),
        Selector::Key(k) => (Some(k.as_bytes().to_vec()), None),
        // A regex key in a ctl removal is compared as written (rare; documented).
        Selector::Regex(r) => (Some(r.as_bytes().to_vec()), None),
        Selector::XPath(x) => (None, Some(x.clone())),
    };
    RemovedTarget {
        rules,
        var: target.variable,
        key,
        xpath,
    }
}

/// Records a rule match with its message and data expanded now.
fn record(t: &mut Transaction<'_>, ri: u32, rule: &CRule, phase: u8) {
    // A rule that neither logs nor audits leaves no trace (CRS's paranoia-level gates and
    // initialisation rules match on every request): nothing reads such a record.
    if rule.id == 0 || (!rule.log && !rule.auditlog) || t.st.matches.len() >= MAX_RECORDED_MATCHES {
        return;
    }
    let (msg, data) = if rule.log || rule.auditlog {
        let mut scratch = std::mem::take(&mut t.sc.key);
        let mut out = std::mem::take(&mut t.sc.expand);
        let text = |m: &Option<CMacro>,
                    t: &Transaction<'_>,
                    scratch: &mut Vec<u8>,
                    out: &mut Vec<u8>|
         -> String {
            match m {
                Some(m) => {
                    out.clear();
                    expand(t.rs, &t.req, &t.st, m, scratch, out);
                    String::from_utf8_lossy(utf8_prefix(out, MAX_LOGGED_TEXT)).into_owned()
                }
                None => String::new(),
            }
        };
        let msg = text(&rule.msg, t, &mut scratch, &mut out);
        let data = text(&rule.logdata, t, &mut scratch, &mut out);
        t.sc.key = scratch;
        t.sc.expand = out;
        (msg, data)
    } else {
        (String::new(), String::new())
    };
    let value = utf8_prefix(&t.st.matched_var, MAX_LOGGED_VALUE);
    let disruptive = match rule.disruptive {
        CDisruptive::Pass => "pass",
        CDisruptive::Deny => "deny",
        CDisruptive::Drop => "drop",
        CDisruptive::Allow(_) => "allow",
        CDisruptive::Redirect(_) => "redirect",
    };
    t.st.matches.push(MatchedRule {
        id: rule.id,
        phase,
        msg,
        data,
        severity: rule.severity,
        rule: ri,
        log: rule.log,
        auditlog: rule.auditlog,
        var_name: String::from_utf8_lossy(&t.st.matched_var_name).into_owned(),
        value: String::from_utf8_lossy(value).into_owned(),
        disruptive,
    });
}

/// At most `max` bytes of `b`, not ending inside a UTF-8 sequence that the cut would break
/// (so a cut never shows up as a replacement character).
fn utf8_prefix(b: &[u8], max: usize) -> &[u8] {
    if b.len() <= max {
        return b;
    }
    let mut end = max;
    // Back off over continuation bytes (at most 3) to the start of the cut character.
    while end > 0 && max - end < 3 && (b[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &b[..end]
}

/// Expands a macro string into `out` (appending).
pub(crate) fn expand(
    rs: &Ruleset,
    req: &RequestData,
    st: &State,
    m: &CMacro,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    for p in &m.parts {
        match p {
            CPart::Lit(l) => out.extend_from_slice(l),
            CPart::TxSlot(s) => {
                if let Some(v) = st.tx.slot(*s) {
                    out.extend_from_slice(v)
                }
            }
            CPart::Var(var, key) => macro_var(rs, req, st, *var, key.as_deref(), scratch, out),
        }
    }
}

fn macro_var(
    rs: &Ruleset,
    req: &RequestData,
    st: &State,
    var: Variable,
    key: Option<&[u8]>,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    match (var, key) {
        (Variable::MatchedVar, _) => out.extend_from_slice(&st.matched_var),
        (Variable::MatchedVarName, _) => out.extend_from_slice(&st.matched_var_name),
        (Variable::Tx, Some(k)) => {
            if let Some(v) = st.tx.get_dynamic(k) {
                out.extend_from_slice(v);
            }
        }
        _ => {
            // Generic path: collect the target and take its first value.
            let target = CTarget {
                var,
                sel: match key {
                    Some(k) => CSelector::Key(k.to_vec()),
                    None => CSelector::All,
                },
                count: false,
                exclusions: Vec::new(),
            };
            let mut vals = Vec::new();
            scratch.clear();
            let mut caches = operators::rx::RegexCaches::default();
            variables::collect(rs, req, st, &target, &[], &mut caches, scratch, &mut vals);
            if let Some(v) = vals.first() {
                out.extend_from_slice(variables::bytes(req, scratch, v));
            }
        }
    }
}

#[allow(dead_code)]
fn key_src_is_none(k: &KeySrc) -> bool {
    matches!(k, KeySrc::None)
}
