//! WaferLLM's MeshGEMV on the emulator against its reference and its cost
//! model.

use proptest::prelude::*;
use wafer_emulator::{Arch, DType, Pe, RunConfig};
use wafer_kernels::meshgemv::{self, MeshGemvSpec};

/// Emulated cycles and the cost model's, after checking every PE's result
/// (and, streamed, the output streams) bit for bit against the reference.
fn check(s: &MeshGemvSpec, arch: &Arch) -> (u64, u64) {
    let f = meshgemv::generate(s, arch).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    let inputs = f.default_inputs();
    let (outs, run) = f
        .run(arch, &inputs, &RunConfig::default())
        .unwrap_or_else(|e| panic!("{s:?}: {e}"));
    let x = if s.streamed {
        inputs["x"].clone()
    } else {
        s.x()
    };
    let want = meshgemv::reference(s, &meshgemv::weights(s, &f.program), &x);
    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for (c, (yo, nt)) in s.cols().into_iter().enumerate() {
        let w = &want[yo as usize..(yo + nt) as usize];
        for r in 0..s.h {
            let got = run
                .read_buffer(&f.program, Pe::new(c as u32, r), "res")
                .unwrap();
            assert_eq!(
                bits(&got),
                bits(w),
                "{s:?}: PE({c},{r}) holds {got:?}, the reference {w:?}"
            );
        }
    }
    if s.streamed {
        assert_eq!(bits(&outs["y"]), bits(&want), "{s:?}: the y streams");
    } else {
        assert!(outs.is_empty());
    }
    (run.cycles, meshgemv::cost(s, arch))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn meshgemv_matches_its_reference_and_cost_model(
        w in 1u32..5, groups in 2u32..6, gsize in 2u32..8, m_extra in 0u32..12, n in 1u32..40,
        bf16 in any::<bool>(), f32_sum in any::<bool>(), streamed in any::<bool>(),
        wse3 in any::<bool>(), seed in any::<u64>(),
    ) {
        let h = groups * gsize;
        let dtype = if bf16 { DType::BF16 } else { DType::F16 };
        let s = MeshGemvSpec {
            m: h + m_extra * 3, n: n.max(w), w, h, groups, dtype,
            acc: if f32_sum { DType::F32 } else { dtype },
            streamed, seed,
        };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let (measured, predicted) = check(&s, &arch);
        prop_assert_eq!(measured, predicted, "{:?}", s);
    }
}

/// A model's weights (outputs × inputs, as a GEMV takes them) land where
/// the reference reads them transposed.
#[test]
fn load_weights_transposes_a_models_matrix() {
    let arch = Arch::wse2();
    let s = MeshGemvSpec {
        m: 10,
        n: 7,
        w: 3,
        h: 4,
        groups: 2,
        dtype: DType::BF16,
        acc: DType::F32,
        streamed: true,
        seed: 3,
    };
    let mut f = meshgemv::generate(&s, &arch).unwrap();
    // Output j's row is w[j·m ..]; W[k][j] = w[j·m + k].
    let model: Vec<f32> = (0..s.m * s.n)
        .map(|i| DType::BF16.round(i as f32 / 64.0))
        .collect();
    meshgemv::load_weights(&s, &mut f, &model).unwrap();
    let held = meshgemv::weights(&s, &f.program);
    for k in 0..s.m {
        for j in 0..s.n {
            assert_eq!(held[(k * s.n + j) as usize], model[(j * s.m + k) as usize]);
        }
    }
    let x: Vec<f32> = (0..s.m).map(|k| k as f32 / 8.0 - 0.5).collect();
    let (outs, _) = f
        .run(
            &arch,
            &[("x".to_string(), x.clone())].into(),
            &RunConfig::default(),
        )
        .unwrap();
    assert_eq!(outs["y"], meshgemv::reference(&s, &held, &x));
    let short = meshgemv::load_weights(&s, &mut f, &model[1..]).unwrap_err();
    assert_eq!(
        short.to_string(),
        "MeshGEMV 1x10 @ 10x7 takes 70 values, got 69"
    );
}

#[test]
fn bad_specs_are_refused() {
    let arch = Arch::wse2();
    let ok = MeshGemvSpec {
        m: 64,
        n: 64,
        w: 8,
        h: 8,
        groups: 2,
        dtype: DType::F16,
        acc: DType::F16,
        streamed: false,
        seed: 1,
    };
    meshgemv::generate(&ok, &arch).unwrap();
    for (bad, says) in [
        (MeshGemvSpec { m: 7, ..ok.clone() }, "at most 7 rows"),
        (
            MeshGemvSpec {
                groups: 3,
                ..ok.clone()
            },
            "groups",
        ),
        (
            MeshGemvSpec {
                groups: 8,
                ..ok.clone()
            },
            "groups",
        ),
        (
            MeshGemvSpec {
                dtype: DType::F32,
                ..ok.clone()
            },
            "16-bit",
        ),
        (
            MeshGemvSpec {
                acc: DType::BF16,
                ..ok.clone()
            },
            "sums in the weights' f16 or in f32",
        ),
        (
            MeshGemvSpec {
                m: 8 * 4096,
                ..ok.clone()
            },
            "SRAM",
        ),
    ] {
        let e = meshgemv::generate(&bad, &arch).err().unwrap().to_string();
        assert!(e.contains(says), "{bad:?}: {e}");
    }
}

/// Shapes a compiled model gives it (llama-3.2-1b's q/k/v projection on
/// `wse2`: 61-element `x` slices streamed along 33-PE rows) take exactly
/// the predicted cycles; a core busy before it reads `x` would let the
/// row's stream back up and restart one PE a cycle from the far end.
#[test]
fn compiled_model_shapes_take_their_predicted_cycles() {
    let cfg = RunConfig {
        timing_only: true,
        ..RunConfig::default()
    };
    for (m, n, w, h, groups, acc, arch) in [
        (2048, 3072, 33, 34, 2, DType::F32, Arch::wse2()),
        (2048, 3072, 33, 34, 17, DType::BF16, Arch::wse3()),
        (576, 960, 17, 64, 8, DType::F32, Arch::wse3()),
    ] {
        let s = MeshGemvSpec {
            m,
            n,
            w,
            h,
            groups,
            dtype: DType::BF16,
            acc,
            streamed: true,
            seed: 5,
        };
        let f = meshgemv::generate(&s, &arch).unwrap();
        let (_, run) = f.run(&arch, &Default::default(), &cfg).unwrap();
        assert_eq!(run.cycles, meshgemv::cost(&s, &arch), "{s:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// A prefill's projection on MeshGEMV: every position's `y` is the
    /// one-position reference's, bit for bit, the cost model is exact
    /// (or at most 4 cycles under),
    /// its PEs grow by at most `batch_growth`, and a batch built from
    /// another GEMV's program computes with that one's weights.
    #[test]
    fn batched_meshgemv_matches_its_reference_and_cost_model(
        w in 1u32..5, groups in 2u32..5, gsize in 2u32..6, m_extra in 0u32..8, n in 1u32..30,
        batch in 1u32..6, bf16 in any::<bool>(), f32_sum in any::<bool>(),
        wse3 in any::<bool>(), seed in any::<u64>(),
    ) {
        let h = groups * gsize;
        let dtype = if bf16 { DType::BF16 } else { DType::F16 };
        let s = MeshGemvSpec {
            m: h + m_extra * 3, n: n.max(w), w, h, groups, dtype,
            acc: if f32_sum { DType::F32 } else { dtype },
            streamed: true, seed,
        };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let other = meshgemv::generate(&MeshGemvSpec { seed: seed ^ 1, ..s.clone() }, &arch).unwrap();
        let f = meshgemv::generate_batch(&s, batch, &arch).map(|f| f.holding_data_of(&other)).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let inputs = f.default_inputs();
        prop_assert_eq!(inputs["x"].len(), (batch * s.m) as usize);
        let (outs, run) = f
            .run(&arch, &inputs, &RunConfig::default())
            .unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let wts = meshgemv::weights(&s, &other.program);
        prop_assert_eq!(&meshgemv::weights(&s, &f.program), &wts);
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let one: Vec<f32> = inputs["x"]
            .chunks(s.m as usize)
            .flat_map(|x| meshgemv::reference(&s, &wts, x))
            .collect();
        prop_assert_eq!(bits(&outs["y"]), bits(&one), "{:?} x{}", s, batch);
        prop_assert_eq!(bits(&outs["y"]), bits(&meshgemv::reference_batch(&s, &wts, &inputs["x"])));
        // Exact but where a long stream backs up into a row still busy
        // with its AXPY: the send is held, which the model does not
        // follow (133 of 8,640 shapes swept, at most 4 cycles, never over).
        let predicted = meshgemv::cost_batch(&s, batch, &arch);
        prop_assert!(
            (predicted..=predicted + 4).contains(&run.cycles),
            "{:?} x{}: emulated {} predicted {}", s, batch, run.cycles, predicted
        );
        let most = |p: &wafer_emulator::Program| {
            p.placements.iter().map(|pl| {
                let code = &p.codes[pl.code.0 as usize];
                code.code_bytes() as u64 + code.buffers.iter().map(|b| b.bytes() as u64).sum::<u64>()
            }).max().unwrap()
        };
        prop_assert!(most(&f.program) <= most(&other.program) + meshgemv::batch_growth(&s, batch));
    }
}

#[test]
fn one_position_of_the_batched_meshgemv_is_the_meshgemv() {
    let s = MeshGemvSpec {
        m: 12,
        n: 9,
        w: 3,
        h: 4,
        groups: 2,
        dtype: DType::BF16,
        acc: DType::F32,
        streamed: true,
        seed: 5,
    };
    let arch = Arch::wse3();
    let one = meshgemv::generate(&s, &arch).unwrap();
    let batch = meshgemv::generate_batch(&s, 1, &arch).unwrap();
    assert_eq!(
        wafer_emulator::asm::print(&one.program),
        wafer_emulator::asm::print(&batch.program)
    );
    assert_eq!(
        meshgemv::cost(&s, &arch),
        meshgemv::cost_batch(&s, 1, &arch)
    );
    assert!(meshgemv::cost_batch(&s, 4, &arch) < 4 * meshgemv::cost(&s, &arch));
    let unstreamed = MeshGemvSpec {
        streamed: false,
        ..s
    };
    assert!(meshgemv::generate_batch(&unstreamed, 2, &arch).is_err());
}
