//! A crew of threads that stays awake through a banded run's phases.
//!
//! A banded run (`band.rs`) hands out two phases a cycle, each a few
//! hundred microseconds of work or less on a grid of tens of thousands of
//! PEs. A rayon worker that finds no work sleeps after a few dozen yields,
//! so the pool's second thread was put to sleep and woken again for
//! nearly every phase: 2,631 voluntary context switches in a 1,469-cycle
//! run of one of the 8B's GEMV stages, each wake a system call on one
//! side and a scheduling delay on the other (measured in
//! docs/emulator-speed.md). The crew's helpers spin between phases
//! instead, for up to [`SPIN`], and only then park.
//!
//! A phase is `tasks` calls of one job, `job(0)` to `job(tasks - 1)`, on
//! whichever thread claims each: the caller and the helpers. The work a
//! task does must not depend on which thread runs it (each band is
//! stepped by whoever claims it, and a band's step touches that band
//! alone), so results do not depend on the thread count.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a helper spins for the next phase before it parks: longer
/// than the gap between two phases of a cycle (the caller's bookkeeping
/// between them, a band's imbalance), far shorter than a run.
const SPIN: Duration = Duration::from_micros(200);

/// The phase being handed out, in one word so that a claim is one
/// compare-and-swap that sees the phase's number, its task count and the
/// next task together: a helper late from the last phase cannot claim a
/// task of the next with the last one's count.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Claim {
    /// Which phase (wraps; only equality matters).
    phase: u32,
    tasks: u16,
    next: u16,
}

impl Claim {
    fn pack(self) -> u64 {
        (self.phase as u64) << 32 | (self.tasks as u64) << 16 | self.next as u64
    }

    fn unpack(w: u64) -> Claim {
        Claim {
            phase: (w >> 32) as u32,
            tasks: (w >> 16) as u16,
            next: w as u16,
        }
    }
}

/// The most tasks a phase may have.
pub(super) const MAX_TASKS: usize = u16::MAX as usize;

/// What the caller and the helpers share.
pub(super) struct Crew {
    claim: AtomicU64,
    /// Tasks of the current phase finished.
    done: AtomicUsize,
    stop: AtomicBool,
    /// A task panicked: the caller panics too once the phase is over,
    /// instead of returning as if it had run.
    panicked: AtomicBool,
    /// Helpers parked or about to, and their handles to wake them by.
    sleeping: AtomicUsize,
    sleepers: Mutex<Vec<Thread>>,
}

impl Crew {
    pub(super) fn new() -> Crew {
        Crew {
            claim: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            sleeping: AtomicUsize::new(0),
            sleepers: Mutex::new(Vec::new()),
        }
    }

    /// Claim the next task of the phase `w` names, if it has one left.
    fn try_claim(&self, w: u64) -> Option<usize> {
        let c = Claim::unpack(w);
        if c.next >= c.tasks {
            return None;
        }
        let next = Claim {
            next: c.next + 1,
            ..c
        };
        // Acquire: the job's inputs were written before the phase was
        // published.
        self.claim
            .compare_exchange(w, next.pack(), AcqRel, Acquire)
            .ok()
            .map(|_| c.next as usize)
    }

    /// Run tasks of the current phase until none is left to claim.
    fn work(&self, job: &(dyn Fn(usize) + Sync)) {
        loop {
            let w = self.claim.load(Acquire);
            match self.try_claim(w) {
                Some(task) => {
                    let _counted = Counted(self);
                    job(task);
                }
                None if Claim::unpack(w).next >= Claim::unpack(w).tasks => return,
                // Another thread claimed it first.
                None => {}
            }
        }
    }

    /// On a helper thread until [`Crew::stop`]: wait for a phase, take
    /// its tasks with the others, wait again.
    pub(super) fn help(&self, job: &(dyn Fn(usize) + Sync)) {
        let mut since = Instant::now();
        let mut spins = 0u32;
        loop {
            if self.stop.load(Acquire) {
                return;
            }
            let w = self.claim.load(Acquire);
            let c = Claim::unpack(w);
            if c.next < c.tasks {
                self.work(job);
                since = Instant::now();
                spins = 0;
                continue;
            }
            spins += 1;
            if !spins.is_multiple_of(64) || since.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            // Park until a phase is published or the crew stops: announce
            // it, then look (the caller publishes a phase, then looks for
            // sleepers; one of the two sees the other). Each park is
            // bounded: a wake-up lost to a bug costs a millisecond, not a
            // hang.
            let sleepers = || {
                self.sleepers
                    .lock()
                    .expect("no crew thread panics holding it")
            };
            sleepers().push(std::thread::current());
            self.sleeping.fetch_add(1, SeqCst);
            loop {
                let c = Claim::unpack(self.claim.load(SeqCst));
                if c.next < c.tasks || self.stop.load(SeqCst) {
                    break;
                }
                std::thread::park_timeout(Duration::from_millis(1));
            }
            self.sleeping.fetch_sub(1, SeqCst);
            let me = std::thread::current().id();
            self.sleepers().retain(|t| t.id() != me);
            since = Instant::now();
            spins = 0;
        }
    }

    /// Phase number `phase` on the calling thread and the helpers:
    /// `job(i)` for every `i` below `tasks` (at most [`MAX_TASKS`]),
    /// each once. Returns when all have run. Whatever `job` reads was
    /// written before this call and is not written until it returns.
    pub(super) fn phase(&self, phase: u32, tasks: usize, job: &(dyn Fn(usize) + Sync)) {
        assert!(tasks <= MAX_TASKS, "a phase of {tasks} tasks");
        self.done.store(0, Relaxed);
        let c = Claim {
            phase,
            tasks: tasks as u16,
            next: 0,
        };
        self.claim.store(c.pack(), SeqCst);
        self.wake();
        self.work(job);
        let mut spins = 0u32;
        while self.done.load(Acquire) < tasks {
            spins += 1;
            // More threads than cores: let the ones still working run.
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        if self.panicked.load(Acquire) {
            panic!("a task of a banded run's phase panicked on a crew thread");
        }
    }

    /// Wake the parked helpers.
    fn wake(&self) {
        if self.sleeping.load(SeqCst) > 0 {
            self.unpark_all();
        }
    }

    /// Send the helpers home: each returns from [`Crew::help`].
    pub(super) fn stop(&self) {
        self.stop.store(true, SeqCst);
        self.unpark_all();
    }

    fn unpark_all(&self) {
        std::mem::take(&mut *self.sleepers())
            .iter()
            .for_each(Thread::unpark);
    }

    fn sleepers(&self) -> std::sync::MutexGuard<'_, Vec<Thread>> {
        self.sleepers
            .lock()
            .expect("no crew thread panics holding it")
    }
}

/// Counts a claimed task as done when it ends, returning or unwinding:
/// the caller, waiting for the phase's count, must not wait forever for
/// a task that panicked.
struct Counted<'a>(&'a Crew);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.panicked.store(true, Release);
        }
        self.0.done.fetch_add(1, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::{Claim, Crew};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    #[test]
    fn a_claim_word_round_trips() {
        let c = Claim {
            phase: 0xdead_beef,
            tasks: 513,
            next: 17,
        };
        assert_eq!(Claim::unpack(c.pack()), c);
    }

    /// Every task of every phase runs exactly once, on any number of
    /// helpers, and a phase returns only once all of its tasks have run.
    #[test]
    fn each_task_runs_once_per_phase() {
        for helpers in [0, 1, 3] {
            let runs: Vec<AtomicU64> = (0..40).map(|_| AtomicU64::new(0)).collect();
            let phase_of = AtomicU64::new(0);
            let job = |i: usize| {
                // Record the phase a task ran in: tasks of phase p add p.
                runs[i].fetch_add(phase_of.load(Relaxed), Relaxed);
            };
            let crew = Crew::new();
            std::thread::scope(|s| {
                for _ in 0..helpers {
                    s.spawn(|| crew.help(&job));
                }
                for p in 1..=300u64 {
                    phase_of.store(p, Relaxed);
                    let tasks = (p as usize * 7) % 41;
                    crew.phase(p as u32, tasks, &job);
                    // Every task of this phase has run once.
                    let sum: u64 = runs.iter().map(|r| r.swap(0, Relaxed)).sum();
                    assert_eq!(sum, p * tasks as u64, "phase {p}, {helpers} helpers");
                }
                crew.stop();
            });
        }
    }

    /// A task that panics on a helper does not leave the caller waiting:
    /// the phase panics on the calling thread, and the helpers go home.
    #[test]
    fn a_panicking_task_panics_the_phase_not_hangs_it() {
        let caught = std::panic::catch_unwind(|| {
            let crew = Crew::new();
            let job = |i: usize| {
                if i == 5 {
                    panic!("task 5");
                }
            };
            std::thread::scope(|s| {
                s.spawn(|| crew.help(&job));
                struct Home<'a>(&'a Crew);
                impl Drop for Home<'_> {
                    fn drop(&mut self) {
                        self.0.stop();
                    }
                }
                let _home = Home(&crew);
                for p in 0..50 {
                    crew.phase(p, 8, &job);
                }
            });
        });
        assert!(caught.is_err());
    }
}
