//! The kernels against their CPU reference: the reference against candle-nn's RMSNorm and
//! log-softmax (independent code), the composed path (CPU, Metal) against the reference, and,
//! where a CUDA device exists (built with `--features cuda`), the CUDA kernels against the
//! reference. Without a device the CUDA tests print why they skip; `benches/gpu/run.sh` runs
//! them on a GPU.

use candle_core::{DType, Device, Tensor};
use ethos_kernels::{logit_weight_topk, reference, residual_steer_rmsnorm, MAX_TOPK};
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
    steer: Vec<f32>,
    weight: Vec<f32>,
}

fn norm_case(rows: usize, d: usize) -> NormCase {
    NormCase {
        rows,
        d,
        residual: noise(rows * d, 1, 3.0),
        delta: noise(rows * d, 2, 1.0),
        steer: noise(d, 3, 0.5),
        weight: noise(d, 4, 1.0).iter().map(|w| 1.0 + w).collect(),
    }
}

/// Runs the public function on `device` in `dtype`; returns (residual, normed) as f32.
fn run_norm(
    c: &NormCase,
    device: &Device,
    dtype: DType,
    scale: Option<f32>,
) -> (Vec<f32>, Vec<f32>) {
    let t = |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, device).unwrap();
    let x = t(&c.residual, &[c.rows, c.d]).to_dtype(dtype).unwrap();
    let dl = t(&c.delta, &[c.rows, c.d]).to_dtype(dtype).unwrap();
    let s = t(&c.steer, &[c.d]);
    let w = t(&c.weight, &[c.d]);
    let (r, n) = residual_steer_rmsnorm(&x, &dl, scale.map(|k| (&s, k)), &w, 1e-5).unwrap();
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

fn reference_norm(c: &NormCase, dtype: DType, scale: Option<f32>) -> (Vec<f32>, Vec<f32>) {
    let steer = scale.map(|k| (&c.steer[..], k));
    match dtype {
        DType::F32 => {
            reference::residual_steer_rmsnorm(&c.residual, &c.delta, steer, &c.weight, 1e-5)
        }
        _ => {
            let b = |v: &[f32]| v.iter().map(|x| bf16::from_f32(*x)).collect::<Vec<_>>();
            let (r, n) = reference::residual_steer_rmsnorm(
                &b(&c.residual),
                &b(&c.delta),
                steer,
                &c.weight,
                1e-5,
            );
            let f = |v: Vec<bf16>| v.iter().map(|x| x.to_f32()).collect::<Vec<_>>();
            (f(r), f(n))
        }
    }
}

#[test]
fn reference_norm_matches_candle_nn_rms_norm() {
    let c = norm_case(5, 576);
    let (r, n) = reference_norm(&c, DType::F32, None);
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
        for scale in [None, Some(4.0)] {
            let (r, n) = run_norm(&c, &Device::Cpu, dtype, scale);
            let (rr, rn) = reference_norm(&c, dtype, scale);
            // Residuals round identically; the norm differs by the f32-vs-f64 sum (1 bf16 ulp).
            let tol = if dtype == DType::F32 {
                (1e-6, 1e-5)
            } else {
                (0.0, 2e-2)
            };
            assert!(
                max_abs_diff(&r, &rr) <= tol.0,
                "{dtype:?} {scale:?} residual"
            );
            assert!(
                max_abs_diff(&n, &rn) <= tol.1,
                "{dtype:?} {scale:?} normed {}",
                max_abs_diff(&n, &rn)
            );
        }
    }
}

#[test]
fn steering_moves_the_residual_by_scale_times_vector() {
    let c = norm_case(3, 64);
    let (plain, _) = run_norm(&c, &Device::Cpu, DType::F32, None);
    let (steered, _) = run_norm(&c, &Device::Cpu, DType::F32, Some(2.5));
    for (i, (p, s)) in plain.iter().zip(&steered).enumerate() {
        assert!((s - p - 2.5 * c.steer[i % c.d]).abs() < 1e-5);
    }
}

struct LogitCase {
    rows: usize,
    vocab: usize,
    logits: Vec<f32>,
    rewards: Vec<f32>, // (rows, n, vocab)
    lambda: Vec<f32>,
}

fn logit_case(rows: usize, vocab: usize, n: usize) -> LogitCase {
    LogitCase {
        rows,
        vocab,
        logits: noise(rows * vocab, 11, 8.0),
        rewards: noise(rows * n * vocab, 12, 1.0),
        lambda: noise(n, 13, 2.0),
    }
}

fn reference_logits(c: &LogitCase, k: usize, per_row: bool) -> Vec<(Vec<f32>, Vec<(u32, f32)>)> {
    let n = c.lambda.len();
    (0..c.rows)
        .map(|r| {
            let rr = if per_row { r } else { 0 };
            let rows: Vec<&[f32]> = (0..n)
                .map(|j| &c.rewards[(rr * n + j) * c.vocab..][..c.vocab])
                .collect();
            reference::logit_weight_topk(&c.logits[r * c.vocab..][..c.vocab], &rows, &c.lambda, k)
        })
        .collect()
}

fn run_logits(
    c: &LogitCase,
    device: &Device,
    dtype: DType,
    k: usize,
    per_row: bool,
) -> (Vec<Vec<f32>>, Vec<Vec<u32>>, Vec<Vec<f32>>) {
    let n = c.lambda.len();
    let logits = Tensor::from_slice(&c.logits, (c.rows, c.vocab), device)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let rewards = if per_row {
        Tensor::from_slice(&c.rewards, (c.rows, n, c.vocab), device).unwrap()
    } else {
        Tensor::from_slice(&c.rewards[..n * c.vocab], (n, c.vocab), device).unwrap()
    };
    let out = logit_weight_topk(&logits, &rewards, &c.lambda, k).unwrap();
    (
        out.logprobs.to_vec2().unwrap(),
        out.top_ids.to_vec2().unwrap(),
        out.top_logprobs.to_vec2().unwrap(),
    )
}

/// Log-probs within `tol`; the top-k ids equal, except that two ids whose log-probs are within
/// `tol` may swap places.
fn check_logits(
    c: &LogitCase,
    got: (Vec<Vec<f32>>, Vec<Vec<u32>>, Vec<Vec<f32>>),
    want: &[(Vec<f32>, Vec<(u32, f32)>)],
    tol: f32,
) {
    let (lp, ids, vals) = got;
    for r in 0..c.rows {
        let d = max_abs_diff(&lp[r], &want[r].0);
        assert!(d <= tol, "row {r}: log-probs differ by {d}");
        for (j, (id, v)) in want[r].1.iter().enumerate() {
            assert!(
                (vals[r][j] - v).abs() <= tol,
                "row {r} rank {j}: {} vs {v}",
                vals[r][j]
            );
            if ids[r][j] != *id {
                let other = want[r].0[ids[r][j] as usize];
                assert!(
                    (other - v).abs() <= tol,
                    "row {r} rank {j}: id {} vs {id}",
                    ids[r][j]
                );
            }
        }
    }
}

#[test]
fn reference_log_softmax_matches_candle_nn() {
    let c = logit_case(2, 3000, 0);
    let want = reference_logits(&c, 5, false);
    let x = Tensor::from_slice(&c.logits, (c.rows, c.vocab), &Device::Cpu).unwrap();
    let nn = candle_nn::ops::log_softmax(&x, 1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for r in 0..c.rows {
        assert!(max_abs_diff(&nn[r], &want[r].0) < 1e-5);
        let mut sorted = nn[r].clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        assert_eq!(
            want[r].1.iter().map(|p| p.1).collect::<Vec<_>>(),
            sorted[..5].to_vec()
        );
    }
}

#[test]
fn composed_logit_weighting_matches_reference() {
    let c = logit_case(3, 5000, 3);
    for per_row in [false, true] {
        let want = reference_logits(&c, 40, per_row);
        check_logits(
            &c,
            run_logits(&c, &Device::Cpu, DType::F32, 40, per_row),
            &want,
            2e-5,
        );
    }
}

#[test]
fn lambda_weighting_shifts_logprobs_towards_rewarded_tokens() {
    // Reward only token 7: with lambda large enough it becomes the top candidate.
    let mut c = logit_case(1, 100, 1);
    c.rewards = vec![0.0; 100];
    c.rewards[7] = 1.0;
    c.lambda = vec![50.0];
    let (_, ids, _) = run_logits(&c, &Device::Cpu, DType::F32, 3, false);
    assert_eq!(ids[0][0], 7);
}

#[test]
fn bad_input_is_a_one_line_error() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 8), DType::F32, &dev).unwrap();
    let w8 = Tensor::ones(8, DType::F32, &dev).unwrap();
    let w9 = Tensor::ones(9, DType::F32, &dev).unwrap();
    let e = residual_steer_rmsnorm(&x, &x, Some((&w9, 1.0)), &w8, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("steer") && e.contains("[9]") && !e.contains('\n'),
        "{e}"
    );
    let e = residual_steer_rmsnorm(&x, &x, None, &w9, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("weight"), "{e}");
    let r = Tensor::zeros((1, 8), DType::F32, &dev).unwrap();
    let e = logit_weight_topk(&x, &r, &[1.0], 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("k = 0"), "{e}");
    let e = logit_weight_topk(&x, &r, &[1.0], MAX_TOPK + 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("k = 65"), "{e}");
    let e = logit_weight_topk(&x, &r, &[f32::NAN], 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not finite"), "{e}");
    let e = logit_weight_topk(&x, &r, &[1.0, 2.0], 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rewards have shape"), "{e}");
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
            for scale in [None, Some(4.0)] {
                let (r, n) = run_norm(&c, &dev, dtype, scale);
                let (rr, rn) = reference_norm(&c, dtype, scale);
                let tol = if dtype == DType::F32 {
                    (1e-6, 1e-5)
                } else {
                    (0.0, 2e-2)
                };
                let (dr, dn) = (max_abs_diff(&r, &rr), max_abs_diff(&n, &rn));
                println!("cuda residual_steer_rmsnorm {rows}x{d} {dtype:?} steer {scale:?}: max |diff| residual {dr:e}, normed {dn:e}");
                assert!(dr <= tol.0 && dn <= tol.1);
            }
        }
    }
}

#[test]
fn cuda_logit_weighting_matches_reference() {
    let Some(dev) = cuda_device() else { return };
    for (rows, vocab, n, k) in [
        (1, 49152, 2, 40),
        (4, 128256, 3, 64),
        (3, 1000, 0, 1),
        (2, 70, 1, 64),
    ] {
        let c = logit_case(rows, vocab, n);
        for per_row in [false, true] {
            let want = reference_logits(&c, k, per_row);
            let got = run_logits(&c, &dev, DType::F32, k, per_row);
            let d = (0..rows)
                .map(|r| max_abs_diff(&got.0[r], &want[r].0))
                .fold(0.0, f32::max);
            println!("cuda logit_weight_topk {rows}x{vocab} n={n} k={k} per_row={per_row}: max |diff| {d:e}");
            check_logits(&c, got, &want, 2e-5);
        }
    }
    // bf16 logits: the reference sees the same rounded logits.
    let mut c = logit_case(2, 32000, 2);
    c.logits = c
        .logits
        .iter()
        .map(|x| bf16::from_f32(*x).to_f32())
        .collect();
    let want = reference_logits(&c, 10, true);
    check_logits(&c, run_logits(&c, &dev, DType::BF16, 10, true), &want, 2e-5);
}
