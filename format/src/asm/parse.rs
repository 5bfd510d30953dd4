//! Assembly text → Program. Errors carry the file, line and column and say
//! what was expected.

use super::print::{alu_name, cond_name, falu_name, fcmp_name, fun_name};
use crate::isa::*;
use crate::program::*;
use crate::{Color, DType, Pe, PeRect, Port, PortSet, Program};
use std::collections::HashMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct AsmError {
    pub file: String,
    /// 1-based; 0 when the error concerns the whole program.
    pub line: usize,
    /// 1-based.
    pub col: usize,
    pub message: String,
    /// The offending source line, for the caret display.
    pub source_line: String,
}

impl fmt::Display for AsmError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let message = clip_quoted(&self.message);
        if self.line == 0 {
            return write!(f, "{}: {message}", self.file);
        }
        writeln!(f, "{}:{}:{}: {message}", self.file, self.line, self.col)?;
        let (shown, caret) = window(&self.source_line, self.col.saturating_sub(1));
        writeln!(f, "  | {shown}")?;
        write!(f, "  | {}^", " ".repeat(caret))
    }
}

/// A message with every `quoted` part cut to 60 characters: a 10 MB token
/// is not worth echoing.
fn clip_quoted(message: &str) -> String {
    message
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 && part.chars().count() > 60 {
                format!("{}…", part.chars().take(60).collect::<String>())
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

/// At most 120 characters of `line` around character `at`, and where `at`
/// is in them.
fn window(line: &str, at: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= 120 {
        return (line.to_string(), at);
    }
    let start = at.saturating_sub(60).min(chars.len());
    let end = (start + 120).min(chars.len());
    let mut shown: String = chars[start..end].iter().collect();
    let mut caret = at - start;
    if start > 0 {
        shown.insert(0, '…');
        caret += 1;
    }
    if end < chars.len() {
        shown.push('…');
    }
    (shown, caret)
}

impl std::error::Error for AsmError {}

/// Parse assembly text; `file` names the source in errors.
pub fn parse(text: &str, file: &str) -> Result<Program, AsmError> {
    Parser {
        file,
        lines: text.lines().collect(),
    }
    .program()
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Punct(char),
    Arrow,
    LArrow,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    col: usize,
}

fn lex(line: &str) -> Vec<Token> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c == ';' {
            break;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'>') {
            out.push(Token {
                tok: Tok::Arrow,
                col,
            });
            i += 2;
        } else if c == '<' && chars.get(i + 1) == Some(&'-') {
            out.push(Token {
                tok: Tok::LArrow,
                col,
            });
            i += 2;
        } else if matches!(c, ',' | '[' | ']' | '(' | ')' | ':' | '=' | '@') {
            out.push(Token {
                tok: Tok::Punct(c),
                col,
            });
            i += 1;
        } else {
            let start = i;
            while i < chars.len() {
                let d = chars[i];
                if d.is_whitespace()
                    || matches!(d, ',' | '[' | ']' | '(' | ')' | ':' | '=' | '@' | ';' | '<')
                    || (d == '-' && chars.get(i + 1) == Some(&'>'))
                {
                    break;
                }
                i += 1;
            }
            if i == start {
                // A lone character no rule accepts; make it a word so the
                // parser reports it in context.
                i += 1;
            }
            out.push(Token {
                tok: Tok::Word(chars[start..i].iter().collect()),
                col,
            });
        }
    }
    out
}

struct Parser<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
}

/// A cursor over one line's tokens.
struct Line<'a> {
    file: &'a str,
    no: usize,
    text: &'a str,
    toks: Vec<Token>,
    pos: usize,
}

type R<T> = Result<T, AsmError>;

struct CodeBuilder {
    code: PeCode,
    /// Instruction lines: (line number, tokens), parsed at `.end`.
    inst_lines: Vec<(usize, Vec<Token>)>,
    label_lines: HashMap<String, usize>,
    start_line: usize,
}

impl<'a> Parser<'a> {
    fn err_at(&self, line: usize, col: usize, msg: impl Into<String>) -> AsmError {
        AsmError {
            file: self.file.to_string(),
            line,
            col,
            message: msg.into(),
            source_line: self
                .lines
                .get(line.wrapping_sub(1))
                .copied()
                .unwrap_or("")
                .to_string(),
        }
    }

    fn line(&self, no: usize, toks: Vec<Token>) -> Line<'a> {
        Line {
            file: self.file,
            no,
            text: self.lines[no - 1],
            toks,
            pos: 0,
        }
    }

    fn program(&self) -> R<Program> {
        let mut grid: Option<(u32, u32)> = None;
        let mut codes: Vec<PeCode> = Vec::new();
        // Code names to their index: a generated kernel can hold thousands
        // of codes, and its placements name them.
        let mut code_index: HashMap<String, usize> = HashMap::new();
        let mut placements: Vec<(String, PeRect, usize, usize)> = Vec::new();
        let mut p = Program {
            width: 0,
            height: 0,
            codes: vec![],
            placements: vec![],
            routes: vec![],
            data: vec![],
            inputs: vec![],
            outputs: vec![],
        };
        let mut current: Option<CodeBuilder> = None;

        for (idx, text) in self.lines.iter().enumerate() {
            let no = idx + 1;
            let toks = lex(text);
            if toks.is_empty() {
                continue;
            }
            let mut l = self.line(no, toks);
            if let Some(cb) = current.as_mut() {
                // Inside `.code ... .end`.
                match &l.toks[0].tok {
                    Tok::Word(w) if w == ".end" => {
                        l.pos = 1;
                        l.end()?;
                        let cb = current.take().unwrap();
                        let code = self.finish_code(cb)?;
                        code_index.insert(code.name.clone(), codes.len());
                        codes.push(code);
                    }
                    Tok::Word(w) if w == ".buffer" => {
                        l.pos = 1;
                        let name = l.ident("a buffer name")?;
                        let (dtype, len) = l.typed_len()?;
                        let offset = if l.eat_punct('@') {
                            l.uint("a byte offset")?
                        } else {
                            u32::MAX
                        };
                        l.end()?;
                        if cb.code.buffer(&name).is_some() {
                            return Err(l.err_at(1, format!("buffer `{name}` is already declared")));
                        }
                        cb.code.buffers.push(Buffer {
                            name,
                            dtype,
                            len,
                            offset,
                        });
                    }
                    Tok::Word(w) if w == ".task" => {
                        l.pos = 1;
                        let name = l.ident("a task name")?;
                        let kind = match l.word("`data` or `local`")?.as_str() {
                            "data" => TaskKind::Data(l.color()?),
                            "local" => TaskKind::Local,
                            other => {
                                return Err(l.err_prev(format!(
                                    "expected `data` or `local`, found `{other}`"
                                )));
                            }
                        };
                        let (mut active, mut blocked) = (false, false);
                        while !l.at_end() {
                            match l.word("`active` or `blocked`")?.as_str() {
                                "active" => active = true,
                                "blocked" => blocked = true,
                                other => {
                                    return Err(l.err_prev(format!(
                                        "expected `active` or `blocked`, found `{other}`"
                                    )));
                                }
                            }
                        }
                        if cb.code.task(&name).is_some() {
                            return Err(l.err_at(1, format!("task `{name}` is already declared")));
                        }
                        cb.code.tasks.push(Task {
                            name,
                            kind,
                            entry: u32::MAX,
                            active,
                            blocked,
                        });
                    }
                    Tok::Word(w) if w.starts_with('.') => {
                        return Err(l.err_at(0, format!("`{w}` is not allowed inside `.code` (expected .buffer, .task, .end, a label or an instruction)")));
                    }
                    Tok::Word(w) if l.toks.len() == 2 && l.toks[1].tok == Tok::Punct(':') => {
                        if !is_ident(w) {
                            return Err(l.err_at(0, format!("`{w}` is not a valid label name")));
                        }
                        if cb.label_lines.insert(w.clone(), no).is_some() {
                            return Err(l.err_at(0, format!("label `{w}` is already defined")));
                        }
                        cb.code.labels.push((cb.inst_lines.len() as u32, w.clone()));
                    }
                    _ => cb.inst_lines.push((no, l.toks.clone())),
                }
                continue;
            }
            let d = l.word("a directive")?;
            match d.as_str() {
                ".grid" => {
                    let (w, h) = l.dims()?;
                    l.end()?;
                    crate::geom::check_grid(w, h).map_err(|e| l.err_at(1, e.to_string()))?;
                    if grid.is_some() {
                        return Err(l.err_at(0, "`.grid` is given twice"));
                    }
                    grid = Some((w, h));
                }
                ".code" => {
                    let name = l.ident("a code name")?;
                    l.end()?;
                    if code_index.contains_key(&name) {
                        return Err(l.err_at(1, format!("code `{name}` is already defined")));
                    }
                    current = Some(CodeBuilder {
                        code: PeCode {
                            name,
                            buffers: vec![],
                            tasks: vec![],
                            insts: vec![],
                            labels: vec![],
                        },
                        inst_lines: vec![],
                        label_lines: HashMap::new(),
                        start_line: no,
                    });
                }
                ".place" => {
                    let name = l.ident("a code name")?;
                    let col = l.toks[1].col;
                    let rect = l.rect()?;
                    l.end()?;
                    placements.push((name, rect, no, col));
                }
                ".route" => {
                    let pes = l.rect()?;
                    let color = l.color()?;
                    let input = l.port()?;
                    l.expect(Tok::Arrow, "`->`")?;
                    let mut outputs = PortSet::single(l.port()?);
                    while l.eat_punct(',') {
                        outputs.insert(l.port()?);
                    }
                    l.end()?;
                    p.routes.push(RouteRule {
                        pes,
                        color,
                        input,
                        outputs,
                    });
                }
                ".data" => {
                    let buffer = l.ident("a buffer name")?;
                    let pes = l.rect()?;
                    l.expect(Tok::Punct('='), "`=`")?;
                    let init = l.init()?;
                    l.end()?;
                    p.data.push(DataImage { pes, buffer, init });
                }
                ".input" | ".output" => {
                    let input = d == ".input";
                    let name = l.ident("a stream name")?;
                    let (dtype, len) = l.typed_len()?;
                    l.expect(
                        if input { Tok::Arrow } else { Tok::LArrow },
                        if input { "`->`" } else { "`<-`" },
                    )?;
                    let x = l.uint("x")?;
                    l.expect(Tok::Punct(','), "`,`")?;
                    let y = l.uint("y")?;
                    let port = l.port()?;
                    let color = l.color()?;
                    let mut period = 1;
                    let mut init = DataInit::Zero;
                    if l.peek_word() == Some("every") {
                        l.pos += 1;
                        period = l.uint("a period in cycles")?;
                    }
                    if input && l.eat_punct('=') {
                        init = l.init()?;
                    }
                    l.end()?;
                    let s = HostStream {
                        name,
                        dtype,
                        len,
                        pe: Pe::new(x, y),
                        port,
                        color,
                        period,
                        init,
                    };
                    if input {
                        p.inputs.push(s)
                    } else {
                        p.outputs.push(s)
                    }
                }
                other => {
                    return Err(l.err_at(0, format!("unknown directive `{other}` (expected .grid, .code, .place, .route, .data, .input or .output)")));
                }
            }
        }
        if let Some(cb) = current {
            return Err(self.err_at(
                cb.start_line,
                1,
                format!("`.code {}` has no matching `.end`", cb.code.name),
            ));
        }
        let (w, h) = grid.ok_or_else(|| self.err_at(0, 0, "missing `.grid WxH`"))?;
        p.width = w;
        p.height = h;
        for (name, pes, no, col) in placements {
            let i = *code_index
                .get(&name)
                .ok_or_else(|| self.err_at(no, col, format!("no code named `{name}`")))?;
            p.placements.push(Placement {
                code: CodeId(i as u32),
                pes,
            });
        }
        p.codes = codes;
        crate::verify(&p).map_err(|e| self.err_at(0, 0, e.to_string()))?;
        Ok(p)
    }

    fn finish_code(&self, cb: CodeBuilder) -> R<PeCode> {
        let CodeBuilder {
            mut code,
            inst_lines,
            label_lines,
            ..
        } = cb;
        let labels: HashMap<String, u32> =
            code.labels.iter().map(|(i, n)| (n.clone(), *i)).collect();
        for t in code.tasks.iter_mut() {
            t.entry = *labels.get(&t.name).ok_or_else(|| {
                self.err_at(
                    cb.start_line,
                    1,
                    format!(
                        "task `{}` needs a label `{}:` where it starts",
                        t.name, t.name
                    ),
                )
            })?;
        }
        for (no, toks) in inst_lines {
            let mut l = self.line(no, toks);
            let inst = l.inst(&code, &labels)?;
            code.insts.push(inst);
        }
        for (name, idx) in &labels {
            if *idx as usize >= code.insts.len() {
                let no = label_lines[name];
                return Err(self.err_at(
                    no,
                    1,
                    format!("label `{name}` is not followed by an instruction"),
                ));
            }
        }
        code.assign_offsets();
        Ok(code)
    }
}

use crate::program::is_name as is_ident;

fn describe(t: Option<&Token>) -> String {
    match t.map(|t| &t.tok) {
        None => "end of line".into(),
        Some(Tok::Word(w)) => format!("`{w}`"),
        Some(Tok::Punct(c)) => format!("`{c}`"),
        Some(Tok::Arrow) => "`->`".into(),
        Some(Tok::LArrow) => "`<-`".into(),
    }
}

impl Line<'_> {
    fn err_at(&self, tok: usize, msg: impl Into<String>) -> AsmError {
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
    fn err_here(&self, msg: impl Into<String>) -> AsmError {
        self.err_at(self.pos, msg)
    }
    fn err_prev(&self, msg: impl Into<String>) -> AsmError {
        self.err_at(self.pos.saturating_sub(1), msg)
    }
    fn expected(&self, what: &str) -> AsmError {
        self.err_here(format!(
            "expected {what}, found {}",
            describe(self.toks.get(self.pos))
        ))
    }
    fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }
    fn end(&self) -> R<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.err_here(format!(
                "unexpected {} (expected end of line)",
                describe(self.toks.get(self.pos))
            )))
        }
    }
    fn peek_word(&self) -> Option<&str> {
        match self.toks.get(self.pos).map(|t| &t.tok) {
            Some(Tok::Word(w)) => Some(w),
            _ => None,
        }
    }
    fn peek_is(&self, t: &Tok) -> bool {
        self.toks.get(self.pos).is_some_and(|x| &x.tok == t)
    }
    fn word(&mut self, what: &str) -> R<String> {
        match self.toks.get(self.pos).map(|t| &t.tok) {
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Ok(w.clone())
            }
            _ => Err(self.expected(what)),
        }
    }
    fn ident(&mut self, what: &str) -> R<String> {
        let w = self.word(what)?;
        if is_ident(&w) {
            Ok(w)
        } else {
            Err(self.err_prev(format!("expected {what}, found `{w}`")))
        }
    }
    fn expect(&mut self, t: Tok, what: &str) -> R<()> {
        if self.peek_is(&t) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }
    fn eat_punct(&mut self, c: char) -> bool {
        if self.peek_is(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn int(&mut self, what: &str) -> R<i32> {
        let w = self.word(what)?;
        parse_int(&w).ok_or_else(|| {
            self.err_prev(if is_number(&w) {
                format!("{what} `{w}` is out of range ({}..={})", i32::MIN, i32::MAX)
            } else {
                format!("expected {what} (an integer), found `{w}`")
            })
        })
    }
    fn uint(&mut self, what: &str) -> R<u32> {
        let w = self.word(what)?;
        let hex = w.strip_prefix("0x");
        let v = match hex {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => w.parse::<u64>().ok(),
        };
        v.and_then(|v| u32::try_from(v).ok()).ok_or_else(|| {
            self.err_prev(if is_number(&w) && !w.starts_with('-') {
                format!("{what} `{w}` is out of range (0..={})", u32::MAX)
            } else {
                format!("expected {what} (a non-negative integer), found `{w}`")
            })
        })
    }
    fn float(&mut self, what: &str) -> R<f32> {
        let w = self.word(what)?;
        parse_float(&w)
            .ok_or_else(|| self.err_prev(format!("expected {what} (a number), found `{w}`")))
    }
    fn dims(&mut self) -> R<(u32, u32)> {
        let w = self.word("dimensions like `8x8`")?;
        parse_dims(&w)
            .ok_or_else(|| self.err_prev(format!("expected dimensions like `8x8`, found `{w}`")))
    }
    fn rect(&mut self) -> R<PeRect> {
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
    fn color(&mut self) -> R<Color> {
        let w = self.word("a color like `c3`")?;
        w.strip_prefix('c')
            .and_then(|n| n.parse::<u8>().ok())
            .map(Color)
            .ok_or_else(|| self.err_prev(format!("expected a color like `c3`, found `{w}`")))
    }
    fn port(&mut self) -> R<Port> {
        let w = self.word("a port (N, S, E, W or R)")?;
        Port::parse(&w)
            .ok_or_else(|| self.err_prev(format!("expected a port (N, S, E, W or R), found `{w}`")))
    }
    fn typed_len(&mut self) -> R<(DType, u32)> {
        let w = self.word("a dtype (f32, f16, bf16, i32)")?;
        let dt = DType::parse(&w).ok_or_else(|| {
            self.err_prev(format!(
                "expected a dtype (f32, f16, bf16, i32), found `{w}`"
            ))
        })?;
        self.expect(Tok::Punct('['), "`[` and a length")?;
        let n = self.uint("a length")?;
        self.expect(Tok::Punct(']'), "`]`")?;
        Ok((dt, n))
    }
    fn init(&mut self) -> R<DataInit> {
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
        let w = self.word("zero, fill(x), iota(start, step), rand(seed) or [values]")?;
        let init = match w.as_str() {
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
            "rand" => {
                self.expect(Tok::Punct('('), "`(`")?;
                let s = self.word("a seed")?;
                let seed = s.parse::<u64>().map_err(|_| {
                    self.err_prev(format!(
                        "expected a seed (an unsigned integer), found `{s}`"
                    ))
                })?;
                DataInit::Random { seed }
            }
            other => return Err(self.err_prev(format!(
                "expected zero, fill(x), iota(start, step), rand(seed) or [values], found `{other}`"
            ))),
        };
        self.expect(Tok::Punct(')'), "`)`")?;
        Ok(init)
    }
    fn reg(&mut self) -> R<Reg> {
        let w = self.word("an integer register r0..r15")?;
        parse_reg(&w, 'r').map(Reg).ok_or_else(|| {
            self.err_prev(format!("expected an integer register r0..r15, found `{w}`"))
        })
    }
    fn freg(&mut self) -> R<FReg> {
        let w = self.word("a float register f0..f15")?;
        parse_reg(&w, 'f')
            .map(FReg)
            .ok_or_else(|| self.err_prev(format!("expected a float register f0..f15, found `{w}`")))
    }
    fn isrc(&mut self) -> R<IntSrc> {
        let w = self.word("a register or an integer")?;
        if let Some(r) = parse_reg(&w, 'r') {
            return Ok(IntSrc::Reg(Reg(r)));
        }
        parse_int(&w)
            .map(IntSrc::Imm)
            .ok_or_else(|| self.err_prev(format!("expected a register or an integer, found `{w}`")))
    }
    fn comma(&mut self) -> R<()> {
        self.expect(Tok::Punct(','), "`,`")
    }
    fn buf(&mut self, code: &PeCode) -> R<BufId> {
        let w = self.word("a buffer name")?;
        code.buffer(&w)
            .map(|i| BufId(i as u16))
            .ok_or_else(|| self.err_prev(format!("no buffer `{w}` in code `{}`", code.name)))
    }
    fn task(&mut self, code: &PeCode) -> R<TaskId> {
        let w = self.word("a task name")?;
        code.task(&w)
            .map(|i| TaskId(i as u8))
            .ok_or_else(|| self.err_prev(format!("no task `{w}` in code `{}`", code.name)))
    }
    fn indexed(&mut self, code: &PeCode) -> R<(BufId, IntSrc)> {
        let b = self.buf(code)?;
        self.expect(Tok::Punct('['), "`[` and an index")?;
        let i = self.isrc()?;
        self.expect(Tok::Punct(']'), "`]`")?;
        Ok((b, i))
    }
    fn target(&mut self, labels: &HashMap<String, u32>) -> R<u32> {
        let w = self.word("a label")?;
        labels
            .get(&w)
            .copied()
            .ok_or_else(|| self.err_prev(format!("no label `{w}`")))
    }

    fn inst(&mut self, code: &PeCode, labels: &HashMap<String, u32>) -> R<Inst> {
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
            self.scalar(&m, code, labels)?
        };
        self.end()?;
        Ok(inst)
    }

    fn scalar(&mut self, m: &str, code: &PeCode, labels: &HashMap<String, u32>) -> R<Inst> {
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

    fn operand(&mut self, code: &PeCode) -> R<Operand> {
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
        if let Some(f) = parse_reg(&w, 'f') {
            return Ok(Operand::FReg(FReg(f)));
        }
        if let Some(i) = code.buffer(&w) {
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
        if let Some(v) = parse_float(&w) {
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
