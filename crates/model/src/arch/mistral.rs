//! Mistral (HF `MistralForCausalLM`): Llama's blocks with an optional sliding attention
//! window (`sliding_window`), which the decoder's mask applies. llama.cpp stores Mistral
//! as `llama` in GGUF. Reference: transformers' `models/mistral/modeling_mistral.py`.

use super::Architecture;
use crate::config::{HfConfig, ModelConfig};
use crate::decoder::Decoder;
use crate::error::Result;
use crate::weights::TensorSource;
use candle_core::DType;
use std::path::Path;

pub struct Mistral;

impl Architecture for Mistral {
    fn name(&self) -> &'static str {
        "mistral"
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &[
            "MistralForCausalLM",
            "MistralForSequenceClassification",
            "mistral",
        ]
    }

    fn hf_config(&self, hf: &HfConfig, cfg: &mut ModelConfig, _path: &Path) -> Result<()> {
        cfg.sliding_window = hf.sliding_window;
        Ok(())
    }

    fn load(
        &self,
        cfg: &ModelConfig,
        src: &mut dyn TensorSource,
        dtype: DType,
        max_positions: usize,
    ) -> Result<Decoder> {
        // Same tensors and blocks as Llama; only the mask differs (cfg.sliding_window).
        super::llama::Llama.load(cfg, src, dtype, max_positions)
    }
}
