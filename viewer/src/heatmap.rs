//! From a [`Dataset`] to pixels: one value per PE for a [`Metric`] (over a
//! time window when a trace allows it), mapped through a perceptually
//! uniform colour scale or categorical colours; and screen ↔ grid
//! coordinates for zoom, pan and picking.

use crate::data::{Dataset, NO_OP};
use wafer_format::Pe;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Share of the window's cycles the PE computed.
    Busy,
    SramUsed,
    /// Wavelets the router sent out of all its ports.
    Wavelets,
    /// Cycles a vector op waited on the fabric, plus router stalls.
    Stalls,
    /// Which op each PE runs.
    Placement,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::Busy,
        Metric::SramUsed,
        Metric::Wavelets,
        Metric::Stalls,
        Metric::Placement,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Busy => "busy %",
            Metric::SramUsed => "SRAM used",
            Metric::Wavelets => "wavelets through the router",
            Metric::Stalls => "stall cycles",
            Metric::Placement => "placement",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::Busy => "% of cycles",
            Metric::SramUsed => "bytes",
            Metric::Wavelets => "wavelets",
            Metric::Stalls => "cycles",
            Metric::Placement => "",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        let key = |m: Metric| match m {
            Metric::Busy => "busy",
            Metric::SramUsed => "sram",
            Metric::Wavelets => "wavelets",
            Metric::Stalls => "stalls",
            Metric::Placement => "placement",
        };
        Metric::ALL.into_iter().find(|m| key(*m) == s)
    }
}

/// Viridis, sampled at 9 points (matplotlib's `viridis`, public domain
/// CC0); between them linear interpolation keeps it monotonic in
/// lightness.
const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 81, 139],
    [44, 113, 142],
    [33, 144, 141],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];

/// The colour of `t` in [0, 1] on the viridis scale (clamped).
pub fn viridis(t: f32) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    std::array::from_fn(|k| (a[k] as f32 + (b[k] as f32 - a[k] as f32) * f).round() as u8)
}

/// Categorical colours (Okabe–Ito, then Tableau) for placement kinds.
pub const CATEGORIES: [[u8; 3]; 12] = [
    [0, 114, 178],
    [230, 159, 0],
    [0, 158, 115],
    [204, 121, 167],
    [86, 180, 233],
    [213, 94, 0],
    [240, 228, 66],
    [148, 103, 189],
    [140, 86, 75],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// PEs with no code: dark grey, apart from every colour of the scale.
pub const EMPTY: [u8; 3] = [40, 40, 40];

/// One value per PE for `metric`, and which PEs have code.
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    pub width: u32,
    pub height: u32,
    pub metric: Metric,
    /// Per PE: the value, or for `Placement` the kind index.
    pub values: Vec<f32>,
    pub has_code: Vec<bool>,
    /// The colour scale's range (min, max) over PEs with code.
    pub range: (f32, f32),
    /// The cycles the values cover.
    pub window: (u64, u64),
}

/// Busy cycles per PE within `[t0, t1)` from a trace's spans (the main
/// thread's and the vector microthreads' time, capped at the window).
pub fn busy_in_window(d: &Dataset, t0: u64, t1: u64) -> Option<Vec<f32>> {
    let trace = d.trace.as_ref()?;
    let n = (d.width() * d.height()) as usize;
    let mut busy = vec![0u64; n];
    for s in &trace.spans {
        let (a, b) = (s.start.max(t0), s.end.min(t1));
        if b > a && s.pe.x < d.width() && s.pe.y < d.height() {
            busy[d.index(s.pe)] += b - a;
        }
    }
    let len = (t1 - t0).max(1);
    Some(
        busy.into_iter()
            .map(|b| (100.0 * b.min(len) as f64 / len as f64) as f32)
            .collect(),
    )
}

impl Heatmap {
    /// Values for `metric` over the cycles `window`. Busy comes from the
    /// trace when one is loaded (time in a task or vector op, any window),
    /// else from the counters (cycles computing, whole run only); the
    /// other metrics are whole-run counters.
    pub fn build(d: &Dataset, metric: Metric, window: (u64, u64)) -> Heatmap {
        let s = &d.stats;
        let p = &s.pe;
        let n = (s.width * s.height) as usize;
        let has_code: Vec<bool> = match &d.placement {
            Some(pl) => pl.pe_op.iter().map(|o| *o != NO_OP).collect(),
            None => (0..n)
                .map(|i| p.sram_used[i] > 0 || p.scalar_cycles[i] > 0 || p.vector_cycles[i] > 0)
                .collect(),
        };
        let cycles = s.cycles.max(1) as f32;
        let values: Vec<f32> = match metric {
            Metric::Busy if d.trace.is_some() => {
                busy_in_window(d, window.0, window.1).expect("a trace is loaded")
            }
            Metric::Busy => (0..n)
                .map(|i| {
                    let b = (p.scalar_cycles[i] + p.vector_cycles[i] + p.switch_cycles[i]) as f32;
                    (100.0 * b / cycles).min(100.0)
                })
                .collect(),
            Metric::SramUsed => p.sram_used.iter().map(|b| *b as f32).collect(),
            Metric::Wavelets => (0..n)
                .map(|i| p.wavelets_out.iter().map(|w| w[i]).sum::<u64>() as f32)
                .collect(),
            Metric::Stalls => (0..n)
                .map(|i| {
                    (p.stall_in_cycles[i] + p.stall_out_cycles[i] + p.router_stall_cycles[i]) as f32
                })
                .collect(),
            Metric::Placement => match &d.placement {
                Some(pl) => pl
                    .pe_op
                    .iter()
                    .map(|o| {
                        if *o == NO_OP {
                            -1.0
                        } else {
                            pl.op_kind[*o as usize] as f32
                        }
                    })
                    .collect(),
                None => vec![-1.0; n],
            },
        };
        let mut range = (f32::INFINITY, f32::NEG_INFINITY);
        for (v, c) in values.iter().zip(&has_code) {
            if *c {
                range = (range.0.min(*v), range.1.max(*v));
            }
        }
        if range.0 > range.1 {
            range = (0.0, 0.0);
        }
        if metric == Metric::Busy {
            range = (0.0, 100.0);
        }
        Heatmap {
            width: s.width,
            height: s.height,
            metric,
            values,
            has_code,
            range,
            window,
        }
    }

    /// The smallest box `[x0, x1) × [y0, y1)` holding every PE with code.
    pub fn code_bounds(&self) -> Option<(u32, u32, u32, u32)> {
        let mut b: Option<(u32, u32, u32, u32)> = None;
        for (i, c) in self.has_code.iter().enumerate() {
            if *c {
                let (x, y) = (i as u32 % self.width, i as u32 / self.width);
                b = Some(match b {
                    None => (x, y, x + 1, y + 1),
                    Some((a, c, d, e)) => (a.min(x), c.min(y), d.max(x + 1), e.max(y + 1)),
                });
            }
        }
        b
    }

    /// Where `v` sits on the colour scale, in [0, 1].
    pub fn normalised(&self, v: f32) -> f32 {
        let (lo, hi) = self.range;
        if hi > lo { (v - lo) / (hi - lo) } else { 0.5 }
    }

    /// RGBA pixels, row-major, one per PE.
    pub fn pixels(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.values.len() * 4];
        // One lookup table instead of an interpolation per PE.
        let lut: Vec<[u8; 3]> = (0..256).map(|i| viridis(i as f32 / 255.0)).collect();
        for (i, px) in out.chunks_exact_mut(4).enumerate() {
            let rgb = if !self.has_code[i] {
                EMPTY
            } else if self.metric == Metric::Placement {
                let k = self.values[i];
                if k < 0.0 {
                    EMPTY
                } else {
                    CATEGORIES[k as usize % CATEGORIES.len()]
                }
            } else {
                lut[(self.normalised(self.values[i]) * 255.0)
                    .round()
                    .clamp(0.0, 255.0) as usize]
            };
            px[..3].copy_from_slice(&rgb);
            px[3] = 255;
        }
        out
    }
}

/// The heatmap's camera: which grid point is at the view's centre and how
/// many screen points one PE spans.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Camera {
    pub center: [f32; 2],
    pub zoom: f32,
}

impl Camera {
    /// The whole `width × height` grid fitted into a `size` view.
    pub fn fit(width: u32, height: u32, size: [f32; 2]) -> Camera {
        let zoom = (size[0] / width.max(1) as f32).min(size[1] / height.max(1) as f32);
        Camera {
            center: [width as f32 / 2.0, height as f32 / 2.0],
            zoom,
        }
    }

    /// The PEs `[x0, x1) × [y0, y1)` fitted into a `size` view, with a
    /// margin of a twentieth of the box.
    pub fn fit_box(x0: u32, y0: u32, x1: u32, y1: u32, size: [f32; 2]) -> Camera {
        let (w, h) = ((x1 - x0).max(1) as f32, (y1 - y0).max(1) as f32);
        let zoom = (size[0] / (w * 1.1)).min(size[1] / (h * 1.1));
        Camera {
            center: [x0 as f32 + w / 2.0, y0 as f32 + h / 2.0],
            zoom,
        }
    }

    /// The grid point under `pos`, for a view whose centre is `view_center`.
    pub fn to_grid(&self, view_center: [f32; 2], pos: [f32; 2]) -> [f32; 2] {
        [
            self.center[0] + (pos[0] - view_center[0]) / self.zoom,
            self.center[1] + (pos[1] - view_center[1]) / self.zoom,
        ]
    }

    pub fn to_screen(&self, view_center: [f32; 2], grid: [f32; 2]) -> [f32; 2] {
        [
            view_center[0] + (grid[0] - self.center[0]) * self.zoom,
            view_center[1] + (grid[1] - self.center[1]) * self.zoom,
        ]
    }

    /// The PE under `pos`, if any.
    pub fn pick(
        &self,
        view_center: [f32; 2],
        pos: [f32; 2],
        width: u32,
        height: u32,
    ) -> Option<Pe> {
        let g = self.to_grid(view_center, pos);
        if g[0] < 0.0 || g[1] < 0.0 {
            return None;
        }
        let (x, y) = (g[0] as u32, g[1] as u32);
        (x < width && y < height).then(|| Pe::new(x, y))
    }

    /// Zoom by `factor` keeping the grid point under `pos` where it is.
    pub fn zoom_at(&mut self, view_center: [f32; 2], pos: [f32; 2], factor: f32) {
        let before = self.to_grid(view_center, pos);
        self.zoom = (self.zoom * factor).clamp(0.01, 200.0);
        let after = self.to_grid(view_center, pos);
        self.center[0] += before[0] - after[0];
        self.center[1] += before[1] - after[1];
    }

    pub fn pan(&mut self, screen_delta: [f32; 2]) {
        self.center[0] -= screen_delta[0] / self.zoom;
        self.center[1] -= screen_delta[1] / self.zoom;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative luminance (sRGB, linearised) of a colour.
    fn luminance(c: [u8; 3]) -> f32 {
        let lin = |v: u8| {
            let v = v as f32 / 255.0;
            if v <= 0.04045 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])
    }

    #[test]
    fn viridis_ends_and_rises_in_lightness() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(viridis(-3.0), viridis(0.0));
        assert_eq!(viridis(f32::NAN), viridis(0.0));
        let mut last = -1.0;
        for i in 0..=100 {
            let l = luminance(viridis(i as f32 / 100.0));
            assert!(l > last, "lightness falls at {i}");
            last = l;
        }
        // The empty colour is darker than the whole scale.
        assert!(luminance(EMPTY) < luminance(viridis(0.0)) + 0.01);
    }

    #[test]
    fn picking_at_zoom_levels() {
        for zoom in [0.05, 1.0, 7.5, 40.0] {
            let cam = Camera {
                center: [50.0, 20.0],
                zoom,
            };
            let vc = [400.0, 300.0];
            // The view's centre is grid point (50, 20): PE (50, 20).
            assert_eq!(cam.pick(vc, vc, 100, 40), Some(Pe::new(50, 20)));
            // Half a PE left of the centre is PE 49's right half.
            let left = [vc[0] - 0.5 * zoom, vc[1]];
            assert_eq!(cam.pick(vc, left, 100, 40), Some(Pe::new(49, 20)));
            // Round trip of a grid point through the screen.
            let g = [12.25, 33.5];
            let back = cam.to_grid(vc, cam.to_screen(vc, g));
            assert!((back[0] - g[0]).abs() < 1e-3 && (back[1] - g[1]).abs() < 1e-3);
        }
        let cam = Camera {
            center: [50.0, 20.0],
            zoom: 10.0,
        };
        // Off the grid: nothing.
        assert_eq!(cam.pick([0.0, 0.0], [-1000.0, 0.0], 100, 40), None);
        assert_eq!(cam.pick([0.0, 0.0], [600.0, 0.0], 100, 40), None);
    }

    #[test]
    fn zooming_keeps_the_point_under_the_cursor() {
        let mut cam = Camera::fit(750, 994, [800.0, 600.0]);
        let (vc, pos) = ([400.0, 300.0], [123.0, 456.0]);
        let before = cam.to_grid(vc, pos);
        cam.zoom_at(vc, pos, 8.0);
        let after = cam.to_grid(vc, pos);
        assert!((before[0] - after[0]).abs() < 1e-2 && (before[1] - after[1]).abs() < 1e-2);
        let z = cam.zoom;
        cam.pan([10.0, 0.0]);
        assert!((cam.center[0] - (after[0] - (pos[0] - vc[0]) / z - 10.0 / z)).abs() < 1e-2);
    }
}
