//! The dataflow kernel library. Each kernel has three parts side by side:
//! a **generator** (a [`Fragment`] for a rectangle of PEs), a **reference**
//! (the same maths in plain Rust, following the kernel's summation order)
//! and a **cost model** (predicted cycles from the shapes and the machine's
//! parameters, derived from the emulator's cycle semantics).
//!
//! Kernels so far: [`gemv`]. The rest of the decode step's kernels
//! (collectives, element-wise, norms, softmax, RoPE, attention, embedding,
//! argmax) are not written yet.

pub mod collective;
pub mod fragment;
pub mod gemv;
pub mod reduce;

pub use fragment::{Fragment, KernelError, Segment, TensorPort, split};
