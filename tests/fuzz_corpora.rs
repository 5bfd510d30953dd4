//! Every committed fuzz corpus (`fuzz/corpus/TARGET/*`), replayed through
//! the same entry point its libFuzzer target calls (`fuzz/entries.rs`), on
//! the stable toolchain: an input that once crashed, hung or exhausted
//! memory, and every input that reached new code, runs here on each test
//! run, so a regression fails CI without nightly or libFuzzer.

#[path = "../fuzz/entries.rs"]
mod entries;

use std::path::Path;

/// Replay a target's corpus. The seeds (`seed-*`, written by
/// `fuzz/seed.py`) are valid inputs but for `seed-bad-*`: each must still be
/// accepted, or the target no longer reaches the code behind the parser.
fn replay(target: &str, entry: fn(&[u8]) -> bool) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{}: the corpus has {} inputs; run fuzz/run.sh",
        dir.display(),
        files.len()
    );
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let accepted = std::panic::catch_unwind(|| entry(&data))
            .unwrap_or_else(|_| panic!("{} fails its fuzz target", f.display()));
        let name = f.file_name().unwrap().to_string_lossy();
        if name.starts_with("seed-") && !name.starts_with("seed-bad-") {
            assert!(accepted, "{}: a valid seed is refused", f.display());
        }
    }
}

#[test]
fn wsm_corpus() {
    replay("wsm", entries::wsm);
}

#[test]
fn wafer_corpus() {
    replay("wafer", entries::wafer);
}

#[test]
fn bundle_corpus() {
    replay("bundle", entries::bundle);
}

#[test]
fn run_corpus() {
    replay("run", entries::run);
}

#[test]
fn machine_corpus() {
    replay("machine", entries::machine);
}

#[test]
fn llama2c_corpus() {
    replay("llama2c", entries::llama2c);
}

#[test]
fn tokenizer_corpus() {
    replay("tokenizer", entries::tokenizer);
}

#[test]
fn hf_corpus() {
    replay("hf", entries::hf);
}

#[test]
fn ir_corpus() {
    replay("ir", entries::ir);
}

#[test]
fn stats_corpus() {
    replay("stats", entries::stats);
}

#[test]
fn kernel_corpus() {
    replay("kernel", entries::kernel);
}
