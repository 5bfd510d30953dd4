//! One pass over a step's stages ([`Decoder::step`]): which stages run
//! (a mixture of experts runs the picked ones), whether the passes run
//! timing-only first ([`Decoder::settle_on_timing`]), when each is fed
//! and held in an overlapped step, and the record of what each did, made
//! into the [`Step`] once the pass settles.

use super::run::StageRun;
use super::step::Emulated;
use super::{DecodeError, Decoder, PeTime, Step, links, no_stats, overlap};
use std::collections::BTreeMap;
use std::sync::Arc;
use wafer_emulator::stats::Stats;
use wafer_emulator::trace::Trace;
use wafer_emulator::{Arrivals, Departures, RunError};

/// What each stage did in a pass, in stage order (see [`Step`]'s fields
/// of the same names).
#[derive(Default)]
pub(super) struct Record {
    cycles: Vec<u64>,
    time: Vec<PeTime>,
    stats: Vec<Arc<Stats>>,
    traces: Vec<Option<Trace>>,
    reused: Vec<bool>,
    emulated: Vec<Emulated>,
    ran: Vec<bool>,
    start: Vec<u64>,
    waited_on: Vec<Option<usize>>,
    backlog: Vec<u64>,
    held: Vec<bool>,
}

impl Record {
    /// A stage that did not run (an expert the router did not pick): its
    /// cycles and time 0, its statistics empty.
    pub fn skipped(&mut self, keep_stats: bool, arch: &wafer_emulator::Arch) {
        self.ran.push(false);
        self.start.push(0);
        self.waited_on.push(None);
        self.backlog.push(0);
        self.held.push(false);
        self.cycles.push(0);
        self.time.push(PeTime::default());
        if keep_stats {
            self.stats.push(Arc::new(no_stats(arch, 0)));
        }
        self.traces.push(None);
        self.reused.push(false);
        self.emulated.push(Emulated::default());
    }

    /// A stage that ran from `start`, after `waited_on`, held back by its
    /// consumers or not; `emulated`, what its runs took over the passes.
    /// Returns its output values.
    pub fn ran(
        &mut self,
        (start, waited_on, held): (u64, Option<usize>, bool),
        run: StageRun,
        emulated: Emulated,
    ) -> Vec<f32> {
        self.ran.push(true);
        self.start.push(start);
        self.waited_on.push(waited_on);
        self.held.push(held);
        self.cycles.push(run.cycles);
        self.backlog.push(run.backlog);
        self.time.push(run.time);
        if let Some(stats) = run.stats {
            self.stats.push(stats);
        }
        self.traces.push(run.trace);
        self.reused.push(run.reused);
        self.emulated.push(emulated);
        run.out
    }

    pub fn into_step(self, s: Settled) -> Step {
        Step {
            next: s.next,
            logits: s.logits,
            stage_cycles: self.cycles,
            stage_time: self.time,
            stage_stats: self.stats,
            stage_traces: self.traces,
            cycles: s.cycles,
            stage_start: self.start,
            stage_waited_on: self.waited_on,
            stage_backlog: self.backlog,
            stage_held: self.held,
            parked: s.parked,
            passes: s.passes,
            queued_rounds: s.queued_rounds,
            queue_settled: s.queue_settled,
            queue_wafers: s.queue_wafers,
            links: s.links,
            queue_waits: s.queue_waits,
            stage_reused: self.reused,
            stage_emulated: self.emulated,
            stage_ran: self.ran,
        }
    }
}

/// What a settled pass adds to its [`Record`] to make the [`Step`].
pub(super) struct Settled {
    pub next: u32,
    pub logits: Vec<f32>,
    pub cycles: u64,
    pub passes: usize,
    pub queued_rounds: usize,
    pub queue_settled: bool,
    pub queue_wafers: super::QueueCounts,
    pub links: Vec<links::LinkLoad>,
    pub queue_waits: Vec<links::HandoffWait>,
    /// Overlapped, what the parked receives took ([`super::park`]).
    pub parked: Option<super::park::Summary>,
}

/// Overlapped with the links queued: per trip, how much later than a
/// free route the last round's queue had it reach its consumer's edge,
/// and per consumer stage its trips.
pub(super) struct Carried {
    pub delay: Vec<u64>,
    pub into: Vec<Vec<u32>>,
}

impl Carried {
    /// No delay yet, for `plan`'s trips into a step of `n` stages.
    pub fn new(plan: &overlap::Plan, n: usize) -> Carried {
        let mut into = vec![Vec::new(); n];
        for (k, t) in plan.trips.iter().enumerate() {
            into[t.to].push(k as u32);
        }
        Carried {
            delay: vec![0; plan.trips.len()],
            into,
        }
    }
}

/// An overlapped stage's start, its inputs' arrivals from that start
/// (`None`: none of its own) and the stage it waited on last.
pub(super) struct Fed {
    pub start: u64,
    pub arrivals: Option<Arc<Arrivals>>,
    pub waited_on: Option<usize>,
}

impl Decoder<'_> {
    /// Whether a functional overlapped step finds its holds on timing-only
    /// runs before it runs its stages functionally (on by default). A
    /// step's passes differ only in when each stage is fed and held, and a
    /// timing-only run takes in and sends out every wavelet when a
    /// functional run fed the same does
    /// ([`wafer_emulator::RunConfig::timing_only`]), so
    /// the timing-only passes move the holds as functional ones would and
    /// settle on the same; then one functional pass, fed as the last of
    /// them, computes the values (and the step, as the functional loop's
    /// last pass would). The timing-only runs are reused across the
    /// layers and steps ([`Decoder::reuse`]), so a step runs each stage
    /// functionally once instead of once a pass. The functional pass
    /// checks that it settles; one that did not would start the step
    /// again functionally from no holds. Only after a step that took more
    /// than one pass (a step that settles in its first pass, as the 1B's
    /// mesh steps do, runs that pass functionally: timing-only passes
    /// first would only add to it), only with [`Decoder::reuse`] on
    /// (without it the timing-only passes cost about what functional ones
    /// do), and not for a mixture of experts (its functional passes run
    /// the router's picks, its timing-only ones seeded ones), queued links
    /// or a wafer's segment ([`Decoder::share`]): those run every pass
    /// functionally.
    pub fn settle_on_timing(&mut self, on: bool) {
        self.timing_first = on;
    }

    /// Whether this step for a segment (or the whole step: `None`)
    /// settles on timing-only runs first ([`Decoder::settle_on_timing`]).
    pub(super) fn settles_on_timing(&self, segment: Option<&[bool]>) -> bool {
        self.timing_first
            && self.last_passes > 1
            && !self.cfg.timing_only
            && self.overlap.is_some()
            && self.reuse.is_some()
            && self.queue_links.is_none()
            && segment.is_none()
            && self.compiled.stages.iter().all(|s| s.when.is_none())
    }

    /// Whether stage `i` runs this step: every stage but the experts its
    /// router did not pick (a timing-only step's picks are a seeded
    /// routing's). `picked` keeps each route value's picks for the step.
    pub(super) fn runs(
        &self,
        i: usize,
        values: &[Option<Vec<f32>>],
        picked: &mut BTreeMap<usize, Vec<usize>>,
    ) -> Result<bool, DecodeError> {
        let c = self.compiled;
        let stage = &c.stages[i];
        let Some(p) = stage.when else {
            return Ok(true);
        };
        if let Some(picks) = picked.get(&p.route) {
            return Ok(picks.contains(&p.expert));
        }
        let (experts, k) = crate::experts::shape(&c.graph, p.route);
        let picks = if self.cfg.timing_only {
            crate::experts::seeded(self.expert_seed, self.pos, p.route, experts, k)
        } else {
            let route = values[p.route].as_deref().unwrap_or(&[]);
            crate::experts::from_route(route, experts).ok_or_else(|| DecodeError::Routing {
                pos: self.pos,
                stage: stage.name.clone(),
                route: route.to_vec(),
            })?
        };
        Ok(picked.entry(p.route).or_insert(picks).contains(&p.expert))
    }

    /// Stage `i`'s input `message` refused, as a decode error.
    fn input_error(&self, i: usize, message: String) -> DecodeError {
        let name = &self.compiled.stages[i].name;
        DecodeError::Run {
            pos: self.pos,
            stage: name.clone(),
            error: Box::new(RunError::Input {
                name: name.clone(),
                message,
            }),
        }
    }

    /// Overlapped, stage `i`'s start, its inputs' arrivals (from that
    /// start) and the stage it waited on last, from the stages before it
    /// (`ends`, `left`: see [`overlap::Plan::schedule`]); with the links
    /// queued, no earlier than its trips reach it: each trip's free-route
    /// arrival from this pass's sends plus the delay the last round's
    /// queue gave it (`carried`).
    pub(super) fn fed(
        &self,
        (plan, i): (&overlap::Plan, usize),
        (ends, left): (&[Option<u64>], &[Option<Vec<u64>>]),
        carried: Option<&Carried>,
    ) -> Result<Fed, DecodeError> {
        let c = self.compiled;
        let hop = c.options.arch.hop_latency as u64;
        let s = plan.schedule(c, i, ends, left);
        let mut arrivals = (c.fragments[i].arrivals(&s.arrivals))
            .map_err(|e| self.input_error(i, e.to_string()))?;
        let mut fed: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        if let Some(q) = carried {
            for &k in &q.into[i] {
                let (t, d) = (&plan.trips[k as usize], q.delay[k as usize]);
                if let (true, Some(r)) = (d > 0, t.reached(left, hop)) {
                    let at = fed.entry(t.into).or_default();
                    *at = (*at).max(r + d);
                }
            }
        }
        for (&(stream, k), &q) in &fed {
            let name = &c.fragments[i].program.inputs[stream as usize].name;
            if let Some(a) = arrivals.get_mut(name).and_then(|a| a.get_mut(k as usize)) {
                *a = (*a).max(q.saturating_sub(s.start));
            }
        }
        Ok(Fed {
            start: s.start,
            arrivals: (!arrivals.is_empty()).then(|| Arc::new(arrivals)),
            waited_on: s.waited_on,
        })
    }

    /// Stage `i` held back by its consumers' edges (see `overlap.rs`):
    /// when each output wavelet may leave, from its run's `start`, given
    /// each element's absolute cycle `held`.
    pub(super) fn departures(
        &self,
        i: usize,
        held: Option<&Vec<u64>>,
        start: u64,
    ) -> Result<Option<Arc<Departures>>, DecodeError> {
        let Some(h) = held else {
            return Ok(None);
        };
        let rel = h.iter().map(|t| t.saturating_sub(start)).collect();
        let f = &self.compiled.fragments[i];
        let d = (f.departures(&BTreeMap::from([(f.outputs[0].name.clone(), rel)])))
            .map_err(|e| self.input_error(i, e.to_string()))?;
        Ok(Some(Arc::new(d)))
    }
}
