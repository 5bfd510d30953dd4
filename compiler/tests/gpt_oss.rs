//! gpt-oss on the CPU reference: the released config reads as the
//! built-in, YaRN's frequencies, and a shrunk checkpoint the test writes
//! (its experts fused, in f32 and in MXFP4 as OpenAI ships them) decoded
//! by the reference as the model written out here in f64 decodes it.

mod common;
use safetensors::{Dtype, tensor::TensorView};
use std::collections::BTreeMap;
use wafer_compiler::decode::{Decoder, generate};
use wafer_compiler::model::{RopeScaling, Sliding};
use wafer_compiler::place::{Options, PlacementKind};
use wafer_compiler::{Config, hf, ir, prefill, reference};
use wafer_emulator::{Arch, DType};

/// openai/gpt-oss-20b's `config.json`.
const GPT_OSS_20B: &str = r#"{
  "architectures": ["GptOssForCausalLM"], "attention_bias": true, "attention_dropout": 0.0,
  "eos_token_id": 200002, "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu",
  "hidden_size": 2880, "initial_context_length": 4096, "initializer_range": 0.02,
  "intermediate_size": 2880,
  "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention",
    "sliding_attention", "full_attention", "sliding_attention", "full_attention",
    "sliding_attention", "full_attention", "sliding_attention", "full_attention",
    "sliding_attention", "full_attention", "sliding_attention", "full_attention",
    "sliding_attention", "full_attention", "sliding_attention", "full_attention",
    "sliding_attention", "full_attention", "sliding_attention", "full_attention"],
  "max_position_embeddings": 131072, "model_type": "gpt_oss", "num_attention_heads": 64,
  "num_experts_per_tok": 4, "num_hidden_layers": 24, "num_key_value_heads": 8,
  "num_local_experts": 32, "output_router_logits": false, "pad_token_id": 199999,
  "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn",
    "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
  "rms_norm_eps": 1e-05,
  "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
    "original_max_position_embeddings": 4096, "rope_type": "yarn", "truncate": false},
  "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128,
  "swiglu_limit": 7.0, "tie_word_embeddings": false, "transformers_version": "4.55.0.dev0",
  "use_cache": true, "vocab_size": 201088
}"#;

#[test]
fn the_released_config_reads_as_the_built_in() {
    let c = hf::config::parse(GPT_OSS_20B, "gpt-oss-20b/config.json").unwrap();
    assert_eq!(c, Config::built_in("gpt-oss-20b").unwrap());
    let refuse = |from: &str, to: &str, says: &str| {
        let e = hf::config::parse(&GPT_OSS_20B.replace(from, to), "c.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{e}");
    };
    refuse(
        r#""swiglu_limit": 7.0"#,
        r#""swiglu_limit": 5.0"#,
        "clamps at 7",
    );
    refuse(
        r#""experts_per_token": 4"#,
        r#""experts_per_token": 2"#,
        "disagree",
    );
    refuse(
        r#""quant_method": "mxfp4""#,
        r#""quant_method": "gptq""#,
        "MXFP4",
    );
    refuse(
        r#""sliding_attention", "full_attention"],"#,
        r#""sliding_attention", "x"],"#,
        "layer_types",
    );
    refuse(
        r#""truncate": false"#,
        r#""truncate": false, "mscale": 1.0"#,
        "mscale",
    );
    // YaRN is gpt-oss's alone here (the wafer's RoPE does not scale yet).
    let llama = r#"{"model_type": "llama", "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "vocab_size": 4, "max_position_embeddings": 8,
        "rope_scaling": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 4}}"#;
    let e = hf::config::parse(llama, "l.json").unwrap_err().to_string();
    assert!(e.contains("yarn for gpt_oss only"), "{e}");
}

/// YaRN's frequencies and attention factor, written out in f64 from the
/// paper's formulas as transformers applies them.
#[test]
fn yarn_frequencies_follow_transformers() {
    let (theta, dim, factor, original) = (150000.0f64, 64u32, 32.0f64, 4096.0f64);
    let s = RopeScaling::Yarn {
        factor: factor as f32,
        beta_fast: 32.0,
        beta_slow: 1.0,
        original: original as f32,
        truncate: false,
    };
    let got = wafer_kernels::rope::inv_freq(theta as f32, dim, Some(s));
    let at = |rot: f64| {
        dim as f64 * (original / (rot * 2.0 * std::f64::consts::PI)).ln() / (2.0 * theta.ln())
    };
    let (low, high) = (at(32.0).max(0.0), at(1.0).min(dim as f64 - 1.0));
    for (i, g) in got.iter().enumerate() {
        let base = theta.powf(2.0 * i as f64 / dim as f64);
        let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
        let want = (1.0 / (factor * base)) * ramp + (1.0 / base) * (1.0 - ramp);
        assert!(
            ((*g as f64) - want).abs() <= 2e-6 * want,
            "{i}: {g} vs {want}"
        );
    }
    // The fast end keeps its frequency, the slow end is divided by 32.
    assert_eq!(got[0], 1.0);
    let last = 1.0 / (factor * theta.powf(62.0 / 64.0));
    assert!(((*got.last().unwrap() as f64) - last).abs() <= 1e-6 * last);
    let m = wafer_kernels::rope::attention_factor(Some(s));
    assert_eq!(m, (0.1 * 32f64.ln() + 1.0) as f32);
    assert_eq!(wafer_kernels::rope::attention_factor(None), 1.0);
}

/// The experts' clamped SwiGLU: gate at most 7, up within ±7, NaN kept.
#[test]
fn the_swiglu_clamps_as_transformers() {
    use wafer_compiler::gpt_oss::clamped_swiglu;
    let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
    assert_eq!(clamped_swiglu(10.0, 10.0), 8.0 * (7.0 * sig(7.0 * 1.702)));
    assert_eq!(
        clamped_swiglu(-10.0, -10.0),
        -6.0 * (-10.0 * sig(-10.0 * 1.702))
    );
    assert_eq!(clamped_swiglu(1.0, 0.5), 1.5 * sig(1.702));
    assert!(clamped_swiglu(f32::NAN, 1.0).is_nan() && clamped_swiglu(1.0, f32::NAN).is_nan());
    let top = wafer_compiler::gpt_oss::top_k_softmax(&[0.5, 2.0, 2.0, -1.0], 2);
    assert_eq!(
        (top[0].0, top[1].0),
        (1, 2),
        "ties to the lower expert first"
    );
    assert_eq!((top[0].1, top[1].1), (0.5, 0.5));
}

// A shrunk gpt-oss: 32 wide, 6 query heads and 2 KV heads of 8 (q is 48
// wide), 4 experts of 32, 2 a token; layer 0 slides over 2 positions.
const D: usize = 32;
const H: usize = 32;
const HEADS: usize = 6;
const KV: usize = 2;
const HS: usize = 8;
const E: usize = 4;
const K: usize = 2;
const V: usize = 24;
const LAYERS: usize = 2;
const WINDOW: usize = 2;

fn config_json(quantized: bool) -> String {
    format!(
        r#"{{"model_type": "gpt_oss", "hidden_size": {D}, "intermediate_size": {H}, "num_hidden_layers": {LAYERS},
        "num_attention_heads": {HEADS}, "num_key_value_heads": {KV}, "head_dim": {HS}, "vocab_size": {V},
        "max_position_embeddings": 64, "num_local_experts": {E}, "num_experts_per_tok": {K},
        "sliding_window": {WINDOW}, "layer_types": ["sliding_attention", "full_attention"],
        "rope_theta": 150000.0, "rms_norm_eps": 1e-05, "swiglu_limit": 7.0, "attention_bias": true,
        "rope_scaling": {{"rope_type": "yarn", "factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0,
          "original_max_position_embeddings": 16, "truncate": false}}{}}}"#,
        if quantized {
            r#", "quantization_config": {"quant_method": "mxfp4"}"#
        } else {
            ""
        }
    )
}

/// One tensor of a checkpoint: its shape, and f32 values or bytes.
enum Data {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

type Checkpoint = BTreeMap<String, (Vec<usize>, Data)>;

fn safetensors_bytes(all: &Checkpoint) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = all
        .iter()
        .map(|(n, (s, d))| match d {
            Data::F32(v) => (
                n.clone(),
                s.clone(),
                Dtype::F32,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Data::U8(b) => (n.clone(), s.clone(), Dtype::U8, b.clone()),
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, t, b)| (n.clone(), TensorView::new(*t, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, &None).unwrap()
}

fn lcg(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    }
}

const FP4: [f64; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// The experts' fused weights as MXFP4 blocks and scales (`[E, outs,
/// ins / 32, 16]`, `[E, outs, ins / 32]`), and the same values decoded,
/// as transformers stores them unquantized (`[E, ins, outs]`).
fn fused(next: &mut impl FnMut() -> u64, outs: usize, ins: usize) -> (Vec<u8>, Vec<u8>, Vec<f32>) {
    let blocks: Vec<u8> = (0..E * outs * ins / 2).map(|_| next() as u8).collect();
    // Scales about 2^-3, so the weights stay small.
    let scales: Vec<u8> = (0..E * outs * ins / 32)
        .map(|_| 122 + (next() % 3) as u8)
        .collect();
    let mut dense = vec![0.0f32; E * ins * outs];
    for e in 0..E {
        for o in 0..outs {
            for i in 0..ins {
                let row = e * outs + o;
                let b = blocks[row * ins / 2 + i / 2];
                let code = if i % 2 == 0 { b & 15 } else { b >> 4 };
                let scale = 2f64.powi(scales[row * ins / 32 + i / 32] as i32 - 127);
                dense[e * ins * outs + i * outs + o] = (FP4[code as usize] * scale) as f32;
            }
        }
    }
    (blocks, scales, dense)
}

/// The checkpoint in Hugging Face names, its experts in MXFP4 or f32.
fn checkpoint(quantized: bool) -> Checkpoint {
    let mut next = lcg(17);
    let mut all = Checkpoint::new();
    let put = |all: &mut Checkpoint,
               name: &str,
               shape: Vec<usize>,
               next: &mut dyn FnMut() -> u64,
               scale: f32| {
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|_| ((next() % 1_000_000) as f32 / 1e6 - 0.5) * scale)
            .collect();
        all.insert(name.to_string(), (shape, Data::F32(v)));
    };
    put(
        &mut all,
        "model.embed_tokens.weight",
        vec![V, D],
        &mut next,
        2.0,
    );
    put(&mut all, "model.norm.weight", vec![D], &mut next, 2.0);
    put(&mut all, "lm_head.weight", vec![V, D], &mut next, 1.0);
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        put(
            &mut all,
            &format!("{p}.input_layernorm.weight"),
            vec![D],
            &mut next,
            2.0,
        );
        put(
            &mut all,
            &format!("{p}.post_attention_layernorm.weight"),
            vec![D],
            &mut next,
            2.0,
        );
        for (w, rows, cols) in [
            ("q", HEADS * HS, D),
            ("k", KV * HS, D),
            ("v", KV * HS, D),
            ("o", D, HEADS * HS),
        ] {
            put(
                &mut all,
                &format!("{p}.self_attn.{w}_proj.weight"),
                vec![rows, cols],
                &mut next,
                0.6,
            );
            put(
                &mut all,
                &format!("{p}.self_attn.{w}_proj.bias"),
                vec![rows],
                &mut next,
                0.4,
            );
        }
        put(
            &mut all,
            &format!("{p}.self_attn.sinks"),
            vec![HEADS],
            &mut next,
            4.0,
        );
        put(
            &mut all,
            &format!("{p}.mlp.router.weight"),
            vec![E, D],
            &mut next,
            1.0,
        );
        put(
            &mut all,
            &format!("{p}.mlp.router.bias"),
            vec![E],
            &mut next,
            1.0,
        );
        put(
            &mut all,
            &format!("{p}.mlp.experts.gate_up_proj_bias"),
            vec![E, 2 * H],
            &mut next,
            0.4,
        );
        put(
            &mut all,
            &format!("{p}.mlp.experts.down_proj_bias"),
            vec![E, D],
            &mut next,
            0.4,
        );
        for (w, outs, ins) in [("gate_up_proj", 2 * H, D), ("down_proj", D, H)] {
            let (blocks, scales, dense) = fused(&mut next, outs, ins);
            let x = format!("{p}.mlp.experts.{w}");
            if quantized {
                all.insert(
                    format!("{x}_blocks"),
                    (vec![E, outs, ins / 32, 16], Data::U8(blocks)),
                );
                all.insert(
                    format!("{x}_scales"),
                    (vec![E, outs, ins / 32], Data::U8(scales)),
                );
            } else {
                all.insert(x, (vec![E, ins, outs], Data::F32(dense)));
            }
        }
    }
    all
}

fn f64s(all: &Checkpoint, name: &str) -> Vec<f64> {
    match &all[name].1 {
        Data::F32(v) => v.iter().map(|x| *x as f64).collect(),
        Data::U8(_) => panic!("{name} is bytes"),
    }
}

/// `[rows, cols]` weight times `x`, plus the bias.
fn linear(w: &[f64], b: &[f64], x: &[f64]) -> Vec<f64> {
    (0..b.len())
        .map(|r| b[r] + (0..x.len()).map(|i| w[r * x.len() + i] * x[i]).sum::<f64>())
        .collect()
}

fn rmsnorm(x: &[f64], w: &[f64]) -> Vec<f64> {
    let inv = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + 1e-5).sqrt();
    x.iter().zip(w).map(|(v, w)| v * inv * w).collect()
}

/// The model written out in f64 from transformers' gpt-oss, on the f32
/// checkpoint's tensors: logits for each of `tokens` fed in turn.
fn by_hand(all: &Checkpoint, tokens: &[u32]) -> Vec<Vec<f64>> {
    let f = |n: &str| f64s(all, n);
    // YaRN (factor 4 over 16 positions), not truncated.
    let at = |rot: f64| {
        HS as f64 * (16.0 / (rot * 2.0 * std::f64::consts::PI)).ln() / (2.0 * 150000f64.ln())
    };
    let (low, high) = (at(32.0).max(0.0), at(1.0).min(HS as f64 - 1.0));
    let freqs: Vec<f64> = (0..HS / 2)
        .map(|i| {
            let base = 150000f64.powf(2.0 * i as f64 / HS as f64);
            let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
            ramp / (4.0 * base) + (1.0 - ramp) / base
        })
        .collect();
    let mscale = 0.1 * 4f64.ln() + 1.0;
    let rotate = |x: &mut [f64], pos: usize| {
        for head in x.chunks_mut(HS) {
            for (i, fr) in freqs.iter().enumerate() {
                let (c, s) = (
                    (pos as f64 * fr).cos() * mscale,
                    (pos as f64 * fr).sin() * mscale,
                );
                let (a, b) = (head[i], head[i + HS / 2]);
                head[i] = a * c - b * s;
                head[i + HS / 2] = b * c + a * s;
            }
        }
    };
    let mut keys = vec![Vec::<Vec<f64>>::new(); LAYERS];
    let mut values = vec![Vec::<Vec<f64>>::new(); LAYERS];
    let mut out = Vec::new();
    for (pos, t) in tokens.iter().enumerate() {
        let emb = f("model.embed_tokens.weight");
        let mut x = emb[*t as usize * D..][..D].to_vec();
        for l in 0..LAYERS {
            let p = format!("model.layers.{l}");
            let s = |w: &str| f(&format!("{p}.self_attn.{w}"));
            let h = rmsnorm(&x, &f(&format!("{p}.input_layernorm.weight")));
            let mut q = linear(&s("q_proj.weight"), &s("q_proj.bias"), &h);
            let mut k = linear(&s("k_proj.weight"), &s("k_proj.bias"), &h);
            rotate(&mut q, pos);
            rotate(&mut k, pos);
            keys[l].push(k);
            values[l].push(linear(&s("v_proj.weight"), &s("v_proj.bias"), &h));
            let sinks = s("sinks");
            let mut a = vec![0.0; HEADS * HS];
            for head in 0..HEADS {
                let g = head / (HEADS / KV);
                let qh = &q[head * HS..][..HS];
                // Layer 0 slides: the positions q with pos − q < 2.
                let visible: Vec<usize> =
                    (0..=pos).filter(|j| l == 1 || pos - j < WINDOW).collect();
                let scores: Vec<f64> = visible
                    .iter()
                    .map(|j| {
                        (0..HS)
                            .map(|i| qh[i] * keys[l][*j][g * HS + i])
                            .sum::<f64>()
                            / (HS as f64).sqrt()
                    })
                    .collect();
                let denom: f64 = scores.iter().map(|s| s.exp()).sum::<f64>() + sinks[head].exp();
                for (j, sc) in visible.iter().zip(&scores) {
                    for i in 0..HS {
                        a[head * HS + i] += sc.exp() / denom * values[l][*j][g * HS + i];
                    }
                }
            }
            let o = linear(&s("o_proj.weight"), &s("o_proj.bias"), &a);
            x.iter_mut().zip(o).for_each(|(x, o)| *x += o);
            let h = rmsnorm(&x, &f(&format!("{p}.post_attention_layernorm.weight")));
            let m = |w: &str| f(&format!("{p}.mlp.{w}"));
            let logits = linear(&m("router.weight"), &m("router.bias"), &h);
            let mut order: Vec<usize> = (0..E).collect();
            order.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
            let top = &order[..K];
            let z: f64 = top
                .iter()
                .map(|e| (logits[*e] - logits[top[0]]).exp())
                .sum();
            let (gu, gub) = (m("experts.gate_up_proj"), m("experts.gate_up_proj_bias"));
            let (dn, dnb) = (m("experts.down_proj"), m("experts.down_proj_bias"));
            for e in top {
                let weight = (logits[*e] - logits[top[0]]).exp() / z;
                // gate_up is [E, D, 2H]: output 2j the gate, 2j + 1 the up.
                let col = |c: usize| {
                    gub[e * 2 * H + c]
                        + (0..D)
                            .map(|i| h[i] * gu[e * D * 2 * H + i * 2 * H + c])
                            .sum::<f64>()
                };
                let act: Vec<f64> = (0..H)
                    .map(|j| {
                        let gate = col(2 * j).min(7.0);
                        let up = col(2 * j + 1).clamp(-7.0, 7.0);
                        (up + 1.0) * gate / (1.0 + (-1.702 * gate).exp())
                    })
                    .collect();
                for (o, xo) in x.iter_mut().enumerate() {
                    let y = dnb[e * D + o]
                        + (0..H)
                            .map(|j| act[j] * dn[e * H * D + j * D + o])
                            .sum::<f64>();
                    *xo += weight * y;
                }
            }
        }
        let n = rmsnorm(&x, &f("model.norm.weight"));
        out.push(linear(&f("lm_head.weight"), &[0.0; V], &n));
    }
    out
}

#[test]
fn a_gpt_oss_checkpoint_decodes_as_written_out_in_mxfp4_and_in_f32() {
    let (c, dense) = hf::from_bytes(
        &config_json(false),
        &safetensors_bytes(&checkpoint(false)),
        "oss",
    )
    .unwrap();
    let (cq, packed) = hf::from_bytes(
        &config_json(true),
        &safetensors_bytes(&checkpoint(true)),
        "oss-mxfp4",
    )
    .unwrap();
    assert_eq!(c, cq);
    assert_eq!(
        c.sliding,
        Some(Sliding {
            window: WINDOW,
            layers: vec![true, false]
        })
    );
    // MXFP4 decoded exactly: the same weights as the f32 checkpoint.
    assert_eq!(
        dense.tensors.keys().collect::<Vec<_>>(),
        packed.tensors.keys().collect::<Vec<_>>()
    );
    for (name, t) in &dense.tensors {
        assert_eq!(t, &packed.tensors[name], "{name}");
    }
    let model = reference::Model::load(&dense, &c).unwrap();
    let tokens = [3u32, 17, 5, 5, 22, 0];
    let want = by_hand(&checkpoint(false), &tokens);
    let mut cache = reference::KvCache::new(&c);
    for (pos, (t, want)) in tokens.iter().zip(&want).enumerate() {
        let got = model.forward(*t, pos, &mut cache);
        let top = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() <= 1e-4 * top, "pos {pos}: {g} vs {w}");
        }
    }
    // Greedy decoding runs (past the forced prompt), and a missing sink
    // is named.
    assert!(reference::generate(&model, &[4, 9], 10).len() >= 2);
    let mut short = checkpoint(false);
    short.remove("model.layers.1.self_attn.sinks");
    let e = hf::from_bytes(&config_json(false), &safetensors_bytes(&short), "oss")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("layers.1.self_attn.sinks"), "{e}");
}

/// The shrunk checkpoint through the front end: its experts in MXFP4
/// (`quantized`) or f32.
fn shrunk(quantized: bool) -> (Config, wafer_compiler::Weights) {
    hf::from_bytes(
        &config_json(quantized),
        &safetensors_bytes(&checkpoint(quantized)),
        "oss",
    )
    .unwrap()
}

fn options(kind: PlacementKind) -> Options {
    Options {
        arch: Arch::wse3().with_grid(48, 48).unwrap(),
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

/// The graph of a gpt-oss step (biased projections, sinks, windows, YaRN,
/// the router's top k then softmax, the clamped SwiGLU) interprets as the
/// reference, bit for bit, and prints and parses back.
#[test]
fn the_gpt_oss_graph_is_the_reference_model() {
    let (c, w) = shrunk(false);
    let g = ir::decode_step(&c);
    assert_eq!(ir::parse(&g.to_string(), "oss.ir").unwrap(), g);
    let text = g.to_string();
    assert!(
        text.contains("sinks=layers.0.attention.sinks window=2"),
        "{text}"
    );
    assert!(
        text.contains("order=top_softmax") && text.contains("clamped_swiglu %"),
        "{text}"
    );
    let m = reference::Model::load(&w, &c).unwrap();
    let (mut a, mut b) = (reference::KvCache::new(&c), reference::KvCache::new(&c));
    for (pos, t) in [3u32, 17, 5, 5, 22].iter().enumerate() {
        assert_eq!(
            ir::interpret(&g, &w, *t, pos, &mut b).unwrap(),
            m.forward(*t, pos, &mut a),
            "pos {pos}"
        );
    }
}

/// The shrunk gpt-oss on the wafer, with and without a prompt, on both
/// placements: the reference's tokens, logits within 1e-4 of the largest
/// (the wafer's sums, softmaxes and router round in their own order), the
/// window sliding past the first positions.
#[test]
fn a_gpt_oss_checkpoint_decodes_on_the_wafer_as_the_reference() {
    let (c, w) = shrunk(true);
    let m = reference::Model::load(&w, &c).unwrap();
    for kind in [PlacementKind::Pipeline, PlacementKind::Mesh] {
        let compiled = wafer_compiler::compile(&c, Some(&w), &options(kind)).unwrap();
        for prompt in [&[][..], &[4, 9, 13]] {
            let want = reference::generate(&m, prompt, 8);
            let mut d = Decoder::new(&compiled);
            let mut logits = Vec::new();
            let got = generate(&mut d, prompt, 8, None, |_, s| {
                logits.push(s.logits.clone())
            })
            .unwrap();
            assert_eq!(got, want, "{kind}, prompt {prompt:?}");
            common::logits_close(&m, &c, &got, &logits, 1e-4, &format!("{kind}"));
            assert!(logits.len() > 3, "{kind}: {got:?}");
        }
    }
}

/// A prompt longer than the sliding window, prefilled on the wafer: the
/// reference's tokens on both placements.
#[test]
fn a_gpt_oss_prompt_prefills_on_the_wafer_as_the_reference() {
    let (c, w) = shrunk(true);
    let m = reference::Model::load(&w, &c).unwrap();
    let prompt: Vec<u32> = (0..WINDOW as u32 + 3)
        .map(|i| (3 + 5 * i) % V as u32)
        .collect();
    let steps = prompt.len() + 4;
    let want = reference::generate(&m, &prompt, steps);
    for kind in [PlacementKind::Pipeline, PlacementKind::Mesh] {
        let compiled = wafer_compiler::compile(&c, Some(&w), &options(kind)).unwrap();
        let mut d = Decoder::new(&compiled);
        let mut positions = 0;
        let got = prefill::generate(&mut d, &prompt, steps, None, |p| {
            if let prefill::Progress::Prefilled { prefill, .. } = p {
                positions = prefill.positions
            }
        })
        .unwrap();
        assert_eq!(got, want, "{kind}");
        assert_eq!(positions as usize, prompt.len() + 1);
    }
}
