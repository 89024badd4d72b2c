//! Gemma 3 text (HF `Gemma3ForCausalLM`, GGUF `gemma3`): the Llama skeleton with
//! - four norms per block (before and after attention, before and after the MLP), all of the
//!   form `x / rms(x) * (1 + w)`: HF stores `w`, llama.cpp's converter stores `1 + w`;
//! - RMSNorm over each head of q and k before rotary;
//! - sliding-window layers (5 of every 6) with rotary base 10k, global layers with 1M;
//! - embeddings scaled by sqrt(hidden), scores by 1/sqrt(query_pre_attn_scalar);
//! - a tanh-GELU gated MLP and a head tied to the embeddings.
//!
//! Reference: transformers' `models/gemma3/modeling_gemma3.py`.

use crate::config::ModelConfig;
use crate::decoder::{Block, Decoder, FeedForward, SelfAttention};
use crate::error::{Error, Result};
use crate::nn::attention::Attention;
use crate::nn::mlp::Mlp;
use crate::nn::norm::RmsNorm;
use crate::nn::rope::Rope;
use crate::weights::TensorSource;
use candle_core::DType;

/// A Gemma norm of `size`, as the `1 + w` the formula multiplies by.
fn gemma_norm(src: &mut dyn TensorSource, name: &str, size: usize, eps: f64) -> Result<RmsNorm> {
    let w = src.dense(name, &[size], DType::F32)?;
    let w = if src.is_gguf() {
        w
    } else {
        w.affine(1.0, 1.0)?
    };
    Ok(RmsNorm::new(w, eps))
}

pub fn load(
    cfg: &ModelConfig,
    src: &mut dyn TensorSource,
    dtype: DType,
    max_positions: usize,
) -> Result<Decoder> {
    let (h, i, v, d) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.vocab_size,
        cfg.head_dim,
    );
    let (q_out, kv_out) = (cfg.num_heads * d, cfg.num_kv_heads * d);
    let eps = cfg.rms_norm_eps;
    let local = cfg.rope_local.as_ref().ok_or_else(|| {
        Error::format(
            src.path(),
            "Gemma 3 config without the local rotary settings",
        )
    })?;
    let embed = src.embedding("model.embed_tokens.weight", [v, h])?;
    let blocks = (0..cfg.num_layers)
        .map(|l| {
            let p = format!("model.layers.{l}");
            let proj = |src: &mut dyn TensorSource, name: &str, out: usize, inp: usize| {
                src.linear(&format!("{p}.{name}.weight"), [out, inp], None)
            };
            let attn = Attention::new(
                proj(src, "self_attn.q_proj", q_out, h)?,
                proj(src, "self_attn.k_proj", kv_out, h)?,
                proj(src, "self_attn.v_proj", kv_out, h)?,
                proj(src, "self_attn.o_proj", h, q_out)?,
                cfg.num_heads,
                cfg.num_kv_heads,
                d,
            )?
            .with_qk_norm(
                gemma_norm(src, &format!("{p}.self_attn.q_norm.weight"), d, eps)?,
                gemma_norm(src, &format!("{p}.self_attn.k_norm.weight"), d, eps)?,
            )
            .with_scale(cfg.attention_scale());
            let mlp = Mlp::new(
                proj(src, "mlp.gate_proj", i, h)?,
                proj(src, "mlp.up_proj", i, h)?,
                proj(src, "mlp.down_proj", h, i)?,
                cfg.hidden_act,
            )?;
            let norm = |src: &mut dyn TensorSource, name: &str| {
                gemma_norm(src, &format!("{p}.{name}.weight"), h, eps)
            };
            Ok(Block {
                attn_norm: norm(src, "input_layernorm")?,
                attn: SelfAttention::Grouped(attn),
                post_attn_norm: Some(norm(src, "post_attention_layernorm")?),
                mlp_norm: norm(src, "pre_feedforward_layernorm")?,
                ffn: FeedForward::Dense(mlp),
                post_ffn_norm: Some(norm(src, "post_feedforward_layernorm")?),
                sliding: cfg.layer_is_sliding(l),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let norm = gemma_norm(src, "model.norm.weight", h, eps)?;
    let head = super::lm_head(cfg, src)?;
    let rope = Rope::new(&cfg.rope, d, max_positions, src.device())?;
    let rope_local = Some(Rope::new(local, d, max_positions, src.device())?);
    let device = src.device().clone();
    Ok(Decoder::new(
        cfg.clone(),
        embed,
        blocks,
        norm,
        head,
        rope,
        rope_local,
        dtype,
        device,
    ))
}
