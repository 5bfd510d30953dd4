//! The wafer against GPUs and across grids from the command line: `wafer
//! bench` (its table, `--emulator`'s engine ratios, the overlapped step
//! and the queued routes) and `wafer sweep`.

use super::{fails, json, ok, tmp};
use wafer_emulator::Arch;

/// `wafer bench --emulator --json` with `args`: its report, and the
/// engines it ran in order.
fn emulator_bench(args: &[&str]) -> (serde_json::Value, Vec<String>) {
    let j = json(&ok(&[&["bench", "--emulator", "--json"], args].concat()));
    let engines = (j["runs"].as_array().unwrap().iter())
        .map(|r| r["engine"].as_str().unwrap().to_string())
        .collect();
    (j, engines)
}

/// The host seconds a token of a bench report's `i`th engine.
fn seconds(j: &serde_json::Value, i: usize) -> f64 {
    j["runs"][i]["host_seconds_per_token"].as_f64().unwrap()
}

/// The report's `key` is `a / b`, to rounding.
fn assert_ratio(j: &serde_json::Value, key: &str, a: f64, b: f64) {
    let ratio = j[key].as_f64().unwrap();
    assert!((ratio - a / b).abs() < 1e-9 * ratio.max(1.0), "{key}: {j}");
}

/// `wafer bench --emulator`: every engine counts the same cycles on the
/// same tokens (the command fails otherwise), and the ratios are the
/// timings' ratios.
#[test]
fn bench_emulator_reports_engine_ratios() {
    let (j, engines) = emulator_bench(&["--steps", "2", "--threads", "1"]);
    let runs = j["runs"].as_array().unwrap();
    assert_eq!(
        engines,
        [
            "jit engine",
            "interp engine",
            "interp engine, timing-only",
            "timing-only, reusing stages",
            "reference engine"
        ]
    );
    let s = |i: usize| seconds(&j, i);
    assert_ratio(&j, "fast_vs_reference", s(4), s(0));
    assert_ratio(&j, "reuse_vs_every_stage", s(2), s(3));
    // The built-in's layers are one program with other weights: after the
    // first layer, its stages are reused (and the cycles, checked by the
    // command, are the same).
    let stages = j["stages"].as_u64().unwrap();
    let reused = runs[3]["reused_stages_per_token"].as_u64().unwrap();
    assert!(
        reused > stages / 2 && reused < stages,
        "{reused} of {stages}"
    );
    assert_eq!(runs[2]["reused_stages_per_token"], 0);
    // The first step emulates every stage but for those reused within it
    // (a later layer's), and the engines that reuse nothing all of them.
    let first = |i: usize| runs[i]["first_step_stage_runs"].as_u64().unwrap();
    assert!(
        first(3) > stages - reused && first(3) < stages,
        "{}",
        first(3)
    );
    assert!(
        (0..runs.len())
            .filter(|&i| i != 3)
            .all(|i| first(i) == stages)
    );
    // Where the host time went: the slowest stages, slowest first; every
    // stage is emulated on each of the 3 steps, except those reused.
    for (i, r) in runs.iter().enumerate() {
        let slow = r["slowest_stages"].as_array().unwrap();
        assert!(!slow.is_empty() && slow.len() <= 5, "{r}");
        let secs: Vec<f64> = slow
            .iter()
            .map(|s| s["host_seconds"].as_f64().unwrap())
            .collect();
        assert!(secs.windows(2).all(|w| w[0] >= w[1]), "{r}");
        for s in slow {
            let runs_of = s["runs"].as_u64().unwrap();
            assert!(if i == 3 { runs_of >= 1 } else { runs_of == 3 }, "{s}");
            assert!(s["pes"].as_u64().unwrap() > 0, "{s}");
            assert!(
                s["pe_cycles_per_host_second"].as_f64().unwrap() > 0.0,
                "{s}"
            );
        }
    }
    assert_ratio(&j, "jit_vs_interp", s(1), s(0));
    let cpu = j["cpu_reference_seconds_per_token"].as_f64().unwrap();
    assert!(cpu > 0.0);
    assert_ratio(&j, "emulation_slowdown", s(0), cpu);
    // One untimed warm-up step, then the two timed ones, each settled in
    // a pass or more (every engine in the same: the command fails
    // otherwise).
    assert_eq!(j["per_token_cycles"].as_array().unwrap().len(), 3);
    let passes = j["per_token_passes"].as_array().unwrap();
    assert_eq!(passes.len(), 3, "{j}");
    assert!(passes.iter().all(|p| p.as_u64().unwrap() >= 1), "{j}");
    assert_eq!(j["warmup_steps"], 1);
    assert!(
        runs.iter()
            .all(|r| r["first_step_seconds"].as_f64().unwrap() > 0.0)
    );
    assert!(
        runs.iter()
            .all(|r| r["pe_cycles_per_token"].as_u64().unwrap() > 0)
    );
    // --only-reuse leaves out the every-stage timing-only decode.
    let (j, engines) = emulator_bench(&["--timing-only", "--only-reuse", "--steps", "1"]);
    assert_eq!(engines, ["timing-only, reusing stages"]);
    assert!(j["reuse_vs_every_stage"].is_null());
    // --slowest 0 lists every stage the engine emulated: with no warm-up,
    // their runs are the first step's; --slowest 2 the two slowest of them.
    let listing = |k: &str| {
        let args = [
            "--timing-only",
            "--only-reuse",
            "--steps",
            "1",
            "--warmup",
            "0",
        ];
        let (j, _) = emulator_bench(&[&args[..], &["--slowest", k]].concat());
        let r = j["runs"][0].clone();
        let slow = r["slowest_stages"].as_array().unwrap().clone();
        (r["first_step_stage_runs"].as_u64().unwrap(), slow)
    };
    let (first, all) = listing("0");
    let runs_of = |s: &serde_json::Value| s["runs"].as_u64().unwrap();
    assert_eq!(all.iter().map(runs_of).sum::<u64>(), first);
    assert!(all.len() > 5, "{} stages emulated", all.len());
    let (_, two) = listing("2");
    let names = |v: &[serde_json::Value]| -> Vec<String> {
        v.iter().map(|s| s["stage"].to_string()).collect()
    };
    assert_eq!(two.len(), 2);
    let mut all_names = names(&all);
    all_names.sort();
    assert!(
        names(&two)
            .iter()
            .all(|n| all_names.binary_search(n).is_ok())
    );
    let err = fails(&["bench", "--slowest", "3"]);
    assert!(
        err.contains("--slowest") && err.contains("--emulator"),
        "{err}"
    );
    let err = fails(&["bench", "--emulator", "--steps", "0"]);
    assert!(err.contains("--steps") && err.contains("1..="), "{err}");
}

/// `wafer bench --emulator --threads 2`: the JIT engine on 2 threads and
/// on 1 take turns on one decoder, each timed on its own steps (the
/// warm-up the first's), and `threads_vs_one` is their ratio.
#[test]
fn bench_emulator_times_thread_counts_in_turns() {
    let (j, engines) = emulator_bench(&[
        "--steps",
        "2",
        "--threads",
        "2",
        "--no-reference",
        "--no-interp",
        "--slowest",
        "0",
    ]);
    let runs = j["runs"].as_array().unwrap();
    assert_eq!(
        engines,
        [
            "jit engine",
            "jit engine, 1 thread",
            "interp engine, timing-only",
            "timing-only, reusing stages"
        ]
    );
    let s = |i: usize| seconds(&j, i);
    assert_ratio(&j, "threads_vs_one", s(1), s(0));
    // Each engine's timed steps, two each, average to its seconds a token.
    for (i, r) in runs.iter().enumerate() {
        let steps: Vec<f64> = (r["timed_step_seconds"].as_array().unwrap().iter())
            .map(|t| t.as_f64().unwrap())
            .collect();
        assert_eq!(steps.len(), 2, "{r}");
        assert!(steps.iter().all(|t| *t > 0.0), "{r}");
        assert!((steps.iter().sum::<f64>() / 2.0 - s(i)).abs() < 1e-9, "{r}");
    }
    // The first engine's first step is the decoder's (a warm-up, every
    // stage emulated); the second's steps are later ones, so it has none.
    let stages = j["stages"].as_u64().unwrap();
    assert_eq!(runs[0]["first_step_stage_runs"], stages);
    assert!(runs[0]["first_step_seconds"].as_f64().unwrap() > 0.0);
    assert!(runs[1]["first_step_seconds"].is_null(), "{}", runs[1]);
    assert!(runs[1]["first_step_stage_runs"].is_null(), "{}", runs[1]);
    // Each stage is emulated once a step: the warm-up and two timed steps
    // on 2 threads, two timed steps on 1; each emulated the same PE-cycles
    // a token (positions differ only in attention's few cycles).
    let runs_of = |i: usize| -> Vec<u64> {
        (runs[i]["slowest_stages"].as_array().unwrap().iter())
            .map(|s| s["runs"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(runs_of(0), vec![3; stages as usize]);
    assert_eq!(runs_of(1), vec![2; stages as usize]);
    let pe_cycles = |i: usize| runs[i]["pe_cycles_per_token"].as_u64().unwrap() as f64;
    assert!((pe_cycles(0) / pe_cycles(1) - 1.0).abs() < 0.05, "{j}");
    // Turns need the positions for both thread counts' steps.
    let err = fails(&["bench", "--emulator", "--threads", "2", "--steps", "100"]);
    assert!(
        err.contains("take turns") && err.contains("--threads 1"),
        "{err}"
    );
}

/// `wafer bench MODEL`: the wafer's emulated latency and where it goes,
/// GPU rooflines from the data file, each row's speedup and source. The
/// text table is a snapshot; the JSON's arithmetic is checked.
#[test]
fn bench_compares_the_wafer_with_gpus() {
    let args = [
        "bench",
        "--context",
        "8",
        "--steps",
        "1",
        "--gpus",
        "h100,a100-80",
    ];
    let text = ok(&args);
    insta::assert_snapshot!("bench_table_aidreams", text);
    let svg = tmp("bench.svg");
    let png = tmp("bench.png");
    let mut with_json = args.to_vec();
    with_json.extend(["--json", "--barriers", "--plot", svg.to_str().unwrap()]);
    let j = json(&ok(&with_json));
    let w = &j["wafer"];
    // With barriers, the emulated step is the cost model's prediction for the kernels
    // these are (exact by construction), at the stated position.
    assert_eq!(
        w["per_token_cycles"].as_f64().unwrap(),
        w["predicted_cycles"].as_f64().unwrap()
    );
    assert_eq!(w["positions"], serde_json::json!([8, 8]));
    let by_kind = w["by_kind"].as_object().unwrap();
    let sum: f64 = by_kind
        .values()
        .map(|k| k["cycles"].as_f64().unwrap())
        .sum();
    assert!(
        (sum - w["per_token_cycles"].as_f64().unwrap()).abs() < 1e-6,
        "{w}"
    );
    for k in by_kind.values() {
        let parts: f64 = ["compute", "fabric", "idle"]
            .iter()
            .map(|p| k[p].as_f64().unwrap())
            .sum();
        assert!((parts - k["cycles"].as_f64().unwrap()).abs() < 1e-6, "{k}");
    }
    let us = w["per_token_us"].as_f64().unwrap();
    let gpus = j["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 4, "two GPUs, graphs and eager each");
    for g in gpus {
        let s = g["seconds_per_token"].as_f64().unwrap();
        let x = g["wafer_speedup"].as_f64().unwrap();
        assert!((x - s * 1e6 / us).abs() < 1e-9 * x, "{g}");
        let src = g["source"].as_u64().unwrap() as usize;
        assert!(
            j["sources"][src - 1]
                .as_str()
                .unwrap()
                .contains("datasheet"),
            "{g}"
        );
    }
    // --predict gives the same latency from the cost models, marked so.
    let mut predict = args.to_vec();
    predict.extend(["--json", "--barriers", "--predict"]);
    let p = json(&ok(&predict));
    assert_eq!(p["wafer"]["per_token_cycles"], w["per_token_cycles"]);
    assert_eq!(p["wafer"]["emulated"], false);
    assert_eq!(w["emulated"], true);
    assert!(p["sources"][0].as_str().unwrap().contains("predicted"));
    // By default the stages overlap: fewer cycles than the cost model's
    // stages one after another, the breakdown still summing to the step
    // (its hand-offs line now the stages' overlap).
    let mut overlap = args.to_vec();
    overlap.extend(["--json"]);
    let o = json(&ok(&overlap));
    let ow = &o["wafer"];
    assert_eq!(ow["overlapped"], true);
    assert_eq!(w["overlapped"], false);
    assert_eq!(ow["predicted_cycles"], w["predicted_cycles"]);
    let (over, barrier) = (
        ow["per_token_cycles"].as_f64().unwrap(),
        w["per_token_cycles"].as_f64().unwrap(),
    );
    assert!(over < barrier, "overlapped {over}, barrier {barrier}");
    // The cost models' estimate of it lies between the two.
    let estimate = ow["predicted_overlapped_cycles"].as_f64().unwrap();
    assert!(over <= estimate && estimate < barrier, "{ow}");
    assert!(w["predicted_overlapped_cycles"].is_null());
    // How much waited at a stage's edge: stated overlapped, not with
    // barriers (a stage fed a whole stream at once has some).
    assert!(ow["max_backlog"]["wavelets"].as_u64().unwrap() > 0, "{ow}");
    assert!(ow["max_backlog"]["stage"].is_string());
    assert!(w["max_backlog"].is_null());
    // And how many stages their consumers held back, settled in how many
    // passes of the step: stated overlapped only.
    let held = &ow["held"];
    assert!(held["passes"].as_u64().unwrap() >= 1, "{ow}");
    assert_eq!(
        held["first"].is_string(),
        held["stages"].as_u64().unwrap() > 0,
        "{ow}"
    );
    assert!(w["held"].is_null());
    // Its critical path: stages each charged from the end of what it
    // waited on last to its own end, so their charges sum to the step
    // (a charge left out, or counted twice, breaks it); none with
    // barriers.
    let path = &ow["critical_path"];
    let on = path["stages"].as_u64().unwrap();
    assert!(on >= 1, "{ow}");
    let charged: f64 = (path["by_kind"].as_object().unwrap().values())
        .map(|c| c.as_f64().unwrap())
        .sum();
    assert!((charged - over).abs() < 1e-6, "{charged} against {over}");
    assert!(w["critical_path"].is_null());
    // One wafer's span is the step.
    assert_eq!(ow["wafers"][0]["cycles"].as_f64(), Some(over), "{ow}");
    // --links: the same step, and how its hand-offs load the links on
    // paths of both orders (not counted unless asked: it costs seconds).
    assert_eq!(ow["handoff_links"].as_array().map(Vec::len), Some(0));
    let mut links = overlap.clone();
    links.push("--links");
    let l = json(&ok(&links));
    let lw = &l["wafer"];
    assert_eq!(lw["per_token_cycles"], ow["per_token_cycles"]);
    let loads = lw["handoff_links"].as_array().unwrap();
    assert_eq!(loads.len(), 2, "{lw}");
    assert_eq!(loads[0]["paths"], "X then Y");
    for load in loads {
        let n = |k: &str| load[k].as_u64().unwrap();
        assert!(
            n("wavelets") > 0 && n("crossings") >= n("wavelets"),
            "{load}"
        );
        assert!(n("converging_wavelets") <= n("waiting_wavelets"), "{load}");
        assert_eq!(
            load["worst"].is_null(),
            n("waiting_wavelets") == n("converging_wavelets")
        );
        // Queued, some wavelet may come after its consumer took it in;
        // the furthest is named with its cycles.
        let latest = &load["queued_latest"];
        assert_eq!(latest.is_null(), n("queued_late_wavelets") == 0, "{load}");
        assert!(latest.is_null() || latest["cycles"].as_u64().unwrap() > 0);
    }
    let text = ok(&[&args[..], &["--links"]].concat());
    assert!(
        text.contains("routes taken as free of other traffic"),
        "{text}"
    );
    assert!(text.contains("queued on those links"), "{text}");
    // --queue xy: the hand-offs queued on X-then-Y links, never a
    // shorter step, in rounds, and the source says so.
    let mut queue = overlap.clone();
    queue.extend(["--queue", "xy"]);
    let q = json(&ok(&queue));
    let qw = &q["wafer"];
    assert_eq!(qw["queued_links"]["paths"], "X then Y", "{qw}");
    assert!(qw["queued_links"]["rounds"].as_u64().unwrap() >= 1, "{qw}");
    let (queued, free) = (
        qw["per_token_cycles"].as_f64().unwrap(),
        ow["per_token_cycles"].as_f64().unwrap(),
    );
    assert!(queued >= free, "queued {queued}, free {free}");
    assert!(ow["queued_links"].is_null());
    assert_eq!(qw["queued_links"]["settled"], true, "{qw}");
    // The queue made it longer, so some hand-off was fed later: named,
    // longest first, each with its trips and the link it lost most at.
    let waits = qw["queue_waits"].as_array().unwrap();
    assert!(queued == free || !waits.is_empty(), "{qw}");
    let longest: Vec<u64> = (waits.iter())
        .map(|w| w["longest_cycles"].as_u64().unwrap())
        .collect();
    assert!(longest.windows(2).all(|p| p[0] >= p[1]), "{longest:?}");
    for w in waits {
        let (trips, delayed) = (w["trips"].as_u64().unwrap(), w["delayed"].as_u64().unwrap());
        assert!(0 < delayed && delayed <= trips, "{w}");
        assert!(w["from"].is_string() && w["to"].is_string(), "{w}");
    }
    assert!(ow["queue_waits"].as_array().unwrap().is_empty(), "{ow}");
    // --queue-rounds 1 stops each step after a round: said not settled
    // (this one takes more), and no shorter than free.
    let mut one = queue.clone();
    one.extend(["--queue-rounds", "1"]);
    let one = json(&ok(&one));
    let one = &one["wafer"];
    assert_eq!(one["queued_links"]["rounds"], 1, "{one}");
    assert_eq!(
        one["queued_links"]["settled"],
        qw["queued_links"]["rounds"] == 1,
        "{one}"
    );
    assert!(one["per_token_cycles"].as_f64().unwrap() >= free, "{one}");
    assert!(q["sources"][0].as_str().unwrap().contains("would queue"));
    // --queue spread: each pair of exit and entry PEs on the order its
    // wavelets find less crowded; named so, and never shorter than free.
    let mut spread = overlap.clone();
    spread.extend(["--queue", "spread"]);
    let s = json(&ok(&spread));
    let sw = &s["wafer"];
    assert_eq!(sw["queued_links"]["paths"], "spread", "{sw}");
    assert!(sw["per_token_cycles"].as_f64().unwrap() >= free, "{sw}");
    assert!(
        s["sources"][0]
            .as_str()
            .unwrap()
            .contains("paths spread over both")
    );
    let err = fails(&[&args[..], &["--queue", "yx", "--predict"]].concat());
    assert!(
        err.contains("--queue") && err.contains("--predict"),
        "{err}"
    );
    let err = fails(&[&args[..], &["--barriers", "--queue", "xy"]].concat());
    assert!(err.contains("--barriers"), "{err}");
    let err = fails(&[&args[..], &["--links", "--predict"]].concat());
    assert!(
        err.contains("--links") && err.contains("--predict"),
        "{err}"
    );
    let kinds = ow["by_kind"].as_object().unwrap();
    assert!(
        kinds.contains_key("stages overlapping") && !kinds.contains_key("hand-offs between stages")
    );
    let sum: f64 = kinds.values().map(|k| k["cycles"].as_f64().unwrap()).sum();
    assert!((sum - over).abs() < 1e-6, "{ow}");
    assert!(o["sources"][0].as_str().unwrap().contains("overlapped"));
    // --predict: that estimate as the row, not emulated, its breakdown
    // summing to it.
    let mut both = args.to_vec();
    both.extend(["--json", "--predict"]);
    let e = json(&ok(&both));
    let ew = &e["wafer"];
    assert_eq!(
        (&ew["emulated"], &ew["overlapped"]),
        (&false.into(), &true.into())
    );
    assert_eq!(ew["per_token_cycles"].as_f64(), Some(estimate));
    assert_eq!(ew["predicted_overlapped_cycles"].as_f64(), Some(estimate));
    assert_eq!(ew["predicted_cycles"], w["predicted_cycles"]);
    let kinds = ew["by_kind"].as_object().unwrap();
    let sum: f64 = kinds.values().map(|k| k["cycles"].as_f64().unwrap()).sum();
    assert!((sum - estimate).abs() < 1e-6, "{ew}");
    assert!(
        kinds.contains_key("stages overlapping") && !kinds.contains_key("hand-offs between stages")
    );
    assert!(e["sources"][0].as_str().unwrap().contains("estimated"));
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg") && svg_text.contains("H100 SXM: roofline, CUDA graphs"));
    ok(&[
        "bench",
        "--context",
        "8",
        "--steps",
        "1",
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    let err = fails(&["bench", "--gpus", "h100,v100"]);
    assert!(
        err.contains("no GPU `v100`") && err.contains("h200"),
        "{err}"
    );
}

/// `wafer sweep`: latency across grids and placements; a grid too small
/// says what the model needs; --emulate agrees with the prediction.
#[test]
fn sweep_reports_latency_across_grids() {
    let j = json(&ok(&[
        "sweep",
        "--grids",
        "12x12,100x100,200x200",
        "--placements",
        "pipeline,mesh",
        "--context",
        "4",
        "--json",
    ]));
    let points = j["points"].as_array().unwrap();
    assert_eq!(points.len(), 6);
    let small = &points[0];
    assert_eq!(small["grid_pes"], 144);
    assert!(small["error"].as_str().unwrap().contains("PEs"), "{small}");
    for p in &points[2..] {
        assert!(p["per_token_us"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["pes_used"].as_u64().unwrap() <= p["grid_pes"].as_u64().unwrap());
    }
    // With --wafers auto the small grid's point is a system of wafers.
    let j = json(&ok(&[
        "sweep",
        "--grids",
        "12x12",
        "--placements",
        "pipeline",
        "--context",
        "4",
        "--wafers",
        "auto",
        "--json",
    ]));
    let p = &j["points"][0];
    assert!(p["wafers"].as_u64().unwrap() > 1, "{p}");
    assert!(p["per_token_us"].as_f64().unwrap() > 0.0, "{p}");
    let svg = tmp("sweep.svg");
    let e = json(&ok(&[
        "sweep",
        "--grids",
        "100x100",
        "--placements",
        "pipeline",
        "--context",
        "4",
        "--emulate",
        "--barriers",
        "--json",
        "--plot",
        svg.to_str().unwrap(),
    ]));
    // With barriers the emulated step is the cost model's.
    let p = &e["points"][0];
    assert_eq!(
        p["emulated_cycles"].as_f64().unwrap(),
        p["predicted_cycles"].as_f64().unwrap()
    );
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.contains("polyline"));
    // The plot says what its latency is.
    assert!(plot.contains("context 4 (emulated)"), "{plot}");
    // By default the latency is the estimate of the overlapped step (its
    // stages one after another beside it), and emulated it is within 2 %.
    let overlapped = |emulate: bool| {
        let mut args = vec![
            "sweep",
            "--grids",
            "100x100",
            "--placements",
            "pipeline,mesh",
            "--context",
            "4",
            "--json",
        ];
        if emulate {
            args.push("--emulate");
        }
        json(&ok(&args))
    };
    let (est, emu) = (overlapped(false), overlapped(true));
    assert_eq!(est["overlapped"], true);
    for (p, e) in est["points"]
        .as_array()
        .unwrap()
        .iter()
        .zip(emu["points"].as_array().unwrap())
    {
        let estimate = p["predicted_overlapped_cycles"].as_f64().unwrap();
        assert!(estimate < p["predicted_cycles"].as_f64().unwrap(), "{p}");
        let us = estimate / Arch::wse3().clock_hz * 1e6;
        assert!(
            (p["per_token_us"].as_f64().unwrap() - us).abs() < 1e-9,
            "{p}"
        );
        let emulated = e["emulated_cycles"].as_f64().unwrap();
        assert!((estimate / emulated - 1.0).abs() < 0.02, "{e}");
        assert!(emulated < e["predicted_cycles"].as_f64().unwrap(), "{e}");
    }
    let err = fails(&["sweep", "--placements", "diagonal"]);
    assert!(err.contains("diagonal"), "{err}");
}
