//! `ethos serve`

use crate::common::ModelArgs;
use anyhow::{bail, Context, Result};
use ethos_serve::{Limits, ServeConfig, Server};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on. Loopback by default: serving other machines is a choice.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The model id clients name (default: the model file's or folder's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Require `Authorization: Bearer KEY` (default: the ETHOS_API_KEY environment variable,
    /// else no key).
    #[arg(long)]
    pub api_key: Option<String>,
    /// KV-cache memory of the running batch, e.g. 2GiB or 512MiB (default: a quarter of the
    /// memory available at start). Requests wait in the queue while it is full.
    #[arg(long)]
    pub kv_memory: Option<String>,
    /// Control vectors (GGUF) that requests may name in `control_vectors`.
    #[arg(long)]
    pub control_vector_dir: Option<std::path::PathBuf>,
    /// LoRA adapters that requests may select by name in `lora` (PEFT folders and LoRA
    /// GGUF files in this folder, named by folder or file stem), each applied to its
    /// requests' rows alone.
    #[arg(long)]
    pub lora_dir: Option<std::path::PathBuf>,
    /// Solved palettes (lambda files of `steer solve/fit --lambda-out`, with their palette
    /// files beside them) that requests may name in `palette`.
    #[arg(long)]
    pub palette_dir: Option<std::path::PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Longest prompt in tokens (the context length caps it too).
    #[arg(long, default_value_t = Limits::default().max_prompt_tokens)]
    pub max_prompt_tokens: usize,
    /// Largest `max_tokens` a request may ask for.
    #[arg(long, default_value_t = Limits::default().max_tokens)]
    pub max_tokens_limit: usize,
    /// Largest `n`.
    #[arg(long, default_value_t = Limits::default().max_n)]
    pub max_n: usize,
    /// Largest `logprobs` / `top_logprobs` / `prompt_logprobs`.
    #[arg(long, default_value_t = Limits::default().max_logprobs)]
    pub max_logprobs: usize,
    /// Most prompts in one completions request.
    #[arg(long, default_value_t = Limits::default().max_prompts)]
    pub max_prompts: usize,
    /// Requests served at once; more are answered 503.
    #[arg(long, default_value_t = Limits::default().max_concurrent)]
    pub max_concurrent: usize,
    /// Prompts waiting for room in the batch; more are answered 429.
    #[arg(long, default_value_t = Limits::default().max_queue)]
    pub max_queue: usize,
    /// Seconds a request may run before it is stopped (504).
    #[arg(long, default_value_t = Limits::default().timeout.as_secs())]
    pub request_timeout: u64,
}

/// `2GiB`, `512MiB`, `64KiB` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ]
    .iter()
    .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((t, 1));
    let n: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0)
        .with_context(|| format!("--kv-memory {s:?}: expected a size such as 2GiB or 512MiB"))?;
    Ok((n * mult as f64) as u64)
}

pub fn run(a: Args) -> Result<()> {
    let kv_memory = a.kv_memory.as_deref().map(parse_size).transpose()?;
    if a.request_timeout == 0 {
        bail!("--request-timeout 0: at least one second is needed");
    }
    let model = match &a.lora_dir {
        None => a.model.load()?,
        Some(dir) => {
            if !dir.is_dir() {
                bail!("--lora-dir {}: not a folder", dir.display());
            }
            let mut opts = a.model.options()?;
            opts.adapters.named = ethos_model::lora::Adapters::load_dir(dir)?;
            if opts.adapters.named.is_empty() {
                bail!(
                    "--lora-dir {}: no adapters (PEFT folders with adapter_config.json, or *.gguf LoRA files)",
                    dir.display()
                );
            }
            let spec = ethos_model::ModelSpec::parse(a.model.model.as_deref())?;
            ethos_model::loader::load(&spec, &opts)?
        }
    };
    let name = a.served_model_name.clone().unwrap_or_else(|| {
        std::path::Path::new(&model.info.source)
            .file_stem()
            .map_or_else(
                || model.info.source.clone(),
                |s| s.to_string_lossy().into_owned(),
            )
    });
    let mut config = ServeConfig::new(&name);
    config.host = a.host.clone();
    config.port = a.port;
    config.api_key = a.api_key.clone().or_else(|| {
        std::env::var("ETHOS_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
    });
    config.kv_memory = kv_memory;
    config.control_vector_dir = a.control_vector_dir.clone();
    config.palette_dir = a.palette_dir.clone();
    config.limits = Limits {
        max_body_bytes: a.max_body_bytes,
        max_prompt_tokens: a.max_prompt_tokens,
        max_tokens: a.max_tokens_limit,
        max_n: a.max_n,
        max_logprobs: a.max_logprobs,
        max_prompts: a.max_prompts,
        max_concurrent: a.max_concurrent,
        max_queue: a.max_queue,
        timeout: Duration::from_secs(a.request_timeout),
    };
    let context = model.decoder.max_positions();
    let server = Server::bind(model, config.clone())?;
    let addr = server.local_addr()?;
    eprintln!(
        "ethos serve: `{name}` (context {context} tokens) on http://{addr}{}; Ctrl-C or SIGTERM stops it",
        if config.api_key.is_some() { ", API key required" } else { "" }
    );
    server.run()?;
    eprintln!("ethos serve: stopped");
    Ok(())
}
