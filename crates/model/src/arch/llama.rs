//! Llama 2/3/3.1/3.2 (HF `LlamaForCausalLM`, GGUF `llama`): pre-norm blocks of grouped-query
//! attention and a SwiGLU MLP, RMSNorm, rotary embeddings (optionally `llama3`-scaled), and
//! an output head that may be tied to the embeddings. Mistral and Qwen2 reuse these blocks.
//! Reference: transformers' `models/llama/modeling_llama.py`.

use super::{Architecture, Build, Names};
use crate::config::{ModelConfig, RopeStyle};
use crate::decoder::{Block, Decoder, FeedForward, SelfAttention};
use crate::error::Result;
use crate::nn::attention::Attention;
use crate::nn::mlp::Mlp;
use crate::nn::norm::RmsNorm;
use crate::nn::rope::Rope;
use crate::weights::gguf::GgufFile;
use crate::weights::TensorSource;
use candle_core::DType;

pub struct Llama;

impl Architecture for Llama {
    fn names(&self) -> &'static Names {
        &Names {
            name: "llama",
            hf: &["LlamaForCausalLM", "LlamaForSequenceClassification", "llama"],
            gguf: Some("llama"),
        }
    }

    fn gguf_config(&self, _file: &GgufFile, cfg: &mut ModelConfig) -> Result<()> {
        // llama.cpp's converter permutes llama Q/K rows for its adjacent-pair rope.
        cfg.rope.style = RopeStyle::Interleaved;
        Ok(())
    }

    fn gguf_permutes_qk(&self) -> bool {
        true
    }

    fn load(&self, b: Build<'_>) -> Result<Decoder> {
        load_with(b, |_, _, attn| Ok(attn))
    }
}

/// Llama's decoder, each layer's attention passed through `attention` (given the source, the
/// layer's tensor prefix `model.layers.N` and the attention as Llama builds it): the skeleton
/// that architectures differing from Llama only inside attention share.
pub(crate) fn load_with(
    b: Build<'_>,
    attention: impl Fn(&mut dyn TensorSource, &str, Attention) -> Result<Attention>,
) -> Result<Decoder> {
    let Build {
        cfg,
        src,
        dtype,
        max_positions,
    } = b;
    let (h, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (q_out, kv_out) = (
        cfg.num_heads * cfg.head_dim,
        cfg.num_kv_heads * cfg.head_dim,
    );
    let embed = src.embedding("model.embed_tokens.weight", [v, h])?;
    let blocks = (0..cfg.num_layers)
        .map(|l| {
            let p = format!("model.layers.{l}");
            let norm = |src: &mut dyn TensorSource, name: &str| -> Result<RmsNorm> {
                Ok(RmsNorm::new(
                    src.dense(&format!("{p}.{name}.weight"), &[h], DType::F32)?,
                    cfg.rms_norm_eps,
                ))
            };
            let proj =
                |src: &mut dyn TensorSource, name: &str, out: usize, inp: usize, bias: bool| {
                    let b = if bias {
                        Some(src.dense(&format!("{p}.{name}.bias"), &[out], dtype)?)
                    } else {
                        None
                    };
                    src.linear(&format!("{p}.{name}.weight"), [out, inp], b)
                };
            let bias = cfg.attention_bias;
            let attn = Attention::new(
                proj(src, "self_attn.q_proj", q_out, h, bias)?,
                proj(src, "self_attn.k_proj", kv_out, h, bias)?,
                proj(src, "self_attn.v_proj", kv_out, h, bias)?,
                proj(src, "self_attn.o_proj", h, q_out, false)?,
                cfg.num_heads,
                cfg.num_kv_heads,
                cfg.head_dim,
            )?
            .with_scale(cfg.attention_scale());
            let attn = attention(src, &p, attn)?;
            let mlp = Mlp::new(
                proj(src, "mlp.gate_proj", i, h, false)?,
                proj(src, "mlp.up_proj", i, h, false)?,
                proj(src, "mlp.down_proj", h, i, false)?,
                cfg.hidden_act,
            )?;
            Ok(Block {
                attn_norm: norm(src, "input_layernorm")?,
                attn: SelfAttention::Grouped(attn),
                post_attn_norm: None,
                mlp_norm: norm(src, "post_attention_layernorm")?,
                ffn: FeedForward::Dense(mlp),
                post_ffn_norm: None,
                sliding: cfg.layer_is_sliding(l),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let norm = RmsNorm::new(
        src.dense("model.norm.weight", &[h], DType::F32)?,
        cfg.rms_norm_eps,
    );
    let head = if let Some(labels) = cfg.num_labels {
        src.linear("score.weight", [labels, h], None)?
    } else {
        super::lm_head(cfg, src)?
    };
    let rope = Rope::new(&cfg.rope, cfg.head_dim, max_positions, src.device())?;
    let device = src.device().clone();
    Ok(Decoder::new(
        cfg.clone(),
        embed,
        blocks,
        norm,
        head,
        rope,
        None,
        dtype,
        device,
    ))
}
