//! Per-transaction storage for request data: lists of (name, value) byte pairs and
//! case-insensitive variable stores (TX and friends).
//!
//! Both keep their buffers across transactions: `clear()` forgets the contents but not the
//! capacity, so a worker in steady state does not allocate to store a request.

/// An ordered list of (name, value) pairs in one byte arena. Names keep their original case;
/// lookups compare ASCII case-insensitively, as ModSecurity does for collection keys.
#[derive(Debug, Default, Clone)]
pub struct Pairs {
    bytes: Vec<u8>,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    name: (u32, u32),
    value: (u32, u32),
}

impl Pairs {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let n = self.put(name);
        let v = self.put(value);
        self.items.push(Item { name: n, value: v });
    }

    fn put(&mut self, b: &[u8]) -> (u32, u32) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(b);
        // Bodies are capped far below 4 GiB; saturate rather than wrap if that ever changes.
        (
            u32::try_from(start).unwrap_or(u32::MAX),
            u32::try_from(b.len()).unwrap_or(u32::MAX),
        )
    }

    fn slice(&self, (s, l): (u32, u32)) -> &[u8] {
        let s = s as usize;
        self.bytes.get(s..s + l as usize).unwrap_or(&[])
    }

    pub fn name(&self, i: usize) -> &[u8] {
        self.items
            .get(i)
            .map(|it| self.slice(it.name))
            .unwrap_or(&[])
    }

    pub fn value(&self, i: usize) -> &[u8] {
        self.items
            .get(i)
            .map(|it| self.slice(it.value))
            .unwrap_or(&[])
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.items
            .iter()
            .map(|it| (self.slice(it.name), self.slice(it.value)))
    }

    /// Values whose name equals `key` (ASCII case-insensitive).
    pub fn get<'a>(&'a self, key: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    pub fn first(&self, key: &[u8]) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// Total bytes of names and values (ARGS_COMBINED_SIZE semantics).
    pub fn combined_size(&self) -> usize {
        self.items
            .iter()
            .map(|it| (it.name.1 + it.value.1) as usize)
            .sum()
    }
}

/// A case-insensitive key → value store (TX, IP, GLOBAL, SESSION, USER).
///
/// Keys written literally in the rules get fixed slots at compile time (see
/// `Ruleset::tx_slot`), so the hot path (`TX:DETECTION_PARANOIA_LEVEL`, anomaly scores) is an
/// index, not a search; keys built from macros at run time go to a short overflow list.
#[derive(Debug, Default, Clone)]
pub struct VarStore {
    slots: Vec<Slot>,
    dynamic: Vec<DynEntry>,
    dynamic_len: usize,
}

#[derive(Debug, Default, Clone)]
struct Slot {
    live: bool,
    value: Vec<u8>,
}

#[derive(Debug, Default, Clone)]
struct DynEntry {
    key: Vec<u8>,
    value: Vec<u8>,
}

impl VarStore {
    pub fn with_slots(n: usize) -> VarStore {
        VarStore {
            slots: vec![Slot::default(); n],
            dynamic: Vec::new(),
            dynamic_len: 0,
        }
    }

    pub fn clear(&mut self) {
        for s in &mut self.slots {
            s.live = false;
            s.value.clear();
        }
        self.dynamic_len = 0;
    }

    pub fn slot(&self, i: u32) -> Option<&[u8]> {
        self.slots
            .get(i as usize)
            .filter(|s| s.live)
            .map(|s| s.value.as_slice())
    }

    pub fn set_slot(&mut self, i: u32, value: &[u8]) {
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.live = true;
            s.value.clear();
            s.value.extend_from_slice(value);
        }
    }

    pub fn delete_slot(&mut self, i: u32) {
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.live = false;
            s.value.clear();
        }
    }

    fn dyn_index(&self, key_lc: &[u8]) -> Option<usize> {
        self.dynamic[..self.dynamic_len]
            .iter()
            .position(|e| e.key == key_lc)
    }

    /// Looks up a dynamic key (already lower-cased, and known not to have a slot).
    pub fn get_dynamic(&self, key_lc: &[u8]) -> Option<&[u8]> {
        self.dyn_index(key_lc)
            .map(|i| self.dynamic[i].value.as_slice())
    }

    pub fn set_dynamic(&mut self, key_lc: &[u8], value: &[u8]) {
        let i = match self.dyn_index(key_lc) {
            Some(i) => i,
            None => {
                if self.dynamic_len == self.dynamic.len() {
                    self.dynamic.push(DynEntry::default());
                }
                let e = &mut self.dynamic[self.dynamic_len];
                e.key.clear();
                e.key.extend_from_slice(key_lc);
                self.dynamic_len += 1;
                self.dynamic_len - 1
            }
        };
        let e = &mut self.dynamic[i];
        e.value.clear();
        e.value.extend_from_slice(value);
    }

    pub fn delete_dynamic(&mut self, key_lc: &[u8]) {
        if let Some(i) = self.dyn_index(key_lc) {
            // Keep order; swap the freed entry to the end so its buffers are reused.
            self.dynamic[i..self.dynamic_len].rotate_left(1);
            self.dynamic_len -= 1;
        }
    }

    /// Every live (slot index or None, dynamic key, value), slots first.
    pub fn for_each_live(&self, mut f: impl FnMut(Option<u32>, &[u8], &[u8])) {
        for (i, s) in self.slots.iter().enumerate() {
            if s.live {
                f(Some(i as u32), &[], &s.value);
            }
        }
        for e in &self.dynamic[..self.dynamic_len] {
            f(None, &e.key, &e.value);
        }
    }

    pub fn live_count(&self) -> usize {
        self.slots.iter().filter(|s| s.live).count() + self.dynamic_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_keep_order_and_match_keys_case_insensitively() {
        let mut p = Pairs::default();
        p.push(b"User-Agent", b"x");
        p.push(b"a", b"1");
        p.push(b"A", b"2");
        assert_eq!(p.get(b"user-agent").collect::<Vec<_>>(), vec![b"x"]);
        assert_eq!(p.get(b"a").count(), 2);
        assert_eq!(p.combined_size(), 10 + 1 + 1 + 1 + 1 + 1);
        p.clear();
        assert!(p.is_empty());
    }

    #[test]
    fn var_store_slots_and_dynamic_keys() {
        let mut s = VarStore::with_slots(2);
        s.set_slot(1, b"5");
        assert_eq!(s.slot(1), Some(&b"5"[..]));
        assert_eq!(s.slot(0), None);
        s.set_dynamic(b"k1", b"a");
        s.set_dynamic(b"k2", b"b");
        s.set_dynamic(b"k1", b"c");
        assert_eq!(s.get_dynamic(b"k1"), Some(&b"c"[..]));
        s.delete_dynamic(b"k1");
        assert_eq!(s.get_dynamic(b"k1"), None);
        assert_eq!(s.get_dynamic(b"k2"), Some(&b"b"[..]));
        assert_eq!(s.live_count(), 2);
        s.clear();
        assert_eq!(s.live_count(), 0);
    }
}
