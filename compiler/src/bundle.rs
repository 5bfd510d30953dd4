//! The compiled-model file (`wafer compile -o OUT.wafer`): every stage's
//! Program, in order, with where it sits and its hand-off.
//!
//! Layout: 8-byte magic `WAFERMDL`, u32 version, u32 stage count, then per
//! stage: u32 name length, the UTF-8 name, u32 wafer (its index in a
//! system of wafers; version 2 on), u32 origin x, u32 origin y (on that
//! wafer's grid), u64 hand-off cycles (with any wafer link), u64 program
//! length and the program in the `.wafer` Program format (with its own
//! checksum, and verified when read). All integers little-endian. Version
//! 1 files (one wafer, no wafer field) are still read.

use crate::codegen::Compiled;
use wafer_emulator::binary::{self, BinaryError};
use wafer_emulator::{Pe, Program};

pub const MAGIC: &[u8; 8] = b"WAFERMDL";
pub const VERSION: u32 = 2;

/// One stage as the file holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct BundleStage {
    pub name: String,
    /// The wafer of a system it runs on (0 on one wafer).
    pub wafer: u32,
    pub origin: Pe,
    pub handoff_cycles: u64,
    pub program: Program,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BundleError {
    #[error("not a compiled wafer model (bad magic; expected a file written by `wafer compile`)")]
    BadMagic,
    #[error("model file version {0} is not supported (this build reads versions 1 to {VERSION})")]
    Version(u32),
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("stage {index} (`{name}`): {error}")]
    Program {
        index: usize,
        name: String,
        error: BinaryError,
    },
    #[error("stage {0}: its name is not UTF-8")]
    Name(usize),
}

pub fn encode(c: &Compiled) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(c.stages.len() as u32).to_le_bytes());
    for (i, s) in c.stages.iter().enumerate() {
        let p = binary::encode(&c.fragments[i].program);
        out.extend_from_slice(&(s.name.len() as u32).to_le_bytes());
        out.extend_from_slice(s.name.as_bytes());
        out.extend_from_slice(&(crate::system::wafer_of(c, i) as u32).to_le_bytes());
        out.extend_from_slice(&c.sites[i].origin.x.to_le_bytes());
        out.extend_from_slice(&c.sites[i].origin.y.to_le_bytes());
        out.extend_from_slice(&c.routing.handoffs[i].cycles.to_le_bytes());
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(&p);
    }
    out
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BundleError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(BundleError::Truncated(self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, BundleError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, BundleError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

pub fn decode(bytes: &[u8]) -> Result<Vec<BundleStage>, BundleError> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(BundleError::BadMagic);
    }
    let mut r = Reader { b: bytes, at: 8 };
    let v = r.u32()?;
    if !(1..=VERSION).contains(&v) {
        return Err(BundleError::Version(v));
    }
    let n = r.u32()? as usize;
    let mut out = Vec::new();
    for index in 0..n {
        let len = r.u32()? as usize;
        let name =
            String::from_utf8(r.take(len)?.to_vec()).map_err(|_| BundleError::Name(index))?;
        let wafer = if v >= 2 { r.u32()? } else { 0 };
        let origin = Pe::new(r.u32()?, r.u32()?);
        let handoff_cycles = r.u64()?;
        let plen = usize::try_from(r.u64()?).map_err(|_| BundleError::Truncated(r.at))?;
        let program = binary::decode(r.take(plen)?).map_err(|error| BundleError::Program {
            index,
            name: name.clone(),
            error,
        })?;
        out.push(BundleStage {
            name,
            wafer,
            origin,
            handoff_cycles,
            program,
        });
    }
    if r.at != bytes.len() {
        return Err(BundleError::Truncated(r.at));
    }
    Ok(out)
}
