//! A generation request as the engine runs it: the body parsed and checked (`api`), its
//! prompts tokenized or its messages rendered through the chat template off the async
//! threads, its limits checked against the context, its steering resolved to files of the
//! server's folders.

use crate::api::{self, PromptInput};
use crate::engine::TokenLogprob;
use crate::error::ApiError;
use crate::state::{body, AppState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use ethos_steer::control::ControlSet;
use ethos_steer::{FinishReason, GenerateOptions, SamplingParams};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

/// A checked request, ready to run.
pub struct Prepared {
    pub endpoint: Endpoint,
    /// Each prompt's ids and its text (what `echo` returns).
    pub prompts: Vec<(Vec<u32>, String)>,
    pub choices: Vec<SamplingParams>,
    pub limits: GenerateOptions,
    pub logprobs: Option<usize>,
    /// vLLM's `prompt_logprobs` (top N per prompt token).
    pub prompt_logprobs: Option<usize>,
    pub echo: bool,
    pub stream: bool,
    pub control: Option<Arc<ControlSet>>,
    /// The named adapters the request selects (`lora`), as (index, scale).
    pub adapters: Vec<(usize, f32)>,
    /// Return the unsteered log-probs of the same tokens beside the steered ones.
    pub steering_report: bool,
    /// Decode with a solved palette instead of the batch.
    pub palette: Option<crate::palette::PaletteJob>,
    /// Tilt each prompt's option score by a palette: the lambda file and each prompt's
    /// context length in tokens.
    pub palette_scoring: Option<(std::path::PathBuf, Vec<usize>)>,
    pub permit: OwnedSemaphorePermit,
}

pub async fn prepare_completion(
    state: &AppState,
    b: Result<Bytes, BytesRejection>,
) -> Result<Prepared, ApiError> {
    let permit = state.slot()?;
    let b = body(state, b)?;
    let vocab = state.model.config().vocab_size;
    let api::CheckedCompletion {
        body: v,
        palette,
        palette_scoring,
        req,
        sampling,
        prompts: inputs,
        choices,
        stop,
    } = api::check_completion(&b, &state.config.limits, vocab)?;
    state.check_model(req.model.as_deref())?;
    let model = state.model.clone();
    let prompts =
        tokio::task::spawn_blocking(move || -> Result<Vec<(Vec<u32>, String)>, ApiError> {
            let tok = model.tokenizer()?;
            inputs
                .into_iter()
                .map(|p| match p {
                    PromptInput::Text(t) => Ok((tok.encode_prompt(&t)?, t)),
                    PromptInput::Ids(ids) => {
                        let text = tok.decode(&ids)?;
                        Ok((ids, text))
                    }
                })
                .collect()
        })
        .await
        .map_err(|_| internal("the tokenizer failed"))??;
    let max_tokens = req.max_tokens.unwrap_or(16);
    let echo = req.echo.unwrap_or(false);
    let control = state.control(&v)?;
    let adapters = state.adapters(&v)?;
    if !adapters.is_empty() && (palette.is_some() || palette_scoring.is_some()) {
        return Err(ApiError::field(
            "lora",
            "adapters are not supported together with a palette",
        ));
    }
    let palette = palette_job(state, palette, &prompts[0].1)?;
    let palette_scoring = match palette_scoring {
        Some(s) => {
            let counts = if s.per_prompt {
                s.context_tokens
            } else {
                vec![s.context_tokens[0]; prompts.len()]
            };
            for (i, (&k, (ids, _))) in counts.iter().zip(&prompts).enumerate() {
                if k == 0 || k >= ids.len() {
                    return Err(ApiError::field(
                        "palette_context_tokens",
                        format!(
                            "prompt {i} has {} tokens: its context must have at least one and leave at least one to the option",
                            ids.len()
                        ),
                    ));
                }
            }
            Some((state.palette_path(&s.name)?, counts))
        }
        None => None,
    };
    let p = Prepared {
        endpoint: Endpoint::Completions,
        prompts,
        choices,
        limits: GenerateOptions {
            max_tokens,
            stop,
            ignore_eos: sampling.ignore_eos.unwrap_or(false),
        },
        logprobs: req.logprobs,
        prompt_logprobs: req.prompt_logprobs,
        echo,
        stream: req.stream.unwrap_or(false),
        steering_report: steering_report(&v, &control)?,
        control,
        adapters,
        palette,
        palette_scoring,
        permit,
    };
    check_sizes(state, &p, "max_tokens")?;
    Ok(p)
}

pub async fn prepare_chat(
    state: &AppState,
    b: Result<Bytes, BytesRejection>,
) -> Result<Prepared, ApiError> {
    let permit = state.slot()?;
    let b = body(state, b)?;
    let api::CheckedChat {
        body: v,
        palette,
        req,
        sampling,
        messages,
        top,
        choices,
        stop,
    } = api::check_chat(&b, &state.config.limits, state.model.config().vocab_size)?;
    state.check_model(req.model.as_deref())?;
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map_or_else(String::new, |m| m.content.clone());
    let model = state.model.clone();
    let add_generation_prompt = req.add_generation_prompt.unwrap_or(true);
    let prompt = tokio::task::spawn_blocking(move || -> Result<(Vec<u32>, String), ApiError> {
        let Some(tmpl) = model.chat_template.as_ref() else {
            return Err(ApiError::bad_request(
                "the model has no chat template; use /v1/completions",
            ));
        };
        let text = tmpl
            .render(&messages, add_generation_prompt)
            .map_err(|e| ApiError::field("messages", format!("the chat template failed: {e}")))?;
        let ids = model.tokenizer()?.encode_prompt(&text)?;
        Ok((ids, text))
    })
    .await
    .map_err(|_| internal("the chat template failed"))??;
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or_else(|| {
            state
                .config
                .limits
                .max_tokens
                .min(state.max_model_len().saturating_sub(prompt.0.len()))
        });
    let control = state.control(&v)?;
    let adapters = state.adapters(&v)?;
    if !adapters.is_empty() && palette.is_some() {
        return Err(ApiError::field(
            "lora",
            "adapters are not supported together with a palette",
        ));
    }
    let palette = palette_job(state, palette, &last_user)?;
    let p = Prepared {
        endpoint: Endpoint::Chat,
        prompts: vec![prompt],
        choices,
        limits: GenerateOptions {
            max_tokens,
            stop,
            ignore_eos: sampling.ignore_eos.unwrap_or(false),
        },
        logprobs: top,
        prompt_logprobs: None,
        echo: false,
        stream: req.stream.unwrap_or(false),
        steering_report: steering_report(&v, &control)?,
        control,
        adapters,
        palette,
        palette_scoring: None,
        permit,
    };
    check_sizes(state, &p, "max_tokens")?;
    Ok(p)
}

/// The palette job of a request's checked `palette` fields.
pub fn palette_job(
    state: &AppState,
    palette: Option<(String, ethos_steer::palette::decode::PaletteMode, usize)>,
    reward_prompt: &str,
) -> Result<Option<crate::palette::PaletteJob>, ApiError> {
    palette
        .map(|(name, mode, candidates)| {
            Ok(crate::palette::PaletteJob {
                path: state.palette_path(&name)?,
                mode,
                candidates,
                reward_prompt: reward_prompt.to_string(),
            })
        })
        .transpose()
}

/// `steering_report: true` needs control vectors to report on, and a whole response.
pub fn steering_report(v: &Value, control: &Option<Arc<ControlSet>>) -> Result<bool, ApiError> {
    let on = match v.get("steering_report") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::field("steering_report", "must be true or false")),
    };
    if on && control.is_none() {
        return Err(ApiError::field(
            "steering_report",
            "needs control_vectors: it reports steered against unsteered log-probs",
        ));
    }
    if on && v.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::field(
            "steering_report",
            "is returned with whole responses only, not with stream",
        ));
    }
    Ok(on)
}

/// Prompt lengths and `max_tokens` within the limits and the context.
pub fn check_sizes(state: &AppState, p: &Prepared, max_param: &str) -> Result<(), ApiError> {
    let limits = &state.config.limits;
    let ctx = state.max_model_len();
    if p.limits.max_tokens > limits.max_tokens {
        return Err(ApiError::field(
            max_param,
            format!(
                "{} is more than the limit of {} (--max-tokens-limit)",
                p.limits.max_tokens, limits.max_tokens
            ),
        ));
    }
    for (ids, _) in &p.prompts {
        if ids.is_empty() {
            return Err(ApiError::field(
                "prompt",
                "is empty and the model adds no BOS token",
            ));
        }
        let cap = limits.max_prompt_tokens.min(ctx);
        if ids.len() > cap {
            return Err(ApiError::too_large(
                "prompt",
                format!(
                    "{} tokens, more than the limit of {cap} (--max-prompt-tokens and the context length)",
                    ids.len()
                ),
            ));
        }
        if ids.len() + p.limits.max_tokens > ctx {
            return Err(ApiError::field(
                max_param,
                format!(
                    "this model's maximum context length is {ctx} tokens; the prompt has {} and max_tokens is {}",
                    ids.len(),
                    p.limits.max_tokens
                ),
            ));
        }
    }
    Ok(())
}

pub fn internal(msg: &str) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg)
}

/// What one choice produced.
#[derive(Default)]
pub struct ChoiceOut {
    pub tokens: Vec<(u32, Option<TokenLogprob>)>,
    pub text: String,
    pub finish: Option<FinishReason>,
}

pub type PromptOut = (Option<Vec<Option<TokenLogprob>>>, Vec<ChoiceOut>);

/// For each prompt and choice, the unsteered log-prob of every token of prompt + choice
/// (`None` for the first): one more pass of the same tokens without the control vectors.
pub type Reports = Vec<Vec<Vec<Option<TokenLogprob>>>>;
