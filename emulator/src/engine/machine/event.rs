//! The event-driven engines: who is awake, pushes that wake their owner,
//! running a core's local work ahead (`jump`), sleeping stalled cores, and
//! the compiled work deferred to the end of a cycle.

use super::*;
use crate::engine::timers::sort_awake;
use ahead::{FAR, HEAD, MID, NEAR};

/// The most cycles a core is run ahead through its local steps in one
/// wake-up ([`Machine::chain`]), so a long local loop still sees Ctrl-C
/// and the cycle limit.
const CHAIN_CYCLES: u64 = 4096;

/// A router's id among the units [`Wake`] steps: PE `pe`'s router and
/// core are neighbours (`2·pe`, `2·pe + 1`), so a sweep in id order
/// touches a PE's router buffers, queues and core together.
pub(super) fn router_unit(pe: usize) -> u32 {
    (2 * pe) as u32
}

/// A core's id among the units [`Wake`] steps (see [`router_unit`]).
pub(super) fn core_unit(pe: usize) -> u32 {
    (2 * pe + 1) as u32
}

impl<'p> Machine<'p> {
    /// The next cycle anything can happen in. Event mode skips the cycles in
    /// which nothing is awake: then only a timer (a core's jump, or a
    /// wavelet landing for a stalled core) or a host input's next wavelet
    /// can act; every other change comes from something awake.
    pub(super) fn next_cycle(&self) -> u64 {
        // Nothing pending: the run ends (or deadlocks) at `horizon`.
        self.next_event().unwrap_or(self.horizon).max(self.now + 1)
    }

    /// The next cycle something is due in (`None`: nothing is, so only
    /// the wavelets in flight until `horizon` remain).
    pub(super) fn next_event(&self) -> Option<u64> {
        let next = self.now + 1;
        let Some(w) = &self.wake else {
            return Some(next);
        };
        if !w.list.is_empty() || w.issue_sleepers > 0 {
            return Some(next);
        }
        let mut at = w.timers.first();
        for h in &self.host_in {
            if h.next < h.wavelets.len() {
                at = Some(at.map_or(h.next_time, |a| a.min(h.next_time)));
            }
        }
        at
    }

    /// Event mode's start: every router with routes and every core awake.
    pub(super) fn wake_all(&self) -> Wake {
        let pes = self.routers.at.pes();
        let base = router_unit(pes.start);
        let mut awake = vec![false; 2 * pes.len()];
        let mut list = Vec::new();
        for i in pes {
            if self.routers[i].n > 0 {
                awake[(router_unit(i) - base) as usize] = true;
                list.push(router_unit(i));
            }
            if self.cores[i].is_some() {
                awake[(core_unit(i) - base) as usize] = true;
                list.push(core_unit(i));
            }
        }
        Wake {
            base,
            awake,
            list,
            woken: Vec::new(),
            spare: Vec::new(),
            timers: Timers::new(),
            faults: BTreeMap::new(),
            issue_sleepers: 0,
            tail: Vec::new(),
        }
    }

    /// Push `bits` into FIFO `fifo` (one of this machine's), visible
    /// `delay` cycles from now; its owner wakes from the next cycle.
    pub(super) fn push(&mut self, fifo: FifoId, delay: u32, bits: u32) {
        let ready = self.now + delay as u64;
        let Machine {
            fifos,
            routers,
            wake,
            ..
        } = self;
        land_and_wake(fifos, &mut routers.at, wake, fifo, ready, bits);
        self.horizon = self.horizon.max(ready);
        self.activity = true;
    }

    /// Store a wavelet in FIFO `fifo` ([`land`]).
    pub(super) fn land(&mut self, fifo: FifoId, ready: u64, bits: u32) -> u32 {
        land(&mut self.fifos, &mut self.routers.at, fifo, ready, bits)
    }

    /// Event mode's cycle: the awake routers and cores in id order (a
    /// PE's router, then its core); those with nothing left to do
    /// fall asleep, those woken this cycle join from the next.
    pub(super) fn step_awake(&mut self) -> Result<(), RunError> {
        let now = self.now;
        let w = self.wake.as_mut().expect("event mode");
        let mut list = std::mem::take(&mut w.list);
        let base = w.base;
        for i in w.timers.due(now) {
            let a = &mut w.awake[(i - base) as usize];
            if !std::mem::replace(a, true) {
                list.push(i);
            }
        }
        if w.issue_sleepers > 0 {
            self.activity = true;
        }
        let mut keep = std::mem::take(&mut w.spare);
        // In index order: neighbouring PEs' state shares cache lines and
        // the hardware prefetches ahead; on a large grid a step is bound by
        // memory latency, not by the work it does.
        sort_awake(&mut list, &mut w.tail);
        // The first units get no hints from the loop below: ask for them
        // now, each depth after the one it reads through, so their loads
        // overlap (a band of a grid steps lists of a hundred units or so,
        // where this is a seventh of the steps).
        for &u in list.iter().take(FAR) {
            self.prefetch_state(u);
        }
        for &u in list.iter().take(MID) {
            self.prefetch_dependents(u);
        }
        for &u in list.iter().take(NEAR) {
            self.prefetch_rings(u);
        }
        for &u in list.iter().take(HEAD) {
            self.prefetch_heads(u);
        }
        // Any order gives the same result: nothing pushed this cycle is
        // visible this cycle (the invariant in engine/mod.rs).
        for (j, &i) in list.iter().enumerate() {
            // Ask ahead for the state of the units stepped next (a hint:
            // it changes no result, see `engine/prefetch.rs`).
            if let Some(&u) = list.get(j + FAR) {
                self.prefetch_state(u);
            }
            if let Some(&u) = list.get(j + MID) {
                self.prefetch_dependents(u);
            }
            if let Some(&u) = list.get(j + NEAR) {
                self.prefetch_rings(u);
            }
            if let Some(&u) = list.get(j + HEAD) {
                self.prefetch_heads(u);
            }
            let i = i as usize;
            let busy = if i & 1 == 0 {
                let pe = i / 2;
                self.step_router(pe)?;
                let r = &self.routers[pe];
                if r.masked() {
                    r.busy()
                } else {
                    self.routers
                        .entries(pe)
                        .iter()
                        .any(|e| !self.fifos.is_empty(e.fifo))
                }
            } else {
                let pe = i / 2;
                let w = self.wake.as_mut().expect("event mode");
                let core = self.cores.at_mut(pe);
                if core.resume > now {
                    // Mid-jump: its timer steps it again.
                    false
                } else if let Some(e) = w.faults.remove(&pe) {
                    return Err(e);
                } else {
                    let (since, flags) = std::mem::take(&mut core.stalled);
                    if flags & STALLED != 0 {
                        let k = now - since;
                        if flags & STALL_IN != 0 {
                            self.stats[pe].stall_in_cycles += k;
                        }
                        if flags & STALL_OUT != 0 {
                            self.stats[pe].stall_out_cycles += k;
                        }
                        if flags & STALL_ISSUE != 0 {
                            self.stats[pe].stall_issue_cycles += k;
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
                self.wake.as_mut().expect("event mode").sleep(i as u32);
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
    pub(super) fn sleep_until(&mut self, pe: usize, t: u64) {
        self.cores.at_mut(pe).resume = t;
        let w = self.wake.as_mut().expect("event mode");
        w.timers.push(t, core_unit(pe));
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
    pub(super) fn jump(&mut self, pe: usize) -> Jumped {
        if !self.chains() {
            return self.jump_once(pe, true);
        }
        match self.jump_once(pe, false) {
            Jumped::Until(t) => self.chain(pe, t),
            j => j,
        }
    }

    /// Whether a jump goes on through the core's next local steps
    /// ([`Self::chain`]): not while recording a trace, whose spans are
    /// recorded (and, past the cap, dropped) in the order of the cycles
    /// they end in. A chain runs the JIT's element loops at once, on this
    /// thread: deferred to the end of the real cycle, a step after one
    /// would read SRAM it has not written yet. Measured on a GEMV tile
    /// loop (`wafer kernel gemv --shape 33000x1434 --rect 256x300 --dtype
    /// bf16`), chaining beat deferring them by 1.3-1.9x on one thread and
    /// on two. A compiled scalar run still ends a chain deferred (to run
    /// on the workers with the other cores' runs), from the cycle the
    /// chain reached.
    fn chains(&self) -> bool {
        !self.log.on
    }

    /// Core `pe` jumped to cycle `t`: step it there and jump again, for
    /// as long as each step is local too, so a loop of scalar instructions
    /// and vector ops on memory (a GEMV tile's rows, one short op each)
    /// costs one wake-up rather than two per op. The step in cycle `t`
    /// would be taken by the run loop anyway, with the same result: the
    /// core sleeps until `t` whatever wakes it, its main thread is running
    /// or waiting on a synchronous op on memory (the jump's conditions),
    /// and such a step reads and writes only the core (its op, registers,
    /// SRAM, task flags) and its counters; wavelets that arrived meanwhile
    /// are looked at only by an idle main thread, whose step is never
    /// taken ahead. A fault in a step taken ahead is raised in its cycle,
    /// as a scalar run's is.
    fn chain(&mut self, pe: usize, mut t: u64) -> Jumped {
        let now = self.now;
        let limit = (now + CHAIN_CYCLES).min(self.max_cycles);
        while t < limit && self.steps_locally(pe) {
            self.now = t;
            if let Err(e) = self.step_core(pe) {
                self.wake.as_mut().expect("event mode").faults.insert(pe, e);
                break;
            }
            t = match self.jump_once(pe, false) {
                Jumped::Until(u) => u,
                // Nothing to run through (an op that ends next cycle, a
                // vector instruction next): it steps in `t + 1`, ahead if
                // that step is local too, else in the run loop.
                Jumped::No => t + 1,
                // A compiled scalar run from `t + 1`: `finish_work` takes
                // it on.
                Jumped::Deferred => {
                    self.now = now;
                    return Jumped::Deferred;
                }
            };
        }
        self.now = now;
        Jumped::Until(t)
    }

    /// Whether core `pe`'s next step is local, as a jump's stretch is: its
    /// main thread runs with no op in flight, or waits on a synchronous op
    /// on memory and registers with no microthread's op in flight; and no
    /// fault waits to be raised in that step.
    fn steps_locally(&self, pe: usize) -> bool {
        let core = self.cores.at(pe);
        let local = match core.main {
            Main::Running { .. } => !core.ops.any(),
            Main::WaitSync { .. } => {
                core.ops.live == 1
                    && core.ops.get(0).is_some_and(|op| {
                        let local = |l: &Loc| !matches!(l, Loc::In { .. } | Loc::Out { .. });
                        local(&op.dst) && op.srcs.iter().all(local)
                    })
            }
            Main::Idle | Main::Switching { .. } => false,
        };
        local
            && !self
                .wake
                .as_ref()
                .expect("event mode")
                .faults
                .contains_key(&pe)
    }

    /// [`Self::jump`]'s one stretch of local work.
    /// `defer`: a vector op's compiled element loop runs at the end of the
    /// cycle with the other cores' (else now).
    fn jump_once(&mut self, pe: usize, defer: bool) -> Jumped {
        let now = self.now;
        let core = self.cores.at(pe);
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
                let start = (now + 1).max(op.start_at);
                // Never past the cycle limit: a run stopped there reports
                // each op's progress as the reference leaves it.
                let busy = (finishing - 1).min(self.max_cycles.saturating_sub(start));
                let total = op.acc as u64 + busy * num;
                // Most rates are whole elements a cycle: no division then.
                let (done, acc) = if den == 1 {
                    (op.done + total as u32, 0)
                } else {
                    (op.done + (total / den) as u32, (total % den) as u32)
                };
                let t = (start + busy).min(self.max_cycles.max(now + 1));
                if t == now + 1 {
                    return Jumped::No;
                }
                let mut cores = self.cores.detach();
                let core = cores.at_mut(pe);
                let (op, mut data) = core.op_and_data(0);
                let k = done - op.done;
                // Compiled element loops join this cycle's deferred work.
                self.compiled.defer = defer;
                self.elements(pe, op, &mut data, k);
                self.compiled.defer = false;
                op.acc = acc;
                if busy > 0 {
                    core.rr = 1;
                }
                self.cores.attach(cores);
                self.stats[pe].vector_cycles += busy;
                self.activity = true;
                Jumped::Until(t)
            }
            Main::Running { task, pc } if !core.ops.any() => {
                let code = &self.p.codes[core.code];
                if matches!(code.insts[pc as usize], Inst::Vec(_) | Inst::End) {
                    return Jumped::No;
                }
                // Bounded, so a spinning loop still sees Ctrl-C, and never
                // past the cycle limit, so a run stopped there reports the
                // instruction the reference stopped at.
                let limit = (now + 4097).min(self.max_cycles.max(now + 1));
                if let Some(f) = self.compiled.jit.as_ref().and_then(|j| j.scalar(core.code)) {
                    // Compiled: run with the other cores' compiled work of
                    // this cycle, then go on in `finish_work`.
                    self.activity = true;
                    self.compiled.work.push(Work::Scalar {
                        pe,
                        f,
                        pc,
                        start: now + 1,
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
    pub(super) fn scalar_run(
        &mut self,
        pe: usize,
        task: u8,
        mut pc: u32,
        mut t: u64,
        limit: u64,
    ) -> u64 {
        let p: &'p Program = self.p;
        let ci = self.cores.at(pe).code;
        let code = &p.codes[ci];
        let start = t;
        let runner = self.compiled.jit.as_ref().and_then(|j| j.scalar(ci));
        while t < limit {
            if matches!(code.insts[pc as usize], Inst::Vec(_) | Inst::End) {
                break;
            }
            if let Some(f) = runner {
                let core = self.cores.at_mut(pe);
                let (k, next) = run_scalar(core, f, pc, (limit - t) as u32);
                if k > 0 {
                    core.main = Main::Running { task, pc: next };
                    self.stats[pe].scalar_cycles += k as u64;
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
            let Main::Running { pc: next, .. } = self.cores.at(pe).main else {
                unreachable!("scalar instructions keep the thread running")
            };
            pc = next;
            t += 1;
        }
        if runner.is_none()
            && let Some(j) = &self.compiled.jit
        {
            j.heat(ci, t - start);
        }
        t
    }

    /// The compiled work deferred this cycle (each item touches only its
    /// own core's registers and SRAM), run on the worker threads, then
    /// the deferred scalar runs carried on in list order: the same
    /// results whatever the thread count.
    pub(super) fn finish_work(&mut self) {
        if self.compiled.work.is_empty() {
            return;
        }
        let mut work = std::mem::take(&mut self.compiled.work);
        // A scalar run's length is known only once it has run: expect its
        // code's average so far.
        let size: u64 = work
            .iter()
            .map(|w| match *w {
                Work::Vec { k, .. } => k as u64,
                Work::Scalar { pe, budget, .. } => {
                    let code = self.cores.at(pe).code;
                    let (runs, instrs) = self
                        .compiled
                        .scalar_runs
                        .get(code)
                        .copied()
                        .unwrap_or_default();
                    instrs.checked_div(runs).unwrap_or(budget as u64)
                }
            })
            .sum();
        {
            let mut jobs: Vec<Job> = work
                .iter_mut()
                .map(|w| Job::on(self.cores.at_mut(w.pe()), w))
                .collect();
            match &self.compiled.pool {
                Some(pool) if jobs.len() > 1 && size >= self.compiled.min_parallel_work => {
                    use rayon::prelude::*;
                    pool.install(|| jobs.par_iter_mut().for_each(|j| j.run()));
                }
                _ => jobs.iter_mut().for_each(Job::run),
            }
        }
        for w in &work {
            if let Work::Scalar { pe, start, ret, .. } = *w {
                let Main::Running { task, .. } = self.cores.at(pe).main else {
                    unreachable!("a deferred scalar run is running")
                };
                let (k, next) = ((ret >> 32) as u32, ret as u32);
                self.stats[pe].scalar_cycles += k as u64;
                let ci = self.cores.at(pe).code;
                if let Some(s) = self.compiled.scalar_runs.get_mut(ci) {
                    *s = (s.0 + 1, s.1 + k as u64);
                }
                self.cores.at_mut(pe).main = Main::Running { task, pc: next };
                let limit = (start + 4096).min(self.max_cycles.max(start));
                let t = self.scalar_run(pe, task, next, start + k as u64, limit);
                self.sleep_until(pe, t);
            }
        }
        work.clear();
        self.compiled.work = work;
    }

    /// Event mode, after core `pe`'s step at `now`: if from the next cycle
    /// on it can only stall (every op waits on the fabric, the main thread
    /// waits for its op, for a busy microthread or for a task to become
    /// ready), put it to sleep until something it waits on changes: a
    /// push into its queues or a pop from its ramp buffer wakes it, and a
    /// wavelet already in flight to it sets a timer for when it lands. The
    /// stall counters those cycles would have added are credited when it
    /// wakes.
    pub(super) fn stall_sleep(&mut self, pe: usize) -> bool {
        let t = self.now + 1;
        let core = self.cores.at(pe);
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
                !core.blocked.has(i)
                    && match task.kind {
                        TaskKind::Local => core.active.has(i),
                        TaskKind::Data(c) => self.fifos.ready(core.queue[c.0 as usize], t),
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
            .filter(|q| !q.is_none())
            .filter_map(|q| self.fifos.landing_after(*q, t))
            .min();
        self.cores.at_mut(pe).stalled = (t, flags);
        let w = self.wake.as_mut().expect("event mode");
        if flags & STALL_ISSUE != 0 {
            w.issue_sleepers += 1;
        }
        if let Some(r) = landing {
            w.timers.push(r, core_unit(pe));
        }
        true
    }

    pub(super) fn core_busy(&self, pe: usize) -> bool {
        let core = self.cores[pe].as_ref().expect("awake cores have code");
        let code = &self.p.codes[core.code];
        core.main != Main::Idle
            || core.ops.any()
            || code.tasks.iter().enumerate().any(|(i, t)| {
                t.kind == TaskKind::Local && core.active.has(i) && !core.blocked.has(i)
            })
            || core
                .queue
                .iter()
                .any(|q| !q.is_none() && !self.fifos.is_empty(*q))
    }
}

/// Store a wavelet in FIFO `fifo`, keeping its router's occupancy mask
/// (`at`, the machine's routers): the unit that pops it.
pub(super) fn land(
    fifos: &mut Fifos,
    at: &mut PeRows<Router>,
    fifo: FifoId,
    ready: u64,
    bits: u32,
) -> u32 {
    fifos.push(fifo, ready, bits);
    let ring = fifos.ring(fifo);
    let (o, slot) = (ring.owner, ring.slot);
    if o & 1 == 0 {
        let r = &mut at[o as usize / 2];
        if r.masked() {
            r.full |= 1u128 << slot;
        }
    }
    o
}

/// [`land`], and its owner woken from the next cycle (event mode).
pub(super) fn land_and_wake(
    fifos: &mut Fifos,
    at: &mut PeRows<Router>,
    wake: &mut Option<Wake>,
    fifo: FifoId,
    ready: u64,
    bits: u32,
) {
    let o = land(fifos, at, fifo, ready, bits);
    if let Some(w) = wake.as_mut()
        && w.rouse(o)
    {
        w.woken.push(o);
    }
}
