//! MPI ranks (`cargo build --features mpi`, launched as `mpirun -n R wafer
//! bench ...`): what is shared between processes, and who prints.
//!
//! `wafer bench`'s timing-only table shares its work: each step's
//! distinct stage runs (with barriers) or its wafers' stages
//! (overlapped) are split between the ranks ([`wafer_compiler::share`],
//! `Decoder::share`) and every rank gets every result, so every
//! rank builds the same table and rank 0 prints it. `wafer sweep` gives
//! each rank every R-th point and rank 0 gathers them. Any other command
//! under more than one rank is refused (each rank would repeat the same
//! work). Without the feature there is one process.

use std::sync::Arc;
use wafer_compiler::share::Exchange;

#[cfg(feature = "mpi")]
mod world {
    use mpi::traits::*;
    use std::sync::OnceLock;

    /// The world communicator's rank and size; each exchange asks MPI for
    /// the world again, so this holds no MPI handle.
    #[derive(Debug)]
    pub struct World {
        rank: usize,
        size: usize,
    }

    static WORLD: OnceLock<World> = OnceLock::new();

    /// Start MPI (once, on the main thread, before any command); the
    /// returned universe finalises MPI when dropped, at the end of `main`.
    pub fn init() -> Option<mpi::environment::Universe> {
        let universe = mpi::initialize()?;
        let w = universe.world();
        WORLD
            .set(World {
                rank: w.rank() as usize,
                size: w.size() as usize,
            })
            .expect("MPI starts once");
        Some(universe)
    }

    pub fn get() -> Option<&'static World> {
        WORLD.get()
    }

    impl wafer_compiler::share::Exchange for World {
        fn rank(&self) -> usize {
            self.rank
        }
        fn ranks(&self) -> usize {
            self.size
        }
        /// In rounds that keep what all ranks send in one under 2 GiB
        /// (MPI's counts and offsets are 32-bit), until no rank has more.
        fn all_gather(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
            let round_bytes = i32::MAX as usize / self.size;
            let world = mpi::topology::SimpleCommunicator::world();
            let mut all = vec![Vec::new(); self.size];
            let mut at = 0;
            loop {
                let piece = &mine[at.min(mine.len())..(at + round_bytes).min(mine.len())];
                let len = mpi::Count::try_from(piece.len()).expect("a round is under 2 GiB");
                let mut counts = vec![0 as mpi::Count; self.size];
                world.all_gather_into(&len, &mut counts[..]);
                if counts.iter().all(|&n| n == 0) {
                    return all;
                }
                let displs: Vec<mpi::Count> = counts
                    .iter()
                    .scan(0, |at, &n| {
                        let here = *at;
                        *at += n;
                        Some(here)
                    })
                    .collect();
                let total: usize = counts.iter().map(|&n| n as usize).sum();
                let mut round = vec![0u8; total];
                {
                    let mut part =
                        mpi::datatype::PartitionMut::new(&mut round[..], &counts[..], &displs[..]);
                    world.all_gather_varcount_into(piece, &mut part);
                }
                for ((got, &n), &d) in all.iter_mut().zip(&counts).zip(&displs) {
                    got.extend_from_slice(&round[d as usize..(d + n) as usize]);
                }
                at += round_bytes;
            }
        }
    }
}

#[cfg(feature = "mpi")]
pub use world::init;

/// The processes a bench shares its steps with: `None` for one process.
pub fn exchange() -> Option<Arc<dyn Exchange>> {
    #[cfg(feature = "mpi")]
    if let Some(w) = world::get().filter(|w| w.ranks() > 1) {
        return Some(Arc::new(Shared(w)));
    }
    None
}

/// This process's rank (0 without MPI).
pub fn rank() -> usize {
    #[cfg(feature = "mpi")]
    if let Some(w) = world::get() {
        return w.rank();
    }
    0
}

/// How many processes (1 without MPI).
pub fn ranks() -> usize {
    #[cfg(feature = "mpi")]
    if let Some(w) = world::get() {
        return w.ranks();
    }
    1
}

/// The world behind an `Arc` (the world itself lives for the process).
#[cfg(feature = "mpi")]
#[derive(Debug)]
struct Shared(&'static world::World);

#[cfg(feature = "mpi")]
impl Exchange for Shared {
    fn rank(&self) -> usize {
        self.0.rank()
    }
    fn ranks(&self) -> usize {
        self.0.ranks()
    }
    fn all_gather(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        self.0.all_gather(mine)
    }
}

#[cfg(test)]
mod tests {
    /// What ranks exchange is JSON, so its floats must come back bit for
    /// bit: serde_json's default parser can miss by an ulp (this latency,
    /// 13,345 cycles at 1.1 GHz, came back one ulp off and made a swept
    /// point's tok/s differ between one process and two ranks). The
    /// workspace turns on its `float_roundtrip` feature.
    #[test]
    fn exchanged_floats_come_back_exactly() {
        let us = 13345.0 / 1.1e9 * 1e6;
        for x in [
            us,
            1e6 / us,
            0.1,
            1.0 / 3.0,
            f64::MIN_POSITIVE,
            2.0f64.powi(60) + 1e3,
        ] {
            let back: f64 = serde_json::from_slice(&serde_json::to_vec(&x).unwrap()).unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{x}");
        }
    }
}
