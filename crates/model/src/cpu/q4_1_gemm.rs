//! Q4_1 weights times 8-bit activations for many rows at once (batched prefill and scoring):
//! integer multiply-adds with AVX-512 VNNI (four times the products per instruction of the f32
//! GEMM) or AVX2 (`vpmaddubsw`), on weights kept at one byte each instead of four.
//!
//! The arithmetic is the one-row kernel's (`q4_1::row_dot`, llama.cpp's): per block of 32,
//! `d_w * d_x * sum(q_w * q_x) + m_w * s_x`, with activations quantized by `Q8Rows`. Opt-in
//! (`ETHOS_QUANT_GEMM=int8`, see `ops::linear`): the rounding of 8-bit activations turns tiny
//! differences in attention's order of additions into differences of up to 0.2 in a
//! log-prob after 30 layers, more than the f32 GEMM on dequantized weights shows.
//!
//! Layout: weight rows in panels of 16 (one 512-bit lane per row); per panel and block the 16
//! scales, the 16 minimums, then 8 groups of `[16 rows][4 values]` bytes, the operand order
//! of `vpdpbusd` (4 unsigned weights times 4 signed activations per lane).

use super::q4_1::BLOCK_BYTES;
use super::q8::{Q8Rows, QK};
use super::sgemm::for_each_tile;
use half::f16;

/// Whether this build has a SIMD kernel (AVX-512 VNNI or AVX2).
pub const AVAILABLE: bool = cfg!(all(target_arch = "x86_64", target_feature = "avx2"));

const LANES: usize = 16;
/// Values per block as bytes: 8 groups of 16 rows x 4 values.
const BLOCK_Q: usize = QK * LANES;
/// Activation rows per register tile.
const MR: usize = 6;

pub struct PackedQ4_1 {
    pub n: usize,
    pub k: usize,
    /// Per panel and block: 16 scales then 16 minimums.
    scales: Vec<f32>,
    /// Per panel and block: `BLOCK_Q` bytes.
    q: Vec<u8>,
}

impl PackedQ4_1 {
    /// Repacks `n` rows of `k` Q4_1 values (GGUF blocks, row-major).
    pub fn pack(w: &[u8], n: usize, k: usize) -> Self {
        let nb = k / QK;
        assert!(k.is_multiple_of(QK) && w.len() >= n * nb * BLOCK_BYTES);
        let panels = n.div_ceil(LANES);
        let mut scales = vec![0f32; panels * nb * 2 * LANES];
        let mut q = vec![0u8; panels * nb * BLOCK_Q];
        for j in 0..n {
            let (p, lane) = (j / LANES, j % LANES);
            for b in 0..nb {
                let blk = &w[(j * nb + b) * BLOCK_BYTES..(j * nb + b + 1) * BLOCK_BYTES];
                let s = (p * nb + b) * 2 * LANES;
                scales[s + lane] = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                scales[s + LANES + lane] = f16::from_le_bytes([blk[2], blk[3]]).to_f32();
                let qb = &mut q[(p * nb + b) * BLOCK_Q..(p * nb + b + 1) * BLOCK_Q];
                for e in 0..QK {
                    let byte = blk[4 + e % 16];
                    let v = if e < 16 { byte & 0x0F } else { byte >> 4 };
                    qb[(e / 4) * 64 + lane * 4 + e % 4] = v;
                }
            }
        }
        Self { n, k, scales, q }
    }
}

/// `out (m, n) = x · wᵀ` for activations quantized by `Q8Rows` (`x.k == w.k`).
pub fn matmul(x: &Q8Rows, w: &PackedQ4_1, out: &mut [f32]) {
    let (m, n) = (x.rows(), w.n);
    assert!(x.k == w.k && out.len() >= m * n);
    for_each_tile(
        m,
        n.div_ceil(LANES),
        MR,
        m * n * x.k,
        out.as_mut_ptr(),
        |p, r, mr, c| {
            // SAFETY: rows r..r+mr and the panel's columns are in bounds (checked above) and
            // belong to this tile alone.
            unsafe { tile(x, w, p, r, mr, c, n) };
        },
    );
}

/// Rows `r..r + mr` of panel `p`'s columns (`p * 16..`, below `w.n`) of the row-major output
/// at `c` (row stride `ldc`), by the best tile this build has.
///
/// # Safety
/// `x.k == w.k`; rows `r..r + mr` of `x` exist, `1 <= mr <= MR`, `p` is a panel of `w`; `c`
/// holds those output elements, writable and accessed by no one else meanwhile; the CPU has
/// the target features this build was compiled for.
unsafe fn tile(x: &Q8Rows, w: &PackedQ4_1, p: usize, r: usize, mr: usize, c: *mut f32, ldc: usize) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512vnni"
    ))]
    super::by_rows!(mr, [6, 5, 4, 3, 2], tile_vnni(x, w, p, r, c, ldc));
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        not(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vnni"
        ))
    ))]
    super::by_rows!(mr, [6, 5, 4, 3, 2], tile_avx2(x, w, p, r, c, ldc));
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
    super::by_rows!(mr, [6, 5, 4, 3, 2], tile_portable(x, w, p, r, c, ldc));
}

/// The panel's 16 columns for `R` rows in 512-bit registers, with `vpdpbusd`.
///
/// # Safety
/// `tile`'s, for rows `r0..r0 + R`; the CPU has AVX-512F/BW/VNNI (build target features, per
/// the cfg).
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512bw",
    target_feature = "avx512vnni"
))]
#[inline(always)]
unsafe fn tile_vnni<const R: usize>(
    x: &Q8Rows,
    w: &PackedQ4_1,
    p: usize,
    r0: usize,
    c: *mut f32,
    ldc: usize,
) {
    use std::arch::x86_64::*;
    let nb = w.k / QK;
    let qp = w.q.as_ptr().add(p * nb * BLOCK_Q);
    let sp = w.scales.as_ptr().add(p * nb * 2 * LANES);
    let xq = x.qs.as_ptr();
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        let mut isum = [_mm512_setzero_si512(); R];
        let qb = qp.add(b * BLOCK_Q);
        for g in 0..8 {
            let wv = _mm512_loadu_si512(qb.add(g * 64) as *const _);
            for (i, s) in isum.iter_mut().enumerate() {
                let a = (xq.add((r0 + i) * w.k + b * QK + g * 4) as *const i32).read_unaligned();
                *s = _mm512_dpbusd_epi32(*s, wv, _mm512_set1_epi32(a));
            }
        }
        let dw = _mm512_loadu_ps(sp.add(b * 2 * LANES));
        let mw = _mm512_loadu_ps(sp.add(b * 2 * LANES + LANES));
        for i in 0..R {
            let xb = (r0 + i) * nb + b;
            let scale = _mm512_mul_ps(dw, _mm512_set1_ps(*x.d.get_unchecked(xb)));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[i]), scale, acc[i]);
            acc[i] = _mm512_fmadd_ps(mw, _mm512_set1_ps(*x.s.get_unchecked(xb)), acc[i]);
        }
    }
    let cols = LANES.min(w.n - p * LANES);
    let mask: __mmask16 = if cols >= LANES {
        0xFFFF
    } else {
        ((1u32 << cols) - 1) as u16
    };
    for (i, a) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(c.add((r0 + i) * ldc + p * LANES), mask, *a);
    }
}

/// The VNNI tile on AVX2, the panel's 16 weight rows as two registers of 8. `vpmaddubsw`
/// makes each 16-bit lane's two products (at most 2 x 15 x 127 = 3,810, so no saturation),
/// `vpaddw` adds a block's 8 groups in 16 bits (at most 30,480: exact), and one `vpmaddwd`
/// by ones widens the lane pairs to the 32-bit sums `vpdpbusd` makes. The float steps per
/// block are the VNNI tile's, lane for lane, so the same bits. Both halves share each
/// broadcast activation: taking one half at a time ran at 1.27 times the 16-bit GEMM's
/// speed instead of 1.40 (`cargo bench --bench gemm`), and 4 rows instead of 6 at 1.0.
///
/// # Safety
/// `tile`'s, for rows `r0..r0 + R`; the CPU has AVX2 and FMA (build target features, per the
/// cfg).
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
#[cfg_attr(target_feature = "avx512vnni", allow(dead_code))]
#[inline(always)]
unsafe fn tile_avx2<const R: usize>(
    x: &Q8Rows,
    w: &PackedQ4_1,
    p: usize,
    r0: usize,
    c: *mut f32,
    ldc: usize,
) {
    use std::arch::x86_64::*;
    const V: usize = 8;
    let nb = w.k / QK;
    let qp = w.q.as_ptr().add(p * nb * BLOCK_Q);
    let sp = w.scales.as_ptr().add(p * nb * 2 * LANES);
    let xq = x.qs.as_ptr();
    let ones = _mm256_set1_epi16(1);
    let cols = LANES.min(w.n - p * LANES);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for b in 0..nb {
        let mut isum = [[_mm256_setzero_si256(); 2]; R];
        let qb = qp.add(b * BLOCK_Q);
        for g in 0..8 {
            let w0 = _mm256_loadu_si256(qb.add(g * 64) as *const _);
            let w1 = _mm256_loadu_si256(qb.add(g * 64 + 32) as *const _);
            for (i, s) in isum.iter_mut().enumerate() {
                let at = xq.add((r0 + i) * w.k + b * QK + g * 4) as *const i32;
                let a = _mm256_set1_epi32(at.read_unaligned());
                s[0] = _mm256_add_epi16(s[0], _mm256_maddubs_epi16(w0, a));
                s[1] = _mm256_add_epi16(s[1], _mm256_maddubs_epi16(w1, a));
            }
        }
        let sb = sp.add(b * 2 * LANES);
        let dw = [_mm256_loadu_ps(sb), _mm256_loadu_ps(sb.add(V))];
        let mw = [
            _mm256_loadu_ps(sb.add(LANES)),
            _mm256_loadu_ps(sb.add(LANES + V)),
        ];
        for i in 0..R {
            let xb = (r0 + i) * nb + b;
            let dx = _mm256_set1_ps(*x.d.get_unchecked(xb));
            let sx = _mm256_set1_ps(*x.s.get_unchecked(xb));
            for j in 0..2 {
                let scale = _mm256_mul_ps(dw[j], dx);
                let total = _mm256_madd_epi16(isum[i][j], ones);
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), scale, acc[i][j]);
                acc[i][j] = _mm256_fmadd_ps(mw[j], sx, acc[i][j]);
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        let mut lanes = [0f32; LANES];
        _mm256_storeu_ps(lanes.as_mut_ptr(), a[0]);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(V), a[1]);
        let row = c.add((r0 + i) * ldc + p * LANES);
        std::ptr::copy_nonoverlapping(lanes.as_ptr(), row, cols);
    }
}

/// Portable form: the same integer sums and float steps per lane (the reference the SIMD
/// tiles are tested against).
///
/// # Safety
/// `tile`'s, for rows `r0..r0 + R` (only the writes through `c` go unchecked here).
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "avx2", not(test)),
    allow(dead_code)
)]
unsafe fn tile_portable<const R: usize>(
    x: &Q8Rows,
    w: &PackedQ4_1,
    p: usize,
    r0: usize,
    c: *mut f32,
    ldc: usize,
) {
    let nb = w.k / QK;
    for lane in 0..LANES.min(w.n - p * LANES) {
        for i in 0..R {
            let mut acc = 0f32;
            for b in 0..nb {
                let s = (p * nb + b) * 2 * LANES;
                let qb = &w.q[(p * nb + b) * BLOCK_Q..];
                let xb = (r0 + i) * nb + b;
                let mut isum = 0i32;
                for e in 0..QK {
                    let v = qb[(e / 4) * 64 + lane * 4 + e % 4] as i32;
                    isum += v * x.qs[(r0 + i) * w.k + b * QK + e] as i32;
                }
                let scale = w.scales[s + lane] * x.d[xb];
                acc = (isum as f32).mul_add(scale, acc);
                acc = w.scales[s + LANES + lane].mul_add(x.s[xb], acc);
            }
            *c.add((r0 + i) * ldc + p * LANES + lane) = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::q4_1::{row_dot_scalar, sample_rows};

    /// A tile, `(x, w, p, r0, c, ldc)`: rows `r0..r0 + R` of panel `p` of the output at `c`.
    ///
    /// # Safety
    /// The caller guarantees `tile`'s contract for those rows: `x.k == w.k`, the rows exist in
    /// `x`, `p` is a panel of `w`, and `c` holds the tile's elements (row stride `ldc`),
    /// writable and accessed by no one else meanwhile; the build's CPU features.
    type Tile = unsafe fn(&Q8Rows, &PackedQ4_1, usize, usize, *mut f32, usize);

    /// Every tile this build has, by name.
    fn tiles() -> Vec<(&'static str, Tile)> {
        #[allow(unused_mut)]
        let mut t: Vec<(&'static str, Tile)> = vec![("portable", tile_portable::<3>)];
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
        t.push(("avx2", tile_avx2::<3>));
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vnni"
        ))]
        t.push(("vnni", tile_vnni::<3>));
        t
    }

    #[test]
    fn tiles_give_the_bits_of_the_portable_tile() {
        // Activations at both ends of the 8-bit range (-127, 127) and weights at 15, the
        // largest 16-bit sums the AVX2 tile makes; ragged panels (n = 21 and 5 columns).
        let names: Vec<_> = tiles().iter().map(|t| t.0).collect();
        println!("tiles in this build: {names:?}");
        for &(n, k) in &[(21, 96), (5, 64), (32, 576)] {
            let mut w = sample_rows(n, k);
            let row_bytes = k / QK * BLOCK_BYTES;
            for blk in w[..row_bytes].chunks_exact_mut(BLOCK_BYTES) {
                blk[4..].fill(0xFF);
            }
            let m = 3;
            let mut x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919 % 211) as f32 - 105.0) / 13.0)
                .collect();
            x[..k].fill(2.5);
            x[k..2 * k].fill(-2.5);
            let xq = Q8Rows::quantize(&x, k);
            assert!(xq.qs[..k].iter().all(|&q| q == 127));
            assert!(xq.qs[k..2 * k].iter().all(|&q| q == -127));
            let packed = PackedQ4_1::pack(&w, n, k);
            let run = |t: Tile| {
                let mut out = vec![f32::NAN; m * n];
                for p in 0..n.div_ceil(LANES) {
                    // SAFETY: rows 0..3 and panel p are in bounds of `out` (m x n).
                    unsafe { t(&xq, &packed, p, 0, out.as_mut_ptr(), n) };
                }
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            let want = run(tile_portable::<3>);
            for (name, t) in tiles() {
                assert_eq!(run(t), want, "tile {name} at n={n} k={k}");
            }
        }
    }

    #[test]
    fn matches_the_one_row_kernel_on_ragged_shapes() {
        for &(m, n, k) in &[(1, 5, 32), (7, 16, 64), (13, 40, 96), (100, 70, 576)] {
            let w = sample_rows(n, k);
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let xq = Q8Rows::quantize(&x, k);
            let packed = PackedQ4_1::pack(&w, n, k);
            let mut out = vec![f32::NAN; m * n];
            matmul(&xq, &packed, &mut out);
            let row_bytes = k / QK * BLOCK_BYTES;
            for i in 0..m {
                for j in 0..n {
                    let want = row_dot_scalar(&w[j * row_bytes..(j + 1) * row_bytes], &xq, i);
                    let got = out[i * n + j];
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "({m},{n},{k}) [{i},{j}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
