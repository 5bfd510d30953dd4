//! The assembly a tile's PE runs: its name (the tile's shape and its
//! place in the row reduction) and its text, a dot product per tile row
//! ([`TileOrder::Rows`](super::TileOrder::Rows)) or an axpy per column ([`TileOrder::Columns`](super::TileOrder::Columns)),
//! the row reduction's part appended.

use super::{CX, GemvSpec};
use crate::reduce::Action;
use std::fmt::Write;
use wafer_emulator::DType;

pub(super) fn code_name(nt: u32, mt: u32, steps: &[(u32, Action)], root: bool) -> String {
    let mut name = format!("gemv_{mt}x{nt}");
    for (l, a) in steps {
        match a {
            Action::Send { .. } => write!(name, "_s{l}").unwrap(),
            Action::Forward { .. } => write!(name, "_f{l}").unwrap(),
            Action::Gather => write!(name, "_g{l}").unwrap(),
        }
    }
    if root {
        name.push_str("_out");
    }
    name
}

pub(super) fn code_text(
    name: &str,
    s: &GemvSpec,
    batch: u32,
    no: u32,
    nt: u32,
    mt: u32,
    reduction: &str,
) -> String {
    let (wl, xl) = (mt * nt, batch * nt);
    // Quantized tiles dequantize each row into `t` first, then dot `t`.
    let (buffers, setup, dequant, w_row, step) = match s.dtype {
        DType::I8 => (
            format!(
                "  .buffer w i8[{wl}]\n  .buffer s bf16[{mt}]\n  .buffer t bf16[{nt}]\n  .buffer x bf16[{xl}]\n"
            ),
            // Batched, r1 counts every position's rows: r3 this one's.
            match batch {
                1 => String::new(),
                _ => "  li r3, 0\n".to_string(),
            },
            match batch {
                1 => format!("  ldf f2, s[r1]\n  vfmul.bf16 t, w[r2, {nt}], f2\n"),
                _ => format!("  ldf f2, s[r3]\n  add r3, r3, 1\n  vfmul.bf16 t, w[r2, {nt}], f2\n"),
            },
            "t".to_string(),
            format!("  add r2, r2, {nt}\n"),
        ),
        DType::Mxfp4 => {
            let pieces = crate::quant::mx_pieces(no, nt);
            let mut dequant = String::new();
            for (off, len) in &pieces {
                write!(dequant, "  ldf f2, e[r3]\n  add r3, r3, 1\n  vfmul.bf16 t[{off}, {len}], w[r2, {len}], f2\n  add r2, r2, {len}\n").unwrap();
            }
            (
                format!(
                    "  .buffer w mxfp4[{wl}]\n  .buffer e e8m0[{}]\n  .buffer t bf16[{nt}]\n  .buffer x bf16[{xl}]\n",
                    mt as usize * pieces.len()
                ),
                "  li r3, 0\n".to_string(),
                dequant,
                "t".to_string(),
                String::new(),
            )
        }
        dt => (
            format!("  .buffer w {dt}[{wl}]\n  .buffer x {dt}[{xl}]\n"),
            String::new(),
            String::new(),
            format!("w[r2, {nt}]"),
            format!("  add r2, r2, {nt}\n"),
        ),
    };
    if batch == 1 {
        return format!(
            ".code {name}\n{buffers}  .buffer y f32[{mt}]\n  .task main local active\nmain:\n  vmov.f32 x, rx(c{CX})\n  li r1, 0\n  li r2, 0\n{setup}row:\n{dequant}  lf f1, 0\n  vdot.f32 f1, {w_row}, x\n  stf y[r1], f1\n  add r1, r1, 1\n{step}  blt r1, {mt}, row\n{reduction}  end\n.end\n"
        );
    }
    // Batched: `x` and `y` hold every position's slice; r4 is this
    // position's `x` offset, r5 the end of its rows in `y`, and the tile
    // (r2, and MXFP4's scales r3) starts over for each position.
    format!(
        ".code {name}\n{buffers}  .buffer y f32[{ym}]\n  .task main local active\nmain:\n  vmov.f32 x, rx(c{CX})\n  li r1, 0\n  li r4, 0\n  li r5, {mt}\nposition:\n  li r2, 0\n{setup}row:\n{dequant}  lf f1, 0\n  vdot.f32 f1, {w_row}, x[r4, {nt}]\n  stf y[r1], f1\n  add r1, r1, 1\n{step}  blt r1, r5, row\n  add r4, r4, {nt}\n  add r5, r5, {mt}\n  blt r1, {ym}, position\n{reduction}  end\n.end\n",
        ym = batch * mt
    )
}

/// A tile's loop by columns ([`TileOrder::Columns`](super::TileOrder::Columns)): `y` starts as the
/// first column times `x[0]` (`0.0 + w·x`, so each element's sum is the
/// row loop's `vdot` exactly: the same products added in the same order
/// to the same zero), then each further column `j` adds `w_j·x[j]`
/// (`vfmac`), as MeshGEMV's axpy loop does. A batch walks every
/// position's `x` with r1, its part of `y` with r3 and the end of its
/// `x` with r4; the tile (r2) starts over for each position.
pub(super) fn columns_text(
    name: &str,
    s: &GemvSpec,
    batch: u32,
    nt: u32,
    mt: u32,
    reduction: &str,
) -> String {
    let dt = s.dtype;
    let (wl, xl) = (mt * nt, batch * nt);
    let y = match batch {
        1 => "y".to_string(),
        _ => format!("y[r3, {mt}]"),
    };
    let column = format!(
        "  ldf f2, x[r1]\n  vfmac.f32 {y}, {y}, w[r2, {mt}], f2\n  add r1, r1, 1\n  add r2, r2, {mt}\n"
    );
    // The first column, then the loop over the others (none for one).
    let mut tile =
        format!("  ldf f2, x[r1]\n  vfmac.f32 {y}, 0.0, w[0, {mt}], f2\n  add r1, r1, 1\n");
    let end = match batch {
        1 => nt.to_string(),
        _ => "r4".to_string(),
    };
    if nt > 1 {
        tile.push_str(&format!(
            "  li r2, {mt}\ncolumn:\n{column}  blt r1, {end}, column\n"
        ));
    }
    let head = format!(
        ".code {name}\n  .buffer w {dt}[{wl}]\n  .buffer x {dt}[{xl}]\n  .buffer y f32[{ym}]\n  .task main local active\nmain:\n  vmov.f32 x, rx(c{CX})\n  li r1, 0\n",
        ym = batch * mt
    );
    match batch {
        1 => format!("{head}{tile}{reduction}  end\n.end\n"),
        _ => format!(
            "{head}  li r3, 0\n  li r4, {nt}\nposition:\n{tile}  add r3, r3, {mt}\n  add r4, r4, {nt}\n  blt r1, {xl}, position\n{reduction}  end\n.end\n"
        ),
    }
}
