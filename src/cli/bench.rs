//! `wafer bench`: with `--emulator`, the emulator timed against itself and
//! against the CPU reference forward pass; without, the wafer against GPUs
//! ([`super::compare`]). Every figure is a ratio of two timings
//! taken in the same run, on the same model and tokens: this machine is
//! noisy, ratios hold up.

use super::compile::TargetArgs;
use super::model::load;
use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use std::time::Instant;
use wafer_compiler::decode::Decoder;
use wafer_compiler::decode::links::{Order, Paths};
use wafer_compiler::{Compiled, reference};
use wafer_emulator::Engine;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Measure the emulator: its engines on the same decode steps, and the
    /// host time per emulated token against the CPU reference's.
    #[arg(long)]
    pub emulator: bool,
    /// A llama2.c checkpoint, a Hugging Face directory or a built-in name
    /// (seeded random weights); with none, the built-in aidreams260K.
    pub model: Option<String>,
    /// Decode steps emulated (default: 4 with --emulator, each engine
    /// timed on them; else 2, averaged for the table).
    #[arg(long, value_parser = super::flags::count::<1, 1_000_000>, allow_negative_numbers = true)]
    pub steps: Option<usize>,
    /// Context length the table's decode steps attend over (default 128,
    /// at most the compiled --max-context less --steps).
    #[arg(long, value_parser = super::flags::count32::<0, { 1 << 30 }>, allow_negative_numbers = true)]
    pub context: Option<u32>,
    /// GPUs for the roofline rows, by id (comma-separated; default: every
    /// GPU in the specs: a100-40, a100-80, h100, h100-pcie, h200, b200).
    #[arg(long)]
    pub gpus: Option<String>,
    /// A GPU specs file instead of the built-in baselines/gpus.toml.
    #[arg(long)]
    pub gpu_specs: Option<std::path::PathBuf>,
    /// Where the GPU script's measured JSON files are.
    #[arg(long, default_value = "baselines/measured")]
    pub baselines: std::path::PathBuf,
    /// The wafer's latency from the kernels' cost models instead of
    /// emulating (seconds instead of minutes for an 8B model; the cost
    /// models give the emulated cycles for these kernels).
    #[arg(long)]
    pub predict: bool,
    /// Run each step's stages one after another, each waiting at a
    /// barrier for its producers to end and the modelled hand-off's
    /// cycles (the default before 2026-12-05). By default the stages
    /// overlap: a stage starts once its first input element has arrived
    /// and its PEs are free, and takes each element when it arrives (the
    /// table gives the barriers' cost model beside it, an upper bound).
    /// With --predict, the default is the cost models' estimate of the
    /// overlapped step; with --emulator, every engine's steps are
    /// overlapped.
    #[arg(long)]
    pub barriers: bool,
    /// The default since 2026-12-05 (each step's stages overlapped);
    /// kept so that older commands still run.
    #[arg(long, hide = true, conflicts_with = "barriers")]
    pub overlap: bool,
    /// Count how the hand-offs' wavelets would load the
    /// links on dimension-ordered paths in the overlapped step's own
    /// timing, a check of the free routes it takes (seconds to a minute
    /// and up to 6 GB for an 8B model; not with --predict or --emulator).
    #[arg(long, conflicts_with = "barriers")]
    pub links: bool,
    /// Feed each stage no earlier than its inputs would
    /// reach it with the hand-offs on these paths and each link
    /// passing one wavelet a cycle, first come first served (a model of
    /// the routes in place of taking them as free of other traffic; the
    /// step runs in rounds, each carrying its queue delays through the
    /// step, until every trip is fed the delay its queue gives it: 2 on
    /// X-then-Y paths for the 1B and the 8B, whose benches then take
    /// about 1 and 3.5 minutes on 2 cores).
    #[arg(long, conflicts_with = "barriers", value_enum)]
    pub queue: Option<QueuePaths>,
    /// With --queue: stop each step after this many rounds, settled or
    /// not (the table says which; an unsettled step's figure is not the
    /// queued model's).
    #[arg(long, requires = "queue", value_parser = super::flags::count::<1, 1_000_000>)]
    pub queue_rounds: Option<usize>,
    /// Also draw the table as bars of tokens/s (.svg or .png).
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// Untimed decode steps before them (the first step compiles JIT code
    /// and builds each stage's starting SRAM; later steps reuse both).
    #[arg(long, default_value_t = 1, value_parser = super::flags::count::<0, 1_000_000>, allow_negative_numbers = true)]
    pub warmup: usize,
    /// Leave out the reference engine (it steps every PE every cycle: for
    /// large models, hours).
    #[arg(long)]
    pub no_reference: bool,
    /// Leave out the interpreter (the JIT engine's baseline).
    #[arg(long)]
    pub no_interp: bool,
    /// Worker threads for the JIT engine's run and the timing-only runs
    /// (the JIT engine is also run on 1 to compare, the two taking turns
    /// step by step on one decoder), 1..=1024; default: this host's cores.
    #[arg(long, value_parser = super::flags::threads, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// How many of each engine's slowest stages to list, by the host
    /// seconds their emulation took over every step (default: 5 in the
    /// JSON, 3 in the text; 0: every stage it emulated, with how many
    /// times).
    #[arg(long, value_parser = super::flags::count::<0, 1_000_000>, allow_negative_numbers = true)]
    pub slowest: Option<usize>,
    /// Run only the timing-only decode (for models whose weights do not
    /// fit in host memory).
    #[arg(long)]
    pub timing_only: bool,
    /// Time the timing-only decode only as it reuses the results of
    /// identical stages (the layers differ only in their weights), not
    /// also emulating every stage: an 8B model's every-stage timing-only
    /// token takes over an hour on a 2-core host.
    #[arg(long)]
    pub only_reuse: bool,
    /// A mixture of experts' timing-only steps run the experts a routing
    /// seeded by this picks (timing-only steps have no values, so no
    /// router picks; the table says so); the cost models use seed 0.
    #[arg(long, default_value_t = wafer_compiler::experts::DEFAULT_SEED)]
    pub expert_seed: u64,
    /// Also the time to first token for a prompt of this many positions
    /// (a prefill on the wafer from the cost models, beside the GPUs'
    /// prefill rooflines), e.g. 512; at most the compiled --max-context.
    #[arg(long, value_parser = super::flags::count32::<1, { 1 << 30 }>, allow_negative_numbers = true)]
    pub prompt_len: Option<u32>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// Whether each step's stages overlap: the default, `--barriers` not
    /// given.
    fn overlapped(&self) -> bool {
        !self.barriers
    }
}

const JIT: &str = "jit engine";
const JIT_1: &str = "jit engine, 1 thread";
const INTERP: &str = "interp engine";
const TIMING: &str = "interp engine, timing-only";
const REUSE: &str = "timing-only, reusing stages";
const REFERENCE: &str = "reference engine";

/// One engine's decode of the bench's tokens.
struct Timed {
    label: &'static str,
    /// Each of its timed steps' host seconds, in the order it ran them
    /// (on a host that drifts, their spread says how far to trust the
    /// mean).
    step_seconds: Vec<f64>,
    /// The first step's host seconds and the stage runs it emulated, over
    /// its passes (the others reused a run, or did not run): the
    /// decoder's first step, warm-up or timed. `None` for an engine timed
    /// on another's decoder, whose first step is a warm one.
    first_step: Option<(f64, usize)>,
    /// The decoder's cycles per step, every step it decoded (warm-up
    /// steps and steps timed for an engine sharing it included).
    cycles: Vec<u64>,
    /// Each step's passes (overlapped: until its holds settled; 1 with
    /// barriers), over the same steps as `cycles`.
    passes: Vec<usize>,
    /// PE-cycles emulated in its timed steps, over their passes (reused
    /// runs' not counted).
    pe_cycles: u64,
    /// Stages per timed step whose results were reused.
    reused_stages: usize,
    /// The decoder's tokens, over the same steps as `cycles`.
    tokens: Vec<u32>,
    /// The stages that took the most host time in its steps (the warm-up
    /// steps counted for the decoder's first engine).
    slowest: Vec<StageHost>,
}

impl Timed {
    /// The mean of its timed steps' host seconds.
    fn seconds_per_token(&self) -> f64 {
        self.step_seconds.iter().sum::<f64>() / self.step_seconds.len() as f64
    }
}

/// One stage's emulation over a bench's steps: where the host time went.
struct StageHost {
    name: String,
    pes: u64,
    /// Times it was emulated (not reused), over the steps' passes.
    runs: u32,
    seconds: f64,
    pe_cycles: u64,
}

impl StageHost {
    fn rate(&self) -> f64 {
        self.pe_cycles as f64 / self.seconds
    }
}

/// How many of the slowest stages a report lists: `--slowest` (0: all),
/// else `default`.
fn listed(slowest: Option<usize>, default: usize) -> usize {
    match slowest {
        Some(0) => usize::MAX,
        Some(k) => k,
        None => default,
    }
}

/// The stages emulated, each with its host seconds summed over its runs,
/// the most first.
fn slowest_stages(c: &Compiled, pes: &[u64], per_stage: &[(u32, f64, u64)]) -> Vec<StageHost> {
    let mut all: Vec<StageHost> = per_stage
        .iter()
        .enumerate()
        .filter(|(_, (runs, _, _))| *runs > 0)
        .map(|(i, &(runs, seconds, pe_cycles))| StageHost {
            name: c.stages[i].name.clone(),
            pes: pes[i],
            runs,
            seconds,
            pe_cycles,
        })
        .collect();
    all.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    all
}

/// PEs with code in each stage: the PEs a stage's cycles are counted on.
fn stage_pes(c: &Compiled) -> Vec<u64> {
    c.fragments.iter().map(|f| f.program.placed_pes()).collect()
}

/// Which of `n` engines sharing a decoder times its `j`th timed step:
/// they take turns, every other round in reverse (A B B A A B ... for
/// two), so a host that drifts over the run slows each about as much.
fn turn(j: usize, n: usize) -> usize {
    let (round, k) = (j / n, j % n);
    if round % 2 == 0 { k } else { n - 1 - k }
}

/// What one engine timed on a shared decoder has summed so far.
#[derive(Default)]
struct Tally {
    step_seconds: Vec<f64>,
    first_step: Option<(f64, usize)>,
    pe_cycles: u64,
    reused: usize,
    /// Per stage: runs, host seconds, PE-cycles.
    per_stage: Vec<(u32, f64, u64)>,
}

/// Decode from BOS on one decoder of `engine`, `warmup` untimed steps
/// and then `steps` timed steps for each of `timers` (a label and its
/// thread count; results do not depend on it), the timers taking
/// [`turn`]s; feeding `feed` when given (so every engine sees the same
/// tokens), else the wafer's own argmax. The warm-up steps run on the
/// first timer's threads. One decoder, rather than one per thread
/// count, is why the turns are possible (a functional decoder of a
/// 1B-sized model holds gigabytes) and why the thread counts' runs can
/// be compared within seconds of each other on a host that drifts.
fn decode(
    c: &Compiled,
    engine: Engine,
    timers: &[(&'static str, usize)],
    (timing_only, reuse, overlap): (bool, bool, bool),
    (warmup, steps): (usize, usize),
    feed: Option<&[u32]>,
) -> anyhow::Result<Vec<Timed>> {
    let mut d = Decoder::new(c);
    d.overlap(overlap);
    d.engine(engine);
    d.timing_only(timing_only);
    d.reuse(reuse);
    d.keep_stats(false);
    d.cancel_on(super::interrupt_flag());
    let pes = stage_pes(c);
    let total = warmup + steps * timers.len();
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:24} {bar:30} {pos}/{len} steps [{elapsed}]")
            .expect("a valid template"),
    );
    let names: Vec<&str> = timers.iter().map(|(label, _)| *label).collect();
    bar.set_message(names.join(" / "));
    let mut token = wafer_compiler::tokenizer::BOS;
    let (mut cycles, mut tokens, mut passes) = (Vec::new(), Vec::new(), Vec::new());
    let mut tallies: Vec<Tally> = (0..timers.len())
        .map(|_| Tally {
            per_stage: vec![(0, 0.0, 0); c.stages.len()],
            ..Tally::default()
        })
        .collect();
    for i in 0..total {
        let timed = i.checked_sub(warmup);
        let who = timed.map_or(0, |j| turn(j, timers.len()));
        d.threads(timers[who].1);
        let start = Instant::now();
        let step = d.step(token)?;
        let took = start.elapsed().as_secs_f64();
        let t = &mut tallies[who];
        for (k, s) in t.per_stage.iter_mut().enumerate() {
            let e = &step.stage_emulated[k];
            s.0 += e.runs;
            s.1 += e.seconds;
            s.2 += e.cycles * pes[k];
        }
        if i == 0 {
            let runs = step.stage_emulated.iter().map(|e| e.runs as usize).sum();
            t.first_step = Some((took, runs));
        }
        if timed.is_some() {
            t.step_seconds.push(took);
            t.pe_cycles += (step.stage_emulated.iter())
                .zip(&pes)
                .map(|(e, p)| e.cycles * p)
                .sum::<u64>();
            t.reused += step.stage_reused.iter().filter(|r| **r).count();
        }
        passes.push(step.passes);
        cycles.push(step.cycles);
        token = feed.map_or(step.next, |f| f[i]);
        tokens.push(token);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(timers
        .iter()
        .zip(tallies)
        .map(|(&(label, _), t)| Timed {
            label,
            step_seconds: t.step_seconds,
            first_step: t.first_step,
            cycles: cycles.clone(),
            passes: passes.clone(),
            pe_cycles: t.pe_cycles,
            reused_stages: t.reused / steps,
            tokens: tokens.clone(),
            slowest: slowest_stages(c, &pes, &t.per_stage),
        })
        .collect())
}

/// Which paths `--queue` puts the hand-offs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum QueuePaths {
    /// Along the source's row, then the destination's column.
    Xy,
    /// Along the source's column, then the destination's row.
    Yx,
    /// Each pair of exit and entry PEs in whichever of the two orders its
    /// wavelets find less crowded, planned greedily on the first step.
    Spread,
}

impl QueuePaths {
    fn paths(self) -> Paths {
        match self {
            QueuePaths::Xy => Paths::Ordered(Order::XFirst),
            QueuePaths::Yx => Paths::Ordered(Order::YFirst),
            QueuePaths::Spread => Paths::Spread,
        }
    }
}

/// Peak resident memory of this process so far (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    super::proc_kib("/proc/self/status", "VmHWM:").map(|k| k * 1024)
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    if let Some(p) = &a.plot {
        super::flags::writable("--plot", p)?;
    }
    if a.queue.is_some() && (a.predict || a.emulator) {
        bail!(
            "--queue feeds the emulated overlapped step its hand-offs queued on the links: run it without --barriers, --predict or --emulator"
        );
    }
    if a.links && (a.predict || a.emulator) {
        bail!(
            "--links counts the emulated overlapped step's hand-offs on the links: run it without --barriers, --predict or --emulator"
        );
    }
    if a.emulator && a.prompt_len.is_some() {
        bail!(
            "--prompt-len adds a time to first token to the wafer-vs-GPU table: run it without --emulator (`wafer generate --prompt` emulates a prefill)"
        );
    }
    let emulator_only = [
        ("--slowest", a.slowest.is_some()),
        ("--only-reuse", a.only_reuse),
        ("--no-reference", a.no_reference),
        ("--no-interp", a.no_interp),
    ];
    if let Some((flag, _)) = emulator_only
        .iter()
        .find(|(_, given)| *given && !a.emulator)
    {
        bail!(
            "{flag} chooses what `wafer bench --emulator` runs or lists: add --emulator, or leave {flag} out"
        );
    }
    if a.emulator && super::ranks::ranks() > 1 {
        bail!(
            "--emulator times engines in one process: run it without mpirun (the table without --emulator shares its steps between ranks)"
        );
    }
    let spread = a.overlapped() && matches!(a.queue, Some(QueuePaths::Spread));
    if spread && !a.predict && super::ranks::ranks() > 1 && super::ranks::rank() == 0 {
        // Spread paths are planned over all the step's wafers at once.
        eprintln!(
            "note: each rank emulates the whole first step queued on spread paths (it plans them over every wafer at once); the ranks share the steps after it, and every step with --queue xy or yx"
        );
    }
    let l = load(a.model.as_deref(), None)?;
    let compile_start = Instant::now();
    let c = a.target.compile_on_ranks(&l)?;
    let compile_s = compile_start.elapsed().as_secs_f64();
    if !a.emulator {
        let request = super::compare::Request {
            steps: a.steps,
            context: a.context,
            predict: a.predict,
            gpu_specs: a.gpu_specs.as_deref(),
            gpus: a.gpus.as_deref(),
            baselines: &a.baselines,
            plot: a.plot.as_deref(),
            json: a.json,
            expert_seed: a.expert_seed,
            prompt_len: a.prompt_len,
            overlap: a.overlapped(),
            links: a.links,
            queue: a
                .queue
                .map(|q| (q.paths(), a.queue_rounds.unwrap_or(usize::MAX))),
        };
        return super::compare::run(&request, &l, &c);
    }
    let max = c.options.max_context as usize;
    if a.warmup >= max {
        bail!(
            "--warmup {} leaves no step to time: the KV cache holds {max} positions",
            a.warmup
        );
    }
    let warmup = a.warmup;
    let functional = !a.timing_only;
    let threads = super::threads(a.threads);
    // The JIT engine on `threads` and on 1 take turns on one decoder,
    // which decodes `steps` positions for each.
    let turns = if functional && threads > 1 { 2 } else { 1 };
    let left = (max - warmup) / turns;
    let steps = match a.steps {
        Some(n) if n > left => bail!(
            "--steps {n}: after --warmup {warmup} the KV cache holds {} more positions (--max-context {max}){}",
            max - warmup,
            if turns > 1 {
                format!(
                    ", and the JIT engine on {threads} threads and on 1 take turns on one decoder, {n} steps each: at most --steps {left}, or --threads 1"
                )
            } else {
                String::new()
            }
        ),
        Some(n) => n,
        None => 4.min(left),
    };
    // The JIT engine on `threads` and on 1 take turns on one decoder.
    let jit: Timers = if threads > 1 {
        &[(JIT, threads), (JIT_1, 1)]
    } else {
        &[(JIT, threads)]
    };
    // Per decoder: its engine, the labels and thread counts timed on it,
    // timing-only, and whether it runs.
    type Timers<'a> = &'a [(&'static str, usize)];
    let plan: [(Engine, Timers, bool, bool); 5] = [
        (Engine::Jit, jit, false, functional),
        (
            Engine::Interp,
            &[(INTERP, 1)],
            false,
            functional && !a.no_interp,
        ),
        // Timing-only runs step the grid in bands on the threads.
        (Engine::Interp, &[(TIMING, threads)], true, !a.only_reuse),
        (Engine::Interp, &[(REUSE, threads)], true, true),
        (
            Engine::Reference,
            &[(REFERENCE, 1)],
            false,
            functional && !a.no_reference,
        ),
    ];
    let mut runs: Vec<Timed> = Vec::new();
    for (engine, timers, timing_only, wanted) in plan {
        if wanted {
            let reuse = timers[0].0 == REUSE;
            // Later engines are fed the first one's tokens.
            let feed = runs.first().map(|r| r.tokens.clone());
            runs.extend(decode(
                &c,
                engine,
                timers,
                (timing_only, reuse, a.overlapped()),
                (warmup, steps),
                feed.as_deref(),
            )?);
        }
    }
    // Every engine must count the same cycles, and settle in the same
    // passes, on the same tokens: on the steps both decoded (engines
    // taking turns on a decoder decode more of them).
    for r in &runs[1..] {
        let n = r.cycles.len().min(runs[0].cycles.len());
        if r.cycles[..n] != runs[0].cycles[..n] {
            bail!(
                "`{}` counted {:?} cycles per step, `{}` {:?}: the engines disagree (a bug)",
                r.label,
                &r.cycles[..n],
                runs[0].label,
                &runs[0].cycles[..n]
            );
        }
        if r.passes[..n] != runs[0].passes[..n] {
            bail!(
                "`{}` settled in {:?} passes per step, `{}` in {:?}: the engines disagree (a bug)",
                r.label,
                &r.passes[..n],
                runs[0].label,
                &runs[0].passes[..n]
            );
        }
    }
    // The CPU reference forward pass on the same tokens: the checkpoint's
    // weights, or seeded ones of the built-in's shapes (timing does not
    // depend on the values).
    let cpu = if a.timing_only {
        None
    } else {
        let seeded;
        let w = match &l.weights {
            Some(w) => w,
            None => {
                seeded = wafer_compiler::ir::seeded_weights(&l.config, 1);
                &seeded
            }
        };
        let m = reference::Model::load(w, &l.config)
            .with_context(|| format!("loading {} for the CPU reference", l.name))?;
        let mut kv = reference::KvCache::new(&l.config);
        let mut token = wafer_compiler::tokenizer::BOS;
        let mut seconds = 0.0;
        for (pos, next) in runs[0].tokens.iter().take(warmup + steps).enumerate() {
            let start = Instant::now();
            std::hint::black_box(m.forward(token, pos, &mut kv));
            if pos >= warmup {
                seconds += start.elapsed().as_secs_f64();
            }
            token = *next;
        }
        Some(seconds / steps as f64)
    };
    let find = |label: &str| runs.iter().find(|r| r.label == label);
    let fast = find(JIT);
    let timing = find(TIMING).or(find(REUSE)).expect("always run");
    let reference = find(REFERENCE);
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let vs_reference = ratio(
        reference.map(|r| r.seconds_per_token()),
        fast.map(|r| r.seconds_per_token()),
    );
    let jit_vs_interp = ratio(
        find(INTERP).map(|r| r.seconds_per_token()),
        find(JIT_1).or(fast).map(|r| r.seconds_per_token()),
    );
    let threads_speedup = ratio(
        find(JIT_1).map(|r| r.seconds_per_token()),
        fast.map(|r| r.seconds_per_token()),
    );
    let slowdown = ratio(fast.map(|r| r.seconds_per_token()), cpu);
    let timing_vs_functional = ratio(
        fast.map(|r| r.seconds_per_token()),
        find(TIMING).map(|r| r.seconds_per_token()),
    );
    let reuse_vs_every_stage = ratio(
        find(TIMING).map(|r| r.seconds_per_token()),
        find(REUSE).map(|r| r.seconds_per_token()),
    );
    let rss = peak_rss();
    let clock = c.options.arch.clock_hz;
    let mean_cycles = timing.cycles[warmup..].iter().sum::<u64>() as f64 / steps as f64;
    if a.json {
        let out = json!({
            "model": l.name,
            "arch": c.options.arch.name,
            "placement": c.kind.name(),
            "tiles": c.wafers.iter().map(|w| w.tiles.to_string()).collect::<Vec<_>>(),
            "dtype": c.options.dtype.to_string(),
            "pes": c.pes_used(),
            "region": c.region.as_ref().map(wafer_report::table::region_json),
            "steps": steps,
            "warmup_steps": warmup,
            "overlapped": a.overlapped(),
            "compile_seconds": compile_s,
            "per_token_cycles": timing.cycles,
            "per_token_passes": timing.passes,
            "per_token_us": mean_cycles / clock * 1e6,
            "runs": runs.iter().map(|r| json!({
                "engine": r.label,
                "host_seconds_per_token": r.seconds_per_token(),
                "timed_step_seconds": r.step_seconds,
                "first_step_seconds": r.first_step.map(|f| f.0),
                "first_step_stage_runs": r.first_step.map(|f| f.1),
                "pe_cycles_per_token": r.pe_cycles / steps as u64,
                "pe_cycles_per_host_second": r.pe_cycles as f64 / (r.seconds_per_token() * steps as f64),
                "reused_stages_per_token": r.reused_stages,
                "slowest_stages": r.slowest.iter().take(listed(a.slowest, 5)).map(|s| json!({
                    "stage": s.name,
                    "pes": s.pes,
                    "runs": s.runs,
                    "host_seconds": s.seconds,
                    "pe_cycles_per_host_second": s.rate(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "stages": c.stages.len(),
            "cpu_reference_seconds_per_token": cpu,
            "fast_vs_reference": vs_reference,
            "jit_vs_interp": jit_vs_interp,
            "threads": threads,
            "threads_vs_one": threads_speedup,
            "emulation_slowdown": slowdown,
            "timing_only_vs_functional": timing_vs_functional,
            "reuse_vs_every_stage": reuse_vs_every_stage,
            "peak_rss_bytes": rss,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{} on {} ({}, {} PEs, {}): {steps} decode steps timed after {warmup}, compiled in {compile_s:.2} s",
        l.name,
        c.options.arch.name,
        c.placement(),
        c.pes_used(),
        c.options.dtype
    );
    println!(
        "emulated: {mean_cycles:.0} cycles per token = {:.3} µs{}",
        mean_cycles / clock * 1e6,
        if a.overlapped() {
            let most = timing.passes.iter().max().copied().unwrap_or(1);
            format!(", each step's stages overlapped, settled in at most {most} pass(es)")
        } else {
            String::new()
        }
    );
    for r in &runs {
        let first = match r.first_step {
            Some((seconds, runs)) if r.label == REUSE => format!(
                "first step {seconds:.4} s, {runs} stage runs emulated; then {} of {} stages reused",
                r.reused_stages,
                c.stages.len()
            ),
            Some((seconds, _)) => format!("first step {seconds:.4} s"),
            None => format!("its steps taken in turns with `{JIT}`'s, on its decoder"),
        };
        println!(
            "{:28} {:>10.4} s/token  {:>8.2e} PE-cycles/s  ({first})",
            r.label,
            r.seconds_per_token(),
            r.pe_cycles as f64 / (r.seconds_per_token() * steps as f64),
        );
        let slowest: Vec<String> = r
            .slowest
            .iter()
            .take(listed(a.slowest, 3))
            .map(|s| {
                format!(
                    "{} {:.2} s ({} PEs, {} run{}, {:.2e} PE-cycles/s)",
                    s.name,
                    s.seconds,
                    s.pes,
                    s.runs,
                    if s.runs == 1 { "" } else { "s" },
                    s.rate()
                )
            })
            .collect();
        // Summed over every step, warm-up included: a stage's runs count
        // its emulations in all of them, not per token.
        let over = match r.first_step {
            Some(_) => format!("the {} steps, warm-up included", warmup + steps),
            None => format!("its {steps} steps"),
        };
        println!(
            "{:28} slowest stages over {over}: {}",
            "",
            slowest.join("; ")
        );
    }
    if let Some(s) = cpu {
        println!("{:26} {s:>10.4} s/token", "CPU reference (f32)");
    }
    if let Some(x) = vs_reference {
        println!("fast (jit) engine vs reference engine: {x:.2}x");
    }
    if let Some(x) = jit_vs_interp {
        println!("jit vs interp engine (1 thread each): {x:.2}x");
    }
    if let Some(x) = threads_speedup {
        println!("jit engine, {threads} threads vs 1: {x:.2}x");
    }
    if let Some(x) = timing_vs_functional {
        println!("timing-only vs functional: {x:.2}x");
    }
    if let Some(x) = reuse_vs_every_stage {
        println!("timing-only reusing identical stages vs emulating every stage: {x:.2}x");
    }
    if let Some(x) = slowdown {
        println!("emulation slowdown (jit engine s/token ÷ CPU reference s/token): {x:.1}x");
    }
    if let Some(b) = rss {
        println!("peak RSS: {:.2} GiB", b as f64 / (1u64 << 30) as f64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::turn;

    /// Two engines take turns A B B A A B B A: each round reversed from
    /// the one before, so each is as often first as second. Three go
    /// A B C C B A.
    #[test]
    fn engines_take_turns_each_round_reversed() {
        let two: Vec<usize> = (0..8).map(|j| turn(j, 2)).collect();
        assert_eq!(two, [0, 1, 1, 0, 0, 1, 1, 0]);
        let three: Vec<usize> = (0..6).map(|j| turn(j, 3)).collect();
        assert_eq!(three, [0, 1, 2, 2, 1, 0]);
        assert!((0..5).all(|j| turn(j, 1) == 0));
    }
}
