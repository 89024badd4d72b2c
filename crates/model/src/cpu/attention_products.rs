//! f32 attention of many queries as two matrix products per (row, kv head), on the packed
//! GEMM of `sgemm`: prefill and scoring, where the per-query loop of `attention` spends most
//! of its time in horizontal sums.

use super::attention::{normalize, AttentionShape, SharedOut, Visibility};
use super::sgemm;

/// From this many queries per call a (row, kv head)'s f32 attention runs as two matrix
/// products on the packed GEMM (`sgemm`): scores = Q·Kᵀ for all of its query heads at once,
/// then probabilities · V. The per-query loop rounds differently (a chain of fused
/// multiply-adds against 16 lanes), so every f32 step takes the products, decode's single
/// query too: a row's numbers then do not depend on how long the step it shares is (a
/// one-token continuation scored alone or beside longer ones), and decode through the cache
/// gives the full forward's bits.
///
/// llama.cpp's f16 numerics (quantized GGUF models) always take the per-query loop (or its
/// tiled arrangement, the same bits): with the GEMM's order of additions in the scores,
/// Gemma 3's greedy text leaves llama.cpp's at its 14th token
/// (`greedy_continuation_matches_llama_cpp`); with the loop's it matches.
pub const PRODUCTS_MIN_QUERIES: usize = 1;
/// Query rows whose scores are held at once by the product path (bounds its buffer to
/// `QUERY_CHUNK x kv_len`).
const QUERY_CHUNK: usize = 128;

/// The product path (see `PRODUCTS_MIN_QUERIES`); the arguments of `attention::attention`.
pub(super) fn attention_by_products(
    s: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    rule: &Visibility,
    scale: f32,
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    let (t, kv_len, d, h) = (s.q_len, s.kv_len, s.head_dim, s.heads);
    let n_rep = h / s.kv_heads;
    let rows = n_rep * t;
    let dst = SharedOut(out.as_mut_ptr().cast());
    let work = |items: std::ops::Range<usize>| {
        let dst = &dst;
        let mut scores = vec![0f32; QUERY_CHUNK.min(rows) * kv_len];
        let mut mixed = vec![0f32; QUERY_CHUNK.min(rows) * d];
        for item in items {
            let (bi, g) = (item / s.kv_heads, item % s.kv_heads);
            let kv_base = bi * s.kv_strides[0] + g * s.kv_strides[1];
            let keys = sgemm::PackedWeights::pack_rows(&k[kv_base..], kv_len, d, s.kv_strides[2]);
            let values =
                sgemm::PackedWeights::pack_transposed(&v[kv_base..], kv_len, d, s.kv_strides[2]);
            // The query heads sharing kv head g are consecutive in q: one (rows, d) block.
            let q_block = &q[(bi * h + g * n_rep) * t * d..][..rows * d];
            for first in (0..rows).step_by(QUERY_CHUNK) {
                let n = QUERY_CHUNK.min(rows - first);
                let sc = &mut scores[..n * kv_len];
                sgemm::matmul_on_this_thread(&q_block[first * d..], n, &keys, sc);
                for (r, row) in sc.chunks_mut(kv_len).enumerate() {
                    let i = (first + r) % t;
                    let mut max = f32::NEG_INFINITY;
                    let seen = rule.of_query(bi, i);
                    for (j, x) in row.iter_mut().enumerate() {
                        *x = if seen.sees(j) {
                            *x * scale
                        } else {
                            f32::NEG_INFINITY
                        };
                        if *x > max {
                            max = *x;
                        }
                    }
                    normalize(row, max, false, seen.lanes());
                }
                let mx = &mut mixed[..n * d];
                sgemm::matmul_on_this_thread(sc, n, &values, mx);
                for (r, o) in mx.chunks(d).enumerate() {
                    let (head, i) = (g * n_rep + (first + r) / t, (first + r) % t);
                    // SAFETY: in bounds (asserted by the caller); this item owns the query
                    // heads of kv head g in row bi.
                    unsafe {
                        let dst_row = dst.0.add(((bi * t + i) * h + head) * d);
                        std::ptr::copy_nonoverlapping(o.as_ptr(), dst_row, d);
                    }
                }
            }
        }
    };
    let items = s.batch * s.kv_heads;
    if items * rows * kv_len * d < 1 << 16 {
        work(0..items);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(items, work);
    }
}
