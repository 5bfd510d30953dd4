//! Timing-only mode's record of which SRAM elements have known values.

use rustc_hash::FxHashMap;

/// Timing-only mode: a core's known SRAM elements, by byte address, and
/// the range of addresses ever made known: most lookups (a weight, an
/// accumulator) fall outside it and cost no hash-table probe.
#[derive(Default)]
pub(super) struct Known {
    pub(super) map: FxHashMap<u32, u32>,
    pub(super) lo: u32,
    pub(super) hi: u32,
}

impl Known {
    pub(super) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Whether `at` can be in the map: cheaper than probing it.
    pub(super) fn may_hold(&self, at: u32) -> bool {
        !self.map.is_empty() && (self.lo..=self.hi).contains(&at)
    }
    pub(super) fn get(&self, at: &u32) -> Option<&u32> {
        self.may_hold(*at).then(|| self.map.get(at)).flatten()
    }
    pub(super) fn insert(&mut self, at: u32, bits: u32) -> Option<u32> {
        if self.map.is_empty() {
            (self.lo, self.hi) = (at, at);
        } else {
            (self.lo, self.hi) = (self.lo.min(at), self.hi.max(at));
        }
        self.map.insert(at, bits)
    }
    pub(super) fn remove(&mut self, at: &u32) -> Option<u32> {
        self.may_hold(*at).then(|| self.map.remove(at)).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lookups outside the range ever made known miss without a probe;
    /// inside it the map decides; removal and replacement return the old
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
        assert_eq!((k.get(&40), k.get(&100)), (Some(&8), Some(&7)));
        assert_eq!(k.insert(100, 9), Some(7));
        assert_eq!(k.remove(&40), Some(8));
        assert_eq!(k.remove(&40), None);
        assert_eq!(k.remove(&200), None);
        assert!(!k.is_empty());
    }
}
