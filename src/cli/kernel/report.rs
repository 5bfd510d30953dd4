//! `wafer kernel --report`: every kernel at a few sizes on both presets,
//! measured against its cost model, every output checked.

use super::{Ctx, Report, run_vector, waferllm};
use anyhow::bail;
use serde_json::json;
use wafer_emulator::{Arch, DType};
use wafer_kernels::argmax::{self, ArgmaxSpec};
use wafer_kernels::attention::{self, AttentionSpec};
use wafer_kernels::collective::{self, CollectiveOp, CollectiveSpec, Combine, Scope};
use wafer_kernels::embedding::{self, EmbeddingSpec};
use wafer_kernels::gemv::{self, GemvSpec};
use wafer_kernels::reduce::Strategy;
use wafer_kernels::rope::{self, RopeLayout, RopeSpec};
use wafer_kernels::vector::{VectorOp, VectorSpec};

/// One row of the report: kernel, machine, rectangle, measured and
/// predicted cycles.
pub(super) type Row = (String, String, (u32, u32), u64, u64);

/// Run a generated kernel on its default inputs and record its row.
fn record(
    how: &Ctx,
    rows: &mut Vec<Row>,
    arch: &Arch,
    what: String,
    rect: (u32, u32),
    frag: &wafer_kernels::Fragment,
    predicted: u64,
) -> anyhow::Result<()> {
    let cycles = how.run(frag, arch, &frag.default_inputs())?.1.cycles;
    rows.push((what, arch.name.clone(), rect, cycles, predicted));
    Ok(())
}

/// Every kernel at a few sizes on both presets: measured vs predicted.
pub(super) fn run(how: &Ctx, json: bool) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for arch in [Arch::wse2(), Arch::wse3()] {
        // 16-bit weights with both reductions; quantized ones with a tree.
        let gemvs = [
            (DType::F16, Strategy::Chain),
            (DType::F16, Strategy::Tree { k: 2 }),
            (DType::I8, Strategy::Tree { k: 2 }),
            (DType::Mxfp4, Strategy::Tree { k: 2 }),
        ];
        for (m, n, w, h) in [(64, 64, 8, 8), (256, 512, 32, 16), (1024, 1024, 32, 32)] {
            for (dtype, strategy) in gemvs {
                let spec = GemvSpec {
                    m,
                    n,
                    dtype,
                    w,
                    h,
                    strategy,
                    seed: 1,
                    halves: false,
                };
                let frag = gemv::generate(&spec, &arch)?;
                let inputs = frag.default_inputs();
                let (outs, run) = how.run(&frag, &arch, &inputs)?;
                if outs["y"]
                    != gemv::reference(
                        &spec,
                        &gemv::weights(&spec, &arch, &frag.program),
                        &inputs["x"],
                    )
                {
                    bail!("gemv {m}x{n} differs from its reference");
                }
                rows.push((
                    format!("gemv {m}x{n} {dtype} {strategy}"),
                    arch.name.clone(),
                    (w, h),
                    run.cycles,
                    gemv::cost(&spec, &arch),
                ));
            }
        }
        for (m, n, w, h, groups, streamed) in
            [(64, 64, 8, 8, 2, false), (1000, 700, 20, 24, 4, true)]
        {
            let spec = wafer_kernels::meshgemv::MeshGemvSpec {
                m,
                n,
                w,
                h,
                groups,
                dtype: DType::F16,
                acc: if streamed { DType::F32 } else { DType::F16 },
                streamed,
                seed: 1,
            };
            let (row, checked) = waferllm::meshgemv_row(how, &spec, &arch)?;
            if !checked {
                bail!("meshgemv {m}x{n} differs from its reference");
            }
            rows.push(row);
        }
        for (op, name) in CollectiveOp::ALL {
            for (n, w, h) in [(16, 16, 4), (128, 64, 2)] {
                let spec = CollectiveSpec {
                    op,
                    scope: Scope::Row,
                    w,
                    h,
                    n,
                    combine: Combine::Add,
                    strategy: Strategy::Tree { k: 2 },
                    seed: 1,
                };
                record(
                    how,
                    &mut rows,
                    &arch,
                    format!("{name} n={n} rows tree:2"),
                    (w, h),
                    &collective::generate(&spec, &arch)?,
                    collective::cost(&spec, &arch),
                )?;
            }
        }
        for (n, w) in [(64, 8), (1024, 16)] {
            let spec = CollectiveSpec {
                op: CollectiveOp::Allreduce,
                scope: Scope::Row,
                w,
                h: 2,
                n,
                combine: Combine::Add,
                strategy: Strategy::Ring,
                seed: 1,
            };
            record(
                how,
                &mut rows,
                &arch,
                format!("allreduce n={n} rows ring"),
                (w, 2),
                &collective::generate(&spec, &arch)?,
                collective::cost(&spec, &arch),
            )?;
        }
        for (kv, d, g, ctx, pos, h, per_query_head) in [
            (2, 64, 4, 256, 200, 8, false),
            (2, 64, 4, 256, 200, 8, true),
            (1, 128, 8, 1024, 1000, 64, false),
            (1, 128, 8, 1024, 1000, 64, true),
        ] {
            let spec = AttentionSpec {
                kv_heads: kv,
                head_dim: d,
                group: g,
                max_context: ctx,
                pos,
                h,
                strategy: Strategy::Tree { k: 2 },
                seed: 1,
                sinks: false,
                window: None,
                per_query_head,
            };
            record(
                how,
                &mut rows,
                &arch,
                format!(
                    "attention kv={kv} d={d} g={g} pos={pos}/{ctx}{}",
                    if per_query_head { " copies" } else { "" }
                ),
                (spec.columns(), h),
                &attention::generate(&spec, &arch)?,
                attention::cost(&spec, &arch),
            )?;
        }
        for (heads, d, h) in [(4, 64, 4), (32, 128, 32)] {
            let spec = RopeSpec {
                heads,
                head_dim: d,
                theta: 10000.0,
                layout: RopeLayout::Adjacent,
                scaling: None,
                pos: 100,
                h,
            };
            record(
                how,
                &mut rows,
                &arch,
                format!("rope {heads}x{d}"),
                (1, h),
                &rope::generate(&spec, &arch)?,
                rope::cost(&spec, &arch),
            )?;
        }
        for (vocab, dim, w, h) in [(512, 64, 4, 4), (32000, 4096, 128, 64)] {
            let spec = EmbeddingSpec {
                vocab,
                dim,
                dtype: DType::F16,
                w,
                h,
                strategy: Strategy::Tree { k: 2 },
                token: 1,
                seed: 1,
            };
            record(
                how,
                &mut rows,
                &arch,
                format!("embedding {vocab}x{dim} f16"),
                (w, h),
                &embedding::generate(&spec, &arch)?,
                embedding::cost(&spec, &arch, 1),
            )?;
        }
        for (n, h) in [(512, 4), (32000, 64)] {
            let spec = ArgmaxSpec {
                n,
                h,
                strategy: Strategy::Tree { k: 2 },
                seed: 1,
            };
            record(
                how,
                &mut rows,
                &arch,
                format!("argmax n={n}"),
                (1, h),
                &argmax::generate(&spec, &arch)?,
                argmax::cost(&spec, &arch),
            )?;
        }
        for (op, name) in VectorOp::ALL {
            for (n, h) in [(64, 4), (4096, 64)] {
                let spec = VectorSpec {
                    w: 1,
                    op,
                    n,
                    h,
                    strategy: Strategy::Tree { k: 2 },
                    eps: 1e-5,
                    seed: 1,
                };
                let r = run_vector(how, &spec, 1, arch.clone())?;
                rows.push((
                    format!("{name} n={n}"),
                    arch.name.clone(),
                    (1, h),
                    r.measured,
                    r.predicted,
                ));
            }
        }
    }
    let worst = rows
        .iter()
        .map(|r| r.3 as f64 / r.4 as f64)
        .fold(1.0f64, |w, x| {
            if (x - 1.0).abs() > (w - 1.0).abs() {
                x
            } else {
                w
            }
        });
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(k, a, (w, h), m, p)| json!({"kernel": k, "arch": a, "rect": [w, h], "measured_cycles": m, "predicted_cycles": p, "ratio": *m as f64 / *p as f64}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"rows": list, "worst_ratio": worst}))?
        );
        return Ok(());
    }
    println!(
        "{:<40} {:<5} {:>9} {:>9} {:>9} {:>7}",
        "kernel", "arch", "rect", "measured", "predicted", "ratio"
    );
    for (k, a, (w, h), m, p) in &rows {
        println!(
            "{k:<40} {a:<5} {:>9} {m:>9} {p:>9} {:>7.3}",
            format!("{w}x{h}"),
            *m as f64 / *p as f64
        );
    }
    println!(
        "worst measured/predicted ratio: {worst:.3} over {} runs (every output checked against its reference)",
        rows.len()
    );
    Ok(())
}

/// Print one kernel's run: as a summary, or one JSON object.
pub(super) fn print(how: &Ctx, r: &Report, json: bool) -> anyhow::Result<()> {
    let time_us = r.arch.cycles_to_us(r.measured);
    let ratio = r.measured as f64 / r.predicted as f64;
    if json {
        let out = json!({
            "kernel": r.what, "arch": r.arch.name, "rect": [r.rect.0, r.rect.1], "pes": r.rect.0 * r.rect.1,
            "rect_picked_by_cost_model": r.picked, "measured_cycles": r.measured, "predicted_cycles": r.predicted,
            "ratio": ratio, "time_us": time_us, "clock_hz": r.arch.clock_hz,
            "matches_reference": if how.checking() { Some(true) } else { None }, "timing_only": !how.checking(),
            "threads": how.cfg.threads, "emulation_seconds": how.emulated_seconds(),
            "pe_cycles_per_second": how.pe_cycles_per_second(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("kernel     {} on {}", r.what, r.arch.name);
    let picked = if r.picked {
        " (picked: fastest by the cost model among rectangles that fit)"
    } else {
        ""
    };
    println!("rect       {}x{} PEs{picked}", r.rect.0, r.rect.1);
    if how.checking() {
        println!(
            "check      matches the reference bit for bit ({} values)",
            r.values
        );
    } else {
        println!("check      none: --timing-only computes no values");
    }
    println!(
        "measured   {} cycles  ({time_us:.3} µs at {:.2} GHz)",
        r.measured,
        r.arch.clock_hz / 1e9
    );
    println!(
        "predicted  {} cycles  (measured / predicted = {ratio:.3})",
        r.predicted
    );
    println!("{}", how.emulated_line(""));
    Ok(())
}
