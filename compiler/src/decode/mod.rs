//! Decoding on the emulated wafer: each step runs every stage's kernel on
//! the emulator, in order, with the values the earlier stages produced.
//!
//! The attention stages keep their SRAM between steps (the KV cache lives
//! there, as on the wafer); every other stage starts from its program's
//! image, which holds the weights. A step's cycles are the sum of the
//! stages' emulated cycles and their modelled hand-offs
//! ([`crate::route`]).

use crate::codegen::Compiled;
use crate::place::Kernel;
use crate::stage::Src;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wafer_emulator::stats::Stats;
use wafer_emulator::trace::Trace;
use wafer_emulator::{Memory, Prepared, RunConfig, RunError};

mod error;
pub mod overlap;
mod scratch;
mod shared;

pub use error::DecodeError;

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
    /// does not keep them ([`Decoder::keep_stats`]).
    pub stage_stats: Vec<Arc<Stats>>,
    pub stage_traces: Vec<Option<Trace>>,
    /// The step's cycles: with barriers, its stages' and hand-offs'
    /// sum; overlapped ([`Decoder::overlap`]), the last stage's end.
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
    /// its edge and waited there at once ([`overlap::backlog`]); 0 with
    /// barriers. On a wafer they would wait in the routes' buffers, and
    /// past what those hold they would hold the producer back, which the
    /// overlapped step leaves out.
    pub stage_backlog: Vec<u64>,
    /// Per stage: its timing-only results are those of an identical run
    /// (see [`Decoder::reuse`]) rather than emulated again.
    pub stage_reused: Vec<bool>,
    /// Host seconds each stage's emulation took (0 where it was reused):
    /// where the emulator's time goes.
    pub stage_host_seconds: Vec<f64>,
    /// Per stage: whether it ran (an expert the router did not pick did
    /// not: its cycles, hand-off and time are 0, its statistics empty).
    pub stage_ran: Vec<bool>,
}

/// A timing-only stage run's results, kept for the stages whose programs
/// differ from it only in their weights.
struct Reusable {
    cycles: u64,
    outputs: BTreeMap<String, Vec<f32>>,
    /// When each output wavelet left (empty for a run another process
    /// made: those are not overlapped).
    output_times: BTreeMap<String, Vec<u64>>,
    /// Its [`StageRun::backlog`].
    backlog: u64,
    stats: Arc<Stats>,
    time: PeTime,
    trace: Option<Trace>,
    /// The decode step that last used it.
    used: u64,
}

/// Timing-only runs by what determines them: the program less its weights
/// and the inputs' known values
/// ([`wafer_emulator::engine::timing_fingerprint`]). The layers of a model
/// are the same programs with other weights, so a timing-only step
/// emulates each distinct stage once.
#[derive(Default)]
struct Reuse {
    runs: HashMap<Vec<u8>, Reusable>,
    step: u64,
}

/// At most this many bytes of stages' starting SRAM are cached between
/// steps (a copy per stage, next to the one a run works on).
pub const IMAGE_CACHE_BYTES: u64 = 8 << 30;

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
        }
    }

    /// Overlap each step's stages (off by default): a stage starts when
    /// its first input element has arrived and its PEs are free, and takes
    /// each element as it arrives (see `overlap.rs`), so a step's cycles
    /// are its last stage's end rather than the stages' and hand-offs'
    /// sum. Tokens are the same either way.
    pub fn overlap(&mut self, on: bool) {
        self.overlap = on.then(|| overlap::Plan::new(self.compiled));
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
    /// stage). Results are the same either way (tested); off, every stage
    /// is emulated, which is what measures the engine on a whole model.
    /// A result is kept while the steps keep using it.
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

    /// Stage `i`'s starting SRAM: a copy from the cache, built on first use
    /// (and kept, when `cache`, while the cache holds under
    /// [`IMAGE_CACHE_BYTES`]).
    fn image(&mut self, i: usize, cache: bool) -> Result<Memory, RunError> {
        if let Some(mem) = &self.images[i] {
            return Ok(wafer_emulator::copy_memory(mem, self.cfg.threads));
        }
        let f = &self.compiled.fragments[i];
        let threads = self.cfg.threads;
        let mem = self.prepared(i)?.initial_memory(&f.program, threads)?;
        let bytes: u64 = mem.iter().flatten().map(|s| s.len() as u64).sum();
        if cache && self.image_bytes + bytes <= IMAGE_CACHE_BYTES {
            self.image_bytes += bytes;
            self.images[i] = Some(wafer_emulator::copy_memory(&mem, threads));
        }
        Ok(mem)
    }

    /// Whether no run of stage `i` changes its state
    /// ([`scratch::keeps_state`]), found on first use.
    fn keeps_state(&mut self, i: usize) -> bool {
        let f = &self.compiled.fragments[i];
        *self.keeps[i].get_or_insert_with(|| scratch::keeps_state(f))
    }

    /// Keep `mem`, stage `i`'s starting image, for its next run, while
    /// the images held stay under [`IMAGE_CACHE_BYTES`] (counted once a
    /// stage); past it the next run builds the image again.
    fn hold(&mut self, i: usize, mem: Memory) {
        if !self.held[i] {
            let bytes: u64 = mem.iter().flatten().map(|s| s.len() as u64).sum();
            if self.image_bytes + bytes > IMAGE_CACHE_BYTES {
                return;
            }
            self.image_bytes += bytes;
            self.held[i] = true;
        }
        self.memory[i] = Some(mem);
    }

    /// Stage `i`'s prepared program, prepared on first use.
    fn prepared(&mut self, i: usize) -> Result<&Prepared, RunError> {
        if self.prepared[i].is_none() {
            let f = &self.compiled.fragments[i];
            self.prepared[i] = Some(wafer_emulator::prepare(
                &f.program,
                &self.compiled.options.arch,
            )?);
        }
        Ok(self.prepared[i].as_ref().expect("prepared above"))
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
        let arch = &c.options.arch;
        let mut values: Vec<Option<Vec<f32>>> = vec![None; c.graph.insts.len()];
        for (i, inst) in c.graph.insts.iter().enumerate() {
            match inst.op {
                crate::ir::Op::Token => values[i] = Some(vec![token as f32]),
                crate::ir::Op::Position => values[i] = Some(vec![self.pos as f32]),
                _ => {}
            }
        }
        let mut stage_cycles = Vec::with_capacity(c.stages.len());
        let mut stage_time = Vec::with_capacity(c.stages.len());
        let mut stage_stats = Vec::with_capacity(c.stages.len());
        let mut stage_traces = Vec::with_capacity(c.stages.len());
        let mut next = 0;
        let mut total = 0;
        let mut stage_reused = Vec::with_capacity(c.stages.len());
        let mut stage_host_seconds = Vec::with_capacity(c.stages.len());
        let mut stage_ran = Vec::with_capacity(c.stages.len());
        let mut stage_start = Vec::with_capacity(c.stages.len());
        let mut stage_waited_on = Vec::with_capacity(c.stages.len());
        let mut stage_backlog = Vec::with_capacity(c.stages.len());
        let mut before = None;
        // Overlapped: each stage's end and when each output element left
        // (absolute cycles of the step).
        let mut ends: Vec<Option<u64>> = vec![None; c.stages.len()];
        let mut left: Vec<Option<Vec<u64>>> = vec![None; c.stages.len()];
        let timing = self.cfg.timing_only;
        // Per route value, the experts it picked.
        let mut picked: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        if let Some(r) = self.reuse.as_mut().filter(|_| timing) {
            r.step += 1;
            let last = r.step - 1;
            r.runs.retain(|_, run| run.used >= last);
        }
        for (i, stage) in c.stages.iter().enumerate() {
            if let Some(p) = stage.when {
                let picks = match picked.get(&p.route) {
                    Some(picks) => picks,
                    None => {
                        let (experts, k) = crate::experts::shape(&c.graph, p.route);
                        let picks = if timing {
                            crate::experts::seeded(self.expert_seed, self.pos, p.route, experts, k)
                        } else {
                            let route = values[p.route].as_deref().unwrap_or(&[]);
                            crate::experts::from_route(route, experts).ok_or_else(|| {
                                DecodeError::Routing {
                                    pos: self.pos,
                                    stage: stage.name.clone(),
                                    route: route.to_vec(),
                                }
                            })?
                        };
                        picked.entry(p.route).or_insert(picks)
                    }
                };
                if !picks.contains(&p.expert) {
                    // Not picked: it does not run, and what it makes has
                    // no value (the combine reads the picked ones only).
                    stage_ran.push(false);
                    stage_start.push(0);
                    stage_waited_on.push(None);
                    stage_backlog.push(0);
                    stage_cycles.push(0);
                    stage_time.push(PeTime::default());
                    if self.keep_stats {
                        stage_stats.push(Arc::new(no_stats(arch, 0)));
                    }
                    stage_traces.push(None);
                    stage_reused.push(false);
                    stage_host_seconds.push(0.0);
                    continue;
                }
            }
            stage_ran.push(true);
            let tensors = stage_tensors(stage, self.pos, |x, v| {
                if let Some(x) = &values[x] {
                    v.extend_from_slice(x)
                }
            });
            let (start, arrivals, waited_on) = match &self.overlap {
                Some(plan) => {
                    let s = plan.schedule(c, i, &ends, &left);
                    let arrivals =
                        c.fragments[i]
                            .arrivals(&s.arrivals)
                            .map_err(|e| DecodeError::Run {
                                pos: self.pos,
                                stage: stage.name.clone(),
                                error: Box::new(RunError::Input {
                                    name: stage.name.clone(),
                                    message: e.to_string(),
                                }),
                            })?;
                    let arrivals = (!arrivals.is_empty()).then(|| Arc::new(arrivals));
                    (s.start, arrivals, s.waited_on)
                }
                None => (total + c.routing.handoffs[i].cycles, None, before),
            };
            before = Some(i);
            stage_waited_on.push(waited_on);
            let run = self.run_stage(i, &tensors, arrivals)?;
            stage_start.push(start);
            if self.overlap.is_some() {
                let f = &c.fragments[i];
                ends[i] = Some(start + run.cycles);
                left[i] = (f.outputs.first())
                    .and_then(|port| f.element_times(port, &run.output_times))
                    .map(|t| t.into_iter().map(|t| t + start).collect());
                total = total.max(start + run.cycles);
            } else {
                total += run.cycles + c.routing.handoffs[i].cycles;
            }
            stage_cycles.push(run.cycles);
            stage_backlog.push(run.backlog);
            stage_time.push(run.time);
            if let Some(stats) = run.stats {
                stage_stats.push(stats);
            }
            stage_traces.push(run.trace);
            stage_reused.push(run.reused);
            stage_host_seconds.push(run.host_seconds);
            let out = run.out;
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
        self.pos += 1;
        Ok(Step {
            next,
            logits: values[c.graph.ret].take().expect("the classifier ran"),
            stage_cycles,
            stage_time,
            stage_stats,
            stage_traces,
            cycles: total,
            stage_start,
            stage_waited_on,
            stage_backlog,
            stage_reused,
            stage_host_seconds,
            stage_ran,
        })
    }

    /// Runs stage `i` at the decoder's position on `tensors` (its input
    /// ports' values): from its saved SRAM (attention's KV cache) or its
    /// image, or, timing-only, from an identical run's results.
    pub(crate) fn run_stage(
        &mut self,
        i: usize,
        tensors: &BTreeMap<String, Vec<f32>>,
        arrivals: Option<Arc<wafer_emulator::Arrivals>>,
    ) -> Result<StageRun, DecodeError> {
        let c = self.compiled;
        let (stage, f) = (&c.stages[i], &c.fragments[i]);
        let arch = &c.options.arch;
        let timing = self.cfg.timing_only;
        if cancelled(&self.cfg) {
            return Err(DecodeError::Interrupted { pos: self.pos });
        }
        let pos = self.pos;
        let err = |e| match e {
            RunError::Interrupted { .. } => DecodeError::Interrupted { pos },
            e => DecodeError::Run {
                pos,
                stage: stage.name.clone(),
                error: Box::new(e),
            },
        };
        let inputs = f.stream_inputs(tensors).map_err(|e| {
            err(RunError::Input {
                name: stage.name.clone(),
                message: e.to_string(),
            })
        })?;
        let keep = !timing && matches!(c.sites[i].kernel, Kernel::Attention(_));
        // A stage whose runs leave its state alone runs again on the SRAM
        // its last run ended with, its scratch zeroed: its image without
        // a copy.
        let resident = !timing && !keep && self.keeps_state(i);
        // Arrivals change the timing: they are part of what a run is
        // reused by.
        let key = (timing && self.reuse.is_some()).then(|| {
            let mut key = wafer_emulator::engine::timing_fingerprint(&f.program, &inputs);
            for (name, at) in arrivals.iter().flat_map(|a| a.iter()) {
                key.extend_from_slice(name.as_bytes());
                key.push(0);
                at.iter()
                    .for_each(|t| key.extend_from_slice(&t.to_le_bytes()));
            }
            key
        });
        let step = self.reuse.as_ref().map_or(0, |r| r.step);
        let overlapped = self.overlap.is_some();
        let hit = key
            .as_ref()
            .and_then(|k| self.reuse.as_mut()?.runs.get_mut(k));
        if let Some(run) = hit {
            run.used = step;
            return Ok(StageRun {
                out: f.gather(&f.outputs[0], &run.outputs),
                // Only an overlapped step reads them.
                output_times: match overlapped {
                    true => run.output_times.clone(),
                    false => BTreeMap::new(),
                },
                backlog: run.backlog,
                cycles: run.cycles,
                time: run.time,
                stats: self.keep_stats.then(|| run.stats.clone()),
                trace: run.trace.clone(),
                reused: true,
                host_seconds: 0.0,
            });
        }
        let started = std::time::Instant::now();
        let mut start = match self.memory[i].take() {
            Some(mem) => Some(mem),
            None if timing => None,
            // A kept or resident stage resumes from its own SRAM from now
            // on: no copy of its image is worth caching.
            None => Some(self.image(i, !keep && !resident).map_err(err)?),
        };
        if let Some(mem) = start.as_mut().filter(|_| self.scramble) {
            scratch::scramble(f, mem);
        }
        let cfg = RunConfig {
            arrivals: arrivals.clone(),
            ..self.cfg.clone()
        };
        let r = match start {
            Some(mem) => {
                let prep = self.prepared(i).map_err(err)?;
                prep.run_resume(&f.program, &inputs, &cfg, mem)
            }
            None => wafer_emulator::run(&f.program, arch, &inputs, &cfg),
        }
        .map_err(err)?;
        let out = f.gather(&f.outputs[0], &r.outputs);
        let backlog = (arrivals.iter().flat_map(|a| a.iter()))
            .filter_map(|(name, at)| Some(overlap::backlog(at, r.input_times.get(name)?)))
            .max()
            .unwrap_or(0);
        let stats = Arc::new(r.stats);
        let time = PeTime::of(&stats);
        if keep {
            self.memory[i] = Some(r.memory);
        } else if resident {
            let mut mem = r.memory;
            scratch::zero_scratch(f, &mut mem);
            self.hold(i, mem);
        }
        let trace = match (key, self.reuse.as_mut()) {
            (Some(k), Some(reuse)) => {
                let trace = r.trace.clone();
                let run = Reusable {
                    cycles: r.cycles,
                    outputs: r.outputs,
                    output_times: r.output_times.clone(),
                    backlog,
                    stats: stats.clone(),
                    time,
                    trace: r.trace,
                    used: step,
                };
                reuse.runs.insert(k, run);
                trace
            }
            _ => r.trace,
        };
        Ok(StageRun {
            out,
            output_times: r.output_times,
            backlog,
            cycles: r.cycles,
            time,
            stats: self.keep_stats.then_some(stats),
            trace,
            reused: false,
            host_seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// One stage's run ([`Decoder::run_stage`]).
pub(crate) struct StageRun {
    /// Its output port's values.
    pub out: Vec<f32>,
    /// When each of its output streams' wavelets left
    /// ([`wafer_emulator::RunResult::output_times`]).
    pub output_times: BTreeMap<String, Vec<u64>>,
    /// Fed arrivals, the most of its input wavelets waiting at its edge
    /// at once ([`overlap::backlog`]).
    pub backlog: u64,
    pub cycles: u64,
    pub time: PeTime,
    /// Its statistics, when the decoder keeps them.
    pub stats: Option<Arc<Stats>>,
    pub trace: Option<Trace>,
    /// Whether an identical run's results stood in for it.
    pub reused: bool,
    /// Host seconds its emulation took (0 when reused).
    pub host_seconds: f64,
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

/// Statistics of no PEs: what a step keeps for a stage whose statistics
/// it does not read (or that did not run).
fn no_stats(arch: &wafer_emulator::Arch, cycles: u64) -> Stats {
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
