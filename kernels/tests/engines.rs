//! Property test: generated kernels give identical outputs, cycles,
//! statistics and SRAM on the event engine, the JIT engine and the
//! reference engine.

use proptest::prelude::*;
use wafer_emulator::trace::Trace;
use wafer_emulator::{Arch, Engine, Inputs, Program, RunConfig};
use wafer_kernels::attention::AttentionSpec;
use wafer_kernels::gemv::GemvSpec;
use wafer_kernels::reduce::Strategy;
use wafer_kernels::vector::{VectorOp, VectorSpec};

fn agree(p: &Program, arch: &Arch) -> Result<(), TestCaseError> {
    let run = |engine, threads| {
        let cfg = RunConfig {
            engine,
            // A trace is compared too; the runs without one below take
            // the event engine's other path (a core's local steps run
            // ahead in one wake-up, which a trace's span order forbids).
            trace: true,
            threads,
            // Every cycle's compiled work goes to the threads, however little.
            min_parallel_work: 0,
            ..RunConfig::default()
        };
        wafer_emulator::run(p, arch, &Inputs::new(), &cfg).unwrap()
    };
    let a = run(Engine::Reference, 1);
    for (engine, threads) in [
        (Engine::Interp, 1),
        (Engine::Jit, 1),
        (Engine::Jit, 2),
        (Engine::Jit, 4),
    ] {
        let b = run(engine, threads);
        prop_assert_eq!(a.cycles, b.cycles);
        prop_assert_eq!(&a.outputs, &b.outputs);
        prop_assert_eq!(&a.stats.pe, &b.stats.pe);
        prop_assert_eq!(&a.memory, &b.memory);
        prop_assert_eq!(spans(a.trace.as_ref()), spans(b.trace.as_ref()));
    }
    // Without a trace, the event engine runs local steps ahead (see
    // `Machine::chain` in the emulator): the same results.
    // With more than one thread, the grid is stepped in bands of PEs
    // (every grid here, however small: `band_min_pes`), each cycle's
    // bands on the threads: the same results, whatever the count.
    for (engine, threads) in [
        (Engine::Interp, 1),
        (Engine::Jit, 1),
        (Engine::Jit, 2),
        (Engine::Interp, 3),
    ] {
        let b = wafer_emulator::run(p, arch, &Inputs::new(), &threaded(engine, threads, false))
            .unwrap();
        prop_assert_eq!(a.cycles, b.cycles);
        prop_assert_eq!(&a.outputs, &b.outputs);
        prop_assert_eq!(&a.stats.pe, &b.stats.pe);
        prop_assert_eq!(&a.memory, &b.memory);
    }
    for threads in [1, 2] {
        let timing = threaded(Engine::Interp, threads, true);
        let t = wafer_emulator::run(p, arch, &Inputs::new(), &timing).unwrap();
        prop_assert_eq!(t.cycles, a.cycles);
        prop_assert_eq!(&t.stats.pe, &a.stats.pe);
    }
    Ok(())
}

/// An untraced run on `threads`, every grid stepped in bands and every
/// cycle's work shared out however little (the paths more threads take).
fn threaded(engine: Engine, threads: usize, timing_only: bool) -> RunConfig {
    RunConfig {
        engine,
        threads,
        timing_only,
        min_parallel_work: 0,
        band_min_pes: 0,
        ..RunConfig::default()
    }
}

/// Spans in a canonical order (engines visit PEs in different orders).
fn spans(t: Option<&Trace>) -> Vec<String> {
    let mut v: Vec<String> = t
        .iter()
        .flat_map(|t| &t.spans)
        .map(|s| format!("{s:?}"))
        .collect();
    v.sort();
    v
}

fn strategy(k: u32) -> Strategy {
    if k == 0 {
        Strategy::Chain
    } else {
        Strategy::Tree { k }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn gemv_agrees(m in 1u32..40, n in 1u32..80, w in 1u32..8, h in 1u32..8, k in 0u32..3, wse3 in any::<bool>(), dt in 0usize..5) {
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let dtype = [wafer_emulator::DType::F32, wafer_emulator::DType::BF16, wafer_emulator::DType::F16, wafer_emulator::DType::I8, wafer_emulator::DType::Mxfp4][dt];
        let s = GemvSpec { m, n, dtype, w: wafer_kernels::gemv::cols_at_most(n, dtype, w), h: h.min(m), strategy: strategy(k), seed: 3, halves: false, lead: Vec::new() };
        let f = wafer_kernels::gemv::generate(&s, &arch).unwrap();
        agree(&f.program, &arch)?;
    }

    #[test]
    fn router_agrees(experts in 1u32..20, k in 1u32..4, wse3 in any::<bool>()) {
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let s = wafer_kernels::router::RouterSpec { experts, per_token: k.min(experts), seed: 7 };
        let f = wafer_kernels::router::generate(&s, &arch).unwrap();
        agree(&f.program, &arch)?;
    }

    #[test]
    fn vector_kernels_agree(op in 0usize..8, n in 1u32..100, h in 1u32..9, k in 0u32..3) {
        let arch = Arch::wse3();
        let s = VectorSpec { w: 1, op: VectorOp::ALL[op].0, n, h: h.min(n), strategy: strategy(k), eps: 1e-5, seed: 5 };
        let f = wafer_kernels::vector::generate(&s, &arch).unwrap();
        agree(&f.program, &arch)?;
    }

    #[test]
    fn attention_agrees(d in 1u32..5, group in 1u32..3, kv in 1u32..3, ctx in 2u32..24, h in 1u32..6, k in 0u32..3) {
        let arch = Arch::wse2();
        let s = AttentionSpec { head_dim: 2 * d, group, max_context: ctx, pos: ctx / 2, kv_heads: kv, h: h.min(ctx), strategy: strategy(k), seed: 9, sinks: false, window: None, per_query_head: group > 1, pitch: 1 };
        let f = wafer_kernels::attention::generate(&s, &arch).unwrap();
        agree(&f.program, &arch)?;
    }

    #[test]
    fn meshgemv_agrees(w in 1u32..5, groups in 2u32..4, gsize in 2u32..5, extra in 0u32..9, n in 1u32..20, streamed in any::<bool>(), f32_sum in any::<bool>(), wse3 in any::<bool>()) {
        use wafer_emulator::DType;
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let h = groups * gsize;
        let s = wafer_kernels::meshgemv::MeshGemvSpec {
            m: h + extra, n: n.max(w), w, h, groups, dtype: DType::BF16,
            acc: if f32_sum { DType::F32 } else { DType::BF16 }, streamed, seed: 4,
        };
        let f = wafer_kernels::meshgemv::generate(&s, &arch).unwrap();
        agree(&f.program, &arch)?;
    }

    /// Asynchronous transfers on four microthreads and counting join tasks.
    #[test]
    fn meshgemm_agrees(p in 1u32..5, mt in 1u32..4, kt in 1u32..4, nt in 1u32..5, f32_sum in any::<bool>()) {
        use wafer_emulator::DType;
        let arch = Arch::wse3();
        let s = wafer_kernels::meshgemm::MeshGemmSpec {
            m: mt * p, k: kt * p, n: nt * p, p, dtype: DType::F16,
            acc: if f32_sum { DType::F32 } else { DType::F16 }, seed: 6,
        };
        let f = wafer_kernels::meshgemm::generate(&s, &arch).unwrap();
        agree(&f.program, &arch)?;
    }
}
