//! The compiler from transformer checkpoints to wafer Programs.
//!
//! So far: the model front ends for llama2.c checkpoints and tokenizers
//! ([`llama2c`], [`tokenizer`]) and Hugging Face Llama-family directories
//! ([`hf`]), the model description shared by every front
//! end ([`model`]), and the plain CPU reference forward pass ([`reference`])
//! that the emulated decode will be checked against, and the graph [`ir`]
//! of a decode step (printed, parsed, verified, interpreted). Placement,
//! routing, SRAM planning and codegen are not written yet.

pub mod bundle;
pub mod codegen;
pub mod decode;
pub mod hf;
pub mod ir;
pub mod listing;
pub mod llama2c;
pub mod model;
pub mod place;
pub mod reference;
pub mod route;
pub mod sram;
pub mod stage;
pub mod tokenizer;

pub use codegen::{CompileError, Compiled, compile};
pub use model::{Config, ModelError, RopePairs, Tensor, Weights};
