//! The Program: the contract between the compiler and the emulator.
//!
//! Per-PE code (shared by every PE it is placed on), data images, router
//! tables and the host I/O map. Everything covering many PEs is stated once
//! for a [`PeRect`], so a program over a 750 × 994 rectangle holds its code
//! once, not 745,500 times.

use crate::isa::Inst;
use crate::{Color, DType, Pe, PeRect, Port, PortSet};
use serde::{Deserialize, Serialize};

/// Whether `s` can name a code, buffer, task, label or host stream: what
/// the assembly's identifiers allow (a letter or `_`, then letters, digits,
/// `_` or `.`; a leading `.` is a directive's), so every verified program
/// prints as assembly that parses back.
pub fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.')
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// Columns of the program rectangle (anchored at PE(0,0)).
    pub width: u32,
    /// Rows of the program rectangle.
    pub height: u32,
    pub codes: Vec<PeCode>,
    /// Which code runs where; a PE is in at most one placement. PEs with
    /// none only route.
    pub placements: Vec<Placement>,
    pub routes: Vec<RouteRule>,
    pub data: Vec<DataImage>,
    pub inputs: Vec<HostStream>,
    pub outputs: Vec<HostStream>,
}

/// Code shared by every PE it is placed on: buffers (its SRAM layout), tasks
/// and instructions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeCode {
    pub name: String,
    pub buffers: Vec<Buffer>,
    pub tasks: Vec<Task>,
    pub insts: Vec<Inst>,
    /// Label names at instruction indices, in index order (debug info that
    /// the assembly prints; branch targets always carry one).
    pub labels: Vec<(u32, String)>,
}

/// A named array in SRAM at a byte offset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Buffer {
    pub name: String,
    pub dtype: DType,
    pub len: u32,
    pub offset: u32,
}

impl Buffer {
    /// Its size in bytes; saturates at `u32::MAX` (the verifier refuses a
    /// buffer that does not end within 4 GiB, so no checked program does).
    pub fn bytes(&self) -> u32 {
        self.wide_bytes().min(u32::MAX as u64) as u32
    }
    /// Its size in bytes, whole (two 4-bit elements to a byte).
    fn wide_bytes(&self) -> u64 {
        (self.len as u64 * self.dtype.bits() as u64).div_ceil(8)
    }
    pub fn end(&self) -> u32 {
        self.offset.saturating_add(self.bytes())
    }
    /// Whether it ends within a 32-bit address space.
    pub fn fits_addresses(&self) -> bool {
        self.offset as u64 + self.wide_bytes() <= u32::MAX as u64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    /// Runs once per wavelet arriving on the color; the wavelet's bits are
    /// in `r0` and `f0` when it starts.
    Data(Color),
    /// Runs when activated.
    Local,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub name: String,
    pub kind: TaskKind,
    /// Index of the first instruction.
    pub entry: u32,
    /// A local task activated at start.
    pub active: bool,
    /// Blocked at start: not picked until unblocked.
    pub blocked: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeId(pub u32);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub code: CodeId,
    pub pes: PeRect,
}

/// At every PE in `pes`, a wavelet of `color` arriving on `input` leaves on
/// every port of `outputs` (multicast).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteRule {
    pub pes: PeRect,
    pub color: Color,
    pub input: Port,
    pub outputs: PortSet,
}

/// Initial contents of a named buffer on every PE in `pes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataImage {
    pub pes: PeRect,
    pub buffer: String,
    pub init: DataInit,
}

/// How initial values are made. `Random` is a pure function of the seed, the
/// PE and the index, so tests can recompute it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataInit {
    Zero,
    Fill(f32),
    /// `start + i·step`.
    Iota {
        start: f32,
        step: f32,
    },
    /// Uniform in [-1, 1) with 2^-23 resolution.
    Random {
        seed: u64,
    },
    Values(Vec<f32>),
    /// Integers uniform in `[-max, max]` (quantized codes), `max ≤ 2^24`.
    RandomInt {
        seed: u64,
        max: u32,
    },
}

impl DataInit {
    /// Element `i` at `pe`, before rounding to the buffer's dtype.
    pub fn value(&self, pe: Pe, i: u32) -> f32 {
        match self {
            DataInit::Zero => 0.0,
            DataInit::Fill(v) => *v,
            DataInit::Iota { start, step } => start + i as f32 * step,
            DataInit::Random { seed } => DataInit::random(*seed, pe, i),
            DataInit::RandomInt { seed, max } => {
                let span = 2 * *max as u64 + 1;
                (random_bits(*seed, pe, i) % span) as f32 - *max as f32
            }
            DataInit::Values(v) => v.get(i as usize).copied().unwrap_or(0.0),
        }
    }

    /// [`DataInit::Random`]'s element `i` at `pe`.
    #[inline]
    pub fn random(seed: u64, pe: Pe, i: u32) -> f32 {
        (random_bits(seed, pe, i) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// The first `len` values at `pe`, rounded to `dtype`.
    pub fn values(&self, pe: Pe, len: u32, dtype: DType) -> Vec<f32> {
        // The kind matched once, not per element: a GEMV's reference reads
        // every PE's weights back through here.
        match self {
            DataInit::Values(v) => (0..len as usize)
                .map(|i| dtype.round(v.get(i).copied().unwrap_or(0.0)))
                .collect(),
            DataInit::Random { seed } => (0..len)
                .map(|i| dtype.round(DataInit::random(*seed, pe, i)))
                .collect(),
            _ => (0..len).map(|i| dtype.round(self.value(pe, i))).collect(),
        }
    }
}

/// 64 random bits, a pure function of the seed, the PE and the index.
#[inline]
fn random_bits(seed: u64, pe: Pe, i: u32) -> u64 {
    splitmix64(seed ^ splitmix64(((pe.x as u64) << 40) ^ ((pe.y as u64) << 20) ^ i as u64))
}

#[inline]
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A host stream through an edge PE's off-grid port: host → PE for inputs,
/// PE → host for outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostStream {
    pub name: String,
    pub dtype: DType,
    /// Elements in the stream.
    pub len: u32,
    pub pe: Pe,
    pub port: Port,
    pub color: Color,
    /// Host link bandwidth: one wavelet every `period` cycles.
    pub period: u32,
    /// Default data for an input (replaced by `--input NAME=FILE`).
    pub init: DataInit,
}

impl HostStream {
    pub fn wavelets(&self) -> u32 {
        self.len.div_ceil(self.dtype.per_word())
    }
}

impl PeCode {
    /// Bytes of SRAM the instructions take; code sits at offset 0.
    pub fn code_bytes(&self) -> u32 {
        self.insts.iter().map(Inst::encoded_bytes).sum()
    }

    /// End of the highest buffer or of the code: the SRAM this code needs.
    pub fn sram_bytes(&self) -> u32 {
        self.buffers
            .iter()
            .map(Buffer::end)
            .fold(self.code_bytes(), u32::max)
    }

    pub fn buffer(&self, name: &str) -> Option<usize> {
        self.buffers.iter().position(|b| b.name == name)
    }

    pub fn task(&self, name: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t.name == name)
    }

    pub fn label_at(&self, idx: u32) -> Option<&str> {
        self.labels
            .iter()
            .find(|(i, _)| *i == idx)
            .map(|(_, n)| n.as_str())
    }

    /// Lay out buffers without an offset (`u32::MAX`) after the code and
    /// any placed buffers, 4-byte aligned, in declaration order.
    pub fn assign_offsets(&mut self) {
        let mut next = self
            .buffers
            .iter()
            .filter(|b| b.offset != u32::MAX)
            .map(Buffer::end)
            .fold(self.code_bytes(), u32::max);
        for b in self.buffers.iter_mut().filter(|b| b.offset == u32::MAX) {
            next = next.next_multiple_of(4);
            b.offset = next;
            next += b.bytes();
        }
    }
}

impl Program {
    /// The code placed at `pe`, if any (first matching placement).
    pub fn code_at(&self, pe: Pe) -> Option<&PeCode> {
        self.placements
            .iter()
            .find(|p| p.pes.contains(pe))
            .map(|p| &self.codes[p.code.0 as usize])
    }

    pub fn n_pes(&self) -> u64 {
        self.width as u64 * self.height as u64
    }

    /// PEs that run a code: the ones whose cycles the emulator steps
    /// (the rest of the rectangle only routes, or is idle).
    pub fn placed_pes(&self) -> u64 {
        self.placements.iter().map(|pl| pl.pes.count()).sum()
    }

    /// Initial values of buffer `name` at `pe` (later data images win), as
    /// the engine loads them.
    pub fn initial_values(&self, pe: Pe, name: &str) -> Option<Vec<f32>> {
        let code = self.code_at(pe)?;
        let buf = &code.buffers[code.buffer(name)?];
        let init = self
            .data
            .iter()
            .rev()
            .find(|d| d.buffer == name && d.pes.contains(pe));
        Some(match init {
            Some(d) => d.init.values(pe, buf.len, buf.dtype),
            None => vec![0.0; buf.len as usize],
        })
    }

    /// An input stream's default values, rounded to its dtype.
    pub fn input_values(&self, name: &str) -> Option<Vec<f32>> {
        let s = self.inputs.iter().find(|s| s.name == name)?;
        Some(s.init.values(s.pe, s.len, s.dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::DataInit;
    use crate::{DType, Pe};

    /// An image's values, matched once per image, are its elements one by
    /// one, rounded: every kind of image, an explicit one shorter than the
    /// buffer included.
    #[test]
    fn values_are_the_elements_rounded() {
        let inits = [
            DataInit::Zero,
            DataInit::Fill(0.1),
            DataInit::Iota {
                start: 1.0,
                step: -0.3,
            },
            DataInit::Random { seed: 9 },
            DataInit::RandomInt { seed: 4, max: 7 },
            DataInit::Values(vec![0.1, -2.5e-3, f32::NAN, 1.0e9]),
        ];
        let at = Pe::new(3, 2);
        for dtype in [DType::F32, DType::F16, DType::BF16, DType::I8, DType::Mxfp4] {
            for init in &inits {
                let want: Vec<u32> = (0..11)
                    .map(|i| dtype.round(init.value(at, i)).to_bits())
                    .collect();
                let got: Vec<u32> = init
                    .values(at, 11, dtype)
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                assert_eq!(got, want, "{dtype:?} from {init:?}");
            }
        }
    }
}
