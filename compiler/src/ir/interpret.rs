//! The graph run on the CPU, one value after another, with the shared
//! arithmetic of [`crate::math`]: what the compiled program must compute.

use super::{Graph, Inst, Op, RouteOrder};
use crate::math::{
    KvCache, attend, attend_sinks, combine, gelu, layernorm, matvec, rmsnorm, rope, route, silu,
};
use crate::model::{ModelError, Tensor, Weights};

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
    // `None`: no value (an expert the router did not pick, and what is
    // computed from it).
    let mut vals: Vec<Option<Vec<f32>>> = Vec::with_capacity(g.insts.len());
    for inst in &g.insts {
        let missing = inst.op.operands().iter().any(|v| vals[*v].is_none());
        let v = if missing && !matches!(inst.op, Op::Combine { .. }) {
            None
        } else {
            let at = Step {
                vals: &vals,
                token,
                pos,
            };
            at.run(inst, &tensor, cache)?
        };
        vals.push(v);
    }
    Ok(vals.swap_remove(g.ret).unwrap_or_default())
}

/// The values made so far, and the step's token and position.
struct Step<'a> {
    vals: &'a [Option<Vec<f32>>],
    token: u32,
    pos: usize,
}

impl Step<'_> {
    fn val(&self, v: usize) -> &[f32] {
        self.vals[v].as_deref().unwrap_or(&[])
    }

    /// `inst`'s value (`None` for a dispatch to an expert not picked).
    fn run<'w>(
        &self,
        inst: &Inst,
        tensor: &dyn Fn(&str) -> Result<&'w Tensor, InterpretError>,
        cache: &mut KvCache,
    ) -> Result<Option<Vec<f32>>, InterpretError> {
        let (pos, val) = (self.pos, |v: &usize| self.val(*v));
        Ok(Some(match &inst.op {
            Op::Token => vec![self.token as f32],
            Op::Position => vec![pos as f32],
            Op::Embed { table, token: id } => tensor(table)?.row(val(id)[0] as usize).to_vec(),
            Op::LayerNorm {
                x,
                weight,
                bias,
                eps,
            } => layernorm(val(x), &tensor(weight)?.data, &tensor(bias)?.data, *eps),
            Op::Gelu { x } => val(x).iter().map(|v| gelu(*v)).collect(),
            Op::RmsNorm { x, weight, eps } => rmsnorm(val(x), &tensor(weight)?.data, *eps),
            Op::MatVec { weight, x, bias } => {
                let mut y = matvec(tensor(weight)?, val(x));
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
                let mut r = val(x).to_vec();
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
                sinks,
                window,
            } => {
                cache.keys[*layer].push(val(k).to_vec());
                cache.values[*layer].push(val(v).to_vec());
                let (keys, values) = (&cache.keys[*layer], &cache.values[*layer]);
                match sinks {
                    Some(s) => attend_sinks(
                        val(q),
                        keys,
                        values,
                        (*heads, *kv_heads, *head),
                        &tensor(s)?.data,
                        *window,
                    ),
                    None => {
                        let first = window.map_or(0, |w| keys.len().saturating_sub(w));
                        attend(
                            val(q),
                            &keys[first..],
                            &values[first..],
                            *heads,
                            *kv_heads,
                            *head,
                        )
                    }
                }
            }
            Op::ClampedSwiglu { gate, up } => val(gate)
                .iter()
                .zip(val(up))
                .map(|(g, u)| crate::gpt_oss::clamped_swiglu(*g, *u))
                .collect(),
            Op::Add { a, b } => val(a).iter().zip(val(b)).map(|(x, y)| x + y).collect(),
            Op::Mul { a, b } => val(a).iter().zip(val(b)).map(|(x, y)| x * y).collect(),
            Op::Silu { x } => val(x).iter().map(|v| silu(*v)).collect(),
            Op::Route { logits, k, order } => {
                let picked = match order {
                    RouteOrder::SoftmaxThenTopK => route(val(logits), *k),
                    RouteOrder::TopKThenSoftmax => crate::gpt_oss::top_k_softmax(val(logits), *k),
                };
                let ids = picked.iter().map(|(e, _)| *e as f32);
                ids.chain(picked.iter().map(|(_, w)| *w)).collect()
            }
            Op::Dispatch { x, route, expert } => {
                if !picks(val(route)).iter().any(|(e, _)| e == expert) {
                    return Ok(None);
                }
                val(x).to_vec()
            }
            Op::Combine { route, experts } => {
                combine(&picks(val(route)), inst.len, |e| val(&experts[e]).to_vec())
            }
        }))
    }
}

/// A route's value as (expert, weight) pairs.
pub fn picks(route: &[f32]) -> Vec<(usize, f32)> {
    let k = route.len() / 2;
    (0..k).map(|j| (route[j] as usize, route[k + j])).collect()
}
