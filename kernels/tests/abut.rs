//! Two kernels abutted into one program ([`wafer_kernels::abut`]): the
//! first's output streams into the second's input across their shared
//! edge, and the values are those of running them one after the other.

use wafer_emulator::{Arch, DType, Engine, RunConfig};
use wafer_kernels::abut::abut;
use wafer_kernels::gemv::{self, GemvSpec};
use wafer_kernels::reduce::Strategy as Reduce;

/// A 24 × 20 GEMV on 4 × 6 PEs, and an 18 × 24 one whose x blocks are
/// the first's y blocks (mirrored: 6 rows of 3 PEs).
fn specs(dtype: DType) -> (GemvSpec, GemvSpec) {
    let a = GemvSpec {
        m: 24,
        n: 20,
        dtype,
        w: 4,
        h: 6,
        strategy: Reduce::Chain,
        seed: 1,
    };
    let b = GemvSpec {
        m: 18,
        n: 24,
        dtype,
        w: 6,
        h: 3,
        strategy: Reduce::Tree { k: 2 },
        seed: 2,
    };
    (a, b)
}

#[test]
fn two_gemvs_abutted_compute_their_product_and_overlap() {
    let arch = Arch::wse3();
    for dtype in [DType::F32, DType::BF16] {
        let (a, b) = specs(dtype);
        let fa = gemv::generate(&a, &arch).unwrap();
        // The second's seeded weights, made explicit so they survive the
        // shift east (seeded values are a function of the PE).
        let mut fb = gemv::generate(&b, &arch).unwrap();
        let wb = gemv::weights(&b, &arch, &fb.program);
        gemv::load_weights(&b, &arch, &mut fb, &wb).unwrap();
        let fb = fb.transposed();
        let wa = gemv::weights(&a, &arch, &fa.program);
        let x = fa.default_inputs();
        let cfg = RunConfig::default();
        let (ya, ra) = fa.run(&arch, &x, &cfg).unwrap();
        let xb = std::collections::BTreeMap::from([("x".to_string(), ya["y"].clone())]);
        let (_, rb) = fb.run(&arch, &xb, &cfg).unwrap();

        let both = abut(fa, fb, "y", "x").unwrap();
        assert_eq!(both.program.width, 4 + 3);
        assert_eq!(both.inputs.len(), 1);
        assert_eq!(both.outputs.len(), 1);
        let want = gemv::reference(&b, &wb, &gemv::reference(&a, &wa, &x["x"]));
        let mut cycles = Vec::new();
        for (engine, threads) in [
            (Engine::Reference, 1),
            (Engine::Interp, 1),
            (Engine::Jit, 1),
            (Engine::Jit, 3),
        ] {
            let cfg = RunConfig {
                engine,
                threads,
                ..RunConfig::default()
            };
            let (y, r) = both.run(&arch, &x, &cfg).unwrap();
            assert_eq!(y["y"], want, "{dtype} on {engine:?}, {threads} thread(s)");
            cycles.push(r.cycles);
        }
        assert!(cycles.iter().all(|c| *c == cycles[0]), "{cycles:?}");
        // One program: the second starts on each row block as it comes,
        // so the pair takes less than the two run one after the other, and
        // more than the first alone (the second waits for its x).
        let (joined, apart) = (cycles[0], ra.cycles + rb.cycles);
        assert!(
            ra.cycles < joined && joined < apart,
            "{dtype}: joined {joined}, first {} + second {}",
            ra.cycles,
            rb.cycles
        );
    }
}

#[test]
fn fragments_that_do_not_meet_are_refused_with_the_reason() {
    let arch = Arch::wse3();
    let (a, b) = specs(DType::F32);
    let fa = || gemv::generate(&a, &arch).unwrap();
    // Not mirrored: the second's x comes from the north.
    let e = abut(fa(), gemv::generate(&b, &arch).unwrap(), "y", "x").unwrap_err();
    assert!(e.to_string().contains("cannot abut `y` to `x`"), "{e}");
    // Rows cut differently: a second with 4 row blocks of x, the first's 6.
    let other = GemvSpec { w: 4, ..b.clone() };
    let e = abut(
        fa(),
        gemv::generate(&other, &arch).unwrap().transposed(),
        "y",
        "x",
    )
    .unwrap_err();
    assert!(e.to_string().contains("segments"), "{e}");
    let e = abut(
        fa(),
        gemv::generate(&b, &arch).unwrap().transposed(),
        "z",
        "x",
    )
    .unwrap_err();
    assert!(e.to_string().contains("no output `z`"), "{e}");
}
