//! The graph IR: one decode step of a decoder-only transformer as a list of
//! typed tensor operations, in the style of Cranelift's IR. It prints, it
//! parses back to the same graph, and [`verify`] checks it; every pass will
//! be a function from a graph to a graph, verified between passes.
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

use crate::model::{Config, RopePairs, RopeScaling, Weights};
use crate::reference::{KvCache, attend, gelu, layernorm, matvec, rmsnorm, rope, silu};
use std::fmt::{self, Write};

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
    Attention {
        q: usize,
        k: usize,
        v: usize,
        layer: usize,
        heads: usize,
        kv_heads: usize,
        head: usize,
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

/// Layer `layer`'s attention of `q` over its cache, `k` and `v` appended.
fn attention(g: &mut Graph, c: &Config, [q, k, v]: [usize; 3], layer: usize) -> usize {
    let op = Op::Attention {
        q,
        k,
        v,
        layer,
        heads: c.n_heads,
        kv_heads: c.n_kv_heads,
        head: c.head_size(),
    };
    push(g, op, c.dim)
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

/// The decode step of the model.
pub fn decode_step(c: &Config) -> Graph {
    if c.family == crate::model::Family::Gpt2 {
        return gpt2_step(c);
    }
    let mut g = Graph::default();
    let (d, kv, hd, hs) = (c.dim, c.kv_dim(), c.hidden_dim, c.head_size());
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
            push(
                g,
                Op::MatVec {
                    weight: w,
                    x: input,
                    bias: None,
                },
                rows,
            )
        };
        let q = proj(&mut g, "attention.wq", d, h, d);
        let k = proj(&mut g, "attention.wk", kv, h, d);
        let v = proj(&mut g, "attention.wv", kv, h, d);
        let rope_op = |x| Op::Rope {
            x,
            head: hs,
            theta: c.rope_theta,
            pairs: c.rope_pairs,
            scaling: c.rope_scaling,
        };
        let q = push(&mut g, rope_op(q), d);
        let k = push(&mut g, rope_op(k), kv);
        let a = attention(&mut g, c, [q, k, v], l);
        let o = proj(&mut g, "attention.wo", d, a, d);
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
        let gate = proj(&mut g, "feed_forward.w1", hd, h, d);
        let up = proj(&mut g, "feed_forward.w3", hd, h, d);
        let s = push(&mut g, Op::Silu { x: gate }, hd);
        let m = push(&mut g, Op::Mul { a: s, b: up }, hd);
        let f = proj(&mut g, "feed_forward.w2", d, m, hd);
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

// ---------------------------------------------------------------- printing

fn pairs_name(p: RopePairs) -> &'static str {
    match p {
        RopePairs::Adjacent => "adjacent",
        RopePairs::HalfSplit => "half",
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (name, shape) in &self.weights {
            writeln!(f, "weight {name} {shape:?}")?;
        }
        for (i, inst) in self.insts.iter().enumerate() {
            let body = match &inst.op {
                Op::Token => "token".to_string(),
                Op::Position => "position".to_string(),
                Op::LayerNorm {
                    x,
                    weight,
                    bias,
                    eps,
                } => format!("layernorm %{x}, {weight}, {bias} eps={eps:?}"),
                Op::Gelu { x } => format!("gelu %{x}"),
                Op::Embed { table, token } => format!("embed {table}, %{token}"),
                Op::RmsNorm { x, weight, eps } => format!("rmsnorm %{x}, {weight} eps={eps:?}"),
                Op::MatVec { weight, x, bias } => match bias {
                    None => format!("matvec {weight}, %{x}"),
                    Some(b) => format!("matvec {weight}, %{x} bias={b}"),
                },
                Op::Rope {
                    x,
                    head,
                    theta,
                    pairs,
                    scaling,
                } => format!(
                    "rope %{x} head={head} theta={theta:?} pairs={}{}",
                    pairs_name(*pairs),
                    match scaling {
                        None => String::new(),
                        Some(RopeScaling::Linear { factor }) =>
                            format!(" scaling=linear:{factor:?}"),
                        Some(RopeScaling::Llama3 {
                            factor,
                            low_freq_factor,
                            high_freq_factor,
                            original,
                        }) => format!(
                            " scaling=llama3:{factor:?}:{low_freq_factor:?}:{high_freq_factor:?}:{original:?}"
                        ),
                    }
                ),
                Op::Attention {
                    q,
                    k,
                    v,
                    layer,
                    heads,
                    kv_heads,
                    head,
                } => {
                    format!(
                        "attention %{q}, %{k}, %{v} layer={layer} heads={heads} kv_heads={kv_heads} head={head}"
                    )
                }
                Op::Add { a, b } => format!("add %{a}, %{b}"),
                Op::Mul { a, b } => format!("mul %{a}, %{b}"),
                Op::Silu { x } => format!("silu %{x}"),
            };
            let ty = if matches!(inst.op, Op::Token | Op::Position) {
                "i32"
            } else {
                "f32"
            };
            writeln!(f, "%{i} = {body} : {ty}[{}]", inst.len)?;
        }
        writeln!(f, "return %{}", self.ret)
    }
}

// ----------------------------------------------------------------- parsing

/// `linear:F` or `llama3:F:LOW:HIGH:ORIGINAL`.
fn parse_scaling(v: &str) -> Result<RopeScaling, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let nums: Vec<f32> = parts[1..]
        .iter()
        .map(|p| p.parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("`rope`: scaling `{v}` has a part that is not a number"))?;
    match (parts[0], nums.as_slice()) {
        ("linear", [factor]) => Ok(RopeScaling::Linear { factor: *factor }),
        ("llama3", [factor, lo, hi, original]) => Ok(RopeScaling::Llama3 {
            factor: *factor,
            low_freq_factor: *lo,
            high_freq_factor: *hi,
            original: *original,
        }),
        _ => Err(format!(
            "`rope`: scaling must be linear:F or llama3:F:LOW:HIGH:ORIGINAL, not `{v}`"
        )),
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct IrError {
    pub file: String,
    /// 1-based; 0 for the whole graph.
    pub line: usize,
    pub message: String,
}

/// Parse the text form; `file` names it in errors. The result is verified.
pub fn parse(text: &str, file: &str) -> Result<Graph, IrError> {
    let mut g = Graph {
        weights: Vec::new(),
        insts: Vec::new(),
        ret: usize::MAX,
    };
    for (no, line) in text.lines().enumerate() {
        let err = |m: String| IrError {
            file: file.into(),
            line: no + 1,
            message: m,
        };
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("weight ") {
            let (name, shape) = rest
                .split_once(' ')
                .ok_or_else(|| err("expected `weight NAME [dims]`".into()))?;
            let dims = shape
                .trim()
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .ok_or_else(|| err(format!("expected [dims], found `{shape}`")))?;
            let dims = dims
                .split(',')
                .map(|d| {
                    d.trim()
                        .parse::<usize>()
                        .map_err(|_| err(format!("bad dimension `{d}`")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            g.weights.push((name.to_string(), dims));
        } else if let Some(rest) = line.strip_prefix("return ") {
            g.ret = value(rest.trim())
                .ok_or_else(|| err(format!("expected a value like %3, found `{rest}`")))?;
        } else {
            let (lhs, rhs) = line.split_once(" = ").ok_or_else(|| {
                err("expected `%N = op ... : f32[len]`, `weight` or `return`".into())
            })?;
            let i = value(lhs.trim())
                .ok_or_else(|| err(format!("expected a value like %3, found `{lhs}`")))?;
            if i != g.insts.len() {
                return Err(err(format!(
                    "%{i} defined where %{} is next; values are numbered in order",
                    g.insts.len()
                )));
            }
            let (body, ty) = rhs
                .rsplit_once(" : ")
                .ok_or_else(|| err("expected `: f32[len]` after the operation".into()))?;
            let len = ty
                .trim()
                .split_once('[')
                .and_then(|(_, l)| l.strip_suffix(']'))
                .and_then(|l| l.parse().ok())
                .ok_or_else(|| err(format!("expected a type like f32[64], found `{ty}`")))?;
            g.insts.push(Inst {
                op: parse_op(body).map_err(err)?,
                len,
            });
        }
    }
    if g.ret == usize::MAX {
        return Err(IrError {
            file: file.into(),
            line: 0,
            message: "no `return`".into(),
        });
    }
    verify(&g).map_err(|e| IrError {
        file: file.into(),
        line: 0,
        message: e,
    })?;
    Ok(g)
}

fn value(s: &str) -> Option<usize> {
    s.strip_prefix('%')?.parse().ok()
}

fn parse_op(body: &str) -> Result<Op, String> {
    let (name, rest) = body.split_once(' ').unwrap_or((body, ""));
    let words: Vec<&str> = rest.split_whitespace().collect();
    let mut operands: Vec<String> = Vec::new();
    let mut attrs: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for w in &words {
        match w.split_once('=') {
            Some((k, v)) => {
                attrs.insert(k, v);
            }
            None => operands.push(w.trim_end_matches(',').to_string()),
        }
    }
    let val = |i: usize| -> Result<usize, String> {
        operands
            .get(i)
            .and_then(|o| value(o))
            .ok_or_else(|| format!("`{name}`: operand {} should be a value like %3", i + 1))
    };
    let word = |i: usize| -> Result<String, String> {
        operands
            .get(i)
            .cloned()
            .ok_or_else(|| format!("`{name}`: missing operand {}", i + 1))
    };
    let attr = |k: &str| -> Result<&str, String> {
        attrs
            .get(k)
            .copied()
            .ok_or_else(|| format!("`{name}`: missing `{k}=`"))
    };
    let num = |k: &str| -> Result<usize, String> {
        attr(k)?
            .parse()
            .map_err(|_| format!("`{name}`: `{k}` must be an integer"))
    };
    let float = |k: &str| -> Result<f32, String> {
        attr(k)?
            .parse()
            .map_err(|_| format!("`{name}`: `{k}` must be a number"))
    };
    Ok(match name {
        "token" => Op::Token,
        "position" => Op::Position,
        "layernorm" => Op::LayerNorm {
            x: val(0)?,
            weight: word(1)?,
            bias: word(2)?,
            eps: float("eps")?,
        },
        "gelu" => Op::Gelu { x: val(0)? },
        "embed" => Op::Embed {
            table: word(0)?,
            token: val(1)?,
        },
        "rmsnorm" => Op::RmsNorm {
            x: val(0)?,
            weight: word(1)?,
            eps: float("eps")?,
        },
        "matvec" => Op::MatVec {
            weight: word(0)?,
            x: val(1)?,
            bias: attrs.get("bias").map(|b| b.to_string()),
        },
        "rope" => Op::Rope {
            x: val(0)?,
            head: num("head")?,
            theta: float("theta")?,
            pairs: match attr("pairs")? {
                "adjacent" => RopePairs::Adjacent,
                "half" => RopePairs::HalfSplit,
                other => {
                    return Err(format!(
                        "`rope`: pairs must be adjacent or half, not `{other}`"
                    ));
                }
            },
            scaling: match attrs.get("scaling") {
                None => None,
                Some(v) => Some(parse_scaling(v)?),
            },
        },
        "attention" => Op::Attention {
            q: val(0)?,
            k: val(1)?,
            v: val(2)?,
            layer: num("layer")?,
            heads: num("heads")?,
            kv_heads: num("kv_heads")?,
            head: num("head")?,
        },
        "add" => Op::Add {
            a: val(0)?,
            b: val(1)?,
        },
        "mul" => Op::Mul {
            a: val(0)?,
            b: val(1)?,
        },
        "silu" => Op::Silu { x: val(0)? },
        other => return Err(format!("unknown operation `{other}`")),
    })
}

// --------------------------------------------------------------- verifying

/// Checks, naming the instruction: operands are defined before use; each
/// op's operand and result lengths agree with its weights' shapes (matvec
/// `[len, x]`, embed `[vocab, len]` from a token, rmsnorm `[len]`); rope
/// rotates whole even heads; attention's heads divide evenly and each layer
/// has one; add and mul take equal lengths; the returned value exists.
pub fn verify(g: &Graph) -> Result<(), String> {
    let shapes: std::collections::BTreeMap<&str, &Vec<usize>> =
        g.weights.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let mut layers = std::collections::BTreeSet::new();
    for (i, inst) in g.insts.iter().enumerate() {
        let e = |m: String| format!("%{i}: {m}");
        let len = |v: usize| -> Result<usize, String> {
            if v < i {
                Ok(g.insts[v].len)
            } else {
                Err(e(format!("uses %{v} before it is defined")))
            }
        };
        let weight = |name: &str, want: Vec<usize>| -> Result<(), String> {
            match shapes.get(name) {
                None => Err(e(format!("weight `{name}` is not declared"))),
                Some(s) if **s != want => Err(e(format!(
                    "weight `{name}` is {s:?}, the operation needs {want:?}"
                ))),
                _ => Ok(()),
            }
        };
        let same = |a: usize, b: usize| {
            if a == b {
                Ok(())
            } else {
                Err(e(format!("lengths {a} and {b} differ")))
            }
        };
        match &inst.op {
            Op::Token | Op::Position => same(inst.len, 1)?,
            Op::Embed { table, token } => {
                let id = g.insts.get(*token).map(|t| &t.op);
                if !matches!(id, Some(Op::Token | Op::Position)) || *token >= i {
                    return Err(e(format!(
                        "embed takes the token or the position, and %{token} is neither"
                    )));
                }
                let vocab = shapes.get(table.as_str()).map_or(0, |s| s[0]);
                weight(table, vec![vocab, inst.len])?;
            }
            Op::RmsNorm { x, weight: w, .. } => {
                same(len(*x)?, inst.len)?;
                weight(w, vec![inst.len])?;
            }
            Op::MatVec { weight: w, x, bias } => {
                weight(w, vec![inst.len, len(*x)?])?;
                if let Some(b) = bias {
                    weight(b, vec![inst.len])?;
                }
            }
            Op::LayerNorm {
                x, weight: w, bias, ..
            } => {
                same(len(*x)?, inst.len)?;
                weight(w, vec![inst.len])?;
                weight(bias, vec![inst.len])?;
            }
            Op::Gelu { x } => same(len(*x)?, inst.len)?,
            Op::Rope { x, head, .. } => {
                same(len(*x)?, inst.len)?;
                if *head == 0 || head % 2 != 0 || inst.len % head != 0 {
                    return Err(e(format!(
                        "rope needs whole heads of an even size; {} elements in heads of {head}",
                        inst.len
                    )));
                }
            }
            Op::Attention {
                q,
                k,
                v,
                layer,
                heads,
                kv_heads,
                head,
            } => {
                same(len(*q)?, heads * head)?;
                same(len(*k)?, kv_heads * head)?;
                same(len(*v)?, kv_heads * head)?;
                same(inst.len, heads * head)?;
                if *kv_heads == 0 || heads % kv_heads != 0 {
                    return Err(e(format!(
                        "{heads} heads do not share {kv_heads} KV heads evenly"
                    )));
                }
                if !layers.insert(*layer) {
                    return Err(e(format!("layer {layer}'s KV cache is written twice")));
                }
            }
            Op::Add { a, b } | Op::Mul { a, b } => {
                same(len(*a)?, len(*b)?)?;
                same(len(*a)?, inst.len)?;
            }
            Op::Silu { x } => same(len(*x)?, inst.len)?,
        }
    }
    if g.ret >= g.insts.len() {
        return Err(format!("returns %{}, which is not defined", g.ret));
    }
    Ok(())
}

// ------------------------------------------------------------- interpreting

/// Run the step on the CPU with the reference model's arithmetic; returns
/// the returned value (the logits). The graph must have been verified.
pub fn interpret(
    g: &Graph,
    w: &Weights,
    token: u32,
    pos: usize,
    cache: &mut KvCache,
) -> Result<Vec<f32>, String> {
    let shape = |name: &str| {
        g.weights
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .ok_or(format!("weight `{name}` is not declared"))
    };
    let tensor = |name: &str| w.get(name, &shape(name)?).map_err(|e| e.to_string());
    let mut vals: Vec<Vec<f32>> = Vec::with_capacity(g.insts.len());
    for inst in &g.insts {
        let v = match &inst.op {
            Op::Token => vec![token as f32],
            Op::Position => vec![pos as f32],
            Op::Embed { table, token: id } => tensor(table)?.row(vals[*id][0] as usize).to_vec(),
            Op::LayerNorm {
                x,
                weight,
                bias,
                eps,
            } => layernorm(&vals[*x], &tensor(weight)?.data, &tensor(bias)?.data, *eps),
            Op::Gelu { x } => vals[*x].iter().map(|v| gelu(*v)).collect(),
            Op::RmsNorm { x, weight, eps } => rmsnorm(&vals[*x], &tensor(weight)?.data, *eps),
            Op::MatVec { weight, x, bias } => {
                let mut y = matvec(tensor(weight)?, &vals[*x]);
                if let Some(b) = bias {
                    y.iter_mut()
                        .zip(&tensor(b)?.data)
                        .for_each(|(y, b)| *y += b);
                }
                y
            }
            Op::Rope {
                x,
                head,
                theta,
                pairs,
                scaling,
            } => {
                let mut r = vals[*x].clone();
                rope(&mut r, pos, *head, *theta, *pairs, *scaling);
                r
            }
            Op::Attention {
                q,
                k,
                v,
                layer,
                heads,
                kv_heads,
                head,
            } => {
                cache.keys[*layer].push(vals[*k].clone());
                cache.values[*layer].push(vals[*v].clone());
                attend(
                    &vals[*q],
                    &cache.keys[*layer],
                    &cache.values[*layer],
                    *heads,
                    *kv_heads,
                    *head,
                )
            }
            Op::Add { a, b } => vals[*a].iter().zip(&vals[*b]).map(|(x, y)| x + y).collect(),
            Op::Mul { a, b } => vals[*a].iter().zip(&vals[*b]).map(|(x, y)| x * y).collect(),
            Op::Silu { x } => vals[*x].iter().map(|v| silu(*v)).collect(),
        };
        vals.push(v);
    }
    Ok(vals.swap_remove(g.ret))
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
