//! Collectives run on their own over a rectangle: every row, every column
//! or the whole rectangle broadcasts, reduces, all-reduces or gathers a
//! vector buffer, for `wafer kernel collective` and the cost model's tests.
//! Lines use the [`LineReduce`] building block (chain or tree plans); the
//! whole rectangle is in `rect`, the ring allreduce in `ring`.

mod rect;
mod ring;

pub use crate::line_reduce::Combine;
pub use ring::{ring_order, ring_place};

use crate::line_reduce::{Axis, LineReduce, Lines, Target};
use crate::reduce::Strategy;
use std::fmt::Write;
use wafer_emulator::Arch;

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
            reversed: false,
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
                    reversed: false,
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
        return rect::generate(s, arch);
    }
    if s.strategy == Strategy::Ring {
        if s.op != CollectiveOp::Allreduce {
            return Err(KernelError::Shape(format!(
                "ring is an allreduce strategy; {} takes chain or tree:K",
                s.op.name()
            )));
        }
        return ring::generate(s, arch);
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
            C_FIRST as usize + LineReduce::colors_needed(len, s.n, s.strategy, target)
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
        program: program.into(),
        inputs,
        outputs,
        state: Vec::new(),
    })
}

/// What every line should produce, from the program's initial data (or,
/// for a broadcast, its input streams): for broadcast and allreduce the
/// final `v` of each PE of the line, for reduce and gather the output stream.
pub fn reference(s: &CollectiveSpec, p: &wafer_emulator::Program) -> Vec<Vec<f32>> {
    if s.scope == Scope::Rect {
        return vec![rect::reference(s, p)];
    }
    if s.strategy == Strategy::Ring {
        return ring::reference(s, p);
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
        return rect::cost(s, arch);
    }
    if s.strategy == Strategy::Ring {
        return ring::cost(s, arch);
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
