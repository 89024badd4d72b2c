//! AVX2 forms of the per-query attention loop's products (`attention::by_query` on CPUs
//! without AVX-512): the portable loops' operations lane for lane, so the same bits, with
//! the sums kept in registers. The portable loops compiled to 2-lane vectors and kept the
//! value sums in memory. AVX-512 builds compile these too, so their tests check them.

use std::arch::x86_64::*;

/// The 16 lanes of `attention::dot`'s portable accumulator over whole chunks of 16: lane
/// `l` sums `a[c + l] * b[c + l]` over the chunks, each product rounded, then added.
#[inline]
pub(super) fn dot_lanes(a: &[f32], b: &[f32]) -> [f32; 16] {
    let chunks = a.len() / 16;
    assert!(b.len() >= chunks * 16);
    // SAFETY: every load is within the first chunks * 16 elements of a and b.
    unsafe {
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for c in (0..chunks * 16).step_by(16) {
            let (x, y) = (a.as_ptr().add(c), b.as_ptr().add(c));
            lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(y)));
            hi = _mm256_add_ps(
                hi,
                _mm256_mul_ps(_mm256_loadu_ps(x.add(8)), _mm256_loadu_ps(y.add(8))),
            );
        }
        let mut lanes = [0f32; 16];
        _mm256_storeu_ps(lanes.as_mut_ptr(), lo);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), hi);
        lanes
    }
}

/// `reduce16(dot_lanes(q, key u))` for the 4 keys starting at `k[0]`, `k[stride]`, ... (`q`'s
/// length a multiple of 16): `reduce16`'s tree of additions done for the four keys together.
#[cfg_attr(target_feature = "avx512f", allow(dead_code))]
#[inline]
pub(super) fn dot4_reduced(q: &[f32], k: &[f32], stride: usize) -> [f32; 4] {
    let d = q.len();
    assert!(d.is_multiple_of(16) && k.len() >= 3 * stride + d);
    // SAFETY: every load is within q or within key u's d values (asserted above).
    unsafe {
        let mut lo = [_mm256_setzero_ps(); 4];
        let mut hi = [_mm256_setzero_ps(); 4];
        for c in (0..d).step_by(16) {
            let x0 = _mm256_loadu_ps(q.as_ptr().add(c));
            let x1 = _mm256_loadu_ps(q.as_ptr().add(c + 8));
            for u in 0..4 {
                let key = k.as_ptr().add(u * stride + c);
                lo[u] = _mm256_add_ps(lo[u], _mm256_mul_ps(x0, _mm256_loadu_ps(key)));
                hi[u] = _mm256_add_ps(hi[u], _mm256_mul_ps(x1, _mm256_loadu_ps(key.add(8))));
            }
        }
        // reduce16: h[i] = l[i] + l[i + 8].
        let h: [__m256; 4] = std::array::from_fn(|u| _mm256_add_ps(lo[u], hi[u]));
        // q[i] = h[i] + h[i + 4], keys 0 and 1 in one register, 2 and 3 in another.
        let halves = |a: __m256, b: __m256| {
            _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(a, b),
                _mm256_permute2f128_ps::<0x31>(a, b),
            )
        };
        let (q01, q23) = (halves(h[0], h[1]), halves(h[2], h[3]));
        // q[0] + q[2] and q[1] + q[3]: per 128-bit half, keys 0 and 2 (low), 1 and 3 (high).
        let s = _mm256_add_ps(
            _mm256_shuffle_ps::<0x44>(q01, q23),
            _mm256_shuffle_ps::<0xEE>(q01, q23),
        );
        // (q[0] + q[2]) + (q[1] + q[3]).
        let t = _mm256_add_ps(s, _mm256_permute_ps::<0xB1>(s));
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), t);
        [lanes[0], lanes[4], lanes[2], lanes[6]]
    }
}

/// `out = Σ_j w[j] · v[j * stride..][..d]` as `attention::weighted_sum`'s portable loop does
/// it (zero weights skipped, each term multiplied then added, keys in order), 64 columns at a
/// time in 8 registers; columns past the last multiple of 8 are left to the caller.
/// Returns how many columns it wrote.
///
/// # Safety
/// Every row `j` with `w[j] != 0` must hold `out.len()` values at `v + j * stride`.
pub(super) unsafe fn weighted_sum(
    w: &[f32],
    v: *const f32,
    stride: usize,
    out: &mut [f32],
) -> usize {
    let d = out.len();
    let mut c0 = 0;
    while d - c0 >= 64 {
        columns::<8>(w, v.add(c0), stride, out.as_mut_ptr().add(c0));
        c0 += 64;
    }
    if d - c0 >= 32 {
        columns::<4>(w, v.add(c0), stride, out.as_mut_ptr().add(c0));
        c0 += 32;
    }
    if d - c0 >= 16 {
        columns::<2>(w, v.add(c0), stride, out.as_mut_ptr().add(c0));
        c0 += 16;
    }
    if d - c0 >= 8 {
        columns::<1>(w, v.add(c0), stride, out.as_mut_ptr().add(c0));
        c0 += 8;
    }
    c0
}

/// `weighted_sum` over `8 * N` columns starting at `v` and `out`.
///
/// # Safety
/// The CPU has AVX2 (the module is compiled only for it); every row `j` with `w[j] != 0`
/// holds `8 * N` readable f32s at `v + j * stride`, and `out` points to `8 * N` writable ones.
#[inline(always)]
unsafe fn columns<const N: usize>(w: &[f32], v: *const f32, stride: usize, out: *mut f32) {
    let mut acc = [_mm256_setzero_ps(); N];
    for (j, &wj) in w.iter().enumerate() {
        if wj == 0.0 {
            continue;
        }
        let wv = _mm256_set1_ps(wj);
        let row = v.add(j * stride);
        for (c, a) in acc.iter_mut().enumerate() {
            *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, _mm256_loadu_ps(row.add(c * 8))));
        }
    }
    for (c, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.add(c * 8), *a);
    }
}
