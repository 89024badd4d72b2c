//! Arguments every model-running command shares, and loading from them.

use anyhow::Result;
use ethos_model::{loader, LoadOptions, Model, ModelSpec};

#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// A GGUF file, an HF model folder, or a hub repo id (owner/name, or owner/name:file.gguf).
    /// Default: SmolLM2-135M-Instruct Q4_1, fetched into models/ on first use.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// cpu, cuda[:N] or metal[:N] (cuda/metal need a build with that feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute dtype: f32, bf16 or f16. On a GGUF file any dtype dequantizes every matrix
    /// (f32 is the exact reference path); without it matrices stay quantized.
    #[arg(long)]
    pub dtype: Option<String>,
    /// Cap the context length (and the largest KV cache) below the model's own.
    #[arg(long)]
    pub max_context: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// A LoRA adapter: a PEFT folder (adapter_config.json + adapter_model.safetensors) or a
    /// llama.cpp LoRA GGUF, optionally times a scale: PATH or PATH:SCALE. Repeatable; the
    /// adapters' updates add up. Unmerged (beside quantized weights) unless --merge-lora.
    #[arg(long = "lora", value_name = "PATH[:SCALE]")]
    pub lora: Vec<String>,
    /// Merge the adapters into the weights they adapt: those layers become dense in the
    /// compute dtype (on f32/bf16 models the adapters then cost nothing per token; on a
    /// quantized model the merged layers take more memory and decode slower).
    #[arg(long)]
    pub merge_lora: bool,
}

impl ModelArgs {
    pub fn options(&self) -> Result<LoadOptions> {
        if self.threads == Some(0) {
            anyhow::bail!("--threads 0: at least one thread is needed");
        }
        if let Some(note) = ethos_model::init_threads(self.threads) {
            eprintln!("note: {note}");
        }
        Ok(LoadOptions {
            device: ethos_model::parse_device(&self.device)?,
            dtype: self
                .dtype
                .as_deref()
                .map(ethos_model::parse_dtype)
                .transpose()?,
            max_context: self.max_context,
            kernels: ethos_model::Kernels::from_env(),
            adapters: ethos_model::lora::Adapters::load(&self.adapter_specs()?, self.merge_lora)?,
        })
    }

    /// The `--lora` specs, checked (`--merge-lora` needs one).
    pub fn adapter_specs(&self) -> Result<Vec<ethos_model::lora::AdapterSpec>> {
        if self.merge_lora && self.lora.is_empty() {
            anyhow::bail!("--merge-lora merges the --lora adapters: give at least one");
        }
        self.lora
            .iter()
            .map(|s| s.parse().map_err(anyhow::Error::msg))
            .collect()
    }

    /// The same model without its adapters (the base a LoRA run is compared with).
    pub fn without_adapters(&self) -> Self {
        Self {
            lora: Vec::new(),
            merge_lora: false,
            ..self.clone()
        }
    }

    pub fn load(&self) -> Result<Model> {
        let opts = self.options()?;
        let spec = ModelSpec::parse(self.model.as_deref())?;
        Ok(loader::load(&spec, &opts)?)
    }
}

/// Control vectors applied through the residual hook (llama.cpp's file format and layer
/// convention: `direction.N` is added to the output of block N at every position).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ControlArgs {
    /// A control-vector GGUF (llama.cpp / repeng format), optionally times a scale:
    /// FILE or FILE:SCALE. Repeatable; the vectors are summed.
    #[arg(long = "control-vector", value_name = "FILE[:SCALE]")]
    pub control_vector: Vec<String>,
    /// Apply the control vectors only to blocks START..=END (default: all their layers).
    #[arg(long, num_args = 2, value_names = ["START", "END"])]
    pub control_vector_layer_range: Option<Vec<usize>>,
}

impl ControlArgs {
    /// What a run records of its steering: each file with its SHA-256 and scale, and the
    /// layer range; `None` without `--control-vector`.
    pub fn describe(&self) -> Result<Option<serde_json::Value>> {
        if self.control_vector.is_empty() {
            return Ok(None);
        }
        let mut files = Vec::new();
        for spec in &self.control_vector {
            let (path, scale) =
                ethos_steer::control::parse_spec(spec).map_err(anyhow::Error::msg)?;
            files.push(serde_json::json!({
                "file": path.display().to_string(),
                "sha256": ethos_evals::data::Source::read(&path)?.sha256(),
                "scale": scale,
            }));
        }
        Ok(Some(serde_json::json!({
            "control_vectors": files,
            "layer_range": self.control_vector_layer_range,
        })))
    }

    /// A session on `model`, steered by the control vectors (unsteered without
    /// `--control-vector`).
    pub fn session<'m>(&self, model: &'m Model) -> Result<ethos_steer::Session<'m>> {
        Ok(ethos_steer::Session::new(model).with_control(self.set(model)?.as_ref())?)
    }

    /// The summed control vectors for `model`, or `None` without `--control-vector`.
    pub fn set(&self, model: &Model) -> Result<Option<ethos_steer::control::ControlSet>> {
        if self.control_vector.is_empty() {
            return Ok(None);
        }
        let files = self
            .control_vector
            .iter()
            .map(|s| ethos_steer::control::parse_spec(s).map_err(anyhow::Error::msg))
            .collect::<Result<Vec<_>>>()?;
        let range = self
            .control_vector_layer_range
            .as_ref()
            .map(|r| (r[0], r[1]));
        if let Some((a, b)) = range {
            if a > b {
                anyhow::bail!("--control-vector-layer-range {a} {b}: START is after END");
            }
        }
        let c = model.config();
        let set =
            ethos_steer::control::ControlSet::load(&files, range, c.hidden_size, c.num_layers)?;
        Ok(Some(set))
    }
}

/// Prints a value as one line of JSON.
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

/// The lines of `reader`, each at most `MAX_LINE_BYTES` (`ethos_steer::requests`).
pub fn bounded_lines<'a, R: std::io::BufRead + 'a>(
    reader: R,
    source: &'a str,
) -> impl Iterator<Item = Result<String>> + 'a {
    ethos_steer::requests::bounded_lines(reader, source).map(|l| l.map_err(anyhow::Error::from))
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// The model given by --model, run here.
    #[default]
    Local,
    /// A server that speaks the OpenAI completions API with prompt log-probs (vLLM, ethos serve).
    Openai,
}

/// Where a command's model runs: here (the default) or on a server.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RemoteArgs {
    /// local (the model of --model) or openai (the server at --base-url).
    #[arg(long, value_enum, default_value_t = BackendKind::Local)]
    pub backend: BackendKind,
    /// The server's address, e.g. http://10.0.0.5:8000/v1 (--backend openai).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// The served model's id (default: the one model the server lists).
    #[arg(long, value_name = "NAME")]
    pub served_model: Option<String>,
    /// The environment variable holding the server's API key, sent as a Bearer token.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Prompts sent as one list in a scoring request.
    #[arg(long, default_value_t = 8)]
    pub prompts_per_request: usize,
    /// Seconds one request may take before it is retried.
    #[arg(long, default_value_t = 600.0)]
    pub request_timeout: f64,
    /// Tries after the first on 429, 5xx and connection errors (backoff doubles from 0.5 s,
    /// with jitter).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// A local copy of the served model's tokenizer (HF folder or GGUF): prompts are encoded
    /// here instead of by the server's /tokenize, and its chat template makes chat formats
    /// available.
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<std::path::PathBuf>,
}

impl RemoteArgs {
    pub fn is_remote(&self) -> bool {
        self.backend == BackendKind::Openai
    }

    /// Refuses the remote flags without `--backend openai`, and local model flags with it.
    pub fn check(&self, model: &ModelArgs) -> Result<()> {
        if !self.is_remote() {
            if self.base_url.is_some() || self.served_model.is_some() || self.tokenizer.is_some() {
                anyhow::bail!("--base-url, --served-model and --tokenizer need --backend openai");
            }
            return Ok(());
        }
        if model.model.is_some() || model.dtype.is_some() {
            anyhow::bail!("--model and --dtype choose a local model; with --backend openai the model is the server's (--served-model)");
        }
        if !model.lora.is_empty() {
            anyhow::bail!("--lora adapts weights run here; with --backend openai the weights are the server's (start ethos serve with --lora)");
        }
        if self.base_url.is_none() {
            anyhow::bail!("--backend openai needs --base-url (the server's address, e.g. http://127.0.0.1:8000/v1)");
        }
        Ok(())
    }

    /// The remote backend: the server, and the local tokenizer when one is given.
    pub fn backend(&self) -> Result<ethos_evals::RemoteBackend> {
        let text_side = match &self.tokenizer {
            Some(p) => Some(ethos_model::loader::load_text_side(p)?),
            None => None,
        };
        Ok(ethos_evals::RemoteBackend::new(self.connect()?, text_side))
    }

    /// Connects to the server: checks the address, finds the served model.
    pub fn connect(&self) -> Result<ethos_remote::Client> {
        let api_key = match &self.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                anyhow::anyhow!("--api-key-env {var}: the environment variable is not set")
            })?),
            None => None,
        };
        if !(self.request_timeout.is_finite() && self.request_timeout > 0.0) {
            anyhow::bail!("--request-timeout must be a positive number of seconds");
        }
        Ok(ethos_remote::Client::connect(
            ethos_remote::RemoteOptions {
                base_url: self.base_url.clone().unwrap_or_default(),
                served_model: self.served_model.clone(),
                api_key,
                concurrency: self.concurrency,
                prompts_per_request: self.prompts_per_request,
                timeout: std::time::Duration::from_secs_f64(self.request_timeout),
                retries: self.retries,
                backoff: std::time::Duration::from_millis(500),
            },
        )?)
    }
}
