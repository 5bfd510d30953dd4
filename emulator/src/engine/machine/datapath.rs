//! The vector datapath: one op served per cycle, its elements moved at the
//! op's rate between memory and the fabric (interpreted, compiled, or
//! timing-only).

use super::*;

/// The live op slots (bits of `live`) in round-robin order from slot `rr`
/// (at most 32): those at or after it, then those before, as `(rr + k) %
/// slots` for k = 0, 1, … visits them. A remainder per slot visited was a
/// fifth of a core's step; this is the routers' walk ([`fabric::turns`]),
/// whose 128 bits hold every slot.
fn round_robin(live: u32, rr: usize) -> impl Iterator<Item = usize> {
    fabric::turns(live.into(), rr)
}

impl<'p> Machine<'p> {
    pub(super) fn step_core(&mut self, pe: usize) -> Result<(), RunError> {
        self.step_datapath(pe)?;
        self.step_main(pe)
    }

    /// How many elements op `slot` could process in cycle `now` if nothing
    /// but the fabric limited it; 0 means it waits, and on what. An op
    /// with an empty input queue waits on input even if its output is
    /// also full (the input is what it needs first); otherwise a full
    /// ramp buffer is a wait on output.
    pub(super) fn fabric_avail(&self, op: &VecOpState, now: u64) -> (u32, Option<Wait>) {
        let per = op.dtype.per_word();
        let mut avail = op.n - op.done;
        let mut blocked_in = false;
        for s in &op.srcs {
            if let Loc::In { fifo, pend, .. } = *s {
                let a = pend + if self.fifos.ready(fifo, now) { per } else { 0 };
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

    pub(super) fn step_datapath(&mut self, pe: usize) -> Result<(), RunError> {
        let core = self.cores.at(pe);
        let (slots, live, rr) = (core.ops.len(), core.ops.live, core.rr);
        if live == 0 {
            return Ok(());
        }
        let (mut waited_in, mut waited_out) = (false, false);
        debug_assert!(rr <= slots && slots <= 32);
        for s in round_robin(live, rr) {
            let core = self.cores.at(pe);
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
            self.stats[pe].vector_cycles += 1;
            self.run_op(pe, s, avail)?;
            self.cores.at_mut(pe).rr = s + 1;
            break;
        }
        if waited_in {
            self.stats[pe].stall_in_cycles += 1;
        }
        if waited_out {
            self.stats[pe].stall_out_cycles += 1;
        }
        Ok(())
    }

    /// The next element's bits from a fabric input operand: a new wavelet
    /// is popped when the last one's values are used up.
    pub(super) fn take_in(
        &mut self,
        fifo: FifoId,
        pend_bits: &mut u32,
        pend: &mut u32,
        per: u32,
    ) -> u32 {
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
    pub(super) fn put_out(
        &mut self,
        pe: usize,
        fifo: FifoId,
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
        self.stats[pe].wavelets_from_core += 1;
        true
    }

    /// Process the next `k` elements of `op` (its values, not its timing):
    /// whether a wavelet went out. Shared by the per-cycle step and the
    /// event engine's jumps, so both compute the same bits.
    pub(super) fn elements(
        &mut self,
        pe: usize,
        op: &mut VecOpState,
        core: &mut CoreData,
        k: u32,
    ) -> bool {
        if self.timing {
            return self.elements_timing(pe, op, core, k);
        }
        if let Some(f) = op.jit {
            self.elements_jit(pe, op, core, k, f);
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
                        let x = read_elem(core.sram, *base, *dtype, *idx as u32);
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
                    write_bits(core.sram, *base, *dtype, *idx as u32, dtype.encode(value));
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
    pub(super) fn elements_jit(
        &mut self,
        pe: usize,
        op: &mut VecOpState,
        core: &mut CoreData,
        k: u32,
        f: jit::VecFn,
    ) {
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
        if self.compiled.defer {
            self.compiled.work.push(w);
        } else {
            Job::new(core.r, core.f, core.sram, &mut w).run();
        }
    }

    /// Timing-only [`Self::elements`]: fabric operands pop and push their
    /// wavelets exactly as in a functional run, but nothing is computed.
    /// A copy (`vmov`) carries known values; every other op's results, and
    /// anything read from memory never written with a known value (weights
    /// are not stored), are unknown.
    pub(super) fn elements_timing(
        &mut self,
        pe: usize,
        op: &mut VecOpState,
        core: &mut CoreData,
        k: u32,
    ) -> bool {
        let dt = op.dtype;
        let per = dt.per_word();
        let unknown = unknown_bits(dt);
        let copy = op.op == VecOp::Mov;
        if !op.steps_known_elements() {
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
                && !core.known.is_empty()
            {
                // A tile loop's results land mostly outside the range of
                // addresses ever made known: skip them in one check (each
                // removal would find nothing).
                let (first, last) = (idx - stride * k as i64, idx - stride);
                let span = elem_span(base, dtype, first.min(last), first.max(last));
                if span.is_some_and(|(lo, hi)| !core.known.may_hold_any(lo, hi)) {
                    op.done += k;
                    return false;
                }
                for j in 0..k as i64 {
                    let i = idx - stride * (k as i64 - j);
                    core.known.remove(&elem_addr(base, dtype, i));
                }
            }
            if let Loc::FReg(f) = op.dst {
                *core.fk &= !(1 << f);
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
                Loc::FReg(f) => *core.fk &= !(1 << *f),
                _ => {}
            }
            op.done += 1;
        }
        pushed
    }

    /// Hold the datapath for one cycle on op `slot`, processing up to `avail` elements.
    pub(super) fn run_op(&mut self, pe: usize, slot: usize, avail: u32) -> Result<(), RunError> {
        let mut cores = self.cores.detach();
        let core = cores.at_mut(pe);
        self.run_op_on(pe, core, slot, avail);
        self.cores.attach(cores);
        Ok(())
    }

    /// [`Self::run_op`] on core `pe`, detached from the machine (see
    /// [`Cores::detach`]) so its op is stepped where it lies.
    fn run_op_on(&mut self, pe: usize, core: &mut Core, slot: usize, avail: u32) {
        let now = self.now;
        let ramp = self.arch.ramp_latency;
        let (op, mut data) = core.op_and_data(slot);
        op.acc += op.num;
        // A whole number of elements a cycle (most rates) needs no division.
        let whole = if op.den == 1 { op.acc } else { op.acc / op.den };
        let k = whole.min(avail).min(op.n - op.done);
        op.acc = (op.acc - k * op.den).min(op.den - 1);
        let pushed = self.elements(pe, op, &mut data, k);
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
            self.stats[pe].wavelets_from_core += 1;
        }
        let finished = op.done == op.n && !matches!(op.dst, Loc::Out { pend, .. } if pend > 0);
        if !finished {
            return;
        }
        let op = core.ops.retire(slot).expect("the op just stepped");
        let (task, pc, on_done) = (op.task, op.pc, op.on_done);
        let at = self.layout.pe_at(pe);
        self.span(at, slot as u8, op.op.mnemonic(), op.issued_at);
        if slot == 0 {
            core.main = Main::Running { task, pc: pc + 1 };
        } else if let Some(t) = on_done {
            core.active.set(t as usize, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::round_robin;

    /// The mask walk visits the live slots in the order the modular walk
    /// from `rr` does, for every slot count, start and many masks.
    #[test]
    fn round_robin_is_the_modular_walk() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for slots in 1..=32usize {
            for _ in 0..64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let live = (seed as u32) & (u32::MAX >> (32 - slots));
                for rr in 0..=slots {
                    let modular: Vec<usize> = (0..slots)
                        .map(|k| (rr + k) % slots)
                        .filter(|s| live >> s & 1 == 1)
                        .collect();
                    assert_eq!(round_robin(live, rr).collect::<Vec<_>>(), modular);
                }
            }
        }
    }
}
