//! ethos' own GPU kernels for the two hot paths of steering, each with a CPU reference:
//!
//! - [`residual_steer_rmsnorm`]: the block boundary of activation steering (residual add,
//!   steering-vector add, RMSNorm) in one pass.
//! - [`logit_weight_topk`]: the step of palette decoding (lambda-weighted reward rows added to
//!   the logits, log-softmax, top-k) in one pass.
//!
//! On CUDA tensors (feature `cuda`) the functions launch `cuda/*.cu`; on any other device they
//! compose candle ops with the same arithmetic. `reference` holds the plain-loop CPU
//! implementations that both are tested against. `metal/*.metal` are the Metal sources of the
//! same kernels (not yet dispatched: Metal runs the composed path).

#[cfg(feature = "cuda")]
mod cuda;
pub mod reference;

use candle_core::{DType, Error, Result, Tensor, D};

/// Largest `k` of [`logit_weight_topk`] (the CUDA kernel keeps k candidates per thread).
pub const MAX_TOPK: usize = 64;

/// Most rows of `x` that [`gemv`] takes (decode of up to this many sequences).
pub const GEMV_MAX_ROWS: usize = 8;

/// Whether [`gemv`] takes these operands: `x (m, k)` and `w (n, k)` of one dtype (f32 or
/// bf16), `m <= GEMV_MAX_ROWS`, `k` a multiple of 16 bytes' worth of elements.
pub fn gemv_supported(x: &Tensor, w: &Tensor) -> bool {
    let (Ok((m, k)), Ok((_, wk))) = (x.dims2(), w.dims2()) else {
        return false;
    };
    let per16 = 16 / x.dtype().size_in_bytes().max(1);
    matches!(x.dtype(), DType::F32 | DType::BF16)
        && x.dtype() == w.dtype()
        && (1..=GEMV_MAX_ROWS).contains(&m)
        && k == wk
        && k % per16 == 0
}

/// `x . w^T` for a few rows of `x`, `(m, k) x (n, k) -> (m, n)`, accumulated in f32: the
/// projections of decode. On CUDA a kernel that streams `w` once with 16-byte loads; on
/// other devices candle's matmul.
pub fn gemv(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !gemv_supported(x, w) {
        return Err(Error::Msg(format!(
            "gemv: x {:?} {:?} and w {:?} {:?}: needs one dtype (f32 or bf16), at most {GEMV_MAX_ROWS} rows, equal inner sizes a multiple of 16 bytes",
            x.dims(),
            x.dtype(),
            w.dims(),
            w.dtype()
        )));
    }
    match x.device() {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(dev) => cuda::gemv(dev, x, w),
        _ => x.matmul(&w.t()?),
    }
}

/// Whether [`decode_attention`] takes these operands: `q (b, heads, d)` contiguous, `k` and
/// `v` `(b, kv_heads, s, d)` with unit stride along `d`, rows `d` apart and equal strides (a
/// prefix of a KV cache), one dtype (f32 or bf16), `d` a multiple of 32 up to 256.
pub fn decode_attention_supported(q: &Tensor, k: &Tensor, v: &Tensor) -> bool {
    let (Ok((b, h, d)), Ok((kb, kvh, s, kd))) = (q.dims3(), k.dims4()) else {
        return false;
    };
    let ks = k.stride();
    matches!(q.dtype(), DType::F32 | DType::BF16)
        && q.dtype() == k.dtype()
        && k.dtype() == v.dtype()
        && q.is_contiguous()
        && k.dims() == v.dims()
        && k.stride() == v.stride()
        && kb == b
        && kd == d
        && s > 0
        && kvh > 0
        && h % kvh == 0
        && d % 32 == 0
        && d <= 256
        && ks[3] == 1
        && ks[2] == d
}

/// Softmax attention of one query per sequence and head over all `s` keys (no mask):
/// `out[b, h] = softmax(scale * q[b, h] . K[b, h / group]^T) . V[b, h / group]`, where
/// `group = heads / kv_heads`. Returns `(b, heads, d)`. On CUDA one kernel with f32
/// accumulation; elsewhere candle ops in f32.
pub fn decode_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    if !decode_attention_supported(q, k, v) {
        return Err(Error::Msg(format!(
            "decode_attention: q {:?}, k {:?} (stride {:?}), v {:?} {:?}: unsupported shapes, strides or dtype",
            q.dims(),
            k.dims(),
            k.stride(),
            v.dims(),
            v.dtype()
        )));
    }
    match q.device() {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(dev) => cuda::decode_attention(dev, q, k, v, scale),
        _ => composed_decode_attention(q, k, v, scale),
    }
}

fn composed_decode_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    let (b, h, d) = q.dims3()?;
    let kvh = k.dim(1)?;
    let dtype = q.dtype();
    let q = q.to_dtype(DType::F32)?.reshape((b, kvh, h / kvh, d))?;
    let k = k.to_dtype(DType::F32)?;
    let v = v.to_dtype(DType::F32)?;
    let scores = (q.matmul(&k.t()?)? * scale as f64)?;
    let m = scores.max_keepdim(D::Minus1)?;
    let p = scores.broadcast_sub(&m)?.exp()?;
    let p = p.broadcast_div(&p.sum_keepdim(D::Minus1)?)?;
    p.matmul(&v)?.reshape((b, h, d))?.to_dtype(dtype)
}

/// `residual + delta + scale * steer`, stored in the residual's dtype, and its RMSNorm with
/// `weight`. `residual` and `delta` are `(..., d)` f32 or bf16; `steer` and `weight` are `(d)`.
/// Returns `(new_residual, normed)`.
pub fn residual_steer_rmsnorm(
    residual: &Tensor,
    delta: &Tensor,
    steer: Option<(&Tensor, f32)>,
    weight: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    let d = residual.dim(D::Minus1)?;
    if delta.shape() != residual.shape() || delta.dtype() != residual.dtype() {
        return Err(Error::Msg(format!(
            "residual_steer_rmsnorm: delta is {:?} {:?}, the residual {:?} {:?}",
            delta.shape(),
            delta.dtype(),
            residual.shape(),
            residual.dtype()
        )));
    }
    if !matches!(residual.dtype(), DType::F32 | DType::BF16) {
        return Err(Error::Msg(format!(
            "residual_steer_rmsnorm: dtype {:?} (f32 or bf16 only)",
            residual.dtype()
        )));
    }
    for (what, t) in [("weight", Some(weight)), ("steer", steer.map(|s| s.0))] {
        if let Some(t) = t {
            if t.dims() != [d] {
                return Err(Error::Msg(format!(
                    "residual_steer_rmsnorm: {what} has shape {:?}, the hidden size is {d}",
                    t.dims()
                )));
            }
        }
    }
    match residual.device() {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(dev) => {
            cuda::residual_steer_rmsnorm(dev, residual, delta, steer, weight, eps)
        }
        _ => composed_residual_steer_rmsnorm(residual, delta, steer, weight, eps),
    }
}

/// The unfused path in candle ops, with the kernel's arithmetic (sums in f32, one rounding).
fn composed_residual_steer_rmsnorm(
    residual: &Tensor,
    delta: &Tensor,
    steer: Option<(&Tensor, f32)>,
    weight: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    let dtype = residual.dtype();
    let mut h = (residual.to_dtype(DType::F32)? + delta.to_dtype(DType::F32)?)?;
    if let Some((s, scale)) = steer {
        h = h.broadcast_add(&(s.to_dtype(DType::F32)? * scale as f64)?)?;
    }
    let stored = h.to_dtype(dtype)?;
    let r = stored.to_dtype(DType::F32)?;
    let inv = (r.sqr()?.mean_keepdim(D::Minus1)? + eps as f64)?
        .sqrt()?
        .recip()?;
    let normed = r
        .broadcast_mul(&inv)?
        .broadcast_mul(&weight.to_dtype(DType::F32)?)?
        .to_dtype(dtype)?;
    Ok((stored, normed))
}

/// What [`logit_weight_topk`] returns.
#[derive(Debug)]
pub struct WeightedTopK {
    /// `(rows, vocab)` f32: the log-softmax of the weighted logits.
    pub logprobs: Tensor,
    /// `(rows, k)` u32: the ids of the k best, best first (ties: smaller id first).
    pub top_ids: Tensor,
    /// `(rows, k)` f32: their log-probs.
    pub top_logprobs: Tensor,
}

/// `log_softmax(logits + sum_j lambda[j] * rewards[j])` and its top `k` per row.
/// `logits` is `(rows, vocab)` f32 or bf16; `rewards` f32, `(n, vocab)` shared by all rows or
/// `(rows, n, vocab)` per row; `lambda` has `n` weights.
pub fn logit_weight_topk(
    logits: &Tensor,
    rewards: &Tensor,
    lambda: &[f32],
    k: usize,
) -> Result<WeightedTopK> {
    let (rows, vocab) = logits.dims2()?;
    let per_row = match rewards.dims() {
        [n, v] if *n == lambda.len() && *v == vocab => false,
        [r, n, v] if *r == rows && *n == lambda.len() && *v == vocab => true,
        other => {
            return Err(Error::Msg(format!(
                "logit_weight_topk: rewards have shape {other:?}; expected ({n}, {vocab}) or ({rows}, {n}, {vocab}) for {n} lambda weights",
                n = lambda.len()
            )))
        }
    };
    if k == 0 || k > MAX_TOPK || k > vocab {
        return Err(Error::Msg(format!(
            "logit_weight_topk: k = {k}; it must be in 1..={}",
            MAX_TOPK.min(vocab)
        )));
    }
    if !matches!(logits.dtype(), DType::F32 | DType::BF16) || rewards.dtype() != DType::F32 {
        return Err(Error::Msg(format!(
            "logit_weight_topk: logits {:?} (f32 or bf16), rewards {:?} (f32)",
            logits.dtype(),
            rewards.dtype()
        )));
    }
    if let Some(bad) = lambda.iter().find(|l| !l.is_finite()) {
        return Err(Error::Msg(format!(
            "logit_weight_topk: lambda weight {bad} is not finite"
        )));
    }
    match logits.device() {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(dev) => {
            cuda::logit_weight_topk(dev, logits, rewards, per_row, lambda, k)
        }
        _ => composed_logit_weight_topk(logits, rewards, per_row, lambda, k),
    }
}

fn composed_logit_weight_topk(
    logits: &Tensor,
    rewards: &Tensor,
    per_row: bool,
    lambda: &[f32],
    k: usize,
) -> Result<WeightedTopK> {
    let (rows, vocab) = logits.dims2()?;
    let n = lambda.len();
    let device = logits.device();
    let mut z = logits.to_dtype(DType::F32)?;
    if n > 0 {
        let w = Tensor::from_slice(lambda, (n, 1), device)?;
        let bonus = if per_row {
            rewards.broadcast_mul(&w.unsqueeze(0)?)?.sum(1)?
        } else {
            rewards.broadcast_mul(&w)?.sum_keepdim(0)?
        };
        z = z.broadcast_add(&bonus)?;
    }
    let logprobs = candle_nn_free_log_softmax(&z)?;
    // Top-k on the host: the order (value, then smaller id) is the kernel's.
    let host = logprobs.to_vec2::<f32>()?;
    let (mut ids, mut vals) = (Vec::with_capacity(rows * k), Vec::with_capacity(rows * k));
    for row in &host {
        for (id, v) in reference::top_k(row, k) {
            ids.push(id);
            vals.push(v);
        }
    }
    debug_assert_eq!(host.first().map_or(vocab, Vec::len), vocab);
    Ok(WeightedTopK {
        logprobs,
        top_ids: Tensor::from_vec(ids, (rows, k), device)?,
        top_logprobs: Tensor::from_vec(vals, (rows, k), device)?,
    })
}

/// log-softmax over the last dimension (candle-nn is not a dependency of this crate).
fn candle_nn_free_log_softmax(z: &Tensor) -> Result<Tensor> {
    let m = z.max_keepdim(D::Minus1)?;
    let shifted = z.broadcast_sub(&m)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}
