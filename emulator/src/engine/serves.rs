//! When one run is another's: a run made with some arrivals and
//! departures is, exactly, the run that later arrivals and departures
//! would make, as long as none is later than what the run did anyway.
//!
//! Why it holds, from the cycle semantics (engine/mod.rs):
//! * A host input wavelet `k` enters at the first cycle, no earlier than
//!   its arrival nor than the stream's period after wavelet `k − 1`
//!   entered, in which its entry buffer has room. Say a run entered it at
//!   `e_k` after an arrival `a_k`, and another run is asked for an arrival
//!   `b_k` with `a_k ≤ b_k ≤ e_k`. By induction over the cycles, both runs
//!   are in the same state before `e_k`: in any cycle `t < e_k` the first
//!   did not take the wavelet, either because `t` was before what it could
//!   enter at (so the second, waiting on `b_k ≥ a_k`, is too) or because
//!   the buffer had no room (the same buffer, in the same state). At `e_k`
//!   the first took it: its buffer had room and `e_k ≥ b_k`, so the second
//!   takes it too.
//! * A host output wavelet `k` leaves when its exit router moves it and
//!   its departure `d_k` has come. Say it left at `o_k` in the first run,
//!   and the other is asked for `d'_k` with `d_k ≤ d'_k ≤ o_k`. In a cycle
//!   `t < o_k` in which the wavelet was at the head of its buffer, with its
//!   ports free, and `t ≥ d'_k ≥ d_k`, the first run would have moved it;
//!   so the later departure holds it in no cycle in which the first run's
//!   did not, and at `o_k ≥ d'_k` it leaves in both.
//!
//! The two runs differ only in which idle cycles the event loop visits
//! and in cycles it marks active while a wavelet's time has not come,
//! neither of which changes a result: the outputs, cycles, statistics,
//! traces and final SRAM are the same. `emulator/tests/serves.rs` checks
//! it on every engine.
//!
//! The overlapped decode step runs its stages in passes, and a pass that
//! only moves a producer's sends later (a hold it was given) feeds its
//! consumer later arrivals than the pass before, no later than that
//! consumer took them: the pass before's run of the consumer serves.

use super::{Arrivals, Cycles, Departures, RunResult};

/// When a run's host streams may enter and leave: its
/// [`RunConfig::arrivals`](super::RunConfig::arrivals) and
/// [`RunConfig::departures`](super::RunConfig::departures).
#[derive(Clone, Copy, Debug, Default)]
pub struct Fed<'a> {
    pub arrivals: Option<&'a Arrivals>,
    pub departures: Option<&'a Departures>,
}

impl Fed<'_> {
    /// Whether a run made as `self` says, whose host input wavelets
    /// entered at `entered` and whose output wavelets left at `left` (its
    /// [`RunResult::input_times`] and [`RunResult::output_times`]), is
    /// also exactly the run `asked` would make of the same program,
    /// inputs and machine: every wavelet's arrival in `asked` at or after
    /// its arrival here and no later than it entered, and every departure
    /// at or after its departure here and no later than it left (a stream
    /// a config does not name: from cycle 0). See the module's doc for why.
    pub fn serves(&self, asked: Fed<'_>, entered: &Cycles, left: &Cycles) -> bool {
        within(self.arrivals, asked.arrivals, entered)
            && within(self.departures, asked.departures, left)
    }
}

impl RunResult {
    /// [`Fed::serves`] for this run, made as `ran` says.
    pub fn serves(&self, ran: Fed<'_>, asked: Fed<'_>) -> bool {
        ran.serves(asked, &self.input_times, &self.output_times)
    }
}

/// Whether every stream's cycles in `asked` lie between those in `ran`
/// and those the run took (`took`), wavelet by wavelet; a stream not
/// named is at 0, and one named with another length than `took`'s (a
/// config for a different program) never serves.
fn within(ran: Option<&Cycles>, asked: Option<&Cycles>, took: &Cycles) -> bool {
    // Each stream either config names, once.
    let only_ran =
        (ran.iter().flat_map(|m| m.keys())).filter(|n| !asked.is_some_and(|a| a.contains_key(*n)));
    for name in asked.iter().flat_map(|m| m.keys()).chain(only_ran) {
        let Some(took) = took.get(name) else {
            return false;
        };
        let (ran, asked) = (
            ran.and_then(|m| m.get(name)),
            asked.and_then(|m| m.get(name)),
        );
        if [ran, asked].iter().flatten().any(|v| v.len() != took.len()) {
            return false;
        }
        let served = (0..took.len()).all(|k| {
            let from = ran.map_or(0, |v| v[k]);
            let to = asked.map_or(0, |v| v[k]);
            from <= to && to <= took[k]
        });
        if !served {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn map(entries: &[(&str, &[u64])]) -> BTreeMap<String, Vec<u64>> {
        (entries.iter())
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect()
    }

    /// Each bound, and the streams a config leaves out.
    #[test]
    fn asked_cycles_must_lie_between_ran_and_took() {
        let took = map(&[("x", &[5, 6, 9])]);
        let ran = map(&[("x", &[1, 6, 2])]);
        let ok = |asked: &BTreeMap<String, Vec<u64>>| within(Some(&ran), Some(asked), &took);
        assert!(ok(&ran));
        assert!(ok(&took));
        assert!(ok(&map(&[("x", &[3, 6, 9])])));
        // Earlier than the run's own arrival: it could have entered sooner.
        assert!(!ok(&map(&[("x", &[0, 6, 9])])));
        // Later than it entered: it would have entered later.
        assert!(!ok(&map(&[("x", &[5, 7, 9])])));
        // Another length: another program's stream.
        assert!(!ok(&map(&[("x", &[5, 6])])));
        // Not named: from cycle 0, earlier than the run's arrivals.
        assert!(!within(Some(&ran), None, &took));
        assert!(within(None, Some(&ran), &took));
        assert!(within(None, None, &took));
        // A stream the run did not take.
        assert!(!within(None, Some(&map(&[("y", &[0, 0, 0])])), &took));
    }
}
