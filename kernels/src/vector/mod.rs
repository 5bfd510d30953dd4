//! Kernels over a vector distributed down a column of `h` PEs: element-wise
//! ops (add, mul, SiLU, GELU, SwiGLU), RMSNorm, LayerNorm, softmax, and
//! the residual add fused with the RMSNorm after it.
//!
//! The vector (length `n`) is cut into `h` segments; segment `r` enters PE
//! `(0, r)` from the west (inputs `a`, and `b` for two-input ops, on their
//! own colors) and the result leaves it to the east. SiLU, GELU and
//! SwiGLU may take `w` columns: each row's segment is cut over its `w`
//! PEs, whose streams all enter the row's west PE and whose results all
//! leave its east one. Norms and softmax
//! reduce their per-PE statistics with an allreduce along the column
//! ([`LineReduce`]). Every PE computes in f32, and the reference performs
//! the same f32 operations in the same order, so results are bit-exact.

use crate::line_reduce::{Axis, Combine, LineReduce, Lines, Target};
use crate::reduce::Strategy;
use crate::{Fragment, KernelError, Segment, TensorPort, split};
use std::collections::BTreeMap;
use std::fmt::Write;
use wafer_emulator::{Arch, Pe, Program};

mod batch;
mod cost;

pub use batch::{cost_batch, generate_batch, reference_batch};
pub use cost::{cost, fed};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum VectorOp {
    Add,
    Mul,
    Silu,
    Gelu,
    /// `silu(a) · b`.
    Swiglu,
    RmsNorm,
    LayerNorm,
    Softmax,
    /// `s = a + b`, then RMSNorm of `s`: the output is the normed vector
    /// followed by `s` itself (the residual stream goes on to the next
    /// residual add). A decoder layer's residual add and the norm after
    /// it, as one kernel: the sum never leaves its PE to be normed.
    AddRmsNorm,
}

impl VectorOp {
    pub const ALL: [(VectorOp, &'static str); 9] = [
        (VectorOp::Add, "add"),
        (VectorOp::Mul, "mul"),
        (VectorOp::Silu, "silu"),
        (VectorOp::Gelu, "gelu"),
        (VectorOp::Swiglu, "swiglu"),
        (VectorOp::RmsNorm, "rmsnorm"),
        (VectorOp::LayerNorm, "layernorm"),
        (VectorOp::Softmax, "softmax"),
        (VectorOp::AddRmsNorm, "add_rmsnorm"),
    ];

    pub fn name(self) -> &'static str {
        VectorOp::ALL
            .iter()
            .find(|(o, _)| *o == self)
            .expect("listed")
            .1
    }

    pub fn two_inputs(self) -> bool {
        matches!(
            self,
            VectorOp::Add | VectorOp::Mul | VectorOp::Swiglu | VectorOp::AddRmsNorm
        )
    }

    /// Whether it takes all of `a` into memory before the first of `b`:
    /// the residual adds, whose `a` is the residual stream. Taken in
    /// pairs instead, `a`'s element `k` waits on its route until `b`'s
    /// has come; `a`'s producer also feeds the layer `b` comes out of
    /// (the residual stream's multicast), so where that route holds
    /// fewer of `a`'s wavelets than wait on it, the producer cannot send
    /// what the layer needs to make `b`: the program deadlocks (an
    /// overlapped step's holds then grow every pass; pipeline placement
    /// with each RoPE beside its `wq_wk_wv` did, the embedding held by
    /// `layers.0.residual_ffn_norm` a hop away).
    pub fn takes_a_first(self) -> bool {
        matches!(self, VectorOp::Add | VectorOp::AddRmsNorm)
    }

    /// Elements out for `n` in: the fused add-norm also sends its sum.
    pub fn outputs(self, n: u32) -> u32 {
        if self == VectorOp::AddRmsNorm {
            2 * n
        } else {
            n
        }
    }

    /// Whether the op scales by weights `g` (a norm).
    fn weighted(self) -> bool {
        matches!(
            self,
            VectorOp::RmsNorm | VectorOp::LayerNorm | VectorOp::AddRmsNorm
        )
    }

    /// Whether the op may run on several columns: an element-wise op
    /// whose arithmetic (special functions) outlasts its streams, so a
    /// row's inputs are in before its first result leaves (the cost model
    /// counts on it). Add and mul stream through in one op, as fast on
    /// one column.
    pub fn spreads_over_columns(self) -> bool {
        matches!(self, VectorOp::Silu | VectorOp::Gelu | VectorOp::Swiglu)
    }

    fn reduces(self) -> bool {
        matches!(
            self,
            VectorOp::RmsNorm | VectorOp::LayerNorm | VectorOp::Softmax | VectorOp::AddRmsNorm
        )
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VectorSpec {
    pub op: VectorOp,
    /// Vector length.
    pub n: u32,
    /// PEs in the column.
    pub h: u32,
    /// Columns (SiLU, GELU and SwiGLU, [`VectorOp::spreads_over_columns`];
    /// every other op takes one): each row's segment is cut over the row's `w` PEs, every
    /// PE's streams entering the row's west PE on colors of its own
    /// ([`VectorSpec::colors_of`]) and its output leaving the row's east
    /// PE.
    #[serde(default = "one")]
    pub w: u32,
    /// How the norms' and softmax's statistics are all-reduced.
    pub strategy: Strategy,
    /// The norms' epsilon.
    pub eps: f32,
    /// Seed of the default inputs and the norms' weights.
    pub seed: u64,
}

fn one() -> u32 {
    1
}

const CA: u8 = 0;
const CB: u8 = 1;
const CO: u8 = 2;
/// The fused add-norm's sum leaves on `b`'s color: its router entry comes
/// from the ramp, `b`'s from the west, so the two never meet.
const CS: u8 = CB;
const C_STATS: u8 = 3;

/// GELU's tanh approximation: `2·√(2/π)` and the cubic coefficient.
const GELU_2C: f32 = 1.595_769_2;
const GELU_K: f32 = 0.044715;

impl VectorSpec {
    /// Each PE's segment, row by row and along each row (PE `(c, r)`'s is
    /// `r · w + c`): a row holds a run of the vector.
    fn segments(&self) -> Vec<(u32, u32)> {
        split(self.n, self.h * self.w)
    }

    /// Column `c`'s colors, of `w` columns: its inputs `a` and `b`, and
    /// its output. The inputs take `2c` and `2c + 1`; column 0's output
    /// `2w` (one column: 0, 1, 2, as ever), and column `c`'s the `a` of
    /// column `c − 1`, whose route ends west of where this one starts, so a
    /// wide kernel takes no more colors (2w + 1) than the others on the
    /// wafer do and leaves the hand-offs theirs.
    pub fn colors_of(c: u32, w: u32) -> (u8, u8, u8) {
        let (a, b) = (CA + 2 * c as u8, CB + 2 * c as u8);
        let out = match c {
            0 => 2 * w as u8,
            _ => CA + 2 * (c as u8 - 1),
        };
        (a, b, out)
    }

    /// Colors the kernel's program takes: its highest color plus one.
    /// Placement reads it to know what a model's other kernels take
    /// before spreading one over more columns (tested equal to the
    /// generated program's).
    pub fn colors_taken(&self) -> usize {
        let streams = 2 * self.w as usize + 1;
        // One PE's statistics need no collective.
        if self.op.reduces() && self.h > 1 {
            streams.max(
                C_STATS as usize + LineReduce::colors_needed(self.h, 1, self.strategy, Target::All),
            )
        } else {
            streams
        }
    }

    /// The column allreduce of a one-element statistic buffer.
    fn stats(&self, buf: &str, combine: Combine) -> LineReduce {
        self.stats_of(buf, combine, 1)
    }

    /// The column allreduce of an `n`-element statistic buffer (one
    /// statistic a position of a batch), in the plan of one statistic:
    /// a batch's positions are summed as the one-position kernel sums.
    fn stats_of(&self, buf: &str, combine: Combine, n: u32) -> LineReduce {
        let colors: Vec<u8> = (C_STATS..C_STATS + 20).collect();
        LineReduce::new(
            Lines::new(Axis::Col, 1, self.h),
            self.strategy,
            combine,
            Target::All,
            buf,
            1,
            &colors,
        )
        .with_elements(n)
    }

    fn inv_n(&self) -> f32 {
        1.0 / self.n as f32
    }
}

fn f(v: f32) -> String {
    format!("{v:?}")
}

/// The instructions of PE `r` (its row in a column kernel; its segment's
/// index in a wider one), whose segment has `len` elements, in column `c`.
fn body(s: &VectorSpec, r: u32, c: u32, len: u32) -> String {
    let (ca, cb, co) = VectorSpec::colors_of(c, s.w);
    let mut t = String::new();
    let w = |t: &mut String, line: &str| writeln!(t, "  {line}").unwrap();
    match s.op {
        // The residual stream `a` (the skip) comes into memory first, as
        // it arrives, then `b` is added as it arrives ([`VectorOp::takes_a_first`]).
        VectorOp::Add => {
            w(&mut t, &format!("vmov.f32 x, rx(c{ca})"));
            w(&mut t, &format!("vfadd.f32 tx(c{co}, {len}), x, rx(c{cb})"));
        }
        VectorOp::Mul => w(
            &mut t,
            &format!("vfmul.f32 tx(c{co}, {len}), rx(c{ca}), rx(c{cb})"),
        ),
        VectorOp::Silu | VectorOp::Swiglu => {
            if s.op == VectorOp::Swiglu {
                // b arrives on a microthread while a arrives on the main
                // thread; the final product waits for microthread 0.
                w(&mut t, &format!("vmov.f32 b, rx(c{cb}) async 0"));
            }
            w(&mut t, &format!("vmov.f32 x, rx(c{ca})"));
            for line in [
                "vfmul.f32 t, x, -1.0",
                "vexp.f32 t, t",
                "vfadd.f32 t, t, 1.0",
                "vrcp.f32 t, t",
            ] {
                w(&mut t, line);
            }
            if s.op == VectorOp::Swiglu {
                w(&mut t, "vfmul.f32 t, x, t");
                w(&mut t, &format!("vfmul.f32 tx(c{co}), t, b async 0"));
            } else {
                w(&mut t, &format!("vfmul.f32 tx(c{co}), x, t"));
            }
        }
        VectorOp::Gelu => {
            w(&mut t, &format!("vmov.f32 x, rx(c{ca})"));
            for line in [
                "vfmul.f32 t, x, x".to_string(),
                "vfmul.f32 t, t, x".to_string(),
                format!("vfmac.f32 t, x, t, {}", f(GELU_K)),
                format!("vfmul.f32 t, t, {}", f(GELU_2C)),
                "vexp.f32 t, t".to_string(),
                "vfadd.f32 t, t, 1.0".to_string(),
                "vrcp.f32 t, t".to_string(),
                "vfmac.f32 t, 1.0, t, -2.0".to_string(),
                "vfadd.f32 t, t, 1.0".to_string(),
                "vfmul.f32 t, t, x".to_string(),
                format!("vfmul.f32 tx(c{co}), t, 0.5"),
            ] {
                w(&mut t, &line);
            }
        }
        VectorOp::RmsNorm | VectorOp::AddRmsNorm => {
            if s.op == VectorOp::AddRmsNorm {
                w(&mut t, &format!("vmov.f32 x, rx(c{ca})"));
                w(&mut t, &format!("vfadd.f32 x, x, rx(c{cb})"));
                w(&mut t, &format!("vmov.f32 tx(c{CS}), x"));
            } else {
                w(&mut t, &format!("vmov.f32 x, rx(c{ca})"));
            }
            w(&mut t, "lf f1, 0.0");
            w(&mut t, "vdot.f32 f1, x, x");
            w(&mut t, "stf st[0], f1");
            t.push_str(&s.stats("st", Combine::Add).code(r));
            scale_by_rsqrt(&mut t, s);
            w(&mut t, &format!("vfmul.f32 tx(c{co}), x, g"));
        }
        VectorOp::LayerNorm => {
            w(&mut t, &format!("vmov.f32 x, rx(c{ca})"));
            w(&mut t, "lf f1, 0.0");
            w(&mut t, "vsum.f32 f1, x");
            w(&mut t, "stf st[0], f1");
            t.push_str(&s.stats("st", Combine::Add).code(r));
            w(&mut t, "ldf f2, st[0]");
            w(&mut t, &format!("lf f3, {}", f(s.inv_n())));
            w(&mut t, "fmul f2, f2, f3");
            w(&mut t, "vfsub.f32 x, x, f2");
            w(&mut t, "lf f1, 0.0");
            w(&mut t, "vdot.f32 f1, x, x");
            w(&mut t, "stf st[0], f1");
            t.push_str(&s.stats("st", Combine::Add).code(r));
            scale_by_rsqrt(&mut t, s);
            w(&mut t, "vfmul.f32 x, x, g");
            w(&mut t, &format!("vfadd.f32 tx(c{co}), x, bias"));
        }
        VectorOp::Softmax => {
            w(&mut t, &format!("vmov.f32 x, rx(c{ca})"));
            w(&mut t, "lf f1, -inf");
            w(&mut t, "vrmax.f32 f1, x");
            w(&mut t, "stf st[0], f1");
            t.push_str(&s.stats("st", Combine::Max).code(r));
            w(&mut t, "ldf f2, st[0]");
            w(&mut t, "vfsub.f32 x, x, f2");
            w(&mut t, "vexp.f32 x, x");
            w(&mut t, "lf f1, 0.0");
            w(&mut t, "vsum.f32 f1, x");
            w(&mut t, "stf st[0], f1");
            t.push_str(&s.stats("st", Combine::Add).code(r));
            w(&mut t, "ldf f2, st[0]");
            w(&mut t, "frcp f2, f2");
            w(&mut t, &format!("vfmul.f32 tx(c{co}), x, f2"));
        }
    }
    t
}

/// `x ← x · 1/√(st/n + eps)` (the statistic all-reduced in `st`).
fn scale_by_rsqrt(t: &mut String, s: &VectorSpec) {
    for line in [
        "ldf f2, st[0]".to_string(),
        format!("lf f3, {}", f(s.inv_n())),
        "fmul f2, f2, f3".into(),
        format!("lf f4, {}", f(s.eps)),
        "fadd f2, f2, f4".into(),
        "frsqrt f2, f2".into(),
        "vfmul.f32 x, x, f2".into(),
    ] {
        writeln!(t, "  {line}").unwrap();
    }
}

pub fn generate(s: &VectorSpec, arch: &Arch) -> Result<Fragment, KernelError> {
    s.strategy.require_plan(s.op.name())?;
    if s.n == 0 || s.h == 0 || s.h > s.n {
        return Err(KernelError::Rect {
            w: 1,
            h: s.h,
            why: format!(
                "a vector of {} elements spreads over 1..{} PEs",
                s.n,
                s.n.max(1)
            ),
        });
    }
    if s.h > arch.grid_rows {
        return Err(KernelError::Rect {
            w: s.w,
            h: s.h,
            why: format!("machine `{}` has {} rows", arch.name, arch.grid_rows),
        });
    }
    let wide = s.op.spreads_over_columns();
    // Checked: a spec read from a file may hold any width.
    let too_wide = s.w.checked_mul(s.h).is_none_or(|pes| pes > s.n);
    if s.w == 0 || (s.w > 1 && !wide) || too_wide || s.w > arch.grid_cols {
        return Err(KernelError::Rect {
            w: s.w,
            h: s.h,
            why: if wide {
                format!(
                    "{} of {} elements on {} rows runs on 1..={} columns",
                    s.op.name(),
                    s.n,
                    s.h,
                    (s.n / s.h).min(arch.grid_cols)
                )
            } else {
                format!("{} runs on one column", s.op.name())
            },
        });
    }
    // The streams' colors and, where the op reduces, its statistics'
    // collective: counted where placement counts them.
    let colors = s.colors_taken();
    if colors > arch.colors as usize {
        return Err(KernelError::Colors {
            need: colors,
            have: arch.colors as usize,
        });
    }
    let seg = s.segments();
    let bytes = seg[0].1 as u64 * 4 * 5 + 600;
    if bytes > arch.sram_bytes as u64 {
        return Err(KernelError::Rect {
            w: 1,
            h: s.h,
            why: format!(
                "a segment of {} elements needs about {bytes} bytes of SRAM; use more PEs",
                seg[0].1
            ),
        });
    }
    let mut src = format!(
        "; {} of a {}-element vector down {} column(s) of {} PEs\n.grid {}x{}\n",
        s.op.name(),
        s.n,
        s.w,
        s.h,
        s.w,
        s.h
    );
    for (k, (_, len)) in seg.iter().enumerate() {
        let (c, r) = (k as u32 % s.w, k as u32 / s.w);
        let mut bufs = String::new();
        for b in ["x", "t", "b", "g", "bias"] {
            let used = match b {
                "x" => s.op != VectorOp::Mul,
                "t" => !matches!(s.op, VectorOp::Add | VectorOp::Mul),
                "b" => s.op == VectorOp::Swiglu,
                "g" => s.op.weighted(),
                _ => s.op == VectorOp::LayerNorm,
            };
            if used {
                writeln!(bufs, "  .buffer {b} f32[{len}]").unwrap();
            }
        }
        if s.op.reduces() {
            bufs.push_str("  .buffer st f32[1]\n");
        }
        writeln!(src, ".code p{k}\n{bufs}  .task main local active\nmain:\n{}  end\n.end\n.place p{k} {c},{r} 1x1", body(s, k as u32, c, *len)).unwrap();
    }
    // Column `c`'s streams pass east through the columns west of it to
    // its ramp; its output passes east through those east of it.
    for c in 0..s.w {
        let (ca, cb, co) = VectorSpec::colors_of(c, s.w);
        let ins: &[u8] = if s.op.two_inputs() { &[ca, cb] } else { &[ca] };
        for &i in ins {
            if c > 0 {
                writeln!(src, ".route 0,0 {c}x{} c{i} W -> E", s.h).unwrap();
            }
            writeln!(src, ".route {c},0 1x{} c{i} W -> R", s.h).unwrap();
        }
        writeln!(src, ".route {c},0 1x{} c{co} R -> E", s.h).unwrap();
        if c + 1 < s.w {
            writeln!(
                src,
                ".route {},0 {}x{} c{co} W -> E",
                c + 1,
                s.w - 1 - c,
                s.h
            )
            .unwrap();
        }
    }
    if s.op == VectorOp::AddRmsNorm {
        writeln!(src, ".route 0,0 1x{} c{CS} R -> E", s.h).unwrap();
    }
    if s.op.reduces() {
        src.push_str(&s.stats("st", Combine::Add).routes());
    }
    if s.op.weighted() {
        writeln!(
            src,
            ".data g 0,0 1x{} = rand({})",
            s.h,
            s.seed.wrapping_add(7)
        )
        .unwrap();
        if s.op == VectorOp::LayerNorm {
            writeln!(
                src,
                ".data bias 0,0 1x{} = rand({})",
                s.h,
                s.seed.wrapping_add(8)
            )
            .unwrap();
        }
    }
    for (k, (_, len)) in seg.iter().enumerate() {
        let (c, r) = (k as u32 % s.w, k as u32 / s.w);
        let (ca, cb, co) = VectorSpec::colors_of(c, s.w);
        // Softmax and the norms see larger inputs, as logits and activations do.
        writeln!(
            src,
            ".input {} f32[{len}] -> 0,{r} W c{ca} = rand({})",
            input_name(0, k),
            s.seed
        )
        .unwrap();
        if s.op.two_inputs() {
            writeln!(
                src,
                ".input {} f32[{len}] -> 0,{r} W c{cb} = rand({})",
                input_name(1, k),
                s.seed.wrapping_add(1)
            )
            .unwrap();
        }
        writeln!(src, ".output y{k} f32[{len}] <- {},{r} E c{co}", s.w - 1).unwrap();
        if s.op == VectorOp::AddRmsNorm {
            writeln!(src, ".output s{k} f32[{len}] <- 0,{r} E c{CS}").unwrap();
        }
    }
    let program = crate::assemble(&src, s.op.name())?;
    let port = |name: &str| TensorPort {
        name: name.into(),
        len: s.n,
        segments: seg
            .iter()
            .enumerate()
            .map(|(r, (off, len))| Segment {
                stream: format!("{name}{r}"),
                offset: *off,
                len: *len,
                at: 0,
            })
            .collect(),
    };
    let mut inputs = vec![port("a")];
    if s.op.two_inputs() {
        inputs.push(port("b"));
    }
    let mut y = port("y");
    if s.op == VectorOp::AddRmsNorm {
        // The normed vector, then the sum.
        y.len = s.op.outputs(s.n);
        y.segments
            .extend(seg.iter().enumerate().map(|(r, (off, len))| Segment {
                stream: format!("s{r}"),
                offset: s.n + off,
                len: *len,
                at: 0,
            }));
    }
    Ok(Fragment {
        program: program.into(),
        inputs,
        outputs: vec![y],
        state: Vec::new(),
    })
}

/// Put a norm's weights (`g` or `bias`, `n` values) into the column's PEs
/// in place of the seeded ones.
pub fn load_weights(
    s: &VectorSpec,
    f: &mut Fragment,
    buf: &str,
    v: &[f32],
) -> Result<(), KernelError> {
    if !s.op.weighted() || v.len() != s.n as usize {
        return Err(KernelError::Shape(format!(
            "{} of length {} has no weights `{buf}` of length {}",
            s.op.name(),
            s.n,
            v.len()
        )));
    }
    let per_pe = s
        .segments()
        .into_iter()
        .enumerate()
        .map(|(r, (off, len))| {
            (
                Pe::new(0, r as u32),
                v[off as usize..(off + len) as usize].to_vec(),
            )
        })
        .collect();
    f.load(buf, per_pe);
    Ok(())
}

/// Per-PE weights (`g`, `bias`) as the generated program holds them.
pub fn weights(s: &VectorSpec, p: &Program, buf: &str) -> Vec<f32> {
    (0..s.h)
        .flat_map(|r| p.initial_values(Pe::new(0, r), buf).unwrap_or_default())
        .collect()
}

/// The reference: the same f32 operations in the same order as the PEs.
pub fn reference(s: &VectorSpec, inputs: &BTreeMap<String, Vec<f32>>, p: &Program) -> Vec<f32> {
    let a = &inputs["a"];
    let segs = s.segments();
    let seg =
        |v: &[f32], r: usize| v[segs[r].0 as usize..(segs[r].0 + segs[r].1) as usize].to_vec();
    let map = |v: &[f32], f: &dyn Fn(f32) -> f32| v.iter().map(|x| f(*x)).collect::<Vec<f32>>();
    // -x is bit-identical to the PE's x · -1.0.
    let sigmoid_times = |x: f32| x * (1.0 / ((-x).exp() + 1.0));
    let allreduce = |parts: Vec<f32>, c: Combine| {
        s.stats("st", c)
            .reference(&parts.into_iter().map(|v| vec![v]).collect::<Vec<_>>())[0]
    };
    let (g, bias) = (weights(s, p, "g"), weights(s, p, "bias"));
    let inv_rsqrt = |total: f32| 1.0 / (total * s.inv_n() + s.eps).sqrt();
    match s.op {
        VectorOp::Add => a.iter().zip(&inputs["b"]).map(|(x, y)| x + y).collect(),
        VectorOp::Mul => a.iter().zip(&inputs["b"]).map(|(x, y)| x * y).collect(),
        VectorOp::Silu => map(a, &sigmoid_times),
        VectorOp::Swiglu => a
            .iter()
            .zip(&inputs["b"])
            .map(|(x, y)| sigmoid_times(*x) * y)
            .collect(),
        VectorOp::Gelu => map(a, &|x| {
            let mut t = x * x;
            t *= x;
            t = x + t * GELU_K;
            t *= GELU_2C;
            t = t.exp();
            t += 1.0;
            t = 1.0 / t;
            t = 1.0 + t * -2.0;
            t += 1.0;
            t *= x;
            t * 0.5
        }),
        VectorOp::RmsNorm | VectorOp::AddRmsNorm => {
            let sum: Vec<f32> = match s.op {
                VectorOp::AddRmsNorm => a.iter().zip(&inputs["b"]).map(|(x, y)| x + y).collect(),
                _ => a.clone(),
            };
            let parts: Vec<f32> = (0..s.h as usize)
                .map(|r| seg(&sum, r).iter().fold(0.0f32, |acc, x| acc + x * x))
                .collect();
            let inv = inv_rsqrt(allreduce(parts, Combine::Add));
            let mut y: Vec<f32> = sum.iter().zip(&g).map(|(x, g)| (x * inv) * g).collect();
            if s.op == VectorOp::AddRmsNorm {
                y.extend(sum);
            }
            y
        }
        VectorOp::LayerNorm => {
            let sums: Vec<f32> = (0..s.h as usize)
                .map(|r| seg(a, r).iter().fold(0.0f32, |acc, x| acc + x))
                .collect();
            let mean = allreduce(sums, Combine::Add) * s.inv_n();
            let centred: Vec<f32> = a.iter().map(|x| x - mean).collect();
            let parts: Vec<f32> = (0..s.h as usize)
                .map(|r| seg(&centred, r).iter().fold(0.0f32, |acc, x| acc + x * x))
                .collect();
            let inv = inv_rsqrt(allreduce(parts, Combine::Add));
            centred
                .iter()
                .zip(g.iter().zip(&bias))
                .map(|(x, (g, b))| (x * inv) * g + b)
                .collect()
        }
        VectorOp::Softmax => {
            let maxes: Vec<f32> = (0..s.h as usize)
                .map(|r| seg(a, r).iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x)))
                .collect();
            let m = allreduce(maxes, Combine::Max);
            let e: Vec<f32> = a.iter().map(|x| (x - m).exp()).collect();
            let sums: Vec<f32> = (0..s.h as usize)
                .map(|r| seg(&e, r).iter().fold(0.0f32, |acc, x| acc + x))
                .collect();
            let inv = 1.0 / allreduce(sums, Combine::Add);
            e.iter().map(|x| x * inv).collect()
        }
    }
}

/// Segment `k`'s host input stream `which` (0: `a`, 1: `b`), as the
/// generators name it and the cost models look up its pushes by.
pub(crate) fn input_name(which: usize, k: usize) -> String {
    format!("{}{k}", ["a", "b"][which])
}
