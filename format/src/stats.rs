//! Run statistics: a documented, versioned format the viewer reads.
//!
//! Per-PE counters are stored as one array per counter, row-major over the
//! program rectangle (`index = y·width + x`), so a full-wafer run serialises
//! compactly and a heatmap is one array.

use crate::Pe;
use serde::{Deserialize, Serialize};

/// Bumped whenever a field changes meaning or is removed.
pub const STATS_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub version: u32,
    /// Machine name and clock, so cycles convert to time.
    pub arch: String,
    pub clock_hz: f64,
    /// Program rectangle.
    pub width: u32,
    pub height: u32,
    /// Total cycles until the machine was quiescent.
    pub cycles: u64,
    /// Which engine produced these numbers (`reference`, ...).
    pub engine: String,
    pub pe: PeStats,
    /// Totals over all PEs, for summaries.
    pub totals: Totals,
}

/// Per-PE counters, each `width × height` long.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeStats {
    /// Cycles the main thread executed scalar instructions (vector issue included).
    pub scalar_cycles: Vec<u64>,
    /// Cycles the vector datapath was held by an operation.
    pub vector_cycles: Vec<u64>,
    /// Cycles spent switching to a newly picked task.
    pub switch_cycles: Vec<u64>,
    /// Cycles a vector operation waited for fabric input (queue empty).
    pub stall_in_cycles: Vec<u64>,
    /// Cycles a vector operation waited to send (ramp buffer full).
    pub stall_out_cycles: Vec<u64>,
    /// Cycles the main thread waited to issue on a busy microthread.
    pub stall_issue_cycles: Vec<u64>,
    /// Cycles in which a wavelet at the head of a router buffer could not move.
    pub router_stall_cycles: Vec<u64>,
    /// Tasks run.
    pub tasks: Vec<u64>,
    /// Wavelets the router sent out of each port: N, S, E, W, ramp (to the core).
    pub wavelets_out: [Vec<u64>; 5],
    /// Wavelets the core sent up the ramp to its router.
    pub wavelets_from_core: Vec<u64>,
    /// SRAM bytes in use (code + buffers).
    pub sram_used: Vec<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub pes_with_code: u64,
    /// Σ over PEs of the cycles their vector datapath was busy.
    pub vector_cycles: u64,
    pub scalar_cycles: u64,
    /// Wavelets that crossed a link between routers or to the host.
    pub wavelet_hops: u64,
    pub router_stall_cycles: u64,
    pub max_sram_used: u32,
}

impl Stats {
    /// The statistics of the same run on a program whose columns sit
    /// `pitch` PEs apart (column `c` at `c · pitch`, the columns between
    /// idle): an emulator that ran such a program's columns side by side
    /// (they trade nothing east or west, so they compute the same in the
    /// same cycles) reports its counters where the spread program's PEs
    /// are. Totals do not change.
    pub fn spread_columns(&self, pitch: u32) -> Stats {
        if pitch <= 1 || self.width == 0 {
            return self.clone();
        }
        let (w, p) = (self.width as usize, pitch as usize);
        let wide = (w - 1) * p + 1;
        fn spread<T: Copy + Default>(v: &[T], w: usize, wide: usize, p: usize) -> Vec<T> {
            let mut out = vec![T::default(); wide * (v.len() / w)];
            for (y, row) in v.chunks(w).enumerate() {
                for (x, c) in row.iter().enumerate() {
                    out[y * wide + x * p] = *c;
                }
            }
            out
        }
        let mut pe = PeStats::zeroed(0);
        for (mine, (_, theirs)) in pe.counters_mut().into_iter().zip(self.pe.counters()) {
            *mine = spread(theirs, w, wide, p);
        }
        pe.sram_used = spread(&self.pe.sram_used, w, wide, p);
        // Field by field: `..self.clone()` would copy the counters too.
        Stats {
            version: self.version,
            arch: self.arch.clone(),
            clock_hz: self.clock_hz,
            width: wide as u32,
            height: self.height,
            cycles: self.cycles,
            engine: self.engine.clone(),
            pe,
            totals: self.totals.clone(),
        }
    }

    /// Read a stats file (`wafer run --stats`), checked as [`Stats::validate`].
    pub fn from_json(text: &str) -> Result<Stats, StatsError> {
        let s: Stats =
            serde_json::from_str(text).map_err(|e| StatsError::NotStats(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// What readers index by: a supported version, a grid within
    /// [`crate::geom::MAX_PES`] and every per-PE counter `width × height`
    /// long, a positive clock.
    pub fn validate(&self) -> Result<(), StatsError> {
        if self.version != STATS_VERSION {
            return Err(StatsError::Version {
                found: self.version,
            });
        }
        crate::geom::check_grid(self.width, self.height)?;
        if !(self.clock_hz.is_finite() && self.clock_hz > 0.0) {
            return Err(StatsError::Clock(self.clock_hz));
        }
        let pes = self.width as usize * self.height as usize;
        let mut lens: Vec<(&'static str, usize)> = self
            .pe
            .counters()
            .iter()
            .map(|(name, c)| (*name, c.len()))
            .collect();
        lens.push(("sram_used", self.pe.sram_used.len()));
        if let Some((name, len)) = lens.into_iter().find(|(_, len)| *len != pes) {
            return Err(StatsError::Length {
                name,
                len,
                width: self.width,
                height: self.height,
                pes,
            });
        }
        Ok(())
    }
}

/// Why a stats file cannot be read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("not a wafer stats file ({0}); write one with `wafer run --stats`")]
    NotStats(String),
    #[error("stats version {found} is not supported (this build reads {STATS_VERSION})")]
    Version { found: u32 },
    #[error(transparent)]
    Grid(#[from] crate::geom::GridError),
    #[error("`clock_hz` is {0}; it must be positive")]
    Clock(f64),
    #[error("`pe.{name}` has {len} entries for a {width}x{height} grid ({pes} PEs)")]
    Length {
        name: &'static str,
        len: usize,
        width: u32,
        height: u32,
        pes: usize,
    },
}

impl PeStats {
    pub fn zeroed(n: usize) -> PeStats {
        let z = || vec![0u64; n];
        PeStats {
            scalar_cycles: z(),
            vector_cycles: z(),
            switch_cycles: z(),
            stall_in_cycles: z(),
            stall_out_cycles: z(),
            stall_issue_cycles: z(),
            router_stall_cycles: z(),
            tasks: z(),
            wavelets_out: [z(), z(), z(), z(), z()],
            wavelets_from_core: z(),
            sram_used: vec![0; n],
        }
    }

    /// Every per-PE count with its field name: everything but `sram_used`,
    /// which is a level, not a count. Adding a counter means adding it to
    /// the struct and here (the destructuring below fails to compile until
    /// it is), and every merge and check follows.
    pub fn counters(&self) -> [(&'static str, &Vec<u64>); 14] {
        let PeStats {
            scalar_cycles,
            vector_cycles,
            switch_cycles,
            stall_in_cycles,
            stall_out_cycles,
            stall_issue_cycles,
            router_stall_cycles,
            tasks,
            wavelets_out: [n, s, e, w, ramp],
            wavelets_from_core,
            sram_used: _,
        } = self;
        [
            ("scalar_cycles", scalar_cycles),
            ("vector_cycles", vector_cycles),
            ("switch_cycles", switch_cycles),
            ("stall_in_cycles", stall_in_cycles),
            ("stall_out_cycles", stall_out_cycles),
            ("stall_issue_cycles", stall_issue_cycles),
            ("router_stall_cycles", router_stall_cycles),
            ("tasks", tasks),
            ("wavelets_out[N]", n),
            ("wavelets_out[S]", s),
            ("wavelets_out[E]", e),
            ("wavelets_out[W]", w),
            ("wavelets_out[ramp]", ramp),
            ("wavelets_from_core", wavelets_from_core),
        ]
    }

    /// [`PeStats::counters`], mutable, in the same order.
    fn counters_mut(&mut self) -> [&mut Vec<u64>; 14] {
        let PeStats {
            scalar_cycles,
            vector_cycles,
            switch_cycles,
            stall_in_cycles,
            stall_out_cycles,
            stall_issue_cycles,
            router_stall_cycles,
            tasks,
            wavelets_out: [n, s, e, w, ramp],
            wavelets_from_core,
            sram_used: _,
        } = self;
        [
            scalar_cycles,
            vector_cycles,
            switch_cycles,
            stall_in_cycles,
            stall_out_cycles,
            stall_issue_cycles,
            router_stall_cycles,
            tasks,
            n,
            s,
            e,
            w,
            ramp,
            wavelets_from_core,
        ]
    }

    /// Add the counters of `part`, a `part_w × part_h` rectangle whose
    /// north-west PE sits at `origin` of this `width × height` grid, into
    /// this grid's; PEs of `part` outside the grid are left out. SRAM is
    /// not added (a level: the caller knows what the sites share).
    pub fn add_at(
        &mut self,
        width: u32,
        height: u32,
        part: &PeStats,
        part_w: u32,
        part_h: u32,
        origin: Pe,
    ) {
        let theirs = part.counters();
        for (mine, (_, theirs)) in self.counters_mut().into_iter().zip(theirs) {
            for ly in 0..part_h {
                let y = ly + origin.y;
                if y >= height {
                    break;
                }
                for lx in 0..part_w {
                    let x = lx + origin.x;
                    if x >= width {
                        break;
                    }
                    let (g, l) = ((y * width + x) as usize, (ly * part_w + lx) as usize);
                    mine[g] += theirs[l];
                }
            }
        }
    }

    pub fn totals(&self) -> Totals {
        Totals {
            pes_with_code: self.sram_used.iter().filter(|b| **b > 0).count() as u64,
            vector_cycles: self.vector_cycles.iter().sum(),
            scalar_cycles: self.scalar_cycles.iter().sum(),
            wavelet_hops: self.wavelets_out[..4].iter().flatten().sum(),
            router_stall_cycles: self.router_stall_cycles.iter().sum(),
            max_sram_used: self.sram_used.iter().copied().max().unwrap_or(0),
        }
    }
}
