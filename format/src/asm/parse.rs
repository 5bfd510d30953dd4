//! Assembly text → Program: directives, codes and their instructions,
//! placements, routes and host streams, each line read through a
//! `Line` cursor. Errors carry the file, line and column and say what
//! was expected.

use super::error::{AsmError, R};
use super::lex::{Tok, Token, lex};
use super::line::Line;
use crate::program::is_name as is_ident;
use crate::program::*;
use crate::{Pe, PeRect, PortSet, Program};
use std::collections::HashMap;

/// Parse assembly text; `file` names the source in errors.
pub fn parse(text: &str, file: &str) -> Result<Program, AsmError> {
    Parser {
        file,
        lines: text.lines().collect(),
    }
    .program()
}

struct Parser<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
}

pub(super) struct CodeBuilder<'a> {
    pub(super) code: PeCode,
    /// Instruction lines: (line number, tokens), parsed at `.end`.
    pub(super) inst_lines: Vec<(usize, Vec<Token<'a>>)>,
    pub(super) label_lines: HashMap<String, usize>,
    pub(super) start_line: usize,
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

    fn line(&self, no: usize, toks: Vec<Token<'a>>) -> Line<'a> {
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
                    Tok::Word(w) if *w == ".end" => {
                        l.pos = 1;
                        l.end()?;
                        let cb = current.take().unwrap();
                        let code = self.finish_code(cb)?;
                        code_index.insert(code.name.clone(), codes.len());
                        codes.push(code);
                    }
                    Tok::Word(w) if *w == ".buffer" => {
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
                    Tok::Word(w) if *w == ".task" => {
                        l.pos = 1;
                        let name = l.ident("a task name")?;
                        let kind = match l.word("`data` or `local`")? {
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
                            match l.word("`active` or `blocked`")? {
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
                        if cb.label_lines.insert(w.to_string(), no).is_some() {
                            return Err(l.err_at(0, format!("label `{w}` is already defined")));
                        }
                        cb.code
                            .labels
                            .push((cb.inst_lines.len() as u32, w.to_string()));
                    }
                    _ => cb.inst_lines.push((no, l.toks.clone())),
                }
                continue;
            }
            let d = l.word("a directive")?;
            match d {
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
