//! W as the host sees a generated GEMV's tiles: read back from the
//! program's images (what the reference multiplies by) and loaded in place
//! of the seeded ones (a checkpoint's weights), both walking each PE's
//! tile in its [`TileOrder`].

use super::{GemvSpec, TileOrder, col_split, kernel_rows, reordered, tile_order, tile_rows};
use crate::{Fragment, KernelError};
use wafer_emulator::{Arch, DType, Pe, Program};

/// W as the generated program holds it (row-major `m × n`, rounded to the
/// weights' dtype).
pub fn weights(s: &GemvSpec, arch: &Arch, p: &Program) -> Vec<f32> {
    weights_at(s, tile_order(s, arch), p, false)
}

/// [`weights`] of a [`Fragment::transposed`] GEMV: tile `(c, r)` sits at PE `(r, c)`.
pub fn weights_transposed(s: &GemvSpec, arch: &Arch, p: &Program) -> Vec<f32> {
    weights_at(s, tile_order(s, arch), p, true)
}

/// Each PE's tile: where it sits, and W's elements it holds in order.
pub(super) fn tiles(
    s: &GemvSpec,
    order: TileOrder,
    transposed: bool,
) -> impl Iterator<Item = (Pe, Vec<usize>)> {
    let (cols, rows) = (col_split(s), tile_rows(s));
    let n = s.n;
    cols.into_iter().enumerate().flat_map(move |(c, (no, nt))| {
        rows.clone()
            .into_iter()
            .enumerate()
            .map(move |(r, (mo, mt))| {
                let at = if transposed {
                    Pe::new(r as u32, c as u32)
                } else {
                    Pe::new(c as u32, r as u32)
                };
                let at_ij = move |i: u32, j: u32| ((mo + i) * n + no + j) as usize;
                let idx = match order {
                    TileOrder::Rows => (0..mt)
                        .flat_map(|i| (0..nt).map(move |j| at_ij(i, j)))
                        .collect(),
                    TileOrder::Columns => (0..nt)
                        .flat_map(|j| (0..mt).map(move |i| at_ij(i, j)))
                        .collect(),
                };
                (at, idx)
            })
    })
}

/// W as the PEs compute with it: int8 codes are dequantized with their
/// rows' scales ([`crate::quant::dequantize_int8`]).
fn weights_at(s: &GemvSpec, order: TileOrder, p: &Program, transposed: bool) -> Vec<f32> {
    let mut w = vec![0.0; (s.m * s.n) as usize];
    let nb = crate::quant::mx_blocks(s.n) as usize;
    let mut scales = vec![1.0; s.m as usize * if s.dtype == DType::Mxfp4 { nb } else { 1 }];
    for (at, idx) in tiles(s, order, transposed) {
        let tile = p.initial_values(at, "w").expect("every PE holds a tile");
        // Tile row k starts at idx[k · nt], W's row idx / n.
        let (nt, n) = (tile_cols(s, at, transposed) as usize, s.n as usize);
        match s.dtype {
            DType::I8 => {
                let held = p
                    .initial_values(at, "s")
                    .expect("every PE holds its rows' scales");
                for (k, v) in held.into_iter().enumerate() {
                    scales[idx[k * nt] / n] = v;
                }
            }
            DType::Mxfp4 => {
                let held = p
                    .initial_values(at, "e")
                    .expect("every PE holds its blocks' scales");
                let pieces = crate::quant::mx_pieces((idx[0] % n) as u32, nt as u32);
                for (k, v) in held.into_iter().enumerate() {
                    let (row, (off, _)) = (k / pieces.len(), pieces[k % pieces.len()]);
                    let first = idx[row * nt + off as usize];
                    scales[first / n * nb + first % n / crate::quant::MX_BLOCK as usize] = v;
                }
            }
            _ => {}
        }
        for (k, i) in idx.into_iter().enumerate() {
            w[i] = tile[k];
        }
    }
    let w = match s.dtype {
        DType::I8 => crate::quant::dequantize_int8(&w, &scales, s.n),
        DType::Mxfp4 => crate::quant::dequantize_mxfp4(&w, &scales, s.n),
        _ => w,
    };
    if !reordered(s) {
        return w;
    }
    // Kernel rows back to W's.
    let n = s.n as usize;
    let mut out = vec![0.0; w.len()];
    for (k, t) in kernel_rows(s).into_iter().enumerate() {
        out[t as usize * n..][..n].copy_from_slice(&w[k * n..][..n]);
    }
    out
}

/// Columns of W the tile at `at` holds.
fn tile_cols(s: &GemvSpec, at: Pe, transposed: bool) -> u32 {
    let c = if transposed { at.y } else { at.x };
    col_split(s)[c as usize].1
}

/// Put W (row-major `m × n`) into a generated GEMV's tiles in place of its
/// seeded weights; the PEs round them to the spec's dtype (int8 and MXFP4:
/// quantized with [`crate::quant`], codes and scales loaded).
pub fn load_weights(
    s: &GemvSpec,
    arch: &Arch,
    f: &mut Fragment,
    w: &[f32],
) -> Result<(), KernelError> {
    let takes = s.m as u64 * s.n as u64;
    KernelError::check_length(|| format!("GEMV {}x{}", s.m, s.n), takes, w.len())?;
    // W's rows in kernel order (`halves`, `lead`).
    let kernel_order: Vec<f32>;
    let w = match reordered(s) {
        false => w,
        true => {
            let n = s.n as usize;
            kernel_order = (kernel_rows(s).into_iter())
                .flat_map(|t| &w[t as usize * n..][..n])
                .copied()
                .collect();
            &kernel_order
        }
    };
    let (held, scales) = match s.dtype {
        DType::I8 => crate::quant::quantize_int8(w, s.m, s.n),
        DType::Mxfp4 => crate::quant::quantize_mxfp4(w, s.m, s.n),
        _ => (w.to_vec(), Vec::new()),
    };
    let mut per_pe_scales = Vec::new();
    let per_pe = tiles(s, tile_order(s, arch), false)
        .map(|(at, idx)| {
            let nt = tile_cols(s, at, false);
            let (mo, no, mt) = (
                idx[0] as u32 / s.n,
                idx[0] as u32 % s.n,
                idx.len() as u32 / nt,
            );
            match s.dtype {
                DType::I8 => {
                    per_pe_scales.push((at, scales[mo as usize..(mo + mt) as usize].to_vec()))
                }
                DType::Mxfp4 => per_pe_scales.push((
                    at,
                    crate::quant::mx_tile_scales(&scales, s.n, mo, mt, no, nt),
                )),
                _ => {}
            }
            (at, idx.into_iter().map(|i| held[i]).collect())
        })
        .collect();
    f.load("w", per_pe);
    match s.dtype {
        DType::I8 => f.load("s", per_pe_scales),
        DType::Mxfp4 => f.load("e", per_pe_scales),
        _ => {}
    }
    Ok(())
}
