//! Building the machine for a prepared program: router buffers, cores with
//! their SRAM and queues, routers with their destinations, host streams,
//! and the engine's mode.
//!
//! A machine is built whole or as the bands it is stepped in (`band.rs`),
//! each band on a worker of the pool: a first pass numbers every PE's
//! FIFOs ([`FifoPlan`]), so a band builds its PEs alone and still knows
//! the id of every buffer its routers push into, its own or a
//! neighbour band's. The ids, and so the machine, do not depend on the
//! cuts or the thread count.

use super::band::{self, Link};
use super::event::{core_unit, router_unit};
use super::*;
use rayon::prelude::*;
use std::ops::Range;

/// Every PE's FIFOs, numbered before any is built: a PE's router buffers
/// (per color and input port a route uses) and then its core's input
/// queues, PE after PE, so the FIFOs of a range of PEs are a range of
/// ids.
pub(super) struct FifoPlan {
    colors: usize,
    /// Per PE, the id of its first FIFO; one more at the end, the count.
    first: Vec<u32>,
    /// Per (PE, color, input port), its router buffer, or none where no
    /// route uses it.
    buffers: Vec<FifoId>,
}

impl FifoPlan {
    /// The plan of `p`'s FIFOs, counted and numbered on this thread, or
    /// on the current pool where `parallel`.
    pub(super) fn new(p: &Program, layout: &Layout, parallel: bool) -> FifoPlan {
        let colors = colors_used(p, layout);
        let n = layout.code_of.len();
        let routes = |pe: usize| {
            (0..colors)
                .flat_map(|c| Port::ALL.map(|port| (c, port)))
                .filter(|&(c, port)| !layout.route(pe, c as u8, port).is_empty())
                .count() as u32
        };
        let queues = |pe: usize| match layout.code_of[pe] {
            NONE => 0,
            ci => layout.code_colors[ci as usize].consumed.len() as u32,
        };
        let count = |pe: usize| routes(pe) + queues(pe);
        let counts: Vec<u32> = match parallel {
            true => (0..n).into_par_iter().map(count).collect(),
            false => (0..n).map(count).collect(),
        };
        let mut first = Vec::with_capacity(n + 1);
        let mut next = 0u32;
        for k in counts {
            first.push(next);
            next += k;
        }
        first.push(next);
        let per_pe = colors * Port::COUNT;
        let mut buffers = vec![FifoId::NONE; n * per_pe];
        let number = |(pe, ids): (usize, &mut [FifoId])| {
            let mut next = first[pe];
            for c in 0..colors {
                for port in Port::ALL {
                    if !layout.route(pe, c as u8, port).is_empty() {
                        ids[c * Port::COUNT + port.index()] = FifoId::from_index(next);
                        next += 1;
                    }
                }
            }
        };
        match per_pe {
            0 => {}
            _ if parallel => buffers.par_chunks_mut(per_pe).enumerate().for_each(number),
            _ => buffers.chunks_mut(per_pe).enumerate().for_each(number),
        }
        FifoPlan {
            colors,
            first,
            buffers,
        }
    }

    /// PE `pe`'s router buffer for `color` arriving on `port`.
    fn at(&self, pe: usize, color: usize, port: Port) -> FifoId {
        self.buffers[(pe * self.colors + color) * Port::COUNT + port.index()]
    }

    /// How many route entries router `pe` has (a buffer each).
    pub(super) fn routes(&self, pe: usize) -> usize {
        let per_pe = self.colors * Port::COUNT;
        (self.buffers[pe * per_pe..(pe + 1) * per_pe].iter())
            .filter(|f| !f.is_none())
            .count()
    }

    /// The ids of the FIFOs of PEs `pes`.
    fn ids(&self, pes: &Range<usize>) -> Range<u32> {
        self.first[pes.start]..self.first[pes.end]
    }
}

/// The colors `p` uses: one past the highest a route or a code names.
/// The machine's tables are per color, and a wafer's 24 colors against a
/// kernel's handful made building them (a lookup per PE, color and port)
/// most of building a large machine.
fn colors_used(p: &Program, layout: &Layout) -> usize {
    let routes = p.routes.iter().map(|r| r.color.0);
    let codes = (layout.code_colors.iter()).flat_map(|cc| cc.consumed.iter().chain(&cc.produced));
    routes
        .chain(codes.map(|c| c.0))
        .map(|c| c as usize + 1)
        .max()
        .unwrap_or(0)
        .min(layout.colors as usize)
}

/// What every band's builder reads.
struct Shared<'a> {
    p: &'a Program,
    layout: &'a Layout,
    arch: &'a Arch,
    plan: &'a FifoPlan,
    timing_only: bool,
    /// Each code's SRAM bytes.
    sram_used: Vec<u32>,
    /// Where the bands start (the first PE of each but the first).
    cuts: &'a [usize],
    /// Per host output, its number among its band's.
    host_local: Vec<u32>,
}

/// The state of one band of PEs (the whole grid for a machine stepped
/// whole), as [`Shared::band`] builds it.
struct Part {
    fifos: Fifos,
    cores: Vec<Option<Core>>,
    routers: Routers,
    stats: Vec<PeCounters>,
    /// Its links into the buffers of other bands.
    links: Vec<Link>,
}

impl Shared<'_> {
    fn band_of(&self, pe: usize) -> usize {
        self.cuts.partition_point(|&c| c <= pe)
    }

    /// PEs `pes` built: each PE's router buffers, then its core (SRAM
    /// from `memory`, indexed from `pes.start`, checked against what its
    /// code lays out; none in timing-only mode) with an input queue per
    /// color it receives, then its router's entries and where each output
    /// port leads: a buffer of this band, the core's queue, a buffer of
    /// another band (a link) or a host output off the grid's edge.
    fn band(
        &self,
        pes: Range<usize>,
        mut memory: Option<&mut [Option<Vec<u8>>]>,
    ) -> Result<Part, RunError> {
        let (p, layout, arch, plan) = (self.p, self.layout, self.arch, self.plan);
        let ids = plan.ids(&pes);
        let mut fifos = Fifos::starting_at(ids.start, (ids.end - ids.start) as usize);
        let mut cores = Vec::with_capacity(pes.len());
        let mut routers = Vec::with_capacity(pes.len());
        let mut stats = vec![PeCounters::default(); pes.len()];
        let mut entries = Vec::new();
        let mut links: Vec<Link> = Vec::new();
        for pe in pes.clone() {
            let at = layout.pe_at(pe);
            for c in 0..plan.colors {
                for port in Port::ALL {
                    let f = plan.at(pe, c, port);
                    if f.is_none() {
                        continue;
                    }
                    let latency = if port == Port::Ramp {
                        arch.ramp_latency
                    } else {
                        arch.hop_latency
                    };
                    let what = FifoKind::Router {
                        pe: at,
                        port,
                        color: c as u8,
                    };
                    let added = fifos.add(arch.router_buffer_depth + latency, what);
                    debug_assert_eq!(added, f, "the plan numbers FIFOs as they are added");
                    fifos.ring_mut(f).owner = router_unit(pe);
                }
            }
            let image = memory.as_mut().and_then(|m| m[pe - pes.start].take());
            let core = self.core(pe, image, &mut fifos)?;
            if let Some(core) = &core {
                stats[pe - pes.start].sram_used = self.sram_used[core.code];
            }
            let off = entries.len();
            let pe_links = links.len();
            for c in 0..plan.colors {
                for port in Port::ALL {
                    let outs = layout.route(pe, c as u8, port);
                    if outs.is_empty() {
                        continue;
                    }
                    let mut dests = [Dest::None; Port::COUNT];
                    for o in outs.iter() {
                        dests[o.index()] = if o == Port::Ramp {
                            let core = core
                                .as_ref()
                                .expect("check: ramp delivery needs a receiving core");
                            Dest::Fifo(core.queue[c])
                        } else if let Some(nb) = at.neighbour(o, p.width, p.height) {
                            let nb = layout.pe_index(nb);
                            let f = plan.at(nb, c, o.opposite());
                            if pes.contains(&nb) {
                                Dest::Fifo(f)
                            } else {
                                // A buffer fed by several of this router's
                                // entries (one output port) has one link.
                                let i = match links[pe_links..].iter().position(|l| l.fifo == f) {
                                    Some(i) => pe_links + i,
                                    None => {
                                        links.push(Link {
                                            fifo: f,
                                            band: self.band_of(nb) as u32,
                                            room: arch.router_buffer_depth + arch.hop_latency,
                                        });
                                        links.len() - 1
                                    }
                                };
                                Dest::Remote(i as u32)
                            }
                        } else {
                            let h = p
                                .outputs
                                .iter()
                                .position(|h| h.pe == at && h.port == o && h.color.0 as usize == c);
                            let h = h.expect("check: off-grid routes need a host output");
                            Dest::Host(self.host_local[h])
                        };
                    }
                    let fifo = plan.at(pe, c, port);
                    fifos.ring_mut(fifo).slot = (entries.len() - off) as u32;
                    entries.push(RouteEntry {
                        port,
                        outs,
                        moved: 0,
                        fifo,
                        dests,
                    });
                }
            }
            let n = entries.len() - off;
            let full = if n <= Router::MASKED { 0 } else { u128::MAX };
            routers.push(Router {
                off: off as u32,
                n: n as u32,
                rr: 0,
                full,
            });
            cores.push(core);
        }
        debug_assert_eq!(
            fifos
                .ids()
                .last()
                .map_or(ids.start, |f| f.index() as u32 + 1),
            ids.end
        );
        Ok(Part {
            fifos,
            cores,
            routers: Routers {
                at: PeRows {
                    lo: pes.start,
                    v: routers,
                },
                entries,
            },
            stats,
            links,
        })
    }

    /// PE `pe`'s core (`None` where no code runs): its SRAM `image`, an
    /// input queue per color it receives (added to `fifos`) and its
    /// router's ramp buffer per color it sends.
    fn core(
        &self,
        pe: usize,
        image: Option<Vec<u8>>,
        fifos: &mut Fifos,
    ) -> Result<Option<Core>, RunError> {
        let (p, layout, arch) = (self.p, self.layout, self.arch);
        let Some(code) = layout.code(p, pe) else {
            return Ok(None);
        };
        let at = layout.pe_at(pe);
        let ci = layout.code_of[pe] as usize;
        // Only the bytes the code lays out are kept: every access is
        // checked against its buffer, so nothing reads past them.
        let used = self.sram_used[ci].next_multiple_of(4) as usize;
        let sram = match image {
            _ if self.timing_only => Vec::new(),
            Some(saved) if saved.len() == used => saved,
            Some(saved) => {
                return Err(RunError::Memory(format!(
                    "the saved SRAM of {at} holds {} bytes, its code `{}` lays out {used}",
                    saved.len(),
                    code.name
                )));
            }
            None => {
                return Err(RunError::Memory(format!(
                    "the saved SRAM has nothing for {at}, which runs code `{}`",
                    code.name
                )));
            }
        };
        let colors = self.plan.colors;
        let mut queue = vec![FifoId::NONE; colors];
        for c in &layout.code_colors[ci].consumed {
            let f = fifos.add(
                arch.queue_depth + arch.ramp_latency,
                FifoKind::Queue { pe: at, color: c.0 },
            );
            fifos.ring_mut(f).owner = core_unit(pe);
            queue[c.0 as usize] = f;
        }
        let mut ramp_up = vec![FifoId::NONE; colors];
        for c in &layout.code_colors[ci].produced {
            let f = self.plan.at(pe, c.0 as usize, Port::Ramp);
            // Its producer may be stalled on it being full. The verifier
            // refuses a send on a color the router takes no wavelet from
            // the ramp on, so the buffer exists; a build that slips past
            // it must fail here, not write through FifoId::NONE.
            if f == FifoId::NONE {
                return Err(RunError::Input {
                    name: "program".into(),
                    message: format!(
                        "{at}: code `{}` sends on {c} but the router has no route for {c} from the ramp (R)",
                        code.name
                    ),
                });
            }
            fifos.ring_mut(f).pop_wake = core_unit(pe);
            ramp_up[c.0 as usize] = f;
        }
        Ok(Some(Core {
            code: ci,
            sram,
            known: Known::default(),
            rk: u16::MAX,
            fk: u16::MAX,
            r: [0; 16],
            f: [0.0; 16],
            active: code.tasks.iter().map(|t| t.active).collect(),
            blocked: code.tasks.iter().map(|t| t.blocked).collect(),
            main: Main::Idle,
            resume: 0,
            stalled: (0, 0),
            task_started: 0,
            ops: Ops::new(arch.microthreads as usize + 1),
            rr: 0,
            queue,
            ramp_up,
        }))
    }
}

/// Per stream of `streams`, the cycles `given` names it with (empty where
/// it names none): one per wavelet, for streams of the program only.
/// `what` names the cycles, `verb` what the program does with a stream
/// (for the errors).
fn cycles_per_stream(
    given: Option<&crate::engine::Cycles>,
    streams: &[wafer_format::program::HostStream],
    what: &str,
    verb: &str,
) -> Result<Vec<Vec<u64>>, RunError> {
    if let Some(name) = (given.into_iter())
        .flat_map(|g| g.keys())
        .find(|n| !streams.iter().any(|s| &s.name == *n))
    {
        return Err(RunError::Input {
            name: name.clone(),
            message: format!("{what} cycles given for a stream the program does not {verb}"),
        });
    }
    (streams.iter())
        .map(|s| match given.and_then(|g| g.get(&s.name)) {
            Some(c) if c.len() != s.wavelets() as usize => Err(RunError::Input {
                name: s.name.clone(),
                message: format!(
                    "{} {what} cycles given for a stream of {} wavelets: give one per wavelet",
                    c.len(),
                    s.wavelets()
                ),
            }),
            Some(c) => Ok(c.clone()),
            None => Ok(Vec::new()),
        })
        .collect()
}

/// The host output streams, each with its departures ([`RunConfig::departures`]):
/// one per wavelet, for streams the program sends.
fn host_outputs(
    p: &Program,
    cfg_departures: Option<&crate::engine::Departures>,
) -> Result<Vec<HostOut>, RunError> {
    let departures = cycles_per_stream(cfg_departures, &p.outputs, "departure", "send")?;
    let mut host_out = Vec::with_capacity(p.outputs.len());
    for ((stream, s), departures) in p.outputs.iter().enumerate().zip(departures) {
        host_out.push(HostOut {
            stream,
            dtype: s.dtype,
            len: s.len,
            values: Vec::with_capacity(s.len as usize),
            times: Vec::with_capacity(s.wavelets() as usize),
            departures,
        });
    }
    Ok(host_out)
}

/// The host's input streams: the values given (rounded to the stream's
/// dtype) or the program's defaults, packed into wavelets (in timing-only
/// mode NaN marks an unknown value).
fn host_inputs(
    p: &Program,
    layout: &Layout,
    inputs: &Inputs,
    timing_only: bool,
    plan: &FifoPlan,
    cfg_arrivals: Option<&crate::engine::Arrivals>,
) -> Result<Vec<HostIn>, RunError> {
    let arrivals = cycles_per_stream(cfg_arrivals, &p.inputs, "arrival", "take")?;
    let mut host_in = Vec::new();
    for ((stream, s), arrivals) in p.inputs.iter().enumerate().zip(arrivals) {
        let values = match inputs.get(&s.name) {
            Some(v) if v.len() != s.len as usize => {
                return Err(RunError::Input {
                    name: s.name.clone(),
                    message: format!("expects {} values, got {}", s.len, v.len()),
                });
            }
            Some(v) => v.iter().map(|x| s.dtype.round(*x)).collect(),
            None => s.init.values(s.pe, s.len, s.dtype),
        };
        let mut h = HostIn {
            stream,
            wavelets: if timing_only {
                pack_bits(
                    values.iter().map(|x| {
                        if x.is_nan() {
                            unknown_bits(s.dtype)
                        } else {
                            s.dtype.encode(*x)
                        }
                    }),
                    s.dtype,
                )
            } else {
                pack_wavelets(&values, s.dtype)
            },
            next: 0,
            next_time: 0,
            fifo: plan.at(layout.pe_index(s.pe), s.color.0 as usize, s.port),
            period: s.period,
            arrivals,
            times: Vec::new(),
        };
        h.times.reserve_exact(h.wavelets.len());
        h.next_time = h.due(0);
        host_in.push(h);
    }
    Ok(host_in)
}

/// How a machine is built: whole, or as bands.
pub(super) enum Split<'a> {
    /// One machine; the pool of a run on several threads serves its
    /// deferred JIT work.
    Whole(Option<&'a std::sync::Arc<rayon::ThreadPool>>),
    /// Bands starting at PE 0 and at each of these PEs (ascending).
    Bands(&'a [usize]),
}

impl<'p> Machine<'p> {
    /// The machine for `p`, as `split` says: each band with the host
    /// streams and outputs of its PEs and its links into the others'
    /// buffers. Bands are built side by side on the current pool, a whole
    /// machine on this thread. Of several bands' errors, the lowest
    /// band's is returned: the first a whole machine's build, in PE
    /// order, would have met.
    pub(super) fn build(
        prep: &'p Prepared,
        p: &'p Program,
        inputs: &Inputs,
        cfg: &RunConfig,
        memory: Option<Memory>,
        plan: &FifoPlan,
        split: Split<'_>,
    ) -> Result<Vec<Machine<'p>>, RunError> {
        let (cuts, pool) = match split {
            Split::Whole(pool) => (&[][..], pool),
            Split::Bands(cuts) => (cuts, None),
        };
        let (arch, layout) = (prep.arch(), prep.layout());
        let n = layout.code_of.len();
        let mut memory = match memory {
            Some(m) if m.len() != n => {
                return Err(RunError::Memory(format!(
                    "the saved SRAM holds {} PEs, the program {}x{} has {n}",
                    m.len(),
                    p.width,
                    p.height
                )));
            }
            Some(m) => Some(m),
            None if cfg.timing_only => None,
            None => Some(sram_images(p, layout, cfg.threads)),
        };
        let starts: Vec<usize> = std::iter::once(0).chain(cuts.iter().copied()).collect();
        let ranges: Vec<Range<usize>> = (starts.iter().enumerate())
            .map(|(b, &lo)| lo..starts.get(b + 1).copied().unwrap_or(n))
            .collect();
        let mut shared = Shared {
            p,
            layout,
            arch,
            plan,
            timing_only: cfg.timing_only,
            // Each code's size once, not once per PE it runs on.
            sram_used: p.codes.iter().map(|c| c.sram_bytes()).collect(),
            cuts,
            host_local: Vec::new(),
        };
        // A host output is its band's: numbered among that band's.
        let mut outputs = vec![0u32; ranges.len()];
        shared.host_local = (p.outputs.iter())
            .map(|o| {
                let b = shared.band_of(layout.pe_index(o.pe));
                outputs[b] += 1;
                outputs[b] - 1
            })
            .collect();
        // Each band's slice of the saved SRAM.
        let mut images: Vec<Option<&mut [Option<Vec<u8>>]>> = Vec::with_capacity(ranges.len());
        let mut rest = memory.as_deref_mut();
        for r in &ranges {
            let (mine, after) = match rest {
                Some(m) => {
                    let (a, b) = m.split_at_mut(r.len());
                    (Some(a), Some(b))
                }
                None => (None, None),
            };
            images.push(mine);
            rest = after;
        }
        let whole = ranges.len() == 1;
        let parts: Vec<Result<Part, RunError>> = match whole {
            true => vec![shared.band(0..n, images.pop().flatten())],
            false => (ranges.par_iter().zip(images))
                .with_max_len(1)
                .map(|(pes, mem)| shared.band(pes.clone(), mem))
                .collect(),
        };
        let parts = parts.into_iter().collect::<Result<Vec<Part>, RunError>>()?;
        drop(memory);
        let compiles = cfg.engine == crate::engine::Engine::Jit && !cfg.timing_only;
        let jit = if compiles { Some(prep.jit()?) } else { None };
        // A whole machine shares its JIT's deferred work out over the
        // threads; a band runs its own on the thread stepping it.
        let pool = match compiles && whole {
            true => pool.cloned(),
            false => None,
        };
        let mut host_in: Vec<Vec<HostIn>> = (0..ranges.len()).map(|_| Vec::new()).collect();
        for h in host_inputs(
            p,
            layout,
            inputs,
            cfg.timing_only,
            plan,
            cfg.arrivals.as_deref(),
        )? {
            host_in[shared.band_of(layout.pe_index(p.inputs[h.stream].pe))].push(h);
        }
        let mut host_out: Vec<Vec<HostOut>> = (0..ranges.len()).map(|_| Vec::new()).collect();
        for h in host_outputs(p, cfg.departures.as_deref())? {
            host_out[shared.band_of(layout.pe_index(p.outputs[h.stream].pe))].push(h);
        }
        let mut links = Vec::with_capacity(ranges.len());
        let mut machines: Vec<Machine<'p>> = (parts.into_iter().zip(host_in).zip(host_out))
            .enumerate()
            .map(|(b, ((part, host_in), host_out))| {
                links.push(part.links);
                let lo = part.routers.at.lo;
                Machine {
                    p,
                    arch,
                    layout,
                    now: 0,
                    fifos: part.fifos,
                    routers: part.routers,
                    cores: PeRows { lo, v: part.cores },
                    host_in,
                    host_out,
                    stats: PeRows { lo, v: part.stats },
                    log: SpanLog {
                        on: cfg.trace,
                        max: cfg.max_trace_spans,
                        spans: Vec::new(),
                        dropped: 0,
                    },
                    activity: false,
                    horizon: 0,
                    wake: None,
                    timing: cfg.timing_only,
                    max_cycles: cfg.max_cycles,
                    engine: cfg.engine,
                    compiled: CompiledWork {
                        jit: jit.clone(),
                        work: Vec::new(),
                        defer: false,
                        pool: pool.clone(),
                        min_parallel_work: cfg.min_parallel_work,
                        scalar_runs: match whole {
                            true => vec![(0, 0); p.codes.len()],
                            false => Vec::new(),
                        },
                    },
                    bands: band::Links::new(b),
                }
            })
            .collect();
        if cfg.engine != crate::engine::Engine::Reference {
            let wake = |m: &mut Machine<'p>| m.wake = Some(m.wake_all());
            match whole {
                true => machines.iter_mut().for_each(wake),
                false => machines.par_iter_mut().with_max_len(1).for_each(wake),
            }
        }
        band::connect(&mut machines, links);
        Ok(machines)
    }
}
