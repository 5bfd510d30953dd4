//! Prefill: the prompt's positions through the wafer before the first
//! token, and the time to first token it takes.
//!
//! A prefill runs a decode step's stages in the same order, each for every
//! prompt position before the next stage starts:
//! * a projection on the tiled GEMV is a GEMM with its weights stationary:
//!   it takes the positions in batches
//!   ([`wafer_kernels::gemv::generate_batch`]), as many at once as the
//!   free SRAM of its fullest PE holds ([`plan`]);
//! * every other stage runs once per position, in order. Attention at
//!   position `p` is the decode step's over the `p + 1` slots its cache
//!   then holds, which is causal attention, and it fills the KV cache as
//!   the decode steps would. The norms, RoPE, the router, a MeshGEMV
//!   projection (mesh placement's 16-bit choice) and the element-wise
//!   kernels take one position a run in this version.
//! * a stage that no attention reads from, directly or through other
//!   stages, runs for the last position only (the last layer's output
//!   projection and MLP, the final norm, the head and the argmax): its
//!   logits pick the first token;
//! * an expert runs for the positions whose router picked it, as a batch.
//!
//! Each run pays its hand-off, [`crate::route`]'s formula with the
//! batch's streams (a batch of `b` streams `b` times the elements; a
//! system's link moves `b` times the bytes). Stages do not overlap and
//! positions are not pipelined across stages, as in a decode step.
//!
//! The cost models predict a prefill ([`predicted`]) from the same plan:
//! tested equal to the emulated one.

use crate::codegen::Compiled;
use crate::decode::{DecodeError, Decoder, Step};
use crate::kernel::Kernel;
use crate::stage::Src;
use std::collections::{BTreeMap, HashMap};
use wafer_emulator::RunError;
use wafer_kernels::Fragment;
use wafer_kernels::gemv;

/// How each stage runs in a prefill of `positions` positions.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub positions: u32,
    pub stages: Vec<StagePlan>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StagePlan {
    /// Positions one run takes: more than one only for a batched GEMV.
    pub batch: u32,
    /// Whether it runs for every position (some attention reads what it
    /// makes) or only for the last.
    pub every: bool,
}

/// The prefill's plan: which stages every position needs, and each tiled
/// GEMV's batch, the most positions whose longer `x` and `y`
/// ([`gemv::batch_growth`]) fit the SRAM its fullest PE has free while it
/// runs: all but its state and code, and its own activation buffers
/// (stages run one after another, and an activation buffer holds nothing
/// between runs: [`crate::sram::per_pe_activations`]).
pub fn plan(c: &Compiled, positions: u32) -> Plan {
    let mut every = vec![false; c.stages.len()];
    for i in (0..c.stages.len()).rev() {
        let read = |t: usize| {
            let s = &c.stages[t];
            s.inputs
                .iter()
                .flat_map(|(_, srcs)| srcs)
                .filter_map(|src| match src {
                    Src::Value(v) | Src::ExpertWeights(v) => Some(*v),
                    Src::Pos | Src::One => None,
                })
                .chain(s.when.map(|p| p.route))
                .any(|v| c.stages[i].outputs.contains(&v))
        };
        every[i] = matches!(c.sites[i].kernel, Kernel::Attention(_))
            || (i + 1..c.stages.len()).any(|t| every[t] && read(t));
    }
    let arch = &c.options.arch;
    let mut stages = Vec::with_capacity(c.stages.len());
    for part in &c.wafers {
        let range = part.stages.clone();
        let (sites, fragments) = (&c.sites[range.clone()], &c.fragments[range.clone()]);
        // What a PE keeps while one stage runs: its state and code; the
        // other stages' activation buffers hold nothing then.
        let all = crate::sram::per_pe_bytes(sites, fragments, arch);
        let activations = crate::sram::per_pe_activations(sites, fragments, arch);
        for i in range {
            let batch = match &c.sites[i].kernel {
                Kernel::Gemv(spec) if positions > 1 => {
                    let (w, h) = c.sites[i].kernel.size();
                    let o = c.sites[i].origin;
                    let kept = (o.y..o.y + h)
                        .flat_map(|y| {
                            (o.x..o.x + w).map(move |x| (y * arch.grid_cols + x) as usize)
                        })
                        .map(|at| all[at] - activations[at])
                        .max()
                        .unwrap_or(0) as u64;
                    let own = own_activations(&c.fragments[i]);
                    let free = (arch.sram_bytes as u64).saturating_sub(kept + own);
                    // The growth rises with the batch: the largest that fits.
                    let (mut lo, mut hi) = (1, positions);
                    while lo < hi {
                        let mid = lo + (hi - lo).div_ceil(2);
                        match gemv::batch_growth(spec, mid) <= free {
                            true => lo = mid,
                            false => hi = mid - 1,
                        }
                    }
                    lo
                }
                _ => 1,
            };
            stages.push(StagePlan {
                batch,
                every: every[i],
            });
        }
    }
    Plan { positions, stages }
}

/// The most bytes of activation buffers one PE of `f` holds.
fn own_activations(f: &Fragment) -> u64 {
    let p = &f.program;
    p.placements
        .iter()
        .map(|pl| {
            p.codes[pl.code.0 as usize]
                .buffers
                .iter()
                .filter(|b| {
                    !(f.state.contains(&b.name) || p.data.iter().any(|d| d.buffer == b.name))
                })
                .map(|b| b.bytes() as u64)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0)
}

/// The cycles of stage `i`'s hand-off into a run of `batch` positions.
pub fn handoff_cycles(c: &Compiled, i: usize, batch: u32) -> u64 {
    let h = &c.routing.handoffs[i];
    if batch <= 1 || h.cycles == 0 {
        return h.cycles;
    }
    let longest = c.fragments[i]
        .inputs
        .iter()
        .flat_map(|p| p.segments.iter().map(|s| s.len))
        .max()
        .unwrap_or(0) as u64;
    let arch = &c.options.arch;
    let link: u64 = c
        .transfers
        .iter()
        .filter(|t| t.into == i)
        .map(|t| arch.wafer_link_cycles(t.bytes * batch as u64) - arch.wafer_link_cycles(t.bytes))
        .sum();
    h.cycles + (batch as u64 - 1) * longest + link
}

/// The positions stage `i` runs for, from `start`: every position or the
/// last, less those whose router did not pick it (`ran[p - start][i]`).
fn positions_of(plan: &Plan, i: usize, start: u32, ran: &[Vec<bool>]) -> Vec<u32> {
    let last = start + plan.positions - 1;
    let first = if plan.stages[i].every { start } else { last };
    (first..=last)
        .filter(|p| ran[(p - start) as usize][i])
        .collect()
}

/// The cost models' prefill from position `start`, hand-offs included,
/// with the stages `ran` says ran at each position (a prefill's
/// [`Prefill::ran`], or [`Compiled::runs`] for a seeded routing).
pub fn predicted(c: &Compiled, plan: &Plan, start: u32, ran: &[Vec<bool>]) -> u64 {
    let runs = stage_predictions(c, plan, start, ran);
    runs.iter().sum::<u64>() + stage_handoffs(c, plan, start, ran).iter().sum::<u64>()
}

/// Per stage, the cycles of the hand-offs into its prefill runs.
pub fn stage_handoffs(c: &Compiled, plan: &Plan, start: u32, ran: &[Vec<bool>]) -> Vec<u64> {
    (0..c.stages.len())
        .map(|i| {
            let b = plan.stages[i].batch as usize;
            positions_of(plan, i, start, ran)
                .chunks(b)
                .map(|chunk| handoff_cycles(c, i, chunk.len() as u32))
                .sum()
        })
        .collect()
}

/// Per stage, the cost models' cycles of its prefill runs (hand-offs not
/// included): [`Prefill::stage_cycles`]'s prediction.
pub fn stage_predictions(c: &Compiled, plan: &Plan, start: u32, ran: &[Vec<bool>]) -> Vec<u64> {
    let arch = &c.options.arch;
    let fixed = c.stage_predictions(start);
    // Costs by the distinct kernel (equal but for its seeded data) and
    // the positions (a batch's, or attention's position).
    let mut distinct: Vec<Kernel> = Vec::new();
    let mut costs: HashMap<(usize, u32), u64> = HashMap::new();
    let mut out = vec![0; c.stages.len()];
    for (i, total) in out.iter_mut().enumerate() {
        let ps = positions_of(plan, i, start, ran);
        if ps.is_empty() {
            continue;
        }
        let kernel = &c.sites[i].kernel;
        let unseeded = kernel.clone().with_seed(0);
        let id = match distinct.iter().position(|k| *k == unseeded) {
            Some(id) => id,
            None => {
                distinct.push(unseeded);
                distinct.len() - 1
            }
        };
        *total = match (kernel, plan.stages[i].batch) {
            (Kernel::Gemv(spec), b) if b > 1 => ps
                .chunks(b as usize)
                .map(|chunk| {
                    let n = chunk.len() as u32;
                    *costs
                        .entry((id, n))
                        .or_insert_with(|| gemv::cost_batch(spec, n, arch))
                })
                .sum(),
            (Kernel::Attention(_), _) => ps
                .iter()
                .map(|p| {
                    *costs
                        .entry((id, *p))
                        .or_insert_with(|| kernel.predicted(arch, *p))
                })
                .sum(),
            _ => ps.len() as u64 * fixed[i],
        };
    }
    out
}

/// A prefill's results.
#[derive(Clone, Debug)]
pub struct Prefill {
    /// The first position and how many ran.
    pub start: u32,
    pub positions: u32,
    /// The wafer's argmax of the last position's logits: the first token.
    pub next: u32,
    pub logits: Vec<f32>,
    /// Emulated cycles, hand-offs included: the time to first token.
    pub cycles: u64,
    /// Per stage: its runs' emulated cycles (hand-offs not included), and
    /// how many runs.
    pub stage_cycles: Vec<u64>,
    pub stage_runs: Vec<u32>,
    /// Per position, per stage: whether it ran there.
    pub ran: Vec<Vec<bool>>,
}

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
                let (out, cycles) = if batch == 1 {
                    self.pos = chunk[0];
                    let run = self.run_stage(i, &tensors(chunk[0]))?;
                    (run.out, run.cycles)
                } else {
                    let mut joined: BTreeMap<String, Vec<f32>> = BTreeMap::new();
                    for p in chunk {
                        for (port, v) in tensors(*p) {
                            joined.entry(port).or_default().extend(v);
                        }
                    }
                    self.pos = chunk[0];
                    self.run_batch(i, chunk.len() as u32, &joined)?
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
        })
    }

    /// Stage `i`, a tiled GEMV, on `batch` positions at once: its batched
    /// program with the stage's weights.
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
        let Kernel::Gemv(spec) = &c.sites[i].kernel else {
            unreachable!("only a tiled GEMV is batched (plan)")
        };
        let arch = &c.options.arch;
        let f: Fragment = gemv::batch_of(spec, batch, &c.fragments[i], arch).map_err(|e| {
            err(RunError::Input {
                name: stage.name.clone(),
                message: e.to_string(),
            })
        })?;
        let inputs = f.stream_inputs(tensors).map_err(|e| {
            err(RunError::Input {
                name: stage.name.clone(),
                message: e.to_string(),
            })
        })?;
        let r = wafer_emulator::run(&f.program, arch, &inputs, self.run_config()).map_err(err)?;
        Ok((f.gather(&f.outputs[0], &r.outputs), r.cycles))
    }
}

/// What [`generate`] reports as it goes.
pub enum Progress<'a> {
    /// The prefill ran; its logits picked `first`.
    Prefilled { first: u32, prefill: &'a Prefill },
    /// A decode step ran and picked `next`.
    Step { next: u32, step: &'a Step },
}

/// Greedy (or `sample`d) generation with the prompt prefilled: BOS and
/// the prompt's tokens run as one prefill ([`Decoder::prefill`]), whose
/// last logits pick the first token; then one decode step a token, until
/// `steps` positions (prompt included) or BOS; the tokens returned start
/// with the prompt's, as [`crate::decode::generate`]'s do.
pub fn generate(
    d: &mut Decoder,
    prompt: &[u32],
    steps: usize,
    mut sample: Option<&mut crate::decode::Sampler<'_>>,
    mut each: impl FnMut(Progress),
) -> Result<Vec<u32>, DecodeError> {
    let max = d.compiled.options.max_context;
    if steps > max as usize {
        return Err(DecodeError::Steps { steps, max });
    }
    if prompt.len() >= steps {
        return Err(DecodeError::Prompt {
            prompt: prompt.len(),
            steps,
        });
    }
    let timing = d.is_timing_only();
    let tokens: Vec<u32> = std::iter::once(crate::tokenizer::BOS)
        .chain(prompt.iter().copied())
        .collect();
    let pf = d.prefill(&tokens)?;
    let nan = |logits: &[f32], pos: u32| match !timing && logits.iter().any(|v| v.is_nan()) {
        true => Err(DecodeError::NanLogits { pos }),
        false => Ok(()),
    };
    nan(&pf.logits, pf.start + pf.positions - 1)?;
    let mut token = match sample.as_mut() {
        Some(f) => f(&pf.logits),
        None => pf.next,
    };
    each(Progress::Prefilled {
        first: token,
        prefill: &pf,
    });
    // The prompt's tokens lead, as `decode_loop`'s forced ones do.
    let mut out = prompt.to_vec();
    for pos in tokens.len()..steps {
        if token == crate::tokenizer::BOS {
            return Ok(out);
        }
        out.push(token);
        let step = d.step(token)?;
        nan(&step.logits, pos as u32)?;
        token = match sample.as_mut() {
            Some(f) => f(&step.logits),
            None => step.next,
        };
        each(Progress::Step {
            next: token,
            step: &step,
        });
    }
    if token != crate::tokenizer::BOS {
        out.push(token);
    }
    Ok(out)
}
