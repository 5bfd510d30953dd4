//! Mesh placement in tiles of layers: each layer's stages inside its
//! tile, decoding exactly as the reference, and the tiling the compiler
//! chooses predicted no slower than one tile.

mod common;
use common::models;
use wafer_compiler::decode::{Decoder, generate};
use wafer_compiler::place::{Options, PlacementKind, Tiles};
use wafer_compiler::stage::Work;
use wafer_compiler::{compile, llama2c, reference};
use wafer_emulator::Arch;

fn options(arch: Arch, tiles: Option<Tiles>) -> Options {
    common::f32_options(arch, PlacementKind::Mesh, tiles)
}

/// stories260K (5 layers) in 2x1 and 1x3 tiles of 48 × 48 PEs: every
/// layer's projections cover exactly its tile, its other stages lie
/// inside it, consecutive tiles are neighbours, and 24 greedy tokens are
/// the reference's.
#[test]
fn tiled_mesh_keeps_each_layer_in_its_tile_and_decodes_as_the_reference() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let model = reference::Model::load(&w, &c).unwrap();
    let want = reference::generate(&model, &[], 24);
    let arch = Arch::wse3().with_grid(48, 48).unwrap();
    for tiles in [Tiles { cols: 2, rows: 1 }, Tiles { cols: 1, rows: 3 }] {
        let compiled = compile(&c, Some(&w), &options(arch.clone(), Some(tiles))).unwrap();
        assert_eq!(compiled.wafers[0].tiles, tiles);
        assert!(
            compiled
                .placement()
                .ends_with(&format!("in {tiles} tiles of layers"))
        );
        // Each layer's projections share one rectangle: its tile.
        let mut tile_of: Vec<Option<(u32, u32, u32, u32)>> = vec![None; c.n_layers];
        for (s, site) in compiled.stages.iter().zip(&compiled.sites) {
            let (Some(l), Work::Gemv { .. }) = (s.layer, &s.work) else {
                continue;
            };
            let (sw, sh) = site.kernel.size();
            let r = (site.origin.x, site.origin.y, sw, sh);
            assert!(tile_of[l].is_none_or(|t| t == r), "layer {l}: {r:?}");
            tile_of[l] = Some(r);
        }
        let tile_of: Vec<_> = tile_of.into_iter().map(Option::unwrap).collect();
        let distinct = {
            let mut d = tile_of.clone();
            d.dedup();
            d
        };
        assert_eq!(distinct.len() as u32, tiles.count(), "{tile_of:?}");
        // Tiles do not overlap, and each next one shares an edge.
        for (i, a) in distinct.iter().enumerate() {
            for b in &distinct[i + 1..] {
                let apart = a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0;
                let apart = apart || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
                assert!(apart, "{a:?} and {b:?} overlap");
            }
        }
        for p in distinct.windows(2) {
            let (a, b) = (p[0], p[1]);
            let side = a.0 + a.2 == b.0 || b.0 + b.2 == a.0;
            let above = a.1 + a.3 == b.1 || b.1 + b.3 == a.1;
            assert!(side || above, "{a:?} and {b:?} are not neighbours");
        }
        // The layer's other stages inside its tile.
        for (s, site) in compiled.stages.iter().zip(&compiled.sites) {
            let Some(l) = s.layer else { continue };
            let (x, y, tw, th) = tile_of[l];
            let (sw, sh) = site.kernel.size();
            let o = site.origin;
            assert!(
                o.x >= x && o.y >= y && o.x + sw <= x + tw && o.y + sh <= y + th,
                "{} at {o:?} ({sw}x{sh}) outside its tile {:?}",
                s.name,
                tile_of[l]
            );
        }
        let mut d = Decoder::new(&compiled);
        let got = generate(&mut d, &[], 24, None, |_, _| {}).unwrap();
        assert_eq!(got, want, "{tiles} tiles");
    }
}

/// The tiling chosen by predicted cycles is never slower than one tile
/// (the search starts there), and `--tiles` as asked is what compiles.
#[test]
fn chosen_tiles_predict_no_slower_than_one_tile() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let arch = Arch::wse3().with_grid(64, 64).unwrap();
    let pos = 32;
    let one = compile(&c, Some(&w), &options(arch.clone(), Some(Tiles::ONE))).unwrap();
    let auto = compile(&c, Some(&w), &options(arch.clone(), None)).unwrap();
    assert!(
        auto.predicted(pos) <= one.predicted(pos),
        "{} in {} against {} in one tile",
        auto.predicted(pos),
        auto.wafers[0].tiles,
        one.predicted(pos)
    );
    assert_eq!(one.wafers[0].tiles, Tiles::ONE);
    assert_eq!(one.placement(), "mesh placement");
    // A tiling asked for by hand compiles as asked, even where slower.
    let five = Tiles { cols: 5, rows: 1 };
    let asked = compile(&c, Some(&w), &options(arch, Some(five))).unwrap();
    assert_eq!(asked.wafers[0].tiles, five);
}

/// The ladder: counts 1, 2, 3, 4, 6, 8, … up to the layers, each cut into
/// the tiles nearest square for the grid's shape.
#[test]
fn the_ladder_of_tilings() {
    let counts = |l| -> Vec<u32> {
        Tiles::ladder(l, 600, 1000)
            .iter()
            .map(|t| t.count())
            .collect()
    };
    assert_eq!(counts(32), [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]);
    assert_eq!(counts(5), [1, 2, 3, 4]);
    assert_eq!(counts(1), [1]);
    let t = Tiles::ladder(32, 600, 1000);
    // A tall grid cuts its rows first.
    assert_eq!(t[1], Tiles { cols: 1, rows: 2 });
    assert_eq!(t[3], Tiles { cols: 2, rows: 2 });
    assert_eq!(Tiles::parse("4x3"), Some(Tiles { cols: 4, rows: 3 }));
    assert_eq!(Tiles::parse("0x3"), None);
    assert_eq!(Tiles::parse("4"), None);
}
