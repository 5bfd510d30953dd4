//! The wafer viewer: heatmaps of a run over the grid, the placement, a
//! time scrubber, a PE inspector and latency against GPUs.
//!
//! `data` and `heatmap` are the data model (loading, aggregation into time
//! windows, colour mapping, picking) and need no window; `state` is what
//! the researcher chose; `ui` draws panels as functions of the state, so
//! the same code runs in a window (`run_window`), headless into a PNG
//! (`screenshot`) and under egui_kittest in the tests.

pub mod data;
pub mod heatmap;
pub mod state;
pub mod ui;

pub use data::Dataset;
pub use heatmap::{Heatmap, Metric};
pub use state::ViewerState;

/// Open a window on `state` (needs a display).
pub fn run_window(state: ViewerState) -> anyhow::Result<()> {
    struct App(ViewerState);
    impl eframe::App for App {
        fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
            ui::app(ui, &mut self.0);
        }
    }
    let title = format!("wafer view: {}", state.data.name);
    eframe::run_native(
        &title,
        eframe::NativeOptions::default(),
        Box::new(|_| Ok(Box::new(App(state)))),
    )
    .map_err(|e| {
        anyhow::anyhow!("cannot open a window ({e}); use --screenshot OUT.png without a display")
    })
}

/// Render the window's contents at `size` (points) without a display:
/// wgpu on whatever adapter there is, Mesa's software Vulkan on a server.
pub fn screenshot(state: ViewerState, size: [f32; 2]) -> anyhow::Result<image::RgbaImage> {
    let mut h = egui_kittest::Harness::builder()
        .with_size(egui::Vec2::new(size[0], size[1]))
        .wgpu()
        .build_ui_state(ui::app, state);
    h.run_steps(4);
    h.render()
        .map_err(|e| anyhow::anyhow!("headless rendering failed: {e} (is a Vulkan driver such as mesa-vulkan-drivers installed?)"))
}
