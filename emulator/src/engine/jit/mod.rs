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

mod emit;
mod scalar;
mod vector;

use emit::Helpers;
use scalar::scalar_fn;
use vector::vec_fn;

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
    // Element loops over 4-bit elements (two to a byte) are interpreted:
    // a compiled loop steps whole bytes.
    let kind = |o: &Operand, dst: bool| match o {
        Operand::Mem(m) => match code.buffers[m.buf.0 as usize].dtype {
            d if d.bits() < 8 => None,
            d => Some(Kind::Mem(d)),
        },
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
