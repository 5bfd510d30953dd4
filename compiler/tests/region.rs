//! The region search: the rectangle it chooses is the shortest predicted
//! step it tried, its shortcut (one fragment per distinct kernel) predicts
//! exactly what compiling each rectangle does, and the model compiled
//! there decodes as the reference.

mod common;
use common::models;
use wafer_compiler::decode::{Decoder, generate};
use wafer_compiler::place::{GemvChoice, Options, PlacementKind};
use wafer_compiler::region::Region;
use wafer_compiler::{compile, llama2c, reference};
use wafer_emulator::{Arch, DType};
use wafer_kernels::reduce::Strategy;

fn options(arch: Arch, kind: Option<PlacementKind>, region: Region) -> Options {
    Options {
        arch,
        dtype: DType::F32,
        placement: kind,
        max_context: 64,
        reduce: Strategy::Tree { k: 2 },
        gemv: GemvChoice::Auto,
        region,
        wafers: wafer_compiler::system::Wafers::Count(1),
        tiles: None,
    }
}

#[test]
fn the_search_compiles_its_shortest_predicted_step_and_predicts_each_rectangle_as_a_compile_does() {
    let (c, w) = llama2c::load(&models().join("aidreams260K.bin")).unwrap();
    let grid = Arch::wse3().with_grid(160, 120).unwrap();
    let compiled = compile(&c, Some(&w), &options(grid.clone(), None, Region::Search)).unwrap();
    let r = compiled.region.as_ref().expect("the search ran");
    assert_eq!(r.grid, (160, 120));
    for kind in [PlacementKind::Pipeline, PlacementKind::Mesh] {
        assert!(
            r.points
                .iter()
                .any(|p| (p.cols, p.rows) == (160, 120) && p.kind == kind),
            "the whole grid is tried with {kind}"
        );
    }
    assert!(r.points.len() > 4, "{} points", r.points.len());
    // Smaller rectangles were tried, and some of them fit.
    assert!(
        r.points
            .iter()
            .any(|p| p.cols < 160 && p.rows < 120 && p.result.is_ok())
    );
    // The compiled model is the chosen point, which no point beats.
    let best = r.predicted();
    assert!(
        r.points
            .iter()
            .filter_map(|p| p.result.clone().ok())
            .all(|cycles| cycles >= best)
    );
    assert_eq!(
        (
            compiled.options.arch.grid_cols,
            compiled.options.arch.grid_rows
        ),
        r.chosen
    );
    assert_eq!(compiled.kind, r.kind);
    assert_eq!(compiled.wafers[0].tiles, r.tiles);
    assert_eq!(compiled.predicted(r.pos), best);
    // Each point's prediction is what compiling that rectangle with that
    // placement and tiling predicts (checked on the chosen, the whole grid and two
    // more), and a point that did not fit does not compile.
    let mut checked = 0;
    for (i, p) in r.points.iter().enumerate() {
        let whole = (p.cols, p.rows) == (160, 120);
        if !(whole || i % 5 == 0 || (p.cols, p.rows, p.kind) == (r.chosen.0, r.chosen.1, r.kind)) {
            continue;
        }
        let arch = grid.clone().with_grid(p.cols, p.rows).unwrap();
        let o = Options {
            tiles: Some(p.tiles),
            ..options(arch, Some(p.kind), Region::Whole)
        };
        let one = compile(&c, Some(&w), &o);
        match (&p.result, one) {
            (Ok(cycles), Ok(one)) => assert_eq!(one.predicted(r.pos), *cycles, "{p:?}"),
            (Err(_), Err(_)) => {}
            (want, got) => panic!(
                "{p:?}: the search said {want:?}, compiling: {:?}",
                got.err()
            ),
        }
        checked += 1;
    }
    assert!(checked >= 4, "{checked} points checked");
    // On its region the model decodes as the reference.
    let mut d = Decoder::new(&compiled);
    let got = generate(&mut d, &[], 12, None, |_, _| {}).unwrap();
    let model = reference::Model::load(&w, &c).unwrap();
    assert_eq!(got, reference::generate(&model, &[], 12));
}

#[test]
fn a_grid_nothing_fits_gives_the_whole_grids_error() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let tiny = Arch::wse3().with_grid(4, 4).unwrap();
    let searched = compile(&c, Some(&w), &options(tiny.clone(), None, Region::Search))
        .unwrap_err()
        .to_string();
    let whole = compile(&c, Some(&w), &options(tiny, None, Region::Whole))
        .unwrap_err()
        .to_string();
    assert_eq!(searched, whole);
    assert!(searched.contains("does not fit"), "{searched}");
}

#[test]
fn a_model_beyond_one_wafer_is_refused_at_once_saying_how_many_wafers_it_takes() {
    let c = wafer_compiler::Config::built_in("llama-3.1-70b").unwrap();
    let mut o = options(Arch::wse3(), None, Region::Search);
    o.dtype = DType::BF16;
    o.max_context = 2048;
    let t = std::time::Instant::now();
    let e = compile(&c, None, &o).unwrap_err().to_string();
    // Refused before any placement (a placement of 80 layers takes minutes).
    assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
    assert!(e.contains("141107412992"), "{e}");
    assert!(e.contains("take 5 such machines"), "{e}");
    // The 405B: 812 GB of bf16 weights.
    let c = wafer_compiler::Config::built_in("llama-3.1-405b").unwrap();
    let e = compile(&c, None, &o).unwrap_err().to_string();
    assert!(e.contains("take 25 such machines"), "{e}");
    // A model whose SRAM fits one machine, though its stages do not, says
    // nothing of several machines.
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let tiny = Arch::wse3().with_grid(6, 6).unwrap();
    let pipeline = options(tiny, Some(PlacementKind::Pipeline), Region::Whole);
    let Err(e) = compile(&c, Some(&w), &pipeline) else {
        panic!("stories260K fits 6x6 PEs in strips: the test needs a grid it does not");
    };
    let e = e.to_string();
    assert!(!e.contains("such machines"), "{e}");
}
