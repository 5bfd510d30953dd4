//! Hugging Face `config.json` for the families wafer implements (`llama`,
//! `mixtral`, `gpt2`, `gpt_oss`), read strictly: every field either is read (in both the
//! transformers-4 form and the transformers-5 `rope_parameters` form), or
//! is one that does not change what a decode step computes (bookkeeping,
//! training-only dropout, token ids), or is an error naming it. A field
//! wafer does not implement never runs as a silently different model.

use crate::model::{Config, Family, ModelError, RopePairs, RopeScaling};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Fields any transformers config may carry that do not change the
/// arithmetic of a decode step: bookkeeping, generation defaults, token
/// ids, training-only settings.
const INERT: &[&str] = &[
    "_name_or_path",
    "architectures",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "use_cache",
    "initializer_range",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "sep_token_id",
    "decoder_start_token_id",
    "return_dict",
    "output_hidden_states",
    "output_attentions",
    "torchscript",
    "use_bfloat16",
    "tf_legacy_loss",
    "pruned_heads",
    "chunk_size_feed_forward",
    "is_encoder_decoder",
    "is_decoder",
    "add_cross_attention",
    "tie_encoder_decoder",
    "id2label",
    "label2id",
    "problem_type",
    "finetuning_task",
    "tokenizer_class",
    "prefix",
    "task_specific_params",
    "max_length",
    "min_length",
    "do_sample",
    "early_stopping",
    "num_beams",
    "num_beam_groups",
    "diversity_penalty",
    "temperature",
    "top_k",
    "top_p",
    "typical_p",
    "repetition_penalty",
    "length_penalty",
    "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size",
    "bad_words_ids",
    "num_return_sequences",
    "output_scores",
    "return_dict_in_generate",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "remove_invalid_values",
    "exponential_decay_length_penalty",
    "suppress_tokens",
    "begin_suppress_tokens",
    "cross_attention_hidden_size",
    "quantization_config_ignored",
    // Dropout is training-only.
    "attention_dropout",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "summary_first_dropout",
    // GPT-2's sequence-classification head, not the language model.
    "summary_type",
    "summary_use_proj",
    "summary_activation",
    "summary_proj_to_labels",
    // Tensor-parallel slicing of the projections in pretraining; the
    // product is the same matrix.
    "pretraining_tp",
    // GPT-2's old name for n_positions, never read by transformers.
    "n_ctx",
    // Upcasting attention to f32: the reference computes in f32 already.
    "reorder_and_upcast_attn",
];

/// Read a `config.json`; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Config, ModelError> {
    let err = |message: String| ModelError::Format {
        file: file.to_string(),
        message,
    };
    let v: Value = serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| err("expected a JSON object of model settings".into()))?;
    let mut r = Reader {
        obj,
        used: BTreeSet::new(),
        file,
    };
    let model_type = r.str("model_type")?.ok_or_else(|| {
        err("no `model_type`: wafer reads Hugging Face `llama` and `gpt2` models".into())
    })?;
    let c = match model_type {
        "llama" => llama(&mut r)?,
        "mixtral" => mixtral(&mut r)?,
        "gpt2" => gpt2(&mut r)?,
        "gpt_oss" => gpt_oss(&mut r)?,
        other => {
            return Err(err(format!(
                "`model_type` is `{other}`: wafer implements `llama`, `mixtral`, `gpt2` and `gpt_oss`"
            )));
        }
    };
    r.finish()?;
    c.validate()
        .map_err(|m| err(format!("inconsistent config: {m}")))?;
    Ok(c)
}

fn llama(r: &mut Reader) -> Result<Config, ModelError> {
    let heads = r.count("num_attention_heads")?;
    let dim = r.count("hidden_size")?;
    r.expect_str(
        "hidden_act",
        &["silu"],
        "silu",
        "the SwiGLU MLP's activation",
    )?;
    r.expect_bool("attention_bias", false, "q/k/v/o projection biases")?;
    r.expect_bool("mlp_bias", false, "MLP projection biases")?;
    if let Some(h) = r.opt_count("head_dim")?
        && heads > 0
        && h != dim / heads
    {
        return Err(r.err(format!(
            "`head_dim` is {h}, not hidden_size / num_attention_heads = {}: wafer's attention needs heads of hidden_size / num_attention_heads",
            dim / heads
        )));
    }
    let (rope_theta, rope_scaling) = rope(r, false)?;
    Ok(Config {
        dim,
        hidden_dim: r.count("intermediate_size")?,
        n_layers: r.count("num_hidden_layers")?,
        n_heads: heads,
        n_kv_heads: r.opt_count("num_key_value_heads")?.unwrap_or(heads),
        vocab_size: r.count("vocab_size")?,
        seq_len: r.count("max_position_embeddings")?,
        rope_theta,
        rope_pairs: RopePairs::HalfSplit,
        norm_eps: r.opt_num("rms_norm_eps")?.unwrap_or(1e-6) as f32,
        // transformers' LlamaConfig default.
        tied_embeddings: r.opt_bool("tie_word_embeddings")?.unwrap_or(false),
        rope_scaling,
        family: Family::Llama,
        moe: None,
        head_dim: None,
        sliding: None,
    })
}

/// Mixtral (`MixtralForCausalLM`): Llama's attention and norms, each MLP
/// a mixture of experts. `router_aux_loss_coef`, `output_router_logits`
/// and `router_jitter_noise` act in training only (transformers applies
/// the jitter only when training); a `sliding_window` (Mistral's) would
/// change attention, which wafer does not implement, so it must be null
/// or at least the context.
fn mixtral(r: &mut Reader) -> Result<Config, ModelError> {
    for inert in [
        "router_aux_loss_coef",
        "output_router_logits",
        "router_jitter_noise",
    ] {
        r.take(inert);
    }
    let experts = r.count("num_local_experts")?;
    let per_token = r.count("num_experts_per_tok")?;
    let window = r.opt_count("sliding_window")?;
    // Mixtral's MLP has no `mlp_bias`/`attention_bias` fields to read; a
    // Llama config's reader accepts their absence.
    let mut c = llama(r)?;
    if let Some(w) = window
        && w < c.seq_len
    {
        return Err(r.err(format!(
            "`sliding_window` is {w}, shorter than max_position_embeddings {}: wafer's attention attends to every cached position",
            c.seq_len
        )));
    }
    c.moe = Some(crate::model::Moe { experts, per_token });
    Ok(c)
}

/// RoPE's base and scaling: transformers 4 writes `rope_theta` and
/// `rope_scaling` at the top level, transformers 5 one `rope_parameters`
/// object holding `rope_type`, `rope_theta` and the scaling's fields.
/// YaRN is read only where `yarn` (gpt-oss: the wafer's RoPE kernel does
/// not scale cos and sin yet).
fn rope(r: &mut Reader, yarn: bool) -> Result<(f32, Option<RopeScaling>), ModelError> {
    let top_theta = r.opt_num("rope_theta")?;
    let scaling = r.take("rope_scaling");
    let params = r.take("rope_parameters");
    let (theta, table) = match (params, scaling) {
        (Some(Value::Null) | None, Some(Value::Null) | None) => (top_theta, None),
        (Some(Value::Null) | None, Some(s)) => (top_theta, Some(("rope_scaling", s))),
        (Some(p), Some(Value::Null) | None) => {
            let obj = p
                .as_object()
                .ok_or_else(|| r.err("`rope_parameters` must be an object".into()))?;
            let theta = match obj.get("rope_theta") {
                None => top_theta,
                Some(t) => Some(t.as_f64().ok_or_else(|| {
                    r.err("`rope_parameters.rope_theta` must be a number".into())
                })?),
            };
            if let (Some(a), Some(b)) = (top_theta, theta)
                && a != b
            {
                return Err(r.err(format!(
                    "`rope_theta` {a} and `rope_parameters.rope_theta` {b} disagree"
                )));
            }
            (theta, Some(("rope_parameters", p)))
        }
        (Some(_), Some(_)) => {
            return Err(r.err(
                "both `rope_scaling` and `rope_parameters` are given: keep one (transformers 5 writes `rope_parameters`)".into(),
            ));
        }
    };
    let theta = theta.unwrap_or(10000.0);
    if !(theta.is_finite() && theta > 0.0) {
        return Err(r.err(format!("`rope_theta` is {theta}; it must be positive")));
    }
    let scaling = match table {
        None => None,
        Some((name, t)) => scaling_of(r, name, t, yarn)?,
    };
    Ok((theta as f32, scaling))
}

fn scaling_of(
    r: &Reader,
    name: &str,
    t: &Value,
    yarn: bool,
) -> Result<Option<RopeScaling>, ModelError> {
    let obj = t
        .as_object()
        .ok_or_else(|| r.err(format!("`{name}` must be an object or null")))?;
    let kind = obj
        .get("rope_type")
        .or_else(|| obj.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let fields: &[&str] =
        match kind {
            "default" => &[],
            "linear" => &["factor"],
            "llama3" => &[
                "factor",
                "low_freq_factor",
                "high_freq_factor",
                "original_max_position_embeddings",
            ],
            "yarn" if yarn => &[
                "factor",
                "beta_fast",
                "beta_slow",
                "original_max_position_embeddings",
                "truncate",
            ],
            other => {
                return Err(r.err(format!(
                "`{name}` of type `{other}` is not supported (default, llama3 and linear are{})",
                if yarn { ", and yarn" } else { "; yarn for gpt_oss only" }
            )));
            }
        };
    for key in obj.keys() {
        if !matches!(key.as_str(), "rope_type" | "type" | "rope_theta")
            && !fields.contains(&key.as_str())
        {
            return Err(r.err(format!(
                "`{name}.{key}` is not implemented for RoPE type `{kind}` (it reads {})",
                if fields.is_empty() {
                    "nothing more".to_string()
                } else {
                    fields.join(", ")
                }
            )));
        }
    }
    let num = |key: &str| -> Result<f32, ModelError> {
        let x = obj
            .get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| r.err(format!("`{name}` needs a number `{key}`")))?;
        if !(x.is_finite() && x > 0.0) {
            return Err(r.err(format!("`{name}.{key}` is {x}; it must be positive")));
        }
        Ok(x as f32)
    };
    Ok(match kind {
        "llama3" => Some(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original: num("original_max_position_embeddings")?,
        }),
        "linear" => Some(RopeScaling::Linear {
            factor: num("factor")?,
        }),
        "yarn" => Some(RopeScaling::Yarn {
            factor: num("factor")?,
            // transformers' defaults.
            beta_fast: if obj.contains_key("beta_fast") {
                num("beta_fast")?
            } else {
                32.0
            },
            beta_slow: if obj.contains_key("beta_slow") {
                num("beta_slow")?
            } else {
                1.0
            },
            original: num("original_max_position_embeddings")?,
            truncate: match obj.get("truncate") {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(v) => {
                    return Err(r.err(format!("`{name}.truncate` must be true or false, not {v}")));
                }
            },
        }),
        _ => None,
    })
}

/// gpt-oss (`GptOssForCausalLM`): see [`crate::gpt_oss`]. Its experts'
/// SwiGLU clamps at 7 whatever `swiglu_limit` says (transformers
/// hardcodes it), so another limit is refused rather than run as 7;
/// `experts_per_token` is the original release's name for
/// `num_experts_per_tok` and must agree; the MXFP4 `quantization_config`
/// says how the experts are stored, which the front end decodes.
fn gpt_oss(r: &mut Reader) -> Result<Config, ModelError> {
    for inert in [
        "router_aux_loss_coef",
        "output_router_logits",
        "router_jitter_noise",
        // The training context, which YaRN's own field repeats.
        "initial_context_length",
    ] {
        r.take(inert);
    }
    let experts = r.count("num_local_experts")?;
    let per_token = r.count("num_experts_per_tok")?;
    if let Some(e) = r.opt_count("experts_per_token")?
        && e != per_token
    {
        return Err(r.err(format!(
            "`experts_per_token` {e} and `num_experts_per_tok` {per_token} disagree"
        )));
    }
    r.expect_str(
        "hidden_act",
        &["silu"],
        "silu",
        "the experts' gate activation",
    )?;
    r.expect_bool("attention_bias", true, "q/k/v/o projection biases")?;
    if let Some(l) = r.opt_num("swiglu_limit")?
        && l != crate::gpt_oss::LIMIT as f64
    {
        return Err(r.err(format!(
            "`swiglu_limit` is {l}: transformers' gpt-oss clamps at 7 whatever it says, and wafer follows transformers"
        )));
    }
    match r.take("quantization_config") {
        None | Some(Value::Null) => {}
        Some(Value::Object(q)) => {
            for (key, v) in q {
                match key.as_str() {
                    "quant_method" if v == "mxfp4" => {}
                    // Which modules stay unquantized: the tensors' own
                    // dtypes say it.
                    "modules_to_not_convert" => {}
                    _ => {
                        return Err(r.err(format!(
                            "`quantization_config.{key}` is {v}: wafer reads gpt-oss's MXFP4 (`quant_method` \"mxfp4\")"
                        )));
                    }
                }
            }
        }
        Some(v) => return Err(r.err(format!("`quantization_config` must be an object, not {v}"))),
    }
    let n_layers = r.count("num_hidden_layers")?;
    let window = r.count("sliding_window")?;
    // transformers' default: sliding on the even layers.
    let layers = match r.take("layer_types") {
        None | Some(Value::Null) => (0..n_layers).map(|l| l % 2 == 0).collect(),
        Some(Value::Array(types)) => types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                _ => Err(r.err(format!(
                    "`layer_types` holds {t}: each is \"sliding_attention\" or \"full_attention\""
                ))),
            })
            .collect::<Result<Vec<bool>, _>>()?,
        Some(v) => return Err(r.err(format!("`layer_types` must be a list, not {v}"))),
    };
    let (rope_theta, rope_scaling) = rope(r, true)?;
    Ok(Config {
        dim: r.count("hidden_size")?,
        hidden_dim: r.count("intermediate_size")?,
        n_layers,
        n_heads: r.count("num_attention_heads")?,
        n_kv_heads: r.count("num_key_value_heads")?,
        vocab_size: r.count("vocab_size")?,
        seq_len: r.count("max_position_embeddings")?,
        rope_theta,
        rope_pairs: RopePairs::HalfSplit,
        norm_eps: r.opt_num("rms_norm_eps")?.unwrap_or(1e-5) as f32,
        tied_embeddings: r.opt_bool("tie_word_embeddings")?.unwrap_or(false),
        rope_scaling,
        family: Family::GptOss,
        moe: Some(crate::model::Moe { experts, per_token }),
        head_dim: Some(r.count("head_dim")?),
        sliding: Some(crate::model::Sliding { window, layers }),
    })
}

fn gpt2(r: &mut Reader) -> Result<Config, ModelError> {
    let dim = r.count("n_embd")?;
    let heads = r.count("n_head")?;
    r.expect_str(
        "activation_function",
        &["gelu_new", "gelu_pytorch_tanh"],
        "gelu_new",
        "the tanh approximation of GELU",
    )?;
    r.expect_bool(
        "scale_attn_weights",
        true,
        "scaling attention scores by 1/√head_size",
    )?;
    r.expect_bool(
        "scale_attn_by_inverse_layer_idx",
        false,
        "scaling attention by 1/(layer+1)",
    )?;
    if r.opt_bool("tie_word_embeddings")? == Some(false) {
        return Err(r.err(
            "`tie_word_embeddings` is false: wafer's GPT-2 uses the token embedding as its classifier".into(),
        ));
    }
    let hidden = r.take("n_inner");
    let hidden_dim = match hidden {
        None | Some(Value::Null) => 4 * dim,
        Some(v) => count_of(r, "n_inner", v)?,
    };
    Ok(Config {
        dim,
        hidden_dim,
        n_layers: r.count("n_layer")?,
        n_heads: heads,
        n_kv_heads: heads,
        vocab_size: r.count("vocab_size")?,
        seq_len: r.count("n_positions")?,
        rope_theta: 10000.0,
        rope_pairs: RopePairs::Adjacent,
        norm_eps: r.opt_num("layer_norm_epsilon")?.unwrap_or(1e-5) as f32,
        tied_embeddings: true,
        rope_scaling: None,
        family: Family::Gpt2,
        moe: None,
        head_dim: None,
        sliding: None,
    })
}

fn count_of(r: &Reader, key: &str, v: &Value) -> Result<usize, ModelError> {
    v.as_u64()
        .and_then(|x| usize::try_from(x).ok())
        .ok_or_else(|| r.err(format!("`{key}` must be a non-negative integer, not {v}")))
}

/// The config's object, with the keys read so far.
struct Reader<'a> {
    obj: &'a Map<String, Value>,
    used: BTreeSet<&'static str>,
    file: &'a str,
}

impl<'a> Reader<'a> {
    fn err(&self, message: String) -> ModelError {
        ModelError::Format {
            file: self.file.to_string(),
            message,
        }
    }
    fn take(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.insert(key);
        self.obj.get(key)
    }
    fn count(&mut self, key: &'static str) -> Result<usize, ModelError> {
        self.opt_count(key)?
            .ok_or_else(|| self.err(format!("missing `{key}`")))
    }
    fn opt_count(&mut self, key: &'static str) -> Result<Option<usize>, ModelError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => count_of(self, key, v).map(Some),
        }
    }
    fn opt_num(&mut self, key: &'static str) -> Result<Option<f64>, ModelError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let x = v
                    .as_f64()
                    .ok_or_else(|| self.err(format!("`{key}` must be a number, not {v}")))?;
                if !x.is_finite() {
                    return Err(self.err(format!("`{key}` is {x}")));
                }
                Ok(Some(x))
            }
        }
    }
    fn opt_bool(&mut self, key: &'static str) -> Result<Option<bool>, ModelError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(format!("`{key}` must be true or false, not {v}"))),
        }
    }
    fn str(&mut self, key: &'static str) -> Result<Option<&'a str>, ModelError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(format!("`{key}` must be a string, not {v}"))),
        }
    }
    /// A string field wafer implements one way: absent, or one of `ok`.
    fn expect_str(
        &mut self,
        key: &'static str,
        ok: &[&str],
        default: &str,
        what: &str,
    ) -> Result<(), ModelError> {
        match self.str(key)? {
            Some(s) if !ok.contains(&s) => Err(self.err(format!(
                "`{key}` is `{s}`: wafer implements `{default}` ({what})"
            ))),
            _ => Ok(()),
        }
    }
    /// A flag wafer implements one way: absent, or `implemented`.
    fn expect_bool(
        &mut self,
        key: &'static str,
        implemented: bool,
        what: &str,
    ) -> Result<(), ModelError> {
        match self.opt_bool(key)? {
            Some(b) if b != implemented => Err(self.err(format!(
                "`{key}` is {b}: wafer implements only {} ({what})",
                if implemented { "true" } else { "false" }
            ))),
            _ => Ok(()),
        }
    }
    /// Every key was read or is inert; else the first other one is named.
    fn finish(&self) -> Result<(), ModelError> {
        for key in self.obj.keys() {
            if !self.used.contains(key.as_str()) && !INERT.contains(&key.as_str()) {
                return Err(self.err(format!(
                    "`{key}` is not a setting wafer implements for this model type; a model that needs it would run differently here (remove it only if it does not change the computation)"
                )));
            }
        }
        Ok(())
    }
}
