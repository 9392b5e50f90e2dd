//! `@rx`: regular expressions with the semantics CRS is written for.
//!
//! Semantics chosen, and why:
//! - **Bytes, Unicode off.** Values are arbitrary bytes and CRS writes UTF-8 sequences as byte
//!   escapes (`\x{e2}\x80[\x98\x99]` for curly quotes, `\xac\xed` for Java serialization):
//!   with Unicode on those would mean code points and never match. `(?i)` is ASCII-only.
//! - **`.` matches newline** (PCRE_DOTALL), as in every ModSecurity version and Coraza.
//! - **Multi-line anchors** (`^`/`$` at line boundaries), as libmodsecurity v3 (PCRE2_MULTILINE)
//!   and Coraza (`(?sm)`) do, rather than ModSecurity v2's single-line mode: a value that
//!   starts with `x\n` must not be able to hide a payload from an anchored pattern such as
//!   shellshock's `^\(\s*\)\s+\{`. This is the stricter choice for a WAF.
//! - **Linear time.** regex-automata has no backtracking, so there is no match limit to hit
//!   (ModSecurity's `SecPcreMatchLimit` exists because PCRE can take exponential time).
//!
//! The one rewrite applied: `\x{HH}` → `\xHH`, because regex-syntax rejects a braced escape
//! above 0x7f inside a character class when Unicode is off, while both forms mean the byte.

use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;

/// Compiles an `@rx` pattern.
pub fn compile(pattern: &str) -> Result<Regex, String> {
    build(pattern, false)
}

/// Compiles a `/regex/` selector over collection keys (case-insensitive, as ModSecurity
/// compiles key regexes).
pub fn compile_key_regex(pattern: &str) -> Result<Regex, String> {
    build(pattern, true)
}

fn build(pattern: &str, case_insensitive: bool) -> Result<Regex, String> {
    let rewritten = rewrite_braced_hex(pattern);
    meta::Builder::new()
        .syntax(
            syntax::Config::new()
                .unicode(false)
                .utf8(false)
                .multi_line(true)
                .dot_matches_new_line(true)
                .case_insensitive(case_insensitive),
        )
        .configure(
            meta::Config::new()
                .utf8_empty(false)
                .nfa_size_limit(Some(64 << 20))
                // The default 2 MiB lazy-DFA cache makes the biggest CRS patterns give up and
                // fall back to the PikeVM; a larger cache keeps them on the lazy DFA.
                .hybrid_cache_capacity(8 << 20),
        )
        .build(&rewritten)
        .map_err(|e| format!("regex does not compile: {e}"))
}

/// Rewrites `\x{HH}` (exactly two hex digits) into `\xHH`, leaving escaped backslashes alone.
pub fn rewrite_braced_hex(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'x')
                && b.get(i + 2) == Some(&b'{')
                && b.get(i + 3).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 4).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 5) == Some(&b'}')
            {
                out.push_str("\\x");
                out.push_str(&p[i + 3..i + 5]);
                i += 6;
                continue;
            }
            // Copy the escape pair verbatim so `\\x{..}` stays a literal backslash.
            out.push_str(&p[i..(i + 2).min(p.len())]);
            i += 2;
            continue;
        }
        let ch = p[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_automata::Input;

    fn is_match(p: &str, h: &[u8]) -> bool {
        compile(p).unwrap().is_match(Input::new(h))
    }

    #[test]
    fn byte_semantics() {
        assert!(is_match(r"\x{e2}\x80[\x98\x99]", "it’s".as_bytes()));
        assert!(is_match(r"[^>\x{be}]*\x{be}", b"a\xbe"));
        assert!(is_match(r"\xac\xed", b"\xac\xed\x00\x05"));
        assert!(is_match(r"(?i)select", b"SeLeCt"));
    }

    #[test]
    fn dotall_and_multiline() {
        assert!(is_match(r"a.b", b"a\nb"));
        assert!(is_match(r"^\(\s*\)\s+\{", b"x\n() { :;};"));
        assert!(is_match(r"^abc$", b"zz\nabc\nzz"));
    }

    #[test]
    fn rewrite_keeps_escaped_backslashes() {
        assert_eq!(rewrite_braced_hex(r"[\x{be}]"), r"[\xbe]");
        assert_eq!(rewrite_braced_hex(r"\\x{be}"), r"\\x{be}");
        assert_eq!(rewrite_braced_hex(r"\x{1234}"), r"\x{1234}");
        assert_eq!(rewrite_braced_hex("é\\x{41}"), "é\\x41");
    }

    #[test]
    fn key_regexes_ignore_case() {
        let r = compile_key_regex("^_pk_ref").unwrap();
        assert!(r.is_match(Input::new(b"_PK_REF.1")));
    }
}
