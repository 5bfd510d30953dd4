//! A mixture of experts through the command line: a shrunk Mixtral
//! checkpoint generates on the wafer as its CPU reference does (a prompt
//! of token ids prefilled), and the
//! bench states which experts its timing-only steps ran.

use crate::{json, ok, tmp};

#[test]
fn a_mixtral_checkpoint_generates_as_the_reference_and_benches_on_a_stated_routing() {
    let dir = tmp("mixtral");
    crate::written::mixtral::write_dir(&dir);
    let d = dir.to_str().unwrap();
    let grid = ["--grid", "32x32", "--max-context", "16"];
    // With barriers, so that each step is the barriers' cost model's.
    let mut args = vec![
        "generate",
        d,
        "--steps",
        "10",
        "--check",
        "--json",
        "--barriers",
    ];
    args.extend(grid);
    let out = json(&ok(&args));
    assert_eq!(out["tokens"].as_array().unwrap().len(), 10, "{out}");
    assert!(
        out["check_max_abs_logit_diff"].as_f64().unwrap() < 1e-4,
        "{out}"
    );
    // Each step predicted for the experts its router picked: exact but
    // for attention's unarbitrated ramp (README, "What the cost models
    // leave out": at most 2 cycles a kernel, here at position 3).
    let cycles = |k: &str| -> Vec<i64> {
        out[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    };
    let (emulated, predicted) = (cycles("per_token_cycles"), cycles("predicted_cycles"));
    for (e, p) in emulated.iter().zip(&predicted) {
        assert!((e - p).abs() <= 2 * 2, "{emulated:?} vs {predicted:?}");
    }
    assert_eq!(emulated[0], predicted[0]);
    // A prompt of token ids is prefilled on the wafer, checked against the
    // reference, and its time to first token reported.
    let mut args = vec![
        "generate",
        d,
        "--steps",
        "10",
        "--prompt-ids",
        "5,11,2,7",
        "--check",
        "--json",
    ];
    args.extend(grid);
    let pre = json(&ok(&args));
    assert!(
        pre["check_max_abs_logit_diff"].as_f64().unwrap() < 1e-4,
        "{pre}"
    );
    assert_eq!(pre["prefill_positions"], 5, "{pre}");
    let tokens = pre["tokens"].as_array().unwrap();
    assert_eq!(
        &tokens[..4],
        &[5, 11, 2, 7].map(serde_json::Value::from),
        "{pre}"
    );
    assert!(pre["ttft_us"].as_f64().unwrap() > 0.0, "{pre}");
    let err = crate::fails(&["generate", d, "--prompt-ids", "5,999"]);
    assert!(err.contains("--prompt-ids: token 999 is outside"), "{err}");
    // Timing-only steps run a seeded routing's experts, and say so; the
    // cost models predict that step (with barriers: the barriers' model).
    let mut args = vec!["bench", d, "--steps", "1", "--context", "5", "--barriers"];
    args.extend(grid);
    let text = ok(&args);
    assert!(
        text.contains("each layer runs the 2 of 4 that a seeded routing (seed 0) picks"),
        "{text}"
    );
    assert!(text.contains("experts' router, combine"), "{text}");
    args.extend(["--expert-seed", "9", "--json"]);
    let j = json(&ok(&args));
    let w = &j["wafer"];
    assert_eq!(w["experts"]["seed"], 9, "{j}");
    assert_eq!(w["experts"]["routing"], "seeded", "{j}");
    assert_eq!(
        w["per_token_cycles"].as_f64().unwrap(),
        w["predicted_cycles"].as_f64().unwrap(),
        "{j}"
    );
}
