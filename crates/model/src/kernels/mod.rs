//! CPU kernels of our own. candle 0.11 has no SIMD path for Q4_1 and only AVX2 for f32
//! GEMM; our one-row Q4_1/Q8_0 kernels (decode) also quantize activations exactly as
//! llama.cpp does, so the quantized path reproduces llama.cpp's numbers (its golden greedy
//! text token for token). Batched products (prefill, scoring) of the types `runs` reads use
//! 16-bit activations (`int16_gemm`), finer than llama.cpp's 8 bits; the attention kernels
//! and `rope` keep llama.cpp's f16 rounding of q, k, v and the probabilities.
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
}
pub(crate) use by_rows;

pub mod attention;
pub mod attention_products;
pub mod int16_gemm;
pub mod q4_1;
pub mod q4_1_gemm;
pub mod q8;
pub mod q8_0;
pub mod rope;
pub mod runs;
pub mod sgemm;
pub mod vexp;
