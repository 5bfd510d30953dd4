//! Greedy decode of the shared checkpoints on the emulated wafer, against
//! the CPU reference, token for token.

use std::path::PathBuf;
use wafer_compiler::decode::{Decoder, generate};
use wafer_compiler::place::{Options, PlacementKind};
use wafer_compiler::{compile, llama2c, reference};
use wafer_emulator::{Arch, DType};
use wafer_kernels::reduce::Strategy;

fn models() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/models");
    assert!(
        dir.join("stories260K.bin").exists(),
        "{} is missing: these tests need the shared checkpoints beside the repository (../shared/models)",
        dir.display()
    );
    dir
}

fn options(arch: Arch, kind: Option<PlacementKind>, max_context: u32) -> Options {
    Options {
        arch,
        dtype: DType::F32,
        placement: kind,
        max_context,
        reduce: Strategy::Tree { k: 2 },
    }
}

#[test]
fn stories_first_tokens_match_the_reference() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let steps = 24;
    let t = std::time::Instant::now();
    let compiled = compile(
        &c,
        Some(&w),
        &options(
            Arch::wse3(),
            Some(PlacementKind::Pipeline),
            c.seq_len as u32,
        ),
    )
    .unwrap();
    eprintln!("compile {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let mut d = Decoder::new(&compiled);
    let mut cycles = Vec::new();
    let got = generate(&mut d, &[], steps, None, |_, s| cycles.push(s.cycles)).unwrap();
    eprintln!("decode {:?} cycles {:?}", t.elapsed(), &cycles[..4]);
    let want = reference::generate(&reference::Model::load(&w, &c).unwrap(), &[], steps);
    assert_eq!(got, want);
}
