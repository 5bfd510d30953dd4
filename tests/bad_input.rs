//! Bad input from the command line and from files, as a hostile or hurried
//! user gives it: every case ends in a short error that names the flag or
//! file and what is allowed — never a panic, a hang, an allocation sized
//! by the input, or a silently clamped or wrong answer.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `wafer args`, killed after `limit` (a hang fails the test rather
/// than stalling it): (exit code, stdout, stderr).
fn wafer_within(args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wafer starts");
    // Drain both pipes while waiting: a child blocked on a full pipe
    // would look like a hang.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("wafer {args:?} ran past {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), out.join().unwrap(), err.join().unwrap())
}

/// `wafer args` must fail cleanly within 60 s: a non-zero exit that is not
/// a panic, an `error:` line (after any progress lines), nothing long.
/// Returns stderr.
fn refused(args: &[&str]) -> String {
    let (code, _, err) = wafer_within(args, Duration::from_secs(60));
    assert!(
        matches!(code, Some(1) | Some(2)),
        "wafer {args:?} should fail with an error, exit {code:?}:\n{err}"
    );
    assert!(!err.contains("panicked"), "wafer {args:?} panicked:\n{err}");
    assert!(
        err.lines().any(|l| l.starts_with("error:")),
        "wafer {args:?}:\n{err}"
    );
    assert!(
        err.len() < 1500,
        "wafer {args:?}: a {}-byte error",
        err.len()
    );
    err
}

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad_input");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write(name: &str, bytes: impl AsRef<[u8]>) -> String {
    let p = tmp(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

#[test]
fn every_numeric_flag_names_its_flag_and_range() {
    // (arguments, the flag the error must name)
    let cases: &[(&[&str], &str)] = &[
        (&["generate", "--steps", "0"], "--steps"),
        (&["generate", "--steps", "-3"], "--steps"),
        (
            &["generate", "--steps", "99999999999999999999999"],
            "--steps",
        ),
        (&["generate", "--temperature", "-1"], "--temperature"),
        (&["generate", "--temperature", "nan"], "--temperature"),
        (&["generate", "--temperature", "inf"], "--temperature"),
        (&["generate", "--max-minutes", "0"], "--max-minutes"),
        (&["generate", "--seed", "-1"], "--seed"),
        (&["generate", "--threads", "0"], "--threads"),
        (&["generate", "--threads", "100000"], "--threads"),
        (&["generate", "--max-context", "0"], "--max-context"),
        (
            &["generate", "--max-context", "2147483648"],
            "--max-context",
        ),
        (&["generate", "--grid", "0x0"], "--grid"),
        (&["generate", "--grid", "99999999999x2"], "--grid"),
        (&["generate", "--grid", "100000x100000"], "grid"),
        (
            &[
                "model",
                "llama-3.1-8b",
                "--max-context",
                "18446744073709551615",
            ],
            "--max-context",
        ),
        (&["run", "--max-cycles", "0"], "--max-cycles"),
        (&["run", "--threads", "-2"], "--threads"),
        (&["kernel", "gemv", "--shape", "0x4"], "--shape"),
        (
            &["kernel", "gemv", "--shape", "8x8", "--rect", "0x2"],
            "--rect",
        ),
        (&["kernel", "rmsnorm", "--shape", "-5"], "--shape"),
        (
            &["kernel", "attention", "--shape", "8x16", "--kv-heads", "0"],
            "--kv-heads",
        ),
        (
            &["kernel", "attention", "--shape", "8x16", "--group", "0"],
            "--group",
        ),
        (
            &["kernel", "attention", "--shape", "8x16", "--pos", "-1"],
            "--pos",
        ),
        (
            &["kernel", "embedding", "--shape", "8x8", "--token", "-1"],
            "--token",
        ),
        (&["bench", "--steps", "0"], "--steps"),
        (&["bench", "--warmup", "-1"], "--warmup"),
        (&["bench", "--context", "-1"], "--context"),
        (&["sweep", "--context", "-1"], "--context"),
        (&["view", "--steps", "1000000000"], "--steps"),
        (&["view", "--context", "-1"], "--context"),
        (&["view", "--size", "0x0"], "--size"),
    ];
    for (args, flag) in cases {
        let e = refused(args);
        assert!(e.contains(flag), "wafer {args:?} should name {flag}:\n{e}");
    }
}

#[test]
fn steps_and_contexts_past_the_model_are_refused_not_clamped() {
    // The built-in checkpoint was trained for 128 positions.
    let e = refused(&["generate", "--steps", "200"]);
    assert!(e.contains("--steps 200") && e.contains("128"), "{e}");
    let e = refused(&["generate", "--max-context", "200"]);
    assert!(
        e.contains("--max-context 200") && e.contains("1..=128"),
        "{e}"
    );
    let e = refused(&["model", "llama-3.1-8b", "--max-context", "131073"]);
    assert!(e.contains("131072"), "{e}");
    let e = refused(&["bench", "--context", "99999"]);
    assert!(e.contains("--context 99999"), "{e}");
    let e = refused(&["bench", "--emulator", "--warmup", "100", "--steps", "100"]);
    assert!(e.contains("--steps 100"), "{e}");
    let e = refused(&["sweep", "--context", "128"]);
    assert!(e.contains("0..=127"), "{e}");
    // A prompt at least as long as the steps would be cut short.
    let e = refused(&[
        "generate",
        "--prompt",
        "a long prompt of many words",
        "--steps",
        "3",
    ]);
    assert!(e.contains("--prompt") && e.contains("--steps 3"), "{e}");
    // A 48,000-character prompt encodes at once (the merge was quadratic)
    // and is then longer than the context.
    let long = "wafer ".repeat(8000);
    let e = refused(&["generate", "--prompt", &long]);
    assert!(e.contains("--prompt is"), "{e}");
}

#[test]
fn unwritable_outputs_are_refused_before_the_work() {
    let dir = tmp("no_such_dir").join("x");
    let p = dir.display().to_string();
    for (args, flag) in [
        (vec!["run", "--stats", &p], "--stats"),
        (vec!["run", "--trace", &p], "--trace"),
        (vec!["compile", "models/stories260K.bin", "-o", &p], "-o"),
        (vec!["asm", "examples/vector_add.wsm", "-o", &p], "-o"),
        (vec!["bench", "--predict", "--plot", &p], "--plot"),
        (vec!["sweep", "--grids", "16x16", "--plot", &p], "--plot"),
        (vec!["view", "--screenshot", &p], "--screenshot"),
    ] {
        let e = refused(&args);
        assert!(
            e.contains(flag) && e.contains("cannot write"),
            "{args:?}: {e}"
        );
    }
    let e = refused(&["run", "--stats", "examples"]);
    assert!(e.contains("a directory"), "{e}");
}

#[test]
fn sizes_in_files_are_checked_before_anything_is_allocated() {
    for grid in [
        "4294967295x4294967295",
        "100000x100000",
        "65536x65536",
        "0x3",
    ] {
        let f = write(&format!("grid_{grid}.wsm"), format!(".grid {grid}\n"));
        let e = refused(&["run", &f]);
        assert!(e.contains("grid") && e.contains(":1:"), "{grid}: {e}");
    }
    // A binary program whose header claims a huge grid.
    let mut p = wafer_emulator::asm::parse(".grid 1x1\n", "one.wsm").unwrap();
    p.width = u32::MAX;
    p.height = u32::MAX;
    let f = write("huge.wafer", wafer_emulator::binary::encode(&p));
    let e = refused(&["run", &f]);
    assert!(e.contains("PEs") && e.contains("at most"), "{e}");
    // A machine file with a huge grid, or a parameter that sizes buffers
    // or waits.
    for (body, field) in [
        ("grid_cols = 100000\ngrid_rows = 100000", "grid_cols"),
        ("vector_issue_cycles = 4294967295", "vector_issue_cycles"),
        ("queue_depth = 4000000000", "queue_depth"),
        ("hop_latency = 100000", "hop_latency"),
        ("clock_hz = nan", "clock_hz"),
    ] {
        let f = write("machine.toml", format!("base = \"wse3\"\n{body}\n"));
        let e = refused(&["compile", "models/stories260K.bin", "--arch", &f]);
        assert!(e.contains(field), "{body}: {e}");
        assert!(!e.contains("invalid type"), "{body}: {e}");
    }
    // Stats the viewer would index by: zero, huge or inconsistent sizes.
    let stats = |w: u64, h: u64, n: usize| {
        let z = vec![0u64; n];
        serde_json::json!({
            "version": 1, "arch": "wse3", "clock_hz": 1e9, "width": w, "height": h,
            "cycles": 10, "engine": "x",
            "pe": {"scalar_cycles": z, "vector_cycles": z, "switch_cycles": z,
                   "stall_in_cycles": z, "stall_out_cycles": z, "stall_issue_cycles": z,
                   "router_stall_cycles": z, "tasks": z,
                   "wavelets_out": [z, z, z, z, z], "wavelets_from_core": z, "sram_used": z},
            "totals": {"pes_with_code": 0, "vector_cycles": 0, "scalar_cycles": 0,
                       "wavelet_hops": 0, "router_stall_cycles": 0, "max_sram_used": 0}
        })
        .to_string()
    };
    let png = tmp("v.png").display().to_string();
    for (w, h, n, says) in [
        (0, 4, 0, "empty"),
        (100000, 100000, 4, "at most"),
        (4, 4, 3, "3 entries"),
        (4, 4, 17, "17 entries"),
    ] {
        let f = write("stats.json", stats(w, h, n));
        let e = refused(&["view", &f, "--screenshot", &png]);
        assert!(e.contains(says), "{w}x{h} with {n}: {e}");
    }
}

#[test]
fn what_a_file_is_and_what_went_wrong_are_said_once_and_clearly() {
    // A compiled model given where one program is expected.
    let model = tmp("model.wafer").display().to_string();
    let (code, _, err) = wafer_within(
        &["compile", "models/stories260K.bin", "-o", &model],
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "{err}");
    for cmd in ["run", "asm"] {
        let e = refused(&[cmd, &model]);
        assert!(
            e.contains("a compiled model") && e.contains("wafer disasm"),
            "{e}"
        );
    }
    let (code, out, _) = wafer_within(&["disasm", &model], Duration::from_secs(60));
    assert_eq!(code, Some(0));
    assert!(out.contains("a compiled model of 49 stages") && out.contains("stage 48"));
    // A check error is printed once, not as "X: X".
    let e = refused(&["run", "examples/gemv_8x8.wsm", "--grid", "4x4"]);
    assert_eq!(e.matches("needs a 8x8 rectangle").count(), 1, "{e}");
    // A corrupt payload behind a good checksum.
    let payload = [0xffu8; 40];
    let f = write("corrupt.wafer", wafer_emulator::binary::frame(&payload));
    let e = refused(&["run", &f]);
    assert!(e.contains("does not decode as a program"), "{e}");
    // A Hugging Face directory without config.json names the path.
    let dir = tmp("hf_empty");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let e = refused(&["model", &dir.display().to_string()]);
    assert!(e.contains("hf_empty/config.json"), "{e}");
    // A safetensors file that is not one, in a sentence.
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "llama", "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 8, "max_position_embeddings": 8, "tie_word_embeddings": true}"#,
    )
    .unwrap();
    std::fs::write(dir.join("model.safetensors"), b"garbage").unwrap();
    let e = refused(&["generate", &dir.display().to_string()]);
    assert!(e.contains("shorter than the 8-byte header length"), "{e}");
    // A plain endless loop is executing, not waiting on a microthread.
    let f = write(
        "loop.wsm",
        ".grid 1x1\n.code k\n  .task main local active\nmain:\n  li r1, 0\nspin:\n  add r1, r1, 1\n  jmp spin\n.end\n.place k 0,0 1x1\n",
    );
    let e = refused(&["run", &f, "--max-cycles", "500"]);
    assert!(
        e.contains("is executing") && !e.contains("microthread"),
        "{e}"
    );
    // A 1 MB token is not echoed back.
    let f = write(
        "token.wsm",
        format!(".grid 1x1\n.code {} x\n", "a".repeat(1 << 20)),
    );
    refused(&["run", &f]);
}

/// A llama2.c checkpoint with `dim` 8 whose weights are all `value`.
fn checkpoint(name: &str, value: f32) -> String {
    let (dim, hidden, layers, heads, kv, vocab, seq) = (8i32, 8, 1, 2, 2, 16, 16);
    let head = dim / heads;
    let n =
        vocab * dim + layers * (dim + 4 * dim * dim + dim + 3 * hidden * dim) + dim + seq * head;
    let mut bytes: Vec<u8> = [dim, hidden, layers, heads, kv, vocab, seq]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    for _ in 0..n {
        bytes.extend(value.to_le_bytes());
    }
    write(name, bytes)
}

#[test]
fn nan_logits_are_an_error_not_a_token() {
    let m = checkpoint("nan.bin", f32::NAN);
    for extra in [&[][..], &["--temperature", "0.8"], &["--check"]] {
        let mut args = vec!["generate", &m, "--steps", "4"];
        args.extend_from_slice(extra);
        let e = refused(&args);
        assert!(e.contains("NaN"), "{extra:?}: {e}");
    }
}

#[test]
fn integers_are_dumped_exactly() {
    let f = write(
        "int.wsm",
        ".grid 1x1\n.code k\n  .buffer n i32[2]\n  .task main local active\nmain:\n  li r1, 16777217\n  st n[0], r1\n  li r2, -7\n  st n[1], r2\n  end\n.end\n.place k 0,0 1x1\n",
    );
    let (code, out, err) = wafer_within(
        &["run", &f, "--dump", "n@0,0", "--json"],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["dumps"]["n@0,0"], serde_json::json!([16777217, -7]));
}

#[test]
fn a_prompt_in_any_script_prints_whole_characters() {
    let (code, out, err) = wafer_within(
        &["generate", "--prompt", "Café naïve", "--steps", "16"],
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Café naïve"), "{out}");
    assert!(!out.contains('\u{FFFD}'), "{out}");
}

#[test]
fn the_argmax_kernel_handles_one_element() {
    let (code, out, err) = wafer_within(
        &["kernel", "argmax", "--shape", "1", "--json"],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["measured_cycles"], j["predicted_cycles"]);
}
