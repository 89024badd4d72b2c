//! The gated feed-forward block: down(act(gate(x)) * up(x)), act = SiLU (Llama) or
//! tanh-GELU (Gemma).

use super::linear::{Linear, MultiLinear};
use crate::config::Activation;
use crate::error::Result;
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

    pub fn into_dense(self, dtype: DType) -> Result<Self> {
        Ok(Self {
            gate_up: self.gate_up.into_dense(dtype)?,
            down: self.down.into_dense(dtype)?,
            act: self.act,
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
        if self.act == Activation::Silu {
            if let Some(h) = cpu_silu_mul(&gu[0], &gu[1])? {
                return self.down.forward(&h);
            }
        }
        let gate = match self.act {
            Activation::Silu => candle_nn::ops::silu(&gu[0])?,
            Activation::GeluTanh if llama_cpp_gelu => table_gelu(&gu[0])?,
            Activation::GeluTanh => gu[0].gelu()?,
        };
        let h = (gate * &gu[1])?;
        self.down.forward(&h)
    }
}

/// Where `t` (f32, on the CPU) is rows of its last dim at a uniform stride (as the gate and
/// up halves of the fused projection are): that row stride.
fn strided_rows(t: &Tensor) -> Option<usize> {
    let l = t.layout();
    let (dims, st) = (l.dims(), l.stride());
    let r = dims.len();
    if !t.device().is_cpu() || t.dtype() != DType::F32 || r < 2 || st[r - 1] != 1 {
        return None;
    }
    let row = st[r - 2];
    let uniform = (0..r - 2).all(|i| st[i] == st[i + 1] * dims[i + 1]);
    (uniform && row >= dims[r - 1]).then_some(row)
}

/// `silu(gate) * up` in one pass on the CPU (`None` where the operands do not suit it):
/// candle's two ops allocate and stream an intermediate and call libm's scalar exp.
fn cpu_silu_mul(gate: &Tensor, up: &Tensor) -> Result<Option<Tensor>> {
    let (Some(g_row), Some(u_row)) = (strided_rows(gate), strided_rows(up)) else {
        return Ok(None);
    };
    let n = gate.dim(candle_core::D::Minus1)?;
    if g_row != u_row || up.dims() != gate.dims() {
        return Ok(None);
    }
    let rows = gate.elem_count() / n.max(1);
    let (gs, gl) = gate.storage_and_layout();
    let (us, ul) = up.storage_and_layout();
    let out = crate::cpu::vexp::silu_mul_rows(
        crate::ops::cpu_f32(&gs, gl)?,
        crate::ops::cpu_f32(&us, ul)?,
        g_row,
        rows,
        n,
    );
    Ok(Some(Tensor::from_vec(out, gate.dims(), gate.device())?))
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
