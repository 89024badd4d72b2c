//! Grouped-query self-attention (multi-head when kv_heads == heads) over the KV cache.

use super::linear::{Linear, MultiLinear};
use super::norm::RmsNorm;
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
    /// RMSNorm over each head of q and k before rotary (Gemma 3).
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    /// Scores are multiplied by this (1/sqrt(head_dim) unless the config says otherwise).
    scale: f64,
}

/// What every layer of one step shares: rotary tables and the attention masks.
pub struct StepContext<'a> {
    pub rope: &'a Rope,
    pub cos: Tensor,
    pub sin: Tensor,
    /// The sliding-window layers' rotary tables, where their base differs (Gemma 3).
    pub sliding_tables: Option<(Tensor, Tensor)>,
    /// Mask of the global layers (`None`: nothing masked).
    pub mask: Option<Tensor>,
    /// Mask of the sliding-window layers (`None`: nothing masked).
    pub sliding_mask: Option<Tensor>,
    /// llama.cpp's arithmetic, for quantized GGUF models (also its table GELU in the MLP):
    /// round q, k, v and the attention probabilities to f16 as llama.cpp's default f16 KV
    /// cache does (its non-flash path converts q and the probabilities to f16 for the two
    /// products, accumulating in f32), so quantized GGUF models match llama.cpp's numbers.
    pub f16_attention: bool,
    /// Use our fused CPU kernel (f32 on the CPU); `mask` is then not built.
    pub cpu_kernel: bool,
    pub query_positions: &'a [Vec<i32>],
    /// The window of the sliding-window layers.
    pub window: Option<usize>,
    /// See `Decoder::moe_per_token`.
    pub moe_per_token: bool,
}

pub(crate) fn round_f16(x: &Tensor) -> Result<Tensor> {
    Ok(x.to_dtype(DType::F16)?.to_dtype(x.dtype())?)
}

/// `x` `(b, t, heads, d)` as `(b, heads, t, d)`, rotated by `rotation`'s tables if given and
/// rounded to f16 for llama.cpp's numerics, in one pass of `cpu::rope` (the same bits as
/// candle's transpose, rotary op and conversions). `None` where that kernel does not apply:
/// off the fused CPU path, or a layout whose heads are not contiguous rows.
fn cpu_heads_first(
    x: &Tensor,
    rotation: Option<(&Rope, &Tensor, &Tensor)>,
    step: &StepContext,
) -> Result<Option<Tensor>> {
    use crate::config::RopeStyle;
    use crate::cpu::rope::{heads_first, Pairs, Rotation, Rows};
    let (b, t, heads, d) = x.dims4()?;
    if !step.cpu_kernel || x.dtype() != DType::F32 || !x.device().is_cpu() {
        return Ok(None);
    }
    let (xg, xl) = x.storage_and_layout();
    let st = xl.stride();
    if st[3] != 1 || st[2] != d || (b > 1 && st[0] != t * st[1]) {
        return Ok(None);
    }
    let rows = Rows {
        batch: b,
        t,
        heads,
        d,
        row_stride: st[1],
    };
    let src = super::cpu_f32(&xg, xl)?;
    let len = b * heads * t * d;
    let mut out = Vec::<f32>::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    match rotation {
        None => heads_first(src, rows, None, step.f16_attention, spare),
        Some((rope, cos, sin)) => {
            let per_row = match cos.dims() {
                [rt, h] if *rt == t && *h == d / 2 => false,
                [rb, rt, h] if *rb == b && *rt == t && *h == d / 2 => true,
                _ => return Ok(None),
            };
            if cos.dtype() != DType::F32 || !cos.is_contiguous() || !sin.is_contiguous() {
                return Ok(None);
            }
            let (cg, cl) = cos.storage_and_layout();
            let (sg, sl) = sin.storage_and_layout();
            let rotation = Rotation {
                cos: super::cpu_f32(&cg, cl)?,
                sin: super::cpu_f32(&sg, sl)?,
                per_row,
                pairs: match rope.style() {
                    RopeStyle::Interleaved => Pairs::Adjacent,
                    RopeStyle::Half => Pairs::Halves,
                },
            };
            heads_first(src, rows, Some(&rotation), step.f16_attention, spare);
        }
    }
    // SAFETY: `heads_first` writes every element of its output.
    unsafe { out.set_len(len) };
    Ok(Some(Tensor::from_vec(out, (b, heads, t, d), x.device())?))
}

/// How one layer's queries meet the cached keys: head counts, score scale and window.
#[derive(Clone, Copy, Debug)]
pub struct AttendShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub scale: f64,
    /// The sliding window, when this layer attends through it.
    pub window: Option<usize>,
}

/// The fused kernel (`cpu::attention`) reading K/V from the cache in place.
fn cpu_attention(
    q: &Tensor,
    k_all: &Tensor,
    v_all: &Tensor,
    a: AttendShape,
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
    let shape = crate::cpu::attention::AttentionShape {
        batch: b,
        heads: a.heads,
        kv_heads: a.kv_heads,
        q_len: t,
        kv_len,
        head_dim: d,
        kv_strides: [st[0], st[1], st[2]],
    };
    let len = b * t * a.heads * d;
    let mut out = Vec::<f32>::with_capacity(len);
    crate::cpu::attention::attention(
        &shape,
        super::cpu_f32(&qg, ql)?,
        super::cpu_f32(&kg, kl)?,
        super::cpu_f32(&vg, vl)?,
        step.query_positions,
        cache.key_positions(),
        a.window,
        a.scale as f32,
        step.f16_attention,
        &mut out.spare_capacity_mut()[..len],
    );
    // SAFETY: `attention` writes every element of its output.
    unsafe { out.set_len(len) };
    Ok(Tensor::from_vec(out, (b, t, a.heads * d), q.device())?)
}

/// Softmax attention of `q` `(b, heads, t, d)` over every cached key and value
/// `(b, kv_heads, S, d)` (the step's own already appended): `(b, t, heads * d)`.
pub fn attend(
    q: &Tensor,
    k_all: &Tensor,
    v_all: &Tensor,
    mask: &Option<Tensor>,
    a: AttendShape,
    step: &StepContext,
    cache: &KvCache,
) -> Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let kvh = a.kv_heads;
    if step.cpu_kernel {
        return cpu_attention(q, k_all, v_all, a, step, cache, t);
    }
    // Decode on CUDA: one kernel for the whole attention of the new token.
    if t == 1
        && mask.is_none()
        && !step.f16_attention
        && q.device().is_cuda()
        && super::own_cuda_kernels()
    {
        let q3 = q.reshape((b, h, d))?;
        if ethos_kernels::decode_attention_supported(&q3, k_all, v_all) {
            let y = ethos_kernels::decode_attention(&q3, k_all, v_all, a.scale as f32)?;
            return Ok(y.reshape((b, 1, h * d))?);
        }
    }
    let s = k_all.dim(2)?;
    // Query heads sharing a kv head are stacked along the rows, so K/V are never repeated.
    let n_rep = h / kvh;
    let q = q.reshape((b, kvh, n_rep * t, d))?;
    let scores = (q.matmul(&k_all.t()?)? * a.scale)?;
    let scores = match mask {
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
    let y = probs.matmul(v_all)?; // (b, kvh, n_rep * t, d)
    Ok(y.reshape((b, h, t, d))?
        .transpose(1, 2)?
        .reshape((b, t, h * d))?)
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

    pub fn into_dense(self, dtype: DType) -> Result<Self> {
        Ok(Self {
            qkv: self.qkv.into_dense(dtype)?,
            o: self.o.into_dense(dtype)?,
            ..self
        })
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
        let v = qkv[2].clone();
        let (q, k, v) = match (
            cpu_heads_first(&q, Some((step.rope, cos, sin)), step)?,
            cpu_heads_first(&k, Some((step.rope, cos, sin)), step)?,
            cpu_heads_first(&v, None, step)?,
        ) {
            (Some(q), Some(k), Some(v)) => (q, k, v),
            _ => {
                let q = step.rope.apply(&q.transpose(1, 2)?, cos, sin)?;
                let k = step.rope.apply(&k.transpose(1, 2)?, cos, sin)?;
                let v = v.transpose(1, 2)?;
                if step.f16_attention {
                    (round_f16(&q)?, round_f16(&k)?, round_f16(&v)?)
                } else {
                    (q, k, v)
                }
            }
        };
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
