//! The PE instruction set: scalar integer and float ops, branches, task
//! control, and vector ops over data-structure descriptors (memory vectors,
//! fabric input, fabric output).
//!
//! Instructions refer to buffers, tasks and branch targets by index into
//! their [`PeCode`](crate::PeCode); the assembly prints them by name.

use crate::{Color, DType};
use serde::{Deserialize, Serialize};

/// Integer registers `r0`..`r15` (i32).
pub const N_REGS: u8 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reg(pub u8);

/// Float registers `f0`..`f15` (f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FReg(pub u8);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BufId(pub u16);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskId(pub u8);

/// An integer operand: a register or an immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IntSrc {
    Reg(Reg),
    Imm(i32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AluOp {
    Add,
    Sub,
    Mul,
    And,
    Or,
    Xor,
    Shl,
    Shr,
    Min,
    Max,
    /// Signed division, rounding toward zero (a zero divisor is a fault).
    Div,
    /// Remainder with the dividend's sign (a zero divisor is a fault).
    Rem,
}

impl AluOp {
    pub const ALL: [AluOp; 12] = [
        AluOp::Add,
        AluOp::Sub,
        AluOp::Mul,
        AluOp::And,
        AluOp::Or,
        AluOp::Xor,
        AluOp::Shl,
        AluOp::Shr,
        AluOp::Min,
        AluOp::Max,
        AluOp::Div,
        AluOp::Rem,
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FaluOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

impl FaluOp {
    pub const ALL: [FaluOp; 6] = [
        FaluOp::Add,
        FaluOp::Sub,
        FaluOp::Mul,
        FaluOp::Div,
        FaluOp::Max,
        FaluOp::Min,
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FunOp {
    Neg,
    Abs,
    Sqrt,
    Rsqrt,
    Exp,
    Rcp,
    Sin,
    Cos,
}

impl FunOp {
    pub const ALL: [FunOp; 8] = [
        FunOp::Neg,
        FunOp::Abs,
        FunOp::Sqrt,
        FunOp::Rsqrt,
        FunOp::Exp,
        FunOp::Rcp,
        FunOp::Sin,
        FunOp::Cos,
    ];
}

/// Float comparisons into an integer register (1 if true, else 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FcmpOp {
    Eq,
    Lt,
}

impl FcmpOp {
    pub const ALL: [FcmpOp; 2] = [FcmpOp::Eq, FcmpOp::Lt];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cond {
    Eq,
    Ne,
    Lt,
    Ge,
}

impl Cond {
    pub const ALL: [Cond; 4] = [Cond::Eq, Cond::Ne, Cond::Lt, Cond::Ge];
}

/// Vector operations. `d` is the destination, `a`, `b`, `c` sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VecOp {
    /// d = a (converts between dtypes; a scalar source fills).
    Mov,
    Fadd,
    Fsub,
    Fmul,
    Fmax,
    /// d = a + b·c (product rounded, then the sum: not fused).
    Fmac,
    Exp,
    Rcp,
    Rsqrt,
    Sin,
    Cos,
    /// f += Σ a, in element order (destination is a float register).
    Sum,
    /// f += Σ a·b, in element order (destination is a float register).
    Dot,
    /// f = max(f, max a) (destination is a float register).
    Rmax,
}

impl VecOp {
    pub const ALL: [VecOp; 14] = [
        VecOp::Mov,
        VecOp::Fadd,
        VecOp::Fsub,
        VecOp::Fmul,
        VecOp::Fmax,
        VecOp::Fmac,
        VecOp::Exp,
        VecOp::Rcp,
        VecOp::Rsqrt,
        VecOp::Sin,
        VecOp::Cos,
        VecOp::Sum,
        VecOp::Dot,
        VecOp::Rmax,
    ];

    pub fn mnemonic(self) -> &'static str {
        match self {
            VecOp::Mov => "vmov",
            VecOp::Fadd => "vfadd",
            VecOp::Fsub => "vfsub",
            VecOp::Fmul => "vfmul",
            VecOp::Fmax => "vfmax",
            VecOp::Fmac => "vfmac",
            VecOp::Exp => "vexp",
            VecOp::Rcp => "vrcp",
            VecOp::Rsqrt => "vrsqrt",
            VecOp::Sin => "vsin",
            VecOp::Cos => "vcos",
            VecOp::Sum => "vsum",
            VecOp::Dot => "vdot",
            VecOp::Rmax => "vrmax",
        }
    }

    /// Number of source operands.
    pub fn arity(self) -> usize {
        match self {
            VecOp::Mov
            | VecOp::Exp
            | VecOp::Rcp
            | VecOp::Rsqrt
            | VecOp::Sin
            | VecOp::Cos
            | VecOp::Sum
            | VecOp::Rmax => 1,
            VecOp::Fadd | VecOp::Fsub | VecOp::Fmul | VecOp::Fmax | VecOp::Dot => 2,
            VecOp::Fmac => 3,
        }
    }

    /// Reductions write a float register instead of a vector.
    pub fn is_reduction(self) -> bool {
        matches!(self, VecOp::Sum | VecOp::Dot | VecOp::Rmax)
    }

    /// Exp, reciprocal, rsqrt, sin and cos take `special_fn_cycles` per element.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            VecOp::Exp | VecOp::Rcp | VecOp::Rsqrt | VecOp::Sin | VecOp::Cos
        )
    }
}

/// A memory vector: `len` elements of a buffer from `off`, `stride` apart.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemRef {
    pub buf: BufId,
    pub off: IntSrc,
    pub len: IntSrc,
    pub stride: IntSrc,
}

/// A vector operand (data-structure descriptor) or a scalar source.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Operand {
    Mem(MemRef),
    /// Wavelets arriving on a color (source only); elements in the
    /// instruction's dtype, two per wavelet for 16-bit types.
    FabIn {
        color: Color,
        len: Option<IntSrc>,
    },
    /// Wavelets sent on a color (destination only).
    FabOut {
        color: Color,
        len: Option<IntSrc>,
    },
    /// A float register: a scalar source, or a reduction's destination.
    FReg(FReg),
    /// A float immediate (source only).
    Imm(f32),
}

/// How a vector instruction runs: on the main thread (the task waits), or
/// on a microthread, optionally activating a task when it completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecMode {
    Sync,
    Async { thread: u8, on_done: Option<TaskId> },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VecInst {
    pub op: VecOp,
    pub dtype: DType,
    pub dst: Operand,
    pub srcs: Vec<Operand>,
    pub mode: ExecMode,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Inst {
    Li {
        rd: Reg,
        imm: i32,
    },
    Lf {
        fd: FReg,
        imm: f32,
    },
    Mov {
        rd: Reg,
        rs: Reg,
    },
    FMov {
        fd: FReg,
        fs: FReg,
    },
    Alu {
        op: AluOp,
        rd: Reg,
        ra: Reg,
        b: IntSrc,
    },
    Falu {
        op: FaluOp,
        fd: FReg,
        fa: FReg,
        fb: FReg,
    },
    Fun {
        op: FunOp,
        fd: FReg,
        fa: FReg,
    },
    /// rd = 1 if the comparison of fa with fb holds, else 0 (NaN compares false).
    Fcmp {
        op: FcmpOp,
        rd: Reg,
        fa: FReg,
        fb: FReg,
    },
    ItoF {
        fd: FReg,
        rs: Reg,
    },
    FtoI {
        rd: Reg,
        fs: FReg,
    },
    /// Load an element of an i32 buffer.
    Ld {
        rd: Reg,
        buf: BufId,
        idx: IntSrc,
    },
    /// Load an element of a float buffer, widened to f32.
    Ldf {
        fd: FReg,
        buf: BufId,
        idx: IntSrc,
    },
    St {
        buf: BufId,
        idx: IntSrc,
        rs: Reg,
    },
    Stf {
        buf: BufId,
        idx: IntSrc,
        fs: FReg,
    },
    Br {
        cond: Cond,
        ra: Reg,
        b: IntSrc,
        target: u32,
    },
    Jmp {
        target: u32,
    },
    Activate(TaskId),
    Block(TaskId),
    Unblock(TaskId),
    /// Finish the running task.
    End,
    Vec(VecInst),
}

/// Bytes of SRAM a scalar instruction occupies (inferred; no public encoding).
pub const SCALAR_INST_BYTES: u32 = 4;
/// Bytes a vector instruction occupies before its descriptors (inferred).
pub const VECTOR_INST_BYTES: u32 = 4;
/// Bytes one data-structure descriptor occupies (inferred).
pub const DSD_BYTES: u32 = 8;

impl Inst {
    /// SRAM bytes this instruction takes in the code image.
    pub fn encoded_bytes(&self) -> u32 {
        match self {
            Inst::Vec(v) => {
                let dsds = std::iter::once(&v.dst)
                    .chain(v.srcs.iter())
                    .filter(|o| {
                        matches!(
                            o,
                            Operand::Mem(_) | Operand::FabIn { .. } | Operand::FabOut { .. }
                        )
                    })
                    .count() as u32;
                VECTOR_INST_BYTES + dsds * DSD_BYTES
            }
            _ => SCALAR_INST_BYTES,
        }
    }

    /// Where control may go next besides the following instruction.
    pub fn branch_target(&self) -> Option<u32> {
        match self {
            Inst::Br { target, .. } | Inst::Jmp { target } => Some(*target),
            _ => None,
        }
    }
}
