//! The wafer-vs-GPU table: per-token decode latency on the emulated wafer
//! ([`crate::wafer`]: or the cost models' prediction, labelled as such)
//! next to GPU baselines (roofline from `baselines/gpus.toml`, measured JSON from
//! `benches/gpu/decode.py`, published numbers), every number with its
//! origin; as text and as JSON.

use crate::ReportError;
use crate::gpu::{self, DecodeWork, GpuSpec, Measured, Published, Roofline};
use crate::wafer::WaferRow;
use serde_json::{Value, json};
use std::path::Path;
use wafer_compiler::place::{Tiles, tiles_phrase};
use wafer_compiler::{Compiled, Config};

/// How many of a queued step's most delayed hand-offs the table names
/// (the JSON has them all).
const QUEUE_WAITS_SHOWN: usize = 5;

/// One GPU row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuRow {
    pub device: String,
    /// `roofline, CUDA graphs`, `measured, eager`, `published`, ...
    pub how: String,
    pub seconds_per_token: f64,
    pub bound: Option<&'static str>,
    /// Index into the sources list.
    pub source: usize,
}

/// Everything `wafer bench` prints, built before printing so the text and
/// JSON forms (and the snapshot tests) see the same numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub model: String,
    pub arch: String,
    pub placement: String,
    /// Mesh placement's tiles of layers, one per wafer.
    pub tiles: Vec<Tiles>,
    pub dtype: String,
    pub context: u32,
    pub work: DecodeWork,
    pub wafer: WaferRow,
    pub gpus: Vec<GpuRow>,
    pub sources: Vec<String>,
}

/// The GPU rows for `config`: rooflines for `gpus`, then measured runs,
/// then published numbers that match the model.
#[allow(clippy::too_many_arguments)]
pub fn gpu_rows(
    config_name: Option<&str>,
    work: &DecodeWork,
    flops_dtype: &str,
    dtype: &str,
    context: u32,
    gpus: &[GpuSpec],
    measured: &[Measured],
    published: &[Published],
    sources: &mut Vec<String>,
) -> Result<Vec<GpuRow>, ReportError> {
    let mut cite = |s: String| match sources.iter().position(|x| *x == s) {
        Some(i) => i,
        None => {
            sources.push(s);
            sources.len() - 1
        }
    };
    let mut rows = Vec::new();
    for g in gpus {
        for graphs in [true, false] {
            let r = Roofline::of(g, work, flops_dtype, graphs)?;
            let source = cite(match r.gpus {
                1 => format!("{} roofline: {}", g.name, g.source),
                n => format!(
                    "{} roofline over {n} GPUs (the fewest whose memory holds the weights and KV cache; each reads its share, as tensor parallelism splits them; the all-reduces between them are not counted, so this is a lower bound): {}",
                    g.name, g.source
                ),
            });
            rows.push(GpuRow {
                device: match r.gpus {
                    1 => g.name.clone(),
                    n if n <= 8 => format!("{n}x {} (one node)", g.name),
                    n => format!("{n}x {} ({} nodes of 8)", g.name, n / 8),
                },
                how: if graphs {
                    "roofline, CUDA graphs".into()
                } else {
                    format!("roofline, eager ({} launches)", work.kernels)
                },
                seconds_per_token: r.seconds(),
                bound: Some(r.bound()),
                source,
            });
        }
    }
    for m in measured {
        if config_name != Some(m.model.as_str()) || m.dtype != dtype {
            continue;
        }
        let source = cite(format!(
            "measured on {} ({}, torch {}) by benches/gpu/decode.py: {}",
            m.device, m.date, m.torch, m.file
        ));
        for r in gpu::closest(m, context as u64) {
            rows.push(GpuRow {
                device: m.device.clone(),
                how: format!("measured, {} at context {}", r.mode, r.context),
                seconds_per_token: r.ms_per_token * 1e-3,
                bound: None,
                source,
            });
        }
    }
    for p in published {
        if !config_name.is_some_and(|n| p.matches.iter().any(|m| m == n)) {
            continue;
        }
        let source = cite(format!(
            "{} ({}, {}): {}",
            p.model, p.dtype, p.date, p.source
        ));
        rows.push(GpuRow {
            device: p.device.clone(),
            how: "published".into(),
            seconds_per_token: 1.0 / p.tokens_per_s,
            bound: None,
            source,
        });
    }
    Ok(rows)
}

/// Kernels an eager GPU decode launches: one per op of the decode graph
/// (tokens and positions are inputs, not kernels).
pub fn eager_kernels(c: &Compiled) -> u64 {
    use wafer_compiler::ir::Op;
    c.graph
        .insts
        .iter()
        .filter(|i| !matches!(i.op, Op::Token | Op::Position))
        .count() as u64
}

/// A GPU decode at the wafer's weight dtype: bytes a weight, bytes a
/// cached element, and the dtype whose peak FLOPs bound it. int8 is
/// weight-only quantization as on the wafer: a byte a weight (the bf16
/// scale a row is not counted: under 0.1 % for rows of 4,096), dequantized
/// to bf16 as it is read, so bf16's peak and a bf16 cache; MXFP4 alike at
/// its packed size.
pub fn gpu_precision(dtype: &str) -> (f64, f64, &str) {
    match dtype {
        "f32" => (4.0, 4.0, "f32"),
        "i8" => (1.0, 2.0, "bf16"),
        // Half a byte a weight and a byte a block of 32 (OCP MX).
        "mxfp4" => (0.5 + 1.0 / 32.0, 2.0, "bf16"),
        d => (2.0, 2.0, d),
    }
}

/// GPU specs: from `file` or the built-in data file, narrowed to `only`
/// (ids, comma-separated) when given.
pub fn gpus(file: Option<&Path>, only: Option<&str>) -> Result<Vec<GpuSpec>, ReportError> {
    let all = match file {
        Some(f) => gpu::parse_gpus(
            &std::fs::read_to_string(f).map_err(|source| ReportError::Io {
                path: f.display().to_string(),
                source,
            })?,
            &f.display().to_string(),
        )?,
        None => gpu::parse_gpus(gpu::GPUS_TOML, "baselines/gpus.toml (built in)")?,
    };
    let Some(only) = only else { return Ok(all) };
    only.split(',')
        .map(|id| {
            let id = id.trim();
            all.iter()
                .find(|g| g.id == id)
                .cloned()
                .ok_or_else(|| ReportError::UnknownGpu {
                    id: id.into(),
                    known: all
                        .iter()
                        .map(|g| g.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

/// Build the whole table for a compiled model (`model` names it: a
/// built-in config's name first, when it is one, matches published rows).
pub fn table(
    model: &str,
    c: &Compiled,
    wafer: WaferRow,
    gpus: &[GpuSpec],
    measured: &[Measured],
) -> Result<Table, ReportError> {
    let dtype = c.options.dtype.to_string();
    let context = wafer.positions.0;
    let (weight_bytes, kv_bytes, flops_dtype) = gpu_precision(&dtype);
    let work = gpu::decode_work(
        &c.config,
        weight_bytes,
        kv_bytes,
        context as u64 + 1,
        eager_kernels(c),
    );
    let published = gpu::parse_published(gpu::PUBLISHED_TOML, "baselines/published.toml")?;
    let mut sources = vec![if wafer.overlapped && !wafer.emulated {
        format!(
            "wafer: estimated by this build's kernel cost models on {}, each step's stages overlapped (--predict: not emulated; a stage starts once its first input has arrived and its PEs are free, each kernel's model taking its inputs' arrivals where it has one; tested within 2 % of the emulated overlapped step on the built-in checkpoints); the cost model's figure runs the stages one after another",
            c.options.arch.name
        )
    } else if wafer.overlapped {
        let routes = match wafer.queued_links {
            None => "the routes taken as free of other traffic".to_string(),
            Some(o) => format!(
                "later where the hand-offs, on {} with each link passing one wavelet a cycle, would queue (a model of the routes: {} round(s) of the step at most{})",
                o.describe(),
                wafer.queued_rounds,
                if wafer.queue_settled {
                    ""
                } else {
                    "; NOT SETTLED at --queue-rounds: further rounds would only move arrivals later"
                }
            ),
        };
        format!(
            "wafer: emulated by this build (timing-only, cycles identical to a functional run) on {}, each step's stages overlapped: a stage starts once its first input has arrived and its PEs are free, and takes each element when it arrives (its producer's output cycle plus a cycle a hop, {routes}), and holds its producer back once the route's buffers are full; the cost model's figure runs the stages one after another, an upper bound",
            c.options.arch.name
        )
    } else if wafer.emulated {
        format!(
            "wafer: emulated by this build (timing-only, cycles identical to a functional run) on {}",
            c.options.arch.name
        )
    } else {
        format!(
            "wafer: predicted by this build's kernel cost models on {} (--predict: not emulated; the bench test checks emulated = predicted on the built-in checkpoint)",
            c.options.arch.name
        )
    }];
    let gpus = gpu_rows(
        builtin_name(&c.config, model),
        &work,
        flops_dtype,
        &dtype,
        context,
        gpus,
        measured,
        &published,
        &mut sources,
    )?;
    Ok(Table {
        model: model.to_string(),
        arch: c.options.arch.name.clone(),
        placement: c.kind.name().to_string(),
        tiles: c.wafers.iter().map(|w| w.tiles).collect(),
        dtype,
        context,
        work,
        wafer,
        gpus,
        sources,
    })
}

/// The built-in config name of a loaded model, if it is one.
pub(crate) fn builtin_name<'a>(c: &Config, name: &'a str) -> Option<&'a str> {
    let n = name.split_whitespace().next()?;
    (Config::built_in(n).as_ref() == Some(c)).then_some(n)
}

fn si(x: f64) -> String {
    match x {
        x if x >= 1e12 => format!("{:.2} T", x / 1e12),
        x if x >= 1e9 => format!("{:.2} G", x / 1e9),
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x if x >= 1e3 => format!("{:.2} k", x / 1e3),
        x => format!("{x:.0} "),
    }
}

/// The region search in JSON: the rectangle chosen, the grid, and every
/// rectangle tried with its predicted cycles (or why it did not fit).
/// How the hand-offs load the links ([`WaferRow::links`]).
fn handoff_links_json(w: &WaferRow) -> Value {
    let all: Vec<Value> = w
        .links
        .iter()
        .zip(&w.links_late_stage)
        .map(|(l, s)| {
            json!({
                "queued_latest": s.as_ref().map(|(stage, cycles)| json!({
                    "stage": stage, "cycles": cycles,
                })),
                "paths": l.order.name(),
                "wavelets": l.wavelets,
                "crossings": l.crossings,
                "links": l.links,
                "contended_link_cycles": l.contended,
                "waiting_wavelets": l.waiting,
                "converging_wavelets": l.converging,
                "longest_wait_cycles": l.longest_wait,
                "queued_late_wavelets": l.late,
                "worst": l.worst.map(|h| json!({
                    "wafer": h.wafer, "pe": [h.pe.x, h.pe.y],
                    "port": format!("{:?}", h.port), "cycle": h.cycle,
                    "wavelets": h.wavelets,
                })),
            })
        })
        .collect::<Vec<_>>();
    Value::Array(all)
}

/// A queued step's delayed hand-offs ([`WaferRow::queue_waits`]).
fn queue_waits_json(w: &WaferRow) -> Value {
    (w.queue_waits.iter())
        .map(|(from, to, h)| {
            json!({
                "from": from, "to": to, "trips": h.trips, "delayed": h.delayed,
                "longest_cycles": h.longest,
                "link": h.link.map(|l| json!({
                    "wafer": l.wafer, "pe": [l.pe.x, l.pe.y],
                    "port": format!("{:?}", l.port), "cycles": l.cycles,
                })),
            })
        })
        .collect()
}

pub fn region_json(r: &wafer_compiler::region::Searched) -> Value {
    json!({
        "cols": r.chosen.0, "rows": r.chosen.1, "placement": r.kind.name(),
        "tiles": r.tiles.to_string(),
        "grid": [r.grid.0, r.grid.1], "predicted_at": r.pos,
        "tried": r.points.iter().map(|p| json!({
            "cols": p.cols, "rows": p.rows, "placement": p.kind.name(),
            "tiles": p.tiles.to_string(),
            "predicted_cycles": p.result.as_ref().ok(),
            "error": p.result.as_ref().err(),
        })).collect::<Vec<_>>(),
    })
}

/// [`Table::bars`] of a wafer on `arch` at `wafer_tps` and `gpus`.
fn bars(
    (arch, how): (&str, &str),
    wafer_tps: f64,
    gpus: &[GpuRow],
    eager: bool,
) -> Vec<(String, f64)> {
    let mut bars = vec![(format!("wafer ({arch}): {how}"), wafer_tps)];
    for g in gpus {
        if !eager && (g.how.starts_with("roofline, eager") || g.how.starts_with("measured, eager"))
        {
            continue;
        }
        bars.push((
            format!("{}: {}", g.device, g.how),
            1.0 / g.seconds_per_token,
        ));
    }
    bars
}

impl Table {
    /// Tokens per second, the wafer's first, then each GPU row's, as a
    /// chart's bars, each named by its device and how it was had. Without
    /// `eager`, the rows that time each kernel's launch from Python (eager
    /// rooflines and measurements) are left out: a chart of the best each
    /// device does.
    pub fn bars(&self, eager: bool) -> Vec<(String, f64)> {
        let how = self.wafer.how();
        bars(
            (&self.arch, how),
            self.wafer.tokens_per_s(),
            &self.gpus,
            eager,
        )
    }

    pub fn text(&self) -> String {
        use std::fmt::Write;
        let w = &self.wafer;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} on {}: {} placement{}, {} weights, decode at context {} (positions {}..={})",
            self.model,
            self.arch,
            self.placement,
            tiles_phrase(&self.tiles),
            self.dtype,
            self.context,
            w.positions.0,
            w.positions.1
        );
        let _ = writeln!(
            o,
            "\nwafer [1]    {:>10.2} µs/token  {:>10.1} tok/s  {:.0} cycles (cost model{}: {}{})",
            w.us(),
            w.tokens_per_s(),
            w.per_token_cycles,
            if w.overlapped {
                ", stages one after another"
            } else {
                ""
            },
            w.predicted_cycles,
            w.predicted_overlapped
                .map(|p| format!("; overlapped, its estimate: {p}"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            o,
            "             {} of {} PEs ({:.1}%), {}B of {}B SRAM ({:.1}%)",
            w.pes_used,
            w.pes,
            100.0 * w.pes_used as f64 / w.pes as f64,
            si(w.sram_bytes as f64),
            si(w.sram_capacity as f64),
            100.0 * w.sram_bytes as f64 / w.sram_capacity as f64
        );
        if let Some((stage, n)) = &w.backlog {
            let _ = writeln!(
                o,
                "             at most {n} input wavelets waited at a stage's edge at once (`{stage}`), in the routes' buffers{}",
                if w.parked.is_some() { " or parked" } else { "" }
            );
        }
        if let Some(p) = &w.parked {
            let _ = writeln!(
                o,
                "             parked: {} input wavelets reached their consumer before its PEs were free (an earlier stage still ran there), received into SRAM on a microthread: {} receives on {} PEs, at most {} open at once on a PE (beside {} input queues its codes take), {}B a PE with its stages' SRAM; their SRAM writes (at most {} cycles a PE) are not emulated",
                p.wavelets,
                p.receives,
                p.pes,
                p.most_receives,
                p.most_queues,
                si(p.most_bytes as f64),
                p.most_wavelets
            );
        }
        if let Some((held, passes, first)) = &w.held {
            let first = first
                .as_ref()
                .map(|s| format!(", the first `{s}`"))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "             {held} stages held back by their consumers (a route's buffers full{first}), settled in {passes} pass(es) of the step"
            );
        }
        if let Some(path) = &w.critical {
            let mut kinds: Vec<(&str, f64)> = path.kinds.iter().map(|(k, c)| (*k, *c)).collect();
            kinds.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            let shares: Vec<String> = (kinds.iter())
                .map(|(k, c)| format!("{k} {:.1}%", 100.0 * c / w.per_token_cycles.max(1.0)))
                .collect();
            let _ = writeln!(
                o,
                "             critical path: {} stages, each from the end of what it waited on last: {}",
                path.stages,
                shares.join(", ")
            );
        }
        if let Some(l) = w.links.first() {
            let _ = writeln!(
                o,
                "             hand-offs: {} wavelets, {} link crossings on {} links (paths {}; the model's own timing)",
                l.wavelets,
                l.crossings,
                l.links,
                (w.links.iter().map(|l| l.order.name()))
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
            let shared: Vec<String> = (w.links.iter())
                .map(|l| match l.worst {
                    None if l.waiting == 0 => format!("{}: no link-cycle claimed twice", l.order.name()),
                    None => format!(
                        "{}: {} link-cycles claimed by 2+ wavelets, all converging on one entry PE each ({} would wait; at one link alone, {} cycles at most)",
                        l.order.name(),
                        l.contended,
                        l.waiting,
                        l.longest_wait,
                    ),
                    Some(h) => format!(
                        "{}: {} link-cycles claimed by 2+ wavelets, {} would wait, {} of them bound for one entry PE; at one link alone, {} cycles at most (the most bound for several PEs, {} on {}{} {:?} at cycle {})",
                        l.order.name(),
                        l.contended,
                        l.waiting,
                        l.converging,
                        l.longest_wait,
                        h.wavelets,
                        if w.wafers.len() > 1 { format!("wafer {} ", h.wafer) } else { String::new() },
                        h.pe,
                        h.port,
                        h.cycle
                    ),
                })
                .collect();
            let _ = writeln!(
                o,
                "             routes taken as free of other traffic: {}",
                shared.join("; ")
            );
            let late: Vec<String> = (w.links.iter().zip(&w.links_late_stage))
                .map(|(l, s)| {
                    let most = s.as_ref().map_or_else(String::new, |(s, d)| {
                        format!(", the most {d} cycles after (`{s}`)")
                    });
                    format!(
                        "{}: {} wavelets would reach their consumer after its emulated run took them in{most}",
                        l.order.name(),
                        l.late
                    )
                })
                .collect();
            let _ = writeln!(
                o,
                "             queued on those links, one a cycle (an estimate; the stages are not run again): {}",
                late.join("; ")
            );
        }
        if !w.queue_waits.is_empty() {
            let most: Vec<String> = (w.queue_waits.iter().take(QUEUE_WAITS_SHOWN))
                .map(|(from, to, h)| {
                    let link = h.link.map_or_else(String::new, |l| {
                        format!(
                            ", most lost at {}{} {:?} ({} cycles)",
                            if w.wafers.len() > 1 {
                                format!("wafer {} ", l.wafer)
                            } else {
                                String::new()
                            },
                            l.pe,
                            l.port,
                            l.cycles
                        )
                    });
                    format!(
                        "`{from}` → `{to}` {} cycles ({} of {} trips later{link})",
                        h.longest, h.delayed, h.trips
                    )
                })
                .collect();
            let _ = writeln!(
                o,
                "             queued hand-offs fed latest ({} of {} delayed; the most one trip was fed later than a free route): {}",
                most.len(),
                w.queue_waits.len(),
                most.join("; ")
            );
        }
        if let Some(r) = &w.region {
            let _ = writeln!(o, "             {}", r.summary());
        }
        if let Some(e) = &w.experts {
            let _ = writeln!(
                o,
                "             experts: every one placed; each layer runs the {} of {} that a seeded routing (seed {}) picks, not the router's picks ({})",
                e.per_token,
                e.experts,
                e.seed,
                if w.emulated {
                    "timing-only steps have no values to route by"
                } else {
                    "the cost models have no values to route by"
                }
            );
        }
        if w.wafers.len() > 1 {
            let us = |cycles: f64| cycles / w.clock_hz * 1e6;
            let _ = writeln!(
                o,
                "             {} wafers, layers split {}; per wafer µs/token: {}",
                w.wafers.len(),
                w.wafers
                    .iter()
                    .map(|x| format!("{}..{}", x.layers.start, x.layers.end))
                    .collect::<Vec<_>>()
                    .join(" | "),
                w.wafers
                    .iter()
                    .map(|x| format!("{:.2}", us(x.cycles)))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            let _ = writeln!(
                o,
                "             {} transfers between wafers (modelled link): {}",
                w.transfers.len(),
                w.transfers
                    .iter()
                    .map(|(b, c)| format!("{b} B in {:.2} µs", us(*c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(
            o,
            "\nwhere the time goes (cycles per token; each stage's cycles split as its PEs' time is)"
        );
        let _ = writeln!(
            o,
            "  {:26} {:>10} {:>7} {:>10} {:>10} {:>10}",
            "layer kind", "cycles", "share", "compute", "fabric", "idle"
        );
        let total: f64 = w.kinds.values().map(|k| k.cycles).sum();
        let mut kinds: Vec<_> = w.kinds.iter().collect();
        kinds.sort_by(|a, b| b.1.cycles.total_cmp(&a.1.cycles).then(a.0.cmp(b.0)));
        for (name, k) in kinds {
            let share = format!(
                "  {:26} {:>10.0} {:>6.1}%",
                name,
                k.cycles,
                100.0 * k.cycles / total.max(1.0)
            );
            let _ = if w.emulated {
                writeln!(
                    o,
                    "{share} {:>10.0} {:>10.0} {:>10.0}",
                    k.pe.compute, k.pe.fabric, k.pe.idle
                )
            } else {
                writeln!(o, "{share} {:>10} {:>10} {:>10}", "-", "-", "-")
            };
        }
        let _ = writeln!(
            o,
            "\nGPU batch-1 decode: {}B of weights + {}B of KV cache read, {}FLOP, per token",
            si(self.work.weight_bytes),
            si(self.work.kv_bytes),
            si(self.work.flops)
        );
        let _ = writeln!(
            o,
            "  {:28} {:38} {:>10} {:>9} {:>8} {:>9}",
            "device", "how", "µs/token", "tok/s", "bound", "wafer ×"
        );
        for g in &self.gpus {
            let _ = writeln!(
                o,
                "  {:28} {:38} {:>10.1} {:>9.1} {:>8} {:>8.1}x [{}]",
                g.device,
                g.how,
                g.seconds_per_token * 1e6,
                1.0 / g.seconds_per_token,
                g.bound.unwrap_or("-"),
                g.seconds_per_token * 1e6 / w.us(),
                g.source + 1
            );
        }
        let _ = writeln!(o, "\nsources");
        for (i, s) in self.sources.iter().enumerate() {
            let _ = writeln!(o, "  [{}] {s}", i + 1);
        }
        o
    }

    pub fn json(&self) -> Value {
        let w = &self.wafer;
        json!({
            "model": self.model,
            "arch": self.arch,
            "placement": self.placement,
            "tiles": self.tiles.iter().map(Tiles::to_string).collect::<Vec<_>>(),
            "dtype": self.dtype,
            "context": self.context,
            "wafer": {
                "per_token_us": w.us(),
                "tokens_per_s": w.tokens_per_s(),
                "per_token_cycles": w.per_token_cycles,
                "predicted_cycles": w.predicted_cycles,
                "pes_used": w.pes_used,
                "pes": w.pes,
                "sram_bytes": w.sram_bytes,
                "sram_capacity_bytes": w.sram_capacity,
                "positions": [w.positions.0, w.positions.1],
                "emulated": w.emulated,
                "overlapped": w.overlapped,
                "predicted_overlapped_cycles": w.predicted_overlapped,
                "queued_links": w.queued_links.map(|o| json!({
                    "paths": o.name(), "rounds": w.queued_rounds,
                    "settled": w.queue_settled,
                })),
                "queue_waits": queue_waits_json(w),
                "max_backlog": w.backlog.as_ref().map(|(stage, wavelets)| json!({
                    "stage": stage, "wavelets": wavelets,
                })),
                "held": w.held.as_ref().map(|(stages, passes, first)| json!({
                    "stages": stages, "passes": passes, "first": first,
                })),
                "parked": w.parked,
                "critical_path": w.critical.as_ref().map(|p| json!({
                    "stages": p.stages,
                    "by_kind": p.kinds.iter().map(|(k, c)| (k.to_string(), json!(c)))
                        .collect::<serde_json::Map<_, _>>(),
                })),
                "handoff_links": handoff_links_json(w),
                "region": w.region.as_ref().map(region_json),
                "experts": w.experts.map(|e| json!({
                    "experts": e.experts, "per_token": e.per_token,
                    "routing": "seeded", "seed": e.seed,
                })),
                "wafers": w.wafers.iter().map(|x| json!({
                    "layers": [x.layers.start, x.layers.end],
                    "cycles": x.cycles,
                    "us": x.cycles / w.clock_hz * 1e6,
                })).collect::<Vec<_>>(),
                "transfers": w.transfers.iter().map(|(b, c)| json!({
                    "bytes": b, "cycles": c, "us": c / w.clock_hz * 1e6,
                })).collect::<Vec<_>>(),
                "by_kind": w.kinds.iter().map(|(k, t)| (k.to_string(), json!({
                    "cycles": t.cycles, "compute": t.pe.compute, "fabric": t.pe.fabric, "idle": t.pe.idle,
                }))).collect::<serde_json::Map<_, _>>(),
                "source": 1,
            },
            "decode_work": {
                "weight_bytes": self.work.weight_bytes,
                "kv_bytes": self.work.kv_bytes,
                "flops": self.work.flops,
                "eager_kernels": self.work.kernels,
            },
            "gpus": self.gpus.iter().map(|g| json!({
                "device": g.device,
                "how": g.how,
                "seconds_per_token": g.seconds_per_token,
                "tokens_per_s": 1.0 / g.seconds_per_token,
                "bound": g.bound,
                "wafer_speedup": g.seconds_per_token * 1e6 / w.us(),
                "source": g.source + 1,
            })).collect::<Vec<_>>(),
            "sources": self.sources,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chart's bars: the wafer first, then every GPU row in order,
    /// named by device and how; without `eager`, no row timed eagerly,
    /// roofline or measured.
    #[test]
    fn bars_name_each_row_and_leave_out_the_eager_ones_when_asked() {
        let row = |device: &str, how: &str, ms: f64| GpuRow {
            device: device.into(),
            how: how.into(),
            seconds_per_token: ms * 1e-3,
            bound: None,
            source: 0,
        };
        let gpus = [
            row("H200 SXM", "roofline, CUDA graphs", 2.0),
            row("H200 SXM", "roofline, eager (515 launches)", 4.0),
            row("NVIDIA H200", "measured, compiled at context 128", 5.0),
            row("NVIDIA H200", "measured, eager at context 128", 10.0),
            row("Cerebras CS-3", "published", 0.5),
        ];
        let how = ("wse3", "emulated, stages overlapped");
        let all = bars(how, 3000.0, &gpus, true);
        assert_eq!(all.len(), 6);
        assert_eq!(
            all[0],
            (
                "wafer (wse3): emulated, stages overlapped".to_string(),
                3000.0
            )
        );
        assert_eq!(all[2].0, "H200 SXM: roofline, eager (515 launches)");
        assert!((all[2].1 - 250.0).abs() < 1e-9);
        let best: Vec<String> = bars(how, 3000.0, &gpus, false)
            .into_iter()
            .map(|b| b.0)
            .collect();
        assert_eq!(
            best,
            [
                "wafer (wse3): emulated, stages overlapped",
                "H200 SXM: roofline, CUDA graphs",
                "NVIDIA H200: measured, compiled at context 128",
                "Cerebras CS-3: published",
            ]
        );
    }
}
