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
        let h = (x + delta)?;
        let n = self.forward(&h)?;
        Ok((h, n))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
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
