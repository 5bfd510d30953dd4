//! `wafer view`: open a run, a program or a model in the viewer (or render
//! it to a PNG with `--screenshot`).

use super::compile::TargetArgs;
use super::model::load;
use anyhow::{Context, bail};
use clap::Args;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wafer_compiler::Compiled;
use wafer_emulator::stats::{PeStats, Stats};
use wafer_emulator::trace::Trace;
use wafer_emulator::{Pe, RunConfig};
use wafer_viewer::data::{Latency, PlacedProgram, StageTime, TokenSpan, placement_of};
use wafer_viewer::{Dataset, Metric, ViewerState};

#[derive(Args, Debug)]
pub struct ViewArgs {
    /// A stats or trace JSON (`wafer run --stats/--trace`), a program
    /// (.wafer or .wsm, run first), or a model (a built-in name, a llama2.c
    /// checkpoint, a Hugging Face directory; compiled and decoded
    /// timing-only first). With none, the built-in checkpoint.
    pub input: Option<String>,
    /// With a stats JSON: the same run's trace (time windows need one).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Render to this PNG instead of opening a window.
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// busy, sram, wavelets, stalls or placement.
    #[arg(long, default_value = "busy")]
    pub metric: String,
    /// Screenshot size in points, WxH.
    #[arg(long, allow_hyphen_values = true, default_value = "1400x900")]
    pub size: String,
    /// Select the PE X,Y, or `hot`: the PE with the highest value of the
    /// metric (the inspector shows it).
    #[arg(long)]
    pub select: Option<String>,
    /// A model's decode steps to emulate (timing-only); 0 compiles only:
    /// placement, SRAM and the cost models' latency, no counters.
    #[arg(long, default_value_t = 2, value_parser = super::flags::count::<0, 100_000>, allow_negative_numbers = true)]
    pub steps: usize,
    /// The context a model's steps start at.
    #[arg(long, default_value_t = 0, value_parser = super::flags::count32::<0, { 1 << 30 }>, allow_negative_numbers = true)]
    pub context: u32,
    /// With a model split over several wafers (--wafers): the wafer whose
    /// PEs are drawn, from 1 (the latency panel covers the whole token).
    #[arg(long, default_value_t = 1, value_parser = super::flags::count32::<1, { wafer_compiler::system::MAX_WAFERS as u64 }>)]
    pub wafer: u32,
    /// With a model: emulate its steps with their stages one after
    /// another, meeting at barriers (as `wafer bench --barriers`). By
    /// default they overlap, and the timeline puts overlapping stages on
    /// lanes and outlines the critical path.
    #[arg(long)]
    pub barriers: bool,
    /// The default since 2026-12-05 (each step's stages overlapped);
    /// kept so that older commands still run.
    #[arg(long, hide = true, conflicts_with = "barriers")]
    pub overlap: bool,
    /// Where the GPU script's measured JSON files are (a model's chart
    /// shows those of the same model and dtype).
    #[arg(long, default_value = "baselines/measured")]
    pub baselines: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
}

impl ViewArgs {
    /// Whether each step's stages overlap: the default, `--barriers` not
    /// given.
    fn overlapped(&self) -> bool {
        !self.barriers
    }
}

/// Spans kept per stage when tracing a model (the trace notes the rest).
const MODEL_SPANS_PER_STAGE: usize = 20_000;

pub fn run(a: ViewArgs) -> anyhow::Result<()> {
    if let Some(p) = &a.screenshot {
        super::flags::writable("--screenshot", p)?;
    }
    let metric = Metric::parse(&a.metric).with_context(|| {
        format!(
            "--metric `{}`: use busy, sram, wavelets, stalls or placement",
            a.metric
        )
    })?;
    let size = parse_size(&a.size)?;
    let mut state = viewed(&a)?;
    state.metric = metric;
    if a.select.as_deref() == Some("hot") {
        state.selected = state.hottest();
    } else if let Some(sel) = &a.select {
        let pe = sel
            .split_once(',')
            .and_then(|(x, y)| Some(Pe::new(x.trim().parse().ok()?, y.trim().parse().ok()?)))
            .with_context(|| format!("--select `{sel}`: expected X,Y, e.g. 3,4"))?;
        if pe.x >= state.data.width() || pe.y >= state.data.height() {
            bail!(
                "--select {pe}: outside the {}x{} grid",
                state.data.width(),
                state.data.height()
            );
        }
        state.selected = Some(pe);
    }
    match &a.screenshot {
        Some(out) => {
            let img = wafer_viewer::screenshot(state, size)?;
            img.save(out)
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "wrote {} ({}x{} px)",
                out.display(),
                img.width(),
                img.height()
            );
            Ok(())
        }
        None => wafer_viewer::run_window(state),
    }
}

fn parse_size(s: &str) -> anyhow::Result<[f32; 2]> {
    s.split_once('x')
        .and_then(|(w, h)| Some([w.parse().ok()?, h.parse().ok()?]))
        .filter(|[w, h]: &[f32; 2]| *w >= 200.0 && *h >= 150.0 && *w <= 8192.0 && *h <= 8192.0)
        .with_context(|| format!("--size `{s}`: expected WxH between 200x150 and 8192x8192"))
}

/// What the viewer opens on: one grid's data, or a system of wafers'.
fn viewed(a: &ViewArgs) -> anyhow::Result<ViewerState> {
    let Some(input) = a.input.as_deref() else {
        return model(a, None);
    };
    let path = Path::new(input);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "json" => json_file(path, a.trace.as_deref()).map(ViewerState::new),
        "wafer" | "wsm" => program(path, a).map(ViewerState::new),
        _ => model(a, Some(input)),
    }
}

fn trace_file(path: &Path) -> anyhow::Result<Trace> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Trace::from_chrome_text(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a wafer trace ({e}); write one with `wafer run --trace`",
            path.display()
        )
    })
}

fn json_file(path: &Path, trace: Option<&Path>) -> anyhow::Result<Dataset> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.display().to_string();
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{name}: not JSON ({e})"))?;
    if v.get("traceEvents").is_some() {
        let t = trace_file(path)?;
        return Ok(Dataset::from_trace(&name, t, "unknown machine"));
    }
    let stats = Stats::from_json(&text).map_err(|e| {
        anyhow::anyhow!(
            "{name}: neither a stats file nor a trace: {e} (write them with `wafer run --stats S.json --trace T.json`)"
        )
    })?;
    let trace = trace.map(trace_file).transpose()?;
    Dataset::from_stats(&name, stats, trace).map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

fn program(path: &Path, a: &ViewArgs) -> anyhow::Result<Dataset> {
    let p = super::program_file(path)?;
    let arch = a.target.machine.arch()?;
    let cfg = RunConfig {
        trace: true,
        ..RunConfig::default()
    };
    let r = wafer_emulator::run(&p, &arch, &Default::default(), &cfg)
        .with_context(|| format!("running {}", path.display()))?;
    Ok(Dataset::from_run(
        &path.display().to_string(),
        p,
        r.stats,
        r.trace,
    ))
}

/// A model compiled and decoded timing-only: its stages' stats and traces
/// placed at their sites and one after another in time. On a system of
/// wafers the window draws `--wafer` first and any other on request, from
/// the same run.
fn model(a: &ViewArgs, spec: Option<&str>) -> anyhow::Result<ViewerState> {
    let l = load(spec, None)?;
    let c = a.target.compile(&l)?;
    let steps = a.steps;
    let max = c.options.max_context;
    if a.context + steps.max(1) as u32 > max {
        bail!(
            "--context {} + --steps {steps} is past the {max} positions compiled for (--max-context)",
            a.context
        );
    }
    let n = c.wafers.len();
    if a.wafer as usize > n {
        bail!(
            "--wafer {}: {} runs on {n} wafer{} (use 1..={n})",
            a.wafer,
            l.name,
            if n == 1 { "" } else { "s" }
        );
    }
    let clock_hz = c.options.arch.clock_hz;
    let (mut runs, mut tokens, mut latency) = (Vec::new(), Vec::new(), Latency::default());
    let mut predicted = None;
    let mut traces: HashMap<*const Stats, Arc<Trace>> = HashMap::new();
    let mut now = 0;
    if a.overlap && steps == 0 {
        bail!(
            "--overlap emulates the steps overlapped; --steps 0 only compiles: give --steps 1 or more"
        );
    }
    let table = if steps == 0 {
        let stage_cycles = c.stage_predictions(a.context);
        latency.stages = timeline(&c, &stage_cycles);
        let row = wafer_report::predicted(&c, a.context);
        predicted = Some(row.predicted_cycles);
        latency.per_token_us.push(row.us());
        tokens.push(TokenSpan {
            start: 0,
            end: row.predicted_cycles,
        });
        row
    } else {
        super::compare::emulate(
            &c,
            (a.context, steps, wafer_compiler::experts::DEFAULT_SEED),
            (Some(MODEL_SPANS_PER_STAGE), true),
            (false, a.overlapped(), false),
            None,
            |s| {
                if latency.stages.is_empty() {
                    latency.stages = match a.overlapped() {
                        true => overlapped_timeline(&c, s),
                        false => timeline(&c, &s.stage_cycles),
                    };
                }
                tokens.push(TokenSpan {
                    start: now,
                    end: now + s.cycles,
                });
                now += s.cycles;
                latency.per_token_us.push(s.cycles as f64 / clock_hz * 1e6);
                // A reused stage's trace is its twin's: kept once.
                let traces = s
                    .stage_stats
                    .iter()
                    .zip(&s.stage_traces)
                    .map(|(st, t)| {
                        let t = t.as_ref()?;
                        let shared = traces
                            .entry(Arc::as_ptr(st))
                            .or_insert_with(|| Arc::new(t.clone()));
                        Some(Arc::clone(shared))
                    })
                    .collect();
                runs.push(StepRun {
                    starts: a.overlapped().then(|| (s.stage_start.clone(), s.cycles)),
                    cycles: s.stage_cycles.clone(),
                    stats: s.stage_stats.clone(),
                    traces,
                });
            },
        )?
    };
    drop(traces);
    let mut by_kind: Vec<(String, f64)> = table
        .kinds
        .iter()
        .map(|(k, t)| (k.to_string(), t.cycles))
        .collect();
    by_kind.sort_by(|x, y| y.1.total_cmp(&x.1));
    latency.by_kind = by_kind;
    if n > 1 {
        latency.wafers = table
            .wafers
            .iter()
            .enumerate()
            .map(|(k, w)| {
                let name = format!(
                    "wafer {}, layers {}..{}",
                    k + 1,
                    w.layers.start,
                    w.layers.end
                );
                (name, w.cycles)
            })
            .collect();
    }
    latency.bars = gpu_bars(&l, &c, table, &a.baselines)?;
    let run = ModelRun {
        name: l.name,
        c,
        steps: runs,
        predicted,
        tokens,
        latency,
    };
    let first = a.wafer as usize - 1;
    let state = ViewerState::new(run.wafer(first));
    Ok(match n {
        1 => state,
        n => state.with_system(n, first, move |k| Ok(run.wafer(k))),
    })
}

/// A model's run, kept to draw any one of its wafers: each step's stage
/// counters and traces (or, compiled only, the cost model's step).
struct ModelRun {
    name: String,
    c: Compiled,
    steps: Vec<StepRun>,
    predicted: Option<u64>,
    tokens: Vec<TokenSpan>,
    latency: Latency,
}

/// One emulated step, per stage.
struct StepRun {
    /// Overlapped: each stage's start and the step's cycles.
    starts: Option<(Vec<u64>, u64)>,
    cycles: Vec<u64>,
    stats: Vec<Arc<Stats>>,
    traces: Vec<Option<Arc<Trace>>>,
}

impl ModelRun {
    /// Wafer `k`'s data (from 0): its stages' counters and spans at their
    /// sites and cycles, its programs and SRAM; the latency is the whole
    /// token's.
    fn wafer(&self, k: usize) -> Dataset {
        let c = &self.c;
        let arch = &c.options.arch;
        let (w, h) = (arch.grid_cols, arch.grid_rows);
        let shown = c.wafers[k].stages.clone();
        let mut grid = Grid::new(w, h, arch, shown.clone());
        match self.predicted {
            Some(cycles) => {
                grid.now = cycles;
                grid.engine = "none: compiled only (cost-model latency)".into();
            }
            None => {
                for s in &self.steps {
                    grid.add_step(c, s);
                }
            }
        }
        let programs: Vec<PlacedProgram> = c
            .stages
            .iter()
            .zip(&c.sites)
            .zip(&c.fragments)
            .enumerate()
            .filter(|(i, _)| shown.contains(i))
            .map(|(_, ((st, site), f))| PlacedProgram {
                name: st.name.clone(),
                origin: site.origin,
                program: (*f.program).clone(),
            })
            .collect();
        let placement = placement_of(&programs, w, h, |pp, _| pp.name.clone());
        grid.set_sram(c);
        let stats = grid.stats(c);
        let trace = self.predicted.is_none().then_some(grid.trace);
        let on = match c.wafers.len() {
            1 => arch.name.clone(),
            n => format!("wafer {} of {n} of {}", k + 1, arch.name),
        };
        Dataset {
            name: format!("{} on {on} ({} placement)", self.name, c.kind.name()),
            stats,
            trace,
            programs,
            placement: Some(placement),
            tokens: self.tokens.clone(),
            latency: Some(self.latency.clone()),
        }
    }
}

/// A token's stages in order, with their hand-offs and `cycles` (on a
/// system of wafers each name says its wafer).
fn timeline(c: &Compiled, cycles: &[u64]) -> Vec<StageTime> {
    let mut stages =
        StageTime::sequence(c.stages.iter().zip(&c.sites).zip(cycles).enumerate().map(
            |(i, ((st, site), &n))| {
                (
                    match c.wafers.len() {
                        1 => st.name.clone(),
                        _ => format!(
                            "w{} {}",
                            wafer_compiler::system::wafer_of(c, i) + 1,
                            st.name
                        ),
                    },
                    wafer_report::wafer::kind(&site.kernel).to_string(),
                    c.routing.handoffs[i].cycles,
                    n,
                    site.origin,
                )
            },
        ));
    for (i, t) in stages.iter_mut().enumerate() {
        t.wafer = wafer_compiler::system::wafer_of(c, i);
    }
    stages
}

/// An overlapped step's stages at their starts, without hand-offs (the
/// trips are in the runs' arrivals), the critical path marked (from the
/// stage that ends last, back along what each waited on last), and the
/// stages their consumers held back.
fn overlapped_timeline(c: &Compiled, s: &wafer_compiler::decode::Step) -> Vec<StageTime> {
    let cycles = vec![0; c.stages.len()];
    let mut stages = timeline(c, &cycles);
    for (i, t) in stages.iter_mut().enumerate() {
        (t.start, t.handoff, t.cycles) = (s.stage_start[i], 0, s.stage_cycles[i]);
        t.critical = false;
        t.held = s.stage_held[i];
    }
    for i in s.critical_path() {
        stages[i].critical = true;
    }
    stages
}

/// The wafer and the GPU rows but the eager ones (rooflines with CUDA
/// graphs, the runs measured in `baselines`, published numbers), as
/// tokens/s bars.
fn gpu_bars(
    l: &super::model::Loaded,
    c: &Compiled,
    wafer: wafer_report::WaferRow,
    baselines: &std::path::Path,
) -> anyhow::Result<Vec<(String, f64)>> {
    let gpus = wafer_report::table::gpus(None, None)?;
    let measured = wafer_report::gpu::measured_in(baselines)?;
    let t = wafer_report::table(&l.name, c, wafer, &gpus, &measured)?;
    Ok(t.bars(false))
}

/// Whole-grid counters and trace, built up stage by stage (of one wafer
/// of a system: `shown`'s stages).
struct Grid {
    width: u32,
    height: u32,
    shown: std::ops::Range<usize>,
    pe: PeStats,
    trace: Trace,
    now: u64,
    engine: String,
}

impl Grid {
    fn new(
        width: u32,
        height: u32,
        arch: &wafer_emulator::Arch,
        shown: std::ops::Range<usize>,
    ) -> Grid {
        Grid {
            width,
            height,
            shown,
            pe: PeStats::zeroed((width * height) as usize),
            trace: Trace {
                version: wafer_emulator::trace::TRACE_VERSION,
                clock_hz: arch.clock_hz,
                width,
                height,
                spans: Vec::new(),
                dropped: 0,
            },
            now: 0,
            engine: String::new(),
        }
    }

    /// One decode step: each stage's counters added at its site, its spans
    /// moved to its site and its start cycle.
    fn add_step(&mut self, c: &Compiled, s: &StepRun) {
        // Each stage's start: overlapped, its own; else once the stage
        // before has run and its inputs' hand-off has arrived.
        let (starts, cycles) = match &s.starts {
            Some((starts, cycles)) => (starts.clone(), *cycles),
            None => {
                let mut at = 0;
                let starts = (0..s.cycles.len())
                    .map(|i| {
                        at += c.routing.handoffs[i].cycles;
                        let start = at;
                        at += s.cycles[i];
                        start
                    })
                    .collect();
                (starts, at)
            }
        };
        for (i, (st, site)) in s.stats.iter().zip(&c.sites).enumerate() {
            if self.shown.contains(&i) {
                self.engine = st.engine.clone();
                let (w, h) = (self.width, self.height);
                self.pe
                    .add_at(w, h, &st.pe, st.width, st.height, site.origin);
                if let Some(t) = &s.traces[i] {
                    self.trace.append_at(t, site.origin, self.now + starts[i]);
                }
            }
        }
        self.now += cycles;
    }

    /// SRAM each PE holds for the whole model, as the compiler's plan
    /// counts it (a stage's run sees only its own code and buffers).
    fn set_sram(&mut self, c: &Compiled) {
        let r = self.shown.clone();
        self.pe.sram_used = wafer_compiler::sram::per_pe_bytes(
            &c.sites[r.clone()],
            &c.fragments[r],
            &c.options.arch,
        );
    }

    fn stats(&self, c: &Compiled) -> Stats {
        Stats {
            version: wafer_emulator::stats::STATS_VERSION,
            arch: c.options.arch.name.clone(),
            clock_hz: c.options.arch.clock_hz,
            width: self.width,
            height: self.height,
            cycles: self.now,
            engine: self.engine.clone(),
            pe: self.pe.clone(),
            totals: self.pe.totals(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn opened(wafer: &str) -> ViewerState {
        let cli = super::super::Cli::try_parse_from([
            "wafer", "view", "--wafers", "2", "--grid", "64x64", "--steps", "1", "--wafer", wafer,
        ])
        .unwrap();
        let super::super::Command::View(a) = cli.command else {
            unreachable!("a view command")
        };
        viewed(&a).unwrap()
    }

    /// Choosing wafer 2 in the window draws what `--wafer 2` opens with:
    /// its own counters, trace and programs, the same latency panel.
    #[test]
    fn choosing_a_wafer_in_the_window_equals_opening_on_it() {
        let mut first = opened("1");
        let second = opened("2");
        assert_eq!(first.system.as_ref().unwrap().count, 2);
        assert_ne!(first.data.stats, second.data.stats);
        first.show_wafer(1);
        assert_eq!(first.system.as_ref().unwrap().shown, 1);
        let (a, b) = (&first.data, &second.data);
        assert_eq!(a.name, b.name);
        assert_eq!(a.stats, b.stats);
        assert_eq!(a.trace, b.trace);
        assert_eq!(a.placement, b.placement);
        assert_eq!(a.latency, b.latency);
        let names = |d: &Dataset| {
            d.programs
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(a), names(b));
        assert!(
            names(a)
                .iter()
                .all(|n| !names(&opened("1").data).contains(n))
        );
    }
}
