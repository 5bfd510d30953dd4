//! A vector op's element loop, compiled per shape.

use super::emit::{Emit, FLAGS, Helpers};
use super::*;

/// The element loop of one vector-op shape, as `elements` computes it.
pub(super) fn vec_fn(b: FunctionBuilder, s: &VecShape, tc: TargetFrontendConfig, h: &Helpers) {
    let ptr = tc.pointer_type();
    let mut e = Emit { b, h, ptr };
    let entry = e.b.create_block();
    e.b.append_block_params_for_function_params(entry);
    e.b.switch_to_block(entry);
    let [sram, accp, n, args] = e.b.block_params(entry).try_into().expect("4 params");
    let i = e.b.declare_var(types::I32);
    let zero = e.b.ins().iconst(types::I32, 0);
    e.b.def_var(i, zero);
    let mut addr = [None; 4];
    let mut step = [None; 4];
    let mut val = [None; 4];
    for (k, kind) in s.kinds.iter().enumerate() {
        match kind {
            Kind::Mem(_) => {
                let v = e.b.declare_var(types::I64);
                let a = e.b.ins().load(types::I64, FLAGS, args, 8 * k as i32);
                e.b.def_var(v, a);
                addr[k] = Some(v);
                step[k] = Some(e.b.ins().load(types::I64, FLAGS, args, 32 + 8 * k as i32));
            }
            Kind::Val => val[k] = Some(e.b.ins().load(types::F32, FLAGS, args, 64 + 4 * k as i32)),
            Kind::Reg | Kind::Unused => {}
        }
    }
    let acc = e.b.declare_var(types::F32);
    if s.kinds[0] == Kind::Reg {
        let a = e.b.ins().load(types::F32, FLAGS, accp, 0);
        e.b.def_var(acc, a);
    } else {
        let a = e.b.ins().f32const(0.0);
        e.b.def_var(acc, a);
    }
    let (head, body, exit) = (e.b.create_block(), e.b.create_block(), e.b.create_block());
    e.b.ins().jump(head, &[]);
    e.b.switch_to_block(head);
    let iv = e.b.use_var(i);
    let more = e.b.ins().icmp(IntCC::UnsignedLessThan, iv, n);
    e.b.ins().brif(more, body, &[], exit, &[]);

    e.b.switch_to_block(body);
    let dt = s.dtype;
    let mut v = [None; 3];
    for k in 1..4 {
        v[k - 1] = match s.kinds[k] {
            Kind::Mem(bt) => {
                let off = e.b.use_var(addr[k].expect("memory operand"));
                let at = e.b.ins().iadd(sram, off);
                let bits = e.load_bits(bt, at);
                let x = e.decode(bt, bits);
                Some(e.round(dt, x))
            }
            Kind::Val => val[k],
            _ => None,
        };
    }
    let zero_f = e.b.ins().f32const(0.0);
    let [a, b2, c] = v.map(|x| x.unwrap_or(zero_f));
    let value = match s.op {
        VecOp::Mov => Some(a),
        VecOp::Fadd | VecOp::Fsub | VecOp::Fmul | VecOp::Fmax => {
            let op = match s.op {
                VecOp::Fadd => FaluOp::Add,
                VecOp::Fsub => FaluOp::Sub,
                VecOp::Fmul => FaluOp::Mul,
                _ => FaluOp::Max,
            };
            let x = e.binary(op, a, b2);
            Some(e.round(dt, x))
        }
        VecOp::Fmac => {
            let p = e.b.ins().fmul(b2, c);
            let p = e.round(dt, p);
            let x = e.b.ins().fadd(a, p);
            Some(e.round(dt, x))
        }
        VecOp::Exp | VecOp::Rcp | VecOp::Rsqrt | VecOp::Sin | VecOp::Cos => {
            let op = match s.op {
                VecOp::Exp => FunOp::Exp,
                VecOp::Rcp => FunOp::Rcp,
                VecOp::Rsqrt => FunOp::Rsqrt,
                VecOp::Sin => FunOp::Sin,
                _ => FunOp::Cos,
            };
            let x = e.unary(op, a);
            Some(e.round(dt, x))
        }
        VecOp::Sum | VecOp::Dot | VecOp::Rmax => {
            let old = e.b.use_var(acc);
            let new = match s.op {
                VecOp::Sum => {
                    let x = e.b.ins().fadd(old, a);
                    e.round(dt, x)
                }
                VecOp::Dot => {
                    let p = e.b.ins().fmul(a, b2);
                    let p = e.round(dt, p);
                    let x = e.b.ins().fadd(old, p);
                    e.round(dt, x)
                }
                _ => e.binary(FaluOp::Max, old, a),
            };
            e.b.def_var(acc, new);
            None
        }
    };
    // A non-reduction into a register is not a shape the verifier allows;
    // writing it nowhere matches the interpreter.
    if let (Some(x), Kind::Mem(bt)) = (value, s.kinds[0]) {
        let off = e.b.use_var(addr[0].expect("memory destination"));
        let at = e.b.ins().iadd(sram, off);
        let bits = e.encode(bt, x);
        e.store_bits(bt, bits, at);
    }
    for k in 0..4 {
        if let (Some(av), Some(st)) = (addr[k], step[k]) {
            let x = e.b.use_var(av);
            let x = e.b.ins().iadd(x, st);
            e.b.def_var(av, x);
        }
    }
    let iv = e.b.use_var(i);
    let iv = e.b.ins().iadd_imm_s(iv, 1);
    e.b.def_var(i, iv);
    e.b.ins().jump(head, &[]);

    e.b.switch_to_block(exit);
    if s.kinds[0] == Kind::Reg {
        let a = e.b.use_var(acc);
        e.b.ins().store(FLAGS, a, accp, 0);
    }
    e.b.ins().return_(&[]);
    e.b.seal_all_blocks();
    e.b.finalize(tc);
}
