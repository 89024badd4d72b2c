//! f32 matrix product `C = A · Wᵀ` with AVX-512 for batched prefill and scoring.
//!
//! candle's CPU matmul (the `gemm` crate) has only AVX2 micro-kernels on stable Rust; on
//! CPUs with two 512-bit FMA units that leaves half the arithmetic unused, which is why
//! PyTorch prefilled twice as fast per token. Weights are packed once into panels of 32
//! output columns (`[k][32]` each, zero-padded), and an 8 x 32 register tile runs over the
//! whole depth; threads take (row chunk, panel group) items from candle's spinning pool.

pub const NR: usize = 32;
const MR: usize = 8;
/// Rows of A processed against every panel before moving on (keeps A in L2).
const M_CHUNK: usize = 96;
/// How many depth steps ahead the panel is prefetched.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
const PREFETCH: usize = 8;

/// Whether this build has the AVX-512 kernel.
pub const AVAILABLE: bool = cfg!(all(target_arch = "x86_64", target_feature = "avx512f"));

/// Weights `(n, k)` packed into `ceil(n / 32)` panels of `k x 32`.
pub struct PackedWeights {
    pub n: usize,
    pub k: usize,
    data: Vec<f32>,
}

impl PackedWeights {
    /// Packs a row-major `(n, k)` matrix.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k);
        Self::pack_rows(w, n, k, k)
    }

    /// Packs an `(n, k)` matrix whose row `j` starts at `w[j * row_stride]` (attention's
    /// keys, read from the cache in place).
    pub fn pack_rows(w: &[f32], n: usize, k: usize, row_stride: usize) -> Self {
        assert!(n == 0 || w.len() >= (n - 1) * row_stride + k);
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; panels * k * NR];
        for (p, panel) in data.chunks_mut(k * NR).enumerate() {
            for j in 0..NR.min(n - p * NR) {
                let row = &w[(p * NR + j) * row_stride..][..k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * NR + j] = v;
                }
            }
        }
        Self { n, k, data }
    }

    /// Packs the transpose of a `(k, n)` matrix whose row `r` starts at `m[r * row_stride]`,
    /// i.e. `W = Mᵀ` (`n x k`), without forming it: attention's values as the weights of
    /// the probability-times-values product.
    pub fn pack_transposed(m: &[f32], k: usize, n: usize, row_stride: usize) -> Self {
        assert!(k == 0 || m.len() >= (k - 1) * row_stride + n);
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; panels * k * NR];
        for (p, panel) in data.chunks_mut(k * NR).enumerate() {
            let cols = NR.min(n - p * NR);
            for kk in 0..k {
                panel[kk * NR..kk * NR + cols]
                    .copy_from_slice(&m[kk * row_stride + p * NR..][..cols]);
            }
        }
        Self { n, k, data }
    }
}

struct SharedOut(*mut f32);
// SAFETY: every (row, column) of the output is written by exactly one work item.
unsafe impl Sync for SharedOut {}

/// Runs `tile(panel, first_row, rows, out)` over every tile of an `(m, panels)` product: rows
/// in chunks of `M_CHUNK` (kept in L2 against every panel), tiles of at most `mr` rows, work
/// items (row chunk, group of panels) spread over candle's spinning pool unless `work` (the
/// multiply-adds) is too small to be worth waking it. Each tile writes only its own rows of
/// its own panel's columns of `out`; together the tiles cover rows `0..m` of every panel, so
/// tiles that write all their columns write all of `out` (`int16_gemm` relies on this).
/// The caller has checked that `out` holds the `(m, n)` product.
pub(crate) fn for_each_tile(
    m: usize,
    panels: usize,
    mr: usize,
    work: usize,
    out: *mut f32,
    tile: impl Fn(usize, usize, usize, *mut f32) + Sync,
) {
    let chunks = m.div_ceil(M_CHUNK);
    // Panel groups small enough that two threads share every chunk.
    let group = panels.div_ceil(8).max(1);
    let groups = panels.div_ceil(group);
    let dst = SharedOut(out);
    let items = |range: std::ops::Range<usize>| {
        let dst = &dst;
        for item in range {
            let (chunk, g) = (item / groups, item % groups);
            let rows = chunk * M_CHUNK..((chunk + 1) * M_CHUNK).min(m);
            for p in g * group..((g + 1) * group).min(panels) {
                let mut r = rows.start;
                while r < rows.end {
                    let n = mr.min(rows.end - r);
                    tile(p, r, n, dst.0);
                    r += n;
                }
            }
        }
    };
    if work < 1 << 18 {
        items(0..chunks * groups);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(chunks * groups, items);
    }
}

/// `out (m, n) = a (m, k) · wᵀ`.
pub fn matmul(a: &[f32], m: usize, w: &PackedWeights, out: &mut [f32]) {
    matmul_with::<false>(a, m, w, out, m * w.n * w.k)
}

/// `out += a · wᵀ`: each product summed from zero, then added to `out` once (the bits of
/// `matmul` into a buffer followed by an add, without the buffer).
pub fn matmul_add(a: &[f32], m: usize, w: &PackedWeights, out: &mut [f32]) {
    matmul_with::<true>(a, m, w, out, m * w.n * w.k)
}

/// `matmul` on the calling thread alone (for callers already running on candle's pool).
pub fn matmul_on_this_thread(a: &[f32], m: usize, w: &PackedWeights, out: &mut [f32]) {
    matmul_with::<false>(a, m, w, out, 0)
}

/// `work` below `for_each_tile`'s threshold keeps the product on this thread; `ADD` adds the
/// products to `out` instead of storing them.
fn matmul_with<const ADD: bool>(
    a: &[f32],
    m: usize,
    w: &PackedWeights,
    out: &mut [f32],
    work: usize,
) {
    let (n, k) = (w.n, w.k);
    assert!(a.len() >= m * k && out.len() >= m * n);
    for_each_tile(
        m,
        n.div_ceil(NR),
        MR,
        work,
        out.as_mut_ptr(),
        |p, r, mr, c| {
            let panel = &w.data[p * k * NR..(p + 1) * k * NR];
            // SAFETY: rows r..r+mr and columns p*NR..p*NR+cols are in bounds (checked above)
            // and belong to this tile alone.
            unsafe {
                tile::<ADD>(
                    &a[r * k..],
                    k,
                    panel,
                    c.add(r * n + p * NR),
                    n,
                    mr,
                    NR.min(n - p * NR),
                )
            };
        },
    );
}

/// One `mr x cols` tile (mr <= 8, cols <= 32) of the output over the whole depth, stored
/// (or, with `ADD`, added to the output).
///
/// # Safety
/// `1 <= mr <= MR`, `cols <= NR`; `a` holds `mr` rows `lda` apart, each of the depth
/// (`panel.len() / NR` values); `c` points to `mr` rows `ldc` apart of `cols` writable f32s
/// that no one else accesses meanwhile; the CPU has the target features this build targets.
#[inline]
unsafe fn tile<const ADD: bool>(
    a: &[f32],
    lda: usize,
    panel: &[f32],
    c: *mut f32,
    ldc: usize,
    mr: usize,
    cols: usize,
) {
    super::by_rows!(
        mr,
        [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2],
        tile_mr < _,
        ADD > (a, lda, panel, c, ldc, cols)
    )
}

/// `tile` for `R` rows: two 512-bit accumulators per row.
///
/// # Safety
/// `tile`'s, with `mr = R` (the loads of `a` are unchecked); the CPU has AVX-512F (a build
/// target feature, per the cfg).
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[inline(always)]
unsafe fn tile_mr<const R: usize, const ADD: bool>(
    a: &[f32],
    lda: usize,
    panel: &[f32],
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    let k = panel.len() / NR;
    debug_assert!(a.len() >= (R - 1) * lda + k);
    let (ap, bp) = (a.as_ptr(), panel.as_ptr());
    let mut lo = [_mm512_setzero_ps(); R];
    let mut hi = [_mm512_setzero_ps(); R];
    for kk in 0..k {
        // The panel streams from L2; fetch a few steps ahead so the loads do not stall.
        _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add((kk + PREFETCH) * NR) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add((kk + PREFETCH) * NR + 16) as *const i8);
        let b0 = _mm512_loadu_ps(bp.add(kk * NR));
        let b1 = _mm512_loadu_ps(bp.add(kk * NR + 16));
        for r in 0..R {
            let av = _mm512_set1_ps(*ap.add(r * lda + kk));
            lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
        }
    }
    let m_lo: __mmask16 = if cols >= 16 {
        0xFFFF
    } else {
        ((1u32 << cols) - 1) as u16
    };
    let m_hi: __mmask16 = if cols >= 32 {
        0xFFFF
    } else if cols <= 16 {
        0
    } else {
        ((1u32 << (cols - 16)) - 1) as u16
    };
    for r in 0..R {
        let (c_lo, c_hi) = (c.add(r * ldc), c.add(r * ldc + 16));
        if ADD {
            lo[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m_lo, c_lo), lo[r]);
            hi[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m_hi, c_hi), hi[r]);
        }
        _mm512_mask_storeu_ps(c_lo, m_lo, lo[r]);
        _mm512_mask_storeu_ps(c_hi, m_hi, hi[r]);
    }
}

/// Portable fallback (only compiled where AVX-512 is absent; callers check `AVAILABLE`).
///
/// # Safety
/// `c` points to `R` rows `ldc` apart of `cols` writable f32s that no one else accesses
/// meanwhile (the reads of `a` and `panel` are checked).
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
unsafe fn tile_mr<const R: usize, const ADD: bool>(
    a: &[f32],
    lda: usize,
    panel: &[f32],
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let k = panel.len() / NR;
    for r in 0..R {
        for j in 0..cols {
            let s: f32 = (0..k).map(|kk| a[r * lda + kk] * panel[kk * NR + j]).sum();
            *c.add(r * ldc + j) = if ADD { *c.add(r * ldc + j) + s } else { s };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product_on_ragged_shapes() {
        for &(m, n, k) in &[
            (1, 5, 3),
            (8, 32, 16),
            (19, 70, 33),
            (100, 96, 64),
            (200, 130, 576),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
                .collect();
            let packed = PackedWeights::pack(&w, n, k);
            let mut out = vec![f32::NAN; m * n];
            matmul(&a, m, &packed, &mut out);
            // The same weights given as their transpose (k, n) with padded rows.
            let stride = n + 3;
            let mut wt = vec![f32::NAN; k * stride];
            for j in 0..n {
                for kk in 0..k {
                    wt[kk * stride + j] = w[j * k + kk];
                }
            }
            let from_t = PackedWeights::pack_transposed(&wt, k, n, stride);
            let mut out_t = vec![f32::NAN; m * n];
            matmul_on_this_thread(&a, m, &from_t, &mut out_t);
            assert_eq!(out, out_t, "({m},{n},{k}) transposed packing");
            // Added to what is there: the product's bits, then one add per value.
            let base: Vec<f32> = (0..m * n)
                .map(|i| ((i * 29 % 89) as f32 - 44.0) / 9.0)
                .collect();
            let mut added = base.clone();
            matmul_add(&a, m, &packed, &mut added);
            for (e, ((g, b), p)) in added.iter().zip(&base).zip(&out).enumerate() {
                assert_eq!(g.to_bits(), (b + p).to_bits(), "({m},{n},{k}) add [{e}]");
            }
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|kk| a[i * k + kk] * w[j * k + kk]).sum();
                    assert!(
                        (out[i * n + j] - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "({m},{n},{k}) [{i},{j}]"
                    );
                }
            }
        }
    }
}
