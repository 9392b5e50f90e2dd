//! Directive processing: turns rule files into a [`Program`].
//!
//! Owns the order-dependent semantics of a configuration: `Include`, `SecDefaultAction`
//! inheritance, chains, and the directives that edit rules already defined
//! (`SecRuleRemove*`, `SecRuleUpdate*`). Anything not understood is an error with `file:line`;
//! [`ACCEPTED_WITHOUT_EFFECT`] lists, with reasons, the directives that are meaningless here.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::error::CompileError;
use super::ir::*;
use super::lexer::{self, Directive};
use super::parse::{self, RawAction};

/// Directives accepted and ignored, each with the reason it has no meaning in this sidecar.
pub const ACCEPTED_WITHOUT_EFFECT: &[(&str, &str)] = &[
    (
        "SecAuditLog",
        "the audit log path is set in config.yaml (audit.path)",
    ),
    (
        "SecAuditLogDirMode",
        "the audit log is one file written by the writer thread",
    ),
    (
        "SecAuditLogFileMode",
        "the audit log is one file written by the writer thread",
    ),
    ("SecAuditLogFormat", "the audit log is always JSON lines"),
    (
        "SecAuditLogParts",
        "the JSON event has a fixed shape (see README)",
    ),
    (
        "SecAuditLogRelevantStatus",
        "an event is written when a logging rule matched",
    ),
    ("SecAuditLogStorageDir", "the audit log is one file"),
    ("SecAuditLogType", "the audit log is one file (Serial)"),
    (
        "SecCollectionTimeout",
        "persistent collections are not kept between transactions",
    ),
    (
        "SecDataDir",
        "persistent collections are not kept between transactions",
    ),
    (
        "SecDebugLog",
        "diagnostics go to stderr (config.yaml log_level)",
    ),
    (
        "SecDebugLogLevel",
        "diagnostics go to stderr (config.yaml log_level)",
    ),
    (
        "SecPcreMatchLimit",
        "regexes run in linear time; there is no backtracking limit",
    ),
    (
        "SecPcreMatchLimitRecursion",
        "regexes run in linear time; there is no recursion",
    ),
    (
        "SecRequestBodyInMemoryLimit",
        "bodies are always in memory, bounded by the body limit",
    ),
    (
        "SecRxPreFilter",
        "prefiltering is internal and never changes verdicts",
    ),
    ("SecServerSignature", "the sidecar does not serve HTTP"),
    ("SecStatusEngine", "no status reporting"),
    ("SecTmpDir", "bodies are never written to disk"),
    (
        "SecTmpSaveUploadedFiles",
        "uploads are never written to disk",
    ),
    ("SecUploadDir", "uploads are never written to disk"),
    ("SecUploadFileMode", "uploads are never written to disk"),
    ("SecUploadKeepFiles", "uploads are never written to disk"),
    (
        "SecUnicodeMapFile",
        "the best-fit map of code page 20127 is built into urlDecodeUni",
    ),
];

/// Compiles the configuration file at `path` (with its `Include`s).
pub fn compile_file(path: &Path) -> Result<Program, CompileError> {
    let mut c = Compiler::new();
    c.include(path, "<command line>", 0)?;
    c.finish()
}

/// Compiles configuration text; `Include` and data-file paths resolve against `base_dir`.
pub fn compile_text(name: &str, text: &str, base_dir: &Path) -> Result<Program, CompileError> {
    let mut c = Compiler::new();
    c.text(name, text, base_dir)?;
    c.finish()
}

/// The directive processor. Use [`Compiler::files`] to learn every file read (for
/// `rerun-if-changed`).
pub struct Compiler {
    settings: Settings,
    rules: Vec<Rule>,
    defaults: [Option<Defaults>; 6],
    /// True when the last rule ended with `chain`, so the next `SecRule` is its link.
    open_chain: bool,
    /// Where the open chain started, for the error if it is never closed.
    open_chain_at: (String, u32),
    files: Vec<PathBuf>,
    include_depth: usize,
    ids: HashSet<u32>,
}

/// `SecDefaultAction` for one phase.
#[derive(Debug, Clone)]
struct Defaults {
    actions: Actions,
    transformations: Vec<Transformation>,
}

impl Default for Compiler {
    fn default() -> Self {
        Compiler::new()
    }
}

impl Compiler {
    pub fn new() -> Compiler {
        Compiler {
            settings: Settings::default(),
            rules: Vec::new(),
            defaults: Default::default(),
            open_chain: false,
            open_chain_at: (String::new(), 0),
            files: Vec::new(),
            include_depth: 0,
            ids: HashSet::new(),
        }
    }

    /// Every file read so far (configuration and data files).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn finish(self) -> Result<Program, CompileError> {
        if self.open_chain {
            let (f, l) = &self.open_chain_at;
            return Err(CompileError::new(
                f,
                *l,
                "rule has `chain` but no rule follows it",
            ));
        }
        check_skip_after_targets(&self.rules)?;
        Ok(Program {
            settings: self.settings,
            rules: self.rules,
        })
    }

    /// Compiles one file found at `path` (already expanded).
    pub fn include(&mut self, path: &Path, from: &str, line: u32) -> Result<(), CompileError> {
        if self.include_depth > 16 {
            return Err(CompileError::new(
                from,
                line,
                "Include nested more than 16 levels",
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            CompileError::new(from, line, format!("cannot read {}: {e}", path.display()))
        })?;
        self.files.push(path.to_path_buf());
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        self.include_depth += 1;
        let r = self.text(&path.display().to_string(), &text, &base);
        self.include_depth -= 1;
        r
    }

    /// Compiles configuration text.
    pub fn text(&mut self, file: &str, text: &str, base: &Path) -> Result<(), CompileError> {
        for d in lexer::directives(file, text)? {
            self.directive(file, base, &d).map_err(|e| match e {
                DirectiveError::Located(e) => e,
                DirectiveError::Here(m) => CompileError::new(file, d.line, m),
            })?;
        }
        Ok(())
    }

    fn directive(&mut self, file: &str, base: &Path, d: &Directive) -> Result<(), DirectiveError> {
        let name = d.name.as_str();
        let arg = |i: usize| -> Result<&str, DirectiveError> {
            d.args
                .get(i)
                .map(String::as_str)
                .ok_or_else(|| DirectiveError::Here(format!("{name}: missing argument {}", i + 1)))
        };
        if self.open_chain && name != "SecRule" {
            return Err(DirectiveError::Here(format!(
                "{name} follows a rule with `chain`; a SecRule must come next"
            )));
        }
        match name {
            "SecRule" => {
                if d.args.len() > 3 {
                    return Err(here(format!(
                        "SecRule: {} arguments, expected 2 or 3",
                        d.args.len()
                    )));
                }
                let actions = d.args.get(2).map(String::as_str).unwrap_or("");
                self.sec_rule(file, base, d.line, Some((arg(0)?, arg(1)?)), actions)?;
            }
            "SecAction" => self.sec_rule(file, base, d.line, None, arg(0)?)?,
            "SecMarker" => {
                let marker = arg(0)?.to_string();
                self.rules.push(Rule {
                    id: 0,
                    phase: 0,
                    file: file.to_string(),
                    line: d.line,
                    kind: RuleKind::Marker(marker),
                    targets: Vec::new(),
                    operator: unconditional(),
                    transformations: Vec::new(),
                    actions: Actions::default(),
                    chain: None,
                });
            }
            "SecDefaultAction" => self.default_action(arg(0)?)?,
            "Include" => {
                let pattern = expand_env(arg(0)?).map_err(here)?;
                let paths = glob(base, &pattern).map_err(here)?;
                for p in paths {
                    self.include(&p, file, d.line)?;
                }
            }
            "SecRuleEngine" => self.settings.rule_engine = engine_mode(arg(0)?).map_err(here)?,
            "SecRequestBodyAccess" => self.settings.request_body_access = on_off(arg(0)?)?,
            "SecResponseBodyAccess" => self.settings.response_body_access = on_off(arg(0)?)?,
            "SecRequestBodyLimit" => self.settings.request_body_limit = number(arg(0)?)?,
            "SecRequestBodyNoFilesLimit" => {
                self.settings.request_body_no_files_limit = number(arg(0)?)?
            }
            "SecResponseBodyLimit" => self.settings.response_body_limit = number(arg(0)?)?,
            "SecRequestBodyLimitAction" => {
                self.settings.request_body_limit_action = limit_action(arg(0)?)?
            }
            "SecResponseBodyLimitAction" => {
                self.settings.response_body_limit_action = limit_action(arg(0)?)?
            }
            "SecResponseBodyMimeType" => {
                for t in d.args.iter().flat_map(|a| a.split_whitespace()) {
                    let t = t.to_ascii_lowercase();
                    if !self.settings.response_body_mime_types.contains(&t) {
                        self.settings.response_body_mime_types.push(t);
                    }
                }
            }
            "SecResponseBodyMimeTypesClear" => self.settings.response_body_mime_types.clear(),
            "SecRequestBodyJsonDepthLimit" => {
                self.settings.json_depth_limit = u32::try_from(number(arg(0)?)?)
                    .map_err(|_| here("SecRequestBodyJsonDepthLimit: too large".into()))?
            }
            "SecArgumentsLimit" => {
                self.settings.arguments_limit = u32::try_from(number(arg(0)?)?)
                    .map_err(|_| here("SecArgumentsLimit: too large".into()))?
            }
            "SecAuditEngine" => {
                self.settings.audit_engine = match arg(0)?.to_ascii_lowercase().as_str() {
                    "on" => AuditEngine::On,
                    "off" => AuditEngine::Off,
                    "relevantonly" => AuditEngine::RelevantOnly,
                    v => return Err(here(format!("SecAuditEngine: unknown value {v:?}"))),
                }
            }
            "SecComponentSignature" => self.settings.component_signatures.push(arg(0)?.to_string()),
            "SecArgumentSeparator" => {
                if arg(0)? != "&" {
                    return Err(here("SecArgumentSeparator: only \"&\" is supported".into()));
                }
            }
            "SecCookieFormat" => {
                if arg(0)? != "0" {
                    return Err(here(
                        "SecCookieFormat: only version 0 cookies are supported".into(),
                    ));
                }
            }
            "SecRuleRemoveById" => {
                let ranges = parse::id_ranges(&d.args.join(" ")).map_err(here)?;
                self.rules.retain(|r| !in_ranges(&ranges, r.id));
            }
            "SecRuleRemoveByTag" => {
                let tag = arg(0)?;
                self.rules
                    .retain(|r| !r.actions.tags.iter().any(|t| t == tag));
            }
            "SecRuleRemoveByMsg" => {
                let msg = arg(0)?;
                self.rules
                    .retain(|r| r.actions.msg.as_ref().and_then(|m| m.as_literal()) != Some(msg));
            }
            "SecRuleUpdateTargetById" | "SecRuleRemoveTargetById" => {
                let ranges = parse::id_ranges(arg(0)?).map_err(here)?;
                let remove = name == "SecRuleRemoveTargetById";
                let (targets, replace) = (arg(1)?, d.args.get(2));
                let n =
                    self.edit_targets(|r| in_ranges(&ranges, r.id), targets, replace, remove)?;
                if n == 0 {
                    return Err(here(format!("{name}: no rule with id {}", arg(0)?)));
                }
            }
            "SecRuleUpdateTargetByTag" | "SecRuleRemoveTargetByTag" => {
                let tag = arg(0)?.to_string();
                let remove = name == "SecRuleRemoveTargetByTag";
                self.edit_targets(
                    |r| r.actions.tags.contains(&tag),
                    arg(1)?,
                    d.args.get(2),
                    remove,
                )?;
            }
            "SecRuleUpdateTargetByMsg" | "SecRuleRemoveTargetByMsg" => {
                let msg = arg(0)?.to_string();
                let remove = name == "SecRuleRemoveTargetByMsg";
                self.edit_targets(
                    |r| r.actions.msg.as_ref().and_then(|m| m.as_literal()) == Some(msg.as_str()),
                    arg(1)?,
                    d.args.get(2),
                    remove,
                )?;
            }
            "SecRuleUpdateActionById" => {
                let ranges = parse::id_ranges(arg(0)?).map_err(here)?;
                self.update_actions(file, base, &ranges, arg(1)?)?;
            }
            _ => {
                if ACCEPTED_WITHOUT_EFFECT.iter().any(|(n, _)| *n == name) {
                    return Ok(());
                }
                return Err(here(format!("unsupported directive {name}")));
            }
        }
        Ok(())
    }

    fn sec_rule(
        &mut self,
        file: &str,
        base: &Path,
        line: u32,
        rule: Option<(&str, &str)>,
        actions_text: &str,
    ) -> Result<(), DirectiveError> {
        let is_link = self.open_chain;
        let raw = parse::actions(actions_text).map_err(here)?;
        let mut b = ActionBuilder::new(is_link);
        for a in &raw {
            b.apply(a, base).map_err(here)?;
        }
        let (targets, operator) = match rule {
            Some((t, op)) => {
                let specs = parse::targets(t).map_err(here)?;
                (
                    parse::resolve_targets(&specs),
                    operator(op, base, &mut self.files).map_err(here)?,
                )
            }
            None => {
                if is_link {
                    return Err(here("SecAction cannot be a chain link".into()));
                }
                (Vec::new(), unconditional())
            }
        };
        let kind = if rule.is_some() {
            RuleKind::Rule
        } else {
            RuleKind::Action
        };

        if is_link {
            let starter = self
                .rules
                .last_mut()
                .ok_or_else(|| here("chain link without a rule".into()))?;
            let phase = starter.phase;
            let defaults = self.defaults[usize::from(phase)].clone();
            let mut link = b.into_rule(
                0,
                phase,
                file,
                line,
                kind,
                targets,
                operator,
                defaults.as_ref(),
            );
            let more = link.1;
            link.0.id = 0;
            let mut tail = starter;
            while tail.chain.is_some() {
                tail = tail.chain.as_mut().map(|c| c.as_mut()).expect("checked");
            }
            tail.chain = Some(Box::new(link.0));
            self.open_chain = more;
            return Ok(());
        }

        let id = b.id.ok_or_else(|| here("rule has no id".into()))?;
        if !self.ids.insert(id) {
            return Err(here(format!("duplicate rule id {id}")));
        }
        let phase = b.phase.unwrap_or(2);
        let defaults = self.defaults[usize::from(phase)].clone();
        let (rule, chained) = b.into_rule(
            id,
            phase,
            file,
            line,
            kind,
            targets,
            operator,
            defaults.as_ref(),
        );
        self.rules.push(rule);
        self.open_chain = chained;
        if chained {
            self.open_chain_at = (file.to_string(), line);
        }
        Ok(())
    }

    fn default_action(&mut self, text: &str) -> Result<(), DirectiveError> {
        let raw = parse::actions(text).map_err(here)?;
        let mut b = ActionBuilder::new(false);
        for a in &raw {
            b.apply(a, Path::new(".")).map_err(here)?;
        }
        let phase = b
            .phase
            .ok_or_else(|| here("SecDefaultAction must set a phase".into()))?;
        if b.id.is_some() || b.chain || !b.actions.effects.is_empty() {
            return Err(here(
                "SecDefaultAction cannot have id, chain, setvar or ctl".into(),
            ));
        }
        if b.actions.disruptive.is_none() {
            return Err(here("SecDefaultAction must set a disruptive action".into()));
        }
        self.defaults[usize::from(phase)] = Some(Defaults {
            actions: b.actions,
            transformations: b.transformations,
        });
        Ok(())
    }

    /// Adds targets / exclusions to (or removes targets from) every rule selected by `select`.
    fn edit_targets(
        &mut self,
        select: impl Fn(&Rule) -> bool,
        targets: &str,
        replace: Option<&String>,
        remove: bool,
    ) -> Result<usize, DirectiveError> {
        let specs = parse::targets(targets).map_err(here)?;
        let replacement = match replace {
            Some(r) => Some(parse::targets(r).map_err(here)?),
            None => None,
        };
        let mut n = 0;
        for rule in self.rules.iter_mut().filter(|r| select(r)) {
            n += 1;
            if let Some(repl) = &replacement {
                // SecRuleUpdateTargetById id "NEW" "OLD": OLD is replaced by NEW.
                for old in repl {
                    rule.targets
                        .retain(|t| !(t.variable == old.variable && t.selector == old.selector));
                }
                for s in specs.iter().filter(|s| !s.exclude) {
                    rule.targets.push(Target {
                        variable: s.variable,
                        selector: s.selector.clone(),
                        count: s.count,
                        exclusions: Vec::new(),
                    });
                }
                continue;
            }
            for s in &specs {
                if remove || s.exclude {
                    if s.selector == Selector::All {
                        rule.targets.retain(|t| t.variable != s.variable);
                    } else {
                        // Removing a keyed target removes that exact target if present and
                        // excludes the key from the whole collection.
                        rule.targets.retain(|t| {
                            !(t.variable == s.variable && t.selector == s.selector && !t.count)
                        });
                        parse::add_exclusion(&mut rule.targets, s.variable, &s.selector);
                    }
                } else if !rule.targets.iter().any(|t| {
                    t.variable == s.variable && t.selector == s.selector && t.count == s.count
                }) {
                    rule.targets.push(Target {
                        variable: s.variable,
                        selector: s.selector.clone(),
                        count: s.count,
                        exclusions: Vec::new(),
                    });
                }
            }
        }
        Ok(n)
    }

    fn update_actions(
        &mut self,
        file: &str,
        base: &Path,
        ranges: &[(u32, u32)],
        text: &str,
    ) -> Result<(), DirectiveError> {
        let raw = parse::actions(text).map_err(here)?;
        let mut found = false;
        for rule in self.rules.iter_mut().filter(|r| in_ranges(ranges, r.id)) {
            found = true;
            let mut b = ActionBuilder::from_rule(rule);
            for a in &raw {
                if matches!(a.name.as_str(), "id" | "phase" | "chain") {
                    return Err(here(format!(
                        "SecRuleUpdateActionById cannot change `{}`",
                        a.name
                    )));
                }
                b.apply(a, base).map_err(here)?;
            }
            if b.actions.disruptive == Some(Disruptive::Block) {
                b.actions.disruptive = Some(
                    self.defaults[usize::from(rule.phase)]
                        .as_ref()
                        .and_then(|d| d.actions.disruptive.clone())
                        .unwrap_or(Disruptive::Pass),
                );
            }
            rule.actions = b.actions;
            rule.transformations = b.transformations;
        }
        if !found {
            return Err(DirectiveError::Located(CompileError::new(
                file,
                0,
                format!("SecRuleUpdateActionById: no rule in {ranges:?}"),
            )));
        }
        Ok(())
    }
}

enum DirectiveError {
    Here(String),
    Located(CompileError),
}

impl From<CompileError> for DirectiveError {
    fn from(e: CompileError) -> Self {
        DirectiveError::Located(e)
    }
}

fn here(m: String) -> DirectiveError {
    DirectiveError::Here(m)
}

fn in_ranges(ranges: &[(u32, u32)], id: u32) -> bool {
    id != 0 && ranges.iter().any(|&(a, b)| a <= id && id <= b)
}

fn unconditional() -> Operator {
    Operator {
        kind: OperatorKind::UnconditionalMatch,
        negated: false,
        raw: String::new(),
        arg: OperatorArg::None,
        literals: None,
    }
}

/// Collects the actions of one rule.
struct ActionBuilder {
    is_link: bool,
    id: Option<u32>,
    phase: Option<u8>,
    chain: bool,
    t_none: bool,
    transformations: Vec<Transformation>,
    actions: Actions,
}

impl ActionBuilder {
    fn new(is_link: bool) -> ActionBuilder {
        ActionBuilder {
            is_link,
            id: None,
            phase: None,
            chain: false,
            t_none: false,
            transformations: Vec::new(),
            actions: Actions::default(),
        }
    }

    fn from_rule(rule: &Rule) -> ActionBuilder {
        ActionBuilder {
            is_link: false,
            id: Some(rule.id),
            phase: Some(rule.phase),
            chain: rule.chain.is_some(),
            t_none: true,
            transformations: rule.transformations.clone(),
            actions: rule.actions.clone(),
        }
    }

    fn apply(&mut self, a: &RawAction, base: &Path) -> Result<(), String> {
        let value = || {
            a.value
                .as_deref()
                .ok_or_else(|| format!("action `{}` needs a value", a.name))
        };
        let name = a.name.as_str();
        let meta_in_link = |n: &str| format!("`{n}` is not allowed in a chain link");
        match name {
            "id" => {
                if self.is_link {
                    return Err(meta_in_link(name));
                }
                let id: u32 = value()?
                    .parse()
                    .map_err(|_| format!("bad id {:?}", value().unwrap_or("")))?;
                if id == 0 {
                    return Err("rule id 0 is not allowed".into());
                }
                self.id = Some(id);
            }
            "phase" => {
                if self.is_link {
                    return Err(meta_in_link(name));
                }
                self.phase = Some(match value()? {
                    "1" => 1,
                    "2" | "request" => 2,
                    "3" => 3,
                    "4" | "response" => 4,
                    "5" | "logging" => 5,
                    v => return Err(format!("bad phase {v:?}")),
                });
            }
            "msg" => self.actions.msg = Some(parse::macro_string(value()?)?),
            "logdata" => self.actions.logdata = Some(parse::macro_string(value()?)?),
            "tag" => self.actions.tags.push(value()?.to_string()),
            "severity" => {
                let v = value()?;
                let sev = match v.parse::<u8>() {
                    Ok(n) if n <= 7 => n,
                    _ => SEVERITIES
                        .iter()
                        .position(|s| s.eq_ignore_ascii_case(v))
                        .map(|p| p as u8)
                        .ok_or_else(|| format!("bad severity {v:?}"))?,
                };
                self.actions.severity = Some(sev);
            }
            "ver" => self.actions.ver = Some(value()?.to_string()),
            "rev" => self.actions.rev = Some(value()?.to_string()),
            "maturity" => {
                self.actions.maturity = Some(value()?.parse().map_err(|_| "bad maturity")?)
            }
            "accuracy" => {
                self.actions.accuracy = Some(value()?.parse().map_err(|_| "bad accuracy")?)
            }
            "pass" | "deny" | "drop" | "block" | "allow" | "redirect" => {
                if self.is_link {
                    return Err(meta_in_link(name));
                }
                self.actions.disruptive = Some(match name {
                    "pass" => Disruptive::Pass,
                    "deny" => Disruptive::Deny,
                    "drop" => Disruptive::Drop,
                    "block" => Disruptive::Block,
                    "allow" => Disruptive::Allow(match a.value.as_deref() {
                        None => AllowScope::Transaction,
                        Some("phase") => AllowScope::Phase,
                        Some("request") => AllowScope::Request,
                        Some(v) => return Err(format!("bad allow scope {v:?}")),
                    }),
                    _ => Disruptive::Redirect(parse::macro_string(value()?)?),
                });
            }
            "status" => {
                let s: u16 = value()?.parse().map_err(|_| "bad status")?;
                if !(100..=999).contains(&s) {
                    return Err(format!("bad status {s}"));
                }
                self.actions.status = Some(s);
            }
            "log" => self.actions.log = Some(true),
            "nolog" => {
                self.actions.log = Some(false);
                self.actions.auditlog = Some(false);
            }
            "auditlog" => self.actions.auditlog = Some(true),
            "noauditlog" => self.actions.auditlog = Some(false),
            "capture" => self.actions.capture = true,
            "multiMatch" => self.actions.multi_match = true,
            "chain" => self.chain = true,
            "skip" => {
                let n: u32 = value()?.parse().map_err(|_| "bad skip count")?;
                if n == 0 {
                    return Err("skip:0 does nothing".into());
                }
                self.actions.skip = n;
            }
            "skipAfter" => self.actions.skip_after = Some(value()?.to_string()),
            "t" => {
                let v = value()?;
                if v.eq_ignore_ascii_case("none") {
                    self.transformations.clear();
                    self.t_none = true;
                } else {
                    let t = Transformation::from_name(v)
                        .ok_or_else(|| format!("unknown transformation t:{v}"))?;
                    self.transformations.push(t);
                }
            }
            "setvar" => self.actions.effects.push(Effect::SetVar(setvar(value()?)?)),
            "ctl" => self.actions.effects.push(Effect::Ctl(ctl(value()?)?)),
            "initcol" => {
                let v = value()?;
                let (coll, key) = v
                    .split_once('=')
                    .ok_or_else(|| format!("bad initcol {v:?}"))?;
                let collection = match coll.trim().to_ascii_lowercase().as_str() {
                    "ip" => Variable::Ip,
                    "global" => Variable::Global,
                    "session" => Variable::Session,
                    "user" => Variable::User,
                    c => return Err(format!("initcol: unknown collection {c:?}")),
                };
                self.actions.effects.push(Effect::InitCol {
                    collection,
                    key: parse::macro_string(key)?,
                });
            }
            _ => {
                let _ = base;
                return Err(format!("unsupported action `{name}`"));
            }
        }
        Ok(())
    }

    /// Finishes the rule, merging the phase's `SecDefaultAction`. Returns the rule and whether
    /// it opens a chain.
    #[allow(clippy::too_many_arguments)]
    fn into_rule(
        mut self,
        id: u32,
        phase: u8,
        file: &str,
        line: u32,
        kind: RuleKind,
        targets: Vec<Target>,
        operator: Operator,
        defaults: Option<&Defaults>,
    ) -> (Rule, bool) {
        let mut transformations = Vec::new();
        if !self.t_none {
            if let Some(d) = defaults {
                transformations.extend_from_slice(&d.transformations);
            }
        }
        transformations.extend_from_slice(&self.transformations);
        if !self.is_link {
            let default_disruptive = defaults
                .and_then(|d| d.actions.disruptive.clone())
                .unwrap_or(Disruptive::Pass);
            match &self.actions.disruptive {
                None => self.actions.disruptive = Some(default_disruptive),
                // `block` means "what SecDefaultAction says" at the point the rule is defined.
                Some(Disruptive::Block) => {
                    self.actions.disruptive = Some(match default_disruptive {
                        Disruptive::Block => Disruptive::Pass,
                        d => d,
                    })
                }
                Some(_) => {}
            }
            if self.actions.log.is_none() {
                self.actions.log = Some(defaults.and_then(|d| d.actions.log).unwrap_or(true));
            }
            if self.actions.auditlog.is_none() {
                self.actions.auditlog =
                    Some(defaults.and_then(|d| d.actions.auditlog).unwrap_or(true));
            }
            if self.actions.status.is_none() {
                self.actions.status = defaults.and_then(|d| d.actions.status);
            }
        }
        let rule = Rule {
            id,
            phase,
            file: file.to_string(),
            line,
            kind,
            targets,
            operator,
            transformations,
            actions: self.actions,
            chain: None,
        };
        (rule, self.chain)
    }
}

fn setvar(v: &str) -> Result<SetVar, String> {
    let (delete, v) = match v.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (lhs, rhs) = match v.split_once('=') {
        Some((l, r)) => (l, Some(r)),
        None => (v, None),
    };
    let (coll, key) = lhs
        .split_once('.')
        .ok_or_else(|| format!("setvar: {lhs:?} has no collection"))?;
    let collection = match coll.trim().to_ascii_lowercase().as_str() {
        "tx" => Variable::Tx,
        "ip" => Variable::Ip,
        "global" => Variable::Global,
        "session" => Variable::Session,
        "user" => Variable::User,
        c => return Err(format!("setvar: unknown collection {c:?}")),
    };
    let key = parse::macro_string(&key.trim().to_ascii_lowercase())?;
    let (op, value) = if delete {
        (SetVarOp::Delete, MacroString::default())
    } else {
        match rhs {
            // ModSecurity: `setvar:tx.x` without a value sets it to 1.
            None => (SetVarOp::Set, MacroString::literal("1")),
            Some(r) => match r.as_bytes().first() {
                Some(b'+') => (SetVarOp::Add, parse::macro_string(&r[1..])?),
                Some(b'-') => (SetVarOp::Sub, parse::macro_string(&r[1..])?),
                _ => (SetVarOp::Set, parse::macro_string(r)?),
            },
        }
    };
    Ok(SetVar {
        collection,
        key,
        op,
        value,
    })
}

fn ctl(v: &str) -> Result<Ctl, String> {
    let (name, value) = v
        .split_once('=')
        .ok_or_else(|| format!("ctl: {v:?} has no value"))?;
    let target = |s: &str| -> Result<TargetRef, String> {
        let specs = parse::targets(s)?;
        match specs.as_slice() {
            [t] if !t.count && !t.exclude => Ok(TargetRef {
                variable: t.variable,
                selector: t.selector.clone(),
            }),
            _ => Err(format!("ctl:{name}: expected one target, got {s:?}")),
        }
    };
    let split = |s: &str| -> Result<(String, String), String> {
        s.split_once(';')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .ok_or_else(|| format!("ctl:{name}: expected `x;TARGET`"))
    };
    Ok(match name.trim() {
        "ruleEngine" => Ctl::RuleEngine(engine_mode(value)?),
        "auditEngine" => Ctl::AuditEngine(match value.to_ascii_lowercase().as_str() {
            "on" => AuditEngine::On,
            "off" => AuditEngine::Off,
            "relevantonly" => AuditEngine::RelevantOnly,
            _ => return Err(format!("ctl:auditEngine: bad value {value:?}")),
        }),
        "requestBodyAccess" => Ctl::RequestBodyAccess(on_off_str(value)?),
        "responseBodyAccess" => Ctl::ResponseBodyAccess(on_off_str(value)?),
        "forceRequestBodyVariable" => Ctl::ForceRequestBodyVariable(on_off_str(value)?),
        "requestBodyLimit" => Ctl::RequestBodyLimit(
            value
                .parse()
                .map_err(|_| "ctl:requestBodyLimit: bad number")?,
        ),
        "requestBodyProcessor" => {
            Ctl::RequestBodyProcessor(match value.to_ascii_uppercase().as_str() {
                "URLENCODED" => BodyProcessor::UrlEncoded,
                "MULTIPART" => BodyProcessor::Multipart,
                "JSON" => BodyProcessor::Json,
                "XML" => BodyProcessor::Xml,
                _ => {
                    return Err(format!(
                        "ctl:requestBodyProcessor: unknown processor {value:?}"
                    ))
                }
            })
        }
        "ruleRemoveById" => Ctl::RuleRemoveById(parse::id_ranges(value)?),
        "ruleRemoveByTag" => Ctl::RuleRemoveByTag(value.to_string()),
        "ruleRemoveByMsg" => Ctl::RuleRemoveByMsg(value.to_string()),
        "ruleRemoveTargetById" => {
            let (ids, t) = split(value)?;
            Ctl::RuleRemoveTargetById {
                ranges: parse::id_ranges(&ids)?,
                target: target(&t)?,
            }
        }
        "ruleRemoveTargetByTag" => {
            let (tag, t) = split(value)?;
            Ctl::RuleRemoveTargetByTag {
                tag,
                target: target(&t)?,
            }
        }
        "ruleRemoveTargetByMsg" => {
            let (msg, t) = split(value)?;
            Ctl::RuleRemoveTargetByMsg {
                msg,
                target: target(&t)?,
            }
        }
        other => return Err(format!("unsupported ctl:{other}")),
    })
}

/// Resolves an operator: reads data files, parses ranges and networks.
fn operator(text: &str, base: &Path, files: &mut Vec<PathBuf>) -> Result<Operator, String> {
    let spec = parse::operator(text);
    let raw = spec.arg.clone();
    let name = spec.name.as_str();
    let (kind, arg) = match name {
        "pmFromFile" | "pmf" => {
            let mut phrases = Vec::new();
            for f in spec.arg.split_whitespace() {
                let path = base.join(f);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("@{name}: cannot read {}: {e}", path.display()))?;
                files.push(path);
                phrases.extend(data_lines(&text));
            }
            if phrases.is_empty() {
                return Err(format!("@{name}: no phrases in {:?}", spec.arg));
            }
            (OperatorKind::Pm, OperatorArg::Phrases(phrases))
        }
        "ipMatchFromFile" | "ipMatchF" => {
            let mut nets = Vec::new();
            for f in spec.arg.split_whitespace() {
                let path = base.join(f);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("@{name}: cannot read {}: {e}", path.display()))?;
                files.push(path);
                nets.extend(parse::networks(&data_lines(&text).join(","))?);
            }
            (OperatorKind::IpMatch, OperatorArg::Networks(nets))
        }
        _ => {
            let kind = OperatorKind::TABLE
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|&(_, k)| k)
                .ok_or_else(|| format!("unsupported operator @{name}"))?;
            let arg = match kind {
                OperatorKind::Rx => {
                    if spec.arg.is_empty() {
                        return Err("@rx needs a pattern".into());
                    }
                    OperatorArg::Pattern(spec.arg.clone())
                }
                OperatorKind::Pm => {
                    let phrases: Vec<String> =
                        spec.arg.split_whitespace().map(str::to_string).collect();
                    if phrases.is_empty() {
                        return Err("@pm needs phrases".into());
                    }
                    OperatorArg::Phrases(phrases)
                }
                OperatorKind::ValidateByteRange => {
                    OperatorArg::ByteSet(parse::byte_ranges(&spec.arg)?)
                }
                OperatorKind::IpMatch => OperatorArg::Networks(parse::networks(&spec.arg)?),
                OperatorKind::DetectSqli
                | OperatorKind::DetectXss
                | OperatorKind::UnconditionalMatch
                | OperatorKind::NoMatch
                | OperatorKind::ValidateUrlEncoding
                | OperatorKind::ValidateUtf8Encoding => OperatorArg::None,
                OperatorKind::Eq
                | OperatorKind::Ge
                | OperatorKind::Gt
                | OperatorKind::Le
                | OperatorKind::Lt => OperatorArg::Expand(parse::macro_string(spec.arg.trim())?),
                _ => OperatorArg::Expand(parse::macro_string(&spec.arg)?),
            };
            (kind, arg)
        }
    };
    let literals = match (&kind, &arg) {
        (OperatorKind::Rx, OperatorArg::Pattern(p)) => super::literals::required_literals(p),
        (OperatorKind::Pm, OperatorArg::Phrases(ps)) if ps.iter().all(|p| !p.is_empty()) => {
            let mut v: Vec<Vec<u8>> = ps
                .iter()
                .map(|p| p.as_bytes().to_ascii_lowercase())
                .collect();
            v.sort();
            v.dedup();
            Some(vec![v])
        }
        _ => None,
    };
    Ok(Operator {
        kind,
        negated: spec.negated,
        raw,
        arg,
        literals,
    })
}

/// Lines of a `.data` file: comments and blank lines dropped, trailing whitespace trimmed
/// (leading whitespace is part of the phrase, as in ModSecurity).
fn data_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_end())
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn engine_mode(v: &str) -> Result<RuleEngineMode, String> {
    match v.to_ascii_lowercase().as_str() {
        "on" => Ok(RuleEngineMode::On),
        "off" => Ok(RuleEngineMode::Off),
        "detectiononly" => Ok(RuleEngineMode::DetectionOnly),
        _ => Err(format!("unknown rule engine mode {v:?}")),
    }
}

fn on_off_str(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected On or Off, got {v:?}")),
    }
}

fn on_off(v: &str) -> Result<bool, DirectiveError> {
    on_off_str(v).map_err(here)
}

fn number(v: &str) -> Result<u64, DirectiveError> {
    v.parse()
        .map_err(|_| here(format!("expected a number, got {v:?}")))
}

fn limit_action(v: &str) -> Result<LimitAction, DirectiveError> {
    match v.to_ascii_lowercase().as_str() {
        "reject" => Ok(LimitAction::Reject),
        "processpartial" => Ok(LimitAction::ProcessPartial),
        _ => Err(here(format!(
            "expected Reject or ProcessPartial, got {v:?}"
        ))),
    }
}

/// Expands `${NAME}` from the environment; an unset variable is an error.
pub fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
        let name = &rest[i + 2..i + end];
        let value = std::env::var(name)
            .map_err(|_| format!("environment variable {name} is not set (needed by {s:?})"))?;
        out.push_str(&value);
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves an `Include` argument: relative to `base`, with `*` / `?` in the file name only.
fn glob(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = base.join(pattern);
    let name = full
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("bad Include path {pattern:?}"))?;
    if !name.contains(['*', '?']) {
        return Ok(vec![full]);
    }
    let dir = full.parent().unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("Include {pattern:?}: cannot list {}: {e}", dir.display()))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| wildcard(name.as_bytes(), n.as_bytes()))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(format!("Include {pattern:?} matches no file"));
    }
    Ok(out)
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Every `skipAfter` must name a marker that exists later in the configuration.
fn check_skip_after_targets(rules: &[Rule]) -> Result<(), CompileError> {
    for (i, r) in rules.iter().enumerate() {
        if let Some(m) = &r.actions.skip_after {
            let found = rules[i + 1..]
                .iter()
                .any(|x| matches!(&x.kind, RuleKind::Marker(n) if n == m))
                || rules[i + 1..].iter().any(|x| x.id.to_string() == *m);
            if !found {
                return Err(CompileError::new(
                    &r.file,
                    r.line,
                    format!("skipAfter:{m}: no such marker after rule {}", r.id),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<Program, CompileError> {
        compile_text("t.conf", text, Path::new("."))
    }

    #[test]
    fn defaults_chain_and_block() {
        let p = compile(
            "SecDefaultAction \"phase:2,log,auditlog,pass\"\n\
             SecRule ARGS \"@rx a\" \"id:1,phase:2,block,t:none,t:lowercase,chain\"\n\
             SecRule MATCHED_VAR \"@rx b\" \"setvar:tx.x=+1\"\n\
             SecMarker END\n",
        )
        .unwrap();
        assert_eq!(p.rules.len(), 2);
        let r = &p.rules[0];
        assert_eq!(r.actions.disruptive, Some(Disruptive::Pass));
        assert_eq!(r.actions.log, Some(true));
        assert_eq!(r.transformations, vec![Transformation::Lowercase]);
        let link = r.chain.as_ref().unwrap();
        assert_eq!(link.phase, 2);
        assert_eq!(link.actions.effects.len(), 1);
    }

    #[test]
    fn errors_are_located() {
        let e = compile("SecRule ARGS \"@rx a\" \"id:1\"\nSecFoo bar\n").unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "unsupported directive SecFoo")
        );
        let e = compile("SecRule ARGS \"@nope a\" \"id:1\"\n").unwrap_err();
        assert!(e.message.contains("@nope"));
        let e = compile("SecRule ARGS \"@rx a\" \"id:1,exec:/bin/sh\"\n").unwrap_err();
        assert!(e.message.contains("exec"));
        let e = compile("SecRule ARGS \"@rx a\" \"id:1,chain\"\n").unwrap_err();
        assert!(e.message.contains("chain"));
        let e = compile("SecRule ARGS \"@rx a\" \"id:1\"\nSecRule ARGS \"@rx a\" \"id:1\"\n")
            .unwrap_err();
        assert!(e.message.contains("duplicate"));
        let e = compile("SecRule ARGS \"@rx a\" \"id:1,skipAfter:NOPE\"\n").unwrap_err();
        assert!(e.message.contains("NOPE"));
    }

    #[test]
    fn update_and_remove_directives() {
        let p = compile(
            "SecRule ARGS|REQUEST_COOKIES \"@rx a\" \"id:1,phase:2,pass\"\n\
             SecRule ARGS \"@rx a\" \"id:2,phase:2,pass\"\n\
             SecRule ARGS \"@rx a\" \"id:3,phase:2,pass,tag:t\"\n\
             SecRuleUpdateTargetById 1 \"!ARGS:foo\"\n\
             SecRuleRemoveTargetById 1 REQUEST_COOKIES\n\
             SecRuleUpdateActionById 2 \"ctl:ruleEngine=On\"\n\
             SecRuleRemoveByTag t\n",
        )
        .unwrap();
        assert_eq!(p.rules.len(), 2);
        assert_eq!(p.rules[0].targets.len(), 1);
        assert_eq!(
            p.rules[0].targets[0].exclusions,
            vec![Selector::Key("foo".into())]
        );
        assert_eq!(
            p.rules[1].actions.effects,
            vec![Effect::Ctl(Ctl::RuleEngine(RuleEngineMode::On))]
        );
    }

    #[test]
    fn setvar_and_ctl_forms() {
        let s = setvar("tx.header_name_%{tx.0}=/%{tx.0}/").unwrap();
        assert_eq!(s.op, SetVarOp::Set);
        assert_eq!(s.key.parts.len(), 2);
        assert_eq!(setvar("tx.a=+%{tx.b}").unwrap().op, SetVarOp::Add);
        assert_eq!(setvar("!tx.a").unwrap().op, SetVarOp::Delete);
        match ctl("ruleRemoveTargetByTag=attack-xss;XML://@*").unwrap() {
            Ctl::RuleRemoveTargetByTag { tag, target } => {
                assert_eq!(tag, "attack-xss");
                assert_eq!(target.selector, Selector::XPath("//@*".into()));
            }
            c => panic!("{c:?}"),
        }
        assert_eq!(
            ctl("ruleRemoveById=1-999999").unwrap(),
            Ctl::RuleRemoveById(vec![(1, 999999)])
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard(b"*.conf", b"REQUEST-901.conf"));
        assert!(!wildcard(b"*.conf", b"x.conf.example"));
        assert!(wildcard(b"a?c", b"abc"));
    }
}
