//! Building the machine for a prepared program: router buffers, cores with
//! their SRAM and queues, routers with their destinations, host streams,
//! and the engine's mode.

use super::*;

/// The router buffer of every (PE, color, input port) a route uses, each
/// `router_buffer_depth` deep plus its link's latency.
struct RouterBuffers {
    ids: Vec<FifoId>,
    colors: usize,
}

impl RouterBuffers {
    fn new(layout: &Layout, colors: usize) -> RouterBuffers {
        let n = layout.code_of.len();
        RouterBuffers {
            ids: vec![FifoId::NONE; n * colors * Port::COUNT],
            colors,
        }
    }

    /// PE `pe`'s buffers, allocated in `fifos`.
    fn add(&mut self, pe: usize, layout: &Layout, arch: &Arch, fifos: &mut Fifos) {
        for c in 0..self.colors {
            for port in Port::ALL {
                if layout.route(pe, c as u8, port).is_empty() {
                    continue;
                }
                let latency = if port == Port::Ramp {
                    arch.ramp_latency
                } else {
                    arch.hop_latency
                };
                self.ids[(pe * self.colors + c) * Port::COUNT + port.index()] = fifos.add(
                    arch.router_buffer_depth + latency,
                    FifoKind::Router {
                        pe: layout.pe_at(pe),
                        port,
                        color: c as u8,
                    },
                );
            }
        }
    }

    fn at(&self, pe: usize, color: usize, port: Port) -> FifoId {
        self.ids[(pe * self.colors + color) * Port::COUNT + port.index()]
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

/// Every PE's router buffers and core (`None` where no code runs): its
/// SRAM from `memory` (checked against what its code lays out; none in
/// timing-only mode), an input queue per color it receives and its ramp
/// buffer per color it sends. A PE's buffers and queues are allocated
/// together, so the FIFOs of a range of PEs are a range of ids (what a
/// band of PEs takes, `band.rs`). With them, each code's SRAM bytes.
fn cores(
    p: &Program,
    layout: &Layout,
    arch: &Arch,
    timing_only: bool,
    mut memory: Option<Memory>,
    fifos: &mut Fifos,
    rbuf: &mut RouterBuffers,
) -> Result<(Vec<Option<Core>>, Vec<u32>), RunError> {
    let (n, colors) = (layout.code_of.len(), rbuf.colors);
    // Each code's size once, not once per PE it runs on.
    let sram_used: Vec<u32> = p.codes.iter().map(|c| c.sram_bytes()).collect();
    let mut cores = Vec::with_capacity(n);
    for pe in 0..n {
        rbuf.add(pe, layout, arch, fifos);
        let Some(code) = layout.code(p, pe) else {
            cores.push(None);
            continue;
        };
        let at = layout.pe_at(pe);
        let ci = layout.code_of[pe] as usize;
        // Only the bytes the code lays out are kept: every access is
        // checked against its buffer, so nothing reads past them.
        let used = sram_used[ci].next_multiple_of(4) as usize;
        let sram = match memory.as_mut().and_then(|m| m[pe].take()) {
            _ if timing_only => Vec::new(),
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
        let mut queue = vec![FifoId::NONE; colors];
        for c in &layout.code_colors[ci].consumed {
            queue[c.0 as usize] = fifos.add(
                arch.queue_depth + arch.ramp_latency,
                FifoKind::Queue { pe: at, color: c.0 },
            );
        }
        let mut ramp_up = vec![FifoId::NONE; colors];
        for c in &layout.code_colors[ci].produced {
            ramp_up[c.0 as usize] = rbuf.at(pe, c.0 as usize, Port::Ramp);
        }
        cores.push(Some(Core {
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
        }));
    }
    Ok((cores, sram_used))
}

/// Every PE's router: per (color, input port) a route uses, its buffer
/// and where each output port leads (a neighbour's buffer, the core's
/// queue, or a host output off the grid's edge).
fn routers(p: &Program, layout: &Layout, cores: &[Option<Core>], rbuf: &RouterBuffers) -> Routers {
    let colors = rbuf.colors;
    let mut routers = Vec::with_capacity(cores.len());
    let mut entries = Vec::new();
    for (pe, core) in cores.iter().enumerate() {
        let at = layout.pe_at(pe);
        let off = entries.len();
        for c in 0..colors {
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
                    } else {
                        match at.neighbour(o, p.width, p.height) {
                            Some(nb) => Dest::Fifo(rbuf.at(layout.pe_index(nb), c, o.opposite())),
                            None => {
                                let h = p.outputs.iter().position(|h| {
                                    h.pe == at && h.port == o && h.color.0 as usize == c
                                });
                                Dest::Host(
                                    h.expect("check: off-grid routes need a host output") as u32
                                )
                            }
                        }
                    };
                }
                entries.push(RouteEntry {
                    port,
                    outs,
                    fifo: rbuf.at(pe, c, port),
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
    }
    Routers {
        at: PeRows::new(routers),
        entries,
    }
}

/// The host's input streams: the values given (rounded to the stream's
/// dtype) or the program's defaults, packed into wavelets (in timing-only
/// mode NaN marks an unknown value).
fn host_inputs(
    p: &Program,
    layout: &Layout,
    inputs: &Inputs,
    timing_only: bool,
    rbuf: &RouterBuffers,
) -> Result<Vec<HostIn>, RunError> {
    let mut host_in = Vec::new();
    for (stream, s) in p.inputs.iter().enumerate() {
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
        host_in.push(HostIn {
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
            fifo: rbuf.at(layout.pe_index(s.pe), s.color.0 as usize, s.port),
            period: s.period,
        });
    }
    Ok(host_in)
}

impl<'p> Machine<'p> {
    pub(super) fn new(
        prep: &'p Prepared,
        p: &'p Program,
        inputs: &Inputs,
        cfg: &RunConfig,
        memory: Option<Memory>,
    ) -> Result<Machine<'p>, RunError> {
        let (arch, layout) = (prep.arch(), prep.layout());
        let n = layout.code_of.len();
        let memory = match memory {
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
        let mut fifos = Fifos::new();
        let mut rbuf = RouterBuffers::new(layout, colors_used(p, layout));
        let (cores, sram_used) = cores(
            p,
            layout,
            arch,
            cfg.timing_only,
            memory,
            &mut fifos,
            &mut rbuf,
        )?;
        let mut stats = PeRows::new(vec![PeCounters::default(); n]);
        for (pe, core) in cores.iter().enumerate() {
            if let Some(core) = core {
                stats[pe].sram_used = sram_used[core.code];
            }
        }
        let routers = routers(p, layout, &cores, &rbuf);
        for pe in routers.at.pes() {
            for (i, e) in routers.entries(pe).iter().enumerate() {
                fifos.ring_mut(e.fifo).slot = i as u32;
            }
        }
        for (pe, core) in cores.iter().enumerate() {
            for &f in core.iter().flat_map(|c| &c.ramp_up) {
                if !f.is_none() {
                    fifos.ring_mut(f).pop_wake = super::event::core_unit(pe);
                }
            }
        }
        for f in fifos.ids() {
            fifos.ring_mut(f).owner = match fifos.what(f) {
                FifoKind::Router { pe, .. } => super::event::router_unit(layout.pe_index(pe)),
                FifoKind::Queue { pe, .. } => super::event::core_unit(layout.pe_index(pe)),
            };
        }
        let host_in = host_inputs(p, layout, inputs, cfg.timing_only, &rbuf)?;
        let host_out = p
            .outputs
            .iter()
            .enumerate()
            .map(|(stream, s)| HostOut {
                stream,
                dtype: s.dtype,
                len: s.len,
                values: Vec::with_capacity(s.len as usize),
            })
            .collect();
        let mut m = Machine {
            p,
            arch,
            layout,
            now: 0,
            fifos,
            routers,
            cores: PeRows::new(cores),
            host_in,
            host_out,
            stats,
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
                jit: None,
                work: Vec::new(),
                defer: false,
                pool: None,
                min_parallel_work: cfg.min_parallel_work,
                scalar_runs: vec![(0, 0); p.codes.len()],
            },
            bands: band::Links::default(),
        };
        if cfg.engine != crate::engine::Engine::Reference {
            m.wake = Some(m.wake_all());
        }
        if cfg.engine == crate::engine::Engine::Jit && !cfg.timing_only {
            m.compiled.jit = Some(prep.jit()?);
            if cfg.threads > 1 {
                m.compiled.pool = Some(pool(cfg.threads).map_err(|message| RunError::Input {
                    name: "--threads".into(),
                    message,
                })?);
            }
        }
        Ok(m)
    }
}
