//! Grouped-query self-attention (multi-head when kv_heads == heads) over the KV cache.

use super::linear::{Linear, MultiLinear};
use super::rope::Rope;
use crate::cache::KvCache;
use crate::error::Result;
use candle_core::{DType, Tensor};

pub struct Attention {
    qkv: MultiLinear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

/// What every layer of one step shares: rotary tables and the attention mask.
pub struct StepContext<'a> {
    pub rope: &'a Rope,
    pub cos: Tensor,
    pub sin: Tensor,
    pub mask: Option<Tensor>,
    /// Round q, k, v and the attention probabilities to f16 as llama.cpp's default f16 KV
    /// cache does (its non-flash path converts q and the probabilities to f16 for the two
    /// products, accumulating in f32), so quantized GGUF models match llama.cpp's numbers.
    pub f16_attention: bool,
}

fn round_f16(x: &Tensor) -> Result<Tensor> {
    Ok(x.to_dtype(DType::F16)?.to_dtype(x.dtype())?)
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
        })
    }

    pub fn weight_format(&self) -> String {
        self.qkv.format()
    }

    pub fn into_dense(self, dtype: DType) -> Result<Self> {
        Ok(Self {
            qkv: self.qkv.into_dense(dtype)?,
            o: self.o.into_dense(dtype)?,
            ..self
        })
    }

    /// `x` is `(b, t, hidden)`; writes this step's keys/values to `cache` at `layer`.
    pub fn forward(
        &self,
        x: &Tensor,
        step: &StepContext,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
        let qkv = self.qkv.forward(x)?;
        let q = qkv[0].reshape((b, t, h, d))?.transpose(1, 2)?;
        let k = qkv[1].reshape((b, t, kvh, d))?.transpose(1, 2)?;
        let v = qkv[2].reshape((b, t, kvh, d))?.transpose(1, 2)?;
        let mut q = step.rope.apply(&q, &step.cos, &step.sin)?;
        let mut k = step.rope.apply(&k, &step.cos, &step.sin)?;
        let mut v = v;
        if step.f16_attention {
            (q, k, v) = (round_f16(&q)?, round_f16(&k)?, round_f16(&v)?);
        }
        let (k_all, v_all) = cache.append(layer, &k, &v)?;
        let s = k_all.dim(2)?;
        // Query heads sharing a kv head are stacked along the rows, so K/V are never repeated.
        let n_rep = h / kvh;
        let q = q.reshape((b, kvh, n_rep * t, d))?;
        let scores = (q.matmul(&k_all.t()?)? * (1.0 / (d as f64).sqrt()))?;
        let scores = match &step.mask {
            Some(mask) => scores
                .reshape((b, kvh, n_rep, t, s))?
                .broadcast_add(&mask.unsqueeze(2)?.to_dtype(scores.dtype())?)?
                .reshape((b, kvh, n_rep * t, s))?,
            None => scores,
        };
        let mut probs = candle_nn::ops::softmax_last_dim(&scores)?;
        if step.f16_attention {
            probs = round_f16(&probs)?;
        }
        let y = probs.matmul(&v_all)?; // (b, kvh, n_rep * t, d)
        let y = y
            .reshape((b, h, t, d))?
            .transpose(1, 2)?
            .reshape((b, t, h * d))?;
        self.o.forward(&y)
    }
}
