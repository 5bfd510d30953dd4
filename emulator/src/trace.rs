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

    /// Read a trace written by [`Trace::to_chrome_json`].
    pub fn from_chrome_json(v: &Value) -> Result<Trace, String> {
        let other = v
            .get("otherData")
            .ok_or("not a wafer trace: no `otherData`")?;
        let num = |o: &Value, k: &str| {
            o.get(k)
                .and_then(Value::as_f64)
                .ok_or(format!("missing `{k}`"))
        };
        let version = num(other, "wafer_trace_version")? as u32;
        if version != TRACE_VERSION {
            return Err(format!(
                "trace version {version} is not supported (this build reads {TRACE_VERSION})"
            ));
        }
        let mut spans = Vec::new();
        for e in v
            .get("traceEvents")
            .and_then(Value::as_array)
            .ok_or("missing `traceEvents`")?
        {
            if e.get("ph").and_then(Value::as_str) != Some("X") {
                continue;
            }
            let a = e.get("args").ok_or("span without `args`")?;
            spans.push(Span {
                pe: Pe::new(num(a, "x")? as u32, num(a, "y")? as u32),
                thread: num(a, "thread")? as u8,
                name: e
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                start: num(a, "start_cycle")? as u64,
                end: num(a, "end_cycle")? as u64,
            });
        }
        Ok(Trace {
            version,
            clock_hz: num(other, "clock_hz")?,
            width: num(other, "width")? as u32,
            height: num(other, "height")? as u32,
            spans,
            dropped: num(other, "dropped_spans")? as u64,
        })
    }
}
