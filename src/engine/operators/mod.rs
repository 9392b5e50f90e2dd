//! Operators: the test a rule applies to each (transformed) value.
//!
//! Owns the compiled form of each operator and its evaluation. Grouped by family: [`rx`]
//! (regular expressions and their semantics), [`pm`] (phrase matching), and the small
//! string, numeric, validation, network and libinjection operators below. Must not read
//! transaction state itself: macro arguments arrive already expanded.

pub mod pm;
pub mod rx;

use std::net::IpAddr;

/// The part of an operator fixed at compile time.
#[derive(Debug)]
pub enum CompiledOp {
    /// Index into `Ruleset::regexes`.
    Rx(u32),
    /// Index into `Ruleset::phrase_sets`.
    Pm(u32),
    /// Numeric comparison against an expanded argument.
    Num(NumOp),
    /// String comparison against an expanded argument.
    Str(StrOp),
    ByteRange(Box<[u64; 4]>),
    IpMatch(Vec<Network>),
    ValidateUrlEncoding,
    ValidateUtf8Encoding,
    DetectSqli,
    DetectXss,
    Unconditional,
    NoMatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumOp {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrOp {
    BeginsWith,
    Contains,
    ContainsWord,
    EndsWith,
    Streq,
    StrMatch,
    Within,
}

/// A network for `@ipMatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Result of an operator that matched: what it matched, for TX:0 and the log.
#[derive(Debug, Default)]
pub struct MatchInfo {
    /// Byte range of the match in the value (regex, phrase, substring operators).
    pub span: Option<(usize, usize)>,
    /// Text that is not a slice of the value (libinjection fingerprint).
    pub text: Option<Vec<u8>>,
}

/// ModSecurity's numeric conversion: optional sign, leading digits, anything else ignored;
/// no digits at all is 0 (C `atoi` semantics, which CRS's `@lt`/`@ge` rely on).
pub fn to_number(v: &[u8]) -> i64 {
    let s = trim_ascii(v);
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for &b in digits.iter().take_while(|b| b.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg {
        -n
    } else {
        n
    }
}

fn trim_ascii(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

pub fn numeric(op: NumOp, value: &[u8], arg: &[u8]) -> bool {
    let (a, b) = (to_number(value), to_number(arg));
    match op {
        NumOp::Eq => a == b,
        NumOp::Ge => a >= b,
        NumOp::Gt => a > b,
        NumOp::Le => a <= b,
        NumOp::Lt => a < b,
    }
}

/// String operators; returns the matched span within `value` when there is one.
pub fn string(op: StrOp, value: &[u8], arg: &[u8]) -> Option<(usize, usize)> {
    match op {
        StrOp::BeginsWith => value.starts_with(arg).then_some((0, arg.len())),
        StrOp::EndsWith => value
            .ends_with(arg)
            .then(|| (value.len() - arg.len(), value.len())),
        StrOp::Streq => (value == arg).then_some((0, value.len())),
        StrOp::Contains | StrOp::StrMatch => {
            memchr::memmem::find(value, arg).map(|i| (i, i + arg.len()))
        }
        StrOp::ContainsWord => contains_word(value, arg),
        // `@within`: the value is a substring of the argument. An empty value is never
        // "within" (ModSecurity returns no match for empty input).
        StrOp::Within => (!value.is_empty() && memchr::memmem::find(arg, value).is_some())
            .then_some((0, value.len())),
    }
}

fn contains_word(value: &[u8], word: &[u8]) -> Option<(usize, usize)> {
    if word.is_empty() {
        return None;
    }
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&value[from..], word) {
        let s = from + i;
        let e = s + word.len();
        let left_ok = s == 0 || !is_word(value[s - 1]);
        let right_ok = e == value.len() || !is_word(value[e]);
        if left_ok && right_ok {
            return Some((s, e));
        }
        from = s + 1;
    }
    None
}

/// `@validateByteRange`: matches when some byte is outside the allowed set.
pub fn byte_range(allowed: &[u64; 4], value: &[u8]) -> Option<(usize, usize)> {
    value
        .iter()
        .position(|&b| allowed[usize::from(b >> 6)] & (1u64 << (b & 63)) == 0)
        .map(|i| (i, i + 1))
}

/// `@validateUrlEncoding`: matches on a `%` not followed by two hex digits.
pub fn invalid_url_encoding(value: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'%', &value[i..]) {
        let at = i + p;
        let ok = value.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
            && value.get(at + 2).is_some_and(u8::is_ascii_hexdigit);
        if !ok {
            return Some((at, (at + 3).min(value.len())));
        }
        i = at + 3;
    }
    None
}

/// `@validateUtf8Encoding`: matches on any invalid, overlong or surrogate sequence.
pub fn invalid_utf8(value: &[u8]) -> Option<(usize, usize)> {
    match std::str::from_utf8(value) {
        Ok(_) => None,
        Err(e) => {
            let s = e.valid_up_to();
            Some((s, s + e.error_len().unwrap_or(value.len() - s)))
        }
    }
}

pub fn ip_match(nets: &[Network], value: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(trim_ascii(value)) else {
        return false;
    };
    let Ok(ip) = s.parse::<IpAddr>() else {
        return false;
    };
    nets.iter().any(|n| in_network(n, ip))
}

fn in_network(n: &Network, ip: IpAddr) -> bool {
    // Both addresses as octets, in one fixed buffer each (no allocation per request).
    let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
    let len = match (n.addr, ip) {
        (IpAddr::V4(x), IpAddr::V4(y)) => {
            a[..4].copy_from_slice(&x.octets());
            b[..4].copy_from_slice(&y.octets());
            4
        }
        (IpAddr::V6(x), IpAddr::V6(y)) => {
            a = x.octets();
            b = y.octets();
            16
        }
        (IpAddr::V4(x), IpAddr::V6(y)) => match y.to_ipv4_mapped() {
            Some(y4) => {
                a[..4].copy_from_slice(&x.octets());
                b[..4].copy_from_slice(&y4.octets());
                4
            }
            None => return false,
        },
        (IpAddr::V6(_), IpAddr::V4(_)) => return false,
    };
    let full = usize::from(n.prefix / 8).min(len);
    let rem = n.prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rem == 0 || full == len {
        return true;
    }
    let mask = 0xffu8 << (8 - rem);
    (a[full] & mask) == (b[full] & mask)
}

/// Most bytes of one value handed to libinjection: its cost grows with input and its XSS
/// scanner runs at tens of MB/s, so a huge value is inspected on its first part only.
pub const LIBINJECTION_MAX_BYTES: usize = 64 * 1024;

/// `@detectSQLi`: the fingerprint when libinjection says SQL injection.
pub fn detect_sqli(value: &[u8]) -> Option<Vec<u8>> {
    let v = &value[..value.len().min(LIBINJECTION_MAX_BYTES)];
    if one_sql_token(v) {
        return None;
    }
    // What `libinjectionrs::detect_sqli` does, minus its last step: it recomputes the
    // fingerprint after every verdict, and only a positive verdict needs it.
    let mut state = libinjectionrs::SqliState::new(v, libinjectionrs::SqliFlags::FLAG_NONE);
    if state.detect() {
        Some(state.get_fingerprint().as_str().as_bytes().to_vec())
    } else {
        None
    }
}

/// Whether libinjection can only see one token in `v`: a word ([`one_sql_word`]: a letter or
/// `_`, then no delimiter, dots allowed where no keyword precedes them) or a number (digits
/// only). With no quote, comment, operator or delimiter
/// there is nothing to fold, so the fingerprint is that token's one-character type (or empty,
/// for a SQL type or unary operator, which folding skips), and no one-character fingerprint is
/// blacklisted: such a value is never SQL injection. `one_token_values_are_never_sqli` checks
/// that against the library for every keyword it knows and for random words and numbers.
/// Common in JSON and form values (`true`, `1080`, `passive`), and it skips the library's
/// keyword lookup, which allocates.
fn one_sql_token(v: &[u8]) -> bool {
    match v.first() {
        Some(b) if b.is_ascii_digit() => v.iter().all(u8::is_ascii_digit),
        _ => one_sql_word(v),
    }
}

/// Bytes that end a word in libinjection's tokenizer (its `parse_word` delimiters).
const SQL_WORD_ENDS: [bool; 256] = {
    let mut t = [false; 256];
    let ends = b" []{}<>:\\?=@!#~+-*/&|^%(),';\t\n\x0B\x0C\r\"\xA0\x00";
    let mut i = 0;
    while i < ends.len() {
        t[ends[i] as usize] = true;
        i += 1;
    }
    t
};

/// Whether libinjection reads all of `v` as one word token, dots included (`www.example.com`,
/// `GA1.2.3.4`, `com.app.v2`): it starts with a letter or `_`, holds none of the tokenizer's
/// word delimiters (no space, quote, operator, comment or bracket), and no part before a `.`
/// or `` ` `` is a SQL keyword (the tokenizer splits there: `union.select` is two tokens).
/// One token makes a one-character fingerprint, never blacklisted, as for [`one_sql_token`];
/// `dotted_words_are_never_sqli` checks this against the library.
fn one_sql_word(v: &[u8]) -> bool {
    if !v
        .first()
        .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_')
    {
        return false;
    }
    for (i, &b) in v.iter().enumerate() {
        if SQL_WORD_ENDS[usize::from(b)] || ((b == b'.' || b == b'`') && splits_sql_word(&v[..i])) {
            return false;
        }
    }
    true
}

/// Whether libinjection's tokenizer ends a word after `prefix` (a keyword of any non-bareword
/// type, looked up case-insensitively as the library does, without its allocation).
fn splits_sql_word(prefix: &[u8]) -> bool {
    // The longest keyword has 29 bytes.
    let mut upper = [0u8; 32];
    let Some(buf) = upper.get_mut(..prefix.len()) else {
        return false;
    };
    buf.copy_from_slice(prefix);
    buf.make_ascii_uppercase();
    let keywords = libinjectionrs::sqli::sqli_data::SQL_KEYWORDS;
    match keywords.binary_search_by(|k| k.word.as_bytes().cmp(buf)) {
        Ok(i) => matches!(
            keywords[i].token_type,
            b'k' | b'f'
                | b'U'
                | b'E'
                | b'T'
                | b't'
                | b'o'
                | b'&'
                | b'v'
                | b'1'
                | b'A'
                | b'B'
                | b'F'
        ),
        Err(_) => false,
    }
}

/// `@detectXSS`.
pub fn detect_xss(value: &[u8]) -> bool {
    let v = &value[..value.len().min(LIBINJECTION_MAX_BYTES)];
    if cannot_be_xss(v) {
        return false;
    }
    libinjectionrs::detect_xss(v).is_injection()
}

/// Whether libinjection's XSS check cannot flag `v`: it has neither `<` nor `=`. The library
/// tokenizes `v` as HTML in five contexts (text, and an attribute value unquoted or in each
/// quote) and flags only a tag, comment or doctype token, all of which start after a `<`, or an
/// attribute value that follows a suspicious attribute name, which the tokenizer reaches only
/// through an `=` (a value at the very start has no name before it). Most header, cookie and
/// argument values qualify; `no_lt_or_eq_is_never_xss` checks the claim against the library.
fn cannot_be_xss(v: &[u8]) -> bool {
    memchr::memchr2(b'<', b'=', v).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support::XorShift;

    #[test]
    fn numbers_follow_atoi() {
        assert_eq!(to_number(b"12abc"), 12);
        assert_eq!(to_number(b" -3"), -3);
        assert_eq!(to_number(b"abc"), 0);
        assert_eq!(to_number(b""), 0);
        assert!(numeric(NumOp::Lt, b"1", b"2"));
        assert!(numeric(NumOp::Ge, b"5", b"5"));
        assert!(!numeric(NumOp::Eq, b"0", b"1"));
    }

    #[test]
    fn string_operators() {
        assert_eq!(string(StrOp::BeginsWith, b"GET /", b"GET"), Some((0, 3)));
        assert_eq!(string(StrOp::EndsWith, b"a.pdf", b".pdf"), Some((1, 5)));
        assert_eq!(
            string(StrOp::Within, b"GET", b"GET HEAD POST"),
            Some((0, 3))
        );
        assert_eq!(string(StrOp::Within, b"", b"GET HEAD"), None);
        assert_eq!(string(StrOp::Within, b"PUT", b"GET HEAD"), None);
        assert_eq!(
            string(StrOp::ContainsWord, b"select x", b"select"),
            Some((0, 6))
        );
        assert_eq!(string(StrOp::ContainsWord, b"selected", b"select"), None);
        assert_eq!(string(StrOp::Streq, b"POST", b"POST"), Some((0, 4)));
    }

    #[test]
    fn validators() {
        let mut set = [0u64; 4];
        for b in 32u8..=126 {
            set[usize::from(b >> 6)] |= 1 << (b & 63);
        }
        assert_eq!(byte_range(&set, b"abc"), None);
        assert_eq!(byte_range(&set, b"a\x01c"), Some((1, 2)));
        assert_eq!(invalid_url_encoding(b"a%20b"), None);
        assert!(invalid_url_encoding(b"a%2").is_some());
        assert!(invalid_url_encoding(b"%zz").is_some());
        assert_eq!(invalid_utf8("é".as_bytes()), None);
        assert!(invalid_utf8(b"\xc0\xaf").is_some());
        assert!(invalid_utf8(b"\xed\xa0\x80").is_some());
    }

    #[test]
    fn networks() {
        let nets = vec![
            Network {
                addr: "127.0.0.1".parse().unwrap(),
                prefix: 32,
            },
            Network {
                addr: "10.0.0.0".parse().unwrap(),
                prefix: 8,
            },
            Network {
                addr: "::1".parse().unwrap(),
                prefix: 128,
            },
            Network {
                addr: "172.16.0.0".parse().unwrap(),
                prefix: 12,
            },
        ];
        assert!(ip_match(&nets, b"172.31.255.255"));
        assert!(!ip_match(&nets, b"172.32.0.1"));
        assert!(ip_match(&nets, b"127.0.0.1"));
        assert!(ip_match(&nets, b"10.200.1.1"));
        assert!(ip_match(&nets, b"::1"));
        assert!(ip_match(&nets, b"::ffff:10.1.1.1"));
        assert!(!ip_match(&nets, b"192.168.1.1"));
        assert!(!ip_match(&nets, b"not an ip"));
    }

    #[test]
    fn libinjection() {
        assert!(detect_sqli(b"1' OR '1'='1").is_some());
        assert!(detect_sqli(b"hello world").is_none());
        assert!(detect_xss(b"<script>alert(1)</script>"));
        assert!(!detect_xss(b"hello"));
    }

    /// The premise of `one_sql_token`: the library never flags one word or one number,
    /// whatever its keyword type (every keyword it knows, in three cases) or shape.
    #[test]
    fn one_token_values_are_never_sqli() {
        let library = |v: &[u8]| {
            libinjectionrs::SqliState::new(v, libinjectionrs::SqliFlags::FLAG_NONE).detect()
        };
        let mut tried = 0;
        let mut types = std::collections::BTreeSet::new();
        for k in libinjectionrs::sqli::sqli_data::SQL_KEYWORDS {
            let w = k.word.as_bytes();
            for v in [w.to_vec(), w.to_ascii_lowercase(), {
                let mut m = w.to_ascii_lowercase();
                m[0] = m[0].to_ascii_uppercase();
                m
            }] {
                if one_sql_token(&v) {
                    tried += 1;
                    types.insert(k.token_type);
                    assert!(!library(&v), "{:?}", String::from_utf8_lossy(&v));
                }
            }
        }
        // Every keyword type a word can have: keyword, function, union, expression, T-SQL,
        // SQL type, operator, logic operator, collate, group (and barewords below).
        assert!(
            tried > 2000 && types.len() >= 10,
            "{tried} words, types {types:?}"
        );
        let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..50_000 {
            let len = 1 + rng.below(40);
            let v: Vec<u8> = if rng.below(5) == 0 {
                (0..len).map(|_| b'0' + rng.below(10) as u8).collect()
            } else {
                (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect()
            };
            if one_sql_token(&v) {
                assert!(!library(&v), "{:?}", String::from_utf8_lossy(&v));
            }
        }
        assert!(!one_sql_token(b"1 union"));
        assert!(!one_sql_token(b"1union"));
        assert!(!one_sql_token(b"x'1'"));
        assert!(!one_sql_token(b""));
    }

    /// The premise of `cannot_be_xss`: without `<` and `=` the library never flags a value,
    /// however it mixes event-handler names, `javascript:` URLs, quotes, `>`, `/`, backticks,
    /// entities, `style`, comment and conditional-comment markers. Every sequence of up to
    /// three such pieces, then random mixes.
    #[test]
    fn no_lt_or_eq_is_never_xss() {
        let library = |v: &[u8]| libinjectionrs::detect_xss(v).is_injection();
        let parts: [&[u8]; 24] = [
            b"onload",
            b"onerror",
            b"javascript:alert(1)",
            b"vbscript:",
            b"data:text/html",
            b"style",
            b"expression(",
            b"src",
            b"href",
            b"xmlns",
            b"formaction",
            b"\"",
            b"'",
            b"`",
            b">",
            b"/",
            b" ",
            b"\t",
            b"!--",
            b"[if",
            b"?import",
            b"&#x3c;",
            b"script",
            b"\0",
        ];
        let mut tried = 0;
        crate::engine::test_support::for_each_mix(&parts, 3, |v| {
            assert!(cannot_be_xss(v));
            assert!(!library(v), "{:?}", String::from_utf8_lossy(v));
            tried += 1;
        });
        assert!(tried > 10_000, "{tried} mixes");
        let mut rng = XorShift(0x51_7cc1_b727_220a);
        for _ in 0..50_000 {
            let v: Vec<u8> = (0..1 + rng.below(12))
                .flat_map(|_| parts[rng.below(parts.len())].iter().copied())
                .collect();
            assert!(!library(&v), "{:?}", String::from_utf8_lossy(&v));
        }
        // The same pieces with a `<` or an `=` do reach the library, and some are XSS.
        for v in [
            &b"<script>"[..],
            b"onload=alert(1)",
            b"x onerror=y",
            b"<!--[if IE]>",
        ] {
            assert!(!cannot_be_xss(v));
            assert!(library(v), "{:?}", String::from_utf8_lossy(v));
        }
    }

    /// The premise of `one_sql_word`: a value the library reads as one word, dots and
    /// backticks included, is never SQL injection, and a value whose part before a dot is a
    /// keyword is left to the library. Every keyword before and after a dot, then every mix of
    /// up to four word pieces, dots, backticks, digits, non-ASCII bytes and keywords.
    #[test]
    fn dotted_words_are_never_sqli() {
        let library = |v: &[u8]| {
            libinjectionrs::SqliState::new(v, libinjectionrs::SqliFlags::FLAG_NONE).detect()
        };
        let mut fast = 0;
        for k in libinjectionrs::sqli::sqli_data::SQL_KEYWORDS {
            let w = k.word.as_bytes();
            let lower = w.to_ascii_lowercase();
            for v in [
                [w, b".x"].concat(),
                [&lower[..], b".1"].concat(),
                [b"x.", w].concat(),
                [b"a_b.", &lower[..], b".c"].concat(),
                [w, b"`x"].concat(),
                w.to_vec(),
            ] {
                if one_sql_word(&v) {
                    fast += 1;
                    assert!(!library(&v), "{:?}", String::from_utf8_lossy(&v));
                }
            }
        }
        assert!(fast > 5_000, "{fast} keyword cases took the shortcut");
        let pieces: [&[u8]; 14] = [
            b"a",
            b"Z9",
            b"_",
            b".",
            b"`",
            b"1",
            b"union",
            b"select",
            b"or",
            b"sleep",
            b"dbms_lock",
            "é".as_bytes(),
            b"$",
            b"0x1",
        ];
        crate::engine::test_support::for_each_mix(&pieces, 4, |v| {
            if one_sql_word(v) {
                assert!(!library(v), "{:?}", String::from_utf8_lossy(v));
            }
        });
        for v in [&b"www.example.com"[..], b"GA1.2.1234.5678", b"com.app_v2.x"] {
            assert!(one_sql_word(v), "{:?}", String::from_utf8_lossy(v));
        }
        for v in [
            &b"union.select"[..],
            b"x or.1",
            b"1.2",
            b"a.b-c",
            b".a",
            b"select`x",
        ] {
            assert!(!one_sql_word(v), "{:?}", String::from_utf8_lossy(v));
        }
    }

    /// `detect_sqli` skips the library's final fingerprint recomputation; verdicts and
    /// fingerprints must stay the library's own. Inputs: every sequence of up to three SQL-ish
    /// fragments (quotes, comments, keywords, numbers, operators, words).
    #[test]
    fn detect_sqli_agrees_with_the_library() {
        let parts: [&[u8]; 16] = [
            b"1",
            b"'",
            b"\"",
            b" OR ",
            b"union select",
            b"--",
            b"/*",
            b"*/",
            b"#",
            b"=",
            b"admin",
            b"(",
            b")",
            b";",
            b"sleep(5)",
            b"hello world",
        ];
        let mut positives = 0;
        let mut input = Vec::new();
        for a in 0..parts.len() {
            for b in 0..=parts.len() {
                for c in 0..=parts.len() {
                    input.clear();
                    input.extend_from_slice(parts[a]);
                    for &i in &[b, c] {
                        if let Some(p) = parts.get(i) {
                            input.extend_from_slice(p);
                        }
                    }
                    let lib = libinjectionrs::detect_sqli(&input);
                    let ours = detect_sqli(&input);
                    assert_eq!(
                        ours.is_some(),
                        lib.is_injection(),
                        "{:?}",
                        String::from_utf8_lossy(&input)
                    );
                    if let Some(fp) = ours {
                        positives += 1;
                        let lib_fp = lib.fingerprint.map(|f| f.as_str().as_bytes().to_vec());
                        assert_eq!(Some(fp), lib_fp, "{:?}", String::from_utf8_lossy(&input));
                    }
                }
            }
        }
        assert!(
            positives > 100,
            "only {positives} positives: the inputs do not exercise it"
        );
    }
}
