//! The wafer's side of the table: one decode step emulated (or
//! predicted by the cost models, or their estimate of the overlapped
//! step, each labelled as such), summarised by layer kind and by how the
//! PEs spent their time.

use crate::ReportError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use wafer_compiler::Compiled;
use wafer_compiler::decode::links::{LinkLoad, Paths};
use wafer_compiler::decode::park::Summary;
use wafer_compiler::decode::{Decoder, PeTime, Step};
use wafer_compiler::place::Kernel;

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
    /// the first position ([`wafer_compiler::decode::predict::predicted`]).
    pub predicted_overlapped: Option<u64>,
    /// Emulated overlapped, the most input wavelets that waited at a
    /// stage's edge at once, over the steps, and the stage
    /// ([`wafer_compiler::decode::Step::stage_backlog`]).
    pub backlog: Option<(String, u64)>,
    /// Emulated overlapped: how many stages a step's consumers held back
    /// (the most over the steps), the most passes a step took to settle
    /// its holds ([`wafer_compiler::decode::Step::stage_held`]), and the
    /// first stage held.
    pub held: Option<(usize, usize, Option<String>)>,
    /// Emulated overlapped: the input wavelets that reached a consumer
    /// before it could start, parked in SRAM by asynchronous receives
    /// ([`wafer_compiler::decode::park`]; `None` where none are).
    pub parked: Option<Summary>,
    /// Emulated overlapped: how the hand-offs load the links, per path
    /// order, in the step with the most wavelets waiting on a shared link
    /// ([`wafer_compiler::decode::links`]).
    pub links: Vec<LinkLoad>,
    /// Per entry of `links`, the stage whose input wavelet its queued
    /// links make latest after its emulated intake, and by how many cycles.
    pub links_late_stage: Vec<Option<(String, u64)>>,
    /// Emulated overlapped with the hand-offs queued on the links
    /// ([`Decoder::queue_links`]): on which paths, and the most rounds a
    /// step took ([`Step::queued_rounds`]).
    pub queued_links: Option<Paths>,
    pub queued_rounds: usize,
    /// Whether every step's queued arrivals settled (false: some step
    /// stopped at the most rounds allowed).
    pub queue_settled: bool,
    /// With the links queued, the last step's hand-offs whose trips the
    /// queue fed later than free routes ([`Step::queue_waits`]), longest
    /// delay first, with their stages' names.
    pub queue_waits: Vec<(String, String, wafer_compiler::decode::links::HandoffWait)>,
    /// The region search's choice ([`wafer_compiler::region`]), if it ran.
    pub region: Option<wafer_compiler::region::Searched>,
    /// Per wafer of the system (one on one wafer): its layers and its
    /// cycles per token (its stages and their hand-offs, the transfers
    /// between wafers apart; overlapped, its first stage's start to its
    /// last stage's end).
    pub wafers: Vec<WaferTime>,
    /// Per wafer-to-wafer transfer: bytes sent and cycles per token.
    pub transfers: Vec<(u64, f64)>,
    /// A mixture of experts' routing in these steps (`None`: no experts).
    pub experts: Option<ExpertsRun>,
    /// Emulated overlapped: the critical path of the steps
    /// ([`critical_path`]).
    pub critical: Option<CriticalPath>,
}

/// The stages a step's last end waited on, back to its start: from the
/// stage that ends last, each stage to the one it waited on last
/// ([`Step::stage_waited_on`]). Each stage on it is charged the cycles
/// from the end of the stage it waited on (the step's start for the
/// first) to its own end, so the charges sum to the step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CriticalPath {
    /// Stages on the path, in the last step.
    pub stages: usize,
    /// Per layer kind, the cycles charged to its stages on the path, per
    /// token (averaged over the steps).
    pub kinds: BTreeMap<&'static str, f64>,
}

/// Step `s`'s critical path ([`CriticalPath`]) by layer kind, and how
/// many stages are on it.
pub fn critical_path(c: &Compiled, s: &Step) -> (usize, BTreeMap<&'static str, f64>) {
    let path = s.critical_path();
    let mut kinds: BTreeMap<&'static str, f64> = BTreeMap::new();
    for &i in &path {
        let from = s.stage_waited_on[i].map_or(0, |b| s.stage_end(b));
        *kinds.entry(kind(&c.sites[i].kernel)).or_default() += s.stage_end(i) as f64 - from as f64;
    }
    (path.len(), kinds)
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
            held: None,
            parked: None,
            links: Vec::new(),
            links_late_stage: Vec::new(),
            queued_links: None,
            queued_rounds: 0,
            queue_settled: true,
            queue_waits: Vec::new(),
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
            critical: None,
        }
    }

    pub fn us(&self) -> f64 {
        self.per_token_cycles / self.clock_hz * 1e6
    }

    /// How the row's figure was had, as a chart names it beside the
    /// GPUs' "roofline" and "measured".
    pub fn how(&self) -> &'static str {
        match (self.emulated, self.overlapped) {
            (true, true) => "emulated, stages overlapped",
            (true, false) => "emulated, stages one after another",
            (false, true) => "cost models' estimate, stages overlapped",
            (false, false) => "cost models, stages one after another",
        }
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
    /// Overlap each step's stages ([`Decoder::overlap`]). Shared, an
    /// overlapped step deals out its wafers' stages rather than its runs
    /// ([`Decoder::share`]); the first whose links are queued on spread
    /// paths, which plans them, runs whole on every process.
    pub overlap: bool,
    /// Overlapped, count how the hand-offs load the links
    /// ([`Decoder::check_links`], [`WaferRow::links`]).
    pub links: bool,
    /// Overlapped, queue the hand-offs on the links on paths in this
    /// order, for at most this many rounds a step
    /// ([`Decoder::queue_links`]).
    pub queue: Option<(Paths, usize)>,
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
    d.check_links(opts.links);
    d.queue_links(opts.queue.filter(|_| opts.overlap));
    d.skip_to(context)?;
    let mut kinds: BTreeMap<&'static str, KindTime> = BTreeMap::new();
    let mut cycles = 0u64;
    let mut stage_cycles = vec![0.0; c.stages.len()];
    let mut backlog: Option<(usize, u64)> = None;
    let (mut held, mut passes, mut first_held) = (0, 0, None);
    let mut parked: Option<Summary> = None;
    let mut links: Vec<LinkLoad> = Vec::new();
    let (mut rounds, mut settled) = (0, true);
    let mut queue_waits = Vec::new();
    let mut critical = CriticalPath::default();
    // Overlapped, each wafer's span: its first stage's start to its last
    // stage's end, per token.
    let mut spans = vec![0.0; c.wafers.len()];
    for _ in 0..steps {
        if let Some(ex) = (opts.share.as_deref()).filter(|e| e.ranks() > 1) {
            d.share(0, ex)?;
        }
        let s = d.step(0)?;
        each(&s);
        cycles += s.cycles;
        held = held.max(s.stage_held.iter().filter(|h| **h).count());
        first_held = first_held.or(s.stage_held.iter().position(|h| *h));
        passes = passes.max(s.passes);
        if let Some(p) = s.parked {
            parked = Some(parked.map_or(p, |q| q.max(p)));
        }
        rounds = rounds.max(s.queued_rounds);
        settled &= s.queue_settled;
        queue_waits = s.queue_waits.clone();
        if links.is_empty() {
            links = s.links.clone();
        }
        for (most, l) in links.iter_mut().zip(&s.links) {
            if l.waiting - l.converging > most.waiting - most.converging {
                *most = *l;
            }
        }
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
            let (on, by_kind) = critical_path(c, &s);
            critical.stages = on;
            for (k, cycles) in by_kind {
                *critical.kinds.entry(k).or_default() += cycles / steps as f64;
            }
            for (span, w) in spans.iter_mut().zip(&c.wafers) {
                let ran = || w.stages.clone().filter(|&i| s.stage_ran[i]);
                let first = ran().map(|i| s.stage_start[i]).min().unwrap_or(0);
                let last = ran().map(|i| s.stage_end(i)).max().unwrap_or(0);
                *span += last.saturating_sub(first) as f64 / steps as f64;
            }
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
        row.critical = Some(critical);
        for (w, span) in row.wafers.iter_mut().zip(spans) {
            w.cycles = span;
        }
        let p = wafer_compiler::decode::predict::predicted(c, context, opts.expert_seed);
        row.predicted_overlapped = Some(p.cycles);
        row.backlog = backlog.map(|(i, b)| (c.stages[i].name.clone(), b));
        row.held = Some((held, passes, first_held.map(|i| c.stages[i].name.clone())));
        row.parked = parked.filter(|p| p.wavelets > 0);
        row.links_late_stage = (links.iter())
            .map(|l| (l.latest).map(|(i, d)| (c.stages[i].name.clone(), d)))
            .collect();
        row.links = links;
        row.queued_links = opts.queue.map(|q| q.0);
        row.queued_rounds = rounds;
        row.queue_settled = settled;
        row.queue_waits = (queue_waits.into_iter())
            .map(|w| {
                (
                    c.stages[w.from].name.clone(),
                    c.stages[w.to].name.clone(),
                    w,
                )
            })
            .collect();
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
/// at `context` (no emulation; [`wafer_compiler::decode::predict::predicted`]):
/// each stage's estimated run by layer kind, and what the overlap takes
/// off their sum, under [`OVERLAP`] (no PE-time split).
pub fn predicted_overlapped(c: &Compiled, context: u32) -> WaferRow {
    let seed = wafer_compiler::experts::DEFAULT_SEED;
    let p = wafer_compiler::decode::predict::predicted(c, context, seed);
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
