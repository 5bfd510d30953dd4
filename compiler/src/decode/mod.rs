//! Decoding on the emulated wafer: each step runs every stage's kernel on
//! the emulator, in order, with the values the earlier stages produced.
//!
//! The attention stages keep their SRAM between steps (the KV cache lives
//! there, as on the wafer); every other stage starts from its program's
//! image, which holds the weights. A step's cycles are the sum of the
//! stages' emulated cycles and their modelled hand-offs
//! ([`crate::route`]); overlapped ([`Decoder::overlap`], `overlap.rs`),
//! each stage starts when its inputs arrive, and a step runs in passes
//! until the holds its consumers put on its producers settle.

use crate::codegen::Compiled;
use crate::stage::Src;
use std::collections::BTreeMap;
use std::sync::Arc;
use wafer_emulator::{Memory, Prepared, RunConfig};
use wafer_kernels::Fragment;

mod error;
pub mod links;
pub mod overlap;
pub mod park;
mod pass;
pub mod predict;
mod queue;
mod run;
mod scratch;
mod shared;
mod spread;
mod step;

pub use error::DecodeError;
pub use queue::QueueCounts;
pub use run::IMAGE_CACHE_BYTES;
use run::{Reusable, Reuse, StageRun};
use step::no_stats;
pub use step::{Emulated, PeTime, Step};

/// A model on the emulated wafer, with its KV cache.
pub struct Decoder<'c> {
    pub compiled: &'c Compiled,
    /// What each stage resumes from next step: the KV cache for attention;
    /// its starting image for a stage whose runs change no state
    /// ([`scratch::keeps_state`], `keeps`), counted in `image_bytes` once
    /// `held`.
    memory: Vec<Option<Memory>>,
    keeps: Vec<Option<bool>>,
    held: Vec<bool>,
    /// Each stage's SRAM as its program starts it, built on first use and
    /// cloned per step: rebuilding seeded weights element by element costs
    /// more than most stages' runs (see [`IMAGE_CACHE_BYTES`]).
    images: Vec<Option<Memory>>,
    image_bytes: u64,
    /// Each stage's program checked, laid out and (on the JIT engine)
    /// compiled, on its first functional run. Timing-only runs prepare
    /// afresh: an 8B model's layouts would not all fit in memory, and its
    /// identical stages run once a step anyway.
    prepared: Vec<Option<Prepared>>,
    /// What the emulator runs in each spread attention's place: its
    /// columns side by side, `pitch` times fewer PEs to step for the same
    /// outputs and cycles ([`run::packed`]).
    packed: Vec<Option<(Arc<Fragment>, u32)>>,
    pub pos: u32,
    cfg: RunConfig,
    /// Timing-only results reused across identical stages (`None`: off).
    reuse: Option<Reuse>,
    keep_stats: bool,
    /// Fill activation buffers with NaN before every run
    /// ([`Decoder::scramble_activations`]).
    scramble: bool,
    /// The seed of the experts a timing-only step runs
    /// ([`crate::experts::seeded`]).
    expert_seed: u64,
    /// Steps overlap their stages ([`Decoder::overlap`]) by this plan.
    overlap: Option<overlap::Plan>,
    /// Overlapped steps count their hand-offs' link loads
    /// ([`Decoder::check_links`]).
    check_links: bool,
    /// Overlapped steps queue their hand-offs on the links
    /// ([`Decoder::queue_links`]).
    queue_links: Option<(links::Paths, usize)>,
    /// Each trip's order under [`links::Paths::Spread`]: planned from the
    /// first queued step's free-route sends and kept, as a compiled
    /// route plan is.
    spread: Option<Vec<links::Order>>,
    /// Queued steps' wafer queues, kept for the rounds, steps and
    /// processes that send a wafer's trips as one did before.
    queues: queue::Kept,
    /// For `park`'s tests: the machine the parked receives are checked
    /// against in place of the compiled one (the stages still run on
    /// that), and whether the last step's check took the queue's delays.
    #[cfg(test)]
    parks_arch: Option<wafer_emulator::Arch>,
    #[cfg(test)]
    parks_queued: bool,
    /// For the memo's test: whether a pass's run serves the next pass's
    /// later arrivals and departures, and how many times one has.
    #[cfg(test)]
    serve_later: bool,
    #[cfg(test)]
    served: usize,
    /// A functional overlapped step settles its holds on timing-only runs
    /// first ([`Decoder::settle_on_timing`]), when the step before took
    /// `last_passes` > 1.
    timing_first: bool,
    last_passes: usize,
    /// For its test: drop the holds the timing-only passes settled on
    /// before the functional pass (which then does not settle, and the
    /// step starts again functionally), how many steps did, and how many
    /// functional stage runs there were.
    #[cfg(test)]
    drop_timing_holds: bool,
    #[cfg(test)]
    timing_restarts: usize,
    #[cfg(test)]
    functional_runs: usize,
}

fn cancelled(cfg: &RunConfig) -> bool {
    cfg.cancel
        .as_ref()
        .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
}

impl<'c> Decoder<'c> {
    pub fn new(compiled: &'c Compiled) -> Decoder<'c> {
        Decoder {
            compiled,
            memory: vec![None; compiled.stages.len()],
            keeps: vec![None; compiled.stages.len()],
            held: vec![false; compiled.stages.len()],
            images: vec![None; compiled.stages.len()],
            image_bytes: 0,
            prepared: (0..compiled.stages.len()).map(|_| None).collect(),
            packed: run::packed(compiled),
            pos: 0,
            cfg: RunConfig {
                engine: wafer_emulator::Engine::Jit,
                ..RunConfig::default()
            },
            reuse: Some(Reuse::default()),
            keep_stats: true,
            scramble: false,
            expert_seed: crate::experts::DEFAULT_SEED,
            overlap: None,
            check_links: false,
            queue_links: None,
            spread: None,
            queues: queue::Kept::default(),
            #[cfg(test)]
            parks_arch: None,
            #[cfg(test)]
            parks_queued: false,
            #[cfg(test)]
            serve_later: true,
            #[cfg(test)]
            served: 0,
            timing_first: true,
            last_passes: 0,
            #[cfg(test)]
            drop_timing_holds: false,
            #[cfg(test)]
            timing_restarts: 0,
            #[cfg(test)]
            functional_runs: 0,
        }
    }

    /// Overlap each step's stages (off by default): a stage starts when
    /// its first input element has arrived and its PEs are free, and takes
    /// each element as it arrives (see `overlap.rs`), so a step's cycles
    /// are its last stage's end rather than the stages' and hand-offs'
    /// sum. Tokens are the same either way.
    pub fn overlap(&mut self, on: bool) {
        self.overlap = on.then(|| overlap::Plan::new(self.compiled));
        self.spread = None;
        self.queues = queue::Kept::default();
    }

    /// Whether overlapped steps count how their hand-offs load the links
    /// ([`Step::links`]; off by default: on a 1B model it takes seconds
    /// a step).
    pub fn check_links(&mut self, on: bool) {
        self.check_links = on;
    }

    /// Overlapped steps take their hand-offs on `paths` (one dimension
    /// order, or each pair of exit and entry PEs the order its wavelets
    /// find less crowded, [`spread::spread`], planned on the first step)
    /// with each link queued, one wavelet a cycle ([`queue::queued_arrivals`]):
    /// a stage is fed each input wavelet no earlier than its trips would
    /// reach its edge so, given when its producers sent, in rounds until
    /// no arrival moves or `most` rounds have run (a model of the routes
    /// in place of taking them as free of other traffic; `None`, the
    /// default: free). Each round carries every trip's queue delay (its
    /// queued arrival less its free-route one) onto its producer's sends
    /// in the next, so a delay reaches every stage after it in one round;
    /// the rounds stop when the queue gives every trip the delay it was
    /// fed with ([`QUEUE_ROUNDS_BOTH_WAYS`]).
    pub fn queue_links(&mut self, queue: Option<(links::Paths, usize)>) {
        self.queue_links = queue;
        self.spread = None;
        self.queues = queue::Kept::default();
    }

    /// Whether steps overlap their stages.
    pub fn is_overlapped(&self) -> bool {
        self.overlap.is_some()
    }

    /// The seed of the routing a timing-only step of a mixture of experts
    /// runs (timing-only values are unknown, so the router's own picks
    /// are too); functional steps run the router's picks.
    pub fn expert_seed(&mut self, seed: u64) {
        self.expert_seed = seed;
    }

    /// The seed of the routing timing-only steps run.
    pub fn seed_of_experts(&self) -> u64 {
        self.expert_seed
    }

    /// Whether it decodes timing-only ([`Decoder::timing_only`]).
    pub fn is_timing_only(&self) -> bool {
        self.cfg.timing_only
    }

    /// How it runs the emulator.
    pub(crate) fn run_config(&self) -> &RunConfig {
        &self.cfg
    }

    /// Whether a timing-only decoder runs each distinct stage once per step
    /// and reuses its results for the stages that differ from it only in
    /// their weights (on by default; functional decoding always runs every
    /// stage functionally, and reuses its timing-only passes' runs this
    /// way: [`Decoder::settle_on_timing`]). Results are the same either
    /// way (tested); off, every stage is emulated, which is what measures
    /// the engine on a whole model. A result is kept while the steps keep
    /// using it.
    pub fn reuse(&mut self, on: bool) {
        self.reuse = on.then(Reuse::default);
    }

    /// Which engine steps the stages (the JIT engine unless told
    /// otherwise; all give the same results and cycles).
    pub fn engine(&mut self, engine: wafer_emulator::Engine) {
        self.cfg.engine = engine;
    }

    /// Worker threads for the JIT engine (see [`RunConfig::threads`]).
    pub fn threads(&mut self, n: usize) {
        self.cfg.threads = n;
    }

    /// Timing-only decoding: every stage runs without values or weights
    /// (see [`RunConfig::timing_only`]); the cycles are a functional run's,
    /// the logits NaN and the token fed back 0. Nothing is kept between
    /// steps: the KV cache's contents do not change any timing.
    pub fn timing_only(&mut self, on: bool) {
        self.cfg.timing_only = on;
    }

    /// Stop at the next check (between stages, and within a stage's run)
    /// once `flag` is set: what Ctrl-C does.
    pub fn cancel_on(&mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.cfg.cancel = Some(flag);
    }

    /// Whether each [`Step`] carries every stage's per-PE statistics (on
    /// by default). They are per PE of the stage's rectangle: an 8B
    /// model's 356 stages hold gigabytes of them a step, which a caller
    /// that only reads the cycles and the PE-time split does not need.
    pub fn keep_stats(&mut self, on: bool) {
        self.keep_stats = on;
    }

    /// A check on the kernels: before every functional run, fill each
    /// buffer that is not state (no data image fills it and the kernel
    /// does not keep it: a stage's inputs, partial sums, outputs — its
    /// activations) with NaN, in the SRAM the stage starts or resumes
    /// from. A kernel that read one before writing it would
    /// change the tokens; none does (`tests/decode.rs`), so what a stage
    /// keeps between steps is its state alone, and stages that never run
    /// at once could share their activation buffers.
    pub fn scramble_activations(&mut self, on: bool) {
        self.scramble = on;
    }

    /// Record each stage's task and vector-op spans, at most `max_spans`
    /// per stage (the trace says how many it dropped).
    pub fn trace(&mut self, max_spans: usize) {
        self.cfg.trace = true;
        self.cfg.max_trace_spans = max_spans;
    }

    /// Move a timing-only decoder to position `pos` without running the
    /// steps before it: timing does not depend on what the KV cache holds,
    /// only on how many positions it holds. A functional decoder refuses
    /// (its cache would be missing those positions).
    pub fn skip_to(&mut self, pos: u32) -> Result<(), DecodeError> {
        if !self.cfg.timing_only {
            return Err(DecodeError::Skip { pos });
        }
        if pos >= self.compiled.options.max_context {
            return Err(DecodeError::Context {
                pos,
                max: self.compiled.options.max_context,
            });
        }
        self.pos = pos;
        Ok(())
    }

    /// Run the step for `token` at the current position, then advance.
    pub fn step(&mut self, token: u32) -> Result<Step, DecodeError> {
        self.check_step(token)?;
        // A functional decoder keeps the timing-only runs its steps settle
        // on (`settles_on_timing`) as a timing-only one does.
        if let Some(r) = self.reuse.as_mut() {
            r.step += 1;
            let last = r.step - 1;
            r.runs.retain(|_, run| run.used >= last);
        }
        self.queues.next_step();
        let step = self.settle(token, None)?;
        self.last_passes = step.passes;
        self.pos += 1;
        Ok(step)
    }

    /// Refuses a step for `token` at the decoder's position: past the KV
    /// cache, or a token the vocabulary does not have.
    fn check_step(&self, token: u32) -> Result<(), DecodeError> {
        let c = self.compiled;
        if self.pos >= c.options.max_context {
            return Err(DecodeError::Context {
                pos: self.pos,
                max: c.options.max_context,
            });
        }
        if token as usize >= c.config.vocab_size {
            return Err(DecodeError::Token {
                token,
                vocab: c.config.vocab_size,
            });
        }
        Ok(())
    }

    /// The step for `token` at the decoder's position, its passes run
    /// until they settle, the position left as it is. With `segment`
    /// (overlapped, [`Decoder::share`]) only the stages it marks run; each
    /// other one is taken as ended at cycle 0 with unknown outputs, so the
    /// marked stages fed from them at a barrier run as they would in the
    /// whole step, shifted in time, and their runs are kept for it.
    fn settle(&mut self, token: u32, segment: Option<&[bool]>) -> Result<Step, DecodeError> {
        let c = self.compiled;
        let arch = &c.options.arch;
        let mut values: Vec<Option<Vec<f32>>> = vec![None; c.graph.insts.len()];
        for (i, inst) in c.graph.insts.iter().enumerate() {
            match inst.op {
                crate::ir::Op::Token => values[i] = Some(vec![token as f32]),
                crate::ir::Op::Position => values[i] = Some(vec![self.pos as f32]),
                _ => {}
            }
        }
        // Per route value, the experts it picked.
        let mut picked: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let n = c.stages.len();
        // Overlapped: per stage, the absolute cycle each output element
        // may leave, held back by its consumers (`None`: free); the runs
        // of the pass before, by what fed and held them; the host seconds
        // each stage's runs took over the passes.
        //
        // A hold is kept from its wafer's first stage's start (`base`, 0
        // on one wafer): when a wafer's barrier moves, as it does while
        // the wafers before it settle, its stages and their consumers move
        // together, and so do its holds. Kept absolute, they would feed the
        // moved wafer departures its consumers no longer ask for, and it
        // would run again for them (and a wafer run alone, as
        // [`Decoder::share`] runs it, would not make the whole step's
        // runs).
        let mut held: Vec<Option<Vec<u64>>> = vec![None; n];
        let base_of: Vec<usize> = (0..n)
            .map(|i| {
                (c.wafers.iter())
                    .find(|w| w.stages.contains(&i))
                    .map_or(0, |w| w.stages.start)
            })
            .collect();
        // The start of stage `i`'s wafer in a pass: its first stage's.
        let wafer_start = |entered: &[Option<overlap::Entered>], i: usize| {
            entered[base_of[i]].as_ref().map_or(0, |e| e.0)
        };
        // Overlapped with the links queued: per trip, how much later than
        // a free route the last round's queue had it reach its consumer's
        // edge, and per consumer stage its trips. A pass carries each
        // trip's delay onto its producer's sends in that pass, so a stage
        // made later by its own inputs' queue passes the delay on to its
        // consumers in the same pass, their queue delays added, rather
        // than a round later (feeding each stage the last round's absolute
        // arrivals took a round per stage of the step: 101 rounds on the
        // 1B, about 200 on the 8B).
        let mut rounds = 0;
        let mut carried = match (&self.overlap, self.queue_links) {
            (Some(plan), Some(_)) => Some(pass::Carried::new(plan, n)),
            _ => None,
        };
        let hop = arch.hop_latency as u64;
        type Memo = (
            Option<Arc<wafer_emulator::Arrivals>>,
            Option<Arc<wafer_emulator::Departures>>,
            StageRun,
        );
        let mut memo: Vec<Option<Memo>> = vec![None; n];
        let counted = self.queues.counts;
        let mut emulated = vec![step::Emulated::default(); n];
        let mut passes = 0;
        // Functional: the passes run timing-only until they settle, then
        // the last once more functionally (`replay`).
        let mut timing = self.cfg.timing_only || self.settles_on_timing(segment);
        let mut replay = false;
        // Each pass runs every stage, fed when its producers sent and held
        // until its consumers took; they settle when no hold moves.
        let step = loop {
            let mut record = pass::Record::default();
            let mut next = 0;
            let mut total = 0;
            let mut before = None;
            // Overlapped: each stage's end and when each output element left
            // (absolute cycles of the step).
            let mut ends: Vec<Option<u64>> = vec![None; n];
            let mut left: Vec<Option<Vec<u64>>> = vec![None; n];
            // Overlapped: each stage's start and when each input wavelet
            // entered (cycles from that start).
            let mut entered: Vec<Option<overlap::Entered>> = vec![None; n];
            for (i, stage) in c.stages.iter().enumerate() {
                if !self.runs(i, &values, &mut picked)? {
                    // Not picked: it does not run, and what it makes has
                    // no value (the combine reads the picked ones only).
                    record.skipped(self.keep_stats, arch);
                    continue;
                }
                if segment.is_some_and(|s| !s[i]) {
                    // Outside the segment: ended at cycle 0, what it makes
                    // unknown (as a timing-only stage's is).
                    ends[i] = Some(0);
                    for v in &stage.outputs {
                        values[*v] = Some(vec![f32::NAN; c.graph.insts[*v].len]);
                    }
                    record.skipped(self.keep_stats, arch);
                    continue;
                }
                let tensors = stage_tensors(stage, self.pos, |x, v| {
                    if let Some(x) = &values[x] {
                        v.extend_from_slice(x)
                    }
                });
                let (start, arrivals, waited_on) = match &self.overlap {
                    Some(plan) => {
                        let fed = self.fed((plan, i), (&ends, &left), carried.as_ref())?;
                        (fed.start, fed.arrivals, fed.waited_on)
                    }
                    None => (total + c.routing.handoffs[i].cycles, None, before),
                };
                before = Some(i);
                if self.overlap.is_some() {
                    // Its start, for its wafer's holds; what it took in
                    // once it has run.
                    entered[i] = Some((start, BTreeMap::new()));
                }
                let base = wafer_start(&entered, i);
                let from_base = |h: &Vec<u64>| h.iter().map(|t| t + base).collect::<Vec<_>>();
                let departures =
                    self.departures(i, held[i].as_ref().map(from_base).as_ref(), start)?;
                // A stage fed and held as in the pass before, or later
                // but no later than it took its inputs and sent its
                // outputs then, runs as it did then
                // ([`wafer_emulator::Fed::serves`]): a pass that gives a
                // producer a hold feeds its consumer later, as that
                // consumer took it (on the 8B, six attention runs a token).
                let same = |(a, d, _): &Memo| a == &arrivals && d == &departures;
                let later = |(a, d, run): &Memo| run.serves((a, d), (&arrivals, &departures));
                #[cfg(test)]
                let later = |m: &Memo| self.serve_later && later(m);
                let run = match memo[i].take() {
                    Some(m) if same(&m) || later(&m) => {
                        #[cfg(test)]
                        {
                            self.served += !same(&m) as usize;
                        }
                        let run = StageRun {
                            host_seconds: 0.0,
                            backlog: run::backlog(arrivals.as_deref(), &m.2.input_times),
                            ..m.2.clone()
                        };
                        memo[i] = Some(m);
                        run
                    }
                    _ => {
                        let run = self.run_stage(i, &tensors, (&arrivals, &departures), timing)?;
                        if !run.reused {
                            let e = &mut emulated[i];
                            e.runs += 1;
                            e.seconds += run.host_seconds;
                            e.cycles += run.cycles;
                        }
                        if self.overlap.is_some() {
                            memo[i] = Some((arrivals, departures, run.clone()));
                        }
                        run
                    }
                };
                if self.overlap.is_some() {
                    entered[i] = Some((start, run.input_times.clone()));
                    let f = &c.fragments[i];
                    ends[i] = Some(start + run.cycles);
                    left[i] = (f.outputs.first())
                        .and_then(|port| f.element_times(port, &run.output_times))
                        .map(|t| t.into_iter().map(|t| t + start).collect());
                    total = total.max(start + run.cycles);
                } else {
                    total += run.cycles + c.routing.handoffs[i].cycles;
                }
                let out = record.ran((start, waited_on, held[i].is_some()), run, emulated[i]);
                if stage.outputs.is_empty() {
                    // A timing-only step's argmax is unknown (NaN).
                    next = match out[0] {
                        x if x.is_nan() => crate::kernel::TIMING_TOKEN,
                        x => x as u32,
                    };
                } else {
                    let mut at = 0;
                    for v in &stage.outputs {
                        let n = c.graph.insts[*v].len;
                        values[*v] = Some(out[at..at + n].to_vec());
                        at += n;
                    }
                }
            }
            let settled = match &self.overlap {
                None => true,
                Some(plan) => {
                    let holds: Vec<Option<Vec<u64>>> = (plan.holds(c, &entered, &left, &held))
                        .into_iter()
                        .enumerate()
                        .map(|(j, h)| {
                            let b = wafer_start(&entered, j);
                            h.map(|h| h.into_iter().map(|t| t.saturating_sub(b)).collect())
                        })
                        .collect();
                    let same = holds == held;
                    held = holds;
                    same
                }
            };
            // With the links queued, a settled pass's sends give each trip
            // its queued arrival; where that is not the delay the pass
            // carried, the next round carries the new one, until none
            // moves. At `most` rounds the step stops as it is, not settled.
            let (mut moved, mut unsettled) = (false, false);
            let mut queue_waits = Vec::new();
            let queue = self.queue_links;
            if let (true, Some(plan), Some((paths, most)), Some(carried)) =
                (settled, &self.overlap, queue, carried.as_mut())
            {
                let orders = match paths {
                    links::Paths::Ordered(o) => vec![o; plan.trips.len()],
                    links::Paths::Spread => (self.spread)
                        .get_or_insert_with(|| spread::spread(arch, &plan.trips, &left))
                        .clone(),
                };
                let queued =
                    queue::queued_kept(arch, &plan.trips, &left, &orders, &mut self.queues);
                let grow_only = rounds >= QUEUE_ROUNDS_BOTH_WAYS;
                let delay = &mut carried.delay;
                for (k, (t, &a)) in plan.trips.iter().zip(&queued.arrive).enumerate() {
                    let (Some(a), Some(r)) = (a, t.reached(&left, hop)) else {
                        continue;
                    };
                    if a - r > delay[k] || (a - r < delay[k] && !grow_only) {
                        if rounds == most {
                            unsettled = true;
                            break;
                        }
                        delay[k] = a - r;
                        moved = true;
                    }
                }
                rounds += moved as usize;
                if !moved {
                    queue_waits =
                        links::handoff_waits(arch, &plan.trips, delay, &queued.worst_wait);
                }
            }
            if replay && !settled {
                // The functional pass moved a hold the timing-only passes
                // had settled: start again functionally, from no holds.
                #[cfg(test)]
                {
                    self.timing_restarts += 1;
                }
                (held, passes, replay) = (vec![None; n], 0, false);
                continue;
            }
            if settled && !moved && timing && !self.cfg.timing_only {
                // The timing-only passes settled: their last pass again,
                // functionally, its memo's timing-only runs dropped.
                (timing, replay) = (false, true);
                memo.iter_mut().for_each(|m| *m = None);
                #[cfg(test)]
                if self.drop_timing_holds {
                    held = vec![None; n];
                }
                continue;
            }
            if settled && !moved {
                let count = self.check_links && segment.is_none();
                let links = match self.overlap.as_ref().filter(|_| count) {
                    Some(plan) => {
                        // When each trip's wavelet entered its consumer.
                        let taken = |t: &overlap::Trip| {
                            let (start, took) = entered[t.to].as_ref()?;
                            let stream = c.fragments[t.to].program.inputs.get(t.into.0 as usize)?;
                            Some(start + took.get(&stream.name)?.get(t.into.1 as usize)?)
                        };
                        (links::Order::BOTH.iter())
                            .map(|&o| links::load(arch, &plan.trips, &left, &taken, o))
                            .collect()
                    }
                    None => Vec::new(),
                };
                // Where the inputs that came before their consumers
                // could start waited, and whether the PEs had room (a
                // wafer's segment alone leaves that to the whole step).
                // With the links queued, each trip reaches its edge as
                // late as the queue had it.
                let timing = park::StepTiming {
                    left: &left,
                    entered: &entered,
                    ends: &ends,
                    delay: carried.as_ref().map(|c| &c.delay[..]),
                };
                #[cfg(test)]
                let arch = self.parks_arch.as_ref().unwrap_or(arch);
                let parked = match self.overlap.as_ref().filter(|_| segment.is_none()) {
                    Some(plan) => Some(
                        (plan.parks.check(c, arch, &plan.trips, &timing))
                            .map_err(|why| DecodeError::Parked { pos: self.pos, why })?,
                    ),
                    None => None,
                };
                #[cfg(test)]
                {
                    self.parks_queued = timing.delay.is_some();
                }
                break record.into_step(pass::Settled {
                    next,
                    logits: values[c.graph.ret].take().expect("the classifier ran"),
                    cycles: total,
                    passes: passes + 1,
                    queued_rounds: rounds,
                    queue_settled: !unsettled,
                    queue_wafers: self.queues.counts.since(counted),
                    links,
                    queue_waits,
                    parked,
                });
            }
            passes += 1;
            // A round carries its delays through the step, but one can
            // still find a delay only the round before made: at most as
            // many rounds as a chain of stages is long.
            let most = overlap::MAX_PASSES + if self.queue_links.is_some() { 2 * n } else { 0 };
            if passes >= most {
                return Err(DecodeError::Unsettled {
                    pos: self.pos,
                    passes,
                });
            }
        };
        Ok(step)
    }
}

/// Rounds of a queued step ([`Decoder::queue_links`]) in which a trip's
/// carried delay follows the queue either way; after them it only grows,
/// so a queue whose delays would swing back and forth still settles (on
/// the longer of them). The built-in checkpoint, the 1B and the 8B
/// settle within 4 rounds, each delay exactly the queue's.
const QUEUE_ROUNDS_BOTH_WAYS: usize = 8;

/// Picks the next token from the logits (sampling on the host).
pub type Sampler<'a> = dyn FnMut(&[f32]) -> u32 + 'a;

/// Greedy decoding as llama2.c's run.c: from BOS, force the prompt, then
/// take the wafer's argmax (or, with `sample`, the host's pick from the
/// logits); stop after `steps` positions or at BOS. Calls `each` per step
/// with the token emitted and the step. Steps beyond the compiled
/// context, a prompt longer than the steps and NaN logits (in a
/// functional decode) are errors, not a shorter or arbitrary output.
pub fn generate(
    d: &mut Decoder,
    prompt: &[u32],
    steps: usize,
    mut sample: Option<&mut Sampler<'_>>,
    mut each: impl FnMut(u32, &Step),
) -> Result<Vec<u32>, DecodeError> {
    let max = d.compiled.options.max_context;
    if steps > max as usize {
        return Err(DecodeError::Steps { steps, max });
    }
    if prompt.len() > steps {
        return Err(DecodeError::Prompt {
            prompt: prompt.len(),
            steps,
        });
    }
    let timing = d.cfg.timing_only;
    crate::generation::decode_loop(
        prompt,
        steps,
        |token, pos| {
            let step = d.step(token)?;
            if !timing && step.logits.iter().any(|v| v.is_nan()) {
                return Err(DecodeError::NanLogits { pos: pos as u32 });
            }
            Ok(step)
        },
        |step| match sample.as_mut() {
            Some(f) => f(&step.logits),
            None => step.next,
        },
        &mut each,
    )
}

/// A stage's input tensors by port: each port's sources in order, an IR
/// value's elements appended by `value` (nothing for a value an expert
/// that did not run would have made).
pub(crate) fn stage_tensors(
    stage: &crate::stage::Stage,
    pos: u32,
    mut value: impl FnMut(usize, &mut Vec<f32>),
) -> BTreeMap<String, Vec<f32>> {
    let mut tensors = BTreeMap::new();
    for (port, srcs) in &stage.inputs {
        let mut v = Vec::new();
        for s in srcs {
            match s {
                Src::Pos => v.push(pos as f32),
                Src::One => v.push(1.0),
                Src::Value(x) => value(*x, &mut v),
                Src::ExpertWeights(r) => {
                    let mut route = Vec::new();
                    value(*r, &mut route);
                    let mut picks = crate::ir::picks(&route);
                    // Timing-only picks are NaN: their order is no matter.
                    if picks.iter().all(|(e, _)| (*e as f32).is_finite()) {
                        picks.sort_by_key(|(e, _)| *e);
                    }
                    v.extend(picks.iter().map(|(_, w)| *w));
                }
            }
        }
        tensors.insert(port.clone(), v);
    }
    tensors
}
