//! The fuzz targets' entry points, one per parser that reads a stranger's
//! file, shared by the libFuzzer targets (`fuzz_targets/*.rs`, nightly) and
//! the stable replay of the committed corpora (`tests/fuzz_corpora.rs`).
//!
//! Each takes arbitrary bytes and says whether the parser accepted them.
//! An `Err` from the code under test is the expected answer to bad input; a panic, a hang or an allocation beyond
//! libFuzzer's limit is a bug. Where a parser accepts its input, the entry
//! also checks what must then hold (a printed program parses back to the
//! same program, engines agree), so accepted garbage cannot go unnoticed.

#![allow(dead_code)]

use wafer_compiler::{hf, ir, llama2c, reference, tokenizer::Tokenizer};
use wafer_emulator::{Arch, Engine, Inputs, Program, RunConfig, asm, binary};

/// Programs the engine targets run: at most this many PEs, so one input
/// runs in milliseconds (the format's own limit is far larger).
const RUN_MAX_PES: u64 = 4096;
/// Cycle limit for engine runs: a program that loops forever stops here.
const RUN_MAX_CYCLES: u64 = 20_000;
/// Models whose reference forward pass is run: at most this many parameters.
const FORWARD_MAX_PARAMS: u64 = 200_000;

/// A printed program parses back to itself, and so does its binary form.
fn round_trips(p: &Program) {
    let text = asm::print(p);
    let back = asm::parse(&text, "printed.wsm")
        .unwrap_or_else(|e| panic!("the printed program does not parse: {e}\n{text}"));
    // Compared by their encodings: equal bit for bit, NaN payloads too
    // (`==` on a program holding a NaN is false even against itself).
    let bytes = binary::encode(p);
    if binary::encode(&back) != bytes {
        panic!(
            "print → parse changed the program: {}\n{text}",
            first_difference(p, &back)
        );
    }
    let bin = binary::decode(&bytes).expect("an encoded program decodes");
    assert!(
        binary::encode(&bin) == bytes,
        "encode → decode changed the program"
    );
}

/// Where two programs first differ, as Debug text of the two parts.
fn first_difference(a: &Program, b: &Program) -> String {
    let parts = |p: &Program| {
        let mut v = vec![format!("grid {}x{}", p.width, p.height)];
        v.extend(p.codes.iter().map(|c| format!("{c:?}")));
        v.extend(p.placements.iter().map(|x| format!("{x:?}")));
        v.extend(p.routes.iter().map(|x| format!("{x:?}")));
        v.extend(p.data.iter().map(|x| format!("{x:?}")));
        v.extend(p.inputs.iter().map(|x| format!("{x:?}")));
        v.extend(p.outputs.iter().map(|x| format!("{x:?}")));
        v
    };
    let (pa, pb) = (parts(a), parts(b));
    match pa.iter().zip(&pb).find(|(x, y)| x != y) {
        Some((x, y)) => format!("\n  before: {x}\n  after:  {y}"),
        None => format!("{} parts before, {} after", pa.len(), pb.len()),
    }
}

/// `.wsm` assembly text.
pub fn wsm(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(p) = asm::parse(text, "fuzz.wsm") else {
        return false;
    };
    round_trips(&p);
    true
}

/// A `.wafer` binary: as given, and with its payload (the bytes between
/// the 24-byte header and the 4-byte checksum) framed afresh, so that
/// mutations get past the checksum to the decoder.
pub fn wafer(data: &[u8]) -> bool {
    let mut accepted = false;
    if let Ok(p) = binary::decode(data) {
        round_trips(&p);
        accepted = true;
    }
    if data.len() >= 28
        && let Ok(p) = binary::decode(&binary::frame(&data[24..data.len() - 4]))
    {
        round_trips(&p);
        accepted = true;
    }
    accepted
}

/// A compiled-model bundle (`wafer compile -o`).
pub fn bundle(data: &[u8]) -> bool {
    let Ok(stages) = wafer_compiler::bundle::decode(data) else {
        return false;
    };
    for s in &stages {
        round_trips(&s.program);
    }
    true
}

/// Assemble, then run on the reference and event-driven engines with a
/// cycle limit: they must agree on the outcome, cycles, outputs and stats.
pub fn run(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(p) = asm::parse(text, "fuzz.wsm") else {
        return false;
    };
    if p.n_pes() > RUN_MAX_PES {
        return false;
    }
    let arch = Arch::wse3();
    let mut results = Vec::new();
    for engine in [Engine::Reference, Engine::Interp, Engine::Jit] {
        let cfg = RunConfig {
            engine,
            max_cycles: RUN_MAX_CYCLES,
            ..RunConfig::default()
        };
        let r = wafer_emulator::run(&p, &arch, &Inputs::new(), &cfg);
        results.push((engine, r));
    }
    let (_, first) = &results[0];
    for (engine, r) in &results[1..] {
        match (first, r) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.cycles, b.cycles, "{} cycles", engine.name());
                assert_eq!(
                    format!("{:?}", a.outputs),
                    format!("{:?}", b.outputs),
                    "{} outputs",
                    engine.name()
                );
                let mut s = b.stats.clone();
                s.engine = a.stats.engine.clone();
                assert_eq!(a.stats, s, "{} stats", engine.name());
            }
            (Err(a), Err(b)) => {
                // Faults and deadlocks are found at the same cycle; the
                // cycle limit's report may list sleeping cores differently.
                if !matches!(a, wafer_emulator::RunError::CycleLimit { .. }) {
                    assert_eq!(a.to_string(), b.to_string(), "{} error", engine.name());
                }
            }
            (a, b) => panic!(
                "reference and {} disagree: {:?} vs {:?}",
                engine.name(),
                a.as_ref().map(|r| r.cycles).map_err(ToString::to_string),
                b.as_ref().map(|r| r.cycles).map_err(ToString::to_string)
            ),
        }
    }
    true
}

/// A machine file: the first byte picks TOML or JSON. An accepted machine
/// runs a small program within its cycle limit and round-trips.
pub fn machine(data: &[u8]) -> bool {
    let Some((kind, rest)) = data.split_first() else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return false;
    };
    let origin = if kind % 2 == 0 { "m.toml" } else { "m.json" };
    let Ok(arch) = Arch::from_text(text, origin) else {
        return false;
    };
    let json = serde_json::to_string(&arch).expect("an Arch serialises");
    let back = Arch::from_text(&json, "back.json").expect("a serialised Arch reads back");
    assert_eq!(back, arch, "a machine changed through JSON");
    let src = ".grid 2x1
.code k
  .buffer a f32[8]
  .task main local active
main:
  vfadd.f32 tx(c1), a, a
  end
.end
.code r
  .buffer y f32[8]
  .task main local active
main:
  vexp.f32 y, rx(c1)
  end
.end
.place k 0,0 1x1
.place r 1,0 1x1
.route 0,0 1x1 c1 R -> E
.route 1,0 1x1 c1 W -> R
";
    let p = asm::parse(src, "m.wsm").expect("the machine target's program parses");
    let cfg = RunConfig {
        max_cycles: RUN_MAX_CYCLES,
        ..RunConfig::default()
    };
    // Any outcome but a panic or a hang: a machine too small for the
    // program is an error.
    let _ = wafer_emulator::run(&p, &arch, &Inputs::new(), &cfg);
    true
}

/// A llama2.c checkpoint; a small accepted model runs one forward pass.
pub fn llama2c(data: &[u8]) -> bool {
    let Ok((config, weights)) = llama2c::parse(data, "fuzz.bin") else {
        return false;
    };
    forward(&config, &weights);
    true
}

fn forward(config: &wafer_compiler::Config, weights: &wafer_compiler::Weights) {
    if config.n_params() > FORWARD_MAX_PARAMS || config.seq_len > 64 {
        return;
    }
    let Ok(model) = reference::Model::load(weights, config) else {
        return;
    };
    let mut cache = reference::KvCache::new(config);
    for pos in 0..2.min(config.seq_len) {
        let logits = model.forward(0, pos, &mut cache);
        assert_eq!(logits.len(), config.vocab_size);
    }
}

/// A llama2.c tokenizer: `[u16 vocab size][u16 text length][text][tokenizer]`.
/// An accepted tokenizer encodes the text and decodes what it made.
pub fn tokenizer(data: &[u8]) -> bool {
    if data.len() < 4 {
        return false;
    }
    let vocab = u16::from_le_bytes([data[0], data[1]]) as usize % 1024;
    let text_len = u16::from_le_bytes([data[2], data[3]]) as usize;
    let rest = &data[4..];
    let (text, bytes) = rest.split_at(text_len.min(rest.len()));
    let Ok(tok) = Tokenizer::parse(bytes, vocab, "fuzz_tok.bin") else {
        return false;
    };
    let text = String::from_utf8_lossy(text);
    let Ok(ids) = tok.encode(&text) else {
        return false;
    };
    assert!(ids.iter().all(|t| (*t as usize) < vocab), "{ids:?}");
    let _ = tok.text(&ids);
    true
}

/// A Hugging Face model: `[u32 config length][config.json][model.safetensors]`.
/// A small accepted model runs one forward pass.
pub fn hf(data: &[u8]) -> bool {
    if data.len() < 4 {
        return false;
    }
    let n = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
    let rest = &data[4..];
    let (config, tensors) = rest.split_at(n.min(rest.len()));
    let Ok(config) = std::str::from_utf8(config) else {
        return false;
    };
    let Ok((c, w)) = hf::from_bytes(config, tensors, "fuzz") else {
        return false;
    };
    forward(&c, &w);
    true
}

/// The IR's text form: an accepted graph prints and parses back to itself,
/// and the compiler's first passes lower it.
pub fn ir(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(g) = ir::parse(text, "fuzz.ir") else {
        return false;
    };
    let printed = g.to_string();
    let back = ir::parse(&printed, "printed.ir")
        .unwrap_or_else(|e| panic!("the printed graph does not parse: {e}\n{printed}"));
    assert_eq!(back.to_string(), printed);
    let stages = wafer_compiler::stage::fuse(wafer_compiler::stage::lower(&g));
    wafer_compiler::stage::verify(&stages, &g).expect("lowered stages verify");
    true
}

/// Bytes read as little-endian numbers, zero past the end.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    /// A number up to `u32::MAX`, usually small: the first byte says how
    /// many more bytes it has, so small shapes are as likely as huge ones.
    fn u32(&mut self) -> u32 {
        let len = self.u8() % 5;
        (0..len).fold(0u32, |v, i| v | (self.u8() as u32) << (8 * i))
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.u8() as usize % from.len()]
    }
}

/// A kernel spec from bytes (what `wafer kernel` flags and the compiler's
/// placement hand the generators): an accepted spec generates and has a
/// cost, neither panicking, on a 16 × 16 grid.
pub fn kernel(data: &[u8]) -> bool {
    use wafer_emulator::DType;
    use wafer_kernels::reduce::Strategy;
    use wafer_kernels::*;
    let arch = Arch::wse3().with_grid(16, 16).expect("16x16 fits wse3");
    let mut b = Bytes(data);
    let kind = b.u8() % 9;
    let strategy = match b.u8() % 4 {
        0 => Strategy::Chain,
        1 => Strategy::Ring,
        _ => Strategy::Tree { k: b.u32() },
    };
    let dtype = b.pick(&[
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::I32,
        DType::I8,
        DType::Mxfp4,
    ]);
    let seed = b.u8() as u64;
    match kind {
        0 => {
            let (m, n, w, h, halves) = (b.u32(), b.u32(), b.u32(), b.u32(), b.u8() % 2 == 1);
            // Leading tile rows, each a few runs of W's rows (any values:
            // the spec is checked, never trusted).
            let mut lead = Vec::new();
            for _ in 0..b.u8() % 4 {
                let mut runs = Vec::new();
                for _ in 0..b.u8() % 3 {
                    runs.push((b.u32(), b.u32()));
                }
                lead.push(runs);
            }
            let s = gemv::GemvSpec {
                m,
                n,
                dtype,
                w,
                h,
                strategy,
                seed,
                halves,
                lead,
            };
            gemv::generate(&s, &arch)
                .map(|_| gemv::cost(&s, &arch))
                .is_ok()
        }
        1 => {
            let s = collective::CollectiveSpec {
                op: b.pick(&collective::CollectiveOp::ALL).0,
                scope: b.pick(&[
                    collective::Scope::Row,
                    collective::Scope::Col,
                    collective::Scope::Rect,
                ]),
                w: b.u32(),
                h: b.u32(),
                n: b.u32(),
                combine: b.pick(&[collective::Combine::Add, collective::Combine::Max]),
                strategy,
                seed,
            };
            collective::generate(&s, &arch)
                .map(|_| collective::cost(&s, &arch))
                .is_ok()
        }
        2 => {
            let s = vector::VectorSpec {
                w: 1,
                op: b.pick(&vector::VectorOp::ALL).0,
                n: b.u32(),
                h: b.u32(),
                strategy,
                eps: 1e-5,
                seed,
            };
            vector::generate(&s, &arch)
                .map(|_| vector::cost(&s, &arch))
                .is_ok()
        }
        3 => {
            let s = attention::AttentionSpec {
                head_dim: b.u32(),
                group: b.u32(),
                max_context: b.u32(),
                pos: b.u32(),
                kv_heads: b.u32(),
                h: b.u32(),
                strategy,
                seed,
                sinks: false,
                window: None,
                per_query_head: b.pick(&[false, true]),
                pitch: b.u32().max(1),
            };
            attention::generate(&s, &arch)
                .map(|_| attention::cost(&s, &arch))
                .is_ok()
        }
        4 => {
            let s = rope::RopeSpec {
                heads: b.u32(),
                head_dim: b.u32(),
                theta: 10000.0,
                layout: b.pick(&[rope::RopeLayout::Adjacent, rope::RopeLayout::HalfSplit]),
                scaling: None,
                pos: b.u32(),
                h: b.u32(),
            };
            rope::generate(&s, &arch)
                .map(|_| rope::cost(&s, &arch))
                .is_ok()
        }
        5 => {
            let s = embedding::EmbeddingSpec {
                vocab: b.u32(),
                dim: b.u32(),
                dtype,
                w: b.u32(),
                h: b.u32(),
                strategy,
                token: b.u32(),
                seed,
            };
            embedding::generate(&s, &arch)
                .map(|_| embedding::cost(&s, &arch, s.token))
                .is_ok()
        }
        7 => {
            let s = meshgemv::MeshGemvSpec {
                m: b.u32(),
                n: b.u32(),
                w: b.u32(),
                h: b.u32(),
                groups: b.u32(),
                dtype,
                acc: b.pick(&[dtype, DType::F32, DType::I32]),
                streamed: b.u8() % 2 == 1,
                seed,
            };
            meshgemv::generate(&s, &arch)
                .map(|_| meshgemv::cost(&s, &arch))
                .is_ok()
        }
        8 => {
            let s = meshgemm::MeshGemmSpec {
                m: b.u32(),
                k: b.u32(),
                n: b.u32(),
                p: b.u32(),
                dtype,
                acc: b.pick(&[dtype, DType::F32, DType::I32]),
                seed,
            };
            meshgemm::generate(&s, &arch)
                .map(|_| meshgemm::cost(&s, &arch))
                .is_ok()
        }
        _ => {
            let s = argmax::ArgmaxSpec {
                n: b.u32(),
                h: b.u32(),
                strategy,
                seed,
            };
            argmax::generate(&s, &arch)
                .map(|_| argmax::cost(&s, &arch))
                .is_ok()
        }
    }
}

/// A stats JSON (`wafer run --stats`), or a trace when it has
/// `traceEvents`: what `wafer view` opens. An accepted file builds every
/// heatmap.
pub fn stats(data: &[u8]) -> bool {
    use wafer_viewer::{Dataset, Metric, heatmap::Heatmap};
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let d = if text.contains("traceEvents") {
        let Ok(t) = wafer_emulator::trace::Trace::from_chrome_text(text) else {
            return false;
        };
        Dataset::from_trace("fuzz", t, "fuzz")
    } else {
        let Ok(s) = wafer_emulator::stats::Stats::from_json(text) else {
            return false;
        };
        Dataset::from_stats("fuzz", s, None).expect("validated stats make a dataset")
    };
    for m in Metric::ALL {
        let h = Heatmap::build(&d, m, (0, d.stats.cycles));
        assert_eq!(h.values.len() as u64, d.width() as u64 * d.height() as u64);
        let _ = h.pixels();
    }
    true
}
