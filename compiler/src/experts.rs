//! Which experts a mixture of experts runs for a token.
//!
//! A functional step runs the experts the router kernel picked on the
//! wafer. A timing-only step has no values, so no picks: it runs those a
//! seeded routing picks, and every report that uses one says so (never a
//! silent guess). The cost models' prediction of a step uses the same
//! seeded picks, so predicted and emulated steps run the same stages.

use crate::ir::{Graph, Op};
use crate::stage::Stage;

/// The seed a timing-only step and the cost models use unless told
/// otherwise.
pub const DEFAULT_SEED: u64 = 0;

/// `k` distinct experts of `experts` for the router `route` (its IR
/// value) at position `pos`, drawn uniformly from `seed`: a partial
/// Fisher–Yates shuffle on a SplitMix64 stream. In increasing order.
pub fn seeded(seed: u64, pos: u32, route: usize, experts: usize, k: usize) -> Vec<usize> {
    let mut state = seed ^ (pos as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (route as u64) << 32;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut all: Vec<usize> = (0..experts).collect();
    for j in 0..k.min(experts) {
        let pick = j + (next() % (experts - j) as u64) as usize;
        all.swap(j, pick);
    }
    let mut picked = all[..k.min(experts)].to_vec();
    picked.sort_unstable();
    picked
}

/// The experts a route value picked, from its `[e_0 … e_{k−1}, w …]`;
/// `None` where a pick is not an expert (the router kernel's "none",
/// index `experts`, where the logits held NaN or −∞) or is picked twice.
pub fn from_route(route: &[f32], experts: usize) -> Option<Vec<usize>> {
    let k = route.len() / 2;
    let mut picked = Vec::with_capacity(k);
    for v in &route[..k] {
        // NaN fails the first test.
        if !(*v >= 0.0 && v.fract() == 0.0 && (*v as usize) < experts) {
            return None;
        }
        if picked.contains(&(*v as usize)) {
            return None;
        }
        picked.push(*v as usize);
    }
    picked.sort_unstable();
    Some(picked)
}

/// The experts and picks a token of route value `%r` of `g` chooses among.
pub fn shape(g: &Graph, r: usize) -> (usize, usize) {
    match g.insts[r].op {
        Op::Route { logits, k, .. } => (g.insts[logits].len, k),
        _ => (0, 0),
    }
}

/// [`runs`] with the seeded picks of `seed` at `pos`.
pub fn seeded_runs(g: &Graph, stages: &[Stage], seed: u64, pos: u32) -> Vec<bool> {
    runs(stages, |r| {
        let (experts, k) = shape(g, r);
        seeded(seed, pos, r, experts, k)
    })
}

/// Whether each stage runs when the experts of route value `%r` are
/// `picks(r)`: every stage but the experts not picked.
pub fn runs(stages: &[Stage], mut picks: impl FnMut(usize) -> Vec<usize>) -> Vec<bool> {
    let mut cache: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    stages
        .iter()
        .map(|s| match s.when {
            None => true,
            Some(p) => cache
                .entry(p.route)
                .or_insert_with(|| picks(p.route))
                .contains(&p.expert),
        })
        .collect()
}
