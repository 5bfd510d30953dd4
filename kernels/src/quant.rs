//! Quantized weights, dequantized on the PE inside the GEMV: int8 codes
//! with one scale per output channel (row of W), and MXFP4.
//!
//! A weight is `q · s`: `q` an `i8` code in `[-127, 127]`, `s` its row's
//! scale in bf16. The PE dequantizes one tile row at a time with a bf16
//! multiply (`vfmul.bf16 t, w, s`: the code is exact in bf16, the product
//! rounded to bf16), so the dequantized weight is `bf16(q · s)` and the rest
//! of the GEMV is the bf16 one. Quantizing here and dequantizing in
//! [`dequantize_int8`] give what the PE computes, bit for bit.

use wafer_emulator::DType;

/// The largest code magnitude: symmetric, so `-128` is never produced.
pub const INT8_MAX_CODE: f32 = 127.0;

/// Per-row int8 codes and bf16 scales of a row-major `m × n` matrix: each
/// row's scale maps its largest magnitude to 127 (an all-zero row gets
/// scale 1), each code is the nearest integer to `w / s`, within ±127.
pub fn quantize_int8(w: &[f32], m: u32, n: u32) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(w.len(), (m as usize) * (n as usize), "an m × n matrix");
    let mut codes = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(m as usize);
    for row in w.chunks(n.max(1) as usize).take(m as usize) {
        let max = row.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let s = if max > 0.0 && max.is_finite() {
            DType::BF16.round(max / INT8_MAX_CODE)
        } else {
            1.0
        };
        let s = if s > 0.0 { s } else { f32::MIN_POSITIVE };
        scales.push(s);
        codes.extend(
            row.iter()
                .map(|v| (v / s).round().clamp(-INT8_MAX_CODE, INT8_MAX_CODE)),
        );
    }
    (codes, scales)
}

/// The weights a PE computes with: `bf16(q · s)` for each code `q` of row
/// `i` and that row's scale `s` (rounded to bf16 first, as the PE reads it).
pub fn dequantize_int8(codes: &[f32], scales: &[f32], n: u32) -> Vec<f32> {
    codes
        .chunks(n.max(1) as usize)
        .zip(scales)
        .flat_map(|(row, s)| {
            let s = DType::BF16.round(*s);
            row.iter()
                .map(move |q| DType::BF16.round(DType::I8.round(*q) * s))
        })
        .collect()
}

/// Seeded scales for a generated kernel: positive, a few binades wide, a
/// pure function of the seed and the row.
pub fn seeded_scales(m: u32, seed: u64) -> Vec<f32> {
    (0..m)
        .map(|i| {
            let h = (seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let frac = (h >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            DType::BF16.round((1.0 + frac) / (64.0 * (1 + (h >> 38 & 3)) as f32))
        })
        .collect()
}

/// Elements an MXFP4 block's scale covers, along a row of W (OCP MX v1.0).
pub const MX_BLOCK: u32 = 32;

/// MXFP4 blocks along a row of `n` elements.
pub fn mx_blocks(n: u32) -> u32 {
    n.div_ceil(MX_BLOCK)
}

/// How a tile's columns `no .. no + nt` cut the blocks: `(offset in the
/// tile row, length)` of each piece, each within one block.
pub fn mx_pieces(no: u32, nt: u32) -> Vec<(u32, u32)> {
    let mut pieces = Vec::new();
    let mut j = no;
    while j < no + nt {
        let end = ((j / MX_BLOCK + 1) * MX_BLOCK).min(no + nt);
        pieces.push((j - no, end - j));
        j = end;
    }
    pieces
}

/// A tile's scales as its PE holds them: for each of its rows
/// `mo .. mo + mt`, one per piece ([`mx_pieces`]); `scales` is row-major
/// `m × mx_blocks(n)`.
pub fn mx_tile_scales(scales: &[f32], n: u32, mo: u32, mt: u32, no: u32, nt: u32) -> Vec<f32> {
    let nb = mx_blocks(n);
    let pieces = mx_pieces(no, nt);
    (mo..mo + mt)
        .flat_map(|i| {
            pieces
                .iter()
                .map(move |(off, _)| scales[(i * nb + (no + off) / MX_BLOCK) as usize])
        })
        .collect()
}

/// MXFP4 as OCP MX v1.0 §6.3 quantizes: each block of 32 along a row
/// shares the scale `2^(⌊log2 max|v|⌋ − 2)` (2: the exponent of E2M1's
/// largest value, 6), each element the E2M1 value nearest `v / scale`
/// (ties to even, saturating at ±6); an all-zero block gets scale 1.
/// Returns the elements' values (not scaled) and the scales, row-major
/// `m × mx_blocks(n)`.
pub fn quantize_mxfp4(w: &[f32], m: u32, n: u32) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(w.len(), (m as usize) * (n as usize), "an m × n matrix");
    let mut codes = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity((m * mx_blocks(n)) as usize);
    for row in w.chunks(n.max(1) as usize).take(m as usize) {
        for block in row.chunks(MX_BLOCK as usize) {
            let max = block.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let scale = if max > 0.0 && max.is_finite() {
                DType::E8m0.round(DType::E8m0.round(max) / 4.0)
            } else {
                1.0
            };
            scales.push(scale);
            codes.extend(block.iter().map(|v| DType::Mxfp4.round(v / scale)));
        }
    }
    (codes, scales)
}

/// The weights a PE computes with: `bf16(e · s)` for each E2M1 value `e`
/// and its block's scale `s` (exact: a power of two times two significant
/// bits, unless it overflows).
pub fn dequantize_mxfp4(codes: &[f32], scales: &[f32], n: u32) -> Vec<f32> {
    let nb = mx_blocks(n) as usize;
    codes
        .iter()
        .enumerate()
        .map(|(k, e)| {
            let (i, j) = (k / n as usize, k % n as usize);
            let s = DType::BF16.round(DType::E8m0.round(scales[i * nb + j / MX_BLOCK as usize]));
            DType::BF16.round(DType::Mxfp4.round(*e) * s)
        })
        .collect()
}

/// The weights a PE computes with when a row-major `m × n` matrix `w` is
/// stored as `dtype`: quantized and dequantized for int8 and MXFP4, `w`
/// itself otherwise.
pub fn as_held(dtype: DType, w: &[f32], m: u32, n: u32) -> Vec<f32> {
    match dtype {
        DType::I8 => {
            let (codes, scales) = quantize_int8(w, m, n);
            dequantize_int8(&codes, &scales, n)
        }
        DType::Mxfp4 => {
            let (codes, scales) = quantize_mxfp4(w, m, n);
            dequantize_mxfp4(&codes, &scales, n)
        }
        _ => w.to_vec(),
    }
}

/// Seeded MXFP4 scales for a generated kernel, row-major `m ×
/// mx_blocks(n)`: `2^k`, `k` in `-6 ..= 2`, a pure function of the seed and
/// the row, the same for every block of a row (so a generated program
/// states them once per row of tiles, however many tiles share them).
pub fn seeded_mx_scales(m: u32, n: u32, seed: u64) -> Vec<f32> {
    let nb = mx_blocks(n) as usize;
    (0..m as u64)
        .flat_map(|i| {
            let h =
                (seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            std::iter::repeat_n(2f32.powi((h >> 40) as i32 % 9 - 6), nb)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn int8_round_trip_stays_within_half_a_step(
            w in proptest::collection::vec(-4.0f32..4.0, 1..64), n in 1u32..8,
        ) {
            let m = (w.len() as u32).div_ceil(n);
            let mut w = w;
            w.resize((m * n) as usize, 0.0);
            let (codes, scales) = quantize_int8(&w, m, n);
            prop_assert!(codes.iter().all(|q| q.abs() <= 127.0 && q.fract() == 0.0));
            let back = dequantize_int8(&codes, &scales, n);
            for (i, (a, b)) in w.iter().zip(&back).enumerate() {
                let s = scales[i / n as usize];
                // Half a code step, plus bf16's rounding of the product.
                prop_assert!((a - b).abs() <= 0.5 * s + a.abs() / 128.0 + 1e-6, "{a} {b} {s}");
            }
        }
    }

    #[test]
    fn mxfp4_blocks_follow_the_ocp_rule_and_pieces_cover_a_tile() {
        // A block of 32 with largest magnitude 5: scale 2^(2 − 2) = 1,
        // and 5 rounds to the even E2M1 value 4; the next block's largest
        // is 0.75: scale 2^(−1 − 2), elements 6 × 0.125 = 0.75.
        let mut w = vec![0.0f32; 64];
        w[0] = 5.0;
        w[1] = -1.25;
        w[32] = 0.75;
        w[33] = 0.1;
        let (codes, scales) = quantize_mxfp4(&w, 1, 64);
        assert_eq!(scales, vec![1.0, 0.125]);
        assert_eq!(
            (codes[0], codes[1], codes[32], codes[33]),
            (4.0, -1.0, 6.0, 1.0)
        );
        let back = dequantize_mxfp4(&codes, &scales, 64);
        assert_eq!((back[0], back[32], back[33]), (4.0, 0.75, 0.125));
        // A tile from column 30, 40 wide: 2 + 32 + 6.
        assert_eq!(mx_pieces(30, 40), vec![(0, 2), (2, 32), (34, 6)]);
        assert_eq!(mx_pieces(64, 32), vec![(0, 32)]);
        let s: Vec<f32> = (0..2 * 3).map(|v| v as f32).collect(); // 2 rows × 3 blocks, n = 96
        assert_eq!(
            mx_tile_scales(&s, 96, 0, 2, 30, 40),
            vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
    }

    proptest! {
        #[test]
        fn mxfp4_round_trip_stays_within_half_a_step_of_its_block(
            w in proptest::collection::vec(-8.0f32..8.0, 1..100), n in 1u32..70,
        ) {
            let m = (w.len() as u32).div_ceil(n);
            let mut w = w;
            w.resize((m * n) as usize, 0.0);
            let (codes, scales) = quantize_mxfp4(&w, m, n);
            let back = dequantize_mxfp4(&codes, &scales, n);
            let nb = mx_blocks(n) as usize;
            for (k, (a, b)) in w.iter().zip(&back).enumerate() {
                let s = scales[(k / n as usize) * nb + (k % n as usize) / 32];
                // E2M1's widest step is 2 (4 to 6): within half of it at
                // scale s; the block's largest may reach just under 8·s and
                // saturate to 6·s (OCP's rule), under 2·s away.
                prop_assert!((a - b).abs() < 2.0 * s + 1e-6, "{a} {b} {s}");
            }
        }
    }

    #[test]
    fn a_row_s_largest_weight_gets_the_largest_code() {
        let (codes, scales) = quantize_int8(&[0.5, -1.0, 0.25, 0.0, 0.0, 0.0], 2, 3);
        assert_eq!(codes[1], -127.0);
        assert_eq!(&codes[3..], &[0.0; 3]);
        assert_eq!(scales[1], 1.0, "an all-zero row");
        assert_eq!(scales[0], DType::BF16.round(1.0 / 127.0));
    }
}
