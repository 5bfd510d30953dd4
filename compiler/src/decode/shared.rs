//! A timing-only step's distinct stage runs shared between processes
//! ([`Decoder::share`]).
//!
//! With barriers every stage's inputs are known before any stage runs, so
//! the step's distinct runs are dealt out at once. Overlapped, a stage's
//! run depends on when the runs before it sent, but a stage fed from
//! another wafer starts at a barrier ([`super::overlap`]): a wafer's
//! stages (its segment) run as they would after any earlier wafers,
//! shifted in time, so the segments are dealt out instead. With its links
//! queued on dimension-ordered paths the same holds: a wafer's trips share
//! only its own links, so its rounds find the delays the whole step's do,
//! and the wafer queues they made travel with the runs
//! ([`super::queue::Kept`]): the step then queues no wafer again.

use super::queue::WaferQueue;
use super::{DecodeError, Decoder, PeTime, Reusable, links, no_stats, stage_tensors};
use crate::codegen::Compiled;
use crate::share::{self, Exchange, Shared};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;
use std::sync::Arc;
use wafer_emulator::Cycles;
use wafer_emulator::RunError;
use wafer_emulator::stats::Stats;

/// An overlapped segment's run as it travels between processes: what
/// [`Reusable`] keeps, by its key.
#[derive(Serialize, Deserialize)]
struct SegmentRun {
    key: Vec<u8>,
    cycles: u64,
    time: (u64, u64, u64),
    outputs: BTreeMap<String, Vec<f32>>,
    output_times: Cycles,
    input_times: Cycles,
    backlog: u64,
    /// Per-PE statistics, when the decoder keeps them.
    stats: Option<Stats>,
}

impl Decoder<'_> {
    /// Run the distinct stage runs of the step for `token` at the current
    /// position shared with the processes of `ex` ([`crate::share`]), so
    /// that the next [`Decoder::step`] for `token` finds every one of them
    /// (its results are one process's either way). Every process calls it
    /// with the same decoder, position and token. Returns how many runs
    /// this process made. Overlapped, the runs are found wafer by wafer
    /// (`share_segments`); the first step whose links are queued on
    /// spread paths, which plans them, is not shared (0 runs made).
    pub fn share(&mut self, token: u32, ex: &dyn Exchange) -> Result<usize, DecodeError> {
        if !self.cfg.timing_only || self.reuse.is_none() || self.cfg.trace {
            return Err(DecodeError::ShareMode);
        }
        if self.overlap.is_some() {
            return self.share_segments(token, ex);
        }
        self.check_step(token)?;
        let c = self.compiled;
        let pos = self.pos;
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
            for s in results::<Vec<Shared>>(pos, rank, b)? {
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

    /// Overlapped, [`Decoder::share`] by segments: each process runs the
    /// step's passes over the stages of the wafers [`share::assign`] gives
    /// it (the rest taken as ended at cycle 0, [`Decoder::settle`]) and
    /// sends the runs they made. A stage fed from another wafer starts at
    /// a barrier after its producers' end, so where a wafer's stages are
    /// fed from one stage of another (as a layer's are from the last of
    /// the layer before), its runs are those of the whole step, shifted;
    /// any other run the step needs it makes itself, so the results are
    /// one process's either way.
    fn share_segments(&mut self, token: u32, ex: &dyn Exchange) -> Result<usize, DecodeError> {
        self.check_step(token)?;
        if let (Some((links::Paths::Spread, _)), None) = (self.queue_links, &self.spread) {
            // Spread paths are planned over every wafer's trips at once,
            // at the cycles the first queued step sends them: that step
            // runs whole on every rank, each making the same plan, and the
            // steps after it are shared. (Dimension-ordered paths queue a
            // wafer's trips on its own links, each trip's delay found from
            // its wafer's sends alone, as below.)
            return Ok(0);
        }
        let c = self.compiled;
        let (pos, n) = (self.pos, c.stages.len());
        let wafers: Vec<Range<usize>> = match c.wafers.len() {
            0 => std::iter::once(0..n).collect(),
            _ => c.wafers.iter().map(|w| w.stages.clone()).collect(),
        };
        // Per stage, its program less its weights.
        let programs: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let f = self.emulated(i).0;
                wafer_emulator::engine::timing_fingerprint(&f.program, &Default::default())
            })
            .collect();
        // A wafer laid out as one before it runs what that one runs: the
        // step reuses those runs, so only the first is dealt out.
        let mut seen = HashSet::new();
        let segments: Vec<(usize, Range<usize>)> = (wafers.into_iter().enumerate())
            .filter(|(_, r)| seen.insert(segment_layout(c, &programs, r.clone())))
            .collect();
        // Wafers that run the same programs (the middle ones of a system,
        // a layer or so apart) mostly make the same runs once they settle:
        // one job, on one rank, whose work is its largest wafer's.
        let mut jobs: Vec<(BTreeSet<&[u8]>, Vec<usize>)> = Vec::new();
        for (k, (_, r)) in segments.iter().enumerate() {
            let set: BTreeSet<&[u8]> = r.clone().map(|i| programs[i].as_slice()).collect();
            match jobs.iter_mut().find(|(s, _)| *s == set) {
                Some((_, members)) => members.push(k),
                None => jobs.push((set, vec![k])),
            }
        }
        let predicted = c.stage_predictions(pos);
        let work = |r: &Range<usize>| -> u64 {
            (r.clone())
                .map(|i| self.emulated(i).0.program.n_pes() * predicted[i])
                .sum()
        };
        let job_work: Vec<u64> = (jobs.iter())
            .map(|(_, m)| m.iter().map(|&k| work(&segments[k].1)).max().unwrap_or(0))
            .collect();
        let owner = share::assign(&job_work, ex.ranks());
        let mine: Vec<&(usize, Range<usize>)> = (jobs.iter().zip(&owner))
            .filter(|(_, o)| **o == ex.rank())
            .flat_map(|((_, m), _)| m.iter().map(|&k| &segments[k]))
            .collect();
        self.reuse.as_mut().expect("checked above").made = Some(Vec::new());
        self.queues.start_making();
        let mut failed = None;
        for (w, r) in mine {
            let mut mask = vec![false; n];
            mask[r.clone()].fill(true);
            if let Err(e) = self.settle(token, Some(&mask)) {
                failed = Some(format!("wafer {w}: {e}"));
                break;
            }
        }
        let reuse = self.reuse.as_mut().expect("checked above");
        let made = reuse.made.take().expect("set above");
        // The wafers' queues its rounds made go with the runs (by
        // reference: they stay kept here): each process's step then
        // queues none of the wafers dealt out.
        let keys = self.queues.take_made();
        let queues: Vec<(&Vec<u8>, &WaferQueue)> = (keys.iter())
            .filter_map(|key| Some((key, self.queues.get(key)?)))
            .collect();
        let mine: Result<(Vec<SegmentRun>, Vec<_>), String> = match failed {
            Some(e) => Err(e),
            None => Ok((
                (made.into_iter())
                    .map(|key| (&reuse.runs[&key], key))
                    .map(|(r, key)| SegmentRun {
                        key,
                        cycles: r.cycles,
                        time: (r.time.compute, r.time.fabric, r.time.idle),
                        outputs: r.outputs.clone(),
                        output_times: r.output_times.clone(),
                        input_times: r.input_times.clone(),
                        backlog: r.backlog,
                        stats: self.keep_stats.then(|| (*r.stats).clone()),
                    })
                    .collect(),
                queues,
            )),
        };
        let made = mine.as_ref().map_or(0, |(runs, _)| runs.len());
        let bytes = postcard::to_allocvec(&mine).expect("results serialise");
        drop(mine);
        let arch = &c.options.arch;
        for (rank, b) in ex.all_gather(bytes).iter().enumerate() {
            let (theirs, queues) =
                results::<(Vec<SegmentRun>, Vec<(Vec<u8>, WaferQueue)>)>(pos, rank, b)?;
            if rank == ex.rank() {
                continue;
            }
            for (key, queue) in queues {
                self.queues.insert(key, queue);
            }
            for s in theirs {
                let (compute, fabric, idle) = s.time;
                let stats = s.stats.unwrap_or_else(|| no_stats(arch, s.cycles));
                reuse.runs.entry(s.key).or_insert(Reusable {
                    cycles: s.cycles,
                    outputs: s.outputs,
                    output_times: s.output_times,
                    input_times: s.input_times,
                    backlog: s.backlog,
                    stats: Arc::new(stats),
                    time: PeTime {
                        compute,
                        fabric,
                        idle,
                    },
                    trace: None,
                    used: reuse.step,
                });
            }
        }
        Ok(made)
    }
}

/// Rank `rank`'s results at position `pos` as it sent them (`bytes`: its
/// runs, or what stopped it).
fn results<T: serde::de::DeserializeOwned>(
    pos: u32,
    rank: usize,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    let sent: Result<T, String> = postcard::from_bytes(bytes).map_err(|e| DecodeError::Shared {
        pos,
        rank,
        message: format!("its results do not decode: {e}"),
    })?;
    sent.map_err(|message| DecodeError::Shared { pos, rank, message })
}

/// What a segment's runs depend on besides when it is fed: each stage's
/// program less its weights (`programs`), where it is placed and the
/// hand-off before it.
fn segment_layout(c: &Compiled, programs: &[Vec<u8>], stages: Range<usize>) -> Vec<u8> {
    let mut layout = Vec::new();
    for i in stages {
        let site = &c.sites[i];
        layout.extend_from_slice(&(programs[i].len() as u64).to_le_bytes());
        layout.extend_from_slice(&programs[i]);
        for v in [site.origin.x, site.origin.y, site.kernel.pitch()] {
            layout.extend_from_slice(&v.to_le_bytes());
        }
        layout.extend_from_slice(&c.routing.handoffs[i].cycles.to_le_bytes());
    }
    layout
}
