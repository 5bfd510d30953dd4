//! The main thread: picking and switching tasks, executing scalar
//! instructions (functional or timing-only), and issuing vector ops.

use super::*;

impl<'p> Machine<'p> {
    pub(super) fn step_main(&mut self, pe: usize) -> Result<(), RunError> {
        let p: &'p Program = self.p;
        let code: &'p PeCode = &p.codes[self.cores.at(pe).code];
        let main = self.cores.at(pe).main;
        match main {
            Main::Idle => {
                let core = self.cores.at(pe);
                let pick = code.tasks.iter().enumerate().position(|(i, t)| {
                    !core.blocked.has(i)
                        && match t.kind {
                            TaskKind::Local => core.active.has(i),
                            TaskKind::Data(c) => {
                                self.fifos.ready(core.queue[c.0 as usize], self.now)
                            }
                        }
                });
                let Some(t) = pick else { return Ok(()) };
                self.activity = true;
                self.stats[pe].tasks += 1;
                self.stats[pe].switch_cycles += 1;
                let switch = self.arch.task_switch_cycles;
                let now = self.now;
                let wavelet = match code.tasks[t].kind {
                    TaskKind::Data(c) => {
                        let q = self.cores.at(pe).queue[c.0 as usize];
                        Some(self.fifos.pop(q, now))
                    }
                    TaskKind::Local => None,
                };
                let core = self.cores.at_mut(pe);
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
                    core.active.set(t, false);
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
                self.stats[pe].switch_cycles += 1;
                let core = self.cores.at_mut(pe);
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

    pub(super) fn execute(
        &mut self,
        pe: usize,
        code: &'p PeCode,
        task: u8,
        pc: u32,
    ) -> Result<(), RunError> {
        let inst = &code.insts[pc as usize];
        let mut next = pc + 1;
        self.activity = true;
        if self.timing && self.execute_timing(pe, code, task, pc)? {
            self.stats[pe].scalar_cycles += 1;
            self.cores.at_mut(pe).main = Main::Running { task, pc: next };
            return Ok(());
        }
        let core = self.cores.at_mut(pe);
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
                let core = self.cores.at_mut(pe);
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
                let core = self.cores.at_mut(pe);
                core.r[rd.0 as usize] = read_bits(&core.sram, base, dt, i) as i32;
            }
            Inst::Ldf { fd, buf, idx } => {
                let (base, dt, i) =
                    index(core, *buf, *idx).map_err(|m| self.fault(pe, task, pc, m))?;
                let core = self.cores.at_mut(pe);
                core.f[fd.0 as usize] = read_elem(&core.sram, base, dt, i);
            }
            Inst::St { buf, idx, rs } => {
                let (base, dt, i) =
                    index(core, *buf, *idx).map_err(|m| self.fault(pe, task, pc, m))?;
                let core = self.cores.at_mut(pe);
                let v = core.r[rs.0 as usize] as u32;
                write_bits(&mut core.sram, base, dt, i, v);
            }
            Inst::Stf { buf, idx, fs } => {
                let (base, dt, i) =
                    index(core, *buf, *idx).map_err(|m| self.fault(pe, task, pc, m))?;
                let core = self.cores.at_mut(pe);
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
            Inst::Activate(t) => core.active.set(t.0 as usize, true),
            Inst::Block(t) => core.blocked.set(t.0 as usize, true),
            Inst::Unblock(t) => core.blocked.set(t.0 as usize, false),
            Inst::End => {
                self.stats[pe].scalar_cycles += 1;
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
                    self.stats[pe].stall_issue_cycles += 1;
                    return Ok(());
                }
                let op = self.issue(pe, code, task, pc, v)?;
                self.stats[pe].scalar_cycles += 1;
                let core = self.cores.at_mut(pe);
                core.ops.put(slot, op);
                core.main = if slot == 0 {
                    Main::WaitSync { task, pc }
                } else {
                    Main::Running { task, pc: next }
                };
                return Ok(());
            }
        }
        self.stats[pe].scalar_cycles += 1;
        let core = self.cores.at_mut(pe);
        core.main = Main::Running { task, pc: next };
        Ok(())
    }

    /// Timing-only mode, before instruction `pc` runs: track which
    /// registers hold known values, refuse what depends on an unknown one
    /// (a branch, a vector length or address, a store's index), and carry
    /// out the memory instructions on the known-value map. True when the
    /// instruction is done here; false to let [`Self::execute`] run it
    /// (its register arithmetic is cheap and its result's knownness is set).
    pub(super) fn execute_timing(
        &mut self,
        pe: usize,
        code: &'p PeCode,
        task: u8,
        pc: u32,
    ) -> Result<bool, RunError> {
        let inst = &code.insts[pc as usize];
        let core = self.cores.at(pe);
        let (rk, fk) = (core.rk, core.fk);
        let r = |x: crate::isa::Reg| rk >> x.0 & 1 == 1;
        let f = |x: crate::isa::FReg| fk >> x.0 & 1 == 1;
        let src = |s: IntSrc| match s {
            IntSrc::Reg(x) => r(x),
            IntSrc::Imm(_) => true,
        };
        let depends = |what: &str| {
            let core = self.cores.at(pe);
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
                    let core = self.cores.at_mut(pe);
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
                    let core = self.cores.at_mut(pe);
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
                let core = self.cores.at_mut(pe);
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
        let core = self.cores.at_mut(pe);
        core.rk = nrk;
        core.fk = nfk;
        Ok(false)
    }

    /// Resolve a vector instruction's descriptors (registers are read now).
    pub(super) fn issue(
        &self,
        pe: usize,
        code: &PeCode,
        task: u8,
        pc: u32,
        v: &VecInst,
    ) -> Result<VecOpState, RunError> {
        let core = self.cores.at(pe);
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
        let mut reads_b = 0u32; // bits of port bandwidth an element reads
        let mut writes_b = 0u32;
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
                    let bits = self.arch.operand_bits(b.dtype.bits(), stride.abs() == 1);
                    if is_dst {
                        writes_b += bits
                    } else {
                        reads_b += bits
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
        // The destination, then the sources, through one call of `loc`:
        // called from two places it was not inlined, and each operand
        // came back through memory, its reload stalled on the stores.
        let mut locs = [Loc::Unused; 4];
        let operands = std::iter::once((&v.dst, true)).chain(v.srcs.iter().map(|s| (s, false)));
        for (i, (o, is_dst)) in operands.enumerate() {
            locs[i] = loc(o, is_dst)?;
        }
        let [dst, srcs @ ..] = locs;
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
        let (num, den) = a.vector_rate(v.op, v.dtype, narrow, reads_b, writes_b);
        let jit = self
            .compiled
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
}
