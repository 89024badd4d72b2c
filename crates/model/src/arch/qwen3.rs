//! Qwen3 dense (HF `Qwen3ForCausalLM`, GGUF `qwen3`; e.g. DeepSeek-R1-0528-Qwen3-8B): Llama's
//! blocks with an RMSNorm over each head of q and k before rotary (`q_norm`/`k_norm`, plain
//! `x / rms(x) * w` with the config's epsilon), no q/k/v bias, and a `head_dim` of its own
//! (q_proj is `heads * head_dim` wide, not `hidden`). GGUF keeps HF's Q/K layout (NeoX rotary,
//! no row permutation) and gives head_dim as `qwen3.attention.key_length`.
//! Reference: transformers' `models/qwen3/modeling_qwen3.py`.

use super::{Architecture, Build, Names};
use crate::config::{HfConfig, ModelConfig};
use crate::decoder::Decoder;
use crate::error::{Error, Result};
use crate::nn::norm::RmsNorm;
use candle_core::DType;
use std::path::Path;

pub struct Qwen3;

impl Architecture for Qwen3 {
    fn names(&self) -> &'static Names {
        &Names {
            name: "qwen3",
            hf: &["Qwen3ForCausalLM", "qwen3"],
            gguf: Some("qwen3"),
        }
    }

    fn hf_config(&self, hf: &HfConfig, _cfg: &mut ModelConfig, path: &Path) -> Result<()> {
        // transformers puts the bias on o_proj too, which the shared blocks do not have.
        if hf.attention_bias == Some(true) {
            return Err(Error::config(
                path,
                "attention_bias",
                "Qwen3 with attention biases is not supported",
            ));
        }
        // Sliding windows apply from `max_window_layers` on; no released Qwen3 uses them.
        if hf.use_sliding_window == Some(true) {
            return Err(Error::config(
                path,
                "use_sliding_window",
                "sliding-window Qwen3 is not supported",
            ));
        }
        Ok(())
    }

    fn load(&self, b: Build<'_>) -> Result<Decoder> {
        let (d, eps) = (b.cfg.head_dim, b.cfg.rms_norm_eps);
        super::llama::load_with(b, |src, p, attn| {
            let mut norm = |name: &str| -> Result<RmsNorm> {
                let w = src.dense(&format!("{p}.self_attn.{name}.weight"), &[d], DType::F32)?;
                Ok(RmsNorm::new(w, eps))
            };
            Ok(attn.with_qk_norm(norm("q_norm")?, norm("k_norm")?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RopeStyle;
    use crate::weights::gguf::GgufFile;
    use candle_core::Device;

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny/qwen3")
    }

    /// config.json and the GGUF metadata (no `rope.dimension_count`, no vocab size) give
    /// the same shapes: head_dim 32 from `head_dim` / `attention.key_length`, not 64 / 4.
    #[test]
    fn hf_and_gguf_configs_agree() {
        let p = fixture().join("config.json");
        let hf = HfConfig::from_file(&p).unwrap().into_config(&p).unwrap();
        let mut file = GgufFile::open(&fixture().join("model-f32.gguf")).unwrap();
        let gguf = file.config(&Device::Cpu).unwrap();
        for c in [&hf, &gguf] {
            assert_eq!(c.arch.name(), "qwen3");
            assert_eq!((c.hidden_size, c.num_heads, c.num_kv_heads), (64, 4, 2));
            assert_eq!((c.head_dim, c.vocab_size), (32, 320));
            assert_eq!(c.rope.style, RopeStyle::Half);
            assert_eq!(c.rope.theta, 1e6);
            assert!(!c.attention_bias && !c.tie_word_embeddings);
            assert_eq!(c.sliding_window, None);
        }
    }

    #[test]
    fn attention_bias_is_rejected() {
        let p = fixture().join("config.json");
        let text = std::fs::read_to_string(&p).unwrap().replace(
            r#""attention_bias": false"#,
            r#""attention_bias": true"#,
        );
        let e = HfConfig::from_json(&text, &p)
            .unwrap()
            .into_config(&p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("attention_bias"), "{e}");
    }
}
