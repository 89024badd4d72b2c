//! Attention on the CPU in one pass per (row, head): scores against the cached keys, the
//! visibility rule applied inline (no mask tensor), softmax, optional f16 rounding of the
//! probabilities (llama.cpp's numerics), and the weighted sum of values, written straight
//! into the `(b, t, heads * d)` layout the output projection reads. It replaces about ten
//! candle ops per layer, whose per-op overhead dominated decode, and runs heads in parallel.

use crate::cache::visible;
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
use crate::cpu::attention_avx2;
use crate::cpu::attention_products::{attention_by_products, PRODUCTS_MIN_QUERIES};
use crate::cpu::attention_tiled;
use crate::cpu::{sgemm, vexp};
use std::mem::MaybeUninit;

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

/// Which keys a query sees: the cache's rule (`cache::visible`), and a padding query
/// (position -1) sees only its own slot, so that its (ignored) output stays finite.
pub(super) struct Visibility<'a> {
    query_positions: &'a [Vec<i32>],
    key_positions: &'a [Vec<i32>],
    window: Option<usize>,
    /// Cache slot of the step's first query.
    own_start: usize,
    /// Per row: whether some cached key sits at a slot other than its position modulo 16
    /// (padding before it, or keys moved by the server's joins). The softmax's sum then
    /// takes lanes by position (`LaneRule`).
    shifted: Vec<bool>,
}

/// Which lane of the softmax's sum a key adds into. A forward with no padding adds slot j
/// into lane j % 16, and there slot and position agree; where a row's keys are shifted
/// against their positions, each adds into its position's lane instead, so that a query's
/// probabilities have the same bits wherever its keys sit in the cache.
#[derive(Clone, Copy)]
pub(super) enum LaneRule<'a> {
    BySlot,
    ByPosition(&'a [i32]),
}

impl<'a> Visibility<'a> {
    /// The rule of a call of shape `s`: its queries are the last `q_len` of `kv_len` slots.
    fn new(
        s: &AttentionShape,
        query_positions: &'a [Vec<i32>],
        key_positions: &'a [Vec<i32>],
        window: Option<usize>,
    ) -> Self {
        let shifted = key_positions
            .iter()
            .map(|keys| {
                keys.iter()
                    .take(s.kv_len)
                    .enumerate()
                    .any(|(j, &p)| p >= 0 && (p as usize) % 16 != j % 16)
            })
            .collect();
        Visibility {
            query_positions,
            key_positions,
            window,
            own_start: s.kv_len - s.q_len,
            shifted,
        }
    }

    /// Whether some key of row `row` sits at a slot that disagrees with its position modulo
    /// 16 (its queries' sums then take lanes by position).
    pub(super) fn shifted(&self, row: usize) -> bool {
        self.shifted[row]
    }

    #[cfg(test)]
    fn sees(&self, row: usize, query: usize, key: usize) -> bool {
        self.of_query(row, query).sees(key)
    }

    /// The rule for one query, its position and row looked up once (the kernels ask it
    /// about every key, for every head).
    #[inline]
    pub(super) fn of_query(&self, row: usize, query: usize) -> QueryVisibility<'_> {
        QueryVisibility {
            position: self.query_positions[row][query],
            key_positions: &self.key_positions[row],
            window: self.window,
            own_slot: self.own_start + query,
            shifted: self.shifted[row],
        }
    }
}

/// `Visibility` for one query.
pub(super) struct QueryVisibility<'a> {
    position: i32,
    key_positions: &'a [i32],
    window: Option<usize>,
    own_slot: usize,
    shifted: bool,
}

impl<'a> QueryVisibility<'a> {
    /// The lanes of this query's softmax sum. A padding query sees only its own slot, whose
    /// key may be padding too: it keeps slot lanes (its output is ignored, but finite).
    #[inline]
    pub(super) fn lanes(&self) -> LaneRule<'a> {
        if self.shifted && self.position >= 0 {
            LaneRule::ByPosition(self.key_positions)
        } else {
            LaneRule::BySlot
        }
    }

    #[inline]
    pub(super) fn sees(&self, key: usize) -> bool {
        if self.position < 0 {
            key == self.own_slot
        } else {
            visible(self.position, self.key_positions[key], self.window)
        }
    }
}

/// Softmax of one row of scores (masked keys at -inf) given its maximum, in place, with the
/// probabilities rounded to f16 where llama.cpp's numerics are asked for; the sum's lanes
/// as `lanes` says.
pub(super) fn normalize(scores: &mut [f32], max: f32, round_f16: bool, lanes: LaneRule) {
    let total = match lanes {
        LaneRule::BySlot => vexp::exp_shifted_sum(scores, max),
        LaneRule::ByPosition(positions) => {
            vexp::exp_shifted(scores, max);
            vexp::sum_in_lanes_of(scores, positions)
        }
    };
    let inv = 1.0 / total;
    for p in scores.iter_mut() {
        *p *= inv;
    }
    if round_f16 {
        super::round_to_f16(scores);
    }
}

/// `a · b`, in 16 lanes added pairwise at the end.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    if a.len().is_multiple_of(16) {
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
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    let lanes = attention_avx2::dot_lanes(a, b);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
    let lanes = dot_lanes(a, b);
    let whole = a.len() / 16 * 16;
    vexp::reduce16(lanes) + tail(&a[whole..], &b[whole..])
}

/// The portable dot product's 16 lane sums over whole chunks of 16 (each product rounded,
/// then added).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "avx2"), allow(dead_code))]
fn dot_lanes(a: &[f32], b: &[f32]) -> [f32; 16] {
    let mut acc = [0f32; 16];
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    acc
}

/// The portable dot product of the elements after the whole chunks of 16.
#[inline(always)]
fn tail(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
}

/// `dot(q, key u)` for the 4 keys starting at `k[0]`, `k[stride]`, ... (`q`'s length a
/// multiple of 16), where the build has a kernel for it; the same bits as one at a time.
#[inline]
fn dot4(q: &[f32], k: &[f32], stride: usize) -> Option<[f32; 4]> {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    {
        Some(dot4_avx512(q, k, stride))
    }
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        not(target_feature = "avx512f")
    ))]
    {
        // `dot` adds the (empty) tail's sum.
        Some(attention_avx2::dot4_reduced(q, k, stride).map(|x| x + tail(&[], &[])))
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        any(target_feature = "avx512f", target_feature = "avx2")
    )))]
    {
        let _ = (q, k, stride);
        None
    }
}

/// `dot(q, key u)` for the 4 keys starting at `k[0]`, `k[stride]`, ...: the same products and
/// the same tree of additions as `dot` (so the same bits), with the four horizontal sums
/// done together, which is where one key at a time spends most of its time.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[inline]
fn dot4_avx512(q: &[f32], k: &[f32], stride: usize) -> [f32; 4] {
    use std::arch::x86_64::*;
    let d = q.len();
    assert!(d.is_multiple_of(16) && k.len() >= 3 * stride + d);
    // SAFETY: every load is within q or within key u's d values (asserted above).
    unsafe {
        let mut acc = [_mm512_setzero_ps(); 4];
        for c in (0..d).step_by(16) {
            let x = _mm512_loadu_ps(q.as_ptr().add(c));
            for (u, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(x, _mm512_loadu_ps(k.as_ptr().add(u * stride + c)), *a);
            }
        }
        // `_mm512_reduce_add_ps` adds lane l to l + 8, then l + 4, then l + 2, then l + 1;
        // the same pairs, for four vectors at once.
        let [a, b, c, e] = acc;
        let ab = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a, b),
            _mm512_shuffle_f32x4::<0xEE>(a, b),
        );
        let ce = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(c, e),
            _mm512_shuffle_f32x4::<0xEE>(c, e),
        );
        let s = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(ab, ce),
            _mm512_shuffle_f32x4::<0xDD>(ab, ce),
        );
        let t = _mm512_add_ps(s, _mm512_permute_ps::<0x4E>(s));
        let r = _mm512_add_ps(t, _mm512_permute_ps::<0xB1>(t));
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), r);
        [lanes[0], lanes[4], lanes[8], lanes[12]]
    }
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
    // SAFETY: every row read has a non-zero weight, so lies within v (asserted above).
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    let done = unsafe { attention_avx2::weighted_sum(w, v.as_ptr(), stride, out) };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
    let done = 0;
    if done < d {
        weighted_sum_portable(w, &v[done..], stride, &mut out[done..]);
    }
}

/// `weighted_sum`'s portable loop.
fn weighted_sum_portable(w: &[f32], v: &[f32], stride: usize, out: &mut [f32]) {
    let d = out.len();
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

/// `weighted_sum` for `out.len() == 16 * N`, the sums in registers across all keys.
///
/// # Safety
/// The CPU has AVX-512F (a build target feature, per the cfg); `out` holds `16 * N` values
/// and every row `j` with `w[j] != 0` holds `16 * N` readable f32s at `v + j * stride`.
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

/// `o` written with zeros, as the initialized slice it then is (one head's row, in cache,
/// just before a kernel overwrites it).
pub(crate) fn zeroed(o: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for x in o.iter_mut() {
        x.write(0.0);
    }
    // SAFETY: every element was just written; MaybeUninit<f32> has f32's layout.
    unsafe { &mut *(o as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A written slice seen as one that need not be (tests and benches call the kernels on
/// NaN-filled outputs, to see every element written).
pub fn as_uninit(v: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: MaybeUninit<f32> has f32's layout, and any f32 is a valid MaybeUninit<f32>.
    unsafe { &mut *(v as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

pub(super) struct SharedOut(pub(super) *mut f32);
// SAFETY: each item writes only the output columns of its own heads.
unsafe impl Sync for SharedOut {}

/// `q` is `(b, heads, t, d)` contiguous; `k`, `v` the cache storage; `out` is `(b, t, heads * d)`,
/// every element of which is written (it need not be initialized: zero-filling it first was a
/// serial pass per layer).
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
    out: &mut [MaybeUninit<f32>],
) {
    let (t, d, h) = (s.q_len, s.head_dim, s.heads);
    assert!(q.len() >= s.batch * h * t * d && out.len() >= s.batch * t * h * d);
    let rule = Visibility::new(s, query_positions, key_positions, window);
    if t >= PRODUCTS_MIN_QUERIES && sgemm::AVAILABLE && !round_f16 {
        return attention_by_products(s, q, k, v, &rule, scale, out);
    }
    if t >= attention_tiled::MIN_QUERIES && attention_tiled::supports(d) {
        return attention_tiled::attention_tiled(s, q, k, v, &rule, scale, round_f16, out);
    }
    by_query(s, q, k, v, &rule, scale, round_f16, out)
}

/// Per query of row `row`: (keys visible from the first on, last visible + 1). Keys past the
/// last visible one (the step's later queries) would only add zeros to the softmax's lanes
/// and the weighted sum: same bits without them.
pub(super) fn spans(rule: &Visibility, row: usize, t: usize, kv_len: usize) -> Vec<(usize, usize)> {
    (0..t)
        .map(|i| {
            let seen = rule.of_query(row, i);
            let end = (0..kv_len)
                .rposition(|j| seen.sees(j))
                .map_or(kv_len, |e| e + 1);
            let dense = (0..end).position(|j| !seen.sees(j)).unwrap_or(end);
            (dense, end)
        })
        .collect()
}

/// One query at a time: each (row, head) item scores its queries against the keys in place,
/// normalizes and sums the values.
#[allow(clippy::too_many_arguments)]
fn by_query(
    s: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    rule: &Visibility,
    scale: f32,
    round_f16: bool,
    out: &mut [MaybeUninit<f32>],
) {
    let (t, kv_len, d, h) = (s.q_len, s.kv_len, s.head_dim, s.heads);
    let n_rep = h / s.kv_heads;
    let dst = SharedOut(out.as_mut_ptr().cast());
    let work = |items: std::ops::Range<usize>| {
        let dst = &dst;
        let mut probs = vec![0f32; kv_len];
        // `spans` of row `spans_of`, found once for all the heads of the row that this
        // thread takes in a row.
        let mut spans_now: Vec<(usize, usize)> = Vec::new();
        let mut spans_of = usize::MAX;
        for item in items {
            let (bi, head) = (item / h, item % h);
            let g = head / n_rep;
            let kv_base = bi * s.kv_strides[0] + g * s.kv_strides[1];
            if spans_of != bi {
                spans_now = spans(rule, bi, t, kv_len);
                spans_of = bi;
            }
            for (i, &(dense, end)) in spans_now.iter().enumerate() {
                let qv = &q[((bi * h + head) * t + i) * d..][..d];
                let mut max = f32::NEG_INFINITY;
                let stride = s.kv_strides[2];
                let seen = rule.of_query(bi, i);
                let probs = &mut probs[..end];
                let mut j = 0;
                while j < end {
                    // Four visible keys at once where the build has a kernel for it (same
                    // bits as one at a time).
                    if j + 4 <= dense && d.is_multiple_of(16) {
                        if let Some(four) = dot4(qv, &k[kv_base + j * stride..], stride) {
                            for (p, x) in probs[j..j + 4].iter_mut().zip(four) {
                                *p = x * scale;
                                if *p > max {
                                    max = *p;
                                }
                            }
                            j += 4;
                            continue;
                        }
                    }
                    probs[j] = if j < dense || seen.sees(j) {
                        dot(qv, &k[kv_base + j * stride..][..d]) * scale
                    } else {
                        f32::NEG_INFINITY
                    };
                    if probs[j] > max {
                        max = probs[j];
                    }
                    j += 1;
                }
                normalize(probs, max, round_f16, seen.lanes());
                // SAFETY: in bounds (asserted above); this item owns head `head` of row (bi, i).
                let o = unsafe {
                    std::slice::from_raw_parts_mut(
                        dst.0
                            .add(((bi * t + i) * h + head) * d)
                            .cast::<MaybeUninit<f32>>(),
                        d,
                    )
                };
                weighted_sum(probs, &v[kv_base..], s.kv_strides[2], zeroed(o));
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

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    /// Softmax attention in f64 from the definition, for `attention`'s layouts; `qkv` holds
    /// the queries, then the cache's keys and values.
    fn reference(s: &AttentionShape, qkv: [&[f32]; 3], rule: &Visibility, scale: f32) -> Vec<f64> {
        let [q, k, v] = qkv;
        let (t, d, h) = (s.q_len, s.head_dim, s.heads);
        let mut out = vec![0f64; s.batch * t * h * d];
        for b in 0..s.batch {
            for head in 0..h {
                let base = b * s.kv_strides[0] + head / (h / s.kv_heads) * s.kv_strides[1];
                for i in 0..t {
                    let qv = &q[((b * h + head) * t + i) * d..][..d];
                    let w: Vec<f64> = (0..s.kv_len)
                        .map(|j| {
                            if !rule.sees(b, i, j) {
                                return 0.0;
                            }
                            let kv = &k[base + j * s.kv_strides[2]..][..d];
                            let dot: f64 =
                                qv.iter().zip(kv).map(|(&a, &c)| a as f64 * c as f64).sum();
                            (dot * scale as f64).exp()
                        })
                        .collect();
                    let z: f64 = w.iter().sum();
                    for c in 0..d {
                        out[((b * t + i) * h + head) * d + c] = (0..s.kv_len)
                            .map(|j| w[j] / z * v[base + j * s.kv_strides[2] + c] as f64)
                            .sum();
                    }
                }
            }
        }
        out
    }

    /// The shape of a call: `[batch, heads, kv_heads, q_len, kv_len, head_dim]`.
    fn shape(dims: [usize; 6], kv_strides: [usize; 3]) -> AttentionShape {
        let [batch, heads, kv_heads, q_len, kv_len, head_dim] = dims;
        AttentionShape {
            batch,
            heads,
            kv_heads,
            q_len,
            kv_len,
            head_dim,
            kv_strides,
        }
    }

    /// Key and query positions of two rows: row 0 keys 0..kv_len at positions 0..; row 1
    /// three padding slots first, and its last query padding (when there are several).
    fn two_rows(t: usize, kv_len: usize) -> (Vec<Vec<i32>>, Vec<Vec<i32>>) {
        let keys: Vec<Vec<i32>> = vec![
            (0..kv_len as i32).collect(),
            (0..kv_len as i32)
                .map(|p| if p < 3 { -1 } else { p - 3 })
                .collect(),
        ];
        let queries = (0..2)
            .map(|r| {
                (0..t)
                    .map(|i| {
                        let padding = r == 1 && i == t - 1 && t > 1;
                        if padding {
                            -1
                        } else {
                            keys[r][kv_len - t + i]
                        }
                    })
                    .collect()
            })
            .collect();
        (keys, queries)
    }

    /// The vectorized softmax gives the bits of the element-at-a-time definition, with and
    /// without f16 rounding (probabilities down to f16's subnormals), masked keys included.
    #[test]
    fn normalize_gives_the_bits_of_the_scalar_definition() {
        for n in [1, 15, 16, 37, 200] {
            for round in [false, true] {
                let scores: Vec<f32> = (0..n)
                    .map(|j| {
                        if j % 11 == 3 {
                            f32::NEG_INFINITY
                        } else {
                            ((j * 7919 % 1009) as f32 / 1009.0 - 0.5) * 40.0
                        }
                    })
                    .collect();
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut want = scores.clone();
                let inv = 1.0 / vexp::exp_shifted_sum(&mut want, max);
                for p in want.iter_mut() {
                    *p *= inv;
                    if round {
                        *p = f16::from_f32(*p).to_f32();
                    }
                }
                let mut got = scores;
                normalize(&mut got, max, round, LaneRule::BySlot);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "n {n} round {round}");
                if round && n == 200 {
                    assert!(got.iter().any(|&p| p > 0.0 && p < 6.2e-5), "f16 subnormals");
                }
            }
        }
    }

    /// Values in [-scale, scale) from a fixed pattern.
    fn pattern(n: usize, seed: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 104_729 + seed * 7919) % 4001) as f32 / 2000.5 - 1.0) * scale)
            .collect()
    }

    /// The AVX2 lane sums (also compiled into AVX-512 builds) against the portable loop's,
    /// and four keys at once against the portable `dot` of each.
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    #[test]
    fn avx2_products_give_the_bits_of_the_portable_loops() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for d in [16, 40, 64, 128, 256] {
            let stride = d + 8;
            for trial in 0..30 {
                let q = pattern(d, trial, 3.7);
                let k = pattern(4 * stride, trial + 100, 1.3);
                let lanes = attention_avx2::dot_lanes(&q, &k[..d]);
                assert_eq!(
                    bits(&lanes),
                    bits(&dot_lanes(&q, &k[..d])),
                    "d {d} trial {trial}"
                );
                if !d.is_multiple_of(16) {
                    continue;
                }
                let four = attention_avx2::dot4_reduced(&q, &k, stride);
                for (u, x) in four.iter().enumerate() {
                    let key = &k[u * stride..][..d];
                    let portable = vexp::reduce16(dot_lanes(&q, key)) + tail(&[], &[]);
                    let got = x + tail(&[], &[]);
                    assert_eq!(
                        got.to_bits(),
                        portable.to_bits(),
                        "d {d} trial {trial} key {u}"
                    );
                    // The build's `dot`, where AVX-512 does not replace it.
                    #[cfg(not(target_feature = "avx512f"))]
                    assert_eq!(dot(&q, key).to_bits(), portable.to_bits(), "d {d} key {u}");
                }
            }
        }
    }

    /// `weighted_sum` (AVX2 columns, then the portable loop for any last columns) against the
    /// portable loop, on head sizes that use each register count and a leftover; rows with a
    /// zero weight hold NaN, so a zero weight multiplied instead of skipped fails.
    #[test]
    fn weighted_sum_gives_the_bits_of_the_portable_loop() {
        for d in [8, 12, 24, 56, 64, 100, 128, 256] {
            let (keys, stride) = (37, d + 5);
            let mut v = pattern(keys * stride, d, 2.1);
            let mut w = pattern(keys, d + 1, 0.5);
            for j in (0..keys).step_by(5) {
                w[j] = 0.0;
                v[j * stride..][..d].fill(f32::NAN);
            }
            let mut want = vec![f32::NAN; d];
            weighted_sum_portable(&w, &v, stride, &mut want);
            let mut got = vec![f32::NAN; d];
            weighted_sum(&w, &v, stride, &mut got);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(want.iter().all(|x| x.is_finite()), "d {d}");
            assert_eq!(bits(&got), bits(&want), "d {d}");
        }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    #[test]
    fn four_keys_at_once_give_the_bits_of_one_at_a_time() {
        for d in [16, 64, 128, 256] {
            let stride = d + 16;
            for trial in 0..50usize {
                let q: Vec<f32> = (0..d)
                    .map(|i| (((i * 7919 + trial * 31) % 2003) as f32 / 1001.5 - 1.0) * 3.7)
                    .collect();
                let k: Vec<f32> = (0..4 * stride)
                    .map(|i| (((i * 104_729 + trial * 17) % 4001) as f32 / 2000.5 - 1.0) * 1.3)
                    .collect();
                let four = dot4_avx512(&q, &k, stride);
                for (u, &x) in four.iter().enumerate() {
                    let one = dot(&q, &k[u * stride..][..d]);
                    assert_eq!(x.to_bits(), one.to_bits(), "d {d} trial {trial} key {u}");
                }
            }
        }
    }

    /// The tiled path (`attention_tiled`, prefill and scoring steps) gives the bits of the
    /// per-query loop, with and without f16 probabilities, for head sizes 64, 128 and 256,
    /// on grouped heads, a left-padded row, a padding query, a window, and query counts that
    /// do not fill the last group of four.
    #[test]
    fn tiled_path_gives_the_bits_of_the_per_query_loop() {
        if !attention_tiled::supports(64) {
            eprintln!("skipped: this build has no tiled attention to compare");
            return;
        }
        let noise = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0) * 1.7)
                .collect()
        };
        for (d, t, kv_len, window) in [
            (64, 9, 9, None),
            (64, 19, 40, None),
            (64, 33, 33, Some(5)),
            (128, 10, 21, None),
            (256, 11, 30, Some(9)),
        ] {
            let (batch, heads, kv_heads, cap) = (2, 6, 2, 48);
            let kv_strides = [kv_heads * cap * d, cap * d, d];
            let (k, mut v) = (
                noise(batch * kv_heads * cap * d, 1),
                noise(batch * kv_heads * cap * d, 2),
            );
            // Row 1's padding slots hold NaN values: no query sees them, so their zero
            // weights must be skipped, not multiplied.
            for g in 0..kv_heads {
                v[kv_strides[0] + g * kv_strides[1]..][..3 * d].fill(f32::NAN);
            }
            let q = noise(batch * heads * t * d, 3 + t);
            let (key_positions, query_positions) = two_rows(t, kv_len);
            let s = shape([batch, heads, kv_heads, t, kv_len, d], kv_strides);
            let rule = Visibility::new(&s, &query_positions, &key_positions, window);
            for round in [false, true] {
                let mut want = vec![f32::NAN; batch * t * heads * d];
                by_query(&s, &q, &k, &v, &rule, 0.125, round, as_uninit(&mut want));
                let mut got = vec![f32::NAN; batch * t * heads * d];
                attention_tiled::attention_tiled(
                    &s,
                    &q,
                    &k,
                    &v,
                    &rule,
                    0.125,
                    round,
                    as_uninit(&mut got),
                );
                for (e, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "d {d} t {t} round {round} [{e}]: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// A row's keys moved between cache slots (padding before a continuation, the server's
    /// joins of rows of different lengths) give its queries the bits they have with every key
    /// at the slot of its position: on every path (products, per query, tiled), with and
    /// without f16 rounding, one query or many, with a window.
    #[test]
    fn outputs_do_not_depend_on_which_slots_hold_the_keys() {
        let (heads, kv_heads, d) = (4, 2, 64);
        let noise = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0) * 1.3)
                .collect()
        };
        for (n, t, gaps, window) in [
            (37, 1, vec![(5, 3), (20, 11)], None),
            (37, 1, vec![(0, 7)], Some(9)),
            (50, 3, vec![(30, 2), (47, 5)], None),
            (50, 12, vec![(9, 1), (38, 6)], None),
            (70, 20, vec![(3, 13), (50, 4)], Some(17)),
        ] {
            // Per position: its key and value for each kv head; queries for the last t.
            let (keys, values) = (noise(n * kv_heads * d, 1), noise(n * kv_heads * d, 2));
            let q = noise(heads * t * d, 3 + n);
            // Slots of each position: dense, and with `(before position, padding slots)`.
            let layouts: [Vec<Option<usize>>; 2] = [
                (0..n).map(Some).collect(),
                (0..n)
                    .flat_map(|p| {
                        let pad = gaps.iter().find(|g| g.0 == p).map_or(0, |g| g.1);
                        std::iter::repeat_n(None, pad).chain([Some(p)])
                    })
                    .collect(),
            ];
            for round in [false, true] {
                let outs: Vec<Vec<f32>> = layouts
                    .iter()
                    .map(|slots| {
                        let kv_len = slots.len();
                        let kv_strides = [kv_heads * kv_len * d, kv_len * d, d];
                        let (mut k, mut v) = (
                            vec![0f32; kv_heads * kv_len * d],
                            vec![0f32; kv_heads * kv_len * d],
                        );
                        for (j, p) in slots.iter().enumerate() {
                            let Some(p) = p else { continue };
                            for g in 0..kv_heads {
                                let (src, dst) =
                                    ((p * kv_heads + g) * d, g * kv_strides[1] + j * d);
                                k[dst..dst + d].copy_from_slice(&keys[src..src + d]);
                                v[dst..dst + d].copy_from_slice(&values[src..src + d]);
                            }
                        }
                        let key_positions =
                            vec![slots.iter().map(|p| p.map_or(-1, |p| p as i32)).collect()];
                        let query_positions = vec![((n - t) as i32..n as i32).collect()];
                        let s = shape([1, heads, kv_heads, t, kv_len, d], kv_strides);
                        let mut out = vec![f32::NAN; t * heads * d];
                        attention(
                            &s,
                            &q,
                            &k,
                            &v,
                            &query_positions,
                            &key_positions,
                            window,
                            0.125,
                            round,
                            as_uninit(&mut out),
                        );
                        out
                    })
                    .collect();
                for (e, (a, b)) in outs[1].iter().zip(&outs[0]).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "n {n} t {t} round {round} [{e}]: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// Both paths (per query, and the two products) against the f64 definition, on grouped
    /// heads, a cache with spare capacity, a left-padded row, a padding query and a window.
    #[test]
    fn both_paths_match_softmax_attention_from_its_definition() {
        let (batch, heads, kv_heads, d, cap) = (2, 6, 2, 64, 40);
        let kv_strides = [kv_heads * cap * d, cap * d, d];
        let noise = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0) * 0.8)
                .collect()
        };
        let k = noise(batch * kv_heads * cap * d, 1);
        let v = noise(batch * kv_heads * cap * d, 2);
        for (t, kv_len, window) in [
            (1, 30, None),
            (5, 30, None),
            (20, 36, None),
            (20, 36, Some(7)),
        ] {
            let q = noise(batch * heads * t * d, 3 + t);
            let (key_positions, query_positions) = two_rows(t, kv_len);
            let s = shape([batch, heads, kv_heads, t, kv_len, d], kv_strides);
            let rule = Visibility::new(&s, &query_positions, &key_positions, window);
            let want = reference(&s, [&q, &k, &v], &rule, 0.125);
            let mut got = vec![f32::NAN; batch * t * heads * d];
            attention(
                &s,
                &q,
                &k,
                &v,
                &query_positions,
                &key_positions,
                window,
                0.125,
                false,
                as_uninit(&mut got),
            );
            let worst = got
                .iter()
                .zip(&want)
                .map(|(&a, &b)| (a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-6, "t {t} window {window:?}: {worst}");
        }
    }
}
