//! Element types and their bit-exact conversions.
//!
//! Arithmetic in a 16-bit type is done in f32 and rounded to the type after
//! every operation. f32 carries more than twice the significand bits of f16
//! and bf16 plus two, so one f32 operation followed by rounding gives the
//! correctly rounded 16-bit result (no double-rounding error).

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
}

impl DType {
    #[inline]
    pub fn size_bytes(self) -> u32 {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I8 => 1,
        }
    }

    /// How many elements one 32-bit wavelet or memory word carries.
    #[inline]
    pub fn per_word(self) -> u32 {
        4 / self.size_bytes()
    }

    #[inline]
    pub fn is_float(self) -> bool {
        !matches!(self, DType::I32 | DType::I8)
    }

    /// A storage-only type: read by vector ops, written by data images only.
    #[inline]
    pub fn is_storage_only(self) -> bool {
        self == DType::I8
    }

    pub fn parse(s: &str) -> Option<DType> {
        Some(match s {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            "i32" => DType::I32,
            "i8" | "int8" => DType::I8,
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
}
