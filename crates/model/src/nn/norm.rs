//! RMSNorm in f32, the formula of HF's `LlamaRMSNorm`.

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
