//! llama2.c's legacy `.bin` checkpoints: a header of seven little-endian
//! i32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
//! seq_len; a negative vocab_size means the classifier is not shared with
//! the embedding), then f32 tensors in a fixed order, each layer's stacked;
//! two legacy RoPE tables (skipped: RoPE is recomputed with θ = 10000 on
//! adjacent pairs); then, if not shared, the classifier.

use crate::model::{Config, ModelError, Tensor, Weights};
use std::path::Path;

/// Read a checkpoint: its config and its weights, named as Llama names them.
pub fn load(path: &Path) -> Result<(Config, Weights), ModelError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ModelError::Format {
        file: file.clone(),
        message: format!("cannot read: {e}"),
    })?;
    parse(&bytes, &file)
}

/// [`load`] on bytes already read; `file` names them in errors.
pub fn parse(bytes: &[u8], file: &str) -> Result<(Config, Weights), ModelError> {
    let err = |message: String| ModelError::Format {
        file: file.to_string(),
        message,
    };
    if bytes.len() < 28 {
        return Err(err(format!(
            "{} bytes is too short for the 28-byte llama2.c header",
            bytes.len()
        )));
    }
    let h: Vec<i32> = bytes[..28]
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    if let Some(i) = h.iter().enumerate().position(|(i, v)| *v <= 0 && i != 5) {
        let names = [
            "dim",
            "hidden_dim",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "vocab_size",
            "seq_len",
        ];
        return Err(err(format!(
            "header field {} is {}; is this a llama2.c checkpoint?",
            names[i], h[i]
        )));
    }
    let shared = h[5] > 0;
    let cfg = Config {
        dim: h[0] as usize,
        hidden_dim: h[1] as usize,
        n_layers: h[2] as usize,
        n_heads: h[3] as usize,
        n_kv_heads: h[4] as usize,
        vocab_size: h[5].unsigned_abs() as usize,
        seq_len: h[6] as usize,
        rope_theta: 10000.0,
        rope_pairs: crate::RopePairs::Adjacent,
        norm_eps: 1e-5,
        tied_embeddings: shared,
        rope_scaling: None,
        family: crate::model::Family::Llama,
        moe: None,
        head_dim: None,
        sliding: None,
    };
    cfg.validate()
        .map_err(|m| err(format!("inconsistent header: {m}")))?;
    let (d, hd, l, v, kv) = (
        cfg.dim,
        cfg.hidden_dim,
        cfg.n_layers,
        cfg.vocab_size,
        cfg.kv_dim(),
    );
    // (name, per-layer?, shape of one)
    let mut layout: Vec<(&str, bool, Vec<usize>)> = vec![
        ("tok_embeddings.weight", false, vec![v, d]),
        ("attention_norm.weight", true, vec![d]),
        ("attention.wq.weight", true, vec![d, d]),
        ("attention.wk.weight", true, vec![kv, d]),
        ("attention.wv.weight", true, vec![kv, d]),
        ("attention.wo.weight", true, vec![d, d]),
        ("ffn_norm.weight", true, vec![d]),
        ("feed_forward.w1.weight", true, vec![hd, d]),
        ("feed_forward.w2.weight", true, vec![d, hd]),
        ("feed_forward.w3.weight", true, vec![hd, d]),
        ("norm.weight", false, vec![d]),
        ("freq_cis", false, vec![cfg.seq_len * cfg.head_size()]),
    ];
    if !shared {
        layout.push(("output.weight", false, vec![v, d]));
    }
    let mut at = 28usize;
    let mut weights = Weights {
        tensors: Default::default(),
        source: file.to_string(),
    };
    for (name, per_layer, shape) in layout {
        let count: usize = shape.iter().product();
        for layer in 0..if per_layer { l } else { 1 } {
            let full = if per_layer {
                format!("layers.{layer}.{name}")
            } else {
                name.to_string()
            };
            let end = at + count * 4;
            if end > bytes.len() {
                return Err(err(format!(
                    "truncated in tensor `{full}` (shape {shape:?}): needs bytes {at}..{end}, the file has {}",
                    bytes.len()
                )));
            }
            let data: Vec<f32> = bytes[at..end]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            at = end;
            if name != "freq_cis" {
                weights.tensors.insert(
                    full,
                    Tensor {
                        shape: shape.clone(),
                        data,
                    },
                );
            }
        }
    }
    if at != bytes.len() {
        return Err(err(format!(
            "{} bytes left over after the last tensor: the header does not describe this file",
            bytes.len() - at
        )));
    }
    if shared {
        let emb = weights.tensors["tok_embeddings.weight"].clone();
        weights.tensors.insert("output.weight".into(), emb);
    }
    Ok((cfg, weights))
}
