//! `wafer kernel gemv_pair`: two GEMVs as one program, the first's y
//! streaming into the second's x across their shared edge
//! ([`wafer_kernels::abut`]), against the same two run apart and against
//! the compiler's model of them as consecutive stages.

use super::{Ctx, KernelArgs, float_dtype};
use anyhow::bail;
use serde_json::json;
use std::collections::BTreeMap;
use wafer_compiler::route::Ends;
use wafer_emulator::{Arch, Pe};
use wafer_kernels::abut::abut;
use wafer_kernels::gemv::{self, GemvSpec};
use wafer_kernels::reduce::Strategy;

pub(super) fn run(how: &Ctx, a: &KernelArgs, arch: Arch, strategy: Strategy) -> anyhow::Result<()> {
    let [k, m, n] = super::shape3(
        a,
        "gemv_pair needs --shape KxMxN (W2 is KxM, W1 MxN)",
        "gemv_pair takes KxMxN (W2 is KxM, W1 MxN)",
    )?;
    if a.transposed {
        bail!("--transposed: gemv_pair mirrors W2 itself (W1 is never mirrored); leave it out");
    }
    let dtype = float_dtype(a)?;
    let (w, h, picked) = super::gemv_rect(a, m, n, dtype, strategy, &arch)
        .map_err(|e| anyhow::anyhow!("W1: {e}"))?;
    if 2 * w > arch.grid_cols {
        bail!(
            "--rect {w}x{h}: the pair takes {}x{h} PEs, the machine `{}` has {} columns: a narrower --rect",
            2 * w,
            arch.name,
            arch.grid_cols
        );
    }
    // W2's x blocks are W1's y blocks (its h rows); mirrored, it is as
    // wide as W1.
    let first = GemvSpec {
        m,
        n,
        dtype,
        w,
        h,
        strategy,
        seed: a.seed,
        halves: false,
        lead: Vec::new(),
    };
    let second = GemvSpec {
        m: k,
        n: m,
        dtype,
        w: h,
        h: w,
        strategy,
        seed: a.seed.wrapping_add(7),
        halves: false,
        lead: Vec::new(),
    };
    // W2 is generated unmirrored, so on the machine mirrored too.
    let mirror = super::mirrored(&arch);
    let fa = gemv::generate(&first, &arch).map_err(|e| anyhow::anyhow!("W1: {e}"))?;
    let mut fb = gemv::generate(&second, &mirror).map_err(|e| anyhow::anyhow!("W2: {e}"))?;
    // Read back only when checked: a timing-only run holds no weights.
    let weights = match how.checking() {
        true => {
            let (wa, wb) = (
                gemv::weights(&first, &arch, &fa.program),
                gemv::weights(&second, &mirror, &fb.program),
            );
            // Seeded weights are a function of the PE: held as values,
            // W2's survive the shift east of W1.
            gemv::load_weights(&second, &mirror, &mut fb, &wb)?;
            Some((wa, wb))
        }
        false => None,
    };
    let fb = fb.transposed();
    let x = fa.default_inputs();
    let (ya, ra) = how.run(&fa, &arch, &x)?;
    let xb = match how.checking() {
        true => BTreeMap::from([("x".to_string(), ya["y"].clone())]),
        false => fb.default_inputs(),
    };
    let (_, rb) = how.run(&fb, &arch, &xb)?;
    // As the compiler models consecutive stages: the hops of the farthest
    // element of y from where W1 sends it to where W2 (east of W1) takes
    // it (each run counts its own ramps and input links).
    let into = Pe::new(fa.program.width, 0);
    let hops = match (
        Ends::of(&fa.outputs[0], &fa.program.outputs, Pe::new(0, 0)),
        Ends::of(&fb.inputs[0], &fb.program.inputs, into),
    ) {
        (Some(out), Some(x)) => out.farthest(0, &x, 0, fb.inputs[0].len),
        _ => bail!("internal: the GEMVs' ports name streams they do not have"),
    };
    let pair = abut(fa, fb, "y", "x")?;
    let (y, run) = how.run(&pair, &arch, &x)?;
    if let Some((wa, wb)) = &weights {
        let want = gemv::reference(&second, wb, &gemv::reference(&first, wa, &x["x"]));
        if y["y"] != want {
            bail!(
                "the pair's y differs from the reference: a bug in abut, the GEMV kernel or the engine"
            );
        }
    }
    // As the compiler runs consecutive stages: one after the other, the
    // hand-off between them its formula.
    let handoff = wafer_compiler::route::handoff_cycles(&arch, hops);
    let staged = ra.cycles + handoff + rb.cycles;
    let (us, saved) = (
        arch.cycles_to_us(run.cycles),
        1.0 - run.cycles as f64 / staged as f64,
    );
    let what = format!("gemv pair {k}x{m}x{n} {dtype}, {strategy} reduction");
    if a.json {
        let out = json!({
            "kernel": what, "arch": arch.name, "rect": [2 * w, h], "rect_picked_by_cost_model": picked,
            "measured_cycles": run.cycles, "time_us": us,
            "first_alone_cycles": ra.cycles, "second_alone_cycles": rb.cycles,
            "handoff_model_cycles": handoff, "as_stages_cycles": staged, "saved_fraction": saved,
            "matches_reference": if how.checking() { Some(true) } else { None }, "timing_only": !how.checking(),
            "threads": how.cfg.threads, "emulation_seconds": how.emulated_seconds(),
            "pe_cycles_per_second": how.pe_cycles_per_second(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let by = if picked {
        " (W1's picked by the cost model)"
    } else {
        ""
    };
    println!("kernel     {what} on {}", arch.name);
    println!(
        "           y = W2·(W1·x): W1 {m}x{n} on {w}x{h} PEs, W2 {k}x{m} mirrored on {w}x{h} east of it"
    );
    println!("rect       {}x{h} PEs{by}", 2 * w);
    match how.checking() {
        true => println!("check      matches the reference bit for bit ({k} values)"),
        false => println!("check      none: --timing-only computes no values"),
    }
    println!(
        "measured   {} cycles  ({us:.3} µs at {:.2} GHz) as one program, W1's y streamed into W2 row by row",
        run.cycles,
        arch.clock_hz / 1e9
    );
    println!(
        "apart      W1 {} + W2 {} = {} cycles, each run alone, fed by the host",
        ra.cycles,
        rb.cycles,
        ra.cycles + rb.cycles
    );
    println!(
        "as stages  {staged} cycles: W1, a hand-off of {handoff} cycles as the compiler models it (an estimate: the trip of {hops} hops), W2; the pair takes {:.1}% less",
        100.0 * saved
    );
    println!("{}", how.emulated_line(" (the pair and each alone)"));
    Ok(())
}
