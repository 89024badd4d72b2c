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
