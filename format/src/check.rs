//! Checks before running: does this program fit and make sense on this
//! machine? Every error names the PE and, where one is involved, the color.
//!
//! On success it returns the [`Layout`]: the program expanded to dense
//! per-PE tables that the engines index directly.

use crate::isa::{ExecMode, Inst, Operand};
use crate::program::TaskKind;
use crate::{Arch, Color, Pe, PeCode, Port, PortSet, Program};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct CheckError {
    pub errors: Vec<String>,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CheckError {}

/// What each code sends and receives, derived once.
#[derive(Debug, Clone, Default)]
pub struct CodeColors {
    /// Colors the core takes wavelets from (data tasks and `rx` operands).
    pub consumed: Vec<Color>,
    /// Colors the core sends on (`tx` operands).
    pub produced: Vec<Color>,
}

/// The program expanded for execution on one machine.
#[derive(Debug, Clone)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    pub colors: u32,
    /// Code index per PE (row-major), `u32::MAX` where none runs.
    pub code_of: Vec<u32>,
    /// Output ports per (PE, color, input port): index `(pe·colors + color)·5 + port`.
    pub routes: Vec<PortSet>,
    pub code_colors: Vec<CodeColors>,
}

impl Layout {
    pub fn pe_index(&self, pe: Pe) -> usize {
        (pe.y * self.width + pe.x) as usize
    }
    pub fn pe_at(&self, idx: usize) -> Pe {
        Pe::new(idx as u32 % self.width, idx as u32 / self.width)
    }
    pub fn route(&self, pe: usize, color: u8, input: Port) -> PortSet {
        self.routes[(pe * self.colors as usize + color as usize) * Port::COUNT + input.index()]
    }
    pub fn code<'p>(&self, p: &'p Program, pe: usize) -> Option<&'p PeCode> {
        match self.code_of[pe] {
            u32::MAX => None,
            c => Some(&p.codes[c as usize]),
        }
    }
}

/// The colors `code` receives on (one input queue each) and sends on.
pub fn code_colors(code: &PeCode) -> CodeColors {
    let mut cc = CodeColors::default();
    let add = |v: &mut Vec<Color>, c: Color| {
        if !v.contains(&c) {
            v.push(c)
        }
    };
    for t in &code.tasks {
        if let TaskKind::Data(c) = t.kind {
            add(&mut cc.consumed, c);
        }
    }
    for inst in &code.insts {
        if let Inst::Vec(v) = inst {
            for o in std::iter::once(&v.dst).chain(&v.srcs) {
                match o {
                    Operand::FabIn { color, .. } => add(&mut cc.consumed, *color),
                    Operand::FabOut { color, .. } => add(&mut cc.produced, *color),
                    _ => {}
                }
            }
        }
    }
    cc
}

/// Check `p` against `arch` and expand it.
pub fn check(p: &Program, arch: &Arch) -> Result<Layout, CheckError> {
    crate::verify(p).map_err(|e| CheckError { errors: e.errors })?;
    let mut errors: Vec<String> = Vec::new();
    macro_rules! err {
        ($($t:tt)*) => {
            if errors.len() < 30 {
                errors.push(format!($($t)*));
            }
        };
    }
    if p.width > arch.grid_cols || p.height > arch.grid_rows {
        return Err(CheckError {
            errors: vec![format!(
                "the program needs a {}x{} rectangle ({} PEs) but machine `{}` has a {}x{} grid ({} PEs); use a larger --grid or machine",
                p.width,
                p.height,
                p.n_pes(),
                arch.name,
                arch.grid_cols,
                arch.grid_rows,
                arch.n_pes()
            )],
        });
    }
    let n = p.n_pes() as usize;
    let colors = arch.colors;
    let mut code_of = vec![u32::MAX; n];
    for pl in &p.placements {
        for pe in pl.pes.iter() {
            code_of[(pe.y * p.width + pe.x) as usize] = pl.code.0;
        }
    }
    let code_colors: Vec<CodeColors> = p.codes.iter().map(code_colors).collect();
    for (ci, code) in p.codes.iter().enumerate() {
        let Some(first) = p
            .placements
            .iter()
            .find(|pl| pl.code.0 as usize == ci)
            .map(|pl| Pe::new(pl.pes.x, pl.pes.y))
        else {
            continue;
        };
        let need = code.sram_bytes();
        if need > arch.sram_bytes {
            let data: u32 = code.buffers.iter().map(|b| b.bytes()).sum();
            err!(
                "{first} (code `{}`): needs {need} bytes of SRAM (code {} + data {data}) but a PE has {}; shrink its buffers or spread the work over more PEs",
                code.name,
                code.code_bytes(),
                arch.sram_bytes
            );
        }
        let cc = &code_colors[ci];
        for c in cc.consumed.iter().chain(&cc.produced) {
            if c.0 as u32 >= colors {
                err!(
                    "{first} (code `{}`): color {c} is out of range (machine `{}` has {colors} colors, c0..c{})",
                    code.name,
                    arch.name,
                    colors - 1
                );
            }
        }
        if cc.consumed.len() as u32 > arch.input_queues {
            err!(
                "{first} (code `{}`): receives on {} colors but a PE has {} input queues",
                code.name,
                cc.consumed.len(),
                arch.input_queues
            );
        }
        for t in &code.tasks {
            if let TaskKind::Data(c) = t.kind
                && code.insts.iter().any(|i| matches!(i, Inst::Vec(v) if v.srcs.iter().any(|o| matches!(o, Operand::FabIn { color, .. } if *color == c))))
            {
                err!("{first} (code `{}`): color {c} is bound to data task `{}` and also read by an rx operand; give them different colors", code.name, t.name);
            }
        }
        for (pc, inst) in code.insts.iter().enumerate() {
            if let Inst::Vec(v) = inst
                && let ExecMode::Async { thread, .. } = v.mode
                && thread as u32 >= arch.microthreads
            {
                err!(
                    "{first} (code `{}`) instruction {pc}: microthread {thread} does not exist (a PE has {})",
                    code.name,
                    arch.microthreads
                );
            }
        }
    }

    let mut routes = vec![PortSet::EMPTY; n * colors as usize * Port::COUNT];
    for r in &p.routes {
        if r.color.0 as u32 >= colors {
            err!(
                "PE({},{}): route on color {} is out of range (machine `{}` has {colors} colors)",
                r.pes.x,
                r.pes.y,
                r.color,
                arch.name
            );
            continue;
        }
        for pe in r.pes.iter() {
            let i = ((pe.y * p.width + pe.x) as usize * colors as usize + r.color.0 as usize)
                * Port::COUNT
                + r.input.index();
            if !routes[i].is_empty() && routes[i] != r.outputs {
                err!(
                    "{pe}: two different routes for {} arriving from {} ({} and {})",
                    r.color,
                    r.input,
                    routes[i],
                    r.outputs
                );
            }
            routes[i] = r.outputs;
        }
    }
    if !errors.is_empty() {
        return Err(CheckError { errors });
    }
    let layout = Layout {
        width: p.width,
        height: p.height,
        colors,
        code_of,
        routes,
        code_colors: code_colors.clone(),
    };

    for pe_idx in 0..n {
        let pe = layout.pe_at(pe_idx);
        let code = layout.code(p, pe_idx);
        let cc = layout.code_of[pe_idx];
        for c in 0..colors as u8 {
            let color = Color(c);
            let mut writers = [0u8; Port::COUNT];
            for input in Port::ALL {
                let outs = layout.route(pe_idx, c, input);
                if outs.is_empty() {
                    continue;
                }
                for out in outs.iter() {
                    writers[out.index()] |= 1 << input.index();
                    if out == Port::Ramp {
                        if !code.is_some_and(|_| code_colors[cc as usize].consumed.contains(&color))
                        {
                            match code {
                                None => err!(
                                    "{pe}: route delivers {color} to the core, but no code runs there"
                                ),
                                Some(c) => err!(
                                    "{pe}: route delivers {color} to the core, but code `{}` there never receives {color} (no data task or rx operand)",
                                    c.name
                                ),
                            }
                        }
                        continue;
                    }
                    match pe.neighbour(out, p.width, p.height) {
                        None => {
                            if !p
                                .outputs
                                .iter()
                                .any(|h| h.pe == pe && h.port == out && h.color == color)
                            {
                                err!(
                                    "{pe}: route sends {color} out of {out}, off the grid, and no host output is declared there"
                                );
                            }
                        }
                        Some(nb) => {
                            if layout
                                .route(layout.pe_index(nb), c, out.opposite())
                                .is_empty()
                            {
                                err!(
                                    "{pe}: route sends {color} {out} to {nb}, which has no route for {color} arriving from {}",
                                    out.opposite()
                                );
                            }
                        }
                    }
                }
            }
            for out in Port::ALL {
                let w = PortSet(writers[out.index()]);
                if w.len() > 1 {
                    err!(
                        "{pe}: color {color} has two writers into port {out} (from {w}); merge them on separate colors"
                    );
                }
            }
        }
        if let Some(code) = code {
            for color in &code_colors[cc as usize].produced {
                if (color.0 as u32) < colors && layout.route(pe_idx, color.0, Port::Ramp).is_empty()
                {
                    err!(
                        "{pe}: code `{}` sends on {color} but the router has no route for {color} from the ramp (R)",
                        code.name
                    );
                }
            }
        }
    }
    for (kind, streams) in [("input", &p.inputs), ("output", &p.outputs)] {
        for (i, h) in streams.iter().enumerate() {
            if h.color.0 as u32 >= colors {
                err!(
                    "host {kind} `{}`: color {} is out of range",
                    h.name,
                    h.color
                );
                continue;
            }
            let pi = layout.pe_index(h.pe);
            if kind == "input" {
                if layout.route(pi, h.color.0, h.port).is_empty() {
                    err!(
                        "host input `{}`: {} has no route for {} arriving from {}",
                        h.name,
                        h.pe,
                        h.color,
                        h.port
                    );
                }
                if streams[..i]
                    .iter()
                    .any(|o| o.pe == h.pe && o.port == h.port && o.color == h.color)
                {
                    err!(
                        "host input `{}`: another input already writes {} into {} {}",
                        h.name,
                        h.color,
                        h.pe,
                        h.port
                    );
                }
            } else if !Port::ALL
                .iter()
                .any(|inp| layout.route(pi, h.color.0, *inp).contains(h.port))
            {
                err!(
                    "host output `{}`: no route at {} sends {} out of {}",
                    h.name,
                    h.pe,
                    h.color,
                    h.port
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(layout)
    } else {
        Err(CheckError { errors })
    }
}
