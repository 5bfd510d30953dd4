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

/// Where mesh placement puts the stages around a tile's projections so
/// that the hand-offs spread over the links: a vector stage (or argmax)
/// that a tiled GEMV feeds by its east edge, row by row, takes a row of
/// PEs per row of it (a shorter column gathers the rows below onto its last link), and
/// attention, whose columns send from one row, is spread over the
/// projection its output feeds (`wo`), each column as near the part of
/// its top edge that takes the column's output as one pitch allows; RoPE
/// is no shorter than the rows that send it q and k.
#[test]
fn mesh_shapes_and_places_stages_for_spread_hand_offs() {
    use wafer_compiler::kernel::Kernel;
    use wafer_compiler::stage::Src;
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let arch = Arch::wse3().with_grid(48, 48).unwrap();
    let (mut short_ropes, mut lighter) = (0, 0);
    for tiles in [Tiles { cols: 2, rows: 1 }, Tiles { cols: 1, rows: 3 }] {
        let compiled = compile(&c, Some(&w), &options(arch.clone(), Some(tiles))).unwrap();
        let (stages, sites) = (&compiled.stages, &compiled.sites);
        let made_by = |v: usize| stages.iter().position(|p| p.outputs.contains(&v));
        let mut fed = 0;
        for (s, site) in stages.iter().zip(sites) {
            let column = match &site.kernel {
                Kernel::Vector(v) => Some((v.h, v.n)),
                Kernel::Argmax(a) => Some((a.h, a.n)),
                _ => None,
            };
            if let Some((h, n)) = column {
                let rows = (s.inputs.iter().flat_map(|(_, srcs)| srcs))
                    .filter_map(|src| match src {
                        Src::Value(v) => made_by(*v),
                        _ => None,
                    })
                    .filter(|&j| stages[j].layer == s.layer)
                    .filter_map(|j| match &sites[j].kernel {
                        Kernel::Gemv(g) => Some(g.h),
                        _ => None,
                    })
                    .max();
                if let Some(rows) = rows {
                    assert_eq!(h, rows.min(n), "{} in {tiles} tiles", s.name);
                    fed += 1;
                }
            }
            if let Work::Attention { .. } = &s.work {
                // Spread over `wo`, its columns' outputs share the links
                // of the row they leave along far less than side by side
                // (at the same middle) would: each goes to its own part
                // of `wo`'s top edge.
                let Kernel::Attention(a) = &site.kernel else {
                    panic!("{} is not attention", s.name)
                };
                let wo = (stages.iter().zip(sites))
                    .find(|(p, _)| {
                        (p.inputs.iter().flat_map(|(_, x)| x))
                            .any(|x| matches!(x, Src::Value(v) if s.outputs.contains(v)))
                    })
                    .map(|(_, w)| w)
                    .unwrap();
                let Kernel::Gemv(g) = &wo.kernel else {
                    panic!("{}'s output feeds no tiled GEMV", s.name)
                };
                assert!(a.pitch > 1, "{} not spread over {} columns", s.name, g.w);
                let (cols, each) = (a.columns(), a.as_columns().group * a.head_dim);
                let spread: Vec<u32> = (0..cols).map(|k| site.origin.x + k * a.pitch).collect();
                let middle = site.origin.x + (cols - 1) * a.pitch / 2;
                let packed: Vec<u32> = (0..cols).map(|k| middle - cols / 2 + k).collect();
                let (spread, packed) = (
                    busiest(&spread, each, wo.origin.x, g),
                    busiest(&packed, each, wo.origin.x, g),
                );
                assert!(
                    2 * spread <= packed,
                    "{} ({tiles} tiles): {spread} wavelets on one link spread, {packed} side by side",
                    s.name
                );
                lighter += 1;
            }
        }
        // And a RoPE is no shorter than the rows of its GEMV that send
        // its inputs (q and k, the first of the GEMV's outputs) or its
        // pairs, never below them all; one shorter than those rows (its
        // pairs fewer) is over their middle where its skyline allows,
        // never lower.
        for (s, site) in stages.iter().zip(sites) {
            let Work::Rope { heads, head, .. } = s.work else {
                continue;
            };
            let takes = |v: &usize| {
                (s.inputs.iter().flat_map(|(_, x)| x)).any(|x| matches!(x, Src::Value(u) if u == v))
            };
            let Some((gs, Kernel::Gemv(g))) = (stages.iter().zip(sites))
                .find(|(p, _)| p.layer == s.layer && p.outputs.iter().any(takes))
                .map(|(_, gs)| (gs, &gs.kernel))
            else {
                continue;
            };
            let (used, (_, h)) = ((g.h * heads * head).div_ceil(g.m), site.kernel.size());
            assert!(
                h >= used.min(heads * head / 2),
                "{} in {tiles} tiles: {h} rows, {used} send it",
                s.name
            );
            assert!(
                site.origin.y < gs.origin.y + used,
                "{} at {:?} below the rows that send it, {tiles} tiles",
                s.name,
                site.origin
            );
            if h < used {
                let centred = gs.origin.y + (used / 2).saturating_sub(h / 2);
                assert!(
                    site.origin.y <= centred,
                    "{} at {:?}, {tiles} tiles",
                    s.name,
                    site.origin
                );
            }
            short_ropes += usize::from(h < g.h);
        }
        assert!(
            fed >= 2 * c.n_layers,
            "{fed} stages fed by a GEMV, {tiles} tiles"
        );
    }
    assert!(short_ropes > 0, "no RoPE shorter than its GEMV");
    assert_eq!(lighter, 2 * c.n_layers, "attention stages spread");
}

/// The most of attention's output elements that cross one link of the
/// row its columns send along, on their way from columns at `xs`
/// (`each` elements a column, in order) to the columns of `wo` (west
/// edge at `x0`) whose `x` holds them: west and east counted apart.
fn busiest(xs: &[u32], each: u32, x0: u32, wo: &wafer_kernels::gemv::GemvSpec) -> u32 {
    let mut load = std::collections::HashMap::new();
    for (j, &(at, len)) in wo.x_parts().iter().enumerate() {
        // (A bias's one is `wo`'s own.)
        for e in (at..at + len).filter(|&e| e < xs.len() as u32 * each) {
            let (from, to) = (xs[(e / each) as usize], x0 + j as u32);
            for x in from.min(to)..from.max(to) {
                *load.entry((x, to < from)).or_insert(0) += 1;
            }
        }
    }
    load.into_values().max().unwrap_or(0)
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

/// Spread attention takes columns all along its tile: in the 8B's tiles
/// on `wse2` (675 × 895 PEs in 2 × 3 tiles, five or six layers a tile)
/// the later layers found no room spread or side by side and shared PEs
/// with the earlier ones, and the compile fell back to one column per KV
/// head. Such a tile is laid out again with its attention narrower
/// apart: every attention has its PEs to itself, keeps its copies of
/// the cache, and is spread.
#[test]
fn a_crowded_tile_spreads_its_attention_narrower() {
    use wafer_compiler::kernel::Kernel;
    use wafer_compiler::place::{KvCopies, place};
    use wafer_compiler::{ir, model::Config, stage};
    let c = Config::built_in("llama-3.1-8b").unwrap();
    let tiles = Tiles { cols: 2, rows: 3 };
    let o = Options {
        dtype: wafer_emulator::DType::BF16,
        max_context: 2048,
        ..options(Arch::wse2().with_grid(675, 895).unwrap(), Some(tiles))
    };
    let stages = stage::fuse(stage::lower(&ir::decode_step(&c)));
    let sites = place(
        &stages,
        &c,
        &o,
        (PlacementKind::Mesh, tiles),
        KvCopies::Allowed,
    )
    .unwrap();
    let attention: Vec<_> = (sites.iter())
        .filter(|s| matches!(s.kernel, Kernel::Attention(_)))
        .collect();
    assert_eq!(attention.len(), c.n_layers);
    for (i, a) in attention.iter().enumerate() {
        let Kernel::Attention(spec) = &a.kernel else {
            unreachable!()
        };
        assert!(spec.per_query_head, "attention {i} without copies");
        for (j, b) in attention.iter().enumerate().skip(i + 1) {
            assert!(!a.shares_pe(b), "attention {i} and {j} share a PE");
        }
    }
    // Narrowed to a pitch the tile's layers share, all of them spread.
    let spread = (attention.iter()).filter(|a| a.kernel.pitch() > 1).count();
    assert_eq!(spread, c.n_layers);
}
