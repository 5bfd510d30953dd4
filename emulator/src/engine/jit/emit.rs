//! Emitting Cranelift IR for our instructions: the helper calls for what
//! compiled code does not inline, and [`Emit`], shared by both kinds of
//! compiled function.

use super::*;

// The functions compiled code calls for what it does not inline: the
// interpreter's own arithmetic, so results agree bit for bit.
extern "C" fn h_f16_decode(bits: u32) -> f32 {
    DType::F16.decode(bits)
}
extern "C" fn h_f16_encode(x: f32) -> u32 {
    DType::F16.encode(x)
}
extern "C" fn h_f16_round(x: f32) -> f32 {
    DType::F16.round(x)
}
extern "C" fn h_scale_decode(bits: u32) -> f32 {
    DType::E8m0.decode(bits)
}
extern "C" fn h_scale_encode(x: f32) -> u32 {
    DType::E8m0.encode(x)
}
extern "C" fn h_fp4_decode(bits: u32) -> f32 {
    DType::Mxfp4.decode(bits)
}
extern "C" fn h_fp4_encode(x: f32) -> u32 {
    DType::Mxfp4.encode(x)
}
extern "C" fn h_max(a: f32, b: f32) -> f32 {
    a.max(b)
}
extern "C" fn h_min(a: f32, b: f32) -> f32 {
    a.min(b)
}
extern "C" fn h_exp(a: f32) -> f32 {
    a.exp()
}
extern "C" fn h_sin(a: f32) -> f32 {
    a.sin()
}
extern "C" fn h_cos(a: f32) -> f32 {
    a.cos()
}

/// Signatures of the helper calls, by argument and result types.
pub(super) struct Helpers {
    f_f: Signature,
    ff_f: Signature,
    i_f: Signature,
    f_i: Signature,
}

impl Helpers {
    pub(super) fn new(m: &JITModule) -> Helpers {
        let sig = |params: &[Type], ret: Type| {
            let mut s = m.make_signature();
            s.params.extend(params.iter().map(|t| AbiParam::new(*t)));
            s.returns.push(AbiParam::new(ret));
            s
        };
        Helpers {
            f_f: sig(&[types::F32], types::F32),
            ff_f: sig(&[types::F32, types::F32], types::F32),
            i_f: sig(&[types::I32], types::F32),
            f_i: sig(&[types::F32], types::I32),
        }
    }
}

/// An instruction emitter: a function builder plus the helpers' signatures.
pub(super) struct Emit<'a, 'f> {
    pub(super) b: FunctionBuilder<'f>,
    pub(super) h: &'a Helpers,
    pub(super) ptr: Type,
}

pub(super) const FLAGS: MemFlagsData = MemFlagsData::trusted();

impl Emit<'_, '_> {
    pub(super) fn call(&mut self, sig: &Signature, f: usize, args: &[Value]) -> Value {
        let sr = self.b.import_signature(sig.clone());
        let callee = self.b.ins().iconst(self.ptr, f as i64);
        let c = self.b.ins().call_indirect(sr, callee, args);
        self.b.inst_results(c)[0]
    }

    /// A bf16 NaN test on f32 bits: `bits & 0x7fff_ffff > 0x7f80_0000`.
    pub(super) fn is_nan_bits(&mut self, bits: Value) -> Value {
        let abs = self.b.ins().band_imm_u(bits, 0x7fff_ffff);
        self.b
            .ins()
            .icmp_imm_u(IntCC::UnsignedGreaterThan, abs, 0x7f80_0000)
    }

    /// `half`'s f32 → bf16 bits (low 16 bits of an i32).
    pub(super) fn bf16_bits(&mut self, x: Value) -> Value {
        let bits = self.b.ins().bitcast(types::I32, MemFlagsData::new(), x);
        let hi = self.b.ins().ushr_imm_u(bits, 16);
        let nan = self.is_nan_bits(bits);
        let quiet = self.b.ins().bor_imm_u(hi, 0x40);
        let rb = self.b.ins().band_imm_u(bits, 0x8000);
        let rb = self.b.ins().icmp_imm_u(IntCC::NotEqual, rb, 0);
        let rest = self.b.ins().band_imm_u(bits, 3 * 0x8000 - 1);
        let rest = self.b.ins().icmp_imm_u(IntCC::NotEqual, rest, 0);
        let up = self.b.ins().band(rb, rest);
        let up = self.b.ins().uextend(types::I32, up);
        let rounded = self.b.ins().iadd(hi, up);
        let rounded = self.b.ins().band_imm_u(rounded, 0xffff);
        self.b.ins().select(nan, quiet, rounded)
    }

    /// `half`'s bf16 bits → f32.
    pub(super) fn bf16_value(&mut self, bits16: Value) -> Value {
        let abs = self.b.ins().band_imm_u(bits16, 0x7fff);
        let nan = self
            .b
            .ins()
            .icmp_imm_u(IntCC::UnsignedGreaterThan, abs, 0x7f80);
        let quiet = self.b.ins().bor_imm_u(bits16, 0x40);
        let bits = self.b.ins().select(nan, quiet, bits16);
        let bits = self.b.ins().ishl_imm_u(bits, 16);
        self.b.ins().bitcast(types::F32, MemFlagsData::new(), bits)
    }

    pub(super) fn round(&mut self, dt: DType, x: Value) -> Value {
        match dt {
            // No op computes in i8 (the verifier): a code read is already
            // an integer.
            DType::F32 | DType::I32 | DType::I8 | DType::Mxfp4 | DType::E8m0 => x,
            DType::BF16 => {
                let bits = self.bf16_bits(x);
                self.bf16_value(bits)
            }
            DType::F16 => {
                let h = self.h.f_f.clone();
                self.call(&h, h_f16_round as *const () as usize, &[x])
            }
        }
    }

    /// `dt.encode(x)`: storage bits in an i32.
    pub(super) fn encode(&mut self, dt: DType, x: Value) -> Value {
        match dt {
            DType::F32 => self.b.ins().bitcast(types::I32, MemFlagsData::new(), x),
            DType::BF16 => self.bf16_bits(x),
            DType::F16 => {
                let h = self.h.f_i.clone();
                self.call(&h, h_f16_encode as *const () as usize, &[x])
            }
            DType::I32 => self.b.ins().fcvt_to_sint_sat(types::I32, x),
            DType::I8 => {
                let r = self.b.ins().nearest(x);
                let i = self.b.ins().fcvt_to_sint_sat(types::I8, r);
                self.b.ins().uextend(types::I32, i)
            }
            DType::Mxfp4 | DType::E8m0 => {
                let f = match dt {
                    DType::Mxfp4 => h_fp4_encode as *const () as usize,
                    _ => h_scale_encode as *const () as usize,
                };
                let h = self.h.f_i.clone();
                self.call(&h, f, &[x])
            }
        }
    }

    /// `dt.decode(bits)`.
    pub(super) fn decode(&mut self, dt: DType, bits: Value) -> Value {
        match dt {
            DType::F32 => self.b.ins().bitcast(types::F32, MemFlagsData::new(), bits),
            DType::BF16 => self.bf16_value(bits),
            DType::F16 => {
                let h = self.h.i_f.clone();
                self.call(&h, h_f16_decode as *const () as usize, &[bits])
            }
            DType::I32 => self.b.ins().fcvt_from_sint(types::F32, bits),
            DType::I8 => {
                let code = self.b.ins().ireduce(types::I8, bits);
                let wide = self.b.ins().sextend(types::I32, code);
                self.b.ins().fcvt_from_sint(types::F32, wide)
            }
            // `bits` is the element's own nibble: loops over 4-bit
            // elements are not compiled (`vec_shape`), so only a caller
            // that extracted the nibble gets here.
            DType::Mxfp4 | DType::E8m0 => {
                let f = match dt {
                    DType::Mxfp4 => h_fp4_decode as *const () as usize,
                    _ => h_scale_decode as *const () as usize,
                };
                let h = self.h.i_f.clone();
                self.call(&h, f, &[bits])
            }
        }
    }

    /// The raw storage bits at `addr` (narrower types zero-extended).
    pub(super) fn load_bits(&mut self, dt: DType, addr: Value) -> Value {
        match dt.size_bytes() {
            4 => self.b.ins().load(types::I32, FLAGS, addr, 0),
            2 => self.b.ins().uload16(types::I32, FLAGS, addr, 0),
            _ => self.b.ins().uload8(types::I32, FLAGS, addr, 0),
        }
    }

    pub(super) fn store_bits(&mut self, dt: DType, bits: Value, addr: Value) {
        match dt.size_bytes() {
            4 => self.b.ins().store(FLAGS, bits, addr, 0),
            2 => self.b.ins().istore16(FLAGS, bits, addr, 0),
            _ => self.b.ins().istore8(FLAGS, bits, addr, 0),
        };
    }

    pub(super) fn unary(&mut self, op: FunOp, a: Value) -> Value {
        let one = || 1.0f32;
        match op {
            FunOp::Neg => self.b.ins().fneg(a),
            FunOp::Abs => self.b.ins().fabs(a),
            FunOp::Sqrt => self.b.ins().sqrt(a),
            FunOp::Rsqrt => {
                let s = self.b.ins().sqrt(a);
                let o = self.b.ins().f32const(one());
                self.b.ins().fdiv(o, s)
            }
            FunOp::Rcp => {
                let o = self.b.ins().f32const(one());
                self.b.ins().fdiv(o, a)
            }
            FunOp::Exp | FunOp::Sin | FunOp::Cos => {
                let f = match op {
                    FunOp::Exp => h_exp as *const () as usize,
                    FunOp::Sin => h_sin as *const () as usize,
                    _ => h_cos as *const () as usize,
                };
                let h = self.h.f_f.clone();
                self.call(&h, f, &[a])
            }
        }
    }

    pub(super) fn binary(&mut self, op: FaluOp, a: Value, b: Value) -> Value {
        match op {
            FaluOp::Add => self.b.ins().fadd(a, b),
            FaluOp::Sub => self.b.ins().fsub(a, b),
            FaluOp::Mul => self.b.ins().fmul(a, b),
            FaluOp::Div => self.b.ins().fdiv(a, b),
            FaluOp::Max | FaluOp::Min => {
                let f = if op == FaluOp::Max {
                    h_max as *const () as usize
                } else {
                    h_min as *const () as usize
                };
                let h = self.h.ff_f.clone();
                self.call(&h, f, &[a, b])
            }
        }
    }
}
