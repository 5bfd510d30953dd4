//! Checkpoints the front-end tests write themselves: seeded values and
//! f32 safetensors bytes (shared by `hf.rs`, `gpt2.rs` and `moe.rs`, and
//! the command line's tests), and a shrunk Mixtral (`mixtral.rs`).

pub mod mixtral;

use safetensors::{Dtype, tensor::TensorView};

/// Seeded values uniform in `[-scale/2, scale/2)`, a linear congruential
/// sequence from `seed`.
pub fn seeded(mut seed: u64, scale: f32) -> impl FnMut() -> f32 {
    move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
    }
}

/// One safetensors file of f32 tensors, `(name, shape, values)`.
pub fn f32_safetensors<'a>(
    tensors: impl IntoIterator<Item = (String, &'a [usize], &'a [f32])>,
) -> Vec<u8> {
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| {
            (
                n,
                s.to_vec(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, &None).unwrap()
}
