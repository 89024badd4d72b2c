//! From a `--model` argument to a ready model: a GGUF file, an HF folder, a hub repo id, or
//! (with none) the default model, fetched on first use. All three build the same `Decoder`.

use crate::arch;
use crate::chat::ChatTemplate;
use crate::config::{HfConfig, ModelConfig, TokenIds};
use crate::decoder::Decoder;
use crate::error::{Error, Result};
use crate::fetch;
use crate::lora::Adapters;
use crate::ops::{Kernels, Numerics};
use crate::tokenizer::Tokenizer;
use crate::weights::gguf::{GgufFile, GgufSource};
use crate::weights::safetensors::SafetensorsSource;
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `--model` names.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSpec {
    Default,
    Gguf(PathBuf),
    Folder(PathBuf),
    /// `owner/name`, or `owner/name:file.gguf` for one GGUF file of a repo.
    Hub {
        repo: String,
        file: Option<String>,
    },
}

impl ModelSpec {
    pub fn parse(arg: Option<&str>) -> Result<Self> {
        let Some(arg) = arg else {
            return Ok(ModelSpec::Default);
        };
        let path = Path::new(arg);
        if path.is_dir() {
            return Ok(ModelSpec::Folder(path.to_path_buf()));
        }
        if path.is_file() {
            return Ok(ModelSpec::Gguf(path.to_path_buf()));
        }
        let (repo, file) = match arg.split_once(':') {
            Some((r, f)) => (r, Some(f.to_string())),
            None => (arg, None),
        };
        let looks_like_repo = repo.split('/').count() == 2
            && !repo.starts_with('.')
            && !repo.starts_with('/')
            && !repo.ends_with(".gguf");
        if looks_like_repo {
            return Ok(ModelSpec::Hub {
                repo: repo.to_string(),
                file,
            });
        }
        Err(Error::NotFound(format!(
            "{arg}: no such file or folder, and not a hub repo id (owner/name)"
        )))
    }
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub device: Device,
    /// Compute dtype; `None` picks the default for the device and format (see `default_dtype`).
    pub dtype: Option<DType>,
    /// Cap on the context (rotary table and largest cache); `None` = the model's own.
    pub max_context: Option<usize>,
    /// Which of our kernels the model may take (`Kernels::from_env` reads the users'
    /// switches; the default is the fastest this build has).
    pub kernels: Kernels,
    /// LoRA adapters added to the layers they name (`--lora`), unmerged unless `merge`.
    pub adapters: Adapters,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: None,
            max_context: None,
            kernels: Kernels::default(),
            adapters: Adapters::default(),
        }
    }
}

/// f32 on the CPU (exact, and candle's CPU matmul is fastest in f32); bf16 on GPUs.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    }
}

#[derive(Clone, Debug, Default)]
pub struct GenerationDefaults {
    /// From `generation_config.json` (folders) or the GGUF metadata.
    pub eos_ids: Vec<u32>,
}

#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub source: String,
    pub format: &'static str,
    /// "q4_1", "f32", ... : how the block matrices are stored in memory.
    pub weights: String,
    pub dtype: DType,
    pub load_seconds: f64,
    pub file_bytes: u64,
    /// The LoRA adapters on the weights.
    pub adapters: Vec<crate::lora::AdapterInfo>,
    /// The named adapters rows may select (`lora::with_row_adapters`), by index.
    pub named_adapters: Vec<String>,
}

pub struct Model {
    pub decoder: Decoder,
    pub tokenizer: Option<Tokenizer>,
    pub chat_template: Option<ChatTemplate>,
    pub generation: GenerationDefaults,
    pub info: ModelInfo,
}

impl Model {
    pub fn config(&self) -> &ModelConfig {
        &self.decoder.config
    }

    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            Error::Tokenizer(format!("{}: the model has no tokenizer", self.info.source))
        })
    }

    pub fn eos_ids(&self) -> &[u32] {
        &self.generation.eos_ids
    }
}

pub fn load(spec: &ModelSpec, opts: &LoadOptions) -> Result<Model> {
    match spec {
        ModelSpec::Default => load_gguf(&fetch::ensure_default_model(&fetch::models_dir())?, opts),
        ModelSpec::Gguf(p) => load_gguf(p, opts),
        ModelSpec::Folder(p) => load_folder(p, opts),
        ModelSpec::Hub {
            repo,
            file: Some(f),
        } => load_gguf(&fetch::hub_file(repo, f)?, opts),
        ModelSpec::Hub { repo, file: None } => {
            let config = fetch::hub_file(repo, "config.json")?;
            let folder = config.parent().map(Path::to_path_buf).unwrap_or_default();
            for optional in [
                "tokenizer.json",
                "tokenizer_config.json",
                "generation_config.json",
            ] {
                let _ = fetch::hub_file(repo, optional);
            }
            match fetch::hub_file(repo, "model.safetensors.index.json") {
                Ok(index) => {
                    let text = crate::files::read_text(&index)?;
                    let v: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| Error::format(&index, e.to_string()))?;
                    let shards: std::collections::BTreeSet<&str> = v["weight_map"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter_map(|(_, f)| f.as_str())
                        .collect();
                    for s in shards {
                        fetch::hub_file(repo, s)?;
                    }
                }
                Err(_) => {
                    fetch::hub_file(repo, "model.safetensors")?;
                }
            }
            load_folder(&folder, opts)
        }
    }
}

fn context_len(cfg: &ModelConfig, opts: &LoadOptions) -> usize {
    let own = cfg.max_position_embeddings;
    opts.max_context.map_or(own, |m| m.min(own))
}

pub fn load_gguf(path: &Path, opts: &LoadOptions) -> Result<Model> {
    let start = Instant::now();
    let mut file = GgufFile::open(path)?;
    let cfg = file.config(&opts.device)?;
    let (tokenizer, chat_template) = gguf_text_side(&file, &cfg)?;
    let main_type = file
        .main_type()
        .map(|t| format!("{t:?}").to_lowercase())
        .unwrap_or_default();
    // An explicit dtype dequantizes every matrix (the exact reference path); none keeps them quantized.
    let dense = opts.dtype;
    let dtype = opts.dtype.unwrap_or_else(|| default_dtype(&opts.device));
    let mut src = GgufSource::new(file, cfg.arch, &opts.device, dense);
    // Quantized weights follow llama.cpp's arithmetic throughout (8-bit activations in the
    // kernels, f16 attention operands); an explicit dtype is the exact dequantized path.
    let numerics = match dense {
        None => Numerics::LlamaCpp,
        Some(_) => Numerics::Exact,
    };
    let ctx = context_len(&cfg, opts);
    let decoder = arch::build(
        &cfg,
        &mut src,
        dtype,
        ctx,
        numerics,
        opts.kernels,
        &opts.adapters,
    )?;
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut eos_ids = cfg.eos_token_ids.clone();
    // Tokens that end the architecture's turns besides the file's end-of-sequence ids.
    for name in cfg.arch.get().stop_tokens() {
        if let Some(id) = tokenizer.as_ref().and_then(|t| t.token_id(name)) {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
    }
    Ok(Model {
        decoder,
        tokenizer,
        chat_template,
        generation: GenerationDefaults { eos_ids },
        info: ModelInfo {
            source: path.display().to_string(),
            format: "gguf",
            weights: if dense.is_some() {
                format!("{main_type} dequantized to {dtype:?}").to_lowercase()
            } else {
                main_type
            },
            dtype,
            load_seconds: start.elapsed().as_secs_f64(),
            file_bytes,
            adapters: opts.adapters.infos(),
            named_adapters: opts.adapters.named.iter().map(|(n, _)| n.clone()).collect(),
        },
    })
}

/// A GGUF file's tokenizer (when it has one) and chat template (its own, else the
/// architecture's turn format).
fn gguf_text_side(
    file: &GgufFile,
    cfg: &ModelConfig,
) -> Result<(Option<Tokenizer>, Option<ChatTemplate>)> {
    let tokenizer = if file.meta("tokenizer.ggml.model").is_some() {
        Some(Tokenizer::from_gguf(file)?)
    } else {
        None
    };
    let chat_template = file.get_str("tokenizer.chat_template").ok().map(|t| {
        let piece = |key: &str| {
            file.get_u64(key)
                .ok()
                .and_then(|id| {
                    tokenizer
                        .as_ref()
                        .map(|tk| tk.pieces(&[id as u32]).concat())
                })
                .unwrap_or_default()
        };
        ChatTemplate::new(
            t.to_string(),
            piece("tokenizer.ggml.bos_token_id"),
            piece("tokenizer.ggml.eos_token_id"),
        )
    });
    // A file without a template: the architecture's own turn format, if it has one.
    let chat_template = chat_template.or_else(|| cfg.arch.get().default_chat_template());
    Ok((tokenizer, chat_template))
}

/// A model's tokenizer and chat template without its weights: for a model served
/// elsewhere whose tokenizer is here (`--tokenizer`). `path` is a GGUF file or an HF folder
/// (`config.json`, `tokenizer.json`, `tokenizer_config.json`).
pub fn load_text_side(path: &Path) -> Result<(Tokenizer, Option<ChatTemplate>)> {
    let (tokenizer, template) = if path.is_dir() {
        let config_path = path.join("config.json");
        if !config_path.exists() {
            return Err(Error::NotFound(format!(
                "{}: no config.json",
                path.display()
            )));
        }
        let cfg = HfConfig::from_file(&config_path)?.into_config(&config_path)?;
        let (tokenizer, template, _) = folder_text_side(path, &cfg)?;
        (tokenizer, template)
    } else {
        let mut file = GgufFile::open(path)?;
        let cfg = file.config(&Device::Cpu)?;
        gguf_text_side(&file, &cfg)?
    };
    let tokenizer = tokenizer.ok_or_else(|| {
        Error::Tokenizer(format!("{}: the model has no tokenizer", path.display()))
    })?;
    Ok((tokenizer, template))
}

/// A model of the named architecture's shapes with random weights (`weights::dummy`), for
/// speed and memory at realistic sizes; it has no tokenizer.
pub fn load_dummy(arch_name: &str, opts: &LoadOptions) -> Result<Model> {
    let start = Instant::now();
    let cfg = crate::weights::dummy::preset(arch_name)?;
    let dtype = opts.dtype.unwrap_or_else(|| default_dtype(&opts.device));
    let mut src = crate::weights::dummy::DummySource::new(arch_name, &opts.device, dtype);
    let ctx = context_len(&cfg, opts);
    let decoder = arch::build(
        &cfg,
        &mut src,
        dtype,
        ctx,
        Numerics::Exact,
        opts.kernels,
        &opts.adapters,
    )?;
    Ok(Model {
        decoder,
        tokenizer: None,
        chat_template: None,
        generation: GenerationDefaults::default(),
        info: ModelInfo {
            source: format!("dummy:{arch_name}"),
            format: "dummy",
            weights: format!("{dtype:?} (random)").to_lowercase(),
            dtype,
            load_seconds: start.elapsed().as_secs_f64(),
            file_bytes: 0,
            adapters: opts.adapters.infos(),
            named_adapters: opts.adapters.named.iter().map(|(n, _)| n.clone()).collect(),
        },
    })
}

pub fn load_folder(folder: &Path, opts: &LoadOptions) -> Result<Model> {
    let start = Instant::now();
    let config_path = folder.join("config.json");
    if !config_path.exists() {
        return Err(Error::NotFound(format!(
            "{}: no config.json",
            folder.display()
        )));
    }
    let cfg = HfConfig::from_file(&config_path)?.into_config(&config_path)?;
    let dtype = opts.dtype.unwrap_or_else(|| default_dtype(&opts.device));
    let mut src = SafetensorsSource::open(folder, dtype, &opts.device)?;
    let ctx = context_len(&cfg, opts);
    let decoder = arch::build(
        &cfg,
        &mut src,
        dtype,
        ctx,
        Numerics::Exact,
        opts.kernels,
        &opts.adapters,
    )?;
    let (tokenizer, chat_template, generation) = folder_text_side(folder, &cfg)?;
    Ok(Model {
        decoder,
        tokenizer,
        chat_template,
        generation,
        info: ModelInfo {
            source: folder.display().to_string(),
            format: "safetensors",
            weights: format!("{dtype:?}").to_lowercase(),
            dtype,
            load_seconds: start.elapsed().as_secs_f64(),
            file_bytes: crate::weights::safetensors::weight_files(folder)?
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum(),
            adapters: opts.adapters.infos(),
            named_adapters: opts.adapters.named.iter().map(|(n, _)| n.clone()).collect(),
        },
    })
}

/// An HF folder's tokenizer, chat template and generation defaults (end-of-sequence ids).
fn folder_text_side(
    folder: &Path,
    cfg: &ModelConfig,
) -> Result<(Option<Tokenizer>, Option<ChatTemplate>, GenerationDefaults)> {
    let tok_path = folder.join("tokenizer.json");
    let mut tokenizer = if tok_path.exists() {
        Some(Tokenizer::from_file(&tok_path)?)
    } else {
        None
    };
    let tc = read_tokenizer_config(folder)?;
    let mut eos_ids = cfg.eos_token_ids.clone();
    let gen_path = folder.join("generation_config.json");
    if gen_path.exists() {
        let text = crate::files::read_text(&gen_path)?;
        let g: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                &gen_path,
                format!("not JSON: {}", crate::error::one_line(&e)),
            )
        })?;
        if let Some(e) = g.get("eos_token_id") {
            let ids: TokenIds = serde_json::from_value(e.clone()).map_err(|_| {
                Error::config(&gen_path, "eos_token_id", "not an id or list of ids")
            })?;
            eos_ids = ids.to_vec();
        }
    }
    let generation = GenerationDefaults {
        eos_ids: eos_ids.clone(),
    };
    let mut chat_template = None;
    if let Some(tk) = tokenizer.as_mut() {
        tk.bos_id = cfg.bos_token_id;
        tk.eos_ids = eos_ids;
        tk.add_bos = tc.add_bos.unwrap_or(false);
        if let Some(src) = tc.template {
            chat_template = Some(ChatTemplate::new(
                src,
                tc.bos.unwrap_or_default(),
                tc.eos.unwrap_or_default(),
            ));
        }
    }
    Ok((tokenizer, chat_template, generation))
}

#[derive(Default)]
struct TokenizerConfig {
    template: Option<String>,
    bos: Option<String>,
    eos: Option<String>,
    add_bos: Option<bool>,
}

/// `tokenizer_config.json` (template as a string or a list of named templates) and a
/// separate `chat_template.jinja`, which newer transformers write.
fn read_tokenizer_config(folder: &Path) -> Result<TokenizerConfig> {
    let mut out = TokenizerConfig::default();
    let path = folder.join("tokenizer_config.json");
    if path.exists() {
        let text = crate::files::read_text(&path)?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::format(&path, format!("not JSON: {}", crate::error::one_line(&e)))
        })?;
        out.template = match v.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .or(list.first())
                .and_then(|t| t.get("template").and_then(|s| s.as_str()).map(String::from)),
            _ => None,
        };
        let token = |k: &str| match v.get(k) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(o) => o.get("content").and_then(|c| c.as_str()).map(String::from),
            None => None,
        };
        out.bos = token("bos_token");
        out.eos = token("eos_token");
        out.add_bos = v.get("add_bos_token").and_then(|b| b.as_bool());
    }
    let jinja = folder.join("chat_template.jinja");
    if out.template.is_none() && jinja.exists() {
        out.template = Some(crate::files::read_text(&jinja)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_specs() {
        assert_eq!(ModelSpec::parse(None).unwrap(), ModelSpec::Default);
        assert_eq!(
            ModelSpec::parse(Some("HuggingFaceTB/SmolLM2-135M-Instruct")).unwrap(),
            ModelSpec::Hub {
                repo: "HuggingFaceTB/SmolLM2-135M-Instruct".into(),
                file: None
            }
        );
        assert_eq!(
            ModelSpec::parse(Some("a/b:x.gguf")).unwrap(),
            ModelSpec::Hub {
                repo: "a/b".into(),
                file: Some("x.gguf".into())
            }
        );
        let e = ModelSpec::parse(Some("missing.gguf"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.gguf"), "{e}");
    }
}
