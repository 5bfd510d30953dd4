//! A timing-only decode step shared among processes (the CLI's MPI ranks,
//! behind its `mpi` feature): the distinct stage runs of a step are split
//! between them, run at once, and every process gets every result.
//!
//! A timing-only run depends only on its program less the weights and its
//! inputs' known values (`engine::timing_fingerprint`), and in timing-only
//! mode what a stage makes is unknown, so every stage's inputs — hence its
//! fingerprint — are known before any stage runs: the token and position
//! as given, everything a stage makes unknown. Each process plans the same
//! step, runs the distinct fingerprints [`assign`] gives it, and exchanges
//! the results ([`Exchange::all_gather`]); the step itself then runs as on
//! one process, finding every stage's result among them. A stage whose
//! planned fingerprint turns out not to be its real one (a stage that made
//! a known value) is simply run where the step needs it, so the results are
//! one process's whatever the plan (tested against one process).

use crate::decode::PeTime;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How processes working on one step reach each other.
pub trait Exchange: std::fmt::Debug + Send + Sync {
    /// This process's index, `0..ranks()`.
    fn rank(&self) -> usize;
    fn ranks(&self) -> usize;
    /// Every process's `mine`, in rank order (each process calls it with
    /// its own, at the same point).
    fn all_gather(&self, mine: Vec<u8>) -> Vec<Vec<u8>>;
}

/// One process alone (what a step without sharing is).
#[derive(Debug)]
pub struct Alone;

impl Exchange for Alone {
    fn rank(&self) -> usize {
        0
    }
    fn ranks(&self) -> usize {
        1
    }
    fn all_gather(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        vec![mine]
    }
}

/// Which process runs each of the step's distinct runs: the largest first
/// (by `work`, an estimate of its emulation's cost), each to the process
/// with the least so far (ties: the lower rank). Every process computes
/// the same assignment.
pub fn assign(work: &[u64], ranks: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..work.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(work[i]), i));
    let mut load = vec![0u64; ranks.max(1)];
    let mut owner = vec![0; work.len()];
    for i in order {
        let r = (0..load.len())
            .min_by_key(|&r| (load[r], r))
            .expect("at least one rank");
        owner[i] = r;
        load[r] += work[i].max(1);
    }
    owner
}

/// One run's results as they travel between processes.
#[derive(Serialize, Deserialize)]
pub(crate) struct Shared {
    /// The run's index in the step's list of distinct runs.
    pub run: u32,
    pub cycles: u64,
    pub time: (u64, u64, u64),
    pub outputs: BTreeMap<String, Vec<f32>>,
    /// Per-PE statistics, when the decoder keeps them.
    pub stats: Option<wafer_emulator::stats::Stats>,
}

impl Shared {
    pub fn time(&self) -> PeTime {
        PeTime {
            compute: self.time.0,
            fabric: self.time.1,
            idle: self.time.2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest run goes first to rank 0, each next to the least
    /// loaded; one rank takes everything.
    #[test]
    fn runs_go_to_the_least_loaded_rank() {
        assert_eq!(assign(&[5, 9, 4, 4], 2), [1, 0, 1, 0]);
        assert_eq!(assign(&[5, 9, 4, 4], 1), [0, 0, 0, 0]);
        assert_eq!(assign(&[], 3), Vec::<usize>::new());
    }
}
