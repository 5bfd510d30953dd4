//! The graph run on the CPU, one value after another, with the shared
//! arithmetic of [`crate::math`]: what the compiled program must compute.

use super::{Graph, Op};
use crate::math::{KvCache, attend, gelu, layernorm, matvec, rmsnorm, rope, silu};
use crate::model::{ModelError, Weights};

/// Why a graph could not be interpreted on the given weights.
#[derive(Debug, thiserror::Error)]
pub enum InterpretError {
    /// Only an unverified graph reads a weight it does not declare.
    #[error("weight `{0}` is not declared by the graph")]
    Undeclared(String),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Run the step on the CPU with the reference model's arithmetic; returns
/// the returned value (the logits). The graph must have been verified.
pub fn interpret(
    g: &Graph,
    w: &Weights,
    token: u32,
    pos: usize,
    cache: &mut KvCache,
) -> Result<Vec<f32>, InterpretError> {
    let shape = |name: &str| {
        g.weights
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| InterpretError::Undeclared(name.to_string()))
    };
    let tensor = |name: &str| Ok::<_, InterpretError>(w.get(name, &shape(name)?)?);
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
