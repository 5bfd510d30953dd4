//! The wafer-vs-GPU table: per-token decode latency on the emulated wafer
//! (or the cost models' prediction, labelled as such) next to GPU
//! baselines (roofline from `baselines/gpus.toml`, measured JSON from
//! `benches/gpu/decode.py`, published numbers), every number with its
//! origin; as text and as JSON.

use crate::ReportError;
use crate::gpu::{self, DecodeWork, GpuSpec, Measured, Published, Roofline};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use wafer_compiler::decode::{Decoder, PeTime, Step};
use wafer_compiler::place::{Kernel, Tiles, tiles_phrase};
use wafer_compiler::{Compiled, Config};

/// The emulated wafer's side of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct WaferRow {
    pub per_token_cycles: f64,
    pub predicted_cycles: u64,
    pub clock_hz: f64,
    pub pes_used: u64,
    pub pes: u64,
    pub sram_bytes: u64,
    pub sram_capacity: u64,
    /// Per layer kind: cycles per token and its PE-cycles split.
    pub kinds: BTreeMap<&'static str, KindTime>,
    pub positions: (u32, u32),
    /// Emulated (else the cost models' prediction, with no PE-time split).
    pub emulated: bool,
    /// Emulated with each step's stages overlapped
    /// ([`Decoder::overlap`]): the cost models' prediction, stages one
    /// after another, is then an upper bound rather than equal.
    pub overlapped: bool,
    /// Overlapped, the cost models' estimate of the overlapped step at
    /// the first position ([`wafer_compiler::decode::overlap::predicted`]).
    pub predicted_overlapped: Option<u64>,
    /// Emulated overlapped, the most input wavelets that waited at a
    /// stage's edge at once, over the steps, and the stage
    /// ([`wafer_compiler::decode::Step::stage_backlog`]).
    pub backlog: Option<(String, u64)>,
    /// The region search's choice ([`wafer_compiler::region`]), if it ran.
    pub region: Option<wafer_compiler::region::Searched>,
    /// Per wafer of the system (one on one wafer): its layers and its
    /// cycles per token (its stages and their hand-offs; the transfers
    /// between wafers are apart).
    pub wafers: Vec<WaferTime>,
    /// Per wafer-to-wafer transfer: bytes sent and cycles per token.
    pub transfers: Vec<(u64, f64)>,
    /// A mixture of experts' routing in these steps (`None`: no experts).
    pub experts: Option<ExpertsRun>,
}

/// Which experts a mixture of experts' steps ran: the picks of a seeded
/// routing (timing-only steps and the cost models have no values, so no
/// router picks), stated wherever the row is shown.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExpertsRun {
    pub experts: usize,
    pub per_token: usize,
    pub seed: u64,
}

/// One wafer's share of a token.
#[derive(Clone, Debug, PartialEq)]
pub struct WaferTime {
    pub layers: std::ops::Range<usize>,
    pub cycles: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KindTime {
    pub cycles: f64,
    pub pe: PeTimeF,
}

/// [`PeTime`] averaged over steps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PeTimeF {
    pub compute: f64,
    pub fabric: f64,
    pub idle: f64,
}

impl WaferRow {
    /// The row for `c` at `positions`, with its machine's size and the
    /// cost models' prediction at the first position beside the cycles.
    /// `stage_cycles`: each stage's cycles per token (emulated or
    /// predicted) with its hand-off's within the wafer, which the
    /// per-wafer times sum.
    fn new(
        c: &Compiled,
        per_token_cycles: f64,
        kinds: BTreeMap<&'static str, KindTime>,
        positions: (u32, u32),
        emulated: bool,
        stage_cycles: &[f64],
        expert_seed: u64,
    ) -> WaferRow {
        let arch = &c.options.arch;
        let n = c.wafers.len() as u64;
        WaferRow {
            per_token_cycles,
            predicted_cycles: c.predicted_with(positions.0, expert_seed),
            clock_hz: arch.clock_hz,
            pes_used: c.pes_used(),
            pes: n * arch.n_pes(),
            sram_bytes: c.sram.total_bytes,
            sram_capacity: n * arch.n_pes() * arch.sram_bytes as u64,
            kinds,
            positions,
            emulated,
            overlapped: false,
            predicted_overlapped: None,
            backlog: None,
            region: c.region.clone(),
            wafers: c
                .wafers
                .iter()
                .map(|w| WaferTime {
                    layers: w.layers.clone(),
                    cycles: w.stages.clone().map(|i| stage_cycles[i]).sum(),
                })
                .collect(),
            transfers: c
                .transfers
                .iter()
                .map(|t| (t.bytes, t.cycles as f64))
                .collect(),
            experts: c.config.moe.map(|m| ExpertsRun {
                experts: m.experts,
                per_token: m.per_token,
                seed: expert_seed,
            }),
        }
    }

    pub fn us(&self) -> f64 {
        self.per_token_cycles / self.clock_hz * 1e6
    }
    pub fn tokens_per_s(&self) -> f64 {
        self.clock_hz / self.per_token_cycles
    }
}

/// What a stage's kernel is, as the breakdown groups it.
pub fn kind(k: &Kernel) -> &'static str {
    match k {
        Kernel::Embed(_) => "embedding",
        Kernel::Gemv(_) | Kernel::MeshGemv(_) => "projections (GEMV)",
        Kernel::Vector(_) | Kernel::ClampedSwiglu(_) => "norms, element-wise",
        Kernel::Rope(_) => "rope",
        Kernel::Attention(_) => "attention",
        Kernel::Argmax(_) => "argmax",
        Kernel::Router(_) | Kernel::Combine(_) => "experts' router, combine",
    }
}

pub const HANDOFFS: &str = "hand-offs between stages";
/// An overlapped step's cycles less its stages' runs (negative where the
/// runs overlap).
pub const OVERLAP: &str = "stages overlapping";
pub const TRANSFERS: &str = "transfers between wafers";

/// A step's hand-off cycles into the breakdown: within wafers, and over
/// the links between them (a system's only).
/// `ran`: which stages ran (the experts not picked did not).
fn add_handoffs(c: &Compiled, ran: &[bool], kinds: &mut BTreeMap<&'static str, KindTime>) {
    let ran = || {
        c.routing
            .handoffs
            .iter()
            .zip(ran)
            .filter(|(_, r)| **r)
            .map(|(h, _)| h)
    };
    let h: u64 = ran().map(|h| h.cycles - h.link_cycles).sum();
    let k = kinds.entry(HANDOFFS).or_default();
    k.cycles += h as f64;
    k.pe.fabric += h as f64;
    if c.wafers.len() > 1 {
        let l: u64 = ran().map(|h| h.link_cycles).sum();
        let k = kinds.entry(TRANSFERS).or_default();
        k.cycles += l as f64;
        k.pe.fabric += l as f64;
    }
}

/// What [`emulate`] records besides the cycles, and what stops it.
#[derive(Clone, Debug, Default)]
pub struct EmulateOptions {
    /// Record up to this many trace spans per stage.
    pub trace: Option<usize>,
    /// Keep each stage's per-PE statistics in the steps.
    pub stats: bool,
    /// Stop at the next check once set (Ctrl-C in the CLI).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Share each step's distinct stage runs with these processes (the
    /// CLI's MPI ranks; [`wafer_compiler::share`]): the results are one
    /// process's.
    pub share: Option<Arc<dyn wafer_compiler::share::Exchange>>,
    /// A mixture of experts' steps run the experts this seed's routing
    /// picks ([`wafer_compiler::experts`]; the default,
    /// [`wafer_compiler::experts::DEFAULT_SEED`], is what `predicted` runs).
    pub expert_seed: u64,
    /// Overlap each step's stages ([`Decoder::overlap`]); not with
    /// `share` (an overlapped stage's run depends on the runs before it).
    pub overlap: bool,
}

/// Emulate `steps` timing-only decode steps from position `context`,
/// handing each step to `each` (a progress bar, the viewer's merge), and
/// summarise them as the wafer's row.
pub fn emulate(
    c: &Compiled,
    context: u32,
    steps: usize,
    opts: &EmulateOptions,
    mut each: impl FnMut(&Step),
) -> Result<WaferRow, ReportError> {
    if steps == 0 {
        return Err(ReportError::Options("emulate at least one step".into()));
    }
    let mut d = Decoder::new(c);
    d.timing_only(true);
    d.expert_seed(opts.expert_seed);
    d.keep_stats(opts.stats);
    if let Some(n) = opts.trace {
        d.trace(n);
    }
    if let Some(flag) = &opts.cancel {
        d.cancel_on(flag.clone());
    }
    d.overlap(opts.overlap);
    d.skip_to(context)?;
    let mut kinds: BTreeMap<&'static str, KindTime> = BTreeMap::new();
    let mut cycles = 0u64;
    let mut stage_cycles = vec![0.0; c.stages.len()];
    let mut backlog: Option<(usize, u64)> = None;
    for _ in 0..steps {
        if let Some(ex) = (opts.share.as_deref()).filter(|e| e.ranks() > 1 && !opts.overlap) {
            d.share(0, ex)?;
        }
        let s = d.step(0)?;
        each(&s);
        cycles += s.cycles;
        for (i, b) in s.stage_backlog.iter().enumerate() {
            if backlog.is_none_or(|m| *b > m.1) {
                backlog = Some((i, *b));
            }
        }
        for (i, sum) in stage_cycles.iter_mut().enumerate() {
            let h = &c.routing.handoffs[i];
            let hand = if s.stage_ran[i] {
                h.cycles - h.link_cycles
            } else {
                0
            };
            *sum += (s.stage_cycles[i] + hand) as f64 / steps as f64;
        }
        for ((site, cyc), t) in c.sites.iter().zip(&s.stage_cycles).zip(&s.stage_time) {
            let k = kinds.entry(kind(&site.kernel)).or_default();
            k.cycles += *cyc as f64;
            // The stage's cycles split as its PE-cycles are.
            let PeTime {
                compute,
                fabric,
                idle,
            } = *t;
            let all = t.total().max(1) as f64;
            k.pe.compute += *cyc as f64 * compute as f64 / all;
            k.pe.fabric += *cyc as f64 * fabric as f64 / all;
            k.pe.idle += *cyc as f64 * idle as f64 / all;
        }
        if opts.overlap {
            // No barrier and no modelled hand-off: the trips are in the
            // runs' arrivals, and the runs overlap.
            let runs: u64 = s.stage_cycles.iter().sum();
            let k = kinds.entry(OVERLAP).or_default();
            k.cycles += s.cycles as f64 - runs as f64;
        } else {
            add_handoffs(c, &s.stage_ran, &mut kinds);
        }
    }
    let n = steps as f64;
    for k in kinds.values_mut() {
        k.cycles /= n;
        k.pe.compute /= n;
        k.pe.fabric /= n;
        k.pe.idle /= n;
    }
    let mut row = WaferRow::new(
        c,
        cycles as f64 / n,
        kinds,
        (context, context + steps as u32 - 1),
        true,
        &stage_cycles,
        opts.expert_seed,
    );
    if opts.overlap {
        row.overlapped = true;
        let p = wafer_compiler::decode::overlap::predicted(c, context, opts.expert_seed);
        row.predicted_overlapped = Some(p.cycles);
        row.backlog = backlog.map(|(i, b)| (c.stages[i].name.clone(), b));
    }
    Ok(row)
}

/// The wafer's row from the cost models alone (no emulation): what a
/// compile predicts at `context`, split by layer kind (no PE-time split).
pub fn predicted(c: &Compiled, context: u32) -> WaferRow {
    let mut kinds: BTreeMap<&'static str, KindTime> = BTreeMap::new();
    let ran = c.runs(context, wafer_compiler::experts::DEFAULT_SEED);
    let predicted = c.stage_predictions(context);
    let mut stage_cycles = vec![0.0; c.stages.len()];
    for (i, site) in c.sites.iter().enumerate().filter(|(i, _)| ran[*i]) {
        kinds.entry(kind(&site.kernel)).or_default().cycles += predicted[i] as f64;
        let h = &c.routing.handoffs[i];
        stage_cycles[i] = (predicted[i] + h.cycles - h.link_cycles) as f64;
    }
    add_handoffs(c, &ran, &mut kinds);
    // The prediction has no PE-time split.
    for k in kinds.values_mut() {
        k.pe = PeTimeF::default();
    }
    WaferRow::new(
        c,
        c.predicted(context) as f64,
        kinds,
        (context, context),
        false,
        &stage_cycles,
        wafer_compiler::experts::DEFAULT_SEED,
    )
}

/// The wafer's row from the cost models' estimate of an overlapped step
/// at `context` (no emulation; [`wafer_compiler::decode::overlap::predicted`]):
/// each stage's estimated run by layer kind, and what the overlap takes
/// off their sum, under [`OVERLAP`] (no PE-time split).
pub fn predicted_overlapped(c: &Compiled, context: u32) -> WaferRow {
    let seed = wafer_compiler::experts::DEFAULT_SEED;
    let p = wafer_compiler::decode::overlap::predicted(c, context, seed);
    let ran = c.runs(context, seed);
    let mut kinds: BTreeMap<&'static str, KindTime> = BTreeMap::new();
    let mut stage_cycles = vec![0.0; c.stages.len()];
    for (i, site) in c.sites.iter().enumerate().filter(|(i, _)| ran[*i]) {
        stage_cycles[i] = (p.ends[i] - p.starts[i]) as f64;
        kinds.entry(kind(&site.kernel)).or_default().cycles += stage_cycles[i];
    }
    let runs: f64 = stage_cycles.iter().sum();
    kinds.entry(OVERLAP).or_default().cycles = p.cycles as f64 - runs;
    let mut row = WaferRow::new(
        c,
        p.cycles as f64,
        kinds,
        (context, context),
        false,
        &stage_cycles,
        seed,
    );
    row.overlapped = true;
    row.predicted_overlapped = Some(p.cycles);
    row
}

/// One GPU row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuRow {
    pub device: String,
    /// `roofline, CUDA graphs`, `measured, eager`, `published`, ...
    pub how: String,
    pub seconds_per_token: f64,
    pub bound: Option<&'static str>,
    /// Index into the sources list.
    pub source: usize,
}

/// Everything `wafer bench` prints, built before printing so the text and
/// JSON forms (and the snapshot tests) see the same numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub model: String,
    pub arch: String,
    pub placement: String,
    /// Mesh placement's tiles of layers, one per wafer.
    pub tiles: Vec<Tiles>,
    pub dtype: String,
    pub context: u32,
    pub work: DecodeWork,
    pub wafer: WaferRow,
    pub gpus: Vec<GpuRow>,
    pub sources: Vec<String>,
}

/// The GPU rows for `config`: rooflines for `gpus`, then measured runs,
/// then published numbers that match the model.
#[allow(clippy::too_many_arguments)]
pub fn gpu_rows(
    config_name: Option<&str>,
    work: &DecodeWork,
    flops_dtype: &str,
    dtype: &str,
    context: u32,
    gpus: &[GpuSpec],
    measured: &[Measured],
    published: &[Published],
    sources: &mut Vec<String>,
) -> Result<Vec<GpuRow>, ReportError> {
    let mut cite = |s: String| match sources.iter().position(|x| *x == s) {
        Some(i) => i,
        None => {
            sources.push(s);
            sources.len() - 1
        }
    };
    let mut rows = Vec::new();
    for g in gpus {
        for graphs in [true, false] {
            let r = Roofline::of(g, work, flops_dtype, graphs)?;
            let source = cite(match r.gpus {
                1 => format!("{} roofline: {}", g.name, g.source),
                n => format!(
                    "{} roofline over {n} GPUs (the fewest whose memory holds the weights and KV cache; each reads its share, as tensor parallelism splits them; the all-reduces between them are not counted, so this is a lower bound): {}",
                    g.name, g.source
                ),
            });
            rows.push(GpuRow {
                device: match r.gpus {
                    1 => g.name.clone(),
                    n if n <= 8 => format!("{n}x {} (one node)", g.name),
                    n => format!("{n}x {} ({} nodes of 8)", g.name, n / 8),
                },
                how: if graphs {
                    "roofline, CUDA graphs".into()
                } else {
                    format!("roofline, eager ({} launches)", work.kernels)
                },
                seconds_per_token: r.seconds(),
                bound: Some(r.bound()),
                source,
            });
        }
    }
    for m in measured {
        if config_name != Some(m.model.as_str()) || m.dtype != dtype {
            continue;
        }
        let source = cite(format!(
            "measured on {} ({}, torch {}) by benches/gpu/decode.py: {}",
            m.device, m.date, m.torch, m.file
        ));
        for r in gpu::closest(m, context as u64) {
            rows.push(GpuRow {
                device: m.device.clone(),
                how: format!("measured, {} at context {}", r.mode, r.context),
                seconds_per_token: r.ms_per_token * 1e-3,
                bound: None,
                source,
            });
        }
    }
    for p in published {
        if !config_name.is_some_and(|n| p.matches.iter().any(|m| m == n)) {
            continue;
        }
        let source = cite(format!(
            "{} ({}, {}): {}",
            p.model, p.dtype, p.date, p.source
        ));
        rows.push(GpuRow {
            device: p.device.clone(),
            how: "published".into(),
            seconds_per_token: 1.0 / p.tokens_per_s,
            bound: None,
            source,
        });
    }
    Ok(rows)
}

/// Kernels an eager GPU decode launches: one per op of the decode graph
/// (tokens and positions are inputs, not kernels).
pub fn eager_kernels(c: &Compiled) -> u64 {
    use wafer_compiler::ir::Op;
    c.graph
        .insts
        .iter()
        .filter(|i| !matches!(i.op, Op::Token | Op::Position))
        .count() as u64
}

/// A GPU decode at the wafer's weight dtype: bytes a weight, bytes a
/// cached element, and the dtype whose peak FLOPs bound it. int8 is
/// weight-only quantization as on the wafer: a byte a weight (the bf16
/// scale a row is not counted: under 0.1 % for rows of 4,096), dequantized
/// to bf16 as it is read, so bf16's peak and a bf16 cache; MXFP4 alike at
/// its packed size.
pub fn gpu_precision(dtype: &str) -> (f64, f64, &str) {
    match dtype {
        "f32" => (4.0, 4.0, "f32"),
        "i8" => (1.0, 2.0, "bf16"),
        // Half a byte a weight and a byte a block of 32 (OCP MX).
        "mxfp4" => (0.5 + 1.0 / 32.0, 2.0, "bf16"),
        d => (2.0, 2.0, d),
    }
}

/// GPU specs: from `file` or the built-in data file, narrowed to `only`
/// (ids, comma-separated) when given.
pub fn gpus(file: Option<&Path>, only: Option<&str>) -> Result<Vec<GpuSpec>, ReportError> {
    let all = match file {
        Some(f) => gpu::parse_gpus(
            &std::fs::read_to_string(f).map_err(|source| ReportError::Io {
                path: f.display().to_string(),
                source,
            })?,
            &f.display().to_string(),
        )?,
        None => gpu::parse_gpus(gpu::GPUS_TOML, "baselines/gpus.toml (built in)")?,
    };
    let Some(only) = only else { return Ok(all) };
    only.split(',')
        .map(|id| {
            let id = id.trim();
            all.iter()
                .find(|g| g.id == id)
                .cloned()
                .ok_or_else(|| ReportError::UnknownGpu {
                    id: id.into(),
                    known: all
                        .iter()
                        .map(|g| g.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

/// Build the whole table for a compiled model (`model` names it: a
/// built-in config's name first, when it is one, matches published rows).
pub fn table(
    model: &str,
    c: &Compiled,
    wafer: WaferRow,
    gpus: &[GpuSpec],
    measured: &[Measured],
) -> Result<Table, ReportError> {
    let dtype = c.options.dtype.to_string();
    let context = wafer.positions.0;
    let (weight_bytes, kv_bytes, flops_dtype) = gpu_precision(&dtype);
    let work = gpu::decode_work(
        &c.config,
        weight_bytes,
        kv_bytes,
        context as u64 + 1,
        eager_kernels(c),
    );
    let published = gpu::parse_published(gpu::PUBLISHED_TOML, "baselines/published.toml")?;
    let mut sources = vec![if wafer.overlapped && !wafer.emulated {
        format!(
            "wafer: estimated by this build's kernel cost models on {}, each step's stages overlapped (--predict --overlap: not emulated; a stage starts once its first input has arrived and its PEs are free, each kernel's model taking its inputs' arrivals where it has one; tested within 2 % of the emulated overlapped step on the built-in checkpoints); the cost model's figure runs the stages one after another",
            c.options.arch.name
        )
    } else if wafer.overlapped {
        format!(
            "wafer: emulated by this build (timing-only, cycles identical to a functional run) on {}, each step's stages overlapped: a stage starts once its first input has arrived and its PEs are free, and takes each element when it arrives (its producer's output cycle plus a cycle a hop, the routes taken as free); the cost model's figure runs the stages one after another, an upper bound",
            c.options.arch.name
        )
    } else if wafer.emulated {
        format!(
            "wafer: emulated by this build (timing-only, cycles identical to a functional run) on {}",
            c.options.arch.name
        )
    } else {
        format!(
            "wafer: predicted by this build's kernel cost models on {} (--predict: not emulated; the bench test checks emulated = predicted on the built-in checkpoint)",
            c.options.arch.name
        )
    }];
    let gpus = gpu_rows(
        builtin_name(&c.config, model),
        &work,
        flops_dtype,
        &dtype,
        context,
        gpus,
        measured,
        &published,
        &mut sources,
    )?;
    Ok(Table {
        model: model.to_string(),
        arch: c.options.arch.name.clone(),
        placement: c.kind.name().to_string(),
        tiles: c.wafers.iter().map(|w| w.tiles).collect(),
        dtype,
        context,
        work,
        wafer,
        gpus,
        sources,
    })
}

/// The built-in config name of a loaded model, if it is one.
pub(crate) fn builtin_name<'a>(c: &Config, name: &'a str) -> Option<&'a str> {
    let n = name.split_whitespace().next()?;
    (Config::built_in(n).as_ref() == Some(c)).then_some(n)
}

fn si(x: f64) -> String {
    match x {
        x if x >= 1e12 => format!("{:.2} T", x / 1e12),
        x if x >= 1e9 => format!("{:.2} G", x / 1e9),
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x if x >= 1e3 => format!("{:.2} k", x / 1e3),
        x => format!("{x:.0} "),
    }
}

/// The region search in JSON: the rectangle chosen, the grid, and every
/// rectangle tried with its predicted cycles (or why it did not fit).
pub fn region_json(r: &wafer_compiler::region::Searched) -> Value {
    json!({
        "cols": r.chosen.0, "rows": r.chosen.1, "placement": r.kind.name(),
        "tiles": r.tiles.to_string(),
        "grid": [r.grid.0, r.grid.1], "predicted_at": r.pos,
        "tried": r.points.iter().map(|p| json!({
            "cols": p.cols, "rows": p.rows, "placement": p.kind.name(),
            "tiles": p.tiles.to_string(),
            "predicted_cycles": p.result.as_ref().ok(),
            "error": p.result.as_ref().err(),
        })).collect::<Vec<_>>(),
    })
}

impl Table {
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let w = &self.wafer;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} on {}: {} placement{}, {} weights, decode at context {} (positions {}..={})",
            self.model,
            self.arch,
            self.placement,
            tiles_phrase(&self.tiles),
            self.dtype,
            self.context,
            w.positions.0,
            w.positions.1
        );
        let _ = writeln!(
            o,
            "\nwafer [1]    {:>10.2} µs/token  {:>10.1} tok/s  {:.0} cycles (cost model{}: {}{})",
            w.us(),
            w.tokens_per_s(),
            w.per_token_cycles,
            if w.overlapped {
                ", stages one after another"
            } else {
                ""
            },
            w.predicted_cycles,
            w.predicted_overlapped
                .map(|p| format!("; overlapped, its estimate: {p}"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            o,
            "             {} of {} PEs ({:.1}%), {}B of {}B SRAM ({:.1}%)",
            w.pes_used,
            w.pes,
            100.0 * w.pes_used as f64 / w.pes as f64,
            si(w.sram_bytes as f64),
            si(w.sram_capacity as f64),
            100.0 * w.sram_bytes as f64 / w.sram_capacity as f64
        );
        if let Some((stage, n)) = &w.backlog {
            let _ = writeln!(
                o,
                "             at most {n} input wavelets waited at a stage's edge at once (`{stage}`): on a wafer they would wait in the route's buffers, and past what those hold would hold the producer back (not modelled)"
            );
        }
        if let Some(r) = &w.region {
            let _ = writeln!(o, "             {}", r.summary());
        }
        if let Some(e) = &w.experts {
            let _ = writeln!(
                o,
                "             experts: every one placed; each layer runs the {} of {} that a seeded routing (seed {}) picks, not the router's picks ({})",
                e.per_token,
                e.experts,
                e.seed,
                if w.emulated {
                    "timing-only steps have no values to route by"
                } else {
                    "the cost models have no values to route by"
                }
            );
        }
        if w.wafers.len() > 1 {
            let us = |cycles: f64| cycles / w.clock_hz * 1e6;
            let _ = writeln!(
                o,
                "             {} wafers, layers split {}; per wafer µs/token: {}",
                w.wafers.len(),
                w.wafers
                    .iter()
                    .map(|x| format!("{}..{}", x.layers.start, x.layers.end))
                    .collect::<Vec<_>>()
                    .join(" | "),
                w.wafers
                    .iter()
                    .map(|x| format!("{:.2}", us(x.cycles)))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            let _ = writeln!(
                o,
                "             {} transfers between wafers (modelled link): {}",
                w.transfers.len(),
                w.transfers
                    .iter()
                    .map(|(b, c)| format!("{b} B in {:.2} µs", us(*c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(
            o,
            "\nwhere the time goes (cycles per token; each stage's cycles split as its PEs' time is)"
        );
        let _ = writeln!(
            o,
            "  {:26} {:>10} {:>7} {:>10} {:>10} {:>10}",
            "layer kind", "cycles", "share", "compute", "fabric", "idle"
        );
        let total: f64 = w.kinds.values().map(|k| k.cycles).sum();
        let mut kinds: Vec<_> = w.kinds.iter().collect();
        kinds.sort_by(|a, b| b.1.cycles.total_cmp(&a.1.cycles).then(a.0.cmp(b.0)));
        for (name, k) in kinds {
            let share = format!(
                "  {:26} {:>10.0} {:>6.1}%",
                name,
                k.cycles,
                100.0 * k.cycles / total.max(1.0)
            );
            let _ = if w.emulated {
                writeln!(
                    o,
                    "{share} {:>10.0} {:>10.0} {:>10.0}",
                    k.pe.compute, k.pe.fabric, k.pe.idle
                )
            } else {
                writeln!(o, "{share} {:>10} {:>10} {:>10}", "-", "-", "-")
            };
        }
        let _ = writeln!(
            o,
            "\nGPU batch-1 decode: {}B of weights + {}B of KV cache read, {}FLOP, per token",
            si(self.work.weight_bytes),
            si(self.work.kv_bytes),
            si(self.work.flops)
        );
        let _ = writeln!(
            o,
            "  {:28} {:38} {:>10} {:>9} {:>8} {:>9}",
            "device", "how", "µs/token", "tok/s", "bound", "wafer ×"
        );
        for g in &self.gpus {
            let _ = writeln!(
                o,
                "  {:28} {:38} {:>10.1} {:>9.1} {:>8} {:>8.1}x [{}]",
                g.device,
                g.how,
                g.seconds_per_token * 1e6,
                1.0 / g.seconds_per_token,
                g.bound.unwrap_or("-"),
                g.seconds_per_token * 1e6 / w.us(),
                g.source + 1
            );
        }
        let _ = writeln!(o, "\nsources");
        for (i, s) in self.sources.iter().enumerate() {
            let _ = writeln!(o, "  [{}] {s}", i + 1);
        }
        o
    }

    pub fn json(&self) -> Value {
        let w = &self.wafer;
        json!({
            "model": self.model,
            "arch": self.arch,
            "placement": self.placement,
            "tiles": self.tiles.iter().map(Tiles::to_string).collect::<Vec<_>>(),
            "dtype": self.dtype,
            "context": self.context,
            "wafer": {
                "per_token_us": w.us(),
                "tokens_per_s": w.tokens_per_s(),
                "per_token_cycles": w.per_token_cycles,
                "predicted_cycles": w.predicted_cycles,
                "pes_used": w.pes_used,
                "pes": w.pes,
                "sram_bytes": w.sram_bytes,
                "sram_capacity_bytes": w.sram_capacity,
                "positions": [w.positions.0, w.positions.1],
                "emulated": w.emulated,
                "overlapped": w.overlapped,
                "predicted_overlapped_cycles": w.predicted_overlapped,
                "max_backlog": w.backlog.as_ref().map(|(stage, wavelets)| json!({
                    "stage": stage, "wavelets": wavelets,
                })),
                "region": w.region.as_ref().map(region_json),
                "experts": w.experts.map(|e| json!({
                    "experts": e.experts, "per_token": e.per_token,
                    "routing": "seeded", "seed": e.seed,
                })),
                "wafers": w.wafers.iter().map(|x| json!({
                    "layers": [x.layers.start, x.layers.end],
                    "cycles": x.cycles,
                    "us": x.cycles / w.clock_hz * 1e6,
                })).collect::<Vec<_>>(),
                "transfers": w.transfers.iter().map(|(b, c)| json!({
                    "bytes": b, "cycles": c, "us": c / w.clock_hz * 1e6,
                })).collect::<Vec<_>>(),
                "by_kind": w.kinds.iter().map(|(k, t)| (k.to_string(), json!({
                    "cycles": t.cycles, "compute": t.pe.compute, "fabric": t.pe.fabric, "idle": t.pe.idle,
                }))).collect::<serde_json::Map<_, _>>(),
                "source": 1,
            },
            "decode_work": {
                "weight_bytes": self.work.weight_bytes,
                "kv_bytes": self.work.kv_bytes,
                "flops": self.work.flops,
                "eager_kernels": self.work.kernels,
            },
            "gpus": self.gpus.iter().map(|g| json!({
                "device": g.device,
                "how": g.how,
                "seconds_per_token": g.seconds_per_token,
                "tokens_per_s": 1.0 / g.seconds_per_token,
                "bound": g.bound,
                "wafer_speedup": g.seconds_per_token * 1e6 / w.us(),
                "source": g.source + 1,
            })).collect::<Vec<_>>(),
            "sources": self.sources,
        })
    }
}
