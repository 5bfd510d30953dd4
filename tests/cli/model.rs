//! Models from the command line: size and fit, compile, generate, bench,
//! sweep and view.

use super::{fails, json, ok, tmp};
use std::path::Path;
use std::process::Command;
use wafer_emulator::{Arch, Inputs, RunConfig};

#[test]
fn model_reports_size_and_fit() {
    let j = json(&ok(&[
        "model",
        "llama-3.1-8b",
        "--arch",
        "wse3",
        "--dtype",
        "bf16",
        "--max-context",
        "8192",
        "--json",
    ]));
    assert_eq!(j["params"], 8_030_261_248u64);
    assert_eq!(j["weight_bytes"], 16_060_522_496u64);
    // 2 (k and v) × 32 layers × 1024 (8 KV heads of 128) × 2 bytes.
    assert_eq!(j["kv_bytes_per_token"], 131_072);
    assert_eq!(j["fits"], true);
    let out = ok(&[
        "model",
        "llama-3.1-8b",
        "--arch",
        "wse3",
        "--grid",
        "100x100",
    ]);
    // 17.13 GB (weights and 8,192 positions of cache) over 0.49 GB a
    // machine: 35 of them by bytes.
    assert!(
        out.contains("fit       no:")
            && out.contains("10000 PEs")
            && out.contains("--wafers 35 or more"),
        "{out}"
    );
    let out = ok(&[
        "model",
        "llama-3.1-8b",
        "--arch",
        "wse3",
        "--grid",
        "100x100",
        "--wafers",
        "35",
    ]);
    assert!(
        out.contains("fit       yes:") && out.contains("35 wafers of wse3: 350000 PEs"),
        "{out}"
    );
    let out = ok(&["model", "models/stories260K.bin"]);
    assert!(out.contains("llama2.c") && out.contains("dim 64"), "{out}");
    let e = fails(&["model", "llama-9b"]);
    assert!(
        e.contains("neither a built-in model") && e.contains("llama-3.1-8b"),
        "{e}"
    );
}

pub(crate) fn checkpoint(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: these tests need the repository's checkpoints (models/)",
        p.display()
    );
    p.display().to_string()
}

#[test]
fn generate_with_no_model_decodes_the_built_in_checkpoint() {
    let out = json(&ok(&["generate", "--steps", "12", "--json", "--barriers"]));
    let tokens = out["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 12);
    assert!(out["text"].as_str().unwrap().len() > 12, "{out}");
    let cycles = out["per_token_cycles"].as_array().unwrap();
    let us = out["per_token_us"].as_array().unwrap();
    assert_eq!((cycles.len(), us.len()), (12, 12));
    let clock = out["clock_hz"].as_f64().unwrap();
    let c0 = cycles[0].as_f64().unwrap();
    assert!(c0 > 1000.0);
    assert!((us[0].as_f64().unwrap() - c0 / clock * 1e6).abs() < 1e-6);
    // The region search's shortest predicted step, among every point it
    // tried, is the placement compiled.
    let tried = out["region"]["tried"].as_array().unwrap();
    let fastest = (tried.iter())
        .filter_map(|p| Some((p["predicted_cycles"].as_u64()?, p)))
        .min_by_key(|(c, p)| {
            (
                *c,
                p["cols"].as_u64().unwrap() * p["rows"].as_u64().unwrap(),
            )
        })
        .map(|(_, p)| p)
        .unwrap();
    assert_eq!(
        (out["placement"].clone(), out["region"]["cols"].clone()),
        (fastest["placement"].clone(), fastest["cols"].clone()),
        "auto picks the faster predicted step"
    );
    // The plain form prints the text and the latency.
    let text = ok(&["generate", "--steps", "6"]);
    assert!(text.contains("per token on the emulated wse3"), "{text}");
    // Overlapped, the default: the same tokens, every step shorter, the
    // cost models' estimate of it between the emulation and the steps
    // with barriers.
    let over = json(&ok(&["generate", "--steps", "12", "--json"]));
    assert_eq!(over["tokens"], out["tokens"]);
    // `--overlap`, the default's old flag, still runs it; with
    // `--barriers` it is an error, not a choice made for the user.
    let again = json(&ok(&["generate", "--steps", "12", "--json", "--overlap"]));
    assert_eq!(again["per_token_cycles"], over["per_token_cycles"]);
    let e = fails(&["generate", "--steps", "2", "--overlap", "--barriers"]);
    assert!(e.contains("--barriers"), "{e}");
    assert_eq!(
        (over["overlapped"].clone(), out["overlapped"].clone()),
        (true.into(), false.into())
    );
    // Held stages and passes: said overlapped, not with barriers (a
    // step settles in one pass or more).
    assert!(over["held"]["passes"].as_u64().unwrap() >= 1, "{over}");
    assert!(over["held"]["stages"].is_u64() && out["held"].is_null());
    let sum = |j: &serde_json::Value, k: &str| -> u64 {
        j[k].as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum()
    };
    for (o, b) in over["per_token_cycles"]
        .as_array()
        .unwrap()
        .iter()
        .zip(cycles)
    {
        assert!(o.as_u64() < b.as_u64(), "{o} against {b}");
    }
    let (emulated, estimate) = (
        sum(&over, "per_token_cycles"),
        sum(&over, "predicted_cycles"),
    );
    assert!(
        emulated <= estimate && estimate < sum(&out, "per_token_cycles"),
        "{over}"
    );
    assert!(text.contains("estimated the steps overlapped"), "{text}");
    assert!(text.contains("held back by"), "{text}");
}

#[test]
fn generate_checks_logits_against_the_reference_and_samples_deterministically() {
    let m = checkpoint("stories260K.bin");
    let out = json(&ok(&["generate", &m, "--steps", "16", "--check", "--json"]));
    assert!(
        out["check_max_abs_logit_diff"].as_f64().unwrap() < 1e-3,
        "{out}"
    );
    let tok = checkpoint("aidreams_tok512.bin");
    let model = checkpoint("aidreams260K.bin");
    let args = [
        "generate",
        &model,
        "--tokenizer",
        &tok,
        "--prompt",
        "The wafer",
        "--steps",
        "20",
        "--temperature",
        "0.9",
        "--seed",
        "7",
        "--json",
    ];
    let (a, b) = (json(&ok(&args)), json(&ok(&args)));
    assert_eq!(a["tokens"], b["tokens"], "same seed, same sample");
    assert!(a["text"].as_str().unwrap().starts_with("The wafer"), "{a}");
    // A greedy prompt is prefilled on the wafer, checked against the
    // reference, and its time to first token reported.
    let greedy = json(&ok(&[
        "generate",
        &model,
        "--tokenizer",
        &tok,
        "--prompt",
        "The wafer",
        "--steps",
        "20",
        "--check",
        "--json",
    ]));
    assert!(
        greedy["text"].as_str().unwrap().starts_with("The wafer"),
        "{greedy}"
    );
    let positions = greedy["prefill_positions"].as_u64().unwrap();
    assert!(positions > 2, "{greedy}");
    let (cycles, predicted) = (
        greedy["prefill_cycles"].as_u64().unwrap(),
        greedy["prefill_predicted_cycles"].as_u64().unwrap(),
    );
    // Attention's cost model may be a cycle or two under a run.
    assert!(
        (predicted..=predicted + 4 * positions).contains(&cycles),
        "{greedy}"
    );
    let clock = greedy["clock_hz"].as_f64().unwrap();
    assert_eq!(
        greedy["ttft_us"].as_f64().unwrap(),
        cycles as f64 / clock * 1e6
    );
    // Faster than one decode step a position.
    let per_token = greedy["per_token_cycles"].as_array().unwrap();
    assert!(
        cycles < positions * per_token[0].as_u64().unwrap(),
        "{greedy}"
    );
    let err = fails(&["generate", &m, "--prompt", "hi"]);
    assert!(err.contains("--prompt needs --tokenizer"), "{err}");
    let err = fails(&["generate", "llama-3.2-1b", "--check"]);
    assert!(err.contains("--check needs a checkpoint"), "{err}");
    // A model far too big to emulate functionally is refused up front, not left running.
    let err = fails(&["generate", "gpt2", "--steps", "4", "--max-minutes", "1"]);
    assert!(
        err.contains("PE-cycles") && err.contains("wafer compile"),
        "{err}"
    );
}

#[test]
fn compile_writes_a_listing_and_a_model_file() {
    let m = checkpoint("stories260K.bin");
    let out = tmp("stories.wafer");
    let text = ok(&[
        "compile",
        &m,
        "--arch",
        "wse2",
        "--placement",
        "pipeline",
        "--listing",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(text.contains("layers.4.wq_wk_wv"), "{text}");
    assert!(text.contains("predicted step at position 256"), "{text}");
    let stages = wafer_compiler::bundle::decode(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(stages.len(), 49);
    assert_eq!(stages[0].name, "embed");
    assert_eq!(stages.last().unwrap().name, "argmax");
    // A stage's program is an ordinary program: the emulator runs it.
    let r = wafer_emulator::run(
        &stages[2].program,
        &Arch::wse2(),
        &Inputs::new(),
        &RunConfig::default(),
    )
    .unwrap();
    assert!(r.cycles > 0);
    let mut bytes = std::fs::read(&out).unwrap();
    bytes.truncate(bytes.len() - 10);
    assert!(wafer_compiler::bundle::decode(&bytes).is_err());
}

/// `compile` without a listing: the step the cost models predict, stages
/// one after another, and their estimate of it overlapped, shorter; on
/// one wafer and on two.
#[test]
fn compile_predicts_the_step_with_barriers_and_overlapped() {
    let m = checkpoint("stories260K.bin");
    for wafers in ["1", "2"] {
        let text = ok(&["compile", &m, "--grid", "60x60", "--wafers", wafers]);
        let cycles = |after: &str| -> u64 {
            let at = text
                .find(after)
                .unwrap_or_else(|| panic!("{after:?} in {text}"));
            let rest = &text[at + after.len()..];
            rest.split_whitespace().next().unwrap().parse().unwrap()
        };
        let barrier = cycles("predicted step at position 256: ");
        let over = cycles("the cost models' estimate: ");
        assert!(0 < over && over < barrier, "{wafers} wafer(s): {text}");
    }
}

#[test]
fn a_model_that_does_not_fit_says_what_it_needs() {
    let err = fails(&[
        "compile",
        "llama-3.1-8b",
        "--arch",
        "wse2",
        "--dtype",
        "f32",
    ]);
    for want in [
        "does not fit `wse2`",
        "needs at least",
        "PEs",
        "bytes",
        "16-bit --dtype",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    // Weights already 16-bit: the advice does not ask for them again.
    let err = fails(&[
        "compile",
        "llama-3.1-8b",
        "--grid",
        "64x64",
        "--dtype",
        "bf16",
    ]);
    assert!(
        err.contains("does not fit")
            && err.contains("the weights are bf16 already")
            && !err.contains("16-bit --dtype"),
        "{err}"
    );
    // More bytes than the grid holds: no placement is named, since
    // neither could fit; the fullest PE of a placement that was tried is
    // split into what it holds.
    let err = fails(&["compile", "llama-3.1-70b", "--wafers", "1"]);
    assert!(
        err.contains("with either placement") && err.contains("5 such machines"),
        "{err}"
    );
    let err = fails(&[
        "compile",
        &checkpoint("stories260K.bin"),
        "--grid",
        "6x6",
        "--placement",
        "mesh",
    ]);
    assert!(
        err.contains("with mesh placement")
            && err.contains(
                "would need 74172 bytes of SRAM (63368 state, 9148 activations, 1656 code;"
            ),
        "{err}"
    );
    let bad = tmp("truncated.bin");
    let bytes = std::fs::read(checkpoint("stories260K.bin")).unwrap();
    std::fs::write(&bad, &bytes[..5000]).unwrap();
    let err = fails(&["generate", bad.to_str().unwrap(), "--steps", "2"]);
    assert!(err.contains("truncated.bin"), "{err}");
    let err = fails(&["compile", "no-such-model"]);
    assert!(err.contains("neither a built-in model"), "{err}");
    let err = fails(&["compile", "smollm2-135m", "--placement", "diagonal"]);
    assert!(err.contains("use auto, pipeline or mesh"), "{err}");
}

/// Ctrl-C stops a long decode cleanly: exit 0 and a summary of the steps
/// that ran, marked interrupted.
#[cfg(unix)]
#[test]
fn generate_stops_cleanly_on_ctrl_c() {
    let m = checkpoint("stories260K.bin");
    let child = Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args([
            "generate",
            &m,
            "--placement",
            "mesh",
            "--steps",
            "256",
            "--max-minutes",
            "1000",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Compiling takes about a second; then the decode runs for many minutes.
    std::thread::sleep(std::time::Duration::from_secs(8));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(v["interrupted"], true);
    let n = v["tokens"].as_array().unwrap().len();
    assert!(n < 256);
    assert_eq!(v["per_token_cycles"].as_array().unwrap().len(), n);
}

/// `--timing-only` counts the same cycles as a functional run, computes no
/// values (NaN outputs, no tokens), and says so; on every command.
#[test]
fn timing_only_counts_the_same_cycles_on_every_command() {
    let f = json(&ok(&["run", "examples/gemv_8x8.wsm", "--json"]));
    let t = json(&ok(&[
        "run",
        "examples/gemv_8x8.wsm",
        "--json",
        "--timing-only",
    ]));
    assert_eq!(f["cycles"], t["cycles"]);
    assert!(f["engine"].as_str().unwrap() == "jit", "{f}");
    assert!(t["engine"].as_str().unwrap().contains("timing-only"), "{t}");
    let k = |extra: &[&str]| {
        let mut args = vec![
            "kernel", "gemv", "--shape", "48x40", "--dtype", "bf16", "--json",
        ];
        args.extend_from_slice(extra);
        json(&ok(&args))
    };
    let (kf, kt) = (k(&[]), k(&["--timing-only"]));
    assert_eq!(kf["measured_cycles"], kt["measured_cycles"]);
    assert_eq!(kf["matches_reference"], true);
    assert!(
        kt["matches_reference"].is_null() && kt["timing_only"] == true,
        "{kt}"
    );
    let g = |extra: &[&str]| {
        let mut args = vec!["generate", "--steps", "3", "--json"];
        args.extend_from_slice(extra);
        json(&ok(&args))
    };
    let (gf, gt) = (g(&[]), g(&["--timing-only"]));
    assert_eq!(gf["per_token_cycles"], gt["per_token_cycles"]);
    assert!(gt["tokens"].is_null() && gt["timing_only"] == true, "{gt}");
    assert_eq!(gf["timing_only"], false);
    let err = fails(&["generate", "--timing-only", "--check"]);
    assert!(
        err.contains("--check") && err.contains("--timing-only"),
        "{err}"
    );
}

/// `wafer bench --emulator`: every engine counts the same cycles on the
/// same tokens (the command fails otherwise), and the ratios are the
/// timings' ratios.
#[test]
fn bench_emulator_reports_engine_ratios() {
    let j = json(&ok(&[
        "bench",
        "--emulator",
        "--steps",
        "2",
        "--threads",
        "1",
        "--json",
    ]));
    let runs = j["runs"].as_array().unwrap();
    let engines: Vec<&str> = runs.iter().map(|r| r["engine"].as_str().unwrap()).collect();
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
    let s = |i: usize| runs[i]["host_seconds_per_token"].as_f64().unwrap();
    let ratio = j["fast_vs_reference"].as_f64().unwrap();
    assert!((ratio - s(4) / s(0)).abs() < 1e-9 * ratio.max(1.0), "{j}");
    let ratio = j["reuse_vs_every_stage"].as_f64().unwrap();
    assert!((ratio - s(2) / s(3)).abs() < 1e-9 * ratio.max(1.0), "{j}");
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
    let ratio = j["jit_vs_interp"].as_f64().unwrap();
    assert!((ratio - s(1) / s(0)).abs() < 1e-9 * ratio.max(1.0), "{j}");
    let cpu = j["cpu_reference_seconds_per_token"].as_f64().unwrap();
    assert!(cpu > 0.0);
    let slowdown = j["emulation_slowdown"].as_f64().unwrap();
    assert!((slowdown - s(0) / cpu).abs() < 1e-9 * slowdown, "{j}");
    // One untimed warm-up step, then the two timed ones.
    assert_eq!(j["per_token_cycles"].as_array().unwrap().len(), 3);
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
    let j = json(&ok(&[
        "bench",
        "--emulator",
        "--timing-only",
        "--only-reuse",
        "--steps",
        "1",
        "--json",
    ]));
    let runs = j["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["engine"], "timing-only, reusing stages");
    assert!(j["reuse_vs_every_stage"].is_null());
    let err = fails(&["bench", "--emulator", "--steps", "0"]);
    assert!(err.contains("--steps") && err.contains("1..="), "{err}");
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
    assert!(std::fs::read_to_string(&svg).unwrap().contains("polyline"));
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

/// `--engine` and `--threads` change nothing but host time: the JIT engine
/// (the default) on 1 and 2 threads, and the interpreter, give the same
/// cycles, outputs and dumped SRAM; a bad engine name is refused.
#[test]
fn engines_and_threads_give_the_same_run() {
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "examples/gemv_8x8.wsm", "--json", "--dump", "y@7,7"];
        args.extend_from_slice(extra);
        let j = json(&ok(&args));
        (
            j["engine"].as_str().unwrap().to_string(),
            j["cycles"].clone(),
            j["outputs"].clone(),
            j["dumps"].clone(),
        )
    };
    let default = run(&[]);
    assert_eq!(default.0, "jit");
    for extra in [
        &["--threads", "2"][..],
        &["--threads", "1"],
        &["--engine", "interp"],
    ] {
        let other = run(extra);
        assert_eq!(
            (&other.1, &other.2, &other.3),
            (&default.1, &default.2, &default.3),
            "{extra:?}"
        );
    }
    let err = fails(&["run", "examples/gemv_8x8.wsm", "--engine", "fast"]);
    assert!(err.contains("jit, interp or reference"), "{err}");
}

/// `wafer view --screenshot` renders without a display: a program (run
/// first), a run's stats and trace, and the built-in model; bad input is
/// refused with what to do.
#[test]
fn view_renders_screenshots_headless() {
    let png = tmp("view_program.png");
    ok(&[
        "view",
        "examples/gemv_8x8.wsm",
        "--metric",
        "placement",
        "--select",
        "3,2",
        "--size",
        "800x600",
        "--screenshot",
        png.to_str().unwrap(),
    ]);
    let img = std::fs::read(&png).unwrap();
    assert_eq!(&img[1..4], b"PNG");
    // The PNG header's width and height: 800 × 600 points at 1 pixel each.
    let dim = |o: usize| u32::from_be_bytes(img[o..o + 4].try_into().unwrap());
    assert_eq!((dim(16), dim(20)), (800, 600));
    let (stats, trace) = (tmp("view_stats.json"), tmp("view_trace.json"));
    ok(&[
        "run",
        "examples/chain_reduce.wsm",
        "--stats",
        stats.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    let png = tmp("view_stats.png");
    ok(&[
        "view",
        stats.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--screenshot",
        png.to_str().unwrap(),
    ]);
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
    let png = tmp("view_model.png");
    ok(&[
        "view",
        "--steps",
        "1",
        "--screenshot",
        png.to_str().unwrap(),
    ]);
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
    // With barriers: the same, its timeline on one lane (the viewer's
    // tests).
    let png = tmp("view_model_barriers.png");
    ok(&[
        "view",
        "--steps",
        "1",
        "--barriers",
        "--screenshot",
        png.to_str().unwrap(),
    ]);
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
    let err = fails(&["view", "--steps", "0", "--overlap", "--screenshot", "x.png"]);
    assert!(
        err.contains("--overlap") && err.contains("--steps 1"),
        "{err}"
    );
    let err = fails(&[
        "view",
        "examples/gemv_8x8.wsm",
        "--metric",
        "heat",
        "--screenshot",
        "x.png",
    ]);
    assert!(
        err.contains("--metric `heat`") && err.contains("placement"),
        "{err}"
    );
    let err = fails(&[
        "view",
        "examples/gemv_8x8.wsm",
        "--select",
        "9,9",
        "--screenshot",
        "x.png",
    ]);
    assert!(err.contains("outside the 8x8 grid"), "{err}");
    let bad = tmp("not_stats.json");
    std::fs::write(&bad, "{\"hello\": 1}").unwrap();
    let err = fails(&["view", bad.to_str().unwrap(), "--screenshot", "x.png"]);
    assert!(err.contains("neither a stats file nor a trace"), "{err}");
}

/// `--wafers`: a model split over wafers lists each wafer and transfer,
/// decodes the same tokens as on one, and its bench row has each wafer's
/// time; a count beyond the layers is refused; a model larger than one
/// wafer says how many it takes when held to one.
#[test]
fn a_model_split_over_wafers_lists_them_and_decodes_the_same_tokens() {
    let m = checkpoint("stories260K.bin");
    let text = ok(&[
        "compile",
        &m,
        "--grid",
        "60x60",
        "--wafers",
        "2",
        "--listing",
    ]);
    assert!(
        text.contains("system: 2 wafers, layers 0..2 | 2..5"),
        "{text}"
    );
    assert!(text.contains("-- wafer 2 of 2: layers 2..5"), "{text}");
    assert!(
        text.contains("transfer wafer 1 -> 2: 2 values, 512 bytes"),
        "{text}"
    );
    let tokens = |w: &str| {
        let j = json(&ok(&[
            "generate", &m, "--grid", "60x60", "--wafers", w, "--steps", "10", "--json",
        ]));
        assert_eq!(j["wafers"].as_u64().unwrap(), w.parse::<u64>().unwrap());
        j["tokens"].clone()
    };
    assert_eq!(tokens("2"), tokens("1"));
    let j = json(&ok(&[
        "bench",
        &m,
        "--grid",
        "60x60",
        "--wafers",
        "3",
        "--predict",
        "--barriers",
        "--json",
    ]));
    // With barriers a system's step is its wafers' and transfers' cycles.
    let w = &j["wafer"];
    assert_eq!(w["wafers"].as_array().unwrap().len(), 3);
    assert_eq!(w["transfers"].as_array().unwrap().len(), 2);
    assert_eq!(w["pes"], 3 * 3600);
    let parts: f64 = w["wafers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(w["transfers"].as_array().unwrap())
        .map(|x| x["cycles"].as_f64().unwrap())
        .sum();
    assert_eq!(parts, w["per_token_cycles"].as_f64().unwrap());
    let e = fails(&["compile", &m, "--grid", "60x60", "--wafers", "9"]);
    assert!(e.contains("--wafers 9") && e.contains("5 layers"), "{e}");
    let e = fails(&["compile", &m, "--wafers", "none"]);
    assert!(e.contains("--wafers `none`"), "{e}");
    let e = fails(&["compile", "llama-3.1-70b", "--wafers", "1"]);
    assert!(
        e.contains("take 5 such machines") && e.contains("--wafers auto"),
        "{e}"
    );
}
