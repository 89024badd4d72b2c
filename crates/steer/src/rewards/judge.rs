//! `lm-judge`: a local model is asked a yes/no question about the response; the reward is
//! log P(Yes) - log P(No) for its answer. The question goes in the model's chat template
//! when it has one. Each pair's judge prompt runs once and both answers are scored from its
//! cache (prefix reuse); pairs run in batches.

use super::{Pair, Reward};
use crate::error::Result;
use ethos_model::chat::{ChatTemplate, Message};
use ethos_model::prefix::PrefixScorer;
use ethos_model::scoring::{continuation_tokens, score, ScoreOptions, ScoreRequest};
use ethos_model::Model;

pub struct LmJudge<'m> {
    name: String,
    model: &'m Model,
    question: String,
    /// The judge prompt up to the response so far, cached across decoding steps.
    prefix: PrefixScorer<'m>,
}

impl<'m> LmJudge<'m> {
    pub fn new(name: &str, model: &'m Model, question: &str) -> Self {
        Self {
            name: name.to_string(),
            model,
            question: question.to_string(),
            prefix: PrefixScorer::new(&model.decoder),
        }
    }

    /// The text the judge reads before answering.
    pub fn judge_prompt(&self, pair: &Pair) -> Result<String> {
        judge_text(&self.question, pair, self.model.chat_template.as_ref())
    }

    /// The judge prompt split around the response: (text before it, text after it).
    fn around_response(&self, prompt: &str) -> Result<(String, String)> {
        const MARK: &str = "\u{1}ETHOS-RESPONSE\u{1}";
        let text = self.judge_prompt(&Pair {
            prompt: prompt.to_string(),
            response: MARK.to_string(),
        })?;
        let (head, tail) = text.split_once(MARK).ok_or_else(|| {
            ethos_model::Error::Msg("the judge template dropped the response".into())
        })?;
        Ok((head.to_string(), tail.to_string()))
    }

    fn answers(&self) -> [&'static str; 2] {
        judge_answers(self.model.chat_template.is_some())
    }
}

/// The text a judge reads before answering `question` about `pair`: one user turn of its
/// chat template, or the question followed by "Answer:" without one.
pub fn judge_text(question: &str, pair: &Pair, template: Option<&ChatTemplate>) -> Result<String> {
    let ask = format!(
        "{question}\n\nPrompt: {}\nResponse: {}\n\nAnswer with Yes or No.",
        pair.prompt, pair.response
    );
    match template {
        Some(t) => Ok(t.render(&[Message::new("user", &ask)], true)?),
        None => Ok(format!("{ask}\nAnswer:")),
    }
}

/// The two answers whose log-probs are compared: the assistant's first word in a chat
/// template, a word after "Answer:" without one.
pub fn judge_answers(chat: bool) -> [&'static str; 2] {
    if chat {
        ["Yes", "No"]
    } else {
        [" Yes", " No"]
    }
}

impl Reward for LmJudge<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&mut self, pairs: &[Pair]) -> Result<Vec<f64>> {
        let tok = self.model.tokenizer()?;
        let [yes, no] = self.answers();
        let requests = pairs
            .iter()
            .map(|p| {
                let text = self.judge_prompt(p)?;
                let ctx = tok.encode_prompt(&text)?;
                let answer = |a: &str| continuation_tokens(tok, &ctx, &text, a, true);
                Ok(ScoreRequest {
                    continuations: vec![answer(yes)?, answer(no)?],
                    context: ctx,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let opts = ScoreOptions::default();
        let scores = score(&self.model.decoder, &requests, &opts, None)?;
        Ok(scores.iter().map(|s| s[0].logprob - s[1].logprob).collect())
    }

    /// Every candidate from one judge context: the judge prompt up to the response so far is
    /// kept in a cache across steps (each step runs only its new tokens); each candidate
    /// continues it with the rest of the prompt in one batched pass, and both answers are read
    /// from that pass's last position. Where an answer does not follow the prompt as one token
    /// of its own, every candidate and answer is scored as a continuation instead.
    fn score_extensions(&mut self, pair: &Pair, pieces: &[String]) -> Option<Result<Vec<f64>>> {
        Some((|| {
            let tok = self.model.tokenizer()?;
            let (head, tail) = self.around_response(&pair.prompt)?;
            let context = format!("{head}{}", pair.response);
            let ctx = tok.encode_prompt(&context)?;
            let answers = self.answers();
            let mut branches = Vec::with_capacity(pieces.len());
            let mut continuations = Vec::with_capacity(2 * pieces.len());
            let mut answer_ids: Option<[u32; 2]> = None;
            let mut one_token_answers = true;
            for piece in pieces {
                let body = format!("{piece}{tail}");
                let branch = continuation_tokens(tok, &ctx, &context, &body, true)?;
                let mut ids = [0u32; 2];
                for (k, a) in answers.iter().enumerate() {
                    let full =
                        continuation_tokens(tok, &ctx, &context, &format!("{body}{a}"), true)?;
                    match full.split_last() {
                        Some((&last, rest)) if rest == branch.as_slice() => ids[k] = last,
                        _ => one_token_answers = false,
                    }
                    continuations.push(full);
                }
                one_token_answers &= *answer_ids.get_or_insert(ids) == ids;
                branches.push(branch);
            }
            if let (true, Some(ids)) = (one_token_answers, answer_ids) {
                self.prefix.advance(&ctx)?;
                let ends = self.prefix.branch_end_logprobs(&branches, &ids)?;
                return Ok(ends.iter().map(|e| (e[0] - e[1]) as f64).collect());
            }
            let req = ScoreRequest {
                context: ctx,
                continuations,
            };
            let s = score(&self.model.decoder, &[req], &ScoreOptions::default(), None)?;
            Ok(s[0]
                .chunks(2)
                .map(|yn| yn[0].logprob - yn[1].logprob)
                .collect())
        })())
    }
}
