//! The `wafer` command line, end to end: what a researcher types. Here
//! programs, machines and files; `kernel.rs` the kernels on their own;
//! `model.rs` models: size, compile, generate, view; `bench.rs` bench and
//! sweep; `experts.rs` a mixture of experts; `prefill.rs` prompts.

mod bench;
mod experts;
mod kernel;
mod model;
mod prefill;
// The checkpoints the compiler's tests write (a shrunk Mixtral here).
#[path = "../../compiler/tests/written/mod.rs"]
#[allow(dead_code)]
mod written;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use wafer_emulator::{Arch, Inputs, RunConfig, load_program};

pub(crate) fn wafer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("wafer runs")
}

pub(crate) fn ok(args: &[&str]) -> String {
    let out = wafer(args);
    assert!(
        out.status.success(),
        "wafer {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn fails(args: &[&str]) -> String {
    let out = wafer(args);
    assert!(!out.status.success(), "wafer {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

pub(crate) fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

pub(crate) fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn run_with_no_file_runs_the_built_in_gemv() {
    let out = ok(&["run"]);
    assert!(
        out.contains("built-in gemv_8x8")
            && out.contains("cycles")
            && out.contains("output    y7 = ["),
        "{out}"
    );
    let j = json(&ok(&["run", "--json"]));
    let lib = wafer_emulator::run(
        &load_program(Path::new("examples/gemv_8x8.wsm")).unwrap(),
        &Arch::wse3(),
        &Inputs::new(),
        &RunConfig::default(),
    )
    .unwrap();
    assert_eq!(j["cycles"], lib.cycles);
    assert_eq!(j["clock_hz"], 1.1e9);
    assert!((j["time_us"].as_f64().unwrap() - lib.cycles as f64 / 1.1e3).abs() < 1e-9);
    assert_eq!(j["outputs"]["y3"].as_array().unwrap().len(), 4);
}

#[test]
fn every_example_runs_from_the_cli() {
    for f in [
        "vector_add",
        "row_broadcast",
        "chain_reduce",
        "tree_reduce",
        "gemv_8x8",
    ] {
        let path = format!("examples/{f}.wsm");
        let j = json(&ok(&["run", &path, "--json", "--arch", "wse2"]));
        assert!(j["cycles"].as_u64().unwrap() > 0, "{f}");
        assert_eq!(j["arch"], "wse2");
    }
}

#[test]
fn assembled_binaries_run_and_disassemble_to_the_same_program() {
    let bin = tmp("gemv.wafer");
    ok(&["asm", "examples/gemv_8x8.wsm", "-o", bin.to_str().unwrap()]);
    let from_text = json(&ok(&["run", "examples/gemv_8x8.wsm", "--json"]));
    let from_bin = json(&ok(&["run", bin.to_str().unwrap(), "--json"]));
    assert_eq!(from_text["cycles"], from_bin["cycles"]);
    assert_eq!(from_text["outputs"], from_bin["outputs"]);
    let listing = ok(&["disasm", bin.to_str().unwrap()]);
    let back = wafer_emulator::asm::parse(&listing, "listing").unwrap();
    assert_eq!(
        back,
        load_program(Path::new("examples/gemv_8x8.wsm")).unwrap()
    );
}

#[test]
fn trace_and_stats_files_are_written_in_their_documented_formats() {
    let (trace, stats) = (tmp("t.json"), tmp("s.json"));
    ok(&[
        "run",
        "examples/chain_reduce.wsm",
        "--trace",
        trace.to_str().unwrap(),
        "--stats",
        stats.to_str().unwrap(),
    ]);
    let t = wafer_emulator::trace::Trace::from_chrome_json(&json(
        &std::fs::read_to_string(&trace).unwrap(),
    ))
    .unwrap();
    assert_eq!(
        t.spans.iter().filter(|s| s.name == "main").count(),
        64,
        "one task span per PE"
    );
    assert!(t.spans.iter().any(|s| s.name == "vfadd"));
    let s: wafer_emulator::stats::Stats =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(s.version, wafer_emulator::stats::STATS_VERSION);
    assert_eq!(s.pe.vector_cycles.len(), 64);
    assert_eq!(s.totals.wavelet_hops, 64 * 16);
}

#[test]
fn inputs_and_dumps() {
    let f = tmp("a.txt");
    std::fs::write(
        &f,
        (0..16)
            .map(|i| format!("{}", i * 2))
            .collect::<Vec<_>>()
            .join(" "),
    )
    .unwrap();
    let j = json(&ok(&[
        "run",
        "examples/vector_add.wsm",
        "--input",
        &format!("a={}", f.display()),
        "--json",
    ]));
    assert_eq!(j["outputs"]["y"][3], 6.0 + 101.5);
    let out = ok(&["run", "examples/row_broadcast.wsm", "--dump", "x@63,0"]);
    assert!(out.contains("dump      x@63,0 = [1, 1.25, 1.5"), "{out}");
}

#[test]
fn arch_prints_the_presets() {
    let j = json(&ok(&["arch", "wse3", "--json"]));
    assert_eq!(serde_json::from_value::<Arch>(j).unwrap(), Arch::wse3());
    let out = ok(&["arch"]);
    assert!(
        out.contains("machine wse2") && out.contains("machine wse3  (883350 PEs"),
        "{out}"
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let e = fails(&["run", "no/such/file.wsm"]);
    assert!(
        e.contains("no/such/file.wsm") && e.contains("cannot read"),
        "{e}"
    );
    let bad = tmp("bad.wsm");
    std::fs::write(
        &bad,
        ".grid 1x1\n.code k\n  .task main local active\nmain:\n  vfadd.f32 q, r\n  end\n.end\n",
    )
    .unwrap();
    let e = fails(&["run", bad.to_str().unwrap()]);
    assert!(
        e.contains("bad.wsm:5:") && e.contains("expected an operand"),
        "{e}"
    );
    let e = fails(&["run", "examples/gemv_8x8.wsm", "--grid", "4x4"]);
    assert!(
        e.contains("needs a 8x8 rectangle (64 PEs)") && e.contains("4x4 grid"),
        "{e}"
    );
    let e = fails(&["run", "--arch", "wse9"]);
    assert!(e.contains("unknown machine `wse9`"), "{e}");
    let e = fails(&[
        "run",
        "examples/vector_add.wsm",
        "--input",
        "a=/nonexistent.bin",
    ]);
    assert!(e.contains("/nonexistent.bin"), "{e}");
}
