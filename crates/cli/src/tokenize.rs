//! `ethos tokenize`

use crate::common::{print_json, ModelArgs};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to tokenize.
    #[arg(long, short = 't')]
    pub text: String,
    /// Prepend BOS when the model asks for it (as prompts are encoded).
    #[arg(long)]
    pub prompt: bool,
}

pub fn run(a: Args) -> Result<()> {
    let model = a.model.load()?;
    let tok = model.tokenizer()?;
    let ids = if a.prompt {
        tok.encode_prompt(&a.text)?
    } else {
        tok.encode(&a.text)?
    };
    let pieces = tok.pieces(&ids);
    print_json(&serde_json::json!({"ids": ids, "pieces": pieces}))
}
