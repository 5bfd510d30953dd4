use anyhow::bail;
use clap::Args;
use serde_json::json;
use wafer_emulator::Arch;
use wafer_emulator::{DType, RunConfig};
use wafer_kernels::collective::{self, Axis, CollectiveOp, CollectiveSpec, Combine};
use wafer_kernels::gemv::{self, GemvSpec};
use wafer_kernels::reduce::Strategy;

#[derive(Args, Debug)]
pub struct KernelArgs {
    /// Kernel to run (see --list).
    pub name: Option<String>,
    /// List the kernels and their parameters.
    #[arg(long)]
    pub list: bool,
    /// Shape, e.g. 4096x4096 for a GEMV's rows × columns.
    #[arg(long)]
    pub shape: Option<String>,
    /// Weight dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Machine: wse2, wse3, or a TOML/JSON machine file.
    #[arg(long, default_value = "wse3")]
    pub arch: String,
    /// PE rectangle COLSxROWS; without it, the one the cost model predicts fastest.
    #[arg(long)]
    pub rect: Option<String>,
    /// Reduction strategy: chain, tree (K = 2) or tree:K.
    #[arg(long, default_value = "chain")]
    pub strategy: String,
    /// Collectives: the lines they run along, row or col.
    #[arg(long, default_value = "row")]
    pub axis: String,
    /// Reductions: how vectors combine, add or max.
    #[arg(long, default_value = "add")]
    pub combine: String,
    /// Seed of the random inputs and weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
}

const LIST: &str = "gemv       y = W·x, W tiled over the rectangle, x down the columns, partial sums reduced along rows
           --shape MxN (rows × columns)  --dtype f32|f16|bf16 (weights; x stored alike, sums in f32)
           --rect WxH (PE columns × rows; picked by the cost model if omitted)  --strategy chain | tree | tree:K
broadcast  a vector entering each line's start reaches every PE       --shape N (elements)  --rect WxH  --axis row|col
reduce     every PE's vector combined, out of each line's end         --shape N  --rect WxH  --axis  --combine add|max  --strategy
allreduce  every PE's vector combined, left in every PE               --shape N  --rect WxH  --axis  --combine add|max  --strategy
gather     every PE's vector concatenated in line order, out the end  --shape N (per PE)  --rect WxH  --axis";

/// What running one kernel found, printed the same way for every kernel.
struct Report {
    what: String,
    arch: Arch,
    rect: (u32, u32),
    picked: bool,
    measured: u64,
    predicted: u64,
    values: usize,
}

fn dims(s: &str, what: &str) -> anyhow::Result<(u32, u32)> {
    s.split_once('x')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("{what} `{s}`: expected AxB, e.g. 64x64"))
}

pub fn kernel(a: KernelArgs) -> anyhow::Result<()> {
    if a.list {
        println!("{LIST}");
        return Ok(());
    }
    let Some(name) = a.name.as_deref() else {
        bail!("name a kernel (wafer kernel --list shows them)")
    };
    let arch = super::machine(&a.arch, None)?;
    let strategy = Strategy::parse(&a.strategy)?;
    let report = match name {
        "gemv" => run_gemv(&a, arch, strategy)?,
        _ => match CollectiveOp::ALL.iter().find(|(_, n)| *n == name) {
            Some((op, _)) => run_collective(&a, arch, strategy, *op)?,
            None => bail!("unknown kernel `{name}` (wafer kernel --list shows the kernels)"),
        },
    };
    print_report(&report, a.json)
}

fn run_gemv(a: &KernelArgs, arch: Arch, strategy: Strategy) -> anyhow::Result<Report> {
    let (m, n) = dims(
        a.shape
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("gemv needs --shape MxN"))?,
        "--shape",
    )?;
    let dtype = DType::parse(&a.dtype)
        .filter(|d| d.is_float())
        .ok_or_else(|| anyhow::anyhow!("--dtype `{}`: use f32, f16 or bf16", a.dtype))?;
    let (w, h, picked) = match &a.rect {
        Some(r) => {
            let (w, h) = dims(r, "--rect")?;
            (w, h, false)
        }
        None => {
            let (w, h, _) = gemv::best_rect(m, n, dtype, strategy, &arch).ok_or_else(|| {
                anyhow::anyhow!(
                    "no rectangle of machine `{}` holds a {m}x{n} {dtype} GEMV",
                    arch.name
                )
            })?;
            (w, h, true)
        }
    };
    let spec = GemvSpec {
        m,
        n,
        dtype,
        w,
        h,
        strategy,
        seed: a.seed,
    };
    let frag = gemv::generate(&spec, &arch)?;
    let inputs = frag.default_inputs();
    let (outs, run) = frag.run(&arch, &inputs, &RunConfig::default())?;
    let want = gemv::reference(&spec, &gemv::weights(&spec, &frag.program), &inputs["x"]);
    if outs["y"] != want {
        bail!(
            "the emulator's y differs from the reference: a bug in the GEMV kernel or the engine"
        );
    }
    Ok(Report {
        what: format!("gemv {m}x{n} {dtype}, {strategy} reduction"),
        predicted: gemv::cost(&spec, &arch),
        arch,
        rect: (w, h),
        picked,
        measured: run.cycles,
        values: want.len(),
    })
}

fn run_collective(
    a: &KernelArgs,
    arch: Arch,
    strategy: Strategy,
    op: CollectiveOp,
) -> anyhow::Result<Report> {
    let n: u32 = a
        .shape
        .as_deref()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{} needs --shape N (elements per PE)", op.name()))?;
    let rect = a.rect.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "{} needs --rect WxH: the PEs taking part are the question, not a choice",
            op.name()
        )
    })?;
    let (w, h) = dims(rect, "--rect")?;
    let axis = match a.axis.as_str() {
        "row" => Axis::Row,
        "col" => Axis::Col,
        other => bail!("--axis `{other}`: use row or col"),
    };
    let combine = match a.combine.as_str() {
        "add" => Combine::Add,
        "max" => Combine::Max,
        other => bail!("--combine `{other}`: use add or max"),
    };
    let spec = CollectiveSpec {
        op,
        axis,
        w,
        h,
        n,
        combine,
        strategy,
        seed: a.seed,
    };
    let frag = collective::generate(&spec, &arch)?;
    let (outs, run) = frag.run(&arch, &frag.default_inputs(), &RunConfig::default())?;
    let want = collective::reference(&spec, &frag.program);
    let len = match axis {
        Axis::Row => w,
        Axis::Col => h,
    };
    for (lane, want) in want.iter().enumerate() {
        let ok = match op {
            CollectiveOp::Reduce | CollectiveOp::Gather => {
                outs.get(&format!("out{lane}")) == Some(want)
            }
            _ => (0..len).all(|pos| {
                run.read_buffer(&frag.program, spec.pe(pos, lane as u32), "v")
                    .as_ref()
                    == Some(want)
            }),
        };
        if !ok {
            bail!(
                "line {lane} differs from the reference: a bug in the {} kernel or the engine",
                op.name()
            );
        }
    }
    Ok(Report {
        what: format!(
            "{} of {n} elements along each {} ({combine:?}, {strategy})",
            op.name(),
            a.axis
        ),
        predicted: collective::cost(&spec, &arch),
        arch,
        rect: (w, h),
        picked: false,
        measured: run.cycles,
        values: want.iter().map(Vec::len).sum(),
    })
}

fn print_report(r: &Report, json: bool) -> anyhow::Result<()> {
    let time_us = r.arch.cycles_to_us(r.measured);
    let ratio = r.measured as f64 / r.predicted as f64;
    if json {
        let out = json!({
            "kernel": r.what, "arch": r.arch.name, "rect": [r.rect.0, r.rect.1], "pes": r.rect.0 * r.rect.1,
            "rect_picked_by_cost_model": r.picked, "measured_cycles": r.measured, "predicted_cycles": r.predicted,
            "ratio": ratio, "time_us": time_us, "clock_hz": r.arch.clock_hz, "matches_reference": true,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("kernel     {} on {}", r.what, r.arch.name);
    let how = if r.picked {
        " (picked: fastest by the cost model among rectangles that fit)"
    } else {
        ""
    };
    println!("rect       {}x{} PEs{how}", r.rect.0, r.rect.1);
    println!(
        "check      matches the reference bit for bit ({} values)",
        r.values
    );
    println!(
        "measured   {} cycles  ({time_us:.3} µs at {:.2} GHz)",
        r.measured,
        r.arch.clock_hz / 1e9
    );
    println!(
        "predicted  {} cycles  (measured / predicted = {ratio:.3})",
        r.predicted
    );
    Ok(())
}
