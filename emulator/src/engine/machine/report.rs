//! The end of a run: the result (outputs, statistics, trace, SRAM) and, for
//! a deadlock or a cycle limit, what every waiting PE waits on.

use super::*;

/// What a finished run's result is made from besides its parts: the
/// program, the machine and how it ran.
pub(super) struct Finished<'p> {
    pub(super) p: &'p Program,
    pub(super) arch: &'p Arch,
    pub(super) engine: super::super::Engine,
    pub(super) timing: bool,
    pub(super) cycles: u64,
}

impl Finished<'_> {
    /// The result of a run that finished at `cycles` with every PE's
    /// counters `rows`, its host inputs and outputs (each stream once, in
    /// any order), spans and SRAM.
    pub(super) fn result(
        &self,
        rows: &[PeCounters],
        host_in: Vec<HostIn>,
        host_out: Vec<HostOut>,
        log: SpanLog,
        memory: Memory,
    ) -> RunResult {
        let (p, arch, cycles) = (self.p, self.arch, self.cycles);
        let mut stats = Stats {
            version: STATS_VERSION,
            arch: arch.name.clone(),
            clock_hz: arch.clock_hz,
            width: p.width,
            height: p.height,
            cycles,
            engine: match (self.engine, self.timing) {
                (e, false) => e.name().to_string(),
                // Timing-only mode computes nothing, so nothing is compiled.
                (crate::engine::Engine::Jit, true) => "interp, timing-only".into(),
                (e, true) => format!("{}, timing-only", e.name()),
            },
            totals: Default::default(),
            pe: to_stats(rows),
        };
        stats.totals = stats.pe.totals();
        let input_times = (host_in.into_iter())
            .map(|h| (p.inputs[h.stream].name.clone(), h.times))
            .collect();
        let mut output_times = BTreeMap::new();
        let outputs = host_out
            .into_iter()
            .map(|o| {
                let name = p.outputs[o.stream].name.clone();
                output_times.insert(name.clone(), o.times);
                (name, o.values)
            })
            .collect::<BTreeMap<_, _>>();
        let trace = log.on.then_some(Trace {
            version: TRACE_VERSION,
            clock_hz: arch.clock_hz,
            width: p.width,
            height: p.height,
            spans: log.spans,
            dropped: log.dropped,
        });
        RunResult {
            cycles,
            outputs,
            input_times,
            output_times,
            stats,
            trace,
            memory,
            width: p.width,
        }
    }
}

impl<'p> Machine<'p> {
    pub(super) fn finish(mut self) -> Result<RunResult, RunError> {
        self.count_moves();
        let waiting = self.waiting_report();
        if !waiting.is_empty() {
            return Err(RunError::Deadlock {
                cycle: self.now,
                waiting,
            });
        }
        let memory = self
            .cores
            .v
            .into_iter()
            .map(|c| c.filter(|_| !self.timing).map(|c| c.sram))
            .collect();
        Ok(Finished {
            p: self.p,
            arch: self.arch,
            engine: self.engine,
            timing: self.timing,
            cycles: self.now,
        }
        .result(&self.stats.v, self.host_in, self.host_out, self.log, memory))
    }

    /// Everything that is not finished: waiting tasks and ops, non-empty
    /// buffers and queues, incomplete host streams. Empty when the run is done.
    pub(super) fn waiting_report(&self) -> Vec<String> {
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
        for (pe, core) in self.cores.iter() {
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
                                    if !self.fifos.ready(fifo, self.now) =>
                                {
                                    match self.fifos.what(fifo) {
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
        // Router buffers, then input queues, each in PE order (a PE's
        // buffers and queues are allocated together).
        let buffers = self
            .fifos
            .ids()
            .filter(|f| matches!(self.fifos.what(*f), FifoKind::Router { .. }));
        let queues = self
            .fifos
            .ids()
            .filter(|f| matches!(self.fifos.what(*f), FifoKind::Queue { .. }));
        for f in buffers.chain(queues) {
            let waiting = self.fifos.count(f);
            if waiting == 0 {
                continue;
            }
            match self.fifos.what(f) {
                FifoKind::Router { pe, port, color } => {
                    let pi = self.layout.pe_index(pe);
                    let outs = self.layout.route(pi, color, port);
                    add(format!(
                        "  {pe} router buffer {port}/c{color}: {} wavelet(s) waiting to go to {outs}",
                        waiting
                    ));
                }
                FifoKind::Queue { pe, color } => {
                    let core = self.cores.at(self.layout.pe_index(pe));
                    let code = &self.p.codes[core.code];
                    let blocked: Vec<&str> = code
                        .tasks
                        .iter()
                        .enumerate()
                        .filter(|(i, t)| {
                            t.kind == TaskKind::Data(crate::Color(color)) && core.blocked.has(*i)
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
        for h in &self.host_in {
            let s = &self.p.inputs[h.stream];
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
        for o in &self.host_out {
            let s = &self.p.outputs[o.stream];
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
