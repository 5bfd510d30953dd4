//! Engine throughput on a 64 × 64 chain reduce: emulated PE-cycles and
//! wavelet-hops per host second, for the reference engine and the
//! event-driven interpreter (same program, same run: their ratio is the
//! interpreter's speedup on it).
//!
//! Run: `cargo bench --bench reference_engine`. Divan prints items/s, where
//! an item is one PE-cycle (`pe_cycles`, `interp_pe_cycles`) or one wavelet
//! crossing a link (`wavelet_hops`).

use divan::Bencher;
use divan::counter::ItemsCount;
use wafer_emulator::{Arch, Engine, Inputs, Program, RunConfig, asm};

fn main() {
    divan::main();
}

fn program() -> Program {
    asm::parse(include_str!("reduce_64x64.wsm"), "benches/reduce_64x64.wsm")
        .expect("benchmark program parses")
}

fn run(p: &Program) -> wafer_emulator::RunResult {
    run_on(p, Engine::Reference)
}

fn run_on(p: &Program, engine: Engine) -> wafer_emulator::RunResult {
    let cfg = RunConfig {
        engine,
        ..RunConfig::default()
    };
    wafer_emulator::run(p, &Arch::wse3(), &Inputs::new(), &cfg).expect("benchmark program runs")
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn pe_cycles(bencher: Bencher) {
    let p = program();
    let r = run(&p);
    bencher
        .counter(ItemsCount::new(r.cycles * p.n_pes()))
        .bench(|| run(&p).cycles);
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn wavelet_hops(bencher: Bencher) {
    let p = program();
    let r = run(&p);
    bencher
        .counter(ItemsCount::new(r.stats.totals.wavelet_hops))
        .bench(|| run(&p).cycles);
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn interp_pe_cycles(bencher: Bencher) {
    let p = program();
    let r = run(&p);
    bencher
        .counter(ItemsCount::new(r.cycles * p.n_pes()))
        .bench(|| run_on(&p, Engine::Interp).cycles);
}
