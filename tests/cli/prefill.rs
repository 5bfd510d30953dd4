//! Time to first token through the command line: `generate --prompt`
//! emulates a prefill, `bench --prompt-len` predicts one with the same
//! cost models, beside the GPUs' prefill rooflines.

use crate::model::checkpoint;
use crate::{fails, json, ok};

#[test]
fn bench_predicts_the_prefill_generate_emulates() {
    let model = checkpoint("aidreams260K.bin");
    let tok = checkpoint("aidreams_tok512.bin");
    let g = json(&ok(&[
        "generate",
        &model,
        "--tokenizer",
        &tok,
        "--prompt",
        "Once upon a time",
        "--steps",
        "16",
        "--json",
    ]));
    let n = g["prefill_positions"].as_u64().unwrap();
    let emulated = g["prefill_cycles"].as_u64().unwrap();
    let b = json(&ok(&[
        "bench",
        &model,
        "--predict",
        "--prompt-len",
        &n.to_string(),
        "--gpus",
        "h100",
        "--json",
    ]));
    let p = &b["prefill"];
    assert_eq!(p["positions"].as_u64().unwrap(), n, "{p}");
    let predicted = p["wafer"]["prefill_cycles"].as_u64().unwrap();
    assert_eq!(predicted, g["prefill_predicted_cycles"].as_u64().unwrap());
    assert_eq!(p["wafer"]["emulated"], false);
    // Attention's cost model may be up to 2 cycles under a run.
    assert!(
        (predicted..=predicted + 2 * n * 5).contains(&emulated),
        "{predicted} vs {emulated}"
    );
    assert!(p["wafer"]["batched_stages"].as_u64().unwrap() > 0, "{p}");
    // The GPU's roofline: 2 · params · positions FLOPs at its bf16/f32 peak.
    let h100 = &p["gpus"][0];
    assert_eq!(h100["device"], "H100 SXM");
    let (compute, memory) = (
        h100["compute_us"].as_f64().unwrap(),
        h100["memory_us"].as_f64().unwrap(),
    );
    assert_eq!(h100["ttft_us"].as_f64().unwrap(), compute.max(memory));
    let text = ok(&[
        "bench",
        &model,
        "--predict",
        "--prompt-len",
        "32",
        "--gpus",
        "h100",
    ]);
    assert!(
        text.contains("time to first token, a prompt of 32 positions")
            && text.contains("cost-model estimate"),
        "{text}"
    );
    let err = fails(&["bench", &model, "--predict", "--prompt-len", "100000"]);
    assert!(
        err.contains("--prompt-len 100000") && err.contains("--max-context"),
        "{err}"
    );
    let err = fails(&["bench", &model, "--emulator", "--prompt-len", "8"]);
    assert!(err.contains("without --emulator"), "{err}");
}
