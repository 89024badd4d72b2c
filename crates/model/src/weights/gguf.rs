//! GGUF files: header validation, hyper-parameters from the metadata, tensors by HF name.
//!
//! Every tensor's extent is checked against the file size before anything is read, so a
//! corrupt or hostile header fails with one line instead of a huge allocation.

use super::names::expert_tensor;
use super::TensorSource;
use crate::config::{Arch, ModelConfig};
use crate::decoder::Embedding;
use crate::error::{one_line, Error, Result};
use crate::ops::linear::Linear;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct GgufFile {
    pub path: PathBuf,
    pub content: Content,
    file: File,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let alignment = super::gguf_header::check(
            path,
            &mut std::io::BufReader::with_capacity(1 << 16, &mut file),
            file_size,
        )?;
        std::io::Seek::rewind(&mut file).map_err(|e| Error::io(path, e))?;
        // Buffered: the metadata (a tokenizer's vocabulary and merges) is some 100,000 small
        // strings, each two reads of its own; unbuffered, those syscalls took about a fifth
        // of a second.
        let content = Content::read(&mut std::io::BufReader::with_capacity(1 << 16, &mut file))
            .map_err(|e| Error::format(path, format!("not a valid GGUF file: {}", one_line(&e))))?;
        check_tensor_layout(path, &content, file_size, alignment)?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
            file,
        })
    }

    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn field_err(&self, key: &str, msg: &str) -> Error {
        Error::config(&self.path, key, msg.to_string())
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self
            .meta(key)
            .ok_or_else(|| self.field_err(key, "missing"))?;
        let n = match v {
            Value::U8(x) => *x as u64,
            Value::U16(x) => *x as u64,
            Value::U32(x) => *x as u64,
            Value::U64(x) => *x,
            Value::I8(x) if *x >= 0 => *x as u64,
            Value::I16(x) if *x >= 0 => *x as u64,
            Value::I32(x) if *x >= 0 => *x as u64,
            Value::I64(x) if *x >= 0 => *x as u64,
            _ => return Err(self.field_err(key, "not a non-negative integer")),
        };
        Ok(n)
    }

    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let n = self.get_u64(key)?;
        usize::try_from(n).map_err(|_| self.field_err(key, "too large"))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64> {
        match self.meta(key) {
            Some(Value::F32(x)) => Ok(*x as f64),
            Some(Value::F64(x)) => Ok(*x),
            Some(_) => Err(self.field_err(key, "not a number")),
            None => Err(self.field_err(key, "missing")),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.meta(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(self.field_err(key, "not a string")),
            None => Err(self.field_err(key, "missing")),
        }
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.meta(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// End-of-sequence ids: EOS and, where the file names one, end-of-turn.
    pub fn eos_ids(&self) -> Vec<u32> {
        let mut eos = Vec::new();
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            if let Ok(id) = self.get_u64(key) {
                if !eos.contains(&(id as u32)) {
                    eos.push(id as u32);
                }
            }
        }
        eos
    }

    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    pub fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        self.content
            .tensor(&mut self.file, name, device)
            .map_err(|e| Error::format(&self.path, format!("tensor {name}: {}", one_line(&e))))
    }

    pub fn tensor_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.content
            .tensor_infos
            .get(name)
            .map(|i| i.shape.dims().to_vec())
    }

    /// The storage type of most weight matrices, for `ethos info`.
    pub fn main_type(&self) -> Option<GgmlDType> {
        self.content
            .tensor_infos
            .get("blk.0.attn_q.weight")
            .map(|i| i.ggml_dtype)
    }

    /// The model hyper-parameters from the GGUF metadata (`config::gguf`).
    pub fn config(&mut self, device: &Device) -> Result<ModelConfig> {
        crate::config::from_gguf(self, device)
    }
}

/// Tensors of a GGUF file by HF name. With `dense = Some(dtype)` every matrix is dequantized
/// at load (the exact reference path); otherwise matrices stay quantized.
pub struct GgufSource {
    pub file: GgufFile,
    device: Device,
    dense: Option<DType>,
    /// Whose tensor names (`Architecture::gguf_tensor_name`).
    arch: Arch,
    /// The stacked expert tensor last read, kept while its experts are asked for one by one.
    experts: Option<(String, Arc<QTensor>)>,
}

impl GgufSource {
    pub fn new(file: GgufFile, arch: Arch, device: &Device, dense: Option<DType>) -> Self {
        Self {
            file,
            device: device.clone(),
            dense,
            arch,
            experts: None,
        }
    }

    /// Expert `e` of the stacked `(experts, out, in)` tensor `name`, as its own `(out, in)`
    /// tensor (a contiguous run of its blocks).
    fn expert(&mut self, name: &str, e: usize, shape: [usize; 2]) -> Result<QTensor> {
        if self.experts.as_ref().is_none_or(|(n, _)| n != name) {
            let got = self.file.tensor_shape(name).ok_or_else(|| {
                Error::format(&self.file.path, format!("tensor {name} is missing"))
            })?;
            if got.len() != 3 || got[1..] != shape {
                return Err(Error::format(
                    &self.file.path,
                    format!(
                        "tensor {name} has shape {got:?}, the metadata implies [experts, {}, {}]",
                        shape[0], shape[1]
                    ),
                ));
            }
            let device = self.device.clone();
            let t = self.file.tensor(name, &device)?;
            self.experts = Some((name.to_string(), Arc::new(t)));
        }
        let Some((_, stacked)) = &self.experts else {
            unreachable!("set above")
        };
        let n = stacked.shape().dims()[0];
        if e >= n {
            return Err(Error::format(
                &self.file.path,
                format!("tensor {name} holds {n} experts, expert {e} is asked for"),
            ));
        }
        let data = stacked.data()?;
        let per = data.len() / n;
        let bytes = data[e * per..(e + 1) * per].to_vec();
        let storage = QStorage::from_data(
            std::borrow::Cow::Owned(bytes),
            &self.device,
            stacked.dtype(),
        )?;
        Ok(QTensor::new(storage, (shape[0], shape[1]))?)
    }

    /// DeepSeek's `kv_b_proj` `(heads * (nope + v), rank)` from the split `attn_k_b`
    /// `(heads, rank, nope)` and `attn_v_b` `(heads, v, rank)` of newer conversions.
    fn kv_b_from_split(&mut self, hf: &str, shape: [usize; 2]) -> Result<Linear> {
        let prefix = self
            .arch
            .get()
            .gguf_tensor_name(hf)
            .and_then(|n| n.strip_suffix("attn_kv_b.weight").map(String::from))
            .ok_or_else(|| Error::Msg(format!("no GGUF name for tensor {hf}")))?;
        let load = |s: &mut Self, name: String| -> Result<Tensor> {
            let device = s.device.clone();
            if s.file.tensor_shape(&name).is_none() {
                return Err(Error::format(
                    &s.file.path,
                    format!("tensor {name} is missing (and no attn_kv_b)"),
                ));
            }
            Ok(s.file.tensor(&name, &device)?.dequantize(&device)?)
        };
        let k_b = load(self, format!("{prefix}attn_k_b.weight"))?;
        let v_b = load(self, format!("{prefix}attn_v_b.weight"))?;
        let (heads, rank, nope) = k_b.dims3()?;
        let (vh, v, vr) = v_b.dims3()?;
        if vh != heads || vr != rank || heads * (nope + v) != shape[0] || rank != shape[1] {
            return Err(Error::format(
                &self.file.path,
                format!(
                    "tensors {prefix}attn_k_b {:?} and attn_v_b {:?} do not make kv_b {shape:?}",
                    k_b.dims(),
                    v_b.dims()
                ),
            ));
        }
        let kv = Tensor::cat(&[&k_b.transpose(1, 2)?, &v_b], 1)?.reshape((shape[0], shape[1]))?;
        Linear::dense(kv.to_dtype(self.dense.unwrap_or(DType::F32))?, None)
    }

    fn qtensor(&mut self, hf: &str, shape: &[usize]) -> Result<QTensor> {
        let name = self
            .arch
            .get()
            .gguf_tensor_name(hf)
            .ok_or_else(|| Error::Msg(format!("no GGUF name for tensor {hf}")))?;
        let got = self
            .file
            .tensor_shape(&name)
            .ok_or_else(|| Error::format(&self.file.path, format!("tensor {name} is missing")))?;
        if got != shape {
            return Err(Error::format(
                &self.file.path,
                format!("tensor {name} has shape {got:?}, the metadata implies {shape:?}"),
            ));
        }
        let device = self.device.clone();
        self.file.tensor(&name, &device)
    }

    fn matrix(&mut self, hf: &str, shape: [usize; 2], bias: Option<Tensor>) -> Result<Linear> {
        if hf.ends_with("kv_b_proj.weight") && !self.contains(hf) {
            return self.kv_b_from_split(hf, shape);
        }
        let q = match expert_tensor(hf) {
            Some((name, e)) => self.expert(&name, e, shape)?,
            None => self.qtensor(hf, &shape)?,
        };
        let linear = if q.dtype() == GgmlDType::F32
            || q.dtype() == GgmlDType::F16
            || q.dtype() == GgmlDType::BF16
        {
            Linear::dense(
                q.dequantize(&self.device)?
                    .to_dtype(self.dense.unwrap_or(DType::F32))?,
                bias,
            )?
        } else {
            Linear::quantized(Arc::new(q), bias)?
        };
        match self.dense {
            Some(dt) => linear.into_dense(dt),
            None => Ok(linear),
        }
    }
}

impl TensorSource for GgufSource {
    fn path(&self) -> &Path {
        &self.file.path
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn contains(&self, name: &str) -> bool {
        self.arch
            .get()
            .gguf_tensor_name(name)
            .is_some_and(|n| self.file.content.tensor_infos.contains_key(&n))
    }
    fn is_gguf(&self) -> bool {
        true
    }
    fn dense(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let q = self.qtensor(name, shape)?;
        Ok(q.dequantize(&self.device)?.to_dtype(dtype)?)
    }
    fn linear(&mut self, name: &str, shape: [usize; 2], bias: Option<Tensor>) -> Result<Linear> {
        self.matrix(name, shape, bias)
    }
    fn embedding(&mut self, name: &str, shape: [usize; 2]) -> Result<Embedding> {
        let q = self.qtensor(name, &shape)?;
        Ok(match self.dense {
            Some(dt) => Embedding::Dense(q.dequantize(&self.device)?.to_dtype(dt)?),
            None => Embedding::Quant(Arc::new(q)),
        })
    }
    fn tied_head(&mut self, name: &str, shape: [usize; 2]) -> Result<Linear> {
        self.matrix(name, shape, None)
    }
}

/// Refuses tensor tables llama.cpp refuses, before candle reads a tensor: shapes whose element
/// count overflows, sizes past the end of the file, offsets off the alignment, and tensors
/// that share bytes. `alignment` is what `check_gguf_header` returned.
pub fn check_tensor_layout(
    path: &Path,
    content: &Content,
    file_size: u64,
    alignment: u64,
) -> Result<()> {
    let mut extents: Vec<(u64, u64, &String)> = Vec::with_capacity(content.tensor_infos.len());
    for (name, info) in &content.tensor_infos {
        let elems = info
            .shape
            .dims()
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| {
                Error::format(
                    path,
                    format!("tensor {name}: shape {:?} overflows", info.shape.dims()),
                )
            })?;
        // An empty tensor's data is an empty buffer, which candle reinterprets as blocks
        // through an unaligned pointer (undefined behaviour); no model has one.
        if elems == 0 {
            return Err(Error::format(
                path,
                format!("tensor {name} has no elements"),
            ));
        }
        let block = info.ggml_dtype.block_size() as u64;
        if elems % block != 0 {
            return Err(Error::format(
                path,
                format!(
                    "tensor {name}: {elems} elements are not a multiple of the block size {block}"
                ),
            ));
        }
        let bytes = (elems / block).saturating_mul(info.ggml_dtype.type_size() as u64);
        let start = content.tensor_data_offset.saturating_add(info.offset);
        if start.saturating_add(bytes) > file_size {
            return Err(Error::format(
                    path,
                    format!("tensor {name} claims {bytes} bytes at offset {start}, but the file has {file_size} bytes (truncated or corrupt)"),
                ));
        }
        if info.offset % alignment != 0 {
            return Err(Error::format(
                path,
                format!(
                    "tensor {name}: offset {} is not a multiple of the alignment {alignment}",
                    info.offset
                ),
            ));
        }
        extents.push((info.offset, info.offset + bytes, name));
    }
    // Tensors may not share bytes (llama.cpp refuses such files): one would read
    // another's weights.
    extents.sort();
    for pair in extents.windows(2) {
        let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
        if start < end {
            return Err(Error::format(
                path,
                format!("tensors {a} and {b} overlap in the file"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::gguf_header::tests::gguf;
    use super::*;

    fn open(bytes: &[u8]) -> String {
        let dir = std::env::temp_dir().join(format!("ethos-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("m{}.gguf", bytes.len()));
        std::fs::write(&p, bytes).unwrap();
        let out = match GgufFile::open(&p) {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        std::fs::remove_file(&p).ok();
        out
    }

    /// Tensors that share bytes, or start off the alignment, are refused (llama.cpp refuses
    /// both); two tensors side by side load.
    #[test]
    fn overlapping_or_unaligned_tensors_are_refused() {
        // F32 (type 0) tensors of 8 values: 32 bytes each.
        let data = [0u8; 96];
        assert_eq!(
            open(&gguf(
                &[],
                &[("a", &[8], 0, 0), ("b", &[8], 0, 32)],
                32,
                &data
            )),
            "ok"
        );
        let e = open(&gguf(
            &[],
            &[("a", &[8], 0, 0), ("b", &[8], 0, 0)],
            32,
            &data,
        ));
        assert!(e.contains("overlap") && !e.contains('\n'), "{e}");
        let e = open(&gguf(
            &[],
            &[("a", &[8], 0, 0), ("b", &[8], 0, 33)],
            32,
            &data,
        ));
        assert!(e.contains("tensor b") && e.contains("alignment 32"), "{e}");
        let e = open(&gguf(
            &[("general.alignment", 4, 0u32.to_le_bytes().to_vec())],
            &[("a", &[8], 0, 0)],
            32,
            &data,
        ));
        assert!(
            e.contains("general.alignment") && e.contains("power of two"),
            "{e}"
        );
    }
}
