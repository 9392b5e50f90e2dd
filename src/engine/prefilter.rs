//! The literal prefilter: one multi-pattern pass per value instead of one regex per rule.
//!
//! Each prefiltered rule head has a set of required literals (`seclang::literals`, computed
//! by the compiler). All sets go into one Aho-Corasick automaton (single-byte literals, which
//! occur in most values, go into a per-byte table instead). At evaluation time each distinct
//! transformed value is scanned once; the literals found light up the rules they belong to
//! (a bitset). A rule whose sources show none of its literals cannot match and is skipped
//! without testing a value; the others are evaluated exactly as before, so the prefilter only
//! saves work and never changes a verdict (`tests/ruleset_equivalence.rs` checks this over
//! both corpora and every CRS regression request).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// The compiled prefilter: one automaton over every rule's multi-byte literals, and a
/// per-byte table for the single-byte ones (which occur in most values and would make an
/// overlapping automaton search report a match at nearly every position).
#[derive(Debug)]
pub struct Prefilter {
    ac: Option<AhoCorasick>,
    /// For each automaton pattern, the rule bits it lights (`words` u64 per pattern).
    pattern_bits: Vec<u64>,
    /// For each byte value (ASCII case folded), the rule bits it lights.
    byte_bits: Vec<u64>,
    /// Bytes that light at least one rule.
    byte_used: [bool; 256],
    words: usize,
}

impl Prefilter {
    /// `sets[i]` is the literal set of prefilter bit `i`.
    pub fn build(sets: &[Vec<Vec<u8>>]) -> Result<Prefilter, String> {
        let words = sets.len().div_ceil(64).max(1);
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut index: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
        let mut pattern_bits: Vec<u64> = Vec::new();
        let mut byte_bits = vec![0u64; 256 * words];
        let mut byte_used = [false; 256];
        for (bit, set) in sets.iter().enumerate() {
            for lit in set {
                if let [b] = lit.as_slice() {
                    // Literals are lower-cased; the table is indexed by the folded byte.
                    let b = usize::from(b.to_ascii_lowercase());
                    byte_bits[b * words + bit / 64] |= 1u64 << (bit % 64);
                    byte_used[b] = true;
                    continue;
                }
                let p = *index.entry(lit.clone()).or_insert_with(|| {
                    patterns.push(lit.clone());
                    pattern_bits.extend(std::iter::repeat(0).take(words));
                    patterns.len() - 1
                });
                pattern_bits[p * words + bit / 64] |= 1u64 << (bit % 64);
            }
        }
        let ac = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
                    .map_err(|e| format!("prefilter automaton: {e}"))?,
            )
        };
        Ok(Prefilter {
            ac,
            pattern_bits,
            byte_bits,
            byte_used,
            words,
        })
    }

    pub fn words(&self) -> usize {
        self.words
    }

    /// ORs into `bits` the rule bits of every literal present in `value`.
    pub fn scan(&self, value: &[u8], bits: &mut [u64]) {
        // Distinct (folded) bytes present, each visited once.
        let mut seen = [false; 256];
        let mut distinct = [0u8; 256];
        let mut n = 0;
        for &b in value {
            let f = usize::from(b.to_ascii_lowercase());
            if !seen[f] {
                seen[f] = true;
                distinct[n] = f as u8;
                n += 1;
                if n == 256 {
                    break;
                }
            }
        }
        for &b in &distinct[..n] {
            let b = usize::from(b);
            if self.byte_used[b] {
                let row = &self.byte_bits[b * self.words..(b + 1) * self.words];
                for (x, r) in bits.iter_mut().zip(row) {
                    *x |= *r;
                }
            }
        }
        let Some(ac) = &self.ac else { return };
        for m in ac.find_overlapping_iter(value) {
            let p = m.pattern().as_usize();
            let row = &self.pattern_bits[p * self.words..(p + 1) * self.words];
            for (b, r) in bits.iter_mut().zip(row) {
                *b |= *r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seclang::literals::required_literals;

    /// Wherever the regex matches, the prefilter fires.
    #[test]
    fn sets_are_sound_on_matching_inputs() {
        let cases = [
            ("(?i)union.+select", "x UNION all SELECT y"),
            ("(?i)<script[^>]*>", "<ScRiPt src=x>"),
            (r"\.\./", "a/../b"),
            (r"(?:^|[^\w])(?:on\w+)\s*=", " onmouseover = x"),
            ("[\"'`](?:;|\\|)", "';"),
        ];
        for (p, input) in cases {
            let re = super::super::operators::rx::compile(p).unwrap();
            assert!(
                re.is_match(regex_automata::Input::new(input.as_bytes())),
                "{p}"
            );
            // Every set of the conjunction must be lit by a matching input.
            let sets = required_literals(p).expect(p);
            let n = sets.len();
            let pf = Prefilter::build(&sets).unwrap();
            let mut bits = vec![0u64; 1];
            pf.scan(input.as_bytes(), &mut bits);
            assert_eq!(bits[0], (1u64 << n) - 1, "{p} on {input:?}");
        }
    }

    #[test]
    fn scan_sets_the_rules_bits() {
        let pf = Prefilter::build(&[vec![b"abc".to_vec()], vec![b"x".to_vec(), b"yz".to_vec()]])
            .unwrap();
        let mut bits = vec![0u64; 1];
        pf.scan(b"__ABC__", &mut bits);
        assert_eq!(bits[0], 0b01);
        pf.scan(b"yz", &mut bits);
        assert_eq!(bits[0], 0b11);
    }
}
