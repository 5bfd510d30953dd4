//! The cost models' estimate of an overlapped step ([`predicted`]): the
//! step [`super::overlap`] plans, each stage's time taken from its
//! kernel's cost model instead of emulated. `wafer compile`, the bench's
//! table and `sweep` print it; `wafer generate` prints it beside each
//! emulated step.

use super::overlap::{Plan, Schedule};
use crate::codegen::Compiled;
use std::collections::BTreeMap;
use wafer_emulator::Cycles;

/// The cost models' estimate of an overlapped step at `pos` (experts by
/// `seed`'s routing): each stage's start and end, and the step's cycles
/// (the last end). An estimate, not the emulation: a kernel whose model
/// takes its inputs' arrivals ([`Kernel::fed`]: the tiled GEMV, the
/// vector kernels, RoPE and attention) gives its own end and when each
/// output stream's last wavelet leaves; any other is taken to run its
/// predicted cycles ([`Compiled::stage_predictions`]) from its start,
/// delayed by as much as its latest input stream enters later than it
/// would unhindered, and to send each output stream's last wavelet a
/// cycle before its end. A stream's wavelets before its last are taken to
/// leave a cycle apart. Tested against the emulated overlapped step
/// (`compiler/tests/overlap.rs`).
///
/// [`Kernel::fed`]: crate::place::Kernel::fed
pub fn predicted(c: &Compiled, pos: u32, seed: u64) -> Overlapped {
    Predictor::new(c).at(c, pos, seed)
}

/// [`predicted`] at one position after another, its plan made once (on
/// the 8B, 2.5 s; `wafer generate` asks for every step's).
pub struct Predictor {
    plan: Plan,
}

impl Predictor {
    pub fn new(c: &Compiled) -> Predictor {
        Predictor { plan: Plan::new(c) }
    }

    /// [`predicted`] of `c`, the model this was made for.
    pub fn at(&self, c: &Compiled, pos: u32, seed: u64) -> Overlapped {
        estimate(&self.plan, c, pos, seed)
    }
}

fn estimate(plan: &Plan, c: &Compiled, pos: u32, seed: u64) -> Overlapped {
    let ran = c.runs(pos, seed);
    let cycles = c.stage_predictions(pos);
    let n = c.stages.len();
    let (mut ends, mut left) = (vec![None; n], vec![None; n]);
    let mut starts = vec![0; n];
    for i in (0..n).filter(|i| ran[*i]) {
        let f = &c.fragments[i];
        let Schedule {
            start,
            arrivals: at,
            ..
        } = plan.schedule(c, i, &ends, &left);
        // When each input stream's wavelets are pushed in, in order at
        // the stream's period, and how much later than unhindered the
        // latest stream's last one is.
        let mut late = 0;
        let pushed: Cycles = f.arrivals(&at).map_or_else(
            |_| BTreeMap::new(),
            |arrivals| {
                (arrivals.into_iter())
                    .filter_map(|(name, w)| {
                        let s = f.program.inputs.iter().find(|h| h.name == name)?;
                        let period = s.period.max(1) as u64;
                        let mut entries: Vec<u64> = Vec::with_capacity(w.len());
                        for t in &w {
                            entries.push(entries.last().map_or(*t, |e| (e + period).max(*t)));
                        }
                        let last = entries.last().copied().unwrap_or(0);
                        let unhindered = period * (w.len() as u64).saturating_sub(1);
                        late = late.max(last.saturating_sub(unhindered));
                        Some((name, entries))
                    })
                    .collect()
            },
        );
        // A kernel whose model takes its inputs' arrivals (the tiled
        // GEMV, the vector kernels, RoPE, attention) says its end and its
        // outputs' times itself; the others run their whole time after
        // their latest input.
        let fed = c.sites[i].kernel.fed(&c.options.arch, pos, &pushed);
        let end = match &fed {
            Some((cycles, _)) => start + cycles,
            None => start + late + cycles[i],
        };
        starts[i] = start;
        ends[i] = Some(end);
        // Each stream's last wavelet leaves when the kernel's model says,
        // else a cycle before the end; the ones before it a cycle apart.
        let leaves = fed.map(|f| f.1);
        left[i] = f.outputs.first().map(|port| {
            let mut t = vec![end; port.len as usize];
            for s in &port.segments {
                let Some(h) = f.program.outputs.iter().find(|h| h.name == s.stream) else {
                    continue;
                };
                let last = (leaves.as_ref())
                    .and_then(|l| l.get(&s.stream))
                    .map_or(end.saturating_sub(1), |l| start + l);
                let (per, wavelets) = (h.dtype.per_word(), h.wavelets() as u64);
                for k in 0..s.len {
                    let w = ((s.at + k) / per) as u64;
                    t[(s.offset + k) as usize] = last.saturating_sub(wavelets - 1 - w);
                }
            }
            t
        });
    }
    let step = ends.iter().flatten().copied().max().unwrap_or(0);
    Overlapped {
        cycles: step,
        starts,
        ends: ends.into_iter().map(|e| e.unwrap_or(0)).collect(),
    }
}

/// [`predicted`]'s estimate of an overlapped step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlapped {
    pub cycles: u64,
    /// Per stage, its start and end (0 for a stage that does not run).
    pub starts: Vec<u64>,
    pub ends: Vec<u64>,
}
