//! gpt-oss's clamped SwiGLU on the emulator against its reference and cost
//! model, and the reference against the formula.

use proptest::prelude::*;
use std::collections::BTreeMap;
use wafer_emulator::{Arch, RunConfig};
use wafer_kernels::clamped_swiglu::{self, ClampedSwigluSpec};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]
    #[test]
    fn clamped_swiglu_matches_its_reference_and_cost_model(
        n in 1u32..70, h in 1u32..9, wse3 in any::<bool>(), seed in any::<u64>(),
    ) {
        let s = ClampedSwigluSpec { n, h: h.min(n), seed };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let mut r = seed;
        // Gates and ups on both sides of the clamps.
        let mut next = || {
            r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((r >> 40) as f32 / 16777216.0 - 0.5) * 24.0
        };
        let a: Vec<f32> = (0..n).map(|_| next()).collect();
        let b: Vec<f32> = (0..n).map(|_| next()).collect();
        let f = clamped_swiglu::generate(&s, &arch).unwrap();
        let inputs = BTreeMap::from([("a".to_string(), a.clone()), ("b".to_string(), b.clone())]);
        let (outs, run) = f.run(&arch, &inputs, &RunConfig::default()).unwrap();
        let want = clamped_swiglu::reference(&a, &b);
        prop_assert!(outs["y"].iter().map(|v| v.to_bits()).eq(want.iter().map(|v| v.to_bits())), "{:?} vs {:?}", outs["y"], want);
        prop_assert_eq!(run.cycles, clamped_swiglu::cost(&s, &arch));
    }
}

/// The reference is transformers' formula, clamps included, on numbers.
#[test]
fn the_reference_is_the_formula() {
    let sigma = |x: f32| 1.0 / (1.0 + (-x).exp());
    let formula = |gate: f32, up: f32| {
        let g = gate.min(7.0);
        (up.clamp(-7.0, 7.0) + 1.0) * (g * sigma(g * 1.702))
    };
    for (gate, up) in [
        (10.0, 10.0),
        (-10.0, -10.0),
        (1.0, 0.5),
        (7.0, -7.0),
        (-0.0, 3.0),
        (6.9, 7.1),
    ] {
        let got = clamped_swiglu::reference(&[gate], &[up])[0];
        assert_eq!(got.to_bits(), formula(gate, up).to_bits(), "{gate} {up}");
    }
    assert_eq!(
        clamped_swiglu::reference(&[10.0], &[10.0])[0],
        8.0 * 7.0 * sigma(7.0 * 1.702)
    );
}
