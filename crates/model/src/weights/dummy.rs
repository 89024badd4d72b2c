//! Random weights in a real architecture's shapes (vLLM's `--load-format dummy`): tokens/s and
//! memory at a realistic size, on any device, without downloading weights. The numbers the
//! model computes mean nothing; the work it does is the real model's.

use super::TensorSource;
use crate::config::{Activation, Arch, ModelConfig, RopeConfig, RopeScaling, RopeStyle};
use crate::decoder::Embedding;
use crate::error::{Error, Result};
use crate::ops::linear::Linear;
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// The shapes `--arch` names, from each model's own `config.json`.
pub const PRESETS: &str = "smollm2-135m, llama-3-8b, deepseek-v2-lite, deepseek-moe-mini";

/// deepseek-ai/DeepSeek-V2-Lite's config.json (15.7B parameters, 2.4B active).
const DEEPSEEK_V2_LITE: &str = r#"{"architectures":["DeepseekV2ForCausalLM"],"bos_token_id":100000,
 "eos_token_id":100001,"first_k_dense_replace":1,"hidden_act":"silu","hidden_size":2048,
 "intermediate_size":10944,"kv_lora_rank":512,"max_position_embeddings":163840,
 "moe_intermediate_size":1408,"moe_layer_freq":1,"n_group":1,"n_routed_experts":64,
 "n_shared_experts":2,"norm_topk_prob":false,"num_attention_heads":16,"num_experts_per_tok":6,
 "num_hidden_layers":27,"num_key_value_heads":16,"q_lora_rank":null,"qk_nope_head_dim":128,
 "qk_rope_head_dim":64,"rms_norm_eps":1e-06,"rope_scaling":{"beta_fast":32,"beta_slow":1,
 "factor":40,"mscale":0.707,"mscale_all_dim":0.707,"original_max_position_embeddings":4096,
 "type":"yarn"},"rope_theta":10000,"routed_scaling_factor":1.0,"scoring_func":"softmax",
 "tie_word_embeddings":false,"topk_group":1,"topk_method":"greedy","v_head_dim":128,
 "vocab_size":102400}"#;

/// DeepSeek-V2-Lite's block design (64 routed experts, 6 chosen, 2 shared, a dense first
/// layer, latent attention) at a quarter of its width and 4 layers: big enough that grouping
/// tokens by expert matters, small enough for a 2-core CPU (about 110M parameters).
const DEEPSEEK_MOE_MINI: &str = r#"{"architectures":["DeepseekV2ForCausalLM"],
 "first_k_dense_replace":1,"hidden_act":"silu","hidden_size":512,"intermediate_size":2736,
 "kv_lora_rank":128,"max_position_embeddings":4096,"moe_intermediate_size":352,
 "moe_layer_freq":1,"n_group":1,"n_routed_experts":64,"n_shared_experts":2,
 "norm_topk_prob":false,"num_attention_heads":8,"num_experts_per_tok":6,"num_hidden_layers":4,
 "q_lora_rank":null,"qk_nope_head_dim":64,"qk_rope_head_dim":32,"rms_norm_eps":1e-06,
 "rope_theta":10000,"routed_scaling_factor":1.0,"scoring_func":"softmax",
 "tie_word_embeddings":false,"topk_method":"greedy","v_head_dim":64,"vocab_size":32000}"#;

fn from_config_json(name: &str, json: &str) -> Result<ModelConfig> {
    let path = PathBuf::from(format!("dummy:{name}"));
    crate::config::HfConfig::from_json(json, &path)?.into_config(&path)
}

pub fn preset(name: &str) -> Result<ModelConfig> {
    let llama = |vocab, hidden, inter, layers, heads, kv, theta, max_pos, tie| ModelConfig {
        arch: Arch::by_name("llama").expect("llama is registered"),
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: inter,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kv,
        head_dim: hidden / heads,
        rms_norm_eps: 1e-5,
        rope: RopeConfig {
            theta,
            style: RopeStyle::Half,
            scaling: RopeScaling::None,
            freq_factors: None,
        },
        max_position_embeddings: max_pos,
        tie_word_embeddings: tie,
        attention_bias: false,
        sliding_window: None,
        sliding_layers: None,
        rope_local: None,
        query_pre_attn_scalar: None,
        embed_scale: None,
        hidden_act: Activation::Silu,
        bos_token_id: None,
        eos_token_ids: vec![],
        mla: None,
        moe: None,
        num_labels: None,
    };
    match name {
        // HuggingFaceTB/SmolLM2-135M-Instruct
        "smollm2-135m" => Ok(llama(49152, 576, 1536, 30, 9, 3, 100_000.0, 8192, true)),
        // meta-llama/Meta-Llama-3-8B
        "llama-3-8b" => Ok(llama(
            128_256, 4096, 14336, 32, 32, 8, 500_000.0, 8192, false,
        )),
        "deepseek-v2-lite" => from_config_json(name, DEEPSEEK_V2_LITE),
        "deepseek-moe-mini" => from_config_json(name, DEEPSEEK_MOE_MINI),
        other => Err(Error::Unsupported(format!(
            "--arch {other}: no such shape (known: {PRESETS})"
        ))),
    }
}

/// Normal(0, 0.02) matrices (HF's `initializer_range`) and unit norm weights.
pub struct DummySource {
    name: PathBuf,
    device: Device,
    dtype: DType,
    /// The embedding, kept so a tied head shares it as a real tied model does.
    embedding: Option<Tensor>,
}

impl DummySource {
    pub fn new(arch: &str, device: &Device, dtype: DType) -> Self {
        Self {
            name: PathBuf::from(format!("dummy:{arch}")),
            device: device.clone(),
            dtype,
            embedding: None,
        }
    }

    fn random(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Ok(Tensor::randn(0f32, 0.02, shape, &self.device)?.to_dtype(dtype)?)
    }
}

impl TensorSource for DummySource {
    fn path(&self) -> &Path {
        &self.name
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn contains(&self, _name: &str) -> bool {
        true
    }

    fn dense(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        if name.ends_with("norm.weight") {
            return Ok(Tensor::ones(shape, dtype, &self.device)?);
        }
        self.random(shape, dtype)
    }

    fn linear(&mut self, _name: &str, shape: [usize; 2], bias: Option<Tensor>) -> Result<Linear> {
        Linear::dense(self.random(&shape, self.dtype)?, bias)
    }

    fn embedding(&mut self, _name: &str, shape: [usize; 2]) -> Result<Embedding> {
        let w = self.random(&shape, self.dtype)?;
        self.embedding = Some(w.clone());
        Ok(Embedding::Dense(w))
    }

    fn tied_head(&mut self, name: &str, shape: [usize; 2]) -> Result<Linear> {
        let w = match &self.embedding {
            Some(w) => w.clone(),
            None => self
                .random(&shape, self.dtype)
                .map_err(|e| Error::Msg(format!("{name}: {e}")))?,
        };
        Linear::dense(w, None)
    }
}
