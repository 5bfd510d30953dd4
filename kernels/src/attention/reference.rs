//! What attention computes, in the kernel's order of sums: the
//! reference the emulated output is checked against bit for bit.

use super::AttentionSpec;
use crate::line_reduce::Combine;
use std::collections::BTreeMap;
use wafer_emulator::Program;

/// One PE's valid keys and values, in slot order.
struct PeCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

/// Column `c`'s cache as the program holds it after this step's append,
/// from the program's initial cache and the column's input `[pos, k, v, q]`.
fn cache(s: &AttentionSpec, p: &Program, c: u32, input: &[f32]) -> Vec<PeCache> {
    let d = s.head_dim as usize;
    (0..s.h)
        .map(|r| {
            let at = s.row_pe(c, r);
            let (kc, vc) = (
                p.initial_values(at, "kc").unwrap(),
                p.initial_values(at, "vc").unwrap(),
            );
            let nv = s.valid(r) as usize;
            let mut keys: Vec<Vec<f32>> =
                (0..nv).map(|i| kc[i * d..(i + 1) * d].to_vec()).collect();
            let mut values: Vec<Vec<f32>> =
                (0..nv).map(|i| vc[i * d..(i + 1) * d].to_vec()).collect();
            if s.pos % s.h == r {
                keys[nv - 1] = input[1..1 + d].to_vec();
                values[nv - 1] = input[1 + d..1 + 2 * d].to_vec();
            }
            // Those in the window.
            let first = s.first(r) as usize;
            keys.drain(..first);
            values.drain(..first);
            PeCache { keys, values }
        })
        .collect()
}

/// The reference: the same f32 operations in the same order as the PEs,
/// column by column.
pub fn reference(s: &AttentionSpec, inputs: &BTreeMap<String, Vec<f32>>, p: &Program) -> Vec<f32> {
    let col = s.as_columns();
    let (d, g) = (s.head_dim as usize, col.group as usize);
    // Column `c` reads KV head `c / per` (`per` columns share one).
    let per = (s.group / col.group) as usize;
    (0..col.kv_heads as usize)
        .flat_map(|c| {
            let kv = c / per;
            let mut input = vec![inputs["pos"][0]];
            input.extend_from_slice(&inputs["k"][kv * d..(kv + 1) * d]);
            input.extend_from_slice(&inputs["v"][kv * d..(kv + 1) * d]);
            input.extend_from_slice(&inputs["q"][c * g * d..(c + 1) * g * d]);
            column_reference(&col, p, c as u32, &input)
        })
        .collect()
}

/// One column: its input stream `[pos, k, v, q...]` to its output.
fn column_reference(s: &AttentionSpec, p: &Program, column: u32, input: &[f32]) -> Vec<f32> {
    let (d, g) = (s.head_dim as usize, s.group as usize);
    let q = |j: usize| &input[1 + 2 * d + j * d..1 + 2 * d + (j + 1) * d];
    let cache = cache(s, p, column, input);
    let scores: Vec<Vec<Vec<f32>>> = cache
        .iter()
        .map(|c| {
            (0..g)
                .map(|j| {
                    c.keys
                        .iter()
                        .map(|k| {
                            q(j).iter().zip(k).fold(0.0f32, |acc, (a, b)| acc + a * b) * s.scale()
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    // Row 0's sinks, if any.
    let sinks = s.sinks.then(|| {
        p.initial_values(s.sinks_at(column), "snk")
            .unwrap_or_default()
    });
    let local_max: Vec<Vec<f32>> = scores
        .iter()
        .enumerate()
        .map(|(r, per)| {
            per.iter()
                .enumerate()
                .map(|(j, sc)| {
                    let m = sc.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x));
                    match &sinks {
                        Some(snk) if r == 0 => m.max(snk[j]),
                        _ => m,
                    }
                })
                .collect()
        })
        .collect();
    let max = s.allreduce("mx", Combine::Max).reference(&local_max);
    let weights: Vec<Vec<Vec<f32>>> = scores
        .iter()
        .map(|per| {
            per.iter()
                .enumerate()
                .map(|(j, sc)| sc.iter().map(|x| (x - max[j]).exp()).collect())
                .collect()
        })
        .collect();
    let local_sum: Vec<Vec<f32>> = weights
        .iter()
        .enumerate()
        .map(|(r, per)| {
            per.iter()
                .enumerate()
                .map(|(j, w)| {
                    let sum = w.iter().fold(0.0f32, |acc, x| acc + x);
                    match &sinks {
                        Some(snk) if r == 0 => sum + (snk[j] - max[j]).exp(),
                        _ => sum,
                    }
                })
                .collect()
        })
        .collect();
    // Each PE's weighted values, then its sums: the output reduce's buffer.
    let partials: Vec<Vec<f32>> = cache
        .iter()
        .zip(&weights)
        .zip(&local_sum)
        .map(|((c, per), sums)| {
            let mut o: Vec<f32> = (0..g)
                .flat_map(|j| {
                    let mut o = vec![0.0f32; d];
                    for (v, w) in c.values.iter().zip(&per[j]) {
                        for (oi, vi) in o.iter_mut().zip(v) {
                            *oi += vi * w;
                        }
                    }
                    o
                })
                .collect();
            o.extend_from_slice(sums);
            o
        })
        .collect();
    // The top PE (row h − 1) divides each head's values by its sum.
    let total = s.output().reference(&partials);
    let (values, sums) = total.split_at(g * d);
    values
        .chunks(d)
        .zip(sums)
        .flat_map(|(o, sum)| {
            let inv = 1.0 / sum;
            o.iter().map(move |x| x * inv)
        })
        .collect()
}
