use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use std::path::Path;
use wafer_compiler::{Config, ModelSource, llama2c};

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// A built-in name (llama-3.1-8b, llama-3.1-70b, llama-3.3-70b,
    /// llama-3.1-405b, llama-3.2-1b, tinyllama-1.1b, smollm2-135m),
    /// a llama2.c .bin checkpoint, or a Hugging Face model directory.
    pub model: String,
    #[command(flatten)]
    pub machine: super::MachineArgs,
    /// Bytes per weight and cached key/value: f32, f16 or bf16; int8 (a
    /// byte a projection weight plus a bf16 scale a row) or mxfp4 (half a
    /// byte, plus a byte a block of 32), the embedding table and the cache
    /// in bf16.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// Positions the KV cache must hold (default: the model's, at most 8192).
    #[arg(long, value_parser = super::flags::count::<1, { 1 << 30 }>, allow_negative_numbers = true)]
    pub max_context: Option<usize>,
    /// Machines of --arch in the system (a model's layers split over
    /// them): their SRAM together is what the model must fit.
    #[arg(long, default_value_t = 1, value_parser = super::flags::count32::<1, { wafer_compiler::system::MAX_WAFERS as u64 }>)]
    pub wafers: u32,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A model's config from a built-in name, a checkpoint or a directory.
pub fn config(spec: &str) -> anyhow::Result<(Config, String)> {
    let source = ModelSource::resolve(spec)?;
    Ok((source.config()?, source.name()))
}

pub fn model(a: ModelArgs) -> anyhow::Result<()> {
    let arch = a.machine.arch()?;
    let (c, name) = config(&a.model)?;
    let (bytes_per, quantized) = match a.dtype.as_str() {
        "f32" => (4u64, false),
        "f16" | "bf16" => (2, false),
        "int8" | "i8" | "mxfp4" => (2, true),
        other => bail!("--dtype `{other}`: use f32, f16, bf16, int8 or mxfp4"),
    };
    let context = match a.max_context {
        Some(n) if n > c.seq_len => bail!(
            "--max-context {n}: {name} was trained for {} positions; use 1..={}",
            c.seq_len,
            c.seq_len
        ),
        Some(n) => n,
        None => c.seq_len.min(8192),
    } as u64;
    let params = c.n_params();
    let weights = match quantized {
        true => {
            let dt = wafer_emulator::DType::parse(&a.dtype).expect("checked above");
            wafer_compiler::footprint::footprint(&c, dt, 0).0
        }
        false => params * bytes_per,
    };
    let kv_per_token = 2 * c.n_layers as u64 * c.kv_dim() as u64 * bytes_per;
    let need = weights + kv_per_token * context;
    let wafer_sram = arch.n_pes() * arch.sram_bytes as u64;
    let sram = a.wafers as u64 * wafer_sram;
    let pes_needed = need.div_ceil(arch.sram_bytes as u64);
    let fits = need <= sram;
    let gb = |b: u64| b as f64 / 1e9;
    if a.json {
        let out = json!({
            "model": name, "dim": c.dim, "hidden_dim": c.hidden_dim, "layers": c.n_layers, "heads": c.n_heads, "kv_heads": c.n_kv_heads,
            "family": match c.family { wafer_compiler::model::Family::Llama => "llama", wafer_compiler::model::Family::Gpt2 => "gpt2", wafer_compiler::model::Family::GptOss => "gpt-oss" },
            "vocab": c.vocab_size, "params": params, "dtype": a.dtype, "weight_bytes": weights,
            "kv_bytes_per_token": kv_per_token, "context": context, "bytes_needed": need,
            "pes_needed": pes_needed, "arch": arch.name, "wafers": a.wafers, "pes": a.wafers as u64 * arch.n_pes(), "sram_bytes": sram, "fits": fits,
            "wafers_by_bytes": need.div_ceil(wafer_sram),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("model     {name}: {c}");
    println!(
        "params    {:.3} B{}",
        params as f64 / 1e9,
        if c.tied_embeddings {
            " (classifier tied to the embedding)"
        } else {
            ""
        }
    );
    if let Some(m) = c.moe {
        println!(
            "experts   {} a layer, {} a token: {:.3} B parameters read a token",
            m.experts,
            m.per_token,
            c.n_active_params() as f64 / 1e9
        );
    }
    println!("weights   {:.2} GB in {}", gb(weights), a.dtype);
    println!(
        "kv cache  {} KiB per token, {:.2} GB for {context} positions",
        kv_per_token / 1024,
        gb(kv_per_token * context)
    );
    println!(
        "machine   {}{}: {} PEs × {} KiB = {:.2} GB of SRAM",
        if a.wafers > 1 {
            format!("{} wafers of ", a.wafers)
        } else {
            String::new()
        },
        arch.name,
        a.wafers as u64 * arch.n_pes(),
        arch.sram_bytes / 1024,
        gb(sram)
    );
    if fits {
        println!(
            "fit       yes: weights and KV cache need at least {pes_needed} PEs ({:.1}% of the machine), before code, activations and buffers",
            100.0 * pes_needed as f64 / (a.wafers as u64 * arch.n_pes()) as f64
        );
    } else {
        let ctx_fit = sram.saturating_sub(weights) / kv_per_token.max(1);
        println!(
            "fit       no: {:.2} GB needs {pes_needed} PEs; the machine has {} PEs ({:.2} GB). {}{}--wafers {} or more (the bytes alone; `compile --wafers auto` finds the fewest that place, or more where they are faster by more than their count)",
            gb(need),
            a.wafers as u64 * arch.n_pes(),
            gb(sram),
            if bytes_per == 4 {
                "Try 16-bit weights, "
            } else {
                "Try "
            },
            if weights < sram {
                format!("a context of at most {ctx_fit} positions, or ")
            } else {
                String::new()
            },
            need.div_ceil(wafer_sram)
        );
    }
    Ok(())
}

/// The built-in default for `wafer generate`: a small trained checkpoint and
/// its tokenizer, embedded so the first command needs no download.
const DEFAULT_CHECKPOINT: &[u8] = include_bytes!("../../models/aidreams260K.bin");
const DEFAULT_TOKENIZER: &[u8] = include_bytes!("../../models/aidreams_tok512.bin");
pub const DEFAULT_NAME: &str = "aidreams260K";

/// A model ready to compile: its config, its weights (none for a built-in
/// config, whose weights are the kernels' seeded ones) and a tokenizer.
pub struct Loaded {
    pub config: Config,
    pub weights: Option<wafer_compiler::Weights>,
    pub tokenizer: Option<wafer_compiler::tokenizer::Tokenizer>,
    pub name: String,
}

/// Load MODEL (or the built-in default), and a tokenizer if one is given.
pub fn load(spec: Option<&str>, tokenizer: Option<&Path>) -> anyhow::Result<Loaded> {
    let mut l = match spec {
        None => {
            let (config, weights) = llama2c::parse(DEFAULT_CHECKPOINT, DEFAULT_NAME)?;
            let tok = wafer_compiler::tokenizer::Tokenizer::parse(
                DEFAULT_TOKENIZER,
                config.vocab_size,
                "aidreams_tok512.bin",
            )?;
            Loaded {
                config,
                weights: Some(weights),
                tokenizer: Some(tok),
                name: format!("{DEFAULT_NAME} (built-in checkpoint)"),
            }
        }
        Some(spec) => {
            let source = ModelSource::resolve(spec)?;
            let (config, weights) = source.load()?;
            let name = match &source {
                ModelSource::BuiltIn(_) => format!("{spec} (built-in config, seeded weights)"),
                _ => source.name(),
            };
            Loaded {
                config,
                weights,
                tokenizer: None,
                name,
            }
        }
    };
    if let Some(t) = tokenizer {
        l.tokenizer = Some(
            wafer_compiler::tokenizer::Tokenizer::load(t, l.config.vocab_size)
                .context("--tokenizer")?,
        );
    }
    Ok(l)
}
