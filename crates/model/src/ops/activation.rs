//! Activations' device dispatch: `silu(gate) * up` in one pass of our CPU kernel where the
//! operands suit it, else candle's ops (the same bits).

use crate::error::Result;
use candle_core::{DType, Tensor};

/// `silu(gate) * up`.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if let Some(h) = cpu_silu_mul(gate, up)? {
        return Ok(h);
    }
    Ok((candle_nn::ops::silu(gate)? * up)?)
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
        super::cpu_f32(&gs, gl)?,
        super::cpu_f32(&us, ul)?,
        g_row,
        rows,
        n,
    );
    Ok(Some(Tensor::from_vec(out, gate.dims(), gate.device())?))
}
