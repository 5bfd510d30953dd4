//! A cursor over one line's tokens: the operand grammar (registers,
//! buffers, streams, numbers, rectangles) each directive and instruction
//! is read with.

use super::error::{AsmError, R};
use super::lex::{Tok, Token, describe};
use super::print::{alu_name, cond_name, falu_name, fcmp_name, fun_name};
use crate::isa::*;
use crate::program::is_name as is_ident;
use crate::program::*;
use crate::{Color, DType, PeRect, Port};
use std::collections::HashMap;

/// A cursor over one line's tokens.
pub(super) struct Line<'a> {
    pub(super) file: &'a str,
    pub(super) no: usize,
    pub(super) text: &'a str,
    pub(super) toks: Vec<Token<'a>>,
    pub(super) pos: usize,
}

impl<'a> Line<'a> {
    pub(super) fn err_at(&self, tok: usize, msg: impl Into<String>) -> AsmError {
        let col = self
            .toks
            .get(tok)
            .map_or(self.text.trim_end().len() + 1, |t| t.col);
        AsmError {
            file: self.file.to_string(),
            line: self.no,
            col,
            message: msg.into(),
            source_line: self.text.to_string(),
        }
    }
    pub(super) fn err_here(&self, msg: impl Into<String>) -> AsmError {
        self.err_at(self.pos, msg)
    }
    pub(super) fn err_prev(&self, msg: impl Into<String>) -> AsmError {
        self.err_at(self.pos.saturating_sub(1), msg)
    }
    pub(super) fn expected(&self, what: &str) -> AsmError {
        self.err_here(format!(
            "expected {what}, found {}",
            describe(self.toks.get(self.pos))
        ))
    }
    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }
    pub(super) fn end(&self) -> R<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.err_here(format!(
                "unexpected {} (expected end of line)",
                describe(self.toks.get(self.pos))
            )))
        }
    }
    pub(super) fn peek_word(&self) -> Option<&'a str> {
        match self.toks.get(self.pos).map(|t| &t.tok) {
            Some(Tok::Word(w)) => Some(*w),
            _ => None,
        }
    }
    pub(super) fn peek_is(&self, t: &Tok) -> bool {
        self.toks.get(self.pos).is_some_and(|x| &x.tok == t)
    }
    pub(super) fn word(&mut self, what: &str) -> R<&'a str> {
        match self.toks.get(self.pos).map(|t| &t.tok) {
            Some(Tok::Word(w)) => {
                let w = *w;
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.expected(what)),
        }
    }
    pub(super) fn ident(&mut self, what: &str) -> R<String> {
        let w = self.word(what)?;
        if is_ident(w) {
            Ok(w.to_string())
        } else {
            Err(self.err_prev(format!("expected {what}, found `{w}`")))
        }
    }
    pub(super) fn expect(&mut self, t: Tok, what: &str) -> R<()> {
        if self.peek_is(&t) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }
    pub(super) fn eat_punct(&mut self, c: char) -> bool {
        if self.peek_is(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    pub(super) fn int(&mut self, what: &str) -> R<i32> {
        let w = self.word(what)?;
        parse_int(w).ok_or_else(|| {
            self.err_prev(if is_number(w) {
                format!("{what} `{w}` is out of range ({}..={})", i32::MIN, i32::MAX)
            } else {
                format!("expected {what} (an integer), found `{w}`")
            })
        })
    }
    pub(super) fn uint(&mut self, what: &str) -> R<u32> {
        let w = self.word(what)?;
        let hex = w.strip_prefix("0x");
        let v = match hex {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => w.parse::<u64>().ok(),
        };
        v.and_then(|v| u32::try_from(v).ok()).ok_or_else(|| {
            self.err_prev(if is_number(w) && !w.starts_with('-') {
                format!("{what} `{w}` is out of range (0..={})", u32::MAX)
            } else {
                format!("expected {what} (a non-negative integer), found `{w}`")
            })
        })
    }
    pub(super) fn float(&mut self, what: &str) -> R<f32> {
        let w = self.word(what)?;
        parse_float(w)
            .ok_or_else(|| self.err_prev(format!("expected {what} (a number), found `{w}`")))
    }
    pub(super) fn dims(&mut self) -> R<(u32, u32)> {
        let w = self.word("dimensions like `8x8`")?;
        parse_dims(w)
            .ok_or_else(|| self.err_prev(format!("expected dimensions like `8x8`, found `{w}`")))
    }
    pub(super) fn rect(&mut self) -> R<PeRect> {
        let x = self.uint("x")?;
        self.expect(Tok::Punct(','), "`,` between x and y")?;
        let y = self.uint("y")?;
        let (w, h) = self.dims()?;
        let mut r = PeRect::new(x, y, w, h);
        if self.peek_word() == Some("step") {
            self.pos += 1;
            r.sx = self.uint("the x step")?;
            self.expect(Tok::Punct(','), "`,` between the steps")?;
            r.sy = self.uint("the y step")?;
        }
        Ok(r)
    }
    pub(super) fn color(&mut self) -> R<Color> {
        let w = self.word("a color like `c3`")?;
        w.strip_prefix('c')
            .and_then(|n| n.parse::<u8>().ok())
            .map(Color)
            .ok_or_else(|| self.err_prev(format!("expected a color like `c3`, found `{w}`")))
    }
    pub(super) fn port(&mut self) -> R<Port> {
        let w = self.word("a port (N, S, E, W or R)")?;
        Port::parse(w)
            .ok_or_else(|| self.err_prev(format!("expected a port (N, S, E, W or R), found `{w}`")))
    }
    pub(super) fn typed_len(&mut self) -> R<(DType, u32)> {
        let w = self.word("a dtype (f32, f16, bf16, i32)")?;
        let dt = DType::parse(w).ok_or_else(|| {
            self.err_prev(format!(
                "expected a dtype (f32, f16, bf16, i32), found `{w}`"
            ))
        })?;
        self.expect(Tok::Punct('['), "`[` and a length")?;
        let n = self.uint("a length")?;
        self.expect(Tok::Punct(']'), "`]`")?;
        Ok((dt, n))
    }
    pub(super) fn init(&mut self) -> R<DataInit> {
        if self.eat_punct('[') {
            let mut v = Vec::new();
            if !self.eat_punct(']') {
                loop {
                    v.push(self.float("a value")?);
                    if self.eat_punct(']') {
                        break;
                    }
                    self.expect(Tok::Punct(','), "`,` or `]`")?;
                }
            }
            return Ok(DataInit::Values(v));
        }
        let w = self
            .word("zero, fill(x), iota(start, step), rand(seed), randi(seed, max) or [values]")?;
        let init = match w {
            "zero" => return Ok(DataInit::Zero),
            "fill" => {
                self.expect(Tok::Punct('('), "`(`")?;
                DataInit::Fill(self.float("a value")?)
            }
            "iota" => {
                self.expect(Tok::Punct('('), "`(`")?;
                let start = self.float("a start")?;
                self.expect(Tok::Punct(','), "`,`")?;
                DataInit::Iota {
                    start,
                    step: self.float("a step")?,
                }
            }
            "rand" | "randi" => {
                self.expect(Tok::Punct('('), "`(`")?;
                let s = self.word("a seed")?;
                let seed = s.parse::<u64>().map_err(|_| {
                    self.err_prev(format!(
                        "expected a seed (an unsigned integer), found `{s}`"
                    ))
                })?;
                if w == "rand" {
                    DataInit::Random { seed }
                } else {
                    self.expect(Tok::Punct(','), "`,`")?;
                    let m = self.word("the largest magnitude")?;
                    let max = m.parse::<u32>().ok().filter(|m| *m <= 1 << 24).ok_or_else(|| {
                        self.err_prev(format!(
                            "expected the largest magnitude (an integer up to 2^24), found `{m}`"
                        ))
                    })?;
                    DataInit::RandomInt { seed, max }
                }
            }
            other => return Err(self.err_prev(format!(
                "expected zero, fill(x), iota(start, step), rand(seed), randi(seed, max) or [values], found `{other}`"
            ))),
        };
        self.expect(Tok::Punct(')'), "`)`")?;
        Ok(init)
    }
    pub(super) fn reg(&mut self) -> R<Reg> {
        let w = self.word("an integer register r0..r15")?;
        parse_reg(w, 'r').map(Reg).ok_or_else(|| {
            self.err_prev(format!("expected an integer register r0..r15, found `{w}`"))
        })
    }
    pub(super) fn freg(&mut self) -> R<FReg> {
        let w = self.word("a float register f0..f15")?;
        parse_reg(w, 'f')
            .map(FReg)
            .ok_or_else(|| self.err_prev(format!("expected a float register f0..f15, found `{w}`")))
    }
    pub(super) fn isrc(&mut self) -> R<IntSrc> {
        let w = self.word("a register or an integer")?;
        if let Some(r) = parse_reg(w, 'r') {
            return Ok(IntSrc::Reg(Reg(r)));
        }
        parse_int(w)
            .map(IntSrc::Imm)
            .ok_or_else(|| self.err_prev(format!("expected a register or an integer, found `{w}`")))
    }
    pub(super) fn comma(&mut self) -> R<()> {
        self.expect(Tok::Punct(','), "`,`")
    }
    pub(super) fn buf(&mut self, code: &PeCode) -> R<BufId> {
        let w = self.word("a buffer name")?;
        code.buffer(w)
            .map(|i| BufId(i as u16))
            .ok_or_else(|| self.err_prev(format!("no buffer `{w}` in code `{}`", code.name)))
    }
    pub(super) fn task(&mut self, code: &PeCode) -> R<TaskId> {
        let w = self.word("a task name")?;
        code.task(w)
            .map(|i| TaskId(i as u8))
            .ok_or_else(|| self.err_prev(format!("no task `{w}` in code `{}`", code.name)))
    }
    pub(super) fn indexed(&mut self, code: &PeCode) -> R<(BufId, IntSrc)> {
        let b = self.buf(code)?;
        self.expect(Tok::Punct('['), "`[` and an index")?;
        let i = self.isrc()?;
        self.expect(Tok::Punct(']'), "`]`")?;
        Ok((b, i))
    }
    pub(super) fn target(&mut self, labels: &HashMap<String, u32>) -> R<u32> {
        let w = self.word("a label")?;
        labels
            .get(w)
            .copied()
            .ok_or_else(|| self.err_prev(format!("no label `{w}`")))
    }

    pub(super) fn inst(&mut self, code: &PeCode, labels: &HashMap<String, u32>) -> R<Inst> {
        let m = self.word("an instruction")?;
        let inst = if let Some((op, dt)) = m.split_once('.').filter(|_| m.starts_with('v')) {
            let op = VecOp::ALL
                .into_iter()
                .find(|o| o.mnemonic() == op)
                .ok_or_else(|| self.err_prev(format!("unknown vector instruction `{op}`")))?;
            let dtype = DType::parse(dt).filter(|d| d.is_float()).ok_or_else(|| {
                self.err_prev(format!("`{dt}` is not a float dtype (f32, f16, bf16)"))
            })?;
            let dst = self.operand(code)?;
            let mut srcs = Vec::new();
            while self.eat_punct(',') {
                srcs.push(self.operand(code)?);
            }
            let mut mode = ExecMode::Sync;
            if self.peek_word() == Some("async") {
                self.pos += 1;
                let thread = self.uint("a microthread number")?;
                let thread = u8::try_from(thread)
                    .map_err(|_| self.err_prev("microthread number too large"))?;
                let on_done = if self.peek_is(&Tok::Arrow) {
                    self.pos += 1;
                    Some(self.task(code)?)
                } else {
                    None
                };
                mode = ExecMode::Async { thread, on_done };
            }
            if srcs.len() != op.arity() {
                return Err(self.err_at(
                    0,
                    format!(
                        "`{}` takes a destination and {} source(s), found {}",
                        op.mnemonic(),
                        op.arity(),
                        srcs.len()
                    ),
                ));
            }
            Inst::Vec(VecInst {
                op,
                dtype,
                dst,
                srcs,
                mode,
            })
        } else {
            self.scalar(m, code, labels)?
        };
        self.end()?;
        Ok(inst)
    }

    pub(super) fn scalar(
        &mut self,
        m: &str,
        code: &PeCode,
        labels: &HashMap<String, u32>,
    ) -> R<Inst> {
        if let Some(op) = AluOp::ALL.into_iter().find(|o| alu_name(*o) == m) {
            let rd = self.reg()?;
            self.comma()?;
            let ra = self.reg()?;
            self.comma()?;
            return Ok(Inst::Alu {
                op,
                rd,
                ra,
                b: self.isrc()?,
            });
        }
        if let Some(op) = FaluOp::ALL.into_iter().find(|o| falu_name(*o) == m) {
            let fd = self.freg()?;
            self.comma()?;
            let fa = self.freg()?;
            self.comma()?;
            return Ok(Inst::Falu {
                op,
                fd,
                fa,
                fb: self.freg()?,
            });
        }
        if let Some(op) = FunOp::ALL.into_iter().find(|o| fun_name(*o) == m) {
            let fd = self.freg()?;
            self.comma()?;
            return Ok(Inst::Fun {
                op,
                fd,
                fa: self.freg()?,
            });
        }
        if let Some(op) = FcmpOp::ALL.into_iter().find(|o| fcmp_name(*o) == m) {
            let rd = self.reg()?;
            self.comma()?;
            let fa = self.freg()?;
            self.comma()?;
            return Ok(Inst::Fcmp {
                op,
                rd,
                fa,
                fb: self.freg()?,
            });
        }
        if let Some(cond) = Cond::ALL.into_iter().find(|o| cond_name(*o) == m) {
            let ra = self.reg()?;
            self.comma()?;
            let b = self.isrc()?;
            self.comma()?;
            return Ok(Inst::Br {
                cond,
                ra,
                b,
                target: self.target(labels)?,
            });
        }
        Ok(match m {
            "li" => {
                let rd = self.reg()?;
                self.comma()?;
                Inst::Li {
                    rd,
                    imm: self.int("an immediate")?,
                }
            }
            "lf" => {
                let fd = self.freg()?;
                self.comma()?;
                Inst::Lf {
                    fd,
                    imm: self.float("an immediate")?,
                }
            }
            "mov" => {
                let rd = self.reg()?;
                self.comma()?;
                Inst::Mov {
                    rd,
                    rs: self.reg()?,
                }
            }
            "fmov" => {
                let fd = self.freg()?;
                self.comma()?;
                Inst::FMov {
                    fd,
                    fs: self.freg()?,
                }
            }
            "itof" => {
                let fd = self.freg()?;
                self.comma()?;
                Inst::ItoF {
                    fd,
                    rs: self.reg()?,
                }
            }
            "ftoi" => {
                let rd = self.reg()?;
                self.comma()?;
                Inst::FtoI {
                    rd,
                    fs: self.freg()?,
                }
            }
            "ld" => {
                let rd = self.reg()?;
                self.comma()?;
                let (buf, idx) = self.indexed(code)?;
                Inst::Ld { rd, buf, idx }
            }
            "ldf" => {
                let fd = self.freg()?;
                self.comma()?;
                let (buf, idx) = self.indexed(code)?;
                Inst::Ldf { fd, buf, idx }
            }
            "st" => {
                let (buf, idx) = self.indexed(code)?;
                self.comma()?;
                Inst::St {
                    buf,
                    idx,
                    rs: self.reg()?,
                }
            }
            "stf" => {
                let (buf, idx) = self.indexed(code)?;
                self.comma()?;
                Inst::Stf {
                    buf,
                    idx,
                    fs: self.freg()?,
                }
            }
            "jmp" => Inst::Jmp {
                target: self.target(labels)?,
            },
            "activate" => Inst::Activate(self.task(code)?),
            "block" => Inst::Block(self.task(code)?),
            "unblock" => Inst::Unblock(self.task(code)?),
            "end" => Inst::End,
            other => return Err(self.err_prev(format!("unknown instruction `{other}`"))),
        })
    }

    pub(super) fn operand(&mut self, code: &PeCode) -> R<Operand> {
        let w = self.word("an operand (buffer, rx(cN), tx(cN), fN or a number)")?;
        if (w == "rx" || w == "tx") && self.peek_is(&Tok::Punct('(')) {
            self.pos += 1;
            let color = self.color()?;
            let len = if self.eat_punct(',') {
                Some(self.isrc()?)
            } else {
                None
            };
            self.expect(Tok::Punct(')'), "`)`")?;
            return Ok(if w == "rx" {
                Operand::FabIn { color, len }
            } else {
                Operand::FabOut { color, len }
            });
        }
        if let Some(f) = parse_reg(w, 'f') {
            return Ok(Operand::FReg(FReg(f)));
        }
        if let Some(i) = code.buffer(w) {
            let buf = BufId(i as u16);
            if !self.eat_punct('[') {
                let len = code.buffers[i].len as i32;
                return Ok(Operand::Mem(MemRef {
                    buf,
                    off: IntSrc::Imm(0),
                    len: IntSrc::Imm(len),
                    stride: IntSrc::Imm(1),
                }));
            }
            let off = self.isrc()?;
            self.comma()?;
            let len = self.isrc()?;
            let stride = if self.eat_punct(',') {
                self.isrc()?
            } else {
                IntSrc::Imm(1)
            };
            self.expect(Tok::Punct(']'), "`]`")?;
            return Ok(Operand::Mem(MemRef {
                buf,
                off,
                len,
                stride,
            }));
        }
        if let Some(v) = parse_float(w) {
            return Ok(Operand::Imm(v));
        }
        Err(self.err_prev(format!("expected an operand (a buffer of code `{}`, rx(cN), tx(cN), fN or a number), found `{w}`", code.name)))
    }
}

fn parse_reg(w: &str, prefix: char) -> Option<u8> {
    let n: u8 = w.strip_prefix(prefix)?.parse().ok()?;
    (n < N_REGS && !w[1..].starts_with('+')).then_some(n)
}

fn parse_int(w: &str) -> Option<i32> {
    let (neg, body) = match w.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, w),
    };
    let v: i64 = if let Some(h) = body.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else {
        body.parse().ok()?
    };
    i32::try_from(if neg { -v } else { v }).ok()
}

/// Digits (decimal, or hex after `0x`), optionally negative: a number,
/// whether or not it fits.
fn is_number(w: &str) -> bool {
    let body = w.strip_prefix('-').unwrap_or(w);
    match body.strip_prefix("0x") {
        Some(h) => !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()),
        None => !body.is_empty() && body.chars().all(|c| c.is_ascii_digit()),
    }
}

fn parse_float(w: &str) -> Option<f32> {
    if let Some(hex) = w.strip_prefix("nan0x") {
        // A NaN with its payload, as the printer writes one.
        return u32::from_str_radix(hex, 16)
            .ok()
            .map(f32::from_bits)
            .filter(|v| v.is_nan());
    }
    if !w.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.' || c == 'i' || c == 'n')
    {
        return None;
    }
    w.parse::<f32>().ok()
}

fn parse_dims(w: &str) -> Option<(u32, u32)> {
    let (a, b) = w.split_once('x')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}
