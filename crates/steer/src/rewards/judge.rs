//! `lm-judge`: a local model is asked a yes/no question about the response; the reward is
//! log P(Yes) - log P(No) for its answer. The question goes in the model's chat template
//! when it has one. Each pair's judge prompt runs once and both answers are scored from its
//! cache (prefix reuse); pairs run in batches.

use super::{Pair, Reward};
use ethos_model::chat::Message;
use ethos_model::scoring::{continuation_tokens, score, ScoreOptions, ScoreRequest};
use ethos_model::{Model, Result};

pub struct LmJudge<'m> {
    name: String,
    model: &'m Model,
    question: String,
}

impl<'m> LmJudge<'m> {
    pub fn new(name: &str, model: &'m Model, question: &str) -> Self {
        Self {
            name: name.to_string(),
            model,
            question: question.to_string(),
        }
    }

    /// The text the judge reads before answering.
    pub fn judge_prompt(&self, pair: &Pair) -> Result<String> {
        let ask = format!(
            "{}\n\nPrompt: {}\nResponse: {}\n\nAnswer with Yes or No.",
            self.question, pair.prompt, pair.response
        );
        match &self.model.chat_template {
            Some(t) => t.render(&[Message::new("user", &ask)], true),
            None => Ok(format!("{ask}\nAnswer:")),
        }
    }
}

impl Reward for LmJudge<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&mut self, pairs: &[Pair]) -> Result<Vec<f64>> {
        let tok = self.model.tokenizer()?;
        let spaced = self.model.chat_template.is_none();
        let requests = pairs
            .iter()
            .map(|p| {
                let text = self.judge_prompt(p)?;
                let ctx = tok.encode_prompt(&text)?;
                let answer = |a: &str| {
                    let a = if spaced {
                        format!(" {a}")
                    } else {
                        a.to_string()
                    };
                    continuation_tokens(tok, &ctx, &text, &a, true)
                };
                Ok(ScoreRequest {
                    continuations: vec![answer("Yes")?, answer("No")?],
                    context: ctx,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let scores = score(
            &self.model.decoder,
            &requests,
            &ScoreOptions::default(),
            None,
        )?;
        Ok(scores.iter().map(|s| s[0].logprob - s[1].logprob).collect())
    }
}
