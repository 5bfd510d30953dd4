//! Time to first token: the wafer's prefill of a prompt
//! ([`wafer_compiler::prefill`]) beside the GPUs' prefill rooflines and
//! what was published, for `wafer bench --prompt-len N`.
//!
//! A GPU's prefill is compute-bound: `2 · params · N` FLOPs (a mixture of
//! experts' active parameters: each position runs its picked experts)
//! over the dense peak, or, when longer, every weight read from HBM once
//! (a long prompt touches every expert). Attention's FLOPs, which grow
//! with `N²`, are left out, so the roofline is a lower bound, as the
//! decode's is. The model is split over as many GPUs as the decode
//! roofline's ([`gpu::Roofline`]), each doing its share at once.

use crate::ReportError;
use crate::gpu::{self, GpuSpec};
use serde_json::{Value, json};
use std::fmt::Write;
use wafer_compiler::{Compiled, prefill};

/// The wafer's time to first token for a prompt of `positions`.
#[derive(Clone, Debug, PartialEq)]
pub struct WaferPrefill {
    pub positions: u32,
    pub cycles: u64,
    pub clock_hz: f64,
    /// Always a cost-model estimate here (`wafer generate --prompt`
    /// emulates a prefill; the tests hold the two equal).
    pub emulated: bool,
    /// Stages that took batches of positions, and their largest batch.
    pub batched_stages: usize,
    pub largest_batch: u32,
    /// The experts' routing seed (a mixture of experts).
    pub expert_seed: Option<u64>,
    /// Cycles by layer kind ([`crate::wafer::kind`]), and the hand-offs'.
    pub by_kind: Vec<(&'static str, u64)>,
    pub handoff_cycles: u64,
}

impl WaferPrefill {
    pub fn us(&self) -> f64 {
        self.cycles as f64 / self.clock_hz * 1e6
    }
}

/// One GPU's prefill roofline.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuPrefill {
    pub device: String,
    pub gpus: u32,
    pub compute_s: f64,
    pub memory_s: f64,
}

impl GpuPrefill {
    pub fn seconds(&self) -> f64 {
        self.compute_s.max(self.memory_s)
    }
}

/// A published time to first token for the model.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishedFirstToken {
    pub device: String,
    pub seconds: f64,
    pub what: String,
    pub source: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PrefillTable {
    pub model: String,
    pub wafer: WaferPrefill,
    pub gpus: Vec<GpuPrefill>,
    pub published: Vec<PublishedFirstToken>,
}

/// The wafer's prefill of `positions` from the cost models, a mixture of
/// experts routed by `expert_seed` at each position, every position fed
/// the token a timing-only step is.
pub fn predicted(c: &Compiled, positions: u32, expert_seed: u64) -> WaferPrefill {
    let plan = prefill::plan(c, positions);
    let ran: Vec<Vec<bool>> = (0..positions).map(|p| c.runs(p, expert_seed)).collect();
    let runs = prefill::stage_predictions(c, &plan, 0, &ran, &[]);
    let handoffs = prefill::stage_handoffs(c, &plan, 0, &ran);
    let mut by_kind: std::collections::BTreeMap<&'static str, u64> = Default::default();
    for (site, cycles) in c.sites.iter().zip(&runs) {
        *by_kind.entry(crate::wafer::kind(&site.kernel)).or_default() += cycles;
    }
    let mut by_kind: Vec<(&'static str, u64)> = by_kind.into_iter().collect();
    by_kind.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
    let batched: Vec<u32> = plan
        .stages
        .iter()
        .map(|s| s.batch)
        .filter(|b| *b > 1)
        .collect();
    WaferPrefill {
        positions,
        cycles: runs.iter().sum::<u64>() + handoffs.iter().sum::<u64>(),
        clock_hz: c.options.arch.clock_hz,
        emulated: false,
        batched_stages: batched.len(),
        largest_batch: batched.iter().copied().max().unwrap_or(1),
        expert_seed: c.config.moe.is_some().then_some(expert_seed),
        by_kind,
        handoff_cycles: handoffs.iter().sum(),
    }
}

/// The prefill table: the wafer's, each GPU's roofline, and published
/// times to first token for the model (a built-in's).
pub fn table(
    model: &str,
    c: &Compiled,
    wafer: WaferPrefill,
    gpus: &[GpuSpec],
) -> Result<PrefillTable, ReportError> {
    let dtype = c.options.dtype.to_string();
    let (weight_bytes, kv_bytes, flops_dtype) = crate::table::gpu_precision(&dtype);
    let n = wafer.positions as u64;
    let work = gpu::decode_work(&c.config, weight_bytes, kv_bytes, n, 0);
    let flops = 2.0 * c.config.n_active_params() as f64 * n as f64;
    let all_weights = c.config.n_params() as f64 * weight_bytes;
    let mut rows = Vec::new();
    for g in gpus {
        let split = gpu::Roofline::of(g, &work, flops_dtype, true)?;
        let peak = g.peak_flops[flops_dtype];
        let k = split.gpus as f64;
        rows.push(GpuPrefill {
            device: g.name.clone(),
            gpus: split.gpus,
            compute_s: flops / (k * peak),
            memory_s: all_weights / (k * g.hbm_bandwidth),
        });
    }
    let config_name = crate::table::builtin_name(&c.config, model);
    let published = gpu::parse_published(gpu::PUBLISHED_TOML, "baselines/published.toml")?
        .into_iter()
        .filter(|p| config_name.is_some_and(|n| p.matches.iter().any(|m| m == n)))
        .filter_map(|p| {
            let f = p.first_token?;
            Some(PublishedFirstToken {
                device: p.device,
                seconds: f.seconds,
                what: f.what,
                source: p.source,
            })
        })
        .collect();
    Ok(PrefillTable {
        model: model.to_string(),
        wafer,
        gpus: rows,
        published,
    })
}

impl PrefillTable {
    pub fn text(&self) -> String {
        let w = &self.wafer;
        let mut t = String::new();
        writeln!(
            t,
            "time to first token, a prompt of {} positions (prefill):",
            w.positions
        )
        .unwrap();
        let how = if w.emulated {
            "emulated"
        } else {
            "cost-model estimate"
        };
        writeln!(
            t,
            "  wafer ({how}): {:.1} µs ({} cycles); {} stages took batches of up to {} positions a run (projections as GEMMs, norms, RoPE, element-wise, combine), the others a position at a time{}",
            w.us(),
            w.cycles,
            w.batched_stages,
            w.largest_batch,
            match w.expert_seed {
                Some(s) => format!("; experts routed by seed {s}"),
                None => String::new(),
            }
        )
        .unwrap();
        let share = |c: u64| 100.0 * c as f64 / w.cycles.max(1) as f64;
        let mut parts = vec![format!("hand-offs {:.0} %", share(w.handoff_cycles))];
        parts.extend(
            w.by_kind
                .iter()
                .map(|(k, c)| format!("{k} {:.0} %", share(*c))),
        );
        writeln!(t, "  where its time goes: {}", parts.join(", ")).unwrap();
        for g in &self.gpus {
            let bound = if g.compute_s >= g.memory_s {
                "compute"
            } else {
                "memory"
            };
            let ratio = w.us() / (g.seconds() * 1e6);
            writeln!(
                t,
                "  {}{}: roofline {:.1} µs ({bound}-bound; {})",
                if g.gpus > 1 {
                    format!("{}x ", g.gpus)
                } else {
                    String::new()
                },
                g.device,
                g.seconds() * 1e6,
                match ratio >= 1.0 {
                    true => format!("the wafer takes {ratio:.2}x as long"),
                    false => format!("the wafer is {:.2}x faster", 1.0 / ratio),
                }
            )
            .unwrap();
        }
        for p in &self.published {
            writeln!(
                t,
                "  published, {}: {:.2} s ({}); {}",
                p.device, p.seconds, p.what, p.source
            )
            .unwrap();
        }
        if self.published.is_empty() {
            writeln!(t, "  published: no time to first token for this model").unwrap();
        }
        writeln!(
            t,
            "  GPU prefill roofline: 2 · active params · positions FLOPs at the dense peak, or every weight read once if longer; attention's FLOPs left out (a lower bound)"
        )
        .unwrap();
        t
    }

    pub fn json(&self) -> Value {
        let w = &self.wafer;
        json!({
            "positions": w.positions,
            "wafer": {
                "ttft_us": w.us(),
                "prefill_cycles": w.cycles,
                "emulated": w.emulated,
                "batched_stages": w.batched_stages,
                "largest_batch": w.largest_batch,
                "expert_seed": w.expert_seed,
                "handoff_cycles": w.handoff_cycles,
                "by_kind": w.by_kind.iter().map(|(k, c)| (k.to_string(), json!(c))).collect::<serde_json::Map<_, _>>(),
            },
            "gpus": self.gpus.iter().map(|g| json!({
                "device": g.device,
                "gpus": g.gpus,
                "ttft_us": g.seconds() * 1e6,
                "compute_us": g.compute_s * 1e6,
                "memory_us": g.memory_s * 1e6,
            })).collect::<Vec<_>>(),
            "published": self.published.iter().map(|p| json!({
                "device": p.device,
                "seconds": p.seconds,
                "what": p.what,
                "source": p.source,
            })).collect::<Vec<_>>(),
        })
    }
}
