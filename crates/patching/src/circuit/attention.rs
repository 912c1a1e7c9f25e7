//! Where heads attend in IOI prompts: from the final position to the indirect object (IO) and
//! to both occurrences of the subject (S1, S2), and from S2 back to S1 (a duplicate-token
//! head's signature) and to IO. A head that moves IO to the end attends from the end to IO.

use patchbay_model::{ActivationCache, Gpt2, HookPoint, Hooks, LogitsAt, read_f32};

use crate::PatchingError;
use crate::circuit::accuracy::Encoded;

/// Positions of IO, S1 and S2 in an IOI prompt's tokens, given the ids of IO (r) and S (r').
pub fn name_positions(tokens: &[u32], io: u32, s: u32) -> Result<(usize, usize, usize), PatchingError> {
    let not_ioi = |m: &str| PatchingError::Spec(format!("not an IOI prompt: {m}"));
    let io_pos = tokens
        .iter()
        .position(|&t| t == io)
        .ok_or_else(|| not_ioi("the indirect object does not occur"))?;
    let s_pos: Vec<usize> = (0..tokens.len()).filter(|&i| tokens[i] == s).collect();
    match s_pos.as_slice() {
        [s1, s2] => Ok((io_pos, *s1, *s2)),
        _ => Err(not_ioi("the subject does not occur exactly twice")),
    }
}

/// Mean attention of every head over IOI `prompts` (of one token length), `[layer][head]`
/// each: end → IO, end → S1, end → S2, S2 → S1, S2 → IO.
pub async fn attention_to_names(
    model: &Gpt2,
    prompts: &[Encoded],
) -> Result<[Vec<Vec<f64>>; 5], PatchingError> {
    let (n_layer, n_head) = (model.config.n_layer, model.config.n_head);
    let tokens: Vec<Vec<u32>> = prompts.iter().map(|p| p.tokens.clone()).collect();
    let mut cache = ActivationCache::new((0..n_layer).map(HookPoint::Pattern));
    model.forward(&tokens, &mut Hooks::none().with_cache(&mut cache), LogitsAt::Last)?;
    let mut out: [Vec<Vec<f64>>; 5] = std::array::from_fn(|_| vec![vec![0.0; n_head]; n_layer]);
    let len = tokens[0].len();
    let n = prompts.len() as f64;
    for layer in 0..n_layer {
        // [batch, head, dest_pos, src_pos]
        let pattern = read_f32(cache.per_head(HookPoint::Pattern(layer))?).await?;
        for (b, prompt) in prompts.iter().enumerate() {
            let answers = &prompt.answers;
            let s = answers.counter.ok_or_else(|| {
                PatchingError::Spec("an IOI prompt needs the subject as its counter-answer".into())
            })?;
            let (io_pos, s1, s2) = name_positions(&prompt.tokens, answers.answer, s)?;
            for head in 0..n_head {
                let row = |dest: usize| ((b * n_head + head) * len + dest) * len;
                for (k, pos) in [io_pos, s1, s2].into_iter().enumerate() {
                    out[k][layer][head] += pattern[row(len - 1) + pos] as f64 / n;
                }
                out[3][layer][head] += pattern[row(s2) + s1] as f64 / n;
                out[4][layer][head] += pattern[row(s2) + io_pos] as f64 / n;
            }
        }
    }
    Ok(out)
}
