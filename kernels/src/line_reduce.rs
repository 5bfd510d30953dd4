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

/// The middle PE's gathers: when its last one ends, given when it issues
/// the first (`issue`) and, per stream in the order it gathers them
/// (`(color, cycle)`), when the stream's first wavelet would reach its
/// core alone; every stream carries `m` wavelets. Stepped a cycle at a
/// time, as the engine does at that PE:
/// * the router moves at most one wavelet a cycle onto the ramp: of the
///   heads waiting whose queue has room, the first in its round-robin
///   order (its entries by color, from the one after the color it last
///   moved; it starts from the lowest: the kernels that meet in the
///   middle move only lower colors, their inputs, through it before). A
///   stream's wavelets come one a cycle, a wavelet held at the router
///   holding those behind it (the links hold them, one a cycle after);
/// * a wavelet reaches the core's queue `ramp` cycles after it moves; a
///   queue holds `queue_depth` wavelets plus those on the ramp, and a pop
///   frees room from the next cycle on;
/// * a gather issues `1 + vector_issue_cycles` after the previous ends and
///   takes a wavelet a cycle as they reach it.
fn middle_gathers(issue: u64, streams: &[(u8, u64)], m: u64, arch: &Arch) -> u64 {
    let (ramp, i) = (arch.ramp_latency as u64, arch.vector_issue_cycles as u64);
    let room = (arch.queue_depth + arch.ramp_latency) as u64;
    let n = streams.len();
    if m == 0 {
        // Empty vectors: no gather would ever take a wavelet (the
        // generators refuse them; a cost asked of one must not loop).
        return issue;
    }
    // Per stream: wavelets moved, the cycle the last moved, and when each
    // moved wavelet reaches the queue.
    let mut moved = vec![0u64; n];
    let mut last_move = vec![0u64; n];
    let mut in_queue: Vec<Vec<u64>> = vec![Vec::new(); n];
    let mut popped = vec![0u64; n];
    // The gather being served, the cycle it can take its next wavelet.
    let (mut g, mut next_pop) = (0usize, issue + 1 + i);
    let mut rr = 0u16;
    let mut t = streams
        .iter()
        .map(|s| s.1.saturating_sub(ramp))
        .min()
        .unwrap_or(0);
    while g < n {
        // The router: the wavelets that can move this cycle.
        let ready = |s: usize| {
            let k = moved[s];
            k < m
                && streams[s].1 - ramp + k <= t
                && (k == 0 || last_move[s] < t)
                && k - popped[s] < room
        };
        if let Some(s) = (0..n).filter(|&s| ready(s)).min_by_key(|&s| {
            let c = streams[s].0 as u16;
            (c < rr, c)
        }) {
            in_queue[s].push(t + ramp);
            moved[s] += 1;
            last_move[s] = t;
            rr = streams[s].0 as u16 + 1;
        }
        // The core: the gather takes its next wavelet if it is there.
        let k = popped[g] as usize;
        if next_pop <= t && in_queue[g].get(k).is_some_and(|&at| at <= t) {
            popped[g] += 1;
            next_pop = t + 1;
            if popped[g] == m {
                g += 1;
                next_pop = t + 1 + i;
                if g == n {
                    return t;
                }
            }
        }
        t += 1;
    }
    issue
}

/// Reduce buffer `buf` (length `n`, f32) over each line.
///
/// With [`Target::All`] on a line long enough that it pays
/// ([`LineReduce::meets_in_the_middle`]), the two halves reduce toward the
/// line's middle PE at once, the far half on the reversed line, and the
/// middle broadcasts the result both ways: a value crosses half the line
/// twice, not the whole line twice, and the middle PE combines the two
/// halves one after the other (the near half's steps, then the far's).
#[derive(Clone, Debug, PartialEq)]
pub struct LineReduce {
    pub lines: Lines,
    /// The plan over positions `0 ..= root`: the whole line, or its near
    /// half when the halves meet in the middle.
    pub plan: Plan,
    /// The far half's plan when the halves meet in the middle: its
    /// position `q` is the line's `len − 1 − q`, its root the line's root.
    pub far: Option<Plan>,
    pub combine: Combine,
    pub target: Target,
    pub buf: String,
    pub n: u32,
    /// One color per level of the plan, then one per level of the far
    /// half's, then (for `Target::All`) the broadcast's.
    pub colors: Vec<u8>,
}

impl LineReduce {
    /// Whether an allreduce of `n` elements over `len` PEs meets in the
    /// middle: it saves about `len` hops (half the line crossed on the
    /// way in and on the way out) and costs the middle PE the far half's
    /// combines (an issue each, one per level). Decided with a margin of
    /// two, from the shapes alone, so a kernel's colors and code do not
    /// depend on the machine; and only where the halves' levels take at
    /// most two colors more than the whole line's, so a kernel that fitted
    /// its colors before still does.
    ///
    /// The two halves' streams meet at the middle's ramp, one wavelet a
    /// cycle; [`middle_gathers`] follows them there cycle by cycle.
    pub fn meets_in_the_middle(len: u32, n: u32, strategy: Strategy, target: Target) -> bool {
        if target != Target::All || len < 3 {
            return false;
        }
        let mid = LineReduce::middle(len);
        let (near, far) = (
            Plan::shape(mid + 1, strategy).0,
            Plan::shape(len - mid, strategy).0,
        );
        near + far <= Plan::shape(len, strategy).0 + 2
            && 2 * far as u64 * (n as u64 + 3) < len as u64
    }

    /// Where a reduce to the line's end after an allreduce of `n` elements
    /// over the same lines starts its colors: at the first, sharing the
    /// allreduce's routes, when the allreduce's plan is the whole line's;
    /// after the allreduce's colors when it meets in the middle.
    pub fn colors_after_allreduce(len: u32, n: u32, strategy: Strategy) -> usize {
        match LineReduce::meets_in_the_middle(len, n, strategy, Target::All) {
            true => LineReduce::colors_needed(len, n, strategy, Target::All),
            false => 0,
        }
    }

    /// Colors an allreduce of `n_all` elements, then a reduce to the
    /// line's end of `n_end` elements over the same lines, take together:
    /// the reduce starts at [`LineReduce::colors_after_allreduce`].
    pub fn colors_needed_then_reduce(
        len: u32,
        n_all: u32,
        n_end: u32,
        strategy: Strategy,
    ) -> usize {
        LineReduce::colors_needed(len, n_all, strategy, Target::All).max(
            LineReduce::colors_after_allreduce(len, n_all, strategy)
                + LineReduce::colors_needed(len, n_end, strategy, Target::End),
        )
    }

    /// The middle PE's position on a line of `len`: the far half one or
    /// two PEs longer than the near half (its streams reach the middle
    /// after the near half's, so the two rarely meet at its ramp).
    fn middle(len: u32) -> u32 {
        (len - 2) / 2
    }

    /// Colors this reduction of `n` elements needs for `len` PEs per line.
    pub fn colors_needed(len: u32, n: u32, strategy: Strategy, target: Target) -> usize {
        let broadcast = usize::from(target == Target::All && len > 1);
        if LineReduce::meets_in_the_middle(len, n, strategy, target) {
            let mid = LineReduce::middle(len);
            (Plan::shape(mid + 1, strategy).0 + Plan::shape(len - mid, strategy).0) as usize
                + broadcast
        } else {
            Plan::shape(len, strategy).0 as usize + broadcast
        }
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
        let len = lines.len();
        let (plan, far) = if LineReduce::meets_in_the_middle(len, n, strategy, target) {
            let mid = LineReduce::middle(len);
            (
                Plan::new(mid + 1, strategy),
                Some(Plan::new(len - mid, strategy)),
            )
        } else {
            (Plan::new(len, strategy), None)
        };
        let need = LineReduce::colors_needed(len, n, strategy, target);
        assert!(colors.len() >= need, "collective needs {need} colors");
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

    /// The same plan and routes over vectors of `n` elements: a batch of
    /// statistics summed in the order one statistic is, though `n` alone
    /// might have chosen another plan ([`LineReduce::meets_in_the_middle`]).
    pub fn with_elements(self, n: u32) -> LineReduce {
        LineReduce { n, ..self }
    }

    /// Where the result is: the line's last PE, or its middle.
    fn root(&self) -> u32 {
        self.plan.n - 1
    }

    /// The far half's colors (empty without one).
    fn far_colors(&self) -> &[u8] {
        let near = self.plan.levels as usize;
        let far = self.far.as_ref().map_or(0, |f| f.levels as usize);
        &self.colors[near..near + far]
    }

    /// The instructions PE `pos` runs (one per line, indented).
    pub fn code(&self, pos: u32) -> String {
        let (b, op) = (&self.buf, self.combine.mnemonic());
        let near = if pos < self.plan.n {
            self.plan.steps(pos as usize)
        } else {
            &[]
        };
        // The far half's steps, at the positions it covers (only an
        // allreduce has one, so a streamed result's last step is near's).
        let far: &[(u32, Action)] = match &self.far {
            Some(far) if self.lines.len() - pos <= far.n => {
                far.steps((self.lines.len() - 1 - pos) as usize)
            }
            _ => &[],
        };
        let steps: Vec<(u8, Action)> = near
            .iter()
            .map(|(l, a)| (self.colors[*l as usize], *a))
            .chain(
                far.iter()
                    .map(|(l, a)| (self.far_colors()[*l as usize], *a)),
            )
            .collect();
        let mut t = String::new();
        for (i, (c, action)) in steps.iter().enumerate() {
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
            Target::Stream(out) if near.is_empty() => {
                writeln!(t, "  vmov.f32 tx(c{out}), {b}").unwrap()
            }
            Target::All if self.lines.len() > 1 => {
                let cb = *self
                    .colors
                    .last()
                    .expect("an allreduce has a broadcast color");
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

    /// The routes of one plan's sends along `lines`, on `colors` by level.
    fn plan_routes(t: &mut String, plan: &Plan, lines: &Lines, colors: &[u8]) {
        let (up, down) = (lines.up(), lines.down());
        for (pos, steps) in plan.each_pe().enumerate() {
            for (l, action) in steps {
                let c = colors[*l as usize];
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
    }

    /// The routes of every line (and, for `Stream`, out of the last PE).
    pub fn routes(&self) -> String {
        let (lines, up, down) = (&self.lines, self.lines.up(), self.lines.down());
        let mut t = String::new();
        LineReduce::plan_routes(&mut t, &self.plan, lines, &self.colors);
        if let Some(far) = &self.far {
            LineReduce::plan_routes(&mut t, far, &lines.reversed(), self.far_colors());
        }
        let (root, last) = (self.root(), lines.len() - 1);
        match self.target {
            Target::Stream(out) => {
                writeln!(t, ".route {} c{out} R -> {down}", lines.rect(root, 1)).unwrap()
            }
            Target::All if last > 0 => {
                let cb = *self
                    .colors
                    .last()
                    .expect("an allreduce has a broadcast color");
                // Out of the root toward the line's start and, from the
                // middle, toward its end too.
                let outs = if root < last {
                    format!("{up},{down}")
                } else {
                    up.to_string()
                };
                writeln!(t, ".route {} c{cb} R -> {outs}", lines.rect(root, 1)).unwrap();
                if root > 1 {
                    writeln!(
                        t,
                        ".route {} c{cb} {down} -> R,{up}",
                        lines.rect(1, root - 1)
                    )
                    .unwrap();
                }
                if root > 0 {
                    writeln!(t, ".route {} c{cb} {down} -> R", lines.rect(0, 1)).unwrap();
                }
                if last - root > 1 {
                    writeln!(
                        t,
                        ".route {} c{cb} {up} -> R,{down}",
                        lines.rect(root + 1, last - root - 1)
                    )
                    .unwrap();
                }
                if root < last {
                    writeln!(t, ".route {} c{cb} {up} -> R", lines.rect(last, 1)).unwrap();
                }
            }
            _ => {}
        }
        t
    }

    /// The result of one line, in the emulator's order of operations.
    pub fn reference(&self, parts: &[Vec<f32>]) -> Vec<f32> {
        let combine = self.combine;
        let f = |a: f32, b: f32| combine.apply(a, b);
        let near = self.plan.reduce_with(&parts[..self.plan.n as usize], f);
        match &self.far {
            None => near,
            Some(far) => {
                // The middle holds the near half's result when it takes
                // the far half's.
                let last = parts.len() - 1;
                let mut half: Vec<Vec<f32>> = (0..far.n as usize)
                    .map(|q| parts[last - q].clone())
                    .collect();
                half[far.n as usize - 1] = near;
                far.reduce_with(&half, f)
            }
        }
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
        let root = self.root() as usize;
        let near = self.plan.times(&issue[..=root], self.n, arch);
        let root_first = near.root_first;
        let mut done = issue.to_vec();
        done[..=root].copy_from_slice(&near.done);
        if let Some(far) = &self.far {
            let last = done.len() - 1;
            let far_issue: Vec<u64> = (0..far.n as usize).map(|q| issue[last - q]).collect();
            let far_times = far.times(&far_issue, self.n, arch);
            for (q, d) in far_times.done.iter().enumerate().take(far.n as usize - 1) {
                done[last - q] = *d;
            }
            // The middle gathers the near half's streams, then the far
            // half's, each wavelet as its router's ramp delivers it.
            // A root's steps are its gathers, a level each.
            let near_colors = self
                .plan
                .steps(root)
                .iter()
                .map(|(l, _)| self.colors[*l as usize]);
            let far_root = far.steps(far.n as usize - 1);
            let far_colors = far_root.iter().map(|(l, _)| self.far_colors()[*l as usize]);
            let streams: Vec<(u8, u64)> = near_colors
                .zip(near.root_in)
                .chain(far_colors.zip(far_times.root_in))
                .collect();
            done[root] = middle_gathers(issue[root], &streams, m, arch);
        }
        match self.target {
            Target::Stream(_) => {
                done[root] = if self.plan.steps(root).is_empty() {
                    done[root] + 1 + i
                } else {
                    root_first
                }
            }
            Target::All if done.len() > 1 => {
                let first = done[root] + 1 + i;
                done[root] = first + m - 1;
                for (p, d) in done.iter_mut().enumerate().filter(|(p, _)| *p != root) {
                    let arrive = first + 2 * ramp + p.abs_diff(root) as u64 * hop;
                    *d = (*d + 1 + i).max(arrive) + m - 1;
                }
            }
            _ => {}
        }
        done
    }
}
