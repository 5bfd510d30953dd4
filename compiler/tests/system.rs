//! Systems of wafers: a model split over several wafers decodes exactly as
//! on one; the split is the one that keeps the fullest wafer emptiest; the
//! transfers between wafers are in every step's cycles; a bad or too small
//! `--wafers` says what would fit.

mod common;
use common::models;
use wafer_compiler::decode::{Decoder, generate};
use wafer_compiler::place::{Options, PlacementKind};
use wafer_compiler::system::{self, Wafers};
use wafer_compiler::{CompileError, Config, bundle, compile, ir, llama2c, reference, stage};
use wafer_emulator::Arch;

fn options(arch: Arch, kind: PlacementKind, wafers: Wafers) -> Options {
    Options {
        wafers,
        ..common::f32_options(arch, kind, None)
    }
}

/// A system's predicted step without its wafer links, at the position
/// the compiler predicts at: what `--wafers auto` weighs counts by.
fn step_without_links(c: &wafer_compiler::Compiled) -> u64 {
    let pos = c.options.max_context / 2;
    (c.stage_predictions(pos).iter().zip(&c.routing.handoffs))
        .map(|(p, h)| p + h.cycles - h.link_cycles)
        .sum()
}

fn grid(cols: u32, rows: u32) -> Arch {
    Arch::wse3().with_grid(cols, rows).unwrap()
}

/// stories260K over 1, 2 and 3 wafers of a 60x60 grid, both placements:
/// the same greedy tokens as the CPU reference; each step's cycles are its
/// stages' plus every hand-off, the wafer links included.
#[test]
fn stories260k_split_over_two_and_three_wafers_decodes_as_on_one() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let model = reference::Model::load(&w, &c).unwrap();
    let want = reference::generate(&model, &[], 24);
    for kind in [PlacementKind::Pipeline, PlacementKind::Mesh] {
        for n in [1, 2, 3] {
            let o = options(grid(60, 60), kind, Wafers::Count(n));
            let compiled = compile(&c, Some(&w), &o).unwrap();
            assert_eq!(compiled.wafers.len(), n as usize);
            assert_eq!(compiled.transfers.len(), n as usize - 1);
            // Each wafer's fullest PE, by kind, adds up to its plan's.
            for (k, part) in compiled.wafers.iter().enumerate() {
                let held = compiled.wafer_fullest_held(k);
                let sum = held.state + held.activations + held.code;
                assert_eq!(sum, part.sram.max_bytes as u64, "{kind} wafer {k} of {n}");
                assert!(held.code > 0, "{kind} wafer {k} of {n}");
            }
            let mut d = Decoder::new(&compiled);
            let mut steps = Vec::new();
            let got = generate(&mut d, &[], 24, None, |_, s| steps.push(s.clone())).unwrap();
            assert_eq!(got, want, "{kind} over {n} wafers");
            let hand: u64 = compiled.routing.handoffs.iter().map(|h| h.cycles).sum();
            let link: u64 = compiled
                .routing
                .handoffs
                .iter()
                .map(|h| h.link_cycles)
                .sum();
            assert_eq!(
                link,
                compiled.transfers.iter().map(|t| t.cycles).sum::<u64>()
            );
            for s in &steps {
                assert_eq!(s.cycles, s.stage_cycles.iter().sum::<u64>() + hand);
            }
            // Overlapped (a value from another wafer keeps its barrier and
            // the link): the same tokens, every step shorter, and still
            // longer than the links it crosses.
            let mut d = Decoder::new(&compiled);
            d.overlap(true);
            let mut over = Vec::new();
            let got = generate(&mut d, &[], 24, None, |_, s| over.push(s.cycles)).unwrap();
            assert_eq!(got, want, "{kind} over {n} wafers, overlapped");
            for (o, s) in over.iter().zip(&steps) {
                assert!(
                    *o < s.cycles && *o > link,
                    "{kind} over {n}: {o} against {}",
                    s.cycles
                );
            }
            // What crosses a boundary: the next layer's normed input and
            // the residual sum, f32; the link alone is 2 µs at 1.1 GHz.
            for t in &compiled.transfers {
                assert_eq!(t.bytes, 2 * c.dim as u64 * 4, "{kind} over {n}");
                assert!(t.cycles >= 2200 + o.arch.ramp_latency as u64);
                assert!(compiled.wafers[t.from + 1].stages.contains(&t.into));
                assert!(compiled.routing.handoffs[t.into].ingress);
            }
        }
    }
}

/// The split: contiguous, every wafer at least one layer, the embedding
/// on the first and the head on the last, and no split of the layers
/// keeps less on its fullest wafer (checked against every split).
#[test]
fn the_split_keeps_the_fullest_wafer_as_empty_as_any_split_can() {
    let (c, _) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let c = Config { n_layers: 7, ..c };
    let o = options(grid(60, 60), PlacementKind::Pipeline, Wafers::Count(1));
    let stages = stage::fuse(stage::lower(&ir::decode_step(&c)));
    let bytes = system::group_bytes(&stages, &c, &o);
    let l = c.n_layers;
    for n in 1..=l {
        let (parts, kept) = system::split(&stages, &c, &o, n);
        assert_eq!(parts.len(), n);
        assert_eq!(parts[0].0.start, 0);
        assert_eq!(parts[n - 1].0.end, stages.len());
        assert_eq!(stages[0].name, "embed");
        for k in 1..n {
            assert_eq!(parts[k - 1].0.end, parts[k].0.start);
            assert_eq!(parts[k - 1].1.end, parts[k].1.start);
            assert!(!parts[k].1.is_empty());
        }
        // Every stage of a layer is on the wafer holding that layer.
        for (r, layers) in &parts {
            for s in &stages[r.clone()] {
                if let Some(x) = s.layer {
                    assert!(layers.contains(&x), "{} on {layers:?}", s.name);
                }
            }
        }
        // Brute force: every way to cut l layers into n non-empty runs.
        let mut best = u64::MAX;
        let mut cuts = vec![0usize; n + 1];
        fn each(k: usize, n: usize, l: usize, cuts: &mut Vec<usize>, f: &mut dyn FnMut(&[usize])) {
            if k == n {
                cuts[n] = l;
                f(cuts);
                return;
            }
            for c in cuts[k - 1] + 1..=l - (n - k) {
                cuts[k] = c;
                each(k + 1, n, l, cuts, f);
            }
        }
        let kept_of = |cuts: &[usize]| -> u64 {
            (0..n)
                .map(|k| {
                    let mut b: u64 = bytes[cuts[k] + 1..=cuts[k + 1]].iter().sum();
                    if k == 0 {
                        b += bytes[0];
                    }
                    if k == n - 1 {
                        b += bytes[l + 1];
                    }
                    b
                })
                .max()
                .unwrap()
        };
        each(1, n, l, &mut cuts, &mut |cuts| {
            best = best.min(kept_of(cuts))
        });
        assert_eq!(*kept.iter().max().unwrap(), best, "{n} wafers");
    }
}

/// `--wafers` beyond the layers, or too few to hold the model, is an error
/// that says what would do; `auto` finds the fewest.
#[test]
fn a_bad_or_too_small_wafer_count_says_what_fits() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let o = options(grid(60, 60), PlacementKind::Pipeline, Wafers::Count(6));
    let e = compile(&c, Some(&w), &o).unwrap_err().to_string();
    assert!(e.contains("--wafers 6") && e.contains("5 layers"), "{e}");
    let o = options(grid(60, 60), PlacementKind::Pipeline, Wafers::Count(0));
    let e = compile(&c, Some(&w), &o).unwrap_err().to_string();
    assert!(e.contains("--wafers 0"), "{e}");
    // The embedding and the classifier (512x64 f32 each) alone need more
    // than a 12x12 grid's SRAM on one wafer: auto splits.
    let small = grid(12, 12);
    let one = options(small.clone(), PlacementKind::Pipeline, Wafers::Count(1));
    assert!(matches!(
        compile(&c, Some(&w), &one),
        Err(CompileError::Place(_))
    ));
    let auto = compile(
        &c,
        Some(&w),
        &options(small.clone(), PlacementKind::Pipeline, Wafers::Auto),
    )
    .unwrap();
    let n = auto.wafers.len();
    assert!(n > 1, "{n}");
    let fewer = options(
        small.clone(),
        PlacementKind::Pipeline,
        Wafers::Count(n as u32 - 1),
    );
    let e = compile(&c, Some(&w), &fewer).unwrap_err().to_string();
    assert!(
        e.contains(&format!("--wafers {n} fits")),
        "the error names the count that fits: {e}"
    );
    // Auto stopped at the fewest because a wafer more costs more
    // wafer-time a token: the step does not fall by a wafer's share.
    let more = options(small, PlacementKind::Pipeline, Wafers::Count(n as u32 + 1));
    let more = compile(&c, Some(&w), &more).unwrap();
    let (step, step_more) = (step_without_links(&auto), step_without_links(&more));
    assert!(
        step_more < step,
        "{step_more} against {step}: a wafer more is faster here"
    );
    assert!(
        (n as u64 + 1) * step_more >= n as u64 * step,
        "{n} wafers at {step} cycles, {} at {step_more}",
        n + 1
    );
    // And the split model still decodes as the reference.
    let model = reference::Model::load(&w, &c).unwrap();
    let mut d = Decoder::new(&auto);
    let got = generate(&mut d, &[], 12, None, |_, _| {}).unwrap();
    assert_eq!(got, reference::generate(&model, &[], 12));
}

/// The model file records each stage's wafer; a version-1 file (one
/// wafer, no wafer field) still reads.
#[test]
fn the_model_file_keeps_each_stage_s_wafer() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let o = options(grid(60, 60), PlacementKind::Mesh, Wafers::Count(2));
    let compiled = compile(&c, Some(&w), &o).unwrap();
    let bytes = bundle::encode(&compiled);
    let stages = bundle::decode(&bytes).unwrap();
    for (i, s) in stages.iter().enumerate() {
        assert_eq!(s.wafer as usize, system::wafer_of(&compiled, i));
        assert_eq!(s.origin, compiled.sites[i].origin);
        assert_eq!(s.handoff_cycles, compiled.routing.handoffs[i].cycles);
    }
    assert_eq!(stages.last().unwrap().wafer, 1);
    // Version 1: the same without the wafer fields.
    let mut v1 = bytes[..8].to_vec();
    v1.extend_from_slice(&1u32.to_le_bytes());
    let mut at = 12;
    v1.extend_from_slice(&bytes[at..at + 4]);
    at += 4;
    for _ in 0..stages.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        v1.extend_from_slice(&bytes[at..at + 4 + len]);
        at += 4 + len + 4; // skip the wafer
        let plen = u64::from_le_bytes(bytes[at + 16..at + 24].try_into().unwrap()) as usize;
        v1.extend_from_slice(&bytes[at..at + 24 + plen]);
        at += 24 + plen;
    }
    assert_eq!(at, bytes.len());
    let old = bundle::decode(&v1).unwrap();
    assert!(old.iter().all(|s| s.wafer == 0));
    assert_eq!(old.len(), stages.len());
}

/// Ranks simulated by threads: each all-gather waits for every rank's
/// part, then hands each rank all of them in rank order.
#[derive(Debug)]
struct Threads {
    rank: usize,
    ranks: usize,
    parts: std::sync::Arc<std::sync::Mutex<Vec<Option<Vec<u8>>>>>,
    barrier: std::sync::Arc<std::sync::Barrier>,
    /// The most bytes this rank sent in one all-gather.
    sent: std::sync::atomic::AtomicUsize,
}

impl wafer_compiler::share::Exchange for Threads {
    fn rank(&self) -> usize {
        self.rank
    }
    fn ranks(&self) -> usize {
        self.ranks
    }
    fn all_gather(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        self.sent
            .fetch_max(mine.len(), std::sync::atomic::Ordering::Relaxed);
        self.parts.lock().unwrap()[self.rank] = Some(mine);
        self.barrier.wait();
        let all: Vec<Vec<u8>> = self
            .parts
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.clone().unwrap())
            .collect();
        // Nobody clears the parts before everyone has read them.
        self.barrier.wait();
        if self.rank == 0 {
            self.parts
                .lock()
                .unwrap()
                .iter_mut()
                .for_each(|p| *p = None);
        }
        self.barrier.wait();
        all
    }
}

/// A timing-only step shared between 1, 2 and 3 ranks gives one process's
/// step exactly (cycles, every stage's cycles and PE time), each rank
/// running only its share of the distinct runs.
#[test]
fn a_step_shared_between_ranks_is_one_process_s_step() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let o = options(grid(60, 60), PlacementKind::Mesh, Wafers::Count(2));
    let compiled = compile(&c, Some(&w), &o).unwrap();
    let steps = |d: &mut Decoder| -> Vec<_> {
        d.timing_only(true);
        d.keep_stats(false);
        d.skip_to(7).unwrap();
        (0..2).map(|_| d.step(0).unwrap()).collect()
    };
    let alone = steps(&mut Decoder::new(&compiled));
    for ranks in [1, 2, 3] {
        let results = shared_steps(ranks, || {
            let mut d = Decoder::new(&compiled);
            d.timing_only(true);
            d.keep_stats(false);
            d.threads(1);
            d.skip_to(7).unwrap();
            d
        });
        for (rank, (got, made)) in results.iter().enumerate() {
            for (g, a) in got.iter().zip(&alone) {
                assert_eq!(g.cycles, a.cycles, "{ranks} ranks, rank {rank}");
                assert_eq!(g.stage_cycles, a.stage_cycles);
                assert_eq!(g.stage_time, a.stage_time);
                // Every stage's result came from a shared run.
                assert!(g.stage_reused.iter().all(|r| *r));
            }
            if ranks > 1 {
                assert!(made[0] > 0, "rank {rank} of {ranks} ran nothing");
            }
        }
        // Each step's distinct runs (the second's: those that depend on
        // the position), split without overlap.
        for step in 0..2 {
            let total: usize = results.iter().map(|(_, m)| m[step]).sum();
            let distinct = alone[step].stage_reused.iter().filter(|r| !**r).count();
            assert_eq!(total, distinct, "{ranks} ranks, step {step}");
        }
    }
}

/// An overlapped timing-only step shared between 1, 2 and 3 ranks (each
/// running the stages of the wafers it is dealt) gives one process's step
/// exactly: its cycles, every stage's start, cycles and PE time. Every
/// stage's result on every rank comes from a run some rank made for its
/// wafer, so a wafer's runs are the whole step's, shifted in time; the
/// runs made add up to one process's distinct runs, so the wafers laid
/// out alike are emulated once. The same holds with the hand-offs queued
/// on either dimension order (a wafer's trips queue on its own links, so
/// its rounds alone find the delays the whole step's rounds do) and on
/// spread paths once the first step has planned them.
#[test]
fn an_overlapped_step_shared_between_ranks_is_one_process_s_step() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    use wafer_compiler::decode::links::{Order, Paths};
    let (xy, yx) = (Paths::Ordered(Order::XFirst), Paths::Ordered(Order::YFirst));
    // Four wafers on 1, 2 and 3 ranks; and two on 100 x 100 PEs with the
    // pipeline, where a stage of each wafer is held (2 passes): the
    // first wafer's settling moves the second's barrier.
    let systems = [
        (grid(60, 60), PlacementKind::Mesh, 4, &[1, 2, 3][..]),
        (grid(100, 100), PlacementKind::Pipeline, 2, &[1, 2][..]),
    ];
    for ((arch, kind, wafers, rank_counts), queue) in (systems.into_iter())
        .flat_map(|s| [None, Some(xy), Some(yx), Some(Paths::Spread)].map(|q| (s.clone(), q)))
    {
        let o = options(arch, kind, Wafers::Count(wafers));
        let compiled = compile(&c, Some(&w), &o).unwrap();
        let decoder = || {
            let mut d = Decoder::new(&compiled);
            d.timing_only(true);
            d.keep_stats(false);
            d.overlap(true);
            d.queue_links(queue.map(|p| (p, usize::MAX)));
            d.threads(1);
            d.skip_to(7).unwrap();
            d
        };
        let mut d = decoder();
        let alone: Vec<_> = (0..2).map(|_| d.step(0).unwrap()).collect();
        if queue.is_some() {
            // The queue moved some trip: the rounds are exercised.
            assert!(alone[0].queued_rounds > 0, "{queue:?}");
        }
        let distinct =
            |s: &wafer_compiler::decode::Step| s.stage_reused.iter().filter(|r| !**r).count();
        for &ranks in rank_counts {
            let results = shared_steps(ranks, decoder);
            for (rank, (got, made)) in results.iter().enumerate() {
                for (step, (g, a)) in got.iter().zip(&alone).enumerate() {
                    let at = format!("{wafers} wafers, {queue:?}, {ranks} ranks, rank {rank}");
                    let planning = queue == Some(Paths::Spread) && step == 0;
                    assert_eq!(g.cycles, a.cycles, "{at}");
                    assert_eq!(g.stage_start, a.stage_start, "{at}");
                    assert_eq!(g.stage_cycles, a.stage_cycles, "{at}");
                    assert_eq!(g.stage_time, a.stage_time, "{at}");
                    assert_eq!(g.queued_rounds, a.queued_rounds, "{at}");
                    assert_eq!(g.queue_settled, a.queue_settled, "{at}");
                    assert_eq!(g.queue_waits, a.queue_waits, "{at}");
                    // Nor did the step queue a wafer: the ranks that
                    // settled the wafers sent their queues with the runs,
                    // and a wafer laid out as one of those, sent the same,
                    // finds that one's.
                    if queue.is_some() && !planning {
                        assert_eq!(g.queue_wafers.queued, 0, "{at}: {:?}", g.queue_wafers);
                        assert!(g.queue_wafers.found > 0, "{at}");
                    }
                    // Every stage's run was shared, but on the first
                    // step on spread paths, which each rank runs whole.
                    assert!(
                        planning || g.stage_reused.iter().all(|r| *r),
                        "{at}: {:?}",
                        g.stage_reused
                    );
                    // Nor did any of the step's passes emulate a run: a
                    // wafer run alone made the whole step's runs.
                    assert!(
                        planning || g.stage_emulated.iter().all(|e| e.runs == 0),
                        "{at}: {:?}",
                        g.stage_emulated
                    );
                    match (ranks, queue) {
                        // The first step on spread paths plans them over
                        // every wafer: each rank runs it whole.
                        (_, Some(Paths::Spread)) if step == 0 => {
                            assert_eq!(made[step], 0, "{at}")
                        }
                        // Alone, its segments' runs are the step's
                        // distinct ones (held or queued, also its earlier
                        // passes').
                        (1, None) if a.passes == 1 => {
                            assert_eq!(made[step], distinct(a), "{at}")
                        }
                        (1, _) => assert!(made[step] >= distinct(a), "{at}"),
                        // Each rank is dealt at least one wafer.
                        _ => assert!(made[step] > 0, "{at} ran nothing"),
                    }
                }
            }
            // A segment that runs at all runs on one rank: together they
            // make at least the step's distinct runs (more where two
            // ranks' wafers each settle into runs one process would reuse).
            let first = match queue {
                Some(Paths::Spread) => 1,
                _ => 0,
            };
            for step in first..2 {
                let total: usize = results.iter().map(|(_, m)| m[step]).sum();
                assert!(
                    total >= distinct(&alone[step]),
                    "{queue:?}, {ranks} ranks, step {step}"
                );
            }
        }
    }
}

/// Sharing a step refuses what the step itself refuses, with the same
/// error, both ways of sharing: a token the vocabulary lacks and a
/// position past the KV cache.
#[test]
fn a_shared_step_refuses_a_bad_token_or_a_full_cache_as_a_step_does() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let o = options(grid(60, 60), PlacementKind::Mesh, Wafers::Count(2));
    let compiled = compile(&c, Some(&w), &o).unwrap();
    let max = compiled.options.max_context;
    for overlap in [false, true] {
        // At `pos`: the last position the cache holds is stepped past.
        let decoder = |pos: u32| {
            let mut d = Decoder::new(&compiled);
            d.timing_only(true);
            d.keep_stats(false);
            d.overlap(overlap);
            d.threads(1);
            d.skip_to(pos.min(max - 1)).unwrap();
            if pos == max {
                d.step(0).unwrap();
            }
            d
        };
        let vocab = c.vocab_size as u32;
        for (pos, token) in [(0, vocab), (max, 0)] {
            let alone = decoder(pos).step(token).unwrap_err().to_string();
            let shared = on_ranks(1, |ex| decoder(pos).share(token, ex).unwrap_err());
            let got = shared[0].0.to_string();
            assert_eq!(
                got, alone,
                "overlap {overlap}, position {pos}, token {token}"
            );
        }
    }
}

/// Two steps of the decoder `decoder` makes, shared between `ranks`
/// simulated ranks: per rank, its steps and how many runs it made for
/// each.
fn shared_steps<'c>(
    ranks: usize,
    decoder: impl Fn() -> Decoder<'c> + Sync,
) -> Vec<(Vec<wafer_compiler::decode::Step>, Vec<usize>)> {
    let results = on_ranks(ranks, |ex| {
        let mut d = decoder();
        let (mut out, mut made) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            made.push(d.share(0, ex).unwrap());
            out.push(d.step(0).unwrap());
        }
        (out, made)
    });
    results.into_iter().map(|(r, _)| r).collect()
}

/// `f` on `ranks` threads, each with its own end of one simulated world;
/// the results in rank order, with the most bytes each rank sent in one
/// all-gather.
fn on_ranks<R: Send>(ranks: usize, f: impl Fn(&Threads) -> R + Sync) -> Vec<(R, usize)> {
    let parts = std::sync::Arc::new(std::sync::Mutex::new(vec![None; ranks]));
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(ranks));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..ranks)
            .map(|rank| {
                let ex = Threads {
                    rank,
                    ranks,
                    parts: parts.clone(),
                    barrier: barrier.clone(),
                    sent: Default::default(),
                };
                let f = &f;
                s.spawn(move || {
                    let r = f(&ex);
                    (r, ex.sent.load(std::sync::atomic::Ordering::Relaxed))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// A system compiled by 1, 2 and 3 ranks together is one process's
/// compile on every rank (each stage's program, site and hand-off, the
/// wafers, the transfers), with `auto` choosing the same count and every
/// rank compiling a share; a count that does not fit gives one process's
/// error on every rank.
#[test]
fn a_system_compiled_by_ranks_together_is_one_process_s_compile() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    for (o, what) in [
        // Both placements predicted for each wafer, the faster kept.
        (
            Options {
                placement: None,
                ..options(grid(60, 60), PlacementKind::Mesh, Wafers::Count(3))
            },
            "3 wafers",
        ),
        (
            options(grid(12, 12), PlacementKind::Pipeline, Wafers::Auto),
            "auto",
        ),
    ] {
        let alone = compile(&c, Some(&w), &o).unwrap();
        for ranks in [1, 2, 3] {
            for (rank, (got, sent)) in on_ranks(ranks, |ex| {
                wafer_compiler::codegen::compile_shared(&c, Some(&w), &o, ex).unwrap()
            })
            .into_iter()
            .enumerate()
            {
                let at = format!("{what}, rank {rank} of {ranks}");
                assert_eq!(bundle::encode(&got), bundle::encode(&alone), "{at}");
                assert_eq!(got.kind, alone.kind, "{at}");
                assert_eq!(got.wafers, alone.wafers, "{at}");
                assert_eq!(got.transfers, alone.transfers, "{at}");
                assert_eq!(got.routing, alone.routing, "{at}");
                assert_eq!(got.sram, alone.sram, "{at}");
                if ranks > 1 {
                    assert!(sent > 100, "{at}: sent {sent} bytes");
                }
            }
        }
    }
    let small = grid(12, 12);
    let n = compile(
        &c,
        Some(&w),
        &options(small.clone(), PlacementKind::Pipeline, Wafers::Auto),
    )
    .unwrap()
    .wafers
    .len();
    let fewer = options(small, PlacementKind::Pipeline, Wafers::Count(n as u32 - 1));
    let want = compile(&c, Some(&w), &fewer).unwrap_err().to_string();
    for ((e, _), rank) in on_ranks(2, |ex| {
        wafer_compiler::codegen::compile_shared(&c, Some(&w), &fewer, ex)
            .unwrap_err()
            .to_string()
    })
    .into_iter()
    .zip(0..)
    {
        assert_eq!(e, want, "rank {rank}");
    }
}
