//! The graph IR: round trips, the verifier, and the interpreter against the
//! reference model.

mod common;
use common::models;
use proptest::prelude::*;
use wafer_compiler::{Config, RopePairs, ir, llama2c, reference, stage};

#[test]
fn the_interpreted_graph_is_the_reference_model() {
    for file in ["stories260K.bin", "aidreams260K.bin"] {
        let (c, w) = llama2c::load(&models().join(file)).unwrap();
        let g = ir::decode_step(&c);
        ir::verify(&g).unwrap();
        let model = reference::Model::load(&w, &c).unwrap();
        let (mut ca, mut cb) = (reference::KvCache::new(&c), reference::KvCache::new(&c));
        for (pos, token) in [1u32, 400, 27, 300, 5].into_iter().enumerate() {
            let want = model.forward(token, pos, &mut ca);
            let got = ir::interpret(&g, &w, token, pos, &mut cb).unwrap();
            assert_eq!(got, want, "{file} position {pos}: bit for bit");
        }
    }
}

#[test]
fn the_graph_prints_and_parses_back() {
    let (c, _) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let g = ir::decode_step(&c);
    let text = g.to_string();
    assert_eq!(ir::parse(&text, "step.ir").unwrap(), g);
    assert!(
        text.contains("%6 = rope %3 head=8 theta=10000.0 pairs=adjacent : f32[64]"),
        "{}",
        &text[..2000.min(text.len())]
    );
    assert_eq!(
        ir::summary(&g),
        "add 10, attention 5, embed 1, matvec 36, mul 5, rmsnorm 11, rope 10, silu 5, token 1"
    );
}

#[test]
fn the_verifier_and_parser_name_the_problem() {
    let (c, _) = llama2c::load(&models().join("aidreams260K.bin")).unwrap();
    let text = ir::decode_step(&c).to_string();
    let e = ir::parse(
        &text.replace(
            "weight layers.0.attention.wq.weight [64, 64]",
            "weight layers.0.attention.wq.weight [64, 63]",
        ),
        "a.ir",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("a.ir")
            && e.contains(
                "weight `layers.0.attention.wq.weight` is [64, 63], the operation needs [64, 64]"
            ),
        "{e}"
    );
    let e = ir::parse(
        &text.replace(
            "%5 = matvec layers.0.attention.wv.weight, %2",
            "%5 = matvec layers.0.attention.wv.weight, %9",
        ),
        "b.ir",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("%5: uses %9 before it is defined"), "{e}");
    let e = ir::parse(&text.replace("%1 = embed", "%2 = embed"), "c.ir")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("c.ir:") && e.contains("values are numbered in order"),
        "{e}"
    );
    let e = ir::parse(
        &text.replace("heads=4 kv_heads=4", "heads=4 kv_heads=3"),
        "d.ir",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("d.ir"), "{e}");
}

/// Found by the `ir` fuzz target: RoPE applied to a RoPE's output must not
/// be fused into one kernel with it, or the fused stage reads its own output.
#[test]
fn a_rope_of_a_rope_is_lowered_as_two_stages() {
    let (c, _) = llama2c::load(&models().join("aidreams260K.bin")).unwrap();
    let text = ir::decode_step(&c).to_string();
    let edited = text.replace("%7 = rope %4 ", "%7 = rope %6 ");
    assert_ne!(edited, text, "the edit must apply");
    let g = ir::parse(&edited, "rope.ir").unwrap();
    let stages = stage::fuse(stage::lower(&g));
    stage::verify(&stages, &g).unwrap();
    let ropes = stages.iter().filter(|s| s.work.kernel() == "rope").count();
    let plain = stage::fuse(stage::lower(&ir::decode_step(&c)));
    let plain_ropes = plain.iter().filter(|s| s.work.kernel() == "rope").count();
    assert_eq!(ropes, plain_ropes + 1, "layer 0's q and k ropes stay apart");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    /// Random small configs: the step verifies, round-trips, and interprets
    /// to the reference model's logits on random weights.
    #[test]
    fn random_configs_round_trip_and_match_the_reference(
        head_half in 1usize..4, heads in 1usize..5, group in 1usize..3, layers in 1usize..3, hidden in 1usize..20, vocab in 2usize..30, half_split in any::<bool>(), scaled in any::<bool>(),
    ) {
        let n_heads = heads * group;
        let c = Config { dim: n_heads * 2 * head_half, hidden_dim: hidden, n_layers: layers, n_heads, n_kv_heads: heads, vocab_size: vocab, seq_len: 8,
            rope_theta: 10000.0, rope_pairs: if half_split { RopePairs::HalfSplit } else { RopePairs::Adjacent }, norm_eps: 1e-5, tied_embeddings: false,
            rope_scaling: scaled.then_some(wafer_compiler::model::RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original: 64.0 }), family: wafer_compiler::model::Family::Llama, moe: None, head_dim: None, sliding: None };
        let g = ir::decode_step(&c);
        prop_assert_eq!(ir::parse(&g.to_string(), "r.ir").unwrap(), g.clone());
        let mut w = wafer_compiler::Weights::default();
        let mut seed = (head_half * 131 + heads * 17 + layers) as u64;
        for (name, shape) in &g.weights {
            let n: usize = shape.iter().product();
            let data = (0..n).map(|_| { seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1); ((seed >> 40) as f32 / 16777216.0) - 0.5 }).collect();
            w.tensors.insert(name.clone(), wafer_compiler::Tensor { shape: shape.clone(), data });
        }
        let model = reference::Model::load(&w, &c).unwrap();
        let (mut ca, mut cb) = (reference::KvCache::new(&c), reference::KvCache::new(&c));
        for pos in 0..3 {
            let token = (pos as u32 * 7) % vocab as u32;
            prop_assert_eq!(ir::interpret(&g, &w, token, pos, &mut cb).unwrap(), model.forward(token, pos, &mut ca));
        }
    }
}
