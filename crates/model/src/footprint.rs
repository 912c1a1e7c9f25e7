//! What loading a checkpoint through [`load_gpt2`](crate::load_gpt2) holds in memory, from what
//! the loader keeps alive: the checkpoint's bytes (the caller's, read from until the model is
//! built), the model's float32 parameters, and the token embedding as one host matrix while it
//! is split into blocks ([`crate::hub`]'s `assemble`).
//!
//! On the CPU backend the parameters live on the host beside the file's bytes; on a GPU they
//! live on the device and the host holds the file, the embedding matrix and one block of it on
//! its way up. Activations of a short prompt are small beside these and not counted.

use crate::Gpt2Config;

/// Bytes held while a checkpoint of shape `config` and `file_bytes` bytes loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadFootprint {
    /// The checkpoint's bytes.
    pub file: u64,
    /// The parameters as float32.
    pub parameters: u64,
    /// The token embedding as one float32 matrix, before it is split.
    pub embedding: u64,
    /// The largest tensor placed whole on the device: the token embedding is split by rows,
    /// so this is the widest of the others (the MLP's weights).
    pub largest_tensor: u64,
}

impl LoadFootprint {
    pub fn new(config: &Gpt2Config, file_bytes: u64) -> Self {
        let (d, d_mlp) = (config.n_embd as u64, config.d_mlp() as u64);
        LoadFootprint {
            file: file_bytes,
            parameters: 4 * config.parameters(),
            embedding: 4 * config.vocab_size as u64 * d,
            largest_tensor: 4 * (d * d_mlp).max(d * 3 * d).max(config.n_positions as u64 * d),
        }
    }

    /// The most the host holds during the load: on the CPU the file, the parameters and the
    /// embedding matrix; on a GPU the file, the matrix and one block of it (at most as large).
    pub fn host_bytes(&self, on_gpu: bool) -> u64 {
        if on_gpu {
            self.file + 2 * self.embedding
        } else {
            self.file + self.parameters + self.embedding
        }
    }

    /// What the GPU holds: the parameters (nothing on the CPU backend).
    pub fn device_bytes(&self, on_gpu: bool) -> u64 {
        if on_gpu { self.parameters } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_xl_holds_its_file_and_6_2_gb_of_weights() {
        let xl = Gpt2Config::new(48, 25, 1600, 1024);
        let f = LoadFootprint::new(&xl, 6_431_000_000);
        assert_eq!(f.parameters, 6_230_444_800);
        assert_eq!(f.embedding, 50257 * 1600 * 4);
        assert_eq!(f.largest_tensor, 1600 * 6400 * 4);
        assert_eq!(f.host_bytes(false), 6_431_000_000 + 6_230_444_800 + 321_644_800);
        assert_eq!(f.host_bytes(true), 6_431_000_000 + 2 * 321_644_800);
        assert_eq!((f.device_bytes(true), f.device_bytes(false)), (6_230_444_800, 0));
    }
}
