//! CPU kernels of our own. candle 0.11 has no SIMD path for Q4_1 and only AVX2 for f32
//! GEMM. Quantized products of the types `runs` reads take 16-bit activations
//! (`int16_gemm`), finer than llama.cpp's 8 bits, on every call: many rows through the
//! GEMM, few (decode) through `int16_gemm::CompactInt16`, the same bits, so that a row's
//! numbers do not depend on the rows beside it. llama.cpp's 8-bit one-row kernels (`q4_1`,
//! `q8_0`) remain for its arithmetic on request (`ETHOS_QUANT_GEMM=int8`). The attention
//! kernels and `rope` keep llama.cpp's f16 rounding of q, k, v and the probabilities.
/// `$tile::<R>(args)` with a tile's row count `$mr` as the const generic `R`: one arm per
/// count listed, and 1 for the rest (the GEMM kernels keep their accumulators in registers,
/// so each row count is its own function).
macro_rules! by_rows {
    ($mr:expr, [$($n:literal),*], $tile:ident $args:tt) => {
        match $mr {
            $($n => $tile::<$n> $args,)*
            _ => $tile::<1> $args,
        }
    };
    ($mr:expr, [$($n:literal),*], $tile:ident<_, $extra:ident> $args:tt) => {
        match $mr {
            $($n => $tile::<$n, $extra> $args,)*
            _ => $tile::<1, $extra> $args,
        }
    };
}
pub(crate) use by_rows;

/// Activations quantized per block of 32: `quantize_block(values, q)` writes all of `q` and
/// returns the block's scale and sum. Returns the scales, sums and values. Large inputs
/// (batched calls) run on candle's thread pool, the GEMM's, in items of 256 blocks; each block
/// is quantized on its own, so the bits do not depend on the split. The values are not
/// zero-filled first.
pub(crate) fn quantize_in_blocks<T: Send>(
    x: &[f32],
    quantize_block: impl Fn(&[f32], &mut [std::mem::MaybeUninit<T>]) -> (f32, f32) + Sync,
) -> (Vec<f32>, Vec<f32>, Vec<T>) {
    const QK: usize = 32;
    /// Blocks per work item.
    const TASK: usize = 256;
    assert!(x.len().is_multiple_of(QK));
    let nblocks = x.len() / QK;
    let mut d = vec![0f32; nblocks];
    let mut s = vec![0f32; nblocks];
    let mut qs = Vec::<T>::with_capacity(x.len());
    let out = QuantizedBlocks(d.as_mut_ptr(), s.as_mut_ptr(), qs.as_mut_ptr());
    let run = |blocks: std::ops::Range<usize>| {
        let out = &out;
        for b in blocks {
            // SAFETY: block b's scale, sum and values are written by one call alone, and lie
            // in bounds (b < nblocks; qs's capacity is x.len()).
            unsafe {
                let q = std::slice::from_raw_parts_mut(out.2.add(b * QK).cast(), QK);
                (*out.0.add(b), *out.1.add(b)) = quantize_block(&x[b * QK..(b + 1) * QK], q);
            }
        }
    };
    if x.len() >= 1 << 16 {
        candle_core::utils::barrier_pool().execute_chunked(nblocks.div_ceil(TASK), |items| {
            for t in items {
                run(t * TASK..((t + 1) * TASK).min(nblocks));
            }
        });
    } else {
        run(0..nblocks);
    }
    // SAFETY: quantize_block wrote all QK values of every block.
    unsafe { qs.set_len(x.len()) };
    (d, s, qs)
}

struct QuantizedBlocks<T>(*mut f32, *mut f32, *mut T);
// SAFETY: each block's entries are written by exactly one call of `quantize_in_blocks`' loop.
unsafe impl<T> Sync for QuantizedBlocks<T> {}

pub mod attention;
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
mod attention_avx2;
pub mod attention_products;
mod attention_tiled;
pub mod int16_gemm;
pub mod q4_1;
pub mod q4_1_gemm;
pub mod q8;
pub mod q8_0;
pub mod rms_norm;
pub mod rope;
pub mod runs;
pub mod sgemm;
pub mod vexp;

/// Rounds every value to the nearest f16 (ties to even), as candle's f32 -> f16 -> f32.
pub fn round_to_f16(xs: &mut [f32]) {
    #[cfg_attr(
        not(all(target_arch = "x86_64", target_feature = "avx512f")),
        allow(unused_mut)
    )]
    let mut rest: &mut [f32] = xs;
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    {
        use std::arch::x86_64::*;
        let whole = rest.len() / 16 * 16;
        let (body, tail) = rest.split_at_mut(whole);
        for c in body.chunks_exact_mut(16) {
            const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
            // SAFETY: `c` holds 16 floats; loads and stores are unaligned.
            unsafe {
                let p = _mm512_loadu_ps(c.as_ptr());
                let r = _mm512_cvtph_ps(_mm512_cvtps_ph::<NEAREST>(p));
                _mm512_storeu_ps(c.as_mut_ptr(), r);
            }
        }
        rest = tail;
    }
    for v in rest.iter_mut() {
        *v = half::f16::from_f32(*v).to_f32();
    }
}

/// The values of one tile of a product, rows `rows` by columns `cols`, lent to a finishing
/// step one row at a time.
pub struct TileValues<'a> {
    /// Element (i, j) of the product at `ptr + i * ldc + j`.
    ptr: *mut f32,
    ldc: usize,
    pub rows: std::ops::Range<usize>,
    pub cols: std::ops::Range<usize>,
    _values: std::marker::PhantomData<&'a mut f32>,
}

impl<'a> TileValues<'a> {
    /// # Safety
    /// Rows `rows`, columns `cols` of the product at `ptr` (row stride `ldc`) are written and
    /// belong to the caller alone for the value's lifetime.
    pub(crate) unsafe fn new(
        ptr: *mut f32,
        ldc: usize,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
    ) -> Self {
        Self {
            ptr,
            ldc,
            rows,
            cols,
            _values: std::marker::PhantomData,
        }
    }

    /// All of `values`, `(rows, ldc)`, as one tile.
    pub fn whole(values: &'a mut [f32], ldc: usize) -> Self {
        let rows = values.len() / ldc.max(1);
        // SAFETY: every row and column lies in `values`, borrowed for 'a.
        unsafe { Self::new(values.as_mut_ptr(), ldc, 0..rows, 0..ldc) }
    }

    /// Row `i`'s values of the tile's columns.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        assert!(self.rows.contains(&i));
        // SAFETY: within the tile (asserted), which belongs to this value (`new`); one row
        // at a time, through `&mut self`.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr.add(i * self.ldc + self.cols.start),
                self.cols.len(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + 4 * 104_729) % 2003) as f32 / 1001.5 - 1.0) * 9.3)
            .collect()
    }

    #[test]
    fn rounding_matches_half_on_ties_and_subnormals() {
        // The special values first, where the vector path takes them.
        let mut xs = vec![
            1.0 + 1.0 / 2048.0,
            1.0 + 3.0 / 2048.0,
            65520.0,
            -3.0e-8,
            0.0,
            -0.0,
        ];
        xs.extend(values(100).iter().map(|v| v * 1e-5));
        let want: Vec<f32> = xs
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect();
        round_to_f16(&mut xs);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&xs), bits(&want));
    }
}
