//! Fine-tuned weights as LoRA adapters: a PEFT folder (`adapter_config.json` +
//! `adapter_model.safetensors`) or a llama.cpp LoRA GGUF (`general.type = adapter`). Each
//! adapted layer adds `scale * (alpha / r) * B (A x)` to its product (`alpha / sqrt(r)` with
//! rsLoRA), unmerged beside quantized weights or merged into dense ones (`attach`).

mod attach;
mod gguf;
mod peft;

pub use crate::ops::low_rank::{with_row_adapters, RowAdapters};
pub use attach::WithAdapters;

use crate::error::{Error, Result};
use candle_core::Tensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `--lora PATH[:SCALE]`: an adapter and the scale its update is multiplied by.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterSpec {
    pub path: PathBuf,
    pub scale: f64,
}

impl std::str::FromStr for AdapterSpec {
    type Err = String;

    /// `PATH` or `PATH:SCALE` (a path that itself ends in `:<number>` needs the scale).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if let Some((path, scale)) = s.rsplit_once(':') {
            if let Ok(scale) = scale.parse::<f64>() {
                if !scale.is_finite() {
                    return Err(format!("--lora {s}: the scale must be a finite number"));
                }
                return Ok(Self {
                    path: PathBuf::from(path),
                    scale,
                });
            }
        }
        if s.is_empty() {
            return Err("--lora needs a path".into());
        }
        Ok(Self {
            path: PathBuf::from(s),
            scale: 1.0,
        })
    }
}

/// Which file layout an adapter came in, and so which names its modules have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterFormat {
    /// HF module names (`model.layers.0.self_attn.q_proj`).
    Peft,
    /// llama.cpp's tensor names (`blk.0.attn_q`), rows as llama.cpp's converter stores them.
    Gguf,
}

/// One module's factors: `a (r, in)`, `b (out, r)` in f32 and the adapter's own factor
/// (`alpha / r` or `alpha / sqrt(r)`), before the user's scale.
#[derive(Clone, Debug)]
pub struct Factors {
    pub a: Tensor,
    pub b: Tensor,
    pub factor: f64,
}

impl Factors {
    pub fn rank(&self) -> usize {
        self.a.dims()[0]
    }
}

/// A loaded adapter.
#[derive(Clone, Debug)]
pub struct Adapter {
    pub path: PathBuf,
    pub format: AdapterFormat,
    /// The user's scale (`--lora PATH:SCALE`).
    pub scale: f64,
    /// `r` and `lora_alpha` as the file states them (modules may differ by pattern).
    pub rank: usize,
    pub alpha: f64,
    pub rslora: bool,
    /// The modules' names, by the format's naming.
    pub modules: BTreeMap<String, Factors>,
    /// llama.cpp's `general.architecture` (GGUF adapters).
    pub gguf_arch: Option<String>,
}

impl Adapter {
    /// Reads an adapter folder (PEFT) or file (LoRA GGUF).
    pub fn load(spec: &AdapterSpec) -> Result<Self> {
        let path = &spec.path;
        let mut adapter = if path.is_dir() {
            peft::load(path)?
        } else if path.is_file() {
            gguf::load(path)?
        } else {
            return Err(Error::NotFound(format!(
                "{}: no such adapter (a PEFT folder or a LoRA GGUF file)",
                path.display()
            )));
        };
        adapter.scale = spec.scale;
        if adapter.modules.is_empty() {
            return Err(Error::format(path, "the adapter has no LoRA tensors"));
        }
        Ok(adapter)
    }

    /// The module kinds it adapts (`q_proj`, `attn_q`, ...), each once.
    pub fn targets(&self) -> Vec<String> {
        let mut kinds: Vec<String> = Vec::new();
        for name in self.modules.keys() {
            let kind = module_kind(name).to_string();
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        kinds
    }

    /// Parameters in its factors.
    pub fn parameters(&self) -> usize {
        self.modules
            .values()
            .map(|f| f.a.elem_count() + f.b.elem_count())
            .sum()
    }

    /// The largest rank of its modules.
    pub fn max_rank(&self) -> usize {
        self.modules.values().map(Factors::rank).max().unwrap_or(0)
    }
}

/// What `ethos info` and run records show of an adapter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterInfo {
    pub path: String,
    pub format: &'static str,
    pub scale: f64,
    pub rank: usize,
    pub alpha: f64,
    pub rslora: bool,
    pub targets: Vec<String>,
    pub modules: usize,
    pub parameters: usize,
    pub merged: bool,
}

impl Adapter {
    pub fn info(&self, merged: bool) -> AdapterInfo {
        AdapterInfo {
            path: self.path.display().to_string(),
            format: match self.format {
                AdapterFormat::Peft => "peft",
                AdapterFormat::Gguf => "gguf",
            },
            scale: self.scale,
            rank: self.max_rank(),
            alpha: self.alpha,
            rslora: self.rslora,
            targets: self.targets(),
            modules: self.modules.len(),
            parameters: self.parameters(),
            merged,
        }
    }
}

/// The last dotted part of a module name without a layer number: `q_proj` of
/// `model.layers.0.self_attn.q_proj`, `attn_q` of `blk.0.attn_q`.
fn module_kind(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// Adapters loaded from the user's specs, and whether to merge them into the weights; and
/// named adapters that stay apart, each applied to the rows that ask for it
/// (`ops::low_rank::with_row_adapters`: a server's per-request adapters).
#[derive(Clone, Debug, Default)]
pub struct Adapters {
    pub list: Vec<Adapter>,
    pub merge: bool,
    pub named: Vec<(String, Adapter)>,
}

impl Adapters {
    pub fn load(specs: &[AdapterSpec], merge: bool) -> Result<Self> {
        let list = specs
            .iter()
            .map(Adapter::load)
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            list,
            merge,
            named: Vec::new(),
        })
    }

    /// Every adapter in `dir`, named by its folder (PEFT) or file stem (`*.gguf`), sorted.
    pub fn load_dir(dir: &Path) -> Result<Vec<(String, Adapter)>> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut found = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string);
            let Some(name) = name else { continue };
            if path.is_dir() && path.join("adapter_config.json").is_file() {
                found.push((name, path));
            } else if path.is_file() && name.ends_with(".gguf") {
                found.push((name.trim_end_matches(".gguf").to_string(), path));
            }
        }
        found.sort();
        found
            .into_iter()
            .map(|(name, path)| Ok((name, Adapter::load(&AdapterSpec { path, scale: 1.0 })?)))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The listed adapters, then the named ones.
    pub fn all(&self) -> impl Iterator<Item = &Adapter> {
        self.list.iter().chain(self.named.iter().map(|(_, a)| a))
    }

    pub fn infos(&self) -> Vec<AdapterInfo> {
        self.list.iter().map(|a| a.info(self.merge)).collect()
    }

    /// The index of the named adapter `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.named.iter().position(|(n, _)| n == name)
    }
}

/// Checks that a factor holds finite numbers only.
fn check_finite(path: &Path, name: &str, t: &Tensor) -> Result<()> {
    let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::format(
            path,
            format!(
                "tensor {name} holds a non-finite value ({}) at index {i}",
                v[i]
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::AdapterSpec;
    use std::path::PathBuf;

    #[test]
    fn specs_take_an_optional_scale() {
        let s: AdapterSpec = "ad/hk".parse().unwrap();
        assert_eq!((s.path, s.scale), (PathBuf::from("ad/hk"), 1.0));
        let s: AdapterSpec = "ad/hk:0.5".parse().unwrap();
        assert_eq!((s.path, s.scale), (PathBuf::from("ad/hk"), 0.5));
        let s: AdapterSpec = "C:/x/a.gguf:-1".parse().unwrap();
        assert_eq!((s.path, s.scale), (PathBuf::from("C:/x/a.gguf"), -1.0));
        assert!("a:inf".parse::<AdapterSpec>().is_err());
        assert!("".parse::<AdapterSpec>().is_err());
    }
}
