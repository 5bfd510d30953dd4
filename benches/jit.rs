//! The JIT engine against the interpreter on the same programs, in one
//! run: a GEMV-heavy kernel (a 1024 × 1024 GEMV on 8 × 8 PEs: each PE
//! runs 128 FMACs of 128 elements over its tile, in bf16 and in f32) and
//! a scalar-heavy one (`scalar_loop.wsm`: 256 PEs, each a 20,000-trip
//! loop of float, integer, load and store instructions).
//!
//! Run: `cargo bench --bench jit`. Divan prints each engine's time per run
//! and PE-cycles per second; the JIT's speedup is the ratio of the
//! `interp` and `jit` rows of the same kernel. `threads` runs the GEMV on
//! the JIT engine with 1 and 2 worker threads (same cycles and results).

use divan::Bencher;
use divan::counter::ItemsCount;
use wafer_emulator::{Arch, DType, Engine, Inputs, Program, RunConfig, asm};
use wafer_kernels::gemv::{GemvSpec, generate};
use wafer_kernels::reduce::Strategy;

fn main() {
    divan::main();
}

fn gemv(dtype: DType) -> Program {
    let spec = GemvSpec {
        m: 1024,
        n: 1024,
        dtype,
        w: 8,
        h: 8,
        strategy: Strategy::Chain,
        seed: 1,
    };
    generate(&spec, &Arch::wse3())
        .expect("the benchmark GEMV fits")
        .program
}

fn scalar_loop() -> Program {
    asm::parse(include_str!("scalar_loop.wsm"), "benches/scalar_loop.wsm")
        .expect("benchmark program parses")
}

fn run(p: &Program, engine: Engine, threads: usize) -> u64 {
    let cfg = RunConfig {
        engine,
        threads,
        ..RunConfig::default()
    };
    wafer_emulator::run(p, &Arch::wse3(), &Inputs::new(), &cfg)
        .expect("benchmark program runs")
        .cycles
}

fn engine(name: &str) -> Engine {
    [Engine::Interp, Engine::Jit]
        .into_iter()
        .find(|e| e.name() == name)
        .expect("a benchmarked engine")
}

fn bench(bencher: Bencher, p: Program, engine: Engine, threads: usize) {
    let cycles = run(&p, engine, threads);
    bencher
        .counter(ItemsCount::new(cycles * p.n_pes()))
        .bench(|| run(&p, engine, threads));
}

#[divan::bench(args = ["interp", "jit"], sample_count = 10, sample_size = 1)]
fn gemv_bf16(bencher: Bencher, e: &str) {
    bench(bencher, gemv(DType::BF16), engine(e), 1);
}

#[divan::bench(args = ["interp", "jit"], sample_count = 10, sample_size = 1)]
fn gemv_f32(bencher: Bencher, e: &str) {
    bench(bencher, gemv(DType::F32), engine(e), 1);
}

#[divan::bench(args = ["interp", "jit"], sample_count = 10, sample_size = 1)]
fn scalar(bencher: Bencher, e: &str) {
    bench(bencher, scalar_loop(), engine(e), 1);
}

#[divan::bench(args = [1, 2], sample_count = 10, sample_size = 1)]
fn threads(bencher: Bencher, n: usize) {
    bench(bencher, gemv(DType::BF16), Engine::Jit, n);
}
