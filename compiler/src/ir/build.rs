//! A model's decode step as a graph: Llama-style or GPT-2 from its
//! config, and seeded weights for every tensor it reads.

use super::{Graph, Inst, Op, RouteOrder};
use crate::model::{Config, Family, Tensor, Weights};
use std::collections::BTreeMap;

/// Declare a weight the graph reads; returns its name.
fn weight(g: &mut Graph, name: String, shape: Vec<usize>) -> String {
    g.weights.push((name.clone(), shape));
    name
}

/// Append an instruction; returns its value.
fn push(g: &mut Graph, op: Op, len: usize) -> usize {
    g.insts.push(Inst { op, len });
    g.insts.len() - 1
}

/// Layer `layer`'s attention of `q` over its cache, `k` and `v` appended
/// (gpt-oss's: with the layer's sinks and window).
fn attention(g: &mut Graph, c: &Config, [q, k, v]: [usize; 3], layer: usize) -> usize {
    let sinks = (c.family == Family::GptOss).then(|| {
        weight(
            g,
            format!("layers.{layer}.attention.sinks"),
            vec![c.n_heads],
        )
    });
    let op = Op::Attention {
        q,
        k,
        v,
        layer,
        heads: c.n_heads,
        kv_heads: c.n_kv_heads,
        head: c.head_size(),
        sinks,
        window: c.window(layer),
    };
    push(g, op, c.n_heads * c.head_size())
}

/// The logits: the classifier applied to the final norm's output.
fn classifier(g: &mut Graph, c: &Config, x: usize) -> usize {
    let out = weight(g, "output.weight".into(), vec![c.vocab_size, c.dim]);
    let op = Op::MatVec {
        weight: out,
        x,
        bias: None,
    };
    push(g, op, c.vocab_size)
}

/// Seeded uniform weights in [-0.5, 0.5) for every tensor `c`'s decode
/// step reads, under the names the front ends give them: a model to
/// test or time against when no checkpoint is at hand.
pub fn seeded_weights(c: &Config, seed: u64) -> Weights {
    let mut w = Weights {
        tensors: BTreeMap::new(),
        source: format!("seeded random weights (seed {seed})"),
    };
    let mut s = seed;
    for (name, shape) in &decode_step(c).weights {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / 16777216.0) - 0.5
            })
            .collect();
        w.tensors.insert(
            name.clone(),
            Tensor {
                shape: shape.clone(),
                data,
            },
        );
    }
    w
}

/// The decode step of the model.
pub fn decode_step(c: &Config) -> Graph {
    if c.family == crate::model::Family::Gpt2 {
        return gpt2_step(c);
    }
    let mut g = Graph::default();
    let (d, kv, hd, hs) = (c.dim, c.kv_dim(), c.hidden_dim, c.head_size());
    // gpt-oss: biased projections, queries of their own width, a clamped
    // SwiGLU and its router's top k before the softmax.
    let oss = c.family == Family::GptOss;
    let qd = c.n_heads * hs;
    let token = push(&mut g, Op::Token, 1);
    let table = weight(
        &mut g,
        "tok_embeddings.weight".into(),
        vec![c.vocab_size, d],
    );
    let mut x = push(&mut g, Op::Embed { table, token }, d);
    for l in 0..c.n_layers {
        let p = format!("layers.{l}");
        let w = weight(&mut g, format!("{p}.attention_norm.weight"), vec![d]);
        let h = push(
            &mut g,
            Op::RmsNorm {
                x,
                weight: w,
                eps: c.norm_eps,
            },
            d,
        );
        let proj = |g: &mut Graph, name: &str, rows: usize, input: usize, cols: usize| {
            let w = weight(g, format!("{p}.{name}.weight"), vec![rows, cols]);
            let bias = oss.then(|| weight(g, format!("{p}.{name}.bias"), vec![rows]));
            push(
                g,
                Op::MatVec {
                    weight: w,
                    x: input,
                    bias,
                },
                rows,
            )
        };
        let q = proj(&mut g, "attention.wq", qd, h, d);
        let k = proj(&mut g, "attention.wk", kv, h, d);
        let v = proj(&mut g, "attention.wv", kv, h, d);
        let rope_op = |x| Op::Rope {
            x,
            head: hs,
            theta: c.rope_theta,
            pairs: c.rope_pairs,
            scaling: c.rope_scaling,
        };
        let q = push(&mut g, rope_op(q), qd);
        let k = push(&mut g, rope_op(k), kv);
        let a = attention(&mut g, c, [q, k, v], l);
        let o = proj(&mut g, "attention.wo", d, a, qd);
        x = push(&mut g, Op::Add { a: x, b: o }, d);
        let w = weight(&mut g, format!("{p}.ffn_norm.weight"), vec![d]);
        let h = push(
            &mut g,
            Op::RmsNorm {
                x,
                weight: w,
                eps: c.norm_eps,
            },
            d,
        );
        let mlp = |g: &mut Graph, at: &str, h: usize| {
            let gate = proj(g, &format!("{at}.w1"), hd, h, d);
            let up = proj(g, &format!("{at}.w3"), hd, h, d);
            let m = if oss {
                push(g, Op::ClampedSwiglu { gate, up }, hd)
            } else {
                let s = push(g, Op::Silu { x: gate }, hd);
                push(g, Op::Mul { a: s, b: up }, hd)
            };
            proj(g, &format!("{at}.w2"), d, m, hd)
        };
        let f = match c.moe {
            None => mlp(&mut g, "feed_forward", h),
            Some(moe) => {
                // The router, every expert's MLP from its dispatch (only
                // the picked ones have values), and their weighted sum.
                let logits = proj(&mut g, "feed_forward.gate", moe.experts, h, d);
                let k = moe.per_token;
                let order = if oss {
                    RouteOrder::TopKThenSoftmax
                } else {
                    RouteOrder::SoftmaxThenTopK
                };
                let route = push(&mut g, Op::Route { logits, k, order }, 2 * k);
                let experts = (0..moe.experts)
                    .map(|expert| {
                        let op = Op::Dispatch {
                            x: h,
                            route,
                            expert,
                        };
                        let x = push(&mut g, op, d);
                        mlp(&mut g, &format!("feed_forward.experts.{expert}"), x)
                    })
                    .collect();
                push(&mut g, Op::Combine { route, experts }, d)
            }
        };
        x = push(&mut g, Op::Add { a: x, b: f }, d);
    }
    let w = weight(&mut g, "norm.weight".into(), vec![d]);
    let n = push(
        &mut g,
        Op::RmsNorm {
            x,
            weight: w,
            eps: c.norm_eps,
        },
        d,
    );
    g.ret = classifier(&mut g, c, n);
    g
}

/// The decode step of GPT-2: token and position embeddings, then pre-norm
/// blocks of LayerNorm, biased q/k/v, attention (no RoPE), biased output
/// projection, LayerNorm, biased fc, GELU, biased projection.
fn gpt2_step(c: &Config) -> Graph {
    let mut g = Graph::default();
    let (d, hd) = (c.dim, c.hidden_dim);
    let token = push(&mut g, Op::Token, 1);
    let position = push(&mut g, Op::Position, 1);
    let tok = weight(
        &mut g,
        "tok_embeddings.weight".into(),
        vec![c.vocab_size, d],
    );
    let pos = weight(&mut g, "pos_embeddings.weight".into(), vec![c.seq_len, d]);
    let te = push(&mut g, Op::Embed { table: tok, token }, d);
    let pe = push(
        &mut g,
        Op::Embed {
            table: pos,
            token: position,
        },
        d,
    );
    let mut x = push(&mut g, Op::Add { a: te, b: pe }, d);
    let norm = |g: &mut Graph, prefix: String, x: usize| {
        let w = weight(g, format!("{prefix}.weight"), vec![d]);
        let b = weight(g, format!("{prefix}.bias"), vec![d]);
        push(
            g,
            Op::LayerNorm {
                x,
                weight: w,
                bias: b,
                eps: c.norm_eps,
            },
            d,
        )
    };
    let linear = |g: &mut Graph, prefix: String, rows: usize, x: usize, cols: usize| {
        let w = weight(g, format!("{prefix}.weight"), vec![rows, cols]);
        let b = weight(g, format!("{prefix}.bias"), vec![rows]);
        push(
            g,
            Op::MatVec {
                weight: w,
                x,
                bias: Some(b),
            },
            rows,
        )
    };
    for l in 0..c.n_layers {
        let p = format!("layers.{l}");
        let h = norm(&mut g, format!("{p}.attention_norm"), x);
        let q = linear(&mut g, format!("{p}.attention.wq"), d, h, d);
        let k = linear(&mut g, format!("{p}.attention.wk"), d, h, d);
        let v = linear(&mut g, format!("{p}.attention.wv"), d, h, d);
        let a = attention(&mut g, c, [q, k, v], l);
        let o = linear(&mut g, format!("{p}.attention.wo"), d, a, d);
        x = push(&mut g, Op::Add { a: x, b: o }, d);
        let h = norm(&mut g, format!("{p}.ffn_norm"), x);
        let f = linear(&mut g, format!("{p}.feed_forward.w1"), hd, h, d);
        let f = push(&mut g, Op::Gelu { x: f }, hd);
        let f = linear(&mut g, format!("{p}.feed_forward.w2"), d, f, hd);
        x = push(&mut g, Op::Add { a: x, b: f }, d);
    }
    let n = norm(&mut g, "norm".into(), x);
    g.ret = classifier(&mut g, c, n);
    g
}
