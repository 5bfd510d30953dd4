//! `wafer calibrate`: published measurements of real wafer-scale hardware
//! (`baselines/calibration/`) emulated and compared, as a table, JSON or a
//! plot; `--max-error P` fails when a point is off by more than P %.

use anyhow::Context;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use wafer_kernels::calibration::{self, Point};

/// The built-in suite: every file of `baselines/calibration/` (a test checks
/// the list against the directory).
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "waferllm-meshgemv-16k.toml",
        include_str!("../../baselines/calibration/waferllm-meshgemv-16k.toml"),
    ),
    (
        "waferllm-meshgemv-32k.toml",
        include_str!("../../baselines/calibration/waferllm-meshgemv-32k.toml"),
    ),
];

/// Points on at most this many PEs make the `--quick` subset.
const QUICK_PES: u64 = 100_000;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// A directory of calibration points (`*.toml`) instead of the built-in
    /// ones (`baselines/calibration/`).
    #[arg(long)]
    pub suite: Option<PathBuf>,
    /// Only the points on at most 100,000 PEs.
    #[arg(long)]
    pub quick: bool,
    /// Exit with an error when any point's |error| is over this many percent.
    #[arg(long, value_parser = super::flags::non_negative, allow_negative_numbers = true)]
    pub max_error: Option<f64>,
    /// Worker threads (results do not depend on it); default: this host's cores.
    #[arg(long, value_parser = super::flags::threads, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Draw emulated against published time, log-log, with y = x (.svg or .png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

fn points(a: &CalibrateArgs) -> anyhow::Result<Vec<(String, Point)>> {
    let mut out = Vec::new();
    match &a.suite {
        None => {
            for (file, text) in BUILT_IN {
                out.push((file.to_string(), Point::parse(text, file)?));
            }
        }
        Some(dir) => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("--suite {}: cannot read the directory", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            files.sort();
            if files.is_empty() {
                anyhow::bail!(
                    "--suite {}: no .toml calibration points in it",
                    dir.display()
                );
            }
            for f in files {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("{}: cannot read", f.display()))?;
                out.push((
                    f.display().to_string(),
                    Point::parse(&text, &f.display().to_string())?,
                ));
            }
        }
    }
    if a.quick {
        out.retain(|(_, p)| p.pes() <= QUICK_PES);
    }
    Ok(out)
}

pub fn run(a: CalibrateArgs) -> anyhow::Result<()> {
    if let Some(p) = &a.plot {
        super::flags::writable("--plot", p)?;
    }
    let points = points(&a)?;
    let threads = super::threads(a.threads);
    let mut rows = Vec::new();
    for (file, p) in &points {
        if !a.json {
            eprintln!("{}: {} PEs ...", p.name, p.pes());
        }
        let o = p
            .evaluate(threads)
            .with_context(|| format!("{file}: its workload cannot run"))?;
        rows.push((file, p, o));
    }
    let errors: Vec<f64> = rows.iter().map(|r| r.2.error).collect();
    let (median, worst) = calibration::summary(&errors);
    if let Some(path) = &a.plot {
        let published: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (r.1.published_us, r.2.emulated_us))
            .collect();
        let (lo, hi) = published
            .iter()
            .flat_map(|(x, y)| [*x, *y])
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let svg = super::plot::lines_svg(
            "wafer calibrate: emulated against published time (µs)",
            "published µs",
            "emulated µs (at the source's clock)",
            &[
                super::plot::Series {
                    name: "y = x".into(),
                    points: vec![(lo / 2.0, lo / 2.0), (hi * 2.0, hi * 2.0)],
                    joined: true,
                },
                super::plot::Series {
                    name: "published points".into(),
                    points: published,
                    joined: false,
                },
            ],
        );
        super::plot::write(path, &svg)?;
    }
    if a.json {
        let pts: Vec<_> = rows
            .iter()
            .map(|(file, p, o)| {
                json!({
                    "file": file, "name": p.name, "source": p.source, "machine": p.machine,
                    "pes": o.pes, "clock_hz": p.clock_hz, "published_us": p.published_us,
                    "published_cycles": o.published_cycles, "emulated_cycles": o.emulated_cycles,
                    "emulated_us": o.emulated_us, "error": o.error, "assumptions": p.assumptions,
                })
            })
            .collect();
        let out = json!({"points": pts, "median_abs_error": median, "worst_abs_error": worst});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{:<42} {:>8} {:>11} {:>11} {:>9} {:>11} {:>8}",
            "point", "PEs", "published", "= cycles", "emulated", "= µs", "error"
        );
        for (_, p, o) in &rows {
            println!(
                "{:<42} {:>8} {:>8.3} µs {:>11.0} {:>9} {:>8.3} µs {:>+7.1}%",
                p.name,
                o.pes,
                p.published_us,
                o.published_cycles,
                o.emulated_cycles,
                o.emulated_us,
                100.0 * o.error
            );
        }
        println!(
            "{} points: median |error| {:.1}%, worst {:.1}% (cycles at each source's own clock; timing-only emulation)",
            rows.len(),
            100.0 * median,
            100.0 * worst
        );
        for (i, (_, p, _)) in rows.iter().enumerate() {
            println!("[{}] {}: {}", i + 1, p.name, p.source);
            println!("    clock: {}", p.clock_source);
            if !p.assumptions.is_empty() {
                println!("    assumed: {}", p.assumptions);
            }
        }
    }
    if let Some(max) = a.max_error
        && 100.0 * worst > max
    {
        anyhow::bail!(
            "--max-error {max}%: the worst point is off by {:.1}%",
            100.0 * worst
        );
    }
    Ok(())
}
