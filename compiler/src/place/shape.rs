//! A stage's kernel within a budget of PEs: every shape the kernel can
//! take there, the cheapest by its cost model.

use super::{KvCopies, Options};
use crate::footprint::table_dtype;
use crate::kernel::Kernel;
use crate::model::{Config, RopePairs};
use crate::stage::{Stage, Work};
use wafer_emulator::{Arch, DType};
use wafer_kernels::argmax::ArgmaxSpec;
use wafer_kernels::attention::AttentionSpec;
use wafer_kernels::clamped_swiglu::ClampedSwigluSpec;
use wafer_kernels::combine::CombineSpec;
use wafer_kernels::embedding::EmbeddingSpec;
use wafer_kernels::gemv::GemvSpec;
use wafer_kernels::meshgemv::MeshGemvSpec;
use wafer_kernels::rope::{RopeLayout, RopeSpec};
use wafer_kernels::router::RouterSpec;
use wafer_kernels::vector::{VectorOp, VectorSpec};

/// How many of a tiled GEMV's `h` rows (`m` outputs) send a RoPE its
/// input: RoPE takes the first `heads · head` of its GEMV's outputs (q
/// and k, before v), which leave from the top rows of the GEMV's east
/// edge. `None` for any other stage.
pub(super) fn rope_rows(work: &Work, h: u32, m: u32) -> Option<u32> {
    let Work::Rope { heads, head, .. } = work else {
        return None;
    };
    let used = (h as u64 * (heads * head) as u64).div_ceil(m.max(1) as u64);
    Some(used.min(h as u64) as u32)
}

/// The projection `y = W·x` (`m` outputs, `n` inputs) as a MeshGEMV on a
/// `w × h` rectangle (`w` across the outputs, `h` across the inputs), its
/// rows grouped as the cost model likes best among the three groupings
/// nearest WaferLLM's `√h` groups of `√h` rows; `None` if nothing fits.
pub(super) fn mesh_gemv(
    m: u32,
    n: u32,
    w: u32,
    h: u32,
    o: &Options,
    arch: &Arch,
) -> Option<Kernel> {
    let mut groups: Vec<u32> = (2..=h / 2).filter(|g| h.is_multiple_of(*g)).collect();
    let root = (h as f64).sqrt();
    groups.sort_by(|a, b| {
        (*a as f64 - root)
            .abs()
            .total_cmp(&(*b as f64 - root).abs())
    });
    groups
        .into_iter()
        .take(3)
        .map(|groups| MeshGemvSpec {
            m: n,
            n: m,
            w,
            h,
            groups,
            dtype: o.dtype,
            acc: DType::F32,
            streamed: true,
            seed: 0,
        })
        .filter(|s| wafer_kernels::meshgemv::validate(s, arch).is_ok())
        .map(|s| (wafer_kernels::meshgemv::cost(&s, arch), s))
        .min_by_key(|(c, s)| (*c, s.groups))
        .map(|(_, s)| Kernel::MeshGemv(s))
}

/// Powers of two up to `max`, and `max`.
fn sizes(max: u32) -> Vec<u32> {
    let mut v: Vec<u32> = (0..31)
        .map(|k| 1u32 << k)
        .take_while(|x| *x <= max)
        .collect();
    if max > 0 {
        v.push(max);
    }
    v.dedup();
    v
}

/// The heights a column kernel of `n` elements may take in a rectangle
/// `bh` rows tall: where a tiled GEMV of `rows` rows feeds it by its east
/// edge, a row of PEs per row of it, so each row's `y` crosses to it on
/// its own row's links (a shorter column gathers the rows below it onto
/// its last PE's link, one wavelet a cycle: on llama-3.2-1b, `wse3`, the
/// queued step, `wafer bench --queue xy`, went 148,258 →
/// 132,740 cycles when its norms took the GEMVs' 182 rows, not 128);
/// else powers of two and `bh`, whichever is cheapest.
fn heights(n: u32, bh: u32, rows: Option<u32>) -> Vec<u32> {
    match rows {
        Some(r) if r <= bh => vec![r.min(n)],
        _ => sizes(n.min(bh)),
    }
}

/// The cheapest kernel, by predicted cycles at `pos`, among `candidates`
/// that the machine accepts (`fits`).
pub(super) fn cheapest(
    candidates: impl Iterator<Item = Kernel>,
    arch: &Arch,
    pos: u32,
    fits: impl Fn(&Kernel) -> bool,
) -> Option<Kernel> {
    candidates
        .filter(|k| fits(k))
        .map(|k| (k.predicted(arch, pos), k))
        .min_by_key(|(c, k)| {
            let (w, h) = k.size();
            (*c, w as u64 * h as u64)
        })
        .map(|(_, k)| k)
}

/// The stage's kernel within a `bw × bh` budget of PEs.
pub(super) fn shape(
    stage: &Stage,
    c: &Config,
    o: &Options,
    (bw, bh): (u32, u32),
    copies: KvCopies,
    wide_colors: usize,
    rows: Option<u32>,
) -> Option<Kernel> {
    // Seeded data are drawn per stage afterwards ([`Kernel::with_seed`]):
    // the shape does not depend on them.
    let seed = 0;
    let arch = o.arch.clone().with_grid(bw, bh).ok()?;
    let sram = |bytes: u32| bytes <= arch.sram_bytes;
    // SiLU, GELU and SwiGLU may spread a row over a few columns: the
    // 8B's SwiGLU on 292 rows takes 708, 444, 346 and 306 cycles on one
    // to four. As many as take at most `wide_colors` colors (2w + 1), so
    // the hand-offs keep theirs ([`Memo::wide_colors`]).
    let vector = |op: VectorOp, n: u32| {
        let widths = if op.spreads_over_columns() {
            1..=(wide_colors.saturating_sub(1) / 2).clamp(1, bw as usize) as u32
        } else {
            1..=1
        };
        cheapest(
            heights(n, bh, rows).into_iter().flat_map(|h| {
                widths.clone().filter(move |w| w * h <= n).map(move |w| {
                    Kernel::Vector(VectorSpec {
                        w,
                        op,
                        n,
                        h,
                        strategy: o.reduce,
                        eps: c.norm_eps,
                        seed,
                    })
                })
            }),
            &arch,
            0,
            |_| true,
        )
    };
    match &stage.work {
        Work::Embed { vocab, dim, .. } => {
            let mut cands = Vec::new();
            for w in sizes((*vocab).min(bw)) {
                for h in sizes((*dim).min(bh)) {
                    cands.push(Kernel::Embed(EmbeddingSpec {
                        vocab: *vocab,
                        dim: *dim,
                        dtype: table_dtype(o.dtype),
                        w,
                        h,
                        strategy: o.reduce,
                        token: 0,
                        seed,
                    }));
                }
            }
            cheapest(cands.into_iter(), &arch, 0, |k| match k {
                Kernel::Embed(s) => wafer_kernels::embedding::validate(s, &arch).is_ok(),
                _ => false,
            })
        }
        Work::Gemv {
            m,
            n,
            biases,
            halves,
            ..
        } => {
            let n = n + !biases.is_empty() as u32;
            let mut cands = Vec::new();
            if o.gemv.tiled()
                && let Some((w, h, _)) =
                    wafer_kernels::gemv::best_rect(*m, n, o.dtype, o.reduce, &arch)
            {
                cands.push(Kernel::Gemv(GemvSpec {
                    m: *m,
                    n,
                    dtype: o.dtype,
                    w,
                    h,
                    strategy: o.reduce,
                    seed,
                    halves: *halves,
                    lead: Vec::new(),
                }));
            }
            if o.gemv.mesh(o.dtype) {
                for w in sizes((*m).min(bw)) {
                    for h in sizes(n.min(bh)) {
                        cands.extend(mesh_gemv(*m, n, w, h, o, &arch));
                    }
                }
            }
            cheapest(cands.into_iter(), &arch, 0, |_| true)
        }
        w @ (Work::RmsNorm { .. }
        | Work::AddRmsNorm { .. }
        | Work::LayerNorm { .. }
        | Work::Gelu { .. }
        | Work::Add { .. }
        | Work::Mul { .. }
        | Work::Silu { .. }
        | Work::Swiglu { .. }) => {
            let (op, n) = w.vector_op()?;
            vector(op, n)
        }
        Work::Rope {
            heads,
            head,
            theta,
            pairs,
            scaling,
        } => cheapest(
            // Whole heads a PE, or an equal part of a head each; fed by a
            // tiled GEMV's east edge, no shorter than the rows its input
            // leaves from (or its pairs), and as tall as them among the
            // rest (each head then split over the rows its elements leave
            // from, evenly or not): a shorter column gathers the rows
            // past it onto its end links.
            {
                let most = heads * (head / 2);
                let aligned = rows.filter(|r| *r <= bh).map(|r| r.min(most).max(1));
                let mut hs: Vec<u32> = (sizes((*heads).min(bh)).into_iter())
                    .chain(RopeSpec::part_heights(*heads, *head, bh))
                    .filter(|h| aligned.is_none_or(|a| *h >= a))
                    .collect();
                hs.extend(aligned);
                hs
            }
            .into_iter()
            .map(|h| {
                Kernel::Rope(RopeSpec {
                    heads: *heads,
                    head_dim: *head,
                    theta: *theta,
                    layout: match pairs {
                        RopePairs::Adjacent => RopeLayout::Adjacent,
                        RopePairs::HalfSplit => RopeLayout::HalfSplit,
                    },
                    scaling: *scaling,
                    pos: 0,
                    h,
                })
            }),
            &arch,
            0,
            |_| true,
        ),
        Work::Attention {
            heads,
            kv_heads,
            head,
            sinks,
            window,
            ..
        } => {
            if *kv_heads > bw {
                return None;
            }
            let group = heads / kv_heads;
            // A column per KV head, or (where the query heads share one
            // and there are columns for them) a column per query head,
            // each with a copy of the cache: whichever predicts faster.
            let hs = sizes(o.max_context.min(bh));
            let candidates = |per_query_head: bool| {
                hs.iter().map(move |&h| {
                    Kernel::Attention(AttentionSpec {
                        head_dim: *head,
                        group,
                        max_context: o.max_context,
                        pos: 0,
                        kv_heads: *kv_heads,
                        h,
                        strategy: o.reduce,
                        seed,
                        sinks: sinks.is_some(),
                        window: *window,
                        per_query_head,
                        pitch: 1,
                    })
                })
            };
            let at = o.max_context - 1;
            let fits = |k: &Kernel| matches!(k, Kernel::Attention(s) if sram(s.sram_bytes()));
            let grouped = cheapest(candidates(false), &arch, at, fits);
            if group == 1 || *heads > bw || copies == KvCopies::None {
                return grouped;
            }
            // With `NoLarger`, copies only where a PE holds no more than
            // the grouped layout's.
            let cap = match (copies, &grouped) {
                (KvCopies::NoLarger, Some(Kernel::Attention(g))) => g.sram_bytes(),
                _ => u32::MAX,
            };
            let copied = |k: &Kernel| matches!(k, Kernel::Attention(s) if sram(s.sram_bytes()) && s.sram_bytes() <= cap);
            cheapest(
                grouped.into_iter().chain(candidates(true)),
                &arch,
                at,
                |k| matches!(k, Kernel::Attention(s) if !s.per_query_head) || copied(k),
            )
        }
        Work::Route { experts, k } => {
            let s = RouterSpec {
                experts: *experts,
                per_token: *k,
                seed,
            };
            wafer_kernels::router::generate(&s, &arch)
                .is_ok()
                .then_some(Kernel::Router(s))
        }
        Work::Combine { n, k } => cheapest(
            sizes((*n).min(bh)).into_iter().map(|h| {
                Kernel::Combine(CombineSpec {
                    n: *n,
                    k: *k,
                    h,
                    seed,
                })
            }),
            &arch,
            0,
            |k| matches!(k, Kernel::Combine(s) if wafer_kernels::combine::generate(s, &arch).is_ok()),
        ),
        Work::ClampedSwiglu { n } => cheapest(
            sizes((*n).min(bh))
                .into_iter()
                .map(|h| Kernel::ClampedSwiglu(ClampedSwigluSpec { n: *n, h, seed })),
            &arch,
            0,
            |k| matches!(k, Kernel::ClampedSwiglu(s) if wafer_kernels::clamped_swiglu::generate(s, &arch).is_ok()),
        ),
        Work::Argmax { n } => cheapest(
            heights(*n, bh, rows).into_iter().map(|h| {
                Kernel::Argmax(ArgmaxSpec {
                    n: *n,
                    h,
                    strategy: o.reduce,
                    seed,
                })
            }),
            &arch,
            0,
            |_| true,
        ),
    }
}

/// Shapes already chosen, by what decides them (layers repeat the same
/// shapes; the cost models are not cheap on large rectangles).
pub(super) struct Memo {
    shapes: std::collections::HashMap<String, Option<Kernel>>,
    /// Whether attention may take a column per query head, each with a
    /// copy of its KV head's cache ([`KvCopies`]).
    copies: KvCopies,
    /// The most colors a kernel spread over columns may take. At first
    /// [`Memo::WIDE_COLORS`]; [`super::place`] raises it to what the
    /// model's other kernels take, so a wide kernel never takes a color
    /// the hand-offs would otherwise have.
    pub(super) wide_colors: usize,
}

impl Memo {
    /// Three columns' 7 colors: under the 8 of an RMSNorm's or
    /// LayerNorm's allreduce on a column of more than a few PEs, which
    /// every model places beside its SwiGLU or GELU.
    pub(super) const WIDE_COLORS: usize = 7;

    pub(super) fn new(copies: KvCopies) -> Memo {
        Memo {
            shapes: Default::default(),
            copies,
            wide_colors: Memo::WIDE_COLORS,
        }
    }

    pub(super) fn shape(
        &mut self,
        stage: &Stage,
        c: &Config,
        o: &Options,
        bw: u32,
        bh: u32,
        seed: u64,
    ) -> Option<Kernel> {
        self.shape_fed(stage, c, o, (bw, bh), None, seed)
    }

    /// [`Memo::shape`] for a stage that a tiled GEMV of `rows` rows feeds
    /// by its east edge (`None`: none does): a vector kernel then takes
    /// a row of PEs per row of the GEMV where the rectangle allows.
    pub(super) fn shape_fed(
        &mut self,
        stage: &Stage,
        c: &Config,
        o: &Options,
        (bw, bh): (u32, u32),
        rows: Option<u32>,
        seed: u64,
    ) -> Option<Kernel> {
        // The work without its weights' names: what the shape depends on.
        let what = match &stage.work {
            Work::Gemv {
                m,
                n,
                biases,
                halves,
                ..
            } => format!("gemv {m}x{n} {} {halves}", biases.len()),
            Work::Embed { vocab, dim, .. } => format!("embed {vocab}x{dim}"),
            Work::RmsNorm { n, eps, .. } => format!("rmsnorm {n} {eps}"),
            Work::Attention {
                heads,
                kv_heads,
                head,
                sinks,
                window,
                ..
            } => format!(
                "attention {heads} {kv_heads} {head} {} {window:?}",
                sinks.is_some()
            ),
            w if w
                .vector_op()
                .is_some_and(|(op, _)| op.spreads_over_columns()) =>
            {
                format!("{w:?} on {} colors", self.wide_colors)
            }
            w => format!("{w:?}"),
        };
        let key = format!("{what} in {bw}x{bh} fed by {rows:?} rows");
        let (copies, wide) = (self.copies, self.wide_colors);
        let k = self
            .shapes
            .entry(key)
            .or_insert_with(|| shape(stage, c, o, (bw, bh), copies, wide, rows))
            .clone()?;
        Some(k.with_seed(seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 8B's RoPE (40 heads of 128): fed by the 238 rows of a tiled
    /// GEMV that send it q and k, a column of 238 PEs beside them (no
    /// equal split is that tall: 160, a quarter of a head each, is the
    /// tallest); unfed, that cheapest equal split; fed by fewer rows than
    /// it, the same, a column no shorter than them.
    #[test]
    fn rope_is_as_tall_as_the_rows_that_send_it() {
        let c = Config::built_in("llama-3.1-8b").unwrap();
        let stage = Stage {
            name: "layers.0.rope".into(),
            layer: Some(0),
            work: Work::Rope {
                heads: 40,
                head: 128,
                theta: 500000.0,
                pairs: RopePairs::HalfSplit,
                scaling: None,
            },
            inputs: Vec::new(),
            outputs: Vec::new(),
            when: None,
        };
        let o = Options {
            arch: Arch::wse3(),
            dtype: DType::BF16,
            placement: None,
            max_context: 2048,
            reduce: wafer_kernels::reduce::Strategy::Tree { k: 2 },
            gemv: super::super::GemvChoice::Auto,
            region: crate::region::Region::Whole,
            wafers: crate::system::Wafers::Count(1),
            tiles: None,
        };
        let height = |rows| {
            let k = shape(&stage, &c, &o, (237, 285), KvCopies::None, 3, rows).unwrap();
            k.size().1
        };
        assert_eq!(height(Some(238)), 238);
        assert_eq!(height(None), 160);
        assert_eq!(height(Some(20)), 160);
        // Fed by all its budget's rows, as tall as them.
        assert_eq!(height(Some(285)), 285);
    }
}
