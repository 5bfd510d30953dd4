//! The graph's verifier: what every pass may assume of a graph.

use super::{Graph, Op};

/// What is wrong with a graph, and where.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GraphError {
    #[error("%{inst}: {message}")]
    Inst { inst: usize, message: String },
    #[error("returns %{ret}, which is not defined")]
    Return { ret: usize },
}

/// Checks, naming the instruction: operands are defined before use; each
/// op's operand and result lengths agree with its weights' shapes (matvec
/// `[len, x]`, embed `[vocab, len]` from a token, rmsnorm `[len]`); rope
/// rotates whole even heads; attention's heads divide evenly and each layer
/// has one; add and mul take equal lengths; a route picks 1..=experts and
/// returns two values a pick; dispatch and combine read a route, dispatch
/// to one of its experts, combine one output per expert; the returned
/// value exists.
pub fn verify(g: &Graph) -> Result<(), GraphError> {
    let shapes: std::collections::BTreeMap<&str, &Vec<usize>> =
        g.weights.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let mut layers = std::collections::BTreeSet::new();
    for (i, inst) in g.insts.iter().enumerate() {
        let e = |message: String| GraphError::Inst { inst: i, message };
        let len = |v: usize| -> Result<usize, GraphError> {
            if v < i {
                Ok(g.insts[v].len)
            } else {
                Err(e(format!("uses %{v} before it is defined")))
            }
        };
        let weight = |name: &str, want: Vec<usize>| -> Result<(), GraphError> {
            match shapes.get(name) {
                None => Err(e(format!("weight `{name}` is not declared"))),
                Some(s) if **s != want => Err(e(format!(
                    "weight `{name}` is {s:?}, the operation needs {want:?}"
                ))),
                _ => Ok(()),
            }
        };
        // The experts a `route` operand chooses among.
        let routed = |r: usize| -> Result<usize, GraphError> {
            len(r)?;
            match g.insts[r].op {
                Op::Route { logits, .. } => Ok(g.insts[logits].len),
                _ => Err(e(format!("%{r} is not a route"))),
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
                sinks,
                window,
            } => {
                if let Some(w) = sinks {
                    weight(w, vec![*heads])?;
                }
                if *window == Some(0) {
                    return Err(e("a sliding window of 0 positions".into()));
                }
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
            Op::ClampedSwiglu { gate, up } => {
                same(len(*gate)?, len(*up)?)?;
                same(len(*gate)?, inst.len)?;
            }
            Op::Route { logits, k, .. } => {
                if *k == 0 || *k > len(*logits)? {
                    return Err(e(format!(
                        "route picks 1..={} experts, not {k}",
                        len(*logits)?
                    )));
                }
                same(inst.len, 2 * k)?;
            }
            Op::Dispatch { x, route, expert } => {
                same(len(*x)?, inst.len)?;
                let experts = routed(*route)?;
                if *expert >= experts {
                    return Err(e(format!(
                        "dispatch to expert {expert} of a router over {experts}"
                    )));
                }
            }
            Op::Combine { route, experts } => {
                let n = routed(*route)?;
                if experts.len() != n {
                    return Err(e(format!(
                        "combine takes one output per expert: {n}, not {}",
                        experts.len()
                    )));
                }
                for y in experts {
                    same(len(*y)?, inst.len)?;
                }
            }
        }
    }
    if g.ret >= g.insts.len() {
        return Err(GraphError::Return { ret: g.ret });
    }
    Ok(())
}
