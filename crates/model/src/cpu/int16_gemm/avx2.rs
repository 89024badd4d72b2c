//! AVX2 forms (also compiled into AVX-512 builds, where the tests hold them to the reference
//! too): activation quantization and the `vpmaddwd` tile.

use super::*;
use std::arch::x86_64::*;

/// `quantize_block` with AVX2: the AVX-512 form's operations on 8 lanes (the conversion
/// rounds to nearest even; the narrowing `vpackssdw` saturates, then its 128-bit lanes are
/// put back in order).
#[cfg_attr(target_feature = "avx512f", allow(dead_code))]
pub(super) fn quantize_block(x: &[f32], q: &mut [MaybeUninit<i16>]) -> (f32, f32) {
    assert!(x.len() == QK && q.len() == QK);
    // SAFETY: both slices hold 32 elements (checked above); AVX2 is compiled in.
    unsafe {
        let (v, amax) = crate::cpu::q8::simd::load_block(x);
        let d = step(amax);
        // Exact: d is a power of two.
        let id = _mm256_set1_ps(inverse_step(d));
        let i: [__m256i; 4] = std::array::from_fn(|j| _mm256_cvtps_epi32(_mm256_mul_ps(v[j], id)));
        for h in 0..2 {
            let packed = _mm256_packs_epi32(i[2 * h], i[2 * h + 1]);
            let ordered = _mm256_permute4x64_epi64::<0b11_01_10_00>(packed);
            _mm256_storeu_si256(q.as_mut_ptr().add(LANES * h) as *mut __m256i, ordered);
        }
        let mut lanes = [0f32; LANES];
        _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(v[0], v[2]));
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), _mm256_add_ps(v[1], v[3]));
        (d, tree_sum(lanes))
    }
}

/// The AVX2 form of the VNNI kernel: per pair of depth steps, `vpmaddwd` makes each lane's
/// two products' sum and `vpaddd` adds it, the integer sums of `vpdpwssd` (exact, so in any
/// order); the float work per block is the VNNI kernel's, lane for lane, so the same bits.
/// With 16 registers of 8 lanes, a tile takes its panel's 32 columns as two halves of 16, so
/// that each weight load serves four rows (two rows of 32 columns streamed the weights from
/// L2 at the rate of the multiply-adds).
///
/// # Safety
/// `tile`'s (`super`), for rows `r0..r0 + R`, with `w` packed for `Kernel::Avx2`; the CPU has
/// AVX2 and FMA (build target features: the module is compiled only for them).
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
    const V: usize = 8;
    let nb = w.k / QK;
    let qp = w.q.as_ptr().add(p * nb * BLOCK_Q);
    let sp = w.scales.as_ptr().add(p * nb * 2 * NR);
    let xq = x.qs.as_ptr();
    // Per row, the panel's 32 sums (16 per half).
    let mut sums = [[0f32; NR]; R];
    for half in 0..2 {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for b in 0..nb {
            let mut isum = [[_mm256_setzero_si256(); 2]; R];
            let qb = qp.add((half * nb + b) * (BLOCK_Q / 2));
            for pair in 0..QK / 2 {
                let w0 = _mm256_loadu_si256(qb.add(pair * 2 * LANES) as *const _);
                let w1 = _mm256_loadu_si256(qb.add(pair * 2 * LANES + 2 * V) as *const _);
                for (i, s) in isum.iter_mut().enumerate() {
                    let at = xq.add((r0 + i) * w.k + b * QK + pair * 2) as *const i32;
                    let a = _mm256_set1_epi32(at.read_unaligned());
                    s[0] = _mm256_add_epi32(s[0], _mm256_madd_epi16(a, w0));
                    s[1] = _mm256_add_epi32(s[1], _mm256_madd_epi16(a, w1));
                }
            }
            let sb = sp.add(b * 2 * NR + half * LANES);
            let dw = [_mm256_loadu_ps(sb), _mm256_loadu_ps(sb.add(V))];
            let mw = [_mm256_loadu_ps(sb.add(NR)), _mm256_loadu_ps(sb.add(NR + V))];
            for i in 0..R {
                let xb = (r0 + i) * nb + b;
                let dx = _mm256_set1_epi32(exponent_offset(*x.d.get_unchecked(xb)));
                let sx = _mm256_set1_ps(*x.s.get_unchecked(xb));
                for j in 0..2 {
                    // d_w * d_x exactly (`step`): d_x = 2^e added to d_w's exponent.
                    let scale =
                        _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(dw[j]), dx));
                    acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i][j]), scale, acc[i][j]);
                    acc[i][j] = _mm256_fmadd_ps(mw[j], sx, acc[i][j]);
                }
            }
        }
        for (row, a) in sums.iter_mut().zip(&acc) {
            _mm256_storeu_ps(row.as_mut_ptr().add(half * LANES), a[0]);
            _mm256_storeu_ps(row.as_mut_ptr().add(half * LANES + V), a[1]);
        }
    }
    for (i, row_sums) in sums.iter().enumerate() {
        if epilogue == Epilogue::SiluTimes {
            let gate: [f32; LANES] = std::array::from_fn(|l| row_sums[l]);
            let up: [f32; LANES] = std::array::from_fn(|l| row_sums[LANES + l]);
            store_silu_times(&gate, &up, c.add((r0 + i) * ldc + p * LANES));
        } else {
            let row = c.add((r0 + i) * ldc + p * NR);
            for (l, v) in row_sums.iter().enumerate().take(NR.min(w.n - p * NR)) {
                *row.add(l) = *v;
            }
        }
    }
}
