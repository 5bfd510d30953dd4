//! Published measurements of real wafer-scale hardware, reproduced on the
//! emulator (`wafer calibrate`): each [`Point`] names its source, the
//! machine preset, the workload and the clock the source converted its
//! cycles with; [`Point::evaluate`] emulates the workload (timing-only)
//! and compares. The points live in `baselines/calibration/*.toml`.
//!
//! Nothing here feeds back into the machine model: a gap is reported, not
//! fitted (`docs/machine-parameters.md` says where each parameter comes
//! from).

use crate::meshgemm::{self, MeshGemmSpec};
use crate::meshgemv::{self, MeshGemvSpec};
use crate::{KernelError, gemv};
use serde::Deserialize;
use wafer_emulator::{Arch, DType, RunConfig};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub name: String,
    /// Paper, table and row (or file and line) of the published number.
    pub source: String,
    /// The preset the hardware is (`wse2`, `wse3`).
    pub machine: String,
    /// The published time of one run of the workload, in µs.
    pub published_us: f64,
    /// The clock the source converts its measured cycles to time with.
    pub clock_hz: f64,
    pub clock_source: String,
    /// What the source leaves out and this point assumes.
    #[serde(default)]
    pub assumptions: String,
    pub workload: Workload,
}

/// What runs: one kernel and its shape.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Workload {
    /// WaferLLM's MeshGEMV ([`crate::meshgemv`]).
    Meshgemv {
        m: u32,
        n: u32,
        w: u32,
        h: u32,
        group_num: u32,
        dtype: String,
    },
    /// WaferLLM's MeshGEMM ([`crate::meshgemm`]) on a `p × p` square.
    Meshgemm {
        m: u32,
        k: u32,
        n: u32,
        p: u32,
        dtype: String,
    },
    /// Our tiled GEMV ([`crate::gemv`]) with a reduction strategy.
    Gemv {
        m: u32,
        n: u32,
        w: u32,
        h: u32,
        dtype: String,
        strategy: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{point}: {message}")]
    Point { point: String, message: String },
}

/// A point's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The published time in cycles at the source's clock.
    pub published_cycles: f64,
    pub emulated_cycles: u64,
    /// The emulated cycles at the source's clock, in µs.
    pub emulated_us: f64,
    /// `(emulated − published) / published`.
    pub error: f64,
    /// PEs the workload runs on.
    pub pes: u64,
}

impl Point {
    /// Read a point from TOML; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Point, CalibrationError> {
        let err = |message: String| CalibrationError::File {
            file: file.to_string(),
            message,
        };
        let p: Point = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if !(p.published_us.is_finite() && p.published_us > 0.0) {
            return Err(err(format!(
                "`published_us` is {}; it must be positive",
                p.published_us
            )));
        }
        if !(p.clock_hz.is_finite() && p.clock_hz > 0.0) {
            return Err(err(format!(
                "`clock_hz` is {}; it must be positive",
                p.clock_hz
            )));
        }
        if Arch::preset(&p.machine).is_none() {
            return Err(err(format!(
                "`machine` is `{}`; use a preset ({})",
                p.machine,
                wafer_emulator::arch::PRESETS.join(", ")
            )));
        }
        Ok(p)
    }

    /// PEs the workload runs on.
    pub fn pes(&self) -> u64 {
        match self.workload {
            Workload::Meshgemv { w, h, .. } | Workload::Gemv { w, h, .. } => w as u64 * h as u64,
            Workload::Meshgemm { p, .. } => p as u64 * p as u64,
        }
    }

    /// Emulate the workload timing-only on `threads` workers and compare.
    pub fn evaluate(&self, threads: usize) -> Result<Outcome, CalibrationError> {
        let err = |message: String| CalibrationError::Point {
            point: self.name.clone(),
            message,
        };
        let arch = Arch::preset(&self.machine).ok_or_else(|| err("unknown machine".into()))?;
        let dtype_of = |d: &str| {
            DType::parse(d)
                .filter(|d| d.is_float())
                .ok_or_else(|| err(format!("dtype `{d}`: use f32, f16 or bf16")))
        };
        let kernel = |e: KernelError| err(e.to_string());
        let fragment = match &self.workload {
            Workload::Meshgemv {
                m,
                n,
                w,
                h,
                group_num,
                dtype,
            } => meshgemv::generate(
                &MeshGemvSpec {
                    m: *m,
                    n: *n,
                    w: *w,
                    h: *h,
                    groups: *group_num,
                    dtype: dtype_of(dtype)?,
                    acc: dtype_of(dtype)?,
                    streamed: false,
                    seed: 1,
                },
                &arch,
            )
            .map_err(kernel)?,
            Workload::Meshgemm { m, k, n, p, dtype } => meshgemm::generate(
                &MeshGemmSpec {
                    m: *m,
                    k: *k,
                    n: *n,
                    p: *p,
                    dtype: dtype_of(dtype)?,
                    acc: dtype_of(dtype)?,
                    seed: 1,
                },
                &arch,
            )
            .map_err(kernel)?,
            Workload::Gemv {
                m,
                n,
                w,
                h,
                dtype,
                strategy,
            } => gemv::generate(
                &gemv::GemvSpec {
                    m: *m,
                    n: *n,
                    dtype: dtype_of(dtype)?,
                    w: *w,
                    h: *h,
                    strategy: crate::reduce::Strategy::parse(strategy).map_err(kernel)?,
                    seed: 1,
                    halves: false,
                    lead: Vec::new(),
                },
                &arch,
            )
            .map_err(kernel)?,
        };
        let cfg = RunConfig {
            timing_only: true,
            threads,
            ..RunConfig::default()
        };
        let inputs = fragment.default_inputs();
        let (_, run) = fragment
            .run(&arch, &inputs, &cfg)
            .map_err(|e| err(e.to_string()))?;
        let published_cycles = self.published_us * 1e-6 * self.clock_hz;
        let emulated_us = run.cycles as f64 / self.clock_hz * 1e6;
        Ok(Outcome {
            published_cycles,
            emulated_cycles: run.cycles,
            emulated_us,
            error: (emulated_us - self.published_us) / self.published_us,
            pes: self.pes(),
        })
    }
}

/// Median and worst of the absolute errors.
pub fn summary(errors: &[f64]) -> (f64, f64) {
    let mut a: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    a.sort_by(f64::total_cmp);
    if a.is_empty() {
        return (0.0, 0.0);
    }
    let median = if a.len() % 2 == 1 {
        a[a.len() / 2]
    } else {
        (a[a.len() / 2 - 1] + a[a.len() / 2]) / 2.0
    };
    (median, a[a.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_medians_and_worsts_of_absolute_errors() {
        assert_eq!(summary(&[-0.1, 0.02, 0.3]), (0.1, 0.3));
        assert_eq!(summary(&[0.1, -0.2]), (0.15000000000000002, 0.2));
        assert_eq!(summary(&[]), (0.0, 0.0));
    }

    #[test]
    fn bad_points_name_the_file_and_field() {
        let e = Point::parse("name = 1", "p.toml").unwrap_err().to_string();
        assert!(e.contains("p.toml"), "{e}");
        let ok = "name = \"x\"\nsource = \"s\"\nmachine = \"wse2\"\npublished_us = 1.0\nclock_hz = 1e9\nclock_source = \"c\"\n[workload.meshgemv]\nm = 8\nn = 8\nw = 4\nh = 4\ngroup_num = 2\ndtype = \"f16\"\n";
        Point::parse(ok, "ok.toml").unwrap();
        for (from, to, says) in [
            ("published_us = 1.0", "published_us = -1.0", "published_us"),
            ("clock_hz = 1e9", "clock_hz = 0.0", "clock_hz"),
            ("machine = \"wse2\"", "machine = \"tpu\"", "machine"),
            ("dtype = \"f16\"", "dtype = \"f16\"\nextra = 1", "extra"),
        ] {
            let e = Point::parse(&ok.replace(from, to), "b.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains("b.toml") && e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_small_point_evaluates_against_its_published_time() {
        let text = "name = \"small\"\nsource = \"s\"\nmachine = \"wse2\"\npublished_us = 1.0\nclock_hz = 1e9\nclock_source = \"c\"\n[workload.meshgemv]\nm = 64\nn = 64\nw = 8\nh = 8\ngroup_num = 2\ndtype = \"f16\"\n";
        let p = Point::parse(text, "s.toml").unwrap();
        let o = p.evaluate(1).unwrap();
        assert_eq!(o.published_cycles, 1000.0);
        assert!((o.emulated_us - o.emulated_cycles as f64 / 1e3).abs() < 1e-9);
        assert!((o.error - (o.emulated_us - 1.0)).abs() < 1e-9);
        assert!(o.emulated_cycles > 100, "{o:?}");
        assert_eq!(o.pes, 64);
    }

    /// A MeshGEMM point runs too (none is published with its numbers yet),
    /// and its emulated cycles are the kernel's own.
    #[test]
    fn a_meshgemm_point_evaluates() {
        let text = "name = \"gemm\"\nsource = \"s\"\nmachine = \"wse3\"\npublished_us = 1.0\nclock_hz = 1e9\nclock_source = \"c\"\n[workload.meshgemm]\nm = 16\nk = 8\nn = 16\np = 4\ndtype = \"bf16\"\n";
        let o = Point::parse(text, "g.toml").unwrap().evaluate(1).unwrap();
        assert_eq!(o.pes, 16);
        let s = MeshGemmSpec {
            m: 16,
            k: 8,
            n: 16,
            p: 4,
            dtype: DType::BF16,
            acc: DType::BF16,
            seed: 1,
        };
        let arch = Arch::wse3();
        let f = meshgemm::generate(&s, &arch).unwrap();
        let (_, run) = f
            .run(&arch, &Default::default(), &RunConfig::default())
            .unwrap();
        assert_eq!(o.emulated_cycles, run.cycles);
    }
}
