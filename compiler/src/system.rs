//! Systems of wafers: a model larger than one machine runs on several, its
//! layers split into contiguous ranges, one range per wafer, as Cerebras
//! pipelines Llama-3.1-70B and -405B across CS-3 systems.
//!
//! * **The split** ([`split`]): the first wafer also holds the stages
//!   before the first layer (the embedding), the last those after the last
//!   layer (the head); the ranges are chosen so that the most bytes any
//!   wafer keeps (weights and KV cache) is as small as it can be. The
//!   layers are alike, so this is also the split that balances their
//!   predicted time; the head and the embedding are counted by their bytes
//!   (what decides whether a wafer fits), not by their time.
//! * **Each wafer** is placed, routed and planned as one machine is, on
//!   its whole grid (the region search is for a model on one wafer).
//! * **Between wafers** ([`Transfer`]): every value made on a wafer (or
//!   before it) and read after it leaves the wafer's east edge and crosses
//!   the wafer link to the next wafer's ingress (`route::INGRESS`). Its
//!   cycles are modelled: the hops from the producer to the east edge, a
//!   ramp, then the link (`Arch::wafer_link_cycles`: the machine file's
//!   latency, then the bytes at its rate). The first hand-off on the next
//!   wafer that reads what was sent pays them (`Handoff::link_cycles`).
//!
//! Decoding is unchanged: a step runs every stage one after another,
//! whichever wafer it is on, so a split model's tokens are one wafer's.

use crate::codegen::{self, CompileError, Compiled};
use crate::ir::Graph;
use crate::model::{Config, Weights};
use crate::place::{self, Options, PlaceError, PlacementKind, Site, Tiles};
use crate::route::{Handoff, Routing};
use crate::share::{self, Exchange};
use crate::sram::SramPlan;
use crate::stage::{Src, Stage, Work};
use std::ops::Range;
use wafer_kernels::Fragment;

/// How many wafers a model is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wafers {
    Count(u32),
    /// The fewest that fit, or more while the wafer-time a token falls
    /// ([`auto_count`]).
    Auto,
    /// One wafer when the model's weights and KV cache fit one wafer's
    /// SRAM (a placement that then does not fit is an error, as on one
    /// wafer), else as `Auto`: the CLI's default.
    AsNeeded,
}

/// The most wafers a system may have (far beyond any system built: the
/// search for `auto` stops here).
pub const MAX_WAFERS: u32 = 1024;

/// One wafer of a system.
#[derive(Clone, Debug, PartialEq)]
pub struct WaferPart {
    /// Its stages, as indices into [`Compiled::stages`].
    pub stages: Range<usize>,
    /// The model's layers whose stages it runs.
    pub layers: Range<usize>,
    /// Its SRAM plan (its sites' PEs are its own grid's).
    pub sram: SramPlan,
    /// Colors its routes use.
    pub colors_used: u8,
    /// Mesh placement's tiles of layers on it ([`Tiles::ONE`] for pipeline).
    pub tiles: Tiles,
}

/// Values one wafer sends the next, once per step.
#[derive(Clone, Debug, PartialEq)]
pub struct Transfer {
    /// The sending wafer (the receiver is the next one).
    pub from: usize,
    /// IR values sent (f32 activations).
    pub values: Vec<usize>,
    pub bytes: u64,
    /// Hops from the farthest producer to the sending wafer's east edge.
    pub egress_hops: u32,
    /// Modelled cycles: the hops, a ramp, then the link.
    pub cycles: u64,
    /// The stage whose hand-off pays them (the first on the receiving
    /// wafer to read a value sent).
    pub into: usize,
}

/// Bytes a stage keeps on its wafer: its weights and, for attention, its
/// KV cache (f32).
fn stage_bytes(s: &Stage, c: &Config, o: &Options) -> u64 {
    let kv = match s.work {
        Work::Attention { .. } => 2 * o.max_context as u64 * c.kv_dim() as u64 * 4,
        _ => 0,
    };
    crate::footprint::weight_bytes(s, o.dtype) + kv
}

/// Bytes each group of stages keeps: before the first layer (index 0),
/// each layer (`l + 1`), after the last (`n_layers + 1`).
pub fn group_bytes(stages: &[Stage], c: &Config, o: &Options) -> Vec<u64> {
    let mut bytes = vec![0u64; c.n_layers + 2];
    for (s, g) in stages.iter().zip(place::groups(stages, c.n_layers)) {
        bytes[g] += stage_bytes(s, c, o);
    }
    bytes
}

/// One wafer's stages and the layers they belong to.
pub type Part = (Range<usize>, Range<usize>);

/// One wafer's part compiled: its sites, fragments, routes and SRAM plan
/// (as they travel between processes sharing a compile).
type CompiledPart = (Vec<Site>, Vec<Fragment>, Routing, SramPlan, Tiles);

/// The stages of each of `n` wafers: layers split into contiguous ranges
/// (each at least one layer) so that the most bytes a wafer keeps is the
/// least it can be; the stages before the first layer go with the first
/// wafer, those after the last with the last. Returns (stages, layers)
/// per wafer, and the bytes each keeps. `n` must be 1 to `c.n_layers`
/// (`compile` says so to a user first; this panics otherwise).
pub fn split(stages: &[Stage], c: &Config, o: &Options, n: usize) -> (Vec<Part>, Vec<u64>) {
    let layers = c.n_layers;
    assert!(n >= 1 && n <= layers, "1 to n_layers wafers");
    let group = place::groups(stages, layers);
    let bytes = group_bytes(stages, c, o);
    let (head, tail) = (bytes[0], bytes[layers + 1]);
    let prefix: Vec<u64> = std::iter::once(0)
        .chain(bytes[1..=layers].iter().scan(0, |a, b| {
            *a += b;
            Some(*a)
        }))
        .collect();
    // The bytes of wafer `k` holding layers `i..j`.
    let part = |k: usize, i: usize, j: usize| {
        prefix[j] - prefix[i] + if k == 0 { head } else { 0 } + if k == n - 1 { tail } else { 0 }
    };
    // best[k][j]: the least largest wafer over the first k + 1 wafers
    // holding layers 0..j; from[k][j] where wafer k starts.
    let mut best = vec![vec![u64::MAX; layers + 1]; n];
    let mut from = vec![vec![0usize; layers + 1]; n];
    for (j, b) in best[0].iter_mut().enumerate().skip(1) {
        *b = part(0, 0, j);
    }
    for k in 1..n {
        for j in k + 1..=layers {
            for i in k..j {
                let v = best[k - 1][i].max(part(k, i, j));
                if v < best[k][j] {
                    best[k][j] = v;
                    from[k][j] = i;
                }
            }
        }
    }
    let mut cuts = vec![layers; n + 1];
    cuts[0] = 0;
    for k in (1..n).rev() {
        cuts[k] = from[k][cuts[k + 1]];
    }
    let parts: Vec<Range<usize>> = (0..n).map(|k| cuts[k]..cuts[k + 1]).collect();
    // A stage's wafer by its group: group 0 on the first, group l + 1 on
    // the wafer holding layer l, the head on the last.
    let wafer_of = |g: usize| match g {
        0 => 0,
        g if g == layers + 1 => n - 1,
        g => parts
            .iter()
            .position(|r| r.contains(&(g - 1)))
            .expect("every layer is on a wafer"),
    };
    let mut out = Vec::with_capacity(n);
    let mut at = 0;
    for (k, layers) in parts.iter().enumerate() {
        let end = at
            + group[at..]
                .iter()
                .take_while(|&&g| wafer_of(g) == k)
                .count();
        out.push((at..end, layers.clone()));
        at = end;
    }
    assert_eq!(at, stages.len(), "stages are in group order");
    let kept = parts
        .iter()
        .enumerate()
        .map(|(k, r)| part(k, r.start, r.end))
        .collect();
    (out, kept)
}

/// The values each wafer sends the next: made on it or before, read after.
fn crossing(stages: &[Stage], parts: &[Range<usize>]) -> Vec<Vec<usize>> {
    let made_on = |v: usize| {
        let s = stages.iter().position(|s| s.outputs.contains(&v))?;
        parts.iter().position(|r| r.contains(&s))
    };
    (0..parts.len().saturating_sub(1))
        .map(|k| {
            let mut vs: Vec<usize> = parts[k + 1..]
                .iter()
                .flat_map(|r| &stages[r.clone()])
                .flat_map(|s| s.inputs.iter().flat_map(|(_, srcs)| srcs))
                .filter_map(|src| match src {
                    Src::Value(v) if made_on(*v).is_some_and(|w| w <= k) => Some(*v),
                    _ => None,
                })
                .collect();
            vs.sort_unstable();
            vs.dedup();
            vs
        })
        .collect()
}

/// The wafers `auto` takes: from the fewest that fit ([`fewest`]), one
/// more at a time while the wafer-time a token falls (the predicted step,
/// transfers aside, times the wafers). A wafer more gives each fewer
/// layers, whose stages then spread over more PEs (mesh placement's tiles
/// of layers), so the step can fall faster than the count grows: a model
/// squeezed onto the fewest wafers can be stacked into one tile and take
/// twice the time. Past that point a wafer more is machine time for
/// nothing.
pub(crate) fn auto_count(
    c: &Config,
    o: &Options,
    graph: &Graph,
    stages: &[Stage],
    kinds: &[PlacementKind],
    at_least: u32,
    ex: &dyn Exchange,
) -> Result<(u32, Fit), CompileError> {
    let (mut n, mut fit) = fewest(c, o, graph, stages, kinds, at_least, ex)?;
    let step = |f: &Fit| (f.iter().map(|k| k.1).min()).expect("a fit has a kind");
    let most = (c.n_layers as u32).min(MAX_WAFERS);
    while n < most {
        match fits(c, o, (graph, stages), kinds, n as usize + 1, ex)? {
            Ok(more) if one_more_is_cheaper(n, step(&fit), step(&more)) => {
                n += 1;
                fit = more;
            }
            _ => break,
        }
    }
    Ok((n, fit))
}

/// Whether `n + 1` wafers taking `more` cycles a step cost less
/// wafer-time a token than `n` taking `step`.
fn one_more_is_cheaper(n: u32, step: u64, more: u64) -> bool {
    (n as u64 + 1) * more < n as u64 * step
}

/// The fewest wafers, from what their SRAM holds up, whose every part
/// places, routes and fits (predicted as the region search predicts a
/// rectangle), with the placement kinds that fit them all.
pub(crate) fn fewest(
    c: &Config,
    o: &Options,
    graph: &Graph,
    stages: &[Stage],
    kinds: &[PlacementKind],
    at_least: u32,
    ex: &dyn Exchange,
) -> Result<(u32, Fit), CompileError> {
    let (w, kv) = crate::footprint::footprint(c, o.dtype, o.max_context);
    let wafer_bytes = o.arch.n_pes() * o.arch.sram_bytes as u64;
    let most = (c.n_layers as u32).min(MAX_WAFERS);
    let first = ((w + kv).div_ceil(wafer_bytes) as u32).max(at_least);
    for n in first..=most {
        if let Ok(fit) = fits(c, o, (graph, stages), kinds, n as usize, ex)? {
            return Ok((n, fit));
        }
    }
    Err(CompileError::Wafers {
        asked: "auto".into(),
        why: format!(
            "the model does not fit even {most} wafers of `{}` ({} layers, at most one wafer per layer): its weights and KV cache take {} bytes; {}",
            o.arch.name,
            c.n_layers,
            w + kv,
            crate::footprint::fit_advice(o.dtype)
        ),
    })
}

/// Each placement kind that fits every wafer, with its predicted step
/// (transfers aside) and the tiles of layers each wafer took for it.
pub(crate) type Fit = Vec<(PlacementKind, u64, Vec<Tiles>)>;

/// Why `n` wafers do not hold the model: an error already made, or the
/// first wafer and kind whose prediction failed (its error is made again
/// only where it is shown: [`Unfit::error`], since `auto` tries counts
/// that do not fit and the prediction may have run on another process).
pub(crate) enum Unfit {
    Error(CompileError),
    Predict { wafer: usize, kind: PlacementKind },
}

impl Unfit {
    /// The error itself (a failed prediction run again, here).
    fn error(
        self,
        c: &Config,
        o: &Options,
        (graph, stages): (&Graph, &[Stage]),
        n: usize,
    ) -> CompileError {
        match self {
            Unfit::Error(e) => e,
            Unfit::Predict { wafer, kind } => {
                let (parts, _) = split(stages, c, o, n);
                let all: Vec<Range<usize>> = parts.iter().map(|p| p.0.clone()).collect();
                let sent = crossing(stages, &all);
                match predict_part(c, o, (graph, stages), &parts, &sent, (wafer, kind)) {
                    Err(e) => e,
                    Ok(_) => CompileError::Internal(format!(
                        "wafer {} of {n}: its prediction failed once and not again",
                        wafer + 1
                    )),
                }
            }
        }
    }
}

/// The predicted cycles of wafer `k`'s part with placement `kind`, and
/// the tiles of layers it took.
fn predict_part(
    c: &Config,
    o: &Options,
    (graph, stages): (&Graph, &[Stage]),
    parts: &[Part],
    sent: &[Vec<usize>],
    (k, kind): (usize, PlacementKind),
) -> Result<(u64, Tiles), CompileError> {
    let n = parts.len();
    let (r, layers) = &parts[k];
    let arrives = if k == 0 { &[][..] } else { &sent[k - 1] };
    let part = &stages[r.clone()];
    crate::region::predict(
        c,
        o,
        graph,
        part,
        kind,
        o.max_context / 2,
        arrives,
        Tiles::ONE,
        &crate::region::Fragments::default(),
    )
    .map_err(|e| part_error(k, n, layers, (part, c, o), e))
}

/// Whether `n` wafers hold the model with some kind among `kinds`: the
/// predicted step of each kind that fits every wafer (transfers aside).
/// The predictions are shared among the processes of `ex`; the outer
/// `Err` is one that could not share them.
fn fits(
    c: &Config,
    o: &Options,
    (graph, stages): (&Graph, &[Stage]),
    kinds: &[PlacementKind],
    n: usize,
    ex: &dyn Exchange,
) -> Result<Result<Fit, Unfit>, CompileError> {
    let (parts, kept) = split(stages, c, o, n);
    let wafer_bytes = o.arch.n_pes() * o.arch.sram_bytes as u64;
    if let Some(k) = kept.iter().position(|b| *b > wafer_bytes) {
        return Ok(Err(Unfit::Error(part_error(
            k,
            n,
            &parts[k].1,
            (&stages[parts[k].0.clone()], c, o),
            CompileError::Wafers {
                asked: n.to_string(),
                why: format!(
                    "its weights and KV cache take {} bytes, more than a wafer's {wafer_bytes}",
                    kept[k]
                ),
            },
        ))));
    }
    let all: Vec<Range<usize>> = parts.iter().map(|p| p.0.clone()).collect();
    let sent = crossing(stages, &all);
    // Wafers between the first and the last with as many layers hold the
    // same stages but for their layer numbers (and weights): one is
    // predicted for all. The distinct ones are predicted side by side.
    let shape = |k: usize| (k == 0, k == n - 1, parts[k].1.len());
    let mut distinct: Vec<usize> = Vec::new();
    for k in 0..n {
        if !distinct.iter().any(|&d| shape(d) == shape(k)) {
            distinct.push(k);
        }
    }
    let jobs: Vec<(usize, PlacementKind)> = kinds
        .iter()
        .flat_map(|&kind| distinct.iter().map(move |&k| (k, kind)))
        .collect();
    let work: Vec<u64> = jobs.iter().map(|&(k, _)| parts[k].0.len() as u64).collect();
    let predicted = share::spread(ex, &work, |j| {
        predict_part(c, o, (graph, stages), &parts, &sent, jobs[j]).ok()
    })
    .map_err(|e| CompileError::Internal(format!("sharing the predictions of {n} wafers: {e}")))?;
    let mut ok = Vec::new();
    let mut first_unfit = None;
    for (&kind, cycles) in kinds.iter().zip(predicted.chunks(distinct.len())) {
        match cycles.iter().position(Option::is_none) {
            None => {
                let each: Vec<(u64, Tiles)> = (0..n)
                    .map(|k| {
                        let d = distinct.iter().position(|&d| shape(d) == shape(k));
                        cycles[d.expect("every shape has a distinct wafer")]
                            .expect("every prediction succeeded")
                    })
                    .collect();
                ok.push((
                    kind,
                    each.iter().map(|e| e.0).sum(),
                    each.iter().map(|e| e.1).collect(),
                ));
            }
            Some(d) => {
                first_unfit.get_or_insert(Unfit::Predict {
                    wafer: distinct[d],
                    kind,
                });
            }
        }
    }
    Ok(match first_unfit {
        Some(u) if ok.is_empty() => Err(u),
        _ => Ok(ok),
    })
}

/// An error on wafer `wafer` of `of`, holding `layers`. A no-fit error's
/// needs are restated as the wafer's own (`part`: its stages), not the
/// whole model's.
fn part_error(
    wafer: usize,
    of: usize,
    layers: &Range<usize>,
    part: (&[Stage], &Config, &Options),
    e: CompileError,
) -> CompileError {
    let e = match e {
        CompileError::Place(PlaceError::NoFit {
            arch,
            kind,
            why,
            fix,
            have_pes,
            have_bytes,
            ..
        }) => {
            let (stages, c, o) = part;
            let weight_bytes: u64 = stages
                .iter()
                .map(|s| crate::footprint::weight_bytes(s, o.dtype))
                .sum();
            let need_bytes: u64 = stages.iter().map(|s| stage_bytes(s, c, o)).sum();
            CompileError::Place(PlaceError::NoFit {
                arch,
                kind,
                why,
                fix,
                need_pes: need_bytes.div_ceil(o.arch.sram_bytes as u64 * 3 / 4),
                need_bytes,
                weight_bytes,
                kv_bytes: need_bytes - weight_bytes,
                have_pes,
                have_bytes,
            })
        }
        e => e,
    };
    CompileError::Wafer {
        wafer,
        of,
        layers: layers.clone(),
        error: Box::new(e),
    }
}

/// Compile `stages` for a system of `n` wafers (`fit`: what [`fewest`]
/// found for `n`, else it is found here), each wafer's part on one of the
/// processes of `ex`.
pub(crate) fn compile(
    c: &Config,
    weights: Option<&Weights>,
    o: &Options,
    (graph, stages): (&Graph, &[Stage]),
    kinds: &[PlacementKind],
    (n, fit): (u32, Option<Fit>),
    ex: &dyn Exchange,
) -> Result<Compiled, CompileError> {
    if n == 0 || n > MAX_WAFERS {
        return Err(CompileError::Wafers {
            asked: n.to_string(),
            why: format!(
                "use 1 to {MAX_WAFERS}, or auto (the fewest that fit, or more while the wafer-time a token falls)"
            ),
        });
    }
    if n as usize > c.n_layers {
        return Err(CompileError::Wafers {
            asked: n.to_string(),
            why: format!(
                "the model has {} layers and a wafer runs at least one; use 1 to {}, or auto",
                c.n_layers, c.n_layers
            ),
        });
    }
    let n = n as usize;
    // The placement: the faster predicted step among the kinds that fit
    // every wafer (a Count that does not fit says so, with what would).
    let fit = match fit {
        Some(f) => Ok(f),
        None => fits(c, o, (graph, stages), kinds, n, ex)?,
    };
    let (kind, tiles) = match fit {
        Ok(ok) => {
            let (kind, _, tiles) = ok
                .into_iter()
                .min_by_key(|(_, cycles, _)| *cycles)
                .expect("fits returns a kind or an error");
            (kind, tiles)
        }
        Err(unfit) => {
            let e = unfit.error(c, o, (graph, stages), n);
            let advice = match fewest(c, o, graph, stages, kinds, 1, ex) {
                Ok((m, _)) => format!("--wafers {m} fits (the fewest that do)"),
                Err(e) => e.to_string(),
            };
            return Err(CompileError::Wafers {
                asked: n.to_string(),
                why: format!("{e}. {advice}"),
            });
        }
    };
    let (parts, kept) = split(stages, c, o, n);
    let ranges: Vec<Range<usize>> = parts.iter().map(|p| p.0.clone()).collect();
    let sent = crossing(stages, &ranges);
    let mut sites: Vec<Site> = Vec::with_capacity(stages.len());
    let mut fragments: Vec<Fragment> = Vec::with_capacity(stages.len());
    let mut handoffs: Vec<Handoff> = Vec::with_capacity(stages.len());
    let mut wafers = Vec::with_capacity(n);
    let (mut kernel_colors, mut colors_used) = (0, 0);
    // Each wafer's part is placed, generated, routed and planned on its
    // own, side by side (on one of the processes sharing the compile,
    // those with the most bytes first). A part that fails is compiled
    // again here for its error, as every process does alike.
    let part = |k: usize| -> Result<CompiledPart, CompileError> {
        let (r, layers) = &parts[k];
        let part = &stages[r.clone()];
        let arrives = if k == 0 { &[][..] } else { &sent[k - 1] };
        let err = |e| part_error(k, n, layers, (part, c, o), e);
        // The tiling the fit predicted this wafer's part with.
        let tiles = tiles[k];
        codegen::fitting(
            |copies| Ok(place::place(part, c, o, (kind, tiles), copies)?),
            |s| {
                let f = codegen::fragments(part, &s, graph, weights, o)?;
                let refs: Vec<&Fragment> = f.iter().collect();
                let (routing, sram) =
                    codegen::route_and_plan(c, o, graph, part, &s, &refs, kind, arrives)?;
                Ok((s, f, routing, sram, tiles))
            },
        )
        .map_err(err)
    };
    let compiled = share::spread(ex, &kept, |k| part(k).ok())
        .map_err(|e| CompileError::Internal(format!("sharing the parts of {n} wafers: {e}")))?
        .into_iter()
        .enumerate()
        .map(|(k, p)| p.map_or_else(|| part(k), Ok))
        .collect::<Result<Vec<_>, CompileError>>()?;
    for ((r, layers), (s, f, routing, sram, tiles)) in parts.iter().zip(compiled) {
        kernel_colors = routing.kernel_colors.max(kernel_colors);
        colors_used = routing.colors_used.max(colors_used);
        wafers.push(WaferPart {
            stages: r.clone(),
            layers: layers.clone(),
            sram,
            colors_used: routing.colors_used,
            tiles,
        });
        handoffs.extend(routing.handoffs.into_iter().map(|mut h| {
            for j in &mut h.from {
                *j += r.start;
            }
            h
        }));
        sites.extend(s);
        fragments.extend(f);
    }
    let transfers = transfers(graph, stages, &sites, &ranges, &sent, o);
    for t in &transfers {
        handoffs[t.into].cycles += t.cycles;
        handoffs[t.into].link_cycles += t.cycles;
    }
    let sram = merged(&wafers);
    Ok(Compiled {
        config: c.clone(),
        options: o.clone(),
        kind,
        graph: graph.clone(),
        stages: stages.to_vec(),
        sites,
        fragments,
        routing: Routing {
            handoffs,
            kernel_colors,
            colors_used,
        },
        sram,
        real_weights: weights.is_some(),
        region: None,
        wafers,
        transfers,
    })
}

/// What each wafer sends the next, and what it costs.
fn transfers(
    graph: &Graph,
    stages: &[Stage],
    sites: &[Site],
    parts: &[Range<usize>],
    sent: &[Vec<usize>],
    o: &Options,
) -> Vec<Transfer> {
    let arch = &o.arch;
    sent.iter()
        .enumerate()
        .map(|(k, values)| {
            let producers: Vec<usize> = values
                .iter()
                .filter_map(|v| stages.iter().position(|s| s.outputs.contains(v)))
                .collect();
            // A value made on an earlier wafer is relayed from this one's
            // ingress, on its west edge: the whole width to cross.
            let egress_hops = producers
                .iter()
                .map(|&j| {
                    if parts[k].contains(&j) {
                        let (w, _) = sites[j].kernel.size();
                        arch.grid_cols - (sites[j].origin.x + w)
                    } else {
                        arch.grid_cols - 1
                    }
                })
                .max()
                .unwrap_or(0);
            // Activations are f32 on the wafer.
            let bytes: u64 = values.iter().map(|&v| graph.insts[v].len as u64 * 4).sum();
            let cycles = egress_hops as u64 * arch.hop_latency as u64
                + arch.ramp_latency as u64
                + arch.wafer_link_cycles(bytes);
            let into = parts[k + 1]
                .clone()
                .find(|&i| {
                    stages[i].inputs.iter().any(|(_, srcs)| {
                        srcs.iter()
                            .any(|s| matches!(s, Src::Value(v) if values.contains(v)))
                    })
                })
                .unwrap_or(parts[k + 1].start);
            Transfer {
                from: k,
                values: values.clone(),
                bytes,
                egress_hops,
                cycles,
                into,
            }
        })
        .collect()
}

/// One plan for the whole system: sums over the wafers, the fullest PE's.
fn merged(wafers: &[WaferPart]) -> SramPlan {
    let fullest = wafers
        .iter()
        .max_by_key(|w| w.sram.max_bytes)
        .expect("at least one wafer");
    SramPlan {
        max_bytes: fullest.sram.max_bytes,
        max_at: fullest.sram.max_at,
        pes_used: wafers.iter().map(|w| w.sram.pes_used).sum(),
        total_bytes: wafers.iter().map(|w| w.sram.total_bytes).sum(),
        per_stage: wafers
            .iter()
            .flat_map(|w| w.sram.per_stage.iter().copied())
            .collect(),
    }
}

/// The wafer stage `i` runs on.
pub fn wafer_of(c: &Compiled, i: usize) -> usize {
    c.wafers
        .iter()
        .position(|w| w.stages.contains(&i))
        .expect("every stage is on a wafer")
}

#[cfg(test)]
mod tests {
    use super::one_more_is_cheaper;

    /// A wafer more is taken only when the step falls faster than the
    /// count grows (the predicted steps of mixtral-8x7b on 3 and 4 wafers
    /// of `wse3`, 2026-12-05: on 3 its layers fit only stacked in one
    /// tile).
    #[test]
    fn a_wafer_more_only_where_the_step_falls_faster_than_the_count_grows() {
        assert!(one_more_is_cheaper(3, 1_087_184, 579_948));
        // Faster, but not by a third: three wafers' time is less.
        assert!(!one_more_is_cheaper(2, 113_914, 83_751));
        // Exactly as much wafer-time: the fewer wafers.
        assert!(!one_more_is_cheaper(2, 150, 100));
        assert!(one_more_is_cheaper(2, 150, 99));
    }
}
