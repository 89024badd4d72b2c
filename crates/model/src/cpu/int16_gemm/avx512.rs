//! AVX-512 forms: activation quantization (AVX-512F) and the VNNI tile (`vpdpwssd`).

use super::*;
use std::arch::x86_64::*;

/// `quantize_block` with AVX-512F (the narrowing `vpmovsdw` saturates).
pub(super) fn quantize_block(x: &[f32], q: &mut [MaybeUninit<i16>]) -> (f32, f32) {
    assert!(x.len() == QK && q.len() == QK);
    // SAFETY: both slices hold 32 elements (checked above); AVX-512F is compiled in.
    unsafe {
        let x0 = _mm512_loadu_ps(x.as_ptr());
        let x1 = _mm512_loadu_ps(x.as_ptr().add(LANES));
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
        let d = step(amax);
        // Exact: d is a power of two.
        let id = _mm512_set1_ps(inverse_step(d));
        // The default rounding mode rounds to nearest, ties to even; the narrowing saturates.
        let q0 = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(x0, id)));
        let q1 = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(x1, id)));
        _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, q0);
        _mm256_storeu_si256(q.as_mut_ptr().add(LANES) as *mut __m256i, q1);
        let mut lanes = [0f32; LANES];
        _mm512_storeu_ps(lanes.as_mut_ptr(), _mm512_add_ps(x0, x1));
        (d, tree_sum(lanes))
    }
}

/// Per pair of depth steps, `vpdpwssd` adds each lane's two products to its integer sum;
/// per block, the sums are scaled (`d_w * d_x` as an exponent add) and the minimums' term
/// added, both with FMA, in `reference`'s order.
///
/// # Safety
/// `tile`'s (`super`), for rows `r0..r0 + R`, with `w` packed for `Kernel::Vnni512`; the CPU
/// has AVX-512F/BW/VNNI (build target features, per the cfg).
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512bw",
    target_feature = "avx512vnni"
))]
#[inline(always)]
pub(super) unsafe fn tile_mr<const R: usize>(
    x: &Q16Rows,
    w: &PackedInt16,
    p: usize,
    r0: usize,
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue,
) {
    let nb = w.k / QK;
    let qp = w.q.as_ptr().add(p * nb * BLOCK_Q);
    let sp = w.scales.as_ptr().add(p * nb * 2 * NR);
    let xq = x.qs.as_ptr();
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for b in 0..nb {
        let mut isum = [[_mm512_setzero_si512(); 2]; R];
        let qb = qp.add(b * BLOCK_Q);
        for pair in 0..QK / 2 {
            let w0 = _mm512_loadu_si512(qb.add(pair * 2 * NR) as *const _);
            let w1 = _mm512_loadu_si512(qb.add(pair * 2 * NR + NR) as *const _);
            for (i, s) in isum.iter_mut().enumerate() {
                let a = (xq.add((r0 + i) * w.k + b * QK + pair * 2) as *const i32).read_unaligned();
                let a = _mm512_set1_epi32(a);
                s[0] = _mm512_dpwssd_epi32(s[0], a, w0);
                s[1] = _mm512_dpwssd_epi32(s[1], a, w1);
            }
        }
        let sb = sp.add(b * 2 * NR);
        let dw = [_mm512_loadu_ps(sb), _mm512_loadu_ps(sb.add(LANES))];
        let mw = [
            _mm512_loadu_ps(sb.add(NR)),
            _mm512_loadu_ps(sb.add(NR + LANES)),
        ];
        for i in 0..R {
            let xb = (r0 + i) * nb + b;
            let dx = _mm512_set1_epi32(exponent_offset(*x.d.get_unchecked(xb)));
            let sx = _mm512_set1_ps(*x.s.get_unchecked(xb));
            for h in 0..2 {
                // d_w * d_x exactly (`step`): d_x = 2^e added to d_w's exponent.
                let scale = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(dw[h]), dx));
                acc[i][h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[i][h]), scale, acc[i][h]);
                acc[i][h] = _mm512_fmadd_ps(mw[h], sx, acc[i][h]);
            }
        }
    }
    if epilogue == Epilogue::SiluTimes {
        for (i, a) in acc.iter().enumerate() {
            let h = crate::cpu::vexp::silu_times16(a[0], a[1]);
            _mm512_storeu_ps(c.add((r0 + i) * ldc + p * LANES), h);
        }
        return;
    }
    let cols = NR.min(w.n - p * NR);
    let mask = |h: usize| -> __mmask16 {
        let c = cols.saturating_sub(h * LANES).min(LANES);
        ((1u32 << c) - 1) as u16
    };
    for (i, a) in acc.iter().enumerate() {
        let row = c.add((r0 + i) * ldc + p * NR);
        _mm512_mask_storeu_ps(row, mask(0), a[0]);
        _mm512_mask_storeu_ps(row.add(LANES), mask(1), a[1]);
    }
}
