//! The Hugging Face front end on a small Llama written by the test itself.

mod written;

use safetensors::{Dtype, tensor::TensorView};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wafer_compiler::{Config, RopePairs, hf, reference};

fn config() -> Config {
    Config {
        dim: 16,
        hidden_dim: 24,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        vocab_size: 20,
        seq_len: 32,
        rope_theta: 10000.0,
        rope_pairs: RopePairs::HalfSplit,
        norm_eps: 1e-6,
        tied_embeddings: true,
        rope_scaling: None,
        family: wafer_compiler::model::Family::Llama,
        moe: None,
        head_dim: None,
        sliding: None,
    }
}

/// Seeded values for every tensor, by Hugging Face name and shape.
fn tensors(c: &Config) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut next = written::seeded(11, 0.6);
    let mut out = BTreeMap::new();
    let mut put = |name: String, shape: Vec<usize>| {
        let n = shape.iter().product();
        out.insert(name, (shape, (0..n).map(|_| next()).collect()));
    };
    let (d, kv, h, v) = (c.dim, c.kv_dim(), c.hidden_dim, c.vocab_size);
    put("model.embed_tokens.weight".into(), vec![v, d]);
    for l in 0..c.n_layers {
        let p = format!("model.layers.{l}");
        put(format!("{p}.input_layernorm.weight"), vec![d]);
        put(format!("{p}.self_attn.q_proj.weight"), vec![d, d]);
        put(format!("{p}.self_attn.k_proj.weight"), vec![kv, d]);
        put(format!("{p}.self_attn.v_proj.weight"), vec![kv, d]);
        put(format!("{p}.self_attn.o_proj.weight"), vec![d, d]);
        put(format!("{p}.post_attention_layernorm.weight"), vec![d]);
        put(format!("{p}.mlp.gate_proj.weight"), vec![h, d]);
        put(format!("{p}.mlp.up_proj.weight"), vec![h, d]);
        put(format!("{p}.mlp.down_proj.weight"), vec![d, h]);
    }
    put("model.norm.weight".into(), vec![d]);
    out
}

fn write_dir(name: &str, c: &Config, dtype: Dtype, shards: usize) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"model_type": "llama", "tie_word_embeddings": true, "hidden_size": {}, "intermediate_size": {}, "num_hidden_layers": {}, "num_attention_heads": {}, "num_key_value_heads": {}, "vocab_size": {}, "max_position_embeddings": {}, "rope_theta": {}, "rms_norm_eps": {}}}"#,
            c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len, c.rope_theta, c.norm_eps
        ),
    )
    .unwrap();
    let all = tensors(c);
    let encode = |v: &[f32]| -> Vec<u8> {
        match dtype {
            Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Dtype::BF16 => v
                .iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                .collect(),
            _ => v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
        }
    };
    let bytes: BTreeMap<String, (Vec<usize>, Vec<u8>)> = all
        .iter()
        .map(|(n, (s, v))| (n.clone(), (s.clone(), encode(v))))
        .collect();
    let names: Vec<&String> = bytes.keys().collect();
    let mut weight_map = serde_json::Map::new();
    for shard in 0..shards {
        let file = if shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{shard}.safetensors")
        };
        let views: Vec<(String, TensorView)> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| i % shards == shard)
            .map(|(_, n)| {
                (
                    (*n).clone(),
                    TensorView::new(dtype, bytes[*n].0.clone(), &bytes[*n].1).unwrap(),
                )
            })
            .collect();
        for (n, _) in &views {
            weight_map.insert(n.clone(), serde_json::Value::String(file.clone()));
        }
        std::fs::write(
            dir.join(&file),
            safetensors::serialize(views, &None).unwrap(),
        )
        .unwrap();
    }
    if shards > 1 {
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            serde_json::json!({ "weight_map": weight_map }).to_string(),
        )
        .unwrap();
    }
    dir
}

/// The reference model built straight from the values the test wrote.
fn direct(c: &Config, round: fn(f32) -> f32) -> reference::Model {
    let mut w = wafer_compiler::Weights::default();
    for (name, (shape, values)) in tensors(c) {
        let data = values.iter().map(|v| round(*v)).collect();
        w.tensors.insert(
            hf::our_name(&name).unwrap(),
            wafer_compiler::Tensor { shape, data },
        );
    }
    w.tensors.insert(
        "output.weight".into(),
        w.tensors["tok_embeddings.weight"].clone(),
    );
    reference::Model::load(&w, c).unwrap()
}

fn logits(m: &reference::Model) -> Vec<Vec<f32>> {
    let mut cache = reference::KvCache::new(&m.config);
    [1u32, 7, 3, 19]
        .iter()
        .enumerate()
        .map(|(pos, t)| m.forward(*t, pos, &mut cache))
        .collect()
}

#[test]
fn a_written_llama_loads_and_runs_like_its_weights() {
    let c = config();
    for (name, dtype, shards, round) in [
        ("hf_f32", Dtype::F32, 1, (|x| x) as fn(f32) -> f32),
        ("hf_bf16_sharded", Dtype::BF16, 3, |x| {
            half::bf16::from_f32(x).to_f32()
        }),
        ("hf_f16", Dtype::F16, 1, |x| half::f16::from_f32(x).to_f32()),
    ] {
        let dir = write_dir(name, &c, dtype, shards);
        assert!(
            !hf::has_lm_head(&dir).unwrap(),
            "{name}: no lm_head was written"
        );
        let (loaded_config, w) = hf::load(&dir).unwrap();
        assert_eq!(loaded_config, c);
        let model = reference::Model::load(&w, &loaded_config).unwrap();
        assert_eq!(logits(&model), logits(&direct(&c, round)), "{name}");
    }
}

#[test]
fn a_bad_directory_names_the_file_and_the_tensor() {
    let c = config();
    let dir = write_dir("hf_bad", &c, Dtype::F32, 1);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let e = hf::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("cannot read"),
        "{e}"
    );
    // A config whose shapes disagree with the tensors: the model names one.
    let dir = write_dir("hf_mismatch", &c, Dtype::F32, 1);
    let text = std::fs::read_to_string(dir.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 24", "\"intermediate_size\": 30");
    std::fs::write(dir.join("config.json"), text).unwrap();
    let (c2, w) = hf::load(&dir).unwrap();
    let e = reference::Model::load(&w, &c2).err().unwrap().to_string();
    assert!(
        e.contains("hf_mismatch")
            && e.contains("feed_forward.w1.weight")
            && e.contains("expected [30, 16]"),
        "{e}"
    );
}

#[test]
fn a_written_llama_compiles_and_decodes_on_the_wafer_as_the_reference() {
    use wafer_compiler::decode::{Decoder, generate};
    use wafer_compiler::place::{Options, PlacementKind};
    let c = config();
    let dir = write_dir("hf_wafer", &c, Dtype::F32, 2);
    let (c, w) = hf::load(&dir).unwrap();
    let model = reference::Model::load(&w, &c).unwrap();
    let want = reference::generate(&model, &[7, 3], 24);
    for kind in [PlacementKind::Pipeline, PlacementKind::Mesh] {
        let o = Options {
            arch: wafer_emulator::Arch::wse3().with_grid(24, 24).unwrap(),
            dtype: wafer_emulator::DType::F32,
            placement: Some(kind),
            max_context: 32,
            reduce: wafer_kernels::reduce::Strategy::Tree { k: 2 },
            gemv: wafer_compiler::place::GemvChoice::Auto,
            region: wafer_compiler::region::Region::Whole,
            wafers: wafer_compiler::system::Wafers::Count(1),
            tiles: None,
        };
        let compiled = wafer_compiler::compile(&c, Some(&w), &o).unwrap();
        for overlap in [false, true] {
            let mut d = Decoder::new(&compiled);
            d.overlap(overlap);
            let got = generate(&mut d, &[7, 3], 24, None, |_, _| {}).unwrap();
            assert_eq!(got, want, "{kind}, overlapped {overlap}");
        }
    }
}

#[test]
fn rope_scaling_is_read_from_config_json_and_unknown_kinds_are_refused() {
    let base = r#"{"model_type": "llama", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 20, "max_position_embeddings": 32"#;
    let llama3 = format!(
        r#"{base}, "rope_scaling": {{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}}}"#
    );
    let c = hf::config::parse(&llama3, "a/config.json").unwrap();
    assert_eq!(
        c.rope_scaling,
        Some(wafer_compiler::model::RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original: 8192.0
        })
    );
    let linear = format!(r#"{base}, "rope_scaling": {{"type": "linear", "factor": 2.0}}}}"#);
    assert_eq!(
        hf::config::parse(&linear, "b/config.json")
            .unwrap()
            .rope_scaling,
        Some(wafer_compiler::model::RopeScaling::Linear { factor: 2.0 })
    );
    let yarn = format!(r#"{base}, "rope_scaling": {{"rope_type": "yarn", "factor": 4.0}}}}"#);
    let err = hf::config::parse(&yarn, "c/config.json")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("c/config.json") && err.contains("`yarn`"),
        "{err}"
    );
    let missing = format!(r#"{base}, "rope_scaling": {{"rope_type": "llama3", "factor": 8.0}}}}"#);
    let err = hf::config::parse(&missing, "d/config.json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("low_freq_factor"), "{err}");
    assert!(
        Config::built_in("llama-3.1-8b")
            .unwrap()
            .rope_scaling
            .is_some()
    );
}

const LLAMA: &str = r#""model_type": "llama", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 20, "max_position_embeddings": 32"#;

fn parse(extra: &str) -> Result<Config, String> {
    hf::config::parse(&format!("{{{LLAMA}{extra}}}"), "m/config.json").map_err(|e| e.to_string())
}

#[test]
fn rope_theta_is_read_in_both_config_forms() {
    // transformers 4 writes it at the top level, transformers 5 inside
    // `rope_parameters`; a Llama-3 checkpoint saved either way has 500,000.
    let v4 = parse(r#", "rope_theta": 500000.0"#).unwrap();
    let v5 =
        parse(r#", "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}"#).unwrap();
    assert_eq!((v4.rope_theta, v5.rope_theta), (500000.0, 500000.0));
    let scaled = parse(
        r#", "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}"#,
    )
    .unwrap();
    assert_eq!(scaled.rope_theta, 500000.0);
    assert!(scaled.rope_scaling.is_some());
    let e = parse(r#", "rope_theta": 10000.0, "rope_parameters": {"rope_theta": 500000.0}"#)
        .unwrap_err();
    assert!(e.contains("disagree"), "{e}");
    let e = parse(r#", "rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.5}"#)
        .unwrap_err();
    assert!(e.contains("partial_rotary_factor"), "{e}");
}

#[test]
fn config_fields_wafer_does_not_implement_are_errors_naming_them() {
    for (extra, names) in [
        (r#", "hidden_act": "gelu""#, "hidden_act"),
        (r#", "attention_bias": true"#, "attention_bias"),
        (r#", "mlp_bias": true"#, "mlp_bias"),
        (r#", "head_dim": 8"#, "head_dim"),
        (r#", "sliding_window": 4096"#, "sliding_window"),
        (r#", "max_position_embeddings": 4294967301"#, "seq_len"),
        (r#", "rms_norm_eps": "small""#, "rms_norm_eps"),
    ] {
        let e = parse(extra).unwrap_err();
        assert!(
            e.contains(names) && e.contains("m/config.json"),
            "{extra}: {e}"
        );
    }
    // What does not change the computation is accepted.
    parse(r#", "hidden_act": "silu", "attention_bias": false, "head_dim": 4, "torch_dtype": "bfloat16", "bos_token_id": 1, "pretraining_tp": 1, "attention_dropout": 0.0"#).unwrap();
    for (json, says) in [
        (r#"{"model_type": "bert", "hidden_size": 16}"#, "`bert`"),
        (r#"{"hidden_size": 16}"#, "model_type"),
        (
            r#"{"model_type": "gpt2", "n_embd": 8, "n_layer": 1, "n_head": 2, "n_positions": 4, "vocab_size": 6, "activation_function": "relu"}"#,
            "activation_function",
        ),
        (
            r#"{"model_type": "gpt2", "n_embd": 8, "n_layer": 1, "n_head": 2, "n_positions": 4, "vocab_size": 6, "scale_attn_by_inverse_layer_idx": true}"#,
            "scale_attn_by_inverse_layer_idx",
        ),
    ] {
        let e = hf::config::parse(json, "c.json").unwrap_err().to_string();
        assert!(e.contains(says), "{json}: {e}");
    }
}

/// `config.json` and one safetensors file from `(name, shape)` pairs
/// (values 0.1).
fn checkpoint(
    config: &str,
    tensors: &[(&str, Vec<usize>)],
) -> Result<(Config, wafer_compiler::Weights), String> {
    let values: Vec<Vec<f32>> = tensors
        .iter()
        .map(|(_, s)| vec![0.1; s.iter().product()])
        .collect();
    let st = written::f32_safetensors(
        tensors
            .iter()
            .zip(&values)
            .map(|((n, s), v)| (n.to_string(), &s[..], &v[..])),
    );
    hf::from_bytes(config, &st, "ckpt").map_err(|e| e.to_string())
}

#[test]
fn tensors_and_classifiers_must_match_the_config() {
    let c = config();
    let names: Vec<(String, Vec<usize>)> =
        tensors(&c).into_iter().map(|(n, (s, _))| (n, s)).collect();
    let base: Vec<(&str, Vec<usize>)> =
        names.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
    let tied = format!(r#"{{{LLAMA}, "tie_word_embeddings": true}}"#);
    let untied = format!(r#"{{{LLAMA}, "tie_word_embeddings": false}}"#);
    let (c, w) = checkpoint(&tied, &base).unwrap();
    assert!(c.tied_embeddings && w.tensors.contains_key("output.weight"));
    // Untied with no lm_head: the classifier is missing, not the embedding.
    let e = checkpoint(&untied, &base).unwrap_err();
    assert!(
        e.contains("lm_head.weight") && e.contains("tie_word_embeddings"),
        "{e}"
    );
    let mut with_head = base.clone();
    with_head.push(("lm_head.weight", vec![20, 16]));
    let (c, _) = checkpoint(&untied, &with_head).unwrap();
    assert!(!c.tied_embeddings);
    // A q bias the config did not announce is not silently dropped.
    let mut biased = base.clone();
    biased.push(("model.layers.0.self_attn.q_proj.bias", vec![16]));
    let e = checkpoint(&tied, &biased).unwrap_err();
    assert!(e.contains("q_proj.bias"), "{e}");
    // Buffers transformers derives from the config are skipped.
    let mut buffers = base.clone();
    buffers.push(("model.layers.0.self_attn.rotary_emb.inv_freq", vec![2]));
    checkpoint(&tied, &buffers).unwrap();
}
