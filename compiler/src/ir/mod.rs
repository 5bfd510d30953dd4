//! The graph IR: one decode step of a decoder-only transformer as a list of
//! typed tensor operations, in the style of Cranelift's IR. It prints, it
//! parses back to the same graph, and [`verify`] checks it; every pass will
//! be a function from a graph to a graph, verified between passes.
//!
//! Here the graph itself; `build.rs` makes a model's decode step,
//! `text.rs` prints and parses it, `verify.rs` checks it and
//! `interpret.rs` runs it on the CPU.
//!
//! ```text
//! weight layers.0.attention.wq.weight [64, 64]
//! %0 = token : i32[1]
//! %1 = embed tok_embeddings.weight, %0 : f32[64]
//! %2 = rmsnorm %1, layers.0.attention_norm.weight eps=1e-5 : f32[64]
//! %3 = matvec layers.0.attention.wq.weight, %2 : f32[64]
//! %4 = matvec layers.0.attention.wk.weight, %2 : f32[32]
//! %5 = matvec layers.0.attention.wv.weight, %2 : f32[32]
//! %6 = rope %3 head=8 theta=10000.0 pairs=adjacent : f32[64]
//! %7 = rope %4 head=8 theta=10000.0 pairs=adjacent : f32[32]
//! %8 = attention %6, %7, %5 layer=0 heads=8 kv_heads=4 head=8 : f32[64]
//! return %84
//! ```
//! Value `%i` is instruction `i`'s result; `rope` and `attention` use the
//! step's position, and `attention` appends its `k`, `v` to layer `layer`'s
//! KV cache before attending.
//!
//! A mixture of experts is data-dependent: `route` picks experts, each
//! expert's work starts from a `dispatch` of its input, which has a value
//! only for the experts picked (every op reading a value-less operand
//! makes none), and `combine` sums what the picked experts made.

mod build;
mod interpret;
mod text;
mod verify;

pub use build::{decode_step, seeded_weights};
pub use interpret::{interpret, picks};
pub use text::{IrError, parse};
pub use verify::{GraphError, verify};

use crate::model::{RopePairs, RopeScaling};
use std::fmt::Write;

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The step's input token.
    Token,
    /// The step's position (GPT-2 looks it up in its position table).
    Position,
    Embed {
        table: String,
        token: usize,
    },
    RmsNorm {
        x: usize,
        weight: String,
        eps: f32,
    },
    MatVec {
        weight: String,
        x: usize,
        /// Added to the product (GPT-2's projections have biases).
        bias: Option<String>,
    },
    LayerNorm {
        x: usize,
        weight: String,
        bias: String,
        eps: f32,
    },
    /// GELU, tanh approximation (GPT-2's `gelu_new`).
    Gelu {
        x: usize,
    },
    Rope {
        x: usize,
        head: usize,
        theta: f32,
        pairs: RopePairs,
        scaling: Option<RopeScaling>,
    },
    /// With `sinks` (a weight of a logit per head), gpt-oss's attention:
    /// scores scaled by `head^−½` rounded once, the head's sink in each
    /// softmax's denominator; with `window`, over the latest `window`
    /// positions only.
    Attention {
        q: usize,
        k: usize,
        v: usize,
        layer: usize,
        heads: usize,
        kv_heads: usize,
        head: usize,
        sinks: Option<String>,
        window: Option<usize>,
    },
    Add {
        a: usize,
        b: usize,
    },
    Mul {
        a: usize,
        b: usize,
    },
    Silu {
        x: usize,
    },
    /// A mixture of experts' router: the `k` experts with the largest
    /// of `logits` (one per expert) and their weights, as
    /// `[e_0 … e_{k−1}, w_0 … w_{k−1}]`, largest first, the indices as
    /// exact f32 ([`crate::math::route`]).
    Route {
        logits: usize,
        k: usize,
        order: RouteOrder,
    },
    /// `x`, sent to expert `expert` where `route` picked it. Where it did
    /// not, there is no value, and nothing computed from it has one: the
    /// expert does not run for this token.
    Dispatch {
        x: usize,
        route: usize,
        expert: usize,
    },
    /// The picked experts' outputs weighted and summed, in increasing
    /// expert index (as transformers adds them); `experts[e]` is expert
    /// `e`'s output, which has a value only where `route` picked it.
    Combine {
        route: usize,
        experts: Vec<usize>,
    },
    /// gpt-oss's clamped SwiGLU of a gate and an up projection
    /// ([`crate::gpt_oss::clamped_swiglu`]).
    ClampedSwiglu {
        gate: usize,
        up: usize,
    },
}

/// How a router turns logits into weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteOrder {
    /// Mixtral's: softmax over every logit, the top k kept and
    /// renormalized ([`crate::math::route`]).
    SoftmaxThenTopK,
    /// gpt-oss's: the top k logits, then softmax over them
    /// ([`crate::gpt_oss::top_k_softmax`]).
    TopKThenSoftmax,
}

impl RouteOrder {
    pub fn name(self) -> &'static str {
        match self {
            RouteOrder::SoftmaxThenTopK => "softmax_top",
            RouteOrder::TopKThenSoftmax => "top_softmax",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Inst {
    pub op: Op,
    /// Elements of the result (f32, or one i32 for `token`).
    pub len: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// Weights the graph reads, with their shapes.
    pub weights: Vec<(String, Vec<usize>)>,
    pub insts: Vec<Inst>,
    /// The value the step returns (the logits).
    pub ret: usize,
}

impl Op {
    /// The values the op reads.
    pub fn operands(&self) -> Vec<usize> {
        match self {
            Op::Token | Op::Position => vec![],
            Op::Embed { token, .. } => vec![*token],
            Op::RmsNorm { x, .. }
            | Op::MatVec { x, .. }
            | Op::LayerNorm { x, .. }
            | Op::Gelu { x }
            | Op::Rope { x, .. }
            | Op::Silu { x } => vec![*x],
            Op::Attention { q, k, v, .. } => vec![*q, *k, *v],
            Op::Add { a, b } | Op::Mul { a, b } => vec![*a, *b],
            Op::ClampedSwiglu { gate, up } => vec![*gate, *up],
            Op::Route { logits, .. } => vec![*logits],
            Op::Dispatch { x, route, .. } => vec![*x, *route],
            Op::Combine { route, experts } => std::iter::once(*route)
                .chain(experts.iter().copied())
                .collect(),
        }
    }
}

/// A one-line summary: instruction counts by operation.
pub fn summary(g: &Graph) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for inst in &g.insts {
        let name = format!("{:?}", inst.op)
            .split([' ', '{'])
            .next()
            .unwrap_or("")
            .to_lowercase();
        *counts.entry(name).or_insert(0) += 1;
    }
    let mut s = String::new();
    for (k, v) in counts {
        write!(s, "{k} {v}, ").unwrap();
    }
    s.trim_end_matches(", ").to_string()
}
