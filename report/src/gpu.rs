//! GPU baselines for the wafer-vs-GPU table: the specs data file, the batch-1 decode
//! roofline, published numbers and the JSON the GPU script measures.
//!
//! A batch-1 decode step on a GPU streams every weight it uses from HBM
//! once, plus the KV cache it attends over; its arithmetic is two FLOPs per
//! weight and four per cached element per query head. The roofline is the
//! larger of the memory time and the compute time, plus one launch per
//! kernel when CUDA graphs are off.

use crate::ReportError;
use serde::Deserialize;
use std::path::Path;
use wafer_compiler::{Config, model::Family};

/// The committed data files, built in so the bench works from anywhere.
pub const GPUS_TOML: &str = include_str!("../../baselines/gpus.toml");
pub const PUBLISHED_TOML: &str = include_str!("../../baselines/published.toml");

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    pub id: String,
    pub name: String,
    pub hbm_bytes: f64,
    /// Bytes per second.
    pub hbm_bandwidth: f64,
    /// Dense FLOP/s per dtype name (`bf16`, `f16`, `f32`).
    pub peak_flops: std::collections::BTreeMap<String, f64>,
    /// Host cost of one kernel launch without CUDA graphs, µs.
    pub launch_us: f64,
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuFile {
    gpu: Vec<GpuSpec>,
}

/// A decode speed someone published.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Published {
    pub model: String,
    /// Built-in configs the row is comparable with.
    pub matches: Vec<String>,
    pub device: String,
    pub dtype: String,
    pub tokens_per_s: f64,
    pub source: String,
    pub date: String,
    /// A time to first token the same source published, where it did.
    #[serde(default)]
    pub first_token: Option<FirstToken>,
}

/// A published time to first token, and what it measures.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FirstToken {
    pub seconds: f64,
    pub what: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishedFile {
    published: Vec<Published>,
}

/// Parse a GPU specs file (`file` names it in errors).
pub fn parse_gpus(text: &str, file: &str) -> Result<Vec<GpuSpec>, ReportError> {
    let bad = |message: String| ReportError::File {
        file: file.into(),
        message,
    };
    let f: GpuFile = toml::from_str(text).map_err(|e| bad(format!("not a GPU specs file: {e}")))?;
    for g in &f.gpu {
        if !(g.hbm_bandwidth > 0.0 && g.launch_us >= 0.0)
            || g.peak_flops.values().any(|f| *f <= 0.0)
        {
            return Err(bad(format!(
                "GPU `{}` needs a positive hbm_bandwidth and peak_flops, and launch_us ≥ 0",
                g.id
            )));
        }
        if g.source.trim().is_empty() {
            return Err(bad(format!(
                "GPU `{}` has no source; every number needs one",
                g.id
            )));
        }
    }
    Ok(f.gpu)
}

pub fn parse_published(text: &str, file: &str) -> Result<Vec<Published>, ReportError> {
    let f: PublishedFile = toml::from_str(text).map_err(|e| ReportError::File {
        file: file.into(),
        message: format!("not a published-numbers file: {e}"),
    })?;
    Ok(f.published)
}

/// What one decode step at batch 1 must move and compute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeWork {
    /// Weight bytes read (each weight once; one row of the embedding).
    pub weight_bytes: f64,
    /// KV-cache bytes read at this context length.
    pub kv_bytes: f64,
    pub flops: f64,
    /// Kernels an eager implementation launches (one per graph op).
    pub kernels: u64,
    /// Bytes the GPUs must hold: every weight (the whole embedding table
    /// too) and the KV cache at this context.
    pub resident_bytes: f64,
}

/// The decode step of `c` attending over `context` cached positions, with
/// `weight_bytes` bytes a weight and `kv_bytes` a cached element;
/// `kernels` from the model's decode graph.
pub fn decode_work(
    c: &Config,
    weight_bytes: f64,
    kv_bytes: f64,
    context: u64,
    kernels: u64,
) -> DecodeWork {
    let d = c.dim as f64;
    // The embedding table is read one row per token (a separate
    // classifier whole), and a mixture of experts' picked experts only.
    let mut weights = c.n_active_params() as f64;
    if c.family == Family::Gpt2 {
        // And one row of the position table.
        weights -= c.seq_len as f64 * d - d;
    }
    let ctx = context as f64;
    let layers = c.n_layers as f64;
    let kv = 2.0 * layers * c.kv_dim() as f64 * ctx * kv_bytes;
    // Scores and the weighted sum: two FLOPs per cached element per query
    // head, for keys and for values.
    let attention = 4.0 * layers * c.dim as f64 * ctx;
    DecodeWork {
        weight_bytes: weights * weight_bytes,
        kv_bytes: kv,
        flops: 2.0 * weights + attention,
        kernels,
        resident_bytes: c.n_params() as f64 * weight_bytes + kv,
    }
}

/// One GPU's roofline for one decode step; a model that does not fit one
/// GPU's memory is split over the fewest GPUs (a power of two, as tensor
/// parallelism splits heads) whose memory holds it, each reading its share
/// of the weights and KV cache at once. The all-reduces between them are
/// not counted, so a split roofline is a lower bound.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Roofline {
    pub memory_s: f64,
    pub compute_s: f64,
    /// Zero with CUDA graphs.
    pub launch_s: f64,
    /// GPUs the weights are split over.
    pub gpus: u32,
}

impl Roofline {
    pub fn of(
        g: &GpuSpec,
        w: &DecodeWork,
        dtype: &str,
        graphs: bool,
    ) -> Result<Roofline, ReportError> {
        let peak = g.peak_flops.get(dtype).ok_or_else(|| ReportError::NoPeak {
            gpu: g.id.clone(),
            dtype: dtype.into(),
            have: g.peak_flops.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        let mut gpus = 1u32;
        while (gpus as f64) * g.hbm_bytes < w.resident_bytes && gpus < 1 << 16 {
            gpus *= 2;
        }
        let n = gpus as f64;
        Ok(Roofline {
            memory_s: (w.weight_bytes + w.kv_bytes) / (n * g.hbm_bandwidth),
            compute_s: w.flops / (n * peak),
            gpus,
            launch_s: if graphs {
                0.0
            } else {
                w.kernels as f64 * g.launch_us * 1e-6
            },
        })
    }

    /// Memory and compute overlap; launches do not.
    pub fn seconds(&self) -> f64 {
        self.memory_s.max(self.compute_s) + self.launch_s
    }

    pub fn bound(&self) -> &'static str {
        if self.memory_s >= self.compute_s {
            "memory"
        } else {
            "compute"
        }
    }
}

/// One configuration timed by `benches/gpu/decode.py`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct MeasuredRun {
    pub context: u64,
    /// `eager`, `cuda_graphs` or `compiled` (see `benches/gpu/decode.py`).
    pub mode: String,
    pub ms_per_token: f64,
}

/// A file `benches/gpu/decode.py` wrote.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Measured {
    pub model: String,
    pub dtype: String,
    pub device: String,
    pub date: String,
    pub torch: String,
    pub runs: Vec<MeasuredRun>,
    #[serde(skip)]
    pub file: String,
}

/// Every measured-baseline JSON file in `dir` (none if it does not exist).
pub fn measured_in(dir: &Path) -> Result<Vec<Measured>, ReportError> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|source| ReportError::Io {
            path: p.display().to_string(),
            source,
        })?;
        let mut m: Measured = serde_json::from_str(&text).map_err(|e| ReportError::File {
            file: p.display().to_string(),
            message: format!(
                "not a measured baseline (expected the JSON benches/gpu/decode.py writes): {e}"
            ),
        })?;
        m.file = p.display().to_string();
        out.push(m);
    }
    Ok(out)
}

/// The measured run of `m` at the context closest to `context`, per mode.
pub fn closest(m: &Measured, context: u64) -> Vec<&MeasuredRun> {
    let mut modes: Vec<&str> = m.runs.iter().map(|r| r.mode.as_str()).collect();
    modes.sort();
    modes.dedup();
    modes
        .into_iter()
        .filter_map(|mode| {
            m.runs
                .iter()
                .filter(|r| r.mode == mode)
                .min_by_key(|r| r.context.abs_diff(context))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h100() -> GpuSpec {
        parse_gpus(GPUS_TOML, "gpus.toml")
            .unwrap()
            .into_iter()
            .find(|g| g.id == "h100")
            .unwrap()
    }

    #[test]
    fn the_data_files_parse_and_every_gpu_the_issue_names_is_there() {
        let gpus = parse_gpus(GPUS_TOML, "gpus.toml").unwrap();
        let ids: Vec<_> = gpus.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(
            ids,
            ["a100-40", "a100-80", "h100", "h100-pcie", "h200", "b200"]
        );
        for g in &gpus {
            for d in ["bf16", "f16", "f32"] {
                assert!(g.peak_flops.contains_key(d), "{} lacks {d}", g.id);
            }
        }
        let p = parse_published(PUBLISHED_TOML, "published.toml").unwrap();
        assert!(
            p.iter()
                .any(|p| p.tokens_per_s == 126.9 && p.device == "H100 SXM")
        );
    }

    #[test]
    fn llama_3_1_8b_bytes_and_flops_by_hand() {
        let c = Config::built_in("llama-3.1-8b").unwrap();
        // Per layer: q,o 4096² each; k,v 4096×1024 each; gate/up/down
        // 3×4096×14336; two norms 2×4096.
        let layer = 2.0 * 4096.0 * 4096.0 + 2.0 * 1024.0 * 4096.0 + 3.0 * 14336.0 * 4096.0 + 8192.0;
        // 32 layers, the classifier 128256×4096, the final norm, one
        // embedding row.
        let weights = 32.0 * layer + 128256.0 * 4096.0 + 4096.0 + 4096.0;
        let w = decode_work(&c, 2.0, 2.0, 1000, 7);
        assert_eq!(w.weight_bytes, 2.0 * weights);
        // 32 layers × (k and v) × 1024 × 1000 positions × 2 bytes.
        assert_eq!(w.kv_bytes, 32.0 * 2.0 * 1024.0 * 1000.0 * 2.0);
        assert_eq!(w.flops, 2.0 * weights + 4.0 * 32.0 * 4096.0 * 1000.0);
        // ≈ 15.0 GB + 0.13 GB over 3.35 TB/s: ≈ 4.5 ms, memory-bound.
        let r = Roofline::of(&h100(), &w, "bf16", true).unwrap();
        let by_hand = (2.0 * weights + 131_072_000.0) / 3.35e12;
        assert!((r.memory_s - by_hand).abs() < 1e-12);
        assert!(
            (r.seconds() * 1e3 - 4.517).abs() < 0.01,
            "{}",
            r.seconds() * 1e3
        );
        assert_eq!(r.bound(), "memory");
        assert_eq!(r.launch_s, 0.0);
        // Eager: 7 launches × 4 µs more.
        let e = Roofline::of(&h100(), &w, "bf16", false).unwrap();
        assert!((e.seconds() - r.seconds() - 28e-6).abs() < 1e-12);
    }

    /// Weight-only int8 on a GPU: a byte a weight, the cache in bf16 and
    /// bf16's peak, so the 8B's memory-bound step reads about half.
    #[test]
    fn int8_weights_halve_the_weight_bytes_and_keep_bf16_compute() {
        let c = Config::built_in("llama-3.1-8b").unwrap();
        let (wb, kb, peak) = crate::table::gpu_precision("i8");
        assert_eq!((wb, kb, peak), (1.0, 2.0, "bf16"));
        let q = decode_work(&c, wb, kb, 128, 0);
        let b = decode_work(&c, 2.0, 2.0, 128, 0);
        assert_eq!(2.0 * q.weight_bytes, b.weight_bytes);
        assert_eq!((q.kv_bytes, q.flops), (b.kv_bytes, b.flops));
        let (rq, rb) = (
            Roofline::of(&h100(), &q, peak, true).unwrap(),
            Roofline::of(&h100(), &b, "bf16", true).unwrap(),
        );
        assert!(rq.seconds() < 0.51 * rb.seconds() + 1e-4, "{rq:?} {rb:?}");
    }

    /// Llama-3.1-70B in bf16 (141 GB) takes two 80 GB H100s, each reading
    /// half; 405B (812 GB) sixteen, and eight 141 GB H200s.
    #[test]
    fn a_model_larger_than_one_gpu_is_split_over_a_power_of_two() {
        let c = Config::built_in("llama-3.1-70b").unwrap();
        let w = decode_work(&c, 2.0, 2.0, 128, 0);
        let r = Roofline::of(&h100(), &w, "bf16", true).unwrap();
        assert_eq!(r.gpus, 2);
        assert!((r.memory_s - (w.weight_bytes + w.kv_bytes) / (2.0 * 3.35e12)).abs() < 1e-15);
        let big = decode_work(
            &Config::built_in("llama-3.1-405b").unwrap(),
            2.0,
            2.0,
            128,
            0,
        );
        assert_eq!(Roofline::of(&h100(), &big, "bf16", true).unwrap().gpus, 16);
        let mut h200 = h100();
        h200.hbm_bytes = 141e9;
        assert_eq!(Roofline::of(&h200, &big, "bf16", true).unwrap().gpus, 8);
        let small = decode_work(&Config::built_in("llama-3.1-8b").unwrap(), 2.0, 2.0, 128, 0);
        assert_eq!(Roofline::of(&h100(), &small, "bf16", true).unwrap().gpus, 1);
    }

    #[test]
    fn a_tied_classifier_is_read_once_and_f32_compute_can_bound() {
        let mut c = Config::built_in("llama-3.2-1b").unwrap();
        assert!(c.tied_embeddings);
        let tied = decode_work(&c, 4.0, 4.0, 0, 0);
        assert_eq!(tied.weight_bytes, 4.0 * c.n_params() as f64);
        c.tied_embeddings = false;
        let untied = decode_work(&c, 4.0, 4.0, 0, 0);
        // Untied: one more v×d classifier in n_params, but only one row of
        // the embedding is read.
        assert_eq!(
            untied.weight_bytes,
            4.0 * (c.n_params() as f64 - (c.vocab_size * c.dim - c.dim) as f64)
        );
        // A GPU with little f32 compute is compute-bound.
        let mut g = h100();
        g.peak_flops.insert("f32".into(), 1e9);
        assert_eq!(
            Roofline::of(&g, &tied, "f32", true).unwrap().bound(),
            "compute"
        );
        assert!(Roofline::of(&g, &tied, "fp8", true).is_err());
    }

    #[test]
    fn a_spec_without_a_source_is_refused() {
        let text = GPUS_TOML.replacen("source = \"NVIDIA A100", "source = \" \"#", 1);
        let e = parse_gpus(&text, "x.toml").unwrap_err().to_string();
        assert!(e.contains("a100-40") && e.contains("no source"), "{e}");
    }

    #[test]
    fn the_closest_context_per_mode() {
        let run = |context, mode: &str, ms| MeasuredRun {
            context,
            mode: mode.into(),
            ms_per_token: ms,
        };
        let m = Measured {
            model: "x".into(),
            dtype: "bf16".into(),
            device: "d".into(),
            date: "2026".into(),
            torch: "2".into(),
            runs: vec![
                run(128, "eager", 1.0),
                run(1024, "eager", 2.0),
                run(128, "cuda_graphs", 0.5),
                run(1024, "cuda_graphs", 0.9),
            ],
            file: String::new(),
        };
        let got: Vec<f64> = closest(&m, 900).iter().map(|r| r.ms_per_token).collect();
        assert_eq!(got, [0.9, 2.0]);
    }

    /// The measurements committed in `baselines/measured/` are of built-in
    /// models, time every mode at context 128 (the bench's default), and
    /// none is faster than its GPU's memory-bound roofline: a run that
    /// beat it would not have read every weight (a script that skipped a
    /// layer, say), or the spec's bandwidth would be wrong.
    #[test]
    fn the_committed_measurements_are_of_built_in_models_and_no_faster_than_the_roofline() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../baselines/measured");
        let measured = measured_in(&dir).unwrap();
        assert!(!measured.is_empty(), "no files in {}", dir.display());
        let gpus = parse_gpus(GPUS_TOML, "gpus.toml").unwrap();
        for m in &measured {
            let c = Config::built_in(&m.model)
                .unwrap_or_else(|| panic!("{}: {} is not a built-in model", m.file, m.model));
            let g = match m.device.as_str() {
                "NVIDIA H200" => gpus.iter().find(|g| g.id == "h200").unwrap(),
                d => panic!("{}: no roofline named for the device {d}", m.file),
            };
            assert_eq!(m.dtype, "bf16", "{}", m.file);
            for mode in ["eager", "cuda_graphs", "compiled"] {
                assert!(
                    m.runs.iter().any(|r| r.mode == mode && r.context == 128),
                    "{}: no {mode} run at context 128",
                    m.file
                );
            }
            for r in &m.runs {
                let w = decode_work(&c, 2.0, 2.0, r.context, 0);
                let floor = Roofline::of(g, &w, "bf16", true).unwrap().seconds() * 1e3;
                assert!(
                    r.ms_per_token > floor,
                    "{}: {} at context {} took {} ms, under the roofline's {floor} ms",
                    m.file,
                    r.mode,
                    r.context,
                    r.ms_per_token
                );
            }
        }
    }
}
