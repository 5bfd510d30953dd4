//! The llama2.c front end and the CPU reference model on the repository's
//! checkpoints (`models/`).

mod common;
use common::models;
use wafer_compiler::tokenizer::Tokenizer;
use wafer_compiler::{llama2c, reference};

#[test]
fn both_checkpoints_load_with_the_documented_shapes() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    assert_eq!(
        (
            c.dim,
            c.hidden_dim,
            c.n_layers,
            c.n_heads,
            c.n_kv_heads,
            c.vocab_size,
            c.seq_len
        ),
        (64, 172, 5, 8, 4, 512, 512)
    );
    assert_eq!(
        w.tensors["layers.4.attention.wk.weight"].shape,
        vec![32, 64]
    );
    let (c, _) = llama2c::load(&models().join("aidreams260K.bin")).unwrap();
    assert_eq!(
        (
            c.dim,
            c.hidden_dim,
            c.n_layers,
            c.n_heads,
            c.n_kv_heads,
            c.vocab_size,
            c.seq_len
        ),
        (64, 172, 4, 4, 4, 512, 128)
    );
}

#[test]
fn aidreams_decodes_to_readable_text() {
    let (c, w) = llama2c::load(&models().join("aidreams260K.bin")).unwrap();
    let model = reference::Model::load(&w, &c).unwrap();
    let tok = Tokenizer::load(&models().join("aidreams_tok512.bin"), c.vocab_size).unwrap();
    let tokens = reference::generate(&model, &[], 128);
    let text = tok.text(&tokens);
    // A broken forward pass (RoPE, attention, norm) does not write English:
    // require mostly letters and spaces and a vocabulary of real words.
    let letters = text
        .chars()
        .filter(|ch| ch.is_ascii_alphabetic() || " ,.'\n".contains(*ch))
        .count();
    assert!(letters * 10 >= text.chars().count() * 9, "{text}");
    let words: std::collections::BTreeSet<&str> = text.split_whitespace().collect();
    assert!(words.len() >= 15 && words.contains("a"), "{text}");
    assert_eq!(
        tokens,
        reference::generate(&model, &[], 128),
        "greedy decoding is deterministic"
    );
}

#[test]
fn a_prompt_is_forced_then_decoding_continues() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let model = reference::Model::load(&w, &c).unwrap();
    let free = reference::generate(&model, &[], 40);
    let prompt = [free[0], free[1], 300];
    let forced = reference::generate(&model, &prompt, 40);
    assert_eq!(&forced[..3], &prompt);
    assert!(forced.iter().all(|t| (*t as usize) < c.vocab_size));
}

#[test]
fn malformed_checkpoints_name_the_file_and_the_tensor() {
    let bytes = std::fs::read(models().join("stories260K.bin")).unwrap();
    let e = llama2c::parse(&bytes[..300_000], "cut.bin")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("cut.bin: truncated in tensor `layers.") && e.contains("shape"),
        "{e}"
    );
    let mut bad = bytes.clone();
    bad[12..16].copy_from_slice(&7i32.to_le_bytes()); // 7 heads do not divide dim 64
    let e = llama2c::parse(&bad, "bad.bin").unwrap_err().to_string();
    assert!(e.contains("bad.bin") && e.contains("n_heads 7"), "{e}");
    let e = llama2c::parse(b"\x01\x00", "tiny.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("tiny.bin") && e.contains("28-byte"), "{e}");
    let mut extra = bytes.clone();
    extra.extend_from_slice(&[0; 8]);
    assert!(
        llama2c::parse(&extra, "x.bin")
            .unwrap_err()
            .to_string()
            .contains("left over")
    );
    let tok = std::fs::read(models().join("aidreams_tok512.bin")).unwrap();
    let e = Tokenizer::parse(&tok, 600, "tok.bin")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tok.bin") && e.contains("truncated at token 512"),
        "{e}"
    );
}

/// Grouped-query attention equals multi-head attention whose K and V
/// projections repeat each KV head's rows for the query heads sharing it:
/// the same per-head arithmetic, so bit-identical logits.
#[test]
fn grouped_query_attention_is_multi_head_attention_with_shared_kv() {
    let gqa = wafer_compiler::Config {
        dim: 32,
        hidden_dim: 48,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        vocab_size: 40,
        seq_len: 16,
        rope_theta: 10000.0,
        rope_pairs: wafer_compiler::RopePairs::Adjacent,
        norm_eps: 1e-5,
        tied_embeddings: false,
        rope_scaling: None,
        family: wafer_compiler::model::Family::Llama,
        moe: None,
        head_dim: None,
        sliding: None,
    };
    let mha = wafer_compiler::Config {
        n_kv_heads: 4,
        ..gqa.clone()
    };
    let w = wafer_compiler::ir::seeded_weights(&gqa, 7);
    let mut wide = w.clone();
    let hs = gqa.head_size();
    for l in 0..gqa.n_layers {
        for proj in ["wk", "wv"] {
            let name = format!("layers.{l}.attention.{proj}.weight");
            let narrow = &w.tensors[&name];
            let rows: Vec<f32> = (0..gqa.n_heads)
                .flat_map(|h| {
                    narrow.data[(h / 2) * hs * gqa.dim..(h / 2 + 1) * hs * gqa.dim].to_vec()
                })
                .collect();
            wide.tensors.insert(
                name,
                wafer_compiler::Tensor {
                    shape: vec![gqa.dim, gqa.dim],
                    data: rows,
                },
            );
        }
    }
    let (a, b) = (
        reference::Model::load(&w, &gqa).unwrap(),
        reference::Model::load(&wide, &mha).unwrap(),
    );
    let (mut ca, mut cb) = (reference::KvCache::new(&gqa), reference::KvCache::new(&mha));
    for (pos, token) in [3u32, 17, 5, 39, 0, 22].into_iter().enumerate() {
        let (la, lb) = (
            a.forward(token, pos, &mut ca),
            b.forward(token, pos, &mut cb),
        );
        assert_eq!(la, lb, "position {pos}");
    }
    // A wrong grouping (say h % n_kv_heads) would differ: check the test can fail.
    let mut swapped = wide.clone();
    let name = "layers.0.attention.wk.weight";
    let t = &w.tensors[name];
    let rows: Vec<f32> = (0..gqa.n_heads)
        .flat_map(|h| t.data[(h % 2) * hs * gqa.dim..(h % 2 + 1) * hs * gqa.dim].to_vec())
        .collect();
    swapped.tensors.insert(
        name.into(),
        wafer_compiler::Tensor {
            shape: vec![gqa.dim, gqa.dim],
            data: rows,
        },
    );
    let c = reference::Model::load(&swapped, &mha).unwrap();
    let (mut ca, mut cc) = (reference::KvCache::new(&gqa), reference::KvCache::new(&mha));
    let differs = [3u32, 17, 5]
        .into_iter()
        .enumerate()
        .any(|(pos, tok)| a.forward(tok, pos, &mut ca) != c.forward(tok, pos, &mut cc));
    assert!(
        differs,
        "the other grouping gives the same logits: the test cannot tell them apart"
    );
}

#[test]
fn built_in_configs_have_the_published_sizes() {
    use wafer_compiler::Config;
    assert_eq!(
        Config::built_in("llama-3.1-8b").unwrap().n_params(),
        8_030_261_248
    );
    assert_eq!(
        Config::built_in("llama-3.2-1b").unwrap().n_params(),
        1_235_814_400
    );
    // The parameter counts of the published checkpoints (their
    // safetensors indexes' total sizes over 2 bytes a bf16 weight).
    for name in ["llama-3.1-70b", "llama-3.3-70b"] {
        assert_eq!(Config::built_in(name).unwrap().n_params(), 70_553_706_496);
    }
    assert_eq!(
        Config::built_in("llama-3.1-405b").unwrap().n_params(),
        405_853_388_800
    );
    for name in wafer_compiler::model::BUILT_IN {
        Config::built_in(name).unwrap().validate().unwrap();
    }
    assert!(Config::built_in("llama-9").is_none());
}

#[test]
fn hugging_face_configs_parse_and_bad_ones_say_why() {
    use wafer_compiler::hf;
    let json = r#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 8,
        "num_key_value_heads": 4, "vocab_size": 100, "max_position_embeddings": 256, "rope_theta": 500000.0, "rms_norm_eps": 1e-6}"#;
    let c = hf::config::parse(json, "config.json").unwrap();
    assert_eq!(
        (c.dim, c.n_kv_heads, c.rope_theta, c.rope_pairs),
        (64, 4, 500000.0, wafer_compiler::RopePairs::HalfSplit)
    );
    let e = hf::config::parse(&json.replace("\"hidden_size\": 64,", ""), "config.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("config.json") && e.contains("hidden_size"),
        "{e}"
    );
    let e = hf::config::parse(
        &json.replace("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3"),
        "c.json",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("c.json") && e.contains("not a multiple of n_kv_heads 3"),
        "{e}"
    );
}

/// Half-split RoPE is adjacent RoPE with each head's q and k rows
/// interleaved (element i ↔ 2i, element i + d/2 ↔ 2i+1): the same model up
/// to the order of the dot products' sums.
#[test]
fn half_split_rope_is_adjacent_rope_on_interleaved_rows() {
    use wafer_compiler::{Config, RopePairs, Tensor};
    let half = Config {
        dim: 32,
        hidden_dim: 40,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        vocab_size: 30,
        seq_len: 16,
        rope_theta: 10000.0,
        rope_pairs: RopePairs::HalfSplit,
        norm_eps: 1e-5,
        tied_embeddings: false,
        rope_scaling: None,
        family: wafer_compiler::model::Family::Llama,
        moe: None,
        head_dim: None,
        sliding: None,
    };
    let adjacent = Config {
        rope_pairs: RopePairs::Adjacent,
        ..half.clone()
    };
    let w = wafer_compiler::ir::seeded_weights(&half, 3);
    let mut inter = w.clone();
    let hs = half.head_size();
    for l in 0..half.n_layers {
        for proj in ["wq", "wk"] {
            let name = format!("layers.{l}.attention.{proj}.weight");
            let t = &w.tensors[&name];
            let rows = t.shape[0];
            let mut data = t.data.clone();
            for head in 0..rows / hs {
                for i in 0..hs / 2 {
                    for (to, from) in [(2 * i, i), (2 * i + 1, i + hs / 2)] {
                        let (dst, src) =
                            ((head * hs + to) * half.dim, (head * hs + from) * half.dim);
                        data[dst..dst + half.dim].copy_from_slice(&t.data[src..src + half.dim]);
                    }
                }
            }
            inter.tensors.insert(
                name,
                Tensor {
                    shape: t.shape.clone(),
                    data,
                },
            );
        }
    }
    let (a, b) = (
        reference::Model::load(&w, &half).unwrap(),
        reference::Model::load(&inter, &adjacent).unwrap(),
    );
    let (mut ca, mut cb) = (
        reference::KvCache::new(&half),
        reference::KvCache::new(&adjacent),
    );
    for (pos, token) in [1u32, 9, 4, 28, 15].into_iter().enumerate() {
        let (la, lb) = (
            a.forward(token, pos, &mut ca),
            b.forward(token, pos, &mut cb),
        );
        for (x, y) in la.iter().zip(&lb) {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                "position {pos}: {x} vs {y}"
            );
        }
    }
}

#[test]
fn encoding_then_decoding_gives_the_text_back() {
    let tok = Tokenizer::load(&models().join("aidreams_tok512.bin"), 512).unwrap();
    for text in [
        "Echoes of vectors unfold, a gentle hum",
        "precision",
        "café ☕ 42",
    ] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.text(&ids), text, "{ids:?}");
    }
    // Merging happened: far fewer tokens than characters for plain English.
    assert!(tok.encode("Echoes of vectors unfold").unwrap().len() < 15);
    assert!(tok.encode("").unwrap().is_empty());
}

#[test]
fn a_text_prompt_steers_the_reference_model() {
    let (c, w) = llama2c::load(&models().join("aidreams260K.bin")).unwrap();
    let model = reference::Model::load(&w, &c).unwrap();
    let tok = Tokenizer::load(&models().join("aidreams_tok512.bin"), c.vocab_size).unwrap();
    let prompt = tok.encode("The quiet machine").unwrap();
    let out = reference::generate(&model, &prompt, 60);
    let text = tok.text(&out);
    assert!(text.starts_with("The quiet machine"), "{text}");
    assert!(text.len() > "The quiet machine".len() + 20, "{text}");
}

/// llama2.c's encoder as it is written there: rescan every adjacent pair
/// after each merge, take the best score (the leftmost of equals). The
/// tokenizer's priority-queue merge must give the same tokens.
fn encode_by_rescanning(tok: &Tokenizer, text: &str) -> Vec<u32> {
    let lookup: std::collections::HashMap<&[u8], u32> = tok
        .vocab
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_slice(), i as u32))
        .collect();
    let mut tokens: Vec<u32> = Vec::new();
    if !text.is_empty() {
        for ch in format!(" {text}").chars() {
            let mut buf = [0u8; 4];
            let bytes = ch.encode_utf8(&mut buf).as_bytes();
            match lookup.get(bytes) {
                Some(id) => tokens.push(*id),
                None => tokens.extend(bytes.iter().map(|b| *b as u32 + 3)),
            }
        }
    }
    loop {
        let mut best: Option<(f32, usize, u32)> = None;
        for i in 0..tokens.len().saturating_sub(1) {
            let merged = [
                tok.vocab[tokens[i] as usize].as_slice(),
                tok.vocab[tokens[i + 1] as usize].as_slice(),
            ]
            .concat();
            if let Some(id) = lookup.get(merged.as_slice())
                && best.is_none_or(|(s, _, _)| tok.scores[*id as usize] > s)
            {
                best = Some((tok.scores[*id as usize], i, *id));
            }
        }
        let Some((_, i, id)) = best else { break };
        tokens[i] = id;
        tokens.remove(i + 1);
    }
    tokens
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    #[test]
    fn the_priority_queue_merge_equals_llama2c_rescanning(
        text in "[ a-zA-Z,.éß☕]{0,60}",
    ) {
        let tok = Tokenizer::load(&models().join("aidreams_tok512.bin"), 512).unwrap();
        proptest::prop_assert_eq!(tok.encode(&text).unwrap(), encode_by_rescanning(&tok, &text));
    }
}

#[test]
fn a_long_prompt_encodes_in_linearithmic_time() {
    let tok = Tokenizer::load(&models().join("aidreams_tok512.bin"), 512).unwrap();
    let text = "the wafer hums with precision, ".repeat(1600); // 48,000 characters
    let t = std::time::Instant::now();
    let ids = tok.encode(&text).unwrap();
    // The rescanning merge takes minutes here; this one milliseconds. The
    // bound is loose for slow CI machines and debug builds.
    assert!(t.elapsed().as_secs_f64() < 5.0, "{:?}", t.elapsed());
    assert_eq!(tok.text(&ids), text);
}

#[test]
fn a_tokenizer_without_byte_tokens_says_which_character_it_cannot_encode() {
    // Six pieces, no `<0xXX>` byte tokens.
    let mut bytes = 4i32.to_le_bytes().to_vec();
    for p in ["<unk>", "<s>", "</s>", " ", "x", "xx"] {
        bytes.extend(0.5f32.to_le_bytes());
        bytes.extend((p.len() as i32).to_le_bytes());
        bytes.extend(p.as_bytes());
    }
    let tok = Tokenizer::parse(&bytes, 6, "six.bin").unwrap();
    assert_eq!(tok.text(&tok.encode("xxx").unwrap()), "xxx");
    let e = tok.encode("xy").unwrap_err().to_string();
    assert!(e.contains("'y'") && e.contains("no byte token"), "{e}");
    let e = Tokenizer::parse(&bytes[..2], 6, "short.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("short.bin") && e.contains("too short"), "{e}");
}
