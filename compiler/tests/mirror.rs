//! A stage reflected east to west or north to south ([`Flip`]) computes
//! what it did, in the same cycles, its ports on the reflected edges: so
//! placement may turn any stage to face its producer without changing its
//! cost model. Every stage of a compiled checkpoint (both placements, the
//! checkpoint's weights loaded) is run against its three mirror images.

mod common;
use common::models;
use wafer_compiler::place::{PlacementKind, Tiles};
use wafer_compiler::{compile, llama2c};
use wafer_emulator::{Arch, RunConfig};
use wafer_kernels::Flip;

#[test]
fn every_stage_mirrored_computes_the_same_in_the_same_cycles() {
    let (cfg, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let arch = Arch::wse3().with_grid(48, 48).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for (kind, tiles) in [
        (PlacementKind::Pipeline, None),
        (PlacementKind::Mesh, Some(Tiles::ONE)),
    ] {
        let o = common::f32_options(arch.clone(), kind, tiles);
        let c = compile(&cfg, Some(&w), &o).unwrap();
        for (i, f) in c.fragments.iter().enumerate() {
            let name = &c.stages[i].name;
            let inputs = f.default_inputs();
            let (want, ran) = f.run(&arch, &inputs, &RunConfig::default()).unwrap();
            assert!(!want.is_empty(), "`{name}` has outputs");
            for flip in [
                Flip { x: true, y: false },
                Flip { x: false, y: true },
                Flip { x: true, y: true },
            ] {
                let g = f.clone().mirrored(flip);
                assert_ne!(g.program, f.program, "`{name}` {flip:?} moved nothing");
                let (got, run) = g.run(&arch, &inputs, &RunConfig::default()).unwrap();
                assert_eq!(got, want, "`{name}` {flip:?}: outputs");
                assert_eq!(run.cycles, ran.cycles, "`{name}` {flip:?}: cycles");
            }
            let debug = format!("{:?}", c.sites[i].kernel);
            kinds.insert(debug[..debug.find('(').unwrap_or(debug.len())].to_string());
        }
    }
    // Every kind of kernel a Llama step has was among them.
    for k in ["Embed", "Vector", "Gemv", "Rope", "Attention", "Argmax"] {
        assert!(kinds.contains(k), "no {k} among {kinds:?}");
    }
}

/// Mesh placement on 96 × 64 PEs puts stories260K's final norm in the
/// south half, so the classifier and argmax run as their north-to-south
/// mirror images (the listing's snapshot pins the shorter hand-off): the
/// decode on the wafer still gives the reference's tokens.
#[test]
fn a_flipped_classifier_decodes_as_the_reference() {
    use wafer_compiler::decode::{Decoder, generate};
    use wafer_compiler::reference;
    let (cfg, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let arch = Arch::wse3().with_grid(96, 64).unwrap();
    let o = common::f32_options(arch, PlacementKind::Mesh, None);
    let c = compile(&cfg, Some(&w), &o).unwrap();
    let at = |name: &str| c.stages.iter().position(|s| s.name == name).unwrap();
    let (cls, arg) = (at("classifier"), at("argmax"));
    for i in [cls, arg] {
        assert_eq!(
            c.sites[i].flip,
            Flip { x: false, y: true },
            "{}",
            c.stages[i].name
        );
    }
    let norm = cls - 1;
    let (_, h) = c.sites[norm].kernel.size();
    assert!(
        2 * c.sites[norm].origin.y + h > 64,
        "the final norm sits in the south half"
    );
    let mut d = Decoder::new(&c);
    let got = generate(&mut d, &[], 24, None, |_, _| {}).unwrap();
    let model = reference::Model::load(&w, &cfg).unwrap();
    assert_eq!(got, reference::generate(&model, &[], 24));
}

/// Every stage of a compile turned to its mirror image (its fragment and
/// its site's flip together): a prefill of a prompt, whose batched
/// programs are generated afresh and take the stages' (reflected)
/// weights, still gives the reference's tokens.
#[test]
fn a_prefill_of_mirrored_stages_decodes_as_the_reference() {
    use wafer_compiler::decode::Decoder;
    use wafer_compiler::{prefill, reference};
    let (cfg, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let arch = Arch::wse3().with_grid(96, 64).unwrap();
    let mut o = common::f32_options(arch, PlacementKind::Mesh, None);
    o.max_context = 48;
    let mut c = compile(&cfg, Some(&w), &o).unwrap();
    let flip = Flip { x: true, y: true };
    for (site, f) in c.sites.iter_mut().zip(c.fragments.iter_mut()) {
        // Undo what placement chose, then reflect both ways.
        let undo = f.clone().mirrored(site.flip);
        *f = undo.mirrored(flip);
        site.flip = flip;
    }
    let prompt = [403, 407, 261, 378, 285, 263, 400, 270];
    let model = reference::Model::load(&w, &cfg).unwrap();
    let want = reference::generate(&model, &prompt, 20);
    let mut d = Decoder::new(&c);
    let mut batched = false;
    let got = prefill::generate(&mut d, &prompt, 20, None, |p| {
        if let prefill::Progress::Prefilled { prefill, .. } = p {
            batched = prefill.plan.stages.iter().any(|s| s.batch > 1);
        }
    })
    .unwrap();
    assert!(batched, "some stage ran the prompt in a batch");
    assert_eq!(got, want);
}
