//! RMSNorm in f32, the formula of HF's `LlamaRMSNorm`, and the residual add before it; the
//! implementations are `ops::norm`'s.

use crate::error::Result;
use crate::ops::{norm, Kernels};
use candle_core::Tensor;

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
    /// that follows it.
    pub fn add_forward(
        &self,
        x: &Tensor,
        delta: &Tensor,
        kernels: &Kernels,
    ) -> Result<(Tensor, Tensor)> {
        norm::add_rms_norm(x, delta, &self.weight, self.eps, kernels)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        norm::rms_norm(x, &self.weight, self.eps)
    }
}
