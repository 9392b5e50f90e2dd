//! The compiled form of a rule file: plain data, no behaviour.
//!
//! This is what the compiler produces and what the engine lowers into its executable ruleset
//! (compiled regexes, automata, interned TX slots). It borrows nothing from the parser and
//! holds no engine types, so `build.rs` can produce it and the binary can embed it.

use serde::{Deserialize, Serialize};

pub use super::transformation::Transformation;

/// A whole configuration: engine settings plus rules in evaluation order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub settings: Settings,
    /// Top-level rules (chain starters, `SecAction`s and markers) in configuration order.
    pub rules: Vec<Rule>,
}

/// Engine settings from `Sec*` configuration directives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub rule_engine: RuleEngineMode,
    pub request_body_access: bool,
    pub response_body_access: bool,
    /// `SecRequestBodyLimit`: bytes of request body processed.
    pub request_body_limit: u64,
    /// `SecRequestBodyNoFilesLimit`: bytes of request body excluding file parts.
    pub request_body_no_files_limit: u64,
    pub request_body_limit_action: LimitAction,
    pub response_body_limit: u64,
    pub response_body_limit_action: LimitAction,
    /// `SecResponseBodyMimeType`: response content types whose body is inspected.
    pub response_body_mime_types: Vec<String>,
    /// `SecRequestBodyJsonDepthLimit`.
    pub json_depth_limit: u32,
    /// `SecArgumentsLimit`: most arguments parsed per request.
    pub arguments_limit: u32,
    pub audit_engine: AuditEngine,
    /// `SecComponentSignature` values, for the audit log's producer field.
    pub component_signatures: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        // ModSecurity's built-in defaults (not the recommended configuration's values).
        Settings {
            rule_engine: RuleEngineMode::Off,
            request_body_access: false,
            response_body_access: false,
            request_body_limit: 134_217_728,
            request_body_no_files_limit: 1_048_576,
            request_body_limit_action: LimitAction::Reject,
            response_body_limit: 524_288,
            response_body_limit_action: LimitAction::ProcessPartial,
            response_body_mime_types: vec!["text/plain".into(), "text/html".into()],
            json_depth_limit: 1024,
            arguments_limit: 1000,
            audit_engine: AuditEngine::RelevantOnly,
            component_signatures: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleEngineMode {
    On,
    Off,
    DetectionOnly,
}

impl RuleEngineMode {
    pub fn name(self) -> &'static str {
        match self {
            RuleEngineMode::On => "On",
            RuleEngineMode::Off => "Off",
            RuleEngineMode::DetectionOnly => "DetectionOnly",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitAction {
    Reject,
    ProcessPartial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditEngine {
    On,
    Off,
    RelevantOnly,
}

/// One rule, or one link of a chain (`chain` holds the next link).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Rule id; 0 for chain links after the first and for markers.
    pub id: u32,
    /// Phase 1–5 (a chain link inherits its starter's phase).
    pub phase: u8,
    pub file: String,
    pub line: u32,
    pub kind: RuleKind,
    pub targets: Vec<Target>,
    pub operator: Operator,
    pub transformations: Vec<Transformation>,
    pub actions: Actions,
    pub chain: Option<Box<Rule>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleKind {
    /// `SecRule`: targets, operator, actions.
    Rule,
    /// `SecAction`: actions only, always matches.
    Action,
    /// `SecMarker`: a named position for `skipAfter`.
    Marker(String),
}

/// One target of a rule: a variable, optionally narrowed by a selector, possibly counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub variable: Variable,
    pub selector: Selector,
    /// `&VAR`: the number of values instead of the values.
    pub count: bool,
    /// `!VAR:key` exclusions that apply to this target's collection.
    pub exclusions: Vec<Selector>,
}

/// Narrows a collection to some of its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Selector {
    All,
    /// A static key, compared case-insensitively (stored lower-cased).
    Key(String),
    /// `/regex/` over keys (case-insensitive as ModSecurity compiles it).
    Regex(String),
    /// An XPath expression for `XML` (only `/*` and `//@*` are supported).
    XPath(String),
}

/// Variables the engine knows. A name outside this list is a compile error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Variable {
    Args,
    ArgsCombinedSize,
    ArgsGet,
    ArgsGetNames,
    ArgsNames,
    ArgsPost,
    ArgsPostNames,
    Duration,
    Env,
    Files,
    FilesCombinedSize,
    FilesNames,
    FilesSizes,
    FullRequestLength,
    Global,
    HighestSeverity,
    InboundDataError,
    Ip,
    MatchedVar,
    MatchedVarName,
    MatchedVars,
    MatchedVarsNames,
    MultipartBoundaryQuoted,
    MultipartBoundaryWhitespace,
    MultipartCrlfLfLines,
    MultipartDataAfter,
    MultipartDataBefore,
    MultipartFileLimitExceeded,
    MultipartFilename,
    MultipartHeaderFolding,
    MultipartInvalidHeaderFolding,
    MultipartInvalidPart,
    MultipartInvalidQuoting,
    MultipartLfLine,
    MultipartMissingSemicolon,
    MultipartName,
    MultipartPartHeaders,
    MultipartStrictError,
    MultipartUnmatchedBoundary,
    OutboundDataError,
    QueryString,
    RemoteAddr,
    RemotePort,
    ReqbodyError,
    ReqbodyErrorMsg,
    ReqbodyProcessor,
    ReqbodyProcessorError,
    ReqbodyProcessorErrorMsg,
    RequestBasename,
    RequestBody,
    RequestBodyLength,
    RequestCookies,
    RequestCookiesNames,
    RequestFilename,
    RequestHeaders,
    RequestHeadersNames,
    RequestLine,
    RequestMethod,
    RequestProtocol,
    RequestUri,
    RequestUriRaw,
    ResponseBody,
    ResponseContentLength,
    ResponseContentType,
    ResponseHeaders,
    ResponseHeadersNames,
    ResponseProtocol,
    ResponseStatus,
    Rule,
    ServerAddr,
    ServerName,
    ServerPort,
    Session,
    StatusLine,
    Time,
    TimeEpoch,
    Tx,
    UniqueId,
    UrlencodedError,
    User,
    Xml,
}

impl Variable {
    /// SecLang names (upper-case, as written in rules).
    pub const TABLE: &'static [(&'static str, Variable)] = &[
        ("ARGS", Variable::Args),
        ("ARGS_COMBINED_SIZE", Variable::ArgsCombinedSize),
        ("ARGS_GET", Variable::ArgsGet),
        ("ARGS_GET_NAMES", Variable::ArgsGetNames),
        ("ARGS_NAMES", Variable::ArgsNames),
        ("ARGS_POST", Variable::ArgsPost),
        ("ARGS_POST_NAMES", Variable::ArgsPostNames),
        ("DURATION", Variable::Duration),
        ("ENV", Variable::Env),
        ("FILES", Variable::Files),
        ("FILES_COMBINED_SIZE", Variable::FilesCombinedSize),
        ("FILES_NAMES", Variable::FilesNames),
        ("FILES_SIZES", Variable::FilesSizes),
        ("FULL_REQUEST_LENGTH", Variable::FullRequestLength),
        ("GLOBAL", Variable::Global),
        ("HIGHEST_SEVERITY", Variable::HighestSeverity),
        ("INBOUND_DATA_ERROR", Variable::InboundDataError),
        ("IP", Variable::Ip),
        ("MATCHED_VAR", Variable::MatchedVar),
        ("MATCHED_VAR_NAME", Variable::MatchedVarName),
        ("MATCHED_VARS", Variable::MatchedVars),
        ("MATCHED_VARS_NAMES", Variable::MatchedVarsNames),
        (
            "MULTIPART_BOUNDARY_QUOTED",
            Variable::MultipartBoundaryQuoted,
        ),
        (
            "MULTIPART_BOUNDARY_WHITESPACE",
            Variable::MultipartBoundaryWhitespace,
        ),
        ("MULTIPART_CRLF_LF_LINES", Variable::MultipartCrlfLfLines),
        ("MULTIPART_DATA_AFTER", Variable::MultipartDataAfter),
        ("MULTIPART_DATA_BEFORE", Variable::MultipartDataBefore),
        (
            "MULTIPART_FILE_LIMIT_EXCEEDED",
            Variable::MultipartFileLimitExceeded,
        ),
        ("MULTIPART_FILENAME", Variable::MultipartFilename),
        ("MULTIPART_HEADER_FOLDING", Variable::MultipartHeaderFolding),
        (
            "MULTIPART_INVALID_HEADER_FOLDING",
            Variable::MultipartInvalidHeaderFolding,
        ),
        ("MULTIPART_INVALID_PART", Variable::MultipartInvalidPart),
        (
            "MULTIPART_INVALID_QUOTING",
            Variable::MultipartInvalidQuoting,
        ),
        ("MULTIPART_LF_LINE", Variable::MultipartLfLine),
        (
            "MULTIPART_MISSING_SEMICOLON",
            Variable::MultipartMissingSemicolon,
        ),
        ("MULTIPART_NAME", Variable::MultipartName),
        ("MULTIPART_PART_HEADERS", Variable::MultipartPartHeaders),
        ("MULTIPART_STRICT_ERROR", Variable::MultipartStrictError),
        (
            "MULTIPART_UNMATCHED_BOUNDARY",
            Variable::MultipartUnmatchedBoundary,
        ),
        ("OUTBOUND_DATA_ERROR", Variable::OutboundDataError),
        ("QUERY_STRING", Variable::QueryString),
        ("REMOTE_ADDR", Variable::RemoteAddr),
        ("REMOTE_PORT", Variable::RemotePort),
        ("REQBODY_ERROR", Variable::ReqbodyError),
        ("REQBODY_ERROR_MSG", Variable::ReqbodyErrorMsg),
        ("REQBODY_PROCESSOR", Variable::ReqbodyProcessor),
        ("REQBODY_PROCESSOR_ERROR", Variable::ReqbodyProcessorError),
        (
            "REQBODY_PROCESSOR_ERROR_MSG",
            Variable::ReqbodyProcessorErrorMsg,
        ),
        ("REQUEST_BASENAME", Variable::RequestBasename),
        ("REQUEST_BODY", Variable::RequestBody),
        ("REQUEST_BODY_LENGTH", Variable::RequestBodyLength),
        ("REQUEST_COOKIES", Variable::RequestCookies),
        ("REQUEST_COOKIES_NAMES", Variable::RequestCookiesNames),
        ("REQUEST_FILENAME", Variable::RequestFilename),
        ("REQUEST_HEADERS", Variable::RequestHeaders),
        ("REQUEST_HEADERS_NAMES", Variable::RequestHeadersNames),
        ("REQUEST_LINE", Variable::RequestLine),
        ("REQUEST_METHOD", Variable::RequestMethod),
        ("REQUEST_PROTOCOL", Variable::RequestProtocol),
        ("REQUEST_URI", Variable::RequestUri),
        ("REQUEST_URI_RAW", Variable::RequestUriRaw),
        ("RESPONSE_BODY", Variable::ResponseBody),
        ("RESPONSE_CONTENT_LENGTH", Variable::ResponseContentLength),
        ("RESPONSE_CONTENT_TYPE", Variable::ResponseContentType),
        ("RESPONSE_HEADERS", Variable::ResponseHeaders),
        ("RESPONSE_HEADERS_NAMES", Variable::ResponseHeadersNames),
        ("RESPONSE_PROTOCOL", Variable::ResponseProtocol),
        ("RESPONSE_STATUS", Variable::ResponseStatus),
        ("RULE", Variable::Rule),
        ("SERVER_ADDR", Variable::ServerAddr),
        ("SERVER_NAME", Variable::ServerName),
        ("SERVER_PORT", Variable::ServerPort),
        ("SESSION", Variable::Session),
        ("STATUS_LINE", Variable::StatusLine),
        ("TIME", Variable::Time),
        ("TIME_EPOCH", Variable::TimeEpoch),
        ("TX", Variable::Tx),
        ("UNIQUE_ID", Variable::UniqueId),
        ("URLENCODED_ERROR", Variable::UrlencodedError),
        ("USER", Variable::User),
        ("XML", Variable::Xml),
    ];

    pub fn from_name(name: &str) -> Option<Variable> {
        Self::TABLE
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| v)
    }

    pub fn name(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|&&(_, v)| v == self)
            .map(|&(n, _)| n)
            .unwrap_or("?")
    }

    /// Whether the variable is a collection (takes a `:key` selector).
    pub fn is_collection(self) -> bool {
        use Variable::*;
        matches!(
            self,
            Args | ArgsGet
                | ArgsGetNames
                | ArgsNames
                | ArgsPost
                | ArgsPostNames
                | Env
                | Files
                | FilesNames
                | FilesSizes
                | Global
                | Ip
                | MatchedVars
                | MatchedVarsNames
                | MultipartFilename
                | MultipartName
                | MultipartPartHeaders
                | RequestCookies
                | RequestCookiesNames
                | RequestHeaders
                | RequestHeadersNames
                | ResponseHeaders
                | ResponseHeadersNames
                | Rule
                | Session
                | Tx
                | User
                | Xml
        )
    }
}

/// An operator with its argument; `negated` is `!@op`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operator {
    pub kind: OperatorKind,
    pub negated: bool,
    /// The argument as written (after quote unescaping), for logs.
    pub raw: String,
    pub arg: OperatorArg,
    /// Required literals (lower-cased) for the engine's prefilter: sets that are all required,
    /// anything this operator matches contains one literal of each. `None` when no useful set
    /// exists (see `literals`).
    pub literals: Option<Vec<Vec<Vec<u8>>>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OperatorArg {
    None,
    /// A string that may contain macros (`%{tx.x}`), expanded per evaluation.
    Expand(MacroString),
    /// A regex pattern (never macro-expanded, as in ModSecurity).
    Pattern(String),
    /// A list of phrases (`@pm`, `@pmFromFile` contents), in file order.
    Phrases(Vec<String>),
    /// `@validateByteRange`: the allowed bytes as a 256-bit set.
    ByteSet([u64; 4]),
    /// `@ipMatch`: networks as (address bytes, prefix length); v4 as 4 bytes, v6 as 16.
    Networks(Vec<(Vec<u8>, u8)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperatorKind {
    BeginsWith,
    Contains,
    ContainsWord,
    DetectSqli,
    DetectXss,
    EndsWith,
    Eq,
    Ge,
    Gt,
    IpMatch,
    Le,
    Lt,
    NoMatch,
    Pm,
    Rx,
    Streq,
    StrMatch,
    UnconditionalMatch,
    ValidateByteRange,
    ValidateUrlEncoding,
    ValidateUtf8Encoding,
    Within,
}

impl OperatorKind {
    /// SecLang names; `pmf` / `pmFromFile` / `ipMatchFromFile` are resolved at compile time
    /// into `Pm` / `IpMatch` with the file's contents.
    pub const TABLE: &'static [(&'static str, OperatorKind)] = &[
        ("beginsWith", OperatorKind::BeginsWith),
        ("contains", OperatorKind::Contains),
        ("containsWord", OperatorKind::ContainsWord),
        ("detectSQLi", OperatorKind::DetectSqli),
        ("detectXSS", OperatorKind::DetectXss),
        ("endsWith", OperatorKind::EndsWith),
        ("eq", OperatorKind::Eq),
        ("ge", OperatorKind::Ge),
        ("gt", OperatorKind::Gt),
        ("ipMatch", OperatorKind::IpMatch),
        ("le", OperatorKind::Le),
        ("lt", OperatorKind::Lt),
        ("noMatch", OperatorKind::NoMatch),
        ("pm", OperatorKind::Pm),
        ("rx", OperatorKind::Rx),
        ("streq", OperatorKind::Streq),
        ("strmatch", OperatorKind::StrMatch),
        ("unconditionalMatch", OperatorKind::UnconditionalMatch),
        ("validateByteRange", OperatorKind::ValidateByteRange),
        ("validateUrlEncoding", OperatorKind::ValidateUrlEncoding),
        ("validateUtf8Encoding", OperatorKind::ValidateUtf8Encoding),
        ("within", OperatorKind::Within),
    ];

    pub fn name(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|&&(_, k)| k == self)
            .map(|&(n, _)| n)
            .unwrap_or("?")
    }
}

/// A string with `%{...}` macros, pre-split at compile time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacroString {
    pub parts: Vec<MacroPart>,
}

impl MacroString {
    pub fn literal(s: &str) -> MacroString {
        MacroString {
            parts: vec![MacroPart::Literal(s.to_string())],
        }
    }

    /// The text if it contains no macro.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [MacroPart::Literal(s)] => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MacroPart {
    Literal(String),
    /// `%{VAR}` or `%{COLL.key}`; `key` is lower-cased for collections.
    Var {
        variable: Variable,
        key: Option<String>,
    },
}

/// Everything a rule does besides matching.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Actions {
    pub msg: Option<MacroString>,
    pub logdata: Option<MacroString>,
    pub tags: Vec<String>,
    pub severity: Option<u8>,
    pub ver: Option<String>,
    pub rev: Option<String>,
    pub maturity: Option<u8>,
    pub accuracy: Option<u8>,
    pub disruptive: Option<Disruptive>,
    pub status: Option<u16>,
    /// `log` / `nolog`; `None` inherits (default: log).
    pub log: Option<bool>,
    /// `auditlog` / `noauditlog`; `None` inherits (default: follows `log`).
    pub auditlog: Option<bool>,
    pub capture: bool,
    pub multi_match: bool,
    pub skip: u32,
    pub skip_after: Option<String>,
    /// Non-disruptive effects, in the order written.
    pub effects: Vec<Effect>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Disruptive {
    Pass,
    Deny,
    Drop,
    /// `block`: resolved at evaluation time to the phase's default disruptive action.
    Block,
    /// `allow`, `allow:phase`, `allow:request`.
    Allow(AllowScope),
    Redirect(MacroString),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllowScope {
    /// Skip the rest of the transaction (all phases).
    Transaction,
    /// Skip the rest of the current phase.
    Phase,
    /// Skip the rest of the request phases (1–2).
    Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    SetVar(SetVar),
    Ctl(Ctl),
    /// `initcol:coll=key`: persistent collections are not kept between transactions here;
    /// the collection starts empty for each transaction (documented in the README).
    InitCol {
        collection: Variable,
        key: MacroString,
    },
}

/// `setvar:coll.key=value`, `=+n`, `=-n`, `!coll.key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetVar {
    pub collection: Variable,
    /// Lower-cased key; may contain macros.
    pub key: MacroString,
    pub op: SetVarOp,
    pub value: MacroString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetVarOp {
    Set,
    Add,
    Sub,
    Delete,
}

/// `ctl:` actions: per-transaction configuration changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Ctl {
    RuleEngine(RuleEngineMode),
    AuditEngine(AuditEngine),
    RequestBodyAccess(bool),
    ResponseBodyAccess(bool),
    RequestBodyProcessor(BodyProcessor),
    ForceRequestBodyVariable(bool),
    RequestBodyLimit(u64),
    /// Remove rules whose id is within any of the inclusive ranges.
    RuleRemoveById(Vec<(u32, u32)>),
    RuleRemoveByTag(String),
    RuleRemoveByMsg(String),
    RuleRemoveTargetById {
        ranges: Vec<(u32, u32)>,
        target: TargetRef,
    },
    RuleRemoveTargetByTag {
        tag: String,
        target: TargetRef,
    },
    RuleRemoveTargetByMsg {
        msg: String,
        target: TargetRef,
    },
}

/// A `VAR` or `VAR:key` reference as used by target-removal ctl actions and directives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRef {
    pub variable: Variable,
    pub selector: Selector,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyProcessor {
    UrlEncoded,
    Multipart,
    Json,
    Xml,
}

impl BodyProcessor {
    pub fn name(self) -> &'static str {
        match self {
            BodyProcessor::UrlEncoded => "URLENCODED",
            BodyProcessor::Multipart => "MULTIPART",
            BodyProcessor::Json => "JSON",
            BodyProcessor::Xml => "XML",
        }
    }
}

/// Severity names in ModSecurity's numbering (0 = EMERGENCY … 7 = DEBUG).
pub const SEVERITIES: [&str; 8] = [
    "EMERGENCY",
    "ALERT",
    "CRITICAL",
    "ERROR",
    "WARNING",
    "NOTICE",
    "INFO",
    "DEBUG",
];
