//! The kernels against their CPU reference: the reference against candle-nn's RMSNorm and
//! log-softmax (independent code), the composed path (CPU, Metal) against the reference, and,
//! where a CUDA device exists (built with `--features cuda`), the CUDA kernels against the
//! reference. Without a device the CUDA tests print why they skip; `benches/gpu/run.sh` runs
//! them on a GPU.

use candle_core::{DType, Device, Tensor};
use ethos_kernels::{reference, residual_rmsnorm};
use half::bf16;

fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

struct NormCase {
    rows: usize,
    d: usize,
    residual: Vec<f32>,
    delta: Vec<f32>,
    weight: Vec<f32>,
}

fn norm_case(rows: usize, d: usize) -> NormCase {
    NormCase {
        rows,
        d,
        residual: noise(rows * d, 1, 3.0),
        delta: noise(rows * d, 2, 1.0),
        weight: noise(d, 4, 1.0).iter().map(|w| 1.0 + w).collect(),
    }
}

/// Runs the public function on `device` in `dtype`; returns (residual, normed) as f32.
fn run_norm(c: &NormCase, device: &Device, dtype: DType) -> (Vec<f32>, Vec<f32>) {
    let t = |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, device).unwrap();
    let x = t(&c.residual, &[c.rows, c.d]).to_dtype(dtype).unwrap();
    let dl = t(&c.delta, &[c.rows, c.d]).to_dtype(dtype).unwrap();
    let w = t(&c.weight, &[c.d]);
    let (r, n) = residual_rmsnorm(&x, &dl, &w, 1e-5).unwrap();
    let f = |t: Tensor| {
        t.to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    (f(r), f(n))
}

fn reference_norm(c: &NormCase, dtype: DType) -> (Vec<f32>, Vec<f32>) {
    match dtype {
        DType::F32 => reference::residual_rmsnorm(&c.residual, &c.delta, &c.weight, 1e-5),
        _ => {
            let b = |v: &[f32]| v.iter().map(|x| bf16::from_f32(*x)).collect::<Vec<_>>();
            let (r, n) =
                reference::residual_rmsnorm(&b(&c.residual), &b(&c.delta), &c.weight, 1e-5);
            let f = |v: Vec<bf16>| v.iter().map(|x| x.to_f32()).collect::<Vec<_>>();
            (f(r), f(n))
        }
    }
}

#[test]
fn reference_norm_matches_candle_nn_rms_norm() {
    let c = norm_case(5, 576);
    let (r, n) = reference_norm(&c, DType::F32);
    let h: Vec<f32> = c
        .residual
        .iter()
        .zip(&c.delta)
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(r, h);
    let x = Tensor::from_slice(&h, (c.rows, c.d), &Device::Cpu).unwrap();
    let w = Tensor::from_slice(&c.weight, c.d, &Device::Cpu).unwrap();
    let want = candle_nn::ops::rms_norm(&x, &w, 1e-5)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(
        max_abs_diff(&n, &want) < 1e-5,
        "{}",
        max_abs_diff(&n, &want)
    );
}

#[test]
fn composed_norm_matches_reference() {
    let c = norm_case(7, 1000);
    for dtype in [DType::F32, DType::BF16] {
        let (r, n) = run_norm(&c, &Device::Cpu, dtype);
        let (rr, rn) = reference_norm(&c, dtype);
        // Residuals round identically; the norm differs by the f32-vs-f64 sum (1 bf16 ulp).
        let tol = if dtype == DType::F32 {
            (1e-6, 1e-5)
        } else {
            (0.0, 2e-2)
        };
        assert!(max_abs_diff(&r, &rr) <= tol.0, "{dtype:?} residual");
        assert!(
            max_abs_diff(&n, &rn) <= tol.1,
            "{dtype:?} normed {}",
            max_abs_diff(&n, &rn)
        );
    }
}

#[test]
fn bad_input_is_a_one_line_error() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 8), DType::F32, &dev).unwrap();
    let x9 = Tensor::zeros((2, 9), DType::F32, &dev).unwrap();
    let w8 = Tensor::ones(8, DType::F32, &dev).unwrap();
    let w9 = Tensor::ones(9, DType::F32, &dev).unwrap();
    let e = residual_rmsnorm(&x, &x9, &w8, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("delta") && e.contains("[2, 9]") && !e.contains('\n'),
        "{e}"
    );
    let e = residual_rmsnorm(&x, &x, &w9, 1e-5).unwrap_err().to_string();
    assert!(e.contains("weight") && e.contains("[9]"), "{e}");
}

/// The CUDA device, or why the CUDA tests skip.
fn cuda_device() -> Option<Device> {
    if !cfg!(feature = "cuda") {
        println!("skipped: built without --features cuda");
        return None;
    }
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            println!(
                "skipped: no CUDA device ({})",
                e.to_string().lines().next().unwrap_or("")
            );
            None
        }
    }
}

#[test]
fn cuda_norm_matches_reference() {
    let Some(dev) = cuda_device() else { return };
    for (rows, d) in [(1, 576), (7, 4096), (33, 7168), (2, 100)] {
        let c = norm_case(rows, d);
        for dtype in [DType::F32, DType::BF16] {
            let (r, n) = run_norm(&c, &dev, dtype);
            let (rr, rn) = reference_norm(&c, dtype);
            let tol = if dtype == DType::F32 {
                (1e-6, 1e-5)
            } else {
                (0.0, 2e-2)
            };
            let (dr, dn) = (max_abs_diff(&r, &rr), max_abs_diff(&n, &rn));
            println!("cuda residual_rmsnorm {rows}x{d} {dtype:?}: max |diff| residual {dr:e}, normed {dn:e}");
            assert!(dr <= tol.0 && dn <= tol.1);
        }
    }
}

fn run_gemv(device: &Device, dtype: DType, m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    let xs = noise(m * k, 21, 1.0);
    let ws = noise(n * k, 22, 0.05);
    let x = Tensor::from_slice(&xs, (m, k), device)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let w = Tensor::from_slice(&ws, (n, k), device)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let got = ethos_kernels::gemv(&x, &w)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let want = match dtype {
        DType::F32 => reference::gemv(&xs, &ws, m, n, k),
        _ => {
            let b = |v: &[f32]| v.iter().map(|x| bf16::from_f32(*x)).collect::<Vec<_>>();
            reference::gemv(&b(&xs), &b(&ws), m, n, k)
                .iter()
                .map(|v| v.to_f32())
                .collect()
        }
    };
    (got, want)
}

/// f32: accumulation order only; bf16: one rounding of the output (half an ulp each side).
fn gemv_close(got: &[f32], want: &[f32], dtype: DType) -> f32 {
    got.iter()
        .zip(want)
        .map(|(g, w)| {
            let tol = if dtype == DType::F32 {
                1e-5 + 1e-5 * w.abs()
            } else {
                1e-6 + w.abs() / 128.0
            };
            (g - w).abs() / tol
        })
        .fold(0.0, f32::max)
}

#[test]
fn gemv_matches_reference_on_cpu() {
    for dtype in [DType::F32, DType::BF16] {
        let (got, want) = run_gemv(&Device::Cpu, dtype, 3, 50, 64);
        assert!(gemv_close(&got, &want, dtype) <= 1.0, "{dtype:?}");
    }
    let x = Tensor::zeros((9, 64), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((4, 64), DType::F32, &Device::Cpu).unwrap();
    let e = ethos_kernels::gemv(&x, &w).unwrap_err().to_string();
    assert!(e.contains("at most 8 rows"), "{e}");
}

#[test]
fn cuda_gemv_matches_reference() {
    let Some(dev) = cuda_device() else { return };
    for (m, n, k) in [
        (1, 1536, 576),
        (1, 4096, 4096),
        (3, 14336, 4096),
        (8, 40, 64),
        (5, 1000, 128),
    ] {
        for dtype in [DType::F32, DType::BF16] {
            let (got, want) = run_gemv(&dev, dtype, m, n, k);
            let worst = gemv_close(&got, &want, dtype);
            println!("cuda gemv {m}x{k} . {n}x{k} {dtype:?}: worst error / tolerance {worst:.3}");
            assert!(worst <= 1.0);
        }
    }
}

/// q (b, h, d) and a cache of capacity `cap` holding `s` keys: returns (got, want) as f32.
#[allow(clippy::too_many_arguments)]
fn run_decode_attention(
    device: &Device,
    dtype: DType,
    b: usize,
    h: usize,
    kvh: usize,
    s: usize,
    cap: usize,
    d: usize,
) -> (Vec<f32>, Vec<f32>) {
    let round = |v: Vec<f32>| -> Vec<f32> {
        if dtype == DType::BF16 {
            v.iter().map(|x| bf16::from_f32(*x).to_f32()).collect()
        } else {
            v
        }
    };
    let qs = round(noise(b * h * d, 31, 1.0));
    let ks = round(noise(b * kvh * cap * d, 32, 1.0));
    let vs = round(noise(b * kvh * cap * d, 33, 1.0));
    let t = |v: &[f32], shape: &[usize]| {
        Tensor::from_slice(v, shape, device)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    };
    let q = t(&qs, &[b, h, d]);
    let k = t(&ks, &[b, kvh, cap, d]).narrow(2, 0, s).unwrap();
    let v = t(&vs, &[b, kvh, cap, d]).narrow(2, 0, s).unwrap();
    let scale = 1.0 / (d as f32).sqrt();
    let got = ethos_kernels::decode_attention(&q, &k, &v, scale)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut want = Vec::new();
    for bi in 0..b {
        for hi in 0..h {
            let g = hi / (h / kvh);
            let base = (bi * kvh + g) * cap * d;
            let row = reference::attention_row(
                &qs[(bi * h + hi) * d..][..d],
                &ks[base..base + s * d],
                &vs[base..base + s * d],
                d,
                scale,
            );
            want.extend(round(row));
        }
    }
    (got, want)
}

#[test]
fn decode_attention_matches_reference_on_cpu() {
    let (got, want) = run_decode_attention(&Device::Cpu, DType::F32, 2, 6, 2, 7, 10, 64);
    assert!(
        max_abs_diff(&got, &want) < 1e-5,
        "{}",
        max_abs_diff(&got, &want)
    );
    let q = Tensor::zeros((1, 4, 48), DType::F32, &Device::Cpu).unwrap();
    let k = Tensor::zeros((1, 2, 3, 48), DType::F32, &Device::Cpu).unwrap();
    let e = ethos_kernels::decode_attention(&q, &k, &k, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("decode_attention") && e.contains("48"), "{e}");
}

#[test]
fn cuda_decode_attention_matches_reference() {
    let Some(dev) = cuda_device() else { return };
    for (b, h, kvh, s, cap, d) in [
        (1, 9, 3, 1, 8, 64),
        (1, 9, 3, 130, 256, 64),
        (2, 32, 8, 517, 600, 128),
        (3, 4, 4, 3, 3, 256),
    ] {
        for dtype in [DType::F32, DType::BF16] {
            let (got, want) = run_decode_attention(&dev, dtype, b, h, kvh, s, cap, d);
            let diff = max_abs_diff(&got, &want);
            println!(
                "cuda decode_attention b{b} h{h} kv{kvh} s{s} d{d} {dtype:?}: max |diff| {diff:e}"
            );
            // bf16: the output is rounded once (|out| <= max |v| = 1, so half an ulp <= 2^-9).
            assert!(diff <= if dtype == DType::F32 { 1e-5 } else { 4e-3 });
        }
    }
}
