//! Reading a logit vector: probabilities and the most likely next tokens.

/// Softmax of one logit vector, computed stably in f64.
pub fn probabilities(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exp: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| (e / sum) as f32).collect()
}

/// The `k` most likely tokens, as `(id, probability)`, most likely first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let probs = probabilities(logits);
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|id| (id, probs[id as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_normalizes() {
        let top = top_k(&[0.0, 2.0, 1.0, 2.0], 3);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 2]);
        let total: f32 = probabilities(&[0.0, 2.0, 1.0, 2.0]).iter().sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!((top[0].1 - top[1].1).abs() < 1e-7 && top[0].1 > top[2].1);
    }
}
