//! Two kernels as one program: the second placed against the east edge of
//! the first, the first's output streaming straight into the second's
//! input over the fabric.
//!
//! A compiled model's stages are separate programs today, and the hand-off
//! between them is a formula (`compiler/src/route.rs`). On a wafer the
//! consumer sits next to its producer and takes each element as it comes
//! out: a GEMV sends y east by rows, and a [`Fragment::transposed`] GEMV
//! (or a vector kernel) takes its x from the west by rows, so placed
//! side by side the rows line up and each of y's row blocks moves one hop.
//! [`abut`] builds that program: every wavelet between the two is a real
//! one, stepped with its backpressure, and nothing waits for the first
//! kernel to finish as a whole.
//!
//! The connection needs matching geometry, which [`abut`] checks rather
//! than assumes: each segment of the west fragment's output port leaves
//! its east edge at some row, carries a whole stream, and meets a segment
//! of the east fragment's input port entering the west edge of the same
//! row with the same elements and dtype. The east fragment's colors are
//! renamed: each connected input takes the color its row's output arrives
//! on, the rest take colors above all of the west fragment's.
//! [`abut_south`] joins a south edge to a north edge by columns the same
//! way, so a chain can turn: a GEMV's y leaves east by rows, a mirrored
//! GEMV's south by columns.

use crate::{Fragment, KernelError, TensorPort};
use std::sync::Arc;
use wafer_emulator::program::{CodeId, HostStream};
use wafer_emulator::{Pe, Port, Program};

/// `west` and `east` as one fragment: `east` shifted right by `west`'s
/// width (and down, where `west`'s output leaves lower rows than `east`'s
/// input enters), `west`'s output port `out` feeding `east`'s input port
/// `input` row by row. The result's ports are the rest of both fragments' ports.
///
/// Seeded random data (`DataInit::Random`) is a function of the PE, so
/// `east`'s seeded values change with the shift; load explicit values
/// first (as a compiled model's weights are) to keep them.
pub fn abut(
    west: Fragment,
    east: Fragment,
    out: &str,
    input: &str,
) -> Result<Fragment, KernelError> {
    let bad = |why: String| KernelError::Shape(format!("cannot abut `{out}` to `{input}`: {why}"));
    let (wp, ep) = (&west.program, &east.program);
    let from = port(&west.outputs, out)
        .ok_or_else(|| bad(format!("the west fragment has no output `{out}`")))?;
    let into = port(&east.inputs, input)
        .ok_or_else(|| bad(format!("the east fragment has no input `{input}`")))?;
    if from.len != into.len || from.segments.len() != into.segments.len() {
        return Err(bad(format!(
            "{} elements in {} segments against {} in {}",
            from.len,
            from.segments.len(),
            into.len,
            into.segments.len()
        )));
    }
    let clash = (east.inputs.iter())
        .filter(|t| t.name != input)
        .find(|t| west.inputs.iter().any(|w| w.name == t.name))
        .or_else(|| {
            (east.outputs.iter()).find(|t| {
                west.outputs
                    .iter()
                    .any(|w| w.name == t.name && w.name != out)
            })
        });
    if let Some(t) = clash {
        return Err(bad(format!("both fragments have a port `{}`", t.name)));
    }
    // Each output stream, the input stream it feeds, and the colors.
    let mut joined: Vec<(&HostStream, &HostStream)> = Vec::new();
    let mut down: Option<u32> = None;
    for (a, b) in from.segments.iter().zip(&into.segments) {
        let sa = stream(&wp.outputs, &a.stream)?;
        let sb = stream(&ep.inputs, &b.stream)?;
        let whole = |s: &crate::Segment, h: &HostStream| s.at == 0 && s.len == h.len;
        if (a.offset, a.len) != (b.offset, b.len) || !whole(a, sa) || !whole(b, sb) {
            return Err(bad(format!(
                "segment `{}` (elements {}..{}) does not meet `{}` (elements {}..{}) stream for stream",
                a.stream,
                a.offset,
                a.offset + a.len,
                b.stream,
                b.offset,
                b.offset + b.len
            )));
        }
        let leaves = sa.port == Port::E && sa.pe.x + 1 == wp.width;
        let enters = sb.port == Port::W && sb.pe.x == 0;
        // The east fragment sits as far down as its first joined row
        // needs; every other joined row must then line up too.
        let dy = *down.get_or_insert(sa.pe.y.wrapping_sub(sb.pe.y));
        if !leaves
            || !enters
            || sa.pe.y < sb.pe.y
            || sa.pe.y - sb.pe.y != dy
            || sa.dtype != sb.dtype
        {
            return Err(bad(format!(
                "`{}` leaves {} by {:?} as {}, `{}` enters {} by {:?} as {}: each must meet its output across the edge, rows lined up (the east fragment no higher than the west one), in one dtype",
                sa.name, sa.pe, sa.port, sa.dtype, sb.name, sb.pe, sb.port, sb.dtype
            )));
        }
        if joined
            .iter()
            .any(|(x, y)| std::ptr::eq(*x, sa) || std::ptr::eq(*y, sb))
        {
            return Err(bad(format!(
                "`{}` or `{}` carries two segments of the port; each stream joins one",
                sa.name, sb.name
            )));
        }
        joined.push((sa, sb));
    }
    // Nothing else may cross the seam: no other stream of the west
    // fragment uses its east edge, none of the east one's its west edge
    // (a stream's routes there would run into the other fragment).
    let seam = |h: &HostStream, edge: Port, x: u32| h.port == edge && h.pe.x == x;
    let other = (wp.inputs.iter().chain(&wp.outputs))
        .filter(|h| !joined.iter().any(|j| std::ptr::eq(j.0, *h)))
        .find(|h| seam(h, Port::E, wp.width - 1))
        .or_else(|| {
            (ep.inputs.iter().chain(&ep.outputs))
                .filter(|h| !joined.iter().any(|j| std::ptr::eq(j.1, *h)))
                .find(|h| seam(h, Port::W, 0))
        });
    if let Some(h) = other {
        return Err(bad(format!(
            "stream `{}` also crosses the seam ({} by {:?})",
            h.name, h.pe, h.port
        )));
    }
    // The east fragment's colors: a connected input's is its output's.
    let used = west.colors();
    let mut colors: Vec<Option<u8>> =
        vec![None; east.colors().last().map_or(0, |c| *c as usize + 1)];
    for (sa, sb) in &joined {
        match colors[sb.color.0 as usize] {
            Some(c) if c != sa.color.0 => {
                return Err(bad(format!(
                    "`{}`'s color {} is fed on two colors, {c} and {}",
                    sb.name, sb.color, sa.color
                )));
            }
            _ => colors[sb.color.0 as usize] = Some(sa.color.0),
        }
    }
    let mut fresh = used.last().map_or(0, |c| c + 1);
    let taken: Vec<u8> = colors.iter().flatten().copied().collect();
    let colors: Vec<u8> = colors
        .into_iter()
        .map(|c| {
            c.unwrap_or_else(|| {
                while taken.contains(&fresh) {
                    fresh += 1;
                }
                fresh += 1;
                fresh - 1
            })
        })
        .collect();
    let joined_names: Vec<(String, String)> = (joined.iter())
        .map(|(a, b)| (a.name.clone(), b.name.clone()))
        .collect();
    let east = east.with_colors(&colors)?;
    let (dx, dy, codes) = (
        west.program.width,
        down.unwrap_or(0),
        west.program.codes.len() as u32,
    );
    let mut p: Program = (*west.program).clone();
    let e: &Program = &east.program;
    p.width += e.width;
    p.height = p.height.max(dy + e.height);
    p.outputs
        .retain(|h| !joined_names.iter().any(|j| j.0 == h.name));
    // The east fragment's names, made distinct from the west one's.
    let code_names: Vec<String> = (e.codes.iter())
        .map(|c| distinct(&c.name, |n| p.codes.iter().any(|w| w.name == n)))
        .collect();
    for (c, name) in e.codes.iter().zip(code_names) {
        let mut c = c.clone();
        c.name = name;
        p.codes.push(c);
    }
    let shift = |pes: &mut wafer_emulator::PeRect| {
        pes.x += dx;
        pes.y += dy;
    };
    for pl in &e.placements {
        let mut pl = pl.clone();
        shift(&mut pl.pes);
        pl.code = CodeId(pl.code.0 + codes);
        p.placements.push(pl);
    }
    for r in &e.routes {
        let mut r = r.clone();
        shift(&mut r.pes);
        p.routes.push(r);
    }
    for d in &e.data {
        let mut d = d.clone();
        shift(&mut d.pes);
        p.data.push(d);
    }
    let mut renamed: Vec<(String, String)> = Vec::new();
    let mut add = |to: &mut Vec<HostStream>, h: &HostStream, names: &[String]| {
        let mut h = h.clone();
        let name = distinct(&h.name, |n| names.iter().any(|w| *w == n));
        if name != h.name {
            renamed.push((h.name.clone(), name.clone()));
        }
        h.name = name;
        h.pe = Pe::new(h.pe.x + dx, h.pe.y + dy);
        to.push(h);
    };
    let names: Vec<String> = (p.inputs.iter().chain(&p.outputs))
        .map(|h| h.name.clone())
        .collect();
    for h in e
        .inputs
        .iter()
        .filter(|h| !joined_names.iter().any(|j| j.1 == h.name))
    {
        add(&mut p.inputs, h, &names);
    }
    for h in &e.outputs {
        add(&mut p.outputs, h, &names);
    }
    // Where the two differ in height, a stream on the edge of one may
    // now face the grid's empty corner instead of the host.
    wafer_emulator::verify(&p).map_err(|e| {
        bad(format!(
            "the joined program is invalid ({e}): the fragments' other edge streams must stay on the grid's edge"
        ))
    })?;
    let rename = |mut t: TensorPort| {
        for s in &mut t.segments {
            if let Some((_, to)) = renamed.iter().find(|(from, _)| *from == s.stream) {
                s.stream = to.clone();
            }
        }
        t
    };
    let mut state = west.state.clone();
    state.extend(
        east.state
            .iter()
            .filter(|s| !west.state.contains(s))
            .cloned(),
    );
    Ok(Fragment {
        program: Arc::new(p),
        inputs: (west.inputs.iter().cloned())
            .chain(
                east.inputs
                    .iter()
                    .filter(|t| t.name != input)
                    .cloned()
                    .map(rename),
            )
            .collect(),
        outputs: (west.outputs.iter().filter(|t| t.name != out).cloned())
            .chain(east.outputs.iter().cloned().map(rename))
            .collect(),
        state,
    })
}

/// `north` and `south` as one fragment: `south` shifted down by
/// `north`'s height (and right, to the columns `out` leaves by), `north`'s output port `out` (leaving its south edge
/// by columns, as a mirrored GEMV's y does) feeding `south`'s input port
/// `input` (entering its north edge by columns, as a GEMV's x does)
/// column by column. [`abut`] of the two mirrored, mirrored back.
pub fn abut_south(
    north: Fragment,
    south: Fragment,
    out: &str,
    input: &str,
) -> Result<Fragment, KernelError> {
    Ok(abut(north.transposed(), south.transposed(), out, input)?.transposed())
}

fn port<'a>(ports: &'a [TensorPort], name: &str) -> Option<&'a TensorPort> {
    ports.iter().find(|p| p.name == name)
}

fn stream<'a>(streams: &'a [HostStream], name: &str) -> Result<&'a HostStream, KernelError> {
    (streams.iter().find(|h| h.name == name)).ok_or_else(|| KernelError::NoStream(name.into()))
}

/// `name`, or `name_e`, `name_e2`, ... : the first that `taken` refuses.
fn distinct(name: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(name) {
        return name.to_string();
    }
    (1..)
        .map(|k| match k {
            1 => format!("{name}_e"),
            k => format!("{name}_e{k}"),
        })
        .find(|n| !taken(n))
        .expect("some suffix is free")
}
