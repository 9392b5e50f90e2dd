//! Request parsing: query strings, cookies and the request-body processors.
//!
//! Owns turning raw request bytes into the values the rules read: `ARGS_GET`/`ARGS_POST`
//! ([`urlencoded`], [`json`], [`multipart`]), `REQUEST_COOKIES` ([`cookies`]), `FILES`,
//! `FILES_NAMES`, `MULTIPART_PART_HEADERS` and the `MULTIPART_*` flags ([`multipart`]), and
//! `XML:/*` / `XML://@*` ([`xml`]). Every processor streams what it extracts into a
//! [`BodySink`] (the engine's transaction) and reports a body it could not fully parse as a
//! [`BodyError`] (`REQBODY_ERROR` / `REQBODY_ERROR_MSG`).
//!
//! Must not: choose a processor (that is the engine's Content-Type rules), store anything
//! between calls, allocate per value where a borrowed slice or the caller's scratch buffer will
//! do, panic on any input, or do work that grows faster than the input. Values handed to the
//! sink borrow the input or the scratch buffer and are only valid during the call.
//!
//! # Mapping results to variables (for the engine)
//! | call | variables |
//! |---|---|
//! | [`urlencoded::parse`] on the query | `sink.arg` → ARGS_GET; `invalid_encoding` → URLENCODED_ERROR |
//! | [`urlencoded::parse`] on the body | `sink.arg` → ARGS_POST; `invalid_encoding` → URLENCODED_ERROR |
//! | [`cookies::parse`], once per `Cookie` header | `sink.arg` → REQUEST_COOKIES (and _NAMES) |
//! | [`json::parse`] | `sink.arg` → ARGS_POST |
//! | [`multipart::parse`] | `arg` → ARGS_POST, `file` → FILES / FILES_NAMES / FILES_SIZES, `part_header` → MULTIPART_PART_HEADERS, [`multipart::MultipartOutcome`] → MULTIPART_*, FILES_COMBINED_SIZE |
//! | [`xml::parse`] | `xml_text` → `XML:/*`, `xml_attr` → `XML://@*` |
//!
//! A returned [`BodyError`] sets REQBODY_ERROR (and REQBODY_PROCESSOR_ERROR) to 1 and its
//! `to_string()` is REQBODY_ERROR_MSG, e.g. `Multipart parsing error: Multipart: Final
//! boundary missing.` (the text libmodsecurity3 uses, which CRS tests grep for).
//!
//! # Bounds
//! Every processor honours [`BodyLimits`]; exceeding one is a [`BodyError`] of kind
//! [`BodyErrorKind::Limit`], and what was extracted before the limit stays with the sink.
//! Processors whose names can repeat input bytes (JSON paths, multipart part names repeated for
//! each part header) also charge what they emit to an output budget proportional to the input
//! (see [`EmitBudget`]), so the total work stays linear in the input.

pub mod cookies;
pub mod json;
pub mod multipart;
pub mod urlencoded;
pub mod xml;

use std::borrow::Cow;
use std::fmt;

/// Bounds applied by every processor. Exceeding one is reported, never a panic or unbounded
/// work. A bound of 0 allows nothing; use `usize::MAX` for "no bound".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// Most values handed to [`BodySink::arg`] (or, for XML, to `xml_text` + `xml_attr`) by
    /// one call. JSON array-length entries do not count (see [`json`]).
    pub max_args: usize,
    /// Deepest nesting of JSON containers or XML elements.
    pub max_depth: usize,
    /// Most multipart parts (boundaries other than the final one).
    pub max_parts: usize,
}

impl BodyLimits {
    /// No bounds at all; for tests and tools, never for traffic.
    pub const UNBOUNDED: BodyLimits = BodyLimits {
        max_args: usize::MAX,
        max_depth: usize::MAX,
        max_parts: usize::MAX,
    };
}

/// Receives what a processor extracts; implemented by the engine's transaction.
///
/// Slices are only valid during the call: copy what must outlive it.
pub trait BodySink {
    /// One argument, name and value already decoded (ARGS_POST, or ARGS_GET for a query; for
    /// [`cookies::parse`], one cookie).
    fn arg(&mut self, name: &[u8], value: &[u8]);
    /// A multipart file part: form field name (FILES_NAMES), client file name (FILES), size.
    fn file(&mut self, field_name: &[u8], file_name: &[u8], size: usize) {
        let _ = (field_name, file_name, size);
    }
    /// One raw header line of a multipart part ("Content-Disposition: form-data; name=...")
    /// for MULTIPART_PART_HEADERS, keyed by the part's `name`.
    fn part_header(&mut self, part_name: &[u8], line: &[u8]) {
        let _ = (part_name, line);
    }
    /// XML: one trimmed, non-empty text node (XML:/*).
    fn xml_text(&mut self, text: &[u8]) {
        let _ = text;
    }
    /// XML: one attribute value (XML://@*), with its qualified name.
    fn xml_attr(&mut self, name: &[u8], value: &[u8]) {
        let _ = (name, value);
    }
}

/// What went wrong, for callers that react differently to a limit than to malformed input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyErrorKind {
    /// The input does not follow the format (truncated, bad syntax, bad boundary, ...).
    Malformed,
    /// A [`BodyLimits`] bound or the output budget was exceeded; parsing stopped there.
    Limit,
}

/// Which processor reported the error (it prefixes the message the way the references do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processor {
    Urlencoded,
    Multipart,
    Json,
    Xml,
}

impl Processor {
    fn prefix(self) -> &'static str {
        match self {
            Processor::Urlencoded => "URLENCODED parsing error: ",
            Processor::Multipart => "Multipart parsing error: ",
            Processor::Json => "JSON parsing error: ",
            Processor::Xml => "XML parsing error: ",
        }
    }
}

/// A body that could not be (fully) parsed: becomes `REQBODY_ERROR=1` and its
/// [`Display`](fmt::Display) becomes `REQBODY_ERROR_MSG`.
///
/// The message is one line in the style of the references: multipart errors carry
/// ModSecurity's own texts ("Multipart parsing error: Multipart: Final boundary missing."),
/// which CRS tests and operators grep for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyError {
    processor: Processor,
    kind: BodyErrorKind,
    message: Cow<'static, str>,
}

impl BodyError {
    fn new(
        processor: Processor,
        kind: BodyErrorKind,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        BodyError {
            processor,
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn malformed(processor: Processor, message: impl Into<Cow<'static, str>>) -> Self {
        BodyError::new(processor, BodyErrorKind::Malformed, message)
    }

    pub(crate) fn limit(processor: Processor, message: impl Into<Cow<'static, str>>) -> Self {
        BodyError::new(processor, BodyErrorKind::Limit, message)
    }

    pub(crate) fn too_many_args(processor: Processor, limit: usize, at: usize) -> Self {
        BodyError::new(
            processor,
            BodyErrorKind::Limit,
            format!("argument limit {limit} exceeded at byte {at}"),
        )
    }

    pub(crate) fn too_deep(processor: Processor, limit: usize, at: usize) -> Self {
        BodyError::new(
            processor,
            BodyErrorKind::Limit,
            format!("depth limit {limit} exceeded at byte {at}"),
        )
    }

    pub(crate) fn too_many_parts(limit: usize, at: usize) -> Self {
        BodyError::new(
            Processor::Multipart,
            BodyErrorKind::Limit,
            format!("Multipart: part limit {limit} exceeded at byte {at}."),
        )
    }

    pub(crate) fn output_budget(processor: Processor, budget: usize, at: usize) -> Self {
        BodyError::new(
            processor,
            BodyErrorKind::Limit,
            format!("output budget of {budget} bytes exceeded at byte {at}"),
        )
    }

    pub fn kind(&self) -> BodyErrorKind {
        self.kind
    }

    pub fn processor(&self) -> Processor {
        self.processor
    }

    /// The message without the "<processor> parsing error: " prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.processor.prefix(), self.message)
    }
}

impl std::error::Error for BodyError {}

/// Bytes a processor may hand to the sink (names plus values) for an input of `n` bytes:
/// `n + min(64 n, 1 MiB)`. Names built from paths (JSON) or repeated per line (multipart part
/// names) can otherwise make the output, and every rule run over it, quadratic in the input.
/// The same shape and constants as Coraza's JSON decoded-size budget, which legitimate bodies
/// never approach.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmitBudget {
    total: usize,
    left: usize,
}

impl EmitBudget {
    const SCALE: usize = 64;
    const SLACK_CAP: usize = 1 << 20;

    pub(crate) fn for_input(n: usize) -> Self {
        let slack = n.saturating_mul(Self::SCALE).min(Self::SLACK_CAP);
        let total = n.saturating_add(slack);
        EmitBudget { total, left: total }
    }

    /// Takes `n` bytes from the budget; `false` (budget unchanged) when they do not fit.
    pub(crate) fn take(&mut self, n: usize) -> bool {
        match self.left.checked_sub(n) {
            Some(left) => {
                self.left = left;
                true
            }
            None => false,
        }
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }
}

/// A stack that lives inline for the first `N` entries and spills to the heap only beyond,
/// so ordinary nesting costs no allocation while deep nesting stays correct.
pub(crate) struct SmallStack<T: Copy + Default, const N: usize> {
    inline: [T; N],
    len: usize,
    spill: Vec<T>,
}

impl<T: Copy + Default, const N: usize> SmallStack<T, N> {
    pub(crate) fn new() -> Self {
        SmallStack {
            inline: [T::default(); N],
            len: 0,
            spill: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn push(&mut self, value: T) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = value,
            None => self.spill.push(value),
        }
        self.len += 1;
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        if self.len >= N {
            self.spill.pop()
        } else {
            self.inline.get(self.len).copied()
        }
    }

    pub(crate) fn last(&self) -> Option<T> {
        self.get(self.len.checked_sub(1)?)
    }

    pub(crate) fn last_mut(&mut self) -> Option<&mut T> {
        let i = self.len.checked_sub(1)?;
        if i >= N {
            self.spill.last_mut()
        } else {
            self.inline.get_mut(i)
        }
    }

    pub(crate) fn get(&self, i: usize) -> Option<T> {
        if i >= self.len {
            None
        } else if i >= N {
            self.spill.get(i - N).copied()
        } else {
            self.inline.get(i).copied()
        }
    }
}

/// Renders untrusted bytes for an error message as ModSecurity's `log_escape_nq` does:
/// printable ASCII as is, `\\` doubled, everything else as `\xHH`; cut after `max` input
/// bytes so a message stays one short line.
pub(crate) fn escape_for_message(bytes: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(bytes.len().min(max) + 8);
    for &b in bytes.iter().take(max) {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > max {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
pub(crate) mod testing {
    //! A recording sink shared by the processors' tests.
    use super::BodySink;

    /// Everything a processor emitted, in order, as owned strings (lossy for readability).
    #[derive(Debug, Default, PartialEq, Eq)]
    pub(crate) struct Recorder {
        pub args: Vec<(Vec<u8>, Vec<u8>)>,
        pub files: Vec<(Vec<u8>, Vec<u8>, usize)>,
        pub part_headers: Vec<(Vec<u8>, Vec<u8>)>,
        pub xml_texts: Vec<Vec<u8>>,
        pub xml_attrs: Vec<(Vec<u8>, Vec<u8>)>,
    }

    impl BodySink for Recorder {
        fn arg(&mut self, name: &[u8], value: &[u8]) {
            self.args.push((name.to_vec(), value.to_vec()));
        }
        fn file(&mut self, field_name: &[u8], file_name: &[u8], size: usize) {
            self.files
                .push((field_name.to_vec(), file_name.to_vec(), size));
        }
        fn part_header(&mut self, part_name: &[u8], line: &[u8]) {
            self.part_headers.push((part_name.to_vec(), line.to_vec()));
        }
        fn xml_text(&mut self, text: &[u8]) {
            self.xml_texts.push(text.to_vec());
        }
        fn xml_attr(&mut self, name: &[u8], value: &[u8]) {
            self.xml_attrs.push((name.to_vec(), value.to_vec()));
        }
    }

    /// `(name, value)` pairs from string literals, for expected lists.
    pub(crate) fn pairs(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// Where the pinned CRS release is, if this machine has it (CI and developers do).
    pub(crate) fn crs_dir() -> Option<std::path::PathBuf> {
        if let Ok(dir) = std::env::var("CRS_DIR") {
            let p = std::path::PathBuf::from(dir);
            if p.is_dir() {
                return Some(p);
            }
        }
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/crs/v4.25.1");
        p.is_dir().then_some(p)
    }

    /// One request of a CRS regression test that carries a body.
    pub(crate) struct CrsStage {
        /// `file.yaml#test_id/stage`.
        pub name: String,
        pub test_id: u64,
        pub rule_id: u64,
        /// The Content-Type header value, if any.
        pub content_type: Option<String>,
        pub body: Vec<u8>,
    }

    impl CrsStage {
        pub(crate) fn content_type_contains(&self, needle: &str) -> bool {
            self.content_type
                .as_deref()
                .is_some_and(|ct| ct.to_ascii_lowercase().contains(needle))
        }
    }

    /// Every stage with a body in the CRS regression tests (`data`, or the body of an
    /// `encoded_request`), read from the pinned release. Panics when the release is not on
    /// this machine (CI and developers have it beside the repository, or in `CRS_DIR`): a
    /// corpus test that silently ran nothing would prove nothing.
    pub(crate) fn crs_stages() -> Vec<CrsStage> {
        let dir = crs_dir()
            .expect("CRS v4.25.1 not found: set CRS_DIR or put shared/ beside the repository")
            .join("tests/regression/tests");
        load_stages(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
    }

    fn load_stages(dir: &std::path::Path) -> Result<Vec<CrsStage>, String> {
        let dir = dir.to_path_buf();
        let mut files = Vec::new();
        let mut pending = vec![dir];
        while let Some(d) = pending.pop() {
            let entries = std::fs::read_dir(&d).map_err(|e| e.to_string())?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    files.push(path);
                }
            }
        }
        files.sort();
        let mut stages = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
            let doc: serde_yaml::Value =
                serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let rule_id = doc.get("rule_id").and_then(|v| v.as_u64()).unwrap_or(0);
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // A file may hold only comments (920539.yaml): no tests, nothing to read.
            let Some(tests) = doc.get("tests").and_then(|t| t.as_sequence()) else {
                continue;
            };
            for test in tests {
                let test_id = test.get("test_id").and_then(|v| v.as_u64()).unwrap_or(0);
                let Some(list) = test.get("stages").and_then(|s| s.as_sequence()) else {
                    continue;
                };
                for (i, stage) in list.iter().enumerate() {
                    let Some(input) = stage.get("input") else {
                        continue;
                    };
                    let name = format!("{file_name}#{test_id}/{i}");
                    let header = |wanted: &str| -> Option<String> {
                        let map = input.get("headers")?.as_mapping()?;
                        map.iter().find_map(|(k, v)| {
                            let k = k.as_str()?;
                            k.eq_ignore_ascii_case(wanted)
                                .then(|| v.as_str().map(str::to_owned))
                                .flatten()
                        })
                    };
                    if let Some(data) = input.get("data").and_then(|d| d.as_str()) {
                        stages.push(CrsStage {
                            name,
                            test_id,
                            rule_id,
                            content_type: header("Content-Type"),
                            body: data.as_bytes().to_vec(),
                        });
                    } else if let Some(raw) = input.get("encoded_request").and_then(|d| d.as_str())
                    {
                        let raw = base64_decode(raw).ok_or(format!("{name}: bad base64"))?;
                        let split = raw
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .ok_or(format!("{name}: no end of headers"))?;
                        let head = String::from_utf8_lossy(raw.get(..split).unwrap_or_default())
                            .into_owned();
                        let content_type = head.split("\r\n").find_map(|line| {
                            let (k, v) = line.split_once(':')?;
                            k.trim()
                                .eq_ignore_ascii_case("content-type")
                                .then(|| v.trim().to_owned())
                        });
                        stages.push(CrsStage {
                            name,
                            test_id,
                            rule_id,
                            content_type,
                            body: raw.get(split + 4..).unwrap_or_default().to_vec(),
                        });
                    }
                }
            }
        }
        Ok(stages)
    }

    /// Standard base64 (with or without padding), for `encoded_request`.
    fn base64_decode(text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(text.len() / 4 * 3);
        let mut acc = 0u32;
        let mut bits = 0;
        for c in text
            .bytes()
            .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            };
            acc = acc << 6 | u32::from(v);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_stack_spills_and_recovers_in_order() {
        let mut s: SmallStack<u32, 2> = SmallStack::new();
        for i in 0..5 {
            s.push(i);
        }
        assert_eq!(s.len(), 5);
        assert_eq!(s.get(0), Some(0));
        assert_eq!(s.get(3), Some(3));
        assert_eq!(s.get(5), None);
        *s.last_mut().unwrap() = 40;
        assert_eq!(s.last(), Some(40));
        let popped: Vec<u32> = std::iter::from_fn(|| s.pop()).collect();
        assert_eq!(popped, vec![40, 3, 2, 1, 0]);
        assert!(s.is_empty());
        assert_eq!(s.last(), None);
    }

    #[test]
    fn emit_budget_scales_then_caps() {
        assert_eq!(EmitBudget::for_input(0).total(), 0);
        assert_eq!(EmitBudget::for_input(10).total(), 10 + 640);
        assert_eq!(
            EmitBudget::for_input(1 << 20).total(),
            (1 << 20) + (1 << 20)
        );
        assert_eq!(EmitBudget::for_input(usize::MAX).total(), usize::MAX);
        let mut b = EmitBudget::for_input(1);
        assert!(b.take(60));
        assert!(!b.take(6));
        assert!(b.take(5));
        assert!(!b.take(1));
    }

    #[test]
    fn error_display_is_one_prefixed_line() {
        let e = BodyError::too_deep(Processor::Json, 512, 1234);
        assert_eq!(
            e.to_string(),
            "JSON parsing error: depth limit 512 exceeded at byte 1234"
        );
        assert_eq!(e.kind(), BodyErrorKind::Limit);
        assert_eq!(e.message(), "depth limit 512 exceeded at byte 1234");
        let e = BodyError::malformed(Processor::Multipart, "Multipart: Final boundary missing.");
        assert_eq!(
            e.to_string(),
            "Multipart parsing error: Multipart: Final boundary missing."
        );
        assert_eq!(e.kind(), BodyErrorKind::Malformed);
    }

    #[test]
    fn escape_for_message_is_bounded_and_printable() {
        assert_eq!(
            escape_for_message(b"ab\x00\xff\"\\c\n", 100),
            "ab\\x00\\xff\"\\\\c\\x0a"
        );
        assert_eq!(escape_for_message(b"abcdef", 3), "abc...");
    }
}
