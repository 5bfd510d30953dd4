//! Running one stage of a step ([`Decoder::run_stage`]): from its saved
//! SRAM (attention's KV cache), its cached starting image or one built on
//! first use, or, timing-only, from an identical run's results
//! ([`Reuse`]).

use super::{DecodeError, Decoder, PeTime, cancelled, overlap, scratch};
use crate::codegen::Compiled;
use crate::place::Kernel;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wafer_emulator::Cycles;
use wafer_emulator::stats::Stats;
use wafer_emulator::trace::Trace;
use wafer_emulator::{Memory, Prepared, RunConfig, RunError};
use wafer_kernels::Fragment;

/// A timing-only stage run's results, kept for the stages whose programs
/// differ from it only in their weights.
pub(super) struct Reusable {
    pub(super) cycles: u64,
    pub(super) outputs: BTreeMap<String, Vec<f32>>,
    /// When each output wavelet left (empty for a run another process
    /// made: those are not overlapped).
    pub(super) output_times: Cycles,
    /// When each input wavelet entered (empty as `output_times`).
    pub(super) input_times: Cycles,
    /// Its [`StageRun::backlog`].
    pub(super) backlog: u64,
    pub(super) stats: Arc<Stats>,
    pub(super) time: PeTime,
    pub(super) trace: Option<Trace>,
    /// The decode step that last used it.
    pub(super) used: u64,
}

/// Timing-only runs by what determines them: the program less its weights
/// and the inputs' known values
/// ([`wafer_emulator::engine::timing_fingerprint`]). The layers of a model
/// are the same programs with other weights, so a timing-only step
/// emulates each distinct stage once.
#[derive(Default)]
pub(super) struct Reuse {
    pub(super) runs: HashMap<Vec<u8>, Reusable>,
    pub(super) step: u64,
    /// While a step is shared by segments ([`super::Decoder::share`]), the
    /// keys of the runs this process made, in the order it made them.
    pub(super) made: Option<Vec<Vec<u8>>>,
}

/// Each stage's packed program, for a spread attention (`None` for every
/// other stage): its columns side by side again
/// ([`Fragment::pack_columns`]). They trade nothing east or west, so the
/// packed program computes the same outputs at the same cycles, its
/// wavelets entering and leaving when the spread one's do; emulating it
/// steps `pitch` times fewer PEs, and its statistics and trace move back
/// to the spread columns ([`Stats::spread_columns`]). Packing fails only on a
/// fragment whose columns are not `pitch` apart, which then runs as
/// placed (exact either way).
pub(super) fn packed(c: &Compiled) -> Vec<Option<(Arc<Fragment>, u32)>> {
    (c.sites.iter().zip(&c.fragments))
        .map(|(site, f)| match site.kernel.pitch() {
            1 => None,
            pitch => Some((Arc::new(f.clone().pack_columns(pitch).ok()?), pitch)),
        })
        .collect()
}

/// At most this many bytes of stages' starting SRAM are cached between
/// steps (a copy per stage, next to the one a run works on).
pub const IMAGE_CACHE_BYTES: u64 = 8 << 30;

/// A stage's program as the emulator runs it: as placed, or packed.
pub(super) enum Emulated<'c> {
    Placed(&'c Fragment),
    Packed(Arc<Fragment>),
}

impl std::ops::Deref for Emulated<'_> {
    type Target = Fragment;
    fn deref(&self) -> &Fragment {
        match self {
            Emulated::Placed(f) => f,
            Emulated::Packed(f) => f,
        }
    }
}

impl<'c> Decoder<'c> {
    /// The program the emulator runs for stage `i` (its [`packed`] one
    /// where it has one) and the pitch its per-PE results spread by.
    pub(super) fn emulated(&self, i: usize) -> (Emulated<'c>, u32) {
        match &self.packed[i] {
            Some((f, pitch)) => (Emulated::Packed(f.clone()), *pitch),
            None => (Emulated::Placed(&self.compiled.fragments[i]), 1),
        }
    }

    /// Stage `i`'s starting SRAM: a copy from the cache, built on first use
    /// (and kept, when `cache`, while the cache holds under
    /// [`IMAGE_CACHE_BYTES`]).
    fn image(&mut self, i: usize, cache: bool) -> Result<Memory, RunError> {
        if let Some(mem) = &self.images[i] {
            return Ok(wafer_emulator::copy_memory(mem, self.cfg.threads));
        }
        let (f, _) = self.emulated(i);
        let threads = self.cfg.threads;
        let mem = self.prepared(i)?.initial_memory(&f.program, threads)?;
        let bytes: u64 = mem.iter().flatten().map(|s| s.len() as u64).sum();
        if cache && self.image_bytes + bytes <= IMAGE_CACHE_BYTES {
            self.image_bytes += bytes;
            self.images[i] = Some(wafer_emulator::copy_memory(&mem, threads));
        }
        Ok(mem)
    }

    /// Whether no run of stage `i` changes its state
    /// ([`scratch::keeps_state`]), found on first use.
    pub(super) fn keeps_state(&mut self, i: usize) -> bool {
        let (f, _) = self.emulated(i);
        *self.keeps[i].get_or_insert_with(|| scratch::keeps_state(&f))
    }

    /// Keep `mem`, stage `i`'s starting image, for its next run, while
    /// the images held stay under [`IMAGE_CACHE_BYTES`] (counted once a
    /// stage); past it the next run builds the image again.
    fn hold(&mut self, i: usize, mem: Memory) {
        if !self.held[i] {
            let bytes: u64 = mem.iter().flatten().map(|s| s.len() as u64).sum();
            if self.image_bytes + bytes > IMAGE_CACHE_BYTES {
                return;
            }
            self.image_bytes += bytes;
            self.held[i] = true;
        }
        self.memory[i] = Some(mem);
    }

    /// Stage `i`'s prepared program, prepared on first use.
    pub(super) fn prepared(&mut self, i: usize) -> Result<&Prepared, RunError> {
        if self.prepared[i].is_none() {
            let (f, _) = self.emulated(i);
            self.prepared[i] = Some(wafer_emulator::prepare(
                &f.program,
                &self.compiled.options.arch,
            )?);
        }
        Ok(self.prepared[i].as_ref().expect("prepared above"))
    }

    /// Runs stage `i` at the decoder's position on `tensors` (its input
    /// ports' values), fed and held as its arrivals and departures say
    /// (`None`: all at once, never held): from its saved SRAM
    /// (attention's KV cache) or its image, or, `timing`-only, from an
    /// identical run's results (a functional decoder's timing-only run
    /// leaves the stage's SRAM alone).
    pub(crate) fn run_stage(
        &mut self,
        i: usize,
        tensors: &BTreeMap<String, Vec<f32>>,
        (arrivals, departures): Feed<'_>,
        timing: bool,
    ) -> Result<StageRun, DecodeError> {
        let c = self.compiled;
        let stage = &c.stages[i];
        let (f, pitch) = self.emulated(i);
        let arch = &c.options.arch;
        if cancelled(&self.cfg) {
            return Err(DecodeError::Interrupted { pos: self.pos });
        }
        let pos = self.pos;
        let err = |e| match e {
            RunError::Interrupted { .. } => DecodeError::Interrupted { pos },
            e => DecodeError::Run {
                pos,
                stage: stage.name.clone(),
                error: Box::new(e),
            },
        };
        let inputs = f.stream_inputs(tensors).map_err(|e| {
            err(RunError::Input {
                name: stage.name.clone(),
                message: e.to_string(),
            })
        })?;
        let keep = !timing && matches!(c.sites[i].kernel, Kernel::Attention(_));
        // A stage whose runs leave its state alone runs again on the SRAM
        // its last run ended with, its scratch zeroed: its image without
        // a copy.
        let resident = !timing && !keep && self.keeps_state(i);
        // Arrivals and departures change the timing: they are part of
        // what a run is reused by.
        let key = (timing && self.reuse.is_some()).then(|| {
            let mut key = wafer_emulator::engine::timing_fingerprint(&f.program, &inputs);
            for (tag, times) in [(b'a', &arrivals), (b'd', &departures)] {
                for (name, at) in times.iter().flat_map(|a| a.iter()) {
                    key.push(tag);
                    key.extend_from_slice(name.as_bytes());
                    key.push(0);
                    at.iter()
                        .for_each(|t| key.extend_from_slice(&t.to_le_bytes()));
                }
            }
            key
        });
        let step = self.reuse.as_ref().map_or(0, |r| r.step);
        let overlapped = self.overlap.is_some();
        let hit = key
            .as_ref()
            .and_then(|k| self.reuse.as_mut()?.runs.get_mut(k));
        if let Some(run) = hit {
            run.used = step;
            return Ok(StageRun {
                out: f.gather(&f.outputs[0], &run.outputs),
                // Only an overlapped step reads them.
                output_times: match overlapped {
                    true => run.output_times.clone(),
                    false => BTreeMap::new(),
                },
                input_times: match overlapped {
                    true => run.input_times.clone(),
                    false => BTreeMap::new(),
                },
                backlog: run.backlog,
                cycles: run.cycles,
                time: run.time,
                stats: self.keep_stats.then(|| spread_stats(&run.stats, pitch)),
                trace: run.trace.clone().map(|t| t.spread_columns(pitch)),
                reused: true,
                host_seconds: 0.0,
            });
        }
        #[cfg(test)]
        {
            self.functional_runs += !timing as usize;
        }
        let started = std::time::Instant::now();
        // A timing-only run starts from no SRAM: a functional decoder's
        // stays where it is for its functional runs.
        let mut start = match timing {
            true => None,
            false => match self.memory[i].take() {
                Some(mem) => Some(mem),
                // A kept or resident stage resumes from its own SRAM from
                // now on: no copy of its image is worth caching.
                None => Some(self.image(i, !keep && !resident).map_err(err)?),
            },
        };
        if let Some(mem) = start.as_mut().filter(|_| self.scramble) {
            scratch::scramble(&f, mem);
        }
        let cfg = RunConfig {
            arrivals: arrivals.clone(),
            departures: departures.clone(),
            timing_only: timing,
            ..self.cfg.clone()
        };
        let r = match start {
            Some(mem) => {
                let prep = self.prepared(i).map_err(err)?;
                prep.run_resume(&f.program, &inputs, &cfg, mem)
            }
            None => wafer_emulator::run(&f.program, arch, &inputs, &cfg),
        }
        .map_err(err)?;
        let out = f.gather(&f.outputs[0], &r.outputs);
        let backlog = backlog(arrivals.as_deref(), &r.input_times);
        let stats = Arc::new(r.stats);
        let time = PeTime::of(&stats);
        if keep {
            self.memory[i] = Some(r.memory);
        } else if resident {
            let mut mem = r.memory;
            scratch::zero_scratch(&f, &mut mem);
            self.hold(i, mem);
        }
        let trace = match (key, self.reuse.as_mut()) {
            (Some(k), Some(reuse)) => {
                let trace = r.trace.clone();
                let run = Reusable {
                    cycles: r.cycles,
                    outputs: r.outputs,
                    output_times: r.output_times.clone(),
                    input_times: r.input_times.clone(),
                    backlog,
                    stats: stats.clone(),
                    time,
                    trace: r.trace,
                    used: step,
                };
                if let Some(made) = reuse.made.as_mut() {
                    made.push(k.clone());
                }
                reuse.runs.insert(k, run);
                trace
            }
            _ => r.trace,
        }
        .map(|t| t.spread_columns(pitch));
        Ok(StageRun {
            out,
            output_times: r.output_times,
            input_times: r.input_times,
            backlog,
            cycles: r.cycles,
            time,
            stats: self.keep_stats.then(|| spread_stats(&stats, pitch)),
            trace,
            reused: false,
            host_seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// A packed run's statistics where the spread program's PEs are (the
/// same ones at pitch 1).
fn spread_stats(stats: &Arc<Stats>, pitch: u32) -> Arc<Stats> {
    match pitch {
        1 => stats.clone(),
        p => Arc::new(stats.spread_columns(p)),
    }
}

/// One stage's run ([`Decoder::run_stage`]).
#[derive(Clone)]
pub(crate) struct StageRun {
    /// Its output port's values.
    pub out: Vec<f32>,
    /// When each of its output streams' wavelets left
    /// ([`wafer_emulator::RunResult::output_times`]).
    pub output_times: Cycles,
    /// When each of its input streams' wavelets entered
    /// ([`wafer_emulator::RunResult::input_times`]; overlapped only).
    pub input_times: Cycles,
    /// Fed arrivals, the most of its input wavelets waiting at its edge
    /// at once ([`overlap::backlog`]).
    pub backlog: u64,
    pub cycles: u64,
    pub time: PeTime,
    /// Its statistics, when the decoder keeps them.
    pub stats: Option<Arc<Stats>>,
    pub trace: Option<Trace>,
    /// Whether an identical run's results stood in for it.
    pub reused: bool,
    /// Host seconds its emulation took (0 when reused).
    pub host_seconds: f64,
}

/// A stage's arrivals and departures ([`wafer_emulator::RunConfig`]),
/// as a pass keeps them.
pub(crate) type Feed<'a> = (
    &'a Option<Arc<wafer_emulator::Arrivals>>,
    &'a Option<Arc<wafer_emulator::Departures>>,
);

impl StageRun {
    /// Whether this run, fed as `ran` says, is the run `asked` would
    /// make ([`wafer_emulator::Fed::serves`]).
    pub(super) fn serves(&self, ran: Feed<'_>, asked: Feed<'_>) -> bool {
        fed(ran).serves(fed(asked), &self.input_times, &self.output_times)
    }
}

fn fed<'a>((arrivals, departures): Feed<'a>) -> wafer_emulator::Fed<'a> {
    wafer_emulator::Fed {
        arrivals: arrivals.as_deref(),
        departures: departures.as_deref(),
    }
}

/// The most wavelets that waited at once at a stage's edge, over its
/// input streams ([`overlap::backlog`]): `arrivals` against when its run
/// took them in (`entered`).
pub(super) fn backlog(arrivals: Option<&wafer_emulator::Arrivals>, entered: &Cycles) -> u64 {
    (arrivals.iter().flat_map(|a| a.iter()))
        .filter_map(|(name, at)| Some(overlap::backlog(at, entered.get(name)?)))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use crate::decode::{Decoder, Step};
    use crate::place::PlacementKind;
    use crate::{compile, llama2c};
    use wafer_emulator::DType;

    /// Everything a step reports of its stages but the host's seconds.
    fn seen(s: &Step) -> impl PartialEq + std::fmt::Debug {
        let logits: Vec<u32> = s.logits.iter().map(|x| x.to_bits()).collect();
        let stats: Vec<_> = s.stage_stats.iter().map(|s| (**s).clone()).collect();
        (
            (s.next, logits, s.cycles, s.stage_cycles.clone()),
            (
                s.stage_start.clone(),
                s.stage_time.clone(),
                s.stage_reused.clone(),
            ),
            (stats, s.stage_traces.clone()),
        )
    }

    /// A spread attention's packed program stands in for it exactly: the
    /// steps of a decoder that emulates the spread programs as placed and
    /// of one that emulates them packed report the same tokens, logits,
    /// cycles, start cycles, statistics and traces, functional with the
    /// KV cache carried over positions and timing-only overlapped with
    /// the runs of later layers reused.
    #[test]
    fn a_packed_attention_runs_as_the_spread_one() {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let (c, w) = llama2c::load(&models.join("stories260K.bin")).unwrap();
        let o = crate::place::Options {
            tiles: Some(crate::place::Tiles { cols: 2, rows: 1 }),
            ..crate::place::Options::on_wse3_grid(48, 48, PlacementKind::Mesh, DType::BF16)
        };
        let compiled = compile(&c, Some(&w), &o).unwrap();
        let packed = Decoder::new(&compiled).packed;
        let spread = (compiled.sites.iter()).filter(|s| s.kernel.pitch() > 1);
        assert_eq!(spread.count(), c.n_layers, "every attention spread");
        for (i, p) in packed.iter().enumerate() {
            let pitch = compiled.sites[i].kernel.pitch();
            match p {
                Some((f, p)) => {
                    assert_eq!(*p, pitch);
                    let placed = &compiled.fragments[i].program;
                    assert_eq!(f.program.width, (placed.width - 1) / pitch + 1);
                    assert!(f.program.n_pes() < placed.n_pes());
                }
                None => assert_eq!(pitch, 1, "{}", compiled.stages[i].name),
            }
        }
        for timing in [false, true] {
            let decoder = |pack: bool| {
                let mut d = Decoder::new(&compiled);
                if !pack {
                    d.packed.iter_mut().for_each(|p| *p = None);
                }
                d.timing_only(timing);
                d.overlap(timing);
                d.trace(100_000);
                d
            };
            let (mut a, mut b) = (decoder(true), decoder(false));
            for token in [1, 72, 9] {
                let (sa, sb) = (a.step(token).unwrap(), b.step(token).unwrap());
                assert_eq!(seen(&sa), seen(&sb), "timing-only {timing}, token {token}");
                if timing {
                    assert!(sa.stage_reused.iter().any(|r| *r));
                }
            }
        }
    }

    /// A pass's run of a stage stands in for the next pass's run when the
    /// next is fed later and held later, no later than the run took its
    /// inputs and sent its outputs ([`wafer_emulator::Fed::serves`]): a
    /// decoder that reuses such runs and one that emulates them again
    /// report the same steps (the waits at each stage's edge included),
    /// functional and timing-only, free and queued, and the first reused
    /// some.
    #[test]
    fn a_later_pass_fed_within_what_its_run_took_reuses_it_exactly() {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let (c, w) = llama2c::load(&models.join("stories260K.bin")).unwrap();
        let o = crate::place::Options::on_wse3_grid(48, 48, PlacementKind::Mesh, DType::BF16);
        let compiled = compile(&c, Some(&w), &o).unwrap();
        for (timing, queue) in [(false, false), (true, false), (true, true)] {
            let decoder = |serve: bool| {
                let mut d = Decoder::new(&compiled);
                d.serve_later = serve;
                d.timing_only(timing);
                d.overlap(true);
                if queue {
                    let order = crate::decode::links::Order::BOTH[0];
                    d.queue_links(Some((crate::decode::links::Paths::Ordered(order), 16)));
                }
                d
            };
            let (mut a, mut b) = (decoder(true), decoder(false));
            let runs = |s: &Step| {
                s.stage_emulated
                    .iter()
                    .map(|e| e.runs as usize)
                    .sum::<usize>()
            };
            for token in [1, 72, 9] {
                let served = a.served;
                let (sa, sb) = (a.step(token).unwrap(), b.step(token).unwrap());
                let at = format!("timing-only {timing}, queued {queue}, token {token}");
                assert_eq!(seen(&sa), seen(&sb), "{at}");
                assert_eq!(
                    (&sa.stage_backlog, sa.passes, sa.queued_rounds),
                    (&sb.stage_backlog, sb.passes, sb.queued_rounds),
                    "{at}"
                );
                // Each run served is one fewer emulated (timing-only, the
                // other decoder may find some of them among its reused runs).
                let fewer = a.served - served;
                match timing {
                    false => assert_eq!(runs(&sa) + fewer, runs(&sb), "{at}"),
                    true => assert!(runs(&sa) <= runs(&sb) && runs(&sb) <= runs(&sa) + fewer),
                }
            }
            assert!(
                a.served > 0,
                "timing-only {timing}, queued {queue}: none served"
            );
            assert_eq!(b.served, 0);
        }
    }

    /// A functional overlapped step that finds its holds on timing-only
    /// runs first ([`Decoder::settle_on_timing`]) is the step its
    /// functional passes make: the same tokens, logits, cycles, starts,
    /// statistics, traces, waits at the edges and passes, on both
    /// placements, with each stage run functionally once a step (after a
    /// step of more than one pass; after one of a single pass, as before). One
    /// whose functional pass is fed no holds (as though the timing-only
    /// passes had settled wrongly) does not settle, starts again
    /// functionally, and makes the same step.
    #[test]
    fn a_step_settled_on_timing_only_runs_is_its_functional_passes_step() {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let (c, w) = llama2c::load(&models.join("stories260K.bin")).unwrap();
        for kind in [PlacementKind::Mesh, PlacementKind::Pipeline] {
            let o = crate::place::Options::on_wse3_grid(48, 48, kind, DType::BF16);
            let compiled = compile(&c, Some(&w), &o).unwrap();
            for drop in [false, true] {
                let decoder = |first: bool| {
                    let mut d = Decoder::new(&compiled);
                    d.overlap(true);
                    d.trace(100_000);
                    d.settle_on_timing(first);
                    d.drop_timing_holds = drop;
                    d
                };
                let (mut a, mut b) = (decoder(true), decoder(false));
                let (mut held, mut first) = (0, 0);
                for token in [1, 72, 9, 30] {
                    let at = format!("{kind:?}, holds dropped {drop}, token {token}");
                    let (runs, restarts) = (a.functional_runs, a.timing_restarts);
                    let timing_first = a.last_passes > 1;
                    let (sa, sb) = (a.step(token).unwrap(), b.step(token).unwrap());
                    assert_eq!(seen(&sa), seen(&sb), "{at}");
                    assert_eq!(
                        (&sa.stage_backlog, &sa.stage_held, sa.passes),
                        (&sb.stage_backlog, &sb.stage_held, sb.passes),
                        "{at}"
                    );
                    let ran = sa.stage_ran.iter().filter(|r| **r).count();
                    let restarted = a.timing_restarts - restarts;
                    held += (sb.passes > 1) as usize;
                    first += timing_first as usize;
                    if !timing_first {
                        assert_eq!(restarted, 0, "{at}: functional passes");
                    } else if drop {
                        assert_eq!(restarted, (sb.passes > 1) as usize, "{at}");
                        assert!(a.functional_runs - runs >= ran, "{at}");
                    } else {
                        assert_eq!(restarted, 0, "{at}");
                        assert_eq!(a.functional_runs - runs, ran, "{at}: once a stage");
                    }
                }
                assert!(held > 0, "{kind:?}: no step held a stage, nothing tested");
                assert!(first > 0, "{kind:?}: no step settled on timing-only runs");
                assert_eq!(b.timing_restarts, 0);
                if drop {
                    assert!(a.timing_restarts > 0, "{kind:?}: none started again");
                }
            }
        }
    }
}
