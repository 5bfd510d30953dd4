//! Attention for one decode step, with the KV cache resident in SRAM:
//! `kv_heads` KV heads, each with the `group` query heads that share it
//! (grouped-query attention; `group = 1` is plain multi-head attention).
//! Each KV head has its own column of PEs; the columns run side by side.
//!
//! The cache is spread block-cyclically down a column of `h` PEs: position
//! `p` lives on PE `p mod h` in slot `p / h`, so every PE holds about `pos/h`
//! valid positions whatever the context length, and appending a position
//! touches one PE without moving the cache. Column `c`'s input stream
//! `[pos, k_c, v_c, its query heads]` enters its top PE from the north and
//! is multicast down the column. Then each PE:
//! 1. appends `k`, `v` if it owns `pos`;
//! 2. scores its valid slots for every query head: `q·k / √d`;
//! 3. takes part in a column allreduce of the per-head maxima, exponentiates
//!    `score − max`, and in an allreduce of the per-head sums;
//! 4. forms `Σ w·v` over its slots, divided by the head's sum;
//!
//! and a column reduce streams the heads' outputs (`group·d` values) out of
//! the column's bottom PE. Positions after `pos` are never read (causal).
//!
//! With `per_query_head`, each query head has a column of its own, with
//! its own copy of its KV head's cache (the same `k` and `v` are appended
//! to every copy): `group` times the cache's SRAM, but each column's input
//! is `1 + 3d` values and its output reduce `d`, not `group·d`. The
//! columns run the grouped code with `group = 1` ([`AttentionSpec::as_columns`]).
//!
//! gpt-oss's attention adds two things. With `sinks`, each column's top PE
//! holds a learned logit per query head: it joins that PE's maxima before
//! the max allreduce, and its `exp(sink − max)` joins that PE's sums
//! before the sum allreduce, so it is in every softmax's denominator and
//! in no numerator. With a `window`, each PE skips the slots before the
//! window's first position (`pos + 1 − window`): the scores, maxima, sums
//! and weighted values cover the window alone.

use crate::line_reduce::{Axis, Combine, LineReduce, Lines, Target};
use crate::reduce::Strategy;
use crate::timeline::{Timeline, f32_rate as rate};
use crate::{Fragment, KernelError, Segment, TensorPort};
use std::collections::BTreeMap;
use std::fmt::Write;
use wafer_emulator::isa::VecOp;
use wafer_emulator::{Arch, DataInit, Pe, Program};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttentionSpec {
    pub head_dim: u32,
    /// Query heads sharing this KV head.
    pub group: u32,
    /// Positions the cache can hold.
    pub max_context: u32,
    /// This step's position: the cache holds `0..pos`, this step appends `pos`.
    pub pos: u32,
    /// KV heads: one column of PEs each, side by side.
    pub kv_heads: u32,
    /// PEs in each column.
    pub h: u32,
    pub strategy: Strategy,
    pub seed: u64,
    /// A learned sink logit per query head (gpt-oss): in each softmax's
    /// denominator, out of its numerator. Held by each column's top PE.
    pub sinks: bool,
    /// Attend only to the positions `p` with `pos − p < window` (a
    /// sliding-window layer); `None`: every cached position.
    pub window: Option<u32>,
    /// One column per query head instead of per KV head: each column
    /// keeps its own copy of its KV head's cache (`group` times the
    /// cache's SRAM, over `group` times the PEs) and reduces one head's
    /// output instead of `group` heads' (the output reduce, `group·d`
    /// wavelets down the column, bounds a grouped column's time). Each
    /// head's arithmetic is the same, so the output is bit for bit the
    /// grouped layout's.
    #[serde(default)]
    pub per_query_head: bool,
}

const CIN: u8 = 0;
const CO: u8 = 1;
const C_RED: u8 = 2;

impl AttentionSpec {
    /// The spec its columns run: with [`AttentionSpec::per_query_head`],
    /// `kv_heads · group` columns of one query head each; otherwise
    /// itself.
    pub fn as_columns(&self) -> AttentionSpec {
        match self.per_query_head {
            true => AttentionSpec {
                kv_heads: self.kv_heads.saturating_mul(self.group),
                group: 1,
                per_query_head: false,
                ..self.clone()
            },
            false => self.clone(),
        }
    }
    /// Columns of PEs.
    pub fn columns(&self) -> u32 {
        self.as_columns().kv_heads
    }
    /// Cache slots per PE.
    pub fn slots(&self) -> u32 {
        self.max_context.div_ceil(self.h)
    }
    fn in_len(&self) -> u32 {
        1 + 2 * self.head_dim + self.group * self.head_dim
    }
    /// [`AttentionSpec::in_len`] without overflow, for the size checks.
    fn in_len_wide(&self) -> u64 {
        let (d, g) = (self.head_dim as u64, self.group as u64);
        1 + 2 * d + g * d
    }
    /// Valid positions on PE `r` this step (`pos` included).
    pub fn valid(&self, r: u32) -> u32 {
        if self.pos >= r {
            (self.pos - r) / self.h + 1
        } else {
            0
        }
    }
    /// PE `r`'s first slot inside the window (0 without one): slot `k`
    /// holds position `r + k·h`, and the window starts at
    /// `pos + 1 − window`.
    pub fn first(&self, r: u32) -> u32 {
        match self.window {
            Some(w) if self.pos + 1 > w + r => (self.pos + 1 - w - r).div_ceil(self.h),
            _ => 0,
        }
    }
    fn lines(&self) -> Lines {
        Lines::new(Axis::Col, self.kv_heads, self.h)
    }
    fn colors(&self) -> Vec<u8> {
        (C_RED..C_RED + 20).collect()
    }
    fn allreduce(&self, buf: &str, combine: Combine) -> LineReduce {
        LineReduce::new(
            self.lines(),
            self.strategy,
            combine,
            Target::All,
            buf,
            self.group,
            &self.colors(),
        )
    }
    fn output(&self) -> LineReduce {
        LineReduce::new(
            self.lines(),
            self.strategy,
            Combine::Add,
            Target::Stream(CO),
            "o",
            self.group * self.head_dim,
            &self.colors(),
        )
    }
    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
    /// SRAM one PE needs (saturating at `u32::MAX`: shapes far past any
    /// PE's SRAM are compared, not computed exactly).
    pub fn sram_bytes(&self) -> u32 {
        if self.per_query_head {
            return self.as_columns().sram_bytes();
        }
        let (d, g, s) = (self.head_dim as u64, self.group as u64, self.slots() as u64);
        let bytes = 4 * (self.in_len_wide() + 2 * s * d + g * s + g * d + 2 * g)
            + if self.sinks { 8 * g } else { 0 }
            + 800;
        bytes.min(u32::MAX as u64) as u32
    }
}

/// The head's three collectives: the scores' max, their sum, the output.
/// Built once per kernel (each holds the whole line's plan), then asked
/// for each row's code.
struct Collectives {
    max: LineReduce,
    sum: LineReduce,
    output: LineReduce,
}

impl Collectives {
    fn new(s: &AttentionSpec) -> Collectives {
        Collectives {
            max: s.allreduce("mx", Combine::Max),
            sum: s.allreduce("sm", Combine::Add),
            output: s.output(),
        }
    }
}

fn code(s: &AttentionSpec, all: &Collectives, r: u32) -> String {
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
    // The top PE's sinks join its maxima, and later its sums.
    if s.sinks && r == 0 {
        t.push_str("  vfmax.f32 mx, mx, snk\n");
    }
    t.push_str(&all.max.code(r));
    write!(
        t,
        "  li r5, 0
  li r7, 0
norm:
  ldf f4, mx[r5]
  lf f5, 0.0
{span}  beq {count}, 0, nosum
  vfsub.f32 sc[{at}, {count}], sc[{at}, {count}], f4
  vexp.f32 sc[{at}, {count}], sc[{at}, {count}]
  vsum.f32 f5, sc[{at}, {count}]
nosum:
  stf sm[r5], f5
  add r5, r5, 1
  add r7, r7, {slots}
  blt r5, {g}, norm
",
    )
    .unwrap();
    if s.sinks && r == 0 {
        t.push_str("  vfsub.f32 ts, snk, mx\n  vexp.f32 ts, ts\n  vfadd.f32 sm, sm, ts\n");
    }
    t.push_str(&all.sum.code(r));
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
  ldf f7, sm[r5]
  frcp f7, f7
  vfmul.f32 o[r11, {d}], o[r11, {d}], f7
  add r5, r5, 1
  add r7, r7, {slots}
  add r11, r11, {d}
  blt r5, {g}, wsum
",
    )
    .unwrap();
    t.push_str(&all.output.code(r));
    t
}

/// Seeded values for the step's input stream: `[pos, k, v, q...]`.
/// Seeded values for column `c`'s input stream: `[pos, k, v, q...]`.
fn default_input(s: &AttentionSpec, c: u32) -> Vec<f32> {
    let init = DataInit::Random {
        seed: s.seed.wrapping_add(3),
    };
    std::iter::once(s.pos as f32)
        .chain((1..s.in_len()).map(|i| init.value(Pe::new(c, 0), i)))
        .collect()
}

pub fn generate(s: &AttentionSpec, arch: &Arch) -> Result<Fragment, KernelError> {
    s.strategy.require_plan("attention")?;
    if s.head_dim == 0 || s.group == 0 || s.kv_heads == 0 || s.h == 0 || s.max_context == 0 {
        return Err(KernelError::Shape(
            "attention needs head_dim, group, kv_heads, max_context and PEs of at least 1".into(),
        ));
    }
    if s.columns() > arch.grid_cols {
        return Err(KernelError::Rect {
            w: s.columns(),
            h: s.h,
            why: format!(
                "one column per {} head, and machine `{}` has {} columns",
                if s.per_query_head { "query" } else { "KV" },
                arch.name,
                arch.grid_cols
            ),
        });
    }
    if !s.per_query_head {
        return columns(s, arch, &|c| default_input(s, c));
    }
    // Column `c` is query head `c` of KV head `c / group`: its seeded
    // input is that head's part of the grouped layout's, so both layouts
    // take the same tensors.
    let (d, g) = (s.head_dim as usize, s.group);
    let mut f = columns(&s.as_columns(), arch, &|c| {
        let grouped = default_input(s, c / g);
        let q = 1 + 2 * d + (c % g) as usize * d;
        grouped[..1 + 2 * d]
            .iter()
            .chain(&grouped[q..q + d])
            .copied()
            .collect()
    })?;
    // Every column of a KV head reads that head's `k` and `v`.
    for port in f
        .inputs
        .iter_mut()
        .filter(|p| p.name == "k" || p.name == "v")
    {
        port.len = s.kv_heads * s.head_dim;
        for (c, seg) in port.segments.iter_mut().enumerate() {
            seg.offset = c as u32 / g * s.head_dim;
        }
    }
    Ok(f)
}

/// The program of `s`'s columns (`s` is grouped: one column per KV head),
/// column `c`'s input stream seeded with `input(c)`.
fn columns(
    s: &AttentionSpec,
    arch: &Arch,
    input: &dyn Fn(u32) -> Vec<f32>,
) -> Result<Fragment, KernelError> {
    if s.window == Some(0) {
        return Err(KernelError::Shape(
            "a sliding window holds at least the position itself (1)".into(),
        ));
    }
    if s.pos >= s.max_context {
        return Err(KernelError::Shape(format!(
            "position {} is past the cache's {} positions; raise the maximum context",
            s.pos, s.max_context
        )));
    }
    if s.h > arch.grid_rows || s.h > s.max_context {
        return Err(KernelError::Rect {
            w: 1,
            h: s.h,
            why: format!("use 1..{} PEs", s.max_context.min(arch.grid_rows)),
        });
    }
    if s.sram_bytes() > arch.sram_bytes {
        return Err(KernelError::Rect {
            w: 1,
            h: s.h,
            why: format!(
                "{} cache slots of {} per PE need about {} bytes of SRAM, a PE has {}; use more PEs or a shorter context",
                s.slots(),
                s.head_dim,
                s.sram_bytes(),
                arch.sram_bytes
            ),
        });
    }
    let need = C_RED as usize + LineReduce::colors_needed(s.h, s.strategy, Target::All);
    if need > arch.colors as usize {
        return Err(KernelError::Colors {
            need,
            have: arch.colors as usize,
        });
    }
    let (d, g, slots, w) = (s.head_dim, s.group, s.slots(), s.kv_heads);
    let all = Collectives::new(s);
    let mut src = format!(
        "; attention: {w} KV head(s) with {g} query head(s) each, head dim {d}, position {} of {}, {w}x{} PEs\n.grid {w}x{}\n",
        s.pos, s.max_context, s.h, s.h
    );
    for r in 0..s.h {
        let sinks = if s.sinks && r == 0 {
            format!("  .buffer snk f32[{g}]\n  .buffer ts f32[{g}]\n")
        } else {
            String::new()
        };
        writeln!(
            src,
            ".code p{r}\n  .buffer inb f32[{}]\n  .buffer kc f32[{}]\n  .buffer vc f32[{}]\n  .buffer sc f32[{}]\n  .buffer o f32[{}]\n  .buffer mx f32[{g}]\n  .buffer sm f32[{g}]\n{sinks}  .task main local active\nmain:\n{}  end\n.end\n.place p{r} 0,{r} {w}x1",
            s.in_len(),
            slots * d,
            slots * d,
            g * slots,
            g * d,
            code(s, &all, r)
        )
        .unwrap();
    }
    if s.h > 1 {
        writeln!(src, ".route 0,0 {w}x{} c{CIN} N -> R,S", s.h - 1).unwrap();
    }
    writeln!(src, ".route 0,{} {w}x1 c{CIN} N -> R", s.h - 1).unwrap();
    src.push_str(&all.max.routes());
    src.push_str(&all.output.routes());
    writeln!(src, ".data kc 0,0 {w}x{} = rand({})", s.h, s.seed).unwrap();
    if s.sinks {
        writeln!(
            src,
            ".data snk 0,0 {w}x1 = rand({})",
            s.seed.wrapping_add(5)
        )
        .unwrap();
    }
    writeln!(
        src,
        ".data vc 0,0 {w}x{} = rand({})",
        s.h,
        s.seed.wrapping_add(1)
    )
    .unwrap();
    for c in 0..w {
        let vals: Vec<String> = input(c).iter().map(|v| format!("{v:?}")).collect();
        writeln!(
            src,
            ".input in{c} f32[{}] -> {c},0 N c{CIN} = [{}]",
            s.in_len(),
            vals.join(", ")
        )
        .unwrap();
        writeln!(
            src,
            ".output out{c} f32[{}] <- {c},{} S c{CO}",
            g * d,
            s.h - 1
        )
        .unwrap();
    }
    let program = crate::assemble(&src, "attention")?;
    // Tensors `pos`, `k`, `v`, `q` (KV head c's query heads are c·g .. c·g+g)
    // into the columns' streams, and `out` from them.
    let seg = |c: u32, offset: u32, len: u32, at: u32| Segment {
        stream: format!("in{c}"),
        offset,
        len,
        at,
    };
    let port = |name: &str, len: u32, segments: Vec<Segment>| TensorPort {
        name: name.into(),
        len,
        segments,
    };
    let inputs = vec![
        port("pos", 1, (0..w).map(|c| seg(c, 0, 1, 0)).collect()),
        port("k", w * d, (0..w).map(|c| seg(c, c * d, d, 1)).collect()),
        port(
            "v",
            w * d,
            (0..w).map(|c| seg(c, c * d, d, 1 + d)).collect(),
        ),
        port(
            "q",
            w * g * d,
            (0..w)
                .map(|c| seg(c, c * g * d, g * d, 1 + 2 * d))
                .collect(),
        ),
    ];
    let out = port(
        "out",
        w * g * d,
        (0..w)
            .map(|c| Segment {
                stream: format!("out{c}"),
                offset: c * g * d,
                len: g * d,
                at: 0,
            })
            .collect(),
    );
    Ok(Fragment {
        program: program.into(),
        inputs,
        outputs: vec![out],
        // The KV cache: each step's key and value are appended to it.
        state: vec!["kc".into(), "vc".into()],
    })
}

/// Put the sinks (one per query head: head `c·group + j` is column `c`'s
/// `j`-th) into the columns' top PEs in place of the seeded ones.
pub fn load_sinks(s: &AttentionSpec, f: &mut Fragment, v: &[f32]) -> Result<(), KernelError> {
    let g = s.group as usize;
    if !s.sinks || v.len() != s.kv_heads as usize * g {
        return Err(KernelError::Shape(format!(
            "attention of {} KV heads with {} query heads each{} takes no {} sinks",
            s.kv_heads,
            s.group,
            if s.sinks { "" } else { " and no sinks" },
            v.len()
        )));
    }
    // Per query head, column `c` holds sink `c` alone.
    let (columns, g) = (s.columns(), s.as_columns().group as usize);
    let per_pe = (0..columns)
        .map(|c| (Pe::new(c, 0), v[c as usize * g..][..g].to_vec()))
        .collect();
    f.load("snk", per_pe);
    Ok(())
}

/// One PE's valid keys and values, in slot order.
struct PeCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

/// Column `c`'s cache as the program holds it after this step's append,
/// from the program's initial cache and the column's input `[pos, k, v, q]`.
fn cache(s: &AttentionSpec, p: &Program, c: u32, input: &[f32]) -> Vec<PeCache> {
    let d = s.head_dim as usize;
    (0..s.h)
        .map(|r| {
            let (kc, vc) = (
                p.initial_values(Pe::new(c, r), "kc").unwrap(),
                p.initial_values(Pe::new(c, r), "vc").unwrap(),
            );
            let nv = s.valid(r) as usize;
            let mut keys: Vec<Vec<f32>> =
                (0..nv).map(|i| kc[i * d..(i + 1) * d].to_vec()).collect();
            let mut values: Vec<Vec<f32>> =
                (0..nv).map(|i| vc[i * d..(i + 1) * d].to_vec()).collect();
            if s.pos % s.h == r {
                keys[nv - 1] = input[1..1 + d].to_vec();
                values[nv - 1] = input[1 + d..1 + 2 * d].to_vec();
            }
            // Those in the window.
            let first = s.first(r) as usize;
            keys.drain(..first);
            values.drain(..first);
            PeCache { keys, values }
        })
        .collect()
}

/// The reference: the same f32 operations in the same order as the PEs,
/// column by column.
pub fn reference(s: &AttentionSpec, inputs: &BTreeMap<String, Vec<f32>>, p: &Program) -> Vec<f32> {
    let col = s.as_columns();
    let (d, g) = (s.head_dim as usize, col.group as usize);
    // Column `c` reads KV head `c / per` (`per` columns share one).
    let per = (s.group / col.group) as usize;
    (0..col.kv_heads as usize)
        .flat_map(|c| {
            let kv = c / per;
            let mut input = vec![inputs["pos"][0]];
            input.extend_from_slice(&inputs["k"][kv * d..(kv + 1) * d]);
            input.extend_from_slice(&inputs["v"][kv * d..(kv + 1) * d]);
            input.extend_from_slice(&inputs["q"][c * g * d..(c + 1) * g * d]);
            column_reference(&col, p, c as u32, &input)
        })
        .collect()
}

/// One column: its input stream `[pos, k, v, q...]` to its output.
fn column_reference(s: &AttentionSpec, p: &Program, column: u32, input: &[f32]) -> Vec<f32> {
    let (d, g) = (s.head_dim as usize, s.group as usize);
    let q = |j: usize| &input[1 + 2 * d + j * d..1 + 2 * d + (j + 1) * d];
    let cache = cache(s, p, column, input);
    let scores: Vec<Vec<Vec<f32>>> = cache
        .iter()
        .map(|c| {
            (0..g)
                .map(|j| {
                    c.keys
                        .iter()
                        .map(|k| {
                            q(j).iter().zip(k).fold(0.0f32, |acc, (a, b)| acc + a * b) * s.scale()
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    // The top PE's sinks, if any.
    let sinks = s.sinks.then(|| {
        p.initial_values(Pe::new(column, 0), "snk")
            .unwrap_or_default()
    });
    let local_max: Vec<Vec<f32>> = scores
        .iter()
        .enumerate()
        .map(|(r, per)| {
            per.iter()
                .enumerate()
                .map(|(j, sc)| {
                    let m = sc.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x));
                    match &sinks {
                        Some(snk) if r == 0 => m.max(snk[j]),
                        _ => m,
                    }
                })
                .collect()
        })
        .collect();
    let max = s.allreduce("mx", Combine::Max).reference(&local_max);
    let weights: Vec<Vec<Vec<f32>>> = scores
        .iter()
        .map(|per| {
            per.iter()
                .enumerate()
                .map(|(j, sc)| sc.iter().map(|x| (x - max[j]).exp()).collect())
                .collect()
        })
        .collect();
    let local_sum: Vec<Vec<f32>> = weights
        .iter()
        .enumerate()
        .map(|(r, per)| {
            per.iter()
                .enumerate()
                .map(|(j, w)| {
                    let sum = w.iter().fold(0.0f32, |acc, x| acc + x);
                    match &sinks {
                        Some(snk) if r == 0 => sum + (snk[j] - max[j]).exp(),
                        _ => sum,
                    }
                })
                .collect()
        })
        .collect();
    let sum = s.allreduce("sm", Combine::Add).reference(&local_sum);
    let partials: Vec<Vec<f32>> = cache
        .iter()
        .zip(&weights)
        .map(|(c, per)| {
            (0..g)
                .flat_map(|j| {
                    let mut o = vec![0.0f32; d];
                    for (v, w) in c.values.iter().zip(&per[j]) {
                        for (oi, vi) in o.iter_mut().zip(v) {
                            *oi += vi * w;
                        }
                    }
                    let inv = 1.0 / sum[j];
                    o.into_iter().map(move |x| x * inv)
                })
                .collect()
        })
        .collect();
    s.output().reference(&partials)
}

/// Predicted cycles: each PE's path through the code above, instruction by
/// instruction with [`Timeline`] (its valid slots `nv` and whether it owns
/// `pos` decide the path), the allreduces and the output reduce by
/// [`LineReduce::finish`], and the input's element `k` in PE `r`'s queue at
/// `k + (r+1)·hop + ramp` (it enters PE(0,0) from the host and is multicast
/// one hop per row).
pub fn cost(s: &AttentionSpec, arch: &Arch) -> u64 {
    // Per query head, the columns are grouped columns of one head each.
    let s = &s.as_columns();
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let (d, g) = (s.head_dim, s.group);
    let (mov, dot, rmax) = (
        rate(arch, VecOp::Mov, 1, 1),
        rate(arch, VecOp::Dot, 2, 0),
        rate(arch, VecOp::Rmax, 1, 0),
    );
    let (sub, exp, sum) = (
        rate(arch, VecOp::Fsub, 1, 1),
        rate(arch, VecOp::Exp, 1, 1),
        rate(arch, VecOp::Sum, 1, 0),
    );
    let (zero, fmac, mul) = (
        rate(arch, VecOp::Mov, 0, 1),
        rate(arch, VecOp::Fmac, 2, 1),
        rate(arch, VecOp::Fmul, 1, 1),
    );
    let mut lines: Vec<Timeline> = (0..s.h).map(|_| Timeline::start(arch)).collect();
    let sync = |lines: &mut Vec<Timeline>, red: LineReduce| {
        let issue: Vec<u64> = lines.iter().map(|l| l.t).collect();
        for (l, done) in lines.iter_mut().zip(red.finish(&issue, arch)) {
            l.t = done;
        }
    };
    // A window's extra scalar per head (the first score's address), the
    // slots in it, and the top PE's sink ops.
    let span = s.window.is_some() as u64;
    let count = |r: u32| s.valid(r) - s.first(r);
    let sinks_top = |r: usize| s.sinks && r == 0;
    for (r, l) in lines.iter_mut().enumerate() {
        let r = r as u32;
        let nv = count(r);
        l.receive(s.in_len(), hop * (r as u64 + 1) + ramp);
        l.scalar(5 + if s.pos >= r { 3 } else { 0 } + 2);
        if s.pos % s.h == r {
            l.scalar(2);
            l.vector(d, mov);
            l.vector(d, mov);
        }
        if let Some(w) = s.window {
            l.scalar(4 + if s.pos + 1 > w + r { 3 } else { 0 });
        }
        l.scalar(3);
        for _ in 0..g {
            l.scalar(2);
            l.repeat(nv as u64, |l| {
                l.scalar(2);
                l.vector(d, dot);
                l.scalar(6);
            });
            l.scalar(3 + span);
            if nv > 0 {
                l.vector(nv, rmax);
            }
            l.scalar(5);
        }
        if sinks_top(r as usize) {
            l.vector(g, rate(arch, VecOp::Fmax, 2, 1));
        }
    }
    sync(&mut lines, s.allreduce("mx", Combine::Max));
    for (r, l) in lines.iter_mut().enumerate() {
        let nv = count(r as u32);
        l.scalar(2);
        for _ in 0..g {
            l.scalar(3 + span);
            if nv > 0 {
                l.vector(nv, sub);
                l.vector(nv, exp);
                l.vector(nv, sum);
            }
            l.scalar(4);
        }
        if sinks_top(r) {
            l.vector(g, rate(arch, VecOp::Fsub, 2, 1));
            l.vector(g, exp);
            l.vector(g, rate(arch, VecOp::Fadd, 2, 1));
        }
    }
    sync(&mut lines, s.allreduce("sm", Combine::Add));
    for (r, l) in lines.iter_mut().enumerate() {
        let nv = count(r as u32);
        l.scalar(3);
        for _ in 0..g {
            l.vector(d, zero);
            l.scalar(2);
            l.repeat(nv as u64, |l| {
                l.scalar(3);
                l.vector(d, fmac);
                l.scalar(3);
            });
            l.scalar(3);
            l.vector(d, mul);
            l.scalar(4);
        }
    }
    let issue: Vec<u64> = lines.iter().map(|l| l.t).collect();
    let first = s.output().finish(&issue, arch)[s.h as usize - 1];
    first + (g * d) as u64 - 1 + ramp + hop
}
