//! A mixture of experts' router on one PE: from the router's logits (one per
//! expert, from the west), the `k` experts a token goes to and their
//! weights, sent east as one stream `[e_0 … e_{k−1}, w_0 … w_{k−1}]` (the
//! indices as exact f32).
//!
//! The picks are the `k` largest logits, largest first, ties to the lower
//! expert (the order of the softmax's probabilities, which a monotone map
//! keeps; transformers' Mixtral takes `topk` of the softmax). The weights
//! are the softmax over the picked logits, `exp(l_j − l_0) / Σ exp(l_i −
//! l_0)`, which is the full softmax renormalized over the picks. Pass `j`
//! scans every logit for the best one after pick `j − 1` in the order
//! (logit descending, index ascending), branch-free, so the kernel's time
//! does not depend on the logits and a timing-only run needs none; the
//! best so far is read back through its index, with a `−∞` after the last
//! logit standing for "none yet".

use crate::timeline::{Timeline, f32_rate};
use crate::{Fragment, KernelError, TensorPort};
use std::fmt::Write;
use wafer_emulator::Arch;
use wafer_emulator::isa::VecOp;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RouterSpec {
    /// Experts (logits in).
    pub experts: u32,
    /// Experts picked a token.
    pub per_token: u32,
    /// Seed of the default logits.
    pub seed: u64,
}

const CL: u8 = 0;
const CO: u8 = 2;
/// Scalar instructions of one logit in a pass's scan.
const SCAN: u64 = 16;

pub fn generate(s: &RouterSpec, arch: &Arch) -> Result<Fragment, KernelError> {
    let (e, k) = (s.experts, s.per_token);
    if e == 0 || k == 0 || k > e || e >= 1 << 24 {
        return Err(KernelError::Shape(format!(
            "a router picks 1..=experts of 1..2^24 experts, not {k} of {e}"
        )));
    }
    if (e as u64 + 1 + 2 * k as u64) * 4 + 400 + 80 * k as u64 > arch.sram_bytes as u64 {
        return Err(KernelError::Shape(format!(
            "a router over {e} experts does not fit one PE's {} bytes of SRAM",
            arch.sram_bytes
        )));
    }
    let mut body = String::new();
    for j in 0..k {
        write!(
            body,
            "  li r3, {e}
  li r1, 0
scan{j}:
  ldf f1, x[r1]
  flt r4, f1, f2
  feq r5, f1, f2
  sub r6, r1, r2
  max r6, r6, 0
  min r6, r6, 1
  and r5, r5, r6
  or r4, r4, r5
  ldf f3, x[r3]
  flt r5, f3, f1
  and r5, r5, r4
  sub r6, r1, r3
  mul r6, r6, r5
  add r3, r3, r6
  add r1, r1, 1
  blt r1, {e}, scan{j}
  itof f4, r3
  stf o[{j}], f4
  ldf f2, x[r3]
  stf o[{}], f2
  mov r2, r3
",
            k + j
        )
        .unwrap();
    }
    // The weights: exp(l_j − l_0), then each over their sum.
    body.push_str(&format!("  ldf f5, o[{k}]\n  lf f6, 0\n"));
    for j in 0..k {
        write!(
            body,
            "  ldf f7, o[{i}]\n  fsub f7, f7, f5\n  fexp f7, f7\n  stf o[{i}], f7\n  fadd f6, f6, f7\n",
            i = k + j
        )
        .unwrap();
    }
    for j in 0..k {
        write!(
            body,
            "  ldf f7, o[{i}]\n  fdiv f7, f7, f6\n  stf o[{i}], f7\n",
            i = k + j
        )
        .unwrap();
    }
    let src = format!(
        "; router: {k} of {e} experts\n.grid 1x1
.code router
  .buffer x f32[{x}]
  .buffer o f32[{o}]
  .task main local active
main:
  lf f9, -inf
  stf x[{e}], f9
  vmov.f32 x[0, {e}], rx(c{CL})
  lf f2, inf
  li r2, -1
{body}  vmov.f32 tx(c{CO}), o
  end
.end
.place router 0,0 1x1
.route 0,0 1x1 c{CL} W -> R
.route 0,0 1x1 c{CO} R -> E
.input logits f32[{e}] -> 0,0 W c{CL} = rand({seed})
.output routing f32[{o}] <- 0,0 E c{CO}
",
        x = e + 1,
        o = 2 * k,
        seed = s.seed
    );
    let program = crate::assemble(&src, "router")?;
    Ok(Fragment {
        program: program.into(),
        inputs: vec![TensorPort::whole("logits", e)],
        outputs: vec![TensorPort::whole("routing", 2 * k)],
        state: Vec::new(),
    })
}

/// The reference: the picks (largest logit first, ties to the lower
/// expert) and their weights, in the kernel's arithmetic.
pub fn reference(s: &RouterSpec, logits: &[f32]) -> Vec<f32> {
    let k = s.per_token as usize;
    // The kernel never picks a NaN or −∞ (neither beats its "none"), and
    // compares as IEEE does (−0 equals +0).
    let mut order: Vec<usize> = (0..logits.len())
        .filter(|i| !logits[*i].is_nan() && logits[*i] != f32::NEG_INFINITY)
        .collect();
    order.sort_by(|a, b| {
        logits[*b]
            .partial_cmp(&logits[*a])
            .expect("no NaN")
            .then(a.cmp(b))
    });
    // Past the logits that can be picked, the kernel's "none" (index E,
    // logit −∞).
    let pick = |j: usize| {
        order
            .get(j)
            .map_or((logits.len(), f32::NEG_INFINITY), |i| (*i, logits[*i]))
    };
    let picks: Vec<(usize, f32)> = (0..k).map(pick).collect();
    let top = picks[0].1;
    let exps: Vec<f32> = picks.iter().map(|(_, l)| (l - top).exp()).collect();
    let sum = exps.iter().fold(0.0f32, |a, e| a + e);
    picks
        .iter()
        .map(|(i, _)| *i as f32)
        .chain(exps.iter().map(|e| e / sum))
        .collect()
}

/// Predicted cycles (data-independent by construction): two scalars, the
/// logits received from the west (`hop + ramp` after the host sends the
/// first), two more; per pick `2 + 16·E + 5`; then `2 + 5k + 3k` for the
/// weights, and the `2k` elements sent east, one a cycle, the last
/// `ramp + hop` later at the host.
pub fn cost(s: &RouterSpec, arch: &Arch) -> u64 {
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let (e, k) = (s.experts as u64, s.per_token as u64);
    let mut l = Timeline::start(arch);
    l.scalar(2);
    l.receive(s.experts, hop + ramp);
    l.scalar(2);
    l.scalar(k * (2 + SCAN * e + 5));
    l.scalar(2 + 5 * k + 3 * k);
    l.send(2 * s.per_token, f32_rate(arch, VecOp::Mov, 1, 0));
    // `t` is now the cycle the last element goes up the ramp.
    l.t + ramp + hop
}
