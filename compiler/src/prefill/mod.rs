//! Prefill: the prompt's positions through the wafer before the first
//! token, and the time to first token it takes.
//!
//! A prefill runs a decode step's stages in the same order, each for every
//! prompt position before the next stage starts:
//! * a kernel that takes a batch (`batch.rs`: the projections on the tiled
//!   GEMV or MeshGEMV as GEMMs with their weights in place, RMSNorm and
//!   the fused add-RMSNorm, RoPE, the element-wise kernels) takes the
//!   positions as many at once as the SRAM of its fullest PE holds while
//!   it runs ([`plan`]);
//! * every other stage runs once per position, in order. Attention at
//!   position `p` is the decode step's over the `p + 1` slots its cache
//!   then holds, which is causal attention, and it fills the KV cache as
//!   the decode steps would;
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
//! tested equal to the emulated one but for attention's and a batched
//! MeshGEMV's documented few cycles a run.

use crate::codegen::Compiled;
use crate::decode::{DecodeError, Decoder, Step};
use crate::kernel::Kernel;
use crate::stage::Src;
use std::collections::HashMap;
use wafer_kernels::Fragment;

mod batch;
mod run;

pub use batch::Join;

/// How each stage runs in a prefill of `positions` positions.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub positions: u32,
    pub stages: Vec<StagePlan>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StagePlan {
    /// Positions one run takes: more than one for a kernel that takes a
    /// batch ([`batch::join`]) and has the SRAM for it.
    pub batch: u32,
    /// Whether it runs for every position (some attention reads what it
    /// makes) or only for the last.
    pub every: bool,
}

/// The prefill's plan: which stages every position needs, and each
/// batching kernel's batch, the most positions whose longer buffers
/// ([`batch::growth`]) fit the SRAM its fullest PE has free while it
/// runs: all but its state and code, and its own activation buffers
/// (stages run one after another, and an activation buffer holds nothing
/// between runs: [`crate::sram::per_pe_kept`]).
pub fn plan(c: &Compiled, positions: u32) -> Plan {
    // Backwards over the stages: a stage is needed at every position if
    // it is an attention or makes a value such a stage reads.
    let mut every = vec![false; c.stages.len()];
    let mut needed = vec![false; c.graph.insts.len()];
    for (i, s) in c.stages.iter().enumerate().rev() {
        every[i] = matches!(c.sites[i].kernel, Kernel::Attention(_))
            || s.outputs.iter().any(|v| needed[*v]);
        if every[i] {
            let reads = s.inputs.iter().flat_map(|(_, srcs)| srcs);
            for src in reads {
                if let Src::Value(v) | Src::ExpertWeights(v) = src {
                    needed[*v] = true;
                }
            }
            if let Some(p) = s.when {
                needed[p.route] = true;
            }
        }
    }
    let arch = &c.options.arch;
    let mut distinct = Distinct::default();
    // Growth by distinct kernel and batch: the layers repeat a few.
    let mut growths: HashMap<(usize, u32), Option<u64>> = HashMap::new();
    let mut stages = Vec::with_capacity(c.stages.len());
    for part in &c.wafers {
        let range = part.stages.clone();
        let (sites, fragments) = (&c.sites[range.clone()], &c.fragments[range.clone()]);
        // What a PE keeps while one stage runs: its state and code; the
        // other stages' activation buffers hold nothing then.
        let kept = crate::sram::per_pe_kept(sites, fragments, arch);
        for i in range {
            let k = &c.sites[i].kernel;
            let batch = match batch::join(k) {
                Some(_) if positions > 1 => {
                    let kept = (c.sites[i].pes())
                        .map(|pe| kept[(pe.y * arch.grid_cols + pe.x) as usize])
                        .max()
                        .unwrap_or(0) as u64;
                    let free = (arch.sram_bytes as u64)
                        .saturating_sub(kept + own_activations(&c.fragments[i]));
                    let id = distinct.id(k);
                    let mut fits = |b: u32| {
                        growths
                            .entry((id, b))
                            .or_insert_with(|| batch::growth(&c.sites[i], b, &c.fragments[i], arch))
                            .is_some_and(|g| g <= free)
                    };
                    // The growth rises with the batch: the largest that fits.
                    let (mut lo, mut hi) = (1, positions);
                    while lo < hi {
                        let mid = lo + (hi - lo).div_ceil(2);
                        match fits(mid) {
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

/// Kernels by identity less their seeded data: the layers of a model
/// repeat a few.
#[derive(Default)]
struct Distinct(Vec<Kernel>);

impl Distinct {
    fn id(&mut self, k: &Kernel) -> usize {
        let unseeded = k.clone().with_seed(0);
        match self.0.iter().position(|d| *d == unseeded) {
            Some(id) => id,
            None => {
                self.0.push(unseeded);
                self.0.len() - 1
            }
        }
    }
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
                .filter(|b| crate::sram::is_activation(f, &b.name))
                .map(|b| b.bytes() as u64)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0)
}

/// The cycles of stage `i`'s hand-off into a run of `batch` positions:
/// the decode step's trip (the batch's longer input streams are in the
/// batched kernel's own run, as one position's are in a decode step's),
/// and on a system the link moving `batch` times the bytes.
pub fn handoff_cycles(c: &Compiled, i: usize, batch: u32) -> u64 {
    let h = &c.routing.handoffs[i];
    if batch <= 1 || h.cycles == 0 {
        return h.cycles;
    }
    h.cycles + link_extra(c, i, batch)
}

/// The cycles the links into stage `i` (from an earlier wafer) take to
/// move a batch beyond one position's.
fn link_extra(c: &Compiled, i: usize, batch: u32) -> u64 {
    let arch = &c.options.arch;
    c.transfers
        .iter()
        .filter(|t| t.into == i)
        .map(|t| arch.wafer_link_cycles(t.bytes * batch as u64) - arch.wafer_link_cycles(t.bytes))
        .sum()
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
/// [`Prefill::ran`], or [`Compiled::runs`] for a seeded routing), fed
/// `tokens` from `start` on (the embedding's time depends on the id; a
/// position past their end is fed [`crate::kernel::TIMING_TOKEN`], as a
/// timing-only prefill is).
pub fn predicted(c: &Compiled, plan: &Plan, start: u32, ran: &[Vec<bool>], tokens: &[u32]) -> u64 {
    let runs = stage_predictions(c, plan, start, ran, tokens);
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
/// included): [`Prefill::stage_cycles`]'s prediction, fed `tokens` as
/// [`predicted`] is.
pub fn stage_predictions(
    c: &Compiled,
    plan: &Plan,
    start: u32,
    ran: &[Vec<bool>],
    tokens: &[u32],
) -> Vec<u64> {
    let arch = &c.options.arch;
    let fixed = c.stage_predictions(start);
    // Costs by the distinct kernel and the positions (a batch's, or
    // attention's position).
    let mut distinct = Distinct::default();
    let mut costs: HashMap<(usize, u32), u64> = HashMap::new();
    let mut out = vec![0; c.stages.len()];
    for (i, total) in out.iter_mut().enumerate() {
        let ps = positions_of(plan, i, start, ran);
        if ps.is_empty() {
            continue;
        }
        let kernel = &c.sites[i].kernel;
        let id = distinct.id(kernel);
        *total = match (kernel, plan.stages[i].batch) {
            (_, b) if b > 1 => ps
                .chunks(b as usize)
                .map(|chunk| {
                    let n = chunk.len() as u32;
                    *costs
                        .entry((id, n))
                        .or_insert_with(|| batch::cost(kernel, n, arch))
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
            (Kernel::Embed(_), _) => ps
                .iter()
                .map(|p| {
                    let token = (tokens.get((p - start) as usize))
                        .copied()
                        .unwrap_or(crate::kernel::TIMING_TOKEN);
                    kernel.predicted_for(arch, *p, token)
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
    /// The plan it ran ([`plan`]) and the tokens it was fed: what
    /// [`predicted`] takes.
    pub plan: Plan,
    pub tokens: Vec<u32>,
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
