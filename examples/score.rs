//! Library use: which answer does the model prefer? Scores two continuations of one context,
//! the context computed once and its KV cache shared.
//! `cargo run --release --example score`

use ethos::model::scoring::{ScoreOptions, ScoreRequest};
use ethos::model::{loader, LoadOptions, ModelSpec};
use ethos::steer::Session;

fn main() -> anyhow::Result<()> {
    let model = loader::load(&ModelSpec::Default, &LoadOptions::default())?;
    let tok = model.tokenizer()?;
    let context = "Question: Is it polite to greet everyone when you enter a room?\nAnswer:";
    let answers = [" Yes", " No"];
    let request = ScoreRequest {
        context: tok.encode_prompt(context)?,
        continuations: answers
            .iter()
            .map(|a| tok.encode(a))
            .collect::<Result<_, _>>()?,
    };
    let scores = Session::new(&model).score(&[request], &ScoreOptions::default())?;
    for (a, s) in answers.iter().zip(&scores[0]) {
        println!("{a:>5}: log-prob {:.4} (greedy: {})", s.logprob, s.greedy);
    }
    Ok(())
}
