//! Decoding on the emulated wafer: each step runs every stage's kernel on
//! the emulator, in order, with the values the earlier stages produced.
//!
//! The attention stages keep their SRAM between steps (the KV cache lives
//! there, as on the wafer); every other stage starts from its program's
//! image, which holds the weights. A step's cycles are the sum of the
//! stages' emulated cycles and their modelled hand-offs
//! ([`crate::route`]).

use crate::codegen::Compiled;
use crate::place::Kernel;
use crate::stage::Src;
use std::collections::BTreeMap;
use wafer_emulator::{Memory, RunConfig, RunError};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("step at position {pos}, stage `{stage}`: {source}")]
    Run {
        pos: u32,
        stage: String,
        source: Box<RunError>,
    },
    #[error(
        "position {pos} is past the {max} positions the KV cache was compiled for; compile with a larger --max-context"
    )]
    Context { pos: u32, max: u32 },
    #[error("interrupted at position {pos}")]
    Interrupted { pos: u32 },
    #[error("token {token} is outside the vocabulary of {vocab}")]
    Token { token: u32, vocab: usize },
}

/// One decode step's results.
#[derive(Clone, Debug)]
pub struct Step {
    /// The wafer's argmax of the logits.
    pub next: u32,
    pub logits: Vec<f32>,
    /// Emulated cycles per stage, and the step's total (with hand-offs).
    pub stage_cycles: Vec<u64>,
    pub cycles: u64,
}

/// A model on the emulated wafer, with its KV cache.
pub struct Decoder<'c> {
    pub compiled: &'c Compiled,
    memory: Vec<Option<Memory>>,
    pub pos: u32,
    cfg: RunConfig,
}

fn cancelled(cfg: &RunConfig) -> bool {
    cfg.cancel
        .as_ref()
        .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
}

impl<'c> Decoder<'c> {
    pub fn new(compiled: &'c Compiled) -> Decoder<'c> {
        Decoder {
            compiled,
            memory: vec![None; compiled.stages.len()],
            pos: 0,
            cfg: RunConfig {
                engine: wafer_emulator::Engine::Jit,
                ..RunConfig::default()
            },
        }
    }

    /// Which engine steps the stages (the JIT engine unless told
    /// otherwise; all give the same results and cycles).
    pub fn engine(&mut self, engine: wafer_emulator::Engine) {
        self.cfg.engine = engine;
    }

    /// Worker threads for the JIT engine (see [`RunConfig::threads`]).
    pub fn threads(&mut self, n: usize) {
        self.cfg.threads = n;
    }

    /// Timing-only decoding: every stage runs without values or weights
    /// (see [`RunConfig::timing_only`]); the cycles are a functional run's,
    /// the logits NaN and the token fed back 0. Nothing is kept between
    /// steps: the KV cache's contents do not change any timing.
    pub fn timing_only(&mut self, on: bool) {
        self.cfg.timing_only = on;
    }

    /// Stop at the next check (between stages, and within a stage's run)
    /// once `flag` is set: what Ctrl-C does.
    pub fn cancel_on(&mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.cfg.cancel = Some(flag);
    }

    /// Run the step for `token` at the current position, then advance.
    pub fn step(&mut self, token: u32) -> Result<Step, DecodeError> {
        let c = self.compiled;
        if self.pos >= c.options.max_context {
            return Err(DecodeError::Context {
                pos: self.pos,
                max: c.options.max_context,
            });
        }
        if token as usize >= c.config.vocab_size {
            return Err(DecodeError::Token {
                token,
                vocab: c.config.vocab_size,
            });
        }
        let arch = &c.options.arch;
        let mut values: Vec<Option<Vec<f32>>> = vec![None; c.graph.insts.len()];
        for (i, inst) in c.graph.insts.iter().enumerate() {
            match inst.op {
                crate::ir::Op::Token => values[i] = Some(vec![token as f32]),
                crate::ir::Op::Position => values[i] = Some(vec![self.pos as f32]),
                _ => {}
            }
        }
        let mut stage_cycles = Vec::with_capacity(c.stages.len());
        let mut next = 0;
        let mut total = 0;
        for (i, (stage, f)) in c.stages.iter().zip(&c.fragments).enumerate() {
            let mut tensors = BTreeMap::new();
            for (port, srcs) in &stage.inputs {
                let mut v = Vec::new();
                for s in srcs {
                    match s {
                        Src::Pos => v.push(self.pos as f32),
                        Src::One => v.push(1.0),
                        Src::Value(x) => {
                            v.extend_from_slice(values[*x].as_ref().expect("verified order"))
                        }
                    }
                }
                tensors.insert(port.clone(), v);
            }
            if cancelled(&self.cfg) {
                return Err(DecodeError::Interrupted { pos: self.pos });
            }
            let err = |source| match source {
                RunError::Interrupted { .. } => DecodeError::Interrupted { pos: self.pos },
                source => DecodeError::Run {
                    pos: self.pos,
                    stage: stage.name.clone(),
                    source: Box::new(source),
                },
            };
            let inputs = f.stream_inputs(&tensors).map_err(|m| {
                err(RunError::Input {
                    name: stage.name.clone(),
                    message: m,
                })
            })?;
            let keep = !self.cfg.timing_only && matches!(c.sites[i].kernel, Kernel::Attention(_));
            let r = match self.memory[i].take() {
                Some(mem) => wafer_emulator::run_resume(&f.program, arch, &inputs, &self.cfg, mem),
                None => wafer_emulator::run(&f.program, arch, &inputs, &self.cfg),
            }
            .map_err(err)?;
            let out = f.gather(&f.outputs[0], &r.outputs);
            stage_cycles.push(r.cycles);
            total += r.cycles + c.routing.handoffs[i].cycles;
            if keep {
                self.memory[i] = Some(r.memory);
            }
            if stage.outputs.is_empty() {
                // NaN (timing-only: unknown) saturates to token 0.
                next = out[0] as u32;
            } else {
                let mut at = 0;
                for v in &stage.outputs {
                    let n = c.graph.insts[*v].len;
                    values[*v] = Some(out[at..at + n].to_vec());
                    at += n;
                }
            }
        }
        self.pos += 1;
        Ok(Step {
            next,
            logits: values[c.graph.ret].take().expect("the classifier ran"),
            stage_cycles,
            cycles: total,
        })
    }
}

/// Picks the next token from the logits (sampling on the host).
pub type Sampler<'a> = dyn FnMut(&[f32]) -> u32 + 'a;

/// Greedy decoding as llama2.c's run.c: from BOS, force the prompt, then
/// take the wafer's argmax (or, with `sample`, the host's pick from the
/// logits); stop after `steps` positions or at BOS. Calls `each` per step
/// with the token emitted and the step.
pub fn generate(
    d: &mut Decoder,
    prompt: &[u32],
    steps: usize,
    mut sample: Option<&mut Sampler<'_>>,
    mut each: impl FnMut(u32, &Step),
) -> Result<Vec<u32>, DecodeError> {
    let mut token = crate::tokenizer::BOS;
    let mut out = Vec::new();
    let limit = steps.min(d.compiled.options.max_context as usize);
    for pos in 0..limit {
        let step = d.step(token)?;
        let next = if pos < prompt.len() {
            prompt[pos]
        } else if let Some(f) = sample.as_mut() {
            f(&step.logits)
        } else {
            step.next
        };
        each(next, &step);
        if next == crate::tokenizer::BOS {
            break;
        }
        out.push(next);
        token = next;
    }
    Ok(out)
}
