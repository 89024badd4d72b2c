//! The client against a scripted server on loopback: retries on 429/5xx with backoff and a
//! clear error after the last, no retry on 4xx, timeouts, answers without prompt log-probs,
//! the choice of model, and answers kept in order under concurrency. The server stops when
//! the test's runtime does.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ethos_remote::{Client, Error, RemoteOptions};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Script {
    /// Statuses answered to the next completions requests, in order, before real answers.
    failures: Mutex<Vec<u16>>,
    /// Answer completions without log-probs (as llama-server does with echo).
    no_logprobs: bool,
    /// Models listed.
    models: Vec<&'static str>,
    /// Seconds each completion takes.
    delay: f64,
    /// /tokenize as llama-server answers this request (no tokens), or missing (404).
    tokenize_empty: bool,
    tokenize_missing: bool,
    completions: AtomicUsize,
    peak: AtomicUsize,
    running: AtomicUsize,
    auth: Mutex<Vec<String>>,
}

/// The log-prob the script gives token `id` at position `i`: both recoverable from it.
fn lp(id: u64, i: usize) -> f64 {
    -(id as f64) - i as f64 / 1000.0
}

async fn models(State(s): State<Arc<Script>>) -> Json<Value> {
    Json(
        json!({"object": "list", "data": s.models.iter().map(|m| json!({"id": m, "max_model_len": 64})).collect::<Vec<_>>()}),
    )
}

async fn tokenize(State(s): State<Arc<Script>>, Json(b): Json<Value>) -> Response {
    if s.tokenize_missing {
        return StatusCode::NOT_FOUND.into_response();
    }
    if s.tokenize_empty {
        return Json(json!({"tokens": []})).into_response();
    }
    let text = b["prompt"].as_str().unwrap_or("");
    let mut ids: Vec<u64> = if b["add_special_tokens"].as_bool().unwrap_or(true) {
        vec![1]
    } else {
        vec![]
    };
    ids.extend(text.bytes().map(|b| b as u64));
    Json(json!({"count": ids.len(), "tokens": ids})).into_response()
}

async fn completions(
    State(s): State<Arc<Script>>,
    headers: HeaderMap,
    Json(b): Json<Value>,
) -> Response {
    s.completions.fetch_add(1, Ordering::SeqCst);
    if let Some(a) = headers.get("authorization") {
        s.auth
            .lock()
            .unwrap()
            .push(a.to_str().unwrap_or("").to_string());
    }
    let fail = {
        let mut f = s.failures.lock().unwrap();
        (!f.is_empty()).then(|| f.remove(0))
    };
    if let Some(code) = fail {
        let status = StatusCode::from_u16(code).unwrap();
        let mut r = (
            status,
            Json(json!({"error": {"message": format!("scripted {code}"), "type": "x", "code": code}})),
        )
            .into_response();
        if code == 429 {
            r.headers_mut().insert("retry-after", "0".parse().unwrap());
        }
        return r;
    }
    let now = s.running.fetch_add(1, Ordering::SeqCst) + 1;
    s.peak.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs_f64(s.delay)).await;
    s.running.fetch_sub(1, Ordering::SeqCst);
    let prompts: Vec<Vec<u64>> = match &b["prompt"] {
        Value::Array(a) if a.first().is_some_and(Value::is_array) => a
            .iter()
            .map(|p| {
                p.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap())
                    .collect()
            })
            .collect(),
        Value::Array(a) => vec![a.iter().map(|x| x.as_u64().unwrap()).collect()],
        _ => vec![vec![7]],
    };
    let choices: Vec<Value> = prompts
        .iter()
        .enumerate()
        .rev() // out of order: the client sorts by index
        .map(|(k, p)| {
            let mut lps: Vec<Value> = vec![Value::Null];
            lps.extend(p.iter().enumerate().skip(1).map(|(i, &id)| json!(lp(id, i))));
            lps.push(json!(-0.5));
            let logprobs = if s.no_logprobs || b["echo"] != json!(true) {
                Value::Null
            } else {
                json!({"token_logprobs": lps})
            };
            json!({"index": k, "text": format!("answer {k}"), "finish_reason": "length", "logprobs": logprobs})
        })
        .collect();
    let n: usize = prompts.iter().map(Vec::len).sum();
    Json(json!({"choices": choices, "usage": {"prompt_tokens": n, "completion_tokens": prompts.len()}}))
        .into_response()
}

/// Serves `script` on a loopback port until the returned runtime is dropped.
fn serve(script: Arc<Script>) -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/tokenize", post(tokenize))
        .route("/v1/completions", post(completions))
        .with_state(script);
    rt.spawn(async move { axum::serve(listener, app).await });
    (rt, format!("http://{addr}/v1"))
}

fn opts(url: &str) -> RemoteOptions {
    RemoteOptions {
        base_url: url.to_string(),
        backoff: Duration::from_millis(1),
        retries: 3,
        ..Default::default()
    }
}

fn script(failures: &[u16]) -> Arc<Script> {
    Arc::new(Script {
        failures: Mutex::new(failures.to_vec()),
        models: vec!["mock"],
        ..Default::default()
    })
}

fn expected(p: &[u32]) -> Vec<Option<f64>> {
    std::iter::once(None)
        .chain(
            p.iter()
                .enumerate()
                .skip(1)
                .map(|(i, &id)| Some(lp(id as u64, i))),
        )
        .collect()
}

#[test]
fn retries_429_and_5xx_then_answers() {
    let s = script(&[503, 429, 502]);
    let (_rt, url) = serve(s.clone());
    let client = Client::connect(opts(&url)).unwrap();
    assert_eq!(client.model, "mock");
    assert_eq!(client.max_model_len, Some(64));
    let prompts = vec![vec![1, 5, 9], vec![1, 4]];
    let got = client.prompt_logprobs(&prompts).unwrap();
    assert_eq!(got, vec![expected(&prompts[0]), expected(&prompts[1])]);
    let st = client.stats();
    assert_eq!(st.retries, 3);
    assert_eq!(s.completions.load(Ordering::SeqCst), 4);
    assert_eq!(st.prompt_tokens, 5);
}

#[test]
fn the_last_retry_gives_a_clear_error() {
    let s = script(&[503; 10]);
    let (_rt, url) = serve(s.clone());
    let client = Client::connect(RemoteOptions {
        retries: 2,
        ..opts(&url)
    })
    .unwrap();
    let e = client.prompt_logprobs(&[vec![1, 2]]).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Status { status: 503, .. }), "{msg}");
    assert!(
        msg.contains("/v1/completions")
            && msg.contains("scripted 503")
            && msg.contains("after 2 retries"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    assert_eq!(s.completions.load(Ordering::SeqCst), 3);
}

#[test]
fn a_client_error_is_not_retried() {
    let s = script(&[400]);
    let (_rt, url) = serve(s.clone());
    let client = Client::connect(opts(&url)).unwrap();
    let msg = client
        .prompt_logprobs(&[vec![1, 2]])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("HTTP 400: scripted 400"), "{msg}");
    assert_eq!(s.completions.load(Ordering::SeqCst), 1);
}

#[test]
fn a_server_without_prompt_logprobs_is_named() {
    let s = Arc::new(Script {
        no_logprobs: true,
        models: vec!["mock"],
        ..Default::default()
    });
    let (_rt, url) = serve(s);
    let client = Client::connect(opts(&url)).unwrap();
    let msg = client
        .prompt_logprobs(&[vec![1, 2]])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no prompt log-probs"), "{msg}");
    // Generation still works there.
    let c = client
        .complete(
            &[1, 2],
            &ethos_remote::CompletionParams {
                max_tokens: 3,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(c[0].text, "answer 0");
}

#[test]
fn a_tokenizer_the_client_cannot_use_is_named() {
    for (empty, missing, want) in [
        (true, false, "not vLLM's; pass --tokenizer"),
        (false, true, "no /tokenize endpoint: pass --tokenizer"),
    ] {
        let s = Arc::new(Script {
            models: vec!["mock"],
            tokenize_empty: empty,
            tokenize_missing: missing,
            ..Default::default()
        });
        let (_rt, url) = serve(s);
        let client = Client::connect(opts(&url)).unwrap();
        let msg = client.tokenize("some text", true).unwrap_err().to_string();
        assert!(msg.contains("/tokenize") && msg.contains(want), "{msg}");
    }
}

#[test]
fn the_model_is_chosen_or_named() {
    let s = Arc::new(Script {
        models: vec!["a", "b"],
        ..Default::default()
    });
    let (_rt, url) = serve(s);
    let msg = Client::connect(opts(&url)).err().unwrap().to_string();
    assert!(
        msg.contains("several models (a, b)") && msg.contains("--served-model"),
        "{msg}"
    );
    let msg = Client::connect(RemoteOptions {
        served_model: Some("c".into()),
        ..opts(&url)
    })
    .err()
    .unwrap()
    .to_string();
    assert!(msg.contains("does not serve `c`"), "{msg}");
    let c = Client::connect(RemoteOptions {
        served_model: Some("b".into()),
        ..opts(&url)
    })
    .unwrap();
    assert_eq!(c.model, "b");
    let msg = Client::connect(opts("ftp://x")).err().unwrap().to_string();
    assert!(msg.contains("--base-url `ftp://x`"), "{msg}");
}

#[test]
fn connection_errors_and_timeouts_are_retried_then_named() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let msg = Client::connect(RemoteOptions {
        retries: 2,
        ..opts(&url)
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}/v1/models")) && msg.contains("after 2 retries"),
        "{msg}"
    );
    let s = Arc::new(Script {
        models: vec!["mock"],
        delay: 2.0,
        ..Default::default()
    });
    let (_rt, url) = serve(s.clone());
    let client = Client::connect(RemoteOptions {
        retries: 1,
        timeout: Duration::from_millis(200),
        ..opts(&url)
    })
    .unwrap();
    let t = std::time::Instant::now();
    let e = client.prompt_logprobs(&[vec![1, 2]]).unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(s.completions.load(Ordering::SeqCst), 2);
}

#[test]
fn answers_keep_their_order_under_bounded_concurrency() {
    let s = Arc::new(Script {
        models: vec!["mock"],
        delay: 0.02,
        ..Default::default()
    });
    let (_rt, url) = serve(s.clone());
    let client = Client::connect(RemoteOptions {
        concurrency: 4,
        prompts_per_request: 3,
        api_key: Some("k3y".into()),
        ..opts(&url)
    })
    .unwrap();
    let prompts: Vec<Vec<u32>> = (0..40).map(|i| vec![1, 10 + i, 100 + i]).collect();
    let got = client.prompt_logprobs(&prompts).unwrap();
    let want: Vec<_> = prompts.iter().map(|p| expected(p)).collect();
    assert_eq!(got, want);
    assert_eq!(s.completions.load(Ordering::SeqCst), 14);
    let peak = s.peak.load(Ordering::SeqCst);
    assert!((2..=4).contains(&peak), "peak {peak}");
    assert!(s.auth.lock().unwrap().iter().all(|a| a == "Bearer k3y"));
    assert_eq!(client.tokenize("ab", true).unwrap(), vec![1, 97, 98]);
    assert_eq!(client.tokenize("ab", false).unwrap(), vec![97, 98]);
}
