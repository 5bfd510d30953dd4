//! A core's vector operations in flight: each op's state and operands,
//! and the slots they occupy ([`Ops`]).

use super::fifo::FifoId;
use super::jit;
use crate::DType;
use crate::isa::VecOp;

#[derive(Clone, Copy)]
pub(super) enum Loc {
    Mem {
        base: u32,
        dtype: DType,
        idx: i64,
        stride: i64,
    },
    In {
        fifo: FifoId,
        pend_bits: u32,
        pend: u32,
    },
    Out {
        fifo: FifoId,
        pend_bits: u32,
        pend: u32,
    },
    Val(f32),
    FReg(u8),
    Unused,
}

/// In C layout, what a step reads every cycle first (progress, rate,
/// operands), the rest after.
#[repr(C)]
pub(super) struct VecOpState {
    pub(super) n: u32,
    pub(super) done: u32,
    pub(super) start_at: u64,
    pub(super) acc: u32,
    pub(super) num: u32,
    pub(super) den: u32,
    pub(super) op: VecOp,
    pub(super) dtype: DType,
    pub(super) task: u8,
    pub(super) pc: u32,
    pub(super) issued_at: u64,
    pub(super) dst: Loc,
    pub(super) srcs: [Loc; 3],
    pub(super) on_done: Option<u8>,
    /// The JIT engine's element loop for this op, when all its operands
    /// are local.
    pub(super) jit: Option<jit::VecFn>,
}

impl VecOpState {
    /// Whether a timing-only step goes through its elements one by one
    /// (looking each up in the core's known elements): a copy carries
    /// known values, and a fabric operand pops or pushes a wavelet an
    /// element. Any other op's elements are skipped in one step.
    pub(super) fn steps_known_elements(&self) -> bool {
        let fabric = |l: &Loc| matches!(l, Loc::In { .. } | Loc::Out { .. });
        self.op == VecOp::Mov || fabric(&self.dst) || self.srcs.iter().any(fabric)
    }
}

/// A core's vector ops in flight: slot 0 the main thread's synchronous op,
/// 1.. the microthreads'. A mask of the occupied slots is kept beside them,
/// so a step looks only at those (most cores have none or one). Slot 0
/// lives inside the core itself and the microthreads' slots in one array
/// allocated up to the highest one used: on a wafer of cores each pointer
/// followed to an op is a cache miss, and a step of a core running a
/// synchronous op (most steps) then follows none.
#[repr(C)]
pub(super) struct Ops {
    pub(super) live: u32,
    pub(super) n: u8,
    sync: Option<VecOpState>,
    threads: Vec<Option<VecOpState>>,
}

impl Ops {
    pub(super) fn new(n: usize) -> Ops {
        assert!(n <= 32, "at most 31 microthreads");
        Ops {
            live: 0,
            n: n as u8,
            sync: None,
            threads: Vec::new(),
        }
    }
    pub(super) fn len(&self) -> usize {
        self.n as usize
    }
    pub(super) fn is_some(&self, s: usize) -> bool {
        self.live & (1 << s) != 0
    }
    pub(super) fn any(&self) -> bool {
        self.live != 0
    }
    fn slot(&self, s: usize) -> &Option<VecOpState> {
        if s == 0 {
            &self.sync
        } else {
            &self.threads[s - 1]
        }
    }
    pub(super) fn get(&self, s: usize) -> Option<&VecOpState> {
        if self.is_some(s) {
            self.slot(s).as_ref()
        } else {
            None
        }
    }
    /// The op in slot `s`, to step it in place.
    pub(super) fn get_mut(&mut self, s: usize) -> Option<&mut VecOpState> {
        if !self.is_some(s) {
            return None;
        }
        if s == 0 {
            self.sync.as_mut()
        } else {
            self.threads[s - 1].as_mut()
        }
    }
    /// Free slot `s` of its finished op for its last reads, without moving
    /// it out (a free slot is never read, and the next op put there
    /// overwrites it): taking a finished op out copied the whole state.
    pub(super) fn retire(&mut self, s: usize) -> Option<&VecOpState> {
        if !self.is_some(s) {
            return None;
        }
        self.live &= !(1 << s);
        self.slot(s).as_ref()
    }
    /// A newly issued op into slot `s`.
    pub(super) fn put(&mut self, s: usize, op: VecOpState) {
        self.live |= 1 << s;
        if s == 0 {
            self.sync = Some(op);
            return;
        }
        if self.threads.len() < s {
            self.threads.resize_with(s, || None);
        }
        self.threads[s - 1] = Some(op);
    }
    /// The occupied slots, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &VecOpState)> {
        let mut live = self.live;
        std::iter::from_fn(move || {
            if live == 0 {
                return None;
            }
            let s = live.trailing_zeros() as usize;
            live &= live - 1;
            Some((s, self.slot(s).as_ref().expect("live slot")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(task: u8) -> VecOpState {
        VecOpState {
            task,
            pc: 0,
            op: VecOp::Mov,
            dtype: DType::F32,
            n: 1,
            done: 0,
            issued_at: 0,
            start_at: 0,
            acc: 0,
            num: 1,
            den: 1,
            dst: Loc::Unused,
            srcs: [Loc::Unused; 3],
            on_done: None,
            jit: None,
        }
    }

    /// The occupied slots are what the mask says, iterated in slot order;
    /// a retired op leaves its slot free until another is put there.
    #[test]
    fn slots_follow_the_mask() {
        let mut ops = Ops::new(4);
        assert_eq!(ops.len(), 4);
        assert!(!ops.any() && ops.get(0).is_none());
        ops.put(3, op(3));
        ops.put(1, op(1));
        assert!(ops.any() && ops.is_some(1) && ops.is_some(3) && !ops.is_some(2));
        let order: Vec<(usize, u8)> = ops.iter().map(|(s, o)| (s, o.task)).collect();
        assert_eq!(order, [(1, 1), (3, 3)]);
        assert_eq!(ops.retire(1).map(|o| o.task), Some(1));
        assert!(!ops.is_some(1) && ops.get(1).is_none());
        ops.put(0, op(9));
        assert_eq!(ops.get(0).map(|o| o.task), Some(9));
        assert_eq!(ops.retire(1).map(|o| o.task), None, "slot 1 is free");
        ops.put(2, op(2));
        assert_eq!(ops.retire(2).map(|o| o.task), Some(2));
        assert!(!ops.is_some(2) && ops.get(2).is_none());
        ops.put(3, op(7));
        assert_eq!(ops.iter().map(|(s, _)| s).collect::<Vec<_>>(), [0, 3]);
        assert_eq!(ops.get(3).map(|o| o.task), Some(7), "a put overwrites");
        assert_eq!(ops.retire(0).map(|o| o.task), Some(9));
        assert!(ops.get(0).is_none() && ops.is_some(3));
    }
}
