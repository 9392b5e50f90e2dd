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

pub use crate::seclang::literals::rewrite_braced_hex;

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
    fn key_regexes_ignore_case() {
        let r = compile_key_regex("^_pk_ref").unwrap();
        assert!(r.is_match(Input::new(b"_PK_REF.1")));
    }
}

/// The ruleset's regexes, compiled on first use.
///
/// Start-up compiles none of them (the production patterns were validated when `build.rs`
/// compiled the ruleset; `--rules` validates eagerly with [`RegexTable::validate`]). The first
/// evaluation that needs a pattern compiles it once for the process (`OnceLock`: a one-time
/// initialisation, not a lock on the request path afterwards); [`RegexTable::warm_up`] compiles
/// them all in the background right after the agent is ready. With the literal prefilter, most
/// patterns are never needed by benign traffic at all.
#[derive(Debug, Default)]
pub struct RegexTable {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    pattern: String,
    key: bool,
    cell: std::sync::OnceLock<Option<Regex>>,
}

/// Per-worker search state for every regex of a table (created lazily).
#[derive(Debug, Default)]
pub struct RegexCaches {
    caches: Vec<Option<meta::Cache>>,
    captures: Vec<Option<regex_automata::util::captures::Captures>>,
}

impl RegexCaches {
    /// Heap bytes held by the lazy-DFA caches (they grow with the inputs seen).
    pub fn memory_usage(&self) -> usize {
        self.caches.iter().flatten().map(|c| c.memory_usage()).sum()
    }

    pub fn for_table(t: &RegexTable) -> RegexCaches {
        RegexCaches {
            caches: (0..t.len()).map(|_| None).collect(),
            captures: (0..t.len()).map(|_| None).collect(),
        }
    }

    /// The captures of the last [`RegexTable::captures`] search with regex `i`.
    pub fn last_captures(&self, i: u32) -> Option<&regex_automata::util::captures::Captures> {
        self.captures.get(i as usize).and_then(Option::as_ref)
    }
}

impl RegexTable {
    pub fn push(&mut self, pattern: &str, key: bool) -> u32 {
        self.entries.push(Entry {
            pattern: pattern.to_string(),
            key,
            cell: std::sync::OnceLock::new(),
        });
        (self.entries.len() - 1) as u32
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn pattern(&self, i: u32) -> &str {
        self.entries
            .get(i as usize)
            .map_or("", |e| e.pattern.as_str())
    }

    /// The compiled regex, compiling it now if needed. `None` only if the pattern does not
    /// compile, which `validate` (run-time rules) or `build.rs` (built-in rules) rules out.
    pub fn get(&self, i: u32) -> Option<&Regex> {
        let e = self.entries.get(i as usize)?;
        e.cell
            .get_or_init(|| {
                let r = if e.key {
                    compile_key_regex(&e.pattern)
                } else {
                    compile(&e.pattern)
                };
                r.map_err(|err| log::error!("regex {i} does not compile ({err}); it never matches"))
                    .ok()
            })
            .as_ref()
    }

    /// Compiles every pattern now; the first failure is returned with its index.
    pub fn validate(&self) -> Result<(), (u32, String)> {
        for (i, e) in self.entries.iter().enumerate() {
            let r = if e.key {
                compile_key_regex(&e.pattern)
            } else {
                compile(&e.pattern)
            };
            match r {
                Ok(re) => {
                    let _ = e.cell.set(Some(re));
                }
                Err(err) => return Err((i as u32, err)),
            }
        }
        Ok(())
    }

    /// Compiles every pattern not compiled yet (for a background thread after start-up).
    pub fn warm_up(&self) {
        for i in 0..self.entries.len() {
            let _ = self.get(i as u32);
        }
    }

    /// Whether regex `i` matches anywhere in `hay`.
    pub fn is_match(&self, i: u32, caches: &mut RegexCaches, hay: &[u8]) -> bool {
        let Some(re) = self.get(i) else { return false };
        let Some(slot) = caches.caches.get_mut(i as usize) else {
            return false;
        };
        let cache = slot.get_or_insert_with(|| re.create_cache());
        re.search_half_with(cache, &regex_automata::Input::new(hay).earliest(true))
            .is_some()
    }

    /// Leftmost-first match of regex `i` with its groups (kept in `caches` for
    /// [`RegexCaches::last_captures`]); returns the span of group 0.
    pub fn captures(&self, i: u32, caches: &mut RegexCaches, hay: &[u8]) -> Option<(usize, usize)> {
        let re = self.get(i)?;
        let idx = i as usize;
        let cache = caches
            .caches
            .get_mut(idx)?
            .get_or_insert_with(|| re.create_cache());
        let caps = caches
            .captures
            .get_mut(idx)?
            .get_or_insert_with(|| re.create_captures());
        re.search_captures_with(cache, &regex_automata::Input::new(hay), caps);
        caps.get_match().map(|m| (m.start(), m.end()))
    }
}
