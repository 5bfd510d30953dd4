//! Every counter in `Stats`, provoked by a small program and checked
//! against its closed-form value, derived from the cycle semantics in
//! `emulator/src/engine/mod.rs` in terms of the machine's parameters.
//!
//! Each program runs on all three engines (which must agree on every
//! counter) and on two machines whose latencies, depths and issue costs all
//! differ, so a formula that matched one machine by coincidence fails on
//! the other.

use wafer_emulator::stats::Stats;
use wafer_emulator::{Arch, Engine, Inputs, Port, Program, RunConfig, asm};

/// `wse3`, and a machine whose every latency, depth and issue cost differs
/// from it.
fn machines() -> [Arch; 2] {
    let odd = Arch::from_text(
        "base = \"wse2\"\nhop_latency = 2\nramp_latency = 3\nvector_issue_cycles = 3\ntask_switch_cycles = 3\nrouter_buffer_depth = 3\nqueue_depth = 2\n",
        "odd.toml",
    )
    .unwrap();
    [Arch::wse3(), odd]
}

/// Run `src` on every engine; they must agree on the cycles and every
/// counter. Returns the stats.
fn stats(src: &str, arch: &Arch) -> Stats {
    let p: Program = asm::parse(src, "stats.wsm").unwrap_or_else(|e| panic!("{e}"));
    let mut first: Option<Stats> = None;
    for engine in [Engine::Reference, Engine::Interp, Engine::Jit] {
        let cfg = RunConfig {
            engine,
            max_cycles: 1_000_000,
            ..RunConfig::default()
        };
        let r = wafer_emulator::run(&p, arch, &Inputs::new(), &cfg)
            .unwrap_or_else(|e| panic!("{} on {}: {e}", engine.name(), arch.name));
        let mut s = r.stats;
        s.engine.clear();
        match &first {
            None => first = Some(s),
            Some(f) => assert_eq!(&s, f, "{} disagrees on {}", engine.name(), arch.name),
        }
    }
    first.unwrap()
}

/// Cycle in which a main task's first instruction executes: the task is
/// picked at cycle 0 and spends `task_switch_cycles` switching.
fn first_inst(a: &Arch) -> u64 {
    a.task_switch_cycles as u64
}

/// Cycle in which a vector op issued at cycle `t` processes its first
/// element.
fn first_elem(a: &Arch, t: u64) -> u64 {
    t + 1 + a.vector_issue_cycles as u64
}

/// A sender at PE(0,0) streaming `n` f32 east to a receiver at PE(1,0),
/// each first counting to `spin_send` / `spin_recv` (0: no loop).
fn stream(n: u32, spin_send: u32, spin_recv: u32) -> String {
    let spin = |k: u32| {
        if k == 0 {
            String::new()
        } else {
            format!("  li r1, 0\nspin:\n  add r1, r1, 1\n  blt r1, {k}, spin\n")
        }
    };
    format!(
        ".grid 2x1
.code send
  .buffer a f32[{n}]
  .task main local active
main:
{}  vmov.f32 tx(c1), a
  end
.end
.code recv
  .buffer y f32[{n}]
  .task main local active
main:
{}  vmov.f32 y, rx(c1)
  end
.end
.place send 0,0 1x1
.place recv 1,0 1x1
.route 0,0 1x1 c1 R -> E
.route 1,0 1x1 c1 W -> R
",
        spin(spin_send),
        spin(spin_recv)
    )
}

/// Cycles a `li` plus a count to `k` takes: one instruction per cycle,
/// two per iteration.
fn spin_cycles(k: u32) -> u64 {
    if k == 0 { 0 } else { 1 + 2 * k as u64 }
}

#[test]
fn stall_in_counts_the_cycles_a_receive_waits_for_its_first_wavelet() {
    for a in machines() {
        let (n, k) = (16, 30);
        let s = stats(&stream(n, k, 0), &a);
        let (rl, h) = (a.ramp_latency as u64, a.hop_latency as u64);
        // The sender's first element goes up its ramp, across one link and
        // down the receiver's ramp; the receiver's op was ready since its
        // own first-element cycle and waits until then. The stream then
        // keeps up (one wavelet per cycle at both ends): no more waits.
        let sent = first_elem(&a, first_inst(&a) + spin_cycles(k));
        let lands = sent + rl + h + rl;
        let ready = first_elem(&a, first_inst(&a));
        assert_eq!(s.pe.stall_in_cycles, vec![0, lands - ready], "{}", a.name);
        assert_eq!(s.pe.stall_out_cycles, vec![0, 0], "{}", a.name);
        assert_eq!(s.pe.router_stall_cycles, vec![0, 0], "{}", a.name);
        assert_eq!(s.pe.vector_cycles, vec![n as u64; 2], "{}", a.name);
        assert_eq!(s.cycles, lands + n as u64, "{}", a.name);
    }
}

#[test]
fn stall_out_and_router_stalls_count_backpressure() {
    for a in machines() {
        let (n, k) = (64, 40);
        let s = stats(&stream(n, 0, k), &a);
        let (rl, h) = (a.ramp_latency as u64, a.hop_latency as u64);
        let (depth, queue) = (a.router_buffer_depth as u64, a.queue_depth as u64);
        // Each buffer holds its depth plus its link's latency: the
        // sender's ramp buffer, the receiver's west buffer, its queue.
        let (cap_ramp, cap_west, cap_queue) = (depth + rl, depth + h, queue + rl);
        // Element i leaves the sender at s0 + i while there is room, reaches
        // the receiver's west buffer head at s0 + i + rl + h.
        let s0 = first_elem(&a, first_inst(&a));
        let r0 = first_elem(&a, first_inst(&a) + spin_cycles(k));
        // The receiver's first pop at r0 frees queue room at r0 + 1, west
        // room at r0 + 2 and ramp room at r0 + 3: one stage per cycle back.
        // Element cap_queue waits at the head of the west buffer from
        // s0 + cap_queue + rl + h until it moves at r0 + 1; element
        // cap_queue + cap_west at the head of the ramp buffer from
        // s0 + cap_queue + cap_west + rl until r0 + 2; the sender's element
        // cap_queue + cap_west + cap_ramp would have gone at that index's
        // cycle and goes at r0 + 3.
        let router_recv = r0 + 1 - (s0 + cap_queue + rl + h);
        let router_send = r0 + 2 - (s0 + cap_queue + cap_west + rl);
        let stall_out = r0 + 3 - (s0 + cap_queue + cap_west + cap_ramp);
        assert_eq!(s.pe.stall_out_cycles, vec![stall_out, 0], "{}", a.name);
        assert!(stall_out > 50, "{stall_out}: backpressure is provoked");
        assert_eq!(
            s.pe.router_stall_cycles,
            vec![router_send, router_recv],
            "{}",
            a.name
        );
        assert_eq!(s.totals.router_stall_cycles, router_send + router_recv);
        // The buffered wavelets keep the receiver fed: it never waits.
        assert_eq!(s.pe.stall_in_cycles, vec![0, 0], "{}", a.name);
        assert_eq!(s.cycles, r0 + n as u64, "{}", a.name);
    }
}

#[test]
fn issue_stalls_count_the_main_thread_waiting_on_a_busy_microthread() {
    for a in machines() {
        let n = 40u64;
        let src = format!(
            ".grid 1x1
.code k
  .buffer x f32[{n}]
  .buffer y f32[{n}]
  .buffer z f32[{n}]
  .task main local active
main:
  vmov.f32 y, x async 0
  vmov.f32 z, x async 0
  end
.end
.place k 0,0 1x1
"
        );
        let s = stats(&src, &a);
        // The first op issues at t, starts at t + 1 + I and holds the
        // microthread for ⌈n / w⌉ cycles, w the f32 elements the write
        // port takes per cycle (or the lanes, if fewer); the second is
        // ready to issue at t + 1 and waits until the first op's last
        // element: within a cycle the datapath runs before the main
        // thread, so the microthread is free in that same cycle.
        let w = (a.mem_port_bits * a.mem_write_ports / 32).min(a.f32_add_lanes) as u64;
        let busy = n.div_ceil(w);
        let t = first_inst(&a);
        let second = first_elem(&a, t) + busy - 1;
        assert_eq!(
            s.pe.stall_issue_cycles,
            vec![second - (t + 1)],
            "{}",
            a.name
        );
        assert_eq!(s.pe.vector_cycles, vec![2 * busy], "{}", a.name);
        // Issue, issue (the cycle it finally goes), end.
        assert_eq!(s.pe.scalar_cycles, vec![3], "{}", a.name);
    }
}

#[test]
fn switch_cycles_and_tasks_count_every_task_started() {
    for a in machines() {
        // main activates `b` twice (once while it is still pending, which
        // does not queue a second run) and later once more after `b` ran.
        let src = ".grid 1x1
.code k
  .task main local active
  .task b local
main:
  activate b
  activate b
  end
b:
  end
.end
.place k 0,0 1x1
";
        let s = stats(src, &a);
        let t = a.task_switch_cycles as u64;
        assert_eq!(s.pe.tasks, vec![2], "{}", a.name);
        assert_eq!(s.pe.switch_cycles, vec![2 * t], "{}", a.name);
        // main: activate, activate, end; b: end.
        assert_eq!(s.pe.scalar_cycles, vec![4], "{}", a.name);
        assert_eq!(s.cycles, 2 * t + 4, "{}", a.name);
    }
}

#[test]
fn wavelet_counters_count_each_port_and_each_copy() {
    for a in machines() {
        // PE(1,1) sends 8 wavelets up its ramp; its router copies each to
        // every neighbour and back to its own core; the neighbours keep them.
        let src = ".grid 3x3
.code hub
  .buffer a f32[8]
  .buffer b f32[8]
  .task main local active
main:
  vmov.f32 tx(c3), a async 0
  vmov.f32 b, rx(c3)
  end
.end
.code leaf
  .buffer b f32[8]
  .task main local active
main:
  vmov.f32 b, rx(c3)
  end
.end
.place hub 1,1 1x1
.place leaf 1,0 1x1
.place leaf 0,1 1x1
.place leaf 2,1 1x1
.place leaf 1,2 1x1
.route 1,1 1x1 c3 R -> N,S,E,W,R
.route 1,0 1x1 c3 S -> R
.route 1,2 1x1 c3 N -> R
.route 0,1 1x1 c3 E -> R
.route 2,1 1x1 c3 W -> R
";
        let s = stats(src, &a);
        let idx = |x: usize, y: usize| y * 3 + x;
        let hub = idx(1, 1);
        for port in [Port::N, Port::S, Port::E, Port::W, Port::Ramp] {
            let out = &s.pe.wavelets_out[port.index()];
            assert_eq!(out[hub], 8, "{port} on {}", a.name);
        }
        for leaf in [idx(1, 0), idx(0, 1), idx(2, 1), idx(1, 2)] {
            assert_eq!(s.pe.wavelets_out[Port::Ramp.index()][leaf], 8);
            for port in [Port::N, Port::S, Port::E, Port::W] {
                assert_eq!(s.pe.wavelets_out[port.index()][leaf], 0);
            }
        }
        let mut from_core = vec![0; 9];
        from_core[hub] = 8;
        assert_eq!(s.pe.wavelets_from_core, from_core, "{}", a.name);
        // Hops: links between routers (the four copies), not ramps.
        assert_eq!(s.totals.wavelet_hops, 4 * 8, "{}", a.name);
        assert_eq!(s.totals.pes_with_code, 5);
    }
}

#[test]
fn sram_used_is_the_code_and_its_buffers() {
    let src = stream(64, 0, 3);
    let p = asm::parse(&src, "s.wsm").unwrap();
    let s = stats(&src, &Arch::wse3());
    let send = &p.codes[0];
    let recv = &p.codes[1];
    // Buffers are laid out after the code, each 64 f32.
    assert_eq!(
        s.pe.sram_used,
        vec![send.code_bytes() + 256, recv.code_bytes() + 256]
    );
    assert!(recv.code_bytes() > send.code_bytes());
    assert_eq!(s.totals.max_sram_used, recv.code_bytes() + 256);
    assert_eq!(
        s.totals.scalar_cycles,
        s.pe.scalar_cycles.iter().sum::<u64>()
    );
    assert_eq!(s.totals.vector_cycles, 128);
}

/// `add_at` adds every counter of a part at its site and nothing else:
/// each counter gets distinct values, so a counter added to the wrong field,
/// at the wrong place or not at all shows.
#[test]
fn a_part_adds_every_counter_at_its_site() {
    use wafer_emulator::Pe;
    use wafer_emulator::stats::PeStats;
    let (w, h) = (5u32, 6u32);
    let (pw, ph) = (3u32, 2u32);
    let mut part = PeStats::zeroed((pw * ph) as usize);
    part.sram_used.iter_mut().for_each(|b| *b = 7);
    let mut grid = PeStats::zeroed((w * h) as usize);
    // The grid already holds something, which the part adds to.
    grid.tasks.iter_mut().for_each(|t| *t = 1);
    let names: Vec<&str> = part.counters().iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), 14);
    let value = |k: usize, l: usize| (k * 100 + l + 1) as u64;
    {
        // Fill through the public fields, in `counters`'s order.
        let mut fields: Vec<&mut Vec<u64>> = vec![
            &mut part.scalar_cycles,
            &mut part.vector_cycles,
            &mut part.switch_cycles,
            &mut part.stall_in_cycles,
            &mut part.stall_out_cycles,
            &mut part.stall_issue_cycles,
            &mut part.router_stall_cycles,
            &mut part.tasks,
        ];
        let [n, s, e, wv, r] = &mut part.wavelets_out;
        fields.extend([n, s, e, wv, r]);
        fields.push(&mut part.wavelets_from_core);
        for (k, f) in fields.into_iter().enumerate() {
            for (l, v) in f.iter_mut().enumerate() {
                *v = value(k, l);
            }
        }
    }
    // At (3, 5) the part's second column and second row fall outside.
    grid.add_at(w, h, &part, pw, ph, Pe::new(3, 5));
    for (k, (name, c)) in grid.counters().iter().enumerate() {
        for y in 0..h {
            for x in 0..w {
                let base = u64::from(*name == "tasks");
                let want = if (3..5).contains(&x) && y == 5 {
                    base + value(k, (x - 3) as usize)
                } else {
                    base
                };
                assert_eq!(c[(y * w + x) as usize], want, "{name} at ({x}, {y})");
            }
        }
    }
    assert!(
        grid.sram_used.iter().all(|b| *b == 0),
        "SRAM is a level, not added"
    );
}

/// `append_at` moves a part's spans to its site and start, and counts what
/// the part dropped.
#[test]
fn a_part_trace_lands_at_its_site_and_start() {
    use wafer_emulator::Pe;
    use wafer_emulator::trace::{Span, TRACE_VERSION, Trace};
    let span = |x, y, start, end| Span {
        pe: Pe::new(x, y),
        thread: 1,
        name: "vfmac".into(),
        start,
        end,
    };
    let trace = |spans, dropped| Trace {
        version: TRACE_VERSION,
        clock_hz: 1e9,
        width: 8,
        height: 8,
        spans,
        dropped,
    };
    let mut whole = trace(vec![span(0, 0, 0, 4)], 1);
    whole.append_at(&trace(vec![span(1, 2, 3, 9)], 2), Pe::new(4, 5), 100);
    assert_eq!(whole.spans, vec![span(0, 0, 0, 4), span(5, 7, 103, 109)]);
    assert_eq!(whole.dropped, 3);
}
