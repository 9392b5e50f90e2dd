//! `multipart/form-data` request bodies: ARGS_POST, FILES, FILES_NAMES,
//! MULTIPART_PART_HEADERS and every `MULTIPART_*` flag, with ModSecurity v2.9.6+/v3.0.8+
//! semantics.
//!
//! Owns the boundary taken from the Content-Type, the part state machine, the
//! Content-Disposition parser and the strict-validation flags. Must not: store file contents
//! (only their size is reported), allocate per part (values are slices of the body; decoded
//! `name`/`filename` and unfolded header lines go to the caller's scratch buffer), or read a
//! line more than a bounded number of times.
//!
//! # Reference behaviour reproduced
//! The parser follows ModSecurity's `msc_multipart.c` (v2) / `multipart.cc` (v3), which
//! process the body through a 4096-byte line buffer; that buffer is emulated exactly because
//! it decides what counts as a line (a boundary only matches at the start of a buffer that
//! follows a newline, a part header line must fit in it). In particular:
//! - the boundary comes from the Content-Type: `multipart/form-data` (any case), at most one
//!   `boundary` parameter (one `;` before it, else [`MultipartFlags::missing_semicolon`]),
//!   whitespace around `=` sets [`MultipartFlags::boundary_whitespace`], a quoted value sets
//!   [`MultipartFlags::boundary_quoted`], a partially quoted one is an error, and the value
//!   must use RFC 2046 boundary characters (v3's check);
//! - a line `--boundary` ends the current part, `--boundary--` ends the body; each may end in
//!   CRLF or LF (which sets [`MultipartFlags::lf_line`]); any other line starting with `--`
//!   sets [`MultipartFlags::unmatched_boundary`], or is an error when it is the boundary in
//!   quotes or after whitespace;
//! - part headers: folding (continuation lines) sets `header_folding`, and
//!   `invalid_header_folding` when the continuation starts with whitespace other than SP/HT;
//!   a header without `:`, with an empty name, with a name byte outside 0x21..=0x7E
//!   ("contains invalid character", 2.9.6/3.0.8), duplicated, or over the buffer is an error;
//! - Content-Disposition must be `form-data` with only `name` and `filename` parameters,
//!   quoted (`"`, or `'` which sets `invalid_quoting`; `\"` and `\\` are the only escapes) or
//!   token values; a part with a non-empty `filename` is a file (its content is not an
//!   argument), a part whose headers never ended is skipped (`invalid_part`);
//! - the CRLF (or LF) before a boundary belongs to the boundary, not to the value;
//! - data before the first boundary sets `data_before`, any byte after the final one
//!   `data_after`; a body with boundaries but no final one is an error, as is one with none.
//!
//! # Where we differ, and why
//! - ModSecurity adds the arguments only after a successful parse; we hand each part to the
//!   sink as soon as it ends, and on an error we still hand over the part being read (its
//!   data up to the error, or to the end of a truncated body) and its header lines. Both set
//!   `REQBODY_ERROR`; inspecting more cannot hide an attack.
//! - MULTIPART_PART_HEADERS: every header line reaches [`BodySink::part_header`] with its
//!   bytes as received (a folded header is the first line followed by one space and each
//!   continuation without its leading whitespace, ModSecurity's unfolding). Lines of a part
//!   that failed before its name was known are keyed by the empty name. This makes CRS
//!   922130 ("characters outside of valid range") see the raw bytes even though the same
//!   input is also a parse error.
//! - An empty `name` is a missing name and an empty `filename` makes an ordinary field (v3;
//!   v2 treated `filename=""` as a file).
//! - MULTIPART_FILE_LIMIT_EXCEEDED is raised when there are more file parts than the file
//!   limit (ModSecurity raises it only when it extracts files to disk, which we never do).
//! - A part may have at most [`MAX_PART_HEADERS`] header lines (ModSecurity: unbounded).
//! - v3's habit of setting MULTIPART_UNMATCHED_BOUNDARY to 2 for every later matching
//!   boundary is not reproduced; the flag means what v2 and the manual say.

use std::borrow::Cow;

use super::{escape_for_message, BodyError, BodyLimits, BodySink, EmitBudget, Processor};

/// ModSecurity's line buffer (`MULTIPART_BUF_SIZE`).
const BUF_SIZE: usize = 4096;

/// ModSecurity's `SecUploadFileLimit` default: more file parts raise
/// [`MultipartFlags::file_limit_exceeded`].
pub const UPLOAD_FILE_LIMIT: usize = 100;

/// Header lines (continuations included) allowed in one part. Duplicate detection compares
/// each new header with the previous ones, so this also bounds that work.
pub const MAX_PART_HEADERS: usize = 64;

/// The ModSecurity multipart flags (`MULTIPART_*` variables, 1 when `true`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MultipartFlags {
    /// MULTIPART_BOUNDARY_QUOTED: `boundary="..."`.
    pub boundary_quoted: bool,
    /// MULTIPART_BOUNDARY_WHITESPACE: whitespace around the `=` of the boundary parameter.
    pub boundary_whitespace: bool,
    /// MULTIPART_DATA_BEFORE: bytes before the first boundary.
    pub data_before: bool,
    /// MULTIPART_DATA_AFTER: bytes after the final boundary.
    pub data_after: bool,
    /// MULTIPART_HEADER_FOLDING: a part header continued on the next line.
    pub header_folding: bool,
    /// MULTIPART_LF_LINE: a boundary or header line ending in a bare LF.
    pub lf_line: bool,
    /// MULTIPART_CRLF_LINE: a boundary or header line ending in CRLF (the normal case).
    pub crlf_line: bool,
    /// MULTIPART_MISSING_SEMICOLON: no `;` between the media type and `boundary`.
    pub missing_semicolon: bool,
    /// MULTIPART_INVALID_QUOTING: single quotes in Content-Disposition, or a quote right
    /// before a missing `;`.
    pub invalid_quoting: bool,
    /// MULTIPART_INVALID_PART: a part ended before its headers did (it was skipped).
    pub invalid_part: bool,
    /// MULTIPART_INVALID_HEADER_FOLDING: a continuation line starting with whitespace other
    /// than space or tab.
    pub invalid_header_folding: bool,
    /// MULTIPART_FILE_LIMIT_EXCEEDED: more file parts than the file limit.
    pub file_limit_exceeded: bool,
    /// MULTIPART_UNMATCHED_BOUNDARY: a line that looks like a boundary but is not ours.
    /// Not part of MULTIPART_STRICT_ERROR (as in ModSecurity).
    pub unmatched_boundary: bool,
}

impl MultipartFlags {
    /// MULTIPART_CRLF_LF_LINES: both line endings were used.
    pub fn crlf_lf_lines(&self) -> bool {
        self.crlf_line && self.lf_line
    }

    /// Any of the flags MULTIPART_STRICT_ERROR is the OR of (all but `crlf_line` and
    /// `unmatched_boundary`).
    pub fn any_strict(&self) -> bool {
        self.boundary_quoted
            || self.boundary_whitespace
            || self.data_before
            || self.data_after
            || self.header_folding
            || self.lf_line
            || self.missing_semicolon
            || self.invalid_quoting
            || self.invalid_part
            || self.invalid_header_folding
            || self.file_limit_exceeded
    }
}

/// The result of parsing one multipart body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MultipartOutcome {
    pub flags: MultipartFlags,
    /// The parse error (`REQBODY_ERROR` / `REQBODY_PROCESSOR_ERROR`), if any.
    pub error: Option<BodyError>,
    /// Form fields handed to `sink.arg`.
    pub args: usize,
    /// File parts handed to `sink.file`.
    pub files: usize,
    /// Sum of the file sizes (FILES_COMBINED_SIZE).
    pub files_combined_size: usize,
}

impl MultipartOutcome {
    /// MULTIPART_STRICT_ERROR, as the reference manual defines it: the processor error or any
    /// of the strict flags.
    pub fn strict_error(&self) -> bool {
        self.error.is_some() || self.flags.any_strict()
    }
}

/// Parses `body` with the boundary from `content_type` (the Content-Type header value),
/// using [`UPLOAD_FILE_LIMIT`].
pub fn parse<S: BodySink + ?Sized>(
    body: &[u8],
    content_type: &[u8],
    limits: BodyLimits,
    scratch: &mut Vec<u8>,
    sink: &mut S,
) -> MultipartOutcome {
    parse_with_file_limit(body, content_type, limits, UPLOAD_FILE_LIMIT, scratch, sink)
}

/// [`parse`] with an explicit file limit (`SecUploadFileLimit`).
pub fn parse_with_file_limit<S: BodySink + ?Sized>(
    body: &[u8],
    content_type: &[u8],
    limits: BodyLimits,
    file_limit: usize,
    scratch: &mut Vec<u8>,
    sink: &mut S,
) -> MultipartOutcome {
    let mut outcome = MultipartOutcome::default();
    let boundary = match boundary_from_content_type(content_type, &mut outcome.flags) {
        Ok(b) => b,
        Err(e) => {
            outcome.error = Some(e);
            return outcome;
        }
    };
    // "--" + boundary, to look for boundary-like text inside lines in linear time. The
    // Content-Type is at most 1024 bytes, so the boundary fits on the stack.
    let mut needle_buf = [0u8; 1024 + 2];
    let needle_len = boundary.len().saturating_add(2).min(needle_buf.len());
    if let Some(dst) = needle_buf.get_mut(..needle_len) {
        dst.iter_mut()
            .zip(b"--".iter().chain(boundary))
            .for_each(|(d, s)| *d = *s);
    }
    let needle = needle_buf.get(..needle_len).unwrap_or_default();
    scratch.clear();
    let mut parser = Parser {
        body,
        boundary,
        finder: memchr::memmem::Finder::new(needle),
        limits,
        file_limit,
        scratch,
        sink,
        budget: EmitBudget::for_input(body.len().saturating_add(content_type.len())),
        outcome,
        part: None,
        boundary_count: 0,
        parts: 0,
        is_complete: false,
        error_end: 0,
        budget_exhausted: false,
    };
    if let Err(e) = parser.run() {
        parser.abort_part();
        parser.outcome.error = Some(e);
    }
    parser.outcome
}

fn malformed(message: impl Into<Cow<'static, str>>) -> BodyError {
    BodyError::malformed(Processor::Multipart, message)
}

/// C `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Counts `boundary` (any case) occurrences followed somewhere by `=`, as ModSecurity's
/// `multipart_count_boundary_params` does.
fn count_boundary_params(s: &[u8]) -> usize {
    let mut count = 0;
    let mut i = 0;
    while let Some(window) = s.get(i..i + 8) {
        if window.eq_ignore_ascii_case(b"boundary") {
            i += 8;
            if memchr::memchr(b'=', s.get(i..).unwrap_or_default()).is_some() {
                count += 1;
            }
        } else {
            i += 1;
        }
    }
    count
}

/// RFC 2046 `bchars`: digits, letters, `'()+_,-./:=?` and space (not last).
fn boundary_characters_valid(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, &c)| {
        c.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&c) || (c == b' ' && i + 1 < b.len())
    })
}

/// ModSecurity's `multipart_init`: the boundary, borrowed from the header value.
fn boundary_from_content_type<'a>(
    content_type: &'a [u8],
    flags: &mut MultipartFlags,
) -> Result<&'a [u8], BodyError> {
    // The reference works on a C string: a NUL ends the value.
    let ct = content_type
        .get(..memchr::memchr(0, content_type).unwrap_or(content_type.len()))
        .unwrap_or_default();
    if ct.is_empty() {
        return Err(malformed("Multipart: Content-Type header not available."));
    }
    if ct.len() > 1024 {
        return Err(malformed("Multipart: Invalid boundary in C-T (length)."));
    }
    const MEDIA_TYPE: &[u8] = b"multipart/form-data";
    if !ct
        .get(..MEDIA_TYPE.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(MEDIA_TYPE))
    {
        return Err(malformed("Multipart: Invalid MIME type."));
    }
    if count_boundary_params(ct) > 1 {
        return Err(malformed("Multipart: Multiple boundary parameters in C-T."));
    }
    let Some(at) = memchr::memmem::find(ct, b"boundary") else {
        if count_boundary_params(ct) > 0 {
            return Err(malformed(
                "Multipart: Invalid boundary in C-T (case sensitivity).",
            ));
        }
        return Err(malformed("Multipart: Boundary not found in C-T."));
    };
    let mut seen_semicolon = false;
    for &c in ct.get(MEDIA_TYPE.len()..at).unwrap_or_default() {
        if !is_c_space(c) {
            if !seen_semicolon && c == b';' {
                seen_semicolon = true;
            } else {
                return Err(malformed("Multipart: Invalid boundary in C-T (malformed)."));
            }
        }
    }
    if !seen_semicolon {
        flags.missing_semicolon = true;
    }
    let after_name = ct.get(at + 8..).unwrap_or_default();
    let Some(eq) = memchr::memchr(b'=', after_name) else {
        return Err(malformed("Multipart: Invalid boundary in C-T (malformed)."));
    };
    for &c in after_name.get(..eq).unwrap_or_default() {
        if is_c_space(c) {
            flags.boundary_whitespace = true;
        } else {
            return Err(malformed(
                "Multipart: Invalid boundary in C-T (parameter name).",
            ));
        }
    }
    let value = after_name.get(eq + 1..).unwrap_or_default();
    if value.first().is_some_and(|&c| is_c_space(c)) {
        flags.boundary_whitespace = true;
    }
    let len = value.len();
    let boundary = if len >= 2 && value.first() == Some(&b'"') && value.last() == Some(&b'"') {
        flags.boundary_quoted = true;
        value.get(1..len - 1).unwrap_or_default()
    } else {
        if value.first() == Some(&b'"') || (len >= 2 && value.last() == Some(&b'"')) {
            return Err(malformed("Multipart: Invalid boundary in C-T (quote)."));
        }
        value
    };
    if count_boundary_params(boundary) != 0 {
        return Err(malformed("Multipart: Invalid boundary in C-T (content)."));
    }
    if !boundary_characters_valid(boundary) {
        return Err(malformed(
            "Multipart: Invalid boundary in C-T (characters).",
        ));
    }
    if boundary.is_empty() {
        return Err(malformed("Multipart: Invalid boundary in C-T (empty)."));
    }
    Ok(boundary)
}

/// The part being read (ModSecurity's `mpp`).
#[derive(Clone, Copy, Debug)]
struct Part {
    /// Offset of the first header line.
    headers_start: usize,
    /// `false` while reading headers (`mpp_state == 0`).
    in_data: bool,
    /// Header lines seen, continuations included.
    headers: usize,
    /// Length of the last header's (unfolded) value, to bound folding.
    last_value_len: Option<usize>,
    /// Offset of the Content-Disposition header line.
    disposition: Option<usize>,
    /// Form field name, in `scratch[..name_len]`.
    name_len: usize,
    /// Client file name, in `scratch[name_len..name_len + file_name_len]` (file parts only).
    file_name_len: usize,
    is_file: bool,
    /// Value bytes: `body[data_start..data_end]` (the newline before a boundary excluded);
    /// both are set after the empty line that ends the headers.
    data_start: usize,
    data_end: usize,
}

impl Part {
    fn new(headers_start: usize) -> Self {
        Part {
            headers_start,
            in_data: false,
            headers: 0,
            last_value_len: None,
            disposition: None,
            name_len: 0,
            file_name_len: 0,
            is_file: false,
            data_start: headers_start,
            data_end: headers_start,
        }
    }
}

struct Parser<'a, 's, S: ?Sized> {
    body: &'a [u8],
    boundary: &'a [u8],
    finder: memchr::memmem::Finder<'s>,
    limits: BodyLimits,
    file_limit: usize,
    scratch: &'s mut Vec<u8>,
    sink: &'s mut S,
    budget: EmitBudget,
    outcome: MultipartOutcome,
    part: Option<Part>,
    boundary_count: usize,
    parts: usize,
    is_complete: bool,
    /// Where the bytes handed over on an error stop: the start of the line being processed,
    /// or the end of the body when the error is found at the end.
    error_end: usize,
    /// A header line could not be handed over within the output budget.
    budget_exhausted: bool,
}

impl<S: BodySink + ?Sized> Parser<'_, '_, S> {
    /// ModSecurity's `multipart_process_chunk` over the whole body, then
    /// `multipart_complete`.
    fn run(&mut self) -> Result<(), BodyError> {
        let body = self.body;
        if body.is_empty() {
            return Ok(()); // nothing seen: not an error
        }
        let mut pos = 0usize;
        let mut contains_line = true;
        while pos < body.len() {
            let rest = body.get(pos..).unwrap_or_default();
            let window = rest.get(..BUF_SIZE.min(rest.len())).unwrap_or_default();
            let (len, full) = match memchr::memchr(b'\n', window) {
                Some(i) => (i + 1, i + 1 == BUF_SIZE),
                // The buffer never ends on a CR, so that CRLF stays together.
                None if rest.len() >= BUF_SIZE => match rest.get(BUF_SIZE - 1) {
                    Some(b'\r') => (BUF_SIZE - 1, true),
                    _ => (BUF_SIZE, true),
                },
                None => break, // a last line without newline: see `complete`
            };
            let segment = rest.get(..len).unwrap_or_default();
            self.segment(segment, pos, contains_line, full)?;
            pos += len;
            contains_line = segment.last() == Some(&b'\n');
            if self.is_complete && pos < body.len() {
                self.outcome.flags.data_after = true;
                return Ok(());
            }
        }
        self.complete(body.get(pos..).unwrap_or_default(), pos, contains_line)
    }

    /// One buffer's worth: a line, or a slice of a line longer than the buffer.
    fn segment(
        &mut self,
        seg: &[u8],
        at: usize,
        contains_line: bool,
        full: bool,
    ) -> Result<(), BodyError> {
        self.error_end = at;
        let blen = self.boundary.len();
        // The reference compares with C string functions: a NUL ends the line for them.
        let c_len = memchr::memchr(0, seg).unwrap_or(seg.len());
        let looks_like_boundary =
            contains_line && c_len > 3 && seg.first() == Some(&b'-') && seg.get(1) == Some(&b'-');
        if looks_like_boundary {
            if c_len >= blen + 2 && seg.get(2..2 + blen) == Some(self.boundary) {
                let mut end = 2 + blen;
                let is_final = seg.get(end) == Some(&b'-') && seg.get(end + 1) == Some(&b'-');
                if is_final {
                    end += 2;
                }
                match seg.get(end..) {
                    Some(b"\r\n") => self.outcome.flags.crlf_line = true,
                    Some(b"\n") => self.outcome.flags.lf_line = true,
                    _ => {
                        return Err(malformed(format!(
                            "Multipart: Invalid boundary: {}",
                            escape_for_message(seg, 128)
                        )))
                    }
                }
                self.boundary_count += 1;
                return self.process_boundary(is_final, at, at + seg.len());
            }
            if self.outcome.flags.boundary_quoted
                && c_len >= blen + 3
                && seg.get(2) == Some(&b'"')
                && seg.get(3..3 + blen) == Some(self.boundary)
            {
                return Err(malformed("Multipart: Invalid boundary (quotes)."));
            }
            let ws = seg
                .get(2..c_len)
                .unwrap_or_default()
                .iter()
                .take_while(|&&c| is_c_space(c))
                .count();
            if ws > 0 && seg.get(2 + ws..2 + ws + blen) == Some(self.boundary) {
                return Err(malformed("Multipart: Invalid boundary (whitespace)."));
            }
            self.outcome.flags.unmatched_boundary = true;
        } else if contains_line && self.finder.find(seg).is_some() {
            self.outcome.flags.unmatched_boundary = true;
        }

        match self.part {
            None => self.outcome.flags.data_before = true,
            Some(part) if !part.in_data => {
                // The offending line is handed over too: it is what 922130 inspects.
                self.error_end = at + seg.len();
                if full {
                    return Err(malformed(format!(
                        "Multipart: Part header line over {BUF_SIZE} bytes long"
                    )));
                }
                self.header_line(seg, at)?;
            }
            Some(ref mut part) => {
                // The line's own newline is held back: if a boundary follows, it belongs to
                // the boundary (ModSecurity's "reserve").
                let reserve = if seg.ends_with(b"\r\n") {
                    2
                } else if seg.ends_with(b"\n") {
                    1
                } else {
                    0
                };
                part.data_end = at + seg.len() - reserve;
            }
        }
        Ok(())
    }

    /// ModSecurity's `multipart_process_part_header` for one line of the current part.
    fn header_line(&mut self, line: &[u8], at: usize) -> Result<(), BodyError> {
        if memchr::memchr(0, line).is_some() {
            return Err(malformed("Multipart: Nul byte in part headers."));
        }
        if line.len() > 1 && line.get(line.len() - 2) == Some(&b'\r') {
            self.outcome.flags.crlf_line = true;
        } else {
            self.outcome.flags.lf_line = true;
        }
        let Some(mut part) = self.part else {
            return Ok(());
        };
        if line == b"\r\n" || line == b"\n" {
            return self.end_of_headers(part, at);
        }
        if part.headers >= MAX_PART_HEADERS {
            return Err(BodyError::limit(
                Processor::Multipart,
                format!("Multipart: More than {MAX_PART_HEADERS} part header lines."),
            ));
        }
        part.headers += 1;
        self.part = Some(part);
        if line.first().is_some_and(|&c| is_c_space(c)) {
            // Folding: continue the previous header's value. The reference skips every
            // `isspace` byte, line ending included, so a blank continuation line is invalid
            // folding too.
            self.outcome.flags.header_folding = true;
            let lead = line.iter().take_while(|&&c| is_c_space(c)).count();
            if line
                .get(..lead)
                .unwrap_or_default()
                .iter()
                .any(|&c| c != b' ' && c != b'\t')
            {
                self.outcome.flags.invalid_header_folding = true;
            }
            let Some(value_len) = part.last_value_len else {
                return Err(malformed("Multipart: Invalid part header (folding error)."));
            };
            let continued = strip_eol(line.get(lead..).unwrap_or_default()).len();
            let new_len = value_len.saturating_add(1).saturating_add(continued);
            if new_len > BUF_SIZE {
                return Err(malformed("Multipart: Part header too long."));
            }
            part.last_value_len = Some(new_len);
            self.part = Some(part);
            return Ok(());
        }
        let content = strip_eol(line);
        let Some(colon) = memchr::memchr(b':', content) else {
            return Err(malformed(format!(
                "Multipart: Invalid part header (colon missing): {}.",
                escape_for_message(content, 128)
            )));
        };
        let name = content.get(..colon).unwrap_or_default();
        if name.is_empty() {
            return Err(malformed(
                "Multipart: Invalid part header (header name missing).",
            ));
        }
        if name.iter().any(|&c| !(0x21..=0x7e).contains(&c)) {
            return Err(malformed(
                "Multipart: Invalid part header (contains invalid character).",
            ));
        }
        let previous = self.body.get(part.headers_start..at).unwrap_or_default();
        if header_lines(previous)
            .any(|l| header_name(l).is_some_and(|n| n.eq_ignore_ascii_case(name)))
        {
            return Err(malformed(format!(
                "Multipart: Duplicate part header: {}.",
                escape_for_message(name, 128)
            )));
        }
        let value = content.get(colon + 1..).unwrap_or_default();
        let value = trim_start_sp_ht(value);
        part.last_value_len = Some(value.len());
        if name.eq_ignore_ascii_case(b"Content-Disposition") {
            part.disposition = Some(at);
        }
        self.part = Some(part);
        Ok(())
    }

    /// The empty line after a part's headers: parse Content-Disposition, hand over the header
    /// lines, switch to data.
    fn end_of_headers(&mut self, mut part: Part, blank_at: usize) -> Result<(), BodyError> {
        // On an error below, the header lines (without the empty line) are handed over by
        // `abort_part`, keyed by the name when it was parsed.
        self.error_end = blank_at;
        let Some(cd_at) = part.disposition else {
            return Err(malformed(
                "Multipart: Part missing Content-Disposition header.",
            ));
        };
        let body = self.body;
        let cd_value = unfolded_value(body.get(cd_at..blank_at).unwrap_or_default());
        self.scratch.clear();
        let params = parse_content_disposition(&cd_value, self.scratch, &mut self.outcome.flags)
            .map_err(|code| {
                malformed(format!(
                    "Multipart: Invalid Content-Disposition header ({code}): {}.",
                    escape_for_message(&cd_value, 256)
                ))
            });
        let params = match params {
            Ok(p) => p,
            Err(e) => {
                self.scratch.clear();
                return Err(e);
            }
        };
        if params.name_len == 0 {
            self.scratch.clear();
            return Err(malformed(
                "Multipart: Content-Disposition header missing name field.",
            ));
        }
        part.name_len = params.name_len;
        self.part = Some(part);
        if let Some(file_name_len) = params.file_name_len.filter(|&n| n > 0) {
            // Crude parsers look for "filename=": refuse what they would not understand.
            if memchr::memmem::find(&cd_value, b"filename=").is_none() {
                return Err(malformed(
                    "Multipart: Invalid Content-Disposition header (filename).",
                ));
            }
            part.is_file = true;
            part.file_name_len = file_name_len;
        }
        let blank_end = blank_at
            + if body.get(blank_at) == Some(&b'\r') {
                2
            } else {
                1
            };
        part.in_data = true;
        part.data_start = blank_end;
        part.data_end = blank_end;
        self.part = Some(part);
        self.flush_headers(part.headers_start, blank_at, part.name_len);
        if self.budget_exhausted {
            return Err(BodyError::output_budget(
                Processor::Multipart,
                self.budget.total(),
                blank_at,
            ));
        }
        Ok(())
    }

    /// A boundary line: the current part ends; unless final, a new one starts after it.
    fn process_boundary(
        &mut self,
        is_final: bool,
        at: usize,
        line_end: usize,
    ) -> Result<(), BodyError> {
        if let Some(part) = self.part.take() {
            self.finish_part(part, at)?;
        }
        if is_final {
            self.is_complete = true;
            return Ok(());
        }
        self.parts += 1;
        if self.parts > self.limits.max_parts {
            return Err(BodyError::too_many_parts(self.limits.max_parts, at));
        }
        self.scratch.clear();
        self.part = Some(Part::new(line_end));
        Ok(())
    }

    /// Hands a finished part to the sink: a field, a file, or (headers never ended) only its
    /// header lines, flagging the part invalid as ModSecurity does when it skips it.
    fn finish_part(&mut self, part: Part, end: usize) -> Result<(), BodyError> {
        if !part.in_data {
            self.outcome.flags.invalid_part = true;
            self.scratch.clear();
            self.flush_headers(part.headers_start, end, 0);
            return Ok(());
        }
        let body = self.body;
        let value = body.get(part.data_start..part.data_end).unwrap_or_default();
        let (name, rest) = self.scratch.split_at(part.name_len.min(self.scratch.len()));
        if part.is_file {
            let file_name = rest.get(..part.file_name_len).unwrap_or_default();
            self.outcome.files += 1;
            if self.outcome.files > self.file_limit {
                self.outcome.flags.file_limit_exceeded = true;
            }
            self.outcome.files_combined_size =
                self.outcome.files_combined_size.saturating_add(value.len());
            if !self.budget.take(name.len().saturating_add(file_name.len())) {
                return Err(BodyError::output_budget(
                    Processor::Multipart,
                    self.budget.total(),
                    end,
                ));
            }
            self.sink.file(name, file_name, value.len());
        } else {
            if self.outcome.args >= self.limits.max_args {
                return Err(BodyError::too_many_args(
                    Processor::Multipart,
                    self.limits.max_args,
                    end,
                ));
            }
            if !self.budget.take(name.len().saturating_add(value.len())) {
                return Err(BodyError::output_budget(
                    Processor::Multipart,
                    self.budget.total(),
                    end,
                ));
            }
            self.sink.arg(name, value);
            self.outcome.args += 1;
        }
        Ok(())
    }

    /// After an error: hands over what was read of the current part (its data so far, or its
    /// header lines up to `error_end`).
    fn abort_part(&mut self) {
        let Some(part) = self.part.take() else { return };
        if part.in_data {
            // A limit error here is moot: we are already failing.
            let _ = self.finish_part(part, self.error_end);
        } else {
            let name_len = part.name_len.min(self.scratch.len());
            self.scratch.truncate(name_len);
            self.flush_headers(part.headers_start, self.error_end, name_len);
        }
    }

    /// ModSecurity's `multipart_complete`: the body ended without the final boundary being
    /// processed; it may still sit, without its newline, in the buffer (`tail`).
    fn complete(
        &mut self,
        tail: &[u8],
        tail_at: usize,
        contains_line: bool,
    ) -> Result<(), BodyError> {
        if self.is_complete {
            return Ok(());
        }
        self.error_end = self.body.len();
        if self.boundary_count == 0 {
            return Err(malformed("Multipart: No boundaries found in payload."));
        }
        let blen = self.boundary.len();
        if contains_line
            && tail.len() == blen + 4
            && tail.starts_with(b"--")
            && tail.ends_with(b"--")
            && tail.get(2..2 + blen) == Some(self.boundary)
        {
            self.boundary_count += 1;
            return self.process_boundary(true, tail_at, self.body.len());
        }
        // A truncated body: the part being read keeps everything up to the end.
        if let Some(part) = self.part.as_mut().filter(|p| p.in_data) {
            part.data_end = self.body.len();
        }
        Err(malformed("Multipart: Final boundary missing."))
    }

    /// Hands the header lines in `body[start..end]` to `sink.part_header`, keyed by
    /// `scratch[..name_len]`; folded headers are unfolded into the scratch after it.
    fn flush_headers(&mut self, start: usize, end: usize, name_len: usize) {
        let body = self.body;
        let block = body.get(start..end.max(start)).unwrap_or_default();
        let base = self.scratch.len();
        let name_len = name_len.min(base);
        let mut lines = block.split_inclusive(|&b| b == b'\n').peekable();
        while let Some(line) = lines.next() {
            if line == b"\r\n" || line == b"\n" {
                continue;
            }
            let first = strip_eol(line);
            let folded = lines.peek().is_some_and(|next| {
                next.first().is_some_and(|&c| is_c_space(c)) && !is_blank(next)
            });
            let (name, logical): (&[u8], &[u8]) = if folded {
                self.scratch.truncate(base);
                self.scratch.extend_from_slice(first);
                while let Some(next) =
                    lines.next_if(|n| n.first().is_some_and(|&c| is_c_space(c)) && !is_blank(n))
                {
                    let piece = strip_eol(next);
                    let lead = piece.iter().take_while(|&&c| is_c_space(c)).count();
                    self.scratch.push(b' ');
                    self.scratch
                        .extend_from_slice(piece.get(lead..).unwrap_or_default());
                }
                let (head, logical) = self.scratch.split_at(base);
                (head.get(..name_len).unwrap_or_default(), logical)
            } else {
                (self.scratch.get(..name_len).unwrap_or_default(), first)
            };
            if !self.budget.take(name.len().saturating_add(logical.len())) {
                self.budget_exhausted = true;
                break;
            }
            self.sink.part_header(name, logical);
        }
        self.scratch.truncate(base);
    }
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\r\n" || line == b"\n"
}

/// Removes a trailing LF and the CR before it (ModSecurity's `remove_lf_crlf_inplace`).
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_start_sp_ht(value: &[u8]) -> &[u8] {
    let n = value
        .iter()
        .take_while(|&&c| c == b' ' || c == b'\t')
        .count();
    value.get(n..).unwrap_or_default()
}

/// The header lines of a block, each with its line ending.
fn header_lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    block.split_inclusive(|&b| b == b'\n')
}

/// The name of a header line, `None` for a continuation line or one without a colon.
fn header_name(line: &[u8]) -> Option<&[u8]> {
    if line.first().is_some_and(|&c| is_c_space(c)) {
        return None;
    }
    let content = strip_eol(line);
    content.get(..memchr::memchr(b':', content)?)
}

/// The value of the header whose lines (first line, then continuations) start `block`:
/// after the colon and any SP/HT, without line endings, continuations joined by one space.
fn unfolded_value(block: &[u8]) -> Cow<'_, [u8]> {
    let mut lines = header_lines(block);
    let first = lines.next().map(strip_eol).unwrap_or_default();
    let value = first
        .get(memchr::memchr(b':', first).map_or(first.len(), |c| c + 1)..)
        .unwrap_or_default();
    let value = trim_start_sp_ht(value);
    let mut continuations = lines
        .take_while(|l| l.first().is_some_and(|&c| is_c_space(c)) && !is_blank(l))
        .peekable();
    if continuations.peek().is_none() {
        return Cow::Borrowed(value);
    }
    let mut owned = value.to_vec();
    for line in continuations {
        let piece = strip_eol(line);
        let lead = piece.iter().take_while(|&&c| is_c_space(c)).count();
        owned.push(b' ');
        owned.extend_from_slice(piece.get(lead..).unwrap_or_default());
    }
    Cow::Owned(owned)
}

/// `name` and `filename` of a Content-Disposition, decoded into the output buffer as
/// `[name][filename]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Disposition {
    name_len: usize,
    file_name_len: Option<usize>,
}

/// RFC 2616 token characters (ModSecurity's `is_token_char`).
fn is_token_char(c: u8) -> bool {
    c > 32 && c < 127 && !b"()<>@,;:\\\"/[]?=".contains(&c)
}

/// ModSecurity's `multipart_parse_content_disposition`. Errors are its negative codes.
fn parse_content_disposition(
    v: &[u8],
    out: &mut Vec<u8>,
    flags: &mut MultipartFlags,
) -> Result<Disposition, i32> {
    let mut result = Disposition {
        name_len: 0,
        file_name_len: None,
    };
    if !v.starts_with(b"form-data") {
        return Err(-1);
    }
    let at = |p: usize| v.get(p).copied();
    let skip_sp_ht = |mut p: usize| {
        while matches!(v.get(p), Some(b' ' | b'\t')) {
            p += 1;
        }
        p
    };
    let mut p = skip_sp_ht(9);
    if p >= v.len() {
        return Ok(result);
    }
    if at(p) != Some(b';') {
        return Err(-2);
    }
    p += 1;
    // Where the name and the filename were written in `out`, in the order they came.
    let mut name_at: Option<(usize, usize)> = None;
    let mut file_at: Option<(usize, usize)> = None;
    while p < v.len() {
        p = skip_sp_ht(p);
        if p >= v.len() {
            return Err(-3);
        }
        let start = p;
        while at(p).is_some_and(|c| c != b'=' && c != b'\t' && c != b' ') {
            p += 1;
        }
        if p >= v.len() {
            return Err(-4);
        }
        let param = v.get(start..p).unwrap_or_default();
        p = skip_sp_ht(p);
        if p >= v.len() {
            return Err(-5);
        }
        if at(p) != Some(b'=') {
            return Err(-13);
        }
        p = skip_sp_ht(p + 1);
        if p >= v.len() {
            return Err(-6);
        }
        let value_start = out.len();
        match at(p) {
            Some(quote @ (b'"' | b'\'')) => {
                if quote == b'\'' {
                    flags.invalid_quoting = true;
                }
                p += 1;
                if p >= v.len() {
                    return Err(-7);
                }
                loop {
                    let Some(c) = at(p) else { return Err(-10) };
                    if c == b'\\' {
                        match at(p + 1) {
                            None => return Err(-8),
                            // Only the quote and the backslash are escapes; IE sends other
                            // backslashes unescaped, so they are kept.
                            Some(n) if n == quote || n == b'\\' => p += 1,
                            Some(_) => {}
                        }
                    } else if c == quote {
                        break;
                    }
                    if let Some(c) = at(p) {
                        out.push(c);
                    }
                    p += 1;
                }
                p += 1; // the closing quote
            }
            _ => {
                let start = p;
                while at(p).is_some_and(is_token_char) {
                    p += 1;
                }
                out.extend_from_slice(v.get(start..p).unwrap_or_default());
            }
        }
        let value = (value_start, out.len() - value_start);
        let value_bytes = out.get(value_start..).unwrap_or_default();
        if value_bytes.contains(&b'\'') {
            flags.invalid_quoting = true;
        }
        match param {
            b"name" => {
                if name_at.is_some_and(|(_, len)| len > 0) {
                    return Err(-14);
                }
                name_at = Some(value);
            }
            b"filename" => {
                if file_at.is_some_and(|(_, len)| len > 0) {
                    return Err(-15);
                }
                file_at = Some(value);
            }
            _ => return Err(-11),
        }
        if p < v.len() {
            p = skip_sp_ht(p);
            if p >= v.len() {
                break;
            }
            if at(p) != Some(b';') {
                if matches!(p.checked_sub(1).and_then(at), Some(b'\'' | b'"')) {
                    flags.invalid_quoting = true;
                }
                return Err(-12);
            }
            p += 1;
        }
    }
    finish_disposition(out, name_at, file_at, &mut result);
    Ok(result)
}

/// Rearranges `out` to `[name][filename]`. Only `name` and `filename` parameters are
/// accepted and a repeated one is an error unless the earlier value was empty, so `out` holds
/// exactly the final two values in header order: one rotation puts the name first.
fn finish_disposition(
    out: &mut [u8],
    name_at: Option<(usize, usize)>,
    file_at: Option<(usize, usize)>,
    result: &mut Disposition,
) {
    if let (Some((name_start, _)), Some((file_start, file_len))) = (name_at, file_at) {
        if file_start < name_start {
            out.rotate_left(file_len.min(out.len()));
        }
    }
    result.name_len = name_at.map_or(0, |(_, len)| len);
    result.file_name_len = file_at.map(|(_, len)| len);
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // table-driven cases
mod tests {
    use super::*;
    use crate::engine::body::testing::{crs_stages, pairs, Recorder};
    use crate::engine::body::BodyErrorKind;

    /// Turns an indented text block into a body: common indentation removed, lines joined
    /// with CRLF (the ModSecurity tests' `normalize_raw_request_data`).
    fn crlf(text: &str) -> Vec<u8> {
        let mut lines: Vec<&str> = text.lines().collect();
        if lines.first() == Some(&"") {
            lines.remove(0);
        }
        if lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        let indent = lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start().len())
            .min()
            .unwrap_or(0);
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l.get(indent..).unwrap_or("").as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn mp_with(
        ct: &str,
        body: &[u8],
        limits: BodyLimits,
        files: usize,
    ) -> (Recorder, MultipartOutcome) {
        let mut sink = Recorder::default();
        let mut scratch = Vec::new();
        let outcome =
            parse_with_file_limit(body, ct.as_bytes(), limits, files, &mut scratch, &mut sink);
        assert_eq!(outcome.args, sink.args.len());
        assert_eq!(outcome.files, sink.files.len());
        (sink, outcome)
    }

    fn mp(ct: &str, body: &[u8]) -> (Recorder, MultipartOutcome) {
        mp_with(ct, body, BodyLimits::UNBOUNDED, UPLOAD_FILE_LIMIT)
    }

    fn error(outcome: &MultipartOutcome) -> String {
        outcome
            .error
            .as_ref()
            .map(|e| e.message().to_owned())
            .unwrap_or_default()
    }

    const CT: &str = "multipart/form-data; boundary=0000";
    const CT_LONG: &str =
        "multipart/form-data; boundary=---------------------------69343412719991675451336310646";

    fn normal_body() -> Vec<u8> {
        crlf(
            r#"
            --0000
            Content-Disposition: form-data; name="name"

            Brian Rectanus
            --0000
            Content-Disposition: form-data; name="email"

            brian.rectanus@breach.com
            --0000
            Content-Disposition: form-data; name="image"; filename="image.jpg"
            Content-Type: image/jpeg

            BINARYDATA
            --0000--
            "#,
        )
    }

    /// ModSecurity regression "multipart parser (normal)": two fields, one 10-byte file, no
    /// flag but CRLF, nothing strict.
    #[test]
    fn well_formed_body() {
        let (sink, outcome) = mp(CT, &normal_body());
        assert_eq!(outcome.error, None);
        assert_eq!(
            sink.args,
            pairs(&[
                ("name", "Brian Rectanus"),
                ("email", "brian.rectanus@breach.com")
            ])
        );
        assert_eq!(
            sink.files,
            vec![(b"image".to_vec(), b"image.jpg".to_vec(), 10)]
        );
        assert_eq!(outcome.files_combined_size, 10);
        assert_eq!(
            sink.part_headers,
            pairs(&[
                ("name", "Content-Disposition: form-data; name=\"name\""),
                ("email", "Content-Disposition: form-data; name=\"email\""),
                (
                    "image",
                    "Content-Disposition: form-data; name=\"image\"; filename=\"image.jpg\""
                ),
                ("image", "Content-Type: image/jpeg"),
            ])
        );
        assert_eq!(
            outcome.flags,
            MultipartFlags {
                crlf_line: true,
                ..MultipartFlags::default()
            }
        );
        assert!(!outcome.strict_error());
    }

    /// ModSecurity regression tests for boundaries and final lines that must parse cleanly.
    #[test]
    fn clean_variants() {
        let two = |b: &str| {
            format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--{b}\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n2\r\n--{b}--"
            )
        };
        let cases: Vec<(&str, String, String)> = vec![
            ("final crlf", CT_LONG.into(), two("---------------------------69343412719991675451336310646") + "\r\n"),
            ("no final crlf", CT_LONG.into(), two("---------------------------69343412719991675451336310646")),
            (
                "boundary contains boundary",
                "multipart/form-data; boundary=------------------------------------------------boundary".into(),
                two("------------------------------------------------boundary") + "\r\n",
            ),
            (
                "khtml boundary",
                "multipart/form-data; boundary=--------0xKhTmLbOuNdArY".into(),
                two("--------0xKhTmLbOuNdArY") + "\r\n",
            ),
            ("media type case", "Multipart/Form-Data; boundary=0000".into(), two("0000")),
            ("rfc 2046 characters", "multipart/form-data; boundary=a'()+_,-./:=?b".into(), two("a'()+_,-./:=?b")),
        ];
        for (name, ct, body) in cases {
            let (sink, outcome) = mp(&ct, body.as_bytes());
            assert_eq!(outcome.error, None, "case {name}");
            assert_eq!(sink.args, pairs(&[("a", "1"), ("b", "2")]), "case {name}");
            assert!(!outcome.strict_error(), "case {name}: {:?}", outcome.flags);
        }
    }

    /// Each flag from a minimal body (ModSecurity regression tests where they exist).
    #[test]
    fn each_flag_from_a_minimal_body() {
        let field = |name: &str, value: &str| {
            format!("--0000\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
        };
        let ok_body = format!("{}--0000--\r\n", field("a", "1"));
        type Check = fn(&MultipartFlags) -> bool;
        let cases: Vec<(&str, &str, Vec<u8>, Check)> = vec![
            ("boundary quoted", "multipart/form-data; boundary=\"0000\"", ok_body.clone().into(), |f| f.boundary_quoted),
            ("whitespace after name", "multipart/form-data; boundary =0000", ok_body.clone().into(), |f| f.boundary_whitespace),
            ("missing semicolon", "multipart/form-data boundary=0000", ok_body.clone().into(), |f| f.missing_semicolon),
            ("data before", CT, format!("preamble\r\n{ok_body}").into(), |f| f.data_before),
            ("data after", CT, format!("{ok_body}\r\n").into(), |f| f.data_after),
            (
                "lf line",
                CT,
                b"--0000\nContent-Disposition: form-data; name=\"a\"\n\n1\n--0000--\n".to_vec(),
                |f| f.lf_line && !f.crlf_line,
            ),
            (
                "crlf and lf lines",
                CT,
                b"--0000\r\nContent-Disposition: form-data; name=\"a\"\n\r\n1\r\n--0000--\r\n".to_vec(),
                |f| f.crlf_lf_lines(),
            ),
            (
                "header folding",
                CT,
                b"--0000\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\n1\r\n--0000--\r\n".to_vec(),
                |f| f.header_folding && !f.invalid_header_folding,
            ),
            (
                "invalid header folding",
                CT,
                b"--0000\r\nContent-Disposition: form-data;\r\n\x0bname=\"a\"\r\n\r\n1\r\n--0000--\r\n".to_vec(),
                |f| f.header_folding && f.invalid_header_folding,
            ),
            (
                "invalid quoting",
                CT,
                b"--0000\r\nContent-Disposition: form-data; name='a'\r\n\r\n1\r\n--0000--\r\n".to_vec(),
                |f| f.invalid_quoting,
            ),
            (
                "invalid part",
                CT,
                format!("--0000\r\nContent-Disposition: form-data; name=\"x\"\r\n{ok_body}").into(),
                |f| f.invalid_part,
            ),
            (
                "unmatched boundary",
                CT,
                format!("{}--0000--\r\n", field("a", "--00")).into(),
                |f| f.unmatched_boundary,
            ),
        ];
        for (name, ct, body, check) in cases {
            let (sink, outcome) = mp(ct, &body);
            assert_eq!(outcome.error, None, "case {name}: {}", error(&outcome));
            assert!(check(&outcome.flags), "case {name}: {:?}", outcome.flags);
            assert_eq!(
                sink.args,
                pairs(&[(
                    "a",
                    if name == "unmatched boundary" {
                        "--00"
                    } else {
                        "1"
                    }
                )]),
                "case {name}"
            );
            // The OR: every flag but unmatched_boundary makes the body strict-invalid.
            assert_eq!(
                outcome.strict_error(),
                name != "unmatched boundary",
                "case {name}"
            );
        }
        // The same body with none of the oddities raises nothing.
        let (_, outcome) = mp(CT, ok_body.as_bytes());
        assert_eq!(
            outcome.flags,
            MultipartFlags {
                crlf_line: true,
                ..MultipartFlags::default()
            }
        );
    }

    /// ModSecurity "part header folding" tests: the folded header is unfolded with one space.
    #[test]
    fn folding_variants() {
        let cases: &[(&str, &[u8], bool)] = &[
            ("space", b" name=\"b\"", false),
            ("tab", b"\t\tname=\"b\"", false),
            ("mixed", b"\t \tname=\"b\"", false),
            ("invalid", b"\x0bname=\"b\"", true),
            ("mixed invalid", b" \x0cname=\"b\"", true),
            ("blank continuation", b"  ", true),
        ];
        for (name, continuation, invalid) in cases {
            let mut body = b"--0000\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--0000\r\nContent-Disposition: form-data;\r\n".to_vec();
            body.extend_from_slice(continuation);
            body.extend_from_slice(b"\r\n");
            if *name == "blank continuation" {
                body.extend_from_slice(b" name=\"b\"\r\n");
            }
            body.extend_from_slice(b"\r\n2\r\n--0000--\r\n");
            let (sink, outcome) = mp(CT, &body);
            assert_eq!(outcome.error, None, "case {name}");
            assert!(outcome.flags.header_folding, "case {name}");
            assert_eq!(
                outcome.flags.invalid_header_folding, *invalid,
                "case {name}"
            );
            assert_eq!(sink.args, pairs(&[("a", "1"), ("b", "2")]), "case {name}");
            let folded = sink
                .part_headers
                .iter()
                .find(|(n, _)| n == b"b")
                .map(|(_, l)| l.clone());
            let want: &[u8] = if *name == "blank continuation" {
                b"Content-Disposition: form-data;  name=\"b\""
            } else {
                b"Content-Disposition: form-data; name=\"b\""
            };
            assert_eq!(folded.as_deref(), Some(want), "case {name}");
        }
    }

    /// Content-Type handling (ModSecurity regression tests; where v2 and v3 differ the v3
    /// RFC 2046 character check is what we follow, noted per case).
    #[test]
    fn content_type_table() {
        let body = normal_body();
        let cases: &[(&str, &str, &str)] = &[
            ("empty", "", "Multipart: Content-Type header not available."),
            (
                "not form-data",
                "multipart/mixed; boundary=0000",
                "Multipart: Invalid MIME type.",
            ),
            (
                "comma separator",
                "multipart/form-data, boundary=0000",
                "Multipart: Invalid boundary in C-T (malformed).",
            ),
            (
                "two semicolons",
                "multipart/form-data; ; boundary=0000",
                "Multipart: Invalid boundary in C-T (malformed).",
            ),
            (
                "param before boundary",
                "multipart/form-data; charset=utf-8; boundary=0000",
                "Multipart: Invalid boundary in C-T (malformed).",
            ),
            (
                "case sensitivity",
                "multipart/form-data; bOundAry=0000",
                "Multipart: Invalid boundary in C-T (case sensitivity).",
            ),
            (
                "no boundary",
                "multipart/form-data",
                "Multipart: Boundary not found in C-T.",
            ),
            (
                "no equals",
                "multipart/form-data; boundary",
                "Multipart: Invalid boundary in C-T (malformed).",
            ),
            (
                "parameter name",
                "multipart/form-data; boundary123=0000",
                "Multipart: Invalid boundary in C-T (parameter name).",
            ),
            (
                "two boundaries quoted first",
                "multipart/form-data; boundary=\"0000\"; boundary=1111",
                "Multipart: Multiple boundary parameters in C-T.",
            ),
            (
                "two boundaries comma",
                "multipart/form-data; boundary=0000, boundary=1111",
                "Multipart: Multiple boundary parameters in C-T.",
            ),
            (
                "only start quote",
                "multipart/form-data; boundary=\"0000",
                "Multipart: Invalid boundary in C-T (quote).",
            ),
            (
                "only end quote",
                "multipart/form-data; boundary=0000\"",
                "Multipart: Invalid boundary in C-T (quote).",
            ),
            (
                "contained quote",
                "multipart/form-data; boundary=\"00\\\"00\"",
                "Multipart: Invalid boundary in C-T (characters).",
            ),
            (
                "two quoted values",
                "multipart/form-data; boundary=\"00\"\"00\"",
                "Multipart: Invalid boundary in C-T (characters).",
            ),
            // v2 accepted a trailing space (Apache strips it before ModSecurity sees it).
            (
                "trailing space",
                "multipart/form-data; boundary=0000 ",
                "Multipart: Invalid boundary in C-T (characters).",
            ),
            (
                "quoted trailing space",
                "multipart/form-data; boundary=\"0000 \"",
                "Multipart: Invalid boundary in C-T (characters).",
            ),
            (
                "params after boundary",
                "multipart/form-data; boundary=0000; charset=utf-8",
                "Multipart: Invalid boundary in C-T (characters).",
            ),
            (
                "boundary in value",
                "multipart/form-data; boundary=xboundary=1",
                "Multipart: Multiple boundary parameters in C-T.",
            ),
            (
                "empty quoted",
                "multipart/form-data; boundary=\"\"",
                "Multipart: Invalid boundary in C-T (empty).",
            ),
            (
                "empty",
                "multipart/form-data; boundary=",
                "Multipart: Invalid boundary in C-T (empty).",
            ),
            (
                "non-ascii",
                "multipart/form-data; boundary=00\u{e9}",
                "Multipart: Invalid boundary in C-T (characters).",
            ),
            // Allowed characters, but not the boundary the body uses.
            (
                "whitespace before value",
                "multipart/form-data; boundary= 0000",
                "Multipart: No boundaries found in payload.",
            ),
            (
                "space inside",
                "multipart/form-data; boundary=0000 1111",
                "Multipart: No boundaries found in payload.",
            ),
            (
                "comma inside",
                "multipart/form-data; boundary=0000,1111",
                "Multipart: No boundaries found in payload.",
            ),
        ];
        for (name, ct, want) in cases {
            let (sink, outcome) = mp(ct, &body);
            assert_eq!(error(&outcome), *want, "case {name}");
            assert!(outcome.strict_error(), "case {name}");
            if want.contains("C-T") || want.contains("MIME") {
                assert!(
                    sink.args.is_empty() && sink.part_headers.is_empty(),
                    "case {name}"
                );
            }
        }
        let long = format!("multipart/form-data; boundary={}", "a".repeat(1000));
        let (_, outcome) = mp(&long, &body);
        assert_eq!(
            error(&outcome),
            "Multipart: Invalid boundary in C-T (length)."
        );
    }

    #[test]
    fn quoted_boundary_with_spaces_is_used_as_is() {
        for (ct, b) in [
            ("multipart/form-data; boundary=\" 0000\"", " 0000"),
            ("multipart/form-data; boundary=\"0000 1111\"", "0000 1111"),
        ] {
            let body = format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--{b}--\r\n"
            );
            let (sink, outcome) = mp(ct, body.as_bytes());
            assert_eq!(outcome.error, None, "{ct}");
            assert_eq!(sink.args, pairs(&[("a", "1")]));
            assert!(outcome.flags.boundary_quoted && outcome.strict_error());
        }
    }

    /// Errors in the body, with what was handed over before them.
    #[test]
    fn body_error_table() {
        let cases: &[(&str, &str, &str, &[(&str, &str)])] = &[
            (
                "no final boundary",
                "--0000\nContent-Disposition: form-data; name=\"a\"\n\n1\n--0000\nContent-Disposition: form-data; name=\"b\"\n\n2\n",
                "Multipart: Final boundary missing.",
                &[("a", "1"), ("b", "2\r\n")],
            ),
            (
                "no disposition",
                "--0000\n\n1\n--0000--\n",
                "Multipart: Part missing Content-Disposition header.",
                &[],
            ),
            (
                "bad disposition",
                "--0000\nContent-Disposition: form-data name=\"a\"\n\n1\n--0000--\n",
                "Multipart: Invalid Content-Disposition header (-2): form-data name=\"a\".",
                &[],
            ),
            (
                "no name",
                "--0000\nContent-Disposition: form-data;\n\n1\n--0000--\n",
                "Multipart: Content-Disposition header missing name field.",
                &[],
            ),
            (
                "semicolon then space",
                "--0000\nContent-Disposition: form-data; \n\n1\n--0000--\n",
                "Multipart: Invalid Content-Disposition header (-3): form-data; .",
                &[],
            ),
            (
                "name missing",
                "--0000\nContent-Disposition: form-data\n\n1\n--0000--\n",
                "Multipart: Content-Disposition header missing name field.",
                &[],
            ),
            (
                "empty name",
                "--0000\nContent-Disposition: form-data; name=\"\"\n\n1\n--0000--\n",
                "Multipart: Content-Disposition header missing name field.",
                &[],
            ),
            (
                "header name missing",
                "--0000\nContent-Disposition: form-data; name=\"a\"\n\n1\n--0000\n:\n--0000\nContent-Disposition: form-data; name=\"b\"\n\n2\n--0000--\n",
                "Multipart: Invalid part header (header name missing).",
                &[("a", "1")],
            ),
            (
                "colon missing",
                "--0000\nContent-Disposition form-data\n\n1\n--0000--\n",
                "Multipart: Invalid part header (colon missing): Content-Disposition form-data.",
                &[],
            ),
            (
                "duplicate header",
                "--0000\nContent-Disposition: form-data; name=\"a\"\ncontent-disposition: form-data; name=\"b\"\n\n1\n--0000--\n",
                "Multipart: Duplicate part header: content-disposition.",
                &[],
            ),
            (
                "folding without header",
                "--0000\n name=\"a\"\n\n1\n--0000--\n",
                "Multipart: Invalid part header (folding error).",
                &[],
            ),
            (
                "nul in header",
                "--0000\nContent-Disposition: form-data; name=\"a\0\"\n\n1\n--0000--\n",
                "Multipart: Nul byte in part headers.",
                &[],
            ),
            (
                "duplicate name",
                "--0000\nContent-Disposition: form-data; name=\"a\"\n\n1\n--0000\nContent-Disposition: form-data; name=';filename=\"dummy';name=b;\"\n\n2\n--0000--\n",
                "Multipart: Invalid Content-Disposition header (-14): form-data; name=';filename=\"dummy';name=b;\".",
                &[("a", "1")],
            ),
            (
                "attachment (multipart/mixed)",
                "--0000\nContent-Disposition: attachment\nContent-Type: multipart/mixed; boundary=BbC04y\n\n--BbC04y\n--0000--\n",
                "Multipart: Invalid Content-Disposition header (-1): attachment.",
                &[],
            ),
            (
                "unknown parameter",
                "--0000\nContent-Disposition: form-data; name=\"a\"; foo=\"b\"\n\n1\n--0000--\n",
                "Multipart: Invalid Content-Disposition header (-11): form-data; name=\"a\"; foo=\"b\".",
                &[],
            ),
            (
                "rfc 5987 filename",
                "--0000\nContent-Disposition: form-data; name=\"a\"; filename*=UTF-8''x\n\n1\n--0000--\n",
                "Multipart: Invalid Content-Disposition header (-11): form-data; name=\"a\"; filename*=UTF-8''x.",
                &[],
            ),
            (
                "unterminated quote",
                "--0000\nContent-Disposition: form-data; name=\"a\n\n1\n--0000--\n",
                "Multipart: Invalid Content-Disposition header (-10): form-data; name=\"a.",
                &[],
            ),
            (
                "filename not understood by crude parsers",
                "--0000\nContent-Disposition: form-data; name=\"a\"; filename =\"x\"\n\n1\n--0000--\n",
                "Multipart: Invalid Content-Disposition header (filename).",
                &[],
            ),
            (
                "garbage after value",
                "--0000\nContent-Disposition: form-data; name=\"a\"x\n\n1\n--0000--\n",
                "Multipart: Invalid Content-Disposition header (-12): form-data; name=\"a\"x.",
                &[],
            ),
            (
                "boundary with junk",
                "--0000\nContent-Disposition: form-data; name=\"a\"\n\n1\n--0000x\n",
                "Multipart: Invalid boundary: --0000x\\x0d\\x0a",
                &[("a", "1")],
            ),
            (
                "boundary after whitespace",
                "--0000\nContent-Disposition: form-data; name=\"a\"\n\n1\n--  0000--\n",
                "Multipart: Invalid boundary (whitespace).",
                &[("a", "1")],
            ),
            ("no boundaries", "just text\n", "Multipart: No boundaries found in payload.", &[]),
        ];
        for (name, body, want, args) in cases {
            let body = body.replace('\n', "\r\n");
            let (sink, outcome) = mp(CT, body.as_bytes());
            assert_eq!(error(&outcome), *want, "case {name}");
            assert_eq!(sink.args, pairs(args), "case {name}");
            assert!(outcome.strict_error(), "case {name}");
        }
    }

    #[test]
    fn quoted_boundary_in_body_is_an_error() {
        let body = b"--\"0000\"\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--\"0000\"--\r\n";
        let (_, outcome) = mp("multipart/form-data; boundary=\"0000\"", body);
        assert_eq!(error(&outcome), "Multipart: Invalid boundary (quotes).");
    }

    /// CRS 922130: a header name byte outside 0x21..=0x7E is a parse error (2.9.6/3.0.8) and
    /// the raw line still reaches MULTIPART_PART_HEADERS, so the rule can match as well.
    #[test]
    fn invalid_header_characters_reach_part_headers_raw() {
        for bad in [
            &b"\x0eContent-Disposition"[..],
            b"Content-Disposition\x0e",
            b"Content- Disposition",
            b"Content\x7f-Disposition",
            b"Content\xc3\xa9",
        ] {
            let mut body = b"--boundary\r\n".to_vec();
            let mut line = bad.to_vec();
            line.extend_from_slice(b": form-data; name=\"file\"; filename=\"1.php\"");
            body.extend_from_slice(&line);
            body.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"post\"\r\n\r\n<?php var_dump(file_get_contents(\"/etc/passwd\"));\r\n--boundary--");
            let (sink, outcome) = mp("multipart/form-data; boundary=boundary", &body);
            assert_eq!(
                error(&outcome),
                "Multipart: Invalid part header (contains invalid character).",
                "{}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(outcome.error.as_ref().unwrap().to_string(),
                "Multipart parsing error: Multipart: Invalid part header (contains invalid character).");
            assert_eq!(sink.part_headers, vec![(Vec::new(), line)]);
            assert!(sink.args.is_empty() && sink.files.is_empty());
        }
        // '!' and '~' are the edges of the valid range (922130-5/6): no error.
        let body = b"--boundary\nContent~Disposition: form-data; name=\"file\"; filename=\"1.php\"\nContent-Disposition: form-data; name=\"post\"\n\n<?php\n--boundary--\n";
        let (sink, outcome) = mp("multipart/form-data; boundary=boundary", body);
        assert_eq!(outcome.error, None);
        assert_eq!(sink.args, pairs(&[("post", "<?php")]));
        assert_eq!(sink.part_headers.len(), 2);
        assert!(sink.part_headers.iter().all(|(n, _)| n == b"post"));
    }

    #[test]
    fn content_disposition_values() {
        let cases: &[(&str, &str, Option<(&str, &str)>, bool)] = &[
            ("unquoted", "name=abc", Some(("abc", "")), false),
            (
                "escapes",
                r#"name="a\"b\\c\d""#,
                Some(("a\"b\\c\\d", "")),
                false,
            ),
            (
                "filename first",
                r#"filename="f.txt"; name="n""#,
                Some(("n", "f.txt")),
                false,
            ),
            (
                "spaces around",
                "  name = \"n\" ;  filename = \"f\" ",
                None,
                false,
            ),
            (
                "single quotes",
                "name='n'; filename='f'",
                Some(("n", "f")),
                true,
            ),
            (
                "quote inside value",
                r#"name="a'b""#,
                Some(("a'b", "")),
                true,
            ),
            (
                "empty filename is a field",
                r#"name="n"; filename="""#,
                Some(("n", "")),
                false,
            ),
            (
                "name repeated after empty",
                r#"name=""; name="n""#,
                Some(("n", "")),
                false,
            ),
            (
                "semicolon in quotes",
                r#"name="a;b""#,
                Some(("a;b", "")),
                false,
            ),
            ("trailing semicolon", r#"name="n";"#, Some(("n", "")), false),
        ];
        for (name, params, want, quoting) in cases {
            let body = format!(
                "--0000\r\nContent-Disposition: form-data; {params}\r\n\r\nV\r\n--0000--\r\n"
            );
            let (sink, outcome) = mp(CT, body.as_bytes());
            match want {
                Some((field, "")) => {
                    assert_eq!(outcome.error, None, "case {name}: {}", error(&outcome));
                    assert_eq!(sink.args, pairs(&[(field, "V")]), "case {name}");
                }
                Some((field, file)) => {
                    assert_eq!(outcome.error, None, "case {name}: {}", error(&outcome));
                    assert_eq!(
                        sink.files,
                        vec![(field.as_bytes().to_vec(), file.as_bytes().to_vec(), 1)],
                        "case {name}"
                    );
                }
                // "filename =" is parsed but refused by the crude-parser check.
                None => assert_eq!(
                    error(&outcome),
                    "Multipart: Invalid Content-Disposition header (filename).",
                    "case {name}"
                ),
            }
            assert_eq!(outcome.flags.invalid_quoting, *quoting, "case {name}");
        }
    }

    /// The newline before a boundary belongs to it; everything else is value, binary-safe.
    #[test]
    fn values_keep_their_bytes() {
        let cases: &[(&str, &[u8], &[u8])] = &[
            ("multi-line crlf", b"l1\r\nl2", b"l1\r\nl2"),
            ("empty", b"", b""),
            ("only newline", b"\r\n", b"\r\n"),
            ("bare cr kept", b"a\rb\r", b"a\rb\r"),
            ("nul and high bytes", b"\x00\xff\xfe--", b"\x00\xff\xfe--"),
            ("dash lines", b"--test\r\n--", b"--test\r\n--"),
        ];
        for (name, value, want) in cases {
            let mut body = b"--0000\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n".to_vec();
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n--0000--\r\n");
            let (sink, outcome) = mp(CT, &body);
            assert_eq!(outcome.error, None, "case {name}");
            assert_eq!(
                sink.args,
                vec![(b"a".to_vec(), want.to_vec())],
                "case {name}"
            );
        }
        // A value with LF line endings loses only the LF before the boundary.
        let (sink, _) = mp(
            CT,
            b"--0000\nContent-Disposition: form-data; name=\"a\"\n\nx\r\n\n--0000--\n",
        );
        assert_eq!(sink.args, pairs(&[("a", "x\r\n")]));
    }

    /// Lines longer than the 4096-byte buffer: values stay whole, a boundary only counts at
    /// the start of a buffer that follows a newline, header lines must fit.
    #[test]
    fn the_line_buffer_is_emulated() {
        let long = "x".repeat(10_000);
        let body = format!(
            "--0000\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n{long}\r\n--0000--\r\n"
        );
        let (sink, outcome) = mp(CT, body.as_bytes());
        assert_eq!(outcome.error, None);
        assert_eq!(sink.args, vec![(b"a".to_vec(), long.clone().into_bytes())]);

        // "--0000" inside the first buffer of a line is "unmatched"; inside a later one it
        // is not even looked at (the buffer does not start a line).
        for (offset, flagged) in [(100usize, true), (5000, false)] {
            let mut value = "y".repeat(6000);
            value.replace_range(offset..offset + 6, "--0000");
            let body = format!("--0000\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n{value}\r\n--0000--\r\n");
            let (sink, outcome) = mp(CT, body.as_bytes());
            assert_eq!(outcome.flags.unmatched_boundary, flagged, "offset {offset}");
            assert_eq!(sink.args[0].1, value.as_bytes());
        }

        // A CR never ends a buffer: with CRLF straddling byte 4096 the CRLF stays together.
        let value = "z".repeat(4095 - 2);
        let body = format!(
            "--0000\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n{value}ab\r\n--0000--\r\n"
        );
        let (sink, outcome) = mp(CT, body.as_bytes());
        assert_eq!(outcome.error, None);
        assert_eq!(sink.args[0].1.len(), 4095);

        let header = format!(
            "Content-Disposition: form-data; name=\"{}\"",
            "n".repeat(4100)
        );
        let body = format!("--0000\r\n{header}\r\n\r\n1\r\n--0000--\r\n");
        let (sink, outcome) = mp(CT, body.as_bytes());
        assert_eq!(
            error(&outcome),
            "Multipart: Part header line over 4096 bytes long"
        );
        assert_eq!(
            sink.part_headers.len(),
            1,
            "the partial line is still handed over"
        );
        // 4093 bytes + CRLF fit: the buffer must not fill up (4096 with the CRLF does not).
        for (len, ok) in [(4093usize, true), (4094, false)] {
            let pad = len - "Content-Disposition: form-data; name=\"\"".len();
            let header = format!(
                "Content-Disposition: form-data; name=\"{}\"",
                "n".repeat(pad)
            );
            assert_eq!(header.len(), len);
            let body = format!("--0000\r\n{header}\r\n\r\n1\r\n--0000--\r\n");
            let (_, outcome) = mp(CT, body.as_bytes());
            assert_eq!(outcome.error.is_none(), ok, "header line of {len} bytes");
        }
    }

    /// ModSecurity "File limits": three files over a limit of two still reach FILES.
    #[test]
    fn file_limit() {
        let body = crlf(
            r#"
            --0000
            Content-Disposition: form-data; name="name"

            Brian Rectanus
            --0000
            Content-Disposition: form-data; name="image1"; filename="image1.jpg"
            Content-Type: image/jpeg

            BINARYDATA1
            --0000
            Content-Disposition: form-data; name="image2"; filename="image2.jpg"

            BINARYDATA2
            --0000
            Content-Disposition: form-data; name="image3"; filename="image3.jpg"

            BINARYDATA3
            --0000
            Content-Disposition: form-data; name="test"

            This is test data.
            --0000--
            "#,
        );
        let (sink, outcome) = mp_with(CT, &body, BodyLimits::UNBOUNDED, 2);
        assert_eq!(outcome.error, None);
        assert!(outcome.flags.file_limit_exceeded && outcome.strict_error());
        assert_eq!(sink.files.len(), 3);
        assert_eq!(outcome.files_combined_size, 33);
        assert_eq!(
            sink.args,
            pairs(&[("name", "Brian Rectanus"), ("test", "This is test data.")])
        );
        let (_, outcome) = mp_with(CT, &body, BodyLimits::UNBOUNDED, 3);
        assert!(!outcome.flags.file_limit_exceeded);
    }

    #[test]
    fn limits() {
        let body = normal_body();
        let limits = BodyLimits {
            max_args: 1,
            ..BodyLimits::UNBOUNDED
        };
        let (sink, outcome) = mp_with(CT, &body, limits, UPLOAD_FILE_LIMIT);
        assert_eq!(
            outcome.error.as_ref().map(BodyError::kind),
            Some(BodyErrorKind::Limit)
        );
        assert_eq!(sink.args, pairs(&[("name", "Brian Rectanus")]));
        let limits = BodyLimits {
            max_parts: 2,
            ..BodyLimits::UNBOUNDED
        };
        let (sink, outcome) = mp_with(CT, &body, limits, UPLOAD_FILE_LIMIT);
        let third = body
            .windows(6)
            .enumerate()
            .filter(|(_, w)| w == b"--0000")
            .nth(2)
            .map(|(i, _)| i)
            .unwrap();
        assert_eq!(
            error(&outcome),
            format!("Multipart: part limit 2 exceeded at byte {third}.")
        );
        assert_eq!(sink.args.len(), 2);
        assert!(sink.files.is_empty());
        let many = format!(
            "--0000\r\nContent-Disposition: form-data; name=\"a\"\r\n{}\r\n1\r\n--0000--\r\n",
            (0..MAX_PART_HEADERS)
                .map(|i| format!("X-{i}: v\r\n"))
                .collect::<String>()
        );
        let (_, outcome) = mp(CT, many.as_bytes());
        assert_eq!(
            outcome.error.as_ref().map(BodyError::kind),
            Some(BodyErrorKind::Limit)
        );
    }

    /// Part names repeated for every header line cannot make the output quadratic.
    #[test]
    fn output_budget_bounds_repeated_part_names() {
        let name = "n".repeat(3000);
        let headers: String = (0..60).map(|i| format!("X{i}: 1\r\n")).collect();
        let part = format!(
            "--0000\r\nContent-Disposition: form-data; name=\"{name}\"\r\n{headers}\r\n1\r\n"
        );
        let body = format!("{}--0000--\r\n", part.repeat(3));
        let (sink, outcome) = mp(CT, body.as_bytes());
        let emitted: usize = sink
            .part_headers
            .iter()
            .map(|(n, l)| n.len() + l.len())
            .sum();
        assert!(emitted <= body.len() * 65, "{emitted}");
        assert_eq!(outcome.error, None, "{}", error(&outcome));
        let body = format!("{}--0000--\r\n", part.repeat(2000).get(..).unwrap_or(""));
        let small = &body.as_bytes()[..body.len().min(1 << 20)];
        let (sink, _) = mp(CT, small);
        let emitted: usize = sink
            .part_headers
            .iter()
            .map(|(n, l)| n.len() + l.len())
            .sum();
        assert!(emitted <= small.len() + (1 << 20) + CT.len(), "{emitted}");
    }

    #[test]
    fn charset_field_is_an_ordinary_part() {
        let body = b"--0000\r\nContent-Disposition: form-data; name=\"_charset_\"\r\n\r\nutf-7\r\n--0000\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Type: text/plain; charset=utf-7\r\n\r\n+ADw-\r\n--0000--\r\n";
        let (sink, outcome) = mp(CT, body);
        assert_eq!(outcome.error, None);
        assert_eq!(sink.args, pairs(&[("_charset_", "utf-7"), ("a", "+ADw-")]));
        assert_eq!(
            sink.part_headers,
            pairs(&[
                (
                    "_charset_",
                    "Content-Disposition: form-data; name=\"_charset_\""
                ),
                ("a", "Content-Disposition: form-data; name=\"a\""),
                ("a", "Content-Type: text/plain; charset=utf-7"),
            ])
        );
    }

    #[test]
    fn empty_body_is_not_an_error() {
        let (sink, outcome) = mp(CT, b"");
        assert_eq!(outcome, MultipartOutcome::default());
        assert_eq!(sink, Recorder::default());
    }

    #[test]
    fn invalid_part_headers_keyed_by_empty_name() {
        let body = b"--0000\r\nContent-Disposition: form-data; name=\"x\"\r\nX-A: 1\r\n--0000\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--0000--\r\n";
        let (sink, outcome) = mp(CT, body);
        assert!(outcome.flags.invalid_part && outcome.error.is_none());
        assert_eq!(sink.args, pairs(&[("a", "1")]));
        assert_eq!(
            sink.part_headers,
            pairs(&[
                ("", "Content-Disposition: form-data; name=\"x\""),
                ("", "X-A: 1"),
                ("a", "Content-Disposition: form-data; name=\"a\""),
            ])
        );
    }

    /// Every multipart body of the CRS regression tests parses without panicking, and the
    /// ones 922 relies on give what its rules read.
    #[test]
    fn crs_regression_bodies() {
        let stages = crs_stages();
        let mut checked = 0;
        let mut saw_922110 = false;
        let mut saw_922130 = false;
        for stage in stages
            .iter()
            .filter(|s| s.content_type_contains("multipart/form-data"))
        {
            let ct = stage.content_type.clone().unwrap_or_default();
            let (sink, outcome) = mp(&ct, &stage.body);
            checked += 1;
            if stage.rule_id == 922110 && stage.test_id == 1 {
                assert_eq!(outcome.error, None, "{}", stage.name);
                assert!(sink.part_headers.contains(&(
                    b"username".to_vec(),
                    b"Content-Type: text/plain; charset=utf-7".to_vec()
                )));
                saw_922110 = true;
            }
            if stage.rule_id == 922130 && [1, 2, 4, 7].contains(&stage.test_id) {
                assert_eq!(
                    error(&outcome),
                    "Multipart: Invalid part header (contains invalid character).",
                    "{}",
                    stage.name
                );
                assert_eq!(sink.part_headers.len(), 1, "{}", stage.name);
                saw_922130 = true;
            }
            if stage.rule_id == 922130 && [3, 5, 6].contains(&stage.test_id) {
                // 5 has no Content-Disposition at all, which is its own error.
                assert_ne!(
                    error(&outcome),
                    "Multipart: Invalid part header (contains invalid character).",
                    "{}",
                    stage.name
                );
            }
            if outcome.error.is_none() {
                assert!(
                    !sink.args.is_empty() || !sink.files.is_empty() || sink.part_headers.is_empty(),
                    "{}",
                    stage.name
                );
            }
        }
        eprintln!("{checked} CRS multipart bodies checked");
        assert!(checked > 100 && saw_922110 && saw_922130, "{checked}");
    }
}
