//! WaferLLM's MeshGEMV (He et al., OSDI 2025, §6; the CSL in
//! MeshInfra/WaferLLM `MeshGEMV/WSE-2/src/meshgemv.csl` and
//! `comm_lib/comm_pe.csl`), rebuilt in our ISA after its structure: `y =
//! x·W` for a `1 × m` vector `x` and an `m × n` matrix `W` tiled over a
//! `w × h` rectangle, `x` split down the rows (each PE row holds its
//! slice of about `m / h`, the same in every column) and `W` in tiles of
//! about `(m/h) × (n/w)` (the first `m % h` rows and `n % w` columns of
//! PEs take one more; WaferLLM's divide exactly).
//!
//! Every PE zeroes its `res` (`n/w` elements), then for each of its `x`
//! elements adds that element times the matching row of its tile —
//! WaferLLM's `@map` of `@fmach` over `X`: an AXPY loop in 16-bit
//! arithmetic, the sum kept in the weights' dtype. The column then reduces
//! `res` with WaferLLM's two-phase ("2-tree") allreduce: the rows form
//! `groups` groups of `h / groups`; in each group two chains run towards
//! the group's middle row (from its first row down, from its last row up)
//! and the middle row adds both; the group middles then do the same
//! towards the middle group's middle row, which broadcasts the sum up and
//! down the column. Every PE ends with its column's `n/w` outputs.
//!
//! As in WaferLLM's benchmark, `x` and `W` are in SRAM when the run starts
//! (the host wrote them) and the result stays there; the run's cycles are
//! one GEMV, compute and allreduce. For a compiled model the spec can
//! instead stream `x` in (row `r`'s slice from the west edge, passed east
//! along the row) and `y` out (column `c`'s outputs from the bottom row's
//! south edge, the broadcast passing on): the same ports as a transposed
//! [`gemv`](crate::gemv), and the sum can be kept in f32 (a mixed-precision
//! FMAC) instead of the weights' dtype. Where ours differs from the CSL: a PE's
//! loop is our `ldf`/`vfmac`/`add`/`add`/`blt` per element of `x` where the
//! CSL has `@map` (whose per-element cost on the hardware is not
//! published); the routes are fixed (the CSL switches none either).

mod cost;

pub use cost::{cost, cost_batch};

use crate::{Fragment, KernelError};
use std::collections::BTreeMap;
use std::fmt::Write;
use wafer_emulator::{Arch, DType, Pe, Program};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeshGemvSpec {
    /// Length of `x` (rows of `W`), split over the `h` PE rows.
    pub m: u32,
    /// Outputs (columns of `W`), split over the `w` PE columns.
    pub n: u32,
    pub w: u32,
    pub h: u32,
    /// Groups of rows in the allreduce's first phase (WaferLLM's
    /// `group_num`); `h / groups` rows each.
    pub groups: u32,
    /// The weights' (and `x`'s) dtype: f16 (WaferLLM's) or bf16.
    pub dtype: DType,
    /// The sum's dtype: the weights' own (WaferLLM's `@fmach`, a 16-bit
    /// accumulator) or f32 (a mixed-precision FMAC, as our GEMV sums).
    pub acc: DType,
    /// `x` and `y` as edge streams (`x` row by row from the west edge, `y`
    /// column by column out of the south edge after the broadcast), for
    /// use in a compiled model; otherwise `x` is in SRAM at the start and
    /// `y` stays there, as in WaferLLM's benchmark.
    pub streamed: bool,
    pub seed: u64,
}

/// Colors: phase-one chains down and up (by the sending row's parity),
/// phase-two chains down and up (by the sending group's parity), the
/// broadcast up and down.
const CD1: [u8; 2] = [0, 1];
const CU1: [u8; 2] = [2, 3];
const CD2: [u8; 2] = [4, 5];
const CU2: [u8; 2] = [6, 7];
const CBU: u8 = 8;
const CBD: u8 = 9;
/// `x` along each row, when streamed.
const CX: u8 = 10;
const COLORS: usize = 11;

impl MeshGemvSpec {
    /// Each PE row's slice of `x`: `(offset, len)`.
    pub fn rows(&self) -> Vec<(u32, u32)> {
        crate::split(self.m, self.h)
    }
    /// Each PE column's outputs: `(offset, len)`.
    pub fn cols(&self) -> Vec<(u32, u32)> {
        crate::split(self.n, self.w)
    }
    fn mt(&self) -> u32 {
        self.m.div_ceil(self.h)
    }
    fn nt(&self) -> u32 {
        self.n.div_ceil(self.w)
    }
    /// Rows per group, and the group's middle row (WaferLLM's
    /// `pe_num_group` and `root_1st_phase`).
    fn group(&self) -> (u32, u32) {
        let g = self.h / self.groups;
        (g, g / 2)
    }
    /// The row holding the sum (WaferLLM's `root_2nd_phase`).
    pub fn root(&self) -> u32 {
        let (g, r1) = self.group();
        (self.groups / 2) * g + r1
    }
    /// SRAM the largest tile's PE needs: its tile, its `x` slice, `res`,
    /// and the code.
    pub fn sram_bytes(&self) -> u64 {
        self.sram_bytes_batch(1)
    }
    /// [`MeshGemvSpec::sram_bytes`] for `batch` positions
    /// ([`generate_batch`]): `batch` `x` slices and `res` vectors.
    pub fn sram_bytes_batch(&self, batch: u32) -> u64 {
        let (b, k) = (self.dtype.size_bytes() as u64, batch as u64);
        let (mt, nt) = (self.mt() as u64, self.nt() as u64);
        (mt * nt + k * mt) * b + k * nt * self.acc.size_bytes() as u64 + 400
    }
    /// The `x` slice row `r` holds: seeded, the same in every column.
    pub fn x(&self) -> Vec<f32> {
        let mut s = self.seed ^ 0x9e37_79b9_7f4a_7c15;
        (0..self.m)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                self.dtype.round(((s >> 40) as f32 / 16777216.0) - 0.5)
            })
            .collect()
    }
}

pub fn validate(s: &MeshGemvSpec, arch: &Arch) -> Result<(), KernelError> {
    validate_batch(s, 1, arch)
}

fn validate_batch(s: &MeshGemvSpec, batch: u32, arch: &Arch) -> Result<(), KernelError> {
    if batch == 0 || (batch > 1 && !s.streamed) {
        return Err(KernelError::Shape(
            "a batched MeshGEMV takes at least one position, streamed in".into(),
        ));
    }
    if !matches!(s.dtype, DType::F16 | DType::BF16) {
        return Err(KernelError::Shape(
            "MeshGEMV's weights are 16-bit floats: f16 (WaferLLM's) or bf16".into(),
        ));
    }
    if s.acc != s.dtype && s.acc != DType::F32 {
        return Err(KernelError::Shape(format!(
            "MeshGEMV sums in the weights' {} or in f32, not {}",
            s.dtype, s.acc
        )));
    }
    if s.w == 0 || s.h == 0 || s.w > arch.grid_cols || s.h > arch.grid_rows {
        return Err(KernelError::Rect {
            w: s.w,
            h: s.h,
            why: format!(
                "machine `{}` has {}x{} PEs",
                arch.name, arch.grid_cols, arch.grid_rows
            ),
        });
    }
    if s.h > s.m || s.w > s.n {
        return Err(KernelError::Rect {
            w: s.w,
            h: s.h,
            why: format!(
                "a 1x{} @ {}x{} GEMV gives at most {} rows and {} columns of PEs one element each",
                s.m, s.m, s.n, s.m, s.n
            ),
        });
    }
    if s.groups < 2 || !s.h.is_multiple_of(s.groups) || s.h / s.groups < 2 {
        return Err(KernelError::Shape(format!(
            "--groups {}: the allreduce needs at least 2 groups of at least 2 rows each, dividing the {} rows",
            s.groups, s.h
        )));
    }
    if s.sram_bytes_batch(batch) > arch.sram_bytes as u64 {
        return Err(KernelError::Rect {
            w: s.w,
            h: s.h,
            why: format!(
                "a {}x{} tile needs about {} bytes of SRAM, a PE has {}; use more PEs",
                s.mt(),
                s.nt(),
                s.sram_bytes_batch(batch),
                arch.sram_bytes
            ),
        });
    }
    if COLORS > arch.colors as usize {
        return Err(KernelError::Colors {
            need: COLORS,
            have: arch.colors as usize,
        });
    }
    Ok(())
}

/// Row `y`'s part in the allreduce, in the order of its code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// `vmov tx(c), res`.
    Send(u8),
    /// `vfadd tx(out), rx(in), res`.
    Forward { input: u8, out: u8 },
    /// `vfadd res, res, rx(c)`.
    Add(u8),
    /// A middle row's two chains: `vfadd res, res, rx(first)` then
    /// `vfadd res, res, rx(second)`, their streams arriving together.
    Join { first: u8, second: u8 },
    /// `vmov res, rx(c)`.
    Receive(u8),
}

/// Row `y`'s steps, and whether it is a group's middle row.
fn steps(s: &MeshGemvSpec, y: u32) -> Vec<Step> {
    let (gsize, r1) = s.group();
    let (g, q) = (y % gsize, y / gsize);
    let par = |v: u32| (v % 2) as usize;
    let mut out = Vec::new();
    // Phase one, within the group.
    let meet = |up: Option<u8>, down: u8| match up {
        Some(first) => Step::Join {
            first,
            second: down,
        },
        None => Step::Add(down),
    };
    if g == r1 {
        out.push(meet(
            (g != gsize - 1).then(|| CU1[par(y + 1)]),
            CD1[par(y - 1)],
        ));
    } else if g == 0 {
        out.push(Step::Send(CD1[par(y)]));
    } else if g == gsize - 1 {
        out.push(Step::Send(CU1[par(y)]));
    } else if g < r1 {
        out.push(Step::Forward {
            input: CD1[par(y - 1)],
            out: CD1[par(y)],
        });
    } else {
        out.push(Step::Forward {
            input: CU1[par(y + 1)],
            out: CU1[par(y)],
        });
    }
    // Phase two, between the groups' middle rows.
    let qroot = s.groups / 2;
    if g == r1 {
        if q == qroot {
            out.push(meet(
                (q != s.groups - 1).then(|| CU2[par(q + 1)]),
                CD2[par(q - 1)],
            ));
        } else if q == 0 {
            out.push(Step::Send(CD2[par(q)]));
        } else if q == s.groups - 1 {
            out.push(Step::Send(CU2[par(q)]));
        } else if q < qroot {
            out.push(Step::Forward {
                input: CD2[par(q - 1)],
                out: CD2[par(q)],
            });
        } else {
            out.push(Step::Forward {
                input: CU2[par(q + 1)],
                out: CU2[par(q)],
            });
        }
    }
    // The broadcast of the sum.
    let root = s.root();
    if y == root {
        out.push(Step::Send(CBU));
        if y != s.h - 1 || s.streamed {
            out.push(Step::Send(CBD));
        }
    } else if y < root {
        out.push(Step::Receive(CBU));
    } else {
        out.push(Step::Receive(CBD));
    }
    out
}

/// Row `y`'s routes (the same in every column): `(color, from, to)`.
fn routes(s: &MeshGemvSpec, y: u32) -> Vec<(u8, &'static str, &'static str)> {
    let (gsize, r1) = s.group();
    let g = y % gsize;
    let par = |v: u32| (v % 2) as usize;
    let mut out = Vec::new();
    // Phase one: each chain link ends at the next row's core.
    if g < r1 {
        out.push((CD1[par(y)], "R", "S"));
    }
    if g > 0 && g <= r1 {
        out.push((CD1[par(y - 1)], "N", "R"));
    }
    if g > r1 {
        out.push((CU1[par(y)], "R", "N"));
    }
    if g >= r1 && g < gsize - 1 {
        out.push((CU1[par(y + 1)], "S", "R"));
    }
    // Phase two: links between middle rows pass through the rows between.
    let qroot = s.groups / 2;
    let middle = |q: u32| q * gsize + r1;
    for q in 0..s.groups {
        if q < qroot {
            // Down link from middle q to middle q + 1.
            let (a, b) = (middle(q), middle(q + 1));
            let c = CD2[par(q)];
            if y == a {
                out.push((c, "R", "S"));
            } else if y > a && y < b {
                out.push((c, "N", "S"));
            } else if y == b {
                out.push((c, "N", "R"));
            }
        } else if q > qroot {
            // Up link from middle q to middle q − 1.
            let (a, b) = (middle(q), middle(q - 1));
            let c = CU2[par(q)];
            if y == a {
                out.push((c, "R", "N"));
            } else if y < a && y > b {
                out.push((c, "S", "N"));
            } else if y == b {
                out.push((c, "S", "R"));
            }
        }
    }
    // The broadcast.
    let root = s.root();
    // Streamed, the bottom row also passes it out of the south edge.
    if y == root {
        out.push((CBU, "R", "N"));
        if y != s.h - 1 || s.streamed {
            out.push((CBD, "R", "S"));
        }
    } else if y < root {
        out.push((CBU, "S", if y == 0 { "R" } else { "R,N" }));
    } else {
        let last = y == s.h - 1 && !s.streamed;
        out.push((CBD, "N", if last { "R" } else { "R,S" }));
    }
    out
}

/// The code PE `(c, y)` runs: its steps and its tile's shape.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct CodeKey {
    steps: Vec<Step>,
    mt: u32,
    nt: u32,
}

pub fn generate(s: &MeshGemvSpec, arch: &Arch) -> Result<Fragment, KernelError> {
    generate_batch(s, 1, arch)
}

/// Bytes of code a batched MeshGEMV's PE may hold beyond the one-position
/// program's: its position loop (a few instructions; tested).
pub const BATCH_CODE_BYTES: u64 = 64;

/// Bytes a PE of the batched MeshGEMV holds beyond the one-position
/// one's, at most: the longer `x` and `res`, and the loop.
pub fn batch_growth(s: &MeshGemvSpec, batch: u32) -> u64 {
    s.sram_bytes_batch(batch) - s.sram_bytes() + BATCH_CODE_BYTES * u64::from(batch > 1)
}

/// The MeshGEMV of `batch` positions at once (a prefill's projection,
/// streamed): each row takes every position's `x` slice, one after
/// another, and each PE runs its AXPY loop once per position into that
/// position's part of `res` (`batch · n/w`), which the column then
/// reduces and broadcasts whole. Ports `x` and `y` hold the positions one
/// after another. One position is [`generate`]'s program exactly.
pub fn generate_batch(s: &MeshGemvSpec, batch: u32, arch: &Arch) -> Result<Fragment, KernelError> {
    validate_batch(s, batch, arch)?;
    let (dt, acc) = (s.dtype, s.acc);
    let (rows, cols) = (s.rows(), s.cols());
    let mut src = format!(
        "; MeshGEMV 1x{m} @ {m}x{n} {dt} (sum in {acc}) on {w}x{h} PEs, {g} groups{streamed}\n.grid {w}x{h}\n",
        m = s.m,
        n = s.n,
        w = s.w,
        h = s.h,
        g = s.groups,
        streamed = match (s.streamed, batch) {
            (false, _) => String::new(),
            (true, 1) => ", x and y streamed".to_string(),
            (true, b) => format!(", x and y streamed, {b} positions"),
        },
    );
    // One code per distinct (steps, tile shape); each row's columns come in
    // at most two tile widths, each a run of columns.
    let mut codes: BTreeMap<CodeKey, String> = BTreeMap::new();
    let mut places = String::new();
    for y in 0..s.h {
        let st = steps(s, y);
        let mt = rows[y as usize].1;
        let mut c0 = 0;
        while c0 < s.w {
            let nt = cols[c0 as usize].1;
            let c1 = (c0..s.w).find(|c| cols[*c as usize].1 != nt).unwrap_or(s.w);
            let key = CodeKey {
                steps: st.clone(),
                mt,
                nt,
            };
            let n = codes.len();
            let name = codes
                .entry(key)
                .or_insert_with(|| match batch {
                    1 => format!("mv{n}"),
                    b => format!("mv{n}_x{b}"),
                })
                .clone();
            writeln!(places, ".place {name} {c0},{y} {}x1", c1 - c0).unwrap();
            c0 = c1;
        }
    }
    for (key, name) in &codes {
        let (mt, nt) = (key.mt, key.nt);
        write!(
            src,
            ".code {name}
  .buffer w {dt}[{wl}]
  .buffer x {dt}[{xl}]
  .buffer res {acc}[{rl}]
  .task main local active
main:
",
            wl = mt * nt,
            xl = batch * mt,
            rl = batch * nt,
        )
        .unwrap();
        // `x` first: a core busy zeroing would let the row's stream back up,
        // and a multicast row restarts one PE a cycle from its far end.
        if s.streamed {
            writeln!(src, "  vmov.f32 x, rx(c{CX})").unwrap();
        }
        if batch == 1 {
            write!(
                src,
                "  vmov.{acc} res, 0.0
  li r1, 0
  li r2, 0
axpy:
  ldf f1, x[r1]
  vfmac.{acc} res, res, w[r2, {nt}], f1
  add r1, r1, 1
  add r2, r2, {nt}
  blt r1, {mt}, axpy
"
            )
            .unwrap();
        } else {
            // r1 walks every position's `x`, r3 is this position's part
            // of `res`, r4 the end of its `x`; the tile (r2) starts over.
            write!(
                src,
                "  vmov.{acc} res, 0.0
  li r1, 0
  li r3, 0
  li r4, {mt}
position:
  li r2, 0
axpy:
  ldf f1, x[r1]
  vfmac.{acc} res[r3, {nt}], res[r3, {nt}], w[r2, {nt}], f1
  add r1, r1, 1
  add r2, r2, {nt}
  blt r1, r4, axpy
  add r3, r3, {nt}
  add r4, r4, {mt}
  blt r1, {xl}, position
",
                xl = batch * mt
            )
            .unwrap();
        }
        for step in &key.steps {
            let line = match *step {
                Step::Send(c) => format!("vmov.{acc} tx(c{c}), res"),
                Step::Forward { input, out } => {
                    format!("vfadd.{acc} tx(c{out}), rx(c{input}), res")
                }
                Step::Add(c) => format!("vfadd.{acc} res, res, rx(c{c})"),
                Step::Join { first, second } => format!(
                    "vfadd.{acc} res, res, rx(c{first})\n  vfadd.{acc} res, res, rx(c{second})"
                ),
                Step::Receive(c) => format!("vmov.{acc} res, rx(c{c})"),
            };
            writeln!(src, "  {line}").unwrap();
        }
        src.push_str("  end\n.end\n");
    }
    src.push_str(&places);
    for y in 0..s.h {
        for (c, from, to) in routes(s, y) {
            writeln!(src, ".route 0,{y} {}x1 c{c} {from} -> {to}", s.w).unwrap();
        }
        if s.streamed {
            // x along the row: every PE keeps it, all but the last pass it on.
            if s.w > 1 {
                writeln!(src, ".route 0,{y} {}x1 c{CX} W -> R,E", s.w - 1).unwrap();
            }
            writeln!(src, ".route {},{y} 1x1 c{CX} W -> R", s.w - 1).unwrap();
        }
    }
    if s.streamed {
        for (y, (_, mt)) in rows.iter().enumerate() {
            writeln!(
                src,
                ".input x{y} f32[{}] -> 0,{y} W c{CX} = rand({})",
                batch * mt,
                s.seed.wrapping_add(1)
            )
            .unwrap();
        }
        for (c, (_, nt)) in cols.iter().enumerate() {
            writeln!(
                src,
                ".output y{c} {acc}[{}] <- {c},{} S c{CBD}",
                batch * nt,
                s.h - 1
            )
            .unwrap();
        }
    } else {
        let x = s.x();
        for (y, (xo, mt)) in rows.iter().enumerate() {
            let slice: Vec<String> = x[*xo as usize..(xo + mt) as usize]
                .iter()
                .map(|v| format!("{v:?}"))
                .collect();
            writeln!(src, ".data x 0,{y} {}x1 = [{}]", s.w, slice.join(", ")).unwrap();
        }
    }
    writeln!(src, ".data w 0,0 {}x{} = rand({})", s.w, s.h, s.seed).unwrap();
    let program = crate::assemble(&src, "MeshGEMV")?;
    let port = |name, parts, len| crate::positions_port(name, name, parts, len, batch);
    let (inputs, outputs) = if s.streamed {
        (vec![port("x", &rows, s.m)], vec![port("y", &cols, s.n)])
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(Fragment {
        program: program.into(),
        inputs,
        outputs,
        state: Vec::new(),
    })
}

/// Where `W[k][j]` (row `k` of `m`, column `j` of `n`) lives: the PE and
/// the index in its tile.
fn tiles(s: &MeshGemvSpec) -> impl Iterator<Item = (Pe, u32, u32, u32, u32)> + '_ {
    let (rows, cols) = (s.rows(), s.cols());
    (0..s.w).flat_map(move |c| {
        let (yo, nt) = cols[c as usize];
        let rows = rows.clone();
        (0..s.h).map(move |r| {
            let (xo, mt) = rows[r as usize];
            (Pe::new(c, r), xo, mt, yo, nt)
        })
    })
}

/// W as the program holds it (row-major `m × n`: row `k` multiplies
/// `x[k]`), in the dtype.
pub fn weights(s: &MeshGemvSpec, p: &Program) -> Vec<f32> {
    let mut w = vec![0.0; s.m as usize * s.n as usize];
    for (pe, xo, mt, yo, nt) in tiles(s) {
        let tile = p.initial_values(pe, "w").expect("every PE holds a tile");
        for i in 0..mt {
            for j in 0..nt {
                w[((xo + i) * s.n + yo + j) as usize] = tile[(i * nt + j) as usize];
            }
        }
    }
    w
}

/// Load a model's weights, stored as a GEMV's are (`n` rows of `m`: output
/// `j`'s row is `w[j·m ..]`), into the tiles: MeshGEMV's `W[k][j]` is the
/// model's `w[j][k]`.
pub fn load_weights(s: &MeshGemvSpec, f: &mut Fragment, w: &[f32]) -> Result<(), KernelError> {
    let takes = s.m as u64 * s.n as u64;
    let what = || format!("MeshGEMV 1x{} @ {}x{}", s.m, s.m, s.n);
    KernelError::check_length(what, takes, w.len())?;
    let per_pe = tiles(s)
        .map(|(pe, xo, mt, yo, nt)| {
            let mut tile = Vec::with_capacity((mt * nt) as usize);
            for i in 0..mt {
                for j in 0..nt {
                    tile.push(w[((yo + j) * s.m + xo + i) as usize]);
                }
            }
            (pe, tile)
        })
        .collect();
    f.load("w", per_pe);
    Ok(())
}

/// [`generate_batch`]'s `y`: each position's ([`reference`]) one after
/// another (the column reduces every position's part of `res` element by
/// element, in one position's order).
pub fn reference_batch(s: &MeshGemvSpec, w: &[f32], x: &[f32]) -> Vec<f32> {
    x.chunks(s.m as usize)
        .flat_map(|x| reference(s, w, x))
        .collect()
}

/// The reference: `x` rounded to the dtype (as the PEs store it), each PE's
/// AXPY loop in the sum's arithmetic (`res + w·x`, the product and the sum
/// each rounded to it), then the column's chains in the order the code adds
/// them. Bit-exact with the emulator. Returns `y` (`n` outputs): what every
/// PE of column `c` holds in `res`, and what its stream carries out, is
/// column `c`'s run of `y`.
pub fn reference(s: &MeshGemvSpec, w: &[f32], x: &[f32]) -> Vec<f32> {
    let r = |v: f32| s.acc.round(v);
    let x: Vec<f32> = x.iter().map(|v| s.dtype.round(*v)).collect();
    let add =
        |a: &[f32], b: &[f32]| -> Vec<f32> { a.iter().zip(b).map(|(u, v)| r(u + v)).collect() };
    let (gsize, r1) = s.group();
    let (gsize, r1) = (gsize as usize, r1 as usize);
    let groups = s.groups as usize;
    let rows = s.rows();
    let n = s.n as usize;
    let mut y = Vec::with_capacity(n);
    for (yo, nt) in s.cols() {
        let partial: Vec<Vec<f32>> = rows
            .iter()
            .map(|&(xo, mt)| {
                (yo..yo + nt)
                    .map(|j| {
                        (xo..xo + mt).fold(0.0f32, |a, k| {
                            r(a + r(w[k as usize * n + j as usize] * x[k as usize]))
                        })
                    })
                    .collect()
            })
            .collect();
        // Two chains towards a middle element, then the middle adds the
        // lower chain's sum and then the upper's.
        let meet = |items: &[Vec<f32>], mid: usize| -> Vec<f32> {
            let mut res = items[mid].clone();
            if mid + 1 < items.len() {
                let mut up = items[items.len() - 1].clone();
                for it in items[mid + 1..items.len() - 1].iter().rev() {
                    up = add(&up, it);
                }
                res = add(&res, &up);
            }
            let mut down = items[0].clone();
            for it in &items[1..mid] {
                down = add(&down, it);
            }
            add(&res, &down)
        };
        let group_sums: Vec<Vec<f32>> = (0..groups)
            .map(|q| meet(&partial[q * gsize..(q + 1) * gsize], r1))
            .collect();
        y.extend(meet(&group_sums, groups / 2));
    }
    y
}
