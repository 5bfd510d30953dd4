//! The llama2.c front end and the CPU reference model on the shared
//! checkpoints (`../shared/models`, beside the repository).

use std::path::PathBuf;
use wafer_compiler::tokenizer::Tokenizer;
use wafer_compiler::{llama2c, reference};

/// The shared checkpoints; fails loudly (not skipped) when they are absent.
fn models() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/models");
    assert!(
        dir.join("stories260K.bin").exists(),
        "{} is missing: these tests need the shared checkpoints beside the repository (../shared/models)",
        dir.display()
    );
    dir
}

#[test]
fn both_checkpoints_load_with_the_documented_shapes() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    assert_eq!(
        (
            c.dim,
            c.hidden_dim,
            c.n_layers,
            c.n_heads,
            c.n_kv_heads,
            c.vocab_size,
            c.seq_len
        ),
        (64, 172, 5, 8, 4, 512, 512)
    );
    assert_eq!(
        w.tensors["layers.4.attention.wk.weight"].shape,
        vec![32, 64]
    );
    let (c, _) = llama2c::load(&models().join("aidreams260K.bin")).unwrap();
    assert_eq!(
        (
            c.dim,
            c.hidden_dim,
            c.n_layers,
            c.n_heads,
            c.n_kv_heads,
            c.vocab_size,
            c.seq_len
        ),
        (64, 172, 4, 4, 4, 512, 128)
    );
}

#[test]
fn aidreams_decodes_to_readable_text() {
    let (c, w) = llama2c::load(&models().join("aidreams260K.bin")).unwrap();
    let model = reference::Model::load(&w, &c).unwrap();
    let tok = Tokenizer::load(&models().join("aidreams_tok512.bin"), c.vocab_size).unwrap();
    let tokens = reference::generate(&model, &[], 128);
    let text = tok.text(&tokens);
    // A broken forward pass (RoPE, attention, norm) does not write English:
    // require mostly letters and spaces and a vocabulary of real words.
    let letters = text
        .chars()
        .filter(|ch| ch.is_ascii_alphabetic() || " ,.'\n".contains(*ch))
        .count();
    assert!(letters * 10 >= text.chars().count() * 9, "{text}");
    let words: std::collections::BTreeSet<&str> = text.split_whitespace().collect();
    assert!(words.len() >= 15 && words.contains("a"), "{text}");
    assert_eq!(
        tokens,
        reference::generate(&model, &[], 128),
        "greedy decoding is deterministic"
    );
}

#[test]
fn a_prompt_is_forced_then_decoding_continues() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let model = reference::Model::load(&w, &c).unwrap();
    let free = reference::generate(&model, &[], 40);
    let prompt = [free[0], free[1], 300];
    let forced = reference::generate(&model, &prompt, 40);
    assert_eq!(&forced[..3], &prompt);
    assert!(forced.iter().all(|t| (*t as usize) < c.vocab_size));
}

#[test]
fn malformed_checkpoints_name_the_file_and_the_tensor() {
    let bytes = std::fs::read(models().join("stories260K.bin")).unwrap();
    let e = llama2c::parse(&bytes[..300_000], "cut.bin")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("cut.bin: truncated in tensor `layers.") && e.contains("shape"),
        "{e}"
    );
    let mut bad = bytes.clone();
    bad[12..16].copy_from_slice(&7i32.to_le_bytes()); // 7 heads do not divide dim 64
    let e = llama2c::parse(&bad, "bad.bin").unwrap_err().to_string();
    assert!(e.contains("bad.bin") && e.contains("n_heads 7"), "{e}");
    let e = llama2c::parse(b"\x01\x00", "tiny.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("tiny.bin") && e.contains("28-byte"), "{e}");
    let mut extra = bytes.clone();
    extra.extend_from_slice(&[0; 8]);
    assert!(
        llama2c::parse(&extra, "x.bin")
            .unwrap_err()
            .to_string()
            .contains("left over")
    );
    let tok = std::fs::read(models().join("aidreams_tok512.bin")).unwrap();
    let e = Tokenizer::parse(&tok, 600, "tok.bin")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tok.bin") && e.contains("truncated at token 512"),
        "{e}"
    );
}
