//! Plain-loop CPU implementations of the kernels, written for clarity: the definition the
//! CUDA kernels and the composed candle path are both tested against. Accumulation in f64.

use half::bf16;

/// A storage type of the residual stream.
pub trait Element: Copy {
    fn to_f32(self) -> f32;
    /// Rounds to nearest even, as the CUDA kernels and candle's casts do.
    fn from_f32(x: f32) -> Self;
}

impl Element for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl Element for bf16 {
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
}

/// Rows of `d`: returns `(residual + delta, RMSNorm of it with weight)`.
pub fn residual_rmsnorm<T: Element>(
    residual: &[T],
    delta: &[T],
    weight: &[f32],
    eps: f32,
) -> (Vec<T>, Vec<T>) {
    let d = weight.len();
    let mut out_residual = Vec::with_capacity(residual.len());
    let mut normed = Vec::with_capacity(residual.len());
    for (x, dl) in residual.chunks(d).zip(delta.chunks(d)) {
        let row: Vec<T> = (0..d)
            .map(|i| T::from_f32(x[i].to_f32() + dl[i].to_f32()))
            .collect();
        let mean_sq = row.iter().map(|r| (r.to_f32() as f64).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (mean_sq + eps as f64).sqrt();
        normed.extend(
            row.iter()
                .zip(weight)
                .map(|(r, w)| T::from_f32((r.to_f32() as f64 * inv * *w as f64) as f32)),
        );
        out_residual.extend(row);
    }
    (out_residual, normed)
}

/// `x (m, k) . w (n, k)^T`, accumulated in f64, rounded once to `T`.
pub fn gemv<T: Element>(x: &[T], w: &[T], m: usize, n: usize, k: usize) -> Vec<T> {
    let mut y = Vec::with_capacity(m * n);
    for r in 0..m {
        for c in 0..n {
            let dot: f64 = (0..k)
                .map(|i| x[r * k + i].to_f32() as f64 * w[c * k + i].to_f32() as f64)
                .sum();
            y.push(T::from_f32(dot as f32));
        }
    }
    y
}

/// One query row `q (d)` against `keys`/`values` (`s` rows of `d`): softmax(scale q.K^T).V in f64.
pub fn attention_row(q: &[f32], keys: &[f32], values: &[f32], d: usize, scale: f32) -> Vec<f32> {
    let scores: Vec<f64> = keys
        .chunks(d)
        .map(|kr| {
            scale as f64
                * kr.iter()
                    .zip(q)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
        })
        .collect();
    let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let p: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
    let total: f64 = p.iter().sum();
    (0..d)
        .map(|e| {
            (p.iter()
                .zip(values.chunks(d))
                .map(|(pj, vr)| pj * vr[e] as f64)
                .sum::<f64>()
                / total) as f32
        })
        .collect()
}
