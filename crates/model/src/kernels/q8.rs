//! 8-bit activations in blocks of 32 (llama.cpp's Q8_1/Q8_0 activation format), the other
//! operand of our quantized dot products.
//!
//! Quantization follows llama.cpp's x86 code bit for bit, so that ethos' quantized path sees
//! the same numbers llama.cpp does: `d = amax / 127` stored as f16, values scaled by
//! `127 / amax` and rounded half to even, `s = d * sum(q)` stored as f16.

use half::f16;

pub const QK: usize = 32;

/// Activations quantized per 32 values, row-major `(m, k)`.
pub struct Q8Rows {
    pub k: usize,
    /// Per block: the scale (f16-rounded) and `d * sum(q)` (f16-rounded).
    pub d: Vec<f32>,
    pub s: Vec<f32>,
    pub qs: Vec<i8>,
}

impl Q8Rows {
    /// Quantizes `m` rows of `k` values (k a multiple of 32); large inputs (batched calls)
    /// on rayon's threads, each block on its own as before.
    pub fn quantize(x: &[f32], k: usize) -> Self {
        use rayon::prelude::*;
        debug_assert!(k.is_multiple_of(QK) && x.len().is_multiple_of(k));
        let nblocks = x.len() / QK;
        let mut d = vec![0f32; nblocks];
        let mut s = vec![0f32; nblocks];
        let mut qs = vec![0i8; x.len()];
        // Blocks per parallel task.
        const TASK: usize = 256;
        if x.len() >= 1 << 16 {
            x.par_chunks(QK * TASK)
                .zip(qs.par_chunks_mut(QK * TASK))
                .zip(d.par_chunks_mut(TASK).zip(s.par_chunks_mut(TASK)))
                .for_each(|((xc, qc), (dc, sc))| quantize_blocks(xc, qc, dc, sc));
        } else {
            quantize_blocks(x, &mut qs, &mut d, &mut s);
        }
        Self { k, d, s, qs }
    }

    pub fn rows(&self) -> usize {
        self.qs.len() / self.k
    }

    /// The value each quantized activation stands for.
    pub fn dequantized(&self, i: usize) -> f32 {
        self.d[i / QK] * self.qs[i] as f32
    }
}

/// llama.cpp's `quantize_row_q8_1` on whole blocks: values, scales and scaled sums.
fn quantize_blocks(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    for (((xb, qb), db_out), sb_out) in x
        .chunks_exact(QK)
        .zip(qs.chunks_exact_mut(QK))
        .zip(d.iter_mut())
        .zip(s.iter_mut())
    {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let db = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in qb.iter_mut().zip(xb) {
            let r = (v * id).round_ties_even() as i32;
            *q = r as i8;
            sum += r;
        }
        *db_out = f16::from_f32(db).to_f32();
        *sb_out = f16::from_f32(db * sum as f32).to_f32();
    }
}

/// `out[i][j] = dot(row j of w, row i of x)` for a weight matrix of `n` rows of
/// `row_bytes` bytes, split over threads by output column.
///
/// Threads come from candle's persistent spinning pool rather than rayon: decode calls this
/// ~120 times per token, and waking sleeping rayon workers through futexes cost a quarter of
/// decode time.
pub fn matmul_rows(
    n: usize,
    row_bytes: usize,
    w: &[u8],
    x: &Q8Rows,
    out: &mut [f32],
    dot: impl Fn(&[u8], &Q8Rows, usize) -> f32 + Sync,
) {
    let m = x.rows();
    assert!(w.len() >= n * row_bytes && out.len() >= m * n);
    // Columns are written through a raw pointer: each index is written by exactly one chunk.
    let dst = SharedOut(out.as_mut_ptr());
    let work = |range: std::ops::Range<usize>| {
        let dst = &dst;
        for j in range {
            let wr = &w[j * row_bytes..(j + 1) * row_bytes];
            for i in 0..m {
                // SAFETY: (i, j) is in bounds (checked above) and owned by this chunk.
                unsafe { *dst.0.add(i * n + j) = dot(wr, x, i) };
            }
        }
    };
    // Too little work to be worth waking the other threads.
    if n * m * row_bytes < 16 * 1024 {
        work(0..n);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(n, work);
    }
}

struct SharedOut(*mut f32);
// SAFETY: the pointer is only used for disjoint writes during `matmul_rows`.
unsafe impl Sync for SharedOut {}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
pub(crate) mod simd {
    use std::arch::x86_64::*;

    /// Sums products of unsigned bytes `a` and signed bytes `b` into 8 i32 lanes.
    #[inline]
    pub unsafe fn dot_u8_i8(a: __m256i, b: __m256i) -> __m256i {
        #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
        {
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b)
        }
        #[cfg(not(all(target_feature = "avx512vnni", target_feature = "avx512vl")))]
        {
            // maddubs cannot saturate for our operands: at most 255 * 127 * 2 < 2^16 only for
            // 4-bit weights (15 * 127 * 2); signed 8-bit weights go through abs/sign first.
            _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1))
        }
    }

    /// Sums products of signed bytes into 8 i32 lanes (|a| times b with a's sign moved to b).
    #[inline]
    pub unsafe fn dot_i8_i8(a: __m256i, b: __m256i) -> __m256i {
        dot_u8_i8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a))
    }

    #[inline]
    pub unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_to_even_with_f16_scales() {
        let mut x = vec![0f32; 32];
        x[0] = 127.0;
        x[1] = 0.5;
        x[2] = -0.5;
        x[3] = 1.5;
        let q = Q8Rows::quantize(&x, 32);
        assert_eq!((q.qs[0], q.qs[1], q.qs[2], q.qs[3]), (127, 0, 0, 2));
        assert_eq!(q.d[0], 1.0);
        assert_eq!(q.s[0], 129.0);
    }

    /// A batch large enough to be quantized on several threads equals its rows done alone.
    #[test]
    fn parallel_batches_equal_rows_quantized_alone() {
        let k = 576;
        let x: Vec<f32> = (0..300 * k)
            .map(|i| ((i * 7919 % 1009) as f32 - 504.0) / (1.0 + (i % 13) as f32))
            .collect();
        let all = Q8Rows::quantize(&x, k);
        assert!(x.len() >= 1 << 16);
        for (r, row) in x.chunks(k).enumerate() {
            let one = Q8Rows::quantize(row, k);
            let b = r * k / QK..(r + 1) * k / QK;
            assert_eq!(&all.qs[r * k..(r + 1) * k], &one.qs[..], "row {r}");
            assert_eq!(&all.d[b.clone()], &one.d[..], "row {r}");
            assert_eq!(&all.s[b], &one.s[..], "row {r}");
        }
    }
}
