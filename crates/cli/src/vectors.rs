//! `ethos vectors train`: a control vector from contrastive prompt pairs, written in
//! llama.cpp's control-vector GGUF format.

use crate::common::{print_json, ModelArgs};
use anyhow::{bail, Result};
use ethos_steer::vectors::{train, Method, Pair};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum Which {
    /// Train a control vector from pairs of prompts that differ in one value.
    Train(TrainArgs),
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL, one pair per line: {"positive": "...", "negative": "..."}.
    #[arg(long)]
    pub pairs: PathBuf,
    /// Blocks to make directions for, START..END inclusive (START >= 1).
    #[arg(long, value_parser = parse_range)]
    pub layers: (usize, usize),
    /// mean (CAA: mean difference) or pca (repeng: first component of the differences).
    #[arg(long, default_value = "mean", value_parser = ["mean", "pca"])]
    pub method: String,
    /// The control-vector GGUF to write.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    #[arg(long)]
    pub json: bool,
}

fn parse_range(s: &str) -> std::result::Result<(usize, usize), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("`{s}`: expected START..END"))?;
    let a: usize = a
        .parse()
        .map_err(|_| format!("`{s}`: START is not a number"))?;
    let b: usize = b
        .trim_start_matches('=')
        .parse()
        .map_err(|_| format!("`{s}`: END is not a number"))?;
    if a > b {
        return Err(format!("`{s}`: START is after END"));
    }
    Ok((a, b))
}

pub fn run(w: Which) -> Result<()> {
    let Which::Train(a) = w;
    let text = ethos_model::files::read_text(&a.pairs)?;
    let mut pairs = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let p: Pair = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}: not a {{\"positive\", \"negative\"}} pair: {e}",
                a.pairs.display(),
                i + 1
            )
        })?;
        pairs.push(p);
    }
    if pairs.is_empty() {
        bail!("{}: no pairs", a.pairs.display());
    }
    let method = if a.method == "pca" {
        Method::Pca
    } else {
        Method::Mean
    };
    let model = a.model.load()?;
    let cv = train(&model, &pairs, a.layers.0..=a.layers.1, method)?;
    cv.write(&a.output)?;
    if a.json {
        return print_json(&serde_json::json!({
            "output": a.output.display().to_string(),
            "pairs": pairs.len(),
            "layers": cv.directions.keys().collect::<Vec<_>>(),
            "method": a.method,
        }));
    }
    println!(
        "wrote {}: {} directions (blocks {}..{}) from {} pairs, method {}",
        a.output.display(),
        cv.directions.len(),
        a.layers.0,
        a.layers.1,
        pairs.len(),
        a.method
    );
    Ok(())
}
