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
    /// Use our fused CPU kernel (f32 on the CPU); `mask` is then not built.
    pub cpu_kernel: bool,
    pub query_positions: &'a [Vec<i32>],
    pub window: Option<usize>,
}

fn round_f16(x: &Tensor) -> Result<Tensor> {
    Ok(x.to_dtype(DType::F16)?.to_dtype(x.dtype())?)
}

fn cpu_f32<'a>(g: &'a candle_core::StorageRef<'_>, l: &candle_core::Layout) -> Result<&'a [f32]> {
    match &**g {
        candle_core::Storage::Cpu(c) => Ok(&c.as_slice::<f32>()?[l.start_offset()..]),
        _ => Err(crate::error::Error::Msg(
            "the CPU attention kernel needs CPU tensors".into(),
        )),
    }
}

impl Attention {
    /// The fused kernel (`kernels::attention`) reading K/V from the cache in place.
    fn cpu_attention(
        &self,
        q: &Tensor,
        k_all: &Tensor,
        v_all: &Tensor,
        step: &StepContext,
        cache: &KvCache,
        t: usize,
    ) -> Result<Tensor> {
        let (b, _, kv_len, d) = k_all.dims4()?;
        let q = q.contiguous()?;
        let (qg, ql) = q.storage_and_layout();
        let (kg, kl) = k_all.storage_and_layout();
        let (vg, vl) = v_all.storage_and_layout();
        let st = kl.stride();
        if vl.stride() != st || st[3] != 1 {
            return Err(crate::error::Error::Msg(
                "cache views must share a contiguous-row layout".into(),
            ));
        }
        let shape = crate::kernels::attention::AttentionShape {
            batch: b,
            heads: self.heads,
            kv_heads: self.kv_heads,
            q_len: t,
            kv_len,
            head_dim: d,
            kv_strides: [st[0], st[1], st[2]],
        };
        let mut out = vec![0f32; b * t * self.heads * d];
        crate::kernels::attention::attention(
            &shape,
            cpu_f32(&qg, ql)?,
            cpu_f32(&kg, kl)?,
            cpu_f32(&vg, vl)?,
            step.query_positions,
            cache.key_positions(),
            step.window,
            1.0 / (d as f32).sqrt(),
            step.f16_attention,
            &mut out,
        );
        Ok(Tensor::from_vec(out, (b, t, self.heads * d), q.device())?)
    }

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
        if step.cpu_kernel {
            let y = self.cpu_attention(&q, &k_all, &v_all, step, cache, t)?;
            return self.o.forward(&y);
        }
        // Decode on CUDA: one kernel for the whole attention of the new token.
        if t == 1
            && step.mask.is_none()
            && !step.f16_attention
            && q.device().is_cuda()
            && super::own_cuda_kernels()
        {
            let q3 = q.reshape((b, h, d))?;
            if ethos_kernels::decode_attention_supported(&q3, &k_all, &v_all) {
                let scale = 1.0 / (d as f32).sqrt();
                let y = ethos_kernels::decode_attention(&q3, &k_all, &v_all, scale)?;
                return self.o.forward(&y.reshape((b, 1, h * d))?);
            }
        }
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
