//! The tiled GEMV's cost model: each row of PEs' tile loops, from when
//! its `x` is stored, then its reduction ([`LineReduce::finish`](crate::line_reduce::LineReduce::finish)); the
//! slowest row. The tests hold it equal to the emulated cycles.

use super::{
    C_LEVEL0, GemvSpec, TileOrder, col_split, cols_at_most, row_reduce, tile_order, tile_rows,
    validate,
};
use crate::costed::Costed;
use crate::reduce::{Plan, Strategy};
use wafer_emulator::isa::VecOp;
use wafer_emulator::{Arch, DType};

/// The rates and issue delay a spec's tile loops run at: worked out once
/// per spec, not once per tile (a large region has half a million).
pub(super) struct Loop {
    issue: u64,
    /// The dot product's rate, and int8 and MXFP4's dequantizing multiply's.
    dot: (u32, u32),
    dequant: (u32, u32),
    /// By columns: the first column's FMAC (reading `w` only) and the
    /// others' (reading `y` too); both write `y`.
    first: (u32, u32),
    next: (u32, u32),
}

impl Loop {
    pub(super) fn new(s: &GemvSpec, arch: &Arch) -> Loop {
        let narrow = s.compute_dtype().size_bytes() == 2;
        let wb = s.dtype.bits();
        Loop {
            issue: arch.vector_issue_cycles as u64,
            dot: arch.vector_rate(
                VecOp::Dot,
                DType::F32,
                narrow,
                if narrow { 32 } else { 64 },
                0,
            ),
            dequant: arch.vector_rate(VecOp::Fmul, DType::BF16, false, wb, 16),
            first: arch.vector_rate(VecOp::Fmac, DType::F32, narrow, wb, 32),
            next: arch.vector_rate(VecOp::Fmac, DType::F32, narrow, wb + 32, 32),
        }
    }

    /// A tile row's cycles in [`TileOrder::Rows`] (see [`cost`]).
    pub(super) fn row(&self, s: &GemvSpec, no: u32, nt: u32) -> u64 {
        let i = self.issue;
        let dot = Arch::vector_cycles(nt, self.dot) + i + 5;
        match s.dtype {
            DType::I8 => dot + Arch::vector_cycles(nt, self.dequant) + i + 1,
            DType::Mxfp4 => {
                crate::quant::mx_pieces(no, nt)
                    .iter()
                    .map(|(_, len)| Arch::vector_cycles(*len, self.dequant) + i + 3)
                    .sum::<u64>()
                    + dot
                    - 1
            }
            _ => dot,
        }
    }

    /// A tile's cycles in [`TileOrder::Columns`], from its first column's
    /// `ldf` to its last column's end (see [`cost`]).
    pub(super) fn columns(&self, nt: u32, mt: u32) -> u64 {
        let first = Arch::vector_cycles(mt, self.first) + self.issue + 2;
        let next = Arch::vector_cycles(mt, self.next) + self.issue + 4;
        first + (nt as u64 - 1) * next + u64::from(nt > 1)
    }
}

/// Predicted cycles. Derivation, following the engine's semantics with
/// `S` task switch, `I` issue delay, `h` hop and `r` ramp latency:
/// * the main task's first op starts at `S + 1 + I`; x's element `k` reaches
///   row `y`'s core at `k + h·(y+1) + r`, so x is stored by
///   `max(S + 1 + I, h·(y+1) + r) + n_c − 1`;
/// * two `li`, then per tile row: `lf`, the dot's issue, `I`, the dot's
///   `D = ⌈n_c·den/num⌉` cycles at the mixed-precision rate, `stf` (same
///   cycle as the dot's end), `add`, `add`, `blt`: `D + I + 5` per row;
///   int8 adds the scale's `ldf` and the dequantizing multiply before the
///   dot, its issue, `I` and `F = ⌈n_c·den/num⌉` at the bf16 multiply's
///   rate (one byte read, two written per element): `F + I + 1` more;
///   MXFP4 a third `li`, and per block piece of the row (its columns cut
///   MXFP4's blocks, [`crate::quant::mx_pieces`]) the scale's `ldf`, an
///   `add`, the multiply (`F_p + I`, half a byte read per element) and an
///   `add`, with one `add` fewer after the dot: `Σ (F_p + I + 3) − 1` more;
/// * by columns ([`TileOrder::Columns`]) instead: an `li`, then the first
///   column's `ldf`, the FMAC's issue, `I`, its `F₁` cycles (reading `w`
///   only) and the `add` in its last cycle: `F₁ + I + 2`; then an `li` and
///   per further column `ldf`, issue, `I`, `F` (reading `y` too), `add`
///   (same cycle), `add`, `blt`: `F + I + 4`;
/// * the row's reduction ([`LineReduce::finish`](crate::line_reduce::LineReduce::finish)), and the last element
///   `m_r − 1` later up the east ramp and over the host link.
pub fn cost(s: &GemvSpec, arch: &Arch) -> u64 {
    cost_batch(s, 1, arch)
}

/// [`generate_batch`](super::generate_batch)'s predicted cycles: as [`cost`]'s derivation, with
/// `x` `batch` times as long, three `li` before the first position, then
/// per position an `li` (and MXFP4's, moved here), its tile rows, and
/// `add`, `add`, `blt`; by columns, three `li` and per position its
/// tile's columns and `add`, `add`, `blt`. The row reduces `batch · m_r` partials.
pub fn cost_batch(s: &GemvSpec, batch: u32, arch: &Arch) -> u64 {
    // Every field the cost reads ([`crate::costed`]).
    let GemvSpec {
        m,
        n,
        dtype,
        w,
        h,
        strategy,
        seed: _,
        halves,
        lead,
    } = s;
    let key = (
        *m,
        *n,
        *dtype,
        *w,
        *h,
        *strategy,
        *halves,
        lead.clone(),
        batch,
    );
    COSTED.get_or(key, arch, || {
        row_ends_batch(s, batch, arch, None)
            .into_iter()
            .max()
            .unwrap_or(0)
    })
}

/// The tiled GEMV specs already costed ([`crate::costed`]).
type GemvKey = (
    u32,
    u32,
    DType,
    u32,
    u32,
    Strategy,
    bool,
    Vec<Vec<(u32, u32)>>,
    u32,
);
static COSTED: Costed<GemvKey> = Costed::new();

/// When each PE row's part of `y` has left (its stream `y<r>`'s last
/// wavelet leaves the east edge a cycle before): the rows nearer `x`'s
/// entry finish first, a cycle a row. [`cost`] is the latest.
pub fn row_ends(s: &GemvSpec, arch: &Arch) -> Vec<u64> {
    row_ends_batch(s, 1, arch, None)
}

/// [`row_ends`] with `x` arriving late: `x_last[c]`, the cycle column
/// `c`'s stream `x<c>` pushes its last wavelet in (its wavelets entering
/// at most one a cycle; unhindered, the column's length less one). A
/// column's tile loop starts once its last element is in, whichever
/// comes later, so each row's end follows.
pub fn row_ends_fed(s: &GemvSpec, arch: &Arch, x_last: &[u64]) -> Vec<u64> {
    row_ends_batch(s, 1, arch, Some(x_last))
}

fn row_ends_batch(s: &GemvSpec, batch: u32, arch: &Arch, x_last: Option<&[u64]>) -> Vec<u64> {
    let (cols, rows) = (col_split(s), tile_rows(s));
    let b = batch as u64;
    let (sw, i, hop, ramp) = (
        arch.task_switch_cycles as u64,
        arch.vector_issue_cycles as u64,
        arch.hop_latency as u64,
        arch.ramp_latency as u64,
    );
    let order = tile_order(s, arch);
    let tile_loop = Loop::new(s, arch);
    let mx = u64::from(s.dtype == DType::Mxfp4);
    // Batched, int8 keeps its scale's index in a register of its own (an
    // `li` a position, an `add` a row), as MXFP4 does.
    let (q, i8) = (u64::from(s.quantized()), u64::from(s.dtype == DType::I8));
    let mut ends = Vec::with_capacity(rows.len());
    for (y, (_, mt)) in rows.iter().enumerate() {
        let issue: Vec<u64> = (cols.iter().enumerate())
            .map(|(c, (no, nt))| {
                let in_row = hop * (y as u64 + 1) + ramp;
                let x_done = (sw + 1 + i).max(in_row) + b * *nt as u64 - 1;
                // The last element, pushed late, reaches this row's core.
                let x_done = match x_last.and_then(|x| x.get(c)) {
                    Some(last) => x_done.max(in_row + last),
                    None => x_done,
                };
                if order == TileOrder::Columns {
                    let tile = tile_loop.columns(*nt, *mt);
                    return match batch {
                        1 => x_done + 1 + tile,
                        _ => x_done + 3 + b * (tile + 3),
                    };
                }
                let rows = *mt as u64 * tile_loop.row(s, *no, *nt);
                match batch {
                    1 => x_done + 2 + mx + rows,
                    _ => x_done + 3 + b * (1 + q + rows + i8 * *mt as u64 + 3),
                }
            })
            .collect();
        let ym = batch * mt;
        let first = row_reduce(s, ym).finish(&issue, arch)[s.w as usize - 1];
        ends.push(first + ym as u64 - 1 + ramp + hop);
    }
    ends
}

/// The rectangle the cost model predicts fastest, among those that fit.
pub fn best_rect(
    m: u32,
    n: u32,
    dtype: DType,
    strategy: Strategy,
    arch: &Arch,
) -> Option<(u32, u32, u64)> {
    let sizes = |max: u32| -> Vec<u32> {
        let mut v: Vec<u32> = (0..31)
            .map(|k| 1u32 << k)
            .take_while(|x| *x <= max)
            .collect();
        v.push(max);
        v.dedup();
        v
    };
    let mut best: Option<(u32, u32, u64)> = None;
    let mut widths: Vec<u32> = sizes(n.min(arch.grid_cols))
        .into_iter()
        .map(|w| cols_at_most(n, dtype, w))
        .filter(|w| *w > 0)
        .collect();
    widths.dedup();
    for w in widths {
        for h in sizes(m.min(arch.grid_rows)) {
            let spec = GemvSpec {
                m,
                n,
                dtype,
                w,
                h,
                strategy,
                seed: 0,
                halves: false,
                lead: Vec::new(),
            };
            if validate(&spec, 1, arch).is_err()
                || C_LEVEL0 as u32 + Plan::shape(w, strategy).0 > arch.colors
            {
                continue;
            }
            let c = cost(&spec, arch);
            if best.is_none_or(|b| c < b.2 || (c == b.2 && w * h < b.0 * b.1)) {
                best = Some((w, h, c));
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kept costs are the computed ones, asked in an order where a key
    /// that left out a field the cost reads would answer with another
    /// spec's cost ([`crate::costed`]).
    #[test]
    fn a_kept_cost_is_the_cost_of_its_own_spec_and_machine() {
        let base = GemvSpec {
            m: 48,
            n: 64,
            dtype: DType::BF16,
            w: 4,
            h: 6,
            strategy: Strategy::Tree { k: 2 },
            seed: 3,
            halves: false,
            lead: Vec::new(),
        };
        let specs = [
            base.clone(),
            GemvSpec {
                m: 96,
                ..base.clone()
            },
            GemvSpec {
                n: 128,
                ..base.clone()
            },
            GemvSpec {
                dtype: DType::F32,
                ..base.clone()
            },
            GemvSpec {
                w: 2,
                ..base.clone()
            },
            GemvSpec {
                h: 3,
                ..base.clone()
            },
            GemvSpec {
                strategy: Strategy::Chain,
                ..base.clone()
            },
            GemvSpec {
                halves: true,
                ..base.clone()
            },
            GemvSpec {
                lead: vec![vec![(0, 3)], vec![(3, 1)]],
                ..base.clone()
            },
        ];
        let asked: Vec<(GemvSpec, u32)> = (specs.iter())
            .flat_map(|s| [(s.clone(), 1), (s.clone(), 3)])
            .collect();
        let distinct = crate::costed::check::kept_costs_are_computed(
            &asked,
            |(s, batch), seed, arch| cost_batch(&GemvSpec { seed, ..s.clone() }, *batch, arch),
            |(s, batch), arch| {
                (row_ends_batch(s, *batch, arch, None).into_iter())
                    .max()
                    .unwrap_or(0)
            },
        );
        assert!(distinct >= 12, "{distinct} distinct costs");
    }
}
