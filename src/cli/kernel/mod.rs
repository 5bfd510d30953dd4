use anyhow::bail;
use clap::Args;
use std::collections::BTreeMap;
use wafer_emulator::Arch;
use wafer_emulator::{DType, RunConfig, RunError, RunResult};
use wafer_kernels::collective::{self, CollectiveOp, CollectiveSpec, Combine, Scope};
use wafer_kernels::embedding::{self, EmbeddingSpec};
use wafer_kernels::fragment::Fragment;
use wafer_kernels::gemv::{self, GemvSpec};
use wafer_kernels::reduce::Strategy;
use wafer_kernels::vector::{self, VectorOp, VectorSpec};

mod column;
mod pair;
mod report;
mod waferllm;

use column::{column, measure_vector, run_argmax, run_attention, run_rope, run_router, sizes};

#[derive(Args, Debug)]
pub struct KernelArgs {
    /// Kernel to run (see --list).
    pub name: Option<String>,
    /// Count cycles without computing values or storing weights (no
    /// comparison with the reference is then possible).
    #[arg(long)]
    pub timing_only: bool,
    #[command(flatten)]
    pub engine: super::EngineArgs,
    /// List the kernels and their parameters.
    #[arg(long)]
    pub list: bool,
    /// Shape, e.g. 4096x4096 for a GEMV's rows × columns.
    #[arg(long, allow_hyphen_values = true)]
    pub shape: Option<String>,
    /// Weight dtype: f32, f16 or bf16; for gemv also int8 (codes with a bf16 scale per row) and mxfp4 (E2M1 with an E8M0 scale per 32), dequantized on the PE
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Machine: wse2, wse3, or a TOML/JSON machine file.
    #[arg(long, default_value = "wse3")]
    pub arch: String,
    /// PE rectangle COLSxROWS; without it, the one the cost model predicts fastest.
    #[arg(long, allow_hyphen_values = true)]
    pub rect: Option<String>,
    /// Reduction strategy: chain, tree (K = 2) or tree:K.
    #[arg(long, default_value = "chain")]
    pub strategy: String,
    /// Collectives: along every row, every column, or the whole rectangle (row, col, rect).
    #[arg(long, default_value = "row")]
    pub axis: String,
    /// Reductions: how vectors combine, add or max.
    #[arg(long, default_value = "add")]
    pub combine: String,
    /// Attention: this step's position (the cache holds the positions before it).
    #[arg(long, default_value_t = 0, value_parser = super::flags::count32::<0, { 1 << 30 }>, allow_negative_numbers = true)]
    pub pos: u32,
    /// GEMV: mirror it across the diagonal (x from the west by rows, y out of
    /// the south by columns), the orientation that chains after a GEMV;
    /// --rect stays the unmirrored kernel's (4x5 runs on 5x4 PEs).
    #[arg(long)]
    pub transposed: bool,
    /// RoPE: pair layout, adjacent (llama2.c) or half (Hugging Face).
    #[arg(long, default_value = "adjacent")]
    pub layout: String,
    /// Embedding: the token id to look up.
    #[arg(long, default_value_t = 1, value_parser = super::flags::count32::<0, { u32::MAX as u64 }>, allow_negative_numbers = true)]
    pub token: u32,
    /// Attention: KV heads (one column of PEs each).
    #[arg(long, default_value_t = 1, value_parser = super::flags::count32::<1, 4096>, allow_negative_numbers = true)]
    pub kv_heads: u32,
    /// Attention: query heads sharing each KV head (grouped-query attention).
    #[arg(long, default_value_t = 1, value_parser = super::flags::count32::<1, 4096>, allow_negative_numbers = true)]
    pub group: u32,
    /// Attention: a column of PEs per query head, each with its own copy
    /// of its KV head's cache (default: a column per KV head, its query
    /// heads together)
    #[arg(long)]
    pub per_query_head: bool,
    /// attention: its columns this many PEs apart (default 1, side by
    /// side); spread, they run the same cycles, with their ports apart
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub pitch: u32,
    /// MeshGEMV: groups of rows in the allreduce's first phase (WaferLLM's
    /// `group_num`; default:
    /// the divisor of the rows nearest their square root).
    #[arg(long, value_parser = super::flags::count32::<2, 100_000>, allow_negative_numbers = true)]
    pub group_num: Option<u32>,
    /// MeshGEMV: x streamed in from the west edge and y out of the south
    /// edge, the sum in f32, as a compiled model runs it (default: x and W
    /// in SRAM and the sum in the weights' dtype, as WaferLLM's benchmark).
    #[arg(long)]
    pub streamed: bool,
    /// A prefill's batch: this many positions in one run, the weights in
    /// place (gemv, meshgemv with --streamed, rope, rmsnorm, add_rmsnorm).
    #[arg(long, default_value_t = 1, value_parser = super::flags::count32::<1, 65536>, allow_negative_numbers = true)]
    pub batch: u32,
    /// Seed of the random inputs and weights.
    #[arg(long, default_value_t = 1, value_parser = super::flags::count64::<0, { u64::MAX }>, allow_negative_numbers = true)]
    pub seed: u64,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Run every kernel at a few sizes on both presets and print measured
    /// against predicted cycles.
    #[arg(long)]
    pub report: bool,
}

const LIST: &str = "gemv       y = W·x, W tiled over the rectangle, x down the columns, partial sums reduced along rows
           --shape MxN (rows × columns)  --dtype f32|f16|bf16|int8|mxfp4 (weights; x stored alike, bf16 when quantized, sums in f32)
           --rect WxH (PE columns × rows)  --strategy chain | tree | tree:K  --transposed (x from the west, y to the south)
           (every kernel but the collectives picks its rectangle by its cost model when --rect is omitted)
gemv_pair  y = W2·(W1·x) as one program: W2 mirrored east of W1, W1's y rows streamed into W2's x
           rows across the seam; against the two apart and as the compiler's consecutive stages
           --shape KxMxN (W2 KxM, W1 MxN)  --dtype f32|f16|bf16  --rect WxH (W1's; W2 takes WxH beside it)
meshgemv   WaferLLM's MeshGEMV: y = x·W with x and W in SRAM, a 16-bit AXPY loop per PE, then its
           two-phase allreduce down the columns and a broadcast (every PE ends with its column's y)
           --shape MxN  --dtype f16|bf16  --rect WxH  --group-num G (rows split in G groups)
           --streamed (x in from the west, y out of the south, sum in f32: as a compiled model runs it)
meshgemm   WaferLLM's MeshGEMM: Y = X·W on a PxP square, Cannon's algorithm over two-hop rings (X and W
           passed on while each PE multiplies its tiles); its cost model is an estimate
           --shape MxKxN (m, k, n multiples of P)  --dtype f16|bf16  --rect PxP
broadcast  a vector entering each line's start reaches every PE       --shape N (elements)  --rect WxH  --axis row|col|rect
reduce     every PE's vector combined, out of each line's end         --shape N  --rect WxH  --axis  --combine add|max  --strategy
allreduce  every PE's vector combined, left in every PE               --shape N  --rect WxH  --axis  --combine add|max
           --strategy chain | tree:K | ring (reduce-scatter + allgather, rows or columns)
gather     every PE's vector concatenated in line order, out the end  --shape N (per PE)  --rect WxH  --axis row|col
add mul silu gelu swiglu rmsnorm layernorm softmax add_rmsnorm
           a vector down a column of PEs (segment r in from the west of PE(0,r), out to the east)
           --shape N (vector length)  --rect 1xH  --strategy (the norms' and softmax's allreduces)
attention  one decode step, KV cache in SRAM spread down one column of PEs per KV head
           --shape DxL (head dim × max context)  --kv-heads K  --group G (query heads per KV head)  --pos P
           --rect 1xH (PEs per KV head's column)  --strategy  --per-query-head (a column per query head,
           each with its own copy of its KV head's cache)  --pitch N (the columns N PEs apart)
rope       rotary position embedding of heads down a column (whole heads per PE)
           --shape HxD (heads × head dim)  --pos P  --layout adjacent|half  --rect 1xH
embedding  token id in, its table row out; the table tiled over the rectangle, rows reduced east
           --shape VxD (vocab × dim)  --dtype  --token ID  --rect WxH  --strategy
argmax     index of the largest element (ties to the lowest) of a vector down a column
           --shape N  --rect 1xH  --strategy
router     a mixture of experts' router on one PE: the K largest of E logits (ties to the lower
           expert) and their softmax weights, renormalized over the K  --shape ExK
--batch N  a prefill's N positions in one run: gemv, meshgemv --streamed, rope, rmsnorm, add_rmsnorm";

/// What running one kernel found, printed the same way for every kernel.
pub(super) struct Report {
    pub(super) what: String,
    pub(super) arch: Arch,
    pub(super) rect: (u32, u32),
    pub(super) picked: bool,
    pub(super) measured: u64,
    pub(super) predicted: u64,
    /// Values compared with the reference bit for bit; none under
    /// `--timing-only`, which computes none (nor the reference).
    pub(super) values: Option<usize>,
}

/// `--shape AxB`, or the error `missing` when it is absent.
pub(super) fn shape2(a: &KernelArgs, missing: &str) -> anyhow::Result<(u32, u32)> {
    dims(
        a.shape
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("{missing}"))?,
        "--shape",
    )
}

/// `--shape AxBxC`, or the error `missing` when it is absent; `form`
/// names the sides when they are not three positive integers.
pub(super) fn shape3(a: &KernelArgs, missing: &str, form: &str) -> anyhow::Result<[u32; 3]> {
    let shape = a
        .shape
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("{missing}"))?;
    super::flags::dims3("--shape", shape).map_err(|e| anyhow::anyhow!("{e}: {form}"))
}

/// `--dtype` as a float dtype.
pub(super) fn float_dtype(a: &KernelArgs) -> anyhow::Result<DType> {
    DType::parse(&a.dtype)
        .filter(|d| d.is_float())
        .ok_or_else(|| anyhow::anyhow!("--dtype `{}`: use f32, f16 or bf16", a.dtype))
}

pub(super) fn dims(s: &str, what: &str) -> anyhow::Result<(u32, u32)> {
    super::flags::dims(what, s)
}

/// `--shape N` (at least 1), or the error `missing` when it is absent.
fn shape1(a: &KernelArgs, missing: &str) -> anyhow::Result<u32> {
    let s = a
        .shape
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("{missing}"))?;
    super::flags::count32::<1, { u32::MAX as u64 }>(s)
        .map_err(|e| anyhow::anyhow!("--shape `{}`: {e}", super::flags::shown(s)))
}

/// How the runners run their programs (`--timing-only`, `--engine`,
/// `--threads`, Ctrl-C), handed to each, and the host time their runs took.
pub(super) struct Ctx {
    pub cfg: RunConfig,
    /// Host nanoseconds spent in the emulator's runs (not in generating
    /// the kernels or checking them).
    emulating: std::sync::atomic::AtomicU64,
    /// Cycles times placed PEs of the runs so far: the work that time
    /// stepped.
    pe_cycles: std::sync::atomic::AtomicU64,
}

impl Ctx {
    pub fn new(cfg: RunConfig) -> Ctx {
        Ctx {
            cfg,
            emulating: Default::default(),
            pe_cycles: Default::default(),
        }
    }

    /// Timing-only runs compute no values: there is nothing to compare.
    pub fn checking(&self) -> bool {
        !self.cfg.timing_only
    }

    /// `frag` run on `arch` with `inputs`, its host time counted.
    pub fn run(
        &self,
        frag: &Fragment,
        arch: &Arch,
        inputs: &BTreeMap<String, Vec<f32>>,
    ) -> Result<(BTreeMap<String, Vec<f32>>, RunResult), RunError> {
        let start = std::time::Instant::now();
        let r = frag.run(arch, inputs, &self.cfg);
        let ns = start.elapsed().as_nanos() as u64;
        (self.emulating).fetch_add(ns, std::sync::atomic::Ordering::Relaxed);
        if let Ok((_, run)) = &r {
            let work = run.cycles.saturating_mul(frag.program.placed_pes());
            (self.pe_cycles).fetch_add(work, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    /// Placed PEs times cycles the runs so far stepped, per host second.
    pub fn pe_cycles_per_second(&self) -> f64 {
        let work = self.pe_cycles.load(std::sync::atomic::Ordering::Relaxed);
        work as f64 / self.emulated_seconds().max(1e-9)
    }

    /// The report's line of the emulator's own speed; `what` says which
    /// runs it counts when there were several.
    pub fn emulated_line(&self, what: &str) -> String {
        format!(
            "emulated   in {:.3} s of host time on {} thread(s){what}: {:.3e} PE-cycles a second",
            self.emulated_seconds(),
            self.cfg.threads,
            self.pe_cycles_per_second()
        )
    }

    /// Host seconds the runs so far took.
    pub fn emulated_seconds(&self) -> f64 {
        self.emulating.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9
    }
}

pub fn kernel(a: KernelArgs) -> anyhow::Result<()> {
    let how = &Ctx::new(RunConfig {
        timing_only: a.timing_only,
        engine: a.engine.engine()?,
        threads: a.engine.threads(),
        cancel: Some(super::interrupt_flag()),
        ..RunConfig::default()
    });
    if a.list {
        println!("{LIST}");
        return Ok(());
    }
    if a.report {
        return report::run(how, a.json);
    }
    let Some(name) = a.name.as_deref() else {
        bail!("name a kernel (wafer kernel --list shows them)")
    };
    if a.streamed && name != "meshgemv" {
        bail!(
            "--streamed is MeshGEMV's (x and y as edge streams); `{}` has no such variant: leave it out",
            super::flags::shown(name)
        );
    }
    const BATCHED: [&str; 5] = ["gemv", "meshgemv", "rope", "rmsnorm", "add_rmsnorm"];
    if a.batch > 1 && !BATCHED.contains(&name) {
        bail!(
            "--batch {}: `{}` runs one position at a time; a batch runs on {}",
            a.batch,
            super::flags::shown(name),
            BATCHED.join(", ")
        );
    }
    if a.batch > 1 && (a.transposed || (name == "meshgemv" && !a.streamed)) {
        bail!(
            "--batch {}: a batch streams its positions in (meshgemv needs --streamed; gemv has no transposed batch)",
            a.batch
        );
    }
    let arch = super::machine(&a.arch, None)?;
    let strategy = Strategy::parse(&a.strategy)?;
    let report = match name {
        "gemv_pair" => return pair::run(how, &a, arch, strategy),
        "gemv" => run_gemv(how, &a, arch, strategy)?,
        "meshgemv" => waferllm::run_meshgemv(how, &a, arch)?,
        "meshgemm" => waferllm::run_meshgemm(how, &a, arch)?,
        "attention" => run_attention(how, &a, arch, strategy)?,
        "rope" => run_rope(how, &a, arch)?,
        "embedding" => run_embedding(how, &a, arch, strategy)?,
        "argmax" => run_argmax(how, &a, arch, strategy)?,
        "router" => run_router(how, &a, arch)?,
        _ => match (
            CollectiveOp::ALL.iter().find(|(_, n)| *n == name),
            VectorOp::ALL.iter().find(|(_, n)| *n == name),
        ) {
            (Some((op, _)), _) => run_collective(how, &a, arch, strategy, *op)?,
            (_, Some((op, _))) => {
                let n = shape1(&a, &format!("{name} needs --shape N (the vector length)"))?;
                let make = |h| VectorSpec {
                    w: 1,
                    op: *op,
                    n,
                    h,
                    strategy,
                    eps: 1e-5,
                    seed: a.seed,
                };
                let (h, picked) = column(&a, name, sizes(n.min(arch.grid_rows)), |h| {
                    vector::generate(&make(h), &arch).map(|_| vector::cost(&make(h), &arch))
                })?;
                let mut report = measure_vector(how, &make(h), a.batch, arch)?;
                report.picked = picked;
                report
            }
            _ => bail!("unknown kernel `{name}` (wafer kernel --list shows the kernels)"),
        },
    };
    report::print(how, &report, a.json)
}

/// `arch` mirrored across its diagonal: a kernel made for it, mirrored
/// back ([`wafer_kernels::Fragment::transposed`]), fits `arch`.
pub(super) fn mirrored(arch: &Arch) -> Arch {
    Arch {
        grid_cols: arch.grid_rows,
        grid_rows: arch.grid_cols,
        ..arch.clone()
    }
}

/// A GEMV's rectangle: `--rect`, or the one its cost model picks (then
/// `true`).
pub(super) fn gemv_rect(
    a: &KernelArgs,
    m: u32,
    n: u32,
    dtype: DType,
    strategy: Strategy,
    arch: &Arch,
) -> anyhow::Result<(u32, u32, bool)> {
    if let Some(r) = &a.rect {
        let (w, h) = dims(r, "--rect")?;
        return Ok((w, h, false));
    }
    let (w, h, _) = gemv::best_rect(m, n, dtype, strategy, arch).ok_or_else(|| {
        anyhow::anyhow!(
            "no rectangle of machine `{}` holds a {m}x{n} {dtype} GEMV",
            arch.name
        )
    })?;
    Ok((w, h, true))
}

fn run_gemv(how: &Ctx, a: &KernelArgs, arch: Arch, strategy: Strategy) -> anyhow::Result<Report> {
    let (m, n) = shape2(a, "gemv needs --shape MxN")?;
    let dtype = match DType::parse(&a.dtype) {
        Some(d @ (DType::I8 | DType::Mxfp4)) => d,
        _ => float_dtype(a).map_err(|e| anyhow::anyhow!("{e}; gemv also takes int8 and mxfp4"))?,
    };
    // A transposed GEMV is made for the machine mirrored across its
    // diagonal and mirrored back, so its rectangle (--rect, or the one
    // picked) is the unmirrored kernel's, and fits the mirrored machine.
    let made_on = match a.transposed {
        true => mirrored(&arch),
        false => arch.clone(),
    };
    let (w, h, picked) = gemv_rect(a, m, n, dtype, strategy, &made_on)?;
    let spec = GemvSpec {
        m,
        n,
        dtype,
        w,
        h,
        strategy,
        seed: a.seed,
        halves: false,
        lead: Vec::new(),
    };
    let mut report = measure_gemv(how, &spec, a.batch, a.transposed, arch)?;
    report.picked = picked;
    Ok(report)
}

/// A GEMV of `batch` positions run and, unless `--timing-only`, checked.
pub(super) fn measure_gemv(
    how: &Ctx,
    spec: &GemvSpec,
    batch: u32,
    transposed: bool,
    arch: Arch,
) -> anyhow::Result<Report> {
    let frag = match transposed {
        true => gemv::generate_batch(spec, batch, &mirrored(&arch))
            .map_err(|e| {
                anyhow::anyhow!(
                    "{e} (--transposed: the kernel is made for the machine mirrored across its diagonal, then mirrored back, so --rect is the unmirrored kernel's COLSxROWS)"
                )
            })?
            .transposed(),
        false => gemv::generate_batch(spec, batch, &arch)?,
    };
    let inputs = frag.default_inputs();
    let (outs, run) = how.run(&frag, &arch, &inputs)?;
    // The reference reads W back from every PE's image: on the 8B
    // classifier's shape on 730 x 200 PEs, 21 s of a 65 s timing-only
    // run, for a check it does not make.
    let values = same(how, "GEMV", &outs["y"], || {
        let weights = if transposed {
            gemv::weights_transposed(spec, &arch, &frag.program)
        } else {
            gemv::weights(spec, &arch, &frag.program)
        };
        gemv::reference_batch(spec, &weights, &inputs["x"])
    })?;
    let (m, n, dtype, strategy) = (spec.m, spec.n, spec.dtype, spec.strategy);
    Ok(Report {
        what: format!(
            "gemv {m}x{n} {dtype}, {strategy} reduction{}{}",
            if transposed { ", transposed" } else { "" },
            positions(batch)
        ),
        predicted: gemv::cost_batch(spec, batch, &arch),
        rect: if transposed {
            (spec.h, spec.w)
        } else {
            (spec.w, spec.h)
        },
        arch,
        picked: false,
        measured: run.cycles,
        values,
    })
}

fn run_collective(
    how: &Ctx,
    a: &KernelArgs,
    arch: Arch,
    strategy: Strategy,
    op: CollectiveOp,
) -> anyhow::Result<Report> {
    let n = shape1(
        a,
        &format!("{} needs --shape N (elements per PE)", op.name()),
    )?;
    let rect = a.rect.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "{} needs --rect WxH: the PEs taking part are the question, not a choice",
            op.name()
        )
    })?;
    let (w, h) = dims(rect, "--rect")?;
    let scope = match a.axis.as_str() {
        "row" => Scope::Row,
        "col" => Scope::Col,
        "rect" => Scope::Rect,
        other => bail!("--axis `{other}`: use row, col or rect (the whole rectangle)"),
    };
    let combine = match a.combine.as_str() {
        "add" => Combine::Add,
        "max" => Combine::Max,
        other => bail!("--combine `{other}`: use add or max"),
    };
    let spec = CollectiveSpec {
        op,
        scope,
        w,
        h,
        n,
        combine,
        strategy,
        seed: a.seed,
    };
    measure_collective(how, &spec, arch)
}

/// A collective run and, unless `--timing-only`, every line's result
/// checked: a reduce's or gather's output stream, the others' every PE.
pub(super) fn measure_collective(
    how: &Ctx,
    spec: &CollectiveSpec,
    arch: Arch,
) -> anyhow::Result<Report> {
    let op = spec.op;
    let frag = collective::generate(spec, &arch)?;
    let (outs, run) = how.run(&frag, &arch, &frag.default_inputs())?;
    let values = match how.checking() {
        true => {
            let want = collective::reference(spec, &frag.program);
            for (lane, want) in want.iter().enumerate() {
                let ok = match op {
                    CollectiveOp::Reduce | CollectiveOp::Gather => {
                        outs.get(&format!("out{lane}")) == Some(want)
                    }
                    _ => (0..spec.group_len()).all(|pos| {
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
            Some(want.iter().map(Vec::len).sum())
        }
        false => None,
    };
    let axis = match spec.scope {
        Scope::Row => "row",
        Scope::Col => "col",
        Scope::Rect => "rect",
    };
    Ok(Report {
        what: format!(
            "{} of {} elements along each {axis} ({:?}, {})",
            op.name(),
            spec.n,
            spec.combine,
            spec.strategy
        ),
        predicted: collective::cost(spec, &arch),
        arch,
        rect: (spec.w, spec.h),
        picked: false,
        measured: run.cycles,
        values,
    })
}

/// Unless `--timing-only`: the reference `want` (only then computed)
/// against the emulator's tensor bit for bit, and how many values that
/// compared.
pub(super) fn same(
    how: &Ctx,
    name: &str,
    got: &[f32],
    want: impl FnOnce() -> Vec<f32>,
) -> anyhow::Result<Option<usize>> {
    if !how.checking() {
        return Ok(None);
    }
    let want = want();
    bit_equal(name, got, &want)?;
    Ok(Some(want.len()))
}

/// Fail unless the emulator's tensor equals the reference bit for bit.
pub(super) fn bit_equal(name: &str, got: &[f32], want: &[f32]) -> anyhow::Result<()> {
    if got.len() != want.len()
        || got
            .iter()
            .zip(want)
            .any(|(g, w)| g.to_bits() != w.to_bits())
    {
        bail!(
            "the emulator's output differs from the reference: a bug in the {name} kernel or the engine"
        );
    }
    Ok(())
}

fn run_embedding(
    how: &Ctx,
    a: &KernelArgs,
    arch: Arch,
    strategy: Strategy,
) -> anyhow::Result<Report> {
    let (vocab, dim) = shape2(a, "embedding needs --shape VxD (vocab × dim)")?;
    let dtype = float_dtype(a)?;
    let make = |w, h| EmbeddingSpec {
        vocab,
        dim,
        dtype,
        w,
        h,
        strategy,
        token: a.token,
        seed: a.seed,
    };
    let (w, h, picked) = match a.rect.as_deref() {
        Some(r) => {
            let (w, h) = dims(r, "--rect")?;
            (w, h, false)
        }
        None => {
            let cands = sizes(vocab.min(arch.grid_cols)).into_iter().flat_map(|w| {
                sizes(dim.min(arch.grid_rows))
                    .into_iter()
                    .map(move |h| (w, h))
            });
            let best = cands
                .filter(|(w, h)| embedding::validate(&make(*w, *h), &arch).is_ok())
                .min_by_key(|(w, h)| (embedding::cost(&make(*w, *h), &arch, a.token), w * h));
            let (w, h) = best.ok_or_else(|| {
                anyhow::anyhow!(
                    "no rectangle of machine `{}` holds a {vocab}x{dim} {dtype} table",
                    arch.name
                )
            })?;
            (w, h, true)
        }
    };
    let spec = EmbeddingSpec {
        vocab,
        dim,
        dtype,
        w,
        h,
        strategy,
        token: a.token,
        seed: a.seed,
    };
    let mut report = measure_embedding(how, &spec, arch)?;
    report.picked = picked;
    Ok(report)
}

/// A table lookup run and, unless `--timing-only`, checked.
pub(super) fn measure_embedding(
    how: &Ctx,
    spec: &EmbeddingSpec,
    arch: Arch,
) -> anyhow::Result<Report> {
    let frag = embedding::generate(spec, &arch)?;
    let inputs = frag.default_inputs();
    let (outs, run) = how.run(&frag, &arch, &inputs)?;
    let values = same(how, "embedding", &outs["y"], || {
        embedding::reference(spec, &inputs, &frag.program)
    })?;
    Ok(Report {
        what: format!(
            "embedding {}x{} {}, token {} ({})",
            spec.vocab, spec.dim, spec.dtype, spec.token, spec.strategy
        ),
        predicted: embedding::cost(spec, &arch, spec.token),
        arch,
        rect: (spec.w, spec.h),
        picked: false,
        measured: run.cycles,
        values,
    })
}

/// How a report names a batch of positions (nothing for one).
pub(super) fn positions(batch: u32) -> String {
    match batch {
        1 => String::new(),
        b => format!(", {b} positions at once"),
    }
}
