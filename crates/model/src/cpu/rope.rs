//! Queries, keys and values from the projection's `(b, t, heads, d)` rows to the
//! `(b, heads, t, d)` layout attention reads, rotated (rotary embedding) and rounded to f16
//! (llama.cpp's numerics) in the same pass. On the CPU this replaces a transposing copy,
//! candle's rotary op (which runs on rayon's threads, besides the pool ours spin on) and two
//! dtype conversions per tensor, with the same arithmetic: `x0 * cos - x1 * sin` and
//! `x0 * sin + x1 * cos`, each product rounded, as candle computes it.

/// Which dimensions of a head rotate together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pairs {
    /// `(2i, 2i + 1)`: candle's `rope_i`.
    Adjacent,
    /// `(i, i + d/2)`: candle's `rope` (HF's `rotate_half`).
    Halves,
}

/// Cos/sin tables of one step: `(t, d/2)` for every row, or `(b, t, d/2)` per row.
pub struct Rotation<'a> {
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    pub per_row: bool,
    pub pairs: Pairs,
}

/// Source layout: `batch` x `t` rows of `heads` heads of `d` values, row `(bi, ti)` starting
/// at `x[(bi * t + ti) * row_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct Rows {
    pub batch: usize,
    pub t: usize,
    pub heads: usize,
    pub d: usize,
    pub row_stride: usize,
}

/// Writes `out` `(b, heads, t, d)` from `x` (see `Rows`), rotated if `rotation` is given and
/// rounded to f16 if asked (every element is written: `out` need not be initialized); heads
/// on candle's pool when there is enough work.
pub fn heads_first(
    x: &[f32],
    rows: Rows,
    rotation: Option<&Rotation>,
    round_f16: bool,
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    let Rows {
        batch,
        t,
        heads,
        d,
        row_stride,
    } = rows;
    let half = d / 2;
    assert!(d.is_multiple_of(2) && out.len() >= batch * heads * t * d);
    assert!(batch * t == 0 || x.len() >= (batch * t - 1) * row_stride + heads * d);
    if let Some(r) = rotation {
        let table_rows = if r.per_row { batch * t } else { t };
        assert!(r.cos.len() >= table_rows * half && r.sin.len() >= table_rows * half);
    }
    let dst = SharedOut(out.as_mut_ptr().cast());
    let work = |items: std::ops::Range<usize>| {
        let dst = &dst;
        for item in items {
            let (bi, head) = (item / heads, item % heads);
            for ti in 0..t {
                let src = &x[(bi * t + ti) * row_stride + head * d..][..d];
                // SAFETY: in bounds (asserted above); item (bi, head) alone writes this block.
                let o = super::attention::zeroed(unsafe {
                    std::slice::from_raw_parts_mut(
                        dst.0.add(((bi * heads + head) * t + ti) * d).cast(),
                        d,
                    )
                });
                match rotation {
                    None => o.copy_from_slice(src),
                    Some(r) => {
                        let at = if r.per_row { bi * t + ti } else { ti } * half;
                        let (cos, sin) = (&r.cos[at..at + half], &r.sin[at..at + half]);
                        rotate(src, cos, sin, r.pairs, o);
                    }
                }
                if round_f16 {
                    super::round_to_f16(o);
                }
            }
        }
    };
    let items = batch * heads;
    if items * t * d < 1 << 15 {
        work(0..items);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(items, work);
    }
}

fn rotate(x: &[f32], cos: &[f32], sin: &[f32], pairs: Pairs, out: &mut [f32]) {
    let half = x.len() / 2;
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    {
        let whole_vectors = match pairs {
            Pairs::Adjacent => x.len().is_multiple_of(16),
            Pairs::Halves => half.is_multiple_of(16),
        };
        if whole_vectors && cos.len() >= half && sin.len() >= half && out.len() >= x.len() {
            // SAFETY: every access is below x.len() (or half, for the tables), checked above.
            unsafe { rotate_avx512(x, cos, sin, pairs, out) };
            return;
        }
    }
    for i in 0..half {
        let (a, b) = match pairs {
            Pairs::Adjacent => (2 * i, 2 * i + 1),
            Pairs::Halves => (i, i + half),
        };
        out[a] = x[a] * cos[i] - x[b] * sin[i];
        out[b] = x[a] * sin[i] + x[b] * cos[i];
    }
}

/// `rotate` 16 values at a time, with the same products and sums: `x0 * c - x1 * s` as
/// `x0 * c + x1 * (-s)` (negation is exact), `x0 * s + x1 * c` with its terms swapped.
///
/// # Safety
/// The CPU has AVX-512F (a build target feature, per the cfg); whole vectors: `x.len()`
/// (`Adjacent`) or `x.len() / 2` (`Halves`) a multiple of 16; `cos` and `sin` hold at least
/// `x.len() / 2` values and `out` at least `x.len()`.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
unsafe fn rotate_avx512(x: &[f32], cos: &[f32], sin: &[f32], pairs: Pairs, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let half = x.len() / 2;
    let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
    match pairs {
        Pairs::Adjacent => {
            // Table entry i to lanes 2i and 2i + 1; the sine negated in the even lanes.
            let dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
            let even_sign = _mm512_castsi512_ps(_mm512_setr_epi32(
                i32::MIN,
                0,
                i32::MIN,
                0,
                i32::MIN,
                0,
                i32::MIN,
                0,
                i32::MIN,
                0,
                i32::MIN,
                0,
                i32::MIN,
                0,
                i32::MIN,
                0,
            ));
            for c in (0..x.len()).step_by(16) {
                let v = _mm512_loadu_ps(xp.add(c));
                let table = |t: &[f32]| {
                    let eight = _mm512_castps256_ps512(_mm256_loadu_ps(t.as_ptr().add(c / 2)));
                    _mm512_permutexvar_ps(dup, eight)
                };
                let (cs, sn) = (table(cos), _mm512_xor_ps(table(sin), even_sign));
                let swapped = _mm512_permute_ps::<0xB1>(v);
                let r = _mm512_add_ps(_mm512_mul_ps(v, cs), _mm512_mul_ps(swapped, sn));
                _mm512_storeu_ps(op.add(c), r);
            }
        }
        Pairs::Halves => {
            for i in (0..half).step_by(16) {
                let (a, b) = (
                    _mm512_loadu_ps(xp.add(i)),
                    _mm512_loadu_ps(xp.add(i + half)),
                );
                let (c, s) = (
                    _mm512_loadu_ps(cos.as_ptr().add(i)),
                    _mm512_loadu_ps(sin.as_ptr().add(i)),
                );
                let lo = _mm512_sub_ps(_mm512_mul_ps(a, c), _mm512_mul_ps(b, s));
                let hi = _mm512_add_ps(_mm512_mul_ps(a, s), _mm512_mul_ps(b, c));
                _mm512_storeu_ps(op.add(i), lo);
                _mm512_storeu_ps(op.add(i + half), hi);
            }
        }
    }
}

struct SharedOut(*mut f32);
// SAFETY: each work item writes only the output block of its own (row, head).
unsafe impl Sync for SharedOut {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::attention::as_uninit;
    use candle_core::{DType, Device, Tensor};

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0) * 9.3)
            .collect()
    }

    /// Against candle's ops on the transposed, contiguous tensor (the path this replaces):
    /// the same bits, for both pairings, shared and per-row tables, a strided source (a
    /// slice of a wider fused projection), with and without f16 rounding.
    #[test]
    fn matches_candles_rotary_ops_bit_for_bit() {
        // 16: vector path for adjacent pairs, scalar for halves; 64: vector for both.
        for d in [16, 64] {
            matches_candle_with_head_size(d);
        }
    }

    fn matches_candle_with_head_size(d: usize) {
        let (b, t, heads, wide) = (3, 5, 4, 7 * d);
        let dev = Device::Cpu;
        let fused = values(b * t * wide, 1);
        let x = Tensor::from_vec(fused.clone(), (b, t, wide), &dev).unwrap();
        // The heads sit at columns d.. of each fused row.
        let x = x.narrow(2, d, heads * d).unwrap().reshape((b, t, heads, d));
        let x = x.unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
        for per_row in [false, true] {
            let table_rows = if per_row { b * t } else { t };
            let (cos, sin) = (values(table_rows * d / 2, 2), values(table_rows * d / 2, 3));
            let shape: &[usize] = if per_row { &[b, t, d / 2] } else { &[t, d / 2] };
            let cos_t = Tensor::from_vec(cos.clone(), shape, &dev).unwrap();
            let sin_t = Tensor::from_vec(sin.clone(), shape, &dev).unwrap();
            for pairs in [Pairs::Adjacent, Pairs::Halves] {
                for round in [false, true] {
                    let mut want = match pairs {
                        Pairs::Adjacent => candle_nn::rotary_emb::rope_i(&x, &cos_t, &sin_t),
                        Pairs::Halves => candle_nn::rotary_emb::rope(&x, &cos_t, &sin_t),
                    }
                    .unwrap();
                    if round {
                        want = want
                            .to_dtype(DType::F16)
                            .unwrap()
                            .to_dtype(DType::F32)
                            .unwrap();
                    }
                    let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
                    let rows = Rows {
                        batch: b,
                        t,
                        heads,
                        d,
                        row_stride: wide,
                    };
                    let rotation = Rotation {
                        cos: &cos,
                        sin: &sin,
                        per_row,
                        pairs,
                    };
                    let mut got = vec![f32::NAN; want.len()];
                    heads_first(
                        &fused[d..],
                        rows,
                        Some(&rotation),
                        round,
                        as_uninit(&mut got),
                    );
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let first_diff = bits(&got)
                        .iter()
                        .zip(bits(&want))
                        .position(|(a, b)| *a != b);
                    assert_eq!(
                        first_diff, None,
                        "d {d} {pairs:?} per_row {per_row} f16 {round}"
                    );
                }
            }
        }
        // No rotation: the transposing copy alone.
        let mut got = vec![f32::NAN; b * heads * t * d];
        let rows = Rows {
            batch: b,
            t,
            heads,
            d,
            row_stride: wide,
        };
        heads_first(&fused[d..], rows, None, false, as_uninit(&mut got));
        assert_eq!(got, x.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
}
