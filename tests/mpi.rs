//! `wafer bench` and `wafer sweep` under `mpirun -n 2` (`cargo test
//! --features mpi --test mpi`, Open MPI installed; `.ci/run` does both):
//! the same table as one process, each rank compiling its share of the
//! system's wafers and emulating its share of every step (with barriers,
//! of its distinct stage runs; overlapped, of its wafers), and the same
//! sweep, each rank computing its
//! share of the points; a command that does not share its work refuses two
//! ranks.
#![cfg(feature = "mpi")]

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_wafer");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn mpirun(n: u32, args: &[&str]) -> Output {
    Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-n",
            &n.to_string(),
            BIN,
        ])
        .args(args)
        .current_dir(root())
        .output()
        .expect("mpirun runs (Open MPI's mpirun on PATH)")
}

fn table(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Rank 0 alone prints: one JSON object.
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn two_ranks_give_one_process_s_table() {
    let args = [
        "bench",
        "models/stories260K.bin",
        "--grid",
        "60x60",
        "--wafers",
        "2",
        "--steps",
        "3",
        "--threads",
        "1",
        // With barriers the ranks share each step's distinct stage runs.
        "--barriers",
        "--json",
    ];
    let one = table(
        Command::new(BIN)
            .args(args)
            .current_dir(root())
            .output()
            .unwrap(),
    );
    let two = table(mpirun(2, &args));
    assert_eq!(one["wafer"], two["wafer"]);
    assert!(one["wafer"]["per_token_cycles"].as_f64().unwrap() > 0.0);
    assert_eq!(one["wafer"]["wafers"].as_array().unwrap().len(), 2);
    // One rank under mpirun is one process.
    assert_eq!(one["wafer"], table(mpirun(1, &args))["wafer"]);
    // Overlapped (the default), the ranks share each step's wafers, its
    // links queued on X-then-Y paths too: the table is one process's. On
    // spread paths each rank emulates the whole first step (which plans
    // them), says so, and the table is still one process's.
    let over: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| *a != "--barriers")
        .collect();
    let queued: Vec<&str> = over.iter().copied().chain(["--queue", "xy"]).collect();
    let spread: Vec<&str> = over.iter().copied().chain(["--queue", "spread"]).collect();
    for (args, says) in [(&over, false), (&queued, false), (&spread, true)] {
        let alone = table(
            Command::new(BIN)
                .args(args)
                .current_dir(root())
                .output()
                .unwrap(),
        );
        let out = mpirun(2, args);
        let note = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            note.contains("each rank emulates the whole first step queued on spread paths"),
            says,
            "{args:?}: {note}"
        );
        assert_eq!(alone["wafer"], table(out)["wafer"], "{args:?}");
        assert_eq!(alone["wafer"]["overlapped"], true);
    }
    // `sweep`'s points split between the ranks: the same points.
    let sweep = [
        "sweep",
        "--grids",
        "100x100,150x150",
        "--placements",
        "pipeline,mesh",
        "--context",
        "4",
        "--emulate",
        "--json",
    ];
    let one = table(
        Command::new(BIN)
            .args(sweep)
            .current_dir(root())
            .output()
            .unwrap(),
    );
    assert_eq!(one["points"].as_array().unwrap().len(), 4);
    assert_eq!(one, table(mpirun(2, &sweep)));
    let out = mpirun(2, &["generate", "--steps", "2"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("only `wafer bench`"), "{e}");
}
