//! Cost models' answers kept: a kernel's predicted cycles are a pure
//! function of its spec and the machine's per-PE latencies and rates,
//! and the compiler's region search asks for the same specs on every
//! rectangle it tries (`wafer compile llama-3.2-1b`: 6,000 MeshGEMV costs
//! of 1,458 distinct specs, half its time before they were kept;
//! `llama-3.1-8b`: 1,409 tiled GEMV costs of 488, and 13,997 vector ones
//! of 358).
//!
//! A kernel keys its costs by every field of its spec that the cost
//! reads (all but the seed: the weights' values, which no timing depends
//! on), destructuring the spec so that a field added to it is a compile
//! error until its key says whether the cost reads it; and by the whole
//! [`Arch`] but its grid size, which no cost model reads (a kernel's
//! rectangle is its own; only the generators' checks read the grid).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use wafer_emulator::Arch;

/// One kernel's kept costs, per machine (its grid size cleared): a few
/// machines at most in one process, so a list.
pub(crate) struct Costed<K> {
    table: Mutex<Vec<(Arch, HashMap<K, u64>)>>,
}

impl<K: Hash + Eq> Costed<K> {
    /// Costs kept per machine before its table starts again: a few MB,
    /// far more than one compile's search asks for.
    const MOST: usize = 1 << 16;

    pub(crate) const fn new() -> Costed<K> {
        Costed {
            table: Mutex::new(Vec::new()),
        }
    }

    /// The cost of `key` on `arch`: kept, or `cost`'s (then kept).
    pub(crate) fn get_or(&self, key: K, arch: &Arch, cost: impl FnOnce() -> u64) -> u64 {
        let machine = Arch {
            grid_cols: 0,
            grid_rows: 0,
            ..arch.clone()
        };
        let kept = {
            let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
            (table.iter())
                .find(|(a, _)| *a == machine)
                .and_then(|(_, costs)| costs.get(&key).copied())
        };
        if let Some(c) = kept {
            return c;
        }
        // Computed without the lock: the search's threads cost their own.
        let c = cost();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let at = match table.iter().position(|(a, _)| *a == machine) {
            Some(at) => at,
            None => {
                table.push((machine, HashMap::new()));
                table.len() - 1
            }
        };
        let costs = &mut table[at].1;
        if costs.len() >= Self::MOST {
            costs.clear();
        }
        costs.insert(key, c);
        c
    }
}

/// The check each kernel's kept costs are held to.
#[cfg(test)]
pub(crate) mod check {
    use std::collections::BTreeSet;
    use std::fmt::Debug;
    use wafer_emulator::Arch;

    /// Asks `kept` for every spec on four machines (`wse3`, `wse3` with
    /// slower hops, `wse3` on a smaller grid, `wse2`), twice, with
    /// another seed the second time (`kept(spec, seed, arch)`), and
    /// checks each answer against `computed`: in an order where a key
    /// that left out a field the cost reads, or a machine's latency,
    /// would answer with another spec's cost. Returns how many distinct
    /// costs it saw, for the caller to check that its specs move the cost.
    pub(crate) fn kept_costs_are_computed<S: Debug>(
        specs: &[S],
        kept: impl Fn(&S, u64, &Arch) -> u64,
        computed: impl Fn(&S, &Arch) -> u64,
    ) -> usize {
        let wse3 = Arch::wse3();
        let slow_hops = Arch {
            hop_latency: wse3.hop_latency + 3,
            ..wse3.clone()
        };
        let small_grid = wse3.clone().with_grid(16, 16).expect("within wse3");
        let machines = [wse3, slow_hops, small_grid, Arch::wse2()];
        let mut distinct = BTreeSet::new();
        for seed in 0..2 {
            for arch in &machines {
                for s in specs {
                    let want = computed(s, arch);
                    assert_eq!(kept(s, seed, arch), want, "{s:?} on {}", arch.name);
                    distinct.insert(want);
                }
            }
        }
        distinct.len()
    }
}
