//! DeepSeek-V2 and V3 (HF `DeepseekV2ForCausalLM`, `DeepseekV3ForCausalLM`): pre-norm blocks
//! of multi-head latent attention (`nn::mla`, over a latent cache) and either a dense SwiGLU
//! MLP (the first `first_k_dense_replace` layers) or a mixture of routed and shared experts
//! (`nn::experts`); interleaved rotary on the rope part of each head, YaRN-scaled.
//! The two versions differ only in their router (`nn::moe`), which the config selects.
//! Multi-token-prediction layers after the last block are never loaded.
//! Reference: transformers' `models/deepseek_v2`, `models/deepseek_v3` (and DeepSeek's own
//! `modeling_deepseek.py`).

use crate::config::ModelConfig;
use crate::decoder::{Block, Decoder, FeedForward, SelfAttention};
use crate::error::{Error, Result};
use crate::nn::experts::MoeFfn;
use crate::nn::linear::Linear;
use crate::nn::mla::LatentAttention;
use crate::nn::mlp::Mlp;
use crate::nn::moe::TopkMethod;
use crate::nn::norm::RmsNorm;
use crate::nn::rope::Rope;
use crate::weights::TensorSource;
use candle_core::DType;

/// The latent and query-LoRA norms are built with the reference's default epsilon, not the
/// config's.
const LATENT_NORM_EPS: f64 = 1e-6;

/// A gated MLP; `routed`: a routed expert, whose quantized weights stay quantized however
/// many tokens it gets (a dense copy per expert would hold the whole mixture in f32).
fn mlp(
    src: &mut dyn TensorSource,
    p: &str,
    h: usize,
    i: usize,
    cfg: &ModelConfig,
    routed: bool,
) -> Result<Mlp> {
    let w = |src: &mut dyn TensorSource, name: &str, shape: [usize; 2]| -> Result<Linear> {
        let l = src.linear(&format!("{p}.{name}.weight"), shape, None)?;
        Ok(if routed { l.without_dense_batches() } else { l })
    };
    Mlp::new(
        w(src, "gate_proj", [i, h])?,
        w(src, "up_proj", [i, h])?,
        w(src, "down_proj", [h, i])?,
        cfg.hidden_act,
    )
}

pub fn load(
    cfg: &ModelConfig,
    src: &mut dyn TensorSource,
    dtype: DType,
    max_positions: usize,
) -> Result<Decoder> {
    let (h, v) = (cfg.hidden_size, cfg.vocab_size);
    let heads = cfg.num_heads;
    let m = cfg.mla.clone().ok_or_else(|| {
        Error::format(src.path(), "DeepSeek config without latent-attention sizes")
    })?;
    let qk = m.qk_head_dim();
    let embed = src.embedding("model.embed_tokens.weight", [v, h])?;
    let blocks = (0..cfg.num_layers)
        .map(|l| {
            let p = format!("model.layers.{l}");
            let norm = |src: &mut dyn TensorSource, name: &str, size: usize, eps: f64| {
                Ok::<_, Error>(RmsNorm::new(
                    src.dense(&format!("{p}.{name}.weight"), &[size], DType::F32)?,
                    eps,
                ))
            };
            let proj = |src: &mut dyn TensorSource, name: &str, out: usize, inp: usize| {
                src.linear(&format!("{p}.self_attn.{name}.weight"), [out, inp], None)
            };
            let (q, q_lora) = match m.q_lora_rank {
                Some(r) => (
                    proj(src, "q_a_proj", r, h)?,
                    Some((
                        norm(src, "self_attn.q_a_layernorm", r, LATENT_NORM_EPS)?,
                        proj(src, "q_b_proj", heads * qk, r)?,
                    )),
                ),
                None => (proj(src, "q_proj", heads * qk, h)?, None),
            };
            let kv_a = proj(
                src,
                "kv_a_proj_with_mqa",
                m.kv_lora_rank + m.qk_rope_head_dim,
                h,
            )?;
            let kv_norm = norm(
                src,
                "self_attn.kv_a_layernorm",
                m.kv_lora_rank,
                LATENT_NORM_EPS,
            )?;
            let kv_b = proj(
                src,
                "kv_b_proj",
                heads * (m.qk_nope_head_dim + m.v_head_dim),
                m.kv_lora_rank,
            )?;
            let o = proj(src, "o_proj", h, heads * m.v_head_dim)?;
            let attn = LatentAttention::new(
                q,
                q_lora,
                kv_a,
                kv_norm,
                &kv_b,
                o,
                heads,
                m.clone(),
                cfg.attention_scale(),
                dtype,
            )?;
            let ffn = match &cfg.moe {
                Some(moe) if cfg.layer_is_moe(l) => {
                    let r = &moe.router;
                    let name = format!("{p}.mlp.gate.weight");
                    // GGUF: as stored (llama.cpp quantizes the router too); else f32.
                    let router = if src.is_gguf() {
                        src.linear(&name, [r.n_experts, h], None)?
                            .without_dense_batches()
                    } else {
                        Linear::dense(src.dense(&name, &[r.n_experts, h], DType::F32)?, None)?
                    };
                    let bias = if r.method == TopkMethod::NoauxTc {
                        let name = format!("{p}.mlp.gate.e_score_correction_bias");
                        Some(
                            src.dense(&name, &[r.n_experts], DType::F32)?
                                .to_vec1::<f32>()?,
                        )
                    } else {
                        None
                    };
                    let i = moe.moe_intermediate_size;
                    let experts = (0..r.n_experts)
                        .map(|e| mlp(src, &format!("{p}.mlp.experts.{e}"), h, i, cfg, true))
                        .collect::<Result<Vec<_>>>()?;
                    let shared = match moe.n_shared_experts {
                        0 => None,
                        n => Some(mlp(
                            src,
                            &format!("{p}.mlp.shared_experts"),
                            h,
                            i * n,
                            cfg,
                            false,
                        )?),
                    };
                    FeedForward::Moe(MoeFfn::new(router, bias, r.clone(), experts, shared)?)
                }
                _ => FeedForward::Dense(mlp(
                    src,
                    &format!("{p}.mlp"),
                    h,
                    cfg.intermediate_size,
                    cfg,
                    false,
                )?),
            };
            Ok(Block {
                attn_norm: norm(src, "input_layernorm", h, cfg.rms_norm_eps)?,
                attn: SelfAttention::Latent(attn),
                post_attn_norm: None,
                mlp_norm: norm(src, "post_attention_layernorm", h, cfg.rms_norm_eps)?,
                ffn,
                post_ffn_norm: None,
                sliding: false,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let norm = RmsNorm::new(
        src.dense("model.norm.weight", &[h], DType::F32)?,
        cfg.rms_norm_eps,
    );
    let head = super::lm_head(cfg, src)?;
    let rope = Rope::new(&cfg.rope, m.qk_rope_head_dim, max_positions, src.device())?;
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
