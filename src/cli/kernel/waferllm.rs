//! WaferLLM's kernels on their own: MeshGEMV and MeshGEMM.

use super::{Ctx, KernelArgs, Report, bit_equal, dims, float_dtype, shape2};
use wafer_emulator::{Arch, DType};
use wafer_kernels::meshgemm::{self, MeshGemmSpec};
use wafer_kernels::meshgemv::{self, MeshGemvSpec};

/// `--dtype` for a 16-bit kernel: f16 unless bf16 is asked for.
fn sixteen_bit(a: &KernelArgs) -> anyhow::Result<DType> {
    Ok(match a.dtype.as_str() {
        "f32" => DType::F16, // the default of --dtype; WaferLLM's kernels are 16-bit
        _ => float_dtype(a)?,
    })
}

pub(super) fn run_meshgemv(how: &Ctx, a: &KernelArgs, arch: Arch) -> anyhow::Result<Report> {
    let (m, n) = shape2(a, "meshgemv needs --shape MxN (x's length × outputs)")?;
    let dtype = sixteen_bit(a)?;
    // WaferLLM's choice: about √h groups of about √h rows.
    let groups_for = |h: u32| {
        a.group_num.unwrap_or_else(|| {
            (2..=h / 2)
                .filter(|g| h.is_multiple_of(*g))
                .min_by_key(|g| (*g as i64 - (h as f64).sqrt().round() as i64).abs())
                .unwrap_or(2)
        })
    };
    let spec = |w: u32, h: u32| MeshGemvSpec {
        m,
        n,
        w,
        h,
        groups: groups_for(h),
        dtype,
        // WaferLLM's `@fmach`: the sum in the weights' dtype; a compiled
        // model's streamed GEMV sums in f32.
        acc: if a.streamed { DType::F32 } else { dtype },
        streamed: a.streamed,
        seed: a.seed,
    };
    let (s, picked) = match &a.rect {
        Some(r) => {
            let (w, h) = dims(r, "--rect")?;
            (spec(w, h), false)
        }
        None => {
            let side = arch.grid_cols.min(arch.grid_rows);
            let best = (4..=side.min(m).min(n))
                .map(|p| spec(p, p))
                .filter(|s| meshgemv::validate(s, &arch).is_ok())
                .min_by_key(|s| meshgemv::cost(s, &arch))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no square of machine `{}` holds a {m}x{n} MeshGEMV (it needs at least 4x4 PEs, a row of PEs per element of x at most, and its tiles in SRAM); give --rect",
                        arch.name
                    )
                })?;
            (best, true)
        }
    };
    let mut report = measure_meshgemv(how, &s, a.batch, arch)?;
    report.picked = picked;
    Ok(report)
}

/// A MeshGEMV of `batch` positions run and, unless `--timing-only`,
/// checked: every PE's sum (one position's) and the output stream when
/// streamed.
pub(super) fn measure_meshgemv(
    how: &Ctx,
    s: &MeshGemvSpec,
    batch: u32,
    arch: Arch,
) -> anyhow::Result<Report> {
    let frag = meshgemv::generate_batch(s, batch, &arch)?;
    let inputs = frag.default_inputs();
    let (outs, run) = how.run(&frag, &arch, &inputs)?;
    let values = match how.checking() {
        true => {
            let x = if s.streamed {
                inputs["x"].clone()
            } else {
                s.x()
            };
            let want = meshgemv::reference_batch(s, &meshgemv::weights(s, &frag.program), &x);
            if s.streamed {
                bit_equal("meshgemv y", &outs["y"], &want)?;
            }
            // Every PE's `res` holds its column's outputs (one position's:
            // a batch's are checked in its `y`).
            for (c, (yo, nt)) in s.cols().into_iter().enumerate().filter(|_| batch == 1) {
                for r in [0, s.root(), s.h - 1] {
                    let got = run
                        .read_buffer(&frag.program, wafer_emulator::Pe::new(c as u32, r), "res")
                        .expect("every PE holds res");
                    bit_equal("meshgemv", &got, &want[yo as usize..(yo + nt) as usize])?;
                }
            }
            Some(want.len())
        }
        false => None,
    };
    Ok(Report {
        what: format!(
            "meshgemv 1x{m} @ {m}x{n} {dtype}, {} groups of {} rows{}{}",
            s.groups,
            s.h / s.groups,
            if s.streamed {
                ", x and y streamed, sum in f32"
            } else {
                ""
            },
            super::positions(batch),
            m = s.m,
            n = s.n,
            dtype = s.dtype,
        ),
        predicted: meshgemv::cost_batch(s, batch, &arch),
        rect: (s.w, s.h),
        arch,
        picked: false,
        measured: run.cycles,
        values,
    })
}

pub(super) fn run_meshgemm(how: &Ctx, a: &KernelArgs, arch: Arch) -> anyhow::Result<Report> {
    let [m, k, n] = super::shape3(
        a,
        "meshgemm needs --shape MxKxN (X is MxK, W is KxN)",
        "meshgemm takes MxKxN (X is MxK, W is KxN)",
    )?;
    let dtype = sixteen_bit(a)?;
    let spec = |p: u32| MeshGemmSpec {
        m,
        k,
        n,
        p,
        dtype,
        // WaferLLM's `@fmach`: the sum in the inputs' dtype.
        acc: dtype,
        seed: a.seed,
    };
    let (s, picked) = match &a.rect {
        Some(r) => {
            let (w, h) = dims(r, "--rect")?;
            if w != h {
                anyhow::bail!("--rect {w}x{h}: MeshGEMM runs on a square, PxP");
            }
            (spec(w), false)
        }
        None => {
            let side = arch.grid_cols.min(arch.grid_rows);
            let best = (1..=side)
                .map(spec)
                .filter(|s| meshgemm::validate(s, &arch).is_ok())
                .min_by_key(|s| meshgemm::cost(s, &arch))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no square of machine `{}` holds a {m}x{k} @ {k}x{n} MeshGEMM (m, k and n must be multiples of its side, its tiles in SRAM); give --rect",
                        arch.name
                    )
                })?;
            (best, true)
        }
    };
    let frag = meshgemm::generate(&s, &arch)?;
    let (_, run) = how.run(&frag, &arch, &Default::default())?;
    // Gathered only when checked: a timing-only run stores no tiles.
    let values = match how.checking() {
        true => {
            let (x, w) = meshgemm::inputs(&s);
            let want = meshgemm::reference(&s, &x, &w);
            bit_equal(
                "meshgemm",
                &meshgemm::gather(&s, &frag.program, &run),
                &want,
            )?;
            Some(want.len())
        }
        false => None,
    };
    Ok(Report {
        what: format!(
            "meshgemm {m}x{k} @ {k}x{n} {dtype} on {p}x{p} PEs (predicted: the cost model's estimate)",
            p = s.p
        ),
        predicted: meshgemm::cost(&s, &arch),
        arch,
        rect: (s.p, s.p),
        picked,
        measured: run.cycles,
        values,
    })
}
