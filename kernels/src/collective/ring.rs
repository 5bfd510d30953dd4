//! The ring allreduce along every line: a reduce-scatter, then an
//! allgather, over the folded ring (no ring hop longer than two PEs).

use super::{C_FIRST, CollectiveSpec, check_fits};
use std::fmt::Write;
use wafer_emulator::Arch;

/// The folded ring over a line of `p` PEs, in ring order: the even
/// positions going one way, the odd ones coming back, so no ring hop is
/// longer than 2 and the two directions never share a link.
pub fn ring_order(p: u32) -> Vec<u32> {
    (0..p).step_by(2).chain((1..p).step_by(2).rev()).collect()
}

/// Each position's place in [`ring_order`] (its inverse).
pub fn ring_place(p: u32) -> Vec<u32> {
    let mut place = vec![0; p as usize];
    for (i, pos) in ring_order(p).into_iter().enumerate() {
        place[pos as usize] = i as u32;
    }
    place
}

/// A ring allreduce along every line, in `2·(p−1)` rounds over `p` chunks:
/// a reduce-scatter (in round `r`, ring position `q` sends chunk `q − r`
/// and adds the chunk `q − r − 1` arriving from its predecessor into its
/// own), leaving the total of chunk `c` at position `c − 1`; then an
/// allgather passing the totals on. Each round is a send and a receive, in
/// that order at even ring positions and the other way round at odd ones:
/// every sender then faces a receiver that is already receiving, so no
/// cycle of blocked senders can form, whatever the buffering. One color
/// carries it all (each PE hears only its predecessor, in order).
pub(super) fn generate(
    s: &CollectiveSpec,
    arch: &Arch,
) -> Result<crate::Fragment, crate::KernelError> {
    use crate::KernelError;
    let lines = s.lines();
    let p = lines.len();
    check_fits(s, arch)?;
    if s.n < p {
        return Err(KernelError::Shape(format!(
            "a ring over {p} PEs cuts the vector into {p} chunks; it needs at least {p} elements, not {}",
            s.n
        )));
    }
    let c = C_FIRST;
    let order = ring_order(p);
    let chunks = crate::split(s.n, p);
    let v = |ch: i64| {
        let (off, len) = chunks[ch.rem_euclid(p as i64) as usize];
        format!("v[{off}, {len}]")
    };
    let op = s.combine.mnemonic();
    let mut src = format!(
        "; ring allreduce along {:?}s of {}x{} PEs, {} elements\n.grid {}x{}\n",
        s.scope, s.w, s.h, s.n, s.w, s.h
    );
    for (q, pos) in order.iter().enumerate() {
        let q = q as i64;
        let mut body = String::new();
        for round in 0..2 * (p as i64 - 1) {
            let (send, recv) = if round < p as i64 - 1 {
                (
                    format!("vmov.f32 tx(c{c}), {}", v(q - round)),
                    format!("{op}.f32 {0}, rx(c{c}), {0}", v(q - round - 1)),
                )
            } else {
                let r = round - (p as i64 - 1);
                (
                    format!("vmov.f32 tx(c{c}), {}", v(q + 1 - r)),
                    format!("vmov.f32 {}, rx(c{c})", v(q - r)),
                )
            };
            let (a, b) = if q % 2 == 0 {
                (send, recv)
            } else {
                (recv, send)
            };
            writeln!(body, "  {a}\n  {b}").unwrap();
        }
        writeln!(src, ".code p{pos}\n  .buffer v f32[{}]\n  .task main local active\nmain:\n{body}  end\n.end\n.place p{pos} {}", s.n, lines.rect(*pos, 1)).unwrap();
    }
    for q in 0..p as usize {
        if p < 2 {
            break;
        }
        let (i, j) = (order[q], order[(q + 1) % p as usize]);
        let (dir, from) = if j > i {
            (lines.down(), lines.up())
        } else {
            (lines.up(), lines.down())
        };
        writeln!(src, ".route {} c{c} R -> {dir}", lines.rect(i, 1)).unwrap();
        for k in i.min(j) + 1..i.max(j) {
            writeln!(src, ".route {} c{c} {from} -> {dir}", lines.rect(k, 1)).unwrap();
        }
        writeln!(src, ".route {} c{c} {from} -> R", lines.rect(j, 1)).unwrap();
    }
    writeln!(src, ".data v 0,0 {}x{} = rand({})", s.w, s.h, s.seed).unwrap();
    let program = crate::assemble(&src, "ring allreduce")?;
    Ok(crate::Fragment {
        program: program.into(),
        inputs: vec![],
        outputs: vec![],
        state: Vec::new(),
    })
}

/// Chunk `c` combined in ring order from position `c`:
/// `f(…f(f(v_c, v_{c+1}), v_{c+2})…)`, the incoming partial first.
pub(super) fn reference(s: &CollectiveSpec, p: &wafer_emulator::Program) -> Vec<Vec<f32>> {
    let len = s.lines().len();
    let order = ring_order(len);
    let chunks = crate::split(s.n, len);
    (0..s.lanes())
        .map(|lane| {
            let parts: Vec<Vec<f32>> = (0..len as usize)
                .map(|q| {
                    p.initial_values(s.pe(order[q], lane), "v")
                        .expect("v exists")
                })
                .collect();
            let mut total = vec![0.0; s.n as usize];
            for (c, (off, n)) in chunks.iter().enumerate() {
                for (e, slot) in total
                    .iter_mut()
                    .enumerate()
                    .skip(*off as usize)
                    .take(*n as usize)
                {
                    *slot = (1..len as usize).fold(parts[c][e], |acc, t| {
                        s.combine.apply(acc, parts[(c + t) % len as usize][e])
                    });
                }
            }
            total
        })
        .collect()
}

/// Predicted cycles, round by round over ring positions: an op issued at
/// `t` starts at `t + 1 + I` and moves one element per cycle; a receive
/// handles element 0 at `max(start, arrival)`, the sender's first element
/// reaching it `2·ramp + hops·hop` later (hops 1 or 2); a send cannot run
/// more than the path's buffering ahead of its receiver, so it finishes no
/// earlier than `B` elements before the receive does, `B` being the
/// wavelets the path holds (core queue, the ramp buffer, one router buffer
/// per hop, each with its link's pipeline stages); the next op issues in
/// the cycle the previous one finishes.
pub(super) fn cost(s: &CollectiveSpec, arch: &Arch) -> u64 {
    let (sw, i, hop, ramp) = (
        arch.task_switch_cycles as u64,
        arch.vector_issue_cycles as u64,
        arch.hop_latency as u64,
        arch.ramp_latency as u64,
    );
    let p = s.lines().len() as usize;
    if p < 2 {
        return sw + 1;
    }
    let order = ring_order(p as u32);
    let chunks = crate::split(s.n, p as u32);
    let len = |c: i64| chunks[c.rem_euclid(p as i64) as usize].1 as u64;
    let hops: Vec<u64> = (0..p)
        .map(|q| (order[(q + 1) % p] as i64 - order[q] as i64).unsigned_abs())
        .collect();
    let lat = |q: usize| 2 * ramp + hops[q] * hop;
    let room = |q: usize| {
        (arch.queue_depth + arch.ramp_latency + arch.router_buffer_depth + arch.ramp_latency) as u64
            + hops[q] * (arch.router_buffer_depth + arch.hop_latency) as u64
    };
    let pred = |q: usize| (q + p - 1) % p;
    let mut t = vec![sw; p];
    for round in 0..2 * (p as i64 - 1) {
        let sent = |q: usize| {
            if round < p as i64 - 1 {
                len(q as i64 - round)
            } else {
                len(q as i64 + 1 - (round - (p as i64 - 1)))
            }
        };
        let (mut sf, mut sd, mut rf, mut rd) =
            (vec![0u64; p], vec![0u64; p], vec![0u64; p], vec![0u64; p]);
        // A send of n to q's successor, first element at sf[q], ends no
        // earlier than the successor's receive lets it (credits): the
        // receive's first pop at rf frees room one buffer further back
        // each cycle, so it reaches the sender's ramp buffer `hops + 2`
        // buffers back (queue, a router buffer per hop, the ramp buffer)
        // that many cycles later, and element `held + k` goes at
        // `rf + hops + 2 + k`.
        let send_done = |q: usize, sf: &[u64], rf: &[u64]| {
            let n = sent(q);
            let held = room(q);
            let by_credit = if n > held {
                rf[(q + 1) % p] + hops[q] + 2 + (n - 1 - held)
            } else {
                0
            };
            (sf[q] + n - 1).max(by_credit)
        };
        for q in (0..p).step_by(2) {
            sf[q] = t[q] + 1 + i;
        }
        for q in (1..p).step_by(2) {
            rf[q] = (t[q] + 1 + i).max(sf[pred(q)] + lat(pred(q)));
            rd[q] = rf[q] + sent(pred(q)) - 1;
            sf[q] = rd[q] + 1 + i;
        }
        for q in (0..p).step_by(2) {
            sd[q] = send_done(q, &sf, &rf);
            rf[q] = (sd[q] + 1 + i).max(sf[pred(q)] + lat(pred(q)));
            rd[q] = rf[q] + sent(pred(q)) - 1;
        }
        if p % 2 == 1 {
            // The last even position sends to position 0, whose receive
            // is only known now.
            let q = p - 1;
            sd[q] = send_done(q, &sf, &rf);
            rf[q] = (sd[q] + 1 + i).max(sf[pred(q)] + lat(pred(q)));
            rd[q] = rf[q] + sent(pred(q)) - 1;
        }
        for q in (1..p).step_by(2) {
            sd[q] = send_done(q, &sf, &rf);
        }
        for q in 0..p {
            t[q] = if q % 2 == 0 { rd[q] } else { sd[q] };
        }
    }
    t.into_iter().max().unwrap_or(0) + 1
}
