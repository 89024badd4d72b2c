//! Qwen2 / Qwen2.5 (HF `Qwen2ForCausalLM`, GGUF `qwen2`): Llama's blocks with biases on the
//! q/k/v projections (`cfg.attention_bias` is always set for this family) and NeoX-style
//! rotary pairs in GGUF too (the converter keeps HF's Q/K layout). Reference: transformers'
//! `models/qwen2/modeling_qwen2.py`.

use super::{Architecture, Build, Names};
use crate::config::{HfConfig, ModelConfig};
use crate::decoder::Decoder;
use crate::error::{Error, Result};
use std::path::Path;

pub struct Qwen2;

impl Architecture for Qwen2 {
    fn names(&self) -> &'static Names {
        &Names {
            name: "qwen2",
            hf: &["Qwen2ForCausalLM", "Qwen2ForSequenceClassification", "qwen2"],
            gguf: Some("qwen2"),
        }
    }

    fn hf_config(&self, hf: &HfConfig, cfg: &mut ModelConfig, _path: &Path) -> Result<()> {
        cfg.attention_bias = true;
        if hf.use_sliding_window == Some(true) {
            cfg.sliding_window = hf.sliding_window;
        }
        Ok(())
    }

    fn load(&self, b: Build<'_>) -> Result<Decoder> {
        if !b.cfg.attention_bias {
            return Err(Error::format(
                b.src.path(),
                "Qwen2 checkpoints carry q/k/v biases; blk.0.attn_q.bias is missing",
            ));
        }
        super::llama::Llama.load(b)
    }
}
