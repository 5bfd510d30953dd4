//! GEMV `y = W·x`, W (`m × n`) tiled in 2-D over a `w × h` rectangle.
//!
//! PE `(c, r)` holds the tile of W's row block `r` and column block `c` in
//! `w` (weights in f32, f16 or bf16). x enters as `w` segments,
//! one per column through the north edge, multicast down the column (f32 on
//! the fabric) and stored in the weights' dtype. A tile is held and walked
//! in the [`TileOrder`] the cost model finds faster: row-major, a dot
//! product per tile row, or column-major, the partial y accumulated a
//! column at a time as MeshGEMV's axpy loop does (a tall, narrow tile pays
//! its loop's scalar work per column instead of per row). With 16-bit
//! weights either is mixed precision (16-bit products, f32 sums), and
//! both add the same products in the same order. Then each row of PEs reduces its partials to the
//! east end with a [`Plan`](crate::reduce::Plan) (chain or K-tree), and the
//! east edge emits y's row block `r` as output stream `y<r>`.
//! Blocks need not divide evenly: the first `m % h` row blocks and
//! `n % w` column blocks are one longer.
//!
//! With int8 weights ([`crate::quant`]) a tile holds its codes (one byte
//! each) and its rows' bf16 scales; each tile row is dequantized into a
//! bf16 row buffer (`vfmul.bf16 t, w, s`) just before its dot product, so
//! the rest is the bf16 GEMV and SRAM holds the packed tile.

mod code;
mod cost;
mod weights;

use code::{code_name, code_text, columns_text};
use cost::Loop;
pub use cost::{best_rect, cost, cost_batch, row_ends, row_ends_fed};
pub use weights::{load_weights, weights, weights_transposed};

use crate::line_reduce::{Axis, Combine, LineReduce, Lines, Target};
use crate::reduce::{Plan, Strategy};
use crate::{Fragment, KernelError, split};
use std::collections::BTreeMap;
use std::fmt::Write;
use wafer_emulator::{Arch, DType};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GemvSpec {
    /// Rows of W (outputs).
    pub m: u32,
    /// Columns of W (inputs).
    pub n: u32,
    pub dtype: DType,
    /// Rectangle: `w` PE columns across n, `h` PE rows across m.
    pub w: u32,
    pub h: u32,
    pub strategy: Strategy,
    /// Seed of the random weights and default x.
    pub seed: u64,
    /// `y`'s two halves side by side ([`row_runs`]): tile row `r`
    /// computes the `r`-th piece of the first half, then the same piece
    /// of the second, so a kernel taking both halves element by element
    /// (a SwiGLU's gate and up projections, fused into one GEMV) finds
    /// each pair on one row instead of half the rectangle apart. The
    /// ports keep W's and y's order; only which row computes what moves.
    #[serde(default)]
    pub halves: bool,
    /// The first tile rows' rows of W, for a kernel beside the east edge
    /// whose PEs each take their own elements of `y`, in their own order
    /// (a RoPE's heads or parts of heads, [`crate::rope::RopeSpec::pe_runs`]):
    /// tile row `r < lead.len()` computes exactly `lead[r]`'s runs `(W's
    /// first row, count)`, in order, so that each of its PEs is fed by one
    /// tile row alone. The runs are W's first rows, each once; the rows
    /// after them go to the tile rows after, split as evenly as they go.
    /// Empty: W's rows in order (or `halves`). Cut evenly instead, a
    /// RoPE beside stories260K's `wq_wk_wv` on 96 × 64 took 3 heads a PE
    /// against 25.6 rows a tile row, and its overlapped step 10,975
    /// cycles in 9 passes against 10,673 in 4 with the cut. Pipeline
    /// placement cuts each `wq_wk_wv` with a RoPE beside it so.
    #[serde(default)]
    pub lead: Vec<Vec<(u32, u32)>>,
}

impl GemvSpec {
    /// The dtype the dot products read W and x in: the weights' own, or
    /// bf16 for quantized weights (dequantized to bf16 row by row).
    pub fn compute_dtype(&self) -> DType {
        match self.quantized() {
            true => DType::BF16,
            false => self.dtype,
        }
    }

    fn quantized(&self) -> bool {
        matches!(self.dtype, DType::I8 | DType::Mxfp4)
    }
}

/// Widths of an MXFP4 tile narrower than its block of 32: a power of two,
/// so that tiles side by side never straddle a block boundary.
const MX_PART_WIDTHS: [u32; 5] = [16, 8, 4, 2, 1];

/// Whether a GEMV of `n` inputs in `dtype` can take `w` PE columns: any
/// count up to `n`; for MXFP4 up to one block of 32 a column (whole
/// blocks each), or `⌈n/t⌉` columns of `t` = 16, 8, 4, 2 or 1 (a part of
/// one block each): a tile never shares a scale with its neighbour.
pub fn cols_ok(n: u32, dtype: DType, w: u32) -> bool {
    match dtype {
        DType::Mxfp4 => {
            (1..=crate::quant::mx_blocks(n)).contains(&w)
                || MX_PART_WIDTHS.iter().any(|t| n.div_ceil(*t) == w)
        }
        _ => (1..=n).contains(&w),
    }
}

/// The most PE columns, at most `limit`, a GEMV of `n` inputs in `dtype`
/// can take ([`cols_ok`]); 0 if none.
pub fn cols_at_most(n: u32, dtype: DType, limit: u32) -> u32 {
    match dtype {
        DType::Mxfp4 => MX_PART_WIDTHS
            .iter()
            .map(|t| n.div_ceil(*t))
            .chain([crate::quant::mx_blocks(n)])
            .filter(|w| *w <= limit)
            .chain([crate::quant::mx_blocks(n).min(limit)])
            .max()
            .unwrap_or(0),
        _ => n.min(limit),
    }
}

/// Each PE column's `(first column of W, columns)`: an even split; for
/// MXFP4 an even split of whole blocks (the first columns one block
/// longer, the last block of a row may be short), or tiles of one width
/// `t` (the last shorter). Either way no column takes longer than one west
/// of it, which the reductions' timing needs.
fn col_split(s: &GemvSpec) -> Vec<(u32, u32)> {
    let b = crate::quant::MX_BLOCK;
    match s.dtype {
        DType::Mxfp4 if s.w <= crate::quant::mx_blocks(s.n) => {
            split(crate::quant::mx_blocks(s.n), s.w)
                .into_iter()
                .map(|(bo, bl)| (bo * b, ((bo + bl) * b).min(s.n) - bo * b))
                .collect()
        }
        DType::Mxfp4 => {
            let t = MX_PART_WIDTHS
                .into_iter()
                .find(|t| s.n.div_ceil(*t) == s.w)
                .unwrap_or(1);
            (0..s.w).map(|c| (c * t, t.min(s.n - c * t))).collect()
        }
        _ => split(s.n, s.w),
    }
}

impl GemvSpec {
    /// Which elements of `x` each PE column takes: `(first, count)` per
    /// column, west to east (the columns of `W` it holds).
    pub fn x_parts(&self) -> Vec<(u32, u32)> {
        col_split(self)
    }
}

/// How a PE's tile is held and walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileOrder {
    /// Row-major, a dot product per tile row (`vdot`, stored into `y`):
    /// a tile row's scalar work is paid once per row of W.
    Rows,
    /// Column-major, `y` accumulated a column at a time (`vfmac` by
    /// `x[j]`): for a tall, narrow tile (the classifier's on a large
    /// grid: 133 rows of 7) its scalar work is paid once per column.
    /// Float weights only: the quantized tiles dequantize by rows.
    Columns,
}

/// The order whose tile loop the cost model predicts faster on the
/// largest tile (ties: rows). Tiles of one spec all take the same order.
pub fn tile_order(s: &GemvSpec, arch: &Arch) -> TileOrder {
    if s.quantized() || s.w == 0 || s.h == 0 {
        return TileOrder::Rows;
    }
    let (mt, nt) = (rows_per_tile(s), s.n.div_ceil(s.w));
    let tile_loop = Loop::new(s, arch);
    let rows = mt as u64 * tile_loop.row(s, 0, nt);
    match tile_loop.columns(nt, mt) < rows {
        true => TileOrder::Columns,
        false => TileOrder::Rows,
    }
}

/// Colors: x's broadcast, y's output, then one per reduction level.
const CX: u8 = 0;
const CY: u8 = 1;
const C_LEVEL0: u8 = 2;

/// Bytes of SRAM the largest tile's PE needs (`w` and `h` at least 1).
pub fn sram_needed(s: &GemvSpec) -> u64 {
    sram_needed_batch(s, 1)
}

/// [`sram_needed`] for a batch of `batch` positions ([`generate_batch`]):
/// `batch` x slices and partial y's.
pub fn sram_needed_batch(s: &GemvSpec, batch: u32) -> u64 {
    let (mt, nt) = (rows_per_tile(s) as u64, s.n.div_ceil(s.w) as u64);
    let code = 400; // measured from generated listings, rounded up
    let (x, mt_y) = (
        nt * s.compute_dtype().size_bytes() as u64 * batch as u64,
        mt * batch as u64,
    );
    // The row being dequantized (bf16), and the scales: int8's bf16 one a
    // row, MXFP4's e8m0 one a row and block piece (at most nt/32 + 2, each
    // with 24 bytes of code to apply it).
    let pieces = nt / 32 + 2;
    let quant = match s.dtype {
        DType::I8 => nt * 2 + mt * 2 + 8,
        DType::Mxfp4 => nt * 2 + mt * pieces + 8 + 24 * pieces,
        _ => 0,
    };
    // In u128: a spec's sizes are checked against the machine after this.
    let w = (mt as u128 * nt as u128 * s.dtype.bits() as u128).div_ceil(8);
    let total = w + (code + x + mt_y * 4 + quant + 12) as u128;
    total.min(u64::MAX as u128) as u64
}

fn validate(s: &GemvSpec, batch: u32, arch: &Arch) -> Result<(), KernelError> {
    s.strategy.require_plan("gemv")?;
    if batch == 0 {
        return Err(KernelError::Shape(
            "a batched GEMV takes at least one position".into(),
        ));
    }
    if s.m == 0 || s.n == 0 {
        return Err(KernelError::Shape(format!(
            "GEMV shape {}x{} is empty",
            s.m, s.n
        )));
    }
    if !s.dtype.is_float() && !s.quantized() {
        return Err(KernelError::Shape(
            "GEMV weights must be f32, f16, bf16, int8 or mxfp4".into(),
        ));
    }
    let why = if s.w == 0 || s.h == 0 {
        Some("it is empty".to_string())
    } else if s.halves && s.m % 2 == 1 {
        Some(format!(
            "its halves side by side need an even number of rows, not {}",
            s.m
        ))
    } else if let Some(why) = lead_wrong(s) {
        Some(why)
    } else if !cols_ok(s.n, s.dtype, s.w) || s.h > s.m {
        Some(match s.dtype {
            DType::Mxfp4 => format!(
                "a {}x{} MXFP4 matrix takes up to {} columns of PEs (whole blocks of 32), or {} (a part of one block each), and at most {} rows",
                s.m,
                s.n,
                crate::quant::mx_blocks(s.n),
                MX_PART_WIDTHS
                    .map(|t| s.n.div_ceil(t).to_string())
                    .join(", "),
                s.m
            ),
            _ => format!(
                "a {}x{} matrix gives at most {} columns and {} rows of PEs one element each",
                s.m, s.n, s.n, s.m
            ),
        })
    } else if s.w > arch.grid_cols || s.h > arch.grid_rows {
        Some(format!(
            "machine `{}` has {}x{} PEs",
            arch.name, arch.grid_cols, arch.grid_rows
        ))
    } else if sram_needed_batch(s, batch) > arch.sram_bytes as u64 {
        Some(format!(
            "a tile needs about {} bytes of SRAM, a PE has {}; use more PEs{}",
            sram_needed_batch(s, batch),
            arch.sram_bytes,
            if s.dtype.size_bytes() > 2 {
                " or a 16-bit dtype"
            } else {
                ""
            }
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(KernelError::Rect {
            w: s.w,
            h: s.h,
            why,
        }),
        None => Ok(()),
    }
}

pub fn generate(s: &GemvSpec, arch: &Arch) -> Result<Fragment, KernelError> {
    generate_batch(s, 1, arch)
}

/// The GEMV of `batch` positions at once (a prefill's projection: `Y =
/// W·X`, `X` of `batch` columns, the weights stationary): each PE takes
/// its `x` slice of every position down its column, one after another,
/// then dots each tile row with each position's slice (position outer,
/// so a quantized row is dequantized once per position), and the row
/// reduces all `batch · m_r` partials at once. Ports `x` and `y` hold the
/// positions one after another (`batch · n` and `batch · m`). One
/// position is [`generate`]'s program exactly.
pub fn generate_batch(s: &GemvSpec, batch: u32, arch: &Arch) -> Result<Fragment, KernelError> {
    validate(s, batch, arch)?;
    let red = row_reduce(s, batch * rows_per_tile(s));
    let levels = &red.plan;
    let n_colors = C_LEVEL0 as usize + levels.levels as usize;
    if n_colors > arch.colors as usize {
        return Err(KernelError::Colors {
            need: n_colors,
            have: arch.colors as usize,
        });
    }
    let cols = col_split(s);
    let rows = tile_rows(s);
    let order = tile_order(s, arch);
    let batched = match batch {
        1 => String::new(),
        b => format!(", {b} positions"),
    };
    let mut src = format!(
        "; GEMV {}x{} {} on {}x{} PEs, {} reduction{batched}\n.grid {}x{}\n",
        s.m, s.n, s.dtype, s.w, s.h, s.strategy, s.w, s.h
    );
    let mut codes: BTreeMap<String, String> = BTreeMap::new();
    let mut places = String::new();
    for (c, (no, nt)) in cols.iter().enumerate() {
        // Row blocks come in at most two sizes, each a run of rows.
        let mut r0 = 0;
        while r0 < s.h {
            let mt = rows[r0 as usize].1;
            let r1 = (r0..s.h).find(|r| rows[*r as usize].1 != mt).unwrap_or(s.h);
            let mut name = code_name(*nt, mt, levels.steps(c), c as u32 == s.w - 1);
            if order == TileOrder::Columns {
                name.push_str("_bycol");
            }
            if batch > 1 {
                write!(name, "_x{batch}").unwrap();
            }
            if s.dtype == DType::Mxfp4 {
                // Where the tile's columns cut MXFP4's blocks.
                for (_, len) in crate::quant::mx_pieces(*no, *nt) {
                    write!(name, "_b{len}").unwrap();
                }
            }
            codes.entry(name.clone()).or_insert_with(|| match order {
                TileOrder::Rows => code_text(&name, s, batch, *no, *nt, mt, &red.code(c as u32)),
                TileOrder::Columns => columns_text(&name, s, batch, *nt, mt, &red.code(c as u32)),
            });
            writeln!(places, ".place {name} {c},{r0} 1x{}", r1 - r0).unwrap();
            r0 = r1;
        }
    }
    for text in codes.values() {
        src.push_str(text);
    }
    src.push_str(&places);
    // x: down each column; the last row keeps it.
    if s.h > 1 {
        writeln!(src, ".route 0,0 {}x{} c{CX} N -> R,S", s.w, s.h - 1).unwrap();
    }
    writeln!(src, ".route 0,{} {}x1 c{CX} N -> R", s.h - 1, s.w).unwrap();
    src.push_str(&red.routes());
    src.push_str(&seeded_weights(s, &cols, &rows));
    for (c, (_, nt)) in cols.iter().enumerate() {
        writeln!(
            src,
            ".input x{c} f32[{}] -> {c},0 N c{CX} = rand({})",
            batch * nt,
            s.seed.wrapping_add(1)
        )
        .unwrap();
    }
    for (r, (_, mt)) in rows.iter().enumerate() {
        writeln!(
            src,
            ".output y{r} f32[{}] <- {},{r} E c{CY}",
            batch * mt,
            s.w - 1
        )
        .unwrap();
    }
    let program = crate::assemble(&src, "GEMV")?;
    let port = |name, parts, len| crate::positions_port(name, name, parts, len, batch);
    Ok(Fragment {
        program: program.into(),
        inputs: vec![port("x", &cols, s.n)],
        outputs: vec![y_port(s, &rows, batch)],
        state: Vec::new(),
    })
}

/// Which of W's rows the kernel's rows are, as runs `(kernel row, W's
/// row, len)` in kernel order: one run, or with `halves` each tile row's
/// piece of the first half and then the same piece of the second (the
/// pieces split each half as evenly as the tile rows split W, so a tile
/// row holds a pair within a row of its own).
pub fn row_runs(s: &GemvSpec) -> Vec<(u32, u32, u32)> {
    if !s.lead.is_empty() {
        let mut k = 0;
        let mut runs = Vec::new();
        for &(t, len) in s.lead.iter().flatten() {
            runs.push((k, t, len));
            k += len;
        }
        if k < s.m {
            runs.push((k, k, s.m - k));
        }
        return runs;
    }
    if !s.halves {
        return vec![(0, 0, s.m)];
    }
    let half = s.m / 2;
    split(half, s.h.min(half))
        .into_iter()
        .flat_map(|(off, len)| [(2 * off, off, len), (2 * off + len, half + off, len)])
        .filter(|r| r.2 > 0)
        .collect()
}

/// Each tile row's kernel rows `(first, count)`, top to bottom: as evenly
/// as `h` splits `m`; with `halves` (where `h` is at most half of `m`),
/// exactly its pieces of both halves ([`row_runs`]), so every tile row's
/// `y` stream carries whole pairs, none of the row above's. (Split evenly
/// instead, the first `m mod h` rows took one row more than their pair:
/// on llama-3.2-1b's `w1_w3` on 273 rows, four rows of 61 against pairs
/// of 62, 62, 60, …, so rows 1–3 each sent their stream's first elements
/// to the SwiGLU row above; a held SwiGLU row then held back the next
/// tile row's whole stream, row after row.)
pub fn tile_rows(s: &GemvSpec) -> Vec<(u32, u32)> {
    if !s.lead.is_empty() {
        let mut k = 0;
        let mut rows = Vec::new();
        for runs in &s.lead {
            let len = runs.iter().map(|r| r.1).sum();
            rows.push((k, len));
            k += len;
        }
        let rest = (s.h as usize).saturating_sub(s.lead.len()) as u32;
        if rest > 0 {
            rows.extend(split(s.m - k, rest).into_iter().map(|(o, l)| (k + o, l)));
        }
        return rows;
    }
    match paired(s) {
        true => (split(s.m / 2, s.h).into_iter())
            .map(|(off, len)| (2 * off, 2 * len))
            .collect(),
        false => split(s.m, s.h),
    }
}

/// The most kernel rows a tile row holds ([`tile_rows`]; `h` at least 1).
pub fn rows_per_tile(s: &GemvSpec) -> u32 {
    if !s.lead.is_empty() {
        return tile_rows(s).iter().map(|r| r.1).max().unwrap_or(0);
    }
    match paired(s) {
        true => 2 * (s.m / 2).div_ceil(s.h),
        false => s.m.div_ceil(s.h),
    }
}

/// Whether the tile rows hold pairs of pieces of `y`'s two halves.
fn paired(s: &GemvSpec) -> bool {
    s.halves && s.h <= s.m / 2
}

/// Whether the kernel computes W's rows in another order than W's.
fn reordered(s: &GemvSpec) -> bool {
    s.halves || !s.lead.is_empty()
}

/// What is wrong with `lead` ([`GemvSpec::lead`]), if anything: with
/// `halves`; more of them than tile rows, or as many with rows of W
/// left for none; an empty one; or runs that are not W's first rows,
/// each once.
fn lead_wrong(s: &GemvSpec) -> Option<String> {
    if s.lead.is_empty() {
        return None;
    }
    let mut runs: Vec<(u32, u32)> = s.lead.iter().flatten().copied().collect();
    runs.sort_unstable();
    let mut end = 0u64;
    for &(t, len) in &runs {
        if t as u64 != end || len == 0 {
            return Some(format!(
                "its leading tile rows' runs must be W's first rows, each once and none empty (at row {end}, a run ({t}, {len}))"
            ));
        }
        end += len as u64;
    }
    let rest_rows = s.h as u64 - (s.lead.len() as u64).min(s.h as u64);
    if s.halves {
        Some("its halves side by side and leading tile rows are either, not both".into())
    } else if s.lead.iter().any(|r| r.is_empty()) {
        Some("a leading tile row computes no rows of W".into())
    } else if end > s.m as u64 || s.lead.len() as u64 > s.h as u64 {
        Some(format!(
            "{} leading tile rows of {end} rows of W, on {} tile rows of {} rows",
            s.lead.len(),
            s.h,
            s.m
        ))
    } else if (end < s.m as u64) != (rest_rows > 0) || rest_rows > s.m as u64 - end {
        Some(format!(
            "{} tile rows after its {} leading ones for the {} rows of W after theirs",
            rest_rows,
            s.lead.len(),
            s.m as u64 - end
        ))
    } else {
        None
    }
}

/// W's row of each kernel row.
fn kernel_rows(s: &GemvSpec) -> Vec<u32> {
    (row_runs(s).into_iter())
        .flat_map(|(_, t, len)| t..t + len)
        .collect()
}

/// Port `y`: tile row `r`'s stream carries kernel rows `rows[r]`, each
/// position after the last, and each kernel row is W's row
/// ([`row_runs`]).
fn y_port(s: &GemvSpec, rows: &[(u32, u32)], batch: u32) -> crate::TensorPort {
    if !reordered(s) {
        return crate::positions_port("y", "y", rows, s.m, batch);
    }
    let runs = row_runs(s);
    let mut segments = Vec::new();
    for p in 0..batch {
        for (r, &(o, l)) in rows.iter().enumerate() {
            // The runs this tile row's kernel rows `o..o + l` meet.
            for &(k, t, len) in &runs {
                let (from, to) = (k.max(o), (k + len).min(o + l));
                if from < to {
                    segments.push(crate::Segment {
                        stream: format!("y{r}"),
                        offset: p * s.m + t + (from - k),
                        len: to - from,
                        at: p * l + (from - o),
                    });
                }
            }
        }
    }
    crate::TensorPort {
        name: "y".into(),
        len: batch * s.m,
        segments,
    }
}

/// The data images of seeded weights: values for f32/f16/bf16; codes and
/// scales for int8 (a scale per row) and MXFP4 (a scale per row and block;
/// seeded ones are the same along a row, so each row of tiles takes one
/// image per run of tiles with as many blocks, not one per tile).
fn seeded_weights(s: &GemvSpec, cols: &[(u32, u32)], rows: &[(u32, u32)]) -> String {
    let values = |v: &[f32]| {
        v.iter()
            .map(|x| format!("{x:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut src = String::new();
    match s.dtype {
        DType::I8 => {
            writeln!(src, ".data w 0,0 {}x{} = randi({}, 127)", s.w, s.h, s.seed).unwrap();
            let scales = crate::quant::seeded_scales(s.m, s.seed);
            for (r, (mo, mt)) in rows.iter().enumerate() {
                let v = values(&scales[*mo as usize..(mo + mt) as usize]);
                writeln!(src, ".data s 0,{r} {}x1 = [{v}]", s.w).unwrap();
            }
        }
        DType::Mxfp4 => {
            writeln!(src, ".data w 0,0 {}x{} = randi({}, 6)", s.w, s.h, s.seed).unwrap();
            let scales = crate::quant::seeded_mx_scales(s.m, s.n, s.seed);
            let pieces: Vec<usize> = cols
                .iter()
                .map(|(no, nt)| crate::quant::mx_pieces(*no, *nt).len())
                .collect();
            let mut c0 = 0;
            while c0 < cols.len() {
                let c1 = (c0..cols.len())
                    .find(|c| pieces[*c] != pieces[c0])
                    .unwrap_or(cols.len());
                let (no, nt) = cols[c0];
                for (r, (mo, mt)) in rows.iter().enumerate() {
                    let v = values(&crate::quant::mx_tile_scales(
                        &scales, s.n, *mo, *mt, no, nt,
                    ));
                    writeln!(src, ".data e {c0},{r} {}x1 = [{v}]", c1 - c0).unwrap();
                }
                c0 = c1;
            }
        }
        _ => writeln!(src, ".data w 0,0 {}x{} = rand({})", s.w, s.h, s.seed).unwrap(),
    }
    src
}

/// The row reduction of the partial y's (length `m`), streamed out east.
fn row_reduce(s: &GemvSpec, m: u32) -> LineReduce {
    let colors: Vec<u8> = (C_LEVEL0..C_LEVEL0 + 8).collect();
    let lines = Lines::new(Axis::Row, s.w, s.h);
    LineReduce::new(
        lines,
        s.strategy,
        Combine::Add,
        Target::Stream(CY),
        "y",
        m,
        &colors,
    )
}

/// The reference: the same tiling and summation order in plain Rust. x is
/// rounded to the weights' dtype, each tile row's dot product sums `w·x` in
/// column order in f32, then each row of tiles is reduced in the plan's
/// order. Bit-exact with the emulator.
pub fn reference(s: &GemvSpec, w: &[f32], x: &[f32]) -> Vec<f32> {
    let (cols, rows) = (col_split(s), tile_rows(s));
    let x: Vec<f32> = x.iter().map(|v| s.compute_dtype().round(*v)).collect();
    let plan = Plan::new(s.w, s.strategy);
    let mut y = Vec::with_capacity(s.m as usize);
    for (mo, mt) in rows {
        let partials: Vec<Vec<f32>> = cols
            .iter()
            .map(|(no, nt)| {
                (mo..mo + mt)
                    .map(|i| {
                        (*no..no + nt).fold(0.0f32, |acc, j| {
                            acc + w[(i * s.n + j) as usize] * x[j as usize]
                        })
                    })
                    .collect()
            })
            .collect();
        y.extend(plan.reduce(&partials));
    }
    y
}

/// Bytes of code a batched GEMV's PE may hold beyond the one-position
/// program's: its position loop (a few instructions; tested).
pub const BATCH_CODE_BYTES: u64 = 64;

/// Bytes a PE of the batched GEMV ([`generate_batch`]) holds beyond the
/// one-position GEMV's, at most: the longer `x` and `y`, and the loop.
pub fn batch_growth(s: &GemvSpec, batch: u32) -> u64 {
    let nt = col_split(s).iter().map(|(_, nt)| *nt).max().unwrap_or(0) as u64;
    let mt = rows_per_tile(s) as u64;
    let more = batch.saturating_sub(1) as u64;
    more * (nt * s.compute_dtype().size_bytes() as u64 + mt * 4)
        + BATCH_CODE_BYTES * u64::from(batch > 1)
}

/// [`generate_batch`]'s `Y`: each position's `y` ([`reference`]) one
/// after another (the row reduces every position's partials element by
/// element, in the same order as one position's).
pub fn reference_batch(s: &GemvSpec, w: &[f32], x: &[f32]) -> Vec<f32> {
    x.chunks(s.n as usize)
        .flat_map(|x| reference(s, w, x))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(m: u32, n: u32, w: u32, h: u32, dtype: DType) -> GemvSpec {
        GemvSpec {
            m,
            n,
            dtype,
            w,
            h,
            strategy: crate::reduce::Strategy::Tree { k: 2 },
            seed: 1,
            halves: false,
            lead: Vec::new(),
        }
    }

    /// The 8B's classifier on its region (133 rows of 7 a tile) loops by
    /// columns; its `w2` (5 rows of 25) and quantized tiles by rows; and
    /// the orders hold a tile's weights transposed to each other.
    #[test]
    fn a_tall_narrow_tile_loops_by_columns() {
        let arch = Arch::wse3();
        let classifier = spec(128256, 4096, 593, 965, DType::BF16);
        assert_eq!(tile_order(&classifier, &arch), TileOrder::Columns);
        assert_eq!(
            tile_order(&spec(4096, 14336, 593, 965, DType::BF16), &arch),
            TileOrder::Rows
        );
        assert_eq!(
            tile_order(&spec(128256, 4096, 593, 965, DType::I8), &arch),
            TileOrder::Rows
        );
        let s = spec(6, 4, 2, 2, DType::F32);
        let (_, rows) = weights::tiles(&s, TileOrder::Rows, false).next().unwrap();
        let (_, cols) = weights::tiles(&s, TileOrder::Columns, false)
            .next()
            .unwrap();
        // Tile (0, 0): rows 0..3 of W (4 wide), columns 0..2.
        assert_eq!(rows, [0, 1, 4, 5, 8, 9]);
        assert_eq!(cols, [0, 4, 8, 1, 5, 9]);
    }
}
