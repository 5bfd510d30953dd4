//! A kernel's output: a Program for a rectangle of PEs, and how each logical
//! tensor is cut into the host streams at the rectangle's edges.
//!
//! Edge streams are the kernel's ports: run alone, the host feeds and drains
//! them; in a compiled model, the compiler replaces them with routes from
//! the previous kernel and to the next.

use std::collections::BTreeMap;
use std::sync::Arc;
use wafer_emulator::program::DataImage;
use wafer_emulator::{Arch, DataInit, Inputs, Pe, PeRect, Program, RunConfig, RunError, RunResult};

/// One piece of a tensor carried by one edge stream: tensor elements
/// `offset .. offset + len` are the stream's elements `at .. at + len`. A
/// stream may carry pieces of several tensors, and one piece may be sent
/// down several streams.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    pub stream: String,
    pub offset: u32,
    pub len: u32,
    pub at: u32,
}

/// A logical tensor (a vector here) and the streams that carry it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TensorPort {
    pub name: String,
    pub len: u32,
    pub segments: Vec<Segment>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Fragment {
    /// Shared between fragments that differ in nothing but where they run
    /// (a compiled model's stages of one kernel with the same data): a
    /// change copies it first ([`Arc::make_mut`]).
    pub program: Arc<Program>,
    pub inputs: Vec<TensorPort>,
    pub outputs: Vec<TensorPort>,
    /// Buffers the kernel keeps from one run to the next beyond those its
    /// data images fill (attention's KV cache, `kc` and `vc`): its state.
    /// Every other buffer without a data image is written before it is
    /// read within a run (checked by `Decoder::scramble_activations`).
    pub state: Vec<String>,
}

impl Fragment {
    /// This fragment holding `of`'s data images (weights, scales, tables)
    /// in place of its seeded ones: a prefill's batched program built
    /// from a compiled stage's one-position program, whose buffers it
    /// lays out alike.
    pub fn holding_data_of(mut self, of: &Fragment) -> Fragment {
        std::sync::Arc::make_mut(&mut self.program).data = of.program.data.clone();
        self
    }

    /// Whether `buffer` of its program holds state at `pe` (a data image
    /// fills it there, or the kernel keeps it from run to run) rather than
    /// a run's activations.
    pub fn is_state(&self, buffer: &str, pe: wafer_emulator::Pe) -> bool {
        self.state.iter().any(|s| s == buffer)
            || self
                .program
                .data
                .iter()
                .any(|d| d.buffer == buffer && d.pes.contains(pe))
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KernelError {
    #[error("{0}")]
    Shape(String),
    #[error("the rectangle {w}x{h} does not fit: {why}")]
    Rect { w: u32, h: u32, why: String },
    #[error("kernel needs {need} colors but only {have} were given")]
    Colors { need: usize, have: usize },
    #[error("kernel has no input tensor `{0}`")]
    NoInput(String),
    #[error("kernel has no output tensor `{0}`")]
    NoOutput(String),
    #[error("input `{name}` has {given} values, the kernel takes {takes}")]
    InputLength {
        name: String,
        given: usize,
        takes: u32,
    },
    /// A tensor port naming a stream its program lacks: a generator bug.
    #[error("internal: no stream `{0}`")]
    NoStream(String),
    /// Values to load (weights, a table) of the wrong count for the shape.
    #[error("{what} takes {takes} values, got {given}")]
    Length {
        what: String,
        takes: u64,
        given: usize,
    },
}

impl KernelError {
    /// `Ok` where `given` values are the `takes` that `what` (called only
    /// on a mismatch, to name the shape) needs.
    pub fn check_length(
        what: impl FnOnce() -> String,
        takes: u64,
        given: usize,
    ) -> Result<(), KernelError> {
        match given as u64 == takes {
            true => Ok(()),
            false => Err(KernelError::Length {
                what: what(),
                takes,
                given,
            }),
        }
    }
}

/// Parse a generator's assembly. A failure is a bug in the generator, not
/// in the caller's input, and says so.
pub fn assemble(src: &str, kernel: &str) -> Result<wafer_emulator::Program, KernelError> {
    wafer_emulator::asm::parse(src, &format!("<{kernel} generator>")).map_err(|e| {
        KernelError::Shape(format!(
            "internal: the generated {kernel} does not parse: {e}"
        ))
    })
}

impl TensorPort {
    /// A tensor carried whole by the stream of the same name.
    pub fn whole(name: &str, len: u32) -> TensorPort {
        TensorPort {
            name: name.into(),
            len,
            segments: vec![Segment {
                stream: name.into(),
                offset: 0,
                len,
                at: 0,
            }],
        }
    }
}

/// Cut `n` elements into `parts` nearly equal runs (the first `n % parts`
/// one longer): `(offset, len)` each.
pub fn split(n: u32, parts: u32) -> Vec<(u32, u32)> {
    let (base, extra) = (n / parts, n % parts);
    let mut off = 0;
    (0..parts)
        .map(|i| {
            let len = base + u32::from(i < extra);
            let r = (off, len);
            off += len;
            r
        })
        .collect()
}

impl Fragment {
    /// The colors the fragment uses (its logical colors, from 0 up).
    pub fn colors(&self) -> Vec<u8> {
        let mut used = std::collections::BTreeSet::new();
        let p = &self.program;
        used.extend(p.routes.iter().map(|r| r.color.0));
        used.extend(p.inputs.iter().chain(&p.outputs).map(|h| h.color.0));
        for code in &p.codes {
            for t in &code.tasks {
                if let wafer_emulator::program::TaskKind::Data(c) = t.kind {
                    used.insert(c.0);
                }
            }
            for inst in &code.insts {
                if let wafer_emulator::isa::Inst::Vec(v) = inst {
                    for o in std::iter::once(&v.dst).chain(&v.srcs) {
                        if let wafer_emulator::isa::Operand::FabIn { color, .. }
                        | wafer_emulator::isa::Operand::FabOut { color, .. } = o
                        {
                            used.insert(color.0);
                        }
                    }
                }
            }
        }
        used.into_iter().collect()
    }

    /// The same fragment on the caller's colors: logical color `c` becomes
    /// `colors[c]`. A compiler placing kernels side by side gives each its
    /// own colors this way.
    pub fn with_colors(mut self, colors: &[u8]) -> Result<Fragment, KernelError> {
        use wafer_emulator::Color;
        use wafer_emulator::isa::{Inst, Operand};
        let need = self.colors().last().map_or(0, |c| *c as usize + 1);
        if colors.len() < need {
            return Err(KernelError::Colors {
                need,
                have: colors.len(),
            });
        }
        if (1..colors.len()).any(|i| colors[..i].contains(&colors[i])) {
            return Err(KernelError::Shape(format!(
                "the colors {colors:?} repeat one; each must be distinct"
            )));
        }
        let map = |c: &mut Color| c.0 = colors[c.0 as usize];
        let p = Arc::make_mut(&mut self.program);
        p.routes.iter_mut().for_each(|r| map(&mut r.color));
        p.inputs
            .iter_mut()
            .chain(p.outputs.iter_mut())
            .for_each(|h| map(&mut h.color));
        for code in &mut p.codes {
            for t in &mut code.tasks {
                if let wafer_emulator::program::TaskKind::Data(c) = &mut t.kind {
                    map(c);
                }
            }
            for inst in &mut code.insts {
                if let Inst::Vec(v) = inst {
                    for o in std::iter::once(&mut v.dst).chain(v.srcs.iter_mut()) {
                        if let Operand::FabIn { color, .. } | Operand::FabOut { color, .. } = o {
                            map(color);
                        }
                    }
                }
            }
        }
        wafer_emulator::verify(p).map_err(|e| {
            KernelError::Shape(format!("internal: recoloured fragment is invalid: {e}"))
        })?;
        Ok(self)
    }

    /// Replace buffer `name`'s initial contents on the PEs listed (real
    /// weights instead of the generator's seeded ones): one data image per
    /// PE, after dropping the buffer's previous images.
    pub fn load(&mut self, name: &str, per_pe: Vec<(Pe, Vec<f32>)>) {
        let p = Arc::make_mut(&mut self.program);
        p.data.retain(|d| d.buffer != name);
        p.data.extend(per_pe.into_iter().map(|(pe, v)| DataImage {
            pes: PeRect::single(pe),
            buffer: name.to_string(),
            init: DataInit::Values(v),
        }));
    }

    /// Host inputs for the given tensors (missing ones keep the program's
    /// default stream data).
    pub fn stream_inputs(
        &self,
        tensors: &BTreeMap<String, Vec<f32>>,
    ) -> Result<Inputs, KernelError> {
        let mut out = Inputs::new();
        for (name, values) in tensors {
            let port = self
                .inputs
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| KernelError::NoInput(name.clone()))?;
            if values.len() != port.len as usize {
                return Err(KernelError::InputLength {
                    name: name.clone(),
                    given: values.len(),
                    takes: port.len,
                });
            }
            for s in &port.segments {
                let stream = self
                    .program
                    .inputs
                    .iter()
                    .find(|h| h.name == s.stream)
                    .ok_or_else(|| KernelError::NoStream(s.stream.clone()))?;
                let buf = out.entry(s.stream.clone()).or_insert_with(|| {
                    self.program
                        .input_values(&stream.name)
                        .expect("stream exists")
                });
                buf[s.at as usize..(s.at + s.len) as usize]
                    .copy_from_slice(&values[s.offset as usize..(s.offset + s.len) as usize]);
            }
        }
        Ok(out)
    }

    /// A tensor's values gathered from host streams (outputs of a run, or
    /// for an input the program's default stream data).
    pub fn gather(&self, port: &TensorPort, streams: &BTreeMap<String, Vec<f32>>) -> Vec<f32> {
        let mut v = vec![0.0; port.len as usize];
        for s in &port.segments {
            if let Some(vals) = streams.get(&s.stream) {
                v[s.offset as usize..(s.offset + s.len) as usize]
                    .copy_from_slice(&vals[s.at as usize..(s.at + s.len) as usize]);
            }
        }
        v
    }

    /// When each element of output tensor `port` left the grid, from a
    /// run's [`RunResult::output_times`]: its stream's wavelet's cycle
    /// (`None` where a segment's stream is not among them).
    pub fn element_times(
        &self,
        port: &TensorPort,
        times: &BTreeMap<String, Vec<u64>>,
    ) -> Option<Vec<u64>> {
        let mut t = vec![0; port.len as usize];
        for s in &port.segments {
            let per = self.stream_dtype(&s.stream)?.per_word();
            let w = times.get(&s.stream)?;
            for i in 0..s.len {
                t[(s.offset + i) as usize] = *w.get(((s.at + i) / per) as usize)?;
            }
        }
        Some(t)
    }

    /// Host input arrivals for input tensors whose elements reach the
    /// grid at the given cycles (per tensor, a cycle per element): each
    /// wavelet of a stream arrives with the latest of its elements. A
    /// stream's elements no tensor given names arrive at cycle 0.
    pub fn arrivals(
        &self,
        tensors: &BTreeMap<String, Vec<u64>>,
    ) -> Result<wafer_emulator::Arrivals, KernelError> {
        let p = &self.program;
        self.latest_per_wavelet(tensors, &self.inputs, &p.inputs, "arrival", |name| {
            KernelError::NoInput(name)
        })
    }

    /// Host output departures for output tensors whose elements may leave
    /// the grid no earlier than the given cycles (per tensor, a cycle per
    /// element): each wavelet of a stream leaves no earlier than the
    /// latest of its elements. A stream's elements no tensor given names
    /// may leave at any cycle.
    pub fn departures(
        &self,
        tensors: &BTreeMap<String, Vec<u64>>,
    ) -> Result<wafer_emulator::Departures, KernelError> {
        let p = &self.program;
        self.latest_per_wavelet(tensors, &self.outputs, &p.outputs, "departure", |name| {
            KernelError::NoOutput(name)
        })
    }

    /// Per host stream of the tensors named in `tensors` (among `ports`,
    /// whose streams are `streams`), a cycle per wavelet: the latest of
    /// its elements' (0 for a wavelet none of them is in).
    fn latest_per_wavelet(
        &self,
        tensors: &BTreeMap<String, Vec<u64>>,
        ports: &[TensorPort],
        streams: &[wafer_emulator::program::HostStream],
        what: &str,
        missing: impl Fn(String) -> KernelError,
    ) -> Result<BTreeMap<String, Vec<u64>>, KernelError> {
        let mut out = BTreeMap::new();
        for (name, times) in tensors {
            let port = (ports.iter())
                .find(|p| &p.name == name)
                .ok_or_else(|| missing(name.clone()))?;
            if times.len() != port.len as usize {
                return Err(KernelError::Length {
                    what: format!("the {what} cycles of `{name}`"),
                    takes: port.len as u64,
                    given: times.len(),
                });
            }
            for s in &port.segments {
                let stream = (streams.iter())
                    .find(|h| h.name == s.stream)
                    .ok_or_else(|| KernelError::NoStream(s.stream.clone()))?;
                let per = stream.dtype.per_word();
                let w = out
                    .entry(s.stream.clone())
                    .or_insert_with(|| vec![0; stream.wavelets() as usize]);
                for i in 0..s.len {
                    let k = ((s.at + i) / per) as usize;
                    w[k] = w[k].max(times[(s.offset + i) as usize]);
                }
            }
        }
        Ok(out)
    }

    /// Each element of tensor `port` (one of its inputs or outputs) as its
    /// host stream's name and the index of the wavelet that carries it in
    /// that stream (`None` where a segment names no stream of the program).
    pub fn element_wavelets<'a>(&self, port: &'a TensorPort) -> Option<Vec<(&'a str, u32)>> {
        let mut w = vec![("", 0); port.len as usize];
        for s in &port.segments {
            let per = self.stream_dtype(&s.stream)?.per_word();
            for i in 0..s.len {
                *w.get_mut((s.offset + i) as usize)? = (s.stream.as_str(), (s.at + i) / per);
            }
        }
        Some(w)
    }

    fn stream_dtype(&self, name: &str) -> Option<wafer_emulator::DType> {
        let p = &self.program;
        (p.outputs.iter().chain(&p.inputs))
            .find(|h| h.name == name)
            .map(|h| h.dtype)
    }

    /// The default value of each input tensor (the program's seeded stream data).
    pub fn default_inputs(&self) -> BTreeMap<String, Vec<f32>> {
        let streams: BTreeMap<String, Vec<f32>> = self
            .program
            .inputs
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    self.program.input_values(&s.name).expect("stream exists"),
                )
            })
            .collect();
        self.inputs
            .iter()
            .map(|p| (p.name.clone(), self.gather(p, &streams)))
            .collect()
    }

    /// Run on the emulator; returns the output tensors and the run.
    pub fn run(
        &self,
        arch: &Arch,
        tensors: &BTreeMap<String, Vec<f32>>,
        cfg: &RunConfig,
    ) -> Result<(BTreeMap<String, Vec<f32>>, RunResult), RunError> {
        let inputs = self.stream_inputs(tensors).map_err(|e| RunError::Input {
            name: "tensor".into(),
            message: e.to_string(),
        })?;
        let r = wafer_emulator::run(&self.program, arch, &inputs, cfg)?;
        let outs = self
            .outputs
            .iter()
            .map(|p| (p.name.clone(), self.gather(p, &r.outputs)))
            .collect();
        Ok((outs, r))
    }
}

/// A port of `batch` positions, one after another: position `p`'s part
/// `i` (`parts[i]`: offset and length in one position's `len` values)
/// follows the earlier positions' on stream `{prefix}{i}`.
pub fn positions_port(
    name: &str,
    prefix: &str,
    parts: &[(u32, u32)],
    len: u32,
    batch: u32,
) -> TensorPort {
    TensorPort {
        name: name.into(),
        len: batch * len,
        segments: (0..batch)
            .flat_map(|p| {
                parts.iter().enumerate().map(move |(i, (off, l))| Segment {
                    stream: format!("{prefix}{i}"),
                    offset: p * len + off,
                    len: *l,
                    at: p * l,
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_everything_once() {
        assert_eq!(split(10, 4), vec![(0, 3), (3, 3), (6, 2), (8, 2)]);
        assert_eq!(split(4, 4), vec![(0, 1), (1, 1), (2, 1), (3, 1)]);
    }
}
