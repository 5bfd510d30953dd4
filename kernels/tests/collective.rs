//! Collectives on the emulator against their reference and cost model.

use proptest::prelude::*;
use wafer_emulator::{Arch, RunConfig};
use wafer_kernels::collective::{self, CollectiveOp, CollectiveSpec, Combine, Scope};
use wafer_kernels::line_reduce::{LineReduce, Target};
use wafer_kernels::reduce::Strategy as Reduce;

fn check(s: &CollectiveSpec, arch: &Arch) -> (u64, u64) {
    let f = collective::generate(s, arch).unwrap_or_else(|e| panic!("{e}"));
    let inputs = f.default_inputs();
    let (outs, run) = f
        .run(arch, &inputs, &RunConfig::default())
        .unwrap_or_else(|e| panic!("{s:?}: {e}"));
    let want = collective::reference(s, &f.program);
    let len = s.group_len();
    for (lane, want) in want.iter().enumerate() {
        match s.op {
            CollectiveOp::Reduce | CollectiveOp::Gather => {
                assert_eq!(&outs[&format!("out{lane}")], want, "{s:?} line {lane}")
            }
            CollectiveOp::Broadcast | CollectiveOp::Allreduce => {
                for pos in 0..len {
                    let got = run
                        .read_buffer(&f.program, s.pe(pos, lane as u32), "v")
                        .unwrap();
                    assert_eq!(&got, want, "{s:?} line {lane} position {pos}");
                }
            }
        }
    }
    (run.cycles, collective::cost(s, arch))
}

fn op() -> impl Strategy<Value = CollectiveOp> {
    prop::sample::select(
        CollectiveOp::ALL
            .iter()
            .map(|(o, _)| *o)
            .collect::<Vec<_>>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]
    #[test]
    fn collectives_match_reference_and_cost_model(
        op in op(), scope in prop::sample::select(vec![Scope::Row, Scope::Col, Scope::Rect]), w in 1u32..10, h in 1u32..10, n in 1u32..24,
        max in any::<bool>(), k in 0u32..4, seed in any::<u64>(), wse3 in any::<bool>(),
    ) {
        let s = CollectiveSpec {
            op: if scope == Scope::Rect && op == CollectiveOp::Gather { CollectiveOp::Allreduce } else { op }, scope, w, h, n,
            combine: if max { Combine::Max } else { Combine::Add },
            strategy: if k == 0 { Reduce::Chain } else { Reduce::Tree { k } }, seed,
        };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let (measured, predicted) = check(&s, &arch);
        prop_assert_eq!(measured, predicted, "{:?}", s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    /// Allreduces of short vectors over lines long enough to meet in the
    /// middle, every PE's result checked.
    #[test]
    fn long_lines_meet_in_the_middle_and_match_reference_and_cost_model(
        scope in prop::sample::select(vec![Scope::Row, Scope::Col, Scope::Rect]), len in 24u32..56, across in 1u32..4, n in 1u32..3,
        max in any::<bool>(), k in 0u32..3, seed in any::<u64>(), wse3 in any::<bool>(),
    ) {
        let strategy = if k == 0 { Reduce::Chain } else { Reduce::Tree { k } };
        prop_assert!(LineReduce::meets_in_the_middle(len, n, strategy, Target::All));
        let (w, h) = if scope == Scope::Col { (across, len) } else { (len, across) };
        let s = CollectiveSpec {
            op: CollectiveOp::Allreduce, scope, w, h, n,
            combine: if max { Combine::Max } else { Combine::Add },
            strategy, seed,
        };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let (measured, predicted) = check(&s, &arch);
        prop_assert_eq!(measured, predicted, "{:?}", s);
    }
}

#[test]
fn listing_of_a_column_allreduce() {
    let s = CollectiveSpec {
        op: CollectiveOp::Allreduce,
        scope: Scope::Col,
        w: 2,
        h: 5,
        n: 4,
        combine: Combine::Max,
        strategy: Reduce::Tree { k: 2 },
        seed: 1,
    };
    let f = collective::generate(&s, &Arch::wse3()).unwrap();
    insta::assert_snapshot!(wafer_emulator::asm::print(&f.program));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn ring_allreduce_matches_reference_and_cost_model(
        col in any::<bool>(), w in 1u32..10, h in 1u32..10, extra in 0u32..60, max in any::<bool>(), seed in any::<u64>(), wse3 in any::<bool>(),
    ) {
        let scope = if col { Scope::Col } else { Scope::Row };
        let len = if col { h } else { w };
        let s = CollectiveSpec { op: CollectiveOp::Allreduce, scope, w, h, n: len + extra, combine: if max { Combine::Max } else { Combine::Add }, strategy: Reduce::Ring, seed };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let (measured, predicted) = check(&s, &arch);
        prop_assert_eq!(measured, predicted, "{:?}", s);
    }
}

/// The ring (which MeshGEMM shares) visits every PE once over links one or
/// two PEs long, and `ring_place` is its inverse.
#[test]
fn the_folded_ring_visits_every_pe_with_short_hops() {
    for p in 1..20 {
        let order = collective::ring_order(p);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..p).collect::<Vec<_>>());
        for q in 0..p as usize {
            let (a, b) = (order[q] as i64, order[(q + 1) % p as usize] as i64);
            assert!(
                p < 2 || (1..=2).contains(&(a - b).abs()),
                "p={p}: {a} -> {b}"
            );
        }
        let place = collective::ring_place(p);
        for (i, pos) in order.iter().enumerate() {
            assert_eq!(
                place[*pos as usize], i as u32,
                "p={p}: ring_place inverts ring_order"
            );
        }
    }
}

/// Long chunks, far beyond what the links buffer: the send/receive order
/// keeps the ring from deadlocking.
#[test]
fn a_ring_with_long_chunks_does_not_deadlock() {
    for p in [2, 3, 8, 9] {
        let s = CollectiveSpec {
            op: CollectiveOp::Allreduce,
            scope: Scope::Row,
            w: p,
            h: 1,
            n: 400 * p,
            combine: Combine::Add,
            strategy: Reduce::Ring,
            seed: 2,
        };
        check(&s, &Arch::wse2());
    }
}
