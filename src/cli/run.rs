use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};
use wafer_emulator::{Inputs, Pe, Program, RunConfig, Values, asm};

/// The built-in default: a 2-D tiled GEMV on 8 × 8 PEs.
pub const DEFAULT_PROGRAM: &str = include_str!("../../examples/gemv_8x8.wsm");

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Program to run (.wsm or .wafer); the built-in GEMV example if omitted.
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub machine: super::MachineArgs,
    /// Host input data, NAME=FILE (text numbers for .txt/.csv, raw little-endian f32 otherwise). Repeatable.
    #[arg(long = "input", value_name = "NAME=FILE")]
    pub inputs: Vec<String>,
    /// Write a Chrome/Perfetto trace (JSON) here.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Write per-PE statistics (JSON) here.
    #[arg(long)]
    pub stats: Option<PathBuf>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Print a buffer's final contents at a PE, BUF@X,Y. Repeatable.
    #[arg(long, value_name = "BUF@X,Y")]
    pub dump: Vec<String>,
    /// Stop with an error after this many cycles.
    #[arg(long, default_value_t = 100_000_000, value_parser = super::flags::count64::<1, { u64::MAX }>, allow_negative_numbers = true)]
    pub max_cycles: u64,
    #[command(flatten)]
    pub engine: super::EngineArgs,
    /// Count cycles without computing values or storing SRAM: outputs are
    /// NaN where unknown; a branch on an unknown value is reported.
    #[arg(long)]
    pub timing_only: bool,
}

fn read_values(path: &Path) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "txt" | "csv") {
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
        text.split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .enumerate()
            .map(|(i, t)| {
                t.parse::<f32>().map_err(|_| {
                    anyhow::anyhow!(
                        "{}: value {} (`{t}`) is not a number",
                        path.display(),
                        i + 1
                    )
                })
            })
            .collect()
    } else {
        if bytes.len() % 4 != 0 {
            bail!(
                "{}: {} bytes is not a whole number of little-endian f32 values (use .txt for text)",
                path.display(),
                bytes.len()
            );
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }
}

fn parse_dump(s: &str) -> anyhow::Result<(String, Pe)> {
    let parsed = s.split_once('@').and_then(|(b, xy)| {
        let (x, y) = xy.split_once(',')?;
        Some((
            b.to_string(),
            Pe::new(x.trim().parse().ok()?, y.trim().parse().ok()?),
        ))
    });
    parsed.ok_or_else(|| anyhow::anyhow!("--dump `{s}`: expected BUF@X,Y, e.g. y@0,0"))
}

fn preview<T: std::fmt::Display>(v: &[T]) -> String {
    let shown: Vec<String> = v.iter().take(8).map(|x| format!("{x}")).collect();
    if v.len() > 8 {
        format!("[{}, ... ({} values)]", shown.join(", "), v.len())
    } else {
        format!("[{}]", shown.join(", "))
    }
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let arch = a.machine.arch()?;
    let (program, name): (Program, String) = match &a.file {
        Some(f) => (super::program_file(f)?, f.display().to_string()),
        None => (
            asm::parse(DEFAULT_PROGRAM, "<built-in gemv_8x8.wsm>")
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            "built-in gemv_8x8".to_string(),
        ),
    };
    let mut inputs = Inputs::new();
    for spec in &a.inputs {
        let (n, f) = spec.split_once('=').ok_or_else(|| {
            anyhow::anyhow!(
                "--input `{}`: expected NAME=FILE",
                super::flags::shown(spec)
            )
        })?;
        let values = read_values(Path::new(f)).with_context(|| format!("--input {n}"))?;
        inputs.insert(n.to_string(), values);
    }
    let dumps = a
        .dump
        .iter()
        .map(|d| parse_dump(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cfg = RunConfig {
        max_cycles: a.max_cycles,
        trace: a.trace.is_some(),
        cancel: Some(super::interrupt_flag()),
        engine: a.engine.engine()?,
        threads: a.engine.threads(),
        timing_only: a.timing_only,
        ..RunConfig::default()
    };
    for (flag, path) in [("--trace", &a.trace), ("--stats", &a.stats)] {
        if let Some(p) = path {
            super::flags::writable(flag, p)?;
        }
    }
    let result = wafer_emulator::run(&program, &arch, &inputs, &cfg)?;
    let time_us = arch.cycles_to_us(result.cycles);

    if let Some(path) = &a.trace {
        let t = result.trace.as_ref().expect("trace was requested");
        std::fs::write(path, serde_json::to_vec(&t.to_chrome_json())?)
            .with_context(|| format!("--trace {}: cannot write", path.display()))?;
    }
    if let Some(path) = &a.stats {
        std::fs::write(path, serde_json::to_vec(&result.stats)?)
            .with_context(|| format!("--stats {}: cannot write", path.display()))?;
    }
    let mut dumped = Vec::new();
    for (buf, pe) in &dumps {
        let v = result.read_values(&program, *pe, buf).ok_or_else(|| {
            anyhow::anyhow!("--dump {buf}@{},{}: no buffer `{buf}` at {pe}", pe.x, pe.y)
        })?;
        dumped.push((format!("{buf}@{},{}", pe.x, pe.y), v));
    }
    let t = &result.stats.totals;
    if a.json {
        let out = json!({
            "program": name,
            "arch": arch.name,
            "grid": [program.width, program.height],
            "engine": result.stats.engine,
            "cycles": result.cycles,
            "clock_hz": arch.clock_hz,
            "time_us": time_us,
            "outputs": result.outputs,
            "dumps": dumped.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "totals": t,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "program   {name}: {}x{} PEs, {} code blocks, {} PEs with code",
        program.width,
        program.height,
        program.codes.len(),
        t.pes_with_code
    );
    if a.file.is_none() {
        println!(
            "what      y = W·x for a seeded random 32x32 f32 W, tiled 4x4 per PE (examples/gemv_8x8.wsm)"
        );
        println!(
            "next      wafer kernel --list · wafer kernel --report · wafer run examples/tree_reduce.wsm --trace t.json"
        );
    }
    println!(
        "machine   {} at {:.2} GHz ({} engine)",
        arch.name,
        arch.clock_hz / 1e9,
        result.stats.engine
    );
    println!("cycles    {}  ({time_us:.3} µs)", result.cycles);
    println!(
        "activity  vector datapath {} PE-cycles, scalar {} PE-cycles, {} wavelet hops, {} router stall cycles, max SRAM {} B/PE",
        t.vector_cycles, t.scalar_cycles, t.wavelet_hops, t.router_stall_cycles, t.max_sram_used
    );
    for (n, v) in &result.outputs {
        println!("output    {n} = {}", preview(v));
    }
    for (n, v) in &dumped {
        let shown = match v {
            Values::Float(v) => preview(v),
            Values::Int(v) => preview(v),
        };
        println!("dump      {n} = {shown}");
    }
    if let Some(p) = &a.trace {
        println!(
            "trace     {} (open in https://ui.perfetto.dev)",
            p.display()
        );
    }
    if let Some(p) = &a.stats {
        println!("stats     {}", p.display());
    }
    Ok(())
}
