//! Memory-mapped safetensors, one file or sharded through `model.safetensors.index.json`.

use super::{fp8, TensorSource};
use crate::decoder::Embedding;
use crate::error::{Error, Result};
use crate::ops::linear::Linear;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub struct SafetensorsSource {
    folder: PathBuf,
    st: MmapedSafetensors,
    device: Device,
    dtype: DType,
}

/// The weight files of an HF folder: the shards named by the index, or `*.safetensors`.
pub fn weight_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let index = folder.join("model.safetensors.index.json");
    if index.exists() {
        let text = crate::files::read_text(&index)?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::format(&index, format!("not JSON: {}", crate::error::one_line(&e)))
        })?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::config(&index, "weight_map", "missing or not an object"))?;
        let files: BTreeSet<String> = map
            .values()
            .filter_map(|f| f.as_str().map(String::from))
            .collect();
        let mut out = Vec::new();
        for f in files {
            if f.contains('/') || f.contains("..") {
                return Err(Error::config(
                    &index,
                    "weight_map",
                    format!("shard name {f:?} leaves the folder"),
                ));
            }
            let p = folder.join(&f);
            if !p.exists() {
                return Err(Error::format(&index, format!("shard {f} is missing")));
            }
            out.push(p);
        }
        return Ok(out);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(|e| Error::io(folder, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::NotFound(format!(
            "{}: no *.safetensors files",
            folder.display()
        )));
    }
    Ok(files)
}

impl SafetensorsSource {
    pub fn open(folder: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let files = weight_files(folder)?;
        // Open each file alone first so that an error names the file at fault.
        for f in &files {
            // SAFETY: the file is mapped read-only; ethos never writes to weight files.
            unsafe { MmapedSafetensors::new(f) }.map_err(|e| {
                Error::format(
                    f,
                    format!(
                        "not a valid safetensors file: {}",
                        crate::error::one_line(&e)
                    ),
                )
            })?;
        }
        // SAFETY: as above.
        let st = unsafe { MmapedSafetensors::multi(&files) }
            .map_err(|e| Error::format(folder, crate::error::one_line(&e)))?;
        Ok(Self {
            folder: folder.to_path_buf(),
            st,
            device: device.clone(),
            dtype,
        })
    }

    fn load(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let view = self
            .st
            .get(name)
            .map_err(|_| Error::format(&self.folder, format!("tensor {name} is missing")))?;
        if view.shape() != shape {
            return Err(Error::format(
                &self.folder,
                format!(
                    "tensor {name} has shape {:?}, the config implies {:?}",
                    view.shape(),
                    shape
                ),
            ));
        }
        if matches!(DType::try_from(view.dtype()), Ok(DType::F8E4M3)) {
            return self.load_fp8(name, view.shape(), view.data(), dtype);
        }
        let t = self.st.load(name, &self.device).map_err(|e| {
            Error::format(
                &self.folder,
                format!("tensor {name}: {}", crate::error::one_line(&e)),
            )
        })?;
        Ok(t.to_dtype(dtype)?)
    }
}

impl SafetensorsSource {
    /// An FP8 (e4m3) matrix as DeepSeek-V3 ships it: dequantized with its
    /// `<name>_scale_inv` block scales into `dtype`.
    fn load_fp8(&self, name: &str, shape: &[usize], data: &[u8], dtype: DType) -> Result<Tensor> {
        let &[rows, cols] = shape else {
            return Err(Error::format(
                &self.folder,
                format!("FP8 tensor {name} has shape {shape:?}, not a matrix"),
            ));
        };
        let scale_name = format!("{name}_scale_inv");
        let scale_view = self.st.get(&scale_name).map_err(|_| {
            Error::format(
                &self.folder,
                format!("FP8 tensor {name} has no scale tensor {scale_name}"),
            )
        })?;
        let blocks = fp8::block_grid(rows, cols);
        if scale_view.shape() != [blocks.0, blocks.1] {
            return Err(Error::format(
                &self.folder,
                format!(
                    "tensor {scale_name} has shape {:?}, {rows}x{cols} in {}x{} blocks needs {:?}",
                    scale_view.shape(),
                    fp8::BLOCK,
                    fp8::BLOCK,
                    [blocks.0, blocks.1]
                ),
            ));
        }
        let scale = self
            .st
            .load(&scale_name, &candle_core::Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| {
                Error::format(
                    &self.folder,
                    format!("tensor {scale_name}: {}", crate::error::one_line(&e)),
                )
            })?;
        let w = fp8::dequantize_blocks(data, rows, cols, &scale);
        Ok(Tensor::from_vec(w, (rows, cols), &self.device)?.to_dtype(dtype)?)
    }
}

impl TensorSource for SafetensorsSource {
    fn path(&self) -> &Path {
        &self.folder
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn contains(&self, name: &str) -> bool {
        self.st.get(name).is_ok()
    }
    fn dense(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        self.load(name, shape, dtype)
    }
    fn linear(&mut self, name: &str, shape: [usize; 2], bias: Option<Tensor>) -> Result<Linear> {
        Linear::dense(self.load(name, &shape, self.dtype)?, bias)
    }
    fn embedding(&mut self, name: &str, shape: [usize; 2]) -> Result<Embedding> {
        Ok(Embedding::Dense(self.load(name, &shape, self.dtype)?))
    }
    fn tied_head(&mut self, name: &str, shape: [usize; 2]) -> Result<Linear> {
        Linear::dense(self.load(name, &shape, self.dtype)?, None)
    }
}
