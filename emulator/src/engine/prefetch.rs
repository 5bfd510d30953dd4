//! A hint to the memory system: start loading a cache line a step will
//! read soon. On a wafer-sized grid a step is bound by the latency of its
//! first loads (a unit's state lies far from the previous unit's), and the
//! event loop knows which units it steps next, so it asks for their state
//! ahead while it works on the current one. A hint changes no value:
//! results are the same with or without it, on every target.

/// Ask for the cache line holding `*p` (and the `lines - 1` after it).
#[inline(always)]
pub(super) fn lines<T>(p: *const T, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let base = p.cast::<i8>();
        for k in 0..lines {
            // SAFETY: SSE is part of x86_64's baseline, and a prefetch
            // reads nothing and never faults, whatever the address (these
            // are in or just past live allocations; `wrapping_add` keeps
            // the arithmetic defined).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(64 * k)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (p, lines);
    }
}
