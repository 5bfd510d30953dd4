//! A mixture of experts' router on the emulator against its reference and
//! cost model, on logits with ties, signed zeros, −∞ and NaN.

use proptest::prelude::*;
use std::collections::BTreeMap;
use wafer_emulator::{Arch, RunConfig};
use wafer_kernels::router::{self, RouterSpec};

/// Logits drawn from a few values, so ties are common.
fn logit() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -3.0f32..3.0,
        2 => prop::sample::select(vec![0.0f32, -0.0, 1.5, -1.5]),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
    ]
}

fn run(s: &RouterSpec, arch: &Arch, logits: &[f32]) -> (Vec<f32>, u64) {
    let f = router::generate(s, arch).unwrap();
    let inputs = BTreeMap::from([("logits".to_string(), logits.to_vec())]);
    let (outs, run) = f.run(arch, &inputs, &RunConfig::default()).unwrap();
    (outs["routing"].clone(), run.cycles)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]
    #[test]
    fn router_matches_its_reference_and_cost_model(
        logits in proptest::collection::vec(logit(), 1..40), k in 1u32..6, wse3 in any::<bool>(),
    ) {
        let s = RouterSpec { experts: logits.len() as u32, per_token: k.min(logits.len() as u32), seed: 0 };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let (got, cycles) = run(&s, &arch, &logits);
        let want = router::reference(&s, &logits);
        // Bit for bit (NaN weights where the picks' top is −∞ on both sides).
        prop_assert!(got.iter().map(|v| v.to_bits()).eq(want.iter().map(|v| v.to_bits())), "{:?} vs {:?}", got, want);
        prop_assert_eq!(cycles, router::cost(&s, &arch));
    }
}

/// Mixtral's routing on finite logits: the largest two, largest first,
/// ties to the lower expert, and the softmax over the two.
#[test]
fn two_of_eight_as_mixtral_routes() {
    let arch = Arch::wse3();
    let s = RouterSpec {
        experts: 8,
        per_token: 2,
        seed: 0,
    };
    let logits = [0.5, 2.0, -1.0, 2.0, 0.0, 1.0, -0.5, 1.9];
    let (got, _) = run(&s, &arch, &logits);
    assert_eq!(
        &got[..2],
        &[1.0, 3.0],
        "the tie goes to the lower expert first"
    );
    assert_eq!(&got[2..], &[0.5, 0.5]);
    let logits = [0.0, 3.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let (got, _) = run(&s, &arch, &logits);
    assert_eq!(&got[..2], &[1.0, 2.0]);
    let w1 = 1.0 / (1.0 + (-2.0f32).exp());
    assert!(
        (got[2] - w1).abs() < 1e-6 && (got[2] + got[3] - 1.0).abs() < 1e-6,
        "{got:?}"
    );
    assert!(
        router::generate(
            &RouterSpec {
                experts: 4,
                per_token: 5,
                seed: 0
            },
            &arch
        )
        .is_err()
    );
}
