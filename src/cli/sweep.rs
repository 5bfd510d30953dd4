//! `wafer sweep`: per-token latency of one model across grid sizes,
//! placements and dtypes — how many PEs a model deserves.

use super::compile::TargetArgs;
use super::model::load;
use anyhow::bail;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// A llama2.c checkpoint, a Hugging Face directory or a built-in name;
    /// with none, the built-in aidreams260K.
    pub model: Option<String>,
    /// Machine the grids are cut from: wse2, wse3, or a machine file.
    #[arg(long, default_value = "wse3")]
    pub arch: String,
    /// Grid sizes, COLSxROWS or `full`, comma-separated.
    #[arg(
        long,
        allow_hyphen_values = true,
        default_value = "150x150,300x300,450x450,600x600,full"
    )]
    pub grids: String,
    /// Placements: pipeline, mesh (comma-separated).
    #[arg(long, default_value = "pipeline,mesh")]
    pub placements: String,
    /// Weight dtypes: f32, f16, bf16 (comma-separated; default: the
    /// model's default dtype).
    #[arg(long)]
    pub dtypes: Option<String>,
    /// Context length the step attends over (default 128, or the model's
    /// last position if it was trained for fewer).
    #[arg(long, value_parser = super::flags::count32::<0, { 1 << 30 }>, allow_negative_numbers = true)]
    pub context: Option<u32>,
    /// Also emulate one timing-only step per point (slow for large
    /// models); otherwise latency is the cost models' prediction.
    #[arg(long)]
    pub emulate: bool,
    /// Each step's stages one after another, meeting at barriers (as
    /// `wafer bench --barriers`; the default before 2026-12-05). By
    /// default they overlap: the latency is the cost models' estimate of
    /// the overlapped step, or with --emulate the overlapped step
    /// emulated, and the stages one after another stay beside it
    /// (`predicted_cycles`).
    #[arg(long)]
    pub barriers: bool,
    /// The default since 2026-12-05 (each step's stages overlapped);
    /// kept so that older commands still run.
    #[arg(long, hide = true, conflicts_with = "barriers")]
    pub overlap: bool,
    /// Wafers per point: a count (one: the grids alone are the axis), or
    /// auto (the fewest wafers of the point's grid that fit the model, or
    /// more while the predicted step times the wafers falls).
    #[arg(long, default_value = "1")]
    pub wafers: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Draw latency against PEs, one line per placement and dtype (.svg or .png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

impl SweepArgs {
    /// Whether each step's stages overlap: the default, `--barriers` not
    /// given.
    fn overlapped(&self) -> bool {
        !self.barriers
    }

    /// What the points' latency is: a plot's short name for it, and the
    /// table's longer one.
    fn latency(&self) -> (&'static str, &'static str) {
        match (self.emulate, self.overlapped()) {
            (true, false) => ("emulated", "emulated (timing-only)"),
            (true, true) => (
                "emulated, stages overlapped",
                "emulated (timing-only), each step's stages overlapped",
            ),
            (false, false) => (
                "cost models",
                "predicted by the cost models (exact for these kernels; --emulate checks)",
            ),
            (false, true) => (
                "cost models' estimate, stages overlapped",
                "the cost models' estimate of each step with its stages overlapped (--emulate checks)",
            ),
        }
    }
}

/// One point of the sweep.
#[derive(Debug)]
struct Point {
    grid: String,
    grid_pes: u64,
    placement: String,
    dtype: String,
    result: Result<Fit, String>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Fit {
    wafers: usize,
    pes_used: u64,
    predicted: u64,
    /// Without --barriers, the cost models' estimate of the overlapped step.
    predicted_overlapped: Option<u64>,
    emulated: Option<f64>,
    us: f64,
}

impl Fit {
    /// The point's latency in cycles: emulated, else the estimate of the
    /// overlapped step without --barriers, else the prediction.
    fn cycles(&self) -> f64 {
        (self.emulated)
            .or(self.predicted_overlapped.map(|p| p as f64))
            .unwrap_or(self.predicted as f64)
    }
}

pub fn run(a: SweepArgs) -> anyhow::Result<()> {
    if let Some(p) = &a.plot {
        super::flags::writable("--plot", p)?;
    }
    let l = load(a.model.as_deref(), None)?;
    let last = u32::try_from(l.config.seq_len - 1).unwrap_or(u32::MAX);
    let context = match a.context {
        Some(n) if n > last => bail!(
            "--context {n}: {} was trained for {} positions; use 0..={last}",
            l.name,
            l.config.seq_len
        ),
        Some(n) => n,
        None => 128.min(last),
    };
    let list = |s: &str| {
        s.split(',')
            .map(str::trim)
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let dtypes = match &a.dtypes {
        Some(d) => list(d).into_iter().map(Some).collect(),
        None => vec![None],
    };
    // Under MPI ranks each rank takes every R-th point (in the order
    // below) and rank 0 gathers them: a point is compiled (and emulated)
    // whole by one rank.
    let (rank, ranks) = (super::ranks::rank(), super::ranks::ranks());
    let mut points = Vec::new();
    for grid in list(&a.grids) {
        for placement in list(&a.placements) {
            if !matches!(placement.as_str(), "pipeline" | "mesh") {
                bail!("--placements `{placement}`: use pipeline or mesh");
            }
            for dtype in &dtypes {
                let t = TargetArgs {
                    machine: super::MachineArgs {
                        arch: a.arch.clone(),
                        grid: (grid != "full").then(|| grid.clone()),
                    },
                    dtype: dtype.clone(),
                    placement: placement.clone(),
                    max_context: Some(context + 1),
                    reduce: "tree".into(),
                    gemv: "auto".into(),
                    // The grids are the sweep's own axis.
                    region: Some("full".into()),
                    wafers: Some(a.wafers.clone()),
                    tiles: "auto".into(),
                };
                let opts = t.options(&l)?;
                let grid_pes = opts.arch.n_pes();
                let dtype = opts.dtype.to_string();
                let mine = points.len() % ranks == rank;
                if mine {
                    eprintln!("{grid} {placement} {dtype} ...");
                }
                let result = match t.compile(&l) {
                    _ if !mine => Err("computed by another rank".into()),
                    Err(e) => Err(format!("{e:#}")),
                    Ok(c) => {
                        let emulated = if a.emulate {
                            Some(
                                super::compare::emulate(
                                    &c,
                                    (context, 1, wafer_compiler::experts::DEFAULT_SEED),
                                    (None, false),
                                    (false, a.overlapped(), false),
                                    None,
                                    |_| {},
                                )?
                                .per_token_cycles,
                            )
                        } else {
                            None
                        };
                        let predicted_overlapped = a.overlapped().then(|| {
                            let seed = wafer_compiler::experts::DEFAULT_SEED;
                            wafer_compiler::decode::predict::predicted(&c, context, seed).cycles
                        });
                        let mut fit = Fit {
                            wafers: c.wafers.len(),
                            pes_used: c.pes_used(),
                            predicted: c.predicted(context),
                            predicted_overlapped,
                            emulated,
                            us: 0.0,
                        };
                        fit.us = fit.cycles() / c.options.arch.clock_hz * 1e6;
                        Ok(fit)
                    }
                };
                points.push(Point {
                    grid: grid.clone(),
                    grid_pes,
                    placement: placement.clone(),
                    dtype,
                    result,
                });
            }
        }
    }
    if let Some(ex) = super::ranks::exchange() {
        let mine: Vec<(usize, &Result<Fit, String>)> = points
            .iter()
            .enumerate()
            .filter(|(i, _)| i % ranks == rank)
            .map(|(i, p)| (i, &p.result))
            .collect();
        let all = ex.all_gather(serde_json::to_vec(&mine)?);
        for part in all {
            let theirs: Vec<(usize, Result<Fit, String>)> = serde_json::from_slice(&part)?;
            for (i, r) in theirs {
                points[i].result = r;
            }
        }
        if rank != 0 {
            return Ok(());
        }
    }
    if let Some(p) = &a.plot {
        let mut series: Vec<super::plot::Series> = Vec::new();
        for pt in &points {
            let name = format!("{}, {}", pt.placement, pt.dtype);
            let i = match series.iter().position(|s| s.name == name) {
                Some(i) => i,
                None => {
                    series.push(super::plot::Series {
                        name,
                        points: Vec::new(),
                        joined: true,
                    });
                    series.len() - 1
                }
            };
            if let Ok(f) = &pt.result {
                series[i].points.push((pt.grid_pes as f64, f.us));
            }
        }
        let svg = super::plot::lines_svg(
            &format!(
                "{} on {} grids: per-token latency, context {} ({})",
                l.name,
                a.arch,
                context,
                a.latency().0
            ),
            "PEs in the grid",
            "µs per token",
            &series,
        );
        super::plot::write(p, &svg)?;
    }
    if a.json {
        let rows: Vec<_> = points
            .iter()
            .map(|p| {
                let mut v = json!({
                    "grid": p.grid, "grid_pes": p.grid_pes, "placement": p.placement, "dtype": p.dtype,
                });
                match &p.result {
                    Ok(f) => {
                        v["wafers"] = json!(f.wafers);
                        v["pes_used"] = json!(f.pes_used);
                        v["predicted_cycles"] = json!(f.predicted);
                        v["predicted_overlapped_cycles"] = json!(f.predicted_overlapped);
                        v["emulated_cycles"] = json!(f.emulated);
                        v["per_token_us"] = json!(f.us);
                        v["tokens_per_s"] = json!(1e6 / f.us);
                    }
                    Err(e) => v["error"] = json!(e),
                }
                v
            })
            .collect();
        let out = json!({"model": l.name, "arch": a.arch, "context": context, "overlapped": a.overlapped(), "points": rows});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{} on {}, context {}: latency {}",
        l.name,
        a.arch,
        context,
        a.latency().1
    );
    println!(
        "  {:>11} {:>9} {:9} {:5} {:>6} {:>9} {:>12} {:>10} {:>9}",
        "grid", "PEs", "placement", "dtype", "wafers", "PEs used", "cycles", "µs/token", "tok/s"
    );
    for p in &points {
        match &p.result {
            Ok(f) => println!(
                "  {:>11} {:>9} {:9} {:5} {:>6} {:>9} {:>12.0} {:>10.2} {:>9.0}",
                p.grid,
                p.grid_pes,
                p.placement,
                p.dtype,
                f.wafers,
                f.pes_used,
                f.cycles(),
                f.us,
                1e6 / f.us
            ),
            Err(e) => println!(
                "  {:>11} {:>9} {:9} {:5} {}",
                p.grid,
                p.grid_pes,
                p.placement,
                p.dtype,
                e.lines().next().unwrap_or_default()
            ),
        }
    }
    Ok(())
}
