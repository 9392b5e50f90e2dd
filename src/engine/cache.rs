//! The per-transaction transformation cache.
//!
//! Each (value, pipeline node) is computed at most once per transaction: values are named by
//! a stable [`ValueKey`] (which collection, which entry), pipelines by their node in the
//! ruleset's transformation trie, so `urlDecodeUni` computed for one rule is reused as the
//! first step of `urlDecodeUni > lowercase` for another. Outputs live in one arena that is
//! cleared, not freed, between transactions.
//!
//! Lookups are array indexing, not hashing: every value a transaction touches gets a dense
//! slot on first use, and each slot owns a row with one entry per trie node. Rows, step lists
//! and the arena keep their capacity, so a steady-state transaction allocates nothing here.

use super::ruleset::PipeNode;
use super::transformations::{self, Transformation};

/// Identifies a value for caching: source list (8 bits, from bit 40), entry index (from bit 1),
/// name-or-value bit (bit 0). Lists are numbered below [`SCALAR_TAGS`], scalars from it.
pub(crate) type ValueKey = u64;

/// Tags (bits 40..48 of a [`ValueKey`]) below this are lists of pairs; the rest are scalars.
const SCALAR_TAGS: usize = 16;
const TAGS: usize = 64;

/// Where a transformed value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Loc {
    /// Identical to the untransformed value.
    Raw,
    /// `arena[start..start + len]`, or, when `start` has [`LARGE`] set, `large[start & !LARGE]`
    /// (an output too big to copy into the arena). One variant keeps the hot paths' matches
    /// small.
    Arena(u32, u32),
}

/// Marks a [`Loc::Arena`] start that indexes `large` instead of the arena.
const LARGE: u32 = 1 << 31;

/// Outputs at least this long are not copied into the arena: the buffer they were written to
/// is kept as is (swapped for a pooled one), so a huge value's transformed forms cost no copy
/// and do not make the arena grow (and fault in fresh pages) by doubling.
const LARGE_OUTPUT: usize = 64 << 10;

/// A value's dense slot in this transaction.
pub(crate) type Slot = u32;

pub(crate) struct TransformCache {
    /// Per list tag: slot + 1 of entry `idx * 2 + name` (0: none yet).
    pair_slots: Vec<Vec<u32>>,
    /// Per scalar tag: slot + 1 (0: none yet).
    scalar_slots: Vec<u32>,
    /// Slots in use.
    slots: u32,
    /// Trie nodes per row (the ruleset's pipeline count).
    width: usize,
    /// `rows[slot * width + node]`: where the value is after that node, once computed.
    rows: Vec<Option<Loc>>,
    /// Per slot, one transformation step from a given input: different pipelines that reach
    /// the same input (e.g. `utf8toUnicode > urlDecodeUni` on ASCII and `urlDecodeUni` alone)
    /// share the step and therefore the output location, so nothing downstream is computed
    /// or scanned twice.
    steps: Vec<SlotSteps>,
    arena: Vec<u8>,
    work: Vec<u8>,
    /// Large outputs of this transaction (`large_used` of them); the rest are spare buffers.
    large: Vec<Vec<u8>>,
    large_used: usize,
    path: Vec<u32>,
}

/// One value's transformation steps, by input: from the raw value (the common case, searched
/// by transformation alone) or from a transformed value.
#[derive(Default)]
struct SlotSteps {
    from_raw: Vec<(Transformation, Loc)>,
    from_transformed: Vec<(Loc, Transformation, Loc)>,
}

impl TransformCache {
    /// A cache for a ruleset whose transformation trie has `width` nodes.
    pub fn new(width: usize) -> TransformCache {
        TransformCache {
            pair_slots: vec![Vec::new(); SCALAR_TAGS],
            scalar_slots: vec![0; TAGS],
            slots: 0,
            width,
            rows: Vec::new(),
            steps: Vec::new(),
            arena: Vec::new(),
            work: Vec::new(),
            large: Vec::new(),
            large_used: 0,
            path: Vec::new(),
        }
    }

    pub fn clear(&mut self) {
        for v in &mut self.pair_slots {
            v.clear();
        }
        self.scalar_slots.iter_mut().for_each(|s| *s = 0);
        for s in &mut self.steps[..self.slots as usize] {
            s.from_raw.clear();
            s.from_transformed.clear();
        }
        self.slots = 0;
        self.rows.clear();
        self.arena.clear();
        self.large_used = 0;
    }

    pub fn get<'a>(&'a self, raw: &'a [u8], loc: Loc) -> &'a [u8] {
        match loc {
            Loc::Raw => raw,
            Loc::Arena(s, _) if s & LARGE != 0 => self
                .large
                .get((s & !LARGE) as usize)
                .map_or(&[], Vec::as_slice),
            Loc::Arena(s, l) => self.arena.get(s as usize..(s + l) as usize).unwrap_or(&[]),
        }
    }

    /// Forgets what was computed for value `key`: its content changed (a variable that is
    /// empty until the body is processed, say). Its next use gets a fresh slot.
    pub fn forget(&mut self, key: ValueKey) {
        *self.entry(key) = 0;
    }

    /// The dense slot of value `key`, assigned on first use in this transaction.
    #[inline]
    pub fn slot(&mut self, key: ValueKey) -> Slot {
        match *self.entry(key) {
            0 => self.new_slot(key),
            e => e - 1,
        }
    }

    /// Where the slot of `key` is recorded (slot + 1; 0: none yet).
    #[inline]
    fn entry(&mut self, key: ValueKey) -> &mut u32 {
        let tag = ((key >> 40) as usize) % TAGS;
        if tag < SCALAR_TAGS {
            let list = &mut self.pair_slots[tag];
            let i = (key & 0xFF_FFFF_FFFF) as usize;
            if list.len() <= i {
                list.resize(i + 1, 0);
            }
            &mut list[i]
        } else {
            &mut self.scalar_slots[tag]
        }
    }

    #[inline(never)]
    fn new_slot(&mut self, key: ValueKey) -> Slot {
        let s = self.slots;
        self.slots += 1;
        *self.entry(key) = s + 1;
        self.rows.resize(self.rows.len() + self.width, None);
        if self.steps.len() <= s as usize {
            self.steps.push(SlotSteps::default());
        }
        s
    }

    /// Location of `raw` after pipeline `node`, computing (and caching when `key` is given)
    /// the missing steps.
    #[inline]
    pub fn transform(
        &mut self,
        pipes: &[PipeNode],
        key: Option<ValueKey>,
        raw: &[u8],
        node: u32,
    ) -> Loc {
        if node == 0 {
            return Loc::Raw;
        }
        match key {
            Some(k) => {
                let slot = self.slot(k);
                self.transform_slot(pipes, slot, raw, node)
            }
            None => self.transform_uncached(pipes, raw, node),
        }
    }

    /// [`transform`](Self::transform) for a value whose slot is known.
    #[inline]
    pub fn transform_slot(&mut self, pipes: &[PipeNode], slot: Slot, raw: &[u8], node: u32) -> Loc {
        if node == 0 {
            return Loc::Raw;
        }
        // Most calls find the value already computed: keep that path small enough to inline.
        match self.rows[slot as usize * self.width + node as usize] {
            Some(l) => l,
            None => self.compute(pipes, slot, raw, node),
        }
    }

    /// The missing steps of `node` for the value in `slot`: its parent first (recursively,
    /// through the cached fast path; the depth is the longest pipeline), then its own step.
    #[inline(never)]
    fn compute(&mut self, pipes: &[PipeNode], slot: Slot, raw: &[u8], node: u32) -> Loc {
        let PipeNode { parent, t } = pipes[node as usize];
        let input = self.transform_slot(pipes, slot, raw, parent);
        let loc = match t {
            None => input,
            Some(t) => self.step(slot, t, raw, input),
        };
        self.rows[slot as usize * self.width + node as usize] = Some(loc);
        loc
    }

    /// Transformation `t` applied to the value of `slot` at `input`, shared by every pipeline
    /// that reaches the same input.
    fn step(&mut self, slot: Slot, t: Transformation, raw: &[u8], input: Loc) -> Loc {
        let steps = &self.steps[slot as usize];
        let known = match input {
            Loc::Raw => steps.from_raw.iter().find(|s| s.0 == t).map(|s| s.1),
            _ => steps
                .from_transformed
                .iter()
                .find(|s| s.1 == t && s.0 == input)
                .map(|s| s.2),
        };
        if let Some(out) = known {
            return out;
        }
        let out = self.apply(t, raw, input);
        let steps = &mut self.steps[slot as usize];
        match input {
            Loc::Raw => steps.from_raw.push((t, out)),
            _ => steps.from_transformed.push((input, t, out)),
        }
        out
    }

    /// Keeps the output in `work` where it is, as a large output; `work` gets a spare buffer.
    #[inline(never)]
    fn keep_large(&mut self) -> Loc {
        if self.large_used == self.large.len() {
            self.large.push(Vec::new());
        }
        let i = self.large_used;
        self.large_used += 1;
        std::mem::swap(&mut self.work, &mut self.large[i]);
        let len = u32::try_from(self.large[i].len()).unwrap_or(u32::MAX);
        // `apply` keeps arena offsets below the flag bit.
        Loc::Arena(LARGE | (i as u32 & !LARGE), len)
    }

    /// A value without a stable identity: every step is computed (nothing is cached).
    fn transform_uncached(&mut self, pipes: &[PipeNode], raw: &[u8], node: u32) -> Loc {
        self.path.clear();
        let mut n = node;
        while n != 0 {
            self.path.push(n);
            n = pipes[n as usize].parent;
        }
        let mut loc = Loc::Raw;
        while let Some(n) = self.path.pop() {
            if let Some(t) = pipes[n as usize].t {
                loc = self.apply(t, raw, loc);
            }
        }
        loc
    }

    /// Applies one step to the value at `loc`; the output's location (`loc` when unchanged).
    fn apply(&mut self, t: Transformation, raw: &[u8], loc: Loc) -> Loc {
        self.work.clear();
        let input = match loc {
            Loc::Raw => raw,
            Loc::Arena(s, _) if s & LARGE != 0 => &self.large[(s & !LARGE) as usize],
            Loc::Arena(s, l) => &self.arena[s as usize..(s + l) as usize],
        };
        if !transformations::apply(t, input, &mut self.work) {
            return loc;
        }
        // Large outputs, and any output that would take the arena's offsets up to the flag bit.
        if self.work.len() >= LARGE_OUTPUT || self.arena.len() + self.work.len() >= LARGE as usize {
            return self.keep_large();
        }
        let start = u32::try_from(self.arena.len()).unwrap_or(u32::MAX);
        self.arena.extend_from_slice(&self.work);
        Loc::Arena(start, u32::try_from(self.work.len()).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transformations::Transformation as T;

    /// The reference: each step applied in turn, outside the cache.
    fn direct(raw: &[u8], steps: &[T]) -> Vec<u8> {
        let mut v = raw.to_vec();
        for &t in steps {
            let mut out = Vec::new();
            if transformations::apply(t, &v, &mut out) {
                v = out;
            }
        }
        v
    }

    /// Outputs too big for the arena (kept in their own buffers) read back like arena ones,
    /// feed later steps, sit beside small outputs of other values, and are reused, not stale,
    /// in the next transaction.
    #[test]
    fn large_outputs_chain_and_are_reused() {
        // Trie: 1 = urlDecode, 2 = urlDecode > lowercase, 3 = lowercase.
        let pipes = [
            PipeNode { parent: 0, t: None },
            PipeNode {
                parent: 0,
                t: Some(T::UrlDecode),
            },
            PipeNode {
                parent: 1,
                t: Some(T::Lowercase),
            },
            PipeNode {
                parent: 0,
                t: Some(T::Lowercase),
            },
        ];
        let paths: [&[T]; 4] = [
            &[],
            &[T::UrlDecode],
            &[T::UrlDecode, T::Lowercase],
            &[T::Lowercase],
        ];
        let mut cache = TransformCache::new(pipes.len());
        for round in 0..3 {
            cache.clear();
            let big = format!("A%4{round}b+").repeat(20_000).into_bytes();
            let small = format!("X%4{round}").into_bytes();
            let values: [(ValueKey, &[u8]); 2] = [(1 << 40, &big), ((1 << 40) | 2, &small)];
            for node in [2u32, 3, 1, 0] {
                for &(key, raw) in &values {
                    let loc = cache.transform(&pipes, Some(key), raw, node);
                    let want = direct(raw, paths[node as usize]);
                    assert_eq!(
                        cache.get(raw, loc),
                        want.as_slice(),
                        "round {round} node {node}"
                    );
                    if raw.len() > LARGE_OUTPUT && node != 0 {
                        assert!(matches!(loc, Loc::Arena(s, _) if s & LARGE != 0), "{loc:?}");
                    }
                }
            }
        }
        // Three large outputs per round, in buffers reused round after round.
        assert_eq!(cache.large.len(), 3);
    }
}
