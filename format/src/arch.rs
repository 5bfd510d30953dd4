//! The machine model: every number the engines use, with presets for the
//! Cerebras WSE-2 and WSE-3 class of machine.
//!
//! These numbers are not tuning knobs: `docs/machine-parameters.md` gives
//! each preset value's source and confidence, and one changes only with a
//! source.
//! Fields marked *inferred* have no public figure; they are parameters so a
//! researcher can see how much the answer depends on them.

use crate::DType;
use crate::isa::VecOp;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A machine: grid size, per-PE resources and latencies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arch {
    /// Preset or file name, for reports.
    pub name: String,
    /// Usable program rectangle, columns (PEs along x).
    pub grid_cols: u32,
    /// Usable program rectangle, rows (PEs along y).
    pub grid_rows: u32,
    /// Clock in Hz, to turn cycles into time.
    pub clock_hz: f64,
    /// SRAM per PE in bytes (code and data share it).
    pub sram_bytes: u32,
    /// SRAM banks per PE (reported; bank conflicts are not modelled).
    pub sram_banks: u32,
    /// f16/bf16 FMAC, add, mul, max and mov lanes per cycle.
    pub f16_lanes: u32,
    /// f32 add, sub, max and mov lanes per cycle.
    pub f32_add_lanes: u32,
    /// f32 FMAC and mul lanes per cycle.
    pub f32_fmac_lanes: u32,
    /// Cycles per element for exp, reciprocal and rsqrt (any dtype).
    pub special_fn_cycles: u32,
    /// SRAM reads per cycle (each up to `mem_port_bits` of contiguous data).
    pub mem_read_ports: u32,
    /// SRAM writes per cycle.
    pub mem_write_ports: u32,
    /// Width of one SRAM read or write: a contiguous 16-bit vector moves
    /// `mem_port_bits / 16` elements per access, a strided one element.
    pub mem_port_bits: u32,
    /// Bits in one wavelet; a link moves one wavelet per direction per cycle.
    pub wavelet_bits: u32,
    /// Routable colors (virtual channels) sharing each link.
    pub colors: u32,
    /// Cycles for a wavelet to cross one link between routers.
    pub hop_latency: u32,
    /// Cycles between a router and its own core, each way.
    pub ramp_latency: u32,
    /// Wavelets a router buffers per input port per color.
    pub router_buffer_depth: u32,
    /// Core input queues per PE (each bound to one color).
    pub input_queues: u32,
    /// Depth of each core input queue, in wavelets.
    pub queue_depth: u32,
    /// Asynchronous vector units (microthreads) per PE.
    pub microthreads: u32,
    /// Fixed cycles between issuing a vector instruction and its first element.
    pub vector_issue_cycles: u32,
    /// Cycles to switch the core to a newly picked task.
    pub task_switch_cycles: u32,
    /// Bits per second one machine's external I/O moves to the next
    /// machine of a system of wafers (each direction).
    pub wafer_link_bits_per_s: f64,
    /// Nanoseconds from the first bit leaving one machine's I/O to its
    /// arrival at the next machine's wafer (switch, cables, the systems'
    /// I/O paths).
    pub wafer_link_latency_ns: f64,
}

/// Names of the built-in presets.
pub const PRESETS: [&str; 2] = ["wse2", "wse3"];

impl Arch {
    /// Cerebras WSE-2 (CS-2). Every value's source and confidence is in
    /// `docs/machine-parameters.md`; the comments name the source only.
    pub fn wse2() -> Arch {
        Arch {
            name: "wse2".into(),
            // Fabric 757 × 996 less the memcpy border (7 columns, 2 rows):
            // WaferLLM MeshGEMV/WSE-2/compile.py; csl-examples
            // single-tile-matvec README.
            grid_cols: 750,
            grid_rows: 994,
            // csl-examples single-tile-matvec/run.py converts at 0.85 GHz
            // (WaferLLM §7 says 1.1 GHz at most): a parameter.
            clock_hz: 850e6,
            // Hot Chips 34; WaferLLM §7.
            sram_bytes: 48 * 1024,
            sram_banks: 8,
            // SDK SIMD table.
            f16_lanes: 4,
            f32_add_lanes: 2,
            // WaferLLM §7: one multiply-accumulate per cycle.
            f32_fmac_lanes: 1,
            // Inferred: no vector exp/rsqrt unit is documented.
            special_fn_cycles: 4,
            // Hot Chips 34: two 64-bit reads and one 64-bit write per cycle.
            mem_read_ports: 2,
            mem_write_ports: 1,
            mem_port_bits: 64,
            // WaferLLM §7; Luczynski et al. 2024.
            wavelet_bits: 32,
            colors: 24,
            hop_latency: 1,
            ramp_latency: 2,
            // Inferred: no published figure.
            router_buffer_depth: 2,
            // SDK DSD page: queues of 2–6 16-bit words, modelled at 6.
            input_queues: 8,
            queue_depth: 3,
            microthreads: 8,
            // Inferred: no published figure.
            vector_issue_cycles: 2,
            task_switch_cycles: 2,
            // CS-2: 12 × 100 GbE, 1.2 Tb/s of system I/O. Latency inferred.
            wafer_link_bits_per_s: 1.2e12,
            wafer_link_latency_ns: 2000.0,
        }
    }

    /// Cerebras WSE-3 (CS-3); sources in `docs/machine-parameters.md`.
    pub fn wse3() -> Arch {
        Arch {
            name: "wse3".into(),
            // Fabric 762 × 1172 less the memcpy border: WaferLLM
            // Decode/WSE-3/compile.py.
            grid_cols: 755,
            grid_rows: 1170,
            // A parameter: no WSE-3 clock is published (see the table).
            clock_hz: 1.1e9,
            sram_bytes: 48 * 1024,
            sram_banks: 8,
            // SDK SIMD table.
            f16_lanes: 8,
            f32_add_lanes: 4,
            f32_fmac_lanes: 1,
            special_fn_cycles: 4,
            // Carried over from WSE-2 (consistent with 21 PB/s over 900,000
            // cores: see the table).
            mem_read_ports: 2,
            mem_write_ports: 1,
            mem_port_bits: 64,
            wavelet_bits: 32,
            colors: 24,
            hop_latency: 1,
            ramp_latency: 2,
            router_buffer_depth: 2,
            // SDK DSD page: queues of 4–8 16-bit words, modelled at 8.
            input_queues: 8,
            queue_depth: 4,
            microthreads: 8,
            vector_issue_cycles: 2,
            task_switch_cycles: 2,
            // CS-3: 1.2 Tb/s of system I/O (12 × 100 GbE). Latency inferred.
            wafer_link_bits_per_s: 1.2e12,
            wafer_link_latency_ns: 2000.0,
        }
    }

    pub fn preset(name: &str) -> Option<Arch> {
        match name {
            "wse2" => Some(Arch::wse2()),
            "wse3" => Some(Arch::wse3()),
            _ => None,
        }
    }

    /// A preset name, or a TOML/JSON file. A file may name a `base` preset
    /// and override only some fields.
    pub fn load(spec: &str) -> Result<Arch, ArchError> {
        if let Some(a) = Arch::preset(spec) {
            return Ok(a);
        }
        let path = Path::new(spec);
        if !path.exists() {
            return Err(ArchError::Unknown(spec.to_string()));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| ArchError::Io(spec.to_string(), e.to_string()))?;
        Arch::from_text(&text, spec)
    }

    /// Parse a machine description; `origin` names the file in errors and
    /// decides the syntax (`.json` is JSON, anything else TOML).
    pub fn from_text(text: &str, origin: &str) -> Result<Arch, ArchError> {
        let bad = |m: String| ArchError::Parse(origin.to_string(), m);
        let mut value: serde_json::Value = if origin.ends_with(".json") {
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?
        } else {
            let t: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
            // JSON has no NaN or infinity: name such a value here rather
            // than let it become `null` and a type error.
            for (k, v) in &t {
                if let toml::Value::Float(x) = v
                    && !x.is_finite()
                {
                    return Err(bad(format!("`{k}` is {x}; it must be a finite number")));
                }
            }
            serde_json::to_value(t).map_err(|e| bad(e.to_string()))?
        };
        let obj = value
            .as_object_mut()
            .ok_or_else(|| bad("expected a table of machine parameters".into()))?;
        if let Some(base) = obj.remove("base") {
            let name = base
                .as_str()
                .ok_or_else(|| bad("`base` must be a preset name".into()))?;
            let preset = Arch::preset(name).ok_or_else(|| {
                bad(format!(
                    "unknown base preset `{name}` (known: {})",
                    PRESETS.join(", ")
                ))
            })?;
            let mut merged = serde_json::to_value(preset).expect("Arch serialises");
            let m = merged.as_object_mut().expect("Arch is an object");
            m.insert("name".into(), serde_json::Value::String(origin.to_string()));
            for (k, v) in obj.iter() {
                m.insert(k.clone(), v.clone());
            }
            value = merged;
        }
        let arch: Arch = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        arch.validate().map_err(bad)?;
        Ok(arch)
    }

    /// The same machine with a smaller program rectangle.
    pub fn with_grid(mut self, cols: u32, rows: u32) -> Result<Arch, ArchError> {
        if cols == 0 || rows == 0 || cols > self.grid_cols || rows > self.grid_rows {
            return Err(ArchError::Grid {
                cols,
                rows,
                max_cols: self.grid_cols,
                max_rows: self.grid_rows,
                arch: self.name,
            });
        }
        self.grid_cols = cols;
        self.grid_rows = rows;
        Ok(self)
    }

    fn validate(&self) -> Result<(), String> {
        let nonzero = [
            ("grid_cols", self.grid_cols),
            ("grid_rows", self.grid_rows),
            ("sram_bytes", self.sram_bytes),
            ("f16_lanes", self.f16_lanes),
            ("f32_add_lanes", self.f32_add_lanes),
            ("f32_fmac_lanes", self.f32_fmac_lanes),
            ("special_fn_cycles", self.special_fn_cycles),
            ("mem_read_ports", self.mem_read_ports),
            ("mem_write_ports", self.mem_write_ports),
            ("colors", self.colors),
            ("hop_latency", self.hop_latency),
            ("ramp_latency", self.ramp_latency),
            ("router_buffer_depth", self.router_buffer_depth),
            ("input_queues", self.input_queues),
            ("queue_depth", self.queue_depth),
            ("microthreads", self.microthreads),
        ];
        for (name, v) in nonzero {
            if v == 0 {
                return Err(format!("`{name}` must be at least 1"));
            }
        }
        crate::geom::check_grid(self.grid_cols, self.grid_rows)
            .map_err(|e| format!("`grid_cols` × `grid_rows`: {e}"))?;
        if !matches!(self.mem_port_bits, 32 | 64 | 128 | 256) {
            return Err(format!(
                "`mem_port_bits` is {}; use 32, 64, 128 or 256",
                self.mem_port_bits
            ));
        }
        if self.wavelet_bits != 32 {
            return Err("`wavelet_bits` must be 32 (the engines move 32-bit wavelets)".into());
        }
        // Far beyond any machine of this class; each bound keeps what the
        // engine sizes by it (a FIFO slot per cycle of latency, per-PE
        // SRAM, timers) from exhausting memory or time.
        let at_most = [
            ("sram_bytes", self.sram_bytes, 1 << 24),
            ("sram_banks", self.sram_banks, 1024),
            ("f16_lanes", self.f16_lanes, 1024),
            ("f32_add_lanes", self.f32_add_lanes, 1024),
            ("f32_fmac_lanes", self.f32_fmac_lanes, 1024),
            ("special_fn_cycles", self.special_fn_cycles, 1 << 16),
            ("mem_read_ports", self.mem_read_ports, 64),
            ("mem_write_ports", self.mem_write_ports, 64),
            ("colors", self.colors, 64),
            ("hop_latency", self.hop_latency, 64),
            ("ramp_latency", self.ramp_latency, 64),
            ("router_buffer_depth", self.router_buffer_depth, 64),
            ("input_queues", self.input_queues, 64),
            ("queue_depth", self.queue_depth, 64),
            ("microthreads", self.microthreads, 15),
            ("vector_issue_cycles", self.vector_issue_cycles, 1 << 16),
            ("task_switch_cycles", self.task_switch_cycles, 1 << 16),
        ];
        for (name, v, max) in at_most {
            if v > max {
                return Err(format!("`{name}` is {v}; it must be at most {max}"));
            }
        }
        if !(self.wafer_link_bits_per_s.is_finite()
            && self.wafer_link_bits_per_s >= 1e6
            && self.wafer_link_bits_per_s <= 1e18)
        {
            return Err(format!(
                "`wafer_link_bits_per_s` is {}; it must be between 1e6 and 1e18 bits per second",
                self.wafer_link_bits_per_s
            ));
        }
        if !(self.wafer_link_latency_ns.is_finite()
            && self.wafer_link_latency_ns >= 0.0
            && self.wafer_link_latency_ns <= 1e9)
        {
            return Err(format!(
                "`wafer_link_latency_ns` is {}; it must be between 0 and 1e9 ns (one second)",
                self.wafer_link_latency_ns
            ));
        }
        if !(self.clock_hz.is_finite() && self.clock_hz > 0.0 && self.clock_hz <= 1e12) {
            return Err(format!(
                "`clock_hz` is {}; it must be a positive number of Hz (at most 1e12)",
                self.clock_hz
            ));
        }
        Ok(())
    }

    pub fn n_pes(&self) -> u64 {
        self.grid_cols as u64 * self.grid_rows as u64
    }

    /// Cycles (of this machine's clock) to move `bytes` from one machine of
    /// a system to the next: the link's latency (to the nearest cycle),
    /// then the bytes at its rate (a started cycle counts).
    pub fn wafer_link_cycles(&self, bytes: u64) -> u64 {
        let latency = (self.wafer_link_latency_ns * self.clock_hz / 1e9).round();
        let transfer = (bytes as f64 * 8.0 * self.clock_hz / self.wafer_link_bits_per_s).ceil();
        (latency + transfer) as u64
    }

    /// Elements per cycle the datapath processes for `op` computing in `dt`.
    /// `narrow_product` says every vector multiplicand is a 16-bit memory
    /// vector: a mixed-precision FMAC/dot (16-bit product, f32 sum, like the
    /// SDK's mixed ops). Its rate is not in the SIMD table; we take the f16
    /// multiplier's lanes bounded by the f32 adder's (inferred).
    pub fn lanes(&self, op: VecOp, dt: DType, narrow_product: bool) -> u32 {
        use VecOp::*;
        match (dt, op) {
            (DType::F16 | DType::BF16, _) => self.f16_lanes,
            (_, Fmac | Fmul | Dot) if narrow_product => self.f16_lanes.min(self.f32_add_lanes),
            (_, Fmac | Fmul | Dot) => self.f32_fmac_lanes,
            _ => self.f32_add_lanes,
        }
    }

    /// The bits of port bandwidth one element of a memory operand takes:
    /// its own size when contiguous (a port access carries as many adjacent
    /// elements as fit), a whole access when strided.
    pub fn operand_bits(&self, elem_bits: u32, contiguous: bool) -> u32 {
        if contiguous {
            elem_bits
        } else {
            self.mem_port_bits
        }
    }

    /// The steady rate of a vector op in elements per cycle, as an exact
    /// fraction `(num, den)`: the tightest of the lanes, the read ports, the
    /// write port and (for exp, rcp, rsqrt) the special-function unit.
    /// `reads_bits`/`writes_bits` sum [`Arch::operand_bits`] over the
    /// memory operands read and written.
    pub fn vector_rate(
        &self,
        op: VecOp,
        dt: DType,
        narrow_product: bool,
        reads_bits: u32,
        writes_bits: u32,
    ) -> (u32, u32) {
        let mut rate = (self.lanes(op, dt, narrow_product), 1u32);
        let mut limit = |num: u32, den: u32| {
            if den > 0 && (num as u64) * (rate.1 as u64) < (rate.0 as u64) * (den as u64) {
                rate = (num, den);
            }
        };
        limit(self.mem_port_bits * self.mem_read_ports, reads_bits);
        limit(self.mem_port_bits * self.mem_write_ports, writes_bits);
        if op.is_special() {
            limit(1, self.special_fn_cycles);
        }
        let g = gcd(rate.0, rate.1);
        (rate.0 / g, rate.1 / g)
    }

    /// Cycles an op at `rate` holds the datapath for `n` elements when
    /// nothing else limits it: the first `t` with ⌊t·num/den⌋ ≥ n.
    pub fn vector_cycles(n: u32, rate: (u32, u32)) -> u64 {
        (n as u64 * rate.1 as u64).div_ceil(rate.0 as u64)
    }

    pub fn cycles_to_us(&self, cycles: u64) -> f64 {
        cycles as f64 / self.clock_hz * 1e6
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArchError {
    #[error("unknown machine `{0}`: use a preset ({p}) or a path to a .toml/.json machine file", p = PRESETS.join(", "))]
    Unknown(String),
    #[error("{0}: cannot read machine file: {1}")]
    Io(String, String),
    #[error("{0}: bad machine file: {1}")]
    Parse(String, String),
    #[error(
        "grid {cols}x{rows} does not fit machine `{arch}` ({max_cols}x{max_rows} PEs); pick a grid within it"
    )]
    Grid {
        cols: u32,
        rows: u32,
        max_cols: u32,
        max_rows: u32,
        arch: String,
    },
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_rectangles_are_the_fabrics_less_the_memcpy_border() {
        // WSE-3's fabric is 762 × 1172 = 893,064 PEs; WSE-2's 757 × 996.
        assert_eq!(Arch::wse3().n_pes(), (762 - 7) * (1172 - 2));
        assert_eq!(Arch::wse2().n_pes(), (757 - 7) * (996 - 2));
    }

    #[test]
    fn file_overrides_a_base_preset() {
        let a = Arch::from_text(
            "base = \"wse2\"\nclock_hz = 1e9\nhop_latency = 3\n",
            "mine.toml",
        )
        .unwrap();
        assert_eq!(a.hop_latency, 3);
        assert_eq!(a.clock_hz, 1e9);
        assert_eq!(a.f16_lanes, Arch::wse2().f16_lanes);
        assert_eq!(a.name, "mine.toml");
        let j = Arch::from_text(r#"{"base": "wse3", "queue_depth": 6}"#, "m.json").unwrap();
        assert_eq!(j.queue_depth, 6);
    }

    #[test]
    fn bad_machine_files_name_the_problem() {
        let e = Arch::from_text("base = \"wse2\"\nhop_latncy = 3\n", "m.toml").unwrap_err();
        assert!(e.to_string().contains("hop_latncy"), "{e}");
        let e = Arch::from_text("base = \"wse2\"\ncolors = 0\n", "m.toml").unwrap_err();
        assert!(e.to_string().contains("colors"), "{e}");
        let e = Arch::from_text("clock_hz = 1e9\n", "m.toml").unwrap_err();
        assert!(e.to_string().contains("missing field"), "{e}");
        assert!(matches!(Arch::load("nope"), Err(ArchError::Unknown(_))));
    }

    #[test]
    fn every_parameter_is_in_the_table() {
        let table = include_str!("../../docs/machine-parameters.md");
        let fields = serde_json::to_value(Arch::wse2()).unwrap();
        for name in fields.as_object().unwrap().keys() {
            assert!(
                table.contains(&format!("`{name}`")),
                "docs/machine-parameters.md has no row for `{name}`"
            );
        }
    }

    /// 1.2 Tb/s at 1.1 GHz: 32 KiB take 218.5 ns (241 cycles), after
    /// the 2 µs latency (2,200 cycles); a bad link value names its field.
    #[test]
    fn wafer_link() {
        let a = Arch::wse3();
        assert_eq!(a.wafer_link_cycles(0), 2200);
        assert_eq!(a.wafer_link_cycles(32 * 1024), 2200 + 241);
        let e = Arch::from_text("base = \"wse3\"\nwafer_link_bits_per_s = 0.0\n", "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wafer_link_bits_per_s"), "{e}");
        let e = Arch::from_text("base = \"wse3\"\nwafer_link_latency_ns = -1.0\n", "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wafer_link_latency_ns"), "{e}");
    }

    #[test]
    fn grid_must_fit() {
        assert_eq!(Arch::wse2().with_grid(16, 16).unwrap().n_pes(), 256);
        assert!(Arch::wse2().with_grid(751, 1).is_err());
    }
}
