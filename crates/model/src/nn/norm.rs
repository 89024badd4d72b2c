//! RMSNorm in f32, the formula of HF's `LlamaRMSNorm`, and the residual add before it.

use crate::error::Result;
use candle_core::{DType, Tensor};

pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn new(weight: Tensor, eps: f64) -> Self {
        Self {
            weight,
            eps: eps as f32,
        }
    }

    /// `(x + delta, RMSNorm(x + delta))`: the residual add at a block boundary and the norm
    /// that follows it. On CUDA one kernel does both (same arithmetic: the sum is rounded to
    /// the residual's dtype, then normalised in f32).
    pub fn add_forward(&self, x: &Tensor, delta: &Tensor) -> Result<(Tensor, Tensor)> {
        if x.device().is_cuda()
            && super::own_cuda_kernels()
            && matches!(x.dtype(), DType::F32 | DType::BF16)
            && x.dtype() == delta.dtype()
        {
            return Ok(ethos_kernels::residual_steer_rmsnorm(
                x,
                delta,
                None,
                &self.weight,
                self.eps,
            )?);
        }
        if let Some(pair) = self.cpu_forward(x, Some(delta))? {
            return Ok(pair);
        }
        let h = (x + delta)?;
        let n = self.forward(&h)?;
        Ok((h, n))
    }

    /// `cpu::rms_norm` on f32 CPU tensors (candle's bits, on our thread pool): `(x +
    /// delta, its norm)`, or `(x, its norm)` without `delta`. `None` off the CPU or f32.
    fn cpu_forward(&self, x: &Tensor, delta: Option<&Tensor>) -> Result<Option<(Tensor, Tensor)>> {
        let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
        if !f32_cpu(x) || !f32_cpu(&self.weight) || delta.is_some_and(|d| !f32_cpu(d)) {
            return Ok(None);
        }
        let n = x.dim(candle_core::D::Minus1)?;
        if self.weight.dims1()? != n || delta.is_some_and(|d| d.dims() != x.dims()) {
            return Ok(None);
        }
        let x = x.contiguous()?;
        let delta = delta.map(Tensor::contiguous).transpose()?;
        let weight = self.weight.contiguous()?;
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
                self.eps,
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

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some((_, y)) = self.cpu_forward(x, None)? {
            return Ok(y);
        }
        if x.dtype() == DType::F32 {
            return Ok(candle_nn::ops::rms_norm(
                &x.contiguous()?,
                &self.weight,
                self.eps,
            )?);
        }
        // Half precision: normalise in f32 as HF does, then cast back.
        let dt = x.dtype();
        let y = candle_nn::ops::rms_norm(
            &x.to_dtype(DType::F32)?.contiguous()?,
            &self.weight.to_dtype(DType::F32)?,
            self.eps,
        )?;
        Ok(y.to_dtype(dt)?)
    }
}
