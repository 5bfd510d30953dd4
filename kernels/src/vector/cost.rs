//! The vector kernels' cost model.

use super::{VectorOp, VectorSpec, input_name};
use crate::costed::Costed;
use crate::line_reduce::Combine;
use crate::reduce::Strategy;
use crate::timeline::{Timeline, f32_rate as rate};
use std::collections::BTreeMap;
use wafer_emulator::Arch;
use wafer_emulator::isa::VecOp;

/// Predicted cycles, PE by PE with [`Timeline`], in the order of the code:
/// a segment's element `k` is in PE `r`'s queue at `k + hop + ramp` (the
/// host link, then the ramp); two inputs share the one ramp into the core,
/// so a pair is complete every 2 cycles (`hop + 2k + 1 + ramp`), but for
/// the residual adds', which take all of `a` first ([`a_first`]); the
/// allreduces follow [`LineReduce::finish`]; the last element reaches the
/// host `ramp + hop` after it leaves the core.
pub fn cost(s: &VectorSpec, arch: &Arch) -> u64 {
    // Every field the cost reads ([`crate::costed`]).
    let VectorSpec {
        op,
        n,
        h,
        w,
        strategy,
        eps,
        seed: _,
    } = *s;
    let key = (op, n, h, w, strategy, eps.to_bits());
    COSTED.get_or(key, arch, || outputs(s, arch, None).end)
}

/// The vector specs already costed ([`crate::costed`]).
static COSTED: Costed<(VectorOp, u32, u32, u32, Strategy, u32)> = Costed::new();

/// [`cost`] with the inputs arriving late: `pushed` holds, by stream name
/// (`a<k>`, `b<k>`), the cycle each wavelet is pushed in (one not named
/// is unhindered; none: [`cost`]'s run). Each PE's ops take their
/// elements as they are in its queue ([`in_queues`]): the run's end and,
/// for a kernel one PE wide, when each output stream's last wavelet
/// leaves (a cycle before it is at the host: `y<k>`, and an
/// `add_rmsnorm`'s sum `s<k>`, sent on before the norm); none for a wider
/// one, whose rows' outputs share the east link.
pub fn fed(s: &VectorSpec, arch: &Arch, pushed: &Pushed) -> (u64, BTreeMap<String, u64>) {
    let o = outputs(s, arch, Some(pushed));
    let leaves = if s.w == 1 {
        leaves(s, arch, &o)
    } else {
        BTreeMap::new()
    };
    (o.end, leaves)
}

fn leaves(s: &VectorSpec, arch: &Arch, o: &Outputs) -> BTreeMap<String, u64> {
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let last = |first: u64, len: u32| first + len as u64 - 1 + ramp + hop - 1;
    let mut leaves = BTreeMap::new();
    for (k, (_, len)) in s.segments().iter().enumerate() {
        leaves.insert(format!("y{k}"), last(o.first_out[k], *len));
        if let Some(first) = o.sum_out[k] {
            leaves.insert(format!("s{k}"), last(first, *len));
        }
    }
    leaves
}

/// [`cost`]'s timeline: when each segment's output (and an
/// `add_rmsnorm`'s sum) starts leaving its core, and the run's end.
struct Outputs {
    first_out: Vec<u64>,
    sum_out: Vec<Option<u64>>,
    end: u64,
}

fn outputs(s: &VectorSpec, arch: &Arch, fed: Option<&Pushed>) -> Outputs {
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let segs = s.segments();
    // Per segment, per input (`a`, `b`), the cycle each element is in its
    // PE's queue (none for the ops that take `a` first: `a_first` steps
    // their west port itself).
    let queued = match s.op.takes_a_first() {
        true => Vec::new(),
        false => in_queues(s, &segs, hop, ramp, fed),
    };
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
    match s.op {
        VectorOp::Add | VectorOp::Mul => {
            for (r, (_, len)) in segs.iter().enumerate() {
                let start = lines[r].t + 1 + arch.vector_issue_cycles as u64;
                let last = match s.op.takes_a_first() {
                    true => a_first(arch, start, r, *len, fed),
                    false => taken(start, &queued[r]),
                };
                first_out[r] = last + 1 - *len as u64;
            }
        }
        VectorOp::Silu | VectorOp::Gelu | VectorOp::Swiglu => {
            for (r, (_, len)) in segs.iter().enumerate() {
                let l = &mut lines[r];
                let len = *len;
                // `b` (SwiGLU's) on microthread 0, issued first, and
                // the elements it has not taken when `a`'s last is in.
                let mut b_left = None;
                if s.op == VectorOp::Swiglu {
                    l.scalar(1);
                    let b_start = l.t + arch.vector_issue_cycles as u64;
                    let (a_done, b_taken) = pairs_in(b_start, &queued[r], len);
                    l.t = a_done;
                    b_left = Some((a_done, b_taken));
                } else {
                    let issue = l.t + 1 + arch.vector_issue_cycles as u64;
                    l.t = taken(issue, &queued[r]);
                }
                if s.op == VectorOp::Gelu {
                    for rt in [mul2, mul1, fmac2, mul1, exp1, add1, rcp1, mul1, add1, mul2] {
                        l.vector(len, rt);
                    }
                    first_out[r] = l.send(len, send1);
                } else {
                    let mut ops = vec![mul1, exp1, add1, rcp1];
                    if s.op == VectorOp::Swiglu {
                        ops.push(mul2);
                    }
                    match b_left {
                        None => ops.into_iter().for_each(|rt| l.vector(len, rt)),
                        // What is left of `b` takes the datapath a cycle an
                        // element from the ops meanwhile (not between them,
                        // while the next one issues); the product with `b`
                        // waits for its last.
                        Some((a_done, b_taken)) => {
                            let issue = arch.vector_issue_cycles as u64;
                            let mut b = queued[r][1][b_taken..].iter().peekable();
                            let mut b_at = a_done;
                            for rt in ops {
                                let from = l.t + 1 + issue;
                                let mut to = from + Arch::vector_cycles(len, rt) - 1;
                                while let Some(&&q) = b.peek() {
                                    let at = (b_at + 1).max(q);
                                    if at > to {
                                        break;
                                    }
                                    b.next();
                                    b_at = at;
                                    if at >= from {
                                        to += 1;
                                    }
                                }
                                l.t = to;
                            }
                            for &q in b {
                                b_at = (b_at + 1).max(q);
                            }
                            l.t = l.t.max(b_at);
                        }
                    }
                    first_out[r] = l.send(len, send2);
                }
            }
        }
        VectorOp::RmsNorm | VectorOp::LayerNorm | VectorOp::AddRmsNorm => {
            for (r, (_, len)) in segs.iter().enumerate() {
                if s.op == VectorOp::AddRmsNorm {
                    // `a` then `b` come in as the add kernel's do, into
                    // memory; then the sum goes out, before the norm.
                    let l = &mut lines[r];
                    l.t = a_first(
                        arch,
                        l.t + 1 + arch.vector_issue_cycles as u64,
                        r,
                        *len,
                        fed,
                    );
                    sum_out[r] = Some(l.send(*len, rate(arch, VecOp::Mov, 1, 0)));
                } else {
                    let issue = lines[r].t + 1 + arch.vector_issue_cycles as u64;
                    lines[r].t = taken(issue, &queued[r]);
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
                let issue = lines[r].t + 1 + arch.vector_issue_cycles as u64;
                lines[r].t = taken(issue, &queued[r]);
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

/// Per input stream (by name), the cycle each of its wavelets is pushed
/// in at the kernel's edge.
type Pushed = BTreeMap<String, Vec<u64>>;

/// Per segment `k`, per input (`a`, then `b`), the cycle each element is
/// in its PE's queue. A row's streams (each PE's `a`, then its `b`) enter
/// its west PE through one port, which the router serves in turn, one
/// wavelet a cycle, from the stream after the one it served last,
/// skipping those with nothing in their buffer (a wavelet is there a hop
/// after it is pushed in; unhindered, a stream's `m`-th is pushed in at
/// cycle `m`); each then takes a hop per column to its PE and the ramp.
fn in_queues(
    s: &VectorSpec,
    segs: &[(u32, u32)],
    hop: u64,
    ramp: u64,
    fed: Option<&Pushed>,
) -> Vec<Vec<Vec<u64>>> {
    let ins = if s.op.two_inputs() { 2 } else { 1 };
    let w = s.w as usize;
    let mut queued: Vec<Vec<Vec<u64>>> = segs
        .iter()
        .map(|(_, len)| vec![vec![0; *len as usize]; ins])
        .collect();
    for row in 0..segs.len() / w {
        // Stream `j` is column `j / ins`'s input `j % ins`.
        let (ks, is) = (|j: usize| row * w + j / ins, |j: usize| j % ins);
        let streams = w * ins;
        let lens: Vec<usize> = (0..streams).map(|j| segs[ks(j)].1 as usize).collect();
        // When each stream's wavelets are in the west PE's buffers.
        let there: Vec<Vec<u64>> = (0..streams)
            .map(|j| {
                let pushed = fed.and_then(|f| f.get(&input_name(is(j), ks(j))));
                (0..lens[j])
                    .map(|m| pushed.and_then(|p| p.get(m).copied()).unwrap_or(m as u64) + hop)
                    .collect()
            })
            .collect();
        let there = |j: usize, m: usize| there[j][m];
        let mut next = vec![0usize; streams];
        let (mut rr, mut t, mut left) = (0usize, 0u64, lens.iter().sum::<usize>());
        while left > 0 {
            let pick = (0..streams)
                .map(|d| (rr + d) % streams)
                .find(|&j| next[j] < lens[j] && there(j, next[j]) <= t);
            match pick {
                Some(j) => {
                    let c = (j / ins) as u64;
                    queued[ks(j)][is(j)][next[j]] = t + hop * c + ramp;
                    next[j] += 1;
                    left -= 1;
                    rr = (j + 1) % streams;
                    t += 1;
                }
                None => {
                    t = (0..streams)
                        .filter(|&j| next[j] < lens[j])
                        .map(|j| there(j, next[j]))
                        .min()
                        .unwrap_or(t)
                        .max(t + 1);
                }
            }
        }
    }
    queued
}

/// Row `r` of a kernel that takes all of `a` into memory (from `start`),
/// then adds `b` as it comes ([`VectorOp::takes_a_first`]), one PE wide:
/// the cycle its last `b` is taken. Stepped a cycle at a time as the
/// engine steps the row's west PE: the host offers each
/// stream's wavelet `m` from its push cycle in `fed` (from cycle 0 where
/// it names none), one a cycle, into the router's buffer for its color
/// while it has room; the router moves one wavelet a cycle off the west
/// port, the two streams in turn, into the core's queue while that has
/// room; the core takes one a cycle, `a`'s while the first op runs and
/// `b`'s from the second op's issue. Room a pop frees is there the next
/// cycle. `b` waits in its buffers while `a` comes in, and `a` passes it.
fn a_first(arch: &Arch, start: u64, r: usize, len: u32, fed: Option<&Pushed>) -> u64 {
    let len = len as usize;
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let link_room = (arch.router_buffer_depth + arch.hop_latency) as usize;
    let queue_room = (arch.queue_depth + arch.ramp_latency) as usize;
    let pushed: [Option<&Vec<u64>>; 2] =
        [0, 1].map(|which| fed.and_then(|f| f.get(&input_name(which, r))));
    let offered = |j: usize, m: usize| pushed[j].and_then(|p| p.get(m).copied()).unwrap_or(0);
    use std::collections::VecDeque;
    // Per stream: wavelets offered so far, the cycle the next may be,
    // and the ready cycles of those in the router's buffer and in the
    // core's queue (in flight included).
    let mut sent = [0usize; 2];
    let mut next_at = [offered(0, 0), offered(1, 0)];
    let mut link: [VecDeque<u64>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut queue: [VecDeque<u64>; 2] = [VecDeque::new(), VecDeque::new()];
    let (mut rr, mut took, mut op_start) = (0usize, [0usize; 2], start);
    let mut last = 0u64;
    let mut t = 0u64;
    while took[1] < len {
        let mut moved = false;
        for j in 0..2 {
            if sent[j] < len && t >= next_at[j] && link[j].len() < link_room {
                link[j].push_back(t + hop);
                sent[j] += 1;
                next_at[j] = (t + 1).max(offered(j, sent[j]));
                moved = true;
            }
        }
        let pick = (0..2)
            .map(|d| (rr + d) % 2)
            .find(|&j| link[j].front().is_some_and(|&at| at <= t) && queue[j].len() < queue_room);
        if let Some(j) = pick {
            link[j].pop_front();
            queue[j].push_back(t + ramp);
            rr = (j + 1) % 2;
            moved = true;
        }
        let j = (took[0] == len) as usize;
        if t >= op_start && queue[j].front().is_some_and(|&at| at <= t) {
            queue[j].pop_front();
            took[j] += 1;
            last = t;
            if j == 0 && took[0] == len {
                // The add issues the cycle after: `Timeline::vector`'s.
                op_start = t + 1 + arch.vector_issue_cycles as u64;
            }
            moved = true;
        }
        // Nothing moved: nothing will until the next offer, arrival or
        // issue (room is only freed by a move), so skip to it.
        t = match moved {
            true => t + 1,
            false => (0..2)
                .filter(|&j| sent[j] < len)
                .map(|j| next_at[j])
                .chain(link.iter().chain(&queue).filter_map(|q| q.front().copied()))
                .chain([op_start])
                .filter(|&at| at > t)
                .min()
                .unwrap_or(t + 1),
        };
    }
    last
}

/// The cycle an op issued at `start` that takes an element of each of its
/// inputs a cycle (in the order they come) has taken its last: element
/// `m` once every input's `m`-th is in the queue.
fn taken(start: u64, queued: &[Vec<u64>]) -> u64 {
    let n = queued.first().map_or(0, Vec::len);
    crate::timeline::taken(
        start,
        (0..n).map(|m| queued.iter().map(|q| q[m]).max().unwrap_or(0)),
    )
}

/// When a SwiGLU's main thread has taken its last `a`, and how many of
/// `b`'s elements its microthread has taken by then: `b`'s receive on a
/// microthread from `b_start`, `a`'s on the main thread from the cycle
/// after, each element in its queue as `queued` (`a`, `b`) says; the one
/// datapath takes one element a cycle, the two taking turns while both
/// have one (b first), either alone while only it has.
fn pairs_in(b_start: u64, queued: &[Vec<u64>], n: u32) -> (u64, usize) {
    let n = n as usize;
    let (mut a, mut b) = (0usize, 0usize);
    let mut last_b = false;
    let mut t = b_start;
    loop {
        let b_ok = b < n && queued[1][b] <= t;
        let a_ok = t > b_start && a < n && queued[0][a] <= t;
        if a_ok && (!b_ok || last_b) {
            a += 1;
            last_b = false;
            if a == n {
                return (t, b);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Kept costs are the computed ones, asked in an order where a key
    /// that left out a field the cost reads would answer with another
    /// spec's cost ([`crate::costed`]).
    #[test]
    fn a_kept_cost_is_the_cost_of_its_own_spec_and_machine() {
        let base = VectorSpec {
            op: VectorOp::RmsNorm,
            n: 64,
            h: 8,
            w: 1,
            strategy: Strategy::Tree { k: 2 },
            eps: 1e-5,
            seed: 3,
        };
        let specs = [
            base.clone(),
            VectorSpec {
                op: VectorOp::Add,
                ..base.clone()
            },
            VectorSpec {
                op: VectorOp::Swiglu,
                w: 2,
                ..base.clone()
            },
            VectorSpec {
                n: 128,
                ..base.clone()
            },
            VectorSpec {
                h: 4,
                ..base.clone()
            },
            VectorSpec {
                strategy: Strategy::Chain,
                ..base.clone()
            },
            VectorSpec {
                eps: 1e-6,
                ..base.clone()
            },
        ];
        let distinct = crate::costed::check::kept_costs_are_computed(
            &specs,
            |s, seed, arch| cost(&VectorSpec { seed, ..s.clone() }, arch),
            |s, arch| outputs(s, arch, None).end,
        );
        assert!(distinct >= 8, "{distinct} distinct costs");
    }
}
