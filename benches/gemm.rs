//! `cargo bench --bench gemm`: the batched products of SmolLM2-135M's layers (1024 rows:
//! 16 prompts of 64 tokens) on the 16-bit integer GEMM, activation quantization included,
//! and on the f32 GEMM over the dequantized weights. GFLOP/s for comparing kernels and
//! commits on one machine; end-to-end speed against peers lives in `benches/peers/`.

use ethos::model::kernels::{int16_gemm, q4_1, runs::RunFormat, sgemm};
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
    let (mut t16, mut t32, mut flops) = (0.0, 0.0, 0.0);
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
        let pf = sgemm::PackedWeights::pack(&wf, n, k);
        let s32 = best_seconds(|| sgemm::matmul(xs, m, &pf, &mut out));
        println!(
            "{name:8} {n:5} x {k:5}: int16 {:7.1}  f32 {:7.1}",
            f / s16 / 1e9,
            f / s32 / 1e9
        );
        (t16, t32, flops) = (t16 + s16, t32 + s32, flops + f);
    }
    println!(
        "layer    {:>15}: int16 {:7.1}  f32 {:7.1}",
        "",
        flops / t16 / 1e9,
        flops / t32 / 1e9
    );
}
