//! Where a run's prompts are scored and generated: a local session (the default) or a server
//! that speaks the OpenAI completions API with prompt log-probs (vLLM on a cluster, `ethos
//! serve`). The runner asks a backend to encode prompts, score options and generate; it
//! never sees which one it talks to.

use crate::benchmark::Prompt;
use crate::encoding::{encode_with, Encoded, TextEncoder};
use crate::error::{bail, Error, Result};
use ethos_model::chat::ChatTemplate;
use ethos_model::scoring::{Openings, ScoreOptions, ScoreRequest};
use ethos_model::tokenizer::Tokenizer;
use ethos_remote::{Client, CompletionParams};
use ethos_steer::{GenerateOptions, GenerateRequest, SamplingParams, Session};
use serde_json::{json, Value};

/// One option's score: its summed log-prob and how many tokens it has.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub logprob: f64,
    pub tokens: usize,
}

pub trait Backend {
    /// What the run is run on, for `run.json` and `results.json`; a resumed run must have
    /// the same (see `comparable_identity`).
    fn identity(&self) -> Result<Value>;
    /// The longest prompt plus continuation or generation, in tokens.
    fn max_positions(&self) -> usize;
    fn chat_available(&self) -> bool;
    fn encode(&self, p: &Prompt) -> Result<Encoded>;
    /// `encode` of each prompt, in order (a server's tokenizer takes them concurrently).
    fn encode_many(&self, prompts: &[&Prompt]) -> Vec<Result<Encoded>> {
        prompts.iter().map(|p| self.encode(p)).collect()
    }
    /// Each request's continuations' scores, in order.
    fn score(&mut self, requests: &[ScoreRequest]) -> Result<Vec<Vec<Scored>>>;
    /// The greedy continuation of each context (at most its `max_tokens`), with its length
    /// in tokens where known.
    fn generate_greedy(&mut self, jobs: &[GenerationJob]) -> Result<Vec<(String, usize)>>;
    /// A short note for the progress bar (a server's tokens/s).
    fn progress_note(&self) -> Option<String> {
        None
    }
    /// What the run sent to a server (requests, retries, tokens), for `results.json`.
    fn traffic(&self) -> Option<Value> {
        None
    }
}

/// One greedy generation: the prompt's tokens, the budget, and the strings that end it.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationJob {
    pub context: Vec<u32>,
    pub max_tokens: usize,
    pub stop: Vec<String>,
}

/// A session on a local model, with the openings (shared instructions) it has run.
pub struct LocalBackend<'s, 'm> {
    pub session: &'s mut Session<'m>,
    openings: Openings,
    score_opts: ScoreOptions,
}

impl<'s, 'm> LocalBackend<'s, 'm> {
    pub fn new(session: &'s mut Session<'m>, batch: usize) -> Self {
        LocalBackend {
            session,
            openings: Openings::default(),
            score_opts: ScoreOptions {
                batch_requests: batch.max(1),
                ..Default::default()
            },
        }
    }
}

impl Backend for LocalBackend<'_, '_> {
    fn identity(&self) -> Result<Value> {
        crate::identity::model_identity(self.session.model())
    }

    fn max_positions(&self) -> usize {
        self.session.model().decoder.max_positions()
    }

    fn chat_available(&self) -> bool {
        self.session.model().chat_template.is_some()
    }

    fn encode(&self, p: &Prompt) -> Result<Encoded> {
        crate::encoding::encode(self.session.model(), p)
    }

    fn score(&mut self, requests: &[ScoreRequest]) -> Result<Vec<Vec<Scored>>> {
        let scored =
            self.session
                .score_with_openings(requests, &self.score_opts, &mut self.openings)?;
        Ok(scored
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|c| Scored {
                        logprob: c.logprob,
                        tokens: c.token_ids.len(),
                    })
                    .collect()
            })
            .collect())
    }

    fn generate_greedy(&mut self, jobs: &[GenerationJob]) -> Result<Vec<(String, usize)>> {
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            let req = GenerateRequest::new(
                job.context.clone(),
                SamplingParams::greedy(),
                GenerateOptions {
                    max_tokens: job.max_tokens,
                    stop: job.stop.clone(),
                    ..Default::default()
                },
            );
            let g = self.session.generate(&req, &mut |_| {})?;
            out.push((g.text, g.token_ids.len()));
        }
        Ok(out)
    }
}

/// A model served over the OpenAI API: prompts are tokenized by the server's `/tokenize`,
/// options scored from the prompt log-probs of context + option sent as token ids (so the
/// split between them is the one computed here), generation by greedy completions.
pub struct RemoteBackend {
    pub client: Client,
    /// A local copy of the served model's tokenizer and chat template (`--tokenizer`): it
    /// encodes instead of the server's `/tokenize`, and makes chat formats available.
    pub text_side: Option<(Tokenizer, Option<ChatTemplate>)>,
}

impl RemoteBackend {
    pub fn new(client: Client, text_side: Option<(Tokenizer, Option<ChatTemplate>)>) -> Self {
        RemoteBackend { client, text_side }
    }

    /// The served model as the remote rewards see it.
    pub fn served(&self) -> ethos_steer::rewards::remote::Served<'_> {
        ethos_steer::rewards::remote::Served {
            client: &self.client,
            encoder: self.encoder(),
            text_here: self.text_side.is_some(),
            template: self.text_side.as_ref().and_then(|(_, t)| t.as_ref()),
        }
    }

    /// The tokenizer prompts are encoded with: the local copy, else the server's.
    pub fn encoder(&self) -> &dyn TextEncoder {
        match &self.text_side {
            Some((tok, _)) => tok,
            None => &self.client,
        }
    }
}

impl RemoteBackend {
    /// Each continuation's per-token log-probs, from the prompt log-probs of context +
    /// continuation (sent as token ids, several prompts per request).
    pub fn token_logprobs(&self, requests: &[ScoreRequest]) -> Result<Vec<Vec<Vec<f64>>>> {
        let mut prompts = Vec::new();
        for r in requests {
            for c in &r.continuations {
                let mut p = r.context.clone();
                p.extend_from_slice(c);
                prompts.push(p);
            }
        }
        let mut rows = self.client.prompt_logprobs(&prompts)?.into_iter();
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            let mut scores = Vec::with_capacity(r.continuations.len());
            for c in &r.continuations {
                let row = rows.next().ok_or_else(|| {
                    Error::Internal("the server returned fewer prompts than it was sent".into())
                })?;
                let lps = row[r.context.len()..r.context.len() + c.len()]
                    .iter()
                    .map(|lp| {
                        lp.ok_or_else(|| {
                            Error::Internal("a continuation token without a log-prob".into())
                        })
                    })
                    .collect::<Result<Vec<f64>>>()?;
                scores.push(lps);
            }
            out.push(scores);
        }
        Ok(out)
    }
}

impl Backend for RemoteBackend {
    fn identity(&self) -> Result<Value> {
        let c = &self.client;
        Ok(json!({
            "tokenizer": if self.text_side.is_some() { "local" } else { "server" },
            "backend": "openai",
            "source": format!("{}/{}", c.host, c.model),
            "host": c.host,
            "served_model": c.model,
            "max_model_len": c.max_model_len,
        }))
    }

    fn max_positions(&self) -> usize {
        // One position is kept for the token a completion must generate.
        self.client
            .max_model_len
            .map_or(usize::MAX, |n| n.saturating_sub(1))
    }

    fn chat_available(&self) -> bool {
        matches!(&self.text_side, Some((_, Some(_))))
    }

    fn encode(&self, p: &Prompt) -> Result<Encoded> {
        match &self.text_side {
            Some((tok, template)) => encode_with(tok, template.as_ref(), p),
            None if p.chat => bail!(
                Selection,
                "chat formats need the served model's chat template, which the server does not give as text: pass --tokenizer (its HF folder or GGUF) or use a raw format"
            ),
            None => encode_with(&self.client, None, p),
        }
    }

    fn encode_many(&self, prompts: &[&Prompt]) -> Vec<Result<Encoded>> {
        if self.text_side.is_some() {
            return prompts.iter().map(|p| self.encode(p)).collect();
        }
        // Each prompt asks /tokenize once for its context and once per option; the requests
        // of different prompts go out together.
        let results: std::result::Result<Vec<Result<Encoded>>, ()> = ethos_remote::map_concurrent(
            prompts.to_vec(),
            self.client.options().concurrency,
            |p| Ok(self.encode(p)),
        );
        results.unwrap_or_default()
    }

    fn score(&mut self, requests: &[ScoreRequest]) -> Result<Vec<Vec<Scored>>> {
        Ok(self
            .token_logprobs(requests)?
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|lps| Scored {
                        logprob: lps.iter().sum(),
                        tokens: lps.len(),
                    })
                    .collect()
            })
            .collect())
    }

    fn generate_greedy(&mut self, jobs: &[GenerationJob]) -> Result<Vec<(String, usize)>> {
        let requests = jobs
            .iter()
            .map(|job| {
                (
                    job.context.clone(),
                    CompletionParams {
                        max_tokens: job.max_tokens,
                        temperature: Some(0.0),
                        stop: job.stop.clone(),
                        ..Default::default()
                    },
                )
            })
            .collect();
        let answers = self.client.complete_many(requests)?;
        Ok(answers
            .into_iter()
            .map(|mut choices| {
                let text = choices.pop().map(|c| c.text).unwrap_or_default();
                (text, 0)
            })
            .collect())
    }

    fn progress_note(&self) -> Option<String> {
        let s = self.client.stats();
        Some(format!(
            "server {:.0} tok/s, {} requests{}",
            self.client.tokens_per_second(),
            s.requests,
            if s.retries > 0 {
                format!(", {} retried", s.retries)
            } else {
                String::new()
            }
        ))
    }

    fn traffic(&self) -> Option<Value> {
        let s = self.client.stats();
        let o = self.client.options();
        Some(json!({
            "requests": s.requests,
            "retries": s.retries,
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "concurrency": o.concurrency,
            "prompts_per_request": o.prompts_per_request,
        }))
    }
}

/// The parts of a model identity that must match for a run to resume: a remote run may
/// resume through another address or a server restarted with another context length, but
/// not against another model.
pub fn comparable_identity(model: &Value) -> Value {
    let mut v = model.clone();
    if v.get("backend").is_some() {
        if let Some(o) = v.as_object_mut() {
            for k in ["host", "max_model_len", "source"] {
                o.remove(k);
            }
        }
    }
    v
}
