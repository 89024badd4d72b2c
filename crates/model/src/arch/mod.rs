//! One short file per architecture family: which parts its blocks use and under which names.
pub mod deepseek;
pub mod gemma3;
pub mod llama;
pub mod mistral;
pub mod qwen2;

use crate::config::{Arch, ModelConfig};
use crate::decoder::Decoder;
use crate::error::Result;
use crate::nn::linear::Linear;
use crate::weights::TensorSource;
use candle_core::DType;

/// The output head: tied to the embeddings (when the config says so or the checkpoint has no
/// `lm_head.weight`), else its own matrix.
pub(crate) fn lm_head(cfg: &ModelConfig, src: &mut dyn TensorSource) -> Result<Linear> {
    let shape = [cfg.vocab_size, cfg.hidden_size];
    if cfg.tie_word_embeddings || !src.contains("lm_head.weight") {
        src.tied_head("model.embed_tokens.weight", shape)
    } else {
        src.linear("lm_head.weight", shape, None)
    }
}

/// Builds the decoder of `cfg` from `src`, computing in `dtype`, with a rotary table of
/// `max_positions` entries.
pub fn build(
    cfg: &ModelConfig,
    src: &mut dyn TensorSource,
    dtype: DType,
    max_positions: usize,
) -> Result<Decoder> {
    if cfg.num_labels.is_some()
        && matches!(cfg.arch, Arch::Gemma3 | Arch::DeepseekV2 | Arch::DeepseekV3)
    {
        return Err(crate::error::Error::Unsupported(format!(
            "{}: sequence classification on {} (supported: Llama, Mistral, Qwen2)",
            src.path().display(),
            cfg.arch.name()
        )));
    }
    match cfg.arch {
        Arch::Llama => llama::load(cfg, src, dtype, max_positions),
        Arch::Mistral => mistral::load(cfg, src, dtype, max_positions),
        Arch::Qwen2 => qwen2::load(cfg, src, dtype, max_positions),
        Arch::Gemma3 => gemma3::load(cfg, src, dtype, max_positions),
        Arch::DeepseekV2 | Arch::DeepseekV3 => deepseek::load(cfg, src, dtype, max_positions),
    }
}
