//! The compiler from transformer checkpoints to wafer Programs, and
//! decoding on the emulated wafer.
//!
//! Front ends ([`llama2c`], [`tokenizer`], [`hf`], built-in configs in
//! [`model`]) produce a [`Config`] and [`Weights`]; [`ir`] builds the graph
//! of one decode step; [`stage`] lowers and fuses it into kernel
//! invocations; [`place`] puts them on the wafer; [`codegen`] generates
//! their programs with the weights; [`route`] and [`sram`] plan colors,
//! hand-offs and memory; [`decode`] runs steps on the emulator and
//! [`reference`] is the plain CPU model everything is checked against.

pub mod bundle;
pub mod codegen;
pub mod decode;
pub mod experts;
pub mod footprint;
pub mod generation;
pub mod gpt2;
pub mod gpt_oss;
pub mod hf;
pub mod ir;
pub mod kernel;
pub mod listing;
pub mod llama2c;
pub mod math;
pub mod model;
pub mod place;
pub mod prefill;
pub mod reference;
pub mod region;
pub mod route;
pub mod share;
pub mod source;
pub mod sram;
pub mod stage;
pub mod system;
pub mod tokenizer;

pub use codegen::{CompileError, Compiled, compile};
pub use model::{Config, ModelError, RopePairs, Tensor, Weights};
pub use source::ModelSource;
