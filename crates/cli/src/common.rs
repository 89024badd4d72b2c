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
        })
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
