//! Every hand-written example in `examples/`: its numbers against a plain
//! computation, its cycle count against an analytical expectation derived
//! from the engine's documented cycle semantics, and its listing.
//!
//! The cycle formulas are exact, not approximate: each follows one element
//! through the semantics in `emulator/src/engine/mod.rs` (issue delay, ramp
//! and hop latencies, one wavelet per link per cycle). Each is checked on
//! `wse3` and on a machine with different latencies, so a formula that
//! matched by coincidence would fail on the other.

use std::path::Path;
use wafer_emulator::{Arch, Inputs, Pe, Program, RunConfig, RunResult, load_program};

fn example(name: &str) -> Program {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    load_program(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A machine whose latencies all differ from the presets'.
fn odd_machine() -> Arch {
    Arch::from_text("base = \"wse2\"\nhop_latency = 2\nramp_latency = 3\nvector_issue_cycles = 3\ntask_switch_cycles = 3\n", "odd.toml").unwrap()
}

fn machines() -> [Arch; 2] {
    [Arch::wse3(), odd_machine()]
}

fn run(p: &Program, arch: &Arch) -> RunResult {
    wafer_emulator::run(p, arch, &Inputs::new(), &RunConfig::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Cycle at which a main task's first vector op starts processing: the task
/// is picked at cycle 0 and spends `task_switch_cycles` switching, its first
/// instruction issues, and the op waits `vector_issue_cycles` more.
fn first_op_start(a: &Arch) -> u64 {
    (a.task_switch_cycles + 1 + a.vector_issue_cycles) as u64
}

#[test]
fn vector_add_adds_and_takes_two_cycles_per_element() {
    let p = example("vector_add.wsm");
    let (a, b) = (p.input_values("a").unwrap(), p.input_values("b").unwrap());
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    for arch in machines() {
        let r = run(&p, &arch);
        assert_eq!(r.outputs["y"], want);
        // Both inputs reach the core through its one ramp link, which carries
        // one wavelet per cycle and alternates between them: element k's pair
        // is in the queue at h + 2k + 1 + r. The last sum then climbs the ramp
        // (r) and crosses the host link (h).
        let (n, h, rl) = (16u64, arch.hop_latency as u64, arch.ramp_latency as u64);
        assert_eq!(
            r.cycles,
            (h + 2 * (n - 1) + 1 + rl) + rl + h,
            "on {}",
            arch.name
        );
    }
}

#[test]
fn row_broadcast_reaches_every_pe_in_one_pipelined_pass() {
    let p = example("row_broadcast.wsm");
    let x = p.input_values("x").unwrap();
    for arch in machines() {
        let r = run(&p, &arch);
        for i in 0..64 {
            assert_eq!(
                r.read_buffer(&p, Pe::new(i, 0), "x").unwrap(),
                x,
                "PE({i},0)"
            );
        }
        // Element k enters at cycle k, crosses the host link and 63 hops
        // (64·h), goes down the ramp (r) at the last PE and is stored that
        // cycle; `end` runs in the same cycle, so the run ends one later.
        let (n, h, rl) = (16u64, arch.hop_latency as u64, arch.ramp_latency as u64);
        assert_eq!(r.cycles, (n - 1) + 64 * h + rl + 1, "on {}", arch.name);
    }
}

#[test]
fn chain_reduce_sums_in_chain_order() {
    let p = example("chain_reduce.wsm");
    let vs: Vec<Vec<f32>> = (0..64)
        .map(|i| p.initial_values(Pe::new(i, 0), "v").unwrap())
        .collect();
    let want: Vec<f32> = (0..16)
        .map(|e| vs[1..].iter().fold(vs[0][e], |acc, v| acc + v[e]))
        .collect();
    for arch in machines() {
        let r = run(&p, &arch);
        assert_eq!(
            r.outputs["sum"], want,
            "bit-exact: the same summation order"
        );
        // PE(0,0) pushes element k at start + k; each further PE adds it the
        // cycle it arrives, 2r + h later (up its ramp, one hop, down the
        // next ramp); the last sum goes up the ramp and over the host link.
        let (n, h, rl) = (16u64, arch.hop_latency as u64, arch.ramp_latency as u64);
        let want_cycles = first_op_start(&arch) + (n - 1) + 63 * (2 * rl + h) + rl + h;
        assert_eq!(r.cycles, want_cycles, "on {}", arch.name);
    }
}

#[test]
fn tree_reduce_sums_in_tree_order_in_six_steps() {
    let p = example("tree_reduce.wsm");
    let vs: Vec<Vec<f32>> = (0..64)
        .map(|i| p.initial_values(Pe::new(i, 0), "v").unwrap())
        .collect();
    // PE x with k trailing zeros adds, in round order, the final sums of
    // x + 1, x + 2, ..., x + 2^(k-1).
    fn total(x: usize, vs: &[Vec<f32>]) -> Vec<f32> {
        let k = if x == 0 {
            6
        } else {
            x.trailing_zeros() as usize
        };
        let mut v = vs[x].clone();
        for r in 0..k {
            let other = total(x + (1 << r), vs);
            for (a, b) in v.iter_mut().zip(other) {
                *a += b;
            }
        }
        v
    }
    let want = total(0, &vs);
    let chain = run(&example("chain_reduce.wsm"), &Arch::wse3());
    for arch in machines() {
        let r = run(&p, &arch);
        assert_eq!(
            r.outputs["sum"], want,
            "bit-exact: the same summation order"
        );
        // Six rounds, each: the last element arrives (n - 1 after the first,
        // which took 2r + 2^round·h), the receive op completes and the send
        // op issues the same cycle and starts 1 + I later. Then the root's
        // sum streams to the host (n - 1, up the ramp, over the host link).
        let (n, h, rl, i) = (
            16u64,
            arch.hop_latency as u64,
            arch.ramp_latency as u64,
            arch.vector_issue_cycles as u64,
        );
        let rounds: u64 = (0..6)
            .map(|round| (n - 1) + 2 * rl + (1 << round) * h + 1 + i)
            .sum();
        assert_eq!(
            r.cycles,
            first_op_start(&arch) + rounds + (n - 1) + rl + h,
            "on {}",
            arch.name
        );
    }
    let tree = run(&p, &Arch::wse3());
    assert!(
        tree.cycles * 3 < chain.cycles * 2,
        "tree {} vs chain {}",
        tree.cycles,
        chain.cycles
    );
}

#[test]
fn gemv_matches_a_plain_matrix_vector_product() {
    let p = example("gemv_8x8.wsm");
    let m = 4usize;
    let x: Vec<Vec<f32>> = (0..8)
        .map(|j| p.input_values(&format!("x{j}")).unwrap())
        .collect();
    for arch in machines() {
        let r = run(&p, &arch);
        for ry in 0..8u32 {
            // Each PE: y = 0, then y += W[:, j]·x[j] for j in 0..4 (product
            // rounded, then the sum); the row adds partials west to east.
            let partial = |cx: u32| -> Vec<f32> {
                let w = p.initial_values(Pe::new(cx, ry), "w").unwrap();
                let mut y = vec![0f32; m];
                for j in 0..m {
                    for (i, yi) in y.iter_mut().enumerate() {
                        *yi += w[j * m + i] * x[cx as usize][j];
                    }
                }
                y
            };
            let mut acc = partial(0);
            for cx in 1..8 {
                for (a, b) in acc.iter_mut().zip(partial(cx)) {
                    *a += b;
                }
            }
            assert_eq!(
                r.outputs[&format!("y{ry}")],
                acc,
                "row {ry} on {}",
                arch.name
            );
        }
        // x reaches row y's cores at h(y+1) + r and is stored as it comes
        // (not before the receive op starts); then two `li`, four loop
        // iterations of ldf + vfmac (issue, I, m elements) + add, add, blt,
        // the send/add op's issue delay, m elements, and the row chain:
        // 7 · (2r + h) plus the ramp and host link at the east edge.
        let (h, rl, i, mm) = (
            arch.hop_latency as u64,
            arch.ramp_latency as u64,
            arch.vector_issue_cycles as u64,
            m as u64,
        );
        let x_done = (0..8)
            .map(|y| first_op_start(&arch).max(h * (y + 1) + rl) + (mm - 1))
            .max()
            .unwrap();
        let want = x_done + 2 + 4 * (i + mm + 4) + 1 + i + (mm - 1) + 7 * (2 * rl + h) + rl + h;
        assert_eq!(r.cycles, want, "on {}", arch.name);
    }
}

#[test]
fn backpressure_stalls_the_sender_on_output_until_the_receiver_drains() {
    let p = example("backpressure.wsm");
    let a_values: Vec<f32> = (0..64).map(|i| i as f32).collect();
    for arch in machines() {
        let r = run(&p, &arch);
        assert_eq!(r.read_buffer(&p, Pe::new(1, 0), "y").unwrap(), a_values);
        // The receiver's op starts after `li` and 40 iterations of `add`,
        // `blt`; it drains the buffered wavelets and then the rest, one per
        // cycle, never waiting.
        let r0 = first_op_start(&arch) + 1 + 2 * 40;
        assert_eq!(r.cycles, r0 + 64, "on {}", arch.name);
        // The sender fills its ramp buffer, the receiver's west buffer and
        // queue (each its depth plus its link's latency), then waits on
        // output until the first pop's room reaches it three stages back
        // (emulator/tests/stats.rs derives every counter of this pattern).
        let (rl, h) = (arch.ramp_latency as u64, arch.hop_latency as u64);
        let held = (arch.router_buffer_depth as u64 + rl)
            + (arch.router_buffer_depth as u64 + h)
            + (arch.queue_depth as u64 + rl);
        let stall_out = r0 + 3 - (first_op_start(&arch) + held);
        assert_eq!(
            r.stats.pe.stall_out_cycles,
            vec![stall_out, 0],
            "on {}",
            arch.name
        );
        assert_eq!(r.stats.pe.stall_in_cycles, vec![0, 0], "on {}", arch.name);
    }
}

#[test]
fn listings_of_the_examples() {
    for name in [
        "vector_add",
        "row_broadcast",
        "chain_reduce",
        "tree_reduce",
        "gemv_8x8",
        "backpressure",
    ] {
        let p = example(&format!("{name}.wsm"));
        let listing = wafer_emulator::asm::print(&p);
        insta::assert_snapshot!(name, listing);
        let back = wafer_emulator::asm::parse(&listing, name).unwrap();
        assert_eq!(
            back, p,
            "{name}: the listing parses back to the same program"
        );
    }
}

#[test]
fn the_same_run_twice_gives_identical_results() {
    let p = example("gemv_8x8.wsm");
    let cfg = RunConfig {
        trace: true,
        ..RunConfig::default()
    };
    let a = wafer_emulator::run(&p, &Arch::wse2(), &Inputs::new(), &cfg).unwrap();
    let b = wafer_emulator::run(&p, &Arch::wse2(), &Inputs::new(), &cfg).unwrap();
    assert_eq!(a.cycles, b.cycles);
    assert_eq!(a.outputs, b.outputs);
    assert_eq!(a.stats, b.stats);
    assert_eq!(a.trace, b.trace);
}
