//! How an overlapped step's hand-offs load the fabric's links: a check of
//! what the arrival model takes on trust ([`super::overlap`]), that the
//! routes between stages are free of other traffic.
//!
//! The arrival model has each element leave its producer's exit PE at the
//! cycle the emulation says and cross one link a hop's latency later each
//! hop, alone on its route. The hand-off routes are not planned link by
//! link (each hand-off gets a color, [`crate::route`]), so this takes each
//! trip on a dimension-ordered path, X then Y or Y then X, and counts, in
//! the model's own timing, the link-cycles that two or more wavelets would
//! claim at once. A link carries one wavelet a cycle, so each wavelet past
//! the first in such a link-cycle would wait at least a cycle: where there
//! are none, the free-route assumption holds on those paths; where there
//! are, the arrivals are optimistic, and this says by how much traffic and
//! where. A wavelet that several consumers take (a multicast) crosses a
//! link its paths share once. Only the hand-offs' wavelets are counted,
//! not the kernels' own traffic on the links the routes pass through, and
//! a held stream is counted as if it flowed freely from its producer.
//!
//! Then it queues them ([`queue`]): each link passes one wavelet a cycle,
//! first come first served, a wait moving the wavelet at every link after,
//! and it compares when each consumer stream's wavelets would so reach
//! its edge with when its emulated run took them in. A wavelet that would
//! come later is a delay the step leaves out; how many, and the furthest,
//! is an estimate of the free routes' error, not a corrected step (the
//! stages are not run again with the queued arrivals).

use super::overlap::Trip;
use super::queue::queued_arrivals;
use wafer_emulator::{Arch, Pe, Port};

/// Which way a trip's path goes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Along the source's row, then along the destination's column.
    XFirst,
    /// Along the source's column, then along the destination's row.
    YFirst,
}

impl Order {
    pub const BOTH: [Order; 2] = [Order::XFirst, Order::YFirst];

    pub fn name(self) -> &'static str {
        match self {
            Order::XFirst => "X then Y",
            Order::YFirst => "Y then X",
        }
    }
}

/// The paths a queued step's hand-offs take ([`super::Decoder::queue_links`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paths {
    /// Every trip in one dimension order.
    Ordered(Order),
    /// Each pair of exit and entry PEs in the order its wavelets find
    /// less crowded ([`super::spread`]), planned once per decoder.
    Spread,
}

impl Paths {
    pub fn name(self) -> &'static str {
        match self {
            Paths::Ordered(o) => o.name(),
            Paths::Spread => "spread",
        }
    }

    /// The paths in a sentence, for a figure's source.
    pub fn describe(self) -> String {
        match self {
            Paths::Ordered(o) => format!("{} paths", o.name()),
            Paths::Spread => "paths spread over both dimension orders (each pair of exit and \
                entry PEs on the one its wavelets find less crowded, planned on the first step)"
                .into(),
        }
    }
}

/// A link-cycle claimed by several wavelets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hotspot {
    /// The wafer of the system (0 on one wafer).
    pub wafer: u32,
    /// The link: out of `pe` through `port`.
    pub pe: Pe,
    pub port: Port,
    /// The cycle of the step.
    pub cycle: u64,
    pub wavelets: u64,
}

/// How one step's hand-offs load the links on paths of one [`Order`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkLoad {
    pub order: Order,
    /// Wavelets handed off between stages (each once, however many
    /// consumers take it).
    pub wavelets: u64,
    /// Their link crossings, and the distinct links crossed.
    pub crossings: u64,
    pub links: u64,
    /// Link-cycles claimed by two or more wavelets.
    pub contended: u64,
    /// The wavelets past the first in those: each would wait a cycle or
    /// more on a real link.
    pub waiting: u64,
    /// Of `waiting`, those in link-cycles whose wavelets all enter their
    /// consumers at one PE: they converge on its host stream, which takes
    /// one a cycle anyway, so most of that wait the emulated intake
    /// already has.
    pub converging: u64,
    /// The longest a wavelet would wait to cross one link, the link's
    /// wavelets taken first come first served at one a cycle, each
    /// arriving in the model's timing (the waits at one link do not move
    /// its wavelets' times at the next, so this is each link alone).
    pub longest_wait: u64,
    /// The link-cycle claimed by the most wavelets bound for more than
    /// one entry PE.
    pub worst: Option<Hotspot>,
    /// The links queued ([`queue`]): how many wavelets would reach their
    /// consumer's edge after the cycle its emulated run took them in, and
    /// the one furthest after (its consumer and by how many cycles).
    pub late: u64,
    pub latest: Option<(usize, u64)>,
}

pub(super) const PORTS: [Port; 4] = [Port::N, Port::S, Port::E, Port::W];

/// A link's number: its wafer, its source PE (row-major on the wafer's
/// grid) and its port among [`PORTS`].
pub(super) fn link_id(arch: &Arch, wafer: u32, pe: Pe, port: Port) -> u64 {
    let d = PORTS
        .iter()
        .position(|p| *p == port)
        .expect("a link's port") as u64;
    let on_wafer = pe.y as u64 * arch.grid_cols as u64 + pe.x as u64;
    ((wafer as u64 * arch.n_pes() + on_wafer) << 2) | d
}

fn link_of(arch: &Arch, id: u64) -> (u32, Pe, Port) {
    let (pe, port) = (id >> 2, PORTS[(id & 3) as usize]);
    let (wafer, on) = (pe / arch.n_pes(), pe % arch.n_pes());
    let cols = arch.grid_cols as u64;
    let at = Pe::new((on % cols) as u32, (on / cols) as u32);
    (wafer as u32, at, port)
}

/// Each link of the path from `src` to `dst` in `order`, with its hop
/// number (0 for the link out of `src`).
fn path(src: Pe, dst: Pe, order: Order, mut each: impl FnMut(Pe, Port, u64)) {
    for h in 0..src.x.abs_diff(dst.x) + src.y.abs_diff(dst.y) {
        let (pe, port) = link_at(src, dst, order, h);
        each(pe, port, h as u64);
    }
}

/// A crossing's key: its link, its cycle, and the PE its wavelet enters
/// its consumer at ([`MANY`] for a multicast's link shared by paths to
/// several), from the most significant bits.
const LINK_SHIFT: u32 = 72;
const CYCLE_SHIFT: u32 = 32;
const MANY: u32 = u32::MAX;

fn cycle_of(key: u128) -> u64 {
    (key >> CYCLE_SHIFT) as u64 & ((1 << (LINK_SHIFT - CYCLE_SHIFT)) - 1)
}

/// How the `trips` (sorted, a wavelet's together) load the links on paths
/// in `order`, each wavelet leaving when `left` says (per stage, per
/// output element, absolute cycles of the step; a trip whose producer
/// has none is left out) and crossing a link a hop's latency later each
/// hop; `taken` says when the emulated consumer took a trip's wavelet in
/// (absolute), for [`queue`].
pub(super) fn load(
    arch: &Arch,
    trips: &[Trip],
    left: &[Option<Vec<u64>>],
    taken: &dyn Fn(&Trip) -> Option<u64>,
    order: Order,
) -> LinkLoad {
    let hop = arch.hop_latency as u64;
    let cols = arch.grid_cols;
    let (mut keys, mut mine): (Vec<u128>, Vec<u128>) = (Vec::new(), Vec::new());
    let mut wavelets = 0;
    for group in trips.chunk_by(|a, b| (a.from, a.wavelet) == (b.from, b.wavelet)) {
        let t = &group[0];
        let Some(sent) = t.sent(left) else {
            continue;
        };
        wavelets += 1;
        mine.clear();
        for trip in group {
            let dst = trip.dst.y * cols + trip.dst.x;
            path(trip.src, trip.dst, order, |pe, port, h| {
                let id = link_id(arch, trip.wafer, pe, port) as u128;
                let cycle = (sent + h * hop) as u128;
                mine.push(id << LINK_SHIFT | cycle << CYCLE_SHIFT | dst as u128);
            });
        }
        // A link its paths share it crosses once, for all their PEs.
        mine.sort_unstable();
        mine.dedup_by(|later, kept| {
            let same = *later >> CYCLE_SHIFT == *kept >> CYCLE_SHIFT;
            if same && later != kept {
                *kept |= MANY as u128;
            }
            same
        });
        keys.extend_from_slice(&mine);
    }
    keys.sort_unstable();
    let mut load = LinkLoad {
        order,
        wavelets,
        crossings: keys.len() as u64,
        links: 0,
        contended: 0,
        waiting: 0,
        converging: 0,
        longest_wait: 0,
        worst: None,
        late: 0,
        latest: None,
    };
    (load.late, load.latest) = queue(arch, trips, left, taken, order);
    let mut worst: Option<(u128, u64)> = None;
    for on_link in keys.chunk_by(|a, b| a >> LINK_SHIFT == b >> LINK_SHIFT) {
        load.links += 1;
        // The link passes one a cycle, first come first served.
        let mut free = 0;
        for run in on_link.chunk_by(|a, b| a >> CYCLE_SHIFT == b >> CYCLE_SHIFT) {
            let cycle = cycle_of(run[0]);
            let n = run.len() as u64;
            free = free.max(cycle) + n;
            load.longest_wait = load.longest_wait.max(free - 1 - cycle);
            if n < 2 {
                continue;
            }
            load.contended += 1;
            load.waiting += n - 1;
            let dst = run[0] as u32;
            if dst != MANY && run.iter().all(|k| *k as u32 == dst) {
                load.converging += n - 1;
            } else if worst.is_none_or(|w| n > w.1) {
                worst = Some((run[0], n));
            }
        }
    }
    load.worst = worst.map(|(key, n)| {
        let (wafer, pe, port) = link_of(arch, (key >> LINK_SHIFT) as u64);
        Hotspot {
            wafer,
            pe,
            port,
            cycle: cycle_of(key),
            wavelets: n,
        }
    });
    load
}

/// How long one hand-off's wavelets were fed later than free routes
/// would bring them, in a step settled with its links queued: where the
/// routes between stages cost the step time ([`super::Step::queue_waits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandoffWait {
    /// The producing and consuming stages.
    pub from: usize,
    pub to: usize,
    /// Its trips (a wavelet and an entry PE each), and those fed later.
    pub trips: u64,
    pub delayed: u64,
    /// The most cycles one trip was fed later than on a free route.
    pub longest: u64,
    /// The link where its trips lost the most cycles.
    pub link: Option<WaitLink>,
}

/// A link where a hand-off's trips waited: out of `pe` through `port` on
/// wafer `wafer`, and the cycles lost there, summed over the trips that
/// waited longest at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitLink {
    pub wafer: u32,
    pub pe: Pe,
    pub port: Port,
    pub cycles: u64,
}

/// Per hand-off with a delayed trip, its [`HandoffWait`], longest first:
/// `delay` per trip is what it was fed later than a free route, `worst`
/// where it waited longest ([`super::queue::Queued::worst_wait`]).
pub(super) fn handoff_waits(
    arch: &Arch,
    trips: &[Trip],
    delay: &[u64],
    worst: &[(u32, u64)],
) -> Vec<HandoffWait> {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<(usize, usize), HandoffWait> = BTreeMap::new();
    let mut at_link: BTreeMap<(usize, usize, u64), u64> = BTreeMap::new();
    for (k, t) in trips.iter().enumerate() {
        let w = by.entry((t.from, t.to)).or_insert(HandoffWait {
            from: t.from,
            to: t.to,
            trips: 0,
            delayed: 0,
            longest: 0,
            link: None,
        });
        w.trips += 1;
        let d = delay.get(k).copied().unwrap_or(0);
        if d > 0 {
            w.delayed += 1;
            w.longest = w.longest.max(d);
        }
        if let Some(&(wait, link)) = worst.get(k).filter(|w| w.0 > 0) {
            *at_link.entry((t.from, t.to, link)).or_default() += wait as u64;
        }
    }
    for ((from, to, link), cycles) in at_link {
        let w = by.get_mut(&(from, to)).expect("counted above");
        if w.link.is_none_or(|l| cycles > l.cycles) {
            let (wafer, pe, port) = link_of(arch, link);
            w.link = Some(WaitLink {
                wafer,
                pe,
                port,
                cycles,
            });
        }
    }
    let mut waits: Vec<HandoffWait> = by.into_values().filter(|w| w.delayed > 0).collect();
    waits.sort_by_key(|w| (std::cmp::Reverse(w.longest), w.from, w.to));
    waits
}

/// Where the `h`-th link of the path from `src` to `dst` in `order`
/// leaves from, and its port (`h` below the path's hops).
pub(super) fn link_at(src: Pe, dst: Pe, order: Order, h: u32) -> (Pe, Port) {
    let (dx, dy) = (src.x.abs_diff(dst.x), src.y.abs_diff(dst.y));
    let toward = |from: u32, to: u32, k: u32| if to > from { from + k } else { from - k };
    let east_west = if dst.x > src.x { Port::E } else { Port::W };
    let south_north = if dst.y > src.y { Port::S } else { Port::N };
    match order {
        Order::XFirst if h < dx => (Pe::new(toward(src.x, dst.x, h), src.y), east_west),
        Order::XFirst => (Pe::new(dst.x, toward(src.y, dst.y, h - dx)), south_north),
        Order::YFirst if h < dy => (Pe::new(src.x, toward(src.y, dst.y, h)), south_north),
        Order::YFirst => (Pe::new(toward(src.x, dst.x, h - dy), dst.y), east_west),
    }
}

/// The step's hand-offs with the links queued: each link passes one
/// wavelet a cycle, first come first served (ties in the order of the
/// link, the producer, the wavelet), and a wavelet crosses its next link
/// a hop after it crossed the last, so a wait moves it at every link after
/// (a multicast crosses a link its paths share once, together). The last
/// link of each trip, into the consumer's entry PE, is left to the
/// emulation: the consumer's host stream takes it, one a cycle.
///
/// Per consumer stream, the `k`-th wavelet to reach the edge so is
/// compared with the `k`-th the emulated consumer took in (`taken`): if it
/// comes no later, the intake could go on as it did; if later, the
/// stream's `k`-th intake would be that much later at least. Returns how
/// many would, and the furthest (its consumer, the cycles). An estimate: the consumers are not
/// run again with these arrivals, and the kernels' own traffic is not on
/// the links. A trip whose wavelet carries elements into several of its
/// consumer's wavelets is taken by the first.
fn queue(
    arch: &Arch,
    trips: &[Trip],
    left: &[Option<Vec<u64>>],
    taken: &dyn Fn(&Trip) -> Option<u64>,
    order: Order,
) -> (u64, Option<(usize, u64)>) {
    let arrive = queued_arrivals(arch, trips, left, &vec![order; trips.len()]);
    // Per consumer stream, in order: the k-th wavelet to reach the edge
    // on queued links against the k-th the emulated run took in. A
    // stream's intake takes its wavelets in its own order, which a queue
    // need not keep; compared sorted, only what comes too late counts,
    // not what comes in another order.
    let mut by_stream: std::collections::BTreeMap<(usize, u32), (Vec<u64>, Vec<u64>)> =
        Default::default();
    for (i, t) in trips.iter().enumerate() {
        if let (Some(q), Some(e)) = (arrive[i], taken(t)) {
            let s = by_stream.entry((t.to, t.into.0)).or_default();
            s.0.push(q);
            s.1.push(e);
        }
    }
    let (mut late, mut latest) = (0, None::<(usize, u64)>);
    for ((to, _), (mut q, mut e)) in by_stream {
        q.sort_unstable();
        e.sort_unstable();
        for (q, e) in q.into_iter().zip(e) {
            if q > e {
                late += 1;
                if latest.is_none_or(|l| q - e > l.1) {
                    latest = Some((to, q - e));
                }
            }
        }
    }
    (late, latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trip(from: usize, wavelet: u64, src: (u32, u32), dst: (u32, u32)) -> Trip {
        Trip {
            from,
            wavelet,
            wafer: 0,
            src: Pe::new(src.0, src.1),
            dst: Pe::new(dst.0, dst.1),
            to: 9,
            at: wavelet as u32,
            into: (0, 0),
        }
    }

    fn links(src: (u32, u32), dst: (u32, u32), order: Order) -> Vec<(u32, u32, Port, u64)> {
        let mut v = Vec::new();
        let (s, d) = (Pe::new(src.0, src.1), Pe::new(dst.0, dst.1));
        path(s, d, order, |pe, port, h| v.push((pe.x, pe.y, port, h)));
        v
    }

    #[test]
    fn a_path_turns_once_in_its_order() {
        use Port::*;
        let xy = links((1, 1), (3, 0), Order::XFirst);
        assert_eq!(xy, [(1, 1, E, 0), (2, 1, E, 1), (3, 1, N, 2)]);
        let yx = links((3, 2), (1, 4), Order::YFirst);
        assert_eq!(yx, [(3, 2, S, 0), (3, 3, S, 1), (3, 4, W, 2), (2, 4, W, 3)]);
        assert!(links((5, 5), (5, 5), Order::XFirst).is_empty());
    }

    #[test]
    fn link_numbers_round_trip() {
        let arch = Arch::wse3();
        for (wafer, pe, port) in [
            (0, Pe::new(0, 0), Port::N),
            (2, Pe::new(arch.grid_cols - 1, arch.grid_rows - 1), Port::W),
            (1, Pe::new(17, 400), Port::S),
        ] {
            assert_eq!(
                link_of(&arch, link_id(&arch, wafer, pe, port)),
                (wafer, pe, port)
            );
        }
    }

    /// No consumer ran (so no wavelet is late).
    fn never(_: &Trip) -> Option<u64> {
        None
    }

    /// Each trip's wavelet taken in by its consumer `slack` cycles after
    /// the arrival model has it reach the edge (sent when `sends` says).
    fn model(sends: &[u64], slack: u64) -> impl Fn(&Trip) -> Option<u64> + '_ {
        move |t: &Trip| Some(sends[t.from] + t.hops() as u64 - 1 + slack)
    }

    /// Each stage's wavelets leave at the given cycles (wavelet `k` is
    /// element `k`).
    fn left(times: &[&[u64]]) -> Vec<Option<Vec<u64>>> {
        times.iter().map(|t| Some(t.to_vec())).collect()
    }

    #[test]
    fn wavelets_meeting_on_a_link_in_one_cycle_are_counted() {
        let arch = Arch::wse3();
        // Stage 0's wavelet from (0, 0) and stage 1's from (0, 2), both
        // east to column 4, then to rows 0 and 2: apart, no link shared.
        let apart = [trip(0, 0, (0, 0), (4, 0)), trip(1, 0, (0, 2), (4, 2))];
        let l = load(&arch, &apart, &left(&[&[10], &[10]]), &never, Order::XFirst);
        assert_eq!((l.wavelets, l.crossings, l.links), (2, 8, 8));
        assert_eq!((l.contended, l.waiting, l.longest_wait), (0, 0, 0));
        assert_eq!(l.worst, None);
        // Y then X, the second goes north to row 0 first (2 hops) and
        // then east along row 0 two cycles behind the first: no meeting.
        let up = [trip(0, 0, (0, 0), (4, 0)), trip(1, 0, (0, 2), (4, 0))];
        let l = load(&arch, &up, &left(&[&[10], &[10]]), &never, Order::YFirst);
        assert_eq!((l.contended, l.waiting), (0, 0));
        // Sent two cycles earlier, it meets the first on each of row 0's
        // four links, the same cycle: all four bound for one PE.
        let l = load(&arch, &up, &left(&[&[10], &[8]]), &never, Order::YFirst);
        assert_eq!((l.contended, l.waiting, l.converging), (4, 4, 4));
        assert_eq!(l.longest_wait, 1);
        assert_eq!(l.worst, None);
        // Bound for different PEs (the second on to (4, 1) by Y then X
        // from (0, 0) is the same row 0 links), the meeting is other
        // traffic, and the worst link-cycle is the first, out of (0, 0).
        let split = [trip(0, 0, (0, 0), (4, 0)), trip(1, 0, (0, 0), (4, 1))];
        let l = load(&arch, &split, &left(&[&[10], &[10]]), &never, Order::XFirst);
        assert_eq!((l.contended, l.waiting, l.converging), (4, 4, 0));
        let w = l.worst.expect("a link-cycle claimed twice");
        assert_eq!(
            (w.pe, w.port, w.cycle, w.wavelets),
            (Pe::new(0, 0), Port::E, 10, 2)
        );
    }

    #[test]
    fn a_multicast_crosses_a_shared_link_once_and_queues_count() {
        let arch = Arch::wse3();
        // One wavelet to (3, 0) and (3, 2): X then Y, the row's three
        // links are shared, then two south.
        let multi = [trip(0, 0, (0, 0), (3, 0)), trip(0, 0, (0, 0), (3, 2))];
        let l = load(&arch, &multi, &left(&[&[5]]), &never, Order::XFirst);
        assert_eq!((l.wavelets, l.crossings, l.links, l.waiting), (1, 5, 5, 0));
        // Three stages' wavelets on one link in one cycle, to three PEs
        // down column 1: two wait there, the last two cycles, and the two
        // going on south meet again on the next link.
        let three: Vec<Trip> = (0..3).map(|s| trip(s, 0, (0, 0), (1, s as u32))).collect();
        let l = load(
            &arch,
            &three,
            &left(&[&[7], &[7], &[7]]),
            &never,
            Order::XFirst,
        );
        assert_eq!((l.contended, l.waiting, l.longest_wait), (2, 3, 2));
        assert_eq!(l.worst.map(|w| w.wavelets), Some(3));
        // A producer with no times is left out.
        let l = load(&arch, &three, &[None, None, None], &never, Order::XFirst);
        assert_eq!((l.wavelets, l.crossings), (0, 0));
    }

    fn to(mut t: Trip, stage: usize) -> Trip {
        t.to = stage;
        t
    }

    /// Every path is a chain of links from its source to its
    /// destination, each leaving from where the one before arrived.
    #[test]
    fn a_path_is_a_chain_of_links() {
        let arch = Arch::wse3();
        for order in Order::BOTH {
            for (src, dst) in [
                ((1, 1), (3, 0)),
                ((3, 2), (1, 4)),
                ((0, 5), (0, 0)),
                ((7, 0), (2, 9)),
            ] {
                let mut at = Pe::new(src.0, src.1);
                for (x, y, port, _) in links(src, dst, order) {
                    assert_eq!(Pe::new(x, y), at, "{order:?} {src:?} {dst:?}");
                    at = at.neighbour(port, arch.grid_cols, arch.grid_rows).unwrap();
                }
                assert_eq!(at, Pe::new(dst.0, dst.1), "{order:?} {src:?} {dst:?}");
            }
        }
    }

    #[test]
    fn a_handoffs_wait_is_named_with_the_link_it_waited_at() {
        let arch = Arch::wse3();
        // As below: stage 1's wavelet waits a cycle for stage 0's at
        // (1, 0)'s east link, and reaches its consumer a cycle late.
        let trips = [
            to(trip(0, 0, (0, 0), (4, 0)), 4),
            to(trip(1, 0, (1, 0), (4, 1)), 5),
        ];
        let l = left(&[&[10], &[11]]);
        let q = crate::decode::queue::queued(&arch, &trips, &l, &[Order::XFirst; 2]);
        let at = link_id(&arch, 0, Pe::new(1, 0), Port::E);
        assert_eq!(q.worst_wait, [(0, 0), (1, at)]);
        let delay: Vec<u64> = (trips.iter().zip(&q.arrive))
            .map(|(t, a)| a.unwrap() - t.reached(&l, arch.hop_latency as u64).unwrap())
            .collect();
        assert_eq!(delay, [0, 1]);
        let waits = handoff_waits(&arch, &trips, &delay, &q.worst_wait);
        assert_eq!(
            waits,
            [HandoffWait {
                from: 1,
                to: 5,
                trips: 1,
                delayed: 1,
                longest: 1,
                link: Some(WaitLink {
                    wafer: 0,
                    pe: Pe::new(1, 0),
                    port: Port::E,
                    cycles: 1,
                }),
            }]
        );
        // Nothing delayed: no hand-off named.
        assert!(handoff_waits(&arch, &trips, &[0, 0], &[(0, 0); 2]).is_empty());
    }

    #[test]
    fn queued_links_make_a_wavelet_late_and_every_link_after() {
        let arch = Arch::wse3();
        // Stage 0's wavelet east along row 0 from (0, 0), stage 1's from
        // (1, 0) a cycle later: both want (1, 0)'s east link at cycle 11.
        // Stage 0's goes first (the producer's order), so stage 1's
        // crosses it at 12 and every link after a cycle late: it reaches
        // its consumer (stage 5) at 15, not the model's 11 + 3 hops, when
        // the consumer took it in.
        let trips = [
            to(trip(0, 0, (0, 0), (4, 0)), 4),
            to(trip(1, 0, (1, 0), (4, 1)), 5),
        ];
        let sends = [10, 11];
        let l = load(
            &arch,
            &trips,
            &left(&[&[10], &[11]]),
            &model(&sends, 0),
            Order::XFirst,
        );
        assert_eq!((l.late, l.latest), (1, Some((5, 1))));
        // Its consumer took it in no earlier than 15 anyway: not late.
        let l = load(
            &arch,
            &trips,
            &left(&[&[10], &[11]]),
            &model(&sends, 1),
            Order::XFirst,
        );
        assert_eq!((l.late, l.latest), (0, None));
        // Sent a cycle later, it follows stage 0's a cycle behind.
        let sends = [10, 12];
        let l = load(
            &arch,
            &trips,
            &left(&[&[10], &[12]]),
            &model(&sends, 0),
            Order::XFirst,
        );
        assert_eq!((l.late, l.latest), (0, None));
        // A multicast's trips share their links: none waits for another.
        let multi = [trip(0, 0, (0, 0), (3, 0)), trip(0, 0, (0, 0), (3, 2))];
        let l = load(
            &arch,
            &multi,
            &left(&[&[5]]),
            &model(&[5], 0),
            Order::XFirst,
        );
        assert_eq!((l.late, l.latest), (0, None));
        // Two wavelets of one stream, apart on the links, that its run took
        // in the other order: each came when one was taken, so neither is
        // late (compared one by one, the second would be, by 2).
        let pair = [trip(0, 0, (0, 0), (3, 0)), trip(1, 0, (0, 1), (3, 1))];
        let swapped = |t: &Trip| Some(if t.from == 0 { 14 } else { 12 });
        let l = load(
            &arch,
            &pair,
            &left(&[&[10], &[12]]),
            &swapped,
            Order::XFirst,
        );
        assert_eq!((l.late, l.latest), (0, None));
        let early = |t: &Trip| Some(if t.from == 0 { 12 } else { 13 });
        let l = load(&arch, &pair, &left(&[&[10], &[12]]), &early, Order::XFirst);
        assert_eq!((l.late, l.latest), (1, Some((9, 1))));
        // Three on one link, each to its own PE two hops on: the third
        // waits two cycles there (the last link, into the consumer, is
        // the emulation's).
        let three: Vec<Trip> = (0..3)
            .map(|s| to(trip(s, 0, (0, 0), (1, s as u32 + 1)), 3))
            .collect();
        let sends = [7, 7, 7];
        let l = load(
            &arch,
            &three,
            &left(&[&[7], &[7], &[7]]),
            &model(&sends, 0),
            Order::XFirst,
        );
        assert_eq!((l.late, l.latest), (2, Some((3, 2))));
    }
}
