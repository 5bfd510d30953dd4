//! [`RunResult::serves`]: a run made with some arrivals and departures is
//! the run that later ones, no later than what it did, would make — on
//! every engine, banded or not, functional or timing-only.

use proptest::prelude::*;
use std::sync::Arc;
use wafer_emulator::{
    Arch, Arrivals, Departures, Engine, Fed, Inputs, Program, RunConfig, RunResult,
};

/// A producer `gap` PEs west of a consumer: the producer takes 32 values
/// from the west edge (`x`) and sends them east; the consumer spins
/// `spin` loop trips, takes half of them through `op`, spins `pause`
/// more, takes the rest and sends all 32 off the east edge (`y`). Its
/// input fills the buffers between them long before it looks, so the
/// producer and the host both wait on room.
fn program(gap: u32, spin: u32, pause: u32, op: &str) -> Program {
    let b = gap + 1;
    let pass = match gap {
        0 => String::new(),
        g => format!(".route 1,0 {g}x1 c2 W -> E\n"),
    };
    let src = format!(
        ".grid {}x1\n\
         .code a\n  .buffer v f32[32]\n  .task main local active\nmain:\n  vmov.f32 v, rx(c1)\n  vmov.f32 tx(c2), v\n  end\n.end\n\
         .code b\n  .buffer v f32[32]\n  .task main local active\nmain:\n  li r1, 0\nspin:\n  add r1, r1, 1\n  blt r1, {spin}, spin\n  {op}.f32 v[0, 16, 1], rx(c2)\n  li r1, 0\npause:\n  add r1, r1, 1\n  blt r1, {pause}, pause\n  {op}.f32 v[16, 16, 1], rx(c2)\n  vmov.f32 tx(c3), v\n  end\n.end\n\
         .place a 0,0 1x1\n.place b {b},0 1x1\n.route 0,0 1x1 c1 W -> R\n.route 0,0 1x1 c2 R -> E\n{pass}.route {b},0 1x1 c2 W -> R\n.route {b},0 1x1 c3 R -> E\n\
         .input x f32[32] -> 0,0 W c1 = iota(1, 1)\n.output y f32[32] <- {b},0 E c3\n",
        b + 1
    );
    wafer_emulator::asm::parse(&src, "serves.wsm").unwrap_or_else(|e| panic!("{e}"))
}

fn run(p: &Program, cfg: &RunConfig, a: &Arrivals, d: &Departures) -> RunResult {
    let cfg = RunConfig {
        arrivals: Some(Arc::new(a.clone())),
        departures: Some(Arc::new(d.clone())),
        ..cfg.clone()
    };
    wafer_emulator::run(p, &Arch::wse3(), &Inputs::new(), &cfg).unwrap_or_else(|e| panic!("{e}"))
}

/// Everything a run gives, for comparing two (values as bits: a
/// timing-only run's are NaN).
fn all(r: &RunResult) -> impl PartialEq + std::fmt::Debug + '_ {
    let bits: Vec<Vec<u32>> = (r.outputs.values())
        .map(|v| v.iter().map(|x| x.to_bits()).collect())
        .collect();
    (
        r.cycles,
        bits,
        &r.input_times,
        &r.output_times,
        &r.stats,
        &r.trace,
        &r.memory,
    )
}

/// A cycle between `lo` and `hi` (inclusive) from a draw in 0..=1000.
fn between(lo: u64, hi: u64, draw: u32) -> u64 {
    lo + (hi - lo) * draw as u64 / 1000
}

fn configs() -> Vec<RunConfig> {
    let base = RunConfig {
        trace: true,
        ..RunConfig::default()
    };
    vec![
        RunConfig {
            engine: Engine::Reference,
            ..base.clone()
        },
        RunConfig {
            engine: Engine::Interp,
            ..base.clone()
        },
        base.clone(),
        // Banded (no trace: a trace steps the machine whole).
        RunConfig {
            trace: false,
            threads: 2,
            band_min_pes: 0,
            min_parallel_work: 0,
            ..base.clone()
        },
        RunConfig {
            timing_only: true,
            ..base
        },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Run with random arrivals and departures, then again with each
    /// moved anywhere between its first value and when the run took the
    /// wavelet: the same run in every respect, and `serves` says so.
    #[test]
    fn later_arrivals_and_departures_within_what_the_run_took_change_nothing(
        gap in 0u32..4,
        spin in 0u32..80,
        pause in 0u32..40,
        special in any::<bool>(),
        arrive in proptest::collection::vec(0u64..60, 32),
        depart in proptest::collection::vec(0u64..300, 32),
        draws in proptest::collection::vec(0u32..=1000, 64),
    ) {
        let p = program(gap, spin, pause, if special { "vrcp" } else { "vmov" });
        for cfg in configs() {
            let a = Arrivals::from([("x".to_string(), arrive.clone())]);
            let d = Departures::from([("y".to_string(), depart.clone())]);
            let first = run(&p, &cfg, &a, &d);
            let (entered, left) = (&first.input_times["x"], &first.output_times["y"]);
            let b: Vec<u64> = (0..32).map(|k| between(arrive[k], entered[k], draws[k])).collect();
            let e: Vec<u64> = (0..32).map(|k| between(depart[k], left[k], draws[32 + k])).collect();
            let b = Arrivals::from([("x".to_string(), b)]);
            let e = Departures::from([("y".to_string(), e)]);
            prop_assert!(first.serves(fed(&a, &d), fed(&b, &e)));
            let again = run(&p, &cfg, &b, &e);
            prop_assert_eq!(all(&first), all(&again), "{:?}", cfg.engine);
        }
    }
}

/// A run's feed: its arrivals and departures.
fn fed<'a>(a: &'a Arrivals, d: &'a Departures) -> Fed<'a> {
    Fed {
        arrivals: Some(a),
        departures: Some(d),
    }
}

/// The bounds are where the run changes: an arrival a cycle after its
/// wavelet entered, or a departure a cycle after it left, makes another
/// run, and `serves` refuses both.
#[test]
fn a_cycle_past_what_the_run_took_changes_it() {
    let p = program(2, 40, 10, "vmov");
    let cfg = RunConfig::default();
    let a = Arrivals::from([("x".to_string(), vec![0; 32])]);
    let d = Departures::from([("y".to_string(), vec![0; 32])]);
    let first = run(&p, &cfg, &a, &d);
    let mut late = first.input_times["x"].clone();
    late[31] += 1;
    let b = Arrivals::from([("x".to_string(), late)]);
    assert!(!first.serves(fed(&a, &d), fed(&b, &d)));
    assert_ne!(run(&p, &cfg, &b, &d).input_times, first.input_times);
    let mut held = first.output_times["y"].clone();
    held[31] += 1;
    let e = Departures::from([("y".to_string(), held)]);
    assert!(!first.serves(fed(&a, &d), fed(&a, &e)));
    assert_ne!(run(&p, &cfg, &a, &e).output_times, first.output_times);
    // Earlier than the run's own arrivals (none named: from cycle 0): not
    // served either, the host could have sent sooner.
    let b3 = Arrivals::from([("x".to_string(), vec![3; 32])]);
    let from3 = run(&p, &cfg, &b3, &d);
    let early = Fed {
        arrivals: None,
        departures: Some(&d),
    };
    assert!(!from3.serves(fed(&b3, &d), early));
}
