//! The plain CPU reference: a Llama decoder step written as the textbook
//! (and llama2.c's run.c) writes it, in f32. One struct per block, each
//! loaded by name from [`Weights`]; `forward` reads like the maths.

pub use crate::math::{KvCache, argmax};
use crate::math::{attend, matvec, rmsnorm, rope, silu};
use crate::model::{Config, ModelError, Moe, RopePairs, RopeScaling, Tensor, Weights};

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

/// A mixture of experts (Mixtral's `MixtralSparseMoeBlock`): the router's
/// logits, their softmax over every expert, the `per_token` largest kept
/// and renormalized to sum to 1, and the picked experts' outputs added up
/// weighted by them.
pub struct Experts {
    gate: Tensor,
    experts: Vec<Mlp>,
    per_token: usize,
}

/// A layer's feed-forward part.
pub enum Ffn {
    Dense(Mlp),
    Experts(Experts),
}

pub struct Block {
    attention_norm: Vec<f32>,
    attention: Attention,
    ffn_norm: Vec<f32>,
    ffn: Ffn,
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
    GptOss(crate::gpt_oss::GptOss),
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
        let hidden: Vec<f32> = gate.iter().zip(&up).map(|(g, u)| silu(*g) * u).collect();
        matvec(&self.w2, &hidden)
    }
}

impl Experts {
    fn load(w: &Weights, prefix: &str, c: &Config, m: Moe) -> Result<Experts, ModelError> {
        Ok(Experts {
            gate: w
                .get(&format!("{prefix}.gate.weight"), &[m.experts, c.dim])?
                .clone(),
            experts: (0..m.experts)
                .map(|e| Mlp::load(w, &format!("{prefix}.experts.{e}"), c))
                .collect::<Result<_, _>>()?,
            per_token: m.per_token,
        })
    }

    /// The experts picked for `x` and their weights, in the order picked
    /// (largest first). transformers takes `torch.topk` of the softmax;
    /// where two weights tie, the reference picks the lower expert index
    /// (torch does not specify an order for ties).
    pub fn route(&self, x: &[f32]) -> Vec<(usize, f32)> {
        crate::math::route(&matvec(&self.gate, x), self.per_token)
    }

    /// `Σ weight · expert(x)`, the experts added in increasing index, as
    /// transformers' loop over experts adds them.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        crate::math::combine(&self.route(x), x.len(), |e| self.experts[e].forward(x))
    }
}

impl Ffn {
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        match self {
            Ffn::Dense(m) => m.forward(x),
            Ffn::Experts(e) => e.forward(x),
        }
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
            ffn: match c.moe {
                Some(m) => Ffn::Experts(Experts::load(w, &format!("{p}.feed_forward"), c, m)?),
                None => Ffn::Dense(Mlp::load(w, &format!("{p}.feed_forward"), c)?),
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
        let h = self.attention.forward(
            &rmsnorm(x, &self.attention_norm, self.eps),
            pos,
            keys,
            values,
        );
        x.iter_mut().zip(h).for_each(|(a, b)| *a += b);
        let f = self.ffn.forward(&rmsnorm(x, &self.ffn_norm, self.eps));
        x.iter_mut().zip(f).for_each(|(a, b)| *a += b);
    }
}

impl Model {
    pub fn load(w: &Weights, c: &Config) -> Result<Model, ModelError> {
        let body = match c.family {
            crate::model::Family::Gpt2 => Body::Gpt2(crate::gpt2::Gpt2::load(w, c)?),
            crate::model::Family::GptOss => Body::GptOss(crate::gpt_oss::GptOss::load(w, c)?),
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

    /// Layer `layer`'s mixture of experts, if its MLP is one.
    pub fn experts(&self, layer: usize) -> Option<&Experts> {
        match &self.body {
            Body::Llama { blocks, .. } => match &blocks.get(layer)?.ffn {
                Ffn::Experts(e) => Some(e),
                Ffn::Dense(_) => None,
            },
            Body::Gpt2(_) | Body::GptOss(_) => None,
        }
    }

    /// Logits for the token after `token` at position `pos` (the cache
    /// must hold exactly the positions before it).
    pub fn forward(&self, token: u32, pos: usize, cache: &mut KvCache) -> Vec<f32> {
        let (embedding, blocks, norm, output) = match &self.body {
            Body::Gpt2(m) => return m.forward(token, pos, cache),
            Body::GptOss(m) => return m.forward(token, pos, cache),
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

/// Greedy decoding as llama2.c's run.c does it: start from BOS, force the
/// prompt's tokens, then take the argmax; stop at `steps` positions or when
/// the model emits BOS. Returns the tokens after BOS.
pub fn generate(model: &Model, prompt: &[u32], steps: usize) -> Vec<u32> {
    let mut cache = KvCache::new(&model.config);
    let run = crate::generation::decode_loop(
        prompt,
        steps.min(model.config.seq_len),
        |token, pos| Ok::<_, std::convert::Infallible>(model.forward(token, pos, &mut cache)),
        |logits| argmax(logits),
        |_, _| {},
    );
    match run {
        Ok(tokens) => tokens,
    }
}
