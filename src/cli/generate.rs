use super::compile::TargetArgs;
use super::model::load;
use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use wafer_compiler::decode::{Decoder, generate};
use wafer_compiler::prefill::Progress;
use wafer_compiler::reference;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A llama2.c checkpoint, a Hugging Face directory or a built-in name;
    /// with none, the built-in aidreams260K checkpoint and its tokenizer.
    pub model: Option<String>,
    /// A llama2.c tokenizer (.bin) to encode the prompt and print text.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Text to start from (needs a tokenizer); prefilled on the wafer.
    #[arg(long, conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,
    /// A prompt as token ids, comma-separated (for a model without a
    /// tokenizer); prefilled on the wafer.
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    /// Positions to run, the prompt's included (as llama2.c's run.c counts).
    #[arg(long, default_value_t = 64, value_parser = super::flags::count::<1, 1_000_000>, allow_negative_numbers = true)]
    pub steps: usize,
    /// 0: greedy, the argmax taken on the wafer. Above 0: the host samples
    /// from the wafer's logits at this temperature (seeded by --seed).
    #[arg(long, default_value_t = 0.0, value_parser = super::flags::temperature, allow_negative_numbers = true)]
    pub temperature: f32,
    #[arg(long, default_value_t = 42, value_parser = super::flags::count64::<0, { u64::MAX }>, allow_negative_numbers = true)]
    pub seed: u64,
    /// Also run the CPU reference (f32) and compare logits step by step.
    #[arg(long)]
    pub check: bool,
    /// Refuse runs the reference engine would take longer than this over
    /// (estimated from the compiled stages before starting).
    #[arg(long, default_value_t = 30.0, value_parser = super::flags::positive, allow_negative_numbers = true)]
    pub max_minutes: f64,
    #[command(flatten)]
    pub engine: super::EngineArgs,
    /// Count cycles only: no arithmetic, no weights stored (the logits and
    /// tokens are then unknown). The default for a built-in model whose
    /// weights would not fit in half of this machine's memory.
    #[arg(long)]
    pub timing_only: bool,
    /// Run each decode step's stages one after another, meeting at
    /// barriers (as `wafer bench --barriers`; the default before
    /// 2026-12-05), the predicted cycles the barriers' cost model. By
    /// default the stages overlap: a stage starts once its first input
    /// has arrived and its PEs are free, and the predicted cycles are the
    /// cost models' estimate of the overlapped step. A prompt's prefill
    /// runs stage by stage either way.
    #[arg(long)]
    pub barriers: bool,
    /// The default since 2026-12-05 (each step's stages overlapped);
    /// kept so that older commands still run.
    #[arg(long, hide = true, conflicts_with = "barriers")]
    pub overlap: bool,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl GenerateArgs {
    /// Whether each step's stages overlap: the default, `--barriers` not
    /// given.
    fn overlapped(&self) -> bool {
        !self.barriers
    }
}

/// Physical memory in bytes (Linux), if known.
/// The largest |a − b|, NaN if either holds one.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, nan_max)
}

fn nan_max(m: f32, d: f32) -> f32 {
    if m.is_nan() || d.is_nan() {
        f32::NAN
    } else {
        m.max(d)
    }
}

fn host_memory() -> Option<u64> {
    super::proc_kib("/proc/meminfo", "MemTotal:").map(|k| k * 1024)
}

/// A small, seeded sampler (xorshift64*): the same seed gives the same text.
fn sampler(temperature: f32, seed: u64) -> impl FnMut(&[f32]) -> u32 {
    let mut state = seed.max(1);
    move |logits: &[f32]| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let u = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f64 / (1u64 << 24) as f64;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let p: Vec<f64> = logits
            .iter()
            .map(|l| (((l - max) / temperature) as f64).exp())
            .collect();
        let sum: f64 = p.iter().sum();
        let mut acc = 0.0;
        for (i, v) in p.iter().enumerate() {
            acc += v / sum;
            if u < acc {
                return i as u32;
            }
        }
        (p.len() - 1) as u32
    }
}

/// Token bytes to text as they stream: a character split over two tokens
/// (a multi-byte UTF-8 sequence, or `<0xXX>` byte tokens) is printed once
/// whole, not as two replacement characters.
#[derive(Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// The text that is complete after `bytes`.
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..good]).expect("valid prefix"));
                    match e.error_len() {
                        // An incomplete sequence at the end: wait for more.
                        None => {
                            self.pending.drain(..good);
                            return out;
                        }
                        // Bytes no character starts with: shown as such.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..good + n);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left when the stream ends.
    fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    let l = load(a.model.as_deref(), a.tokenizer.as_deref())?;
    if a.temperature < 0.0 || !a.temperature.is_finite() {
        bail!(
            "--temperature {}: use 0 (greedy) or a positive number",
            a.temperature
        );
    }
    let prompt = match (&a.prompt, &l.tokenizer) {
        (None, _) if a.prompt_ids.is_some() => {
            let ids = a.prompt_ids.clone().unwrap_or_default();
            let vocab = l.config.vocab_size;
            if let Some(t) = ids.iter().find(|t| **t as usize >= vocab) {
                bail!(
                    "--prompt-ids: token {t} is outside {}'s vocabulary of {vocab}",
                    l.name
                );
            }
            ids
        }
        (None, _) => Vec::new(),
        (Some(p), Some(t)) => t.encode(p).context("--prompt")?,
        (Some(_), None) => bail!("--prompt needs --tokenizer (the model has none built in)"),
    };
    let check = match (a.check, &l.weights) {
        (false, _) => None,
        (true, Some(w)) => Some(reference::Model::load(w, &l.config)?),
        (true, None) => bail!(
            "--check needs a checkpoint: a built-in config's weights live only in the compiled program"
        ),
    };
    let c = a.target.compile(&l)?;
    let arch = &c.options.arch;
    let max = c.options.max_context as usize;
    if a.steps > max {
        bail!(
            "--steps {}: the KV cache holds {max} positions (--max-context; {} was trained for {}); use 1..={max}",
            a.steps,
            l.name,
            l.config.seq_len
        );
    }
    if prompt.len() >= a.steps {
        bail!(
            "{} is {} tokens: --steps {} must be larger (the steps include the prompt's positions)",
            if a.prompt_ids.is_some() {
                "--prompt-ids"
            } else {
                "--prompt"
            },
            prompt.len(),
            a.steps
        );
    }
    let weight_bytes = l.config.n_params() * c.options.dtype.size_bytes() as u64;
    let timing_only = a.timing_only
        || (l.weights.is_none() && host_memory().is_some_and(|m| weight_bytes > m / 2));
    if timing_only && !a.timing_only {
        eprintln!(
            "{}: its {:.1} GB of {} weights would not fit in half of this machine's {:.1} GB of memory: running timing-only (exact cycles, no values; --timing-only says so explicitly)",
            l.name,
            weight_bytes as f64 / 1e9,
            c.options.dtype,
            host_memory().unwrap_or(0) as f64 / 1e9
        );
    }
    if timing_only && check.is_some() {
        bail!(
            "--check compares values, which --timing-only does not compute: use one or the other"
        );
    }
    let clock_hz = arch.clock_hz;
    if !a.json {
        eprintln!(
            "{}: {} stages, {} on {} ({} PEs), weights {}",
            l.name,
            c.stages.len(),
            c.placement(),
            c.machines(),
            c.pes_used(),
            c.options.dtype
        );
        if let Some(r) = &c.region {
            eprintln!("{}", r.summary());
        }
    }
    // The reference engine steps every PE of every stage every cycle, at
    // about 10 M PE-cycles per second here (`cargo bench --bench
    // reference_engine`); say up front what a run would cost.
    const PE_CYCLES_PER_S: f64 = 1e7;
    let work = c.emulation_work(0) as f64 * a.steps.min(c.options.max_context as usize) as f64;
    let minutes = work / PE_CYCLES_PER_S / 60.0;
    if minutes > a.max_minutes {
        bail!(
            "emulating {} steps of {} would step about {work:.1e} PE-cycles on the reference engine, about {minutes:.0} minutes here (limit --max-minutes {}). `wafer compile` gives its predicted latency at once; fewer --steps, a smaller --grid or a larger --max-minutes run it",
            a.steps,
            l.name,
            a.max_minutes
        );
    }
    let mut d = Decoder::new(&c);
    d.cancel_on(super::interrupt_flag());
    d.engine(a.engine.engine()?);
    d.threads(a.engine.threads());
    d.timing_only(timing_only);
    d.overlap(a.overlapped());
    // Text mode streams the tokens; JSON mode shows a bar on a terminal.
    let bar = if a.json {
        indicatif::ProgressBar::new(a.steps.min(c.options.max_context as usize) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tokens {msg} [{elapsed}]")
            .expect("a valid template"),
    );
    let mut emitted = Vec::new();
    let mut cycles = Vec::new();
    let mut kv = check.as_ref().map(|_| reference::KvCache::new(&l.config));
    let mut worst: f32 = 0.0;
    let mut prev = wafer_compiler::tokenizer::BOS;
    let mut input = wafer_compiler::tokenizer::BOS;
    let mut pos = 0usize;
    let mut sample = sampler(a.temperature, a.seed);
    let mut pick = |logits: &[f32]| sample(logits);
    let sampling: Option<&mut wafer_compiler::decode::Sampler> = if a.temperature > 0.0 {
        Some(&mut pick)
    } else {
        None
    };
    let mut check_err = None;
    let mut predicted = Vec::new();
    // The overlapped estimate's plan, made once for every step's.
    let predictor = a
        .overlapped()
        .then(|| wafer_compiler::decode::predict::Predictor::new(&c));
    // Overlapped: the most stages a step's consumers held back, and the
    // most passes a step took to settle its holds.
    let (mut held, mut passes) = (0usize, 0usize);
    // Overlapped: what the receives that parked early inputs took.
    let mut parked: Option<wafer_compiler::decode::park::Summary> = None;
    let mut text = Utf8Stream::default();
    // A prompt runs as one prefill on the wafer (BOS and the prompt's
    // positions at once); without one, the first step is the prefill.
    let mut prefilled: Option<(u64, u64, u32)> = None;
    let mut on = |progress: Progress| match progress {
        Progress::Step { next, step } => {
            cycles.push(step.cycles);
            held = held.max(step.stage_held.iter().filter(|h| **h).count());
            passes = passes.max(step.passes);
            if let Some(p) = step.parked {
                parked = Some(parked.map_or(p, |q| q.max(p)));
            }
            emitted.push(next);
            bar.inc(1);
            bar.set_message(format!(
                "{:.3} µs/token",
                step.cycles as f64 / clock_hz * 1e6
            ));
            predicted.push(match &predictor {
                Some(p) => {
                    let seed = wafer_compiler::experts::DEFAULT_SEED;
                    p.at(&c, pos as u32, seed).cycles
                }
                None => c.predicted_ran(pos as u32, input, &step.stage_ran),
            });
            if let (Some(m), Some(kv)) = (&check, kv.as_mut()) {
                let want = m.forward(input, pos, kv);
                let diff = max_diff(&want, &step.logits);
                worst = nan_max(worst, diff);
                if diff.is_nan() && check_err.is_none() {
                    check_err = Some(format!(
                        "position {pos}: the CPU reference's logits hold NaN"
                    ));
                }
                if pos >= prompt.len()
                    && reference::argmax(&want) != step.next
                    && check_err.is_none()
                {
                    check_err = Some(format!(
                        "position {pos}: the wafer picked {}, the reference {} (max |Δlogit| {diff:e})",
                        step.next,
                        reference::argmax(&want)
                    ));
                }
            }
            if !a.json && !timing_only {
                match &l.tokenizer {
                    Some(t) => print!("{}", text.push(&t.decode(prev, next))),
                    None => print!("{next} "),
                }
                let _ = std::io::stdout().flush();
            }
            prev = next;
            input = next;
            pos += 1;
        }
        Progress::Prefilled { first, prefill: pf } => {
            let want =
                wafer_compiler::prefill::predicted(&c, &pf.plan, pf.start, &pf.ran, &pf.tokens);
            prefilled = Some((pf.cycles, want, pf.positions));
            bar.inc(pf.positions as u64);
            // The reference runs the prompt's positions one by one.
            if let (Some(m), Some(kv)) = (&check, kv.as_mut()) {
                let mut logits = Vec::new();
                for (p, t) in std::iter::once(input)
                    .chain(prompt.iter().copied())
                    .enumerate()
                {
                    logits = m.forward(t, p, kv);
                }
                let diff = max_diff(&logits, &pf.logits);
                worst = nan_max(worst, diff);
                if diff.is_nan() {
                    check_err = Some("the prefill: the CPU reference's logits hold NaN".into());
                } else if reference::argmax(&logits) != pf.next {
                    check_err = Some(format!(
                        "the prefill: the wafer picked {}, the reference {} (max |Δlogit| {diff:e})",
                        pf.next,
                        reference::argmax(&logits)
                    ));
                }
            }
            let mut shown = std::iter::once(prev)
                .chain(prompt.iter().copied())
                .chain([first]);
            let mut from = shown.next().expect("BOS leads");
            for t in shown {
                emitted.push(t);
                if !a.json && !timing_only {
                    match &l.tokenizer {
                        Some(tk) => print!("{}", text.push(&tk.decode(from, t))),
                        None => print!("{t} "),
                    }
                }
                from = t;
            }
            let _ = std::io::stdout().flush();
            prev = first;
            input = first;
            pos = pf.positions as usize;
        }
    };
    let result = if prompt.is_empty() {
        generate(&mut d, &prompt, a.steps, sampling, |next, step| {
            on(Progress::Step { next, step })
        })
    } else {
        wafer_compiler::prefill::generate(&mut d, &prompt, a.steps, sampling, on)
    };
    bar.finish_and_clear();
    if !a.json && !timing_only {
        print!("{}", text.finish());
    }
    let (tokens, interrupted) = match result {
        Ok(t) => (t, false),
        Err(wafer_compiler::decode::DecodeError::Interrupted { .. }) => {
            // run.c stops at BOS without printing it; so does the summary.
            emitted.retain(|t| *t != wafer_compiler::tokenizer::BOS);
            (emitted, true)
        }
        Err(e) => return Err(e.into()),
    };
    let clock = arch.clock_hz;
    // Time to first token: the prefill, or (no prompt) the first step.
    let (ttft, ttft_predicted, prefill_positions) = match prefilled {
        Some(p) => p,
        None => (
            cycles.first().copied().unwrap_or(0),
            predicted.first().copied().unwrap_or(0),
            1,
        ),
    };
    let ttft_us = ttft as f64 / clock * 1e6;
    let us: Vec<f64> = cycles.iter().map(|c| *c as f64 / clock * 1e6).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let text = l
        .tokenizer
        .as_ref()
        .filter(|_| !timing_only)
        .map(|t| t.text(&tokens));
    // Timing-only tokens are placeholders (0 fed back), not the model's.
    let tokens = (!timing_only).then_some(tokens);
    if a.json {
        let out = json!({
            "model": l.name,
            "arch": arch.name,
            "placement": c.kind.name(),
            "tiles": c.wafers.iter().map(|w| w.tiles.to_string()).collect::<Vec<_>>(),
            "dtype": c.options.dtype.to_string(),
            "pes": c.pes_used(),
            "region": c.region.as_ref().map(wafer_report::table::region_json),
            "wafers": c.wafers.len(),
            "tokens": tokens,
            "text": text,
            "ttft_us": ttft_us,
            "prefill_cycles": ttft,
            "prefill_predicted_cycles": ttft_predicted,
            "prefill_positions": prefill_positions,
            "per_token_cycles": cycles,
            "per_token_us": us,
            "predicted_cycles": predicted,
            "mean_token_us": mean(&us),
            "clock_hz": clock,
            "check_max_abs_logit_diff": check.as_ref().map(|_| worst),
            "interrupted": interrupted,
            "timing_only": timing_only,
            "overlapped": a.overlapped(),
            "held": a.overlapped().then(|| serde_json::json!({
                "stages": held, "passes": passes,
            })),
            "parked": parked.filter(|p| p.wavelets > 0),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!();
        if timing_only {
            println!("timing-only: cycles are exact; no values were computed");
        }
        if interrupted {
            println!("interrupted (Ctrl-C): the summary covers the steps that ran");
        }
        println!(
            "{} tokens; per token on the emulated {}{}: mean {:.0} cycles = {:.3} µs ({:.0} tokens/s), first {} cycles, last {} cycles",
            cycles.len(),
            c.machines(),
            if a.overlapped() {
                ", stages overlapped"
            } else {
                ", stages one after another"
            },
            mean(&cycles.iter().map(|c| *c as f64).collect::<Vec<_>>()),
            mean(&us),
            1e6 / mean(&us),
            cycles.first().unwrap_or(&0),
            cycles.last().unwrap_or(&0)
        );
        println!(
            "time to first token: {ttft} cycles = {ttft_us:.3} µs, a prefill of {prefill_positions} position{} (BOS{}; predicted {ttft_predicted})",
            if prefill_positions == 1 { "" } else { "s" },
            if prefilled.is_some() {
                " and the prompt at once"
            } else {
                ": the first step"
            }
        );
        let (e, p) = (
            cycles.iter().sum::<u64>() as f64,
            predicted.iter().sum::<u64>() as f64,
        );
        println!(
            "the cost models {} {p:.0} cycles {}, emulated {e:.0} (ratio {:.3})",
            if a.overlapped() {
                "estimated the steps overlapped at"
            } else {
                "predicted"
            },
            if prefilled.is_some() {
                "for the decode steps after the prefill"
            } else {
                "in all"
            },
            e / p.max(1.0)
        );
        if a.overlapped() && held == 0 {
            println!("no stage was held back by its consumers (no route's buffers filled)");
        } else if a.overlapped() {
            println!(
                "held back by their consumers (a route's buffers full): at most {held} stages a step, settled in at most {passes} pass(es) of a step"
            );
        }
        if let Some(p) = parked.filter(|p| p.wavelets > 0) {
            println!(
                "parked: at most {} input wavelets a step reached their consumer before its PEs were free, received into SRAM on {} PEs, at most {} open at once on a PE (their writes are not emulated)",
                p.wavelets, p.pes, p.most_receives
            );
        }
        if check.is_some() {
            println!("check: logits within {worst:e} of the f32 CPU reference at every step");
        }
        if a.model.is_none() {
            println!(
                "next: wafer bench llama-3.1-8b --predict (8B on WSE-3 against GPUs) · wafer view --screenshot v.png (heatmaps) · wafer generate --help"
            );
        }
    }
    if let Some(e) = check_err {
        bail!("--check: {e}");
    }
    Ok(())
}
