//! How a stage's kernel takes a batch of prompt positions in one run.
//!
//! * The projections keep their weights where they are and take the
//!   positions' inputs one after another: the tiled GEMV
//!   ([`gemv::generate_batch`]) and, streamed, WaferLLM's MeshGEMV
//!   ([`meshgemv::generate_batch`]). Their ports hold the positions one
//!   after another ([`Join::Positions`]).
//! * RMSNorm and the fused add-RMSNorm take every position's segment,
//!   a statistic a position, all-reduced at once
//!   ([`vector::generate_batch`]), RoPE every position's heads, each
//!   turned by its own position ([`rope::generate_batch`]), and a
//!   mixture's combine every position's picked outputs
//!   ([`combine::generate_batch`]); their ports too hold the positions
//!   one after another.
//! * The element-wise kernels (add, mul, SiLU, GELU, SwiGLU, gpt-oss's
//!   clamped SwiGLU) are the same kernel over a `batch` times longer
//!   vector: each input source holds every position's values, one after
//!   another ([`Join::Sources`]).
//!
//! Every other kernel (LayerNorm, softmax, attention, the router, the
//! embedding and the argmax) runs a position at a time.

use crate::kernel::Kernel;
use crate::place::Site;
use wafer_emulator::Arch;
use wafer_kernels::vector::{VectorOp, VectorSpec};
use wafer_kernels::{Fragment, KernelError, clamped_swiglu, combine, gemv, meshgemv, rope, vector};

/// How a batch's input ports hold its positions' values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// Position after position, each with all of the port's sources.
    Positions,
    /// Source after source, each with all of the positions' values.
    Sources,
}

/// Whether `k` runs a batch of positions at once, and how its ports
/// join them.
pub fn join(k: &Kernel) -> Option<Join> {
    match k {
        Kernel::Gemv(_) => Some(Join::Positions),
        Kernel::MeshGemv(s) if s.streamed => Some(Join::Positions),
        Kernel::Vector(s) if element_wise(s.op) => Some(Join::Sources),
        Kernel::Vector(s) if rms_norm(s.op) => Some(Join::Positions),
        Kernel::Rope(_) | Kernel::Combine(_) => Some(Join::Positions),
        Kernel::ClampedSwiglu(_) => Some(Join::Sources),
        _ => None,
    }
}

fn rms_norm(op: VectorOp) -> bool {
    matches!(op, VectorOp::RmsNorm | VectorOp::AddRmsNorm)
}

fn element_wise(op: VectorOp) -> bool {
    matches!(
        op,
        VectorOp::Add | VectorOp::Mul | VectorOp::Silu | VectorOp::Gelu | VectorOp::Swiglu
    )
}

/// An element-wise kernel over `batch` positions' vectors at once.
fn longer(k: &Kernel, batch: u32) -> Option<Kernel> {
    match k {
        Kernel::Vector(s) if element_wise(s.op) => Some(Kernel::Vector(VectorSpec {
            n: s.n * batch,
            ..s.clone()
        })),
        Kernel::ClampedSwiglu(s) => Some(Kernel::ClampedSwiglu(
            wafer_kernels::clamped_swiglu::ClampedSwigluSpec {
                n: s.n * batch,
                ..s.clone()
            },
        )),
        _ => None,
    }
}

/// `site`'s program for `batch` positions, holding the weights of `of`,
/// its one-position program (a compiled stage's), reflected as `of` is.
pub fn fragment(
    site: &Site,
    batch: u32,
    of: &Fragment,
    arch: &Arch,
) -> Result<Fragment, KernelError> {
    let k = &site.kernel;
    // The programs of kernels with weights, and those without.
    let (f, weighted) = match (k, longer(k, batch)) {
        (Kernel::Gemv(s), _) => (gemv::generate_batch(s, batch, arch)?, true),
        (Kernel::MeshGemv(s), _) => (meshgemv::generate_batch(s, batch, arch)?, true),
        (Kernel::Vector(s), None) if rms_norm(s.op) => {
            (vector::generate_batch(s, batch, arch)?, true)
        }
        (Kernel::Rope(s), _) => (rope::generate_batch(s, batch, arch)?, true),
        (Kernel::Combine(s), _) => (combine::generate_batch(s, batch, arch)?, false),
        (_, Some(Kernel::Vector(s))) => (vector::generate(&s, arch)?, false),
        (_, Some(Kernel::ClampedSwiglu(s))) => (clamped_swiglu::generate(&s, arch)?, false),
        _ => {
            return Err(KernelError::Shape(
                "this kernel runs one position at a time".into(),
            ));
        }
    };
    // Reflected before it takes `of`'s data images, which are reflected.
    let f = f.mirrored(site.flip);
    Ok(if weighted { f.holding_data_of(of) } else { f })
}

/// The cost model's cycles of a run of `batch` positions.
pub fn cost(k: &Kernel, batch: u32, arch: &Arch) -> u64 {
    match (k, longer(k, batch)) {
        (Kernel::Gemv(s), _) => gemv::cost_batch(s, batch, arch),
        (Kernel::MeshGemv(s), _) => meshgemv::cost_batch(s, batch, arch),
        (Kernel::Vector(s), None) if rms_norm(s.op) => vector::cost_batch(s, batch, arch),
        (Kernel::Rope(s), _) => rope::cost_batch(s, batch, arch),
        (Kernel::Combine(s), _) => combine::cost_batch(s, batch, arch),
        (_, Some(longer)) => longer.predicted(arch, 0),
        _ => k.predicted(arch, 0),
    }
}

/// Bytes a PE of the batch holds beyond `of`'s, at most; `None` when no
/// PE holds a batch that long.
pub fn growth(site: &Site, batch: u32, of: &Fragment, arch: &Arch) -> Option<u64> {
    let sram = arch.sram_bytes as u64;
    match &site.kernel {
        Kernel::Gemv(s) => {
            (gemv::sram_needed_batch(s, batch) <= sram).then(|| gemv::batch_growth(s, batch))
        }
        Kernel::MeshGemv(s) => {
            (s.sram_bytes_batch(batch) <= sram).then(|| meshgemv::batch_growth(s, batch))
        }
        _ => {
            let f = fragment(site, batch, of, arch).ok()?;
            Some(most_bytes(&f).saturating_sub(most_bytes(of)))
        }
    }
}

/// The most bytes (code and buffers) one PE of `f` holds.
fn most_bytes(f: &Fragment) -> u64 {
    let p = &f.program;
    p.placements
        .iter()
        .map(|pl| {
            let code = &p.codes[pl.code.0 as usize];
            code.code_bytes() as u64 + code.buffers.iter().map(|b| b.bytes() as u64).sum::<u64>()
        })
        .max()
        .unwrap_or(0)
}
