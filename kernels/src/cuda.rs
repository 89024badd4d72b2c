//! Launches of `cuda/*.cu` on candle's CUDA tensors (PTX compiled by build.rs).

use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorage, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{DType, Error, Result, Shape, Storage, Tensor};
use half::bf16;

const RESIDUAL_NORM_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/residual_norm.ptx"));
const GEMV_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/gemv.ptx"));
const DECODE_ATTENTION_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/decode_attention.ptx"));

/// Threads per block: one block per row, strided over the row.
const BLOCK: u32 = 256;

fn row_config(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The device pointer of a contiguous CUDA tensor of element type `T`, from its first element.
fn ptr<T: CudaDType>(t: &Tensor, dev: &CudaDevice) -> Result<u64> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(cs) = &*storage else {
        return Err(Error::Msg("expected a CUDA tensor".into()));
    };
    if !layout.is_contiguous() {
        return Err(Error::Msg("expected a contiguous tensor".into()));
    }
    let slice = cs.as_cuda_slice::<T>()?;
    let stream = dev.cuda_stream();
    let (p, _sync) = slice.device_ptr(&stream);
    Ok(p + (layout.start_offset() * std::mem::size_of::<T>()) as u64)
}

/// The device pointer of the first element of a (possibly strided) view.
fn view_ptr<T: CudaDType>(t: &Tensor, dev: &CudaDevice) -> Result<u64> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(cs) = &*storage else {
        return Err(Error::Msg("expected a CUDA tensor".into()));
    };
    let slice = cs.as_cuda_slice::<T>()?;
    let stream = dev.cuda_stream();
    let (p, _sync) = slice.device_ptr(&stream);
    Ok(p + (layout.start_offset() * std::mem::size_of::<T>()) as u64)
}

fn wrap<T: CudaDType>(slice: CudaSlice<T>, dev: &CudaDevice, shape: Shape) -> Tensor {
    let storage = CudaStorage::wrap_cuda_slice(slice, dev.clone());
    Tensor::from_storage(Storage::Cuda(storage), shape, BackpropOp::none(), false)
}

pub fn residual_rmsnorm(
    dev: &CudaDevice,
    residual: &Tensor,
    delta: &Tensor,
    weight: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    match residual.dtype() {
        DType::F32 => {
            launch_residual_norm::<f32>(dev, "residual_rmsnorm_f32", residual, delta, weight, eps)
        }
        DType::BF16 => {
            launch_residual_norm::<bf16>(dev, "residual_rmsnorm_bf16", residual, delta, weight, eps)
        }
        dt => Err(Error::Msg(format!("residual_rmsnorm: dtype {dt:?}"))),
    }
}

fn launch_residual_norm<T: CudaDType + DeviceRepr>(
    dev: &CudaDevice,
    name: &str,
    residual: &Tensor,
    delta: &Tensor,
    weight: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    let shape = residual.shape().clone();
    let d = residual.dim(candle_core::D::Minus1)?;
    let rows = shape.elem_count() / d;
    let residual = residual.contiguous()?;
    let delta = delta.contiguous()?;
    let weight = weight.to_dtype(DType::F32)?.contiguous()?;
    // SAFETY: uninitialized device memory, read only after the launch below writes every
    // element of both (one block per row, its threads striding over all `d` columns).
    let out_residual = unsafe { dev.alloc::<T>(shape.elem_count()) }?;
    let out_normed = unsafe { dev.alloc::<T>(shape.elem_count()) }?;
    let out_residual = wrap(out_residual, dev, shape.clone());
    let out_normed = wrap(out_normed, dev, shape);
    let args: [u64; 5] = [
        ptr::<T>(&residual, dev)?,
        ptr::<T>(&delta, dev)?,
        ptr::<f32>(&weight, dev)?,
        ptr::<T>(&out_residual, dev)?,
        ptr::<T>(&out_normed, dev)?,
    ];
    let d_i32 = d as i32;
    let func = dev.get_or_load_custom_func(name, "ethos_residual_norm", RESIDUAL_NORM_PTX)?;
    let mut b = func.builder();
    for a in &args {
        b.arg(a);
    }
    b.arg(&d_i32).arg(&eps);
    // SAFETY: the arguments match `residual_rmsnorm_*`'s signature in order and type; every
    // buffer holds `rows * d` elements (`weight` `d`), which is what a grid of one block per
    // row indexes; the inputs stay alive until it has run.
    unsafe { b.launch(row_config(rows)) }.w()?;
    // The inputs must outlive the launch, which is ordered on the device's stream.
    drop((residual, delta, weight));
    Ok((out_residual, out_normed))
}

/// Warps (one output row each) per block of `gemv.cu`.
const GEMV_WARPS: usize = 8;

pub fn gemv(dev: &CudaDevice, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let n = w.dim(0)?;
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let (name, xp, wp, y) = match x.dtype() {
        DType::F32 => (
            format!("gemv_f32_{m}"),
            ptr::<f32>(&x, dev)?,
            ptr::<f32>(&w, dev)?,
            // SAFETY: uninitialized; the launch below writes all `m * n` outputs (one warp per
            // row of `w`, each writing its column for all `m` rows), or it is dropped unread.
            wrap(unsafe { dev.alloc::<f32>(m * n) }?, dev, (m, n).into()),
        ),
        DType::BF16 => (
            format!("gemv_bf16_{m}"),
            ptr::<bf16>(&x, dev)?,
            ptr::<bf16>(&w, dev)?,
            // SAFETY: as for f32 above.
            wrap(unsafe { dev.alloc::<bf16>(m * n) }?, dev, (m, n).into()),
        ),
        dt => return Err(Error::Msg(format!("gemv: dtype {dt:?}"))),
    };
    if xp % 16 != 0 || wp % 16 != 0 {
        // A view starting mid-row: the 16-byte loads need aligned rows.
        return x.matmul(&w.t()?);
    }
    let yp = match y.dtype() {
        DType::F32 => ptr::<f32>(&y, dev)?,
        _ => ptr::<bf16>(&y, dev)?,
    };
    let (n_i32, k_i32) = (n as i32, k as i32);
    let func = dev.get_or_load_custom_func(&name, "ethos_gemv", GEMV_PTX)?;
    let mut b = func.builder();
    b.arg(&xp).arg(&wp).arg(&yp).arg(&n_i32).arg(&k_i32);
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(GEMV_WARPS) as u32, 1, 1),
        block_dim: (32 * GEMV_WARPS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the arguments match `gemv_*_{m}`'s signature in order and type; `x` is `(m, k)`,
    // `w` `(n, k)` and `y` `(m, n)`, contiguous, with 16-byte aligned rows and `k` a multiple
    // of 16 bytes (checked above and in lib.rs); warps past row `n` return at once.
    unsafe { b.launch(cfg) }.w()?;
    drop((x, w));
    Ok(y)
}

/// Warps per block of `decode_attention.cu`.
const ATT_WARPS: u32 = 4;

pub fn decode_attention(
    dev: &CudaDevice,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
) -> Result<Tensor> {
    let (b, h, d) = q.dims3()?;
    let (_, kvh, s, _) = k.dims4()?;
    let st = k.stride();
    let (batch_stride, head_stride) = (st[0] as i64, st[1] as i64);
    let (name, qp, kp, vp, out) = match q.dtype() {
        DType::F32 => (
            "decode_attention_f32",
            ptr::<f32>(q, dev)?,
            view_ptr::<f32>(k, dev)?,
            view_ptr::<f32>(v, dev)?,
            // SAFETY: uninitialized; the launch below writes all `d` elements of each of the
            // `b * h` (sequence, head) rows, one block per row, before anything reads it.
            wrap(
                unsafe { dev.alloc::<f32>(b * h * d) }?,
                dev,
                (b, h, d).into(),
            ),
        ),
        DType::BF16 => (
            "decode_attention_bf16",
            ptr::<bf16>(q, dev)?,
            view_ptr::<bf16>(k, dev)?,
            view_ptr::<bf16>(v, dev)?,
            // SAFETY: as for f32 above.
            wrap(
                unsafe { dev.alloc::<bf16>(b * h * d) }?,
                dev,
                (b, h, d).into(),
            ),
        ),
        dt => return Err(Error::Msg(format!("decode_attention: dtype {dt:?}"))),
    };
    let op = match out.dtype() {
        DType::F32 => ptr::<f32>(&out, dev)?,
        _ => ptr::<bf16>(&out, dev)?,
    };
    let (h_i32, kvh_i32, s_i32, d_i32) = (h as i32, kvh as i32, s as i32, d as i32);
    let func = dev.get_or_load_custom_func(name, "ethos_decode_attention", DECODE_ATTENTION_PTX)?;
    let mut bld = func.builder();
    bld.arg(&qp)
        .arg(&kp)
        .arg(&vp)
        .arg(&op)
        .arg(&h_i32)
        .arg(&kvh_i32);
    bld.arg(&s_i32)
        .arg(&d_i32)
        .arg(&batch_stride)
        .arg(&head_stride)
        .arg(&scale);
    let cfg = LaunchConfig {
        grid_dim: ((b * h) as u32, 1, 1),
        block_dim: (32 * ATT_WARPS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the arguments match `decode_attention_*`'s signature in order and type; lib.rs
    // checked the shapes the kernel assumes (`d` a multiple of 32 up to 256, `heads` a multiple
    // of `kv_heads`, `s > 0`, k/v rows `d` apart within the given batch/head strides), and
    // the grid is one block per (sequence, head); `q`, `k`, `v` are borrowed past the launch.
    unsafe { bld.launch(cfg) }.w()?;
    Ok(out)
}
