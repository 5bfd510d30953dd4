//! Who is awake ([`Wake`]) and when sleepers wake ([`Timers`]): the
//! event-driven engines step only these.

use super::RunError;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Which routers and cores are awake. A router sleeps while all its
/// buffers are empty, a core while it has no op, no task running or ready
/// and empty queues: stepping them would do nothing and count nothing.
/// A push into a buffer or queue wakes its owner from the next cycle (what
/// is pushed is never visible in the cycle it is pushed), so skipping the
/// sleepers changes no result, cycle or statistic.
pub(super) struct Wake {
    /// The first unit `awake` covers (a band's: `machine/band.rs`).
    pub(super) base: u32,
    /// Per unit from `base`: whether it is awake.
    pub(super) awake: Vec<bool>,
    /// Routers (`2·pe`) and cores (`2·pe + 1`) to step this cycle.
    pub(super) list: Vec<u32>,
    pub(super) woken: Vec<u32>,
    /// Last cycle's list, emptied: next cycle's `keep` (no allocation per cycle).
    pub(super) spare: Vec<u32>,
    /// Cores sleeping through a jump, by the cycle they resume at.
    pub(super) timers: Timers,
    /// A fault a jump ran into, returned at the cycle it happens.
    pub(super) faults: BTreeMap<usize, RunError>,
    /// Cores asleep in an issue stall: the reference counts those cycles
    /// as activity (the main thread retries), so the run cannot end.
    pub(super) issue_sleepers: u32,
    /// [`sort_awake`]'s buffer, kept between cycles.
    pub(super) tail: Vec<u32>,
}

/// Sort `list` ascending, fast for what a cycle's list is: last cycle's
/// units still awake, in order, then the few woken and due, in any order.
/// The sorted prefix is merged with the sorted rest (on a reduction over
/// 146,000 PEs a plain sort of every cycle's list was 6.5 % of the host
/// time). Any input comes out sorted; `tail` is scratch.
pub(super) fn sort_awake(list: &mut [u32], tail: &mut Vec<u32>) {
    let run = 1 + list.windows(2).take_while(|p| p[0] <= p[1]).count();
    if run >= list.len() {
        return;
    }
    tail.clear();
    tail.extend_from_slice(&list[run..]);
    tail.sort_unstable();
    // Merge from the back: the largest of both runs into the last free slot.
    let (mut i, mut j, mut k) = (run, tail.len(), list.len());
    while j > 0 {
        k -= 1;
        if i > 0 && list[i - 1] > tail[j - 1] {
            i -= 1;
            list[k] = list[i];
        } else {
            j -= 1;
            list[k] = tail[j];
        }
    }
}

impl Wake {
    /// Wake unit `u`: whether it was asleep.
    pub(super) fn rouse(&mut self, u: u32) -> bool {
        let a = &mut self.awake[(u - self.base) as usize];
        !std::mem::replace(a, true)
    }

    pub(super) fn sleep(&mut self, u: u32) {
        self.awake[(u - self.base) as usize] = false;
    }
}

/// Wake-ups by cycle: a wheel of buckets for the next [`Timers::WHEEL`]
/// cycles (most timers are a few cycles ahead: a wavelet landing, a short
/// op) and a heap for the rest, moved onto the wheel as their cycle nears.
/// A wake-up for a cycle already drained is due at the next drain, as a
/// heap would have it; each drain gives its ids in ascending order.
pub(super) struct Timers {
    pub(super) wheel: Vec<Vec<u32>>,
    /// Ids on the wheel.
    pub(super) on_wheel: usize,
    pub(super) far: BinaryHeap<Reverse<(u64, u32)>>,
    /// The last cycle drained (`due`); the wheel holds cycles after it.
    pub(super) drained: u64,
    pub(super) out: Vec<u32>,
}

impl Timers {
    const WHEEL: u64 = 256;

    pub(super) fn new() -> Timers {
        Timers {
            wheel: (0..Self::WHEEL).map(|_| Vec::new()).collect(),
            on_wheel: 0,
            far: BinaryHeap::new(),
            drained: 0,
            out: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, t: u64, id: u32) {
        let t = t.max(self.drained + 1);
        if t < self.drained + Self::WHEEL {
            self.wheel[(t % Self::WHEEL) as usize].push(id);
            self.on_wheel += 1;
        } else {
            self.far.push(Reverse((t, id)));
        }
    }

    /// The earliest cycle with a wake-up.
    pub(super) fn first(&self) -> Option<u64> {
        if self.on_wheel > 0 {
            return (self.drained + 1..self.drained + Self::WHEEL)
                .find(|t| !self.wheel[(t % Self::WHEEL) as usize].is_empty());
        }
        self.far.peek().map(|Reverse((t, _))| *t)
    }

    /// About how many ids are due at cycle `now`: those on the wheel,
    /// and one for the heap if its first is due (a weight for sharing a
    /// cycle out, not a count anything depends on).
    pub(super) fn due_at(&self, now: u64) -> usize {
        let wheel = match now > self.drained && now < self.drained + Self::WHEEL {
            true => self.wheel[(now % Self::WHEEL) as usize].len(),
            false => 0,
        };
        let far = self.far.peek().is_some_and(|Reverse((t, _))| *t <= now);
        wheel + far as usize
    }

    /// The ids due at cycle `now` (no wake-up is ever skipped over: the
    /// engine steps at `first()` at the latest).
    pub(super) fn due(&mut self, now: u64) -> std::vec::Drain<'_, u32> {
        debug_assert!(now > self.drained || now == 0);
        debug_assert!(self.first().is_none_or(|t| t >= now));
        self.drained = now.max(self.drained);
        while let Some(&Reverse((t, id))) = self.far.peek() {
            if t >= now + Self::WHEEL {
                break;
            }
            self.far.pop();
            self.wheel[(t.max(now) % Self::WHEEL) as usize].push(id);
            self.on_wheel += 1;
        }
        let bucket = &mut self.wheel[(now % Self::WHEEL) as usize];
        self.on_wheel -= bucket.len();
        std::mem::swap(bucket, &mut self.out);
        self.out.sort_unstable();
        self.out.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the list, it comes out as a plain sort gives it: a
        /// sorted run then anything, or anything at all.
        #[test]
        fn awake_lists_sort_as_a_plain_sort_does(
            mut run in proptest::collection::vec(0u32..1000, 0..60),
            rest in proptest::collection::vec(0u32..1000, 0..30),
        ) {
            run.sort_unstable();
            for list in [[run.clone(), rest.clone()].concat(), [rest.clone(), run].concat()] {
                let mut want = list.clone();
                want.sort_unstable();
                let (mut got, mut tail) = (list, vec![7; 3]);
                sort_awake(&mut got, &mut tail);
                prop_assert_eq!(got, want);
            }
        }
    }

    /// Wake-ups come due at their cycle in ascending id order, whether
    /// they were on the wheel or far ahead on the heap; one pushed for a
    /// cycle already drained is due at the next drain.
    #[test]
    fn wake_ups_come_due_in_order_near_far_and_late() {
        let mut t = Timers::new();
        assert_eq!(t.first(), None);
        t.push(3, 7);
        t.push(3, 2);
        t.push(1000, 5);
        t.push(2, 9);
        assert_eq!(t.first(), Some(2));
        assert!(t.due(1).next().is_none());
        assert_eq!((t.due_at(2), t.due_at(3)), (1, 2));
        assert_eq!(t.due(2).collect::<Vec<_>>(), [9]);
        assert_eq!((t.due_at(2), t.due_at(3), t.due_at(4)), (0, 2, 0));
        assert_eq!(t.due(3).collect::<Vec<_>>(), [2, 7]);
        assert_eq!(t.due_at(3), 0, "drained");
        assert_eq!(t.due_at(1000), 1, "the far one counts once its cycle comes");
        assert_eq!(t.first(), Some(1000), "the far one, from the heap");
        assert_eq!(t.due(1000).collect::<Vec<_>>(), [5]);
        t.push(500, 1);
        assert_eq!(t.first(), Some(1001), "a late push is due next");
        assert_eq!(t.due(1001).collect::<Vec<_>>(), [1]);
        t.push(2000, 4);
        assert!(t.due(1800).next().is_none());
        assert_eq!(t.first(), Some(2000), "moved onto the wheel, still there");
        assert_eq!(t.due(2000).collect::<Vec<_>>(), [4]);
        assert_eq!(t.first(), None);
    }
}
