//! Writes a [`Gpt2`] as a Hugging Face Hub checkpoint: `model.safetensors` with the Hub's keys
//! (`wte.weight`, `h.0.attn.c_attn.weight` stored `[in, out]`, ...) and `config.json`, so that
//! it loads through [`load_gpt2`](crate::load_gpt2) like any GPT-2 from the Hub.

use std::collections::HashMap;

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::f16;
use safetensors::tensor::{Dtype, TensorView};

use crate::{Gpt2, ModelError};

/// The number format of a saved checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveDtype {
    F32,
    /// Half the size; what the repo's own small model ships in.
    F16,
}

fn host<const D: usize>(param: &Param<Tensor<D>>, dtype: SaveDtype) -> (Vec<usize>, Vec<u8>) {
    let tensor = param.val();
    let shape = tensor.dims().to_vec();
    let data = tensor.into_data().convert::<f32>();
    let bytes = match dtype {
        SaveDtype::F32 => data.as_bytes().to_vec(),
        SaveDtype::F16 => data.convert::<f16>().as_bytes().to_vec(),
    };
    (shape, bytes)
}

impl Gpt2 {
    /// The weights as the bytes of a Hub `model.safetensors` (un-prefixed keys, Conv1D layout).
    pub fn to_safetensors(&self, dtype: SaveDtype) -> Result<Vec<u8>, ModelError> {
        let mut tensors: Vec<(String, (Vec<usize>, Vec<u8>))> = Vec::new();
        let mut push = |name: String, entry: (Vec<usize>, Vec<u8>)| tensors.push((name, entry));
        // The embedding's blocks, back into one matrix.
        let (d, vocab) = (self.config.n_embd, self.config.vocab_size);
        let mut wte = Vec::new();
        for chunk in &self.wte.chunks {
            wte.extend(host(chunk, dtype).1);
        }
        push("wte.weight".into(), (vec![vocab, d], wte));
        push("wpe.weight".into(), host(&self.wpe, dtype));
        let linear = |push: &mut dyn FnMut(String, (Vec<usize>, Vec<u8>)), name: String, l: &Linear| {
            push(format!("{name}.weight"), host(&l.weight, dtype));
            if let Some(bias) = &l.bias {
                push(format!("{name}.bias"), host(bias, dtype));
            }
        };
        let norm = |push: &mut dyn FnMut(String, (Vec<usize>, Vec<u8>)), name: String, n: &LayerNorm| {
            push(format!("{name}.weight"), host(&n.gamma, dtype));
            if let Some(beta) = &n.beta {
                push(format!("{name}.bias"), host(beta, dtype));
            }
        };
        for (l, block) in self.blocks.iter().enumerate() {
            norm(&mut push, format!("h.{l}.ln_1"), &block.ln_1);
            linear(&mut push, format!("h.{l}.attn.c_attn"), &block.attn.c_attn);
            linear(&mut push, format!("h.{l}.attn.c_proj"), &block.attn.c_proj);
            norm(&mut push, format!("h.{l}.ln_2"), &block.ln_2);
            linear(&mut push, format!("h.{l}.mlp.c_fc"), &block.mlp.c_fc);
            linear(&mut push, format!("h.{l}.mlp.c_proj"), &block.mlp.c_proj);
        }
        norm(&mut push, "ln_f".into(), &self.ln_f);

        let st_dtype = match dtype {
            SaveDtype::F32 => Dtype::F32,
            SaveDtype::F16 => Dtype::F16,
        };
        let views = tensors
            .iter()
            .map(|(name, (shape, bytes))| {
                TensorView::new(st_dtype, shape.clone(), bytes)
                    .map(|view| (name.clone(), view))
                    .map_err(|e| ModelError::NotSafetensors(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize(views, Some(metadata)).map_err(|e| ModelError::NotSafetensors(e.to_string()))
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if needed).
    #[cfg(not(target_family = "wasm"))]
    pub fn save_dir(&self, dir: &std::path::Path, dtype: SaveDtype) -> Result<(), ModelError> {
        let io = |path: std::path::PathBuf| {
            move |source| ModelError::Io {
                path: path.display().to_string(),
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let config = dir.join("config.json");
        std::fs::write(&config, self.config.to_hub_json()).map_err(io(config.clone()))?;
        let weights = dir.join("model.safetensors");
        std::fs::write(&weights, self.to_safetensors(dtype)?).map_err(io(weights.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Gpt2Config, Hooks, LogitsAt, load_gpt2};

    fn logits(model: &Gpt2) -> Vec<f32> {
        model
            .forward(&[vec![5, 17, 3, 99]], &mut Hooks::none(), LogitsAt::All)
            .unwrap()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap()
    }

    #[test]
    fn round_trips_through_the_hub_loader() {
        let device = Device::flex();
        let config = Gpt2Config::new(2, 2, 16, 8).with_vocab_size(120);
        let model = config.init(&device, 1);
        let json = config.to_hub_json();

        let f32_bytes = model.to_safetensors(SaveDtype::F32).unwrap();
        let back = load_gpt2(&json, &f32_bytes, &device, None).unwrap();
        assert_eq!(logits(&back), logits(&model), "F32 is exact");

        let f16_bytes = model.to_safetensors(SaveDtype::F16).unwrap();
        assert!(f16_bytes.len() < f32_bytes.len() * 6 / 10);
        // Split on load into blocks of 50 rows: still the same model.
        let back = load_gpt2(&json, &f16_bytes, &device, Some(50 * 4 * 16)).unwrap();
        assert_eq!(back.wte.chunks.len(), 3);
        let (a, b) = (logits(&back), logits(&model));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-3, "F16 rounding moved a logit by {worst}");
        assert_eq!(
            back.to_safetensors(SaveDtype::F16).unwrap(),
            f16_bytes,
            "F16 is stable"
        );
    }
}
