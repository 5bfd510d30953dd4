//! The `wafer` command line.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`| head`)
    // would panic; a command-line tool should just stop, as `cat` does.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition before any thread
    // starts; no handler is involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // MPI, when built in, starts before anything else and finalises
    // when `_universe` drops, after the command.
    #[cfg(feature = "mpi")]
    let _universe = cli::ranks::init();
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
