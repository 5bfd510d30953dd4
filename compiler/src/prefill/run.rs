//! Running a prefill on the emulator ([`Decoder::prefill`]).

use super::batch::{self, Join};
use super::{Prefill, handoff_cycles, plan, positions_of};
use crate::decode::{DecodeError, Decoder};
use crate::stage::Src;
use std::collections::BTreeMap;
use wafer_emulator::RunError;

impl Decoder<'_> {
    /// Runs `tokens` (the prompt's positions, from the decoder's position
    /// on) through the wafer as one prefill ([`plan`]); the decoder then
    /// stands after them, its KV cache filled.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<Prefill, DecodeError> {
        let c = self.compiled;
        let (start, n) = (self.pos, tokens.len() as u32);
        let max = c.options.max_context;
        if n == 0 || start + n > max {
            return Err(DecodeError::Context {
                pos: start + n.max(1) - 1,
                max,
            });
        }
        if let Some(t) = tokens.iter().find(|t| **t as usize >= c.config.vocab_size) {
            return Err(DecodeError::Token {
                token: *t,
                vocab: c.config.vocab_size,
            });
        }
        let plan = plan(c, n);
        let timing = self.is_timing_only();
        let insts = c.graph.insts.len();
        let mut values: Vec<Vec<Option<Vec<f32>>>> = (0..n)
            .map(|p| {
                let mut v = vec![None; insts];
                for (i, inst) in c.graph.insts.iter().enumerate() {
                    match inst.op {
                        crate::ir::Op::Token => v[i] = Some(vec![tokens[p as usize] as f32]),
                        crate::ir::Op::Position => v[i] = Some(vec![(start + p) as f32]),
                        _ => {}
                    }
                }
                v
            })
            .collect();
        // Which stages run at each position: the experts' depend on their
        // router's values, known once it ran.
        let mut ran = vec![vec![true; c.stages.len()]; n as usize];
        let mut picked: Vec<BTreeMap<usize, Vec<usize>>> = vec![BTreeMap::new(); n as usize];
        let mut stage_cycles = vec![0; c.stages.len()];
        let mut stage_runs = vec![0; c.stages.len()];
        let (mut total, mut next) = (0, 0);
        // The last stage reading each value: after it, every position's
        // copy is dropped (a long prompt's values would not all fit).
        let mut last_read = vec![0; insts];
        for (i, stage) in c.stages.iter().enumerate() {
            let srcs = stage.inputs.iter().flat_map(|(_, srcs)| srcs);
            for src in srcs {
                if let Src::Value(v) | Src::ExpertWeights(v) = src {
                    last_read[*v] = i;
                }
            }
            if let Some(p) = stage.when {
                last_read[p.route] = last_read[p.route].max(i);
            }
        }
        last_read[c.graph.ret] = usize::MAX;
        for (i, stage) in c.stages.iter().enumerate() {
            if let Some(pick) = stage.when {
                for p in 0..n {
                    let pos = start + p;
                    let picks = match picked[p as usize].get(&pick.route) {
                        Some(picks) => picks.clone(),
                        None => {
                            let (experts, k) = crate::experts::shape(&c.graph, pick.route);
                            let picks = if timing {
                                crate::experts::seeded(
                                    self.seed_of_experts(),
                                    pos,
                                    pick.route,
                                    experts,
                                    k,
                                )
                            } else {
                                let route = values[p as usize][pick.route].as_deref();
                                match route {
                                    // The router did not run here: the
                                    // expert is not needed at this position.
                                    None => Vec::new(),
                                    Some(route) => crate::experts::from_route(route, experts)
                                        .ok_or_else(|| DecodeError::Routing {
                                            pos,
                                            stage: stage.name.clone(),
                                            route: route.to_vec(),
                                        })?,
                                }
                            };
                            picked[p as usize].insert(pick.route, picks.clone());
                            picks
                        }
                    };
                    ran[p as usize][i] = picks.contains(&pick.expert);
                }
            }
            let ps = positions_of(&plan, i, start, &ran);
            for p in (0..n).filter(|p| !ps.contains(&(start + p))) {
                ran[p as usize][i] = false;
            }
            let batch = plan.stages[i].batch;
            for chunk in ps.chunks(batch as usize) {
                let tensors = |p: u32| {
                    crate::decode::stage_tensors(stage, p, |x, v| {
                        if let Some(x) = &values[(p - start) as usize][x] {
                            v.extend_from_slice(x)
                        }
                    })
                };
                let (out, cycles) = match batch::join(&c.sites[i].kernel) {
                    Some(join) if chunk.len() > 1 => {
                        let per_position: Vec<_> = chunk.iter().map(|p| tensors(*p)).collect();
                        let joined = joined(c, stage, join, &per_position);
                        self.pos = chunk[0];
                        self.run_batch(i, chunk.len() as u32, &joined)?
                    }
                    _ => {
                        self.pos = chunk[0];
                        let run = self.run_stage(i, &tensors(chunk[0]), (&None, &None), timing)?;
                        (run.out, run.cycles)
                    }
                };
                stage_cycles[i] += cycles;
                stage_runs[i] += 1;
                total += cycles + handoff_cycles(c, i, chunk.len() as u32);
                if stage.outputs.is_empty() {
                    // NaN (timing-only: unknown) saturates to token 0.
                    next = out[0] as u32;
                    continue;
                }
                let each = out.len() / chunk.len();
                for (j, p) in chunk.iter().enumerate() {
                    let mut at = j * each;
                    for v in &stage.outputs {
                        let len = c.graph.insts[*v].len;
                        values[(p - start) as usize][*v] = Some(out[at..at + len].to_vec());
                        at += len;
                    }
                }
            }
            for (v, last) in last_read.iter().enumerate() {
                if *last == i {
                    values.iter_mut().for_each(|at| at[v] = None);
                }
            }
        }
        self.pos = start + n;
        let logits = values[n as usize - 1][c.graph.ret]
            .take()
            .expect("the classifier ran for the last position");
        Ok(Prefill {
            start,
            positions: n,
            next,
            logits,
            cycles: total,
            stage_cycles,
            stage_runs,
            ran,
            plan,
            tokens: tokens.to_vec(),
        })
    }

    /// Stage `i` on `batch` positions at once: its batched program with
    /// the stage's weights.
    fn run_batch(
        &mut self,
        i: usize,
        batch: u32,
        tensors: &BTreeMap<String, Vec<f32>>,
    ) -> Result<(Vec<f32>, u64), DecodeError> {
        let c = self.compiled;
        let stage = &c.stages[i];
        let pos = self.pos;
        let err = |e| match e {
            RunError::Interrupted { .. } => DecodeError::Interrupted { pos },
            e => DecodeError::Run {
                pos,
                stage: format!("{} (prefill, {batch} positions)", stage.name),
                error: Box::new(e),
            },
        };
        let input = |message: String| {
            err(RunError::Input {
                name: stage.name.clone(),
                message,
            })
        };
        let arch = &c.options.arch;
        let f = batch::fragment(&c.sites[i], batch, &c.fragments[i], arch)
            .map_err(|e| input(e.to_string()))?;
        let inputs = f.stream_inputs(tensors).map_err(|e| input(e.to_string()))?;
        let r = wafer_emulator::run(&f.program, arch, &inputs, self.run_config()).map_err(err)?;
        Ok((f.gather(&f.outputs[0], &r.outputs), r.cycles))
    }
}

/// A batch's input ports from each position's: position after position,
/// or each source's values for every position in turn.
fn joined(
    c: &crate::codegen::Compiled,
    stage: &crate::stage::Stage,
    join: Join,
    per_position: &[BTreeMap<String, Vec<f32>>],
) -> BTreeMap<String, Vec<f32>> {
    let mut out: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for (port, srcs) in &stage.inputs {
        let v = out.entry(port.clone()).or_default();
        match join {
            Join::Positions => {
                for t in per_position {
                    v.extend_from_slice(&t[port]);
                }
            }
            Join::Sources => {
                let mut at = 0;
                for src in srcs {
                    let len = match src {
                        Src::Value(x) => c.graph.insts[*x].len,
                        Src::Pos | Src::One => 1,
                        Src::ExpertWeights(r) => crate::experts::shape(&c.graph, *r).1,
                    };
                    for t in per_position {
                        v.extend_from_slice(&t[port][at..at + len]);
                    }
                    at += len;
                }
            }
        }
    }
    out
}
