//! Quantized weights times 16-bit activations for many rows at once (batched prefill and
//! scoring): integer multiply-adds with AVX-512 VNNI's `vpdpwssd`, twice the products per
//! instruction of the f32 GEMM, with no dequantized copy of the weights. The weights are any
//! GGUF type that stores runs of 32 values as `d * q + m` (`runs::RunFormat`: Q4_0, Q4_1,
//! Q5_0, Q5_1, Q8_0, Q4_K), repacked as 16-bit integers with one `(d, m)` per run.
//!
//! Activations are quantized per block of 32 to 16 bits (`Q16Rows`): a step of 1/32767 to
//! 2/32767 of the block's largest magnitude (a power of two, `step`), 128 to 256 times finer
//! than llama.cpp's 8-bit blocks and finer than the f16 rounding llama.cpp's numerics apply
//! to q, k and v anyway. Per block of 32,
//! `out += (d_w * d_x) * sum(q_w * q_x)` and `out += m_w * sum(x)`, the last with the exact
//! f32 sum of the activations. The order of these additions is fixed, so a row's result does
//! not depend on which other rows share its call.
//!
//! CPUs with AVX2 but not AVX-512 VNNI (many laptops, and virtual machines that hide
//! AVX-512) run the same integer sums with `vpmaddwd` and `vpaddd` on 8 lanes, and the same
//! float steps, so the same bits (`avx2.rs`; `avx512.rs` has the VNNI tile). Builds with
//! neither run a portable loop.
//!
//! Layout: weight rows in panels of 32 (two 512-bit registers of 16 lanes); per panel and
//! run the 32 scales and the 32 minimums; the 16-bit values in pairs `[16 rows][2 values]`,
//! the operand order of `vpdpwssd` (two weights times two activations per lane), ordered
//! for the reads of the tile they are packed for (`Kernel`, `slot`).

use super::runs::{RunFormat, RUN};
use super::sgemm::for_each_tile;
use std::mem::MaybeUninit;

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod avx2;
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
mod avx512;
mod compact;

pub use compact::{matmul as matmul_few, matmul_then as matmul_few_then, CompactInt16};

/// Whether this build has the AVX-512 VNNI tile (`vpdpwssd`).
const HAS_VNNI512: bool = cfg!(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512bw",
    target_feature = "avx512vnni"
));
/// Whether it has the AVX2 tile (`vpmaddwd` then `vpaddd`: the same integer sums). AVX-512
/// builds have it too, so that their tests check it; they run the VNNI one.
const HAS_AVX2: bool = cfg!(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
));

/// A tile and the weight layout it reads (`slot`): packed weights carry theirs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kernel {
    /// 6 rows by 32 columns with `vpdpwssd` (12 integer and 12 float accumulators).
    Vnni512,
    /// 4 rows by one half panel (16 columns) at a time with `vpmaddwd` (16 registers of 8
    /// lanes: 8 integer accumulators, the float sums mostly in L1).
    Avx2,
    /// The portable loop over `reference`, on the VNNI layout.
    Portable,
}

impl Kernel {
    /// The fastest tile this build has.
    const BEST: Kernel = if HAS_VNNI512 {
        Kernel::Vnni512
    } else if HAS_AVX2 {
        Kernel::Avx2
    } else {
        Kernel::Portable
    };

    /// Whether this build compiled the tile.
    fn compiled(self) -> bool {
        match self {
            Kernel::Vnni512 => HAS_VNNI512,
            Kernel::Avx2 => HAS_AVX2,
            Kernel::Portable => true,
        }
    }

    /// Activation rows per register tile.
    fn rows(self) -> usize {
        match self {
            Kernel::Vnni512 => 6,
            Kernel::Avx2 | Kernel::Portable => 4,
        }
    }
}

/// Whether this build has a SIMD kernel (AVX-512 VNNI, or AVX2 with FMA).
pub const AVAILABLE: bool = !matches!(Kernel::BEST, Kernel::Portable);

const QK: usize = 32;
const LANES: usize = 16;
/// Output columns per panel: two 512-bit registers.
const NR: usize = 2 * LANES;
/// 16-bit weights per panel and block.
const BLOCK_Q: usize = QK * NR;
/// Largest 16-bit magnitude a quantized activation takes.
#[cfg(test)]
const Q_MAX: f32 = 32767.0;

/// Rows of activations quantized to 16 bits per block of 32.
pub struct Q16Rows {
    pub k: usize,
    /// Per block: the step, a power of two (`step`).
    d: Vec<f32>,
    /// Per block: the f32 sum of its activations (lanes `i % 16` first, then pairwise).
    s: Vec<f32>,
    qs: Vec<i16>,
}

impl Q16Rows {
    /// Quantizes `m` rows of `k` values (`k` a multiple of 32); large inputs on candle's pool.
    /// Each block is quantized on its own, so the bits do not depend on the split
    /// (`cpu::quantize_in_blocks`).
    pub fn quantize(x: &[f32], k: usize) -> Self {
        assert!(k.is_multiple_of(QK) && x.len().is_multiple_of(k.max(1)));
        let (d, s, qs) = super::quantize_in_blocks(x, quantize_block);
        Self { k, d, s, qs }
    }

    pub fn rows(&self) -> usize {
        self.qs.len() / self.k.max(1)
    }
}

/// One block: its values rounded to the nearest multiple of the step (ties to even), written
/// into all of `q`; returns the step and the f32 sum of the block. The fastest form this build
/// has; all give the bits of `quantize_block_scalar`.
fn quantize_block(x: &[f32], q: &mut [MaybeUninit<i16>]) -> (f32, f32) {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    {
        avx512::quantize_block(x, q)
    }
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        not(target_feature = "avx512f")
    ))]
    {
        avx2::quantize_block(x, q)
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        any(
            target_feature = "avx512f",
            all(target_feature = "avx2", target_feature = "fma")
        )
    )))]
    {
        quantize_block_scalar(x, q)
    }
}

/// The portable form of `quantize_block`, and the reference the tests hold it to.
#[cfg_attr(
    all(
        target_arch = "x86_64",
        any(
            target_feature = "avx512f",
            all(target_feature = "avx2", target_feature = "fma")
        )
    ),
    allow(dead_code)
)]
fn quantize_block_scalar(x: &[f32], q: &mut [MaybeUninit<i16>]) -> (f32, f32) {
    assert_eq!(q.len(), x.len());
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = step(amax);
    let id = inverse_step(d);
    for (q, v) in q.iter_mut().zip(x) {
        // |v * id| <= 32767 up to rounding; the cast saturates.
        q.write((v * id).round_ties_even() as i16);
    }
    let mut lanes = [0f32; LANES];
    for (i, v) in x.iter().enumerate() {
        lanes[i % LANES] += v;
    }
    (d, tree_sum(lanes))
}

/// Largest `amax` whose step stays in range (`step`): 2^120.
const AMAX_TOP: f32 = 1.329_228e36;
/// Smallest `amax` quantized as it is; below it (zeros, underflow) the step is 1, so every
/// value rounds to 0 (each is under 2^-87; the block's exact sum still carries them).
const AMAX_FLOOR: f32 = 6.462_349e-27;

/// A block's step: the smallest power of two at least `amax / 32767` (so between 1/32767 and
/// 2/32767 of `amax`), for `amax` in `[2^-87, 2^120]`; 1 below, 2^106 above (and for NaN),
/// where the values saturate. A power of two makes `1 / d` exact and lets the kernel apply
/// `d_w * d_x` as an add to `d_w`'s exponent bits (the mul it replaces shared the pipes of
/// `vpdpwssd`); the bounds keep that product a normal float for any weight scale in
/// `[2^-24, 2^22]` (f16 scales, also times Q4_K's 6-bit sub-scales).
fn step(amax: f32) -> f32 {
    if amax < AMAX_FLOOR {
        return 1.0;
    }
    if amax.is_nan() || amax > AMAX_TOP {
        return f32::from_bits((127 + 106) << 23);
    }
    // amax = m 2^E (m in [1, 2)): 2^(E-14) * 32767 = 2^E (2 - 2^-14) holds amax unless m is
    // above 2 - 2^-14 (mantissa bits above 0x7ffe00); then 2^(E-13). Integer ops only.
    let bits = amax.to_bits();
    let up = if bits & 0x007f_ffff > 0x007f_fe00 {
        13
    } else {
        14
    };
    f32::from_bits((bits & 0x7f80_0000) - (up << 23))
}

/// `1 / d` for a step (a power of two), exactly.
#[inline(always)]
fn inverse_step(d: f32) -> f32 {
    f32::from_bits((254 << 23) - d.to_bits())
}

/// `d`'s exponent as an offset to add to a float's bits: `e << 23` for `d = 2^e`.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
fn exponent_offset(d: f32) -> i32 {
    d.to_bits() as i32 - (127 << 23)
}

/// Lanes added pairwise: the upper half onto the lower, down to one.
fn tree_sum(mut lanes: [f32; LANES]) -> f32 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    lanes[0]
}

pub struct PackedInt16 {
    pub n: usize,
    pub k: usize,
    /// Per panel and block: 32 scales then 32 minimums.
    scales: Vec<f32>,
    /// Per panel and block: `BLOCK_Q` values, in `kernel`'s layout.
    q: Vec<i16>,
    /// The tile that multiplies by these weights.
    kernel: Kernel,
}

/// Where weight `e` of block `b` of panel row `lane` (0..32) sits within its panel (`nb`
/// blocks). AVX-512 reads a block's pairs of depth steps for all 32 rows at once:
/// `[block][pair][2 halves][16 rows][2 values]`. AVX2 goes over a panel one half (16 rows) at
/// a time, so each half is one stream: `[2 halves][block][pair][16 rows][2 values]`.
fn slot(kernel: Kernel, nb: usize, b: usize, lane: usize, e: usize) -> usize {
    let (half, l) = (lane / LANES, lane % LANES);
    match kernel {
        Kernel::Avx2 => (half * nb + b) * (BLOCK_Q / 2) + (e / 2) * LANES * 2 + l * 2 + e % 2,
        Kernel::Vnni512 | Kernel::Portable => {
            b * BLOCK_Q + (e / 2) * NR * 2 + half * LANES * 2 + l * 2 + e % 2
        }
    }
}

/// The runs of `n` rows of `k` values stored in `format`'s GGUF blocks (row-major), in
/// packed order: `visit(j, b, values)` for packed row `j` (taken from row `source(j)`) and
/// run `b`. Returns the per-panel-and-run scales then minimums (`[panel][run][32 + 32]`).
/// Padding lanes past `n` hold scale 1 and minimum 0, a normal scale for the kernels'
/// exponent add (`step`), times zero weights; a run whose scale is 0 takes that form too
/// (`d * q` is 0 either way).
fn pack_runs(
    format: RunFormat,
    w: &[u8],
    n: usize,
    k: usize,
    source: impl Fn(usize) -> usize,
    mut visit: impl FnMut(usize, usize, &[i16; RUN]),
) -> Vec<f32> {
    let per_block = format.block_values();
    let row_bytes = k / per_block * format.block_bytes();
    assert!(k.is_multiple_of(per_block) && w.len() >= n * row_bytes);
    let nb = k / QK;
    let mut scales: Vec<f32> = (0..n.div_ceil(NR) * nb * 2 * NR)
        .map(|i| if i % (2 * NR) < NR { 1.0 } else { 0.0 })
        .collect();
    let mut run = [0i16; RUN];
    for j in 0..n {
        let (p, lane) = (j / NR, j % NR);
        let src = source(j);
        let row = &w[src * row_bytes..(src + 1) * row_bytes];
        for b in 0..nb {
            let (block, r) = (b * QK / per_block, b % (per_block / QK));
            let bytes = &row[block * format.block_bytes()..][..format.block_bytes()];
            let (mut d, m) = format.run(bytes, r, &mut run);
            if d == 0.0 {
                (d, run) = (1.0, [0; RUN]);
            }
            let s = (p * nb + b) * 2 * NR;
            (scales[s + lane], scales[s + NR + lane]) = (d, m);
            visit(j, b, &run);
        }
    }
    scales
}

impl PackedInt16 {
    /// Repacks `n` rows of `k` values stored in `format`'s GGUF blocks (row-major).
    pub fn pack(format: RunFormat, w: &[u8], n: usize, k: usize) -> Self {
        Self::pack_for(Kernel::BEST, format, w, n, k)
    }

    /// `pack` for the given tile (tests run every tile this build has).
    fn pack_for(kernel: Kernel, format: RunFormat, w: &[u8], n: usize, k: usize) -> Self {
        Self::pack_rows(kernel, format, w, n, k, |j| j)
    }

    /// `pack` of the fused gate and up projections (`n / 2` rows each, gate first) for
    /// `matmul_swiglu`: each panel holds 16 gate rows and the same 16 up rows.
    pub fn pack_swiglu(format: RunFormat, w: &[u8], n: usize, k: usize) -> Self {
        Self::pack_swiglu_for(Kernel::BEST, format, w, n, k)
    }

    /// `pack_swiglu` for the given tile.
    fn pack_swiglu_for(kernel: Kernel, format: RunFormat, w: &[u8], n: usize, k: usize) -> Self {
        assert!(
            n.is_multiple_of(NR),
            "SwiGLU halves of {} rows: not in panels",
            n / 2
        );
        let half = n / 2;
        Self::pack_rows(kernel, format, w, n, k, |j| {
            let (panel, lane) = (j / NR, j % NR);
            panel * LANES + lane % LANES + if lane < LANES { 0 } else { half }
        })
    }

    /// `pack` with packed row `j` taken from row `source(j)` of `w`.
    fn pack_rows(
        kernel: Kernel,
        format: RunFormat,
        w: &[u8],
        n: usize,
        k: usize,
        source: impl Fn(usize) -> usize,
    ) -> Self {
        assert!(kernel.compiled(), "{kernel:?} tile: not in this build");
        let nb = k / QK;
        let mut q = vec![0i16; n.div_ceil(NR) * nb * BLOCK_Q];
        let scales = pack_runs(format, w, n, k, source, |j, b, run| {
            let (p, lane) = (j / NR, j % NR);
            let panel = &mut q[p * nb * BLOCK_Q..(p + 1) * nb * BLOCK_Q];
            for (e, &v) in run.iter().enumerate() {
                panel[slot(kernel, nb, b, lane, e)] = v;
            }
        });
        Self {
            n,
            k,
            scales,
            q,
            kernel,
        }
    }
}

/// `x · wᵀ`, `(m, n)`, for activations quantized by `Q16Rows` (`x.k == w.k`). The output is
/// not zero-filled first: every element is written once (a serial fill of every product's
/// output cost a few per cent of a scoring run).
pub fn matmul(x: &Q16Rows, w: &PackedInt16) -> Vec<f32> {
    product(x, w, Epilogue::Store)
}

/// SwiGLU's `silu(gate) * up`, `(m, n / 2)`, from weights packed by `pack_swiglu`: each tile
/// applies `vexp::silu_mul`'s arithmetic to its gate and up sums as it stores them, so the
/// `(m, n)` product is never written and read back. The same bits as `matmul` on the
/// weights packed in order followed by `vexp::silu_mul_rows`.
pub fn matmul_swiglu(x: &Q16Rows, w: &PackedInt16) -> Vec<f32> {
    assert!(w.n.is_multiple_of(NR));
    product(x, w, Epilogue::SiluTimes)
}

/// What a tile does with its sums.
#[derive(Clone, Copy, PartialEq)]
enum Epilogue {
    /// Writes its panel's columns.
    Store,
    /// Writes `silu(gate) * up` for the panel's 16 gate and 16 up columns (`pack_swiglu`).
    SiluTimes,
}

fn product(x: &Q16Rows, w: &PackedInt16, epilogue: Epilogue) -> Vec<f32> {
    let m = x.rows();
    assert_eq!(x.k, w.k);
    let n = match epilogue {
        Epilogue::Store => w.n,
        Epilogue::SiluTimes => w.n / 2,
    };
    let mut out = Vec::<f32>::with_capacity(m * n);
    for_each_tile(
        m,
        w.n.div_ceil(NR),
        w.kernel.rows(),
        m * w.n * x.k,
        out.as_mut_ptr(),
        |p, r, mr, c| {
            // SAFETY: rows r..r+mr and the panel's columns (`Store`: p*32.., `SiluTimes`:
            // p*16..) are within the capacity of m * n and belong to this tile alone.
            unsafe { tile(x, w, p, r, mr, c, n, epilogue) };
        },
    );
    // SAFETY: the tiles cover every row of every panel (`for_each_tile`), and each tile
    // writes every output column of its panel below n (the masked stores, the SwiGLU rows,
    // or the portable loop).
    unsafe { out.set_len(m * n) };
    out
}

/// Rows `r..r + mr` of panel `p` of the output at `c` (row stride `ldc`), by the tile `w` was
/// packed for: `Store` writes the panel's columns `p * 32..` below `w.n`, `SiluTimes` the 16
/// columns `p * 16..`.
///
/// # Safety
/// `x.k == w.k`; rows `r..r + mr` of `x` exist, `1 <= mr <= w.kernel.rows()`, `p` is a panel
/// of `w` (whose `n` is a multiple of 32 for `SiluTimes`); `c` holds the tile's elements,
/// writable and accessed by no one else meanwhile; the CPU has this build's target features.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    x: &Q16Rows,
    w: &PackedInt16,
    p: usize,
    r: usize,
    mr: usize,
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue,
) {
    match w.kernel {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vnni"
        ))]
        Kernel::Vnni512 => {
            use avx512::tile_mr as vnni_tile;
            super::by_rows!(mr, [6, 5, 4, 3, 2], vnni_tile(x, w, p, r, c, ldc, epilogue))
        }
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        Kernel::Avx2 => {
            use avx2::tile_mr as avx2_tile;
            super::by_rows!(mr, [4, 3, 2], avx2_tile(x, w, p, r, c, ldc, epilogue))
        }
        // `pack_rows` packs only for compiled tiles: the portable one, here.
        _ => super::by_rows!(mr, [4, 3, 2], portable_tile(x, w, p, r, c, ldc, epilogue)),
    }
}

/// A row's 16 SwiGLU outputs of a panel, from its gate and up sums, written at `c`.
///
/// # Safety
/// `c` points to 16 writable f32s that no one else accesses meanwhile.
#[inline(always)]
unsafe fn store_silu_times(gate: &[f32; LANES], up: &[f32; LANES], c: *mut f32) {
    for l in 0..LANES {
        *c.add(l) = super::vexp::silu_times(gate[l], up[l]);
    }
}

/// The reference the tests hold the tiles to, and the portable tile's arithmetic: the same
/// operations in the same order.
fn reference(x: &Q16Rows, w: &PackedInt16, row: usize, col: usize) -> f32 {
    let nb = w.k / QK;
    let (p, lane) = (col / NR, col % NR);
    let mut acc = 0f32;
    for b in 0..nb {
        let panel = &w.q[p * nb * BLOCK_Q..];
        let isum: i32 = (0..QK)
            .map(|e| {
                panel[slot(w.kernel, nb, b, lane, e)] as i32 * x.qs[row * w.k + b * QK + e] as i32
            })
            .sum();
        let s = (p * nb + b) * 2 * NR;
        let xb = row * nb + b;
        acc = (isum as f32).mul_add(w.scales[s + lane] * x.d[xb], acc);
        acc = w.scales[s + NR + lane].mul_add(x.s[xb], acc);
    }
    acc
}

/// The tile of builds with neither SIMD tile (callers check `AVAILABLE`).
///
/// # Safety
/// `tile`'s, for rows `r0..r0 + R` (only the writes through `c` go unchecked here).
unsafe fn portable_tile<const R: usize>(
    x: &Q16Rows,
    w: &PackedInt16,
    p: usize,
    r0: usize,
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue,
) {
    if epilogue == Epilogue::SiluTimes {
        for i in r0..r0 + R {
            let sums = |h: usize| -> [f32; LANES] {
                std::array::from_fn(|l| reference(x, w, i, p * NR + h * LANES + l))
            };
            store_silu_times(&sums(0), &sums(1), c.add(i * ldc + p * LANES));
        }
        return;
    }
    for col in p * NR..(p * NR + NR).min(w.n) {
        for i in r0..r0 + R {
            *c.add(i * ldc + col) = reference(x, w, i, col);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::q4_1::{dequantize, sample_rows, BLOCK_BYTES};

    /// Activations with an outlier every so often, as residual streams have.
    pub(super) fn activations(m: usize, k: usize) -> Vec<f32> {
        (0..m * k)
            .map(|i| {
                let v = ((i * 37 % 101) as f32 - 50.0) / 25.0;
                if i % 97 == 5 {
                    v * 40.0
                } else {
                    v
                }
            })
            .collect()
    }

    /// Every tile this build compiled (an AVX-512 build has the AVX2 tile too), with the
    /// name the test messages give it.
    fn compiled_kernels() -> Vec<Kernel> {
        let all = [Kernel::Vnni512, Kernel::Avx2, Kernel::Portable];
        let kernels: Vec<Kernel> = all.into_iter().filter(|k| k.compiled()).collect();
        eprintln!("tiles in this build: {kernels:?}");
        kernels
    }

    /// The same bits as the reference, read through the same packing: so each tile's
    /// arithmetic and its reads of its own layout are checked (a wrong lane or pair order, or
    /// a wrong half of a panel, changes the sums).
    #[test]
    fn kernel_gives_the_bits_of_the_reference_on_ragged_shapes() {
        for kernel in compiled_kernels() {
            for &(m, n, k) in &[(1, 5, 32), (7, 16, 64), (13, 40, 96), (100, 70, 576)] {
                let w = sample_rows(n, k);
                let xq = Q16Rows::quantize(&activations(m, k), k);
                let packed = PackedInt16::pack_for(kernel, RunFormat::Q4_1, &w, n, k);
                let out = matmul(&xq, &packed);
                for i in 0..m {
                    for j in 0..n {
                        let want = reference(&xq, &packed, i, j);
                        assert_eq!(
                            out[i * n + j].to_bits(),
                            want.to_bits(),
                            "{kernel:?} ({m},{n},{k}) [{i},{j}]: {} vs {want}",
                            out[i * n + j]
                        );
                    }
                }
            }
        }
    }

    /// Every tile's layout holds the same weights: the tiles give the same bits as each other.
    #[test]
    fn tiles_give_the_same_bits_as_each_other() {
        let (m, n, k) = (11, 72, 192);
        let w = sample_rows(n, k);
        let xq = Q16Rows::quantize(&activations(m, k), k);
        let portable = matmul(
            &xq,
            &PackedInt16::pack_for(Kernel::Portable, RunFormat::Q4_1, &w, n, k),
        );
        for kernel in compiled_kernels() {
            let out = matmul(
                &xq,
                &PackedInt16::pack_for(kernel, RunFormat::Q4_1, &w, n, k),
            );
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&out), bits(&portable), "{kernel:?}");
        }
    }

    /// Against the f64 product of the dequantized weights and the unquantized activations:
    /// the error is that of 16-bit activations, far below the 8-bit path's.
    #[test]
    fn product_is_within_the_16_bit_rounding_of_the_exact_one() {
        let (m, n, k) = (9, 33, 576);
        let w = sample_rows(n, k);
        let x = activations(m, k);
        // The portable tile: the others give its bits (tests above).
        let packed = PackedInt16::pack_for(Kernel::Portable, RunFormat::Q4_1, &w, n, k);
        let out = matmul(&Q16Rows::quantize(&x, k), &packed);
        let row_bytes = k / QK * BLOCK_BYTES;
        let mut wf = vec![0f32; k];
        for j in 0..n {
            dequantize(&w[j * row_bytes..(j + 1) * row_bytes], &mut wf);
            for i in 0..m {
                let xr = &x[i * k..(i + 1) * k];
                let exact: f64 = wf.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
                // Each activation is off by at most half a step of its block (a step is at
                // most 2/32767 of the block's largest magnitude).
                let bound: f64 = xr
                    .chunks(QK)
                    .zip(wf.chunks(QK))
                    .map(|(xb, wb)| {
                        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
                        let wsum: f64 = wb.iter().map(|v| v.abs() as f64).sum();
                        wsum * amax / 32767.0
                    })
                    .sum::<f64>()
                    + 1e-5 * (1.0 + exact.abs());
                let err = (out[i * n + j] as f64 - exact).abs();
                assert!(
                    err <= bound,
                    "[{i},{j}]: {} vs {exact} (bound {bound})",
                    out[i * n + j]
                );
            }
        }
    }

    /// The fused SwiGLU epilogue against the product written out and `silu_mul_rows` on it.
    #[test]
    fn swiglu_epilogue_gives_the_bits_of_the_product_then_silu_mul() {
        for kernel in compiled_kernels() {
            for &(m, half, k) in &[(1, 16, 32), (7, 48, 64), (40, 96, 576)] {
                let w = sample_rows(2 * half, k);
                let xq = Q16Rows::quantize(&activations(m, k), k);
                let full = PackedInt16::pack_for(kernel, RunFormat::Q4_1, &w, 2 * half, k);
                let full = matmul(&xq, &full);
                let want = crate::cpu::vexp::silu_mul_rows(&full, &full[half..], 2 * half, m, half);
                let fused = PackedInt16::pack_swiglu_for(kernel, RunFormat::Q4_1, &w, 2 * half, k);
                let got = matmul_swiglu(&xq, &fused);
                assert_eq!(got.len(), want.len());
                for (e, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{kernel:?} ({m},{half},{k}) [{e}]: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn parallel_quantization_equals_blocks_quantized_alone() {
        let k = 576;
        let x = activations(200, k); // 115,200 values: the parallel path
        let all = Q16Rows::quantize(&x, k);
        for (r, row) in x.chunks(k).enumerate() {
            let one = Q16Rows::quantize(row, k);
            assert_eq!(one.qs, all.qs[r * k..(r + 1) * k]);
            assert_eq!(one.d, all.d[r * k / QK..(r + 1) * k / QK]);
            assert_eq!(one.s, all.s[r * k / QK..(r + 1) * k / QK]);
        }
    }

    /// A form of `quantize_block`.
    type Form = fn(&[f32], &mut [MaybeUninit<i16>]) -> (f32, f32);

    #[test]
    fn quantization_gives_the_bits_of_the_scalar_form() {
        #[allow(unused_mut)]
        let mut forms: Vec<(&str, Form)> = vec![("dispatched", quantize_block)];
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        forms.push(("avx2", avx2::quantize_block));
        #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
        forms.push(("avx512", avx512::quantize_block));
        for (name, form) in forms {
            eprintln!("quantization form: {name}");
            quantization_form_gives_the_bits_of_the_scalar_form(form);
        }
    }

    fn quantization_form_gives_the_bits_of_the_scalar_form(quantize_block: Form) {
        let mut x = activations(40, QK);
        // A block whose step is 1, with ties that round to even (2, 4, -2).
        let mut ties = [0f32; QK];
        ties[..4].copy_from_slice(&[32767.0, 2.5, 3.5, -2.5]);
        x.extend(ties);
        x.extend([1e-30f32; QK]); // a tiny scale
        for (b, xb) in x.chunks(QK).enumerate() {
            let (mut q, mut want) = ([MaybeUninit::new(0i16); QK], [MaybeUninit::new(0i16); QK]);
            let got = quantize_block(xb, &mut q);
            let expected = quantize_block_scalar(xb, &mut want);
            // SAFETY: both forms write all QK values (and the arrays start initialized).
            let (q, want) = unsafe { (q.map(|v| v.assume_init()), want.map(|v| v.assume_init())) };
            assert_eq!(q, want, "block {b}");
            if b == 40 {
                assert_eq!(q[..4], [32767, 2, 4, -2]);
            }
            assert_eq!(
                (got.0.to_bits(), got.1.to_bits()),
                (expected.0.to_bits(), expected.1.to_bits()),
                "block {b}"
            );
        }
    }

    #[test]
    fn extreme_values_saturate_instead_of_wrapping() {
        let mut x = vec![0f32; QK];
        x[0] = 3.0e38;
        x[1] = -3.0e38;
        x[2] = 1.0;
        let q = Q16Rows::quantize(&x, QK);
        assert_eq!((q.qs[0], q.qs[1], q.qs[2]), (32767, -32768, 0));
        let zeros = Q16Rows::quantize(&[0f32; QK], QK);
        assert!(zeros.qs.iter().all(|&v| v == 0) && zeros.d[0] == 1.0);
    }

    #[test]
    fn steps_are_the_smallest_power_of_two_that_fits() {
        for amax in [
            1e-26f32, 3e-20, 0.01, 1.0, 32767.0, 32768.0, 5e4, 1e30, 1.3e36,
        ] {
            let d = step(amax);
            assert_eq!(
                d.to_bits() & 0x007f_ffff,
                0,
                "{amax}: {d} is a power of two"
            );
            assert!(
                amax / d <= Q_MAX && amax / d > Q_MAX / 2.0,
                "{amax}: step {d}"
            );
        }
        assert_eq!(step(32767.0), 1.0);
        assert_eq!(step(32767.5), 2.0);
        for d in [step(1.0), step(1e-26), step(1e36), 1.0] {
            assert_eq!(inverse_step(d), 1.0 / d);
        }
        assert_eq!((step(0.0), step(1e-30)), (1.0, 1.0));
        assert_eq!(step(f32::INFINITY), step(f32::NAN));
    }

    /// The kernel applies `d_w * d_x` as an exponent add; at the ends of both ranges it must
    /// still give the bits of the float product the reference takes.
    #[test]
    fn exponent_add_equals_the_product_at_the_ends_of_the_ranges() {
        let (n, k) = (40, 64);
        let mut w = sample_rows(n, k);
        // Row 0: the smallest f16 scale (2^-24), row 1 the largest, row 2 a zero scale.
        for (row, d) in [(0, 0x0001u16), (1, 0x7bff), (2, 0)] {
            for b in 0..k / QK {
                let at = (row * k / QK + b) * BLOCK_BYTES;
                w[at..at + 2].copy_from_slice(&d.to_le_bytes());
            }
        }
        let mut x = activations(5, k);
        x[..QK].iter_mut().for_each(|v| *v *= 1e-28); // amax just above the floor
        x[QK..2 * QK].iter_mut().for_each(|v| *v *= 1e33); // near the top
        x[2 * QK..3 * QK].fill(0.0);
        x[3 * QK..4 * QK].iter_mut().for_each(|v| *v *= 1e-30); // below the floor
        let xq = Q16Rows::quantize(&x, k);
        for kernel in compiled_kernels() {
            let packed = PackedInt16::pack_for(kernel, RunFormat::Q4_1, &w, n, k);
            let out = matmul(&xq, &packed);
            for i in 0..5 {
                for j in 0..n {
                    let want = reference(&xq, &packed, i, j);
                    let got = out[i * n + j];
                    assert_eq!(got.to_bits(), want.to_bits(), "{kernel:?} [{i},{j}]");
                }
            }
        }
    }
}
