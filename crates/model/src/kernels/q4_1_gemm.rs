//! Q4_1 weights times 8-bit activations for many rows at once (batched prefill and scoring):
//! integer multiply-adds with AVX-512 VNNI, four times the products per instruction of the f32
//! GEMM, on weights kept at one byte each instead of four.
//!
//! The arithmetic is the one-row kernel's (`q4_1::row_dot`, llama.cpp's): per block of 32,
//! `d_w * d_x * sum(q_w * q_x) + m_w * s_x`, with activations quantized by `Q8Rows`. Opt-in
//! (`ETHOS_QUANT_GEMM=int8`, see `nn::linear`): the rounding of 8-bit activations turns tiny
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

/// Whether this build has the VNNI kernel.
pub const AVAILABLE: bool = cfg!(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512bw",
    target_feature = "avx512vnni"
));

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

unsafe fn tile(x: &Q8Rows, w: &PackedQ4_1, p: usize, r: usize, mr: usize, c: *mut f32, ldc: usize) {
    super::by_rows!(mr, [6, 5, 4, 3, 2], tile_mr(x, w, p, r, c, ldc))
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512bw",
    target_feature = "avx512vnni"
))]
#[inline(always)]
unsafe fn tile_mr<const R: usize>(
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

/// Portable fallback (only compiled where VNNI is absent; callers check `AVAILABLE`).
#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512bw",
    target_feature = "avx512vnni"
)))]
unsafe fn tile_mr<const R: usize>(
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
            let mut sum = 0f32;
            for b in 0..nb {
                let s = (p * nb + b) * 2 * LANES;
                let qb = &w.q[(p * nb + b) * BLOCK_Q..];
                let xb = (r0 + i) * nb + b;
                let mut isum = 0i32;
                for e in 0..QK {
                    let v = qb[(e / 4) * 64 + lane * 4 + e % 4] as i32;
                    isum += v * x.qs[(r0 + i) * w.k + b * QK + e] as i32;
                }
                sum += w.scales[s + lane] * x.d[xb] * isum as f32
                    + w.scales[s + LANES + lane] * x.s[xb];
            }
            *c.add((r0 + i) * ldc + p * LANES + lane) = sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::q4_1::{row_dot_scalar, sample_rows};

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
