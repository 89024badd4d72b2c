//! `POST /v1/completions` and `POST /v1/chat/completions`: requests become engine jobs
//! (one per prompt), and the jobs' events become OpenAI's response shapes, whole or as
//! server-sent events. Log-probs take the legacy completions shape (`tokens`,
//! `token_logprobs`, `top_logprobs`, `text_offset`) that lm-evaluation-harness reads, vLLM's
//! `prompt_logprobs`, and the chat shape (`content[].top_logprobs`).

use crate::api::{self, PromptInput};
use crate::engine::{Event, Job, TokenLogprob};
use crate::error::ApiError;
use crate::routes::{body, unix_now, AppState, OutcomeGuard};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ethos_model::tokenizer::Tokenizer;
use ethos_steer::control::ControlSet;
use ethos_steer::{FinishReason, GenerateOptions, SamplingParams};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::wrappers::UnboundedReceiverStream;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Completions,
    Chat,
}

/// A checked request, ready to run.
struct Prepared {
    endpoint: Endpoint,
    /// Each prompt's ids and its text (what `echo` returns).
    prompts: Vec<(Vec<u32>, String)>,
    choices: Vec<SamplingParams>,
    limits: GenerateOptions,
    logprobs: Option<usize>,
    /// vLLM's `prompt_logprobs` (top N per prompt token).
    prompt_logprobs: Option<usize>,
    echo: bool,
    stream: bool,
    control: Option<Arc<ControlSet>>,
    /// Return the unsteered log-probs of the same tokens beside the steered ones.
    steering_report: bool,
    /// Decode with a solved palette instead of the batch.
    palette: Option<crate::palette::PaletteJob>,
    permit: OwnedSemaphorePermit,
}

pub async fn completions(
    State(state): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let mut guard = OutcomeGuard::new(&state.metrics);
    match prepare_completion(&state, b).await {
        Ok(p) => run(state, p, guard).await,
        Err(e) => {
            guard.set(e.outcome());
            e.into_response()
        }
    }
}

pub async fn chat(State(state): State<AppState>, b: Result<Bytes, BytesRejection>) -> Response {
    let mut guard = OutcomeGuard::new(&state.metrics);
    match prepare_chat(&state, b).await {
        Ok(p) => run(state, p, guard).await,
        Err(e) => {
            guard.set(e.outcome());
            e.into_response()
        }
    }
}

async fn prepare_completion(
    state: &AppState,
    b: Result<Bytes, BytesRejection>,
) -> Result<Prepared, ApiError> {
    let permit = state.slot()?;
    let b = body(state, b)?;
    let vocab = state.model.config().vocab_size;
    let api::CheckedCompletion {
        body: v,
        palette,
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
    let palette = palette_job(state, palette, &prompts[0].1)?;
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
        palette,
        permit,
    };
    check_sizes(state, &p, "max_tokens")?;
    Ok(p)
}

async fn prepare_chat(
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
        palette,
        permit,
    };
    check_sizes(state, &p, "max_tokens")?;
    Ok(p)
}

/// The palette job of a request's checked `palette` fields.
fn palette_job(
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
fn steering_report(v: &Value, control: &Option<Arc<ControlSet>>) -> Result<bool, ApiError> {
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
fn check_sizes(state: &AppState, p: &Prepared, max_param: &str) -> Result<(), ApiError> {
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

fn internal(msg: &str) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg)
}

/// Submits one job per prompt; 429 when the queue is full.
fn submit(state: &AppState, p: &Prepared) -> Result<Vec<mpsc::UnboundedReceiver<Event>>, ApiError> {
    let mut receivers = Vec::with_capacity(p.prompts.len());
    let echo_logprobs = if p.echo { p.logprobs } else { None };
    for (ids, _) in &p.prompts {
        let (tx, rx) = mpsc::unbounded_channel();
        // The report needs the steered log-prob of every token.
        let report = p.steering_report.then_some(0);
        let job = Job {
            prompt: ids.clone(),
            choices: p.choices.clone(),
            limits: p.limits.clone(),
            logprobs: p.logprobs.or(report),
            prompt_logprobs: p.prompt_logprobs.max(echo_logprobs).max(report),
            control: p.control.clone(),
            events: tx,
            submitted: std::time::Instant::now(),
        };
        state.engine.submit(job).map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "the queue is full ({} waiting requests, --max-queue); retry later",
                    state.config.limits.max_queue
                ),
            )
        })?;
        receivers.push(rx);
    }
    Ok(receivers)
}

/// What one choice produced.
#[derive(Default)]
struct ChoiceOut {
    tokens: Vec<(u32, Option<TokenLogprob>)>,
    text: String,
    finish: Option<FinishReason>,
}

async fn run(state: AppState, p: Prepared, mut guard: OutcomeGuard) -> Response {
    if let Some(job) = p.palette.clone() {
        return run_palette(state, p, job, guard).await;
    }
    let receivers = match submit(&state, &p) {
        Ok(r) => r,
        Err(e) => {
            guard.set(e.outcome());
            return e.into_response();
        }
    };
    if p.stream {
        return stream_response(state, p, receivers, guard);
    }
    let timeout = state.config.limits.timeout;
    let work = async {
        let outs = collect(&p, receivers).await?;
        let reports = if p.steering_report {
            Some(unsteered(&state, &p, &outs).await?)
        } else {
            None
        };
        Ok((outs, reports))
    };
    let collected = tokio::time::timeout(timeout, work).await;
    let result = match collected {
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request ran past the limit of {} s (--request-timeout)",
                timeout.as_secs()
            ),
        )),
        Ok(r) => r,
    };
    match result {
        Ok((outs, reports)) => {
            guard.set("success");
            let tok = match state.model.tokenizer() {
                Ok(t) => t,
                Err(e) => return ApiError::from(e).into_response(),
            };
            Json(whole_response(&state, &p, tok, outs, reports)).into_response()
        }
        Err(e) => {
            guard.set(e.outcome());
            e.into_response()
        }
    }
}

/// A palette request: its candidates sampled and one picked, on a blocking thread.
async fn run_palette(
    state: AppState,
    p: Prepared,
    job: crate::palette::PaletteJob,
    mut guard: OutcomeGuard,
) -> Response {
    let model = state.model.clone();
    let (ids, _) = p.prompts[0].clone();
    let (sampling, limits, control) = (p.choices[0].clone(), p.limits.clone(), p.control.clone());
    let mode = match job.mode {
        ethos_steer::palette::decode::PaletteMode::Resample => "resample",
        ethos_steer::palette::decode::PaletteMode::BestOfN => "best-of-n",
        ethos_steer::palette::decode::PaletteMode::Token { .. } => "token",
    };
    let prompt_tokens = ids.len();
    let work = tokio::task::spawn_blocking(move || {
        crate::palette::generate(model, job, ids, sampling, limits, control)
    });
    let timeout = state.config.limits.timeout;
    let out = match tokio::time::timeout(timeout, work).await {
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request ran past the limit of {} s (--request-timeout)",
                timeout.as_secs()
            ),
        )),
        Ok(Err(_)) => Err(internal("palette decoding failed")),
        Ok(Ok(r)) => r,
    };
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            guard.set(e.outcome());
            return e.into_response();
        }
    };
    guard.set("success");
    let report = json!({
        "mode": mode,
        "chosen": out.chosen,
        "candidates": out.candidates.iter().map(|c| json!({
            "text": c.text, "rewards": c.rewards, "score": c.score, "weight": c.weight,
        })).collect::<Vec<_>>(),
    });
    let finish = finish_reason(Some(out.finish));
    let (id, object, choice) = match p.endpoint {
        Endpoint::Completions => (
            request_id("cmpl"),
            "text_completion",
            json!({"index": 0, "text": out.text, "logprobs": null, "finish_reason": finish, "stop_reason": null, "palette": report}),
        ),
        Endpoint::Chat => (
            request_id("chatcmpl"),
            "chat.completion",
            json!({"index": 0, "message": {"role": "assistant", "content": out.text}, "logprobs": null, "finish_reason": finish, "palette": report}),
        ),
    };
    Json(json!({
        "id": id,
        "object": object,
        "created": unix_now(),
        "model": state.config.served_model_name,
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": out.tokens, "total_tokens": prompt_tokens + out.tokens},
    }))
    .into_response()
}

type PromptOut = (Option<Vec<Option<TokenLogprob>>>, Vec<ChoiceOut>);

/// For each prompt and choice, the unsteered log-prob of every token of prompt + choice
/// (`None` for the first): one more pass of the same tokens without the control vectors.
type Reports = Vec<Vec<Vec<Option<TokenLogprob>>>>;

async fn unsteered(
    state: &AppState,
    p: &Prepared,
    outs: &[PromptOut],
) -> Result<Reports, ApiError> {
    let mut receivers = Vec::new();
    for ((ids, _), (_, choices)) in p.prompts.iter().zip(outs) {
        for c in choices {
            let mut seq = ids.clone();
            seq.extend(c.tokens.iter().map(|(id, _)| *id));
            let (tx, rx) = mpsc::unbounded_channel();
            let job = Job {
                prompt: seq,
                choices: vec![SamplingParams::greedy()],
                limits: GenerateOptions::default(),
                logprobs: None,
                prompt_logprobs: Some(0),
                control: None,
                events: tx,
                submitted: std::time::Instant::now(),
            };
            state.engine.submit(job).map_err(|_| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "the queue is full (--max-queue); retry later",
                )
            })?;
            receivers.push(rx);
        }
    }
    let mut flat = Vec::new();
    for mut rx in receivers {
        let mut got = None;
        while let Some(e) = rx.recv().await {
            match e {
                Event::Prompt(lp) => got = Some(lp),
                Event::Failed(m) => return Err(ApiError::bad_request(m)),
                _ => {}
            }
        }
        flat.push(got.ok_or_else(|| internal("the engine stopped"))?);
    }
    let mut flat = flat.into_iter();
    Ok(outs
        .iter()
        .map(|(_, choices)| choices.iter().filter_map(|_| flat.next()).collect())
        .collect())
}

/// The steering report of one choice: the steered and unsteered log-probs of its tokens
/// (and of the prompt's, where they were asked for).
fn report_json(
    tok: &Tokenizer,
    prompt: &[u32],
    prompt_lp: Option<&Vec<Option<TokenLogprob>>>,
    c: &ChoiceOut,
    unsteered: &[Option<TokenLogprob>],
) -> Value {
    let lp = |e: Option<&TokenLogprob>| e.map_or(Value::Null, |l| json!(l.logprob));
    let n = prompt.len();
    json!({
        "tokens": c.tokens.iter().map(|(id, _)| token_text(tok, *id)).collect::<Vec<_>>(),
        "steered_logprobs": c.tokens.iter().map(|(_, l)| lp(l.as_ref())).collect::<Vec<_>>(),
        "unsteered_logprobs": unsteered.iter().skip(n).map(|l| lp(l.as_ref())).collect::<Vec<_>>(),
        "prompt_steered_logprobs": prompt_lp.map(|v| v.iter().map(|l| lp(l.as_ref())).collect::<Vec<_>>()),
        "prompt_unsteered_logprobs": unsteered.iter().take(n).map(|l| lp(l.as_ref())).collect::<Vec<_>>(),
    })
}

async fn collect(
    p: &Prepared,
    receivers: Vec<mpsc::UnboundedReceiver<Event>>,
) -> Result<Vec<PromptOut>, ApiError> {
    let mut outs = Vec::with_capacity(receivers.len());
    for mut rx in receivers {
        let mut prompt = None;
        let mut choices: Vec<ChoiceOut> =
            (0..p.choices.len()).map(|_| ChoiceOut::default()).collect();
        let mut open = choices.len();
        while open > 0 {
            match rx.recv().await {
                None => return Err(internal("the engine stopped")),
                Some(Event::Failed(m)) => return Err(ApiError::bad_request(m)),
                Some(Event::Prompt(lp)) => prompt = Some(lp),
                Some(Event::Token {
                    choice,
                    id,
                    text,
                    logprob,
                }) => {
                    let c = &mut choices[choice];
                    c.tokens.push((id, logprob));
                    c.text.push_str(&text);
                }
                Some(Event::Done {
                    choice,
                    finish,
                    text,
                }) => {
                    let c = &mut choices[choice];
                    c.text.push_str(&text);
                    c.finish = Some(finish);
                    open -= 1;
                }
            }
        }
        outs.push((prompt, choices));
    }
    Ok(outs)
}

fn finish_reason(f: Option<FinishReason>) -> Value {
    match f {
        Some(FinishReason::Length) => json!("length"),
        Some(FinishReason::Eos | FinishReason::Stop) => json!("stop"),
        None => Value::Null,
    }
}

fn token_text(tok: &Tokenizer, id: u32) -> String {
    tok.decode(&[id]).unwrap_or_default()
}

/// The legacy completions log-probs of `entries` (`None`: the first prompt token, which has
/// no log-prob), offsets counted in characters from `offset`.
fn legacy_logprobs(
    tok: &Tokenizer,
    entries: &[(u32, Option<&TokenLogprob>)],
    mut offset: usize,
) -> Value {
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top_logprobs = Vec::new();
    let mut text_offset = Vec::new();
    for &(id, lp) in entries {
        let text = token_text(tok, id);
        text_offset.push(offset);
        offset += text.chars().count();
        match lp {
            None => {
                token_logprobs.push(Value::Null);
                top_logprobs.push(Value::Null);
            }
            Some(lp) => {
                token_logprobs.push(json!(lp.logprob));
                let mut top = Map::new();
                top.insert(text.clone(), json!(lp.logprob));
                for &(t, l) in &lp.top {
                    top.entry(token_text(tok, t)).or_insert(json!(l));
                }
                top_logprobs.push(Value::Object(top));
            }
        }
        tokens.push(text);
    }
    json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    })
}

/// vLLM's `prompt_logprobs`: `[null, {"<id>": {"logprob", "rank", "decoded_token"}}, ...]`,
/// each entry the actual token and the top N.
fn vllm_prompt_logprobs(tok: &Tokenizer, entries: &[Option<TokenLogprob>]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| match e {
                None => Value::Null,
                Some(lp) => {
                    let mut m = Map::new();
                    m.insert(
                        lp.id.to_string(),
                        json!({"logprob": lp.logprob, "rank": lp.rank, "decoded_token": token_text(tok, lp.id)}),
                    );
                    for (r, &(t, l)) in lp.top.iter().enumerate() {
                        m.entry(t.to_string()).or_insert(
                            json!({"logprob": l, "rank": r + 1, "decoded_token": token_text(tok, t)}),
                        );
                    }
                    Value::Object(m)
                }
            })
            .collect(),
    )
}

/// The chat shape of one token's log-probs.
fn chat_logprob(tok: &Tokenizer, lp: &TokenLogprob) -> Value {
    let entry = |id: u32, l: f32| {
        let t = token_text(tok, id);
        json!({"token": t, "logprob": l, "bytes": t.as_bytes()})
    };
    let mut e = entry(lp.id, lp.logprob);
    e["top_logprobs"] = Value::Array(lp.top.iter().map(|&(t, l)| entry(t, l)).collect());
    e
}

fn request_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{prefix}-{:016x}",
        t.rotate_left(17) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

fn usage(p: &Prepared, outs: &[PromptOut]) -> Value {
    let prompt: usize = p.prompts.iter().map(|(ids, _)| ids.len()).sum();
    let completion: usize = outs
        .iter()
        .flat_map(|(_, c)| c.iter().map(|c| c.tokens.len()))
        .sum();
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn whole_response(
    state: &AppState,
    p: &Prepared,
    tok: &Tokenizer,
    outs: Vec<PromptOut>,
    reports: Option<Reports>,
) -> Value {
    let model = &state.config.served_model_name;
    let usage = usage(p, &outs);
    let mut choices = Vec::new();
    for (i, ((prompt_lp, chs), (ids, prompt_text))) in outs.iter().zip(&p.prompts).enumerate() {
        for (j, c) in chs.iter().enumerate() {
            let index = i * p.choices.len() + j;
            let report = reports
                .as_ref()
                .map(|r| report_json(tok, ids, prompt_lp.as_ref(), c, &r[i][j]));
            match p.endpoint {
                Endpoint::Completions => {
                    let mut text = String::new();
                    let mut entries: Vec<(u32, Option<&TokenLogprob>)> = Vec::new();
                    if p.echo {
                        text.push_str(prompt_text);
                        if let Some(lp) = prompt_lp {
                            entries.extend(ids.iter().zip(lp).map(|(&id, l)| (id, l.as_ref())));
                        }
                    }
                    text.push_str(&c.text);
                    entries.extend(c.tokens.iter().map(|(id, l)| (*id, l.as_ref())));
                    let logprobs = if p.logprobs.is_some() {
                        legacy_logprobs(tok, &entries, 0)
                    } else {
                        Value::Null
                    };
                    let prompt_logprobs = match (p.prompt_logprobs, prompt_lp) {
                        (Some(_), Some(lp)) => vllm_prompt_logprobs(tok, lp),
                        _ => Value::Null,
                    };
                    let mut choice = json!({
                        "index": index,
                        "text": text,
                        "logprobs": logprobs,
                        "finish_reason": finish_reason(c.finish),
                        "stop_reason": null,
                        "prompt_logprobs": prompt_logprobs,
                    });
                    if let Some(r) = report {
                        choice["steering_report"] = r;
                    }
                    choices.push(choice);
                }
                Endpoint::Chat => {
                    let logprobs = match p.logprobs {
                        Some(_) => {
                            json!({"content": c.tokens.iter().filter_map(|(_, l)| l.as_ref()).map(|l| chat_logprob(tok, l)).collect::<Vec<_>>()})
                        }
                        None => Value::Null,
                    };
                    let mut choice = json!({
                        "index": index,
                        "message": {"role": "assistant", "content": c.text},
                        "logprobs": logprobs,
                        "finish_reason": finish_reason(c.finish),
                    });
                    if let Some(r) = report {
                        choice["steering_report"] = r;
                    }
                    choices.push(choice);
                }
            }
        }
    }
    let (id, object) = match p.endpoint {
        Endpoint::Completions => (request_id("cmpl"), "text_completion"),
        Endpoint::Chat => (request_id("chatcmpl"), "chat.completion"),
    };
    json!({
        "id": id,
        "object": object,
        "created": unix_now(),
        "model": model,
        "choices": choices,
        "usage": usage,
    })
}

/// Server-sent events: one chunk per token (and per choice's end), then `[DONE]`. The
/// stream owns the request's permit and outcome; dropping it (the client went away) drops
/// the job's receivers, and the engine then drops the job's rows.
fn stream_response(
    state: AppState,
    p: Prepared,
    receivers: Vec<mpsc::UnboundedReceiver<Event>>,
    mut guard: OutcomeGuard,
) -> Response {
    let tok = match state.model.tokenizer() {
        Ok(_) => state.model.clone(),
        Err(e) => {
            guard.set("error");
            return ApiError::from(e).into_response();
        }
    };
    let n = p.choices.len();
    let endpoint = p.endpoint;
    let (id, object) = match endpoint {
        Endpoint::Completions => (request_id("cmpl"), "text_completion"),
        Endpoint::Chat => (request_id("chatcmpl"), "chat.completion.chunk"),
    };
    let created = unix_now();
    let model_name = state.config.served_model_name.clone();
    let chunk = move |choice: Value| -> SseEvent {
        SseEvent::default().data(
            json!({"id": id, "object": object, "created": created, "model": model_name, "choices": [choice]})
                .to_string(),
        )
    };
    // Chat streams open each choice with its role.
    let mut first: Vec<SseEvent> = Vec::new();
    if endpoint == Endpoint::Chat {
        for index in 0..p.prompts.len() * n {
            first.push(chunk(json!({"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null})));
        }
    }
    if endpoint == Endpoint::Completions && p.echo {
        for (i, (_, text)) in p.prompts.iter().enumerate() {
            for j in 0..n {
                first.push(chunk(json!({"index": i * n + j, "text": text, "logprobs": null, "finish_reason": null})));
            }
        }
    }
    let logprobs = p.logprobs;
    let merged = stream::select_all(
        receivers
            .into_iter()
            .enumerate()
            .map(|(i, rx)| UnboundedReceiverStream::new(rx).map(move |e| (i, e))),
    );
    let chunk2 = chunk.clone();
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed_in = failed.clone();
    let events = merged
        .filter_map(move |(i, e)| {
            let tok = tok.tokenizer().ok();
            let out = match (e, tok) {
                (Event::Token { choice, id, text, logprob }, Some(tok)) => {
                    let index = i * n + choice;
                    Some(match endpoint {
                        Endpoint::Completions => {
                            let lp = logprobs.map(|_| legacy_logprobs(tok, &[(id, logprob.as_ref())], 0));
                            chunk2(json!({"index": index, "text": text, "logprobs": lp, "finish_reason": null}))
                        }
                        Endpoint::Chat => {
                            let lp = logprob.as_ref().map(|l| json!({"content": [chat_logprob(tok, l)]}));
                            chunk2(json!({"index": index, "delta": {"content": text}, "logprobs": lp, "finish_reason": null}))
                        }
                    })
                }
                (Event::Done { choice, finish, text }, _) => {
                    let index = i * n + choice;
                    Some(match endpoint {
                        Endpoint::Completions => chunk2(json!({"index": index, "text": text, "logprobs": null, "finish_reason": finish_reason(Some(finish))})),
                        Endpoint::Chat => chunk2(json!({"index": index, "delta": {"content": text}, "logprobs": null, "finish_reason": finish_reason(Some(finish))})),
                    })
                }
                (Event::Failed(m), _) => {
                    failed_in.store(true, std::sync::atomic::Ordering::Relaxed);
                    Some(SseEvent::default().data(ApiError::bad_request(m).body().to_string()))
                }
                _ => None,
            };
            std::future::ready(out)
        });
    let timeout = state.config.limits.timeout;
    let permit = p.permit;
    let done = stream::once(async move {
        let failed = failed.load(std::sync::atomic::Ordering::Relaxed);
        guard.set(if failed { "error" } else { "success" });
        drop(permit);
        SseEvent::default().data("[DONE]")
    });
    let body = stream::iter(first)
        .chain(events.take_until(tokio::time::sleep(timeout)))
        .chain(done)
        .map(Ok::<_, std::convert::Infallible>);
    Sse::new(body).into_response()
}
