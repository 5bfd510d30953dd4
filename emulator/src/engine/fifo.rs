//! The bounded FIFOs behind every link: router buffers and core input
//! queues, all in one slab (see [`Fifos`]).

use crate::{Pe, Port};

/// A FIFO's index in [`Fifos`], or [`FifoId::NONE`] where there is none (a
/// color a core neither receives nor sends), packed in the same 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct FifoId(u32);

impl FifoId {
    pub(super) const NONE: FifoId = FifoId(u32::MAX);

    pub(super) fn is_none(self) -> bool {
        self == FifoId::NONE
    }

    /// The FIFO numbered `i` (the ids [`Fifos::add`] gives out in turn,
    /// planned ahead of it where a machine is built in bands).
    pub(super) fn from_index(i: u32) -> FifoId {
        debug_assert!(i != u32::MAX, "u32::MAX is FifoId::NONE");
        FifoId(i)
    }

    /// Its index into per-FIFO tables.
    pub(super) fn index(self) -> usize {
        debug_assert!(!self.is_none(), "FifoId::NONE indexes nothing");
        self.0 as usize
    }
}

/// Every bounded FIFO of `(ready_at, bits)` behind a link. A FIFO's
/// capacity is the buffer's depth plus the link's latency (each cycle of
/// latency is a pipeline stage holding one wavelet), so a depth of 1
/// already sustains one wavelet per cycle. Entries in flight count against
/// the capacity, and room freed by a pop becomes visible the next cycle.
///
/// All FIFOs' entries live in one slab, each FIFO a ring in its own slice,
/// and their bookkeeping in one array: a step touches a PE's buffers in
/// neighbouring memory rather than in an allocation per buffer.
///
/// A machine stepped in bands of PEs (see `machine/band.rs`) gives each
/// band the FIFOs its PEs pop, ids `base..base + rings.len()` (a PE's
/// FIFOs are allocated together, so a band's are contiguous), with its
/// slice of the slab.
pub(super) struct Fifos {
    /// The id of `rings[0]`.
    pub(super) base: u32,
    pub(super) rings: Vec<Ring>,
    pub(super) slab: Vec<(u64, u32)>,
    pub(super) what: Vec<FifoKind>,
}

#[derive(Clone, Copy)]
pub(super) struct Ring {
    /// The cycle the head entry is ready at (meaningless while empty): a
    /// step asks "is the head ready?" of every FIFO it looks at, and this
    /// answers without touching the slab.
    pub(super) head_ready: u64,
    pub(super) pop_cycle: u64,
    pub(super) off: u32,
    pub(super) cap: u32,
    pub(super) head: u32,
    pub(super) len: u32,
    pub(super) pops: u32,
    /// A router buffer's place among its router's route entries (see
    /// [`super::machine`]'s occupancy mask); 0 for a queue.
    pub(super) slot: u32,
    /// The unit that pops it: its PE's router (`2·pe`) or core
    /// (`2·pe + 1`), the ids [`super::timers::Wake`] steps.
    pub(super) owner: u32,
    /// The unit to wake when it is popped (a core's ramp buffer: its
    /// producer, which may be stalled on a full buffer), else `u32::MAX`.
    pub(super) pop_wake: u32,
    /// A buffer pushed from another band of PEs: the link in that band
    /// its pops return room to (`machine/band.rs`), else `u32::MAX`.
    pub(super) link: u32,
}

impl Ring {
    /// The slab index its next push writes (it has room: `len < cap`).
    pub(super) fn tail(&self) -> usize {
        let mut i = self.head + self.len;
        if i >= self.cap {
            i -= self.cap;
        }
        (self.off + i) as usize
    }
}

impl Fifos {
    #[cfg(test)]
    pub(super) fn new() -> Fifos {
        Fifos::starting_at(0, 0)
    }
    /// No FIFOs yet, the first to be added numbered `base`, room for
    /// `n` of them.
    pub(super) fn starting_at(base: u32, n: usize) -> Fifos {
        Fifos {
            base,
            rings: Vec::with_capacity(n),
            slab: Vec::new(),
            what: Vec::with_capacity(n),
        }
    }
    /// A new FIFO holding `cap` entries: its index.
    pub(super) fn add(&mut self, cap: u32, what: FifoKind) -> FifoId {
        let i = FifoId(self.base + self.rings.len() as u32);
        self.rings.push(Ring {
            head_ready: 0,
            pop_cycle: u64::MAX,
            off: self.slab.len() as u32,
            cap,
            head: 0,
            len: 0,
            pops: 0,
            slot: 0,
            owner: 0,
            pop_wake: u32::MAX,
            link: u32::MAX,
        });
        self.slab.resize(self.slab.len() + cap as usize, (0, 0));
        self.what.push(what);
        i
    }
    /// Every FIFO's id, in index order.
    pub(super) fn ids(&self) -> impl Iterator<Item = FifoId> + use<> {
        (self.base..self.base + self.rings.len() as u32).map(FifoId)
    }
    /// FIFO `f`'s bookkeeping.
    pub(super) fn ring(&self, f: FifoId) -> &Ring {
        &self.rings[self.at_index(f)]
    }
    pub(super) fn ring_mut(&mut self, f: FifoId) -> &mut Ring {
        let i = self.at_index(f);
        &mut self.rings[i]
    }
    /// What FIFO `f` is.
    pub(super) fn what(&self, f: FifoId) -> FifoKind {
        self.what[self.at_index(f)]
    }
    /// `f`'s place in `rings`.
    fn at_index(&self, f: FifoId) -> usize {
        f.index() - self.base as usize
    }
    pub(super) fn has_space(&self, f: FifoId, now: u64) -> bool {
        let r = self.ring(f);
        let pops = if r.pop_cycle == now { r.pops } else { 0 };
        r.len + pops < r.cap
    }
    /// Entry `k` from the head.
    pub(super) fn at(&self, r: &Ring, k: u32) -> (u64, u32) {
        let mut i = r.head + k;
        if i >= r.cap {
            i -= r.cap;
        }
        self.slab[(r.off + i) as usize]
    }
    /// Whether the head entry is ready in cycle `now`.
    pub(super) fn ready(&self, f: FifoId, now: u64) -> bool {
        let r = self.ring(f);
        r.len > 0 && r.head_ready <= now
    }
    pub(super) fn pop(&mut self, f: FifoId, now: u64) -> u32 {
        let i = self.at_index(f);
        let r = &mut self.rings[i];
        assert!(r.len > 0, "pop from a fifo with a ready head");
        if r.pop_cycle != now {
            r.pop_cycle = now;
            r.pops = 0;
        }
        r.pops += 1;
        let at = (r.off + r.head) as usize;
        r.head += 1;
        if r.head == r.cap {
            r.head = 0;
        }
        r.len -= 1;
        if r.len > 0 {
            let next = (r.off + r.head) as usize;
            r.head_ready = self.slab[next].0;
        }
        self.slab[at].1
    }
    pub(super) fn push(&mut self, f: FifoId, ready: u64, bits: u32) {
        let i = self.at_index(f);
        let r = &mut self.rings[i];
        debug_assert!(r.len < r.cap);
        if r.len == 0 {
            r.head_ready = ready;
        }
        let at = r.tail();
        r.len += 1;
        self.slab[at] = (ready, bits);
    }
    /// Nothing stored and nothing in flight to it.
    pub(super) fn is_empty(&self, f: FifoId) -> bool {
        self.ring(f).len == 0
    }
    /// Entries stored or in flight.
    pub(super) fn count(&self, f: FifoId) -> u32 {
        self.ring(f).len
    }
    /// The earliest entry that becomes ready after cycle `t`.
    pub(super) fn landing_after(&self, f: FifoId, t: u64) -> Option<u64> {
        let r = self.ring(f);
        (0..r.len).map(|k| self.at(r, k).0).find(|x| *x > t)
    }
}

#[derive(Clone, Copy)]
pub(super) enum FifoKind {
    Router { pe: Pe, port: Port, color: u8 },
    Queue { pe: Pe, color: u8 },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> FifoKind {
        FifoKind::Queue {
            pe: Pe::new(0, 0),
            color: 0,
        }
    }

    /// Entries in flight count against the capacity, a pop frees room
    /// only from the next cycle, an entry is not at the head before its
    /// cycle, the ring wraps, and FIFOs sharing the slab stay apart.
    #[test]
    fn room_frees_the_cycle_after_a_pop_and_rings_wrap_apart() {
        let mut f = Fifos::new();
        let a = f.add(2, queue());
        let b = f.add(3, queue());
        assert_eq!(f.ids().count(), 2);
        assert!(f.is_empty(a) && f.has_space(a, 0));
        f.push(a, 5, 10);
        f.push(a, 6, 11);
        assert_eq!(f.count(a), 2);
        assert!(!f.has_space(a, 4), "entries in flight count");
        assert!(!f.ready(a, 4), "not ready before its cycle");
        assert!(f.ready(a, 5));
        assert_eq!(f.pop(a, 5), 10);
        assert!(!f.ready(a, 5), "the next head lands at 6");
        assert!(!f.has_space(a, 5), "a pop frees room from the next cycle");
        assert!(f.has_space(a, 6));
        f.push(a, 7, 12);
        assert_eq!(f.landing_after(a, 6), Some(7));
        assert_eq!(f.pop(a, 6), 11);
        assert!(!f.ready(a, 6), "12 lands at 7");
        assert_eq!(f.pop(a, 7), 12);
        assert!(f.is_empty(a));
        assert!(f.is_empty(b) && f.has_space(b, 0));
        f.push(b, 1, 20);
        assert_eq!((f.ready(b, 1), f.landing_after(b, 1)), (true, None));
        assert_eq!(f.pop(b, 1), 20);
        assert!(f.is_empty(a), "b's push lands in b's slice");
    }
}
