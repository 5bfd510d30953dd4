//! RMSNorm and the fused add-RMSNorm over a batch of positions (a
//! prefill): each PE takes its segment of every position's vector, one
//! after another, sums each position's squares into its own statistic,
//! and the column all-reduces the `batch` statistics at once; then each
//! position's segment is scaled and sent, position after position. Each
//! position's arithmetic is the one-position kernel's, in its order, so
//! the result is that kernel's for every position, bit for bit.

use super::{CA, CB, CO, CS, VectorOp, VectorSpec, f, generate, input_name, reference};
use crate::line_reduce::Combine;
use crate::timeline::{Timeline, f32_rate as rate};
use crate::{Fragment, KernelError};
use std::collections::BTreeMap;
use std::fmt::Write;
use wafer_emulator::isa::VecOp;
use wafer_emulator::{Arch, Program};

fn takes_a_batch(s: &VectorSpec) -> Result<(), KernelError> {
    match s.op {
        VectorOp::RmsNorm | VectorOp::AddRmsNorm => Ok(()),
        op => Err(KernelError::Shape(format!(
            "{} takes one position a run (an element-wise kernel takes a batch as a longer vector)",
            op.name()
        ))),
    }
}

/// The norm of `batch` positions at once. Ports `a`, `b` and `y` hold the
/// positions one after another (`y`: each position's normed vector, then
/// for the fused add-norm its sum). One position is [`generate`]'s
/// program.
pub fn generate_batch(s: &VectorSpec, batch: u32, arch: &Arch) -> Result<Fragment, KernelError> {
    takes_a_batch(s)?;
    // The one-position kernel's checks (shape, machine, colors).
    let one = generate(s, arch)?;
    if batch <= 1 {
        return match batch {
            1 => Ok(one),
            _ => Err(KernelError::Shape(
                "a batch takes at least one position".into(),
            )),
        };
    }
    let seg = s.segments();
    let bytes = (batch as u64 * 4 + 8) * seg[0].1 as u64 + batch as u64 * 4 + 600;
    if bytes > arch.sram_bytes as u64 {
        return Err(KernelError::Rect {
            w: 1,
            h: s.h,
            why: format!(
                "{batch} positions of a {}-element segment need about {bytes} bytes of SRAM",
                seg[0].1
            ),
        });
    }
    let stats = s.stats_of("st", Combine::Add, batch);
    let mut src = format!(
        "; {} of {batch} {}-element vectors down a column of {} PEs\n.grid 1x{}\n",
        s.op.name(),
        s.n,
        s.h,
        s.h
    );
    for (r, (_, len)) in seg.iter().enumerate() {
        // The add takes `a` and `b` in pairs, not `a` first as the
        // one-position kernel does: a prefill runs stage after stage,
        // each fed whole by the host, so no route waits on another
        // stage ([`VectorOp::takes_a_first`]).
        let take = match s.op {
            VectorOp::AddRmsNorm => {
                format!("  vfadd.f32 x, rx(c{CA}), rx(c{CB})\n  vmov.f32 tx(c{CS}), x\n")
            }
            _ => format!("  vmov.f32 x, rx(c{CA})\n"),
        };
        writeln!(
            src,
            ".code p{r}
  .buffer x f32[{xl}]
  .buffer g f32[{len}]
  .buffer st f32[{batch}]
  .task main local active
main:
{take}  li r1, 0
  li r2, 0
squares:
  lf f1, 0.0
  vdot.f32 f1, x[r2, {len}], x[r2, {len}]
  stf st[r1], f1
  add r1, r1, 1
  add r2, r2, {len}
  blt r1, {batch}, squares
{reduce}  li r1, 0
  li r2, 0
  lf f3, {inv_n}
  lf f4, {eps}
scale:
  ldf f2, st[r1]
  fmul f2, f2, f3
  fadd f2, f2, f4
  frsqrt f2, f2
  vfmul.f32 x[r2, {len}], x[r2, {len}], f2
  vfmul.f32 tx(c{CO}), x[r2, {len}], g
  add r1, r1, 1
  add r2, r2, {len}
  blt r1, {batch}, scale
  end
.end
.place p{r} 0,{r} 1x1",
            xl = batch * len,
            reduce = stats.code(r as u32),
            inv_n = f(s.inv_n()),
            eps = f(s.eps),
        )
        .unwrap();
    }
    writeln!(src, ".route 0,0 1x{} c{CA} W -> R", s.h).unwrap();
    if s.op == VectorOp::AddRmsNorm {
        writeln!(src, ".route 0,0 1x{} c{CB} W -> R", s.h).unwrap();
        writeln!(src, ".route 0,0 1x{} c{CS} R -> E", s.h).unwrap();
    }
    writeln!(src, ".route 0,0 1x{} c{CO} R -> E", s.h).unwrap();
    src.push_str(&stats.routes());
    for (r, (_, len)) in seg.iter().enumerate() {
        let l = batch * len;
        writeln!(
            src,
            ".input {} f32[{l}] -> 0,{r} W c{CA} = rand({})",
            input_name(0, r),
            s.seed
        )
        .unwrap();
        if s.op == VectorOp::AddRmsNorm {
            writeln!(
                src,
                ".input {} f32[{l}] -> 0,{r} W c{CB} = rand({})",
                input_name(1, r),
                s.seed.wrapping_add(1)
            )
            .unwrap();
            writeln!(src, ".output s{r} f32[{l}] <- 0,{r} E c{CS}").unwrap();
        }
        writeln!(src, ".output y{r} f32[{l}] <- 0,{r} E c{CO}").unwrap();
    }
    let mut program = crate::assemble(&src, s.op.name())?;
    // The norm's weights, as the one-position program has them.
    program.data = one.program.data.clone();
    let n = s.n;
    let out = s.op.outputs(n);
    // Position `p`'s segment `r` follows the earlier positions' in its
    // stream; the fused add-norm's sum follows the normed vector in `y`.
    let port = |name, stream, len| crate::positions_port(name, stream, &seg, len, batch);
    let mut inputs = vec![port("a", "a", n)];
    let mut y = port("y", "y", out);
    if s.op == VectorOp::AddRmsNorm {
        inputs.push(port("b", "b", n));
        let sums: Vec<(u32, u32)> = seg.iter().map(|&(off, l)| (n + off, l)).collect();
        y.segments
            .extend(crate::positions_port("y", "s", &sums, out, batch).segments);
    }
    Ok(Fragment {
        program: program.into(),
        inputs,
        outputs: vec![y],
        state: Vec::new(),
    })
}

/// [`generate_batch`]'s output: each position's [`reference`] one after
/// another (`inputs` hold the positions one after another).
pub fn reference_batch(
    s: &VectorSpec,
    batch: u32,
    inputs: &BTreeMap<String, Vec<f32>>,
    p: &Program,
) -> Vec<f32> {
    let n = s.n as usize;
    (0..batch as usize)
        .flat_map(|q| {
            let one: BTreeMap<String, Vec<f32>> = inputs
                .iter()
                .map(|(k, v)| (k.clone(), v[q * n..(q + 1) * n].to_vec()))
                .collect();
            reference(s, &one, p)
        })
        .collect()
}

/// [`generate_batch`]'s predicted cycles, PE by PE in the order of its
/// code as [`super::cost`] follows the one-position kernel's: every
/// position's segment in, the squares a position at a time (`lf`, the
/// dot, `stf`, then `add`, `add`, `blt`), the statistics all-reduced at
/// once ([`crate::line_reduce::LineReduce::finish`] over `batch`
/// elements), four scalars, then per position four scalars, the scale,
/// the send and `add`, `add`, `blt`; the last position's last element
/// reaches the host `ramp + hop` after it leaves the core, and the run
/// ends no sooner than the cycle after the loop's last `blt` (its `end`).
pub fn cost_batch(s: &VectorSpec, batch: u32, arch: &Arch) -> u64 {
    if batch <= 1 || takes_a_batch(s).is_err() {
        return super::cost(s, arch);
    }
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let (b, issue) = (batch as u64, arch.vector_issue_cycles as u64);
    let segs = s.segments();
    let (dot, mul1, send2) = (
        rate(arch, VecOp::Dot, 2, 0),
        rate(arch, VecOp::Fmul, 1, 1),
        rate(arch, VecOp::Fmul, 2, 0),
    );
    let mut lines: Vec<Timeline> = segs.iter().map(|_| Timeline::start(arch)).collect();
    for (l, (_, len)) in lines.iter_mut().zip(&segs) {
        let n = b * *len as u64;
        if s.op == VectorOp::AddRmsNorm {
            // Pairs in as the add kernel's come, then the sums out.
            l.t = (l.t + issue + n).max(hop + 2 * (n - 1) + 1 + ramp);
            l.send(batch * len, rate(arch, VecOp::Mov, 1, 0));
        } else {
            l.receive(batch * len, hop + ramp);
        }
        l.scalar(2);
        l.repeat(b, |l| {
            l.scalar(1);
            l.vector(*len, dot);
            l.scalar(4);
        });
    }
    let issue_at: Vec<u64> = lines.iter().map(|l| l.t).collect();
    let done = s
        .stats_of("st", Combine::Add, batch)
        .finish(&issue_at, arch);
    segs.iter()
        .zip(lines.iter_mut().zip(done))
        .map(|((_, len), (l, done))| {
            l.t = done;
            l.scalar(4);
            l.repeat(b, |l| {
                l.scalar(4);
                l.vector(*len, mul1);
                l.send(*len, send2);
                l.scalar(3);
            });
            // The last send ended three scalars before the loop's end;
            // its last element reaches the host `ramp + hop` later, and
            // the run lasts until the PE's `end` too.
            (l.t - 3 + ramp + hop).max(l.t + 1)
        })
        .max()
        .unwrap_or(0)
}
