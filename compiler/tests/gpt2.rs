//! GPT-2 from a Hugging Face directory the test writes (Conv1D `[in, out]`
//! weights, q/k/v stacked in `c_attn`, the attention-mask buffers present):
//! the conversion, the reference against a direct computation on the raw
//! tensors, the IR against the reference, and decoding on the wafer.

mod written;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wafer_compiler::decode::{Decoder, generate};
use wafer_compiler::place::{Options, PlacementKind};
use wafer_compiler::{Config, compile, hf, ir, reference};
use wafer_emulator::{Arch, DType};

const D: usize = 16;
const H: usize = 4 * D;
const L: usize = 2;
const HEADS: usize = 4;
const V: usize = 30;
const P: usize = 32;

/// HF name → (shape, values), seeded.
fn tensors() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut next = written::seeded(5, 0.5);
    let mut out = BTreeMap::new();
    let mut put = |name: String, shape: Vec<usize>| {
        let n = shape.iter().product();
        out.insert(name, (shape, (0..n).map(|_| next()).collect::<Vec<f32>>()));
    };
    put("wte.weight".into(), vec![V, D]);
    put("wpe.weight".into(), vec![P, D]);
    for l in 0..L {
        let p = format!("h.{l}");
        for ln in ["ln_1", "ln_2"] {
            put(format!("{p}.{ln}.weight"), vec![D]);
            put(format!("{p}.{ln}.bias"), vec![D]);
        }
        put(format!("{p}.attn.c_attn.weight"), vec![D, 3 * D]);
        put(format!("{p}.attn.c_attn.bias"), vec![3 * D]);
        put(format!("{p}.attn.c_proj.weight"), vec![D, D]);
        put(format!("{p}.attn.c_proj.bias"), vec![D]);
        put(format!("{p}.mlp.c_fc.weight"), vec![D, H]);
        put(format!("{p}.mlp.c_fc.bias"), vec![H]);
        put(format!("{p}.mlp.c_proj.weight"), vec![H, D]);
        put(format!("{p}.mlp.c_proj.bias"), vec![D]);
        // The causal-mask buffer GPT-2 checkpoints carry: not a weight.
        put(format!("{p}.attn.bias"), vec![1, 1, P, P]);
    }
    put("ln_f.weight".into(), vec![D]);
    put("ln_f.bias".into(), vec![D]);
    out
}

fn write_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gpt2");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"model_type": "gpt2", "n_embd": {D}, "n_layer": {L}, "n_head": {HEADS}, "n_positions": {P}, "vocab_size": {V}, "n_inner": null, "layer_norm_epsilon": 1e-5}}"#
        ),
    )
    .unwrap();
    let all = tensors();
    let st = written::f32_safetensors(
        all.iter()
            .map(|(n, (s, v))| (format!("transformer.{n}"), &s[..], &v[..])),
    );
    std::fs::write(dir.join("model.safetensors"), st).unwrap();
    dir
}

fn layernorm(x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let n = x.len() as f64;
    let mean = x.iter().map(|v| *v as f64).sum::<f64>() / n;
    let var = x.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n;
    x.iter()
        .zip(w.iter().zip(b))
        .map(|(v, (w, b))| {
            ((*v as f64 - mean) / (var + 1e-5).sqrt() * *w as f64 + *b as f64) as f32
        })
        .collect()
}

/// Conv1D as GPT-2 computes it: `x · W + b`, W `[in, out]`.
fn conv1d(x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let out = b.len();
    (0..out)
        .map(|o| {
            x.iter()
                .enumerate()
                .map(|(i, v)| v * w[i * out + o])
                .sum::<f32>()
                + b[o]
        })
        .collect()
}

/// Position 0's logits straight from the checkpoint's tensors: at one
/// position, attention returns v itself.
fn direct_first_logits(token: usize) -> Vec<f32> {
    let t = tensors();
    let g = |n: &str| &t[n].1;
    let mut x: Vec<f32> = (0..D)
        .map(|i| g("wte.weight")[token * D + i] + g("wpe.weight")[i])
        .collect();
    for l in 0..L {
        let p = |n: &str| format!("h.{l}.{n}");
        let h = layernorm(&x, g(&p("ln_1.weight")), g(&p("ln_1.bias")));
        let qkv = conv1d(&h, g(&p("attn.c_attn.weight")), g(&p("attn.c_attn.bias")));
        let o = conv1d(
            &qkv[2 * D..],
            g(&p("attn.c_proj.weight")),
            g(&p("attn.c_proj.bias")),
        );
        x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
        let h = layernorm(&x, g(&p("ln_2.weight")), g(&p("ln_2.bias")));
        let f: Vec<f32> = conv1d(&h, g(&p("mlp.c_fc.weight")), g(&p("mlp.c_fc.bias")))
            .into_iter()
            .map(|v| {
                0.5 * v
                    * (1.0
                        + ((2.0 / std::f32::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh())
            })
            .collect();
        let f = conv1d(&f, g(&p("mlp.c_proj.weight")), g(&p("mlp.c_proj.bias")));
        x.iter_mut().zip(&f).for_each(|(x, f)| *x += f);
    }
    let n = layernorm(&x, g("ln_f.weight"), g("ln_f.bias"));
    (0..V)
        .map(|v| (0..D).map(|i| g("wte.weight")[v * D + i] * n[i]).sum())
        .collect()
}

fn load() -> (Config, wafer_compiler::Weights) {
    hf::load(&write_dir()).unwrap()
}

#[test]
fn gpt2_loads_and_its_reference_matches_a_direct_computation() {
    let (c, w) = load();
    assert_eq!(
        (
            c.dim,
            c.hidden_dim,
            c.n_layers,
            c.n_heads,
            c.vocab_size,
            c.seq_len
        ),
        (D, H, L, HEADS, V, P)
    );
    assert_eq!(c.family, wafer_compiler::model::Family::Gpt2);
    let m = reference::Model::load(&w, &c).unwrap();
    for token in [0, 7, 29] {
        let got = m.forward(token as u32, 0, &mut reference::KvCache::new(&c));
        let want = direct_first_logits(token);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4, "token {token}: {a} vs {b}");
        }
    }
}

#[test]
fn gpt2_ir_interprets_as_the_reference_and_round_trips() {
    let (c, w) = load();
    let g = ir::decode_step(&c);
    assert_eq!(ir::parse(&g.to_string(), "gpt2.ir").unwrap(), g);
    let m = reference::Model::load(&w, &c).unwrap();
    let (mut a, mut b) = (reference::KvCache::new(&c), reference::KvCache::new(&c));
    for (pos, t) in [3u32, 9, 1, 22].iter().enumerate() {
        assert_eq!(
            ir::interpret(&g, &w, *t, pos, &mut b).unwrap(),
            m.forward(*t, pos, &mut a)
        );
    }
}

#[test]
fn gpt2_decodes_on_the_wafer_as_the_reference() {
    let (c, w) = load();
    let m = reference::Model::load(&w, &c).unwrap();
    let want = reference::generate(&m, &[5, 11], 20);
    for kind in [PlacementKind::Pipeline, PlacementKind::Mesh] {
        let o = Options {
            arch: Arch::wse3().with_grid(32, 32).unwrap(),
            dtype: DType::F32,
            placement: Some(kind),
            max_context: P as u32,
            reduce: wafer_kernels::reduce::Strategy::Tree { k: 2 },
            gemv: wafer_compiler::place::GemvChoice::Auto,
            region: wafer_compiler::region::Region::Whole,
            wafers: wafer_compiler::system::Wafers::Count(1),
            tiles: None,
        };
        let compiled = compile(&c, Some(&w), &o).unwrap();
        let mut d = Decoder::new(&compiled);
        let got = generate(&mut d, &[5, 11], 20, None, |_, _| {}).unwrap();
        assert_eq!(got, want, "{kind}");
    }
}

#[test]
fn built_in_gpt2_compiles_on_wse3() {
    let c = Config::built_in("gpt2").unwrap();
    assert_eq!(c.n_params(), 124_439_808, "GPT-2 small's published count");
    let o = Options {
        arch: Arch::wse3(),
        dtype: DType::BF16,
        placement: None,
        max_context: 1024,
        reduce: wafer_kernels::reduce::Strategy::Tree { k: 2 },
        gemv: wafer_compiler::place::GemvChoice::Auto,
        region: wafer_compiler::region::Region::Whole,
        wafers: wafer_compiler::system::Wafers::Count(1),
        tiles: None,
    };
    let compiled = compile(&c, None, &o).unwrap();
    assert!(compiled.sram.max_bytes <= o.arch.sram_bytes);
    assert!(compiled.stages.iter().any(|s| s.name == "pos_embed"));
    assert!(compiled.stages.iter().any(|s| s.name == "layers.11.gelu"));
    // Mesh placement gives each embedding table columns of its own. Until
    // 2026-12-02 both tables sat at the west edge's first columns, their
    // SRAM added up past a PE's on PE(1,0), and only pipeline placement
    // fitted.
    let mesh = compile(
        &c,
        None,
        &Options {
            placement: Some(PlacementKind::Mesh),
            ..o.clone()
        },
    )
    .unwrap();
    assert!(mesh.sram.max_bytes <= o.arch.sram_bytes);
    let table = |name: &str| {
        let i = mesh.stages.iter().position(|s| s.name == name).unwrap();
        let (site, (w, h)) = (&mesh.sites[i], mesh.sites[i].kernel.size());
        (site.origin.x..site.origin.x + w, h)
    };
    let ((tokens, th), (positions, ph)) = (table("embed"), table("pos_embed"));
    assert!(th > 0 && ph > 0);
    assert!(
        tokens.end <= positions.start || positions.end <= tokens.start,
        "the tables share columns: {tokens:?} and {positions:?}"
    );
}
