//! The viewer's data model without a window: aggregating a trace into time
//! windows, the heatmap's values and colours, and the placement.

use wafer_emulator::trace::{Span, Trace};
use wafer_emulator::{Arch, Pe, RunConfig};
use wafer_viewer::data::{Dataset, NO_OP};
use wafer_viewer::heatmap::{EMPTY, Heatmap, Metric, busy_in_window, viridis};

fn span(x: u32, y: u32, thread: u8, start: u64, end: u64) -> Span {
    Span {
        pe: Pe::new(x, y),
        thread,
        name: "t".into(),
        start,
        end,
    }
}

fn hand_trace() -> Dataset {
    let t = Trace {
        version: 1,
        clock_hz: 1e9,
        width: 3,
        height: 2,
        spans: vec![
            span(0, 0, 0, 0, 100),
            span(1, 0, 0, 50, 150),
            span(1, 0, 1, 60, 80),
            span(2, 1, 0, 190, 200),
        ],
        dropped: 0,
    };
    Dataset::from_trace("hand", t, "wse3")
}

#[test]
fn a_trace_aggregates_into_windows() {
    let d = hand_trace();
    assert_eq!(d.stats.cycles, 200);
    // [0, 100): PE(0,0) busy all of it; PE(1,0) 50 main + 20 vector.
    let w = busy_in_window(&d, 0, 100).unwrap();
    assert_eq!(w[0], 100.0);
    assert_eq!(w[1], 70.0);
    assert_eq!(w[5], 0.0);
    // [100, 200): PE(1,0) 50 of 100; PE(2,1) 10.
    let w = busy_in_window(&d, 100, 200).unwrap();
    assert_eq!((w[0], w[1], w[5]), (0.0, 50.0, 10.0));
    // Busy over a window is capped at 100 % even when threads overlap.
    let w = busy_in_window(&d, 60, 80).unwrap();
    assert_eq!(w[1], 100.0);
}

#[test]
fn the_heatmap_follows_the_window_and_its_colours_the_scale() {
    let d = hand_trace();
    let whole = Heatmap::build(&d, Metric::Busy, (0, 200));
    // Whole run, from the trace too: PE(1,0) 100 main + 20 vector of 200.
    assert_eq!(whole.values[1], 60.0);
    assert_eq!(whole.values[5], 5.0);
    // Without a trace, busy is the counters' computing cycles.
    let mut counters = d.clone();
    counters.trace = None;
    counters.stats.pe.switch_cycles[5] = 10;
    let c = Heatmap::build(&counters, Metric::Busy, (0, 200));
    assert_eq!(c.values[5], 10.0);
    let early = Heatmap::build(&d, Metric::Busy, (0, 100));
    assert_eq!(early.values[1], 70.0);
    assert_eq!(early.range, (0.0, 100.0));
    let px = early.pixels();
    // PE(0,0) is 100 % busy: the scale's top colour; PE(0,1) has no code.
    assert_eq!(&px[0..3], &viridis(1.0));
    assert_eq!(&px[3 * 4..3 * 4 + 3], &EMPTY);
}

#[test]
fn a_run_gives_every_metric_and_the_placement_by_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gemv_8x8.wsm");
    let p = wafer_emulator::load_program(&path).unwrap();
    let cfg = RunConfig {
        trace: true,
        ..RunConfig::default()
    };
    let r = wafer_emulator::run(&p, &Arch::wse3(), &Default::default(), &cfg).unwrap();
    let d = Dataset::from_run("gemv", p, r.stats.clone(), r.trace);
    let pl = d.placement.as_ref().unwrap();
    assert_eq!(pl.ops, ["gemv_first", "gemv_rest"]);
    assert!(pl.pe_op.iter().all(|o| *o != NO_OP));
    assert_eq!(d.op_at(Pe::new(0, 3)), Some("gemv_first"));
    assert_eq!(d.op_at(Pe::new(4, 3)), Some("gemv_rest"));
    let sram = Heatmap::build(&d, Metric::SramUsed, (0, d.stats.cycles));
    assert_eq!(sram.values[0], r.stats.pe.sram_used[0] as f32);
    let wav = Heatmap::build(&d, Metric::Wavelets, (0, d.stats.cycles));
    let total: f32 = wav.values.iter().sum();
    let expect: u64 = r.stats.pe.wavelets_out.iter().flatten().sum();
    assert_eq!(total, expect as f32);
    let place = Heatmap::build(&d, Metric::Placement, (0, d.stats.cycles));
    assert_eq!(place.values[0], 0.0);
    assert_eq!(place.values[4], 1.0);
    let (_, local, code) = d.code_at(Pe::new(4, 3)).unwrap();
    assert_eq!((local, code.name.as_str()), (Pe::new(4, 3), "gemv_rest"));
    assert!(d.code_at(Pe::new(8, 0)).is_none());
}

#[test]
fn the_full_wse3_heatmap_is_one_value_per_pe() {
    let a = Arch::wse3();
    let n = (a.grid_cols * a.grid_rows) as usize;
    let mut s = wafer_emulator::stats::PeStats::zeroed(n);
    for i in 0..n {
        s.sram_used[i] = (i % 48_000) as u32;
        s.vector_cycles[i] = (i % 1000) as u64;
    }
    let d = Dataset {
        name: "full".into(),
        stats: wafer_emulator::stats::Stats {
            version: 1,
            arch: "wse3".into(),
            clock_hz: a.clock_hz,
            width: a.grid_cols,
            height: a.grid_rows,
            cycles: 1000,
            engine: "test".into(),
            totals: s.totals(),
            pe: s,
        },
        trace: None,
        programs: vec![],
        placement: None,
        tokens: vec![],
        latency: None,
    };
    let h = Heatmap::build(&d, Metric::SramUsed, (0, 1000));
    assert_eq!(h.values.len(), n);
    assert_eq!(h.pixels().len(), 4 * n);
    assert_eq!(h.range, (1.0, 47_999.0));
}
