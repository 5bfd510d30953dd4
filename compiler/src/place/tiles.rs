//! Mesh placement's tiles of layers: how the projections' PEs are cut.

use std::fmt;

/// A rectangle of the grid: columns `x0..x1`, rows `y0..y1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Area {
    pub(super) x0: u32,
    pub(super) y0: u32,
    pub(super) x1: u32,
    pub(super) y1: u32,
}

/// How mesh placement cuts the PEs its projections use into tiles, each
/// holding a contiguous run of the layers: `cols × rows` tiles, filled in
/// a serpentine (so consecutive runs of layers are neighbours).
///
/// A projection tiled over the whole wafer is bound by its routes (x
/// broadcast down every column, partial sums reduced along every row), so
/// on a smaller rectangle it is faster, for the same SRAM a PE: a tile
/// holds `1 / (cols · rows)` of the layers, each on `1 / (cols · rows)` of
/// the PEs. The hand-offs between a layer's stages stay inside its tile,
/// so they are shorter too. One tile is mesh placement as WaferLLM runs
/// it; one tile a layer approaches pipeline placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tiles {
    pub cols: u32,
    pub rows: u32,
}

impl Tiles {
    pub const ONE: Tiles = Tiles { cols: 1, rows: 1 };

    /// `COLSxROWS`, e.g. `4x3`.
    pub fn parse(s: &str) -> Option<Tiles> {
        let (c, r) = s.split_once('x')?;
        let t = Tiles {
            cols: c.parse().ok()?,
            rows: r.parse().ok()?,
        };
        (t.cols > 0 && t.rows > 0).then_some(t)
    }

    pub fn count(self) -> u32 {
        self.cols * self.rows
    }

    /// The tilings a search walks for `layers` layers on `w × h` PEs, in
    /// increasing count (1, 2, 3, 4, 6, 8, 12, 16, …, up to one tile a
    /// layer), each count cut into the tiles nearest square.
    pub fn ladder(layers: u32, w: u32, h: u32) -> Vec<Tiles> {
        let mut counts = vec![1u32, 2, 3];
        let mut c = 4;
        while c <= layers.max(1) {
            counts.push(c);
            counts.push(c * 3 / 2);
            c *= 2;
        }
        counts.retain(|&c| c <= layers.max(1));
        counts.sort_unstable();
        counts.dedup();
        counts
            .into_iter()
            .filter_map(|n| {
                (1..=n)
                    .filter(|cols| n.is_multiple_of(*cols))
                    .map(|cols| Tiles {
                        cols,
                        rows: n / cols,
                    })
                    .filter(|t| t.cols <= w && t.rows <= h)
                    .min_by(|a, b| {
                        let skew = |t: &Tiles| {
                            ((w as f64 / t.cols as f64) / (h as f64 / t.rows as f64))
                                .ln()
                                .abs()
                        };
                        skew(a).total_cmp(&skew(b))
                    })
            })
            .collect()
    }

    /// The tiles of `area`, in the order layers fill them: all of one
    /// size (the columns and rows that do not divide evenly are left at
    /// the east and south edges), so every layer's projections are the
    /// same kernels, and its PEs hold the same share of the weights.
    pub(super) fn areas(self, area: Area) -> Vec<Area> {
        let (tw, th) = (
            (area.x1 - area.x0) / self.cols,
            (area.y1 - area.y0) / self.rows,
        );
        let mut v = Vec::new();
        for r in 0..self.rows {
            for c in 0..self.cols {
                let c = if r % 2 == 1 { self.cols - 1 - c } else { c };
                let (x0, y0) = (area.x0 + c * tw, area.y0 + r * th);
                v.push(Area {
                    x0,
                    x1: x0 + tw,
                    y0,
                    y1: y0 + th,
                });
            }
        }
        v
    }
}

/// ` in 4x3 tiles of layers` where mesh placement cut its layers into
/// tiles, every wafer alike; each wafer's tiles where they differ; nothing
/// for one tile (mesh placement as WaferLLM runs it, or pipeline).
pub fn tiles_phrase(by_wafer: &[Tiles]) -> String {
    let mut distinct = by_wafer.to_vec();
    distinct.dedup();
    match distinct[..] {
        [] | [Tiles::ONE] => String::new(),
        [t] => format!(" in {t} tiles of layers"),
        _ => {
            let each: Vec<String> = by_wafer.iter().map(Tiles::to_string).collect();
            format!(" in tiles of layers ({} by wafer)", each.join(", "))
        }
    }
}

impl fmt::Display for Tiles {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}x{}", self.cols, self.rows)
    }
}
