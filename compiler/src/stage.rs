//! Stages: the graph IR cut into the pieces a kernel runs, one per stage.
//!
//! [`lower`] turns each IR instruction into a stage (an argmax is added at
//! the end, since greedy decoding picks the next token on the wafer), and
//! [`fuse`] merges stages where that saves fabric traffic: projections of
//! the same input become one GEMV (x is broadcast once, not three times),
//! the rotations of q and k one RoPE, and `silu(gate) · up` one SwiGLU (the
//! gate's activation never leaves its PE), and a residual add and the
//! RMSNorm after it one add-norm (the sum is normed where it is made, one
//! hand-off fewer). Both are functions from stages to stages, and
//! [`verify`] checks the result between passes.

use crate::ir::{Graph, Op};
use crate::model::{RopePairs, RopeScaling};
use std::fmt;
use wafer_kernels::vector::VectorOp;

/// Where a stage input's values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    /// IR value `%i`.
    Value(usize),
    /// The step's position (one value).
    Pos,
    /// The constant 1 (a biased GEMV's extra input: `[W | b]·[x; 1]`).
    One,
    /// The weights of route `%i`'s picks, in increasing expert index (the
    /// order a combine adds the experts' outputs in).
    ExpertWeights(usize),
}

/// A stage that runs only for the experts a router picked: expert
/// `expert` of route value `%route`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pick {
    pub route: usize,
    pub expert: usize,
}

/// What a stage computes (which kernel runs it).
#[derive(Clone, Debug, PartialEq)]
pub enum Work {
    Embed {
        table: String,
        vocab: u32,
        dim: u32,
    },
    /// `y = [W₁; W₂; …]·x`: the weights' rows concatenated. With
    /// biases (one per weight), each bias is one more column and x ends
    /// with a 1, so the kernel computes `[W | b]·[x; 1]`.
    Gemv {
        weights: Vec<String>,
        biases: Vec<String>,
        m: u32,
        n: u32,
        /// Its two outputs (`m / 2` each) are a SwiGLU's gate and up
        /// projections: the tiled GEMV computes them side by side
        /// (`GemvSpec::halves`), so each pair leaves on one row.
        halves: bool,
    },
    LayerNorm {
        weight: String,
        bias: String,
        n: u32,
        eps: f32,
    },
    Gelu {
        n: u32,
    },
    RmsNorm {
        weight: String,
        n: u32,
        eps: f32,
    },
    Add {
        n: u32,
    },
    /// `s = a + b` then RMSNorm of `s`: a residual add and the norm that
    /// reads it, fused; the kernel's output is the normed vector then `s`.
    AddRmsNorm {
        weight: String,
        n: u32,
        eps: f32,
    },
    Mul {
        n: u32,
    },
    Silu {
        n: u32,
    },
    /// `silu(a) · b`.
    Swiglu {
        n: u32,
    },
    Rope {
        heads: u32,
        head: u32,
        theta: f32,
        pairs: RopePairs,
        scaling: Option<RopeScaling>,
    },
    Attention {
        layer: usize,
        heads: u32,
        kv_heads: u32,
        head: u32,
        /// gpt-oss's sink logits (a weight of one a head).
        sinks: Option<String>,
        /// A sliding window of the latest positions.
        window: Option<u32>,
    },
    /// gpt-oss's clamped SwiGLU of a gate (`a`) and an up projection (`b`).
    ClampedSwiglu {
        n: u32,
    },
    Argmax {
        n: u32,
    },
    /// A mixture of experts' router: `k` of `experts` logits picked, with
    /// their weights.
    Route {
        experts: u32,
        k: u32,
    },
    /// The `k` picked experts' outputs (`n` each, in increasing expert
    /// index) weighted and summed.
    Combine {
        n: u32,
        k: u32,
    },
}

impl Work {
    /// The kernel's name, as the listing prints it.
    pub fn kernel(&self) -> &'static str {
        match self {
            Work::Embed { .. } => "embedding",
            Work::Gemv { .. } => "gemv",
            Work::LayerNorm { .. } => "layernorm",
            Work::Gelu { .. } => "gelu",
            Work::RmsNorm { .. } => "rmsnorm",
            Work::Add { .. } => "add",
            Work::AddRmsNorm { .. } => "add_rmsnorm",
            Work::Mul { .. } => "mul",
            Work::Silu { .. } => "silu",
            Work::Swiglu { .. } => "swiglu",
            Work::Rope { .. } => "rope",
            Work::Attention { .. } => "attention",
            Work::Argmax { .. } => "argmax",
            Work::Route { .. } => "router",
            Work::ClampedSwiglu { .. } => "clamped_swiglu",
            Work::Combine { .. } => "combine",
        }
    }

    /// The element-wise or norm kernel that runs it and its length, for
    /// the work a [`VectorOp`] computes. Placement shapes these alike and
    /// asks the op whether it may spread over columns.
    pub fn vector_op(&self) -> Option<(VectorOp, u32)> {
        match *self {
            Work::RmsNorm { n, .. } => Some((VectorOp::RmsNorm, n)),
            Work::AddRmsNorm { n, .. } => Some((VectorOp::AddRmsNorm, n)),
            Work::LayerNorm { n, .. } => Some((VectorOp::LayerNorm, n)),
            Work::Gelu { n } => Some((VectorOp::Gelu, n)),
            Work::Add { n } => Some((VectorOp::Add, n)),
            Work::Mul { n } => Some((VectorOp::Mul, n)),
            Work::Silu { n } => Some((VectorOp::Silu, n)),
            Work::Swiglu { n } => Some((VectorOp::Swiglu, n)),
            Work::Embed { .. }
            | Work::Gemv { .. }
            | Work::Rope { .. }
            | Work::Attention { .. }
            | Work::ClampedSwiglu { .. }
            | Work::Argmax { .. }
            | Work::Route { .. }
            | Work::Combine { .. } => None,
        }
    }
}

/// One kernel invocation per decode step.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// `layers.3.qkv`, `embed`, `classifier`, …
    pub name: String,
    pub layer: Option<usize>,
    pub work: Work,
    /// Per kernel input port: the values concatenated into it.
    pub inputs: Vec<(String, Vec<Src>)>,
    /// The IR values the kernel's output holds, concatenated (the argmax
    /// stage's output is the next token and holds none).
    pub outputs: Vec<usize>,
    /// `Some`: an expert's stage, run only when the router picks it.
    pub when: Option<Pick>,
}

/// The layer an IR weight name belongs to.
fn layer_of(weight: &str) -> Option<usize> {
    weight
        .strip_prefix("layers.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// The short name of a projection weight (`attention.wq`, `feed_forward.w1`).
fn proj_name(weight: &str) -> String {
    let s = weight.trim_end_matches(".weight");
    match layer_of(weight) {
        Some(l) => s
            .trim_start_matches(&format!("layers.{l}."))
            .rsplit('.')
            .next()
            .unwrap_or(s)
            .to_string(),
        None => s.to_string(),
    }
}

/// One stage per IR instruction, plus the argmax of the logits.
pub fn lower(g: &Graph) -> Vec<Stage> {
    let len = |i: usize| g.insts[i].len as u32;
    // The layer of an instruction: from its weight, else from the latest one.
    let mut layer: Option<usize> = None;
    let mut out = Vec::new();
    // What a stage reads for each value (a dispatch is its input, sent to
    // the expert) and which expert's stages make it.
    let mut alias: Vec<usize> = (0..g.insts.len()).collect();
    let mut guard: Vec<Option<Pick>> = vec![None; g.insts.len()];
    for (i, inst) in g.insts.iter().enumerate() {
        let v = |x: usize| Src::Value(alias[x]);
        let port = |name: &str, srcs: Vec<Src>| (name.to_string(), srcs);
        let when = match inst.op {
            Op::Combine { .. } => None,
            _ => inst.op.operands().iter().find_map(|x| guard[*x]),
        };
        let (name, work, inputs) = match &inst.op {
            Op::Token | Op::Position => continue,
            Op::Dispatch { x, route, expert } => {
                alias[i] = alias[*x];
                guard[i] = Some(Pick {
                    route: *route,
                    expert: *expert,
                });
                continue;
            }
            Op::Route { logits, k, .. } => (
                "router".to_string(),
                Work::Route {
                    experts: len(*logits),
                    k: *k as u32,
                },
                vec![port("logits", vec![v(*logits)])],
            ),
            Op::Combine { route, experts } => (
                "combine".to_string(),
                Work::Combine {
                    n: len(i),
                    k: len(*route) / 2,
                },
                vec![
                    port("w", vec![Src::ExpertWeights(*route)]),
                    port("y", experts.iter().map(|e| v(*e)).collect()),
                ],
            ),
            Op::Embed { table, token } => {
                let vocab = g
                    .weights
                    .iter()
                    .find(|(n, _)| n == table)
                    .map_or(0, |(_, s)| s[0] as u32);
                let name = if g.insts[*token].op == Op::Position {
                    "pos_embed"
                } else {
                    "embed"
                };
                (
                    name.to_string(),
                    Work::Embed {
                        table: table.clone(),
                        vocab,
                        dim: len(i),
                    },
                    vec![port("id", vec![v(*token)])],
                )
            }
            Op::RmsNorm { x, weight, eps } => {
                layer = layer_of(weight);
                let name = match weight.rsplit('.').nth(1) {
                    Some(kind) if layer.is_some() => kind.to_string(),
                    _ => "final_norm".to_string(),
                };
                (
                    name,
                    Work::RmsNorm {
                        weight: weight.clone(),
                        n: len(i),
                        eps: *eps,
                    },
                    vec![port("a", vec![v(*x)])],
                )
            }
            Op::MatVec { weight, x, bias } => {
                layer = layer_of(weight);
                let name = if layer.is_some() {
                    proj_name(weight)
                } else {
                    "classifier".to_string()
                };
                let mut xs = vec![v(*x)];
                if bias.is_some() {
                    xs.push(Src::One);
                }
                (
                    name,
                    Work::Gemv {
                        weights: vec![weight.clone()],
                        biases: bias.iter().cloned().collect(),
                        m: len(i),
                        n: len(*x),
                        halves: false,
                    },
                    vec![port("x", xs)],
                )
            }
            Op::LayerNorm {
                x,
                weight,
                bias,
                eps,
            } => {
                layer = layer_of(weight);
                let name = match weight.rsplit('.').nth(1) {
                    Some(kind) if layer.is_some() => kind.to_string(),
                    _ => "final_norm".to_string(),
                };
                (
                    name,
                    Work::LayerNorm {
                        weight: weight.clone(),
                        bias: bias.clone(),
                        n: len(i),
                        eps: *eps,
                    },
                    vec![port("a", vec![v(*x)])],
                )
            }
            Op::Gelu { x } => (
                "gelu".to_string(),
                Work::Gelu { n: len(i) },
                vec![port("a", vec![v(*x)])],
            ),
            Op::Rope {
                x,
                head,
                theta,
                pairs,
                scaling,
            } => (
                "rope".to_string(),
                Work::Rope {
                    heads: len(*x) / *head as u32,
                    head: *head as u32,
                    theta: *theta,
                    pairs: *pairs,
                    scaling: *scaling,
                },
                vec![port("pos", vec![Src::Pos]), port("x", vec![v(*x)])],
            ),
            Op::Attention {
                q,
                k,
                v: val,
                layer: l,
                heads,
                kv_heads,
                head,
                sinks,
                window,
            } => {
                layer = Some(*l);
                (
                    "attention".to_string(),
                    Work::Attention {
                        layer: *l,
                        heads: *heads as u32,
                        kv_heads: *kv_heads as u32,
                        head: *head as u32,
                        sinks: sinks.clone(),
                        window: window.map(|w| w as u32),
                    },
                    vec![
                        port("pos", vec![Src::Pos]),
                        port("k", vec![v(*k)]),
                        port("v", vec![v(*val)]),
                        port("q", vec![v(*q)]),
                    ],
                )
            }
            Op::Add { a, b } => (
                "residual".to_string(),
                Work::Add { n: len(i) },
                vec![port("a", vec![v(*a)]), port("b", vec![v(*b)])],
            ),
            Op::Mul { a, b } => (
                "mul".to_string(),
                Work::Mul { n: len(i) },
                vec![port("a", vec![v(*a)]), port("b", vec![v(*b)])],
            ),
            Op::Silu { x } => (
                "silu".to_string(),
                Work::Silu { n: len(i) },
                vec![port("a", vec![v(*x)])],
            ),
            Op::ClampedSwiglu { gate, up } => (
                "clamped_swiglu".to_string(),
                Work::ClampedSwiglu { n: len(i) },
                vec![port("a", vec![v(*gate)]), port("b", vec![v(*up)])],
            ),
        };
        let at = if matches!(work, Work::Embed { .. }) {
            None
        } else {
            layer
        };
        guard[i] = when;
        let name = match when {
            Some(p) => format!("expert{}.{name}", p.expert),
            None => name,
        };
        out.push(Stage {
            name: qualify(at, &name),
            layer: at,
            work,
            inputs,
            outputs: vec![i],
            when,
        });
    }
    out.push(Stage {
        name: "argmax".into(),
        layer: None,
        work: Work::Argmax { n: len(g.ret) },
        inputs: vec![("a".into(), vec![Src::Value(g.ret)])],
        outputs: vec![],
        when: None,
    });
    out
}

fn qualify(layer: Option<usize>, name: &str) -> String {
    match layer {
        Some(l) => format!("layers.{l}.{name}"),
        None => name.to_string(),
    }
}

/// How many stages read IR value `v`.
fn readers(stages: &[Stage], v: usize) -> usize {
    stages
        .iter()
        .flat_map(|s| s.inputs.iter().flat_map(|(_, srcs)| srcs))
        .filter(|s| **s == Src::Value(v))
        .count()
}

/// Which stage makes each value. `verify` holds that each is made once, so
/// the map is the same whichever way it is built.
pub fn made_by(stages: &[Stage]) -> std::collections::HashMap<usize, usize> {
    (stages.iter().enumerate())
        .flat_map(|(i, s)| s.outputs.iter().map(move |&v| (v, i)))
        .collect()
}

/// Merge neighbouring stages where one kernel can do both's work with less
/// fabric traffic. The values every later stage reads are still produced.
pub fn fuse(stages: Vec<Stage>) -> Vec<Stage> {
    let read_once: Vec<bool> = stages
        .iter()
        .map(|s| s.outputs.first().is_some_and(|v| readers(&stages, *v) == 1))
        .collect();
    let mut out: Vec<Stage> = Vec::with_capacity(stages.len());
    let mut prev_read_once = false;
    for (s, once) in stages.into_iter().zip(read_once) {
        let was_once = std::mem::replace(&mut prev_read_once, once);
        // A SwiGLU's gate and up values, and their length together.
        let mut paired = None;
        let Some(prev) = out.last_mut() else {
            out.push(s);
            continue;
        };
        match (&mut prev.work, &s.work) {
            // Projections of the same input: one GEMV with the rows stacked.
            (
                Work::Gemv {
                    weights,
                    biases,
                    m,
                    n,
                    ..
                },
                Work::Gemv {
                    weights: w2,
                    biases: b2,
                    m: m2,
                    n: n2,
                    ..
                },
            ) if prev.inputs == s.inputs
                && n == n2
                && prev.layer == s.layer
                && prev.when == s.when
                && biases.is_empty() == b2.is_empty() =>
            {
                weights.extend(w2.iter().cloned());
                biases.extend(b2.iter().cloned());
                *m += m2;
                prev.outputs.extend(&s.outputs);
                prev.name = format!("{}_{}", prev.name, short(&s.name));
            }
            // RoPE of q then of k: one kernel over all their heads.
            (
                Work::Rope {
                    heads,
                    head,
                    theta,
                    pairs,
                    scaling,
                },
                Work::Rope {
                    heads: h2,
                    head: hd2,
                    theta: t2,
                    pairs: p2,
                    scaling: s2,
                },
            ) if head == hd2
                && prev.when == s.when
                && theta == t2
                && pairs == p2
                && scaling == s2
                // The second must not rotate what the first produces.
                && !s.inputs[1].1.iter().any(|src| matches!(src, Src::Value(v) if prev.outputs.contains(v))) =>
            {
                *heads += h2;
                let extra = s.inputs[1].1.clone();
                prev.inputs[1].1.extend(extra);
                prev.outputs.extend(&s.outputs);
            }
            // A residual add and the RMSNorm of its sum: one kernel, which
            // sends the sum on as well (the next residual add reads it).
            (Work::Add { n }, Work::RmsNorm { weight, n: n2, eps })
                if n == n2
                    && prev.when == s.when
                    && s.inputs[0].1 == [Src::Value(prev.outputs[0])] =>
            {
                *prev = Stage {
                    name: qualify(prev.layer, &fused_name(&prev.name, &s.name)),
                    layer: prev.layer,
                    work: Work::AddRmsNorm {
                        weight: weight.clone(),
                        n: *n,
                        eps: *eps,
                    },
                    inputs: prev.inputs.clone(),
                    outputs: vec![s.outputs[0], prev.outputs[0]],
                    when: prev.when,
                };
            }
            // silu(gate) · up, when nothing else reads silu(gate).
            (Work::Silu { n }, Work::Mul { n: n2 })
                if n == n2
                    && prev.when == s.when
                    && s.inputs[0].1 == [Src::Value(prev.outputs[0])]
                    && was_once =>
            {
                let gate = prev.inputs[0].1.clone();
                let up = s.inputs[1].1.clone();
                if let ([Src::Value(g)], [Src::Value(u)]) = (&gate[..], &up[..]) {
                    paired = Some(([*g, *u], 2 * n2));
                }
                // `layers.0.silu` → `layers.0.swiglu`, an expert's too.
                let at = prev.name.rsplit_once('.').map_or("", |(at, _)| at);
                *prev = Stage {
                    name: if at.is_empty() {
                        "swiglu".into()
                    } else {
                        format!("{at}.swiglu")
                    },
                    layer: s.layer,
                    work: Work::Swiglu { n: *n2 },
                    inputs: vec![("a".into(), gate), ("b".into(), up)],
                    outputs: s.outputs.clone(),
                    when: s.when,
                };
            }
            _ => out.push(s),
        }
        // A projection that makes exactly the gate and then the up values
        // (the fused w1 and w3) computes them side by side.
        if let Some((values, len)) = paired
            && let Some(Stage {
                work: Work::Gemv { m, halves, .. },
                ..
            }) = (out.iter_mut().rev()).find(|p| p.outputs == values)
            && *m == len
        {
            *halves = true;
        }
    }
    out
}

/// The last part of a stage's name: `layers.0.expert3.w1` → `w1`.
fn short(s: &str) -> &str {
    s.rsplit('.').next().unwrap_or(s)
}

/// `layers.0.residual` + `layers.1.attention_norm` → `residual_attention_norm`.
fn fused_name(a: &str, b: &str) -> String {
    format!("{}_{}", short(a), short(b))
}

/// Every value a stage reads is produced by an earlier stage (or is the
/// token, which only the embedding reads), and every produced value that is
/// read was produced once.
pub fn verify(stages: &[Stage], g: &Graph) -> Result<(), StageError> {
    let mut made = vec![false; g.insts.len()];
    for (i, s) in stages.iter().enumerate() {
        if let Some(p) = s.when
            && !made.get(p.route).is_some_and(|m| *m)
        {
            return Err(StageError::Unmade {
                stage: i,
                name: s.name.clone(),
                value: p.route,
                port: "its router's pick".into(),
            });
        }
        for (port, srcs) in &s.inputs {
            for src in srcs {
                if let Src::Value(v) | Src::ExpertWeights(v) = src {
                    let ok = *v < made.len()
                        && (made[*v]
                            || (matches!(s.work, Work::Embed { .. })
                                && matches!(g.insts[*v].op, Op::Token | Op::Position)));
                    if !ok {
                        return Err(StageError::Unmade {
                            stage: i,
                            name: s.name.clone(),
                            value: *v,
                            port: port.clone(),
                        });
                    }
                }
            }
        }
        for v in &s.outputs {
            if made[*v] {
                return Err(StageError::Remade {
                    stage: i,
                    name: s.name.clone(),
                    value: *v,
                });
            }
            made[*v] = true;
        }
    }
    for (i, s) in stages.iter().enumerate() {
        if let Work::Gemv {
            m, halves: true, ..
        } = s.work
            && !matches!(s.outputs[..], [a, b] if g.insts[a].len as u32 * 2 == m && g.insts[b].len as u32 * 2 == m)
        {
            return Err(StageError::Halves {
                stage: i,
                name: s.name.clone(),
            });
        }
    }
    if !stages
        .last()
        .is_some_and(|s| matches!(s.work, Work::Argmax { .. }))
    {
        return Err(StageError::NoArgmax);
    }
    Ok(())
}

/// What is wrong with a list of stages, and which stage.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StageError {
    #[error("stage {stage} `{name}` reads %{value} on `{port}` before any stage makes it")]
    Unmade {
        stage: usize,
        name: String,
        value: usize,
        port: String,
    },
    #[error("stage {stage} `{name}` makes %{value} again")]
    Remade {
        stage: usize,
        name: String,
        value: usize,
    },
    #[error(
        "stage {stage} `{name}` computes its outputs side by side, but they are not two halves"
    )]
    Halves { stage: usize, name: String },
    #[error("the last stage must pick the next token (argmax)")]
    NoArgmax,
}

impl fmt::Display for Src {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Src::Value(v) => write!(f, "%{v}"),
            Src::Pos => write!(f, "pos"),
            Src::One => write!(f, "1"),
            Src::ExpertWeights(v) => write!(f, "weights(%{v})"),
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} = {}", self.name, self.work.kernel())?;
        for (port, srcs) in &self.inputs {
            let s: Vec<String> = srcs.iter().map(Src::to_string).collect();
            write!(f, " {port}=[{}]", s.join(" "))?;
        }
        let o: Vec<String> = self.outputs.iter().map(|v| format!("%{v}")).collect();
        write!(f, " -> [{}]", o.join(" "))?;
        match self.when {
            Some(p) => write!(f, " when %{} picks {}", p.route, p.expert),
            None => Ok(()),
        }
    }
}
