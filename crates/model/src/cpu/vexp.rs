//! A branch-free `exp` that the compiler vectorizes (libm's `expf` is a scalar call per
//! element), for softmax in the attention kernel and SiLU in the feed-forward block.
//!
//! Cephes' `expf`: `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a degree-6 polynomial for `e^r`,
//! and `2^n` built from its exponent bits. Within 2 ulp of `f32::exp` (test below); results
//! below `e^-87` (under f32's smallest normal) are 0, as llama.cpp's vectorized exp flushes.

use std::mem::MaybeUninit;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that `n * LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Above this `e^x` overflows f32; below `UNDERFLOW` it is taken as 0.
const OVERFLOW: f32 = 88.376_26;
const UNDERFLOW: f32 = -87.336_55;

/// `e^x` (infinity above 88.38, 0 below -87.34 and for -infinity, NaN for NaN).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // max/min (not clamp) so that NaN becomes a number here and n converts safely below.
    #[allow(clippy::manual_clamp)]
    let xc = x.max(UNDERFLOW).min(OVERFLOW);
    let n = (xc * LOG2E).round_ties_even();
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // n is in [-126, 128]; 2^n as (2^(n/2))^2 keeps both factors normal at the ends.
    let half = (n * 0.5).floor();
    // SAFETY: k is an integer in [-63, 64]; an unchecked conversion vectorizes where `as`
    // (saturating) does not.
    let scale =
        |k: f32| f32::from_bits(((unsafe { k.to_int_unchecked::<i32>() } + 127) as u32) << 23);
    let y = er * scale(half) * scale(n - half);
    if x > OVERFLOW {
        f32::INFINITY
    } else if x < UNDERFLOW {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// `xs[i] = e^(xs[i] - shift)`, returning their sum (added in 16 lanes, then pairwise).
pub fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
    exp_shifted(xs, shift);
    sum(xs)
}

/// `xs[i] = e^(xs[i] - shift)`.
pub fn exp_shifted(xs: &mut [f32], shift: f32) {
    for x in xs.iter_mut() {
        *x = exp(*x - shift);
    }
}

/// The sum of `xs` with element `j` added into lane `lane_keys[j] % 16` (in the order of `j`),
/// then the lanes pairwise; elements whose key is negative must be zero and are skipped.
/// With `lane_keys[j] == j` this is `sum`'s arithmetic; attention passes the keys'
/// positions, so that a key adds into the same lane wherever its cache slot is.
pub fn sum_in_lanes_of(xs: &[f32], lane_keys: &[i32]) -> f32 {
    debug_assert!(lane_keys.len() >= xs.len());
    let mut lanes = [0f32; 16];
    for (&x, &key) in xs.iter().zip(lane_keys) {
        if key >= 0 {
            lanes[key as usize % 16] += x;
        } else {
            debug_assert_eq!(x, 0.0);
        }
    }
    reduce16(lanes)
}

/// The sum of `xs`: element `j` is added into lane `j % 16` (vectorizable), then the lanes
/// pairwise. Trailing zeros (masked keys past a row's end) leave every lane, hence the sum,
/// bit for bit unchanged, so a padded row sums as it does alone.
pub fn sum(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = xs.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    for (l, v) in lanes.iter_mut().zip(tail) {
        *l += v;
    }
    reduce16(lanes)
}

/// Pairwise sum of 16 lanes (a tree, not a chain of 15 dependent adds).
#[inline(always)]
pub fn reduce16(l: [f32; 16]) -> f32 {
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = l[i] + l[i + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

/// SwiGLU's product `out[i] = silu(gate[i]) * up[i]`, `silu(x) = x / (1 + e^-x)`, written
/// into every element of `out` (which need not be initialized).
fn silu_mul(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        o.write(silu_times(g, u));
    }
}

/// One element of `silu_mul`.
#[inline(always)]
pub(crate) fn silu_times(g: f32, u: f32) -> f32 {
    g / (1.0 + exp(-g)) * u
}

/// `silu_times` on 16 lanes with AVX-512 (for the SwiGLU GEMM's tiles): the operations of
/// `exp` and `silu_times` one for one, so the same bits.
///
/// # Safety
/// Only that the CPU has AVX-512F, a target feature of this build (per the cfg); registers
/// only, no memory.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[cfg_attr(not(target_feature = "avx512vnni"), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn silu_times16(
    g: std::arch::x86_64::__m512,
    u: std::arch::x86_64::__m512,
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let e = exp16(_mm512_xor_ps(g, _mm512_set1_ps(-0.0))); // e^-g: a sign flip, as `-g`
    _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0), e)), u)
}

/// `exp` on 16 lanes with AVX-512: its operations one for one, so the same bits.
///
/// # Safety
/// Only that the CPU has AVX-512F, a target feature of this build (per the cfg); registers
/// only, no memory.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[inline(always)]
pub(crate) unsafe fn exp16(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let set = _mm512_set1_ps;
    // `x.max(UNDERFLOW).min(OVERFLOW)`: vmaxps/vminps return their second operand for NaN,
    // as f32::max/min return the number.
    let xc = _mm512_min_ps(_mm512_max_ps(x, set(UNDERFLOW)), set(OVERFLOW));
    const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const DOWN: i32 = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
    let n = _mm512_roundscale_ps::<NEAREST>(_mm512_mul_ps(xc, set(LOG2E)));
    let r = _mm512_sub_ps(
        _mm512_sub_ps(xc, _mm512_mul_ps(n, set(LN2_HI))),
        _mm512_mul_ps(n, set(LN2_LO)),
    );
    let mut p = set(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = _mm512_add_ps(_mm512_mul_ps(p, r), set(c));
    }
    let er = _mm512_add_ps(
        _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r),
        set(1.0),
    );
    let half = _mm512_roundscale_ps::<DOWN>(_mm512_mul_ps(n, set(0.5)));
    let scale = |k: __m512| {
        _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
            _mm512_cvttps_epi32(k),
            _mm512_set1_epi32(127),
        )))
    };
    let y = _mm512_mul_ps(
        _mm512_mul_ps(er, scale(half)),
        scale(_mm512_sub_ps(n, half)),
    );
    let over = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, set(OVERFLOW));
    let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, set(UNDERFLOW));
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    let y = _mm512_mask_mov_ps(y, under, _mm512_setzero_ps());
    let y = _mm512_mask_mov_ps(y, over, set(f32::INFINITY));
    _mm512_mask_mov_ps(y, nan, x)
}

struct SharedOut(*mut f32);
// SAFETY: each row of the output is written by exactly one work item.
unsafe impl Sync for SharedOut {}

/// `silu_mul` over `rows` rows of `n`: row `r` of the gate starts at `gate[r * stride]`, of
/// up at `up[r * stride]`; the result is `(rows, n)`. Rows are spread over candle's pool.
/// The output is not zero-filled first, since every element is written.
pub fn silu_mul_rows(gate: &[f32], up: &[f32], stride: usize, rows: usize, n: usize) -> Vec<f32> {
    assert!(
        rows == 0 || (gate.len() >= (rows - 1) * stride + n && up.len() >= (rows - 1) * stride + n)
    );
    let mut out = Vec::<f32>::with_capacity(rows * n);
    let dst = SharedOut(out.as_mut_ptr());
    let work = |range: std::ops::Range<usize>| {
        let dst = &dst;
        for r in range {
            // SAFETY: row r lies within the capacity and is owned by this item.
            let o = unsafe { std::slice::from_raw_parts_mut(dst.0.add(r * n).cast(), n) };
            silu_mul(&gate[r * stride..][..n], &up[r * stride..][..n], o);
        }
    };
    if rows * n < 1 << 14 {
        work(0..rows);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(rows, work);
    }
    // SAFETY: every row 0..rows was written in full (`silu_mul` writes all n elements).
    unsafe { out.set_len(rows * n) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm_over_the_normal_range() {
        let mut worst = 0;
        let mut x = -87.3f32;
        while x < 88.3 {
            worst = worst.max(ulps(exp(x), x.exp()));
            x += 0.000_37;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        for x in [
            0.0f32,
            -0.0,
            1e-30,
            -1e-30,
            1.0,
            -1.0,
            0.5 * std::f32::consts::LN_2,
        ] {
            assert!(ulps(exp(x), x.exp()) <= 1, "{x}");
        }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    #[test]
    fn silu_and_exp_on_16_lanes_give_the_bits_of_one_at_a_time() {
        use std::arch::x86_64::*;
        let mut gs: Vec<f32> = (0..20_000)
            .map(|i| (i as f32 - 10_000.0) * 0.0123)
            .collect();
        gs.extend([
            0.0, -0.0, 1e-40, -1e-40, 88.0, -88.0, 87.4, -87.4, 100.0, -100.0,
        ]);
        gs.extend([
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MAX,
            f32::MIN,
        ]);
        gs.resize(gs.len().next_multiple_of(16), 1.5);
        for (c, g) in gs.chunks(16).enumerate() {
            let u: Vec<f32> = (0..16).map(|l| 0.75 - (c * 16 + l) as f32 * 1e-4).collect();
            let (mut got, mut got_exp) = ([0f32; 16], [0f32; 16]);
            // SAFETY: 16 values each; AVX-512F is compiled in.
            unsafe {
                let v = silu_times16(_mm512_loadu_ps(g.as_ptr()), _mm512_loadu_ps(u.as_ptr()));
                _mm512_storeu_ps(got.as_mut_ptr(), v);
                _mm512_storeu_ps(got_exp.as_mut_ptr(), exp16(_mm512_loadu_ps(g.as_ptr())));
            }
            for l in 0..16 {
                let want = exp(g[l]);
                assert!(
                    got_exp[l].to_bits() == want.to_bits()
                        || (got_exp[l].is_nan() && want.is_nan()),
                    "exp({}): {} vs {want}",
                    g[l],
                    got_exp[l]
                );
            }
            for l in 0..16 {
                let want = silu_times(g[l], u[l]);
                assert!(
                    got[l].to_bits() == want.to_bits() || (got[l].is_nan() && want.is_nan()),
                    "silu({}) * {}: {} vs {want}",
                    g[l],
                    u[l],
                    got[l]
                );
            }
        }
    }

    #[test]
    fn exp_ends_and_specials() {
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn trailing_zeros_leave_the_sum_bit_for_bit_unchanged() {
        let xs: Vec<f32> = (0..45).map(|i| 1.0 / (i as f32 + 0.3)).collect();
        for n in [1, 15, 16, 17, 45] {
            let mut padded = xs[..n].to_vec();
            padded.resize(n + 40, 0.0);
            assert_eq!(sum(&xs[..n]).to_bits(), sum(&padded).to_bits(), "{n}");
        }
    }

    #[test]
    fn softmax_pieces_and_silu_match_the_scalar_formulas() {
        let xs: Vec<f32> = (0..37)
            .map(|i| ((i * 29 % 23) as f32 - 11.0) * 0.7)
            .collect();
        let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut e = xs.clone();
        e.push(f32::NEG_INFINITY); // a masked key
        let s = exp_shifted_sum(&mut e, max);
        let want: f64 = xs.iter().map(|&x| ((x - max) as f64).exp()).sum();
        assert!((s as f64 - want).abs() < 1e-6 * want, "{s} vs {want}");
        assert_eq!(e[37], 0.0);
        let up: Vec<f32> = xs.iter().map(|x| x * 0.3 - 1.0).collect();
        let out = silu_mul_rows(&xs, &up, xs.len(), 1, xs.len());
        for ((&g, &u), &o) in xs.iter().zip(&up).zip(&out) {
            let want = g as f64 / (1.0 + (-g as f64).exp()) * u as f64;
            assert!(
                (o as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{g}: {o} vs {want}"
            );
        }
    }
}
