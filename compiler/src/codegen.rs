//! Codegen: each placed stage becomes a kernel Fragment holding the model's
//! weights (or, for built-in models without a checkpoint, the generators'
//! seeded weights, which are never materialised on the host).
//!
//! [`compile`] runs the whole pipeline: IR → stages → fusion → placement →
//! codegen → routing → SRAM plan, verifying between passes in debug builds.

use crate::ir::{self, Graph};
use crate::model::{Config, ModelError, Weights};
use crate::place::{self, Kernel, Options, PlaceError, PlacementKind, Site, Tiles};
use crate::region::{self, Region, Searched};
use crate::route::{self, Routing};
use crate::share::{Alone, Exchange};
use crate::sram::{self, SramPlan};
use crate::stage::{self, Stage, Work};
use crate::system::{Transfer, WaferPart, Wafers};
use wafer_kernels::{Fragment, KernelError};

/// A model compiled for a machine: every stage's kernel, where it runs,
/// the hand-offs between stages and the SRAM each PE needs.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub config: Config,
    pub options: Options,
    pub kind: PlacementKind,
    pub graph: Graph,
    pub stages: Vec<Stage>,
    pub sites: Vec<Site>,
    pub fragments: Vec<Fragment>,
    pub routing: Routing,
    pub sram: SramPlan,
    /// Whether the fragments hold a checkpoint's weights (else seeded ones).
    pub real_weights: bool,
    /// With [`Region::Search`]: the rectangles tried and the one chosen
    /// (`options.arch` is then cut to it).
    pub region: Option<Searched>,
    /// The wafers of the system, in the order a step runs them (one for a
    /// model on one wafer); each holds a contiguous run of `stages`, and
    /// its `sites` are on its own grid.
    pub wafers: Vec<WaferPart>,
    /// What each wafer sends the next (none on one wafer); each is paid
    /// by the hand-off of its `into` stage.
    pub transfers: Vec<Transfer>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Place(#[from] PlaceError),
    // The inner error is in the message, so it is not also a `source`
    // (`{:#}` would print it twice).
    #[error("stage `{stage}`: {error}")]
    Kernel { stage: String, error: KernelError },
    /// A pass produced what its verifier rejects: a compiler bug, named
    /// by the pass and the instruction or stage.
    #[error("internal: after `{pass}`: {error}")]
    Verify {
        pass: &'static str,
        error: PassError,
    },
    #[error("internal: {0}")]
    Internal(String),
    #[error("{0}")]
    Options(String),
    /// A model wafer's compiler does not lower yet, and what runs it.
    #[error("{0}")]
    Unsupported(String),
    /// One wafer of a system, its layers, and what went wrong there.
    #[error("wafer {} of {of} (layers {}..{}): {error}", wafer + 1, layers.start, layers.end)]
    Wafer {
        wafer: usize,
        of: usize,
        layers: std::ops::Range<usize>,
        error: Box<CompileError>,
    },
    /// `--wafers` cannot be honoured, and why.
    #[error("--wafers {asked}: {why}")]
    Wafers { asked: String, why: String },
}

impl Compiled {
    /// Cycles of one step as the cost models predict them at position `pos`
    /// (stages one after another, each after its inputs' hand-off).
    ///
    /// A mixture of experts' step runs the experts the seeded routing of
    /// [`crate::experts::DEFAULT_SEED`] picks at `pos`, as a timing-only
    /// step does by default.
    pub fn predicted(&self, pos: u32) -> u64 {
        self.predicted_with(pos, crate::experts::DEFAULT_SEED)
    }

    /// [`Compiled::predicted`] with the experts `seed`'s routing picks.
    pub fn predicted_with(&self, pos: u32, seed: u64) -> u64 {
        self.predicted_ran(pos, crate::kernel::TIMING_TOKEN, &self.runs(pos, seed))
    }

    /// The predicted step of the stages `ran` marks (a step's
    /// [`crate::decode::Step::stage_ran`]) when it is fed `token`.
    pub fn predicted_ran(&self, pos: u32, token: u32, ran: &[bool]) -> u64 {
        self.stage_predictions_for(pos, token)
            .iter()
            .zip(&self.routing.handoffs)
            .zip(ran)
            .filter(|(_, ran)| **ran)
            .map(|((p, h), _)| p + h.cycles)
            .sum()
    }

    /// How the stages are placed, in words: `pipeline placement`, `mesh
    /// placement`, or `mesh placement in 4x3 tiles of layers` (a system's
    /// wafers may each take their own tiles).
    pub fn placement(&self) -> String {
        let tiles: Vec<Tiles> = self.wafers.iter().map(|w| w.tiles).collect();
        format!("{} placement{}", self.kind, place::tiles_phrase(&tiles))
    }

    /// Which stages a step at `pos` runs when the experts are those
    /// `seed`'s routing picks (all stages of a model without experts).
    pub fn runs(&self, pos: u32, seed: u64) -> Vec<bool> {
        crate::experts::seeded_runs(&self.graph, &self.stages, seed, pos)
    }

    /// Each stage's kernel's predicted cycles at `pos`, for the token a
    /// timing-only step feeds ([`crate::kernel::TIMING_TOKEN`]).
    pub fn stage_predictions(&self, pos: u32) -> Vec<u64> {
        self.stage_predictions_for(pos, crate::kernel::TIMING_TOKEN)
    }

    /// Each stage's kernel's predicted cycles at `pos` for a step fed
    /// `token`. The layers repeat a few kernels (equal but for their
    /// seeded data), and a large GEMV's cost model plans its reduction, so
    /// each distinct kernel is costed once.
    pub fn stage_predictions_for(&self, pos: u32, token: u32) -> Vec<u64> {
        let mut distinct: Vec<(Kernel, u64)> = Vec::new();
        self.sites
            .iter()
            .map(|s| {
                let k = s.kernel.clone().with_seed(0);
                match distinct.iter().find(|(d, _)| *d == k) {
                    Some((_, c)) => *c,
                    None => {
                        let c = k.predicted_for(&self.options.arch, pos, token);
                        distinct.push((k, c));
                        c
                    }
                }
            })
            .collect()
    }

    /// PE-cycles the reference engine steps for one decode step at `pos`:
    /// each stage's program rectangle times its predicted cycles (it steps
    /// every PE of a program every cycle).
    pub fn emulation_work(&self, pos: u32) -> u64 {
        self.stage_predictions(pos)
            .iter()
            .zip(&self.fragments)
            .map(|(p, f)| f.program.n_pes() * p)
            .sum()
    }

    pub fn pes_used(&self) -> u64 {
        self.sram.pes_used
    }

    /// What the fullest PE holds, by kind (on a system, the fullest
    /// wafer's); the kinds add up to `sram.max_bytes`.
    pub fn fullest_held(&self) -> crate::sram::Held {
        let k = self
            .wafers
            .iter()
            .position(|w| {
                w.sram.max_bytes == self.sram.max_bytes && w.sram.max_at == self.sram.max_at
            })
            .expect("the plan's fullest PE is a wafer's");
        self.wafer_fullest_held(k)
    }

    /// What wafer `k`'s fullest PE holds, by kind.
    pub fn wafer_fullest_held(&self, k: usize) -> crate::sram::Held {
        let w = &self.wafers[k];
        let r = w.stages.clone();
        crate::sram::held_at(&self.sites[r.clone()], &self.fragments[r], w.sram.max_at)
    }

    /// What the model runs on, for a report: `wse3`, or `3 wafers of wse3`.
    pub fn machines(&self) -> String {
        match self.wafers.len() {
            1 => self.options.arch.name.clone(),
            n => format!("{n} wafers of {}", self.options.arch.name),
        }
    }
}

/// Compile `config` (with `weights`, or seeded weights when `None`).
pub fn compile(
    config: &Config,
    weights: Option<&Weights>,
    options: &Options,
) -> Result<Compiled, CompileError> {
    compile_shared(config, weights, options, &Alone)
}

/// [`compile`], with a system of wafers' work shared among the processes
/// of `ex` (every process calls it together and gets the same result as
/// one process would): each wafer's part is placed, generated and routed
/// on one process, as are the predictions that choose the wafer count and
/// placement ([`crate::share::spread`]). One wafer is compiled by each
/// process alone.
pub fn compile_shared(
    config: &Config,
    weights: Option<&Weights>,
    options: &Options,
    ex: &dyn Exchange,
) -> Result<Compiled, CompileError> {
    config
        .validate()
        .map_err(|m| CompileError::Options(format!("model config: {m}")))?;
    if options.max_context == 0 {
        return Err(CompileError::Options(
            "--max-context must be at least 1".into(),
        ));
    }
    let graph = ir::decode_step(config);
    let verify =
        |pass, r: Result<(), PassError>| r.map_err(|error| CompileError::Verify { pass, error });
    verify("decode_step", ir::verify(&graph).map_err(PassError::from))?;
    let stages = stage::lower(&graph);
    verify(
        "lower",
        stage::verify(&stages, &graph).map_err(PassError::from),
    )?;
    let stages = stage::fuse(stages);
    verify(
        "fuse",
        stage::verify(&stages, &graph).map_err(PassError::from),
    )?;
    // Check the checkpoint before any placement work.
    if let Some(w) = weights {
        for (name, shape) in &graph.weights {
            w.get(name, shape)?;
        }
    }
    let kinds = match options.placement {
        Some(k) => vec![k],
        None => vec![PlacementKind::Pipeline, PlacementKind::Mesh],
    };
    let system = |first| -> Result<Compiled, CompileError> {
        let (n, fit) =
            crate::system::auto_count(config, options, &graph, &stages, &kinds, first, ex)?;
        crate::system::compile(
            config,
            weights,
            options,
            (&graph, &stages),
            &kinds,
            (n, Some(fit)),
            ex,
        )
    };
    match options.wafers {
        Wafers::Count(1) => {}
        Wafers::Count(n) => {
            return crate::system::compile(
                config,
                weights,
                options,
                (&graph, &stages),
                &kinds,
                (n, None),
                ex,
            );
        }
        // One wafer where it fits (with the region search), else the
        // fewest that hold it.
        Wafers::Auto => {
            if place::check_footprint(config, options).is_err() {
                return system(2);
            }
            let one = Options {
                wafers: Wafers::Count(1),
                ..options.clone()
            };
            return match compile_shared(config, weights, &one, ex) {
                Err(CompileError::Place(PlaceError::NoFit { .. })) => system(2),
                r => r,
            };
        }
        Wafers::AsNeeded => {
            if place::check_footprint(config, options).is_err() {
                return system(2);
            }
        }
    }
    place::check_footprint(config, options)?;
    let searched = match options.region {
        Region::Search => region::search(config, options, &graph, &stages, &kinds),
        Region::Whole => None,
    };
    if let Some(s) = searched {
        let arch = options
            .arch
            .clone()
            .with_grid(s.chosen.0, s.chosen.1)
            .map_err(|e| CompileError::Internal(e.to_string()))?;
        let o = Options {
            arch,
            ..options.clone()
        };
        let mut c = compile_with(config, weights, &o, &graph, &stages, (s.kind, s.tiles))?;
        c.region = Some(s);
        return Ok(c);
    }
    let mut best: Option<Compiled> = None;
    let mut first_err = None;
    for kind in kinds {
        let tiles = tiles_for(config, options, &graph, &stages, kind, &[]);
        match compile_with(config, weights, options, &graph, &stages, (kind, tiles)) {
            Ok(c) => {
                let at = options.max_context / 2;
                if best
                    .as_ref()
                    .is_none_or(|b| c.predicted(at) < b.predicted(at))
                {
                    best = Some(c);
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    best.ok_or_else(|| first_err.expect("at least one placement was tried"))
}

/// What a pass's verifier found.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Graph(#[from] ir::GraphError),
    #[error(transparent)]
    Stages(#[from] stage::StageError),
}

fn compile_with(
    config: &Config,
    weights: Option<&Weights>,
    options: &Options,
    graph: &Graph,
    stages: &[Stage],
    (kind, tiles): (PlacementKind, Tiles),
) -> Result<Compiled, CompileError> {
    let (sites, fragments, routing, sram) = fitting(
        |copies| {
            Ok(place::place(
                stages,
                config,
                options,
                (kind, tiles),
                copies,
            )?)
        },
        |sites| {
            let fragments = fragments(stages, &sites, graph, weights, options)?;
            let refs: Vec<&Fragment> = fragments.iter().collect();
            let (routing, sram) =
                route_and_plan(config, options, graph, stages, &sites, &refs, kind, &[])?;
            Ok((sites, fragments, routing, sram))
        },
    )?;
    let wafers = vec![WaferPart {
        stages: 0..stages.len(),
        layers: 0..config.n_layers,
        sram: sram.clone(),
        colors_used: routing.colors_used,
        tiles,
    }];
    Ok(Compiled {
        config: config.clone(),
        options: options.clone(),
        kind,
        graph: graph.clone(),
        stages: stages.to_vec(),
        sites,
        fragments,
        routing,
        sram,
        real_weights: weights.is_some(),
        region: None,
        wafers,
        transfers: Vec::new(),
    })
}

/// Every stage's Fragment at its site, with the checkpoint's weights.
pub(crate) fn fragments(
    stages: &[Stage],
    sites: &[Site],
    graph: &Graph,
    weights: Option<&Weights>,
    options: &Options,
) -> Result<Vec<Fragment>, CompileError> {
    // Without a checkpoint the weights are the generators' seeded ones, one
    // set per distinct kernel: the stages of one kernel are one program,
    // shared (a 120B mixture of experts is some 14,000 stages of a few
    // kernels; a copy each would not fit a host's memory).
    let mut generated: std::collections::HashMap<String, Fragment> = Default::default();
    let mut out = Vec::with_capacity(stages.len());
    for (s, site) in stages.iter().zip(sites) {
        let named = |e| match e {
            CompileError::Kernel { error, .. } => CompileError::Kernel {
                stage: s.name.clone(),
                error,
            },
            e => e,
        };
        let key = weights
            .is_none()
            .then(|| format!("{:?} {:?}", site.kernel.clone().with_seed(0), site.flip));
        let f = match key.as_ref().and_then(|k| generated.get(k)) {
            Some(f) => {
                check_ports(s, f, graph)?;
                f.clone()
            }
            None => {
                let f = fragment(s, site, graph, weights, options).map_err(named)?;
                if let Some(k) = key {
                    generated.insert(k, f.clone());
                }
                f
            }
        };
        out.push(f);
    }
    Ok(out)
}

/// Place (`place`), then the rest of a compile (`rest`: generate, route,
/// plan SRAM); where attention took copies of its cache
/// ([`place::KvCopies`]) and the rest finds they do not fit, again with
/// fewer copies. The error, if any, is then that of the placement
/// without copies: what a model needs at the least.
/// The tiles of layers `kind` takes for `stages` on `o`'s grid: the
/// fastest predicted ([`crate::region::predict`]), or `o.tiles` (else
/// one) where nothing is predicted to fit (the compile then says why).
pub(crate) fn tiles_for(
    config: &Config,
    o: &Options,
    graph: &Graph,
    stages: &[Stage],
    kind: PlacementKind,
    arrives: &[usize],
) -> Tiles {
    let ladder = crate::region::tilings(o, stages, kind);
    if let [only] = ladder[..] {
        return only;
    }
    let pos = o.max_context / 2;
    let made = crate::region::Fragments::default();
    crate::region::predict(
        config,
        o,
        graph,
        stages,
        kind,
        pos,
        arrives,
        Tiles::ONE,
        &made,
    )
    .map_or(Tiles::ONE, |(_, t)| t)
}

pub(crate) fn fitting<T>(
    place: impl Fn(place::KvCopies) -> Result<Vec<Site>, CompileError>,
    rest: impl Fn(Vec<Site>) -> Result<T, CompileError>,
) -> Result<T, CompileError> {
    use place::KvCopies;
    for copies in [KvCopies::Allowed, KvCopies::NoLarger] {
        let sites = place(copies)?;
        let copied = place::has_kv_copies(&sites);
        match rest(sites) {
            Err(CompileError::Place(PlaceError::NoFit { .. })) if copied => {}
            r => return r,
        }
    }
    rest(place(KvCopies::None)?)
}

/// Route the placed stages and plan their SRAM, or say why they do not
/// fit `options.arch`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn route_and_plan(
    config: &Config,
    options: &Options,
    graph: &Graph,
    stages: &[Stage],
    sites: &[Site],
    fragments: &[&Fragment],
    kind: PlacementKind,
    arrives: &[usize],
) -> Result<(Routing, SramPlan), CompileError> {
    let routing = route::route(
        stages,
        sites,
        fragments,
        graph,
        &options.arch,
        kind,
        arrives,
    )
    .map_err(CompileError::Internal)?;
    let sram = sram::plan(sites, fragments, &options.arch);
    if sram.max_bytes > options.arch.sram_bytes {
        return Err(PlaceError::NoFit {
            arch: options.arch.name.clone(),
            kind: Some(kind),
            why: format!(
                "{} would need {} bytes of SRAM ({}; stages {}), a PE has {}",
                sram.max_at,
                sram.max_bytes,
                sram::held_at(sites, fragments, sram.max_at),
                {
                    let names = sram.max_stages(sites, stages);
                    if names.len() > 6 {
                        format!("{} and {} more", names[..6].join(", "), names.len() - 6)
                    } else {
                        names.join(", ")
                    }
                },
                options.arch.sram_bytes
            ),
            fix: crate::footprint::fit_advice(options.dtype),
            need_pes: sram.pes_used,
            need_bytes: sram.total_bytes,
            weight_bytes: crate::footprint::footprint(config, options.dtype, options.max_context).0,
            kv_bytes: crate::footprint::footprint(config, options.dtype, options.max_context).1,
            have_pes: options.arch.grid_cols as u64 * options.arch.grid_rows as u64,
            have_bytes: options.arch.grid_cols as u64
                * options.arch.grid_rows as u64
                * options.arch.sram_bytes as u64,
        }
        .into());
    }
    Ok((routing, sram))
}

fn kernel_err(error: KernelError) -> CompileError {
    CompileError::Kernel {
        stage: String::new(),
        error,
    }
}

/// A projection stage's matrix as the GEMV kernels take it (outputs ×
/// inputs, row-major): its weights' rows one after another, each bias as
/// one more column. `None` without a checkpoint.
fn gemv_matrix<'w>(
    s: &Stage,
    real: bool,
    tensor: &dyn Fn(&str) -> Result<&'w crate::Tensor, CompileError>,
) -> Result<Option<Vec<f32>>, CompileError> {
    let Work::Gemv {
        weights: names,
        biases,
        m,
        n,
        ..
    } = &s.work
    else {
        return Ok(None);
    };
    if !real {
        return Ok(None);
    }
    let mut w = Vec::with_capacity(*m as usize * (*n as usize + 1));
    for (k, name) in names.iter().enumerate() {
        let t = tensor(name)?;
        match biases.get(k) {
            None => w.extend_from_slice(&t.data),
            // Row by row, the bias as one more column.
            Some(b) => {
                let b = tensor(b)?;
                for (r, row) in t.data.chunks_exact(*n as usize).enumerate() {
                    w.extend_from_slice(row);
                    w.push(b.data[r]);
                }
            }
        }
    }
    Ok(Some(w))
}

/// The stage's Fragment with seeded weights, as the region search
/// predicts it.
pub(crate) fn fragment_of(
    s: &Stage,
    site: &Site,
    graph: &Graph,
    o: &Options,
) -> Result<Fragment, CompileError> {
    fragment(s, site, graph, None, o).map_err(|e| match e {
        CompileError::Kernel { error, .. } => CompileError::Kernel {
            stage: s.name.clone(),
            error,
        },
        e => e,
    })
}

/// The stage's Fragment, with the checkpoint's weights loaded.
fn fragment(
    s: &Stage,
    site: &Site,
    graph: &Graph,
    weights: Option<&Weights>,
    o: &Options,
) -> Result<Fragment, CompileError> {
    let arch = &o.arch;
    let tensor = |name: &str| -> Result<&crate::Tensor, CompileError> {
        let w = weights.expect("only called with weights");
        let shape = graph
            .weights
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| CompileError::Internal(format!("weight `{name}` not in the graph")))?;
        Ok(w.get(name, &shape)?)
    };
    let f = match &site.kernel {
        Kernel::Embed(spec) => {
            let mut f = wafer_kernels::embedding::generate(spec, arch).map_err(kernel_err)?;
            if let (Some(_), Work::Embed { table, .. }) = (weights, &s.work) {
                wafer_kernels::embedding::load_table(spec, &mut f, &tensor(table)?.data)
                    .map_err(kernel_err)?;
            }
            f
        }
        Kernel::Gemv(spec) => {
            let mut f = wafer_kernels::gemv::generate(spec, arch).map_err(kernel_err)?;
            if let Some(w) = gemv_matrix(s, weights.is_some(), &tensor)? {
                wafer_kernels::gemv::load_weights(spec, arch, &mut f, &w).map_err(kernel_err)?;
            }
            f
        }
        Kernel::MeshGemv(spec) => {
            let mut f = wafer_kernels::meshgemv::generate(spec, arch).map_err(kernel_err)?;
            if let Some(w) = gemv_matrix(s, weights.is_some(), &tensor)? {
                wafer_kernels::meshgemv::load_weights(spec, &mut f, &w).map_err(kernel_err)?;
            }
            f
        }
        Kernel::Vector(spec) => {
            let mut f = wafer_kernels::vector::generate(spec, arch).map_err(kernel_err)?;
            match (weights, &s.work) {
                (Some(_), Work::RmsNorm { weight, .. } | Work::AddRmsNorm { weight, .. }) => {
                    wafer_kernels::vector::load_weights(spec, &mut f, "g", &tensor(weight)?.data)
                        .map_err(kernel_err)?;
                }
                (Some(_), Work::LayerNorm { weight, bias, .. }) => {
                    wafer_kernels::vector::load_weights(spec, &mut f, "g", &tensor(weight)?.data)
                        .map_err(kernel_err)?;
                    wafer_kernels::vector::load_weights(spec, &mut f, "bias", &tensor(bias)?.data)
                        .map_err(kernel_err)?;
                }
                _ => {}
            }
            f
        }
        Kernel::Rope(spec) => wafer_kernels::rope::generate(spec, arch).map_err(kernel_err)?,
        Kernel::Attention(spec) => {
            let mut f = wafer_kernels::attention::generate(spec, arch).map_err(kernel_err)?;
            // The cache starts empty (its seeded contents are never read,
            // but an empty cache is what a fresh wafer holds).
            let state = f.state.clone();
            std::sync::Arc::make_mut(&mut f.program)
                .data
                .retain(|d| !state.contains(&d.buffer));
            if let (Some(_), Work::Attention { sinks: Some(w), .. }) = (weights, &s.work) {
                wafer_kernels::attention::load_sinks(spec, &mut f, &tensor(w)?.data)
                    .map_err(kernel_err)?;
            }
            f
        }
        Kernel::Argmax(spec) => wafer_kernels::argmax::generate(spec, arch).map_err(kernel_err)?,
        Kernel::Router(spec) => wafer_kernels::router::generate(spec, arch).map_err(kernel_err)?,
        Kernel::ClampedSwiglu(spec) => {
            wafer_kernels::clamped_swiglu::generate(spec, arch).map_err(kernel_err)?
        }
        Kernel::Combine(spec) => {
            wafer_kernels::combine::generate(spec, arch).map_err(kernel_err)?
        }
    };
    // Reflected after the weights are loaded: they move with their PEs.
    let f = f.mirrored(site.flip);
    check_ports(s, &f, graph)?;
    Ok(f)
}

/// Every input port the stage feeds exists with the right length.
fn check_ports(s: &Stage, f: &Fragment, graph: &Graph) -> Result<(), CompileError> {
    for (port, srcs) in &s.inputs {
        let want: u32 = match s.work {
            // Only the picked experts' outputs arrive.
            Work::Combine { n, k } if port == "y" => n * k,
            _ => srcs
                .iter()
                .map(|src| match src {
                    crate::stage::Src::Pos | crate::stage::Src::One => 1,
                    crate::stage::Src::Value(v) => graph.insts[*v].len as u32,
                    crate::stage::Src::ExpertWeights(v) => graph.insts[*v].len as u32 / 2,
                })
                .sum(),
        };
        match f.inputs.iter().find(|p| &p.name == port) {
            Some(p) if p.len == want => {}
            other => {
                return Err(CompileError::Internal(format!(
                    "stage `{}`: kernel port `{port}` is {:?}, the stage feeds {want} values",
                    s.name,
                    other.map(|p| p.len)
                )));
            }
        }
    }
    Ok(())
}
