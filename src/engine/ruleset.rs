//! The executable ruleset: a [`Program`] lowered into what evaluation needs.
//!
//! Lowering compiles regexes and phrase sets, interns transformation pipelines into a trie
//! (so shared prefixes are computed once per value), gives every TX key written literally in
//! the rules a fixed slot, and lays rules out per phase. The result is immutable and shared
//! read-only by every worker.

use std::collections::HashMap;
use std::sync::Arc;

use super::operators::{self, CompiledOp, Network, NumOp, StrOp};
use super::prefilter::Prefilters;
use super::variables::{self as vars, Source};
use crate::seclang::ir::{self, *};

/// Error while lowering a program (a regex that does not compile, an unsupported variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerError {
    pub file: String,
    pub line: u32,
    pub message: String,
}

impl std::fmt::Display for LowerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for LowerError {}

/// A compiled, immutable ruleset.
#[derive(Debug)]
pub struct Ruleset {
    pub settings: Settings,
    pub(crate) rules: Vec<CRule>,
    /// Per phase (index 1–5): indices into `rules`, markers included in every phase.
    pub(crate) phases: [Vec<u32>; 6],
    pub(crate) pipelines: Vec<PipeNode>,
    pub(crate) regexes: operators::rx::RegexTable,
    pub(crate) phrase_sets: operators::pm::PhraseTable,
    /// Lower-cased TX key → slot.
    pub(crate) tx_slots: HashMap<Vec<u8>, u32>,
    pub(crate) tx_names: Vec<Vec<u8>>,
    /// Slots of TX:0..TX:9 (captures).
    pub(crate) capture_slots: [u32; 10],
    /// Rule heads with an id (for `--version` and tests).
    pub rule_count: usize,
    /// Automata over the prefiltered rules' required literals, one per group of sources read
    /// by the same rules; built by [`Ruleset::warm_up`] (or [`Ruleset::build_prefilter`]).
    /// Until they exist, no rule is skipped: evaluation is correct, only slower.
    pub(crate) prefilter: std::sync::OnceLock<Prefilters>,
    pf_sets: Vec<Vec<Vec<u8>>>,
    /// (source, pipeline node) pairs prefiltered rules read; indices of `PrefilterInfo::sources`.
    pub(crate) source_nodes: Vec<(Source, u32)>,
    /// Rules with a prefilter / all rule heads (reported by tools).
    pub prefiltered_rules: usize,
}

/// How a rule head is prefiltered: its bit in the prefilter, and the (source, node) pairs whose
/// values its first link tests.
#[derive(Debug)]
pub(crate) struct PrefilterInfo {
    /// One bit per required literal set; the rule can match only if all are lit.
    pub bits: Vec<u32>,
    pub sources: Vec<u32>,
    /// The pipeline nodes the scan looks at (the link's node, or every multiMatch step; with
    /// trailing case changes dropped): a value is tested only if one of them shows the bit.
    pub nodes: Vec<u32>,
}

/// A node of the transformation trie: `parent` then `t`. Node 0 is "no transformation".
#[derive(Debug, Clone, Copy)]
pub(crate) struct PipeNode {
    pub parent: u32,
    pub t: Option<Transformation>,
}

#[derive(Debug)]
pub(crate) struct CRule {
    pub id: u32,
    pub phase: u8,
    /// Shared so audit events can carry them without copying.
    pub file: Arc<str>,
    pub line: u32,
    /// `Some(marker id)` for a `SecMarker`.
    pub marker: Option<u32>,
    pub links: Vec<CLink>,
    pub msg: Option<CMacro>,
    pub logdata: Option<CMacro>,
    pub tags: Arc<[String]>,
    pub severity: Option<u8>,
    pub ver: Option<String>,
    pub rev: Option<String>,
    pub disruptive: CDisruptive,
    pub status: Option<u16>,
    pub log: bool,
    pub auditlog: bool,
    pub skip: u32,
    pub skip_after: Option<u32>,
    pub prefilter: Option<PrefilterInfo>,
}

#[derive(Debug)]
pub(crate) enum CDisruptive {
    Pass,
    Deny,
    Drop,
    Allow(AllowScope),
    Redirect(CMacro),
}

#[derive(Debug)]
pub(crate) struct CLink {
    /// `SecAction`: matches once, without targets.
    pub is_action: bool,
    pub targets: Vec<CTarget>,
    pub op: CompiledOp,
    /// Expanded argument for string/numeric operators.
    pub op_arg: Option<CMacro>,
    pub negated: bool,
    /// Trie node of the whole pipeline, and every node along it (for multiMatch).
    pub pipeline: u32,
    pub pipeline_steps: Vec<u32>,
    pub capture: bool,
    pub multi_match: bool,
    pub effects: Vec<CEffect>,
}

#[derive(Debug)]
pub(crate) struct CTarget {
    pub var: Variable,
    pub sel: CSelector,
    pub count: bool,
    pub exclusions: Vec<CSelector>,
}

#[derive(Debug)]
pub(crate) enum CSelector {
    All,
    /// Lower-cased key.
    Key(Vec<u8>),
    /// A TX key with a fixed slot.
    TxSlot(u32),
    /// Index into `Ruleset::regexes` (compiled case-insensitive).
    Regex(u32),
    XmlText,
    XmlAttr,
}

/// A macro string with TX keys resolved to slots where possible.
#[derive(Debug, Default)]
pub(crate) struct CMacro {
    pub parts: Vec<CPart>,
}

#[derive(Debug)]
pub(crate) enum CPart {
    Lit(Vec<u8>),
    TxSlot(u32),
    Var(Variable, Option<Vec<u8>>),
}

impl CMacro {
    pub fn literal(&self) -> Option<&[u8]> {
        match self.parts.as_slice() {
            [] => Some(&[]),
            [CPart::Lit(l)] => Some(l),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(crate) enum CEffect {
    SetVar {
        collection: Variable,
        key: CKey,
        op: SetVarOp,
        value: CMacro,
    },
    Ctl(Ctl),
    InitCol,
}

#[derive(Debug)]
pub(crate) enum CKey {
    Slot(u32),
    /// A key built from macros at run time (lower-cased after expansion).
    Dynamic(CMacro),
    /// A literal key of a non-TX collection (lower-cased).
    Literal(Vec<u8>),
}

impl Ruleset {
    /// Lowers a compiled program. Fails on a regex that does not compile or a variable the
    /// engine cannot provide.
    /// Lowers a program and compiles every regex now, so a bad pattern is an error here
    /// (run-time rules: `check --rules`).
    pub fn new(program: Program) -> Result<Ruleset, LowerError> {
        let rs = Ruleset::new_lazy(program)?;
        rs.build_prefilter().map_err(|m| LowerError {
            file: String::new(),
            line: 0,
            message: m,
        })?;
        if let Err((i, e)) = rs.regexes.validate() {
            let (file, line) = rs.regex_origin(i);
            return Err(LowerError {
                file,
                line,
                message: e,
            });
        }
        Ok(rs)
    }

    /// Lowers a program whose regexes are known to compile (the built-in ruleset, validated by
    /// `build.rs`): they are compiled on first use instead of at start-up.
    pub fn new_lazy(program: Program) -> Result<Ruleset, LowerError> {
        let mut l = Lowerer::default();
        // Slots for the capture keys first so they have stable, small indices.
        let mut capture_slots = [0u32; 10];
        for (i, s) in capture_slots.iter_mut().enumerate() {
            *s = l.tx_slot(i.to_string().as_bytes());
        }
        let mut rules = Vec::with_capacity(program.rules.len());
        for r in &program.rules {
            let mut c = l.rule(r)?;
            c.prefilter = l.prefilter_for(r, &c);
            rules.push(c);
        }
        let mut phases: [Vec<u32>; 6] = Default::default();
        for (i, r) in rules.iter().enumerate() {
            if r.marker.is_some() {
                for p in phases.iter_mut().skip(1) {
                    p.push(i as u32);
                }
            } else if (1..=5).contains(&r.phase) {
                phases[usize::from(r.phase)].push(i as u32);
            }
        }
        let rule_count = rules.iter().filter(|r| r.id != 0).count();
        let prefiltered_rules = rules.iter().filter(|r| r.prefilter.is_some()).count();
        Ok(Ruleset {
            settings: program.settings,
            rules,
            phases,
            pipelines: l.pipelines,
            regexes: l.regexes,
            phrase_sets: l.phrase_sets,
            tx_slots: l.tx_slots,
            tx_names: l.tx_names,
            capture_slots,
            rule_count,
            prefiltered_rules,
            prefilter: std::sync::OnceLock::new(),
            pf_sets: l.pf_sets,
            source_nodes: l.source_nodes,
        })
    }

    /// Where regex `i` is used first (for errors).
    fn regex_origin(&self, i: u32) -> (String, u32) {
        for r in &self.rules {
            for (li, link) in r.links.iter().enumerate() {
                let uses = matches!(link.op, CompiledOp::Rx(x) if x == i)
                    || link.targets.iter().any(|t| {
                        matches!(t.sel, CSelector::Regex(x) if x == i)
                            || t.exclusions
                                .iter()
                                .any(|e| matches!(e, CSelector::Regex(x) if *x == i))
                    });
                if uses {
                    let _ = li;
                    return (r.file.to_string(), r.line);
                }
            }
        }
        (String::new(), 0)
    }

    /// The same ruleset with the literal prefilter switched off: every rule is evaluated on
    /// every value. For tests proving the prefilter never changes a verdict.
    pub fn without_prefilter(mut self) -> Ruleset {
        for r in &mut self.rules {
            r.prefilter = None;
        }
        self
    }

    /// Starts [`warm_up`](Self::warm_up) on a background thread, as the agent does at start-up:
    /// requests are served meanwhile (without the prefilter, compiling regexes as they come).
    pub fn spawn_warm_up(&'static self) {
        let spawned = std::thread::Builder::new()
            .name("regex-warm-up".into())
            .spawn(move || self.warm_up());
        if let Err(e) = spawned {
            log::warn!("warm-up thread: {e}; regexes compile on first use, no prefilter");
        }
    }

    /// Compiles every regex not compiled yet (call from a background thread after start-up).
    pub fn warm_up(&self) {
        if let Err(e) = self.build_prefilter() {
            log::error!("{e}; rules are evaluated without the prefilter");
        }
        self.regexes.warm_up();
        self.phrase_sets.warm_up();
    }

    /// Builds the prefilter automata now (idempotent).
    pub fn build_prefilter(&self) -> Result<(), String> {
        if self.prefilter.get().is_some() {
            return Ok(());
        }
        let mut readers = Vec::new();
        for info in self.rules.iter().filter_map(|r| r.prefilter.as_ref()) {
            for &sn in &info.sources {
                let (source, _) = self.source_nodes[sn as usize];
                readers.push((source.index(), info.bits.as_slice()));
            }
        }
        let pf = Prefilters::build(&self.pf_sets, &readers)?;
        let _ = self.prefilter.set(pf);
        Ok(())
    }

    /// The prefilter, if it has been built; never waits.
    pub(crate) fn prefilter(&self) -> Option<&Prefilters> {
        self.prefilter.get()
    }

    /// Number of u64 words in a prefilter bitset.
    pub(crate) fn prefilter_words(&self) -> usize {
        self.pf_sets.len().div_ceil(64).max(1)
    }

    /// Slot of a lower-cased TX key written literally in the rules.
    pub(crate) fn tx_slot(&self, key_lc: &[u8]) -> Option<u32> {
        self.tx_slots.get(key_lc).copied()
    }

    pub(crate) fn tx_slot_count(&self) -> usize {
        self.tx_names.len()
    }

    /// Ids of all rule heads, for tests and tooling.
    pub fn rule_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.rules.iter().map(|r| r.id).filter(|&id| id != 0)
    }
}

#[derive(Default)]
struct Lowerer {
    pipelines: Vec<PipeNode>,
    pipe_index: HashMap<(u32, Transformation), u32>,
    regexes: operators::rx::RegexTable,
    regex_index: HashMap<(String, bool), u32>,
    phrase_sets: operators::pm::PhraseTable,
    tx_slots: HashMap<Vec<u8>, u32>,
    tx_names: Vec<Vec<u8>>,
    markers: Vec<String>,
    file: String,
    line: u32,
    pf_sets: Vec<Vec<Vec<u8>>>,
    source_nodes: Vec<(Source, u32)>,
}

impl Lowerer {
    fn err(&self, m: impl Into<String>) -> LowerError {
        LowerError {
            file: self.file.clone(),
            line: self.line,
            message: m.into(),
        }
    }

    fn tx_slot(&mut self, key_lc: &[u8]) -> u32 {
        if let Some(&s) = self.tx_slots.get(key_lc) {
            return s;
        }
        let s = self.tx_names.len() as u32;
        self.tx_names.push(key_lc.to_vec());
        self.tx_slots.insert(key_lc.to_vec(), s);
        s
    }

    fn marker_id(&mut self, name: &str) -> u32 {
        match self.markers.iter().position(|m| m == name) {
            Some(i) => i as u32,
            None => {
                self.markers.push(name.to_string());
                (self.markers.len() - 1) as u32
            }
        }
    }

    fn pipeline(&mut self, ts: &[Transformation]) -> (u32, Vec<u32>) {
        if self.pipelines.is_empty() {
            self.pipelines.push(PipeNode { parent: 0, t: None });
        }
        let mut node = 0u32;
        let mut steps = Vec::with_capacity(ts.len());
        for &t in ts {
            node = match self.pipe_index.get(&(node, t)) {
                Some(&n) => n,
                None => {
                    let n = self.pipelines.len() as u32;
                    self.pipelines.push(PipeNode {
                        parent: node,
                        t: Some(t),
                    });
                    self.pipe_index.insert((node, t), n);
                    n
                }
            };
            steps.push(node);
        }
        (node, steps)
    }

    fn regex(&mut self, pattern: &str, key: bool) -> Result<u32, LowerError> {
        if let Some(&i) = self.regex_index.get(&(pattern.to_string(), key)) {
            return Ok(i);
        }
        let i = self.regexes.push(pattern, key);
        self.regex_index.insert((pattern.to_string(), key), i);
        Ok(i)
    }

    fn rule(&mut self, r: &ir::Rule) -> Result<CRule, LowerError> {
        self.file = r.file.clone();
        self.line = r.line;
        let marker = match &r.kind {
            RuleKind::Marker(name) => Some(self.marker_id(name)),
            _ => None,
        };
        let mut links = Vec::new();
        if marker.is_none() {
            let mut cur = Some(r);
            while let Some(link) = cur {
                self.line = link.line;
                links.push(self.link(link)?);
                cur = link.chain.as_deref();
            }
        }
        self.line = r.line;
        let a = &r.actions;
        let disruptive = match a.disruptive.as_ref().unwrap_or(&Disruptive::Pass) {
            Disruptive::Pass | Disruptive::Block => CDisruptive::Pass,
            Disruptive::Deny => CDisruptive::Deny,
            Disruptive::Drop => CDisruptive::Drop,
            Disruptive::Allow(s) => CDisruptive::Allow(*s),
            Disruptive::Redirect(m) => CDisruptive::Redirect(self.macro_(m)?),
        };
        let skip_after = a.skip_after.as_ref().map(|m| self.marker_id(m));
        Ok(CRule {
            id: r.id,
            phase: r.phase,
            file: Arc::from(r.file.as_str()),
            line: r.line,
            marker,
            links,
            msg: a.msg.as_ref().map(|m| self.macro_(m)).transpose()?,
            logdata: a.logdata.as_ref().map(|m| self.macro_(m)).transpose()?,
            tags: Arc::from(a.tags.clone()),
            severity: a.severity,
            ver: a.ver.clone(),
            rev: a.rev.clone(),
            disruptive,
            status: a.status,
            log: a.log.unwrap_or(true),
            auditlog: a.auditlog.unwrap_or(true),
            skip: a.skip,
            skip_after,
            prefilter: None,
        })
    }

    /// The prefilter of a rule head: its first link must be a non-negated `@rx` with a required
    /// literal set (or `@pm`), reading only request/response data.
    fn prefilter_for(&mut self, r: &ir::Rule, c: &CRule) -> Option<PrefilterInfo> {
        let link = c.links.first()?;
        if link.is_action || link.negated || r.kind != RuleKind::Rule {
            return None;
        }
        let sets: Vec<Vec<Vec<u8>>> = r.operator.literals.clone()?;
        // Every value the link tests: each source at each pipeline node it is tested at.
        let mut nodes = vec![link.pipeline];
        if link.multi_match {
            nodes = std::iter::once(0)
                .chain(link.pipeline_steps.iter().copied())
                .collect();
        }
        // The scan ignores ASCII case, so a trailing lowercase/uppercase step cannot change
        // what it finds: scan the parent's output instead (often the raw value itself).
        for n in nodes.iter_mut() {
            while let Some(PipeNode {
                parent,
                t: Some(Transformation::Lowercase | Transformation::Uppercase),
            }) = self.pipelines.get(*n as usize).copied()
            {
                *n = parent;
            }
        }
        nodes.sort_unstable();
        nodes.dedup();
        let mut sources = Vec::new();
        for t in &link.targets {
            if t.count {
                return None;
            }
            for &s in vars::sources_of(t.var)? {
                for &n in &nodes {
                    let id = match self.source_nodes.iter().position(|&x| x == (s, n)) {
                        Some(i) => i as u32,
                        None => {
                            self.source_nodes.push((s, n));
                            (self.source_nodes.len() - 1) as u32
                        }
                    };
                    if !sources.contains(&id) {
                        sources.push(id);
                    }
                }
            }
        }
        if sources.is_empty() {
            return None;
        }
        let mut bits = Vec::with_capacity(sets.len());
        for set in sets {
            self.pf_sets.push(set);
            bits.push((self.pf_sets.len() - 1) as u32);
        }
        Some(PrefilterInfo {
            bits,
            sources,
            nodes,
        })
    }

    fn link(&mut self, r: &ir::Rule) -> Result<CLink, LowerError> {
        let is_action = r.kind == RuleKind::Action;
        let mut targets = Vec::with_capacity(r.targets.len());
        for t in &r.targets {
            check_supported(t.variable).map_err(|m| self.err(m))?;
            let sel = self.selector(t.variable, &t.selector)?;
            let mut exclusions = Vec::new();
            for e in &t.exclusions {
                exclusions.push(self.selector(t.variable, e)?);
            }
            targets.push(CTarget {
                var: t.variable,
                sel,
                count: t.count,
                exclusions,
            });
        }
        let (op, op_arg) = self.operator(&r.operator)?;
        let (pipeline, pipeline_steps) = self.pipeline(&r.transformations);
        let mut effects = Vec::new();
        for e in &r.actions.effects {
            effects.push(match e {
                Effect::SetVar(s) => {
                    check_supported(s.collection).map_err(|m| self.err(m))?;
                    let key = match (s.collection, s.key.as_literal()) {
                        (Variable::Tx, Some(k)) => CKey::Slot(self.tx_slot(k.as_bytes())),
                        (_, Some(k)) => CKey::Literal(k.as_bytes().to_vec()),
                        (_, None) => CKey::Dynamic(self.macro_(&s.key)?),
                    };
                    CEffect::SetVar {
                        collection: s.collection,
                        key,
                        op: s.op,
                        value: self.macro_(&s.value)?,
                    }
                }
                Effect::Ctl(c) => {
                    if let Ctl::RuleRemoveTargetById { target, .. }
                    | Ctl::RuleRemoveTargetByTag { target, .. }
                    | Ctl::RuleRemoveTargetByMsg { target, .. } = c
                    {
                        check_supported(target.variable).map_err(|m| self.err(m))?;
                    }
                    CEffect::Ctl(c.clone())
                }
                Effect::InitCol { .. } => CEffect::InitCol,
            });
        }
        Ok(CLink {
            is_action,
            targets,
            op,
            op_arg,
            negated: r.operator.negated,
            pipeline,
            pipeline_steps,
            capture: r.actions.capture,
            multi_match: r.actions.multi_match,
            effects,
        })
    }

    fn selector(&mut self, var: Variable, s: &Selector) -> Result<CSelector, LowerError> {
        Ok(match s {
            Selector::All => CSelector::All,
            Selector::Key(k) if var == Variable::Tx => {
                CSelector::TxSlot(self.tx_slot(k.as_bytes()))
            }
            Selector::Key(k) => CSelector::Key(k.as_bytes().to_vec()),
            Selector::Regex(re) => CSelector::Regex(self.regex(re, true)?),
            Selector::XPath(x) if x == "/*" => CSelector::XmlText,
            Selector::XPath(x) if x == "//@*" => CSelector::XmlAttr,
            Selector::XPath(x) => return Err(self.err(format!("unsupported XPath {x:?}"))),
        })
    }

    fn operator(&mut self, o: &Operator) -> Result<(CompiledOp, Option<CMacro>), LowerError> {
        use OperatorKind as K;
        let expand = |l: &mut Self| -> Result<Option<CMacro>, LowerError> {
            match &o.arg {
                OperatorArg::Expand(m) => Ok(Some(l.macro_(m)?)),
                _ => Ok(None),
            }
        };
        Ok(match o.kind {
            K::Rx => match &o.arg {
                OperatorArg::Pattern(p) => (CompiledOp::Rx(self.regex(p, false)?), None),
                _ => return Err(self.err("@rx without a pattern")),
            },
            K::Pm => match &o.arg {
                OperatorArg::Phrases(ps) => {
                    (CompiledOp::Pm(self.phrase_sets.push(ps.clone())), None)
                }
                _ => return Err(self.err("@pm without phrases")),
            },
            K::Eq => (CompiledOp::Num(NumOp::Eq), expand(self)?),
            K::Ge => (CompiledOp::Num(NumOp::Ge), expand(self)?),
            K::Gt => (CompiledOp::Num(NumOp::Gt), expand(self)?),
            K::Le => (CompiledOp::Num(NumOp::Le), expand(self)?),
            K::Lt => (CompiledOp::Num(NumOp::Lt), expand(self)?),
            K::BeginsWith => (CompiledOp::Str(StrOp::BeginsWith), expand(self)?),
            K::Contains => (CompiledOp::Str(StrOp::Contains), expand(self)?),
            K::ContainsWord => (CompiledOp::Str(StrOp::ContainsWord), expand(self)?),
            K::EndsWith => (CompiledOp::Str(StrOp::EndsWith), expand(self)?),
            K::Streq => (CompiledOp::Str(StrOp::Streq), expand(self)?),
            K::StrMatch => (CompiledOp::Str(StrOp::StrMatch), expand(self)?),
            K::Within => (CompiledOp::Str(StrOp::Within), expand(self)?),
            K::ValidateByteRange => match &o.arg {
                OperatorArg::ByteSet(s) => (CompiledOp::ByteRange(Box::new(*s)), None),
                _ => return Err(self.err("@validateByteRange without ranges")),
            },
            K::IpMatch => match &o.arg {
                OperatorArg::Networks(ns) => {
                    let mut nets = Vec::new();
                    for (bytes, prefix) in ns {
                        let addr = match bytes.len() {
                            4 => std::net::IpAddr::from(
                                <[u8; 4]>::try_from(bytes.as_slice())
                                    .map_err(|_| self.err("bad address"))?,
                            ),
                            16 => std::net::IpAddr::from(
                                <[u8; 16]>::try_from(bytes.as_slice())
                                    .map_err(|_| self.err("bad address"))?,
                            ),
                            _ => return Err(self.err("bad address")),
                        };
                        nets.push(Network {
                            addr,
                            prefix: *prefix,
                        });
                    }
                    (CompiledOp::IpMatch(nets), None)
                }
                _ => return Err(self.err("@ipMatch without networks")),
            },
            K::ValidateUrlEncoding => (CompiledOp::ValidateUrlEncoding, None),
            K::ValidateUtf8Encoding => (CompiledOp::ValidateUtf8Encoding, None),
            K::DetectSqli => (CompiledOp::DetectSqli, None),
            K::DetectXss => (CompiledOp::DetectXss, None),
            K::UnconditionalMatch => (CompiledOp::Unconditional, None),
            K::NoMatch => (CompiledOp::NoMatch, None),
        })
    }

    fn macro_(&mut self, m: &MacroString) -> Result<CMacro, LowerError> {
        let mut parts = Vec::with_capacity(m.parts.len());
        for p in &m.parts {
            parts.push(match p {
                MacroPart::Literal(s) => CPart::Lit(s.as_bytes().to_vec()),
                MacroPart::Var {
                    variable: Variable::Tx,
                    key: Some(k),
                } => CPart::TxSlot(self.tx_slot(k.as_bytes())),
                MacroPart::Var { variable, key } => {
                    check_supported(*variable).map_err(|m| self.err(m))?;
                    CPart::Var(*variable, key.as_ref().map(|k| k.as_bytes().to_vec()))
                }
            });
        }
        Ok(CMacro { parts })
    }
}

/// Variables the engine does not provide. Using one is an error, never an empty match.
fn check_supported(v: Variable) -> Result<(), String> {
    use Variable::*;
    match v {
        Env | Rule | Time | TimeEpoch | Duration | FullRequestLength | StatusLine
        | HighestSeverity | MultipartFilename | MultipartName | ServerName => Err(format!(
            "variable {} is not supported by this engine",
            v.name()
        )),
        _ => Ok(()),
    }
}
