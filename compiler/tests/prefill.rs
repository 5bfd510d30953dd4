//! Prefill on the emulated wafer: the prompt's positions at once (the
//! tiled GEMVs batched), against the CPU reference and the decode steps
//! it stands for, and against the cost models' prediction.

mod common;
use common::models;
use wafer_compiler::decode::Decoder;
use wafer_compiler::kernel::Kernel;
use wafer_compiler::place::{GemvChoice, Options, PlacementKind};
use wafer_compiler::{compile, llama2c, prefill, reference, sram};
use wafer_emulator::{Arch, DType};
use wafer_kernels::reduce::Strategy;

fn options(kind: PlacementKind, dtype: DType, gemv: GemvChoice) -> Options {
    Options {
        arch: Arch::wse3().with_grid(96, 64).unwrap(),
        dtype,
        placement: Some(kind),
        max_context: 48,
        reduce: Strategy::Tree { k: 2 },
        gemv,
        region: wafer_compiler::region::Region::Whole,
        wafers: wafer_compiler::system::Wafers::Count(1),
        tiles: None,
    }
}

const PROMPT: [u32; 9] = [1, 403, 407, 261, 378, 285, 263, 400, 270];

/// After a prefill of BOS and the prompt, the tokens are the reference's
/// (f32), on both placements; the first token's logits are the CPU
/// forward pass's at the prompt's last position; the GEMVs ran in
/// batches; and the cost models predicted the prefill's cycles exactly.
#[test]
fn a_prefilled_prompt_decodes_as_the_reference_and_as_predicted() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let model = reference::Model::load(&w, &c).unwrap();
    let want = reference::generate(&model, &PROMPT[1..], 20);
    for kind in [PlacementKind::Pipeline, PlacementKind::Mesh] {
        let compiled = compile(&c, Some(&w), &options(kind, DType::F32, GemvChoice::Auto)).unwrap();
        let mut d = Decoder::new(&compiled);
        let mut seen = None;
        let got = prefill::generate(&mut d, &PROMPT[1..], 20, None, |p| {
            if let prefill::Progress::Prefilled { first, prefill } = p {
                seen = Some((first, prefill.clone()))
            }
        })
        .unwrap();
        assert_eq!(got, want, "{kind:?}");
        let (first, pf) = seen.unwrap();
        assert_eq!(first, want[PROMPT.len() - 1]);
        assert_eq!(pf.positions, PROMPT.len() as u32);
        // The reference's logits at the last prompt position.
        let mut kv = reference::KvCache::new(&c);
        let mut logits = Vec::new();
        for (pos, t) in PROMPT.iter().enumerate() {
            logits = model.forward(*t, pos, &mut kv);
        }
        let diff = logits
            .iter()
            .zip(&pf.logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-4, "{kind:?}: logits differ by {diff}");
        let plan = &pf.plan;
        assert!(
            plan.stages.iter().any(|s| s.batch == pf.positions),
            "{kind:?}: no GEMV took the whole prompt at once: {plan:?}"
        );
        // The head runs once, the KV projections for every position.
        let head = compiled
            .stages
            .iter()
            .position(|s| s.outputs.is_empty())
            .unwrap();
        assert_eq!(pf.stage_runs[head], 1);
        assert!(!plan.stages[head].every);
        // Exact but for attention's cost model, which may be up to 2
        // cycles under a run (kernels/tests/attention.rs says when).
        let per_stage = prefill::stage_predictions(&compiled, plan, 0, &pf.ran, &pf.tokens);
        let mut slack = 0;
        for (i, s) in compiled.stages.iter().enumerate() {
            let (got, want) = (pf.stage_cycles[i], per_stage[i]);
            let what = format!("{kind:?}: stage {} batch {}", s.name, plan.stages[i].batch);
            match compiled.sites[i].kernel {
                Kernel::Attention(_) => {
                    assert!(
                        (want..=want + 2 * pf.stage_runs[i] as u64).contains(&got),
                        "{what}: {got} vs {want}"
                    );
                    slack += got - want;
                }
                _ => assert_eq!(got, want, "{what}"),
            }
        }
        assert_eq!(
            pf.cycles,
            prefill::predicted(&compiled, plan, 0, &pf.ran, &pf.tokens) + slack,
            "{kind:?}"
        );
    }
}

/// A prefill of one position is the decode step at position 0: the same
/// logits bit for bit and the same cycles. A prefill's KV cache is the
/// decode steps' too: the step after it gives the logits the decode
/// steps give there, bit for bit.
#[test]
fn a_prefill_stands_for_the_decode_steps() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    for (kind, dtype, gemv) in [
        (PlacementKind::Pipeline, DType::F32, GemvChoice::Tiled),
        (PlacementKind::Pipeline, DType::BF16, GemvChoice::Tiled),
        (PlacementKind::Mesh, DType::BF16, GemvChoice::Mesh),
    ] {
        let what = format!("{kind:?} {dtype} {gemv:?}");
        let compiled = compile(&c, Some(&w), &options(kind, dtype, gemv)).unwrap();
        let meshgemvs = compiled
            .sites
            .iter()
            .filter(|s| matches!(s.kernel, Kernel::MeshGemv(_)))
            .count();
        assert_eq!(meshgemvs > 0, gemv == GemvChoice::Mesh, "{what}");
        let mut by_step = Decoder::new(&compiled);
        let step = by_step.step(PROMPT[0]).unwrap();
        let mut by_prefill = Decoder::new(&compiled);
        let pf = by_prefill.prefill(&PROMPT[..1]).unwrap();
        assert_eq!(pf.logits, step.logits, "{what}");
        assert_eq!(pf.cycles, step.cycles, "{what}");
        let mut steps = Decoder::new(&compiled);
        let mut last = Vec::new();
        for t in &PROMPT {
            last = steps.step(*t).unwrap().logits;
        }
        let mut prefilled = Decoder::new(&compiled);
        let pf = prefilled.prefill(&PROMPT).unwrap();
        // Batched kernels add each position's terms in the one-position
        // order: the same logits, bit for bit.
        assert_eq!(pf.logits, last, "{what}");
        assert!(pf.cycles < PROMPT.len() as u64 * step.cycles, "{what}");
        let after_steps = steps.step(42).unwrap();
        let after_prefill = prefilled.step(42).unwrap();
        assert_eq!(after_prefill.logits, after_steps.logits, "{what}");
        assert_eq!(after_prefill.cycles, after_steps.cycles, "{what}");
        // Every projection, norm, RoPE and element-wise kernel took the
        // prompt at once.
        let plan = &pf.plan;
        for (i, s) in compiled.stages.iter().enumerate() {
            let batched = match &compiled.sites[i].kernel {
                Kernel::Gemv(_) | Kernel::MeshGemv(_) | Kernel::Rope(_) => true,
                Kernel::Vector(v) => {
                    use wafer_kernels::vector::VectorOp;
                    matches!(
                        v.op,
                        VectorOp::Swiglu | VectorOp::RmsNorm | VectorOp::AddRmsNorm
                    )
                }
                _ => false,
            };
            if batched && plan.stages[i].every {
                assert_eq!(plan.stages[i].batch, pf.positions, "{what}: {}", s.name);
            }
        }
        // The prediction: exact but for attention's (2 cycles a run) and a
        // batched MeshGEMV's (4) held streams.
        let predicted = prefill::predicted(&compiled, plan, 0, &pf.ran, &pf.tokens);
        let slack: u64 = compiled
            .sites
            .iter()
            .zip(&pf.stage_runs)
            .map(|(s, r)| match s.kernel {
                Kernel::Attention(_) => 2 * *r as u64,
                Kernel::MeshGemv(_) => 4 * *r as u64,
                _ => 0,
            })
            .sum();
        assert!(
            (predicted..=predicted + slack).contains(&pf.cycles),
            "{what}: emulated {} predicted {predicted}",
            pf.cycles
        );
    }
}

/// Timing-only, a prefill takes the cycles the functional one took.
#[test]
fn a_timing_only_prefill_takes_the_functional_cycles() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let compiled = compile(
        &c,
        Some(&w),
        &options(PlacementKind::Mesh, DType::BF16, GemvChoice::Auto),
    )
    .unwrap();
    let functional = Decoder::new(&compiled).prefill(&PROMPT).unwrap();
    let mut d = Decoder::new(&compiled);
    d.timing_only(true);
    let timing = d.prefill(&PROMPT).unwrap();
    assert_eq!(timing.cycles, functional.cycles);
    assert_eq!(timing.stage_cycles, functional.stage_cycles);
    // Without values or weights no token is known; the generation goes on.
    let mut d = Decoder::new(&compiled);
    d.timing_only(true);
    let tokens = prefill::generate(&mut d, &PROMPT[1..], 12, None, |_| {}).unwrap();
    assert_eq!(tokens.len(), 12);
    assert_eq!(d.pos, 12);
}

/// Every PE's activation bytes in the plan are what `held_at` counts as
/// its activations, on both placements: the SRAM a batch may take while
/// its stage runs. They are the most one stage holds there, counted from
/// each stage's own buffers: the stages on a PE run one after another, so
/// their activations are laid over each other, not summed (mesh placement
/// puts several stages with activations on one PE, so a sum would differ).
#[test]
fn activation_bytes_per_pe_are_the_held_activations() {
    let (c, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    for kind in [PlacementKind::Pipeline, PlacementKind::Mesh] {
        let compiled =
            compile(&c, Some(&w), &options(kind, DType::BF16, GemvChoice::Auto)).unwrap();
        let arch = &compiled.options.arch;
        let all = sram::per_pe_bytes(&compiled.sites, &compiled.fragments, arch);
        let act = sram::per_pe_activations(&compiled.sites, &compiled.fragments, arch);
        let (mut some, mut laid_over) = (0, 0);
        for y in (0..arch.grid_rows).step_by(5) {
            for x in (0..arch.grid_cols).step_by(3) {
                let at = (y * arch.grid_cols + x) as usize;
                let held = sram::held_at(
                    &compiled.sites,
                    &compiled.fragments,
                    wafer_emulator::Pe::new(x, y),
                );
                assert_eq!(act[at] as u64, held.activations, "{kind:?} ({x}, {y})");
                assert_eq!(all[at] as u64, held.state + held.activations + held.code);
                some += u32::from(held.activations > 0);
                // Each stage's activations at this PE, from its program.
                let pe = wafer_emulator::Pe::new(x, y);
                let each: Vec<u64> = (compiled.sites.iter().zip(&compiled.fragments))
                    .filter(|(site, _)| site.contains(pe))
                    .map(|(site, f)| {
                        let local = wafer_emulator::Pe::new(x - site.origin.x, y - site.origin.y);
                        let p = &f.program;
                        (p.placements.iter().filter(|pl| pl.pes.contains(local)))
                            .flat_map(|pl| &p.codes[pl.code.0 as usize].buffers)
                            .filter(|b| !f.is_state(&b.name, local))
                            .map(|b| b.bytes() as u64)
                            .sum()
                    })
                    .collect();
                assert_eq!(held.activations, each.iter().copied().max().unwrap_or(0));
                laid_over += u32::from(each.iter().filter(|&&b| b > 0).count() > 1);
            }
        }
        assert!(some > 10, "{kind:?}");
        if kind == PlacementKind::Mesh {
            assert!(
                laid_over > 10,
                "{laid_over} PEs with two stages' activations"
            );
        }
    }
}
