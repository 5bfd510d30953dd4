//! wafer's formats: the contract the compiler, the emulator and the viewer
//! meet at. The machine model ([`Arch`]), the [`Program`] (per-PE code,
//! data, routes and host streams) with its assembly ([`asm`], `.wsm`) and
//! binary ([`binary`], `.wafer`) forms, the checks a program must pass
//! ([`verify`] on its own, [`check`] against a machine), and the files a
//! run writes ([`stats`], [`trace`]).
//!
//! **Architecture invariant:** no engine lives here, and nothing here
//! depends on one: a reader of programs, stats or traces (the viewer, a
//! notebook) builds this crate alone, without Cranelift or rayon.

pub mod arch;
pub mod asm;
pub mod binary;
pub mod check;
pub mod dtype;
pub mod geom;
pub mod isa;
pub mod program;
pub mod stats;
pub mod trace;
pub mod verify;

pub use arch::Arch;
pub use dtype::DType;
pub use geom::{Color, Pe, PeRect, Port, PortSet};
pub use program::{DataInit, PeCode, Program};
pub use verify::{VerifyError, verify};

/// Load a program from a `.wsm` (assembly) or `.wafer` (binary) file,
/// deciding by content: binary files start with the magic bytes.
pub fn load_program(path: &std::path::Path) -> Result<Program, LoadError> {
    let shown = || path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: shown(),
        source,
    })?;
    if bytes.starts_with(binary::MAGIC) {
        binary::decode(&bytes).map_err(|source| LoadError::Binary {
            path: shown(),
            source,
        })
    } else {
        let text = String::from_utf8(bytes).map_err(|_| LoadError::NotText { path: shown() })?;
        Ok(asm::parse(&text, &shown())?)
    }
}

/// Why a program file cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    // The inner error is in the message, so it is not also a `source`.
    #[error("{path}: {source}")]
    Binary {
        path: String,
        source: binary::BinaryError,
    },
    #[error("{path}: neither a wafer binary nor UTF-8 assembly text")]
    NotText { path: String },
    /// Names the file, line and column itself.
    #[error(transparent)]
    Asm(#[from] asm::AsmError),
}
