//! The per-query attention path (`attention::by_query`, llama.cpp's numerics) arranged for
//! prefill and scoring steps: the same operations in the same order, hence the same bits.
//!
//! - A row's keys are transposed once per (row, kv head) into blocks of 16 keys, so that a
//!   query's scores against 16 keys come from vertical multiply-adds, one key per lane, with
//!   `dot`'s chains and tree of additions, instead of a horizontal sum per key.
//! - Queries go `GROUP` at a time: they share the loads of those key blocks, and then of the
//!   value rows, and their sums are independent chains that keep the adders busy (one query's
//!   weighted sum is a chain of dependent additions per value lane).

#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
use super::attention::{normalize, spans, SharedOut};
use super::attention::{AttentionShape, Visibility};

/// Queries per step from which `attention::attention` takes this path (decode keeps the
/// per-query loop, which reads the keys in place).
pub(super) const MIN_QUERIES: usize = 8;
/// Queries scored together.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
const GROUP: usize = 4;

/// Whether this build and head size take this path.
pub(super) fn supports(head_dim: usize) -> bool {
    cfg!(all(target_arch = "x86_64", target_feature = "avx512f"))
        && matches!(head_dim, 64 | 128 | 256)
}

/// `attention::attention` for `supports(head_dim)`; the same arguments.
#[allow(clippy::too_many_arguments)]
pub(super) fn attention_tiled(
    s: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    rule: &Visibility,
    scale: f32,
    round_f16: bool,
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    {
        let (t, kv_len, d, h) = (s.q_len, s.kv_len, s.head_dim, s.heads);
        assert!(supports(d) && q.len() >= s.batch * h * t * d && out.len() >= s.batch * t * h * d);
        let n_rep = h / s.kv_heads;
        let stride = s.kv_strides[2];
        let width = kv_len.next_multiple_of(16);
        let dst = SharedOut(out.as_mut_ptr().cast());
        let work = |items: std::ops::Range<usize>| {
            let dst = &dst;
            // One row of probabilities per query of a group.
            let mut probs = vec![0f32; GROUP * width];
            let (mut spans_now, mut spans_of) = (Vec::new(), usize::MAX);
            // The keys of (row, kv head) `keys_of`, `(blocks, d, 16)`.
            let (mut keys_t, mut keys_of) = (Vec::new(), (usize::MAX, usize::MAX));
            // Whether the values those keys' queries read are all finite.
            let mut values_finite = false;
            for item in items {
                let (bi, head) = (item / h, item % h);
                let g = head / n_rep;
                let kv_base = bi * s.kv_strides[0] + g * s.kv_strides[1];
                if spans_of != bi {
                    spans_now = spans(rule, bi, t, kv_len);
                    spans_of = bi;
                }
                if keys_of != (bi, g) {
                    let used = spans_now.iter().map(|&(_, end)| end).max().unwrap_or(0);
                    transpose_keys(&k[kv_base..], stride, d, used, &mut keys_t);
                    values_finite = (0..used).all(|j| {
                        v[kv_base + j * stride..][..d]
                            .iter()
                            .fold(true, |all, x| all & x.is_finite())
                    });
                    keys_of = (bi, g);
                }
                for i0 in (0..t).step_by(GROUP) {
                    let group = &spans_now[i0..(i0 + GROUP).min(t)];
                    let row = |u: usize| ((bi * h + head) * t + i0 + u.min(group.len() - 1)) * d;
                    let queries: [&[f32]; GROUP] = std::array::from_fn(|u| &q[row(u)..][..d]);
                    // SAFETY: keys_t holds the blocks of every key below the group's ends;
                    // probs holds GROUP rows of `width` >= any end rounded up to 16.
                    let mut maxes =
                        unsafe { score_group(&queries, group, &keys_t, scale, &mut probs, width) };
                    let mut lens = [0; GROUP];
                    for (u, &(dense, end)) in group.iter().enumerate() {
                        if dense < end {
                            let p = &mut probs[u * width..][..width];
                            maxes[u] = hide_unseen(p, &rule.of_query(bi, i0 + u), dense, end);
                        }
                        // Whole blocks of 16 (no scalar tails): keys past the end have
                        // probability 0, which leaves the sum's lanes, hence every
                        // probability, bit for bit unchanged (`vexp::sum`).
                        lens[u] = end.next_multiple_of(16);
                    }
                    if rule.shifted(bi) {
                        // Lanes by key position: `normalize`'s scalar sum, query by query.
                        for u in 0..group.len() {
                            let lanes = rule.of_query(bi, i0 + u).lanes();
                            let p = &mut probs[u * width..][..lens[u]];
                            normalize(p, maxes[u], round_f16, lanes);
                        }
                    } else {
                        // SAFETY: each length is at most `width` (an end rounded up to 16).
                        unsafe { normalize_group(&mut probs, width, &lens, &maxes, round_f16) };
                    }
                    let outs: [*mut f32; GROUP] = std::array::from_fn(|u| {
                        // SAFETY: in bounds (asserted above); this item owns head `head` of
                        // rows (bi, i0 + u); unused slots repeat the last query's row.
                        unsafe {
                            dst.0
                                .add(((bi * t + i0 + u.min(group.len() - 1)) * h + head) * d)
                        }
                    });
                    // SAFETY: every end is at most kv_len, so the value rows read lie in the
                    // cache view; probs as above.
                    unsafe {
                        weighted_sums(
                            &probs,
                            width,
                            group,
                            values_finite,
                            &v[kv_base..],
                            stride,
                            d,
                            outs,
                        )
                    };
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
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
    {
        let _ = (s, q, k, v, rule, scale, round_f16, out);
        unreachable!("attention_tiled without AVX-512 (`supports` is false)");
    }
}

/// `attention::normalize` of each query's probabilities `probs[u * width..][..lens[u]]`
/// (lengths multiples of 16) given its maximum, the group's queries interleaved so that
/// their chains of exponentials, sums and divisions overlap: each query's operations are
/// `normalize`'s in its order, so the same bits.
///
/// # Safety
/// Only that the CPU has AVX-512F, a target feature of this build (per the cfg); the lengths
/// and `probs`' size are asserted.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
unsafe fn normalize_group(
    probs: &mut [f32],
    width: usize,
    lens: &[usize; GROUP],
    maxes: &[f32; GROUP],
    round_f16: bool,
) {
    use std::arch::x86_64::*;
    const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    assert!(lens.iter().all(|&l| l <= width && l.is_multiple_of(16)));
    assert!(probs.len() >= GROUP * width);
    let blocks = lens.map(|l| l / 16);
    let most = blocks.iter().copied().max().unwrap_or(0);
    let base = probs.as_mut_ptr();
    let shift = maxes.map(|m| _mm512_set1_ps(m));
    let mut lanes = [_mm512_setzero_ps(); GROUP];
    for b in 0..most {
        for u in 0..GROUP {
            if b < blocks[u] {
                let p = base.add(u * width + b * 16);
                let e = super::vexp::exp16(_mm512_sub_ps(_mm512_loadu_ps(p), shift[u]));
                _mm512_storeu_ps(p, e);
                lanes[u] = _mm512_add_ps(lanes[u], e);
            }
        }
    }
    let inv = lanes.map(|l| {
        let mut sums = [0f32; 16];
        _mm512_storeu_ps(sums.as_mut_ptr(), l);
        _mm512_set1_ps(1.0 / super::vexp::reduce16(sums))
    });
    for b in 0..most {
        for u in 0..GROUP {
            if b < blocks[u] {
                let p = base.add(u * width + b * 16);
                let mut x = _mm512_mul_ps(_mm512_loadu_ps(p), inv[u]);
                if round_f16 {
                    x = _mm512_cvtph_ps(_mm512_cvtps_ph::<NEAREST>(x));
                }
                _mm512_storeu_ps(p, x);
            }
        }
    }
}

/// Keys `0..used` (row `j` at `k[j * stride..][..d]`) into blocks of 16: key `j`'s value `c`
/// at `[j / 16][c][j % 16]`; the last block's spare lanes are 0. Whole blocks take one gather
/// per value of 16 keys, at the keys' stride.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
fn transpose_keys(k: &[f32], stride: usize, d: usize, used: usize, keys_t: &mut Vec<f32>) {
    use std::arch::x86_64::*;
    keys_t.clear();
    keys_t.resize(used.next_multiple_of(16) * d, 0.0);
    let whole = if stride <= i32::MAX as usize / 16 {
        used / 16 * 16
    } else {
        0
    };
    if whole > 0 {
        assert!(k.len() >= (whole - 1) * stride + d);
        // SAFETY: lane l reads k[(j0 + l) * stride + c] with j0 + l < whole and c < d, in
        // bounds (asserted); the stores fill the first `whole` keys' blocks of keys_t.
        unsafe {
            let lanes = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32(stride as i32),
            );
            for j0 in (0..whole).step_by(16) {
                let block = keys_t.as_mut_ptr().add(j0 * d);
                let first = k.as_ptr().add(j0 * stride);
                for c in 0..d {
                    let column = _mm512_i32gather_ps::<4>(lanes, first.add(c));
                    _mm512_storeu_ps(block.add(c * 16), column);
                }
            }
        }
    }
    for j in whole..used {
        let block = &mut keys_t[j / 16 * 16 * d..][..16 * d];
        for (c, &x) in k[j * stride..][..d].iter().enumerate() {
            block[c * 16 + j % 16] = x;
        }
    }
}

/// Keys inside `dense..end` that the query does not see (a window, padding slots) to -inf;
/// returns the maximum of `p[..end]` as the per-key loop finds it.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
fn hide_unseen(
    p: &mut [f32],
    seen: &super::attention::QueryVisibility,
    dense: usize,
    end: usize,
) -> f32 {
    let mut max = f32::NEG_INFINITY;
    for (j, x) in p[..end].iter_mut().enumerate() {
        if j >= dense && !seen.sees(j) {
            *x = f32::NEG_INFINITY;
        }
        if *x > max {
            max = *x;
        }
    }
    max
}

/// Scores of each query `u` of the group against keys `0..end_u` into `probs[u * width..]`,
/// keys past `end_u` at -inf up to the group's last block; returns each query's maximum,
/// kept per lane as `if x > max { max = x }` keeps it (`vmaxps` returns its second operand
/// unless the first is greater), then across lanes the same way: the value of the per-key
/// loop, up to the sign of a zero maximum, which no `e^(x - max)` sees.
///
/// # Safety
/// The CPU has AVX-512F (a build target feature, per the cfg); every query has the first's
/// length, which is 64, 128 or 256; `width` is at least every end of `group` rounded up to 16
/// and `group` has at most `GROUP` entries (`keys_t` and `probs` are asserted).
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
unsafe fn score_group(
    queries: &[&[f32]; GROUP],
    group: &[(usize, usize)],
    keys_t: &[f32],
    scale: f32,
    probs: &mut [f32],
    width: usize,
) -> [f32; GROUP] {
    use std::arch::x86_64::*;
    let d = queries[0].len();
    let last = group.iter().map(|&(_, end)| end).max().unwrap_or(0);
    assert!(keys_t.len() >= last.next_multiple_of(16) * d && probs.len() >= GROUP * width);
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut max = [neg_inf; GROUP];
    let qs: [*const f32; GROUP] = std::array::from_fn(|u| queries[u].as_ptr());
    for j in (0..last).step_by(16) {
        let kt = keys_t.as_ptr().add(j * d);
        let scores = match d {
            64 => scores16::<4>(&qs, kt),
            128 => scores16::<8>(&qs, kt),
            _ => scores16::<16>(&qs, kt),
        };
        for (u, &(_, end)) in group.iter().enumerate() {
            let live = match end.saturating_sub(j) {
                0 => 0,
                n if n >= 16 => u16::MAX,
                n => (1u16 << n) - 1,
            };
            let x = _mm512_mask_mov_ps(
                neg_inf,
                live,
                _mm512_mul_ps(scores[u], _mm512_set1_ps(scale)),
            );
            _mm512_storeu_ps(probs.as_mut_ptr().add(u * width + j), x);
            max[u] = _mm512_max_ps(x, max[u]);
        }
    }
    max.map(|m| {
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), m);
        lanes
            .iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
    })
}

/// `dot(q_u, key l) * 1` for 16 keys `l` (lanes) and each query `u`: lane `l`'s products
/// chained over the `C` chunks of 16 values, then `_mm512_reduce_add_ps`'s tree (lanes
/// `l + 8`, then `+ 4`, `+ 2`, `+ 1`), taken as `((P0+P8) + (P4+P12)) + ((P2+P10) +
/// (P6+P14))` plus the same from lane 1, so that only four chains per query are live.
///
/// # Safety
/// The CPU has AVX-512F (per the cfg); each `qs[u]` points to `16 * C` readable f32s and `kt`
/// to a block of 16 transposed keys of `16 * C` values (`[16 * C][16]`).
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[inline(always)]
unsafe fn scores16<const C: usize>(
    qs: &[*const f32; GROUP],
    kt: *const f32,
) -> [std::arch::x86_64::__m512; GROUP] {
    use std::arch::x86_64::*;
    let quad = |l: usize| quad_sums::<C>(qs, kt, l);
    let (q0, q2) = (quad(0), quad(2));
    let r0: [__m512; GROUP] = std::array::from_fn(|u| _mm512_add_ps(q0[u], q2[u]));
    let (q1, q3) = (quad(1), quad(3));
    std::array::from_fn(|u| _mm512_add_ps(r0[u], _mm512_add_ps(q1[u], q3[u])))
}

/// `out_u = Σ_j p_u[j] · v[j * stride..][..d]` over `j < end_u` for each query of the group,
/// skipping zero weights, each term multiplied then added: `weighted_sum`'s operations, with
/// the value rows loaded once for the group. Where the values are all finite (`finite`), a
/// zero weight's term is a zero that leaves the sum's bits as they are (a sum that starts at
/// +0 never becomes -0), so the keys every query of the group sees go without the per-key
/// test.
///
/// # Safety
/// The CPU has AVX-512F (per the cfg); `d` is 64, 128 or 256; `group` has at most `GROUP`
/// entries, each end at most `width`, and `probs` holds `GROUP` rows of `width`; for each
/// query with a non-zero end, `outs[u]` points to `d` writable f32s no one else accesses.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[allow(clippy::too_many_arguments)]
unsafe fn weighted_sums(
    probs: &[f32],
    width: usize,
    group: &[(usize, usize)],
    finite: bool,
    v: &[f32],
    stride: usize,
    d: usize,
    outs: [*mut f32; GROUP],
) {
    let ends: [usize; GROUP] = std::array::from_fn(|u| group.get(u).map_or(0, |&(_, e)| e));
    let seen_by_all = if finite {
        group.iter().map(|&(_, e)| e).min().unwrap_or(0)
    } else {
        0
    };
    let last = ends.iter().copied().max().unwrap_or(0);
    assert!(last == 0 || v.len() >= (last - 1) * stride + d);
    match d {
        // Four queries of 4 registers, two of 8, or one of 16 stay in registers.
        64 => weighted_group::<4, 4>(probs, width, &ends, seen_by_all, 0, v, stride, &outs),
        128 => {
            for first in [0, 2] {
                weighted_group::<8, 2>(probs, width, &ends, seen_by_all, first, v, stride, &outs);
            }
        }
        _ => {
            for first in 0..GROUP {
                weighted_group::<16, 1>(probs, width, &ends, seen_by_all, first, v, stride, &outs);
            }
        }
    }
}

/// `(P_l + P_{l+8}) + (P_{l+4} + P_{l+12})` (the tree's second level) of each query, for
/// `scores16`.
///
/// # Safety
/// As `scores16`, with `l < 4`.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[inline(always)]
unsafe fn quad_sums<const C: usize>(
    qs: &[*const f32; GROUP],
    kt: *const f32,
    l: usize,
) -> [std::arch::x86_64::__m512; GROUP] {
    use std::arch::x86_64::*;
    let mut p = [[_mm512_setzero_ps(); 4]; GROUP];
    for c in 0..C {
        for (slot, lane) in [l, l + 8, l + 4, l + 12].into_iter().enumerate() {
            let keys = _mm512_loadu_ps(kt.add((c * 16 + lane) * 16));
            for u in 0..GROUP {
                let x = _mm512_set1_ps(*qs[u].add(c * 16 + lane));
                p[u][slot] = _mm512_fmadd_ps(x, keys, p[u][slot]);
            }
        }
    }
    std::array::from_fn(|u| {
        _mm512_add_ps(
            _mm512_add_ps(p[u][0], p[u][1]),
            _mm512_add_ps(p[u][2], p[u][3]),
        )
    })
}

/// `weighted_sums` for queries `first..first + G` of the group, `N` registers of values each;
/// keys below `unmasked` without the per-key test.
///
/// # Safety
/// The CPU has AVX-512F (per the cfg); `first + G <= GROUP`; `probs` holds the rows of these
/// queries, `width` >= their ends; `v` holds the rows below those ends, `16 * N` values each
/// at `stride`; `outs[u]` of each query with a non-zero end points to `16 * N` writable f32s.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn weighted_group<const N: usize, const G: usize>(
    probs: &[f32],
    width: usize,
    ends: &[usize; GROUP],
    unmasked: usize,
    first: usize,
    v: &[f32],
    stride: usize,
    outs: &[*mut f32; GROUP],
) {
    use std::arch::x86_64::*;
    let last = ends[first..first + G].iter().copied().max().unwrap_or(0);
    let mut acc = [[_mm512_setzero_ps(); N]; G];
    for j in 0..unmasked.min(last) {
        let row = v.as_ptr().add(j * stride);
        let values: [__m512; N] = std::array::from_fn(|c| _mm512_loadu_ps(row.add(c * 16)));
        for (g, sums) in acc.iter_mut().enumerate() {
            let w = _mm512_set1_ps(*probs.get_unchecked((first + g) * width + j));
            for (a, &x) in sums.iter_mut().zip(&values) {
                *a = _mm512_add_ps(*a, _mm512_mul_ps(w, x));
            }
        }
    }
    for j in unmasked.min(last)..last {
        let row = v.as_ptr().add(j * stride);
        let values: [__m512; N] = std::array::from_fn(|c| _mm512_loadu_ps(row.add(c * 16)));
        for (g, sums) in acc.iter_mut().enumerate() {
            let u = first + g;
            let p = *probs.get_unchecked(u * width + j);
            // Past its end, or a zero weight: this query's sums are left as they are.
            let keep: __mmask16 = if j < ends[u] && p != 0.0 { u16::MAX } else { 0 };
            let w = _mm512_set1_ps(p);
            for (a, &x) in sums.iter_mut().zip(&values) {
                *a = _mm512_mask_add_ps(*a, keep, *a, _mm512_mul_ps(w, x));
            }
        }
    }
    for (g, sums) in acc.iter().enumerate() {
        if ends[first + g] == 0 {
            continue; // an unused slot of the group
        }
        for (c, a) in sums.iter().enumerate() {
            _mm512_storeu_ps(outs[first + g].add(c * 16), *a);
        }
    }
}
