//! The event engine (idle routers and cores skipped) and the JIT engine
//! against the reference engine (everything stepped every cycle): identical outputs, cycles,
//! statistics and final SRAM on every example program.

use std::path::PathBuf;
use wafer_emulator::engine::timing_fingerprint;
use wafer_emulator::{Arch, Engine, Inputs, RunConfig, asm};

fn both(src: &str, file: &str, arch: &Arch) {
    let p = asm::parse(src, file).unwrap();
    let run = |engine, threads| {
        let cfg = RunConfig {
            engine,
            // A trace is compared too; the runs without one below take
            // the event engine's other path (a core's local steps run
            // ahead in one wake-up, which a trace's span order forbids).
            trace: true,
            threads,
            // Every cycle's compiled work goes to the threads, however little.
            min_parallel_work: 0,
            ..RunConfig::default()
        };
        wafer_emulator::run(&p, arch, &Inputs::new(), &cfg).unwrap()
    };
    let a = run(Engine::Reference, 1);
    let spans = |t: &Option<wafer_emulator::trace::Trace>| {
        let mut v: Vec<String> = t
            .iter()
            .flat_map(|t| &t.spans)
            .map(|s| format!("{s:?}"))
            .collect();
        v.sort();
        v
    };
    for (engine, threads) in [
        (Engine::Interp, 1),
        (Engine::Jit, 1),
        (Engine::Jit, 2),
        (Engine::Jit, 4),
    ] {
        let b = run(engine, threads);
        assert_eq!(a.cycles, b.cycles, "{file}");
        assert_eq!(a.outputs, b.outputs, "{file}");
        assert_eq!(a.stats.pe, b.stats.pe, "{file}");
        assert_eq!(a.stats.totals, b.stats.totals, "{file}");
        assert_eq!(
            (a.stats.engine.as_str(), b.stats.engine.as_str()),
            ("reference", engine.name())
        );
        assert_eq!(a.memory, b.memory, "{file}");
        assert_eq!(spans(&a.trace), spans(&b.trace), "{file}");
    }
    // Without a trace, the event engine runs local steps ahead (see
    // `Machine::chain`): the same results.
    // With more than one thread, the grid is stepped in bands of PEs
    // (every grid here, however small: `band_min_pes`), each cycle's
    // bands on the threads: the same results, whatever the count.
    for (engine, threads) in [
        (Engine::Interp, 1),
        (Engine::Jit, 1),
        (Engine::Jit, 2),
        (Engine::Interp, 3),
    ] {
        let untraced = RunConfig {
            engine,
            threads,
            min_parallel_work: 0,
            band_min_pes: 0,
            ..RunConfig::default()
        };
        let b = wafer_emulator::run(&p, arch, &Inputs::new(), &untraced).unwrap();
        assert_eq!(
            (a.cycles, &a.outputs, &a.stats.pe, &a.memory),
            (b.cycles, &b.outputs, &b.stats.pe, &b.memory),
            "{file} {engine:?} {threads}"
        );
    }
    // Timing-only: the same cycles and counters, no memory, and every
    // output either the functional value or unknown (NaN).
    for (engine, threads) in [
        (Engine::Reference, 1),
        (Engine::Interp, 1),
        (Engine::Interp, 2),
    ] {
        let cfg = RunConfig {
            engine,
            timing_only: true,
            threads,
            min_parallel_work: 0,
            band_min_pes: 0,
            ..RunConfig::default()
        };
        let t = wafer_emulator::run(&p, arch, &Inputs::new(), &cfg).unwrap();
        assert_eq!(t.cycles, a.cycles, "{file}");
        let mut stats = t.stats.clone();
        stats.engine = a.stats.engine.clone();
        assert_eq!(stats, a.stats, "{file}");
        assert!(t.memory.iter().all(Option::is_none), "{file}");
        for (name, v) in &t.outputs {
            for (x, y) in v.iter().zip(&a.outputs[name]) {
                assert!(x.is_nan() || x == y, "{file} {name}: {x} vs {y}");
            }
        }
    }
}

#[test]
fn every_example_and_the_bench_program_agree_on_both_engines() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wsm"))
        .collect();
    files.push(root.join("benches/reduce_64x64.wsm"));
    files.sort();
    assert!(files.len() >= 6);
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        for arch in [Arch::wse2(), Arch::wse3()] {
            both(&src, &f.display().to_string(), &arch);
        }
    }
    // The JIT benchmark's scalar loop, shortened for the reference engine.
    let f = root.join("benches/scalar_loop.wsm");
    let src = std::fs::read_to_string(&f).unwrap();
    assert!(src.contains("blt r1, 20000, trip"));
    let src = src.replace("blt r1, 20000, trip", "blt r1, 300, trip");
    both(&src, &f.display().to_string(), &Arch::wse3());
}

/// A loop of short vector ops on memory and scalar instructions, run
/// ahead by the event engine without a trace (`Machine::chain`), while
/// another PE's wavelets wait in its queue for the data task after it:
/// the reference's cycles, counters and SRAM. Then the same loop indexing
/// past its buffer: the reference's fault, on every engine and in
/// timing-only mode.
#[test]
fn a_core_run_ahead_through_its_loop_keeps_cycles_and_faults() {
    let src = |step: u32, end: u32| {
        format!(
            ".grid 2x1
.code loop
  .buffer a f32[8]
  .buffer b f32[8]
  .buffer got f32[1]
  .task main local active
  .task recv data c1
main:
  li r1, 0
again:
  vmov.f32 a, b
  ldf f2, a[r1]
  add r1, r1, {step}
  blt r1, {end}, again
  end
recv:
  stf got[0], f0
  end
.end
.code send
  .buffer v f32[4]
  .task main local active
main:
  vmov.f32 tx(c1), v
  end
.end
.place loop 0,0 1x1
.place send 1,0 1x1
.data b 0,0 1x1 = iota(1, 1)
.data v 1,0 1x1 = iota(10, 1)
.route 1,0 1x1 c1 R -> W
.route 0,0 1x1 c1 E -> R
"
        )
    };
    let arch = Arch::wse3();
    // `threads` 2: stepped in bands (one PE each), the loop in one band
    // and the sender in the other.
    let run_on = |src: &str, engine, trace, timing_only, threads| {
        let p = asm::parse(src, "loop.wsm").unwrap();
        let cfg = RunConfig {
            engine,
            trace,
            timing_only,
            threads,
            band_min_pes: 0,
            min_parallel_work: 0,
            ..RunConfig::default()
        };
        wafer_emulator::run(&p, &arch, &Inputs::new(), &cfg)
    };
    let run = |src: &str, engine, trace, timing_only| run_on(src, engine, trace, timing_only, 1);
    let ok = src(1, 8);
    let a = run(&ok, Engine::Reference, false, false).unwrap();
    for (engine, trace, timing) in [
        (Engine::Interp, false, false),
        (Engine::Interp, true, false),
        (Engine::Jit, false, false),
        (Engine::Interp, false, true),
    ] {
        for threads in [1, 2] {
            let b = run_on(&ok, engine, trace, timing, threads).unwrap();
            assert_eq!((a.cycles, &a.stats.pe), (b.cycles, &b.stats.pe));
            if !timing {
                assert_eq!(a.memory, b.memory);
            }
        }
    }
    assert_eq!(a.stats.pe.tasks[0], 5, "main and four data tasks");
    // r1 = 0, 3, 6, 9: the fourth `ldf` reads past `a`.
    let bad = src(3, 12);
    let e = run(&bad, Engine::Reference, false, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ldf"), "{e}");
    for (engine, timing) in [
        (Engine::Interp, false),
        (Engine::Jit, false),
        (Engine::Interp, true),
    ] {
        for threads in [1, 2] {
            let f = run_on(&bad, engine, false, timing, threads)
                .unwrap_err()
                .to_string();
            assert_eq!(f, e);
        }
    }
}

/// A run stopped by the cycle limit reports what the reference's does: no
/// engine runs a core ahead past the limit (a scalar loop, a long
/// vector op on memory, a chain of both).
#[test]
fn the_cycle_limit_report_is_the_references_on_every_engine() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let scalar = std::fs::read_to_string(root.join("benches/scalar_loop.wsm")).unwrap();
    let vector = ".grid 1x1
.code c
  .buffer a f32[4096]
  .buffer b f32[4096]
  .task main local active
main:
  li r1, 0
again:
  vmov.f32 a, b
  add r1, r1, 1
  blt r1, 100, again
  end
.end
.place c 0,0 1x1
";
    for (src, limits) in [(scalar.as_str(), [700, 1000]), (vector, [300, 5000])] {
        let p = asm::parse(src, "limit.wsm").unwrap();
        for max_cycles in limits {
            let run = |engine, trace, timing_only| {
                let cfg = RunConfig {
                    engine,
                    trace,
                    timing_only,
                    max_cycles,
                    ..RunConfig::default()
                };
                wafer_emulator::run(&p, &Arch::wse3(), &Inputs::new(), &cfg)
                    .unwrap_err()
                    .to_string()
            };
            let want = run(Engine::Reference, false, false);
            assert!(want.contains("cycle limit"), "{want}");
            for (engine, trace, timing) in [
                (Engine::Interp, false, false),
                (Engine::Interp, true, false),
                (Engine::Jit, false, false),
                (Engine::Jit, true, false),
                (Engine::Interp, false, true),
            ] {
                assert_eq!(
                    run(engine, trace, timing),
                    want,
                    "{engine:?} {trace} {timing}"
                );
            }
        }
    }
}

/// A run stepped in bands of PEs on several threads and stopped by the
/// cycle limit, or deadlocked, reports what the whole machine's does: the
/// bands are joined back (every buffer, queue, host stream and core in
/// the report, in the same order) before it is written.
#[test]
fn a_run_in_bands_reports_the_cycle_limit_and_a_deadlock_as_a_whole_run_does() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let src = std::fs::read_to_string(root.join("examples/gemv_8x8.wsm")).unwrap();
    let p = asm::parse(&src, "gemv_8x8.wsm").unwrap();
    let run = |p: &wafer_emulator::Program, max_cycles, threads, timing_only| {
        let cfg = RunConfig {
            engine: Engine::Interp,
            max_cycles,
            threads,
            timing_only,
            band_min_pes: 0,
            min_parallel_work: 0,
            ..RunConfig::default()
        };
        wafer_emulator::run(p, &Arch::wse3(), &Inputs::new(), &cfg)
    };
    let full = run(&p, 100_000_000, 1, false).unwrap().cycles;
    for max_cycles in [5, full / 3, full / 2, full - 1] {
        let want = run(&p, max_cycles, 1, false).unwrap_err().to_string();
        assert!(want.contains("cycle limit"), "{want}");
        for threads in [2, 3] {
            for timing in [false, true] {
                let got = run(&p, max_cycles, threads, timing)
                    .unwrap_err()
                    .to_string();
                assert_eq!(got, want, "{max_cycles} {threads}");
            }
        }
    }
    // The first column ends once it has taken x in: it never sends its
    // partial sums east, which the rest wait for.
    let mut dead = p.clone();
    assert_eq!(dead.codes[0].name, "gemv_first");
    dead.codes[0].insts[1] = wafer_emulator::isa::Inst::End;
    let want = run(&dead, 100_000_000, 1, false).unwrap_err().to_string();
    assert!(want.contains("deadlock"), "{want}");
    for threads in [2, 3] {
        let got = run(&dead, 100_000_000, threads, false)
            .unwrap_err()
            .to_string();
        assert_eq!(got, want, "{threads}");
    }
}

/// What timing-only mode cannot know it reports: a branch on a received
/// value names the PE, the instruction and the fix.
#[test]
fn timing_only_refuses_a_data_dependent_branch() {
    let src = ".grid 1x1
.code c
  .buffer x f32[1]
  .task main local active
main:
  vmov.f32 x, rx(c0)
  ldf f1, x[0]
  ftoi r1, f1
  blt r1, 2, done
  vmov.f32 tx(c1, 1), x
done:
  end
.end
.place c 0,0 1x1
.route 0,0 1x1 c0 W -> R
.route 0,0 1x1 c1 R -> E
.input a f32[1] -> 0,0 W c0 = fill(1)
.output y f32[1] <- 0,0 E c1
";
    let p = wafer_emulator::asm::parse(src, "branch.wsm").unwrap();
    let arch = Arch::wse3();
    let run = |timing_only, x: f32| {
        let cfg = RunConfig {
            engine: Engine::Interp,
            timing_only,
            ..RunConfig::default()
        };
        let inputs = Inputs::from([("a".to_string(), vec![x])]);
        wafer_emulator::run(&p, &arch, &inputs, &cfg)
    };
    // Functionally the branch decides whether anything is sent.
    assert!(
        run(false, 1.0).is_err(),
        "no output sent: the host output is incomplete"
    );
    assert_eq!(run(false, 5.0).unwrap().outputs["y"], vec![5.0]);
    // A known host input keeps the branch known...
    let t = run(true, 5.0).unwrap();
    assert_eq!(t.outputs["y"], vec![5.0]);
    assert_eq!(t.cycles, run(false, 5.0).unwrap().cycles);
    // ...an unknown one (NaN) is refused, naming where.
    let e = run(true, f32::NAN).unwrap_err().to_string();
    assert!(
        e.contains("PE (0, 0)") || e.contains("(0,0)") || e.contains("0,0"),
        "{e}"
    );
    assert!(
        e.contains("blt") && e.contains("a branch") && e.contains("--timing-only"),
        "{e}"
    );
}

/// Programs that differ only in their data images' values share a timing
/// fingerprint and give identical timing-only results (while their
/// functional outputs differ); any change to code, routes, streams, the
/// known values of the inputs or the defaults of those not given changes it.
#[test]
fn timing_fingerprint_ignores_weights_and_only_weights() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let src = std::fs::read_to_string(dir.join("gemv_8x8.wsm")).unwrap();
    let a = asm::parse(&src, "gemv_8x8.wsm").unwrap();
    let none = Inputs::new();
    let mut b = a.clone();
    assert!(!b.data.is_empty());
    for (i, d) in b.data.iter_mut().enumerate() {
        d.init = wafer_emulator::DataInit::Random {
            seed: 99 + i as u64,
        };
    }
    assert_eq!(timing_fingerprint(&a, &none), timing_fingerprint(&b, &none));
    let arch = Arch::wse3();
    let run = |p: &wafer_emulator::Program, timing_only, inputs: &Inputs| {
        let cfg = RunConfig {
            timing_only,
            ..RunConfig::default()
        };
        wafer_emulator::run(p, &arch, inputs, &cfg).unwrap()
    };
    let (ta, tb) = (run(&a, true, &none), run(&b, true, &none));
    assert_eq!(ta.cycles, tb.cycles);
    assert_eq!(ta.stats, tb.stats);
    assert_ne!(run(&a, false, &none).outputs, run(&b, false, &none).outputs);

    let differs = |p: &wafer_emulator::Program, inputs: &Inputs| {
        timing_fingerprint(p, inputs) != timing_fingerprint(&a, &none)
    };
    let mut c = a.clone();
    c.routes.pop();
    assert!(differs(&c, &none));
    let mut c = a.clone();
    c.codes[0].insts.pop();
    assert!(differs(&c, &none));
    let mut c = a.clone();
    c.inputs[0].period += 1;
    assert!(differs(&c, &none));
    // A stream's default counts when it is not given, not when it is.
    let mut c = a.clone();
    c.inputs[0].init = wafer_emulator::DataInit::Fill(3.0);
    assert!(differs(&c, &none));
    let s = &a.inputs[0];
    let given = |x: f32| Inputs::from([(s.name.clone(), vec![x; s.len as usize])]);
    assert_eq!(
        timing_fingerprint(&c, &given(f32::NAN)),
        timing_fingerprint(&a, &given(f32::NAN))
    );
    // Known values count; NaN is unknown whatever its bits.
    assert_ne!(
        timing_fingerprint(&a, &given(1.0)),
        timing_fingerprint(&a, &given(2.0))
    );
    assert_eq!(
        timing_fingerprint(&a, &given(f32::NAN)),
        timing_fingerprint(&a, &given(-f32::NAN))
    );
}

/// A prepared program runs as `run` runs it, on every engine and more
/// than once (the JIT's code built once and kept); the same preparation
/// runs the program with other data values, and refuses any other change.
#[test]
fn a_prepared_program_runs_as_run_does_and_only_its_own_shape() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let src = std::fs::read_to_string(dir.join("gemv_8x8.wsm")).unwrap();
    let a = asm::parse(&src, "gemv_8x8.wsm").unwrap();
    let arch = Arch::wse3();
    let prep = wafer_emulator::prepare(&a, &arch).unwrap();
    let none = Inputs::new();
    let mut b = a.clone();
    for (i, d) in b.data.iter_mut().enumerate() {
        d.init = wafer_emulator::DataInit::Random {
            seed: 99 + i as u64,
        };
    }
    for engine in [Engine::Reference, Engine::Interp, Engine::Jit] {
        let cfg = RunConfig {
            engine,
            ..RunConfig::default()
        };
        for p in [&a, &b] {
            let want = wafer_emulator::run(p, &arch, &none, &cfg).unwrap();
            for _ in 0..2 {
                let got = prep.run(p, &none, &cfg).unwrap();
                assert_eq!(got.outputs, want.outputs, "{engine:?}");
                assert_eq!((got.cycles, &got.stats), (want.cycles, &want.stats));
            }
        }
        let mem = prep.initial_memory(&b, 1).unwrap();
        assert_eq!(mem, wafer_emulator::initial_memory(&b, &arch, 1).unwrap());
        let resumed = prep.run_resume(&b, &none, &cfg, mem).unwrap();
        assert_eq!(resumed.outputs, prep.run(&b, &none, &cfg).unwrap().outputs);
    }
    let mut c = a.clone();
    c.routes.pop();
    let e = prep
        .run(&c, &none, &RunConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not the program this was prepared for"), "{e}");
    let mut d = a.clone();
    d.data[0].buffer = "elsewhere".into();
    assert!(prep.run(&d, &none, &RunConfig::default()).is_err());
}
