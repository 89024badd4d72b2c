//! `cargo bench --bench gemm`: the batched products of SmolLM2-135M's layers (1024 rows:
//! 16 prompts of 64 tokens) on the 16-bit integer GEMM, activation quantization included,
//! and on the f32 GEMM over the dequantized weights (ours where the build has AVX-512, else
//! candle's, as `Linear` chooses); where the build has it, the opt-in GEMM on 8-bit
//! activations (`ETHOS_QUANT_GEMM=int8`) too. GFLOP/s for comparing kernels and commits on
//! one machine, beside the peak of the integer GEMM's instruction on this CPU (every core busy with
//! nothing else), which bounds what any kernel of 16-bit products can reach here; end-to-end
//! speed against peers lives in `benches/peers/`.

use candle_core::{Device, Tensor};
use ethos::model::cpu::{int16_gemm, q4_1, q4_1_gemm, q8, runs::RunFormat, sgemm};
use std::time::Instant;

/// Q4_1 rows with varied scales, minimums and nibbles (a fixed pseudo-random pattern).
fn q4_1_rows(n: usize, k: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut w = Vec::with_capacity(n * k / 32 * q4_1::BLOCK_BYTES);
    for _ in 0..n * k / 32 {
        let d = half::f16::from_f32(0.001 + (next() % 1000) as f32 * 1e-5);
        let m = half::f16::from_f32(-0.008 * (1.0 + (next() % 100) as f32 / 100.0));
        w.extend(d.to_le_bytes());
        w.extend(m.to_le_bytes());
        w.extend((0..16).map(|_| next() as u8));
    }
    w
}

fn best_seconds(mut f: impl FnMut()) -> f64 {
    f();
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let m = 1024;
    let shapes = [
        ("qkv", 960, 576),
        ("gate_up", 3072, 576),
        ("o", 576, 576),
        ("down", 576, 1536),
    ];
    let x: Vec<f32> = (0..m * 1536)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    println!("{m} rows; GFLOP/s (best of 5)");
    let (mut t16, mut t32, mut t8, mut flops) = (0.0, 0.0, 0.0, 0.0);
    for (name, n, k) in shapes {
        let w = q4_1_rows(n, k);
        let xs = &x[..m * k];
        let mut out = vec![0f32; m * n];
        let f = 2.0 * (m * n * k) as f64;
        let packed = int16_gemm::PackedInt16::pack(RunFormat::Q4_1, &w, n, k);
        let s16 = best_seconds(|| {
            let q = int16_gemm::Q16Rows::quantize(xs, k);
            out = int16_gemm::matmul(&q, &packed);
        });
        let mut wf = vec![0f32; n * k];
        let row = k / 32 * q4_1::BLOCK_BYTES;
        for (j, r) in wf.chunks_mut(k).enumerate() {
            q4_1::dequantize(&w[j * row..(j + 1) * row], r);
        }
        let s32 = if sgemm::AVAILABLE {
            let pf = sgemm::PackedWeights::pack(&wf, n, k);
            best_seconds(|| sgemm::matmul(xs, m, &pf, &mut out))
        } else {
            let dev = Device::Cpu;
            let wt = Tensor::from_vec(wf, (n, k), &dev).expect("weights tensor");
            let xt = Tensor::from_slice(xs, (m, k), &dev).expect("activations tensor");
            best_seconds(|| {
                let y = xt
                    .matmul(&wt.t().expect("transpose"))
                    .expect("candle matmul");
                std::hint::black_box(y);
            })
        };
        let s8 = if q4_1_gemm::AVAILABLE {
            let p8 = q4_1_gemm::PackedQ4_1::pack(&w, n, k);
            best_seconds(|| q4_1_gemm::matmul(&q8::Q8Rows::quantize(xs, k), &p8, &mut out))
        } else {
            f64::NAN
        };
        println!(
            "{name:8} {n:5} x {k:5}: int16 {:7.1}  f32 {:7.1}  int8 {:7.1}",
            f / s16 / 1e9,
            f / s32 / 1e9,
            f / s8 / 1e9
        );
        (t16, t32, t8, flops) = (t16 + s16, t32 + s32, t8 + s8, flops + f);
    }
    println!(
        "layer    {:>15}: int16 {:7.1}  f32 {:7.1}  int8 {:7.1}",
        "",
        flops / t16 / 1e9,
        flops / t32 / 1e9,
        flops / t8 / 1e9
    );
    if let Some((instruction, gflops)) = peak::gflops() {
        println!(
            "peak of {instruction} on every core: {gflops:.1} GFLOP/s (the int16 layer reaches {:.0} %)",
            100.0 * flops / t16 / 1e9 / gflops
        );
    }
}

/// The integer multiply-add's throughput: independent accumulators on register operands, one
/// thread per core, nothing loaded or stored.
mod peak {
    use std::time::Instant;

    const ITERATIONS: usize = 20_000_000;
    /// Independent chains, enough to cover the instruction's latency on both pipes.
    const CHAINS: usize = 12;

    /// The instruction's name, its multiply-adds, and a loop of `CHAINS` chains of it.
    type Kernel = (&'static str, f64, fn(usize) -> i32);

    /// `CHAINS` chains of `step` from `zero`, each `iterations` long, summed by `add`.
    #[cfg_attr(
        not(all(target_arch = "x86_64", target_feature = "avx2")),
        allow(dead_code)
    )]
    #[inline(always)]
    fn chains<V: Copy>(
        iterations: usize,
        zero: V,
        step: impl Fn(V) -> V,
        add: impl Fn(V, V) -> V,
    ) -> V {
        let mut acc = [zero; CHAINS];
        for _ in 0..iterations {
            for c in acc.iter_mut() {
                *c = step(*c);
            }
        }
        acc.iter().fold(zero, |s, &c| add(s, c))
    }

    pub fn gflops() -> Option<(&'static str, f64)> {
        let (name, macs_per_op, run): Kernel = kernel()?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let best = (0..3)
            .map(|_| {
                let t = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| std::hint::black_box(run(ITERATIONS)));
                    }
                });
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let ops = (threads * ITERATIONS * CHAINS) as f64;
        Some((name, 2.0 * macs_per_op * ops / best / 1e9))
    }

    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512vnni"
    ))]
    fn kernel() -> Option<Kernel> {
        fn run(iterations: usize) -> i32 {
            use std::arch::x86_64::*;
            // SAFETY: the build has AVX-512 F, BW and VNNI.
            unsafe {
                let a = _mm512_set1_epi32(std::hint::black_box(0x0003_0002));
                let b = _mm512_set1_epi32(std::hint::black_box(0x0001_0005));
                let sum = chains(
                    iterations,
                    _mm512_setzero_si512(),
                    |c| _mm512_dpwssd_epi32(c, a, b),
                    |s, c| _mm512_add_epi32(s, c),
                );
                _mm512_reduce_add_epi32(sum)
            }
        }
        Some(("vpdpwssd", 32.0, run))
    }

    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        not(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vnni"
        ))
    ))]
    fn kernel() -> Option<Kernel> {
        fn run(iterations: usize) -> i32 {
            use std::arch::x86_64::*;
            // SAFETY: the build has AVX2.
            unsafe {
                let a = _mm256_set1_epi32(std::hint::black_box(0x0003_0002));
                let b = _mm256_set1_epi32(std::hint::black_box(0x0001_0005));
                // Each product reads its chain's sum, so none is hoisted out of the loop.
                let sum = chains(
                    iterations,
                    _mm256_setzero_si256(),
                    |c| _mm256_add_epi32(a, _mm256_madd_epi16(c, b)),
                    |s, c| _mm256_add_epi32(s, c),
                );
                let mut lanes = [0i32; 8];
                _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, sum);
                lanes.iter().fold(0i32, |s, &l| s.wrapping_add(l))
            }
        }
        Some(("vpmaddwd + vpaddd", 16.0, run))
    }

    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
    fn kernel() -> Option<Kernel> {
        None
    }
}
