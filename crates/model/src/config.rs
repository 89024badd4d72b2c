//! The model's hyper-parameters: `HfConfig` mirrors `config.json` as written by HF transformers
//! (4.x and 5.x shapes), and `ModelConfig` is the validated form the decoder is built from.
//! GGUF metadata is turned into the same `ModelConfig` in `weights::gguf`.

use crate::error::{Error, Result};
use crate::nn::moe::{RouterConfig, ScoringFunc, TopkMethod};
use serde::Deserialize;
use std::path::Path;

/// The architecture families ethos implements. Each has one file under `arch/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Mistral,
    Qwen2,
    Gemma3,
    DeepseekV2,
    DeepseekV3,
}

impl Arch {
    pub const SUPPORTED: &'static str = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, \
         Gemma3ForCausalLM, DeepseekV2ForCausalLM, DeepseekV3ForCausalLM";

    /// From an HF `architectures` entry or `model_type`.
    pub fn from_hf_name(name: &str) -> Option<Arch> {
        match name {
            "LlamaForCausalLM" | "LlamaForSequenceClassification" | "llama" => Some(Arch::Llama),
            "MistralForCausalLM" | "MistralForSequenceClassification" | "mistral" => {
                Some(Arch::Mistral)
            }
            "Qwen2ForCausalLM" | "Qwen2ForSequenceClassification" | "qwen2" => Some(Arch::Qwen2),
            "Gemma3ForCausalLM" | "gemma3_text" => Some(Arch::Gemma3),
            "DeepseekV2ForCausalLM" | "deepseek_v2" => Some(Arch::DeepseekV2),
            "DeepseekV3ForCausalLM" | "deepseek_v3" => Some(Arch::DeepseekV3),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma3 => "gemma3",
            Arch::DeepseekV2 => "deepseek_v2",
            Arch::DeepseekV3 => "deepseek_v3",
        }
    }

    pub fn is_deepseek(&self) -> bool {
        matches!(self, Arch::DeepseekV2 | Arch::DeepseekV3)
    }
}

/// How rotary embeddings pair the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// HF's `rotate_half`: dimension i pairs with i + d/2 (NeoX style).
    Half,
    /// Adjacent pairs (2i, 2i+1): the layout llama.cpp's converter gives llama Q/K weights in GGUF.
    Interleaved,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    Linear {
        factor: f64,
    },
    /// Llama 3.1/3.2 frequency-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    /// YaRN (DeepSeek-V2/V3): frequencies blended between interpolation and extrapolation by
    /// a ramp over `beta_fast..beta_slow` rotations; cos/sin scaled by
    /// `mscale(factor, mscale) / mscale(factor, mscale_all_dim)`.
    Yarn {
        factor: f64,
        original_max_position_embeddings: usize,
        beta_fast: f64,
        beta_slow: f64,
        mscale: f64,
        mscale_all_dim: f64,
        /// Round the ramp's ends to whole dimensions (transformers' default).
        truncate: bool,
    },
}

/// YaRN's magnitude correction `0.1 * m * ln(scale) + 1` (1 when not extending).
pub fn yarn_mscale(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * scale.ln() + 1.0
    }
}

impl RopeScaling {
    /// The factor cos/sin are multiplied by.
    pub fn cos_sin_factor(&self) -> f64 {
        match self {
            RopeScaling::Yarn {
                factor,
                mscale,
                mscale_all_dim,
                ..
            } => {
                if *mscale != 0.0 && *mscale_all_dim != 0.0 {
                    yarn_mscale(*factor, *mscale) / yarn_mscale(*factor, *mscale_all_dim)
                } else {
                    yarn_mscale(*factor, 1.0)
                }
            }
            _ => 1.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    pub style: RopeStyle,
    pub scaling: RopeScaling,
    /// Per-frequency divisors stored in GGUF as `rope_freqs.weight` (llama 3 scaling, baked).
    pub freq_factors: Option<Vec<f32>>,
}

/// The gate activation of the gated MLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// The tanh approximation of GELU (HF `gelu_pytorch_tanh`).
    GeluTanh,
}

/// Multi-head latent attention (DeepSeek-V2/V3): queries through an optional low-rank
/// bottleneck, keys and values from one compressed latent of `kv_lora_rank` plus a shared
/// rotary key of `qk_rope_head_dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct MlaConfig {
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
}

impl MlaConfig {
    pub fn qk_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }
}

/// DeepSeek's mixture of experts: which layers have one, its router and expert sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct MoeConfig {
    pub router: RouterConfig,
    pub moe_intermediate_size: usize,
    pub n_shared_experts: usize,
    pub first_k_dense_replace: usize,
    pub moe_layer_freq: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope: RopeConfig,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2).
    pub attention_bias: bool,
    pub sliding_window: Option<usize>,
    /// Which layers use `sliding_window`; `None`: all of them (when a window is set).
    pub sliding_layers: Option<Vec<bool>>,
    /// Rotary settings of the sliding-window layers where they differ (Gemma 3: base 10k).
    pub rope_local: Option<RopeConfig>,
    /// Attention scores are scaled by `1/sqrt(this)`; `None`: `head_dim`.
    pub query_pre_attn_scalar: Option<f64>,
    /// Embeddings are multiplied by this (Gemma: sqrt(hidden_size)), rounded to the compute dtype.
    pub embed_scale: Option<f64>,
    pub hidden_act: Activation,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// DeepSeek: latent attention (then `head_dim` is the rotary part, `qk_rope_head_dim`).
    pub mla: Option<MlaConfig>,
    /// DeepSeek: mixture-of-experts layers.
    pub moe: Option<MoeConfig>,
    /// A sequence classifier (`...ForSequenceClassification`, e.g. a reward model): the head
    /// is `score.weight` with this many outputs instead of the vocabulary.
    pub num_labels: Option<usize>,
}

impl ModelConfig {
    /// Whether layer `l`'s feed-forward is a mixture of experts (DeepSeek's rule: after the
    /// first `first_k_dense_replace` layers, every `moe_layer_freq`-th).
    pub fn layer_is_moe(&self, l: usize) -> bool {
        self.moe
            .as_ref()
            .is_some_and(|m| l >= m.first_k_dense_replace && l % m.moe_layer_freq.max(1) == 0)
    }

    /// Whether layer `l` attends through the sliding window.
    pub fn layer_is_sliding(&self, l: usize) -> bool {
        self.sliding_window.is_some()
            && self
                .sliding_layers
                .as_ref()
                .map_or(true, |v| v.get(l).copied().unwrap_or(false))
    }

    /// The scale applied to attention scores.
    pub fn attention_scale(&self) -> f64 {
        if let Some(m) = &self.mla {
            // DeepSeek corrects the scale for YaRN by mscale(factor, mscale_all_dim)^2.
            let base = 1.0 / (m.qk_head_dim() as f64).sqrt();
            return match self.rope.scaling {
                RopeScaling::Yarn {
                    factor,
                    mscale_all_dim,
                    ..
                } if mscale_all_dim != 0.0 => base * yarn_mscale(factor, mscale_all_dim).powi(2),
                _ => base,
            };
        }
        1.0 / self
            .query_pre_attn_scalar
            .unwrap_or(self.head_dim as f64)
            .sqrt()
    }

    /// Checks the invariants the decoder relies on; `source` names the file in errors.
    pub fn validate(&self, source: &Path) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(Error::config(source, field, "must be greater than 0"));
            }
            // Guards against sizes that would overflow or allocate absurd buffers.
            if v > 1 << 24 {
                return Err(Error::config(
                    source,
                    field,
                    format!("{v} exceeds the limit 2^24"),
                ));
            }
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return Err(Error::config(
                source,
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.num_kv_heads, self.num_heads
                ),
            ));
        }
        if self.head_dim % 2 != 0 {
            return Err(Error::config(
                source,
                "head_dim",
                format!("{} is odd; rotary needs pairs", self.head_dim),
            ));
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return Err(Error::config(
                source,
                "rms_norm_eps",
                format!("{} is not in (0, 1)", self.rms_norm_eps),
            ));
        }
        if !(self.rope.theta > 0.0 && self.rope.theta.is_finite()) {
            return Err(Error::config(
                source,
                "rope_theta",
                format!("{} is not a positive number", self.rope.theta),
            ));
        }
        if let Some(f) = &self.rope.freq_factors {
            if f.len() != self.head_dim / 2 {
                return Err(Error::config(
                    source,
                    "rope_freqs",
                    format!(
                        "has {} entries, head_dim/2 is {}",
                        f.len(),
                        self.head_dim / 2
                    ),
                ));
            }
        }
        if let Some(v) = &self.sliding_layers {
            if v.len() != self.num_layers {
                return Err(Error::config(
                    source,
                    "layer_types",
                    format!(
                        "has {} entries, num_hidden_layers is {}",
                        v.len(),
                        self.num_layers
                    ),
                ));
            }
        }
        if self.sliding_window == Some(0) {
            return Err(Error::config(
                source,
                "sliding_window",
                "must be at least 1",
            ));
        }
        if let Some(q) = self.query_pre_attn_scalar {
            if !(q > 0.0 && q.is_finite()) {
                return Err(Error::config(
                    source,
                    "query_pre_attn_scalar",
                    format!("{q} is not a positive number"),
                ));
            }
        }
        if let Some(m) = &self.mla {
            let dims = [
                ("kv_lora_rank", m.kv_lora_rank),
                ("qk_nope_head_dim", m.qk_nope_head_dim),
                ("qk_rope_head_dim", m.qk_rope_head_dim),
                ("v_head_dim", m.v_head_dim),
                ("q_lora_rank", m.q_lora_rank.unwrap_or(1)),
            ];
            for (field, v) in dims {
                if v == 0 || v > 1 << 16 {
                    return Err(Error::config(
                        source,
                        field,
                        format!("{v} is not in 1..=65536"),
                    ));
                }
            }
            if m.qk_rope_head_dim % 2 != 0 {
                return Err(Error::config(
                    source,
                    "qk_rope_head_dim",
                    format!("{} is odd; rotary needs pairs", m.qk_rope_head_dim),
                ));
            }
        }
        if let Some(m) = &self.moe {
            m.router
                .validate()
                .map_err(|(field, msg)| Error::config(source, field, msg))?;
            if m.moe_intermediate_size == 0 || m.moe_intermediate_size > 1 << 24 {
                return Err(Error::config(
                    source,
                    "moe_intermediate_size",
                    format!("{} is not in 1..=2^24", m.moe_intermediate_size),
                ));
            }
            if m.router.n_experts > 1 << 16 {
                return Err(Error::config(
                    source,
                    "n_routed_experts",
                    format!("{} exceeds the limit 65536", m.router.n_experts),
                ));
            }
            if m.moe_layer_freq == 0 {
                return Err(Error::config(
                    source,
                    "moe_layer_freq",
                    "must be at least 1",
                ));
            }
        }
        if let RopeScaling::Yarn {
            factor,
            original_max_position_embeddings,
            ..
        } = self.rope.scaling
        {
            if !(factor > 0.0 && factor.is_finite()) || original_max_position_embeddings == 0 {
                return Err(Error::config(
                    source,
                    "rope_scaling",
                    "yarn needs a positive factor and original_max_position_embeddings",
                ));
            }
        }
        for &e in &self.eos_token_ids {
            if e as usize >= self.vocab_size {
                return Err(Error::config(
                    source,
                    "eos_token_id",
                    format!("{e} is outside the vocabulary ({})", self.vocab_size),
                ));
            }
        }
        Ok(())
    }

    /// Parameters one token's forward pass reads: all of them, less the routed experts a
    /// token is not sent to.
    pub fn active_parameter_count(&self) -> u64 {
        let Some(m) = &self.moe else {
            return self.parameter_count();
        };
        let idle = (m.router.n_experts - m.router.top_k) as u64
            * 3
            * self.hidden_size as u64
            * m.moe_intermediate_size as u64;
        let moe_layers = (0..self.num_layers)
            .filter(|&l| self.layer_is_moe(l))
            .count() as u64;
        self.parameter_count() - moe_layers * idle
    }

    /// Bytes per token of a cache holding every head's keys and values, expanded (what
    /// multi-head attention without a latent would cache), in elements of `elem` bytes.
    pub fn expanded_kv_bytes_per_token(&self, elem: usize) -> usize {
        let per_layer = match &self.mla {
            Some(m) => self.num_heads * (m.qk_head_dim() + m.v_head_dim),
            None => 2 * self.num_kv_heads * self.head_dim,
        };
        self.num_layers * per_layer * elem
    }

    /// Parameters of the transformer (embeddings counted once when tied).
    pub fn parameter_count(&self) -> u64 {
        let (h, i, v) = (
            self.hidden_size as u64,
            self.intermediate_size as u64,
            self.vocab_size as u64,
        );
        let (q, kv) = (
            (self.num_heads * self.head_dim) as u64,
            (self.num_kv_heads * self.head_dim) as u64,
        );
        let bias = if self.attention_bias { q + 2 * kv } else { 0 };
        let attn = match &self.mla {
            None => h * q + 2 * h * kv + q * h + bias,
            Some(m) => {
                let heads = self.num_heads as u64;
                let qk = m.qk_head_dim() as u64;
                let (r, rope) = (m.kv_lora_rank as u64, m.qk_rope_head_dim as u64);
                let q_part = match m.q_lora_rank {
                    Some(ql) => h * ql as u64 + ql as u64 + ql as u64 * heads * qk,
                    None => h * heads * qk,
                };
                let kv_part =
                    h * (r + rope) + r + r * heads * (m.qk_nope_head_dim + m.v_head_dim) as u64;
                q_part + kv_part + heads * m.v_head_dim as u64 * h
            }
        };
        let ffn: u64 = (0..self.num_layers)
            .map(|l| match &self.moe {
                Some(m) if self.layer_is_moe(l) => {
                    let mi = m.moe_intermediate_size as u64;
                    let experts = (m.router.n_experts + m.n_shared_experts) as u64;
                    experts * 3 * h * mi + m.router.n_experts as u64 * h
                }
                _ => 3 * h * i,
            })
            .sum();
        let per_layer = attn + 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_layers as u64 * per_layer + ffn + h + head
    }
}

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
    /// Gemma 3: the attention scale is 1/sqrt(query_pre_attn_scalar).
    pub query_pre_attn_scalar: Option<f64>,
    /// Gemma 3: `sliding_attention` / `full_attention` per layer (transformers 4.5x and 5).
    pub layer_types: Option<Vec<String>>,
    /// Gemma 3 without `layer_types`: every n-th layer is global.
    pub sliding_window_pattern: Option<usize>,
    #[serde(rename = "_sliding_window_pattern")]
    pub sliding_window_pattern_private: Option<usize>,
    /// Gemma 3 (transformers 4): the rope base of the sliding layers.
    pub rope_local_base_freq: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    pub attn_logit_softcapping: Option<f64>,
    // DeepSeek-V2/V3: latent attention.
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: Option<usize>,
    pub qk_nope_head_dim: Option<usize>,
    pub qk_rope_head_dim: Option<usize>,
    pub v_head_dim: Option<usize>,
    /// DeepSeek-V3 (transformers 5): false pairs rotary dimensions by halves.
    pub rope_interleave: Option<bool>,
    // DeepSeek-V2/V3: mixture of experts.
    pub n_routed_experts: Option<usize>,
    pub n_shared_experts: Option<usize>,
    pub num_experts_per_tok: Option<usize>,
    pub moe_intermediate_size: Option<usize>,
    pub first_k_dense_replace: Option<usize>,
    pub moe_layer_freq: Option<usize>,
    pub routed_scaling_factor: Option<f64>,
    pub norm_topk_prob: Option<bool>,
    pub topk_method: Option<String>,
    pub scoring_func: Option<String>,
    pub n_group: Option<usize>,
    pub topk_group: Option<usize>,
    // Sequence classifiers: `num_labels`, or as many labels as `id2label` names.
    pub num_labels: Option<usize>,
    pub id2label: Option<serde_json::Map<String, serde_json::Value>>,
}

impl HfConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, path)
    }

    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let msg = crate::error::one_line(e.inner());
            if field == "." {
                Error::format(path, format!("not a valid config.json: {msg}"))
            } else {
                Error::config(path, &field, msg)
            }
        })
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
                    Arch::SUPPORTED
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
            (None, None) if arch == Arch::Gemma3 => ("hidden_activation", "gelu_pytorch_tanh"),
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
        let gemma = arch == Arch::Gemma3;
        let (sliding_layers, rope_local) = if gemma {
            let layers = match &self.layer_types {
                Some(types) => types
                    .iter()
                    .map(|t| match t.as_str() {
                        "sliding_attention" => Ok(true),
                        "full_attention" => Ok(false),
                        other => Err(Error::config(
                            path,
                            "layer_types",
                            format!("`{other}` (sliding_attention or full_attention)"),
                        )),
                    })
                    .collect::<Result<Vec<bool>>>()?,
                None => {
                    let n = self
                        .sliding_window_pattern
                        .or(self.sliding_window_pattern_private)
                        .unwrap_or(6);
                    (0..num_layers)
                        .map(|i| n == 0 || (i + 1) % n != 0)
                        .collect()
                }
            };
            let local = RopeConfig {
                theta: local_rope_theta(&self).unwrap_or(10_000.0),
                style: RopeStyle::Half,
                scaling: RopeScaling::None,
                freq_factors: None,
            };
            (Some(layers), Some(local))
        } else {
            (None, None)
        };
        let (mla, moe) = if arch.is_deepseek() {
            (Some(self.mla(path)?), self.moe(arch, path)?)
        } else {
            (None, None)
        };
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
        let cfg = ModelConfig {
            arch,
            vocab_size: req(self.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: req(self.intermediate_size, "intermediate_size")?,
            num_layers,
            num_heads,
            // Latent attention has one latent per token, shared by all heads.
            num_kv_heads: match &mla {
                Some(_) => num_heads,
                None => self.num_key_value_heads.unwrap_or(num_heads),
            },
            head_dim: match &mla {
                Some(m) => m.qk_rope_head_dim,
                None => self.head_dim.unwrap_or(hidden_size / num_heads),
            },
            rms_norm_eps: self.rms_norm_eps.unwrap_or(1e-6),
            rope: RopeConfig {
                theta,
                // DeepSeek's rotary pairs adjacent dimensions (transformers 5 may say otherwise).
                style: if arch.is_deepseek() && self.rope_interleave != Some(false) {
                    RopeStyle::Interleaved
                } else {
                    RopeStyle::Half
                },
                scaling,
                freq_factors: None,
            },
            max_position_embeddings: self.max_position_embeddings.unwrap_or(4096),
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(gemma),
            attention_bias: match arch {
                Arch::Qwen2 => true,
                _ => self.attention_bias.unwrap_or(false),
            },
            sliding_window: match arch {
                Arch::Mistral => self.sliding_window,
                Arch::Qwen2 if self.use_sliding_window == Some(true) => self.sliding_window,
                Arch::Gemma3 => self.sliding_window,
                _ => None,
            },
            sliding_layers,
            rope_local,
            query_pre_attn_scalar: if gemma {
                Some(self.query_pre_attn_scalar.unwrap_or(256.0))
            } else {
                None
            },
            embed_scale: gemma.then(|| (hidden_size as f64).sqrt()),
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
            mla,
            moe,
            num_labels,
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn mla(&self, path: &Path) -> Result<MlaConfig> {
        let req =
            |v: Option<usize>, field: &str| v.ok_or_else(|| Error::config(path, field, "missing"));
        Ok(MlaConfig {
            q_lora_rank: self.q_lora_rank,
            kv_lora_rank: req(self.kv_lora_rank, "kv_lora_rank")?,
            qk_nope_head_dim: req(self.qk_nope_head_dim, "qk_nope_head_dim")?,
            qk_rope_head_dim: req(self.qk_rope_head_dim, "qk_rope_head_dim")?,
            v_head_dim: req(self.v_head_dim, "v_head_dim")?,
        })
    }

    /// DeepSeek's experts; `None` for a checkpoint without routed experts (all layers dense).
    /// V2 defaults to `greedy` routing on softmax scores, V3 to `noaux_tc` on sigmoid scores
    /// (transformers 5 writes neither field).
    fn moe(&self, arch: Arch, path: &Path) -> Result<Option<MoeConfig>> {
        let Some(n_experts) = self.n_routed_experts else {
            return Ok(None);
        };
        let v3 = arch == Arch::DeepseekV3;
        let method_name =
            self.topk_method
                .as_deref()
                .unwrap_or(if v3 { "noaux_tc" } else { "greedy" });
        let method = TopkMethod::parse(method_name).ok_or_else(|| {
            Error::config(
                path,
                "topk_method",
                format!(
                    "`{method_name}` is not supported (greedy, group_limited_greedy, noaux_tc)"
                ),
            )
        })?;
        let scoring_name =
            self.scoring_func
                .as_deref()
                .unwrap_or(if v3 { "sigmoid" } else { "softmax" });
        let scoring = ScoringFunc::parse(scoring_name).ok_or_else(|| {
            Error::config(
                path,
                "scoring_func",
                format!("`{scoring_name}` is not supported (softmax, sigmoid)"),
            )
        })?;
        let top_k = self
            .num_experts_per_tok
            .ok_or_else(|| Error::config(path, "num_experts_per_tok", "missing"))?;
        Ok(Some(MoeConfig {
            router: RouterConfig {
                method,
                scoring,
                n_experts,
                top_k,
                n_group: self.n_group.unwrap_or(1),
                topk_group: self.topk_group.unwrap_or(1),
                norm_topk_prob: self.norm_topk_prob.unwrap_or(false),
                routed_scaling_factor: self.routed_scaling_factor.unwrap_or(1.0) as f32,
            },
            moe_intermediate_size: self
                .moe_intermediate_size
                .ok_or_else(|| Error::config(path, "moe_intermediate_size", "missing"))?,
            n_shared_experts: self.n_shared_experts.unwrap_or(0),
            first_k_dense_replace: self.first_k_dense_replace.unwrap_or(0),
            moe_layer_freq: self.moe_layer_freq.unwrap_or(1),
        }))
    }
}

/// The rope base of Gemma 3's sliding layers: `rope_local_base_freq` (transformers 4) or
/// `rope_parameters.sliding_attention.rope_theta` (transformers 5).
fn local_rope_theta(cfg: &HfConfig) -> Option<f64> {
    cfg.rope_parameters
        .as_ref()
        .and_then(|p| p.get("sliding_attention"))
        .and_then(|p| p.get("rope_theta"))
        .and_then(|v| v.as_f64())
        .or(cfg.rope_local_base_freq)
}

/// Reads rope theta and scaling from either `rope_theta` + `rope_scaling` (transformers 4 and
/// the official checkpoints) or `rope_parameters` (transformers 5).
fn parse_rope(cfg: &HfConfig, path: &Path) -> Result<(f64, RopeScaling)> {
    let params = cfg.rope_parameters.as_ref().filter(|v| !v.is_null());
    // transformers 5 writes Gemma 3's as {"full_attention": {...}, "sliding_attention": {...}}.
    let params = params.map(|p| p.get("full_attention").unwrap_or(p));
    let scaling = cfg
        .rope_scaling
        .as_ref()
        .filter(|v| !v.is_null())
        .or(params);
    let theta = params
        .and_then(|p| p.get("rope_theta"))
        .and_then(|v| v.as_f64())
        .or(cfg.rope_theta)
        .unwrap_or(10000.0);
    let Some(s) = scaling else {
        return Ok((theta, RopeScaling::None));
    };
    let field = if cfg.rope_scaling.is_some() {
        "rope_scaling"
    } else {
        "rope_parameters"
    };
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let num = |k: &str| -> Result<f64> {
        s.get(k)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| Error::config(path, &format!("{field}.{k}"), "missing or not a number"))
    };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: num("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        },
        "yarn" => {
            let or = |k: &str, default: f64| -> Result<f64> {
                match s.get(k) {
                    None | Some(serde_json::Value::Null) => Ok(default),
                    Some(_) => num(k),
                }
            };
            RopeScaling::Yarn {
                factor: num("factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
                beta_fast: or("beta_fast", 32.0)?,
                beta_slow: or("beta_slow", 1.0)?,
                mscale: or("mscale", 0.0)?,
                mscale_all_dim: or("mscale_all_dim", 0.0)?,
                truncate: s.get("truncate").and_then(|v| v.as_bool()).unwrap_or(true),
            }
        }
        other => {
            return Err(Error::config(
                path,
                &format!("{field}.rope_type"),
                format!("`{other}` is not supported (default, linear, llama3, yarn)"),
            ))
        }
    };
    Ok((theta, scaling))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.arch, Arch::Llama);
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

    const GEMMA_V4: &str = r#"{"architectures":["Gemma3ForCausalLM"],"vocab_size":100,"hidden_size":64,
        "intermediate_size":128,"num_hidden_layers":7,"num_attention_heads":4,"num_key_value_heads":1,
        "head_dim":32,"query_pre_attn_scalar":24,"rope_theta":1000000.0,"rope_local_base_freq":10000.0,
        "sliding_window":512,"_sliding_window_pattern":6,"rope_scaling":null,"final_logit_softcapping":null,
        "hidden_activation":"gelu_pytorch_tanh","max_position_embeddings":256}"#;

    #[test]
    fn reads_both_gemma3_config_shapes() {
        let v5 = GEMMA_V4
            .replace(
                r#""rope_theta":1000000.0,"rope_local_base_freq":10000.0,"#,
                r#""rope_parameters":{"full_attention":{"rope_type":"default","rope_theta":1000000.0},"sliding_attention":{"rope_type":"default","rope_theta":10000.0}},"#,
            )
            .replace(
                r#""_sliding_window_pattern":6"#,
                r#""layer_types":["sliding_attention","sliding_attention","sliding_attention","sliding_attention","sliding_attention","full_attention","sliding_attention"]"#,
            );
        let (a, b) = (parse(GEMMA_V4).unwrap(), parse(&v5).unwrap());
        assert_eq!(a, b);
        assert_eq!(a.arch, Arch::Gemma3);
        assert_eq!(a.rope.theta, 1e6);
        assert_eq!(a.rope_local.as_ref().unwrap().theta, 1e4);
        // Every sixth layer is global: layer 5 of 0..7.
        let sliding: Vec<bool> = (0..7).map(|l| a.layer_is_sliding(l)).collect();
        assert_eq!(sliding, [true, true, true, true, true, false, true]);
        assert_eq!(a.attention_scale(), 1.0 / 24f64.sqrt());
        assert_eq!(a.embed_scale, Some(8.0));
        assert_eq!(a.hidden_act, Activation::GeluTanh);
        assert!(a.tie_word_embeddings);
    }

    #[test]
    fn gemma3_bad_fields_are_named() {
        let e = parse(&GEMMA_V4.replace(
            r#""final_logit_softcapping":null"#,
            r#""final_logit_softcapping":30.0"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("final_logit_softcapping"), "{e}");
        let e = parse(&GEMMA_V4.replace("gelu_pytorch_tanh", "relu"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hidden_activation") && e.contains("relu"), "{e}");
        let e = parse(&GEMMA_V4.replace(
            r#""_sliding_window_pattern":6"#,
            r#""layer_types":["sliding_attention","full_attention"]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("layer_types") && e.contains("2 entries"), "{e}");
        let e = parse(&GEMMA_V4.replace(
            r#""_sliding_window_pattern":6"#,
            r#""layer_types":["sliding_attention","local","sliding_attention","sliding_attention","sliding_attention","full_attention","sliding_attention"]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("layer_types") && e.contains("local"), "{e}");
    }

    #[test]
    fn indivisible_heads_are_rejected() {
        let e = parse(&BASE.replace(r#""num_key_value_heads":2"#, r#""num_key_value_heads":3"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_key_value_heads"), "{e}");
    }
}
