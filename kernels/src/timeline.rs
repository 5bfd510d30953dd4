//! When a PE's main thread gets where: the building block of the cost
//! models, one method per kind of instruction, each a line of the engine's
//! semantics (see `emulator/src/engine/mod.rs`).
//!
//! `t` is the cycle in which the main thread executes its next instruction.

use wafer_emulator::isa::VecOp;
use wafer_emulator::{Arch, DType};

#[derive(Clone, Copy, Debug)]
pub struct Timeline<'a> {
    pub arch: &'a Arch,
    pub t: u64,
}

impl<'a> Timeline<'a> {
    /// A main task about to run its first instruction: the task is picked at
    /// cycle 0 and switches for `task_switch_cycles`.
    pub fn start(arch: &'a Arch) -> Timeline<'a> {
        Timeline {
            arch,
            t: arch.task_switch_cycles as u64,
        }
    }

    fn issue(&self) -> u64 {
        self.t + 1 + self.arch.vector_issue_cycles as u64
    }

    /// `k` scalar instructions, one cycle each.
    pub fn scalar(&mut self, k: u64) {
        self.t += k;
    }

    /// A synchronous vector op of `n` elements at `rate` on local data:
    /// it starts `1 + I` after issue and the next instruction runs in the
    /// cycle it finishes.
    pub fn vector(&mut self, n: u32, rate: (u32, u32)) {
        self.t = self.issue() + Arch::vector_cycles(n, rate) - 1;
    }

    /// A vector op that sends `n` elements (one wavelet per cycle at most);
    /// returns the cycle its first element goes up the ramp.
    pub fn send(&mut self, n: u32, rate: (u32, u32)) -> u64 {
        let first = self.issue();
        self.t = first + Arch::vector_cycles(n, slower(rate, (1, 1))) - 1;
        first
    }

    /// `times` repetitions of a loop body of local work (`scalar`, `vector`,
    /// `send`: each moves `t` by an amount that does not depend on `t`), in
    /// closed form: one run of the body gives the increment. A loop over a
    /// long KV cache costs one evaluation, not one per position.
    pub fn repeat(&mut self, times: u64, body: impl Fn(&mut Timeline<'a>)) {
        let mut once = *self;
        body(&mut once);
        self.t += (once.t - self.t) * times;
    }

    /// A vector op consuming a stream whose element `k` is in the core's
    /// queue at `arrival + k`: one element per cycle once both have come.
    pub fn receive(&mut self, n: u32, arrival: u64) {
        self.t = self.issue().max(arrival) + n as u64 - 1;
    }

    /// [`Timeline::receive`] of a stream whose elements are in the core's
    /// queue at the cycles `ready` gives, in order (arriving late, in
    /// bursts): each is taken a cycle after the one before, or when it is
    /// there.
    pub fn receive_each(&mut self, ready: impl IntoIterator<Item = u64>) {
        self.t = taken(self.issue(), ready);
    }
}

/// The cycle an op that starts at `start` and takes an element a cycle,
/// in order, has taken its last, element `m` being there at the `m`-th
/// cycle of `ready` (`start` for none).
pub fn taken(start: u64, ready: impl IntoIterator<Item = u64>) -> u64 {
    let mut t = None;
    for there in ready {
        t = Some(t.map_or(start, |t: u64| t + 1).max(there));
    }
    t.unwrap_or(start)
}

/// The slower of two rates `(num, den)`.
pub fn slower(a: (u32, u32), b: (u32, u32)) -> (u32, u32) {
    if (a.0 as u64) * (b.1 as u64) <= (b.0 as u64) * (a.1 as u64) {
        a
    } else {
        b
    }
}

/// The steady rate of an f32 op with `reads` and `writes` contiguous f32
/// memory vectors.
pub fn f32_rate(arch: &Arch, op: VecOp, reads: u32, writes: u32) -> (u32, u32) {
    f32_rate_strided(arch, op, (reads, 0), (writes, 0))
}

/// [`f32_rate`] with some operands strided: `(contiguous, strided)` f32
/// vectors read and written (a strided element takes a whole port access).
pub fn f32_rate_strided(
    arch: &Arch,
    op: VecOp,
    reads: (u32, u32),
    writes: (u32, u32),
) -> (u32, u32) {
    let bits =
        |(c, s): (u32, u32)| c * arch.operand_bits(32, true) + s * arch.operand_bits(32, false);
    arch.vector_rate(op, DType::F32, false, bits(reads), bits(writes))
}
