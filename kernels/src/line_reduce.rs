//! The line reduction: every row (or every column) of a rectangle of PEs
//! combines a vector buffer along the line at once, in the order a
//! [`Plan`] gives. It does not make a whole program: it emits the
//! instructions each PE runs (by its position on the line) and the routes,
//! so a kernel embeds it between its own instructions (five kernels do, and
//! the collectives). The same plan gives the reference's order of sums and
//! the timing ([`LineReduce::finish`]).

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
/// parallel lines along `axis`; `reversed` lines run the other way
/// (toward the west or north edge), so their last PE is the first row
/// or column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lines {
    pub axis: Axis,
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    pub reversed: bool,
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
            reversed: false,
        }
    }

    /// The same lines run the other way.
    pub fn reversed(self) -> Lines {
        Lines {
            reversed: !self.reversed,
            ..self
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
        match (self.axis, self.reversed) {
            (Axis::Row, false) => "E",
            (Axis::Col, false) => "S",
            (Axis::Row, true) => "W",
            (Axis::Col, true) => "N",
        }
    }
    pub fn up(&self) -> &'static str {
        match (self.axis, self.reversed) {
            (Axis::Row, false) => "W",
            (Axis::Col, false) => "N",
            (Axis::Row, true) => "E",
            (Axis::Col, true) => "S",
        }
    }
    /// The rectangle text for positions `pos .. pos + n` of every line.
    pub fn rect(&self, pos: u32, n: u32) -> String {
        // Reversed, positions `pos .. pos + n` are the columns (rows)
        // `len − pos − n .. len − pos`.
        let first = if self.reversed {
            self.len() - pos - n
        } else {
            pos
        };
        match self.axis {
            Axis::Row => format!("{},{} {n}x{}", self.x + first, self.y, self.h),
            Axis::Col => format!("{},{} {}x{n}", self.x, self.y + first, self.w),
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
    pub(crate) fn mnemonic(self) -> &'static str {
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
        Plan::shape(len, strategy).0 as usize + usize::from(target == Target::All && len > 1)
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
        let steps = self.plan.steps(pos as usize);
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
        for (pos, steps) in self.plan.each_pe().enumerate() {
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
                done[root] = if self.plan.steps(root).is_empty() {
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
