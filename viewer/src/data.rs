//! What the viewer shows, loaded from the emulator's formats: the per-PE
//! `Stats` of a run over the whole grid, optionally its `Trace`, the
//! programs placed on the grid (for the inspector), which op each PE runs
//! (the placement), and per-token latency with GPU comparisons.

use wafer_format::stats::{PeStats, Stats};
use wafer_format::trace::Trace;
use wafer_format::{Pe, PeCode, Program};

/// A program placed at an origin of the grid (a model's stage, or the one
/// program of a `wafer run`).
#[derive(Clone, Debug)]
pub struct PlacedProgram {
    pub name: String,
    pub origin: Pe,
    pub program: Program,
}

/// Which op each PE runs: an index into `ops` per PE (`u16::MAX`: none),
/// and each op's category (its colour) from `kinds`.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub ops: Vec<String>,
    pub op_kind: Vec<u16>,
    pub kinds: Vec<String>,
    pub pe_op: Vec<u16>,
}

pub const NO_OP: u16 = u16::MAX;

/// One decode token's span of cycles, for the scrubber.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenSpan {
    pub start: u64,
    pub end: u64,
}

/// Per-token latency and its comparisons.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latency {
    pub per_token_us: Vec<f64>,
    /// Cycles per token per layer kind.
    pub by_kind: Vec<(String, f64)>,
    /// (device and how, tokens/s), the wafer first.
    pub bars: Vec<(String, f64)>,
    /// The first token's stages in the order they run, for the timeline.
    pub stages: Vec<StageTime>,
    /// On a system of wafers: each wafer (named with its layers) and its
    /// cycles per token, the transfers between wafers apart. Empty on one.
    pub wafers: Vec<(String, f64)>,
}

/// One stage of a token: the hand-off of its inputs, then its run.
#[derive(Clone, Debug, PartialEq)]
pub struct StageTime {
    pub name: String,
    /// Its layer kind, as the breakdown groups it.
    pub kind: String,
    /// Cycles from the token's start to the stage's hand-off.
    pub start: u64,
    /// The hand-off's cycles (modelled, not emulated), then the stage's.
    pub handoff: u64,
    pub cycles: u64,
    /// The PE the stage's rectangle starts at.
    pub origin: Pe,
    /// On a system of wafers, the wafer it runs on (from 0; 0 on one).
    pub wafer: usize,
    /// On the token's critical path: every stage of one that runs its
    /// stages one after another; of an overlapped one, those it waited
    /// on back from its last stage.
    pub critical: bool,
    /// Overlapped: its consumers held it back (a route to one of them
    /// was full), so it ended later than it would have on its own.
    pub held: bool,
}

impl StageTime {
    /// Stages one after another, each after its inputs' hand-off, from
    /// `(name, kind, handoff, cycles, origin)`, all on wafer 0.
    pub fn sequence(
        stages: impl IntoIterator<Item = (String, String, u64, u64, Pe)>,
    ) -> Vec<StageTime> {
        let mut at = 0;
        stages
            .into_iter()
            .map(|(name, kind, handoff, cycles, origin)| {
                let s = StageTime {
                    name,
                    kind,
                    start: at,
                    handoff,
                    cycles,
                    origin,
                    wafer: 0,
                    critical: true,
                    held: false,
                };
                at += handoff + cycles;
                s
            })
            .collect()
    }

    pub fn end(&self) -> u64 {
        self.start + self.handoff + self.cycles
    }

    /// A lane for each stage, so that stages that overlap in time are on
    /// different lanes: each on the lowest lane whose last stage has
    /// ended by its start. Stages one after another share lane 0.
    pub fn lanes(stages: &[StageTime]) -> Vec<usize> {
        let mut ends: Vec<u64> = Vec::new();
        stages
            .iter()
            .map(|t| match ends.iter().position(|e| *e <= t.start) {
                Some(l) => {
                    ends[l] = t.end();
                    l
                }
                None => {
                    ends.push(t.end());
                    ends.len() - 1
                }
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    pub stats: Stats,
    pub trace: Option<Trace>,
    pub programs: Vec<PlacedProgram>,
    pub placement: Option<Placement>,
    pub tokens: Vec<TokenSpan>,
    pub latency: Option<Latency>,
}

impl Dataset {
    pub fn width(&self) -> u32 {
        self.stats.width
    }
    pub fn height(&self) -> u32 {
        self.stats.height
    }
    pub fn index(&self, pe: Pe) -> usize {
        (pe.y * self.stats.width + pe.x) as usize
    }

    /// A dataset from one run of one program at the grid's origin.
    pub fn from_run(name: &str, program: Program, stats: Stats, trace: Option<Trace>) -> Dataset {
        let placement = Some(placement_of(
            std::slice::from_ref(&PlacedProgram {
                name: name.to_string(),
                origin: Pe::new(0, 0),
                program: program.clone(),
            }),
            stats.width,
            stats.height,
            |_, code| code.name.clone(),
        ));
        let tokens = vec![TokenSpan {
            start: 0,
            end: stats.cycles,
        }];
        Dataset {
            name: name.to_string(),
            stats,
            trace,
            programs: vec![PlacedProgram {
                name: name.to_string(),
                origin: Pe::new(0, 0),
                program,
            }],
            placement,
            tokens,
            latency: None,
        }
    }

    /// A dataset from a trace alone: busy cycles come from its spans (main
    /// thread: scalar and task time; microthreads: vector time); what a
    /// trace does not record (SRAM, wavelets, stalls) is zero.
    pub fn from_trace(name: &str, trace: Trace, arch: &str) -> Dataset {
        let n = (trace.width * trace.height) as usize;
        let mut pe = PeStats::zeroed(n);
        let mut cycles = 0;
        for s in &trace.spans {
            let i = (s.pe.y * trace.width + s.pe.x) as usize;
            if i >= n {
                continue;
            }
            let d = s.end.saturating_sub(s.start);
            if s.thread == 0 {
                pe.scalar_cycles[i] = pe.scalar_cycles[i].saturating_add(d);
                pe.tasks[i] += 1;
            } else {
                pe.vector_cycles[i] = pe.vector_cycles[i].saturating_add(d);
            }
            cycles = cycles.max(s.end);
        }
        let totals = pe.totals();
        let stats = Stats {
            version: wafer_format::stats::STATS_VERSION,
            arch: arch.to_string(),
            clock_hz: trace.clock_hz,
            width: trace.width,
            height: trace.height,
            cycles,
            engine: "trace".into(),
            pe,
            totals,
        };
        let tokens = vec![TokenSpan {
            start: 0,
            end: cycles,
        }];
        Dataset {
            name: name.to_string(),
            stats,
            trace: Some(trace),
            programs: Vec::new(),
            placement: None,
            tokens,
            latency: None,
        }
    }

    /// A dataset from a run's stats file and, optionally, the same run's
    /// trace (time windows need one): both checked before anything is
    /// indexed by them.
    pub fn from_stats(
        name: &str,
        stats: Stats,
        trace: Option<Trace>,
    ) -> Result<Dataset, DatasetError> {
        stats.validate()?;
        if let Some(t) = &trace
            && (t.width, t.height) != (stats.width, stats.height)
        {
            return Err(DatasetError::NotTheSameRun {
                trace: (t.width, t.height),
                stats: (stats.width, stats.height),
            });
        }
        let cycles = stats.cycles;
        let empty = Trace {
            version: wafer_format::trace::TRACE_VERSION,
            clock_hz: stats.clock_hz,
            width: stats.width,
            height: stats.height,
            spans: Vec::new(),
            dropped: 0,
        };
        let mut d = Dataset::from_trace(name, trace.unwrap_or(empty), &stats.arch);
        if d.trace.as_ref().is_some_and(|t| t.spans.is_empty()) {
            d.trace = None;
        }
        d.stats = stats;
        d.tokens = vec![TokenSpan {
            start: 0,
            end: cycles,
        }];
        Ok(d)
    }

    /// The program (and its code) covering `pe`, with `pe` in its own
    /// coordinates.
    pub fn code_at(&self, pe: Pe) -> Option<(&PlacedProgram, Pe, &PeCode)> {
        self.programs.iter().rev().find_map(|pp| {
            let (x, y) = (
                pe.x.checked_sub(pp.origin.x)?,
                pe.y.checked_sub(pp.origin.y)?,
            );
            let local = Pe::new(x, y);
            if x >= pp.program.width || y >= pp.program.height {
                return None;
            }
            let pl = pp
                .program
                .placements
                .iter()
                .rev()
                .find(|pl| pl.pes.contains(local))?;
            Some((pp, local, &pp.program.codes[pl.code.0 as usize]))
        })
    }

    /// The op `pe` runs, by name, if the placement is known.
    pub fn op_at(&self, pe: Pe) -> Option<&str> {
        let p = self.placement.as_ref()?;
        let op = *p.pe_op.get(self.index(pe))?;
        (op != NO_OP).then(|| p.ops[op as usize].as_str())
    }
}

/// The placement of `programs` over a `width × height` grid, each PE
/// labelled by `label(program, code)`; labels are grouped into kinds by
/// [`kind_of`].
pub fn placement_of(
    programs: &[PlacedProgram],
    width: u32,
    height: u32,
    label: impl Fn(&PlacedProgram, &PeCode) -> String,
) -> Placement {
    let mut ops: Vec<String> = Vec::new();
    let mut pe_op = vec![NO_OP; (width * height) as usize];
    for pp in programs {
        for pl in &pp.program.placements {
            let name = label(pp, &pp.program.codes[pl.code.0 as usize]);
            let op = match ops.iter().position(|o| *o == name) {
                Some(i) => i,
                None => {
                    ops.push(name);
                    ops.len() - 1
                }
            } as u16;
            for local in pl.pes.iter() {
                let (x, y) = (local.x + pp.origin.x, local.y + pp.origin.y);
                if x < width && y < height {
                    pe_op[(y * width + x) as usize] = op;
                }
            }
        }
    }
    let mut kinds: Vec<String> = Vec::new();
    let op_kind = ops
        .iter()
        .map(|o| {
            let k = kind_of(o);
            (match kinds.iter().position(|x| *x == k) {
                Some(i) => i,
                None => {
                    kinds.push(k);
                    kinds.len() - 1
                }
            }) as u16
        })
        .collect();
    Placement {
        ops,
        op_kind,
        kinds,
        pe_op,
    }
}

/// An op's kind: its name without a layer prefix (`l12.attn` and
/// `layers.12.attn` → `attn`, `l0.w1_w3` → `w1_w3`; `gemv_row` stays).
pub fn kind_of(op: &str) -> String {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = op.strip_prefix("layers.")
        && let Some((n, rest)) = rest.split_once('.')
        && number(n)
    {
        return rest.to_string();
    }
    match op.split_once('.') {
        Some((layer, rest)) if layer.starts_with('l') && number(&layer[1..]) => rest.to_string(),
        _ => op.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_drop_layer_numbers() {
        assert_eq!(kind_of("l12.attn"), "attn");
        assert_eq!(kind_of("gemv_row"), "gemv_row");
        assert_eq!(kind_of("l0.w1_w3"), "w1_w3");
        assert_eq!(kind_of("layers.31.attention_norm"), "attention_norm");
        assert_eq!(kind_of("layers.x.y"), "layers.x.y");
        assert_eq!(kind_of("block3"), "block3");
        assert_eq!(kind_of("lm.head"), "lm.head");
    }
}

/// Why a stats file (and trace) make no dataset.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Stats(#[from] wafer_format::stats::StatsError),
    #[error(
        "the trace covers {}x{} PEs, the stats {}x{}: not the same run",
        trace.0,
        trace.1,
        stats.0,
        stats.1
    )]
    NotTheSameRun {
        trace: (u32, u32),
        stats: (u32, u32),
    },
}
