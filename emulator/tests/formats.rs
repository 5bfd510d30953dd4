//! The assembly and binary formats: round trips over generated programs,
//! and garbage in gives errors, never panics.

mod common;

use proptest::prelude::*;
use wafer_emulator::{asm, binary, verify};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn assembly_prints_and_parses_back_to_the_same_program(seed in any::<u64>()) {
        let p = common::random_program(seed);
        verify(&p).map_err(|e| TestCaseError::fail(format!("generator made an invalid program: {e}")))?;
        let text = asm::print(&p);
        let back = asm::parse(&text, "generated.wsm").map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &p, "{}", text);
        prop_assert_eq!(asm::print(&back), text);
    }

    #[test]
    fn binary_encodes_and_decodes_to_the_same_program(seed in any::<u64>()) {
        let p = common::random_program(seed);
        let bytes = binary::encode(&p);
        prop_assert_eq!(binary::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn mangled_binaries_are_errors_not_panics(seed in any::<u64>(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
        let bytes = binary::encode(&common::random_program(seed));
        let cut = cut.index(bytes.len());
        prop_assert!(binary::decode(&bytes[..cut]).is_err(), "a truncated file decoded");
        let mut flipped = bytes.clone();
        let i = flip.index(bytes.len());
        flipped[i] ^= 0x5a;
        prop_assert!(binary::decode(&flipped).is_err(), "a corrupted file decoded (byte {})", i);
    }

    #[test]
    fn random_bytes_are_errors_not_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut with_magic = binary::MAGIC.to_vec();
        with_magic.extend_from_slice(&bytes);
        prop_assert!(binary::decode(&bytes).is_err());
        let _ = binary::decode(&with_magic);
    }

    #[test]
    fn mangled_assembly_is_an_error_or_a_valid_program(seed in any::<u64>(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>(), 0u8..3), 1..6)) {
        let mut text: Vec<char> = asm::print(&common::random_program(seed)).chars().collect();
        for (at, c, kind) in edits {
            let i = at.index(text.len() + 1);
            match kind {
                0 => text.insert(i, c),
                1 if i < text.len() => { text.remove(i); }
                _ if i < text.len() => text[i] = c,
                _ => {}
            }
        }
        let text: String = text.into_iter().collect();
        match asm::parse(&text, "mangled.wsm") {
            Ok(p) => prop_assert!(verify(&p).is_ok()),
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("mangled.wsm"), "error does not name the file: {}", msg);
            }
        }
    }
}

#[test]
fn binary_header_errors_say_what_is_wrong() {
    let p = common::random_program(7);
    let bytes = binary::encode(&p);
    let mut v = bytes.clone();
    v[8] = 99;
    assert_eq!(
        binary::decode(&v),
        Err(binary::BinaryError::Version { found: 99 })
    );
    assert!(
        binary::decode(&bytes[..30])
            .unwrap_err()
            .to_string()
            .contains("truncated")
    );
    assert_eq!(
        binary::decode(b"#!/bin/sh"),
        Err(binary::BinaryError::BadMagic)
    );
}

#[test]
fn a_binary_with_an_invalid_program_fails_verification() {
    // Well-formed bytes, but a buffer overlaps the code: the verifier names it.
    let mut p = common::random_program(11);
    p.codes[0].buffers[0].offset = 0;
    let err = binary::decode(&binary::encode(&p)).unwrap_err().to_string();
    assert!(
        err.contains("buffer `b0`") && err.contains("after the code"),
        "{err}"
    );
}

fn parse_err(src: &str) -> String {
    asm::parse(src, "bad.wsm").unwrap_err().to_string()
}

#[test]
fn assembly_errors_point_at_the_line_and_column() {
    let e = parse_err(
        ".grid 2x2\n.code k\n  .task main local active\nmain:\n  vfadd.f32 y, y\n  end\n.end\n",
    );
    assert!(e.starts_with("bad.wsm:5:"), "{e}");
    assert!(e.contains("`y`"), "{e}");
    let e = parse_err(".grid 2x2\n.route 0,0 1x1 c1 Q -> E\n");
    assert!(
        e.starts_with("bad.wsm:2:19:") && e.contains("expected a port"),
        "{e}"
    );
    let e = parse_err(".grid 2x2\n.code k\n  .task main local\nmain:\n  jmp nowhere\n.end\n");
    assert!(
        e.contains("bad.wsm:5:") && e.contains("no label `nowhere`"),
        "{e}"
    );
    let e = parse_err(".code k\n.end\n");
    assert!(e.contains("missing `.grid"), "{e}");
    let e = parse_err(".grid 1x1\n.code k\n  .task main local active\nmain:\n  end\n");
    assert!(
        e.contains("bad.wsm:2:") && e.contains("no matching `.end`"),
        "{e}"
    );
    let e = parse_err(".grid 1x1\n.place nope 0,0 1x1\n");
    assert!(
        e.contains("bad.wsm:2:") && e.contains("no code named `nope`"),
        "{e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever a generated program does (bad routes, out-of-range
    /// descriptors through registers, endless loops), checking and running it
    /// ends in a result or an error, never a panic or a hang.
    #[test]
    fn any_program_runs_or_fails_cleanly(seed in any::<u64>()) {
        let mut p = common::random_program(seed);
        // Routes that go nowhere would fail the checks every time; drop them
        // half the time so more programs reach the engine.
        if seed % 2 == 0 {
            p.routes.clear();
            p.inputs.clear();
            p.outputs.clear();
        }
        let cfg = wafer_emulator::RunConfig { max_cycles: 3_000, ..Default::default() };
        let _ = wafer_emulator::run(&p, &wafer_emulator::Arch::wse2(), &Default::default(), &cfg);
    }
}

#[test]
fn a_code_with_more_tasks_than_task_ids_is_refused() {
    // Instructions name a task by an 8-bit id: a 257th task could never be
    // named, and a core keeps its tasks' flags in 256 bits.
    let mut src = String::from(".grid 1x1\n.code k\n");
    for i in 0..257 {
        src += &format!("  .task t{i} local\n");
    }
    for i in 0..257 {
        src += &format!("t{i}:\n  end\n");
    }
    src += ".end\n.place k 0,0 1x1\n";
    let e = parse_err(&src);
    assert!(e.contains("257 tasks") && e.contains("at most 256"), "{e}");
    let fits = src
        .replace("  .task t256 local\n", "")
        .replace("t256:\n  end\n", "");
    assert!(asm::parse(&fits, "fits.wsm").is_ok());
}
