//! `benches/gpu/decode.py`, the measured-GPU-baseline script, run on the
//! CPU with its tiny config: it must time every context it is given and
//! write the JSON `wafer bench` reads. It needs Python with PyTorch; CI
//! installs them (`.ci/run`), so there a missing torch is a failure, and
//! elsewhere the test says what it skipped.

use std::path::Path;
use std::process::Command;

fn has_torch() -> bool {
    Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_gpu_script_times_a_tiny_model_on_the_cpu_in_the_format_bench_reads() {
    if !has_torch() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install PyTorch for benches/gpu/decode.py (see .ci/run)"
        );
        eprintln!("skipped: python3 with torch not found (pip install torch)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gpu_script");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("tiny-cpu.json");
    let run = Command::new("python3")
        .arg(root.join("benches/gpu/decode.py"))
        .args([
            "--tiny",
            "--device",
            "cpu",
            "--contexts",
            "8,40",
            "--iters",
            "2",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(j["model"], "tiny");
    assert_eq!(j["device"], "CPU");
    assert_eq!(j["dtype"], "bf16");
    let runs = j["runs"].as_array().unwrap();
    // Eager only: CUDA graphs need a GPU.
    let got: Vec<(u64, &str)> = runs
        .iter()
        .map(|r| (r["context"].as_u64().unwrap(), r["mode"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [(8, "eager"), (40, "eager")]);
    assert!(
        runs.iter()
            .all(|r| r["ms_per_token"].as_f64().unwrap() > 0.0)
    );
    // `wafer bench` reads the directory (a file it cannot parse is an
    // error naming it).
    let bench = Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args([
            "bench",
            "--context",
            "4",
            "--steps",
            "1",
            "--gpus",
            "h100",
            "--baselines",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        bench.status.success(),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    std::fs::write(dir.join("broken.json"), "{\"model\": 1}").unwrap();
    let bench = Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(["bench", "--context", "4", "--steps", "1", "--baselines"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bench.stderr);
    assert!(
        !bench.status.success() && err.contains("broken.json"),
        "{err}"
    );
    std::fs::remove_file(dir.join("broken.json")).unwrap();
}

/// A config from `wafer model --json` has what the script builds from.
#[test]
fn wafer_model_json_has_the_fields_the_script_needs() {
    let out = Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(["model", "llama-3.2-1b", "--json"])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in [
        "model",
        "dim",
        "hidden_dim",
        "layers",
        "heads",
        "kv_heads",
        "vocab",
        "family",
    ] {
        assert!(!j[k].is_null(), "{k} missing: {j}");
    }
    assert_eq!(j["hidden_dim"], 8192);
    assert_eq!(j["family"], "llama");
}
