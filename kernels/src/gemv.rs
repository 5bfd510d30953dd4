//! GEMV `y = W·x`, W (`m × n`) tiled in 2-D over a `w × h` rectangle.
//!
//! PE `(c, r)` holds the tile of W's row block `r` and column block `c`
//! row-major in `w` (weights in f32, f16 or bf16). x enters as `w` segments,
//! one per column through the north edge, multicast down the column (f32 on
//! the fabric) and stored in the weights' dtype, so with 16-bit weights each
//! tile row's dot product is a mixed-precision one (16-bit products, f32
//! sum) at twice the f32 rate. Then each row of PEs reduces its partials to the
//! east end with a [`Plan`](crate::reduce::Plan) (chain or K-tree), and the
//! east edge emits y's row block `r` as output stream `y<r>`.
//! Blocks need not divide evenly: the first `m % h` row blocks and
//! `n % w` column blocks are one longer.
//!
//! With int8 weights ([`crate::quant`]) a tile holds its codes (one byte
//! each) and its rows' bf16 scales; each tile row is dequantized into a
//! bf16 row buffer (`vfmul.bf16 t, w, s`) just before its dot product, so
//! the rest is the bf16 GEMV and SRAM holds the packed tile.

use crate::line_reduce::{Axis, Combine, LineReduce, Lines, Target};
use crate::reduce::{Action, Plan, Strategy};
use crate::{Fragment, KernelError, Segment, TensorPort, split};
use std::collections::BTreeMap;
use std::fmt::Write;
use wafer_emulator::isa::VecOp;
use wafer_emulator::{Arch, DType, Pe, Program};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GemvSpec {
    /// Rows of W (outputs).
    pub m: u32,
    /// Columns of W (inputs).
    pub n: u32,
    pub dtype: DType,
    /// Rectangle: `w` PE columns across n, `h` PE rows across m.
    pub w: u32,
    pub h: u32,
    pub strategy: Strategy,
    /// Seed of the random weights and default x.
    pub seed: u64,
}

impl GemvSpec {
    /// The dtype the dot products read W and x in: the weights' own, or
    /// bf16 for int8 codes (dequantized to bf16 row by row).
    pub fn compute_dtype(&self) -> DType {
        match self.dtype {
            DType::I8 => DType::BF16,
            d => d,
        }
    }

    fn quantized(&self) -> bool {
        self.dtype == DType::I8
    }
}

/// Colors: x's broadcast, y's output, then one per reduction level.
const CX: u8 = 0;
const CY: u8 = 1;
const C_LEVEL0: u8 = 2;

/// Bytes of SRAM the largest tile's PE needs (`w` and `h` at least 1).
pub fn sram_needed(s: &GemvSpec) -> u64 {
    let (mt, nt) = (s.m.div_ceil(s.h) as u64, s.n.div_ceil(s.w) as u64);
    let code = 400; // measured from generated listings, rounded up
    let x = nt * s.compute_dtype().size_bytes() as u64;
    // int8: the row being dequantized (bf16) and the rows' bf16 scales.
    let quant = if s.quantized() {
        nt * 2 + mt * 2 + 8
    } else {
        0
    };
    code + mt * nt * s.dtype.size_bytes() as u64 + x + mt * 4 + quant + 12
}

fn validate(s: &GemvSpec, arch: &Arch) -> Result<(), KernelError> {
    s.strategy.require_plan("gemv")?;
    if s.m == 0 || s.n == 0 {
        return Err(KernelError::Shape(format!(
            "GEMV shape {}x{} is empty",
            s.m, s.n
        )));
    }
    if !s.dtype.is_float() && !s.quantized() {
        return Err(KernelError::Shape(
            "GEMV weights must be f32, f16, bf16 or int8".into(),
        ));
    }
    let why = if s.w == 0 || s.h == 0 {
        Some("it is empty".to_string())
    } else if s.w > s.n || s.h > s.m {
        Some(format!(
            "a {}x{} matrix gives at most {} columns and {} rows of PEs one element each",
            s.m, s.n, s.n, s.m
        ))
    } else if s.w > arch.grid_cols || s.h > arch.grid_rows {
        Some(format!(
            "machine `{}` has {}x{} PEs",
            arch.name, arch.grid_cols, arch.grid_rows
        ))
    } else if sram_needed(s) > arch.sram_bytes as u64 {
        Some(format!(
            "a tile needs about {} bytes of SRAM, a PE has {}; use more PEs{}",
            sram_needed(s),
            arch.sram_bytes,
            if s.dtype.size_bytes() > 2 {
                " or a 16-bit dtype"
            } else {
                ""
            }
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(KernelError::Rect {
            w: s.w,
            h: s.h,
            why,
        }),
        None => Ok(()),
    }
}

pub fn generate(s: &GemvSpec, arch: &Arch) -> Result<Fragment, KernelError> {
    validate(s, arch)?;
    let red = row_reduce(s, s.m.div_ceil(s.h));
    let levels = &red.plan;
    let n_colors = C_LEVEL0 as usize + levels.levels as usize;
    if n_colors > arch.colors as usize {
        return Err(KernelError::Colors {
            need: n_colors,
            have: arch.colors as usize,
        });
    }
    let cols = split(s.n, s.w);
    let rows = split(s.m, s.h);
    let mut src = format!(
        "; GEMV {}x{} {} on {}x{} PEs, {} reduction\n.grid {}x{}\n",
        s.m, s.n, s.dtype, s.w, s.h, s.strategy, s.w, s.h
    );
    let mut codes: BTreeMap<String, String> = BTreeMap::new();
    let mut places = String::new();
    for (c, (_, nt)) in cols.iter().enumerate() {
        // Row blocks come in at most two sizes, each a run of rows.
        let mut r0 = 0;
        while r0 < s.h {
            let mt = rows[r0 as usize].1;
            let r1 = (r0..s.h).find(|r| rows[*r as usize].1 != mt).unwrap_or(s.h);
            let name = code_name(*nt, mt, levels.steps(c), c as u32 == s.w - 1);
            codes
                .entry(name.clone())
                .or_insert_with(|| code_text(&name, s, *nt, mt, &red.code(c as u32)));
            writeln!(places, ".place {name} {c},{r0} 1x{}", r1 - r0).unwrap();
            r0 = r1;
        }
    }
    for text in codes.values() {
        src.push_str(text);
    }
    src.push_str(&places);
    // x: down each column; the last row keeps it.
    if s.h > 1 {
        writeln!(src, ".route 0,0 {}x{} c{CX} N -> R,S", s.w, s.h - 1).unwrap();
    }
    writeln!(src, ".route 0,{} {}x1 c{CX} N -> R", s.h - 1, s.w).unwrap();
    src.push_str(&red.routes());
    if s.quantized() {
        writeln!(src, ".data w 0,0 {}x{} = randi({}, 127)", s.w, s.h, s.seed).unwrap();
        let scales = crate::quant::seeded_scales(s.m, s.seed);
        for (r, (mo, mt)) in rows.iter().enumerate() {
            let v: Vec<String> = scales[*mo as usize..(mo + mt) as usize]
                .iter()
                .map(|v| format!("{v:?}"))
                .collect();
            writeln!(src, ".data s 0,{r} {}x1 = [{}]", s.w, v.join(", ")).unwrap();
        }
    } else {
        writeln!(src, ".data w 0,0 {}x{} = rand({})", s.w, s.h, s.seed).unwrap();
    }
    for (c, (_, nt)) in cols.iter().enumerate() {
        writeln!(
            src,
            ".input x{c} f32[{nt}] -> {c},0 N c{CX} = rand({})",
            s.seed.wrapping_add(1)
        )
        .unwrap();
    }
    for (r, (_, mt)) in rows.iter().enumerate() {
        writeln!(src, ".output y{r} f32[{mt}] <- {},{r} E c{CY}", s.w - 1).unwrap();
    }
    let program = crate::assemble(&src, "GEMV")?;
    let port = |name: &str, prefix: &str, parts: &[(u32, u32)], len: u32| TensorPort {
        name: name.into(),
        len,
        segments: parts
            .iter()
            .enumerate()
            .map(|(i, (off, l))| Segment {
                stream: format!("{prefix}{i}"),
                offset: *off,
                len: *l,
                at: 0,
            })
            .collect(),
    };
    Ok(Fragment {
        program,
        inputs: vec![port("x", "x", &cols, s.n)],
        outputs: vec![port("y", "y", &rows, s.m)],
        state: Vec::new(),
    })
}

fn code_name(nt: u32, mt: u32, steps: &[(u32, Action)], root: bool) -> String {
    let mut name = format!("gemv_{mt}x{nt}");
    for (l, a) in steps {
        match a {
            Action::Send { .. } => write!(name, "_s{l}").unwrap(),
            Action::Forward { .. } => write!(name, "_f{l}").unwrap(),
            Action::Gather => write!(name, "_g{l}").unwrap(),
        }
    }
    if root {
        name.push_str("_out");
    }
    name
}

fn code_text(name: &str, s: &GemvSpec, nt: u32, mt: u32, reduction: &str) -> String {
    if s.quantized() {
        return format!(
            ".code {name}\n  .buffer w i8[{wl}]\n  .buffer s bf16[{mt}]\n  .buffer t bf16[{nt}]\n  .buffer x bf16[{nt}]\n  .buffer y f32[{mt}]\n  .task main local active\nmain:\n  vmov.f32 x, rx(c{CX})\n  li r1, 0\n  li r2, 0\nrow:\n  ldf f2, s[r1]\n  vfmul.bf16 t, w[r2, {nt}], f2\n  lf f1, 0\n  vdot.f32 f1, t, x\n  stf y[r1], f1\n  add r1, r1, 1\n  add r2, r2, {nt}\n  blt r1, {mt}, row\n{reduction}  end\n.end\n",
            wl = mt * nt,
        );
    }
    format!(
        ".code {name}\n  .buffer w {dt}[{wl}]\n  .buffer x {dt}[{nt}]\n  .buffer y f32[{mt}]\n  .task main local active\nmain:\n  vmov.f32 x, rx(c{CX})\n  li r1, 0\n  li r2, 0\nrow:\n  lf f1, 0\n  vdot.f32 f1, w[r2, {nt}], x\n  stf y[r1], f1\n  add r1, r1, 1\n  add r2, r2, {nt}\n  blt r1, {mt}, row\n{reduction}  end\n.end\n",
        dt = s.dtype,
        wl = mt * nt,
    )
}

/// The row reduction of the partial y's (length `m`), streamed out east.
fn row_reduce(s: &GemvSpec, m: u32) -> LineReduce {
    let colors: Vec<u8> = (C_LEVEL0..C_LEVEL0 + 8).collect();
    let lines = Lines::new(Axis::Row, s.w, s.h);
    LineReduce::new(
        lines,
        s.strategy,
        Combine::Add,
        Target::Stream(CY),
        "y",
        m,
        &colors,
    )
}

/// W as the generated program holds it (row-major `m × n`, rounded to the
/// weights' dtype).
pub fn weights(s: &GemvSpec, p: &Program) -> Vec<f32> {
    weights_at(s, p, false)
}

/// [`weights`] of a [`Fragment::transposed`] GEMV: tile `(c, r)` sits at PE `(r, c)`.
pub fn weights_transposed(s: &GemvSpec, p: &Program) -> Vec<f32> {
    weights_at(s, p, true)
}

/// Each PE's tile: where it sits, and W's elements it holds in order.
fn tiles(s: &GemvSpec, transposed: bool) -> impl Iterator<Item = (Pe, Vec<usize>)> {
    let (cols, rows) = (split(s.n, s.w), split(s.m, s.h));
    let n = s.n;
    cols.into_iter().enumerate().flat_map(move |(c, (no, nt))| {
        rows.clone()
            .into_iter()
            .enumerate()
            .map(move |(r, (mo, mt))| {
                let at = if transposed {
                    Pe::new(r as u32, c as u32)
                } else {
                    Pe::new(c as u32, r as u32)
                };
                let idx = (0..mt)
                    .flat_map(|i| (0..nt).map(move |j| ((mo + i) * n + no + j) as usize))
                    .collect();
                (at, idx)
            })
    })
}

/// W as the PEs compute with it: int8 codes are dequantized with their
/// rows' scales ([`crate::quant::dequantize_int8`]).
fn weights_at(s: &GemvSpec, p: &Program, transposed: bool) -> Vec<f32> {
    let mut w = vec![0.0; (s.m * s.n) as usize];
    let mut scales = vec![1.0; s.m as usize];
    for (at, idx) in tiles(s, transposed) {
        let tile = p.initial_values(at, "w").expect("every PE holds a tile");
        if s.quantized() {
            // Tile row k starts at idx[k · nt]; its scale is W row idx / n.
            let held = p
                .initial_values(at, "s")
                .expect("every PE holds its rows' scales");
            let nt = idx.len() / held.len();
            for (k, v) in held.into_iter().enumerate() {
                scales[idx[k * nt] / s.n as usize] = v;
            }
        }
        for (k, i) in idx.into_iter().enumerate() {
            w[i] = tile[k];
        }
    }
    if s.quantized() {
        w = crate::quant::dequantize_int8(&w, &scales, s.n);
    }
    w
}

/// Put W (row-major `m × n`) into a generated GEMV's tiles in place of its
/// seeded weights; the PEs round them to the spec's dtype (int8: each row
/// quantized with [`crate::quant::quantize_int8`], codes and scales loaded).
pub fn load_weights(s: &GemvSpec, f: &mut Fragment, w: &[f32]) -> Result<(), KernelError> {
    if w.len() != (s.m * s.n) as usize {
        return Err(KernelError::Shape(format!(
            "GEMV {}x{} takes {} weights, got {}",
            s.m,
            s.n,
            s.m * s.n,
            w.len()
        )));
    }
    let (held, scales) = if s.quantized() {
        crate::quant::quantize_int8(w, s.m, s.n)
    } else {
        (w.to_vec(), Vec::new())
    };
    let mut per_pe_scales = Vec::new();
    let per_pe = tiles(s, false)
        .map(|(at, idx)| {
            if s.quantized() {
                let nt = split(s.n, s.w)[at.x as usize].1 as usize;
                let rows = idx.iter().step_by(nt).map(|i| scales[i / s.n as usize]);
                per_pe_scales.push((at, rows.collect()));
            }
            (at, idx.into_iter().map(|i| held[i]).collect())
        })
        .collect();
    f.load("w", per_pe);
    if s.quantized() {
        f.load("s", per_pe_scales);
    }
    Ok(())
}

/// The reference: the same tiling and summation order in plain Rust. x is
/// rounded to the weights' dtype, each tile row's dot product sums `w·x` in
/// column order in f32, then each row of tiles is reduced in the plan's
/// order. Bit-exact with the emulator.
pub fn reference(s: &GemvSpec, w: &[f32], x: &[f32]) -> Vec<f32> {
    let (cols, rows) = (split(s.n, s.w), split(s.m, s.h));
    let x: Vec<f32> = x.iter().map(|v| s.compute_dtype().round(*v)).collect();
    let plan = Plan::new(s.w, s.strategy);
    let mut y = Vec::with_capacity(s.m as usize);
    for (mo, mt) in rows {
        let partials: Vec<Vec<f32>> = cols
            .iter()
            .map(|(no, nt)| {
                (mo..mo + mt)
                    .map(|i| {
                        (*no..no + nt).fold(0.0f32, |acc, j| {
                            acc + w[(i * s.n + j) as usize] * x[j as usize]
                        })
                    })
                    .collect()
            })
            .collect();
        y.extend(plan.reduce(&partials));
    }
    y
}

/// Predicted cycles. Derivation, following the engine's semantics with
/// `S` task switch, `I` issue delay, `h` hop and `r` ramp latency:
/// * the main task's first op starts at `S + 1 + I`; x's element `k` reaches
///   row `y`'s core at `k + h·(y+1) + r`, so x is stored by
///   `max(S + 1 + I, h·(y+1) + r) + n_c − 1`;
/// * two `li`, then per tile row: `lf`, the dot's issue, `I`, the dot's
///   `D = ⌈n_c·den/num⌉` cycles at the mixed-precision rate, `stf` (same
///   cycle as the dot's end), `add`, `add`, `blt`: `D + I + 5` per row;
///   int8 adds the scale's `ldf` and the dequantizing multiply before the
///   dot, its issue, `I` and `F = ⌈n_c·den/num⌉` at the bf16 multiply's
///   rate (one byte read, two written per element): `F + I + 1` more;
/// * the row's reduction ([`LineReduce::finish`]), and the last element
///   `m_r − 1` later up the east ramp and over the host link.
pub fn cost(s: &GemvSpec, arch: &Arch) -> u64 {
    let (cols, rows) = (split(s.n, s.w), split(s.m, s.h));
    let (sw, i, hop, ramp) = (
        arch.task_switch_cycles as u64,
        arch.vector_issue_cycles as u64,
        arch.hop_latency as u64,
        arch.ramp_latency as u64,
    );
    let narrow = s.compute_dtype().size_bytes() == 2;
    let reads = if narrow { 4 } else { 8 };
    let rate = arch.vector_rate(VecOp::Dot, DType::F32, narrow, reads, 0);
    let dequant = arch.vector_rate(VecOp::Fmul, DType::BF16, false, 1, 2);
    let row_cycles = |nt: u32| {
        let dot = Arch::vector_cycles(nt, rate) + i + 5;
        match s.quantized() {
            true => dot + Arch::vector_cycles(nt, dequant) + i + 1,
            false => dot,
        }
    };
    let mut worst = 0;
    for (y, (_, mt)) in rows.iter().enumerate() {
        let issue: Vec<u64> = cols
            .iter()
            .map(|(_, nt)| {
                let x_done = (sw + 1 + i).max(hop * (y as u64 + 1) + ramp) + *nt as u64 - 1;
                x_done + 2 + *mt as u64 * row_cycles(*nt)
            })
            .collect();
        let first = row_reduce(s, *mt).finish(&issue, arch)[s.w as usize - 1];
        worst = worst.max(first + *mt as u64 - 1 + ramp + hop);
    }
    worst
}

/// The rectangle the cost model predicts fastest, among those that fit.
pub fn best_rect(
    m: u32,
    n: u32,
    dtype: DType,
    strategy: Strategy,
    arch: &Arch,
) -> Option<(u32, u32, u64)> {
    let sizes = |max: u32| -> Vec<u32> {
        let mut v: Vec<u32> = (0..31)
            .map(|k| 1u32 << k)
            .take_while(|x| *x <= max)
            .collect();
        v.push(max);
        v.dedup();
        v
    };
    let mut best: Option<(u32, u32, u64)> = None;
    for w in sizes(n.min(arch.grid_cols)) {
        for h in sizes(m.min(arch.grid_rows)) {
            let spec = GemvSpec {
                m,
                n,
                dtype,
                w,
                h,
                strategy,
                seed: 0,
            };
            if validate(&spec, arch).is_err()
                || C_LEVEL0 as u32 + Plan::shape(w, strategy).0 > arch.colors
            {
                continue;
            }
            let c = cost(&spec, arch);
            if best.is_none_or(|b| c < b.2 || (c == b.2 && w * h < b.0 * b.1)) {
                best = Some((w, h, c));
            }
        }
    }
    best
}
