//! Rewards computed through a server (`--backend openai`): MAP's perplexity from the
//! server's prompt log-probs of prompt + response, and lm-judge by asking the served model
//! and reading the log-probs of its two answers. The text they read is the local rewards'
//! (`judge::judge_text`), so a served model judges as the same model run here would.

use super::judge::{judge_answers, judge_text};
use super::{Pair, Reward};
use crate::error::{Error, Result};
use ethos_model::chat::ChatTemplate;
use ethos_model::scoring::continuation_split;
use ethos_model::tokenizer::TextEncoder;
use ethos_remote::Client;

/// A served model: its client, the tokenizer prompts are encoded with (a local copy or the
/// server's), and its chat template where a local copy gives it.
#[derive(Clone, Copy)]
pub struct Served<'a> {
    pub client: &'a Client,
    pub encoder: &'a dyn TextEncoder,
    /// Whether a local copy of the served model's tokenizer files is here (`--tokenizer`):
    /// then `template` is its chat template, or `None` for a model without one.
    pub text_here: bool,
    pub template: Option<&'a ChatTemplate>,
}

impl Served<'_> {
    /// The summed log-prob of each continuation after its context, from the prompt log-probs
    /// of context + continuation.
    fn continuation_logprobs(&self, items: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<f64>> {
        let prompts: Vec<Vec<u32>> = items
            .iter()
            .map(|(c, x)| c.iter().chain(x).copied().collect())
            .collect();
        let rows = self
            .client
            .prompt_logprobs(&prompts)
            .map_err(|e| Error::Msg(e.to_string()))?;
        Ok(rows
            .iter()
            .zip(items)
            .map(|(row, (c, _))| row[c.len()..].iter().flatten().sum())
            .collect())
    }
}

/// MAP's perplexity reward (`perplexity::Perplexity`), from the server.
pub struct RemotePerplexity<'a>(pub Served<'a>);

impl Reward for RemotePerplexity<'_> {
    fn name(&self) -> &str {
        "perplexity"
    }

    fn score(&mut self, pairs: &[Pair]) -> Result<Vec<f64>> {
        let items = pairs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let ids = self
                    .0
                    .encoder
                    .encode_text(&format!("{}{}", p.prompt, p.response), true)?;
                if ids.len() < 2 {
                    return Err(Error::Msg(format!(
                        "perplexity: pair {i} has fewer than two tokens"
                    )));
                }
                Ok((ids[..1].to_vec(), ids[1..].to_vec()))
            })
            .collect::<Result<Vec<_>>>()?;
        let sums = self.0.continuation_logprobs(&items)?;
        Ok(sums
            .iter()
            .zip(&items)
            .map(|(s, (_, x))| s / x.len() as f64)
            .collect())
    }
}

/// lm-judge (`judge::LmJudge`) asked of the served model.
pub struct RemoteJudge<'a> {
    name: String,
    question: String,
    served: Served<'a>,
}

impl<'a> RemoteJudge<'a> {
    /// Refused without a local copy of the served model's tokenizer files: the judge reads
    /// its question through the model's chat template, which a server does not give as
    /// text, and judging without it would ask another question.
    pub fn new(name: &str, question: &str, served: Served<'a>) -> Result<Self> {
        if !served.text_here {
            return Err(Error::Msg(format!(
                "reward `{name}` (lm-judge) through a server needs the served model's chat template here: pass --tokenizer (its HF folder or GGUF)"
            )));
        }
        Ok(RemoteJudge {
            name: name.to_string(),
            question: question.to_string(),
            served,
        })
    }
}

impl Reward for RemoteJudge<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&mut self, pairs: &[Pair]) -> Result<Vec<f64>> {
        let s = self.served;
        let answers = judge_answers(s.template.is_some());
        let mut items = Vec::with_capacity(2 * pairs.len());
        for p in pairs {
            let text = judge_text(&self.question, p, s.template)?;
            let ctx = s.encoder.encode_text(&text, true)?;
            for a in answers {
                let cont = continuation_split(
                    |t, special| s.encoder.encode_text(t, special),
                    &ctx,
                    &text,
                    a,
                    true,
                )?;
                items.push((ctx.clone(), cont));
            }
        }
        let lps = s.continuation_logprobs(&items)?;
        Ok(lps.chunks(2).map(|yn| yn[0] - yn[1]).collect())
    }
}
