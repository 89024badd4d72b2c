//! ethos' own CUDA kernels for the decoder's hot paths on GPUs, each with a plain-loop CPU
//! reference (`reference`) they are tested against:
//!
//! - [`residual_rmsnorm`]: the block boundary (residual add and RMSNorm) in one pass; the
//!   decoder calls it at every boundary on CUDA. Steering vectors are not fused here: they
//!   enter through the decoder's residual hook on every device.
//! - [`gemv`]: the projections of decode, streaming the weights once.
//! - [`decode_attention`]: one query per sequence and head over the whole cache, in one launch.
//!
//! On CUDA tensors (feature `cuda`) the functions launch `cuda/*.cu`; on any other device they
//! compose candle ops with the same arithmetic. The CPU kernels of the CPU path live in
//! ethos-model (`ethos_model::cpu`).

#[cfg(feature = "cuda")]
mod cuda;
pub mod reference;

use candle_core::{DType, Error, Result, Tensor, D};

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

/// `residual + delta`, stored in the residual's dtype, and its RMSNorm with `weight`.
/// `residual` and `delta` are `(..., d)` f32 or bf16; `weight` is `(d)`. Returns
/// `(new_residual, normed)`.
pub fn residual_rmsnorm(
    residual: &Tensor,
    delta: &Tensor,
    weight: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    let d = residual.dim(D::Minus1)?;
    if delta.shape() != residual.shape() || delta.dtype() != residual.dtype() {
        return Err(Error::Msg(format!(
            "residual_rmsnorm: delta is {:?} {:?}, the residual {:?} {:?}",
            delta.shape(),
            delta.dtype(),
            residual.shape(),
            residual.dtype()
        )));
    }
    if !matches!(residual.dtype(), DType::F32 | DType::BF16) {
        return Err(Error::Msg(format!(
            "residual_rmsnorm: dtype {:?} (f32 or bf16 only)",
            residual.dtype()
        )));
    }
    if weight.dims() != [d] {
        return Err(Error::Msg(format!(
            "residual_rmsnorm: weight has shape {:?}, the hidden size is {d}",
            weight.dims()
        )));
    }
    match residual.device() {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(dev) => cuda::residual_rmsnorm(dev, residual, delta, weight, eps),
        _ => composed_residual_rmsnorm(residual, delta, weight, eps),
    }
}

/// The unfused path in candle ops, with the kernel's arithmetic (sums in f32, one rounding).
fn composed_residual_rmsnorm(
    residual: &Tensor,
    delta: &Tensor,
    weight: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    let dtype = residual.dtype();
    let h = (residual.to_dtype(DType::F32)? + delta.to_dtype(DType::F32)?)?;
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
