//! The model's hyper-parameters: `HfConfig` (`hf.rs`) mirrors `config.json` as written by HF
//! transformers (4.x and 5.x shapes), and `ModelConfig` is the validated form (`validate.rs`)
//! the decoder is built from. GGUF metadata is turned into the same `ModelConfig` in
//! `gguf.rs`. Both read the fields every architecture shares and leave the rest to the
//! architecture's own hooks (`arch::Architecture`).

mod gguf;
mod hf;
mod rope;
mod validate;

pub use crate::arch::Arch;
pub use gguf::from_gguf;
pub use hf::{HfConfig, TokenIds};
pub use rope::{yarn_mscale, RopeConfig, RopeScaling, RopeStyle};

use crate::nn::moe::RouterConfig;

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
        self.moe.as_ref().is_some_and(|m| {
            l >= m.first_k_dense_replace && l.is_multiple_of(m.moe_layer_freq.max(1))
        })
    }

    /// Whether layer `l` attends through the sliding window.
    pub fn layer_is_sliding(&self, l: usize) -> bool {
        self.sliding_window.is_some()
            && self
                .sliding_layers
                .as_ref()
                .is_none_or(|v| v.get(l).copied().unwrap_or(false))
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
