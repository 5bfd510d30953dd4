//! What the compiler's test files share (each uses some of it).
#![allow(dead_code)]

use std::path::PathBuf;
use wafer_compiler::place::{Options, PlacementKind, Tiles};
use wafer_compiler::{Config, reference};
use wafer_emulator::{Arch, DType};
use wafer_kernels::reduce::Strategy;

/// f32 on one wafer's `arch` (the whole grid), context 64, tree
/// reductions: the small checkpoints placed as `kind` in `tiles`.
pub fn f32_options(arch: Arch, kind: PlacementKind, tiles: Option<Tiles>) -> Options {
    Options {
        arch,
        dtype: DType::F32,
        placement: Some(kind),
        max_context: 64,
        reduce: Strategy::Tree { k: 2 },
        gemv: wafer_compiler::place::GemvChoice::Auto,
        region: wafer_compiler::region::Region::Whole,
        wafers: wafer_compiler::system::Wafers::Count(1),
        tiles,
    }
}

/// The repository's test checkpoints (`models/`, see its README);
/// fails loudly, not skipped, when they are absent.
pub fn models() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    assert!(
        dir.join("stories260K.bin").exists(),
        "{} is missing: these tests need the repository's checkpoints (models/)",
        dir.display()
    );
    dir
}

/// Every step's logits on the wafer within `tol` of the largest CPU
/// reference logit, the reference fed the same tokens from BOS (the
/// wafer's sums, softmaxes and routers round in their own order).
pub fn logits_close(
    m: &reference::Model,
    c: &Config,
    tokens: &[u32],
    logits: &[Vec<f32>],
    tol: f32,
    what: &str,
) {
    let mut cache = reference::KvCache::new(c);
    let fed = std::iter::once(wafer_compiler::tokenizer::BOS).chain(tokens.iter().copied());
    for (pos, (t, wafer)) in fed.zip(logits).enumerate() {
        let cpu = m.forward(t, pos, &mut cache);
        let top = cpu.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        for (a, b) in wafer.iter().zip(&cpu) {
            assert!((a - b).abs() <= tol * top, "{what} pos {pos}: {a} vs {b}");
        }
    }
}
