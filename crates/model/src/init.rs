//! A freshly initialised GPT-2, as OpenAI's and Hugging Face's code initialise it: every weight
//! N(0, 0.02²), the residual projections (`attn.c_proj`, `mlp.c_proj`) N(0, (0.02 / √(2 n_layer))²),
//! zero biases, unit LayerNorm gains and zero LayerNorm biases.
//!
//! The values are drawn on the host from ChaCha8 seeded with `seed`, in a fixed order, so the
//! same seed gives bit-identical weights on every backend and every run (burn's own device seed
//! is process-global, which parallel tests would share).

use std::collections::HashMap;

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::hub::{Role, Slot, assemble, hub_tensors};
use crate::loader::rows_per_block;
use crate::{Gpt2, Gpt2Config, ModelError};

/// GPT-2's `initializer_range`.
const STD: f32 = 0.02;

impl Gpt2Config {
    /// A GPT-2 of this shape with GPT-2's initialisation, drawn from `seed`, on `device` (an
    /// autodiff device for training). The token embedding is one block: no binding limit. The
    /// config must be valid ([`Gpt2Config::validate`]).
    ///
    /// The weights are drawn in the order of the Hub key table (wte, wpe, then each block's
    /// `c_attn`, `attn.c_proj`, `c_fc`, `mlp.c_proj`), which fixes the values a seed gives.
    pub fn init(&self, device: &Device, seed: u64) -> Gpt2 {
        self.init_split(device, seed, None)
    }

    /// [`Gpt2Config::init`], with the token embedding split into blocks that fit a device
    /// binding of `max_binding_bytes`, as a loaded checkpoint's is: the same values.
    pub fn init_split(&self, device: &Device, seed: u64, max_binding_bytes: Option<u64>) -> Gpt2 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let residual_std = STD / (2.0 * self.n_layer as f32).sqrt();
        let mut values: HashMap<Slot, TensorData> = hub_tensors(self)
            .into_iter()
            .map(|entry| {
                let n = entry.shape.iter().product::<usize>();
                let values: Vec<f32> = match entry.slot {
                    slot if slot.is_norm_gain() => vec![1.0; n],
                    Slot::Block(_, _, Role::Bias) | Slot::LnF(Role::Bias) => vec![0.0; n],
                    Slot::Block(_, part, Role::Weight) if part.is_residual_projection() => {
                        normal(&mut rng, n, residual_std)
                    }
                    _ => normal(&mut rng, n, STD),
                };
                (entry.slot, TensorData::new(values, entry.shape))
            })
            .collect();
        assemble(self, device, rows_per_block(self, max_binding_bytes), |slot| {
            values
                .remove(&slot)
                .ok_or_else(|| ModelError::Backend(format!("no initial value for {slot:?}")))
        })
        .expect("the table holds every slot once, with its shape")
    }
}

fn normal(rng: &mut ChaCha8Rng, n: usize, std: f32) -> Vec<f32> {
    let normal = Normal::new(0.0f32, std).expect("a positive standard deviation");
    (0..n).map(|_| normal.sample(rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hooks, LogitsAt};
    use burn::module::Param;

    fn values<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f32> {
        p.val().into_data().try_into_vec_as::<f32>().unwrap()
    }

    fn mean_sd(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn follows_gpt2s_initialisation_and_is_seeded() {
        let device = Device::flex();
        let config = Gpt2Config::new(4, 4, 64, 32).with_vocab_size(1000);
        let model = config.init(&device, 3);
        let (mean, sd) = mean_sd(&values(&model.wte.chunks[0]));
        assert!(mean.abs() < 1e-3 && (sd - 0.02).abs() < 5e-4, "wte {mean} {sd}");
        let block = &model.blocks[2];
        let (_, sd) = mean_sd(&values(&block.attn.c_attn.weight));
        assert!((sd - 0.02).abs() < 1e-3, "c_attn {sd}");
        let (_, sd) = mean_sd(&values(&block.mlp.c_proj.weight));
        let expected = 0.02 / 8f64.sqrt();
        assert!((sd - expected).abs() < 3e-4, "mlp.c_proj {sd} vs {expected}");
        assert!(
            values(block.attn.c_attn.bias.as_ref().unwrap())
                .iter()
                .all(|&x| x == 0.0)
        );
        assert!(values(&block.ln_1.gamma).iter().all(|&x| x == 1.0));
        assert!(
            values(block.ln_2.beta.as_ref().unwrap())
                .iter()
                .all(|&x| x == 0.0)
        );
        assert_eq!(model.wte.chunks.len(), 1);

        let again = config.init(&device, 3);
        assert_eq!(
            values(&again.blocks[1].attn.c_proj.weight),
            values(&model.blocks[1].attn.c_proj.weight)
        );
        // Split to fit a 64 KiB binding: the same values, in blocks of 256 rows.
        let split = config.init_split(&device, 3, Some(64 << 10));
        assert_eq!(split.wte.chunks.len(), 4);
        let rows: Vec<f32> = split.wte.chunks.iter().flat_map(values).collect();
        assert_eq!(rows, values(&model.wte.chunks[0]));
        let other = config.init(&device, 4);
        assert_ne!(values(&other.wte.chunks[0]), values(&model.wte.chunks[0]));

        let logits = model
            .forward(&[vec![1, 2, 3]], &mut Hooks::none(), LogitsAt::All)
            .unwrap();
        assert_eq!(logits.dims(), [1, 3, 1000]);
    }
}
