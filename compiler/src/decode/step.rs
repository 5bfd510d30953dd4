//! One decode step's results ([`Step`]) and where a stage run's PE-cycles
//! went ([`PeTime`]): what [`super::Decoder`] hands back, kept apart from
//! how it runs the step.

use super::{QueueCounts, links, park};
use std::sync::Arc;
use wafer_emulator::stats::Stats;
use wafer_emulator::trace::Trace;

/// One decode step's results.
#[derive(Clone, Debug)]
pub struct Step {
    /// The wafer's argmax of the logits.
    pub next: u32,
    pub logits: Vec<f32>,
    /// Emulated cycles per stage, and the step's total (with hand-offs).
    pub stage_cycles: Vec<u64>,
    /// Where each stage's PE-cycles went.
    pub stage_time: Vec<PeTime>,
    /// Each stage's run statistics (over its program's rectangle) and,
    /// when tracing, its spans (cycles from the stage's start). Stages
    /// whose results were reused share one copy. Empty when the decoder
    /// does not keep them ([`Decoder::keep_stats`](super::Decoder::keep_stats)).
    pub stage_stats: Vec<Arc<Stats>>,
    pub stage_traces: Vec<Option<Trace>>,
    /// The step's cycles: with barriers, its stages' and hand-offs'
    /// sum; overlapped ([`Decoder::overlap`](super::Decoder::overlap)), the last stage's end.
    pub cycles: u64,
    /// The cycle each stage started at, from the step's start (0 where it
    /// did not run).
    pub stage_start: Vec<u64>,
    /// Per stage, the stage it waited on last: overlapped, the one whose
    /// element arrived latest or whose end freed its PEs, if later; with
    /// barriers, the stage that ran before it. Followed back from the
    /// stage that ends last, the step's critical path.
    pub stage_waited_on: Vec<Option<usize>>,
    /// Overlapped, per stage: the most input wavelets that had reached
    /// its edge and waited there at once ([`overlap::backlog`](super::overlap::backlog)); 0 with
    /// barriers. On a wafer they wait in the routes' buffers, and past
    /// what those hold they hold the producer back ([`Step::stage_held`]).
    pub stage_backlog: Vec<u64>,
    /// Overlapped, per stage: whether its consumers held it back (its
    /// outputs left no earlier than the routes to them had room: see
    /// [`overlap::Plan::holds`](super::overlap::Plan::holds)).
    pub stage_held: Vec<bool>,
    /// Overlapped: what the receives took that parked the input wavelets
    /// reaching a consumer's edge before it could start ([`park`]).
    pub parked: Option<park::Summary>,
    /// How many times the step's stages were run until no hold moved
    /// (1 with barriers, or where nothing holds a stage back).
    pub passes: usize,
    /// Overlapped with the links queued ([`Decoder::queue_links`](super::Decoder::queue_links)), how
    /// many settled passes moved some stage's queued arrivals (0 else).
    pub queued_rounds: usize,
    /// Whether no queued arrival would move again (false: the step
    /// stopped at the most rounds [`Decoder::queue_links`](super::Decoder::queue_links) allows;
    /// another round would only move arrivals later).
    pub queue_settled: bool,
    /// Overlapped with the links queued, how many wafer queues its rounds
    /// made, and how many they found kept: a wafer sent as one was
    /// before, shifted in time, in this step, a step before or another
    /// process ([`Decoder::share`](super::Decoder::share)).
    pub queue_wafers: QueueCounts,
    /// Overlapped, with [`Decoder::check_links`](super::Decoder::check_links), how the hand-offs'
    /// wavelets load the links on paths X then Y and Y then X ([`links`](super::links):
    /// a check of the free routes the arrivals take); else empty.
    pub links: Vec<links::LinkLoad>,
    /// Overlapped with the links queued, the hand-offs whose trips the
    /// queue fed later than free routes would, longest delay first.
    pub queue_waits: Vec<links::HandoffWait>,
    /// Per stage: its timing-only results are those of an identical run
    /// (see [`Decoder::reuse`](super::Decoder::reuse)) rather than emulated again.
    pub stage_reused: Vec<bool>,
    /// Per stage, what emulating it took over the step's passes (none
    /// where each pass reused a run): where the emulator's time goes.
    pub stage_emulated: Vec<Emulated>,
    /// Per stage: whether it ran (an expert the router did not pick did
    /// not: its cycles, hand-off and time are 0, its statistics empty).
    pub stage_ran: Vec<bool>,
}

impl Step {
    /// Stage `i`'s end, from the step's start.
    pub fn stage_end(&self, i: usize) -> u64 {
        self.stage_start[i] + self.stage_cycles[i]
    }

    /// The step's critical path, last stage first: from the stage that
    /// ends last (the later one of a tie), each stage to the one it
    /// waited on last ([`Step::stage_waited_on`]).
    pub fn critical_path(&self) -> Vec<usize> {
        let last = (0..self.stage_ran.len())
            .filter(|&i| self.stage_ran[i])
            .max_by_key(|&i| (self.stage_end(i), i));
        std::iter::successors(last, |&i| self.stage_waited_on[i]).collect()
    }
}

/// Where a run's PE-cycles went, summed over the PEs with code: computing
/// (scalar, vector, task switches), waiting on the fabric (a vector
/// operation's input queue empty or its output ramp full), or neither
/// (idle: done, or not yet started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeTime {
    pub compute: u64,
    pub fabric: u64,
    pub idle: u64,
}

impl PeTime {
    pub fn of(s: &wafer_emulator::stats::Stats) -> PeTime {
        let p = &s.pe;
        let mut t = PeTime::default();
        for i in 0..p.sram_used.len() {
            if p.sram_used[i] == 0 {
                continue;
            }
            // A vector operation can run while the main thread issues
            // scalars: busy is capped at the run's cycles.
            let busy = (p.scalar_cycles[i] + p.vector_cycles[i] + p.switch_cycles[i]).min(s.cycles);
            let fabric = (p.stall_in_cycles[i] + p.stall_out_cycles[i]).min(s.cycles - busy);
            t.compute += busy;
            t.fabric += fabric;
            t.idle += s.cycles - busy - fabric;
        }
        t
    }

    pub fn total(&self) -> u64 {
        self.compute + self.fabric + self.idle
    }
}

/// Statistics of no PEs: what a step keeps for a stage whose statistics
/// it does not read (or that did not run).
pub(super) fn no_stats(arch: &wafer_emulator::Arch, cycles: u64) -> Stats {
    Stats {
        version: wafer_emulator::stats::STATS_VERSION,
        arch: arch.name.clone(),
        clock_hz: arch.clock_hz,
        width: 0,
        height: 0,
        cycles,
        engine: String::new(),
        pe: wafer_emulator::stats::PeStats::zeroed(0),
        totals: Default::default(),
    }
}

/// A stage's emulations in one step, over its passes: a pass whose run
/// of the stage stood in for the next's (the same feed, or one it serves:
/// [`wafer_emulator::Fed::serves`]) or an identical run's results
/// ([`Decoder::reuse`](super::Decoder::reuse)) emulated nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Emulated {
    /// Runs emulated.
    pub runs: u32,
    /// Host seconds they took.
    pub seconds: f64,
    /// Cycles they emulated, summed.
    pub cycles: u64,
}
