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
