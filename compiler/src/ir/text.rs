//! The graph's text form: [`Graph`]'s `Display` prints it, [`parse`]
//! reads it back (and verifies it), naming the file and line of a problem.

use super::{Graph, Inst, Op, RouteOrder, verify};
use crate::model::{RopePairs, RopeScaling};
use std::fmt;
use std::fmt::Write as _;

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
                        Some(RopeScaling::Yarn {
                            factor,
                            beta_fast,
                            beta_slow,
                            original,
                            truncate,
                        }) => format!(
                            " scaling=yarn:{factor:?}:{beta_fast:?}:{beta_slow:?}:{original:?}:{}",
                            u8::from(*truncate)
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
                    sinks,
                    window,
                } => {
                    let mut s = format!(
                        "attention %{q}, %{k}, %{v} layer={layer} heads={heads} kv_heads={kv_heads} head={head}"
                    );
                    if let Some(w) = sinks {
                        write!(s, " sinks={w}").unwrap();
                    }
                    if let Some(w) = window {
                        write!(s, " window={w}").unwrap();
                    }
                    s
                }
                Op::Add { a, b } => format!("add %{a}, %{b}"),
                Op::Mul { a, b } => format!("mul %{a}, %{b}"),
                Op::Silu { x } => format!("silu %{x}"),
                Op::Route { logits, k, order } => {
                    format!("route %{logits} k={k} order={}", order.name())
                }
                Op::ClampedSwiglu { gate, up } => format!("clamped_swiglu %{gate}, %{up}"),
                Op::Dispatch { x, route, expert } => {
                    format!("dispatch %{x}, %{route} expert={expert}")
                }
                Op::Combine { route, experts } => {
                    let ys: Vec<String> = experts.iter().map(|e| format!("%{e}")).collect();
                    format!("combine %{route}, {}", ys.join(", "))
                }
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

/// `linear:F`, `llama3:F:LOW:HIGH:ORIGINAL` or
/// `yarn:F:FAST:SLOW:ORIGINAL:TRUNCATE` (TRUNCATE 0 or 1).
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
        ("yarn", [factor, fast, slow, original, truncate])
            if *truncate == 0.0 || *truncate == 1.0 =>
        {
            Ok(RopeScaling::Yarn {
                factor: *factor,
                beta_fast: *fast,
                beta_slow: *slow,
                original: *original,
                truncate: *truncate == 1.0,
            })
        }
        _ => Err(format!(
            "`rope`: scaling must be linear:F, llama3:F:LOW:HIGH:ORIGINAL or yarn:F:FAST:SLOW:ORIGINAL:0|1, not `{v}`"
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
        message: e.to_string(),
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
            sinks: attrs.get("sinks").map(|s| s.to_string()),
            window: match attrs.get("window") {
                None => None,
                Some(_) => Some(num("window")?),
            },
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
        "route" => Op::Route {
            logits: val(0)?,
            k: num("k")?,
            order: match attr("order")? {
                "softmax_top" => RouteOrder::SoftmaxThenTopK,
                "top_softmax" => RouteOrder::TopKThenSoftmax,
                other => {
                    return Err(format!(
                        "`route`: order must be softmax_top or top_softmax, not `{other}`"
                    ));
                }
            },
        },
        "clamped_swiglu" => Op::ClampedSwiglu {
            gate: val(0)?,
            up: val(1)?,
        },
        "dispatch" => Op::Dispatch {
            x: val(0)?,
            route: val(1)?,
            expert: num("expert")?,
        },
        "combine" => Op::Combine {
            route: val(0)?,
            experts: (1..operands.len().max(1))
                .map(val)
                .collect::<Result<_, _>>()?,
        },
        other => return Err(format!("unknown operation `{other}`")),
    })
}
