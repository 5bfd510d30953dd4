//! Collectives along the lines of a rectangle: every row (or every column)
//! of PEs reduces, all-reduces or broadcasts a vector buffer at once.
//!
//! A collective does not make a whole program: it emits the instructions
//! each PE runs (by its position on the line) and the routes, so a kernel
//! embeds it between its own instructions. The reduction order follows a
//! [`Plan`]; the same plan gives the reference's order of sums and the
//! timing ([`LineReduce::finish`]).

use crate::reduce::{Action, Plan, Strategy};
use std::fmt::Write;
use wafer_emulator::Arch;

/// Which lines: `Row` reduces along x toward the east edge, `Col` along y
/// toward the south edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    Row,
    Col,
}

/// A rectangle of `w × h` PEs, its north-west corner at `(x, y)`, seen as
/// parallel lines along `axis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lines {
    pub axis: Axis,
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Lines {
    /// Lines along `axis` over a `w × h` rectangle at the origin.
    pub fn new(axis: Axis, w: u32, h: u32) -> Lines {
        Lines {
            axis,
            x: 0,
            y: 0,
            w,
            h,
        }
    }

    /// PEs per line.
    pub fn len(&self) -> u32 {
        match self.axis {
            Axis::Row => self.w,
            Axis::Col => self.h,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Ports toward the line's end (downstream) and its start.
    pub fn down(&self) -> &'static str {
        match self.axis {
            Axis::Row => "E",
            Axis::Col => "S",
        }
    }
    pub fn up(&self) -> &'static str {
        match self.axis {
            Axis::Row => "W",
            Axis::Col => "N",
        }
    }
    /// The rectangle text for positions `pos .. pos + n` of every line.
    pub fn rect(&self, pos: u32, n: u32) -> String {
        match self.axis {
            Axis::Row => format!("{},{} {n}x{}", self.x + pos, self.y, self.h),
            Axis::Col => format!("{},{} {}x{n}", self.x, self.y + pos, self.w),
        }
    }
}

/// How two vectors combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    Add,
    Max,
}

impl Combine {
    fn mnemonic(self) -> &'static str {
        match self {
            Combine::Add => "vfadd",
            Combine::Max => "vfmax",
        }
    }
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Combine::Add => a + b,
            Combine::Max => a.max(b),
        }
    }
}

/// Where the result ends up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// In the buffer of the line's last PE.
    End,
    /// In the buffer of every PE of the line (reduce, then broadcast back).
    All,
    /// Streamed out of the last PE, downstream, on this color.
    Stream(u8),
}

/// Reduce buffer `buf` (length `n`, f32) over each line.
#[derive(Clone, Debug, PartialEq)]
pub struct LineReduce {
    pub lines: Lines,
    pub plan: Plan,
    pub combine: Combine,
    pub target: Target,
    pub buf: String,
    pub n: u32,
    /// One color per plan level, then (for `Target::All`) the broadcast's.
    pub colors: Vec<u8>,
}

impl LineReduce {
    /// Colors this reduction needs for `len` PEs per line.
    pub fn colors_needed(len: u32, strategy: Strategy, target: Target) -> usize {
        Plan::new(len, strategy).levels as usize + usize::from(target == Target::All && len > 1)
    }

    pub fn new(
        lines: Lines,
        strategy: Strategy,
        combine: Combine,
        target: Target,
        buf: &str,
        n: u32,
        colors: &[u8],
    ) -> LineReduce {
        let plan = Plan::new(lines.len(), strategy);
        let need = LineReduce::colors_needed(lines.len(), strategy, target);
        assert!(colors.len() >= need, "collective needs {need} colors");
        LineReduce {
            lines,
            plan,
            combine,
            target,
            buf: buf.to_string(),
            n,
            colors: colors[..need].to_vec(),
        }
    }

    fn root(&self) -> u32 {
        self.lines.len() - 1
    }

    /// The instructions PE `pos` runs (one per line, indented).
    pub fn code(&self, pos: u32) -> String {
        let (b, op) = (&self.buf, self.combine.mnemonic());
        let steps = &self.plan.steps[pos as usize];
        let mut t = String::new();
        for (i, (l, action)) in steps.iter().enumerate() {
            let c = self.colors[*l as usize];
            let last = i + 1 == steps.len();
            match action {
                Action::Send { .. } => writeln!(t, "  vmov.f32 tx(c{c}), {b}").unwrap(),
                Action::Forward { .. } => {
                    writeln!(t, "  {op}.f32 tx(c{c}), rx(c{c}), {b}").unwrap()
                }
                Action::Gather => match self.target {
                    Target::Stream(out) if last => {
                        writeln!(t, "  {op}.f32 tx(c{out}), rx(c{c}), {b}").unwrap()
                    }
                    _ => writeln!(t, "  {op}.f32 {b}, rx(c{c}), {b}").unwrap(),
                },
            }
        }
        match self.target {
            Target::Stream(out) if steps.is_empty() => {
                writeln!(t, "  vmov.f32 tx(c{out}), {b}").unwrap()
            }
            Target::All if self.lines.len() > 1 => {
                let cb = self.colors[self.plan.levels as usize];
                if pos == self.root() {
                    writeln!(t, "  vmov.f32 tx(c{cb}), {b}").unwrap();
                } else {
                    writeln!(t, "  vmov.f32 {b}, rx(c{cb})").unwrap();
                }
            }
            _ => {}
        }
        t
    }

    /// The routes of every line (and, for `Stream`, out of the last PE).
    pub fn routes(&self) -> String {
        let (lines, up, down) = (&self.lines, self.lines.up(), self.lines.down());
        let mut t = String::new();
        for (pos, steps) in self.plan.steps.iter().enumerate() {
            for (l, action) in steps {
                let c = self.colors[*l as usize];
                if let Action::Send { hops } | Action::Forward { hops } = action {
                    writeln!(t, ".route {} c{c} R -> {down}", lines.rect(pos as u32, 1)).unwrap();
                    if *hops > 1 {
                        writeln!(
                            t,
                            ".route {} c{c} {up} -> {down}",
                            lines.rect(pos as u32 + 1, hops - 1)
                        )
                        .unwrap();
                    }
                    writeln!(
                        t,
                        ".route {} c{c} {up} -> R",
                        lines.rect(pos as u32 + hops, 1)
                    )
                    .unwrap();
                }
            }
        }
        let root = self.root();
        match self.target {
            Target::Stream(out) => {
                writeln!(t, ".route {} c{out} R -> {down}", lines.rect(root, 1)).unwrap()
            }
            Target::All if root > 0 => {
                let cb = self.colors[self.plan.levels as usize];
                writeln!(t, ".route {} c{cb} R -> {up}", lines.rect(root, 1)).unwrap();
                if root > 1 {
                    writeln!(
                        t,
                        ".route {} c{cb} {down} -> R,{up}",
                        lines.rect(1, root - 1)
                    )
                    .unwrap();
                }
                writeln!(t, ".route {} c{cb} {down} -> R", lines.rect(0, 1)).unwrap();
            }
            _ => {}
        }
        t
    }

    /// The result of one line, in the emulator's order of operations.
    pub fn reference(&self, parts: &[Vec<f32>]) -> Vec<f32> {
        let combine = self.combine;
        self.plan.reduce_with(parts, |a, b| combine.apply(a, b))
    }

    /// For one line, given the cycle each PE issues the collective's first
    /// instruction, the cycle its last one finishes (the next instruction
    /// issues in that cycle); for `Stream`, the last PE's entry is the cycle
    /// its first result element leaves. Every op moves one f32 per cycle
    /// (see [`Plan::first_out`] for the derivation); a broadcast back
    /// reaches position `p` `2·ramp + (root − p)·hop` after it leaves.
    pub fn finish(&self, issue: &[u64], arch: &Arch) -> Vec<u64> {
        let (i, ramp, hop) = (
            arch.vector_issue_cycles as u64,
            arch.ramp_latency as u64,
            arch.hop_latency as u64,
        );
        let m = self.n as u64;
        let (mut done, root_first) = self.plan.timeline(issue, self.n, arch);
        let root = self.root() as usize;
        match self.target {
            Target::Stream(_) => {
                done[root] = if self.plan.steps[root].is_empty() {
                    done[root] + 1 + i
                } else {
                    root_first
                }
            }
            Target::All if root > 0 => {
                let first = done[root] + 1 + i;
                done[root] = first + m - 1;
                for (p, d) in done[..root].iter_mut().enumerate() {
                    let arrive = first + 2 * ramp + (root - p) as u64 * hop;
                    *d = (*d + 1 + i).max(arrive) + m - 1;
                }
            }
            _ => {}
        }
        done
    }
}

/// A collective run on its own over a `w × h` rectangle.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectiveSpec {
    pub op: CollectiveOp,
    pub scope: Scope,
    pub w: u32,
    pub h: u32,
    /// Elements per PE (for a gather: each PE's chunk).
    pub n: u32,
    pub combine: Combine,
    pub strategy: Strategy,
    pub seed: u64,
}

/// Which PEs take part together: every row, every column, or the whole
/// rectangle at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Row,
    Col,
    Rect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollectiveOp {
    /// A vector entering at each line's start reaches every PE's `v`.
    Broadcast,
    /// Every PE's `v` combined, streamed out of each line's end.
    Reduce,
    /// Every PE's `v` combined, left in every PE's `v`.
    Allreduce,
    /// Every PE's `v` concatenated in line order, streamed out of the end.
    Gather,
}

impl CollectiveOp {
    pub const ALL: [(CollectiveOp, &'static str); 4] = [
        (CollectiveOp::Broadcast, "broadcast"),
        (CollectiveOp::Reduce, "reduce"),
        (CollectiveOp::Allreduce, "allreduce"),
        (CollectiveOp::Gather, "gather"),
    ];

    pub fn name(self) -> &'static str {
        CollectiveOp::ALL
            .iter()
            .find(|(o, _)| *o == self)
            .expect("listed")
            .1
    }
}

const C_IO: u8 = 0;
const C_FIRST: u8 = 1;

impl CollectiveSpec {
    fn lines(&self) -> Lines {
        Lines {
            axis: match self.scope {
                Scope::Row => Axis::Row,
                Scope::Col => Axis::Col,
                Scope::Rect => {
                    unreachable!("a rectangle collective is built from row and column lines")
                }
            },
            x: 0,
            y: 0,
            w: self.w,
            h: self.h,
        }
    }

    fn reduce(&self) -> LineReduce {
        let target = if self.op == CollectiveOp::Allreduce {
            Target::All
        } else {
            Target::Stream(C_IO)
        };
        let colors: Vec<u8> = (C_FIRST..C_FIRST + 20).collect();
        LineReduce::new(
            self.lines(),
            self.strategy,
            self.combine,
            target,
            "v",
            self.n,
            &colors,
        )
    }

    /// The PE at position `pos` of line `lane`.
    /// The PE at position `pos` of line `lane` (for a rectangle: PE number
    /// `pos` in row-major order; there is one lane).
    pub fn pe(&self, pos: u32, lane: u32) -> wafer_emulator::Pe {
        match self.scope {
            Scope::Row => wafer_emulator::Pe::new(pos, lane),
            Scope::Col => wafer_emulator::Pe::new(lane, pos),
            Scope::Rect => wafer_emulator::Pe::new(pos % self.w, pos / self.w),
        }
    }

    /// Independent groups: rows, columns, or the one rectangle.
    pub fn lanes(&self) -> u32 {
        match self.scope {
            Scope::Row => self.h,
            Scope::Col => self.w,
            Scope::Rect => 1,
        }
    }

    /// PEs in each group.
    pub fn group_len(&self) -> u32 {
        match self.scope {
            Scope::Row => self.w,
            Scope::Col => self.h,
            Scope::Rect => self.w * self.h,
        }
    }

    /// A rectangle's two phases: along every row, then along columns (all
    /// of them for an allreduce, the east one for a reduce), on disjoint
    /// colors, since a core has one input queue per color.
    fn phases(&self) -> (LineReduce, LineReduce) {
        let all = self.op == CollectiveOp::Allreduce;
        let row_lines = Lines::new(Axis::Row, self.w, self.h);
        let row_target = if all { Target::All } else { Target::End };
        let row_colors: Vec<u8> = (C_FIRST..C_FIRST + 12).collect();
        let row = LineReduce::new(
            row_lines,
            self.strategy,
            self.combine,
            row_target,
            "v",
            self.n,
            &row_colors,
        );
        let next = C_FIRST + row.colors.len() as u8;
        let col_colors: Vec<u8> = (next..next + 12).collect();
        let (col_lines, col_target) = if all {
            (Lines::new(Axis::Col, self.w, self.h), Target::All)
        } else {
            (
                Lines {
                    axis: Axis::Col,
                    x: self.w - 1,
                    y: 0,
                    w: 1,
                    h: self.h,
                },
                Target::Stream(C_IO),
            )
        };
        (
            row,
            LineReduce::new(
                col_lines,
                self.strategy,
                self.combine,
                col_target,
                "v",
                self.n,
                &col_colors,
            ),
        )
    }
}

pub fn generate(s: &CollectiveSpec, arch: &Arch) -> Result<crate::Fragment, crate::KernelError> {
    use crate::KernelError;
    s.strategy.check()?;
    if s.scope == Scope::Rect {
        s.strategy.require_plan("a rectangle collective")?;
        return generate_rect(s, arch);
    }
    if s.strategy == Strategy::Ring {
        if s.op != CollectiveOp::Allreduce {
            return Err(KernelError::Shape(format!(
                "ring is an allreduce strategy; {} takes chain or tree:K",
                s.op.name()
            )));
        }
        return generate_ring(s, arch);
    }
    if s.w == 0 || s.h == 0 || s.n == 0 || s.w > arch.grid_cols || s.h > arch.grid_rows {
        return Err(KernelError::Rect {
            w: s.w,
            h: s.h,
            why: format!(
                "need 1..{}x{} PEs and n ≥ 1",
                arch.grid_cols, arch.grid_rows
            ),
        });
    }
    let lines = s.lines();
    let len = lines.len();
    let bytes = s.n as u64 * 4 + 200;
    if bytes > arch.sram_bytes as u64 {
        return Err(KernelError::Rect {
            w: s.w,
            h: s.h,
            why: format!("{} elements per PE need {bytes} bytes of SRAM", s.n),
        });
    }
    let need = match s.op {
        CollectiveOp::Reduce | CollectiveOp::Allreduce => {
            let target = if s.op == CollectiveOp::Allreduce {
                Target::All
            } else {
                Target::Stream(C_IO)
            };
            C_FIRST as usize + LineReduce::colors_needed(len, s.strategy, target)
        }
        _ => 1,
    };
    if need > arch.colors as usize {
        return Err(KernelError::Colors {
            need,
            have: arch.colors as usize,
        });
    }
    let mut src = format!(
        "; {} along {:?}s of {}x{} PEs, {} elements\n.grid {}x{}\n",
        s.op.name(),
        s.scope,
        s.w,
        s.h,
        s.n,
        s.w,
        s.h
    );
    let (up, down) = (lines.up(), lines.down());
    let body = |pos: u32| -> String {
        match s.op {
            CollectiveOp::Broadcast => format!("  vmov.f32 v, rx(c{C_IO})\n"),
            CollectiveOp::Reduce | CollectiveOp::Allreduce => s.reduce().code(pos),
            CollectiveOp::Gather if pos == 0 => format!("  vmov.f32 tx(c{C_IO}), v\n"),
            CollectiveOp::Gather => format!(
                "  vmov.f32 tx(c{C_IO}), rx(c{C_IO}, {})\n  vmov.f32 tx(c{C_IO}), v\n",
                pos * s.n
            ),
        }
    };
    for pos in 0..len {
        writeln!(src, ".code p{pos}\n  .buffer v f32[{}]\n  .task main local active\nmain:\n{}  end\n.end\n.place p{pos} {}", s.n, body(pos), lines.rect(pos, 1)).unwrap();
    }
    match s.op {
        CollectiveOp::Broadcast => {
            if len > 1 {
                writeln!(
                    src,
                    ".route {} c{C_IO} {up} -> R,{down}",
                    lines.rect(0, len - 1)
                )
                .unwrap();
            }
            writeln!(src, ".route {} c{C_IO} {up} -> R", lines.rect(len - 1, 1)).unwrap();
        }
        CollectiveOp::Reduce | CollectiveOp::Allreduce => src.push_str(&s.reduce().routes()),
        CollectiveOp::Gather => {
            writeln!(src, ".route {} c{C_IO} R -> {down}", lines.rect(0, len)).unwrap();
            if len > 1 {
                writeln!(src, ".route {} c{C_IO} {up} -> R", lines.rect(1, len - 1)).unwrap();
            }
        }
    }
    if s.op != CollectiveOp::Broadcast {
        writeln!(src, ".data v 0,0 {}x{} = rand({})", s.w, s.h, s.seed).unwrap();
    }
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    for lane in 0..s.lanes() {
        let (first, last) = (s.pe(0, lane), s.pe(len - 1, lane));
        match s.op {
            CollectiveOp::Broadcast => {
                writeln!(
                    src,
                    ".input in{lane} f32[{}] -> {},{} {up} c{C_IO} = rand({})",
                    s.n, first.x, first.y, s.seed
                )
                .unwrap();
                inputs.push(crate::TensorPort::whole(&format!("in{lane}"), s.n));
            }
            CollectiveOp::Reduce | CollectiveOp::Gather => {
                let n = if s.op == CollectiveOp::Gather {
                    s.n * len
                } else {
                    s.n
                };
                writeln!(
                    src,
                    ".output out{lane} f32[{n}] <- {},{} {down} c{C_IO}",
                    last.x, last.y
                )
                .unwrap();
                outputs.push(crate::TensorPort::whole(&format!("out{lane}"), n));
            }
            CollectiveOp::Allreduce => {}
        }
    }
    let program = crate::assemble(&src, "collective")?;
    Ok(crate::Fragment {
        program,
        inputs,
        outputs,
    })
}

/// What every line should produce, from the program's initial data (or,
/// for a broadcast, its input streams): for broadcast and allreduce the
/// final `v` of each PE of the line, for reduce and gather the output stream.
pub fn reference(s: &CollectiveSpec, p: &wafer_emulator::Program) -> Vec<Vec<f32>> {
    if s.scope == Scope::Rect {
        return vec![reference_rect(s, p)];
    }
    if s.strategy == Strategy::Ring {
        return reference_ring(s, p);
    }
    let len = s.lines().len();
    (0..s.lanes())
        .map(|lane| {
            let parts: Vec<Vec<f32>> = (0..len)
                .map(|pos| p.initial_values(s.pe(pos, lane), "v").expect("v exists"))
                .collect();
            match s.op {
                CollectiveOp::Broadcast => {
                    p.input_values(&format!("in{lane}")).expect("input exists")
                }
                CollectiveOp::Reduce | CollectiveOp::Allreduce => s.reduce().reference(&parts),
                CollectiveOp::Gather => parts.concat(),
            }
        })
        .collect()
}

/// Predicted cycles (see [`LineReduce::finish`] for the reductions). The
/// main task's first instruction issues at `S` (task switch); a broadcast
/// element `k` reaches position `p`'s core at `k + (p+1)·hop + ramp` and is
/// stored once the receive op has started (`S + 1 + I`); a gather's PE `p`
/// forwards its prefix one element per cycle as it arrives (`2·ramp + hop`
/// after it left the previous PE), then issues its own chunk's send. The run
/// ends one cycle after the last `end`, or when the last output element
/// reaches the host (`ramp + hop` after it leaves the last PE's core).
pub fn cost(s: &CollectiveSpec, arch: &Arch) -> u64 {
    if s.scope == Scope::Rect {
        return cost_rect(s, arch);
    }
    if s.strategy == Strategy::Ring {
        return cost_ring(s, arch);
    }
    let (sw, i, hop, ramp) = (
        arch.task_switch_cycles as u64,
        arch.vector_issue_cycles as u64,
        arch.hop_latency as u64,
        arch.ramp_latency as u64,
    );
    let len = s.lines().len() as u64;
    let n = s.n as u64;
    match s.op {
        CollectiveOp::Broadcast => (sw + 1 + i).max(len * hop + ramp) + n,
        CollectiveOp::Allreduce => {
            s.reduce()
                .finish(&vec![sw; len as usize], arch)
                .into_iter()
                .max()
                .unwrap_or(0)
                + 1
        }
        CollectiveOp::Reduce => {
            s.reduce().finish(&vec![sw; len as usize], arch)[len as usize - 1] + n - 1 + ramp + hop
        }
        CollectiveOp::Gather => {
            // Emission cycles of the stream leaving each PE, element by element.
            let start = sw + 1 + i;
            let mut stream: Vec<u64> = (0..n).map(|k| start + k).collect();
            for _ in 1..len {
                let mut out = Vec::with_capacity(stream.len() + n as usize);
                let mut t = start;
                for e in &stream {
                    t = t.max(e + 2 * ramp + hop);
                    out.push(t);
                    t += 1;
                }
                let own = out.last().copied().unwrap_or(start) + 1 + i;
                out.extend((0..n).map(|k| own + k));
                stream = out;
            }
            stream.last().copied().unwrap_or(0) + ramp + hop
        }
    }
}

/// A non-empty rectangle within the machine, and a vector that fits a PE.
fn check_fits(s: &CollectiveSpec, arch: &Arch) -> Result<(), crate::KernelError> {
    if s.w == 0
        || s.h == 0
        || s.n == 0
        || s.w > arch.grid_cols
        || s.h > arch.grid_rows
        || s.n as u64 * 4 + 200 > arch.sram_bytes as u64
    {
        return Err(crate::KernelError::Rect {
            w: s.w,
            h: s.h,
            why: format!(
                "need 1..{}x{} PEs and a vector that fits a PE",
                arch.grid_cols, arch.grid_rows
            ),
        });
    }
    Ok(())
}

fn generate_rect(s: &CollectiveSpec, arch: &Arch) -> Result<crate::Fragment, crate::KernelError> {
    use crate::KernelError;
    check_fits(s, arch)?;
    if s.op == CollectiveOp::Gather {
        return Err(KernelError::Shape(
            "a gather runs along rows or columns, to an edge (use --axis row or col)".into(),
        ));
    }
    let (w, h) = (s.w, s.h);
    let mut src = format!(
        "; {} over the whole {w}x{h} rectangle, {} elements\n.grid {w}x{h}\n",
        s.op.name(),
        s.n
    );
    let port = |name: &str| crate::TensorPort::whole(name, s.n);
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    if s.op == CollectiveOp::Broadcast {
        // A multicast tree: along row 0, and down every column.
        writeln!(src, ".code p\n  .buffer v f32[{}]\n  .task main local active\nmain:\n  vmov.f32 v, rx(c{C_IO})\n  end\n.end\n.place p 0,0 {w}x{h}", s.n).unwrap();
        let down = if h > 1 { ",S" } else { "" };
        if w > 1 {
            writeln!(src, ".route 0,0 {}x1 c{C_IO} W -> R,E{down}", w - 1).unwrap();
            writeln!(src, ".route {},0 1x1 c{C_IO} W -> R{down}", w - 1).unwrap();
        } else {
            writeln!(src, ".route 0,0 1x1 c{C_IO} W -> R{down}").unwrap();
        }
        if h > 2 {
            writeln!(src, ".route 0,1 {w}x{} c{C_IO} N -> R,S", h - 2).unwrap();
        }
        if h > 1 {
            writeln!(src, ".route 0,{} {w}x1 c{C_IO} N -> R", h - 1).unwrap();
        }
        writeln!(
            src,
            ".input in0 f32[{}] -> 0,0 W c{C_IO} = rand({})",
            s.n, s.seed
        )
        .unwrap();
        inputs.push(port("in0"));
    } else {
        let need =
            C_FIRST as usize + 2 * LineReduce::colors_needed(w.max(h), s.strategy, Target::All);
        if need > arch.colors as usize {
            return Err(KernelError::Colors {
                need,
                have: arch.colors as usize,
            });
        }
        let (row, col) = s.phases();
        for y in 0..h {
            for x in 0..w {
                // An allreduce's column phase runs in every column, a
                // reduce's in the east one only.
                let col_part = if s.op == CollectiveOp::Allreduce || x == w - 1 {
                    col.code(y)
                } else {
                    String::new()
                };
                writeln!(src, ".code p{x}_{y}\n  .buffer v f32[{}]\n  .task main local active\nmain:\n{}{}  end\n.end\n.place p{x}_{y} {x},{y} 1x1", s.n, row.code(x), col_part).unwrap();
            }
        }
        src.push_str(&row.routes());
        src.push_str(&col.routes());
        writeln!(src, ".data v 0,0 {w}x{h} = rand({})", s.seed).unwrap();
        if s.op == CollectiveOp::Reduce {
            writeln!(
                src,
                ".output out0 f32[{}] <- {},{} S c{C_IO}",
                s.n,
                w - 1,
                h - 1
            )
            .unwrap();
            outputs.push(port("out0"));
        }
    }
    let program = crate::assemble(&src, "collective")?;
    Ok(crate::Fragment {
        program,
        inputs,
        outputs,
    })
}

/// The whole rectangle's result: rows first, in each row's plan order, then
/// the row results down a column in the column plan's order.
fn reference_rect(s: &CollectiveSpec, p: &wafer_emulator::Program) -> Vec<f32> {
    if s.op == CollectiveOp::Broadcast {
        return p.input_values("in0").expect("input exists");
    }
    let (row, col) = s.phases();
    let rows: Vec<Vec<f32>> = (0..s.h)
        .map(|y| {
            row.reference(
                &(0..s.w)
                    .map(|x| {
                        p.initial_values(wafer_emulator::Pe::new(x, y), "v")
                            .expect("v exists")
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    col.reference(&rows)
}

/// Predicted cycles for a rectangle: a broadcast's element `k` reaches PE
/// `(x, y)`'s core at `k + (x + y + 1)·hop + ramp`; a reduction runs the row
/// phase ([`LineReduce::finish`], every row alike) and then the column phase
/// from when the row phase leaves each PE free.
fn cost_rect(s: &CollectiveSpec, arch: &Arch) -> u64 {
    let (sw, i, hop, ramp) = (
        arch.task_switch_cycles as u64,
        arch.vector_issue_cycles as u64,
        arch.hop_latency as u64,
        arch.ramp_latency as u64,
    );
    let n = s.n as u64;
    if s.op == CollectiveOp::Broadcast {
        return (sw + 1 + i).max((s.w + s.h - 1) as u64 * hop + ramp) + n;
    }
    let (row, col) = s.phases();
    let row_done = row.finish(&vec![sw; s.w as usize], arch);
    if s.op == CollectiveOp::Allreduce {
        let mut last = 0;
        for done in &row_done {
            last = last.max(
                col.finish(&vec![*done; s.h as usize], arch)
                    .into_iter()
                    .max()
                    .unwrap_or(0),
            );
        }
        last + 1
    } else {
        let east = *row_done.last().expect("at least one column");
        col.finish(&vec![east; s.h as usize], arch)[s.h as usize - 1] + n - 1 + ramp + hop
    }
}

/// The folded ring over a line of `p` PEs, in ring order: the even
/// positions going one way, the odd ones coming back, so no ring hop is
/// longer than 2 and the two directions never share a link.
pub fn ring_order(p: u32) -> Vec<u32> {
    (0..p).step_by(2).chain((1..p).step_by(2).rev()).collect()
}

/// A ring allreduce along every line, in `2·(p−1)` rounds over `p` chunks:
/// a reduce-scatter (in round `r`, ring position `q` sends chunk `q − r`
/// and adds the chunk `q − r − 1` arriving from its predecessor into its
/// own), leaving the total of chunk `c` at position `c − 1`; then an
/// allgather passing the totals on. Each round is a send and a receive, in
/// that order at even ring positions and the other way round at odd ones:
/// every sender then faces a receiver that is already receiving, so no
/// cycle of blocked senders can form, whatever the buffering. One color
/// carries it all (each PE hears only its predecessor, in order).
fn generate_ring(s: &CollectiveSpec, arch: &Arch) -> Result<crate::Fragment, crate::KernelError> {
    use crate::KernelError;
    let lines = s.lines();
    let p = lines.len();
    check_fits(s, arch)?;
    if s.n < p {
        return Err(KernelError::Shape(format!(
            "a ring over {p} PEs cuts the vector into {p} chunks; it needs at least {p} elements, not {}",
            s.n
        )));
    }
    let c = C_FIRST;
    let order = ring_order(p);
    let chunks = crate::split(s.n, p);
    let v = |ch: i64| {
        let (off, len) = chunks[ch.rem_euclid(p as i64) as usize];
        format!("v[{off}, {len}]")
    };
    let op = s.combine.mnemonic();
    let mut src = format!(
        "; ring allreduce along {:?}s of {}x{} PEs, {} elements\n.grid {}x{}\n",
        s.scope, s.w, s.h, s.n, s.w, s.h
    );
    for (q, pos) in order.iter().enumerate() {
        let q = q as i64;
        let mut body = String::new();
        for round in 0..2 * (p as i64 - 1) {
            let (send, recv) = if round < p as i64 - 1 {
                (
                    format!("vmov.f32 tx(c{c}), {}", v(q - round)),
                    format!("{op}.f32 {0}, rx(c{c}), {0}", v(q - round - 1)),
                )
            } else {
                let r = round - (p as i64 - 1);
                (
                    format!("vmov.f32 tx(c{c}), {}", v(q + 1 - r)),
                    format!("vmov.f32 {}, rx(c{c})", v(q - r)),
                )
            };
            let (a, b) = if q % 2 == 0 {
                (send, recv)
            } else {
                (recv, send)
            };
            writeln!(body, "  {a}\n  {b}").unwrap();
        }
        writeln!(src, ".code p{pos}\n  .buffer v f32[{}]\n  .task main local active\nmain:\n{body}  end\n.end\n.place p{pos} {}", s.n, lines.rect(*pos, 1)).unwrap();
    }
    for q in 0..p as usize {
        if p < 2 {
            break;
        }
        let (i, j) = (order[q], order[(q + 1) % p as usize]);
        let (dir, from) = if j > i {
            (lines.down(), lines.up())
        } else {
            (lines.up(), lines.down())
        };
        writeln!(src, ".route {} c{c} R -> {dir}", lines.rect(i, 1)).unwrap();
        for k in i.min(j) + 1..i.max(j) {
            writeln!(src, ".route {} c{c} {from} -> {dir}", lines.rect(k, 1)).unwrap();
        }
        writeln!(src, ".route {} c{c} {from} -> R", lines.rect(j, 1)).unwrap();
    }
    writeln!(src, ".data v 0,0 {}x{} = rand({})", s.w, s.h, s.seed).unwrap();
    let program = crate::assemble(&src, "ring allreduce")?;
    Ok(crate::Fragment {
        program,
        inputs: vec![],
        outputs: vec![],
    })
}

/// Chunk `c` combined in ring order from position `c`:
/// `f(…f(f(v_c, v_{c+1}), v_{c+2})…)`, the incoming partial first.
fn reference_ring(s: &CollectiveSpec, p: &wafer_emulator::Program) -> Vec<Vec<f32>> {
    let len = s.lines().len();
    let order = ring_order(len);
    let chunks = crate::split(s.n, len);
    (0..s.lanes())
        .map(|lane| {
            let parts: Vec<Vec<f32>> = (0..len as usize)
                .map(|q| {
                    p.initial_values(s.pe(order[q], lane), "v")
                        .expect("v exists")
                })
                .collect();
            let mut total = vec![0.0; s.n as usize];
            for (c, (off, n)) in chunks.iter().enumerate() {
                for (e, slot) in total
                    .iter_mut()
                    .enumerate()
                    .skip(*off as usize)
                    .take(*n as usize)
                {
                    *slot = (1..len as usize).fold(parts[c][e], |acc, t| {
                        s.combine.apply(acc, parts[(c + t) % len as usize][e])
                    });
                }
            }
            total
        })
        .collect()
}

/// Predicted cycles, round by round over ring positions: an op issued at
/// `t` starts at `t + 1 + I` and moves one element per cycle; a receive
/// handles element 0 at `max(start, arrival)`, the sender's first element
/// reaching it `2·ramp + hops·hop` later (hops 1 or 2); a send cannot run
/// more than the path's buffering ahead of its receiver, so it finishes no
/// earlier than `B` elements before the receive does, `B` being the
/// wavelets the path holds (core queue, the ramp buffer, one router buffer
/// per hop, each with its link's pipeline stages); the next op issues in
/// the cycle the previous one finishes.
fn cost_ring(s: &CollectiveSpec, arch: &Arch) -> u64 {
    let (sw, i, hop, ramp) = (
        arch.task_switch_cycles as u64,
        arch.vector_issue_cycles as u64,
        arch.hop_latency as u64,
        arch.ramp_latency as u64,
    );
    let p = s.lines().len() as usize;
    if p < 2 {
        return sw + 1;
    }
    let order = ring_order(p as u32);
    let chunks = crate::split(s.n, p as u32);
    let len = |c: i64| chunks[c.rem_euclid(p as i64) as usize].1 as u64;
    let hops: Vec<u64> = (0..p)
        .map(|q| (order[(q + 1) % p] as i64 - order[q] as i64).unsigned_abs())
        .collect();
    let lat = |q: usize| 2 * ramp + hops[q] * hop;
    let room = |q: usize| {
        (arch.queue_depth + arch.ramp_latency + arch.router_buffer_depth + arch.ramp_latency) as u64
            + hops[q] * (arch.router_buffer_depth + arch.hop_latency) as u64
    };
    let pred = |q: usize| (q + p - 1) % p;
    let mut t = vec![sw; p];
    for round in 0..2 * (p as i64 - 1) {
        let sent = |q: usize| {
            if round < p as i64 - 1 {
                len(q as i64 - round)
            } else {
                len(q as i64 + 1 - (round - (p as i64 - 1)))
            }
        };
        let (mut sf, mut sd, mut rf, mut rd) =
            (vec![0u64; p], vec![0u64; p], vec![0u64; p], vec![0u64; p]);
        // A send of n to q's successor, first element at sf[q], ends no
        // earlier than the successor's receive lets it (credits): the
        // receive's first pop at rf frees room one buffer further back
        // each cycle, so it reaches the sender's ramp buffer `hops + 2`
        // buffers back (queue, a router buffer per hop, the ramp buffer)
        // that many cycles later, and element `held + k` goes at
        // `rf + hops + 2 + k`.
        let send_done = |q: usize, sf: &[u64], rf: &[u64]| {
            let n = sent(q);
            let held = room(q);
            let by_credit = if n > held {
                rf[(q + 1) % p] + hops[q] + 2 + (n - 1 - held)
            } else {
                0
            };
            (sf[q] + n - 1).max(by_credit)
        };
        for q in (0..p).step_by(2) {
            sf[q] = t[q] + 1 + i;
        }
        for q in (1..p).step_by(2) {
            rf[q] = (t[q] + 1 + i).max(sf[pred(q)] + lat(pred(q)));
            rd[q] = rf[q] + sent(pred(q)) - 1;
            sf[q] = rd[q] + 1 + i;
        }
        for q in (0..p).step_by(2) {
            sd[q] = send_done(q, &sf, &rf);
            rf[q] = (sd[q] + 1 + i).max(sf[pred(q)] + lat(pred(q)));
            rd[q] = rf[q] + sent(pred(q)) - 1;
        }
        if p % 2 == 1 {
            // The last even position sends to position 0, whose receive
            // is only known now.
            let q = p - 1;
            sd[q] = send_done(q, &sf, &rf);
            rf[q] = (sd[q] + 1 + i).max(sf[pred(q)] + lat(pred(q)));
            rd[q] = rf[q] + sent(pred(q)) - 1;
        }
        for q in (1..p).step_by(2) {
            sd[q] = send_done(q, &sf, &rf);
        }
        for q in 0..p {
            t[q] = if q % 2 == 0 { rd[q] } else { sd[q] };
        }
    }
    t.into_iter().max().unwrap_or(0) + 1
}
