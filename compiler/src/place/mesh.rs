//! Mesh placement: every projection tiled over its tile of layers (or
//! the whole wafer), the other stages on each tile's skyline.

use super::shape::{Memo, cheapest, mesh_gemv, rope_rows as rope_rows_of};
use super::tiles::{Area, Tiles};
use super::{Kernel, Options, PlaceError, PlacementKind, Site, groups, no_fit, unplaceable};
use crate::footprint::weight_bytes;
use crate::model::Config;
use crate::stage::{Src, Stage, Work, made_by};
use wafer_emulator::Pe;
use wafer_kernels::Flip;
use wafer_kernels::gemv::GemvSpec;

/// The columns mesh placement keeps for the embedding tables at the west
/// edge: each table's own ([`table_cols`]), side by side.
pub(crate) fn embed_cols(stages: &[Stage], o: &Options) -> u32 {
    stages.iter().filter_map(|s| table_cols(s, o)).sum()
}

/// The columns one embedding table takes (`None` for another stage): as
/// many as its weights need at three quarters full. A table spreads its
/// dimensions down at most one row of PEs each, so one narrower than the
/// grid is tall uses only `dim` rows. Each table has columns of its own:
/// two tables on the same PEs (GPT-2's token and position tables) would
/// add up their SRAM there.
fn table_cols(s: &Stage, o: &Options) -> Option<u32> {
    match s.work {
        Work::Embed { dim, .. } => {
            let rows = (dim as u64).clamp(1, o.arch.grid_rows as u64);
            let per_row = weight_bytes(s, o.dtype).div_ceil(rows);
            Some(per_row.div_ceil(o.arch.sram_bytes as u64 * 3 / 4).max(1) as u32)
        }
        _ => None,
    }
}

pub(super) fn mesh(
    stages: &[Stage],
    c: &Config,
    o: &Options,
    memo: &mut Memo,
    tiles: Tiles,
) -> Result<Vec<Site>, PlaceError> {
    // Attention spread over `wo` takes columns all along its tile, so in
    // a tile of several layers a later one may find no room, spread or
    // side by side (the earlier layers' columns cut the free ones up, and
    // the stages by the tile's east edge take its last columns), and
    // would share PEs, its KV cache with theirs: on the 8B, `wse2`, the
    // compile then fell back to a column per KV head. Each such tile is
    // laid out again with its attention no wider apart than the widest
    // it had, less one (the layers then fit side by side at one pitch),
    // and after `SPREAD_ROUNDS` side by side. A tile's skylines are its
    // own, so each round changes only the tiles it narrows.
    let n = tiles.count() as usize + 1;
    let mut caps = vec![u32::MAX; n];
    for round in 0..=SPREAD_ROUNDS {
        let laid = mesh_with(stages, c, o, memo, tiles, &|t| caps[t])?;
        let crowded: Vec<usize> = (0..n).filter(|&t| laid.crowded[t] > 0).collect();
        // (A tile crowded side by side is as narrow as it gets: laying it
        // out again would give the same.)
        if round == SPREAD_ROUNDS || crowded.iter().all(|&t| caps[t] == 1) {
            return Ok(laid.sites);
        }
        for t in crowded {
            caps[t] = match (round + 1 == SPREAD_ROUNDS, laid.widest[t]) {
                (false, w) if w > 2 => w - 1,
                _ => 1,
            };
        }
    }
    unreachable!("the last round returns")
}

/// How many times mesh placement narrows a crowded tile's spread
/// attention before it lays that tile's attention side by side.
const SPREAD_ROUNDS: usize = 4;

/// A mesh placement, and per tile (the whole wafer's stages last) how
/// many attention stages found no room of their own and share PEs, and
/// the widest pitch its attention took.
struct Laid {
    sites: Vec<Site>,
    crowded: Vec<usize>,
    widest: Vec<u32>,
}

/// Mesh placement with attention spread over its `wo` at most `cap(t)`
/// PEs apart in tile `t` (1: side by side).
fn mesh_with(
    stages: &[Stage],
    c: &Config,
    o: &Options,
    memo: &mut Memo,
    tiles: Tiles,
    cap: &dyn Fn(usize) -> u32,
) -> Result<Laid, PlaceError> {
    let kind = PlacementKind::Mesh;
    let (gw, gh) = (o.arch.grid_cols, o.arch.grid_rows);
    let mut sites = Vec::with_capacity(stages.len());
    // The embedding tables keep their own columns at the west edge (as many
    // as their weights need at three quarters full); the GEMVs tile the rest.
    let embed_cols = embed_cols(stages, o);
    if embed_cols >= gw {
        return Err(no_fit(
            c,
            o,
            Some(kind),
            format!("the embedding table alone needs {embed_cols} columns of {gh} PEs"),
        ));
    }
    let x_gemv = embed_cols;
    let whole = Area {
        x0: x_gemv,
        y0: 0,
        x1: gw,
        y1: gh,
    };
    let areas = tiles.areas(whole);
    if areas.iter().any(|a| a.x1 <= a.x0 || a.y1 <= a.y0) {
        return Err(no_fit(
            c,
            o,
            Some(kind),
            format!(
                "{}x{} tiles of layers do not fit {}x{gh} PEs",
                tiles.cols,
                tiles.rows,
                gw - x_gemv
            ),
        ));
    }
    // Which tile each stage's layer is in: the layers in contiguous runs,
    // as even as they divide, so a tile holds its share of the weights.
    let layers: Vec<usize> = stages.iter().filter_map(|s| s.layer).collect();
    let (first, last) = (
        layers.iter().copied().min().unwrap_or(0),
        layers.iter().copied().max().unwrap_or(0),
    );
    let count = last - first + 1;
    let tile_of_layer = |l: usize| (l - first) * areas.len() / count;
    // A stage outside the layers goes with the nearest layer's tile: the
    // first one's before the layers, the last one's after them.
    let group = groups(stages, c.n_layers);
    let tile_of = |i: usize| match stages[i].layer {
        Some(l) => tile_of_layer(l),
        None if group[i] == 0 => 0,
        None => areas.len() - 1,
    };
    // The skylines of each tile: each column's first free row from the
    // top, and from the bottom (the row after the last free one).
    let mut tops: Vec<Vec<u32>> = areas.iter().map(|a| vec![a.y0; gw as usize]).collect();
    let mut floors: Vec<Vec<u32>> = areas.iter().map(|a| vec![a.y1; gw as usize]).collect();
    // Attention's input enters its columns' bottom PEs (its columns run
    // upward), so a stage whose output attention takes (RoPE) goes as low
    // as it fits: on the 8B, `wse3`, RoPE's q and k then reach attention
    // a few rows away instead of its columns' height.
    // (The values attention reads first, in one pass: a mixture of
    // experts has thousands of stages, and the region search places
    // the model many times.)
    let attention_reads: std::collections::HashSet<usize> = (stages.iter())
        .filter(|t| matches!(t.work, Work::Attention { .. }))
        .flat_map(|t| t.inputs.iter().flat_map(|(_, srcs)| srcs))
        .filter_map(|src| match src {
            Src::Value(v) => Some(*v),
            _ => None,
        })
        .collect();
    let feeds_attention: Vec<bool> = (stages.iter())
        .map(|s| s.outputs.iter().any(|v| attention_reads.contains(v)))
        .collect();
    // A stage that takes the output of a projection tiled over every tile
    // (the classifier's logits, into argmax) is shaped and placed against
    // that projection's east edge on the whole wafer, as a tile's stages
    // are against their tile's: on the 8B, `wse3`, argmax was a column of
    // one tile's height (292 PEs, 4,927 cycles) a tile's width from the
    // logits.
    let whole_gemv: std::collections::HashSet<usize> = (stages.iter())
        .filter(|t| t.layer.is_none() && matches!(t.work, Work::Gemv { .. }))
        .flat_map(|t| t.outputs.iter().copied())
        .collect();
    let on_whole: Vec<bool> = (stages.iter())
        .map(|s| {
            !matches!(s.work, Work::Gemv { .. } | Work::Embed { .. })
                && (s.inputs.iter().flat_map(|(_, srcs)| srcs))
                    .any(|src| matches!(src, Src::Value(v) if whole_gemv.contains(v)))
        })
        .collect();
    let area_of = |i: usize, s: &Stage| match (&s.work, s.layer) {
        (Work::Gemv { .. }, None) => whole,
        _ if on_whole[i] => whole,
        _ => areas[tile_of(i)],
    };
    let made_by = made_by(stages);
    let mut next_x: Vec<u32> = areas.iter().map(|a| a.x0).collect();
    let mut gemvs: std::collections::HashMap<(u32, u32, u32, u32, bool), Option<Kernel>> =
        Default::default();
    // Where the next embedding table's columns start, and this stage's.
    let (mut next_table, mut table_x) = (0u32, 0u32);
    // Each stage's kernel, and an embedding table's first column.
    let mut kernels = Vec::with_capacity(stages.len());
    // Per RoPE fed by its tile's GEMV, the rows of that GEMV its inputs
    // leave from (from the tile's top).
    let mut rope_rows: Vec<Option<u32>> = vec![None; stages.len()];
    let mut table_at: Vec<u32> = Vec::with_capacity(stages.len());
    for (i, s) in stages.iter().enumerate() {
        // A layer's projections are tiled over its tile of the wafer (as
        // far as their matrices have rows and columns), so each PE holds
        // a tile of every layer of its tile; the projections outside the
        // layers (the classifier) over every tile.
        let area = area_of(i, s);
        let (aw, ah) = (area.x1 - area.x0, area.y1 - area.y0);
        let k = match &s.work {
            // Every layer's projections have the same few shapes: each
            // shape's kernel is chosen (costed) once.
            Work::Gemv {
                m,
                n,
                biases,
                halves,
                ..
            } => gemvs
                .entry((*m, n + !biases.is_empty() as u32, aw, ah, *halves))
                .or_insert_with(|| {
                    let n = n + !biases.is_empty() as u32;
                    let arch = &o.arch;
                    let tiled = o.gemv.tiled().then(|| {
                        Kernel::Gemv(GemvSpec {
                            m: *m,
                            n,
                            dtype: o.dtype,
                            w: wafer_kernels::gemv::cols_at_most(n, o.dtype, aw),
                            h: (*m).min(ah),
                            strategy: o.reduce,
                            seed: i as u64,
                            halves: *halves,
                            lead: Vec::new(),
                        })
                    });
                    // MeshGEMV's columns run across the outputs, its rows
                    // across the inputs.
                    let mesh = if o.gemv.mesh(o.dtype) {
                        mesh_gemv(*m, n, (*m).min(aw), n.min(ah), o, arch)
                    } else {
                        None
                    };
                    cheapest(tiled.into_iter().chain(mesh), arch, 0, |_| true)
                })
                .clone()
                .map(|k| k.with_seed(i as u64)),
            Work::Embed { .. } => {
                let w = table_cols(s, o).expect("an embedding is a table");
                table_x = next_table;
                next_table += w;
                memo.shape(s, c, o, w, gh, i as u64)
            }
            _ => {
                // The rows of a tiled GEMV of its tile that feeds it by
                // its east edge, if one does (the tallest of them).
                let feeder = (s.inputs.iter().flat_map(|(_, srcs)| srcs))
                    .filter_map(|src| match src {
                        Src::Value(v) => made_by.get(v).copied(),
                        _ => None,
                    })
                    .filter(|&j| j < i && area_of(j, &stages[j]) == area)
                    .filter_map(|j| match &kernels[j] {
                        Kernel::Gemv(g) => Some((g.h, g.m)),
                        _ => None,
                    })
                    .max_by_key(|&(h, _)| h);
                let fed = feeder.map(|(h, _)| h);
                // RoPE takes the first `heads · head` of its GEMV's
                // outputs (q and k, before v), which leave from the top
                // rows of its east edge: it goes over the middle of them
                // (below).
                // It is as tall as those rows, each PE taking what about
                // one row sends.
                let mut fed = fed;
                if let Some((h, m)) = feeder {
                    rope_rows[i] = rope_rows_of(&s.work, h, m);
                    fed = rope_rows[i].or(fed);
                }
                memo.shape_fed(s, c, o, (aw, ah), fed, i as u64)
            }
        }
        .ok_or_else(|| no_fit(c, o, Some(kind), unplaceable(s, aw, ah)))?;
        kernels.push(k);
        table_at.push(table_x);
    }
    // Attention's columns spread over the tiled projection they feed
    // (`wo`), each over the part of its top edge its output enters, so that
    // a column's output is a short trip of its own instead of every
    // column's along the links beside a narrow block: on the 8B, `wse3`,
    // queued on X-then-Y routes, attention → `wo` waited about 2,200
    // cycles a layer on those links. Where it feeds another kernel, or
    // one outside its tile, its columns stay side by side. How each
    // attention may spread (pitch and offset from its tile's west edge,
    // best first), by stage.
    let mut over: Vec<Vec<(u32, u32)>> = vec![Vec::new(); stages.len()];
    for i in 0..stages.len() {
        let Kernel::Attention(a) = &kernels[i] else {
            continue;
        };
        let area = area_of(i, &stages[i]);
        let fed = (i + 1..stages.len()).find_map(|j| {
            let takes = (stages[j].inputs.iter().flat_map(|(_, srcs)| srcs))
                .any(|src| matches!(src, Src::Value(v) if made_by.get(v) == Some(&i)));
            match &kernels[j] {
                Kernel::Gemv(g) if takes && area_of(j, &stages[j]) == area => Some(g.x_parts()),
                _ => None,
            }
        });
        let each = a.as_columns().group * a.head_dim;
        if let Some(parts) = fed {
            over[i] = spread_over(a.columns(), each, &parts);
            over[i].retain(|&(pitch, _)| pitch <= cap(tile_of(i)));
        }
    }
    // Each tile's column east of its tiled projections: a tiled GEMV
    // sends y out of its east edge, row by row, so the stages that take
    // it go as near that edge as they fit (on the 8B, `wse3`, this took
    // a token from 447,295 to 424,690 predicted cycles; hand-offs 113,205
    // to 110,105, and the region search moved).
    // The last of them is the whole wafer's (`whole_east`, with skylines
    // of its own: its stages share PEs with the tiles', their SRAM adding
    // up as where a tile's skyline is full).
    let mut east: Vec<Option<u32>> = vec![None; areas.len() + 1];
    for (i, (s, k)) in stages.iter().zip(&kernels).enumerate() {
        if let Kernel::Gemv(g) = k {
            let t = match s.layer {
                Some(_) => tile_of(i),
                None => areas.len(),
            };
            let e = area_of(i, s).x0 + g.w;
            east[t] = Some(east[t].map_or(e, |f: u32| f.max(e)));
        }
    }
    tops.push(vec![whole.y0; gw as usize]);
    floors.push(vec![whole.y1; gw as usize]);
    next_x.push(whole.x0);
    let (mut crowded, mut widest) = (vec![0; areas.len() + 1], vec![1; areas.len() + 1]);
    for (i, (s, mut k)) in stages.iter().zip(kernels).enumerate() {
        let t = if on_whole[i] { areas.len() } else { tile_of(i) };
        let area = area_of(i, s);
        let origin = match s.work {
            Work::Gemv { .. } => Pe::new(area.x0, area.y0),
            Work::Embed { .. } => Pe::new(table_at[i], 0),
            _ => {
                // The other stages where they first fit in their tile
                // without sharing PEs, on the skyline (the first free row
                // of each column), trying the columns nearest the tile's
                // projections' east edge first (from the west where the
                // tile has no tiled GEMV). Where none is left, side by
                // side from the west along the tile's top again: stages
                // then share PEs, and their SRAM adds up. An attention
                // that may spread tries each way (`over`) before side by
                // side: on the 8B, `wse2`, the stages by a tile's east
                // edge and the layers spread before it leave the later
                // layers' attention no room at the best pitch.
                let ways: Vec<(Kernel, u32)> = match &k {
                    Kernel::Attention(a) => (over[i].iter())
                        .map(|&(pitch, x)| {
                            let mut a = a.clone();
                            a.pitch = pitch;
                            (Kernel::Attention(a), x)
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let (top, floor) = (&mut tops[t], &mut floors[t]);
                let low = feeds_attention[i];
                let fit = |k: &Kernel, spread_at: Option<u32>| {
                    let (w, h) = k.size();
                    // The columns it takes from `x0`: a spread attention's
                    // own columns, the ones between free for other stages.
                    let step = k.pitch();
                    let n = w.div_ceil(step);
                    let cols = move |x0: u32| (0..n).map(move |c| (x0 + c * step) as usize);
                    let mut xs: Vec<u32> = (area.x0..=area.x1.saturating_sub(w)).collect();
                    match (east[t], &s.work, spread_at) {
                        // Over the projection it is spread over.
                        (_, _, Some(x)) => {
                            let at = area.x0 + x;
                            xs.sort_by_key(|&x0| (x0.abs_diff(at), x0));
                        }
                        // Attention's columns send their outputs from their
                        // top PEs, one row, to the top edge of the projection
                        // after it (x enters each of its columns there): the
                        // columns go over the middle of the projections, so
                        // half the outputs go west and half east, on two
                        // links of that row, not all on one.
                        (Some(e), Work::Attention { .. }, None) => {
                            let mid = area.x0 + e;
                            xs.sort_by_key(|&x0| ((2 * x0 + w).abs_diff(mid), x0));
                        }
                        (Some(e), _, None) => xs.sort_by_key(|&x0| ((x0 + w).abs_diff(e), x0)),
                        (None, _, None) => {}
                    }
                    let at = xs.into_iter().find_map(|x0| {
                        let y0 = cols(x0).map(|x| top[x]).max()?;
                        let y1 = cols(x0).map(|x| floor[x]).min()?;
                        // `then`, not `then_some`: `y1 - h` only where it fits.
                        (y0 + h <= y1).then(|| {
                            let y = match (low, rope_rows[i]) {
                                // Over the middle of the rows its inputs leave
                                // from, as near it as fits (a RoPE as tall as
                                // them: beside them): a column below them
                                // all gathers every row above it onto its
                                // top link.
                                (true, Some(r)) => {
                                    (area.y0 + r / 2).saturating_sub(h / 2).clamp(y0, y1 - h)
                                }
                                (true, None) => y1 - h,
                                (false, _) => y0,
                            };
                            (x0, y)
                        })
                    })?;
                    Some((at, cols(at.0).collect::<Vec<_>>(), h))
                };
                let spread = (ways.into_iter())
                    .find_map(|(way, x)| fit(&way, Some(x)).map(|free| (way, free)));
                let free = match spread {
                    Some((way, free)) => {
                        widest[t] = widest[t].max(way.pitch());
                        k = way;
                        Some(free)
                    }
                    None => fit(&k, None),
                };
                match free {
                    Some(((x0, y0), cols, h)) => {
                        for x in cols {
                            match low {
                                true => floor[x] = y0,
                                false => top[x] = y0 + h,
                            }
                        }
                        Pe::new(x0, y0)
                    }
                    None => {
                        crowded[t] += matches!(k, Kernel::Attention(_)) as usize;
                        let (w, _) = k.size();
                        let x = &mut next_x[t];
                        if *x + w > area.x1 {
                            *x = area.x0;
                        }
                        let at = Pe::new(*x, area.y0);
                        *x += w;
                        at
                    }
                }
            }
        };
        sites.push(Site {
            kernel: k,
            origin,
            flip: Flip::NONE,
        });
    }
    // The projection over every tile (the classifier) takes x along its
    // north edge: where its input comes from the south half (the last
    // tile, in a serpentine of an even number of rows), it and the stages
    // against its east edge are reflected north to south, so x enters
    // from the south edge (on the 8B, `wse3`, the final norm sat 983 rows
    // below the classifier's north edge).
    for i in 0..stages.len() {
        if !matches!(
            (&stages[i].work, stages[i].layer),
            (Work::Gemv { .. }, None)
        ) {
            continue;
        }
        let below = (stages[i].inputs.iter())
            .flat_map(|(_, srcs)| srcs)
            .filter_map(|src| match src {
                Src::Value(v) => made_by.get(v).copied(),
                _ => None,
            })
            .any(|j| {
                let (_, h) = sites[j].kernel.size();
                2 * sites[j].origin.y + h > whole.y0 + whole.y1
            });
        if !below {
            continue;
        }
        let made = stages[i].outputs.clone();
        for j in 0..stages.len() {
            let takes = (stages[j].inputs.iter())
                .flat_map(|(_, srcs)| srcs)
                .any(|src| matches!(src, Src::Value(v) if made.contains(v)));
            if j == i || (on_whole[j] && takes) {
                flip_north_south(&mut sites[j], whole);
            }
        }
    }
    Ok(Laid {
        sites,
        crowded,
        widest,
    })
}

/// How `columns` columns, column `k` making elements `k·each ..
/// (k+1)·each` of a tiled GEMV's `x`, may spread over that GEMV, whose
/// PE columns take `x` in `parts` (`(first, count)` each): per pitch from
/// 2 up to the widest that fits within the GEMV, the first column's
/// offset from the GEMV's west edge that puts each column nearest the
/// middle of the GEMV columns its elements enter, best first (the worst
/// column off by the least, then the wider pitch). Empty where side by
/// side is as near (a GEMV no wider than twice the columns).
fn spread_over(columns: u32, each: u32, parts: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let (n, w) = (columns as i64, parts.len() as i64);
    if n < 2 || w < 2 * n {
        return Vec::new();
    }
    // Twice the middle of the GEMV columns column `k`'s elements enter.
    let holds = |e: u64| parts.partition_point(|&(at, len)| (at + len) as u64 <= e) as i64;
    let mid2: Vec<i64> = (0..n as u64)
        .map(|k| {
            let (lo, hi) = (k * each as u64, (k + 1) * each as u64);
            (holds(lo) + holds(hi.saturating_sub(1))).min(2 * (w - 1))
        })
        .collect();
    let mut ways: Vec<(i64, std::cmp::Reverse<i64>, i64)> = (2..=(w - 1) / (n - 1))
        .map(|p| {
            // The offset halfway between the columns' extremes, in whole
            // columns, kept inside the GEMV.
            let off = |k: i64| mid2[k as usize] - 2 * k * p;
            let (lo, hi) = (0..n)
                .map(off)
                .fold((i64::MAX, i64::MIN), |(a, b), o| (a.min(o), b.max(o)));
            let x = (lo + hi).div_euclid(4).clamp(0, w - 1 - (n - 1) * p);
            let worst = (0..n).map(|k| (2 * x - off(k)).abs()).max().unwrap_or(0);
            (worst, std::cmp::Reverse(p), x)
        })
        .collect();
    ways.sort();
    (ways.into_iter())
        .map(|(_, std::cmp::Reverse(p), x)| (p as u32, x as u32))
        .collect()
}

/// `site` reflected north to south within `area`: its fragment's mirror
/// image, its rectangle moved to the mirror-image rows.
fn flip_north_south(site: &mut Site, area: Area) {
    let (_, h) = site.kernel.size();
    site.origin.y = area.y0 + area.y1 - (site.origin.y + h);
    site.flip.y = !site.flip.y;
}

#[cfg(test)]
mod tests {
    use super::spread_over;
    use wafer_kernels::split;

    /// Four columns of 16 elements over a GEMV of 32 columns taking 2
    /// each: column `k`'s elements enter GEMV columns `8k .. 8k+8`, so
    /// the best way is 8 apart from column 3 (their middles 3.5, 11.5,
    /// …, the worst off by half a column); every way stays within the
    /// GEMV and none is side by side.
    #[test]
    fn columns_spread_over_the_parts_their_elements_enter() {
        let ways = spread_over(4, 16, &split(64, 32));
        assert_eq!(ways[0], (8, 3));
        assert!(!ways.is_empty());
        for &(p, x) in &ways {
            assert!(p >= 2 && x + 3 * p < 32, "pitch {p} at {x}");
        }
        // Uneven parts (64 elements over 47 columns: the first 17 take
        // two): the first column's elements enter columns 0 to 3.
        let (p, x) = spread_over(8, 8, &split(64, 47))[0];
        assert!(x <= 3 && x + 7 * p < 47, "pitch {p} at {x}");
    }

    /// A GEMV narrower than twice the columns leaves nothing to spread
    /// over, and one column needs no spreading.
    #[test]
    fn no_spread_without_room() {
        assert!(spread_over(8, 16, &split(128, 15)).is_empty());
        assert!(spread_over(1, 64, &split(64, 40)).is_empty());
    }
}
