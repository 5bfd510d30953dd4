//! Subcommands. Each is a function from parsed arguments to printed output.

mod arch;
mod asm;
mod bench;
mod calibrate;
mod compare;
mod compile;
mod flags;
mod generate;
mod kernel;
mod model;
mod plot;
pub mod ranks;
mod run;
mod sweep;
mod view;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "wafer",
    version,
    about = "Compile and emulate dataflow programs on a wafer-scale grid of processing elements"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a program (.wsm assembly or .wafer binary) on the emulated machine.
    /// With no FILE, runs the built-in example: an 8x8-PE tiled GEMV.
    Run(run::RunArgs),
    /// Assemble a .wsm file into a .wafer binary.
    Asm(asm::AsmArgs),
    /// Print a .wafer binary (or re-print a .wsm file) as assembly.
    Disasm(asm::DisasmArgs),
    /// Print a machine's parameters (a preset name or a TOML/JSON file).
    Arch(arch::ArchArgs),
    /// Run one kernel on its own with seeded random inputs, check it against
    /// its reference, and compare measured with predicted cycles.
    Kernel(kernel::KernelArgs),
    /// A model's size against a machine: parameters, weight and KV-cache
    /// bytes, and whether they fit in SRAM (a built-in name, a llama2.c
    /// checkpoint or a Hugging Face directory).
    Model(model::ModelArgs),
    /// Compile a model for a machine: placement, routing, SRAM plan and
    /// every stage's program; --listing shows them, -o writes them.
    Compile(compile::CompileArgs),
    /// Decode on the emulated wafer: the generated tokens (and text), with
    /// per-token cycles and µs. With no MODEL, a built-in checkpoint.
    Generate(generate::GenerateArgs),
    /// Per-token decode latency on the wafer against GPU baselines
    /// (roofline, measured, published), with where the wafer's time goes;
    /// --emulator instead times the engines against each other and the
    /// emulation against the CPU reference forward pass, as ratios.
    Bench(bench::BenchArgs),
    /// Per-token latency across grid sizes, placements and dtypes (table,
    /// JSON, plot): how many PEs a model deserves.
    Sweep(sweep::SweepArgs),
    /// Published measurements of wafer-scale hardware (baselines/calibration)
    /// emulated and compared: published, emulated, error, and the median and
    /// worst error.
    Calibrate(calibrate::CalibrateArgs),
    /// Open a run (stats/trace JSON), a program or a model in the viewer:
    /// heatmaps over the grid, placement, time, a PE inspector, latency
    /// against GPUs; --screenshot OUT.png renders it without a display.
    View(view::ViewArgs),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    if ranks::ranks() > 1 && !matches!(cli.command, Command::Bench(_) | Command::Sweep(_)) {
        anyhow::bail!(
            "{} MPI ranks: only `wafer bench` (its timing-only table) and `wafer sweep` (its points) share their work between ranks; run this command as one process",
            ranks::ranks()
        );
    }
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Asm(a) => asm::asm(a),
        Command::Disasm(a) => asm::disasm(a),
        Command::Arch(a) => arch::arch(a),
        Command::Kernel(a) => kernel::kernel(a),
        Command::Model(a) => model::model(a),
        Command::Compile(a) => compile::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::View(a) => view::run(a),
        Command::Calibrate(a) => calibrate::run(a),
    }
}

/// `--arch` and `--grid` together: the machine to run on.
pub fn machine(arch: &str, grid: Option<&str>) -> anyhow::Result<wafer_emulator::Arch> {
    let a = wafer_emulator::Arch::load(arch)?;
    Ok(match grid {
        None => a,
        Some(g) => {
            let (w, h) = flags::dims("--grid", g)?;
            a.with_grid(w, h)?
        }
    })
}

/// A program file (`.wsm` or `.wafer`). A compiled model (`wafer compile
/// -o`) holds many programs and is named as such, with what reads it.
pub fn program_file(path: &std::path::Path) -> anyhow::Result<wafer_emulator::Program> {
    if is_bundle(path) {
        anyhow::bail!(
            "{}: a compiled model (`wafer compile -o`), not one program: `wafer disasm {}` lists its stages; `wafer generate`, `bench` and `view` take the model itself",
            path.display(),
            path.display()
        );
    }
    wafer_emulator::load_program(path).map_err(anyhow::Error::msg)
}

/// Whether the file starts with the compiled-model magic.
pub fn is_bundle(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|_| &magic == wafer_compiler::bundle::MAGIC)
}

/// The flag Ctrl-C sets, so long runs stop cleanly at their next check
/// (a second Ctrl-C while stopping ends the process as usual). A signal
/// is the process's, so its flag is too: one handler, installed on the
/// first call, and every caller gets the same flag (a flag per call would
/// leave all but the first unset, as a sweep's later points were).
pub fn interrupt_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, OnceLock};
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        // Fails only if another handler is installed; then that one stays.
        let _ = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::Relaxed) {
                std::process::exit(130);
            }
        });
        flag
    })
    .clone()
}

/// A `KEY: N kB` line of a Linux /proc file, in KiB (None elsewhere).
pub fn proc_kib(file: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The machine, `--arch` and `--grid`: defined once for every command
/// that runs or places work on one.
#[derive(clap::Args, Debug, Clone)]
pub struct MachineArgs {
    /// Machine: wse2, wse3, or a TOML/JSON machine file.
    #[arg(long, default_value = "wse3")]
    pub arch: String,
    /// Use only COLSxROWS PEs of the machine (e.g. 16x16).
    #[arg(long, allow_hyphen_values = true)]
    pub grid: Option<String>,
}

impl MachineArgs {
    /// The machine these flags name.
    pub fn arch(&self) -> anyhow::Result<wafer_emulator::Arch> {
        machine(&self.arch, self.grid.as_deref())
    }
}

/// How runs are emulated: `--engine` and `--threads`.
#[derive(clap::Args, Debug)]
pub struct EngineArgs {
    /// jit (event-driven, PE code compiled to native code; the default),
    /// interp (event-driven, interpreted) or reference (every PE every
    /// cycle); identical results and cycles.
    #[arg(long, default_value = "jit")]
    pub engine: String,
    /// Worker threads (results and cycles do not depend on it), 1..=1024;
    /// default: this host's cores. The event-driven engines step a large
    /// grid in bands of PEs on them (without --trace); otherwise the JIT
    /// engine shares out its compiled work.
    #[arg(long, value_parser = flags::threads, allow_negative_numbers = true)]
    pub threads: Option<usize>,
}

impl EngineArgs {
    pub fn engine(&self) -> anyhow::Result<wafer_emulator::Engine> {
        engine(&self.engine)
    }

    pub fn threads(&self) -> usize {
        threads(self.threads)
    }
}

/// `--threads`, or by default this host's cores.
pub fn threads(given: Option<usize>) -> usize {
    given.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}

/// An engine by name: reference, interp or jit.
pub fn engine(name: &str) -> anyhow::Result<wafer_emulator::Engine> {
    use wafer_emulator::Engine;
    [Engine::Reference, Engine::Interp, Engine::Jit]
        .into_iter()
        .find(|e| e.name() == name)
        .ok_or_else(|| anyhow::anyhow!("--engine `{name}`: use jit, interp or reference"))
}
