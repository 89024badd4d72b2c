//! MAP's `perplexity` reward: minus the mean negative log-likelihood per token of the full
//! text (prompt then response) under a model (MAP uses the generating model), i.e. -log PPL.
//! The first token (BOS where the model adds one) is the context and is not scored.

use super::{Pair, Reward};
use crate::error::{Error, Result};
use ethos_model::prefix::PrefixScorer;
use ethos_model::scoring::{continuation_tokens, score, ScoreOptions, ScoreRequest};
use ethos_model::Model;

pub struct Perplexity<'m> {
    model: &'m Model,
    /// The text so far (prompt and response), cached across decoding steps.
    prefix: PrefixScorer<'m>,
}

impl<'m> Perplexity<'m> {
    pub fn new(model: &'m Model) -> Self {
        Self {
            model,
            prefix: PrefixScorer::new(&model.decoder),
        }
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

    /// Each candidate's -log PPL from the text so far, kept in a cache across steps, plus the
    /// candidate's own tokens (read from the next-token distribution when it is one token).
    fn score_extensions(&mut self, pair: &Pair, pieces: &[String]) -> Option<Result<Vec<f64>>> {
        Some((|| {
            let tok = self.model.tokenizer()?;
            let text = format!("{}{}", pair.prompt, pair.response);
            let ids = tok.encode_prompt(&text)?;
            let branches = pieces
                .iter()
                .map(|p| continuation_tokens(tok, &ids, &text, p, true))
                .collect::<ethos_model::Result<Vec<_>>>()?;
            self.prefix.advance(&ids)?;
            let base = self.prefix.logprob();
            let lps = self.prefix.branch_logprobs(&branches)?;
            branches
                .iter()
                .zip(lps)
                .enumerate()
                .map(|(i, (b, lp))| {
                    let n = ids.len() - 1 + b.len();
                    if n == 0 {
                        return Err(Error::Msg(format!(
                            "perplexity: candidate {i} leaves fewer than two tokens"
                        )));
                    }
                    Ok((base + lp) / n as f64)
                })
                .collect()
        })())
    }
}
