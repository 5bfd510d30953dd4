//! Argmax over a vector down a column of PEs (segment `r` from the west of
//! PE `(0, r)`), ties to the lowest index, as greedy decoding needs.
//!
//! Each PE finds its segment's maximum; an allreduce gives the global one;
//! each PE scans its segment, branch-free so its time does not depend on
//! the data, for the first index holding it (a sentinel above 2^24 if none);
//! a max-reduce of the negated indices leaves the lowest index at the
//! bottom PE, which sends it (as an f32) east.

use crate::line_reduce::{Axis, Combine, LineReduce, Lines, Target};
use crate::reduce::Strategy;
use crate::timeline::{Timeline, f32_rate};
use crate::{Fragment, KernelError, Segment, TensorPort, split};
use std::fmt::Write;
use wafer_emulator::Arch;
use wafer_emulator::isa::VecOp;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArgmaxSpec {
    pub n: u32,
    pub h: u32,
    pub strategy: Strategy,
    pub seed: u64,
}

const CA: u8 = 0;
const CO: u8 = 2;
const C_RED: u8 = 3;
/// "No match here": larger than any index an f32 holds exactly.
const NONE: u32 = 1 << 24;

impl ArgmaxSpec {
    /// The maximum's allreduce (`Target::All`) or the index's reduce
    /// (`Target::End`), on colors after the maximum's where their routes
    /// differ.
    fn reduce(&self, buf: &str, target: Target) -> LineReduce {
        let at = match target {
            Target::All => 0,
            _ => LineReduce::colors_after_allreduce(self.h, 1, self.strategy),
        };
        let colors: Vec<u8> = (C_RED as usize + at..C_RED as usize + at + 20)
            .map(|c| c as u8)
            .collect();
        LineReduce::new(
            Lines::new(Axis::Col, 1, self.h),
            self.strategy,
            Combine::Max,
            target,
            buf,
            1,
            &colors,
        )
    }
}

pub fn generate(s: &ArgmaxSpec, arch: &Arch) -> Result<Fragment, KernelError> {
    s.strategy.require_plan("argmax")?;
    if s.n == 0 || s.n >= NONE {
        return Err(KernelError::Shape(format!(
            "argmax takes 1..{NONE} elements (indices travel as exact f32)"
        )));
    }
    if s.h == 0 || s.h > s.n || s.h > arch.grid_rows {
        return Err(KernelError::Rect {
            w: 1,
            h: s.h,
            why: format!("use 1..{} PEs", s.n.min(arch.grid_rows)),
        });
    }
    let segs = split(s.n, s.h);
    if segs[0].1 as u64 * 4 + 600 > arch.sram_bytes as u64 {
        return Err(KernelError::Rect {
            w: 1,
            h: s.h,
            why: format!(
                "a segment of {} elements does not fit a PE's SRAM; use more PEs",
                segs[0].1
            ),
        });
    }
    let need = C_RED as usize + LineReduce::colors_needed_then_reduce(s.h, 1, 1, s.strategy);
    if need > arch.colors as usize {
        return Err(KernelError::Colors {
            need,
            have: arch.colors as usize,
        });
    }
    let root = s.h - 1;
    let mut src = format!(
        "; argmax of {} elements down a column of {} PEs\n.grid 1x{}\n",
        s.n, s.h, s.h
    );
    for (r, (off, len)) in segs.iter().enumerate() {
        let send = if r as u32 == root {
            // 0 - x, not -x: index 0 leaves as +0, not -0.
            format!(
                "  ldf f5, ix[0]\n  lf f6, 0\n  fsub f5, f6, f5\n  stf ix[0], f5\n  vmov.f32 tx(c{CO}), ix\n"
            )
        } else {
            String::new()
        };
        writeln!(
            src,
            ".code p{r}
  .buffer x f32[{len}]
  .buffer mx f32[1]
  .buffer ix f32[1]
  .task main local active
main:
  vmov.f32 x, rx(c{CA})
  lf f1, -inf
  vrmax.f32 f1, x
  stf mx[0], f1
{max}  ldf f2, mx[0]
  li r1, 0
  li r3, {NONE}
scan:
  ldf f3, x[r1]
  feq r2, f3, f2
  sub r4, r1, {NONE}
  mul r4, r4, r2
  add r4, r4, {NONE}
  min r3, r3, r4
  add r1, r1, 1
  blt r1, {len}, scan
  add r3, r3, {off}
  li r5, 0
  sub r3, r5, r3
  itof f4, r3
  stf ix[0], f4
{idx}{send}  end
.end
.place p{r} 0,{r} 1x1",
            max = s.reduce("mx", Target::All).code(r as u32),
            idx = s.reduce("ix", Target::End).code(r as u32),
        )
        .unwrap();
    }
    writeln!(
        src,
        ".route 0,0 1x{} c{CA} W -> R\n.route 0,{root} 1x1 c{CO} R -> E",
        s.h
    )
    .unwrap();
    src.push_str(&s.reduce("mx", Target::All).routes());
    if LineReduce::colors_after_allreduce(s.h, 1, s.strategy) > 0 {
        src.push_str(&s.reduce("ix", Target::End).routes());
    }
    for (r, (_, len)) in segs.iter().enumerate() {
        writeln!(
            src,
            ".input a{r} f32[{len}] -> 0,{r} W c{CA} = rand({})",
            s.seed
        )
        .unwrap();
    }
    writeln!(src, ".output id f32[1] <- 0,{root} E c{CO}").unwrap();
    let program = crate::assemble(&src, "argmax")?;
    let a = TensorPort {
        name: "a".into(),
        len: s.n,
        segments: segs
            .iter()
            .enumerate()
            .map(|(r, (off, len))| Segment {
                stream: format!("a{r}"),
                offset: *off,
                len: *len,
                at: 0,
            })
            .collect(),
    };
    let id = TensorPort::whole("id", 1);
    Ok(Fragment {
        program: program.into(),
        inputs: vec![a],
        outputs: vec![id],
        state: Vec::new(),
    })
}

/// The reference: the first index of the maximum.
pub fn reference(a: &[f32]) -> u32 {
    let m = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    a.iter().position(|x| *x == m).expect("a maximum exists") as u32
}

/// Predicted cycles (data-independent by construction): receive, local max,
/// the allreduce, `8` instructions per element of the scan, 5 more, the
/// index reduce to the bottom PE, 4 scalars and the one-element send there,
/// then `ramp + hop` to the host.
pub fn cost(s: &ArgmaxSpec, arch: &Arch) -> u64 {
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let segs = split(s.n, s.h);
    let rmax = f32_rate(arch, VecOp::Rmax, 1, 0);
    let mut lines: Vec<Timeline> = segs
        .iter()
        .map(|(_, len)| {
            let mut l = Timeline::start(arch);
            l.receive(*len, hop + ramp);
            l.scalar(1);
            l.vector(*len, rmax);
            l.scalar(1);
            l
        })
        .collect();
    let sync = |lines: &mut Vec<Timeline>, red: LineReduce| {
        let issue: Vec<u64> = lines.iter().map(|l| l.t).collect();
        for (l, done) in lines.iter_mut().zip(red.finish(&issue, arch)) {
            l.t = done;
        }
    };
    sync(&mut lines, s.reduce("mx", Target::All));
    for (l, (_, len)) in lines.iter_mut().zip(&segs) {
        l.scalar(3 + 8 * *len as u64 + 5);
    }
    sync(&mut lines, s.reduce("ix", Target::End));
    let root = lines.last_mut().expect("at least one PE");
    root.scalar(4);
    root.send(1, f32_rate(arch, VecOp::Mov, 1, 0)) + ramp + hop
}
