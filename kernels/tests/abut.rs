//! Two kernels abutted into one program ([`wafer_kernels::abut`]): the
//! first's output streams into the second's input across their shared
//! edge, and the values are those of running them one after the other.

use proptest::prelude::*;
use wafer_emulator::{Arch, DType, Engine, RunConfig};
use wafer_kernels::abut::abut;
use wafer_kernels::gemv::{self, GemvSpec};
use wafer_kernels::reduce::Strategy as Reduce;

/// A 24 × 20 GEMV on 4 × 6 PEs, and an 18 × 24 one whose x blocks are
/// the first's y blocks (mirrored: 6 rows of 3 PEs). A GEMV chains into
/// a mirrored one: the first's y leaves row `r` eastward exactly where
/// the second's x enters row `r` from the west, segment for segment.
fn specs(dtype: DType) -> (GemvSpec, GemvSpec) {
    let a = GemvSpec {
        m: 24,
        n: 20,
        dtype,
        w: 4,
        h: 6,
        strategy: Reduce::Chain,
        seed: 1,
        halves: false,
        lead: Vec::new(),
    };
    let b = GemvSpec {
        m: 18,
        n: 24,
        dtype,
        w: 6,
        h: 3,
        strategy: Reduce::Tree { k: 2 },
        seed: 2,
        halves: false,
        lead: Vec::new(),
    };
    (a, b)
}

/// `f` run on each of `engines` (engine, threads), its `y` checked against
/// `want` on each; the cycles of each run.
fn on_engines(
    f: &wafer_kernels::Fragment,
    arch: &Arch,
    x: &std::collections::BTreeMap<String, Vec<f32>>,
    engines: &[(Engine, usize)],
    want: &[f32],
) -> Vec<u64> {
    (engines.iter())
        .map(|&(engine, threads)| {
            let cfg = RunConfig {
                engine,
                threads,
                ..RunConfig::default()
            };
            let (y, r) = f.run(arch, x, &cfg).unwrap();
            assert_eq!(y["y"], want, "{engine:?}, {threads} thread(s)");
            r.cycles
        })
        .collect()
}

#[test]
fn two_gemvs_abutted_compute_their_product_and_overlap() {
    let arch = Arch::wse3();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
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
        let (yb, rb) = fb.run(&arch, &xb, &cfg).unwrap();

        let both = abut(fa, fb, "y", "x").unwrap();
        assert_eq!(both.program.width, 4 + 3);
        assert_eq!(both.inputs.len(), 1);
        assert_eq!(both.outputs.len(), 1);
        let want = gemv::reference(&b, &wb, &gemv::reference(&a, &wa, &x["x"]));
        // Run apart, the first's y fed to the second as its x: the same.
        assert_eq!(yb["y"], want, "{dtype} apart");
        let engines = [
            (Engine::Reference, 1),
            (Engine::Interp, 1),
            (Engine::Jit, 1),
            (Engine::Jit, 3),
        ];
        let cycles = on_engines(&both, &arch, &x, &engines, &want);
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
    // An add takes its second operand from the west beside the first:
    // it would have to come through the GEMV.
    use wafer_kernels::vector::{self, VectorOp, VectorSpec};
    let add = VectorSpec {
        w: 1,
        op: VectorOp::Add,
        n: 24,
        h: 6,
        strategy: Reduce::Chain,
        eps: 1e-5,
        seed: 5,
    };
    let fadd = vector::generate(&add, &arch).unwrap();
    let e = abut(fa(), fadd, "y", "a").unwrap_err();
    assert!(e.to_string().contains("also crosses the seam"), "{e}");
}

/// A chain that turns: a GEMV, a SiLU down a column beside it, a mirrored
/// GEMV beside that (y out of its south edge by columns), and a GEMV
/// under it taking that y as its x from the north. One program, the
/// product of the four references, bit for bit on every engine.
#[test]
fn a_chain_of_four_kernels_turns_south_and_matches_the_references() {
    use wafer_kernels::abut::abut_south;
    use wafer_kernels::vector::{self, VectorOp, VectorSpec};
    let arch = Arch::wse3();
    let (a, b) = specs(DType::F32);
    // Explicit weights: seeded ones are a function of the PE.
    let explicit = |s: &GemvSpec| {
        let mut f = gemv::generate(s, &arch).unwrap();
        let w = gemv::weights(s, &arch, &f.program);
        gemv::load_weights(s, &arch, &mut f, &w).unwrap();
        (f, w)
    };
    let (fa, wa) = explicit(&a);
    let silu = VectorSpec {
        w: 1,
        op: VectorOp::Silu,
        n: a.m,
        h: a.h,
        strategy: Reduce::Chain,
        eps: 1e-5,
        seed: 3,
    };
    let fs = vector::generate(&silu, &arch).unwrap();
    let (fb, wb) = explicit(&b);
    // Under the mirrored second GEMV (3 columns carrying its 18 outputs):
    // a 10 × 18 GEMV on 3 × 2 PEs.
    let c = GemvSpec {
        m: 10,
        n: 18,
        dtype: DType::F32,
        w: 3,
        h: 2,
        strategy: Reduce::Chain,
        seed: 4,
        halves: false,
        lead: Vec::new(),
    };
    let (fc, wc) = explicit(&c);
    let x = fa.default_inputs();
    let ya = gemv::reference(&a, &wa, &x["x"]);
    let ys = vector::reference(&silu, &[("a".to_string(), ya)].into(), &fs.program);
    let want = gemv::reference(&c, &wc, &gemv::reference(&b, &wb, &ys));

    // The four run apart but overlapped, each fed its input's elements
    // when they left the kernel before (a hop away: its entry PE is the
    // next across the seam): when the last one ends.
    let parts = [fa.clone(), fs.clone(), fb.clone().transposed(), fc.clone()];
    let ports = [("x", "y"), ("a", "y"), ("x", "y"), ("x", "y")];
    let mut values = x["x"].clone();
    let mut at: Option<Vec<u64>> = None;
    let mut overlapped = 0;
    for (f, (input, output)) in parts.iter().zip(ports) {
        let fed = std::collections::BTreeMap::from([(input.to_string(), values)]);
        let arrivals = at.take().map(|t| {
            let t = std::collections::BTreeMap::from([(input.to_string(), t)]);
            std::sync::Arc::new(f.arrivals(&t).unwrap())
        });
        let cfg = RunConfig {
            arrivals,
            ..RunConfig::default()
        };
        let (outs, r) = f.run(&arch, &fed, &cfg).unwrap();
        let port = f.outputs.iter().find(|p| p.name == output).unwrap();
        at = Some(f.element_times(port, &r.output_times).unwrap());
        overlapped = r.cycles;
        values = outs[output].clone();
    }
    assert_eq!(values, want);

    let two = abut(fa, fs, "y", "a").unwrap();
    let three = abut(two, fb.transposed(), "y", "x").unwrap();
    let four = abut_south(three, fc, "y", "x").unwrap();
    assert_eq!(
        (four.program.width, four.program.height),
        (4 + 1 + 3, 6 + 2)
    );
    let engines = [
        (Engine::Reference, 1),
        (Engine::Interp, 2),
        (Engine::Jit, 3),
    ];
    let cycles = on_engines(&four, &arch, &x, &engines, &want);
    assert!(cycles.iter().all(|c| *c == cycles[0]), "{cycles:?}");
    assert_eq!(
        overlapped, cycles[0],
        "the four apart, overlapped, against the chain"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any two GEMVs whose rows line up, abutted: the product of the two
    /// references bit for bit, the same cycles on the interpreter and on
    /// the JIT over two threads, later than the first alone (every
    /// output of the second needs all of the first's), no later than
    /// the two as the compiler's stages, and as long as the two run
    /// apart with the second's x arriving when the first's y left.
    #[test]
    fn abutted_gemvs_match_the_references_on_every_engine(
        m in 1u32..30, n in 1u32..30, k in 1u32..20, w in 1u32..6, h in 1u32..6, w2 in 1u32..5,
        dtype in prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::BF16)],
        tree in any::<bool>(), seed in any::<u64>(),
    ) {
        let strategy = if tree { Reduce::Tree { k: 2 } } else { Reduce::Chain };
        let h = h.min(m);
        let a = GemvSpec { m, n, dtype, w: gemv::cols_at_most(n, dtype, w), h, strategy, seed, halves: false, lead: Vec::new() };
        let b = GemvSpec { m: k, n: m, dtype, w: h, h: w2.min(k), strategy, seed: seed ^ 1, halves: false, lead: Vec::new() };
        prop_assume!(gemv::cols_ok(m, dtype, h));
        let arch = Arch::wse2();
        let fa = gemv::generate(&a, &arch).unwrap();
        let mut fb = gemv::generate(&b, &arch).unwrap();
        let (wa, wb) = (gemv::weights(&a, &arch, &fa.program), gemv::weights(&b, &arch, &fb.program));
        gemv::load_weights(&b, &arch, &mut fb, &wb).unwrap();
        let x = fa.default_inputs();
        let (ya, alone) = fa.run(&arch, &x, &RunConfig::default()).unwrap();
        let fb = fb.transposed();
        let xb = std::collections::BTreeMap::from([("x".to_string(), ya["y"].clone())]);
        let (_, second) = fb.run(&arch, &xb, &RunConfig::default()).unwrap();
        let parts = (fa.clone(), fb.clone());
        let pair = abut(fa, fb, "y", "x").unwrap();
        let want = gemv::reference(&b, &wb, &gemv::reference(&a, &wa, &x["x"]));
        let run = |engine, threads| {
            let cfg = RunConfig { engine, threads, ..RunConfig::default() };
            pair.run(&arch, &x, &cfg).unwrap()
        };
        let ((yi, ri), (yj, rj)) = (run(Engine::Interp, 1), run(Engine::Jit, 2));
        prop_assert_eq!(&yi["y"], &want);
        prop_assert_eq!(&yj["y"], &want);
        prop_assert_eq!(ri.cycles, rj.cycles);
        prop_assert!(ri.cycles > alone.cycles, "pair {} first alone {}", ri.cycles, alone.cycles);
        // The compiler's stages model the pair as the first, a hand-off of
        // the trip alone (one hop here: each row of y enters the second
        // beside where it leaves the first) and the second, each run fed
        // by the host: an upper bound of the two streaming into each other.
        let staged = alone.cycles + arch.hop_latency as u64 + second.cycles;
        prop_assert!(ri.cycles <= staged, "pair {} as stages {}", ri.cycles, staged);
        // Run apart but overlapped, as the decoder's overlapped step runs
        // stages: the second fed each element at the cycle it left the
        // first (a hop from the second's entry router, as in the pair),
        // on every engine: the pair's cycles exactly.
        let (first, second) = &parts;
        let left = first.element_times(&first.outputs[0], &alone.output_times).unwrap();
        let at = std::collections::BTreeMap::from([("x".to_string(), left)]);
        let arrivals = std::sync::Arc::new(second.arrivals(&at).unwrap());
        for (engine, threads) in [(Engine::Reference, 1), (Engine::Interp, 1), (Engine::Jit, 2)] {
            let arrivals = Some(arrivals.clone());
            let cfg = RunConfig { engine, threads, arrivals, band_min_pes: 0, ..RunConfig::default() };
            let (y, apart) = second.run(&arch, &xb, &cfg).unwrap();
            prop_assert_eq!(&y["y"], &want);
            prop_assert_eq!(apart.cycles, ri.cycles, "{:?}: overlapped apart, against the pair", engine);
        }
    }
}
