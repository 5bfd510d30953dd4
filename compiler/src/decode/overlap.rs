//! The overlapped step ([`Decoder::overlap`](super::Decoder::overlap)):
//! each stage starts as soon as its first input element has arrived and
//! its PEs are free, and takes every element at the cycle it arrives,
//! instead of waiting at a barrier for its producers to finish and their
//! farthest element to make its trip.
//!
//! Each stage is still its own emulated run, but its host inputs carry
//! arrival cycles ([`wafer_emulator::Arrivals`]): an element arrives at
//! the cycle its producer's exit router sent it off the producer's
//! rectangle ([`wafer_emulator::RunResult::output_times`]) plus its trip,
//! a hop's latency per hop from that PE to the consumer's entry PE, less
//! the one hop the consumer's own host stream takes to enter. Where the
//! two rectangles touch, this is exact: a GEMV run apart from the GEMV it
//! feeds, fed so, takes exactly the cycles of the two as one program,
//! and so does a chain of four kernels that turns a corner
//! (`kernels/tests/abut.rs`). What it leaves out is what the barrier
//! model leaves out too: the routes between stages are taken as free of
//! other traffic ([`super::links`] counts how far that is from true).
//!
//! A consumer holds its producer back. A route holds a few wavelets a hop;
//! past that, a stream its consumer takes more slowly than it comes waits
//! in its producer, whose outputs leave no earlier than the route has room
//! ([`wafer_emulator::Departures`], from the cycles the consumer's edge
//! took each wavelet: [`Plan::holds`]). A held producer ends later and
//! sends later, which moves its consumers, so the step runs again, each
//! stage fed and held by the pass before, until no hold moves; a stage fed
//! and held as in the pass before is not run again. Two programs run
//! apart so take exactly the cycles of the two as one program, the
//! consumer's full buffers stalling the producer
//! (`emulator/tests/departures.rs`).
//!
//! A stage that shares a PE with an earlier one (mesh placement loads a
//! PE's code per stage) starts after that stage has ended. Stages fed
//! from another wafer, and experts (whose inputs depend on a router's
//! picks), keep the barrier: they start once their producers have ended
//! and their hand-off's modelled cycles have passed.

use super::park::Parks;
use crate::codegen::Compiled;
use crate::route::Ends;
use crate::stage::Src;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use wafer_emulator::Cycles;
use wafer_emulator::Pe;

/// Where one input element of a stage comes from: the producing stage,
/// the element's index in its output port, and the trip's hops.
#[derive(Clone, Copy, Debug)]
struct Feed {
    from: usize,
    at: u32,
    hops: u32,
}

/// Per stage, each output element's wavelet: its stream's index among the
/// program's outputs in the high half, the wavelet's in the low one
/// (`None`: a stage with no output port, or one whose streams are not
/// the program's).
fn out_wavelets(c: &Compiled) -> Vec<Option<Vec<u64>>> {
    (c.fragments.par_iter())
        .map(|f| {
            let port = f.outputs.first()?;
            let index = stream_index(&f.program.outputs);
            (f.element_wavelets(port)?.into_iter())
                .map(|(stream, k)| Some((*index.get(stream)? as u64) << 32 | k as u64))
                .collect()
        })
        .collect()
}

/// Each stream's index among `streams`, by name.
fn stream_index(streams: &[wafer_emulator::program::HostStream]) -> HashMap<&str, u32> {
    (streams.iter().enumerate())
        .map(|(k, h)| (h.name.as_str(), k as u32))
        .collect()
}

/// How a stage is fed in an overlapped step.
#[derive(Clone, Debug)]
enum Fed {
    /// Per input port, per element: its producer (`None`: the host, at
    /// the step's start: the position, a constant).
    Streamed(Vec<(String, Vec<Option<Feed>>)>),
    /// At a barrier after these stages (see the module's documentation).
    Barrier(Vec<usize>),
}

/// The plan of an overlapped step, built once per compiled model.
pub(crate) struct Plan {
    fed: Vec<Fed>,
    /// Per stage, the earlier stages of its wafer that share a PE with it.
    shares: Vec<Vec<usize>>,
    /// Every streamed element's trip from its producer's exit PE to its
    /// consumer's entry PE, one per wavelet and entry PE (sorted: a
    /// wavelet's trips together), for [`super::links`].
    pub(super) trips: Vec<Trip>,
    /// Per stage, the holds its intake can put on its producers
    /// ([`Plan::holds`]): fixed by the plan, so found once.
    holds: Vec<Holds>,
    /// The inputs that reach a consumer's edge before it can start, and
    /// where they wait ([`super::park`]).
    pub(super) parks: Parks,
    /// Per stage, a bit per earlier stage whose end its start waits for
    /// (kept for the tests; [`hold_rules`] reads it as the plan is built).
    #[cfg(test)]
    after_end: Vec<Vec<u64>>,
}

/// The holds one stage's intake can put on its producers' output
/// elements ([`Plan::holds`]).
#[derive(Default)]
struct Holds {
    /// The stage's input streams that make room for a hold, by name.
    streams: Vec<String>,
    rules: Vec<Hold>,
}

/// Producer `from`'s output element `at` leaves no earlier than the
/// consumer's input stream `streams[stream]` took its wavelet `intake`,
/// plus a hop a cycle over the `between` routers of the route.
struct Hold {
    from: usize,
    at: u32,
    stream: u32,
    intake: u32,
    between: u32,
}

/// A wavelet's trip between two stages of one wafer (see
/// [`super::links`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Trip {
    pub from: usize,
    /// The wavelet ([`out_wavelets`]).
    pub wavelet: u64,
    /// The wafer of the system both stages are on.
    pub wafer: u32,
    /// Where it leaves its producer and enters its consumer.
    pub src: Pe,
    pub dst: Pe,
    /// The consuming stage.
    pub to: usize,
    /// One of its elements in its producer's output port (each leaves
    /// with the wavelet).
    pub at: u32,
    /// That element's wavelet in the consumer: the index of its stream
    /// among the consumer program's inputs, and of the wavelet in it.
    pub into: (u32, u32),
}

impl Trip {
    /// The links between its exit and entry PEs.
    pub fn hops(&self) -> u32 {
        self.src.x.abs_diff(self.dst.x) + self.src.y.abs_diff(self.dst.y)
    }

    /// The cycle its producer sent it, from each stage's output
    /// elements' send cycles `left` (none where its producer sent none).
    pub fn sent(&self, left: &[Option<Vec<u64>>]) -> Option<u64> {
        left[self.from].as_ref()?.get(self.at as usize).copied()
    }

    /// The cycle it reaches its consumer's edge on a route free of other
    /// traffic, a hop a cycle (`hop` cycles a link): the last link, into
    /// the entry PE, is the consumer's own host stream's.
    pub fn reached(&self, left: &[Option<Vec<u64>>], hop: u64) -> Option<u64> {
        Some(self.sent(left)? + hop * self.hops().saturating_sub(1) as u64)
    }
}

/// A stage's start in a pass and, per input stream, the cycle each of its
/// wavelets entered, from that start
/// ([`wafer_emulator::RunResult::input_times`]).
pub(crate) type Entered = (u64, Cycles);

fn has(bits: &[u64], k: usize) -> bool {
    bits[k / 64] >> (k % 64) & 1 == 1
}

/// Each element's PE in `ends`, in element order (`None` where no run
/// holds it).
fn pes_of(ends: &Ends, len: u32) -> Vec<Option<Pe>> {
    (0..len).map(|k| ends.pe_of(k)).collect()
}

impl Plan {
    pub fn new(c: &Compiled) -> Plan {
        let n = c.stages.len();
        let wafer_of: Vec<usize> = (0..n)
            .map(|i| {
                c.wafers
                    .iter()
                    .position(|w| w.stages.contains(&i))
                    .unwrap_or(0)
            })
            .collect();
        let made_by = crate::stage::made_by(&c.stages);
        let out_pes: Vec<Option<Vec<Option<Pe>>>> = (c.fragments.iter().zip(&c.sites))
            .map(|(f, site)| {
                let port = f.outputs.first()?;
                let ends = Ends::of(port, &f.program.outputs, site.origin)?;
                Some(pes_of(&ends, port.len))
            })
            .collect();
        let value_len = |v: usize| c.graph.insts[v].len as u32;
        let wavelets = out_wavelets(c);
        // On one thread: a stage's trips pushed straight into the step's
        // (the 70B's are 0.7 GB; built per stage on the pool and then
        // moved, the allocator kept both, 0.7 GB more at the peak).
        let mut trips = Vec::new();
        let fed: Vec<Fed> = (0..n)
            .map(|i| {
                let s = &c.stages[i];
                let f = &c.fragments[i];
                let producers = || {
                    let mut from: Vec<usize> = (s.inputs.iter())
                        .flat_map(|(_, srcs)| srcs)
                        .filter_map(|src| match src {
                            Src::Value(v) | Src::ExpertWeights(v) => made_by.get(v).copied(),
                            Src::Pos | Src::One => None,
                        })
                        .chain(s.when.and_then(|p| made_by.get(&p.route).copied()))
                        .collect();
                    from.sort_unstable();
                    from.dedup();
                    Fed::Barrier(from)
                };
                type Streamed = (Vec<(String, Vec<Option<Feed>>)>, Vec<Trip>);
                let streamed = || -> Option<Streamed> {
                    if s.when.is_some() || c.routing.handoffs[i].ingress {
                        return None;
                    }
                    let (mut ports, mut trips) = (Vec::new(), Vec::new());
                    for (port, srcs) in &s.inputs {
                        let tensor = f.inputs.iter().find(|p| &p.name == port)?;
                        let into = Ends::of(tensor, &f.program.inputs, c.sites[i].origin)?;
                        let into = pes_of(&into, tensor.len);
                        // Each element's wavelet in the consumer's streams
                        // (for the trips alone: one it cannot say is fed
                        // all the same, and left out of `links`).
                        let taken = f.element_wavelets(tensor);
                        let index = stream_index(&f.program.inputs);
                        let mut feeds = Vec::with_capacity(tensor.len as usize);
                        for src in srcs {
                            match *src {
                                Src::Pos | Src::One => feeds.push(None),
                                Src::ExpertWeights(_) => return None,
                                Src::Value(v) => {
                                    let j = *made_by.get(&v)?;
                                    if c.stages[j].when.is_some() || wafer_of[j] != wafer_of[i] {
                                        return None;
                                    }
                                    let before: u32 = (c.stages[j].outputs.iter())
                                        .take_while(|&&w| w != v)
                                        .map(|&w| value_len(w))
                                        .sum();
                                    let outs = out_pes[j].as_ref()?;
                                    let ws = wavelets[j].as_ref();
                                    for k in 0..value_len(v) {
                                        let at = before + k;
                                        let (p, q) = (
                                            (*outs.get(at as usize)?)?,
                                            (*into.get(feeds.len())?)?,
                                        );
                                        let hops = p.x.abs_diff(q.x) + p.y.abs_diff(q.y);
                                        let trip = || {
                                            let (stream, k) = *taken.as_ref()?.get(feeds.len())?;
                                            Some(Trip {
                                                from: j,
                                                wavelet: *ws?.get(at as usize)?,
                                                wafer: wafer_of[i] as u32,
                                                src: p,
                                                dst: q,
                                                to: i,
                                                at,
                                                into: (*index.get(stream)?, k),
                                            })
                                        };
                                        trips.extend(trip());
                                        feeds.push(Some(Feed { from: j, at, hops }));
                                    }
                                }
                            }
                        }
                        if feeds.len() != tensor.len as usize {
                            return None;
                        }
                        ports.push((port.clone(), feeds));
                    }
                    Some((ports, trips))
                };
                match streamed() {
                    Some((ports, mine)) => {
                        trips.extend(mine);
                        Fed::Streamed(ports)
                    }
                    None => producers(),
                }
            })
            .collect();
        let shares: Vec<Vec<usize>> = (0..n)
            .map(|i| {
                (0..i)
                    .filter(|&k| wafer_of[k] == wafer_of[i] && c.sites[k].shares_pe(&c.sites[i]))
                    .collect()
            })
            .collect();
        // Per stage, a bit per earlier stage whose end its start waits
        // for: one that shares a PE with it, or feeds it at a barrier, or
        // any stage those depend on (a stage ends only once its inputs
        // are in, so after every stage before it in the step's graph has
        // sent all it sends it), or one such stage of the stages that
        // stream into it. `before`: per stage, every stage it depends on.
        let words = n.div_ceil(64);
        let mut after_end: Vec<Vec<u64>> = Vec::with_capacity(n);
        let mut before: Vec<Vec<u64>> = Vec::with_capacity(n);
        for i in 0..n {
            let mut bits = vec![0u64; words];
            let (ended, streamed): (Vec<usize>, Vec<usize>) = match &fed[i] {
                Fed::Barrier(from) => (from.clone(), Vec::new()),
                Fed::Streamed(ports) => {
                    let from = ports
                        .iter()
                        .flat_map(|(_, f)| f.iter().flatten().map(|f| f.from));
                    (Vec::new(), from.collect())
                }
            };
            let mut deps = vec![0u64; words];
            for &k in shares[i].iter().chain(&ended).chain(&streamed) {
                deps[k / 64] |= 1 << (k % 64);
                for (b, a) in deps.iter_mut().zip(&before[k]) {
                    *b |= a;
                }
            }
            for &k in shares[i].iter().chain(&ended) {
                bits[k / 64] |= 1 << (k % 64);
                for (b, a) in bits.iter_mut().zip(&before[k]) {
                    *b |= a;
                }
            }
            for &k in shares[i].iter().chain(&ended).chain(&streamed) {
                for (b, a) in bits.iter_mut().zip(&after_end[k]) {
                    *b |= a;
                }
            }
            after_end.push(bits);
            before.push(deps);
        }
        // A wavelet two elements of a port share, or that a consumer takes
        // into two ports at one PE, makes its trip once.
        // Trips equal in order are equal in every field: sorted on the
        // pool, they lie as sorted on one thread.
        trips.par_sort_unstable();
        trips.dedup_by_key(|t| (t.from, t.wavelet, t.dst, t.to));
        let parks = Parks::new(c, &trips, |to, from| has(&after_end[to], from));
        let holds = (0..n)
            .into_par_iter()
            .map(|i| match &fed[i] {
                Fed::Streamed(ports) => hold_rules(c, i, ports, &after_end[i], &wavelets),
                Fed::Barrier(_) => Holds::default(),
            })
            .collect();
        Plan {
            fed,
            shares,
            trips,
            holds,
            parks,
            #[cfg(test)]
            after_end,
        }
    }

    /// Stage `i`'s start, its inputs' arrivals (cycles from that start)
    /// and the stage it waited on last ([`Schedule`]), from the stages
    /// before it: `ends` (absolute; `None`: it did not run) and `left`
    /// (per stage, the absolute cycle each output element left its
    /// rectangle).
    pub fn schedule(
        &self,
        c: &Compiled,
        i: usize,
        ends: &[Option<u64>],
        left: &[Option<Vec<u64>>],
    ) -> Schedule {
        let hop = c.options.arch.hop_latency as u64;
        // The latest of (cycle, stage), ties to the later stage.
        let latest = |it: &mut dyn Iterator<Item = (u64, usize)>| it.max();
        let free = latest(&mut self.shares[i].iter().filter_map(|&k| Some((ends[k]?, k))));
        let free_at = free.map_or(0, |f| f.0);
        let ports = match &self.fed[i] {
            Fed::Barrier(from) => {
                let after = latest(&mut from.iter().filter_map(|&j| Some((ends[j]?, j))));
                let start =
                    after.map_or(free_at, |e| free_at.max(e.0 + c.routing.handoffs[i].cycles));
                return Schedule {
                    start,
                    arrivals: BTreeMap::new(),
                    waited_on: after.max(free).map(|w| w.1),
                };
            }
            Fed::Streamed(ports) => ports,
        };
        // When each element is at the consumer's edge: it left its
        // producer, then all but the last of its hops (the consumer's host
        // stream takes that one into its entry router).
        let at = |f: &Feed| -> u64 {
            let t = left[f.from].as_ref().map_or(0, |t| t[f.at as usize]);
            t + hop * f.hops.saturating_sub(1) as u64
        };
        let feeds = || ports.iter().flat_map(|(_, feeds)| feeds.iter().flatten());
        let first = feeds().map(at).min();
        let last = latest(&mut feeds().map(|f| (at(f), f.from)));
        // An element no stage makes (the step's position, a biased GEMV's
        // 1) is the host's, there whenever it is wanted: the stage starts
        // early enough for the host to push it ahead of the first element
        // its producers send, as many cycles early as a port has such
        // elements, so that it delays none of theirs. (Pushed at the
        // start the first sent element set, the position went in just
        // ahead of it and delayed it a cycle; beside its producer, the
        // hold that delay made moved the producer, and with it the
        // start, a cycle a pass without settling: stories260K's RoPE
        // beside its `wq_wk_wv`.) Early by a count, not from the step's
        // start, so that a stage's run does not depend on when its wafer
        // began (a system's wafers run alone share their runs).
        let host = (ports.iter())
            .map(|(_, feeds)| feeds.iter().filter(|f| f.is_none()).count() as u64)
            .max()
            .unwrap_or(0);
        let start = first.map_or(free_at, |t| t.saturating_sub(host).max(free_at));
        let arrivals = (ports.iter())
            .map(|(port, feeds)| {
                let t = (feeds.iter())
                    .map(|f| f.as_ref().map_or(0, |f| at(f).saturating_sub(start)))
                    .collect();
                (port.clone(), t)
            })
            .collect();
        Schedule {
            start,
            arrivals,
            waited_on: last.max(free).map(|w| w.1),
        }
    }
}

/// The most passes an overlapped step takes to settle its holds
/// ([`Plan::holds`]) before it is refused. Each pass only moves holds
/// later, so a step that needs more is one whose stages hold each other
/// back in a cycle of routes the model cannot settle.
pub(crate) const MAX_PASSES: usize = 64;

impl Plan {
    /// When each output element of each stage may leave its rectangle
    /// (absolute cycles; `None` for a stage nothing holds back), from when
    /// its consumers' edges took their inputs in the pass just run
    /// (`entered`: per stage, its start and its runs'
    /// [`wafer_emulator::RunResult::input_times`]).
    ///
    /// A route of `g + 1` hops passes `g` routers, whose buffers hold
    /// `router_buffer_depth` wavelets plus the link's latency each, and a
    /// wavelet popped frees its room the cycle after. So, the route's
    /// wavelets taken in order, the wavelet `k`-th into the consumer's
    /// stream may leave its producer once the one `g·room` before it has
    /// entered and that room has come back a hop a cycle (`g` cycles);
    /// side by side (`g = 0`), once it has entered itself. Exact for a
    /// stream on a route of its own (`emulator/tests/departures.rs`, on
    /// routes of 1 to 9 hops, consumers taking their stream in bursts);
    /// where streams share a route, it takes each as if it had the
    /// route's buffers alone, as the arrivals take the routes as free.
    ///
    /// A consumer that cannot start before its producer has ended (they
    /// share PEs, or it waits on a stage that does, or on a stage that
    /// depends on its producer) holds nothing back, since the producer
    /// could not end while held by a consumer that waits for that end:
    /// its input waits at its edge, received into SRAM past what the
    /// route buffers ([`super::park`] sizes and checks those receives).
    ///
    /// A stage not held in that pass (`None` in `was`) stays free unless
    /// one of its holds is later than the element left (`left`, absolute):
    /// a hold no wavelet waits for changes nothing, and a step nothing
    /// holds back settles in one pass.
    pub fn holds(
        &self,
        c: &Compiled,
        entered: &[Option<Entered>],
        left: &[Option<Vec<u64>>],
        was: &[Option<Vec<u64>>],
    ) -> Vec<Option<Vec<u64>>> {
        let mut held: Vec<Option<Vec<u64>>> = vec![None; c.stages.len()];
        for (i, holds) in self.holds.iter().enumerate() {
            let Some((start, took)) = &entered[i] else {
                continue;
            };
            let took: Vec<Option<&Vec<u64>>> = holds.streams.iter().map(|s| took.get(s)).collect();
            for r in &holds.rules {
                let Some(&t) = took[r.stream as usize].and_then(|t| t.get(r.intake as usize))
                else {
                    continue;
                };
                let len = c.fragments[r.from].outputs[0].len as usize;
                let h = held[r.from].get_or_insert_with(|| vec![0; len]);
                let at = &mut h[r.at as usize];
                *at = (*at).max(start + t + r.between as u64);
            }
        }
        for (j, h) in held.iter_mut().enumerate() {
            let binds = |h: &Vec<u64>| {
                (left[j].as_ref()).is_some_and(|l| h.iter().zip(l).any(|(h, l)| h > l))
            };
            if was[j].is_none() && !h.as_ref().is_some_and(binds) {
                *h = None;
            }
        }
        held
    }
}

/// Stage `i`'s holds on its producers ([`Plan::holds`]), from how it is
/// fed (`ports`), the stages whose end it waits for (`after_end`) and
/// each stage's output elements' wavelets (`out`, [`out_wavelets`]).
///
/// On a route of `g + 1` hops (`g` routers between), the k-th wavelet of
/// a consumer's input stream may leave its producer once the one `g ·
/// room` before it has entered, `room` being a hop's buffer
/// (`router_buffer_depth` plus the link's latency). A consumer that waits
/// for its producer's end (or for the end of a stage that depends on its
/// producer) holds nothing back.
fn hold_rules(
    c: &Compiled,
    i: usize,
    ports: &[(String, Vec<Option<Feed>>)],
    after_end: &[u64],
    out: &[Option<Vec<u64>>],
) -> Holds {
    let arch = &c.options.arch;
    let room = (arch.router_buffer_depth + arch.hop_latency) as u64;
    let f = &c.fragments[i];
    let wavelet = |f: &Feed| -> Option<u64> { out[f.from].as_ref()?.get(f.at as usize).copied() };
    let port_wavelets: Vec<Option<Vec<(&str, u32)>>> = (ports.iter())
        .map(|(port, _)| {
            let tensor = f.inputs.iter().find(|p| &p.name == port)?;
            f.element_wavelets(tensor)
        })
        .collect();
    // Per input stream and producer's output stream, the last of the
    // producer's wavelets in its own order (1 + its index; 0 for none)
    // at each place of the input stream or before it (a stream may carry
    // several ports).
    let mut last: HashMap<(&str, usize, u64), Vec<u64>> = HashMap::new();
    for ((_, feeds), wavelets) in ports.iter().zip(&port_wavelets) {
        for (&(stream, k), feed) in wavelets.iter().flatten().zip(feeds) {
            if let Some((f, w)) = feed.as_ref().and_then(|f| Some((f, wavelet(f)?))) {
                let v = last.entry((stream, f.from, w >> 32)).or_default();
                if v.len() <= k as usize {
                    v.resize(k as usize + 1, 0);
                }
                v[k as usize] = v[k as usize].max((w & 0xffff_ffff) + 1);
            }
        }
    }
    for v in last.values_mut() {
        for p in 1..v.len() {
            v[p] = v[p].max(v[p - 1]);
        }
    }
    let mut holds = Holds::default();
    let mut names: HashMap<&str, u32> = HashMap::new();
    for ((_, feeds), wavelets) in ports.iter().zip(&port_wavelets) {
        let Some(wavelets) = wavelets else {
            continue;
        };
        for (&(stream, k), feed) in wavelets.iter().zip(feeds) {
            let Some(feed) = feed.filter(|f| !has(after_end, f.from)) else {
                continue;
            };
            let g = feed.hops.saturating_sub(1) as u64;
            let Some(j) = (k as u64).checked_sub(g * room) else {
                continue;
            };
            // The room is made by the consumer taking the wavelet `g ·
            // room` before this one in its stream, which it takes after
            // every one before it. Where one of those leaves the producer
            // after this one, from the same output stream (the consumer
            // takes that stream's wavelets in another order than it sends
            // them), that intake waits on this send and cannot make room
            // for it: such a hold would push the send later pass after
            // pass, never settling (a random config of
            // `compiler/tests/decode.rs` did, its RoPE and attention 19
            // cycles a pass). It is left out.
            let waits_on_this = wavelet(&feed).is_some_and(|w| {
                (last.get(&(stream, feed.from, w >> 32)))
                    .and_then(|v| v.get(j as usize))
                    .is_some_and(|&m| m > (w & 0xffff_ffff) + 1)
            });
            if waits_on_this {
                continue;
            }
            let next = names.len() as u32;
            let s = *names.entry(stream).or_insert_with(|| {
                holds.streams.push(stream.to_string());
                next
            });
            holds.rules.push(Hold {
                from: feed.from,
                at: feed.at,
                stream: s,
                intake: j as u32,
                between: g as u32,
            });
        }
    }
    holds
}

/// When a stage of an overlapped step starts ([`Plan::schedule`]).
pub(crate) struct Schedule {
    pub start: u64,
    /// Per input port, per element: its arrival, in cycles from `start`.
    pub arrivals: Cycles,
    /// The stage whose last element arrived latest, or whose end freed
    /// its PEs if that was later: what it waited on last, the step
    /// before it on a critical path.
    pub waited_on: Option<usize>,
}

/// The most wavelets of a host input stream that had arrived and waited
/// to enter at once, given each wavelet's arrival and the cycle it
/// entered (in order, each at or after its arrival): when wavelet `k`
/// enters, every earlier one has, so those waiting are the others that
/// have arrived by then.
pub fn backlog(arrivals: &[u64], entered: &[u64]) -> u64 {
    let mut sorted = arrivals.to_vec();
    sorted.sort_unstable();
    (entered.iter().enumerate())
        .map(|(k, &t)| sorted.partition_point(|&a| a <= t).saturating_sub(k + 1) as u64)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{Plan, backlog, has};

    /// A consumer whose PEs are busy until a stage that depends on its
    /// producer has ended cannot take that producer's stream before the
    /// producer has sent all it sends: holding the producer back would
    /// hold back that stage and so the consumer's own start, one pass
    /// after another (smollm2-135m on three whole `wse3` wafers, mesh, at
    /// 256 positions: the embedding held until `layers.0.residual_ffn_norm`,
    /// on `wo`'s PEs, took the residual, every pass 4,470 cycles later
    /// than the last, never settling). It holds nothing back; RoPE is
    /// still held by the attention it streams into.
    #[test]
    fn a_consumer_waiting_on_a_stage_its_producer_feeds_holds_nothing_back() {
        let c = crate::Config::built_in("smollm2-135m").unwrap();
        let o = crate::place::Options {
            arch: wafer_emulator::Arch::wse3(),
            dtype: wafer_emulator::DType::BF16,
            placement: Some(crate::place::PlacementKind::Mesh),
            max_context: 256,
            reduce: wafer_kernels::reduce::Strategy::Tree { k: 2 },
            gemv: crate::place::GemvChoice::Auto,
            region: crate::region::Region::Whole,
            wafers: crate::system::Wafers::Count(3),
            tiles: None,
        };
        let compiled = crate::compile(&c, None, &o).unwrap();
        let plan = Plan::new(&compiled);
        let at = |name: &str| compiled.stages.iter().position(|s| s.name == name).unwrap();
        let (embed, add, wo) = (
            at("embed"),
            at("layers.0.residual_ffn_norm"),
            at("layers.0.wo"),
        );
        assert!(
            plan.shares[add].contains(&wo),
            "the add waits for `wo`'s end"
        );
        assert!(has(&plan.after_end[add], embed));
        assert!(plan.holds[add].rules.iter().all(|r| r.from != embed));
        let rope = at("layers.0.rope");
        let held_rope = (plan.holds.iter()).any(|h| h.rules.iter().any(|r| r.from == rope));
        assert!(held_rope, "RoPE is held by what it streams into");
    }

    #[test]
    fn a_backlog_counts_what_arrived_and_waits_while_a_wavelet_enters() {
        // Each entering as it arrives: none waits.
        assert_eq!(backlog(&[0, 1, 2, 3], &[0, 1, 2, 3]), 0);
        // Four there at once, entering a cycle apart: three wait as the
        // first enters.
        assert_eq!(backlog(&[0, 0, 0, 0], &[0, 1, 2, 3]), 3);
        // Out of order, the second held up by a full buffer: it waits
        // while the first enters, and the fourth, there at 3, waits
        // behind the third until 101.
        assert_eq!(backlog(&[0, 0, 100, 3], &[0, 10, 100, 101]), 1);
        assert_eq!(backlog(&[], &[]), 0);
    }
}
