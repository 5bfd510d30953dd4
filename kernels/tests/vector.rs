//! Vector kernels on the emulator against their reference and cost model.

mod common;

use proptest::prelude::*;
use wafer_emulator::{Arch, RunConfig};
use wafer_kernels::line_reduce::{LineReduce, Target};
use wafer_kernels::reduce::Strategy as Reduce;
use wafer_kernels::vector::{self, VectorOp, VectorSpec};

fn check(s: &VectorSpec, arch: &Arch) -> (u64, u64) {
    let f = vector::generate(s, arch).unwrap_or_else(|e| panic!("{e}"));
    let inputs = f.default_inputs();
    let (outs, run) = f
        .run(arch, &inputs, &RunConfig::default())
        .unwrap_or_else(|e| panic!("{s:?}: {e}"));
    let want = vector::reference(s, &inputs, &f.program);
    assert_eq!(outs["y"].len(), want.len());
    for (i, (got, want)) in outs["y"].iter().zip(&want).enumerate() {
        assert!(
            got.to_bits() == want.to_bits(),
            "{s:?}: element {i}: emulator {got}, reference {want}"
        );
    }
    // One PE wide, when each output stream's last wavelet leaves, as
    // the cost model says.
    let (end, leaves) = vector::fed(s, arch, &Default::default());
    assert_eq!(end, vector::cost(s, arch));
    if s.w == 1 {
        for (name, t) in run.output_times.iter().filter(|(_, t)| !t.is_empty()) {
            assert_eq!(t.last(), leaves.get(name), "{s:?}: stream {name}");
        }
    }
    (run.cycles, vector::cost(s, arch))
}

fn op() -> impl Strategy<Value = VectorOp> {
    prop::sample::select(VectorOp::ALL.iter().map(|(o, _)| *o).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]
    #[test]
    fn vector_kernels_match_reference_and_cost_model(
        op in op(), n in 1u32..80, h in 1u32..9, k in 0u32..4, seed in any::<u64>(), wse3 in any::<bool>(),
    ) {
        let s = VectorSpec { w: 1, op, n, h: h.min(n), strategy: if k == 0 { Reduce::Chain } else { Reduce::Tree { k } }, eps: 1e-5, seed };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let (measured, predicted) = check(&s, &arch);
        prop_assert_eq!(measured, predicted, "{:?}", s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(80))]
    /// SiLU, GELU and SwiGLU on several columns: every row's streams share
    /// its west PE's port and its results its east PE's link, and the cost
    /// model (the port's turns, the datapath's, the row's drain) is exact.
    #[test]
    fn wide_vector_kernels_match_reference_and_cost_model(
        op in prop::sample::select(vec![VectorOp::Silu, VectorOp::Gelu, VectorOp::Swiglu]),
        n in 1u32..120, h in 1u32..5, w in 1u32..5, seed in any::<u64>(), wse3 in any::<bool>(),
    ) {
        let h = h.min(n);
        let s = VectorSpec { w: w.min(n / h), op, n, h, strategy: Reduce::Chain, eps: 1e-5, seed };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let (measured, predicted) = check(&s, &arch);
        prop_assert_eq!(measured, predicted, "{:?}", s);
    }
}

/// Norms and add run on one column only, and a row cannot have more
/// columns than elements; the errors say so.
#[test]
fn a_vector_kernel_wider_than_it_may_be_is_refused() {
    let arch = Arch::wse3();
    let spec = |op, w| VectorSpec {
        w,
        op,
        n: 12,
        h: 3,
        strategy: Reduce::Chain,
        eps: 1e-5,
        seed: 1,
    };
    let e = vector::generate(&spec(VectorOp::RmsNorm, 2), &arch)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rmsnorm runs on one column"), "{e}");
    let e = vector::generate(&spec(VectorOp::Swiglu, 5), &arch)
        .unwrap_err()
        .to_string();
    assert!(e.contains("runs on 1..=4 columns"), "{e}");
    assert!(vector::generate(&spec(VectorOp::Swiglu, 4), &arch).is_ok());
    // A width read from a file may be anything: refused, not overflowed.
    assert!(vector::generate(&spec(VectorOp::Swiglu, u32::MAX), &arch).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    /// Columns long enough that a norm's statistic meets in the middle
    /// (both halves reduce toward the middle PE, which broadcasts both
    /// ways): the sums in that order, and the model's cycles, exactly.
    #[test]
    fn long_columns_meet_in_the_middle_and_match_reference_and_cost_model(
        op in op(), h in 17u32..64, extra in 0u32..40, k in 0u32..3, seed in any::<u64>(), wse3 in any::<bool>(),
    ) {
        let strategy = if k == 0 { Reduce::Chain } else { Reduce::Tree { k } };
        prop_assert!(LineReduce::meets_in_the_middle(h, 1, strategy, Target::All));
        let s = VectorSpec { w: 1, op, n: h + extra, h, strategy, eps: 1e-5, seed };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let (measured, predicted) = check(&s, &arch);
        prop_assert_eq!(measured, predicted, "{:?}", s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// A prefill's norms on such columns: a batch's statistics take the
    /// one statistic's plan, so every position's result is still the
    /// one-position kernel's, bit for bit. The model is exact but where a
    /// column's segments are uneven enough that the far half's first
    /// leader, which starts early, sends its level-1 stream into a later
    /// leader's ramp while that one still gathers its own group's: the
    /// model does not arbitrate a ramp but the middle's (at most 6 cycles
    /// over 768 shapes swept, batches 1 to 64; docs/decode-step.md,
    /// "Allreduces meet in the middle"). The same arbitration can also
    /// favour the emulated run by a cycle: a sweep of 9,600 shapes
    /// (2026-12-05: h 17–47, 0–27 more elements, chain and trees of 1
    /// and 2, batches 2–8, both ops, both machines) measured 1 cycle
    /// under to 5 over, the two shapes under both an AddRmsNorm batch of
    /// 6 with a tree of 2 on `wse3` (h = 17 + 13, 19 + 15, 25 + 21).
    #[test]
    fn long_batched_norms_match_the_one_position_kernel_and_their_cost_model(
        add in any::<bool>(), h in 17u32..48, extra in 0u32..30, k in 0u32..3, batch in 2u32..9, seed in any::<u64>(), wse3 in any::<bool>(),
    ) {
        let op = if add { VectorOp::AddRmsNorm } else { VectorOp::RmsNorm };
        let n = h + extra;
        let s = VectorSpec { w: 1, op, n, h, strategy: if k == 0 { Reduce::Chain } else { Reduce::Tree { k } }, eps: 1e-5, seed };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let one = vector::generate(&s, &arch).unwrap();
        let f = vector::generate_batch(&s, batch, &arch).map(|f| f.holding_data_of(&one)).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let inputs = f.default_inputs();
        let (outs, run) = f.run(&arch, &inputs, &RunConfig::default()).unwrap_or_else(|e| panic!("{s:?} x{batch}: {e}"));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for q in 0..batch as usize {
            let at: std::collections::BTreeMap<String, Vec<f32>> = inputs
                .iter()
                .map(|(k, v)| (k.clone(), v[q * n as usize..(q + 1) * n as usize].to_vec()))
                .collect();
            let (y, _) = one.run(&arch, &at, &RunConfig::default()).unwrap();
            let per = y["y"].len();
            prop_assert_eq!(bits(&y["y"]), bits(&outs["y"][q * per..(q + 1) * per]), "{:?} x{} position {}", s, batch, q);
        }
        let predicted = vector::cost_batch(&s, batch, &arch);
        prop_assert!((-1..=8).contains(&(run.cycles as i64 - predicted as i64)), "{:?} x{}: measured {} predicted {}", s, batch, run.cycles, predicted);
    }
}

/// The kernels compute what the textbook says, to f32 rounding (the bit-exact
/// reference above could share a mistake with the generator; this cannot).
#[test]
fn vector_kernels_agree_with_the_textbook() {
    let arch = Arch::wse3();
    for (op, _) in VectorOp::ALL {
        let s = VectorSpec {
            w: 1,
            op,
            n: 37,
            h: 4,
            strategy: Reduce::Tree { k: 2 },
            eps: 1e-5,
            seed: 9,
        };
        let f = vector::generate(&s, &arch).unwrap();
        let inputs = f.default_inputs();
        let (outs, _) = f.run(&arch, &inputs, &RunConfig::default()).unwrap();
        let a: Vec<f64> = inputs["a"].iter().map(|v| *v as f64).collect();
        let b: Vec<f64> = inputs
            .get("b")
            .map(|b| b.iter().map(|v| *v as f64).collect())
            .unwrap_or_default();
        let g: Vec<f64> = vector::weights(&s, &f.program, "g")
            .iter()
            .map(|v| *v as f64)
            .collect();
        let bias: Vec<f64> = vector::weights(&s, &f.program, "bias")
            .iter()
            .map(|v| *v as f64)
            .collect();
        let n = a.len() as f64;
        let silu = |x: f64| x / (1.0 + (-x).exp());
        let want: Vec<f64> = match op {
            VectorOp::Add => a.iter().zip(&b).map(|(x, y)| x + y).collect(),
            VectorOp::Mul => a.iter().zip(&b).map(|(x, y)| x * y).collect(),
            VectorOp::Silu => a.iter().map(|x| silu(*x)).collect(),
            VectorOp::Swiglu => a.iter().zip(&b).map(|(x, y)| silu(*x) * y).collect(),
            VectorOp::Gelu => a
                .iter()
                .map(|x| {
                    0.5 * x
                        * (1.0
                            + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x))
                                .tanh())
                })
                .collect(),
            VectorOp::RmsNorm => {
                let inv = 1.0 / (a.iter().map(|x| x * x).sum::<f64>() / n + 1e-5).sqrt();
                a.iter().zip(&g).map(|(x, g)| x * inv * g).collect()
            }
            VectorOp::AddRmsNorm => {
                let sum: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
                let inv = 1.0 / (sum.iter().map(|x| x * x).sum::<f64>() / n + 1e-5).sqrt();
                let mut y: Vec<f64> = sum.iter().zip(&g).map(|(x, g)| x * inv * g).collect();
                y.extend(sum);
                y
            }
            VectorOp::LayerNorm => {
                let mean = a.iter().sum::<f64>() / n;
                let var = a.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
                a.iter()
                    .zip(g.iter().zip(&bias))
                    .map(|(x, (g, b))| (x - mean) / (var + 1e-5).sqrt() * g + b)
                    .collect()
            }
            VectorOp::Softmax => {
                let m = a.iter().cloned().fold(f64::MIN, f64::max);
                let total: f64 = a.iter().map(|x| (x - m).exp()).sum();
                a.iter().map(|x| (x - m).exp() / total).collect()
            }
        };
        assert_eq!(outs["y"].len(), want.len(), "{}", op.name());
        for (i, (got, want)) in outs["y"].iter().zip(&want).enumerate() {
            assert!(
                (*got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{}: element {i}: {got} vs {want}",
                op.name()
            );
        }
    }
}

#[test]
fn listing_of_an_rmsnorm() {
    let s = VectorSpec {
        w: 1,
        op: VectorOp::RmsNorm,
        n: 10,
        h: 3,
        strategy: Reduce::Chain,
        eps: 1e-5,
        seed: 1,
    };
    insta::assert_snapshot!(wafer_emulator::asm::print(
        &vector::generate(&s, &Arch::wse3()).unwrap().program
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// A prefill's norms: every position's result is the one-position
    /// kernel's, bit for bit, and the cost model is exact.
    #[test]
    fn batched_norms_match_the_one_position_kernel_and_their_cost_model(
        add in any::<bool>(), n in 1u32..60, h in 1u32..7, k in 0u32..4, batch in 1u32..7,
        seed in any::<u64>(), wse3 in any::<bool>(),
    ) {
        let op = if add { VectorOp::AddRmsNorm } else { VectorOp::RmsNorm };
        let s = VectorSpec { w: 1, op, n, h: h.min(n), strategy: if k == 0 { Reduce::Chain } else { Reduce::Tree { k } }, eps: 1e-5, seed };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let other = vector::generate(&VectorSpec { seed: seed ^ 1, ..s.clone() }, &arch).unwrap();
        let f = vector::generate_batch(&s, batch, &arch).map(|f| f.holding_data_of(&other)).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let inputs = f.default_inputs();
        prop_assert_eq!(inputs["a"].len(), (batch * n) as usize);
        let (outs, run) = f
            .run(&arch, &inputs, &RunConfig::default())
            .unwrap_or_else(|e| panic!("{s:?} x{batch}: {e}"));
        // The other program's weights, each position as one run of it.
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let want = vector::reference_batch(&s, batch, &inputs, &other.program);
        prop_assert_eq!(bits(&outs["y"]), bits(&want), "{:?} x{}", s, batch);
        for q in 0..batch as usize {
            let one: std::collections::BTreeMap<String, Vec<f32>> = inputs
                .iter()
                .map(|(k, v)| (k.clone(), v[q * n as usize..(q + 1) * n as usize].to_vec()))
                .collect();
            let (y, _) = other.run(&arch, &one, &RunConfig::default()).unwrap();
            let per = y["y"].len();
            prop_assert_eq!(bits(&y["y"]), bits(&outs["y"][q * per..(q + 1) * per]));
        }
        prop_assert_eq!(run.cycles, vector::cost_batch(&s, batch, &arch), "{:?} x{}", s, batch);
    }
}

/// How much later than [`vector::fed`] says a kernel fed late may end or
/// send its last output, and how much earlier. Later: a two-input op's
/// inputs coming in a burst after a gap fill their buffers, and the host
/// then pushes each wavelet when there is room, where the model takes
/// every one as pushed when it is due (seen: up to 7 cycles over 20,000
/// drawn cases). Earlier: SwiGLU's `b` arriving late is taken between
/// `a`'s elements where the model has it take its turn (up to 2).
const FED_LATER: i64 = 8;
const FED_EARLIER: i64 = 2;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]
    /// Inputs arriving late, in bursts (`RunConfig::arrivals`): the run
    /// ends, and (one PE wide) each output stream's last wavelet leaves,
    /// when [`vector::fed`] says, given the cycle each input wavelet is
    /// pushed in; every op, one PE wide and several.
    #[test]
    fn a_vector_kernel_fed_late_ends_as_its_cost_model_says(
        op in op(), wide in any::<bool>(), n in 1u32..90, h in 1u32..6, w in 1u32..4, seed in any::<u64>(),
        wse3 in any::<bool>(), delays in prop::collection::vec((0u64..60, any::<bool>()), 1..200),
    ) {
        let h = h.min(n);
        let w = if wide && op.spreads_over_columns() { w.min(n / h).max(1) } else { 1 };
        let s = VectorSpec { w, op, n, h, strategy: Reduce::Chain, eps: 1e-5, seed };
        let arch = if wse3 { Arch::wse3() } else { Arch::wse2() };
        let f = vector::generate(&s, &arch).unwrap();
        let (run, pushed) = common::run_late(&f, &arch, &delays);
        let (end, leaves) = vector::fed(&s, &arch, &pushed);
        let within = |emulated: u64, model: u64| (-FED_EARLIER..=FED_LATER).contains(&(emulated as i64 - model as i64));
        prop_assert!(within(run.cycles, end), "{:?}: {} against {}", s, run.cycles, end);
        prop_assert_eq!(leaves.is_empty(), w > 1);
        for (name, model) in &leaves {
            let left = *run.output_times[name].last().unwrap();
            prop_assert!(within(left, *model), "{:?}: {} left at {}, model {}", s, name, left, model);
        }
    }
}
