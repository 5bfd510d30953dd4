//! Router invariants over random multicast traffic: every destination gets
//! its stream complete and in order (no loss, no duplication, FIFO per
//! color); the only copies are the multicast tree's (hop counts are exact);
//! and no link carries more than one wavelet per cycle (a run can never be
//! shorter than its busiest link's load).

mod common;

use common::Rng;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use wafer_emulator::{Arch, DType, Inputs, Pe, Port, RunConfig, asm};

struct Stream {
    color: u8,
    n: u32,
    dtype: DType,
    src: Pe,
    dests: Vec<Pe>,
}

fn step(pe: Pe, port: Port) -> Pe {
    match port {
        Port::N => Pe::new(pe.x, pe.y - 1),
        Port::S => Pe::new(pe.x, pe.y + 1),
        Port::E => Pe::new(pe.x + 1, pe.y),
        Port::W => Pe::new(pe.x - 1, pe.y),
        Port::Ramp => pe,
    }
}

/// XY routes from the source to each destination; their union is a tree in
/// which every PE is entered from one direction. Returns, per PE, the input
/// port and output ports.
fn tree(s: &Stream) -> BTreeMap<Pe, (Port, BTreeSet<Port>)> {
    let mut t: BTreeMap<Pe, (Port, BTreeSet<Port>)> = BTreeMap::new();
    t.insert(s.src, (Port::Ramp, BTreeSet::new()));
    for d in &s.dests {
        let mut at = s.src;
        while at != *d {
            let out = if at.x < d.x {
                Port::E
            } else if at.x > d.x {
                Port::W
            } else if at.y < d.y {
                Port::S
            } else {
                Port::N
            };
            t.get_mut(&at).unwrap().1.insert(out);
            at = step(at, out);
            t.entry(at).or_insert((out.opposite(), BTreeSet::new()));
        }
        t.get_mut(d).unwrap().1.insert(Port::Ramp);
    }
    t
}

fn value(k: usize, i: u32) -> f32 {
    (k * 100) as f32 + i as f32
}

fn check_traffic(seed: u64) -> Result<(), TestCaseError> {
    let r = &mut Rng(seed);
    let (w, h) = (r.range(2, 6) as u32, r.range(2, 6) as u32);
    let streams: Vec<Stream> = (0..r.range(1, 4))
        .map(|k| {
            let src = Pe::new(r.below(w as u64) as u32, r.below(h as u64) as u32);
            let mut dests = Vec::new();
            for _ in 0..r.range(1, 3) {
                let d = Pe::new(r.below(w as u64) as u32, r.below(h as u64) as u32);
                if d != src && !dests.contains(&d) {
                    dests.push(d);
                }
            }
            if dests.is_empty() {
                dests.push(Pe::new((src.x + 1) % w, src.y));
            }
            Stream {
                color: k as u8 + 1,
                n: r.range(1, 12) as u32,
                dtype: r.pick(&[DType::F32, DType::F16]),
                src,
                dests,
            }
        })
        .collect();

    // Per PE: the ops it runs, each on its own microthread.
    let mut ops: BTreeMap<Pe, Vec<(usize, bool)>> = BTreeMap::new();
    for (k, s) in streams.iter().enumerate() {
        ops.entry(s.src).or_default().push((k, true));
        for d in &s.dests {
            ops.entry(*d).or_default().push((k, false));
        }
    }
    let mut src = format!(".grid {w}x{h}\n");
    for (pe, list) in &ops {
        writeln!(src, ".code pe_{}_{}", pe.x, pe.y).unwrap();
        for (k, send) in list {
            let s = &streams[*k];
            writeln!(
                src,
                "  .buffer {}{k} {}[{}]",
                if *send { "s" } else { "r" },
                s.dtype,
                s.n
            )
            .unwrap();
        }
        src.push_str("  .task main local active\nmain:\n");
        for (t, (k, send)) in list.iter().enumerate() {
            let s = &streams[*k];
            if *send {
                writeln!(src, "  vmov.{} tx(c{}), s{k} async {t}", s.dtype, s.color).unwrap();
            } else {
                writeln!(src, "  vmov.{} r{k}, rx(c{}) async {t}", s.dtype, s.color).unwrap();
            }
        }
        src.push_str("  end\n.end\n");
        writeln!(src, ".place pe_{}_{} {},{} 1x1", pe.x, pe.y, pe.x, pe.y).unwrap();
        for (k, send) in list {
            if *send {
                let vals: Vec<String> = (0..streams[*k].n)
                    .map(|i| format!("{}", value(*k, i)))
                    .collect();
                writeln!(
                    src,
                    ".data s{k} {},{} 1x1 = [{}]",
                    pe.x,
                    pe.y,
                    vals.join(", ")
                )
                .unwrap();
            }
        }
    }
    let mut link_load: BTreeMap<(Pe, Port), u64> = BTreeMap::new();
    let (mut hops, mut deliveries, mut sent) = (0u64, 0u64, 0u64);
    for s in &streams {
        let wavelets = s.n.div_ceil(s.dtype.per_word()) as u64;
        sent += wavelets;
        for (pe, (input, outs)) in tree(s) {
            let outs: Vec<String> = outs.iter().map(|p| p.to_string()).collect();
            writeln!(
                src,
                ".route {},{} 1x1 c{} {input} -> {}",
                pe.x,
                pe.y,
                s.color,
                outs.join(",")
            )
            .unwrap();
            for o in tree(s)[&pe].1.iter() {
                if *o == Port::Ramp {
                    deliveries += wavelets;
                } else {
                    hops += wavelets;
                    *link_load.entry((pe, *o)).or_default() += wavelets;
                }
            }
        }
    }
    let p =
        asm::parse(&src, "traffic.wsm").map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
    let res = wafer_emulator::run(&p, &Arch::wse2(), &Inputs::new(), &RunConfig::default())
        .map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
    for (k, s) in streams.iter().enumerate() {
        let want: Vec<f32> = (0..s.n).map(|i| value(k, i)).collect();
        for d in &s.dests {
            prop_assert_eq!(
                res.read_buffer(&p, *d, &format!("r{k}")).unwrap(),
                want.clone(),
                "stream {} at {}\n{}",
                k,
                d,
                src
            );
        }
    }
    let t = &res.stats;
    prop_assert_eq!(t.totals.wavelet_hops, hops, "link hops\n{}", src);
    prop_assert_eq!(
        t.pe.wavelets_out[Port::Ramp.index()].iter().sum::<u64>(),
        deliveries
    );
    prop_assert_eq!(t.pe.wavelets_from_core.iter().sum::<u64>(), sent);
    let busiest = link_load.values().copied().max().unwrap_or(0);
    prop_assert!(
        res.cycles >= busiest,
        "{} cycles but a link carried {} wavelets",
        res.cycles,
        busiest
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]
    #[test]
    fn multicast_traffic_arrives_complete_in_order_and_within_link_bandwidth(seed in any::<u64>()) {
        check_traffic(seed)?;
    }
}

/// Many streams forced over one link: the run takes at least one cycle per
/// wavelet on it, and they still arrive intact.
#[test]
fn a_shared_link_is_a_bottleneck() {
    let mut src = String::from(".grid 2x1\n.code a\n");
    for k in 0..4 {
        writeln!(src, "  .buffer s{k} f32[32]").unwrap();
    }
    src.push_str("  .task main local active\nmain:\n");
    for k in 0..4 {
        writeln!(src, "  vmov.f32 tx(c{}), s{k} async {k}", k + 1).unwrap();
    }
    src.push_str("  end\n.end\n.code b\n");
    for k in 0..4 {
        writeln!(src, "  .buffer r{k} f32[32]").unwrap();
    }
    src.push_str("  .task main local active\nmain:\n");
    for k in 0..4 {
        writeln!(src, "  vmov.f32 r{k}, rx(c{}) async {k}", k + 1).unwrap();
    }
    src.push_str("  end\n.end\n.place a 0,0 1x1\n.place b 1,0 1x1\n");
    for k in 0..4 {
        writeln!(src, ".route 0,0 1x1 c{} R -> E\n.route 1,0 1x1 c{} W -> R\n.data s{k} 0,0 1x1 = iota({}, 1)", k + 1, k + 1, k * 1000).unwrap();
    }
    let p = asm::parse(&src, "shared.wsm").unwrap();
    let res =
        wafer_emulator::run(&p, &Arch::wse3(), &Inputs::new(), &RunConfig::default()).unwrap();
    for k in 0..4 {
        let want: Vec<f32> = (0..32).map(|i| (k * 1000 + i) as f32).collect();
        assert_eq!(
            res.read_buffer(&p, Pe::new(1, 0), &format!("r{k}"))
                .unwrap(),
            want
        );
    }
    // 128 wavelets share PE(0,0)'s ramp and its east link.
    assert!(res.cycles >= 128, "{}", res.cycles);
    assert_eq!(res.stats.pe.wavelets_out[Port::E.index()][0], 128);
}

/// A router counts each move on its route entry, in 16 bits, and adds the
/// counts to `wavelets_out` when the run ends (a count that wraps adds its
/// 2^16 at once). Past 2^16 wavelets through one entry, a pass-through and
/// a multicast still count every copy out of every port, on every engine,
/// whole and in bands, functional and timing-only.
#[test]
fn wavelets_out_counts_past_a_route_entry_s_sixteen_bits() {
    const N: u32 = (1 << 16) + 4_464;
    let src = format!(
        ".grid 3x2
.route 0,0 1x1 c0 W -> E
.route 1,0 1x1 c0 W -> E,S
.route 2,0 1x1 c0 W -> E
.route 1,1 1x1 c0 N -> E
.route 2,1 1x1 c0 W -> E
.input x f32[{N}] -> 0,0 W c0 = iota(0, 1)
.output y f32[{N}] <- 2,0 E c0
.output z f32[{N}] <- 2,1 E c0
"
    );
    let p = asm::parse(&src, "count.wsm").unwrap();
    let want: Vec<f32> = (0..N).map(|i| i as f32).collect();
    // PE index is y * 3 + x; every other port of every PE sends nothing.
    let sent = [
        (0, Port::E),
        (1, Port::E),
        (1, Port::S),
        (2, Port::E),
        (4, Port::E),
        (5, Port::E),
    ];
    for (engine, threads, timing_only) in [
        (wafer_emulator::Engine::Reference, 1, false),
        (wafer_emulator::Engine::Interp, 1, false),
        (wafer_emulator::Engine::Jit, 2, false),
        (wafer_emulator::Engine::Interp, 2, true),
    ] {
        let cfg = RunConfig {
            engine,
            threads,
            timing_only,
            min_parallel_work: 0,
            band_min_pes: 0,
            ..RunConfig::default()
        };
        let res = wafer_emulator::run(&p, &Arch::wse3(), &Inputs::new(), &cfg).unwrap();
        let at = format!("{engine:?} on {threads} thread(s), timing-only {timing_only}");
        if !timing_only {
            assert_eq!(res.outputs["y"], want, "{at}");
            assert_eq!(res.outputs["z"], want, "{at}");
        }
        for pe in 0..6 {
            for port in [Port::N, Port::S, Port::E, Port::W, Port::Ramp] {
                let n = if sent.contains(&(pe, port)) {
                    N as u64
                } else {
                    0
                };
                assert_eq!(
                    res.stats.pe.wavelets_out[port.index()][pe],
                    n,
                    "PE {pe} port {port:?}, {at}"
                );
            }
        }
    }
}
