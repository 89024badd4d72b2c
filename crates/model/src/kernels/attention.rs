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
        let mut acc = vec![0f32; d];
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
                acc.iter_mut().for_each(|a| *a = 0.0);
                for (j, p) in probs.iter().enumerate() {
                    let mut w = p * inv;
                    if round_f16 {
                        w = f16::from_f32(w).to_f32();
                    }
                    if w == 0.0 {
                        continue;
                    }
                    let vv = &v[kv_base + j * s.kv_strides[2]..][..d];
                    for (a, x) in acc.iter_mut().zip(vv) {
                        *a += w * x;
                    }
                }
                // SAFETY: in bounds (asserted above); this item owns head `head` of row (bi, i).
                let o = unsafe {
                    std::slice::from_raw_parts_mut(dst.0.add(((bi * t + i) * h + head) * d), d)
                };
                o.copy_from_slice(&acc);
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
