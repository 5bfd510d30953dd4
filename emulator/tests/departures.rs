//! Two programs that feed each other, run apart: the consumer's host input
//! fed when the producer sent ([`RunConfig::arrivals`]), and the
//! producer's host output held until the consumer's edge took it
//! ([`RunConfig::departures`]). Iterated to a fixed point, the pair runs
//! as the two placed side by side in one program, the consumer holding
//! the producer back through the buffers between them.

use std::sync::Arc;
use wafer_emulator::{Arch, Arrivals, Departures, Engine, Inputs, Program, RunConfig, RunResult};

fn program(src: &str) -> Program {
    wafer_emulator::asm::parse(src, "test.wsm").unwrap_or_else(|e| panic!("{e}"))
}

/// The producer: takes 32 values from the west and sends them on east.
const PRODUCER: &str = ".code a\n  .buffer v f32[32]\n  .task main local active\nmain:\n  vmov.f32 v, rx(c1)\n  vmov.f32 tx(c2), v\n  end\n.end\n";

/// A consumer as [`consumer`], that takes its values in two halves with
/// `pause` more loop trips between them: a stream it takes in bursts.
fn consumer_in_halves(spin: u32, pause: u32, op: &str) -> String {
    format!(
        ".code b\n  .buffer v f32[32]\n  .task main local active\nmain:\n  li r1, 0\nspin:\n  add r1, r1, 1\n  blt r1, {spin}, spin\n  {op}.f32 v[0, 16, 1], rx(c2)\n  li r1, 0\npause:\n  add r1, r1, 1\n  blt r1, {pause}, pause\n  {op}.f32 v[16, 16, 1], rx(c2)\n  vmov.f32 tx(c3), v\n  end\n.end\n"
    )
}

/// The consumer: busy with a local loop of `spin` trips before it takes
/// its 32 values from the west through `op` (`vmov` takes one a cycle,
/// `vrcp` one every `special_fn_cycles`), then sends them on east. Its
/// input buffers fill long before it looks at them.
fn consumer(spin: u32, op: &str) -> String {
    format!(
        ".code b\n  .buffer v f32[32]\n  .task main local active\nmain:\n  li r1, 0\nspin:\n  add r1, r1, 1\n  blt r1, {spin}, spin\n  {op}.f32 v, rx(c2)\n  vmov.f32 tx(c3), v\n  end\n.end\n"
    )
}

/// Both in one program, `gap` PEs apart (their routers pass the values
/// on east): every wavelet between them real.
fn joined(consumer: &str, gap: u32) -> Program {
    let b = gap + 1;
    let pass = match gap {
        0 => String::new(),
        g => format!(".route 1,0 {g}x1 c2 W -> E\n"),
    };
    program(&format!(
        ".grid {}x1\n{PRODUCER}{}.place a 0,0 1x1\n.place b {b},0 1x1\n.route 0,0 1x1 c1 W -> R\n.route 0,0 1x1 c2 R -> E\n{pass}.route {b},0 1x1 c2 W -> R\n.route {b},0 1x1 c3 R -> E\n.input x f32[32] -> 0,0 W c1 = iota(1, 1)\n.output y f32[32] <- {b},0 E c3\n",
        b + 1,
        consumer
    ))
}

/// The producer alone, its output `m` sent off its east edge.
fn producer_apart() -> Program {
    program(&format!(
        ".grid 1x1\n{PRODUCER}.place a 0,0 1x1\n.route 0,0 1x1 c1 W -> R\n.route 0,0 1x1 c2 R -> E\n.input x f32[32] -> 0,0 W c1 = iota(1, 1)\n.output m f32[32] <- 0,0 E c2\n"
    ))
}

/// The consumer alone, taking `m` in from its west edge.
fn consumer_apart(consumer: &str) -> Program {
    program(&format!(
        ".grid 1x1\n{consumer}.place b 0,0 1x1\n.route 0,0 1x1 c2 W -> R\n.route 0,0 1x1 c3 R -> E\n.input m f32[32] -> 0,0 W c2 = zero\n.output y f32[32] <- 0,0 E c3\n"
    ))
}

fn run(p: &Program, inputs: &Inputs, cfg: &RunConfig) -> RunResult {
    wafer_emulator::run(p, &Arch::wse3(), inputs, cfg).unwrap_or_else(|e| panic!("{e}"))
}

/// The pair run apart until neither changes: the producer, the consumer
/// fed when the producer sent, the producer held until the consumer
/// took, and so on, `gap` PEs between them. Returns the last two runs and
/// how many rounds it took.
fn apart(consumer: &str, gap: u32, cfg: &RunConfig) -> (RunResult, RunResult, usize) {
    let arch = Arch::wse3();
    let hop = arch.hop_latency as u64;
    // A router's buffer behind a link holds its depth plus the link's
    // latency (engine/mod.rs).
    let depth = (arch.router_buffer_depth + arch.hop_latency) as usize;
    let (a, b) = (producer_apart(), consumer_apart(consumer));
    let mut departures: Option<Vec<u64>> = None;
    for round in 1..=20 {
        let cfg_a = RunConfig {
            departures: departures
                .clone()
                .map(|d| Arc::new(Departures::from([("m".to_string(), d)]))),
            ..cfg.clone()
        };
        let ra = run(&a, &Inputs::new(), &cfg_a);
        // Side by side: a wavelet the producer sends off its edge is at
        // the consumer's entry router the cycle the consumer's own host
        // stream would push it there.
        let sent: Vec<u64> = ra.output_times["m"]
            .iter()
            .map(|t| t + hop * gap as u64)
            .collect();
        let arrivals = Arrivals::from([("m".to_string(), sent)]);
        let cfg_b = RunConfig {
            arrivals: Some(Arc::new(arrivals)),
            ..cfg.clone()
        };
        let inputs = Inputs::from([("m".to_string(), ra.outputs["m"].clone())]);
        let rb = run(&b, &inputs, &cfg_b);
        // Behind the consumer's edge, `gap` buffers of `depth`: wavelet k
        // leaves once k − gap·depth has entered and the room it left has
        // come back a hop a cycle (side by side: once k itself has).
        let entered = &rb.input_times["m"];
        let held = gap as usize * depth;
        let took: Vec<u64> = (0..entered.len())
            .map(|k| match k.checked_sub(held) {
                Some(j) => entered[j] + gap as u64,
                None => 0,
            })
            .collect();
        if departures.as_ref() == Some(&took) {
            return (ra, rb, round);
        }
        departures = Some(took);
    }
    panic!("no fixed point in 20 rounds");
}

/// The pair apart (`ra`, `rb`) against the two in one program (`one`,
/// the consumer at PE `b`).
fn assert_same(one: &RunResult, ra: &RunResult, rb: &RunResult, b: usize, at: &str) {
    // The consumer: the same cycles and outputs as in one program.
    assert_eq!(
        (one.cycles, &one.output_times["y"], &one.outputs["y"]),
        (rb.cycles, &rb.output_times["y"], &rb.outputs["y"]),
        "{at}"
    );
    // The producer: the same input and the same stalls. Held back, its
    // core waits on its output queue exactly as long as it does behind
    // the consumer's full buffers.
    assert_eq!(one.input_times["x"], ra.input_times["x"], "{at}");
    let pe = |r: &RunResult, i: usize| {
        let s = &r.stats.pe;
        (
            s.vector_cycles[i],
            s.stall_in_cycles[i],
            s.stall_out_cycles[i],
            s.router_stall_cycles[i],
            s.wavelets_out.each_ref().map(|w| w[i]),
        )
    };
    assert_eq!(pe(one, 0), pe(ra, 0), "{at}");
    assert_eq!(pe(one, b), pe(rb, 0), "{at}");
}

#[test]
fn a_consumer_holds_its_producer_back_as_one_program_does() {
    for (spin, gap, op) in [
        (0, 0, "vmov"),
        (40, 0, "vmov"),
        (300, 0, "vmov"),
        (300, 1, "vmov"),
        (300, 3, "vmov"),
        (40, 5, "vmov"),
        (0, 0, "vrcp"),
        (0, 2, "vrcp"),
        (300, 4, "vrcp"),
    ] {
        for (engine, threads) in [
            (Engine::Reference, 1),
            (Engine::Interp, 1),
            (Engine::Jit, 1),
            (Engine::Jit, 2),
        ] {
            let cfg = RunConfig {
                engine,
                threads,
                band_min_pes: 0,
                ..RunConfig::default()
            };
            let code = consumer(spin, op);
            let one = run(&joined(&code, gap), &Inputs::new(), &cfg);
            let (ra, rb, rounds) = apart(&code, gap, &cfg);
            let at = format!("{op} after {spin}, gap {gap}, {engine:?} on {threads} thread(s)");
            let b = gap as usize + 1;
            let want: Vec<f32> = (1..=32).map(|v| v as f32).collect();
            if op == "vmov" {
                assert_eq!(one.outputs["y"], want, "{at}");
            }
            assert_same(&one, &ra, &rb, b, &at);
            if spin == 300 {
                // Held back: the producer stalls, and what it sent left
                // later than it would alone.
                assert!(ra.stats.pe.stall_out_cycles[0] > 200, "{at}");
                assert!(rounds > 1, "{at}");
                let free = run(&producer_apart(), &Inputs::new(), &cfg);
                assert!(
                    ra.output_times["m"][31] > free.output_times["m"][31] + 200,
                    "{at}"
                );
                assert!(ra.cycles > free.cycles + 200, "{at}");
            }
        }
    }
}

/// Departures are per wavelet of a stream the program sends; others are
/// refused by name, and departures at cycle 0 change nothing.
#[test]
fn departures_are_checked_and_none_due_change_nothing() {
    let p = producer_apart();
    let with = |d: Departures| {
        let cfg = RunConfig {
            departures: Some(Arc::new(d)),
            ..RunConfig::default()
        };
        wafer_emulator::run(&p, &Arch::wse3(), &Inputs::new(), &cfg)
    };
    let free = run(&p, &Inputs::new(), &RunConfig::default());
    let zero = with(Departures::from([("m".to_string(), vec![0; 32])])).unwrap();
    assert_eq!(
        (free.cycles, &free.output_times),
        (zero.cycles, &zero.output_times)
    );
    // Held to a cycle: the first wavelet leaves then, the rest after it.
    let late = with(Departures::from([("m".to_string(), vec![500; 32])])).unwrap();
    assert_eq!(late.output_times["m"][0], 500);
    assert!(late.output_times["m"].windows(2).all(|w| w[0] < w[1]));
    let e = with(Departures::from([("m".to_string(), vec![0; 3])]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`m`") && e.contains("3 departure cycles") && e.contains("32 wavelets"),
        "{e}"
    );
    let e = with(Departures::from([("z".to_string(), vec![0])]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`z`") && e.contains("does not send"), "{e}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Random routes and consumers that take their stream in two bursts:
    /// the pair apart, held to a fixed point, is the pair as one program.
    #[test]
    fn held_apart_is_one_program_over_random_routes_and_bursts(
        gap in 0u32..9,
        spin in 0u32..400,
        pause in 0u32..200,
        special in proptest::bool::ANY,
    ) {
        let op = if special { "vrcp" } else { "vmov" };
        let code = consumer_in_halves(spin.max(1), pause.max(1), op);
        let cfg = RunConfig::default();
        let one = run(&joined(&code, gap), &Inputs::new(), &cfg);
        let (ra, rb, _) = apart(&code, gap, &cfg);
        let at = format!("{op}, spin {spin}, pause {pause}, gap {gap}");
        assert_same(&one, &ra, &rb, gap as usize + 1, &at);
    }
}
