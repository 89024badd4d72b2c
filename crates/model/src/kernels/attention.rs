//! Attention on the CPU in one pass per (row, head): scores against the cached keys, the
//! visibility rule applied inline (no mask tensor), softmax, optional f16 rounding of the
//! probabilities (llama.cpp's numerics), and the weighted sum of values, written straight
//! into the `(b, t, heads * d)` layout the output projection reads. It replaces about ten
//! candle ops per layer, whose per-op overhead dominated decode, and runs heads in parallel.

use crate::cache::visible;
use crate::kernels::vexp;
use half::f16;

/// Shapes and strides of one call. Keys/values are read from the cache buffers in place.
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub head_dim: usize,
    /// Element strides of the cache view (batch, kv head, position); the last dim is contiguous.
    pub kv_strides: [usize; 3],
}

/// `a · b`, in 16 lanes added pairwise at the end.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    if a.len() % 16 == 0 {
        use std::arch::x86_64::*;
        // SAFETY: both slices hold a.len() (a multiple of 16) elements; loads are unaligned.
        unsafe {
            let mut acc = _mm512_setzero_ps();
            for c in (0..a.len()).step_by(16) {
                let x = _mm512_loadu_ps(a.as_ptr().add(c));
                let y = _mm512_loadu_ps(b.as_ptr().add(c));
                acc = _mm512_fmadd_ps(x, y, acc);
            }
            return _mm512_reduce_add_ps(acc);
        }
    }
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    vexp::reduce16(acc) + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

/// `out = Σ_j w[j] · v[j * stride..][..d]`, skipping zero weights (masked keys), each term
/// multiplied then added (no fused multiply-add, as in the portable loop). Head sizes of 64,
/// 128 and 256 keep the sum in AVX-512 registers across all keys.
fn weighted_sum(w: &[f32], v: &[f32], stride: usize, out: &mut [f32]) {
    let d = out.len();
    if let Some(last) = w.iter().rposition(|&x| x != 0.0) {
        assert!(v.len() >= last * stride + d);
    }
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    {
        // SAFETY: every row read has a non-zero weight, so lies within v (asserted above).
        match d {
            64 => return unsafe { weighted_sum_regs::<4>(w, v.as_ptr(), stride, out) },
            128 => return unsafe { weighted_sum_regs::<8>(w, v.as_ptr(), stride, out) },
            256 => return unsafe { weighted_sum_regs::<16>(w, v.as_ptr(), stride, out) },
            _ => {}
        }
    }
    out.iter_mut().for_each(|a| *a = 0.0);
    for (j, &wj) in w.iter().enumerate() {
        if wj == 0.0 {
            continue;
        }
        for (a, x) in out.iter_mut().zip(&v[j * stride..][..d]) {
            *a += wj * x;
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[inline(always)]
unsafe fn weighted_sum_regs<const N: usize>(
    w: &[f32],
    v: *const f32,
    stride: usize,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    debug_assert_eq!(out.len(), N * 16);
    let mut acc = [_mm512_setzero_ps(); N];
    for (j, &wj) in w.iter().enumerate() {
        if wj == 0.0 {
            continue;
        }
        let wv = _mm512_set1_ps(wj);
        let row = v.add(j * stride);
        for (c, a) in acc.iter_mut().enumerate() {
            *a = _mm512_add_ps(*a, _mm512_mul_ps(wv, _mm512_loadu_ps(row.add(c * 16))));
        }
    }
    for (c, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(out.as_mut_ptr().add(c * 16), *a);
    }
}

struct SharedOut(*mut f32);
// SAFETY: each (row, head) item writes only its own head's columns.
unsafe impl Sync for SharedOut {}

/// `q` is `(b, heads, t, d)` contiguous; `k`, `v` the cache storage; `out` is `(b, t, heads * d)`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    s: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    query_positions: &[Vec<i32>],
    key_positions: &[Vec<i32>],
    window: Option<usize>,
    scale: f32,
    round_f16: bool,
    out: &mut [f32],
) {
    let (t, kv_len, d, h) = (s.q_len, s.kv_len, s.head_dim, s.heads);
    let n_rep = h / s.kv_heads;
    assert!(q.len() >= s.batch * h * t * d && out.len() >= s.batch * t * h * d);
    let dst = SharedOut(out.as_mut_ptr());
    let work = |items: std::ops::Range<usize>| {
        let dst = &dst;
        let mut probs = vec![0f32; kv_len];
        for item in items {
            let (bi, head) = (item / h, item % h);
            let g = head / n_rep;
            let kv_base = bi * s.kv_strides[0] + g * s.kv_strides[1];
            let own_start = kv_len - t;
            for i in 0..t {
                let qv = &q[((bi * h + head) * t + i) * d..][..d];
                let qp = query_positions[bi][i];
                let mut max = f32::NEG_INFINITY;
                for (j, p) in probs.iter_mut().enumerate() {
                    let kp = key_positions[bi][j];
                    let ok = if qp < 0 {
                        j == own_start + i
                    } else {
                        visible(qp, kp, window)
                    };
                    *p = if ok {
                        let kv = &k[kv_base + j * s.kv_strides[2]..][..d];
                        dot(qv, kv) * scale
                    } else {
                        f32::NEG_INFINITY
                    };
                    if *p > max {
                        max = *p;
                    }
                }
                let inv = 1.0 / vexp::exp_shifted_sum(&mut probs, max);
                for p in probs.iter_mut() {
                    *p *= inv;
                    if round_f16 {
                        *p = f16::from_f32(*p).to_f32();
                    }
                }
                // SAFETY: in bounds (asserted above); this item owns head `head` of row (bi, i).
                let o = unsafe {
                    std::slice::from_raw_parts_mut(dst.0.add(((bi * t + i) * h + head) * d), d)
                };
                weighted_sum(&probs, &v[kv_base..], s.kv_strides[2], o);
            }
        }
    };
    let items = s.batch * h;
    if items * t * kv_len * d < 1 << 16 {
        work(0..items);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(items, work);
    }
}
