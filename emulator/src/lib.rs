//! wafer's emulator: the engines that run a [`Program`] on a machine
//! ([`Arch`]), cycle by cycle. The formats they read and write (the
//! machine model, the program and its assembly and binary forms, the
//! checks, stats and traces) are `wafer-format`'s, re-exported here under
//! the same paths so a user of the emulator needs one dependency.
//!
//! Start with [`engine`] (the cycle semantics, [`engine::prepare`] and
//! [`run`]).
//!
//! **Architecture invariant:** this crate knows nothing of the compiler, the
//! kernels or the viewer. A researcher can write a `.wsm` file by hand and run it.

pub mod engine;

pub use engine::{
    Arrivals, Cycles, Departures, Engine, Fed, Inputs, Memory, Prepared, RunConfig, RunError,
    RunResult, Values, copy_memory, initial_memory, prepare, run, run_resume,
};
pub use wafer_format::{
    Arch, Color, DType, DataInit, LoadError, Pe, PeCode, PeRect, Port, PortSet, Program,
    VerifyError, arch, asm, binary, check, dtype, geom, isa, load_program, program, stats, trace,
    verify,
};
