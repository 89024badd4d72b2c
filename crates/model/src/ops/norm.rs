//! RMSNorm's device dispatch (and the residual add before it): our fused CUDA kernel, our
//! CPU kernel on f32 CPU tensors (candle's bits, on our thread pool), else candle's ops.

use super::Kernels;
use crate::error::Result;
use candle_core::{DType, Tensor};

/// `(x + delta, RMSNorm(x + delta) * weight)`: the residual add at a block boundary and the
/// norm that follows it. On CUDA one kernel does both (same arithmetic: the sum is rounded to
/// the residual's dtype, then normalised in f32).
pub fn add_rms_norm(
    x: &Tensor,
    delta: &Tensor,
    weight: &Tensor,
    eps: f32,
    kernels: &Kernels,
) -> Result<(Tensor, Tensor)> {
    if x.device().is_cuda()
        && kernels.cuda
        && matches!(x.dtype(), DType::F32 | DType::BF16)
        && x.dtype() == delta.dtype()
    {
        return Ok(ethos_kernels::residual_rmsnorm(x, delta, weight, eps)?);
    }
    if let Some(pair) = cpu_add_rms_norm(x, Some(delta), weight, eps)? {
        return Ok(pair);
    }
    let h = (x + delta)?;
    let n = rms_norm(&h, weight, eps)?;
    Ok((h, n))
}

/// `RMSNorm(x) * weight`, normalised in f32 (half-precision inputs as HF does: in f32, then
/// cast back).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    if let Some((_, y)) = cpu_add_rms_norm(x, None, weight, eps)? {
        return Ok(y);
    }
    if x.dtype() == DType::F32 {
        return Ok(candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps)?);
    }
    let dt = x.dtype();
    let y = candle_nn::ops::rms_norm(
        &x.to_dtype(DType::F32)?.contiguous()?,
        &weight.to_dtype(DType::F32)?,
        eps,
    )?;
    Ok(y.to_dtype(dt)?)
}

/// `cpu::rms_norm` on f32 CPU tensors: `(x + delta, its norm)`, or `(x, its norm)` without
/// `delta`. `None` off the CPU or f32.
fn cpu_add_rms_norm(
    x: &Tensor,
    delta: Option<&Tensor>,
    weight: &Tensor,
    eps: f32,
) -> Result<Option<(Tensor, Tensor)>> {
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if !f32_cpu(x) || !f32_cpu(weight) || delta.is_some_and(|d| !f32_cpu(d)) {
        return Ok(None);
    }
    let n = x.dim(candle_core::D::Minus1)?;
    if weight.dims1()? != n || delta.is_some_and(|d| d.dims() != x.dims()) {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let delta = delta.map(Tensor::contiguous).transpose()?;
    let weight = weight.contiguous()?;
    let len = x.elem_count();
    let (h, y) = {
        let (xg, xl) = x.storage_and_layout();
        let (wg, wl) = weight.storage_and_layout();
        let dg = delta.as_ref().map(|d| d.storage_and_layout());
        let d = match &dg {
            Some((g, l)) => Some(&super::cpu_f32(g, l)?[..len]),
            None => None,
        };
        crate::cpu::rms_norm::add_rms_norm(
            &super::cpu_f32(&xg, xl)?[..len],
            d,
            &super::cpu_f32(&wg, wl)?[..n],
            eps,
            n,
        )
    };
    let shape = x.shape().clone();
    let y = Tensor::from_vec(y, shape.clone(), x.device())?;
    let h = match h {
        Some(h) => Tensor::from_vec(h, shape, x.device())?,
        None => x,
    };
    Ok(Some((h, y)))
}
