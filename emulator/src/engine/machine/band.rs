//! Stepping a machine in bands of PEs, on several threads.
//!
//! A run on an event-driven engine without a trace, with `--threads`
//! above 1, is built as bands ([`Machine::build`]): ranges of PEs in
//! index order (a few rows each on a large grid), each with its routers,
//! cores, counters, host streams and the FIFOs they pop. Every cycle then has
//! two phases, each shared out as runs of bands between the calling thread
//! and the helpers of a [`Crew`], which stay awake between phases:
//! 1. every band with something due steps its host inputs and its awake
//!    units, as the whole machine would. A router's push into a buffer
//!    another band pops goes out on a link instead ([`Dest::Remote`]),
//!    and the pushing band decides alone whether it fits, by the link's
//!    room: the buffer's capacity less what is in it or in flight to it;
//! 2. every band sent anything takes in the wavelets pushed into its
//!    buffers and the room its pops freed in other bands' links.
//!
//! Exact, whatever the number of bands or threads: by the semantics in
//! `engine/mod.rs` a cycle's outcome does not depend on the order units
//! are stepped in. Nothing pushed in a cycle is visible in it (a hop
//! takes at least a cycle), each buffer has one pusher (the router on the
//! other end of its link, or the host), and a pop frees room only from
//! the next cycle on; so the room a pusher sees in a cycle is the room at
//! the cycle's start less its own push, which is what a link's room
//! holds. A step that fails returns the lowest band's error: the first a
//! whole machine's step, in unit order, would have met. The result is
//! built from the bands; a deadlock or the cycle limit is reported by
//! the bands joined back into one machine.

use super::build::FifoPlan;
use super::crew::{self, Crew};
use super::*;
use rayon::prelude::*;
use std::sync::{Mutex, RwLock};

/// A band holds about this many PEs, and there are at least two per
/// thread: many bands, taken by whichever thread is free, balance a
/// cycle whose work sits in part of the grid over the threads.
const BAND_PES: usize = 64;

/// At most this many bands. Thin bands balance a wavefront better, but a
/// band narrower than a few rows sends most of the vertical traffic
/// across its edges and costs a step every cycle. Measured on the 8B's
/// stages as compiled (730 × 1,170 PEs, timing-only, 2 threads):
/// streamed MeshGEMV `wq_wk_wv` 13.6 s with 255 bands, 17.2 s with
/// 1,024, 23.8 s with 4,096; tiled GEMV `classifier` (x down the
/// columns, so each cycle one row of cores starts its tile loop: the
/// work of a cycle sits in one band of a few rows) 59.4 s, 56.3 s and
/// 52.5-55.9 s (74-76 s on one thread).
const MAX_BANDS: usize = 255;

/// Tasks per worker thread in a phase: runs of bands of about equal
/// work, so a task's overhead is paid per run, not per band.
const CHUNKS_PER_THREAD: usize = 16;

/// A unit's step, counted as this much work against
/// [`RunConfig::min_parallel_work`]: a cycle with fewer awake units
/// steps its bands on the calling thread.
const UNIT_WORK: u64 = 64;

/// A core due from a jump this cycle, counted as this many units: its
/// step goes on through its next local steps (`Machine::chain`, up to
/// 4,096 cycles of them), in a functional run a tile's arithmetic. As one
/// unit, the cycles in which a GEMV's cores start their tile loops (63
/// awake units a cycle on average, 4.6 µs of work each) stayed on one
/// thread: on the 1B's projection shape (`wafer kernel gemv --shape
/// 16384x2048 --dtype bf16 --rect 150x182 --strategy tree --threads 2`)
/// 568 of the 1,340 stepped cycles, 36,007 units that took 160-167 ms of
/// a 650-860 ms loop; counted so, 51 cycles stay alone and take 1 ms.
const DUE_CORE_UNITS: u64 = 64;

/// A band on a cache line of its own: the threads stepping neighbouring
/// bands write their own machine's fields every cycle.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A band's links into the buffers of other bands, and what crossed
/// between bands in the cycle being stepped. Empty on a machine stepped
/// whole.
#[derive(Default)]
pub(super) struct Links {
    /// This band's place among the bands.
    band: u32,
    to: Vec<Link>,
    /// Per buffer of this band that another band pushes ([`Ring::link`]
    /// indexes it): that band and its link.
    ///
    /// [`Ring::link`]: super::super::fifo::Ring::link
    back: Vec<(u32, u32)>,
    /// The bands that can send this one anything: those pushing into its
    /// buffers and those popping the buffers its links feed (neighbours
    /// in the grid, so the bands a row or so either side).
    from: std::ops::Range<usize>,
    cross: Crossings,
}

/// A link from this band into a buffer another band pops.
pub(super) struct Link {
    pub(super) fifo: FifoId,
    /// The band that pops it.
    pub(super) band: u32,
    /// What may still be pushed into it: its capacity less what is in it
    /// or in flight to it, as of the cycle's start, less this cycle's push.
    pub(super) room: u32,
}

/// What one band sent the others in a cycle, per receiving band from
/// `lo` on (the bands it can send to: its [`Links::from`]).
#[derive(Default)]
struct Crossings {
    lo: usize,
    /// Wavelets pushed into that band's buffers: (buffer, ready cycle,
    /// bits).
    pushed: Vec<Vec<(FifoId, u64, u32)>>,
    /// Room freed in that band's links by popping their buffer.
    freed: Vec<Vec<u32>>,
}

impl Crossings {
    fn new(to: std::ops::Range<usize>) -> Crossings {
        Crossings {
            lo: to.start,
            pushed: vec![Vec::new(); to.len()],
            freed: vec![Vec::new(); to.len()],
        }
    }

    /// The bands this sends anything to.
    fn to(&self) -> impl Iterator<Item = usize> + '_ {
        let sends = self.pushed.iter().zip(&self.freed);
        (sends.enumerate())
            .filter(|(_, (p, f))| !p.is_empty() || !f.is_empty())
            .map(|(i, _)| self.lo + i)
    }

    fn clear(&mut self) {
        self.pushed.iter_mut().for_each(Vec::clear);
        self.freed.iter_mut().for_each(Vec::clear);
    }
}

impl Links {
    /// Band `band`'s, its links not yet connected ([`connect`]).
    pub(super) fn new(band: usize) -> Links {
        Links {
            band: band as u32,
            ..Links::default()
        }
    }

    pub(super) fn has_room(&self, link: u32) -> bool {
        self.to[link as usize].room > 0
    }

    /// This band popped its buffer `back` (a [`Ring::link`]), pushed from
    /// another band: a slot of room for that band's link.
    ///
    /// [`Ring::link`]: super::super::fifo::Ring::link
    pub(super) fn freed(&mut self, back: u32) {
        let (band, link) = self.back[back as usize];
        self.cross.freed[band as usize - self.cross.lo].push(link);
    }

    /// A push into another band's buffer through link `i`, ready at cycle
    /// `ready`: it lands there between cycles.
    pub(super) fn push(&mut self, i: u32, ready: u64, bits: u32) {
        let l = &mut self.to[i as usize];
        l.room -= 1;
        self.cross.pushed[l.band as usize - self.cross.lo].push((l.fifo, ready, bits));
    }
}

/// Whether a run of `cfg` steps a grid laid out as `layout` in bands:
/// not on the reference engine, with a recorded trace (its spans are kept
/// in the order a whole step makes them), on one thread, or on a grid
/// under [`RunConfig::band_min_pes`].
pub(super) fn banded(layout: &Layout, cfg: &RunConfig) -> bool {
    let n = layout.code_of.len();
    let reference = cfg.engine == crate::engine::Engine::Reference;
    !(reference || cfg.trace || cfg.threads < 2 || n < cfg.band_min_pes.max(2))
}

/// Where to cut a machine into bands for `cfg` (the first PE of each
/// band but the first), or `None` to step it whole (where it is not
/// [`banded`]). The cuts balance the route entries and cores the bands
/// hold.
pub(super) fn cuts(plan: &FifoPlan, layout: &Layout, cfg: &RunConfig) -> Option<Vec<usize>> {
    if !banded(layout, cfg) {
        return None;
    }
    let n = layout.code_of.len();
    let bands = (n / BAND_PES).max(2 * cfg.threads).min(n).min(MAX_BANDS);
    let weights: Vec<u64> = (0..n)
        .into_par_iter()
        .map(|pe| plan.routes(pe) as u64 + 2 * (layout.code_of[pe] != NONE) as u64 + 1)
        .collect();
    let total: u64 = weights.iter().sum();
    let mut cuts = Vec::with_capacity(bands - 1);
    let mut sum = 0;
    for (pe, w) in weights.into_iter().enumerate() {
        let k = cuts.len() as u64 + 1;
        if k < bands as u64 && sum >= k * total / bands as u64 && pe > 0 {
            cuts.push(pe);
        }
        sum += w;
    }
    (!cuts.is_empty()).then_some(cuts)
}

/// Band `b`'s links (`links[b]`, from [`Machine::build`]) connected to
/// the buffers they feed: each such buffer marked with its way back to
/// the link, and each band told which bands can send it anything.
pub(super) fn connect(bands: &mut [Machine<'_>], links: Vec<Vec<Link>>) {
    let n = bands.len();
    let mut backs: Vec<Vec<(u32, u32)>> = (0..n).map(|_| Vec::new()).collect();
    let mut from: Vec<std::ops::Range<usize>> = (0..n).map(|b| b..b + 1).collect();
    for (b, l) in links.iter().enumerate() {
        for (i, link) in l.iter().enumerate() {
            let o = link.band as usize;
            let ring = bands[o].fifos.ring_mut(link.fifo);
            debug_assert!(ring.link == NONE, "a buffer has one pusher");
            ring.link = backs[o].len() as u32;
            backs[o].push((b as u32, i as u32));
            for (x, y) in [(b, o), (o, b)] {
                from[x] = from[x].start.min(y)..from[x].end.max(y + 1);
            }
        }
    }
    if n == 1 {
        return;
    }
    for (((m, l), back), from) in bands.iter_mut().zip(links).zip(backs).zip(from) {
        m.bands.to = l;
        m.bands.back = back;
        m.bands.cross = Crossings::new(from.clone());
        m.bands.from = from;
    }
}

/// Run `bands` (from [`Machine::build`]) to the end: `run_whole`'s loop,
/// each cycle's two phases shared between the calling thread and up to
/// `cfg.threads - 1` helpers ([`Crew`]) that stay awake between them.
pub(super) fn run(bands: Vec<Machine<'_>>, cfg: &RunConfig) -> Result<RunResult, RunError> {
    let n = bands.len();
    let bands: Vec<Padded<Mutex<Machine<'_>>>> =
        bands.into_iter().map(|m| Padded(Mutex::new(m))).collect();
    let lock = |b: usize| {
        bands[b]
            .lock()
            .expect("a band's step does not panic holding it")
    };
    // What a phase's tasks read: the bands each steps, cut into runs of
    // about equal work, and what the bands sent each other.
    let plan = RwLock::new(Plan::default());
    let crossed: RwLock<Vec<Crossings>> =
        RwLock::new((0..n).map(|_| Crossings::default()).collect());
    let errors: Mutex<Vec<(usize, RunError)>> = Mutex::new(Vec::new());
    let job = |task: usize| {
        let plan = plan.read().expect("written between phases");
        let items = &plan.items[plan.runs[task].clone()];
        match plan.kind {
            Kind::Step => {
                // A run stops at its first error, as a whole step would.
                for &b in items {
                    let mut m = lock(b);
                    m.now = plan.now;
                    m.activity = false;
                    m.step_host();
                    if let Err(e) = m.step_awake() {
                        errors.lock().expect("held only to push").push((b, e));
                        break;
                    }
                }
            }
            Kind::Receive => {
                let crossed = crossed.read().expect("written between phases");
                items.iter().for_each(|&b| lock(b).receive(&crossed));
            }
        }
    };
    let crew = Crew::new();
    // Helpers spin while they wait, so past the host's cores they would
    // only take turns with the threads doing the work; past the bands
    // they would have nothing to take.
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let helpers = (cfg.threads.min(cores).min(n)).saturating_sub(1);
    let outcome = std::thread::scope(|s| {
        for _ in 0..helpers {
            s.spawn(|| crew.help(&job));
        }
        // However the loop ends (a panic included), the helpers go home,
        // or the scope would wait for them forever.
        let _home = StopOnDrop(&crew);
        let mut phases = 0u32;
        let mut phase = |kind, now, items: Vec<usize>, weight: &[u64], shared: bool| {
            let k = match shared {
                true => (CHUNKS_PER_THREAD * cfg.threads).min(crew::MAX_TASKS),
                false => 1,
            };
            let runs = runs(weight, k);
            let tasks = runs.len();
            *plan.write().expect("no task runs") = Plan {
                kind,
                now,
                items,
                runs,
            };
            match shared {
                true => {
                    phases = phases.wrapping_add(1);
                    crew.phase(phases, tasks, &job);
                }
                false => (0..tasks).for_each(&job),
            }
        };
        let mut now = 0;
        let mut iterations = 0u64;
        let mut horizon = 0;
        // Per band, whether it receives anything this cycle, and the next
        // cycle it has anything to do in (kept here, in one array, so
        // finding a cycle's bands touches no band). Every band steps the
        // first cycle, as a whole machine does.
        let mut receives = vec![false; n];
        let mut next_due = vec![0; n];
        loop {
            if now >= cfg.max_cycles {
                return Ended::CycleLimit(now);
            }
            iterations += 1;
            if interrupted(cfg, iterations) {
                return Ended::Err(RunError::Interrupted { cycle: now });
            }
            // Phase 1: the bands with something to do this cycle (a band
            // with nothing would step nothing); the others keep their state.
            let due: Vec<usize> = (0..n).filter(|&b| next_due[b] <= now).collect();
            let awake: Vec<u64> = (due.iter())
                .map(|&b| {
                    let m = lock(b);
                    let w = m.wake.as_ref();
                    w.map_or(0, |w| {
                        w.list.len() as u64 + DUE_CORE_UNITS * w.timers.due_at(now) as u64
                    }) + 1
                })
                .collect();
            let total: u64 = awake.iter().sum();
            let shared = due.len() > 1 && total * UNIT_WORK >= cfg.min_parallel_work;
            phase(Kind::Step, now, due.clone(), &awake, shared);
            // The lowest band's error is the one a whole step meets first.
            let mut failed = std::mem::take(&mut *errors.lock().expect("no task runs"));
            if !failed.is_empty() {
                failed.sort_by_key(|(b, _)| *b);
                return Ended::Err(failed.swap_remove(0).1);
            }
            let mut activity = false;
            {
                let mut crossed = crossed.write().expect("no task runs");
                for &b in &due {
                    let mut m = lock(b);
                    activity |= m.activity;
                    horizon = horizon.max(m.horizon);
                    next_due[b] = m.next_due();
                    let c = std::mem::take(&mut m.bands.cross);
                    for to in c.to() {
                        receives[to] = true;
                    }
                    crossed[b] = c;
                }
            }
            // Phase 2: the bands sent anything take it in; what lands
            // wakes its owner for the next cycle.
            let taking: Vec<usize> = (0..n)
                .filter(|&b| std::mem::take(&mut receives[b]))
                .collect();
            for &b in &taking {
                next_due[b] = now + 1;
            }
            let weight = vec![1; taking.len()];
            let shared = shared && taking.len() > 1;
            phase(Kind::Receive, now, taking, &weight, shared);
            {
                let mut crossed = crossed.write().expect("no task runs");
                for &b in &due {
                    let mut c = std::mem::take(&mut crossed[b]);
                    c.clear();
                    lock(b).bands.cross = c;
                }
            }
            if !activity && now >= horizon {
                return Ended::Finished(now);
            }
            // As `Machine::next_cycle` over the whole machine.
            let next = next_due.iter().copied().min().filter(|t| *t < u64::MAX);
            now = next.unwrap_or(horizon).max(now + 1).min(cfg.max_cycles);
        }
    });
    let bands = || -> Vec<Machine<'_>> {
        (bands.into_iter())
            .map(|b| b.0.into_inner().expect("no step panicked"))
            .collect()
    };
    match outcome {
        Ended::Finished(now) => finish(bands(), now),
        Ended::CycleLimit(now) => {
            let m = Machine::join(bands(), now);
            Err(RunError::CycleLimit {
                limit: cfg.max_cycles,
                active: m.waiting_report(),
            })
        }
        Ended::Err(e) => Err(e),
    }
}

/// How a banded run's loop ended.
enum Ended {
    Finished(u64),
    CycleLimit(u64),
    Err(RunError),
}

/// Which of a cycle's phases a task does.
#[derive(Clone, Copy, Default)]
enum Kind {
    #[default]
    Step,
    Receive,
}

/// A phase as its tasks read it: task `i` takes the bands
/// `items[runs[i]]`.
#[derive(Default)]
struct Plan {
    kind: Kind,
    now: u64,
    items: Vec<usize>,
    runs: Vec<std::ops::Range<usize>>,
}

/// Sends a crew's helpers home when dropped.
struct StopOnDrop<'a>(&'a Crew);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Items of `weight` (each at least 1) cut into at most `k` runs of about
/// equal weight, in order, none empty: the tasks of a phase, so that a
/// task's overhead is paid per run, not per band.
fn runs(weight: &[u64], k: usize) -> Vec<std::ops::Range<usize>> {
    let total: u64 = weight.iter().sum();
    let mut out = Vec::with_capacity(k);
    let (mut taken, mut sum) = (0, 0);
    for (i, w) in weight.iter().enumerate() {
        sum += w;
        // Cut after item `i` once the runs so far hold their share.
        if sum * k as u64 >= (out.len() as u64 + 1) * total || i + 1 == weight.len() {
            out.push(taken..i + 1);
            taken = i + 1;
        }
    }
    out
}

/// The result of `bands` finished at cycle `now`, built from the bands
/// as they are: joined into one machine, their vectors would be copied
/// while the bands' memory is still held (the allocator keeps what they
/// free). A deadlock is reported by the joined machine.
fn finish(mut bands: Vec<Machine<'_>>, now: u64) -> Result<RunResult, RunError> {
    // A band not stepped in the last cycles still has the cycle it was.
    for b in &mut bands {
        b.now = now;
    }
    if bands.iter().any(|b| !b.waiting_report().is_empty()) {
        return Machine::join(bands, now).finish();
    }
    let first = &bands[0];
    let done = report::Finished {
        p: first.p,
        arch: first.arch,
        engine: first.engine,
        timing: first.timing,
        cycles: now,
    };
    let pes = bands.iter().map(|b| b.cores.v.len()).sum();
    let (mut rows, mut memory) = (Vec::with_capacity(pes), Vec::with_capacity(pes));
    let mut host_in = Vec::with_capacity(first.p.inputs.len());
    let mut host_out = Vec::with_capacity(first.p.outputs.len());
    for mut b in bands {
        b.count_moves();
        host_in.extend(b.host_in);
        rows.extend(b.stats.v);
        memory.extend(
            b.cores
                .v
                .into_iter()
                .map(|c| c.filter(|_| !done.timing).map(|c| c.sram)),
        );
        host_out.extend(b.host_out);
    }
    let log = SpanLog {
        on: false,
        max: 0,
        spans: Vec::new(),
        dropped: 0,
    };
    Ok(done.result(&rows, host_in, host_out, log, memory))
}

impl<'p> Machine<'p> {
    /// Between cycles: the wavelets the other bands pushed into this
    /// band's buffers (their owners wake for the next cycle) and the room
    /// their pops freed in this band's links.
    fn receive(&mut self, crossed: &[Crossings]) {
        let band = self.bands.band as usize;
        for c in &crossed[self.bands.from.clone()] {
            // A band that did not step this cycle sent nothing.
            let i = band.wrapping_sub(c.lo);
            let (Some(pushed), Some(freed)) = (c.pushed.get(i), c.freed.get(i)) else {
                continue;
            };
            for &(fifo, ready, bits) in pushed {
                let o = self.land(fifo, ready, bits);
                let w = self.wake.as_mut().expect("bands are event-driven");
                if w.rouse(o) {
                    w.list.push(o);
                }
            }
            for &link in freed {
                self.bands.to[link as usize].room += 1;
            }
        }
    }

    /// The next cycle this band has anything to do in (`u64::MAX`: none
    /// but what another band sends it): [`Machine::next_event`], except
    /// that a band with a host stream still sending steps every cycle, as
    /// a whole machine's host phase counts that as activity whether or
    /// not the stream's next wavelet is due. Stepping a band before then
    /// changes nothing.
    fn next_due(&self) -> u64 {
        if self.host_in.iter().any(|h| h.next < h.wavelets.len()) {
            self.now + 1
        } else {
            self.next_event().unwrap_or(u64::MAX)
        }
    }

    /// `bands` at cycle `now`, joined back into one machine for the
    /// result or a report: every link a plain buffer again.
    fn join(bands: Vec<Machine<'p>>, now: u64) -> Machine<'p> {
        // Each vector sized for the whole machine at once: appended into
        // as it grew, it would be copied whole at each doubling. Reserved
        // room takes memory only as it is written, and each band is freed
        // once appended, so the join never holds the machine twice.
        let total = |f: fn(&Machine<'p>) -> usize| bands.iter().map(f).sum::<usize>();
        let (rings, slab) = (
            total(|b| b.fifos.rings.len()),
            total(|b| b.fifos.slab.len()),
        );
        let (routers, entries) = (
            total(|b| b.routers.at.v.len()),
            total(|b| b.routers.entries.len()),
        );
        let pes = total(|b| b.cores.v.len());
        let mut bands = bands.into_iter();
        let mut m = bands.next().expect("at least one band");
        m.fifos.rings.reserve_exact(rings - m.fifos.rings.len());
        m.fifos.slab.reserve_exact(slab - m.fifos.slab.len());
        m.fifos.what.reserve_exact(rings - m.fifos.what.len());
        m.routers.at.v.reserve_exact(routers - m.routers.at.v.len());
        m.routers
            .entries
            .reserve_exact(entries - m.routers.entries.len());
        m.cores.v.reserve_exact(pes - m.cores.v.len());
        m.stats.v.reserve_exact(pes - m.stats.v.len());
        m.relink();
        for mut b in bands {
            b.relink();
            let s0 = m.fifos.slab.len() as u32;
            for r in &mut b.fifos.rings {
                r.off += s0;
            }
            m.fifos.rings.append(&mut b.fifos.rings);
            m.fifos.slab.append(&mut b.fifos.slab);
            m.fifos.what.append(&mut b.fifos.what);
            let e0 = m.routers.entries.len() as u32;
            for r in &mut b.routers.at.v {
                r.off += e0;
            }
            m.routers.at.append(b.routers.at);
            m.routers.entries.append(&mut b.routers.entries);
            m.cores.append(b.cores);
            m.stats.append(b.stats);
            m.host_in.append(&mut b.host_in);
            m.host_out.append(&mut b.host_out);
            if let (Some(w), Some(mut v)) = (m.wake.as_mut(), b.wake) {
                w.awake.append(&mut v.awake);
                w.list.append(&mut v.list);
                w.faults.append(&mut v.faults);
                w.issue_sleepers += v.issue_sleepers;
            }
            m.activity |= b.activity;
            m.horizon = m.horizon.max(b.horizon);
        }
        m.host_in.sort_by_key(|h| h.stream);
        m.host_out.sort_by_key(|o| o.stream);
        m.now = now;
        m
    }

    /// Every link of this band a plain buffer again, its buffers' rings
    /// unmarked.
    fn relink(&mut self) {
        for e in &mut self.routers.entries {
            for d in &mut e.dests {
                match *d {
                    Dest::Remote(i) => *d = Dest::Fifo(self.bands.to[i as usize].fifo),
                    Dest::Host(h) => *d = Dest::Host(self.host_out[h as usize].stream as u32),
                    Dest::None | Dest::Fifo(_) => {}
                }
            }
        }
        for r in &mut self.fifos.rings {
            r.link = NONE;
        }
        self.bands = Links::default();
    }
}

#[cfg(test)]
mod tests {
    use super::runs;

    /// Runs cover every item once, in order, none empty, at most `k`,
    /// each about a `k`-th of the weight (a heavy item alone).
    #[test]
    fn runs_cut_in_order_by_weight() {
        let cut = |w: &[u64], k: usize| -> Vec<Vec<usize>> {
            runs(w, k).into_iter().map(|r| r.collect()).collect()
        };
        assert_eq!(cut(&[1, 1, 1, 1], 2), [vec![0, 1], vec![2, 3]]);
        assert_eq!(cut(&[10, 1, 1, 1], 2), [vec![0], vec![1, 2, 3]]);
        assert_eq!(cut(&[1, 1, 1], 8), [vec![0], vec![1], vec![2]]);
        assert_eq!(cut(&[5], 4), [vec![0]]);
        for k in 1..6 {
            let w: Vec<u64> = (0..17).map(|i| (i * 7 % 5) as u64 + 1).collect();
            let runs = cut(&w, k);
            assert!(runs.len() <= k && runs.iter().all(|r| !r.is_empty()));
            assert_eq!(runs.concat(), (0..17).collect::<Vec<_>>());
        }
    }
}
