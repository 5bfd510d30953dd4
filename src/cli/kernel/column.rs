//! `wafer kernel` for the kernels that run down one column of PEs
//! (attention, RoPE, argmax, the router, the vector kernels): each picks
//! its column's height by its cost model where `--rect` is left out.

use super::{Ctx, KernelArgs, Report, dims, positions, same, shape1, shape2};
use anyhow::bail;
use wafer_emulator::Arch;
use wafer_kernels::KernelError;
use wafer_kernels::argmax::{self, ArgmaxSpec};
use wafer_kernels::attention::{self, AttentionSpec};
use wafer_kernels::reduce::Strategy;
use wafer_kernels::rope::{self, RopeLayout, RopeSpec};
use wafer_kernels::vector::{self, VectorSpec};

pub(super) fn run_attention(
    how: &Ctx,
    a: &KernelArgs,
    arch: Arch,
    strategy: Strategy,
) -> anyhow::Result<Report> {
    let (d, ctx) = dims(
        a.shape.as_deref().ok_or_else(|| {
            anyhow::anyhow!("attention needs --shape DxL (head dim × max context)")
        })?,
        "--shape",
    )?;
    let make = |h| AttentionSpec {
        kv_heads: a.kv_heads,
        head_dim: d,
        group: a.group,
        max_context: ctx,
        pos: a.pos,
        h,
        strategy,
        seed: a.seed,
        sinks: false,
        window: None,
        per_query_head: a.per_query_head,
        pitch: a.pitch,
    };
    let (h, picked) = column(a, "attention", sizes(ctx.min(arch.grid_rows)), |h| {
        attention::generate(&make(h), &arch).map(|_| attention::cost(&make(h), &arch))
    })?;
    let mut report = measure_attention(how, &make(h), arch)?;
    report.picked = picked;
    Ok(report)
}

/// One decode step's attention run and, unless `--timing-only`, checked.
pub(super) fn measure_attention(
    how: &Ctx,
    spec: &AttentionSpec,
    arch: Arch,
) -> anyhow::Result<Report> {
    let frag = attention::generate(spec, &arch)?;
    let inputs = frag.default_inputs();
    let (outs, run) = how.run(&frag, &arch, &inputs)?;
    let values = same(how, "attention", &outs["out"], || {
        attention::reference(spec, &inputs, &frag.program)
    })?;
    Ok(Report {
        what: format!(
            "attention of {} KV head(s) × {} query heads{}, d={}, at position {} of {} ({})",
            spec.kv_heads,
            spec.group,
            if spec.per_query_head {
                ", a column per query head"
            } else {
                ""
            },
            spec.head_dim,
            spec.pos,
            spec.max_context,
            spec.strategy
        ),
        predicted: attention::cost(spec, &arch),
        arch,
        rect: (spec.width(), spec.h),
        picked: false,
        measured: run.cycles,
        values,
    })
}

/// Powers of two up to `limit`, and `limit`: the sizes tried when picking.
pub(super) fn sizes(limit: u32) -> Vec<u32> {
    let mut v: Vec<u32> = (0..31)
        .map(|k| 1u32 << k)
        .take_while(|x| *x <= limit)
        .collect();
    v.push(limit);
    v.dedup();
    v
}

/// `--rect 1xH`, or else the column height the cost model predicts fastest
/// among `heights` that fit (`cost` gives the generator's error for one
/// that does not); true when picked. When none fits, the error is the
/// last one tried's (the tallest of [`sizes`]), which says what is wrong.
pub(super) fn column(
    a: &KernelArgs,
    name: &str,
    heights: Vec<u32>,
    cost: impl Fn(u32) -> Result<u64, KernelError>,
) -> anyhow::Result<(u32, bool)> {
    if let Some(r) = a.rect.as_deref() {
        return match dims(r, "--rect")? {
            (1, h) => Ok((h, false)),
            (w, _) => bail!("--rect {w}x..: {name} runs on a column of PEs, 1xH"),
        };
    }
    let mut best: Option<(u64, u32)> = None;
    let mut last_error = None;
    let limit = heights.iter().copied().max().unwrap_or(0);
    for h in heights {
        match cost(h) {
            Ok(c) => best = best.min(Some((c, h))).or(Some((c, h))),
            Err(e) => last_error = Some(e),
        }
    }
    match (best, last_error) {
        (Some((_, h)), _) => Ok((h, true)),
        (None, Some(e)) => Err(e.into()),
        (None, None) => bail!("no column of up to {limit} PEs to try for this {name}"),
    }
}

/// RoPE's columns: whole heads a PE, or a part of a head each, as the
/// compiler tries them.
fn rope_heights(heads: u32, head_dim: u32, rows: u32) -> Vec<u32> {
    let mut v = sizes(heads.min(rows));
    v.extend(RopeSpec::part_heights(heads, head_dim, rows));
    v
}

pub(super) fn run_rope(how: &Ctx, a: &KernelArgs, arch: Arch) -> anyhow::Result<Report> {
    let (heads, d) = shape2(a, "rope needs --shape HxD (heads × head dim)")?;
    let layout = match a.layout.as_str() {
        "adjacent" => RopeLayout::Adjacent,
        "half" => RopeLayout::HalfSplit,
        other => bail!("--layout `{other}`: use adjacent or half"),
    };
    let make = |h| RopeSpec {
        heads,
        head_dim: d,
        theta: 10000.0,
        layout,
        scaling: None,
        pos: a.pos,
        h,
    };
    let (h, picked) = column(a, "rope", rope_heights(heads, d, arch.grid_rows), |h| {
        rope::generate(&make(h), &arch).map(|_| rope::cost(&make(h), &arch))
    })?;
    let mut report = measure_rope(how, &make(h), a.batch, arch)?;
    report.picked = picked;
    Ok(report)
}

/// RoPE on `batch` positions run and, unless `--timing-only`, checked.
pub(super) fn measure_rope(
    how: &Ctx,
    spec: &RopeSpec,
    batch: u32,
    arch: Arch,
) -> anyhow::Result<Report> {
    let frag = rope::generate_batch(spec, batch, &arch)?;
    let inputs = frag.default_inputs();
    let (outs, run) = how.run(&frag, &arch, &inputs)?;
    let values = same(how, "rope", &outs["y"], || {
        rope::reference_batch(spec, &inputs, &frag.program)
    })?;
    Ok(Report {
        what: format!(
            "rope {}x{} ({:?}) at position {}{}",
            spec.heads,
            spec.head_dim,
            spec.layout,
            spec.pos,
            positions(batch)
        ),
        predicted: rope::cost_batch(spec, batch, &arch),
        arch,
        rect: (1, spec.h),
        picked: false,
        measured: run.cycles,
        values,
    })
}

pub(super) fn run_argmax(
    how: &Ctx,
    a: &KernelArgs,
    arch: Arch,
    strategy: Strategy,
) -> anyhow::Result<Report> {
    let n = shape1(a, "argmax needs --shape N")?;
    let make = |h| ArgmaxSpec {
        n,
        h,
        strategy,
        seed: a.seed,
    };
    let (h, picked) = column(a, "argmax", sizes(n.min(arch.grid_rows)), |h| {
        argmax::generate(&make(h), &arch).map(|_| argmax::cost(&make(h), &arch))
    })?;
    let mut report = measure_argmax(how, &make(h), arch)?;
    report.picked = picked;
    Ok(report)
}

/// An argmax run and, unless `--timing-only`, checked.
pub(super) fn measure_argmax(how: &Ctx, spec: &ArgmaxSpec, arch: Arch) -> anyhow::Result<Report> {
    let frag = argmax::generate(spec, &arch)?;
    let inputs = frag.default_inputs();
    let (outs, run) = how.run(&frag, &arch, &inputs)?;
    let values = same(how, "argmax", &outs["id"], || {
        vec![argmax::reference(&inputs["a"]) as f32]
    })?;
    Ok(Report {
        what: format!("argmax of {} ({})", spec.n, spec.strategy),
        predicted: argmax::cost(spec, &arch),
        arch,
        rect: (1, spec.h),
        picked: false,
        measured: run.cycles,
        values,
    })
}

pub(super) fn run_router(how: &Ctx, a: &KernelArgs, arch: Arch) -> anyhow::Result<Report> {
    use wafer_kernels::router::{self, RouterSpec};
    let (experts, per_token) = shape2(a, "router needs --shape ExK (experts × picked a token)")?;
    let spec = RouterSpec {
        experts,
        per_token,
        seed: a.seed,
    };
    let frag = router::generate(&spec, &arch)?;
    let inputs = frag.default_inputs();
    let (outs, run) = how.run(&frag, &arch, &inputs)?;
    let values = same(how, "router", &outs["routing"], || {
        router::reference(&spec, &inputs["logits"])
    })?;
    Ok(Report {
        what: format!("router: {per_token} of {experts} experts"),
        predicted: router::cost(&spec, &arch),
        arch,
        rect: (1, 1),
        picked: false,
        measured: run.cycles,
        values,
    })
}

/// A vector kernel on `batch` positions run and, unless `--timing-only`,
/// checked.
pub(super) fn measure_vector(
    how: &Ctx,
    spec: &VectorSpec,
    batch: u32,
    arch: Arch,
) -> anyhow::Result<Report> {
    let frag = vector::generate_batch(spec, batch, &arch).or_else(|e| match batch {
        1 => vector::generate(spec, &arch),
        _ => Err(e),
    })?;
    let inputs = frag.default_inputs();
    let (outs, run) = how.run(&frag, &arch, &inputs)?;
    let values = same(how, spec.op.name(), &outs["y"], || {
        vector::reference_batch(spec, batch, &inputs, &frag.program)
    })?;
    Ok(Report {
        what: format!(
            "{} of {} elements ({}){}",
            spec.op.name(),
            spec.n,
            spec.strategy,
            positions(batch)
        ),
        predicted: vector::cost_batch(spec, batch, &arch),
        arch,
        rect: (1, spec.h),
        picked: false,
        measured: run.cycles,
        values,
    })
}
