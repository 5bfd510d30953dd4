//! Program → assembly text. The output parses back to an equal Program.

use crate::isa::{AluOp, Cond, ExecMode, FaluOp, FcmpOp, FunOp, Inst, IntSrc, Operand};
use crate::program::{DataInit, TaskKind};
use crate::{PeCode, Program};
use std::fmt::{self, Write};

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&print(self))
    }
}

/// The assembly listing of a program.
pub fn print(p: &Program) -> String {
    let mut s = String::new();
    writeln!(s, ".grid {}x{}", p.width, p.height).unwrap();
    for code in &p.codes {
        s.push('\n');
        print_code(&mut s, code);
    }
    if !p.placements.is_empty() {
        s.push('\n');
    }
    for pl in &p.placements {
        writeln!(s, ".place {} {}", p.codes[pl.code.0 as usize].name, pl.pes).unwrap();
    }
    if !p.routes.is_empty() {
        s.push('\n');
    }
    for r in &p.routes {
        writeln!(
            s,
            ".route {} {} {} -> {}",
            r.pes, r.color, r.input, r.outputs
        )
        .unwrap();
    }
    if !p.data.is_empty() {
        s.push('\n');
    }
    for d in &p.data {
        writeln!(s, ".data {} {} = {}", d.buffer, d.pes, init(&d.init)).unwrap();
    }
    if !p.inputs.is_empty() || !p.outputs.is_empty() {
        s.push('\n');
    }
    for h in &p.inputs {
        write!(
            s,
            ".input {} {}[{}] -> {},{} {} {}",
            h.name, h.dtype, h.len, h.pe.x, h.pe.y, h.port, h.color
        )
        .unwrap();
        if h.period != 1 {
            write!(s, " every {}", h.period).unwrap();
        }
        if h.init != DataInit::Zero {
            write!(s, " = {}", init(&h.init)).unwrap();
        }
        s.push('\n');
    }
    for h in &p.outputs {
        write!(
            s,
            ".output {} {}[{}] <- {},{} {} {}",
            h.name, h.dtype, h.len, h.pe.x, h.pe.y, h.port, h.color
        )
        .unwrap();
        if h.period != 1 {
            write!(s, " every {}", h.period).unwrap();
        }
        s.push('\n');
    }
    s
}

/// The listing of one code (`.code` … `.end`), as `print` writes it.
pub fn code_listing(code: &PeCode) -> String {
    let mut s = String::new();
    print_code(&mut s, code);
    s
}

fn print_code(s: &mut String, code: &PeCode) {
    writeln!(s, ".code {}", code.name).unwrap();
    for b in &code.buffers {
        writeln!(
            s,
            "  .buffer {} {}[{}] @ {}",
            b.name, b.dtype, b.len, b.offset
        )
        .unwrap();
    }
    for t in &code.tasks {
        let kind = match t.kind {
            TaskKind::Data(c) => format!("data {c}"),
            TaskKind::Local => "local".to_string(),
        };
        write!(s, "  .task {} {kind}", t.name).unwrap();
        if t.active {
            s.push_str(" active");
        }
        if t.blocked {
            s.push_str(" blocked");
        }
        s.push('\n');
    }
    let mut labels = code.labels.iter().peekable();
    for (pc, inst) in code.insts.iter().enumerate() {
        while let Some((_, l)) = labels.next_if(|(i, _)| *i as usize == pc) {
            writeln!(s, "{l}:").unwrap();
        }
        writeln!(s, "  {}", inst_text(code, inst)).unwrap();
    }
    for (_, l) in labels {
        writeln!(s, "{l}:").unwrap();
    }
    s.push_str(".end\n");
}

fn init(i: &DataInit) -> String {
    match i {
        DataInit::Zero => "zero".into(),
        DataInit::Fill(v) => format!("fill({})", num(*v)),
        DataInit::Iota { start, step } => format!("iota({}, {})", num(*start), num(*step)),
        DataInit::Random { seed } => format!("rand({seed})"),
        DataInit::RandomInt { seed, max } => format!("randi({seed}, {max})"),
        DataInit::Values(v) => format!(
            "[{}]",
            v.iter().map(|x| num(*x)).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A float in a form that parses back to the same bits: finite values,
/// infinities and -0 as Rust prints them, the canonical NaN as `nan`, any
/// other NaN with its bits (`nan0x7fa55a5a`; timing-only mode's "unknown"
/// is such a NaN).
fn num(v: f32) -> String {
    if v.to_bits() == f32::NAN.to_bits() {
        "nan".into()
    } else if v.is_nan() {
        format!("nan0x{:08x}", v.to_bits())
    } else {
        format!("{v:?}")
    }
}

fn isrc(s: &IntSrc) -> String {
    match s {
        IntSrc::Reg(r) => format!("r{}", r.0),
        IntSrc::Imm(i) => i.to_string(),
    }
}

/// One instruction in assembly syntax.
pub fn inst_text(code: &PeCode, inst: &Inst) -> String {
    let buf = |b: crate::isa::BufId| {
        code.buffers
            .get(b.0 as usize)
            .map_or_else(|| format!("?buf{}", b.0), |b| b.name.clone())
    };
    let task = |t: crate::isa::TaskId| {
        code.tasks
            .get(t.0 as usize)
            .map_or_else(|| format!("?task{}", t.0), |t| t.name.clone())
    };
    let label = |t: u32| {
        code.label_at(t)
            .map_or_else(|| format!("?{t}"), str::to_string)
    };
    match inst {
        Inst::Li { rd, imm } => format!("li r{}, {imm}", rd.0),
        Inst::Lf { fd, imm } => format!("lf f{}, {}", fd.0, num(*imm)),
        Inst::Mov { rd, rs } => format!("mov r{}, r{}", rd.0, rs.0),
        Inst::FMov { fd, fs } => format!("fmov f{}, f{}", fd.0, fs.0),
        Inst::Alu { op, rd, ra, b } => {
            format!("{} r{}, r{}, {}", alu_name(*op), rd.0, ra.0, isrc(b))
        }
        Inst::Falu { op, fd, fa, fb } => {
            format!("{} f{}, f{}, f{}", falu_name(*op), fd.0, fa.0, fb.0)
        }
        Inst::Fun { op, fd, fa } => format!("{} f{}, f{}", fun_name(*op), fd.0, fa.0),
        Inst::ItoF { fd, rs } => format!("itof f{}, r{}", fd.0, rs.0),
        Inst::Fcmp { op, rd, fa, fb } => {
            format!("{} r{}, f{}, f{}", fcmp_name(*op), rd.0, fa.0, fb.0)
        }
        Inst::FtoI { rd, fs } => format!("ftoi r{}, f{}", rd.0, fs.0),
        Inst::Ld { rd, buf: b, idx } => format!("ld r{}, {}[{}]", rd.0, buf(*b), isrc(idx)),
        Inst::Ldf { fd, buf: b, idx } => format!("ldf f{}, {}[{}]", fd.0, buf(*b), isrc(idx)),
        Inst::St { buf: b, idx, rs } => format!("st {}[{}], r{}", buf(*b), isrc(idx), rs.0),
        Inst::Stf { buf: b, idx, fs } => format!("stf {}[{}], f{}", buf(*b), isrc(idx), fs.0),
        Inst::Br {
            cond,
            ra,
            b,
            target,
        } => format!(
            "{} r{}, {}, {}",
            cond_name(*cond),
            ra.0,
            isrc(b),
            label(*target)
        ),
        Inst::Jmp { target } => format!("jmp {}", label(*target)),
        Inst::Activate(t) => format!("activate {}", task(*t)),
        Inst::Block(t) => format!("block {}", task(*t)),
        Inst::Unblock(t) => format!("unblock {}", task(*t)),
        Inst::End => "end".into(),
        Inst::Vec(v) => {
            let opnd = |o: &Operand| match o {
                Operand::Mem(m) => {
                    let mut s = format!("{}[{}, {}", buf(m.buf), isrc(&m.off), isrc(&m.len));
                    if m.stride != IntSrc::Imm(1) {
                        write!(s, ", {}", isrc(&m.stride)).unwrap();
                    }
                    s.push(']');
                    s
                }
                Operand::FabIn { color, len: None } => format!("rx({color})"),
                Operand::FabIn {
                    color,
                    len: Some(l),
                } => format!("rx({color}, {})", isrc(l)),
                Operand::FabOut { color, len: None } => format!("tx({color})"),
                Operand::FabOut {
                    color,
                    len: Some(l),
                } => format!("tx({color}, {})", isrc(l)),
                Operand::FReg(f) => format!("f{}", f.0),
                Operand::Imm(x) => num(*x),
            };
            let mut s = format!("{}.{} {}", v.op.mnemonic(), v.dtype, opnd(&v.dst));
            for src in &v.srcs {
                write!(s, ", {}", opnd(src)).unwrap();
            }
            if let ExecMode::Async { thread, on_done } = v.mode {
                write!(s, " async {thread}").unwrap();
                if let Some(t) = on_done {
                    write!(s, " -> {}", task(t)).unwrap();
                }
            }
            s
        }
    }
}

pub(crate) fn alu_name(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "add",
        AluOp::Sub => "sub",
        AluOp::Mul => "mul",
        AluOp::And => "and",
        AluOp::Or => "or",
        AluOp::Xor => "xor",
        AluOp::Shl => "shl",
        AluOp::Shr => "shr",
        AluOp::Min => "min",
        AluOp::Max => "max",
        AluOp::Div => "div",
        AluOp::Rem => "rem",
    }
}

pub(crate) fn falu_name(op: FaluOp) -> &'static str {
    match op {
        FaluOp::Add => "fadd",
        FaluOp::Sub => "fsub",
        FaluOp::Mul => "fmul",
        FaluOp::Div => "fdiv",
        FaluOp::Max => "fmax",
        FaluOp::Min => "fmin",
    }
}

pub(crate) fn fun_name(op: FunOp) -> &'static str {
    match op {
        FunOp::Neg => "fneg",
        FunOp::Abs => "fabs",
        FunOp::Sqrt => "fsqrt",
        FunOp::Rsqrt => "frsqrt",
        FunOp::Exp => "fexp",
        FunOp::Rcp => "frcp",
        FunOp::Sin => "fsin",
        FunOp::Cos => "fcos",
    }
}

pub(crate) fn fcmp_name(op: FcmpOp) -> &'static str {
    match op {
        FcmpOp::Eq => "feq",
        FcmpOp::Lt => "flt",
    }
}

pub(crate) fn cond_name(c: Cond) -> &'static str {
    match c {
        Cond::Eq => "beq",
        Cond::Ne => "bne",
        Cond::Lt => "blt",
        Cond::Ge => "bge",
    }
}
