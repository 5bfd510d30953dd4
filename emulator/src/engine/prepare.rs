//! A program made ready to run on one machine: checked and laid out once,
//! with the JIT engine's compiled code kept beside it (built by its first
//! JIT run) rather than inside the [`Program`], as Cranelift keeps
//! compiled code beside the function it came from. A caller that runs the
//! same program many times (the decoder, a stage per step) prepares it
//! once; [`super::run`] prepares and runs in one call.
//!
//! What is prepared is the program less its data values: a program whose
//! code, placements, routes, streams and data images (their sites and
//! buffers, and the length of an explicit image) are the same runs on the
//! same preparation with other values in its images (the layers of a model
//! are such programs).

use super::{Inputs, Memory, RunConfig, RunError, RunResult, jit, machine, sram};
use crate::check::{Layout, check};
use crate::program::DataInit;
use crate::{Arch, PeRect, Program};
use std::sync::{Arc, Mutex};

pub struct Prepared {
    arch: Arch,
    layout: Layout,
    /// The program it was prepared from, less its data images.
    skeleton: Program,
    /// The data images' sites, buffers and explicit lengths.
    images: Vec<(PeRect, String, Option<usize>)>,
    /// The JIT engine's compiled code, once a JIT run has built it.
    jit: Mutex<Option<Arc<jit::Compiled>>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "Prepared({}x{} on {})",
            self.skeleton.width, self.skeleton.height, self.arch.name
        )
    }
}

/// Check `p` against `arch` (the verifier, then what the machine can hold)
/// and lay it out.
pub fn prepare(p: &Program, arch: &Arch) -> Result<Prepared, RunError> {
    let layout = check(p, arch)?;
    Ok(Prepared {
        arch: arch.clone(),
        layout,
        skeleton: skeleton(p),
        images: images(p),
        jit: Mutex::new(None),
    })
}

/// `p` without its data images (cheap to keep and compare).
fn skeleton(p: &Program) -> Program {
    Program {
        width: p.width,
        height: p.height,
        codes: p.codes.clone(),
        placements: p.placements.clone(),
        routes: p.routes.clone(),
        data: Vec::new(),
        inputs: p.inputs.clone(),
        outputs: p.outputs.clone(),
    }
}

/// What the checks saw of `p`'s data images: where each goes, and how many
/// values an explicit image holds (the verifier checks that count; a
/// generated image's seed or fill value it does not look at).
fn images(p: &Program) -> Vec<(PeRect, String, Option<usize>)> {
    p.data
        .iter()
        .map(|d| {
            let len = match &d.init {
                DataInit::Values(v) => Some(v.len()),
                _ => None,
            };
            (d.pes, d.buffer.clone(), len)
        })
        .collect()
}

impl Prepared {
    /// The machine it was prepared for.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Run `p` (the program prepared, or one differing only in its data
    /// values) from its initial SRAM.
    pub fn run(
        &self,
        p: &Program,
        inputs: &Inputs,
        cfg: &RunConfig,
    ) -> Result<RunResult, RunError> {
        self.same(p)?;
        machine::run(self, p, inputs, cfg, None)
    }

    /// Run `p` again from the SRAM a previous run of it left (weights, a KV
    /// cache): what a wafer keeps between invocations.
    pub fn run_resume(
        &self,
        p: &Program,
        inputs: &Inputs,
        cfg: &RunConfig,
        memory: Memory,
    ) -> Result<RunResult, RunError> {
        self.same(p)?;
        machine::run(self, p, inputs, cfg, Some(memory))
    }

    /// Each PE's SRAM as `p` starts it, built on `threads` workers.
    pub fn initial_memory(&self, p: &Program, threads: usize) -> Result<Memory, RunError> {
        self.same(p)?;
        Ok(sram::sram_images(p, &self.layout, threads))
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The JIT engine's compiled code: built on the first call, then shared.
    pub(crate) fn jit(&self) -> Result<Arc<jit::Compiled>, RunError> {
        let err = |message: String| RunError::Input {
            name: "(program)".into(),
            message,
        };
        let mut slot = self
            .jit
            .lock()
            .map_err(|_| err("the JIT's compiled code is poisoned by a panic".into()))?;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = jit::compile(&self.skeleton).map_err(err)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// `p` is the program prepared, but for its data values.
    fn same(&self, p: &Program) -> Result<(), RunError> {
        let s = &self.skeleton;
        let same = p.width == s.width
            && p.height == s.height
            && p.codes == s.codes
            && p.placements == s.placements
            && p.routes == s.routes
            && p.inputs == s.inputs
            && p.outputs == s.outputs
            && p.data.len() == self.images.len()
            && images(p) == self.images;
        if same {
            Ok(())
        } else {
            Err(RunError::Input {
                name: "(program)".into(),
                message: "not the program this was prepared for (only data values may differ); prepare it".into(),
            })
        }
    }
}
