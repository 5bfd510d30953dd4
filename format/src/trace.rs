//! Execution traces: spans of tasks and vector operations per PE, written as
//! Chrome trace-event JSON that Perfetto (ui.perfetto.dev) and
//! chrome://tracing open, and read back by the viewer.
//!
//! Mapping: one process per grid row (`pid = y`), one thread per PE thread
//! (`tid = x·16 + thread`, thread 0 = main, 1.. = microthreads), timestamps
//! in microseconds at the machine's clock. Every event's `args` carries the
//! exact cycles, so reading back loses nothing.

use crate::Pe;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Bumped whenever the span layout changes.
pub const TRACE_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub pe: Pe,
    /// 0 = main thread, 1..=microthreads = asynchronous vector units.
    pub thread: u8,
    /// Task name, or an instruction's mnemonic.
    pub name: String,
    pub start: u64,
    pub end: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub version: u32,
    pub clock_hz: f64,
    pub width: u32,
    pub height: u32,
    pub spans: Vec<Span>,
    /// Spans not recorded because the trace hit its size limit.
    pub dropped: u64,
}

impl Trace {
    /// Append `part`'s spans moved to `origin` (its north-west PE's place in
    /// this trace's grid) and `start` cycles later, and count what it
    /// dropped as dropped here.
    pub fn append_at(&mut self, part: &Trace, origin: Pe, start: u64) {
        self.dropped += part.dropped;
        self.spans.extend(part.spans.iter().map(|sp| Span {
            pe: Pe::new(sp.pe.x + origin.x, sp.pe.y + origin.y),
            thread: sp.thread,
            name: sp.name.clone(),
            start: sp.start + start,
            end: sp.end + start,
        }));
    }

    /// The trace of the same run on a program whose columns sit `pitch`
    /// PEs apart (column `c` at `c · pitch`), as
    /// [`crate::stats::Stats::spread_columns`] moves its statistics.
    pub fn spread_columns(mut self, pitch: u32) -> Trace {
        if pitch <= 1 || self.width == 0 {
            return self;
        }
        self.width = (self.width - 1) * pitch + 1;
        for sp in &mut self.spans {
            sp.pe.x *= pitch;
        }
        self
    }

    pub fn to_chrome_json(&self) -> Value {
        let us = |c: u64| c as f64 * 1e6 / self.clock_hz;
        let mut events = Vec::with_capacity(self.spans.len() + 16);
        let mut named = std::collections::BTreeSet::new();
        for s in &self.spans {
            let tid = s.pe.x as u64 * 16 + s.thread as u64;
            if named.insert((s.pe.y, tid)) {
                let thread = if s.thread == 0 {
                    "main".to_string()
                } else {
                    format!("ut{}", s.thread - 1)
                };
                events.push(
                    json!({"ph": "M", "name": "thread_name", "pid": s.pe.y, "tid": tid,
                    "args": {"name": format!("PE({},{}) {thread}", s.pe.x, s.pe.y)}}),
                );
                events.push(
                    json!({"ph": "M", "name": "process_name", "pid": s.pe.y, "tid": tid,
                    "args": {"name": format!("row {}", s.pe.y)}}),
                );
            }
            events.push(json!({"ph": "X", "name": s.name, "cat": if s.thread == 0 { "task" } else { "vector" },
                "pid": s.pe.y, "tid": tid, "ts": us(s.start), "dur": us(s.end - s.start),
                "args": {"x": s.pe.x, "y": s.pe.y, "thread": s.thread, "start_cycle": s.start, "end_cycle": s.end}}));
        }
        json!({
            "traceEvents": events,
            "displayTimeUnit": "ns",
            "otherData": {"wafer_trace_version": self.version, "clock_hz": self.clock_hz,
                "width": self.width, "height": self.height, "dropped_spans": self.dropped},
        })
    }

    /// Read a trace written by [`Trace::to_chrome_json`]: its version, a
    /// grid within [`crate::geom::MAX_PES`], every span on it with
    /// `start ≤ end` and whole cycle numbers.
    pub fn from_chrome_json(v: &Value) -> Result<Trace, TraceError> {
        let other = v.get("otherData").ok_or(TraceError::Missing("otherData"))?;
        // An unsigned integer field, no larger than `max`.
        let int = |o: &Value, k: &'static str, max: u64| -> Result<u64, TraceError> {
            let x = o.get(k).ok_or(TraceError::Missing(k))?;
            match x.as_u64() {
                Some(n) if n <= max => Ok(n),
                _ => Err(TraceError::NotWhole {
                    field: k,
                    value: x.to_string(),
                    max,
                }),
            }
        };
        let version = int(other, "wafer_trace_version", u32::MAX as u64)? as u32;
        if version != TRACE_VERSION {
            return Err(TraceError::Version { found: version });
        }
        let width = int(other, "width", u32::MAX as u64)? as u32;
        let height = int(other, "height", u32::MAX as u64)? as u32;
        crate::geom::check_grid(width, height)?;
        let clock_hz = other
            .get("clock_hz")
            .and_then(Value::as_f64)
            .filter(|c| c.is_finite() && *c > 0.0)
            .ok_or(TraceError::Clock)?;
        let mut spans = Vec::new();
        for e in v
            .get("traceEvents")
            .and_then(Value::as_array)
            .ok_or(TraceError::Missing("traceEvents"))?
        {
            if e.get("ph").and_then(Value::as_str) != Some("X") {
                continue;
            }
            let a = e.get("args").ok_or(TraceError::SpanWithoutArgs)?;
            let pe = Pe::new(
                int(a, "x", width as u64 - 1)? as u32,
                int(a, "y", height as u64 - 1)? as u32,
            );
            let (start, end) = (
                int(a, "start_cycle", u64::MAX)?,
                int(a, "end_cycle", u64::MAX)?,
            );
            if end < start {
                return Err(TraceError::Backwards { pe, start, end });
            }
            spans.push(Span {
                pe,
                thread: int(a, "thread", u8::MAX as u64)? as u8,
                name: e
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                start,
                end,
            });
        }
        Ok(Trace {
            version,
            clock_hz,
            width,
            height,
            spans,
            dropped: int(other, "dropped_spans", u64::MAX)?,
        })
    }

    /// [`Trace::from_chrome_json`] on the file's text.
    pub fn from_chrome_text(text: &str) -> Result<Trace, TraceError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| TraceError::NotJson(e.to_string()))?;
        Trace::from_chrome_json(&v)
    }
}

/// Why a trace file cannot be read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TraceError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("missing `{0}`")]
    Missing(&'static str),
    #[error("`{field}` is {value}; expected a whole number up to {max}")]
    NotWhole {
        field: &'static str,
        value: String,
        max: u64,
    },
    #[error("trace version {found} is not supported (this build reads {TRACE_VERSION})")]
    Version { found: u32 },
    #[error(transparent)]
    Grid(#[from] crate::geom::GridError),
    #[error("`clock_hz` must be a positive number")]
    Clock,
    #[error("span without `args`")]
    SpanWithoutArgs,
    #[error("a span at {pe} ends (cycle {end}) before it starts ({start})")]
    Backwards { pe: Pe, start: u64, end: u64 },
}
