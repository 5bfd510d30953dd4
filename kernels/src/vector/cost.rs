//! The vector kernels' cost model.

use super::{VectorOp, VectorSpec};
use crate::line_reduce::Combine;
use crate::timeline::{Timeline, f32_rate as rate};
use wafer_emulator::Arch;
use wafer_emulator::isa::VecOp;

/// Predicted cycles, PE by PE with [`Timeline`], in the order of the code:
/// a segment's element `k` is in PE `r`'s queue at `k + hop + ramp` (the
/// host link, then the ramp); two inputs share the one ramp into the core,
/// so a pair is complete every 2 cycles (`hop + 2k + 1 + ramp`); the
/// allreduces follow [`LineReduce::finish`]; the last element reaches the
/// host `ramp + hop` after it leaves the core.
pub fn cost(s: &VectorSpec, arch: &Arch) -> u64 {
    outputs(s, arch).end
}

/// When each output stream's last wavelet leaves (a cycle before it is
/// at the host), by stream name, for a kernel one PE wide (`y<k>`, and
/// an `add_rmsnorm`'s sum `s<k>`, sent on before the norm); `None` for
/// one several PEs wide, whose rows' outputs share the east link.
pub fn output_leaves(
    s: &VectorSpec,
    arch: &Arch,
) -> Option<std::collections::BTreeMap<String, u64>> {
    if s.w > 1 {
        return None;
    }
    let o = outputs(s, arch);
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let last = |first: u64, len: u32| first + len as u64 - 1 + ramp + hop - 1;
    let mut leaves = std::collections::BTreeMap::new();
    for (k, (_, len)) in s.segments().iter().enumerate() {
        leaves.insert(format!("y{k}"), last(o.first_out[k], *len));
        if let Some(first) = o.sum_out[k] {
            leaves.insert(format!("s{k}"), last(first, *len));
        }
    }
    Some(leaves)
}

/// [`cost`]'s timeline: when each segment's output (and an
/// `add_rmsnorm`'s sum) starts leaving its core, and the run's end.
struct Outputs {
    first_out: Vec<u64>,
    sum_out: Vec<Option<u64>>,
    end: u64,
}

fn outputs(s: &VectorSpec, arch: &Arch) -> Outputs {
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let segs = s.segments();
    let mut lines: Vec<Timeline> = segs.iter().map(|_| Timeline::start(arch)).collect();
    let mut first_out = vec![0u64; segs.len()];
    let mut sum_out = vec![None; segs.len()];
    let (mul1, mul2) = (rate(arch, VecOp::Fmul, 1, 1), rate(arch, VecOp::Fmul, 2, 1));
    // Each rate is the op's own: f32 adds and subtracts have more lanes
    // than f32 multiplies, so a memory-bound add runs faster than a mul.
    let (sub1, add_out2) = (rate(arch, VecOp::Fsub, 1, 1), rate(arch, VecOp::Fadd, 2, 0));
    let (add1, exp1, rcp1) = (
        rate(arch, VecOp::Fadd, 1, 1),
        rate(arch, VecOp::Exp, 1, 1),
        rate(arch, VecOp::Rcp, 1, 1),
    );
    let (fmac2, dot, sum, rmax) = (
        rate(arch, VecOp::Fmac, 2, 1),
        rate(arch, VecOp::Dot, 2, 0),
        rate(arch, VecOp::Sum, 1, 0),
        rate(arch, VecOp::Rmax, 1, 0),
    );
    let (send1, send2) = (rate(arch, VecOp::Fmul, 1, 0), rate(arch, VecOp::Fmul, 2, 0));
    let allreduce = |lines: &mut Vec<Timeline>, combine| {
        let issue: Vec<u64> = lines.iter().map(|l| l.t).collect();
        for (l, done) in lines
            .iter_mut()
            .zip(s.stats("st", combine).finish(&issue, arch))
        {
            l.t = done;
        }
    };
    let arrival = hop + ramp;
    match s.op {
        VectorOp::Add | VectorOp::Mul => {
            for (r, (_, len)) in segs.iter().enumerate() {
                let start = lines[r].t + 1 + arch.vector_issue_cycles as u64;
                let last = (start + *len as u64 - 1).max(hop + 2 * (*len as u64 - 1) + 1 + ramp);
                first_out[r] = last + 1 - *len as u64;
            }
        }
        VectorOp::Silu | VectorOp::Gelu | VectorOp::Swiglu => {
            for (r, (_, len)) in segs.iter().enumerate() {
                let l = &mut lines[r];
                let len = *len;
                let last = last_arrival(s, &segs, r, hop, ramp);
                if s.w > 1 && s.op == VectorOp::Swiglu {
                    l.scalar(1);
                    let b_start = l.t + arch.vector_issue_cycles as u64;
                    l.t = pairs_in(
                        b_start,
                        |m, i| arrival_of(s, &segs, r, i, m, hop, ramp),
                        len,
                    );
                } else if s.w > 1 {
                    l.receive(len, last + 1 - len as u64);
                } else if s.op == VectorOp::Swiglu {
                    // b on microthread 0 (issued first), a on the main
                    // thread: the ramp alternates between their wavelets
                    // (a pair every 2 cycles), and the one datapath between
                    // their ops (from b's start, b and a take turns, so a's
                    // last element is handled 2n − 1 cycles later).
                    l.scalar(1);
                    let b_start = l.t + arch.vector_issue_cycles as u64;
                    l.t = (b_start + 2 * len as u64 - 1).max(hop + 2 * (len as u64 - 1) + 1 + ramp);
                } else {
                    l.receive(len, arrival);
                }
                if s.op == VectorOp::Gelu {
                    for rt in [mul2, mul1, fmac2, mul1, exp1, add1, rcp1, mul1, add1, mul2] {
                        l.vector(len, rt);
                    }
                    first_out[r] = l.send(len, send1);
                } else {
                    for rt in [mul1, exp1, add1, rcp1] {
                        l.vector(len, rt);
                    }
                    if s.op == VectorOp::Swiglu {
                        l.vector(len, mul2);
                    }
                    first_out[r] = l.send(len, send2);
                }
            }
        }
        VectorOp::RmsNorm | VectorOp::LayerNorm | VectorOp::AddRmsNorm => {
            for (r, (_, len)) in segs.iter().enumerate() {
                if s.op == VectorOp::AddRmsNorm {
                    // The pairs come in as the add kernel's do, into
                    // memory; then the sum goes out, before the norm.
                    let l = &mut lines[r];
                    let n = *len as u64;
                    l.t = (l.t + arch.vector_issue_cycles as u64 + n)
                        .max(hop + 2 * (n - 1) + 1 + ramp);
                    sum_out[r] = Some(l.send(*len, rate(arch, VecOp::Mov, 1, 0)));
                } else {
                    lines[r].receive(*len, arrival);
                }
                lines[r].scalar(1);
                lines[r].vector(
                    *len,
                    if s.op == VectorOp::LayerNorm {
                        sum
                    } else {
                        dot
                    },
                );
                lines[r].scalar(1);
            }
            allreduce(&mut lines, Combine::Add);
            if s.op == VectorOp::LayerNorm {
                for (r, (_, len)) in segs.iter().enumerate() {
                    lines[r].scalar(3);
                    lines[r].vector(*len, sub1);
                    lines[r].scalar(1);
                    lines[r].vector(*len, dot);
                    lines[r].scalar(1);
                }
                allreduce(&mut lines, Combine::Add);
            }
            for (r, (_, len)) in segs.iter().enumerate() {
                lines[r].scalar(6);
                lines[r].vector(*len, mul1);
                first_out[r] = if s.op == VectorOp::LayerNorm {
                    lines[r].vector(*len, mul2);
                    lines[r].send(*len, add_out2)
                } else {
                    lines[r].send(*len, send2)
                };
            }
        }
        VectorOp::Softmax => {
            for (r, (_, len)) in segs.iter().enumerate() {
                lines[r].receive(*len, arrival);
                lines[r].scalar(1);
                lines[r].vector(*len, rmax);
                lines[r].scalar(1);
            }
            allreduce(&mut lines, Combine::Max);
            for (r, (_, len)) in segs.iter().enumerate() {
                lines[r].scalar(1);
                lines[r].vector(*len, sub1);
                lines[r].vector(*len, exp1);
                lines[r].scalar(1);
                lines[r].vector(*len, sum);
                lines[r].scalar(1);
            }
            allreduce(&mut lines, Combine::Add);
            for (r, (_, len)) in segs.iter().enumerate() {
                lines[r].scalar(2);
                first_out[r] = lines[r].send(*len, send1);
            }
        }
    }
    let end = if s.w > 1 {
        (0..s.h as usize)
            .map(|r| {
                let row = r * s.w as usize..(r + 1) * s.w as usize;
                drain(&segs[row.clone()], &first_out[row], hop, ramp)
            })
            .max()
            .unwrap_or(0)
    } else {
        (segs.iter().zip(&first_out))
            .map(|((_, len), first)| first + *len as u64 - 1 + ramp + hop)
            .max()
            .unwrap_or(0)
    };
    Outputs {
        first_out,
        sum_out,
        end,
    }
}

/// The cycle the last of segment `k`'s input wavelets is in its PE's
/// queue, on a kernel of several columns: a row's streams (each PE's `a`,
/// then its `b`) enter its west PE through one port, which the router
/// serves in turn, one wavelet a cycle, skipping the streams that have
/// ended; the `m`-th wavelet of stream `j` passes it after every wavelet
/// of the rounds before and those of round `m` ahead of it, then takes a
/// hop per column to its PE and the ramp.
fn last_arrival(s: &VectorSpec, segs: &[(u32, u32)], k: usize, hop: u64, ramp: u64) -> u64 {
    let ins = if s.op.two_inputs() { 2 } else { 1 };
    arrival_of(s, segs, k, ins - 1, segs[k].1 as u64 - 1, hop, ramp)
}

/// The cycle wavelet `m` of segment `k`'s input `i` (0: `a`, 1: `b`) is
/// in its PE's queue ([`last_arrival`]).
fn arrival_of(
    s: &VectorSpec,
    segs: &[(u32, u32)],
    k: usize,
    i: usize,
    m: u64,
    hop: u64,
    ramp: u64,
) -> u64 {
    let ins = if s.op.two_inputs() { 2 } else { 1 };
    let w = s.w as usize;
    let (row, c) = (k / w, k % w);
    let lens = (0..w * ins).map(|x| segs[row * w + x / ins].1 as u64);
    let j = c * ins + i;
    let before: u64 = lens.clone().map(|l| l.min(m)).sum();
    let ahead = lens.take(j).filter(|&l| l > m).count() as u64;
    hop + before + ahead + hop * c as u64 + ramp
}

/// When a SwiGLU's main thread has taken its last `a`: `b`'s receive on
/// a microthread from `b_start`, `a`'s on the main thread from the cycle
/// after, element `m` of input `i` in the queue at `arrival(m, i)`; the
/// one datapath takes one element a cycle, the two taking turns while
/// both have one (b first), either alone while only it has.
fn pairs_in(b_start: u64, arrival: impl Fn(u64, usize) -> u64, n: u32) -> u64 {
    let n = n as u64;
    let (mut a, mut b) = (0u64, 0u64);
    let mut last_b = false;
    let mut t = b_start;
    loop {
        let b_ok = b < n && arrival(b, 1) <= t;
        let a_ok = t > b_start && a < n && arrival(a, 0) <= t;
        if a_ok && (!b_ok || last_b) {
            a += 1;
            last_b = false;
            if a == n {
                return t;
            }
        } else if b_ok {
            b += 1;
            last_b = true;
        }
        t += 1;
    }
}

/// The cycle a row's last output reaches the host: each PE's own
/// stream's end, or the row's east link passing every output one a cycle
/// from the first that reaches it, whichever is later.
fn drain(segs: &[(u32, u32)], first_out: &[u64], hop: u64, ramp: u64) -> u64 {
    let w = segs.len() as u64;
    let at: Vec<(u64, u64)> = (segs.iter().zip(first_out).enumerate())
        .map(|(c, ((_, len), first))| (first + ramp + hop * (w - 1 - c as u64), *len as u64))
        .collect();
    let own = at.iter().map(|(a, l)| a + l - 1).max().unwrap_or(0);
    let link = (at.iter())
        .map(|&(t, _)| {
            t + at
                .iter()
                .filter(|(a, _)| *a >= t)
                .map(|(_, l)| l)
                .sum::<u64>()
                - 1
        })
        .max()
        .unwrap_or(0);
    own.max(link) + hop
}
