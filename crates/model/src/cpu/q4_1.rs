//! Q4_1 weights times 8-bit activations, the matrix products of decode.
//!
//! candle 0.11 has no SIMD `vec_dot` for Q4_1, so decode on Q4_1 files ran at scalar speed.
//! A Q4_1 block is `x = d*q + m` (q in 0..15); with activations in Q8_1 (`y = dy*qy`,
//! `s = dy*sum(qy)`) a block's dot product is `d*dy*sum(q*qy) + m*s`: integer multiply-adds
//! (AVX2 `maddubs`, or AVX-512 VNNI `dpbusd` where the build targets it), as in llama.cpp.

use half::f16;

use super::q8::matmul_rows;
pub use super::q8::{Q8Rows, QK};

pub const BLOCK_BYTES: usize = 20;

/// `out[i][j] = dot(w[j], x[i])` for `w` of `n` rows of `k` Q4_1 values stored contiguously.
pub fn matmul(w: &[u8], n: usize, k: usize, x: &Q8Rows, out: &mut [f32]) {
    assert_eq!(x.k, k);
    matmul_rows(n, k / QK * BLOCK_BYTES, w, x, out, row_dot);
}

#[inline]
fn block_scales(wb: &[u8]) -> (f32, f32) {
    let dw = f16::from_le_bytes([wb[0], wb[1]]).to_f32();
    let mw = f16::from_le_bytes([wb[2], wb[3]]).to_f32();
    (dw, mw)
}

/// Dot product of one Q4_1 row with activation row `i`.
#[inline]
fn row_dot(wr: &[u8], x: &Q8Rows, i: usize) -> f32 {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        // SAFETY: the build targets AVX2+FMA (checked by cfg); slices are bounds-checked above.
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

/// Reference implementation; also the fallback on CPUs without AVX2.
pub fn row_dot_scalar(wr: &[u8], x: &Q8Rows, i: usize) -> f32 {
    let nb = x.k / QK;
    let mut sum = 0f32;
    for b in 0..nb {
        let wb = &wr[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES];
        let (dw, mw) = block_scales(wb);
        let xb = i * nb + b;
        let q8 = &x.qs[xb * QK..(xb + 1) * QK];
        let mut isum = 0i32;
        for j in 0..16 {
            let byte = wb[4 + j];
            isum += (byte & 0x0F) as i32 * q8[j] as i32 + (byte >> 4) as i32 * q8[j + 16] as i32;
        }
        sum += dw * x.d[xb] * isum as f32 + mw * x.s[xb];
    }
    sum
}

/// `row_dot` with AVX2: two blocks per step, integer sums by `dot_u8_i8`.
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
    use super::q8::simd::{dot_u8_i8, hsum};
    use std::arch::x86_64::*;
    let nb = x.k / QK;
    let mask = _mm_set1_epi8(0x0F);
    let base = i * nb;
    let wp = wr.as_ptr();
    let qp = x.qs.as_ptr().add(base * QK);
    let (dx, sx) = (x.d.as_ptr().add(base), x.s.as_ptr().add(base));
    // Block b as 32 unsigned 4-bit values: low nibbles are elements 0..16, high 16..32.
    let load = |b: usize| {
        let raw = _mm_loadu_si128(wp.add(b * BLOCK_BYTES + 4) as *const __m128i);
        _mm256_set_m128i(
            _mm_and_si128(_mm_srli_epi16(raw, 4), mask),
            _mm_and_si128(raw, mask),
        )
    };
    let scale = |b: usize| {
        let h = wp.add(b * BLOCK_BYTES) as *const u16;
        (
            f16::from_bits(h.read_unaligned()).to_f32(),
            f16::from_bits(h.add(1).read_unaligned()).to_f32(),
        )
    };
    // Two independent accumulator chains hide the latency of the multiply-adds.
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut acc_m = 0f32;
    let mut b = 0;
    while b + 1 < nb {
        let (d0, m0) = scale(b);
        let (d1, m1) = scale(b + 1);
        let p0 = dot_u8_i8(
            load(b),
            _mm256_loadu_si256(qp.add(b * QK) as *const __m256i),
        );
        let p1 = dot_u8_i8(
            load(b + 1),
            _mm256_loadu_si256(qp.add((b + 1) * QK) as *const __m256i),
        );
        acc0 = _mm256_fmadd_ps(
            _mm256_set1_ps(d0 * *dx.add(b)),
            _mm256_cvtepi32_ps(p0),
            acc0,
        );
        acc1 = _mm256_fmadd_ps(
            _mm256_set1_ps(d1 * *dx.add(b + 1)),
            _mm256_cvtepi32_ps(p1),
            acc1,
        );
        acc_m += m0 * *sx.add(b) + m1 * *sx.add(b + 1);
        b += 2;
    }
    if b < nb {
        let (d0, m0) = scale(b);
        let p0 = dot_u8_i8(
            load(b),
            _mm256_loadu_si256(qp.add(b * QK) as *const __m256i),
        );
        acc0 = _mm256_fmadd_ps(
            _mm256_set1_ps(d0 * *dx.add(b)),
            _mm256_cvtepi32_ps(p0),
            acc0,
        );
        acc_m += m0 * *sx.add(b);
    }
    hsum(_mm256_add_ps(acc0, acc1)) + acc_m
}

/// Dequantizes Q4_1 blocks to f32 (the exact values the file encodes).
pub fn dequantize(w: &[u8], out: &mut [f32]) {
    for (wb, o) in w.chunks_exact(BLOCK_BYTES).zip(out.chunks_exact_mut(QK)) {
        let (d, m) = block_scales(wb);
        for j in 0..16 {
            o[j] = (wb[4 + j] & 0x0F) as f32 * d + m;
            o[j + 16] = (wb[4 + j] >> 4) as f32 * d + m;
        }
    }
}

#[cfg(test)]
/// Random-looking Q4_1 rows: f16 scales and minimums of both signs, every nibble value.
pub(crate) fn sample_rows(n: usize, k: usize) -> Vec<u8> {
    let nb = k / QK;
    let mut w = Vec::with_capacity(n * nb * BLOCK_BYTES);
    for j in 0..n {
        for b in 0..nb {
            let d = f16::from_f32(0.01 + ((j * 7 + b * 3) % 13) as f32 * 0.003);
            let m = f16::from_f32(-0.05 + ((j * 5 + b) % 11) as f32 * 0.01);
            w.extend_from_slice(&d.to_le_bytes());
            w.extend_from_slice(&m.to_le_bytes());
            for e in 0..16 {
                w.push((((j * 31 + b * 17 + e * 7) % 256) as u8).rotate_left(3));
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random stream (no RNG crate needed here).
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
            })
            .collect()
    }

    fn random_q4_1(n: usize, k: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let vals = noise(n * k / QK * 18, 7);
        for (b, v) in vals.chunks(18).enumerate() {
            out.extend_from_slice(&f16::from_f32(0.01 + v[0].abs() * 0.05).to_le_bytes());
            out.extend_from_slice(&f16::from_f32(v[1] * 0.2).to_le_bytes());
            for j in 0..16 {
                out.push(((b * 31 + j * 7) % 256) as u8);
            }
        }
        out
    }

    #[test]
    fn simd_matches_scalar_and_dequantized_dot() {
        let (n, k, m) = (37, 96, 3);
        let w = random_q4_1(n, k);
        let x = noise(m * k, 3);
        let q = Q8Rows::quantize(&x, k);
        let mut out = vec![0f32; m * n];
        matmul(&w, n, k, &q, &mut out);
        let mut wf = vec![0f32; n * k];
        dequantize(&w, &mut wf);
        for i in 0..m {
            for j in 0..n {
                let scalar = row_dot_scalar(&w[j * k / QK * BLOCK_BYTES..], &q, i);
                assert!((out[i * n + j] - scalar).abs() < 1e-4 * (1.0 + scalar.abs()));
                // f32 math on dequantized weights and dequantized 8-bit activations, with the
                // block minimum times llama.cpp's f16-rounded `s` (as the format defines it):
                // the kernel's integer arithmetic must reproduce it up to float rounding.
                let xq = |c: usize| q.dequantized(i * k + c);
                let exact: f32 = (0..k / QK)
                    .map(|b| {
                        let wb = &w[(j * k / QK + b) * BLOCK_BYTES..];
                        let m = f16::from_le_bytes([wb[2], wb[3]]).to_f32();
                        let dq: f32 = (b * QK..(b + 1) * QK)
                            .map(|c| (wf[j * k + c] - m) * xq(c))
                            .sum();
                        dq + m * q.s[i * k / QK + b]
                    })
                    .sum();
                assert!(
                    (out[i * n + j] - exact).abs() < 1e-4 * (1.0 + exact.abs()),
                    "{} vs {}",
                    out[i * n + j],
                    exact
                );
                // and against unquantized activations, within the 8-bit rounding (|x| <= 1:
                // at most 1/254 per element).
                let float: f32 = (0..k).map(|c| wf[j * k + c] * x[i * k + c]).sum();
                let bound: f32 = (0..k).map(|c| wf[j * k + c].abs() / 254.0).sum();
                assert!((out[i * n + j] - float).abs() <= bound * 1.01 + 1e-5);
            }
        }
    }
}
