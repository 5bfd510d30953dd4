//! gpt-oss's tensors onto the names [`crate::gpt_oss`] fetches.
//!
//! Its experts are stored fused: for each layer one `gate_up_proj` of
//! every expert, `[experts, dim, 2·hidden]` (inputs × outputs, gate and up
//! interleaved: output `2j` is gate row `j`, `2j + 1` up row `j`), and one
//! `down_proj`, `[experts, hidden, dim]`; or, as OpenAI ships them, in
//! MXFP4: `*_blocks` `[experts, outputs, inputs / 32, 16]` (two E2M1 codes
//! a byte, the even element in the low nibble) and `*_scales` `[experts,
//! outputs, inputs / 32]` (E8M0, `2^(s − 127)`), outputs first. Both are
//! cut into each expert's `w1` (gate), `w3` (up) and `w2` (down) as
//! `[outputs, inputs]`, the MXFP4 values decoded exactly as transformers'
//! `convert_moe_packed_tensors` does (each code's value times its block's
//! power of two).

use crate::model::{Config, ModelError, Tensor, Weights};
use wafer_emulator::dtype::E2M1;

/// The name a gpt-oss tensor is kept under until [`convert`] (its Hugging
/// Face name without `model.`), if the model uses it.
pub fn kept(hf: &str) -> Option<String> {
    let n = hf.strip_prefix("model.").unwrap_or(hf);
    if matches!(n, "embed_tokens.weight" | "norm.weight" | "lm_head.weight") {
        return Some(n.to_string());
    }
    let (_, tail) = n.strip_prefix("layers.")?.split_once('.')?;
    let used = matches!(
        tail,
        "input_layernorm.weight"
            | "post_attention_layernorm.weight"
            | "self_attn.q_proj.weight"
            | "self_attn.q_proj.bias"
            | "self_attn.k_proj.weight"
            | "self_attn.k_proj.bias"
            | "self_attn.v_proj.weight"
            | "self_attn.v_proj.bias"
            | "self_attn.o_proj.weight"
            | "self_attn.o_proj.bias"
            | "self_attn.sinks"
            | "mlp.router.weight"
            | "mlp.router.bias"
            | "mlp.experts.gate_up_proj"
            | "mlp.experts.gate_up_proj_bias"
            | "mlp.experts.gate_up_proj_blocks"
            | "mlp.experts.gate_up_proj_scales"
            | "mlp.experts.down_proj"
            | "mlp.experts.down_proj_bias"
            | "mlp.experts.down_proj_blocks"
            | "mlp.experts.down_proj_scales"
    );
    used.then(|| n.to_string())
}

/// Whether a kept tensor is MXFP4 bytes (read as they are, one value a
/// byte), not numbers.
pub fn is_bytes(kept: &str) -> bool {
    kept.ends_with("_blocks") || kept.ends_with("_scales")
}

/// The kept tensors under the model code's names, the experts cut apart.
pub fn convert(raw: Weights, c: &Config) -> Result<Weights, ModelError> {
    let file = raw.source.clone();
    let get = |name: &str, shape: &[usize]| raw.get(name, shape);
    let experts = c.moe.map_or(0, |m| m.experts);
    let (d, h, v) = (c.dim, c.hidden_dim, c.vocab_size);
    let (q, kv) = (c.n_heads * c.head_size(), c.kv_dim());
    let mut w = Weights {
        tensors: Default::default(),
        source: raw.source.clone(),
    };
    let mut put = |name: String, t: Tensor| {
        w.tensors.insert(name, t);
    };
    put(
        "tok_embeddings.weight".into(),
        get("embed_tokens.weight", &[v, d])?.clone(),
    );
    put("norm.weight".into(), get("norm.weight", &[d])?.clone());
    if let Ok(t) = get("lm_head.weight", &[v, d]) {
        put("output.weight".into(), t.clone());
    }
    for l in 0..c.n_layers {
        let (p, o) = (format!("layers.{l}"), format!("layers.{l}"));
        let a = format!("{o}.attention");
        for (hf, ours) in [
            ("input_layernorm", "attention_norm"),
            ("post_attention_layernorm", "ffn_norm"),
        ] {
            put(
                format!("{o}.{ours}.weight"),
                get(&format!("{p}.{hf}.weight"), &[d])?.clone(),
            );
        }
        for (hf, ours, rows, cols) in [
            ("q_proj", "wq", q, d),
            ("k_proj", "wk", kv, d),
            ("v_proj", "wv", kv, d),
            ("o_proj", "wo", d, q),
        ] {
            let s = format!("{p}.self_attn.{hf}");
            put(
                format!("{a}.{ours}.weight"),
                get(&format!("{s}.weight"), &[rows, cols])?.clone(),
            );
            put(
                format!("{a}.{ours}.bias"),
                get(&format!("{s}.bias"), &[rows])?.clone(),
            );
        }
        put(
            format!("{a}.sinks"),
            get(&format!("{p}.self_attn.sinks"), &[c.n_heads])?.clone(),
        );
        let f = format!("{o}.feed_forward");
        let m = format!("{p}.mlp");
        put(
            format!("{f}.gate.weight"),
            get(&format!("{m}.router.weight"), &[experts, d])?.clone(),
        );
        put(
            format!("{f}.gate.bias"),
            get(&format!("{m}.router.bias"), &[experts])?.clone(),
        );
        let e = format!("{m}.experts");
        // Each expert's gate_up and down as [outputs, inputs] rows.
        let fused = |name: &str, outs: usize, ins: usize| -> Result<Vec<f32>, ModelError> {
            let blocks = format!("{e}.{name}_blocks");
            if raw.tensors.contains_key(&blocks) {
                let b = get(&blocks, &[experts, outs, ins / 32, 16])?;
                let s = get(&format!("{e}.{name}_scales"), &[experts, outs, ins / 32])?;
                if !ins.is_multiple_of(32) {
                    return Err(ModelError::Format {
                        file: file.clone(),
                        message: format!(
                            "`{blocks}`: MXFP4 blocks of 32 do not divide {ins} inputs"
                        ),
                    });
                }
                return decode_mxfp4(&b.data, &s.data).ok_or_else(|| ModelError::Format {
                    file: file.clone(),
                    message: format!("`{blocks}` or its scales hold a value that is not a byte"),
                });
            }
            // Stored [experts, inputs, outputs]: transposed per expert.
            let t = get(&format!("{e}.{name}"), &[experts, ins, outs])?;
            let mut out = Vec::with_capacity(t.data.len());
            for x in t.data.chunks_exact(ins * outs) {
                for r in 0..outs {
                    out.extend((0..ins).map(|i| x[i * outs + r]));
                }
            }
            Ok(out)
        };
        let gate_up = fused("gate_up_proj", 2 * h, d)?;
        let down = fused("down_proj", d, h)?;
        let gate_up_b = get(&format!("{e}.gate_up_proj_bias"), &[experts, 2 * h])?;
        let down_b = get(&format!("{e}.down_proj_bias"), &[experts, d])?;
        for x in 0..experts {
            let at = format!("{f}.experts.{x}");
            let rows = &gate_up[x * 2 * h * d..(x + 1) * 2 * h * d];
            let bias = &gate_up_b.data[x * 2 * h..(x + 1) * 2 * h];
            // Gate is the even outputs, up the odd ones.
            for (ours, parity) in [("w1", 0), ("w3", 1)] {
                let data = (0..h)
                    .flat_map(|j| rows[(2 * j + parity) * d..][..d].iter().copied())
                    .collect();
                put(
                    format!("{at}.{ours}.weight"),
                    Tensor {
                        shape: vec![h, d],
                        data,
                    },
                );
                let data = (0..h).map(|j| bias[2 * j + parity]).collect();
                put(
                    format!("{at}.{ours}.bias"),
                    Tensor {
                        shape: vec![h],
                        data,
                    },
                );
            }
            put(
                format!("{at}.w2.weight"),
                Tensor {
                    shape: vec![d, h],
                    data: down[x * d * h..(x + 1) * d * h].to_vec(),
                },
            );
            put(
                format!("{at}.w2.bias"),
                Tensor {
                    shape: vec![d],
                    data: down_b.data[x * d..(x + 1) * d].to_vec(),
                },
            );
        }
    }
    Ok(w)
}

/// MXFP4 blocks (bytes as values) and their scales, decoded in order:
/// each byte's low nibble, then its high one, times `2^(scale − 127)`.
/// `None` where a value is not a byte.
pub fn decode_mxfp4(blocks: &[f32], scales: &[f32]) -> Option<Vec<f32>> {
    let byte = |v: f32| (v.fract() == 0.0 && (0.0..=255.0).contains(&v)).then_some(v as u8);
    let mut out = Vec::with_capacity(blocks.len() * 2);
    for (group, s) in blocks.chunks_exact(16).zip(scales) {
        let scale = 2f32.powi(byte(*s)? as i32 - 127);
        for b in group {
            let b = byte(*b)?;
            out.push(E2M1[(b & 15) as usize] * scale);
            out.push(E2M1[(b >> 4) as usize] * scale);
        }
    }
    Some(out)
}
