//! One file per architecture family, the one place that knows it: its HF and GGUF names, how
//! its `config.json` fields and GGUF metadata differ from the generic reading (`config::hf`,
//! `config::gguf`), its GGUF tensor names where they differ from `weights::names`, its loader
//! defaults, and which parts its blocks use. The registry below lists them, one line each.

use crate::chat::ChatTemplate;
use crate::config::{HfConfig, ModelConfig};
use crate::decoder::Decoder;
use crate::error::{Error, Result};
use crate::lora::{Adapters, WithAdapters};
use crate::ops::linear::Linear;
use crate::ops::{Kernels, Numerics};
use crate::weights::gguf::GgufFile;
use crate::weights::TensorSource;
use candle_core::DType;
use std::path::Path;

/// Declares each architecture module and lists its architectures in `REGISTRY`, in the
/// order names are looked up.
macro_rules! registry {
    ($($module:ident: $($arch:ident),+;)*) => {
        $(pub mod $module;)*
        /// Every architecture ethos implements.
        pub static REGISTRY: &[&dyn Architecture] = &[$($(&$module::$arch,)+)*];
    };
}

registry! {
    llama: Llama;
    mistral: Mistral;
    qwen2: Qwen2;
    gemma3: Gemma3;
    deepseek: DEEPSEEK_V2, DEEPSEEK_V3;
    qwen3: Qwen3;
}

/// An architecture's names.
pub struct Names {
    /// The name `ethos info` shows and errors use.
    pub name: &'static str,
    /// HF `architectures` entries and `model_type` values that mean this architecture. A
    /// `...ForSequenceClassification` entry makes it loadable as a classifier.
    pub hf: &'static [&'static str],
    /// llama.cpp's `general.architecture`, where this architecture has its own.
    pub gguf: Option<&'static str>,
}

/// What an architecture builds its decoder from: the validated config, the tensor source,
/// the compute dtype and the length of the rotary table.
pub struct Build<'a> {
    pub cfg: &'a ModelConfig,
    pub src: &'a mut dyn TensorSource,
    pub dtype: DType,
    pub max_positions: usize,
}

/// What one architecture knows about itself. Every hook but `names` and `load` has a default:
/// the generic reading in `config::hf`, `config::gguf` and `weights::names`.
pub trait Architecture: Sync {
    /// What the architecture is called, in ethos, HF and GGUF files.
    fn names(&self) -> &'static Names;

    /// The name `ethos info` shows and errors use.
    fn name(&self) -> &'static str {
        self.names().name
    }

    /// HF `architectures` entries and `model_type` values that mean this architecture.
    fn hf_names(&self) -> &'static [&'static str] {
        self.names().hf
    }

    /// llama.cpp's `general.architecture`, where this architecture has its own.
    fn gguf_name(&self) -> Option<&'static str> {
        self.names().gguf
    }

    /// Whether a GGUF file of `gguf_name` is this architecture (where two share one name).
    fn claims_gguf(&self, _file: &GgufFile) -> bool {
        true
    }

    /// Adjusts the generic reading of `config.json` (`cfg`, not yet validated).
    fn hf_config(&self, _hf: &HfConfig, _cfg: &mut ModelConfig, _path: &Path) -> Result<()> {
        Ok(())
    }

    /// Adjusts the generic reading of the GGUF metadata (`cfg`, not yet validated).
    fn gguf_config(&self, _file: &GgufFile, _cfg: &mut ModelConfig) -> Result<()> {
        Ok(())
    }

    /// The GGUF name of HF tensor `hf`.
    fn gguf_tensor_name(&self, hf: &str) -> Option<String> {
        crate::weights::names::gguf_name(hf)
    }

    /// Whether llama.cpp's converter permutes this architecture's q/k rows (adapters made for
    /// the HF layout follow on a GGUF base, and the other way round).
    fn gguf_permutes_qk(&self) -> bool {
        false
    }

    /// The chat template of a GGUF file that carries none.
    fn default_chat_template(&self) -> Option<ChatTemplate> {
        None
    }

    /// Tokens that end a turn besides the file's end-of-sequence ids (GGUF).
    fn stop_tokens(&self) -> &'static [&'static str] {
        &[]
    }

    /// Builds the decoder.
    fn load(&self, b: Build<'_>) -> Result<Decoder>;
}

/// A registered architecture, as `ModelConfig` holds it. Equal when the names are.
#[derive(Clone, Copy)]
pub struct Arch(&'static dyn Architecture);

impl Arch {
    /// The name `ethos info` shows and errors use.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The architecture's hooks (crate-internal: the trait names the loader's parts).
    pub(crate) fn get(&self) -> &'static dyn Architecture {
        self.0
    }
}

impl PartialEq for Arch {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl Eq for Arch {}

impl std::fmt::Debug for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

impl Arch {
    /// The architecture `ethos info` calls `name`.
    pub fn by_name(name: &str) -> Option<Arch> {
        REGISTRY.iter().find(|a| a.name() == name).map(|&a| Arch(a))
    }

    /// From an HF `architectures` entry or `model_type`.
    pub fn from_hf_name(name: &str) -> Option<Arch> {
        REGISTRY
            .iter()
            .find(|a| a.hf_names().contains(&name))
            .map(|&a| Arch(a))
    }

    /// The architectures `config.json` may name: each one's first HF name.
    pub fn supported_hf() -> String {
        REGISTRY
            .iter()
            .filter_map(|a| a.hf_names().first().copied())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The architecture of a GGUF file (`general.architecture`).
    pub fn from_gguf(file: &GgufFile) -> Result<Arch> {
        let name = file.architecture()?;
        REGISTRY
            .iter()
            .find(|a| a.gguf_name() == Some(name) && a.claims_gguf(file))
            .map(|&a| Arch(a))
            .ok_or_else(|| {
                let mut known: Vec<&str> = Vec::new();
                for n in REGISTRY.iter().filter_map(|a| a.gguf_name()) {
                    if !known.contains(&n) {
                        known.push(n);
                    }
                }
                Error::Unsupported(format!(
                    "{}: GGUF architecture `{name}` (supported: {})",
                    file.path.display(),
                    known.join(", ")
                ))
            })
    }

    /// The model name of its `...ForSequenceClassification` entry, where it has one.
    fn classifier_name(&self) -> Option<&'static str> {
        self.0
            .hf_names()
            .iter()
            .find_map(|n| n.strip_suffix("ForSequenceClassification"))
    }
}

/// The output head: tied to the embeddings (when the config says so or the checkpoint has no
/// `lm_head.weight`), else its own matrix.
pub(crate) fn lm_head(cfg: &ModelConfig, src: &mut dyn TensorSource) -> Result<Linear> {
    let shape = [cfg.vocab_size, cfg.hidden_size];
    if cfg.tie_word_embeddings || !src.contains("lm_head.weight") {
        src.tied_head("model.embed_tokens.weight", shape)
    } else {
        src.linear("lm_head.weight", shape, None)
    }
}

/// Builds the decoder of `cfg` from `src`, computing in `dtype` with `numerics`, with a rotary
/// table of `max_positions` entries; its products and steps take the kernels `kernels` allows,
/// and its layers the `adapters`' updates.
pub fn build(
    cfg: &ModelConfig,
    src: &mut dyn TensorSource,
    dtype: DType,
    max_positions: usize,
    numerics: Numerics,
    kernels: Kernels,
    adapters: &Adapters,
) -> Result<Decoder> {
    if cfg.num_labels.is_some() && cfg.arch.classifier_name().is_none() {
        let supported: Vec<&str> = REGISTRY
            .iter()
            .filter_map(|&a| Arch(a).classifier_name())
            .collect();
        return Err(Error::Unsupported(format!(
            "{}: sequence classification on {} (supported: {})",
            src.path().display(),
            cfg.arch.name(),
            supported.join(", ")
        )));
    }
    let mut src = WithAdapters::new(src, kernels, adapters, cfg, dtype)?;
    let mut decoder = cfg.arch.get().load(Build {
        cfg,
        src: &mut src,
        dtype,
        max_positions,
    })?;
    src.finish()?;
    decoder.numerics = numerics;
    decoder.kernels = kernels;
    Ok(decoder)
}
