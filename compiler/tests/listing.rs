//! Compile listings of both shared checkpoints, on a small grid and on the
//! full `wse3`, as insta snapshots: a change to placement, routing, SRAM
//! planning or a kernel's cost model shows up here as a reviewed diff.

mod common;
use std::path::PathBuf;
use wafer_compiler::place::{Options, PlacementKind};
use wafer_compiler::{compile, listing::listing, llama2c};
use wafer_emulator::{Arch, DType};
use wafer_kernels::reduce::Strategy;

fn checkpoint(name: &str) -> PathBuf {
    common::models().join(name)
}

fn compiled_listing(file: &str, arch: Arch, kind: Option<PlacementKind>) -> String {
    let (c, w) = llama2c::load(&checkpoint(file)).unwrap();
    let o = Options {
        arch,
        dtype: DType::F32,
        placement: kind,
        max_context: c.seq_len as u32,
        reduce: Strategy::Tree { k: 2 },
        gemv: wafer_compiler::place::GemvChoice::Auto,
        region: wafer_compiler::region::Region::Whole,
        wafers: wafer_compiler::system::Wafers::Count(1),
        tiles: None,
    };
    let compiled = compile(&c, Some(&w), &o).unwrap();
    listing(&compiled, o.max_context / 2)
}

#[test]
fn listings_on_a_small_grid() {
    let small = || Arch::wse3().with_grid(96, 64).unwrap();
    for file in ["stories260K.bin", "aidreams260K.bin"] {
        for kind in [PlacementKind::Pipeline, PlacementKind::Mesh] {
            insta::assert_snapshot!(
                format!("{file}_96x64_{kind}"),
                compiled_listing(file, small(), Some(kind))
            );
        }
    }
}

#[test]
fn listings_on_wse3() {
    for file in ["stories260K.bin", "aidreams260K.bin"] {
        insta::assert_snapshot!(
            format!("{file}_wse3_auto"),
            compiled_listing(file, Arch::wse3(), None)
        );
    }
}
