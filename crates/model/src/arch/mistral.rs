//! Mistral (HF `MistralForCausalLM`): Llama's blocks with an optional sliding attention
//! window (`sliding_window`), which the decoder's mask applies. llama.cpp stores Mistral
//! as `llama` in GGUF. Reference: transformers' `models/mistral/modeling_mistral.py`.

use super::{Architecture, Build, Names};
use crate::config::{HfConfig, ModelConfig};
use crate::decoder::Decoder;
use crate::error::Result;
use std::path::Path;

pub struct Mistral;

impl Architecture for Mistral {
    fn names(&self) -> &'static Names {
        &Names {
            name: "mistral",
            hf: &["MistralForCausalLM", "MistralForSequenceClassification", "mistral"],
            gguf: None,
        }
    }

    fn hf_config(&self, hf: &HfConfig, cfg: &mut ModelConfig, _path: &Path) -> Result<()> {
        cfg.sliding_window = hf.sliding_window;
        Ok(())
    }

    fn gguf_permutes_qk(&self) -> bool {
        true
    }

    fn load(&self, b: Build<'_>) -> Result<Decoder> {
        // Same tensors and blocks as Llama; only the mask differs (cfg.sliding_window).
        super::llama::Llama.load(b)
    }
}
