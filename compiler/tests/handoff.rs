//! A hand-off's hops: the longest trip of one of its consumer's input
//! elements, from the PE whose output stream carries it out of its
//! producer to the PE whose input stream takes it in, recomputed here
//! element by element (the compiler merges runs of elements).

mod common;
use common::models;
use wafer_compiler::place::{Options, PlacementKind, Tiles};
use wafer_compiler::stage::Src;
use wafer_compiler::{Compiled, compile, llama2c};
use wafer_emulator::{Arch, Pe};
use wafer_kernels::{Fragment, TensorPort};

fn options(kind: PlacementKind, tiles: Option<Tiles>) -> Options {
    let arch = Arch::wse3().with_grid(48, 48).unwrap();
    common::f32_options(arch, kind, tiles)
}

/// The grid PE whose stream carries element `e` of `port`.
fn pe_of(f: &Fragment, port: &TensorPort, input: bool, origin: Pe, e: u32) -> Pe {
    let seg = (port.segments.iter())
        .find(|g| g.offset <= e && e < g.offset + g.len)
        .unwrap_or_else(|| panic!("element {e} of `{}` in no segment", port.name));
    let streams = if input {
        &f.program.inputs
    } else {
        &f.program.outputs
    };
    let s = streams.iter().find(|s| s.name == seg.stream).unwrap();
    Pe::new(origin.x + s.pe.x, origin.y + s.pe.y)
}

/// Every hand-off's hops, element by element.
fn check(c: &Compiled) {
    let len = |v: usize| c.graph.insts[v].len as u32;
    let mut longest = 0;
    for (i, s) in c.stages.iter().enumerate() {
        let f = &c.fragments[i];
        let mut far = 0;
        for (port, srcs) in &s.inputs {
            let tensor = f.inputs.iter().find(|p| &p.name == port).unwrap();
            let mut at = 0;
            for src in srcs {
                let Src::Value(v) = *src else {
                    at += 1;
                    continue;
                };
                // The token comes from the host, not a stage.
                let Some(j) = c.stages.iter().position(|p| p.outputs.contains(&v)) else {
                    at += len(v);
                    continue;
                };
                let before: u32 = (c.stages[j].outputs.iter())
                    .take_while(|&&w| w != v)
                    .map(|&w| len(w))
                    .sum();
                let g = &c.fragments[j];
                for k in 0..len(v) {
                    let from = pe_of(g, &g.outputs[0], false, c.sites[j].origin, before + k);
                    let into = pe_of(f, tensor, true, c.sites[i].origin, at + k);
                    far = far.max(from.x.abs_diff(into.x) + from.y.abs_diff(into.y));
                }
                at += len(v);
            }
            assert_eq!(at, tensor.len, "stage `{}` port `{port}`", s.name);
        }
        let h = &c.routing.handoffs[i];
        assert_eq!(h.hops, far, "into `{}`", s.name);
        // The cycles are the trip alone: the ramps and the consumer's
        // input links are in the kernels' own runs.
        let arch = &c.options.arch;
        let fed = !h.from.is_empty() || h.ingress;
        let trip = match fed {
            true => far as u64 * arch.hop_latency as u64,
            false => 0,
        };
        assert_eq!(h.cycles, trip + h.link_cycles, "into `{}`", s.name);
        longest = longest.max(far);
    }
    assert!(longest > 0);
}

/// stories260K on 48 × 48 PEs, with both placements and in tiles: each
/// hand-off's hops are its farthest element's trip.
#[test]
fn hops_are_the_farthest_elements_trip() {
    let (cfg, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    for (kind, tiles) in [
        (PlacementKind::Pipeline, None),
        (PlacementKind::Mesh, Some(Tiles::ONE)),
        (PlacementKind::Mesh, Some(Tiles { cols: 1, rows: 3 })),
    ] {
        let c = compile(&cfg, Some(&w), &options(kind, tiles)).unwrap();
        check(&c);
    }
}

/// Elements that stay in their row cost no rows: in one tile, a GEMV's
/// y leaves its east edge row by row, so the hand-off into the vector
/// kernel after it is shorter than its rectangle's corner-to-corner trip.
#[test]
fn a_row_aligned_hand_off_is_shorter_than_corner_to_corner() {
    let (cfg, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let c = compile(
        &cfg,
        Some(&w),
        &options(PlacementKind::Mesh, Some(Tiles::ONE)),
    )
    .unwrap();
    let mut shorter = 0;
    for (i, h) in c.routing.handoffs.iter().enumerate() {
        let into = c.sites[i].origin;
        for &j in &h.from {
            let (w, hh) = c.sites[j].kernel.size();
            let o = c.sites[j].origin;
            let corner = (o.x + w - 1).abs_diff(into.x) + (o.y + hh - 1).abs_diff(into.y);
            shorter += (h.from.len() == 1 && h.hops < corner) as u32;
        }
    }
    assert!(shorter > 0);
}

/// Pipeline placement puts the argmax against the classifier's east
/// edge, and each SwiGLU against its `w1_w3`'s, a PE per row of it:
/// every element crosses one link, each row its own (the GEMV's tile
/// rows hold whole pairs of `w1_w3`'s halves, `gemv::tile_rows`). Each
/// RoPE sits against its `wq_wk_wv`'s where that GEMV has a row for each
/// of its heads and one for v (on the whole `wse3`; not on the small
/// grids, where it is stacked): on the rows that compute q and k, each of
/// its PEs' elements exactly (`GemvSpec::lead`).
/// Stacked below the GEMV, every row's part went down the one column the
/// stage starts at: on llama-3.2-1b over four `wse3` wafers, queued, the
/// logits 127,816 cycles late, each SwiGLU's inputs about 16,000.
#[test]
fn pipeline_placement_s_argmax_ropes_and_swiglus_are_fed_in_one_hop() {
    use wafer_compiler::kernel::Kernel;
    use wafer_compiler::stage::Work;
    let (cfg, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    for (arch, ropes_beside) in [
        (Arch::wse3().with_grid(48, 48).unwrap(), 0),
        (Arch::wse3().with_grid(96, 64).unwrap(), 0),
        (Arch::wse3(), cfg.n_layers),
    ] {
        let o = common::f32_options(arch.clone(), PlacementKind::Pipeline, None);
        let c = compile(&cfg, Some(&w), &o).unwrap();
        let (mut beside, mut ropes) = (0, 0);
        for (i, s) in c.stages.iter().enumerate() {
            if !matches!(
                s.work,
                Work::Argmax { .. } | Work::Swiglu { .. } | Work::Rope { .. }
            ) {
                continue;
            }
            let h = &c.routing.handoffs[i];
            let &[gemv] = h.from.as_slice() else {
                panic!("{} fed by {:?}", s.name, h.from)
            };
            let Kernel::Gemv(g) = &c.sites[gemv].kernel else {
                panic!("{} not fed by a tiled GEMV", s.name)
            };
            let (from, to) = (c.sites[gemv].origin, c.sites[i].origin);
            let (cols, rows) = c.sites[i].kernel.size();
            let at = format!("{} on {}x{}", s.name, arch.grid_cols, arch.grid_rows);
            match (&c.sites[i].kernel, &s.work) {
                // Stacked only where the GEMV has too few rows.
                (Kernel::Rope(_), Work::Rope { heads, .. }) if to.x == from.x => {
                    assert!(g.h <= *heads && g.lead.is_empty(), "{at}: {g:?}");
                    continue;
                }
                // On the rows q and k leave from, each PE fed by the
                // tile row beside it alone, v on the rows below.
                (Kernel::Rope(r), _) => {
                    assert!(cols == 1 && rows < g.h, "{at}: {cols}x{rows}");
                    assert_eq!(g.lead, r.pe_runs(), "{at}");
                    ropes += 1;
                }
                _ => assert_eq!((cols, rows), (1, g.h), "{at}"),
            }
            assert_eq!(to, Pe::new(from.x + g.w, from.y), "{at}");
            assert_eq!(h.hops, 1, "{at}");
            beside += 1;
        }
        // The argmax, a SwiGLU a layer, and a RoPE a layer where there
        // was room.
        let grid = format!("{}x{}", arch.grid_cols, arch.grid_rows);
        assert_eq!(ropes, ropes_beside, "{grid}");
        assert_eq!(beside, 1 + cfg.n_layers + ropes, "{grid}");
        check(&c);
    }
}

/// With each RoPE beside its `wq_wk_wv` (stories260K on the whole
/// `wse3`), the overlapped steps give the barriers' tokens in fewer
/// cycles, every step settled.
#[test]
fn ropes_beside_their_projections_decode_as_the_barriers() {
    use wafer_compiler::decode::Decoder;
    let (cfg, w) = llama2c::load(&models().join("stories260K.bin")).unwrap();
    let o = common::f32_options(Arch::wse3(), PlacementKind::Pipeline, None);
    let c = compile(&cfg, Some(&w), &o).unwrap();
    let run = |overlap: bool| {
        let mut d = Decoder::new(&c);
        d.overlap(overlap);
        let mut token = wafer_compiler::tokenizer::BOS;
        (0..4)
            .map(|_| {
                let s = d.step(token).unwrap();
                token = s.next;
                (s.next, s.cycles)
            })
            .collect::<Vec<_>>()
    };
    let (barrier, over) = (run(false), run(true));
    for (o, b) in over.iter().zip(&barrier) {
        assert_eq!(o.0, b.0);
        assert!(o.1 < b.1, "overlapped {} against {}", o.1, b.1);
    }
}
