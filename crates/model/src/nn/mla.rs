//! Multi-head latent attention (DeepSeek-V2/V3) over a latent KV cache.
//!
//! Each token is cached as `[c, k_rope]`: the normed compressed kv `c` (`kv_lora_rank`) and
//! the rotated key shared by all heads (`qk_rope_head_dim`), never as per-head keys and values.
//! Attention runs in the absorbed form: with `kv_b_proj` split per head into `W_uk`
//! (`nope x rank`) and `W_uv` (`v x rank`),
//!
//! - `q_nope . (W_uk c) = (W_uk^T q_nope) . c`, so each query head is projected once into the
//!   latent space and the score is `[W_uk^T q_nope, q_rope] . [c, k_rope]`;
//! - `sum_s p_s W_uv c_s = W_uv (sum_s p_s c_s)`, so values are the latents themselves and the
//!   output is lifted per head afterwards.
//!
//! That is multi-query attention with one kv head of `rank + rope` dimensions, which the shared
//! attention path (`attention::attend`, our fused CPU kernel included) runs as it is; keys serve
//! as values and the rotary columns of the output are dropped.
//! Reference: transformers' `models/deepseek_v3/modeling_deepseek_v3.py` (the expanded form).

use super::norm::RmsNorm;
use crate::cache::KvCache;
use crate::config::MlaConfig;
use crate::error::Result;
use crate::ops::attention::{attend, round_f16, AttendShape, StepContext};
use crate::ops::linear::{Linear, MultiLinear};
use candle_core::{DType, Tensor};

pub struct LatentAttention {
    /// `x` to `[q (or q_a), kv_a]` in one product.
    input: MultiLinear,
    /// The query's low-rank path after `q_a`: its norm and `q_b` (`q_lora_rank` set).
    q_lora: Option<(RmsNorm, Linear)>,
    kv_norm: RmsNorm,
    /// `(heads, nope, rank)`: the key half of `kv_b_proj`, applied to queries.
    w_uk: Tensor,
    /// `(heads, rank, v)`: the value half of `kv_b_proj`, transposed, applied to outputs.
    w_uv_t: Tensor,
    o: Linear,
    heads: usize,
    dims: MlaConfig,
    scale: f64,
}

impl LatentAttention {
    /// `kv_b` is `kv_b_proj` `(heads * (nope + v), rank)`; `q` is `q_proj` or, with q LoRA,
    /// `q_a_proj` followed by `q_lora`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        q: Linear,
        q_lora: Option<(RmsNorm, Linear)>,
        kv_a: Linear,
        kv_norm: RmsNorm,
        kv_b: &Linear,
        o: Linear,
        heads: usize,
        dims: MlaConfig,
        scale: f64,
        dtype: DType,
    ) -> Result<Self> {
        let (nope, v, rank) = (dims.qk_nope_head_dim, dims.v_head_dim, dims.kv_lora_rank);
        let w = kv_b
            .dequantize()?
            .to_dtype(dtype)?
            .reshape((heads, nope + v, rank))?;
        let w_uk = w.narrow(1, 0, nope)?.contiguous()?;
        let w_uv_t = w.narrow(1, nope, v)?.transpose(1, 2)?.contiguous()?;
        Ok(Self {
            input: MultiLinear::new(vec![q, kv_a])?,
            q_lora,
            kv_norm,
            w_uk,
            w_uv_t,
            o,
            heads,
            dims,
            scale,
        })
    }

    /// `x` is `(b, t, hidden)`; caches this step's latents at `layer`.
    pub fn forward(
        &self,
        x: &Tensor,
        step: &StepContext,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let h = self.heads;
        let MlaConfig {
            kv_lora_rank: rank,
            qk_nope_head_dim: nope,
            qk_rope_head_dim: rope,
            v_head_dim: v,
            ..
        } = self.dims;
        let parts = self.input.forward(x)?;
        let q = match &self.q_lora {
            Some((norm, q_b)) => q_b.forward(&norm.forward(&parts[0])?)?,
            None => parts[0].clone(),
        };
        let q = q.reshape((b, t, h, nope + rope))?;
        let q_nope = q.narrow(3, 0, nope)?;
        let q_rope = q.narrow(3, nope, rope)?.transpose(1, 2)?; // (b, h, t, rope)
        let kv = &parts[1];
        let latent = self.kv_norm.forward(&kv.narrow(2, 0, rank)?)?;
        let k_rope = kv.narrow(2, rank, rope)?.unsqueeze(1)?; // (b, 1, t, rope)
        let q_rope = step.rope.apply(&q_rope, &step.cos, &step.sin)?;
        let k_rope = step.rope.apply(&k_rope, &step.cos, &step.sin)?;
        // Absorb W_uk into the query: (h, b*t, nope) x (h, nope, rank).
        let q_nope = q_nope.permute((2, 0, 1, 3))?.reshape((h, b * t, nope))?;
        let q_latent = q_nope
            .contiguous()?
            .matmul(&self.w_uk)?
            .reshape((h, b, t, rank))?
            .permute((1, 0, 2, 3))?;
        let mut q_full = Tensor::cat(&[&q_latent, &q_rope], 3)?.contiguous()?;
        let mut step_latent = Tensor::cat(&[&latent.unsqueeze(1)?, &k_rope], 3)?;
        if step.llama_cpp() {
            q_full = round_f16(&q_full)?;
            step_latent = round_f16(&step_latent)?;
        }
        let all = cache.append_latent(layer, &step_latent)?;
        let shape = AttendShape {
            heads: h,
            kv_heads: 1,
            scale: self.scale,
            window: None,
        };
        let mask = &step.mask;
        let y = attend(&q_full, &all, &all, mask, shape, step, cache)?; // (b, t, h*(rank+rope))
                                                                        // Lift each head's latent output with W_uv: (h, b*t, rank) x (h, rank, v).
        let y = y
            .reshape((b * t, h, rank + rope))?
            .narrow(2, 0, rank)?
            .transpose(0, 1)?
            .contiguous()?
            .matmul(&self.w_uv_t)? // (h, b*t, v)
            .transpose(0, 1)?
            .reshape((b, t, h * v))?;
        self.o.forward(&y)
    }
}
