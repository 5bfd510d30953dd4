//! The binary Program format (`.wafer`).
//!
//! Layout: 8-byte magic `WAFERPRG`, u32 format version, u32 flags (zero),
//! u64 payload length, the payload (the Program in postcard encoding: a
//! compact varint format), then a u32 FNV-1a checksum of the payload. All
//! integers little-endian. Loading checks each of these and then runs the
//! verifier, so a truncated, corrupted or hand-edited file is an error,
//! never a panic.

use crate::Program;

pub const MAGIC: &[u8; 8] = b"WAFERPRG";
pub const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 8;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BinaryError {
    #[error(
        "not a wafer program (bad magic; expected a file written by `wafer asm` or `wafer compile`)"
    )]
    BadMagic,
    #[error(
        "program format version {found} is not supported (this build reads version {FORMAT_VERSION}); re-assemble it"
    )]
    Version { found: u32 },
    #[error(
        "unknown header flags {0:#x} (this build writes and reads 0); the file is corrupted or from a newer wafer"
    )]
    Flags(u32),
    #[error("truncated: the header says {expected} bytes of payload but {got} follow")]
    Truncated { expected: u64, got: u64 },
    #[error("checksum mismatch: the file is corrupted")]
    Checksum,
    #[error(
        "the payload passes its checksum but does not decode as a program ({0}): written by a different wafer build, or edited"
    )]
    Decode(String),
    #[error(transparent)]
    Invalid(#[from] crate::VerifyError),
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ *b as u32).wrapping_mul(0x0100_0193)
    })
}

pub fn encode(p: &Program) -> Vec<u8> {
    frame(&postcard::to_stdvec(p).expect("Program serialises"))
}

/// The file around a payload: header, payload, checksum. (The fuzz target
/// frames mutated payloads with it, so they reach the decoder.)
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&fnv1a(payload).to_le_bytes());
    out
}

pub fn decode(bytes: &[u8]) -> Result<Program, BinaryError> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(BinaryError::BadMagic);
    }
    if bytes.len() < HEADER {
        return Err(BinaryError::Truncated {
            expected: HEADER as u64,
            got: bytes.len() as u64,
        });
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(BinaryError::Version { found: version });
    }
    if u32_at(12) != 0 {
        return Err(BinaryError::Flags(u32_at(12)));
    }
    let len = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    let rest = (bytes.len() - HEADER) as u64;
    if rest < len.saturating_add(4) {
        return Err(BinaryError::Truncated {
            expected: len.saturating_add(4),
            got: rest,
        });
    }
    let payload = &bytes[HEADER..HEADER + len as usize];
    if u32_at(HEADER + len as usize) != fnv1a(payload) {
        return Err(BinaryError::Checksum);
    }
    let p: Program =
        postcard::from_bytes(payload).map_err(|e| BinaryError::Decode(e.to_string()))?;
    crate::verify(&p)?;
    Ok(p)
}
