//! A fragment's mirror images: the same program with its PEs, routes and
//! edge streams reflected. On a machine whose links are alike in every
//! direction a reflected fragment computes the same in the same cycles,
//! with its ports on other edges, so a compiler can turn a kernel to face
//! the stage that feeds it without a kernel of another shape.

use crate::{Fragment, KernelError};
use std::sync::Arc;
use wafer_emulator::{Pe, PeRect, Port, PortSet, Program};

/// Which of a rectangle's mirror images a fragment runs as: `x` reflects
/// it east to west (column `c` of `w` becomes `w − 1 − c`, the E and W
/// ports swap), `y` north to south (rows, and the N and S ports).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Flip {
    pub x: bool,
    pub y: bool,
}

impl Flip {
    /// The fragment as generated.
    pub const NONE: Flip = Flip { x: false, y: false };

    pub fn is_none(&self) -> bool {
        *self == Flip::NONE
    }

    /// Where port `p` points once flipped.
    pub fn port(self, p: Port) -> Port {
        match p {
            Port::E if self.x => Port::W,
            Port::W if self.x => Port::E,
            Port::N if self.y => Port::S,
            Port::S if self.y => Port::N,
            p => p,
        }
    }

    /// Where PE `pe` of a `width × height` fragment lands once flipped.
    pub fn pe(self, pe: Pe, width: u32, height: u32) -> Pe {
        Pe::new(
            if self.x { width - 1 - pe.x } else { pe.x },
            if self.y { height - 1 - pe.y } else { pe.y },
        )
    }

    /// The rectangle `r` of a `width × height` fragment, flipped: the same
    /// PEs, reflected, with the same steps (its first PE is the reflection
    /// of its last).
    pub fn rect(self, r: PeRect, width: u32, height: u32) -> PeRect {
        // `x_end` is one past the last column `r` covers (`r.x` when it
        // is empty), so `width − x_end` is the reflection of that column.
        let (x, y) = (
            if self.x {
                (width as u64).saturating_sub(r.x_end()) as u32
            } else {
                r.x
            },
            if self.y {
                (height as u64).saturating_sub(r.y_end()) as u32
            } else {
                r.y
            },
        );
        PeRect { x, y, ..r }
    }
}

impl Fragment {
    /// The fragment mirrored across the diagonal: PE `(x, y)` becomes
    /// `(y, x)`, N and W swap, S and E swap. It computes the same in the
    /// same cycles, with rows and columns exchanged: a GEMV that takes x
    /// from the north by columns and sends y east by rows becomes one that
    /// takes x from the west by rows and sends y south by columns, which is
    /// how consecutive GEMVs chain. Seeded random data is a function of the
    /// PE, so the mirrored program holds other (equally random) values.
    pub fn transposed(mut self) -> Fragment {
        let port = |p: Port| match p {
            Port::N => Port::W,
            Port::W => Port::N,
            Port::S => Port::E,
            Port::E => Port::S,
            Port::Ramp => Port::Ramp,
        };
        let rect = |r: PeRect| PeRect {
            x: r.y,
            y: r.x,
            w: r.h,
            h: r.w,
            sx: r.sy,
            sy: r.sx,
        };
        let p = Arc::make_mut(&mut self.program);
        std::mem::swap(&mut p.width, &mut p.height);
        remap(p, rect, |pe| Pe::new(pe.y, pe.x), port);
        self
    }

    /// The fragment reflected as `flip` says (itself for [`Flip::NONE`]).
    /// Explicit data images (a model's weights) move with their PEs;
    /// seeded random data is a function of the PE, so a flipped program
    /// holds other (equally random) values there.
    pub fn mirrored(mut self, flip: Flip) -> Fragment {
        if flip.is_none() {
            return self;
        }
        let p = Arc::make_mut(&mut self.program);
        let (w, h) = (p.width, p.height);
        remap(
            p,
            |r| flip.rect(r, w, h),
            |pe| flip.pe(pe, w, h),
            |port| flip.port(port),
        );
        self
    }
}

impl Fragment {
    /// The fragment with its columns `pitch` PEs apart: column `c` moves
    /// to `c · pitch`, and the columns between hold nothing of it (no
    /// code, no routes). Only a fragment whose columns trade nothing
    /// east or west can be spread so (attention's columns, each its own
    /// line up the column): it then computes the same in the same cycles,
    /// its ports `pitch` apart. A compiler spreads such a kernel so that
    /// each column sits by the stage it feeds instead of all of them
    /// funnelling their outputs through the links beside the block.
    pub fn spread_columns(mut self, pitch: u32) -> Result<Fragment, KernelError> {
        if !columns_move(&self.program, pitch, "spread apart")? {
            return Ok(self);
        }
        let p = Arc::make_mut(&mut self.program);
        let width = (p.width as u64 - 1) * pitch as u64 + 1;
        p.width = u32::try_from(width).map_err(|_| {
            KernelError::Shape(format!(
                "{} columns {pitch} PEs apart span {width} columns",
                p.width
            ))
        })?;
        remap(
            p,
            // Within the width checked above: `x + (w − 1)·sx` is a
            // column of the fragment (a step of one column is any).
            |r| PeRect {
                x: r.x * pitch,
                sx: if r.w > 1 { r.sx * pitch } else { r.sx },
                ..r
            },
            |pe| Pe::new(pe.x * pitch, pe.y),
            |port| port,
        );
        Ok(self)
    }

    /// The fragment [`Fragment::spread_columns`] made with `pitch`, its
    /// columns side by side again: column `c · pitch` moves to `c`. It
    /// computes the same in the same cycles, so an emulator runs it in
    /// place of the spread one on a rectangle `pitch` times narrower (its
    /// per-PE results move back with [`wafer_emulator::stats::Stats::spread_columns`]).
    /// Refused when anything of it sits between those columns.
    pub fn pack_columns(mut self, pitch: u32) -> Result<Fragment, KernelError> {
        if !columns_move(&self.program, pitch, "packed together")? {
            return Ok(self);
        }
        let p = &self.program;
        let on = |x: u32| x.is_multiple_of(pitch);
        let between = |what: String| {
            KernelError::Shape(format!(
                "its columns are not {pitch} PEs apart: {what} lies between them"
            ))
        };
        if !on(p.width - 1) {
            return Err(between(format!("its east column {}", p.width - 1)));
        }
        let placed = (p.placements.iter().map(|pl| pl.pes))
            .chain(p.data.iter().map(|d| d.pes))
            .chain(p.routes.iter().map(|r| r.pes));
        if let Some(r) = placed
            .into_iter()
            .find(|r| !on(r.x) || (r.w > 1 && !on(r.sx)))
        {
            return Err(between(format!("the code, data or route at {r}")));
        }
        if let Some(h) = (p.inputs.iter().chain(&p.outputs)).find(|h| !on(h.pe.x)) {
            return Err(between(format!("stream `{}`'s port", h.name)));
        }
        let p = Arc::make_mut(&mut self.program);
        p.width = (p.width - 1) / pitch + 1;
        remap(
            p,
            |r| PeRect {
                x: r.x / pitch,
                sx: if r.w > 1 { r.sx / pitch } else { r.sx },
                ..r
            },
            |pe| Pe::new(pe.x / pitch, pe.y),
            |port| port,
        );
        Ok(self)
    }
}

/// Whether `p`'s columns move for `pitch` (not at pitch 1, nor with no
/// columns), refusing pitch 0 and a program any of whose routes or host
/// streams goes east or west: only columns that trade nothing sideways
/// may move apart or together (`doing` says which) and compute the same.
fn columns_move(p: &Program, pitch: u32, doing: &str) -> Result<bool, KernelError> {
    if pitch == 0 {
        return Err(KernelError::Shape(format!(
            "columns cannot be {doing} at pitch 0: 1 is side by side"
        )));
    }
    if pitch == 1 || p.width == 0 {
        return Ok(false);
    }
    let sideways = |p: Port| matches!(p, Port::E | Port::W);
    if let Some(r) = (p.routes.iter()).find(|r| sideways(r.input) || r.outputs.iter().any(sideways))
    {
        return Err(KernelError::Shape(format!(
            "its columns cannot be {doing}: the route at {} on color {} goes east or west",
            r.pes, r.color
        )));
    }
    if let Some(h) = (p.inputs.iter().chain(&p.outputs)).find(|h| sideways(h.port)) {
        return Err(KernelError::Shape(format!(
            "its columns cannot be {doing}: stream `{}` crosses its {} edge",
            h.name,
            if h.port == Port::E { "east" } else { "west" }
        )));
    }
    Ok(true)
}

/// Move every PE-placed part of `p` (code placements, data images, routes
/// and edge streams) by a symmetry of its rectangle: `rect` for
/// rectangles, `pe` for single PEs, `port` for directions.
fn remap(
    p: &mut Program,
    rect: impl Fn(PeRect) -> PeRect,
    pe: impl Fn(Pe) -> Pe,
    port: impl Fn(Port) -> Port,
) {
    for pl in &mut p.placements {
        pl.pes = rect(pl.pes);
    }
    for d in &mut p.data {
        d.pes = rect(d.pes);
    }
    for r in &mut p.routes {
        r.pes = rect(r.pes);
        r.input = port(r.input);
        r.outputs = PortSet(
            r.outputs
                .iter()
                .fold(0, |m, o| m | PortSet::single(port(o)).0),
        );
    }
    for h in p.inputs.iter_mut().chain(p.outputs.iter_mut()) {
        h.pe = pe(h.pe);
        h.port = port(h.port);
    }
}
