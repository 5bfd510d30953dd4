//! The bytes a model keeps on the wafer: its weights at the dtype they are
//! stored in (int8 and MXFP4 at their packed size with their scales) and
//! its KV cache, for the whole model and for one stage; and what to try
//! when they do not fit. Placement, the region search and a system's split
//! all size by these.

use crate::model::Config;
use crate::stage::{Stage, Work};
use wafer_emulator::DType;

/// The embedding table's dtype: quantized weights (int8, MXFP4) keep it
/// in bf16 (a lookup copies a row, it multiplies nothing, so there is
/// nothing to dequantize into); otherwise the weights' own.
pub fn table_dtype(dtype: DType) -> DType {
    match dtype {
        DType::I8 | DType::Mxfp4 => DType::BF16,
        d => d,
    }
}

/// Bytes the model keeps on the wafer: weights and the KV cache (f32).
/// int8: a byte a projection weight and two per row for its scale (the
/// Llama rows; a GPT-2's differ by a few rows a layer), the table in bf16;
/// MXFP4: half a byte a weight and a byte a block of 32, the table in bf16.
pub fn footprint(c: &Config, dtype: DType, max_context: u32) -> (u64, u64) {
    let table = c.vocab_size as u64 * c.dim as u64;
    let weights = match dtype {
        DType::I8 => {
            let (d, kv, h) = (c.dim as u64, c.kv_dim() as u64, c.hidden_dim as u64);
            let rows = c.n_layers as u64 * (3 * d + 2 * kv + 2 * h) + c.vocab_size as u64;
            c.n_params() + table + 2 * rows
        }
        DType::Mxfp4 => {
            let rest = c.n_params() - table;
            rest.div_ceil(2) + rest.div_ceil(32) + 2 * table
        }
        _ => c.n_params() * dtype.size_bytes() as u64,
    };
    let kv = 2 * c.n_layers as u64 * max_context as u64 * c.kv_dim() as u64 * 4;
    (weights, kv)
}

/// What makes a model that does not fit fit: 16-bit weights only where
/// they are not 16-bit already.
pub fn fit_advice(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "a shorter --max-context or a larger machine (the weights are f16 already)",
        DType::BF16 => "a shorter --max-context or a larger machine (the weights are bf16 already)",
        DType::I8 => {
            "--dtype mxfp4, a shorter --max-context or a larger machine (the weights are int8 already)"
        }
        DType::Mxfp4 => {
            "a shorter --max-context or a larger machine (the weights are mxfp4 already)"
        }
        DType::F32 | DType::I32 | DType::E8m0 => {
            "a 16-bit --dtype, a shorter --max-context, or a larger machine"
        }
    }
}

/// Weight bytes a stage keeps (0 for kernels without weights).
pub fn weight_bytes(stage: &Stage, dtype: DType) -> u64 {
    let b = dtype.size_bytes() as u64;
    match &stage.work {
        Work::Gemv { m, n, biases, .. } => {
            let n = (*n + !biases.is_empty() as u32) as u64;
            *m as u64
                * match dtype {
                    // A bf16 scale a row; an e8m0 one a block of 32.
                    DType::I8 => n + 2,
                    DType::Mxfp4 => n.div_ceil(2) + n.div_ceil(32),
                    _ => n * b,
                }
        }
        Work::Embed { vocab, dim, .. } => {
            *vocab as u64 * *dim as u64 * table_dtype(dtype).size_bytes() as u64
        }
        _ => 0,
    }
}
