//! A freshly initialised GPT-2, as OpenAI's and Hugging Face's code initialise it: every weight
//! N(0, 0.02²), the residual projections (`attn.c_proj`, `mlp.c_proj`) N(0, (0.02 / √(2 n_layer))²),
//! zero biases, unit LayerNorm gains and zero LayerNorm biases.
//!
//! The values are drawn on the host from ChaCha8 seeded with `seed`, in a fixed order, so the
//! same seed gives bit-identical weights on every backend and every run (burn's own device seed
//! is process-global, which parallel tests would share).

use burn::module::Param;
use burn::nn::{LayerNormConfig, Linear};
use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::gpt2::{Attention, Block, Mlp, SplitEmbedding};
use crate::{Gpt2, Gpt2Config};

/// GPT-2's `initializer_range`.
const STD: f32 = 0.02;

struct Init<'a> {
    rng: ChaCha8Rng,
    device: &'a Device,
}

impl Init<'_> {
    fn normal<const D: usize>(&mut self, shape: [usize; D], std: f32) -> Param<Tensor<D>> {
        let normal = Normal::new(0.0f32, std).expect("a positive standard deviation");
        let values: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| normal.sample(&mut self.rng))
            .collect();
        Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), self.device))
    }

    fn linear(&mut self, d_in: usize, d_out: usize, std: f32) -> Linear {
        Linear {
            weight: self.normal([d_in, d_out], std),
            bias: Some(Param::from_tensor(Tensor::zeros([d_out], self.device))),
        }
    }
}

impl Gpt2Config {
    /// A GPT-2 of this shape with GPT-2's initialisation, drawn from `seed`, on `device` (an
    /// autodiff device for training). The token embedding is one block: no binding limit.
    pub fn init(&self, device: &Device, seed: u64) -> Gpt2 {
        let mut init = Init {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device,
        };
        let (d, d_mlp) = (self.n_embd, self.d_mlp());
        let residual_std = STD / (2.0 * self.n_layer as f32).sqrt();
        let layer_norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_epsilon)
                .init(device)
        };
        let wte = init.normal([self.vocab_size, d], STD);
        let wpe = init.normal([self.n_positions, d], STD);
        let blocks = (0..self.n_layer)
            .map(|_| Block {
                ln_1: layer_norm(),
                attn: Attention {
                    c_attn: init.linear(d, 3 * d, STD),
                    c_proj: init.linear(d, d, residual_std),
                    n_head: self.n_head,
                },
                ln_2: layer_norm(),
                mlp: Mlp {
                    c_fc: init.linear(d, d_mlp, STD),
                    c_proj: init.linear(d_mlp, d, residual_std),
                },
            })
            .collect();
        Gpt2 {
            wte: SplitEmbedding { chunks: vec![wte] },
            wpe,
            blocks,
            ln_f: layer_norm(),
            config: self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hooks, LogitsAt};

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
        let other = config.init(&device, 4);
        assert_ne!(values(&other.wte.chunks[0]), values(&model.wte.chunks[0]));

        let logits = model
            .forward(&[vec![1, 2, 3]], &mut Hooks::none(), LogitsAt::All)
            .unwrap();
        assert_eq!(logits.dims(), [1, 3, 1000]);
    }
}
