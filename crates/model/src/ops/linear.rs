//! One linear layer for every weight format, so each architecture is written once.
//!
//! - `Dense`: f32/bf16/f16 weights (safetensors, or GGUF dequantized with `--dtype f32`).
//! - `Own`: Q4_1 and Q8_0 raw blocks on the CPU (our kernels read them).
//! - `Quant`: every other GGUF type, kept as candle's `QMatMul`.
//!
//! On the CPU in f32 every call to a layer takes the same arithmetic whatever its number of
//! rows (`Family`), so a row's numbers never depend on the rows beside it (the
//! batch-invariance guarantee). The types that store runs of 32 as `d * q + m` (Q4_0/1,
//! Q5_0/1, Q8_0, Q4_K) take 16-bit activations: calls of at least `DENSE_MIN_ROWS` rows an
//! integer GEMM on weights repacked once (`cpu::int16_gemm`), fewer rows (decode) the same
//! sums on compact weights (`int16_gemm::CompactInt16`). Other types take an f32 GEMM on
//! dequantized weights for every call, on AVX-512 our own (`cpu::sgemm`, also every product
//! of f32 dense weights). The choices are `ops::QuantGemm`.

use crate::cpu::runs::RunFormat;
use crate::cpu::{int16_gemm, q4_1, q4_1_gemm, q8, q8_0, sgemm};
use crate::error::{Error, Result};
use crate::ops::low_rank::LowRank;
use crate::ops::{Kernels, QuantGemm};
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

pub const DENSE_MIN_ROWS: usize = 16;

pub enum Weight {
    Dense(Tensor),
    /// Our own CPU kernels (see `cpu/`): raw GGUF blocks, row-major.
    Own {
        kind: OwnKind,
        bytes: Arc<Vec<u8>>,
        device: Device,
    },
    Quant {
        q: Arc<QTensor>,
        matmul: QMatMul,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnKind {
    Q4_1,
    Q8_0,
}

impl OwnKind {
    fn run_format(self) -> RunFormat {
        match self {
            OwnKind::Q4_1 => RunFormat::Q4_1,
            OwnKind::Q8_0 => RunFormat::Q8_0,
        }
    }

    fn block_bytes(self) -> usize {
        self.run_format().block_bytes()
    }
}

/// The arithmetic of a quantized layer's products on the CPU in f32 (`Linear::cpu_family`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    /// 16-bit activations: the GEMM for many rows, `CompactInt16` for few.
    Int16,
    /// llama.cpp's 8-bit activations (Q4_1, `ETHOS_QUANT_GEMM=int8`).
    Int8,
    /// The f32 product on dequantized weights, for every row count.
    F32,
    /// Weights that stay quantized for every size (routed experts) in a type the 16-bit
    /// kernels do not read: llama.cpp's or candle's kernels.
    Native,
}

enum Batched {
    Packed(sgemm::PackedWeights),
    Dense(Tensor),
    Int8(q4_1_gemm::PackedQ4_1),
    Int16(int16_gemm::PackedInt16),
}

pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    out_features: usize,
    in_features: usize,
    /// The weights as batched calls use them, made on first use: packed for our AVX-512
    /// GEMM (f32 on CPU), else a dense tensor (quantized weights only).
    batched: OnceLock<Batched>,
    /// Quantized weights may switch to that dense copy for batched calls (see the module
    /// comment); off for routed experts, whose dense copies would hold every expert in f32.
    dense_batches: bool,
    /// A fused gate and up projection packed for `int16_gemm::matmul_swiglu`, made on the
    /// first `swiglu_forward` (`None`: the weights do not suit it).
    swiglu: OnceLock<Option<int16_gemm::PackedInt16>>,
    /// The weights as calls of few rows read them where batched calls take the 16-bit
    /// GEMM: compact, with the GEMM's arithmetic (`int16_gemm::CompactInt16`), made on first
    /// use.
    compact: OnceLock<int16_gemm::CompactInt16>,
    /// Which of our kernels the products may take (the tensor source sets the loader's).
    kernels: Kernels,
    /// Adapters' low-rank updates added to the product, unmerged (`lora`).
    low_rank: Option<Box<LowRank>>,
    /// Named adapters' updates (index into `lora::Adapters::named`), added to the rows the
    /// running selection gives them (`low_rank::with_row_adapters`).
    slots: Vec<(usize, LowRank)>,
}

impl Linear {
    /// A layer of `weight` `(out, in)`: nothing batched made yet, the default kernels.
    fn from_weight(
        weight: Weight,
        bias: Option<Tensor>,
        out_features: usize,
        in_features: usize,
    ) -> Self {
        Self {
            weight,
            bias,
            out_features,
            in_features,
            batched: OnceLock::new(),
            swiglu: OnceLock::new(),
            compact: OnceLock::new(),
            dense_batches: true,
            kernels: Kernels::default(),
            low_rank: None,
            slots: Vec::new(),
        }
    }

    pub fn dense(w: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_features, in_features) = w.dims2()?;
        Ok(Self::from_weight(
            Weight::Dense(w),
            bias,
            out_features,
            in_features,
        ))
    }

    /// Wraps a GGUF tensor of shape `(out, in)`; Q4_1 and Q8_0 on the CPU take our own kernels.
    pub fn quantized(q: Arc<QTensor>, bias: Option<Tensor>) -> Result<Self> {
        let (out_features, in_features) = q.shape().dims2()?;
        let device = q.device();
        let own = match q.dtype() {
            GgmlDType::Q4_1 => Some(OwnKind::Q4_1),
            GgmlDType::Q8_0 => Some(OwnKind::Q8_0),
            _ => None,
        };
        let weight = if let (Some(kind), true) = (own, device.is_cpu()) {
            Weight::Own {
                kind,
                bytes: Arc::new(q.data()?.into_owned()),
                device,
            }
        } else {
            Weight::Quant {
                matmul: QMatMul::from_arc(q.clone())?,
                q,
            }
        };
        Ok(Self::from_weight(weight, bias, out_features, in_features))
    }

    /// The products take the kernels `kernels` allows.
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    /// Adds a low-rank update to every product (adapters, unmerged).
    pub fn with_low_rank(mut self, update: LowRank) -> Result<Self> {
        self.low_rank = Some(Box::new(update));
        Ok(self)
    }

    /// Adds a named adapter's update (`index` into `lora::Adapters::named`), applied to the
    /// rows a selection gives it.
    pub fn with_slot(mut self, index: usize, update: LowRank) -> Result<Self> {
        self.slots.push((index, update));
        Ok(self)
    }

    /// The layer with a low-rank update merged into dense weights of `dtype`.
    pub fn merged(self, update: &LowRank, dtype: DType) -> Result<Self> {
        let w = (self.dequantize()?.to_dtype(DType::F32)? + update.delta()?)?.to_dtype(dtype)?;
        let kernels = self.kernels;
        let mut merged = Linear::dense(w, self.bias)?.with_kernels(kernels);
        merged.dense_batches = self.dense_batches;
        merged.slots = self.slots;
        Ok(merged)
    }

    /// The rank of the adapters' update, if the layer has one.
    pub fn low_rank(&self) -> Option<usize> {
        self.low_rank.as_deref().map(LowRank::rank)
    }

    /// Keeps quantized weights quantized for calls of any size.
    pub fn without_dense_batches(mut self) -> Self {
        self.dense_batches = false;
        self
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// The weights the layer applies as a dense f32 tensor `(out, in)`: its own plus any
    /// adapters' update.
    pub fn dequantize(&self) -> Result<Tensor> {
        let w = self.base_weights()?;
        match &self.low_rank {
            Some(l) => Ok((w.to_dtype(DType::F32)? + l.delta()?)?),
            None => Ok(w),
        }
    }

    /// The layer's own weights as a dense tensor `(out, in)`, without adapters.
    fn base_weights(&self) -> Result<Tensor> {
        match &self.weight {
            Weight::Dense(w) => Ok(w.clone()),
            Weight::Own {
                kind,
                bytes,
                device,
            } => {
                let mut out = vec![0f32; self.out_features * self.in_features];
                let row_bytes = self.in_features / q8::QK * kind.block_bytes();
                let kind = *kind;
                out.par_chunks_mut(self.in_features)
                    .zip(bytes.par_chunks(row_bytes))
                    .for_each(|(o, w)| match kind {
                        OwnKind::Q4_1 => q4_1::dequantize(w, o),
                        OwnKind::Q8_0 => q8_0::dequantize(w, o),
                    });
                Ok(Tensor::from_vec(
                    out,
                    (self.out_features, self.in_features),
                    device,
                )?)
            }
            Weight::Quant { q, .. } => Ok(q.dequantize(&q.device())?),
        }
    }

    /// Converts to a dense layer of `dtype` (the exact reference path for GGUF files).
    pub fn into_dense(self, dtype: DType) -> Result<Self> {
        let w = self.base_weights()?.to_dtype(dtype)?;
        let mut dense = Linear::dense(w, self.bias)?.with_kernels(self.kernels);
        dense.low_rank = self.low_rank;
        dense.slots = self.slots;
        Ok(dense)
    }

    /// The raw blocks of quantized CPU weights whose type stores runs of 32 (`RunFormat`).
    fn cpu_runs(&self) -> Result<Option<(RunFormat, std::borrow::Cow<'_, [u8]>)>> {
        Ok(match &self.weight {
            Weight::Own { kind, bytes, .. } => Some((
                kind.run_format(),
                std::borrow::Cow::Borrowed(bytes.as_slice()),
            )),
            Weight::Quant { q, .. } if q.device().is_cpu() => match RunFormat::of(q.dtype()) {
                Some(f) => Some((f, q.data()?)),
                None => None,
            },
            _ => None,
        })
    }

    /// For a fused gate and up projection (gate's rows first, then up's): `silu(gate(x)) *
    /// up(x)`, `(..., out / 2)`, in one product whose tiles apply SiLU as they store
    /// (`int16_gemm::matmul_swiglu`), where the product would take the 16-bit integer GEMM;
    /// `None` elsewhere (the caller takes the product and `silu_mul` apart, the same bits).
    pub fn swiglu_forward(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let rows = x.elem_count() / self.in_features.max(1);
        let usable = x.device().is_cpu()
            && x.dtype() == DType::F32
            && rows >= DENSE_MIN_ROWS
            && self.dense_batches
            && self.bias.is_none()
            && self.low_rank.is_none()
            && self.slots.is_empty()
            && self.kernels.quant_gemm == QuantGemm::Int16
            && self.out_features.is_multiple_of(32);
        if !usable {
            return Ok(None);
        }
        let packed = match self.swiglu.get() {
            Some(p) => p,
            None => {
                let (n, k) = (self.out_features, self.in_features);
                let p = self.cpu_runs()?.map(|(format, bytes)| {
                    int16_gemm::PackedInt16::pack_swiglu(format, &bytes, n, k)
                });
                self.swiglu.get_or_init(|| p)
            }
        };
        let Some(packed) = packed else {
            return Ok(None);
        };
        let half = self.out_features / 2;
        let x2 = x.reshape((rows, self.in_features))?;
        let h = self.cpu_product(&x2, half, |a, _| {
            int16_gemm::matmul_swiglu(&int16_gemm::Q16Rows::quantize(a, self.in_features), packed)
        })?;
        let mut dims = x.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = half;
        }
        Ok(Some(h.reshape(dims)?))
    }

    /// `cpu_f32`: the calls are f32 on the CPU, where our kernels run.
    fn batched_weights(&self, cpu_f32: bool) -> Result<&Batched> {
        if let Some(b) = self.batched.get() {
            return Ok(b);
        }
        // The f32 choice dequantizes below; only the integer GEMMs read the raw blocks.
        if cpu_f32 && self.kernels.quant_gemm != QuantGemm::F32 {
            let (n, k) = (self.out_features, self.in_features);
            let choice = match (self.kernels.quant_gemm, self.cpu_runs()?) {
                (QuantGemm::Int8, Some((RunFormat::Q4_1, bytes))) => {
                    Some(Batched::Int8(q4_1_gemm::PackedQ4_1::pack(&bytes, n, k)))
                }
                (QuantGemm::Int8 | QuantGemm::Int16, Some((format, bytes)))
                    if int16_gemm::AVAILABLE =>
                {
                    Some(Batched::Int16(int16_gemm::PackedInt16::pack(
                        format, &bytes, n, k,
                    )))
                }
                _ => None,
            };
            if let Some(b) = choice {
                return Ok(self.batched.get_or_init(|| b));
            }
        }
        let w = self.base_weights()?;
        let b = if cpu_f32 && sgemm::AVAILABLE {
            let flat = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            Batched::Packed(sgemm::PackedWeights::pack(
                &flat,
                self.out_features,
                self.in_features,
            ))
        } else {
            Batched::Dense(w)
        };
        Ok(self.batched.get_or_init(|| b))
    }

    /// The product on the batched path: our AVX-512 GEMM on f32 CPU tensors, else candle's.
    fn batched_forward(&self, x2: &Tensor) -> Result<Tensor> {
        Ok(self.batched_forward_with_update(x2, None)?.0)
    }

    /// `batched_forward`, with `update`'s low-rank update added into the product's own
    /// buffer where the product is one of our CPU kernels (no bias to keep apart): its up
    /// product adds each sum to the value as it stores it, the bits of the product followed
    /// by `LowRank::add_to`, without the buffer and the add between them. Also says whether
    /// it added the update.
    fn batched_forward_with_update(
        &self,
        x2: &Tensor,
        update: Option<&LowRank>,
    ) -> Result<(Tensor, bool)> {
        // bf16/f16 on the CPU: the f32 GEMM on the exact f32 values of both operands, the
        // result rounded back (and the update, if any, added to it by the caller). candle's
        // half-precision GEMM picks its kernel by the number of rows, so a row's numbers
        // would follow its batch.
        if x2.device().is_cpu()
            && matches!(x2.dtype(), DType::BF16 | DType::F16)
            && sgemm::AVAILABLE
            && matches!(self.weight, Weight::Dense(_))
        {
            let y = self.batched_forward(&x2.to_dtype(DType::F32)?)?;
            return Ok((y.to_dtype(x2.dtype())?, false));
        }
        let cpu_f32 = x2.device().is_cpu() && x2.dtype() == DType::F32;
        let sgemm_ok = sgemm::AVAILABLE && cpu_f32;
        if let (false, Weight::Dense(w)) = (sgemm_ok, &self.weight) {
            // Decode on CUDA: our matrix-vector kernel streams the weights once (cuBLAS's
            // general GEMM reaches well under the memory bandwidth at one row).
            if x2.device().is_cuda() && self.kernels.cuda && ethos_kernels::gemv_supported(x2, w) {
                return Ok((ethos_kernels::gemv(&x2.contiguous()?, w)?, false));
            }
            return Ok((x2.matmul(&w.t()?)?, false));
        }
        let update = match update {
            Some(l) if self.bias.is_none() && sgemm::AVAILABLE && cpu_f32 => Some(l.packed()?),
            _ => None,
        };
        let add_update = |a: &[f32], rows: usize, out: &mut [f32]| {
            if let Some((down, up)) = update {
                let mut h = vec![0f32; rows * down.n];
                sgemm::matmul(a, rows, down, &mut h);
                sgemm::matmul_add(&h, rows, up, out);
            }
        };
        let y = match self.batched_weights(cpu_f32)? {
            Batched::Packed(p) => self.cpu_product(x2, self.out_features, |a, rows| {
                let mut out = vec![0f32; rows * self.out_features];
                sgemm::matmul(a, rows, p, &mut out);
                add_update(a, rows, &mut out);
                out
            })?,
            Batched::Dense(w) => {
                let y = x2
                    .to_dtype(w.dtype())?
                    .matmul(&w.t()?)?
                    .to_dtype(x2.dtype())?;
                return Ok((y, false));
            }
            Batched::Int8(p) => self.cpu_product(x2, self.out_features, |a, rows| {
                let mut out = vec![0f32; rows * self.out_features];
                q4_1_gemm::matmul(&q8::Q8Rows::quantize(a, self.in_features), p, &mut out);
                add_update(a, rows, &mut out);
                out
            })?,
            Batched::Int16(p) => self.cpu_product(x2, self.out_features, |a, rows| {
                let mut out =
                    int16_gemm::matmul(&int16_gemm::Q16Rows::quantize(a, self.in_features), p);
                add_update(a, rows, &mut out);
                out
            })?,
        };
        Ok((y, update.is_some()))
    }

    /// `(rows, out)` from one of our CPU kernels, `product(activations, rows)`, which reads
    /// the activations `x2` `(rows, in)` in place (a copy per product showed in an eval's
    /// profile).
    fn cpu_product(
        &self,
        x2: &Tensor,
        cols: usize,
        product: impl FnOnce(&[f32], usize) -> Vec<f32>,
    ) -> Result<Tensor> {
        let rows = x2.dim(0)?;
        let x2 = x2.contiguous()?;
        let out = {
            let (storage, layout) = x2.storage_and_layout();
            let a = &super::cpu_f32(&storage, layout)?[..rows * self.in_features];
            product(a, rows)
        };
        Ok(Tensor::from_vec(out, (rows, cols), x2.device())?)
    }

    /// Which arithmetic a call on the CPU in f32 takes for these quantized weights: every
    /// row count of a layer takes the same one, so a row's numbers do not depend on the rows
    /// beside it (the batch-invariance guarantee).
    fn cpu_family(&self) -> Result<Family> {
        let int8 = self.kernels.quant_gemm == QuantGemm::Int8
            && matches!(
                self.weight,
                Weight::Own {
                    kind: OwnKind::Q4_1,
                    ..
                }
            );
        Ok(if int8 {
            Family::Int8
        } else if self.kernels.quant_gemm != QuantGemm::F32
            && int16_gemm::AVAILABLE
            && self.cpu_runs()?.is_some()
        {
            Family::Int16
        } else if self.dense_batches {
            Family::F32
        } else {
            Family::Native
        })
    }

    /// A call of fewer rows than the batched path takes (or any call to weights kept
    /// quantized for every size): the batched path's arithmetic on compact weights where
    /// there is one, else the batched path itself; llama.cpp's 8-bit one-row kernels where
    /// the user chose its arithmetic (`ETHOS_QUANT_GEMM=int8`); candle's `QMatMul` off the
    /// CPU. Also says whether the product added the layer's low-rank update itself (the
    /// compact weights' product adds it panel by panel, on the threads that computed each).
    fn few_rows_forward(&self, x2: &Tensor) -> Result<(Tensor, bool)> {
        let rows = x2.dim(0)?;
        let cpu_f32 = x2.device().is_cpu() && x2.dtype() == DType::F32;
        // Compact weights exist only where the family is `Int16`: no need to ask again.
        let family = match (cpu_f32, self.compact.get()) {
            (false, _) => Family::Native,
            (true, Some(_)) => Family::Int16,
            (true, None) => self.cpu_family()?,
        };
        let y = match (family, &self.weight) {
            (Family::Int16, _) => {
                let compact = match self.compact.get() {
                    Some(c) => c,
                    None => {
                        let Some((format, bytes)) = self.cpu_runs()? else {
                            return Err(Error::Msg("compact weights need GGUF runs".into()));
                        };
                        let c = int16_gemm::CompactInt16::pack(
                            format,
                            &bytes,
                            self.out_features,
                            self.in_features,
                        );
                        self.compact.get_or_init(|| c)
                    }
                };
                // The update goes in before the bias where there is none to keep apart.
                let update = match (&self.low_rank, &self.bias) {
                    (Some(l), None) => l.few_rows(rows),
                    _ => None,
                };
                let y = self.cpu_product(x2, self.out_features, |a, rows| {
                    let q = int16_gemm::Q16Rows::quantize(a, self.in_features);
                    match update {
                        Some(u) => {
                            // The down sums on one thread while the others start on the
                            // panels; the up sums once both are done.
                            let h = std::sync::OnceLock::new();
                            int16_gemm::matmul_few_then(
                                &q,
                                compact,
                                || {
                                    let _ = h.set(u.down(a, rows));
                                },
                                |tile| {
                                    let h = h.get().expect("prepared before finishing");
                                    u.up_tile(h, tile, 1.0)
                                },
                            )
                        }
                        None => int16_gemm::matmul_few(&q, compact),
                    }
                })?;
                return Ok((y, update.is_some()));
            }
            (Family::F32, _) => self.batched_forward(x2),
            (
                Family::Int8 | Family::Native,
                Weight::Own {
                    kind,
                    bytes,
                    device,
                },
            ) => {
                let xs = x2.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                let xq = q8::Q8Rows::quantize(&xs, self.in_features);
                let mut out = vec![0f32; rows * self.out_features];
                match kind {
                    OwnKind::Q4_1 => {
                        q4_1::matmul(bytes, self.out_features, self.in_features, &xq, &mut out)
                    }
                    OwnKind::Q8_0 => {
                        q8_0::matmul(bytes, self.out_features, self.in_features, &xq, &mut out)
                    }
                }
                Ok(Tensor::from_vec(out, (rows, self.out_features), device)?
                    .to_dtype(x2.dtype())?)
            }
            (_, Weight::Quant { matmul, .. }) => Ok(matmul.forward(x2)?),
            (_, Weight::Dense(_)) => self.batched_forward(x2),
        };
        Ok((y?, false))
    }

    /// `x` of shape `(..., in)` to `(..., out)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let rows = x.elem_count() / self.in_features.max(1);
        let x2 = x.reshape((rows, self.in_features))?;
        let (y, update_added) = match &self.weight {
            Weight::Dense(_) => self.batched_forward_with_update(&x2, self.low_rank.as_deref())?,
            _ if rows >= DENSE_MIN_ROWS && self.dense_batches => {
                self.batched_forward_with_update(&x2, self.low_rank.as_deref())?
            }
            _ => self.few_rows_forward(&x2)?,
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let y = match &self.low_rank {
            Some(l) if !update_added => l.add_to(&x2, y)?,
            _ => y,
        };
        let y = if self.slots.is_empty() {
            y
        } else {
            crate::ops::low_rank::add_selected(&self.slots, &x2, y)?
        };
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = self.out_features;
        }
        Ok(y.reshape(out_dims)?)
    }

    /// Stacks layers along the output dimension, so that q/k/v (or gate/up) take one product.
    /// Returns `None` when the parts are stored in different formats.
    pub fn concat(parts: &[Linear]) -> Result<Option<Linear>> {
        let Some(first) = parts.first() else {
            return Ok(None);
        };
        if parts.iter().any(|p| p.in_features != first.in_features) {
            return Err(Error::Msg(
                "concatenated layers must share their input size".into(),
            ));
        }
        let bias = if parts.iter().all(|p| p.bias.is_some()) {
            let bs: Vec<&Tensor> = parts.iter().filter_map(|p| p.bias.as_ref()).collect();
            Some(Tensor::cat(&bs, 0)?)
        } else if parts.iter().all(|p| p.bias.is_none()) {
            None
        } else {
            return Ok(None);
        };
        let out: usize = parts.iter().map(|p| p.out_features).sum();
        let low_rank = LowRank::concat(
            &parts
                .iter()
                .map(|p| (p.low_rank.as_deref(), p.out_features))
                .collect::<Vec<_>>(),
        )?;
        let weight = match &first.weight {
            Weight::Dense(_) => {
                let ws: Option<Vec<&Tensor>> = parts
                    .iter()
                    .map(|p| match &p.weight {
                        Weight::Dense(w) => Some(w),
                        _ => None,
                    })
                    .collect();
                let Some(ws) = ws else { return Ok(None) };
                Weight::Dense(Tensor::cat(&ws, 0)?)
            }
            Weight::Own { kind, device, .. } => {
                let mut all = Vec::new();
                for p in parts {
                    match &p.weight {
                        Weight::Own { kind: k, bytes, .. } if k == kind => {
                            all.extend_from_slice(bytes)
                        }
                        _ => return Ok(None),
                    }
                }
                Weight::Own {
                    kind: *kind,
                    bytes: Arc::new(all),
                    device: device.clone(),
                }
            }
            Weight::Quant { q, .. } => {
                let dtype = q.dtype();
                let mut all = Vec::new();
                for p in parts {
                    match &p.weight {
                        Weight::Quant { q, .. } if q.dtype() == dtype => {
                            all.extend_from_slice(&q.data()?)
                        }
                        _ => return Ok(None),
                    }
                }
                let storage =
                    QStorage::from_data(std::borrow::Cow::Owned(all), &q.device(), dtype)?;
                let q = Arc::new(QTensor::new(storage, (out, first.in_features))?);
                Weight::Quant {
                    matmul: QMatMul::from_arc(q.clone())?,
                    q,
                }
            }
        };
        let mut fused = Linear::from_weight(weight, bias, out, first.in_features);
        fused.low_rank = low_rank.map(Box::new);
        let mut ids: Vec<usize> = parts
            .iter()
            .flat_map(|p| p.slots.iter().map(|(i, _)| *i))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let stacked: Vec<(Option<&LowRank>, usize)> = parts
                .iter()
                .map(|p| {
                    let l = p.slots.iter().find(|(i, _)| *i == id).map(|(_, l)| l);
                    (l, p.out_features)
                })
                .collect();
            if let Some(l) = LowRank::concat(&stacked)? {
                fused.slots.push((id, l));
            }
        }
        Ok(Some(fused))
    }
}

/// Several projections of the same input, run as one product when their formats allow.
pub struct MultiLinear {
    fused: Option<Linear>,
    parts: Vec<Linear>,
    sizes: Vec<usize>,
}

impl MultiLinear {
    pub fn new(parts: Vec<Linear>) -> Result<Self> {
        let sizes = parts.iter().map(Linear::out_features).collect();
        let fused = Linear::concat(&parts)?;
        // Once fused, the parts are no longer needed.
        let parts = if fused.is_some() { Vec::new() } else { parts };
        Ok(Self {
            fused,
            parts,
            sizes,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match &self.fused {
            Some(l) => {
                let y = l.forward(x)?;
                let last = y.rank() - 1;
                let mut start = 0;
                let mut out = Vec::with_capacity(self.sizes.len());
                for &n in &self.sizes {
                    out.push(y.narrow(last, start, n)?);
                    start += n;
                }
                Ok(out)
            }
            None => self.parts.iter().map(|p| p.forward(x)).collect(),
        }
    }

    /// `silu(gate(x)) * up(x)` for a fused pair [gate, up] of equal sizes where
    /// `Linear::swiglu_forward` takes it; `None` elsewhere.
    pub fn swiglu_forward(&self, x: &Tensor) -> Result<Option<Tensor>> {
        match (&self.fused, self.sizes.as_slice()) {
            (Some(l), [g, u]) if g == u => l.swiglu_forward(x),
            _ => Ok(None),
        }
    }

    /// Each part's output `(..., n_i)` as heads `(..., n_i / head_dim, head_dim)`. The fused
    /// product is viewed in place (a reshape of its narrowed parts would copy them).
    pub fn forward_heads(&self, x: &Tensor, head_dim: usize) -> Result<Vec<Tensor>> {
        let split = |t: &Tensor, n: usize| -> Result<Tensor> {
            let mut dims = t.dims().to_vec();
            dims.pop();
            dims.extend([n / head_dim, head_dim]);
            Ok(t.reshape(dims)?)
        };
        match &self.fused {
            Some(l) if self.sizes.iter().all(|n| n % head_dim == 0) => {
                let y = l.forward(x)?;
                let total = y.dim(candle_core::D::Minus1)?;
                let heads = split(&y, total)?;
                let axis = heads.rank() - 2;
                let mut start = 0;
                let mut out = Vec::with_capacity(self.sizes.len());
                for &n in &self.sizes {
                    out.push(heads.narrow(axis, start / head_dim, n / head_dim)?);
                    start += n;
                }
                Ok(out)
            }
            _ => self
                .forward(x)?
                .iter()
                .zip(&self.sizes)
                .map(|(t, &n)| split(t, n))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quantized layer gives the product of its dequantized weights on both paths: a call of
    /// few rows (llama.cpp's 8-bit kernels, or candle's) and a batched call (the GEMM
    /// `Kernels::quant_gemm` picks), for our own kernels' types (Q4_1, Q8_0) and candle's (Q5_0, Q4_K).
    #[test]
    fn quantized_layers_match_their_dequantized_weights_on_both_paths() {
        let (n, k, rows) = (40, 256, 24);
        let wv: Vec<f32> = (0..n * k)
            .map(|i| ((i * 29 % 61) as f32 - 30.0) / 40.0)
            .collect();
        let w = Tensor::from_vec(wv, (n, k), &Device::Cpu).unwrap();
        let xv: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let x = Tensor::from_vec(xv.clone(), (rows, k), &Device::Cpu).unwrap();
        let flat = |t: Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
        for t in [
            GgmlDType::Q4_1,
            GgmlDType::Q8_0,
            GgmlDType::Q5_0,
            GgmlDType::Q4K,
        ] {
            let q = QTensor::quantize(&w, t).unwrap();
            let lin = Linear::quantized(Arc::new(q), None).unwrap();
            let wd = flat(lin.dequantize().unwrap());
            let batched = flat(lin.forward(&x).unwrap());
            let few = flat(lin.forward(&x.narrow(0, 0, 2).unwrap()).unwrap());
            for i in 0..rows {
                for j in 0..n {
                    let exact: f64 = (0..k)
                        .map(|e| wd[j * k + e] as f64 * xv[i * k + e] as f64)
                        .sum();
                    let scale = 1.0 + exact.abs();
                    // Quantized activations are each off by at most half a step of their
                    // block, whose largest magnitude is at most the row's.
                    let amax = xv[i * k..(i + 1) * k]
                        .iter()
                        .fold(0f32, |a, v| a.max(v.abs())) as f64;
                    let wsum: f64 = wd[j * k..(j + 1) * k].iter().map(|v| v.abs() as f64).sum();
                    // 16-bit steps, at most 2/32767 of the block's largest (or none, on the
                    // f32 GEMM).
                    let bound16 = wsum * amax / 32767.0 + 1e-5 * scale;
                    let b = batched[i * n + j] as f64;
                    assert!(
                        (b - exact).abs() <= bound16,
                        "{t:?} batched [{i},{j}]: {b} vs {exact} (bound {bound16})"
                    );
                    if i < 2 {
                        // 8-bit steps.
                        let bound = wsum * amax / 254.0 + 1e-4 * scale;
                        let f = few[i * n + j] as f64;
                        assert!(
                            (f - exact).abs() <= bound,
                            "{t:?} few [{i},{j}]: {f} vs {exact} (bound {bound})"
                        );
                    }
                }
            }
        }
    }
}
