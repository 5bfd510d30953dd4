//! WaferLLM's MeshGEMV on the emulator against its reference and its cost
//! model.

use proptest::prelude::*;
use wafer_emulator::{Arch, DType, Pe, RunConfig};
use wafer_kernels::meshgemv::{self, MeshGemvSpec};

/// Emulated cycles and the cost model's, after checking every PE's result
/// bit for bit against the reference.
fn check(s: &MeshGemvSpec, arch: &Arch) -> (u64, u64) {
    let f = meshgemv::generate(s, arch).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    let (_, run) = f
        .run(arch, &Default::default(), &RunConfig::default())
        .unwrap_or_else(|e| panic!("{s:?}: {e}"));
    let want = meshgemv::reference(s, &meshgemv::weights(s, &f.program), &s.x());
    let nt = (s.n / s.w) as usize;
    for c in 0..s.w {
        for r in 0..s.h {
            let got = run.read_buffer(&f.program, Pe::new(c, r), "res").unwrap();
            let w = &want[c as usize * nt..(c as usize + 1) * nt];
            assert!(
                got.iter()
                    .map(|v| v.to_bits())
                    .eq(w.iter().map(|v| v.to_bits())),
                "{s:?}: PE({c},{r}) holds {got:?}, the reference {w:?}"
            );
        }
    }
    (run.cycles, meshgemv::cost(s, arch))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn meshgemv_matches_its_reference_and_cost_model(
        w in 1u32..5, groups in 2u32..4, gsize in 2u32..5, mt in 1u32..6, nt in 1u32..9,
        bf16 in any::<bool>(), wse3 in any::<bool>(), seed in any::<u64>(),
    ) {
        let h = groups * gsize;
        let s = MeshGemvSpec {
            m: mt * h, n: nt * w, w, h, groups,
            dtype: if bf16 { DType::BF16 } else { DType::F16 }, seed,
        };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let (measured, predicted) = check(&s, &arch);
        // The cost model approximates the ramp shared by a middle row's two
        // streams (see `meshgemv::cost`): within 6.4 % over 288 shapes swept
        // on both presets; the bound here leaves a little room.
        let err = (measured as f64 - predicted as f64).abs() / measured as f64;
        prop_assert!(err <= 0.08, "{:?}: measured {} predicted {}", s, measured, predicted);
    }
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
        seed: 1,
    };
    meshgemv::generate(&ok, &arch).unwrap();
    for (bad, says) in [
        (
            MeshGemvSpec {
                m: 65,
                ..ok.clone()
            },
            "multiple",
        ),
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
