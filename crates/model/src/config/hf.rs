//! `HfConfig`: a serde mirror of an HF `config.json`, and its conversion to `ModelConfig`.

use super::rope::parse_rope;
use super::{Activation, Arch, ModelConfig, RopeConfig, RopeStyle};
use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::Path;

/// `eos_token_id` is an int or a list of ints in the wild.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(x) => vec![*x],
            TokenIds::Many(v) => v.clone(),
        }
    }
}

/// Serde mirror of an HF `config.json` for the decoder-only families ethos supports.
#[derive(Debug, Deserialize)]
pub struct HfConfig {
    pub architectures: Option<Vec<String>>,
    pub model_type: Option<String>,
    pub vocab_size: Option<usize>,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: Option<f64>,
    pub rope_theta: Option<f64>,
    /// transformers 4.x and the official checkpoints.
    pub rope_scaling: Option<serde_json::Value>,
    /// transformers 5.x.
    pub rope_parameters: Option<serde_json::Value>,
    pub max_position_embeddings: Option<usize>,
    pub tie_word_embeddings: Option<bool>,
    pub attention_bias: Option<bool>,
    pub sliding_window: Option<usize>,
    pub use_sliding_window: Option<bool>,
    pub bos_token_id: Option<TokenIds>,
    pub eos_token_id: Option<TokenIds>,
    pub hidden_act: Option<String>,
    /// Gemma's name for `hidden_act`.
    pub hidden_activation: Option<String>,
    pub mlp_bias: Option<bool>,
    pub final_logit_softcapping: Option<f64>,
    pub attn_logit_softcapping: Option<f64>,
    // Sequence classifiers: `num_labels`, or as many labels as `id2label` names.
    pub num_labels: Option<usize>,
    pub id2label: Option<serde_json::Map<String, serde_json::Value>>,
    /// Every key the fields above do not name: an architecture reads its own from here
    /// (`HfConfig::fields`).
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

fn config_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>, path: &Path) -> Error {
    let field = e.path().to_string();
    let msg = crate::error::one_line(e.inner());
    if field == "." {
        Error::format(path, format!("not a valid config.json: {msg}"))
    } else {
        Error::config(path, &field, msg)
    }
}

impl HfConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::files::read_text(path)?;
        Self::from_json(&text, path)
    }

    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| config_error(e, path))
    }

    /// An architecture's own fields of `config.json` (a serde struct of `Option`s), read from
    /// the keys the generic mirror does not name; an error names the field.
    pub fn fields<T: DeserializeOwned>(&self, path: &Path) -> Result<T> {
        let all = serde_json::Value::Object(self.rest.clone());
        serde_path_to_error::deserialize(all).map_err(|e| config_error(e, path))
    }

    pub fn arch(&self, path: &Path) -> Result<Arch> {
        let names: Vec<&str> = self
            .architectures
            .iter()
            .flatten()
            .map(String::as_str)
            .chain(self.model_type.as_deref())
            .collect();
        if names.is_empty() {
            return Err(Error::config(
                path,
                "architectures",
                "missing (and no model_type)",
            ));
        }
        names
            .iter()
            .find_map(|n| Arch::from_hf_name(n))
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "{}: architecture {} (supported: {})",
                    path.display(),
                    names.join("/"),
                    Arch::supported_hf()
                ))
            })
    }

    pub fn into_config(self, path: &Path) -> Result<ModelConfig> {
        let arch = self.arch(path)?;
        let req =
            |v: Option<usize>, field: &str| v.ok_or_else(|| Error::config(path, field, "missing"));
        let hidden_size = req(self.hidden_size, "hidden_size")?;
        let num_heads = req(self.num_attention_heads, "num_attention_heads")?;
        if num_heads == 0 {
            return Err(Error::config(
                path,
                "num_attention_heads",
                "must be greater than 0",
            ));
        }
        let (act_field, act_name) = match (&self.hidden_activation, &self.hidden_act) {
            (Some(a), _) => ("hidden_activation", a.as_str()),
            (None, Some(a)) => ("hidden_act", a.as_str()),
            (None, None) => ("hidden_act", "silu"),
        };
        let hidden_act = match act_name {
            "silu" => Activation::Silu,
            "gelu_pytorch_tanh" | "gelu_tanh" => Activation::GeluTanh,
            other => {
                return Err(Error::config(
                    path,
                    act_field,
                    format!("`{other}` is not supported (silu, gelu_pytorch_tanh)"),
                ))
            }
        };
        for (field, v) in [
            ("final_logit_softcapping", self.final_logit_softcapping),
            ("attn_logit_softcapping", self.attn_logit_softcapping),
        ] {
            if let Some(v) = v {
                return Err(Error::config(
                    path,
                    field,
                    format!("{v}: logit soft-capping is not supported"),
                ));
            }
        }
        if self.mlp_bias == Some(true) {
            return Err(Error::config(
                path,
                "mlp_bias",
                "MLP biases are not supported",
            ));
        }
        let (theta, scaling) = parse_rope(&self, path)?;
        let num_layers = req(self.num_hidden_layers, "num_hidden_layers")?;
        let classifier = self
            .architectures
            .iter()
            .flatten()
            .any(|a| a.ends_with("ForSequenceClassification"));
        let num_labels = if classifier {
            let n = self
                .num_labels
                .or(self.id2label.as_ref().map(|m| m.len()))
                .unwrap_or(2);
            if n == 0 || n > 1 << 16 {
                return Err(Error::config(
                    path,
                    "num_labels",
                    format!("{n} is not in 1..=65536"),
                ));
            }
            Some(n)
        } else {
            None
        };
        let mut cfg = ModelConfig {
            arch,
            vocab_size: req(self.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: req(self.intermediate_size, "intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(num_heads),
            head_dim: self.head_dim.unwrap_or(hidden_size / num_heads),
            rms_norm_eps: self.rms_norm_eps.unwrap_or(1e-6),
            rope: RopeConfig {
                theta,
                style: RopeStyle::Half,
                scaling,
                freq_factors: None,
            },
            max_position_embeddings: self.max_position_embeddings.unwrap_or(4096),
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(false),
            attention_bias: self.attention_bias.unwrap_or(false),
            sliding_window: None,
            sliding_layers: None,
            rope_local: None,
            query_pre_attn_scalar: None,
            embed_scale: None,
            hidden_act,
            bos_token_id: self
                .bos_token_id
                .as_ref()
                .and_then(|t| t.to_vec().first().copied()),
            eos_token_ids: self
                .eos_token_id
                .as_ref()
                .map(TokenIds::to_vec)
                .unwrap_or_default(),
            mla: None,
            moe: None,
            num_labels,
        };
        arch.get().hf_config(&self, &mut cfg, path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RopeScaling;

    fn parse(json: &str) -> Result<ModelConfig> {
        let p = Path::new("config.json");
        HfConfig::from_json(json, p)?.into_config(p)
    }

    const BASE: &str = r#"{"architectures":["LlamaForCausalLM"],"vocab_size":100,"hidden_size":64,
        "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
        "rms_norm_eps":1e-5,"rope_theta":10000.0,"max_position_embeddings":256,"eos_token_id":[1,2]}"#;

    #[test]
    fn parses_a_llama_config() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.arch.name(), "llama");
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.eos_token_ids, vec![1, 2]);
    }

    #[test]
    fn missing_field_is_named() {
        let e = parse(&BASE.replace(r#""hidden_size":64,"#, ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config.json") && e.contains("hidden_size") && e.contains("missing"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_is_named() {
        let e = parse(&BASE.replace(r#""hidden_size":64"#, r#""hidden_size":"big""#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hidden_size"), "{e}");
    }

    #[test]
    fn unknown_architecture_is_rejected() {
        let e = parse(&BASE.replace("LlamaForCausalLM", "GPTNeoXForCausalLM"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("GPTNeoXForCausalLM") && e.contains("unsupported"),
            "{e}"
        );
    }

    #[test]
    fn reads_both_rope_shapes() {
        let v4 = BASE.replace(
            r#""rope_theta":10000.0"#,
            r#""rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
        );
        let v5 = BASE.replace(
            r#""rope_theta":10000.0"#,
            r#""rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
        );
        let (a, b) = (parse(&v4).unwrap(), parse(&v5).unwrap());
        assert_eq!(a.rope, b.rope);
        assert_eq!(a.rope.theta, 500000.0);
        assert!(matches!(a.rope.scaling, RopeScaling::Llama3 { .. }));
    }

    /// A zero, negative or non-number rotary factor is refused, naming the field, instead of
    /// turning every rotary angle into garbage.
    #[test]
    fn bad_rope_scaling_numbers_are_named() {
        for (scaling, field) in [
            (
                r#"{"rope_type":"linear","factor":0}"#,
                "rope_scaling.factor",
            ),
            (
                r#"{"rope_type":"linear","factor":-2.0}"#,
                "rope_scaling.factor",
            ),
            (
                r#"{"rope_type":"llama3","factor":8.0,"low_freq_factor":4.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
                "rope_scaling.high_freq_factor",
            ),
            (
                r#"{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":0}"#,
                "rope_scaling.original_max_position_embeddings",
            ),
            (
                r#"{"rope_type":"yarn","factor":1e400,"original_max_position_embeddings":4096}"#,
                "rope_scaling.factor",
            ),
        ] {
            let json = BASE.replace(
                r#""rope_theta":10000.0"#,
                &format!(r#""rope_theta":10000.0,"rope_scaling":{scaling}"#),
            );
            let e = parse(&json).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(field) && !e.contains('\n'), "{scaling}: {e}");
        }
    }

    #[test]
    fn indivisible_heads_are_rejected() {
        let e = parse(&BASE.replace(r#""num_key_value_heads":2"#, r#""num_key_value_heads":3"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_key_value_heads"), "{e}");
    }
}
