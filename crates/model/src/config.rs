//! GPT-2's shape, read from a Hugging Face Hub `config.json`, and the limits every shape must
//! keep to.
//!
//! burn's `#[derive(Config)]` is not used: its generated `Deserialize` ignores
//! `#[config(default)]` (a Hub file without `vocab_size` would fail), so the struct derives serde
//! directly and each Hub default is written once, as a `#[serde(default)]` function that
//! [`Gpt2Config::new`] also uses.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// The most transformer blocks a config may ask for (GPT-2 XL has 48).
pub const MAX_N_LAYER: usize = 96;
/// The most attention heads per block (GPT-2 XL has 25).
pub const MAX_N_HEAD: usize = 128;
/// The widest residual stream (GPT-2 XL is 1600 wide).
pub const MAX_N_EMBD: usize = 8192;
/// The longest context (every GPT-2 has 1024 positions).
pub const MAX_N_POSITIONS: usize = 8192;
/// The largest vocabulary (GPT-2's is 50,257 tokens).
pub const MAX_VOCAB_SIZE: usize = 262_144;
/// The widest MLP (GPT-2 XL's is 6400, 4 × n_embd).
pub const MAX_N_INNER: usize = 4 * MAX_N_EMBD;
/// The largest `config.json` read, in bytes (the Hub's are under 2 KB).
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The fields of a Hub GPT-2 `config.json` that decide the architecture. Other fields of the
/// file (dropout rates, task heads, ...) are accepted and ignored; missing optional fields take
/// transformers' `GPT2Config` defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// Width of the residual stream (d_model).
    pub n_embd: usize,
    /// Context length: the number of learned positions.
    pub n_positions: usize,
    /// Vocabulary size.
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_epsilon")]
    pub layer_norm_epsilon: f64,
    /// MLP width; `null` (or absent) means 4 × n_embd.
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// Must be GELU with the tanh approximation, as in every GPT-2 checkpoint.
    #[serde(default = "default_activation")]
    pub activation_function: String,
}

fn default_vocab_size() -> usize {
    50257
}

fn default_epsilon() -> f64 {
    1e-5
}

fn default_activation() -> String {
    "gelu_new".into()
}

impl Gpt2Config {
    /// A config of this shape with the Hub's defaults for everything else.
    pub fn new(n_layer: usize, n_head: usize, n_embd: usize, n_positions: usize) -> Self {
        Gpt2Config {
            n_layer,
            n_head,
            n_embd,
            n_positions,
            vocab_size: default_vocab_size(),
            layer_norm_epsilon: default_epsilon(),
            n_inner: None,
            activation_function: default_activation(),
        }
    }

    /// The same config with another vocabulary size.
    pub fn with_vocab_size(self, vocab_size: usize) -> Self {
        Gpt2Config { vocab_size, ..self }
    }

    /// The same config with another MLP width (`None`: 4 × n_embd).
    pub fn with_n_inner(self, n_inner: Option<usize>) -> Self {
        Gpt2Config { n_inner, ..self }
    }

    /// Parses and checks a Hub `config.json`.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ModelError::Config(format!(
                "the file has {} bytes, more than the limit of {MAX_CONFIG_BYTES} (MAX_CONFIG_BYTES); a GPT-2 config.json is under 2 KB",
                text.len()
            )));
        }
        let config: Gpt2Config = serde_json::from_str(text).map_err(|e| ModelError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that the fields describe a GPT-2 this crate can run, each within its limit, so that
    /// no arithmetic on them can overflow.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::Config(msg));
        let mut sizes = vec![
            ("n_layer", self.n_layer, MAX_N_LAYER, "MAX_N_LAYER"),
            ("n_head", self.n_head, MAX_N_HEAD, "MAX_N_HEAD"),
            ("n_embd", self.n_embd, MAX_N_EMBD, "MAX_N_EMBD"),
            (
                "n_positions",
                self.n_positions,
                MAX_N_POSITIONS,
                "MAX_N_POSITIONS",
            ),
            ("vocab_size", self.vocab_size, MAX_VOCAB_SIZE, "MAX_VOCAB_SIZE"),
        ];
        if let Some(n_inner) = self.n_inner {
            sizes.push(("n_inner", n_inner, MAX_N_INNER, "MAX_N_INNER"));
        }
        for (field, value, max, name) in sizes {
            if value == 0 {
                return bad(format!("{field} is 0; it must be at least 1"));
            }
            if value > max {
                return bad(format!(
                    "{field} is {value}, more than the limit of {max} ({name})"
                ));
            }
        }
        if self.n_embd % self.n_head != 0 {
            return bad(format!(
                "n_embd ({}) must be a multiple of n_head ({})",
                self.n_embd, self.n_head
            ));
        }
        let eps = self.layer_norm_epsilon;
        if !(eps.is_finite() && eps > 0.0) {
            return bad(format!(
                "layer_norm_epsilon is {eps}; it must be a positive number"
            ));
        }
        if !matches!(
            self.activation_function.as_str(),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast"
        ) {
            return bad(format!(
                "activation_function `{}` is not GELU with the tanh approximation (gelu_new)",
                self.activation_function
            ));
        }
        Ok(())
    }

    /// This shape as a Hub `config.json`.
    pub fn to_hub_json(&self) -> String {
        serde_json::json!({
            "model_type": "gpt2",
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_embd": self.n_embd,
            "n_positions": self.n_positions,
            "vocab_size": self.vocab_size,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "n_inner": self.n_inner,
            "activation_function": self.activation_function,
        })
        .to_string()
    }

    /// Width of each attention head.
    pub fn d_head(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Width of the MLP's hidden layer.
    pub fn d_mlp(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// The number of parameters of a GPT-2 of this shape (the tied unembedding counted once).
    /// Exact in `u64` for every config within the limits.
    pub fn parameters(&self) -> u64 {
        let (d, d_mlp) = (self.n_embd as u64, self.d_mlp() as u64);
        let block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * d_mlp + d_mlp) + (d_mlp * d + d);
        (self.vocab_size as u64 + self.n_positions as u64) * d + self.n_layer as u64 * block + 2 * d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hub_file_and_ignores_other_fields() {
        let text = r#"{"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
            "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768,
            "n_head": 12, "n_inner": null, "n_layer": 12, "n_positions": 1024,
            "resid_pdrop": 0.1, "vocab_size": 50257}"#;
        let config = Gpt2Config::from_json(text).unwrap();
        assert_eq!(config, Gpt2Config::new(12, 12, 768, 1024));
        assert_eq!((config.d_head(), config.d_mlp()), (64, 3072));
        assert_eq!(config.parameters(), 124_439_808, "GPT-2 small");
        assert_eq!(Gpt2Config::from_json(&config.to_hub_json()).unwrap(), config);
    }

    #[test]
    fn the_hub_json_reads_back_bit_for_bit() {
        // Found by fuzz_config_json: without serde_json's float_roundtrip, 1e-45 came back one
        // ulp off.
        for eps in [1e-45, 1e-5, 1e-12, 0.1 + 0.2] {
            let mut config = Gpt2Config::new(2, 2, 16, 8);
            config.layer_norm_epsilon = eps;
            assert_eq!(Gpt2Config::from_json(&config.to_hub_json()).unwrap(), config);
        }
    }

    #[test]
    fn missing_optional_fields_take_the_hub_defaults() {
        let config =
            Gpt2Config::from_json(r#"{"n_layer": 2, "n_head": 2, "n_embd": 16, "n_positions": 8}"#).unwrap();
        assert_eq!(config, Gpt2Config::new(2, 2, 16, 8));
        assert_eq!(config.vocab_size, 50257);
        assert_eq!(config.layer_norm_epsilon, 1e-5);
        assert_eq!(config.activation_function, "gelu_new");
    }

    #[test]
    fn gpt2_xl_is_within_the_limits() {
        let xl = Gpt2Config::new(48, 25, 1600, 1024);
        xl.validate().unwrap();
        assert_eq!(xl.parameters(), 1_557_611_200);
    }

    #[test]
    fn rejects_what_is_not_gpt2() {
        let err = Gpt2Config::from_json(r#"{"n_layer": 2, "n_head": 3, "n_embd": 16, "n_positions": 8}"#)
            .unwrap_err();
        assert!(err.to_string().contains("multiple of n_head"), "{err}");
        let err = Gpt2Config::from_json(
            r#"{"n_layer": 2, "n_head": 2, "n_embd": 16, "n_positions": 8, "activation_function": "relu"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("relu"), "{err}");
        let err = Gpt2Config::from_json(r#"{"n_head": 2}"#).unwrap_err();
        assert!(err.to_string().contains("n_layer"), "{err}");
    }

    #[test]
    fn every_size_is_bounded_before_any_arithmetic() {
        let base = r#""n_layer": 2, "n_head": 2, "n_embd": 16, "n_positions": 8"#;
        for (extra, expected) in [
            (r#""vocab_size": 0"#, "vocab_size is 0; it must be at least 1"),
            (
                r#""vocab_size": 1000000"#,
                "vocab_size is 1000000, more than the limit of 262144 (MAX_VOCAB_SIZE)",
            ),
            (r#""n_inner": 0"#, "n_inner is 0"),
            (r#""n_inner": 40000"#, "MAX_N_INNER"),
            (r#""layer_norm_epsilon": 0"#, "layer_norm_epsilon is 0"),
            (r#""layer_norm_epsilon": -1e-5"#, "must be a positive number"),
            (r#""vocab_size": -1"#, "invalid value: integer `-1`"),
            (r#""vocab_size": 1e300"#, "invalid type: floating point"),
        ] {
            let err = Gpt2Config::from_json(&format!("{{{base}, {extra}}}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("config.json: ") && err.contains(expected),
                "{extra}: {err}"
            );
        }
        for (field, value, limit) in [
            ("n_layer", 97, "MAX_N_LAYER"),
            ("n_head", 256, "MAX_N_HEAD"),
            ("n_embd", 16384, "MAX_N_EMBD"),
            ("n_positions", 1 << 40, "MAX_N_POSITIONS"),
        ] {
            let mut config = Gpt2Config::new(2, 2, 16, 8);
            match field {
                "n_layer" => config.n_layer = value,
                "n_head" => config.n_head = value,
                "n_embd" => config.n_embd = value,
                _ => config.n_positions = value,
            }
            let err = config.validate().unwrap_err().to_string();
            assert!(
                err.contains(&format!("{field} is {value}, more than")) && err.contains(limit),
                "{err}"
            );
        }
        let err = Gpt2Config::new(0, 2, 16, 8).validate().unwrap_err().to_string();
        assert!(err.contains("n_layer is 0"), "{err}");
        let huge = format!("{{{base}, \"pad\": \"{}\"}}", "x".repeat(MAX_CONFIG_BYTES));
        let err = Gpt2Config::from_json(&huge).unwrap_err().to_string();
        assert!(err.contains("MAX_CONFIG_BYTES"), "{err}");
    }
}
