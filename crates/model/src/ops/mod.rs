//! Device dispatch. Each op here owns its chain of implementations (our CUDA kernel, our CPU
//! kernel, candle's ops) and the layout checks each link needs; `nn/` holds the model's math
//! and calls these. Which links may be taken is an options value (`Kernels`) that the loader
//! parses once and hands in, and which arithmetic the model follows is its `Numerics`.

pub mod activation;
pub mod attention;
pub mod linear;
pub mod low_rank;
pub mod norm;

use crate::cpu::{int16_gemm, q4_1_gemm};

/// The arithmetic a model follows, fixed at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numerics {
    /// Dense weights in the compute dtype: HF transformers' numbers (the exact path).
    Exact,
    /// llama.cpp's arithmetic, for quantized GGUF weights: q, k, v and the attention
    /// probabilities rounded to f16 as its f16 KV cache does, GELU from its f16 table, and the
    /// activations of one-row products quantized as its kernels quantize them.
    LlamaCpp,
}

/// How batched products of quantized weights run on the CPU (`ETHOS_QUANT_GEMM`).
///
/// `int16` (the default where the CPU has AVX-512 VNNI or AVX2): an integer GEMM on the raw
/// blocks with 16-bit activations, finer than llama.cpp's 8 bits. `f32`: candle's or our f32
/// GEMM on weights dequantized once. `int8` (Q4_1 only): llama.cpp's 8-bit activations,
/// faster again, but their rounding moves log-probs, so it is opt-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantGemm {
    F32,
    Int16,
    Int8,
}

/// Which of our own kernels the ops may take. The defaults are the fastest this build has;
/// `from_env` reads the switches users set for comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernels {
    /// Our CUDA kernels (the fused block boundary, the decode matrix-vector product and
    /// attention); `ETHOS_FUSED_KERNELS=0` turns them off. CPU results never depend on it.
    pub cuda: bool,
    pub quant_gemm: QuantGemm,
    /// Our fused attention kernel where the step computes in f32 on the CPU; off, candle's
    /// ops (the path GPUs take; the same numbers to float tolerance).
    pub cpu_attention: bool,
    /// Run each token through its experts alone instead of grouping tokens by expert (the
    /// baseline `ethos bench speed` measures grouping against; same numbers, slower).
    pub moe_per_token: bool,
}

impl Default for Kernels {
    fn default() -> Self {
        Self {
            cuda: true,
            quant_gemm: if int16_gemm::AVAILABLE {
                QuantGemm::Int16
            } else {
                QuantGemm::F32
            },
            cpu_attention: true,
            moe_per_token: false,
        }
    }
}

impl Kernels {
    /// The defaults, with `ETHOS_FUSED_KERNELS` and `ETHOS_QUANT_GEMM` applied (a choice this
    /// build cannot run falls back to the default).
    pub fn from_env() -> Self {
        let default = Self::default();
        let quant_gemm = match std::env::var("ETHOS_QUANT_GEMM").as_deref() {
            Ok("f32") => QuantGemm::F32,
            Ok("int8") if q4_1_gemm::AVAILABLE => QuantGemm::Int8,
            _ => default.quant_gemm,
        };
        Self {
            cuda: std::env::var("ETHOS_FUSED_KERNELS").map_or(true, |v| v != "0"),
            quant_gemm,
            ..default
        }
    }
}

/// The f32 elements of a CPU tensor's storage from its layout's start (our kernels read
/// tensors in place rather than copying them out).
pub(crate) fn cpu_f32<'a>(
    g: &'a candle_core::StorageRef<'_>,
    l: &candle_core::Layout,
) -> crate::error::Result<&'a [f32]> {
    match &**g {
        candle_core::Storage::Cpu(c) => Ok(&c.as_slice::<f32>()?[l.start_offset()..]),
        _ => Err(crate::error::Error::Msg(
            "this CPU kernel needs CPU tensors".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test that sets these variables: nothing else in the crate reads them.
    #[test]
    fn switches_are_read_from_the_environment() {
        std::env::set_var("ETHOS_FUSED_KERNELS", "0");
        std::env::set_var("ETHOS_QUANT_GEMM", "f32");
        let k = Kernels::from_env();
        assert!(!k.cuda);
        assert_eq!(k.quant_gemm, QuantGemm::F32);
        std::env::set_var("ETHOS_QUANT_GEMM", "bogus");
        assert_eq!(
            Kernels::from_env().quant_gemm,
            Kernels::default().quant_gemm
        );
        std::env::remove_var("ETHOS_FUSED_KERNELS");
        std::env::remove_var("ETHOS_QUANT_GEMM");
        assert_eq!(Kernels::from_env(), Kernels::default());
    }
}
