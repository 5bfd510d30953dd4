//! The dataflow kernel library. Each kernel has three parts side by side:
//! a **generator** (a [`Fragment`] for a rectangle of PEs), a **reference**
//! (the same maths in plain Rust, following the kernel's summation order)
//! and a **cost model** (predicted cycles from the shapes and the machine's
//! parameters, derived from the emulator's cycle semantics).
//!
//! Kernels so far: [`gemv`], the [`collective`]s (broadcast, reduce,
//! allreduce, gather along rows or columns), the [`vector`] kernels
//! (element-wise ops, RMSNorm, LayerNorm, softmax), [`attention`] for a
//! decode step, [`rope`], [`embedding`] lookup and [`argmax`]: every kernel
//! a Llama-style decode step needs; and WaferLLM's [`meshgemv`] and
//! [`meshgemm`]; a mixture of experts' [`router`] and [`combine`], gpt-oss's
//! [`clamped_swiglu`]; [`quant`] holds int8 weights' quantization, which the
//! GEMV dequantizes on the PE. Most of them combine partial results along rows or
//! columns with the [`line_reduce`] building block, in the order a
//! [`reduce`] plan gives. [`calibration`] reproduces published hardware
//! measurements with them. [`abut`] joins two kernels into one program,
//! the first's output streaming into the second's input across their
//! shared edge.

pub mod abut;
pub mod argmax;
pub mod attention;
pub mod calibration;
pub mod clamped_swiglu;
pub mod collective;
pub mod combine;
mod costed;
pub mod embedding;
pub mod fragment;
pub mod gemv;
pub mod line_reduce;
pub mod meshgemm;
pub mod meshgemv;
pub mod quant;
pub mod reduce;
pub mod rope;
pub mod router;
pub mod symmetry;
pub mod timeline;
pub mod vector;

pub use fragment::{Fragment, KernelError, Segment, TensorPort, assemble, positions_port, split};
pub use symmetry::Flip;
