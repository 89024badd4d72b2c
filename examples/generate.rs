//! Library use: load the default model and generate greedily, streaming to stdout.
//! `cargo run --release --example generate -- "Once upon a time"`

use ethos::model::{loader, LoadOptions, ModelSpec};
use ethos::steer::{GenerateOptions, GenerateRequest, SamplingParams, Session};
use std::io::Write;

fn main() -> anyhow::Result<()> {
    let prompt = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "Once upon a time".into());
    let model = loader::load(&ModelSpec::Default, &LoadOptions::default())?;
    let ids = model.tokenizer()?.encode_prompt(&prompt)?;
    let opts = GenerateOptions {
        max_tokens: 48,
        ..Default::default()
    };
    print!("{prompt}");
    let req = GenerateRequest::new(ids, SamplingParams::greedy(), opts);
    let g = Session::new(&model).generate(&req, &mut |piece| {
        print!("{piece}");
        let _ = std::io::stdout().flush();
    })?;
    println!("\n[{} tokens, {:?}]", g.token_ids.len(), g.finish_reason);
    Ok(())
}
