//! DeepSeek-V2 and V3 (HF `DeepseekV2ForCausalLM`, `DeepseekV3ForCausalLM`): pre-norm blocks
//! of multi-head latent attention (`nn::mla`, over a latent cache) and either a dense SwiGLU
//! MLP (the first `first_k_dense_replace` layers) or a mixture of routed and shared experts
//! (`nn::experts`); interleaved rotary on the rope part of each head, YaRN-scaled.
//! The two versions differ only in their router (`nn::moe`), which the config selects.
//! Multi-token-prediction layers after the last block are never loaded.
//! Reference: transformers' `models/deepseek_v2`, `models/deepseek_v3` (and DeepSeek's own
//! `modeling_deepseek.py`).

use super::{Architecture, Build, Names};
use crate::config::{HfConfig, MlaConfig, ModelConfig, MoeConfig, RopeStyle};
use crate::decoder::{Block, Decoder, FeedForward, SelfAttention};
use crate::error::{Error, Result};
use crate::nn::experts::MoeFfn;
use crate::ops::linear::Linear;
use crate::nn::mla::LatentAttention;
use crate::nn::mlp::Mlp;
use crate::nn::moe::{RouterConfig, ScoringFunc, TopkMethod};
use crate::nn::norm::RmsNorm;
use crate::nn::rope::Rope;
use crate::weights::gguf::GgufFile;
use crate::weights::TensorSource;
use candle_core::DType;
use std::path::Path;

/// DeepSeek-V2 or V3: the same blocks; V3's router defaults differ.
pub struct Deepseek {
    v3: bool,
}

pub static DEEPSEEK_V2: Deepseek = Deepseek { v3: false };
pub static DEEPSEEK_V3: Deepseek = Deepseek { v3: true };

impl Architecture for Deepseek {
    /// V2 and V3 share llama.cpp's architecture; V3 routes on sigmoid scores.
    fn names(&self) -> &'static Names {
        if self.v3 {
            &Names {
                name: "deepseek_v3",
                hf: &["DeepseekV3ForCausalLM", "deepseek_v3"],
                gguf: Some("deepseek2"),
            }
        } else {
            &Names {
                name: "deepseek_v2",
                hf: &["DeepseekV2ForCausalLM", "deepseek_v2"],
                gguf: Some("deepseek2"),
            }
        }
    }

    fn claims_gguf(&self, file: &GgufFile) -> bool {
        let sigmoid = matches!(file.get_u64("deepseek2.expert_gating_func"), Ok(2));
        sigmoid == self.v3
    }

    fn hf_config(&self, hf: &HfConfig, cfg: &mut ModelConfig, path: &Path) -> Result<()> {
        let own: DeepSeekFields = hf.fields(path)?;
        let mla = hf_mla(&own, path)?;
        cfg.moe = hf_moe(&own, self.v3, path)?;
        // Latent attention has one latent per token, shared by all heads; `head_dim` is the
        // rotary part.
        cfg.num_kv_heads = cfg.num_heads;
        cfg.head_dim = mla.qk_rope_head_dim;
        cfg.mla = Some(mla);
        // DeepSeek's rotary pairs adjacent dimensions (transformers 5 may say otherwise).
        if own.rope_interleave != Some(false) {
            cfg.rope.style = RopeStyle::Interleaved;
        }
        Ok(())
    }

    fn gguf_config(&self, file: &GgufFile, cfg: &mut ModelConfig) -> Result<()> {
        let (mla, moe) = gguf_mla_moe(file, self.v3)?;
        // The converter writes MQA-shaped sizes; ethos keeps the heads.
        cfg.num_kv_heads = cfg.num_heads;
        cfg.head_dim = mla.qk_rope_head_dim;
        cfg.mla = Some(mla);
        cfg.moe = moe;
        cfg.rope.style = RopeStyle::Interleaved;
        Ok(())
    }

    /// Latent attention and experts (`deepseek2`). Routed experts are stored stacked, one 3-D
    /// tensor per projection (see `names::expert_tensor`).
    fn gguf_tensor_name(&self, hf: &str) -> Option<String> {
        if let Some(layer) = hf
            .strip_prefix("model.layers.")
            .and_then(|r| r.strip_suffix(".mlp.gate.e_score_correction_bias"))
        {
            let layer: usize = layer.parse().ok()?;
            return Some(format!("blk.{layer}.exp_probs_b.bias"));
        }
        crate::weights::names::gguf_name_with(hf, |module| {
            Some(match module {
                "self_attn.q_a_proj" => "attn_q_a",
                "self_attn.q_a_layernorm" => "attn_q_a_norm",
                "self_attn.q_b_proj" => "attn_q_b",
                "self_attn.kv_a_proj_with_mqa" => "attn_kv_a_mqa",
                "self_attn.kv_a_layernorm" => "attn_kv_a_norm",
                "self_attn.kv_b_proj" => "attn_kv_b",
                "mlp.gate" => "ffn_gate_inp",
                "mlp.shared_experts.gate_proj" => "ffn_gate_shexp",
                "mlp.shared_experts.up_proj" => "ffn_up_shexp",
                "mlp.shared_experts.down_proj" => "ffn_down_shexp",
                _ => return None,
            })
        })
    }

    fn load(&self, b: Build<'_>) -> Result<Decoder> {
        load(b.cfg, b.src, b.dtype, b.max_positions)
    }
}

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

fn load(
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
                            .with_kernels(src.kernels())
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

/// DeepSeek-V2/V3's own fields of `config.json`: latent attention and experts.
#[derive(serde::Deserialize)]
struct DeepSeekFields {
    q_lora_rank: Option<usize>,
    kv_lora_rank: Option<usize>,
    qk_nope_head_dim: Option<usize>,
    qk_rope_head_dim: Option<usize>,
    v_head_dim: Option<usize>,
    /// transformers 5 (V3): false pairs rotary dimensions by halves.
    rope_interleave: Option<bool>,
    n_routed_experts: Option<usize>,
    n_shared_experts: Option<usize>,
    num_experts_per_tok: Option<usize>,
    moe_intermediate_size: Option<usize>,
    first_k_dense_replace: Option<usize>,
    moe_layer_freq: Option<usize>,
    routed_scaling_factor: Option<f64>,
    norm_topk_prob: Option<bool>,
    topk_method: Option<String>,
    scoring_func: Option<String>,
    n_group: Option<usize>,
    topk_group: Option<usize>,
}

fn hf_mla(hf: &DeepSeekFields, path: &Path) -> Result<MlaConfig> {
    let req =
        |v: Option<usize>, field: &str| v.ok_or_else(|| Error::config(path, field, "missing"));
    Ok(MlaConfig {
        q_lora_rank: hf.q_lora_rank,
        kv_lora_rank: req(hf.kv_lora_rank, "kv_lora_rank")?,
        qk_nope_head_dim: req(hf.qk_nope_head_dim, "qk_nope_head_dim")?,
        qk_rope_head_dim: req(hf.qk_rope_head_dim, "qk_rope_head_dim")?,
        v_head_dim: req(hf.v_head_dim, "v_head_dim")?,
    })
}

/// DeepSeek's experts; `None` for a checkpoint without routed experts (all layers dense).
/// V2 defaults to `greedy` routing on softmax scores, V3 to `noaux_tc` on sigmoid scores
/// (transformers 5 writes neither field).
fn hf_moe(hf: &DeepSeekFields, v3: bool, path: &Path) -> Result<Option<MoeConfig>> {
    let Some(n_experts) = hf.n_routed_experts else {
        return Ok(None);
    };
    let method_name = hf
        .topk_method
        .as_deref()
        .unwrap_or(if v3 { "noaux_tc" } else { "greedy" });
    let method = TopkMethod::parse(method_name).ok_or_else(|| {
        Error::config(
            path,
            "topk_method",
            format!("`{method_name}` is not supported (greedy, group_limited_greedy, noaux_tc)"),
        )
    })?;
    let scoring_name = hf
        .scoring_func
        .as_deref()
        .unwrap_or(if v3 { "sigmoid" } else { "softmax" });
    let scoring = ScoringFunc::parse(scoring_name).ok_or_else(|| {
        Error::config(
            path,
            "scoring_func",
            format!("`{scoring_name}` is not supported (softmax, sigmoid)"),
        )
    })?;
    let top_k = hf
        .num_experts_per_tok
        .ok_or_else(|| Error::config(path, "num_experts_per_tok", "missing"))?;
    Ok(Some(MoeConfig {
        router: RouterConfig {
            method,
            scoring,
            n_experts,
            top_k,
            n_group: hf.n_group.unwrap_or(1),
            topk_group: hf.topk_group.unwrap_or(1),
            norm_topk_prob: hf.norm_topk_prob.unwrap_or(false),
            routed_scaling_factor: hf.routed_scaling_factor.unwrap_or(1.0) as f32,
        },
        moe_intermediate_size: hf
            .moe_intermediate_size
            .ok_or_else(|| Error::config(path, "moe_intermediate_size", "missing"))?,
        n_shared_experts: hf.n_shared_experts.unwrap_or(0),
        first_k_dense_replace: hf.first_k_dense_replace.unwrap_or(0),
        moe_layer_freq: hf.moe_layer_freq.unwrap_or(1),
    }))
}

/// The latent-attention and expert sizes from `deepseek2.*`. Both converter generations: with
/// `key_length_mla` (kv_b split into `attn_k_b`/`attn_v_b`, key and value lengths MQA-shaped)
/// and without (`attn_kv_b`, per-head lengths).
fn gguf_mla_moe(file: &GgufFile, v3: bool) -> Result<(MlaConfig, Option<MoeConfig>)> {
    let k = |s: &str| format!("deepseek2.{s}");
    let rope = file.get_usize(&k("rope.dimension_count"))?;
    let key_len = match file.get_usize(&k("attention.key_length_mla")) {
        Ok(n) => n,
        Err(_) => file.get_usize(&k("attention.key_length"))?,
    };
    let nope = key_len.checked_sub(rope).ok_or_else(|| {
        Error::config(
            &file.path,
            &k("attention.key_length"),
            format!("{key_len} is smaller than the rotary part {rope}"),
        )
    })?;
    let v_head_dim = match file.get_usize(&k("attention.value_length_mla")) {
        Ok(n) => n,
        Err(_) => file.get_usize(&k("attention.value_length"))?,
    };
    let mla = MlaConfig {
        q_lora_rank: file.get_usize(&k("attention.q_lora_rank")).ok(),
        kv_lora_rank: file.get_usize(&k("attention.kv_lora_rank"))?,
        qk_nope_head_dim: nope,
        qk_rope_head_dim: rope,
        v_head_dim,
    };
    let Ok(n_experts) = file.get_usize(&k("expert_count")) else {
        return Ok((mla, None));
    };
    let n_group = file.get_usize(&k("expert_group_count")).unwrap_or(1);
    // GGUF does not name the method: V3's sigmoid scores come with noaux_tc, V2's softmax
    // with group-limited greedy when experts are grouped.
    let method = match (v3, n_group) {
        (true, _) => TopkMethod::NoauxTc,
        (_, 1) => TopkMethod::Greedy,
        _ => TopkMethod::GroupLimitedGreedy,
    };
    let moe = MoeConfig {
        router: RouterConfig {
            method,
            scoring: if v3 {
                ScoringFunc::Sigmoid
            } else {
                ScoringFunc::Softmax
            },
            n_experts,
            top_k: file.get_usize(&k("expert_used_count"))?,
            n_group,
            topk_group: file.get_usize(&k("expert_group_used_count")).unwrap_or(1),
            norm_topk_prob: file.get_bool(&k("expert_weights_norm")).unwrap_or(false),
            routed_scaling_factor: file.get_f64(&k("expert_weights_scale")).unwrap_or(1.0) as f32,
        },
        moe_intermediate_size: file.get_usize(&k("expert_feed_forward_length"))?,
        n_shared_experts: file.get_usize(&k("expert_shared_count")).unwrap_or(0),
        first_k_dense_replace: file.get_usize(&k("leading_dense_block_count")).unwrap_or(0),
        moe_layer_freq: 1,
    };
    Ok((mla, Some(moe)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_deepseek_names() {
        let name = |hf: &str| DEEPSEEK_V2.gguf_tensor_name(hf).unwrap();
        assert_eq!(
            name("model.layers.2.mlp.gate.e_score_correction_bias"),
            "blk.2.exp_probs_b.bias"
        );
        assert_eq!(name("model.layers.2.mlp.gate.weight"), "blk.2.ffn_gate_inp.weight");
        assert_eq!(
            name("model.layers.2.self_attn.kv_a_proj_with_mqa.weight"),
            "blk.2.attn_kv_a_mqa.weight"
        );
        assert_eq!(name("model.layers.2.mlp.down_proj.weight"), "blk.2.ffn_down.weight");
    }
}
