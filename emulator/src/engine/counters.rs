//! Each PE's counters while a run steps it: one row per PE, so a step
//! touches one PE's counters in one place (and a future parallel step can
//! hand each PE its own row). The format's [`PeStats`] stores them a
//! counter at a time, as the stats file and the viewer want them; a run
//! converts once, at its end.

use crate::stats::PeStats;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct PeCounters {
    pub(super) scalar_cycles: u64,
    pub(super) vector_cycles: u64,
    pub(super) switch_cycles: u64,
    pub(super) stall_in_cycles: u64,
    pub(super) stall_out_cycles: u64,
    pub(super) stall_issue_cycles: u64,
    pub(super) router_stall_cycles: u64,
    pub(super) tasks: u64,
    /// Out of each router port: N, S, E, W, ramp.
    pub(super) wavelets_out: [u64; 5],
    pub(super) wavelets_from_core: u64,
    pub(super) sram_used: u32,
}

/// The rows as the format's per-counter arrays.
pub(super) fn to_stats(rows: &[PeCounters]) -> PeStats {
    let mut s = PeStats::zeroed(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let PeCounters {
            scalar_cycles,
            vector_cycles,
            switch_cycles,
            stall_in_cycles,
            stall_out_cycles,
            stall_issue_cycles,
            router_stall_cycles,
            tasks,
            wavelets_out,
            wavelets_from_core,
            sram_used,
        } = *r;
        s.scalar_cycles[i] = scalar_cycles;
        s.vector_cycles[i] = vector_cycles;
        s.switch_cycles[i] = switch_cycles;
        s.stall_in_cycles[i] = stall_in_cycles;
        s.stall_out_cycles[i] = stall_out_cycles;
        s.stall_issue_cycles[i] = stall_issue_cycles;
        s.router_stall_cycles[i] = router_stall_cycles;
        s.tasks[i] = tasks;
        for (d, w) in wavelets_out.iter().enumerate() {
            s.wavelets_out[d][i] = *w;
        }
        s.wavelets_from_core[i] = wavelets_from_core;
        s.sram_used[i] = sram_used;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field lands in its own array at its own PE.
    #[test]
    fn rows_become_the_formats_arrays() {
        let row = |k: u64| PeCounters {
            scalar_cycles: k,
            vector_cycles: k + 1,
            switch_cycles: k + 2,
            stall_in_cycles: k + 3,
            stall_out_cycles: k + 4,
            stall_issue_cycles: k + 5,
            router_stall_cycles: k + 6,
            tasks: k + 7,
            wavelets_out: [k + 8, k + 9, k + 10, k + 11, k + 12],
            wavelets_from_core: k + 13,
            sram_used: k as u32 + 14,
        };
        let s = to_stats(&[row(0), row(100)]);
        for (i, k) in [(0usize, 0u64), (1, 100)] {
            let got: Vec<u64> = s.counters().iter().map(|(_, c)| c[i]).collect();
            assert_eq!(got, (k..k + 14).collect::<Vec<_>>(), "PE {i}");
            assert_eq!(s.sram_used[i], k as u32 + 14);
        }
    }
}
