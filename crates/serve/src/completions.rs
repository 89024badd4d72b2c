//! `POST /v1/completions` and `POST /v1/chat/completions`: a checked request (`request`)
//! becomes engine jobs (one per prompt), and the jobs' events become a whole response
//! (`shapes`) or server-sent events (`stream`); palette requests run apart (`palette`).

use crate::engine::{Event, Job};
use crate::error::ApiError;
use crate::request::{
    internal, prepare_chat, prepare_completion, ChoiceOut, Endpoint, Prepared, PromptOut, Reports,
};
use crate::shapes::{finish_reason, request_id, whole_response};
use crate::state::{unix_now, AppState, OutcomeGuard};
use crate::stream::stream_response;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ethos_steer::{GenerateOptions, SamplingParams};
use serde_json::json;
use tokio::sync::mpsc;

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
            adapters: p.adapters.clone(),
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
        let tilts = match &p.palette_scoring {
            Some((path, counts)) => Some(option_scores(&state, &p, &outs, path, counts).await?),
            None => None,
        };
        Ok((outs, reports, tilts))
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
        Ok((outs, reports, tilts)) => {
            guard.set("success");
            let tok = match state.model.tokenizer() {
                Ok(t) => t,
                Err(e) => return ApiError::from(e).into_response(),
            };
            let mut body = whole_response(&state, &p, tok, outs, reports);
            // One choice per prompt: choice i is prompt i's option.
            for (i, t) in tilts.into_iter().flatten().enumerate() {
                body["choices"][i]["palette"] = t;
            }
            Json(body).into_response()
        }
        Err(e) => {
            guard.set(e.outcome());
            e.into_response()
        }
    }
}

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
                adapters: p.adapters.clone(),
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

/// Each prompt's option score tilted by the request's palette (`palette::option_scores`),
/// from the prompt log-probs the batch computed, on a blocking thread.
async fn option_scores(
    state: &AppState,
    p: &Prepared,
    outs: &[PromptOut],
    path: &std::path::Path,
    counts: &[usize],
) -> Result<Vec<serde_json::Value>, ApiError> {
    let lps: Vec<Vec<Option<f32>>> = outs
        .iter()
        .map(|(lp, _)| {
            lp.iter()
                .flatten()
                .map(|e| e.as_ref().map(|t| t.logprob))
                .collect()
        })
        .collect();
    let prompts: Vec<Vec<u32>> = p.prompts.iter().map(|(ids, _)| ids.clone()).collect();
    let (model, path, counts) = (state.model.clone(), path.to_path_buf(), counts.to_vec());
    tokio::task::spawn_blocking(move || {
        crate::palette::option_scores(&model, &path, &prompts, &counts, &lps)
    })
    .await
    .map_err(|_| internal("the palette's rewards failed"))?
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
