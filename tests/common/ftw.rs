//! The go-ftw test format (CRS `tests/regression/tests/**/*.y*ml`) for our harnesses: loading,
//! turning each stage into the request the WAF would see, and scoring a stage from WAF log lines
//! exactly as go-ftw does.
//!
//! Owns: the YAML model (strict on `input`/`output` keys, so a go-ftw feature we do not emulate
//! fails loudly instead of being ignored), the stage → `check` JSON line conversion, scoring.
//! Must not: run processes or know where the log lines come from (the `check` runner in
//! `tests/crs_regression.rs` and a later HAProxy replay both feed [`score_stage`]).
//!
//! Conversion follows the wire, not the YAML: a stage is first serialised as go-ftw v2 writes
//! it on the socket ([`wire::build_go_ftw_request`]; `encoded_request` is those bytes already),
//! then parsed as the web server in front of the WAF parses it
//! ([`wire::parse_server_request`]). Notable consequences, all go-ftw or server behaviour:
//! - `headers` is a YAML map; go-ftw (a Go map) writes it **sorted by name** (byte order), not
//!   in file order, then appends the headers it autocompletes;
//! - an unescaped `application/x-www-form-urlencoded` body is URL-encoded by go-ftw;
//! - the body the WAF sees is framed by `Content-Length` / chunking, so a body sent without
//!   either (`autocomplete_headers: false`) is not a body at all.
//!
//! The backend is modelled on albedo (the CRS test backend) behind Coraza's test harness, which
//! forces `Content-Type: text/plain` on every response: `POST /reflect` answers with the JSON
//! body's `status`/`headers`/`body`/`encodedBody`; every other request gets an empty 200.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::wire::{self, base64_encode, ClientRequest, ServerRequest};

/// The client address go-ftw's requests come from in every CRS setup.
pub const REMOTE_ADDR: &str = "127.0.0.1";

// ---------------------------------------------------------------------------------------------
// YAML model
// ---------------------------------------------------------------------------------------------

/// A YAML scalar taken as its source text, as Go's YAML decoders do when the target is a string
/// (`Content-Length: 7` is the header value `"7"`, `version: 1.1` the string `"1.1"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// `headers`: a YAML mapping kept as (name, value) pairs in file order. A name repeated in the
/// same mapping is rejected (Go's YAML decoders refuse it too, and it would be ambiguous).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for HeaderMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = HeaderMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of header names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderMap, A::Error> {
                let mut pairs: Vec<(String, String)> = Vec::new();
                while let Some(Text(name)) = map.next_key::<Text>()? {
                    let Text(value) = map.next_value::<Text>()?;
                    if pairs.iter().any(|(n, _)| *n == name) {
                        return Err(de::Error::custom(format!("duplicate header key {name:?}")));
                    }
                    pairs.push((name, value));
                }
                Ok(HeaderMap(pairs))
            }
        }
        d.deserialize_map(MapVisitor)
    }
}

/// One YAML file.
#[derive(Debug, Deserialize)]
pub struct FtwFile {
    pub rule_id: u64,
    #[serde(default)]
    pub tests: Vec<FtwTestYaml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtwTestYaml {
    pub test_id: Option<u64>,
    #[serde(default)]
    pub desc: Option<String>,
    #[serde(default)]
    pub test_title: Option<String>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub input: Input,
    #[serde(default)]
    pub output: Option<Output>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `stages[].input`. Only keys whose meaning we reproduce are accepted; `dest_addr`, `port`
/// and `protocol` only say where go-ftw connects and do not change the request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub dest_addr: Option<Text>,
    pub port: Option<u16>,
    pub protocol: Option<Text>,
    pub method: Option<Text>,
    pub uri: Option<Text>,
    pub version: Option<Text>,
    pub headers: Option<HeaderMap>,
    pub data: Option<Text>,
    pub encoded_request: Option<Text>,
    pub autocomplete_headers: Option<bool>,
}

/// `output.status`: go-ftw accepts a single code or a list.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum StatusExpect {
    One(u16),
    Any(Vec<u16>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub status: Option<StatusExpect>,
    pub expect_error: Option<bool>,
    pub retry_once: Option<bool>,
    #[serde(default)]
    pub log: LogExpect,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogExpect {
    #[serde(default)]
    pub expect_ids: Vec<u64>,
    #[serde(default)]
    pub no_expect_ids: Vec<u64>,
    pub match_regex: Option<String>,
    pub no_match_regex: Option<String>,
}

/// A loaded test: `id` is go-ftw's `<rule_id>-<test_id>`.
#[derive(Debug, Clone)]
pub struct FtwTest {
    pub id: String,
    pub rule_id: u64,
    pub test_id: u64,
    pub desc: Option<String>,
    pub file: PathBuf,
    pub stages: Vec<Stage>,
}

impl FtwTest {
    /// The `check` line id of stage `index` (0-based): `<test id>#<stage number from 1>`.
    pub fn stage_id(&self, index: usize) -> String {
        format!("{}#{}", self.id, index + 1)
    }

    /// A test counts when at least one of its stages has log expectations.
    pub fn is_scorable(&self) -> bool {
        self.stages.iter().any(|s| stage_kind(s).is_scorable())
    }
}

/// Errors while loading test files.
#[derive(Debug)]
pub enum LoadError {
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    Yaml {
        path: PathBuf,
        error: serde_yaml::Error,
    },
    DuplicateTest {
        id: String,
        first: PathBuf,
        second: PathBuf,
    },
    NoTests {
        dir: PathBuf,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, error } => write!(f, "reading {}: {error}", path.display()),
            LoadError::Yaml { path, error } => write!(f, "parsing {}: {error}", path.display()),
            LoadError::DuplicateTest { id, first, second } => write!(
                f,
                "duplicate test {id} in {} and {}",
                first.display(),
                second.display()
            ),
            LoadError::NoTests { dir } => {
                write!(f, "no go-ftw tests found under {}", dir.display())
            }
        }
    }
}

/// go-ftw's default glob `*.y*ml`: the name has an extension starting with `y` and ending in
/// `ml` (`.yaml`, `.yml`; CRS ships `999999.yml` next to the `.yaml` files).
fn is_ftw_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.starts_with('y') && e.ends_with("ml") && e.len() >= 3)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |error| LoadError::Io {
        path: dir.to_path_buf(),
        error,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if is_ftw_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Parses one file's text. A file with no document (comments only) holds no tests.
pub fn parse_file(path: &Path, text: &str) -> Result<Vec<FtwTest>, LoadError> {
    let yaml = |error| LoadError::Yaml {
        path: path.to_path_buf(),
        error,
    };
    let doc: Option<FtwFile> = serde_yaml::from_str(text).map_err(yaml)?;
    let Some(file) = doc else {
        return Ok(Vec::new());
    };
    Ok(file
        .tests
        .into_iter()
        .enumerate()
        .map(|(position, t)| {
            // ftw-tests-schema: a missing test_id is inferred from the position (from 1).
            let test_id = t.test_id.unwrap_or(position as u64 + 1);
            FtwTest {
                id: format!("{}-{}", file.rule_id, test_id),
                rule_id: file.rule_id,
                test_id,
                desc: t.desc.or(t.test_title),
                file: path.to_path_buf(),
                stages: t.stages,
            }
        })
        .collect())
}

/// Loads every go-ftw file under `dir` (recursively, sorted by path). Duplicate test ids and an
/// empty result are errors.
pub fn load_tests(dir: &Path) -> Result<Vec<FtwTest>, LoadError> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    let mut tests = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|error| LoadError::Io {
            path: path.clone(),
            error,
        })?;
        for test in parse_file(&path, &text)? {
            if let Some(first) = seen.insert(test.id.clone(), path.clone()) {
                return Err(LoadError::DuplicateTest {
                    id: test.id,
                    first,
                    second: path,
                });
            }
            tests.push(test);
        }
    }
    if tests.is_empty() {
        return Err(LoadError::NoTests {
            dir: dir.to_path_buf(),
        });
    }
    Ok(tests)
}

// ---------------------------------------------------------------------------------------------
// Stage → request → `check` line
// ---------------------------------------------------------------------------------------------

/// Errors turning a stage into a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertError {
    /// `data` and `encoded_request` together (go-ftw refuses the stage too).
    DataAndEncodedRequest,
    /// `encoded_request` is not valid base64.
    EncodedRequest(wire::Base64Error),
    /// `data` holds `{{`: go-ftw would run it as a Go template, which we do not emulate.
    TemplateData,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::DataAndEncodedRequest => {
                f.write_str("stage sets both data and encoded_request")
            }
            ConvertError::EncodedRequest(e) => write!(f, "encoded_request: {e}"),
            ConvertError::TemplateData => {
                f.write_str("data contains a Go template ({{), which is not emulated")
            }
        }
    }
}

/// The exact bytes go-ftw v2 writes for this stage.
pub fn stage_wire_bytes(input: &Input) -> Result<Vec<u8>, ConvertError> {
    if let Some(Text(encoded)) = &input.encoded_request {
        if !encoded.is_empty() {
            if input.data.as_ref().is_some_and(|Text(d)| !d.is_empty()) {
                return Err(ConvertError::DataAndEncodedRequest);
            }
            return wire::base64_decode(encoded).map_err(ConvertError::EncodedRequest);
        }
    }
    let data = input.data.as_ref().map(|Text(d)| d.as_str()).unwrap_or("");
    if data.contains("{{") {
        return Err(ConvertError::TemplateData);
    }
    let text = |v: &Option<Text>, default: &str| {
        v.as_ref()
            .map_or_else(|| default.to_owned(), |Text(s)| s.clone())
    };
    let mut headers = input.headers.clone().unwrap_or_default().0;
    // Go's map → NewHeaderFromMap sorts the names (byte order).
    headers.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(wire::build_go_ftw_request(&ClientRequest {
        method: text(&input.method, "GET"),
        uri: text(&input.uri, "/"),
        version: text(&input.version, "HTTP/1.1"),
        headers,
        data: data.as_bytes().to_vec(),
        autocomplete_headers: input.autocomplete_headers.unwrap_or(true),
    }))
}

/// The response the backend sends, as the WAF sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendResponse {
    pub status: u16,
    pub headers: Vec<wire::HeaderPair>,
    pub body: Vec<u8>,
}

/// albedo's `/reflect` specification (fields it reads; unknown fields are ignored, as Go's
/// `encoding/json` does).
#[derive(Debug, Default, Deserialize)]
struct ReflectSpec {
    #[serde(default)]
    status: i64,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: String,
    #[serde(default, rename = "encodedBody")]
    encoded_body: String,
}

/// The backend's answer to `req` (albedo behind Coraza's harness, see the module doc).
/// Headers: the reflected ones (sorted by name; Go iterates a map), then `Content-Type:
/// text/plain` unless reflected, then `Content-Length`. `Date` is left out (not reproducible).
pub fn backend_response(req: &ServerRequest) -> BackendResponse {
    let mut headers: Vec<wire::HeaderPair> = Vec::new();
    let (status, body) = if req.method == b"POST"
        && matches!(req.path(), b"/reflect" | b"/reflect/")
    {
        match serde_json::from_slice::<ReflectSpec>(&req.body) {
            Err(_) => (400, b"Invalid JSON in request body".to_vec()),
            Ok(spec) if (spec.status > 0 && spec.status < 100) || spec.status >= 600 => (
                400,
                format!("Invalid status code: {}", spec.status).into_bytes(),
            ),
            Ok(spec) => {
                for (name, value) in &spec.headers {
                    headers.push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
                }
                let status = u16::try_from(spec.status)
                    .ok()
                    .filter(|s| *s != 0)
                    .unwrap_or(200);
                let body = if !spec.body.is_empty() {
                    spec.body.into_bytes()
                } else if spec.encoded_body.is_empty() {
                    Vec::new()
                } else {
                    wire::base64_decode(&spec.encoded_body)
                        .unwrap_or_else(|_| b"invalid base64 encoding of response body".to_vec())
                };
                (status, body)
            }
        }
    } else {
        (200, Vec::new())
    };
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(b"content-type"))
    {
        headers.push((b"Content-Type".to_vec(), b"text/plain".to_vec()));
    }
    headers.push((
        b"Content-Length".to_vec(),
        body.len().to_string().into_bytes(),
    ));
    BackendResponse {
        status,
        headers,
        body,
    }
}

/// Bytes as a JSON string of code points U+0000..U+00FF (the contract's "latin-1" strings).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Adds `headers` (ASCII-only) or the byte-exact `headers_b64` form.
fn put_headers(obj: &mut Map<String, Value>, headers: &[wire::HeaderPair]) {
    if headers.iter().all(|(n, v)| n.is_ascii() && v.is_ascii()) {
        let list: Vec<Value> = headers
            .iter()
            .map(|(n, v)| json!([latin1(n), latin1(v)]))
            .collect();
        obj.insert("headers".into(), Value::Array(list));
    } else {
        let list: Vec<Value> = headers
            .iter()
            .map(|(n, v)| json!([base64_encode(n), base64_encode(v)]))
            .collect();
        obj.insert("headers_b64".into(), Value::Array(list));
    }
}

/// The `check` input object for one request and the backend's response to it. ASCII-only URIs
/// and headers are sent as strings, anything else in the byte-exact `_b64` forms; method and
/// version are latin-1 strings; `version` is the whole protocol token as sent.
pub fn check_input(id: &str, req: &ServerRequest, resp: &BackendResponse) -> Value {
    let mut obj = Map::new();
    obj.insert("id".into(), json!(id));
    obj.insert("method".into(), json!(latin1(&req.method)));
    if req.uri.is_ascii() {
        obj.insert("uri".into(), json!(latin1(&req.uri)));
    } else {
        obj.insert("uri_b64".into(), json!(base64_encode(&req.uri)));
    }
    obj.insert("version".into(), json!(latin1(&req.protocol)));
    put_headers(&mut obj, &req.headers);
    if !req.body.is_empty() {
        obj.insert("body_b64".into(), json!(base64_encode(&req.body)));
    }
    obj.insert("remote_addr".into(), json!(REMOTE_ADDR));
    let mut response = Map::new();
    response.insert("status".into(), json!(resp.status));
    put_headers(&mut response, &resp.headers);
    if !resp.body.is_empty() {
        response.insert("body_b64".into(), json!(base64_encode(&resp.body)));
    }
    obj.insert("response".into(), Value::Object(response));
    Value::Object(obj)
}

/// Stage → one `check` JSON line (without the newline).
pub fn stage_check_line(id: &str, stage: &Stage) -> Result<String, ConvertError> {
    let raw = stage_wire_bytes(&stage.input)?;
    let request = wire::parse_server_request(&raw);
    let response = backend_response(&request);
    Ok(check_input(id, &request, &response).to_string())
}

// ---------------------------------------------------------------------------------------------
// Scoring
// ---------------------------------------------------------------------------------------------

/// What a stage checks, for counting and for deciding whether it is scorable here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageKind {
    pub expect_ids: bool,
    pub no_expect_ids: bool,
    pub match_regex: bool,
    pub no_match_regex: bool,
    pub status: bool,
    pub expect_error: bool,
}

impl StageKind {
    /// Only log expectations can be checked against a WAF log; a stage that only checks the
    /// HTTP status or a connection error describes the web server, not the WAF.
    pub fn is_scorable(&self) -> bool {
        self.expect_ids || self.no_expect_ids || self.match_regex || self.no_match_regex
    }
}

pub fn stage_kind(stage: &Stage) -> StageKind {
    let Some(out) = &stage.output else {
        return StageKind::default();
    };
    let nonempty = |r: &Option<String>| r.as_deref().is_some_and(|r| !r.is_empty());
    StageKind {
        expect_ids: !out.log.expect_ids.is_empty(),
        no_expect_ids: !out.log.no_expect_ids.is_empty(),
        match_regex: nonempty(&out.log.match_regex),
        no_match_regex: nonempty(&out.log.no_match_regex),
        status: out.status.is_some(),
        expect_error: out.expect_error == Some(true),
    }
}

/// go-ftw's id extraction (`waflog`): `[id "N"]` (ModSecurity error-log style) or JSON `"id": N`.
const RULE_ID_PATTERN: &str = r#"\[id "(\d+)"\]|"id":\s*"?(\d+)"?"#;

/// Compiles a go-ftw (Go RE2) pattern: unanchored search, ASCII classes like Go's.
pub fn go_regex(pattern: &str) -> Result<Regex, String> {
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(pattern)
        .map_err(|e| e.to_string())
}

/// Every rule id the log lines mention (go-ftw's `TriggeredRules`).
pub fn log_rule_ids(lines: &[String]) -> BTreeSet<u64> {
    let re = go_regex(RULE_ID_PATTERN).expect("the go-ftw id pattern compiles");
    let mut ids = BTreeSet::new();
    for line in lines {
        for caps in re.captures_iter(line.as_bytes()) {
            for group in 1..=2 {
                if let Some(span) = caps.get_group(group) {
                    // Overflowing ids are skipped, as go-ftw does.
                    if let Ok(id) = line[span.range()].parse::<u64>() {
                        ids.insert(id);
                    }
                }
            }
        }
    }
    ids
}

/// Why a scorable stage failed (each part prints as one short clause).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    MissingIds(Vec<u64>),
    UnexpectedIds(Vec<u64>),
    RegexNotFound(String),
    RegexFound {
        pattern: String,
        line: String,
    },
    BadRegex {
        pattern: String,
        error: String,
    },
    /// The evaluator could not evaluate the request (its error object, or a broken reply).
    Evaluator(String),
    /// The stage could not be turned into a request.
    Conversion(String),
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::MissingIds(ids) => write!(f, "missing ids {ids:?}"),
            Mismatch::UnexpectedIds(ids) => write!(f, "unexpected ids {ids:?}"),
            Mismatch::RegexNotFound(p) => write!(f, "match_regex not found: {p}"),
            Mismatch::RegexFound { pattern, line } => {
                let mut excerpt: String = line.chars().take(120).collect();
                if excerpt.len() < line.len() {
                    excerpt.push('…');
                }
                write!(f, "no_match_regex {pattern} matched: {excerpt}")
            }
            Mismatch::BadRegex { pattern, error } => {
                write!(f, "regex {pattern} does not compile: {error}")
            }
            Mismatch::Evaluator(e) => write!(f, "evaluator error: {e}"),
            Mismatch::Conversion(e) => write!(f, "cannot build the request: {e}"),
        }
    }
}

/// The verdict on one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageVerdict {
    NotScorable,
    Pass,
    Fail(Vec<Mismatch>),
}

/// Scores one stage from the WAF log lines of its request, as go-ftw's `AssertLogs` does:
/// `match_regex` must match some line, every `expect_ids` id must appear, `no_match_regex` must
/// match no line, no `no_expect_ids` id may appear. Unlike go-ftw, every failing expectation is
/// reported (go-ftw stops at the first), which changes the message, not the verdict.
pub fn score_stage(stage: &Stage, log: &[String]) -> StageVerdict {
    let kind = stage_kind(stage);
    if !kind.is_scorable() {
        return StageVerdict::NotScorable;
    }
    let expect = &stage
        .output
        .as_ref()
        .expect("scorable stages have an output")
        .log;
    let ids = log_rule_ids(log);
    let mut mismatches = Vec::new();

    let first_matching_line = |pattern: &str| -> Result<Option<&String>, Mismatch> {
        let re = go_regex(pattern).map_err(|error| Mismatch::BadRegex {
            pattern: pattern.to_owned(),
            error,
        })?;
        Ok(log.iter().find(|line| re.is_match(line.as_bytes())))
    };

    if let Some(pattern) = expect.match_regex.as_deref().filter(|p| !p.is_empty()) {
        match first_matching_line(pattern) {
            Ok(Some(_)) => {}
            Ok(None) => mismatches.push(Mismatch::RegexNotFound(pattern.to_owned())),
            Err(m) => mismatches.push(m),
        }
    }
    let missing: Vec<u64> = expect
        .expect_ids
        .iter()
        .copied()
        .filter(|id| !ids.contains(id))
        .collect();
    if !missing.is_empty() {
        mismatches.push(Mismatch::MissingIds(missing));
    }
    if let Some(pattern) = expect.no_match_regex.as_deref().filter(|p| !p.is_empty()) {
        match first_matching_line(pattern) {
            Ok(None) => {}
            Ok(Some(line)) => mismatches.push(Mismatch::RegexFound {
                pattern: pattern.to_owned(),
                line: line.clone(),
            }),
            Err(m) => mismatches.push(m),
        }
    }
    let unexpected: Vec<u64> = expect
        .no_expect_ids
        .iter()
        .copied()
        .filter(|id| ids.contains(id))
        .collect();
    if !unexpected.is_empty() {
        mismatches.push(Mismatch::UnexpectedIds(unexpected));
    }

    if mismatches.is_empty() {
        StageVerdict::Pass
    } else {
        StageVerdict::Fail(mismatches)
    }
}

/// What the evaluator said about one stage's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageResult {
    Log(Vec<String>),
    Error(String),
}

/// Parses one `check --log` output line: `(id, result)`. A line that is not the contract's
/// shape yields an error result rather than failing the whole run.
pub fn parse_check_output(line: &str) -> (Option<String>, StageResult) {
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return (
                None,
                StageResult::Error(format!("output is not JSON ({e})")),
            )
        }
    };
    let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
    if let Some(err) = value.get("error") {
        let text = err.as_str().map_or_else(|| err.to_string(), str::to_owned);
        return (id, StageResult::Error(text));
    }
    match value.get("log").and_then(Value::as_array) {
        Some(lines) => {
            let mut log = Vec::with_capacity(lines.len());
            for line in lines {
                match line.as_str() {
                    Some(s) => log.push(s.to_owned()),
                    None => {
                        return (
                            id,
                            StageResult::Error(format!("log entry is not a string: {line}")),
                        )
                    }
                }
            }
            (id, StageResult::Log(log))
        }
        None => (
            id,
            StageResult::Error("output has no \"log\" array (was --log passed?)".into()),
        ),
    }
}

/// Combines stage verdicts: a test passes when all its scorable stages pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestVerdict {
    NotScorable,
    Pass,
    /// (stage index, mismatches) of every failing stage.
    Fail(Vec<(usize, Vec<Mismatch>)>),
}

pub fn combine(verdicts: &[StageVerdict]) -> TestVerdict {
    let mut failures = Vec::new();
    let mut scorable = false;
    for (index, verdict) in verdicts.iter().enumerate() {
        match verdict {
            StageVerdict::NotScorable => {}
            StageVerdict::Pass => scorable = true,
            StageVerdict::Fail(m) => {
                scorable = true;
                failures.push((index, m.clone()));
            }
        }
    }
    match (scorable, failures.is_empty()) {
        (false, _) => TestVerdict::NotScorable,
        (true, true) => TestVerdict::Pass,
        (true, false) => TestVerdict::Fail(failures),
    }
}

/// One line per failing test: `<id>: <reason>; <reason>` (stage-prefixed for multi-stage tests).
pub fn failure_line(test: &FtwTest, failures: &[(usize, Vec<Mismatch>)]) -> String {
    let parts: Vec<String> = failures
        .iter()
        .map(|(stage, mismatches)| {
            let reasons: Vec<String> = mismatches.iter().map(|m| m.to_string()).collect();
            if test.stages.len() > 1 {
                format!("stage {}: {}", stage + 1, reasons.join("; "))
            } else {
                reasons.join("; ")
            }
        })
        .collect();
    format!("{}: {}", test.id, parts.join(" | "))
}

// ---------------------------------------------------------------------------------------------
// Exclusions and baseline (shared by every runner of the suite)
// ---------------------------------------------------------------------------------------------

/// At most this many tests may be excluded (the policy stated in `tests/crs/exclusions.txt`).
pub const MAX_EXCLUSIONS: usize = 5;

/// One excluded test of `tests/crs/exclusions.txt`.
#[derive(Debug)]
pub struct Exclusion {
    pub id: String,
    pub reason: String,
}

/// Parses `exclusions.txt`: `<rule>-<n>  <reason>` per line, `#` comment lines; at most
/// [`MAX_EXCLUSIONS`] entries, each with a reason, none twice.
pub fn parse_exclusions(text: &str) -> Result<Vec<Exclusion>, String> {
    let mut out: Vec<Exclusion> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let lineno = index + 1;
        let (id, reason) = line
            .split_once(char::is_whitespace)
            .map(|(id, reason)| (id, reason.trim()))
            .unwrap_or((line, ""));
        let well_formed = id.split_once('-').is_some_and(|(rule, n)| {
            !rule.is_empty()
                && !n.is_empty()
                && rule.bytes().all(|b| b.is_ascii_digit())
                && n.bytes().all(|b| b.is_ascii_digit())
        });
        if !well_formed {
            return Err(format!(
                "line {lineno}: {id:?} is not a test id like 942100-3"
            ));
        }
        if reason.is_empty() {
            return Err(format!("line {lineno}: {id} has no reason"));
        }
        if out.iter().any(|e| e.id == id) {
            return Err(format!("line {lineno}: {id} is listed twice"));
        }
        out.push(Exclusion {
            id: id.to_owned(),
            reason: reason.to_owned(),
        });
    }
    if out.len() > MAX_EXCLUSIONS {
        return Err(format!(
            "{} exclusions listed; the policy allows at most {MAX_EXCLUSIONS}",
            out.len()
        ));
    }
    Ok(out)
}

/// Parses `baseline.txt`: the first non-comment line is the number of tests that must pass.
pub fn parse_baseline(text: &str) -> Result<usize, String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("no number in baseline.txt")?;
    line.parse()
        .map_err(|e| format!("baseline.txt: {line:?} is not a count ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_test(yaml: &str) -> FtwTest {
        let mut tests = parse_file(Path::new("inline.yaml"), yaml).expect("valid yaml");
        assert_eq!(tests.len(), 1);
        tests.remove(0)
    }

    fn check_value(stage: &Stage) -> Value {
        serde_json::from_str(&stage_check_line("x", stage).unwrap()).unwrap()
    }

    fn pairs(v: &Value) -> Vec<(String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_owned(),
                    p[1].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    const FORM_POST: &str = r#"
rule_id: 942100
tests:
  - test_id: 3
    desc: form post
    stages:
      - input:
          dest_addr: 127.0.0.1
          port: 80
          method: POST
          uri: /post
          headers:
            User-Agent: OWASP CRS test agent
            Host: localhost
            Accept: "*/*"
          data: "var=1' or '1'='1"
        output:
          log:
            expect_ids: [942100]
"#;

    #[test]
    fn autocomplete_sorts_headers_encodes_form_and_adds_length() {
        let test = one_test(FORM_POST);
        assert_eq!(test.id, "942100-3");
        assert_eq!(test.stage_id(0), "942100-3#1");
        let v = check_value(&test.stages[0]);
        assert_eq!(v["method"], "POST");
        assert_eq!(v["uri"], "/post");
        assert_eq!(v["version"], "HTTP/1.1");
        assert_eq!(v["remote_addr"], "127.0.0.1");
        assert_eq!(
            pairs(&v["headers"]),
            owned(&[
                ("Accept", "*/*"),
                ("Host", "localhost"),
                ("User-Agent", "OWASP CRS test agent"),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Connection", "close"),
                ("Content-Length", "26"),
            ])
        );
        let body = wire::base64_decode(v["body_b64"].as_str().unwrap()).unwrap();
        assert_eq!(body, b"var=1%27+or+%271%27%3D%271");
        assert_eq!(v["response"]["status"], 200);
        assert_eq!(
            pairs(&v["response"]["headers"]),
            owned(&[("Content-Type", "text/plain"), ("Content-Length", "0")])
        );
        assert!(v["response"].get("body_b64").is_none());
    }

    #[test]
    fn defaults_and_raw_scalars() {
        let test = one_test(
            r#"
rule_id: 920160
tests:
  - test_id: 1
    stages:
      - input:
          headers:
            Content-Length: 3
            Host: localhost
          data: "abc"
          autocomplete_headers: false
        output:
          status: [400, 200]
"#,
        );
        let v = check_value(&test.stages[0]);
        // Defaults: GET / HTTP/1.1; the integer scalar 3 is the header text "3".
        assert_eq!(
            (
                v["method"].as_str(),
                v["uri"].as_str(),
                v["version"].as_str()
            ),
            (Some("GET"), Some("/"), Some("HTTP/1.1"))
        );
        assert_eq!(
            pairs(&v["headers"]),
            owned(&[("Content-Length", "3"), ("Host", "localhost")])
        );
        assert_eq!(
            wire::base64_decode(v["body_b64"].as_str().unwrap()).unwrap(),
            b"abc"
        );
        assert_eq!(
            test.stages[0].output.as_ref().unwrap().status,
            Some(StatusExpect::Any(vec![400, 200]))
        );
        assert!(!test.is_scorable());
    }

    #[test]
    fn no_autocomplete_without_framing_means_no_body() {
        let test = one_test(
            r#"
rule_id: 920180
tests:
  - test_id: 1
    stages:
      - input:
          method: POST
          version: "HTTP/1.0"
          headers: {Host: localhost}
          data: "a=b"
          autocomplete_headers: false
        output:
          log: {expect_ids: [920180]}
"#,
        );
        let v = check_value(&test.stages[0]);
        assert_eq!(v["version"], "HTTP/1.0");
        assert_eq!(pairs(&v["headers"]), owned(&[("Host", "localhost")]));
        assert!(v.get("body_b64").is_none());
    }

    #[test]
    fn encoded_request_is_parsed_byte_exactly() {
        // Base64 of "GET /a\xffb HTTP/1.1\r\nHost: localhost\r\nX: caf\xe9\r\n\r\n", wrapped like
        // the CRS files (the "\n" inside the double-quoted scalar is a real line break).
        let raw = b"GET /a\xffb HTTP/1.1\r\nHost: localhost\r\nX: caf\xe9\r\n\r\n";
        let b64 = wire::base64_encode(raw);
        let (a, b) = b64.split_at(20);
        let yaml = format!(
            "rule_id: 920171\ntests:\n  - test_id: 2\n    stages:\n      - input:\n          encoded_request: \"{a}\\n{b}\"\n        output:\n          log:\n            expect_ids: [920171]\n"
        );
        let test = one_test(&yaml);
        let v = check_value(&test.stages[0]);
        assert_eq!(v["method"], "GET");
        assert!(v.get("uri").is_none());
        assert_eq!(
            wire::base64_decode(v["uri_b64"].as_str().unwrap()).unwrap(),
            b"/a\xffb"
        );
        assert!(v.get("headers").is_none());
        let headers: Vec<(Vec<u8>, Vec<u8>)> = v["headers_b64"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    wire::base64_decode(p[0].as_str().unwrap()).unwrap(),
                    wire::base64_decode(p[1].as_str().unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            headers,
            vec![
                (b"Host".to_vec(), b"localhost".to_vec()),
                (b"X".to_vec(), b"caf\xe9".to_vec())
            ]
        );
        // No autocompletion for raw requests.
        assert!(v.get("body_b64").is_none());
    }

    #[test]
    fn encoded_chunked_request_is_dechunked() {
        // CRS 920171-1's request (chunked POST with "Hi CRS" in two chunks).
        let raw = b"POST / HTTP/1.1\r\nAccept: */*\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nHi \r\n3\r\nCRS\r\n0\r\n\r\n";
        let input = Input {
            encoded_request: Some(Text(wire::base64_encode(raw))),
            ..Input::default()
        };
        let stage = Stage {
            input,
            output: None,
            description: None,
        };
        let v = check_value(&stage);
        assert_eq!(
            wire::base64_decode(v["body_b64"].as_str().unwrap()).unwrap(),
            b"Hi CRS"
        );
        assert_eq!(
            pairs(&v["headers"]),
            owned(&[
                ("Accept", "*/*"),
                ("Host", "localhost"),
                ("Transfer-Encoding", "chunked")
            ])
        );
    }

    #[test]
    fn conversion_errors() {
        let bad_b64 = Input {
            encoded_request: Some(Text("not base64!".into())),
            ..Input::default()
        };
        assert!(matches!(
            stage_wire_bytes(&bad_b64),
            Err(ConvertError::EncodedRequest(_))
        ));
        let both = Input {
            encoded_request: Some(Text("R0VU".into())),
            data: Some(Text("x".into())),
            ..Input::default()
        };
        assert_eq!(
            stage_wire_bytes(&both),
            Err(ConvertError::DataAndEncodedRequest)
        );
        let template = Input {
            data: Some(Text("{{ .x }}".into())),
            ..Input::default()
        };
        assert_eq!(stage_wire_bytes(&template), Err(ConvertError::TemplateData));
    }

    #[test]
    fn reflect_endpoint_builds_the_response() {
        let test = one_test(
            r#"
rule_id: 951110
tests:
  - test_id: 1
    stages:
      - input:
          method: POST
          uri: /reflect
          headers:
            Host: localhost
            Content-Type: application/json
          data: '{"body": "Warning: mysql_fetch_array()", "extra": 1}'
        output:
          log:
            expect_ids: [951110]
"#,
        );
        let v = check_value(&test.stages[0]);
        let resp = &v["response"];
        assert_eq!(resp["status"], 200);
        assert_eq!(
            wire::base64_decode(resp["body_b64"].as_str().unwrap()).unwrap(),
            b"Warning: mysql_fetch_array()"
        );
        assert_eq!(
            pairs(&resp["headers"]),
            owned(&[("Content-Type", "text/plain"), ("Content-Length", "28")])
        );
    }

    #[test]
    fn reflect_variants_follow_albedo() {
        let req = |body: &str| ServerRequest {
            method: b"POST".to_vec(),
            uri: b"/reflect".to_vec(),
            protocol: b"HTTP/1.1".to_vec(),
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        let r = backend_response(&req(r#"{"fileuploaderror":"File upload failed."}"#));
        assert_eq!((r.status, r.body.as_slice()), (200, &b""[..]));
        let r = backend_response(&req("not json"));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (400, &b"Invalid JSON in request body"[..])
        );
        let r = backend_response(&req(r#"{"status": 700}"#));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (400, &b"Invalid status code: 700"[..])
        );
        let r = backend_response(&req(
            r#"{"status": 500, "encodedBody": "PGgxPg==", "headers": {"Content-Type": "text/html", "A": "b"}}"#,
        ));
        assert_eq!(r.status, 500);
        assert_eq!(r.body, b"<h1>");
        assert_eq!(
            r.headers,
            vec![
                (b"A".to_vec(), b"b".to_vec()),
                (b"Content-Type".to_vec(), b"text/html".to_vec()),
                (b"Content-Length".to_vec(), b"4".to_vec()),
            ]
        );
        // Only POST reaches /reflect; a GET gets the default empty answer.
        let mut get = req(r#"{"body":"x"}"#);
        get.method = b"GET".to_vec();
        assert_eq!(backend_response(&get).body, b"");
    }

    #[test]
    fn multi_stage_tests_and_not_scorable_stages() {
        let test = one_test(
            r#"
rule_id: 920100
tests:
  - test_id: 7
    stages:
      - input: {method: "GET", uri: "/a"}
        output: {status: 400}
      - input: {method: "GET", uri: "/b"}
        output:
          log: {no_expect_ids: [920100]}
      - input: {uri: "/c"}
"#,
        );
        assert_eq!(test.stages.len(), 3);
        assert!(test.is_scorable());
        let verdicts: Vec<StageVerdict> = vec![
            score_stage(&test.stages[0], &[]),
            score_stage(&test.stages[1], &["[id \"920100\"]".to_owned()]),
            score_stage(&test.stages[2], &[]),
        ];
        assert_eq!(verdicts[0], StageVerdict::NotScorable);
        assert_eq!(verdicts[2], StageVerdict::NotScorable);
        let verdict = combine(&verdicts);
        let TestVerdict::Fail(failures) = &verdict else {
            panic!("expected a failure, got {verdict:?}");
        };
        assert_eq!(
            failures,
            &vec![(1, vec![Mismatch::UnexpectedIds(vec![920100])])]
        );
        assert_eq!(
            failure_line(&test, failures),
            "920100-7: stage 2: unexpected ids [920100]"
        );
        assert_eq!(
            combine(&[StageVerdict::NotScorable]),
            TestVerdict::NotScorable
        );
        assert_eq!(
            combine(&[StageVerdict::Pass, StageVerdict::NotScorable]),
            TestVerdict::Pass
        );
    }

    fn stage_with(log: LogExpect) -> Stage {
        Stage {
            input: Input::default(),
            output: Some(Output {
                log,
                ..Output::default()
            }),
            description: None,
        }
    }

    #[test]
    fn id_extraction_matches_go_ftw() {
        let lines: Vec<String> = vec![
            r#"[client 127.0.0.1] ModSecurity: Warning. [file "x.conf"] [line "1"] [id "942100"] [msg "SQLi"]"#.into(),
            r#"{"id": "949110", "other": 1} and "id":920273"#.into(),
            r#"[id "99999999999999999999999"] [id="1"] [id 2]"#.into(),
        ];
        assert_eq!(
            log_rule_ids(&lines).into_iter().collect::<Vec<_>>(),
            vec![920273, 942100, 949110]
        );
    }

    #[test]
    fn scoring_expect_and_no_expect_ids() {
        let log = vec![
            r#"[id "942100"] [msg "a"]"#.to_owned(),
            r#"[id "949110"]"#.to_owned(),
        ];
        let cases: Vec<(Vec<u64>, Vec<u64>, StageVerdict)> = vec![
            (vec![942100], vec![], StageVerdict::Pass),
            (vec![942100, 949110], vec![920273], StageVerdict::Pass),
            (
                vec![942101],
                vec![],
                StageVerdict::Fail(vec![Mismatch::MissingIds(vec![942101])]),
            ),
            (
                vec![],
                vec![949110],
                StageVerdict::Fail(vec![Mismatch::UnexpectedIds(vec![949110])]),
            ),
            (
                vec![1, 942100],
                vec![942100],
                StageVerdict::Fail(vec![
                    Mismatch::MissingIds(vec![1]),
                    Mismatch::UnexpectedIds(vec![942100]),
                ]),
            ),
        ];
        for (expect_ids, no_expect_ids, verdict) in cases {
            let stage = stage_with(LogExpect {
                expect_ids,
                no_expect_ids,
                ..LogExpect::default()
            });
            assert_eq!(score_stage(&stage, &log), verdict);
        }
    }

    #[test]
    fn scoring_regexes_work_line_by_line() {
        // The 922130 pattern from CRS: an alternation of a parser message and a rule line.
        let pattern = r#"Multipart parsing error: Multipart: Invalid part header \(contains invalid character\)|\[id "922130"\].*\[msg "Multipart header contains characters outside of valid range"\]"#;
        let hit = vec![
            r#"[id "200003"] [msg "Multipart strict validation"]"#.to_owned(),
            r#"[id "922130"] [msg "Multipart header contains characters outside of valid range"] [data "x"]"#.to_owned(),
        ];
        // The rule id and the msg on different lines must not count as a match.
        let split = vec![
            r#"[id "922130"]"#.to_owned(),
            r#"[msg "Multipart header contains characters outside of valid range"]"#.to_owned(),
        ];
        let matching = stage_with(LogExpect {
            match_regex: Some(pattern.into()),
            ..LogExpect::default()
        });
        assert_eq!(score_stage(&matching, &hit), StageVerdict::Pass);
        assert_eq!(
            score_stage(&matching, &split),
            StageVerdict::Fail(vec![Mismatch::RegexNotFound(pattern.into())])
        );
        assert_eq!(
            score_stage(&matching, &[]),
            StageVerdict::Fail(vec![Mismatch::RegexNotFound(pattern.into())])
        );

        // 999999.yml: no rule may log at all.
        let none = stage_with(LogExpect {
            no_match_regex: Some(r#"\[id "\d+"\]"#.into()),
            ..LogExpect::default()
        });
        assert_eq!(score_stage(&none, &[]), StageVerdict::Pass);
        assert_eq!(
            score_stage(&none, &["X-CRS-Test marker".to_owned()]),
            StageVerdict::Pass
        );
        let logged = vec![r#"[id "942100"] [msg "SQL"]"#.to_owned()];
        assert_eq!(
            score_stage(&none, &logged),
            StageVerdict::Fail(vec![Mismatch::RegexFound {
                pattern: r#"\[id "\d+"\]"#.into(),
                line: logged[0].clone()
            }])
        );

        // Anomaly-score text (949110-5) and a bad pattern.
        let anomaly = stage_with(LogExpect {
            match_regex: Some(r"Inbound Anomaly Score Exceeded \(Total Score: ".into()),
            ..LogExpect::default()
        });
        let line = r#"[id "949110"] [msg "Inbound Anomaly Score Exceeded (Total Score: 5)"]"#;
        assert_eq!(
            score_stage(&anomaly, &[line.to_owned()]),
            StageVerdict::Pass
        );
        let bad = stage_with(LogExpect {
            match_regex: Some("(".into()),
            ..LogExpect::default()
        });
        assert!(matches!(
            score_stage(&bad, &[]),
            StageVerdict::Fail(ref m) if matches!(m[..], [Mismatch::BadRegex { .. }])
        ));
    }

    #[test]
    fn check_output_parsing() {
        assert_eq!(
            parse_check_output(r#"{"id":"a#1","matched":[1],"log":["[id \"1\"]"]}"#),
            (
                Some("a#1".into()),
                StageResult::Log(vec!["[id \"1\"]".into()])
            )
        );
        assert_eq!(
            parse_check_output(r#"{"id":"a#1","error":"bad uri"}"#),
            (Some("a#1".into()), StageResult::Error("bad uri".into()))
        );
        assert!(matches!(
            parse_check_output(r#"{"id":"a#1","matched":[]}"#),
            (Some(_), StageResult::Error(e)) if e.contains("no \"log\"")
        ));
        assert!(matches!(
            parse_check_output("garbage"),
            (None, StageResult::Error(_))
        ));
    }

    #[test]
    fn loader_rejects_what_it_cannot_honour() {
        // Unknown input keys (features we do not emulate) are errors, not silently ignored.
        let unknown =
            "rule_id: 1\ntests:\n  - test_id: 1\n    stages:\n      - input: {raw_request: x}\n";
        assert!(parse_file(Path::new("u.yaml"), unknown).is_err());
        // Duplicate header keys are errors.
        let dup = "rule_id: 1\ntests:\n  - test_id: 1\n    stages:\n      - input:\n          headers: {A: b, A: c}\n";
        let err = parse_file(Path::new("d.yaml"), dup)
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate"), "{err}");
        // A comment-only file holds no tests (CRS 920539.yaml).
        assert!(parse_file(Path::new("c.yaml"), "# nothing here\n")
            .unwrap()
            .is_empty());
        // A missing test_id comes from the position.
        let positional = "rule_id: 5\ntests:\n  - stages: []\n  - stages: []\n";
        let ids: Vec<String> = parse_file(Path::new("p.yaml"), positional)
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, vec!["5-1", "5-2"]);
    }

    #[test]
    fn load_tests_walks_y_ml_files_and_rejects_duplicates() {
        let dir = std::env::temp_dir().join(format!("ftw-load-{}", std::process::id()));
        let sub = dir.join("REQUEST-1");
        std::fs::create_dir_all(&sub).unwrap();
        let file = |name: &str, rule: u64| {
            std::fs::write(
                sub.join(name),
                format!("rule_id: {rule}\ntests:\n  - test_id: 1\n    stages: []\n"),
            )
            .unwrap();
        };
        file("1.yaml", 1);
        file("2.yml", 2);
        file("3.json", 3);
        let ids: Vec<String> = load_tests(&dir)
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, vec!["1-1", "2-1"]);
        file("4.yaml", 1);
        assert!(matches!(
            load_tests(&dir),
            Err(LoadError::DuplicateTest { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
        let empty = std::env::temp_dir().join(format!("ftw-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        assert!(matches!(load_tests(&empty), Err(LoadError::NoTests { .. })));
        std::fs::remove_dir_all(&empty).unwrap();
    }

    #[test]
    fn exclusions_format_and_policy() {
        let ok = "# header\n\n920100-4  Invalid uri, not reached\n942100-3\tregex flavour\n";
        let list = parse_exclusions(ok).unwrap();
        assert_eq!(
            list.iter()
                .map(|e| (e.id.as_str(), e.reason.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("920100-4", "Invalid uri, not reached"),
                ("942100-3", "regex flavour")
            ]
        );
        assert!(parse_exclusions("920100-4\n")
            .unwrap_err()
            .contains("no reason"));
        assert!(parse_exclusions("920100 x\n")
            .unwrap_err()
            .contains("not a test id"));
        assert!(parse_exclusions("1-1 a\n1-1 b\n")
            .unwrap_err()
            .contains("twice"));
        let six: String = (1..=6).map(|i| format!("1-{i} r\n")).collect();
        assert!(parse_exclusions(&six).unwrap_err().contains("at most 5"));
        assert!(parse_exclusions("# only comments\n").unwrap().is_empty());
    }

    #[test]
    fn baseline_format() {
        assert_eq!(parse_baseline("# comment\n  1234 \n"), Ok(1234));
        assert!(parse_baseline("# nothing\n").is_err());
        assert!(parse_baseline("12a\n").is_err());
    }

    #[test]
    fn committed_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crs");
        let exclusions = std::fs::read_to_string(dir.join("exclusions.txt")).unwrap();
        parse_exclusions(&exclusions).unwrap();
        let baseline = std::fs::read_to_string(dir.join("baseline.txt")).unwrap();
        parse_baseline(&baseline).unwrap();
    }
}
