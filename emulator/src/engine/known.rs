//! Timing-only mode's record of which SRAM elements have known values.
//!
//! An open-addressing table of its own rather than a general hash map,
//! for where its probes land. A timing-only stage steps thousands of
//! cores a cycle, each touching its table for an element or two, so each
//! probe is a cache miss: attention's reductions of known zeros spent
//! 38 % of their run in the hash map's two loads a probe (its control
//! bytes, then the bucket). Here a probe is one load, of a slot the event
//! loop can ask for ahead ([`Known::prefetch`]), and an SRAM block's
//! elements sit side by side, so a vector's next element is mostly in the
//! line its last one brought.

use super::prefetch;

/// Timing-only mode: a core's known SRAM elements, by byte address, and
/// the range of addresses ever made known: most lookups (a weight, an
/// accumulator) fall outside it and cost no probe.
#[derive(Default)]
pub(super) struct Known {
    /// Empty, or a power of two of slots, at most half of them taken.
    slots: Vec<Slot>,
    len: usize,
    lo: u32,
    hi: u32,
}

#[derive(Clone, Copy)]
struct Slot {
    /// [`Slot::FREE`] for a free slot.
    at: u32,
    bits: u32,
}

impl Slot {
    /// No element's address: a PE's SRAM is far smaller than 4 GiB (the
    /// machine file's check).
    const FREE: u32 = u32::MAX;
    const EMPTY: Slot = Slot {
        at: Slot::FREE,
        bits: 0,
    };
}

/// The fewest slots a table that holds anything has: two cache lines.
const MIN_SLOTS: usize = 16;

/// The halfwords of a 64-byte SRAM block: its elements take consecutive
/// slots from their block's home.
const BLOCK: u32 = 32;

impl Known {
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `at` can be in the table: cheaper than probing it.
    pub(super) fn may_hold(&self, at: u32) -> bool {
        self.may_hold_any(at, at)
    }

    /// Whether any address from `lo` to `hi` can be in the table.
    pub(super) fn may_hold_any(&self, lo: u32, hi: u32) -> bool {
        self.len > 0 && lo <= self.hi && hi >= self.lo
    }

    /// Whether `at` lies in the range of addresses ever made known or
    /// within a block of it: where asking ahead for its slot is worth a
    /// load (an address far outside is never probed, and a buffer being
    /// made known element by element grows the range a block at a time).
    pub(super) fn near(&self, at: u32) -> bool {
        self.may_hold_any(at.saturating_sub(2 * BLOCK), at.saturating_add(2 * BLOCK))
    }

    /// The slot a probe for `at` starts at (the table is not empty): its
    /// block's hashed home, then its halfword within the block.
    fn home(&self, at: u32) -> usize {
        let block = (at / (2 * BLOCK)) as u64;
        // Fibonacci hashing: the product's high bits are well mixed.
        let h = (block.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
        (h * BLOCK as usize + (at / 2 % BLOCK) as usize) & (self.slots.len() - 1)
    }

    /// The slot holding `at`, or the free slot a probe for it ends at.
    fn find(&self, at: u32) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = self.home(at);
        loop {
            let s = self.slots[i].at;
            if s == at || s == Slot::FREE {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    pub(super) fn get(&self, at: &u32) -> Option<&u32> {
        if !self.may_hold(*at) {
            return None;
        }
        let s = &self.slots[self.find(*at)];
        (s.at == *at).then_some(&s.bits)
    }

    pub(super) fn insert(&mut self, at: u32, bits: u32) -> Option<u32> {
        debug_assert_ne!(at, Slot::FREE);
        if self.len == 0 {
            (self.lo, self.hi) = (at, at);
        } else {
            (self.lo, self.hi) = (self.lo.min(at), self.hi.max(at));
        }
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let i = self.find(at);
        let s = &mut self.slots[i];
        if s.at == at {
            return Some(std::mem::replace(&mut s.bits, bits));
        }
        *s = Slot { at, bits };
        self.len += 1;
        None
    }

    pub(super) fn remove(&mut self, at: &u32) -> Option<u32> {
        if !self.may_hold(*at) {
            return None;
        }
        let mut i = self.find(*at);
        if self.slots[i].at != *at {
            return None;
        }
        let bits = self.slots[i].bits;
        self.len -= 1;
        // Close the gap (no tombstones): move back each later slot of the
        // run whose probe would otherwise cross the freed one.
        let mask = self.slots.len() - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s.at == Slot::FREE {
                break;
            }
            let h = self.home(s.at);
            // `s` stays if its home lies cyclically in (i, j].
            if (j.wrapping_sub(h) & mask) >= (j.wrapping_sub(i) & mask) {
                self.slots[i] = s;
                i = j;
            }
        }
        self.slots[i] = Slot::EMPTY;
        Some(bits)
    }

    /// Ask for the slot a probe for `at` starts at (a hint; see
    /// `engine/prefetch.rs`).
    pub(super) fn prefetch(&self, at: u32) {
        if !self.slots.is_empty() {
            prefetch::lines(&self.slots[self.home(at)], 1);
        }
    }

    fn grow(&mut self) {
        let n = (2 * self.slots.len()).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![Slot::EMPTY; n]);
        for s in old.into_iter().filter(|s| s.at != Slot::FREE) {
            let i = self.find(s.at);
            self.slots[i] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Lookups outside the range ever made known miss without a probe;
    /// inside it the table decides; removal and replacement return the old
    /// bits.
    #[test]
    fn known_elements_by_address() {
        let mut k = Known::default();
        assert!(k.is_empty() && !k.may_hold(0));
        assert_eq!(k.insert(100, 7), None);
        assert_eq!(k.insert(40, 8), None);
        assert!(k.may_hold(40) && k.may_hold(70) && k.may_hold(100));
        assert!(!k.may_hold(39) && !k.may_hold(101));
        assert_eq!(k.get(&70), None);
        // A block either side of the range is near; beyond it is not.
        assert!(k.near(100 + 64) && k.near(0) && !k.near(100 + 66));
        assert!(!Known::default().near(0));
        // A run of addresses overlapping the range may hold one; a run
        // either side of it cannot.
        assert!(k.may_hold_any(0, 40) && k.may_hold_any(100, 300) && k.may_hold_any(0, 900));
        assert!(!k.may_hold_any(0, 39) && !k.may_hold_any(101, 900));
        assert!(!Known::default().may_hold_any(0, u32::MAX));
        assert_eq!((k.get(&40), k.get(&100)), (Some(&8), Some(&7)));
        assert_eq!(k.insert(100, 9), Some(7));
        assert_eq!(k.remove(&40), Some(8));
        assert_eq!(k.remove(&40), None);
        assert_eq!(k.remove(&200), None);
        assert!(!k.is_empty());
        assert_eq!(k.remove(&100), Some(9));
        assert!(k.is_empty());
    }

    /// Runs of neighbours (four blocks' worth) and lone far blocks in one
    /// table, a third of them removed across the runs: what stays is
    /// still found, what went is not.
    #[test]
    fn removal_keeps_crossing_runs_found() {
        let mut k = Known::default();
        let ats: Vec<u32> = (0..200)
            .map(|i| i * 2)
            .chain((1..=50).map(|i| i * 4096))
            .collect();
        for (j, &at) in ats.iter().enumerate() {
            k.insert(at, j as u32);
        }
        for &at in ats.iter().step_by(3) {
            assert!(k.remove(&at).is_some());
        }
        for (j, &at) in ats.iter().enumerate() {
            let want = (j % 3 != 0).then_some(j as u32);
            assert_eq!(k.get(&at).copied(), want, "address {at}");
        }
        assert_eq!(k.len, ats.len() - ats.len().div_ceil(3));
    }

    proptest! {
        /// Any sequence of inserts and removals over a few blocks (so
        /// runs cross and wrap) agrees with a hash map, element by element.
        #[test]
        fn agrees_with_a_hash_map(
            ops in prop::collection::vec((any::<bool>(), 0u32..600, any::<u32>()), 0..400)
        ) {
            let mut k = Known::default();
            let mut m = HashMap::new();
            for (insert, at, bits) in ops {
                // Element addresses: halfwords, spread over a few blocks
                // and one far one.
                let at = if at % 7 == 0 { 40_000 + at * 2 } else { at * 2 };
                if insert {
                    prop_assert_eq!(k.insert(at, bits), m.insert(at, bits));
                } else {
                    prop_assert_eq!(k.remove(&at), m.remove(&at));
                }
                prop_assert_eq!(k.is_empty(), m.is_empty());
                prop_assert!(2 * k.len <= k.slots.len() || k.slots.is_empty());
            }
            for at in (0..1200).step_by(2).chain((40_000..41_200).step_by(2)) {
                prop_assert_eq!(k.get(&at), m.get(&at));
            }
        }
    }
}
