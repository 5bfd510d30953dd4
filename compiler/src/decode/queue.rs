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
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
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
    queued_keeping(arch, trips, left, orders, None)
}

/// [`queued`], each wafer's queue found in `kept` where a wafer laid out
/// as it is sent the same, shifted in time, and kept there where not.
pub(super) fn queued_kept(
    arch: &Arch,
    trips: &[Trip],
    left: &[Option<Vec<u64>>],
    orders: &[Order],
    kept: &mut Kept,
) -> Queued {
    queued_keeping(arch, trips, left, orders, Some(kept))
}

fn queued_keeping(
    arch: &Arch,
    trips: &[Trip],
    left: &[Option<Vec<u64>>],
    orders: &[Order],
    mut kept: Option<&mut Kept>,
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
        base: 0,
        out: Queued {
            arrive: (trips.iter()).map(|t| t.reached(left, hop)).collect(),
            worst_wait: vec![(0u32, 0u64); trips.len()],
        },
    };
    let mut by_wafer: Vec<u32> = (0..trips.len() as u32).collect();
    by_wafer.sort_by_key(|&i| trips[i as usize].wafer);
    let wafer = |i: &u32| trips[*i as usize].wafer;
    let chunks: Vec<&[u32]> = by_wafer.chunk_by(|a, b| wafer(a) == wafer(b)).collect();
    if let Some(k) = kept.as_mut() {
        k.lay_out(trips, &chunks);
    }
    for chunk in chunks {
        let on_wafer = wafer(&chunk[0]);
        let first = link_id(arch, on_wafer, Pe::new(0, 0), PORTS[0]);
        // Its queue is shift-invariant: kept from its first send.
        let sent: Vec<Option<u64>> = (chunk.iter())
            .map(|&i| trips[i as usize].sent(left))
            .collect();
        let Some(base) = sent.iter().flatten().min().copied() else {
            // Nothing sent: no trip crosses a link.
            continue;
        };
        let key = kept.as_ref().map(|k| {
            let class = k.class(on_wafer);
            let since: Vec<Option<u64>> = sent.iter().map(|s| s.map(|s| s - base)).collect();
            let ways: Vec<u8> = (chunk.iter()).map(|&i| orders[i as usize] as u8).collect();
            postcard::to_allocvec(&(class, since, ways)).expect("a key serialises")
        });
        if let (Some(k), Some(key)) = (kept.as_mut(), key.as_ref())
            && let Some(found) = k.find(key, chunk.len())
        {
            for (j, &i) in chunk.iter().enumerate() {
                if let Some(arrive) = found.arrive(j) {
                    q.out.arrive[i as usize] = Some(base + arrive);
                    q.out.worst_wait[i as usize] = found.worst_wait(j, first);
                }
            }
            continue;
        }
        q.wafer(chunk, &sent, base, first);
        if let (Some(k), Some(key)) = (kept.as_mut(), key) {
            let made = WaferQueue::of(chunk, &q.out, base, first, |j| {
                sent[j].is_some() && trips[chunk[j] as usize].hops() >= 2
            });
            if let Some(made) = made {
                k.keep(key, made);
            }
        }
    }
    q.out
}

/// Wafers' queues kept by what they depend on: the wafer's trips (up to
/// which stages they join, so wafers laid out alike share theirs), when
/// each was sent from the wafer's first send, and the order of each
/// one's path. A queue is the same shifted in time (each link free from
/// cycle 0, ties broken by producer and wavelet), so a wafer sent as
/// another was, or as it was in a round or a step before, finds its
/// queue here; and a process that queued a wafer can send it to another
/// ([`super::Decoder::share`]). A queue is kept while the steps use it.
#[derive(Default)]
pub(super) struct Kept {
    /// Per wafer, its layout's class, for the trips (by count) they
    /// were found for.
    classes: Option<(usize, HashMap<u32, u32>)>,
    queues: HashMap<Vec<u8>, (WaferQueue, u64)>,
    step: u64,
    /// While a step is shared, the keys of the queues this process made.
    made: Option<Vec<Vec<u8>>>,
    /// Wafers queued, and wafers whose queue was found kept, since the
    /// decoder was made.
    pub counts: QueueCounts,
}

/// How many wafer queues were made, and how many found kept ([`Kept`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    pub queued: usize,
    pub found: usize,
}

impl QueueCounts {
    /// The counts since `before`.
    pub fn since(self, before: QueueCounts) -> QueueCounts {
        QueueCounts {
            queued: self.queued - before.queued,
            found: self.found - before.found,
        }
    }
}

impl Kept {
    /// A new step: queues neither it nor the step before used are dropped.
    pub fn next_step(&mut self) {
        self.step += 1;
        let last = self.step - 1;
        self.queues.retain(|_, (_, used)| *used >= last);
    }

    /// Start keeping the keys of the queues made, for [`Kept::take_made`].
    pub fn start_making(&mut self) {
        self.made = Some(Vec::new());
    }

    /// The keys of the queues made since [`Kept::start_making`].
    pub fn take_made(&mut self) -> Vec<Vec<u8>> {
        self.made.take().unwrap_or_default()
    }

    /// The queue kept by `key`, as it is (not counted as found).
    pub fn get(&self, key: &[u8]) -> Option<&WaferQueue> {
        self.queues.get(key).map(|(q, _)| q)
    }

    /// Another process's queue, by its key.
    pub fn insert(&mut self, key: Vec<u8>, queue: WaferQueue) {
        self.queues.entry(key).or_insert((queue, self.step));
    }

    /// The queue kept by `key`, for a wafer of `trips` trips (one sent by
    /// another process for another count is not it).
    fn find(&mut self, key: &[u8], trips: usize) -> Option<&WaferQueue> {
        let step = self.step;
        let (q, used) = (self.queues.get_mut(key))
            .filter(|(q, _)| q.arrive.len() == trips && q.worst.len() == trips)?;
        *used = step;
        self.counts.found += 1;
        Some(q)
    }

    fn keep(&mut self, key: Vec<u8>, queue: WaferQueue) {
        self.counts.queued += 1;
        if let Some(made) = self.made.as_mut() {
            made.push(key.clone());
        }
        self.queues.insert(key, (queue, self.step));
    }

    /// The class of `wafer`'s layout ([`Kept::lay_out`]).
    fn class(&self, wafer: u32) -> u32 {
        let (_, classes) = self.classes.as_ref().expect("laid out first");
        classes[&wafer]
    }

    /// Sorts the wafers (`chunks`: each one's trips, in order) into
    /// classes of the same layout: the same trips, their stages shifted
    /// by one count, in the same order.
    fn lay_out(&mut self, trips: &[Trip], chunks: &[&[u32]]) {
        if self
            .classes
            .as_ref()
            .is_some_and(|(n, _)| *n == trips.len())
        {
            return;
        }
        // One stage of the wafer: the others are counted from it.
        let first = |c: &[u32]| {
            (c.iter())
                .map(|&i| trips[i as usize].from)
                .min()
                .unwrap_or(0)
        };
        let firsts: Vec<usize> = chunks.iter().map(|c| first(c)).collect();
        let shifted = |k: usize, j: usize| {
            let (t, f) = (trips[chunks[k][j] as usize], firsts[k]);
            (
                t.from - f,
                t.wavelet,
                t.src,
                t.dst,
                t.to.wrapping_sub(f),
                t.at,
                t.into,
            )
        };
        let same = |a: usize, b: usize| {
            let n = chunks[a].len();
            n == chunks[b].len() && (0..n).all(|j| shifted(a, j) == shifted(b, j))
        };
        let mut by_hash: HashMap<u64, Vec<(u32, usize)>> = HashMap::new();
        let mut classes = HashMap::new();
        for (k, c) in chunks.iter().enumerate() {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (0..c.len()).for_each(|j| shifted(k, j).hash(&mut h));
            let like = by_hash.entry(h.finish()).or_default();
            let class = match like.iter().find(|(_, other)| same(k, *other)) {
                Some((class, _)) => *class,
                None => {
                    like.push((k as u32, k));
                    k as u32
                }
            };
            classes.insert(trips[c[0] as usize].wafer, class);
        }
        self.classes = Some((trips.len(), classes));
    }
}

/// One wafer's queue from its first send: per trip of the wafer, in the
/// order [`queued`] takes them, its arrival plus one (0: it crosses no
/// link or was not sent, and its free-route arrival stands), and its
/// longest wait with that link less the wafer's first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct WaferQueue {
    arrive: Vec<u32>,
    worst: Vec<(u32, u32)>,
}

impl WaferQueue {
    /// The queue of the wafer `chunk` as `out` has it, from `base`
    /// (`None` where an arrival is 2³² cycles or more from it); `queued`
    /// says which of its trips crossed links.
    fn of(
        chunk: &[u32],
        out: &Queued,
        base: u64,
        first: u64,
        queued: impl Fn(usize) -> bool,
    ) -> Option<WaferQueue> {
        let mut q = WaferQueue {
            arrive: Vec::with_capacity(chunk.len()),
            worst: Vec::with_capacity(chunk.len()),
        };
        for (j, &i) in chunk.iter().enumerate() {
            let (wait, link) = out.worst_wait[i as usize];
            let arrive = match (queued(j), out.arrive[i as usize]) {
                (true, Some(a)) => u32::try_from(a - base + 1).ok()?,
                _ => 0,
            };
            q.arrive.push(arrive);
            q.worst.push(match wait {
                0 => (0, 0),
                _ => (wait, (link - first) as u32),
            });
        }
        Some(q)
    }

    /// Trip `j`'s arrival from the wafer's first send, if it queued.
    fn arrive(&self, j: usize) -> Option<u64> {
        self.arrive[j].checked_sub(1).map(u64::from)
    }

    /// Trip `j`'s longest wait and its link, on the wafer whose first
    /// link is `first`.
    fn worst_wait(&self, j: usize, first: u64) -> (u32, u64) {
        match self.worst[j] {
            (0, _) => (0, 0),
            (wait, link) => (wait, first + link as u64),
        }
    }
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
    /// The wafer's first send: its cycle loop counts from it.
    base: u64,
    out: Queued,
}

impl Queue<'_> {
    /// The trips `wafer` (indices into `trips`, all on one wafer) queued.
    /// Its trips were sent at `sent` (in `wafer`'s order), the first at
    /// `base`; `first` is the wafer's first link.
    fn wafer(&mut self, wafer: &[u32], sent: &[Option<u64>], base: u64, first: u64) {
        self.base = base;
        self.free.fill(0);
        self.buckets.clear();
        for (&i, s) in wafer.iter().zip(sent) {
            if let (Some(s), true) = (s, self.trips[i as usize].hops() >= 2) {
                self.on[i as usize] = 0;
                let link = self.link(first, i, 0);
                self.put(s - base, i, link);
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
                self.out.arrive[i as usize] = Some(self.base + next);
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

        /// A wafer's queue kept is the queue: a wafer laid out as another
        /// and sent as it was, later, finds that one's queue, as does the
        /// whole step sent again later; a wafer sent otherwise, by one
        /// cycle of one producer, queues anew. Each time every trip's
        /// arrival and worst wait are the queue's without keeping.
        #[test]
        fn a_kept_queue_is_the_queue_of_the_wafer_sent_so(
            trips in proptest::collection::vec(
                (0usize..4, 0u64..5, (0u32..9, 0u32..9), (0u32..9, 0u32..9), proptest::bool::ANY),
                1..80,
            ),
            sends in proptest::collection::vec(proptest::collection::vec(0u64..30, 5), 4),
            later in (0u64..40, 1u64..40),
            moved in (0usize..4, 0usize..5),
        ) {
            let arch = Arch::wse3();
            // Wafer 0's trips, and wafer 1's: the same from its stages 4
            // to 8, listed after them.
            let (mut list, mut orders) = (Vec::new(), Vec::new());
            for wafer in 0..2u32 {
                let shift = 4 * wafer as usize;
                for &(from, wavelet, src, dst, y_first) in &trips {
                    list.push(Trip {
                        from: from + shift,
                        wavelet,
                        wafer,
                        src: Pe::new(src.0, src.1),
                        dst: Pe::new(dst.0, dst.1),
                        to: 8 + shift,
                        at: wavelet as u32,
                        into: (0, 0),
                    });
                    orders.push(if y_first { Order::YFirst } else { Order::XFirst });
                }
            }
            let sent = |wafers: [u64; 2]| -> Vec<Option<Vec<u64>>> {
                (wafers.iter())
                    .flat_map(|d| sends.iter().map(move |s| Some(s.iter().map(|t| t + d).collect())))
                    .collect()
            };
            let mut kept = Kept::default();
            let check = |left: &[Option<Vec<u64>>], kept: &mut Kept| {
                let got = queued_kept(&arch, &list, left, &orders, kept);
                let want = queued(&arch, &list, left, &orders);
                (got.arrive == want.arrive && got.worst_wait == want.worst_wait, kept.counts)
            };
            // Wafer 1 sends `later.0` cycles after wafer 0: it finds
            // wafer 0's queue.
            let (same, counts) = check(&sent([0, later.0]), &mut kept);
            proptest::prop_assert!(same);
            proptest::prop_assert_eq!(counts, QueueCounts { queued: 1, found: 1 });
            // The step again, later: both wafers find it.
            let (same, counts) = check(&sent([later.1, later.1 + later.0]), &mut kept);
            proptest::prop_assert!(same);
            proptest::prop_assert_eq!(counts, QueueCounts { queued: 1, found: 3 });
            // One producer of wafer 1 sends one wavelet a cycle later (the
            // wafer's first send kept where it was): it queues anew.
            let mut left = sent([0, later.0]);
            let sends: Vec<u64> = (trips.iter())
                .map(|t| left[4 + t.0].as_ref().expect("every producer sends")[t.1 as usize])
                .collect();
            let first = sends.iter().min().copied();
            let send = left[4 + moved.0].as_ref().expect("every producer sends")[moved.1];
            let used = trips.iter().any(|t| (t.0, t.1) == (moved.0, moved.1 as u64));
            // The producers' elements sent first: moving the only one
            // would move the wafer's first send with it.
            let firsts: std::collections::BTreeSet<_> = (trips.iter().zip(&sends))
                .filter(|(_, s)| Some(**s) == first)
                .map(|(t, _)| (t.0, t.1))
                .collect();
            let firsts = firsts.len();
            if used && (Some(send) != first || firsts > 1) {
                left[4 + moved.0].as_mut().expect("every producer sends")[moved.1] += 1;
                let (same, counts) = check(&left, &mut kept);
                proptest::prop_assert!(same);
                proptest::prop_assert_eq!(counts, QueueCounts { queued: 2, found: 4 });
            }
        }
    }
}
