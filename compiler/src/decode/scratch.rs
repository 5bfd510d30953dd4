//! A stage's scratch: the buffers that hold no state (a run's inputs,
//! partial sums and outputs, its activations), and what a decode may do
//! with them.
//!
//! A functional stage starts from its program's SRAM image: the weights
//! and tables its data images fill, and zeros elsewhere. Copying that
//! image for every run costs a token its whole model's bytes in copies and
//! fresh pages. A stage whose runs write no state can instead run again on
//! the SRAM its last run ended with, once its scratch is zeroed again
//! ([`zero_scratch`]): that SRAM is then the starting image, byte for byte,
//! so the run is the one a fresh copy would give.

use std::collections::HashSet;
use wafer_emulator::isa::{Inst, Operand};
use wafer_emulator::program::Buffer;
use wafer_emulator::{Memory, Pe};
use wafer_kernels::Fragment;

/// Whether no run of `f` changes its state: no instruction stores into,
/// or is a vector op writing, a buffer that holds state (a data image
/// fills it at some PE, or the kernel keeps it, as attention its KV
/// cache), and no other buffer shares a byte with one. Every access is
/// checked against its buffer, so nothing else reaches a state byte.
pub(super) fn keeps_state(f: &Fragment) -> bool {
    let names = state_names(f);
    f.program.codes.iter().all(|code| {
        let state: Vec<bool> = (code.buffers.iter())
            .map(|b| names.contains(b.name.as_str()))
            .collect();
        let apart = |a: &Buffer, b: &Buffer| a.end() <= b.offset || b.end() <= a.offset;
        let (held, scratch): (Vec<_>, Vec<_>) = code.buffers.iter().zip(&state).partition(|b| *b.1);
        let disjoint = held
            .iter()
            .all(|(h, _)| scratch.iter().all(|(s, _)| apart(h, s)));
        let writes_state = |buf: usize| state.get(buf).copied().unwrap_or(true);
        disjoint
            && code.insts.iter().all(|inst| match inst {
                Inst::St { buf, .. } | Inst::Stf { buf, .. } => !writes_state(buf.0 as usize),
                Inst::Vec(v) => match v.dst {
                    Operand::Mem(m) => !writes_state(m.buf.0 as usize),
                    _ => true,
                },
                _ => true,
            })
    })
}

/// The names of `f`'s state buffers: those a data image fills at some PE,
/// and those the kernel keeps. A compiled stage has a data image per PE,
/// so this is a set, built once, not a search per buffer.
fn state_names(f: &Fragment) -> HashSet<&str> {
    (f.program.data.iter().map(|d| d.buffer.as_str()))
        .chain(f.state.iter().map(|s| s.as_str()))
        .collect()
}

/// Zero `f`'s scratch in `mem` (every buffer no data image fills at any
/// PE and the kernel does not keep): after a run of a [`keeps_state`]
/// stage, its starting image again.
pub(super) fn zero_scratch(f: &Fragment, mem: &mut Memory) {
    let state = state_names(f);
    // Decided once per code's buffer, not looked up again at every PE.
    let scratch: Vec<Vec<bool>> = (f.program.codes.iter())
        .map(|c| {
            (c.buffers.iter())
                .map(|b| !state.contains(b.name.as_str()))
                .collect()
        })
        .collect();
    fill(f, mem, 0, |code, buf, _, _| scratch[code][buf]);
}

/// Fill `f`'s activation buffers (those [`Fragment::is_state`] does not
/// name at the PE) in `mem` with `0xFF`, NaN in every float type: a kernel
/// that read one before writing it would change the tokens
/// (`Decoder::scramble_activations`).
pub(super) fn scramble(f: &Fragment, mem: &mut Memory) {
    fill(f, mem, 0xFF, |_, _, b, pe| !f.is_state(&b.name, pe));
}

/// Fill with `byte` each buffer of `f` in `mem` that `which` picks (by
/// its code's index, its index in that code, the buffer and its PE).
fn fill(
    f: &Fragment,
    mem: &mut Memory,
    byte: u8,
    which: impl Fn(usize, usize, &Buffer, Pe) -> bool,
) {
    let p = &f.program;
    for pl in &p.placements {
        let ci = pl.code.0 as usize;
        let code = &p.codes[ci];
        for pe in pl.pes.iter() {
            let Some(Some(sram)) = mem.get_mut((pe.y * p.width + pe.x) as usize) else {
                continue;
            };
            let picked = (code.buffers.iter().enumerate()).filter(|(bi, b)| which(ci, *bi, b, pe));
            for (_, b) in picked {
                let len = sram.len();
                let (at, end) = (b.offset as usize, b.end() as usize);
                if let Some(bytes) = sram.get_mut(at..end.min(len)) {
                    bytes.fill(byte);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::decode::Decoder;
    use crate::place::{Kernel, PlacementKind};
    use crate::{compile, llama2c};
    use wafer_emulator::DType;

    /// After a step, every stage but attention holds the SRAM its run
    /// ended with, its scratch zeroed, and that is its starting image
    /// byte for byte: the next run is the one a fresh copy would give.
    /// Attention writes its KV cache, its state, so it is not one of them.
    #[test]
    fn a_run_with_its_scratch_zeroed_leaves_the_starting_image() {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let (c, w) = llama2c::load(&models.join("stories260K.bin")).unwrap();
        for (kind, dtype) in [
            (PlacementKind::Pipeline, DType::F32),
            (PlacementKind::Mesh, DType::BF16),
        ] {
            let o = crate::place::Options::on_wse3_grid(96, 64, kind, dtype);
            let compiled = compile(&c, Some(&w), &o).unwrap();
            let mut d = Decoder::new(&compiled);
            d.step(crate::tokenizer::BOS).unwrap();
            for (i, site) in compiled.sites.iter().enumerate() {
                let name = &compiled.stages[i].name;
                let attention = matches!(site.kernel, Kernel::Attention(_));
                assert_eq!(d.keeps_state(i), !attention, "{kind:?}: {name}");
                if attention {
                    continue;
                }
                let f = &compiled.fragments[i];
                let image = (d.prepared(i).unwrap())
                    .initial_memory(&f.program, 1)
                    .unwrap();
                let held = d.memory[i].as_ref().expect("held after its run");
                assert!(*held == image, "{kind:?}: {name}");
            }
        }
    }
}
