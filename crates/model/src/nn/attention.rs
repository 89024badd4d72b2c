//! Grouped-query self-attention (multi-head when kv_heads == heads) over the KV cache.

use super::norm::RmsNorm;
use crate::cache::KvCache;
use crate::error::Result;
use crate::ops::attention::{attend, qkv_heads_first, AttendShape, StepContext};
use crate::ops::linear::{Linear, MultiLinear};
use candle_core::Tensor;

pub struct Attention {
    qkv: MultiLinear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// RMSNorm over each head of q and k before rotary (Gemma 3).
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    /// Scores are multiplied by this (1/sqrt(head_dim) unless the config says otherwise).
    scale: f64,
}

impl Attention {
    pub fn new(
        q: Linear,
        k: Linear,
        v: Linear,
        o: Linear,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> Result<Self> {
        Ok(Self {
            qkv: MultiLinear::new(vec![q, k, v])?,
            o,
            heads,
            kv_heads,
            head_dim,
            qk_norm: None,
            scale: 1.0 / (head_dim as f64).sqrt(),
        })
    }

    /// Normalises each head of q and k (over `head_dim`) before rotary.
    pub fn with_qk_norm(mut self, q_norm: RmsNorm, k_norm: RmsNorm) -> Self {
        self.qk_norm = Some((q_norm, k_norm));
        self
    }

    pub fn with_scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// `x` is `(b, t, hidden)`; writes this step's keys/values to `cache` at `layer`.
    /// `sliding`: this layer attends through the sliding window (its mask, window and rotary).
    pub fn forward(
        &self,
        x: &Tensor,
        step: &StepContext,
        cache: &mut KvCache,
        layer: usize,
        sliding: bool,
    ) -> Result<Tensor> {
        x.dims3()?; // (batch, tokens, hidden)
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
        let (cos, sin) = match (&step.sliding_tables, sliding) {
            (Some((c, s)), true) => (c, s),
            _ => (&step.cos, &step.sin),
        };
        let (mask, window) = if sliding {
            (&step.sliding_mask, step.window)
        } else {
            (&step.mask, None)
        };
        let qkv = self.qkv.forward_heads(x, d)?;
        let (mut q, mut k) = (qkv[0].clone(), qkv[1].clone());
        if let Some((qn, kn)) = &self.qk_norm {
            (q, k) = (qn.forward(&q)?, kn.forward(&k)?);
        }
        let (q, k, v) = qkv_heads_first(&q, &k, &qkv[2], cos, sin, step)?;
        let (k_all, v_all) = cache.append(layer, &k, &v)?;
        let shape = AttendShape {
            heads: h,
            kv_heads: kvh,
            scale: self.scale,
            window,
        };
        let y = attend(&q, &k_all, &v_all, mask, shape, step, cache)?;
        self.o.forward(&y)
    }
}
