//! Rotary position embedding on a vector of heads down a column of PEs.
//!
//! `heads` heads of `head_dim` (even) are split over `h` PEs, whole heads
//! each, or, with more PEs than heads, a part of a head each: each head
//! on `h / heads` PEs or one more, its pairs split between them as evenly
//! as they go (with `h = p · heads` and `head_dim` a multiple of `2p`,
//! a `p`-th of each head; with other heights some PEs take a pair more),
//! so a compiler can make the column as tall as the rows its input
//! leaves from. Either way
//! every rotated pair is local to one PE in either layout: adjacent pairs
//! `(2i, 2i+1)` (llama2.c) or half-split pairs `(i, i + d/2)` (Hugging
//! Face checkpoints; a part of a head is then two runs, its pairs'
//! two members). Pair `i` turns by `pos · θ^(−2i/d)`. PE `r`
//! holds its pairs' frequencies `θ^(−2i/d)` (computed in f32 at generation time),
//! receives `[pos, its heads]` from the west, computes the angles' sines and
//! cosines (scaled by YaRN's attention factor where the scaling is YaRN),
//! rotates, and sends its heads on to the east.

use crate::timeline::{Timeline, f32_rate, f32_rate_strided};
use crate::{Fragment, KernelError, Segment, TensorPort, split};
use std::collections::BTreeMap;
use std::fmt::Write;
use wafer_emulator::isa::VecOp;
use wafer_emulator::{Arch, Pe, Program};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RopeLayout {
    /// Pairs `(2i, 2i+1)`, as llama2.c.
    Adjacent,
    /// Pairs `(i, i + d/2)`, as Hugging Face Llama checkpoints.
    HalfSplit,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RopeSpec {
    pub heads: u32,
    pub head_dim: u32,
    pub theta: f32,
    pub layout: RopeLayout,
    /// Frequency scaling for long contexts (Llama 3.1's, or linear).
    pub scaling: Option<RopeScaling>,
    /// The default position (the `pos` input).
    pub pos: u32,
    /// PEs in the column: at most `heads` (whole heads each), or more,
    /// up to one pair a PE (`heads · head_dim / 2`): each head then over
    /// `h / heads` PEs or one more, its pairs split between them as
    /// evenly as they go ([`RopeSpec::pieces`]).
    pub h: u32,
}

const CA: u8 = 0;
const CO: u8 = 2;

impl RopeSpec {
    /// Whether each head is split over several PEs (the column is taller
    /// than the heads).
    fn tall(&self) -> bool {
        self.h > self.heads
    }
    /// A column taller than the heads: per PE, its head, its first pair
    /// of that head and how many pairs it turns. Each head takes
    /// `h / heads` PEs or one more ([`split`], the heads in order down
    /// the column), its `head_dim / 2` pairs split between them likewise;
    /// `h = p · heads` with `head_dim` a multiple of `2p` gives every PE
    /// a `p`-th of its head.
    fn pieces(&self) -> Vec<(u32, u32, u32)> {
        split(self.h, self.heads)
            .into_iter()
            .enumerate()
            .flat_map(|(head, (_, pes))| {
                split(self.head_dim / 2, pes)
                    .into_iter()
                    .map(move |(first, n)| (head as u32, first, n))
            })
            .collect()
    }
    /// The elements PE `r` rotates as one unit (`pieces` of a tall
    /// column, else a head).
    fn unit(&self, pieces: &[(u32, u32, u32)], r: u32) -> u32 {
        match self.tall() {
            true => 2 * pieces[r as usize].2,
            false => self.head_dim,
        }
    }
    /// Each PE's units: the first and how many.
    fn split(&self) -> Vec<(u32, u32)> {
        if self.tall() {
            (0..self.h).map(|r| (r, 1)).collect()
        } else {
            split(self.heads, self.h)
        }
    }
    /// Each PE's elements of `x`, top to bottom: runs `(offset, length)`
    /// in the order the PE takes them (runs that follow each other in
    /// `x`, as whole heads do, are one). A GEMV beside the column can
    /// compute exactly these on its tile rows ([`crate::gemv::GemvSpec::lead`]).
    pub fn pe_runs(&self) -> Vec<Vec<(u32, u32)>> {
        let pieces = if self.tall() {
            self.pieces()
        } else {
            Vec::new()
        };
        (self.split().into_iter())
            .map(|(u0, nu)| {
                let mut v: Vec<(u32, u32)> = Vec::new();
                for (offset, l) in (u0..u0 + nu).flat_map(|u| self.runs(&pieces, u)) {
                    match v.last_mut() {
                        Some(last) if last.0 + last.1 == offset => last.1 += l,
                        _ => v.push((offset, l)),
                    }
                }
                v
            })
            .collect()
    }
    /// Stride between a pair's members' runs, and the partner's offset,
    /// within a unit of `unit` elements as its PE holds it.
    fn pairing(&self, unit: u32) -> (u32, u32) {
        match self.layout {
            RopeLayout::Adjacent => (2, 1),
            RopeLayout::HalfSplit => (1, unit / 2),
        }
    }
    /// The runs of `x` (offset, length) unit `u` is, in the order its PE
    /// holds them: a head; a piece of a head's adjacent pairs; or the first
    /// members then the second of a piece of its half-split ones.
    fn runs(&self, pieces: &[(u32, u32, u32)], u: u32) -> Vec<(u32, u32)> {
        let d = self.head_dim;
        if !self.tall() {
            return vec![(u * d, d)];
        }
        let (head, first, n) = pieces[u as usize];
        match self.layout {
            RopeLayout::Adjacent => vec![(head * d + 2 * first, 2 * n)],
            RopeLayout::HalfSplit => {
                vec![(head * d + first, n), (head * d + d / 2 + first, n)]
            }
        }
    }
    /// The pairs (indices into [`RopeSpec::inv_freq`]) PE `r` turns.
    fn pairs(&self, pieces: &[(u32, u32, u32)], r: u32) -> std::ops::Range<usize> {
        match self.tall() {
            true => {
                let (_, first, n) = pieces[r as usize];
                first as usize..(first + n) as usize
            }
            false => 0..(self.head_dim / 2) as usize,
        }
    }
    /// The column heights that split each head over `p ≥ 2` PEs on a
    /// machine of `rows` rows: `p · heads` where `head_dim` is a multiple
    /// of `2p`.
    pub fn part_heights(heads: u32, head_dim: u32, rows: u32) -> Vec<u32> {
        (2..)
            .map_while(|p: u32| (heads > 0 && p.checked_mul(heads)? <= rows).then_some(p))
            .filter(|p| head_dim.is_multiple_of(2 * p))
            .map(|p| p * heads)
            .collect()
    }
    /// What cos and sin are scaled by: [`attention_factor`].
    pub fn attention_factor(&self) -> f32 {
        attention_factor(self.scaling)
    }
    /// The rotation frequencies, in f32: [`inv_freq`].
    pub fn inv_freq(&self) -> Vec<f32> {
        inv_freq(self.theta, self.head_dim, self.scaling)
    }
}

/// How RoPE's frequencies are stretched for contexts longer than training's.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RopeScaling {
    /// Every frequency divided by `factor`.
    Linear { factor: f32 },
    /// Llama 3.1's: wavelengths shorter than `original / high_freq_factor`
    /// keep their frequency, those longer than `original / low_freq_factor`
    /// are divided by `factor`, and the band between is interpolated.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original: f32,
    },
    /// YaRN (gpt-oss), as transformers computes it: each frequency a
    /// blend of itself (extrapolation) and itself over `factor`
    /// (interpolation), by a ramp between the dimensions that turn
    /// `beta_fast` and `beta_slow` times over `original` positions (the
    /// ramp's ends rounded outwards where `truncate`); cos and sin are
    /// then scaled by [`attention_factor`].
    Yarn {
        factor: f32,
        beta_fast: f32,
        beta_slow: f32,
        original: f32,
        truncate: bool,
    },
}

/// What RoPE's cos and sin are multiplied by: YaRN's `0.1 · ln(factor) +
/// 1` (1 for a factor of at most 1), else 1.
pub fn attention_factor(scaling: Option<RopeScaling>) -> f32 {
    match scaling {
        Some(RopeScaling::Yarn { factor, .. }) if factor > 1.0 => {
            (0.1 * (factor as f64).ln() + 1.0) as f32
        }
        _ => 1.0,
    }
}

/// YaRN's ramp over the frequencies (f64 where transformers computes in
/// Python floats): the dimension range `(low, high)`.
fn yarn_range(
    theta: f32,
    dim: u32,
    beta_fast: f32,
    beta_slow: f32,
    original: f32,
    truncate: bool,
) -> (f64, f64) {
    let (dim, base) = (dim as f64, theta as f64);
    let at = |rotations: f32| {
        dim * (original as f64 / (rotations as f64 * 2.0 * std::f64::consts::PI)).ln()
            / (2.0 * base.ln())
    };
    let (mut low, mut high) = (at(beta_fast), at(beta_slow));
    if truncate {
        (low, high) = (low.floor(), high.ceil());
    }
    (low.max(0.0), high.min(dim - 1.0))
}

/// Pair `i`'s frequency `θ^(−2i/d)`, scaled, in f32. The compiler's CPU
/// reference calls this too, so both rotate by the same angles.
pub fn inv_freq(theta: f32, head_dim: u32, scaling: Option<RopeScaling>) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            let pos_freq = theta.powf((2 * i) as f32 / head_dim as f32);
            let f = 1.0 / pos_freq;
            match scaling {
                None => f,
                Some(RopeScaling::Linear { factor }) => f / factor,
                Some(RopeScaling::Llama3 {
                    factor,
                    low_freq_factor: lo,
                    high_freq_factor: hi,
                    original,
                }) => {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen < original / hi {
                        f
                    } else if wavelen > original / lo {
                        f / factor
                    } else {
                        let smooth = (original / wavelen - lo) / (hi - lo);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                }
                Some(RopeScaling::Yarn {
                    factor,
                    beta_fast,
                    beta_slow,
                    original,
                    truncate,
                }) => {
                    let (low, high) =
                        yarn_range(theta, head_dim, beta_fast, beta_slow, original, truncate);
                    // transformers nudges an empty ramp open.
                    let span = if low == high {
                        high + 0.001 - low
                    } else {
                        high - low
                    };
                    let ramp = ((i as f32 - low as f32) / span as f32).clamp(0.0, 1.0);
                    let keep = 1.0 - ramp;
                    let interpolated = 1.0 / (factor * pos_freq);
                    interpolated * (1.0 - keep) + f * keep
                }
            }
        })
        .collect()
}

pub fn generate(s: &RopeSpec, arch: &Arch) -> Result<Fragment, KernelError> {
    generate_batch(s, 1, arch)
}

/// RoPE on `batch` positions at once (a prefill): each PE takes every
/// position's `[pos, its heads]`, one after another, and rotates and
/// sends them a position at a time. Ports `x`, `pos` and `y` hold the
/// positions one after another. One position is [`generate`]'s program.
pub fn generate_batch(s: &RopeSpec, batch: u32, arch: &Arch) -> Result<Fragment, KernelError> {
    if batch == 0 {
        return Err(KernelError::Shape(
            "a batched RoPE takes at least one position".into(),
        ));
    }
    if s.head_dim == 0 || !s.head_dim.is_multiple_of(2) || s.heads == 0 {
        return Err(KernelError::Shape(format!(
            "RoPE needs an even head dimension and at least one head (got {} heads of {})",
            s.heads, s.head_dim
        )));
    }
    let most = s.heads as u64 * (s.head_dim / 2) as u64;
    if s.h == 0 || s.h > arch.grid_rows || s.h as u64 > most {
        return Err(KernelError::Rect {
            w: 1,
            h: s.h,
            why: format!(
                "use 1..{} PEs (whole heads per PE up to {}, then parts of heads down to a pair each)",
                most.min(arch.grid_rows as u64),
                s.heads
            ),
        });
    }
    let pieces = if s.tall() { s.pieces() } else { Vec::new() };
    let parts = s.split();
    // Each PE's unit, and the most elements and pairs any PE holds.
    let unit = |r: u32| s.unit(&pieces, r);
    let widest = (0..s.h)
        .map(|r| parts[r as usize].1 * unit(r))
        .max()
        .unwrap_or(0);
    let half_most = (0..s.h).map(|r| unit(r) / 2).max().unwrap_or(0);
    let bytes = 4 * (batch as u64 * (1 + widest as u64) + 5 * half_most as u64) + 400;
    if bytes > arch.sram_bytes as u64 {
        return Err(KernelError::Rect {
            w: 1,
            h: s.h,
            why: format!(
                "{} heads per PE need about {bytes} bytes of SRAM; use more PEs",
                parts[0].1
            ),
        });
    }
    let inv_freq = s.inv_freq();
    let freqs = |r: u32| -> String {
        inv_freq[s.pairs(&pieces, r)]
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let batched = match batch {
        1 => String::new(),
        b => format!(", {b} positions"),
    };
    let mut src = format!(
        "; RoPE ({:?}) on {} heads of {} down a column of {} PEs{batched}\n.grid 1x{}\n",
        s.layout,
        s.heads,
        unit(0),
        s.h,
        s.h
    );
    // YaRN's attention factor on cos and sin.
    let scale = match s.attention_factor() {
        1.0 => String::new(),
        m => format!("  vfmul.f32 c, c, {m:?}\n  vfmul.f32 sn, sn, {m:?}\n"),
    };
    for (r, (_, nh)) in parts.iter().enumerate() {
        let d = unit(r as u32);
        let (half, len) = (d / 2, nh * d);
        let (stride, partner) = s.pairing(d);
        if batch > 1 {
            src.push_str(&batch_code(
                r,
                batch,
                len,
                (d, half),
                (stride, partner),
                &scale,
            ));
            continue;
        }
        writeln!(
            src,
            ".code p{r}
{head}{angles}  li r1, 1
{rotate}  blt r1, {end}, head
  vmov.f32 tx(c{CO}), inb[1, {len}]
  end
.end
.place p{r} 0,{r} 1x1",
            head = code_head(1 + len, half),
            angles = angles("0", &scale),
            rotate = rotate(d, half, stride, partner),
            end = 1 + len,
        )
        .unwrap();
    }
    writeln!(
        src,
        ".route 0,0 1x{} c{CA} W -> R\n.route 0,0 1x{} c{CO} R -> E",
        s.h, s.h
    )
    .unwrap();
    if s.tall() {
        for r in 0..s.h {
            writeln!(src, ".data ifq 0,{r} 1x1 = [{}]", freqs(r)).unwrap();
        }
    } else {
        writeln!(src, ".data ifq 0,0 1x{} = [{}]", s.h, freqs(0)).unwrap();
    }
    for (r, (_, nh)) in parts.iter().enumerate() {
        let len = nh * unit(r as u32);
        // Default data: each position's pos, then seeded values.
        let mut vals = Vec::new();
        for p in 0..batch {
            vals.push(format!("{:?}", (s.pos + p) as f32));
            vals.extend((0..len).map(|i| {
                format!(
                    "{:?}",
                    wafer_emulator::DataInit::Random { seed: 11 }
                        .value(Pe::new(0, r as u32), p * len + i)
                )
            }));
        }
        writeln!(
            src,
            ".input a{r} f32[{}] -> 0,{r} W c{CA} = [{}]",
            batch * (1 + len),
            vals.join(", ")
        )
        .unwrap();
        writeln!(src, ".output y{r} f32[{}] <- 0,{r} E c{CO}", batch * len).unwrap();
    }
    let program = crate::assemble(&src, "RoPE")?;
    // Position `p`'s part of each stream follows the earlier positions':
    // `[pos, units]` in, the units out; a unit's runs of `x` one after
    // another.
    let n = s.heads * s.head_dim;
    let runs = s.pe_runs();
    let port = |name: &str, stream: &str, len: u32, first: u32, per_pe: &dyn Fn(u32) -> u32| {
        let mut segments = Vec::new();
        for p in 0..batch {
            for (r, runs) in runs.iter().enumerate() {
                let mut at = p * per_pe(r as u32) + first;
                for &(offset, l) in runs {
                    segments.push(Segment {
                        stream: format!("{stream}{r}"),
                        offset: p * n + offset,
                        len: l,
                        at,
                    });
                    at += l;
                }
            }
        }
        TensorPort {
            name: name.into(),
            len: batch * len,
            segments,
        }
    };
    let units = |r: u32| parts[r as usize].1 * unit(r);
    let x = port("x", "a", n, 1, &|r| 1 + units(r));
    let pos = TensorPort {
        name: "pos".into(),
        len: batch,
        segments: (0..batch)
            .flat_map(|p| {
                (0..parts.len()).map(move |r| Segment {
                    stream: format!("a{r}"),
                    offset: p,
                    len: 1,
                    at: p * (1 + units(r as u32)),
                })
            })
            .collect(),
    };
    let y = port("y", "y", n, 0, &units);
    Ok(Fragment {
        program: program.into(),
        inputs: vec![x, pos],
        outputs: vec![y],
        state: Vec::new(),
    })
}

/// A PE's buffers (its `[pos, heads]` input of `n_in`, the frequencies,
/// cosines, sines and two temporaries of `half`) and the receive that
/// starts its task.
fn code_head(n_in: u32, half: u32) -> String {
    format!(
        "  .buffer inb f32[{n_in}]
  .buffer ifq f32[{half}]
  .buffer c f32[{half}]
  .buffer sn f32[{half}]
  .buffer t1 f32[{half}]
  .buffer t2 f32[{half}]
  .task main local active
main:
  vmov.f32 inb, rx(c{CA})
"
    )
}

/// PE `r`'s code in a batch: the one-position body in a loop over the
/// positions, r3 at the position's `[pos, heads]`, r4 at its end.
fn batch_code(
    r: usize,
    batch: u32,
    len: u32,
    (d, half): (u32, u32),
    (stride, partner): (u32, u32),
    scale: &str,
) -> String {
    let seg = 1 + len;
    format!(
        ".code p{r}
{head}  li r3, 0
position:
{angles}  add r1, r3, 1
  add r4, r3, {seg}
{rotate}  blt r1, r4, head
  add r5, r3, 1
  vmov.f32 tx(c{CO}), inb[r5, {len}]
  add r3, r3, {seg}
  blt r3, {n_in}, position
  end
.end
.place p{r} 0,{r} 1x1
",
        head = code_head(batch * seg, half),
        angles = angles("r3", scale),
        rotate = rotate(d, half, stride, partner),
        n_in = batch * seg,
    )
}

/// The angles of the position at `inb[at]`: `c` and `sn` the cosines and
/// sines of its frequencies, scaled by `scale`'s code (YaRN's attention
/// factor, or nothing).
fn angles(at: &str, scale: &str) -> String {
    format!(
        "  ldf f1, inb[{at}]
  vfmul.f32 c, ifq, f1
  vsin.f32 sn, c
  vcos.f32 c, c
{scale}"
    )
}

/// The loop body at `head` that rotates the pairs from `inb[r1]` (each
/// `half` elements `stride` apart, its partners `partner` after them)
/// and moves `r1` on by a head of `d`; the loop's test follows it.
fn rotate(d: u32, half: u32, stride: u32, partner: u32) -> String {
    format!(
        "head:
  add r2, r1, {partner}
  vfmul.f32 t1, inb[r1, {half}, {stride}], c
  vfmul.f32 t2, inb[r2, {half}, {stride}], sn
  vfsub.f32 t1, t1, t2
  vfmul.f32 t2, inb[r1, {half}, {stride}], sn
  vfmac.f32 t2, t2, inb[r2, {half}, {stride}], c
  vmov.f32 inb[r1, {half}, {stride}], t1
  vmov.f32 inb[r2, {half}, {stride}], t2
  add r1, r1, {d}
"
    )
}

/// [`generate_batch`]'s output: each position's [`reference`], one after
/// another.
pub fn reference_batch(s: &RopeSpec, inputs: &BTreeMap<String, Vec<f32>>, p: &Program) -> Vec<f32> {
    let n = (s.heads * s.head_dim) as usize;
    inputs["pos"]
        .iter()
        .enumerate()
        .flat_map(|(q, pos)| {
            let one = BTreeMap::from([
                ("x".to_string(), inputs["x"][q * n..(q + 1) * n].to_vec()),
                ("pos".to_string(), vec![*pos]),
            ]);
            reference(s, &one, p)
        })
        .collect()
}

/// The reference: the PEs' f32 operations in their order.
pub fn reference(s: &RopeSpec, inputs: &BTreeMap<String, Vec<f32>>, p: &Program) -> Vec<f32> {
    // The frequencies as the PEs hold them: all on each PE, or a head's
    // pieces on the PEs of the first head, in order.
    let ifq = |r: u32| p.initial_values(Pe::new(0, r), "ifq").expect("ifq exists");
    let first_head = match s.tall() {
        true => s.pieces().iter().take_while(|piece| piece.0 == 0).count() as u32,
        false => 1,
    };
    let freqs: Vec<f32> = (0..first_head).flat_map(ifq).collect();
    let pos = inputs["pos"][0];
    let (d, half) = (s.head_dim as usize, s.head_dim as usize / 2);
    let (stride, partner) = match s.layout {
        RopeLayout::Adjacent => (2, 1),
        RopeLayout::HalfSplit => (1, half),
    };
    let mut y = inputs["x"].clone();
    for head in y.chunks_mut(d) {
        for (i, freq) in freqs.iter().enumerate().take(half) {
            let angle = freq * pos;
            let (mut c, mut sn) = (angle.cos(), angle.sin());
            let m = s.attention_factor();
            if m != 1.0 {
                (c, sn) = (c * m, sn * m);
            }
            let (a, b) = (i * stride, i * stride + partner);
            let (even, odd) = (head[a], head[b]);
            head[a] = even * c - odd * sn;
            head[b] = even * sn + odd * c;
        }
    }
    y
}

/// Predicted cycles, per PE with [`Timeline`]: the stream `[pos, heads]`
/// is in the queue from `hop + ramp`; the angles (one multiply), their sine
/// and cosine (special functions); per head five f32 ops and two moves
/// (rates from the lanes and the ports; a strided pair element takes a
/// whole port access);
/// the heads go out at one wavelet per cycle.
pub fn cost(s: &RopeSpec, arch: &Arch) -> u64 {
    cost_batch(s, 1, arch)
}

/// [`generate_batch`]'s predicted cycles: as [`cost`], with every
/// position's stream in, an `li`, then per position the angles, two
/// `add`s, its heads, an `add`, the send, `add` and `blt`; the run ends
/// when the last position's last element reaches the host, or with the
/// PE's `end` after the loop, whichever is later.
pub fn cost_batch(s: &RopeSpec, batch: u32, arch: &Arch) -> u64 {
    let pieces = if s.tall() { s.pieces() } else { Vec::new() };
    (s.split().iter().enumerate())
        .map(|(r, (_, nh))| row_end(s, batch, arch, (s.unit(&pieces, r as u32), *nh), None))
        .max()
        .unwrap_or(0)
}

/// [`cost`] with the input arriving late: `pushed` holds, by stream name
/// (`a<r>`, PE `r`'s), the cycle each wavelet is pushed in (one not named
/// is unhindered). The PEs are apart, so each ends by its own input: the
/// run's end, and when each PE's output `y<r>`'s last wavelet leaves (a
/// cycle before it is at the host).
pub fn fed(
    s: &RopeSpec,
    arch: &Arch,
    pushed: &BTreeMap<String, Vec<u64>>,
) -> (u64, BTreeMap<String, u64>) {
    let pieces = if s.tall() { s.pieces() } else { Vec::new() };
    let leaves: BTreeMap<String, u64> = (s.split().iter().enumerate())
        .map(|(r, (_, nh))| {
            let p = pushed.get(&format!("a{r}")).map(Vec::as_slice);
            let unit = s.unit(&pieces, r as u32);
            (format!("y{r}"), row_end(s, 1, arch, (unit, *nh), p) - 1)
        })
        .collect();
    let end = leaves.values().map(|l| l + 1).max().unwrap_or(0);
    (end, leaves)
}

/// [`cost_batch`]'s derivation for one PE of `nh` units of `unit`, its input's
/// wavelets pushed in at the cycles `pushed` gives (element `k` at `k`
/// where `None`).
fn row_end(
    s: &RopeSpec,
    batch: u32,
    arch: &Arch,
    (unit, nh): (u32, u32),
    pushed: Option<&[u64]>,
) -> u64 {
    let (hop, ramp) = (arch.hop_latency as u64, arch.ramp_latency as u64);
    let half = unit / 2;
    let rate = |op, reads, writes| f32_rate(arch, op, reads, writes);
    let (mul, special, sub, send) = (
        rate(VecOp::Fmul, 1, 1),
        rate(VecOp::Sin, 1, 1),
        rate(VecOp::Fsub, 2, 1),
        rate(VecOp::Mov, 1, 0),
    );
    // The pair operands (`inb[r, half, stride]`) are strided with the
    // adjacent layout; a strided element takes a whole port access.
    let (contiguous, strided) = if s.pairing(unit).0 == 1 {
        (1, 0)
    } else {
        (0, 1)
    };
    // `t = pair · table`, `t2 = t2 + pair · table`, `pair = t`.
    let (mul2, fmac, mov) = (
        f32_rate_strided(arch, VecOp::Fmul, (1 + contiguous, strided), (1, 0)),
        f32_rate_strided(arch, VecOp::Fmac, (2 + contiguous, strided), (1, 0)),
        f32_rate_strided(arch, VecOp::Mov, (1, 0), (contiguous, strided)),
    );
    let len = nh * unit;
    let mut l = Timeline::start(arch);
    match pushed {
        Some(p) => l.receive_each(p.iter().map(|t| t + hop + ramp)),
        None => l.receive(batch * (1 + len), hop + ramp),
    }
    let position = |l: &mut Timeline, adds: u64| {
        l.scalar(1);
        l.vector(half, mul);
        l.vector(half, special);
        l.vector(half, special);
        if s.attention_factor() != 1.0 {
            l.vector(half, mul);
            l.vector(half, mul);
        }
        l.scalar(adds);
        for _ in 0..nh {
            l.scalar(1);
            for rt in [mul2, mul2, sub, mul2, fmac, mov, mov] {
                l.vector(half, rt);
            }
            l.scalar(2);
        }
    };
    if batch == 1 {
        position(&mut l, 1);
        return l.send(len, send) + len as u64 - 1 + ramp + hop;
    }
    l.scalar(1);
    let mut last = 0;
    for _ in 0..batch {
        position(&mut l, 2);
        l.scalar(1);
        last = l.send(len, send) + len as u64 - 1;
        l.scalar(2);
    }
    (last + ramp + hop).max(l.t + 1)
}
