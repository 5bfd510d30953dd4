//! A collective over the whole rectangle: the rows reduce (or broadcast),
//! then one column carries the row results on.

use super::{C_FIRST, C_IO, CollectiveOp, CollectiveSpec, check_fits};
use crate::line_reduce::{LineReduce, Target};
use std::fmt::Write;
use wafer_emulator::Arch;

pub(super) fn generate(
    s: &CollectiveSpec,
    arch: &Arch,
) -> Result<crate::Fragment, crate::KernelError> {
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
        let need = C_FIRST as usize
            + LineReduce::colors_needed(w, s.n, s.strategy, Target::All)
            + LineReduce::colors_needed(h, s.n, s.strategy, Target::All);
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
        program: program.into(),
        inputs,
        outputs,
        state: Vec::new(),
    })
}

/// The whole rectangle's result: rows first, in each row's plan order, then
/// the row results down a column in the column plan's order.
pub(super) fn reference(s: &CollectiveSpec, p: &wafer_emulator::Program) -> Vec<f32> {
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
pub(super) fn cost(s: &CollectiveSpec, arch: &Arch) -> u64 {
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
