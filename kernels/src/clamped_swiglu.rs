//! gpt-oss's clamped SwiGLU down a column of `h` PEs:
//! `(clamp(up, −7, 7) + 1) · g · σ(1.702 · g)` with `g = min(gate, 7)`.
//!
//! PE `r` gets one stream from the west, its segment of the gate and then
//! its segment of the up projection, keeps both in memory, and sends its
//! segment of the result east. The datapath has a max but no min, so a
//! clamp from above is a negated clamp from below (`min(x, 7) = −max(−x,
//! −7)`, exact); `max` ignores a NaN operand, so a NaN is clamped where
//! transformers' `clamp` would keep it (the one difference from the CPU
//! reference, [`reference`] says it).

use crate::timeline::{Timeline, f32_rate as rate};
use crate::{Fragment, KernelError, Segment, TensorPort, split};
use std::fmt::Write;
use wafer_emulator::Arch;
use wafer_emulator::isa::VecOp;

/// The SwiGLU's constants (transformers' `GptOssExperts`).
pub const ALPHA: f32 = 1.702;
pub const LIMIT: f32 = 7.0;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClampedSwigluSpec {
    /// Elements of the gate, the up projection and the result.
    pub n: u32,
    /// PEs in the column.
    pub h: u32,
    /// Seed of the default inputs.
    pub seed: u64,
}

const CI: u8 = 0;
const CO: u8 = 2;

/// The ops after both segments are in, in order: (op, memory vectors read).
const OPS: [(VecOp, u32); 13] = [
    (VecOp::Fmul, 1),
    (VecOp::Fmax, 1),
    (VecOp::Fmul, 1),
    (VecOp::Fmul, 1),
    (VecOp::Exp, 1),
    (VecOp::Fadd, 1),
    (VecOp::Rcp, 1),
    (VecOp::Fmul, 2),
    (VecOp::Fmax, 1),
    (VecOp::Fmul, 1),
    (VecOp::Fmax, 1),
    (VecOp::Fmul, 1),
    (VecOp::Fadd, 1),
];

pub fn generate(s: &ClampedSwigluSpec, arch: &Arch) -> Result<Fragment, KernelError> {
    let (n, h) = (s.n, s.h);
    if n == 0 || h == 0 || h > n {
        return Err(KernelError::Rect {
            w: 1,
            h,
            why: format!("a vector of {n} elements spreads over 1..={n} PEs"),
        });
    }
    if h > arch.grid_rows {
        return Err(KernelError::Rect {
            w: 1,
            h,
            why: format!("machine `{}` has {} rows", arch.name, arch.grid_rows),
        });
    }
    let seg = split(n, h);
    let bytes = seg[0].1 as u64 * 4 * 3 + 500;
    if bytes > arch.sram_bytes as u64 {
        return Err(KernelError::Rect {
            w: 1,
            h,
            why: format!(
                "a segment of {} elements needs about {bytes} bytes of SRAM; use more PEs",
                seg[0].1
            ),
        });
    }
    let (a, l) = (format!("{ALPHA:?}"), format!("{LIMIT:?}"));
    let mut src =
        format!("; clamped SwiGLU of {n} elements down a column of {h} PEs\n.grid 1x{h}\n");
    for (r, (_, len)) in seg.iter().enumerate() {
        writeln!(
            src,
            ".code p{r}
  .buffer x f32[{len}]
  .buffer u f32[{len}]
  .buffer t f32[{len}]
  .task main local active
main:
  vmov.f32 x, rx(c{CI})
  vmov.f32 u, rx(c{CI})
  vfmul.f32 x, x, -1.0
  vfmax.f32 x, x, -{l}
  vfmul.f32 x, x, -1.0
  vfmul.f32 t, x, -{a}
  vexp.f32 t, t
  vfadd.f32 t, t, 1.0
  vrcp.f32 t, t
  vfmul.f32 x, x, t
  vfmax.f32 u, u, -{l}
  vfmul.f32 u, u, -1.0
  vfmax.f32 u, u, -{l}
  vfmul.f32 u, u, -1.0
  vfadd.f32 u, u, 1.0
  vfmul.f32 tx(c{CO}), x, u
  end
.end
.place p{r} 0,{r} 1x1"
        )
        .unwrap();
    }
    writeln!(src, ".route 0,0 1x{h} c{CI} W -> R").unwrap();
    writeln!(src, ".route 0,0 1x{h} c{CO} R -> E").unwrap();
    for (r, (_, len)) in seg.iter().enumerate() {
        writeln!(
            src,
            ".input in{r} f32[{}] -> 0,{r} W c{CI} = rand({})",
            2 * len,
            s.seed
        )
        .unwrap();
        writeln!(src, ".output y{r} f32[{len}] <- 0,{r} E c{CO}").unwrap();
    }
    let program = crate::assemble(&src, "clamped_swiglu")?;
    // Each PE's stream: its gate segment, then its up segment.
    let port = |name: &str, stream: &str, second: bool| TensorPort {
        name: name.into(),
        len: n,
        segments: seg
            .iter()
            .enumerate()
            .map(|(r, (off, len))| Segment {
                stream: format!("{stream}{r}"),
                offset: *off,
                len: *len,
                at: if second { *len } else { 0 },
            })
            .collect(),
    };
    Ok(Fragment {
        program: program.into(),
        inputs: vec![port("a", "in", false), port("b", "in", true)],
        outputs: vec![port("y", "y", false)],
        state: Vec::new(),
    })
}

/// The reference, in the PEs' operations (`a` the gate, `b` the up
/// projection): the formula at the top, bit for bit as the CPU reference
/// computes it but where an input is NaN (clamped by `max` here).
pub fn reference(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter()
        .zip(b)
        .map(|(gate, up)| {
            let g = -((-gate).max(-LIMIT));
            let sigma = 1.0 / ((g * -ALPHA).exp() + 1.0);
            let glu = g * sigma;
            let u = -((-(up.max(-LIMIT))).max(-LIMIT)) + 1.0;
            glu * u
        })
        .collect()
}

/// Predicted cycles: per PE, its stream's `2·len` elements received (the
/// gate's, then the up's, element `i` in the queue `hop + ramp + i` after
/// the host sends the first), the thirteen ops on memory, and the last
/// multiply sending east, its last element at the host `ramp + hop` later.
pub fn cost(s: &ClampedSwigluSpec, arch: &Arch) -> u64 {
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    split(s.n, s.h)
        .iter()
        .map(|(_, len)| {
            let mut l = Timeline::start(arch);
            l.receive(*len, hop + ramp);
            l.receive(*len, hop + ramp + *len as u64);
            for (op, reads) in OPS {
                l.vector(*len, rate(arch, op, reads, 1));
            }
            let first = l.send(*len, rate(arch, VecOp::Fmul, 2, 0));
            first + *len as u64 - 1 + ramp + hop
        })
        .max()
        .unwrap_or(0)
}
