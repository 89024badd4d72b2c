//! Where tensors come from. Architectures ask for tensors by their HF names; each source maps
//! those to its own layout (GGUF through the table in `names`), checks shapes before loading,
//! and decides whether a matrix stays quantized.

pub mod dummy;
pub mod fp8;
pub mod gguf;
pub(crate) mod gguf_header;
pub mod names;
pub mod safetensors;

use crate::decoder::Embedding;
use crate::error::Result;
use crate::ops::linear::Linear;
use crate::ops::Kernels;
use candle_core::{DType, Device, Tensor};
use std::path::Path;

pub trait TensorSource {
    /// The file (or folder) named in errors.
    fn path(&self) -> &Path;
    fn device(&self) -> &Device;
    fn contains(&self, name: &str) -> bool;
    /// A small tensor (norm weight, bias) in `dtype`, checked against `shape`.
    fn dense(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor>;
    /// A weight matrix `(out, in)`; quantized sources keep it quantized unless `dtype` forces dense.
    fn linear(&mut self, name: &str, shape: [usize; 2], bias: Option<Tensor>) -> Result<Linear>;
    fn embedding(&mut self, name: &str, shape: [usize; 2]) -> Result<Embedding>;
    /// The output head tied to the embedding matrix `name`.
    fn tied_head(&mut self, name: &str, shape: [usize; 2]) -> Result<Linear>;
    /// Whether the tensors come from a GGUF file, where llama.cpp's converter stores some
    /// differently from HF (the architectures that care ask).
    fn is_gguf(&self) -> bool {
        false
    }
    /// Which of our kernels the matrices this source makes may take.
    fn kernels(&self) -> Kernels {
        Kernels::default()
    }
}
