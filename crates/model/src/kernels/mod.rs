//! CPU kernels of our own for quantized formats: candle 0.11 has no SIMD path for Q4_1, and
//! our Q8_0 kernel quantizes activations exactly as llama.cpp does, so the quantized path
//! reproduces llama.cpp's numbers (its golden greedy text token for token).
pub mod q4_1;
pub mod q8;
pub mod q8_0;
