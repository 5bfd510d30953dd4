//! Region search: how many PEs a model deserves.
//!
//! More PEs are not always faster: every hop a broadcast, a reduction or a
//! hand-off crosses costs a cycle, and on the whole wafer the routes are
//! long. With [`Region::Search`] the compiler places the model on a ladder
//! of rectangles cut from the grid's north-west corner (the grid's shape
//! and squares, each scaled down in steps), predicts each one's step with
//! the cost models, and compiles the fastest that fits. [`Searched`] keeps
//! every point, so the listing can say what was chosen and why.
//!
//! A point is predicted without generating every stage's program: stages
//! whose kernels are equal but for their seeded data share one generated
//! fragment (they route, lay out SRAM and cost the same), so a point costs
//! the model's distinct kernels, not its stages.

use crate::codegen::{self, CompileError};

use crate::ir::Graph;
use crate::model::Config;
use crate::place::{self, Kernel, Options, PlacementKind, Site, Tiles};
use crate::stage::Stage;
use rayon::prelude::*;
use std::sync::Arc;
use wafer_kernels::{Flip, Fragment};

/// Which PEs of the grid a model is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// The whole grid (the machine's, or what `--grid` cut from it).
    Whole,
    /// The rectangle from the grid's north-west corner whose predicted
    /// step is shortest among those that fit.
    Search,
}

/// One rectangle the search predicted.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub cols: u32,
    pub rows: u32,
    pub kind: PlacementKind,
    /// The tiles of layers mesh placement took there (one for pipeline).
    pub tiles: Tiles,
    /// Predicted cycles of one step, or why it does not fit.
    pub result: Result<u64, String>,
}

/// What the search tried and chose.
#[derive(Clone, Debug, PartialEq)]
pub struct Searched {
    /// The grid the rectangles were cut from.
    pub grid: (u32, u32),
    /// The rectangle compiled, and its placement.
    pub chosen: (u32, u32),
    pub kind: PlacementKind,
    pub tiles: Tiles,
    /// The position the steps were predicted at.
    pub pos: u32,
    /// Every point, in the order tried (a rectangle's placements together).
    pub points: Vec<Point>,
}

impl Searched {
    /// One line for a report: the rectangle chosen, of what, from how many.
    pub fn summary(&self) -> String {
        format!(
            "region {}x{} of the {}x{} grid: the shortest predicted step of {} tried",
            self.chosen.0,
            self.chosen.1,
            self.grid.0,
            self.grid.1,
            self.points.len()
        )
    }

    /// The chosen point's prediction.
    pub fn predicted(&self) -> u64 {
        self.points
            .iter()
            .find(|p| (p.cols, p.rows) == self.chosen && p.kind == self.kind)
            .and_then(|p| p.result.clone().ok())
            .expect("the chosen point fits")
    }
}

/// The ladder's scales, largest first: each rectangle tried is the grid's
/// shape or the square on its shorter side, scaled by one of these (then,
/// around the best of a walk, by the scales halfway to its neighbours).
const SCALES: [f64; 9] = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2];

/// A walk down a ladder stops after this many rectangles in a row that do
/// not beat its best (or do not fit). Two stopped smollm2-135m's walk on
/// `wse3` one rectangle short of its best (a rectangle that does not fit,
/// then one 0.3 % slower, then 151 × 234, 2.8 % faster) once attention
/// was spread over `wo`, and gpt2's too.
const PATIENCE: u32 = 3;

/// The shapes a walk scales: the grid's own and the square on its shorter
/// side (one shape on a square grid).
fn shapes(cols: u32, rows: u32) -> Vec<(u32, u32)> {
    let side = cols.min(rows);
    let mut v = vec![(cols, rows), (side, side)];
    v.dedup();
    v
}

/// `shape` scaled by `f`, at least one PE a side.
fn scaled(shape: (u32, u32), f: f64) -> (u32, u32) {
    let s = |n: u32| ((n as f64 * f).round() as u32).clamp(1, n);
    (s(shape.0), s(shape.1))
}

fn fits_sram((w, h): (u32, u32), sram_bytes: u32, need_bytes: u64) -> bool {
    w as u64 * h as u64 * sram_bytes as u64 >= need_bytes
}

/// Walk each placement down each shape's ladder (the walks in parallel),
/// and choose the shortest predicted step among every point (ties: fewer
/// PEs, then the order tried); `None` when nothing fits (compiling the
/// whole grid then says what the model needs).
///
/// A walk predicts its shape at each scale until [`PATIENCE`] points in a
/// row fail to beat its best, skipping scales whose SRAM cannot hold the
/// weights and KV cache; then it tries the scales halfway between its
/// best and that one's neighbours, twice over. Predicted steps fall as the
/// region shrinks (shorter routes) until the kernels' tiles grow past what
/// the routes save or the SRAM is full, so the walk finds that turn
/// without predicting every rectangle.
pub(crate) fn search(
    config: &Config,
    options: &Options,
    graph: &Graph,
    stages: &[Stage],
    kinds: &[PlacementKind],
) -> Option<Searched> {
    let (cols, rows) = (options.arch.grid_cols, options.arch.grid_rows);
    let (weights, kv) = crate::footprint::footprint(config, options.dtype, options.max_context);
    let need = weights + kv;
    let pos = options.max_context / 2;
    let walks: Vec<(PlacementKind, (u32, u32))> = kinds
        .iter()
        .flat_map(|&k| shapes(cols, rows).into_iter().map(move |s| (k, s)))
        .collect();
    // A point's tiles are searched from those its walk's best point took
    // (the best tiling moves little from one rectangle to the next).
    let made = Fragments::default();
    let try_point = |kind: PlacementKind, (w, h): (u32, u32), near: Tiles| -> Point {
        let result = options
            .arch
            .clone()
            .with_grid(w, h)
            .map_err(|e| e.to_string())
            .and_then(|arch| {
                let o = Options {
                    arch,
                    ..options.clone()
                };
                predict(config, &o, graph, stages, kind, pos, &[], near, &made)
                    .map_err(|e| e.to_string())
            });
        Point {
            cols: w,
            rows: h,
            kind,
            tiles: result.as_ref().map_or(near, |r| r.1),
            result: result.map(|r| r.0),
        }
    };
    let walked: Vec<Vec<(f64, Point)>> = walks
        .par_iter()
        .map(|&(kind, shape)| {
            let mut tried: Vec<(f64, Point)> = Vec::new();
            let best = |tried: &[(f64, Point)]| {
                tried
                    .iter()
                    .filter_map(|(f, p)| Some((p.result.clone().ok()?, *f, p.tiles)))
                    .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
            };
            let step = |f: f64, tried: &mut Vec<(f64, Point)>| {
                let r = scaled(shape, f);
                if !fits_sram(r, options.arch.sram_bytes, need)
                    || tried.iter().any(|(_, p)| (p.cols, p.rows) == r)
                {
                    return None;
                }
                let near = best(tried).map_or(Tiles::ONE, |b| b.2);
                let p = try_point(kind, r, near);
                let cycles = p.result.clone().ok();
                tried.push((f, p));
                cycles
            };
            let mut misses = 0;
            for &f in &SCALES {
                let before = best(&tried).map(|b| b.0);
                match step(f, &mut tried) {
                    Some(c) if before.is_none_or(|b| c < b) => misses = 0,
                    _ if before.is_none() => {}
                    _ => {
                        misses += 1;
                        if misses == PATIENCE {
                            break;
                        }
                    }
                }
            }
            let mut gap = SCALES[0] - SCALES[1];
            for _ in 0..2 {
                gap /= 2.0;
                let Some((_, f, _)) = best(&tried) else { break };
                for g in [f - gap, f + gap] {
                    if g > 0.0 && g <= 1.0 {
                        step(g, &mut tried);
                    }
                }
            }
            tried
        })
        .collect();
    let points: Vec<Point> = walked.into_iter().flatten().map(|(_, p)| p).collect();
    let (_, _, best) = points
        .iter()
        .filter_map(|p| Some((p.result.clone().ok()?, p.cols as u64 * p.rows as u64, p)))
        .min_by_key(|(cycles, pes, _)| (*cycles, *pes))?;
    Some(Searched {
        grid: (cols, rows),
        chosen: (best.cols, best.rows),
        kind: best.kind,
        tiles: best.tiles,
        pos,
        points: points.clone(),
    })
}

/// The predicted step at `pos` of `stages` placed with `kind` on the grid
/// of `o`, and the tiles of layers it takes, or why they do not fit:
/// placement, routing and the SRAM plan as a compile does them, with one
/// fragment per distinct kernel.
///
/// Mesh placement takes `o.tiles` when given; else it climbs
/// [`Tiles::ladder`] from `near` (the tiling nearest it in count) towards
/// more tiles, or else fewer, until [`PATIENCE`] tilings in a row fail to
/// beat the best (one, when `near` is more than one tile: a neighbouring
/// rectangle's best), and takes the shortest. The step falls as the tiles shrink (shorter routes) until
/// the projections' tiles of weights grow past what the routes save.
///
/// `arrives`: the values made on an earlier wafer, when `stages` are one
/// wafer's of a system ([`crate::system`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn predict(
    config: &Config,
    o: &Options,
    graph: &Graph,
    stages: &[Stage],
    kind: PlacementKind,
    pos: u32,
    arrives: &[usize],
    near: Tiles,
    made: &Fragments,
) -> Result<(u64, Tiles), CompileError> {
    let ladder = tilings(o, stages, kind);
    let at = |t: Tiles| predict_tiled(config, o, graph, stages, (kind, t), pos, arrives, made);
    let start = (0..ladder.len())
        .min_by_key(|&i| ladder[i].count().abs_diff(near.count()))
        .expect("a ladder has one tiling at least");
    let first = at(ladder[start]);
    let mut best = first.as_ref().ok().map(|&c| (c, ladder[start]));
    // From a neighbouring point's best, a step each way is enough (it
    // moves little); from one tile, the whole climb.
    let patience = if start == 0 { PATIENCE } else { 1 };
    // Up the ladder while it gets faster (a tiling that holds an uneven
    // share of the layers can fail to fit or be slower between two that
    // are faster, so one miss in a row is passed over), then, if going up
    // found nothing faster, down the same way.
    let climb = |way: &mut dyn Iterator<Item = Tiles>, best: &mut Option<(u64, Tiles)>| {
        let mut climbed = false;
        let mut misses = 0;
        for t in way {
            match at(t) {
                Ok(c) if best.is_none_or(|b| c < b.0) => {
                    *best = Some((c, t));
                    climbed = true;
                    misses = 0;
                }
                _ => {
                    misses += 1;
                    if misses == patience {
                        break;
                    }
                }
            }
        }
        climbed
    };
    if !climb(&mut ladder[start + 1..].iter().copied(), &mut best) && best.is_some() {
        climb(&mut ladder[..start].iter().rev().copied(), &mut best);
    }
    match best {
        Some(b) => Ok(b),
        None => first.map(|c| (c, ladder[start])),
    }
}

/// The tilings [`predict`] chooses among: `o.tiles` when given, else the
/// ladder for the layers `stages` hold on `o`'s grid (pipeline placement:
/// one tile).
pub(crate) fn tilings(o: &Options, stages: &[Stage], kind: PlacementKind) -> Vec<Tiles> {
    match (kind, o.tiles) {
        (PlacementKind::Pipeline, _) => vec![Tiles::ONE],
        (PlacementKind::Mesh, Some(t)) => vec![t],
        (PlacementKind::Mesh, None) => {
            let mut layers: Vec<usize> = stages.iter().filter_map(|s| s.layer).collect();
            layers.dedup();
            // The tiles cut the columns east of the embedding's.
            let cols = o
                .arch
                .grid_cols
                .saturating_sub(place::embed_cols(stages, o));
            Tiles::ladder(layers.len() as u32, cols.max(1), o.arch.grid_rows)
        }
    }
}

/// The predicted step of `stages` placed with `kind` in `tiles`.
#[allow(clippy::too_many_arguments)]
fn predict_tiled(
    config: &Config,
    o: &Options,
    graph: &Graph,
    stages: &[Stage],
    placement: (PlacementKind, Tiles),
    pos: u32,
    arrives: &[usize],
    made: &Fragments,
) -> Result<u64, CompileError> {
    codegen::fitting(
        |copies| Ok(place::place(stages, config, o, placement, copies)?),
        |sites| {
            let at = (&sites[..], placement.0);
            predict_placed(config, o, graph, stages, at, pos, arrives, made)
        },
    )
}

/// The fragments one search has generated, by kernel (its seed aside)
/// and mirror image. A search's points differ only in their grid, which
/// a kernel's generator reads only to check that the kernel fits on it,
/// so a fragment made for one point is the fragment of any other point
/// whose grid holds its program (`wafer compile llama-3.1-8b`: 900
/// fragments generated over its points, 467 of them distinct, in 23.8 s
/// of the compile's 50 s of CPU time). A caller with no search makes one
/// for its call.
///
/// Each is kept serialised: the 8B's search makes 6.9 M instructions in
/// 448,212 codes, 1.2 GB as fragments, which a bench's emulation could
/// not take back from the search's threads' heaps (its peak RSS went
/// from 2.8 to 4.1 GB); read back, one costs a fraction of making it
/// (assembling, parsing and checking its code).
#[derive(Default)]
pub(crate) struct Fragments {
    made: std::sync::Mutex<Vec<Made>>,
}

/// A fragment made: the kernel and mirror image it was made for, its
/// program's size, and the fragment serialised.
struct Made {
    kernel: (Kernel, Flip),
    size: (u32, u32),
    bytes: Arc<[u8]>,
}

impl Fragments {
    /// The fragment of `kernel` on `o`'s grid: one made before whose
    /// program fits the grid, else `make`'s (kept).
    fn get_or_make(
        &self,
        kernel: &(Kernel, Flip),
        o: &Options,
        make: impl FnOnce() -> Result<Fragment, CompileError>,
    ) -> Result<Fragment, CompileError> {
        let fits = |(w, h): (u32, u32)| w <= o.arch.grid_cols && h <= o.arch.grid_rows;
        let seen = |made: &[Made]| {
            (made.iter())
                .find(|m| m.kernel == *kernel && fits(m.size))
                .map(|m| m.bytes.clone())
        };
        if let Some(bytes) = seen(&self.made.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(postcard::from_bytes(&bytes).expect("a fragment kept reads back"));
        }
        // Made without the lock: another point's thread may make it too,
        // the same fragment.
        let f = make()?;
        let bytes: Arc<[u8]> = postcard::to_allocvec(&f)
            .expect("a fragment serialises")
            .into();
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if seen(&made).is_none() {
            made.push(Made {
                kernel: kernel.clone(),
                size: (f.program.width, f.program.height),
                bytes,
            });
        }
        Ok(f)
    }
}

/// [`predict`] of stages placed at `sites`.
#[allow(clippy::too_many_arguments)]
fn predict_placed(
    config: &Config,
    o: &Options,
    graph: &Graph,
    stages: &[Stage],
    (sites, kind): (&[Site], PlacementKind),
    pos: u32,
    arrives: &[usize],
    made: &Fragments,
) -> Result<u64, CompileError> {
    // A model has a few distinct kernels (each layer repeats them), so a
    // linear search over them is cheap.
    // A kernel and its mirror image are distinct fragments: their ports
    // are on other edges.
    let mut distinct: Vec<((Kernel, Flip), Fragment)> = Vec::new();
    let mut of_stage = Vec::with_capacity(stages.len());
    for (s, site) in stages.iter().zip(sites) {
        let kernel = (site.kernel.clone().with_seed(0), site.flip);
        let i = match distinct.iter().position(|(k, _)| *k == kernel) {
            Some(i) => i,
            None => {
                let f = made.get_or_make(&kernel, o, || codegen::fragment_of(s, site, graph, o))?;
                distinct.push((kernel, f));
                distinct.len() - 1
            }
        };
        of_stage.push(i);
    }
    let fragments: Vec<&Fragment> = of_stage.iter().map(|&i| &distinct[i].1).collect();
    let (routing, _) =
        codegen::route_and_plan(config, o, graph, stages, sites, &fragments, kind, arrives)?;
    // Each distinct kernel costed once (a tiled GEMV's cost model plans
    // its reduction).
    let cost: Vec<u64> = distinct
        .iter()
        .map(|((k, _), _)| k.predicted(&o.arch, pos))
        .collect();
    Ok(of_stage
        .iter()
        .zip(&routing.handoffs)
        .map(|(&i, h)| cost[i] + h.cycles)
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shapes a walk scales, and the scaling: rounded, never empty,
    /// never past the grid.
    #[test]
    fn shapes_and_scales() {
        assert_eq!(shapes(755, 1170), [(755, 1170), (755, 755)]);
        assert_eq!(shapes(10, 10), [(10, 10)]);
        assert_eq!(scaled((755, 1170), 0.5), (378, 585));
        assert_eq!(scaled((755, 1170), 1.0), (755, 1170));
        assert_eq!(scaled((2, 3), 0.2), (1, 1));
        assert!(fits_sram((10, 10), 100, 10_000) && !fits_sram((10, 10), 100, 10_001));
    }

    /// A search's fragment serves a later point whose grid holds it, and
    /// is made anew for one whose grid does not, or for another kernel.
    #[test]
    fn a_fragment_made_for_one_point_serves_the_points_it_fits() {
        use wafer_kernels::vector::{VectorOp, VectorSpec};
        let o = |cols, rows| {
            Options::on_wse3_grid(cols, rows, PlacementKind::Mesh, wafer_emulator::DType::F32)
        };
        let kernel = |h: u32| {
            let spec = VectorSpec {
                op: VectorOp::Add,
                n: 64,
                h,
                w: 1,
                strategy: wafer_kernels::reduce::Strategy::Tree { k: 2 },
                eps: 0.0,
                seed: 0,
            };
            (Kernel::Vector(spec), Flip::NONE)
        };
        let made = Fragments::default();
        let makes = std::sync::atomic::AtomicUsize::new(0);
        let get = |k: &(Kernel, Flip), o: &Options| {
            made.get_or_make(k, o, || {
                makes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Kernel::Vector(s) = &k.0 else {
                    unreachable!()
                };
                wafer_kernels::vector::generate(s, &o.arch).map_err(|error| CompileError::Kernel {
                    stage: "test".into(),
                    error,
                })
            })
        };
        let first = get(&kernel(8), &o(40, 40)).unwrap();
        assert_eq!((first.program.width, first.program.height), (1, 8));
        let again = get(&kernel(8), &o(20, 30)).unwrap();
        // Read back from the one kept: the same program.
        assert_eq!(first.program, again.program);
        assert_eq!(makes.load(std::sync::atomic::Ordering::Relaxed), 1);
        let other = get(&kernel(4), &o(20, 30)).unwrap();
        assert_eq!(other.program.height, 4);
        assert_eq!(makes.load(std::sync::atomic::Ordering::Relaxed), 2);
        // A grid shorter than the program: not served (its generator
        // would refuse it there), made anew.
        assert!(
            get(&kernel(8), &o(30, 4)).is_err(),
            "made anew, and refused"
        );
        assert_eq!(makes.load(std::sync::atomic::Ordering::Relaxed), 3);
    }
}
