//! The router: authentication, limits, and the small endpoints (models, health, metrics,
//! tokenize). The generation endpoints are in `completions`.

use crate::api::{self, DetokenizeRequest, TokenizeRequest};
use crate::error::ApiError;
use crate::state::{body, AppState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

pub fn router(state: AppState) -> Router {
    let limit = state.config.limits.max_body_bytes;
    let guarded = Router::new()
        .route("/v1/completions", post(crate::completions::completions))
        .route("/v1/chat/completions", post(crate::completions::chat))
        .route("/v1/models", get(models))
        .route("/v1/control_vectors", get(control_vectors))
        .route("/v1/palettes", get(palettes))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .merge(guarded)
        .route("/health", get(|| async { StatusCode::OK }))
        // The page holds no data: what it shows comes from the routes above, with the key.
        .route(
            "/",
            get(|| async { axum::response::Html(include_str!("page.html")) }),
        )
        .fallback(|| async { ApiError::not_found("no such route").into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
            .into_response()
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// With `--api-key`, every route but `/health` needs `Authorization: Bearer KEY`; the key
/// is compared in constant time.
async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.config.api_key {
        use subtle::ConstantTimeEq;
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
            state.metrics.outcome("unauthorized");
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a valid API key is required (Authorization: Bearer KEY)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// The served model, and each adapter requests may select with `lora` (as vLLM lists its
/// LoRA modules: their own ids, the model as parent).
async fn models(State(state): State<AppState>) -> Json<serde_json::Value> {
    let name = &state.config.served_model_name;
    let mut data = vec![serde_json::json!({
        "id": name,
        "object": "model",
        "created": state.created,
        "owned_by": "ethos",
        "root": name,
        "parent": null,
        "max_model_len": state.max_model_len(),
    })];
    for adapter in &state.model.info.named_adapters {
        data.push(serde_json::json!({
            "id": adapter,
            "object": "model",
            "created": state.created,
            "owned_by": "ethos",
            "root": adapter,
            "parent": name,
            "max_model_len": state.max_model_len(),
        }));
    }
    Json(serde_json::json!({"object": "list", "data": data}))
}

/// The control vectors requests may name.
async fn control_vectors(State(state): State<AppState>) -> Json<serde_json::Value> {
    list_folder(state.config.control_vector_dir.as_deref(), ".gguf")
}

/// The palettes (solved lambda files) requests may name.
async fn palettes(State(state): State<AppState>) -> Json<serde_json::Value> {
    list_folder(state.config.palette_dir.as_deref(), ".json")
}

fn list_folder(dir: Option<&std::path::Path>, ext: &str) -> Json<serde_json::Value> {
    let mut names: Vec<String> = dir
        .and_then(|d| std::fs::read_dir(d).ok())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(ext))
        .collect();
    names.sort();
    Json(serde_json::json!({"object": "list", "data": names}))
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn tokenize(State(state): State<AppState>, b: Result<Bytes, BytesRejection>) -> Response {
    let run = async {
        let b = body(&state, b)?;
        let req: TokenizeRequest =
            api::parse_body(&b, &[&["model", "prompt", "add_special_tokens"]])?;
        state.check_model(req.model.as_deref())?;
        let model = state.model.clone();
        let ids = tokio::task::spawn_blocking(move || -> Result<Vec<u32>, ApiError> {
            let tok = model.tokenizer()?;
            Ok(if req.add_special_tokens.unwrap_or(true) {
                tok.encode_prompt(&req.prompt)?
            } else {
                tok.encode(&req.prompt)?
            })
        })
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "tokenizer failed"))??;
        Ok::<_, ApiError>(Json(serde_json::json!({
            "count": ids.len(),
            "max_model_len": state.max_model_len(),
            "tokens": ids,
        })))
    };
    run.await.into_response()
}

async fn detokenize(State(state): State<AppState>, b: Result<Bytes, BytesRejection>) -> Response {
    let run = async {
        let b = body(&state, b)?;
        let req: DetokenizeRequest = api::parse_body(&b, &[&["model", "tokens"]])?;
        state.check_model(req.model.as_deref())?;
        let vocab = state.model.config().vocab_size;
        if let Some(t) = req.tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ApiError::field(
                "tokens",
                format!("token id {t} is outside the vocabulary ({vocab})"),
            ));
        }
        let text = state.model.tokenizer()?.decode(&req.tokens)?;
        Ok(Json(serde_json::json!({ "prompt": text })))
    };
    run.await.into_response()
}
