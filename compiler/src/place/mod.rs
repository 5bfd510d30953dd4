//! Placement: which rectangle of the wafer each stage's kernel runs on, and
//! the kernel's shape there, chosen by the kernels' cost models.
//!
//! Two strategies:
//! * **pipeline** — the wafer is cut into vertical strips, one for the
//!   embedding, one per layer and one for the head, each as wide as its
//!   share of the weights (and at least what its kernels need); in a strip
//!   the stages are stacked top to bottom, the vector kernels as short as
//!   their cost allows and the GEMVs sharing the rest in proportion to their
//!   weights, and the argmax, each RoPE and each SwiGLU (SiLU, GELU)
//!   beside the east edge of the GEMV that feeds it, where its input
//!   leaves that GEMV (a RoPE on the rows that compute q and k, each of
//!   them cut to its PE's elements). Stages never overlap, so one router configuration serves the
//!   whole step.
//! * **mesh** — every GEMV (and the embedding table) is tiled over the
//!   whole wafer (WaferLLM's MeshGEMV) at the same origin, so every PE holds
//!   a tile of every layer's weights;
//!   the other kernels take columns side by side from the west edge. Stages
//!   overlap, so the fabric's routes are loaded per stage.
//!
//! `auto` places both and keeps the one whose predicted step is shorter
//! among those that fit.
//!
//! The rooms: `shape` (a stage's kernel within a budget of PEs, by the
//! cost models), `pipeline` and `mesh` (the two strategies), `tiles`
//! (mesh placement's tiles of layers); this file holds what they share:
//! the options, the sites, the errors and the entry point [`place`].

mod mesh;
mod pipeline;
mod shape;
mod tiles;

pub(crate) use mesh::embed_cols;
pub use tiles::{Tiles, tiles_phrase};

use crate::footprint::{fit_advice, footprint};
pub use crate::kernel::Kernel;
use crate::model::Config;
use crate::stage::Stage;
use shape::Memo;
use std::fmt;
use wafer_emulator::{Arch, DType, Pe};
use wafer_kernels::Flip;
use wafer_kernels::reduce::Strategy;

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

#[cfg(test)]
impl Options {
    /// The unit tests' compile: `placement` in `dtype` on a `cols` x
    /// `rows` grid of `wse3` PEs, one wafer, a KV cache of 16 positions,
    /// tree reductions, every kernel, tiles as the cost models choose.
    pub(crate) fn on_wse3_grid(
        cols: u32,
        rows: u32,
        placement: PlacementKind,
        dtype: DType,
    ) -> Options {
        Options {
            arch: Arch::wse3()
                .with_grid(cols, rows)
                .expect("a grid within wse3's"),
            dtype,
            placement: Some(placement),
            max_context: 16,
            reduce: Strategy::Tree { k: 2 },
            gemv: GemvChoice::Auto,
            region: crate::region::Region::Whole,
            wafers: crate::system::Wafers::Count(1),
            tiles: None,
        }
    }
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

/// A stage on the wafer: its kernel, the kernel's origin, and which of
/// its mirror images runs there.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Site {
    pub kernel: Kernel,
    /// World coordinates of the north-west PE of the kernel's rectangle.
    pub origin: Pe,
    /// The kernel's fragment reflected ([`Fragment::mirrored`]) so that its
    /// ports face the stages it trades with; its rectangle is the same.
    ///
    /// [`Fragment::mirrored`]: wafer_kernels::Fragment::mirrored
    #[serde(default)]
    pub flip: Flip,
}

impl Site {
    /// Whether its kernel runs on `pe` (in its rectangle, and for a
    /// spread kernel on one of its columns).
    pub fn contains(&self, pe: Pe) -> bool {
        let (w, h) = self.kernel.size();
        pe.x >= self.origin.x
            && pe.y >= self.origin.y
            && pe.x < self.origin.x + w
            && pe.y < self.origin.y + h
            && (pe.x - self.origin.x).is_multiple_of(self.kernel.pitch())
    }

    /// The grid's columns its kernel runs on, west to east.
    pub fn columns(&self) -> impl Iterator<Item = u32> + use<> {
        let (w, _) = self.kernel.size();
        (self.origin.x..self.origin.x + w).step_by(self.kernel.pitch() as usize)
    }

    /// The PEs its kernel runs on.
    pub fn pes(&self) -> impl Iterator<Item = Pe> + use<> {
        let (_, h) = self.kernel.size();
        let y0 = self.origin.y;
        self.columns()
            .flat_map(move |x| (y0..y0 + h).map(move |y| Pe::new(x, y)))
    }

    /// Whether it and `other` run on some PE in common (mesh placement
    /// loads a PE's code per stage, so such stages take turns).
    pub fn shares_pe(&self, other: &Site) -> bool {
        let ((_, h), (_, oh)) = (self.kernel.size(), other.kernel.size());
        let rows = self.origin.y < other.origin.y + oh && other.origin.y < self.origin.y + h;
        // The sparser one's few columns looked up in the other (a step
        // of 1 on both: the rectangles meet).
        let (a, b) = match self.kernel.pitch() >= other.kernel.pitch() {
            true => (self, other),
            false => (other, self),
        };
        let ((aw, _), (bw, _)) = (a.kernel.size(), b.kernel.size());
        rows && match a.kernel.pitch() {
            1 => a.origin.x < b.origin.x + bw && b.origin.x < a.origin.x + aw,
            _ => a.columns().any(|x| b.contains(Pe::new(x, b.origin.y))),
        }
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
        ", so its weights and KV cache alone take {} such machines (--wafers auto splits it over the fewest that fit, or more where they are faster by more than their count)",
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
    let mut memo = Memo::new(copies);
    let sites = place_with(stages, c, o, (kind, tiles), &mut memo)?;
    // Kernels spread over columns take 2w + 1 colors. Where the model's
    // other kernels already take more than the first placement allowed
    // them (the 8B's attention takes 9), place again allowing as many,
    // so those kernels may spread wider without taking a color the
    // hand-offs would have had.
    let floor = colors_besides_wide(&sites);
    let widest = |sites: &[Site]| {
        (sites.iter())
            .filter(|s| s.kernel.is_wide_vector())
            .map(|s| 2 * s.kernel.size().0 as usize + 1)
            .max()
    };
    // A wide kernel held back: one more column would pass the cap.
    let held = widest(&sites).is_some_and(|c| c + 2 > memo.wide_colors);
    if floor > memo.wide_colors && held {
        memo.wide_colors = floor;
        if let Ok(wider) = place_with(stages, c, o, (kind, tiles), &mut memo)
            && widest(&wider) <= Some(colors_besides_wide(&wider))
        {
            return Ok(wider);
        }
    }
    Ok(sites)
}

/// The colors the kernels not spread over columns are known to take
/// ([`Kernel::known_colors`]): a floor of what the step's kernels take.
fn colors_besides_wide(sites: &[Site]) -> usize {
    (sites.iter())
        .filter(|s| !s.kernel.is_wide_vector())
        .filter_map(|s| s.kernel.known_colors())
        .max()
        .unwrap_or(0)
}

fn place_with(
    stages: &[Stage],
    c: &Config,
    o: &Options,
    (kind, tiles): (PlacementKind, Tiles),
    memo: &mut Memo,
) -> Result<Vec<Site>, PlaceError> {
    match kind {
        PlacementKind::Pipeline if tiles != Tiles::ONE => Err(no_fit(
            c,
            o,
            Some(PlacementKind::Pipeline),
            format!(
                "pipeline placement gives each stage its own PEs; {tiles} tiles of layers are mesh placement's"
            ),
        )),
        PlacementKind::Pipeline => pipeline::pipeline(stages, c, o, memo),
        PlacementKind::Mesh => mesh::mesh(stages, c, o, memo, tiles),
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
