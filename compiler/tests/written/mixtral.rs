//! A shrunk Mixtral (`MixtralForCausalLM`: 2 layers, 4 experts, 2 a
//! token) written as a Hugging Face directory: for the front end's, the
//! wafer's and the command line's tests (each uses some of it).
#![allow(dead_code)]

use std::collections::BTreeMap;
use wafer_compiler::Config;

/// Mixtral-8x7B-v0.1's `config.json`, shrunk.
pub fn config_json(sliding_window: &str) -> String {
    format!(
        r#"{{"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 16, "intermediate_size": 24,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 20, "max_position_embeddings": 32,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-05, "num_local_experts": 4, "num_experts_per_tok": 2, "hidden_act": "silu",
        "router_aux_loss_coef": 0.02, "output_router_logits": false, "sliding_window": {sliding_window}, "tie_word_embeddings": false,
        "attention_dropout": 0.0, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2}}"#
    )
}

/// Seeded tensors of the shrunk Mixtral, by Hugging Face name.
pub fn tensors(c: &Config) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut next = super::seeded(5, 0.8);
    let mut out = BTreeMap::new();
    let mut put = |name: String, shape: Vec<usize>| {
        let n = shape.iter().product();
        out.insert(name, (shape, (0..n).map(|_| next()).collect()));
    };
    let (d, kv, h, v) = (c.dim, c.kv_dim(), c.hidden_dim, c.vocab_size);
    let experts = c.moe.unwrap().experts;
    put("model.embed_tokens.weight".into(), vec![v, d]);
    for l in 0..c.n_layers {
        let p = format!("model.layers.{l}");
        put(format!("{p}.input_layernorm.weight"), vec![d]);
        put(format!("{p}.self_attn.q_proj.weight"), vec![d, d]);
        put(format!("{p}.self_attn.k_proj.weight"), vec![kv, d]);
        put(format!("{p}.self_attn.v_proj.weight"), vec![kv, d]);
        put(format!("{p}.self_attn.o_proj.weight"), vec![d, d]);
        put(format!("{p}.post_attention_layernorm.weight"), vec![d]);
        put(
            format!("{p}.block_sparse_moe.gate.weight"),
            vec![experts, d],
        );
        for e in 0..experts {
            let q = format!("{p}.block_sparse_moe.experts.{e}");
            put(format!("{q}.w1.weight"), vec![h, d]);
            put(format!("{q}.w3.weight"), vec![h, d]);
            put(format!("{q}.w2.weight"), vec![d, h]);
        }
    }
    put("model.norm.weight".into(), vec![d]);
    put("lm_head.weight".into(), vec![v, d]);
    // BOS's logit is 0, so greedy decoding does not stop at once (another
    // of the 19 is positive but with odds of 2^-19).
    let head: &mut Vec<f32> = &mut out.get_mut("lm_head.weight").unwrap().1;
    head[wafer_compiler::tokenizer::BOS as usize * d..][..d].fill(0.0);
    out
}

pub fn safetensors_bytes(all: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> Vec<u8> {
    super::f32_safetensors(all.iter().map(|(n, (s, v))| (n.clone(), &s[..], &v[..])))
}

/// The directory: `config.json` and `model.safetensors`.
pub fn write_dir(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let json = config_json("null");
    let c = wafer_compiler::hf::config::parse(&json, "config.json").unwrap();
    std::fs::write(dir.join("config.json"), &json).unwrap();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors_bytes(&tensors(&c)),
    )
    .unwrap();
}
