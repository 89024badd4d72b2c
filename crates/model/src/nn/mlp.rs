//! The gated feed-forward block: down(silu(gate(x)) * up(x)).

use super::linear::{Linear, MultiLinear};
use crate::error::Result;
use candle_core::{DType, Tensor};

pub struct Mlp {
    gate_up: MultiLinear,
    down: Linear,
}

impl Mlp {
    pub fn new(gate: Linear, up: Linear, down: Linear) -> Result<Self> {
        Ok(Self {
            gate_up: MultiLinear::new(vec![gate, up])?,
            down,
        })
    }

    pub fn into_dense(self, dtype: DType) -> Result<Self> {
        Ok(Self {
            gate_up: self.gate_up.into_dense(dtype)?,
            down: self.down.into_dense(dtype)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gu = self.gate_up.forward(x)?;
        let h = (candle_nn::ops::silu(&gu[0])? * &gu[1])?;
        self.down.forward(&h)
    }
}
