//! Writes a [`Gpt2`] as a Hugging Face Hub checkpoint: `model.safetensors` with the Hub's keys
//! (`wte.weight`, `h.0.attn.c_attn.weight` stored `[in, out]`, ...) and `config.json`, so that
//! it loads through [`load_gpt2`](crate::load_gpt2) like any GPT-2 from the Hub.

use std::io::Write;

use burn::tensor::f16;
use serde_json::{Map, Value, json};

use crate::hub::{hub_tensors, param_data};
use crate::{Gpt2, ModelError};

/// The number format of a saved checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveDtype {
    F32,
    /// Half the size; what the repo's own small model ships in.
    F16,
}

impl SaveDtype {
    fn bytes(self) -> usize {
        match self {
            SaveDtype::F32 => 4,
            SaveDtype::F16 => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SaveDtype::F32 => "F32",
            SaveDtype::F16 => "F16",
        }
    }
}

impl Gpt2 {
    /// The weights as the bytes of a Hub `model.safetensors` (un-prefixed keys, Conv1D layout):
    /// every entry of the Hub key table, checked against the shape the config implies.
    pub fn to_safetensors(&self, dtype: SaveDtype) -> Result<Vec<u8>, ModelError> {
        let mut bytes = Vec::new();
        self.write_safetensors(dtype, &mut bytes, |e| {
            ModelError::Backend(format!("writing the checkpoint: {e}"))
        })?;
        Ok(bytes)
    }

    /// Writes the checkpoint to `out` one tensor at a time, so that saving holds the model and
    /// one tensor, not a second copy of the whole file: the header first (its offsets follow
    /// from the shapes), then each tensor in the table's order. `io` names a failed write.
    fn write_safetensors(
        &self,
        dtype: SaveDtype,
        out: &mut impl Write,
        io: impl Fn(std::io::Error) -> ModelError,
    ) -> Result<(), ModelError> {
        let table = hub_tensors(&self.config);
        let mut header = Map::new();
        header.insert("__metadata__".into(), json!({"format": "pt"}));
        let mut offset = 0;
        for entry in &table {
            let end = offset + entry.shape.iter().product::<usize>() * dtype.bytes();
            header.insert(
                entry.name.clone(),
                json!({"dtype": dtype.name(), "shape": entry.shape, "data_offsets": [offset, end]}),
            );
            offset = end;
        }
        let mut header = Value::Object(header).to_string().into_bytes();
        // The data starts 8-byte aligned, as the safetensors crate writes it.
        header.resize(header.len().next_multiple_of(8), b' ');
        out.write_all(&(header.len() as u64).to_le_bytes()).map_err(&io)?;
        out.write_all(&header).map_err(&io)?;
        for entry in table {
            let Some(data) = param_data(self, entry.slot) else {
                return Err(ModelError::Backend(format!(
                    "the model has no `{}` to save",
                    entry.name
                )));
            };
            if data.shape().to_vec() != entry.shape {
                return Err(ModelError::Shape {
                    name: entry.name,
                    found: data.shape().to_vec(),
                    expected: entry.shape,
                });
            }
            let data = data.convert::<f32>();
            match dtype {
                SaveDtype::F32 => out.write_all(data.as_bytes()),
                SaveDtype::F16 => out.write_all(data.convert::<f16>().as_bytes()),
            }
            .map_err(&io)?;
        }
        Ok(())
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
        let file = std::fs::File::create(&weights).map_err(io(weights.clone()))?;
        let mut out = std::io::BufWriter::new(file);
        self.write_safetensors(dtype, &mut out, |e| io(weights.clone())(e))?;
        out.flush().map_err(io(weights))
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
