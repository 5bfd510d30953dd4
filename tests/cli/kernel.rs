//! `wafer kernel`: every kernel run on its own, checked against its
//! reference and its cost model.

use super::{fails, json, ok};

#[test]
fn kernel_runs_a_gemv_checks_it_and_compares_with_its_cost_model() {
    let j = json(&ok(&[
        "kernel",
        "gemv",
        "--shape",
        "64x48",
        "--dtype",
        "f16",
        "--arch",
        "wse2",
        "--rect",
        "4x4",
        "--strategy",
        "tree",
        "--json",
    ]));
    assert_eq!(j["matches_reference"], true);
    let (measured, predicted) = (
        j["measured_cycles"].as_f64().unwrap(),
        j["predicted_cycles"].as_f64().unwrap(),
    );
    assert!((measured / predicted - 1.0).abs() <= 0.15, "{j}");
    assert!((j["time_us"].as_f64().unwrap() - measured / 850.0).abs() < 1e-9);
    // The emulator's own host time, for its speed on a kernel: counted
    // (not zero) and no more than the whole command took.
    let host = j["emulation_seconds"].as_f64().unwrap();
    assert!(host > 0.0 && host < 60.0, "{j}");
    // Its rate counts the PEs that run code (all 16 of this tile grid)
    // for every measured cycle.
    let rate = j["pe_cycles_per_second"].as_f64().unwrap();
    assert!(
        (rate * host / measured - 16.0).abs() < 1e-6,
        "{j}: {} PEs",
        rate * host / measured
    );
    let out = ok(&["kernel", "gemv", "--shape", "32x32", "--arch", "wse3"]);
    assert!(out.contains("picked: fastest by the cost model"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("emulated   in "))
        .unwrap_or("");
    assert!(
        line.contains("s of host time on") && line.contains("PE-cycles a second"),
        "{out}"
    );
    assert!(ok(&["kernel", "--list"]).contains("gemv"));
    let e = fails(&["kernel", "gemv", "--shape", "4x4", "--rect", "8x8"]);
    assert!(e.contains("8x8 does not fit"), "{e}");
    // Too big a tile: 16-bit weights are advised only where they are not.
    let tile = |dtype| {
        fails(&[
            "kernel",
            "gemv",
            "--shape",
            "8192x8192",
            "--rect",
            "2x2",
            "--dtype",
            dtype,
        ])
    };
    let (e32, e16) = (tile("f32"), tile("bf16"));
    assert!(
        e32.contains("bytes of SRAM") && e32.contains("16-bit dtype"),
        "{e32}"
    );
    assert!(
        e16.contains("bytes of SRAM") && !e16.contains("16-bit"),
        "{e16}"
    );
    let e = fails(&["kernel", "no-such-kernel", "--shape", "4"]);
    assert!(e.contains("unknown kernel `no-such-kernel`"), "{e}");
}

/// Two GEMVs as one program: checked against the product of the
/// references, faster than the two apart, and the compiler's model of them
/// as stages is theirs plus its hand-off formula.
#[test]
fn kernel_runs_a_gemv_pair_as_one_program() {
    let j = json(&ok(&[
        "kernel",
        "gemv_pair",
        "--shape",
        "48x64x40",
        "--rect",
        "4x8",
        "--arch",
        "wse2",
        "--dtype",
        "bf16",
        "--strategy",
        "tree",
        "--json",
    ]));
    assert_eq!(j["matches_reference"], true, "{j}");
    assert_eq!(j["rect"], serde_json::json!([8, 8]), "{j}");
    let at = |k: &str| j[k].as_u64().unwrap_or_else(|| panic!("{k}: {j}"));
    let (pair, first, second) = (
        at("measured_cycles"),
        at("first_alone_cycles"),
        at("second_alone_cycles"),
    );
    assert!(first < pair && pair < first + second, "{j}");
    // Each row's y leaves W1's east edge beside where W2 takes that row's
    // x: a trip of one hop (the ramps and W2's input links are in the
    // runs).
    let arch = wafer_emulator::Arch::wse2();
    let handoff = arch.hop_latency as u64;
    assert_eq!(at("handoff_model_cycles"), handoff, "{j}");
    assert_eq!(at("as_stages_cycles"), first + second + handoff, "{j}");
    let out = ok(&[
        "kernel",
        "gemv_pair",
        "--shape",
        "16x24x8",
        "--rect",
        "2x4",
        "--timing-only",
    ]);
    assert!(out.contains("as stages") && out.contains("less"), "{out}");
    let e = fails(&["kernel", "gemv_pair", "--shape", "16x24"]);
    assert!(e.contains("AxBxC") && e.contains("KxMxN"), "{e}");
    let e = fails(&["kernel", "gemv_pair", "--shape", "16x24x8", "--transposed"]);
    assert!(e.contains("--transposed"), "{e}");
}

#[test]
fn kernel_runs_collectives() {
    for op in ["broadcast", "reduce", "allreduce", "gather"] {
        let j = json(&ok(&[
            "kernel",
            op,
            "--shape",
            "8",
            "--rect",
            "6x3",
            "--axis",
            "col",
            "--combine",
            "max",
            "--strategy",
            "tree",
            "--json",
        ]));
        assert_eq!(j["matches_reference"], true, "{op}");
        assert_eq!(j["measured_cycles"], j["predicted_cycles"], "{op}: {j}");
    }
    let e = fails(&["kernel", "allreduce", "--shape", "8"]);
    assert!(e.contains("needs --rect"), "{e}");
}

#[test]
fn kernel_runs_the_vector_kernels() {
    for op in [
        "add",
        "mul",
        "silu",
        "gelu",
        "swiglu",
        "rmsnorm",
        "layernorm",
        "softmax",
    ] {
        let j = json(&ok(&[
            "kernel", op, "--shape", "50", "--rect", "1x4", "--json",
        ]));
        assert_eq!(j["measured_cycles"], j["predicted_cycles"], "{op}: {j}");
    }
    let e = fails(&["kernel", "rmsnorm", "--shape", "50", "--rect", "2x4"]);
    assert!(e.contains("runs on a column of PEs"), "{e}");
}

#[test]
fn kernel_runs_attention() {
    let j = json(&ok(&[
        "kernel",
        "attention",
        "--shape",
        "8x40",
        "--group",
        "2",
        "--pos",
        "30",
        "--rect",
        "1x4",
        "--strategy",
        "tree",
        "--json",
    ]));
    assert_eq!(j["matches_reference"], true);
    let ratio = j["ratio"].as_f64().unwrap();
    assert!((ratio - 1.0).abs() <= 0.15, "{j}");
    let e = fails(&["kernel", "attention", "--shape", "8x40", "--pos", "40"]);
    assert!(e.contains("past the cache"), "{e}");
}

#[test]
fn kernel_runs_rope_embedding_and_argmax() {
    for args in [
        vec![
            "kernel", "rope", "--shape", "4x16", "--pos", "9", "--layout", "half", "--rect", "1x2",
            "--json",
        ],
        vec![
            "kernel",
            "embedding",
            "--shape",
            "100x24",
            "--dtype",
            "bf16",
            "--token",
            "42",
            "--rect",
            "4x3",
            "--strategy",
            "tree",
            "--json",
        ],
        vec![
            "kernel", "argmax", "--shape", "300", "--rect", "1x5", "--json",
        ],
    ] {
        let j = json(&ok(&args));
        assert_eq!(j["measured_cycles"], j["predicted_cycles"], "{args:?}: {j}");
    }
}

#[test]
fn kernel_runs_collectives_over_a_whole_rectangle() {
    for op in ["broadcast", "reduce", "allreduce"] {
        let j = json(&ok(&[
            "kernel",
            op,
            "--shape",
            "6",
            "--rect",
            "5x4",
            "--axis",
            "rect",
            "--strategy",
            "tree",
            "--json",
        ]));
        assert_eq!(j["measured_cycles"], j["predicted_cycles"], "{op}: {j}");
    }
    let e = fails(&[
        "kernel", "gather", "--shape", "6", "--rect", "5x4", "--axis", "rect",
    ]);
    assert!(e.contains("rows or columns"), "{e}");
}

#[test]
fn kernel_runs_a_ring_allreduce() {
    let j = json(&ok(&[
        "kernel",
        "allreduce",
        "--shape",
        "40",
        "--rect",
        "6x2",
        "--strategy",
        "ring",
        "--json",
    ]));
    assert_eq!(j["matches_reference"], true);
    assert!((j["ratio"].as_f64().unwrap() - 1.0).abs() <= 0.15, "{j}");
    let e = fails(&[
        "kernel",
        "reduce",
        "--shape",
        "40",
        "--rect",
        "6x2",
        "--strategy",
        "ring",
    ]);
    assert!(e.contains("ring is an allreduce strategy"), "{e}");
    let e = fails(&[
        "kernel",
        "rmsnorm",
        "--shape",
        "40",
        "--rect",
        "1x4",
        "--strategy",
        "ring",
    ]);
    assert!(e.contains("ring is for the standalone allreduce"), "{e}");
}

#[test]
fn kernel_runs_a_transposed_gemv() {
    let j = json(&ok(&[
        "kernel",
        "gemv",
        "--shape",
        "40x24",
        "--rect",
        "4x5",
        "--transposed",
        "--json",
    ]));
    assert_eq!(j["rect"], serde_json::json!([5, 4]));
    assert_eq!(j["measured_cycles"], j["predicted_cycles"], "{j}");
    assert!(j["kernel"].as_str().unwrap().contains("transposed"), "{j}");
    // --rect is the unmirrored kernel's: 800 columns do not fit wse3's 755,
    // but mirrored they are 800 of its 1,170 rows, and the run is checked.
    let j = json(&ok(&[
        "kernel",
        "gemv",
        "--shape",
        "64x4096",
        "--rect",
        "800x4",
        "--transposed",
        "--json",
    ]));
    assert_eq!(j["rect"], serde_json::json!([4, 800]));
    assert_eq!(j["measured_cycles"], j["predicted_cycles"], "{j}");
    let e = fails(&[
        "kernel",
        "gemv",
        "--shape",
        "64x4096",
        "--rect",
        "1200x4",
        "--transposed",
    ]);
    assert!(e.contains("1170x755") && e.contains("--transposed"), "{e}");
}

#[test]
fn kernel_runs_meshgemv_with_uneven_tiles() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "kernel",
            "meshgemv",
            "--shape",
            "100x60",
            "--rect",
            "7x8",
            "--group-num",
            "2",
            "--json",
        ];
        args.extend_from_slice(extra);
        json(&ok(&args))
    };
    let j = run(&[]);
    assert_eq!(j["matches_reference"], true, "{j}");
    assert_eq!(j["rect"], serde_json::json!([7, 8]));
    assert_eq!(j["measured_cycles"], j["predicted_cycles"], "{j}");
    assert!(
        j["kernel"].as_str().unwrap().contains("2 groups of 4 rows"),
        "{j}"
    );
    // The compiled model's variant: x and y stream through the edges, the
    // output stream checked against the reference too.
    let s = run(&["--dtype", "bf16", "--streamed"]);
    assert_eq!(s["matches_reference"], true, "{s}");
    assert_eq!(s["measured_cycles"], s["predicted_cycles"], "{s}");
    assert!(s["kernel"].as_str().unwrap().contains("streamed"), "{s}");
    assert_ne!(s["measured_cycles"], j["measured_cycles"], "{s}");
    let e = fails(&["kernel", "gemv", "--shape", "8x8", "--streamed"]);
    assert!(e.contains("--streamed is MeshGEMV's"), "{e}");
}

#[test]
fn kernel_runs_meshgemm_and_labels_its_estimate() {
    let j = json(&ok(&[
        "kernel", "meshgemm", "--shape", "24x12x36", "--rect", "6x6", "--json",
    ]));
    assert_eq!(j["matches_reference"], true, "{j}");
    assert_eq!(j["rect"], serde_json::json!([6, 6]));
    assert!(j["kernel"].as_str().unwrap().contains("estimate"), "{j}");
    let (m, p) = (
        j["measured_cycles"].as_f64().unwrap(),
        j["predicted_cycles"].as_f64().unwrap(),
    );
    assert!((m / p - 1.0).abs() <= 0.15, "{j}");
    let e = fails(&["kernel", "meshgemm", "--shape", "24x12", "--rect", "6x6"]);
    assert!(e.contains("MxKxN"), "{e}");
    let e = fails(&["kernel", "meshgemm", "--shape", "24x12x36", "--rect", "6x4"]);
    assert!(e.contains("square"), "{e}");
}

/// `--batch N`: a prefill's kernels take N positions in one run, each
/// position checked against the one-position reference, the cycles
/// against the batched cost model; the rest say they do not batch.
#[test]
fn kernel_runs_a_prefills_batches() {
    let run = |args: &[&str]| {
        let mut all = vec!["kernel"];
        all.extend(args);
        all.extend(["--batch", "6", "--json"]);
        let j = json(&ok(&all));
        assert_eq!(j["matches_reference"], true, "{j}");
        assert!(
            j["kernel"]
                .as_str()
                .unwrap()
                .contains("6 positions at once"),
            "{j}"
        );
        (
            j["measured_cycles"].as_u64().unwrap(),
            j["predicted_cycles"].as_u64().unwrap(),
        )
    };
    for args in [
        &[
            "gemv", "--shape", "40x72", "--dtype", "int8", "--rect", "3x4",
        ][..],
        &["rope", "--shape", "4x16", "--pos", "9", "--layout", "half"],
        &["add_rmsnorm", "--shape", "96", "--strategy", "tree"],
    ] {
        let (measured, predicted) = run(args);
        assert_eq!(measured, predicted, "{args:?}");
    }
    // A norm whose segments are uneven (90 elements on 32 PEs: 3 and 2)
    // may take a few cycles more than its model under a batch: the
    // column's far half starts early and meets a later leader's gather at
    // its ramp (docs/decode-step.md, "Allreduces meet in the middle").
    let (measured, predicted) = run(&["add_rmsnorm", "--shape", "90", "--strategy", "tree"]);
    assert!(
        (0..=8).contains(&(measured as i64 - predicted as i64)),
        "measured {measured} predicted {predicted}"
    );
    // MeshGEMV's model may be a few cycles under a batch (held sends).
    let (measured, predicted) = run(&[
        "meshgemv",
        "--shape",
        "48x30",
        "--rect",
        "3x8",
        "--dtype",
        "bf16",
        "--streamed",
    ]);
    assert!((predicted..=predicted + 4).contains(&measured));
    // One position of a batch costs less than a run of its own.
    let one = json(&ok(&[
        "kernel", "gemv", "--shape", "40x72", "--rect", "3x4", "--json",
    ]));
    let six = json(&ok(&[
        "kernel", "gemv", "--shape", "40x72", "--rect", "3x4", "--batch", "6", "--json",
    ]));
    assert!(
        six["measured_cycles"].as_u64().unwrap() < 6 * one["measured_cycles"].as_u64().unwrap()
    );
    let e = fails(&["kernel", "attention", "--batch", "4"]);
    assert!(
        e.contains("runs one position at a time") && e.contains("rope"),
        "{e}"
    );
    let e = fails(&["kernel", "meshgemv", "--shape", "48x30", "--batch", "4"]);
    assert!(e.contains("--streamed"), "{e}");
    let e = fails(&["kernel", "gemv", "--shape", "8x8", "--batch", "0"]);
    assert!(e.contains("--batch"), "{e}");
}

/// Every kernel checks its whole output against its reference, and counts
/// what it compared; `--timing-only` computes neither values nor the
/// reference, in the same cycles.
#[test]
fn every_kernel_counts_the_values_it_checked_and_none_when_timing_only() {
    for (args, values) in [
        ("gemv --shape 64x48 --rect 4x4", 64),
        ("meshgemv --shape 64x40 --rect 8x8", 40),
        ("meshgemv --shape 64x40 --rect 8x8 --streamed --batch 2", 80),
        ("meshgemm --shape 24x12x36 --rect 6x6", 24 * 36),
        (
            "attention --shape 8x40 --pos 9 --kv-heads 2 --group 2",
            2 * 2 * 8,
        ),
        ("rope --shape 4x16 --pos 9 --rect 1x2", 4 * 16),
        ("embedding --shape 512x64 --rect 4x4", 64),
        ("argmax --shape 300 --rect 1x5", 1),
        // The two experts picked and their weights.
        ("router --shape 8x2", 2 * 2),
        ("rmsnorm --shape 50 --rect 1x4", 50),
        // Three rows of four PEs, each PE left with its row's sum.
        ("allreduce --shape 8 --rect 4x3", 3 * 8),
        // Five columns, each gathering four PEs' six elements.
        ("gather --shape 6 --rect 5x4 --axis col", 5 * 4 * 6),
    ] {
        let mut argv: Vec<&str> = ["kernel", "--json"].into();
        argv.extend(args.split(' '));
        let checked = json(&ok(&argv));
        assert_eq!(checked["matches_reference"], true, "{args}: {checked}");
        assert_eq!(checked["checked_values"], values, "{args}: {checked}");
        argv.push("--timing-only");
        let timed = json(&ok(&argv));
        assert!(timed["checked_values"].is_null(), "{args}: {timed}");
        assert!(timed["matches_reference"].is_null(), "{args}: {timed}");
        assert_eq!(timed["timing_only"], true, "{args}: {timed}");
        assert_eq!(
            timed["measured_cycles"], checked["measured_cycles"],
            "{args}"
        );
    }
}

/// `--report` measures every kernel against its cost model; under
/// `--timing-only` it says it checked nothing rather than failing its
/// checks on values it never computed.
#[test]
fn kernel_report_covers_every_kernel_and_says_what_it_checked() {
    let j = json(&ok(&["kernel", "--report", "--timing-only", "--json"]));
    assert_eq!(j["timing_only"], true, "{j}");
    assert!(j["checked_values"].is_null(), "{j}");
    let rows = j["rows"].as_array().expect("rows");
    for kernel in [
        "gemv",
        "meshgemv",
        "broadcast",
        "reduce",
        "allreduce",
        "gather",
        "attention",
        "rope",
        "embedding",
        "argmax",
        "add",
        "rmsnorm",
        "softmax",
        "swiglu",
    ] {
        for arch in ["wse2", "wse3"] {
            assert!(
                rows.iter().any(|r| r["arch"] == arch
                    && r["kernel"].as_str().unwrap().split(' ').next() == Some(kernel)),
                "no {kernel} row on {arch}: {j}"
            );
        }
    }
    for r in rows {
        assert!(r["measured_cycles"].as_u64().unwrap() > 0, "{r}");
    }
    // Every kernel's measured and predicted cycles at the report's sizes:
    // a change to any kernel, cost model or machine parameter shows here.
    let text = ok(&["kernel", "--report", "--timing-only"]);
    insta::assert_snapshot!("kernel_report", text);
}
