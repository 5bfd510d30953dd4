//! The plain CPU reference: a Llama decoder step written as the textbook
//! (and llama2.c's run.c) writes it, in f32. One struct per block, each
//! loaded by name from [`Weights`]; `forward` reads like the maths.

use crate::model::{Config, ModelError, RopePairs, RopeScaling, Tensor, Weights};

/// `W·x` for `W` of shape `[out, in]`.
pub(crate) fn matvec(w: &Tensor, x: &[f32]) -> Vec<f32> {
    (0..w.shape[0])
        .map(|i| w.row(i).iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

pub(crate) fn rmsnorm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let ss = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32 + eps;
    let inv = 1.0 / ss.sqrt();
    x.iter().zip(weight).map(|(v, w)| w * (v * inv)).collect()
}

fn softmax(x: &mut [f32]) {
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

/// Rotate pair `i` of each head by `pos · θ^(−2i/head_size)` (its frequency
/// scaled for long contexts where the model says so); the pairs are
/// `(2i, 2i+1)` or `(i, i + head_size/2)`.
pub(crate) fn rope(
    x: &mut [f32],
    pos: usize,
    head_size: usize,
    theta: f32,
    pairs: RopePairs,
    scaling: Option<RopeScaling>,
) {
    let freqs = wafer_kernels::rope::inv_freq(theta, head_size as u32, scaling);
    for head in x.chunks_exact_mut(head_size) {
        for (i, freq) in freqs.iter().enumerate() {
            let (c, s) = ((pos as f32 * *freq).cos(), (pos as f32 * *freq).sin());
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

pub struct Attention {
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    wo: Tensor,
    n_heads: usize,
    n_kv_heads: usize,
    head_size: usize,
    theta: f32,
    pairs: RopePairs,
    scaling: Option<RopeScaling>,
}

pub struct Mlp {
    w1: Tensor,
    w2: Tensor,
    w3: Tensor,
}

pub struct Block {
    attention_norm: Vec<f32>,
    attention: Attention,
    ffn_norm: Vec<f32>,
    mlp: Mlp,
    eps: f32,
}

pub struct Model {
    pub config: Config,
    body: Body,
}

enum Body {
    Llama {
        embedding: Tensor,
        blocks: Vec<Block>,
        norm: Vec<f32>,
        output: Tensor,
    },
    Gpt2(crate::gpt2::Gpt2),
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

impl Attention {
    fn load(w: &Weights, prefix: &str, c: &Config) -> Result<Attention, ModelError> {
        let (d, kv) = (c.dim, c.kv_dim());
        Ok(Attention {
            wq: w.get(&format!("{prefix}.wq.weight"), &[d, d])?.clone(),
            wk: w.get(&format!("{prefix}.wk.weight"), &[kv, d])?.clone(),
            wv: w.get(&format!("{prefix}.wv.weight"), &[kv, d])?.clone(),
            wo: w.get(&format!("{prefix}.wo.weight"), &[d, d])?.clone(),
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_size: c.head_size(),
            theta: c.rope_theta,
            pairs: c.rope_pairs,
            scaling: c.rope_scaling,
        })
    }

    /// Attend from position `pos` (its k, v appended to the layer's cache).
    fn forward(
        &self,
        x: &[f32],
        pos: usize,
        keys: &mut Vec<Vec<f32>>,
        values: &mut Vec<Vec<f32>>,
    ) -> Vec<f32> {
        let hs = self.head_size;
        let (mut q, mut k, v) = (
            matvec(&self.wq, x),
            matvec(&self.wk, x),
            matvec(&self.wv, x),
        );
        rope(&mut q, pos, hs, self.theta, self.pairs, self.scaling);
        rope(&mut k, pos, hs, self.theta, self.pairs, self.scaling);
        keys.push(k);
        values.push(v);
        let out = attend(&q, keys, values, self.n_heads, self.n_kv_heads, hs);
        matvec(&self.wo, &out)
    }
}

/// Attention of one position's queries over a layer's cached keys and
/// values (this position's included): per head, softmax of `q·k / √hs`
/// over positions, then the weighted sum of values. Query head `h` reads KV
/// head `h / (n_heads / n_kv_heads)`.
pub(crate) fn attend(
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

/// LayerNorm: `(x − mean) / √(var + eps) · w + b`, variance over `n`.
pub(crate) fn layernorm(x: &[f32], w: &[f32], b: &[f32], eps: f32) -> Vec<f32> {
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
pub(crate) fn gelu(x: f32) -> f32 {
    let k = (2.0 / std::f32::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

/// `silu(g) · u`, elementwise.
pub(crate) fn silu(g: f32) -> f32 {
    g * (1.0 / (1.0 + (-g).exp()))
}

impl Mlp {
    fn load(w: &Weights, prefix: &str, c: &Config) -> Result<Mlp, ModelError> {
        let (d, hd) = (c.dim, c.hidden_dim);
        Ok(Mlp {
            w1: w.get(&format!("{prefix}.w1.weight"), &[hd, d])?.clone(),
            w2: w.get(&format!("{prefix}.w2.weight"), &[d, hd])?.clone(),
            w3: w.get(&format!("{prefix}.w3.weight"), &[hd, d])?.clone(),
        })
    }

    /// SwiGLU: `w2 · (silu(w1·x) ⊙ w3·x)`.
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let (gate, up) = (matvec(&self.w1, x), matvec(&self.w3, x));
        let hidden: Vec<f32> = gate
            .iter()
            .zip(&up)
            .map(|(g, u)| g * (1.0 / (1.0 + (-g).exp())) * u)
            .collect();
        matvec(&self.w2, &hidden)
    }
}

impl Block {
    fn load(w: &Weights, layer: usize, c: &Config) -> Result<Block, ModelError> {
        let p = format!("layers.{layer}");
        Ok(Block {
            attention_norm: w
                .get(&format!("{p}.attention_norm.weight"), &[c.dim])?
                .data
                .clone(),
            attention: Attention::load(w, &format!("{p}.attention"), c)?,
            ffn_norm: w
                .get(&format!("{p}.ffn_norm.weight"), &[c.dim])?
                .data
                .clone(),
            mlp: Mlp::load(w, &format!("{p}.feed_forward"), c)?,
            eps: c.norm_eps,
        })
    }

    fn forward(
        &self,
        x: &mut [f32],
        pos: usize,
        keys: &mut Vec<Vec<f32>>,
        values: &mut Vec<Vec<f32>>,
    ) {
        let h = self.attention.forward(
            &rmsnorm(x, &self.attention_norm, self.eps),
            pos,
            keys,
            values,
        );
        x.iter_mut().zip(h).for_each(|(a, b)| *a += b);
        let f = self.mlp.forward(&rmsnorm(x, &self.ffn_norm, self.eps));
        x.iter_mut().zip(f).for_each(|(a, b)| *a += b);
    }
}

impl Model {
    pub fn load(w: &Weights, c: &Config) -> Result<Model, ModelError> {
        let body = match c.family {
            crate::model::Family::Gpt2 => Body::Gpt2(crate::gpt2::Gpt2::load(w, c)?),
            crate::model::Family::Llama => Body::Llama {
                embedding: w
                    .get("tok_embeddings.weight", &[c.vocab_size, c.dim])?
                    .clone(),
                blocks: (0..c.n_layers)
                    .map(|l| Block::load(w, l, c))
                    .collect::<Result<_, _>>()?,
                norm: w.get("norm.weight", &[c.dim])?.data.clone(),
                output: w.get("output.weight", &[c.vocab_size, c.dim])?.clone(),
            },
        };
        Ok(Model {
            config: c.clone(),
            body,
        })
    }

    /// Logits for the token after `token` at position `pos` (the cache
    /// must hold exactly the positions before it).
    pub fn forward(&self, token: u32, pos: usize, cache: &mut KvCache) -> Vec<f32> {
        let (embedding, blocks, norm, output) = match &self.body {
            Body::Gpt2(m) => return m.forward(token, pos, cache),
            Body::Llama {
                embedding,
                blocks,
                norm,
                output,
            } => (embedding, blocks, norm, output),
        };
        let mut x = embedding.row(token as usize).to_vec();
        for (l, block) in blocks.iter().enumerate() {
            block.forward(&mut x, pos, &mut cache.keys[l], &mut cache.values[l]);
        }
        matvec(output, &rmsnorm(&x, norm, self.config.norm_eps))
    }
}

/// The first index of the largest logit.
pub fn argmax(logits: &[f32]) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    logits.iter().position(|v| *v == max).unwrap_or(0) as u32
}

/// Greedy decoding as llama2.c's run.c does it: start from BOS, force the
/// prompt's tokens, then take the argmax; stop at `steps` positions or when
/// the model emits BOS. Returns the tokens after BOS.
pub fn generate(model: &Model, prompt: &[u32], steps: usize) -> Vec<u32> {
    let mut cache = KvCache::new(&model.config);
    let mut token = crate::tokenizer::BOS;
    let mut out = Vec::new();
    for pos in 0..steps.min(model.config.seq_len) {
        let logits = model.forward(token, pos, &mut cache);
        let next = if pos < prompt.len() {
            prompt[pos]
        } else {
            argmax(&logits)
        };
        if next == crate::tokenizer::BOS {
            break;
        }
        out.push(next);
        token = next;
    }
    out
}
