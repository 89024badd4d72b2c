//! 8-bit activations in blocks of 32 (llama.cpp's Q8_1/Q8_0 activation format), the other
//! operand of our quantized dot products.
//!
//! Quantization follows llama.cpp's x86 code bit for bit, so that ethos' quantized path sees
//! the same numbers llama.cpp does: `d = amax / 127` stored as f16, values scaled by
//! `127 / amax` and rounded half to even, `s = d * sum(q)` stored as f16.

use half::f16;
use std::mem::MaybeUninit;

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
    /// on candle's thread pool, each block on its own, so the same bits either way
    /// (`cpu::quantize_in_blocks`).
    pub fn quantize(x: &[f32], k: usize) -> Self {
        debug_assert!(k.is_multiple_of(QK) && x.len().is_multiple_of(k));
        let (d, s, qs) = super::quantize_in_blocks(x, |xb, qb| {
            #[cfg(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            ))]
            let (db, sum) = simd::quantize_block(xb, qb);
            #[cfg(not(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            )))]
            let (db, sum) = quantize_block_scalar(xb, qb);
            (
                f16::from_f32(db).to_f32(),
                f16::from_f32(db * sum as f32).to_f32(),
            )
        });
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

/// One block, llama.cpp's `quantize_row_q8_1`: its values, its scale `amax / 127` and the
/// sum of its values (before the f16 rounding of both).
#[cfg_attr(
    all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        not(test)
    ),
    allow(dead_code)
)]
fn quantize_block_scalar(xb: &[f32], qb: &mut [MaybeUninit<i8>]) -> (f32, i32) {
    let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
    let db = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, v) in qb.iter_mut().zip(xb) {
        let r = (v * id).round_ties_even() as i32;
        q.write(r as i8);
        sum += r;
    }
    (db, sum)
}

/// `out[i][j] = dot(row j of w, row i of x)` for a weight matrix of `n` rows of
/// `row_bytes` bytes, split over threads by output column.
///
/// Threads come from candle's persistent spinning pool rather than rayon: decode calls this
/// many times per token, and waking sleeping rayon workers through futexes dominated.
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
    ///
    /// # Safety
    /// Only the CPU features this module is compiled for (AVX2, and AVX-512 VNNI/VL where the
    /// build targets them); registers only, no memory. Without VNNI a pair of products past
    /// the i16 range saturates (a wrong sum, not unsoundness).
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
    ///
    /// # Safety
    /// As `dot_u8_i8`: the build's AVX2 (checked by the module's cfg); no memory accessed.
    #[inline]
    pub unsafe fn dot_i8_i8(a: __m256i, b: __m256i) -> __m256i {
        dot_u8_i8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a))
    }

    /// A block of 32 values as four registers, and its largest magnitude (a maximum, exact in
    /// any order; NaN values are not handled).
    ///
    /// # Safety
    /// `xb` holds at least 32 values.
    #[inline(always)]
    pub unsafe fn load_block(xb: &[f32]) -> ([__m256; 4], f32) {
        let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(xb.as_ptr().add(8 * i)));
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
        let m = _mm256_max_ps(
            _mm256_max_ps(_mm256_and_ps(v[0], abs), _mm256_and_ps(v[1], abs)),
            _mm256_max_ps(_mm256_and_ps(v[2], abs), _mm256_and_ps(v[3], abs)),
        );
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        (v, lanes.iter().fold(0f32, |a, &b| a.max(b)))
    }

    /// `quantize_block_scalar` on 8 lanes, the same bits for finite values: the largest
    /// magnitude is a maximum (exact in any order), the conversion rounds to nearest even,
    /// values lie in [-127, 127] so the narrowing packs never saturate, and the integer sum
    /// is exact. (NaN and infinite values, garbage either way, may give other bytes.)
    pub fn quantize_block(xb: &[f32], qb: &mut [std::mem::MaybeUninit<i8>]) -> (f32, i32) {
        assert!(xb.len() == super::QK && qb.len() == super::QK);
        // SAFETY: both slices hold 32 elements (checked above); AVX2 is compiled in.
        unsafe {
            let (v, amax) = load_block(xb);
            let db = amax / 127.0;
            let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            let i: [__m256i; 4] =
                std::array::from_fn(|j| _mm256_cvtps_epi32(_mm256_mul_ps(v[j], id)));
            let total =
                _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
            let mut sums = [0i32; 8];
            _mm256_storeu_si256(sums.as_mut_ptr() as *mut __m256i, total);
            // Each 128-bit lane packs in turn: values 0-3, 8-11, 16-19, 24-27 land in the
            // low lane and 4-7, 12-15, 20-23, 28-31 in the high one; the permutation puts
            // the groups of four back in order.
            let bytes = _mm256_packs_epi16(
                _mm256_packs_epi32(i[0], i[1]),
                _mm256_packs_epi32(i[2], i[3]),
            );
            let ordered =
                _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(qb.as_mut_ptr() as *mut __m256i, ordered);
            (db, sums.iter().sum())
        }
    }

    /// The sum of `v`'s 8 lanes.
    ///
    /// # Safety
    /// Only the build's AVX2 (checked by the module's cfg); registers only, no memory.
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

    /// The block form this build uses gives the scalar form's bits: ties at every step, both
    /// signs, zero blocks, the largest value at either end, tiny and huge magnitudes.
    #[test]
    fn block_forms_agree_with_the_scalar_form() {
        let mut x: Vec<f32> = (0..64 * QK)
            .map(|i| ((i * 7919 % 2003) as f32 - 1001.0) * 10f32.powi((i / QK % 9) as i32 - 4))
            .collect();
        x[QK..2 * QK].fill(0.0);
        for (j, v) in x[2 * QK..3 * QK].iter_mut().enumerate() {
            // amax 127: every value k + 0.5 is a tie.
            *v = if j == 0 { -127.0 } else { j as f32 - 16.5 };
        }
        x[4 * QK - 1] = 1e30;
        let mut want = (
            vec![MaybeUninit::new(0i8); x.len()],
            vec![0f32; 64],
            vec![0i32; 64],
        );
        for (b, (xb, qb)) in x.chunks(QK).zip(want.0.chunks_mut(QK)).enumerate() {
            (want.1[b], want.2[b]) = quantize_block_scalar(xb, qb);
        }
        let q = Q8Rows::quantize(&x, QK * 8);
        // SAFETY: the values start initialized.
        let want_q: Vec<i8> = want.0.iter().map(|v| unsafe { v.assume_init() }).collect();
        assert_eq!(q.qs, want_q);
        for b in 0..64 {
            assert_eq!(
                q.d[b].to_bits(),
                f16::from_f32(want.1[b]).to_f32().to_bits()
            );
            let s = f16::from_f32(want.1[b] * want.2[b] as f32).to_f32();
            assert_eq!(q.s[b].to_bits(), s.to_bits(), "block {b}");
        }
        assert!(q.qs[2 * QK..3 * QK].iter().any(|&v| v % 2 == 0 && v != 0));
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
