//! The per-transaction transformation cache.
//!
//! Each (value, pipeline node) is computed at most once per transaction: values are named by
//! a stable [`ValueKey`] (which collection, which entry), pipelines by their node in the
//! ruleset's transformation trie, so `urlDecodeUni` computed for one rule is reused as the
//! first step of `urlDecodeUni > lowercase` for another. Outputs live in one arena that is
//! cleared, not freed, between transactions.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::ruleset::PipeNode;
use super::transformations::{self, Transformation};

/// Identifies a value for caching: source list (8 bits), entry index, name-or-value bit.
pub(crate) type ValueKey = u64;

/// Where a transformed value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Loc {
    /// Identical to the untransformed value.
    Raw,
    /// `arena[start..start + len]`.
    Arena(u32, u32),
}

#[derive(Default)]
pub(crate) struct TransformCache {
    map: HashMap<(ValueKey, u32), Loc, BuildHasherDefault<FxHasher>>,
    /// One transformation step from a given input: different pipelines that reach the same
    /// input (e.g. `utf8toUnicode > urlDecodeUni` on ASCII and `urlDecodeUni` alone) share the
    /// step and therefore the output location, so nothing downstream is computed or scanned
    /// twice.
    steps: HashMap<(ValueKey, Loc, Transformation), Loc, BuildHasherDefault<FxHasher>>,
    arena: Vec<u8>,
    work: Vec<u8>,
    path: Vec<u32>,
}

impl TransformCache {
    pub fn clear(&mut self) {
        self.map.clear();
        self.steps.clear();
        self.arena.clear();
    }

    pub fn get<'a>(&'a self, raw: &'a [u8], loc: Loc) -> &'a [u8] {
        match loc {
            Loc::Raw => raw,
            Loc::Arena(s, l) => self.arena.get(s as usize..(s + l) as usize).unwrap_or(&[]),
        }
    }

    /// Location of `raw` after pipeline `node`, computing (and caching when `key` is given)
    /// the missing steps.
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
        if let Some(k) = key {
            if let Some(&l) = self.map.get(&(k, node)) {
                return l;
            }
        }
        // Walk up to the nearest cached ancestor (or the raw value), then apply downwards.
        self.path.clear();
        let mut n = node;
        let mut loc = Loc::Raw;
        while n != 0 {
            if let Some(k) = key {
                if let Some(&l) = self.map.get(&(k, n)) {
                    loc = l;
                    break;
                }
            }
            self.path.push(n);
            n = pipes[n as usize].parent;
        }
        while let Some(n) = self.path.pop() {
            let Some(t) = pipes[n as usize].t else {
                continue;
            };
            if let Some(k) = key {
                if let Some(&l) = self.steps.get(&(k, loc, t)) {
                    loc = l;
                    self.map.insert((k, n), loc);
                    continue;
                }
            }
            let input_loc = loc;
            self.work.clear();
            let input = match loc {
                Loc::Raw => raw,
                Loc::Arena(s, l) => &self.arena[s as usize..(s + l) as usize],
            };
            if transformations::apply(t, input, &mut self.work) {
                let start = u32::try_from(self.arena.len()).unwrap_or(u32::MAX);
                self.arena.extend_from_slice(&self.work);
                loc = Loc::Arena(start, u32::try_from(self.work.len()).unwrap_or(u32::MAX));
            }
            if let Some(k) = key {
                self.steps.insert((k, input_loc, t), loc);
                self.map.insert((k, n), loc);
            }
        }
        loc
    }
}

/// A small, fast hasher for integer keys (the FxHash mixing step). Keys are not
/// attacker-chosen in a way that matters: they are indices the engine assigns.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
}
