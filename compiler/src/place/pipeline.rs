//! Pipeline placement: a strip of the wafer per group of stages (the
//! embedding, each layer, the head), the stages stacked in each, but for
//! the argmax, each RoPE and each SwiGLU (SiLU, GELU), which sit beside
//! the east edge of the GEMV that feeds them.

use super::shape::{Memo, rope_rows};
use super::{Kernel, Options, PlaceError, PlacementKind, Site, groups, no_fit, unplaceable};
use crate::footprint::weight_bytes;
use crate::model::Config;
use crate::stage::{Src, Stage, Work, made_by};
use wafer_emulator::Pe;
use wafer_kernels::Flip;
use wafer_kernels::gemv::GemvSpec;

pub(super) fn pipeline(
    stages: &[Stage],
    c: &Config,
    o: &Options,
    memo: &mut Memo,
) -> Result<Vec<Site>, PlaceError> {
    let kind = PlacementKind::Pipeline;
    let (gw, gh) = (o.arch.grid_cols, o.arch.grid_rows);
    // One strip per group present (one wafer of a system holds some
    // layers only), in the stages' order.
    let group = groups(stages, c.n_layers);
    let mut present: Vec<usize> = group.clone();
    present.dedup();
    let n_groups = present.len();
    let mut bytes = vec![0u64; n_groups];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
    for (i, s) in stages.iter().enumerate() {
        let g = present
            .iter()
            .position(|&p| p == group[i])
            .expect("every group is present");
        bytes[g] += weight_bytes(s, o.dtype);
        members[g].push(i);
    }
    // Every group needs at least the columns its widest non-GEMV kernel
    // takes (attention: one per KV head).
    let min_w: Vec<u32> = members
        .iter()
        .map(|m| {
            m.iter()
                .map(|&i| match &stages[i].work {
                    Work::Attention { kv_heads, .. } => *kv_heads,
                    _ => 1,
                })
                .max()
                .unwrap_or(1)
        })
        .collect();
    let total: u64 = bytes.iter().sum::<u64>().max(1);
    let spare = gw.saturating_sub(min_w.iter().sum());
    if min_w.iter().sum::<u32>() > gw {
        return Err(no_fit(
            c,
            o,
            Some(kind),
            format!(
                "{} strips need {} columns, the machine has {gw}",
                n_groups,
                min_w.iter().sum::<u32>()
            ),
        ));
    }
    let widths: Vec<u32> = (0..n_groups)
        .map(|g| min_w[g] + (spare as u64 * bytes[g] / total) as u32)
        .collect();
    let mut sites: Vec<Option<Site>> = vec![None; stages.len()];
    let made_by = made_by(stages);
    let mut x0 = 0;
    for g in 0..n_groups {
        let sw = widths[g];
        let m = &members[g];
        let is_big = |i: usize| matches!(stages[i].work, Work::Gemv { .. } | Work::Embed { .. });
        // The argmax, a RoPE, and a SwiGLU (SiLU, GELU), sits beside the
        // GEMV that feeds it (the classifier, `wq_wk_wv`, `w1_w3`),
        // against its east edge, a column with a PE per row of it (a
        // RoPE's: per row of q and k, [`rope_beside`]), where the strip
        // has a column to spare: a tiled GEMV sends y out of its east
        // edge row by row, so each row's part crosses one link of its own. Stacked below
        // the GEMV, every row's part went down the one column the stage
        // starts at: on llama-3.2-1b split over four `wse3` wafers,
        // queued on X-then-Y paths, the logits reached the argmax 127,816
        // cycles late and each SwiGLU its `w1_w3`'s outputs about 16,000
        // (docs/decode-step.md). One column, not the few a SwiGLU may
        // spread over: four beside `w1_w3` made that step 1.2 % shorter,
        // but its holds took 47 passes to settle against 8 (277 s of
        // emulation against 49 s).
        let mut beside: Vec<Option<usize>> = vec![None; stages.len()];
        // Whether a stage sits beside GEMV j: one may, it leaves one column.
        let mut taken = vec![false; stages.len()];
        for &i in m {
            let column = matches!(stages[i].work, Work::Argmax { .. } | Work::Rope { .. })
                || (stages[i].work.vector_op()).is_some_and(|(op, _)| op.spreads_over_columns());
            if sw < 2 || !column {
                continue;
            }
            let feeder = (stages[i].inputs.iter().flat_map(|(_, srcs)| srcs))
                .filter_map(|src| match src {
                    Src::Value(v) => made_by.get(v).copied(),
                    _ => None,
                })
                .filter(|&j| {
                    j < i && group[j] == group[i] && matches!(stages[j].work, Work::Gemv { .. })
                })
                .max();
            if let Some(j) = feeder.filter(|&j| !taken[j]) {
                beside[i] = Some(j);
                taken[j] = true;
            }
        }
        // Vector kernels first, each in a short band; GEMVs and the
        // embedding share the rest by weight. Where the strip overflows,
        // the bands shrink until it fits or they are one row.
        let stacked_small = |i: usize, beside: &[Option<usize>]| !is_big(i) && beside[i].is_none();
        let small = m.iter().filter(|&&i| stacked_small(i, &beside)).count() as u32;
        let big_bytes: u64 = m
            .iter()
            .filter(|&&i| is_big(i))
            .map(|&i| weight_bytes(&stages[i], o.dtype))
            .sum::<u64>()
            .max(1);
        let mut band = (gh / (small + 1)).max(1);
        let mut heights = vec![0u32; stages.len()];
        let mut roomy = true;
        loop {
            let mut used = 0u32;
            let mut failed = None;
            for &i in m.iter().filter(|&&i| stacked_small(i, &beside)) {
                let k = memo
                    .shape(&stages[i], c, o, sw, band, i as u64)
                    .ok_or_else(|| no_fit(c, o, Some(kind), unplaceable(&stages[i], sw, band)))?;
                heights[i] = k.size().1;
                used += heights[i];
                sites[i] = Some(Site {
                    kernel: k,
                    origin: Pe::new(x0, 0),
                    flip: Flip::NONE,
                });
            }
            let left = gh.saturating_sub(used);
            // The column a GEMV leaves east of it for the stage beside it.
            let reserved = |j: usize| taken[j] as u32;
            // A GEMV with a RoPE beside takes, where the strip has them,
            // rows enough for half a head each (a RoPE on half a head a
            // PE; on as many rows as its weights' share gives, a RoPE
            // beside the 1B's `wq_wk_wv` took whole heads, 627 cycles
            // against 183 stacked, and the 1B over four `wse3` wafers
            // 151,615 cycles free against 145,838 stacked; with them,
            // 128,819, and 128,191 since the residual adds take their
            // stream first).
            let rows_for_rope = |j: usize| -> u32 {
                let Some(&r) = m.iter().find(|&&r| beside[r] == Some(j)) else {
                    return 0;
                };
                match (&stages[r].work, &stages[j].work) {
                    (Work::Rope { head, .. }, Work::Gemv { m: rows, .. }) if roomy => {
                        let per = if head % 4 == 0 { head / 2 } else { *head };
                        rows.div_ceil(per.max(1))
                    }
                    _ => 0,
                }
            };
            for &i in m.iter().filter(|&&i| is_big(i)) {
                let share = ((left as u64 * weight_bytes(&stages[i], o.dtype) / big_bytes) as u32)
                    .clamp(1, gh);
                let bh = share.max(rows_for_rope(i).min(gh));
                let bw = sw - reserved(i);
                let Some(k) = memo.shape(&stages[i], c, o, bw, bh, i as u64) else {
                    failed = Some(unplaceable(&stages[i], bw, bh));
                    break;
                };
                heights[i] = k.size().1;
                sites[i] = Some(Site {
                    kernel: k,
                    origin: Pe::new(x0, 0),
                    flip: Flip::NONE,
                });
            }
            // Each stage beside its GEMV, as tall as the rows y leaves
            // from (a tiled GEMV's; MeshGEMV's leave elsewhere, so beside
            // one the stage is only shaped within its height). One that
            // has no shape there is stacked after all, and the strip laid
            // out again.
            let mut unbesided = false;
            if failed.is_none() {
                for &i in m {
                    let Some(j) = beside[i] else { continue };
                    let feeder = &sites[j].as_ref().expect("placed above").kernel;
                    let (fw, fh) = feeder.size();
                    let shaped = match (&stages[i].work, feeder) {
                        (Work::Rope { .. }, Kernel::Gemv(g)) => {
                            rope_beside(&stages[i], g, c, o, memo, i).map(|(rope, g)| {
                                sites[j].as_mut().expect("placed above").kernel = Kernel::Gemv(g);
                                rope
                            })
                        }
                        (Work::Rope { .. }, _) => None,
                        (_, Kernel::Gemv(g)) => {
                            memo.shape_fed(&stages[i], c, o, (1, fh), Some(g.h), i as u64)
                        }
                        _ => memo.shape_fed(&stages[i], c, o, (1, fh), None, i as u64),
                    };
                    let Some(k) = shaped else {
                        beside[i] = None;
                        taken[j] = false;
                        unbesided = true;
                        continue;
                    };
                    heights[j] = heights[j].max(k.size().1);
                    sites[i] = Some(Site {
                        kernel: k,
                        origin: Pe::new(x0 + fw, 0),
                        flip: Flip::NONE,
                    });
                }
            }
            if unbesided {
                // Laid out again from the start: one more band to share.
                let small = m.iter().filter(|&&i| stacked_small(i, &beside)).count() as u32;
                band = (gh / (small + 1)).max(1);
                continue;
            }
            let fits = failed.is_none() && m.iter().map(|&i| heights[i]).sum::<u32>() <= gh;
            if fits {
                break;
            }
            if band == 1 && roomy {
                // Not with the rows a RoPE beside would like: without.
                roomy = false;
                let small = m.iter().filter(|&&i| stacked_small(i, &beside)).count() as u32;
                band = (gh / (small + 1)).max(1);
                continue;
            }
            if band == 1 {
                return Err(no_fit(
                    c,
                    o,
                    Some(kind),
                    failed.unwrap_or_else(|| {
                        format!("the stages of strip {g} need more than {gh} rows of {sw} columns")
                    }),
                ));
            }
            band /= 2;
        }
        // Stack in stage order, down the odd strips and up the even ones
        // (a serpentine), so each strip starts beside where the last ended;
        // a stage beside its GEMV at that GEMV's top.
        let y: u32 = m.iter().map(|&i| heights[i]).sum();
        let mut at = 0;
        let mut tops = vec![0u32; stages.len()];
        for &i in m.iter().filter(|&&i| beside[i].is_none()) {
            tops[i] = if g % 2 == 0 { at } else { y - at - heights[i] };
            at += heights[i];
        }
        for &i in m {
            let top = tops[beside[i].unwrap_or(i)];
            let s = sites[i].as_mut().expect("placed above");
            s.origin = Pe::new(s.origin.x, top);
        }
        if y > gh {
            return Err(no_fit(
                c,
                o,
                Some(kind),
                format!(
                    "the stages of strip {g} need {y} rows of {sw} columns, the machine has {gh} rows"
                ),
            ));
        }
        // The next strip starts after the columns this one uses.
        x0 = m
            .iter()
            .map(|&i| {
                let s = sites[i].as_ref().expect("placed above");
                s.origin.x + s.kernel.size().0
            })
            .max()
            .unwrap_or(x0);
    }
    Ok(sites
        .into_iter()
        .map(|s| s.expect("every stage is in a group"))
        .collect())
}

/// A RoPE beside the tiled GEMV `g` that makes its q and k (then v): a
/// column on the rows q and k leave from, each PE's elements computed by
/// the tile row west of it alone ([`GemvSpec::lead`]), and v on the rows
/// below. The RoPE and the GEMV so cut; `None` where the GEMV has fewer
/// rows than the RoPE has heads, no row for v below them (or more rows
/// than v has), or tiles that would outgrow a PE's SRAM.
///
/// A PE a head at most: one holding several sends a q head and a k head
/// on one stream, in that order, and attention takes each column's k
/// (and v) before its q; a hop from its producer, with little room on
/// the route, the holds of an overlapped step then went round that
/// cycle without settling (stories260K on 48 × 48, its RoPE one PE
/// beside a GEMV of two rows: 73 cycles a pass).
fn rope_beside(
    stage: &Stage,
    g: &GemvSpec,
    c: &Config,
    o: &Options,
    memo: &mut Memo,
    i: usize,
) -> Option<(Kernel, GemvSpec)> {
    let Work::Rope { heads, head, .. } = stage.work else {
        return None;
    };
    let rest = g.m.checked_sub(heads * head)?;
    let most = g.h.checked_sub((rest > 0) as u32).filter(|h| *h >= heads)?;
    let used = rope_rows(&stage.work, g.h, g.m)?.clamp(heads, most);
    let rope = memo.shape_fed(stage, c, o, (1, most), Some(used), i as u64)?;
    let Kernel::Rope(r) = &rope else {
        return None;
    };
    // The tile rows below the RoPE's take v, one row of W at least each.
    let below = g.h - r.h;
    if below > rest || (below > 0) != (rest > 0) {
        return None;
    }
    let cut = GemvSpec {
        lead: r.pe_runs(),
        ..g.clone()
    };
    (wafer_kernels::gemv::sram_needed(&cut) <= o.arch.sram_bytes as u64).then_some((rope, cut))
}
