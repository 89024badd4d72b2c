//! The 16-bit GEMM's arithmetic for calls of few rows (decode, short scoring and gather
//! calls), on weights kept about as compact as the file's: so that a row's numbers do not
//! depend on how many rows share its call (the batch-invariance guarantee), while decode
//! still reads about as many bytes per token as llama.cpp's one-row kernels.
//!
//! Per output, per run of 32: the exact integer sum of the run's weights times the 16-bit
//! activations, then `acc = fma(sum, d_w * d_x, acc)` and `acc = fma(m_w, s_x, acc)`:
//! `reference`'s operations in its order, so the same bits as `matmul` on `PackedInt16`.
//!
//! Layout: panels of 32 weight rows, as the GEMM's; per panel and run the 32 scales and 32
//! minimums (f16 where every one is exactly an f16, else f32); the values per pair of depth
//! steps, `[2 halves][16 rows][2 values]`. Formats whose values are 0..15 (Q4_0, Q4_1,
//! Q4_K) keep them as nibbles, the low one for the first half of the panel and the high one
//! for the second (32 bytes per pair); the others (Q5_0, Q5_1, Q8_0) as bytes (64).

use super::{Q16Rows, LANES, NR, QK};
use crate::cpu::runs::RunFormat;
use half::f16;

/// Bytes per pair of depth steps and panel: nibbles or bytes.
const fn pair_bytes(nibbles: bool) -> usize {
    if nibbles {
        NR
    } else {
        2 * NR
    }
}

/// Scales and minimums: 16-bit where that loses nothing.
enum Scales {
    F16(Vec<u16>),
    F32(Vec<f32>),
}

pub struct CompactInt16 {
    pub n: usize,
    pub k: usize,
    nibbles: bool,
    /// Per panel and run: 32 scales then 32 minimums.
    scales: Scales,
    /// Per panel and run: 16 pairs of `pair_bytes` bytes.
    q: Vec<u8>,
}

impl CompactInt16 {
    /// Repacks `n` rows of `k` values stored in `format`'s GGUF blocks (row-major).
    pub fn pack(format: RunFormat, w: &[u8], n: usize, k: usize) -> Self {
        let nibbles = matches!(format, RunFormat::Q4_0 | RunFormat::Q4_1 | RunFormat::Q4K);
        let nb = k / QK;
        let run_bytes = QK / 2 * pair_bytes(nibbles);
        let mut q = vec![0u8; n.div_ceil(NR) * nb * run_bytes];
        let scales = super::pack_runs(
            format,
            w,
            n,
            k,
            |j| j,
            |j, b, run| {
                let (p, lane) = (j / NR, j % NR);
                let (half, l) = (lane / LANES, lane % LANES);
                let at = (p * nb + b) * run_bytes;
                for (e, &v) in run.iter().enumerate() {
                    let within = l * 2 + e % 2;
                    let pair = at + (e / 2) * pair_bytes(nibbles);
                    if nibbles {
                        q[pair + within] |= (v as u8 & 0x0F) << (4 * half);
                    } else {
                        q[pair + half * NR + within] = v as i8 as u8;
                    }
                }
            },
        );
        let exact_f16 = scales.iter().all(|&v| f16::from_f32(v).to_f32() == v);
        let scales = if exact_f16 {
            Scales::F16(scales.iter().map(|&v| f16::from_f32(v).to_bits()).collect())
        } else {
            Scales::F32(scales)
        };
        Self {
            n,
            k,
            nibbles,
            scales,
            q,
        }
    }

    fn scale(&self, i: usize) -> f32 {
        match &self.scales {
            Scales::F16(s) => f16::from_bits(s[i]).to_f32(),
            Scales::F32(s) => s[i],
        }
    }

    /// Value `e` of run `b` of panel row `lane` in panel `p`.
    fn value(&self, p: usize, b: usize, lane: usize, e: usize) -> i32 {
        let nb = self.k / QK;
        let run_bytes = QK / 2 * pair_bytes(self.nibbles);
        let (half, l) = (lane / LANES, lane % LANES);
        let pair = (p * nb + b) * run_bytes + (e / 2) * pair_bytes(self.nibbles);
        let within = l * 2 + e % 2;
        if self.nibbles {
            ((self.q[pair + within] >> (4 * half)) & 0x0F) as i32
        } else {
            self.q[pair + half * NR + within] as i8 as i32
        }
    }
}

/// `x · wᵀ`, `(m, n)`: the bits `int16_gemm::matmul` gives on the same weights.
pub fn matmul(x: &Q16Rows, w: &CompactInt16) -> Vec<f32> {
    let m = x.rows();
    assert_eq!(x.k, w.k);
    let mut out = vec![0f32; m * w.n];
    let panels = w.n.div_ceil(NR);
    let dst = SharedOut(out.as_mut_ptr());
    let work = |range: std::ops::Range<usize>| {
        let dst = &dst;
        for p in range {
            for i in 0..m {
                // SAFETY: row i's columns of panel p are in bounds of `out` (m * n) and
                // written by this panel's chunk alone.
                unsafe { panel_row(x, w, p, i, dst.0.add(i * w.n)) };
            }
        }
    };
    // Too little work to be worth waking the other threads.
    if m * w.n * w.k < 64 * 1024 {
        work(0..panels);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(panels, work);
    }
    out
}

/// `matmul` plus work of the caller's: `prepare()` runs once, on one thread, while the
/// others start on the panels, and `finish` then runs on each panel's values (an adapter's update: its down sums, then its up sums
/// added to the product).
///
/// Work items, claimed in order from one cursor: `prepare`, every panel, then every panel's
/// finish, which waits until `prepare` and its panel are done. Every wait is on an earlier
/// item, claimed by a thread that runs its items in order, so no wait lasts for ever.
pub fn matmul_then(
    x: &Q16Rows,
    w: &CompactInt16,
    prepare: impl Fn() + Sync,
    finish: impl Fn(&mut crate::cpu::TileValues) + Sync,
) -> Vec<f32> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let m = x.rows();
    assert_eq!(x.k, w.k);
    let mut out = vec![0f32; m * w.n];
    let panels = w.n.div_ceil(NR);
    let dst = SharedOut(out.as_mut_ptr());
    let prepared = AtomicBool::new(false);
    let computed: Vec<AtomicBool> = (0..panels).map(|_| AtomicBool::new(false)).collect();
    let wait = |flag: &AtomicBool| {
        while !flag.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
    };
    let work = |range: std::ops::Range<usize>| {
        let dst = &dst;
        for item in range {
            if item == 0 {
                prepare();
                prepared.store(true, Ordering::Release);
            } else if item <= panels {
                let p = item - 1;
                for i in 0..m {
                    // SAFETY: row i's columns of panel p are in bounds of `out` (m * n) and
                    // written by this item alone.
                    unsafe { panel_row(x, w, p, i, dst.0.add(i * w.n)) };
                }
                computed[p].store(true, Ordering::Release);
            } else {
                let p = item - 1 - panels;
                wait(&prepared);
                wait(&computed[p]);
                // SAFETY: the panel's item has finished writing these values (the Acquire
                // above saw its Release); only this item touches them now.
                let mut values = unsafe {
                    crate::cpu::TileValues::new(dst.0, w.n, 0..m, p * NR..((p + 1) * NR).min(w.n))
                };
                finish(&mut values);
            }
        }
    };
    let items = 1 + 2 * panels;
    if m * w.n * w.k < 64 * 1024 {
        work(0..items);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(items, work);
    }
    out
}

struct SharedOut(*mut f32);
// SAFETY: the pointer is only used for disjoint writes during `matmul`, and in
// `matmul_then` a panel's values are finished only after their writer is done.
unsafe impl Sync for SharedOut {}

/// Row `i`'s outputs of panel `p`, written to `c[p * 32..]` below `w.n`.
///
/// # Safety
/// `c` points to row `i` of the output (`w.n` writable f32s), accessed by no one else
/// meanwhile; `p` is a panel of `w`, `i` a row of `x`, `x.k == w.k`.
unsafe fn panel_row(x: &Q16Rows, w: &CompactInt16, p: usize, i: usize, c: *mut f32) {
    Form::BEST.panel_row(x, w, p, i, c)
}

/// The forms of `panel_row` (all give the same bits).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Form {
    Vnni512,
    Avx2,
    Portable,
}

const HAS_VNNI512: bool = cfg!(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512bw",
    target_feature = "avx512vnni",
    target_feature = "f16c"
));
const HAS_AVX2: bool = cfg!(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
));

impl Form {
    /// The fastest form this build has.
    const BEST: Form = if HAS_VNNI512 {
        Form::Vnni512
    } else if HAS_AVX2 {
        Form::Avx2
    } else {
        Form::Portable
    };

    /// Every form this build compiled.
    #[cfg(test)]
    fn compiled() -> Vec<Form> {
        let mut forms = vec![Form::Portable];
        if HAS_AVX2 {
            forms.push(Form::Avx2);
        }
        if HAS_VNNI512 {
            forms.push(Form::Vnni512);
        }
        forms
    }

    /// # Safety
    /// `super::panel_row`'s, and this form is compiled.
    #[inline(always)]
    unsafe fn panel_row(self, x: &Q16Rows, w: &CompactInt16, p: usize, i: usize, c: *mut f32) {
        match self {
            #[cfg(all(
                target_arch = "x86_64",
                target_feature = "avx512f",
                target_feature = "avx512bw",
                target_feature = "avx512vnni",
                target_feature = "f16c"
            ))]
            Form::Vnni512 => avx512::panel_row(x, w, p, i, c),
            #[cfg(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma",
                target_feature = "f16c"
            ))]
            Form::Avx2 => avx2::panel_row(x, w, p, i, c),
            _ => portable_panel_row(x, w, p, i, c),
        }
    }
}

/// The reference of the tests: `int16_gemm::reference`'s operations on this layout.
fn reference(x: &Q16Rows, w: &CompactInt16, row: usize, col: usize) -> f32 {
    let nb = w.k / QK;
    let (p, lane) = (col / NR, col % NR);
    let mut acc = 0f32;
    for b in 0..nb {
        let isum: i32 = (0..QK)
            .map(|e| w.value(p, b, lane, e) * x.qs[row * w.k + b * QK + e] as i32)
            .sum();
        let s = (p * nb + b) * 2 * NR;
        let xb = row * nb + b;
        acc = (isum as f32).mul_add(w.scale(s + lane) * x.d[xb], acc);
        acc = w.scale(s + NR + lane).mul_add(x.s[xb], acc);
    }
    acc
}

/// `panel_row` without SIMD.
///
/// # Safety
/// `panel_row`'s.
unsafe fn portable_panel_row(x: &Q16Rows, w: &CompactInt16, p: usize, i: usize, c: *mut f32) {
    for col in p * NR..(p * NR + NR).min(w.n) {
        *c.add(col) = reference(x, w, i, col);
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512bw",
    target_feature = "avx512vnni",
    target_feature = "f16c"
))]
mod avx512 {
    use super::super::exponent_offset;
    use super::*;
    use std::arch::x86_64::*;

    /// `panel_row` with `vpdpwssd`: per pair of depth steps, the panel's 64 values widened to
    /// two registers of 16-bit pairs, times the row's two activations.
    ///
    /// # Safety
    /// `super::panel_row`'s; the CPU has AVX-512F/BW/VNNI and F16C (the build's features).
    #[inline(always)]
    pub(super) unsafe fn panel_row(x: &Q16Rows, w: &CompactInt16, p: usize, i: usize, c: *mut f32) {
        let nb = w.k / QK;
        let pb = pair_bytes(w.nibbles);
        let run_bytes = QK / 2 * pb;
        let qp = w.q.as_ptr().add(p * nb * run_bytes);
        let xq = x.qs.as_ptr().add(i * w.k);
        let low = _mm512_set1_epi16(0x0F);
        let mut acc = [_mm512_setzero_ps(); 2];
        for b in 0..nb {
            let mut isum = [_mm512_setzero_si512(); 2];
            let qb = qp.add(b * run_bytes);
            for pair in 0..QK / 2 {
                let at = qb.add(pair * pb);
                let (w0, w1) = if w.nibbles {
                    let v = _mm512_cvtepu8_epi16(_mm256_loadu_si256(at as *const __m256i));
                    (_mm512_and_si512(v, low), _mm512_srli_epi16::<4>(v))
                } else {
                    (
                        _mm512_cvtepi8_epi16(_mm256_loadu_si256(at as *const __m256i)),
                        _mm512_cvtepi8_epi16(_mm256_loadu_si256(at.add(NR) as *const __m256i)),
                    )
                };
                let a =
                    _mm512_set1_epi32((xq.add(b * QK + pair * 2) as *const i32).read_unaligned());
                isum[0] = _mm512_dpwssd_epi32(isum[0], a, w0);
                isum[1] = _mm512_dpwssd_epi32(isum[1], a, w1);
            }
            let s = (p * nb + b) * 2 * NR;
            let (dw, mw) = match &w.scales {
                Scales::F16(v) => {
                    let sp = v.as_ptr().add(s);
                    let load =
                        |o: usize| _mm512_cvtph_ps(_mm256_loadu_si256(sp.add(o) as *const __m256i));
                    ([load(0), load(LANES)], [load(NR), load(NR + LANES)])
                }
                Scales::F32(v) => {
                    let sp = v.as_ptr().add(s);
                    let load = |o: usize| _mm512_loadu_ps(sp.add(o));
                    ([load(0), load(LANES)], [load(NR), load(NR + LANES)])
                }
            };
            let xb = i * nb + b;
            let dx = _mm512_set1_epi32(exponent_offset(*x.d.get_unchecked(xb)));
            let sx = _mm512_set1_ps(*x.s.get_unchecked(xb));
            for h in 0..2 {
                // d_w * d_x exactly, as the GEMM's tile forms it.
                let scale = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(dw[h]), dx));
                acc[h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[h]), scale, acc[h]);
                acc[h] = _mm512_fmadd_ps(mw[h], sx, acc[h]);
            }
        }
        let cols = NR.min(w.n - p * NR);
        let mask = |h: usize| -> __mmask16 {
            let c = cols.saturating_sub(h * LANES).min(LANES);
            ((1u32 << c) - 1) as u16
        };
        let row = c.add(p * NR);
        _mm512_mask_storeu_ps(row, mask(0), acc[0]);
        _mm512_mask_storeu_ps(row.add(LANES), mask(1), acc[1]);
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
))]
mod avx2 {
    use super::super::exponent_offset;
    use super::*;
    use std::arch::x86_64::*;

    /// `panel_row` with `vpmaddwd` and `vpaddd` (the integer sums of `vpdpwssd`, exact) on
    /// four registers of 8 columns; the float steps lane for lane as the other forms.
    ///
    /// # Safety
    /// `super::panel_row`'s; the CPU has AVX2, FMA and F16C (the build's features).
    #[inline(always)]
    pub(super) unsafe fn panel_row(x: &Q16Rows, w: &CompactInt16, p: usize, i: usize, c: *mut f32) {
        const V: usize = 8;
        let nb = w.k / QK;
        let pb = pair_bytes(w.nibbles);
        let run_bytes = QK / 2 * pb;
        let qp = w.q.as_ptr().add(p * nb * run_bytes);
        let xq = x.qs.as_ptr().add(i * w.k);
        let low = _mm256_set1_epi16(0x0F);
        // Columns 0..8, 8..16 (the first half's rows), 16..24, 24..32.
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..nb {
            let mut isum = [_mm256_setzero_si256(); 4];
            let qb = qp.add(b * run_bytes);
            for pair in 0..QK / 2 {
                let at = qb.add(pair * pb);
                let load = |o: usize| _mm_loadu_si128(at.add(o) as *const __m128i);
                let ws = if w.nibbles {
                    let (a, b) = (
                        _mm256_cvtepu8_epi16(load(0)),
                        _mm256_cvtepu8_epi16(load(16)),
                    );
                    [
                        _mm256_and_si256(a, low),
                        _mm256_and_si256(b, low),
                        _mm256_srli_epi16::<4>(a),
                        _mm256_srli_epi16::<4>(b),
                    ]
                } else {
                    [0, 16, 32, 48].map(|o| _mm256_cvtepi8_epi16(load(o)))
                };
                let a =
                    _mm256_set1_epi32((xq.add(b * QK + pair * 2) as *const i32).read_unaligned());
                for (s, wv) in isum.iter_mut().zip(ws) {
                    *s = _mm256_add_epi32(*s, _mm256_madd_epi16(a, wv));
                }
            }
            let s = (p * nb + b) * 2 * NR;
            let load_scales = |o: usize| match &w.scales {
                Scales::F16(v) => {
                    _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(s + o) as *const __m128i))
                }
                Scales::F32(v) => _mm256_loadu_ps(v.as_ptr().add(s + o)),
            };
            let xb = i * nb + b;
            let dx = _mm256_set1_epi32(exponent_offset(*x.d.get_unchecked(xb)));
            let sx = _mm256_set1_ps(*x.s.get_unchecked(xb));
            for (g, a) in acc.iter_mut().enumerate() {
                let (dw, mw) = (load_scales(g * V), load_scales(NR + g * V));
                let scale = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(dw), dx));
                *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[g]), scale, *a);
                *a = _mm256_fmadd_ps(mw, sx, *a);
            }
        }
        let mut sums = [0f32; NR];
        for (g, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(sums.as_mut_ptr().add(g * V), *a);
        }
        for (l, v) in sums.iter().enumerate().take(NR.min(w.n - p * NR)) {
            *c.add(p * NR + l) = *v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tests::activations, PackedInt16};
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn weights(t: GgmlDType, n: usize, k: usize) -> Vec<u8> {
        let w: Vec<f32> = (0..n * k)
            .map(|i| (((i * 7919) % 1999) as f32 / 999.5 - 1.0) * (1.0 + (i % 37) as f32))
            .collect();
        let w = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        QTensor::quantize(&w, t)
            .unwrap()
            .data()
            .unwrap()
            .into_owned()
    }

    /// Every format, ragged shapes and row counts: the bits of the 16-bit GEMM on the same
    /// weights, and of this layout's reference.
    #[test]
    fn few_rows_give_the_bits_of_the_gemm() {
        for t in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
        ] {
            let format = RunFormat::of(t).unwrap();
            for &(m, n, k) in &[(1, 5, 256), (3, 40, 256), (15, 70, 512), (2, 64, 1024)] {
                let w = weights(t, n, k);
                let xq = Q16Rows::quantize(&activations(m, k), k);
                let compact = CompactInt16::pack(format, &w, n, k);
                let gemm = super::super::matmul(&xq, &PackedInt16::pack(format, &w, n, k));
                for form in Form::compiled() {
                    let mut got = vec![f32::NAN; m * n];
                    for i in 0..m {
                        for p in 0..n.div_ceil(NR) {
                            // SAFETY: row i of `got` holds n f32s; the form is compiled.
                            unsafe {
                                form.panel_row(&xq, &compact, p, i, got.as_mut_ptr().add(i * n))
                            };
                        }
                    }
                    for (e, (g, r)) in got.iter().zip(&gemm).enumerate() {
                        assert_eq!(
                            g.to_bits(),
                            r.to_bits(),
                            "{form:?} {t:?} ({m},{n},{k}) [{e}]: {g} vs {r}"
                        );
                    }
                }
                let got = matmul(&xq, &compact);
                assert!(got
                    .iter()
                    .zip(&gemm)
                    .all(|(g, r)| g.to_bits() == r.to_bits()));
            }
        }
    }

    /// `matmul_then` runs `prepare` once, before any `finish`, and finishes every value of
    /// the product once, on the product's values: on one thread and on the pool.
    #[test]
    fn finishing_sees_every_panel_once_after_preparing() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let format = RunFormat::of(GgmlDType::Q4_1).unwrap();
        for &(m, n, k) in &[(1, 40, 256), (3, 200, 512), (2, 1000, 1024)] {
            let w = weights(GgmlDType::Q4_1, n, k);
            let xq = Q16Rows::quantize(&activations(m, k), k);
            let compact = CompactInt16::pack(format, &w, n, k);
            let plain = matmul(&xq, &compact);
            let prepared = AtomicUsize::new(0);
            let got = matmul_then(
                &xq,
                &compact,
                || {
                    prepared.fetch_add(1, Ordering::SeqCst);
                },
                |tile| {
                    assert_eq!(prepared.load(Ordering::SeqCst), 1);
                    let cols = tile.cols.clone();
                    for i in tile.rows.clone() {
                        for (c, v) in cols.clone().zip(tile.row_mut(i)) {
                            *v = *v * 2.0 + (i * n + c) as f32;
                        }
                    }
                },
            );
            assert_eq!(prepared.load(Ordering::SeqCst), 1);
            for (e, (g, p)) in got.iter().zip(&plain).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    (p * 2.0 + e as f32).to_bits(),
                    "({m},{n},{k}) [{e}]"
                );
            }
        }
    }

    /// Q4_K's scales are products of an f16 and a 6-bit integer: kept in f32 when they are
    /// not f16s, and the bits still hold (checked above); Q4_1's fit in 16 bits.
    #[test]
    fn scales_stay_exact() {
        let (n, k) = (32, 256);
        let q41 = CompactInt16::pack(RunFormat::Q4_1, &weights(GgmlDType::Q4_1, n, k), n, k);
        assert!(matches!(q41.scales, Scales::F16(_)));
        // Nibbles: half a byte per value, plus the scales.
        assert_eq!(q41.q.len(), n * k / 2);
    }
}
