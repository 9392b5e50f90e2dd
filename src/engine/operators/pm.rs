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

/// The ruleset's phrase sets, each built on first use (a data file can hold thousands of
/// phrases; the literal prefilter already screens these rules, so most sets are never needed
/// by benign traffic). [`PhraseTable::warm_up`] builds the rest in the background.
#[derive(Debug, Default)]
pub struct PhraseTable {
    sets: Vec<(Vec<String>, std::sync::OnceLock<Option<AhoCorasick>>)>,
}

impl PhraseTable {
    pub fn push(&mut self, phrases: Vec<String>) -> u32 {
        self.sets.push((phrases, std::sync::OnceLock::new()));
        (self.sets.len() - 1) as u32
    }

    /// Builds every set now; the first failure is returned with its index.
    pub fn validate(&self) -> Result<(), (u32, String)> {
        for (i, (phrases, cell)) in self.sets.iter().enumerate() {
            let ac = compile(phrases).map_err(|e| (i as u32, e))?;
            let _ = cell.set(Some(ac));
        }
        Ok(())
    }

    pub fn warm_up(&self) {
        for i in 0..self.sets.len() {
            let _ = self.get(i as u32);
        }
    }

    fn get(&self, i: u32) -> Option<&AhoCorasick> {
        let (phrases, cell) = self.sets.get(i as usize)?;
        cell.get_or_init(|| {
            compile(phrases)
                .map_err(|e| log::error!("phrase set {i}: {e}; it never matches"))
                .ok()
        })
        .as_ref()
    }

    /// The first phrase of set `i` found in `value`.
    pub fn find(&self, i: u32, value: &[u8]) -> Option<(usize, usize)> {
        find(self.get(i)?, value)
    }
}
