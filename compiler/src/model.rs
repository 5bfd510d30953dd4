//! What every front end produces: a [`Config`] and named [`Weights`].
//!
//! Tensor names follow the Llama checkpoint convention (`layers.0.attention.wq.weight`),
//! so a block fetches its weights by prefix, as the checkpoint lays them out.

use std::collections::BTreeMap;
use std::fmt;
pub use wafer_kernels::rope::RopeScaling;

/// A decoder-only Llama-family transformer.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab_size: usize,
    /// The longest context the model was trained for.
    pub seq_len: usize,
    pub rope_theta: f32,
    /// Which elements RoPE rotates together.
    pub rope_pairs: RopePairs,
    pub norm_eps: f32,
    /// The classifier is the token embedding (one matrix, not two).
    pub tied_embeddings: bool,
    /// RoPE frequency scaling (Llama 3.1 and 3.2 use it).
    pub rope_scaling: Option<RopeScaling>,
    pub family: Family,
    /// A mixture of experts in place of each layer's MLP (Mixtral), or
    /// `None` for a dense MLP.
    pub moe: Option<Moe>,
    /// Each head's size where it is not `dim / n_heads` (gpt-oss: 64 with
    /// a 2,880-wide hidden state).
    pub head_dim: Option<usize>,
    /// Layers that attend over a sliding window of the latest positions
    /// (gpt-oss: every other layer), or `None`: every layer attends to the
    /// whole context.
    pub sliding: Option<Sliding>,
}

/// Attention over a sliding window: on the layers marked, position `p`
/// attends to the positions `q` with `p − q < window` (its own included),
/// as transformers' sliding-window mask keeps them.
#[derive(Clone, Debug, PartialEq)]
pub struct Sliding {
    pub window: usize,
    /// One per layer: whether it slides.
    pub layers: Vec<bool>,
}

impl Config {
    /// The window layer `l` attends over (`None`: the whole context).
    pub fn window(&self, l: usize) -> Option<usize> {
        let s = self.sliding.as_ref()?;
        s.layers
            .get(l)
            .copied()
            .unwrap_or(false)
            .then_some(s.window)
    }
}

/// A sparse mixture-of-experts MLP, as Mixtral's: a router (a linear map
/// from the hidden state to one logit per expert) picks `per_token` of
/// `experts` SwiGLU MLPs of `hidden_dim` each, and the layer's output is
/// their sum weighted by the router's softmax, renormalized over the ones
/// picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moe {
    pub experts: usize,
    pub per_token: usize,
}

/// Which block the layers are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// RMSNorm, RoPE, grouped-query attention, SwiGLU MLP, no biases.
    Llama,
    /// GPT-2: learned position embeddings, LayerNorm with bias, biases on
    /// every projection, GELU (tanh) MLP, tied classifier, no RoPE.
    Gpt2,
    /// OpenAI's gpt-oss (`GptOssForCausalLM`): Llama's outline with heads
    /// of their own size (`head_dim`), biases on q, k, v and o, a learned
    /// attention sink per head, attention alternating between a sliding
    /// window and the whole context, YaRN RoPE, and a mixture of experts
    /// whose router and experts have biases and whose SwiGLU is clamped.
    /// The CPU reference runs it ([`crate::gpt_oss`]); the compiler does
    /// not lower it yet.
    GptOss,
}

/// RoPE's pairing: llama2.c rotates adjacent elements `(2i, 2i+1)` of each
/// head, Hugging Face Llama checkpoints the two halves `(i, i + d/2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopePairs {
    Adjacent,
    HalfSplit,
}

/// Built-in configs of models too big to ship, for shape and timing studies
/// with seeded weights. Numbers from each model's published `config.json`.
pub const BUILT_IN: [&str; 11] = [
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.3-70b",
    "llama-3.1-405b",
    "llama-3.2-1b",
    "tinyllama-1.1b",
    "smollm2-135m",
    "gpt2",
    "mixtral-8x7b",
    "gpt-oss-20b",
    "gpt-oss-120b",
];

impl Config {
    /// A built-in config by name (see [`BUILT_IN`]).
    pub fn built_in(name: &str) -> Option<Config> {
        let llama = |dim,
                     hidden_dim,
                     n_layers,
                     n_heads,
                     n_kv_heads,
                     vocab_size,
                     seq_len,
                     rope_theta,
                     tied_embeddings,
                     rope_scaling| {
            Config {
                dim,
                hidden_dim,
                n_layers,
                n_heads,
                n_kv_heads,
                vocab_size,
                seq_len,
                rope_theta,
                rope_pairs: RopePairs::HalfSplit,
                norm_eps: 1e-5,
                tied_embeddings,
                rope_scaling,
                family: Family::Llama,
                moe: None,
                head_dim: None,
                sliding: None,
            }
        };
        let llama3 = |factor| {
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original: 8192.0,
            })
        };
        Some(match name {
            "llama-3.1-8b" => llama(
                4096,
                14336,
                32,
                32,
                8,
                128256,
                131072,
                500000.0,
                false,
                llama3(8.0),
            ),
            // Llama 3.3 70B has Llama 3.1 70B's architecture and config.
            "llama-3.1-70b" | "llama-3.3-70b" => llama(
                8192,
                28672,
                80,
                64,
                8,
                128256,
                131072,
                500000.0,
                false,
                llama3(8.0),
            ),
            "llama-3.1-405b" => llama(
                16384,
                53248,
                126,
                128,
                8,
                128256,
                131072,
                500000.0,
                false,
                llama3(8.0),
            ),
            "llama-3.2-1b" => llama(
                2048,
                8192,
                16,
                32,
                8,
                128256,
                131072,
                500000.0,
                true,
                llama3(32.0),
            ),
            "tinyllama-1.1b" => llama(2048, 5632, 22, 32, 4, 32000, 2048, 10000.0, false, None),
            "smollm2-135m" => llama(576, 1536, 30, 9, 3, 49152, 8192, 100000.0, true, None),
            // openai-community/gpt2 (124M).
            "gpt2" => Config {
                family: Family::Gpt2,
                rope_pairs: RopePairs::Adjacent,
                ..llama(768, 3072, 12, 12, 12, 50257, 1024, 10000.0, true, None)
            },
            // mistralai/Mixtral-8x7B-v0.1: Mistral 7B's shape with eight
            // experts in each MLP, two a token.
            "mixtral-8x7b" => Config {
                moe: Some(Moe {
                    experts: 8,
                    per_token: 2,
                }),
                ..llama(4096, 14336, 32, 32, 8, 32000, 32768, 1e6, false, None)
            },
            // openai/gpt-oss-20b and -120b (their config.json): 2,880 wide,
            // 64 query heads and 8 KV heads of 64, 201,088 tokens; 32
            // experts over 24 layers or 128 over 36, 4 a token; RoPE YaRN
            // (factor 32 over 4,096, not truncated), every other layer (from
            // the first) over a window of 128.
            "gpt-oss-20b" | "gpt-oss-120b" => {
                let big = name == "gpt-oss-120b";
                let layers = if big { 36 } else { 24 };
                Config {
                    family: Family::GptOss,
                    head_dim: Some(64),
                    norm_eps: 1e-5,
                    rope_scaling: Some(RopeScaling::Yarn {
                        factor: 32.0,
                        beta_fast: 32.0,
                        beta_slow: 1.0,
                        original: 4096.0,
                        truncate: false,
                    }),
                    sliding: Some(Sliding {
                        window: 128,
                        layers: (0..layers).map(|l| l % 2 == 0).collect(),
                    }),
                    moe: Some(Moe {
                        experts: if big { 128 } else { 32 },
                        per_token: 4,
                    }),
                    ..llama(
                        2880,
                        2880,
                        if big { 36 } else { 24 },
                        64,
                        8,
                        201088,
                        131072,
                        150000.0,
                        false,
                        None,
                    )
                }
            }
            _ => return None,
        })
    }

    /// Parameters (weights) of the model; a tied classifier counts once.
    pub fn n_params(&self) -> u64 {
        let tied_embeddings = self.tied_embeddings;
        let (d, kv, h, v, l) = (
            self.dim as u64,
            self.kv_dim() as u64,
            self.hidden_dim as u64,
            self.vocab_size as u64,
            self.n_layers as u64,
        );
        if self.family == Family::Gpt2 {
            // q, k, v, o and their biases; fc and proj and theirs; two
            // LayerNorms; position table; final LayerNorm.
            let layer = 4 * d * d + 4 * d + 2 * h * d + h + d + 4 * d;
            let pos = self.seq_len as u64 * d;
            return v * d * if tied_embeddings { 1 } else { 2 } + pos + l * layer + 2 * d;
        }
        // Each expert an MLP; the router a logit per expert.
        let mlp = match self.moe {
            Some(m) => m.experts as u64 * (3 * h * d + d),
            None => 3 * h * d,
        };
        if self.family == Family::GptOss {
            // q, k, v, o with biases, a sink per head; the router and
            // every expert (gate and up fused, down) with biases; two norms.
            let (q, heads) = (
                (self.n_heads * self.head_size()) as u64,
                self.n_heads as u64,
            );
            let attention = (d * q + q) + 2 * (d * kv + kv) + (q * d + d) + heads;
            let experts = self.moe.map_or(1, |m| m.experts as u64);
            let router = if self.moe.is_some() {
                experts * d + experts
            } else {
                0
            };
            let mlp = experts * (d * 2 * h + 2 * h + h * d + d);
            let layer = attention + router + mlp + 2 * d;
            return v * d * if tied_embeddings { 1 } else { 2 } + l * layer + d;
        }
        let layer = 2 * d * d + 2 * kv * d + mlp + 2 * d;
        v * d * if tied_embeddings { 1 } else { 2 } + l * layer + d
    }

    /// Parameters a token's decode step reads: one row of an untied token
    /// embedding, and of a mixture of experts its router and only the
    /// experts it picks (OpenAI's "active parameters" count the same way).
    pub fn n_active_params(&self) -> u64 {
        let table = if self.tied_embeddings {
            0
        } else {
            (self.vocab_size as u64 - 1) * self.dim as u64
        };
        let unpicked = self
            .moe
            .map_or(0, |m| (m.experts - m.per_token.min(m.experts)) as u64);
        let (h, d) = (self.hidden_dim as u64, self.dim as u64);
        let expert = match self.family {
            Family::GptOss => 3 * h * d + 2 * h + d,
            _ => 3 * h * d,
        };
        self.n_params() - self.n_layers as u64 * unpicked * expert - table
    }

    pub fn head_size(&self) -> usize {
        self.head_dim.unwrap_or(self.dim / self.n_heads)
    }
    pub fn kv_dim(&self) -> usize {
        self.head_size() * self.n_kv_heads
    }

    /// Shapes that do not make a transformer.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("dim", self.dim),
            ("hidden_dim", self.hidden_dim),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("vocab_size", self.vocab_size),
            ("seq_len", self.seq_len),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero(name));
        }
        if self.head_dim == Some(0) {
            return Err(ConfigError::Zero("head_dim"));
        }
        if self.head_dim.is_some_and(|h| h > 1 << 16) {
            return Err(ConfigError::TooBig {
                name: "head_dim",
                value: self.head_dim.unwrap_or(0),
                max: 1 << 16,
            });
        }
        // Far above any published model; below them every size wafer
        // computes (parameter counts, byte counts) fits its integers.
        let limits = [
            ("dim", self.dim, 1 << 20),
            ("hidden_dim", self.hidden_dim, 1 << 22),
            ("n_layers", self.n_layers, 1 << 12),
            ("n_heads", self.n_heads, 1 << 12),
            ("n_kv_heads", self.n_kv_heads, 1 << 12),
            ("vocab_size", self.vocab_size, 1 << 24),
            ("seq_len", self.seq_len, 1 << 30),
        ];
        if let Some((name, value, max)) = limits.iter().find(|(_, v, max)| v > max) {
            return Err(ConfigError::TooBig {
                name,
                value: *value,
                max: *max,
            });
        }
        if self.head_dim.is_none() && !self.dim.is_multiple_of(self.n_heads) {
            return Err(ConfigError::Heads {
                dim: self.dim,
                n_heads: self.n_heads,
            });
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(ConfigError::KvHeads {
                n_heads: self.n_heads,
                n_kv_heads: self.n_kv_heads,
            });
        }
        if !self.head_size().is_multiple_of(2) {
            return Err(ConfigError::OddHead(self.head_size()));
        }
        if let Some(m) = self.moe
            && (m.per_token == 0 || m.per_token > m.experts || m.experts > 1 << 12)
        {
            return Err(ConfigError::Experts {
                experts: m.experts,
                per_token: m.per_token,
            });
        }
        if let Some(s) = &self.sliding
            && (s.window == 0 || s.layers.len() != self.n_layers)
        {
            return Err(ConfigError::Sliding {
                window: s.window,
                layers: s.layers.len(),
                n_layers: self.n_layers,
            });
        }
        Ok(())
    }
}

/// Shapes that do not make a transformer (or that wafer does not handle).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is 0")]
    Zero(&'static str),
    #[error("{name} is {value}; wafer handles at most {max}")]
    TooBig {
        name: &'static str,
        value: usize,
        max: usize,
    },
    #[error("dim {dim} is not a multiple of n_heads {n_heads}")]
    Heads { dim: usize, n_heads: usize },
    #[error("n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}")]
    KvHeads { n_heads: usize, n_kv_heads: usize },
    #[error("the head size {0} is odd; RoPE rotates pairs")]
    OddHead(usize),
    #[error(
        "{per_token} experts a token of {experts}: a mixture of experts picks 1 to all of its experts (at most 4096)"
    )]
    Experts { experts: usize, per_token: usize },
    #[error(
        "a sliding window of {window} over {layers} layers' types, for {n_layers} layers: the window is at least 1 and every layer has a type"
    )]
    Sliding {
        window: usize,
        layers: usize,
        n_layers: usize,
    },
}

/// A dense f32 tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// Row `i` of a 2-D tensor.
    pub fn row(&self, i: usize) -> &[f32] {
        let cols = self.shape[1];
        &self.data[i * cols..(i + 1) * cols]
    }
}

#[derive(Clone, Debug, Default)]
pub struct Weights {
    pub tensors: BTreeMap<String, Tensor>,
    /// Where they came from, for errors.
    pub source: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    #[error("{file}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    Shape {
        file: String,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{file}: no tensor `{tensor}` (the model needs it)")]
    Missing { file: String, tensor: String },
}

impl Weights {
    /// The tensor `name`, checked to have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&Tensor, ModelError> {
        let t = self.tensors.get(name).ok_or_else(|| ModelError::Missing {
            file: self.source.clone(),
            tensor: name.into(),
        })?;
        if t.shape != shape {
            return Err(ModelError::Shape {
                file: self.source.clone(),
                tensor: name.into(),
                expected: shape.to_vec(),
                found: t.shape.clone(),
            });
        }
        Ok(t)
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "dim {} hidden {} layers {} heads {} kv heads {} vocab {} seq_len {}",
            self.dim,
            self.hidden_dim,
            self.n_layers,
            self.n_heads,
            self.n_kv_heads,
            self.vocab_size,
            self.seq_len
        )?;
        match self.moe {
            Some(m) => write!(f, " experts {} ({} a token)", m.experts, m.per_token),
            None => Ok(()),
        }
    }
}
