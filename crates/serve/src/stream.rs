//! Streamed responses: server-sent events, one chunk per token and per choice's end, then
//! `[DONE]`.

use crate::engine::Event;
use crate::error::ApiError;
use crate::request::{Endpoint, Prepared};
use crate::shapes::{chat_logprob, finish_reason, legacy_logprobs, request_id};
use crate::state::{unix_now, AppState, OutcomeGuard};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// Server-sent events: one chunk per token (and per choice's end), then `[DONE]`. The
/// stream owns the request's permit and outcome; dropping it (the client went away) drops
/// the job's receivers, and the engine then drops the job's rows.
pub fn stream_response(
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
    let deadline = tokio::time::Instant::now() + timeout;
    let permit = p.permit;
    // The end: past the deadline an error event first (the stream's receivers are dropped
    // with it, so the engine drops the rows), then `[DONE]`.
    let done = stream::once(async move {
        let mut last = Vec::new();
        if tokio::time::Instant::now() >= deadline {
            guard.set("timeout");
            let e = ApiError::new(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the request ran past the limit of {} s (--request-timeout)",
                    timeout.as_secs()
                ),
            );
            last.push(SseEvent::default().data(e.body().to_string()));
        } else {
            let failed = failed.load(std::sync::atomic::Ordering::Relaxed);
            guard.set(if failed { "error" } else { "success" });
        }
        drop(permit);
        last.push(SseEvent::default().data("[DONE]"));
        stream::iter(last)
    })
    .flatten();
    let body = stream::iter(first)
        .chain(events.take_until(tokio::time::sleep_until(deadline)))
        .chain(done)
        .map(Ok::<_, std::convert::Infallible>);
    Sse::new(body).into_response()
}
