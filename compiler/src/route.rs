//! Routing between stages: each stage's inputs arrive from the stages that
//! made them over a hand-off route, and every route gets a color.
//!
//! Kernels route only inside their own rectangle, on the colors their
//! generators chose. Hand-offs run from the producer's south-east corner
//! (where GEMV and vector outputs leave) to the consumer's north-west one,
//! on colors above every kernel's, and two hand-offs whose paths' bounding
//! boxes meet never share a color. With pipeline placement no two stages
//! overlap, so one configuration serves the whole step; with mesh
//! placement stages share PEs, so each stage is its own configuration
//! (the router tables are loaded per stage) and [`check`] holds per stage.
//!
//! A hand-off's cycles are modelled, not emulated: `hops · hop_latency +
//! 2 · ramp_latency` for the first wavelet, plus one cycle per wavelet of
//! the longest stream of the consumer's input (streams run side by side).
//!
//! On one wafer of a system ([`crate::system`]) the stages routed are that
//! wafer's: a value made on an earlier wafer arrives over the wafer link
//! at the wafer's ingress, PE (0, 0) on its west edge, and is handed off
//! from there like any other.

use crate::place::{PlacementKind, Site};
use crate::stage::{Src, Stage};
use std::borrow::Borrow;
use wafer_emulator::{Arch, Pe};
use wafer_kernels::Fragment;

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

fn bbox(a: Pe, b: Pe) -> (u32, u32, u32, u32) {
    (a.x.min(b.x), a.y.min(b.y), a.x.max(b.x), a.y.max(b.y))
}

fn meets(a: (u32, u32, u32, u32), b: (u32, u32, u32, u32)) -> bool {
    a.0 <= b.2 && b.0 <= a.2 && a.1 <= b.3 && b.1 <= a.3
}

/// The modelled cycles of a hand-off whose longest route is `hops` long
/// and whose consumer's longest input stream is `longest` wavelets: the
/// first wavelet's trip up a ramp, along the route and down a ramp, then
/// one cycle per wavelet of that stream.
pub fn handoff_cycles(arch: &Arch, hops: u32, longest: u64) -> u64 {
    hops as u64 * arch.hop_latency as u64 + 2 * arch.ramp_latency as u64 + longest
}

/// The wavelets of the longest of `f`'s input streams: a stream can carry
/// several segments, of one port or of several (RoPE's `[pos, heads]`,
/// attention's `[pos, q, k, v]`), one after another.
pub fn longest_stream(f: &Fragment) -> u64 {
    let mut per: std::collections::BTreeMap<&str, u64> = Default::default();
    for s in f.inputs.iter().flat_map(|p| &p.segments) {
        *per.entry(s.stream.as_str()).or_default() += s.len as u64;
    }
    per.into_values().max().unwrap_or(0)
}

/// Route `stages` (one wafer's) placed at `sites`; `arrives` are the
/// values made on an earlier wafer (none on a single wafer).
pub fn route(
    stages: &[Stage],
    sites: &[Site],
    fragments: &[impl Borrow<Fragment>],
    arch: &Arch,
    kind: PlacementKind,
    arrives: &[usize],
) -> Result<Routing, String> {
    let kernel_colors = fragments
        .iter()
        .flat_map(|f| f.borrow().colors())
        .max()
        .map_or(0, |c| c + 1);
    let producer = |v: usize| stages.iter().position(|s| s.outputs.contains(&v));
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
        let into = corners(&sites[i]).0;
        let outs: Vec<Pe> = from
            .iter()
            .map(|&j| corners(&sites[j]).1)
            .chain(ingress.then_some(INGRESS))
            .collect();
        let paths: Vec<_> = outs.iter().map(|&out| bbox(out, into)).collect();
        let hops = outs
            .iter()
            .map(|out| out.x.abs_diff(into.x) + out.y.abs_diff(into.y))
            .max()
            .unwrap_or(0);
        let longest = longest_stream(fragments[i].borrow());
        let cycles = if outs.is_empty() {
            0
        } else {
            handoff_cycles(arch, hops, longest)
        };
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
    let paths = |i: usize| -> Vec<(u32, u32, u32, u32)> {
        let into = corners(&sites[i]).0;
        let h = &r.handoffs[i];
        h.from
            .iter()
            .map(|&j| corners(&sites[j]).1)
            .chain(h.ingress.then_some(INGRESS))
            .map(|out| bbox(out, into))
            .collect()
    };
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
