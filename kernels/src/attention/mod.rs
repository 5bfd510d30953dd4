//! Attention for one decode step, with the KV cache resident in SRAM:
//! `kv_heads` KV heads, each with the `group` query heads that share it
//! (grouped-query attention; `group = 1` is plain multi-head attention).
//! Each KV head has its own column of PEs; the columns run side by side.
//!
//! The cache is spread block-cyclically over a column of `h` PEs, whose
//! rows count up from the bottom PE ([`AttentionSpec::row_pe`]): position
//! `p` lives on row `p mod h` in slot `p / h`, so every PE holds about
//! `pos/h` valid positions whatever the context length, and appending a
//! position touches one PE without moving the cache. Column `c`'s input
//! stream `[pos, k_c, v_c, its query heads]` enters its bottom PE from the
//! south and is multicast up the column. Then each PE:
//! 1. appends `k`, `v` if it owns `pos`;
//! 2. scores its valid slots for every query head: `q·k / √d`;
//! 3. takes part in a column allreduce of the per-head maxima, exponentiates
//!    `score − max` and sums the weights `w` per head;
//! 4. forms `Σ w·v` over its slots, not yet divided by the head's sum;
//!
//! and a column reduce gathers the heads' weighted values (`group·d`) and
//! sums (`group`) up the column in its top PE, which streams each head's
//! values out of its north port divided by its sum. The sums ride the
//! output reduce instead of an allreduce of their own: the division waits
//! for the whole column either way, and done once at the top it saves a
//! reduce and a broadcast back along the column (flash-decoding's
//! deferred normalization). Positions after `pos` are never read
//! (causal).
//!
//! The column runs upward (it was first built downward, its input at the
//! top and its output at the bottom; this is that program mirrored, cycle
//! for cycle the same) so that the output leaves at the top, where a
//! compiled model's next projection takes its input along its top edge:
//! on the 8B the trip to `wo` was a column's height plus its width.
//!
//! With `per_query_head`, each query head has a column of its own, with
//! its own copy of its KV head's cache (the same `k` and `v` are appended
//! to every copy): `group` times the cache's SRAM, but each column's input
//! is `1 + 3d` values and its output reduce `d`, not `group·d`. The
//! columns run the grouped code with `group = 1` ([`AttentionSpec::as_columns`]).
//!
//! gpt-oss's attention adds two things. With `sinks`, each column's row 0
//! holds a learned logit per query head: it joins that PE's maxima before
//! the max allreduce, and its `exp(sink − max)` joins that PE's sums
//! before the output reduce, so it is in every softmax's denominator and
//! in no numerator. With a `window`, each PE skips the slots before the
//! window's first position (`pos + 1 − window`): the scores, maxima, sums
//! and weighted values cover the window alone.

use crate::line_reduce::{Axis, Combine, LineReduce, Lines, Target};
use crate::reduce::Strategy;
use crate::{Fragment, KernelError, Segment, TensorPort};
use std::fmt::Write;
use wafer_emulator::{Arch, DataInit, Pe};

mod code;
mod cost;
mod reference;

use code::{Collectives, code};
pub use cost::{cost, fed};
pub use reference::reference;

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
    /// denominator, out of its numerator. Held by each column's row 0 (its bottom PE).
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
    /// Columns this many PEs apart (1: side by side). The columns trade
    /// nothing east or west, so spread apart they compute the same in the
    /// same cycles ([`Fragment::spread_columns`]): a compiler spreads them
    /// over the projection their outputs feed, each column's output a
    /// short trip to its own part of that projection's edge, not all of
    /// them along the links beside a narrow block.
    #[serde(default = "one")]
    pub pitch: u32,
}

fn one() -> u32 {
    1
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
    /// PEs across the kernel's rectangle: its columns, [`AttentionSpec::pitch`]
    /// apart (saturating, for the size checks).
    pub fn width(&self) -> u32 {
        let span = (self.columns().max(1) as u64 - 1) * self.pitch.max(1) as u64 + 1;
        span.min(u32::MAX as u64) as u32
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
    /// The PE of column `c`'s row `r`: rows count up from the bottom PE
    /// (row 0, where the input enters) to the top (row `h − 1`, where
    /// the output leaves).
    pub fn row_pe(&self, c: u32, r: u32) -> Pe {
        Pe::new(c * self.pitch, self.h - 1 - r)
    }
    /// Where column `c`'s sinks are: its row 0.
    pub fn sinks_at(&self, c: u32) -> Pe {
        self.row_pe(c, 0)
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
    /// The columns as lines up toward the top PE: both collectives end
    /// there (on the same colors, so the same way); a line's positions
    /// are the rows.
    fn lines(&self) -> Lines {
        Lines::new(Axis::Col, self.kv_heads, self.h).reversed()
    }
    fn colors(&self) -> Vec<u8> {
        (C_RED..C_RED + 40).collect()
    }
    /// Where the output's colors start among [`AttentionSpec::colors`].
    fn output_colors_at(&self) -> usize {
        LineReduce::colors_after_allreduce(self.h, self.group, self.strategy)
    }
    /// Colors the kernel's program takes: its highest color plus one.
    /// Placement reads it to know what a model's other kernels take
    /// (tested equal to the generated program's).
    pub fn colors_taken(&self) -> usize {
        let s = self.as_columns();
        // One PE a column needs no collective.
        C_RED as usize + if s.h > 1 { s.colors_needed() } else { 0 }
    }
    /// Colors the collectives take, from `C_RED`.
    fn colors_needed(&self) -> usize {
        LineReduce::colors_needed_then_reduce(
            self.h,
            self.group,
            self.group * (self.head_dim + 1),
            self.strategy,
        )
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
    /// The reduce of each PE's `o`: the heads' weighted values, then
    /// their sums, up the column into the top PE.
    fn output(&self) -> LineReduce {
        LineReduce::new(
            self.lines(),
            self.strategy,
            Combine::Add,
            Target::End,
            "o",
            self.group * (self.head_dim + 1),
            &self.colors()[self.output_colors_at()..],
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
    if s.pitch == 0 {
        return Err(KernelError::Shape(
            "attention's columns are at least 1 PE apart (pitch 1: side by side)".into(),
        ));
    }
    if s.width() > arch.grid_cols {
        return Err(KernelError::Rect {
            w: s.width(),
            h: s.h,
            why: format!(
                "one column per {} head{}, and machine `{}` has {} columns",
                if s.per_query_head { "query" } else { "KV" },
                match s.pitch {
                    1 => String::new(),
                    p => format!(", {p} PEs apart"),
                },
                arch.name,
                arch.grid_cols
            ),
        });
    }
    // Generated side by side, then spread: the columns' code is the same
    // whatever their pitch.
    if !s.per_query_head {
        return columns(s, arch, &|c| default_input(s, c))?.spread_columns(s.pitch);
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
    f.spread_columns(s.pitch)
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
    let need = s.colors_taken();
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
            ".code p{r}\n  .buffer inb f32[{}]\n  .buffer kc f32[{}]\n  .buffer vc f32[{}]\n  .buffer sc f32[{}]\n  .buffer o f32[{}]\n  .buffer mx f32[{g}]\n{sinks}  .task main local active\nmain:\n{}  end\n.end\n.place p{r} 0,{} {w}x1",
            s.in_len(),
            slots * d,
            slots * d,
            g * slots,
            g * d + g,
            code(s, &all, r),
            s.row_pe(0, r).y
        )
        .unwrap();
    }
    if s.h > 1 {
        writeln!(src, ".route 0,1 {w}x{} c{CIN} S -> R,N", s.h - 1).unwrap();
    }
    writeln!(src, ".route 0,0 {w}x1 c{CIN} S -> R").unwrap();
    src.push_str(&all.max.routes());
    src.push_str(&all.output.routes());
    writeln!(src, ".route 0,0 {w}x1 c{CO} R -> N").unwrap();
    writeln!(src, ".data kc 0,0 {w}x{} = rand({})", s.h, s.seed).unwrap();
    if s.sinks {
        writeln!(
            src,
            ".data snk 0,{} {w}x1 = rand({})",
            s.sinks_at(0).y,
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
            ".input in{c} f32[{}] -> {c},{} S c{CIN} = [{}]",
            s.in_len(),
            s.row_pe(c, 0).y,
            vals.join(", ")
        )
        .unwrap();
        writeln!(src, ".output out{c} f32[{}] <- {c},0 N c{CO}", g * d).unwrap();
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
/// `j`-th) into the columns' rows 0 in place of the seeded ones.
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
        .map(|c| (s.sinks_at(c), v[c as usize * g..][..g].to_vec()))
        .collect();
    f.load("snk", per_pe);
    Ok(())
}
