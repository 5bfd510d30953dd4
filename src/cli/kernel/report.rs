//! `wafer kernel --report`: every kernel at a few sizes on both presets,
//! measured against its cost model, every output checked (unless
//! `--timing-only`) by the same functions `wafer kernel NAME` runs.

use super::column::{measure_argmax, measure_attention, measure_rope, measure_vector};
use super::{Ctx, Report, measure_collective, measure_embedding, measure_gemv, waferllm};
use anyhow::Context;
use serde_json::json;
use wafer_emulator::{Arch, DType};
use wafer_kernels::argmax::ArgmaxSpec;
use wafer_kernels::attention::AttentionSpec;
use wafer_kernels::collective::{CollectiveOp, CollectiveSpec, Combine, Scope};
use wafer_kernels::embedding::EmbeddingSpec;
use wafer_kernels::gemv::GemvSpec;
use wafer_kernels::reduce::Strategy;
use wafer_kernels::rope::{RopeLayout, RopeSpec};
use wafer_kernels::vector::{VectorOp, VectorSpec};

/// One row of the report: kernel, machine, rectangle, measured and
/// predicted cycles, values checked against the reference.
type Row = (String, String, (u32, u32), u64, u64, Option<usize>);

/// A measured run as its report row, named `what` (which a failed check
/// names too).
fn row(what: String, r: anyhow::Result<Report>) -> anyhow::Result<Row> {
    let r = r.with_context(|| format!("--report's {what}"))?;
    Ok((what, r.arch.name, r.rect, r.measured, r.predicted, r.values))
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
                    lead: Vec::new(),
                };
                let r = measure_gemv(how, &spec, 1, false, arch.clone());
                rows.push(row(format!("gemv {m}x{n} {dtype} {strategy}"), r)?);
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
            let r = waferllm::measure_meshgemv(how, &spec, 1, arch.clone());
            let streamed = if streamed { " streamed" } else { "" };
            rows.push(row(
                format!("meshgemv {m}x{n} f16 sum {}{streamed}", spec.acc),
                r,
            )?);
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
                rows.push(row(
                    format!("{name} n={n} rows tree:2"),
                    measure_collective(how, &spec, arch.clone()),
                )?);
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
            rows.push(row(
                format!("allreduce n={n} rows ring"),
                measure_collective(how, &spec, arch.clone()),
            )?);
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
                pitch: 1,
            };
            rows.push(row(
                format!(
                    "attention kv={kv} d={d} g={g} pos={pos}/{ctx}{}",
                    if per_query_head { " copies" } else { "" }
                ),
                measure_attention(how, &spec, arch.clone()),
            )?);
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
            rows.push(row(
                format!("rope {heads}x{d}"),
                measure_rope(how, &spec, 1, arch.clone()),
            )?);
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
            rows.push(row(
                format!("embedding {vocab}x{dim} f16"),
                measure_embedding(how, &spec, arch.clone()),
            )?);
        }
        for (n, h) in [(512, 4), (32000, 64)] {
            let spec = ArgmaxSpec {
                n,
                h,
                strategy: Strategy::Tree { k: 2 },
                seed: 1,
            };
            rows.push(row(
                format!("argmax n={n}"),
                measure_argmax(how, &spec, arch.clone()),
            )?);
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
                let r = measure_vector(how, &spec, 1, arch.clone());
                rows.push(row(format!("{name} n={n}"), r)?);
            }
        }
    }
    // Every row's values, or none when --timing-only checked nothing.
    let checked: Option<usize> = rows.iter().map(|r| r.5).sum();
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
            .map(|(k, a, (w, h), m, p, _)| json!({"kernel": k, "arch": a, "rect": [w, h], "measured_cycles": m, "predicted_cycles": p, "ratio": *m as f64 / *p as f64}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "rows": list, "worst_ratio": worst,
                "checked_values": checked, "timing_only": !how.checking(),
            }))?
        );
        return Ok(());
    }
    println!(
        "{:<40} {:<5} {:>9} {:>9} {:>9} {:>7}",
        "kernel", "arch", "rect", "measured", "predicted", "ratio"
    );
    for (k, a, (w, h), m, p, _) in &rows {
        println!(
            "{k:<40} {a:<5} {:>9} {m:>9} {p:>9} {:>7.3}",
            format!("{w}x{h}"),
            *m as f64 / *p as f64
        );
    }
    let check = match checked {
        Some(n) => format!("every output checked against its reference bit for bit, {n} values"),
        None => "no output checked: --timing-only computes no values".to_string(),
    };
    println!(
        "worst measured/predicted ratio: {worst:.3} over {} runs ({check})",
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
            "matches_reference": r.values.map(|_| true), "checked_values": r.values, "timing_only": !how.checking(),
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
    match r.values {
        Some(n) => println!("check      matches the reference bit for bit ({n} values)"),
        None => println!("check      none: --timing-only computes no values"),
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
