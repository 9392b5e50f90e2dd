//! The literal prefilter: one multi-pattern pass per value instead of one regex per rule.
//!
//! For every `@rx` (and `@pm`) rule head, lowering extracts a set of *required literals*:
//! byte strings at least one of which occurs (ASCII case-insensitively) in anything the
//! pattern can match. All sets go into one Aho-Corasick automaton. At evaluation time each
//! distinct transformed value is scanned once; the literals found light up the rules they
//! belong to (a bitset). A rule whose sources show none of its literals cannot match and is
//! skipped without collecting or testing a single value; the others are evaluated exactly as
//! before, so the prefilter can only save work, never change a verdict — provided the literal
//! sets are sound, which `tests::sets_are_sound_on_matching_inputs` checks.
//!
//! Soundness of [`required`]: a literal set is only returned when every match of the HIR
//! must contain one of its strings. Anything not understood yields `None` (no prefilter; the
//! rule always runs).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

/// Largest number of literals a set may have before it is not worth it.
const MAX_SET: usize = 512;
/// Largest cross product built when joining adjacent small sets in a concatenation.
const MAX_CROSS: usize = 64;

/// Parses a pattern exactly as `rx::compile` does and returns its required literals
/// (lower-cased), or `None` when no useful set exists.
pub fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let rewritten = super::operators::rx::rewrite_braced_hex(pattern);
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .multi_line(true)
        .dot_matches_new_line(true)
        .build()
        .parse(&rewritten)
        .ok()?;
    let set = required(&hir)?;
    if set.is_empty() || set.iter().any(|l| l.is_empty()) {
        return None;
    }
    Some(set)
}

/// Required literal set of `h` (lower-cased, deduplicated).
fn required(h: &Hir) -> Option<Vec<Vec<u8>>> {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => None,
        HirKind::Literal(l) => Some(vec![l.0.to_ascii_lowercase()]),
        HirKind::Class(c) => {
            class_bytes(c).map(|bs| dedup(bs.into_iter().map(|b| vec![b]).collect()))
        }
        HirKind::Capture(c) => required(&c.sub),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                None
            } else {
                required(&r.sub)
            }
        }
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for a in alts {
                out.extend(required(a)?);
                if out.len() > MAX_SET {
                    return None;
                }
            }
            Some(dedup(out))
        }
        HirKind::Concat(parts) => concat(parts),
    }
}

/// In a concatenation every part is required, so any part's set is a valid set for the whole.
/// Adjacent parts that are exact (match only their literals, each exactly once) are joined by
/// cross product to get longer, more selective literals; the best candidate wins.
fn concat(parts: &[Hir]) -> Option<Vec<Vec<u8>>> {
    let mut best: Option<Vec<Vec<u8>>> = None;
    let mut run: Option<Vec<Vec<u8>>> = None;
    for p in parts {
        match exact(p) {
            Some(set) => {
                run = Some(match run.take() {
                    None => set,
                    Some(prev) if prev.len() * set.len() <= MAX_CROSS => {
                        let mut joined = Vec::with_capacity(prev.len() * set.len());
                        for a in &prev {
                            for b in &set {
                                let mut s = a.clone();
                                s.extend_from_slice(b);
                                joined.push(s);
                            }
                        }
                        dedup(joined)
                    }
                    Some(prev) => {
                        best = better(best, Some(prev));
                        set
                    }
                });
            }
            None => {
                best = better(best, run.take());
                best = better(best, required(p));
            }
        }
    }
    better(best, run)
}

/// The strings `h` matches when it matches exactly a finite set of strings (literals, small
/// classes, alternations and captures of those); `None` otherwise.
fn exact(h: &Hir) -> Option<Vec<Vec<u8>>> {
    match h.kind() {
        HirKind::Literal(l) => Some(vec![l.0.to_ascii_lowercase()]),
        HirKind::Class(c) => {
            class_bytes(c).map(|bs| dedup(bs.into_iter().map(|b| vec![b]).collect()))
        }
        HirKind::Capture(c) => exact(&c.sub),
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for a in alts {
                out.extend(exact(a)?);
                if out.len() > MAX_CROSS {
                    return None;
                }
            }
            Some(dedup(out))
        }
        HirKind::Concat(parts) => {
            let mut acc: Vec<Vec<u8>> = vec![Vec::new()];
            for p in parts {
                let set = exact(p)?;
                if acc.len() * set.len() > MAX_CROSS {
                    return None;
                }
                let mut next = Vec::with_capacity(acc.len() * set.len());
                for a in &acc {
                    for b in &set {
                        let mut s = a.clone();
                        s.extend_from_slice(b);
                        next.push(s);
                    }
                }
                acc = dedup(next);
            }
            Some(acc)
        }
        _ => None,
    }
}

/// The (lower-cased) bytes of a small class; `None` when it has more than 4 after folding.
fn class_bytes(c: &Class) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    let mut push = |b: u8| {
        let b = b.to_ascii_lowercase();
        if !out.contains(&b) {
            out.push(b);
        }
    };
    match c {
        Class::Bytes(bc) => {
            for r in bc.iter() {
                if usize::from(r.end() - r.start()) > 60 {
                    return None;
                }
                for b in r.start()..=r.end() {
                    push(b);
                }
            }
        }
        Class::Unicode(uc) => {
            for r in uc.iter() {
                let (s, e) = (u32::from(r.start()), u32::from(r.end()));
                if e > 0x7f || e - s > 60 {
                    return None;
                }
                for b in s..=e {
                    push(b as u8);
                }
            }
        }
    }
    if out.is_empty() || out.len() > 4 {
        None
    } else {
        Some(out)
    }
}

fn dedup(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v.dedup();
    v
}

/// The more selective of two sets: longer shortest literal first, then fewer literals.
fn better(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    let score = |s: &Vec<Vec<u8>>| {
        let min = s.iter().map(Vec::len).min().unwrap_or(0);
        (min.min(8), usize::MAX - s.len())
    };
    match (a, b) {
        (None, x) | (x, None) => x.filter(|s| s.len() <= MAX_SET),
        (Some(a), Some(b)) => {
            if b.len() > MAX_SET || score(&a) >= score(&b) {
                Some(a)
            } else {
                Some(b)
            }
        }
    }
}

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

    fn lits(p: &str) -> Option<Vec<String>> {
        required_literals(p).map(|v| {
            v.into_iter()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .collect()
        })
    }

    #[test]
    fn extraction_shapes() {
        assert_eq!(lits("(?i)select.+from"), Some(vec!["select".into()]));
        assert_eq!(lits("a|bc"), Some(vec!["a".into(), "bc".into()]));
        assert_eq!(lits("^.*$"), None);
        assert_eq!(lits("x?"), None);
        assert_eq!(lits(r"[\n\r]"), Some(vec!["\n".into(), "\r".into()]));
        assert_eq!(lits(r"\$\{"), Some(vec!["${".into()]));
        assert_eq!(
            lits("(?i)on(?:load|error)="),
            Some(vec!["onerror=".into(), "onload=".into()])
        );
        // Joins a run of exact parts: `<script` beats `<`.
        assert_eq!(lits("<(?i:script)"), Some(vec!["<script".into()]));
        assert_eq!(
            lits(r"\x{e2}\x80[\x98\x99]"),
            Some(vec!["\u{2018}".into(), "\u{2019}".into()])
        );
    }

    /// Every CRS pattern: wherever the regex matches, the prefilter fires. The inputs are the
    /// patterns' own literal text plus the CRS regression payloads that trigger them would be
    /// best; here each pattern is checked against strings built to match it.
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
            let set = required_literals(p).expect(p);
            let pf = Prefilter::build(&[set]).unwrap();
            let mut bits = vec![0u64; 1];
            pf.scan(input.as_bytes(), &mut bits);
            assert_eq!(bits[0] & 1, 1, "{p} on {input:?}");
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
