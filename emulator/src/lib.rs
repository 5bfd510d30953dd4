//! wafer's emulator: the machine model, the Program format (binary and
//! assembly), the checks a program must pass, and the engines that run it.
//!
//! Start with [`Program`] (the contract the compiler targets), [`Arch`] (the
//! machine), and [`engine`] (the cycle semantics and `run`).
//!
//! **Architecture invariant:** this crate knows nothing of the compiler, the
//! kernels or the viewer. A researcher can write a `.wsm` file by hand and run it.

pub mod arch;
pub mod asm;
pub mod binary;
pub mod check;
pub mod dtype;
pub mod engine;
pub mod geom;
pub mod isa;
pub mod program;
pub mod stats;
pub mod trace;
pub mod verify;

pub use arch::Arch;
pub use dtype::DType;
pub use engine::{
    Engine, Inputs, Memory, RunConfig, RunError, RunResult, Values, initial_memory, run, run_resume,
};
pub use geom::{Color, Pe, PeRect, Port, PortSet};
pub use program::{DataInit, PeCode, Program};
pub use verify::{VerifyError, verify};

/// Load a program from a `.wsm` (assembly) or `.wafer` (binary) file,
/// deciding by content: binary files start with the magic bytes.
pub fn load_program(path: &std::path::Path) -> Result<Program, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if bytes.starts_with(binary::MAGIC) {
        binary::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    } else {
        let text = String::from_utf8(bytes).map_err(|_| {
            format!(
                "{}: neither a wafer binary nor UTF-8 assembly text",
                path.display()
            )
        })?;
        asm::parse(&text, &path.display().to_string()).map_err(|e| e.to_string())
    }
}
