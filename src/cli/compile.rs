use super::model::{Loaded, load};
use anyhow::{Context, bail};
use clap::Args;
use std::path::PathBuf;
use wafer_compiler::place::{GemvChoice, Options, PlacementKind, Tiles};
use wafer_compiler::region::Region;
use wafer_compiler::system::{MAX_WAFERS, Wafers};
use wafer_compiler::{Compiled, compile};
use wafer_emulator::DType;
use wafer_kernels::reduce::Strategy;

/// What `compile`, `generate` (and later `bench`) share: the model, the
/// machine and how to place it.
#[derive(Args, Debug)]
pub struct TargetArgs {
    #[command(flatten)]
    pub machine: super::MachineArgs,
    /// Weights on the wafer: f32, f16, bf16, int8 or mxfp4 (default: f32
    /// for a checkpoint, bf16 for a built-in config). int8: every
    /// projection's rows quantized to codes with a bf16 scale each; mxfp4:
    /// to E2M1 with an E8M0 scale a block of 32 (OCP MX); both dequantized
    /// on the PE by the tiled GEMV; the embedding table stays bf16.
    #[arg(long)]
    pub dtype: Option<String>,
    /// auto (the faster predicted step), pipeline or mesh.
    #[arg(long, default_value = "auto")]
    pub placement: String,
    /// Positions the KV cache holds, 1 up to the model's trained context
    /// (default: the model's, at most 2048).
    #[arg(long, value_parser = super::flags::count32::<1, { 1 << 30 }>, allow_negative_numbers = true)]
    pub max_context: Option<u32>,
    /// Reductions along lines of PEs: chain, tree or tree:K.
    #[arg(long, default_value = "tree")]
    pub reduce: String,
    /// The projections' kernel: auto (the faster predicted), tiled (the
    /// tiled GEMV) or meshgemv (WaferLLM's MeshGEMV; 16-bit weights).
    #[arg(long, default_value = "auto")]
    pub gemv: String,
    /// Which PEs to compile for: auto (the rectangle from the grid's
    /// north-west corner whose predicted step is shortest; the default
    /// without --grid) or full (the whole grid; the default with --grid).
    #[arg(long)]
    pub region: Option<String>,
    /// How many wafers (machines of --arch) to split the model over, its
    /// layers in contiguous ranges: a count, or auto (the fewest that
    /// fit, or more while the predicted step times the wafers falls).
    /// Default: one, or without --grid auto when the weights and KV cache
    /// are more than one wafer's SRAM.
    #[arg(long)]
    pub wafers: Option<String>,
    /// Mesh placement's tiles of layers: auto (the fastest predicted) or
    /// COLSxROWS (e.g. 4x3: the projections' PEs cut into 12 tiles, each
    /// holding a contiguous run of the layers; 1x1: every layer on all of
    /// them, as WaferLLM places a model).
    #[arg(long, default_value = "auto")]
    pub tiles: String,
}

impl TargetArgs {
    pub fn options(&self, l: &Loaded) -> anyhow::Result<Options> {
        let arch = self.machine.arch()?;
        let dtype = match &self.dtype {
            Some(d) => DType::parse(d)
                .filter(|d| d.is_float() || matches!(d, DType::I8 | DType::Mxfp4))
                .ok_or_else(|| {
                    anyhow::anyhow!("--dtype `{d}`: use f32, f16, bf16, int8 or mxfp4")
                })?,
            None if l.weights.is_some() => DType::F32,
            None => DType::BF16,
        };
        let placement = match self.placement.as_str() {
            "auto" => None,
            "pipeline" => Some(PlacementKind::Pipeline),
            "mesh" => Some(PlacementKind::Mesh),
            p => bail!("--placement `{p}`: use auto, pipeline or mesh"),
        };
        let gemv = GemvChoice::parse(&self.gemv).ok_or_else(|| {
            anyhow::anyhow!("--gemv `{}`: use auto, tiled or meshgemv", self.gemv)
        })?;
        if gemv == GemvChoice::Mesh && dtype.size_bytes() != 2 {
            bail!(
                "--gemv meshgemv takes 16-bit weights (WaferLLM's MeshGEMV multiplies in f16/bf16); add --dtype bf16 or --dtype f16"
            );
        }
        let reduce = Strategy::parse(&self.reduce)?;
        reduce.require_plan("--reduce")?;
        let trained = u32::try_from(l.config.seq_len).unwrap_or(u32::MAX);
        let max_context = match self.max_context {
            Some(n) if n > trained => bail!(
                "--max-context {n}: {} was trained for {trained} positions; use 1..={trained}",
                l.name
            ),
            Some(n) => n,
            None => trained.min(2048),
        };
        let region = match self.region.as_deref() {
            None if self.machine.grid.is_some() => Region::Whole,
            None | Some("auto") => Region::Search,
            Some("full") => Region::Whole,
            Some(r) => bail!("--region `{r}`: use auto or full"),
        };
        let wafers = match self.wafers.as_deref() {
            None if self.machine.grid.is_some() => Wafers::Count(1),
            None => Wafers::AsNeeded,
            Some("auto") => Wafers::Auto,
            Some(n) => match n.parse::<u32>() {
                Ok(n) if (1..=MAX_WAFERS).contains(&n) => Wafers::Count(n),
                _ => bail!("--wafers `{n}`: use a count from 1 to {MAX_WAFERS}, or auto"),
            },
        };
        let tiles = match self.tiles.as_str() {
            "auto" => None,
            t => match Tiles::parse(t) {
                Some(t) if t.count() as usize <= l.config.n_layers => Some(t),
                Some(t) => bail!(
                    "--tiles {t}: {} has {} layers, and a tile holds one at least; use at most {} tiles, or auto",
                    l.name,
                    l.config.n_layers,
                    l.config.n_layers
                ),
                None => bail!("--tiles `{t}`: use auto or COLSxROWS (e.g. 4x3)"),
            },
        };
        if tiles.is_some() && placement == Some(PlacementKind::Pipeline) {
            bail!(
                "--tiles {}: tiles of layers are mesh placement's; add --placement mesh or leave --tiles out",
                self.tiles
            );
        }
        Ok(Options {
            arch,
            dtype,
            placement,
            max_context,
            reduce,
            gemv,
            region,
            wafers,
            tiles,
        })
    }

    pub fn compile(&self, l: &Loaded) -> anyhow::Result<Compiled> {
        let o = self.options(l)?;
        compile(&l.config, l.weights.as_ref(), &o).with_context(|| format!("compiling {}", l.name))
    }

    /// [`TargetArgs::compile`], a system of wafers' parts shared among
    /// this run's MPI ranks (every rank calls it; one process compiles
    /// alone).
    pub fn compile_on_ranks(&self, l: &Loaded) -> anyhow::Result<Compiled> {
        let Some(ex) = super::ranks::exchange() else {
            return self.compile(l);
        };
        let o = self.options(l)?;
        wafer_compiler::codegen::compile_shared(&l.config, l.weights.as_ref(), &o, &*ex)
            .with_context(|| format!("compiling {}", l.name))
    }
}

#[derive(Args, Debug)]
pub struct CompileArgs {
    /// A llama2.c checkpoint, a Hugging Face directory or a built-in name
    /// (llama-3.1-8b, llama-3.1-70b, llama-3.3-70b, llama-3.1-405b,
    /// llama-3.2-1b, tinyllama-1.1b, smollm2-135m).
    pub model: String,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Write the compiled model (every stage's program) here.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Print the listing: per stage its rectangle, PEs, SRAM, colors and
    /// predicted cycles, and the totals.
    #[arg(long)]
    pub listing: bool,
    /// Print the IR of one decode step.
    #[arg(long)]
    pub ir: bool,
}

pub fn run(a: CompileArgs) -> anyhow::Result<()> {
    if let Some(out) = &a.output {
        super::flags::writable("-o", out)?;
    }
    let l = load(Some(&a.model), None)?;
    let t = std::time::Instant::now();
    let c = a.target.compile(&l)?;
    let secs = t.elapsed().as_secs_f64();
    if a.ir {
        print!("{}", c.graph);
    }
    let pos = c.options.max_context / 2;
    if a.listing {
        print!("{}", wafer_compiler::listing::listing(&c, pos));
    } else {
        let cycles = c.predicted(pos);
        println!(
            "{}: {} stages, {} on {}, {} PEs, at most {} bytes of SRAM on a PE ({}); predicted step at position {pos}: {cycles} cycles = {:.3} µs",
            l.name,
            c.stages.len(),
            c.placement(),
            c.machines(),
            c.pes_used(),
            c.sram.max_bytes,
            c.fullest_held(),
            cycles as f64 / c.options.arch.clock_hz * 1e6
        );
        let over = wafer_compiler::decode::predict::predicted(
            &c,
            pos,
            wafer_compiler::experts::DEFAULT_SEED,
        );
        println!(
            "overlapped (each stage starting on its first input, as `wafer bench` emulates it by default), the cost models' estimate: {} cycles = {:.3} µs",
            over.cycles,
            over.cycles as f64 / c.options.arch.clock_hz * 1e6
        );
        if let Some(r) = &c.region {
            println!("{} (--listing lists them)", r.summary());
        }
        if c.wafers.len() > 1 {
            print!("{}", wafer_compiler::listing::wafers(&c, pos));
        }
    }
    if let Some(out) = &a.output {
        let bytes = wafer_compiler::bundle::encode(&c);
        std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {} ({} bytes)", out.display(), bytes.len());
    }
    eprintln!("compiled in {secs:.2} s");
    Ok(())
}
