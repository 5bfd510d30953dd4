//! Routing between stages: each stage's inputs arrive from the stages that
//! made them over a hand-off route, and every route gets a color.
//!
//! Kernels route only inside their own rectangle, on the colors their
//! generators chose. A hand-off carries each element from the PE whose
//! output stream holds it to the PE whose input stream takes it
//! ([`Ends`]), on colors above every kernel's, and two hand-offs whose
//! paths' bounding boxes meet never share a color. With pipeline placement no two stages
//! overlap, so one configuration serves the whole step; with mesh
//! placement stages share PEs, so each stage is its own configuration
//! (the router tables are loaded per stage) and [`check`] holds per stage.
//!
//! A hand-off's cycles are modelled, not emulated: `hops · hop_latency`,
//! the trip of the element that travels farthest. `hops` is the longest of
//! its elements' trips: from the PE where the producer's stream carrying
//! an element leaves its rectangle to the PE where the consumer's stream
//! carrying it enters. (A producer's whole rectangle, south-east corner to
//! the consumer's north-west one, was the model before; it charged a
//! GEMV's y, which leaves along its east edge row by row, as if every row
//! left from the bottom one.)
//!
//! Nothing else is charged, because each kernel's own run already counts
//! it. A stage's program takes its inputs as host streams pushed into the
//! routers of its entry PEs, one wavelet per input port a cycle, and
//! sends its outputs from the routers of its exit PEs, so its emulated
//! cycles hold the ramps between those routers and the cores, and every
//! wavelet through the consumer's busiest input link. Adding `2 ·
//! ramp_latency` and those wavelets here, as this model once did, counts
//! them twice (`wafer kernel gemv_pair` shows it: two GEMVs run as one
//! program, each row of y streamed into the second, take fewer cycles
//! than the two run apart with no hand-off at all).
//! The model is a barrier between stages, so it stays an upper bound of
//! the stages streaming into each other (`kernels/tests/abut.rs`).
//!
//! On one wafer of a system ([`crate::system`]) the stages routed are that
//! wafer's: a value made on an earlier wafer arrives over the wafer link
//! at the wafer's ingress, PE (0, 0) on its west edge, and is handed off
//! from there like any other.

use crate::ir::Graph;
use crate::place::{PlacementKind, Site};
use crate::stage::{Src, Stage};
use std::borrow::Borrow;
use wafer_emulator::program::HostStream;
use wafer_emulator::{Arch, Pe};
use wafer_kernels::{Fragment, TensorPort};

/// The inputs of one stage arriving from the stages that made them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Handoff {
    /// Producing stages (empty for the first stage, fed by the host).
    pub from: Vec<usize>,
    /// Whether some input arrives from an earlier wafer, at the ingress.
    pub ingress: bool,
    /// Of `cycles`, those on the wafer-to-wafer link ([`crate::system`]):
    /// the hand-off that first reads what another wafer sent pays it.
    pub link_cycles: u64,
    /// Longest route, in hops.
    pub hops: u32,
    /// The trip's cycles ([`handoff_cycles`]) and `link_cycles`.
    pub cycles: u64,
    /// The color the routes use.
    pub color: u8,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Routing {
    /// One per stage.
    pub handoffs: Vec<Handoff>,
    /// Colors used by kernels (0 .. this) and then by hand-offs.
    pub kernel_colors: u8,
    pub colors_used: u8,
}

/// Where values from an earlier wafer of a system enter a wafer.
pub const INGRESS: Pe = Pe { x: 0, y: 0 };

fn corners(site: &Site) -> (Pe, Pe) {
    let (w, h) = site.kernel.size();
    (
        site.origin,
        Pe::new(site.origin.x + w - 1, site.origin.y + h - 1),
    )
}

/// The boxes a hand-off's routes into stage `i` stay inside: one per
/// producer `from` (and the [`INGRESS`]), spanning its rectangle and the
/// consumer's, so every trip between them (rows first or columns first)
/// is inside.
fn paths(sites: &[Site], i: usize, from: &[usize], ingress: bool) -> Vec<(u32, u32, u32, u32)> {
    let (a, b) = corners(&sites[i]);
    let span = |(c, d): (Pe, Pe)| (c.x.min(a.x), c.y.min(a.y), d.x.max(b.x), d.y.max(b.y));
    (from.iter())
        .map(|&j| span(corners(&sites[j])))
        .chain(ingress.then(|| span((INGRESS, INGRESS))))
        .collect()
}

/// Whether two boxes `(x0, y0, x1, y1)` (corners included) share a PE.
pub(crate) fn meets(a: (u32, u32, u32, u32), b: (u32, u32, u32, u32)) -> bool {
    a.0 <= b.2 && b.0 <= a.2 && a.1 <= b.3 && b.1 <= a.3
}

/// The modelled cycles of a hand-off whose farthest element travels `hops`
/// hops: the trip alone (the ramps and the consumer's input links are in
/// the kernels' own runs; see the module's documentation).
pub fn handoff_cycles(arch: &Arch, hops: u32) -> u64 {
    hops as u64 * arch.hop_latency as u64
}

/// `streams` by name: a GEMV has a stream for each of its hundreds of
/// rows, and every segment of its ports names one.
fn by_name(streams: &[HostStream]) -> std::collections::HashMap<&str, &HostStream> {
    // The first of a name wins, as a search from the front would find.
    (streams.iter().rev())
        .map(|h| (h.name.as_str(), h))
        .collect()
}

/// Where a tensor's elements enter or leave the grid: per run of
/// elements (`start..end` of the tensor, in order), the PE of the stream
/// that carries it, on the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Ends(Vec<(u32, u32, Pe)>);

impl Ends {
    /// The ends of `port`, whose streams are among `streams`, for a
    /// fragment placed at `origin`; `None` where a segment names no stream.
    pub fn of(port: &TensorPort, streams: &[HostStream], origin: Pe) -> Option<Ends> {
        let streams = by_name(streams);
        let mut runs: Vec<(u32, u32, Pe)> = port
            .segments
            .iter()
            .map(|g| {
                let h = streams.get(g.stream.as_str())?;
                let pe = Pe::new(origin.x + h.pe.x, origin.y + h.pe.y);
                Some((g.offset, g.offset + g.len, pe))
            })
            .collect::<Option<_>>()?;
        runs.sort_unstable_by_key(|r| r.0);
        Some(Ends(runs))
    }

    /// The longest trip, in hops, of an element of `self` at `at..at +
    /// len` to the element of `into` at `into_at..into_at + len` (the same
    /// values in both): the two run lists merged, each overlap once.
    pub fn farthest(&self, at: u32, into: &Ends, into_at: u32, len: u32) -> u32 {
        let (a, b) = (&self.0, &into.0);
        let (mut i, mut j) = (0, 0);
        let mut far = 0;
        // Walk the value's elements `k` in `0..len` by the runs that hold
        // them on each side.
        let mut k = 0;
        while k < len {
            while i < a.len() && a[i].1 <= at + k {
                i += 1;
            }
            while j < b.len() && b[j].1 <= into_at + k {
                j += 1;
            }
            let (Some(&(a0, a1, p)), Some(&(b0, b1, q))) = (a.get(i), b.get(j)) else {
                break;
            };
            if a0 > at + k || b0 > into_at + k {
                // An element no run holds (a port's gap): skip to the next
                // element some run on each side holds.
                k = (a0.saturating_sub(at))
                    .max(b0.saturating_sub(into_at))
                    .max(k + 1);
                continue;
            }
            far = far.max(p.x.abs_diff(q.x) + p.y.abs_diff(q.y));
            k = (a1 - at).min(b1 - into_at);
        }
        far
    }

    /// The longest trip from `from` to an element of `self` at `at..at +
    /// len`.
    pub fn farthest_from(&self, from: Pe, at: u32, len: u32) -> u32 {
        (self.0.iter())
            .filter(|r| r.0 < at + len && at < r.1)
            .map(|r| r.2.x.abs_diff(from.x) + r.2.y.abs_diff(from.y))
            .max()
            .unwrap_or(0)
    }

    /// The PE of the stream that carries element `k` (`None`: no run
    /// holds it).
    pub fn pe_of(&self, k: u32) -> Option<Pe> {
        let i = self.0.partition_point(|r| r.1 <= k);
        self.0.get(i).filter(|r| r.0 <= k).map(|r| r.2)
    }

    /// Every PE a run of `self` is at.
    fn pes(&self) -> impl Iterator<Item = Pe> + '_ {
        self.0.iter().map(|r| r.2)
    }
}

/// The hops of the hand-off into stage `i`, whose producers are `from`:
/// the longest trip of an input element from where its producer's stream
/// leaves, or from the [`INGRESS`] where it arrives from an earlier wafer.
/// A router's picks' weights may be on any of its output's PEs. A producer
/// whose ends are not known (one that only says whether an expert runs)
/// is counted from its rectangle's south-east corner to the consumer's
/// north-west one. `out_ends` are each stage's output ends, `producer`
/// the stage that makes a value: both the same for every consumer.
#[allow(clippy::too_many_arguments)]
fn hops_into(
    i: usize,
    stages: &[Stage],
    sites: &[Site],
    fragments: &[impl Borrow<Fragment>],
    out_ends: &[Option<Ends>],
    producer: impl Fn(usize) -> Option<usize>,
    graph: &Graph,
    from: &[usize],
    arrives: &[usize],
) -> u32 {
    let s = &stages[i];
    let f = fragments[i].borrow();
    let corner = |j: usize| {
        let (out, into) = (corners(&sites[j]).1, corners(&sites[i]).0);
        out.x.abs_diff(into.x) + out.y.abs_diff(into.y)
    };
    let value_len = |v: usize| graph.insts[v].len as u32;
    let mut far: std::collections::BTreeMap<usize, u32> = Default::default();
    let mut ingress = 0;
    for (port, srcs) in &s.inputs {
        let Some(tensor) = f.inputs.iter().find(|p| &p.name == port) else {
            continue;
        };
        let Some(into) = Ends::of(tensor, &f.program.inputs, sites[i].origin) else {
            continue;
        };
        let known: u32 = (srcs.iter())
            .map(|src| match src {
                Src::Value(v) => value_len(*v),
                Src::Pos | Src::One => 1,
                Src::ExpertWeights(_) => 0,
            })
            .sum();
        let mut at = 0;
        for src in srcs {
            let (v, len) = match *src {
                Src::Value(v) => (v, value_len(v)),
                // What the port holds besides the values of known length.
                Src::ExpertWeights(r) => (r, tensor.len.saturating_sub(known)),
                Src::Pos | Src::One => {
                    at += 1;
                    continue;
                }
            };
            if arrives.contains(&v) {
                ingress = ingress.max(into.farthest_from(INGRESS, at, len));
            } else if let Some(j) = producer(v)
                && let Some(out) = &out_ends[j]
            {
                let trip = match src {
                    Src::ExpertWeights(_) => (out.pes())
                        .map(|pe| into.farthest_from(pe, at, len))
                        .max()
                        .unwrap_or(0),
                    _ => {
                        let before: u32 = (stages[j].outputs.iter())
                            .take_while(|&&w| w != v)
                            .map(|&w| value_len(w))
                            .sum();
                        out.farthest(before, &into, at, len)
                    }
                };
                let e = far.entry(j).or_default();
                *e = (*e).max(trip);
            }
            at += len;
        }
    }
    (from.iter())
        .map(|j| far.get(j).copied().unwrap_or_else(|| corner(*j)))
        .chain([ingress])
        .max()
        .unwrap_or(0)
}

/// Route `stages` (one wafer's) placed at `sites`; `arrives` are the
/// values made on an earlier wafer (none on a single wafer).
pub fn route(
    stages: &[Stage],
    sites: &[Site],
    fragments: &[impl Borrow<Fragment>],
    graph: &Graph,
    arch: &Arch,
    kind: PlacementKind,
    arrives: &[usize],
) -> Result<Routing, String> {
    let kernel_colors = fragments
        .iter()
        .flat_map(|f| f.borrow().colors())
        .max()
        .map_or(0, |c| c + 1);
    let made_by = crate::stage::made_by(stages);
    let producer = |v: usize| made_by.get(&v).copied();
    let out_ends: Vec<Option<Ends>> = (fragments.iter().zip(sites))
        .map(|(g, site)| {
            let g = g.borrow();
            Ends::of(g.outputs.first()?, &g.program.outputs, site.origin)
        })
        .collect();
    let mut handoffs: Vec<Handoff> = Vec::with_capacity(stages.len());
    let mut boxes: Vec<Vec<(u32, u32, u32, u32)>> = Vec::new();
    for (i, s) in stages.iter().enumerate() {
        let values = s.inputs.iter().flat_map(|(_, srcs)| srcs);
        // An expert's stage also waits for its router's pick.
        let mut from: Vec<usize> = values
            .clone()
            .filter_map(|src| match src {
                Src::Value(v) | Src::ExpertWeights(v) => producer(*v),
                Src::Pos | Src::One => None,
            })
            .chain(s.when.and_then(|p| producer(p.route)))
            .collect();
        from.sort_unstable();
        from.dedup();
        let ingress = values
            .into_iter()
            .any(|src| matches!(src, Src::Value(v) if arrives.contains(v)));
        let paths = paths(sites, i, &from, ingress);
        let hops = hops_into(
            i, stages, sites, fragments, &out_ends, producer, graph, &from, arrives,
        );
        let fed = !from.is_empty() || ingress;
        let cycles = if fed { handoff_cycles(arch, hops) } else { 0 };
        // The lowest hand-off color no meeting path of this configuration uses.
        let mut color = kernel_colors;
        if kind == PlacementKind::Pipeline {
            while handoffs.iter().zip(&boxes).any(|(h, b)| {
                h.color == color && b.iter().any(|x| paths.iter().any(|p| meets(*x, *p)))
            }) {
                color += 1;
            }
        }
        if color as u32 >= arch.colors {
            return Err(format!(
                "the hand-off into stage `{}` needs color {color}, the machine has {}",
                s.name, arch.colors
            ));
        }
        handoffs.push(Handoff {
            from,
            ingress,
            link_cycles: 0,
            hops,
            cycles,
            color,
        });
        boxes.push(paths);
    }
    let colors_used = handoffs
        .iter()
        .map(|h| h.color + 1)
        .max()
        .unwrap_or(kernel_colors)
        .max(kernel_colors);
    let r = Routing {
        handoffs,
        kernel_colors,
        colors_used,
    };
    check(&r, stages, sites, fragments, arch, kind)?;
    Ok(r)
}

/// Conflicts are impossible by construction; this says so independently:
/// colors within the machine's, kernels below the hand-off colors, no two
/// stages of one configuration on the same PE, no two meeting hand-offs of
/// one configuration on the same color.
pub fn check(
    r: &Routing,
    stages: &[Stage],
    sites: &[Site],
    fragments: &[impl Borrow<Fragment>],
    arch: &Arch,
    kind: PlacementKind,
) -> Result<(), String> {
    if r.colors_used as u32 > arch.colors {
        return Err(format!(
            "{} colors used, the machine has {}",
            r.colors_used, arch.colors
        ));
    }
    for (i, f) in fragments.iter().map(Borrow::borrow).enumerate() {
        if let Some(c) = f.colors().into_iter().find(|c| *c >= r.kernel_colors) {
            return Err(format!(
                "stage `{}` uses color {c}, a hand-off color",
                stages[i].name
            ));
        }
        if r.handoffs[i].color < r.kernel_colors {
            return Err(format!(
                "the hand-off into `{}` uses kernel color {}",
                stages[i].name, r.handoffs[i].color
            ));
        }
    }
    if kind == PlacementKind::Mesh {
        return Ok(());
    }
    let rect = |s: &Site| {
        let (a, b) = corners(s);
        (a.x, a.y, b.x, b.y)
    };
    for i in 0..sites.len() {
        for j in i + 1..sites.len() {
            if meets(rect(&sites[i]), rect(&sites[j])) {
                return Err(format!(
                    "stages `{}` and `{}` overlap on the wafer",
                    stages[i].name, stages[j].name
                ));
            }
        }
    }
    let paths = |i: usize| paths(sites, i, &r.handoffs[i].from, r.handoffs[i].ingress);
    for i in 0..stages.len() {
        for j in i + 1..stages.len() {
            if r.handoffs[i].color == r.handoffs[j].color
                && paths(i)
                    .iter()
                    .any(|a| paths(j).iter().any(|b| meets(*a, *b)))
            {
                return Err(format!(
                    "the hand-offs into `{}` and `{}` meet on color {}",
                    stages[i].name, stages[j].name, r.handoffs[i].color
                ));
            }
        }
    }
    Ok(())
}
