//! The JIT engine's native code, compiled with Cranelift: per `PeCode`, a
//! scalar runner (its scalar instructions as one function entered at any
//! pc), and per shape of vector op on memory and registers, an element loop.
//!
//! Both compute exactly what the interpreter computes: the same f32
//! operations (IEEE add, sub, mul, div and sqrt are correctly rounded on
//! both sides), bf16 rounding inlined bit for bit as the `half` crate does
//! it, and everything else (f16 conversions, max/min, exp, sin, cos) by
//! calling the very Rust functions the interpreter uses. What the JIT does
//! not cover (task control, `end`, vector ops, a fault) returns to the
//! interpreter at that instruction, so it only ever runs ahead.
//!
//! One module per program (kept by its [`super::Prepared`] form), shared by
//! every PE that runs the same code and freed when that is dropped.
//! Element loops are compiled when a program first runs on the JIT engine;
//! a code's scalar runner once it is hot (see [`Compiled::heat`]).

use crate::isa::{AluOp, Cond, FaluOp, FcmpOp, FunOp, Inst, IntSrc, Operand, VecOp};
use crate::{DType, PeCode, Program};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    AbiParam, BlockArg, InstBuilder, JumpTableData, MemFlagsData, Signature, Type, UserFuncName,
    Value, types,
};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module, default_libcall_names};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// `(r, f, sram, pc, budget) -> executed << 32 | next pc`: runs at most
/// `budget` instructions from `pc`, stopping before one it does not cover.
pub(crate) type ScalarFn = unsafe extern "C" fn(*mut i32, *mut f32, *mut u8, u32, u32) -> u64;

/// `(sram, acc, n, args)`: `n` elements of a vector op; `acc` is the
/// destination register of a reduction.
pub(crate) type VecFn = unsafe extern "C" fn(*mut u8, *mut f32, u32, *const VecArgs);

/// A vector op's operands for [`VecFn`]: slot 0 is the destination, 1..=3
/// the sources; byte address of the current element and byte step for
/// memory operands, the value for scalar sources.
#[repr(C)]
#[derive(Default)]
pub(crate) struct VecArgs {
    pub addr: [i64; 4],
    pub step: [i64; 4],
    pub val: [f32; 4],
}

/// What an operand of a local vector op is, as far as its code is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Mem(DType),
    /// A scalar source (immediate or register, read at issue).
    Val,
    /// A reduction's destination register.
    Reg,
    Unused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct VecShape {
    pub op: VecOp,
    pub dtype: DType,
    pub kinds: [Kind; 4],
}

/// The shape of a vector instruction whose operands are all local (memory,
/// registers, immediates); fabric operands are the interpreter's.
pub(crate) fn vec_shape(code: &PeCode, v: &crate::isa::VecInst) -> Option<VecShape> {
    let kind = |o: &Operand, dst: bool| match o {
        Operand::Mem(m) => Some(Kind::Mem(code.buffers[m.buf.0 as usize].dtype)),
        Operand::FReg(_) if dst => Some(Kind::Reg),
        Operand::FReg(_) | Operand::Imm(_) => Some(Kind::Val),
        Operand::FabIn { .. } | Operand::FabOut { .. } => None,
    };
    let mut kinds = [Kind::Unused; 4];
    kinds[0] = kind(&v.dst, true)?;
    for (i, s) in v.srcs.iter().enumerate() {
        kinds[i + 1] = kind(s, false)?;
    }
    Some(VecShape {
        op: v.op,
        dtype: v.dtype,
        kinds,
    })
}

/// A program's compiled code. Element loops are compiled up front (a
/// program has few shapes); a code's scalar runner once the interpreter
/// has run [`HOT`] of its instructions, so code that runs a handful of
/// instructions per token is never compiled.
pub(crate) struct Compiled {
    /// The codes this was compiled from (the scalar runners are compiled later, from these).
    codes: Vec<PeCode>,
    /// Per code: its scalar runner once compiled (`None` inside when it
    /// has no scalar instruction the JIT covers, or compiling failed: then
    /// the interpreter runs it).
    scalar: Vec<OnceLock<Option<ScalarFn>>>,
    /// Per code: scalar instructions the interpreter has run.
    heat: Vec<AtomicU64>,
    pub vec: FxHashMap<VecShape, VecFn>,
    /// Owns the machine code the pointers above point into.
    backend: Mutex<Option<Backend>>,
}

/// Interpreted scalar instructions after which a code's runner is compiled.
const HOT: u64 = 20_000;

impl Compiled {
    /// Code `ci`'s scalar runner, if compiled.
    pub fn scalar(&self, ci: usize) -> Option<ScalarFn> {
        self.scalar[ci].get().copied().flatten()
    }

    /// Count `n` scalar instructions the interpreter ran for code `ci`,
    /// compiling its runner when that makes it hot.
    pub fn heat(&self, ci: usize, n: u64) {
        if self.scalar[ci].get().is_some() {
            return;
        }
        let h = self.heat[ci].fetch_add(n, Ordering::Relaxed) + n;
        if h >= HOT {
            self.scalar[ci].get_or_init(|| {
                let code = &self.codes[ci];
                if !code.insts.iter().any(scalar_covered) {
                    return None;
                }
                let mut b = self.backend.lock().ok()?;
                b.as_mut()?.scalar(code).ok()
            });
        }
    }
}

impl Drop for Compiled {
    fn drop(&mut self) {
        if let Some(b) = self.backend.lock().ok().and_then(|mut b| b.take()) {
            // SAFETY: the function pointers into this memory live in `self`,
            // which is being dropped; a run borrows the `Arc` for its length.
            unsafe { b.module.free_memory() };
        }
    }
}

/// Compile `p`'s element loops (its scalar runners come later, as they get
/// hot); the [`super::Prepared`] program keeps the result.
pub(crate) fn compile(p: &Program) -> Result<Arc<Compiled>, String> {
    let mut backend = Backend::new()?;
    let mut shapes: Vec<VecShape> = Vec::new();
    for code in &p.codes {
        for i in &code.insts {
            if let Inst::Vec(v) = i
                && let Some(s) = vec_shape(code, v)
                && !shapes.contains(&s)
            {
                shapes.push(s);
            }
        }
    }
    let vec = backend.vec(&shapes)?;
    let c = Arc::new(Compiled {
        codes: p.codes.clone(),
        scalar: p.codes.iter().map(|_| OnceLock::new()).collect(),
        heat: p.codes.iter().map(|_| AtomicU64::new(0)).collect(),
        vec: shapes.into_iter().zip(vec).collect(),
        backend: Mutex::new(Some(backend)),
    });
    Ok(c)
}

/// A Cranelift JIT module and what defining functions in it needs.
struct Backend {
    module: JITModule,
    ctx: cranelift_codegen::Context,
    fctx: FunctionBuilderContext,
    helpers: Helpers,
    defined: u32,
}

fn jit_err(e: &dyn std::fmt::Display) -> String {
    format!("JIT: {e}")
}

impl Backend {
    fn new() -> Result<Backend, String> {
        let mut flags = settings::builder();
        let set =
            |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| jit_err(&e));
        set(&mut flags, "opt_level", "speed")?;
        set(&mut flags, "use_colocated_libcalls", "false")?;
        set(&mut flags, "is_pic", "false")?;
        // Cranelift's IR verifier in debug builds (tests), not in release.
        let verify = if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        };
        set(&mut flags, "enable_verifier", verify)?;
        let isa = cranelift_native::builder()
            .map_err(|e| jit_err(&e))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| jit_err(&e))?;
        let module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        Ok(Backend {
            ctx: module.make_context(),
            fctx: FunctionBuilderContext::new(),
            helpers: Helpers::new(&module),
            module,
            defined: 0,
        })
    }

    /// Declare a function of `params` (and an i64 result when `ret`),
    /// build its body, and define it.
    fn define(
        &mut self,
        params: &[Type],
        ret: bool,
        body: impl FnOnce(FunctionBuilder, TargetFrontendConfig, &Helpers),
    ) -> Result<cranelift_module::FuncId, String> {
        let mut sig = self.module.make_signature();
        sig.params.extend(params.iter().map(|t| AbiParam::new(*t)));
        if ret {
            sig.returns.push(AbiParam::new(types::I64));
        }
        self.defined += 1;
        let id = self
            .module
            .declare_function(&format!("f{}", self.defined), Linkage::Local, &sig)
            .map_err(|e| jit_err(&e))?;
        self.ctx.func.signature = sig;
        self.ctx.func.name = UserFuncName::user(0, id.as_u32());
        body(
            FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx),
            self.module.target_config(),
            &self.helpers,
        );
        self.module
            .define_function(id, &mut self.ctx)
            .map_err(|e| jit_err(&e))?;
        self.module.clear_context(&mut self.ctx);
        Ok(id)
    }

    fn scalar(&mut self, code: &PeCode) -> Result<ScalarFn, String> {
        let ptr = self.module.target_config().pointer_type();
        let id = self.define(
            &[ptr, ptr, ptr, types::I32, types::I32],
            true,
            |b, tc, h| scalar_fn(b, code, tc, h),
        )?;
        self.module
            .finalize_definitions()
            .map_err(|e| jit_err(&e))?;
        // SAFETY: defined above with exactly ScalarFn's signature.
        Ok(unsafe {
            std::mem::transmute::<*const u8, ScalarFn>(self.module.get_finalized_function(id))
        })
    }

    fn vec(&mut self, shapes: &[VecShape]) -> Result<Vec<VecFn>, String> {
        let ptr = self.module.target_config().pointer_type();
        let ids = shapes
            .iter()
            .map(|s| {
                self.define(&[ptr, ptr, types::I32, ptr], false, |b, tc, h| {
                    vec_fn(b, s, tc, h)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.module
            .finalize_definitions()
            .map_err(|e| jit_err(&e))?;
        Ok(ids
            .into_iter()
            .map(|id| {
                // SAFETY: defined above with exactly VecFn's signature.
                unsafe {
                    std::mem::transmute::<*const u8, VecFn>(self.module.get_finalized_function(id))
                }
            })
            .collect())
    }
}

/// Scalar instructions the scalar runner executes itself.
fn scalar_covered(i: &Inst) -> bool {
    !matches!(
        i,
        Inst::Vec(_) | Inst::End | Inst::Activate(_) | Inst::Block(_) | Inst::Unblock(_)
    )
}

// The functions compiled code calls for what it does not inline: the
// interpreter's own arithmetic, so results agree bit for bit.
extern "C" fn h_f16_decode(bits: u32) -> f32 {
    DType::F16.decode(bits)
}
extern "C" fn h_f16_encode(x: f32) -> u32 {
    DType::F16.encode(x)
}
extern "C" fn h_f16_round(x: f32) -> f32 {
    DType::F16.round(x)
}
extern "C" fn h_max(a: f32, b: f32) -> f32 {
    a.max(b)
}
extern "C" fn h_min(a: f32, b: f32) -> f32 {
    a.min(b)
}
extern "C" fn h_exp(a: f32) -> f32 {
    a.exp()
}
extern "C" fn h_sin(a: f32) -> f32 {
    a.sin()
}
extern "C" fn h_cos(a: f32) -> f32 {
    a.cos()
}

/// Signatures of the helper calls, by argument and result types.
struct Helpers {
    f_f: Signature,
    ff_f: Signature,
    i_f: Signature,
    f_i: Signature,
}

impl Helpers {
    fn new(m: &JITModule) -> Helpers {
        let sig = |params: &[Type], ret: Type| {
            let mut s = m.make_signature();
            s.params.extend(params.iter().map(|t| AbiParam::new(*t)));
            s.returns.push(AbiParam::new(ret));
            s
        };
        Helpers {
            f_f: sig(&[types::F32], types::F32),
            ff_f: sig(&[types::F32, types::F32], types::F32),
            i_f: sig(&[types::I32], types::F32),
            f_i: sig(&[types::F32], types::I32),
        }
    }
}

/// An instruction emitter: a function builder plus the helpers' signatures.
struct Emit<'a, 'f> {
    b: FunctionBuilder<'f>,
    h: &'a Helpers,
    ptr: Type,
}

const FLAGS: MemFlagsData = MemFlagsData::trusted();

impl Emit<'_, '_> {
    fn call(&mut self, sig: &Signature, f: usize, args: &[Value]) -> Value {
        let sr = self.b.import_signature(sig.clone());
        let callee = self.b.ins().iconst(self.ptr, f as i64);
        let c = self.b.ins().call_indirect(sr, callee, args);
        self.b.inst_results(c)[0]
    }

    /// A bf16 NaN test on f32 bits: `bits & 0x7fff_ffff > 0x7f80_0000`.
    fn is_nan_bits(&mut self, bits: Value) -> Value {
        let abs = self.b.ins().band_imm_u(bits, 0x7fff_ffff);
        self.b
            .ins()
            .icmp_imm_u(IntCC::UnsignedGreaterThan, abs, 0x7f80_0000)
    }

    /// `half`'s f32 → bf16 bits (low 16 bits of an i32).
    fn bf16_bits(&mut self, x: Value) -> Value {
        let bits = self.b.ins().bitcast(types::I32, MemFlagsData::new(), x);
        let hi = self.b.ins().ushr_imm_u(bits, 16);
        let nan = self.is_nan_bits(bits);
        let quiet = self.b.ins().bor_imm_u(hi, 0x40);
        let rb = self.b.ins().band_imm_u(bits, 0x8000);
        let rb = self.b.ins().icmp_imm_u(IntCC::NotEqual, rb, 0);
        let rest = self.b.ins().band_imm_u(bits, 3 * 0x8000 - 1);
        let rest = self.b.ins().icmp_imm_u(IntCC::NotEqual, rest, 0);
        let up = self.b.ins().band(rb, rest);
        let up = self.b.ins().uextend(types::I32, up);
        let rounded = self.b.ins().iadd(hi, up);
        let rounded = self.b.ins().band_imm_u(rounded, 0xffff);
        self.b.ins().select(nan, quiet, rounded)
    }

    /// `half`'s bf16 bits → f32.
    fn bf16_value(&mut self, bits16: Value) -> Value {
        let abs = self.b.ins().band_imm_u(bits16, 0x7fff);
        let nan = self
            .b
            .ins()
            .icmp_imm_u(IntCC::UnsignedGreaterThan, abs, 0x7f80);
        let quiet = self.b.ins().bor_imm_u(bits16, 0x40);
        let bits = self.b.ins().select(nan, quiet, bits16);
        let bits = self.b.ins().ishl_imm_u(bits, 16);
        self.b.ins().bitcast(types::F32, MemFlagsData::new(), bits)
    }

    fn round(&mut self, dt: DType, x: Value) -> Value {
        match dt {
            DType::F32 | DType::I32 => x,
            DType::BF16 => {
                let bits = self.bf16_bits(x);
                self.bf16_value(bits)
            }
            DType::F16 => {
                let h = self.h.f_f.clone();
                self.call(&h, h_f16_round as *const () as usize, &[x])
            }
        }
    }

    /// `dt.encode(x)`: storage bits in an i32.
    fn encode(&mut self, dt: DType, x: Value) -> Value {
        match dt {
            DType::F32 => self.b.ins().bitcast(types::I32, MemFlagsData::new(), x),
            DType::BF16 => self.bf16_bits(x),
            DType::F16 => {
                let h = self.h.f_i.clone();
                self.call(&h, h_f16_encode as *const () as usize, &[x])
            }
            DType::I32 => self.b.ins().fcvt_to_sint_sat(types::I32, x),
        }
    }

    /// `dt.decode(bits)`.
    fn decode(&mut self, dt: DType, bits: Value) -> Value {
        match dt {
            DType::F32 => self.b.ins().bitcast(types::F32, MemFlagsData::new(), bits),
            DType::BF16 => self.bf16_value(bits),
            DType::F16 => {
                let h = self.h.i_f.clone();
                self.call(&h, h_f16_decode as *const () as usize, &[bits])
            }
            DType::I32 => self.b.ins().fcvt_from_sint(types::F32, bits),
        }
    }

    /// The raw storage bits at `addr` (16-bit types zero-extended).
    fn load_bits(&mut self, dt: DType, addr: Value) -> Value {
        if dt.size_bytes() == 4 {
            self.b.ins().load(types::I32, FLAGS, addr, 0)
        } else {
            self.b.ins().uload16(types::I32, FLAGS, addr, 0)
        }
    }

    fn store_bits(&mut self, dt: DType, bits: Value, addr: Value) {
        if dt.size_bytes() == 4 {
            self.b.ins().store(FLAGS, bits, addr, 0);
        } else {
            self.b.ins().istore16(FLAGS, bits, addr, 0);
        }
    }

    fn unary(&mut self, op: FunOp, a: Value) -> Value {
        let one = || 1.0f32;
        match op {
            FunOp::Neg => self.b.ins().fneg(a),
            FunOp::Abs => self.b.ins().fabs(a),
            FunOp::Sqrt => self.b.ins().sqrt(a),
            FunOp::Rsqrt => {
                let s = self.b.ins().sqrt(a);
                let o = self.b.ins().f32const(one());
                self.b.ins().fdiv(o, s)
            }
            FunOp::Rcp => {
                let o = self.b.ins().f32const(one());
                self.b.ins().fdiv(o, a)
            }
            FunOp::Exp | FunOp::Sin | FunOp::Cos => {
                let f = match op {
                    FunOp::Exp => h_exp as *const () as usize,
                    FunOp::Sin => h_sin as *const () as usize,
                    _ => h_cos as *const () as usize,
                };
                let h = self.h.f_f.clone();
                self.call(&h, f, &[a])
            }
        }
    }

    fn binary(&mut self, op: FaluOp, a: Value, b: Value) -> Value {
        match op {
            FaluOp::Add => self.b.ins().fadd(a, b),
            FaluOp::Sub => self.b.ins().fsub(a, b),
            FaluOp::Mul => self.b.ins().fmul(a, b),
            FaluOp::Div => self.b.ins().fdiv(a, b),
            FaluOp::Max | FaluOp::Min => {
                let f = if op == FaluOp::Max {
                    h_max as *const () as usize
                } else {
                    h_min as *const () as usize
                };
                let h = self.h.ff_f.clone();
                self.call(&h, f, &[a, b])
            }
        }
    }
}

/// The element loop of one vector-op shape, as `elements` computes it.
fn vec_fn(b: FunctionBuilder, s: &VecShape, tc: TargetFrontendConfig, h: &Helpers) {
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

/// A code's scalar runner: one block per instruction, entered through a
/// jump table on `pc`; registers live in variables between the load at
/// entry and the store at the exit.
fn scalar_fn(b: FunctionBuilder, code: &PeCode, tc: TargetFrontendConfig, h: &Helpers) {
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
