//! The compile listing: per stage its kernel, rectangle, PEs, SRAM, colors
//! and predicted cycles, then the totals.

use crate::codegen::Compiled;
use crate::place::Kernel;
use std::fmt::Write;
use wafer_kernels::Flip;

fn shape(k: &Kernel) -> String {
    match k {
        Kernel::Embed(s) => format!("{}x{} {}", s.vocab, s.dim, s.dtype),
        Kernel::Gemv(s) => format!("{}x{} {}", s.m, s.n, s.dtype),
        Kernel::MeshGemv(s) => format!("{}x{} {} meshgemv, {} groups", s.n, s.m, s.dtype, s.groups),
        Kernel::Vector(s) => format!("{} n={}", s.op.name(), s.n),
        Kernel::Rope(s) => format!("{} heads of {}", s.heads, s.head_dim),
        Kernel::Attention(s) => format!(
            "{}x{} heads of {}, ctx {}{}{}{}{}",
            s.kv_heads,
            s.group,
            s.head_dim,
            s.max_context,
            s.window.map_or(String::new(), |w| format!(", window {w}")),
            if s.sinks { ", sinks" } else { "" },
            if s.per_query_head { ", copies" } else { "" },
            match s.pitch {
                1 => String::new(),
                p => format!(", pitch {p}"),
            }
        ),
        Kernel::Argmax(s) => format!("n={}", s.n),
        Kernel::Router(s) => format!("{} of {} experts", s.per_token, s.experts),
        Kernel::Combine(s) => format!("{} outputs of {}", s.k, s.n),
        Kernel::ClampedSwiglu(s) => format!("n={}", s.n),
    }
}

fn colors(cs: &[u8]) -> String {
    match (cs.first(), cs.last()) {
        (Some(a), Some(b)) if cs.len() as u8 == b - a + 1 && cs.len() > 1 => format!("{a}-{b}"),
        _ => cs.iter().map(u8::to_string).collect::<Vec<_>>().join(","),
    }
}

/// The listing at decode position `pos` (attention's cost depends on it).
pub fn listing(c: &Compiled, pos: u32) -> String {
    let arch = &c.options.arch;
    let mut t = String::new();
    writeln!(
        t,
        "model: {}\nmachine: {} ({}x{} PEs, {} bytes SRAM each, {} colors, {:.3} GHz)\nplacement: {}, weights {} ({}), max context {}, reductions {}",
        c.config,
        arch.name,
        arch.grid_cols,
        arch.grid_rows,
        arch.sram_bytes,
        arch.colors,
        arch.clock_hz / 1e9,
        c.placement().replacen(" placement", "", 1),
        c.options.dtype,
        if c.real_weights { "checkpoint" } else { "seeded" },
        c.options.max_context,
        c.options.reduce
    )
    .unwrap();
    if let Some(r) = &c.region {
        t.push_str(&region(r));
    }
    let system = c.wafers.len() > 1;
    if system {
        writeln!(
            t,
            "system: {} wafers, layers {} (split so the fullest wafer keeps the fewest bytes); each wafer's `at` is on its own grid",
            c.wafers.len(),
            c.wafers
                .iter()
                .map(|w| format!("{}..{}", w.layers.start, w.layers.end))
                .collect::<Vec<_>>()
                .join(" | ")
        )
        .unwrap();
    }
    writeln!(
        t,
        "{:<32} {:<11} {:<28} {:>9} {:>9} {:>8} {:>7} {:>6} {:>5} {:>6} {:>9}",
        "stage",
        "kernel",
        "shape",
        "at",
        "rect",
        "PEs",
        "SRAM/PE",
        "colors",
        "hops",
        "in",
        "cycles"
    )
    .unwrap();
    let mut total_pred = 0;
    let mut total_hand = 0;
    let predicted = c.stage_predictions(pos);
    let runs = c.runs(pos, crate::experts::DEFAULT_SEED);
    for (i, (s, site)) in c.stages.iter().zip(&c.sites).enumerate() {
        if let Some(k) = c
            .wafers
            .iter()
            .position(|w| w.stages.start == i)
            .filter(|_| system)
        {
            let w = &c.wafers[k];
            writeln!(
                t,
                "-- wafer {} of {}: layers {}..{}, stages {}..{}",
                k + 1,
                c.wafers.len(),
                w.layers.start,
                w.layers.end,
                w.stages.start,
                w.stages.end
            )
            .unwrap();
        }
        let (w, h) = site.kernel.size();
        let pred = predicted[i];
        let hand = &c.routing.handoffs[i];
        if runs[i] {
            total_pred += pred;
            total_hand += hand.cycles;
        }
        writeln!(
            t,
            "{:<32} {:<11} {:<28} {:>9} {:>9} {:>8} {:>7} {:>6} {:>5} {:>6} {:>9}",
            s.name,
            s.work.kernel(),
            shape(&site.kernel),
            format!("{},{}", site.origin.x, site.origin.y),
            format!("{w}x{h}{}", flip_mark(site.flip)),
            site.kernel.pes(),
            c.sram.per_stage[i],
            format!("{}+{}", colors(&c.fragments[i].colors()), hand.color),
            hand.hops,
            hand.cycles,
            pred
        )
        .unwrap();
    }
    let total = total_pred + total_hand;
    writeln!(
        t,
        "total: {} stages, {} PEs used of {}, SRAM {} bytes in all, at most {} on a PE ({}: {}), {} colors ({} kernel + hand-offs){}",
        c.stages.len(),
        c.sram.pes_used,
        c.wafers.len() as u64 * arch.grid_cols as u64 * arch.grid_rows as u64,
        c.sram.total_bytes,
        c.sram.max_bytes,
        c.sram.max_at,
        c.fullest_held(),
        c.routing.colors_used,
        c.routing.kernel_colors,
        if c.kind == crate::place::PlacementKind::Mesh {
            ", routes loaded per stage"
        } else {
            ""
        }
    )
    .unwrap();
    if c.sites.iter().any(|s| !s.flip.is_none()) {
        writeln!(
            t,
            "{}: the kernel's mirror image runs there, reflected north to south; {}: east to west",
            flip_mark(Flip { x: false, y: true }).trim(),
            flip_mark(Flip { x: true, y: false }).trim()
        )
        .unwrap();
    }
    if system {
        t.push_str(&wafers(c, pos));
    }
    if let Some(m) = c.config.moe {
        writeln!(
            t,
            "experts: every expert is placed; a step runs the {} of {} a layer that the router picks. Predicted here: those a seeded routing (seed {}) picks, not the model's",
            m.per_token,
            m.experts,
            crate::experts::DEFAULT_SEED
        )
        .unwrap();
    }
    let link: u64 = c.transfers.iter().map(|x| x.cycles).sum();
    writeln!(
        t,
        "predicted step at position {pos}: {total} cycles ({total_pred} in kernels, {total_hand} in hand-offs{}) = {:.3} µs",
        if system {
            format!(", {link} between wafers")
        } else {
            String::new()
        },
        total as f64 / arch.clock_hz * 1e6
    )
    .unwrap();
    t
}

/// A system's wafers (each one's stages, PEs, fullest PE and predicted
/// time, its transfers excluded) and the transfers between them.
pub fn wafers(c: &Compiled, pos: u32) -> String {
    let arch = &c.options.arch;
    let mut t = String::new();
    let predicted = c.stage_predictions(pos);
    let runs = c.runs(pos, crate::experts::DEFAULT_SEED);
    for (k, w) in c.wafers.iter().enumerate() {
        let cycles: u64 = w
            .stages
            .clone()
            .filter(|i| runs[*i])
            .map(|i| {
                let h = &c.routing.handoffs[i];
                predicted[i] + h.cycles - h.link_cycles
            })
            .sum();
        writeln!(
            t,
            "wafer {}: layers {}..{}, {} stages, {} PEs used, at most {} bytes on a PE ({}: {}), {} colors; predicted {cycles} cycles = {:.3} µs",
            k + 1,
            w.layers.start,
            w.layers.end,
            w.stages.len(),
            w.sram.pes_used,
            w.sram.max_bytes,
            w.sram.max_at,
            c.wafer_fullest_held(k),
            w.colors_used,
            arch.cycles_to_us(cycles)
        )
        .unwrap();
    }
    for x in &c.transfers {
        writeln!(
            t,
            "transfer wafer {} -> {}: {} values, {} bytes, {} hops to the east edge, then the link: {} cycles = {:.3} µs (paid by `{}`)",
            x.from + 1,
            x.from + 2,
            x.values.len(),
            x.bytes,
            x.egress_hops,
            x.cycles,
            arch.cycles_to_us(x.cycles),
            c.stages[x.into].name
        )
        .unwrap();
    }
    t
}

/// What the region search tried: one line per rectangle, its predicted
/// step with each placement, the chosen one marked.
pub fn region(r: &crate::region::Searched) -> String {
    let mut t = format!(
        "region: {}x{} of the {}x{} grid, the shortest predicted step (at position {}) of these:\n",
        r.chosen.0, r.chosen.1, r.grid.0, r.grid.1, r.pos
    );
    for p in &r.points {
        let mark = if (p.cols, p.rows, p.kind, p.tiles) == (r.chosen.0, r.chosen.1, r.kind, r.tiles)
        {
            "*"
        } else {
            " "
        };
        let what = match &p.result {
            Ok(cycles) => format!("{cycles} cycles"),
            Err(e) => format!(
                "does not fit: {}",
                e.split(". It needs").next().unwrap_or(e)
            ),
        };
        let rect = format!("{}x{}", p.cols, p.rows);
        let how = match p.tiles {
            crate::place::Tiles::ONE => p.kind.name().to_string(),
            tiles => format!("{} {tiles}", p.kind.name()),
        };
        writeln!(t, " {mark} {rect:>9} {how:<8} {what}").unwrap();
    }
    t
}

/// After a rectangle, the mirror image of its kernel that runs there
/// (`wafer_kernels::Flip`): nothing for the kernel as generated.
fn flip_mark(f: Flip) -> &'static str {
    match (f.x, f.y) {
        (false, false) => "",
        (false, true) => " ⇅",
        (true, false) => " ⇄",
        (true, true) => " ⇄⇅",
    }
}
