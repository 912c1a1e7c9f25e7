//! What loading a checkpoint as it streams in ([`StreamLoader`](crate::StreamLoader), the
//! page's way) holds in memory: never the file. Each tensor's bytes are gathered until its last
//! byte arrives and are then copied into its float32 parameter, so the host holds the
//! parameters built so far and the tensor being read twice at most; the largest is the token
//! embedding, which [`crate::hub`]'s `assemble` then splits into blocks (a copy, one block at a
//! time, when the device's binding limit needs it).
//!
//! On the CPU backend the parameters stay on the host as the model; on a GPU they are held on
//! the host until the model is assembled, then live on the device. Activations of a short
//! prompt are small beside these and not counted.

use crate::Gpt2Config;

/// Bytes held while a checkpoint of shape `config` and `file_bytes` bytes loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadFootprint {
    /// The checkpoint's bytes (downloaded, never held whole).
    pub file: u64,
    /// The parameters as float32.
    pub parameters: u64,
    /// The token embedding as one float32 matrix: the largest tensor read, and what its split
    /// into blocks may copy.
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

    /// The most the host holds during the load, on the CPU or a GPU alike: the parameters and
    /// the token embedding once more (its bytes as they arrive before they become float32, or
    /// its blocks on their way to a GPU).
    pub fn host_bytes(&self) -> u64 {
        self.parameters + self.embedding
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
    fn gpt2_xl_holds_6_2_gb_of_weights_and_its_embedding_once_more() {
        let xl = Gpt2Config::new(48, 25, 1600, 1024);
        let f = LoadFootprint::new(&xl, 6_431_000_000);
        assert_eq!(f.parameters, 6_230_444_800);
        assert_eq!(f.embedding, 50257 * 1600 * 4);
        assert_eq!(f.largest_tensor, 1600 * 6400 * 4);
        assert_eq!(f.host_bytes(), 6_230_444_800 + 321_644_800);
        assert_eq!((f.device_bytes(true), f.device_bytes(false)), (6_230_444_800, 0));
    }
}
