//! The Program verifier: structural invariants that hold whatever machine
//! runs the program. Run after parsing, after loading a binary, and (in debug
//! builds) between compiler passes.
//!
//! It checks:
//! * the rectangle is non-empty; every placement, route, data image and host
//!   stream lies inside it; steps are at least 1; no PE has two placements;
//! * per code: at most [`MAX_TASKS`] tasks (an instruction names a task by
//!   an 8-bit id); buffer, task and label names are unique; labels are in index
//!   order; every task's entry carries a label with the task's name; every
//!   branch target is in range and labelled; the code ends in `end` or `jmp`;
//! * buffers are 4-byte aligned, non-empty, and overlap neither the code
//!   (which sits at offset 0) nor each other;
//! * instructions use registers `r0..r15`/`f0..f15`, existing buffers and
//!   tasks, integer loads/stores on `i32` buffers and float ones on float
//!   buffers, `activate` on local tasks only; storage-only buffers
//!   (quantized weights: `i8`, `mxfp4`, `e8m0`) are read by vector ops
//!   only (and `e8m0` scales by `ldf`): no other scalar access, no write;
//! * vector instructions have the op's arity, a float dtype, a vector (or for
//!   reductions a float register) destination, fabric input only as a source
//!   and fabric output only as the destination, some operand that gives the
//!   length, and immediate memory ranges inside their buffer;
//! * every data image names a buffer of the code at each of its PEs, with as
//!   many values as the buffer has elements;
//! * host streams have unique names, non-empty float data, a period of at
//!   least 1, and sit on an off-grid port of an edge PE.
//!
//! Machine-dependent checks (SRAM size, colors, route conflicts) are in
//! [`crate::check`].

use crate::isa::{ExecMode, Inst, IntSrc, MemRef, N_REGS, Operand};
use crate::program::TaskKind;
use crate::{DType, PeCode, PeRect, Program};
use std::collections::HashSet;
use std::fmt;

/// Every broken invariant found, each naming the entity it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyError {
    pub errors: Vec<String>,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "invalid program: ")?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for VerifyError {}

pub fn verify(p: &Program) -> Result<(), VerifyError> {
    let mut errors = Vec::new();
    let mut err = |m: String| {
        if errors.len() < 50 {
            errors.push(m)
        }
    };
    if let Err(e) = crate::geom::check_grid(p.width, p.height) {
        err(format!("program rectangle: {e}"));
        return Err(VerifyError { errors });
    }
    let inside = |r: &PeRect| {
        r.sx >= 1
            && r.sy >= 1
            && r.w >= 1
            && r.h >= 1
            && r.x_end() <= p.width as u64
            && r.y_end() <= p.height as u64
    };

    let mut owner = vec![u32::MAX; p.n_pes() as usize];
    for (i, pl) in p.placements.iter().enumerate() {
        if pl.code.0 as usize >= p.codes.len() {
            err(format!(
                "placement {i} names code #{} but there are {}",
                pl.code.0,
                p.codes.len()
            ));
            continue;
        }
        if !inside(&pl.pes) {
            err(format!(
                "placement of `{}` at {} is not inside the {}x{} program rectangle",
                p.codes[pl.code.0 as usize].name, pl.pes, p.width, p.height
            ));
            continue;
        }
        for pe in pl.pes.iter() {
            let slot = &mut owner[(pe.y * p.width + pe.x) as usize];
            if *slot != u32::MAX {
                err(format!(
                    "{pe} is placed twice (`{}` and `{}`)",
                    p.codes[*slot as usize].name, p.codes[pl.code.0 as usize].name
                ));
            }
            *slot = pl.code.0;
        }
    }
    let mut code_names = HashSet::new();
    for code in &p.codes {
        if !code_names.insert(&code.name) {
            err(format!("code `{}` is defined twice", code.name));
        }
        verify_code(code, &mut err);
    }
    for r in &p.routes {
        if !inside(&r.pes) {
            err(format!(
                "route {} {} from {} is not inside the program rectangle",
                r.pes, r.color, r.input
            ));
        }
        if r.outputs.0 >> crate::Port::COUNT != 0 {
            err(format!(
                "route {} {} from {} names output ports that do not exist (bits {:#x})",
                r.pes, r.color, r.input, r.outputs.0
            ));
        }
        if r.outputs.is_empty() {
            err(format!(
                "route {} {} from {} has no output ports",
                r.pes, r.color, r.input
            ));
        }
    }
    for d in &p.data {
        if !inside(&d.pes) {
            err(format!(
                "data for `{}` at {} is not inside the program rectangle",
                d.buffer, d.pes
            ));
            continue;
        }
        for pe in d.pes.iter() {
            let code = match owner[(pe.y * p.width + pe.x) as usize] {
                u32::MAX => None,
                c => Some(&p.codes[c as usize]),
            };
            let Some(code) = code else {
                err(format!(
                    "data for `{}` at {pe}, which runs no code",
                    d.buffer
                ));
                break;
            };
            let Some(b) = code.buffer(&d.buffer) else {
                err(format!(
                    "data for `{}` at {pe}, but code `{}` has no such buffer",
                    d.buffer, code.name
                ));
                break;
            };
            if let crate::DataInit::Values(v) = &d.init {
                let want = code.buffers[b].len as usize;
                if v.len() != want {
                    err(format!(
                        "data for `{}` at {pe} has {} values, the buffer holds {want}",
                        d.buffer,
                        v.len()
                    ));
                    break;
                }
            }
        }
    }
    let mut names = HashSet::new();
    for (kind, s) in p
        .inputs
        .iter()
        .map(|s| ("input", s))
        .chain(p.outputs.iter().map(|s| ("output", s)))
    {
        if let Some(m) = bad_name("host stream", &s.name) {
            err(m);
            continue;
        }
        if !names.insert(&s.name) {
            err(format!("host stream `{}` is declared twice", s.name));
        }
        if s.len == 0 || !s.dtype.is_float() || s.period == 0 {
            err(format!(
                "host {kind} `{}` needs a float dtype, at least one element and a period of at least 1",
                s.name
            ));
        }
        if s.pe.x >= p.width || s.pe.y >= p.height {
            err(format!(
                "host {kind} `{}` is at {}, outside the {}x{} program rectangle",
                s.name, s.pe, p.width, p.height
            ));
        } else if s.port == crate::Port::Ramp || s.pe.neighbour(s.port, p.width, p.height).is_some()
        {
            err(format!(
                "host {kind} `{}` uses port {} of {}, which does not face off the grid",
                s.name, s.port, s.pe
            ));
        }
        if kind == "output" && s.init != crate::DataInit::Zero {
            err(format!(
                "host output `{}` has default values; only inputs have them",
                s.name
            ));
        }
        if let crate::DataInit::Values(v) = &s.init
            && v.len() != s.len as usize
        {
            err(format!(
                "host {kind} `{}` has {} default values for {} elements",
                s.name,
                v.len(),
                s.len
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(VerifyError { errors })
    }
}

/// Tasks a code may declare: instructions name a task by an 8-bit id.
pub const MAX_TASKS: usize = 256;

/// A name that would not print as an assembly identifier.
fn bad_name(kind: &str, n: &str) -> Option<String> {
    (!crate::program::is_name(n)).then(|| {
        let shown: String = n.chars().take(40).collect();
        format!("{kind} name {shown:?} is not an identifier (a letter or `_`, then letters, digits, `_` or `.`)")
    })
}

fn verify_code(code: &PeCode, err: &mut impl FnMut(String)) {
    let name = &code.name;
    if let Some(m) = bad_name("code", name) {
        err(m);
        return;
    }
    let names = code
        .buffers
        .iter()
        .map(|b| ("buffer", &b.name))
        .chain(code.tasks.iter().map(|t| ("task", &t.name)))
        .chain(code.labels.iter().map(|(_, l)| ("label", l)));
    for (kind, n) in names {
        if let Some(m) = bad_name(kind, n) {
            err(format!("code `{name}`: {m}"));
        }
    }
    if code.tasks.len() > MAX_TASKS {
        err(format!(
            "code `{name}`: {} tasks, a core has at most {MAX_TASKS} (task ids are 8-bit); merge tasks or split the code",
            code.tasks.len()
        ));
    }
    let n = code.insts.len() as u32;
    let mut seen = HashSet::new();
    for b in &code.buffers {
        if !seen.insert(&b.name) {
            err(format!(
                "code `{name}`: buffer `{}` is declared twice",
                b.name
            ));
        }
    }
    let mut seen = HashSet::new();
    for t in &code.tasks {
        if !seen.insert(&t.name) {
            err(format!(
                "code `{name}`: task `{}` is declared twice",
                t.name
            ));
        }
        if t.entry >= n
            || !code
                .labels
                .iter()
                .any(|(i, l)| *i == t.entry && *l == t.name)
        {
            err(format!(
                "code `{name}`: task `{}` has no label `{}:` at its entry",
                t.name, t.name
            ));
        }
        if t.active && t.kind != TaskKind::Local {
            err(format!(
                "code `{name}`: data task `{}` cannot start active",
                t.name
            ));
        }
    }
    let mut seen = HashSet::new();
    let mut last = 0;
    for (i, l) in &code.labels {
        if !seen.insert(l) {
            err(format!("code `{name}`: label `{l}` is defined twice"));
        }
        if *i < last || *i > n {
            err(format!(
                "code `{name}`: label `{l}` is out of order or past the end"
            ));
        }
        last = *i;
    }
    let code_end = code.code_bytes();
    let mut spans: Vec<(u32, u32, &str)> = code
        .buffers
        .iter()
        .map(|b| (b.offset, b.end(), b.name.as_str()))
        .collect();
    spans.sort();
    for b in &code.buffers {
        if !b.fits_addresses() {
            err(format!(
                "code `{name}`: buffer `{}` ({} elements at {}) does not end within 4 GiB",
                b.name, b.len, b.offset
            ));
        }
        if b.len == 0 || b.offset % 4 != 0 || b.offset < code_end {
            err(format!(
                "code `{name}`: buffer `{}` must be non-empty, 4-byte aligned and after the code ({code_end} bytes); it is at {} with {} elements",
                b.name, b.offset, b.len
            ));
        }
    }
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            err(format!(
                "code `{name}`: buffers `{}` and `{}` overlap",
                w[0].2, w[1].2
            ));
        }
    }
    if let Some(last) = code.insts.last()
        && !matches!(last, Inst::End | Inst::Jmp { .. })
    {
        err(format!(
            "code `{name}`: the last instruction must be `end` or `jmp` (control would run off the end)"
        ));
    }
    for (pc, inst) in code.insts.iter().enumerate() {
        let at = |m: String| format!("code `{name}` instruction {pc}: {m}");
        for m in check_inst(code, inst) {
            err(at(m));
        }
    }
}

fn check_inst(code: &PeCode, inst: &Inst) -> Vec<String> {
    let mut out = Vec::new();
    let reg_ok = |r: u8| r < N_REGS;
    let src_ok = |s: &IntSrc| match s {
        IntSrc::Reg(r) => reg_ok(r.0),
        IntSrc::Imm(_) => true,
    };
    let buf_dtype = |b: crate::isa::BufId| code.buffers.get(b.0 as usize).map(|b| b.dtype);
    let task = |t: crate::isa::TaskId| code.tasks.get(t.0 as usize);
    let mut regs = Vec::new();
    let mut srcs: Vec<IntSrc> = Vec::new();
    match inst {
        Inst::Li { rd, .. } => regs.push(rd.0),
        Inst::Lf { fd, .. } => regs.push(fd.0),
        Inst::Mov { rd, rs } => regs.extend([rd.0, rs.0]),
        Inst::FMov { fd, fs } => regs.extend([fd.0, fs.0]),
        Inst::Alu { rd, ra, b, .. } => {
            regs.extend([rd.0, ra.0]);
            srcs.push(*b);
        }
        Inst::Falu { fd, fa, fb, .. } => regs.extend([fd.0, fa.0, fb.0]),
        Inst::Fun { fd, fa, .. } => regs.extend([fd.0, fa.0]),
        Inst::ItoF { fd, rs } => regs.extend([fd.0, rs.0]),
        Inst::Fcmp { rd, fa, fb, .. } => regs.extend([rd.0, fa.0, fb.0]),
        Inst::FtoI { rd, fs } => regs.extend([rd.0, fs.0]),
        Inst::Ld { rd, buf, idx } | Inst::St { buf, idx, rs: rd } => {
            regs.push(rd.0);
            srcs.push(*idx);
            match buf_dtype(*buf) {
                None => out.push(format!("no buffer #{}", buf.0)),
                Some(DType::I32) => {}
                Some(d) if d.is_storage_only() => out.push(storage_only(code, *buf)),
                Some(d) => out.push(format!(
                    "integer load/store on {d} buffer `{}` (use ldf/stf)",
                    code.buffers[buf.0 as usize].name
                )),
            }
        }
        Inst::Ldf { fd, buf, idx } | Inst::Stf { buf, idx, fs: fd } => {
            regs.push(fd.0);
            srcs.push(*idx);
            match buf_dtype(*buf) {
                None => out.push(format!("no buffer #{}", buf.0)),
                Some(DType::I32) => out.push(format!(
                    "float load/store on i32 buffer `{}` (use ld/st)",
                    code.buffers[buf.0 as usize].name
                )),
                // A block scale is read by a scalar load before the
                // multiply that applies it.
                Some(DType::E8m0) if matches!(inst, Inst::Ldf { .. }) => {}
                Some(d) if d.is_storage_only() => out.push(storage_only(code, *buf)),
                Some(_) => {}
            }
        }
        Inst::Br { ra, b, target, .. } => {
            regs.push(ra.0);
            srcs.push(*b);
            check_target(code, *target, &mut out);
        }
        Inst::Jmp { target } => check_target(code, *target, &mut out),
        Inst::Activate(t) | Inst::Block(t) | Inst::Unblock(t) => match task(*t) {
            None => out.push(format!("no task #{}", t.0)),
            Some(tk) if matches!(inst, Inst::Activate(_)) && tk.kind != TaskKind::Local => out
                .push(format!(
                    "`activate {}`: data tasks run when data arrives, not by activation",
                    tk.name
                )),
            _ => {}
        },
        Inst::End => {}
        Inst::Vec(v) => {
            if !v.dtype.is_float() {
                out.push(format!(
                    "{} needs a float dtype, not {}",
                    v.op.mnemonic(),
                    v.dtype
                ));
            }
            if v.srcs.len() != v.op.arity() {
                out.push(format!(
                    "{} takes {} sources, got {}",
                    v.op.mnemonic(),
                    v.op.arity(),
                    v.srcs.len()
                ));
            }
            let mut has_len = false;
            let dst_ok = matches!(
                (&v.dst, v.op.is_reduction()),
                (Operand::Mem(_) | Operand::FabOut { .. }, false) | (Operand::FReg(_), true)
            );
            if !dst_ok {
                out.push(if v.op.is_reduction() {
                    format!("{} writes a float register", v.op.mnemonic())
                } else {
                    format!("{} writes memory or fabric output (tx)", v.op.mnemonic())
                });
            }
            for (o, is_dst) in
                std::iter::once((&v.dst, true)).chain(v.srcs.iter().map(|s| (s, false)))
            {
                match o {
                    Operand::Mem(m) => {
                        srcs.extend([m.off, m.len, m.stride]);
                        has_len = true;
                        if let Some(e) = mem_error(code, m) {
                            out.push(e);
                        }
                        let b = code.buffers.get(m.buf.0 as usize);
                        if let Some(b) = b.filter(|b| is_dst && b.dtype.is_storage_only()) {
                            out.push(format!(
                                "{} writes {} buffer `{}`: {} codes are written by data images only",
                                v.op.mnemonic(),
                                b.dtype,
                                b.name,
                                b.dtype
                            ));
                        }
                    }
                    Operand::FabIn { len, .. } | Operand::FabOut { len, .. } => {
                        if matches!(o, Operand::FabIn { .. }) == is_dst {
                            out.push("fabric input (rx) is a source and fabric output (tx) a destination".into());
                        }
                        if let Some(l) = len {
                            srcs.push(*l);
                            has_len = true;
                        }
                    }
                    Operand::FReg(f) => regs.push(f.0),
                    Operand::Imm(_) => {}
                }
            }
            let rx: Vec<_> = v
                .srcs
                .iter()
                .filter_map(|o| match o {
                    Operand::FabIn { color, .. } => Some(*color),
                    _ => None,
                })
                .collect();
            if rx.iter().enumerate().any(|(i, c)| rx[..i].contains(c)) {
                out.push(format!(
                    "{} reads the same color twice; receive into memory first",
                    v.op.mnemonic()
                ));
            }
            if !has_len {
                out.push(format!(
                    "{}: no operand gives the vector length (add one to rx/tx, e.g. rx(c1, 16))",
                    v.op.mnemonic()
                ));
            }
            if let ExecMode::Async {
                on_done: Some(t), ..
            } = v.mode
            {
                match task(t) {
                    None => out.push(format!("no task #{}", t.0)),
                    Some(tk) if tk.kind != TaskKind::Local => out.push(format!(
                        "completion task `{}` must be a local task",
                        tk.name
                    )),
                    _ => {}
                }
            }
        }
    }
    for s in srcs {
        if !src_ok(&s) {
            out.push("register out of range".into());
        }
    }
    if regs.iter().any(|r| !reg_ok(*r)) {
        out.push(format!(
            "register out of range (there are {N_REGS} of each kind)"
        ));
    }
    out
}

/// A scalar access to a storage-only buffer.
fn storage_only(code: &PeCode, buf: crate::isa::BufId) -> String {
    let b = &code.buffers[buf.0 as usize];
    format!(
        "scalar load/store on {} buffer `{}`: its codes are read by vector ops only (and e8m0 scales by ldf)",
        b.dtype, b.name
    )
}

fn mem_error(code: &PeCode, m: &MemRef) -> Option<String> {
    let Some(b) = code.buffers.get(m.buf.0 as usize) else {
        return Some(format!("no buffer #{}", m.buf.0));
    };
    if b.dtype == DType::I32 {
        return Some(format!("vector operand on i32 buffer `{}`", b.name));
    }
    if let (IntSrc::Imm(off), IntSrc::Imm(len), IntSrc::Imm(stride)) = (m.off, m.len, m.stride) {
        let last = off as i64 + (len as i64 - 1) * stride as i64;
        if len < 1 || off < 0 || off as u32 >= b.len || last < 0 || last >= b.len as i64 {
            return Some(format!(
                "`{}[{off}, {len}, {stride}]` is outside the buffer ({} elements)",
                b.name, b.len
            ));
        }
    }
    None
}

fn check_target(code: &PeCode, target: u32, out: &mut Vec<String>) {
    if target >= code.insts.len() as u32 {
        out.push(format!("branch target {target} is past the end"));
    } else if code.label_at(target).is_none() {
        out.push(format!("branch target {target} has no label"));
    }
}
