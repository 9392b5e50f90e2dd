//! Helpers shared by the engine's unit tests (compiled for tests only): deterministic inputs,
//! so a failure reproduces, without extra crates.

/// A tiny xorshift generator.
pub(crate) struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Calls `f` with every concatenation of up to `max` of `pieces`, repeats allowed (the empty
/// input first).
pub(crate) fn for_each_mix(pieces: &[&[u8]], max: u32, mut f: impl FnMut(&[u8])) {
    let base = pieces.len() as u64;
    let mut v = Vec::new();
    for n in 0..=max {
        for mut k in 0..base.pow(n) {
            v.clear();
            for _ in 0..n {
                v.extend_from_slice(pieces[(k % base) as usize]);
                k /= base;
            }
            f(&v);
        }
    }
}
