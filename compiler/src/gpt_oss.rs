//! OpenAI's gpt-oss (`GptOssForCausalLM`) in the reference's plain style,
//! after transformers' `modeling_gpt_oss.py`: Llama's outline (RMSNorm
//! before attention and before the MLP, residual adds) with
//!
//! * q, k, v and o projections with biases, heads of `head_dim`;
//! * RoPE on the two halves of each head, its frequencies YaRN's and its
//!   cos and sin scaled by YaRN's attention factor
//!   ([`wafer_kernels::rope::attention_factor`]);
//! * a learned sink logit per head, in the softmax's denominator and out
//!   of its numerator (`[scores, sink]` softmaxed, the sink dropped);
//! * every other layer attending over a sliding window
//!   ([`crate::model::Sliding`]);
//! * a mixture of experts: the router's biased logits, their `k` largest
//!   (largest first), softmax over those, and experts whose gate and up
//!   projections (de-interleaved by the front end) have biases and whose
//!   SwiGLU is clamped: `gate ≤ 7`, `−7 ≤ up ≤ 7`,
//!   `(up + 1) · gate · σ(1.702 · gate)`.
//!
//! Where the reference had to choose (transformers leaves it to torch):
//! sums run in index order; of two equal router logits the lower expert is
//! picked first; the experts' weighted outputs are added in increasing
//! expert index, from zero (transformers multiplies every expert's output
//! by its weight, 0 for those not picked, and sums them all, which is the
//! same sum but where an unpicked expert's output is infinite or NaN);
//! σ(x) is `1 / (1 + e^−x)`; the score scale `head_dim^−½` is rounded to
//! f32 once.

use crate::math::{KvCache, Linear, attend_sinks, combine, matvec, rmsnorm, rope, softmax};
use crate::model::{Config, ModelError, RopePairs, RopeScaling, Tensor, Weights};

/// The clamped SwiGLU's constants (transformers' `GptOssExperts`, which
/// ignores the config's `swiglu_limit`; the front end checks it is 7).
pub use wafer_kernels::clamped_swiglu::{ALPHA, LIMIT};

/// The clamped SwiGLU of one gate and up value: NaN stays NaN, as
/// `torch.clamp` keeps it.
pub fn clamped_swiglu(gate: f32, up: f32) -> f32 {
    let gate = if gate > LIMIT { LIMIT } else { gate };
    // `f32::clamp` keeps NaN; `f32::min` would not.
    let up = up.clamp(-LIMIT, LIMIT);
    let glu = gate * (1.0 / (1.0 + (-(gate * ALPHA)).exp()));
    (up + 1.0) * glu
}

/// The `k` largest router logits, largest first (ties to the lower
/// expert), with the softmax over them.
pub fn top_k_softmax(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let order = crate::math::top_k(logits, k);
    let mut weights: Vec<f32> = order.iter().map(|e| logits[*e]).collect();
    softmax(&mut weights);
    order.into_iter().zip(weights).collect()
}

struct Expert {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Expert {
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let (gate, up) = (self.gate.forward(x), self.up.forward(x));
        let h: Vec<f32> = gate
            .iter()
            .zip(&up)
            .map(|(g, u)| clamped_swiglu(*g, *u))
            .collect();
        self.down.forward(&h)
    }
}

struct Mixture {
    router: Linear,
    experts: Vec<Expert>,
    per_token: usize,
}

impl Mixture {
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let picked = top_k_softmax(&self.router.forward(x), self.per_token);
        combine(&picked, x.len(), |e| self.experts[e].forward(x))
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    sinks: Vec<f32>,
    heads: usize,
    kv_heads: usize,
    head: usize,
    theta: f32,
    scaling: Option<RopeScaling>,
    window: Option<usize>,
}

impl Attention {
    fn forward(
        &self,
        x: &[f32],
        pos: usize,
        keys: &mut Vec<Vec<f32>>,
        values: &mut Vec<Vec<f32>>,
    ) -> Vec<f32> {
        let (mut q, mut k) = (self.q.forward(x), self.k.forward(x));
        let pairs = RopePairs::HalfSplit;
        rope(&mut q, pos, self.head, self.theta, pairs, self.scaling);
        rope(&mut k, pos, self.head, self.theta, pairs, self.scaling);
        keys.push(k);
        values.push(self.v.forward(x));
        let out = attend_sinks(
            &q,
            keys,
            values,
            (self.heads, self.kv_heads, self.head),
            &self.sinks,
            self.window,
        );
        self.o.forward(&out)
    }
}

struct Block {
    attention_norm: Vec<f32>,
    attention: Attention,
    ffn_norm: Vec<f32>,
    mixture: Mixture,
    eps: f32,
}

impl Block {
    fn load(w: &Weights, l: usize, c: &Config) -> Result<Block, ModelError> {
        let (d, h, hs) = (c.dim, c.hidden_dim, c.head_size());
        let (q, kv) = (c.n_heads * hs, c.kv_dim());
        let p = format!("layers.{l}");
        let a = format!("{p}.attention");
        let f = format!("{p}.feed_forward");
        let moe = c.moe.ok_or_else(|| ModelError::Format {
            file: w.source.clone(),
            message: "a gpt-oss config without experts".into(),
        })?;
        Ok(Block {
            attention_norm: w
                .get(&format!("{p}.attention_norm.weight"), &[d])?
                .data
                .clone(),
            attention: Attention {
                q: Linear::load(w, &format!("{a}.wq"), q, d)?,
                k: Linear::load(w, &format!("{a}.wk"), kv, d)?,
                v: Linear::load(w, &format!("{a}.wv"), kv, d)?,
                o: Linear::load(w, &format!("{a}.wo"), d, q)?,
                sinks: w.get(&format!("{a}.sinks"), &[c.n_heads])?.data.clone(),
                heads: c.n_heads,
                kv_heads: c.n_kv_heads,
                head: hs,
                theta: c.rope_theta,
                scaling: c.rope_scaling,
                window: c.window(l),
            },
            ffn_norm: w.get(&format!("{p}.ffn_norm.weight"), &[d])?.data.clone(),
            mixture: Mixture {
                router: Linear::load(w, &format!("{f}.gate"), moe.experts, d)?,
                experts: (0..moe.experts)
                    .map(|e| {
                        let x = format!("{f}.experts.{e}");
                        Ok(Expert {
                            gate: Linear::load(w, &format!("{x}.w1"), h, d)?,
                            up: Linear::load(w, &format!("{x}.w3"), h, d)?,
                            down: Linear::load(w, &format!("{x}.w2"), d, h)?,
                        })
                    })
                    .collect::<Result<_, ModelError>>()?,
                per_token: moe.per_token,
            },
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
        let a = self.attention.forward(
            &rmsnorm(x, &self.attention_norm, self.eps),
            pos,
            keys,
            values,
        );
        x.iter_mut().zip(a).for_each(|(x, a)| *x += a);
        let m = self.mixture.forward(&rmsnorm(x, &self.ffn_norm, self.eps));
        x.iter_mut().zip(m).for_each(|(x, m)| *x += m);
    }
}

pub struct GptOss {
    embedding: Tensor,
    blocks: Vec<Block>,
    norm: Vec<f32>,
    output: Tensor,
    eps: f32,
}

impl GptOss {
    pub fn load(w: &Weights, c: &Config) -> Result<GptOss, ModelError> {
        Ok(GptOss {
            embedding: w
                .get("tok_embeddings.weight", &[c.vocab_size, c.dim])?
                .clone(),
            blocks: (0..c.n_layers)
                .map(|l| Block::load(w, l, c))
                .collect::<Result<_, _>>()?,
            norm: w.get("norm.weight", &[c.dim])?.data.clone(),
            output: w.get("output.weight", &[c.vocab_size, c.dim])?.clone(),
            eps: c.norm_eps,
        })
    }

    pub fn forward(&self, token: u32, pos: usize, cache: &mut KvCache) -> Vec<f32> {
        let mut x = self.embedding.row(token as usize).to_vec();
        for (l, b) in self.blocks.iter().enumerate() {
            b.forward(&mut x, pos, &mut cache.keys[l], &mut cache.values[l]);
        }
        matvec(&self.output, &rmsnorm(&x, &self.norm, self.eps))
    }
}
