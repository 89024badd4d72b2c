//! Mistral (HF `MistralForCausalLM`): Llama's blocks with an optional sliding attention
//! window (`sliding_window`), which the decoder's mask applies. llama.cpp stores Mistral
//! as `llama` in GGUF. Reference: transformers' `models/mistral/modeling_mistral.py`.

use crate::config::ModelConfig;
use crate::decoder::Decoder;
use crate::error::Result;
use crate::weights::TensorSource;
use candle_core::DType;

pub fn load(
    cfg: &ModelConfig,
    src: &mut dyn TensorSource,
    dtype: DType,
    max_positions: usize,
) -> Result<Decoder> {
    // Same tensors and blocks as Llama; only the mask differs (cfg.sliding_window).
    super::llama::load(cfg, src, dtype, max_positions)
}
