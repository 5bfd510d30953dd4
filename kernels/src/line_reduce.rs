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
    /// In the buffer of every PE, as `All`, but rooted in the middle: the
    /// line's two halves reduce toward it at once (the far half into the
    /// PE beside the middle, which passes its result over one hop), and
    /// the middle broadcasts both ways, so the result travels half the
    /// line twice instead of the whole line twice. One more color than
    /// `All`. The middle adds the far half's result after its own half's
    /// (the far stream waits in the queues meanwhile, holding up only the
    /// PE beside the middle, whose next step is to wait for the
    /// broadcast). Both streams cross the middle's ramp: where they reach
    /// it in the same cycles the engine delays one, which
    /// [`LineReduce::finish`] does not arbitrate (as for a tree's leader;
    /// README, "What the cost models leave out"), so it is used for short
    /// vectors, where that is rare: attention's maxima.
    AllFromMiddle,
    /// Streamed out of the last PE, downstream, on this color.
    Stream(u8),
}

/// Reduce buffer `buf` (length `n`, f32) over each line.
#[derive(Clone, Debug, PartialEq)]
pub struct LineReduce {
    pub lines: Lines,
    /// Over the whole line; for `AllFromMiddle`, over positions
    /// `0..=middle`, toward the middle.
    pub plan: Plan,
    /// For `AllFromMiddle`: over positions `middle + 1..len`, from the
    /// line's end back toward the middle (its position `i` is the line's
    /// `len − 1 − i`). It shares `plan`'s colors: the halves' PEs and
    /// links are apart.
    far: Option<Plan>,
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
        match target {
            Target::AllFromMiddle => {
                let (near, far) = LineReduce::halves(len);
                let levels = Plan::shape(near, strategy)
                    .0
                    .max(Plan::shape(far.max(1), strategy).0);
                // The far half's hand-over and the broadcast.
                levels as usize + if len > 1 { 2 } else { 0 }
            }
            _ => {
                Plan::shape(len, strategy).0 as usize
                    + usize::from(target == Target::All && len > 1)
            }
        }
    }

    /// `AllFromMiddle`'s halves: PEs from the start to the middle (it
    /// included), and past it.
    fn halves(len: u32) -> (u32, u32) {
        let middle = len.saturating_sub(1) / 2;
        (middle + 1, len - (middle + 1).min(len))
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
        let need = LineReduce::colors_needed(lines.len(), strategy, target);
        assert!(colors.len() >= need, "collective needs {need} colors");
        let (plan, far) = match target {
            Target::AllFromMiddle => {
                let (near, far) = LineReduce::halves(lines.len());
                (
                    Plan::new(near, strategy),
                    (far > 0).then(|| Plan::new(far, strategy)),
                )
            }
            _ => (Plan::new(lines.len(), strategy), None),
        };
        LineReduce {
            lines,
            plan,
            far,
            combine,
            target,
            buf: buf.to_string(),
            n,
            colors: colors[..need].to_vec(),
        }
    }

    /// Where the result is gathered: the last PE, or for
    /// `AllFromMiddle` the middle one.
    fn root(&self) -> u32 {
        match self.target {
            Target::AllFromMiddle => self.plan.n - 1,
            _ => self.lines.len() - 1,
        }
    }

    /// The instructions PE `pos` runs (one per line, indented).
    pub fn code(&self, pos: u32) -> String {
        if self.target == Target::AllFromMiddle {
            return self.code_from_middle(pos);
        }
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

    /// One half's steps at one of its PEs: its plan's sends, forwards and
    /// gathers, into `buf`.
    fn half_code(&self, steps: &[(u32, Action)], t: &mut String) {
        let (b, op) = (&self.buf, self.combine.mnemonic());
        for (l, action) in steps {
            let c = self.colors[*l as usize];
            match action {
                Action::Send { .. } => writeln!(t, "  vmov.f32 tx(c{c}), {b}").unwrap(),
                Action::Forward { .. } => {
                    writeln!(t, "  {op}.f32 tx(c{c}), rx(c{c}), {b}").unwrap()
                }
                Action::Gather => writeln!(t, "  {op}.f32 {b}, rx(c{c}), {b}").unwrap(),
            }
        }
    }

    /// `AllFromMiddle`'s code at `pos`: its half's steps; the far half's
    /// root hands its result to the middle, which adds it and broadcasts.
    fn code_from_middle(&self, pos: u32) -> String {
        let (b, op) = (&self.buf, self.combine.mnemonic());
        let (middle, len) = (self.root(), self.lines.len());
        let levels = self.colors.len().saturating_sub(2);
        let (hand, cast) = (
            self.colors.get(levels).copied(),
            self.colors.get(levels + 1).copied(),
        );
        let mut t = String::new();
        match &self.far {
            Some(far) if pos > middle => {
                self.half_code(far.steps((len - 1 - pos) as usize), &mut t);
                if pos == middle + 1 {
                    writeln!(t, "  vmov.f32 tx(c{}), {b}", hand.unwrap()).unwrap();
                }
            }
            _ => self.half_code(self.plan.steps(pos as usize), &mut t),
        }
        if pos == middle && self.far.is_some() {
            writeln!(t, "  {op}.f32 {b}, rx(c{}), {b}", hand.unwrap()).unwrap();
        }
        if len > 1 {
            let cb = cast.unwrap();
            if pos == middle {
                writeln!(t, "  vmov.f32 tx(c{cb}), {b}").unwrap();
            } else {
                writeln!(t, "  vmov.f32 {b}, rx(c{cb})").unwrap();
            }
        }
        t
    }

    /// The routes of one plan's sends, `toward` the line's end (or back
    /// toward its start), its position `i` the line's `at(i)`.
    fn plan_routes(&self, plan: &Plan, toward_end: bool, at: impl Fn(u32) -> u32, t: &mut String) {
        let lines = &self.lines;
        let (from, to) = match toward_end {
            true => (lines.up(), lines.down()),
            false => (lines.down(), lines.up()),
        };
        for (i, steps) in plan.each_pe().enumerate() {
            for (l, action) in steps {
                let c = self.colors[*l as usize];
                if let Action::Send { hops } | Action::Forward { hops } = action {
                    let (src, dst) = (at(i as u32), at(i as u32 + hops));
                    let between = (src.min(dst) + 1, hops - 1);
                    writeln!(t, ".route {} c{c} R -> {to}", lines.rect(src, 1)).unwrap();
                    if *hops > 1 {
                        writeln!(
                            t,
                            ".route {} c{c} {from} -> {to}",
                            lines.rect(between.0, between.1)
                        )
                        .unwrap();
                    }
                    writeln!(t, ".route {} c{c} {from} -> R", lines.rect(dst, 1)).unwrap();
                }
            }
        }
    }

    /// `AllFromMiddle`'s routes: the near half toward the middle, the far
    /// half back toward it, the hand-over, and the broadcast both ways.
    fn routes_from_middle(&self) -> String {
        let (lines, up, down) = (&self.lines, self.lines.up(), self.lines.down());
        let (middle, len) = (self.root(), self.lines.len());
        let mut t = String::new();
        self.plan_routes(&self.plan, true, |i| i, &mut t);
        if let Some(far) = &self.far {
            self.plan_routes(far, false, |i| len - 1 - i, &mut t);
            let hand = self.colors[self.colors.len() - 2];
            writeln!(t, ".route {} c{hand} R -> {up}", lines.rect(middle + 1, 1)).unwrap();
            writeln!(t, ".route {} c{hand} {down} -> R", lines.rect(middle, 1)).unwrap();
        }
        if len > 1 {
            let cb = self.colors[self.colors.len() - 1];
            let outs = match (middle > 0, middle + 1 < len) {
                (true, true) => format!("{up},{down}"),
                (true, false) => up.to_string(),
                _ => down.to_string(),
            };
            writeln!(t, ".route {} c{cb} R -> {outs}", lines.rect(middle, 1)).unwrap();
            if middle > 1 {
                writeln!(
                    t,
                    ".route {} c{cb} {down} -> R,{up}",
                    lines.rect(1, middle - 1)
                )
                .unwrap();
            }
            if middle > 0 {
                writeln!(t, ".route {} c{cb} {down} -> R", lines.rect(0, 1)).unwrap();
            }
            if middle + 2 < len {
                writeln!(
                    t,
                    ".route {} c{cb} {up} -> R,{down}",
                    lines.rect(middle + 1, len - middle - 2)
                )
                .unwrap();
            }
            if middle + 1 < len {
                writeln!(t, ".route {} c{cb} {up} -> R", lines.rect(len - 1, 1)).unwrap();
            }
        }
        t
    }

    /// The routes of every line (and, for `Stream`, out of the last PE).
    pub fn routes(&self) -> String {
        if self.target == Target::AllFromMiddle {
            return self.routes_from_middle();
        }
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
        let f = |a, b| combine.apply(a, b);
        let Some(far) = &self.far else {
            return self.plan.reduce_with(&parts[..self.plan.n as usize], f);
        };
        let (near, rest) = parts.split_at(self.plan.n as usize);
        let mine = self.plan.reduce_with(near, f);
        let back: Vec<Vec<f32>> = rest.iter().rev().cloned().collect();
        let theirs = far.reduce_with(&back, f);
        // The middle adds the incoming far half to its own.
        theirs.iter().zip(&mine).map(|(a, b)| f(*a, *b)).collect()
    }

    /// For one line, given the cycle each PE issues the collective's first
    /// instruction, the cycle its last one finishes (the next instruction
    /// issues in that cycle); for `Stream`, the last PE's entry is the cycle
    /// its first result element leaves. Every op moves one f32 per cycle
    /// (see [`Plan::first_out`] for the derivation); a broadcast back
    /// reaches position `p` `2·ramp + (root − p)·hop` after it leaves.
    pub fn finish(&self, issue: &[u64], arch: &Arch) -> Vec<u64> {
        if self.target == Target::AllFromMiddle {
            return self.finish_from_middle(issue, arch);
        }
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

    /// [`LineReduce::finish`] for `AllFromMiddle`: each half's timeline;
    /// the far half's root sends its result a hop to the middle when it
    /// has it, the middle adds it after its own half's gathers, and the
    /// broadcast reaches position `p` `2·ramp + |middle − p|·hop` after it
    /// leaves. A far-half stream the busy middle leaves waiting only holds
    /// up PEs whose next step is to wait for that broadcast.
    fn finish_from_middle(&self, issue: &[u64], arch: &Arch) -> Vec<u64> {
        let (i, ramp, hop) = (
            arch.vector_issue_cycles as u64,
            arch.ramp_latency as u64,
            arch.hop_latency as u64,
        );
        let m = self.n as u64;
        let (middle, len) = (self.root() as usize, self.lines.len() as usize);
        let (mut done, _) = self.plan.timeline(&issue[..=middle], self.n, arch);
        if let Some(far) = &self.far {
            let back: Vec<u64> = issue[middle + 1..].iter().rev().copied().collect();
            let (far_done, _) = far.timeline(&back, self.n, arch);
            done.extend(far_done.into_iter().rev());
            // The hand-over, then the middle's add.
            let sent = done[middle + 1] + 1 + i;
            done[middle + 1] = sent + m - 1;
            let first = (done[middle] + 1 + i).max(sent + 2 * ramp + hop);
            done[middle] = first + m - 1;
        }
        if len > 1 {
            let first = done[middle] + 1 + i;
            done[middle] = first + m - 1;
            for (p, d) in done.iter_mut().enumerate() {
                if p != middle {
                    let arrive = first + 2 * ramp + p.abs_diff(middle) as u64 * hop;
                    *d = (*d + 1 + i).max(arrive) + m - 1;
                }
            }
        }
        done
    }
}
