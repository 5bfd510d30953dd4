//! Hugging Face checkpoints (Llama family, GPT-2 and gpt-oss): a directory with `config.json` and
//! `model.safetensors`, or shards listed in `model.safetensors.index.json`.
//! Tensors in f32, f16 or bf16 are widened to f32 and renamed to the Llama
//! names the model code fetches (`model.layers.0.self_attn.q_proj.weight` →
//! `layers.0.attention.wq.weight`; Mixtral's `block_sparse_moe.gate` and
//! `.experts.E.w1` → `feed_forward.gate`, `feed_forward.experts.E.w1`).
//! gpt-oss's fused and MXFP4 experts are cut apart and decoded by
//! `gpt_oss.rs`. The classifier follows
//! `tie_word_embeddings`, as transformers builds it. `config.rs` reads
//! `config.json`.

pub mod config;
pub mod gpt_oss;

use crate::model::{Config, Family, ModelError, Tensor, Weights};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeSet;
use std::path::Path;

/// Our name for a Hugging Face tensor name, if the model uses it.
pub fn our_name(hf: &str) -> Option<String> {
    if let Some(rest) = hf.strip_prefix("model.layers.") {
        let (layer, tail) = rest.split_once('.')?;
        let ours = match tail {
            "input_layernorm.weight" => "attention_norm.weight",
            "self_attn.q_proj.weight" => "attention.wq.weight",
            "self_attn.k_proj.weight" => "attention.wk.weight",
            "self_attn.v_proj.weight" => "attention.wv.weight",
            "self_attn.o_proj.weight" => "attention.wo.weight",
            "post_attention_layernorm.weight" => "ffn_norm.weight",
            "mlp.gate_proj.weight" => "feed_forward.w1.weight",
            "mlp.up_proj.weight" => "feed_forward.w3.weight",
            "mlp.down_proj.weight" => "feed_forward.w2.weight",
            // Mixtral's mixture of experts: the router and each expert's
            // w1 (gate), w2 (down), w3 (up), as llama2.c names them.
            "block_sparse_moe.gate.weight" => "feed_forward.gate.weight",
            _ => {
                let rest = tail.strip_prefix("block_sparse_moe.experts.")?;
                let (expert, w) = rest.split_once('.')?;
                expert.parse::<u32>().ok()?;
                if !matches!(w, "w1.weight" | "w2.weight" | "w3.weight") {
                    return None;
                }
                return Some(format!("layers.{layer}.feed_forward.experts.{expert}.{w}"));
            }
        };
        return Some(format!("layers.{layer}.{ours}"));
    }
    Some(
        match hf {
            "model.embed_tokens.weight" => "tok_embeddings.weight",
            "model.norm.weight" => "norm.weight",
            "lm_head.weight" => "output.weight",
            _ => return None,
        }
        .to_string(),
    )
}

/// Load a Hugging Face model directory.
pub fn load(dir: &Path) -> Result<(Config, Weights), ModelError> {
    let config = config_of(dir)?;
    let mut raw = Weights {
        tensors: Default::default(),
        source: dir.display().to_string(),
    };
    for path in shards(dir)? {
        let bytes = read(&path)?;
        add_tensors(&mut raw, &bytes, &path.display().to_string(), &config)?;
    }
    finish(config, raw)
}

/// A one-file checkpoint from memory: `config.json`'s text and
/// `model.safetensors`'s bytes; `name` stands for the directory in errors.
pub fn from_bytes(
    config_json: &str,
    safetensors: &[u8],
    name: &str,
) -> Result<(Config, Weights), ModelError> {
    let config = config::parse(config_json, &format!("{name}/config.json"))?;
    let mut raw = Weights {
        tensors: Default::default(),
        source: name.to_string(),
    };
    add_tensors(
        &mut raw,
        safetensors,
        &format!("{name}/model.safetensors"),
        &config,
    )?;
    finish(config, raw)
}

/// A directory's config, checked against what its files hold (reading only
/// the safetensors headers): an untied model needs its classifier.
pub fn config_of(dir: &Path) -> Result<Config, ModelError> {
    let path = dir.join("config.json");
    let text = String::from_utf8(read(&path)?).map_err(|_| ModelError::Format {
        file: path.display().to_string(),
        message: "not UTF-8".into(),
    })?;
    let config = config::parse(&text, &path.display().to_string())?;
    if !config.tied_embeddings && !has_lm_head(dir)? {
        return Err(untied_without_classifier(dir.display().to_string()));
    }
    Ok(config)
}

fn untied_without_classifier(source: String) -> ModelError {
    ModelError::Format {
        file: source,
        message: "config.json says `tie_word_embeddings` is false, but the checkpoint has no `lm_head.weight`: its classifier is missing".into(),
    }
}

fn read(file: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(file).map_err(|e| ModelError::Format {
        file: file.display().to_string(),
        message: format!("cannot read: {e}"),
    })
}

/// The safetensors files: the shards named in `model.safetensors.index.json`,
/// else `model.safetensors`.
fn shards(dir: &Path) -> Result<Vec<std::path::PathBuf>, ModelError> {
    let index = dir.join("model.safetensors.index.json");
    if !index.exists() {
        return Ok(vec![dir.join("model.safetensors")]);
    }
    let format = |message: String| ModelError::Format {
        file: index.display().to_string(),
        message,
    };
    let v: serde_json::Value =
        serde_json::from_slice(&read(&index)?).map_err(|e| format(format!("not JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| format("no `weight_map` object".into()))?;
    let mut set = BTreeSet::new();
    for (tensor, f) in map {
        let f = f
            .as_str()
            .ok_or_else(|| format(format!("`weight_map.{tensor}` is not a file name")))?;
        // Shards sit beside the index: a name that climbs out is refused.
        if Path::new(f).components().count() != 1 || f == ".." || f == "." {
            return Err(format(format!(
                "`weight_map.{tensor}` names `{f}`, not a file in this directory"
            )));
        }
        set.insert(f.to_string());
    }
    Ok(set.into_iter().map(|f| dir.join(f)).collect())
}

/// Every tensor of one safetensors file, widened to f32 under the names
/// the model code fetches. A tensor the model does not use is an error
/// (a bias the config did not announce would otherwise be dropped), but
/// for buffers transformers derives from the config.
fn add_tensors(
    raw: &mut Weights,
    bytes: &[u8],
    file: &str,
    config: &Config,
) -> Result<(), ModelError> {
    let format = |message: String| ModelError::Format {
        file: file.to_string(),
        message,
    };
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| format(format!("not a safetensors file: {}", safetensors_error(&e))))?;
    for (name, view) in st.tensors() {
        let ours = match config.family {
            // GPT-2's classifier is tied to `wte` (a saved copy is that).
            Family::Gpt2 if name == "lm_head.weight" => continue,
            // Converted in `finish`, once every GPT-2 tensor is read.
            Family::Gpt2 => gpt2_kept(&name),
            Family::Llama => our_name(&name),
            // Converted in `finish`, once every tensor is read.
            Family::GptOss => gpt_oss::kept(&name),
        };
        let ours = match ours {
            Some(n) => n,
            None if derived_buffer(&name) => continue,
            None => {
                return Err(format(format!(
                    "tensor `{name}` is not part of the {} model wafer implements (does config.json describe this checkpoint?)",
                    match config.family {
                        Family::Gpt2 => "GPT-2",
                        Family::Llama => "Llama",
                        Family::GptOss => "gpt-oss",
                    }
                )));
            }
        };
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes(c.try_into().unwrap()).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes(c.try_into().unwrap()).to_f32())
                .collect(),
            // gpt-oss's MXFP4 experts: bytes, decoded in `finish`.
            Dtype::U8 if config.family == Family::GptOss && gpt_oss::is_bytes(&ours) => {
                data.iter().map(|b| *b as f32).collect()
            }
            other => {
                return Err(format(format!(
                    "tensor `{name}` is {other:?}; wafer reads f32, f16 and bf16"
                )));
            }
        };
        if raw.tensors.contains_key(&ours) {
            return Err(format(format!("tensor `{name}` appears twice")));
        }
        raw.tensors.insert(
            ours,
            Tensor {
                shape: view.shape().to_vec(),
                data: values,
            },
        );
    }
    Ok(())
}

/// The safetensors crate's error as a sentence (its Display is the
/// variant's name).
fn safetensors_error(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::InvalidHeader => "its header is not UTF-8".into(),
        E::InvalidHeaderStart => "its header does not start with `{`".into(),
        E::InvalidHeaderDeserialization => {
            "its header is not the JSON a safetensors header holds".into()
        }
        E::HeaderTooLarge => "its header length is over the 100 MB safetensors allows".into(),
        E::HeaderTooSmall => "it is shorter than the 8-byte header length".into(),
        E::InvalidHeaderLength => {
            "its header length points past the end of the file (truncated?)".into()
        }
        E::TensorNotFound(n) => format!("tensor `{n}` is not in it"),
        E::TensorInvalidInfo => "a tensor's shape, dtype and offsets disagree".into(),
        E::InvalidOffset(n) => format!("tensor `{n}`'s offsets are out of order or overlap"),
        E::IoError(e) => e.to_string(),
        E::JsonError(e) => format!("its header is not valid JSON ({e})"),
        E::InvalidTensorView(d, s, n) => {
            format!("a {d:?} tensor of shape {s:?} does not take {n} bytes")
        }
        E::MetadataIncompleteBuffer => {
            "its tensors do not cover the data that follows the header (truncated or padded?)"
                .into()
        }
        E::ValidationOverflow => "a tensor's size overflows (a corrupt shape)".into(),
    }
}

/// Buffers some checkpoints save that transformers recomputes from the
/// config: RoPE's inverse frequencies, GPT-2's causal masks.
fn derived_buffer(hf: &str) -> bool {
    hf.ends_with(".rotary_emb.inv_freq")
        || hf.ends_with(".attn.bias")
        || hf.ends_with(".attn.masked_bias")
}

/// The classifier as transformers builds it: a tied model's is the
/// embedding (an `lm_head.weight` beside it is the same tensor), an untied
/// model's must be in the files.
fn finish(mut config: Config, raw: Weights) -> Result<(Config, Weights), ModelError> {
    let mut weights = match config.family {
        Family::Gpt2 => gpt2_convert(raw, &config)?,
        Family::GptOss => gpt_oss::convert(raw, &config)?,
        Family::Llama => raw,
    };
    if config.tied_embeddings {
        if let Some(emb) = weights.tensors.get("tok_embeddings.weight").cloned() {
            weights.tensors.insert("output.weight".into(), emb);
        }
    } else if !weights.tensors.contains_key("output.weight") {
        return Err(untied_without_classifier(weights.source.clone()));
    }
    config.tied_embeddings = config.tied_embeddings || config.family == Family::Gpt2;
    Ok((config, weights))
}

/// Whether the directory holds a separate classifier (`lm_head.weight`),
/// reading only the shard index or the safetensors header, not the tensors.
pub fn has_lm_head(dir: &Path) -> Result<bool, ModelError> {
    let format = |file: &Path, message: String| ModelError::Format {
        file: file.display().to_string(),
        message,
    };
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let v: serde_json::Value = serde_json::from_slice(&read(&index)?)
            .map_err(|e| format(&index, format!("not JSON: {e}")))?;
        return Ok(v
            .get("weight_map")
            .and_then(|m| m.get("lm_head.weight"))
            .is_some());
    }
    let path = dir.join("model.safetensors");
    let mut file =
        std::fs::File::open(&path).map_err(|e| format(&path, format!("cannot read: {e}")))?;
    let mut len = [0u8; 8];
    std::io::Read::read_exact(&mut file, &mut len)
        .map_err(|e| format(&path, format!("no safetensors header: {e}")))?;
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 {
        return Err(format(
            &path,
            format!("a {n}-byte header is not plausible; is this a safetensors file?"),
        ));
    }
    let mut header = vec![0u8; n as usize];
    std::io::Read::read_exact(&mut file, &mut header)
        .map_err(|e| format(&path, format!("truncated header: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| format(&path, format!("header is not JSON: {e}")))?;
    Ok(v.get("lm_head.weight").is_some())
}

/// GPT-2's tensor names without the optional `transformer.` prefix, for
/// the tensors the model uses (not the attention-mask buffers).
fn gpt2_kept(hf: &str) -> Option<String> {
    let n = hf.strip_prefix("transformer.").unwrap_or(hf);
    let top = matches!(n, "wte.weight" | "wpe.weight" | "ln_f.weight" | "ln_f.bias");
    (top || (n.starts_with("h.") && !derived_buffer(n))).then(|| n.to_string())
}

/// GPT-2's Conv1D weights are stored `[in, out]` and q, k, v stacked in
/// `c_attn`; the model code reads `[out, in]` matrices by Llama-style name.
fn gpt2_convert(raw: Weights, c: &Config) -> Result<Weights, ModelError> {
    let file = raw.source.clone();
    let get = |name: &str, shape: &[usize]| -> Result<Tensor, ModelError> {
        let t = raw.tensors.get(name).ok_or_else(|| ModelError::Missing {
            file: file.clone(),
            tensor: name.into(),
        })?;
        if t.shape != shape {
            return Err(ModelError::Shape {
                file: file.clone(),
                tensor: name.into(),
                expected: shape.to_vec(),
                found: t.shape.clone(),
            });
        }
        Ok(t.clone())
    };
    // Columns `from .. from + out` of an `[in, cols]` tensor, as `[out, in]`.
    let transposed = |t: &Tensor, from: usize, out: usize| -> Tensor {
        let (rows, cols) = (t.shape[0], t.shape[1]);
        let mut data = Vec::with_capacity(out * rows);
        for o in from..from + out {
            data.extend((0..rows).map(|i| t.data[i * cols + o]));
        }
        Tensor {
            shape: vec![out, rows],
            data,
        }
    };
    let slice = |t: &Tensor, from: usize, len: usize| Tensor {
        shape: vec![len],
        data: t.data[from..from + len].to_vec(),
    };
    let (d, h) = (c.dim, c.hidden_dim);
    let mut w = Weights {
        tensors: Default::default(),
        source: raw.source.clone(),
    };
    let mut put = |name: String, t: Tensor| {
        w.tensors.insert(name, t);
    };
    put(
        "tok_embeddings.weight".into(),
        get("wte.weight", &[c.vocab_size, d])?,
    );
    put(
        "pos_embeddings.weight".into(),
        get("wpe.weight", &[c.seq_len, d])?,
    );
    put("norm.weight".into(), get("ln_f.weight", &[d])?);
    put("norm.bias".into(), get("ln_f.bias", &[d])?);
    for l in 0..c.n_layers {
        let (p, o) = (format!("h.{l}"), format!("layers.{l}"));
        for (hf, ours) in [("ln_1", "attention_norm"), ("ln_2", "ffn_norm")] {
            put(
                format!("{o}.{ours}.weight"),
                get(&format!("{p}.{hf}.weight"), &[d])?,
            );
            put(
                format!("{o}.{ours}.bias"),
                get(&format!("{p}.{hf}.bias"), &[d])?,
            );
        }
        let qkv = get(&format!("{p}.attn.c_attn.weight"), &[d, 3 * d])?;
        let qkv_b = get(&format!("{p}.attn.c_attn.bias"), &[3 * d])?;
        for (k, name) in ["wq", "wk", "wv"].iter().enumerate() {
            put(
                format!("{o}.attention.{name}.weight"),
                transposed(&qkv, k * d, d),
            );
            put(
                format!("{o}.attention.{name}.bias"),
                slice(&qkv_b, k * d, d),
            );
        }
        let linear = [
            ("attn.c_proj", "attention.wo", d, d),
            ("mlp.c_fc", "feed_forward.w1", d, h),
            ("mlp.c_proj", "feed_forward.w2", h, d),
        ];
        for (hf, ours, rows, cols) in linear {
            let t = get(&format!("{p}.{hf}.weight"), &[rows, cols])?;
            put(format!("{o}.{ours}.weight"), transposed(&t, 0, cols));
            put(
                format!("{o}.{ours}.bias"),
                get(&format!("{p}.{hf}.bias"), &[cols])?,
            );
        }
    }
    Ok(w)
}
