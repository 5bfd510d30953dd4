//! WaferLLM's MeshGEMM (He et al., OSDI 2025, §5; the CSL in
//! MeshInfra/WaferLLM `MeshGEMM/WSE-2/src/meshgemm.csl` and
//! `comm/comm_pe.csl`), rebuilt in our ISA after its structure: `Y = X·W`
//! for `X` (`m × k`) and `W` (`k × n`) on a `p × p` square of PEs, Cannon's
//! algorithm over a *two-hop ring*.
//!
//! PE `(c, r)` computes `Y`'s tile `(r, c)` (`m/p × n/p`). Along every row
//! and every column of PEs the `p` positions form a ring visited as
//! `0, 2, 4, …, 5, 3, 1` (the even positions going out, the odd ones coming
//! back), so every link of the ring is one or two hops and each directed
//! link of the mesh carries at most one stream: the ring's wrap-around
//! costs no more than any other step. With `ρ(i)` a position's place in
//! that ring, PE `(c, r)` holds at step `t` the `X` tile `(r, κ)` and the
//! `W` tile `(κ, c)` for `κ = (ρ(r) + ρ(c) + t) mod p`: each step adds
//! their product into its `Y` tile, and every PE passes its `X` tile to its
//! row ring's previous position and its `W` tile to its column ring's,
//! while computing (asynchronous sends and receives into a second buffer).
//!
//! The product is WaferLLM's loop of `@fmach` over `W`'s rows: for each row
//! `i` of the `X` tile and each `κ`-column `q`, `y[i, :] += X[i, q] ·
//! W[q, :]` in 16-bit arithmetic (the sum in the weights' dtype, WaferLLM's
//! `@fmach`, or in f32).
//!
//! Where ours differs from the CSL: the host places `X` as well as `W`
//! already skewed for Cannon's first step (WaferLLM shifts `X` into place
//! on the wafer, up to `p/2` ring steps per row, inside its timed region;
//! ours leaves that out, and says so in its cost); the last step sends
//! nothing (WaferLLM's sends once more); a PE's loop is our
//! `ldf`/`vfmac`/`add`/`add`/`blt` per element of `X`, where the CSL maps
//! `@fmach` over a DSD. The joins of the four transfers and the product are
//! tasks that count completions, as the CSL's `x_finish`/`y_finish` tasks
//! do with block and unblock.

use crate::collective::{ring_order, ring_place};
use crate::{Fragment, KernelError};
use std::fmt::Write;
use wafer_emulator::isa::VecOp;
use wafer_emulator::{Arch, DType, Pe, Program};

#[derive(Clone, Debug, PartialEq)]
pub struct MeshGemmSpec {
    /// Rows of `X` and `Y`.
    pub m: u32,
    /// Columns of `X`, rows of `W`.
    pub k: u32,
    /// Columns of `W` and `Y`.
    pub n: u32,
    /// The side of the square of PEs; `m`, `k` and `n` are multiples of it
    /// (WaferLLM's tiles divide exactly).
    pub p: u32,
    /// `X`'s and `W`'s dtype: f16 (WaferLLM's) or bf16.
    pub dtype: DType,
    /// `Y`'s: the weights' own (WaferLLM's) or f32.
    pub acc: DType,
    pub seed: u64,
}

/// Colors: `X` along the rows, `W` along the columns.
const CX: u8 = 0;
const CW: u8 = 1;

impl MeshGemmSpec {
    fn tiles(&self) -> (u32, u32, u32) {
        (self.m / self.p, self.k / self.p, self.n / self.p)
    }
    /// SRAM one PE needs: two `X` and two `W` tiles, the `Y` tile, code.
    pub fn sram_bytes(&self) -> u64 {
        let (mt, kt, nt) = self.tiles();
        let (mt, kt, nt) = (mt as u64, kt as u64, nt as u64);
        let b = self.dtype.size_bytes() as u64;
        2 * (mt * kt + kt * nt) * b + mt * nt * self.acc.size_bytes() as u64 + 600
    }
}

pub fn validate(s: &MeshGemmSpec, arch: &Arch) -> Result<(), KernelError> {
    if !matches!(s.dtype, DType::F16 | DType::BF16) {
        return Err(KernelError::Shape(
            "MeshGEMM multiplies 16-bit floats: f16 (WaferLLM's) or bf16".into(),
        ));
    }
    if s.acc != s.dtype && s.acc != DType::F32 {
        return Err(KernelError::Shape(format!(
            "MeshGEMM sums in the inputs' {} or in f32, not {}",
            s.dtype, s.acc
        )));
    }
    if s.p == 0 || s.p > arch.grid_cols || s.p > arch.grid_rows {
        return Err(KernelError::Rect {
            w: s.p,
            h: s.p,
            why: format!(
                "machine `{}` has {}x{} PEs",
                arch.name, arch.grid_cols, arch.grid_rows
            ),
        });
    }
    if s.m == 0
        || s.k == 0
        || s.n == 0
        || !s.m.is_multiple_of(s.p)
        || !s.k.is_multiple_of(s.p)
        || !s.n.is_multiple_of(s.p)
    {
        return Err(KernelError::Shape(format!(
            "MeshGEMM tiles exactly, as WaferLLM's does: m = {}, k = {} and n = {} must be positive multiples of the side {}",
            s.m, s.k, s.n, s.p
        )));
    }
    if s.sram_bytes() > arch.sram_bytes as u64 {
        let (mt, kt, nt) = s.tiles();
        return Err(KernelError::Rect {
            w: s.p,
            h: s.p,
            why: format!(
                "{mt}x{kt} and {kt}x{nt} tiles, twice each, and a {mt}x{nt} result need about {} bytes of SRAM, a PE has {}; use more PEs",
                s.sram_bytes(),
                arch.sram_bytes
            ),
        });
    }
    if arch.colors < 2 || arch.microthreads < 4 {
        return Err(KernelError::Shape(format!(
            "MeshGEMM needs 2 colors and 4 microthreads; machine `{}` has {} and {}",
            arch.name, arch.colors, arch.microthreads
        )));
    }
    Ok(())
}

/// The routes of one line of `p` positions on color `c`, every position
/// sending to its ring predecessor: `(position, color, from, to)`, with
/// `lo`/`hi` the port names towards lower and higher positions (`W`/`E`
/// along a row, `N`/`S` down a column).
fn line_routes(
    p: u32,
    lo: &'static str,
    hi: &'static str,
) -> Vec<(u32, &'static str, &'static str)> {
    let order = ring_order(p);
    let place = ring_place(p);
    let mut out = Vec::new();
    if p < 2 {
        return out;
    }
    for a in 0..p {
        let pred = order[((place[a as usize] + p - 1) % p) as usize];
        let (toward, back) = if pred < a { (lo, hi) } else { (hi, lo) };
        out.push((a, "R", toward));
        if a.abs_diff(pred) == 2 {
            out.push(((a + pred) / 2, back, toward));
        }
        out.push((pred, back, "R"));
    }
    out
}

pub fn generate(s: &MeshGemmSpec, arch: &Arch) -> Result<Fragment, KernelError> {
    validate(s, arch)?;
    let (mt, kt, nt) = s.tiles();
    let (dt, acc, p) = (s.dtype, s.acc, s.p);
    let (mk, kn, mn) = (mt * kt, kt * nt, mt * nt);
    let mut src = format!(
        "; MeshGEMM {m}x{k} @ {k}x{n} {dt} (sum in {acc}) on {p}x{p} PEs, two-hop rings\n.grid {p}x{p}\n",
        m = s.m,
        k = s.k,
        n = s.n,
    );
    // r4, r5: the current X and W tiles' offsets (0 or one tile); r7, r8:
    // the others; r6: the step; r9: completions this step, r10: how many
    // make the step (the product, plus four transfers but on the last).
    write!(
        src,
        ".code mm
  .buffer xs {dt}[{x2}]
  .buffer ws {dt}[{w2}]
  .buffer y {acc}[{mn}]
  .task main local active
  .task xsent local
  .task xgot local
  .task wsent local
  .task wgot local
main:
  vmov.{acc} y, 0.0
  li r4, 0
  li r5, 0
  li r6, 0
step:
  li r9, 0
  li r10, 1
{transfers}product:
  mov r1, r4
  li r3, 0
row:
  mov r2, r5
  add r11, r5, {kn}
col:
  ldf f1, xs[r1]
  vfmac.{acc} y[r3, {nt}], y[r3, {nt}], ws[r2, {nt}], f1
  add r1, r1, 1
  add r2, r2, {nt}
  blt r2, r11, col
  add r3, r3, {nt}
  blt r3, {mn}, row
  jmp joined
xsent:
  jmp joined
xgot:
  jmp joined
wsent:
  jmp joined
wgot:
  jmp joined
joined:
  add r9, r9, 1
  beq r9, r10, next
  end
next:
  add r6, r6, 1
  bge r6, {p}, done
  mov r4, r7
  mov r5, r8
  jmp step
done:
  end
.end
.place mm 0,0 {p}x{p}
",
        x2 = 2 * mk,
        w2 = 2 * kn,
        // One PE has nothing to pass on.
        transfers = if p == 1 {
            String::new()
        } else {
            format!(
                "  bge r6, {last}, product
  li r10, 5
  li r7, {mk}
  sub r7, r7, r4
  li r8, {kn}
  sub r8, r8, r5
  vmov.{dt} tx(c{CX}), xs[r4, {mk}] async 0 -> xsent
  vmov.{dt} xs[r7, {mk}], rx(c{CX}) async 1 -> xgot
  vmov.{dt} tx(c{CW}), ws[r5, {kn}] async 2 -> wsent
  vmov.{dt} ws[r8, {kn}], rx(c{CW}) async 3 -> wgot
",
                last = p - 1
            )
        },
    )
    .unwrap();
    for (x, from, to) in line_routes(p, "W", "E") {
        writeln!(src, ".route {x},0 1x{p} c{CX} {from} -> {to}").unwrap();
    }
    for (y, from, to) in line_routes(p, "N", "S") {
        writeln!(src, ".route 0,{y} {p}x1 c{CW} {from} -> {to}").unwrap();
    }
    let program = crate::assemble(&src, "MeshGEMM")?;
    let mut f = Fragment {
        program: program.into(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        state: Vec::new(),
    };
    let (x, w) = inputs(s);
    load(s, &mut f, &x, &w);
    Ok(f)
}

/// The seeded `X` (`m × k`) and `W` (`k × n`), row-major, in the dtype.
pub fn inputs(s: &MeshGemmSpec) -> (Vec<f32>, Vec<f32>) {
    let mut st = s.seed ^ 0x2545_f491_4f6c_dd1d;
    let mut draw = |n: u32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                st = st
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.dtype.round(((st >> 40) as f32 / 16777216.0) - 0.5)
            })
            .collect()
    };
    let x = draw(s.m * s.k);
    let w = draw(s.k * s.n);
    (x, w)
}

/// Place `X` and `W` (row-major) as Cannon's first step wants them: PE
/// `(c, r)` gets `X` tile `(r, κ)` and `W` tile `(κ, c)` in the first half
/// of its buffers, `κ = (ρ(r) + ρ(c)) mod p`.
pub fn load(s: &MeshGemmSpec, f: &mut Fragment, x: &[f32], w: &[f32]) {
    let (mt, kt, nt) = s.tiles();
    let place = ring_place(s.p);
    let (mut xs, mut ws) = (Vec::new(), Vec::new());
    for r in 0..s.p {
        for c in 0..s.p {
            let kb = (place[r as usize] + place[c as usize]) % s.p;
            let mut xt = vec![0.0; 2 * (mt * kt) as usize];
            for i in 0..mt {
                for q in 0..kt {
                    xt[(i * kt + q) as usize] = x[((r * mt + i) * s.k + kb * kt + q) as usize];
                }
            }
            let mut wt = vec![0.0; 2 * (kt * nt) as usize];
            for q in 0..kt {
                for j in 0..nt {
                    wt[(q * nt + j) as usize] = w[((kb * kt + q) * s.n + c * nt + j) as usize];
                }
            }
            xs.push((Pe::new(c, r), xt));
            ws.push((Pe::new(c, r), wt));
        }
    }
    f.load("xs", xs);
    f.load("ws", ws);
}

/// The reference: `Y` (`m × n`, row-major) as the PEs compute it: PE
/// `(c, r)`'s tile sums the `k`-blocks in the order its steps visit them,
/// each block's columns in order, `y + x·w` rounded to the sum's dtype
/// (the product first). Bit-exact with the emulator.
pub fn reference(s: &MeshGemmSpec, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (mt, kt, nt) = s.tiles();
    let r = |v: f32| s.acc.round(v);
    let place = ring_place(s.p);
    let mut y = vec![0.0f32; (s.m * s.n) as usize];
    for br in 0..s.p {
        for bc in 0..s.p {
            for t in 0..s.p {
                let kb = (place[br as usize] + place[bc as usize] + t) % s.p;
                for i in 0..mt {
                    let row = br * mt + i;
                    for q in 0..kt {
                        let kk = kb * kt + q;
                        let xv = x[(row * s.k + kk) as usize];
                        for j in 0..nt {
                            let col = bc * nt + j;
                            let at = (row * s.n + col) as usize;
                            y[at] = r(y[at] + r(xv * w[(kk * s.n + col) as usize]));
                        }
                    }
                }
            }
        }
    }
    y
}

/// `Y` as the program left it in the PEs' `y` tiles.
pub fn gather(s: &MeshGemmSpec, p: &Program, run: &wafer_emulator::RunResult) -> Vec<f32> {
    let (mt, _, nt) = s.tiles();
    let mut y = vec![0.0f32; (s.m * s.n) as usize];
    for r in 0..s.p {
        for c in 0..s.p {
            let tile = run
                .read_buffer(p, Pe::new(c, r), "y")
                .expect("every PE holds a y tile");
            for i in 0..mt {
                for j in 0..nt {
                    y[((r * mt + i) * s.n + c * nt + j) as usize] = tile[(i * nt + j) as usize];
                }
            }
        }
    }
    y
}

/// The cost model's estimate: an estimate, not a derivation. Per step the
/// product's own time (the loop on its own, [`crate::timeline::Timeline`])
/// or, if longer, the datapath's demand: the product's vector cycles plus
/// one cycle per wavelet each of the four transfers moves (the datapath
/// serves one operation a cycle, round robin, and the transfers run beside
/// the product); then the join (a task switch and a few scalars per
/// completion). The ring's one- and two-hop links, the transfers' start
/// latency and the round robin's exact interleaving are not followed; the
/// tests bound the gap to the emulated cycles.
pub fn cost(s: &MeshGemmSpec, arch: &Arch) -> u64 {
    let (mt, kt, nt) = s.tiles();
    let sw = arch.task_switch_cycles as u64;
    let acc_bits = arch.operand_bits(s.acc.bits(), true);
    let w_bits = arch.operand_bits(s.dtype.bits(), true);
    let zero = arch.vector_rate(VecOp::Mov, s.acc, false, 0, acc_bits);
    let fmac = arch.vector_rate(VecOp::Fmac, s.acc, true, acc_bits + w_bits, acc_bits);
    let mut start = crate::timeline::Timeline::start(arch);
    start.vector(mt * nt, zero);
    start.scalar(3);
    let product = |l: &mut crate::timeline::Timeline| {
        l.scalar(2);
        l.repeat(mt as u64, |l| {
            l.scalar(2);
            l.repeat(kt as u64, |l| {
                l.scalar(1);
                l.vector(nt, fmac);
                l.scalar(3);
            });
            l.scalar(2);
        });
        l.scalar(1);
    };
    let mut alone = crate::timeline::Timeline { arch, t: 0 };
    product(&mut alone);
    let vector_cycles = (mt * kt) as u64 * Arch::vector_cycles(nt, fmac);
    let per = s.dtype.per_word() as u64;
    let moved = 2 * ((mt * kt) as u64).div_ceil(per) + 2 * ((kt * nt) as u64).div_ceil(per);
    // A step with transfers: their setup, then the longer of the two, then
    // the join's task switches and scalars.
    let setup = 11 + 4 * (1 + arch.vector_issue_cycles as u64);
    let busy = alone.t.max(vector_cycles + moved);
    let with_transfers = setup + busy + 4 * (sw + 4) + 4;
    let last = 3 + alone.t + 3;
    start.t + (s.p as u64 - 1) * with_transfers + last + 1
}
