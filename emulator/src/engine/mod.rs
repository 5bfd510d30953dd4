//! Engines that execute a checked Program on a machine model.
//!
//! The reference engine steps every cycle exactly as the semantics below
//! say; it is slow and obviously correct, and every faster engine is checked
//! against it.
//!
//! # Cycle semantics (what "cycle-approximate" means here)
//!
//! Each cycle has three phases, and nothing written in a cycle is visible in
//! the same cycle, so the order in which PEs are visited never matters:
//! 1. **Host input**: each input stream offers one wavelet every `period`
//!    cycles to its edge PE's router buffer (arrives after `hop_latency`).
//! 2. **Routers**: every router buffer (one per input port and color that a
//!    route uses, `router_buffer_depth` deep) offers its head wavelet. In
//!    round-robin order, a head moves when all its output ports are unclaimed
//!    this cycle and every destination has room (multicast is atomic). Each
//!    input port forwards and each output port accepts at most one wavelet per
//!    cycle, so a link carries at most one wavelet per direction per cycle.
//!    A wavelet reaches the next router after `hop_latency` cycles and the
//!    core's input queue (`queue_depth`) after `ramp_latency`.
//! 3. **Cores**: the vector datapath serves one operation per cycle, round
//!    robin over the main thread's synchronous op and the microthreads' ops
//!    that can make progress. An op processes elements at a steady rate of
//!    `min(lanes, memory-port limit, 1/special_fn_cycles)` per cycle (a
//!    fractional rate is kept exactly with an accumulator), after
//!    `vector_issue_cycles` of issue delay, and at most one wavelet per
//!    fabric operand per cycle. Then the main thread executes one scalar
//!    instruction, or spends a cycle switching to a task
//!    (`task_switch_cycles`), or picks the lowest-numbered ready task.
//!
//! Room in a buffer is counted against wavelets in it or in flight to it; a
//! buffer behind a link of latency L holds its depth plus L (the link's
//! pipeline stages), and a pop frees room from the next cycle on (credit
//! return). The run ends at the
//! first cycle in which nothing happened and nothing is in flight: if every
//! queue is empty, every task idle and every host output complete, that is
//! the cycle count; otherwise it is a deadlock, reported with what waits.

mod counters;
mod deferred;
mod fifo;
mod jit;
mod known;
mod machine;
mod ops;
mod prefetch;
mod prepare;
mod serves;
mod sram;
mod timers;

pub use prepare::{Prepared, prepare};
pub use serves::Fed;

use crate::check::CheckError;
use crate::stats::Stats;
use crate::trace::Trace;
use crate::{Pe, Program};
use std::collections::BTreeMap;

/// Values for host input streams, by name (overriding the program's defaults).
pub type Inputs = BTreeMap<String, Vec<f32>>;

/// A cycle per wavelet of each host stream, by stream name: when its
/// wavelets may or did enter or leave the grid ([`Arrivals`],
/// [`Departures`], [`RunResult::input_times`], [`RunResult::output_times`]).
pub type Cycles = BTreeMap<String, Vec<u64>>;

/// When each wavelet of a host input stream reaches the grid's edge, by
/// stream name: one cycle per wavelet ([`HostStream::wavelets`]). A
/// wavelet enters no earlier than its cycle, nor than the stream's
/// period after the one before it (the host sends in order). How a
/// stage fed by another stage's output is run where the two overlap.
///
/// [`HostStream::wavelets`]: crate::program::HostStream::wavelets
pub type Arrivals = Cycles;

/// The first cycle each wavelet of a host output stream may leave the
/// grid, by stream name: one cycle per wavelet. Until then its exit
/// router holds it (its buffer fills, and the PEs behind it stall as
/// they would behind a full buffer); without an entry it leaves as soon
/// as it is ready. How a stage is held back by the consumer it feeds
/// where the two overlap: the consumer's edge takes a wavelet only as
/// its buffer has room ([`RunResult::input_times`] of the consumer's
/// run).
pub type Departures = Cycles;

/// Every PE's SRAM (row-major over the program rectangle; `None` where no
/// code runs), as a run leaves it: [`RunResult::memory`].
pub type Memory = Vec<Option<Vec<u8>>>;

/// How the machine is stepped. Both follow the semantics above exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// Every router and core, every cycle: obviously the semantics.
    Reference,
    /// The event-driven interpreter: only the routers with something
    /// buffered and the cores with something to do are stepped, so idle
    /// PEs and links cost nothing. Same outputs, cycles, statistics and
    /// SRAM as `Reference` (tested on every example and by property tests
    /// over generated kernels). A core also runs ahead through work only it
    /// can see (a vector op on memory, a run of scalar instructions) in one
    /// jump, and sleeps through stalls.
    Interp,
    /// The event-driven engine with PE code compiled to native code by
    /// Cranelift (scalar instruction runs and vector ops on memory); the
    /// interpreter runs what the JIT does not cover (fabric operands, task
    /// control) and timing-only mode. Same results as `Interp`. The default.
    #[default]
    Jit,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Reference => "reference",
            Engine::Interp => "interp",
            Engine::Jit => "jit",
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Give up (with an error naming what is still running) after this many cycles.
    pub max_cycles: u64,
    /// Record task and vector-op spans.
    pub trace: bool,
    /// Stop recording spans after this many (the trace notes how many it dropped).
    pub max_trace_spans: usize,
    /// Set from outside (Ctrl-C) to stop the run at the next check (every
    /// 1024 cycles) with [`RunError::Interrupted`].
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    pub engine: Engine,
    /// Timing-only mode: the same cycles, stalls and wavelets, but no
    /// arithmetic and no stored SRAM (weights are never materialised).
    /// Only copies of known values (host inputs, immediates, loop
    /// counters) stay known; a branch, vector length or address that
    /// depends on an unknown value stops the run with
    /// [`RunError::DataDependent`] rather than guessing. Host outputs are
    /// NaN where unknown, and a NaN host input is taken as unknown.
    /// Cycles equal a functional run's for every program it completes.
    pub timing_only: bool,
    /// Worker threads for the event-driven engines. Without a trace, a
    /// grid of at least [`RunConfig::band_min_pes`] PEs is stepped in
    /// bands of PEs on them, each cycle in two phases (`machine/band.rs`);
    /// otherwise (and on the JIT engine while a trace is recorded) only
    /// the compiled work of cores that run ahead in the same cycle is
    /// spread over them, each item touching only its own core. Either
    /// way results and cycles do not depend on the count. 1: all on the
    /// calling thread.
    pub threads: usize,
    /// Deferred work (elements plus instructions) in a cycle below which it
    /// stays on the calling thread: handing little work to other threads
    /// costs more than it saves. Tests set 0 to exercise the threads.
    pub min_parallel_work: u64,
    /// With more than one thread, the event-driven engines step a grid of
    /// at least this many PEs in bands on the threads (without a trace):
    /// see `machine/band.rs`. Tests set 0 to band every grid.
    pub band_min_pes: usize,
    /// When host input wavelets arrive ([`Arrivals`]); streams not named,
    /// and every stream without this, are there from cycle 0.
    pub arrivals: Option<std::sync::Arc<Arrivals>>,
    /// When host output wavelets may leave ([`Departures`]); streams not
    /// named, and every stream without this, leave when ready.
    pub departures: Option<std::sync::Arc<Departures>>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            max_cycles: 100_000_000,
            trace: false,
            max_trace_spans: 1_000_000,
            cancel: None,
            engine: Engine::Jit,
            timing_only: false,
            threads: 1,
            min_parallel_work: 65_536,
            band_min_pes: 4096,
            arrivals: None,
            departures: None,
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub cycles: u64,
    /// Host output streams, by name, in the stream's element order.
    pub outputs: BTreeMap<String, Vec<f32>>,
    /// Per host input stream, the cycle each of its wavelets entered the
    /// grid (pushed into its entry router's buffer): no earlier than its
    /// arrival ([`RunConfig::arrivals`]), and later where the buffer was
    /// full or the one before it had just entered.
    pub input_times: Cycles,
    /// Per host output stream, the cycle each of its wavelets left the
    /// grid (its exit router moved it off the edge; it is a hop's latency
    /// later at the next router): when a consumer beside it could have it,
    /// and no earlier than its departure ([`RunConfig::departures`]).
    pub output_times: Cycles,
    pub stats: Stats,
    pub trace: Option<Trace>,
    /// Final SRAM per PE (row-major; `None` where no code runs), each the
    /// bytes its code lays out.
    pub memory: Memory,
    width: u32,
}

/// A buffer's contents in its own type: integers stay integers (an i32
/// above 2^24 has no exact f32).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Values {
    Float(Vec<f32>),
    Int(Vec<i32>),
}

impl RunResult {
    /// Final contents of buffer `name` at `pe`, exactly: i32 and i8 buffers as
    /// integers, float buffers widened to f32 (which holds f16 and bf16).
    pub fn read_values(&self, p: &Program, pe: Pe, name: &str) -> Option<Values> {
        let code = p.code_at(pe)?;
        let b = &code.buffers[code.buffer(name)?];
        let sram = self
            .memory
            .get((pe.y * self.width + pe.x) as usize)?
            .as_ref()?;
        let bits = (0..b.len).map(|i| sram::read_bits(sram, b.offset, b.dtype, i));
        Some(match b.dtype {
            crate::DType::I32 => Values::Int(bits.map(|v| v as i32).collect()),
            crate::DType::I8 => Values::Int(bits.map(|v| v as u8 as i8 as i32).collect()),
            dt => Values::Float(bits.map(|v| dt.decode(v)).collect()),
        })
    }

    /// Final contents of buffer `name` at `pe`, widened to f32.
    pub fn read_buffer(&self, p: &Program, pe: Pe, name: &str) -> Option<Vec<f32>> {
        let code = p.code_at(pe)?;
        let b = &code.buffers[code.buffer(name)?];
        let sram = self
            .memory
            .get((pe.y * self.width + pe.x) as usize)?
            .as_ref()?;
        Some(
            (0..b.len)
                .map(|i| sram::read_elem(sram, b.offset, b.dtype, i))
                .collect(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error("host input `{name}`: {message}")]
    Input { name: String, message: String },
    #[error(
        "{pe} (code `{code}`, task `{task}`), instruction {pc} `{inst}`: {what} depends on a value timing-only mode does not compute (it came from memory or the fabric); run without --timing-only to know its timing"
    )]
    DataDependent {
        pe: Pe,
        code: String,
        task: String,
        pc: u32,
        inst: String,
        what: String,
    },
    #[error("interrupted at cycle {cycle}")]
    Interrupted { cycle: u64 },
    #[error("cannot resume from the saved SRAM: {0}")]
    Memory(String),
    #[error("deadlock at cycle {cycle}: nothing can make progress.\n{}", .waiting.join("\n"))]
    Deadlock { cycle: u64, waiting: Vec<String> },
    #[error("cycle limit of {limit} reached (raise it with --max-cycles); still active:\n{}", .active.join("\n"))]
    CycleLimit { limit: u64, active: Vec<String> },
    #[error("{pe} (code `{code}`, task `{task}`), instruction {pc} `{inst}`: {message}")]
    Fault {
        pe: Pe,
        code: String,
        task: String,
        pc: u32,
        inst: String,
        message: String,
    },
    #[error(
        "host output `{name}` received more than its {len} elements; check the routes into {pe}"
    )]
    OutputOverflow { name: String, len: u32, pe: Pe },
    #[error(
        "functional emulation keeps every PE's SRAM image: {pes} PEs with code lay out {gib:.1} GiB, over its {limit_gib} GiB limit; run a smaller program, --grid, or --timing-only"
    )]
    TooBig { pes: u64, gib: f64, limit_gib: u64 },
}

/// Run `p` on `arch` with the engine `cfg` names: [`prepare`], then
/// [`Prepared::run`]. A caller running the same program again prepares it
/// once and keeps the [`Prepared`] (the JIT's compiled code lives there).
pub fn run(
    p: &Program,
    arch: &crate::Arch,
    inputs: &Inputs,
    cfg: &RunConfig,
) -> Result<RunResult, RunError> {
    // Prepared from `p` just now: no need to check it is the same program.
    machine::run(&prepare(p, arch)?, p, inputs, cfg, None)
}

/// Each PE's SRAM as `p` starts it (zeroed buffers under its data
/// images), built on `threads` workers: what [`run`] fills before the first
/// cycle. A caller that runs the same program many times keeps a copy and
/// passes a clone to [`run_resume`] instead of rebuilding it.
pub fn initial_memory(p: &Program, arch: &crate::Arch, threads: usize) -> Result<Memory, RunError> {
    Ok(sram::sram_images(p, prepare(p, arch)?.layout(), threads))
}

/// A copy of `memory` (a kept image to start a run from), made on
/// `threads` workers.
pub fn copy_memory(memory: &Memory, threads: usize) -> Memory {
    sram::copy_memory(memory, threads)
}

/// Run `p` again from the SRAM a previous run of the same program left
/// (weights, a KV cache): what a wafer keeps between invocations.
pub fn run_resume(
    p: &Program,
    arch: &crate::Arch,
    inputs: &Inputs,
    cfg: &RunConfig,
    memory: Memory,
) -> Result<RunResult, RunError> {
    machine::run(&prepare(p, arch)?, p, inputs, cfg, Some(memory))
}

/// Everything a timing-only run of program `p` on `inputs` depends
/// on: the program less its data images' values (timing-only runs
/// never store them; see [`RunConfig::timing_only`]), the known
/// values of the inputs given (NaN is unknown, whatever its bits) and
/// the defaults of those not given. Equal fingerprints give equal
/// timing-only results (cycles, outputs, statistics, trace), so a
/// caller may run one and reuse it for the others: the layers of a
/// model are the same programs with other weights.
pub fn timing_fingerprint(p: &Program, inputs: &Inputs) -> Vec<u8> {
    let data: Vec<(&crate::PeRect, &str)> =
        p.data.iter().map(|d| (&d.pes, d.buffer.as_str())).collect();
    let streams: Vec<_> = p
        .inputs
        .iter()
        .map(|s| {
            let given = inputs.get(&s.name).map(|v| {
                v.iter()
                    .map(|x| if x.is_nan() { u32::MAX } else { x.to_bits() })
                    .collect::<Vec<u32>>()
            });
            let default = given.is_none().then_some(&s.init);
            (
                &s.name, s.dtype, s.len, s.pe, s.port, s.color, s.period, default, given,
            )
        })
        .collect();
    // Names the program does not have make the run an error: keep them.
    let unknown: Vec<&String> = inputs
        .keys()
        .filter(|k| !p.inputs.iter().any(|s| &s.name == *k))
        .collect();
    postcard::to_allocvec(&(
        p.width,
        p.height,
        &p.codes,
        &p.placements,
        &p.routes,
        data,
        streams,
        unknown,
        &p.outputs,
    ))
    .expect("a program serialises")
}
