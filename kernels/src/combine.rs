//! A mixture of experts' combine: the outputs of the `k` experts a router
//! picked, weighted and summed, down a column of `h` PEs.
//!
//! Input `w` holds the `k` weights and `y` the `k` outputs of `n` elements
//! each, concatenated, both in increasing expert index: the order
//! transformers' loop over the experts adds them in, from zero. PE `r`
//! holds segment `r` of every output; one stream from the west brings it
//! the weights and then its `k` pieces, which it keeps in memory before
//! summing `acc ← acc + y_j · w_j` (`vfmac`: the product rounded, then
//! the sum, as `acc += y * w` is in Rust) and sends the last sum east.

use crate::timeline::{Timeline, f32_rate as rate};
use crate::{Fragment, KernelError, Segment, TensorPort, split};
use std::fmt::Write;
use wafer_emulator::Arch;
use wafer_emulator::isa::VecOp;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CombineSpec {
    /// Elements of each expert's output (and of the sum).
    pub n: u32,
    /// Experts picked a token.
    pub k: u32,
    /// PEs in the column.
    pub h: u32,
    /// Seed of the default inputs.
    pub seed: u64,
}

const CY: u8 = 0;
const CO: u8 = 2;

impl CombineSpec {
    fn segments(&self) -> Vec<(u32, u32)> {
        split(self.n, self.h)
    }

    /// SRAM one PE needs for a segment of `len`: the weights, the pieces,
    /// the sum, and room for the code.
    fn bytes(&self, len: u32) -> u64 {
        (self.k as u64 * (1 + len as u64) + len as u64) * 4 + 400
    }
}

pub fn generate(s: &CombineSpec, arch: &Arch) -> Result<Fragment, KernelError> {
    let (n, k, h) = (s.n, s.k, s.h);
    if k == 0 || n == 0 || h == 0 || h > n {
        return Err(KernelError::Rect {
            w: 1,
            h,
            why: format!("a combine of {k} outputs of {n} elements spreads over 1..={n} PEs"),
        });
    }
    if h > arch.grid_rows {
        return Err(KernelError::Rect {
            w: 1,
            h,
            why: format!("machine `{}` has {} rows", arch.name, arch.grid_rows),
        });
    }
    let seg = s.segments();
    if s.bytes(seg[0].1) > arch.sram_bytes as u64 {
        return Err(KernelError::Rect {
            w: 1,
            h,
            why: format!(
                "{k} pieces of {} elements need {} bytes of SRAM a PE; use more PEs",
                seg[0].1,
                s.bytes(seg[0].1)
            ),
        });
    }
    let mut src =
        format!("; combine of {k} experts' outputs of {n} down a column of {h} PEs\n.grid 1x{h}\n");
    for (r, (_, len)) in seg.iter().enumerate() {
        let mut body = format!("  vmov.f32 w, rx(c{CY})\n  vmov.f32 ys, rx(c{CY})\n");
        for j in 0..k {
            let (dst, from) = operands(j, k);
            writeln!(
                body,
                "  ldf f1, w[{j}]\n  vfmac.f32 {dst}, {from}, ys[{}, {len}], f1",
                j * len
            )
            .unwrap();
        }
        writeln!(
            src,
            ".code p{r}
  .buffer w f32[{k}]
  .buffer ys f32[{}]
  .buffer acc f32[{len}]
  .task main local active
main:
{body}  end
.end
.place p{r} 0,{r} 1x1",
            k * len
        )
        .unwrap();
    }
    src.push_str(&streams(s, &seg, 1));
    let program = crate::assemble(&src, "combine")?;
    // Every PE's stream: the weights, then its piece of each output.
    let w = TensorPort {
        name: "w".into(),
        len: k,
        segments: (0..h)
            .map(|r| Segment {
                stream: format!("y{r}"),
                offset: 0,
                len: k,
                at: 0,
            })
            .collect(),
    };
    let y = TensorPort {
        name: "y".into(),
        len: k * n,
        segments: seg
            .iter()
            .enumerate()
            .flat_map(|(r, (off, len))| {
                (0..k).map(move |j| Segment {
                    stream: format!("y{r}"),
                    offset: j * n + off,
                    len: *len,
                    at: k + j * len,
                })
            })
            .collect(),
    };
    let out = crate::positions_port("s", "s", &seg, n, 1);
    Ok(Fragment {
        program: program.into(),
        inputs: vec![w, y],
        outputs: vec![out],
        state: Vec::new(),
    })
}

/// The combine of `batch` positions at once (a prefill): each PE takes
/// every position's weights and pieces in one stream, then sums each
/// position's as [`generate`]'s program does and sends it on, position
/// after position. Ports `w`, `y` and `s` hold the positions one after
/// another. One position is [`generate`]'s program.
pub fn generate_batch(s: &CombineSpec, batch: u32, arch: &Arch) -> Result<Fragment, KernelError> {
    let one = generate(s, arch)?;
    if batch <= 1 {
        return match batch {
            1 => Ok(one),
            _ => Err(KernelError::Shape(
                "a batch takes at least one position".into(),
            )),
        };
    }
    let (n, k, h) = (s.n, s.k, s.h);
    let seg = s.segments();
    let bytes = (batch as u64 * k as u64 * (1 + seg[0].1 as u64) + seg[0].1 as u64) * 4 + 400;
    if bytes > arch.sram_bytes as u64 {
        return Err(KernelError::Rect {
            w: 1,
            h,
            why: format!("{batch} positions need {bytes} bytes of SRAM a PE; use more PEs"),
        });
    }
    let mut src = format!(
        "; combine of {k} experts' outputs of {n} down a column of {h} PEs, {batch} positions\n.grid 1x{h}\n"
    );
    for (r, (_, len)) in seg.iter().enumerate() {
        // r3 is this position's record: its k weights, then its pieces.
        let rec = k + k * len;
        let mut body = String::new();
        for j in 0..k {
            let (dst, from) = operands(j, k);
            writeln!(
                body,
                "  add r4, r3, {j}\n  ldf f1, ins[r4]\n  add r5, r3, {}\n  vfmac.f32 {dst}, {from}, ins[r5, {len}], f1",
                k + j * len
            )
            .unwrap();
        }
        writeln!(
            src,
            ".code p{r}
  .buffer ins f32[{all}]
  .buffer acc f32[{len}]
  .task main local active
main:
  vmov.f32 ins, rx(c{CY})
  li r3, 0
position:
{body}  add r3, r3, {rec}
  blt r3, {all}, position
  end
.end
.place p{r} 0,{r} 1x1",
            all = batch * rec
        )
        .unwrap();
    }
    src.push_str(&streams(s, &seg, batch));
    let program = crate::assemble(&src, "combine")?;
    let rec = |len: u32| k + k * len;
    let w = TensorPort {
        name: "w".into(),
        len: batch * k,
        segments: (0..batch)
            .flat_map(|p| {
                seg.iter().enumerate().map(move |(r, (_, len))| Segment {
                    stream: format!("y{r}"),
                    offset: p * k,
                    len: k,
                    at: p * rec(*len),
                })
            })
            .collect(),
    };
    let y = TensorPort {
        name: "y".into(),
        len: batch * k * n,
        segments: (0..batch)
            .flat_map(|p| {
                seg.iter().enumerate().flat_map(move |(r, (off, len))| {
                    (0..k).map(move |j| Segment {
                        stream: format!("y{r}"),
                        offset: p * k * n + j * n + off,
                        len: *len,
                        at: p * rec(*len) + k + j * len,
                    })
                })
            })
            .collect(),
    };
    let out = crate::positions_port("s", "s", &seg, n, batch);
    Ok(Fragment {
        program: program.into(),
        inputs: vec![w, y],
        outputs: vec![out],
        state: one.state,
    })
}

/// [`generate_batch`]'s output: each position's [`reference`], one after
/// another (`w` and `y` hold the positions one after another).
pub fn reference_batch(s: &CombineSpec, w: &[f32], y: &[f32]) -> Vec<f32> {
    let (k, n) = (s.k as usize, s.n as usize);
    w.chunks(k)
        .zip(y.chunks(k * n))
        .flat_map(|(w, y)| reference(s, w, y))
        .collect()
}

/// [`generate_batch`]'s predicted cycles: as [`cost`], with every
/// position's record in at once, an `li`, then per position and output
/// an `add`, the load, an `add` and the multiply-add (the last sends),
/// and `add`, `blt`; the run ends when the last position's last element
/// reaches the host, or with the PE's `end`, whichever is later.
pub fn cost_batch(s: &CombineSpec, batch: u32, arch: &Arch) -> u64 {
    if batch <= 1 {
        return cost(s, arch);
    }
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let k = s.k;
    s.segments()
        .iter()
        .map(|(_, len)| {
            let mut l = Timeline::start(arch);
            l.receive(batch * (k + k * len), hop + ramp);
            l.scalar(1);
            let mut last = 0;
            for _ in 0..batch {
                for j in 0..k {
                    l.scalar(3);
                    let reads = if j == 0 { 1 } else { 2 };
                    if j + 1 == k {
                        last = l.send(*len, rate(arch, VecOp::Fmac, reads, 0)) + *len as u64 - 1;
                    } else {
                        l.vector(*len, rate(arch, VecOp::Fmac, reads, 1));
                    }
                }
                l.scalar(2);
            }
            (last + ramp + hop).max(l.t + 1)
        })
        .max()
        .unwrap_or(0)
}

/// The routes, and each PE's stream in (`batch` records of the weights
/// and its pieces) and out (`batch` sums).
fn streams(s: &CombineSpec, seg: &[(u32, u32)], batch: u32) -> String {
    let (k, h) = (s.k, s.h);
    let mut src = format!(".route 0,0 1x{h} c{CY} W -> R\n.route 0,0 1x{h} c{CO} R -> E\n");
    for (r, (_, len)) in seg.iter().enumerate() {
        writeln!(
            src,
            ".input y{r} f32[{}] -> 0,{r} W c{CY} = rand({})\n.output s{r} f32[{}] <- 0,{r} E c{CO}",
            batch * (k + k * len),
            s.seed,
            batch * len
        )
        .unwrap();
    }
    src
}

/// Output `j` of `k`'s multiply-add: where it goes (the last sends) and
/// what it adds to (the first to zero).
fn operands(j: u32, k: u32) -> (String, &'static str) {
    let dst = match j + 1 == k {
        true => format!("tx(c{CO})"),
        false => "acc".into(),
    };
    (dst, if j == 0 { "0.0" } else { "acc" })
}

/// The reference: `Σ_j y_j · w_j` from zero, in the given order, each
/// product rounded before it is added.
pub fn reference(s: &CombineSpec, w: &[f32], y: &[f32]) -> Vec<f32> {
    let n = s.n as usize;
    let mut acc = vec![0.0f32; n];
    for (j, wj) in w.iter().enumerate().take(s.k as usize) {
        for (a, v) in acc.iter_mut().zip(&y[j * n..(j + 1) * n]) {
            *a += v * wj;
        }
    }
    acc
}

/// Predicted cycles: per PE, the `k` weights and then its `k · len`
/// pieces received from the west (element `i` of its stream in the queue
/// `hop + ramp + i` cycles after the host sends the first), then per
/// output a scalar load and a multiply-add over the segment (the first
/// reads one vector, the rest two; the last sends), the last element at
/// the host `ramp + hop` after it leaves the core.
pub fn cost(s: &CombineSpec, arch: &Arch) -> u64 {
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let k = s.k;
    s.segments()
        .iter()
        .map(|(_, len)| {
            let mut l = Timeline::start(arch);
            l.receive(k, hop + ramp);
            l.receive(k * len, hop + ramp + k as u64);
            let mut first_out = 0;
            for j in 0..k {
                l.scalar(1);
                let reads = if j == 0 { 1 } else { 2 };
                if j + 1 == k {
                    first_out = l.send(*len, rate(arch, VecOp::Fmac, reads, 0));
                } else {
                    l.vector(*len, rate(arch, VecOp::Fmac, reads, 1));
                }
            }
            first_out + *len as u64 - 1 + ramp + hop
        })
        .max()
        .unwrap_or(0)
}
