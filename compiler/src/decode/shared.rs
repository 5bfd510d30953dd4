//! A timing-only step's distinct stage runs shared between processes
//! ([`Decoder::share`]).

use super::{DecodeError, Decoder, PeTime, Reusable, no_stats, stage_tensors};
use crate::share::{self, Exchange, Shared};
use std::sync::Arc;
use wafer_emulator::RunError;

impl Decoder<'_> {
    /// Run the distinct stage runs of the step for `token` at the current
    /// position shared with the processes of `ex` ([`crate::share`]), so
    /// that the next [`Decoder::step`] for `token` finds every one of them
    /// (its results are one process's either way). Every process calls it
    /// with the same decoder, position and token. Returns how many runs
    /// this process made.
    pub fn share(&mut self, token: u32, ex: &dyn Exchange) -> Result<usize, DecodeError> {
        if !self.cfg.timing_only || self.reuse.is_none() || self.cfg.trace || self.overlap.is_some()
        {
            return Err(DecodeError::ShareMode);
        }
        let c = self.compiled;
        let pos = self.pos;
        if pos >= c.options.max_context {
            return Err(DecodeError::Context {
                pos,
                max: c.options.max_context,
            });
        }
        // The plan: what a stage makes is unknown (NaN) in timing-only
        // mode; the token and the position are as given.
        let value = |x: usize| -> Vec<f32> {
            match c.graph.insts[x].op {
                crate::ir::Op::Token => vec![token as f32],
                crate::ir::Op::Position => vec![pos as f32],
                _ => vec![f32::NAN; c.graph.insts[x].len],
            }
        };
        let reuse = self.reuse.as_ref().expect("checked above");
        let ran = c.runs(pos, self.expert_seed);
        let mut absent = vec![false; c.graph.insts.len()];
        for (stage, _) in c.stages.iter().zip(&ran).filter(|(_, r)| !**r) {
            stage.outputs.iter().for_each(|v| absent[*v] = true);
        }
        let mut runs: Vec<(Vec<u8>, usize, wafer_emulator::Inputs)> = Vec::new();
        for (i, stage) in c.stages.iter().enumerate() {
            if !ran[i] {
                continue;
            }
            // The program a step runs, its key the one the step looks up.
            let (f, _) = self.emulated(i);
            let tensors = stage_tensors(stage, pos, |x, v| {
                if !absent[x] {
                    v.extend(value(x))
                }
            });
            let inputs = f.stream_inputs(&tensors).map_err(|e| DecodeError::Run {
                pos,
                stage: stage.name.clone(),
                error: Box::new(RunError::Input {
                    name: stage.name.clone(),
                    message: e.to_string(),
                }),
            })?;
            let key = wafer_emulator::engine::timing_fingerprint(&f.program, &inputs);
            if !reuse.runs.contains_key(&key) && !runs.iter().any(|(k, _, _)| *k == key) {
                runs.push((key, i, inputs));
            }
        }
        let predicted = c.stage_predictions(pos);
        let work: Vec<u64> = runs
            .iter()
            .map(|(_, i, _)| self.emulated(*i).0.program.n_pes() * predicted[*i])
            .collect();
        let owner = share::assign(&work, ex.ranks());
        let arch = &c.options.arch;
        let mut mine: Result<Vec<Shared>, String> = Ok(Vec::new());
        for (r, (_, i, inputs)) in runs.iter().enumerate() {
            if owner[r] != ex.rank() {
                continue;
            }
            let Ok(done) = mine.as_mut() else { break };
            match wafer_emulator::run(&self.emulated(*i).0.program, arch, inputs, &self.cfg) {
                Ok(out) => {
                    let t = PeTime::of(&out.stats);
                    done.push(Shared {
                        run: r as u32,
                        cycles: out.cycles,
                        time: (t.compute, t.fabric, t.idle),
                        outputs: out.outputs,
                        stats: self.keep_stats.then_some(out.stats),
                    });
                }
                Err(e) => mine = Err(format!("stage `{}`: {e}", c.stages[*i].name)),
            }
        }
        let made = mine.as_ref().map_or(0, Vec::len);
        let bytes = postcard::to_allocvec(&mine).expect("results serialise");
        let all = ex.all_gather(bytes);
        let reuse = self.reuse.as_mut().expect("checked above");
        for (rank, b) in all.iter().enumerate() {
            let theirs: Result<Vec<Shared>, String> =
                postcard::from_bytes(b).map_err(|e| DecodeError::Shared {
                    pos,
                    rank,
                    message: format!("its results do not decode: {e}"),
                })?;
            let theirs = theirs.map_err(|message| DecodeError::Shared { pos, rank, message })?;
            for s in theirs {
                let Some((key, _, _)) = runs.get(s.run as usize) else {
                    return Err(DecodeError::Shared {
                        pos,
                        rank,
                        message: format!("it sent run {} of {}", s.run, runs.len()),
                    });
                };
                let time = s.time();
                // Without kept statistics the step reads none.
                let stats = Arc::new(s.stats.unwrap_or_else(|| no_stats(arch, s.cycles)));
                reuse.runs.insert(
                    key.clone(),
                    Reusable {
                        cycles: s.cycles,
                        outputs: s.outputs,
                        output_times: Default::default(),
                        input_times: Default::default(),
                        backlog: 0,
                        stats,
                        time,
                        trace: None,
                        used: reuse.step,
                    },
                );
            }
        }
        Ok(made)
    }
}
