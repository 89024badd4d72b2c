//! MAP's `perplexity` reward: minus the mean negative log-likelihood per token of the full
//! text (prompt then response) under a model (MAP uses the generating model), i.e. -log PPL.
//! The first token (BOS where the model adds one) is the context and is not scored.

use super::{Pair, Reward};
use ethos_model::scoring::{score, ScoreOptions, ScoreRequest};
use ethos_model::{Error, Model, Result};

pub struct Perplexity<'m> {
    model: &'m Model,
}

impl<'m> Perplexity<'m> {
    pub fn new(model: &'m Model) -> Self {
        Self { model }
    }
}

impl Reward for Perplexity<'_> {
    fn name(&self) -> &str {
        "perplexity"
    }

    fn score(&mut self, pairs: &[Pair]) -> Result<Vec<f64>> {
        let tok = self.model.tokenizer()?;
        let requests = pairs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let ids = tok.encode_prompt(&format!("{}{}", p.prompt, p.response))?;
                if ids.len() < 2 {
                    return Err(Error::Msg(format!(
                        "perplexity: pair {i} has fewer than two tokens"
                    )));
                }
                Ok(ScoreRequest {
                    context: ids[..1].to_vec(),
                    continuations: vec![ids[1..].to_vec()],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let scores = score(
            &self.model.decoder,
            &requests,
            &ScoreOptions::default(),
            None,
        )?;
        Ok(scores
            .iter()
            .map(|s| s[0].logprob / s[0].token_logprobs.len() as f64)
            .collect())
    }
}
