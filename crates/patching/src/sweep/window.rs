//! Sliding windows (ROME's causal tracing): patch `size` adjacent layers together, centred on
//! each layer and clipped at the ends, and the summed single-layer curve to read them against.
//! A window's effect is the joint effect of its layers, which the paper finds well above the
//! sum of their single-layer effects.

use crate::PatchingError;

/// Checks that a window fits the model.
pub fn check(size: usize, n_layer: usize) -> Result<(), PatchingError> {
    if size == 0 {
        return Err(PatchingError::Target(
            "a window must cover at least one layer".into(),
        ));
    }
    if size > n_layer {
        return Err(PatchingError::WindowTooWide { size, n_layer });
    }
    Ok(())
}

/// The layers of the window centred on `layer`: `layer - size/2 ..` for `size` layers, clipped
/// to the model (ROME: `range(max(0, l - w // 2), min(L, l - (-w // 2)))`).
pub fn layers(layer: usize, size: usize, n_layer: usize) -> Vec<usize> {
    let start = layer.saturating_sub(size / 2);
    let end = (layer + size.div_ceil(2)).min(n_layer);
    (start..end).collect()
}

/// For a single-layer grid whose first axis is the layer, the sum over each window of the
/// single-layer values: what the window's effect would be if layers acted independently.
pub fn summed_single_layer(single: &[f64], n_layer: usize, size: usize) -> Vec<f64> {
    let per_layer = single.len() / n_layer;
    let mut summed = vec![0.0; single.len()];
    for layer in 0..n_layer {
        for l in layers(layer, size, n_layer) {
            for i in 0..per_layer {
                summed[layer * per_layer + i] += single[l * per_layer + i];
            }
        }
    }
    summed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_centred_and_clipped_like_rome() {
        assert_eq!(layers(0, 3, 12), vec![0, 1]);
        assert_eq!(layers(5, 3, 12), vec![4, 5, 6]);
        assert_eq!(layers(11, 3, 12), vec![10, 11]);
        assert_eq!(layers(6, 10, 12), vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(layers(0, 10, 12), (0..5).collect::<Vec<_>>());
        assert_eq!(layers(4, 1, 12), vec![4]);
        assert!(
            check(13, 12)
                .unwrap_err()
                .to_string()
                .contains("13 layers is wider than the model's 12")
        );
    }

    #[test]
    fn summed_curve_adds_the_window_s_single_layers() {
        // 3 layers x 2 positions.
        let single = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0];
        assert_eq!(
            summed_single_layer(&single, 3, 3),
            vec![3.0, 30.0, 6.0, 60.0, 5.0, 50.0]
        );
    }
}
