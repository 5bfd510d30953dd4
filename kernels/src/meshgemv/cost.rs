//! MeshGEMV's cost model: the slowest column, followed row by row, and a
//! middle row's shared ramp cycle by cycle.

use super::{CBD, CBU, CD1, CD2, CU1, CU2, CX, MeshGemvSpec, Step, routes, steps};
use crate::costed::Costed;
use crate::timeline::Timeline;
use std::collections::BTreeMap;
use wafer_emulator::Port;
use wafer_emulator::isa::VecOp;
use wafer_emulator::{Arch, DType};

/// Predicted cycles: the slowest column (every column runs alone but for
/// `x` passing along the rows; a column's time grows with its tile width
/// and with how late `x` reaches it, so the last column of each tile width
/// is the slowest of its kind).
///
/// A column, row by row with [`Timeline`]: `x` when streamed (element `k`
/// reaches column `c`'s cores at `k + hop·(c+1) + ramp`), the zeroing, the
/// AXPY loop (`ldf`, the FMAC, three scalars per element of `x`); then the
/// chains: a stream moves one wavelet (two 16-bit or one f32 element) per
/// cycle, a sender's wavelet `k` leaves at its first element's cycle plus
/// `k`, reaches the next core `2·ramp + hops·hop` later, and a receiving op
/// handles wavelet `k` at `max(start, arrival + k)`; the next instruction
/// issues in the cycle of the last wavelet. Streamed, `y` leaves the bottom
/// row's router `hop` before the host has it. The streams a group's middle
/// row reads (both chains, then the second phase's) can reach its router
/// together and share the ramp into its core: that part is followed cycle
/// by cycle ([`front`]), the router's round robin and the queues' room as
/// the engine has them. The tests hold the result equal to the emulated
/// cycles.
pub fn cost(s: &MeshGemvSpec, arch: &Arch) -> u64 {
    cost_batch(s, 1, arch)
}

/// [`super::generate_batch`]'s predicted cycles: as [`cost`], with `x`
/// and `res` `batch` times as long, three `li` before the first position,
/// then per position an `li`, its AXPY loop and `add`, `add`, `blt`.
/// Sends are taken as never held up; a batch's longer streams can back up
/// into a row still busy with its AXPY, which holds the send: then the
/// model is a few cycles under (at most 4 over 8,640 shapes swept; the
/// tests bound it).
pub fn cost_batch(s: &MeshGemvSpec, batch: u32, arch: &Arch) -> u64 {
    // Every field the cost reads ([`crate::costed`]).
    let MeshGemvSpec {
        m,
        n,
        w,
        h,
        groups,
        dtype,
        acc,
        streamed,
        seed: _,
    } = *s;
    let key = (m, n, w, h, groups, dtype, acc, streamed, batch);
    COSTED.get_or(key, arch, || cost_uncached(s, batch, arch))
}

/// The MeshGEMV specs already costed ([`crate::costed`]).
type MeshGemvKey = (u32, u32, u32, u32, u32, DType, DType, bool, u32);
static COSTED: Costed<MeshGemvKey> = Costed::new();

/// [`cost_batch`], computed.
fn cost_uncached(s: &MeshGemvSpec, batch: u32, arch: &Arch) -> u64 {
    let cols = s.cols();
    let wide = cols.iter().filter(|(_, nt)| *nt == cols[0].1).count() as u32;
    [wide - 1, s.w - 1]
        .into_iter()
        .map(|c| {
            column_cost(
                s,
                batch,
                arch,
                c,
                cols[c as usize].1,
                &mut Fronts::default(),
            )
        })
        .max()
        .unwrap_or(0)
}

fn column_cost(
    s: &MeshGemvSpec,
    batch: u32,
    arch: &Arch,
    c: u32,
    nt: u32,
    fronts: &mut Fronts,
) -> u64 {
    let (i, hop, ramp) = (
        arch.vector_issue_cycles as u64,
        arch.hop_latency as u64,
        arch.ramp_latency as u64,
    );
    let rows = s.rows();
    let wavelets = (batch * nt).div_ceil(s.acc.per_word()) as u64;
    let acc_bits = arch.operand_bits(s.acc.bits(), true);
    let w_bits = arch.operand_bits(s.dtype.bits(), true);
    let zero = arch.vector_rate(VecOp::Mov, s.acc, false, 0, acc_bits);
    let fmac = arch.vector_rate(VecOp::Fmac, s.acc, true, acc_bits + w_bits, acc_bits);
    // Rows' main threads after the local GEMV.
    let mut t: Vec<u64> = rows
        .iter()
        .map(|&(_, mt)| {
            let mut l = Timeline::start(arch);
            if s.streamed {
                l.receive(batch * mt, hop * (c as u64 + 1) + ramp);
            }
            l.vector(batch * nt, zero);
            let axpy = |l: &mut Timeline| {
                l.repeat(mt as u64, |l| {
                    l.scalar(1);
                    l.vector(nt, fmac);
                    l.scalar(3);
                })
            };
            if batch == 1 {
                l.scalar(2);
                axpy(&mut l);
            } else {
                l.scalar(3);
                l.repeat(batch as u64, |l| {
                    l.scalar(1);
                    axpy(l);
                    l.scalar(3);
                });
            }
            l.t
        })
        .collect();
    // Stream arrivals by color and receiving row: the cycle wavelet 0 is
    // in the core's queue.
    let mut arrival: BTreeMap<(u8, u32), u64> = BTreeMap::new();
    let (gsize, _) = s.group();
    let root = s.root();
    // Where a stream row `y` sends on color `c` lands: (row, hops).
    let lands = |c: u8, y: u32| -> Vec<(u32, u64)> {
        if CD1.contains(&c) {
            vec![(y + 1, 1)]
        } else if CU1.contains(&c) {
            vec![(y - 1, 1)]
        } else if CD2.contains(&c) {
            vec![(y + gsize, gsize as u64)]
        } else if CU2.contains(&c) {
            vec![(y - gsize, gsize as u64)]
        } else if c == CBU {
            (0..root).map(|r| (r, (root - r) as u64)).collect()
        } else {
            (root + 1..s.h).map(|r| (r, (r - root) as u64)).collect()
        }
    };
    let steps_of: Vec<Vec<Step>> = (0..s.h).map(|y| steps(s, y)).collect();
    // When the host has the last wavelet of `y` (streamed).
    let mut out_end = 0;
    let mut done = vec![false; s.h as usize];
    // Rows in dependency order. A row's steps before the broadcast (its
    // "front") run once every stream they read has a known arrival (each
    // stream, a color into a row, has one sender, so the order rows run
    // in does not change their times): the
    // streams may reach the router together and share its ramp, so the
    // front is simulated as a whole ([`front`]). The broadcast reaches a
    // row only after everything it sent, alone.
    // Rows to try: every row once, then each row again as a stream reaches
    // it (a row waits only for its streams; rescanning every row until
    // none progresses cost a pass per hop of the chains up the groups).
    let mut todo: std::collections::VecDeque<usize> = (0..s.h as usize).collect();
    while let Some(y) = todo.pop_front() {
        if done[y] {
            continue;
        }
        let st = &steps_of[y];
        let front_steps = match st.last() {
            Some(Step::Receive(_)) => &st[..st.len() - 1],
            _ => &st[..],
        };
        let reads: Vec<u8> = front_steps.iter().flat_map(|s| s.reads()).collect();
        let Some(ready) = reads
            .iter()
            .map(|c| arrival.get(&(*c, y as u32)).map(|a| (*c, *a)))
            .collect::<Option<Vec<(u8, u64)>>>()
        else {
            continue;
        };
        let (end, sends) = fronts.front(
            arch,
            front_steps,
            &ready,
            wavelets,
            t[y] + 1 + i,
            router_entries(s, y as u32),
        );
        for (c, first) in sends {
            for (to, hops) in lands(c, y as u32) {
                arrival.insert((c, to), first + 2 * ramp + hops * hop);
                todo.push_back(to as usize);
            }
            if s.streamed && c == CBD {
                let hops = (s.h - 1 - root) as u64;
                out_end = first + ramp + hops * hop + hop + wavelets - 1;
            }
        }
        t[y] = end;
        done[y] = true;
    }
    // The broadcast: every row but the root ends receiving it.
    for y in 0..s.h as usize {
        debug_assert!(done[y], "row {y}'s front never ran");
        if let Some(Step::Receive(c)) = steps_of[y].last() {
            let a = arrival[&(*c, y as u32)];
            t[y] = (t[y] + 1 + i).max(a) + wavelets - 1;
        }
    }
    // The run ends the cycle after the last row's last wavelet, or when the
    // host has `y`.
    (t.into_iter().max().unwrap_or(0) + 1).max(out_end)
}

/// A column's fronts already followed, by what they depend on, at a
/// cycle shifted to start near 0: [`front`] reads its cycles only as
/// differences, so a row whose steps, router entries and streams match
/// another's, all shifted by the same cycles, runs as that row did,
/// shifted. Rows in the same part of their group often do (the 1B's
/// classifier: 345 to 1,114 distinct fronts in 2,048 to 2,224 rows).
#[derive(Default)]
struct Fronts {
    seen: BTreeMap<FrontKey, (u64, Vec<(u8, u64)>)>,
    /// Fronts answered from one seen before.
    hits: usize,
    /// Every front followed anew, unshifted (the tests' reference).
    #[cfg(test)]
    off: bool,
    /// Every answer, in order.
    #[cfg(test)]
    answers: Vec<(u64, Vec<(u8, u64)>)>,
}

/// A front's steps, streams read `(color, ready)`, start and router
/// entries, its cycles shifted.
type FrontKey = (Vec<Step>, Vec<(u8, u64)>, u64, Vec<(u8, usize)>);

impl Fronts {
    /// [`front`], from a front seen before where one matches.
    fn front(
        &mut self,
        arch: &Arch,
        steps: &[Step],
        ready: &[(u8, u64)],
        wavelets: u64,
        start: u64,
        entries: Vec<(u8, usize)>,
    ) -> (u64, Vec<(u8, u64)>) {
        #[cfg(test)]
        if self.off {
            let answer = front(arch, steps, ready, wavelets, start, &entries);
            self.answers.push(answer.clone());
            return answer;
        }
        let (ramp, issue) = (
            arch.ramp_latency as u64,
            arch.vector_issue_cycles as u64 + 1,
        );
        // The earliest cycle the front reads, less `issue` so that its
        // `start - issue` stays a difference; at 0 (no room) no shift.
        let base = (ready.iter())
            .map(|r| r.1 - ramp)
            .fold(start, u64::min)
            .saturating_sub(issue);
        let shifted: Vec<(u8, u64)> = ready.iter().map(|&(c, r)| (c, r - base)).collect();
        let key = (steps.to_vec(), shifted, start - base, entries);
        let (end, sends) = match self.seen.get(&key) {
            Some(seen) => {
                self.hits += 1;
                seen.clone()
            }
            None => {
                let ran = front(arch, steps, &key.1, wavelets, key.2, &key.3);
                self.seen.insert(key, ran.clone());
                ran
            }
        };
        let answer = (
            end + base,
            sends.into_iter().map(|(c, at)| (c, at + base)).collect(),
        );
        #[cfg(test)]
        self.answers.push(answer.clone());
        answer
    }
}

impl Step {
    /// The streams the step reads, in order.
    fn reads(&self) -> Vec<u8> {
        match *self {
            Step::Send(_) => vec![],
            Step::Forward { input, .. } | Step::Add(input) | Step::Receive(input) => vec![input],
            Step::Join { first, second } => vec![first, second],
        }
    }
}

/// Row `y`'s router entries, `(color, input port)`, in the order the
/// engine's round robin visits them: by color, then by port in
/// [`Port::ALL`] order.
fn router_entries(s: &MeshGemvSpec, y: u32) -> Vec<(u8, usize)> {
    let port = |p: &str| match p {
        "N" => Port::N,
        "S" => Port::S,
        "E" => Port::E,
        "W" => Port::W,
        _ => Port::Ramp,
    };
    let mut e: Vec<(u8, usize)> = routes(s, y)
        .into_iter()
        .map(|(c, from, _)| (c, port(from).index()))
        .collect();
    if s.streamed {
        e.push((CX, Port::W.index()));
    }
    e.sort_unstable();
    e.dedup();
    e
}

/// A row's steps before the broadcast, as the engine runs them cycle by
/// cycle: returns the cycle of the last step's last wavelet and, for each
/// step that sends, its color and the cycle its first wavelet goes up the
/// ramp.
///
/// `ready` gives, per stream read, the cycle its wavelet 0 would be in the
/// core's queue were the ramp its own, the others following one per cycle:
/// the router has it `ramp_latency` earlier. Every cycle the router's
/// round robin (over `entries`, from entry 0) gives the ramp to one stream
/// whose next wavelet has come and whose queue has room
/// (`queue_depth + ramp_latency`, counting wavelets in flight; room a pop
/// frees shows the next cycle). The core runs the steps in order, the
/// first from `start`, each next `1 + I` after the last wavelet of the one
/// before; a step reading a stream takes one wavelet per cycle from its
/// queue, a send one per cycle. So streams that come while the core reads
/// another fill their queues and then wait, and streams that come together
/// alternate. Sends are taken as never held up (the routes out are free).
fn front(
    arch: &Arch,
    steps: &[Step],
    ready: &[(u8, u64)],
    wavelets: u64,
    start: u64,
    entries: &[(u8, usize)],
) -> (u64, Vec<(u8, u64)>) {
    let ramp = arch.ramp_latency as u64;
    let issue = 1 + arch.vector_issue_cycles as u64;
    let cap = (arch.queue_depth + arch.ramp_latency) as usize;
    let n = entries.len();
    let entry: Vec<usize> = ready
        .iter()
        .map(|(c, _)| {
            entries
                .iter()
                .position(|e| e.0 == *c && e.1 != Port::Ramp.index())
                .expect("a stream into the core has a route")
        })
        .collect();
    // The core's work: one item per stream read or sent, in order.
    let mut work: Vec<(Option<usize>, Option<u8>)> = Vec::new();
    for st in steps {
        match *st {
            Step::Send(c) => work.push((None, Some(c))),
            Step::Forward { input, out } => {
                work.push((ready.iter().position(|r| r.0 == input), Some(out)))
            }
            Step::Add(c) | Step::Receive(c) => {
                work.push((ready.iter().position(|r| r.0 == c), None))
            }
            Step::Join { first, second } => {
                work.push((ready.iter().position(|r| r.0 == first), None));
                work.push((ready.iter().position(|r| r.0 == second), None));
            }
        }
    }
    let k = ready.len();
    let mut queue: Vec<std::collections::VecDeque<u64>> = vec![Default::default(); k];
    let mut sent = vec![0u64; k];
    let mut sends = Vec::new();
    let (mut item, mut taken, mut from) = (0usize, 0u64, start);
    let mut rr = 0usize;
    let mut c = ready.iter().map(|r| r.1 - ramp).fold(start, u64::min);
    let mut end = start.saturating_sub(issue);
    // Which queues the core popped this cycle (their room shows the next
    // cycle). Reset each cycle, not allocated: this loop runs once a
    // simulated cycle, and the region search costs thousands of shapes.
    let mut popped = vec![false; k];
    while item < work.len() {
        popped.fill(false);
        let mut changed = false;
        if c >= from {
            let (input, out) = work[item];
            let moved = match input {
                None => true,
                Some(q) if queue[q].front().is_some_and(|r| *r <= c) => {
                    queue[q].pop_front();
                    popped[q] = true;
                    true
                }
                Some(_) => false,
            };
            if moved {
                changed = true;
                if taken == 0
                    && let Some(o) = out
                {
                    sends.push((o, c));
                }
                taken += 1;
                if taken == wavelets {
                    end = c;
                    item += 1;
                    taken = 0;
                    from = c + issue;
                }
            }
        }
        let pick = (0..k)
            .filter(|&q| {
                sent[q] < wavelets
                    && ready[q].1 - ramp + sent[q] <= c
                    && queue[q].len() + usize::from(popped[q]) < cap
            })
            .min_by_key(|&q| {
                // (entry[q] - rr) mod n, without a division: both are
                // below n here (rr is kept reduced).
                let d = entry[q] + n - rr;
                if d >= n { d - n } else { d }
            });
        if let Some(q) = pick {
            queue[q].push_back(c + ramp);
            sent[q] += 1;
            rr = if entry[q] + 1 == n { 0 } else { entry[q] + 1 };
            changed = true;
        }
        c += 1;
        if !changed && item < work.len() {
            // Nothing moved, so nothing changes until the first cycle at
            // which something waited for comes (each wait is a cycle
            // reached, and stays met): the core's next step may start, the
            // wavelet it waits for is in its queue, or a stream with room
            // has its next wavelet at the router. The cycles between are
            // skipped, not stepped (a core busy with its AXPY long before
            // its streams come, or after they filled their queues).
            let core = match work[item].0 {
                _ if c < from => Some(from),
                None => Some(c),
                Some(q) => queue[q].front().copied(),
            };
            let push = (0..k)
                .filter(|&q| sent[q] < wavelets && queue[q].len() < cap)
                .map(|q| ready[q].1 - ramp + sent[q]);
            if let Some(next) = core.into_iter().chain(push).min() {
                c = c.max(next);
            }
        }
    }
    (end, sends)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kept costs are the computed ones, asked in an order where a key
    /// that left out a field the cost reads would answer with another
    /// shape's cost: each field of the spec, the batch and a latency of
    /// the machine moved one at a time, on two grids.
    #[test]
    fn a_kept_cost_is_the_cost_of_its_own_shape_and_machine() {
        let base = MeshGemvSpec {
            m: 40,
            n: 24,
            w: 4,
            h: 8,
            groups: 2,
            dtype: DType::BF16,
            acc: DType::F32,
            streamed: true,
            seed: 7,
        };
        let specs = [
            base.clone(),
            MeshGemvSpec {
                m: 64,
                ..base.clone()
            },
            MeshGemvSpec {
                n: 40,
                ..base.clone()
            },
            MeshGemvSpec {
                w: 3,
                ..base.clone()
            },
            MeshGemvSpec {
                h: 12,
                ..base.clone()
            },
            MeshGemvSpec {
                groups: 4,
                ..base.clone()
            },
            MeshGemvSpec {
                dtype: DType::F16,
                ..base.clone()
            },
            MeshGemvSpec {
                acc: DType::BF16,
                ..base.clone()
            },
            MeshGemvSpec {
                streamed: false,
                ..base.clone()
            },
        ];
        let asked: Vec<(MeshGemvSpec, u32)> = (specs.iter())
            .flat_map(|s| [(s.clone(), 1), (s.clone(), 3)])
            .collect();
        let distinct = crate::costed::check::kept_costs_are_computed(
            &asked,
            |(s, batch), seed, arch| cost_batch(&MeshGemvSpec { seed, ..s.clone() }, *batch, arch),
            |(s, batch), arch| cost_uncached(s, *batch, arch),
        );
        // The fields moved change the cost: the comparison above can fail.
        assert!(distinct >= 12, "{distinct} distinct costs");
    }

    /// A column's fronts taken from matching rows, and so its cost, are
    /// every row's front followed anew, on shapes tall enough for rows
    /// to match.
    #[test]
    fn a_front_taken_from_a_matching_row_is_that_rows_front() {
        let arch = Arch::wse3();
        let mut hits = 0;
        for (h, groups) in [(64, 8), (96, 6), (120, 10), (128, 16)] {
            for (n, w) in [(400, 8), (1000, 12)] {
                for streamed in [true, false] {
                    let s = MeshGemvSpec {
                        // Rows of two lengths of `x`: two starts.
                        m: h * 4 + h / 2 + 1,
                        n,
                        w,
                        h,
                        groups,
                        dtype: DType::BF16,
                        acc: DType::F32,
                        streamed,
                        seed: 0,
                    };
                    let cols = s.cols();
                    for c in [0, s.w - 1] {
                        let nt = cols[c as usize].1;
                        let mut kept = Fronts::default();
                        let mut off = Fronts {
                            off: true,
                            ..Fronts::default()
                        };
                        let got = column_cost(&s, 1, &arch, c, nt, &mut kept);
                        let want = column_cost(&s, 1, &arch, c, nt, &mut off);
                        assert_eq!(got, want, "{s:?} column {c}");
                        assert_eq!(kept.answers, off.answers, "{s:?} column {c}");
                        assert_eq!(off.hits, 0);
                        hits += kept.hits;
                    }
                }
            }
        }
        assert!(hits > 100, "{hits} fronts taken from another row");
    }
}
