//! GPT-2 in the reference's plain style: one struct per block, weights by
//! name (the Llama-style names `hf.rs` maps GPT-2's onto).

use crate::math::{KvCache, Linear, attend, gelu, layernorm, matvec};
use crate::model::{Config, ModelError, Tensor, Weights};

struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn load(w: &Weights, prefix: &str, c: &Config) -> Result<Norm, ModelError> {
        Ok(Norm {
            w: w.get(&format!("{prefix}.weight"), &[c.dim])?.data.clone(),
            b: w.get(&format!("{prefix}.bias"), &[c.dim])?.data.clone(),
            eps: c.norm_eps,
        })
    }
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        layernorm(x, &self.w, &self.b, self.eps)
    }
}

struct Block {
    ln_1: Norm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln_2: Norm,
    fc: Linear,
    proj: Linear,
    n_heads: usize,
}

impl Block {
    fn load(w: &Weights, l: usize, c: &Config) -> Result<Block, ModelError> {
        let (d, h) = (c.dim, c.hidden_dim);
        let p = format!("layers.{l}");
        Ok(Block {
            ln_1: Norm::load(w, &format!("{p}.attention_norm"), c)?,
            q: Linear::load(w, &format!("{p}.attention.wq"), d, d)?,
            k: Linear::load(w, &format!("{p}.attention.wk"), d, d)?,
            v: Linear::load(w, &format!("{p}.attention.wv"), d, d)?,
            o: Linear::load(w, &format!("{p}.attention.wo"), d, d)?,
            ln_2: Norm::load(w, &format!("{p}.ffn_norm"), c)?,
            fc: Linear::load(w, &format!("{p}.feed_forward.w1"), h, d)?,
            proj: Linear::load(w, &format!("{p}.feed_forward.w2"), d, h)?,
            n_heads: c.n_heads,
        })
    }

    fn forward(&self, x: &mut [f32], keys: &mut Vec<Vec<f32>>, values: &mut Vec<Vec<f32>>) {
        let h = self.ln_1.forward(x);
        let q = self.q.forward(&h);
        keys.push(self.k.forward(&h));
        values.push(self.v.forward(&h));
        let hs = x.len() / self.n_heads;
        let a = attend(&q, keys, values, self.n_heads, self.n_heads, hs);
        x.iter_mut()
            .zip(self.o.forward(&a))
            .for_each(|(x, o)| *x += o);
        let f: Vec<f32> = self
            .fc
            .forward(&self.ln_2.forward(x))
            .into_iter()
            .map(gelu)
            .collect();
        x.iter_mut()
            .zip(self.proj.forward(&f))
            .for_each(|(x, p)| *x += p);
    }
}

pub struct Gpt2 {
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: Norm,
    output: Tensor,
}

impl Gpt2 {
    pub fn load(w: &Weights, c: &Config) -> Result<Gpt2, ModelError> {
        Ok(Gpt2 {
            wte: w
                .get("tok_embeddings.weight", &[c.vocab_size, c.dim])?
                .clone(),
            wpe: w.get("pos_embeddings.weight", &[c.seq_len, c.dim])?.clone(),
            blocks: (0..c.n_layers)
                .map(|l| Block::load(w, l, c))
                .collect::<Result<_, _>>()?,
            ln_f: Norm::load(w, "norm", c)?,
            output: w.get("output.weight", &[c.vocab_size, c.dim])?.clone(),
        })
    }

    pub fn forward(&self, token: u32, pos: usize, cache: &mut KvCache) -> Vec<f32> {
        let mut x: Vec<f32> = self
            .wte
            .row(token as usize)
            .iter()
            .zip(self.wpe.row(pos))
            .map(|(t, p)| t + p)
            .collect();
        for (l, b) in self.blocks.iter().enumerate() {
            b.forward(&mut x, &mut cache.keys[l], &mut cache.values[l]);
        }
        matvec(&self.output, &self.ln_f.forward(&x))
    }
}
