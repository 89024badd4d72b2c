//! llama.cpp LoRA GGUF files (`convert_lora_to_gguf.py`): `general.type = adapter`,
//! `adapter.type = lora`, `adapter.lora.alpha`, and `<tensor>.weight.lora_a` `(r, in)` /
//! `.lora_b` `(out, r)` per adapted tensor. llama.cpp scales by `alpha / r` (it has no
//! rsLoRA: its converter folds nothing), as here.

use super::{check_finite, Adapter, AdapterFormat, Factors};
use crate::error::{Error, Result};
use crate::weights::gguf::GgufFile;
use candle_core::{DType, Device};
use std::collections::BTreeMap;
use std::path::Path;

pub fn load(path: &Path) -> Result<Adapter> {
    let mut file = GgufFile::open(path)?;
    let general_type = file.get_str("general.type").unwrap_or("model");
    if general_type != "adapter" {
        return Err(Error::config(
            path,
            "general.type",
            format!("\"{general_type}\": this GGUF is a model, not a LoRA adapter"),
        ));
    }
    let kind = file.get_str("adapter.type")?;
    if kind != "lora" {
        return Err(Error::config(
            path,
            "adapter.type",
            format!("\"{kind}\" adapters are not supported (only lora)"),
        ));
    }
    // llama.cpp: a missing or zero alpha means no scaling beyond the user's.
    let alpha = file.get_f64("adapter.lora.alpha").unwrap_or(0.0);
    if !alpha.is_finite() {
        return Err(Error::config(
            path,
            "adapter.lora.alpha",
            "not a finite number",
        ));
    }
    let gguf_arch = file.architecture().ok().map(str::to_string);
    let names: Vec<String> = file.content.tensor_infos.keys().cloned().collect();
    let mut a_of = BTreeMap::new();
    let mut b_of = BTreeMap::new();
    for name in names {
        let (module, is_a) = if let Some(m) = name.strip_suffix(".weight.lora_a") {
            (m.to_string(), true)
        } else if let Some(m) = name.strip_suffix(".weight.lora_b") {
            (m.to_string(), false)
        } else {
            return Err(Error::format(
                path,
                format!(
                    "tensor {name}: not a .lora_a or .lora_b tensor (only LoRA matrices are read)"
                ),
            ));
        };
        let t = file
            .tensor(&name, &Device::Cpu)?
            .dequantize(&Device::Cpu)?
            .to_dtype(DType::F32)?;
        if t.rank() != 2 {
            return Err(Error::format(
                path,
                format!(
                    "tensor {name} has shape {:?}, a matrix was expected",
                    t.dims()
                ),
            ));
        }
        check_finite(path, &name, &t)?;
        if is_a {
            a_of.insert(module, t);
        } else {
            b_of.insert(module, t);
        }
    }
    let mut modules = BTreeMap::new();
    let mut rank = 0;
    for (module, a) in a_of {
        let b = b_of.remove(&module).ok_or_else(|| {
            Error::format(
                path,
                format!("tensor {module}.weight has lora_a but no lora_b"),
            )
        })?;
        let r = a.dims()[0];
        if b.dims()[1] != r {
            return Err(Error::format(
                path,
                format!(
                    "tensor {module}.weight: lora_a {:?} and lora_b {:?} disagree on the rank",
                    a.dims(),
                    b.dims()
                ),
            ));
        }
        rank = rank.max(r);
        let factor = if alpha == 0.0 { 1.0 } else { alpha / r as f64 };
        modules.insert(module, Factors { a, b, factor });
    }
    if let Some(module) = b_of.keys().next() {
        return Err(Error::format(
            path,
            format!("tensor {module}.weight has lora_b but no lora_a"),
        ));
    }
    Ok(Adapter {
        path: path.to_path_buf(),
        format: AdapterFormat::Gguf,
        scale: 1.0,
        rank,
        alpha,
        rslora: false,
        modules,
        gguf_arch,
    })
}
