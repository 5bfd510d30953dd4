//! The machine every engine steps: its routers and cores, the run loop,
//! the datapath and the scalar interpreter, timing-only tracking and the
//! report. `Engine::Reference` steps every PE, router and link every
//! cycle; the event-driven engines only what is awake ([`super::timers`]),
//! the JIT engine with compiled work deferred ([`super::deferred`]). See
//! the module docs of [`crate::engine`] for the semantics they share.

mod ahead;
mod band;
mod build;
mod crew;
mod datapath;
mod event;
mod exec;
mod fabric;
mod report;

use super::Prepared;
use super::counters::{PeCounters, to_stats};
use super::deferred::{CompiledWork, Job, Work, pool, run_scalar};
use super::fifo::{FifoId, FifoKind, Fifos};
use super::jit;
use super::known::Known;
use super::ops::{Loc, Ops, VecOpState};
use super::sram::{
    elem_addr, elem_span, image_bytes, pack_bits, pack_wavelets, read_bits, read_elem, sram_images,
    unknown_bits, write_bits,
};
use super::timers::{Timers, Wake};
use super::{Inputs, RunConfig, RunError, RunResult};
use crate::Memory;
use crate::asm::inst_text;
use crate::check::Layout;
use crate::isa::{
    AluOp, Cond, ExecMode, FaluOp, FcmpOp, FunOp, Inst, IntSrc, Operand, VecInst, VecOp,
};
use crate::program::TaskKind;
use crate::stats::{STATS_VERSION, Stats};
use crate::trace::{Span, TRACE_VERSION, Trace};
use crate::{Arch, DType, Pe, PeCode, Port, PortSet, Program};
use std::collections::BTreeMap;

/// No index: a PE without code (the layout's), a core not to wake.
const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
enum Dest {
    None,
    Fifo(FifoId),
    Host(u32),
    /// A buffer another band of PEs owns ([`band`]): this band's link
    /// `i` into it (`Machine::bands`).
    Remote(u32),
}

struct RouteEntry {
    port: Port,
    outs: PortSet,
    /// Wavelets this entry moved since they were last counted into its
    /// PE's `wavelets_out` ([`Machine::count_moves`]), modulo 2^16. A
    /// step counts a move here, on the line it holds for the entry
    /// already, rather than in the PE's counters, a line it would
    /// otherwise load only for that (a pass-through router's PE has no
    /// core awake to have asked for it). It fits beside `port` and
    /// `outs`: the entry stays 48 bytes.
    moved: u16,
    fifo: FifoId,
    dests: [Dest; Port::COUNT],
}

const _: () = assert!(std::mem::size_of::<RouteEntry>() == 48);

/// A router: its route entries (a range of [`Routers::entries`]) and its
/// round robin.
#[repr(align(32))]
struct Router {
    /// Its entries are `entries[off..off + n]`.
    off: u32,
    n: u32,
    rr: usize,
    /// Which entries' buffers hold a wavelet (stored or in flight), bit
    /// `i` for entry `i`, kept by every push and pop: a step visits only
    /// those, the others would be skipped anyway. A router with more than
    /// [`Router::MASKED`] entries (more than 25 colors) has every bit set
    /// and is scanned whole.
    full: u128,
}

impl Router {
    const MASKED: usize = 128;

    fn masked(&self) -> bool {
        self.n as usize <= Router::MASKED
    }

    fn busy(&self) -> bool {
        self.full != 0
    }
}

/// Every PE's router, their route entries in one array (in PE order, so
/// neighbouring routers' entries are neighbours in memory too).
struct Routers {
    at: PeRows<Router>,
    entries: Vec<RouteEntry>,
}

impl Routers {
    /// Router `pe`'s route entries.
    fn entries(&self, pe: usize) -> &[RouteEntry] {
        let r = &self.at[pe];
        &self.entries[r.off as usize..(r.off + r.n) as usize]
    }
}

impl std::ops::Index<usize> for Routers {
    type Output = Router;
    fn index(&self, pe: usize) -> &Router {
        &self.at[pe]
    }
}

impl std::ops::IndexMut<usize> for Routers {
    fn index_mut(&mut self, pe: usize) -> &mut Router {
        &mut self.at[pe]
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Main {
    Idle,
    Switching { task: u8, left: u32 },
    Running { task: u8, pc: u32 },
    WaitSync { task: u8, pc: u32 },
}

/// In C layout, the fields a step reads first (the thread's state, the
/// ops' mask and the synchronous op) at the front: a step of a core on a
/// wafer-sized grid starts with cache misses on its core, and these then
/// share the first lines.
#[repr(C)]
pub(super) struct Core {
    main: Main,
    /// Event mode: the cycle it next steps at after a jump (see
    /// [`Machine::jump`]); before it the core is asleep whatever wakes it.
    resume: u64,
    /// Event mode: asleep while stalled since this cycle, and which stall
    /// counters each of those cycles adds to ([`STALLED`] set while asleep).
    stalled: (u64, u8),
    /// Timing-only mode: which integer and float registers are known.
    rk: u16,
    fk: u16,
    code: usize,
    rr: usize,
    /// The bytes the code lays out (empty in timing-only mode). Its
    /// pointer is read ahead of a step, to ask for the next element an op
    /// reads there (`Machine::prefetch_dependents`).
    pub(super) sram: Vec<u8>,
    ops: Ops,
    task_started: u64,
    pub(super) r: [i32; 16],
    pub(super) f: [f32; 16],
    /// Input-queue fifo per color (none where the code does not receive it).
    queue: Vec<FifoId>,
    /// Router ramp buffer per color (none where the code does not send it).
    ramp_up: Vec<FifoId>,
    active: TaskSet,
    blocked: TaskSet,
    /// Timing-only mode: the elements whose value is known, by byte
    /// address (the buffer's encoding); everything else is unknown.
    known: Known,
}

/// A set of a core's tasks (a task id is a `u8`), kept in the core: a
/// step picking a task reads it without following a pointer, and a
/// wafer's cores are built without two allocations each.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct TaskSet([u64; 4]);

impl TaskSet {
    fn has(&self, t: usize) -> bool {
        self.0[t / 64] >> (t % 64) & 1 != 0
    }

    fn set(&mut self, t: usize, on: bool) {
        let bit = 1u64 << (t % 64);
        if on {
            self.0[t / 64] |= bit;
        } else {
            self.0[t / 64] &= !bit;
        }
    }
}

impl FromIterator<bool> for TaskSet {
    /// Task `i` is in the set where the `i`th item is true.
    fn from_iter<I: IntoIterator<Item = bool>>(items: I) -> TaskSet {
        let mut s = TaskSet::default();
        for (t, on) in items.into_iter().enumerate() {
            s.set(t, on);
        }
        s
    }
}

/// Per-PE rows (routers, cores, counters) of the PEs `lo..lo + len`,
/// indexed by the PE's index in the whole grid: a machine steps either
/// the whole grid (`lo` = 0) or one band of it ([`band`]).
struct PeRows<T> {
    lo: usize,
    v: Vec<T>,
}

impl<T> PeRows<T> {
    /// The PEs these rows cover.
    fn pes(&self) -> std::ops::Range<usize> {
        self.lo..self.lo + self.v.len()
    }

    /// Each row with its PE.
    fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        let lo = self.lo;
        self.v.iter().enumerate().map(move |(i, t)| (lo + i, t))
    }

    /// `next`'s rows, which start where these end, appended.
    fn append(&mut self, mut next: PeRows<T>) {
        debug_assert_eq!(next.lo, self.lo + self.v.len(), "bands join in order");
        self.v.append(&mut next.v);
    }
}

impl Machine<'_> {
    /// Every route entry's uncounted moves added to its PE's
    /// `wavelets_out`, a count for each port the entry sends out of (as a
    /// move counts one per copy), and the entries' counts cleared. A run
    /// calls it before its counters leave the machine.
    fn count_moves(&mut self) {
        let Routers { at, entries } = &mut self.routers;
        for (pe, r) in at.iter() {
            let out = &mut self.stats[pe].wavelets_out;
            for e in &mut entries[r.off as usize..(r.off + r.n) as usize] {
                for o in e.outs.iter() {
                    out[o.index()] += e.moved as u64;
                }
                e.moved = 0;
            }
        }
    }
}

impl<T> std::ops::Index<usize> for PeRows<T> {
    type Output = T;
    fn index(&self, pe: usize) -> &T {
        &self.v[pe - self.lo]
    }
}

impl<T> std::ops::IndexMut<usize> for PeRows<T> {
    fn index_mut(&mut self, pe: usize) -> &mut T {
        &mut self.v[pe - self.lo]
    }
}

/// The cores by PE index, `None` where no code runs. Only a PE with code
/// is ever stepped, woken or reported on as a core, so [`Cores::at`] and
/// [`Cores::at_mut`] are for PEs known to have one.
type Cores = PeRows<Option<Core>>;

impl Cores {
    fn at(&self, pe: usize) -> &Core {
        self[pe]
            .as_ref()
            .expect("only a PE with code is stepped as a core")
    }

    fn at_mut(&mut self, pe: usize) -> &mut Core {
        self[pe]
            .as_mut()
            .expect("only a PE with code is stepped as a core")
    }

    /// Every core, taken out of the machine (which then has none) for a
    /// step that needs one core and the rest of the machine at once: a
    /// vector op is stepped where it lies in its core rather than moved
    /// out and back (160 bytes each way, every cycle of every op). Only
    /// the datapath's element loop runs detached; it reaches the core
    /// through the [`CoreData`] it is given.
    fn detach(&mut self) -> Cores {
        PeRows {
            lo: self.lo,
            v: std::mem::take(&mut self.v),
        }
    }

    fn attach(&mut self, cores: Cores) {
        debug_assert!(self.v.is_empty(), "cores attached twice");
        *self = cores;
    }
}

/// What a vector op's elements read and write in their core besides the
/// op: its SRAM, float registers and (timing-only) what is known.
pub(super) struct CoreData<'c> {
    pub(super) sram: &'c mut Vec<u8>,
    pub(super) r: &'c mut [i32; 16],
    pub(super) f: &'c mut [f32; 16],
    pub(super) fk: &'c mut u16,
    pub(super) known: &'c mut Known,
}

impl Core {
    /// The op in `slot` (live) and, apart from it, the data its elements
    /// touch.
    fn op_and_data(&mut self, slot: usize) -> (&mut VecOpState, CoreData<'_>) {
        let op = self.ops.get_mut(slot).expect("a live slot");
        let data = CoreData {
            sram: &mut self.sram,
            r: &mut self.r,
            f: &mut self.f,
            fk: &mut self.fk,
            known: &mut self.known,
        };
        (op, data)
    }
}

struct HostIn {
    /// Its index among the program's inputs.
    stream: usize,
    wavelets: Vec<u32>,
    next: usize,
    /// The first cycle the next wavelet may enter: the link's period
    /// after the last one, and not before its arrival, if it has one.
    next_time: u64,
    fifo: FifoId,
    period: u32,
    /// Per wavelet, the cycle it reaches the host link ([`RunConfig::arrivals`];
    /// empty: every wavelet is there from cycle 0).
    arrivals: Vec<u64>,
    /// The cycle each wavelet entered the grid ([`RunResult::input_times`]).
    times: Vec<u64>,
}

impl HostIn {
    /// The first cycle wavelet `next` may enter, `after` the one before.
    fn due(&self, after: u64) -> u64 {
        self.arrivals
            .get(self.next)
            .map_or(after, |a| after.max(*a))
    }
}

struct HostOut {
    /// Its index among the program's outputs.
    stream: usize,
    dtype: DType,
    len: u32,
    values: Vec<f32>,
    /// The cycle each wavelet left the grid ([`RunResult::output_times`]).
    times: Vec<u64>,
    /// Per wavelet, the first cycle it may leave ([`RunConfig::departures`];
    /// empty: each leaves when ready).
    departures: Vec<u64>,
}

impl HostOut {
    /// Whether the link past the edge takes the next wavelet at `now`.
    fn has_room(&self, now: u64) -> bool {
        self.departures
            .get(self.times.len())
            .is_none_or(|d| now >= *d)
    }
}

struct Machine<'p> {
    p: &'p Program,
    arch: &'p Arch,
    layout: &'p Layout,
    now: u64,
    fifos: Fifos,
    routers: Routers,
    cores: Cores,
    host_in: Vec<HostIn>,
    host_out: Vec<HostOut>,
    /// Each PE's counters, a row per PE.
    stats: PeRows<PeCounters>,
    /// The trace's spans, when one is recorded.
    log: SpanLog,
    /// Something happened this cycle.
    activity: bool,
    /// The latest cycle at which a wavelet in flight becomes visible.
    horizon: u64,
    /// Event mode: only routers and cores that can do something are
    /// stepped (see [`Wake`]).
    wake: Option<Wake>,
    /// Timing-only mode (see [`super::RunConfig::timing_only`]).
    timing: bool,
    /// The run stops here ([`super::RunConfig::max_cycles`]): no core is
    /// run ahead into it or past it.
    max_cycles: u64,
    engine: super::Engine,
    /// The JIT engine's compiled code and the work deferred to it.
    compiled: CompiledWork,
    /// Stepped as one band of several ([`band`]): its links into the
    /// other bands' buffers and what crossed them this cycle.
    bands: band::Links,
}

/// The trace's spans as a run records them: at most `max`, counting the
/// rest as dropped.
struct SpanLog {
    on: bool,
    max: usize,
    spans: Vec<Span>,
    dropped: u64,
}

/// What [`Machine::jump`] did.
enum Jumped {
    No,
    /// Ran ahead: the core steps next at this cycle.
    Until(u64),
    /// Left compiled work in `CompiledWork::work`.
    Deferred,
}

const STALLED: u8 = 1 << 7;
/// What a vector op waits on when the fabric holds it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// An input queue is empty.
    Input,
    /// Its ramp buffer to the router is full.
    Output,
}

const STALL_IN: u8 = 1;
const STALL_OUT: u8 = 2;
const STALL_ISSUE: u8 = 4;

/// Run `p`, which `prep` has checked and laid out.
pub(crate) fn run(
    prep: &Prepared,
    p: &Program,
    inputs: &Inputs,
    cfg: &RunConfig,
    memory: Option<Memory>,
) -> Result<RunResult, RunError> {
    let layout = prep.layout();
    for name in inputs.keys() {
        if !p.inputs.iter().any(|s| &s.name == name) {
            let known: Vec<_> = p.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(RunError::Input {
                name: name.clone(),
                message: format!(
                    "the program has no such input (it has: {})",
                    known.join(", ")
                ),
            });
        }
    }
    // Functional emulation stores each PE's SRAM (the bytes its code lays
    // out); refuse up front what would not fit rather than fail half way
    // through allocating it.
    const LIMIT_GIB: u64 = 8;
    let bytes = image_bytes(p, layout);
    if !cfg.timing_only && bytes > LIMIT_GIB << 30 {
        return Err(RunError::TooBig {
            pes: layout.code_of.iter().filter(|c| **c != NONE).count() as u64,
            gib: bytes as f64 / (1u64 << 30) as f64,
            limit_gib: LIMIT_GIB,
        });
    }
    let pool = match cfg.threads {
        0 | 1 => None,
        n => Some(pool(n).map_err(|message| RunError::Input {
            name: "--threads".into(),
            message,
        })?),
    };
    let pool = match (pool, band::banded(layout, cfg)) {
        (Some(pool), true) => pool,
        (pool, _) => {
            // Stepped whole: built and stepped on this thread, a pool
            // sharing only the JIT's deferred work. Handing a small
            // grid's build and loop to a worker and back cost more than
            // it ran.
            let plan = build::FifoPlan::new(p, layout, false);
            let split = build::Split::Whole(pool.as_ref());
            let mut ms = Machine::build(prep, p, inputs, cfg, memory, &plan, split)?;
            return run_whole(ms.pop().expect("one machine"), cfg);
        }
    };
    // On the pool: a machine's bands are built side by side, then
    // stepped, each phase's tasks started from a worker.
    pool.install(|| {
        let plan = build::FifoPlan::new(p, layout, true);
        let cuts = band::cuts(&plan, layout, cfg);
        let split = match cuts.as_deref() {
            Some(cuts) => build::Split::Bands(cuts),
            None => build::Split::Whole(Some(&pool)),
        };
        let mut ms = Machine::build(prep, p, inputs, cfg, memory, &plan, split)?;
        match cuts {
            Some(_) => band::run(ms, cfg),
            None => run_whole(ms.pop().expect("one machine"), cfg),
        }
    })
}

/// Whether the run was cancelled from outside (Ctrl-C), looked at every
/// 1024 stepped cycles (skipped ones are free), from the first.
fn interrupted(cfg: &RunConfig, iterations: u64) -> bool {
    iterations % 1024 == 1
        && cfg
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
}

/// The run loop of a machine stepped whole, on this thread.
fn run_whole(mut m: Machine<'_>, cfg: &RunConfig) -> Result<RunResult, RunError> {
    let mut iterations = 0u64;
    loop {
        if m.now >= cfg.max_cycles {
            return Err(RunError::CycleLimit {
                limit: cfg.max_cycles,
                active: m.waiting_report(),
            });
        }
        iterations += 1;
        if interrupted(cfg, iterations) {
            return Err(RunError::Interrupted { cycle: m.now });
        }
        m.activity = false;
        m.step_host();
        if m.wake.is_some() {
            m.step_awake()?;
        } else {
            for pe in m.routers.at.pes() {
                m.step_router(pe)?;
            }
            for pe in m.cores.pes() {
                if m.cores[pe].is_some() {
                    m.step_core(pe)?;
                }
            }
        }
        if !m.activity && m.now >= m.horizon {
            return m.finish();
        }
        m.now = m.next_cycle().min(cfg.max_cycles);
    }
}

impl<'p> Machine<'p> {
    pub(super) fn span(&mut self, pe: Pe, thread: u8, name: &str, start: u64) {
        if !self.log.on {
            return;
        }
        if self.log.spans.len() >= self.log.max {
            self.log.dropped += 1;
            return;
        }
        self.log.spans.push(Span {
            pe,
            thread,
            name: name.to_string(),
            start,
            end: self.now + 1,
        });
    }

    pub(super) fn fault(&self, pe: usize, task: u8, pc: u32, message: String) -> RunError {
        let core = self.cores.at(pe);
        let code = &self.p.codes[core.code];
        RunError::Fault {
            pe: self.layout.pe_at(pe),
            code: code.name.clone(),
            task: code
                .tasks
                .get(task as usize)
                .map_or("?".into(), |t| t.name.clone()),
            pc,
            inst: inst_text(code, &code.insts[pc as usize]),
            message,
        }
    }
}
