//! Q8_0 weights (f16 scale + 32 signed bytes per block) times 8-bit activations.
//!
//! candle's own Q8_0 path quantizes activations in blocks of 256 (Q8K); llama.cpp uses blocks
//! of 32 with f16 scales. This kernel does the latter, so that the tied output head of GGUF
//! models (often Q8_0) produces llama.cpp's numbers during decode.

use super::q8::{matmul_rows, Q8Rows, QK};
use half::f16;

pub const BLOCK_BYTES: usize = 34;

pub fn matmul(w: &[u8], n: usize, k: usize, x: &Q8Rows, out: &mut [f32]) {
    assert_eq!(x.k, k);
    matmul_rows(n, k / QK * BLOCK_BYTES, w, x, out, row_dot);
}

#[inline]
fn row_dot(wr: &[u8], x: &Q8Rows, i: usize) -> f32 {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        // SAFETY: the build targets AVX2+FMA (checked by cfg); `matmul_rows` checked the sizes.
        unsafe { row_dot_avx2(wr, x, i) }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        row_dot_scalar(wr, x, i)
    }
}

pub fn row_dot_scalar(wr: &[u8], x: &Q8Rows, i: usize) -> f32 {
    let nb = x.k / QK;
    let mut sum = 0f32;
    for b in 0..nb {
        let wb = &wr[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES];
        let dw = f16::from_le_bytes([wb[0], wb[1]]).to_f32();
        let xb = i * nb + b;
        let q8 = &x.qs[xb * QK..(xb + 1) * QK];
        let isum: i32 = (0..QK).map(|j| wb[2 + j] as i8 as i32 * q8[j] as i32).sum();
        sum += dw * x.d[xb] * isum as f32;
    }
    sum
}

/// `row_dot_scalar` with AVX2, one block per step.
///
/// # Safety
/// The CPU has AVX2 and FMA (the build's target features, per the cfg); `wr` holds the
/// `x.k / QK` blocks of one row (loads are unchecked) and `i < x.rows()`.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline]
unsafe fn row_dot_avx2(wr: &[u8], x: &Q8Rows, i: usize) -> f32 {
    use std::arch::x86_64::*;
    let nb = x.k / QK;
    let base = i * nb;
    let mut acc = _mm256_setzero_ps();
    for b in 0..nb {
        let wb = wr.as_ptr().add(b * BLOCK_BYTES);
        let dw = f16::from_bits(u16::from_le_bytes([*wb, *wb.add(1)])).to_f32();
        let qw = _mm256_loadu_si256(wb.add(2) as *const __m256i);
        let qx = _mm256_loadu_si256(x.qs.as_ptr().add((base + b) * QK) as *const __m256i);
        let p32 = super::q8::simd::dot_i8_i8(qw, qx);
        let scale = _mm256_set1_ps(dw * *x.d.get_unchecked(base + b));
        acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(p32), acc);
    }
    super::q8::simd::hsum(acc)
}

pub fn dequantize(w: &[u8], out: &mut [f32]) {
    for (wb, o) in w.chunks_exact(BLOCK_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = f16::from_le_bytes([wb[0], wb[1]]).to_f32();
        for j in 0..QK {
            o[j] = wb[2 + j] as i8 as f32 * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_matches_scalar_and_float_math() {
        let (n, k, m) = (21, 64, 2);
        let mut w = Vec::new();
        for b in 0..n * k / QK {
            w.extend_from_slice(&f16::from_f32(0.01 + (b % 7) as f32 * 0.003).to_le_bytes());
            // the full signed range, -128 included
            w.extend((0..QK).map(|j| ((b * 37 + j * 11) % 256) as u8));
        }
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let q = Q8Rows::quantize(&x, k);
        let mut out = vec![0f32; m * n];
        matmul(&w, n, k, &q, &mut out);
        let mut wf = vec![0f32; n * k];
        dequantize(&w, &mut wf);
        for i in 0..m {
            for j in 0..n {
                let scalar = row_dot_scalar(&w[j * k / QK * BLOCK_BYTES..], &q, i);
                let exact: f32 = (0..k)
                    .map(|c| wf[j * k + c] * q.dequantized(i * k + c))
                    .sum();
                assert!((out[i * n + j] - scalar).abs() <= 1e-4 * (1.0 + scalar.abs()));
                assert!(
                    (out[i * n + j] - exact).abs() <= 1e-4 * (1.0 + exact.abs()),
                    "{} vs {exact}",
                    out[i * n + j]
                );
            }
        }
    }
}
