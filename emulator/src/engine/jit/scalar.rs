//! A code's scalar runner, compiled once the code is hot.

use super::emit::{Emit, FLAGS, Helpers};
use super::*;

/// A code's scalar runner: one block per instruction, entered through a
/// jump table on `pc`; registers live in variables between the load at
/// entry and the store at the exit.
pub(super) fn scalar_fn(b: FunctionBuilder, code: &PeCode, tc: TargetFrontendConfig, h: &Helpers) {
    let ptr = tc.pointer_type();
    let mut e = Emit { b, h, ptr };
    let n = code.insts.len();
    let entry = e.b.create_block();
    e.b.append_block_params_for_function_params(entry);
    e.b.switch_to_block(entry);
    let [rp, fp, sram, pc, budget] = e.b.block_params(entry).try_into().expect("5 params");
    let r: Vec<Variable> = (0..16).map(|_| e.b.declare_var(types::I32)).collect();
    let f: Vec<Variable> = (0..16).map(|_| e.b.declare_var(types::F32)).collect();
    for k in 0..16 {
        let x = e.b.ins().load(types::I32, FLAGS, rp, 4 * k as i32);
        e.b.def_var(r[k], x);
        let x = e.b.ins().load(types::F32, FLAGS, fp, 4 * k as i32);
        e.b.def_var(f[k], x);
    }
    let count = e.b.declare_var(types::I32);
    let zero = e.b.ins().iconst(types::I32, 0);
    e.b.def_var(count, zero);
    let exit = e.b.create_block();
    let exit_pc = e.b.append_block_param(exit, types::I32);
    // One block per instruction, plus one past the end.
    let blocks: Vec<_> = (0..=n).map(|_| e.b.create_block()).collect();
    let table: Vec<_> = blocks
        .iter()
        .map(|bl| e.b.func.dfg.block_call(*bl, &[]))
        .collect();
    let def = e.b.func.dfg.block_call(blocks[n], &[]);
    let jt = e.b.create_jump_table(JumpTableData::new(def, &table));
    e.b.ins().br_table(pc, jt);

    let ival = |e: &mut Emit, s: IntSrc| match s {
        IntSrc::Reg(x) => e.b.use_var(r[x.0 as usize]),
        IntSrc::Imm(i) => e.b.ins().iconst(types::I32, i as i64),
    };
    for (i, inst) in code.insts.iter().enumerate() {
        e.b.switch_to_block(blocks[i]);
        let here = e.b.ins().iconst(types::I32, i as i64);
        let stop = [BlockArg::Value(here)];
        if !scalar_covered(inst) {
            e.b.ins().jump(exit, &stop);
            continue;
        }
        let c = e.b.use_var(count);
        let full = e.b.ins().icmp(IntCC::Equal, c, budget);
        let go = e.b.create_block();
        e.b.ins().brif(full, exit, &stop, go, &[]);
        e.b.switch_to_block(go);
        // Where a check sends control back to the interpreter (a fault,
        // a division it words differently): then the count is unchanged.
        let bail = |e: &mut Emit, bad: Value| {
            let ok = e.b.create_block();
            e.b.ins().brif(bad, exit, &stop, ok, &[]);
            e.b.switch_to_block(ok);
        };
        let mut next = blocks[(i + 1).min(n)];
        match *inst {
            Inst::Li { rd, imm } => {
                let x = e.b.ins().iconst(types::I32, imm as i64);
                e.b.def_var(r[rd.0 as usize], x);
            }
            Inst::Lf { fd, imm } => {
                let x = e.b.ins().f32const(imm);
                e.b.def_var(f[fd.0 as usize], x);
            }
            Inst::Mov { rd, rs } => {
                let x = e.b.use_var(r[rs.0 as usize]);
                e.b.def_var(r[rd.0 as usize], x);
            }
            Inst::FMov { fd, fs } => {
                let x = e.b.use_var(f[fs.0 as usize]);
                e.b.def_var(f[fd.0 as usize], x);
            }
            Inst::Alu { op, rd, ra, b } => {
                let a = e.b.use_var(r[ra.0 as usize]);
                let bv = ival(&mut e, b);
                if matches!(op, AluOp::Div | AluOp::Rem) {
                    // A zero divisor faults and i32::MIN / -1 wraps: both
                    // are left to the interpreter.
                    let z = e.b.ins().icmp_imm_u(IntCC::Equal, bv, 0);
                    let m = e.b.ins().icmp_imm_s(IntCC::Equal, bv, -1);
                    let bad = e.b.ins().bor(z, m);
                    bail(&mut e, bad);
                }
                let ins = e.b.ins();
                let x = match op {
                    AluOp::Add => ins.iadd(a, bv),
                    AluOp::Sub => ins.isub(a, bv),
                    AluOp::Mul => ins.imul(a, bv),
                    AluOp::And => ins.band(a, bv),
                    AluOp::Or => ins.bor(a, bv),
                    AluOp::Xor => ins.bxor(a, bv),
                    AluOp::Shl => ins.ishl(a, bv),
                    AluOp::Shr => ins.sshr(a, bv),
                    AluOp::Min => ins.smin(a, bv),
                    AluOp::Max => ins.smax(a, bv),
                    AluOp::Div => ins.sdiv(a, bv),
                    AluOp::Rem => ins.srem(a, bv),
                };
                e.b.def_var(r[rd.0 as usize], x);
            }
            Inst::Falu { op, fd, fa, fb } => {
                let (a, bv) = (e.b.use_var(f[fa.0 as usize]), e.b.use_var(f[fb.0 as usize]));
                let x = e.binary(op, a, bv);
                e.b.def_var(f[fd.0 as usize], x);
            }
            Inst::Fun { op, fd, fa } => {
                let a = e.b.use_var(f[fa.0 as usize]);
                let x = e.unary(op, a);
                e.b.def_var(f[fd.0 as usize], x);
            }
            Inst::Fcmp { op, rd, fa, fb } => {
                let (a, bv) = (e.b.use_var(f[fa.0 as usize]), e.b.use_var(f[fb.0 as usize]));
                let cc = match op {
                    FcmpOp::Eq => FloatCC::Equal,
                    FcmpOp::Lt => FloatCC::LessThan,
                };
                let x = e.b.ins().fcmp(cc, a, bv);
                let x = e.b.ins().uextend(types::I32, x);
                e.b.def_var(r[rd.0 as usize], x);
            }
            Inst::ItoF { fd, rs } => {
                let a = e.b.use_var(r[rs.0 as usize]);
                let x = e.b.ins().fcvt_from_sint(types::F32, a);
                e.b.def_var(f[fd.0 as usize], x);
            }
            Inst::FtoI { rd, fs } => {
                let a = e.b.use_var(f[fs.0 as usize]);
                let x = e.b.ins().fcvt_to_sint_sat(types::I32, a);
                e.b.def_var(r[rd.0 as usize], x);
            }
            Inst::Ld { buf, idx, .. }
            | Inst::Ldf { buf, idx, .. }
            | Inst::St { buf, idx, .. }
            | Inst::Stf { buf, idx, .. } => {
                let bf = &code.buffers[buf.0 as usize];
                let iv = ival(&mut e, idx);
                // Negative indices compare as huge: one unsigned test.
                let bad =
                    e.b.ins()
                        .icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, iv, bf.len as i64);
                bail(&mut e, bad);
                let off = e.b.ins().imul_imm_s(iv, bf.dtype.size_bytes() as i64);
                let off = e.b.ins().iadd_imm_s(off, bf.offset as i64);
                let off = e.b.ins().uextend(ptr, off);
                let at = e.b.ins().iadd(sram, off);
                match *inst {
                    Inst::Ld { rd, .. } => {
                        let x = e.load_bits(bf.dtype, at);
                        e.b.def_var(r[rd.0 as usize], x);
                    }
                    Inst::Ldf { fd, .. } => {
                        let bits = e.load_bits(bf.dtype, at);
                        let x = e.decode(bf.dtype, bits);
                        e.b.def_var(f[fd.0 as usize], x);
                    }
                    Inst::St { rs, .. } => {
                        let x = e.b.use_var(r[rs.0 as usize]);
                        e.store_bits(bf.dtype, x, at);
                    }
                    Inst::Stf { fs, .. } => {
                        let x = e.b.use_var(f[fs.0 as usize]);
                        let bits = e.encode(bf.dtype, x);
                        e.store_bits(bf.dtype, bits, at);
                    }
                    _ => unreachable!(),
                }
            }
            Inst::Jmp { target } => next = blocks[(target as usize).min(n)],
            Inst::Br {
                cond,
                ra,
                b,
                target,
            } => {
                let a = e.b.use_var(r[ra.0 as usize]);
                let bv = ival(&mut e, b);
                let cc = match cond {
                    Cond::Eq => IntCC::Equal,
                    Cond::Ne => IntCC::NotEqual,
                    Cond::Lt => IntCC::SignedLessThan,
                    Cond::Ge => IntCC::SignedGreaterThanOrEqual,
                };
                let taken = e.b.ins().icmp(cc, a, bv);
                let c = e.b.ins().iadd_imm_s(c, 1);
                e.b.def_var(count, c);
                let t = blocks[(target as usize).min(n)];
                e.b.ins().brif(taken, t, &[], next, &[]);
                continue;
            }
            Inst::Vec(_) | Inst::End | Inst::Activate(_) | Inst::Block(_) | Inst::Unblock(_) => {
                unreachable!("not covered")
            }
        }
        let c = e.b.ins().iadd_imm_s(c, 1);
        e.b.def_var(count, c);
        e.b.ins().jump(next, &[]);
    }
    // Past the last instruction: back to the interpreter, which reports it.
    e.b.switch_to_block(blocks[n]);
    let end = e.b.ins().iconst(types::I32, n as i64);
    e.b.ins().jump(exit, &[BlockArg::Value(end)]);

    e.b.switch_to_block(exit);
    for k in 0..16 {
        let x = e.b.use_var(r[k]);
        e.b.ins().store(FLAGS, x, rp, 4 * k as i32);
        let x = e.b.use_var(f[k]);
        e.b.ins().store(FLAGS, x, fp, 4 * k as i32);
    }
    let c = e.b.use_var(count);
    let c = e.b.ins().uextend(types::I64, c);
    let c = e.b.ins().ishl_imm_u(c, 32);
    let p = e.b.ins().uextend(types::I64, exit_pc);
    let ret = e.b.ins().bor(c, p);
    e.b.ins().return_(&[ret]);
    e.b.seal_all_blocks();
    e.b.finalize(tc);
}
