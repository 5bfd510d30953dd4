//! Models from the command line: size and fit, compile, generate and
//! view (`bench.rs`: bench and sweep).

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
                "would need 65924 bytes of SRAM (63368 state, 900 activations (the largest stage's), 1656 code;"
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
    // Overlapped (the default), emulated: each wafer's span, its first
    // stage's start to its last one's end, lies within the step (a sum of
    // its stages' runs, as the barriers' breakdown has, need not), and
    // the critical path runs through more stages than one wafer's few.
    let j = json(&ok(&[
        "bench", &m, "--grid", "60x60", "--wafers", "3", "--steps", "1", "--json",
    ]));
    let w = &j["wafer"];
    let step = w["per_token_cycles"].as_f64().unwrap();
    let spans: Vec<f64> = (w["wafers"].as_array().unwrap().iter())
        .map(|x| x["cycles"].as_f64().unwrap())
        .collect();
    assert_eq!(spans.len(), 3);
    assert!(spans.iter().all(|&s| 0.0 < s && s < step), "{w}");
    assert!(w["critical_path"]["stages"].as_u64().unwrap() > 3, "{w}");
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
