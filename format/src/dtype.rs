//! Element types and their bit-exact conversions.
//!
//! Arithmetic in a 16-bit type is done in f32 and rounded to the type after
//! every operation. f32 carries more than twice the significand bits of f16
//! and bf16 plus two, so one f32 operation followed by rounding gives the
//! correctly rounded 16-bit result (no double-rounding error).
//!
//! Three storage-only types hold quantized weights: `i8` codes (int8 with
//! a scale per row), and MXFP4's two parts (OCP Microscaling Formats v1.0,
//! §5.3 and §6.3): `mxfp4` elements (FP4 E2M1: a sign, two exponent bits,
//! one mantissa bit; two to a byte, the element at the even index in the
//! low nibble, as gpt-oss's checkpoints pack them) and `e8m0` block scales
//! (an exponent byte: `2^(e − 127)`, 255 is NaN). Every value of each is
//! exact in f32 and in bf16, so a kernel's dequantizing multiply by a
//! power-of-two scale is exact.

use half::{bf16, f16};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    F32,
    F16,
    BF16,
    /// 32-bit integers, for scalar loads and stores only (token ids, indices).
    I32,
    /// Signed 8-bit integer codes of quantized weights (int8 with a scale
    /// per output channel). Storage only: a vector op reads a code as its
    /// integer value (sign-extended, exact in every float type), and only a
    /// data image writes one; the scale is applied by the kernel.
    I8,
    /// FP4 E2M1 elements of MXFP4 blocks, 4 bits each, two to a byte.
    /// Storage only, like `I8`; read by vector ops only.
    Mxfp4,
    /// E8M0 scales of MXFP4 blocks, a byte each: `2^(e − 127)`. Storage
    /// only; read by vector ops and by a scalar float load (`ldf`).
    E8m0,
}

/// The 16 values of FP4 E2M1, by code (OCP MX v1.0, Table 5).
pub const E2M1: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// The E2M1 code nearest `v` (ties to the even code, that is the one
/// whose mantissa bit is 0), saturating at ±6; NaN gives +0.
fn e2m1_code(v: f32) -> u32 {
    if v.is_nan() {
        return 0;
    }
    let a = v.abs();
    let mut best = 0usize;
    for (c, x) in E2M1[..8].iter().enumerate() {
        let (d, bd) = ((a - x).abs(), (a - E2M1[best]).abs());
        if d < bd || (d == bd && c % 2 == 0 && best % 2 == 1) {
            best = c;
        }
    }
    best as u32 | if v.is_sign_negative() { 8 } else { 0 }
}

/// The E8M0 byte of the largest power of two not above `v` (clamped to
/// `2^-127 ..= 2^127`); NaN or a value that is not positive gives NaN (255).
fn e8m0_code(v: f32) -> u32 {
    if v.is_nan() || v <= 0.0 {
        return 255;
    }
    let e = if v.is_subnormal() {
        v.log2().floor() as i32
    } else {
        ((v.to_bits() >> 23) & 0xff) as i32 - 127
    };
    (e.clamp(-127, 127) + 127) as u32
}

fn e8m0_value(bits: u32) -> f32 {
    match bits & 0xff {
        255 => f32::NAN,
        0 => f32::from_bits(0x0040_0000), // 2^-127, a subnormal
        e => f32::from_bits(e << 23),
    }
}

impl DType {
    #[inline]
    pub fn size_bytes(self) -> u32 {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I8 | DType::E8m0 => 1,
            // Two to a byte: a buffer's bytes are `Buffer::sram_bytes`.
            DType::Mxfp4 => 1,
        }
    }

    /// Bits an element takes in memory.
    #[inline]
    pub fn bits(self) -> u32 {
        match self {
            DType::Mxfp4 => 4,
            d => 8 * d.size_bytes(),
        }
    }

    /// How many elements one 32-bit wavelet or memory word carries.
    #[inline]
    pub fn per_word(self) -> u32 {
        32 / self.bits()
    }

    #[inline]
    pub fn is_float(self) -> bool {
        !matches!(self, DType::I32) && !self.is_storage_only()
    }

    /// A storage-only type: read by vector ops, written by data images only.
    #[inline]
    pub fn is_storage_only(self) -> bool {
        matches!(self, DType::I8 | DType::Mxfp4 | DType::E8m0)
    }

    pub fn parse(s: &str) -> Option<DType> {
        Some(match s {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            "i32" => DType::I32,
            "i8" | "int8" => DType::I8,
            "mxfp4" => DType::Mxfp4,
            "e8m0" => DType::E8m0,
            _ => return None,
        })
    }

    /// Round an f32 to this type (returned widened back to f32).
    #[inline]
    pub fn round(self, v: f32) -> f32 {
        match self {
            DType::F32 => v,
            DType::F16 => f16::from_f32(v).to_f32(),
            DType::BF16 => bf16::from_f32(v).to_f32(),
            DType::I32 => v,
            // The nearest code, saturating (NaN gives 0, as `as` does).
            DType::I8 => v.round().clamp(-128.0, 127.0) as i8 as f32,
            DType::Mxfp4 => E2M1[e2m1_code(v) as usize],
            DType::E8m0 => e8m0_value(e8m0_code(v)),
        }
    }

    /// Encode one value into its storage bits (low bits for 16-bit types).
    #[inline]
    pub fn encode(self, v: f32) -> u32 {
        match self {
            DType::F32 => v.to_bits(),
            DType::F16 => f16::from_f32(v).to_bits() as u32,
            DType::BF16 => bf16::from_f32(v).to_bits() as u32,
            DType::I32 => v as i32 as u32,
            DType::I8 => v.round() as i8 as u8 as u32,
            DType::Mxfp4 => e2m1_code(v),
            DType::E8m0 => e8m0_code(v),
        }
    }

    /// Decode storage bits (low 16 for 16-bit types) to f32.
    #[inline]
    pub fn decode(self, bits: u32) -> f32 {
        match self {
            DType::F32 => f32::from_bits(bits),
            DType::F16 => f16::from_bits(bits as u16).to_f32(),
            DType::BF16 => bf16::from_bits(bits as u16).to_f32(),
            DType::I32 => bits as i32 as f32,
            DType::I8 => bits as u8 as i8 as f32,
            DType::Mxfp4 => E2M1[(bits & 0xf) as usize],
            DType::E8m0 => e8m0_value(bits),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I32 => "i32",
            DType::I8 => "i8",
            DType::Mxfp4 => "mxfp4",
            DType::E8m0 => "e8m0",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_round_trip_is_exact_for_representable_values() {
        for v in [0.0f32, 1.0, -2.5, 0.099975586, 65504.0] {
            assert_eq!(DType::F16.decode(DType::F16.encode(v)), v);
        }
        assert_eq!(DType::BF16.round(1.0 + 1.0 / 512.0), 1.0);
        assert_eq!(DType::F16.round(1.0 + 1.0 / 4096.0), 1.0);
    }

    #[test]
    fn int8_codes_round_saturate_and_sign_extend() {
        for (v, code) in [
            (3.4f32, 3.0f32),
            (-2.6, -3.0),
            (200.0, 127.0),
            (-1e9, -128.0),
        ] {
            assert_eq!(DType::I8.round(v), code);
            assert_eq!(DType::I8.decode(DType::I8.encode(v)), code);
        }
        assert_eq!(DType::I8.encode(-1.0), 0xff);
        assert_eq!(DType::I8.size_bytes(), 1);
        assert!(!DType::I8.is_float() && DType::I8.is_storage_only());
    }

    #[test]
    fn mxfp4_elements_and_scales_round_to_their_grids() {
        for (c, v) in E2M1.iter().enumerate() {
            assert_eq!(DType::Mxfp4.encode(*v), c as u32, "{v}");
            assert_eq!(DType::Mxfp4.decode(c as u32), *v);
        }
        // Nearest, ties to the even code (mantissa bit 0), saturating.
        for (v, want) in [
            (0.25, 0.0),
            (0.26, 0.5),
            (1.25, 1.0),
            (1.75, 2.0),
            (2.5, 2.0),
            (5.0, 4.0),
            (5.1, 6.0),
            (99.0, 6.0),
            (-3.4, -3.0),
        ] {
            assert_eq!(DType::Mxfp4.round(v), want, "{v}");
        }
        assert_eq!((DType::Mxfp4.bits(), DType::Mxfp4.per_word()), (4, 8));
        for e in [0u32, 1, 126, 127, 128, 254] {
            let v = DType::E8m0.decode(e);
            assert_eq!(v, 2f32.powi(e as i32 - 127), "{e}");
            assert_eq!(DType::E8m0.encode(v), e);
            assert_eq!(DType::BF16.round(v), v, "every scale is exact in bf16");
        }
        assert!(DType::E8m0.decode(255).is_nan());
        assert_eq!(DType::E8m0.round(3.0), 2.0, "the power of two not above");
        assert!(DType::Mxfp4.is_storage_only() && DType::E8m0.is_storage_only());
    }
}
