//! A route plan for an overlapped step's hand-offs: each pair of exit and
//! entry PEs takes the dimension order whose links its wavelets would find
//! less crowded, so that streams that would meet on one order's links can
//! pass each other on the other's ([`super::links::Paths::Spread`]).
//!
//! One order for all of a pair's wavelets: a route is fixed per color,
//! not chosen per wavelet. The pairs are planned greedily in the order
//! their first wavelets leave (then by place, so the plan is the same
//! whatever the thread count): each counts, for X then Y and for Y then
//! X, the wavelets already planned onto each link of its path in the
//! window of cycles it would cross it in, on the free-route timing, and
//! takes the order with fewer; a tie goes to X then Y. This is a
//! heuristic, not an optimum, and the queue ([`super::links`]) is what
//! says what it gives. A multicast's wavelet is counted once per pair
//! it goes to, even where its paths share a link.

use super::links::{Order, link_at, link_id};
use super::overlap::Trip;
use std::collections::HashMap;
use wafer_emulator::Arch;

/// Cycles counted together on a link. A link passes one wavelet a cycle,
/// so what crowds it is many wavelets in a few cycles; windows count the
/// cycles near each other together, which the queue then moves by a few
/// anyway. (Not tuned: the built-in's queued step was measured at 16, 32
/// and 64, see the README.)
const WINDOW: u64 = 32;

/// Each trip's order (trips whose producer sent nothing, or that cross
/// one link only, have no choice to make: X then Y), given each stage's
/// output elements' send cycles `left`.
pub(super) fn spread(arch: &Arch, trips: &[Trip], left: &[Option<Vec<u64>>]) -> Vec<Order> {
    let hop = arch.hop_latency as u64;
    let hops = Trip::hops;
    let sent = |t: &Trip| t.sent(left);
    let mut orders = vec![Order::XFirst; trips.len()];
    let mut choosing: Vec<usize> = (0..trips.len())
        .filter(|&i| sent(&trips[i]).is_some() && hops(&trips[i]) >= 2)
        .collect();
    let pair = |i: usize| {
        let t = &trips[i];
        (t.wafer, t.src.y, t.src.x, t.dst.y, t.dst.x)
    };
    choosing.sort_by_key(|&i| pair(i));
    let mut pairs: Vec<(u64, &[usize])> = choosing
        .chunk_by(|&a, &b| pair(a) == pair(b))
        .map(|g| {
            let first = g.iter().filter_map(|&i| sent(&trips[i])).min();
            (first.expect("chosen trips were sent"), g)
        })
        .collect();
    pairs.sort_by_key(|&(first, g)| (first, pair(g[0])));
    // Wavelets planned onto each link in each window, keyed by the link
    // in the high half and the window in the low (a link's number is
    // under 2^32 below about 1,200 wafers, and a window's below 2^32 for
    // any step short enough to emulate). Sized for every crossing up
    // front: growing it would hold two tables at once.
    let crossings: usize = choosing.iter().map(|&i| hops(&trips[i]) as usize - 1).sum();
    let mut load: HashMap<u64, u32> = HashMap::with_capacity(crossings);
    // The links a trip's queue is up to: every one but the last, into
    // its consumer's entry PE, whose intake the emulation has.
    let links = |t: &Trip, order: Order| {
        let s = sent(t).expect("chosen trips were sent");
        let (src, dst, wafer) = (t.src, t.dst, t.wafer);
        (0..hops(t) - 1).map(move |h| {
            let (pe, port) = link_at(src, dst, order, h);
            let window = ((s + h as u64 * hop) / WINDOW).min(u32::MAX as u64);
            link_id(arch, wafer, pe, port) << 32 | window
        })
    };
    for (_, group) in pairs {
        let cost = |order: Order| -> u64 {
            (group.iter())
                .flat_map(|&i| links(&trips[i], order))
                .map(|k| load.get(&k).copied().unwrap_or(0) as u64)
                .sum()
        };
        let order = if cost(Order::YFirst) < cost(Order::XFirst) {
            Order::YFirst
        } else {
            Order::XFirst
        };
        for &i in group {
            orders[i] = order;
            for k in links(&trips[i], order) {
                *load.entry(k).or_default() += 1;
            }
        }
    }
    orders
}

#[cfg(test)]
mod tests {
    use super::super::queue::queued_arrivals;
    use super::*;
    use wafer_emulator::Pe;

    fn trip(from: usize, at: u32, src: (u32, u32), dst: (u32, u32)) -> Trip {
        Trip {
            from,
            wavelet: at as u64,
            wafer: 0,
            src: Pe::new(src.0, src.1),
            dst: Pe::new(dst.0, dst.1),
            to: 9,
            at,
            into: (from as u32, at),
        }
    }

    /// Two streams of 40 wavelets whose X-then-Y paths share a row: the
    /// second pair takes Y then X and passes the first, so queued, every
    /// wavelet arrives no later than on either order for all, and the
    /// last sooner than on X then Y.
    #[test]
    fn crossing_streams_are_spread_onto_both_orders() {
        let arch = Arch::wse3();
        let n = 40;
        let mut trips: Vec<Trip> = (0..n).map(|k| trip(0, k, (0, 5), (12, 9))).collect();
        trips.extend((0..n).map(|k| trip(1, k, (2, 5), (14, 0))));
        let sends: Vec<u64> = (0..n as u64).collect();
        let left = vec![Some(sends.clone()), Some(sends)];
        let orders = spread(&arch, &trips, &left);
        assert!(orders[..n as usize].iter().all(|o| *o == Order::XFirst));
        assert!(orders[n as usize..].iter().all(|o| *o == Order::YFirst));
        let planned = queued_arrivals(&arch, &trips, &left, &orders);
        let last = |a: &[Option<u64>]| a.iter().map(|x| x.expect("sent")).max();
        for order in Order::BOTH {
            let fixed = queued_arrivals(&arch, &trips, &left, &vec![order; trips.len()]);
            assert!(planned.iter().zip(&fixed).all(|(p, f)| p <= f));
            if order == Order::XFirst {
                assert!(last(&planned) < last(&fixed), "the shared row queued them");
            }
        }
    }

    /// A pair takes one order for all its wavelets, and the plan does
    /// not depend on the order the trips come in.
    #[test]
    fn a_pair_keeps_one_order_and_the_plan_its_inputs_order() {
        let arch = Arch::wse3();
        let mut trips = Vec::new();
        for k in 0..30 {
            trips.push(trip(0, k, (0, 0), (20, 20)));
            trips.push(trip(1, k, (0, 1), (20, 21)));
            trips.push(trip(2, k, (1, 0), (21, 20)));
        }
        let left = vec![Some((0..30).collect::<Vec<u64>>()); 3];
        let orders = spread(&arch, &trips, &left);
        for from in 0..3 {
            let mine: Vec<Order> = (trips.iter().zip(&orders))
                .filter(|(t, _)| t.from == from)
                .map(|(_, o)| *o)
                .collect();
            assert!(mine.iter().all(|o| *o == mine[0]), "pair {from}");
        }
        assert!(
            orders.contains(&Order::YFirst),
            "three pairs side by side spread"
        );
        let mut reversed = trips.clone();
        reversed.reverse();
        let mut again = spread(&arch, &reversed, &left);
        again.reverse();
        assert_eq!(again, orders);
    }
}
