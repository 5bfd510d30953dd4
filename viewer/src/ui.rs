//! The panels, each a function of the [`ViewerState`] drawn into a `Ui`:
//! the wafer heatmap, its legend and metric selector, the time scrubber,
//! the PE inspector and the latency charts. `app` lays them out.

use crate::data::StageTime;
use crate::heatmap::{CATEGORIES, Camera, EMPTY, Metric, viridis};
use crate::state::ViewerState;
use egui::{Color32, Pos2, Rect, Sense, Stroke, Vec2};
use wafer_format::Port;

fn rgb(c: [u8; 3]) -> Color32 {
    Color32::from_rgb(c[0], c[1], c[2])
}

/// The whole window.
pub fn app(ui: &mut egui::Ui, s: &mut ViewerState) {
    egui::Panel::top("header").show(ui, |ui| header(ui, s));
    egui::Panel::bottom("time").show(ui, |ui| scrubber(ui, s));
    egui::Panel::left("side")
        .default_size(280.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                legend(ui, s);
                ui.separator();
                latency(ui, s);
            });
        });
    egui::Panel::right("inspector")
        .default_size(320.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| inspector(ui, s));
        });
    egui::CentralPanel::default().show(ui, |ui| wafer(ui, s));
}

pub fn header(ui: &mut egui::Ui, s: &mut ViewerState) {
    ui.horizontal(|ui| {
        wafer_choice(ui, s);
        let st = &s.data.stats;
        ui.strong(&s.data.name);
        ui.label(format!(
            "{} · {}×{} PEs · {} cycles ({:.2} µs) · engine {}",
            st.arch,
            st.width,
            st.height,
            st.cycles,
            st.cycles as f64 / st.clock_hz * 1e6,
            st.engine
        ));
    });
}

/// On a system of wafers, which wafer the grid shows (and why the last
/// choice failed, if it did).
fn wafer_choice(ui: &mut egui::Ui, s: &mut ViewerState) {
    let Some(sys) = &s.system else { return };
    let (count, shown) = (sys.count, sys.shown);
    let mut pick = shown;
    egui::ComboBox::from_label("wafer")
        .selected_text(format!("{} of {count}", shown + 1))
        .show_ui(ui, |ui| {
            for k in 0..count {
                ui.selectable_value(&mut pick, k, format!("wafer {}", k + 1));
            }
        });
    if let Some(e) = &sys.error {
        ui.colored_label(Color32::LIGHT_RED, e);
    }
    s.show_wafer(pick);
}

/// The metric selector and the colour scale (or the categories) with units.
pub fn legend(ui: &mut egui::Ui, s: &mut ViewerState) {
    egui::ComboBox::from_label("metric")
        .selected_text(s.metric.name())
        .show_ui(ui, |ui| {
            for m in Metric::ALL {
                ui.selectable_value(&mut s.metric, m, m.name());
            }
        });
    let metric = s.metric;
    if metric == Metric::Placement {
        let Some(p) = s.data.placement.clone() else {
            ui.label("no placement in this data");
            return;
        };
        ui.label("kind of op each PE runs");
        for (i, k) in p.kinds.iter().enumerate() {
            ui.horizontal(|ui| {
                swatch(ui, rgb(CATEGORIES[i % CATEGORIES.len()]));
                ui.label(k);
            });
        }
    } else {
        let (lo, hi) = s.heatmap().range;
        let unit = if metric == Metric::Busy && s.data.trace.is_some() {
            "% of the window in a task or vector op, from the trace"
        } else if metric == Metric::Busy {
            "% of cycles computing, from the counters"
        } else {
            metric.unit()
        };
        ui.label(format!("{} ({unit})", metric.name()));
        let (rect, _) = ui.allocate_exact_size(Vec2::new(240.0, 14.0), Sense::hover());
        let n = 64;
        for i in 0..n {
            let x0 = rect.left() + rect.width() * i as f32 / n as f32;
            let x1 = rect.left() + rect.width() * (i + 1) as f32 / n as f32;
            ui.painter().rect_filled(
                Rect::from_min_max(
                    Pos2::new(x0, rect.top()),
                    Pos2::new(x1 + 0.5, rect.bottom()),
                ),
                0.0,
                rgb(viridis(i as f32 / (n - 1) as f32)),
            );
        }
        ui.horizontal(|ui| {
            ui.label(format!("{lo:.0}"));
            ui.add_space(180.0);
            ui.label(format!("{hi:.0}"));
        });
    }
    ui.horizontal(|ui| {
        swatch(ui, rgb(EMPTY));
        ui.label("no code");
    });
}

/// A 100-point bar filled to `fraction` in `colour`, the row's label
/// drawn after it by the caller.
fn bar(ui: &mut egui::Ui, fraction: f32, colour: [u8; 3]) {
    let (r, _) = ui.allocate_exact_size(Vec2::new(100.0, 10.0), Sense::hover());
    ui.painter().rect_filled(
        Rect::from_min_size(r.min, Vec2::new(r.width() * fraction, r.height())),
        0.0,
        rgb(colour),
    );
}

/// The mark under a stage its consumers held back.
const HELD: Color32 = Color32::from_rgb(255, 40, 40);

fn swatch(ui: &mut egui::Ui, c: Color32) {
    let (r, _) = ui.allocate_exact_size(Vec2::splat(12.0), Sense::hover());
    ui.painter().rect_filled(r, 2.0, c);
}

/// The grid as a texture; drag pans, scroll zooms, click selects, hover
/// shows the PE. At high zoom, each PE's outgoing traffic per direction.
pub fn wafer(ui: &mut egui::Ui, s: &mut ViewerState) {
    let (w, h) = (s.data.width(), s.data.height());
    let (rect, resp) = ui.allocate_exact_size(ui.available_size(), Sense::click_and_drag());
    let vc = [rect.center().x, rect.center().y];
    if s.camera.is_none() {
        // Start on the PEs that run something (a small model on a big
        // wafer is otherwise a few pixels).
        let size = [rect.width(), rect.height()];
        s.camera = Some(match s.heatmap().code_bounds() {
            Some((x0, y0, x1, y1)) => Camera::fit_box(x0, y0, x1, y1, size),
            None => Camera::fit(w, h, size),
        });
    }
    let cam = s.camera.expect("set above");
    let key = (s.metric, s.window());
    if s.texture.as_ref().is_none_or(|t| (t.1, t.2) != key) {
        let hm = s.heatmap();
        let img = egui::ColorImage::from_rgba_unmultiplied(
            [hm.width as usize, hm.height as usize],
            &hm.pixels(),
        );
        let tex = ui
            .ctx()
            .load_texture("heatmap", img, egui::TextureOptions::NEAREST);
        s.texture = Some((tex, key.0, key.1));
    }
    let tex = s.texture.as_ref().expect("just loaded").0.id();
    let to = |g: [f32; 2]| {
        let p = cam.to_screen(vc, g);
        Pos2::new(p[0], p[1])
    };
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 0.0, Color32::from_gray(20));
    painter.image(
        tex,
        Rect::from_min_max(to([0.0, 0.0]), to([w as f32, h as f32])),
        Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
        Color32::WHITE,
    );
    if cam.zoom >= 16.0 {
        links(&painter, s, &cam, vc, rect);
    }
    if let Some(pe) = s.selected {
        let r = Rect::from_min_max(
            to([pe.x as f32, pe.y as f32]),
            to([pe.x as f32 + 1.0, pe.y as f32 + 1.0]),
        )
        .expand(2.0);
        painter.rect_stroke(
            r,
            0.0,
            Stroke::new(2.0, Color32::WHITE),
            egui::StrokeKind::Outside,
        );
    }
    // Interactions change the state; the next frame draws it.
    let cam = s.camera.as_mut().expect("set above");
    if resp.dragged() {
        let d = resp.drag_delta();
        cam.pan([d.x, d.y]);
    }
    if resp.hovered() {
        let scroll = ui.input(|i| i.smooth_scroll_delta.y);
        if scroll != 0.0
            && let Some(p) = resp.hover_pos()
        {
            cam.zoom_at(vc, [p.x, p.y], (scroll / 200.0).exp());
        }
    }
    let cam = *cam;
    if resp.clicked()
        && let Some(p) = resp.interact_pointer_pos()
    {
        s.selected = cam.pick(vc, [p.x, p.y], w, h);
    }
    if let Some(p) = resp.hover_pos()
        && let Some(pe) = cam.pick(vc, [p.x, p.y], w, h)
    {
        let value = s.value_at(pe);
        let op = s.data.op_at(pe).unwrap_or("no code").to_string();
        resp.on_hover_ui_at_pointer(|ui| {
            ui.label(format!("{pe}: {op}"));
            ui.label(value);
        });
    }
}

/// Per-link traffic: a bar on each side of every visible PE, as long as the
/// wavelets it sent that way are a share of the most any PE sent.
fn links(painter: &egui::Painter, s: &ViewerState, cam: &Camera, vc: [f32; 2], rect: Rect) {
    let (w, h) = (s.data.width(), s.data.height());
    let lo = cam.to_grid(vc, [rect.left(), rect.top()]);
    let hi = cam.to_grid(vc, [rect.right(), rect.bottom()]);
    let (x0, y0) = (lo[0].max(0.0) as u32, lo[1].max(0.0) as u32);
    let (x1, y1) = (
        (hi[0].ceil().max(0.0) as u32).min(w),
        (hi[1].ceil().max(0.0) as u32).min(h),
    );
    let out = &s.data.stats.pe.wavelets_out;
    let max = out[..4]
        .iter()
        .flat_map(|v| v.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f32;
    for y in y0..y1 {
        for x in x0..x1 {
            let i = (y * w + x) as usize;
            let c = cam.to_screen(vc, [x as f32 + 0.5, y as f32 + 0.5]);
            let c = Pos2::new(c[0], c[1]);
            for (port, d) in [
                (Port::N, Vec2::new(0.0, -1.0)),
                (Port::S, Vec2::new(0.0, 1.0)),
                (Port::E, Vec2::new(1.0, 0.0)),
                (Port::W, Vec2::new(-1.0, 0.0)),
            ] {
                let n = out[port.index()][i];
                if n == 0 {
                    continue;
                }
                let len = 0.45 * cam.zoom * (n as f32 / max).sqrt();
                painter.line_segment(
                    [c, c + d * len],
                    Stroke::new(
                        (cam.zoom / 12.0).clamp(1.0, 4.0),
                        Color32::from_rgb(255, 255, 255),
                    ),
                );
            }
        }
    }
}

/// A scrubber over the run's cycles (and tokens), and play/pause.
pub fn scrubber(ui: &mut egui::Ui, s: &mut ViewerState) {
    let cycles = s.data.stats.cycles.max(1);
    ui.horizontal(|ui| {
        let label = if s.playing { "pause" } else { "play" };
        if ui.button(label).clicked() {
            s.playing = !s.playing;
        }
        let mut start = s.window_start;
        let mut len = s.window_len;
        ui.add(
            egui::Slider::new(&mut start, 0..=cycles - 1)
                .text("window start")
                .show_value(false),
        );
        ui.add(
            egui::Slider::new(&mut len, 1..=cycles)
                .logarithmic(true)
                .text("length")
                .show_value(false),
        );
        let (a, b) = s.window();
        ui.label(format!("cycles {a}..{b} of {cycles}"));
        if (start, len) != (s.window_start, s.window_len) {
            s.set_window(start, len);
        }
        if s.data.tokens.len() > 1 {
            ui.label("token");
            for (i, t) in s.data.tokens.clone().iter().enumerate() {
                if ui.small_button(format!("{i}")).clicked() {
                    s.set_window(t.start, t.end - t.start);
                }
            }
        }
        if s.data.trace.is_none() {
            ui.label("(no trace: counters are whole-run totals)");
        }
    });
    if s.playing {
        s.advance();
        ui.ctx().request_repaint();
    }
}

/// The selected PE: what it runs, its counters, code, memory and routes.
pub fn inspector(ui: &mut egui::Ui, s: &mut ViewerState) {
    let Some(pe) = s.selected else {
        ui.label("click a PE to inspect it");
        return;
    };
    ui.heading(pe.to_string());
    let value = s.value_at(pe);
    ui.label(format!("{}: {value}", s.metric.name()));
    let d = &s.data;
    let i = d.index(pe);
    if let Some(op) = d.op_at(pe) {
        ui.label(format!("runs `{op}`"));
    }
    let p = &d.stats.pe;
    egui::Grid::new("counters").striped(true).show(ui, |ui| {
        let rows: [(&str, u64); 10] = [
            ("scalar cycles", p.scalar_cycles[i]),
            ("vector cycles", p.vector_cycles[i]),
            ("task switch cycles", p.switch_cycles[i]),
            ("stalled on input", p.stall_in_cycles[i]),
            ("stalled on output", p.stall_out_cycles[i]),
            ("stalled on issue", p.stall_issue_cycles[i]),
            ("router stalls", p.router_stall_cycles[i]),
            ("tasks run", p.tasks[i]),
            ("wavelets from core", p.wavelets_from_core[i]),
            ("SRAM bytes used", p.sram_used[i] as u64),
        ];
        for (k, v) in rows {
            ui.label(k);
            ui.label(v.to_string());
            ui.end_row();
        }
        for port in Port::ALL {
            ui.label(format!("wavelets out {port}"));
            ui.label(p.wavelets_out[port.index()][i].to_string());
            ui.end_row();
        }
    });
    let Some((pp, local, code)) = d.code_at(pe) else {
        ui.label("no program loaded for this PE");
        return;
    };
    ui.label(format!("program `{}`, local PE {local}", pp.name));
    egui::CollapsingHeader::new(format!("memory map ({} bytes)", code.sram_bytes()))
        .default_open(true)
        .show(ui, |ui| {
            egui::Grid::new("memory").striped(true).show(ui, |ui| {
                ui.strong("offset");
                ui.strong("buffer");
                ui.strong("bytes");
                ui.end_row();
                ui.label("0");
                ui.label(format!("code ({} instructions)", code.insts.len()));
                ui.label(code.code_bytes().to_string());
                ui.end_row();
                let mut bufs: Vec<_> = code.buffers.iter().collect();
                bufs.sort_by_key(|b| b.offset);
                for b in bufs {
                    ui.label(b.offset.to_string());
                    ui.label(format!("{} {}[{}]", b.name, b.dtype, b.len));
                    ui.label((b.len * b.dtype.size_bytes()).to_string());
                    ui.end_row();
                }
            });
        });
    egui::CollapsingHeader::new("router table")
        .default_open(true)
        .show(ui, |ui| {
            for r in pp.program.routes.iter().filter(|r| r.pes.contains(local)) {
                ui.monospace(format!("{} {} -> {}", r.color, r.input, r.outputs));
            }
        });
    egui::CollapsingHeader::new(format!("code `{}`", code.name))
        .default_open(false)
        .show(ui, |ui| {
            ui.monospace(wafer_format::asm::code_listing(code));
        });
}

/// Per-token latency, where it goes by layer kind (and by wafer), the
/// stage timeline, and the wafer against GPUs (from the bench's numbers)
/// when the data has them.
pub fn latency(ui: &mut egui::Ui, s: &mut ViewerState) {
    use egui_plot::{Line, Plot, PlotPoints};
    let Some(l) = &s.data.latency else {
        ui.label("no latency data (open a model to see per-token latency)");
        return;
    };
    ui.strong("per-token latency (µs)");
    let pts: PlotPoints = l
        .per_token_us
        .iter()
        .enumerate()
        .map(|(i, v)| [i as f64, *v])
        .collect();
    Plot::new("per_token")
        .height(110.0)
        .allow_scroll(false)
        .show(ui, |p| p.line(Line::new("µs per token", pts)));
    ui.strong("cycles per token by layer kind");
    let total: f64 = l.by_kind.iter().map(|k| k.1).sum::<f64>().max(1.0);
    for (k, c) in &l.by_kind {
        ui.horizontal(|ui| {
            let f = (*c / total) as f32;
            bar(ui, f, CATEGORIES[0]);
            ui.label(format!("{k}: {c:.0} ({:.0}%)", 100.0 * f));
        });
    }
    let mut pick = None;
    if l.wafers.len() > 1 {
        // With the system at hand, a wafer's row is a button that draws it.
        let shown = s.system.as_ref().map(|sys| sys.shown);
        ui.strong("cycles per token by wafer");
        let most = l.wafers.iter().map(|w| w.1).fold(1.0, f64::max);
        for (k, (name, c)) in l.wafers.iter().enumerate() {
            ui.horizontal(|ui| {
                bar(ui, (*c / most) as f32, CATEGORIES[1]);
                let text = format!("{name}: {c:.0}");
                match shown {
                    Some(at) => {
                        if ui.selectable_label(at == k, text).clicked() {
                            pick = Some(k);
                        }
                    }
                    None => {
                        ui.label(text);
                    }
                }
            });
        }
    }
    if let Some(k) = pick {
        s.show_wafer(k);
    }
    let Some(l) = &s.data.latency else { return };
    if !l.stages.is_empty() {
        timeline(ui, s);
    }
    let Some(l) = &s.data.latency else { return };
    if l.bars.is_empty() {
        return;
    }
    // One row per bar, each named beside it (a plot's axis drops names
    // once the bars crowd it); lengths on a log scale from 1 tok/s.
    ui.strong("tokens/s: wafer vs GPUs (bar length: log10)");
    let top = l
        .bars
        .iter()
        .map(|b| b.1.max(1.0).log10())
        .fold(1.0, f64::max);
    for (i, (name, tps)) in l.bars.iter().enumerate() {
        ui.horizontal(|ui| {
            bar(
                ui,
                (tps.max(1.0).log10() / top) as f32,
                CATEGORIES[usize::from(i > 0)],
            );
            ui.label(format!("{name}: {tps:.0} tok/s"));
        });
    }
}

/// One token's stages along its cycles: each stage's hand-off (grey, a
/// modelled cycle count) then its run (coloured by layer kind). Stages
/// run one after another (one lane, all on the critical path), or
/// overlapped: then each on a lane of its own while it overlaps others,
/// those on the critical path outlined and those their consumers held
/// back underlined in red. Hovering names a stage; clicking
/// selects its first PE (drawing its wafer, on a system) and sets the
/// heatmap's window to its run.
fn timeline(ui: &mut egui::Ui, s: &mut ViewerState) {
    let Some(l) = &s.data.latency else { return };
    let stages = &l.stages;
    let total = stages.iter().map(StageTime::end).max().unwrap_or(1).max(1);
    let lanes = StageTime::lanes(stages);
    let n_lanes = lanes.iter().max().map_or(1, |l| l + 1);
    let mut kinds: Vec<String> = Vec::new();
    for t in stages {
        if !kinds.contains(&t.kind) {
            kinds.push(t.kind.clone());
        }
    }
    let critical = stages.iter().filter(|t| t.critical).count();
    ui.strong(if n_lanes == 1 {
        format!(
            "one token, stage by stage ({} stages, {total} cycles; in sequence, so all on the critical path)",
            stages.len()
        )
    } else {
        format!(
            "one token, stages overlapped ({} stages on {n_lanes} lanes, {total} cycles; {critical} on the critical path, outlined)",
            stages.len()
        )
    });
    let width = ui.available_width().max(100.0);
    let lane_h = if n_lanes == 1 {
        18.0
    } else {
        (48.0 / n_lanes as f32).max(3.0)
    };
    let (r, resp) =
        ui.allocate_exact_size(Vec2::new(width, lane_h * n_lanes as f32), Sense::click());
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Figure, true, "stage timeline"));
    let x = |c: u64| r.min.x + r.width() * (c as f32 / total as f32);
    let y = |lane: usize| r.min.y + lane as f32 * lane_h..=r.min.y + (lane + 1) as f32 * lane_h;
    let p = ui.painter();
    p.rect_filled(r, 0.0, Color32::from_gray(40));
    let colour = |kind: &str| {
        let i = kinds.iter().position(|k| *k == kind).unwrap_or(0);
        rgb(CATEGORIES[i % CATEGORIES.len()])
    };
    for (t, lane) in stages.iter().zip(&lanes) {
        let hand = Rect::from_x_y_ranges(x(t.start)..=x(t.start + t.handoff), y(*lane));
        p.rect_filled(hand, 0.0, Color32::from_gray(110));
        let run = Rect::from_x_y_ranges(x(t.start + t.handoff)..=x(t.end()), y(*lane));
        p.rect_filled(run, 0.0, colour(&t.kind));
        if n_lanes > 1 && t.critical {
            let outline = egui::Stroke::new(1.0, Color32::WHITE);
            p.rect_stroke(run, 0.0, outline, egui::StrokeKind::Inside);
        }
        if t.held {
            let under = Rect::from_x_y_ranges(run.x_range(), run.max.y - 3.0..=run.max.y);
            p.rect_filled(under, 0.0, HELD);
        }
    }
    let at = resp
        .hover_pos()
        .map(|pos| {
            let c = ((pos.x - r.min.x) / r.width() * total as f32).max(0.0) as u64;
            let lane = ((pos.y - r.min.y) / lane_h).max(0.0) as usize;
            (c, lane.min(n_lanes - 1))
        })
        .and_then(|(c, lane)| {
            (stages.iter().zip(&lanes))
                .find(|(t, l)| **l == lane && t.start <= c && c < t.end())
                .map(|(t, _)| t)
        });
    if let Some(t) = at {
        let text = format!(
            "{} ({}): hand-off {} + {} cycles, from cycle {}{}",
            t.name,
            t.kind,
            t.handoff,
            t.cycles,
            t.start,
            if n_lanes > 1 && t.critical {
                ", on the critical path"
            } else {
                ""
            }
        ) + if t.held {
            ", held back by its consumers"
        } else {
            ""
        };
        let (origin, from, len) = (t.origin, t.start + t.handoff, t.cycles);
        let wafer = t.wafer;
        resp.clone().on_hover_text(text);
        if resp.clicked() {
            // The stage's PE (on its own wafer, drawn first if it is
            // another), and its run as the heatmap's window: which PEs are
            // busy while it runs (the first token's).
            s.show_wafer(wafer);
            let token = s.data.tokens.first().map_or(0, |t| t.start);
            s.selected = Some(origin);
            s.set_window(token + from, len);
        }
    }
    let Some(l) = &s.data.latency else { return };
    ui.horizontal_wrapped(|ui| {
        if l.stages.iter().any(|t| t.handoff > 0) {
            swatch(ui, Color32::from_gray(110));
            ui.label("hand-off (modelled)");
        }
        for k in &kinds {
            swatch(ui, colour(k));
            ui.label(k.as_str());
        }
        if n_lanes > 1 {
            ui.label("outlined: on the critical path");
        }
        if l.stages.iter().any(|t| t.held) {
            swatch(ui, HELD);
            ui.label("underlined: held back by its consumers (a route to one full)");
        }
    });
    // The longest stages, where a token's time goes first.
    let mut longest: Vec<&StageTime> = l.stages.iter().collect();
    longest.sort_by_key(|t| std::cmp::Reverse(t.handoff + t.cycles));
    for t in longest.iter().take(5) {
        ui.label(format!(
            "{}: {} cycles ({} hand-off), {:.1}%",
            t.name,
            t.handoff + t.cycles,
            t.handoff,
            100.0 * (t.handoff + t.cycles) as f64 / total as f64
        ));
    }
}
