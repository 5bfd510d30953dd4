//! A mixture of experts' combine on the emulator against its reference
//! and cost model, and the reference against the sum written out.

use proptest::prelude::*;
use std::collections::BTreeMap;
use wafer_emulator::{Arch, RunConfig};
use wafer_kernels::combine::{self, CombineSpec};

fn run(s: &CombineSpec, arch: &Arch, w: &[f32], y: &[f32]) -> (Vec<f32>, u64) {
    let f = combine::generate(s, arch).unwrap();
    let inputs = BTreeMap::from([("w".to_string(), w.to_vec()), ("y".to_string(), y.to_vec())]);
    let (outs, run) = f.run(arch, &inputs, &RunConfig::default()).unwrap();
    (outs["s"].clone(), run.cycles)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]
    #[test]
    fn combine_matches_its_reference_and_cost_model(
        n in 1u32..70, k in 1u32..5, h in 1u32..9, wse3 in any::<bool>(), seed in any::<u64>(),
    ) {
        let s = CombineSpec { n, k, h: h.min(n), seed };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let mut r = seed;
        let mut next = || {
            r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((r >> 40) as f32 / 16777216.0 - 0.5) * 8.0
        };
        let w: Vec<f32> = (0..k).map(|_| next()).collect();
        let y: Vec<f32> = (0..k * n).map(|_| next()).collect();
        let (got, cycles) = run(&s, &arch, &w, &y);
        let want = combine::reference(&s, &w, &y);
        prop_assert!(got.iter().map(|v| v.to_bits()).eq(want.iter().map(|v| v.to_bits())), "{:?} vs {:?}", got, want);
        prop_assert_eq!(cycles, combine::cost(&s, &arch));
    }
}

/// Two outputs weighted 0.25 and 0.75, from zero: `-0` products sum to
/// `+0`, as `0.0 + -0.0` does (a sum started from the first product
/// would give `-0`).
#[test]
fn two_outputs_weighted_and_summed_from_zero() {
    let arch = Arch::wse3();
    let s = CombineSpec {
        n: 3,
        k: 2,
        h: 2,
        seed: 0,
    };
    let (got, _) = run(&s, &arch, &[0.25, 0.75], &[4.0, -8.0, -0.0, 8.0, 4.0, -0.0]);
    assert_eq!(
        got[..2],
        [4.0 * 0.25 + 8.0 * 0.75, -8.0 * 0.25 + 4.0 * 0.75]
    );
    assert_eq!(got[2].to_bits(), 0.0f32.to_bits(), "{got:?}");
    assert!(
        combine::generate(
            &CombineSpec {
                n: 2,
                k: 1,
                h: 3,
                seed: 0
            },
            &arch
        )
        .is_err(),
        "more PEs than elements"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    /// A prefill's combine: each position's sum as the one-position
    /// kernel's, bit for bit, and the cost model exact.
    #[test]
    fn batched_combine_matches_the_one_position_kernel_and_its_cost_model(
        n in 1u32..50, k in 1u32..5, h in 1u32..7, batch in 1u32..6, wse3 in any::<bool>(), seed in any::<u64>(),
    ) {
        let s = CombineSpec { n, k, h: h.min(n), seed };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let f = combine::generate_batch(&s, batch, &arch).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let inputs = f.default_inputs();
        prop_assert_eq!(inputs["w"].len(), (batch * k) as usize);
        let (outs, batched) = f.run(&arch, &inputs, &RunConfig::default()).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let want = combine::reference_batch(&s, &inputs["w"], &inputs["y"]);
        prop_assert_eq!(bits(&outs["s"]), bits(&want));
        for q in 0..batch as usize {
            let (k, n) = (k as usize, n as usize);
            let w = &inputs["w"][q * k..(q + 1) * k];
            let y = &inputs["y"][q * k * n..(q + 1) * k * n];
            let (one, _) = run(&s, &arch, w, y);
            prop_assert_eq!(bits(&one), bits(&outs["s"][q * n..(q + 1) * n]));
        }
        prop_assert_eq!(batched.cycles, combine::cost_batch(&s, batch, &arch), "{:?} x{}", s, batch);
    }
}
