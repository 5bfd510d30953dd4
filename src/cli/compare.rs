//! `wafer bench MODEL` (without `--emulator`): the wafer-vs-GPU table of
//! `wafer_report`, printed as text or JSON and drawn as bars. This module
//! only checks the flags, shows progress and prints.

use super::model::Loaded;
use anyhow::bail;
use std::path::Path;
use wafer_compiler::Compiled;
use wafer_report::{EmulateOptions, Table, WaferRow, gpu, table};

/// The flags the table takes from `wafer bench`.
pub struct Request<'a> {
    pub steps: Option<usize>,
    pub context: Option<u32>,
    pub predict: bool,
    pub gpu_specs: Option<&'a Path>,
    pub gpus: Option<&'a str>,
    pub baselines: &'a Path,
    pub plot: Option<&'a Path>,
    pub json: bool,
    /// The seed of a mixture of experts' routing in the emulated steps.
    pub expert_seed: u64,
    /// Also the time to first token for a prompt of this many positions.
    pub prompt_len: Option<u32>,
    /// Emulate each step's stages overlapped.
    pub overlap: bool,
    /// Overlapped, count how the hand-offs load the links.
    pub links: bool,
    /// Overlapped, queue the hand-offs on the links on these paths, for
    /// at most this many rounds a step.
    pub queue: Option<(wafer_compiler::decode::links::Paths, usize)>,
}

/// Emulate `steps` timing-only decode steps from `context` with a progress
/// bar, stopping at Ctrl-C; with `share`, each step's distinct stage runs
/// are shared between the MPI ranks (every rank calls this together). A
/// mixture of experts runs the experts `expert_seed`'s routing picks.
pub fn emulate(
    c: &Compiled,
    (context, steps, expert_seed): (u32, usize, u64),
    (trace, stats): (Option<usize>, bool),
    (share, overlap, links): (bool, bool, bool),
    queue: Option<(wafer_compiler::decode::links::Paths, usize)>,
    mut each: impl FnMut(&wafer_compiler::decode::Step),
) -> anyhow::Result<WaferRow> {
    let bar = match super::ranks::rank() {
        0 => indicatif::ProgressBar::new(steps as u64),
        _ => indicatif::ProgressBar::hidden(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("emulating {bar:30} {pos}/{len} steps [{elapsed}]")
            .expect("a valid template"),
    );
    let opts = EmulateOptions {
        trace,
        stats,
        cancel: Some(super::interrupt_flag()),
        share: if share {
            super::ranks::exchange()
        } else {
            None
        },
        expert_seed,
        overlap,
        links,
        queue,
    };
    let row = wafer_report::emulate(c, context, steps, &opts, |s| {
        each(s);
        bar.inc(1);
    });
    bar.finish_and_clear();
    Ok(row?)
}

/// Bars of tokens per second, wafer first, on a log scale.
pub fn svg(t: &Table) -> String {
    super::plot::bars_svg(
        &format!(
            "{} batch-1 decode, context {}: tokens/s (log scale)",
            t.model, t.context
        ),
        &t.bars(true),
    )
}

/// `wafer bench MODEL`.
pub fn run(a: &Request, l: &Loaded, c: &Compiled) -> anyhow::Result<()> {
    let steps = a.steps.unwrap_or(2);
    let max = c.options.max_context;
    if steps as u32 > max {
        bail!("--steps {steps}: the KV cache holds only {max} positions (--max-context)");
    }
    let context = match a.context {
        Some(n) if n > max - steps as u32 => bail!(
            "--context {n}: with --steps {steps} the positions run past the {max} the KV cache holds (--max-context); use 0..={}",
            max - steps as u32
        ),
        Some(n) => n,
        // The default, 128, where it fits (the table states the context).
        None => 128.min(max - steps as u32),
    };
    if let Some(n) = a.prompt_len.filter(|n| *n > max) {
        bail!(
            "--prompt-len {n}: the KV cache holds {max} positions (--max-context); use 1..={max} or compile with a larger --max-context"
        );
    }
    let wafer = if a.predict && a.overlap {
        wafer_report::predicted_overlapped(c, context)
    } else if a.predict {
        wafer_report::predicted(c, context)
    } else {
        emulate(
            c,
            (context, steps, a.expert_seed),
            (None, false),
            (true, a.overlap, a.links),
            a.queue,
            |_| {},
        )?
    };
    let gpus = table::gpus(a.gpu_specs, a.gpus)?;
    let measured = gpu::measured_in(a.baselines)?;
    let t = table(&l.name, c, wafer, &gpus, &measured)?;
    let first = match a.prompt_len {
        Some(n) => {
            let wafer = wafer_report::prefill::predicted(c, n, a.expert_seed);
            Some(wafer_report::prefill::table(&l.name, c, wafer, &gpus)?)
        }
        None => None,
    };
    // Every rank builds the same table; rank 0 prints it.
    if super::ranks::rank() != 0 {
        return Ok(());
    }
    if let Some(p) = a.plot {
        super::plot::write(p, &svg(&t))?;
    }
    if a.json {
        let mut out = t.json();
        if let Some(f) = &first {
            out["prefill"] = f.json();
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", t.text());
        if let Some(f) = &first {
            print!("{}", f.text());
        }
    }
    Ok(())
}
