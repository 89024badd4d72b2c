//! Attention's device dispatch: heads-first layout with rotary (our CPU kernel, else
//! candle's ops) and softmax attention over the cache (our CPU kernel, our CUDA decode kernel,
//! else candle's ops), with what every layer of a step shares.

use super::{Kernels, Numerics};
use crate::cache::KvCache;
use crate::error::Result;
use crate::nn::rope::Rope;
use candle_core::{DType, Tensor};

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
    /// The model's arithmetic: with llama.cpp's, q, k, v and the attention probabilities are
    /// rounded to f16 as its default f16 KV cache does (its non-flash path converts q and the
    /// probabilities to f16 for the two products, accumulating in f32).
    pub numerics: Numerics,
    pub kernels: Kernels,
    /// This step takes our fused CPU attention kernel (f32 on the CPU, `kernels` allowing
    /// it); `mask` is then not built.
    pub cpu_kernel: bool,
    pub query_positions: &'a [Vec<i32>],
    /// The window of the sliding-window layers.
    pub window: Option<usize>,
}

/// Whether a step on `device` in `dtype` takes our fused CPU attention kernel (which builds no
/// masks), `kernels` allowing it.
pub fn takes_cpu_kernel(kernels: &Kernels, device: &candle_core::Device, dtype: DType) -> bool {
    kernels.cpu_attention && device.is_cpu() && dtype == DType::F32
}

impl StepContext<'_> {
    /// Whether the step follows llama.cpp's arithmetic.
    pub fn llama_cpp(&self) -> bool {
        self.numerics == Numerics::LlamaCpp
    }
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
        None => heads_first(src, rows, None, step.llama_cpp(), spare),
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
            heads_first(src, rows, Some(&rotation), step.llama_cpp(), spare);
        }
    }
    // SAFETY: `heads_first` writes every element of its output.
    unsafe { out.set_len(len) };
    Ok(Some(Tensor::from_vec(out, (b, heads, t, d), x.device())?))
}

/// q, k and v `(b, t, heads, d)` as `(b, heads, t, d)`, q and k rotated by the step's rotary
/// with these tables (`cos`, `sin`: the global or the sliding layers'), all three rounded to
/// f16 under llama.cpp's arithmetic: our CPU kernel in one pass each where it applies to all
/// three, else candle's transpose, rotary op and conversions (the same bits).
pub fn qkv_heads_first(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    step: &StepContext,
) -> Result<(Tensor, Tensor, Tensor)> {
    let rope = step.rope;
    if let (Some(q), Some(k), Some(v)) = (
        cpu_heads_first(q, Some((rope, cos, sin)), step)?,
        cpu_heads_first(k, Some((rope, cos, sin)), step)?,
        cpu_heads_first(v, None, step)?,
    ) {
        return Ok((q, k, v));
    }
    let q = rope.apply(&q.transpose(1, 2)?, cos, sin)?;
    let k = rope.apply(&k.transpose(1, 2)?, cos, sin)?;
    let v = v.transpose(1, 2)?;
    if step.llama_cpp() {
        Ok((round_f16(&q)?, round_f16(&k)?, round_f16(&v)?))
    } else {
        Ok((q, k, v))
    }
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
        step.llama_cpp(),
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
    // bf16/f16 on the CPU: our kernel on the exact f32 values, the result rounded back.
    // candle's half-precision products pick their kernel by the number of query rows, so a
    // query's numbers would follow the length of its step.
    if q.device().is_cpu()
        && matches!(q.dtype(), DType::BF16 | DType::F16)
        && step.kernels.cpu_attention
    {
        let f32_of = |x: &Tensor| x.to_dtype(DType::F32);
        let y = cpu_attention(
            &f32_of(q)?,
            &f32_of(k_all)?,
            &f32_of(v_all)?,
            a,
            step,
            cache,
            t,
        )?;
        return Ok(y.to_dtype(q.dtype())?);
    }
    // Decode on CUDA: one kernel for the whole attention of the new token.
    if t == 1 && mask.is_none() && !step.llama_cpp() && q.device().is_cuda() && step.kernels.cuda {
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
    if step.llama_cpp() {
        probs = round_f16(&probs)?;
    }
    let y = probs.matmul(v_all)?; // (b, kvh, n_rep * t, d)
    Ok(y.reshape((b, h, t, d))?
        .transpose(1, 2)?
        .reshape((b, t, h * d))?)
}
