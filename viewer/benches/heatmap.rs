//! Building the full-`wse3` heatmap texture from stats (target ≤ 20 ms):
//! the values for a metric, then the RGBA pixels the texture is made of.
//!
//! `cargo bench -p wafer-viewer --bench heatmap`

use wafer_format::Arch;
use wafer_format::stats::{PeStats, Stats};
use wafer_viewer::{Dataset, Heatmap, Metric};

fn main() {
    divan::main();
}

fn full_wse3() -> Dataset {
    let a = Arch::wse3();
    let n = (a.grid_cols * a.grid_rows) as usize;
    let mut pe = PeStats::zeroed(n);
    for i in 0..n {
        // Deterministic, varied counters so no branch is always taken.
        let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        pe.sram_used[i] = (h % 49_152) as u32;
        pe.vector_cycles[i] = h % 5_000;
        pe.scalar_cycles[i] = h % 700;
        pe.stall_in_cycles[i] = h % 300;
        for d in 0..5 {
            pe.wavelets_out[d][i] = (h >> d) % 2_000;
        }
    }
    Dataset {
        name: "wse3".into(),
        stats: Stats {
            version: 1,
            arch: "wse3".into(),
            clock_hz: a.clock_hz,
            width: a.grid_cols,
            height: a.grid_rows,
            cycles: 10_000,
            engine: "bench".into(),
            totals: pe.totals(),
            pe,
        },
        trace: None,
        programs: vec![],
        placement: None,
        tokens: vec![],
        latency: None,
    }
}

#[divan::bench(args = [Metric::Busy, Metric::SramUsed, Metric::Wavelets, Metric::Stalls])]
fn wse3_texture(bencher: divan::Bencher, metric: Metric) {
    let d = full_wse3();
    bencher.bench(|| {
        let h = Heatmap::build(&d, metric, (0, d.stats.cycles));
        h.pixels()
    });
}

/// One frame of the whole window while panning the full-`wse3` heatmap:
/// a drag moves the camera, then egui lays out and wgpu renders (on the
/// adapter there is: Mesa's software Vulkan on a server).
#[divan::bench(sample_count = 20)]
fn wse3_pan_frame(bencher: divan::Bencher) {
    let mut h = egui_kittest::Harness::builder()
        .with_size(egui::Vec2::new(1280.0, 800.0))
        .wgpu()
        .build_ui_state(
            wafer_viewer::ui::app,
            wafer_viewer::ViewerState::new(full_wse3()),
        );
    h.run_steps(2);
    let mut x = 600.0;
    bencher.bench_local(|| {
        h.drag_at(egui::Pos2::new(x, 400.0));
        x += 3.0;
        h.hover_at(egui::Pos2::new(x, 400.0));
        h.step();
        h.render().expect("renders")
    });
}
