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
}

impl ModelArgs {
    pub fn options(&self) -> Result<LoadOptions> {
        ethos_model::init_threads(self.threads);
        Ok(LoadOptions {
            device: ethos_model::parse_device(&self.device)?,
            dtype: self
                .dtype
                .as_deref()
                .map(ethos_model::parse_dtype)
                .transpose()?,
            max_context: self.max_context,
        })
    }

    pub fn load(&self) -> Result<Model> {
        let opts = self.options()?;
        let spec = ModelSpec::parse(self.model.as_deref())?;
        Ok(loader::load(&spec, &opts)?)
    }
}

/// Prints a value as one line of JSON.
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}
