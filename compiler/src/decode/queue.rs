//! The links between stages queued: each link passes one wavelet a
//! cycle, first come first served, and a wavelet that waits at one link
//! reaches every link after it later ([`queued`]). [`super::links`]
//! compares these arrivals with the emulated intake, and a queued step
//! ([`super::Decoder::queue_links`]) feeds its stages with them.
//!
//! The queue steps every wavelet over every link of its path in cycle
//! order, so its host time grows with the wavelet-hops of the step's
//! hand-offs: 58 M on the 1B, about 0.75 s on the 2-core machine.

use super::links::{Order, PORTS, link_at, link_id};
use super::overlap::Trip;
use wafer_emulator::{Arch, Pe};

/// Each trip's arrival at its consumer's edge with the links queued
/// ([`super::links`]'s comparison), trip `i` on a path in `orders[i]`.
pub(super) fn queued_arrivals(
    arch: &Arch,
    trips: &[Trip],
    left: &[Option<Vec<u64>>],
    orders: &[Order],
) -> Vec<Option<u64>> {
    queued(arch, trips, left, orders).arrive
}

/// A queued step's arrivals and where its trips waited.
pub(super) struct Queued {
    /// Per trip, its arrival at its consumer's edge ([`queued_arrivals`]).
    pub arrive: Vec<Option<u64>>,
    /// Per trip, the longest it waited to cross one link, and that link
    /// ([`link_id`]); `(0, 0)` where it never waited.
    pub worst_wait: Vec<(u32, u64)>,
}

/// [`queued_arrivals`], with where each trip waited longest.
///
/// A trip never leaves its wafer and a wafer's links are its own, so the
/// wafers queue apart, one after another on one wafer's links. Within a
/// cycle only the wavelets that reach one link together wait on each
/// other: a link reached by one passes it at once, and only the links
/// reached by several sort theirs.
pub(super) fn queued(
    arch: &Arch,
    trips: &[Trip],
    left: &[Option<Vec<u64>>],
    orders: &[Order],
) -> Queued {
    debug_assert_eq!(orders.len(), trips.len());
    let hop = arch.hop_latency as u64;
    let links = (arch.n_pes() * 4) as usize;
    let mut q = Queue {
        arch,
        trips,
        orders,
        on: vec![0; trips.len()],
        buckets: Vec::new(),
        free: vec![0; links],
        reached: vec![0; links],
        round: 0,
        out: Queued {
            arrive: (trips.iter()).map(|t| t.reached(left, hop)).collect(),
            worst_wait: vec![(0u32, 0u64); trips.len()],
        },
    };
    let mut by_wafer: Vec<u32> = (0..trips.len() as u32).collect();
    by_wafer.sort_by_key(|&i| trips[i as usize].wafer);
    let wafer = |i: &u32| trips[*i as usize].wafer;
    for trips in by_wafer.chunk_by(|a, b| wafer(a) == wafer(b)) {
        q.wafer(left, trips);
    }
    q.out
}

/// [`queued`] at work: the trips, where each is on its path, and one
/// wafer's links at a time.
struct Queue<'a> {
    arch: &'a Arch,
    trips: &'a [Trip],
    orders: &'a [Order],
    /// Per trip, the number on its path of the link it crosses next.
    on: Vec<u32>,
    /// Trips by the cycle they reach their next link, with that link
    /// (a wafer has at most 4 × `MAX_PES` = 2²⁴ links: a `u32`).
    buckets: Vec<Vec<(u32, u32)>>,
    /// Per link of the wafer ([`link_id`] less its wafer's first), the
    /// first cycle it is free.
    free: Vec<u64>,
    /// Per link, `2 × round` once a wavelet reached it in that round of
    /// the cycle loop, plus 1 once a second one did.
    reached: Vec<u32>,
    round: u32,
    out: Queued,
}

impl Queue<'_> {
    /// The trips `wafer` (indices into `trips`, all on one wafer) queued.
    fn wafer(&mut self, left: &[Option<Vec<u64>>], wafer: &[u32]) {
        let on_wafer = self.trips[wafer[0] as usize].wafer;
        let first = link_id(self.arch, on_wafer, Pe::new(0, 0), PORTS[0]);
        self.free.fill(0);
        self.buckets.clear();
        for &i in wafer {
            let t = &self.trips[i as usize];
            if let (Some(s), true) = (t.sent(left), t.hops() >= 2) {
                self.on[i as usize] = 0;
                let link = self.link(first, i, 0);
                self.put(s, i, link);
            }
        }
        let (mut many, mut members) = (Vec::new(), Vec::new());
        let mut now = 0;
        while now < self.buckets.len() {
            // (A zero hop latency puts a trip's next link in this cycle:
            // taken again until none is left.)
            let taken = std::mem::take(&mut self.buckets[now]);
            if taken.is_empty() {
                now += 1;
                continue;
            }
            let mark = self.next_round();
            for &(_, link) in &taken {
                let r = &mut self.reached[link as usize];
                *r = if *r & !1 == mark { mark | 1 } else { mark };
            }
            many.clear();
            for &(i, link) in &taken {
                let link = link as usize;
                if self.reached[link] & 1 == 0 {
                    self.cross(first, link, now as u64, &[i]);
                } else {
                    let t = &self.trips[i as usize];
                    many.push((link, t.from, t.wavelet, i));
                }
            }
            // Several on one link: first come first served, ties in the
            // order of the producer and the wavelet; the same wavelet's
            // trips (a multicast) cross together.
            many.sort_unstable();
            for group in many.chunk_by(|a, b| (a.0, a.1, a.2) == (b.0, b.1, b.2)) {
                members.clear();
                members.extend(group.iter().map(|g| g.3));
                self.cross(first, group[0].0, now as u64, &members);
            }
        }
    }

    /// One wavelet's trips `members` reach `link` at `now` and cross it
    /// when it is free: each goes on to its next link a hop later, or
    /// reaches its consumer's edge.
    fn cross(&mut self, first: u64, link: usize, now: u64, members: &[u32]) {
        let cross = now.max(self.free[link]);
        self.free[link] = cross + 1;
        let wait = (cross - now).min(u32::MAX as u64) as u32;
        let next = cross + self.arch.hop_latency as u64;
        for &i in members {
            let w = &mut self.out.worst_wait[i as usize];
            if wait > w.0 {
                *w = (wait, first + link as u64);
            }
            let on = self.on[i as usize] + 1;
            if on + 1 == self.trips[i as usize].hops() {
                self.out.arrive[i as usize] = Some(next);
            } else {
                self.on[i as usize] = on;
                let link = self.link(first, i, on);
                self.put(next, i, link);
            }
        }
    }

    /// The link numbered `on` on trip `i`'s path, less the wafer's first.
    fn link(&self, first: u64, i: u32, on: u32) -> u32 {
        let t = &self.trips[i as usize];
        let (pe, port) = link_at(t.src, t.dst, self.orders[i as usize], on);
        (link_id(self.arch, t.wafer, pe, port) - first) as u32
    }

    fn put(&mut self, cycle: u64, i: u32, link: u32) {
        if self.buckets.len() <= cycle as usize {
            self.buckets.resize_with(cycle as usize + 1, Vec::new);
        }
        self.buckets[cycle as usize].push((i, link));
    }

    /// The next round of the cycle loop, its mark in `reached`.
    fn next_round(&mut self) -> u32 {
        if self.round == u32::MAX / 2 {
            self.reached.fill(0);
            self.round = 0;
        }
        self.round += 1;
        2 * self.round
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue as first written: every cycle's crossings sorted
    /// together, every wafer in one loop. [`queued`] must give the same.
    fn queued_reference(
        arch: &Arch,
        trips: &[Trip],
        left: &[Option<Vec<u64>>],
        orders: &[Order],
    ) -> Queued {
        let hop = arch.hop_latency as u64;
        let sent: Vec<Option<u64>> = (trips.iter()).map(|t| t.sent(left)).collect();
        let hops = Trip::hops;
        let mut arrive: Vec<Option<u64>> = (trips.iter()).map(|t| t.reached(left, hop)).collect();
        let mut buckets: Vec<Vec<(u32, u32)>> = Vec::new();
        let put = |buckets: &mut Vec<Vec<(u32, u32)>>, t: u64, e: (u32, u32)| {
            if buckets.len() <= t as usize {
                buckets.resize_with(t as usize + 1, Vec::new);
            }
            buckets[t as usize].push(e);
        };
        for (i, t) in trips.iter().enumerate() {
            if let (Some(s), true) = (sent[i], hops(t) >= 2) {
                put(&mut buckets, s, (i as u32, 0));
            }
        }
        let wafers = trips.iter().map(|t| t.wafer + 1).max().unwrap_or(0) as u64;
        let mut free = vec![0u64; (wafers * arch.n_pes() * 4) as usize];
        let mut worst_wait = vec![(0u32, 0u64); trips.len()];
        let mut now = 0;
        while now < buckets.len() {
            let mut due: Vec<(u64, usize, u64, u32, u32)> = (std::mem::take(&mut buckets[now])
                .iter())
            .map(|&(i, h)| {
                let t = &trips[i as usize];
                let (pe, port) = link_at(t.src, t.dst, orders[i as usize], h);
                (link_id(arch, t.wafer, pe, port), t.from, t.wavelet, i, h)
            })
            .collect();
            if due.is_empty() {
                now += 1;
                continue;
            }
            due.sort_unstable();
            for group in due.chunk_by(|a, b| (a.0, a.1, a.2) == (b.0, b.1, b.2)) {
                let link = group[0].0 as usize;
                let cross = (now as u64).max(free[link]);
                free[link] = cross + 1;
                let wait = (cross - now as u64).min(u32::MAX as u64) as u32;
                for &(_, _, _, i, h) in group {
                    let w = &mut worst_wait[i as usize];
                    if wait > w.0 {
                        *w = (wait, link as u64);
                    }
                    let next = cross + hop;
                    if h + 2 == hops(&trips[i as usize]) {
                        arrive[i as usize] = Some(next);
                    } else {
                        put(&mut buckets, next, (i, h + 1));
                    }
                }
            }
        }
        Queued { arrive, worst_wait }
    }

    proptest::proptest! {
        /// The queue wafer by wafer, sorting only the links reached
        /// together, gives every trip the arrival and the worst wait of
        /// the queue that sorts every cycle's crossings of every wafer at
        /// once: on crowded small grids, with multicasts, producers that
        /// sent nothing, both orders and hop latencies of 0 to 2.
        #[test]
        fn the_queue_by_wafers_is_the_queue_of_the_whole_step(
            trips in proptest::collection::vec(
                (0usize..4, 0u64..5, 0u32..3, (0u32..9, 0u32..9), (0u32..9, 0u32..9), 1usize..3, proptest::bool::ANY),
                1..120,
            ),
            sends in proptest::collection::vec(proptest::collection::vec(0u64..30, 5), 4),
            silent in 0usize..5,
            hop in 0u32..3,
        ) {
            let mut arch = Arch::wse3();
            arch.hop_latency = hop;
            let (mut list, mut orders) = (Vec::new(), Vec::new());
            for (from, wavelet, wafer, src, dst, copies, y_first) in trips {
                // A multicast: the same wavelet to `copies` entry PEs.
                for c in 0..copies as u32 {
                    list.push(Trip {
                        from,
                        wavelet,
                        wafer,
                        src: Pe::new(src.0, src.1),
                        dst: Pe::new((dst.0 + 3 * c) % 9, dst.1),
                        to: 9,
                        at: wavelet as u32,
                        into: (0, 0),
                    });
                    orders.push(if y_first { Order::YFirst } else { Order::XFirst });
                }
            }
            let mut left: Vec<Option<Vec<u64>>> = sends.into_iter().map(Some).collect();
            if silent < left.len() {
                left[silent] = None;
            }
            let got = queued(&arch, &list, &left, &orders);
            let want = queued_reference(&arch, &list, &left, &orders);
            proptest::prop_assert_eq!(got.arrive, want.arrive);
            proptest::prop_assert_eq!(got.worst_wait, want.worst_wait);
        }
    }
}
