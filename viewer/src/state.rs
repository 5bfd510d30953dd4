//! Everything the UI shows is a function of a [`ViewerState`]: the data,
//! and what the researcher chose (metric, camera, selection, time window).
//! Interactions change the state; drawing reads it.

use crate::data::Dataset;
use crate::heatmap::{Camera, Heatmap, Metric};
use wafer_format::Pe;

pub struct ViewerState {
    pub data: Dataset,
    /// A system of wafers: `data` is one wafer's, the others a choice away.
    pub system: Option<System>,
    pub metric: Metric,
    /// `None` until the first frame fits the grid into the view.
    pub camera: Option<Camera>,
    pub selected: Option<Pe>,
    /// The cycles the heatmap covers: `[start, start + len)`.
    pub window_start: u64,
    pub window_len: u64,
    pub playing: bool,
    /// The heatmap for the current metric and window, rebuilt when either
    /// changes; the texture is the UI's copy of its pixels.
    heatmap: Option<Heatmap>,
    pub(crate) texture: Option<(egui::TextureHandle, Metric, (u64, u64))>,
}

impl ViewerState {
    pub fn new(data: Dataset) -> ViewerState {
        let cycles = data.stats.cycles.max(1);
        ViewerState {
            data,
            system: None,
            metric: Metric::Busy,
            camera: None,
            selected: None,
            window_start: 0,
            window_len: cycles,
            playing: false,
            heatmap: None,
            texture: None,
        }
    }

    /// Show one wafer of a system of `count` (`shown`: `data`'s, from 0);
    /// `load` builds another wafer's data when it is chosen.
    pub fn with_system(
        mut self,
        count: usize,
        shown: usize,
        load: impl FnMut(usize) -> Result<Dataset, String> + 'static,
    ) -> ViewerState {
        self.system = Some(System {
            count,
            shown,
            error: None,
            load: Box::new(load),
        });
        self
    }

    /// Draw wafer `k` of the system (from 0): its counters, trace and
    /// programs replace the shown wafer's; the metric, camera and time
    /// window stay (the wafers share one grid and one token's cycles), the
    /// selection goes. A wafer that fails to load leaves the shown one and
    /// says why (`System::error`).
    pub fn show_wafer(&mut self, k: usize) {
        let Some(sys) = &mut self.system else { return };
        if k == sys.shown || k >= sys.count {
            return;
        }
        match (sys.load)(k) {
            Ok(d) => {
                sys.shown = k;
                sys.error = None;
                self.data = d;
                self.selected = None;
                self.heatmap = None;
                self.texture = None;
                let (start, end) = self.window();
                self.set_window(start, end - start);
            }
            Err(e) => sys.error = Some(format!("wafer {}: {e}", k + 1)),
        }
    }

    pub fn window(&self) -> (u64, u64) {
        let end = (self.window_start + self.window_len).min(self.data.stats.cycles.max(1));
        (self.window_start, end)
    }

    /// Select a window of cycles (clamped to the run).
    pub fn set_window(&mut self, start: u64, len: u64) {
        let cycles = self.data.stats.cycles.max(1);
        self.window_len = len.clamp(1, cycles);
        self.window_start = start.min(cycles - self.window_len);
    }

    /// Move the window on by a tenth of its length, wrapping at the end
    /// (what one frame of play does).
    pub fn advance(&mut self) {
        let cycles = self.data.stats.cycles.max(1);
        let step = (self.window_len / 10).max(1);
        let next = self.window_start + step;
        self.window_start = if next + self.window_len > cycles {
            0
        } else {
            next
        };
    }

    /// The heatmap for the current metric and window.
    pub fn heatmap(&mut self) -> &Heatmap {
        let w = self.window();
        let stale = self
            .heatmap
            .as_ref()
            .is_none_or(|h| h.metric != self.metric || h.window != w);
        if stale {
            self.heatmap = Some(Heatmap::build(&self.data, self.metric, w));
        }
        self.heatmap.as_ref().expect("just built")
    }

    /// The PE with code where the current heatmap's value is highest (the
    /// first such in row-major order).
    pub fn hottest(&mut self) -> Option<Pe> {
        let h = self.heatmap();
        let mut best: Option<(usize, f32)> = None;
        for (i, (v, c)) in h.values.iter().zip(&h.has_code).enumerate() {
            if *c && best.is_none_or(|b| *v > b.1) {
                best = Some((i, *v));
            }
        }
        let w = h.width;
        best.map(|(i, _)| Pe::new(i as u32 % w, i as u32 / w))
    }

    /// The value the current heatmap shows at `pe`, with its unit.
    pub fn value_at(&mut self, pe: Pe) -> String {
        let i = self.data.index(pe);
        let metric = self.metric;
        let h = self.heatmap();
        if !h.has_code[i] {
            return "no code".into();
        }
        let v = h.values[i];
        match metric {
            Metric::Placement => self.data.op_at(pe).unwrap_or("none").to_string(),
            Metric::Busy => format!("{v:.1} % busy"),
            m => format!("{v:.0} {}", m.unit()),
        }
    }
}

/// A system of wafers drawn one wafer at a time: the latency panel covers
/// the whole token, the grid shows the chosen wafer. The wafers' data is
/// built on demand by whoever opened the viewer (from the run it already
/// made), so the viewer itself needs no engine.
pub struct System {
    pub count: usize,
    /// The wafer drawn, from 0.
    pub shown: usize,
    /// Why the last choice failed to load, if it did.
    pub error: Option<String>,
    load: Box<dyn FnMut(usize) -> Result<Dataset, String>>,
}
