//! The residual-stream hook: the one place inside the forward pass where steering (control
//! vectors) and activation capture (training them) can act. Model files never see it.

use crate::error::Result;
use candle_core::Tensor;
use std::ops::RangeInclusive;

pub trait ResidualHook {
    /// Called after block `layer` with the hidden states `(b, t, hidden)`; return `Some` to
    /// replace them.
    fn after_block(&mut self, layer: usize, hidden: &Tensor) -> Result<Option<Tensor>>;
}

/// Adds `scale * vector` to the residual stream after every block in `layers`.
pub struct AddVector {
    pub vector: Tensor,
    pub scale: f64,
    pub layers: RangeInclusive<usize>,
}

impl ResidualHook for AddVector {
    fn after_block(&mut self, layer: usize, hidden: &Tensor) -> Result<Option<Tensor>> {
        if !self.layers.contains(&layer) {
            return Ok(None);
        }
        let v = (self.vector.to_dtype(hidden.dtype())? * self.scale)?;
        Ok(Some(hidden.broadcast_add(&v)?))
    }
}

/// Records the hidden states after the blocks in `layers` (for training control vectors).
pub struct Capture {
    pub layers: RangeInclusive<usize>,
    pub captured: Vec<(usize, Tensor)>,
}

impl ResidualHook for Capture {
    fn after_block(&mut self, layer: usize, hidden: &Tensor) -> Result<Option<Tensor>> {
        if self.layers.contains(&layer) {
            self.captured.push((layer, hidden.clone()));
        }
        Ok(None)
    }
}
