//! WaferLLM's MeshGEMV (He et al., OSDI 2025, §6; the CSL in
//! MeshInfra/WaferLLM `MeshGEMV/WSE-2/src/meshgemv.csl` and
//! `comm_lib/comm_pe.csl`), rebuilt in our ISA after its structure: `y =
//! x·W` for a `1 × m` vector `x` and an `m × n` matrix `W` tiled over a
//! `w × h` rectangle, `x` split down the rows (each PE row holds its
//! `m / h` slice, the same in every column) and `W` in `(m/h) × (n/w)`
//! tiles.
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
//! one GEMV, compute and allreduce. Where ours differs from the CSL: a PE's
//! loop is our `ldf`/`vfmac`/`add`/`add`/`blt` per element of `x` where the
//! CSL has `@map` (whose per-element cost on the hardware is not
//! published); the routes are fixed (the CSL switches none either).

use crate::timeline::Timeline;
use crate::{Fragment, KernelError};
use std::collections::BTreeMap;
use std::fmt::Write;
use wafer_emulator::isa::VecOp;
use wafer_emulator::{Arch, DType, Pe, Program};

#[derive(Clone, Debug, PartialEq)]
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
    /// f16 (WaferLLM's) or bf16.
    pub dtype: DType,
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
const COLORS: usize = 10;

impl MeshGemvSpec {
    fn mt(&self) -> u32 {
        self.m / self.h
    }
    fn nt(&self) -> u32 {
        self.n / self.w
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
    /// SRAM one PE needs: its tile, its `x` slice, `res`, and the code.
    pub fn sram_bytes(&self) -> u64 {
        let b = self.dtype.size_bytes() as u64;
        let (mt, nt) = (self.mt() as u64, self.nt() as u64);
        (mt * nt + mt + nt) * b + 400
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
    if !matches!(s.dtype, DType::F16 | DType::BF16) {
        return Err(KernelError::Shape(
            "MeshGEMV computes in 16-bit floats: f16 (WaferLLM's) or bf16".into(),
        ));
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
    if s.m == 0 || s.n == 0 || !s.m.is_multiple_of(s.h) || !s.n.is_multiple_of(s.w) {
        return Err(KernelError::Shape(format!(
            "MeshGEMV tiles exactly, as WaferLLM's does: m = {} must be a multiple of the {} rows and n = {} of the {} columns",
            s.m, s.h, s.n, s.w
        )));
    }
    if s.groups < 2 || !s.h.is_multiple_of(s.groups) || s.h / s.groups < 2 {
        return Err(KernelError::Shape(format!(
            "--groups {}: the allreduce needs at least 2 groups of at least 2 rows each, dividing the {} rows",
            s.groups, s.h
        )));
    }
    if s.sram_bytes() > arch.sram_bytes as u64 {
        return Err(KernelError::Rect {
            w: s.w,
            h: s.h,
            why: format!(
                "a {}x{} tile needs about {} bytes of SRAM, a PE has {}; use more PEs",
                s.mt(),
                s.nt(),
                s.sram_bytes(),
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
    if g == r1 {
        if g != gsize - 1 {
            out.push(Step::Add(CU1[par(y + 1)]));
        }
        out.push(Step::Add(CD1[par(y - 1)]));
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
            if q != s.groups - 1 {
                out.push(Step::Add(CU2[par(q + 1)]));
            }
            out.push(Step::Add(CD2[par(q - 1)]));
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
        if y != s.h - 1 {
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
    if y == root {
        out.push((CBU, "R", "N"));
        if y != s.h - 1 {
            out.push((CBD, "R", "S"));
        }
    } else if y < root {
        out.push((CBU, "S", if y == 0 { "R" } else { "R,N" }));
    } else {
        out.push((CBD, "N", if y == s.h - 1 { "R" } else { "R,S" }));
    }
    out
}

pub fn generate(s: &MeshGemvSpec, arch: &Arch) -> Result<Fragment, KernelError> {
    validate(s, arch)?;
    let (mt, nt, dt) = (s.mt(), s.nt(), s.dtype);
    let mut src = format!(
        "; MeshGEMV 1x{m} @ {m}x{n} {dt} on {w}x{h} PEs, {g} groups\n.grid {w}x{h}\n",
        m = s.m,
        n = s.n,
        w = s.w,
        h = s.h,
        g = s.groups
    );
    // One code per distinct list of steps.
    let mut codes: BTreeMap<Vec<Step>, String> = BTreeMap::new();
    let mut places = String::new();
    for y in 0..s.h {
        let st = steps(s, y);
        let n = codes.len();
        let name = codes
            .entry(st.clone())
            .or_insert_with(|| format!("mv{n}"))
            .clone();
        writeln!(places, ".place {name} 0,{y} {}x1", s.w).unwrap();
    }
    for (st, name) in &codes {
        write!(
            src,
            ".code {name}
  .buffer w {dt}[{wl}]
  .buffer x {dt}[{mt}]
  .buffer res {dt}[{nt}]
  .task main local active
main:
  vmov.{dt} res, 0.0
  li r1, 0
  li r2, 0
axpy:
  ldf f1, x[r1]
  vfmac.{dt} res, res, w[r2, {nt}], f1
  add r1, r1, 1
  add r2, r2, {nt}
  blt r1, {mt}, axpy
",
            wl = mt * nt,
        )
        .unwrap();
        for step in st {
            let line = match *step {
                Step::Send(c) => format!("vmov.{dt} tx(c{c}), res"),
                Step::Forward { input, out } => format!("vfadd.{dt} tx(c{out}), rx(c{input}), res"),
                Step::Add(c) => format!("vfadd.{dt} res, res, rx(c{c})"),
                Step::Receive(c) => format!("vmov.{dt} res, rx(c{c})"),
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
    }
    let x = s.x();
    for y in 0..s.h {
        let slice: Vec<String> = x[(y * mt) as usize..((y + 1) * mt) as usize]
            .iter()
            .map(|v| format!("{v:?}"))
            .collect();
        writeln!(src, ".data x 0,{y} {}x1 = [{}]", s.w, slice.join(", ")).unwrap();
    }
    writeln!(src, ".data w 0,0 {}x{} = rand({})", s.w, s.h, s.seed).unwrap();
    let program = crate::assemble(&src, "MeshGEMV")?;
    Ok(Fragment {
        program,
        inputs: Vec::new(),
        outputs: Vec::new(),
    })
}

/// W as the program holds it (row-major `m × n`, in the dtype).
pub fn weights(s: &MeshGemvSpec, p: &Program) -> Vec<f32> {
    let (mt, nt) = (s.mt(), s.nt());
    let mut w = vec![0.0; (s.m * s.n) as usize];
    for c in 0..s.w {
        for r in 0..s.h {
            let tile = p
                .initial_values(Pe::new(c, r), "w")
                .expect("every PE holds a tile");
            for i in 0..mt {
                for j in 0..nt {
                    w[((r * mt + i) * s.n + c * nt + j) as usize] = tile[(i * nt + j) as usize];
                }
            }
        }
    }
    w
}

/// The reference: each PE's AXPY loop in the dtype's arithmetic (`res +
/// w·x`, the product and the sum each rounded), then the column's chains in
/// the order the code adds them. Bit-exact with the emulator. Returns `y`
/// (`n` outputs): what every PE of column `c` holds in `res` is
/// `y[c·n/w ..]`.
pub fn reference(s: &MeshGemvSpec, w: &[f32], x: &[f32]) -> Vec<f32> {
    let (mt, nt, dt) = (s.mt() as usize, s.nt() as usize, s.dtype);
    let r = |v: f32| dt.round(v);
    let add =
        |a: &[f32], b: &[f32]| -> Vec<f32> { a.iter().zip(b).map(|(u, v)| r(u + v)).collect() };
    let (gsize, r1) = s.group();
    let (gsize, r1) = (gsize as usize, r1 as usize);
    let groups = s.groups as usize;
    let mut y = Vec::with_capacity(s.n as usize);
    for c in 0..s.w as usize {
        let partial: Vec<Vec<f32>> = (0..s.h as usize)
            .map(|row| {
                (0..nt)
                    .map(|j| {
                        (0..mt).fold(0.0f32, |acc, i| {
                            let k = row * mt + i;
                            r(acc + r(w[k * s.n as usize + c * nt + j] * x[k]))
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

/// Predicted cycles, row by row with [`Timeline`] (every column alike):
/// the zeroing and the AXPY loop (`ldf`, the FMAC, three scalars per
/// element of `x`); then the chains: a 16-bit stream moves one wavelet (two
/// elements) per cycle, a sender's wavelet `k` leaves at its first
/// element's cycle plus `k`, reaches the next core `2·ramp + hops·hop`
/// later, and a receiving op handles wavelet `k` at `max(start, arrival +
/// k)`; the next instruction issues in the cycle of the last wavelet. A
/// middle row's two streams share its ramp: approximated as alternating
/// until the second stream's queue is full (the engine arbitrates round
/// robin and backpressures the senders, which this does not follow); the
/// tests hold it within 8 % of the emulated cycles (6.4 % at worst over a
/// sweep of 288 shapes).
pub fn cost(s: &MeshGemvSpec, arch: &Arch) -> u64 {
    let (i, hop, ramp) = (
        arch.vector_issue_cycles as u64,
        arch.hop_latency as u64,
        arch.ramp_latency as u64,
    );
    let (mt, nt) = (s.mt(), s.nt());
    let wavelets = nt.div_ceil(2) as u64;
    let b = s.dtype.size_bytes();
    let halves = |contiguous| arch.operand_halves(b, contiguous);
    let zero = arch.vector_rate(VecOp::Mov, s.dtype, false, 0, halves(true));
    let fmac = arch.vector_rate(VecOp::Fmac, s.dtype, false, 2 * halves(true), halves(true));
    // Rows' main threads after the local GEMV.
    let mut t: Vec<u64> = (0..s.h)
        .map(|_| {
            let mut l = Timeline::start(arch);
            l.vector(nt, zero);
            l.scalar(2);
            l.repeat(mt as u64, |l| {
                l.scalar(1);
                l.vector(nt, fmac);
                l.scalar(3);
            });
            l.t
        })
        .collect();
    // Stream arrivals by color and receiving row: the cycle wavelet 0 is
    // in the core's queue.
    let mut arrival: BTreeMap<(u8, u32), u64> = BTreeMap::new();
    let (gsize, _) = s.group();
    let root = s.root();
    // Where a stream row `y` sends on color `c` lands: (row, hops).
    let lands = |c: u8, y: u32| -> Vec<(u32, u64)> {
        if CD1.contains(&c) {
            vec![(y + 1, 1)]
        } else if CU1.contains(&c) {
            vec![(y - 1, 1)]
        } else if CD2.contains(&c) {
            vec![(y + gsize, gsize as u64)]
        } else if CU2.contains(&c) {
            vec![(y - gsize, gsize as u64)]
        } else if c == CBU {
            (0..root).map(|r| (r, (root - r) as u64)).collect()
        } else {
            (root + 1..s.h).map(|r| (r, (r - root) as u64)).collect()
        }
    };
    let steps_of: Vec<Vec<Step>> = (0..s.h).map(|y| steps(s, y)).collect();
    // Room for a stream's wavelets between the router and a core that is
    // not yet consuming them: its queue and the ramp's pipeline stages.
    let queued = (arch.queue_depth + arch.ramp_latency) as u64;
    let mut next = vec![0usize; s.h as usize];
    // Run each row's steps in dependency order: a step waiting on a stream
    // runs once the stream's arrival is known.
    let mut progressed = true;
    while progressed {
        progressed = false;
        for y in 0..s.h as usize {
            while next[y] < steps_of[y].len() {
                let step = steps_of[y][next[y]];
                let arrived = |c: u8| arrival.get(&(c, y as u32)).copied();
                // A middle row adds two streams that reach its router
                // together, one after the other: the ramp into the core
                // takes one wavelet per cycle, alternating between the two
                // until the second stream's queue is full, so the first add
                // sees a wavelet every other cycle for that long.
                if let (Step::Add(ca), Some(Step::Add(cb))) =
                    (step, steps_of[y].get(next[y] + 1).copied())
                {
                    let (Some(a), Some(b)) = (arrived(ca), arrived(cb)) else {
                        break;
                    };
                    let start_a = t[y] + 1 + i;
                    let shared = if b <= a + 2 * wavelets {
                        wavelets.min(queued)
                    } else {
                        0
                    };
                    let last_a = if shared == wavelets {
                        a + 2 * (wavelets - 1)
                    } else {
                        a + 2 * shared + (wavelets - 1 - shared)
                    };
                    let done_a = start_a.max(a).max(last_a);
                    let start_b = done_a + 1 + i;
                    // B's first `shared` wavelets wait in its queue; the
                    // rest follow one per cycle once it drains.
                    t[y] = start_b.max(b) + wavelets - 1;
                    next[y] += 2;
                    progressed = true;
                    continue;
                }
                let input = match step {
                    Step::Forward { input, .. } | Step::Add(input) | Step::Receive(input) => {
                        Some(input)
                    }
                    Step::Send(_) => None,
                };
                let start = t[y] + 1 + i;
                let first = match input {
                    None => start,
                    Some(c) => match arrived(c) {
                        Some(a) => start.max(a),
                        None => break,
                    },
                };
                if let Step::Send(c) | Step::Forward { out: c, .. } = step {
                    for (to, hops) in lands(c, y as u32) {
                        arrival.insert((c, to), first + 2 * ramp + hops * hop);
                    }
                }
                t[y] = first + wavelets - 1;
                next[y] += 1;
                progressed = true;
            }
        }
    }
    // The run ends the cycle after the last row's last wavelet.
    t.into_iter().max().unwrap_or(0) + 1
}
