//! The event engine (idle routers and cores skipped) against the reference
//! engine (everything stepped every cycle): identical outputs, cycles,
//! statistics and final SRAM on every example program.

use std::path::PathBuf;
use wafer_emulator::{Arch, Engine, Inputs, RunConfig, asm};

fn both(src: &str, file: &str, arch: &Arch) {
    let p = asm::parse(src, file).unwrap();
    let run = |engine| {
        let cfg = RunConfig {
            engine,
            trace: true,
            ..RunConfig::default()
        };
        wafer_emulator::run(&p, arch, &Inputs::new(), &cfg).unwrap()
    };
    let (a, b) = (run(Engine::Reference), run(Engine::Interp));
    assert_eq!(a.cycles, b.cycles, "{file}");
    assert_eq!(a.outputs, b.outputs, "{file}");
    assert_eq!(a.stats, b.stats, "{file}");
    assert_eq!(a.memory, b.memory, "{file}");
    let spans = |t: wafer_emulator::trace::Trace| {
        let mut v: Vec<String> = t.spans.iter().map(|s| format!("{s:?}")).collect();
        v.sort();
        v
    };
    assert_eq!(spans(a.trace.unwrap()), spans(b.trace.unwrap()), "{file}");
}

#[test]
fn every_example_and_the_bench_program_agree_on_both_engines() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wsm"))
        .collect();
    files.push(root.join("benches/reduce_64x64.wsm"));
    files.sort();
    assert!(files.len() >= 6);
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        for arch in [Arch::wse2(), Arch::wse3()] {
            both(&src, &f.display().to_string(), &arch);
        }
    }
}
