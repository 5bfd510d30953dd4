//! Placement: which rectangle of the wafer each stage's kernel runs on, and
//! the kernel's shape there, chosen by the kernels' cost models.
//!
//! Two strategies:
//! * **pipeline** — the wafer is cut into vertical strips, one for the
//!   embedding, one per layer and one for the head, each as wide as its
//!   share of the weights (and at least what its kernels need); in a strip
//!   the stages are stacked top to bottom, the vector kernels as short as
//!   their cost allows and the GEMVs sharing the rest in proportion to their
//!   weights. Stages never overlap, so one router configuration serves the
//!   whole step.
//! * **mesh** — every GEMV (and the embedding table) is tiled over the
//!   whole wafer (WaferLLM's MeshGEMV) at the same origin, so every PE holds
//!   a tile of every layer's weights;
//!   the other kernels take columns side by side from the west edge. Stages
//!   overlap, so the fabric's routes are loaded per stage.
//!
//! `auto` places both and keeps the one whose predicted step is shorter
//! among those that fit.

use crate::footprint::{fit_advice, footprint, table_dtype, weight_bytes};
pub use crate::kernel::Kernel;
use crate::model::{Config, RopePairs};
use crate::stage::{Stage, Work};
use std::fmt;
use wafer_emulator::{Arch, DType, Pe};
use wafer_kernels::argmax::ArgmaxSpec;
use wafer_kernels::attention::AttentionSpec;
use wafer_kernels::clamped_swiglu::ClampedSwigluSpec;
use wafer_kernels::combine::CombineSpec;
use wafer_kernels::embedding::EmbeddingSpec;
use wafer_kernels::gemv::GemvSpec;
use wafer_kernels::meshgemv::MeshGemvSpec;
use wafer_kernels::reduce::Strategy;
use wafer_kernels::rope::{RopeLayout, RopeSpec};
use wafer_kernels::router::RouterSpec;
use wafer_kernels::vector::{VectorOp, VectorSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacementKind {
    Pipeline,
    Mesh,
}

impl PlacementKind {
    pub fn name(self) -> &'static str {
        match self {
            PlacementKind::Pipeline => "pipeline",
            PlacementKind::Mesh => "mesh",
        }
    }
}

impl fmt::Display for PlacementKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct Options {
    pub arch: Arch,
    /// Weights' dtype on the wafer (activations and the KV cache are f32).
    pub dtype: DType,
    /// `None`: choose by predicted cycles.
    pub placement: Option<PlacementKind>,
    /// Positions the KV cache holds.
    pub max_context: u32,
    /// How kernels reduce along lines of PEs.
    pub reduce: Strategy,
    /// Which kernels a projection may use.
    pub gemv: GemvChoice,
    /// Which PEs of the grid to compile for.
    pub region: crate::region::Region,
    /// How many wafers (machines of `arch`) the model is split over.
    pub wafers: crate::system::Wafers,
    /// Mesh placement's tiles of layers; `None`: choose by predicted
    /// cycles ([`crate::region::predict`]).
    pub tiles: Option<Tiles>,
}

/// The kernels a projection (a GEMV stage) may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemvChoice {
    /// The faster by the cost models, among those that fit.
    Auto,
    /// The tiled GEMV ([`wafer_kernels::gemv`]) only.
    Tiled,
    /// WaferLLM's MeshGEMV only (16-bit weights).
    Mesh,
}

impl GemvChoice {
    pub fn parse(s: &str) -> Option<GemvChoice> {
        match s {
            "auto" => Some(GemvChoice::Auto),
            "tiled" => Some(GemvChoice::Tiled),
            "meshgemv" => Some(GemvChoice::Mesh),
            _ => None,
        }
    }
    fn tiled(self) -> bool {
        self != GemvChoice::Mesh
    }
    fn mesh(self, dtype: DType) -> bool {
        self != GemvChoice::Tiled && dtype.size_bytes() == 2
    }
}

/// The projection `y = W·x` (`m` outputs, `n` inputs) as a MeshGEMV on a
/// `w × h` rectangle (`w` across the outputs, `h` across the inputs), its
/// rows grouped as the cost model likes best among the three groupings
/// nearest WaferLLM's `√h` groups of `√h` rows; `None` if nothing fits.
fn mesh_gemv(m: u32, n: u32, w: u32, h: u32, o: &Options, arch: &Arch) -> Option<Kernel> {
    let mut groups: Vec<u32> = (2..=h / 2).filter(|g| h.is_multiple_of(*g)).collect();
    let root = (h as f64).sqrt();
    groups.sort_by(|a, b| {
        (*a as f64 - root)
            .abs()
            .total_cmp(&(*b as f64 - root).abs())
    });
    groups
        .into_iter()
        .take(3)
        .map(|groups| MeshGemvSpec {
            m: n,
            n: m,
            w,
            h,
            groups,
            dtype: o.dtype,
            acc: DType::F32,
            streamed: true,
            seed: 0,
        })
        .filter(|s| wafer_kernels::meshgemv::validate(s, arch).is_ok())
        .map(|s| (wafer_kernels::meshgemv::cost(&s, arch), s))
        .min_by_key(|(c, s)| (*c, s.groups))
        .map(|(_, s)| Kernel::MeshGemv(s))
}

/// A stage on the wafer: its kernel and the kernel's origin.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Site {
    pub kernel: Kernel,
    /// World coordinates of the kernel's PE (0, 0).
    pub origin: Pe,
}

impl Site {
    pub fn contains(&self, pe: Pe) -> bool {
        let (w, h) = self.kernel.size();
        pe.x >= self.origin.x
            && pe.y >= self.origin.y
            && pe.x < self.origin.x + w
            && pe.y < self.origin.y + h
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlaceError {
    #[error(
        "the model does not fit `{arch}` with {}: {why}. It needs at least {need_pes} PEs and {need_bytes} bytes of SRAM (weights {weight_bytes}, KV cache {kv_bytes}); the machine has {have_pes} PEs and {have_bytes} bytes{}. To fit: {fix}",
        placed(*kind),
        wafers_note(*need_pes, *have_pes)
    )]
    NoFit {
        arch: String,
        /// The placement tried; `None` where the limit holds for either
        /// (the bytes of the whole model against the grid's).
        kind: Option<PlacementKind>,
        why: String,
        /// What would make it fit ([`fit_advice`]).
        fix: &'static str,
        need_pes: u64,
        need_bytes: u64,
        weight_bytes: u64,
        kv_bytes: u64,
        have_pes: u64,
        have_bytes: u64,
    },
}

fn placed(kind: Option<PlacementKind>) -> String {
    match kind {
        Some(k) => format!("{k} placement"),
        None => "either placement".into(),
    }
}

/// Where a model needs more than one machine's PEs, how many machines'
/// worth: what a researcher sizing a system of wafers asks first.
fn wafers_note(need_pes: u64, have_pes: u64) -> String {
    if need_pes <= have_pes || have_pes == 0 {
        return String::new();
    }
    format!(
        ", so its weights and KV cache alone take {} such machines (--wafers auto splits it over the fewest that fit)",
        need_pes.div_ceil(have_pes)
    )
}

/// The model's weights and KV cache against the grid's SRAM, before any
/// placement: one that cannot fit is refused at once, not after placing
/// and generating hundreds of stages that cannot.
pub fn check_footprint(c: &Config, o: &Options) -> Result<(), PlaceError> {
    let (weights, kv) = footprint(c, o.dtype, o.max_context);
    let have = o.arch.n_pes() * o.arch.sram_bytes as u64;
    if weights + kv > have {
        return Err(no_fit(
            c,
            o,
            o.placement,
            format!(
                "its weights and KV cache take {} bytes, more than the grid's {have} bytes of SRAM",
                weights + kv
            ),
        ));
    }
    Ok(())
}

fn no_fit(c: &Config, o: &Options, kind: Option<PlacementKind>, why: String) -> PlaceError {
    let (weight_bytes, kv_bytes) = footprint(c, o.dtype, o.max_context);
    let need_bytes = weight_bytes + kv_bytes;
    PlaceError::NoFit {
        arch: o.arch.name.clone(),
        kind,
        why,
        fix: fit_advice(o.dtype),
        need_pes: need_bytes.div_ceil(o.arch.sram_bytes as u64 * 3 / 4),
        need_bytes,
        weight_bytes,
        kv_bytes,
        have_pes: o.arch.grid_cols as u64 * o.arch.grid_rows as u64,
        have_bytes: o.arch.grid_cols as u64 * o.arch.grid_rows as u64 * o.arch.sram_bytes as u64,
    }
}

/// Powers of two up to `max`, and `max`.
fn sizes(max: u32) -> Vec<u32> {
    let mut v: Vec<u32> = (0..31)
        .map(|k| 1u32 << k)
        .take_while(|x| *x <= max)
        .collect();
    if max > 0 {
        v.push(max);
    }
    v.dedup();
    v
}

/// The cheapest kernel, by predicted cycles at `pos`, among `candidates`
/// that the machine accepts (`fits`).
fn cheapest(
    candidates: impl Iterator<Item = Kernel>,
    arch: &Arch,
    pos: u32,
    fits: impl Fn(&Kernel) -> bool,
) -> Option<Kernel> {
    candidates
        .filter(|k| fits(k))
        .map(|k| (k.predicted(arch, pos), k))
        .min_by_key(|(c, k)| {
            let (w, h) = k.size();
            (*c, w as u64 * h as u64)
        })
        .map(|(_, k)| k)
}

/// The stage's kernel within a `bw × bh` budget of PEs.
fn shape(
    stage: &Stage,
    c: &Config,
    o: &Options,
    bw: u32,
    bh: u32,
    seed: u64,
    copies: KvCopies,
) -> Option<Kernel> {
    let arch = o.arch.clone().with_grid(bw, bh).ok()?;
    let sram = |bytes: u32| bytes <= arch.sram_bytes;
    let vector = |op: VectorOp, n: u32| {
        cheapest(
            sizes(n.min(bh)).into_iter().map(|h| {
                Kernel::Vector(VectorSpec {
                    op,
                    n,
                    h,
                    strategy: o.reduce,
                    eps: c.norm_eps,
                    seed,
                })
            }),
            &arch,
            0,
            |_| true,
        )
    };
    match &stage.work {
        Work::Embed { vocab, dim, .. } => {
            let mut cands = Vec::new();
            for w in sizes((*vocab).min(bw)) {
                for h in sizes((*dim).min(bh)) {
                    cands.push(Kernel::Embed(EmbeddingSpec {
                        vocab: *vocab,
                        dim: *dim,
                        dtype: table_dtype(o.dtype),
                        w,
                        h,
                        strategy: o.reduce,
                        token: 0,
                        seed,
                    }));
                }
            }
            cheapest(cands.into_iter(), &arch, 0, |k| match k {
                Kernel::Embed(s) => wafer_kernels::embedding::validate(s, &arch).is_ok(),
                _ => false,
            })
        }
        Work::Gemv { m, n, biases, .. } => {
            let n = n + !biases.is_empty() as u32;
            let mut cands = Vec::new();
            if o.gemv.tiled()
                && let Some((w, h, _)) =
                    wafer_kernels::gemv::best_rect(*m, n, o.dtype, o.reduce, &arch)
            {
                cands.push(Kernel::Gemv(GemvSpec {
                    m: *m,
                    n,
                    dtype: o.dtype,
                    w,
                    h,
                    strategy: o.reduce,
                    seed,
                }));
            }
            if o.gemv.mesh(o.dtype) {
                for w in sizes((*m).min(bw)) {
                    for h in sizes(n.min(bh)) {
                        cands.extend(mesh_gemv(*m, n, w, h, o, &arch));
                    }
                }
            }
            cheapest(cands.into_iter(), &arch, 0, |_| true)
        }
        Work::RmsNorm { n, .. } => vector(VectorOp::RmsNorm, *n),
        Work::AddRmsNorm { n, .. } => vector(VectorOp::AddRmsNorm, *n),
        Work::LayerNorm { n, .. } => vector(VectorOp::LayerNorm, *n),
        Work::Gelu { n } => vector(VectorOp::Gelu, *n),
        Work::Add { n } => vector(VectorOp::Add, *n),
        Work::Mul { n } => vector(VectorOp::Mul, *n),
        Work::Silu { n } => vector(VectorOp::Silu, *n),
        Work::Swiglu { n } => vector(VectorOp::Swiglu, *n),
        Work::Rope {
            heads,
            head,
            theta,
            pairs,
            scaling,
        } => cheapest(
            // Whole heads a PE, or half a head each.
            sizes((*heads).min(bh))
                .into_iter()
                .chain((head % 4 == 0 && 2 * heads <= bh).then_some(2 * heads))
                .map(|h| {
                    Kernel::Rope(RopeSpec {
                        heads: *heads,
                        head_dim: *head,
                        theta: *theta,
                        layout: match pairs {
                            RopePairs::Adjacent => RopeLayout::Adjacent,
                            RopePairs::HalfSplit => RopeLayout::HalfSplit,
                        },
                        scaling: *scaling,
                        pos: 0,
                        h,
                    })
                }),
            &arch,
            0,
            |_| true,
        ),
        Work::Attention {
            heads,
            kv_heads,
            head,
            sinks,
            window,
            ..
        } => {
            if *kv_heads > bw {
                return None;
            }
            let group = heads / kv_heads;
            // A column per KV head, or (where the query heads share one
            // and there are columns for them) a column per query head,
            // each with a copy of the cache: whichever predicts faster.
            let hs = sizes(o.max_context.min(bh));
            let candidates = |per_query_head: bool| {
                hs.iter().map(move |&h| {
                    Kernel::Attention(AttentionSpec {
                        head_dim: *head,
                        group,
                        max_context: o.max_context,
                        pos: 0,
                        kv_heads: *kv_heads,
                        h,
                        strategy: o.reduce,
                        seed,
                        sinks: sinks.is_some(),
                        window: *window,
                        per_query_head,
                    })
                })
            };
            let at = o.max_context - 1;
            let fits = |k: &Kernel| matches!(k, Kernel::Attention(s) if sram(s.sram_bytes()));
            let grouped = cheapest(candidates(false), &arch, at, fits);
            if group == 1 || *heads > bw || copies == KvCopies::None {
                return grouped;
            }
            // With `NoLarger`, copies only where a PE holds no more than
            // the grouped layout's.
            let cap = match (copies, &grouped) {
                (KvCopies::NoLarger, Some(Kernel::Attention(g))) => g.sram_bytes(),
                _ => u32::MAX,
            };
            let copied = |k: &Kernel| matches!(k, Kernel::Attention(s) if sram(s.sram_bytes()) && s.sram_bytes() <= cap);
            cheapest(
                grouped.into_iter().chain(candidates(true)),
                &arch,
                at,
                |k| matches!(k, Kernel::Attention(s) if !s.per_query_head) || copied(k),
            )
        }
        Work::Route { experts, k } => {
            let s = RouterSpec {
                experts: *experts,
                per_token: *k,
                seed,
            };
            wafer_kernels::router::generate(&s, &arch)
                .is_ok()
                .then_some(Kernel::Router(s))
        }
        Work::Combine { n, k } => cheapest(
            sizes((*n).min(bh)).into_iter().map(|h| {
                Kernel::Combine(CombineSpec {
                    n: *n,
                    k: *k,
                    h,
                    seed,
                })
            }),
            &arch,
            0,
            |k| matches!(k, Kernel::Combine(s) if wafer_kernels::combine::generate(s, &arch).is_ok()),
        ),
        Work::ClampedSwiglu { n } => cheapest(
            sizes((*n).min(bh))
                .into_iter()
                .map(|h| Kernel::ClampedSwiglu(ClampedSwigluSpec { n: *n, h, seed })),
            &arch,
            0,
            |k| matches!(k, Kernel::ClampedSwiglu(s) if wafer_kernels::clamped_swiglu::generate(s, &arch).is_ok()),
        ),
        Work::Argmax { n } => cheapest(
            sizes((*n).min(bh)).into_iter().map(|h| {
                Kernel::Argmax(ArgmaxSpec {
                    n: *n,
                    h,
                    strategy: o.reduce,
                    seed,
                })
            }),
            &arch,
            0,
            |_| true,
        ),
    }
}

/// Shapes already chosen, by what decides them (layers repeat the same
/// shapes; the cost models are not cheap on large rectangles).
struct Memo {
    shapes: std::collections::HashMap<String, Option<Kernel>>,
    /// Whether attention may take a column per query head, each with a
    /// copy of its KV head's cache ([`KvCopies`]).
    copies: KvCopies,
}

impl Memo {
    fn shape(
        &mut self,
        stage: &Stage,
        c: &Config,
        o: &Options,
        bw: u32,
        bh: u32,
        seed: u64,
    ) -> Option<Kernel> {
        // The work without its weights' names: what the shape depends on.
        let what = match &stage.work {
            Work::Gemv { m, n, biases, .. } => format!("gemv {m}x{n} {}", biases.len()),
            Work::Embed { vocab, dim, .. } => format!("embed {vocab}x{dim}"),
            Work::RmsNorm { n, eps, .. } => format!("rmsnorm {n} {eps}"),
            Work::Attention {
                heads,
                kv_heads,
                head,
                sinks,
                window,
                ..
            } => format!(
                "attention {heads} {kv_heads} {head} {} {window:?}",
                sinks.is_some()
            ),
            w => format!("{w:?}"),
        };
        let key = format!("{what} in {bw}x{bh}");
        let copies = self.copies;
        let k = self
            .shapes
            .entry(key)
            .or_insert_with(|| shape(stage, c, o, bw, bh, 0, copies))
            .clone()?;
        Some(k.with_seed(seed))
    }
}

/// Each stage's group, in the order stages run: 0 for the stages before
/// the first layer's (the embeddings and their sum), `l + 1` for layer
/// `l`'s, `n_layers + 1` for those after the last layer's (the head).
/// Pipeline placement gives each group a strip; a system of wafers splits
/// the groups between its wafers.
pub(crate) fn groups(stages: &[Stage], n_layers: usize) -> Vec<usize> {
    let first_layered = stages.iter().position(|s| s.layer.is_some());
    stages
        .iter()
        .enumerate()
        .map(|(i, s)| match s.layer {
            Some(l) => l + 1,
            None if first_layered.is_none_or(|f| i < f) => 0,
            None => n_layers + 1,
        })
        .collect()
}

/// Place every stage with `kind` (mesh placement in `tiles`; pipeline
/// placement takes only [`Tiles::ONE`]).
pub fn place(
    stages: &[Stage],
    c: &Config,
    o: &Options,
    (kind, tiles): (PlacementKind, Tiles),
    copies: KvCopies,
) -> Result<Vec<Site>, PlaceError> {
    let memo = Memo {
        shapes: Default::default(),
        copies,
    };
    match kind {
        PlacementKind::Pipeline if tiles != Tiles::ONE => Err(no_fit(
            c,
            o,
            Some(PlacementKind::Pipeline),
            format!(
                "pipeline placement gives each stage its own PEs; {tiles} tiles of layers are mesh placement's"
            ),
        )),
        PlacementKind::Pipeline => pipeline(stages, c, o, memo),
        PlacementKind::Mesh => mesh(stages, c, o, memo, tiles),
    }
}

/// Whether grouped-query attention may run a column per query head, each
/// column with its own copy of its KV head's cache: faster (each column
/// reduces one head's output, not the group's) but `group` times the
/// cache's SRAM. Placement tries [`KvCopies::Allowed`] first; where the
/// copies leave a PE short of SRAM, the compile places again with
/// [`KvCopies::NoLarger`], then without copies
/// ([`crate::codegen::fitting`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvCopies {
    Allowed,
    /// Only where each PE holds no more than with one column per KV head.
    NoLarger,
    None,
}

/// Whether `sites` hold attention with copies of its cache.
pub fn has_kv_copies(sites: &[Site]) -> bool {
    sites
        .iter()
        .any(|s| matches!(&s.kernel, Kernel::Attention(a) if a.per_query_head))
}

fn unplaceable(stage: &Stage, bw: u32, bh: u32) -> String {
    format!(
        "stage `{}` ({}) has no shape that fits {bw}x{bh} PEs",
        stage.name,
        stage.work.kernel()
    )
}

fn pipeline(
    stages: &[Stage],
    c: &Config,
    o: &Options,
    mut memo: Memo,
) -> Result<Vec<Site>, PlaceError> {
    let kind = PlacementKind::Pipeline;
    let (gw, gh) = (o.arch.grid_cols, o.arch.grid_rows);
    // One strip per group present (one wafer of a system holds some
    // layers only), in the stages' order.
    let group = groups(stages, c.n_layers);
    let mut present: Vec<usize> = group.clone();
    present.dedup();
    let n_groups = present.len();
    let mut bytes = vec![0u64; n_groups];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
    for (i, s) in stages.iter().enumerate() {
        let g = present
            .iter()
            .position(|&p| p == group[i])
            .expect("every group is present");
        bytes[g] += weight_bytes(s, o.dtype);
        members[g].push(i);
    }
    // Every group needs at least the columns its widest non-GEMV kernel
    // takes (attention: one per KV head).
    let min_w: Vec<u32> = members
        .iter()
        .map(|m| {
            m.iter()
                .map(|&i| match &stages[i].work {
                    Work::Attention { kv_heads, .. } => *kv_heads,
                    _ => 1,
                })
                .max()
                .unwrap_or(1)
        })
        .collect();
    let total: u64 = bytes.iter().sum::<u64>().max(1);
    let spare = gw.saturating_sub(min_w.iter().sum());
    if min_w.iter().sum::<u32>() > gw {
        return Err(no_fit(
            c,
            o,
            Some(kind),
            format!(
                "{} strips need {} columns, the machine has {gw}",
                n_groups,
                min_w.iter().sum::<u32>()
            ),
        ));
    }
    let widths: Vec<u32> = (0..n_groups)
        .map(|g| min_w[g] + (spare as u64 * bytes[g] / total) as u32)
        .collect();
    let mut sites: Vec<Option<Site>> = vec![None; stages.len()];
    let mut x0 = 0;
    for g in 0..n_groups {
        let sw = widths[g];
        let m = &members[g];
        // Vector kernels first, each in a short band; GEMVs and the
        // embedding share the rest by weight. Where the strip overflows,
        // the bands shrink until it fits or they are one row.
        let is_big = |i: usize| matches!(stages[i].work, Work::Gemv { .. } | Work::Embed { .. });
        let small = m.iter().filter(|&&i| !is_big(i)).count() as u32;
        let big_bytes: u64 = m
            .iter()
            .filter(|&&i| is_big(i))
            .map(|&i| weight_bytes(&stages[i], o.dtype))
            .sum::<u64>()
            .max(1);
        let mut band = (gh / (small + 1)).max(1);
        let mut heights = vec![0u32; stages.len()];
        loop {
            let mut used = 0u32;
            let mut failed = None;
            for &i in m.iter().filter(|&&i| !is_big(i)) {
                let k = memo
                    .shape(&stages[i], c, o, sw, band, i as u64)
                    .ok_or_else(|| no_fit(c, o, Some(kind), unplaceable(&stages[i], sw, band)))?;
                heights[i] = k.size().1;
                used += heights[i];
                sites[i] = Some(Site {
                    kernel: k,
                    origin: Pe::new(x0, 0),
                });
            }
            let left = gh.saturating_sub(used);
            for &i in m.iter().filter(|&&i| is_big(i)) {
                let bh = ((left as u64 * weight_bytes(&stages[i], o.dtype) / big_bytes) as u32)
                    .clamp(1, gh);
                let Some(k) = memo.shape(&stages[i], c, o, sw, bh, i as u64) else {
                    failed = Some(unplaceable(&stages[i], sw, bh));
                    break;
                };
                heights[i] = k.size().1;
                sites[i] = Some(Site {
                    kernel: k,
                    origin: Pe::new(x0, 0),
                });
            }
            let fits = failed.is_none() && m.iter().map(|&i| heights[i]).sum::<u32>() <= gh;
            if fits {
                break;
            }
            if band == 1 {
                return Err(no_fit(
                    c,
                    o,
                    Some(kind),
                    failed.unwrap_or_else(|| {
                        format!("the stages of strip {g} need more than {gh} rows of {sw} columns")
                    }),
                ));
            }
            band /= 2;
        }
        // Stack in stage order, down the odd strips and up the even ones
        // (a serpentine), so each strip starts beside where the last ended.
        let y: u32 = m.iter().map(|&i| heights[i]).sum();
        let mut at = 0;
        for &i in m {
            let s = sites[i].as_mut().expect("placed above");
            let top = if g % 2 == 0 { at } else { y - at - heights[i] };
            s.origin = Pe::new(x0, top);
            at += heights[i];
        }
        if y > gh {
            return Err(no_fit(
                c,
                o,
                Some(kind),
                format!(
                    "the stages of strip {g} need {y} rows of {sw} columns, the machine has {gh} rows"
                ),
            ));
        }
        // The next strip starts after the columns this one uses.
        x0 += m
            .iter()
            .map(|&i| sites[i].as_ref().expect("placed above").kernel.size().0)
            .max()
            .unwrap_or(0);
    }
    Ok(sites
        .into_iter()
        .map(|s| s.expect("every stage is in a group"))
        .collect())
}

/// The columns mesh placement keeps for the embedding tables at the west
/// edge: as many as their weights need at three quarters full. A table
/// spreads its dimensions down at most one row of PEs each, so one
/// narrower than the grid is tall uses only `dim` rows.
pub(crate) fn embed_cols(stages: &[Stage], o: &Options) -> u32 {
    let gh = o.arch.grid_rows;
    stages
        .iter()
        .filter_map(|s| match s.work {
            Work::Embed { dim, .. } => {
                let rows = (dim as u64).clamp(1, gh as u64);
                Some(weight_bytes(s, o.dtype).div_ceil(rows))
            }
            _ => None,
        })
        .sum::<u64>()
        .div_ceil(o.arch.sram_bytes as u64 * 3 / 4) as u32
}

fn mesh(
    stages: &[Stage],
    c: &Config,
    o: &Options,
    mut memo: Memo,
    tiles: Tiles,
) -> Result<Vec<Site>, PlaceError> {
    let kind = PlacementKind::Mesh;
    let (gw, gh) = (o.arch.grid_cols, o.arch.grid_rows);
    let mut sites = Vec::with_capacity(stages.len());
    // The embedding tables keep their own columns at the west edge (as many
    // as their weights need at three quarters full); the GEMVs tile the rest.
    let embed_cols = embed_cols(stages, o);
    if embed_cols >= gw {
        return Err(no_fit(
            c,
            o,
            Some(kind),
            format!("the embedding table alone needs {embed_cols} columns of {gh} PEs"),
        ));
    }
    let x_gemv = embed_cols;
    let whole = Area {
        x0: x_gemv,
        y0: 0,
        x1: gw,
        y1: gh,
    };
    let areas = tiles.areas(whole);
    if areas.iter().any(|a| a.x1 <= a.x0 || a.y1 <= a.y0) {
        return Err(no_fit(
            c,
            o,
            Some(kind),
            format!(
                "{}x{} tiles of layers do not fit {}x{gh} PEs",
                tiles.cols,
                tiles.rows,
                gw - x_gemv
            ),
        ));
    }
    // Which tile each stage's layer is in: the layers in contiguous runs,
    // as even as they divide, so a tile holds its share of the weights.
    let layers: Vec<usize> = stages.iter().filter_map(|s| s.layer).collect();
    let (first, last) = (
        layers.iter().copied().min().unwrap_or(0),
        layers.iter().copied().max().unwrap_or(0),
    );
    let count = last - first + 1;
    let tile_of_layer = |l: usize| (l - first) * areas.len() / count;
    // A stage outside the layers goes with the nearest layer's tile: the
    // first one's before the layers, the last one's after them.
    let group = groups(stages, c.n_layers);
    let tile_of = |i: usize| match stages[i].layer {
        Some(l) => tile_of_layer(l),
        None if group[i] == 0 => 0,
        None => areas.len() - 1,
    };
    // The skyline of each tile: each column's first free row.
    let mut tops: Vec<Vec<u32>> = areas.iter().map(|a| vec![a.y0; gw as usize]).collect();
    let mut next_x: Vec<u32> = areas.iter().map(|a| a.x0).collect();
    let mut gemvs: std::collections::HashMap<(u32, u32, u32, u32), Option<Kernel>> =
        Default::default();
    for (i, s) in stages.iter().enumerate() {
        let t = tile_of(i);
        // A layer's projections are tiled over its tile of the wafer (as
        // far as their matrices have rows and columns), so each PE holds
        // a tile of every layer of its tile; the projections outside the
        // layers (the classifier) over every tile.
        let area = match (&s.work, s.layer) {
            (Work::Gemv { .. }, None) => whole,
            _ => areas[t],
        };
        let (aw, ah) = (area.x1 - area.x0, area.y1 - area.y0);
        let k = match &s.work {
            // Every layer's projections have the same few shapes: each
            // shape's kernel is chosen (costed) once.
            Work::Gemv { m, n, biases, .. } => gemvs
                .entry((*m, n + !biases.is_empty() as u32, aw, ah))
                .or_insert_with(|| {
                    let n = n + !biases.is_empty() as u32;
                    let arch = &o.arch;
                    let tiled = o.gemv.tiled().then(|| {
                        Kernel::Gemv(GemvSpec {
                            m: *m,
                            n,
                            dtype: o.dtype,
                            w: wafer_kernels::gemv::cols_at_most(n, o.dtype, aw),
                            h: (*m).min(ah),
                            strategy: o.reduce,
                            seed: i as u64,
                        })
                    });
                    // MeshGEMV's columns run across the outputs, its rows
                    // across the inputs.
                    let mesh = if o.gemv.mesh(o.dtype) {
                        mesh_gemv(*m, n, (*m).min(aw), n.min(ah), o, arch)
                    } else {
                        None
                    };
                    cheapest(tiled.into_iter().chain(mesh), arch, 0, |_| true)
                })
                .clone()
                .map(|k| k.with_seed(i as u64)),
            Work::Embed { .. } => memo.shape(s, c, o, embed_cols.max(1), gh, i as u64),
            _ => memo.shape(s, c, o, aw, ah, i as u64),
        }
        .ok_or_else(|| no_fit(c, o, Some(kind), unplaceable(s, aw, ah)))?;
        let origin = match s.work {
            Work::Gemv { .. } => Pe::new(area.x0, area.y0),
            Work::Embed { .. } => Pe::new(0, 0),
            _ => {
                // The other stages where they first fit in their tile
                // without sharing PEs (first fit from the west on the
                // skyline: the first free row of each column). Where none
                // is left, side by side from the west along the tile's
                // top again: stages then share PEs, and their SRAM adds up.
                let (w, h) = k.size();
                let top = &mut tops[t];
                let free = (area.x0..=area.x1.saturating_sub(w)).find_map(|x0| {
                    let y0 = top[x0 as usize..(x0 + w) as usize].iter().copied().max()?;
                    (y0 + h <= area.y1).then_some((x0, y0))
                });
                match free {
                    Some((x0, y0)) => {
                        top[x0 as usize..(x0 + w) as usize].fill(y0 + h);
                        Pe::new(x0, y0)
                    }
                    None => {
                        let x = &mut next_x[t];
                        if *x + w > area.x1 {
                            *x = area.x0;
                        }
                        let at = Pe::new(*x, area.y0);
                        *x += w;
                        at
                    }
                }
            }
        };
        sites.push(Site { kernel: k, origin });
    }
    Ok(sites)
}

/// A rectangle of the grid: columns `x0..x1`, rows `y0..y1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Area {
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

/// How mesh placement cuts the PEs its projections use into tiles, each
/// holding a contiguous run of the layers: `cols × rows` tiles, filled in
/// a serpentine (so consecutive runs of layers are neighbours).
///
/// A projection tiled over the whole wafer is bound by its routes (x
/// broadcast down every column, partial sums reduced along every row), so
/// on a smaller rectangle it is faster, for the same SRAM a PE: a tile
/// holds `1 / (cols · rows)` of the layers, each on `1 / (cols · rows)` of
/// the PEs. The hand-offs between a layer's stages stay inside its tile,
/// so they are shorter too. One tile is mesh placement as WaferLLM runs
/// it; one tile a layer approaches pipeline placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tiles {
    pub cols: u32,
    pub rows: u32,
}

impl Tiles {
    pub const ONE: Tiles = Tiles { cols: 1, rows: 1 };

    /// `COLSxROWS`, e.g. `4x3`.
    pub fn parse(s: &str) -> Option<Tiles> {
        let (c, r) = s.split_once('x')?;
        let t = Tiles {
            cols: c.parse().ok()?,
            rows: r.parse().ok()?,
        };
        (t.cols > 0 && t.rows > 0).then_some(t)
    }

    pub fn count(self) -> u32 {
        self.cols * self.rows
    }

    /// The tilings a search walks for `layers` layers on `w × h` PEs, in
    /// increasing count (1, 2, 3, 4, 6, 8, 12, 16, …, up to one tile a
    /// layer), each count cut into the tiles nearest square.
    pub fn ladder(layers: u32, w: u32, h: u32) -> Vec<Tiles> {
        let mut counts = vec![1u32, 2, 3];
        let mut c = 4;
        while c <= layers.max(1) {
            counts.push(c);
            counts.push(c * 3 / 2);
            c *= 2;
        }
        counts.retain(|&c| c <= layers.max(1));
        counts.sort_unstable();
        counts.dedup();
        counts
            .into_iter()
            .filter_map(|n| {
                (1..=n)
                    .filter(|cols| n.is_multiple_of(*cols))
                    .map(|cols| Tiles {
                        cols,
                        rows: n / cols,
                    })
                    .filter(|t| t.cols <= w && t.rows <= h)
                    .min_by(|a, b| {
                        let skew = |t: &Tiles| {
                            ((w as f64 / t.cols as f64) / (h as f64 / t.rows as f64))
                                .ln()
                                .abs()
                        };
                        skew(a).total_cmp(&skew(b))
                    })
            })
            .collect()
    }

    /// The tiles of `area`, in the order layers fill them: all of one
    /// size (the columns and rows that do not divide evenly are left at
    /// the east and south edges), so every layer's projections are the
    /// same kernels, and its PEs hold the same share of the weights.
    fn areas(self, area: Area) -> Vec<Area> {
        let (tw, th) = (
            (area.x1 - area.x0) / self.cols,
            (area.y1 - area.y0) / self.rows,
        );
        let mut v = Vec::new();
        for r in 0..self.rows {
            for c in 0..self.cols {
                let c = if r % 2 == 1 { self.cols - 1 - c } else { c };
                let (x0, y0) = (area.x0 + c * tw, area.y0 + r * th);
                v.push(Area {
                    x0,
                    x1: x0 + tw,
                    y0,
                    y1: y0 + th,
                });
            }
        }
        v
    }
}

/// ` in 4x3 tiles of layers` where mesh placement cut its layers into
/// tiles, every wafer alike; each wafer's tiles where they differ; nothing
/// for one tile (mesh placement as WaferLLM runs it, or pipeline).
pub fn tiles_phrase(by_wafer: &[Tiles]) -> String {
    let mut distinct = by_wafer.to_vec();
    distinct.dedup();
    match distinct[..] {
        [] | [Tiles::ONE] => String::new(),
        [t] => format!(" in {t} tiles of layers"),
        _ => {
            let each: Vec<String> = by_wafer.iter().map(Tiles::to_string).collect();
            format!(" in tiles of layers ({} by wafer)", each.join(", "))
        }
    }
}

impl fmt::Display for Tiles {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}x{}", self.cols, self.rows)
    }
}
