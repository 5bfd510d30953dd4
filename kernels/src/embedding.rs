//! Embedding lookup: a token id in, its row of the table out.
//!
//! The `vocab × dim` table is tiled over `w × h` PEs: PE `(c, r)` holds the
//! rows of vocabulary block `c`, dimensions of block `r` (in f32, f16 or
//! bf16). The id (as an f32, exact below 2^24) enters every column from the
//! north and is multicast down it. The PE whose vocabulary block holds the
//! id copies its part of the row, every other PE contributes zeros, and each
//! row of PEs reduces east ([`LineReduce`]), so row `r` of PEs emits the
//! embedding's block `r`. An id outside the vocabulary gives zeros.

use crate::line_reduce::{Axis, Combine, LineReduce, Lines, Target};
use crate::reduce::Strategy;
use crate::timeline::{Timeline, f32_rate};
use crate::{Fragment, KernelError, Segment, TensorPort, split};
use std::collections::BTreeMap;
use std::fmt::Write;
use wafer_emulator::isa::VecOp;
use wafer_emulator::{Arch, DType, Pe, Program};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EmbeddingSpec {
    pub vocab: u32,
    pub dim: u32,
    pub dtype: DType,
    pub w: u32,
    pub h: u32,
    pub strategy: Strategy,
    /// The default token id.
    pub token: u32,
    pub seed: u64,
}

const CID: u8 = 0;
const CO: u8 = 1;
const C_RED: u8 = 2;

impl EmbeddingSpec {
    fn reduce(&self, n: u32) -> LineReduce {
        let colors: Vec<u8> = (C_RED..C_RED + 20).collect();
        LineReduce::new(
            Lines::new(Axis::Row, self.w, self.h),
            self.strategy,
            Combine::Add,
            Target::Stream(CO),
            "y",
            n,
            &colors,
        )
    }
}

/// Whether the spec fits the machine (shape, rectangle, SRAM, colors).
pub fn validate(s: &EmbeddingSpec, arch: &Arch) -> Result<(), KernelError> {
    s.strategy.require_plan("embedding")?;
    if s.vocab == 0 || s.dim == 0 || !s.dtype.is_float() {
        return Err(KernelError::Shape(
            "an embedding needs a non-empty table of f32, f16 or bf16".into(),
        ));
    }
    if s.w == 0
        || s.h == 0
        || s.w > s.vocab
        || s.h > s.dim
        || s.w > arch.grid_cols
        || s.h > arch.grid_rows
    {
        return Err(KernelError::Rect {
            w: s.w,
            h: s.h,
            why: format!(
                "use 1..{} columns and 1..{} rows",
                s.vocab.min(arch.grid_cols),
                s.dim.min(arch.grid_rows)
            ),
        });
    }
    let (vocab, dims) = (split(s.vocab, s.w), split(s.dim, s.h));
    let bytes = vocab[0].1 as u64 * dims[0].1 as u64 * s.dtype.size_bytes() as u64
        + dims[0].1 as u64 * 4
        + 600;
    if bytes > arch.sram_bytes as u64 {
        return Err(KernelError::Rect {
            w: s.w,
            h: s.h,
            why: format!(
                "a tile of {}x{} {} needs about {bytes} bytes of SRAM, a PE has {}; use more PEs or a 16-bit table",
                vocab[0].1, dims[0].1, s.dtype, arch.sram_bytes
            ),
        });
    }
    let red = s.reduce(dims[0].1);
    let need = C_RED as usize + red.plan.levels as usize;
    if need > arch.colors as usize {
        return Err(KernelError::Colors {
            need,
            have: arch.colors as usize,
        });
    }
    Ok(())
}

pub fn generate(s: &EmbeddingSpec, arch: &Arch) -> Result<Fragment, KernelError> {
    validate(s, arch)?;
    let (vocab, dims) = (split(s.vocab, s.w), split(s.dim, s.h));
    let red = s.reduce(dims[0].1);
    let mut src = format!(
        "; embedding lookup, {} × {} {} on {}x{} PEs\n.grid {}x{}\n",
        s.vocab, s.dim, s.dtype, s.w, s.h, s.w, s.h
    );
    for (c, (lo, rows)) in vocab.iter().enumerate() {
        for (r, (_, n)) in dims.iter().enumerate() {
            writeln!(
                src,
                ".code p{c}_{r}
  .buffer idb f32[1]
  .buffer tab {dt}[{tl}]
  .buffer y f32[{n}]
  .task main local active
main:
  vmov.f32 idb, rx(c{CID})
  ldf f1, idb[0]
  ftoi r1, f1
  sub r1, r1, {lo}
  blt r1, 0, absent
  bge r1, {rows}, absent
  mul r1, r1, {n}
  vmov.f32 y, tab[r1, {n}]
  jmp have
absent:
  vmov.f32 y, 0.0
have:
{red}  end
.end
.place p{c}_{r} {c},{r} 1x1",
                dt = s.dtype,
                tl = rows * n,
                red = s.reduce(*n).code(c as u32),
            )
            .unwrap();
        }
    }
    if s.h > 1 {
        writeln!(src, ".route 0,0 {}x{} c{CID} N -> R,S", s.w, s.h - 1).unwrap();
    }
    writeln!(src, ".route 0,{} {}x1 c{CID} N -> R", s.h - 1, s.w).unwrap();
    src.push_str(&red.routes());
    writeln!(src, ".data tab 0,0 {}x{} = rand({})", s.w, s.h, s.seed).unwrap();
    for c in 0..s.w {
        writeln!(
            src,
            ".input id{c} f32[1] -> {c},0 N c{CID} = [{:?}]",
            s.token as f32
        )
        .unwrap();
    }
    for (r, (_, n)) in dims.iter().enumerate() {
        writeln!(src, ".output y{r} f32[{n}] <- {},{r} E c{CO}", s.w - 1).unwrap();
    }
    let program = crate::assemble(&src, "embedding")?;
    let id = TensorPort {
        name: "id".into(),
        len: 1,
        segments: (0..s.w)
            .map(|c| Segment {
                stream: format!("id{c}"),
                offset: 0,
                len: 1,
                at: 0,
            })
            .collect(),
    };
    let y = TensorPort {
        name: "y".into(),
        len: s.dim,
        segments: dims
            .iter()
            .enumerate()
            .map(|(r, (off, n))| Segment {
                stream: format!("y{r}"),
                offset: *off,
                len: *n,
                at: 0,
            })
            .collect(),
    };
    Ok(Fragment {
        program: program.into(),
        inputs: vec![id],
        outputs: vec![y],
        state: Vec::new(),
    })
}

/// Put a `vocab × dim` table into the tiles in place of the seeded one.
pub fn load_table(s: &EmbeddingSpec, f: &mut Fragment, t: &[f32]) -> Result<(), KernelError> {
    let takes = s.vocab as u64 * s.dim as u64;
    let what = || format!("an embedding table of {}x{}", s.vocab, s.dim);
    KernelError::check_length(what, takes, t.len())?;
    let (vocab, dims) = (split(s.vocab, s.w), split(s.dim, s.h));
    let mut per_pe = Vec::new();
    for (c, (lo, rows)) in vocab.iter().enumerate() {
        for (r, (off, n)) in dims.iter().enumerate() {
            let tile = (0..*rows)
                .flat_map(|i| (0..*n).map(move |j| t[((lo + i) * s.dim + off + j) as usize]))
                .collect();
            per_pe.push((Pe::new(c as u32, r as u32), tile));
        }
    }
    f.load("tab", per_pe);
    Ok(())
}

/// The table as the program holds it (`vocab × dim`, rounded to its dtype).
pub fn table(s: &EmbeddingSpec, p: &Program) -> Vec<f32> {
    let (vocab, dims) = (split(s.vocab, s.w), split(s.dim, s.h));
    let mut t = vec![0.0; (s.vocab * s.dim) as usize];
    for (c, (lo, rows)) in vocab.iter().enumerate() {
        for (r, (off, n)) in dims.iter().enumerate() {
            let tile = p
                .initial_values(Pe::new(c as u32, r as u32), "tab")
                .expect("tab exists");
            for i in 0..*rows {
                for j in 0..*n {
                    t[((lo + i) * s.dim + off + j) as usize] = tile[(i * n + j) as usize];
                }
            }
        }
    }
    t
}

/// The reference: the row, summed with the other PEs' zeros in the plan's
/// order (as the PEs do: `-0.0 + 0.0` is `+0.0`).
pub fn reference(s: &EmbeddingSpec, inputs: &BTreeMap<String, Vec<f32>>, p: &Program) -> Vec<f32> {
    let id = inputs["id"][0] as i64;
    let table = table(s, p);
    let (vocab, dims) = (split(s.vocab, s.w), split(s.dim, s.h));
    dims.iter()
        .flat_map(|(off, n)| {
            let parts: Vec<Vec<f32>> = vocab
                .iter()
                .map(|(lo, rows)| {
                    if id >= *lo as i64 && id < (lo + rows) as i64 {
                        (0..*n)
                            .map(|j| table[(id as u32 * s.dim + off + j) as usize])
                            .collect()
                    } else {
                        vec![0.0; *n as usize]
                    }
                })
                .collect();
            s.reduce(*n).reference(&parts)
        })
        .collect()
}

/// Predicted cycles: the id reaches row `r` at `(r+1)·hop + ramp`; the
/// owner runs 6 scalar instructions, copies its part of the row and jumps;
/// the others run 4 (id below their block) or 5 (above) and write zeros;
/// then each row's reduction ([`LineReduce::finish`]) and the output's
/// `ramp + hop` to the host.
pub fn cost(s: &EmbeddingSpec, arch: &Arch, token: u32) -> u64 {
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let (vocab, dims) = (split(s.vocab, s.w), split(s.dim, s.h));
    let copy = arch.vector_rate(VecOp::Mov, DType::F32, false, s.dtype.bits(), 32);
    let zero = f32_rate(arch, VecOp::Mov, 0, 1);
    let mut worst = 0;
    for (r, (_, n)) in dims.iter().enumerate() {
        let issue: Vec<u64> = vocab
            .iter()
            .map(|(lo, rows)| {
                let mut l = Timeline::start(arch);
                l.receive(1, hop * (r as u64 + 1) + ramp);
                if token < *lo {
                    l.scalar(4);
                    l.vector(*n, zero);
                } else if token >= lo + rows {
                    l.scalar(5);
                    l.vector(*n, zero);
                } else {
                    l.scalar(6);
                    l.vector(*n, copy);
                    l.scalar(1);
                }
                l.t
            })
            .collect();
        let first = s.reduce(*n).finish(&issue, arch)[s.w as usize - 1];
        worst = worst.max(first + *n as u64 - 1 + ramp + hop);
    }
    worst
}
