//! Attention's cost model: each PE's path through its code, instruction
//! by instruction, and the collectives' finish times.

use super::AttentionSpec;
use crate::line_reduce::{Combine, LineReduce};
use crate::timeline::{Timeline, f32_rate as rate};
use std::collections::BTreeMap;
use wafer_emulator::Arch;
use wafer_emulator::isa::VecOp;

/// Predicted cycles: each PE's path through its code (`code.rs`), instruction by
/// instruction with [`Timeline`] (its valid slots `nv` and whether it owns
/// `pos` decide the path), the max allreduce and the output reduce by
/// [`LineReduce::finish`], and the input's element `k` in PE `r`'s queue at
/// `k + (r+1)·hop + ramp` (it enters PE(0,0) from the host and is multicast
/// one hop per row).
pub fn cost(s: &AttentionSpec, arch: &Arch) -> u64 {
    column_end(&s.as_columns(), arch, None)
}

/// [`cost`] with the input arriving late: `pushed` holds, by stream name
/// (`in<c>`, column `c`'s), the cycle each wavelet is pushed in (one not
/// named is unhindered). The columns are apart (each its own input, its
/// collectives along it and its output `out<c>` from its top), so each
/// ends by its own input: the run's end, and when each column's output's
/// last wavelet leaves (a cycle before it is at the host).
pub fn fed(
    s: &AttentionSpec,
    arch: &Arch,
    pushed: &BTreeMap<String, Vec<u64>>,
) -> (u64, BTreeMap<String, u64>) {
    let s = &s.as_columns();
    let leaves: BTreeMap<String, u64> = (0..s.kv_heads)
        .map(|c| {
            let name = format!("in{c}");
            let end = column_end(s, arch, pushed.get(&name).map(Vec::as_slice));
            (format!("out{c}"), end - 1)
        })
        .collect();
    let end = leaves.values().map(|l| l + 1).max().unwrap_or(0);
    (end, leaves)
}

/// A column's end ([`cost`]'s derivation), its input's wavelets pushed in
/// at the cycles `pushed` gives (element `k` at `k` where `None`).
fn column_end(s: &AttentionSpec, arch: &Arch, pushed: Option<&[u64]>) -> u64 {
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let (d, g) = (s.head_dim, s.group);
    let (mov, dot, rmax) = (
        rate(arch, VecOp::Mov, 1, 1),
        rate(arch, VecOp::Dot, 2, 0),
        rate(arch, VecOp::Rmax, 1, 0),
    );
    let (sub, exp, sum) = (
        rate(arch, VecOp::Fsub, 1, 1),
        rate(arch, VecOp::Exp, 1, 1),
        rate(arch, VecOp::Sum, 1, 0),
    );
    let (zero, fmac, scale) = (
        rate(arch, VecOp::Mov, 0, 1),
        rate(arch, VecOp::Fmac, 2, 1),
        rate(arch, VecOp::Fmul, 1, 0),
    );
    let mut lines: Vec<Timeline> = (0..s.h).map(|_| Timeline::start(arch)).collect();
    let sync = |lines: &mut Vec<Timeline>, red: LineReduce| {
        let issue: Vec<u64> = lines.iter().map(|l| l.t).collect();
        for (l, done) in lines.iter_mut().zip(red.finish(&issue, arch)) {
            l.t = done;
        }
    };
    // A window's extra scalar per head (the first score's address), the
    // slots in it, and row 0's sink ops.
    let span = s.window.is_some() as u64;
    let count = |r: u32| s.valid(r) - s.first(r);
    let sinks_top = |r: usize| s.sinks && r == 0;
    for (r, l) in lines.iter_mut().enumerate() {
        let r = r as u32;
        let nv = count(r);
        let into = hop * (r as u64 + 1) + ramp;
        match pushed {
            Some(p) => l.receive_each(p.iter().map(|t| t + into)),
            None => l.receive(s.in_len(), into),
        }
        l.scalar(5 + if s.pos >= r { 3 } else { 0 } + 2);
        if s.pos % s.h == r {
            l.scalar(2);
            l.vector(d, mov);
            l.vector(d, mov);
        }
        if let Some(w) = s.window {
            l.scalar(4 + if s.pos + 1 > w + r { 3 } else { 0 });
        }
        l.scalar(3);
        for _ in 0..g {
            l.scalar(2);
            l.repeat(nv as u64, |l| {
                l.scalar(2);
                l.vector(d, dot);
                l.scalar(6);
            });
            l.scalar(3 + span);
            if nv > 0 {
                l.vector(nv, rmax);
            }
            l.scalar(5);
        }
        if sinks_top(r as usize) {
            l.vector(g, rate(arch, VecOp::Fmax, 2, 1));
        }
    }
    sync(&mut lines, s.allreduce("mx", Combine::Max));
    for (r, l) in lines.iter_mut().enumerate() {
        let nv = count(r as u32);
        l.scalar(3);
        for _ in 0..g {
            l.scalar(3 + span);
            if nv > 0 {
                l.vector(nv, sub);
                l.vector(nv, exp);
                l.vector(nv, sum);
            }
            l.scalar(5);
        }
        if sinks_top(r) {
            l.vector(g, rate(arch, VecOp::Fsub, 2, 1));
            l.vector(g, exp);
            l.vector(g, rate(arch, VecOp::Fadd, 2, 1));
        }
    }
    for (r, l) in lines.iter_mut().enumerate() {
        let nv = count(r as u32);
        l.scalar(3);
        for _ in 0..g {
            l.vector(d, zero);
            l.scalar(2);
            l.repeat(nv as u64, |l| {
                l.scalar(3);
                l.vector(d, fmac);
                l.scalar(3);
            });
            l.scalar(5);
        }
    }
    // The output reduce up into the top PE (row h − 1), which then streams each head
    // out divided by its sum; the last element reaches the port a ramp
    // and a hop after it leaves.
    let issue: Vec<u64> = lines.iter().map(|l| l.t).collect();
    let mut root = lines[s.h as usize - 1];
    root.t = s.output().finish(&issue, arch)[s.h as usize - 1];
    for _ in 0..g {
        root.scalar(2);
        root.send(d, scale);
    }
    root.t + ramp + hop
}
