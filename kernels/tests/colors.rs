//! Kernels run on whatever colors the caller gives them.

use wafer_emulator::{Arch, DType, RunConfig};
use wafer_kernels::attention::{self, AttentionSpec};
use wafer_kernels::gemv::{self, GemvSpec};
use wafer_kernels::reduce::Strategy;
use wafer_kernels::vector::{self, VectorOp, VectorSpec};
use wafer_kernels::{Fragment, KernelError};

/// The fragment and its recoloured twin compute the same thing in the same
/// number of cycles.
fn same_on_other_colors(f: Fragment, colors: &[u8]) {
    let arch = Arch::wse3();
    let inputs = f.default_inputs();
    let (a, ra) = f.run(&arch, &inputs, &RunConfig::default()).unwrap();
    let moved = f.clone().with_colors(colors).unwrap();
    assert!(
        moved.colors().iter().all(|c| colors.contains(c)),
        "{:?}",
        moved.colors()
    );
    let (b, rb) = moved.run(&arch, &inputs, &RunConfig::default()).unwrap();
    assert_eq!(a, b);
    assert_eq!(ra.cycles, rb.cycles);
}

#[test]
fn kernels_run_on_the_colors_they_are_given() {
    let arch = Arch::wse3();
    let high: Vec<u8> = (0..24).rev().collect();
    same_on_other_colors(
        gemv::generate(
            &GemvSpec {
                m: 20,
                n: 24,
                dtype: DType::F16,
                w: 4,
                h: 3,
                strategy: Strategy::Tree { k: 2 },
                seed: 1,
                halves: false,
                lead: Vec::new(),
            },
            &arch,
        )
        .unwrap(),
        &high,
    );
    let softmax = VectorSpec {
        w: 1,
        op: VectorOp::Softmax,
        n: 50,
        h: 5,
        strategy: Strategy::Tree { k: 2 },
        eps: 1e-5,
        seed: 1,
    };
    same_on_other_colors(
        vector::generate(&softmax, &arch).unwrap(),
        &[9, 4, 17, 11, 12, 13, 14, 15],
    );
    let att = AttentionSpec {
        kv_heads: 2,
        head_dim: 8,
        group: 2,
        max_context: 20,
        pos: 12,
        h: 4,
        strategy: Strategy::Chain,
        seed: 1,
        sinks: false,
        window: None,
        per_query_head: false,
        pitch: 1,
    };
    same_on_other_colors(
        attention::generate(&att, &arch).unwrap(),
        &[20, 21, 22, 23, 5],
    );
}

#[test]
fn too_few_or_repeated_colors_are_refused() {
    let f = vector::generate(
        &VectorSpec {
            w: 1,
            op: VectorOp::RmsNorm,
            n: 20,
            h: 4,
            strategy: Strategy::Chain,
            eps: 1e-5,
            seed: 1,
        },
        &Arch::wse3(),
    )
    .unwrap();
    let need = f.colors().len();
    assert!(
        matches!(
            f.clone().with_colors(&[1, 2]),
            Err(KernelError::Colors { have: 2, .. })
        ),
        "needs {need}"
    );
    assert!(
        f.with_colors(&[3, 3, 4, 5, 6, 7])
            .unwrap_err()
            .to_string()
            .contains("repeat")
    );
}

/// The colors a generated program takes, as placement reads them before
/// generating: its highest color plus one.
fn taken(f: &Fragment) -> usize {
    f.colors().into_iter().max().map_or(0, |c| c as usize + 1)
}

#[test]
fn vector_kernels_take_the_colors_they_say() {
    let arch = Arch::wse3();
    let mut checked = 0;
    for (op, _) in VectorOp::ALL {
        for strategy in [
            Strategy::Chain,
            Strategy::Tree { k: 2 },
            Strategy::Tree { k: 3 },
        ] {
            for h in [1, 2, 3, 5, 8, 13, 40] {
                for w in 1..=4 {
                    let s = VectorSpec {
                        w,
                        op,
                        n: 240,
                        h,
                        strategy,
                        eps: 1e-5,
                        seed: 1,
                    };
                    let Ok(f) = vector::generate(&s, &arch) else {
                        continue;
                    };
                    assert_eq!(s.colors_taken(), taken(&f), "{s:?}");
                    checked += 1;
                }
            }
        }
    }
    // Every op on every strategy and height, and the wide ones on 1..=4.
    assert_eq!(checked, 9 * 3 * 7 + 3 * 3 * 7 * 3);
}

#[test]
fn attention_takes_the_colors_it_says() {
    let arch = Arch::wse3();
    let mut checked = 0;
    for strategy in [Strategy::Chain, Strategy::Tree { k: 2 }] {
        for (kv_heads, group) in [(1, 1), (2, 2), (1, 4), (3, 8)] {
            for h in [1, 2, 4, 7, 16] {
                for per_query_head in [false, true] {
                    let s = AttentionSpec {
                        kv_heads,
                        head_dim: 8,
                        group,
                        max_context: 32,
                        pos: 20,
                        h,
                        strategy,
                        seed: 1,
                        sinks: false,
                        window: None,
                        per_query_head,
                        pitch: 1,
                    };
                    let Ok(f) = attention::generate(&s, &arch) else {
                        continue;
                    };
                    assert_eq!(s.colors_taken(), taken(&f), "{s:?}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 60, "only {checked} shapes generated");
}

#[test]
fn a_vector_kernel_needing_more_colors_than_the_machine_has_is_refused() {
    let mut refused = 0;
    for (op, w, h) in [
        (VectorOp::RmsNorm, 1, 40),
        (VectorOp::Softmax, 1, 13),
        (VectorOp::Swiglu, 3, 8),
        (VectorOp::Add, 1, 5),
    ] {
        let s = VectorSpec {
            w,
            op,
            n: 240,
            h,
            strategy: Strategy::Tree { k: 2 },
            eps: 1e-5,
            seed: 1,
        };
        let need = s.colors_taken();
        // One color short is refused, naming what the kernel needs; exactly
        // enough generates.
        let short = Arch {
            colors: need as u32 - 1,
            ..Arch::wse3()
        };
        match vector::generate(&s, &short) {
            Err(KernelError::Colors { need: n, have }) => {
                assert_eq!((n, have), (need, need - 1), "{s:?}");
                refused += 1;
            }
            other => panic!("{s:?} on {} colors: {:?}", need - 1, other.map(|_| ())),
        }
        let enough = Arch {
            colors: need as u32,
            ..Arch::wse3()
        };
        let f = vector::generate(&s, &enough).unwrap();
        assert_eq!(taken(&f), need);
    }
    assert_eq!(refused, 4);
}
