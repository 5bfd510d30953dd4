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
//! a Llama-style decode step needs; and WaferLLM's [`meshgemv`].
//! [`calibration`] reproduces published hardware measurements with them.

pub mod argmax;
pub mod attention;
pub mod calibration;
pub mod collective;
pub mod embedding;
pub mod fragment;
pub mod gemv;
pub mod meshgemm;
pub mod meshgemv;
pub mod reduce;
pub mod rope;
pub mod timeline;
pub mod vector;

pub use fragment::{Fragment, KernelError, Segment, TensorPort, assemble, split};
