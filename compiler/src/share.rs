//! Work shared among processes (the CLI's MPI ranks, behind its `mpi`
//! feature): split between them, run at once, every process getting every
//! result — the parts of a compile ([`spread`]: a system's wafers, the
//! predictions `--wafers auto` compares) and a timing-only decode step's
//! distinct stage runs (overlapped, its wafers' stages:
//! `decode/shared.rs`).
//!
//! **A step.**
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
use rayon::prelude::*;
use serde::de::DeserializeOwned;
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

/// Jobs split between the processes of `ex`: each runs those [`assign`]
/// gives it (by `work`, side by side on its threads) and every process
/// gets every result, in job order. Alone, the jobs simply run. The
/// results travel in postcard; an `Err` names the rank whose results did
/// not decode (a bug, or ranks of different builds).
pub fn spread<T>(
    ex: &dyn Exchange,
    work: &[u64],
    run: impl Fn(usize) -> T + Sync,
) -> Result<Vec<T>, String>
where
    T: Serialize + DeserializeOwned + Send,
{
    if ex.ranks() == 1 {
        return Ok((0..work.len()).into_par_iter().map(&run).collect());
    }
    let owner = assign(work, ex.ranks());
    let mine: Vec<u32> = (0..work.len() as u32)
        .filter(|&i| owner[i as usize] == ex.rank())
        .collect();
    let done: Vec<(u32, T)> = mine.into_par_iter().map(|i| (i, run(i as usize))).collect();
    let bytes = postcard::to_stdvec(&done).map_err(|e| format!("rank {}: {e}", ex.rank()))?;
    drop(done);
    let mut out: Vec<Option<T>> = (0..work.len()).map(|_| None).collect();
    for (rank, b) in ex.all_gather(bytes).into_iter().enumerate() {
        let theirs: Vec<(u32, T)> =
            postcard::from_bytes(&b).map_err(|e| format!("rank {rank}'s results: {e}"))?;
        for (i, t) in theirs {
            if owner.get(i as usize) != Some(&rank) {
                return Err(format!("rank {rank} sent job {i}, which is not its own"));
            }
            out[i as usize] = Some(t);
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, t)| t.ok_or_else(|| format!("rank {} sent no result for job {i}", owner[i])))
        .collect()
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
