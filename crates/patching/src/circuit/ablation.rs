//! Ablating heads: replacing their outputs (`hook_z`) by zero or by their mean over the
//! evaluated prompts, and measuring what is left of the task. A circuit's heads ablated should
//! destroy it; every other head ablated should not.

use patchbay_model::{
    Activation, ActivationCache, EditOp, Gpt2, HookPoint, Hooks, Intervention, LogitsAt, Selection,
};

use crate::PatchingError;
use crate::circuit::accuracy::{Encoded, TaskScore, score};

/// How a head's output is replaced when it is ablated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ablation {
    /// By zero.
    Zero,
    /// By its mean over the evaluated prompts, position by position.
    Mean,
}

/// The task on `prompts` (of one token length) with `heads` (`[layer, head]`) ablated.
pub async fn ablated(
    model: &Gpt2,
    prompts: &[Encoded],
    heads: &[[usize; 2]],
    ablation: Ablation,
) -> Result<TaskScore, PatchingError> {
    let tokens: Vec<Vec<u32>> = prompts.iter().map(|p| p.tokens.clone()).collect();
    let mut layers: Vec<usize> = heads.iter().map(|h| h[0]).collect();
    layers.sort();
    layers.dedup();
    let mut cache = ActivationCache::new(layers.iter().map(|&l| HookPoint::Z(l)));
    model.forward(&tokens, &mut Hooks::none().with_cache(&mut cache), LogitsAt::Last)?;
    let mut values = Vec::new();
    for &layer in &layers {
        let z = cache.per_head(HookPoint::Z(layer))?;
        let replacement = match ablation {
            Ablation::Zero => z.narrow(0, 0, 1).zeros_like(),
            Ablation::Mean => z.mean_dim(0),
        };
        let selected: Vec<usize> = heads.iter().filter(|h| h[0] == layer).map(|h| h[1]).collect();
        values.push((layer, replacement, selected));
    }
    score(model, prompts, |batch| {
        values
            .iter()
            .map(|(layer, replacement, selected)| {
                Ok(Intervention::new(
                    HookPoint::Z(*layer),
                    EditOp::Replace,
                    Activation::PerHead(replacement.clone()),
                    &vec![Some(Selection::heads(selected.clone())); batch.len()],
                )?)
            })
            .collect()
    })
    .await
}
