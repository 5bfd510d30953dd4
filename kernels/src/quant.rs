//! Quantized weights: int8 codes with one scale per output channel (row of
//! W), dequantized on the PE inside the GEMV.
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
    fn a_row_s_largest_weight_gets_the_largest_code() {
        let (codes, scales) = quantize_int8(&[0.5, -1.0, 0.25, 0.0, 0.0, 0.0], 2, 3);
        assert_eq!(codes[1], -127.0);
        assert_eq!(&codes[3..], &[0.0; 3]);
        assert_eq!(scales[1], 1.0, "an all-zero row");
        assert_eq!(scales[0], DType::BF16.round(1.0 / 127.0));
    }
}
