//! Writes a [`Gpt2`] as a Hugging Face Hub checkpoint: `model.safetensors` with the Hub's keys
//! (`wte.weight`, `h.0.attn.c_attn.weight` stored `[in, out]`, ...) and `config.json`, so that
//! it loads through [`load_gpt2`](crate::load_gpt2) like any GPT-2 from the Hub.

use std::collections::HashMap;

use burn::tensor::f16;
use safetensors::tensor::{Dtype, TensorView};

use crate::hub::{hub_tensors, param_data};
use crate::{Gpt2, ModelError};

/// The number format of a saved checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveDtype {
    F32,
    /// Half the size; what the repo's own small model ships in.
    F16,
}

impl Gpt2 {
    /// The weights as the bytes of a Hub `model.safetensors` (un-prefixed keys, Conv1D layout):
    /// every entry of the Hub key table, checked against the shape the config implies.
    pub fn to_safetensors(&self, dtype: SaveDtype) -> Result<Vec<u8>, ModelError> {
        let table = hub_tensors(&self.config);
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(table.len());
        for entry in table {
            let data = param_data(self, entry.slot)
                .ok_or_else(|| ModelError::Backend(format!("the model has no `{}` to save", entry.name)))?;
            if data.shape().to_vec() != entry.shape {
                return Err(ModelError::Shape {
                    name: entry.name,
                    found: data.shape().to_vec(),
                    expected: entry.shape,
                });
            }
            let data = data.convert::<f32>();
            let bytes = match dtype {
                SaveDtype::F32 => data.as_bytes().to_vec(),
                SaveDtype::F16 => data.convert::<f16>().as_bytes().to_vec(),
            };
            tensors.push((entry.name, entry.shape, bytes));
        }
        let st_dtype = match dtype {
            SaveDtype::F32 => Dtype::F32,
            SaveDtype::F16 => Dtype::F16,
        };
        let views = tensors
            .iter()
            .map(|(name, shape, bytes)| {
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
    use burn::prelude::*;

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
