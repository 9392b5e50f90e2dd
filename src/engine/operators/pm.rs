//! `@pm` / `@pmFromFile`: case-insensitive phrase matching with Aho-Corasick.
//!
//! ModSecurity matches phrases case-insensitively anywhere in the value; the data files have
//! upper-case entries and case-insensitive duplicates, which the automaton absorbs. An empty
//! phrase would match everything and is dropped.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

pub fn compile(phrases: &[String]) -> Result<AhoCorasick, String> {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(phrases.iter().filter(|p| !p.is_empty()))
        .map_err(|e| format!("phrase set does not build: {e}"))
}

/// The first phrase occurrence, as a span of `value`.
pub fn find(ac: &AhoCorasick, value: &[u8]) -> Option<(usize, usize)> {
    ac.find(value).map(|m| (m.start(), m.end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_substrings() {
        let ac = compile(&["gzip".into(), "Deflate".into(), " in query".into()]).unwrap();
        assert_eq!(find(&ac, b"x-GZIP"), Some((2, 6)));
        assert_eq!(find(&ac, b"deflate"), Some((0, 7)));
        assert!(find(&ac, b"error in query expression").is_some());
        assert!(find(&ac, b"brotli").is_none());
    }
}
