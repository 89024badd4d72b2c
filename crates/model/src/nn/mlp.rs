//! The gated feed-forward block: down(act(gate(x)) * up(x)), act = SiLU (Llama) or
//! tanh-GELU (Gemma).

use crate::config::Activation;
use crate::error::Result;
use crate::ops::activation;
use crate::ops::linear::{Linear, MultiLinear};
use candle_core::{DType, Tensor};

pub struct Mlp {
    gate_up: MultiLinear,
    down: Linear,
    act: Activation,
}

impl Mlp {
    pub fn new(gate: Linear, up: Linear, down: Linear, act: Activation) -> Result<Self> {
        Ok(Self {
            gate_up: MultiLinear::new(vec![gate, up])?,
            down,
            act,
        })
    }

    /// `llama_cpp_gelu`: GELU as llama.cpp's CPU backend computes it (quantized GGUF models,
    /// so that their numbers match llama.cpp's): looked up in a table of f16 values at the
    /// f16-rounded input, 0 below -10 and the identity above 10.
    pub fn forward(&self, x: &Tensor, llama_cpp_gelu: bool) -> Result<Tensor> {
        if self.act == Activation::Silu {
            if let Some(h) = self.gate_up.swiglu_forward(x)? {
                return self.down.forward(&h);
            }
        }
        let gu = self.gate_up.forward(x)?;
        let h = match self.act {
            Activation::Silu => activation::silu_mul(&gu[0], &gu[1])?,
            Activation::GeluTanh if llama_cpp_gelu => (table_gelu(&gu[0])? * &gu[1])?,
            Activation::GeluTanh => (gu[0].gelu()? * &gu[1])?,
        };
        self.down.forward(&h)
    }
}

/// ggml's `ggml_vec_geglu_f32` with `GGML_GELU_FP16`: `f16(gelu(f16(x)))` for |x| < 10.
fn table_gelu(x: &Tensor) -> Result<Tensor> {
    let dt = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let half = |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(DType::F16)?.to_dtype(DType::F32)?) };
    let looked_up = half(&half(&x)?.gelu()?)?;
    let zeros = x.zeros_like()?;
    let y = x
        .ge(10f32)?
        .where_cond(&x, &x.le(-10f32)?.where_cond(&zeros, &looked_up)?)?;
    Ok(y.to_dtype(dt)?)
}
