//! Pipeline placement: a strip of the wafer per group of stages (the
//! embedding, each layer, the head), the stages stacked in each.

use super::shape::Memo;
use super::{Options, PlaceError, PlacementKind, Site, groups, no_fit, unplaceable};
use crate::footprint::weight_bytes;
use crate::model::Config;
use crate::stage::{Stage, Work};
use wafer_emulator::Pe;
use wafer_kernels::Flip;

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
    let mut x0 = 0;
    for g in 0..n_groups {
        let sw = widths[g];
        let m = &members[g];
        // Vector kernels first, each in a short band; GEMVs and the
        // embedding share the rest by weight. Where the strip overflows,
        // the bands shrink until it fits or they are one row.
        let is_big = |i: usize| matches!(stages[i].work, Work::Gemv { .. } | Work::Embed { .. });
        let small = m.iter().filter(|&&i| !is_big(i)).count() as u32;
        let big_bytes: u64 = m
            .iter()
            .filter(|&&i| is_big(i))
            .map(|&i| weight_bytes(&stages[i], o.dtype))
            .sum::<u64>()
            .max(1);
        let mut band = (gh / (small + 1)).max(1);
        let mut heights = vec![0u32; stages.len()];
        loop {
            let mut used = 0u32;
            let mut failed = None;
            for &i in m.iter().filter(|&&i| !is_big(i)) {
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
            for &i in m.iter().filter(|&&i| is_big(i)) {
                let bh = ((left as u64 * weight_bytes(&stages[i], o.dtype) / big_bytes) as u32)
                    .clamp(1, gh);
                let Some(k) = memo.shape(&stages[i], c, o, sw, bh, i as u64) else {
                    failed = Some(unplaceable(&stages[i], sw, bh));
                    break;
                };
                heights[i] = k.size().1;
                sites[i] = Some(Site {
                    kernel: k,
                    origin: Pe::new(x0, 0),
                    flip: Flip::NONE,
                });
            }
            let fits = failed.is_none() && m.iter().map(|&i| heights[i]).sum::<u32>() <= gh;
            if fits {
                break;
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
        // (a serpentine), so each strip starts beside where the last ended.
        let y: u32 = m.iter().map(|&i| heights[i]).sum();
        let mut at = 0;
        for &i in m {
            let s = sites[i].as_mut().expect("placed above");
            let top = if g % 2 == 0 { at } else { y - at - heights[i] };
            s.origin = Pe::new(x0, top);
            at += heights[i];
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
        x0 += m
            .iter()
            .map(|&i| sites[i].as_ref().expect("placed above").kernel.size().0)
            .max()
            .unwrap_or(0);
    }
    Ok(sites
        .into_iter()
        .map(|s| s.expect("every stage is in a group"))
        .collect())
}
