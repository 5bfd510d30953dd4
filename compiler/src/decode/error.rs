//! What can go wrong decoding on the emulated wafer.

use wafer_emulator::RunError;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    // The run's error is in the message, not also a `source` (`{:#}`
    // would print it twice).
    #[error("step at position {pos}, stage `{stage}`: {error}")]
    Run {
        pos: u32,
        stage: String,
        error: Box<RunError>,
    },
    #[error(
        "position {pos} is past the {max} positions the KV cache was compiled for; compile with a larger --max-context"
    )]
    Context { pos: u32, max: u32 },
    #[error(
        "cannot skip to position {pos} in a functional decode: the KV cache would miss the positions before it (decode them, or decode timing-only)"
    )]
    Skip { pos: u32 },
    #[error("interrupted at position {pos}")]
    Interrupted { pos: u32 },
    #[error("token {token} is outside the vocabulary of {vocab}")]
    Token { token: u32, vocab: usize },
    #[error(
        "{steps} steps do not fit the {max} positions the KV cache was compiled for: decode at most {max} (steps count the prompt's positions) or compile with a larger --max-context"
    )]
    Steps { steps: usize, max: u32 },
    #[error(
        "the prompt is {prompt} tokens but only {steps} steps are decoded: the steps include the prompt's positions, so ask for more than {prompt}"
    )]
    Prompt { prompt: usize, steps: usize },
    #[error(
        "the logits at position {pos} are not all numbers (NaN): the model's arithmetic overflowed or its weights hold NaN; no token can be picked from them"
    )]
    NanLogits { pos: u32 },
    #[error(
        "a step is shared between processes only when it is timing-only, reuses identical stages and records no trace"
    )]
    ShareMode,
    #[error(
        "step at position {pos}, stage `{stage}`: the router picked no valid set of experts ({route:?}): its logits hold NaN or −∞"
    )]
    Routing {
        pos: u32,
        stage: String,
        route: Vec<f32>,
    },
    #[error(
        "overlapped step at position {pos}: the stages' holds (and queued arrivals, with --queue) did not settle in {passes} passes (each consumer holding its producers back moved them again); decode with --barriers, or cap the queue's rounds with --queue-rounds"
    )]
    Unsettled { pos: u32, passes: usize },
    #[error(
        "overlapped step at position {pos}: {why}; decode with --barriers (each stage fed at a barrier), or give the model more PEs (a larger --region, or more --wafers)"
    )]
    Parked { pos: u32, why: String },
    #[error("step at position {pos}, shared: rank {rank}: {message}")]
    Shared {
        pos: u32,
        rank: usize,
        message: String,
    },
}
