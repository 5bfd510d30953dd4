//! The kernel that runs a stage, with its shape ([`Kernel`]): its size on
//! the grid, its cost model's cycles and its seeded data, whichever
//! kernel it is. Placement chooses them (`place/`); codegen generates
//! them.

use std::collections::BTreeMap;
use wafer_emulator::Arch;
use wafer_kernels::argmax::ArgmaxSpec;
use wafer_kernels::attention::AttentionSpec;
use wafer_kernels::clamped_swiglu::ClampedSwigluSpec;
use wafer_kernels::combine::CombineSpec;
use wafer_kernels::embedding::EmbeddingSpec;
use wafer_kernels::gemv::GemvSpec;
use wafer_kernels::meshgemv::MeshGemvSpec;
use wafer_kernels::rope::RopeSpec;
use wafer_kernels::router::RouterSpec;
use wafer_kernels::vector::VectorSpec;

/// The token id a timing-only step feeds back (its argmax is unknown), and
/// so the one the cost models predict a step for unless told another.
pub const TIMING_TOKEN: u32 = 0;

/// The kernel that runs a stage, with its shape.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Kernel {
    Embed(EmbeddingSpec),
    Gemv(GemvSpec),
    /// WaferLLM's MeshGEMV (16-bit weights, the sum in f32, `x` and `y`
    /// streamed): its `m` is the projection's inputs, its `n` the outputs.
    MeshGemv(MeshGemvSpec),
    Vector(VectorSpec),
    Rope(RopeSpec),
    Attention(AttentionSpec),
    Argmax(ArgmaxSpec),
    /// A mixture of experts' router (one PE).
    Router(RouterSpec),
    /// The picked experts' outputs weighted and summed.
    Combine(CombineSpec),
    /// gpt-oss's clamped SwiGLU.
    ClampedSwiglu(ClampedSwigluSpec),
}

impl Kernel {
    /// Columns and rows of PEs.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Kernel::Embed(s) => (s.w, s.h),
            Kernel::Gemv(s) => (s.w, s.h),
            Kernel::MeshGemv(s) => (s.w, s.h),
            Kernel::Vector(s) => (s.w, s.h),
            Kernel::Rope(s) => (1, s.h),
            Kernel::Attention(s) => (s.width(), s.h),
            Kernel::Argmax(s) => (1, s.h),
            Kernel::Router(_) => (1, 1),
            Kernel::Combine(s) => (1, s.h),
            Kernel::ClampedSwiglu(s) => (1, s.h),
        }
    }

    /// How far apart its columns are: a spread attention's pitch
    /// ([`AttentionSpec::pitch`]), 1 for every other kernel. Its PEs are
    /// the columns `0, pitch, 2·pitch, …` of its rectangle.
    pub fn pitch(&self) -> u32 {
        match self {
            Kernel::Attention(s) => s.pitch.max(1),
            _ => 1,
        }
    }

    /// The PEs it runs on (its rectangle's but for a spread kernel's
    /// columns between).
    pub fn pes(&self) -> u64 {
        let (w, h) = self.size();
        (w as u64).div_ceil(self.pitch() as u64) * h as u64
    }

    /// Cycles the kernel's cost model predicts at position `pos`, for the
    /// token id a timing-only step feeds ([`TIMING_TOKEN`]).
    pub fn predicted(&self, arch: &Arch, pos: u32) -> u64 {
        self.predicted_for(arch, pos, TIMING_TOKEN)
    }

    /// Cycles the kernel's cost model predicts at position `pos` for a step
    /// fed `token`. Only the embedding's time depends on the id: the PE
    /// whose vocabulary block holds it copies the row while the others
    /// write zeros, and the row then travels east from that column.
    pub fn predicted_for(&self, arch: &Arch, pos: u32, token: u32) -> u64 {
        match self {
            Kernel::Embed(s) => wafer_kernels::embedding::cost(s, arch, token),
            Kernel::Gemv(s) => wafer_kernels::gemv::cost(s, arch),
            Kernel::MeshGemv(s) => wafer_kernels::meshgemv::cost(s, arch),
            Kernel::Vector(s) => wafer_kernels::vector::cost(s, arch),
            Kernel::Rope(s) => wafer_kernels::rope::cost(s, arch),
            Kernel::Attention(s) => {
                let s = AttentionSpec {
                    pos: pos.min(s.max_context - 1),
                    ..s.clone()
                };
                wafer_kernels::attention::cost(&s, arch)
            }
            Kernel::Argmax(s) => wafer_kernels::argmax::cost(s, arch),
            Kernel::Router(s) => wafer_kernels::router::cost(s, arch),
            Kernel::Combine(s) => wafer_kernels::combine::cost(s, arch),
            Kernel::ClampedSwiglu(s) => wafer_kernels::clamped_swiglu::cost(s, arch),
        }
    }
}

impl Kernel {
    /// Where the kernel's cost model takes its inputs' arrivals (a tiled
    /// GEMV: when each column's `x` is in; a vector kernel: when each
    /// element is in its PE's queue): its cycles and when each output
    /// stream's last wavelet leaves (where it says), given, by input
    /// stream name, the cycle each wavelet is pushed in (one not named is
    /// unhindered), at position `pos`. `None` for the others.
    pub fn fed(
        &self,
        arch: &Arch,
        pos: u32,
        pushed: &BTreeMap<String, Vec<u64>>,
    ) -> Option<(u64, BTreeMap<String, u64>)> {
        let s = match self {
            Kernel::Vector(s) => return Some(wafer_kernels::vector::fed(s, arch, pushed)),
            Kernel::Attention(s) => {
                let s = AttentionSpec {
                    pos: pos.min(s.max_context - 1),
                    ..s.clone()
                };
                return Some(wafer_kernels::attention::fed(&s, arch, pushed));
            }
            Kernel::Rope(s) => return Some(wafer_kernels::rope::fed(s, arch, pushed)),
            Kernel::Gemv(s) => s,
            _ => return None,
        };
        let x_last: Vec<u64> = (0..s.w)
            .map(|c| {
                (pushed.get(&format!("x{c}")))
                    .and_then(|p| p.last().copied())
                    .unwrap_or(0)
            })
            .collect();
        let ends = wafer_kernels::gemv::row_ends_fed(s, arch, &x_last);
        let cycles = ends.iter().copied().max().unwrap_or(0);
        let leaves = (ends.into_iter().enumerate())
            .map(|(r, end)| (format!("y{r}"), end - 1))
            .collect();
        Some((cycles, leaves))
    }

    /// Colors the kernel's program takes (its highest color plus one),
    /// where the spec says it without generating the program: the norms,
    /// softmax and element-wise kernels and attention, the kernels that
    /// take the most. `None` for the others (placement reads this as a
    /// floor of what a model's kernels take, so knowing fewer kernels
    /// only lowers it).
    pub fn known_colors(&self) -> Option<usize> {
        match self {
            Kernel::Vector(s) => Some(s.colors_taken()),
            Kernel::Attention(s) => Some(s.colors_taken()),
            _ => None,
        }
    }

    /// Whether this is a kernel spread over columns of a row
    /// ([`wafer_kernels::vector::VectorOp::spreads_over_columns`]).
    pub fn is_wide_vector(&self) -> bool {
        matches!(self, Kernel::Vector(s) if s.op.spreads_over_columns())
    }

    /// The same kernel with its seeded data drawn from `seed`.
    pub fn with_seed(mut self, seed: u64) -> Kernel {
        match &mut self {
            Kernel::Embed(s) => s.seed = seed,
            Kernel::Gemv(s) => s.seed = seed,
            Kernel::MeshGemv(s) => s.seed = seed,
            Kernel::Vector(s) => s.seed = seed,
            Kernel::Rope(_) => {}
            Kernel::Attention(s) => s.seed = seed,
            Kernel::Argmax(s) => s.seed = seed,
            Kernel::Router(s) => s.seed = seed,
            Kernel::Combine(s) => s.seed = seed,
            Kernel::ClampedSwiglu(s) => s.seed = seed,
        }
        self
    }
}
