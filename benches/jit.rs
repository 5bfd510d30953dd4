//! The JIT engine against the interpreter on the same programs, in one
//! run: a GEMV-heavy kernel (on 8 × 8 PEs: 1024 × 1024 in bf16, each PE
//! running 128 FMACs of 128 elements over its tile, and 512 × 1024 in f32) and
//! a scalar-heavy one (`scalar_loop.wsm`: 256 PEs, each a 20,000-trip
//! loop of float, integer, load and store instructions). Each run starts
//! from the SRAM a first run left (weights in place, as in decoding).
//!
//! Run: `cargo bench --bench jit`. Divan prints each engine's time per run
//! and PE-cycles per second; the JIT's speedup is the ratio of the
//! `interp` and `jit` rows of the same kernel. `threads_*` run the JIT
//! engine with 1 and 2 worker threads (same cycles and results).

use divan::Bencher;
use divan::counter::ItemsCount;
use wafer_emulator::{Arch, DType, Engine, Inputs, Memory, Program, RunConfig, asm};
use wafer_kernels::gemv::{GemvSpec, generate};
use wafer_kernels::reduce::Strategy;

fn main() {
    divan::main();
}

fn gemv(dtype: DType) -> Program {
    let spec = GemvSpec {
        // Tiles of 128 × 128 bf16 or 64 × 128 f32 (32 KiB) per PE.
        m: if dtype == DType::F32 { 512 } else { 1024 },
        n: 1024,
        dtype,
        w: 8,
        h: 8,
        strategy: Strategy::Chain,
        seed: 1,
        halves: false,
        lead: Vec::new(),
    };
    (*generate(&spec, &Arch::wse3())
        .expect("the benchmark GEMV fits")
        .program)
        .clone()
}

fn scalar_loop() -> Program {
    asm::parse(include_str!("scalar_loop.wsm"), "benches/scalar_loop.wsm")
        .expect("benchmark program parses")
}

fn config(engine: Engine, threads: usize) -> RunConfig {
    RunConfig {
        engine,
        threads,
        ..RunConfig::default()
    }
}

/// Runs resume from the SRAM a first run left, as a decode step finds its
/// weights already in place: what is timed is emulation, not filling
/// SRAM from the program's seeded data images.
fn run(p: &Program, engine: Engine, threads: usize, memory: &Memory) -> u64 {
    let cfg = config(engine, threads);
    wafer_emulator::run_resume(p, &Arch::wse3(), &Inputs::new(), &cfg, memory.clone())
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
    let first = wafer_emulator::run(&p, &Arch::wse3(), &Inputs::new(), &config(engine, threads))
        .expect("benchmark program runs");
    bencher
        .counter(ItemsCount::new(first.cycles * p.n_pes()))
        .bench(|| run(&p, engine, threads, &first.memory));
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
fn threads_gemv_bf16(bencher: Bencher, n: usize) {
    bench(bencher, gemv(DType::BF16), Engine::Jit, n);
}

#[divan::bench(args = [1, 2], sample_count = 10, sample_size = 1)]
fn threads_scalar(bencher: Bencher, n: usize) {
    bench(bencher, scalar_loop(), Engine::Jit, n);
}
