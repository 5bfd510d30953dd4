//! Mixtral-style mixtures of experts: the built-in config's size, the
//! Hugging Face front end on a checkpoint the test writes, the CPU
//! reference's routing, checked against the arithmetic written out here,
//! and the mixture on the wafer: the IR, greedy tokens, and timing-only
//! steps on a seeded routing.

mod common;
mod written;
use written::mixtral::{config_json, safetensors_bytes, tensors};

use std::collections::BTreeMap;
use wafer_compiler::decode::{Decoder, generate};
use wafer_compiler::model::Moe;
use wafer_compiler::place::{Options, PlacementKind};
use wafer_compiler::{Config, experts, hf, ir, prefill, reference};
use wafer_emulator::{Arch, DType};

/// openai/gpt-oss-120b and -20b: 116.83 B and 20.91 B parameters, of which
/// 5.13 B and 3.61 B are active (OpenAI's model card); the counts follow
/// the checkpoints' tensors (biases, a sink per head, experts' fused
/// gate and up).
#[test]
fn gpt_oss_has_the_published_sizes() {
    for (name, params, active) in [
        ("gpt-oss-120b", 116_829_156_672u64, 5_132_852_352u64),
        ("gpt-oss-20b", 20_914_757_184, 3_608_310_144),
    ] {
        let c = Config::built_in(name).unwrap();
        c.validate().unwrap();
        assert_eq!(
            (c.n_params(), c.n_active_params()),
            (params, active),
            "{name}"
        );
        assert_eq!((c.head_size(), c.kv_dim()), (64, 512), "{name}");
    }
    let c = Config::built_in("gpt-oss-20b").unwrap();
    let w = wafer_compiler::Weights {
        tensors: Default::default(),
        source: "seeded".into(),
    };
    // The reference runs gpt-oss (`tests/gpt_oss.rs`); with no tensors it
    // names the first it lacks.
    let e = reference::Model::load(&w, &c).err().unwrap().to_string();
    assert!(e.contains("tok_embeddings.weight"), "{e}");
}

#[test]
fn mixtral_8x7b_has_the_published_size() {
    let c = Config::built_in("mixtral-8x7b").unwrap();
    // mistralai/Mixtral-8x7B-v0.1: 46,702,792,704 parameters (its
    // safetensors index's total size over 2 bytes a bf16 weight).
    assert_eq!(c.n_params(), 46_702_792_704);
    // Two of eight experts a token and one embedding row: 12.75 B read
    // (Mistral's "12.9B active parameters" count the whole table too).
    assert_eq!(c.n_active_params(), 12_748_857_344);
    assert_eq!(
        c.moe,
        Some(Moe {
            experts: 8,
            per_token: 2
        })
    );
    let mut bad = c.clone();
    bad.moe = Some(Moe {
        experts: 8,
        per_token: 9,
    });
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("9 experts a token of 8")
    );
}

#[test]
fn mixtral_configs_parse_and_a_sliding_window_is_refused() {
    let c = hf::config::parse(&config_json("null"), "config.json").unwrap();
    assert_eq!(
        c.moe,
        Some(Moe {
            experts: 4,
            per_token: 2
        })
    );
    assert_eq!(
        (c.dim, c.hidden_dim, c.n_kv_heads, c.rope_theta),
        (16, 24, 2, 1e6)
    );
    let e = hf::config::parse(&config_json("8"), "m/config.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("m/config.json") && e.contains("`sliding_window` is 8"),
        "{e}"
    );
    let e = hf::config::parse(
        &config_json("null").replace("\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 5"),
        "config.json",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("5 experts a token of 4"), "{e}");
}

fn matvec(w: &[f32], rows: usize, x: &[f32]) -> Vec<f32> {
    (0..rows)
        .map(|r| (0..x.len()).map(|j| w[r * x.len() + j] * x[j]).sum())
        .collect()
}

/// A layer's mixture of experts written out: softmax over the router's
/// logits, the two largest kept and renormalized, the experts' SwiGLUs
/// added up, lower expert first.
fn moe_by_hand(
    all: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    l: usize,
    c: &Config,
    x: &[f32],
) -> Vec<f32> {
    let p = format!("model.layers.{l}.block_sparse_moe");
    let logits = matvec(&all[&format!("{p}.gate.weight")].1, 4, x);
    let max = logits.iter().cloned().fold(f32::MIN, f32::max);
    let exps: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let total: f32 = exps.iter().sum();
    let probs: Vec<f32> = exps.iter().map(|e| e / total).collect();
    let mut first = 0;
    for e in 1..4 {
        if probs[e] > probs[first] {
            first = e;
        }
    }
    let mut second = if first == 0 { 1 } else { 0 };
    for e in 0..4 {
        if e != first && probs[e] > probs[second] {
            second = e;
        }
    }
    let norm = probs[first] + probs[second];
    let mut y = vec![0.0f32; c.dim];
    let (lo, hi) = (first.min(second), first.max(second));
    for e in [lo, hi] {
        let q = format!("{p}.experts.{e}");
        let gate = matvec(&all[&format!("{q}.w1.weight")].1, c.hidden_dim, x);
        let up = matvec(&all[&format!("{q}.w3.weight")].1, c.hidden_dim, x);
        let hidden: Vec<f32> = gate
            .iter()
            .zip(&up)
            .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        let out = matvec(&all[&format!("{q}.w2.weight")].1, c.dim, &hidden);
        let w = probs[e] / norm;
        y.iter_mut().zip(out).for_each(|(a, b)| *a += b * w);
    }
    y
}

#[test]
fn a_mixtral_checkpoint_loads_and_routes_as_written_out() {
    let c = hf::config::parse(&config_json("null"), "config.json").unwrap();
    let all = tensors(&c);
    let (c, w) = hf::from_bytes(&config_json("null"), &safetensors_bytes(&all), "mixtral").unwrap();
    assert_eq!(
        w.tensors["layers.1.feed_forward.experts.3.w2.weight"].shape,
        vec![c.dim, c.hidden_dim]
    );
    let model = reference::Model::load(&w, &c).unwrap();
    // Layer 0's mixture on a few inputs, against the arithmetic above
    // (written independently, so equal to f32 rounding: a wrong pick or
    // weight would be far off).
    for k in 0..5 {
        let x: Vec<f32> = (0..c.dim)
            .map(|i| ((i * 7 + k * 3) % 11) as f32 / 5.0 - 1.0)
            .collect();
        let got = model.experts(0).unwrap().forward(&x);
        for (a, b) in got.iter().zip(moe_by_hand(&all, 0, &c, &x)) {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "input {k}: {a} vs {b}"
            );
        }
        let picked = model.experts(0).unwrap().route(&x);
        assert_eq!(picked.len(), 2);
        assert!((picked[0].1 + picked[1].1 - 1.0).abs() < 1e-6 && picked[0].1 >= picked[1].1);
    }
    // A whole decode runs; a missing expert is an error naming it.
    let tokens = reference::generate(&model, &[3, 4], 8);
    assert_eq!(tokens.len(), 8);
    let mut short = all.clone();
    short.remove("model.layers.1.block_sparse_moe.experts.2.w3.weight");
    let e = hf::from_bytes(&config_json("null"), &safetensors_bytes(&short), "m")
        .and_then(|(c, w)| reference::Model::load(&w, &c).map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("layers.1.feed_forward.experts.2.w3.weight"),
        "{e}"
    );
}

/// With every expert the same MLP, the mixture is that MLP: the weights
/// of the experts picked sum to one, whichever the router picks.
#[test]
fn identical_experts_make_the_dense_mlp() {
    let c = hf::config::parse(&config_json("null"), "config.json").unwrap();
    let mut all = tensors(&c);
    for l in 0..c.n_layers {
        for w in ["w1", "w2", "w3"] {
            let first =
                all[&format!("model.layers.{l}.block_sparse_moe.experts.0.{w}.weight")].clone();
            for e in 1..4 {
                all.insert(
                    format!("model.layers.{l}.block_sparse_moe.experts.{e}.{w}.weight"),
                    first.clone(),
                );
            }
        }
    }
    let (c, w) = hf::from_bytes(&config_json("null"), &safetensors_bytes(&all), "same").unwrap();
    let model = reference::Model::load(&w, &c).unwrap();
    let x: Vec<f32> = (0..c.dim).map(|i| i as f32 / 8.0 - 1.0).collect();
    let mixed = model.experts(1).unwrap().forward(&x);
    let p = "model.layers.1.block_sparse_moe.experts.0";
    let gate = matvec(&all[&format!("{p}.w1.weight")].1, c.hidden_dim, &x);
    let up = matvec(&all[&format!("{p}.w3.weight")].1, c.hidden_dim, &x);
    let hidden: Vec<f32> = gate
        .iter()
        .zip(&up)
        .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
        .collect();
    let dense = matvec(&all[&format!("{p}.w2.weight")].1, c.dim, &hidden);
    for (a, b) in mixed.iter().zip(&dense) {
        assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

fn options(kind: PlacementKind) -> Options {
    Options {
        arch: Arch::wse3().with_grid(32, 32).unwrap(),
        dtype: DType::F32,
        placement: Some(kind),
        max_context: 16,
        reduce: wafer_kernels::reduce::Strategy::Tree { k: 2 },
        gemv: wafer_compiler::place::GemvChoice::Auto,
        region: wafer_compiler::region::Region::Whole,
        wafers: wafer_compiler::system::Wafers::Count(1),
        tiles: None,
    }
}

fn mixtral() -> (Config, wafer_compiler::Weights) {
    let c = hf::config::parse(&config_json("null"), "config.json").unwrap();
    hf::from_bytes(
        &config_json("null"),
        &safetensors_bytes(&tensors(&c)),
        "mixtral",
    )
    .unwrap()
}

/// The graph's mixture (route, a dispatch per expert, combine) interprets
/// as the reference model, bit for bit, and prints and parses back.
#[test]
fn the_mixture_in_the_ir_is_the_reference_model() {
    let (c, w) = mixtral();
    let g = ir::decode_step(&c);
    assert_eq!(ir::parse(&g.to_string(), "mixtral.ir").unwrap(), g);
    assert!(g.to_string().contains("dispatch %"), "{g}");
    let m = reference::Model::load(&w, &c).unwrap();
    let (mut a, mut b) = (reference::KvCache::new(&c), reference::KvCache::new(&c));
    for (pos, t) in [3u32, 9, 1, 17].iter().enumerate() {
        assert_eq!(
            ir::interpret(&g, &w, *t, pos, &mut b).unwrap(),
            m.forward(*t, pos, &mut a)
        );
    }
    let bad = g.to_string().replace("expert=3", "expert=4");
    let e = ir::parse(&bad, "bad.ir").unwrap_err().to_string();
    assert!(e.contains("dispatch to expert 4 of a router over 4"), "{e}");
}

/// Greedy tokens of the shrunk Mixtral on the wafer, with and without a
/// prompt, on both placements: the reference's. Only the picked experts
/// run, and the router's picks differ from token to token.
#[test]
fn a_mixtral_checkpoint_decodes_on_the_wafer_as_the_reference() {
    let (c, w) = mixtral();
    let m = reference::Model::load(&w, &c).unwrap();
    for kind in [PlacementKind::Pipeline, PlacementKind::Mesh] {
        let compiled = wafer_compiler::compile(&c, Some(&w), &options(kind)).unwrap();
        let experts = compiled.stages.iter().filter(|s| s.when.is_some()).count();
        assert_eq!(
            experts,
            2 * 4 * 3,
            "{kind}: w1_w3, swiglu and w2 per expert"
        );
        let mut ran = std::collections::BTreeSet::new();
        for prompt in [&[][..], &[5, 11, 2]] {
            let want = reference::generate(&m, prompt, 12);
            let mut d = Decoder::new(&compiled);
            let mut logits = Vec::new();
            let got = generate(&mut d, prompt, 12, None, |_, s| {
                assert_eq!(s.stage_ran.iter().filter(|r| !**r).count(), 2 * 2 * 3);
                ran.insert(s.stage_ran.clone());
                logits.push(s.logits.clone());
            })
            .unwrap();
            assert_eq!(got, want, "{kind}, prompt {prompt:?}");
            assert!(got.len() > prompt.len() + 3, "{kind}: {got:?}");
            // Overlapped (the experts and the combine keep their
            // barriers): the same tokens.
            let mut d = Decoder::new(&compiled);
            d.overlap(true);
            let over = generate(&mut d, prompt, 12, None, |_, _| {}).unwrap();
            assert_eq!(over, want, "{kind}, prompt {prompt:?}, overlapped");
            // The logits too, to f32 rounding (the wafer's sums and the
            // router's softmax round in their own order).
            common::logits_close(&m, &c, &got, &logits, 1e-5, &format!("{kind}"));
        }
        assert!(ran.len() > 1, "{kind}: the same experts every token");
    }
}

/// A timing-only step runs the experts a seeded routing picks, the cost
/// models predict that step exactly, and another seed picks others.
#[test]
fn timing_only_steps_run_the_seeded_experts_as_predicted() {
    let (c, w) = mixtral();
    for kind in [PlacementKind::Pipeline, PlacementKind::Mesh] {
        let compiled = wafer_compiler::compile(&c, Some(&w), &options(kind)).unwrap();
        let mut d = Decoder::new(&compiled);
        d.timing_only(true);
        d.skip_to(5).unwrap();
        let s = d.step(0).unwrap();
        assert_eq!(s.cycles, compiled.predicted(5), "{kind}");
        assert_eq!(s.stage_ran, compiled.runs(5, experts::DEFAULT_SEED));
        let other: Vec<_> = (1..20).map(|seed| compiled.runs(5, seed)).collect();
        assert!(other.iter().any(|r| *r != s.stage_ran));
        let mut d = Decoder::new(&compiled);
        d.timing_only(true);
        d.expert_seed(7);
        d.skip_to(5).unwrap();
        assert_eq!(d.step(0).unwrap().stage_ran, compiled.runs(5, 7));
    }
    for (seed, pos) in [(0, 0), (3, 9), (u64::MAX, 1000)] {
        let p = experts::seeded(seed, pos, 40, 8, 2);
        assert!(p.len() == 2 && p[0] < p[1] && p[1] < 8, "{p:?}");
    }
}

/// Without a checkpoint, the stages of one kernel share one program (the
/// seeded weights are one set per distinct kernel): what lets a 120B
/// mixture of experts' 14,000 stages fit a host's memory. A checkpoint's
/// experts keep their own.
#[test]
fn seeded_stages_of_one_kernel_share_one_program() {
    let (c, w) = mixtral();
    let seeded = wafer_compiler::compile(&c, None, &options(PlacementKind::Mesh)).unwrap();
    let program = |compiled: &wafer_compiler::Compiled, name: &str| {
        let i = compiled.stages.iter().position(|s| s.name == name).unwrap();
        compiled.fragments[i].program.clone()
    };
    let (a, b) = (
        program(&seeded, "layers.0.expert0.w1_w3"),
        program(&seeded, "layers.1.expert3.w1_w3"),
    );
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    let distinct = seeded
        .fragments
        .iter()
        .map(|f| std::sync::Arc::as_ptr(&f.program))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(
        distinct * 2 < seeded.stages.len(),
        "{distinct} of {}",
        seeded.stages.len()
    );
    let real = wafer_compiler::compile(&c, Some(&w), &options(PlacementKind::Mesh)).unwrap();
    assert!(!std::sync::Arc::ptr_eq(
        &program(&real, "layers.0.expert0.w1_w3"),
        &program(&real, "layers.1.expert3.w1_w3")
    ));
}

/// A prompt prefilled on the wafer (its positions at once, each expert's
/// GEMVs batched over the positions that picked it): the reference's
/// tokens on both placements, and the cycles the cost models predict for
/// the experts the routers picked (attention's model up to 2 cycles under
/// a run).
#[test]
fn a_mixtral_prompt_prefills_on_the_wafer_as_the_reference() {
    let (c, w) = mixtral();
    let m = reference::Model::load(&w, &c).unwrap();
    let prompt = [5, 11, 2, 7, 9, 3, 12];
    let want = reference::generate(&m, &prompt, 13);
    for kind in [PlacementKind::Pipeline, PlacementKind::Mesh] {
        let compiled = wafer_compiler::compile(&c, Some(&w), &options(kind)).unwrap();
        let mut d = Decoder::new(&compiled);
        let mut seen = None;
        let got = prefill::generate(&mut d, &prompt, 13, None, |p| {
            if let prefill::Progress::Prefilled { prefill, .. } = p {
                seen = Some(prefill.clone())
            }
        })
        .unwrap();
        assert_eq!(got, want, "{kind}");
        let pf = seen.unwrap();
        let plan = &pf.plan;
        let predicted = prefill::predicted(&compiled, plan, 0, &pf.ran, &pf.tokens);
        let attention_runs: u64 = compiled
            .sites
            .iter()
            .zip(&pf.stage_runs)
            .filter(|(s, _)| matches!(s.kernel, wafer_compiler::kernel::Kernel::Attention(_)))
            .map(|(_, r)| *r as u64)
            .sum();
        assert!(
            (predicted..=predicted + 2 * attention_runs).contains(&pf.cycles),
            "{kind}: emulated {} predicted {predicted}",
            pf.cycles
        );
        // An expert of a layer before the last runs once per batch of the
        // positions that picked it, and no expert ran everywhere.
        let experts: Vec<usize> = (0..compiled.stages.len())
            .filter(|i| compiled.stages[*i].when.is_some() && plan.stages[*i].every)
            .collect();
        assert!(!experts.is_empty());
        for i in experts {
            let picked = pf.ran.iter().filter(|r| r[i]).count() as u32;
            assert!(picked < pf.positions, "{kind}: stage {i} ran everywhere");
            if plan.stages[i].batch >= pf.positions {
                assert_eq!(pf.stage_runs[i], u32::from(picked > 0), "{kind}: stage {i}");
            }
        }
    }
}
