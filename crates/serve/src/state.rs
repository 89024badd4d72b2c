//! What every handler shares: the model, the engine, the metrics and the configuration; the
//! request slot, the outcome counted once per request, and the body read under its limit.

use crate::api;
use crate::engine::EngineHandle;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::ServeConfig;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use ethos_model::Model;
use ethos_steer::control::ControlSet;
use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct AppState {
    pub model: Arc<Model>,
    pub engine: EngineHandle,
    pub metrics: Arc<Metrics>,
    pub config: Arc<ServeConfig>,
    /// One permit per request being served (`--max-concurrent`).
    pub slots: Arc<Semaphore>,
    pub created: u64,
}

impl AppState {
    pub fn new(
        model: Arc<Model>,
        engine: EngineHandle,
        metrics: Arc<Metrics>,
        config: ServeConfig,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(config.limits.max_concurrent));
        Self {
            model,
            engine,
            metrics,
            config: Arc::new(config),
            slots,
            created: unix_now(),
        }
    }

    /// The context length requests must fit in.
    pub fn max_model_len(&self) -> usize {
        self.model.decoder.max_positions()
    }

    /// A request's `model`, when given, must be the served one.
    pub fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            Some(m)
                if m != self.config.served_model_name
                    && !self.model.info.named_adapters.iter().any(|n| n == m) =>
            {
                let mut e = ApiError::not_found(format!(
                    "The model `{m}` does not exist. This server serves `{}`",
                    self.config.served_model_name
                ));
                e.param = Some("model".into());
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// A permit to serve one more request, or 503 at `--max-concurrent`.
    pub fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the server is serving its limit of {} requests (--max-concurrent); retry later",
                    self.config.limits.max_concurrent
                ),
            )
        })
    }

    /// The lambda file a request's `palette` names, in `--palette-dir`.
    pub fn palette_path(&self, name: &str) -> Result<std::path::PathBuf, ApiError> {
        let Some(dir) = &self.config.palette_dir else {
            return Err(ApiError::field(
                "palette",
                "this server has no palettes (start it with --palette-dir)",
            ));
        };
        let path = dir.join(name);
        if !path.is_file() {
            return Err(ApiError::field(
                "palette",
                format!("no palette named {name:?} (see GET /v1/palettes)"),
            ));
        }
        Ok(path)
    }

    /// The named adapters a request selects (`lora`), as (index, scale).
    pub fn adapters(&self, v: &serde_json::Value) -> Result<Vec<(usize, f32)>, ApiError> {
        let refs = api::lora_refs(v)?;
        let names = &self.model.info.named_adapters;
        if !refs.is_empty() && names.is_empty() {
            return Err(ApiError::field(
                "lora",
                "this server has no adapters (start it with --lora-dir)",
            ));
        }
        // vLLM's way: an adapter named as the model, at scale 1.
        let by_model = v
            .get("model")
            .and_then(|m| m.as_str())
            .and_then(|m| names.iter().position(|n| n == m))
            .map(|i| (i, 1.0));
        let listed = refs.iter().enumerate().map(|(i, r)| {
            let index = names.iter().position(|n| *n == r.name).ok_or_else(|| {
                ApiError::field(
                    &format!("lora[{i}].name"),
                    format!("no adapter named {:?} (see GET /v1/models)", r.name),
                )
            })?;
            Ok((index, r.scale.unwrap_or(1.0)))
        });
        by_model.into_iter().map(Ok).chain(listed).collect()
    }

    /// The control vectors a request names, loaded from `--control-vector-dir`.
    pub fn control(&self, v: &serde_json::Value) -> Result<Option<Arc<ControlSet>>, ApiError> {
        let refs = api::control_refs(v)?;
        if refs.is_empty() {
            return Ok(None);
        }
        let Some(dir) = &self.config.control_vector_dir else {
            return Err(ApiError::field(
                "control_vectors",
                "this server has no control vectors (start it with --control-vector-dir)",
            ));
        };
        let cfg = self.model.config();
        let mut sum: Option<ControlSet> = None;
        for (i, r) in refs.iter().enumerate() {
            let param = format!("control_vectors[{i}]");
            let name = r.name.as_str();
            api::check_file_name(&format!("{param}.name"), name)?;
            let path = dir.join(name);
            if !path.is_file() {
                return Err(ApiError::field(
                    &format!("{param}.name"),
                    format!("no control vector named {name:?} (see GET /v1/control_vectors)"),
                ));
            }
            let range = match &r.layers {
                None => None,
                Some(l) if l.len() == 2 && l[0] <= l[1] => Some((l[0], l[1])),
                Some(_) => {
                    return Err(ApiError::field(
                        &format!("{param}.layers"),
                        "must be [first, last] with first <= last",
                    ))
                }
            };
            let scale = r.scale.unwrap_or(1.0);
            let set = ControlSet::load(&[(path, scale)], range, cfg.hidden_size, cfg.num_layers)
                .map_err(|e| {
                    ApiError::field(
                        &param,
                        e.to_string().replace(&dir.display().to_string(), ""),
                    )
                })?;
            sum = Some(match sum {
                None => set,
                Some(mut acc) => {
                    for (layer, v) in set.per_layer {
                        let slot = acc
                            .per_layer
                            .entry(layer)
                            .or_insert_with(|| vec![0.0; cfg.hidden_size]);
                        slot.iter_mut().zip(&v).for_each(|(a, b)| *a += b);
                    }
                    acc
                }
            });
        }
        Ok(sum.map(Arc::new))
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Counts a request's outcome once, when it ends: as `cancelled` if it was dropped (the
/// client went away) before one was set.
pub struct OutcomeGuard {
    metrics: Arc<Metrics>,
    outcome: Option<&'static str>,
}

impl OutcomeGuard {
    pub fn new(metrics: &Arc<Metrics>) -> Self {
        Self {
            metrics: metrics.clone(),
            outcome: None,
        }
    }
    pub fn set(&mut self, outcome: &'static str) {
        self.outcome = Some(outcome);
    }
}

impl Drop for OutcomeGuard {
    fn drop(&mut self) {
        self.metrics.outcome(self.outcome.unwrap_or("cancelled"));
    }
}

/// The body, or the error that stopped reading it (413 past `--max-body-bytes`).
pub fn body(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(
                "body",
                format!(
                    "the request body is larger than the limit of {} bytes (--max-body-bytes)",
                    state.config.limits.max_body_bytes
                ),
            )
        } else {
            ApiError::new(e.status(), format!("request body: {}", e.body_text()))
        }
    })
}
