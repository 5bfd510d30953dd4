//! The machine every engine steps: its routers and cores, the run loop,
//! the datapath and the scalar interpreter, timing-only tracking and the
//! report. `Engine::Reference` steps every PE, router and link every
//! cycle; the event-driven engines only what is awake ([`super::timers`]),
//! the JIT engine with compiled work deferred ([`super::deferred`]). See
//! the module docs of [`crate::engine`] for the semantics they share.

use super::Prepared;
use super::deferred::{Job, Work, pool, run_scalar};
use super::fifo::{FifoKind, Fifos, NONE};
use super::jit;
use super::known::Known;
use super::ops::{Loc, Ops, VecOpState};
use super::sram::{
    elem_addr, pack_bits, pack_wavelets, read_bits, read_elem, sram_images, unknown_bits,
    write_bits,
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
use crate::stats::{PeStats, STATS_VERSION, Stats};
use crate::trace::{Span, TRACE_VERSION, Trace};
use crate::{Arch, DType, Pe, PeCode, Port, PortSet, Program};
use std::collections::BTreeMap;

#[derive(Clone, Copy)]
enum Dest {
    None,
    Fifo(u32),
    Host(u32),
}

struct RouteEntry {
    port: Port,
    outs: PortSet,
    fifo: u32,
    dests: [Dest; Port::COUNT],
}

struct Router {
    entries: Vec<RouteEntry>,
    rr: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Main {
    Idle,
    Switching { task: u8, left: u32 },
    Running { task: u8, pc: u32 },
    WaitSync { task: u8, pc: u32 },
}

pub(super) struct Core {
    code: usize,
    /// The bytes the code lays out (empty in timing-only mode).
    pub(super) sram: Vec<u8>,
    /// Timing-only mode: the elements whose value is known, by byte
    /// address (the buffer's encoding); everything else is unknown.
    known: Known,
    /// Timing-only mode: which integer and float registers are known.
    rk: u16,
    fk: u16,
    pub(super) r: [i32; 16],
    pub(super) f: [f32; 16],
    active: Vec<bool>,
    blocked: Vec<bool>,
    main: Main,
    task_started: u64,
    ops: Ops,
    rr: usize,
    /// Input-queue fifo per color (NONE where the code does not receive it).
    queue: Vec<u32>,
    /// Router ramp buffer per color (NONE where the code does not send it).
    ramp_up: Vec<u32>,
}

struct HostIn {
    wavelets: Vec<u32>,
    next: usize,
    next_time: u64,
    fifo: u32,
    period: u32,
}

struct HostOut {
    dtype: DType,
    len: u32,
    values: Vec<f32>,
}

struct Machine<'p> {
    p: &'p Program,
    arch: &'p Arch,
    layout: &'p Layout,
    now: u64,
    fifos: Fifos,
    routers: Vec<Router>,
    cores: Vec<Option<Core>>,
    host_in: Vec<HostIn>,
    host_out: Vec<HostOut>,
    stats: PeStats,
    spans: Vec<Span>,
    trace: bool,
    max_spans: usize,
    dropped: u64,
    /// Something happened this cycle.
    activity: bool,
    /// The latest cycle at which a wavelet in flight becomes visible.
    horizon: u64,
    /// Event mode: only routers and cores that can do something are
    /// stepped (see [`Wake`]).
    wake: Option<Wake>,
    /// Timing-only mode (see [`super::RunConfig::timing_only`]).
    timing: bool,
    /// The JIT engine's compiled code (functional runs only).
    jit: Option<std::sync::Arc<jit::Compiled>>,
    engine: super::Engine,
    /// Compiled work deferred to the end of this cycle (see
    /// [`Machine::finish_work`]), and whether element loops are deferred.
    work: Vec<Work>,
    defer: bool,
    /// Worker threads for the deferred work (`None`: this thread).
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    min_parallel_work: u64,
    /// Per code: deferred scalar runs and the instructions they ran.
    scalar_runs: Vec<(u64, u64)>,
}

/// What [`Machine::jump`] did.
enum Jumped {
    No,
    /// Ran ahead: the core steps next at this cycle.
    Until(u64),
    /// Left compiled work in [`Machine::work`].
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
    let (arch, layout) = (prep.arch(), prep.layout());
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
    // Functional emulation stores each PE's SRAM; refuse up front what would
    // not fit rather than fail half way through allocating it.
    const LIMIT_GIB: u64 = 8;
    let pes = layout.code_of.iter().filter(|c| **c != NONE).count() as u64;
    let bytes = pes * arch.sram_bytes as u64;
    if !cfg.timing_only && bytes > LIMIT_GIB << 30 {
        return Err(RunError::TooBig {
            pes,
            sram: arch.sram_bytes,
            gib: bytes as f64 / (1u64 << 30) as f64,
            limit_gib: LIMIT_GIB,
        });
    }
    let mut m = Machine::new(prep, p, inputs, cfg, memory)?;
    let mut iterations = 0u64;
    loop {
        if m.now >= cfg.max_cycles {
            return Err(RunError::CycleLimit {
                limit: cfg.max_cycles,
                active: m.waiting_report(),
            });
        }
        iterations += 1;
        // Every 1024 stepped cycles (skipped ones are free), from the first.
        if iterations % 1024 == 1
            && cfg
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Err(RunError::Interrupted { cycle: m.now });
        }
        m.activity = false;
        m.step_host();
        if m.wake.is_some() {
            m.step_awake()?;
        } else {
            for pe in 0..m.routers.len() {
                m.step_router(pe)?;
            }
            for pe in 0..m.cores.len() {
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
    fn new(
        prep: &'p Prepared,
        p: &'p Program,
        inputs: &Inputs,
        cfg: &RunConfig,
        memory: Option<Memory>,
    ) -> Result<Machine<'p>, RunError> {
        let (arch, layout) = (prep.arch(), prep.layout());
        let n = layout.code_of.len();
        let mut memory = match memory {
            Some(m) if m.len() != n => {
                return Err(RunError::Memory(format!(
                    "the saved SRAM holds {} PEs, the program {}x{} has {n}",
                    m.len(),
                    p.width,
                    p.height
                )));
            }
            Some(m) => Some(m),
            None => None,
        };
        if memory.is_none() && !cfg.timing_only {
            memory = Some(sram_images(p, layout, cfg.threads));
        }
        let colors = layout.colors as usize;
        let mut fifos = Fifos::new();
        // Router buffers for every (PE, input port, color) a route uses.
        let mut rbuf = vec![NONE; n * colors * Port::COUNT];
        for pe in 0..n {
            for c in 0..colors {
                for port in Port::ALL {
                    if !layout.route(pe, c as u8, port).is_empty() {
                        let latency = if port == Port::Ramp {
                            arch.ramp_latency
                        } else {
                            arch.hop_latency
                        };
                        rbuf[(pe * colors + c) * Port::COUNT + port.index()] = fifos.add(
                            arch.router_buffer_depth + latency,
                            FifoKind::Router {
                                pe: layout.pe_at(pe),
                                port,
                                color: c as u8,
                            },
                        );
                    }
                }
            }
        }
        let mut stats = PeStats::zeroed(n);
        let mut cores = Vec::with_capacity(n);
        for pe in 0..n {
            let Some(code) = layout.code(p, pe) else {
                cores.push(None);
                continue;
            };
            let at = layout.pe_at(pe);
            let ci = layout.code_of[pe] as usize;
            // Only the bytes the code lays out are kept: every access is
            // checked against its buffer, so nothing reads past them.
            let used = code.sram_bytes().next_multiple_of(4) as usize;
            let sram = match memory.as_mut().and_then(|m| m[pe].take()) {
                _ if cfg.timing_only => Vec::new(),
                Some(saved) if saved.len() == used => saved,
                Some(saved) => {
                    return Err(RunError::Memory(format!(
                        "the saved SRAM of {at} holds {} bytes, its code `{}` lays out {used}",
                        saved.len(),
                        code.name
                    )));
                }
                None => {
                    return Err(RunError::Memory(format!(
                        "the saved SRAM has nothing for {at}, which runs code `{}`",
                        code.name
                    )));
                }
            };
            stats.sram_used[pe] = code.sram_bytes();
            let mut queue = vec![NONE; colors];
            for c in &layout.code_colors[ci].consumed {
                queue[c.0 as usize] = fifos.add(
                    arch.queue_depth + arch.ramp_latency,
                    FifoKind::Queue { pe: at, color: c.0 },
                );
            }
            let mut ramp_up = vec![NONE; colors];
            for c in &layout.code_colors[ci].produced {
                ramp_up[c.0 as usize] =
                    rbuf[(pe * colors + c.0 as usize) * Port::COUNT + Port::Ramp.index()];
            }
            cores.push(Some(Core {
                code: ci,
                sram,
                known: Known::default(),
                rk: u16::MAX,
                fk: u16::MAX,
                r: [0; 16],
                f: [0.0; 16],
                active: code.tasks.iter().map(|t| t.active).collect(),
                blocked: code.tasks.iter().map(|t| t.blocked).collect(),
                main: Main::Idle,
                task_started: 0,
                ops: Ops::new(arch.microthreads as usize + 1),
                rr: 0,
                queue,
                ramp_up,
            }));
        }
        let mut routers = Vec::with_capacity(n);
        for pe in 0..n {
            let at = layout.pe_at(pe);
            let mut entries = Vec::new();
            for c in 0..colors {
                for port in Port::ALL {
                    let outs = layout.route(pe, c as u8, port);
                    if outs.is_empty() {
                        continue;
                    }
                    let mut dests = [Dest::None; Port::COUNT];
                    for o in outs.iter() {
                        dests[o.index()] = if o == Port::Ramp {
                            let core = cores[pe]
                                .as_ref()
                                .expect("check: ramp delivery needs a receiving core");
                            Dest::Fifo(core.queue[c])
                        } else {
                            match at.neighbour(o, p.width, p.height) {
                                Some(nb) => Dest::Fifo(
                                    rbuf[(layout.pe_index(nb) * colors + c) * Port::COUNT
                                        + o.opposite().index()],
                                ),
                                None => {
                                    let h = p.outputs.iter().position(|h| {
                                        h.pe == at && h.port == o && h.color.0 as usize == c
                                    });
                                    Dest::Host(
                                        h.expect("check: off-grid routes need a host output")
                                            as u32,
                                    )
                                }
                            }
                        };
                    }
                    entries.push(RouteEntry {
                        port,
                        outs,
                        fifo: rbuf[(pe * colors + c) * Port::COUNT + port.index()],
                        dests,
                    });
                }
            }
            routers.push(Router { entries, rr: 0 });
        }
        let mut host_in = Vec::new();
        for s in &p.inputs {
            let values = match inputs.get(&s.name) {
                Some(v) if v.len() != s.len as usize => {
                    return Err(RunError::Input {
                        name: s.name.clone(),
                        message: format!("expects {} values, got {}", s.len, v.len()),
                    });
                }
                Some(v) => v.iter().map(|x| s.dtype.round(*x)).collect(),
                None => s.init.values(s.pe, s.len, s.dtype),
            };
            let fifo = rbuf[(layout.pe_index(s.pe) * colors + s.color.0 as usize) * Port::COUNT
                + s.port.index()];
            host_in.push(HostIn {
                wavelets: if cfg.timing_only {
                    pack_bits(
                        values.iter().map(|x| {
                            if x.is_nan() {
                                unknown_bits(s.dtype)
                            } else {
                                s.dtype.encode(*x)
                            }
                        }),
                        s.dtype,
                    )
                } else {
                    pack_wavelets(&values, s.dtype)
                },
                next: 0,
                next_time: 0,
                fifo,
                period: s.period,
            });
        }
        let host_out = p
            .outputs
            .iter()
            .map(|s| HostOut {
                dtype: s.dtype,
                len: s.len,
                values: Vec::with_capacity(s.len as usize),
            })
            .collect();
        Ok(Machine {
            p,
            arch,
            layout,
            now: 0,
            fifos,
            routers,
            cores,
            host_in,
            host_out,
            stats,
            spans: Vec::new(),
            trace: cfg.trace,
            max_spans: cfg.max_trace_spans,
            dropped: 0,
            activity: false,
            horizon: 0,
            wake: None,
            timing: cfg.timing_only,
            jit: None,
            engine: cfg.engine,
            work: Vec::new(),
            defer: false,
            pool: None,
            min_parallel_work: cfg.min_parallel_work,
            scalar_runs: vec![(0, 0); p.codes.len()],
        })
        .and_then(|mut m| {
            if cfg.engine != super::Engine::Reference {
                m.wake = Some(m.wake_all());
            }
            if cfg.engine == super::Engine::Jit && !cfg.timing_only {
                m.jit = Some(prep.jit()?);
                if cfg.threads > 1 {
                    m.pool = Some(pool(cfg.threads).map_err(|message| RunError::Input {
                        name: "--threads".into(),
                        message,
                    })?);
                }
            }
            Ok(m)
        })
    }

    /// The next cycle anything can happen in. Event mode skips the cycles in
    /// which nothing is awake: then only a timer (a core's jump, or a
    /// wavelet landing for a stalled core) or a host input's next wavelet
    /// can act; every other change comes from something awake.
    fn next_cycle(&self) -> u64 {
        let next = self.now + 1;
        let Some(w) = &self.wake else { return next };
        if !w.list.is_empty() || w.issue_sleepers > 0 {
            return next;
        }
        let mut at = w.timers.first().unwrap_or(u64::MAX);
        for h in &self.host_in {
            if h.next < h.wavelets.len() {
                at = at.min(h.next_time);
            }
        }
        if at == u64::MAX {
            // Nothing pending: the run ends (or deadlocks) at `horizon`.
            at = self.horizon;
        }
        at.max(next)
    }

    /// Event mode's start: every router with routes and every core awake.
    fn wake_all(&self) -> Wake {
        let n = self.routers.len();
        let idx = |pe: Pe| (pe.y * self.p.width + pe.x) as usize;
        let owner = self
            .fifos
            .what
            .iter()
            .map(|f| match *f {
                FifoKind::Router { pe, .. } => idx(pe) as u32,
                FifoKind::Queue { pe, .. } => (n + idx(pe)) as u32,
            })
            .collect();
        let mut pop_wakes = vec![NONE; self.fifos.len()];
        for (i, c) in self.cores.iter().enumerate() {
            for &f in c.iter().flat_map(|c| &c.ramp_up) {
                if f != NONE {
                    pop_wakes[f as usize] = (n + i) as u32;
                }
            }
        }
        let mut awake = vec![false; 2 * n];
        let mut list = Vec::new();
        for (i, r) in self.routers.iter().enumerate() {
            if !r.entries.is_empty() {
                awake[i] = true;
                list.push(i as u32);
            }
        }
        for (i, c) in self.cores.iter().enumerate() {
            if c.is_some() {
                awake[n + i] = true;
                list.push((n + i) as u32);
            }
        }
        Wake {
            owner,
            awake,
            list,
            woken: Vec::new(),
            spare: Vec::new(),
            n,
            resume: vec![0; n],
            timers: Timers::new(),
            faults: BTreeMap::new(),
            stalled: vec![(0, 0); n],
            issue_sleepers: 0,
            pop_wakes,
        }
    }

    fn push(&mut self, fifo: u32, delay: u32, bits: u32) {
        let ready = self.now + delay as u64;
        self.fifos.push(fifo, ready, bits);
        self.horizon = self.horizon.max(ready);
        self.activity = true;
        if let Some(w) = self.wake.as_mut() {
            let o = w.owner[fifo as usize];
            if !w.awake[o as usize] {
                w.awake[o as usize] = true;
                w.woken.push(o);
            }
        }
    }

    /// Event mode's cycle: the awake routers, then the awake cores (the
    /// same phases as the reference order); those with nothing left to do
    /// fall asleep, those woken this cycle join from the next.
    fn step_awake(&mut self) -> Result<(), RunError> {
        let now = self.now;
        let w = self.wake.as_mut().expect("event mode");
        let mut list = std::mem::take(&mut w.list);
        for i in w.timers.due(now) {
            if !w.awake[i as usize] {
                w.awake[i as usize] = true;
                list.push(i);
            }
        }
        let n = w.n;
        if w.issue_sleepers > 0 {
            self.activity = true;
        }
        let mut keep = std::mem::take(&mut w.spare);
        // In index order: neighbouring PEs' state shares cache lines and
        // the hardware prefetches ahead; on a large grid a step is bound by
        // memory latency, not by the work it does.
        list.sort_unstable();
        // Any order gives the same result: nothing pushed this cycle is
        // visible this cycle (the invariant in engine/mod.rs).
        for &i in &list {
            let i = i as usize;
            let busy = if i < n {
                self.step_router(i)?;
                self.routers[i]
                    .entries
                    .iter()
                    .any(|e| !self.fifos.is_empty(e.fifo))
            } else {
                let pe = i - n;
                let w = self.wake.as_mut().expect("event mode");
                if w.resume[pe] > now {
                    // Mid-jump: its timer steps it again.
                    false
                } else if let Some(e) = w.faults.remove(&pe) {
                    return Err(e);
                } else {
                    let (since, flags) = std::mem::take(&mut w.stalled[pe]);
                    if flags & STALLED != 0 {
                        let k = now - since;
                        if flags & STALL_IN != 0 {
                            self.stats.stall_in_cycles[pe] += k;
                        }
                        if flags & STALL_OUT != 0 {
                            self.stats.stall_out_cycles[pe] += k;
                        }
                        if flags & STALL_ISSUE != 0 {
                            self.stats.stall_issue_cycles[pe] += k;
                            w.issue_sleepers -= 1;
                        }
                    }
                    self.step_core(pe)?;
                    match self.jump(pe) {
                        Jumped::Until(t) => {
                            self.sleep_until(pe, t);
                            false
                        }
                        // Asleep until `finish_work` knows when it wakes.
                        Jumped::Deferred => false,
                        Jumped::No => self.core_busy(pe) && !self.stall_sleep(pe),
                    }
                }
            };
            if busy {
                keep.push(i as u32);
            } else {
                self.wake.as_mut().expect("event mode").awake[i] = false;
            }
        }
        self.finish_work();
        let w = self.wake.as_mut().expect("event mode");
        // The woken were asleep, so none is in `keep` already.
        keep.append(&mut w.woken);
        list.clear();
        w.spare = list;
        w.list = keep;
        Ok(())
    }

    /// Core `pe` jumped: it sleeps until cycle `t`.
    fn sleep_until(&mut self, pe: usize, t: u64) {
        let w = self.wake.as_mut().expect("event mode");
        w.resume[pe] = t;
        w.timers.push(t, (w.n + pe) as u32);
        self.horizon = self.horizon.max(t);
    }

    /// Event mode, after core `pe`'s step at `now`: run ahead through the
    /// cycles in which it can only do local work, applying their effects
    /// now; the core is next stepped at the returned cycle. Two cases:
    /// a synchronous vector op on memory and registers (the main thread
    /// waits, no microthread runs), up to the cycle it finishes in; and
    /// scalar instructions with no op in flight, up to the next vector op
    /// or `end`. Nothing outside the core can see or change that work: it
    /// touches only this core's SRAM and registers, and wavelets arriving
    /// meanwhile are only looked at by an idle main thread or a fabric
    /// operand. So results, cycles and statistics are the reference's.
    fn jump(&mut self, pe: usize) -> Jumped {
        let now = self.now;
        let core = self.cores[pe].as_ref().unwrap();
        match core.main {
            Main::WaitSync { .. } => {
                if core.ops.live & !1 != 0 {
                    return Jumped::No;
                }
                let Some(op) = core.ops.get(0) else {
                    return Jumped::No;
                };
                let local = |l: &Loc| !matches!(l, Loc::In { .. } | Loc::Out { .. });
                if !local(&op.dst) || !op.srcs.iter().all(local) {
                    return Jumped::No;
                }
                // The cycles before the one that finishes the op, as
                // `step_datapath` and `run_op` would count them: from its
                // start, each cycle adds `num` to the accumulator and takes
                // out whole `den`s as elements, so after `c` cycles
                // `(acc + c·num) / den` more are done (the clamp in
                // `run_op` only acts in the finishing cycle). The op
                // finishes in cycle `c*`, the first whose total reaches the
                // elements left; the jump covers the `c* - 1` before it.
                let (num, den) = (op.num as u64, op.den as u64);
                let left = (op.n - op.done) as u64;
                let need = (left * den).saturating_sub(op.acc as u64);
                let finishing = need.div_ceil(num).max(1);
                let busy = finishing - 1;
                let total = op.acc as u64 + busy * num;
                let (done, acc) = (op.done + (total / den) as u32, (total % den) as u32);
                let t = (now + 1).max(op.start_at) + busy;
                if t == now + 1 {
                    return Jumped::No;
                }
                let mut op = self.cores[pe].as_mut().unwrap().ops.take(0).unwrap();
                let k = done - op.done;
                // Compiled element loops join this cycle's deferred work.
                self.defer = true;
                self.elements(pe, &mut op, k);
                self.defer = false;
                op.acc = acc;
                self.stats.vector_cycles[pe] += busy;
                let core = self.cores[pe].as_mut().unwrap();
                if busy > 0 {
                    core.rr = 1;
                }
                core.ops.put(0, op);
                self.activity = true;
                Jumped::Until(t)
            }
            Main::Running { task, pc } if !core.ops.any() => {
                let code = &self.p.codes[core.code];
                if matches!(code.insts[pc as usize], Inst::Vec(_) | Inst::End) {
                    return Jumped::No;
                }
                // Bounded, so a spinning loop still sees Ctrl-C and the
                // cycle limit.
                let limit = now + 4097;
                if let Some(f) = self.jit.as_ref().and_then(|j| j.scalar(core.code)) {
                    // Compiled: run with the other cores' compiled work of
                    // this cycle, then go on in `finish_work`.
                    self.activity = true;
                    self.work.push(Work::Scalar {
                        pe,
                        f,
                        pc,
                        budget: (limit - (now + 1)) as u32,
                        ret: 0,
                    });
                    return Jumped::Deferred;
                }
                Jumped::Until(self.scalar_run(pe, task, pc, now + 1, limit))
            }
            _ => Jumped::No,
        }
    }

    /// The scalar instructions of core `pe`'s task from `pc`, the first in
    /// cycle `t`, up to the next vector op or `end` or cycle `limit`: the
    /// cycle the core steps next.
    fn scalar_run(&mut self, pe: usize, task: u8, mut pc: u32, mut t: u64, limit: u64) -> u64 {
        let p: &'p Program = self.p;
        let ci = self.cores[pe].as_ref().unwrap().code;
        let code = &p.codes[ci];
        let start = t;
        let runner = self.jit.as_ref().and_then(|j| j.scalar(ci));
        while t < limit {
            if matches!(code.insts[pc as usize], Inst::Vec(_) | Inst::End) {
                break;
            }
            if let Some(f) = runner {
                let core = self.cores[pe].as_mut().unwrap();
                let (k, next) = run_scalar(core, f, pc, (limit - t) as u32);
                if k > 0 {
                    core.main = Main::Running { task, pc: next };
                    self.stats.scalar_cycles[pe] += k as u64;
                    self.activity = true;
                    pc = next;
                    t += k as u64;
                    continue;
                }
            }
            if let Err(e) = self.execute(pe, code, task, pc) {
                // The reference faults in cycle `t`: so does this.
                self.wake.as_mut().expect("event mode").faults.insert(pe, e);
                return t;
            }
            let Main::Running { pc: next, .. } = self.cores[pe].as_ref().unwrap().main else {
                unreachable!("scalar instructions keep the thread running")
            };
            pc = next;
            t += 1;
        }
        if runner.is_none()
            && let Some(j) = &self.jit
        {
            j.heat(ci, t - start);
        }
        t
    }

    /// The compiled work deferred this cycle (each item touches only its
    /// own core's registers and SRAM), run on the worker threads, then
    /// the deferred scalar runs carried on in list order: the same
    /// results whatever the thread count.
    fn finish_work(&mut self) {
        if self.work.is_empty() {
            return;
        }
        let mut work = std::mem::take(&mut self.work);
        // A scalar run's length is known only once it has run: expect its
        // code's average so far.
        let size: u64 = work
            .iter()
            .map(|w| match *w {
                Work::Vec { k, .. } => k as u64,
                Work::Scalar { pe, budget, .. } => {
                    let (runs, instrs) = self.scalar_runs[self.cores[pe].as_ref().unwrap().code];
                    instrs.checked_div(runs).unwrap_or(budget as u64)
                }
            })
            .sum();
        {
            let mut jobs: Vec<Job> = work
                .iter_mut()
                .map(|w| Job::on(self.cores[w.pe()].as_mut().unwrap(), w))
                .collect();
            match &self.pool {
                Some(pool) if jobs.len() > 1 && size >= self.min_parallel_work => {
                    use rayon::prelude::*;
                    pool.install(|| jobs.par_iter_mut().for_each(|j| j.run()));
                }
                _ => jobs.iter_mut().for_each(Job::run),
            }
        }
        let now = self.now;
        for w in &work {
            if let Work::Scalar { pe, ret, .. } = *w {
                let Main::Running { task, .. } = self.cores[pe].as_ref().unwrap().main else {
                    unreachable!("a deferred scalar run is running")
                };
                let (k, next) = ((ret >> 32) as u32, ret as u32);
                self.stats.scalar_cycles[pe] += k as u64;
                let ci = self.cores[pe].as_ref().unwrap().code;
                self.scalar_runs[ci].0 += 1;
                self.scalar_runs[ci].1 += k as u64;
                self.cores[pe].as_mut().unwrap().main = Main::Running { task, pc: next };
                let t = self.scalar_run(pe, task, next, now + 1 + k as u64, now + 4097);
                self.sleep_until(pe, t);
            }
        }
        work.clear();
        self.work = work;
    }

    /// Event mode, after core `pe`'s step at `now`: if from the next cycle
    /// on it can only stall (every op waits on the fabric, the main thread
    /// waits for its op, for a busy microthread or for a task to become
    /// ready), put it to sleep until something it waits on changes: a
    /// push into its queues or a pop from its ramp buffer wakes it, and a
    /// wavelet already in flight to it sets a timer for when it lands. The
    /// stall counters those cycles would have added are credited when it
    /// wakes.
    fn stall_sleep(&mut self, pe: usize) -> bool {
        let t = self.now + 1;
        let core = self.cores[pe].as_ref().unwrap();
        let code = &self.p.codes[core.code];
        let mut flags = STALLED;
        for (_, op) in core.ops.iter() {
            let (avail, why) = self.fabric_avail(op, t);
            if op.start_at > t || avail > 0 {
                return false;
            }
            flags |= if why == Some(Wait::Output) {
                STALL_OUT
            } else {
                STALL_IN
            };
        }
        let main_waits = match core.main {
            Main::WaitSync { .. } => true,
            Main::Idle => !code.tasks.iter().enumerate().any(|(i, task)| {
                !core.blocked[i]
                    && match task.kind {
                        TaskKind::Local => core.active[i],
                        TaskKind::Data(c) => self.fifos.head(core.queue[c.0 as usize], t).is_some(),
                    }
            }),
            Main::Running { pc, .. } => match &code.insts[pc as usize] {
                Inst::Vec(v) => {
                    let slot = match v.mode {
                        ExecMode::Sync => 0,
                        ExecMode::Async { thread, .. } => thread as usize + 1,
                    };
                    flags |= STALL_ISSUE;
                    core.ops.is_some(slot)
                }
                _ => false,
            },
            Main::Switching { .. } => false,
        };
        if !main_waits {
            return false;
        }
        // The earliest wavelet in flight to its queues: it lands unannounced.
        let landing = core
            .queue
            .iter()
            .filter(|q| **q != NONE)
            .filter_map(|q| self.fifos.landing_after(*q, t))
            .min();
        let w = self.wake.as_mut().expect("event mode");
        w.stalled[pe] = (t, flags);
        if flags & STALL_ISSUE != 0 {
            w.issue_sleepers += 1;
        }
        if let Some(r) = landing {
            w.timers.push(r, (w.n + pe) as u32);
        }
        true
    }

    fn core_busy(&self, pe: usize) -> bool {
        let core = self.cores[pe].as_ref().expect("awake cores have code");
        let code = &self.p.codes[core.code];
        core.main != Main::Idle
            || core.ops.any()
            || code
                .tasks
                .iter()
                .enumerate()
                .any(|(i, t)| t.kind == TaskKind::Local && core.active[i] && !core.blocked[i])
            || core
                .queue
                .iter()
                .any(|q| *q != NONE && !self.fifos.is_empty(*q))
    }

    fn span(&mut self, pe: Pe, thread: u8, name: &str, start: u64) {
        if !self.trace {
            return;
        }
        if self.spans.len() >= self.max_spans {
            self.dropped += 1;
            return;
        }
        self.spans.push(Span {
            pe,
            thread,
            name: name.to_string(),
            start,
            end: self.now + 1,
        });
    }

    fn step_host(&mut self) {
        for i in 0..self.host_in.len() {
            let h = &self.host_in[i];
            if h.next >= h.wavelets.len() {
                continue;
            }
            if self.now < h.next_time {
                self.activity = true;
                continue;
            }
            if self.fifos.has_space(h.fifo, self.now) {
                let (fifo, bits) = (h.fifo, h.wavelets[h.next]);
                self.push(fifo, self.arch.hop_latency, bits);
                let h = &mut self.host_in[i];
                h.next += 1;
                h.next_time = self.now + h.period as u64;
            }
        }
    }

    fn dest_has_space(&self, d: Dest) -> bool {
        match d {
            Dest::Fifo(f) => self.fifos.has_space(f, self.now),
            Dest::Host(_) => true,
            Dest::None => false,
        }
    }

    fn step_router(&mut self, pe: usize) -> Result<(), RunError> {
        let n = self.routers[pe].entries.len();
        if n == 0 {
            return Ok(());
        }
        let mut claimed = PortSet::EMPTY;
        let mut used_in = PortSet::EMPTY;
        let mut stalled = false;
        let mut last = None;
        let rr = self.routers[pe].rr;
        for k in 0..n {
            let i = (rr + k) % n;
            let e = &self.routers[pe].entries[i];
            if used_in.contains(e.port) || self.fifos.head(e.fifo, self.now).is_none() {
                continue;
            }
            if e.outs.intersects(claimed)
                || !e
                    .outs
                    .iter()
                    .all(|o| self.dest_has_space(e.dests[o.index()]))
            {
                stalled = true;
                continue;
            }
            let (outs, dests, fifo, port) = (e.outs, e.dests, e.fifo, e.port);
            let bits = self.fifos.pop(fifo, self.now);
            if let Some(w) = self.wake.as_mut() {
                let o = w.pop_wakes[fifo as usize];
                if o != NONE && !w.awake[o as usize] {
                    w.awake[o as usize] = true;
                    w.woken.push(o);
                }
            }
            for o in outs.iter() {
                self.stats.wavelets_out[o.index()][pe] += 1;
                let delay = if o == Port::Ramp {
                    self.arch.ramp_latency
                } else {
                    self.arch.hop_latency
                };
                match dests[o.index()] {
                    Dest::Fifo(f) => self.push(f, delay, bits),
                    Dest::Host(h) => self.deliver_host(h as usize, bits, delay)?,
                    Dest::None => unreachable!("routes only name connected ports"),
                }
            }
            claimed.0 |= outs.0;
            used_in.insert(port);
            last = Some(i);
            self.activity = true;
        }
        if let Some(i) = last {
            self.routers[pe].rr = i + 1;
        }
        if stalled {
            self.stats.router_stall_cycles[pe] += 1;
        }
        Ok(())
    }

    fn deliver_host(&mut self, h: usize, bits: u32, delay: u32) -> Result<(), RunError> {
        self.horizon = self.horizon.max(self.now + delay as u64);
        let out = &mut self.host_out[h];
        let per = out.dtype.per_word();
        for k in 0..per {
            if out.values.len() as u32 == out.len {
                // The padding half of a final 16-bit wavelet is not data.
                if k > 0 {
                    break;
                }
                let s = &self.p.outputs[h];
                return Err(RunError::OutputOverflow {
                    name: s.name.clone(),
                    len: s.len,
                    pe: s.pe,
                });
            }
            out.values.push(
                out.dtype
                    .decode((bits >> (16 * k)) & if per == 1 { u32::MAX } else { 0xffff }),
            );
        }
        Ok(())
    }

    fn fault(&self, pe: usize, task: u8, pc: u32, message: String) -> RunError {
        let core = self.cores[pe].as_ref().unwrap();
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

    fn step_core(&mut self, pe: usize) -> Result<(), RunError> {
        self.step_datapath(pe)?;
        self.step_main(pe)
    }

    /// How many elements op `slot` could process in cycle `now` if nothing
    /// but the fabric limited it; 0 means it waits, and on what. An op
    /// with an empty input queue waits on input even if its output is
    /// also full (the input is what it needs first); otherwise a full
    /// ramp buffer is a wait on output.
    fn fabric_avail(&self, op: &VecOpState, now: u64) -> (u32, Option<Wait>) {
        let per = op.dtype.per_word();
        let mut avail = op.n - op.done;
        let mut blocked_in = false;
        for s in &op.srcs {
            if let Loc::In { fifo, pend, .. } = *s {
                let a = pend
                    + if self.fifos.head(fifo, now).is_some() {
                        per
                    } else {
                        0
                    };
                if a == 0 {
                    blocked_in = true;
                }
                avail = avail.min(a);
            }
        }
        let wait = if blocked_in {
            Wait::Input
        } else {
            Wait::Output
        };
        if let Loc::Out { fifo, pend, .. } = op.dst {
            let space = self.fifos.has_space(fifo, now);
            if op.done == op.n {
                // Only the flush of a half-filled wavelet is left.
                return if space {
                    (1, None)
                } else {
                    (0, Some(Wait::Output))
                };
            }
            let cap = if space {
                (per - pend) + (per - 1)
            } else {
                per - 1 - pend
            };
            if cap == 0 {
                return (0, Some(wait));
            }
            avail = avail.min(cap);
        }
        if avail == 0 {
            (0, Some(wait))
        } else {
            (avail, None)
        }
    }

    fn step_datapath(&mut self, pe: usize) -> Result<(), RunError> {
        let core = self.cores[pe].as_ref().unwrap();
        let (slots, live, rr) = (core.ops.len(), core.ops.live, core.rr);
        if live == 0 {
            return Ok(());
        }
        let (mut waited_in, mut waited_out) = (false, false);
        for k in 0..slots {
            let s = (rr + k) % slots;
            if live & (1 << s) == 0 {
                continue;
            }
            let core = self.cores[pe].as_ref().unwrap();
            let op = core.ops.get(s).expect("live slot");
            if self.now < op.start_at {
                self.activity = true;
                continue;
            }
            let (avail, why) = self.fabric_avail(op, self.now);
            if avail == 0 {
                match why {
                    Some(Wait::Output) => waited_out = true,
                    _ => waited_in = true,
                }
                continue;
            }
            self.activity = true;
            self.stats.vector_cycles[pe] += 1;
            self.run_op(pe, s, avail)?;
            self.cores[pe].as_mut().unwrap().rr = s + 1;
            break;
        }
        if waited_in {
            self.stats.stall_in_cycles[pe] += 1;
        }
        if waited_out {
            self.stats.stall_out_cycles[pe] += 1;
        }
        Ok(())
    }

    /// The next element's bits from a fabric input operand: a new wavelet
    /// is popped when the last one's values are used up.
    fn take_in(&mut self, fifo: u32, pend_bits: &mut u32, pend: &mut u32, per: u32) -> u32 {
        if *pend == 0 {
            *pend_bits = self.fifos.pop(fifo, self.now);
            self.activity = true;
            *pend = per;
        }
        let bits = if per == 1 {
            *pend_bits
        } else {
            (*pend_bits >> (16 * (per - *pend))) & 0xffff
        };
        *pend -= 1;
        bits
    }

    /// Add an element's bits to a fabric output operand's wavelet, sending
    /// it when full: whether it was sent.
    fn put_out(
        &mut self,
        pe: usize,
        fifo: u32,
        pend_bits: &mut u32,
        pend: &mut u32,
        per: u32,
        bits: u32,
    ) -> bool {
        *pend_bits |= if per == 1 { bits } else { bits << (16 * *pend) };
        *pend += 1;
        if *pend < per {
            return false;
        }
        let b = *pend_bits;
        *pend_bits = 0;
        *pend = 0;
        self.push(fifo, self.arch.ramp_latency, b);
        self.stats.wavelets_from_core[pe] += 1;
        true
    }

    /// Process the next `k` elements of `op` (its values, not its timing):
    /// whether a wavelet went out. Shared by the per-cycle step and the
    /// event engine's jumps, so both compute the same bits.
    fn elements(&mut self, pe: usize, op: &mut VecOpState, k: u32) -> bool {
        if self.timing {
            return self.elements_timing(pe, op, k);
        }
        if let Some(f) = op.jit {
            self.elements_jit(pe, op, k, f);
            return false;
        }
        let dt = op.dtype;
        let per = dt.per_word();
        let mut pushed = false;
        for _ in 0..k {
            let mut v = [0f32; 3];
            for (i, src) in op.srcs.iter_mut().enumerate() {
                v[i] = match src {
                    Loc::Mem {
                        base,
                        dtype,
                        idx,
                        stride,
                    } => {
                        let x = read_elem(
                            &self.cores[pe].as_ref().unwrap().sram,
                            *base,
                            *dtype,
                            *idx as u32,
                        );
                        *idx += *stride;
                        dt.round(x)
                    }
                    Loc::In {
                        fifo,
                        pend_bits,
                        pend,
                    } => dt.decode(self.take_in(*fifo, pend_bits, pend, per)),
                    Loc::Val(x) => *x,
                    Loc::Unused => 0.0,
                    Loc::Out { .. } | Loc::FReg(_) => unreachable!("not a source"),
                };
            }
            let r = |x: f32| dt.round(x);
            let core = self.cores[pe].as_mut().unwrap();
            let value = match op.op {
                VecOp::Mov => v[0],
                VecOp::Fadd => r(v[0] + v[1]),
                VecOp::Fsub => r(v[0] - v[1]),
                VecOp::Fmul => r(v[0] * v[1]),
                VecOp::Fmax => r(v[0].max(v[1])),
                VecOp::Fmac => r(v[0] + r(v[1] * v[2])),
                VecOp::Exp => r(v[0].exp()),
                VecOp::Rcp => r(1.0 / v[0]),
                VecOp::Rsqrt => r(1.0 / v[0].sqrt()),
                VecOp::Sin => r(v[0].sin()),
                VecOp::Cos => r(v[0].cos()),
                VecOp::Sum | VecOp::Dot | VecOp::Rmax => {
                    let Loc::FReg(f) = op.dst else {
                        unreachable!("verifier: reductions write a register")
                    };
                    let acc = core.f[f as usize];
                    core.f[f as usize] = match op.op {
                        VecOp::Sum => r(acc + v[0]),
                        VecOp::Dot => r(acc + r(v[0] * v[1])),
                        _ => acc.max(v[0]),
                    };
                    0.0
                }
            };
            match &mut op.dst {
                Loc::Mem {
                    base,
                    dtype,
                    idx,
                    stride,
                } => {
                    write_bits(
                        &mut core.sram,
                        *base,
                        *dtype,
                        *idx as u32,
                        dtype.encode(value),
                    );
                    *idx += *stride;
                }
                Loc::Out {
                    fifo,
                    pend_bits,
                    pend,
                } => pushed |= self.put_out(pe, *fifo, pend_bits, pend, per, dt.encode(value)),
                _ => {}
            }
            op.done += 1;
        }
        pushed
    }

    /// [`Self::elements`] by the JIT's element loop for an op whose
    /// operands are all local.
    fn elements_jit(&mut self, pe: usize, op: &mut VecOpState, k: u32, f: jit::VecFn) {
        let mut args = jit::VecArgs::default();
        for (slot, l) in std::iter::once(&mut op.dst)
            .chain(op.srcs.iter_mut())
            .enumerate()
        {
            match l {
                Loc::Mem {
                    base,
                    dtype,
                    idx,
                    stride,
                } => {
                    let size = dtype.size_bytes() as i64;
                    args.addr[slot] = *base as i64 + *idx * size;
                    args.step[slot] = *stride * size;
                    *idx += *stride * k as i64;
                }
                Loc::Val(x) => args.val[slot] = *x,
                _ => {}
            }
        }
        let acc = match op.dst {
            Loc::FReg(r) => Some(r),
            _ => None,
        };
        op.done += k;
        let mut w = Work::Vec {
            pe,
            f,
            k,
            args,
            acc,
        };
        if self.defer {
            self.work.push(w);
        } else {
            Job::on(self.cores[pe].as_mut().unwrap(), &mut w).run();
        }
    }

    /// Timing-only [`Self::elements`]: fabric operands pop and push their
    /// wavelets exactly as in a functional run, but nothing is computed.
    /// A copy (`vmov`) carries known values; every other op's results, and
    /// anything read from memory never written with a known value (weights
    /// are not stored), are unknown.
    fn elements_timing(&mut self, pe: usize, op: &mut VecOpState, k: u32) -> bool {
        let dt = op.dtype;
        let per = dt.per_word();
        let unknown = unknown_bits(dt);
        let copy = op.op == VecOp::Mov;
        let fabric = |l: &Loc| matches!(l, Loc::In { .. } | Loc::Out { .. });
        if !copy && !fabric(&op.dst) && !op.srcs.iter().any(fabric) {
            // Nothing to move: skip the elements in one step.
            for l in op.srcs.iter_mut().chain(std::iter::once(&mut op.dst)) {
                if let Loc::Mem { idx, stride, .. } = l {
                    *idx += *stride * k as i64;
                }
            }
            if let Loc::Mem {
                base,
                dtype,
                idx,
                stride,
            } = op.dst
            {
                let core = self.cores[pe].as_mut().unwrap();
                if !core.known.is_empty() {
                    for j in 0..k as i64 {
                        let i = idx - stride * (k as i64 - j);
                        core.known.remove(&elem_addr(base, dtype, i));
                    }
                }
            }
            if let Loc::FReg(f) = op.dst {
                self.cores[pe].as_mut().unwrap().fk &= !(1 << f);
            }
            op.done += k;
            return false;
        }
        let mut pushed = false;
        for _ in 0..k {
            let mut value = None;
            for (i, src) in op.srcs.iter_mut().enumerate() {
                let v = match src {
                    Loc::Mem {
                        base,
                        dtype,
                        idx,
                        stride,
                    } => {
                        let at = elem_addr(*base, *dtype, *idx);
                        *idx += *stride;
                        let core = self.cores[pe].as_ref().unwrap();
                        core.known.get(&at).map(|b| dt.round(dtype.decode(*b)))
                    }
                    Loc::In {
                        fifo,
                        pend_bits,
                        pend,
                    } => {
                        let bits = self.take_in(*fifo, pend_bits, pend, per);
                        (bits != unknown).then(|| dt.decode(bits))
                    }
                    Loc::Val(x) => (x.to_bits() != unknown_bits(DType::F32)).then_some(*x),
                    Loc::Unused => None,
                    Loc::Out { .. } | Loc::FReg(_) => unreachable!("not a source"),
                };
                if i == 0 && copy {
                    value = v;
                }
            }
            let core = self.cores[pe].as_mut().unwrap();
            match &mut op.dst {
                Loc::Mem {
                    base,
                    dtype,
                    idx,
                    stride,
                } => {
                    let at = elem_addr(*base, *dtype, *idx);
                    match value {
                        Some(v) => core.known.insert(at, dtype.encode(v)),
                        None => core.known.remove(&at),
                    };
                    *idx += *stride;
                }
                Loc::Out {
                    fifo,
                    pend_bits,
                    pend,
                } => {
                    let bits = value.map_or(unknown, |v| dt.encode(v));
                    pushed |= self.put_out(pe, *fifo, pend_bits, pend, per, bits);
                }
                Loc::FReg(f) => core.fk &= !(1 << *f),
                _ => {}
            }
            op.done += 1;
        }
        pushed
    }

    /// Hold the datapath for one cycle on op `slot`, processing up to `avail` elements.
    fn run_op(&mut self, pe: usize, slot: usize, avail: u32) -> Result<(), RunError> {
        let now = self.now;
        let ramp = self.arch.ramp_latency;
        let mut op = self.cores[pe].as_mut().unwrap().ops.take(slot).unwrap();
        op.acc += op.num;
        let k = (op.acc / op.den).min(avail).min(op.n - op.done);
        op.acc = (op.acc - k * op.den).min(op.den - 1);
        let pushed = self.elements(pe, &mut op, k);
        if op.done == op.n
            && let Loc::Out {
                fifo,
                pend_bits,
                pend,
            } = &mut op.dst
            && *pend > 0
            && !pushed
            && self.fifos.has_space(*fifo, now)
        {
            let (f, b) = (*fifo, *pend_bits);
            *pend = 0;
            *pend_bits = 0;
            self.push(f, ramp, b);
            self.stats.wavelets_from_core[pe] += 1;
        }
        let finished = op.done == op.n && !matches!(op.dst, Loc::Out { pend, .. } if pend > 0);
        if !finished {
            self.cores[pe].as_mut().unwrap().ops.put(slot, op);
            return Ok(());
        }
        let at = self.layout.pe_at(pe);
        self.span(at, slot as u8, op.op.mnemonic(), op.issued_at);
        let core = self.cores[pe].as_mut().unwrap();
        if slot == 0 {
            core.main = Main::Running {
                task: op.task,
                pc: op.pc + 1,
            };
        } else if let Some(t) = op.on_done {
            core.active[t as usize] = true;
        }
        core.ops.retire(op);
        Ok(())
    }

    fn step_main(&mut self, pe: usize) -> Result<(), RunError> {
        let p: &'p Program = self.p;
        let code: &'p PeCode = &p.codes[self.cores[pe].as_ref().unwrap().code];
        let main = self.cores[pe].as_ref().unwrap().main;
        match main {
            Main::Idle => {
                let core = self.cores[pe].as_ref().unwrap();
                let pick = code.tasks.iter().enumerate().position(|(i, t)| {
                    !core.blocked[i]
                        && match t.kind {
                            TaskKind::Local => core.active[i],
                            TaskKind::Data(c) => self
                                .fifos
                                .head(core.queue[c.0 as usize], self.now)
                                .is_some(),
                        }
                });
                let Some(t) = pick else { return Ok(()) };
                self.activity = true;
                self.stats.tasks[pe] += 1;
                self.stats.switch_cycles[pe] += 1;
                let switch = self.arch.task_switch_cycles;
                let now = self.now;
                let wavelet = match code.tasks[t].kind {
                    TaskKind::Data(c) => {
                        let q = self.cores[pe].as_ref().unwrap().queue[c.0 as usize];
                        Some(self.fifos.pop(q, now))
                    }
                    TaskKind::Local => None,
                };
                let core = self.cores[pe].as_mut().unwrap();
                if let Some(bits) = wavelet {
                    core.r[0] = bits as i32;
                    core.f[0] = f32::from_bits(bits);
                    let unknown = [DType::F32, DType::F16, DType::BF16].iter().any(|d| {
                        let u = unknown_bits(*d);
                        bits == u || (u < 0x10000 && (bits & 0xffff == u || bits >> 16 == u))
                    });
                    if unknown && self.timing {
                        core.rk &= !1;
                        core.fk &= !1;
                    } else {
                        core.rk |= 1;
                        core.fk |= 1;
                    }
                } else {
                    core.active[t] = false;
                }
                core.task_started = now;
                core.main = if switch <= 1 {
                    Main::Running {
                        task: t as u8,
                        pc: code.tasks[t].entry,
                    }
                } else {
                    Main::Switching {
                        task: t as u8,
                        left: switch - 1,
                    }
                };
            }
            Main::Switching { task, left } => {
                self.activity = true;
                self.stats.switch_cycles[pe] += 1;
                let core = self.cores[pe].as_mut().unwrap();
                core.main = if left <= 1 {
                    Main::Running {
                        task,
                        pc: code.tasks[task as usize].entry,
                    }
                } else {
                    Main::Switching {
                        task,
                        left: left - 1,
                    }
                };
            }
            Main::WaitSync { .. } => {}
            Main::Running { task, pc } => self.execute(pe, code, task, pc)?,
        }
        Ok(())
    }

    fn execute(&mut self, pe: usize, code: &'p PeCode, task: u8, pc: u32) -> Result<(), RunError> {
        let inst = &code.insts[pc as usize];
        let mut next = pc + 1;
        self.activity = true;
        if self.timing && self.execute_timing(pe, code, task, pc)? {
            self.stats.scalar_cycles[pe] += 1;
            self.cores[pe].as_mut().unwrap().main = Main::Running { task, pc: next };
            return Ok(());
        }
        let core = self.cores[pe].as_mut().unwrap();
        let val = |core: &Core, s: IntSrc| match s {
            IntSrc::Reg(r) => core.r[r.0 as usize],
            IntSrc::Imm(i) => i,
        };
        let index =
            |core: &Core, buf: crate::isa::BufId, s: IntSrc| -> Result<(u32, DType, u32), String> {
                let b = &code.buffers[buf.0 as usize];
                let i = val(core, s);
                if i < 0 || i as u32 >= b.len {
                    return Err(format!(
                        "index {i} is outside buffer `{}` ({} elements)",
                        b.name, b.len
                    ));
                }
                Ok((b.offset, b.dtype, i as u32))
            };
        match inst {
            Inst::Li { rd, imm } => core.r[rd.0 as usize] = *imm,
            Inst::Lf { fd, imm } => core.f[fd.0 as usize] = *imm,
            Inst::Mov { rd, rs } => core.r[rd.0 as usize] = core.r[rs.0 as usize],
            Inst::FMov { fd, fs } => core.f[fd.0 as usize] = core.f[fs.0 as usize],
            Inst::Alu { op, rd, ra, b } => {
                let (a, b) = (core.r[ra.0 as usize], val(core, *b));
                if b == 0 && matches!(op, AluOp::Div | AluOp::Rem) {
                    return Err(self.fault(pe, task, pc, "division by zero".into()));
                }
                let core = self.cores[pe].as_mut().unwrap();
                core.r[rd.0 as usize] = match op {
                    AluOp::Add => a.wrapping_add(b),
                    AluOp::Sub => a.wrapping_sub(b),
                    AluOp::Mul => a.wrapping_mul(b),
                    AluOp::And => a & b,
                    AluOp::Or => a | b,
                    AluOp::Xor => a ^ b,
                    AluOp::Shl => a.wrapping_shl(b as u32 & 31),
                    AluOp::Shr => a.wrapping_shr(b as u32 & 31),
                    AluOp::Min => a.min(b),
                    AluOp::Max => a.max(b),
                    AluOp::Div => a.wrapping_div(b),
                    AluOp::Rem => a.wrapping_rem(b),
                };
            }
            Inst::Falu { op, fd, fa, fb } => {
                let (a, b) = (core.f[fa.0 as usize], core.f[fb.0 as usize]);
                core.f[fd.0 as usize] = match op {
                    FaluOp::Add => a + b,
                    FaluOp::Sub => a - b,
                    FaluOp::Mul => a * b,
                    FaluOp::Div => a / b,
                    FaluOp::Max => a.max(b),
                    FaluOp::Min => a.min(b),
                };
            }
            Inst::Fun { op, fd, fa } => {
                let a = core.f[fa.0 as usize];
                core.f[fd.0 as usize] = match op {
                    FunOp::Neg => -a,
                    FunOp::Abs => a.abs(),
                    FunOp::Sqrt => a.sqrt(),
                    FunOp::Rsqrt => 1.0 / a.sqrt(),
                    FunOp::Exp => a.exp(),
                    FunOp::Rcp => 1.0 / a,
                    FunOp::Sin => a.sin(),
                    FunOp::Cos => a.cos(),
                };
            }
            Inst::ItoF { fd, rs } => core.f[fd.0 as usize] = core.r[rs.0 as usize] as f32,
            Inst::Fcmp { op, rd, fa, fb } => {
                let (a, b) = (core.f[fa.0 as usize], core.f[fb.0 as usize]);
                core.r[rd.0 as usize] = i32::from(match op {
                    FcmpOp::Eq => a == b,
                    FcmpOp::Lt => a < b,
                });
            }
            Inst::FtoI { rd, fs } => core.r[rd.0 as usize] = core.f[fs.0 as usize] as i32,
            Inst::Ld { rd, buf, idx } => {
                let (base, dt, i) =
                    index(core, *buf, *idx).map_err(|m| self.fault(pe, task, pc, m))?;
                let core = self.cores[pe].as_mut().unwrap();
                core.r[rd.0 as usize] = read_bits(&core.sram, base, dt, i) as i32;
            }
            Inst::Ldf { fd, buf, idx } => {
                let (base, dt, i) =
                    index(core, *buf, *idx).map_err(|m| self.fault(pe, task, pc, m))?;
                let core = self.cores[pe].as_mut().unwrap();
                core.f[fd.0 as usize] = read_elem(&core.sram, base, dt, i);
            }
            Inst::St { buf, idx, rs } => {
                let (base, dt, i) =
                    index(core, *buf, *idx).map_err(|m| self.fault(pe, task, pc, m))?;
                let core = self.cores[pe].as_mut().unwrap();
                let v = core.r[rs.0 as usize] as u32;
                write_bits(&mut core.sram, base, dt, i, v);
            }
            Inst::Stf { buf, idx, fs } => {
                let (base, dt, i) =
                    index(core, *buf, *idx).map_err(|m| self.fault(pe, task, pc, m))?;
                let core = self.cores[pe].as_mut().unwrap();
                let v = dt.encode(core.f[fs.0 as usize]);
                write_bits(&mut core.sram, base, dt, i, v);
            }
            Inst::Br {
                cond,
                ra,
                b,
                target,
            } => {
                let (a, b) = (core.r[ra.0 as usize], val(core, *b));
                let taken = match cond {
                    Cond::Eq => a == b,
                    Cond::Ne => a != b,
                    Cond::Lt => a < b,
                    Cond::Ge => a >= b,
                };
                if taken {
                    next = *target;
                }
            }
            Inst::Jmp { target } => next = *target,
            Inst::Activate(t) => core.active[t.0 as usize] = true,
            Inst::Block(t) => core.blocked[t.0 as usize] = true,
            Inst::Unblock(t) => core.blocked[t.0 as usize] = false,
            Inst::End => {
                self.stats.scalar_cycles[pe] += 1;
                let started = core.task_started;
                core.main = Main::Idle;
                let at = self.layout.pe_at(pe);
                self.span(at, 0, &code.tasks[task as usize].name, started);
                return Ok(());
            }
            Inst::Vec(v) => {
                let slot = match v.mode {
                    ExecMode::Sync => 0,
                    ExecMode::Async { thread, .. } => thread as usize + 1,
                };
                if core.ops.is_some(slot) {
                    // The microthread is busy: the main thread waits here.
                    self.stats.stall_issue_cycles[pe] += 1;
                    return Ok(());
                }
                let op = self.issue(pe, code, task, pc, v)?;
                self.stats.scalar_cycles[pe] += 1;
                let core = self.cores[pe].as_mut().unwrap();
                core.ops.issue(slot, op);
                core.main = if slot == 0 {
                    Main::WaitSync { task, pc }
                } else {
                    Main::Running { task, pc: next }
                };
                return Ok(());
            }
        }
        self.stats.scalar_cycles[pe] += 1;
        let core = self.cores[pe].as_mut().unwrap();
        core.main = Main::Running { task, pc: next };
        Ok(())
    }

    /// Timing-only mode, before instruction `pc` runs: track which
    /// registers hold known values, refuse what depends on an unknown one
    /// (a branch, a vector length or address, a store's index), and carry
    /// out the memory instructions on the known-value map. True when the
    /// instruction is done here; false to let [`Self::execute`] run it
    /// (its register arithmetic is cheap and its result's knownness is set).
    fn execute_timing(
        &mut self,
        pe: usize,
        code: &'p PeCode,
        task: u8,
        pc: u32,
    ) -> Result<bool, RunError> {
        let inst = &code.insts[pc as usize];
        let core = self.cores[pe].as_ref().unwrap();
        let (rk, fk) = (core.rk, core.fk);
        let r = |x: crate::isa::Reg| rk >> x.0 & 1 == 1;
        let f = |x: crate::isa::FReg| fk >> x.0 & 1 == 1;
        let src = |s: IntSrc| match s {
            IntSrc::Reg(x) => r(x),
            IntSrc::Imm(_) => true,
        };
        let depends = |what: &str| {
            let core = self.cores[pe].as_ref().unwrap();
            let code = &self.p.codes[core.code];
            RunError::DataDependent {
                pe: self.layout.pe_at(pe),
                code: code.name.clone(),
                task: code.tasks[task as usize].name.clone(),
                pc,
                inst: inst_text(code, inst),
                what: what.into(),
            }
        };
        let set = |mask: u16, i: u8, known: bool| {
            if known {
                mask | 1 << i
            } else {
                mask & !(1 << i)
            }
        };
        let (mut nrk, mut nfk) = (rk, fk);
        match inst {
            Inst::Li { rd, .. } => nrk = set(rk, rd.0, true),
            Inst::Lf { fd, .. } => nfk = set(fk, fd.0, true),
            Inst::Mov { rd, rs } => nrk = set(rk, rd.0, r(*rs)),
            Inst::FMov { fd, fs } => nfk = set(fk, fd.0, f(*fs)),
            Inst::Alu { op, rd, ra, b } => {
                let known = r(*ra) && src(*b);
                if !src(*b) && matches!(op, AluOp::Div | AluOp::Rem) {
                    // An unknown divisor may be zero: no fault, no value.
                    let core = self.cores[pe].as_mut().unwrap();
                    core.r[rd.0 as usize] = 0;
                    core.rk = set(rk, rd.0, false);
                    return Ok(true);
                }
                nrk = set(rk, rd.0, known);
            }
            Inst::Falu { fd, fa, fb, .. } => nfk = set(fk, fd.0, f(*fa) && f(*fb)),
            Inst::Fun { fd, fa, .. } => nfk = set(fk, fd.0, f(*fa)),
            Inst::ItoF { fd, rs } => nfk = set(fk, fd.0, r(*rs)),
            Inst::FtoI { rd, fs } => nrk = set(rk, rd.0, f(*fs)),
            Inst::Fcmp { rd, fa, fb, .. } => nrk = set(rk, rd.0, f(*fa) && f(*fb)),
            Inst::Ld { buf, idx, .. }
            | Inst::Ldf { buf, idx, .. }
            | Inst::St { buf, idx, .. }
            | Inst::Stf { buf, idx, .. } => {
                if !src(*idx) {
                    if matches!(inst, Inst::St { .. } | Inst::Stf { .. }) {
                        return Err(depends("a store's index"));
                    }
                    // A load from an unknown index gives an unknown value.
                    let core = self.cores[pe].as_mut().unwrap();
                    match inst {
                        Inst::Ld { rd, .. } => core.rk = set(rk, rd.0, false),
                        Inst::Ldf { fd, .. } => core.fk = set(fk, fd.0, false),
                        _ => unreachable!(),
                    }
                    return Ok(true);
                }
                let b = &code.buffers[buf.0 as usize];
                let i = match idx {
                    IntSrc::Reg(x) => core.r[x.0 as usize],
                    IntSrc::Imm(i) => *i,
                };
                if i < 0 || i as u32 >= b.len {
                    return Ok(false); // the functional path reports the fault
                }
                let at = b.offset + i as u32 * b.dtype.size_bytes();
                let core = self.cores[pe].as_mut().unwrap();
                match *inst {
                    Inst::Ld { rd, .. } => {
                        let v = core.known.get(&at).copied();
                        core.r[rd.0 as usize] = v.unwrap_or(0) as i32;
                        core.rk = set(rk, rd.0, v.is_some());
                    }
                    Inst::Ldf { fd, .. } => {
                        let v = core.known.get(&at).map(|x| b.dtype.decode(*x));
                        core.f[fd.0 as usize] = v.unwrap_or(0.0);
                        core.fk = set(fk, fd.0, v.is_some());
                    }
                    Inst::St { rs, .. } => {
                        if r(rs) {
                            let bits = core.r[rs.0 as usize] as u32;
                            let bits = if b.dtype.size_bytes() == 2 {
                                bits & 0xffff
                            } else {
                                bits
                            };
                            core.known.insert(at, bits);
                        } else {
                            core.known.remove(&at);
                        }
                    }
                    Inst::Stf { fs, .. } => {
                        if f(fs) {
                            core.known.insert(at, b.dtype.encode(core.f[fs.0 as usize]));
                        } else {
                            core.known.remove(&at);
                        }
                    }
                    _ => unreachable!(),
                }
                return Ok(true);
            }
            Inst::Br { ra, b, .. } if !(r(*ra) && src(*b)) => {
                return Err(depends("a branch"));
            }
            Inst::Vec(v) => {
                let mut ok = true;
                for o in std::iter::once(&v.dst).chain(&v.srcs) {
                    match o {
                        Operand::Mem(m) => ok &= src(m.off) && src(m.len) && src(m.stride),
                        Operand::FabIn { len: Some(l), .. }
                        | Operand::FabOut { len: Some(l), .. } => ok &= src(*l),
                        _ => {}
                    }
                }
                if !ok {
                    return Err(depends("a vector operand's length or address"));
                }
            }
            _ => {}
        }
        let core = self.cores[pe].as_mut().unwrap();
        core.rk = nrk;
        core.fk = nfk;
        Ok(false)
    }

    /// Resolve a vector instruction's descriptors (registers are read now).
    fn issue(
        &self,
        pe: usize,
        code: &PeCode,
        task: u8,
        pc: u32,
        v: &VecInst,
    ) -> Result<VecOpState, RunError> {
        let core = self.cores[pe].as_ref().unwrap();
        let val = |s: IntSrc| match s {
            IntSrc::Reg(r) => core.r[r.0 as usize],
            IntSrc::Imm(i) => i,
        };
        let fault = |m: String| self.fault(pe, task, pc, m);
        let mut n: Option<i32> = None;
        let mut set_len = |l: i32| -> Result<(), RunError> {
            match n {
                Some(m) if m != l => Err(fault(format!("operand lengths differ ({m} and {l})"))),
                _ => {
                    n = Some(l);
                    Ok(())
                }
            }
        };
        let mut reads_h = 0u32;
        let mut writes_h = 0u32;
        let mut loc = |o: &Operand, is_dst: bool| -> Result<Loc, RunError> {
            Ok(match *o {
                Operand::Mem(m) => {
                    let b = &code.buffers[m.buf.0 as usize];
                    let (off, len, stride) = (val(m.off), val(m.len), val(m.stride));
                    set_len(len)?;
                    let last = off as i64 + (len as i64 - 1) * stride as i64;
                    if len < 1 || off < 0 || off as u32 >= b.len || last < 0 || last >= b.len as i64
                    {
                        return Err(fault(format!(
                            "`{}[{off}, {len}, {stride}]` is outside the buffer ({} elements)",
                            b.name, b.len
                        )));
                    }
                    let halves = self
                        .arch
                        .operand_halves(b.dtype.size_bytes(), stride.abs() == 1);
                    if is_dst {
                        writes_h += halves
                    } else {
                        reads_h += halves
                    }
                    Loc::Mem {
                        base: b.offset,
                        dtype: b.dtype,
                        idx: off as i64,
                        stride: stride as i64,
                    }
                }
                Operand::FabIn { color, len } => {
                    if let Some(l) = len {
                        set_len(val(l))?;
                    }
                    Loc::In {
                        fifo: core.queue[color.0 as usize],
                        pend_bits: 0,
                        pend: 0,
                    }
                }
                Operand::FabOut { color, len } => {
                    if let Some(l) = len {
                        set_len(val(l))?;
                    }
                    Loc::Out {
                        fifo: core.ramp_up[color.0 as usize],
                        pend_bits: 0,
                        pend: 0,
                    }
                }
                Operand::FReg(f) if is_dst => Loc::FReg(f.0),
                Operand::FReg(f) if self.timing && core.fk >> f.0 & 1 == 0 => {
                    Loc::Val(f32::from_bits(unknown_bits(DType::F32)))
                }
                Operand::FReg(f) => Loc::Val(v.dtype.round(core.f[f.0 as usize])),
                Operand::Imm(x) => Loc::Val(v.dtype.round(x)),
            })
        };
        let dst = loc(&v.dst, true)?;
        let mut srcs = [Loc::Unused; 3];
        for (i, s) in v.srcs.iter().enumerate() {
            srcs[i] = loc(s, false)?;
        }
        let n = n.expect("verifier: some operand gives the length");
        if n < 1 {
            return Err(fault(format!("vector length {n} is not positive")));
        }
        let a = self.arch;
        // Multiplicands: b and c of an FMAC, a and b of a product or dot.
        let factors = match v.op {
            VecOp::Fmac => &v.srcs[1..],
            VecOp::Fmul | VecOp::Dot => &v.srcs[..],
            _ => &[][..],
        };
        let narrow = factors.iter().any(|o| matches!(o, Operand::Mem(_)))
            && factors.iter().all(|o| match o {
                Operand::Mem(m) => code.buffers[m.buf.0 as usize].dtype.size_bytes() == 2,
                Operand::FReg(_) | Operand::Imm(_) => true,
                _ => false,
            });
        let (num, den) = a.vector_rate(v.op, v.dtype, narrow, reads_h, writes_h);
        let jit = self
            .jit
            .as_ref()
            .and_then(|j| j.vec.get(&jit::vec_shape(code, v)?).copied());
        Ok(VecOpState {
            task,
            pc,
            op: v.op,
            dtype: v.dtype,
            n: n as u32,
            done: 0,
            issued_at: self.now,
            start_at: self.now + 1 + a.vector_issue_cycles as u64,
            acc: 0,
            num,
            den,
            dst,
            srcs,
            on_done: match v.mode {
                ExecMode::Async { on_done, .. } => on_done.map(|t| t.0),
                ExecMode::Sync => None,
            },
            jit,
        })
    }

    fn finish(self) -> Result<RunResult, RunError> {
        let waiting = self.waiting_report();
        if !waiting.is_empty() {
            return Err(RunError::Deadlock {
                cycle: self.now,
                waiting,
            });
        }
        let cycles = self.now;
        let mut stats = Stats {
            version: STATS_VERSION,
            arch: self.arch.name.clone(),
            clock_hz: self.arch.clock_hz,
            width: self.p.width,
            height: self.p.height,
            cycles,
            engine: match (self.engine, self.timing) {
                (e, false) => e.name().to_string(),
                // Timing-only mode computes nothing, so nothing is compiled.
                (super::Engine::Jit, true) => "interp, timing-only".into(),
                (e, true) => format!("{}, timing-only", e.name()),
            },
            totals: Default::default(),
            pe: self.stats,
        };
        stats.totals = stats.pe.totals();
        let outputs = self
            .p
            .outputs
            .iter()
            .zip(self.host_out)
            .map(|(s, o)| (s.name.clone(), o.values))
            .collect::<BTreeMap<_, _>>();
        let trace = self.trace.then_some(Trace {
            version: TRACE_VERSION,
            clock_hz: self.arch.clock_hz,
            width: self.p.width,
            height: self.p.height,
            spans: self.spans,
            dropped: self.dropped,
        });
        Ok(RunResult {
            cycles,
            outputs,
            stats,
            trace,
            memory: self
                .cores
                .into_iter()
                .map(|c| c.filter(|_| !self.timing).map(|c| c.sram))
                .collect(),
            width: self.p.width,
        })
    }

    /// Everything that is not finished: waiting tasks and ops, non-empty
    /// buffers and queues, incomplete host streams. Empty when the run is done.
    fn waiting_report(&self) -> Vec<String> {
        let mut out = Vec::new();
        let limit = 24;
        let mut more = 0usize;
        let mut add = |s: String| {
            if out.len() < limit {
                out.push(s)
            } else {
                more += 1
            }
        };
        for (pe, core) in self.cores.iter().enumerate() {
            let Some(core) = core else { continue };
            let at = self.layout.pe_at(pe);
            let code = &self.p.codes[core.code];
            let task_name = |t: u8| code.tasks[t as usize].name.as_str();
            if let Main::Running { task, pc } = core.main {
                let inst = &code.insts[pc as usize];
                // Only an op that cannot issue is waiting; anything else
                // at `pc` means the task is still executing.
                let busy = match inst {
                    Inst::Vec(v) => match v.mode {
                        ExecMode::Sync => core
                            .ops
                            .is_some(0)
                            .then(|| "the main thread's op".to_string()),
                        ExecMode::Async { thread, .. } => core
                            .ops
                            .is_some(thread as usize + 1)
                            .then(|| format!("microthread {thread}")),
                    },
                    _ => None,
                };
                let doing = match busy {
                    Some(what) => format!("waits to issue: {what} is busy"),
                    None => {
                        "is executing (an endless loop, or a longer run than --max-cycles allows?)"
                            .to_string()
                    }
                };
                add(format!(
                    "  {at} task `{}` at `{}`: {doing}",
                    task_name(task),
                    inst_text(code, inst)
                ));
            }
            for (slot, op) in core.ops.iter() {
                let what = inst_text(code, &code.insts[op.pc as usize]);
                let thread = if slot == 0 {
                    "main thread".to_string()
                } else {
                    format!("microthread {}", slot - 1)
                };
                let (_, why) = self.fabric_avail(op, self.now);
                let reason = match why {
                    Some(Wait::Input) => {
                        let colors: Vec<String> = op
                            .srcs
                            .iter()
                            .filter_map(|s| match *s {
                                Loc::In { fifo, pend: 0, .. }
                                    if self.fifos.head(fifo, self.now).is_none() =>
                                {
                                    match self.fifos.what[fifo as usize] {
                                        FifoKind::Queue { color, .. } => Some(format!("c{color}")),
                                        _ => None,
                                    }
                                }
                                _ => None,
                            })
                            .collect();
                        format!("waits for input on {} (queue empty)", colors.join(", "))
                    }
                    Some(Wait::Output) => "waits to send (ramp buffer full)".to_string(),
                    None => "still running".to_string(),
                };
                add(format!(
                    "  {at} task `{}` {thread} `{what}`: {} of {} elements done, {reason}",
                    task_name(op.task),
                    op.done,
                    op.n
                ));
            }
        }
        for (f, what) in self.fifos.what.iter().enumerate() {
            let waiting = self.fifos.count(f as u32);
            if waiting == 0 {
                continue;
            }
            match *what {
                FifoKind::Router { pe, port, color } => {
                    let pi = self.layout.pe_index(pe);
                    let outs = self.layout.route(pi, color, port);
                    add(format!(
                        "  {pe} router buffer {port}/c{color}: {} wavelet(s) waiting to go to {outs}",
                        waiting
                    ));
                }
                FifoKind::Queue { pe, color } => {
                    let core = self.cores[self.layout.pe_index(pe)].as_ref().unwrap();
                    let code = &self.p.codes[core.code];
                    let blocked: Vec<&str> = code
                        .tasks
                        .iter()
                        .enumerate()
                        .filter(|(i, t)| {
                            t.kind == TaskKind::Data(crate::Color(color)) && core.blocked[*i]
                        })
                        .map(|(_, t)| t.name.as_str())
                        .collect();
                    let why = if blocked.is_empty() {
                        "no running instruction reads it".to_string()
                    } else {
                        format!("task `{}` is blocked", blocked.join("`, `"))
                    };
                    add(format!(
                        "  {pe} input queue c{color}: {} wavelet(s) unread; {why}",
                        waiting
                    ));
                }
            }
        }
        for (h, s) in self.host_in.iter().zip(&self.p.inputs) {
            if h.next < h.wavelets.len() {
                add(format!(
                    "  host input `{}`: {} of {} wavelets sent; {} {}/{} is full",
                    s.name,
                    h.next,
                    h.wavelets.len(),
                    s.pe,
                    s.port,
                    s.color
                ));
            }
        }
        for (o, s) in self.host_out.iter().zip(&self.p.outputs) {
            if (o.values.len() as u32) < o.len {
                add(format!(
                    "  host output `{}`: received {} of {} elements (from {} {} on {})",
                    s.name,
                    o.values.len(),
                    o.len,
                    s.pe,
                    s.port,
                    s.color
                ));
            }
        }
        if more > 0 {
            out.push(format!("  ... and {more} more"));
        }
        out
    }
}
