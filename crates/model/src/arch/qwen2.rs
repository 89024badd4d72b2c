//! Qwen2 / Qwen2.5 (HF `Qwen2ForCausalLM`, GGUF `qwen2`): Llama's blocks with biases on the
//! q/k/v projections (`cfg.attention_bias` is always set for this family) and NeoX-style
//! rotary pairs in GGUF too. Reference: transformers' `models/qwen2/modeling_qwen2.py`.

use crate::config::ModelConfig;
use crate::decoder::Decoder;
use crate::error::{Error, Result};
use crate::weights::TensorSource;
use candle_core::DType;

pub fn load(
    cfg: &ModelConfig,
    src: &mut dyn TensorSource,
    dtype: DType,
    max_positions: usize,
) -> Result<Decoder> {
    if !cfg.attention_bias {
        return Err(Error::format(
            src.path(),
            "Qwen2 checkpoints carry q/k/v biases; blk.0.attn_q.bias is missing",
        ));
    }
    super::llama::load(cfg, src, dtype, max_positions)
}
