//! What a step asks the memory system for ahead: the event loop knows
//! which units it steps next, so for each it asks, a few units before,
//! for the lines its step will load (its state, then what that state
//! points to, then what those point to). Hints only ([`prefetch`]): no
//! result depends on them.

use super::*;
use crate::engine::prefetch;

/// How many units ahead of the one it steps the event loop asks for a
/// unit's state (`FAR`), for what that state points to (`MID`: a
/// router's route entry, a core's op's FIFO rings), for what those point
/// to (`NEAR`: the entry's rings, a queue's head) and for a router's
/// buffer head (`HEAD`): each far enough ahead of the next that its load
/// from memory has landed when the next reads it (a hint that waits on a
/// load it did not ask for stalls the loop: reading a ring at the third
/// depth cost 14 % of the loop's samples), near enough that it is still
/// in cache when the step comes.
pub(super) const FAR: usize = 16;
pub(super) const MID: usize = 12;
pub(super) const NEAR: usize = 8;
pub(super) const HEAD: usize = 4;

impl Machine<'_> {
    /// Ask for the state unit `u` (a router or a core) starts its step
    /// with: the router, or the core's first lines and its counters.
    pub(super) fn prefetch_state(&self, u: u32) {
        let pe = u as usize / 2;
        if u & 1 == 0 {
            prefetch::lines(&self.routers.at[pe], 1);
        } else {
            prefetch::lines(&self.cores[pe], 4);
            prefetch::lines(&self.stats[pe], 2);
        }
    }

    /// Ask for what unit `u`'s step reads next, found through its state
    /// (asked for [`FAR`] units ago, so in cache by now): a router's first
    /// occupied route entry, the rings of a core's synchronous op's
    /// fabric operands.
    pub(super) fn prefetch_dependents(&self, u: u32) {
        let pe = u as usize / 2;
        if u & 1 == 0 {
            if let Some(e) = self.first_entry(pe) {
                prefetch::lines(e, 1);
            }
        } else if let Some(core) = &self.cores[pe]
            && let Some(op) = core.ops.get(0)
        {
            // Timing-only, only an op stepping its elements one by one
            // looks them up, and only an address in the table's range is
            // probed, or made known just past it (a buffer filled with
            // known values for the first time).
            let looks_up = self.timing && !core.known.is_empty() && op.steps_known_elements();
            for l in op.srcs.iter().chain([&op.dst]) {
                match *l {
                    Loc::In { fifo, .. } | Loc::Out { fifo, .. } => {
                        prefetch::lines(self.fifos.ring(fifo), 1)
                    }
                    // An op with a fabric operand steps an element or two
                    // at a time, and each PE's SRAM is an allocation of its
                    // own: its next element's load would miss.
                    Loc::Mem {
                        base, dtype, idx, ..
                    } if op.jit.is_none() && !self.timing => {
                        let at = elem_addr(base, dtype, idx) as usize;
                        prefetch::lines(core.sram.as_ptr().wrapping_add(at), 1)
                    }
                    // Timing-only, its next element's known value: the
                    // slot its probe starts at.
                    Loc::Mem {
                        base, dtype, idx, ..
                    } if looks_up => {
                        let at = elem_addr(base, dtype, idx);
                        if core.known.near(at) {
                            core.known.prefetch(at)
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Ask for the rings unit `u`'s step pops and pushes, found through
    /// what [`Self::prefetch_dependents`] asked for: a router's first
    /// occupied buffer's ring and its destinations' rings; for a core, the
    /// head of its synchronous op's input queue (its ring was asked for
    /// already).
    pub(super) fn prefetch_rings(&self, u: u32) {
        let pe = u as usize / 2;
        if u & 1 == 0 {
            if let Some(e) = self.first_entry(pe) {
                prefetch::lines(self.fifos.ring(e.fifo), 1);
                for d in e.dests {
                    if let Dest::Fifo(f) = d {
                        prefetch::lines(self.fifos.ring(f), 1);
                    }
                }
            }
        } else if let Some(core) = &self.cores[pe]
            && let Some(op) = core.ops.get(0)
        {
            for l in &op.srcs {
                if let Loc::In { fifo, .. } = *l {
                    self.prefetch_head(fifo);
                }
            }
        }
    }

    /// Ask for the head entry of router `u`'s first occupied buffer, and
    /// for where its move lands: each destination buffer's next free slot
    /// and the router owning it, whose occupancy mask the landing marks
    /// (each through its ring, asked for by [`Self::prefetch_rings`]).
    /// Counted under callgrind's cache model, the landings' stores were
    /// half of a GEMV tile's write misses.
    pub(super) fn prefetch_heads(&self, u: u32) {
        if u & 1 == 0
            && let Some(e) = self.first_entry(u as usize / 2)
        {
            self.prefetch_head(e.fifo);
            for o in e.outs.iter() {
                if let Dest::Fifo(f) = e.dests[o.index()] {
                    self.prefetch_tail(f);
                }
            }
        }
    }

    /// Ask for the slot FIFO `f`'s next push writes and, for a router's
    /// buffer, that router.
    fn prefetch_tail(&self, f: FifoId) {
        let r = self.fifos.ring(f);
        if let Some(e) = self.fifos.slab.get(r.tail()) {
            prefetch::lines(e, 1);
        }
        if r.owner & 1 == 0
            && let Some(at) = (r.owner as usize / 2)
                .checked_sub(self.routers.at.lo)
                .and_then(|k| self.routers.at.v.get(k))
        {
            prefetch::lines(at, 1);
        }
    }

    /// Router `pe`'s first occupied route entry, if any.
    fn first_entry(&self, pe: usize) -> Option<&RouteEntry> {
        let r = &self.routers.at[pe];
        if r.full == 0 {
            return None;
        }
        let i = r.off as usize + r.full.trailing_zeros().min(r.n) as usize;
        (i < (r.off + r.n) as usize).then(|| &self.routers.entries[i])
    }

    /// Ask for FIFO `f`'s head entry.
    fn prefetch_head(&self, f: FifoId) {
        let r = self.fifos.ring(f);
        if r.len > 0
            && let Some(e) = self.fifos.slab.get((r.off + r.head) as usize)
        {
            prefetch::lines(e, 1);
        }
    }
}
