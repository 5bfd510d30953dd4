//! The viewer's panels rendered headless (egui_kittest on wgpu; Mesa's
//! software Vulkan in CI) against committed snapshots, and interactions
//! asserted on what the state and the widgets then show. The data is a
//! recorded run of `examples/gemv_8x8.wsm` (and `chain_reduce.wsm`) with
//! its trace.

use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotResults};
use std::path::Path;
use wafer_emulator::{Arch, Pe, RunConfig};
use wafer_viewer::data::{Latency, StageTime};
use wafer_viewer::heatmap::Camera;
use wafer_viewer::{Dataset, Metric, ViewerState, ui};

fn dataset() -> Dataset {
    example("gemv_8x8")
}

fn example(name: &str) -> Dataset {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/{name}.wsm"));
    let p = wafer_emulator::load_program(&path).unwrap();
    let cfg = RunConfig {
        trace: true,
        ..RunConfig::default()
    };
    let r = wafer_emulator::run(&p, &Arch::wse3(), &Default::default(), &cfg).unwrap();
    let mut d = Dataset::from_run(name, p, r.stats, r.trace);
    // Latency numbers for the panel's layout (a fixture, not a result).
    d.latency = Some(Latency {
        per_token_us: vec![12.0, 12.5, 11.8, 12.2],
        by_kind: vec![("projections".into(), 9000.0), ("attention".into(), 3000.0)],
        bars: vec![("wafer".into(), 80000.0), ("H100 roofline".into(), 1300.0)],
        stages: StageTime::sequence([
            ("embed".into(), "embedding".into(), 0, 300, Pe::new(0, 0)),
            (
                "layers.0.wq".into(),
                "projections".into(),
                400,
                2000,
                Pe::new(1, 0),
            ),
            (
                "layers.0.attention".into(),
                "attention".into(),
                500,
                1500,
                Pe::new(2, 3),
            ),
            (
                "layers.0.wo".into(),
                "projections".into(),
                300,
                1000,
                Pe::new(1, 0),
            ),
        ]),
        wafers: Vec::new(),
    });
    d
}

fn state() -> ViewerState {
    ViewerState::new(dataset())
}

fn harness(
    size: [f32; 2],
    panel: fn(&mut egui::Ui, &mut ViewerState),
    s: ViewerState,
) -> Harness<'static, ViewerState> {
    let mut h = Harness::builder()
        .with_size(egui::Vec2::new(size[0], size[1]))
        .wgpu()
        .build_ui_state(panel, s);
    h.run_steps(3);
    h
}

/// Hover at `pos`, then press and release the primary button there.
fn click(h: &mut Harness<'_, ViewerState>, pos: egui::Pos2) {
    h.hover_at(pos);
    h.run();
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: Default::default(),
        });
    }
    h.run();
}

/// Snapshot `name` of a harness into `all` (kittest wants one result set
/// per test; it reports every mismatch when `all` is dropped).
fn snap(all: &mut SnapshotResults, mut h: Harness<'_, ViewerState>, name: &str) {
    h.snapshot(name);
    all.extend_harness(&mut h);
}

#[test]
fn the_wafer_panel_for_each_metric() {
    let mut all = SnapshotResults::new();
    for m in Metric::ALL {
        let mut s = state();
        s.metric = m;
        let name = format!("wafer_{}", m.name().split_whitespace().next().unwrap());
        snap(&mut all, harness([320.0, 320.0], ui::wafer, s), &name);
    }
}

#[test]
fn the_legend_the_inspector_and_the_latency_panel() {
    let mut all = SnapshotResults::new();
    snap(
        &mut all,
        harness([300.0, 200.0], ui::legend, state()),
        "legend_busy",
    );
    let mut s = state();
    s.metric = Metric::Placement;
    snap(
        &mut all,
        harness([300.0, 200.0], ui::legend, s),
        "legend_placement",
    );
    let mut s = state();
    s.selected = Some(Pe::new(3, 2));
    let h = harness([360.0, 900.0], ui::inspector, s);
    h.get_by_label("PE(3,2)");
    snap(&mut all, h, "inspector");
    snap(
        &mut all,
        harness([300.0, 760.0], ui::latency, state()),
        "latency",
    );
    snap(&mut all, harness([1280.0, 800.0], ui::app, state()), "app");
}

#[test]
fn the_stage_timeline_lists_the_longest_stages_and_a_click_selects_a_stages_pe() {
    let mut h = harness([300.0, 700.0], ui::latency, state());
    // Stages follow each other, each after its hand-off.
    let stages = h.state().data.latency.as_ref().unwrap().stages.clone();
    assert_eq!(
        stages.iter().map(|t| t.start).collect::<Vec<_>>(),
        [0, 300, 2700, 4700]
    );
    assert_eq!(stages[3].end(), 6000);
    h.get_by_label("layers.0.wq: 2400 cycles (400 hand-off), 40.0%");
    h.get_by_label("layers.0.attention: 2000 cycles (500 hand-off), 33.3%");
    h.get_by_label("hand-off (modelled)");
    // Click the middle of the attention stage's run, then of a hand-off:
    // the stage's first PE is selected either way.
    let r = h.get_by_label("stage timeline").rect();
    for (cycle, want) in [(3950.0, Pe::new(2, 3)), (500.0, Pe::new(1, 0))] {
        h.state_mut().selected = None;
        let pos = egui::Pos2::new(r.min.x + r.width() * cycle / 6000.0, r.center().y);
        click(&mut h, pos);
        assert_eq!(h.state().selected, Some(want), "at cycle {cycle}");
    }
    // The window is the clicked stage's run (clamped to this short run).
    let cycles = h.state().data.stats.cycles;
    assert_eq!(h.state().window_len, 2000.min(cycles));
}

/// An overlapped token: stages that overlap go on lanes of their own,
/// the critical path is outlined and said so, and a click on a lower
/// lane selects the stage there.
#[test]
fn an_overlapped_timeline_puts_stages_on_lanes_and_marks_the_critical_path() {
    let stage = |name: &str, kind: &str, start, cycles, origin, critical| StageTime {
        name: name.into(),
        kind: kind.into(),
        start,
        handoff: 0,
        cycles,
        origin,
        wafer: 0,
        critical,
        held: false,
    };
    let stages = vec![
        stage("embed", "embedding", 0, 300, Pe::new(0, 0), true),
        stage("layers.0.wq", "projections", 250, 2000, Pe::new(1, 0), true),
        StageTime {
            held: true,
            ..stage("layers.0.rope", "rope", 2100, 400, Pe::new(4, 4), false)
        },
        stage(
            "layers.0.attention",
            "attention",
            2300,
            1500,
            Pe::new(2, 3),
            true,
        ),
        stage(
            "layers.0.wo",
            "projections",
            3600,
            1000,
            Pe::new(1, 0),
            true,
        ),
    ];
    assert_eq!(StageTime::lanes(&stages), [0, 1, 0, 1, 0]);
    let mut s = state();
    s.data.latency.as_mut().unwrap().stages = stages;
    let mut all = SnapshotResults::new();
    let mut h = harness([300.0, 760.0], ui::latency, s);
    h.get_by_label("one token, stages overlapped (5 stages on 2 lanes, 4600 cycles; 4 on the critical path, outlined)");
    h.get_by_label("outlined: on the critical path");
    h.get_by_label("underlined: held back by its consumers (a route to one full)");
    assert!(h.query_by_label("hand-off (modelled)").is_none());
    // The lower lane at cycle 2,900 is attention's (rope, on the upper
    // one, ended at 2,500).
    let r = h.get_by_label("stage timeline").rect();
    let pos = egui::Pos2::new(r.min.x + r.width() * 2900.0 / 4600.0, r.max.y - 2.0);
    click(&mut h, pos);
    assert_eq!(h.state().selected, Some(Pe::new(2, 3)));
    snap(&mut all, h, "latency_overlapped");
}

/// A system of wafers: the latency panel lists each wafer's time; one
/// wafer lists none.
#[test]
fn the_latency_panel_lists_each_wafer_of_a_system() {
    let h = harness([300.0, 760.0], ui::latency, state());
    assert!(h.query_by_label("cycles per token by wafer").is_none());
    let mut s = state();
    s.data.latency.as_mut().unwrap().wafers = vec![
        ("wafer 1, layers 0..3".into(), 5200.0),
        ("wafer 2, layers 3..5".into(), 4100.0),
    ];
    let h = harness([300.0, 860.0], ui::latency, s);
    h.get_by_label("cycles per token by wafer");
    h.get_by_label("wafer 1, layers 0..3: 5200");
    h.get_by_label("wafer 2, layers 3..5: 4100");
}

/// Every bar of the wafer-vs-GPU chart is named beside it, however many
/// there are (a plot's axis dropped the names of crowded bars).
#[test]
fn every_tokens_per_second_bar_is_named() {
    let mut s = state();
    let bars: Vec<(String, f64)> = (0..12)
        .map(|i| (format!("device {i} (roofline)"), 1000.0 * (i + 1) as f64))
        .collect();
    s.data.latency.as_mut().unwrap().bars = bars.clone();
    let h = harness([300.0, 1100.0], ui::latency, s);
    for (name, tps) in &bars {
        h.get_by_label(&format!("{name}: {tps:.0} tok/s"));
    }
    let h = harness([300.0, 760.0], ui::latency, state());
    h.get_by_label("wafer: 80000 tok/s");
    h.get_by_label("H100 roofline: 1300 tok/s");
}

#[test]
fn choosing_a_metric_changes_the_heatmap_and_the_legend() {
    let mut h = harness([300.0, 300.0], ui::legend, state());
    h.get_by_label("metric").click();
    h.run();
    h.get_by_label("SRAM used").click();
    h.run();
    assert_eq!(h.state().metric, Metric::SramUsed);
    h.get_by_label("SRAM used (bytes)");
    let hm = h.state_mut().heatmap().clone();
    assert_eq!(hm.metric, Metric::SramUsed);
    // Every PE of the 8x8 GEMV has code and SRAM in use.
    assert!(hm.range.0 > 0.0);
}

#[test]
fn clicking_a_pe_selects_it_and_the_inspector_shows_it() {
    let mut s = state();
    s.metric = Metric::Stalls;
    let hot = s.hottest().unwrap();
    let v = s.heatmap().values.clone();
    let i = (hot.y * 8 + hot.x) as usize;
    assert!(v.iter().all(|x| *x <= v[i]));
    let mut h = harness([320.0, 320.0], ui::wafer, state());
    let cam: Camera = h.state().camera.unwrap();
    // The wafer panel fills the harness, so its centre is the view's.
    let vc = [160.0, 160.0];
    let at = cam.to_screen(vc, [5.5, 6.5]);
    let pos = egui::Pos2::new(at[0], at[1]);
    click(&mut h, pos);
    assert_eq!(h.state().selected, Some(Pe::new(5, 6)));
    let s = std::mem::replace(h.state_mut(), state());
    let i = harness([360.0, 900.0], ui::inspector, s);
    i.get_by_label("PE(5,6)");
    i.get_by_label("runs `gemv_rest`");
}

#[test]
fn moving_the_scrubber_changes_the_window_and_what_busy_shows() {
    // A chain reduce: PEs down the chain start later, so what is busy
    // depends on the window (the GEMV's tasks span its whole run).
    let mut h = harness(
        [1000.0, 80.0],
        ui::scrubber,
        ViewerState::new(example("chain_reduce")),
    );
    let cycles = h.state().data.stats.cycles;
    assert_eq!(h.state().window(), (0, cycles));
    let whole = h.state_mut().heatmap().values.clone();
    // Narrow the window to the first tenth, then step it on with play.
    h.state_mut().set_window(0, cycles / 10);
    h.run();
    let early = h.state_mut().heatmap().values.clone();
    h.get_by_label("play").click();
    // Playing repaints every frame: step frames, do not wait to settle.
    h.run_steps(3);
    assert!(h.state().playing);
    let (start, _) = h.state().window();
    assert!(start > 0, "play moves the window");
    let later = h.state_mut().heatmap().values.clone();
    assert_ne!(whole, early);
    assert_ne!(early, later);
    h.get_by_label("pause").click();
    h.run_steps(2);
    assert!(!h.state().playing);
    h.get_by_label_contains("cycles ");
}

/// A system of three wafers whose wafer `k`'s data is named for it (wafer
/// 3 fails to load); the timeline's last two stages run on wafer 2.
fn system() -> ViewerState {
    let mut first = dataset();
    first.name = "wafer 1 of 3".into();
    let l = first.latency.as_mut().unwrap();
    l.wafers = vec![
        ("wafer 1, layers 0..1".into(), 2700.0),
        ("wafer 2, layers 1..2".into(), 3300.0),
        ("wafer 3, layers 2..3".into(), 0.0),
    ];
    l.stages[2].wafer = 1;
    l.stages[3].wafer = 1;
    let latency = first.latency.clone();
    ViewerState::new(first).with_system(3, 0, move |k| {
        if k == 2 {
            return Err("no such stages".into());
        }
        let mut d = dataset();
        d.name = format!("wafer {} of 3", k + 1);
        d.latency = latency.clone();
        Ok(d)
    })
}

/// Choosing another wafer, from the latency panel's rows or by clicking a
/// stage of the timeline that runs on it, draws that wafer's data and
/// keeps the time window; a wafer that fails to load is named with why.
#[test]
fn a_system_draws_the_wafer_chosen_in_the_window() {
    let mut h = harness([300.0, 900.0], ui::latency, system());
    h.get_by_label("wafer 2, layers 1..2: 3300").click();
    h.run();
    let sys = h.state().system.as_ref().unwrap();
    assert_eq!((sys.shown, sys.error.as_deref()), (1, None));
    assert_eq!(h.state().data.name, "wafer 2 of 3");
    h.get_by_label("wafer 1, layers 0..1: 2700").click();
    h.run();
    assert_eq!(h.state().data.name, "wafer 1 of 3");
    // A failed load leaves the shown wafer and says why.
    h.get_by_label("wafer 3, layers 2..3: 0").click();
    h.run();
    let sys = h.state().system.as_ref().unwrap();
    assert_eq!(sys.shown, 0);
    assert_eq!(sys.error.as_deref(), Some("wafer 3: no such stages"));
    // The attention stage (cycles 2700..4700) runs on wafer 2: clicking
    // it draws wafer 2 and selects the stage's PE there.
    let r = h.get_by_label("stage timeline").rect();
    let pos = egui::Pos2::new(r.min.x + r.width() * 3950.0 / 6000.0, r.center().y);
    click(&mut h, pos);
    assert_eq!(h.state().data.name, "wafer 2 of 3");
    assert_eq!(h.state().selected, Some(Pe::new(2, 3)));
    // The header's selector names the wafer shown.
    let h = harness([900.0, 40.0], ui::header, h.into_state());
    h.get_by_label("wafer");
    h.get_by_label_contains("2 of 3");
}
