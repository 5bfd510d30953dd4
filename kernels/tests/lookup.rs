//! Embedding lookup and argmax on the emulator against their references
//! and cost models.

use proptest::prelude::*;
use std::collections::BTreeMap;
use wafer_emulator::{Arch, DType, RunConfig};
use wafer_kernels::argmax::{self, ArgmaxSpec};
use wafer_kernels::embedding::{self, EmbeddingSpec};
use wafer_kernels::reduce::Strategy as Reduce;

fn strategy(k: u32) -> Reduce {
    if k == 0 {
        Reduce::Chain
    } else {
        Reduce::Tree { k }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(80))]
    #[test]
    fn embedding_matches_reference_and_cost_model(
        vocab in 1u32..60, dim in 1u32..20, w in 1u32..6, h in 1u32..5, k in 0u32..3, token in 0u32..70,
        dtype in prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::BF16)], seed in any::<u64>(), wse3 in any::<bool>(),
    ) {
        let s = EmbeddingSpec { vocab, dim, dtype, w: w.min(vocab), h: h.min(dim), strategy: strategy(k), token, seed };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let f = embedding::generate(&s, &arch).unwrap();
        let inputs = f.default_inputs();
        let (outs, run) = f.run(&arch, &inputs, &RunConfig::default()).unwrap();
        let want = embedding::reference(&s, &inputs, &f.program);
        prop_assert!(outs["y"].iter().map(|v| v.to_bits()).eq(want.iter().map(|v| v.to_bits())), "{:?}", s);
        if token < vocab {
            // The row itself, up to the sign of zero.
            let table = embedding::table(&s, &f.program);
            let mut g = f.clone();
            let short = embedding::load_table(&s, &mut g, &table[1..]).unwrap_err();
            prop_assert_eq!(short.to_string(), format!("an embedding table of {vocab}x{dim} takes {} values, got {}", vocab * dim, vocab * dim - 1));
            let row = &table[(token * dim) as usize..((token + 1) * dim) as usize];
            prop_assert_eq!(&outs["y"], &row.to_vec());
        } else {
            prop_assert!(outs["y"].iter().all(|v| *v == 0.0));
        }
        let predicted = embedding::cost(&s, &arch, token);
        prop_assert_eq!(run.cycles, predicted, "{:?}", s);
    }

    #[test]
    fn argmax_matches_reference_and_cost_model(
        n in 1u32..120, h in 1u32..7, k in 0u32..3, seed in any::<u64>(), ties in any::<bool>(), wse3 in any::<bool>(),
    ) {
        let s = ArgmaxSpec { n, h: h.min(n), strategy: strategy(k), seed };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let f = argmax::generate(&s, &arch).unwrap();
        let mut inputs = f.default_inputs();
        if ties {
            // Few distinct values: the maximum appears many times.
            let a: Vec<f32> = inputs["a"].iter().map(|v| (v * 3.0).round()).collect();
            inputs = BTreeMap::from([("a".to_string(), a)]);
        }
        let (outs, run) = f.run(&arch, &inputs, &RunConfig::default()).unwrap();
        // Bit for bit: index 0 is +0, not -0.
        prop_assert_eq!(outs["id"][0].to_bits(), (argmax::reference(&inputs["a"]) as f32).to_bits(), "{:?}", s);
        let predicted = argmax::cost(&s, &arch);
        prop_assert_eq!(run.cycles, predicted, "{:?}", s);
    }
}

#[test]
fn listings_of_small_lookups() {
    let arch = Arch::wse3();
    let e = EmbeddingSpec {
        vocab: 6,
        dim: 4,
        dtype: DType::F16,
        w: 2,
        h: 2,
        strategy: Reduce::Chain,
        token: 4,
        seed: 1,
    };
    insta::assert_snapshot!(
        "embedding",
        wafer_emulator::asm::print(&embedding::generate(&e, &arch).unwrap().program)
    );
    let a = ArgmaxSpec {
        n: 7,
        h: 2,
        strategy: Reduce::Chain,
        seed: 1,
    };
    insta::assert_snapshot!(
        "argmax",
        wafer_emulator::asm::print(&argmax::generate(&a, &arch).unwrap().program)
    );
}
