//! `application/json` request bodies → ARGS_POST, named as libmodsecurity3 and Coraza do.
//!
//! Owns a streaming, non-recursive JSON reader that flattens the document into arguments.
//! Must not: build a tree, recurse (depth is bounded by [`BodyLimits::max_depth`] and the
//! stack of open containers lives inline up to 64 levels), or copy strings that need no
//! unescaping (they are handed to the sink borrowed from the body).
//!
//! Naming (Coraza HEAD `internal/bodyprocessors/json.go`, which libmodsecurity3 matches for
//! everything CRS relies on):
//! - the root is `json`; an object member appends `.` and its unescaped key, an array element
//!   `.` and its index: `{"a":{"b":[1,"x"]}}` gives `json.a.b.0=1`, `json.a.b.1=x`;
//! - a non-empty array also gives its length under its own name, after its elements
//!   (`json.a.b=2`; a top-level array gives `json=N`). These length entries do not count
//!   against `max_args`; beyond `2 * max_args` of them they are dropped, as Coraza does;
//! - empty objects and arrays give nothing;
//! - strings are unescaped (`\uXXXX` to UTF-8, surrogate pairs combined, a lone or mismatched
//!   surrogate becomes U+FFFD the way gjson does); numbers, `true` and `false` are passed as
//!   written (`1.50e+3` stays `1.50e+3`); `null` is the empty value;
//! - a top-level scalar is treated as gjson's `ForEach` treats it: `json.0=<value>`, `json=1`;
//! - duplicate keys give one argument each (Coraza's map keeps the last; libmodsecurity3
//!   keeps all, which leaves nothing uninspected).
//!
//! Errors. The grammar is RFC 8259 (what `gjson.Valid` accepts), except that string bytes
//! above 0x7F are not checked for UTF-8 validity (neither are they by gjson). Invalid JSON,
//! a nesting deeper than `max_depth` (the root container is depth 1), more than `max_args`
//! scalars, or output beyond the [`EmitBudget`](super::EmitBudget) stop the parse with a
//! [`BodyError`]. Arguments handed over before the error stay with the sink: that is
//! libmodsecurity3's behaviour (its yajl callbacks add arguments as they parse). Coraza
//! validates the whole body first and keeps nothing; both set `REQBODY_ERROR`, so with the
//! recommended rule 200002 the verdict is the same and we inspect more.

use super::{BodyError, BodyLimits, BodySink, EmitBudget, Processor, SmallStack};

/// Open containers kept inline before the stack spills to the heap.
const INLINE_DEPTH: usize = 64;

/// What a successful parse handed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonStatus {
    /// Scalar values handed to `sink.arg` (what `max_args` bounds).
    pub args: usize,
    /// Array-length entries handed to `sink.arg`.
    pub array_lengths: usize,
}

/// Parses `body` and hands every scalar (and every non-empty array's length) to `sink.arg`.
/// `scratch` holds the current path and unescaped strings; it is cleared first.
pub fn parse<S: BodySink + ?Sized>(
    body: &[u8],
    limits: BodyLimits,
    scratch: &mut Vec<u8>,
    sink: &mut S,
) -> Result<JsonStatus, BodyError> {
    scratch.clear();
    scratch.extend_from_slice(b"json");
    let mut parser = Parser {
        input: body,
        pos: 0,
        scratch,
        sink,
        limits,
        budget: EmitBudget::for_input(body.len()),
        status: JsonStatus::default(),
        frames: SmallStack::new(),
    };
    parser.document()?;
    Ok(parser.status)
}

#[derive(Clone, Copy, Default)]
struct Frame {
    /// Length of the container's own path; members extend it, closing truncates back to it.
    path_len: usize,
    /// Members (object) or elements (array) completed so far.
    count: usize,
    is_array: bool,
}

/// What the parser expects next.
#[derive(Clone, Copy)]
enum Expect {
    /// A value for the current path.
    Value,
    /// After `{`: a key or `}`.
    FirstKey,
    /// After `[`: a value or `]`.
    FirstElement,
    /// A value just ended: `,` or the closing bracket of the current container (or the end).
    Separator,
}

/// Where a scalar's bytes are: borrowed from the input, or unescaped into the scratch buffer
/// right after the path (which ends at the carried offset).
enum Scalar {
    Input(usize, usize),
    Scratch(usize),
    Empty,
}

struct Parser<'a, 's, S: ?Sized> {
    input: &'a [u8],
    pos: usize,
    scratch: &'s mut Vec<u8>,
    sink: &'s mut S,
    limits: BodyLimits,
    budget: EmitBudget,
    status: JsonStatus,
    frames: SmallStack<Frame, INLINE_DEPTH>,
}

impl<S: BodySink + ?Sized> Parser<'_, '_, S> {
    fn document(&mut self) -> Result<(), BodyError> {
        self.skip_ws();
        match self.peek() {
            None => return Err(self.eof_error()),
            Some(b'{') | Some(b'[') => self.containers()?,
            Some(_) => {
                // gjson's ForEach hands a top-level scalar to its callback once with an empty
                // (numeric) key: Coraza stores it as `json.0` and counts an "array" of one.
                self.scratch.extend_from_slice(b".0");
                let scalar = self.scalar()?;
                self.emit_leaf(scalar, self.pos)?;
                self.scratch.truncate(4);
                self.emit_length(1);
            }
        }
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(b) => Err(self.unexpected(b, "after the top-level value")),
        }
    }

    /// The main loop: one open container per frame, no recursion.
    fn containers(&mut self) -> Result<(), BodyError> {
        let mut expect = Expect::Value;
        loop {
            self.skip_ws();
            match expect {
                Expect::Value => {
                    let at = self.pos;
                    match self.peek() {
                        Some(b'{') => {
                            self.open(false, at)?;
                            expect = Expect::FirstKey;
                        }
                        Some(b'[') => {
                            self.open(true, at)?;
                            expect = Expect::FirstElement;
                        }
                        Some(_) => {
                            let scalar = self.scalar()?;
                            self.emit_leaf(scalar, at)?;
                            expect = Expect::Separator;
                        }
                        None => return Err(self.eof_error()),
                    }
                }
                Expect::FirstKey => {
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        self.close();
                        expect = Expect::Separator;
                    } else {
                        self.key()?;
                        expect = Expect::Value;
                    }
                }
                Expect::FirstElement => {
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        self.close();
                        expect = Expect::Separator;
                    } else {
                        self.element_path();
                        expect = Expect::Value;
                    }
                }
                Expect::Separator => {
                    let Some(frame) = self.frames.last_mut() else {
                        return Ok(()); // the root container closed
                    };
                    frame.count = frame.count.saturating_add(1);
                    let frame = *frame;
                    self.scratch.truncate(frame.path_len);
                    match (self.peek(), frame.is_array) {
                        (Some(b','), false) => {
                            self.pos += 1;
                            self.skip_ws();
                            self.key()?;
                            expect = Expect::Value;
                        }
                        (Some(b','), true) => {
                            self.pos += 1;
                            self.element_path();
                            expect = Expect::Value;
                        }
                        (Some(b'}'), false) | (Some(b']'), true) => {
                            self.pos += 1;
                            self.close();
                            expect = Expect::Separator;
                        }
                        (Some(b), _) => {
                            return Err(self.unexpected(b, "after a value in a container"))
                        }
                        (None, _) => return Err(self.eof_error()),
                    }
                }
            }
        }
    }

    fn open(&mut self, is_array: bool, at: usize) -> Result<(), BodyError> {
        if self.frames.len() >= self.limits.max_depth {
            return Err(BodyError::too_deep(
                Processor::Json,
                self.limits.max_depth,
                at,
            ));
        }
        self.pos += 1;
        self.frames.push(Frame {
            path_len: self.scratch.len(),
            count: 0,
            is_array,
        });
        Ok(())
    }

    /// Pops the current container; a non-empty array leaves its length under its own path.
    /// The closed container is then a completed value of its parent: the `Separator` step
    /// that follows counts it (or, for the root, ends the loop).
    fn close(&mut self) {
        if let Some(frame) = self.frames.pop() {
            self.scratch.truncate(frame.path_len);
            if frame.is_array && frame.count > 0 {
                self.emit_length(frame.count);
            }
        }
    }

    /// Appends `.<index>` for the next array element.
    fn element_path(&mut self) {
        let index = self.frames.last().map_or(0, |f| f.count);
        self.scratch.push(b'.');
        push_decimal(self.scratch, index);
    }

    /// Parses `"key"` then `:`, appending `.key` to the path.
    fn key(&mut self) -> Result<(), BodyError> {
        match self.peek() {
            Some(b'"') => {}
            Some(b) => return Err(self.unexpected(b, "where an object key was expected")),
            None => return Err(self.eof_error()),
        }
        self.scratch.push(b'.');
        let (start, end, escaped) = self.string_span()?;
        if escaped {
            self.unescape_into_scratch(start, end);
        } else {
            self.scratch
                .extend_from_slice(self.input.get(start..end).unwrap_or_default());
        }
        self.skip_ws();
        match self.peek() {
            Some(b':') => {
                self.pos += 1;
                Ok(())
            }
            Some(b) => Err(self.unexpected(b, "where ':' was expected")),
            None => Err(self.eof_error()),
        }
    }

    /// Parses one string, number or literal at `pos`.
    fn scalar(&mut self) -> Result<Scalar, BodyError> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => {
                let (s, e, escaped) = self.string_span()?;
                if escaped {
                    let path_len = self.scratch.len();
                    self.unescape_into_scratch(s, e);
                    Ok(Scalar::Scratch(path_len))
                } else {
                    Ok(Scalar::Input(s, e))
                }
            }
            Some(b't') => self
                .literal(b"true")
                .map(|()| Scalar::Input(start, self.pos)),
            Some(b'f') => self
                .literal(b"false")
                .map(|()| Scalar::Input(start, self.pos)),
            Some(b'n') => self.literal(b"null").map(|()| Scalar::Empty),
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Ok(Scalar::Input(start, self.pos))
            }
            Some(b) => Err(self.unexpected(b, "where a value was expected")),
            None => Err(self.eof_error()),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), BodyError> {
        let end = self.pos.saturating_add(word.len());
        if self.input.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(BodyError::malformed(
                Processor::Json,
                format!("invalid literal at byte {}", self.pos),
            ))
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), BodyError> {
        let start = self.pos;
        let bad = |at: usize| {
            BodyError::malformed(Processor::Json, format!("invalid number at byte {at}"))
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(bad(start)),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(bad(start));
            }
            self.skip_digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(bad(start));
            }
            self.skip_digits();
        }
        Ok(())
    }

    fn skip_digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    /// Validates the string starting at the `"` at `pos`; returns the content span and
    /// whether it contains escapes. Leaves `pos` after the closing quote.
    fn string_span(&mut self) -> Result<(usize, usize, bool), BodyError> {
        let open = self.pos;
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            // Jump to the next byte that needs attention.
            let rest = self.input.get(self.pos..).unwrap_or_default();
            let skip = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(rest.len());
            self.pos += skip;
            match self.peek() {
                Some(b'"') => {
                    let end = self.pos;
                    self.pos += 1;
                    return Ok((start, end, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    let esc_at = self.pos;
                    match self.input.get(self.pos + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 2
                        }
                        Some(b'u') => {
                            let hex = self.input.get(self.pos + 2..self.pos + 6);
                            if hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                self.pos += 6;
                            } else {
                                return Err(BodyError::malformed(
                                    Processor::Json,
                                    format!("invalid \\u escape at byte {esc_at}"),
                                ));
                            }
                        }
                        Some(_) => {
                            return Err(BodyError::malformed(
                                Processor::Json,
                                format!("invalid escape at byte {esc_at}"),
                            ))
                        }
                        None => return Err(self.eof_error()),
                    }
                }
                Some(b) => {
                    return Err(BodyError::malformed(
                        Processor::Json,
                        format!(
                        "control byte 0x{b:02x} in the string opened at byte {open} (at byte {})",
                        self.pos
                    ),
                    ))
                }
                None => return Err(self.eof_error()),
            }
        }
    }

    /// Appends the unescaped content of a validated string span to the scratch buffer.
    fn unescape_into_scratch(&mut self, start: usize, end: usize) {
        let content = self.input.get(start..end).unwrap_or_default();
        unescape(content, self.scratch);
    }

    /// Hands one scalar to the sink under the current path.
    fn emit_leaf(&mut self, scalar: Scalar, at: usize) -> Result<(), BodyError> {
        if self.status.args >= self.limits.max_args {
            return Err(BodyError::too_many_args(
                Processor::Json,
                self.limits.max_args,
                at,
            ));
        }
        let input = self.input;
        let (path, value, path_len): (&[u8], &[u8], usize) = match scalar {
            Scalar::Input(s, e) => (
                self.scratch.as_slice(),
                input.get(s..e).unwrap_or_default(),
                self.scratch.len(),
            ),
            Scalar::Empty => (self.scratch.as_slice(), &[], self.scratch.len()),
            Scalar::Scratch(path_len) => {
                let split = path_len.min(self.scratch.len());
                let (p, v) = self.scratch.split_at(split);
                (p, v, split)
            }
        };
        if !self.budget.take(path.len().saturating_add(value.len())) {
            return Err(BodyError::output_budget(
                Processor::Json,
                self.budget.total(),
                at,
            ));
        }
        self.sink.arg(path, value);
        self.scratch.truncate(path_len);
        self.status.args += 1;
        Ok(())
    }

    /// Hands an array length to the sink under the current path (Coraza's entry for
    /// non-empty arrays); silently dropped beyond `2 * max_args` entries or the budget.
    fn emit_length(&mut self, count: usize) {
        if self.status.array_lengths >= self.limits.max_args.saturating_mul(2) {
            return;
        }
        let path_len = self.scratch.len();
        push_decimal(self.scratch, count);
        let (path, value) = self.scratch.split_at(path_len);
        if self.budget.take(path.len().saturating_add(value.len())) {
            self.sink.arg(path, value);
            self.status.array_lengths += 1;
        }
        self.scratch.truncate(path_len);
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn unexpected(&self, byte: u8, context: &str) -> BodyError {
        BodyError::malformed(
            Processor::Json,
            format!(
                "unexpected byte 0x{byte:02x} {context} at byte {}",
                self.pos
            ),
        )
    }

    fn eof_error(&self) -> BodyError {
        BodyError::malformed(
            Processor::Json,
            format!("unexpected end of input at byte {}", self.pos),
        )
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// Unescapes the content of a string already validated by `string_span`, as gjson's
/// `unescape` does: a surrogate followed by another `\uXXXX` consumes both and yields the
/// combined code point, or U+FFFD when they are not a high/low pair; a surrogate alone is
/// U+FFFD.
fn unescape(content: &[u8], out: &mut Vec<u8>) {
    let mut i = 0usize;
    while let Some(&b) = content.get(i) {
        if b != b'\\' {
            let rest = content.get(i..).unwrap_or_default();
            let n = memchr::memchr(b'\\', rest).unwrap_or(rest.len());
            out.extend_from_slice(rest.get(..n).unwrap_or_default());
            i += n;
            continue;
        }
        let Some(&e) = content.get(i + 1) else { break };
        i += 2;
        let simple = match e {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            continue;
        }
        // `\uXXXX`
        let Some(first) = hex4(content.get(i..i + 4)) else {
            break;
        };
        i += 4;
        let mut code = first;
        if (0xD800..0xE000).contains(&first)
            && content.get(i) == Some(&b'\\')
            && content.get(i + 1) == Some(&b'u')
        {
            if let Some(second) = hex4(content.get(i + 2..i + 6)) {
                i += 6;
                code = if (0xD800..0xDC00).contains(&first) && (0xDC00..0xE000).contains(&second) {
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    0xFFFD
                };
            }
        }
        let c = char::from_u32(code).unwrap_or('\u{FFFD}');
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
}

fn hex4(digits: Option<&[u8]>) -> Option<u32> {
    let digits = digits?;
    if digits.len() != 4 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc << 4 | v)
    })
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // table-driven cases
mod tests {
    use super::*;
    use crate::engine::body::testing::{crs_stages, pairs, Recorder};
    use crate::engine::body::BodyErrorKind;

    fn run_with(
        body: &[u8],
        limits: BodyLimits,
    ) -> (Vec<(Vec<u8>, Vec<u8>)>, Result<JsonStatus, BodyError>) {
        let mut sink = Recorder::default();
        let mut scratch = Vec::new();
        let result = parse(body, limits, &mut scratch, &mut sink);
        (sink.args, result)
    }

    fn run(body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let (args, result) = run_with(body, BodyLimits::UNBOUNDED);
        result.unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(body)));
        args
    }

    fn sorted(mut v: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
        v.sort();
        v
    }

    /// Coraza's `json_test.go` tables ("map", "array", "null_and_boolean_values",
    /// "empty_object", "nested_empty", "broken2"): Coraza returns a map, so compare as sets.
    #[test]
    fn coraza_tables() {
        let cases: &[(&str, &str, &[(&str, &str)])] = &[
            (
                "map",
                r#"{"a": 1, "b": 2, "c": [1, 2, 3], "d": {"a": {"b": 1}}, "e": [{"a": 1}],
                    "f": [[[{"z": "abc"}]]]}"#,
                &[
                    ("json.a", "1"),
                    ("json.b", "2"),
                    ("json.c", "3"),
                    ("json.c.0", "1"),
                    ("json.c.1", "2"),
                    ("json.c.2", "3"),
                    ("json.d.a.b", "1"),
                    ("json.e", "1"),
                    ("json.e.0.a", "1"),
                    ("json.f", "1"),
                    ("json.f.0", "1"),
                    ("json.f.0.0", "1"),
                    ("json.f.0.0.0.z", "abc"),
                ],
            ),
            (
                "array",
                r#"[[[{"q": 1}]], {"a": 1, "b": 2, "c": [1, 2, 3], "d": {"a": {"b": 1}},
                    "e": [{"a": 1}], "f": [[[{"z": "abc"}]]]}]"#,
                &[
                    ("json", "2"),
                    ("json.0", "1"),
                    ("json.0.0", "1"),
                    ("json.0.0.0.q", "1"),
                    ("json.1.a", "1"),
                    ("json.1.b", "2"),
                    ("json.1.c", "3"),
                    ("json.1.c.0", "1"),
                    ("json.1.c.1", "2"),
                    ("json.1.c.2", "3"),
                    ("json.1.d.a.b", "1"),
                    ("json.1.e", "1"),
                    ("json.1.e.0.a", "1"),
                    ("json.1.f", "1"),
                    ("json.1.f.0", "1"),
                    ("json.1.f.0.0", "1"),
                    ("json.1.f.0.0.0.z", "abc"),
                ],
            ),
            ("empty object", "{}", &[]),
            ("empty array", " [ ] ", &[]),
            (
                "null and booleans",
                r#"{"null": null, "true": true, "false": false}"#,
                &[
                    ("json.null", ""),
                    ("json.true", "true"),
                    ("json.false", "false"),
                ],
            ),
            ("nested empty", r#"{"a": {}, "b": []}"#, &[]),
            (
                "broken2",
                r#"{"test": 123, "test2": 456, "test3": [22, 44, 55], "test4": 3}"#,
                &[
                    ("json.test3.0", "22"),
                    ("json.test3.1", "44"),
                    ("json.test3.2", "55"),
                    ("json.test4", "3"),
                    ("json.test", "123"),
                    ("json.test2", "456"),
                    ("json.test3", "3"),
                ],
            ),
        ];
        for (name, body, want) in cases {
            assert_eq!(
                sorted(run(body.as_bytes())),
                sorted(pairs(want)),
                "case {name}"
            );
        }
    }

    #[test]
    fn values_and_names_as_written_or_unescaped() {
        let cases: &[(&str, &str, &[(&str, &str)])] = &[
            (
                "numbers as written",
                r#"{"n": -1.50e+3, "z": 0, "f": 0.5E-2}"#,
                &[
                    ("json.n", "-1.50e+3"),
                    ("json.z", "0"),
                    ("json.f", "0.5E-2"),
                ],
            ),
            (
                "plus is not a space",
                r#"{"q": "a+b"}"#,
                &[("json.q", "a+b")],
            ),
            (
                "simple escapes",
                r#"{"s": "a\"b\\c\/d\b\f\n\r\t"}"#,
                &[("json.s", "a\"b\\c/d\u{8}\u{c}\n\r\t")],
            ),
            (
                "unicode escape",
                r#"{"s": "\u0041\u00e9\u20ac"}"#,
                &[("json.s", "Aé€")],
            ),
            (
                "surrogate pair",
                r#"{"s": "\ud83d\ude00"}"#,
                &[("json.s", "😀")],
            ),
            (
                "lone high surrogate",
                r#"{"s": "\ud83dx"}"#,
                &[("json.s", "\u{FFFD}x")],
            ),
            (
                "lone low surrogate",
                r#"{"s": "\ude00"}"#,
                &[("json.s", "\u{FFFD}")],
            ),
            (
                "mismatched pair eats both",
                r#"{"s": "\ud83d\u0041"}"#,
                &[("json.s", "\u{FFFD}")],
            ),
            ("nul escape", r#"{"s": "a\u0000b"}"#, &[("json.s", "a\0b")]),
            (
                "escaped key",
                r#"{"a\u002eb": 1, "c\"d": 2}"#,
                &[("json.a.b", "1"), ("json.c\"d", "2")],
            ),
            ("empty key", r#"{"": {"": 1}}"#, &[("json..", "1")]),
            (
                "dotted key kept",
                r#"{"a.b": [true]}"#,
                &[("json.a.b.0", "true"), ("json.a.b", "1")],
            ),
            (
                "duplicate keys both kept",
                r#"{"a": 1, "a": 2}"#,
                &[("json.a", "1"), ("json.a", "2")],
            ),
            (
                "top-level string",
                r#" "x" "#,
                &[("json.0", "x"), ("json", "1")],
            ),
            (
                "top-level escaped string",
                r#""\u0041""#,
                &[("json.0", "A"), ("json", "1")],
            ),
            ("top-level number", "42", &[("json.0", "42"), ("json", "1")]),
            ("top-level null", "null", &[("json.0", ""), ("json", "1")]),
            (
                "array order then length",
                "[\"a\", [], {}, [1]]",
                &[
                    ("json.0", "a"),
                    ("json.3.0", "1"),
                    ("json.3", "1"),
                    ("json", "4"),
                ],
            ),
            (
                "index past nine",
                "[0,1,2,3,4,5,6,7,8,9,10]",
                &[
                    ("json.0", "0"),
                    ("json.1", "1"),
                    ("json.2", "2"),
                    ("json.3", "3"),
                    ("json.4", "4"),
                    ("json.5", "5"),
                    ("json.6", "6"),
                    ("json.7", "7"),
                    ("json.8", "8"),
                    ("json.9", "9"),
                    ("json.10", "10"),
                    ("json", "11"),
                ],
            ),
            (
                "whitespace everywhere",
                " \t\r\n{ \"a\" \n: \r[ 1 ,\t2 ] } \n",
                &[("json.a.0", "1"), ("json.a.1", "2"), ("json.a", "2")],
            ),
        ];
        for (name, body, want) in cases {
            assert_eq!(run(body.as_bytes()), pairs(want), "case {name}");
        }
    }

    #[test]
    fn raw_non_utf8_string_bytes_pass_through() {
        assert_eq!(
            run(b"{\"k\xff\": \"v\xfe\"}"),
            vec![(b"json.k\xff".to_vec(), b"v\xfe".to_vec())]
        );
    }

    /// Coraza's `TestInvalidJSONVariants` plus grammar corners gjson rejects.
    #[test]
    fn invalid_json_is_malformed() {
        let cases: &[(&str, &[u8])] = &[
            ("truncated object", br#"{"a": 1, "b""#),
            ("truncated array", b"[1, 2, "),
            ("bare word", b"hello"),
            ("trailing comma object", br#"{"a": 1,}"#),
            ("trailing comma array", b"[1,]"),
            ("single quotes", b"{'a': 1}"),
            ("unquoted key", b"{a: 1}"),
            ("empty input", b""),
            ("only whitespace", b" \n "),
            ("leading zero", b"[01]"),
            ("bare minus", b"[-]"),
            ("dot without digits", b"[1.]"),
            ("exponent without digits", b"[1e]"),
            ("plus sign", b"[+1]"),
            ("bad escape", br#"["\x"]"#),
            ("short unicode escape", br#"["\u12"]"#),
            ("raw control byte", b"[\"a\x01b\"]"),
            ("raw newline in string", b"[\"a\nb\"]"),
            ("unterminated string", b"[\"abc"),
            ("missing colon", br#"{"a" 1}"#),
            ("missing comma", b"[1 2]"),
            ("mismatched close", b"[1}"),
            ("two documents", br#"{"a":1}{"b":2}"#),
            ("garbage after", b"[] x"),
            ("bad literal", b"[nul]"),
            ("capitalised literal", b"[True]"),
            ("nan", b"[NaN]"),
            ("comment", b"[1 /* c */]"),
            ("bom", b"\xef\xbb\xbf{}"),
        ];
        for (name, body) in cases {
            let (_, result) = run_with(body, BodyLimits::UNBOUNDED);
            let err = result.expect_err(name);
            assert_eq!(err.kind(), BodyErrorKind::Malformed, "case {name}: {err}");
            assert!(err.to_string().starts_with("JSON parsing error: "), "{err}");
        }
    }

    #[test]
    fn arguments_before_an_error_stay() {
        let (args, result) = run_with(br#"{"a": "x", "b": [1, 2, }"#, BodyLimits::UNBOUNDED);
        assert!(result.is_err());
        assert_eq!(
            args,
            pairs(&[("json.a", "x"), ("json.b.0", "1"), ("json.b.1", "2")])
        );
    }

    #[test]
    fn depth_limit() {
        let limits = BodyLimits {
            max_depth: 3,
            ..BodyLimits::UNBOUNDED
        };
        let (args, result) = run_with(br#"{"a":{"b":[1]}}"#, limits);
        assert!(result.is_ok());
        assert_eq!(args, pairs(&[("json.a.b.0", "1"), ("json.a.b", "1")]));
        let (args, result) = run_with(br#"{"x":1,"a":{"b":[[1]]}}"#, limits);
        let err = result.unwrap_err();
        assert_eq!(err.kind(), BodyErrorKind::Limit);
        assert_eq!(
            err.to_string(),
            "JSON parsing error: depth limit 3 exceeded at byte 17"
        );
        assert_eq!(args, pairs(&[("json.x", "1")]));
        // A depth beyond the inline stack is still correct (spill path).
        let deep = 100;
        let body = format!("{}1{}", "[".repeat(deep), "]".repeat(deep));
        let (args, result) = run_with(body.as_bytes(), BodyLimits::UNBOUNDED);
        assert!(result.is_ok());
        let leaf = format!("json{}", ".0".repeat(deep));
        assert_eq!(args.first().map(|a| a.0.clone()), Some(leaf.into_bytes()));
        assert_eq!(args.len(), 1 + deep, "one leaf and one length per level");
        assert_eq!(args.last(), Some(&(b"json".to_vec(), b"1".to_vec())));
    }

    /// Coraza's "bomb" case: 10 000 nested objects must fail fast on the depth limit.
    #[test]
    fn nesting_bomb_fails_on_depth() {
        let n = 10_000;
        let body = format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        let limits = BodyLimits {
            max_depth: 1024,
            ..BodyLimits::UNBOUNDED
        };
        let (args, result) = run_with(body.as_bytes(), limits);
        assert_eq!(result.unwrap_err().kind(), BodyErrorKind::Limit);
        assert!(args.is_empty());
    }

    #[test]
    fn argument_limit_counts_scalars_not_lengths() {
        let limits = BodyLimits {
            max_args: 3,
            ..BodyLimits::UNBOUNDED
        };
        let (args, result) = run_with(b"[[1],[2],[3]]", limits);
        assert_eq!(
            result.unwrap(),
            JsonStatus {
                args: 3,
                array_lengths: 4
            }
        );
        assert_eq!(args.len(), 7);
        let (args, result) = run_with(b"[1,2,3,4]", limits);
        let err = result.unwrap_err();
        assert_eq!(
            err.to_string(),
            "JSON parsing error: argument limit 3 exceeded at byte 7"
        );
        assert_eq!(
            args,
            pairs(&[("json.0", "1"), ("json.1", "2"), ("json.2", "3")])
        );
        // Length entries beyond 2 * max_args are dropped, not an error.
        let limits = BodyLimits {
            max_args: 1,
            ..BodyLimits::UNBOUNDED
        };
        let (args, result) = run_with(b"[[[[1]]]]", limits);
        assert_eq!(
            result.unwrap(),
            JsonStatus {
                args: 1,
                array_lengths: 2
            }
        );
        assert_eq!(args.len(), 3);
    }

    #[test]
    fn output_budget_stops_path_amplification() {
        // One long key shared by many leaves: the names grow as key length x leaves.
        let key = "k".repeat(4000);
        let body = format!("{{\"{key}\":[{}0]}}", "0,".repeat(20_000));
        let (args, result) = run_with(body.as_bytes(), BodyLimits::UNBOUNDED);
        let err = result.unwrap_err();
        assert_eq!(err.kind(), BodyErrorKind::Limit);
        assert!(err.message().starts_with("output budget of"), "{err}");
        let emitted: usize = args.iter().map(|(n, v)| n.len() + v.len()).sum();
        assert!(emitted <= body.len() + (1 << 20));
    }

    /// Every JSON body of the CRS regression tests, checked against an independent flattening
    /// of serde_json's parse (same naming rules). Bodies serde_json rejects must be rejected.
    #[test]
    fn crs_regression_bodies_match_a_serde_json_flattening() {
        let stages = crs_stages();
        let mut checked = 0;
        for stage in stages.iter().filter(|s| s.content_type_contains("json")) {
            let (args, result) = run_with(&stage.body, BodyLimits::UNBOUNDED);
            match serde_json::from_slice::<serde_json::Value>(&stage.body) {
                Ok(value) => {
                    result.unwrap_or_else(|e| panic!("{}: {e}", stage.name));
                    let mut want = Vec::new();
                    flatten(&value, &mut b"json".to_vec(), &mut want, true);
                    let mut got: Vec<(Vec<u8>, String)> = args
                        .into_iter()
                        .map(|(n, v)| (n, normalise_number(&v)))
                        .collect();
                    let mut want: Vec<(Vec<u8>, String)> = want
                        .into_iter()
                        .map(|(n, v)| (n, normalise_number(v.as_bytes())))
                        .collect();
                    got.sort();
                    want.sort();
                    assert_eq!(got, want, "{}", stage.name);
                }
                Err(_) => assert!(result.is_err(), "{} should be rejected", stage.name),
            }
            checked += 1;
        }
        eprintln!("{checked} CRS JSON bodies checked");
        assert!(checked > 300, "only {checked} JSON bodies found");
    }

    /// Reference flattening from a serde_json tree; numbers are compared through f64 on both
    /// sides ([`normalise_number`]) since serde_json does not keep their text.
    fn flatten(
        value: &serde_json::Value,
        path: &mut Vec<u8>,
        out: &mut Vec<(Vec<u8>, String)>,
        root: bool,
    ) {
        use serde_json::Value;
        let len = path.len();
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    path.push(b'.');
                    path.extend_from_slice(k.as_bytes());
                    flatten(v, path, out, false);
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    path.extend_from_slice(format!(".{i}").as_bytes());
                    flatten(v, path, out, false);
                    path.truncate(len);
                }
                if !items.is_empty() {
                    out.push((path.clone(), items.len().to_string()));
                }
            }
            scalar if root => {
                path.extend_from_slice(b".0");
                flatten(scalar, path, out, false);
                path.truncate(len);
                out.push((path.clone(), "1".to_string()));
            }
            Value::Null => out.push((path.clone(), String::new())),
            Value::Bool(b) => out.push((path.clone(), b.to_string())),
            Value::Number(n) => out.push((path.clone(), n.to_string())),
            Value::String(s) => out.push((path.clone(), s.clone())),
        }
    }

    /// Renders a value the way `flatten` renders numbers when it parses as one.
    fn normalise_number(v: &[u8]) -> String {
        let s = String::from_utf8_lossy(v).into_owned();
        let looks_numeric = s
            .bytes()
            .next()
            .is_some_and(|b| b == b'-' || b.is_ascii_digit());
        match s.parse::<f64>() {
            Ok(f) if looks_numeric => format!("{f:?}"),
            _ => s,
        }
    }

    #[test]
    fn push_decimal_renders() {
        for n in [0usize, 7, 10, 99, 1000, usize::MAX] {
            let mut v = Vec::new();
            push_decimal(&mut v, n);
            assert_eq!(v, n.to_string().into_bytes());
        }
    }
}
