//! Random weights in a real architecture's shapes (vLLM's `--load-format dummy`): tokens/s and
//! memory at a realistic size, on any device, without downloading weights. The numbers the
//! model computes mean nothing; the work it does is the real model's.

use super::TensorSource;
use crate::config::{Activation, Arch, ModelConfig, RopeConfig, RopeScaling, RopeStyle};
use crate::decoder::Embedding;
use crate::error::{Error, Result};
use crate::nn::linear::Linear;
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// The shapes `--arch` names, from each model's own `config.json`.
pub const PRESETS: &str = "smollm2-135m, llama-3-8b";

pub fn preset(name: &str) -> Result<ModelConfig> {
    let llama = |vocab, hidden, inter, layers, heads, kv, theta, max_pos, tie| ModelConfig {
        arch: Arch::Llama,
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
    };
    match name {
        // HuggingFaceTB/SmolLM2-135M-Instruct
        "smollm2-135m" => Ok(llama(49152, 576, 1536, 30, 9, 3, 100_000.0, 8192, true)),
        // meta-llama/Meta-Llama-3-8B
        "llama-3-8b" => Ok(llama(128_256, 4096, 14336, 32, 32, 8, 500_000.0, 8192, false)),
        "deepseek-v2-lite" => Err(Error::Unsupported(
            "--arch deepseek-v2-lite: the DeepSeek-V2 architecture (MLA, MoE) is not implemented yet"
                .into(),
        )),
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
