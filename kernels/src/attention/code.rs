//! The code each PE of an attention column runs, by its row: the
//! append, the scores, the maxima's allreduce, the weighted values and
//! the output reduce, which carries the softmax's sums with the values;
//! the top PE (row h − 1) divides by them as it streams the output out.

use super::{AttentionSpec, CIN, CO};
use crate::line_reduce::{Combine, LineReduce};
use std::fmt::Write;

/// The head's two collectives: the scores' max, and the output (the
/// unnormalized weighted values and the sums). Built once per kernel
/// (each holds the whole line's plan), then asked for each row's code.
pub(super) struct Collectives {
    pub(super) max: LineReduce,
    pub(super) output: LineReduce,
}

impl Collectives {
    pub(super) fn new(s: &AttentionSpec) -> Collectives {
        Collectives {
            max: s.allreduce("mx", Combine::Max),
            output: s.output(),
        }
    }
}

pub(super) fn code(s: &AttentionSpec, all: &Collectives, r: u32) -> String {
    let (d, g, slots, h) = (s.head_dim, s.group, s.slots(), s.h);
    // In a window, r12 is the first slot in it and r15 the slots from
    // there (computed once), r14 a head's first score.
    let windowed = s.window.is_some();
    let first = if windowed { "mov r8, r12" } else { "li r8, 0" };
    let first_at = if windowed {
        format!("mul r9, r12, {d}")
    } else {
        "li r9, 0".to_string()
    };
    let span = if windowed { "  add r14, r7, r12\n" } else { "" };
    let (count, at) = if windowed {
        ("r15", "r14")
    } else {
        ("r2", "r7")
    };
    let mut t = format!(
        "  vmov.f32 inb, rx(c{CIN})
  lf f15, {scale:?}
  ldf f1, inb[0]
  ftoi r1, f1
  li r2, 0
  blt r1, {r}, counted
  sub r2, r1, {r}
  div r2, r2, {h}
  add r2, r2, 1
counted:
  rem r3, r1, {h}
  bne r3, {r}, appended
  sub r4, r2, 1
  mul r4, r4, {d}
  vmov.f32 kc[r4, {d}], inb[1, {d}]
  vmov.f32 vc[r4, {d}], inb[{v}, {d}]
appended:
{window}  li r5, 0
  li r6, {q}
  li r7, 0
head:
  {first}
  {first_at}
slot:
  bge r8, r2, scored
  lf f2, 0.0
  vdot.f32 f2, inb[r6, {d}], kc[r9, {d}]
  fmul f2, f2, f15
  add r10, r7, r8
  stf sc[r10], f2
  add r8, r8, 1
  add r9, r9, {d}
  jmp slot
scored:
  lf f3, -inf
{span}  beq {count}, 0, nomax
  vrmax.f32 f3, sc[{at}, {count}]
nomax:
  stf mx[r5], f3
  add r5, r5, 1
  add r6, r6, {d}
  add r7, r7, {slots}
  blt r5, {g}, head
",
        scale = s.scale(),
        v = 1 + d,
        q = 1 + 2 * d,
        window = match s.window {
            None => String::new(),
            Some(w) => format!(
                "  li r12, 0
  sub r13, r1, {}
  blt r13, {}, windowed
  sub r12, r13, {r}
  add r12, r12, {}
  div r12, r12, {h}
windowed:
  sub r15, r2, r12
",
                w - 1,
                r + 1,
                h - 1
            ),
        },
    );
    // Row 0's sinks (the bottom PE's) join its maxima, and later its sums.
    if s.sinks && r == 0 {
        t.push_str("  vfmax.f32 mx, mx, snk\n");
    }
    t.push_str(&all.max.code(r));
    // Head j's sum goes to o[g·d + j], behind the weighted values, so the
    // output reduce carries it: no allreduce of the sums.
    let gd = g * d;
    write!(
        t,
        "  li r5, 0
  li r7, 0
  li r13, {gd}
norm:
  ldf f4, mx[r5]
  lf f5, 0.0
{span}  beq {count}, 0, nosum
  vfsub.f32 sc[{at}, {count}], sc[{at}, {count}], f4
  vexp.f32 sc[{at}, {count}], sc[{at}, {count}]
  vsum.f32 f5, sc[{at}, {count}]
nosum:
  stf o[r13], f5
  add r5, r5, 1
  add r13, r13, 1
  add r7, r7, {slots}
  blt r5, {g}, norm
",
    )
    .unwrap();
    if s.sinks && r == 0 {
        writeln!(
            t,
            "  vfsub.f32 ts, snk, mx\n  vexp.f32 ts, ts\n  vfadd.f32 o[{gd}, {g}], o[{gd}, {g}], ts"
        )
        .unwrap();
    }
    write!(
        t,
        "  li r5, 0
  li r7, 0
  li r11, 0
wsum:
  vmov.f32 o[r11, {d}], 0.0
  {first}
  {first_at}
wslot:
  bge r8, r2, wdone
  add r10, r7, r8
  ldf f6, sc[r10]
  vfmac.f32 o[r11, {d}], o[r11, {d}], vc[r9, {d}], f6
  add r8, r8, 1
  add r9, r9, {d}
  jmp wslot
wdone:
  add r5, r5, 1
  add r7, r7, {slots}
  add r11, r11, {d}
  blt r5, {g}, wsum
",
    )
    .unwrap();
    t.push_str(&all.output.code(r));
    // The top PE (row h − 1) holds the column's sums of values and of weights:
    // it streams each head's values out divided by its sum (unrolled,
    // so the last send is the code's last instruction).
    if r + 1 == h {
        for j in 0..g {
            writeln!(
                t,
                "  ldf f7, o[{}]\n  frcp f7, f7\n  vfmul.f32 tx(c{CO}), o[{}, {d}], f7",
                gd + j,
                j * d
            )
            .unwrap();
        }
    }
    t
}
