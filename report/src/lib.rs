//! What wafer reports about a compiled model, as data a program can use
//! (the CLI prints it; a notebook or a sweep driver can call it): the
//! decode step emulated or predicted and summarised by layer kind
//! ([`wafer::emulate`], [`wafer::predicted`]), the GPU baselines it is
//! compared with ([`gpu`]: specs, rooflines, measured and published
//! numbers), and the wafer-vs-GPU [`table::Table`] with every number's
//! source, as text or JSON; [`prefill`] the time to first token beside
//! the GPUs' prefill rooflines.
//!
//! No progress bars, signal handling or printing here: the caller owns the
//! terminal (progress comes through the `each` callback, cancellation
//! through a flag).

pub mod gpu;
pub mod prefill;
pub mod table;
pub mod wafer;

pub use table::{Table, table};
pub use wafer::{EmulateOptions, WaferRow, emulate, predicted, predicted_overlapped};

/// What went wrong making a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A data file (GPU specs, published numbers, a measured baseline)
    /// that does not read as one.
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("GPU `{gpu}` has no peak_flops for {dtype} in its specs (it has: {have})")]
    NoPeak {
        gpu: String,
        dtype: String,
        have: String,
    },
    #[error("--gpus: no GPU `{id}` in the specs (known: {known})")]
    UnknownGpu { id: String, known: String },
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Decode(#[from] wafer_compiler::decode::DecodeError),
}
