//! Parked inputs: the wavelets that reach a consumer's edge before the
//! consumer can start, and where a wafer keeps them meanwhile.
//!
//! Mesh placement runs several stages on the same PEs, one after another,
//! so a consumer may be unable to start until a stage that depends on its
//! producer has ended: a layer's residual add, on `wo`'s PEs, waits for
//! `wo` while the residual stream the layer before sent it has long
//! arrived; the argmax, on the classifier's PEs, waits for the logits'
//! last tile while the first tiles' maxima have come. Such a consumer
//! holds nothing back ([`super::overlap::Plan::holds`]: its producer
//! could not end while held by a consumer that waits for that end), and
//! in the overlapped step its input waits at its edge.
//!
//! A route's routers buffer only a few wavelets a hop. Past that, a wafer
//! program receives the stream before the consumer starts: on the entry
//! PE, an asynchronous move from the fabric into SRAM on a microthread,
//! posted with the step, that takes each wavelet as it comes while the PE
//! runs other stages (Cerebras SDK, "Data Structure Descriptors":
//! asynchronous DSD operations; "Microthread IDs": 8 on WSE-3; the
//! `message_passing` library's `recv_message` is one). Without it, the
//! wavelets past the route's buffers would stop the producer, and where
//! the producer multicasts the stream to a consumer that runs first (the
//! residual stream goes to the next layer's norm too), the program would
//! deadlock: the pipeline placement's holds found exactly that cycle when
//! its add took its inputs in pairs (`docs/decode-step.md`).
//!
//! This module sizes those receives ([`Parks::new`]) and checks that
//! each entry PE has what they need beside what its stages use
//! ([`Parks::check`]): SRAM beside the most the PE holds ([`crate::sram`]),
//! and an input queue and a microthread for each receive beside the most
//! any code placed there takes. The sizes are upper bounds: every wavelet
//! of the stream past what the route's routers buffer is parked (the
//! consumer starts only after its producer has sent all it sends), and a
//! PE's receives are counted as if all were open at once, the whole step.
//!
//! Not emulated, and so reported rather than counted: each parked
//! wavelet's SRAM write, which takes the write port from whatever stage
//! the PE runs at that cycle (at most a cycle a wavelet: [`Summary`]),
//! and the consumer reading its parked input from SRAM; its run takes
//! that input from its edge, a wavelet a cycle, as it takes any input
//! that waited there.

use super::overlap::{Entered, Trip};
use crate::codegen::Compiled;
use rayon::prelude::*;
use std::collections::BTreeMap;
use wafer_emulator::check::code_colors;
use wafer_emulator::isa::{ExecMode, Inst};
use wafer_emulator::{Arch, Pe, PeCode};

/// A settled step's timing, as [`Parks::check`] reads it, absolute:
/// when each stage's output elements left, each stage's start (and its
/// intake), each stage's end, and with the links queued each trip's delay
/// over a free route (by trip).
pub(super) struct StepTiming<'a> {
    pub left: &'a [Option<Vec<u64>>],
    pub entered: &'a [Option<Entered>],
    pub ends: &'a [Option<u64>],
    pub delay: Option<&'a [u64]>,
}

/// One consumer's input stream, parked at its entry PE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receive {
    pub to: usize,
    /// The stream's index among the consumer program's inputs.
    pub stream: u32,
    /// The trips ([`super::overlap::Plan::trips`]) of the wavelets that
    /// come to it: it parks the first `wavelets` to arrive.
    pub trips: Vec<u32>,
    pub wafer: u32,
    pub pe: Pe,
    pub wavelets: u64,
}

/// What an entry PE has beside its receives: the most SRAM it holds for
/// its stages ([`crate::sram`]) and the most input queues and
/// microthreads any code placed there takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Taken {
    bytes: u64,
    queues: u32,
    threads: u32,
}

/// Every parked stream of a step's plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parks {
    pub receives: Vec<Receive>,
    /// Per wafer and entry PE (that wafer's grid), what its stages take.
    taken: BTreeMap<(u32, Pe), Taken>,
}

/// What a step's parked receives took, as a report says it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Wavelets parked over the step, and the receives they come in.
    pub wavelets: u64,
    pub receives: u64,
    /// Entry PEs that park any.
    pub pes: u64,
    /// The most wavelets one PE parks over the step (its write port's
    /// cycles, at most).
    pub most_wavelets: u64,
    /// The most bytes one PE holds at once, its parked wavelets beside
    /// the most its stages hold.
    pub most_bytes: u64,
    /// The most receives one PE holds open at once, and the most input
    /// queues a code placed on that PE takes beside them.
    pub most_receives: u32,
    pub most_queues: u32,
}

impl Summary {
    /// Each figure the larger of the two (over a run's steps).
    pub fn max(self, o: Summary) -> Summary {
        let (most_receives, most_queues) =
            (self.most_receives, self.most_queues).max((o.most_receives, o.most_queues));
        Summary {
            wavelets: self.wavelets.max(o.wavelets),
            receives: self.receives.max(o.receives),
            pes: self.pes.max(o.pes),
            most_wavelets: self.most_wavelets.max(o.most_wavelets),
            most_bytes: self.most_bytes.max(o.most_bytes),
            most_receives,
            most_queues,
        }
    }
}

impl Parks {
    /// From a plan's trips (one per wavelet, consumer and entry PE) and,
    /// per stage, whether it waits for a stage's end (`waits_for(to,
    /// from)`: it then holds nothing back, and its input is parked).
    pub(super) fn new(
        c: &Compiled,
        trips: &[Trip],
        waits_for: impl Fn(usize, usize) -> bool,
    ) -> Parks {
        let arch = &c.options.arch;
        let room = (arch.router_buffer_depth + arch.hop_latency) as u64;
        // Per consumer, stream and producer: the wavelets, the fewest
        // routers any of them passes (the route that buffers least), the
        // wafer and entry PE.
        type Edge = (Vec<u32>, u64, u32, Pe);
        let mut edges: BTreeMap<(usize, u32, usize), Edge> = BTreeMap::new();
        for (k, t) in trips
            .iter()
            .enumerate()
            .filter(|(_, t)| waits_for(t.to, t.from))
        {
            let between = t.hops().saturating_sub(1) as u64;
            let e = edges.entry((t.to, t.into.0, t.from)).or_insert((
                Vec::new(),
                between,
                t.wafer,
                t.dst,
            ));
            e.0.push(k as u32);
            e.1 = e.1.min(between);
        }
        let mut receives: BTreeMap<(usize, u32), Receive> = BTreeMap::new();
        for ((to, stream, _), (mine, between, wafer, pe)) in edges {
            let parked = (mine.len() as u64).saturating_sub(between * room);
            if parked == 0 {
                continue;
            }
            let r = receives.entry((to, stream)).or_insert(Receive {
                to,
                stream,
                trips: Vec::new(),
                wafer,
                pe,
                wavelets: 0,
            });
            r.trips.extend(mine);
            r.wavelets += parked;
        }
        let receives: Vec<Receive> = receives.into_values().collect();
        let mut taken: BTreeMap<(u32, Pe), Taken> = (receives.iter())
            .map(|r| ((r.wafer, r.pe), Taken::default()))
            .collect();
        // Per stage, per code: the input queues and microthreads it takes.
        let code_takes: Vec<Vec<(u32, u32)>> = (c.fragments.iter())
            .map(|f| f.program.codes.iter().map(code_takes).collect())
            .collect();
        // Each wafer with an entry PE: what its PEs hold (on the pool).
        let held_per_wafer: Vec<Option<Vec<u32>>> = (c.wafers.par_iter().enumerate())
            .map(|(w, part)| {
                let w = w as u32;
                let any = taken.range((w, Pe::new(0, 0))..).next();
                any.filter(|((x, _), _)| *x == w)?;
                let r = part.stages.clone();
                Some(crate::sram::per_pe_bytes(
                    &c.sites[r.clone()],
                    &c.fragments[r],
                    arch,
                ))
            })
            .collect();
        for ((w, part), held) in c.wafers.iter().enumerate().zip(held_per_wafer) {
            let w = w as u32;
            let Some(held) = held else { continue };
            let r = part.stages.clone();
            let on_wafer =
                (taken.range_mut((w, Pe::new(0, 0))..)).take_while(|((x, _), _)| *x == w);
            for ((_, pe), t) in on_wafer {
                t.bytes = held[(pe.y * arch.grid_cols + pe.x) as usize] as u64;
                for i in r.clone().filter(|&i| c.sites[i].contains(*pe)) {
                    let o = c.sites[i].origin;
                    let program = &c.fragments[i].program;
                    let local = Pe::new(pe.x - o.x, pe.y - o.y);
                    if let Some(pl) = program.placements.iter().find(|pl| pl.pes.contains(local)) {
                        let (q, th) = code_takes[i][pl.code.0 as usize];
                        t.queues = t.queues.max(q);
                        t.threads = t.threads.max(th);
                    }
                }
            }
        }
        Parks { receives, taken }
    }

    /// Whether, in a settled step's `timing`, every entry PE of `arch`
    /// had room for the receives it held open beside what its stages
    /// take, and what they took; else which PE did not, and why.
    ///
    /// A receive holds its input queue and microthread from its first
    /// wavelet's arrival (each a hop a cycle from its producer's edge,
    /// plus its queue's delay: as the runs were fed) to the arrival of
    /// the last it parks; the rest wait in the route's buffers. Its
    /// wavelets stay in SRAM from the first's arrival to its consumer's
    /// end.
    pub(super) fn check(
        &self,
        c: &Compiled,
        arch: &Arch,
        trips: &[Trip],
        timing: &StepTiming,
    ) -> Result<Summary, String> {
        let StepTiming {
            left,
            entered,
            ends,
            delay,
        } = *timing;
        let hop = arch.hop_latency as u64;
        let bytes_per = (arch.wavelet_bits / 8) as u64;
        let mut sum = Summary::default();
        // Per PE, its receives' openings and closings: (cycle, change in
        // open receives, change in bytes, the receive).
        type Event = (u64, i64, i64, usize);
        let mut events: BTreeMap<(u32, Pe), Vec<Event>> = BTreeMap::new();
        let mut wavelets: BTreeMap<(u32, Pe), u64> = BTreeMap::new();
        for (k, r) in self.receives.iter().enumerate() {
            let (Some(_), Some(end)) = (&entered[r.to], ends[r.to]) else {
                continue;
            };
            let mut arrive: Vec<u64> = (r.trips.iter())
                .filter_map(|&t| {
                    let late = delay.map_or(0, |d| d[t as usize]);
                    Some(trips[t as usize].reached(left, hop)? + late)
                })
                .collect();
            arrive.sort_unstable();
            let (Some(&open), Some(&last)) = (arrive.first(), arrive.get(r.wavelets as usize - 1))
            else {
                continue;
            };
            let bytes = (r.wavelets * bytes_per) as i64;
            let e = events.entry((r.wafer, r.pe)).or_default();
            // Closings before openings at one cycle: a receive done
            // frees its queue for one that starts then.
            e.push((open, 1, bytes, k));
            e.push((last + 1, -1, 0, k));
            e.push((end.max(last + 1), 0, -bytes, k));
            *wavelets.entry((r.wafer, r.pe)).or_default() += r.wavelets;
            sum.wavelets += r.wavelets;
            sum.receives += 1;
        }
        sum.pes = events.len() as u64;
        for (key, mut e) in events {
            let (wafer, pe) = key;
            let t = self.taken[&key];
            e.sort_unstable_by_key(|&(at, open, bytes, _)| (at, open, bytes));
            let (mut open, mut bytes) = (0i64, 0i64);
            for (_, d_open, d_bytes, k) in e {
                (open, bytes) = (open + d_open, bytes + d_bytes);
                let (open, held) = (open as u32, t.bytes + bytes as u64);
                let at = || {
                    let wafer = match c.wafers.len() {
                        1 => String::new(),
                        _ => format!(" of wafer {wafer}"),
                    };
                    format!(
                        "{pe}{wafer} holds {open} receive(s) open at once, with {} parked bytes (the last for `{}`, which cannot start before a stage sharing its PEs has ended)",
                        held - t.bytes,
                        c.stages[self.receives[k].to].name
                    )
                };
                // What it needs with its stages', what they take, and
                // what a PE has.
                let limits = [
                    ("bytes", held, t.bytes, arch.sram_bytes),
                    (
                        "input queues",
                        (t.queues + open) as u64,
                        t.queues as u64,
                        arch.input_queues,
                    ),
                    (
                        "microthreads",
                        (t.threads + open) as u64,
                        t.threads as u64,
                        arch.microthreads,
                    ),
                ];
                if let Some((what, need, theirs, have)) = limits.iter().find(|l| l.1 > l.3 as u64) {
                    return Err(format!(
                        "{}: {need} {what} with the {theirs} its stages take, over the {have} a PE has",
                        at()
                    ));
                }
                sum.most_bytes = sum.most_bytes.max(held);
                (sum.most_receives, sum.most_queues) =
                    (sum.most_receives, sum.most_queues).max((open, t.queues));
            }
            sum.most_wavelets = sum.most_wavelets.max(wavelets[&key]);
        }
        Ok(sum)
    }
}

/// The input queues (colors it receives on) and microthreads one code
/// takes.
fn code_takes(code: &PeCode) -> (u32, u32) {
    let queues = code_colors(code).consumed.len() as u32;
    let mut threads: Vec<u8> = (code.insts.iter())
        .filter_map(|i| match i {
            Inst::Vec(v) => match v.mode {
                ExecMode::Async { thread, .. } => Some(thread),
                ExecMode::Sync => None,
            },
            _ => None,
        })
        .collect();
    threads.sort_unstable();
    threads.dedup();
    (queues, threads.len() as u32)
}

#[cfg(test)]
mod tests {
    use crate::decode::{DecodeError, Decoder, Step};
    use crate::place::{Options, PlacementKind};
    use crate::{Compiled, compile, llama2c};
    use wafer_emulator::{Arch, DType};

    /// stories260K, mesh, on a 48 x 48 grid of `wse3` PEs: its adds
    /// share `wo`'s and `w2`'s PEs, so their residual streams park.
    fn mesh() -> Compiled {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let (c, w) = llama2c::load(&models.join("stories260K.bin")).unwrap();
        let o = Options::on_wse3_grid(48, 48, PlacementKind::Mesh, DType::BF16);
        compile(&c, Some(&w), &o).unwrap()
    }

    /// A timing-only overlapped step of `c`, with the links queued on
    /// X-then-Y paths or free, and the decoder that ran it.
    fn overlapped_step(c: &Compiled, queued: bool) -> (Decoder<'_>, Step) {
        let mut d = Decoder::new(c);
        d.timing_only(true);
        d.overlap(true);
        let xy = crate::decode::links::Paths::Ordered(crate::decode::links::Order::XFirst);
        d.queue_links(queued.then_some((xy, usize::MAX)));
        let step = d.step(1).unwrap();
        (d, step)
    }

    /// Every wavelet the plan parks is one the emulated step has waiting
    /// at its consumer's edge when that consumer starts (the consumer
    /// starts only once its producer has sent all it sends), so each
    /// consumer's most wavelets waiting at once is at least what one of
    /// its streams parks, less the one entering, and each comes from a
    /// stage that ended before its consumer started. A plan that parked
    /// every stream fails the second (tried); one that parked the others
    /// instead of these, the residual adds' check.
    #[test]
    fn every_parked_wavelet_waits_at_its_consumers_edge() {
        let c = mesh();
        for queued in [false, true] {
            parked_as_the_step_ran(&c, queued);
        }
    }

    /// [`every_parked_wavelet_waits_at_its_consumers_edge`], its links
    /// free or queued (the receives then open as late as the queue
    /// has the wavelets come).
    fn parked_as_the_step_ran(c: &Compiled, queued: bool) {
        let (d, step) = overlapped_step(c, queued);
        assert_eq!(d.parks_queued, queued, "checked with the queue's delays");
        let parks = &d.overlap.as_ref().unwrap().parks;
        assert!(
            !parks.receives.is_empty(),
            "mesh's adds park their residual stream"
        );
        let adds = (parks.receives.iter()).filter(|r| c.stages[r.to].name.contains("residual"));
        assert!(adds.count() > 0);
        for r in &parks.receives {
            assert!(
                step.stage_backlog[r.to] + 1 >= r.wavelets,
                "`{}` parks {} wavelets of stream {}, but at most {} waited at its edge",
                c.stages[r.to].name,
                r.wavelets,
                r.stream,
                step.stage_backlog[r.to]
            );
            // Its wavelets come from stages its consumer waits for.
            let plan = d.overlap.as_ref().unwrap();
            for &t in &r.trips {
                let from = plan.trips[t as usize].from;
                assert!(step.stage_end(from) <= step.stage_start[r.to], "{r:?}");
            }
        }
        let sum = step.parked.unwrap();
        assert_eq!(
            sum.wavelets,
            parks.receives.iter().map(|r| r.wavelets).sum::<u64>()
        );
        assert!(sum.most_bytes <= c.options.arch.sram_bytes as u64);
        assert!(sum.most_receives >= 1 && sum.most_receives <= c.options.arch.microthreads);
        assert!(sum.most_receives as u64 <= sum.receives);
    }

    /// A PE without the SRAM, the input queues or the microthreads for
    /// the receives it holds open at once fails the overlapped step,
    /// naming the PE, the stage and what is short, and saying to decode
    /// with barriers. The stages run on the machine as it is, the
    /// receives checked against one cut short (run on that one, the
    /// emulator would refuse the programs first).
    #[test]
    fn a_pe_without_room_for_its_receives_fails_the_check() {
        let c = mesh();
        let (_, step) = overlapped_step(&c, false);
        let sum = step.parked.unwrap();
        type Cut = fn(&mut Arch, &super::Summary);
        let short: [(&str, Cut); 3] = [
            ("bytes with the", |a, s| {
                a.sram_bytes = s.most_bytes as u32 - 1
            }),
            ("input queues with the", |a, s| {
                a.input_queues = s.most_queues + s.most_receives - 1
            }),
            ("microthreads with the", |a, s| {
                a.microthreads = s.most_receives - 1
            }),
        ];
        for (what, cut) in short {
            let mut d = Decoder::new(&c);
            d.timing_only(true);
            d.overlap(true);
            let mut small = c.options.arch.clone();
            cut(&mut small, &sum);
            d.parks_arch = Some(small);
            match d.step(1) {
                Err(e @ DecodeError::Parked { .. }) => {
                    let e = e.to_string();
                    assert!(
                        e.contains(what) && e.contains("receive(s) open at once"),
                        "{e}"
                    );
                    assert!(e.contains("--barriers"), "{e}");
                }
                other => panic!("{what}: {:?}", other.map(|s| s.cycles)),
            }
        }
    }
}
