//! The literal prefilter: one multi-pattern pass per value instead of one regex per rule.
//!
//! Each prefiltered rule head has a set of required literals (`seclang::literals`, computed
//! by the compiler). The first bytes of every literal go into an Aho-Corasick automaton (one
//! per group of sources read by the same rules, see [`Prefilters`]), driven byte by byte here
//! so that a literal found again costs nothing and a prefix hit is confirmed against the whole
//! literal (single-byte literals, which occur in most values, go into a per-byte table
//! instead). At evaluation time each distinct transformed value is scanned once; the literals
//! found light up the rules they belong to (a bitset). A rule whose sources show none of its
//! literals cannot match and is skipped without testing a value; the others are evaluated
//! exactly as before, so the prefilter only saves work and never changes a verdict
//! (`tests/ruleset_equivalence.rs` checks this over both corpora and every CRS regression
//! request).

use aho_corasick::automaton::Automaton;
use aho_corasick::nfa::contiguous;
use aho_corasick::{Anchored, MatchKind};

/// The compiled prefilter: one automaton over the first bytes of every rule's multi-byte
/// literals (each hit confirmed against the whole literal), and a per-byte table for the
/// single-byte ones (which occur in most values and would make an overlapping automaton search
/// report a match at nearly every position).
#[derive(Debug)]
pub struct Prefilter {
    ac: Option<contiguous::NFA>,
    /// Per automaton pattern (a literal prefix): the range of `members` sharing it.
    groups: Vec<(u32, u32)>,
    /// Literals, grouped by prefix: (literal index, offset in `literal_bytes`, length).
    members: Vec<(u32, u32, u32)>,
    literal_bytes: Vec<u8>,
    /// Length of each automaton pattern (the prefix).
    prefix_len: Vec<u32>,
    /// For each literal, the rule bits it lights (`words` u64 per literal).
    literal_bits: Vec<u64>,
    /// For each byte value (ASCII case folded), the rule bits it lights.
    byte_bits: Vec<u64>,
    /// Bytes (either case) that light at least one rule, as a 256-bit set.
    byte_mask: [u64; 4],
    words: usize,
}

impl Prefilter {
    /// `sets[i]` is the literal set of prefilter bit `i`.
    pub fn build(sets: &[Vec<Vec<u8>>]) -> Result<Prefilter, String> {
        let words = sets.len().div_ceil(64).max(1);
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut index: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
        let mut literal_bits: Vec<u64> = Vec::new();
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
                let lit = lit.to_ascii_lowercase();
                let p = *index.entry(lit.clone()).or_insert_with(|| {
                    literals.push(lit);
                    literal_bits.extend(std::iter::repeat(0).take(words));
                    literals.len() - 1
                });
                literal_bits[p * words + bit / 64] |= 1u64 << (bit % 64);
            }
        }
        let k = PREFIX_LEN;
        let mut by_prefix: std::collections::BTreeMap<Vec<u8>, Vec<u32>> = Default::default();
        for (i, l) in literals.iter().enumerate() {
            by_prefix
                .entry(l[..l.len().min(k)].to_vec())
                .or_default()
                .push(i as u32);
        }
        let mut prefixes = Vec::new();
        let mut groups = Vec::new();
        let mut members = Vec::new();
        let mut literal_bytes = Vec::new();
        let mut prefix_lens = Vec::new();
        for (prefix, ids) in by_prefix {
            let from = members.len() as u32;
            for i in ids {
                let l = &literals[i as usize];
                members.push((i, literal_bytes.len() as u32, l.len() as u32));
                literal_bytes.extend_from_slice(l);
            }
            groups.push((from, members.len() as u32));
            prefix_lens.push(prefix.len() as u32);
            prefixes.push(prefix);
        }
        let ac = if prefixes.is_empty() {
            None
        } else {
            Some(
                contiguous::NFA::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&prefixes)
                    .map_err(|e| format!("prefilter automaton: {e}"))?,
            )
        };
        let mut byte_mask = [0u64; 4];
        for b in (0..=255u8).filter(|&b| byte_used[usize::from(b)]) {
            for c in [b, b.to_ascii_uppercase()] {
                byte_mask[usize::from(c >> 6)] |= 1u64 << (c & 63);
            }
        }
        Ok(Prefilter {
            ac,
            groups,
            members,
            literal_bytes,
            prefix_len: prefix_lens,
            literal_bits,
            byte_bits,
            byte_mask,
            words,
        })
    }

    /// ORs into `bits` the rule bits of every literal present in `value`.
    pub fn scan(&self, value: &[u8], bits: &mut [u64], scratch: &mut ScanScratch) {
        // Bytes present, as a 256-bit set (on the stack, nothing to clear per scan).
        let mut present = [0u64; 4];
        let mut note = |b: u8| present[usize::from(b >> 6)] |= 1u64 << (b & 63);
        if let Some(ac) = &self.ac {
            let epoch = scratch.next_epoch(self.literal_bits.len() / self.words);
            let Ok(mut sid) = ac.start_state(Anchored::No) else {
                // Cannot happen for an unanchored automaton; if it did, let every rule through.
                bits.iter_mut().for_each(|x| *x = u64::MAX);
                return;
            };
            for (i, &b) in value.iter().enumerate() {
                note(b);
                sid = ac.next_state(Anchored::No, sid, b);
                if ac.is_match(sid) {
                    for m in 0..ac.match_len(sid) {
                        let g = ac.match_pattern(sid, m).as_usize();
                        self.confirm(g, value, i + 1, bits, scratch, epoch);
                    }
                }
            }
        } else {
            value.iter().for_each(|&b| note(b));
        }
        // Single-byte literals: only the present bytes that light something.
        for (w, (&p, &u)) in present.iter().zip(&self.byte_mask).enumerate() {
            let mut hit = p & u;
            while hit != 0 {
                let b = (w * 64) as u8 + hit.trailing_zeros() as u8;
                hit &= hit - 1;
                let lo = usize::from(b.to_ascii_lowercase());
                or_into(
                    bits,
                    &self.byte_bits[lo * self.words..(lo + 1) * self.words],
                );
            }
        }
    }

    /// Prefix `g` ends at `end` in `value`: light every literal of its group found there.
    fn confirm(
        &self,
        g: usize,
        value: &[u8],
        end: usize,
        bits: &mut [u64],
        scratch: &mut ScanScratch,
        epoch: u32,
    ) {
        let start = end - self.prefix_len[g] as usize;
        let (from, to) = self.groups[g];
        for &(lit, off, len) in &self.members[from as usize..to as usize] {
            let lit = lit as usize;
            if scratch.marks[lit] == epoch {
                continue;
            }
            let want = &self.literal_bytes[off as usize..(off + len) as usize];
            let found = value
                .get(start..start + want.len())
                .is_some_and(|v| v.eq_ignore_ascii_case(want));
            if found {
                scratch.marks[lit] = epoch;
                or_into(
                    bits,
                    &self.literal_bits[lit * self.words..(lit + 1) * self.words],
                );
            }
        }
    }
}

/// The prefilters of all sources. Each automaton is built over the literals of the rules that
/// read its sources only: a source few rules read (REQUEST_BODY, header names) gets a small
/// automaton that scans faster and lights no literal of a rule that never looks at it. Sources
/// whose rules need nearly the same literals (within 15%) share one. Bits keep their global
/// numbering in every automaton.
#[derive(Debug)]
pub struct Prefilters {
    automata: Vec<Prefilter>,
    /// By [`Source::index`](super::variables::Source::index): index into `automata`, or
    /// `UNREAD` for a source no prefiltered rule reads.
    by_source: Vec<u8>,
}

const UNREAD: u8 = u8::MAX;

impl Prefilters {
    /// `sets[i]` is the literal set of prefilter bit `i`; `readers` pairs a source index with
    /// the bits of one rule that reads it (a source may appear many times).
    pub fn build(sets: &[Vec<Vec<u8>>], readers: &[(usize, &[u32])]) -> Result<Prefilters, String> {
        use super::variables::SOURCE_INDICES;
        let mut bits_of: Vec<Vec<u32>> = vec![Vec::new(); SOURCE_INDICES];
        for &(source, bits) in readers {
            let Some(b) = bits_of.get_mut(source) else {
                return Err(format!("prefilter: source index {source} out of range"));
            };
            b.extend_from_slice(bits);
        }
        // Sources that need nearly the same literals (ARGS values and names, cookies, XML...)
        // share one automaton over their union (identical needs trivially so): separate ones
        // would scan hardly faster and cost build time (start-up) and memory. Largest needs
        // first, so each seeds a cluster.
        let literals = |bits: &[u32]| -> usize {
            bits.iter()
                .map(|&b| sets.get(b as usize).map_or(0, Vec::len))
                .sum()
        };
        let mut needs: Vec<(Vec<u32>, usize)> = bits_of
            .into_iter()
            .enumerate()
            .filter(|(_, bits)| !bits.is_empty())
            .map(|(source, mut bits)| {
                bits.sort_unstable();
                bits.dedup();
                (bits, source)
            })
            .collect();
        needs.sort_by_key(|(bits, _)| std::cmp::Reverse(literals(bits)));
        let mut clusters: Vec<(Vec<u32>, Vec<usize>)> = Vec::new();
        for (bits, source) in needs {
            let own = literals(&bits);
            let joined = clusters.iter_mut().find_map(|c| {
                let mut union = c.0.clone();
                union.extend_from_slice(&bits);
                union.sort_unstable();
                union.dedup();
                (literals(&union) * 100 <= own * 115).then(|| {
                    c.0 = union;
                    c.1.push(source);
                })
            });
            if joined.is_none() {
                clusters.push((bits, vec![source]));
            }
        }
        let mut automata = Vec::with_capacity(clusters.len());
        let mut by_source = vec![UNREAD; SOURCE_INDICES];
        for (bits, sources) in clusters {
            let mut own: Vec<Vec<Vec<u8>>> = vec![Vec::new(); sets.len()];
            for &b in &bits {
                let set = sets
                    .get(b as usize)
                    .ok_or("prefilter: bit without a literal set")?;
                own[b as usize] = set.clone();
            }
            // At most SOURCE_INDICES (128) clusters, so indices stay below UNREAD.
            let at = automata.len() as u8;
            automata.push(Prefilter::build(&own)?);
            for s in sources {
                by_source[s] = at;
            }
        }
        Ok(Prefilters {
            automata,
            by_source,
        })
    }

    /// The prefilter for values of source `index`; `None` if no prefiltered rule reads it
    /// (callers then let every rule through).
    #[inline]
    pub fn for_source(&self, index: usize) -> Option<&Prefilter> {
        let at = *self.by_source.get(index)?;
        self.automata.get(usize::from(at))
    }

    /// Number of distinct automata.
    #[cfg(test)]
    fn automata(&self) -> usize {
        self.automata.len()
    }
}

/// `bits |= row`, word by word.
pub(crate) fn or_into(bits: &mut [u64], row: &[u64]) {
    for (x, r) in bits.iter_mut().zip(row) {
        *x |= *r;
    }
}

/// Bytes of each literal that go into the automaton. Longer literals are confirmed on a hit
/// of their prefix. Eight bytes keep the automaton at about a third of the full literals'
/// size, so it builds in under 10 ms instead of ~30 and stays in cache; shorter prefixes make
/// hits (and confirmations) frequent enough to cost more than they save on huge values.
const PREFIX_LEN: usize = 8;

/// Per-worker scratch for [`Prefilter::scan`]: which patterns were already seen in the
/// current scan (a pattern found again lights nothing new).
#[derive(Debug, Default)]
pub struct ScanScratch {
    marks: Vec<u32>,
    epoch: u32,
}

impl ScanScratch {
    fn next_epoch(&mut self, patterns: usize) -> u32 {
        if self.marks.len() < patterns {
            self.marks.resize(patterns, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.epoch = 1;
        }
        self.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support::XorShift;
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
            pf.scan(input.as_bytes(), &mut bits, &mut ScanScratch::default());
            assert_eq!(bits[0], (1u64 << n) - 1, "{p} on {input:?}");
        }
    }

    /// Each source's automaton lights exactly what the all-literals automaton lights for the
    /// bits of the rules reading that source; near-identical needs share one automaton; a
    /// source no rule reads has none.
    #[test]
    fn per_source_automata_light_the_bits_their_readers_need() {
        let sets: Vec<Vec<Vec<u8>>> = vec![
            vec![b"select".to_vec(), b"union".to_vec()],
            vec![b"<script".to_vec(), b"x".to_vec()],
            vec![b"../".to_vec()],
            vec![b"onload".to_vec(), b"on".to_vec()],
            vec![b"information_schema".to_vec()],
            vec![b"sel".to_vec()],
        ];
        let (a, b, c, d) = ([0u32, 1, 2, 3, 4], [0u32, 1, 2, 3, 5], [5u32], [2u32, 5]);
        // Source 2 and 4 need nearly the same literals; 6 and 48 need few.
        let readers: Vec<(usize, &[u32])> =
            vec![(2, &a), (4, &b), (6, &c), (48, &c), (48, &d), (6, &c)];
        let pfs = Prefilters::build(&sets, &readers).unwrap();
        assert_eq!(pfs.automata(), 3, "2 and 4 share, 6 alone, 48 alone");
        assert!(pfs.for_source(8).is_none() && pfs.for_source(1000).is_none());
        let full = Prefilter::build(&sets).unwrap();
        let mask = |bits: &[u32]| bits.iter().fold(0u64, |m, &b| m | 1 << b);
        let needs = [
            (2, mask(&a)),
            (4, mask(&b)),
            (6, mask(&c)),
            (48, mask(&c) | mask(&d)),
        ];
        let alphabet = b"selctunio<srp./xadfmh_ \xff";
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut scratch = ScanScratch::default();
        for _ in 0..5_000 {
            let mut v: Vec<u8> = (0..rng.below(30))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let lit = &sets[rng.below(sets.len())][0];
            let at = rng.below(v.len() + 1);
            v.splice(at..at, lit.iter().copied());
            let mut want = [0u64];
            full.scan(&v, &mut want, &mut scratch);
            for &(source, need) in &needs {
                let mut got = [0u64];
                pfs.for_source(source)
                    .unwrap()
                    .scan(&v, &mut got, &mut scratch);
                assert_eq!(got[0] & need, want[0] & need, "source {source} on {v:?}");
            }
        }
    }

    /// The scan agrees with a naive case-insensitive substring search, on literals longer and
    /// shorter than the automaton's prefixes, sharing prefixes, found repeatedly or partially.
    #[test]
    fn scan_agrees_with_naive_search() {
        let sets: Vec<Vec<Vec<u8>>> = vec![
            vec![b"select".to_vec(), b"selection_of".to_vec()],
            vec![b"information_schema".to_vec(), b"informat".to_vec()],
            vec![b"information_schemb".to_vec()],
            vec![b"<".to_vec(), b"on".to_vec()],
            vec![b"abcdefghij".to_vec(), b"bcdefghijk".to_vec()],
            vec![b"ab".to_vec()],
            vec![b"z".to_vec(), b"\xff".to_vec()],
        ];
        let pf = Prefilter::build(&sets).unwrap();
        let mut scratch = ScanScratch::default();
        let alphabet = b"aAbBcdefghijkSELECTionmfrt_<s zZ\xff\xdf";
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let mut v: Vec<u8> = (0..rng.below(40))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            // Plant a literal (or all but its last byte) now and then.
            if rng.below(3) == 0 {
                let lit = &sets[rng.below(sets.len())][0];
                let keep = lit.len() - rng.below(2);
                let at = rng.below(v.len() + 1);
                v.splice(at..at, lit[..keep].iter().copied());
            }
            let lower = v.to_ascii_lowercase();
            let mut want = 0u64;
            for (bit, set) in sets.iter().enumerate() {
                if set
                    .iter()
                    .any(|l| lower.windows(l.len()).any(|w| w == &l[..]))
                {
                    want |= 1 << bit;
                }
            }
            let mut bits = vec![0u64; 1];
            pf.scan(&v, &mut bits, &mut scratch);
            assert_eq!(bits[0], want, "{:?}", String::from_utf8_lossy(&v));
        }
    }

    /// Marks left by a scan long ago cannot pass for marks of the current scan once the
    /// counter wraps around to their value.
    #[test]
    fn marks_reset_when_the_epoch_wraps() {
        let pf = Prefilter::build(&[vec![b"select".to_vec()]]).unwrap();
        let mut scratch = ScanScratch::default();
        let scan = |v: &[u8], scratch: &mut ScanScratch| {
            let mut bits = vec![0u64; 1];
            pf.scan(v, &mut bits, scratch);
            bits[0]
        };
        assert_eq!(scan(b"a select b", &mut scratch), 1);
        scratch.epoch = u32::MAX;
        assert_eq!(scan(b"nothing", &mut scratch), 0);
        assert_eq!(scan(b"a select b", &mut scratch), 1);
    }

    #[test]
    fn scan_sets_the_rules_bits() {
        let pf = Prefilter::build(&[vec![b"abc".to_vec()], vec![b"x".to_vec(), b"yz".to_vec()]])
            .unwrap();
        let mut bits = vec![0u64; 1];
        let mut seen = ScanScratch::default();
        pf.scan(b"__ABC__", &mut bits, &mut seen);
        assert_eq!(bits[0], 0b01);
        pf.scan(b"yz", &mut bits, &mut seen);
        assert_eq!(bits[0], 0b11);
    }
}
