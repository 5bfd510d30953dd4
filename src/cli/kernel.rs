use anyhow::bail;
use clap::Args;
use serde_json::json;
use wafer_emulator::{DType, RunConfig};
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
    /// Seed of the random inputs and weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
}

const LIST: &str = "gemv   y = W·x, W tiled over the rectangle, x down the columns, partial sums reduced along rows
       --shape MxN (rows × columns)  --dtype f32|f16|bf16 (weights; x stored alike, sums in f32)
       --rect WxH (PE columns × rows)  --strategy chain | tree | tree:K";

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
    if name != "gemv" {
        bail!("unknown kernel `{name}` (wafer kernel --list shows the kernels)");
    }
    let arch = super::machine(&a.arch, None)?;
    let (m, n) = dims(
        a.shape
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("gemv needs --shape MxN"))?,
        "--shape",
    )?;
    let dtype = DType::parse(&a.dtype)
        .filter(|d| d.is_float())
        .ok_or_else(|| anyhow::anyhow!("--dtype `{}`: use f32, f16 or bf16", a.dtype))?;
    let strategy = Strategy::parse(&a.strategy)?;
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
    let max_err = outs["y"]
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    if max_err > 0.0 || outs["y"].len() != want.len() {
        bail!(
            "the emulator's y differs from the reference (max |error| {max_err}): a bug in the GEMV kernel or the engine"
        );
    }
    let predicted = gemv::cost(&spec, &arch);
    let time_us = arch.cycles_to_us(run.cycles);
    if a.json {
        let out = json!({
            "kernel": "gemv", "shape": [m, n], "dtype": dtype.to_string(), "arch": arch.name,
            "rect": [w, h], "rect_picked_by_cost_model": picked, "strategy": strategy.to_string(),
            "measured_cycles": run.cycles, "predicted_cycles": predicted,
            "ratio": run.cycles as f64 / predicted as f64, "time_us": time_us, "clock_hz": arch.clock_hz,
            "matches_reference": true, "pes": w * h,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "kernel     gemv {m}x{n} {dtype}, {strategy} reduction, on {}",
        arch.name
    );
    let how = if picked {
        " (picked: fastest by the cost model among rectangles that fit)"
    } else {
        ""
    };
    println!("rect       {w}x{h} PEs{how}");
    println!(
        "check      y matches the reference bit for bit ({} values)",
        want.len()
    );
    println!(
        "measured   {} cycles  ({time_us:.3} µs at {:.2} GHz)",
        run.cycles,
        arch.clock_hz / 1e9
    );
    println!(
        "predicted  {predicted} cycles  (measured / predicted = {:.3})",
        run.cycles as f64 / predicted as f64
    );
    Ok(())
}
