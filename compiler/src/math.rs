//! The arithmetic every CPU forward pass shares, in f32 as the textbook
//! writes it: the Llama reference, GPT-2 and the IR interpreter call these
//! same functions, so the three agree bit for bit by construction. A leaf:
//! it knows the model's config and tensors, nothing else of the compiler.

use crate::model::{Config, ModelError, RopePairs, RopeScaling, Tensor, Weights};

/// `W·x` for `W` of shape `[out, in]`.
pub fn matvec(w: &Tensor, x: &[f32]) -> Vec<f32> {
    (0..w.shape[0])
        .map(|i| w.row(i).iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

/// `W·x + b` (GPT-2's and gpt-oss's projections).
pub struct Linear {
    pub w: Tensor,
    pub b: Vec<f32>,
}

impl Linear {
    /// `{prefix}.weight` of `[rows, cols]` and `{prefix}.bias` of `[rows]`.
    pub fn load(w: &Weights, prefix: &str, rows: usize, cols: usize) -> Result<Linear, ModelError> {
        Ok(Linear {
            w: w.get(&format!("{prefix}.weight"), &[rows, cols])?.clone(),
            b: w.get(&format!("{prefix}.bias"), &[rows])?.data.clone(),
        })
    }
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut y = matvec(&self.w, x);
        y.iter_mut().zip(&self.b).for_each(|(y, b)| *y += b);
        y
    }
}

pub fn rmsnorm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let ss = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32 + eps;
    let inv = 1.0 / ss.sqrt();
    x.iter().zip(weight).map(|(v, w)| w * (v * inv)).collect()
}

pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// A mixture of experts' routing as transformers' Mixtral does it: the
/// softmax over every expert's logit, the `k` largest probabilities kept
/// (largest first; where two tie, the lower expert, since `torch.topk`
/// promises no order) and renormalized to sum to 1. Returns the picks
/// with their weights.
pub fn route(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut probs = logits.to_vec();
    softmax(&mut probs);
    let order = top_k(&probs, k);
    let sum: f32 = order.iter().map(|e| probs[*e]).sum();
    order.into_iter().map(|e| (e, probs[e] / sum)).collect()
}

/// The indices of the `k` largest values, largest first; where two tie,
/// the lower index (the routers' order: `torch.topk` promises none).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|a, b| values[*b].total_cmp(&values[*a]).then(a.cmp(b)));
    order.truncate(k);
    order
}

/// `Σ weight · output` over `picked` (expert, weight) in increasing
/// expert index, from zero, as transformers' loop over the experts adds
/// them; `output(e)` is expert `e`'s output.
pub fn combine(
    picked: &[(usize, f32)],
    len: usize,
    mut output: impl FnMut(usize) -> Vec<f32>,
) -> Vec<f32> {
    let mut picked = picked.to_vec();
    picked.sort_by_key(|(e, _)| *e);
    let mut y = vec![0.0f32; len];
    for (e, weight) in picked {
        y.iter_mut()
            .zip(output(e))
            .for_each(|(a, b)| *a += b * weight);
    }
    y
}

/// Rotate pair `i` of each head by `pos · θ^(−2i/head_size)` (its frequency
/// scaled for long contexts where the model says so); the pairs are
/// `(2i, 2i+1)` or `(i, i + head_size/2)`.
pub fn rope(
    x: &mut [f32],
    pos: usize,
    head_size: usize,
    theta: f32,
    pairs: RopePairs,
    scaling: Option<RopeScaling>,
) {
    let freqs = wafer_kernels::rope::inv_freq(theta, head_size as u32, scaling);
    // YaRN scales cos and sin (exactly 1 otherwise).
    let m = wafer_kernels::rope::attention_factor(scaling);
    for head in x.chunks_exact_mut(head_size) {
        for (i, freq) in freqs.iter().enumerate() {
            let (c, s) = (
                (pos as f32 * *freq).cos() * m,
                (pos as f32 * *freq).sin() * m,
            );
            let (ia, ib) = match pairs {
                RopePairs::Adjacent => (2 * i, 2 * i + 1),
                RopePairs::HalfSplit => (i, i + head_size / 2),
            };
            let (a, b) = (head[ia], head[ib]);
            head[ia] = a * c - b * s;
            head[ib] = a * s + b * c;
        }
    }
}

/// Attention of one position's queries over a layer's cached keys and
/// values (this position's included): per head, softmax of `q·k / √hs`
/// over positions, then the weighted sum of values. Query head `h` reads KV
/// head `h / (n_heads / n_kv_heads)`.
pub fn attend(
    q: &[f32],
    keys: &[Vec<f32>],
    values: &[Vec<f32>],
    n_heads: usize,
    n_kv_heads: usize,
    hs: usize,
) -> Vec<f32> {
    let group = n_heads / n_kv_heads;
    let mut out = vec![0.0; q.len()];
    for h in 0..n_heads {
        let (qh, kvh) = (&q[h * hs..(h + 1) * hs], h / group);
        let mut att: Vec<f32> = keys
            .iter()
            .map(|k| {
                qh.iter()
                    .zip(&k[kvh * hs..(kvh + 1) * hs])
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
                    / (hs as f32).sqrt()
            })
            .collect();
        softmax(&mut att);
        for (a, v) in att.iter().zip(values.iter()) {
            for (o, vi) in out[h * hs..(h + 1) * hs]
                .iter_mut()
                .zip(&v[kvh * hs..(kvh + 1) * hs])
            {
                *o += a * vi;
            }
        }
    }
    out
}

/// gpt-oss's attention of one position's queries over a layer's cache
/// (this position's included; the latest `window` positions only, where
/// there is one): per head, the softmax of `q·k · head^−½` (the scale
/// rounded once) with the head's sink logit in the denominator, over the
/// values. `(heads, kv_heads, head)`.
pub fn attend_sinks(
    q: &[f32],
    keys: &[Vec<f32>],
    values: &[Vec<f32>],
    (heads, kv_heads, hs): (usize, usize, usize),
    sinks: &[f32],
    window: Option<usize>,
) -> Vec<f32> {
    let first = window.map_or(0, |w| keys.len().saturating_sub(w));
    let (keys, values) = (&keys[first..], &values[first..]);
    let group = heads / kv_heads;
    let scale = (hs as f64).powf(-0.5) as f32;
    let mut out = vec![0.0f32; heads * hs];
    for h in 0..heads {
        let (qh, kv) = (&q[h * hs..(h + 1) * hs], h / group);
        let mut logits: Vec<f32> = keys
            .iter()
            .map(|k| {
                let dot: f32 = qh
                    .iter()
                    .zip(&k[kv * hs..(kv + 1) * hs])
                    .map(|(a, b)| a * b)
                    .sum();
                dot * scale
            })
            .collect();
        logits.push(sinks[h]);
        softmax(&mut logits);
        for (p, v) in logits.iter().zip(values) {
            for (o, vi) in out[h * hs..(h + 1) * hs]
                .iter_mut()
                .zip(&v[kv * hs..(kv + 1) * hs])
            {
                *o += p * vi;
            }
        }
    }
    out
}

/// LayerNorm: `(x − mean) / √(var + eps) · w + b`, variance over `n`.
pub fn layernorm(x: &[f32], w: &[f32], b: &[f32], eps: f32) -> Vec<f32> {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    x.iter()
        .zip(w.iter().zip(b))
        .map(|(v, (w, b))| (v - mean) * inv * w + b)
        .collect()
}

/// GELU, tanh approximation: `x/2 · (1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
pub fn gelu(x: f32) -> f32 {
    let k = (2.0 / std::f32::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

/// `silu(g) · u`, elementwise.
pub fn silu(g: f32) -> f32 {
    g * (1.0 / (1.0 + (-g).exp()))
}

/// Keys and values of every layer for positions `0..len`.
pub struct KvCache {
    pub(crate) keys: Vec<Vec<Vec<f32>>>,
    pub(crate) values: Vec<Vec<Vec<f32>>>,
}

impl KvCache {
    pub fn new(config: &Config) -> KvCache {
        KvCache {
            keys: vec![Vec::new(); config.n_layers],
            values: vec![Vec::new(); config.n_layers],
        }
    }
}

/// The first index of the largest logit.
pub fn argmax(logits: &[f32]) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    logits.iter().position(|v| *v == max).unwrap_or(0) as u32
}
