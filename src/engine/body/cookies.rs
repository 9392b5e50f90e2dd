//! `Cookie` request header parsing: REQUEST_COOKIES and REQUEST_COOKIES_NAMES.
//!
//! Owns splitting one `Cookie` header value into cookies, exactly as Coraza (current HEAD,
//! `internal/cookies.ParseCookies`) does; a request with several `Cookie` headers is parsed
//! once per header. Must not: decode values (no URL decoding, no quote removal: rules apply
//! `t:urlDecodeUni` themselves), validate names, or copy anything.
//!
//! Semantics:
//! - the value is split on `;` (a `,` is data);
//! - each piece is trimmed of ASCII space, tab, CR and LF; empty pieces are skipped;
//! - the first `=` splits name and value; the name is trimmed again, the value is kept as
//!   written after the `=` (so `a = b` gives the value ` b`); a piece without `=` is a cookie
//!   with an empty value;
//! - a cookie whose name is empty (`=foo`) is skipped;
//! - names such as `$Version` or `"$Version"` are ordinary names (CRS 921250 looks for them);
//!   repeated names give one cookie each.

use super::BodySink;

/// Hands each cookie of one `Cookie` header value to `sink.arg(name, value)`.
/// Returns the number of cookies handed over. Total work is linear in the value.
pub fn parse<S: BodySink + ?Sized>(header_value: &[u8], sink: &mut S) -> usize {
    let mut count = 0;
    for piece in header_value.split(|&b| b == b';') {
        let piece = trim(piece);
        if piece.is_empty() {
            continue;
        }
        let (name, value) = match memchr::memchr(b'=', piece) {
            Some(eq) => (
                trim(piece.get(..eq).unwrap_or_default()),
                piece.get(eq + 1..).unwrap_or_default(),
            ),
            None => (piece, &[][..]),
        };
        if name.is_empty() {
            continue;
        }
        sink.arg(name, value);
        count += 1;
    }
    count
}

/// Go's `textproto.TrimString`: strips ASCII space, tab, CR and LF at both ends.
fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // table-driven cases
mod tests {
    use super::*;
    use crate::engine::body::testing::{pairs, Recorder};

    /// Expected lists from Coraza's `cookies_test.go` table plus the cases its code implies.
    #[test]
    fn table() {
        let cases: &[(&str, &[u8], &[(&str, &str)])] = &[
            ("empty string", b"  ", &[]),
            ("simple", b"test=test_value", &[("test", "test_value")]),
            (
                "multiple",
                b"test1=test_value1; test2=test_value2",
                &[("test1", "test_value1"), ("test2", "test_value2")],
            ),
            (
                "spaces in name",
                b" test1  =test_value1; test2  =test_value2",
                &[("test1", "test_value1"), ("test2", "test_value2")],
            ),
            (
                "spaces in value",
                b"test1=test   _value1; test2  =test_value2",
                &[("test1", "test   _value1"), ("test2", "test_value2")],
            ),
            ("empty cookie", b";;foo=bar", &[("foo", "bar")]),
            ("empty name", b"=bar;", &[]),
            (
                "multiple equals",
                b"test1=val==ue1;test2=value2",
                &[("test1", "val==ue1"), ("test2", "value2")],
            ),
            (
                "repeated name",
                b"test1=value1;test1=value2",
                &[("test1", "value1"), ("test1", "value2")],
            ),
            (
                "akamai abck",
                b"_abck=f672ea8d260dd9b181c8cee7e8a56ea2~0~yaaqreqf9cadggxaqaaf.../32~-1; _ga=GA1.1.123456789; OptanonConsent=isIABGlobal=false",
                &[
                    ("_abck", "f672ea8d260dd9b181c8cee7e8a56ea2~0~yaaqreqf9cadggxaqaaf.../32~-1"),
                    ("_ga", "GA1.1.123456789"),
                    ("OptanonConsent", "isIABGlobal=false"),
                ],
            ),
            ("no equals", b"flag; a=1", &[("flag", ""), ("a", "1")]),
            ("space after equals kept", b"a = b", &[("a", " b")]),
            ("trailing space trimmed", b"a=b \t", &[("a", "b")]),
            ("comma is data", b"a=1, b=2", &[("a", "1, b=2")]),
            ("not url decoded", b"a=%27%20or%201", &[("a", "%27%20or%201")]),
            ("quotes kept", b"a=\"x;y\"", &[("a", "\"x"), ("y\"", "")]),
            (
                "dollar version names",
                b"$Version=1; \"$Version\"=1; session=abc",
                &[("$Version", "1"), ("\"$Version\"", "1"), ("session", "abc")],
            ),
            ("crlf trimmed", b"\r\na=1\r\n", &[("a", "1")]),
            ("vertical tab is not trimmed", b"\x0ba=1", &[("\x0ba", "1")]),
        ];
        for (name, input, want) in cases {
            let mut sink = Recorder::default();
            let n = parse(input, &mut sink);
            assert_eq!(sink.args, pairs(want), "case {name}");
            assert_eq!(n, want.len(), "case {name}: count");
        }
    }

    #[test]
    fn non_utf8_and_fullwidth_values_are_bytes() {
        // 941110-8 sends a fullwidth "＜script＞" in a cookie; bytes must pass unchanged.
        let mut sink = Recorder::default();
        parse("x=＜script＞; y=\u{ff}".as_bytes(), &mut sink);
        parse(b"z=\xff\xfe", &mut sink);
        assert_eq!(sink.args[0].1, "＜script＞".as_bytes());
        assert_eq!(sink.args[2], (b"z".to_vec(), b"\xff\xfe".to_vec()));
    }

    #[test]
    fn several_headers_are_parsed_independently() {
        let mut sink = Recorder::default();
        parse(b"a=1; b", &mut sink);
        parse(b"a=2", &mut sink);
        assert_eq!(sink.args, pairs(&[("a", "1"), ("b", ""), ("a", "2")]));
    }
}
