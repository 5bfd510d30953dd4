//! Compiled work deferred to the end of a cycle and run on the worker
//! pool: a vector op's element loop or a scalar run, each on its own
//! core's registers and SRAM.

use super::jit;
use super::machine::Core;
#[cfg(doc)]
use super::machine::CoreData;
use std::collections::HashMap;
use std::sync::Arc;

/// The JIT engine's side of a run: its compiled code, the work deferred
/// to the end of the cycle and the pool that runs it.
pub(super) struct CompiledWork {
    /// The compiled code (functional runs on the JIT engine only).
    pub(super) jit: Option<Arc<jit::Compiled>>,
    /// Compiled work deferred to the end of this cycle (see
    /// `Machine::finish_work`), and whether element loops are deferred.
    pub(super) work: Vec<Work>,
    pub(super) defer: bool,
    /// Worker threads for the deferred work (`None`: this thread).
    pub(super) pool: Option<Arc<rayon::ThreadPool>>,
    pub(super) min_parallel_work: u64,
    /// Per code: deferred scalar runs and the instructions they ran
    /// (empty on a band of a machine, which shares nothing out).
    pub(super) scalar_runs: Vec<(u64, u64)>,
}

/// Compiled code to run on a core's registers and SRAM.
pub(super) enum Work {
    /// `k` elements of a vector op (`acc`: a reduction's register).
    Vec {
        pe: usize,
        f: jit::VecFn,
        k: u32,
        args: jit::VecArgs,
        acc: Option<u8>,
    },
    /// A scalar run from `pc` of at most `budget` instructions, the first
    /// in cycle `start` (the cycle after the real one, or after a step a
    /// chain took ahead); `ret` is what the runner returned.
    Scalar {
        pe: usize,
        f: jit::ScalarFn,
        pc: u32,
        start: u64,
        budget: u32,
        ret: u64,
    },
}

impl Work {
    pub(super) fn pe(&self) -> usize {
        match self {
            Work::Vec { pe, .. } | Work::Scalar { pe, .. } => *pe,
        }
    }
}

/// A [`Work`] item with its core's registers and SRAM.
pub(super) struct Job<'w> {
    pub(super) r: *mut i32,
    pub(super) f: *mut f32,
    pub(super) sram: *mut u8,
    pub(super) work: &'w mut Work,
}

// SAFETY: each job points into a different core (one item per core per
// cycle), and nothing else touches those cores while the jobs run.
unsafe impl Send for Job<'_> {}

impl<'w> Job<'w> {
    /// A job on a core's registers and SRAM (a [`Core`]'s, or the
    /// [`CoreData`] of one whose op is being stepped).
    pub(super) fn new(
        r: &mut [i32; 16],
        f: &mut [f32; 16],
        sram: &mut [u8],
        work: &'w mut Work,
    ) -> Job<'w> {
        Job {
            r: r.as_mut_ptr(),
            f: f.as_mut_ptr(),
            sram: sram.as_mut_ptr(),
            work,
        }
    }

    pub(super) fn on(core: &mut Core, work: &'w mut Work) -> Job<'w> {
        Job::new(&mut core.r, &mut core.f, &mut core.sram, work)
    }

    pub(super) fn run(&mut self) {
        match self.work {
            Work::Vec {
                f, k, args, acc, ..
            } => {
                let mut scratch = 0f32;
                let acc = match acc {
                    // SAFETY: a register index below 16 (the verifier's).
                    Some(r) => unsafe { self.f.add(*r as usize) },
                    None => &mut scratch as *mut f32,
                };
                // SAFETY: `issue` checked that every element of every
                // memory operand lies inside its buffer, and buffers lie
                // inside `sram`.
                unsafe { f(self.sram, acc, *k, args) };
            }
            Work::Scalar {
                f, pc, budget, ret, ..
            } => {
                // SAFETY: the runner reads and writes 16 registers of each
                // kind and, bounds-checked against each buffer, the bytes
                // its code lays out: all of `sram`.
                *ret = unsafe { f(self.r, self.f, self.sram, *pc, *budget) };
            }
        }
    }
}

/// Run a compiled scalar runner on `core` now: (instructions run, next pc).
pub(super) fn run_scalar(core: &mut Core, f: jit::ScalarFn, pc: u32, budget: u32) -> (u32, u32) {
    let mut w = Work::Scalar {
        pe: 0,
        f,
        pc,
        start: 0,
        budget,
        ret: 0,
    };
    Job::on(core, &mut w).run();
    let Work::Scalar { ret, .. } = w else {
        unreachable!()
    };
    ((ret >> 32) as u32, ret as u32)
}

/// A pool of `n` worker threads, built once per size per process.
pub(super) fn pool(n: usize) -> Result<std::sync::Arc<rayon::ThreadPool>, String> {
    use std::sync::{Arc, Mutex, OnceLock};
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| "thread pool cache poisoned".to_string())?;
    if let Some(p) = pools.get(&n) {
        return Ok(p.clone());
    }
    let p = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("wafer-pe-{i}"))
            .build()
            .map_err(|e| format!("cannot start {n} worker threads: {e}"))?,
    );
    pools.insert(n, p.clone());
    Ok(p)
}
