//! Reducing partial vectors along a line of PEs to its east end: the plan
//! (who sends what where), the order of the sums it implies, and when the
//! result comes out.
//!
//! A *K-tree* with group size `g` (the least with `g^K ≥ n`) works in K
//! levels. At level 0 every PE is active; the active PEs, from the line's
//! start, form groups of `g` consecutive ones, and each group chain-reduces
//! toward its last member, its leader (the first member sends, the middle
//! ones add their own vector and forward, the leader adds the incoming
//! stream to its own). The leaders are the next level's active PEs. The
//! critical path is about `K·g` dependent steps instead of `n` (MeshGEMV's
//! observation); `K = 1` is the plain pipelined chain, `g = 2` the binary
//! tree. An incomplete group can only be the last, at the root's end, so no
//! PE sends at a level before the PEs it passes have finished the level
//! below: streams of different levels do not contend for links.

use crate::KernelError;
use std::fmt;
use wafer_emulator::Arch;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Strategy {
    Chain,
    Tree {
        k: u32,
    },
    /// Ring allreduce (reduce-scatter, then allgather): only for the
    /// standalone allreduce; kernels that reduce through a [`Plan`] refuse it.
    Ring,
}

impl Strategy {
    pub fn parse(s: &str) -> Result<Strategy, KernelError> {
        match s {
            "chain" => Ok(Strategy::Chain),
            "tree" => Ok(Strategy::Tree { k: 2 }),
            "ring" => Ok(Strategy::Ring),
            _ => s
                .strip_prefix("tree:")
                .and_then(|k| k.parse().ok())
                .filter(|k| (1..=64).contains(k))
                .map(|k| Strategy::Tree { k })
                .ok_or_else(|| {
                    KernelError::Shape(format!(
                        "unknown strategy `{s}`: use chain, tree (K = 2), tree:K (K from 1 to 64) or (for allreduce) ring"
                    ))
                }),
        }
    }

    fn levels(self) -> u32 {
        match self {
            Strategy::Chain | Strategy::Ring => 1,
            Strategy::Tree { k } => k,
        }
    }

    /// A strategy a generator can build: `tree:K` needs K of 1 to 64
    /// (a spec built in code, not parsed, may hold anything).
    pub fn check(self) -> Result<(), KernelError> {
        match self {
            Strategy::Tree { k } if !(1..=64).contains(&k) => {
                Err(KernelError::Shape(format!("tree:{k}: K must be 1 to 64")))
            }
            _ => Ok(()),
        }
    }

    /// Kernels that reduce through a [`Plan`] call this: a ring is not a
    /// plan (and the strategy must pass [`Strategy::check`]).
    pub fn require_plan(self, kernel: &str) -> Result<(), KernelError> {
        self.check()?;
        match self {
            Strategy::Ring => Err(KernelError::Shape(format!(
                "{kernel} reduces with chain or tree:K; ring is for the standalone allreduce"
            ))),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Strategy::Chain => f.write_str("chain"),
            Strategy::Tree { k } => write!(f, "tree:{k}"),
            Strategy::Ring => f.write_str("ring"),
        }
    }
}

/// What one PE does at one level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send its vector `hops` PEs east (the farthest member of a group).
    Send { hops: u32 },
    /// Add its vector to the incoming stream and forward it `hops` PEs east.
    Forward { hops: u32 },
    /// Add the incoming stream to its own vector (a group's leader).
    Gather,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub n: u32,
    pub group: u32,
    pub levels: u32,
    /// Every PE's (level, action) steps, west to east and in level order
    /// within a PE: PE `c`'s are `steps[start[c]..start[c + 1]]`. One flat
    /// list, since a plan is built for every line of every kernel a model
    /// compiles and a list per PE cost most of that.
    steps: Vec<(u32, Action)>,
    start: Vec<u32>,
}

impl Plan {
    /// The levels and group size a plan over `n` PEs has.
    pub fn shape(n: u32, strategy: Strategy) -> (u32, u32) {
        let levels = strategy.levels().min(n.max(2).ilog2().max(1));
        let mut group = 2u32;
        while (group as u64).pow(levels) < n as u64 {
            group += 1;
        }
        if levels == 1 {
            group = n.max(1);
        }
        (levels, group)
    }

    pub fn new(n: u32, strategy: Strategy) -> Plan {
        let (levels, group) = Plan::shape(n, strategy);
        // (PE, level, action) in level order, then grouped by PE (a stable
        // counting sort keeps each PE's levels in order).
        let mut all: Vec<(u32, u32, Action)> = Vec::with_capacity(n as usize);
        let mut active: Vec<u32> = (0..n).collect();
        for l in 0..levels {
            let mut leaders = Vec::with_capacity(active.len().div_ceil(group as usize));
            for members in active.chunks(group as usize) {
                let leader = *members.last().expect("chunks are non-empty");
                for (t, c) in members.iter().enumerate() {
                    let action = match members.get(t + 1) {
                        None if members.len() == 1 => continue,
                        None => Action::Gather,
                        Some(next) if t == 0 => Action::Send { hops: next - c },
                        Some(next) => Action::Forward { hops: next - c },
                    };
                    all.push((*c, l, action));
                }
                leaders.push(leader);
            }
            active = leaders;
        }
        let mut start = vec![0u32; n as usize + 1];
        for (c, _, _) in &all {
            start[*c as usize + 1] += 1;
        }
        for c in 0..n as usize {
            start[c + 1] += start[c];
        }
        let mut at = start.clone();
        let mut steps = vec![(0, Action::Gather); all.len()];
        for (c, l, action) in all {
            steps[at[c as usize] as usize] = (l, action);
            at[c as usize] += 1;
        }
        Plan {
            n,
            group,
            levels,
            steps,
            start,
        }
    }

    /// PE `c`'s (level, action) steps, in level order.
    pub fn steps(&self, c: usize) -> &[(u32, Action)] {
        &self.steps[self.start[c] as usize..self.start[c + 1] as usize]
    }

    /// Every PE's steps, west to east.
    pub fn each_pe(&self) -> impl Iterator<Item = &[(u32, Action)]> {
        (0..self.n as usize).map(|c| self.steps(c))
    }

    /// The sum in the plan's order, as the emulator computes it in f32: a
    /// forwarding PE sends `incoming + own`, a leader keeps `incoming + own`.
    pub fn reduce(&self, partials: &[Vec<f32>]) -> Vec<f32> {
        self.reduce_with(partials, |a, b| a + b)
    }

    /// [`Plan::reduce`] with another combining function (`f(incoming, own)`).
    pub fn reduce_with(&self, partials: &[Vec<f32>], f: impl Fn(f32, f32) -> f32) -> Vec<f32> {
        let n = self.n as usize;
        let mut vals: Vec<Vec<f32>> = partials.to_vec();
        let mut incoming: Vec<Option<Vec<f32>>> = vec![None; n];
        let add = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| f(*x, *y))
                .collect::<Vec<f32>>()
        };
        for l in 0..self.levels {
            // Within a level, streams flow east: visit PEs west to east so a
            // sender's value is ready before its receiver reads it.
            for c in 0..n {
                for (lvl, action) in self.steps(c) {
                    if *lvl != l {
                        continue;
                    }
                    match *action {
                        Action::Send { hops } => {
                            incoming[c + hops as usize] = Some(vals[c].clone())
                        }
                        Action::Forward { hops } => {
                            let inc = incoming[c].take().expect("a forwarder's input was sent");
                            incoming[c + hops as usize] = Some(add(&inc, &vals[c]));
                        }
                        Action::Gather => {
                            let inc = incoming[c].take().expect("a leader's input was sent");
                            vals[c] = add(&inc, &vals[c]);
                        }
                    }
                }
            }
        }
        vals[n - 1].clone()
    }

    /// When the result's first element leaves the east end, given the cycle
    /// at which each PE issues its first reduction instruction, for vectors
    /// of `m` f32 elements. Derivation (engine semantics): an op issued at
    /// `t` starts at `t + 1 + I`; every op here moves one f32 per cycle
    /// (one fabric wavelet per cycle bounds it), so a stream is its first
    /// element's time plus `k` for element `k`, and a PE adding an incoming
    /// stream emits element 0 at `max(start, arrival)`; a stream `u` hops
    /// east arrives `2·ramp + u·hop` later; the next op issues in the cycle
    /// the previous one finished (`first + m − 1`). The east end's last step
    /// streams straight to the output (or, alone, sends its vector).
    pub fn first_out(&self, issue: &[u64], m: u32, arch: &Arch) -> u64 {
        let (done, root_first) = self.timeline(issue, m, arch);
        let root = self.n as usize - 1;
        match self.steps(root).last() {
            // The root's final gather streams to the output directly.
            Some((_, Action::Gather)) => root_first,
            _ => done[root] + 1 + arch.vector_issue_cycles as u64,
        }
    }

    /// Per PE, the cycle its last reduction op finishes (its issue cycle if
    /// it has none), and the cycle the root's last op handles element 0.
    pub fn timeline(&self, issue: &[u64], m: u32, arch: &Arch) -> (Vec<u64>, u64) {
        let t = self.times(issue, m, arch);
        (t.done, t.root_first)
    }

    /// [`Plan::timeline`], and when the stream each of the root's gathers
    /// takes reaches the root's core, in the order of its steps.
    pub fn times(&self, issue: &[u64], m: u32, arch: &Arch) -> PlanTimes {
        let n = self.n as usize;
        let (i, ramp, hop) = (
            arch.vector_issue_cycles as u64,
            arch.ramp_latency as u64,
            arch.hop_latency as u64,
        );
        let m = m as u64;
        let mut next = issue.to_vec();
        let mut arrival: Vec<Option<u64>> = vec![None; n];
        let mut root_first = next[n - 1];
        let mut root_in = Vec::new();
        for l in 0..self.levels {
            for c in 0..n {
                for (lvl, action) in self.steps(c) {
                    if *lvl != l {
                        continue;
                    }
                    let start = next[c] + 1 + i;
                    let first = match *action {
                        Action::Send { .. } => start,
                        Action::Forward { .. } | Action::Gather => {
                            let at = arrival[c].take().expect("input was sent");
                            if c == n - 1 {
                                root_in.push(at);
                            }
                            start.max(at)
                        }
                    };
                    if let Action::Send { hops } | Action::Forward { hops } = *action {
                        arrival[c + hops as usize] = Some(first + 2 * ramp + hops as u64 * hop);
                    }
                    next[c] = first + m - 1;
                    if c == n - 1 {
                        root_first = first;
                    }
                }
            }
        }
        PlanTimes {
            done: next,
            root_first,
            root_in,
        }
    }
}

/// What [`Plan::times`] finds.
pub struct PlanTimes {
    /// Per PE, the cycle its last reduction op finishes.
    pub done: Vec<u64>,
    /// The cycle the root's last op handles element 0.
    pub root_first: u64,
    /// When the stream of each of the root's gathers reaches its core.
    pub root_in: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(plan: &Plan, f: impl Fn(&Action) -> bool) -> usize {
        plan.each_pe().flatten().filter(|(_, a)| f(a)).count()
    }

    #[test]
    fn a_chain_sends_once_and_forwards_the_rest() {
        let p = Plan::new(5, Strategy::Chain);
        assert_eq!(p.steps(0), [(0, Action::Send { hops: 1 })]);
        assert_eq!(p.steps(2), [(0, Action::Forward { hops: 1 })]);
        assert_eq!(p.steps(4), [(0, Action::Gather)]);
    }

    #[test]
    fn every_pe_but_the_root_sends_exactly_once() {
        for n in 1..40 {
            for s in [
                Strategy::Chain,
                Strategy::Tree { k: 2 },
                Strategy::Tree { k: 3 },
                Strategy::Tree { k: 6 },
            ] {
                let p = Plan::new(n, s);
                let sends = count(&p, |a| {
                    matches!(a, Action::Send { .. } | Action::Forward { .. })
                });
                assert_eq!(sends, n as usize - 1, "n={n} {s}");
                let ones: Vec<Vec<f32>> = (0..n).map(|_| vec![1.0]).collect();
                assert_eq!(p.reduce(&ones), vec![n as f32], "n={n} {s}");
            }
        }
    }

    #[test]
    fn a_binary_tree_has_log_levels() {
        let p = Plan::new(64, Strategy::Tree { k: 6 });
        assert_eq!((p.group, p.levels), (2, 6));
        let p = Plan::new(64, Strategy::Tree { k: 2 });
        assert_eq!((p.group, p.levels), (8, 2));
    }
}
