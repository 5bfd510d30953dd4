//! Shared helpers for the emulator's integration tests: a seeded random
//! generator of valid Programs.
#![allow(dead_code)]

use wafer_emulator::isa::*;
use wafer_emulator::program::*;
use wafer_emulator::{Color, DType, Pe, PeRect, Port, PortSet};

/// splitmix64: small, seedable, good enough for test generation.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn float(&mut self) -> f32 {
        match self.below(6) {
            0 => 0.0,
            1 => -0.0,
            2 => self.range(-100, 100) as f32,
            3 => f32::from_bits(self.next() as u32 & 0x3fff_ffff), // finite, positive
            _ => (self.next() >> 40) as f32 / 65536.0 - 128.0,
        }
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn isrc(r: &mut Rng) -> IntSrc {
    if r.chance(50) {
        IntSrc::Reg(Reg(r.below(16) as u8))
    } else {
        IntSrc::Imm(r.range(-1000, 1000) as i32)
    }
}

fn gen_code(r: &mut Rng, name: String) -> PeCode {
    let mut buffers: Vec<Buffer> = (0..r.range(1, 4))
        .map(|i| Buffer {
            name: format!("b{i}"),
            dtype: r.pick(&[DType::F32, DType::F16, DType::BF16, DType::I32, DType::I8]),
            len: r.range(1, 24) as u32,
            offset: u32::MAX,
        })
        .collect();
    if r.chance(30) {
        // An explicitly placed buffer, far from the rest.
        buffers[0].offset = 8192 + 4 * r.below(64) as u32;
    }
    let n_tasks = r.range(1, 3) as usize;
    let tasks: Vec<Task> = (0..n_tasks)
        .map(|i| {
            let data = r.chance(30);
            Task {
                name: format!("t{i}"),
                kind: if data {
                    TaskKind::Data(Color(r.below(24) as u8))
                } else {
                    TaskKind::Local
                },
                entry: 0,
                active: !data && r.chance(50),
                blocked: r.chance(20),
            }
        })
        .collect();
    let n_insts = r.range(1, 20) as usize;
    let float_bufs: Vec<usize> = (0..buffers.len())
        .filter(|i| buffers[*i].dtype.is_float())
        .collect();
    let int_bufs: Vec<usize> = (0..buffers.len())
        .filter(|i| buffers[*i].dtype == DType::I32)
        .collect();
    let local_tasks: Vec<usize> = (0..tasks.len())
        .filter(|i| tasks[*i].kind == TaskKind::Local)
        .collect();
    let mut insts = Vec::new();
    let mut targets = Vec::new();
    for _ in 0..n_insts {
        let inst = match r.below(14) {
            0 => Inst::Li {
                rd: Reg(r.below(16) as u8),
                imm: r.range(-5000, 5000) as i32,
            },
            1 => Inst::Lf {
                fd: FReg(r.below(16) as u8),
                imm: r.float(),
            },
            2 => Inst::Alu {
                op: r.pick(&AluOp::ALL),
                rd: Reg(r.below(16) as u8),
                ra: Reg(r.below(16) as u8),
                b: isrc(r),
            },
            3 => Inst::Falu {
                op: r.pick(&FaluOp::ALL),
                fd: FReg(r.below(16) as u8),
                fa: FReg(r.below(16) as u8),
                fb: FReg(r.below(16) as u8),
            },
            4 => Inst::Fun {
                op: r.pick(&FunOp::ALL),
                fd: FReg(r.below(16) as u8),
                fa: FReg(r.below(16) as u8),
            },
            5 => {
                let t = n_insts as u32;
                let target = r.below(t as u64) as u32;
                targets.push(target);
                if r.chance(50) {
                    Inst::Jmp { target }
                } else {
                    Inst::Br {
                        cond: r.pick(&Cond::ALL),
                        ra: Reg(r.below(16) as u8),
                        b: isrc(r),
                        target,
                    }
                }
            }
            6 if !float_bufs.is_empty() => {
                let buf = BufId(r.pick(&float_bufs) as u16);
                if r.chance(50) {
                    Inst::Ldf {
                        fd: FReg(r.below(16) as u8),
                        buf,
                        idx: isrc(r),
                    }
                } else {
                    Inst::Stf {
                        buf,
                        idx: isrc(r),
                        fs: FReg(r.below(16) as u8),
                    }
                }
            }
            7 if !int_bufs.is_empty() => {
                let buf = BufId(r.pick(&int_bufs) as u16);
                if r.chance(50) {
                    Inst::Ld {
                        rd: Reg(r.below(16) as u8),
                        buf,
                        idx: isrc(r),
                    }
                } else {
                    Inst::St {
                        buf,
                        idx: isrc(r),
                        rs: Reg(r.below(16) as u8),
                    }
                }
            }
            8 => Inst::ItoF {
                fd: FReg(r.below(16) as u8),
                rs: Reg(r.below(16) as u8),
            },
            9 if r.chance(30) => Inst::Fcmp {
                op: r.pick(&FcmpOp::ALL),
                rd: Reg(r.below(16) as u8),
                fa: FReg(r.below(16) as u8),
                fb: FReg(r.below(16) as u8),
            },
            9 => Inst::FtoI {
                rd: Reg(r.below(16) as u8),
                fs: FReg(r.below(16) as u8),
            },
            10 if !local_tasks.is_empty() => Inst::Activate(TaskId(r.pick(&local_tasks) as u8)),
            11 => {
                let t = TaskId(r.below(tasks.len() as u64) as u8);
                if r.chance(50) {
                    Inst::Block(t)
                } else {
                    Inst::Unblock(t)
                }
            }
            12 | 13 if !float_bufs.is_empty() => {
                Inst::Vec(gen_vec(r, &buffers, &float_bufs, &local_tasks))
            }
            _ => Inst::End,
        };
        insts.push(inst);
    }
    insts.push(Inst::End);
    let mut labels: Vec<(u32, String)> = Vec::new();
    for t in tasks.iter() {
        labels.push((r.below(insts.len() as u64) as u32, t.name.clone()));
    }
    for t in targets {
        if !labels.iter().any(|(i, _)| *i == t) {
            labels.push((t, format!("L{t}")));
        }
    }
    labels.sort_by_key(|(i, _)| *i);
    let mut tasks = tasks;
    for t in tasks.iter_mut() {
        t.entry = labels.iter().find(|(_, n)| *n == t.name).unwrap().0;
    }
    let mut code = PeCode {
        name,
        buffers,
        tasks,
        insts,
        labels,
    };
    code.assign_offsets();
    code
}

fn gen_vec(
    r: &mut Rng,
    buffers: &[Buffer],
    float_bufs: &[usize],
    local_tasks: &[usize],
) -> VecInst {
    let op = r.pick(&VecOp::ALL);
    // Sources may also read i8 codes; nothing but a data image writes them.
    let read_bufs: Vec<usize> = (0..buffers.len())
        .filter(|i| float_bufs.contains(i) || buffers[*i].dtype == DType::I8)
        .collect();
    let mem = |r: &mut Rng, from: &[usize]| {
        let b = r.pick(from);
        let blen = buffers[b].len as i32;
        if r.chance(30) {
            // Register-driven: checked at run time, not by the verifier.
            return Operand::Mem(MemRef {
                buf: BufId(b as u16),
                off: IntSrc::Reg(Reg(r.below(16) as u8)),
                len: isrc(r),
                stride: isrc(r),
            });
        }
        let len = r.range(1, blen as i64) as i32;
        let off = r.range(0, (blen - len) as i64) as i32;
        let stride = if r.chance(80) || len == 1 {
            1
        } else {
            1 + r.below(((blen - 1 - off) / (len - 1)).max(1) as u64) as i32
        };
        let stride = if off + (len - 1) * stride >= blen {
            1
        } else {
            stride
        };
        Operand::Mem(MemRef {
            buf: BufId(b as u16),
            off: IntSrc::Imm(off),
            len: IntSrc::Imm(len),
            stride: IntSrc::Imm(stride),
        })
    };
    let dst = if op.is_reduction() {
        Operand::FReg(FReg(r.below(16) as u8))
    } else if r.chance(70) {
        mem(r, float_bufs)
    } else {
        Operand::FabOut {
            color: Color(r.below(24) as u8),
            len: r.chance(50).then(|| IntSrc::Imm(r.range(1, 64) as i32)),
        }
    };
    let mut used_rx = Vec::new();
    let mut srcs: Vec<Operand> = (0..op.arity())
        .map(|_| match r.below(4) {
            0 => mem(r, &read_bufs),
            1 => {
                let mut c = r.below(24) as u8;
                while used_rx.contains(&c) {
                    c = (c + 1) % 24;
                }
                used_rx.push(c);
                Operand::FabIn {
                    color: Color(c),
                    len: r.chance(30).then(|| isrc(r)),
                }
            }
            2 => Operand::FReg(FReg(r.below(16) as u8)),
            _ => Operand::Imm(r.float()),
        })
        .collect();
    if !matches!(dst, Operand::Mem(_) | Operand::FabOut { len: Some(_), .. })
        && !srcs
            .iter()
            .any(|s| matches!(s, Operand::Mem(_) | Operand::FabIn { len: Some(_), .. }))
    {
        srcs[0] = mem(r, &read_bufs);
    }
    let mode = if r.chance(50) {
        ExecMode::Sync
    } else {
        ExecMode::Async {
            thread: r.below(8) as u8,
            on_done: (!local_tasks.is_empty() && r.chance(50))
                .then(|| TaskId(r.pick(local_tasks) as u8)),
        }
    };
    VecInst {
        op,
        dtype: r.pick(&[DType::F32, DType::F16, DType::BF16]),
        dst,
        srcs,
        mode,
    }
}

fn gen_init(r: &mut Rng, len: u32) -> DataInit {
    match r.below(6) {
        0 => DataInit::Zero,
        1 => DataInit::Fill(r.float()),
        2 => DataInit::Iota {
            start: r.float(),
            step: r.float(),
        },
        3 => DataInit::Random { seed: r.next() },
        4 => DataInit::RandomInt {
            seed: r.next(),
            max: r.below(200) as u32,
        },
        _ => DataInit::Values((0..len).map(|_| r.float()).collect()),
    }
}

/// A structurally valid Program (it passes the verifier), not necessarily
/// one that runs: for format round trips.
pub fn random_program(seed: u64) -> Program {
    let r = &mut Rng(seed);
    let (width, height) = (r.range(1, 6) as u32, r.range(1, 6) as u32);
    let n_codes = r.range(1, 3.min(height as i64)) as usize;
    let codes: Vec<PeCode> = (0..n_codes).map(|i| gen_code(r, format!("k{i}"))).collect();
    let mut placements = Vec::new();
    let mut data = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        if r.chance(80) {
            let w = r.range(1, width as i64) as u32;
            let pes = PeRect::new(0, i as u32, w, 1);
            placements.push(Placement {
                code: CodeId(i as u32),
                pes,
            });
            if r.chance(70) {
                let b = &code.buffers[r.below(code.buffers.len() as u64) as usize];
                data.push(DataImage {
                    pes,
                    buffer: b.name.clone(),
                    init: gen_init(r, b.len),
                });
            }
        }
    }
    let routes = (0..r.range(0, 6))
        .map(|_| {
            let (x, y) = (r.below(width as u64) as u32, r.below(height as u64) as u32);
            let mut outputs = PortSet::EMPTY;
            for _ in 0..r.range(1, 3) {
                outputs.insert(r.pick(&Port::ALL));
            }
            let step = r.range(1, 2) as u32;
            let w = 1 + r.below(((width - x - 1) / step + 1) as u64) as u32;
            RouteRule {
                pes: PeRect {
                    x,
                    y,
                    w,
                    h: 1,
                    sx: step,
                    sy: 1,
                },
                color: Color(r.below(24) as u8),
                input: r.pick(&Port::ALL),
                outputs,
            }
        })
        .collect();
    let streams = |prefix: &str, r: &mut Rng, input: bool| -> Vec<HostStream> {
        (0..r.range(0, 2))
            .map(|i| {
                let y = r.below(height as u64) as u32;
                let dtype = r.pick(&[DType::F32, DType::F16, DType::BF16]);
                let len = r.range(1, 12) as u32;
                HostStream {
                    name: format!("{prefix}{i}"),
                    dtype,
                    len,
                    pe: Pe::new(0, y),
                    port: Port::W,
                    color: Color(r.below(24) as u8),
                    period: r.range(1, 3) as u32,
                    init: if input {
                        gen_init(r, len)
                    } else {
                        DataInit::Zero
                    },
                }
            })
            .collect()
    };
    let inputs = streams("in", r, true);
    let outputs = streams("out", r, false);
    Program {
        width,
        height,
        codes,
        placements,
        routes,
        data,
        inputs,
        outputs,
    }
}
