//! SRAM planning: what every PE holds over the stages placed on it.
//!
//! A stage's PEs hold its buffers (weights, activations, the KV cache) and
//! its code. State (weights, tables, the KV cache: what the model keeps
//! from step to step) adds up over the stages a PE serves; code is stored
//! once per distinct instruction sequence and rectangle (mesh placement
//! runs the same GEMV code for every layer on the same PEs, with each
//! layer's tile in its own buffers). Activations are laid over each other:
//! the stages a PE serves run on it one after another (an overlapped step
//! starts a stage on a PE once the stage before it there has ended), and
//! no stage reads an activation buffer before writing it in the same run
//! (`Decoder::scramble_activations` fills them with NaN before every run
//! and the decode tests get the same tokens), so a PE needs room for the
//! largest one stage holds, not their sum.

use crate::place::Site;
use crate::stage::Stage;
use std::borrow::Borrow;
use std::collections::{BTreeSet, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use wafer_emulator::{Arch, Pe, PeCode, PeRect};
use wafer_kernels::Fragment;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SramPlan {
    /// The most any PE needs, and where.
    pub max_bytes: u32,
    pub max_at: Pe,
    /// PEs holding anything.
    pub pes_used: u64,
    /// Bytes over all PEs.
    pub total_bytes: u64,
    /// Per stage: the most one of its PEs needs for it alone.
    pub per_stage: Vec<u32>,
}

impl SramPlan {
    /// The stages whose PEs include the fullest PE.
    pub fn max_stages(&self, sites: &[Site], stages: &[Stage]) -> Vec<String> {
        sites
            .iter()
            .zip(stages)
            .filter(|(s, _)| s.contains(self.max_at))
            .map(|(_, s)| s.name.clone())
            .collect()
    }
}

/// Adds bytes over rectangles of the grid: a 2-D difference array.
struct Grid {
    w: u32,
    h: u32,
    d: Vec<i64>,
}

impl Grid {
    fn add(&mut self, r: PeRect, origin: Pe, bytes: i64) {
        let w1 = (self.w + 1) as usize;
        let mut add_box = |x0: u32, y0: u32, x1: u32, y1: u32| {
            let (x1, y1) = (x1.min(self.w), y1.min(self.h));
            if x0 >= x1 || y0 >= y1 {
                return;
            }
            let at = |x: u32, y: u32| y as usize * w1 + x as usize;
            self.d[at(x0, y0)] += bytes;
            self.d[at(x1, y0)] -= bytes;
            self.d[at(x0, y1)] -= bytes;
            self.d[at(x1, y1)] += bytes;
        };
        if r.sx == 1 && r.sy == 1 {
            let (x0, y0) = (origin.x + r.x, origin.y + r.y);
            add_box(x0, y0, x0 + r.w, y0 + r.h);
        } else {
            for pe in r.iter() {
                let (x, y) = (origin.x + pe.x, origin.y + pe.y);
                add_box(x, y, x + 1, y + 1);
            }
        }
    }
}

pub fn plan(sites: &[Site], fragments: &[impl Borrow<Fragment>], arch: &Arch) -> SramPlan {
    let mut summed = Summed::default();
    let per_stage = sites
        .iter()
        .zip(fragments)
        .map(|(_, f)| summed.of(f.borrow()).most_sram)
        .collect();
    let bytes = summed.bytes(sites, fragments, arch);
    let (mut max_bytes, mut max_at, mut pes_used, mut total_bytes) = (0u32, Pe::new(0, 0), 0, 0);
    for (i, v) in bytes.iter().enumerate() {
        if *v > 0 {
            pes_used += 1;
            total_bytes += *v as u64;
        }
        if *v > max_bytes {
            max_bytes = *v;
            max_at = Pe::new(i as u32 % arch.grid_cols, i as u32 / arch.grid_cols);
        }
    }
    SramPlan {
        max_bytes,
        max_at,
        pes_used,
        total_bytes,
        per_stage,
    }
}

/// What the plan counts of each fragment's codes, worked out once per
/// fragment: a search's point passes the same fragment for every stage
/// with its kernel (each layer's), and a tiled GEMV's has a code per PE,
/// so counting them per stage and placement was most of this plan's
/// time (the names of state buffers compared, the code's bytes summed,
/// its instructions hashed).
#[derive(Default)]
struct Summed {
    seen: Vec<(*const Fragment, Codes)>,
}

/// One fragment's codes, counted ([`Summed`]).
struct Codes {
    codes: Vec<CodeBytes>,
    /// The most SRAM one of its placements' codes lays out.
    most_sram: u32,
}

/// One code's bytes: its state buffers ([`is_activation`]'s others), its
/// activation buffers, its instructions, the SRAM it lays out
/// ([`PeCode::sram_bytes`]), and a hash of its instructions ([`code_key`]).
struct CodeBytes {
    state: u32,
    activations: u32,
    code: u32,
    sram: u32,
    hash: u64,
}

impl Summed {
    fn of(&mut self, f: &Fragment) -> &Codes {
        let at = match self.seen.iter().position(|(q, _)| std::ptr::eq(*q, f)) {
            Some(at) => at,
            None => {
                self.seen.push((f as *const Fragment, Codes::of(f)));
                self.seen.len() - 1
            }
        };
        &self.seen[at].1
    }
}

impl Codes {
    fn of(f: &Fragment) -> Codes {
        let p = &f.program;
        let codes: Vec<CodeBytes> = (p.codes.iter())
            .map(|c| {
                let (mut state, mut activations) = (0, 0);
                for b in &c.buffers {
                    match is_activation(f, &b.name) {
                        true => activations += b.bytes(),
                        false => state += b.bytes(),
                    }
                }
                CodeBytes {
                    state,
                    activations,
                    code: c.code_bytes(),
                    sram: c.sram_bytes(),
                    hash: code_hash(c),
                }
            })
            .collect();
        let most_sram = (p.placements.iter())
            .map(|pl| codes[pl.code.0 as usize].sram)
            .max()
            .unwrap_or(0);
        Codes { codes, most_sram }
    }
}

/// A hash of a code's instructions, by their binary encoding (their
/// floats have no `Hash`; the encoding is exact and cheap).
fn code_hash(c: &PeCode) -> u64 {
    let mut s = DefaultHasher::new();
    postcard::to_stdvec(&c.insts)
        .expect("instructions serialise")
        .hash(&mut s);
    s.finish()
}

/// A code placed on the grid, as the plan counts it: once per distinct
/// instruction sequence (`hash`) and world rectangle.
type CodeKey = (u64, u32, u32, u32, u32, u32, u32);

fn code_key(hash: u64, site: &Site, pes: PeRect) -> CodeKey {
    (
        hash,
        site.origin.x + pes.x,
        site.origin.y + pes.y,
        pes.w,
        pes.h,
        pes.sx,
        pes.sy,
    )
}

/// What one PE holds, by kind ([`held_at`]); the three add up to its
/// bytes in the plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// What the model keeps from step to step: buffers a data image fills
    /// (weight tiles, norm scales, tables) and the KV cache
    /// ([`Fragment::is_state`]).
    pub state: u64,
    /// Buffers without one: a stage's inputs, partial sums and outputs.
    /// The most one stage holds: the stages' are laid over each other.
    pub activations: u64,
    pub code: u64,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{} state, {} activations (the largest stage's), {} code",
            self.state, self.activations, self.code
        )
    }
}

/// What PE `pe` holds over every stage placed on it, by kind, counted as
/// [`per_pe_bytes`] counts it (each distinct code once per rectangle).
pub fn held_at(sites: &[Site], fragments: &[impl Borrow<Fragment>], pe: Pe) -> Held {
    let mut held = Held::default();
    let mut code_seen = BTreeSet::new();
    for (site, f) in sites.iter().zip(fragments.iter().map(Borrow::borrow)) {
        if !site.contains(pe) {
            continue;
        }
        let p = &f.program;
        let local = Pe::new(pe.x - site.origin.x, pe.y - site.origin.y);
        let mut activations = 0;
        for pl in p.placements.iter().filter(|pl| pl.pes.contains(local)) {
            let code = &p.codes[pl.code.0 as usize];
            for b in &code.buffers {
                match f.is_state(&b.name, local) {
                    true => held.state += b.bytes() as u64,
                    false => activations += b.bytes() as u64,
                }
            }
            let key = code_key(code_hash(code), site, pl.pes);
            if code_seen.insert(key) {
                held.code += code.code_bytes() as u64;
            }
        }
        held.activations = held.activations.max(activations);
    }
    held
}

/// Bytes every PE of the grid holds (row-major): its state and code
/// ([`per_pe_kept`]) and the activations of the largest stage it serves
/// ([`per_pe_activations`]).
pub fn per_pe_bytes(sites: &[Site], fragments: &[impl Borrow<Fragment>], arch: &Arch) -> Vec<u32> {
    Summed::default().bytes(sites, fragments, arch)
}

/// Whether buffer `name` of fragment `f` holds an activation: no data
/// image fills it anywhere and the kernel does not keep it
/// ([`Fragment::is_state`], by name: a buffer that is state on some PE
/// counts as state on all, so activations are never counted more than
/// they hold).
pub fn is_activation(f: &Fragment, name: &str) -> bool {
    !(f.state.iter().any(|s| s == name) || f.program.data.iter().any(|d| d.buffer == name))
}

/// What every PE keeps whichever stage runs (row-major): its state,
/// summed over the stages it serves, and each distinct code once.
pub fn per_pe_kept(sites: &[Site], fragments: &[impl Borrow<Fragment>], arch: &Arch) -> Vec<u32> {
    Summed::default().kept(sites, fragments, arch)
}

/// The per-PE plans, each fragment's codes counted once for all three.
impl Summed {
    /// [`per_pe_bytes`].
    fn bytes(
        &mut self,
        sites: &[Site],
        fragments: &[impl Borrow<Fragment>],
        arch: &Arch,
    ) -> Vec<u32> {
        let mut bytes = self.kept(sites, fragments, arch);
        let activations = self.activations(sites, fragments, arch);
        for (b, a) in bytes.iter_mut().zip(activations) {
            *b += a;
        }
        bytes
    }

    /// [`per_pe_kept`].
    fn kept(
        &mut self,
        sites: &[Site],
        fragments: &[impl Borrow<Fragment>],
        arch: &Arch,
    ) -> Vec<u32> {
        let (w, h) = (arch.grid_cols, arch.grid_rows);
        let mut g = Grid {
            w,
            h,
            d: vec![0; (w as usize + 1) * (h as usize + 1)],
        };
        let mut code_seen = HashSet::new();
        for (site, f) in sites.iter().zip(fragments.iter().map(Borrow::borrow)) {
            let codes = self.of(f);
            for pl in &f.program.placements {
                let c = &codes.codes[pl.code.0 as usize];
                g.add(pl.pes, site.origin, c.state as i64);
                if code_seen.insert(code_key(c.hash, site, pl.pes)) {
                    g.add(pl.pes, site.origin, c.code as i64);
                }
            }
        }
        // Prefix sums give each PE's bytes.
        let w1 = w as usize + 1;
        let mut out = vec![0u32; (w * h) as usize];
        let mut row = vec![0i64; w1];
        for y in 0..h as usize {
            let mut run = 0i64;
            for (x, acc) in row.iter_mut().enumerate().take(w as usize) {
                run += g.d[y * w1 + x];
                *acc += run;
                out[y * w as usize + x] = *acc as u32;
            }
        }
        out
    }
}

/// The activation bytes every PE needs (row-major): the most one stage
/// it serves holds in them ([`is_activation`]). The stages run on it one
/// after another and keep nothing in them between runs
/// (`Decoder::scramble_activations`), so while one stage runs the others'
/// hold nothing and the buffers are laid over each other.
pub fn per_pe_activations(
    sites: &[Site],
    fragments: &[impl Borrow<Fragment>],
    arch: &Arch,
) -> Vec<u32> {
    Summed::default().activations(sites, fragments, arch)
}

impl Summed {
    /// [`per_pe_activations`].
    fn activations(
        &mut self,
        sites: &[Site],
        fragments: &[impl Borrow<Fragment>],
        arch: &Arch,
    ) -> Vec<u32> {
        let w = arch.grid_cols as usize;
        let mut out = vec![0u32; w * arch.grid_rows as usize];
        for (site, f) in sites.iter().zip(fragments.iter().map(Borrow::borrow)) {
            let codes = self.of(f);
            // No PE has two placements in a program (the format's verifier),
            // so a stage holds one placement's buffers on each of its PEs.
            for pl in &f.program.placements {
                let bytes = codes.codes[pl.code.0 as usize].activations;
                if bytes == 0 {
                    continue;
                }
                let r = pl.pes;
                let (x0, y0) = (site.origin.x + r.x, site.origin.y + r.y);
                // Clipped to the grid, as the state's rectangles are.
                if r.sx == 1 && r.sy == 1 {
                    let x1 = (x0 + r.w).min(arch.grid_cols) as usize;
                    for y in y0..(y0 + r.h).min(arch.grid_rows) {
                        let row = y as usize * w;
                        for b in out[row + (x0 as usize).min(x1)..row + x1].iter_mut() {
                            *b = (*b).max(bytes);
                        }
                    }
                } else {
                    for pe in r.iter() {
                        let (x, y) = (site.origin.x + pe.x, site.origin.y + pe.y);
                        if x < arch.grid_cols && y < arch.grid_rows {
                            let at = y as usize * w + x as usize;
                            out[at] = out[at].max(bytes);
                        }
                    }
                }
            }
        }
        out
    }
}
