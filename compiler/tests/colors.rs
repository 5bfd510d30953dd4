//! The colors of a compiled step: the kernels' that placement counts
//! without generating them are what their programs take, and a kernel
//! spread over columns takes no color the hand-offs would have had.

mod common;
use common::models;
use wafer_compiler::model::{Family, RopePairs};
use wafer_compiler::place::{Kernel, PlacementKind, Tiles};
use wafer_compiler::{Compiled, Config, compile, llama2c};
use wafer_emulator::{Arch, DType};
use wafer_kernels::Fragment;

/// The colors a generated program takes: its highest color plus one.
fn taken(f: &Fragment) -> usize {
    f.colors().into_iter().max().map_or(0, |c| c as usize + 1)
}

/// Every kernel placement counted is as it said; the wide kernels'
/// colors are at most the first placement's cap (7) or what the other
/// kernels take. Returns the widest wide kernel's columns.
fn check(c: &Compiled) -> u32 {
    let mut others = 0;
    let mut widest = 0;
    for (site, f) in c.sites.iter().zip(&c.fragments) {
        if let Some(k) = site.kernel.known_colors() {
            assert_eq!(k, taken(f), "{:?}", site.kernel);
        }
        if site.kernel.is_wide_vector() {
            widest = widest.max(site.kernel.size().0);
        } else {
            others = others.max(taken(f));
        }
    }
    let wide = 2 * widest as usize + 1;
    assert!(
        wide <= others.max(7),
        "{widest} columns, the other kernels take {others} colors"
    );
    assert_eq!(
        c.routing.kernel_colors as usize,
        others.max(2 * widest as usize + 1)
    );
    widest
}

fn llama(dim: usize, hidden: usize, heads: usize, kv_heads: usize) -> Config {
    Config {
        dim,
        hidden_dim: hidden,
        n_layers: 2,
        n_heads: heads,
        n_kv_heads: kv_heads,
        vocab_size: 64,
        seq_len: 64,
        rope_theta: 10000.0,
        rope_pairs: RopePairs::HalfSplit,
        norm_eps: 1e-5,
        tied_embeddings: false,
        rope_scaling: None,
        family: Family::Llama,
        moe: None,
        head_dim: None,
        sliding: None,
    }
}

fn compiled(conf: &Config, kind: PlacementKind, max_context: u32) -> Compiled {
    let arch = Arch::wse3().with_grid(96, 64).unwrap();
    let mut o = common::f32_options(arch, kind, None);
    o.dtype = DType::BF16;
    o.max_context = max_context;
    compile(conf, None, &o).unwrap()
}

fn attention_colors(c: &Compiled) -> usize {
    (c.sites.iter().zip(&c.fragments))
        .filter(|(s, _)| matches!(s.kernel, Kernel::Attention(_)))
        .map(|(_, f)| taken(f))
        .max()
        .unwrap()
}

/// A SwiGLU of 4,096 pairs spreads over four columns where attention
/// already takes nine colors (context 64), and is held at three where it
/// takes four (context 2): the 7 colors of the first placement's cap.
/// (Mesh placement; pipeline placement's attention takes five.)
#[test]
fn a_wide_kernel_spreads_as_far_as_the_other_kernels_colors_allow() {
    let conf = llama(256, 4096, 8, 2);
    let long = compiled(&conf, PlacementKind::Mesh, 64);
    assert_eq!(attention_colors(&long), 9);
    assert_eq!(check(&long), 4);
    let short = compiled(&conf, PlacementKind::Mesh, 2);
    assert_eq!(attention_colors(&short), 4);
    assert_eq!(check(&short), 3);
    // Pipeline placement's shorter attention columns take 5.
    let pipeline = compiled(&conf, PlacementKind::Pipeline, 64);
    assert_eq!(attention_colors(&pipeline), 5);
    assert!(check(&pipeline) <= 3);
}

/// The shared checkpoints, both placements, whole and in tiles.
#[test]
fn the_colors_placement_counts_are_the_programs() {
    let arch = Arch::wse3().with_grid(48, 48).unwrap();
    for file in ["stories260K.bin", "aidreams260K.bin"] {
        let (conf, w) = llama2c::load(&models().join(file)).unwrap();
        for (kind, tiles) in [
            (PlacementKind::Pipeline, None),
            (PlacementKind::Mesh, None),
            (PlacementKind::Mesh, Some(Tiles { cols: 1, rows: 2 })),
        ] {
            let o = common::f32_options(arch.clone(), kind, tiles);
            check(&compile(&conf, Some(&w), &o).unwrap());
        }
    }
}
