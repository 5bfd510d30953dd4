//! The textual assembly (`.wsm`): a printer and a parser that round-trip.
//!
//! ```text
//! .grid 1x1                          ; program rectangle
//! .code add                          ; code shared by the PEs it is placed on
//!   .buffer y f32[16]                ; a named SRAM buffer (offset optional: `@ 64`)
//!   .task main local active          ; local task, activated at start
//! main:
//!   vfadd.f32 tx(c2), rx(c0, 16), rx(c1)
//!   end
//! .end
//! .place add 0,0 1x1                 ; rect: x,y WxH [step sx,sy]
//! .route 0,0 1x1 c0 W -> R           ; color, input port -> output ports
//! .input a f32[16] -> 0,0 W c0 = iota(0, 1)
//! .output y f32[16] <- 0,0 E c2
//! ```
//! The instruction set is listed in the README's assembly section.

mod error;
mod lex;
mod line;
mod parse;
mod print;

pub use error::AsmError;
pub use parse::parse;
pub use print::{code_listing, inst_text, print};
