//! RoPE on the emulator against its reference, the textbook and its cost model.

mod common;

use proptest::prelude::*;
use std::collections::BTreeMap;
use wafer_emulator::{Arch, RunConfig};
use wafer_kernels::rope::{self, RopeLayout, RopeScaling, RopeSpec};

fn run(
    s: &RopeSpec,
    arch: &Arch,
) -> (
    BTreeMap<String, Vec<f32>>,
    Vec<f32>,
    u64,
    wafer_kernels::Fragment,
) {
    let f = rope::generate(s, arch).unwrap_or_else(|e| panic!("{e}"));
    let inputs = f.default_inputs();
    let (outs, r) = f
        .run(arch, &inputs, &RunConfig::default())
        .unwrap_or_else(|e| panic!("{s:?}: {e}"));
    (inputs, outs["y"].clone(), r.cycles, f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(80))]
    #[test]
    fn rope_matches_reference_and_cost_model(
        heads in 1u32..6, half in 1u32..9, pos in 0u32..5000, h in 1u32..6, adjacent in any::<bool>(), wse3 in any::<bool>(),
        yarn in any::<bool>(), parts in 1u32..5,
    ) {
        // gpt-oss's YaRN scales cos and sin as well as the frequencies.
        let scaling = yarn.then_some(RopeScaling::Yarn { factor: 32.0, beta_fast: 32.0, beta_slow: 1.0, original: 4096.0, truncate: false });
        // Whole heads a PE, or parts of heads, evenly or not.
        let h = if parts > 1 { (parts * heads + h - 1).min(heads * half) } else { h.min(heads) };
        let s = RopeSpec { heads, head_dim: 2 * half, theta: 10000.0, layout: if adjacent { RopeLayout::Adjacent } else { RopeLayout::HalfSplit }, scaling, pos, h };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let (inputs, y, measured, f) = run(&s, &arch);
        let want = rope::reference(&s, &inputs, &f.program);
        prop_assert!(y.iter().map(|v| v.to_bits()).eq(want.iter().map(|v| v.to_bits())), "{:?}: {:?} vs {:?}", s, y, want);
        let predicted = rope::cost(&s, &arch);
        let ratio = measured as f64 / predicted as f64;
        prop_assert!((0.85..=1.15).contains(&ratio), "{:?}: measured {} predicted {}", s, measured, predicted);
    }
}

/// Against llama2.c's RoPE (adjacent pairs) computed in f64, and the half
/// split against the rotate-half formulation of HF Llama.
#[test]
fn rope_agrees_with_the_textbook() {
    for (layout, h) in [
        (RopeLayout::Adjacent, 2),
        (RopeLayout::HalfSplit, 2),
        (RopeLayout::Adjacent, 6),
        (RopeLayout::HalfSplit, 6),
    ] {
        let s = RopeSpec {
            heads: 3,
            head_dim: 8,
            theta: 10000.0,
            layout,
            scaling: None,
            pos: 37,
            h,
        };
        let (inputs, y, _, _) = run(&s, &Arch::wse3());
        let x = &inputs["x"];
        for head in 0..3 {
            for i in 0..4 {
                let freq = 1.0 / 10000f64.powf((2 * i) as f64 / 8.0);
                let (c, sn) = ((37.0 * freq).cos(), (37.0 * freq).sin());
                let (a, b) = match layout {
                    RopeLayout::Adjacent => (head * 8 + 2 * i, head * 8 + 2 * i + 1),
                    RopeLayout::HalfSplit => (head * 8 + i, head * 8 + i + 4),
                };
                let (e, o) = (x[a] as f64, x[b] as f64);
                assert!(
                    (y[a] as f64 - (e * c - o * sn)).abs() < 1e-5,
                    "{layout:?} head {head} pair {i}"
                );
                assert!(
                    (y[b] as f64 - (e * sn + o * c)).abs() < 1e-5,
                    "{layout:?} head {head} pair {i}"
                );
            }
        }
    }
}

#[test]
fn listing_of_a_small_rope() {
    let s = RopeSpec {
        heads: 2,
        head_dim: 4,
        theta: 10000.0,
        layout: RopeLayout::HalfSplit,
        scaling: None,
        pos: 3,
        h: 2,
    };
    insta::assert_snapshot!(wafer_emulator::asm::print(
        &rope::generate(&s, &Arch::wse3()).unwrap().program
    ));
}

#[test]
fn llama3_scaling_keeps_short_wavelengths_divides_long_ones_and_blends_between() {
    use wafer_kernels::rope::inv_freq;
    let s = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original: 8192.0,
    };
    let plain = inv_freq(500000.0, 128, None);
    let scaled = inv_freq(500000.0, 128, Some(s));
    let two_pi = 2.0 * std::f32::consts::PI;
    let mut seen = [0; 3];
    for (f, g) in plain.iter().zip(&scaled) {
        let wavelen = two_pi / f;
        if wavelen < 2048.0 {
            assert_eq!(f, g);
            seen[0] += 1;
        } else if wavelen > 8192.0 {
            assert_eq!(*g, f / 8.0);
            seen[1] += 1;
        } else {
            // Hand-derived: smooth = (8192/λ − 1)/3, g = (1 − smooth)·f/8 + smooth·f.
            let smooth = (8192.0 / wavelen - 1.0) / 3.0;
            assert!((g - ((1.0 - smooth) * f / 8.0 + smooth * f)).abs() <= 1e-9);
            assert!(*g < *f && *g > f / 8.0);
            seen[2] += 1;
        }
    }
    assert!(
        seen.iter().all(|n| *n > 0),
        "every band is exercised: {seen:?}"
    );
    let linear = inv_freq(10000.0, 8, Some(RopeScaling::Linear { factor: 4.0 }));
    let base = inv_freq(10000.0, 8, None);
    assert_eq!(linear, base.iter().map(|f| f / 4.0).collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    /// A prefill's RoPE: each position rotated as the one-position kernel
    /// does it, bit for bit, and the cost model exact.
    #[test]
    fn batched_rope_matches_the_one_position_kernel_and_its_cost_model(
        heads in 1u32..5, half in 1u32..6, pos in 0u32..3000, h in 1u32..5, batch in 1u32..6,
        adjacent in any::<bool>(), wse3 in any::<bool>(), yarn in any::<bool>(), parts in 1u32..5,
    ) {
        let scaling = yarn.then_some(RopeScaling::Yarn { factor: 32.0, beta_fast: 32.0, beta_slow: 1.0, original: 4096.0, truncate: false });
        let h = if parts > 1 { (parts * heads + h - 1).min(heads * half) } else { h.min(heads) };
        let s = RopeSpec { heads, head_dim: 2 * half, theta: 10000.0, layout: if adjacent { RopeLayout::Adjacent } else { RopeLayout::HalfSplit }, scaling, pos, h };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let one = rope::generate(&s, &arch).unwrap();
        let f = rope::generate_batch(&s, batch, &arch).map(|f| f.holding_data_of(&one)).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let inputs = f.default_inputs();
        prop_assert_eq!(inputs["pos"].len(), batch as usize);
        let (outs, r) = f
            .run(&arch, &inputs, &RunConfig::default())
            .unwrap_or_else(|e| panic!("{s:?} x{batch}: {e}"));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let n = (heads * 2 * half) as usize;
        for q in 0..batch as usize {
            let each = BTreeMap::from([
                ("x".to_string(), inputs["x"][q * n..(q + 1) * n].to_vec()),
                ("pos".to_string(), vec![inputs["pos"][q]]),
            ]);
            let (y, _) = one.run(&arch, &each, &RunConfig::default()).unwrap();
            prop_assert_eq!(bits(&y["y"]), bits(&outs["y"][q * n..(q + 1) * n]), "{:?} position {}", s, q);
        }
        prop_assert_eq!(bits(&outs["y"]), bits(&rope::reference_batch(&s, &inputs, &f.program)));
        prop_assert_eq!(r.cycles, rope::cost_batch(&s, batch, &arch), "{:?} x{}", s, batch);
    }
}

/// The 8B's RoPE (40 heads of 128) on 80, 160 and 278 PEs, half, a
/// quarter and an uneven part of a head each: the same bits as on 40,
/// whole heads each, from the same inputs, and faster at each step (each
/// PE computes a part of the sines and cosines and rotates a part of the
/// pairs); all as their cost models say.
#[test]
fn parts_of_a_head_a_pe_are_whole_heads_bit_for_bit_and_faster() {
    let arch = Arch::wse3();
    for layout in [RopeLayout::Adjacent, RopeLayout::HalfSplit] {
        let spec = |h| RopeSpec {
            heads: 40,
            head_dim: 128,
            theta: 500000.0,
            layout,
            scaling: None,
            pos: 1000,
            h,
        };
        let whole = spec(40);
        let f = rope::generate(&whole, &arch).unwrap();
        let inputs = f.default_inputs();
        let (a, ra) = f.run(&arch, &inputs, &RunConfig::default()).unwrap();
        assert_eq!(ra.cycles, rope::cost(&whole, &arch));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut before = ra.cycles;
        for h in [80, 160] {
            let parts = spec(h);
            let g = rope::generate(&parts, &arch).unwrap();
            let (b, rb) = g.run(&arch, &inputs, &RunConfig::default()).unwrap();
            assert_eq!(bits(&a["y"]), bits(&b["y"]), "{layout:?} on {h}");
            assert_eq!(rb.cycles, rope::cost(&parts, &arch), "{layout:?} on {h}");
            assert!(
                rb.cycles * 10 < before * 6,
                "{layout:?} on {h}: {} vs {before}",
                rb.cycles,
            );
            before = rb.cycles;
        }
        // On 278 PEs no head splits evenly (each on 6 or 7 PEs, each PE
        // 9 or 10 of its 64 pairs): the same bits, as its cost model
        // says, and faster than on 160.
        let uneven = spec(278);
        let g = rope::generate(&uneven, &arch).unwrap();
        let (b, rb) = g.run(&arch, &inputs, &RunConfig::default()).unwrap();
        assert_eq!(bits(&a["y"]), bits(&b["y"]), "{layout:?} on 278");
        assert_eq!(rb.cycles, rope::cost(&uneven, &arch), "{layout:?} on 278");
        assert!(rb.cycles < before, "{layout:?}: {} vs {before}", rb.cycles);
    }
}

/// A column taller than one pair a PE is refused, naming how tall it may be.
#[test]
fn a_column_taller_than_the_pairs_is_refused() {
    let s = RopeSpec {
        heads: 4,
        head_dim: 8,
        theta: 10000.0,
        layout: RopeLayout::HalfSplit,
        scaling: None,
        pos: 3,
        h: 17,
    };
    let e = rope::generate(&s, &Arch::wse3()).unwrap_err().to_string();
    assert!(e.contains("use 1..16 PEs"), "{e}");
    let fits = RopeSpec { h: 16, ..s };
    assert!(rope::generate(&fits, &Arch::wse3()).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]
    /// The input arriving late, in bursts (`RunConfig::arrivals`): the
    /// run ends, and each PE's output leaves, when [`rope::fed`] says,
    /// off by exactly what the cost model is off unhindered (nothing, in
    /// 2,000 drawn cases).
    #[test]
    fn rope_fed_late_ends_as_its_cost_model_says(
        heads in 1u32..6, half in 1u32..9, pos in 0u32..5000, h in 1u32..6, adjacent in any::<bool>(), wse3 in any::<bool>(),
        yarn in any::<bool>(), parts in 1u32..5,
        delays in prop::collection::vec((0u64..60, any::<bool>()), 1..200),
    ) {
        let scaling = yarn.then_some(RopeScaling::Yarn { factor: 32.0, beta_fast: 32.0, beta_slow: 1.0, original: 4096.0, truncate: false });
        let h = if parts > 1 { (parts * heads + h - 1).min(heads * half) } else { h.min(heads) };
        let s = RopeSpec { heads, head_dim: 2 * half, theta: 10000.0, layout: if adjacent { RopeLayout::Adjacent } else { RopeLayout::HalfSplit }, scaling, pos, h };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let f = rope::generate(&s, &arch).unwrap();
        let (_, unhindered) = f.run(&arch, &f.default_inputs(), &RunConfig::default()).unwrap();
        let off = unhindered.cycles as i64 - rope::cost(&s, &arch) as i64;
        let (run, pushed) = common::run_late(&f, &arch, &delays);
        let (end, leaves) = rope::fed(&s, &arch, &pushed);
        prop_assert_eq!(run.cycles as i64 - end as i64, off, "{:?}", s);
        prop_assert_eq!(leaves.len(), f.program.outputs.len());
        for (name, model) in &leaves {
            let left = *run.output_times[name].last().unwrap();
            prop_assert_eq!(left as i64 - *model as i64, off, "{:?}: {}", s, name);
        }
    }
}
