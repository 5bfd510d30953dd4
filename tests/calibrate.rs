//! `wafer calibrate`: the built-in suite runs and its summary follows from
//! its points; a suite of one's own, `--max-error` and bad files.

use std::path::Path;
use std::process::Command;

fn wafer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("wafer runs")
}

const SMALL: &str = "name = \"small MeshGEMV\"\nsource = \"a test\"\nmachine = \"wse2\"\npublished_us = 0.5\nclock_hz = 1e9\nclock_source = \"the test\"\n[workload.meshgemv]\nm = 64\nn = 64\nw = 8\nh = 8\ngroup_num = 2\ndtype = \"f16\"\n";

#[test]
fn the_built_in_suite_is_every_file_of_baselines_calibration() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("baselines/calibration");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".toml"))
        .collect();
    files.sort();
    let out = wafer(&["calibrate", "--json", "--threads", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let points = j["points"].as_array().unwrap();
    let mut seen: Vec<String> = points
        .iter()
        .map(|p| p["file"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    assert_eq!(seen, files);
    let mut errors = Vec::new();
    for p in points {
        let (published, clock) = (
            p["published_us"].as_f64().unwrap(),
            p["clock_hz"].as_f64().unwrap(),
        );
        let emulated = p["emulated_cycles"].as_f64().unwrap();
        // Each figure follows from the others: cycles at the source's clock.
        assert!((p["published_cycles"].as_f64().unwrap() - published * 1e-6 * clock).abs() < 1e-6);
        let us = emulated / clock * 1e6;
        assert!((p["emulated_us"].as_f64().unwrap() - us).abs() < 1e-9);
        let e = (us - published) / published;
        assert!((p["error"].as_f64().unwrap() - e).abs() < 1e-12);
        assert!(!p["source"].as_str().unwrap().is_empty());
        errors.push(e.abs());
    }
    errors.sort_by(f64::total_cmp);
    assert!((j["worst_abs_error"].as_f64().unwrap() - errors.last().unwrap()).abs() < 1e-12);
}

#[test]
fn a_suite_of_ones_own_and_the_error_limit() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("calibration_suite");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("small.toml"), SMALL).unwrap();
    let d = dir.display().to_string();
    let out = wafer(&["calibrate", "--suite", &d, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = j["points"][0]["error"].as_f64().unwrap();
    // A limit above the error passes, one below it fails and says why.
    let above = format!("{}", 100.0 * e.abs() + 1.0);
    assert!(
        wafer(&["calibrate", "--suite", &d, "--max-error", &above])
            .status
            .success()
    );
    let below = format!("{}", (100.0 * e.abs() - 1.0).max(0.0));
    let out = wafer(&["calibrate", "--suite", &d, "--max-error", &below]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-error"));
    // The plot is written.
    let plot = dir.join("p.svg");
    assert!(
        wafer(&["calibrate", "--suite", &d, "--plot", plot.to_str().unwrap()])
            .status
            .success()
    );
    assert!(std::fs::read_to_string(&plot).unwrap().contains("y = x"));
    // A bad point names its file and field.
    std::fs::write(dir.join("bad.toml"), SMALL.replace("m = 64", "m = 4")).unwrap();
    let out = wafer(&["calibrate", "--suite", &d]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && err.contains("bad.toml") && err.contains("at most 4 rows"),
        "{err}"
    );
    std::fs::write(
        dir.join("bad.toml"),
        SMALL.replace("published_us", "publish_us"),
    )
    .unwrap();
    let out = wafer(&["calibrate", "--suite", &d]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("bad.toml") && err.contains("publish_us"),
        "{err}"
    );
}
