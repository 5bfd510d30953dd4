//! SRAM images: elements read and written at their dtype's width, values
//! packed into wavelets, and every PE's starting image.

use super::deferred::pool;
use crate::Memory;
use crate::check::Layout;
use crate::program::DataInit;
use crate::{DType, Pe, Program};

/// Element `i` of a buffer at byte `base`, widened to f32 (i32 buffers give
/// the integer's value).
pub(crate) fn read_elem(sram: &[u8], base: u32, dtype: DType, i: u32) -> f32 {
    dtype.decode(read_bits(sram, base, dtype, i))
}

// The interpreter's element loops read and write through these: whole
// bytes take the plain path, 4-bit elements (two to a byte, the even one
// in the low nibble) the one branch before it.
pub(crate) fn read_bits(sram: &[u8], base: u32, dtype: DType, i: u32) -> u32 {
    if dtype == DType::Mxfp4 {
        return (sram[(base + i / 2) as usize] >> (4 * (i & 1))) as u32 & 0xf;
    }
    let a = (base + i * dtype.size_bytes()) as usize;
    match dtype.size_bytes() {
        4 => u32::from_le_bytes(sram[a..a + 4].try_into().unwrap()),
        2 => u16::from_le_bytes(sram[a..a + 2].try_into().unwrap()) as u32,
        _ => sram[a] as u32,
    }
}

pub(super) fn write_bits(sram: &mut [u8], base: u32, dtype: DType, i: u32, bits: u32) {
    if dtype == DType::Mxfp4 {
        let (a, shift) = ((base + i / 2) as usize, 4 * (i & 1));
        sram[a] = (sram[a] & !(0xf << shift)) | ((bits as u8 & 0xf) << shift);
        return;
    }
    let a = (base + i * dtype.size_bytes()) as usize;
    match dtype.size_bytes() {
        4 => sram[a..a + 4].copy_from_slice(&bits.to_le_bytes()),
        2 => sram[a..a + 2].copy_from_slice(&(bits as u16).to_le_bytes()),
        _ => sram[a] = bits as u8,
    }
}

/// Encode a stream of values into 32-bit wavelets, two 16-bit values per
/// wavelet (low half first).
pub(crate) fn pack_wavelets(values: &[f32], dtype: DType) -> Vec<u32> {
    pack_bits(values.iter().map(|v| dtype.encode(*v)), dtype)
}

pub(super) fn pack_bits(bits: impl Iterator<Item = u32>, dtype: DType) -> Vec<u32> {
    let bits: Vec<u32> = bits.collect();
    match dtype.per_word() {
        1 => bits,
        _ => bits
            .chunks(2)
            .map(|c| c[0] | c.get(1).map_or(0, |b| b << 16))
            .collect(),
    }
}

/// Byte address of element `idx` of a buffer at `base` (for a 4-bit
/// type, the byte holding it).
pub(super) fn elem_addr(base: u32, dtype: DType, idx: i64) -> u32 {
    base.wrapping_add(((idx as u64).wrapping_mul(dtype.bits() as u64) / 8) as u32)
}

/// The byte addresses from element `a`'s to element `b`'s (`a <= b`) at
/// `base`, when every element between lies at or after `base` and below
/// 4 GiB, so that [`elem_addr`] grows with the index; else `None`.
pub(super) fn elem_span(base: u32, dtype: DType, a: i64, b: i64) -> Option<(u32, u32)> {
    if a < 0 || a > b {
        return None;
    }
    let end = base as u64 + (b as u64).checked_mul(dtype.bits() as u64)? / 8;
    (end <= u32::MAX as u64).then(|| (elem_addr(base, dtype, a), end as u32))
}

/// Timing-only mode's encoding of a value it did not compute: a NaN with
/// a payload arithmetic does not produce, so a host output shows NaN there
/// (and a NaN host input is taken as unknown).
pub(super) fn unknown_bits(dtype: DType) -> u32 {
    match dtype {
        DType::F16 => 0x7d5a,
        DType::BF16 => 0x7fa5,
        _ => 0x7fa5_5a5a,
    }
}

/// The bytes of one PE's image: only what its code lays out (every access
/// is checked against its buffer, so nothing reads past them).
fn image_len(code: &crate::PeCode) -> usize {
    code.sram_bytes().next_multiple_of(4) as usize
}

/// The host bytes [`sram_images`] allocates for `p`: what a functional run
/// holds, checked against its limit before anything is allocated.
pub(crate) fn image_bytes(p: &Program, layout: &Layout) -> u64 {
    (0..layout.code_of.len())
        .filter_map(|pe| layout.code(p, pe))
        .map(|code| image_len(code) as u64)
        .sum()
}

/// Each PE's SRAM as a program starts it: its buffers zeroed, then the
/// data images written in program order (later ones win). PEs are
/// independent, so they are filled on `threads` workers.
pub(crate) fn sram_images(p: &Program, layout: &Layout, threads: usize) -> Memory {
    let n = layout.code_of.len();
    // Which data images cover each PE: one pass over the images instead of
    // a search per PE and buffer.
    let mut images: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (i, d) in p.data.iter().enumerate() {
        for at in d.pes.iter() {
            if at.x < p.width && at.y < p.height {
                images[(at.y * p.width + at.x) as usize].push(i as u32);
            }
        }
    }
    let image = |pe: usize| -> Option<Vec<u8>> {
        let code = layout.code(p, pe)?;
        let at = layout.pe_at(pe);
        let mut sram = vec![0u8; image_len(code)];
        for b in &code.buffers {
            let init = images[pe]
                .iter()
                .rev()
                .map(|i| &p.data[*i as usize])
                .find(|d| d.buffer == b.name);
            if let Some(d) = init {
                fill(&mut sram, b.offset, b.len, b.dtype, &d.init, at);
            }
        }
        Some(sram)
    };
    if threads > 1
        && let Ok(pool) = pool(threads)
    {
        use rayon::prelude::*;
        pool.install(|| (0..n).into_par_iter().map(image).collect())
    } else {
        (0..n).map(image).collect()
    }
}

/// Write elements `0..len` of a buffer at byte `base` with `init`'s values
/// at `at`, each rounded to `dtype` and encoded. A wafer-sized model's
/// weights are a billion elements or more, so the dtype and the kind of
/// image are matched once per buffer, not once per element: each arm
/// below is [`fill_with`] compiled for that case.
fn fill(sram: &mut [u8], base: u32, len: u32, dtype: DType, init: &DataInit, at: Pe) {
    match (init, dtype) {
        (DataInit::Values(v), DType::BF16) => {
            fill_with(sram, base, len, DType::BF16, |i| value(v, i))
        }
        (DataInit::Values(v), DType::F32) => {
            fill_with(sram, base, len, DType::F32, |i| value(v, i))
        }
        (DataInit::Values(v), DType::F16) => {
            fill_with(sram, base, len, DType::F16, |i| value(v, i))
        }
        (DataInit::Values(v), d) => fill_with(sram, base, len, d, |i| value(v, i)),
        (DataInit::Random { seed }, DType::BF16) => fill_with(sram, base, len, DType::BF16, |i| {
            DataInit::random(*seed, at, i)
        }),
        (DataInit::Random { seed }, d) => {
            fill_with(sram, base, len, d, |i| DataInit::random(*seed, at, i))
        }
        (init, d) => fill_with(sram, base, len, d, |i| init.value(at, i)),
    }
}

/// An explicit image's element `i`: [`DataInit::value`] less the match.
#[inline(always)]
fn value(values: &[f32], i: u32) -> f32 {
    values.get(i as usize).copied().unwrap_or(0.0)
}

/// [`fill`]'s loop, inlined where `dtype` is a constant, so that rounding,
/// encoding and the store are its one case.
#[inline(always)]
fn fill_with(sram: &mut [u8], base: u32, len: u32, dtype: DType, value: impl Fn(u32) -> f32) {
    for i in 0..len {
        let v = dtype.round(value(i));
        write_bits(sram, base, dtype, i, dtype.encode(v));
    }
}

/// A copy of `memory`, made on `threads` workers: a wafer's SRAM is
/// gigabytes in a hundred thousand buffers, and a copy made on one
/// thread (each fresh page faulted in and zeroed by the kernel first)
/// is serial time in every run that starts from a kept image.
pub(crate) fn copy_memory(memory: &Memory, threads: usize) -> Memory {
    if threads > 1
        && let Ok(pool) = pool(threads)
    {
        use rayon::prelude::*;
        pool.install(|| memory.par_iter().cloned().collect())
    } else {
        memory.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::{copy_memory, elem_addr, elem_span, fill, write_bits};
    use crate::program::DataInit;
    use crate::{DType, Pe};

    /// Each buffer's image, filled case by case, is the definition's:
    /// every element rounded to the dtype, encoded and stored, for every
    /// dtype and every kind of image (an explicit one shorter than the
    /// buffer, NaN and out-of-range values included).
    #[test]
    fn a_filled_buffer_is_its_elements_rounded_and_stored() {
        let dtypes = [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::I32,
            DType::I8,
            DType::Mxfp4,
            DType::E8m0,
        ];
        let inits = [
            DataInit::Zero,
            DataInit::Fill(-2.75),
            DataInit::Iota {
                start: -3.0,
                step: 0.37,
            },
            DataInit::Random { seed: 7 },
            DataInit::RandomInt { seed: 3, max: 127 },
            DataInit::Values(vec![1.0e-3, -7.5, f32::NAN, 300.0, -0.0, 65519.0, 3.0e38]),
        ];
        let at = Pe::new(5, 9);
        let (base, len) = (12, 37);
        for dtype in dtypes {
            for init in &inits {
                let bytes = (base + (len * dtype.bits()).div_ceil(8) + 4) as usize;
                let mut want = vec![0xa5u8; bytes];
                for i in 0..len {
                    let v = dtype.round(init.value(at, i));
                    write_bits(&mut want, base, dtype, i, dtype.encode(v));
                }
                let mut got = vec![0xa5u8; bytes];
                fill(&mut got, base, len, dtype, init, at);
                assert_eq!(got, want, "{dtype:?} from {init:?}");
            }
        }
    }

    /// A span is its ends' addresses, each element's between them; an
    /// index below 0 or a run past 4 GiB, where addresses wrap, has none.
    #[test]
    fn a_span_holds_its_elements_and_never_wraps() {
        for (base, dt, a, b) in [
            (96, DType::BF16, 3, 40),
            (0, DType::F32, 0, 0),
            (8, DType::F32, 5, 9),
        ] {
            let (lo, hi) = elem_span(base, dt, a, b).expect("within SRAM");
            assert_eq!((lo, hi), (elem_addr(base, dt, a), elem_addr(base, dt, b)));
            assert!((a..=b).all(|i| (lo..=hi).contains(&elem_addr(base, dt, i))));
        }
        assert_eq!(elem_span(96, DType::BF16, -1, 4), None);
        assert_eq!(elem_span(96, DType::BF16, 4, 3), None);
        assert_eq!(elem_span(u32::MAX - 3, DType::F32, 0, 1), None);
        assert_eq!(elem_span(0, DType::F32, 0, i64::MAX), None);
    }

    /// A copy on any number of threads is the image, PE for PE, in order
    /// (PEs without code stay without SRAM).
    #[test]
    fn a_copy_on_the_pool_is_the_image_in_order() {
        let memory: crate::Memory = (0..5000u32)
            .map(|pe| (pe % 7 != 3).then(|| (0..pe % 97).map(|b| (b ^ pe) as u8).collect()))
            .collect();
        for threads in [1, 2, 3] {
            assert_eq!(copy_memory(&memory, threads), memory, "{threads} threads");
        }
    }
}
