//! The generation loop, once, for every decoder (the CPU reference and the
//! wafer's `Decoder`): as llama2.c's run.c does it, start from BOS, force
//! the prompt's tokens, then take the model's pick; stop after `steps`
//! positions or when the model emits BOS.

use crate::tokenizer::BOS;

/// Run `step(token, pos)` for each position, feeding back the prompt's
/// token while there is one and then `pick(&result)`; `each(next, &result)`
/// sees every position's token (forced or picked). Returns the tokens
/// after BOS, without the BOS that ends the text.
pub fn decode_loop<S, E>(
    prompt: &[u32],
    steps: usize,
    mut step: impl FnMut(u32, usize) -> Result<S, E>,
    mut pick: impl FnMut(&S) -> u32,
    mut each: impl FnMut(u32, &S),
) -> Result<Vec<u32>, E> {
    let mut token = BOS;
    let mut out = Vec::new();
    for pos in 0..steps {
        let s = step(token, pos)?;
        let next = match prompt.get(pos) {
            Some(t) => *t,
            None => pick(&s),
        };
        each(next, &s);
        if next == BOS {
            break;
        }
        out.push(next);
        token = next;
    }
    Ok(out)
}
